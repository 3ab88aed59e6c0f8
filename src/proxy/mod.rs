//! Reverse proxy: a request on a `[[proxy]]` route becomes a [`Session`], one more explicit
//! state machine owned by the client connection and driven by the same epoll loop.
//!
//! ```text
//!  ReadingBody ──▶ Connecting ──▶ Sending ──▶ AwaitingHead ──▶ Relaying ──▶ (done)
//!   (client body      (non-blocking   (head +     (upstream head,    (upstream → memory →
//!    buffered whole;   connect, or a   body with   parsed strictly)   temp file → client)
//!    no upstream yet)  pooled conn)    Content-Length)
//! ```
//!
//! - The client's body is read completely (Content-Length or chunked, decoded) before any
//!   upstream connection is opened, and forwarded with a Content-Length: a slow uploader
//!   never holds an app worker, and no framing header of the client ever reaches the app.
//! - The upstream's response is read as fast as it comes: bytes the client cannot take yet
//!   go to memory (up to [`MEM_MAX`]) and then to an unlinked temp file, sent from there by
//!   sendfile. `X-Accel-Buffering: no` and `text/event-stream` switch to streaming: nothing
//!   is spilled and each piece is forwarded as it arrives.
//! - Framing toward the client is srvd's: the app's Content-Length when it sent one,
//!   otherwise chunked for HTTP/1.1 and close-delimited for HTTP/1.0.
//! - Errors before any byte reached the client are small complete responses from the
//!   site's error pages: 502 (refused, reset, bad framing, oversized head), 504 (timeout).
//!   After the head was sent, a broken upstream closes the client connection without the
//!   last chunk, so a truncated response never looks complete.
//! - An upstream connection goes back to the pool only after a complete, well-framed
//!   response that did not ask to close; otherwise it is closed.

pub mod pool;

use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::epoll::Epoll;

use crate::config::route::{Proxy, Upstream};
use crate::http::chunked::{self, Decoder};
use crate::http::response::Connection;
use crate::http::upstream::{self, Cidr, Forward, Framing};
use crate::http::{request, Method, Status};
use crate::site::Site;
use pool::{Pool, UpConn};

/// Response bytes held in memory per session before spilling to a temp file.
pub const MEM_MAX: usize = 256 * 1024;
/// Request body bytes held in memory; a larger body goes to a temp file.
pub const BODY_MEM: usize = 1024 * 1024;
/// Most bytes spilled to a temp file per response; past it the upstream is read only as
/// fast as the client takes the bytes.
pub const SPILL_MAX: u64 = 1 << 30;
/// Bytes read from the upstream per read call.
const READ_CHUNK: usize = 64 * 1024;
/// Flag the worker adds to a client connection's token when an event on its session's
/// upstream connection wakes it (never registered in epoll).
pub const UPSTREAM_FLAG: u64 = 1 << 31;

/// The per-worker state sessions share: the pool, the round-robin position, which
/// upstreams are skipped after a failure, and the log rate limit.
#[derive(Default)]
pub struct Upstreams {
    pub pool: Pool,
    next: usize,
    failed_until: rustc_hash::FxHashMap<Upstream, Instant>,
    last_log: rustc_hash::FxHashMap<Upstream, Instant>,
    /// Buffers of finished sessions (upstream reads, client queues), reused so a proxied
    /// request does not allocate and free 64 KiB each time.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept per worker, and the largest kept (a buffer that grew for a big
/// response is freed rather than held).
const SPARE_BUFS: usize = 64;
const SPARE_MAX: usize = 2 * READ_CHUNK;

impl Upstreams {
    fn take_buf(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn give_buf(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= SPARE_MAX && self.spare.len() < SPARE_BUFS {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Logs a failure of `upstream`, at most once a second per upstream.
    fn log_failure(&mut self, upstream: &Upstream, cause: &str, now: Instant) {
        let due = self
            .last_log
            .get(upstream)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
        if due {
            self.last_log.insert(upstream.clone(), now);
            crate::log::error(format_args!("upstream {upstream}: {cause}"));
        }
    }
}

/// What a session borrows from its connection and worker while it is driven.
pub struct Cx<'a> {
    pub client: &'a mut crate::worker::client::Client,
    /// The client came over TLS (`X-Forwarded-Proto: https`, the site's `hsts`).
    pub tls: bool,
    pub epoll: &'a Epoll,
    /// The client connection's epoll token (upstream connections have their own, see
    /// [`pool`]; the worker maps their events back to this one).
    pub token: u64,
    /// The client's socket woke this drive: while the session waits on the app the
    /// client is watched for hang-ups only, so that is when to check it went away.
    pub client_woke: bool,
    pub upstreams: &'a mut Upstreams,
    pub site: &'a Site,
    pub date: &'a [u8],
    pub now: Instant,
    pub trusted: &'a [Cidr],
}

/// What the connection should do after a drive.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for the client socket to be readable (more body).
    ClientReadable,
    /// Wait for the client socket to take more bytes.
    ClientWritable,
    /// Nothing to do on the client side: waiting on the upstream (client hang-ups still wake).
    Upstream,
    /// The response is complete; `close` says whether the client connection must close.
    Done { close: bool },
    /// Close the client connection now (it went away, or a response cannot be completed).
    Abort,
}

enum Phase {
    ReadingBody,
    Connecting,
    Sending,
    AwaitingHead,
    Relaying,
    /// After a 101: bytes copied both ways until either side closes.
    Tunnel,
    Finished,
}

/// How the client's request body is still to be read.
enum BodyIn {
    Done,
    Length(u64),
    Chunked(Decoder),
}

/// How the upstream's response body is still to be read.
enum BodyUp {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

/// Response bytes waiting for the client: memory first, then the spill file.
#[derive(Default)]
struct Queue {
    mem: Vec<u8>,
    pos: usize,
    spill: Option<Spill>,
    /// Bytes sent to the client so far.
    sent: u64,
}

struct Spill {
    file: File,
    read: u64,
    write: u64,
}

impl Queue {
    fn pending(&self) -> bool {
        self.pos < self.mem.len() || self.spill.as_ref().is_some_and(|s| s.read < s.write)
    }

    fn mem_backlog(&self) -> usize {
        self.mem.len() - self.pos
    }

    fn spilled(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.write - s.read)
    }

    /// Appends response bytes; past `MEM_MAX` in memory (or once spilling), to the file.
    fn push(&mut self, data: &[u8], may_spill: bool) -> io::Result<()> {
        let spilling = self.spill.as_ref().is_some_and(|s| s.read < s.write);
        if may_spill && (spilling || self.mem_backlog() + data.len() > MEM_MAX) {
            if self.spill.is_none() {
                self.spill = Some(Spill {
                    file: temp_file()?,
                    read: 0,
                    write: 0,
                });
            }
            let s = self.spill.as_mut().expect("just set");
            s.file.write_all_at(data, s.write)?;
            s.write += data.len() as u64;
            return Ok(());
        }
        if self.pos > 0 && self.pos == self.mem.len() {
            self.mem.clear();
            self.pos = 0;
        }
        self.mem.extend_from_slice(data);
        Ok(())
    }

    /// Sends what the client takes; Ok(true) when everything queued went out.
    fn flush(&mut self, client: &mut crate::worker::client::Client) -> io::Result<bool> {
        while self.pos < self.mem.len() {
            match client.send(&self.mem[self.pos..], false) {
                Ok(n) => {
                    self.pos += n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.mem.clear();
        self.pos = 0;
        if let Some(s) = self.spill.as_mut() {
            while s.read < s.write {
                let count = (s.write - s.read).min(4 << 20) as usize;
                match client.send_file(&s.file, s.read, count) {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    Ok(n) => {
                        s.read += n as u64;
                        self.sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // TLS records still waiting count as not sent yet.
        client.flush()
    }
}

/// An unlinked temp file: gone from the file system from the start, so nothing outlives
/// the worker.
/// The site's `hsts` on a response to a client over TLS (the app's and srvd's own).
fn add_hsts(cx: &Cx, head: &mut Vec<u8>) {
    if let (true, Some(value)) = (cx.tls, &cx.site.config.hsts) {
        crate::http::response::insert_field(head, b"Strict-Transport-Security", value.as_bytes());
    }
}

fn temp_file() -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(std::env::temp_dir())
}

/// One proxied request.
pub struct Session {
    route: Arc<Proxy>,
    phase: Phase,
    /// The client's request head, as received (re-parsed to build the upstream's).
    head: Vec<u8>,
    is_head: bool,
    idempotent: bool,
    /// The client asked to switch protocols (`Upgrade: websocket`): forwarded, and after
    /// the app's 101 both directions are tunnelled.
    upgrade: Option<Vec<u8>>,
    client_minor: u8,
    /// The client connection closes after this response.
    close: bool,
    peer: IpAddr,
    body_in: BodyIn,
    body: Vec<u8>,
    /// The body, once larger than [`BODY_MEM`]: an unlinked file and its length; `body_sent`
    /// of it went upstream.
    body_file: Option<(File, u64)>,
    body_sent: u64,
    /// Client bytes read past the request (a pipelined next request), handed back.
    leftover: Vec<u8>,
    up: Option<UpConn>,
    /// Which upstream of the route, and how many were tried.
    upstream_index: usize,
    tried: usize,
    reused: bool,
    retried: bool,
    out: Vec<u8>,
    out_pos: usize,
    resp: Vec<u8>,
    body_up: BodyUp,
    /// Re-chunk the body for the client.
    chunk_out: bool,
    streaming: bool,
    /// The upstream connection may go back to the pool once the response is complete.
    reusable: bool,
    queue: Queue,
    pub status: u16,
    /// The status the app answered with (0 until it did).
    upstream_status: u16,
    pub deadline: Instant,
    started: Instant,
    /// Deadline of the whole exchange (`timeout`), if set.
    total_deadline: Option<Instant>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("status", &self.status)
            .field("upstream", &self.route.upstreams.get(self.upstream_index))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for the request whose head is `head` (its `head_len` bytes), with
    /// `extra` client bytes already read behind it. `Err(status)` when the request is
    /// refused before anything starts (413 for a declared body over `max_body`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        route: Arc<Proxy>,
        req: &request::Request,
        head: &[u8],
        extra: &[u8],
        peer: IpAddr,
        close: bool,
        now: Instant,
    ) -> Result<Session, Status> {
        let body_in = match req.body {
            request::BodyFraming::None => BodyIn::Done,
            request::BodyFraming::Length(n) if n > route.max_body => {
                return Err(Status::PayloadTooLarge)
            }
            request::BodyFraming::Length(n) => BodyIn::Length(n),
            request::BodyFraming::Chunked => BodyIn::Chunked(Decoder::new(route.max_body)),
        };
        let idempotent = matches!(req.method_str, "GET" | "HEAD" | "OPTIONS");
        let mut s = Session {
            phase: Phase::ReadingBody,
            head: head.to_vec(),
            is_head: req.method == Method::Head,
            idempotent,
            upgrade: req.upgrade.map(<[u8]>::to_vec),
            client_minor: req.minor,
            close,
            peer,
            body_in,
            body: Vec::new(),
            body_file: None,
            body_sent: 0,
            leftover: Vec::new(),
            up: None,
            upstream_index: 0,
            tried: 0,
            reused: false,
            retried: false,
            out: Vec::new(),
            out_pos: 0,
            resp: Vec::new(),
            body_up: BodyUp::Done,
            chunk_out: false,
            streaming: false,
            reusable: false,
            queue: Queue::default(),
            status: 0,
            upstream_status: 0,
            deadline: now + route.read_timeout.max(route.send_timeout),
            started: now,
            total_deadline: route.timeout.map(|t| now + t),
            scratch: Vec::new(),
            route,
        };
        s.take_body(extra)?;
        Ok(s)
    }

    /// `Expect: 100-continue` with an acceptable length: the interim answer srvd gives
    /// in the app's place (the app never sees the expectation).
    pub fn continue_line(&self) -> Option<&'static [u8]> {
        matches!(self.phase, Phase::ReadingBody).then_some(b"HTTP/1.1 100 Continue\r\n\r\n")
    }

    /// Client bytes past this request, for the connection's next request.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }

    /// Bytes sent to the client (head included), for the access log.
    pub fn sent(&self) -> u64 {
        self.queue.sent
    }

    /// For the access log: the upstream as configured, the status it sent (0: none), the
    /// microseconds the exchange took and the attempts made.
    pub fn upstream_log(&self) -> Option<(String, u16, u64, u8)> {
        let up = self.route.upstreams.get(self.upstream_index)?;
        let tries = (self.tried + usize::from(self.retried)).clamp(1, 255) as u8;
        Some((
            up.to_string(),
            self.upstream_status,
            self.started.elapsed().as_micros() as u64,
            tries,
        ))
    }

    /// Feeds client body bytes; leftover past the body is kept for the next request.
    fn take_body(&mut self, mut data: &[u8]) -> Result<(), Status> {
        loop {
            match &mut self.body_in {
                BodyIn::Done => {
                    self.leftover.extend_from_slice(data);
                    if matches!(self.phase, Phase::ReadingBody) {
                        self.phase = Phase::Connecting;
                    }
                    return Ok(());
                }
                BodyIn::Length(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    let piece = &data[..n];
                    *left -= n as u64;
                    data = &data[n..];
                    Self::store_body(&mut self.body, &mut self.body_file, piece)
                        .map_err(|_| Status::InternalServerError)?;
                    let BodyIn::Length(left) = &self.body_in else {
                        unreachable!("matched above")
                    };
                    if *left == 0 {
                        self.body_in = BodyIn::Done;
                        continue;
                    }
                    return Ok(());
                }
                BodyIn::Chunked(dec) => {
                    let mut decoded = Vec::new();
                    let used = dec.decode(data, &mut decoded).map_err(|e| match e {
                        chunked::DecodeError::TooLarge => Status::PayloadTooLarge,
                        chunked::DecodeError::Malformed => Status::BadRequest,
                    })?;
                    let done = dec.is_done();
                    Self::store_body(&mut self.body, &mut self.body_file, &decoded)
                        .map_err(|_| Status::InternalServerError)?;
                    if done {
                        data = &data[used..];
                        self.body_in = BodyIn::Done;
                        continue;
                    }
                    let _ = used;
                    return Ok(());
                }
            }
        }
    }

    /// Keeps body bytes: in memory up to [`BODY_MEM`], then all of it in an unlinked temp
    /// file (sent to the app by sendfile).
    fn store_body(
        mem: &mut Vec<u8>,
        file: &mut Option<(File, u64)>,
        data: &[u8],
    ) -> io::Result<()> {
        if file.is_none() && mem.len() + data.len() <= BODY_MEM {
            mem.extend_from_slice(data);
            return Ok(());
        }
        if file.is_none() {
            let f = temp_file()?;
            f.write_all_at(mem, 0)?;
            *file = Some((f, mem.len() as u64));
            *mem = Vec::new();
        }
        let (f, len) = file.as_mut().expect("just set");
        f.write_all_at(data, *len)?;
        *len += data.len() as u64;
        Ok(())
    }

    /// Advances as far as the sockets allow.
    pub fn drive(&mut self, cx: &mut Cx) -> Step {
        let step = self.advance(cx);
        self.sync_interest(cx);
        // Progress pushes the idle deadlines; the total one (`timeout`) never moves.
        if let Some(t) = self.total_deadline {
            self.deadline = self.deadline.min(t);
        }
        step
    }

    fn advance(&mut self, cx: &mut Cx) -> Step {
        loop {
            if let Some(t) = self.total_deadline {
                self.deadline = self.deadline.min(t);
            }
            match self.phase {
                Phase::ReadingBody => {
                    let mut buf = [0u8; 16 * 1024];
                    match cx.client.read(&mut buf) {
                        Ok(0) => return Step::Abort,
                        Ok(n) => {
                            if let Err(status) = self.take_body(&buf[..n]) {
                                return self.fail(cx, status, true);
                            }
                            self.deadline = cx.now + self.route.read_timeout;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Step::ClientReadable
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Step::Abort,
                    }
                }
                Phase::Connecting => {
                    if self.up.is_none() {
                        if let Err(step) = self.open(cx) {
                            return step;
                        }
                        continue;
                    }
                    let up = self.up.as_ref().expect("opened");
                    if self.reused || up.connected {
                        self.phase = Phase::Sending;
                        self.deadline = cx.now + self.route.send_timeout;
                        continue;
                    }
                    // Connected when writable; until then the upstream is watched for it.
                    let mut probe = nix::poll::PollFd::new(up.fd(), nix::poll::PollFlags::POLLOUT);
                    let ready = nix::poll::poll(
                        std::slice::from_mut(&mut probe),
                        nix::poll::PollTimeout::ZERO,
                    )
                    .is_ok_and(|n| n > 0);
                    if !ready {
                        if self.client_gone(cx) {
                            return Step::Abort;
                        }
                        return Step::Upstream;
                    }
                    match pool::connect_result(up) {
                        Ok(()) => {
                            self.phase = Phase::Sending;
                            self.deadline = cx.now + self.route.send_timeout;
                        }
                        Err(e) => {
                            let failed = self.release_up(cx).expect("opened");
                            if let Err(step) = self.connect_failed(cx, &failed.upstream, &e) {
                                return step;
                            }
                        }
                    }
                }
                Phase::Sending => {
                    if self.out.is_empty() {
                        self.build_request(cx);
                    }
                    let up = self.up.as_ref().expect("connected");
                    while self.out_pos < self.out.len() {
                        match up.sock.send(&self.out[self.out_pos..]) {
                            Ok(n) => {
                                self.out_pos += n;
                                self.deadline = cx.now + self.route.send_timeout;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Step::Upstream
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                if let Some(step) = self.retry_or_fail(cx, &e.to_string()) {
                                    return step;
                                }
                                break;
                            }
                        }
                    }
                    if self.out_pos == self.out.len() && !self.out.is_empty() {
                        if let Some(len) = self.body_file.as_ref().map(|(_, l)| *l) {
                            while self.body_sent < len {
                                let mut off = self.body_sent as i64;
                                let count = (len - self.body_sent).min(4 << 20) as usize;
                                let (file, _) = self.body_file.as_ref().expect("checked");
                                let up = self.up.as_ref().expect("connected");
                                let sent = nix::sys::sendfile::sendfile64(
                                    up.fd(),
                                    file.as_fd(),
                                    Some(&mut off),
                                    count,
                                );
                                match sent {
                                    // The spill file is ours and complete: cannot happen.
                                    Ok(0) => {
                                        return self.fail(cx, Status::InternalServerError, false)
                                    }
                                    Ok(n) => {
                                        self.body_sent += n as u64;
                                        self.deadline = cx.now + self.route.send_timeout;
                                    }
                                    Err(nix::errno::Errno::EAGAIN) => return Step::Upstream,
                                    Err(nix::errno::Errno::EINTR) => {}
                                    Err(e) => {
                                        if let Some(step) = self.retry_or_fail(cx, &e.to_string()) {
                                            return step;
                                        }
                                        break;
                                    }
                                }
                            }
                            if self.body_sent < len {
                                continue;
                            }
                        }
                        self.out = Vec::new();
                        self.out_pos = 0;
                        self.phase = Phase::AwaitingHead;
                        self.deadline = cx.now + self.route.read_timeout;
                        if !self.reused {
                            // A fresh connection is mostly to an app that answers in its
                            // own time (gunicorn closes every one): a read now would only
                            // say EAGAIN. A pooled one to a fast upstream often has the
                            // answer already, so that one is read at once.
                            return Step::Upstream;
                        }
                    }
                }
                Phase::AwaitingHead => {
                    match self.read_upstream(cx) {
                        Ok(Some(0)) => {
                            if let Some(step) = self.retry_or_fail(cx, "closed before responding") {
                                return step;
                            }
                            continue;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            if self.client_gone(cx) {
                                return Step::Abort;
                            }
                            return Step::Upstream;
                        }
                        Err(e) => {
                            if let Some(step) = self.retry_or_fail(cx, &e.to_string()) {
                                return step;
                            }
                            continue;
                        }
                    }
                    if let Some(step) = self.parse_head(cx) {
                        return step;
                    }
                }
                Phase::Relaying => {
                    // Client first: what it takes frees room to read more.
                    let before = self.queue.sent;
                    match self.queue.flush(&mut *cx.client) {
                        Ok(_) => {}
                        Err(_) => return self.abort(cx),
                    }
                    if self.queue.sent > before {
                        // A slow client that keeps taking bytes is not a stalled upstream.
                        self.deadline = self.deadline.max(cx.now + self.route.send_timeout);
                    }
                    let done_up = matches!(self.body_up, BodyUp::Done);
                    if done_up {
                        if self.queue.pending() {
                            return Step::ClientWritable;
                        }
                        self.finish(cx);
                        return Step::Done { close: self.close };
                    }
                    if !self.room() {
                        return Step::ClientWritable;
                    }
                    match self.read_upstream(cx) {
                        Ok(Some(0)) => {
                            if matches!(self.body_up, BodyUp::UntilClose) {
                                self.body_up = BodyUp::Done;
                                self.reusable = false;
                                self.end_body();
                                continue;
                            }
                            // Closed inside the body: the client must not see it as complete.
                            return self.broken(cx, "closed in the middle of a response");
                        }
                        Ok(Some(_)) => {
                            let data = std::mem::take(&mut self.resp);
                            let ok = self.relay(&data);
                            self.resp = data;
                            self.resp.clear();
                            if !ok {
                                return self.broken(cx, "bad chunked framing");
                            }
                        }
                        Ok(None) => {
                            return if self.queue.pending() {
                                Step::ClientWritable
                            } else {
                                Step::Upstream
                            };
                        }
                        Err(_) => return self.abort(cx),
                    }
                }
                Phase::Tunnel => return self.tunnel(cx),
                Phase::Finished => return Step::Done { close: self.close },
            }
        }
    }

    /// Copies bytes both ways (client → `out` → upstream, upstream → queue → client) until
    /// either side closes; then the client connection closes.
    fn tunnel(&mut self, cx: &mut Cx) -> Step {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut progress = false;
            match self.queue.flush(&mut *cx.client) {
                Ok(_) => {}
                Err(_) => return self.abort(cx),
            }
            let up = self.up.as_ref().expect("tunnelling");
            while self.out_pos < self.out.len() {
                match up.sock.send(&self.out[self.out_pos..]) {
                    Ok(n) => {
                        self.out_pos += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.abort(cx),
                }
            }
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
                match cx.client.read(&mut buf) {
                    Ok(0) => return self.abort(cx),
                    Ok(n) => {
                        self.out.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.abort(cx),
                }
            }
            if !self.queue.pending() {
                match (&up.sock).read(&mut buf) {
                    Ok(0) => return self.abort(cx),
                    Ok(n) => {
                        if self.queue.push(&buf[..n], false).is_err() {
                            return self.abort(cx);
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.abort(cx),
                }
            }
            if progress {
                self.deadline = cx.now + self.route.read_timeout;
                continue;
            }
            // Blocked. Level-triggered epoll: a side is watched only for what it can do
            // next, or unread bytes would wake the loop again and again.
            return if self.queue.pending() {
                Step::ClientWritable
            } else if self.out_pos < self.out.len() {
                Step::Upstream
            } else {
                Step::ClientReadable
            };
        }
    }

    /// Picks an upstream (round robin, skipping recently failed ones) and a connection to
    /// it: pooled if one is idle, else a new non-blocking connect.
    fn open(&mut self, cx: &mut Cx) -> Result<(), Step> {
        let route = Arc::clone(&self.route);
        let ups = &route.upstreams;
        let n = ups.len();
        loop {
            if self.tried >= n {
                return Err(self.fail(cx, Status::BadGateway, false));
            }
            let first = self.tried == 0;
            let index = if first {
                let start = cx.upstreams.next;
                cx.upstreams.next = cx.upstreams.next.wrapping_add(1);
                // The first that is not marked failed, else the round-robin one anyway.
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| {
                        cx.upstreams
                            .failed_until
                            .get(&ups[i])
                            .is_none_or(|t| *t <= cx.now)
                    })
                    .unwrap_or(start % n)
            } else {
                (self.upstream_index + 1) % n
            };
            self.tried += 1;
            self.upstream_index = index;
            let upstream = &ups[index];
            // Non-idempotent requests go on a fresh connection: a pooled one may be closing.
            if self.idempotent && !self.retried {
                if let Some(conn) = cx.upstreams.pool.take(upstream, cx.now, cx.token) {
                    self.up = Some(conn);
                    self.reused = true;
                    return Ok(());
                }
            }
            let id = cx.upstreams.pool.new_id();
            match pool::connect(upstream, id) {
                Ok(conn) => {
                    cx.upstreams.pool.claim(id, cx.token);
                    self.up = Some(conn);
                    self.reused = false;
                    self.deadline = cx.now + self.route.connect_timeout;
                    return Ok(());
                }
                Err(e) => self.connect_failed(cx, upstream, &e)?,
            }
        }
    }

    /// A connect failed (nothing was sent, so another server is always safe).
    fn connect_failed(
        &mut self,
        cx: &mut Cx,
        upstream: &Upstream,
        e: &io::Error,
    ) -> Result<(), Step> {
        cx.upstreams
            .log_failure(upstream, &format!("connect failed: {e}"), cx.now);
        cx.upstreams
            .failed_until
            .insert(upstream.clone(), cx.now + self.route.fail_timeout);
        if self.tried >= self.route.upstreams.len() {
            return Err(self.fail(cx, Status::BadGateway, false));
        }
        Ok(())
    }

    /// A failure while sending or before the first response byte. A reused connection
    /// may have been closed by the upstream just then: an idempotent request is sent once
    /// more on a fresh connection. Otherwise 502. `None` when a retry was started.
    fn retry_or_fail(&mut self, cx: &mut Cx, cause: &str) -> Option<Step> {
        let dead = self.release_up(cx);
        if self.reused && self.idempotent && !self.retried && self.resp.is_empty() {
            self.retried = true;
            self.reused = false;
            self.body_sent = 0;
            self.out.clear();
            self.out_pos = 0;
            self.phase = Phase::Connecting;
            // Same upstream, fresh connection.
            let upstream = self.route.upstreams[self.upstream_index].clone();
            let id = cx.upstreams.pool.new_id();
            match pool::connect(&upstream, id) {
                Ok(conn) => {
                    cx.upstreams.pool.claim(id, cx.token);
                    self.up = Some(conn);
                    self.deadline = cx.now + self.route.connect_timeout;
                    return None;
                }
                Err(e) => {
                    cx.upstreams
                        .log_failure(&upstream, &format!("connect failed: {e}"), cx.now);
                    return Some(self.fail(cx, Status::BadGateway, false));
                }
            }
        }
        if let Some(d) = &dead {
            cx.upstreams.log_failure(&d.upstream, cause, cx.now);
        }
        Some(self.fail(cx, Status::BadGateway, false))
    }

    /// The upstream request: the client's head re-parsed and filtered, then the body.
    fn build_request(&mut self, cx: &Cx) {
        let head = std::mem::take(&mut self.head);
        let Ok(Some(req)) = request::parse(&head) else {
            // It parsed once already; nothing else can happen.
            self.head = head;
            return;
        };
        let mut headers: [httparse::Header; request::MAX_HEADERS] =
            [httparse::EMPTY_HEADER; request::MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let _ = parsed.parse(&head);
        let lines: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
        let (target, prefix) = match self.route.prefix() {
            Some(prefix) => {
                let rest = &req.target[prefix.len().min(req.target.len())..];
                let rest = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("/{rest}")
                };
                (rest, Some(prefix))
            }
            None => (req.target.to_owned(), None),
        };
        let has_body = !matches!(req.body, request::BodyFraming::None);
        let body_len = match &self.body_file {
            Some((_, len)) => *len,
            None => self.body.len() as u64,
        };
        let forward = Forward {
            method: req.method_str,
            target: &target,
            headers: &lines,
            peer: self.peer,
            peer_trusted: cx.trusted.iter().any(|c| c.contains(self.peer)),
            proto: if cx.tls { "https" } else { "http" },
            prefix,
            body_len: has_body.then_some(body_len),
        };
        self.out.clear();
        upstream::write_request(&forward, &mut self.out);
        if let Some(protocol) = &self.upgrade {
            // The one hop-by-hop exchange forwarded: the switch the client asked for.
            self.out.truncate(self.out.len() - 2);
            self.out
                .extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
            self.out.extend_from_slice(protocol);
            self.out.extend_from_slice(b"\r\n\r\n");
        }
        self.out.extend_from_slice(&self.body);
        self.out_pos = 0;
        self.head = head;
    }

    /// Reads from the upstream into `resp`: Some(0) at EOF, Some(n) bytes, None would block.
    fn read_upstream(&mut self, cx: &mut Cx) -> io::Result<Option<usize>> {
        if self.resp.capacity() == 0 {
            self.resp = cx.upstreams.take_buf();
        }
        let up = self.up.as_ref().expect("connected");
        match crate::sys::io::read_append(&up.sock, &mut self.resp, READ_CHUNK) {
            Ok(n) => {
                self.deadline = cx.now + self.route.read_timeout;
                Ok(Some(n))
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            },
        }
    }

    /// Parses the upstream's head once complete; builds the client's head. `Some(step)`
    /// ends the drive.
    fn parse_head(&mut self, cx: &mut Cx) -> Option<Step> {
        let max = self.route.max_response_head;
        let parsed = upstream::parse_response(&self.resp, self.is_head, max);
        let head = match parsed {
            Ok(None) => {
                if self.resp.len() > max {
                    return Some(self.bad_upstream(cx, "response head too large"));
                }
                return None;
            }
            Err(upstream::UpstreamError::TooLarge) => {
                return Some(self.bad_upstream(cx, "response head too large"))
            }
            Err(upstream::UpstreamError::Malformed) => {
                return Some(self.bad_upstream(cx, "malformed response head"))
            }
            Ok(Some(h)) => h,
        };
        if head.is_interim() {
            // An interim response (100 Continue): srvd answered the client's expectation
            // itself; skip it.
            let n = head.head_len;
            self.resp.drain(..n);
            return None;
        }
        self.status = head.status;
        self.upstream_status = head.status;
        // The client's head goes straight into the (empty) queue, the body behind it.
        let mut out = std::mem::take(&mut self.queue.mem);
        if out.capacity() == 0 {
            out = cx.upstreams.take_buf();
        }
        out.clear();
        self.queue.pos = 0;
        out.reserve(self.resp.len() + 64);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(head.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.reason.as_bytes());
        let connection_names = upstream::connection_names(&head.headers);
        for (name, value) in &head.headers {
            if upstream::is_hop_by_hop(name, &connection_names) {
                continue;
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
        }
        if head.status == 101 {
            let Some(protocol) = head
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
                .map(|(_, v)| v.to_vec())
                .filter(|_| self.upgrade.is_some())
            else {
                return Some(self.bad_upstream(cx, "101 without an upgrade asked for"));
            };
            out.extend_from_slice(b"\r\nConnection: upgrade\r\nUpgrade: ");
            out.extend_from_slice(&protocol);
            out.extend_from_slice(b"\r\n\r\n");
            let rest = self.resp.split_off(head.head_len);
            self.resp.clear();
            self.close = true;
            self.reusable = false;
            if self.queue.push(&out, false).is_err() || self.queue.push(&rest, false).is_err() {
                return Some(self.abort(cx));
            }
            // Client bytes that came behind the request are the tunnel's first bytes.
            let early = std::mem::take(&mut self.leftover);
            self.out = early;
            self.out_pos = 0;
            self.phase = Phase::Tunnel;
            return None;
        }
        self.streaming = head.streaming;
        self.body_up = match head.framing {
            Framing::None => BodyUp::Done,
            Framing::Length(0) => BodyUp::Done,
            Framing::Length(n) => BodyUp::Length(n),
            Framing::Chunked => BodyUp::Chunked(Decoder::new(u64::MAX)),
            Framing::UntilClose => BodyUp::UntilClose,
        };
        self.reusable = !head.close && !matches!(head.framing, Framing::UntilClose);
        match head.framing {
            Framing::Length(n) => {
                out.extend_from_slice(b"\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            Framing::None => {
                // HEAD: the length a GET would have; 204/304: nothing.
                if let Some(n) = head.content_length.filter(|_| self.is_head) {
                    out.extend_from_slice(b"\r\nContent-Length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                }
            }
            Framing::Chunked | Framing::UntilClose if self.client_minor >= 1 => {
                out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
                self.chunk_out = true;
            }
            Framing::Chunked | Framing::UntilClose => {
                // HTTP/1.0 has no chunks: the body ends with the connection.
                self.close = true;
            }
        }
        if self.close {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if self.client_minor == 0 {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        out.extend_from_slice(b"\r\n\r\n");
        add_hsts(cx, &mut out);
        self.queue.mem = out;
        let body_start = head.head_len;
        self.phase = Phase::Relaying;
        let data = std::mem::take(&mut self.resp);
        let ok = if matches!(self.body_up, BodyUp::Done) {
            self.end_body();
            if data.len() > body_start {
                self.reusable = false;
            }
            true
        } else {
            data.len() == body_start || self.relay(&data[body_start..])
        };
        self.resp = data;
        self.resp.clear();
        if !ok {
            return Some(self.broken(cx, "bad chunked framing"));
        }
        None
    }

    /// Body bytes from the upstream, framed for the client; false when they cannot be.
    fn relay(&mut self, data: &[u8]) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        let ok = self.relay_inner(data, &mut scratch);
        scratch.clear();
        self.scratch = scratch;
        ok
    }

    fn relay_inner(&mut self, data: &[u8], decoded: &mut Vec<u8>) -> bool {
        let plain: &[u8] = match &mut self.body_up {
            BodyUp::Done => {
                // Bytes after a complete response: the connection is not clean.
                self.reusable = false;
                return true;
            }
            BodyUp::Length(left) => {
                let n = (*left).min(data.len() as u64) as usize;
                *left -= n as u64;
                if data.len() > n {
                    self.reusable = false;
                }
                &data[..n]
            }
            BodyUp::Chunked(dec) => {
                let used = match dec.decode(data, decoded) {
                    Ok(used) => used,
                    Err(_) => return false,
                };
                if used < data.len() {
                    self.reusable = false;
                }
                decoded
            }
            BodyUp::UntilClose => data,
        };
        let finished = match &self.body_up {
            BodyUp::Length(0) => true,
            BodyUp::Chunked(dec) => dec.is_done(),
            _ => false,
        };
        let may_spill = !self.streaming;
        let pushed = if self.chunk_out {
            let mut framed = Vec::with_capacity(plain.len() + 16);
            chunked::encode_chunk(plain, &mut framed);
            self.queue.push(&framed, may_spill)
        } else {
            self.queue.push(plain, may_spill)
        };
        if pushed.is_err() {
            return false;
        }
        if finished {
            self.body_up = BodyUp::Done;
            self.end_body();
        }
        true
    }

    /// The upstream body is complete: the last chunk for a re-chunked body.
    fn end_body(&mut self) {
        if self.chunk_out {
            let _ = self.queue.push(chunked::LAST_CHUNK, !self.streaming);
            self.chunk_out = false;
        }
    }

    /// Response complete: the upstream connection back to the pool when clean.
    fn finish(&mut self, cx: &mut Cx) {
        self.phase = Phase::Finished;
        cx.upstreams.give_buf(std::mem::take(&mut self.resp));
        if !self.queue.pending() {
            cx.upstreams.give_buf(std::mem::take(&mut self.queue.mem));
            self.queue.pos = 0;
        }
        if let Some(up) = self.release_up(cx) {
            if self.reusable {
                cx.upstreams.pool.put(
                    up,
                    self.route.keepalive_timeout,
                    self.route.keepalive,
                    cx.now,
                    cx.epoll,
                );
            }
        }
    }

    /// A bad upstream response before anything reached the client: 502.
    fn bad_upstream(&mut self, cx: &mut Cx, cause: &str) -> Step {
        if let Some(up) = self.release_up(cx) {
            cx.upstreams.log_failure(&up.upstream, cause, cx.now);
        }
        self.fail(cx, Status::BadGateway, false)
    }

    /// Answers with an error of srvd's own (the site's error pages apply) and drops the
    /// upstream connection. The client connection stays usable when its request was read
    /// whole and nothing was sent yet.
    fn fail(&mut self, cx: &mut Cx, status: Status, body_unread: bool) -> Step {
        self.release_up(cx);
        if self.queue.sent > 0 {
            return self.abort(cx);
        }
        // Whatever was queued (a relayed head) never left: replace it with the error.
        self.queue = Queue::default();
        self.chunk_out = false;
        self.status = status.code();
        if body_unread {
            self.close = true;
        }
        let conn = if self.close {
            Connection::Close
        } else if self.client_minor == 0 {
            Connection::KeepAlive
        } else {
            Connection::Default
        };
        let mut out = Vec::new();
        let outcome = crate::static_files::error_reply(
            cx.site,
            None,
            status,
            self.is_head,
            cx.date,
            conn,
            &mut out,
        );
        self.close |= outcome.close;
        add_hsts(cx, &mut out);
        let _ = self.queue.push(&out, false);
        self.body_up = BodyUp::Done;
        self.phase = Phase::Relaying;
        match self.queue.flush(&mut *cx.client) {
            Ok(true) => {
                self.phase = Phase::Finished;
                Step::Done { close: self.close }
            }
            Ok(false) => Step::ClientWritable,
            Err(_) => Step::Abort,
        }
    }

    /// The upstream broke the response: a 502 when nothing reached the client yet, else
    /// the client connection is cut so the truncation shows.
    fn broken(&mut self, cx: &mut Cx, cause: &str) -> Step {
        if let Some(up) = &self.up {
            let up = up.upstream.clone();
            cx.upstreams.log_failure(&up, cause, cx.now);
        }
        if self.queue.sent > 0 {
            return self.abort(cx);
        }
        self.close = true;
        self.fail(cx, Status::BadGateway, false)
    }

    /// Gives up on the client connection; the upstream connection is closed with it.
    fn abort(&mut self, cx: &mut Cx) -> Step {
        self.release_up(cx);
        self.phase = Phase::Finished;
        Step::Abort
    }

    /// Lets go of the upstream connection: no longer this session's, so its events wake
    /// nobody; closed when dropped unless the caller pools it.
    fn release_up(&mut self, cx: &mut Cx) -> Option<UpConn> {
        let up = self.up.take()?;
        cx.upstreams.pool.release(up.id);
        Some(up)
    }

    /// The id of the upstream connection held, for the worker to release when it closes
    /// the client connection in the middle of the session.
    pub fn upstream_id(&self) -> Option<u64> {
        self.up.as_ref().map(|u| u.id)
    }

    /// The deadline passed (connect, send, read idle, or total): 504 if nothing was sent
    /// yet, else the client connection is cut.
    pub fn on_timeout(&mut self, cx: &mut Cx) -> Step {
        if let Some(up) = &self.up {
            let what = match self.phase {
                Phase::Connecting => "connect timed out",
                Phase::Sending => "send timed out",
                _ => "read timed out",
            };
            let up = up.upstream.clone();
            cx.upstreams.log_failure(&up, what, cx.now);
        }
        if matches!(self.phase, Phase::ReadingBody) {
            return self.fail(cx, Status::RequestTimeout, true);
        }
        self.close = true;
        let step = self.fail(cx, Status::GatewayTimeout, false);
        self.sync_interest(cx);
        step
    }

    /// Which deadline passed when [`Session::on_timeout`] is due (for the timeout
    /// counters): the client's body, the whole exchange (`timeout`), or what the phase
    /// waits for; relaying a response the app has finished (or that has no room left),
    /// the wait is the client's.
    pub fn timeout_kind(&self, now: Instant) -> crate::metrics::Timeout {
        use crate::metrics::Timeout;
        if matches!(self.phase, Phase::ReadingBody) {
            return Timeout::Body;
        }
        if self.total_deadline.is_some_and(|t| now >= t) {
            return Timeout::UpstreamTotal;
        }
        match self.phase {
            Phase::Connecting => Timeout::UpstreamConnect,
            Phase::Sending => Timeout::UpstreamSend,
            Phase::Relaying
                if self.queue.pending()
                    && (matches!(self.body_up, BodyUp::Done) || !self.room()) =>
            {
                Timeout::Send
            }
            _ => Timeout::UpstreamRead,
        }
    }

    /// Still reading the client's request body (the connection gauges count it as
    /// reading, the rest of a session as writing).
    pub fn reading_body(&self) -> bool {
        matches!(self.phase, Phase::ReadingBody)
    }

    /// The client went away while the upstream works (a peek sees EOF). Only looked at
    /// when the client's socket woke the drive (it is watched for hang-ups only then).
    fn client_gone(&self, cx: &Cx) -> bool {
        if !cx.client_woke {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(
            nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&cx.client.stream),
                &mut probe,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT
            ),
            Ok(0)
        )
    }

    /// Room for more of the upstream's body: streaming keeps at most one read in memory;
    /// buffering spills up to [`SPILL_MAX`].
    fn room(&self) -> bool {
        if self.streaming {
            self.queue.mem_backlog() < READ_CHUNK
        } else {
            self.queue.spilled() < SPILL_MAX
        }
    }

    /// Registers the upstream fd for what the current phase waits on.
    fn sync_interest(&mut self, cx: &Cx) {
        use pool::Interest;
        let want = match self.phase {
            Phase::Connecting | Phase::Sending => Interest::Write,
            Phase::AwaitingHead => Interest::Read,
            // Read only with room for what comes (else the readable upstream would wake the
            // loop without being read).
            Phase::Relaying if !matches!(self.body_up, BodyUp::Done) && self.room() => {
                Interest::Read
            }
            Phase::Tunnel if self.out_pos < self.out.len() => Interest::Write,
            Phase::Tunnel if self.queue.pending() => Interest::Off,
            Phase::Tunnel => Interest::Read,
            _ => Interest::Off,
        };
        if let Some(up) = &mut self.up {
            // A failed epoll_ctl leaves the interest as it was: the deadline still ends it.
            let _ = up.watch(cx.epoll, want);
        }
    }
}
