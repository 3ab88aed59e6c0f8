//! More HTTPS from the real binary (issue 13), each case beside its plain-HTTP twin where
//! one exists: proxy routes over TLS, the handshake cap under 300 stalled handshakes,
//! keep-alive / HEAD / 304 / Range / multipart ranges / pipelining on one TLS connection,
//! compressed variants over TLS, clients that drop a large TLS download halfway, and how
//! srvd ends a TLS connection (close_notify on every way it closes).
//!
//! The clients are independent of srvd's rustls: Python's `ssl` (OpenSSL) driven by the
//! scripts below, and curl. Certificates are made per run with rcgen (no key is committed).
//! Every wait polls with a deadline ([`wait_for`], socket timeouts, child deadlines); there
//! are no fixed sleeps, and every loop is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::certs::Ca;
use common::*;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// certificates and the server
// ---------------------------------------------------------------------------------------

/// A srvd (one worker) with a plain listener (`s.port`) and a TLS one, the default site's
/// certificate for `localhost` (and `b.pem`/`b.key` for `b.test`, for a `[[site]]`).
struct Tls {
    s: Srvd,
    ca: PathBuf,
    tls_port: u16,
}

/// `top`: top-level keys; `tables`: `[[proxy]]` and other tables after them.
fn start(name: &str, top: &str, tables: &str) -> Tls {
    let mut s = Srvd::prepare_with_workers(name, "", 1);
    let ca = Ca::new();
    ca.issue(&s.dir, "default", &["localhost"], 90);
    ca.issue(&s.dir, "b", &["b.test"], 90);
    let ca_path = s.dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let plain = s.port;
    let tls_port = free_port();
    std::fs::write(
        &s.config_path,
        format!(
            "listen = [\"127.0.0.1:{plain}\", \"127.0.0.1:{tls_port} tls\"]\nworkers = 1\n\
             root = \"root\"\ntls = {{ cert = \"default.pem\", key = \"default.key\" }}\n\
             {top}\n{tables}\n"
        ),
    )
    .unwrap();
    s.workers_expected = 1;
    Tls {
        s: s.start_prepared(),
        ca: ca_path,
        tls_port,
    }
}

impl Tls {
    fn worker(&self) -> i32 {
        let w = self.s.workers();
        assert_eq!(w.len(), 1, "{w:?}");
        w[0]
    }
}

// ---------------------------------------------------------------------------------------
// the Python TLS client
// ---------------------------------------------------------------------------------------

/// One TLS connection (OpenSSL, the CA and the name checked, SNI as given, ALPN http/1.1)
/// that sends requests one at a time (`seq`: each after the previous response) or all in
/// one write (`pipe`), reads one response per request (Content-Length framing; none for
/// HEAD, 1xx, 204, 304) and writes the raw responses to stdout. With `close` as the mode's
/// suffix (`seq-close`), it then reads until the server closes and says on stderr how:
/// `clean-eof` (close_notify, then EOF) or `ragged-eof` (a TCP close without close_notify,
/// which `suppress_ragged_eofs=False` makes visible as SSLEOFError). Requests are
/// `G:<hex>` or `H:<hex>` (HEAD). Failures go to stderr with exit status 1.
const PY_SESSION: &str = r#"
import socket, ssl, sys
port, ca, sni, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
reqs = [(r[0] == "H", bytes.fromhex(r[2:])) for r in sys.argv[5:]]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])

def read_one(t, buf, head):
    while b"\r\n\r\n" not in buf:
        d = t.recv(65536)
        if not d:
            raise EOFError("closed before a response head (%d bytes: %r)" % (len(buf), buf[:200]))
        buf += d
    end = buf.index(b"\r\n\r\n") + 4
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for l in lines[1:]:
        if l.lower().startswith("content-length:"):
            length = int(l.split(":", 1)[1])
    if head or status in (204, 304) or status < 200:
        length = 0
    while len(buf) < end + length:
        d = t.recv(65536)
        if not d:
            raise EOFError("closed in a body")
        buf += d
    return buf[:end + length], buf[end + length:]

out = sys.stdout.buffer
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    # A TCP close without close_notify raises SSLEOFError (not a quiet b"").
    with ctx.wrap_socket(s, server_hostname=sni, suppress_ragged_eofs=False) as t:
        sys.stderr.write("version=%s alpn=%s\n" % (t.version(), t.selected_alpn_protocol()))
        if mode.startswith("pipe"):
            t.sendall(b"".join(p for _, p in reqs))
        buf = bytearray()  # appends in amortised O(1): an 8 MiB body stays fast
        for head, payload in reqs:
            if mode.startswith("seq"):
                t.sendall(payload)
            resp, buf = read_one(t, buf, head)
            out.write(resp)
        if mode.endswith("close"):
            try:
                while True:
                    d = t.recv(65536)
                    if not d:
                        break
                    buf += d
                sys.stderr.write("clean-eof\n")
            except ssl.SSLEOFError:
                sys.stderr.write("ragged-eof\n")
        out.write(buf)
        out.flush()
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`PY_SESSION`] did: the parsed responses, anything after them, its stderr.
struct Session {
    responses: Vec<Response>,
    rest: Vec<u8>,
    stderr: String,
    ok: bool,
}

impl Session {
    /// The server closed the connection (after the responses), with or without
    /// close_notify.
    fn closed(&self) -> bool {
        self.clean_close() || self.stderr.contains("ragged-eof")
    }

    /// The server sent close_notify before its TCP close.
    fn clean_close(&self) -> bool {
        self.stderr.contains("clean-eof")
    }
}

/// Statuses, heads and body sizes, not the bodies (failure messages stay readable).
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Session ok={} rest={} bytes", self.ok, self.rest.len())?;
        for (i, r) in self.responses.iter().enumerate() {
            writeln!(
                f,
                "  [{i}] {} {:?} body {} bytes",
                r.status,
                r.headers,
                r.body.len()
            )?;
        }
        write!(f, "  stderr: {}", self.stderr)
    }
}

/// Builds the `G:`/`H:` argument for a request: `head` lines without the final CRLF CRLF.
fn req(head: &str) -> (bool, Vec<u8>) {
    (
        head.starts_with("HEAD "),
        format!("{head}\r\n\r\n").into_bytes(),
    )
}

fn session_cmd(t: &Tls, sni: &str, mode: &str, reqs: &[(bool, Vec<u8>)]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(PY_SESSION)
        .arg(t.tls_port.to_string())
        .arg(&t.ca)
        .arg(sni)
        .arg(mode);
    for (head, bytes) in reqs {
        cmd.arg(format!("{}:{}", if *head { 'H' } else { 'G' }, hex(bytes)));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a child with a deadline (killed and failed past it); its stdout and stderr.
fn finish(mut child: Child, limit: Duration) -> (bool, Vec<u8>, String) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.success(),
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

fn parse_session(ok: bool, out: Vec<u8>, stderr: String, reqs: &[(bool, Vec<u8>)]) -> Session {
    let mut responses = Vec::new();
    let mut rest: &[u8] = &out;
    for (head, _) in reqs {
        let Some(r) = Response::parse_with(rest, *head) else {
            break;
        };
        rest = &rest[rest.len() - r.rest.len()..];
        responses.push(Response {
            rest: Vec::new(),
            ..r
        });
    }
    Session {
        responses,
        rest: rest.to_vec(),
        stderr,
        ok,
    }
}

/// Runs [`PY_SESSION`] with SNI `localhost` to the end (30 s at most).
fn session(t: &Tls, mode: &str, reqs: &[(bool, Vec<u8>)]) -> Session {
    session_sni(t, "localhost", mode, reqs)
}

fn session_sni(t: &Tls, sni: &str, mode: &str, reqs: &[(bool, Vec<u8>)]) -> Session {
    let child = session_cmd(t, sni, mode, reqs).spawn().expect("python3");
    let (ok, out, err) = finish(child, Duration::from_secs(30));
    parse_session(ok, out, err, reqs)
}

/// One request over its own TLS connection; the response (fails the test if none).
fn tls_get(t: &Tls, head: &str) -> Response {
    let reqs = [req(head)];
    let s = session(t, "seq", &reqs);
    assert!(s.ok && s.responses.len() == 1, "{head:?}: {s:?}");
    s.responses.into_iter().next().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------
// a. proxy routes over TLS
// ---------------------------------------------------------------------------------------

/// An upstream on 127.0.0.1 that answers every request with its own head as the body (and
/// the length of the request body it read), keeping connections alive. A thread per
/// connection, each bounded by a 30 s read timeout; stops accepting when dropped.
struct Echo {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (Arc::clone(&heads), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let h = Arc::clone(&h);
                std::thread::spawn(move || Echo::serve(conn, &h));
            }
        });
        Echo { port, heads, stop }
    }

    fn serve(mut c: TcpStream, heads: &Mutex<Vec<String>>) {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + length {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body_sha = sha256_hex(&buf[end..end + length]);
            buf.drain(..end + length);
            heads.lock().unwrap().push(head.clone());
            let body = format!("{head}body-bytes: {length}\nbody-sha256: {body_sha}\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: echo\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if c.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The values of header `name` in an echoed request head (the upstream's view).
fn echoed(body: &str, name: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

#[test]
fn proxy_routes_over_tls_forward_https_and_get_hsts_plain_ones_neither() {
    let echo = Echo::start();
    let dead = free_port();
    let t = start(
        "tlsm-proxy",
        "hsts = \"max-age=600\"",
        &format!(
            "[[proxy]]\nmatch = \"/api\"\nupstream = \"127.0.0.1:{}\"\n\n\
             [[proxy]]\nmatch = \"/dead\"\nupstream = \"127.0.0.1:{dead}\"\n\n\
             [[site]]\nhosts = [\"b.test\"]\nroot = \"root\"\n\
             tls = {{ cert = \"b.pem\", key = \"b.key\" }}\n\
             https_redirect = true\nhsts = \"max-age=1200\"\n\
             [[site.proxy]]\nmatch = \"/api\"\nupstream = \"127.0.0.1:{}\"\n",
            echo.port, echo.port
        ),
    );

    // Over TLS, on one connection: two proxied GETs (the second may reuse the pooled
    // upstream connection), a POST with a body, a static file, and srvd's own 502. The
    // client's X-Forwarded-Proto is not trusted (127.0.0.1 is not in trusted_proxies).
    let upload = noise(50_000, 7); // hex in one argv string: under 128 KiB
    let mut post = format!(
        "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        upload.len()
    )
    .into_bytes();
    post.extend_from_slice(&upload);
    let reqs = vec![
        req("GET /api/one?x=1 HTTP/1.1\r\nHost: localhost"),
        req("GET /api/two HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http"),
        (false, post),
        req("GET / HTTP/1.1\r\nHost: localhost"),
        req("GET /dead/x HTTP/1.1\r\nHost: localhost\r\nConnection: close"),
    ];
    let got = session(&t, "seq-close", &reqs);
    assert!(got.ok, "{got:?}");
    assert_eq!(got.responses.len(), 5, "{got:?}");
    for (i, r) in got.responses[..3].iter().enumerate() {
        let body = r.body_str();
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.header("x-upstream"), Some("echo"), "{r:?}");
        assert_eq!(
            echoed(&body, "x-forwarded-proto"),
            ["https"],
            "request {i}: the upstream saw\n{body}"
        );
        assert_eq!(echoed(&body, "x-forwarded-host"), ["localhost"], "{body}");
        assert_eq!(echoed(&body, "x-forwarded-for"), ["127.0.0.1"], "{body}");
        assert!(!echoed(&body, "via").is_empty(), "{body}");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=600"),
            "a proxied response over TLS carries the site's hsts: {r:?}"
        );
    }
    let post_body = got.responses[2].body_str();
    assert!(
        post_body.contains(&format!("body-bytes: {}\n", upload.len()))
            && post_body.contains(&format!("body-sha256: {}\n", sha256_hex(&upload))),
        "the POST body reached the upstream intact over TLS:\n{post_body}"
    );
    let stat = &got.responses[3];
    assert_eq!(stat.body_str(), "hello\n");
    assert_eq!(
        stat.header("strict-transport-security"),
        Some("max-age=600")
    );
    let bad = &got.responses[4];
    assert_eq!(bad.status, 502, "{bad:?}");
    assert_eq!(
        bad.header("strict-transport-security"),
        Some("max-age=600"),
        "srvd's own 502 over TLS carries hsts: {bad:?}"
    );
    assert!(
        got.clean_close(),
        "the proxied 502's Connection: close ends with close_notify: {got:?}"
    );

    // Plain: http, no HSTS, on a proxied answer, a spoofed proto, and the 502.
    let r =
        t.s.request("GET /api/plain HTTP/1.1\r\nHost: localhost\r\nConnection: close");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        echoed(&r.body_str(), "x-forwarded-proto"),
        ["http"],
        "{r:?}"
    );
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    let r = t.s.request(
        "GET /api/spoof HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nConnection: close",
    );
    assert_eq!(
        echoed(&r.body_str(), "x-forwarded-proto"),
        ["http"],
        "an untrusted client's X-Forwarded-Proto is replaced: {r:?}"
    );
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    let r =
        t.s.request("GET /dead/x HTTP/1.1\r\nHost: localhost\r\nConnection: close");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");

    // A site with https_redirect: on the plain listener even its proxy route is a 308 (the
    // upstream never sees it); over TLS it is proxied with its own hsts.
    let r =
        t.s.request("GET /api/b?q=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://b.test:{}/api/b?q=1", t.tls_port).as_str()),
        "{r:?}"
    );
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    let b = session_sni(
        &t,
        "b.test",
        "seq",
        &[req(
            "GET /api/b?q=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close",
        )],
    );
    assert!(b.ok && b.responses.len() == 1, "{b:?}");
    let r = &b.responses[0];
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.body_str();
    assert!(body.starts_with("GET /api/b?q=1 HTTP/1.1\r\n"), "{body}");
    assert_eq!(echoed(&body, "x-forwarded-proto"), ["https"], "{body}");
    assert_eq!(echoed(&body, "x-forwarded-host"), ["b.test"], "{body}");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=1200"));

    // The upstream saw six requests: 3 + 1 over TLS, 2 plain (not the redirected one).
    let heads = echo.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 6, "{heads:?}");
}

// ---------------------------------------------------------------------------------------
// b. the handshake cap
// ---------------------------------------------------------------------------------------

/// The kernel's accept queue of the listening socket on `port` (/proc/net/tcp).
fn accept_queue(port: u16) -> Option<u64> {
    tcp_table(false)
        .into_iter()
        .find(|r| r.port == port && r.state == *b"0A")
        .map(|r| r.rx_queue)
}

/// A ClientHello for `localhost` made by OpenSSL (Python's `ssl` over memory BIOs), to
/// send on raw sockets that then never finish the handshake.
fn client_hello() -> Vec<u8> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import ssl, sys\n\
             i, o = ssl.MemoryBIO(), ssl.MemoryBIO()\n\
             t = ssl.create_default_context().wrap_bio(i, o, server_hostname='localhost')\n\
             try:\n    t.do_handshake()\nexcept ssl.SSLWantReadError:\n    pass\n\
             sys.stdout.buffer.write(o.read())\n",
        )
        .output()
        .expect("python3");
    assert!(
        out.status.success() && out.stdout.first() == Some(&0x16),
        "{out:?}"
    );
    out.stdout
}

/// The handshake cap: `STALLED` connections to the TLS port each send `first(i)` and then
/// nothing. One worker takes `CAP` of them and leaves the rest in the kernel's queue; a real
/// TLS client queued behind them is served once the stalled ones are cut at the header
/// timeout (2 s); the plain listener answers at once meanwhile; and every stalled
/// connection ends with EOF, never a reset.
/// Returns how many stalled connections got the server's handshake flight before the EOF.
fn handshake_cap(name: &str, first: impl Fn(usize) -> Vec<u8>) -> usize {
    const STALLED: usize = 300;
    const CAP: usize = 256; // MAX_HANDSHAKES in src/worker/mod.rs
    let t = start(name, "header_timeout = \"2s\"", "");
    let worker = t.worker();
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut c = TcpStream::connect(("127.0.0.1", t.tls_port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let bytes = first(i);
            if !bytes.is_empty() {
                c.write_all(&bytes).unwrap();
            }
            c
        })
        .collect();
    // The worker took CAP of them and left the rest in the kernel's queue.
    // (Polled until it settles: the worker may still be accepting when the last connect
    // returns. Without the cap the queue would drain to 0, and this would time out.)
    let poll_end = Instant::now() + DEADLINE;
    let queued = loop {
        let q = accept_queue(t.tls_port);
        if q == Some((STALLED - CAP) as u64) {
            break q.unwrap();
        }
        assert!(
            Instant::now() < poll_end,
            "the accept queue holds {q:?}, not {} (one worker holds {CAP} handshakes)",
            STALLED - CAP
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let held_at = started.elapsed();
    // A real client queues behind them...
    let reqs = [req(
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close",
    )];
    let client_started = Instant::now();
    let client = session_cmd(&t, "localhost", "seq-close", &reqs)
        .spawn()
        .expect("python3");
    // ...while the plain listener answers at once.
    let plain_started = Instant::now();
    let r = t.s.get("/");
    let plain_took = plain_started.elapsed();
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        plain_took < Duration::from_secs(1),
        "the plain listener took {plain_took:?} while the TLS cap held"
    );
    let (ok, out, err) = finish(client, Duration::from_secs(20));
    let client_took = client_started.elapsed();
    let got = parse_session(ok, out, err, &reqs);
    assert!(
        got.ok && got.responses.len() == 1 && got.responses[0].body_str() == "hello\n",
        "the real TLS client failed after {client_took:?}: {got:?}"
    );
    assert!(
        client_took < Duration::from_secs(10),
        "{client_took:?} (python's own timeout is 10 s)"
    );

    // Every stalled connection ends with a clean close: EOF, never a reset.
    let end = started + Duration::from_secs(20);
    let (mut eof, mut reset, mut answered, mut other) = (0, 0, 0, Vec::new());
    for (i, c) in stalled.iter_mut().enumerate() {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        c.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        let mut extra = 0;
        loop {
            match c.read(&mut buf) {
                Ok(0) => {
                    eof += 1;
                    answered += usize::from(extra > 0);
                    break;
                }
                Ok(n) if extra < 1 << 20 => extra += n,
                Ok(_) => {
                    other.push(format!("{i}: endless data"));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    reset += 1;
                    break;
                }
                Err(e) => {
                    other.push(format!("{i}: {e} after {:?}", started.elapsed()));
                    break;
                }
            }
        }
    }
    let all_closed = started.elapsed();
    eprintln!(
        "cap held at {held_at:?} with {queued} queued; plain answered in {plain_took:?}; \
         TLS client served after {client_took:?}; {eof} EOF ({answered} after the server's \
         flight), {reset} reset by {all_closed:?}"
    );
    assert_eq!(reset, 0, "stalled handshakes were reset: {other:?}");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(eof, STALLED);
    // Below the cap again, and the same worker serves TLS.
    assert_eq!(
        tls_get(&t, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close").status,
        200
    );
    assert_eq!(t.worker(), worker, "the worker was not replaced");
    assert_eq!(accept_queue(t.tls_port), Some(0));
    answered
}

#[test]
fn three_hundred_silent_connections_neither_lock_out_a_real_tls_client_nor_get_reset() {
    assert_eq!(handshake_cap("tlsm-cap", |_| Vec::new()), 0);
}

#[test]
fn three_hundred_handshakes_stalled_at_each_step_neither_lock_out_a_client_nor_get_reset() {
    // A third send nothing, a third the first bytes of a record header, a third a whole
    // ClientHello (the server's flight then waits unread on the client side).
    let hello = client_hello();
    let answered = handshake_cap("tlsm-cap-mixed", |i| match i % 3 {
        0 => Vec::new(),
        1 => hello[..6].to_vec(),
        _ => hello.clone(),
    });
    assert_eq!(
        answered, 100,
        "every whole ClientHello got the server's flight"
    );
}

// ---------------------------------------------------------------------------------------
// c. keep-alive, HEAD, 304 and Range over TLS
// ---------------------------------------------------------------------------------------

#[test]
fn one_tls_connection_carries_get_head_304_range_and_404_sequential_and_pipelined() {
    let t = start("tlsm-keepalive", "hsts = \"max-age=60\"", "");
    let file: Vec<u8> = noise(3000, 3)
        .into_iter()
        .map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789"[b as usize % 36])
        .collect();
    t.s.file("f.txt", &file);
    let first = tls_get(
        &t,
        "GET /f.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close",
    );
    assert_eq!(first.body, file);
    let etag = first.header("etag").expect("an ETag").to_owned();

    let reqs = vec![
        req("GET /f.txt HTTP/1.1\r\nHost: localhost"),
        req("HEAD /f.txt HTTP/1.1\r\nHost: localhost"),
        req(&format!(
            "GET /f.txt HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {etag}"
        )),
        req("GET /f.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=100-199"),
        req("GET /f.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=-10"),
        req("GET /missing HTTP/1.1\r\nHost: localhost"),
        req("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close"),
    ];
    for mode in ["seq-close", "pipe-close"] {
        let got = session(&t, mode, &reqs);
        assert!(got.ok, "{mode}: {got:?}");
        assert!(got.stderr.contains("alpn=http/1.1"), "{got:?}");
        // close_notify itself: see `every_tls_close_sends_close_notify`.
        assert!(
            got.closed(),
            "{mode}: closed after Connection: close: {got:?}"
        );
        assert!(
            got.rest.is_empty(),
            "{mode}: bytes after the last response: {got:?}"
        );
        let r = &got.responses;
        assert_eq!(r.len(), 7, "{mode}: {got:?}");
        let len = file.len().to_string();

        assert_eq!((r[0].status, &r[0].body), (200, &file), "{mode}");
        assert_eq!(r[0].header("etag"), Some(etag.as_str()));

        assert_eq!(r[1].status, 200, "{mode}: HEAD {:?}", r[1]);
        assert!(r[1].body.is_empty());
        assert_eq!(
            r[1].header("content-length"),
            Some(len.as_str()),
            "{:?}",
            r[1]
        );
        assert_eq!(r[1].header("etag"), Some(etag.as_str()));

        assert_eq!(r[2].status, 304, "{mode}: {:?}", r[2]);
        assert!(r[2].body.is_empty());
        assert_eq!(r[2].header("etag"), Some(etag.as_str()));

        assert_eq!(r[3].status, 206, "{mode}: {:?}", r[3]);
        assert_eq!(r[3].body, &file[100..200]);
        assert_eq!(
            r[3].header("content-range"),
            Some(format!("bytes 100-199/{len}").as_str())
        );
        assert_eq!(r[4].status, 206, "{mode}: {:?}", r[4]);
        assert_eq!(r[4].body, &file[file.len() - 10..]);

        assert_eq!(r[5].status, 404, "{mode}: {:?}", r[5]);
        assert_eq!(r[6].body_str(), "hello\n", "{mode}: {:?}", r[6]);
        for (i, resp) in r.iter().enumerate() {
            assert_eq!(
                resp.header("strict-transport-security"),
                Some("max-age=60"),
                "{mode}: response {i}: {resp:?}"
            );
        }
    }

    // curl with two URLs: one connection (num_connects 1, then 0), both answered.
    let url = format!("https://localhost:{}", t.tls_port);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&t.ca)
        .args(["-o", "/dev/null", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{num_connects} %{size_download}\n"])
        .arg(format!("{url}/f.txt"))
        .arg(format!("{url}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        format!("200 1 {}\n200 0 6\n", file.len()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The parts of a multipart/byteranges body: (first, last, bytes) per part.
fn byteranges(r: &Response) -> Vec<(usize, usize, Vec<u8>)> {
    let ct = r.header("content-type").expect("a Content-Type");
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap_or_else(|| panic!("no boundary: {ct}"));
    let delim = format!("\r\n--{boundary}");
    // Prefixing CRLF lets the first delimiter match like the others.
    let mut body = b"\r\n".to_vec();
    body.extend_from_slice(&r.body);
    let mut parts = Vec::new();
    let mut at = 0;
    let find = |from: usize, what: &[u8]| {
        body[from..]
            .windows(what.len())
            .position(|w| w == what)
            .map(|p| p + from)
    };
    while let Some(start) = find(at, delim.as_bytes()) {
        let after = start + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(after, b"\r\n\r\n").expect("a part head") + 4;
        let head = String::from_utf8_lossy(&body[after..head_end]).into_owned();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: bytes "))
            .unwrap_or_else(|| panic!("no Content-Range in {head:?}"));
        let (span, _) = range.split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.trim().parse().unwrap());
        parts.push((a, b, body[head_end..head_end + (b - a + 1)].to_vec()));
        at = head_end + (b - a + 1);
    }
    parts
}

#[test]
fn pipelined_large_bodies_unaligned_ranges_and_multipart_ranges_arrive_intact_over_tls() {
    let t = start("tlsm-ranges", "", "");
    // 300 000 bytes: several 64 KiB read-and-encrypt slices, and a tail that is not one.
    let big = noise(300_000, 9);
    t.s.file("big.bin", &big);
    let reqs = vec![
        req("GET /big.bin HTTP/1.1\r\nHost: localhost"),
        req("GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=70000-269999"),
        req("GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9,65530-65545,299990-"),
        req("HEAD /big.bin HTTP/1.1\r\nHost: localhost"),
        req("GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=299999-"),
        req("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close"),
    ];
    for mode in ["pipe-close", "seq-close"] {
        let got = session(&t, mode, &reqs);
        assert!(got.ok, "{mode}: {got:?}");
        assert!(got.closed(), "{mode}: {got:?}");
        let r = &got.responses;
        assert_eq!(r.len(), 6, "{mode}: {}", got.stderr);
        assert_eq!(r[0].status, 200);
        assert!(r[0].body == big, "{mode}: the whole file");
        assert_eq!(r[1].status, 206);
        assert_eq!(
            r[1].header("content-range"),
            Some("bytes 70000-269999/300000")
        );
        assert!(
            r[1].body == big[70_000..270_000],
            "{mode}: the unaligned range"
        );
        assert_eq!(r[2].status, 206, "{mode}: {:?}", r[2].headers);
        let parts = byteranges(&r[2]);
        assert_eq!(
            parts.iter().map(|(a, b, _)| (*a, *b)).collect::<Vec<_>>(),
            [(0, 9), (65_530, 65_545), (299_990, 299_999)],
            "{mode}"
        );
        for (a, b, bytes) in &parts {
            assert!(bytes[..] == big[*a..=*b], "{mode}: part {a}-{b}");
        }
        assert_eq!(r[3].status, 200);
        assert!(r[3].body.is_empty());
        assert_eq!(r[3].header("content-length"), Some("300000"));
        assert_eq!((r[4].status, &r[4].body[..]), (206, &big[299_999..]));
        assert_eq!(r[5].body_str(), "hello\n");
        assert!(got.rest.is_empty(), "{mode}");
    }
}

// ---------------------------------------------------------------------------------------
// close_notify: how srvd ends a TLS connection
// ---------------------------------------------------------------------------------------

#[test]
fn a_malformed_request_over_tls_gets_its_400_then_close_notify() {
    let t = start("tlsm-notify-400", "", "");
    let got = session(
        &t,
        "seq-close",
        &[req("GET / HTTP/1.1\r\nHost: a b\r\nConnection: close")],
    );
    assert!(got.ok, "{got:?}");
    assert_eq!(got.responses[0].status, 400, "{got:?}");
    assert!(got.clean_close(), "{got:?}");
}

/// RFC 8446 §6.1: "Each party MUST send a close_notify alert before closing its write side
/// of the connection, unless it has already sent some error alert." Each case here is one
/// way srvd ends a connection (lingering, or closing the socket directly after a response,
/// at a timeout or in a drain); the test lists how each one ended and fails if any was a
/// bare TCP close. (It failed for the direct closes until `Client::goodbye`.)
#[test]
fn every_tls_close_sends_close_notify() {
    let t = start(
        "tlsm-notify",
        "keepalive_timeout = \"1s\"\nheader_timeout = \"1s\"",
        "",
    );
    let mut results: Vec<(&str, Session)> = Vec::new();
    let cases: Vec<(&str, (bool, Vec<u8>))> = vec![
        (
            "200 with Connection: close",
            req("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close"),
        ),
        (
            "404 with Connection: close",
            req("GET /missing HTTP/1.1\r\nHost: localhost\r\nConnection: close"),
        ),
        ("HTTP/1.0 request", req("GET / HTTP/1.0\r\nHost: localhost")),
        (
            "idle keep-alive at keepalive_timeout",
            req("GET / HTTP/1.1\r\nHost: localhost"),
        ),
        (
            "408 at header_timeout",
            (false, b"GET / HTTP/1.1\r\nHost: loc".to_vec()),
        ),
    ];
    for (name, request) in cases {
        results.push((name, session(&t, "seq-close", &[request])));
    }
    // A graceful stop closes an idle keep-alive connection (after its short grace).
    let reqs = [req("GET /?drain HTTP/1.1\r\nHost: localhost")];
    let child = session_cmd(&t, "localhost", "seq-close", &reqs)
        .spawn()
        .expect("python3");
    wait_for("the request before the stop in the access log", || {
        t.s.access_log().contains("GET /?drain ").then_some(())
    });
    t.s.signal(nix::sys::signal::Signal::SIGTERM);
    let (ok, out, err) = finish(child, Duration::from_secs(20));
    results.push((
        "idle keep-alive at a graceful stop",
        parse_session(ok, out, err, &reqs),
    ));

    let table: Vec<String> = results
        .iter()
        .map(|(name, got)| {
            let how = if got.clean_close() {
                "close_notify"
            } else if got.closed() {
                "NO close_notify (bare FIN)"
            } else {
                "not closed?"
            };
            let status = got.responses.first().map_or(0, |r| r.status);
            format!("{name:40} {status} {how}")
        })
        .collect();
    eprintln!("{}", table.join("\n"));
    for (name, got) in &results {
        assert!(got.ok && got.closed(), "{name}: {got:?}");
    }
    assert!(
        results.iter().all(|(_, got)| got.clean_close()),
        "TLS connections closed without close_notify:\n{}",
        table.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// d. compression over TLS
// ---------------------------------------------------------------------------------------

fn python_gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg("import gzip, sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let (ok, out, err) = finish(child, Duration::from_secs(20));
    writer.join().unwrap();
    assert!(ok, "python gzip failed: {err}");
    out
}

#[test]
fn compressible_files_go_gzip_and_br_over_tls_once_encoded() {
    let t = start("tlsm-gzip", "", "");
    // 50 KB of text: words from a small vocabulary, so it compresses well.
    let words = [
        "alpha ", "bravo ", "charlie ", "delta ", "echo\n", "foxtrot ",
    ];
    let text: Vec<u8> = noise(12_000, 11)
        .into_iter()
        .flat_map(|b| words[b as usize % words.len()].bytes())
        .take(50_000)
        .collect();
    t.s.file("words.txt", &text);

    for coding in ["gzip", "br"] {
        let head = format!(
            "GET /words.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: {coding}\r\nConnection: close"
        );
        // The first request of the file may go as it is while the worker encodes it.
        let mut identity = 0;
        let r = wait_for(&format!("the {coding} variant over TLS"), || {
            let r = tls_get(&t, &head);
            assert_eq!(r.status, 200, "{r:?}");
            assert!(
                r.header("vary")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
                "{r:?}"
            );
            match r.header("content-encoding") {
                Some(c) => {
                    assert_eq!(c, coding);
                    Some(r)
                }
                None => {
                    assert_eq!(r.body, text, "an identity answer is the file");
                    identity += 1;
                    None
                }
            }
        });
        assert!(
            r.body.len() < text.len() / 3,
            "{coding}: {} bytes for {}",
            r.body.len(),
            text.len()
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let decoded = if coding == "gzip" {
            python_gunzip(&r.body)
        } else {
            let mut out = Vec::new();
            brotli::Decompressor::new(&r.body[..], 4096)
                .read_to_end(&mut out)
                .expect("brotli decodes");
            out
        };
        assert!(decoded == text, "{coding}: the variant decodes to the file");
        eprintln!(
            "{coding}: {} -> {} bytes after {identity} identity answer(s)",
            text.len(),
            r.body.len()
        );

        // A range of the kept variant over TLS: those bytes of the encoded body.
        let range = tls_get(
            &t,
            &format!(
                "GET /words.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: {coding}\r\n\
                 Range: bytes=10-109\r\nConnection: close"
            ),
        );
        assert_eq!(range.status, 206, "{range:?}");
        assert_eq!(range.header("content-encoding"), Some(coding));
        assert_eq!(range.body, &r.body[10..110]);
    }
}

// ---------------------------------------------------------------------------------------
// e. a client that drops a large TLS download
// ---------------------------------------------------------------------------------------

/// Starts a download of `path` over TLS with keep-alive, reads about `after` bytes, then
/// leaves: `rst` (SO_LINGER 0: a reset), `close` (close(2) with unread data, no
/// close_notify) or `shutdown` (shutdown(RDWR) on the socket, then close). Prints what it
/// read.
const PY_ABORT: &str = r#"
import socket, ssl, struct, sys
port, ca, path, after, how = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
got = 0
while got < after:
    d = t.recv(65536)
    if not d:
        break
    got += len(d)
if how == "rst":
    t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
elif how == "shutdown":
    t.shutdown(socket.SHUT_RDWR)
t.close()
print(got)
"#;

#[test]
fn clients_that_drop_a_large_tls_download_leave_the_worker_healthy_and_no_fd_behind() {
    let t = start("tlsm-abort", "", "");
    let big = noise(8 << 20, 5);
    let want = sha256_hex(&big);
    t.s.file("big.bin", &big);
    let worker = t.worker();
    let sockets = |pid: i32| socket_inodes_of(pid).len();
    let sockets_idle = sockets(worker);

    // One whole download first: whatever the file cache keeps open is in the baseline.
    let whole = tls_get(
        &t,
        "GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close",
    );
    assert_eq!(sha256_hex(&whole.body), want);
    wait_for("the first download's socket to close", || {
        (sockets(worker) == sockets_idle).then_some(())
    });
    let baseline = fds_of(worker);

    let ways = ["rst", "close", "shutdown", "rst", "close", "shutdown"];
    for (i, how) in ways.iter().enumerate() {
        let after = 64 * 1024 * (i + 1) * 2;
        let child = Command::new("python3")
            .arg("-c")
            .arg(PY_ABORT)
            .arg(t.tls_port.to_string())
            .arg(&t.ca)
            .arg("/big.bin")
            .arg(after.to_string())
            .arg(how)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let (ok, out, err) = finish(child, Duration::from_secs(20));
        let read: usize = String::from_utf8_lossy(&out).trim().parse().unwrap_or(0);
        assert!(ok, "{how}: {err}");
        assert!(
            read >= after && read < big.len(),
            "{how}: left after {read} bytes (wanted about {after})"
        );
    }
    // The worker notices each departure and gives back every descriptor.
    let settled = wait_for("the worker's fds to come back to the baseline", || {
        let now = fds_of(worker);
        (now.len() == baseline.len()).then_some(now)
    });
    assert_eq!(
        settled.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        baseline.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        "the same descriptors as before"
    );
    // Healthy: the same worker serves the whole file again, and a small one.
    let again = tls_get(
        &t,
        "GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close",
    );
    assert_eq!(sha256_hex(&again.body), want);
    assert_eq!(t.s.get("/").body_str(), "hello\n");
    assert_eq!(t.worker(), worker, "the worker was not replaced");
    assert!(alive(worker));
    wait_for("the last download's socket to close", || {
        (fds_of(worker).len() == baseline.len()).then_some(())
    });
}
