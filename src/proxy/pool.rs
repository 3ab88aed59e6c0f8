//! The worker's upstream connections: non-blocking connect (TCP or unix socket), and the
//! pool of idle keep-alive connections per upstream, each with its idle deadline.
//!
//! A pooled connection sits in the worker's epoll set (token [`POOL_FLAG`] | its id): when
//! the upstream closes it (or sends anything unasked), the event drops it at once. It is
//! also checked before reuse with a non-blocking `MSG_PEEK`, for an event not yet read.
//! Idle connections past their route's `keepalive_timeout` (below the app server's own)
//! are closed on the worker's tick. The small window where the upstream closes just as srvd
//! reuses the connection is covered by one retry of idempotent requests on a fresh one.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::route::Upstream;

/// A connection to an upstream.
pub struct UpConn {
    pub sock: Socket,
    pub upstream: Upstream,
}

impl UpConn {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Starts a non-blocking connect; the socket becomes writable when it is done (then
/// [`connect_result`] says how it went).
pub fn connect(upstream: &Upstream) -> io::Result<UpConn> {
    let (domain, addr) = match upstream {
        Upstream::Tcp(a) => (Domain::for_address(*a), SockAddr::from(*a)),
        Upstream::Unix(p) => (Domain::UNIX, SockAddr::unix(p)?),
    };
    let sock = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)?;
    if matches!(upstream, Upstream::Tcp(_)) {
        sock.set_nodelay(true)?;
    }
    match sock.connect(&addr) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        // A unix socket's listen queue is full: like a refused connect, try later or elsewhere.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Err(e),
        Err(e) => return Err(e),
    }
    Ok(UpConn {
        sock,
        upstream: upstream.clone(),
    })
}

/// After the socket became writable: Ok when connected, else why not.
pub fn connect_result(conn: &UpConn) -> io::Result<()> {
    match conn.sock.take_error()? {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Flag of the epoll token of an idle pooled connection (the rest is its id). Connection
/// slots never reach bit 30, so it cannot be mistaken for a client connection.
pub const POOL_FLAG: u64 = 1 << 30;

struct Idle {
    conn: UpConn,
    until: Instant,
    id: u64,
}

/// Idle keep-alive connections by upstream.
#[derive(Default)]
pub struct Pool {
    idle: HashMap<Upstream, Vec<Idle>>,
    next_id: u64,
}

impl Pool {
    /// A live idle connection to `upstream`, newest first, out of the epoll set again.
    pub fn take(&mut self, upstream: &Upstream, now: Instant, epoll: &Epoll) -> Option<UpConn> {
        let list = self.idle.get_mut(upstream)?;
        while let Some(idle) = list.pop() {
            if idle.until > now && alive(&idle.conn) {
                let _ = epoll.delete(idle.conn.fd());
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse for `idle_for`, at most `max` per upstream (0: none kept),
    /// watched in `epoll` so the upstream closing it is seen at once.
    pub fn put(
        &mut self,
        conn: UpConn,
        idle_for: Duration,
        max: usize,
        now: Instant,
        epoll: &Epoll,
    ) {
        if max == 0 {
            return;
        }
        self.next_id = (self.next_id + 1) % (POOL_FLAG - 1);
        let id = self.next_id;
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, POOL_FLAG | id);
        if epoll.add(conn.fd(), ev).is_err() {
            return;
        }
        let list = self.idle.entry(conn.upstream.clone()).or_default();
        if list.len() >= max {
            // The oldest goes: the newest has the most idle time left.
            list.remove(0);
        }
        list.push(Idle {
            conn,
            until: now + idle_for,
            id,
        });
    }

    /// An event on an idle connection: the upstream closed it (or sent something
    /// unasked); it is closed (which also takes it out of the epoll set).
    pub fn on_event(&mut self, token: u64) {
        let id = token & !POOL_FLAG;
        for list in self.idle.values_mut() {
            list.retain(|i| i.id != id);
        }
    }

    /// Closes connections idle past their deadline.
    pub fn expire(&mut self, now: Instant) {
        for list in self.idle.values_mut() {
            list.retain(|i| i.until > now);
        }
        self.idle.retain(|_, l| !l.is_empty());
    }

    /// Idle connections held (for tests of the fd invariant and for metrics).
    pub fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle connection (the worker is stopping).
    pub fn clear(&mut self) {
        self.idle.clear();
    }
}

/// An idle connection is usable when nothing is readable on it: EOF means the upstream
/// closed it, bytes mean it answered something we never asked.
fn alive(conn: &UpConn) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match conn.sock.peek(&mut probe) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}
