//! Issue 11, the reverse proxy, seen from both ends: a client talking to the real `srvd`
//! binary, and the upstream it proxies to. Two kinds of upstream:
//!
//! - scripted ones written here ([`Upstream`]): a thread per connection on 127.0.0.1 or a
//!   unix socket in the test's directory that records every request it receives (head and
//!   body, which connection, which request on it) and answers as the test says: chunked,
//!   close on reuse, stall, oversized or contradictory heads, drip events, sleep;
//! - real gunicorn running `examples/wsgi/app.py` on a unix socket ([`Gunicorn`]). Those
//!   tests skip with a message when gunicorn is not installed, unless
//!   `SRVD_REQUIRE_GUNICORN` is set (CI sets it), in which case they fail.
//!
//! Every wait polls with a deadline ([`wait_for`], socket timeouts); the only sleeps are in
//! upstream threads that stall or drip on purpose, and in the slow uploader, whose pace is
//! the point of its test.

mod common;
use common::*;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

// ---------------------------------------------------------------------------------------
// scripted upstreams
// ---------------------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    target: String,
    version: String,
    /// (lower-case name, value), in the order received.
    headers: Vec<(String, String)>,
    /// The head as received, for failure messages.
    head: String,
    body: Vec<u8>,
    /// Which accepted connection (1-based) and which request on it (1-based).
    conn: usize,
    nth: usize,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What an upstream saw and did, shared with the test.
#[derive(Default)]
struct Seen {
    /// Connections accepted.
    connections: AtomicUsize,
    requests: Mutex<Vec<Got>>,
    /// Connections the upstream closed itself after a handler said [`Next::Close`] (counted
    /// once the socket is closed).
    upstream_closed: AtomicUsize,
    /// A handler saw srvd's side go away: EOF or an error while it waited or wrote.
    aborted: AtomicUsize,
    /// Steps the test released (for handlers that send one piece per step).
    released: AtomicUsize,
    /// Response body bytes a handler has written so far, and whether it wrote them all.
    written: AtomicUsize,
    finished: AtomicBool,
}

impl Seen {
    fn requests(&self) -> Vec<Got> {
        self.requests.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|g| g.target).collect()
    }

    fn count(&self, method: &str, target: &str) -> usize {
        self.requests()
            .iter()
            .filter(|g| g.method == method && g.target == target)
            .count()
    }

    fn last(&self) -> Got {
        self.requests()
            .pop()
            .expect("the upstream received a request")
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn aborted(&self) -> usize {
        self.aborted.load(Ordering::SeqCst)
    }
}

/// A connection to the upstream, TCP or unix.
trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// What the connection does after a handler answered.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection (recorded in [`Seen::upstream_closed`]).
    Close,
    /// The handler already dealt with the connection (waited for EOF, hit an error): drop it.
    Done,
}

type Handler = dyn Fn(&Got, &mut dyn Io, &Seen) -> Next + Send + Sync;

/// A scripted upstream server; stops accepting when dropped.
struct Upstream {
    seen: Arc<Seen>,
    /// As written in srvd's config: "127.0.0.1:PORT" or "unix:/path".
    addr: String,
    stop: Arc<AtomicBool>,
    wake: Wake,
}

enum Wake {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Upstream {
    fn tcp(handler: impl Fn(&Got, &mut dyn Io, &Seen) -> Next + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
                    let n = seen.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let (seen, handler) = (seen.clone(), handler.clone());
                    std::thread::spawn(move || serve_conn(Box::new(conn), n, &seen, &*handler));
                }
            });
        }
        Upstream {
            seen,
            addr: local.to_string(),
            stop,
            wake: Wake::Tcp(local),
        }
    }

    fn unix(
        path: PathBuf,
        handler: impl Fn(&Got, &mut dyn Io, &Seen) -> Next + Send + Sync + 'static,
    ) -> Upstream {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
                    let n = seen.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let (seen, handler) = (seen.clone(), handler.clone());
                    std::thread::spawn(move || serve_conn(Box::new(conn), n, &seen, &*handler));
                }
            });
        }
        Upstream {
            seen,
            addr: format!("unix:{}", path.display()),
            stop,
            wake: Wake::Unix(path),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        match &self.wake {
            Wake::Tcp(a) => drop(TcpStream::connect_timeout(a, Duration::from_secs(1))),
            Wake::Unix(p) => {
                drop(UnixStream::connect(p));
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Reads requests off one upstream connection and hands each to the handler.
fn serve_conn(mut io: Box<dyn Io>, conn: usize, seen: &Seen, handler: &Handler) {
    let mut pending = Vec::new();
    for nth in 1..=10_000 {
        let got = match read_request(&mut *io, &mut pending, conn, nth) {
            Ok(Some(g)) => g,
            Ok(None) | Err(_) => return,
        };
        seen.requests.lock().unwrap().push(got.clone());
        match handler(&got, &mut *io, seen) {
            Next::KeepAlive => {}
            Next::Close => {
                drop(io);
                seen.upstream_closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Next::Done => return,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

fn read_more(io: &mut dyn Io, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = io.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// One request (head and body) from `pending` plus what `io` brings; `Ok(None)` at a clean
/// EOF between requests.
fn read_request(
    io: &mut dyn Io,
    pending: &mut Vec<u8>,
    conn: usize,
    nth: usize,
) -> io::Result<Option<Got>> {
    let eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
    let end = loop {
        if let Some(p) = find(pending, b"\r\n\r\n") {
            break p + 4;
        }
        if pending.len() > 1 << 20 {
            return Err(io::Error::other("request head too long"));
        }
        if read_more(io, pending)? == 0 {
            return if pending.is_empty() {
                Ok(None)
            } else {
                Err(eof())
            };
        }
    };
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    pending.drain(..end);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").splitn(3, ' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let version = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let cl = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if let Some(n) = cl {
        while pending.len() < n {
            if read_more(io, pending)? == 0 {
                return Err(eof());
            }
        }
        pending.drain(..n).collect()
    } else if chunked {
        // srvd must not send this; read it anyway so the test can say what came.
        let mut body = Vec::new();
        loop {
            while find(pending, b"\r\n").is_none() {
                if read_more(io, pending)? == 0 {
                    return Err(eof());
                }
            }
            let line_end = find(pending, b"\r\n").unwrap();
            let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
            pending.drain(..line_end + 2);
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                while find(pending, b"\r\n").is_none() {
                    if read_more(io, pending)? == 0 {
                        return Err(eof());
                    }
                }
                // Trailers, if any, up to the empty line.
                loop {
                    let e = find(pending, b"\r\n").unwrap();
                    pending.drain(..e + 2);
                    if e == 0 {
                        break;
                    }
                    while find(pending, b"\r\n").is_none() {
                        if read_more(io, pending)? == 0 {
                            return Err(eof());
                        }
                    }
                }
                break;
            }
            while pending.len() < size + 2 {
                if read_more(io, pending)? == 0 {
                    return Err(eof());
                }
            }
            body.extend(pending.drain(..size));
            pending.drain(..2);
        }
        body
    } else {
        Vec::new()
    };
    Ok(Some(Got {
        method,
        target,
        version,
        headers,
        head,
        body,
        conn,
        nth,
    }))
}

/// Writes a complete response with a Content-Length; `headers` are full lines ending in
/// CRLF. Keeps the connection unless writing failed.
fn reply(io: &mut dyn Io, status: &str, headers: &str, body: &[u8]) -> Next {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    match io.write_all(&out).and_then(|_| io.flush()) {
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Done,
    }
}

/// Writes raw bytes; `Done` if that failed.
fn send_raw(io: &mut dyn Io, bytes: &[u8]) -> Result<(), Next> {
    io.write_all(bytes)
        .and_then(|_| io.flush())
        .map_err(|_| Next::Done)
}

/// Waits (up to the socket's 10 s read timeout) for srvd to close its end; records it in
/// [`Seen::aborted`] when it did.
fn wait_eof(io: &mut dyn Io, seen: &Seen) -> Next {
    let mut buf = [0u8; 4096];
    loop {
        match io.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Next::Done
            }
            Err(_) => break,
        }
    }
    seen.aborted.fetch_add(1, Ordering::SeqCst);
    Next::Done
}

/// Waits until the test released step `step` (bounded: 10 s, then goes on anyway).
fn wait_released(seen: &Seen, step: usize) {
    let end = Instant::now() + DEADLINE;
    while seen.released.load(Ordering::SeqCst) < step && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The plain upstream: 200 with "METHOD TARGET" as the body, keep-alive.
fn ok(got: &Got, io: &mut dyn Io, _: &Seen) -> Next {
    let body = format!("{} {}", got.method, got.target);
    reply(
        io,
        "200 OK",
        "Content-Type: text/plain\r\n",
        body.as_bytes(),
    )
}

/// An address where nobody listens.
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------
// srvd and the client side
// ---------------------------------------------------------------------------------------

/// srvd with `workers` workers and `extra` config lines (`$D` = the test's directory),
/// started.
fn srvd(name: &str, workers: usize, extra: &str) -> Srvd {
    let mut s = Srvd::prepare_with_workers(name, "", workers);
    let text = extra.replace("$D", s.dir.to_str().unwrap());
    s.write_config(&text);
    s.start_prepared()
}

/// Route keys for tests that count pooled connections: an idle one stays long enough that
/// a slow machine does not expire it between two requests (the default is 1 s).
const KEEP: &str = "keepalive_timeout = \"5s\"";

/// A `[[proxy]]` route for `/api` to `up`, with `more` key lines.
fn api(up: &str, more: &str) -> String {
    format!("[[proxy]]\nmatch = \"/api\"\nupstream = \"{up}\"\n{more}\n")
}

/// A response as the client received it, whatever its framing.
#[derive(Debug, Clone)]
struct Full {
    status: u16,
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
    /// The body ended as its framing says (the last chunk, all Content-Length bytes, or the
    /// close for a close-delimited body).
    complete: bool,
}

impl Full {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Decodes a chunked body: (data so far, including a partial last chunk; bytes used up to
/// and including the last complete chunk or the end; the last chunk and trailers were seen).
fn dechunk(b: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&b[pos..], b"\r\n") else {
            return (out, pos, false);
        };
        let line = String::from_utf8_lossy(&b[pos..pos + line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (out, pos, false);
        };
        let data = pos + line_end + 2;
        if size == 0 {
            // Trailer section up to the empty line.
            let mut p = data;
            loop {
                let Some(e) = find(&b[p..], b"\r\n") else {
                    return (out, pos, false);
                };
                p += e + 2;
                if e == 0 {
                    return (out, p, true);
                }
            }
        }
        if b.len() < data + size + 2 {
            out.extend_from_slice(&b[data..b.len().min(data + size)]);
            return (out, pos, false);
        }
        out.extend_from_slice(&b[data..data + size]);
        pos = data + size + 2;
    }
}

/// Parses one response at the start of `bytes`. `eof`: the connection ended after these
/// bytes (a close-delimited body is complete then; others come back incomplete). `None`
/// while more bytes are needed.
fn parse_one(bytes: &[u8], head_request: bool, eof: bool) -> Option<(Full, usize)> {
    let end = find(bytes, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let full = |body: Vec<u8>, complete: bool| Full {
        status,
        head: head.clone(),
        headers: headers.clone(),
        body,
        chunked,
        complete,
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((full(Vec::new(), true), end));
    }
    let rest = &bytes[end..];
    if chunked {
        let (data, used, done) = dechunk(rest);
        if done {
            return Some((full(data, true), end + used));
        }
        return eof.then(|| (full(data, false), bytes.len()));
    }
    if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() >= n {
            return Some((full(rest[..n].to_vec(), true), end + n));
        }
        return eof.then(|| (full(rest.to_vec(), false), bytes.len()));
    }
    eof.then(|| (full(rest.to_vec(), true), bytes.len()))
}

/// A client connection to srvd that keeps unread bytes between responses.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    fn new(s: &Srvd) -> Client {
        Client {
            s: s.connect(),
            buf: Vec::new(),
            eof: false,
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.s.write_all(bytes.as_ref()).unwrap();
    }

    /// One read; false at EOF, on an error or at the read timeout.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    /// The next response; panics with what arrived if none does (socket timeout: 5 s).
    fn response_with(&mut self, head_request: bool) -> Full {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some((r, used)) = parse_one(&self.buf, head_request, self.eof) {
                self.buf.drain(..used);
                return r;
            }
            let why = if self.eof {
                "the connection closed"
            } else if Instant::now() >= end {
                "the deadline passed"
            } else if !self.fill() && !self.eof {
                "the read timed out"
            } else {
                continue;
            };
            panic!(
                "no complete response ({why}); got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Sends and ignores a failure (the server may answer and close before the body ends).
    fn try_send(&mut self, bytes: impl AsRef<[u8]>) {
        let _ = self.s.write_all(bytes.as_ref());
    }

    fn response(&mut self) -> Full {
        self.response_with(false)
    }

    /// Reads until `pred(bytes so far)` holds; false if the connection ended or 10 s passed.
    fn read_until(&mut self, pred: impl Fn(&[u8]) -> bool) -> bool {
        let end = Instant::now() + DEADLINE;
        while !pred(&self.buf) {
            if self.eof || Instant::now() >= end {
                return false;
            }
            self.fill();
        }
        true
    }

    /// True once the server closed the connection (within the read timeout).
    fn closed(&mut self) -> bool {
        let end = Instant::now() + DEADLINE;
        while !self.eof && Instant::now() < end {
            if !self.fill() && !self.eof {
                return false;
            }
        }
        self.eof
    }
}

/// Sends `req` on a new connection and reads one response.
fn exchange(s: &Srvd, req: &str) -> Full {
    let mut c = Client::new(s);
    c.send(req);
    c.response_with(req.starts_with("HEAD "))
}

/// A GET with `Connection: close` and `extra` header lines (each ending in CRLF).
fn get_with(s: &Srvd, target: &str, extra: &str) -> Full {
    exchange(
        s,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn get(s: &Srvd, target: &str) -> Full {
    get_with(s, target, "")
}

fn post(s: &Srvd, target: &str, body: &[u8]) -> Full {
    let mut c = Client::new(s);
    c.send(format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    c.send(body);
    c.response()
}

/// The number of fds the process holds.
fn fd_count(pid: i32) -> usize {
    fds_of(pid).len()
}

/// The only worker of a one-worker server.
fn only_worker(s: &Srvd) -> i32 {
    let w = s.workers();
    assert_eq!(w.len(), 1, "expected one worker: {w:?}");
    w[0]
}

// ---------------------------------------------------------------------------------------
// errors: down, silent, list of upstreams
// ---------------------------------------------------------------------------------------

/// Nobody listens at the upstream: a 502 at once (a refused connect is immediate on
/// loopback), a complete small response, and one error-log line naming the upstream.
#[test]
fn upstream_down_is_502_quickly() {
    let dead = dead_addr();
    let s = srvd("proxy-down", 1, &api(&dead, ""));
    let t = Instant::now();
    let r = get(&s, "/api/x");
    let took = t.elapsed();
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(r.complete, "the 502 is a complete response");
    assert!(took < Duration::from_secs(2), "502 took {took:?}");
    wait_for("the error log to name the upstream", || {
        s.error_log().contains(&dead).then_some(())
    });
    // The files are still served.
    assert_eq!(get(&s, "/index.html").body_str(), "hello\n");
}

/// `upstream = [dead, live]`: a refused connect moves on to the next server (nothing was
/// sent, so that is always safe); every request succeeds. With two live servers, both get
/// requests (round robin).
#[test]
fn upstream_list_skips_a_refused_server_and_round_robins() {
    let live = Upstream::tcp(ok);
    let dead = dead_addr();
    let a = Upstream::tcp(ok);
    let b = Upstream::tcp(ok);
    let cfg = format!(
        "[[proxy]]\nmatch = \"/one\"\nupstream = [\"{dead}\", \"{}\"]\n\n[[proxy]]\nmatch = \"/two\"\nupstream = [\"{}\", \"{}\"]\n",
        live.addr, a.addr, b.addr
    );
    let s = srvd("proxy-list", 1, &cfg);
    for i in 0..4 {
        let r = get(&s, &format!("/one/{i}"));
        assert_eq!(
            r.status, 200,
            "request {i} with a dead first server: {}",
            r.head
        );
        assert_eq!(r.body_str(), format!("GET /one/{i}"));
    }
    assert_eq!(live.seen.requests().len(), 4);
    for i in 0..6 {
        assert_eq!(get(&s, &format!("/two/{i}")).status, 200);
    }
    let (na, nb) = (a.seen.requests().len(), b.seen.requests().len());
    assert_eq!(na + nb, 6);
    assert!(
        na > 0 && nb > 0,
        "round robin over two live servers: {na} and {nb} requests"
    );
}

/// The upstream accepts and reads the request but never answers: 504 at `read_timeout`
/// (1 s), and meanwhile the same (single) worker serves another client at once. srvd then
/// closes the upstream connection.
#[test]
fn silent_upstream_is_504_at_the_read_timeout_while_the_worker_serves_others() {
    let up = Upstream::tcp(|_, io, seen| wait_eof(io, seen));
    let s = srvd("proxy-504", 1, &api(&up.addr, "read_timeout = \"1s\""));
    let mut slow = Client::new(&s);
    let t = Instant::now();
    slow.send("GET /api/silent HTTP/1.1\r\nHost: localhost\r\n\r\n");
    wait_for("the upstream to receive the request", || {
        (up.seen.requests().len() == 1).then_some(())
    });

    // The worker is not blocked: another client's request is served meanwhile.
    let other = get(&s, "/index.html");
    assert_eq!(other.status, 200);
    assert_eq!(other.body_str(), "hello\n");
    slow.s.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let early = slow.s.read(&mut probe);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "the silent request was answered before the other client was served: {early:?}"
    );
    slow.s.set_nonblocking(false).unwrap();

    let r = slow.response();
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after {took:?}, read_timeout is 1 s"
    );
    wait_for("srvd to close the upstream connection", || {
        (up.seen.aborted() == 1).then_some(())
    });
}

// ---------------------------------------------------------------------------------------
// the pool: reuse, a connection the upstream closes, retries
// ---------------------------------------------------------------------------------------

/// Two requests one after the other share one upstream connection (a keep-alive pool).
#[test]
fn sequential_requests_reuse_a_pooled_upstream_connection() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-pool", 1, &api(&up.addr, KEEP));
    for i in 0..3 {
        let r = get(&s, &format!("/api/{i}"));
        assert_eq!(r.body_str(), format!("GET /api/{i}"));
    }
    assert_eq!(
        up.seen.connections(),
        1,
        "requests: {:?}",
        up.seen.requests()
    );
    let nths: Vec<usize> = up.seen.requests().iter().map(|g| g.nth).collect();
    assert_eq!(nths, [1, 2, 3]);
}

/// The upstream answers the first request on a connection and, on the next one, reads the
/// request and closes without a byte of response: the race nginx answers with a 502. A GET
/// is retried once on a fresh connection and succeeds.
#[test]
fn get_on_a_pooled_connection_the_upstream_closes_is_retried() {
    let up = Upstream::tcp(|got, io, seen| {
        if got.nth >= 2 {
            Next::Close
        } else {
            ok(got, io, seen)
        }
    });
    let s = srvd("proxy-retry", 1, &api(&up.addr, KEEP));
    assert_eq!(get(&s, "/api/first").status, 200);
    let r = get(&s, "/api/second");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body_str(), "GET /api/second");
    let got = up.seen.requests();
    let seconds: Vec<(usize, usize)> = got
        .iter()
        .filter(|g| g.target == "/api/second")
        .map(|g| (g.conn, g.nth))
        .collect();
    assert_eq!(
        seconds,
        [(1, 2), (2, 1)],
        "the GET went out on the pooled connection, then once more on a fresh one: {got:?}"
    );
    assert_eq!(up.seen.connections(), 2);
}

/// A POST is never replayed. (a) An upstream that closes every POST without answering:
/// 502, and it received the POST exactly once, on a fresh or a pooled connection. (b) The
/// close-on-reuse upstream above: srvd may avoid the race by sending the POST on a fresh
/// connection (200) or lose it on the pooled one (502), but never sends it twice.
#[test]
fn a_post_that_fails_is_never_replayed() {
    let up = Upstream::tcp(|got, io, seen| {
        if got.method == "POST" {
            Next::Close
        } else {
            ok(got, io, seen)
        }
    });
    let reuse = Upstream::tcp(|got, io, seen| {
        if got.nth >= 2 {
            Next::Close
        } else {
            ok(got, io, seen)
        }
    });
    let cfg = format!(
        "{}[[proxy]]\nmatch = \"/reuse\"\nupstream = \"{}\"\n",
        api(&up.addr, ""),
        reuse.addr
    );
    let s = srvd("proxy-post", 1, &cfg);

    assert_eq!(get(&s, "/api/warm").status, 200); // a connection in the pool
    let r = post(&s, "/api/form", b"a=1");
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(
        up.seen.count("POST", "/api/form"),
        1,
        "requests: {:?}",
        up.seen.targets()
    );
    // Still exactly once after the answer (nothing replays it later either).
    assert_eq!(get(&s, "/api/after").status, 200);
    assert_eq!(up.seen.count("POST", "/api/form"), 1);

    assert_eq!(get(&s, "/reuse/warm").status, 200);
    let r = post(&s, "/reuse/form", b"b=2");
    assert!(matches!(r.status, 200 | 502), "{}", r.head);
    assert_eq!(
        reuse.seen.count("POST", "/reuse/form"),
        1,
        "the POST was sent {} times: {:?}",
        reuse.seen.count("POST", "/reuse/form"),
        reuse.seen.requests()
    );
    if r.status == 200 {
        let p = reuse
            .seen
            .requests()
            .into_iter()
            .find(|g| g.method == "POST")
            .unwrap();
        assert_eq!(p.nth, 1, "a 200 means the POST went on a fresh connection");
        assert_eq!(p.body, b"b=2");
    }
}

/// The upstream closes its idle keep-alive connection right after answering (as gunicorn
/// does after its keep-alive): the next GET and the next POST both succeed, on new
/// connections; the dead one is never used.
#[test]
fn an_idle_connection_the_upstream_closed_is_never_reused() {
    let up = Upstream::tcp(|got, io, seen| match ok(got, io, seen) {
        Next::KeepAlive => Next::Close,
        other => other,
    });
    let s = srvd("proxy-idle-closed", 1, &api(&up.addr, ""));
    assert_eq!(get(&s, "/api/1").status, 200);
    wait_for("the upstream to close", || {
        (up.seen.upstream_closed.load(Ordering::SeqCst) == 1).then_some(())
    });
    let r = post(&s, "/api/2", b"x=1");
    assert_eq!(
        r.status, 200,
        "POST after the upstream closed the pooled connection: {}",
        r.head
    );
    wait_for("the upstream to close", || {
        (up.seen.upstream_closed.load(Ordering::SeqCst) == 2).then_some(())
    });
    let r = get(&s, "/api/3");
    assert_eq!(
        r.status, 200,
        "GET after the upstream closed the pooled connection: {}",
        r.head
    );
    assert_eq!(up.seen.targets(), ["/api/1", "/api/2", "/api/3"]);
    assert_eq!(up.seen.connections(), 3);
}

// ---------------------------------------------------------------------------------------
// framing toward the client
// ---------------------------------------------------------------------------------------

/// A chunked upstream body: three chunks (upper-case hex, an extension) and a trailer.
fn chunked_upstream(_: &Got, io: &mut dyn Io, _: &Seen) -> Next {
    let data = noise(100_000, 11);
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, piece) in [&data[..1000], &data[1000..60_000], &data[60_000..]]
        .iter()
        .enumerate()
    {
        if i == 0 {
            out.extend_from_slice(format!("{:X};ext=1\r\n", piece.len()).as_bytes());
        } else {
            out.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
        }
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
        // Separate writes, so srvd sees the body in pieces.
        if send_raw(io, &std::mem::take(&mut out)).is_err() {
            return Next::Done;
        }
    }
    match send_raw(io, b"0\r\nX-Trailer: t\r\n\r\n") {
        Ok(()) => Next::KeepAlive,
        Err(n) => n,
    }
}

/// HTTP/1.0 has no chunks: the body reaches a 1.0 client intact, without
/// Transfer-Encoding, delimited by the close (or, buffered whole, by a Content-Length), and
/// the connection ends after it.
#[test]
fn chunked_upstream_response_to_an_http10_client() {
    let up = Upstream::tcp(chunked_upstream);
    let s = srvd("proxy-chunked-10", 1, &api(&up.addr, ""));
    let mut c = Client::new(&s);
    c.send("GET /api/chunked HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert!(
        c.closed(),
        "the connection must end after a close-delimited body"
    );
    let (r, _) = parse_one(&c.buf, false, true).expect("a response");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.header("transfer-encoding").is_none(),
        "chunked sent to HTTP/1.0: {}",
        r.head
    );
    if let Some(n) = r.header("content-length") {
        assert_eq!(n, "100000", "{}", r.head);
    }
    let body = &c.buf[find(&c.buf, b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.len(), 100_000, "body length");
    assert!(body == noise(100_000, 11).as_slice(), "the body differs");
    assert_eq!(
        up.seen.last().version,
        "HTTP/1.1",
        "srvd speaks HTTP/1.1 upstream"
    );
}

/// The same body to an HTTP/1.1 client is re-chunked, decodes to the same bytes, and the
/// connection serves the next request.
#[test]
fn chunked_upstream_response_to_an_http11_client_is_rechunked() {
    let up = Upstream::tcp(chunked_upstream);
    let s = srvd("proxy-chunked-11", 1, &api(&up.addr, ""));
    let mut c = Client::new(&s);
    c.send("GET /api/chunked HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.chunked,
        "a body of unknown length is chunked for HTTP/1.1: {}",
        r.head
    );
    assert!(r.header("content-length").is_none(), "{}", r.head);
    assert!(r.complete, "the last chunk arrived");
    assert!(
        r.body == noise(100_000, 11),
        "decoded body differs (len {})",
        r.body.len()
    );
    // The framing was right: the connection is in sync for the next request.
    c.send("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let next = c.response();
    assert_eq!((next.status, next.body_str().as_str()), (200, "hello\n"));
}

/// A response to HEAD, a 204 and a 304 carry no body, and the keep-alive connection stays
/// in sync through all three.
#[test]
fn head_204_and_304_carry_no_body() {
    let up = Upstream::tcp(|got, io, _| {
        let out: &[u8] = match got.target.as_str() {
            "/api/head" => {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"
            }
            "/api/204" => b"HTTP/1.1 204 No Content\r\nX-App: yes\r\n\r\n",
            _ => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
        };
        match send_raw(io, out) {
            Ok(()) => Next::KeepAlive,
            Err(n) => n,
        }
    });
    let s = srvd("proxy-nobody", 1, &api(&up.addr, ""));
    let mut c = Client::new(&s);
    c.send("HEAD /api/head HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response_with(true);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("1234"),
        "HEAD keeps the length a GET would have: {}",
        r.head
    );
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    c.send("GET /api/204 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-app"), Some("yes"));
    assert!(
        r.header("transfer-encoding").is_none() && r.header("content-length").is_none(),
        "{}",
        r.head
    );
    c.send("GET /api/304 HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: \"v1\"\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 304);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    c.send("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello\n"),
        "no stray body bytes before it"
    );
}

// ---------------------------------------------------------------------------------------
// request bodies and Expect
// ---------------------------------------------------------------------------------------

/// A chunked upload reaches the upstream decoded, with a Content-Length and without
/// Transfer-Encoding; a larger one (many chunks) too.
#[test]
fn a_chunked_upload_arrives_upstream_with_content_length() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-upload", 1, &api(&up.addr, ""));
    let r = exchange(
        &s,
        "POST /api/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=x\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    let got = up.seen.last();
    assert_eq!(got.header("content-length"), Some("11"), "{}", got.head);
    assert!(got.header("transfer-encoding").is_none(), "{}", got.head);
    assert_eq!(got.body, b"hello world");

    let data = noise(300_000, 5);
    let mut c = Client::new(&s);
    c.send("PUT /api/big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for piece in data.chunks(7000) {
        c.send(format!("{:x}\r\n", piece.len()));
        c.send(piece);
        c.send("\r\n");
    }
    c.send("0\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let got = up.seen.last();
    assert_eq!(got.method, "PUT");
    assert_eq!(got.header("content-length"), Some("300000"), "{}", got.head);
    assert!(got.header("transfer-encoding").is_none());
    assert!(
        got.body == data,
        "the upstream got {} bytes, not the same",
        got.body.len()
    );
}

/// `max_body = "1KiB"`: a declared length over it is a 413 at once, with or without
/// `Expect: 100-continue` (no 100 first, and the body is never sent by this client); a
/// chunked body that grows past it is a 413 too. No upstream connection is ever opened.
#[test]
fn bodies_over_max_body_are_413_and_expect_gets_it_without_the_body() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-413", 1, &api(&up.addr, "max_body = \"1KiB\""));

    let mut c = Client::new(&s);
    c.send("POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.response();
    assert_eq!(
        r.status, 413,
        "Expect with a length over max_body: {}",
        r.head
    );

    let mut c = Client::new(&s);
    c.send("POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n");
    assert_eq!(
        c.response().status,
        413,
        "Content-Length over max_body, body not sent"
    );

    let mut c = Client::new(&s);
    c.send("POST /api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..4 {
        c.try_send(format!("200\r\n{}\r\n", "a".repeat(0x200)));
    }
    c.try_send("0\r\n\r\n");
    assert_eq!(c.response().status, 413, "a chunked body past max_body");

    // Exactly at the limit is fine.
    let r = post(&s, "/api/ok", &[b'z'; 1024]);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        up.seen.connections(),
        1,
        "only the last request reached the upstream: {:?}",
        up.seen.targets()
    );
    assert_eq!(up.seen.targets(), ["/api/ok"]);
}

/// `Expect: 100-continue` under the limit: srvd answers `100 Continue` itself (before any
/// upstream connection), then forwards the body without the expectation and relays the
/// final response.
#[test]
fn expect_100_continue_under_the_limit_gets_100_then_the_final_response() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-100", 1, &api(&up.addr, "max_body = \"1KiB\""));
    let mut c = Client::new(&s);
    c.send("POST /api/e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100, "{}", interim.head);
    assert_eq!(
        up.seen.connections(),
        0,
        "no upstream connection before the body is in"
    );
    c.send("hello world");
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body_str(), "POST /api/e");
    let got = up.seen.last();
    assert!(
        got.header("expect").is_none(),
        "Expect reached the upstream: {}",
        got.head
    );
    assert_eq!(got.header("content-length"), Some("11"));
    assert_eq!(got.body, b"hello world");
}

/// A client sending its 20-byte body one byte every 100 ms (and a chunked one, a chunk
/// every 100 ms) holds no upstream connection while it does: the upstream sees none until
/// the body is complete, then exactly one request with the whole body.
#[test]
fn a_slow_uploader_opens_no_upstream_connection_until_its_body_is_complete() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-slow-upload", 1, &api(&up.addr, ""));
    let body = b"abcdefghijklmnopqrst";
    let mut c = Client::new(&s);
    c.send(format!(
        "POST /api/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    for (i, b) in body.iter().enumerate() {
        // The uploader's pace is what this test is about.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            up.seen.connections(),
            0,
            "an upstream connection after {i} of {} bytes",
            body.len()
        );
        c.send([*b]);
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(up.seen.connections(), 1);
    assert_eq!(up.seen.last().body, body);

    let mut c = Client::new(&s);
    c.send("POST /api/slow-chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (i, b) in b"12345678".iter().enumerate() {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            up.seen.connections(),
            1,
            "a new upstream connection after {i} chunks"
        );
        assert_eq!(up.seen.requests().len(), 1);
        c.send(format!("1\r\n{}\r\n", *b as char));
    }
    c.send("0\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let got = up.seen.last();
    assert_eq!(got.target, "/api/slow-chunked");
    assert_eq!(got.body, b"12345678");
}

// ---------------------------------------------------------------------------------------
// request headers
// ---------------------------------------------------------------------------------------

/// Hop-by-hop fields (Connection and the names it lists, Keep-Alive, Proxy-Connection, TE,
/// Trailer, Upgrade) and any name with `_` never reach the upstream; the rest does, Host
/// as the client sent it.
#[test]
fn hop_by_hop_and_underscore_headers_never_reach_the_upstream() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-hop", 1, &api(&up.addr, ""));
    let r = exchange(
        &s,
        "GET /api/h HTTP/1.1\r\n\
         Host: App.Example:8443\r\n\
         Connection: close, X-Hop-Listed\r\n\
         X-Hop-Listed: secret\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         Trailer: X-Trail\r\n\
         Upgrade: h2c\r\n\
         X_Forwarded_For: 9.9.9.9\r\n\
         X-Dash_Mix: 2\r\n\
         Auth_User: root\r\n\
         X-Keep: yes\r\n\
         Accept: text/plain\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    let got = up.seen.last();
    for name in [
        "x-hop-listed",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            got.header(name).is_none(),
            "{name} reached the upstream:\n{}",
            got.head
        );
    }
    for v in got.all("connection") {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("x-hop-listed") && !v.contains("close"),
            "the client's Connection reached the upstream:\n{}",
            got.head
        );
    }
    for (name, _) in &got.headers {
        assert!(
            !name.contains('_'),
            "{name} (with an underscore) reached the upstream:\n{}",
            got.head
        );
    }
    assert!(!got.head.contains("9.9.9.9"), "{}", got.head);
    assert_eq!(got.header("x-keep"), Some("yes"));
    assert_eq!(got.header("accept"), Some("text/plain"));
    assert_eq!(
        got.all("host"),
        ["App.Example:8443"],
        "Host as the client sent it"
    );
}

/// From an untrusted peer, X-Forwarded-For (even in two lines), -Proto and -Host are
/// replaced by srvd's: the peer, `http`, and the Host the client sent; Via names srvd.
#[test]
fn spoofed_forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::tcp(ok);
    let s = srvd("proxy-xff", 1, &api(&up.addr, ""));
    let r = get_with(
        &s,
        "/api/x",
        "X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n",
    );
    assert_eq!(r.status, 200);
    let got = up.seen.last();
    assert_eq!(got.all("x-forwarded-for"), ["127.0.0.1"], "{}", got.head);
    assert_eq!(got.all("x-forwarded-proto"), ["http"], "{}", got.head);
    assert_eq!(got.all("x-forwarded-host"), ["localhost"], "{}", got.head);
    assert!(
        !got.head.contains("6.6.6.6")
            && !got.head.contains("7.7.7.7")
            && !got.head.contains("evil")
    );
    assert_eq!(got.all("via"), ["1.1 srvd"], "{}", got.head);
}

/// With `trusted_proxies` naming the peer (an address, or a range), the incoming
/// X-Forwarded-For is kept and the peer appended; the trusted peer's -Proto and -Host are
/// kept (issue 11: "replaced unless the peer is trusted"). Without an incoming value, the
/// peer alone.
#[test]
fn forwarded_for_from_a_trusted_peer_is_kept_and_appended() {
    let up = Upstream::tcp(ok);
    for (name, trusted) in [
        ("proxy-trusted-ip", "\"127.0.0.1\""),
        ("proxy-trusted-cidr", "\"10.0.0.0/8\", \"127.0.0.0/8\""),
    ] {
        let s = srvd(
            name,
            1,
            &format!("trusted_proxies = [{trusted}]\n{}", api(&up.addr, "")),
        );
        let r = get_with(
            &s,
            "/api/t",
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\n",
        );
        assert_eq!(r.status, 200);
        let got = up.seen.last();
        assert_eq!(
            got.all("x-forwarded-for"),
            ["203.0.113.7, 127.0.0.1"],
            "{trusted}:\n{}",
            got.head
        );
        assert_eq!(
            got.all("x-forwarded-proto"),
            ["https"],
            "{trusted}:\n{}",
            got.head
        );
        assert_eq!(
            got.all("x-forwarded-host"),
            ["www.example.com"],
            "{trusted}:\n{}",
            got.head
        );

        get(&s, "/api/plain");
        let got = up.seen.last();
        assert_eq!(got.all("x-forwarded-for"), ["127.0.0.1"], "{}", got.head);
        assert_eq!(got.all("x-forwarded-proto"), ["http"], "{}", got.head);
    }
}

// ---------------------------------------------------------------------------------------
// bad upstream responses
// ---------------------------------------------------------------------------------------

/// A response head over `max_response_head` (default 32 KiB) is a 502; one just under it
/// passes.
#[test]
fn an_oversized_upstream_head_is_502() {
    let up = Upstream::tcp(|got, io, seen| {
        let size = if got.target == "/api/big" {
            40 * 1024
        } else {
            30 * 1024
        };
        let headers = format!("X-Big: {}\r\n", "a".repeat(size));
        match reply(io, "200 OK", &headers, b"ok") {
            Next::KeepAlive if got.target == "/api/big" => wait_eof(io, seen),
            n => n,
        }
    });
    let s = srvd("proxy-bighead", 1, &api(&up.addr, ""));
    let r = get(&s, "/api/fits");
    assert_eq!(r.status, 200, "a 30 KiB head is under the 32 KiB default");
    assert_eq!(r.body_str(), "ok");
    let r = get(&s, "/api/big");
    assert_eq!(r.status, 502, "{}", &r.head[..r.head.len().min(200)]);
    assert!(r.complete);
    wait_for("srvd to drop the upstream connection", || {
        (up.seen.aborted() >= 1).then_some(())
    });
}

/// Contradictory framing from the upstream (Content-Length with Transfer-Encoding, two
/// different Content-Lengths) or a malformed status line: 502, and that upstream
/// connection is dropped.
#[test]
fn contradictory_upstream_framing_is_502() {
    let up = Upstream::tcp(|got, io, seen| {
        let out: &[u8] = match got.target.as_str() {
            "/api/clte" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/api/tecl" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/api/twocl" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            _ => b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if let Err(n) = send_raw(io, out) {
            return n;
        }
        wait_eof(io, seen)
    });
    let s = srvd("proxy-framing", 1, &api(&up.addr, ""));
    for (i, path) in ["/api/clte", "/api/tecl", "/api/twocl", "/api/status"]
        .iter()
        .enumerate()
    {
        let r = get(&s, path);
        assert_eq!(r.status, 502, "{path}: {}", r.head);
        assert!(r.complete, "{path}: the 502 is complete");
        assert!(
            !r.body_str().contains("hello"),
            "{path}: the upstream's body leaked"
        );
        wait_for("srvd to drop the upstream connection", || {
            (up.seen.aborted() > i).then_some(())
        });
    }
    assert_eq!(
        up.seen.connections(),
        4,
        "no connection went back to the pool"
    );
}

/// Bad chunk framing never reaches the client as a complete response: either a 502 (when
/// nothing was sent yet), or the connection is cut without the last chunk. In the first
/// case the head and the bad chunk come in one write; in the second a good chunk comes
/// first and the bad one 300 ms later.
#[test]
fn bad_upstream_chunk_framing_never_looks_complete() {
    let up = Upstream::tcp(|got, io, seen| {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if got.target == "/api/at-once" {
            let mut out = head.to_vec();
            out.extend_from_slice(b"5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n");
            if let Err(n) = send_raw(io, &out) {
                return n;
            }
        } else {
            let mut out = head.to_vec();
            out.extend_from_slice(b"5\r\nhello\r\n");
            if let Err(n) = send_raw(io, &out) {
                return n;
            }
            // Deliberately late, so the head and the first chunk went to the client.
            std::thread::sleep(Duration::from_millis(300));
            if let Err(n) = send_raw(io, b"3\r\nabcXX\r\n0\r\n\r\n") {
                return n;
            }
        }
        wait_eof(io, seen)
    });
    let s = srvd("proxy-badchunk", 1, &api(&up.addr, ""));

    let mut c = Client::new(&s);
    c.send("GET /api/at-once HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        c.read_until(|b| !b.is_empty()),
        "at once: srvd closed the connection without sending a byte; nothing had reached the \
         client yet, so issue 11 asks for a 502 (\"bad chunk framing: 502 (if nothing was sent yet)\")"
    );
    let r = c.response();
    assert!(
        r.status == 502 && r.complete || r.status == 200 && !r.complete,
        "at once: a 502 or a truncated 200, got {} complete={} {:?}",
        r.status,
        r.complete,
        r.body_str()
    );

    let mut c = Client::new(&s);
    c.send("GET /api/later HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(
        r.status, 200,
        "the head went out before the bad chunk: {}",
        r.head
    );
    assert!(
        !r.complete,
        "a broken body must not end with the last chunk: {:?}",
        r.body_str()
    );
    assert!(c.eof, "the client connection is closed");
    wait_for("srvd to drop the upstream connections", || {
        (up.seen.aborted() == 2).then_some(())
    });
}

/// Responses the app sends pass through untouched, its own 404 and 503 included, although
/// the site has error pages for them; the site's 5xx page replaces srvd's own 502 only.
#[test]
fn app_errors_pass_through_and_error_pages_replace_only_srvds_own() {
    let up = Upstream::tcp(|got, io, _| match got.target.as_str() {
        "/api/missing" => reply(
            io,
            "404 Not Found",
            "Content-Type: text/plain\r\n",
            b"the app's own 404",
        ),
        _ => reply(
            io,
            "503 Service Unavailable",
            "Retry-After: 7\r\n",
            b"the app is busy",
        ),
    });
    let mut s = Srvd::prepare_with_workers("proxy-pages", "", 1);
    std::fs::write(s.dir.join("5xx.html"), "site 5xx page\n").unwrap();
    std::fs::write(s.dir.join("404.html"), "site 404 page\n").unwrap();
    let d = s.dir.display().to_string();
    let dead = dead_addr();
    s.write_config(&format!(
        "error_pages = {{ 404 = \"{d}/404.html\", \"5xx\" = \"{d}/5xx.html\" }}\n{}[[proxy]]\nmatch = \"/dead\"\nupstream = \"{dead}\"\n",
        api(&up.addr, "")
    ));
    let s = s.start_prepared();
    let r = get(&s, "/api/missing");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (404, "the app's own 404")
    );
    let r = get(&s, "/api/busy");
    assert_eq!((r.status, r.body_str().as_str()), (503, "the app is busy"));
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = get(&s, "/dead/x");
    assert_eq!((r.status, r.body_str().as_str()), (502, "site 5xx page\n"));
    let r = get(&s, "/nofile");
    assert_eq!((r.status, r.body_str().as_str()), (404, "site 404 page\n"));
}

// ---------------------------------------------------------------------------------------
// client aborts, streaming, reload
// ---------------------------------------------------------------------------------------

/// A client that goes away mid-response (a 100 MB body it stops reading), or while the
/// upstream is still thinking: srvd closes the upstream connection (the upstream sees
/// EPIPE / EOF) and the worker's fd count returns to what it was before.
#[test]
fn a_client_abort_closes_the_upstream_connection_and_frees_every_fd() {
    let up = Upstream::tcp(|got, io, seen| match got.target.as_str() {
        "/api/warm" => reply(io, "200 OK", "Connection: close\r\n", b"warm"),
        "/api/big" => {
            if let Err(n) = send_raw(io, b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n") {
                return n;
            }
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..1600 {
                if io.write_all(&block).is_err() {
                    seen.aborted.fetch_add(1, Ordering::SeqCst);
                    return Next::Done;
                }
                // A steady producer, not a flood: ~30 MB/s at most.
                std::thread::sleep(Duration::from_millis(2));
            }
            Next::Done
        }
        _ => wait_eof(io, seen),
    });
    let s = srvd("proxy-abort", 1, &api(&up.addr, ""));
    let pid = only_worker(&s);
    let baseline = fd_count(pid);
    // A complete exchange first (the upstream closes, so nothing is pooled): back to the
    // baseline, so anything opened lazily on a first request is not counted as a leak.
    assert_eq!(get(&s, "/api/warm").body_str(), "warm");
    wait_for("the worker's fds after a complete exchange", || {
        (fd_count(pid) <= baseline).then_some(())
    });

    let mut c = Client::new(&s);
    c.send("GET /api/big HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.read_until(|b| b.len() > 100_000), "the response started");
    drop(c);
    wait_for("the upstream to see srvd close (EPIPE)", || {
        (up.seen.aborted() == 1).then_some(())
    });
    wait_for("the worker's fds to return to the baseline", || {
        (fd_count(pid) <= baseline).then_some(())
    });

    let mut c = Client::new(&s);
    c.send("GET /api/thinking HTTP/1.1\r\nHost: localhost\r\n\r\n");
    wait_for("the upstream to get the request", || {
        up.seen
            .targets()
            .contains(&"/api/thinking".to_owned())
            .then_some(())
    });
    drop(c);
    wait_for("the upstream to see srvd close (EOF)", || {
        (up.seen.aborted() == 2).then_some(())
    });
    wait_for("the worker's fds to return to the baseline", || {
        (fd_count(pid) <= baseline).then_some(())
    });
    assert_eq!(
        get(&s, "/index.html").status,
        200,
        "the worker still serves"
    );
}

/// An event stream: the upstream sends an event only after the test read the previous
/// one through srvd, so the events can only arrive one by one (no buffering). Once for
/// `text/event-stream` (close-delimited upstream) and once for `X-Accel-Buffering: no`
/// (chunked upstream).
#[test]
fn server_sent_events_arrive_one_by_one() {
    fn events(kind: &'static str) -> impl Fn(&Got, &mut dyn Io, &Seen) -> Next + Send + Sync {
        move |_: &Got, io: &mut dyn Io, seen: &Seen| -> Next {
            let head: &[u8] = if kind == "sse" {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
            };
            if let Err(n) = send_raw(io, head) {
                return n;
            }
            for i in 1..=3 {
                wait_released(seen, i);
                let event = format!("data: event {i}\n\n");
                let bytes = if kind == "sse" {
                    event.into_bytes()
                } else {
                    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
                };
                if let Err(n) = send_raw(io, &bytes) {
                    return n;
                }
            }
            if kind == "sse" {
                Next::Close
            } else {
                match send_raw(io, b"0\r\n\r\n") {
                    Ok(()) => Next::KeepAlive,
                    Err(n) => n,
                }
            }
        }
    }
    let sse = Upstream::tcp(events("sse"));
    let plain = Upstream::tcp(events("plain"));
    let cfg = format!(
        "{}[[proxy]]\nmatch = \"/plain\"\nupstream = \"{}\"\n",
        api(&sse.addr, ""),
        plain.addr
    );
    let s = srvd("proxy-sse", 1, &cfg);
    for (path, up) in [("/api/events", &sse), ("/plain/events", &plain)] {
        let mut c = Client::new(&s);
        c.send(format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        ));
        let body = |b: &[u8]| -> Vec<u8> {
            match find(b, b"\r\n\r\n") {
                Some(e) => dechunk(&b[e + 4..]).0,
                None => Vec::new(),
            }
        };
        for i in 1..=3 {
            up.seen.released.store(i, Ordering::SeqCst);
            let want = format!("data: event {i}\n\n");
            assert!(
                c.read_until(|b| contains(&body(b), want.as_bytes())),
                "{path}: event {i} did not arrive before the next was sent; got {:?}",
                String::from_utf8_lossy(&c.buf)
            );
        }
        let r = c.response();
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert!(r.chunked && r.complete, "{path}: {}", r.head);
        assert_eq!(
            r.body_str(),
            "data: event 1\n\ndata: event 2\n\ndata: event 3\n\n"
        );
    }
}

/// Buffering protects the app: a client that reads nothing at all does not hold the
/// upstream; srvd takes the whole 32 MiB response (memory, then a temp file) while the
/// client has read not a byte, and the client then gets every byte intact.
#[test]
fn a_client_that_reads_nothing_does_not_hold_the_upstream() {
    const TOTAL: usize = 32 << 20;
    let up = Upstream::tcp(|_, io, seen| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {TOTAL}\r\n\r\n");
        if let Err(n) = send_raw(io, head.as_bytes()) {
            return n;
        }
        for block in noise(TOTAL, 3).chunks(256 * 1024) {
            if io.write_all(block).is_err() {
                return Next::Done;
            }
            seen.written.fetch_add(block.len(), Ordering::SeqCst);
        }
        seen.finished.store(true, Ordering::SeqCst);
        Next::KeepAlive
    });
    let s = srvd("proxy-buffering", 1, &api(&up.addr, ""));
    let mut c = Client::new(&s);
    c.send("GET /api/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    wait_for(
        "the upstream to write its whole response while the client reads nothing",
        || up.seen.finished.load(Ordering::SeqCst).then_some(()),
    );
    c.s.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), TOTAL);
    assert!(r.body == noise(TOTAL, 3), "the body differs");
}

/// A streamed response (`text/event-stream`) is not spilled: to a client that reads
/// nothing, srvd forwards only what the client's socket takes, so the upstream's writes
/// stall (for 1 s in a row) long before its 64 MiB are out, and no temp file is opened.
#[test]
fn a_streamed_response_is_paced_by_the_client_not_spilled() {
    const TOTAL: usize = 64 << 20;
    let up = Upstream::tcp(|_, io, seen| {
        if let Err(n) = send_raw(
            io,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
        ) {
            return n;
        }
        let mut event = b"data: ".to_vec();
        event.resize(64 * 1024 - 2, b'e');
        event.extend_from_slice(b"\n\n");
        for _ in 0..TOTAL / event.len() {
            if io.write_all(&event).is_err() {
                seen.aborted.fetch_add(1, Ordering::SeqCst);
                return Next::Done;
            }
            seen.written.fetch_add(event.len(), Ordering::SeqCst);
        }
        seen.finished.store(true, Ordering::SeqCst);
        Next::Close
    });
    let s = srvd("proxy-stream-pace", 1, &api(&up.addr, ""));
    let pid = only_worker(&s);
    let mut c = Client::new(&s);
    c.send("GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (mut last, mut same) = (0, 0);
    let stalled_at = wait_for("the upstream's writes to stall behind the client", || {
        assert!(
            !up.seen.finished.load(Ordering::SeqCst),
            "srvd took the whole 64 MiB stream from the upstream while the client read nothing: \
             a text/event-stream response was buffered, not streamed"
        );
        let w = up.seen.written.load(Ordering::SeqCst);
        if w > 0 && w == last {
            same += 1;
        } else {
            (last, same) = (w, 0);
        }
        (same >= 50).then_some(w)
    });
    let spilled: Vec<String> = fds_of(pid)
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.contains("(deleted)"))
        .collect();
    assert!(
        spilled.is_empty(),
        "a streamed response was spilled to {spilled:?}"
    );
    assert!(stalled_at < TOTAL);
    drop(c);
    wait_for("srvd to close the upstream after the client left", || {
        (up.seen.aborted() == 1).then_some(())
    });
}

/// `timeout` (total) cuts an exchange whose upstream keeps dripping bytes, so the idle
/// `read_timeout` never fires: before the head, a 504 at about 1 s; after the head, the
/// client connection is closed with the body truncated.
#[test]
fn the_total_timeout_ends_a_dripping_upstream() {
    let up = Upstream::tcp(|got, io, seen| {
        if got.target == "/api/headless" {
            // A head that never ends: a byte every 100 ms.
            if let Err(n) = send_raw(io, b"HTTP/1.1 200 OK\r\n") {
                return n;
            }
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(100));
                if send_raw(io, b"X").is_err() {
                    break;
                }
            }
            return wait_eof(io, seen);
        }
        if let Err(n) = send_raw(io, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n") {
            return n;
        }
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if send_raw(io, b"x").is_err() {
                break;
            }
        }
        wait_eof(io, seen)
    });
    let s = srvd(
        "proxy-total",
        1,
        &api(&up.addr, "timeout = \"1s\"\nread_timeout = \"5s\""),
    );
    let t = Instant::now();
    let r = get(&s, "/api/headless");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}"
    );

    let t = Instant::now();
    let mut c = Client::new(&s);
    c.send("GET /api/body HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.response();
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        !r.complete,
        "timeout = 1s should have cut the body; all {} of 100 bytes came, after {took:?}",
        r.body.len()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    wait_for("srvd to close both upstream connections", || {
        (up.seen.aborted() == 2).then_some(())
    });
}

/// An upstream whose accept queue is full (listen backlog 0, one connection already
/// queued, nobody accepting) never completes srvd's connect: 504 at `connect_timeout`.
#[test]
fn a_connect_that_hangs_is_504_at_the_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue; later SYNs are dropped, so connects hang.
    let mut fillers = Vec::new();
    for _ in 0..3 {
        if let Ok(f) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(f);
        }
    }
    let s = srvd(
        "proxy-connect-timeout",
        1,
        &api(&addr.to_string(), "connect_timeout = \"1s\""),
    );
    let t = Instant::now();
    let r = get(&s, "/api/x");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}"
    );
    drop(fillers);
}

/// SIGHUP while a proxied request takes 3 s: the request completes with 200 on the old
/// generation, while new requests already go to the new config's upstream.
#[test]
fn sighup_during_a_proxied_request_lets_it_complete() {
    let one = Upstream::tcp(|got, io, _| {
        if got.target == "/api/slow" {
            // A slow page: the app takes 3 s.
            std::thread::sleep(Duration::from_secs(3));
            return reply(io, "200 OK", "", b"slow page done");
        }
        reply(io, "200 OK", "", b"one")
    });
    let two = Upstream::tcp(|_, io, _| reply(io, "200 OK", "", b"two"));
    let mut s = srvd("proxy-hup", 1, &api(&one.addr, ""));
    assert_eq!(get(&s, "/api/fast").body_str(), "one");

    let mut slow = Client::new(&s);
    slow.s.set_read_timeout(Some(DEADLINE)).unwrap();
    let t = Instant::now();
    slow.send("GET /api/slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    wait_for("the upstream to get the slow request", || {
        one.seen
            .targets()
            .contains(&"/api/slow".to_owned())
            .then_some(())
    });
    s.write_config(&api(&two.addr, ""));
    s.signal(Signal::SIGHUP);
    wait_for("new requests to use the new upstream", || {
        (get(&s, "/api/fast").body_str() == "two").then_some(())
    });

    let r = slow.response();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body_str(), "slow page done");
    assert!(t.elapsed() >= Duration::from_millis(2900));
}

// ---------------------------------------------------------------------------------------
// routes: unix sockets, prefixes
// ---------------------------------------------------------------------------------------

/// A unix-socket upstream works like a TCP one: GET and POST bodies, the pool, the
/// forwarding headers; a missing socket is a 502.
#[test]
fn a_unix_socket_upstream_behaves_like_tcp() {
    let dir = temp_dir("proxy-unix-up");
    let up = Upstream::unix(dir.join("app.sock"), ok);
    let missing = dir.join("missing.sock");
    let cfg = format!(
        "{}[[proxy]]\nmatch = \"/gone\"\nupstream = \"unix:{}\"\n",
        api(&up.addr, KEEP),
        missing.display()
    );
    let s = srvd("proxy-unix", 1, &cfg);
    assert_eq!(get(&s, "/api/a").body_str(), "GET /api/a");
    assert_eq!(get(&s, "/api/b").body_str(), "GET /api/b");
    assert_eq!(
        up.seen.connections(),
        1,
        "the second GET reused the pooled unix connection"
    );
    let r = post(&s, "/api/form", b"k=v&x=y");
    assert_eq!(r.body_str(), "POST /api/form");
    let got = up.seen.last();
    assert_eq!(got.body, b"k=v&x=y");
    assert_eq!(got.header("content-length"), Some("7"));
    assert_eq!(got.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header("via"), Some("1.1 srvd"));
    let t = Instant::now();
    assert_eq!(get(&s, "/gone/x").status, 502);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(s);
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `strip_prefix = true` sends the rest of the path with a leading `/` (query kept) and the
/// prefix in X-Forwarded-Prefix; without it the path is sent as is and a client's own
/// X-Forwarded-Prefix does not pass.
#[test]
fn strip_prefix_sends_the_rest_and_x_forwarded_prefix() {
    let up = Upstream::tcp(ok);
    let cfg = format!(
        "[[proxy]]\nmatch = \"/api\"\nupstream = \"{0}\"\nstrip_prefix = true\n\n\
         [[proxy]]\nmatch = \"/v1/\"\nupstream = \"{0}\"\nstrip_prefix = true\n\n\
         [[proxy]]\nmatch = \"/raw\"\nupstream = \"{0}\"\n",
        up.addr
    );
    let s = srvd("proxy-strip", 1, &cfg);
    for (path, target, prefix) in [
        ("/api/users/7?x=1", "/users/7?x=1", Some("/api")),
        ("/api", "/", Some("/api")),
        ("/api/", "/", Some("/api")),
        ("/api?q=1", "/?q=1", Some("/api")),
        ("/v1/items", "/items", Some("/v1")),
        ("/raw/a", "/raw/a", None),
    ] {
        let r = get_with(&s, path, "X-Forwarded-Prefix: /spoofed\r\n");
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        let got = up.seen.last();
        assert_eq!(got.target, target, "{path}");
        let sent: Vec<&str> = got.all("x-forwarded-prefix");
        assert_eq!(
            sent,
            prefix.into_iter().collect::<Vec<_>>(),
            "{path}:\n{}",
            got.head
        );
    }
}

/// `match = "/api"` takes `/api` and `/api/...` but not `/apix`; `"/only/"` only below it;
/// `glob = "/app/**"` takes `/app/` and below; `suffix = ".py"` the tutorial's scripts (the
/// query does not count); the first matching route wins; the rest are files.
#[test]
fn route_matching_prefix_glob_suffix_and_order() {
    let a =
        Upstream::tcp(|got, io, _| reply(io, "200 OK", "", format!("A {}", got.target).as_bytes()));
    let b =
        Upstream::tcp(|got, io, _| reply(io, "200 OK", "", format!("B {}", got.target).as_bytes()));
    let cfg = format!(
        "[[proxy]]\nmatch = \"/api\"\nupstream = \"{a}\"\n\n\
         [[proxy]]\nmatch = \"/only/\"\nupstream = \"{a}\"\n\n\
         [[proxy]]\nglob = \"/app/**\"\nupstream = \"{a}\"\n\n\
         [[proxy]]\nsuffix = \".py\"\nupstream = \"{a}\"\n\n\
         [[proxy]]\nmatch = \"/dup\"\nupstream = \"{a}\"\n\n\
         [[proxy]]\nmatch = \"/dup\"\nupstream = \"{b}\"\n\n\
         [[proxy]]\nmatch = \"/second\"\nupstream = \"{b}\"\n",
        a = a.addr,
        b = b.addr
    );
    let s = srvd("proxy-match", 1, &cfg);
    s.file("apix", "static apix\n");
    s.file("only", "static only\n");
    s.file("api.txt", "static api.txt\n");
    s.file("x.pyc", "static pyc\n");
    for (path, want) in [
        ("/api", "A /api"),
        ("/api/", "A /api/"),
        ("/api/users/7", "A /api/users/7"),
        ("/api?x=1", "A /api?x=1"),
        ("/only/x", "A /only/x"),
        ("/app/", "A /app/"),
        ("/app/a/b.html", "A /app/a/b.html"),
        ("/login.py", "A /login.py"),
        ("/dir/time.py?format=json", "A /dir/time.py?format=json"),
        ("/dup/x", "A /dup/x"),
        ("/second/x", "B /second/x"),
    ] {
        let r = get(&s, path);
        assert_eq!((r.status, r.body_str().as_str()), (200, want), "{path}");
    }
    for (path, want) in [
        ("/apix", "static apix\n"),
        ("/only", "static only\n"),
        ("/api.txt", "static api.txt\n"),
        ("/x.pyc", "static pyc\n"),
        ("/index.html", "hello\n"),
    ] {
        let r = get(&s, path);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, want),
            "{path} is a file"
        );
    }
    assert_eq!(get(&s, "/apixx/nothing").status, 404);
    assert!(
        b.seen.targets().iter().all(|t| t.starts_with("/second")),
        "B got {:?}",
        b.seen.targets()
    );
}

// ---------------------------------------------------------------------------------------
// the WSGI example under real gunicorn
// ---------------------------------------------------------------------------------------

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wsgi")
}

/// Whether `python3 -m gunicorn` works, and whether it knows `--no-control-socket` (newer
/// versions open a control socket in ~/.gunicorn by default, which parallel tests share).
fn gunicorn_flags() -> Option<&'static Vec<String>> {
    static FLAGS: OnceLock<Option<Vec<String>>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let out = Command::new("python3")
                .args(["-m", "gunicorn", "--help"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            let help = String::from_utf8_lossy(&out.stdout);
            let mut flags = Vec::new();
            if help.contains("--no-control-socket") {
                flags.push("--no-control-socket".to_owned());
            }
            Some(flags)
        })
        .as_ref()
}

/// gunicorn running examples/wsgi/app.py on a unix socket in its own directory; stopped
/// (SIGTERM, then SIGKILL after the deadline) when dropped.
struct Gunicorn {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Gunicorn {
    /// `None` (with a message) when gunicorn is not installed and SRVD_REQUIRE_GUNICORN is
    /// unset; a panic when it is set.
    fn start(test: &str) -> Option<Gunicorn> {
        let Some(flags) = gunicorn_flags() else {
            let required = std::env::var_os("SRVD_REQUIRE_GUNICORN")
                .is_some_and(|v| !v.is_empty() && v != "0");
            assert!(
                !required,
                "SRVD_REQUIRE_GUNICORN is set but `python3 -m gunicorn` does not run; install it with \
                 `python3 -m pip install -r .ci/python-requirements.txt`"
            );
            eprintln!(
                "SKIPPED {test}: gunicorn is not installed (python3 -m pip install -r .ci/python-requirements.txt; \
                 set SRVD_REQUIRE_GUNICORN=1 to make this a failure)"
            );
            return None;
        };
        let dir = temp_dir(&format!("gunicorn-{test}"));
        let sock = dir.join("app.sock");
        let log = std::fs::File::create(dir.join("gunicorn.log")).unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--graceful-timeout",
                "2",
            ])
            .args(flags)
            .arg("--bind")
            .arg(format!("unix:{}", sock.display()))
            .arg("--chdir")
            .arg(example_dir())
            .arg("app:application")
            .env("SRVD_WSGI_DB", dir.join("users.sqlite3"))
            // No __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn gunicorn");
        let mut g = Gunicorn { child, dir, sock };
        wait_for("gunicorn to listen", || {
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!("gunicorn exited ({status}):\n{}", g.log());
            }
            UnixStream::connect(&g.sock).is_ok().then_some(())
        });
        Some(g)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gunicorn.log")).unwrap_or_default()
    }

    /// srvd serving the harness's root and sending `*.py` to this gunicorn.
    fn srvd(&self, name: &str) -> Srvd {
        srvd(
            name,
            1,
            &format!(
                "[[proxy]]\nsuffix = \".py\"\nupstream = \"unix:{}\"\n",
                self.sock.display()
            ),
        )
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gunicorn log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The example's config passes `srvd --check` as shipped.
#[test]
fn the_wsgi_example_config_is_valid() {
    // Run from a scratch directory (run_cli leaves its output files there); the config's
    // relative paths resolve against its own directory.
    let scratch = temp_dir("wsgi-check");
    let config = example_dir().join("srvd.toml");
    let run = run_cli(&scratch, &["--check", "--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&scratch);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// The example's pages through srvd and gunicorn: the login form, logging in (right and
/// wrong password), registering and logging in as the new user (the user store is shared
/// by gunicorn's workers), the time page, the app's own 404, HEAD, and files next to it.
#[test]
fn wsgi_example_pages_through_srvd_and_gunicorn() {
    let Some(g) = Gunicorn::start("pages") else {
        return;
    };
    let s = g.srvd("proxy-wsgi-pages");

    let r = get(&s, "/login.py");
    assert_eq!(r.status, 200, "{}\n{}", r.head, g.log());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{}",
        r.head
    );
    assert!(
        r.body_str()
            .contains("<form method=\"post\" action=\"/login.py\">"),
        "{}",
        r.body_str()
    );

    let r = post(&s, "/login.py", b"user=demo&password=demo");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(
        r.body_str().contains("Welcome, <strong>demo</strong>"),
        "{}",
        r.body_str()
    );
    let r = post(&s, "/login.py", b"user=demo&password=nope");
    assert_eq!(r.status, 401);
    assert!(r.body_str().contains("wrong password"), "{}", r.body_str());

    let r = post(&s, "/register.py", b"user=alice&password=wonderland");
    assert_eq!(r.status, 201, "{}", r.body_str());
    assert!(r.body_str().contains("Registered <strong>alice</strong>"));
    assert_eq!(
        post(&s, "/register.py", b"user=alice&password=other").status,
        409
    );
    for _ in 0..4 {
        // Several times: each of gunicorn's workers knows alice.
        let r = post(&s, "/login.py", b"user=alice&password=wonderland");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert!(r.body_str().contains("Welcome, <strong>alice</strong>"));
    }

    let r = get(&s, "/time.py?format=json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.body_str();
    let unix: u64 = text
        .split("\"unix\":")
        .nth(1)
        .and_then(|t| {
            t.trim()
                .trim_end_matches(['}', '\n', ' '])
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no unix time in {text}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(unix.abs_diff(now) < 60, "server time {unix}, now {now}");
    let r = get(&s, "/time.py");
    assert!(r.body_str().contains("on the server"), "{}", r.body_str());

    let r = get(&s, "/nothing.py");
    assert_eq!(r.status, 404);
    assert!(
        r.body_str().contains("No page at <code>/nothing.py</code>"),
        "the app's own 404: {}",
        r.body_str()
    );

    let r = exchange(
        &s,
        "HEAD /login.py HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&s, "/index.html").body_str(),
        "hello\n",
        "files still come from disk"
    );
}

/// /echo.py shows what gunicorn's app received: the forwarding headers srvd set (a spoofed
/// X-Forwarded-For replaced), Via, the path and query, and a body with its Content-Length
/// (a chunked upload arrives with one, and no Transfer-Encoding).
#[test]
fn wsgi_echo_sees_what_srvd_forwards() {
    let Some(g) = Gunicorn::start("echo") else {
        return;
    };
    let s = g.srvd("proxy-wsgi-echo");
    let r = exchange(
        &s,
        "POST /echo.py?a=1&b=two HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 7.7.7.7\r\n\
         Content-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello there",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.head, g.log());
    let j = r.body_str();
    for want in [
        "\"method\": \"POST\"",
        "\"path\": \"/echo.py\"",
        "\"query\": \"a=1&b=two\"",
        "\"X-Forwarded-For\": \"127.0.0.1\"",
        "\"X-Forwarded-Proto\": \"http\"",
        "\"X-Forwarded-Host\": \"shop.example\"",
        "\"Host\": \"shop.example\"",
        "\"Via\": \"1.1 srvd\"",
        "\"Content-Length\": \"11\"",
        "\"body\": \"hello there\"",
        "\"Expect\": null",
        "\"Transfer-Encoding\": null",
    ] {
        assert!(j.contains(want), "{want} not in\n{j}");
    }
    assert!(
        !j.contains("6.6.6.6") && !j.contains("7.7.7.7"),
        "a spoofed address reached the app:\n{j}"
    );

    let mut c = Client::new(&s);
    c.send(
        "PUT /echo.py HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n\
         4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
    );
    let mut r = c.response();
    if r.status == 100 {
        // srvd's own interim answer; the final one follows.
        r = c.response();
    }
    assert_eq!(r.status, 200, "{}", r.head);
    let j = r.body_str();
    for want in [
        "\"method\": \"PUT\"",
        "\"Content-Length\": \"9\"",
        "\"body\": \"Wikipedia\"",
        "\"Transfer-Encoding\": null",
    ] {
        assert!(j.contains(want), "{want} not in\n{j}");
    }
}

/// /stream.py: gunicorn streams parts without a length; an HTTP/1.1 client gets them
/// chunked, an HTTP/1.0 client close-delimited, both whole. With `events=1` it is
/// `text/event-stream`, relayed as it comes: the first event is there before the app has
/// produced the last (0.5 s apart).
#[test]
fn wsgi_stream_through_srvd_and_gunicorn() {
    let Some(g) = Gunicorn::start("stream") else {
        return;
    };
    let s = g.srvd("proxy-wsgi-stream");
    let want: String = (1..=5).map(|i| format!("part {i} of 5\n")).collect();

    let r = get(&s, "/stream.py?n=5&delay=0.05");
    assert_eq!(r.status, 200, "{}\n{}", r.head, g.log());
    assert!(r.complete);
    assert_eq!(r.body_str(), want);

    let mut c = Client::new(&s);
    c.send("GET /stream.py?n=5&delay=0.05 HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert!(c.closed());
    let (r, _) = parse_one(&c.buf, false, true).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    assert_eq!(r.body_str(), want);

    let mut c = Client::new(&s);
    c.send("GET /stream.py?events=1&n=3&delay=0.5 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    let body = |b: &[u8]| -> Vec<u8> {
        match find(b, b"\r\n\r\n") {
            Some(e) => dechunk(&b[e + 4..]).0,
            None => Vec::new(),
        }
    };
    assert!(
        c.read_until(|b| contains(&body(b), b"data: part 1 of 3\n\n")),
        "first event: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    assert!(
        !contains(&body(&c.buf), b"part 3 of 3"),
        "the first event was held back until the end of the stream"
    );
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/event-stream"),
        "{}",
        r.head
    );
    assert!(r.complete);
    let text = r.body_str();
    for i in 1..=3 {
        assert!(
            text.contains(&format!("id: {i}\nevent: tick\ndata: part {i} of 3\n\n")),
            "{text}"
        );
    }
}
