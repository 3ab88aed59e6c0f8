//! Listener setup and `accept4`.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The listen backlog; the kernel clamps it to `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Binds a non-blocking, close-on-exec TCP listener with SO_REUSEADDR, so a restarted srvd
/// can bind again while old connections sit in TIME_WAIT.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // "::" serves IPv6 only, like nginx's default; bind "0.0.0.0" for IPv4.
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY on Linux, which saves a syscall per connection.
    // Responses are written whole, so Nagle would only add latency.
    socket.set_nodelay(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Accepts one connection as a non-blocking, close-on-exec stream. Returns the peer's IP.
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, IpAddr)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a valid, writable sockaddr_storage and `len` holds its size, as
    // accept4 requires; the kernel writes at most `len` bytes.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            storage.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 succeeded, so `fd` is a new socket owned by nobody else.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: accept4 initialised `len` bytes of `storage` (zeroed before, so any tail is 0).
    let addr = unsafe { SockAddr::new(storage.assume_init(), len) };
    let ip = addr
        .as_socket()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    Ok((stream, ip))
}

/// `send(2)` with MSG_NOSIGNAL (a vanished client must not kill the worker with SIGPIPE)
/// and, when `more` is set, MSG_MORE: the kernel holds the bytes back until the rest of the
/// response (the sendfile body) follows, so head and body leave in full segments.
pub fn send(stream: &TcpStream, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `buf` is a valid slice for its whole length and the fd is an open socket
    // borrowed for the duration of the call.
    let n = unsafe { libc::send(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
