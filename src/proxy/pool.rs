//! The worker's upstream connections: non-blocking connect (TCP or unix socket), and the
//! pool of idle keep-alive connections per upstream, each with its idle deadline.
//!
//! Every upstream connection joins the worker's epoll set once, under a token of its own
//! ([`POOL_FLAG`] | its id), and stays there until it is closed: handing it from a session
//! to the pool and back costs no `epoll_ctl` (nginx keeps its upstream connections
//! registered the same way and only changes the handler). Who an event is for is decided
//! here, in [`Pool::on_event`]: a session that holds the connection (the `owners` map), or
//! the pool, for which any event on an idle connection means the upstream closed it (or
//! sent something unasked) and the connection is dropped at once. Idle connections past
//! their route's `keepalive_timeout` (below the app server's own) are closed on the
//! worker's tick. The small window where the upstream closes just as srvd reuses a
//! connection (its event still unread in the same batch) is covered by one retry of
//! idempotent requests on a fresh connection; non-idempotent ones never use the pool.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use rustc_hash::FxHashMap;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::route::Upstream;

/// What an upstream connection is registered in epoll for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Not in the epoll set yet.
    Unregistered,
    /// In the set with no events (only errors and hang-ups are reported).
    Off,
    Read,
    Write,
}

/// A connection to an upstream.
pub struct UpConn {
    pub sock: Socket,
    pub upstream: Upstream,
    /// Its epoll token is `POOL_FLAG | id`, for as long as it lives.
    pub id: u64,
    pub interest: Interest,
    /// The connect completed at once (a unix socket usually does): nothing to wait for.
    pub connected: bool,
}

impl UpConn {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn token(&self) -> u64 {
        POOL_FLAG | self.id
    }

    /// Makes the epoll registration match `want` (a no-op when it already does).
    pub fn watch(&mut self, epoll: &Epoll, want: Interest) -> nix::Result<()> {
        if want == self.interest {
            return Ok(());
        }
        let flags = match want {
            Interest::Read => EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
            Interest::Write => EpollFlags::EPOLLOUT,
            Interest::Off | Interest::Unregistered => EpollFlags::empty(),
        };
        let mut ev = EpollEvent::new(flags, self.token());
        if self.interest == Interest::Unregistered {
            epoll.add(self.sock.as_fd(), ev)?;
        } else {
            epoll.modify(self.sock.as_fd(), &mut ev)?;
        }
        self.interest = want;
        Ok(())
    }
}

/// Starts a non-blocking connect; the socket becomes writable when it is done (then
/// [`connect_result`] says how it went).
pub fn connect(upstream: &Upstream, id: u64) -> io::Result<UpConn> {
    let (domain, addr) = match upstream {
        Upstream::Tcp(a) => (Domain::for_address(*a), SockAddr::from(*a)),
        Upstream::Unix(p) => (Domain::UNIX, SockAddr::unix(p)?),
    };
    let sock = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)?;
    if matches!(upstream, Upstream::Tcp(_)) {
        sock.set_nodelay(true)?;
    }
    let connected = match sock.connect(&addr) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        // A unix socket's listen queue is full: like a refused connect, try later or elsewhere.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Err(e),
        Err(e) => return Err(e),
    };
    Ok(UpConn {
        sock,
        upstream: upstream.clone(),
        id,
        interest: Interest::Unregistered,
        connected,
    })
}

/// After the socket became writable: Ok when connected, else why not.
pub fn connect_result(conn: &UpConn) -> io::Result<()> {
    match conn.sock.take_error()? {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Flag of the epoll token of an upstream connection (the rest is its id). Connection
/// slots never reach bit 30, so it cannot be mistaken for a client connection.
pub const POOL_FLAG: u64 = 1 << 30;

struct Idle {
    conn: UpConn,
    until: Instant,
}

/// The upstream connections of a worker: the idle ones by upstream, and who holds the
/// others.
#[derive(Default)]
pub struct Pool {
    idle: FxHashMap<Upstream, Vec<Idle>>,
    /// Connection id → the epoll token of the client connection whose session holds it.
    owners: FxHashMap<u64, u64>,
    next_id: u64,
}

impl Pool {
    /// An id for a new connection (ids are not reused before 2^30 connections).
    pub fn new_id(&mut self) -> u64 {
        self.next_id = (self.next_id + 1) % (POOL_FLAG - 1);
        self.next_id
    }

    /// The newest idle connection to `upstream` within its idle time, now held by the
    /// client connection `owner`. Still registered for reading: an answer wakes `owner`.
    pub fn take(&mut self, upstream: &Upstream, now: Instant, owner: u64) -> Option<UpConn> {
        let list = self.idle.get_mut(upstream)?;
        while let Some(idle) = list.pop() {
            if idle.until > now {
                self.owners.insert(idle.conn.id, owner);
                return Some(idle.conn);
            }
        }
        None
    }

    /// Connection `id` (new, or retried) is held by the client connection `owner`.
    pub fn claim(&mut self, id: u64, owner: u64) {
        self.owners.insert(id, owner);
    }

    /// Connection `id` is no longer held by a session (it is being closed or pooled).
    pub fn release(&mut self, id: u64) {
        self.owners.remove(&id);
    }

    /// Keeps `conn` for reuse for `idle_for`, at most `max` per upstream (0: none kept),
    /// watched for reading so the upstream closing it is seen at once.
    pub fn put(
        &mut self,
        mut conn: UpConn,
        idle_for: Duration,
        max: usize,
        now: Instant,
        epoll: &Epoll,
    ) {
        self.release(conn.id);
        if max == 0 || conn.watch(epoll, Interest::Read).is_err() {
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
        });
    }

    /// An event on upstream connection `token`: the client connection to wake when a
    /// session holds it; `None` when it was idle (the upstream closed it, or sent
    /// something unasked: it is closed, which also takes it out of the epoll set) or is
    /// gone already.
    pub fn on_event(&mut self, token: u64) -> Option<u64> {
        let id = token & !POOL_FLAG;
        if let Some(owner) = self.owners.get(&id) {
            return Some(*owner);
        }
        for list in self.idle.values_mut() {
            list.retain(|i| i.conn.id != id);
        }
        None
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
        self.owners.clear();
    }
}
