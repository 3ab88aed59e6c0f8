//! A bounded HTTP load client for tests that change the server under load (reload,
//! upgrade): GETs over kept-alive or fresh connections, counting what is lost.
//!
//! A keep-alive client whose reused idle connection the server closed before any response
//! byte retries once on a new connection, as real clients do (RFC 9112 §9.3.1); that is
//! counted, not a loss. A refused connect, a reset or EOF mid-response, or a wrong status
//! or body is a loss.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Response;

#[derive(Default)]
pub struct Stats {
    pub ok: AtomicU64,
    /// Requests started, by every client (bounded by [`Bounds::total`]).
    pub issued: AtomicU64,
    pub retries: AtomicU64,
    pub failures: Mutex<Vec<String>>,
}

impl Stats {
    pub fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 50 {
            f.push(what);
        }
    }
}

/// When a client stops besides `stop`, and what it asks for.
#[derive(Clone, Copy)]
pub struct Bounds {
    /// Requests per client.
    pub per_client: u64,
    /// Requests by all clients together (`Stats::issued`).
    pub total: u64,
    pub time: Duration,
    /// Every `big_every`-th request is for `/big.bin`, the others for `/index.html`.
    pub big_every: u64,
}

/// How one request on a connection went.
pub enum Outcome {
    /// A complete 200 with the expected body; `close` when the server said so.
    Ok { close: bool },
    /// The connection ended (EOF or reset) before any response byte.
    ClosedBeforeResponse(String),
    /// Anything else: a loss.
    Failed(String),
}

pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Sends one GET and reads exactly one response, checking status and body.
pub fn exchange(s: &mut TcpStream, path: &str, keep_alive: bool, expect: &[u8]) -> Outcome {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: {conn}\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        // A write into a connection the server already closed: nothing was answered.
        return Outcome::ClosedBeforeResponse(format!("write: {e}"));
    }
    let mut buf = Vec::with_capacity(expect.len() + 512);
    let mut chunk = vec![0u8; 65536];
    loop {
        if let Some(r) = Response::parse(&buf) {
            if r.status != 200 {
                return Outcome::Failed(format!("{path}: status {}", r.status));
            }
            if r.body != expect {
                return Outcome::Failed(format!("{path}: wrong body ({} bytes)", r.body.len()));
            }
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            return Outcome::Ok { close };
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Outcome::ClosedBeforeResponse("EOF".into()),
            Ok(0) => return Outcome::Failed(format!("{path}: truncated at {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Outcome::ClosedBeforeResponse(format!("read: {e}")),
            Err(e) => return Outcome::Failed(format!("{path}: {e} after {} bytes", buf.len())),
        }
    }
}

/// GETs until `stop` or its bounds; `small` is `/index.html`, `big` is `/big.bin`.
#[allow(clippy::too_many_arguments)]
pub fn client(
    id: usize,
    port: u16,
    keep_alive: bool,
    stop: &AtomicBool,
    stats: &Stats,
    small: &[u8],
    big: &[u8],
    bounds: Bounds,
) {
    let t0 = Instant::now();
    let mut conn: Option<TcpStream> = None;
    // Requests already answered on `conn`: a connection is "reused" when this is > 0.
    let mut used = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed)
        && n < bounds.per_client
        && t0.elapsed() < bounds.time
        && stats.issued.fetch_add(1, Ordering::Relaxed) < bounds.total
    {
        n += 1;
        let (path, expect) = if n % bounds.big_every == 0 {
            ("/big.bin", big)
        } else {
            ("/index.html", small)
        };
        if conn.is_none() {
            match connect(port) {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    stats.fail(format!("client {id}: connect: {e}"));
                    continue;
                }
            }
            used = 0;
        }
        let s = conn.as_mut().expect("connected above");
        let mut outcome = exchange(s, path, keep_alive, expect);
        if let Outcome::ClosedBeforeResponse(why) = &outcome {
            if keep_alive && used > 0 {
                // The server closed an idle kept-alive connection as we reused it:
                // retry once on a fresh connection.
                stats.retries.fetch_add(1, Ordering::Relaxed);
                eprintln!("client {id}: retry after {why} on a reused connection");
                match connect(port) {
                    Ok(mut fresh) => {
                        outcome = exchange(&mut fresh, path, keep_alive, expect);
                        conn = Some(fresh);
                        used = 0;
                    }
                    Err(e) => outcome = Outcome::Failed(format!("reconnect: {e}")),
                }
            }
        }
        match outcome {
            Outcome::Ok { close } => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                used += 1;
                if close || !keep_alive {
                    conn = None;
                }
            }
            Outcome::ClosedBeforeResponse(why) => {
                stats.fail(format!(
                    "client {id}: {path}: closed before response: {why}"
                ));
                conn = None;
            }
            Outcome::Failed(why) => {
                stats.fail(format!("client {id}: {why}"));
                conn = None;
            }
        }
    }
}
