//! The admin listener (`[admin] listen`): `/health` and `/metrics`, served by the master
//! from its poll loop.
//!
//! Why the master: it is the one process that outlives every worker (so a drain can be
//! reported until the end, and a crashed worker's counts can be kept), it already reads
//! the scoreboard, and it never serves sites, so the admin traffic can neither be counted
//! as site requests nor queue behind them.
//!
//! Why it cannot block the master: every socket is non-blocking and polled with the
//! signal pipe; a connection gets one request, one response and the close, all within
//! [`DEADLINE`] of its accept, and at most [`MAX_CONNS`] are open at once (past that the
//! listener is not polled and new clients wait in its backlog). A client that sends
//! nothing, trickles, or reads nothing holds one of those places for at most the
//! deadline.
//!
//! - `GET`/`HEAD /health`: 200 `ok` while the current generation has a worker that
//!   serves; 503 `stopping` from the start of a stop until the master exits (the listener
//!   stays open through the drain, so a load balancer sees the node go), 503
//!   `unavailable` while no worker of the current generation serves (starting, or all
//!   crashed and being replaced).
//! - `GET`/`HEAD /metrics`: the Prometheus text format (`metrics::text`).
//! - Any other path: 404; any other method: 405.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::config::admin::AdminListen;
use crate::http::request::{self, Method};
use crate::http::Status;

/// Admin connections open at once.
pub const MAX_CONNS: usize = 32;
/// From accept to close: one request, one response.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// What `/health` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// No worker of the current generation serves: still starting, or all of them died
    /// and are being replaced.
    Unavailable,
    /// A stop began: draining, then exiting.
    Stopping,
}

/// A bound admin listener.
pub struct Listener {
    pub addr: AdminListen,
    socket: Socket,
}

enum Socket {
    Tcp(TcpListener),
    /// The socket file is removed when the listener is dropped by the process that
    /// bound it (a forked worker never drops it: it leaves through `process::exit`).
    Unix {
        socket: UnixListener,
        path: PathBuf,
        owner: u32,
    },
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Socket::Unix { path, owner, .. } = self {
            if *owner == std::process::id() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Listener {
    /// Binds `addr`, non-blocking. A unix socket file left behind by an earlier run (it
    /// refuses connections) is replaced; one that a live process accepts on is not.
    pub fn bind(addr: &AdminListen) -> io::Result<Listener> {
        let socket = match addr {
            AdminListen::Tcp(a) => Socket::Tcp(crate::sys::socket::bind_listener(*a)?),
            AdminListen::Unix(path) => {
                let socket = match UnixListener::bind(path) {
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse && stale_socket(path) => {
                        std::fs::remove_file(path)?;
                        UnixListener::bind(path)?
                    }
                    other => other?,
                };
                socket.set_nonblocking(true)?;
                Socket::Unix {
                    socket,
                    path: path.clone(),
                    owner: std::process::id(),
                }
            }
        };
        Ok(Listener {
            addr: addr.clone(),
            socket,
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix { socket, .. } => socket.as_fd(),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        let stream = match &self.socket {
            Socket::Tcp(l) => Stream::Tcp(l.accept()?.0),
            Socket::Unix { socket, .. } => Stream::Unix(socket.accept()?.0),
        };
        match &stream {
            Stream::Tcp(s) => s.set_nonblocking(true)?,
            Stream::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(stream)
    }
}

/// A socket file nobody accepts on.
fn stale_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && UnixStream::connect(path).is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

/// One admin connection: reading its request head, then writing the answer.
struct Conn {
    stream: Stream,
    head: Vec<u8>,
    /// The answer, once the head is in; `out[pos..]` is still to send.
    out: Option<Vec<u8>>,
    pos: usize,
    deadline: Instant,
}

/// The admin listener (if configured) and its connections.
#[derive(Default)]
pub struct Admin {
    pub listener: Option<Listener>,
    conns: Vec<Conn>,
}

impl Admin {
    pub fn new(listener: Option<Listener>) -> Admin {
        Admin {
            listener,
            conns: Vec::new(),
        }
    }

    /// The fds to poll and what for: the listener while there is room, then each
    /// connection (readable while reading, writable while writing).
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        if let Some(l) = self
            .listener
            .as_ref()
            .filter(|_| self.conns.len() < MAX_CONNS)
        {
            fds.push((l.fd(), PollFlags::POLLIN));
        }
        for c in &self.conns {
            let want = if c.out.is_some() {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push((c.stream.fd(), want));
        }
        fds
    }

    /// The earliest connection deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|c| c.deadline).min()
    }

    /// Acts on a poll: `ready[i]` says whether the i-th fd of [`Admin::poll_fds`] woke.
    /// `answer` turns a complete request head into response bytes. Then drops the
    /// connections past their deadline.
    pub fn on_ready(
        &mut self,
        ready: &[bool],
        now: Instant,
        answer: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    ) {
        let listening = self.listener.is_some() && self.conns.len() < MAX_CONNS;
        let (listener_woke, conns_woke) = if listening {
            (ready.first().copied().unwrap_or(false), ready.get(1..))
        } else {
            (false, Some(ready))
        };
        let woke: Vec<bool> = conns_woke.unwrap_or_default().to_vec();
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if woke.get(i).copied().unwrap_or(false) && !conn.step(answer) {
                conn.deadline = now; // done or failed: dropped below
            }
        }
        self.conns.retain(|c| c.deadline > now);
        if listener_woke {
            self.accept(now, answer);
        }
    }

    /// Accepts while there is room; each new connection is read at once (its request is
    /// usually there already).
    fn accept(&mut self, now: Instant, answer: &mut dyn FnMut(&[u8]) -> Vec<u8>) {
        let Some(listener) = &self.listener else {
            return;
        };
        while self.conns.len() < MAX_CONNS {
            match listener.accept() {
                Ok(stream) => {
                    let mut conn = Conn {
                        stream,
                        head: Vec::new(),
                        out: None,
                        pos: 0,
                        deadline: now + DEADLINE,
                    };
                    if conn.step(answer) {
                        self.conns.push(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: the backlog is empty. Anything else (EMFILE, ECONNABORTED):
                // try again at the next wake-up rather than spin here.
                Err(_) => return,
            }
        }
    }
}

impl Conn {
    /// Reads or writes as far as the socket allows; false once the connection is done.
    fn step(&mut self, answer: &mut dyn FnMut(&[u8]) -> Vec<u8>) -> bool {
        if self.out.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.head.extend_from_slice(&buf[..n]);
                        if complete(&self.head) {
                            self.out = Some(answer(&self.head));
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        }
        let out = self.out.as_ref().expect("set above");
        while self.pos < out.len() {
            match self.stream.write(&out[self.pos..]) {
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.stream.shutdown();
        false
    }
}

/// Whether `head` holds a whole request head, a broken one, or more than may be read:
/// in each case there is something to answer.
fn complete(head: &[u8]) -> bool {
    head.len() >= MAX_HEAD || !matches!(request::parse(head), Ok(None))
}

/// The response to a request head (see the module docs). `metrics` renders the
/// exposition; it is called only for `/metrics`.
pub fn respond(head: &[u8], health: Health, metrics: impl FnOnce() -> String) -> Vec<u8> {
    let req = match request::parse(head) {
        Ok(Some(req)) => req,
        Ok(None) => return reply(Status::HeaderFieldsTooLarge, "text/plain", b"", false),
        Err(e) => return reply(e.status(), "text/plain", b"", false),
    };
    let is_head = req.method == Method::Head;
    let path = req.target.split('?').next().unwrap_or("");
    let route = match path {
        "/health" => Route::Health,
        "/metrics" => Route::Metrics,
        _ => Route::Other,
    };
    if !matches!(req.method, Method::Get | Method::Head) {
        return reply(Status::MethodNotAllowed, "text/plain", b"", false);
    }
    match route {
        Route::Health => {
            let (status, body): (Status, &[u8]) = match health {
                Health::Serving => (Status::Ok, b"ok\n"),
                Health::Unavailable => (Status::ServiceUnavailable, b"unavailable\n"),
                Health::Stopping => (Status::ServiceUnavailable, b"stopping\n"),
            };
            reply(status, "text/plain; charset=utf-8", body, is_head)
        }
        Route::Metrics => reply(
            Status::Ok,
            crate::metrics::text::CONTENT_TYPE,
            metrics().as_bytes(),
            is_head,
        ),
        Route::Other => reply(
            Status::NotFound,
            "text/plain; charset=utf-8",
            b"not found\n",
            is_head,
        ),
    }
}

enum Route {
    Health,
    Metrics,
    Other,
}

/// A complete response with `Connection: close` (one request per admin connection).
fn reply(status: Status, content_type: &str, body: &[u8], is_head: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"\r\nServer: srvd\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\n");
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    if !is_head {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(head: &str, health: Health) -> String {
        String::from_utf8(respond(head.as_bytes(), health, || "m 1\n".into())).unwrap()
    }

    #[test]
    fn health_follows_the_state() {
        let ok = get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", Health::Serving);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
        assert!(ok.contains("Content-Length: 3\r\n"));
        let stopping = get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", Health::Stopping);
        assert!(stopping.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(stopping.ends_with("stopping\n"));
        let starting = get("GET /health?probe=1 HTTP/1.0\r\n\r\n", Health::Unavailable);
        assert!(starting.starts_with("HTTP/1.1 503 "));
        // HEAD: the same head, no body.
        let head = get("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", Health::Serving);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Content-Length: 3\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn metrics_other_paths_and_methods() {
        let m = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Health::Stopping);
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(m.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(m.ends_with("\r\n\r\nm 1\n"));
        let nf = get("GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", Health::Serving);
        assert!(nf.starts_with("HTTP/1.1 404 "));
        let post = get(
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            Health::Serving,
        );
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        let weird = get("BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", Health::Serving);
        assert!(weird.starts_with("HTTP/1.1 405 "), "{weird}");
        let bad = get("GET /health HTTP/1.1\r\n\r\n", Health::Serving);
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        // The renderer is not even called for other paths.
        let out = respond(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            Health::Serving,
            || panic!("not for /health"),
        );
        assert!(out.starts_with(b"HTTP/1.1 200"));
    }

    #[test]
    fn a_head_is_complete_when_parsed_broken_or_too_long() {
        assert!(!complete(b"GET /health HTTP/1.1\r\nHost: x\r\n"));
        assert!(complete(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(complete(b"\x01\x02 junk\r\n\r\n"));
        assert!(complete(&vec![b'a'; MAX_HEAD]));
    }
}
