//! One client connection: an explicit state machine driven by readiness events.
//!
//! ```text
//!             read + parse                 response written, keep-alive
//!   ReadingHead ─────────────▶ Writing ───────────────────────────────▶ ReadingHead
//!        │ EOF, error                │ written, must close
//!        ▼                           ▼
//!      (closed)  ◀── EOF/timeout ── Lingering  (write side shut, reading until the peer closes)
//! ```
//!
//! [`Conn::drive`] advances the state as far as the socket allows and returns what the
//! connection waits for next ([`Wait`]). Epoll is level-triggered: a connection is
//! registered for EPOLLIN, and switched to EPOLLOUT only while a write is blocked, so a
//! keep-alive request costs one `read` and one `write`.
//!
//! Metrics (`crate::metrics`): a request is counted, under its site's label and status
//! class, when its response is complete (where its access-log line is written); bytes are
//! counted as each send returns; a deadline is counted by what it waited for.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::client::Client;
use crate::config::site::LogFormat;
use crate::config::Config;
use crate::http::body::BodySkipper;
use crate::http::date::DateCache;
use crate::http::request::{self, BodyFraming, Request, MAX_HEAD};
use crate::http::response::Connection;
use crate::http::{Method, Status};
use crate::log::{AccessLog, LineEnd, LineStart};
use crate::metrics::{ConnClass, Recorder, Timeout};
use crate::site::{Selected, Site, Sites};
use crate::static_files::{self, Body, Chunk, Files};

/// Initial read buffer: enough for any ordinary request head.
const READ_BUF: usize = 4 * 1024;
/// Initial response buffer: a head plus a small file body (it grows as needed and is
/// pooled, so it grows once per buffer, not once per request).
const OUT_BUF: usize = 4 * 1024;
/// Largest request body that is read and thrown away to keep the connection usable;
/// past it the answer is 413 and the connection closes. A static server has no use for
/// bodies, so this only needs to cover clients that send small ones by habit.
pub const MAX_DISCARD_BODY: u64 = 1024 * 1024;
/// How long a closing connection keeps reading (and discarding) after its final response
/// before it is closed for good, so unread input does not turn our FIN into a RST.
const LINGER: Duration = Duration::from_secs(2);
/// Largest single sendfile call: bounds how long one connection holds the loop (about
/// 2 ms at loopback speed; the socket buffer usually ends a call sooner). Larger chunks
/// mean fewer wake-ups per large file; 4 MiB measured on par with nginx and lighttpd for
/// 10 MiB downloads, 512 KiB slightly behind (within noise).
const SENDFILE_CHUNK: usize = 4 * 1024 * 1024;

/// Where a connection is in its life.
#[derive(Debug)]
pub enum ConnState {
    /// Waiting for (the rest of) a request head; may be discarding a previous body first.
    ReadingHead,
    /// Sending `out[out_pos..]`, then `body`.
    Writing { body: Body, close: bool },
    /// Final response sent and write side shut: read and discard until EOF or deadline.
    Lingering,
    /// A proxy route's request, handed to an application server ([`crate::proxy`]).
    Proxying(Box<crate::proxy::Session>, usize),
}

/// What a connection needs before it can make progress again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Readable,
    Writable,
    /// Nothing from this socket but its hang-up (a proxy session waits on its upstream).
    Hangup,
    /// Done: deregister and drop.
    Close,
}

/// Everything a connection borrows from its worker while it is being driven.
pub struct Ctx<'a> {
    /// The process-wide settings (timeouts).
    pub config: &'a Config,
    pub epoll: &'a nix::sys::epoll::Epoll,
    /// This connection's epoll token (proxy sessions register their upstream side with it).
    pub token: u64,
    /// The client socket's event woke this drive (not the upstream's).
    pub client_woke: bool,
    pub upstreams: &'a mut crate::proxy::Upstreams,
    pub sites: &'a Sites,
    pub files: &'a mut Files,
    pub date: &'a DateCache,
    /// The access logs; each site names its own by index.
    pub logs: &'a mut [AccessLog],
    pub pool: &'a mut BufPool,
    pub now: Instant,
    pub draining: bool,
    /// This worker's counters.
    pub metrics: Recorder,
}

/// Pending log line pieces: `[..referer_at]` is the line start, then referer, then agent.
#[derive(Debug)]
struct LogEntry {
    line: Vec<u8>,
    referer_at: usize,
    agent_at: usize,
    status: u16,
    bytes: u64,
    /// Which of the worker's logs, in which format.
    log: usize,
    format: LogFormat,
    started: Option<Instant>,
    /// A proxied request: upstream, its status, microseconds, attempts.
    upstream: Option<(String, u16, u64, u8)>,
}

impl Default for LogEntry {
    fn default() -> Self {
        LogEntry {
            line: Vec::new(),
            referer_at: 0,
            agent_at: 0,
            status: 0,
            bytes: 0,
            log: 0,
            format: LogFormat::Combined,
            started: None,
            upstream: None,
        }
    }
}

/// One client connection.
pub struct Conn {
    /// The socket, and the TLS session over it on a TLS listener.
    pub client: Client,
    /// Counted among the worker's TLS handshakes in progress.
    pub in_handshake: bool,
    peer: IpAddr,
    /// Port of the listener that accepted it (for the access log's host).
    listen_port: u16,
    pub state: ConnState,
    /// Read buffer: `rbuf[rstart..rend]` is unparsed input; the vector is fully initialised.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// What is left of the last request's body, read and thrown away before the next head.
    discard: BodySkipper,
    /// The response being written answers a malformed request: after it, linger (the
    /// client may still be sending) instead of closing at once.
    framing_error: bool,
    /// Response bytes: `out[out_pos..]` still to send.
    out: Vec<u8>,
    out_pos: usize,
    pub deadline: Instant,
    log: LogEntry,
    /// Metrics label of the site answering the current request.
    label: u8,
    /// A response was completed: an idle wait is now a keep-alive wait (for the timeout
    /// counters; before the first request it is the header timeout's).
    served: bool,
}

impl Conn {
    /// A new connection waits for its first head for `header_timeout`.
    pub fn new(
        client: Client,
        peer: IpAddr,
        listen_port: u16,
        now: Instant,
        header_timeout: Duration,
    ) -> Conn {
        Conn {
            client,
            in_handshake: false,
            peer,
            listen_port,
            state: ConnState::ReadingHead,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            discard: BodySkipper::Done,
            framing_error: false,
            out: Vec::new(),
            out_pos: 0,
            deadline: now + header_timeout,
            log: LogEntry::default(),
            label: 0,
            served: false,
        }
    }

    /// What the connection is doing, for the connection gauges.
    pub fn class(&self) -> ConnClass {
        match &self.state {
            ConnState::ReadingHead if self.is_idle() => ConnClass::Idle,
            ConnState::ReadingHead => ConnClass::Reading,
            ConnState::Proxying(session, _) if session.reading_body() => ConnClass::Reading,
            ConnState::Writing { .. } | ConnState::Lingering | ConnState::Proxying(..) => {
                ConnClass::Writing
            }
        }
    }

    /// Idle: between requests, nothing buffered, nothing owed.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, ConnState::ReadingHead)
            && self.rstart == self.rend
            && self.discard.is_done()
    }

    /// Advances the connection as far as the socket allows.
    pub fn drive(&mut self, cx: &mut Ctx) -> Wait {
        if self.client.wants_write() {
            // TLS records left from an earlier drive (the socket was full): out first.
            if self.client.flush().is_err() {
                return Wait::Close;
            }
        }
        let wait = self.drive_states(cx);
        match wait {
            // Records still waiting for the socket: wake when it takes more (a read made
            // then flushes them first).
            Wait::Readable | Wait::Hangup if self.client.wants_write() => Wait::Writable,
            // Closing with records waiting would cut the last response: linger instead.
            Wait::Close if self.client.wants_write() && self.client.flush().is_ok() => {
                if self.client.wants_write() {
                    self.state = ConnState::Lingering;
                    self.deadline = cx.now + LINGER;
                    Wait::Writable
                } else {
                    Wait::Close
                }
            }
            other => other,
        }
    }

    fn drive_states(&mut self, cx: &mut Ctx) -> Wait {
        loop {
            let next = match self.state {
                ConnState::ReadingHead => self.read_head(cx),
                ConnState::Writing { .. } => self.write_response(cx),
                ConnState::Lingering => self.linger(),
                ConnState::Proxying(..) => self.proxy_step(cx),
            };
            match next {
                Step::Continue => continue,
                Step::Wait(w) => {
                    if w == Wait::Readable && self.is_idle() {
                        self.release_buffers(cx.pool);
                    }
                    return w;
                }
            }
        }
    }

    /// ReadingHead: discard leftover body bytes, parse a head from the buffer, or read.
    fn read_head(&mut self, cx: &mut Ctx) -> Step {
        if !self.discard.is_done() {
            match self
                .discard
                .skip(&self.rbuf[self.rstart..self.rend], MAX_DISCARD_BODY)
            {
                Ok(n) => self.rstart += n,
                // A broken or oversized chunked body: its response is already sent, and
                // the stream cannot be re-synchronised.
                Err(_) => return Step::Wait(Wait::Close),
            }
        }
        if self.discard.is_done() && self.rstart < self.rend && self.respond(cx) {
            return Step::Continue;
        }
        if self.is_idle() && cx.draining && self.served {
            // Graceful stop: read first, so a request that already arrived is answered
            // (with `Connection: close`) instead of being left unread, which would make the
            // kernel answer our close with RST. Nothing there: close (FIN, nothing unread).
            // A connection that has not had its first request yet (taken from the queue as
            // the drain began; over TLS still in its handshake) waits for it instead, up to
            // the drain's idle grace.
            return match self.read_more(cx) {
                Step::Wait(Wait::Readable) => Step::Wait(Wait::Close),
                other => other,
            };
        }
        self.read_more(cx)
    }

    /// Reads once into the buffer; level-triggered epoll will call again if more is there.
    fn read_more(&mut self, cx: &mut Ctx) -> Step {
        let was_idle = self.is_idle();
        if self.rbuf.is_empty() {
            self.rbuf = cx.pool.take_read();
        }
        if self.rend == self.rbuf.len() {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            } else if self.rbuf.len() < MAX_HEAD + 1 {
                let grown = (self.rbuf.len() * 2).min(MAX_HEAD + 1);
                self.rbuf.resize(grown, 0);
            }
        }
        match self.client.read(&mut self.rbuf[self.rend..]) {
            Ok(0) => {
                // The client half-closed in the middle of a request head: that head will
                // never be complete, and the answer to it is a 400 (then the close).
                if self.partial_head() {
                    self.send_last_words(cx, Status::BadRequest);
                }
                Step::Wait(Wait::Close)
            }
            Ok(n) => {
                self.rend += n;
                if was_idle && self.discard.is_done() {
                    // The first byte of a head starts the header timeout (slowloris).
                    self.deadline = cx.now + cx.config.header_timeout;
                }
                Step::Continue
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait(Wait::Readable),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Continue,
            Err(_) if self.client.got_plain_http() || self.client.tls_failed() => {
                // Plain HTTP to the TLS port: a 400 in clear text says why. Either way the
                // rest of the input is read and dropped before the close (a FIN, no reset).
                if self.client.got_plain_http() {
                    self.send_last_words(cx, Status::BadRequest);
                }
                self.client.shutdown_write();
                self.state = ConnState::Lingering;
                self.deadline = cx.now + LINGER;
                Step::Continue
            }
            Err(_) => Step::Wait(Wait::Close),
        }
    }

    /// Parses the buffered input; on a complete head (or a bad one) builds exactly one
    /// reply into `out` and moves to Writing. Returns false when the head is incomplete.
    fn respond(&mut self, cx: &mut Ctx) -> bool {
        let parsed = request::parse(&self.rbuf[self.rstart..self.rend]);
        if matches!(parsed, Ok(None)) {
            return false;
        }
        let date = cx.date.get();
        if self.out.capacity() == 0 {
            self.out = cx.pool.take_out();
        }
        self.out.clear();
        self.out_pos = 0;
        self.framing_error = parsed.is_err();
        let (outcome, consumed) = match parsed {
            Ok(Some(req)) => {
                let mut close = !req.keep_alive() || cx.draining;
                let selected = self.misdirected_by_sni(cx, cx.sites.select(&req));
                // A plain listener's site that wants HTTPS: every request is redirected.
                let to_https = match (&selected, cx.config.tls_listeners.first()) {
                    (Selected::Site(site), Some(tls)) if !self.client.is_tls() => {
                        site.config.https_redirect.then_some(tls.port())
                    }
                    _ => None,
                };
                if let Selected::Site(site) = selected {
                    self.label = site.label;
                    if let Some(route) =
                        crate::site::proxy_route(site, &req).filter(|_| to_https.is_none())
                    {
                        let head_end = self.rstart + req.head_len;
                        let session = crate::proxy::Session::new(
                            route,
                            &req,
                            &self.rbuf[self.rstart..head_end],
                            &self.rbuf[head_end..self.rend],
                            self.peer,
                            close,
                            cx.now,
                        );
                        if cx.logs[site.log].enabled() {
                            begin_log(&mut self.log, cx, site, (self.peer, self.listen_port), &req);
                        }
                        let is_head = req.method == Method::Head;
                        let expect_continue = req.expect_continue;
                        self.start_proxy(cx, site, session, is_head, expect_continue);
                        return true;
                    }
                }
                let mut status_override = None;
                match req.body {
                    BodyFraming::None => {}
                    // A client waiting for 100-continue may never send the body: answer,
                    // then close rather than wait for bytes that may not come.
                    _ if req.expect_continue => close = true,
                    BodyFraming::Length(n) if n <= MAX_DISCARD_BODY => {
                        self.discard = BodySkipper::Length(n)
                    }
                    BodyFraming::Length(_) => {
                        self.framing_error = true;
                        status_override = Some(Status::PayloadTooLarge)
                    }
                    BodyFraming::Chunked => {
                        // The framing of what is buffered is checked before answering: a
                        // body already broken (bad or overflowing size, past the discard
                        // limit) gets a 400 and the close, not a 200 and then a dropped
                        // connection. An incomplete one is waited for while the buffer has
                        // room; past that it is checked while skipped (bounded by
                        // MAX_DISCARD_BODY), and a framing error then closes.
                        let head_end = self.rstart + req.head_len;
                        let mut probe = BodySkipper::chunked();
                        match probe.skip(&self.rbuf[head_end..self.rend], MAX_DISCARD_BODY) {
                            Err(_) => {
                                self.framing_error = true;
                                status_override = Some(Status::BadRequest);
                            }
                            Ok(_) if !probe.is_done() && self.rend - self.rstart < MAX_HEAD => {
                                return false;
                            }
                            Ok(_) => self.discard = BodySkipper::chunked(),
                        }
                    }
                }
                let conn = if close {
                    Connection::Close
                } else if req.minor == 0 {
                    Connection::KeepAlive
                } else {
                    Connection::Default
                };
                let site = match selected {
                    Selected::Site(site) => site,
                    Selected::Misdirected(site) => {
                        status_override = status_override.or(Some(Status::MisdirectedRequest));
                        self.label = site.label;
                        site
                    }
                    Selected::Close => {
                        // `unknown_host = "close"`: no answer at all (and nothing counted).
                        self.rstart = self.rend;
                        self.framing_error = true;
                        self.log.line.clear();
                        self.log.status = 0;
                        self.state = ConnState::Writing {
                            body: Body::None,
                            close: true,
                        };
                        return true;
                    }
                };
                if cx.logs[site.log].enabled() {
                    begin_log(&mut self.log, cx, site, (self.peer, self.listen_port), &req);
                }
                let mut outcome = match status_override {
                    Some(status) => static_files::error_reply(
                        site,
                        None,
                        status,
                        req.method == Method::Head,
                        date,
                        conn,
                        &mut self.out,
                    ),
                    None => to_https
                        .and_then(|port| {
                            crate::site::https_redirect(site, &req, port, date, conn, &mut self.out)
                        })
                        .unwrap_or_else(|| {
                            crate::site::respond(site, cx.files, &req, date, conn, &mut self.out)
                        }),
                };
                add_hsts(&self.client, &mut self.out, site);
                outcome.close |= close;
                (outcome, req.head_len)
            }
            Err(e) => {
                let site = cx.sites.default_site();
                self.label = site.label;
                if cx.logs[site.log].enabled() {
                    let entry = &mut self.log;
                    entry.log = site.log;
                    entry.format = site.config.log_format;
                    entry.started = None;
                    let start = LineStart {
                        format: entry.format,
                        ip: self.peer,
                        now: cx.date.secs(),
                        method: "-",
                        target: "-",
                        minor: 1,
                        host: b"",
                        site: &site.config.name,
                    };
                    cx.logs[site.log].begin(&mut entry.line, &start);
                    entry.referer_at = entry.line.len();
                    entry.agent_at = entry.line.len();
                }
                let outcome = static_files::error_reply(
                    site,
                    None,
                    e.status(),
                    false,
                    date,
                    Connection::Close,
                    &mut self.out,
                );
                add_hsts(&self.client, &mut self.out, site);
                (outcome, self.rend - self.rstart)
            }
            Ok(None) => unreachable!("handled above"),
        };
        self.rstart += consumed;
        self.log.status = outcome.status.code();
        self.log.bytes = outcome.body_len;
        self.state = ConnState::Writing {
            body: outcome.body,
            close: outcome.close,
        };
        self.deadline = cx.now + cx.config.send_timeout;
        true
    }

    /// Over TLS, a request whose SNI name selected another site than its Host gets 421
    /// (the certificate shown was for another name). Without SNI, Host decides.
    fn misdirected_by_sni<'s>(&self, cx: &Ctx, selected: Selected<'s>) -> Selected<'s> {
        let (Selected::Site(site), Some(tls)) = (&selected, &cx.config.tls) else {
            return selected;
        };
        let sni_site = self.client.sni().and_then(|n| tls.resolver.site_for_sni(n));
        if crate::tls::server::is_misdirected(sni_site, site.id) {
            return Selected::Misdirected(site);
        }
        selected
    }

    /// Runs a new proxy session (the head and any body bytes already read went with it),
    /// or answers the status it was refused with (413 before reading the body).
    fn start_proxy(
        &mut self,
        cx: &mut Ctx,
        site: &Site,
        session: Result<crate::proxy::Session, Status>,
        is_head: bool,
        expect_continue: bool,
    ) {
        self.rstart = self.rend;
        match session {
            Ok(session) => {
                if expect_continue {
                    if let Some(line) = session.continue_line() {
                        // Best effort, like nginx: a client that waits gets its go-ahead.
                        if let Ok(n) = self.client.send(line, false) {
                            cx.metrics.sent(n);
                        }
                    }
                }
                self.deadline = session.deadline;
                self.state = ConnState::Proxying(Box::new(session), site.id);
            }
            Err(status) => {
                // Refused before reading the body (413): the body stays unread, so close.
                self.framing_error = true;
                self.out.clear();
                self.out_pos = 0;
                let outcome = static_files::error_reply(
                    site,
                    None,
                    status,
                    is_head,
                    cx.date.get(),
                    Connection::Close,
                    &mut self.out,
                );
                self.log.status = outcome.status.code();
                self.log.bytes = outcome.body_len;
                self.state = ConnState::Writing {
                    body: outcome.body,
                    close: true,
                };
                self.deadline = cx.now + cx.config.send_timeout;
            }
        }
    }

    /// Proxying: drive the session; when its response is complete, go back to reading
    /// heads (with whatever the client sent after the request).
    fn proxy_step(&mut self, cx: &mut Ctx) -> Step {
        let ConnState::Proxying(session, site) = &mut self.state else {
            unreachable!("proxy_step is only called while Proxying");
        };
        let metrics = cx.metrics;
        let before = session.sent();
        let mut pcx = proxy_cx(&mut self.client, cx, *site);
        let step = session.drive(&mut pcx);
        metrics.sent((session.sent() - before) as usize);
        self.deadline = session.deadline;
        match step {
            crate::proxy::Step::ClientReadable => Step::Wait(Wait::Readable),
            crate::proxy::Step::ClientWritable => Step::Wait(Wait::Writable),
            // The client stays registered for reading while the app works (no epoll_ctl
            // per request); only a client that sends more meanwhile (a pipelined request)
            // is switched to hang-ups, so it cannot wake the loop again and again.
            crate::proxy::Step::Upstream if pcx.client_woke => Step::Wait(Wait::Hangup),
            crate::proxy::Step::Upstream => Step::Wait(Wait::Readable),
            crate::proxy::Step::Abort => {
                // A tunnel (after a 101) ends this way, its request answered: count it.
                if session.status == 101 {
                    metrics.request(self.label, 101);
                }
                Step::Wait(Wait::Close)
            }
            crate::proxy::Step::Done { close } => {
                self.log.status = session.status;
                self.log.bytes = session.sent();
                if self.log.format == LogFormat::Json {
                    self.log.upstream = session.upstream_log();
                }
                let leftover = session.take_leftover();
                self.finish_request(cx);
                self.state = ConnState::ReadingHead;
                if self.rbuf.is_empty() {
                    self.rbuf = cx.pool.take_read();
                }
                self.rstart = 0;
                self.rend = 0;
                if leftover.len() > self.rbuf.len() {
                    self.rbuf.resize(leftover.len(), 0);
                }
                self.rbuf[..leftover.len()].copy_from_slice(&leftover);
                self.rend = leftover.len();
                if close || cx.draining {
                    self.client.shutdown_write();
                    self.state = ConnState::Lingering;
                    self.deadline = cx.now + LINGER;
                    return Step::Continue;
                }
                self.deadline = if self.rend > 0 {
                    cx.now + cx.config.header_timeout
                } else {
                    cx.now + cx.config.keepalive_timeout
                };
                Step::Continue
            }
        }
    }

    /// Writing: the buffered head (and small body), then the file body by sendfile.
    fn write_response(&mut self, cx: &mut Ctx) -> Step {
        let ConnState::Writing { body, close } = &mut self.state else {
            unreachable!("write_response is only called while Writing");
        };
        let more = !matches!(body, Body::None);
        while self.out_pos < self.out.len() {
            // MSG_MORE holds the head back until the file body follows it in one segment.
            match self.client.send(&self.out[self.out_pos..], more) {
                Ok(n) => {
                    cx.metrics.sent(n);
                    self.out_pos += n;
                    self.deadline = cx.now + cx.config.send_timeout;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Step::Wait(Wait::Writable)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Wait(Wait::Close),
            }
        }
        let m = cx.metrics;
        loop {
            let step = match body {
                Body::None => break,
                Body::File { file, offset, end } => {
                    send_file(&mut self.client, file, offset, *end, m)
                }
                Body::Multipart { file, chunks } => match chunks.front_mut() {
                    None => break,
                    Some(Chunk::Bytes(bytes)) => match send_bytes(&mut self.client, bytes, m) {
                        Sent::Done => {
                            chunks.pop_front();
                            Sent::Progress
                        }
                        other => other,
                    },
                    Some(Chunk::File { offset, end }) => {
                        match send_file(&mut self.client, file, offset, *end, m) {
                            Sent::Done => {
                                chunks.pop_front();
                                Sent::Progress
                            }
                            other => other,
                        }
                    }
                },
            };
            match step {
                Sent::Progress => self.deadline = cx.now + cx.config.send_timeout,
                Sent::Done => *body = Body::None,
                Sent::Blocked => return Step::Wait(Wait::Writable),
                Sent::Failed => return Step::Wait(Wait::Close),
            }
        }
        // The response is complete.
        let close = *close;
        self.finish_request(cx);
        self.out.clear();
        self.out_pos = 0;
        if close {
            if !self.framing_error
                && self.rstart == self.rend
                && self.discard.is_done()
                && self.nothing_unread()
            {
                // Nothing pending in either direction: a plain close sends FIN, no RST.
                return Step::Wait(Wait::Close);
            }
            self.client.shutdown_write();
            self.state = ConnState::Lingering;
            self.deadline = cx.now + LINGER;
            return Step::Continue;
        }
        self.state = ConnState::ReadingHead;
        if self.rstart < self.rend {
            // Pipelined input is waiting: parse it now.
            self.deadline = cx.now + cx.config.header_timeout;
            return Step::Continue;
        }
        self.rstart = 0;
        self.rend = 0;
        self.deadline = cx.now + cx.config.keepalive_timeout;
        if cx.draining {
            // A response begun before the drain: read_head closes the now idle connection
            // (after answering a request that may already be here).
            return Step::Continue;
        }
        // Nothing buffered: wait for the next request rather than try a read that would
        // almost always answer EAGAIN (epoll is level-triggered, so nothing is missed).
        Step::Wait(Wait::Readable)
    }

    /// One non-blocking read before a close: true when the client has sent nothing more
    /// (or has closed), so closing now cannot turn into a reset.
    fn nothing_unread(&mut self) -> bool {
        let mut probe = [0u8; 64];
        match self.client.read(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        }
    }

    /// A response is complete: count it (status 0: there was none), then log it.
    fn finish_request(&mut self, cx: &mut Ctx) {
        if self.log.status != 0 {
            cx.metrics.request(self.label, self.log.status);
        }
        self.served = true;
        self.finish_log(cx);
    }

    fn finish_log(&mut self, cx: &mut Ctx) {
        if !self.log.line.is_empty() {
            let e = &self.log;
            let end = LineEnd {
                format: e.format,
                status: e.status,
                bytes: e.bytes,
                referer: &e.line[e.referer_at..e.agent_at],
                agent: &e.line[e.agent_at..],
                duration_us: e.started.map_or(0, |t| {
                    t.elapsed().as_micros().try_into().unwrap_or(u64::MAX)
                }),
                upstream: e.upstream.as_ref().map(|(name, status, us, tries)| {
                    crate::log::UpstreamLog {
                        name,
                        status: *status,
                        us: *us,
                        tries: *tries,
                    }
                }),
            };
            cx.logs[e.log].finish(&e.line[..e.referer_at], &end);
            self.log.line.clear();
            self.log.upstream = None;
        }
    }

    /// Lingering: read and drop input until the peer closes or the deadline passes.
    fn linger(&mut self) -> Step {
        let mut sink = [0u8; 1024];
        match self.client.read(&mut sink) {
            Ok(0) => Step::Wait(Wait::Close),
            Ok(_) => Step::Continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait(Wait::Readable),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Continue,
            Err(_) => Step::Wait(Wait::Close),
        }
    }

    /// Called when the deadline has passed. A client that stalled mid-head gets a 408
    /// (best effort, one non-blocking write); everyone else is simply closed.
    pub fn on_timeout(&mut self, cx: &mut Ctx) {
        if let Some(kind) = self.timeout_kind(cx) {
            cx.metrics.timeout(kind);
        }
        if let ConnState::Proxying(session, site) = &mut self.state {
            let metrics = cx.metrics;
            let before = session.sent();
            let mut pcx = proxy_cx(&mut self.client, cx, *site);
            if session.status == 101 {
                // An idle tunnel: its request was answered by the switch.
                metrics.request(self.label, 101);
            }
            // 504 (or 408 for a body that stopped coming), best effort; then closed.
            let step = session.on_timeout(&mut pcx);
            metrics.sent((session.sent() - before) as usize);
            if matches!(step, crate::proxy::Step::Done { .. }) {
                // The error response went out whole: it is the request's answer, counted
                // and logged like any other.
                self.log.status = session.status;
                self.log.bytes = session.sent();
                if self.log.format == LogFormat::Json {
                    self.log.upstream = session.upstream_log();
                }
                self.finish_request(cx);
            }
            return;
        }
        if self.partial_head() {
            self.send_last_words(cx, Status::RequestTimeout);
        }
    }

    /// Which deadline passed, for the timeout counters. `None` for the end of a linger (the
    /// close after a final response, not a wait that failed) and for idle connections
    /// closed by a graceful stop.
    fn timeout_kind(&self, cx: &Ctx) -> Option<Timeout> {
        Some(match &self.state {
            ConnState::Proxying(session, _) => session.timeout_kind(cx.now),
            ConnState::Writing { .. } => Timeout::Send,
            ConnState::Lingering => return None,
            ConnState::ReadingHead if !self.discard.is_done() => Timeout::Body,
            ConnState::ReadingHead if self.partial_head() => Timeout::Header,
            ConnState::ReadingHead if cx.draining => return None,
            ConnState::ReadingHead if self.served => Timeout::Keepalive,
            ConnState::ReadingHead => Timeout::Header,
        })
    }

    /// Part of a request head is buffered (more than the empty lines a client may send
    /// before a request, RFC 9112 §2.2), and no body is being skipped.
    fn partial_head(&self) -> bool {
        matches!(self.state, ConnState::ReadingHead)
            && self.discard.is_done()
            && self.rbuf[self.rstart..self.rend]
                .iter()
                .any(|&b| b != b'\r' && b != b'\n')
    }

    /// The error reply to a head that will never be complete, just before the close: one
    /// non-blocking write, whatever fits.
    fn send_last_words(&mut self, cx: &mut Ctx, status: Status) {
        let mut out = Vec::new();
        static_files::error_reply(
            cx.sites.default_site(),
            None,
            status,
            false,
            cx.date.get(),
            Connection::Close,
            &mut out,
        );
        if let Ok(n) = self.client.send(&out, false) {
            cx.metrics.sent(n);
        }
    }

    /// Graceful stop: an idle connection gets at most `grace` more to send a request.
    pub fn begin_drain(&mut self, now: Instant, grace: Duration) {
        if self.is_idle() {
            self.deadline = self.deadline.min(now + grace);
        }
    }

    /// Returns idle buffers to the worker's pool, so an idle connection costs only its
    /// struct, and the next request reuses warm buffers instead of allocating.
    fn release_buffers(&mut self, pool: &mut BufPool) {
        self.rstart = 0;
        self.rend = 0;
        pool.put_read(std::mem::take(&mut self.rbuf));
        pool.put_out(std::mem::take(&mut self.out));
        self.log.line = Vec::new();
        self.client.idle();
    }

    /// Hands the buffers back as the connection closes.
    /// The upstream connection a proxy session holds (to release when this one closes).
    pub fn upstream_id(&self) -> Option<u64> {
        match &self.state {
            ConnState::Proxying(session, _) => session.upstream_id(),
            _ => None,
        }
    }

    pub fn recycle(mut self, pool: &mut BufPool) {
        self.client.goodbye();
        self.release_buffers(pool);
    }
}

/// Spare buffers of one worker, bounded: a burst of connections does not leave a
/// permanent high-water mark of memory behind.
#[derive(Default)]
pub struct BufPool {
    read: Vec<Vec<u8>>,
    out: Vec<Vec<u8>>,
}

impl BufPool {
    /// Most spare buffers of each kind kept.
    const MAX: usize = 256;
    /// Response buffers that grew past this (a multipart head, a large 404 page) are
    /// freed rather than kept.
    const OUT_KEEP: usize = 64 * 1024;

    /// A zero-filled read buffer of READ_BUF bytes (reads need initialised memory).
    fn take_read(&mut self) -> Vec<u8> {
        self.read.pop().unwrap_or_else(|| vec![0; READ_BUF])
    }

    fn put_read(&mut self, buf: Vec<u8>) {
        // Only standard-size buffers: one grown for a huge head is dropped.
        if buf.len() == READ_BUF && self.read.len() < Self::MAX {
            self.read.push(buf);
        }
    }

    /// An empty response buffer.
    fn take_out(&mut self) -> Vec<u8> {
        self.out
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OUT_BUF))
    }

    fn put_out(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= Self::OUT_KEEP && self.out.len() < Self::MAX {
            buf.clear();
            self.out.push(buf);
        }
    }
}

enum Step {
    Continue,
    Wait(Wait),
}

enum Sent {
    Progress,
    Done,
    Blocked,
    Failed,
}

fn send_bytes(client: &mut Client, bytes: &mut Vec<u8>, metrics: Recorder) -> Sent {
    let sent = client.send(bytes, true);
    if let Ok(n) = sent {
        metrics.sent(n);
    }
    match sent {
        Ok(n) if n == bytes.len() => Sent::Done,
        Ok(n) => {
            bytes.drain(..n);
            Sent::Progress
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Sent::Progress,
        Err(_) => Sent::Failed,
    }
}

fn send_file(
    client: &mut Client,
    file: &std::fs::File,
    offset: &mut u64,
    end: u64,
    metrics: Recorder,
) -> Sent {
    if *offset >= end {
        return Sent::Done;
    }
    let count = (end - *offset).min(SENDFILE_CHUNK as u64) as usize;
    match client.send_file(file, *offset, count) {
        // The file shrank under us: the promised length cannot be delivered.
        Ok(0) => Sent::Failed,
        Ok(n) => {
            metrics.sent(n);
            *offset += n as u64;
            if *offset >= end {
                Sent::Done
            } else {
                Sent::Progress
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Sent::Progress,
        Err(_) => Sent::Failed,
    }
}

/// `hsts` of the answering site, on a response over TLS (errors included).
fn add_hsts(client: &Client, out: &mut Vec<u8>, site: &Site) {
    if let (true, Some(value)) = (client.is_tls(), &site.config.hsts) {
        crate::http::response::insert_field(out, b"Strict-Transport-Security", value.as_bytes());
    }
}

/// What a proxy session borrows from the connection and the worker.
fn proxy_cx<'a>(client: &'a mut Client, cx: &'a mut Ctx, site: usize) -> crate::proxy::Cx<'a> {
    crate::proxy::Cx {
        tls: client.is_tls(),
        client,
        epoll: cx.epoll,
        token: cx.token,
        client_woke: cx.client_woke,
        upstreams: cx.upstreams,
        site: &cx.sites.all()[site],
        date: cx.date.get(),
        now: cx.now,
        trusted: &cx.config.trusted_proxies,
    }
}

/// Starts the access-log entry of a request: the line up to the status, then the referer
/// and user agent kept for the end of the line.
fn begin_log(
    e: &mut LogEntry,
    cx: &mut Ctx,
    site: &Site,
    (peer, listen_port): (IpAddr, u16),
    req: &Request,
) {
    e.log = site.log;
    e.format = site.config.log_format;
    e.started = (e.format == LogFormat::Json).then(Instant::now);
    let mut host = [0u8; 262];
    let host = log_host(req, listen_port, &mut host);
    let start = LineStart {
        format: e.format,
        ip: peer,
        now: cx.date.secs(),
        method: req.method_str,
        target: req.target,
        minor: req.minor,
        host,
        site: &site.config.name,
    };
    cx.logs[site.log].begin(&mut e.line, &start);
    e.referer_at = e.line.len();
    e.line.extend_from_slice(req.referer.unwrap_or_default());
    e.agent_at = e.line.len();
    e.line.extend_from_slice(req.user_agent.unwrap_or_default());
}

/// The host for the access log: normalised, with the port only when it is not the
/// listener's.
fn log_host<'a>(req: &Request, listen_port: u16, buf: &'a mut [u8; 262]) -> &'a [u8] {
    let Some(authority) = crate::site::authority(req) else {
        return &[];
    };
    let mut name = [0u8; 255];
    let Some(name) = crate::site::normalise(authority, &mut name) else {
        return &[];
    };
    let port = authority
        .rsplit(|&b| b == b':')
        .next()
        .filter(|p| {
            authority.len() > p.len()
                && !authority.ends_with(b"]")
                && p.iter().all(u8::is_ascii_digit)
        })
        .filter(|p| {
            !p.is_empty()
                && std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    != Some(listen_port)
        });
    buf[..name.len()].copy_from_slice(name);
    let mut len = name.len();
    if let Some(port) = port.filter(|p| p.len() <= 6) {
        buf[len] = b':';
        buf[len + 1..len + 1 + port.len()].copy_from_slice(port);
        len += 1 + port.len();
    }
    &buf[..len]
}
