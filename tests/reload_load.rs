//! Zero-loss reload under load: 8 clients (half keep-alive, half one connection per
//! request) fetch `/index.html` and a 1 MiB file for ~3 s while the master is sent 10 HUPs
//! (each once the previous reload's new workers serve), and one 16 MiB download runs
//! across reloads. Nothing may be refused, reset, truncated or answered with non-200.
//!
//! A keep-alive client whose *reused idle* connection is closed by the server before any
//! response byte retries once on a new connection, as real clients do (RFC 9112 §9.3.1);
//! those retries are counted and printed, not counted as losses.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

const CLIENTS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);
const HUPS: u32 = 10;
/// Per-client cap on requests, so the test is bounded in count as well as time.
const MAX_REQUESTS: u64 = 200_000;

fn reloads(state: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(state).unwrap_or_default();
    let n = srvd::reload_cmd::reloads_done(state);
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("result="))
        .unwrap_or("")
        .to_owned();
    (n, result)
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    retries: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Stats {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 50 {
            f.push(what);
        }
    }
}

/// How one request on a connection went.
enum Outcome {
    /// A complete 200 with the expected body; `close` when the server said so.
    Ok { close: bool },
    /// The connection ended (EOF or reset) before any response byte.
    ClosedBeforeResponse(String),
    /// Anything else: a loss.
    Failed(String),
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Sends one GET and reads exactly one response, checking status and body.
fn exchange(s: &mut TcpStream, path: &str, keep_alive: bool, expect: &[u8]) -> Outcome {
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

fn client(
    id: usize,
    port: u16,
    keep_alive: bool,
    stop: &AtomicBool,
    stats: &Stats,
    small: &[u8],
    big: &[u8],
) {
    let mut conn: Option<TcpStream> = None;
    // Requests already answered on `conn`: a connection is "reused" when this is > 0.
    let mut used = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS {
        n += 1;
        let (path, expect) = if n % 4 == 0 {
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

#[test]
fn reloads_under_load_lose_nothing() {
    let s = Srvd::start("reload-load", "pid_file = \"srvd.pid\"");
    let state = s.dir.join("srvd.pid.reload");
    wait_for("reload state file", || state.exists().then_some(()));
    let small = b"hello\n".to_vec();
    let big = noise(1 << 20, 7);
    let huge = noise(16 << 20, 11);
    s.file("big.bin", &big);
    s.file("huge.bin", &huge);
    let port = s.port;

    let stop = AtomicBool::new(false);
    let stats = Stats::default();
    let (reload_times, huge_result) = std::thread::scope(|scope| {
        for id in 0..CLIENTS {
            let (stop, stats, small, big) = (&stop, &stats, &small, &big);
            scope.spawn(move || client(id, port, id % 2 == 0, stop, stats, small, big));
        }
        // The 16 MiB download, read slowly (at most 64 KiB per 5 ms) so that it spans several reloads.
        let huge_ref = &huge;
        let download = scope.spawn(move || -> Result<(), String> {
            let mut c = connect(port).map_err(|e| format!("connect: {e}"))?;
            c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut got = Vec::with_capacity(huge_ref.len() + 512);
            let mut chunk = vec![0u8; 65536];
            let end = Instant::now() + DEADLINE;
            loop {
                match c.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("{e} after {} bytes", got.len())),
                }
                if Instant::now() > end {
                    return Err("download took too long".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let r = Response::parse(&got).ok_or("no complete response")?;
            if r.status != 200 {
                return Err(format!("status {}", r.status));
            }
            if Sha256::digest(&r.body) != Sha256::digest(huge_ref) {
                return Err(format!("sha256 mismatch ({} bytes)", r.body.len()));
            }
            Ok(())
        });

        // 10 HUPs spread over RUN_FOR, each after the previous reload completed.
        let t0 = Instant::now();
        let mut times = Vec::new();
        for i in 0..HUPS {
            let slot = t0 + RUN_FOR * i / HUPS;
            if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait); // pacing, not waiting for a state change
            }
            let (before, _) = reloads(&state);
            let sent = Instant::now();
            s.signal(Signal::SIGHUP);
            let result = wait_for("a reload to finish", || {
                let (n, r) = reloads(&state);
                (n > before).then_some(r)
            });
            assert_eq!(result, "ok", "reload {i}: {}", s.error_log());
            times.push(sent.elapsed());
        }
        if let Some(rest) = (t0 + RUN_FOR).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
        stop.store(true, Ordering::Relaxed);
        (times, download.join().unwrap())
    });

    let failures = stats.failures.lock().unwrap();
    eprintln!(
        "reload-load: {} ok responses, {} retries on reused idle connections, {} failures; \
         reload times {:?}",
        stats.ok.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        failures.len(),
        reload_times
    );
    assert!(
        failures.is_empty(),
        "lost responses:\n{}",
        failures.join("\n")
    );
    assert_eq!(huge_result, Ok(()), "16 MiB download");
    assert!(
        stats.ok.load(Ordering::Relaxed) > 100,
        "the clients barely ran"
    );
    assert!(
        s.error_log().matches("reload done").count() == HUPS as usize,
        "{}",
        s.error_log()
    );
}
