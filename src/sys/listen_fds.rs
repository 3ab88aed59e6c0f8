//! Listening sockets received at start instead of bound: from systemd (socket activation,
//! `sd_listen_fds(3)`: `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, fds from 3) or from
//! the srvd master this one replaces in a binary upgrade (`SRVD_LISTEN_FDS`, a comma list of
//! fd numbers, and `SRVD_UPGRADE_FD`, the socket to report readiness on).
//!
//! Both variables are removed from the environment once read, so nothing forked or
//! executed later adopts the same descriptors twice. A descriptor that is not a listening
//! TCP socket is left alone (and logged by the caller).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt};

/// Where a received socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Systemd,
    Upgrade,
}

/// A listening socket received at start.
#[derive(Debug)]
pub struct Received {
    pub addr: SocketAddr,
    pub socket: TcpListener,
    pub source: Source,
    /// Bound by systemd (passed directly, or by a previous master that had it from
    /// systemd): never closed, as systemd would not pass it again.
    pub systemd: bool,
}

/// What was received: the listening sockets, and descriptors that were passed but are not
/// listening TCP sockets (fd, why), for the log.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listeners: Vec<Received>,
    pub refused: Vec<(RawFd, String)>,
    /// The socket to tell the old master on once this one serves (upgrade only).
    pub upgrade_report: Option<UnixStream>,
}

/// First fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Reads and clears the variables, adopting every descriptor they name. Call once, first
/// thing in the master (single-threaded: the environment is not read concurrently).
pub fn take() -> Inherited {
    let mut fds: Vec<(RawFd, Source)> = Vec::new();
    let mut from_systemd: Vec<RawFd> = Vec::new();
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if for_us {
        let n = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.trim().parse::<RawFd>().ok())
            .unwrap_or(0)
            .clamp(0, 1024);
        fds.extend((LISTEN_FDS_START..LISTEN_FDS_START + n).map(|fd| (fd, Source::Systemd)));
    }
    if let Ok(list) = std::env::var("SRVD_LISTEN_FDS") {
        fds.extend(
            list.split(',')
                .filter_map(|f| {
                    let (n, systemd) = match f.trim().strip_suffix(":systemd") {
                        Some(n) => (n, true),
                        None => (f.trim(), false),
                    };
                    let fd = n.parse::<RawFd>().ok()?;
                    if systemd {
                        from_systemd.push(fd);
                    }
                    Some(fd)
                })
                .filter(|&fd| fd > 2)
                .map(|fd| (fd, Source::Upgrade)),
        );
    }
    let report = std::env::var("SRVD_UPGRADE_FD")
        .ok()
        .and_then(|f| f.trim().parse::<RawFd>().ok())
        .filter(|&fd| fd > 2 && is_open(fd));
    for var in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "SRVD_LISTEN_FDS",
        "SRVD_UPGRADE_FD",
    ] {
        std::env::remove_var(var);
    }

    let mut out = Inherited::default();
    fds.sort_unstable_by_key(|(fd, _)| *fd);
    fds.dedup_by_key(|(fd, _)| *fd);
    for (fd, source) in fds {
        match listening_tcp(fd) {
            Ok(addr) => {
                // SAFETY: the fd was handed to this process for it to own (by systemd's
                // protocol, or by the master that executed it), it is open (checked by
                // `listening_tcp`), and the variables naming it are gone, so nothing else
                // in the process adopts it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                let socket = TcpListener::from(owned);
                if let Err(e) = prepare(&socket) {
                    out.refused
                        .push((fd, format!("cannot set it non-blocking: {e}")));
                    continue;
                }
                out.listeners.push(Received {
                    addr,
                    socket,
                    source,
                    systemd: source == Source::Systemd || from_systemd.contains(&fd),
                });
            }
            Err(why) => out.refused.push((fd, why)),
        }
    }
    if let Some(fd) = report {
        // SAFETY: the old master passed this fd (one end of its socketpair) for this
        // process to own; it is open (checked above) and named by no variable any more.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let stream = UnixStream::from(owned);
        if set_cloexec(&stream, true).is_ok() {
            out.upgrade_report = Some(stream);
        }
    }
    out
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; a closed fd gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The local address of `fd` when it is an open, listening TCP socket.
fn listening_tcp(fd: RawFd) -> Result<SocketAddr, String> {
    if !is_open(fd) {
        return Err("not an open descriptor".into());
    }
    // SAFETY: the fd is open (checked above); the borrow lasts for these calls only, and
    // the fd is not closed meanwhile (single-threaded start-up).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let ty = getsockopt(&borrowed, sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    if ty != nix::sys::socket::SockType::Stream {
        return Err("not a stream socket".into());
    }
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    if !listening {
        return Err("not listening".into());
    }
    let addr = socket2::SockRef::from(&borrowed)
        .local_addr()
        .map_err(|e| format!("getsockname: {e}"))?;
    if let Some(addr) = addr.as_socket() {
        return Ok(addr);
    }
    Err("not a TCP socket (srvd listens on TCP)".into())
}

/// Non-blocking, close-on-exec and TCP_NODELAY, like a socket srvd binds itself (systemd passes
/// blocking sockets; the old master cleared close-on-exec to pass it).
fn prepare(socket: &TcpListener) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    // As on a listener srvd binds: accepted sockets inherit TCP_NODELAY (see
    // `socket::bind_listener`). Best effort: systemd's `NoDelay=` may have set it already.
    let _ = socket2::SockRef::from(socket).set_nodelay(true);
    set_cloexec(socket, true)
}

/// Sets or clears close-on-exec.
fn set_cloexec(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    let flag = if on {
        nix::fcntl::FdFlag::FD_CLOEXEC
    } else {
        nix::fcntl::FdFlag::empty()
    };
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(flag))?;
    Ok(())
}

/// Lets the listening sockets survive the exec of a new master: clears close-on-exec on
/// each (the master is single-threaded, so no other exec can race), and returns the
/// variable value naming them. [`restore_cloexec`] puts it back after the spawn.
pub fn pass_on_exec(sockets: &[(&TcpListener, bool)]) -> io::Result<String> {
    let mut list = String::new();
    for (s, systemd) in sockets {
        set_cloexec(*s, false)?;
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&s.as_raw_fd().to_string());
        if *systemd {
            list.push_str(":systemd");
        }
    }
    Ok(list)
}

/// Clears close-on-exec on one descriptor (the report socket the new master inherits).
pub fn inherit_on_exec(fd: &impl AsRawFd) -> io::Result<()> {
    set_cloexec(fd, false)
}

/// Sets close-on-exec again after the new master was spawned.
pub fn restore_cloexec(fd: &impl AsRawFd) {
    let _ = set_cloexec(fd, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_recognised_and_others_are_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        assert_eq!(listening_tcp(fd).unwrap(), l.local_addr().unwrap());
        let (a, _b) = UnixStream::pair().unwrap();
        let err = listening_tcp(std::os::fd::AsRawFd::as_raw_fd(&a)).unwrap_err();
        assert!(err.contains("not listening"), "{err}");
        assert!(listening_tcp(100_000).is_err());
    }
}
