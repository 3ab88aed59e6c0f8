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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

const CLIENTS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);
const HUPS: u32 = 10;
/// Per-client cap on requests, so the test is bounded in count as well as time.
const BOUNDS: load::Bounds = load::Bounds {
    per_client: 200_000,
    total: u64::MAX,
    time: Duration::from_secs(60),
    big_every: 4,
};

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
    let stats = load::Stats::default();
    let (reload_times, huge_result) = std::thread::scope(|scope| {
        for id in 0..CLIENTS {
            let (stop, stats, small, big) = (&stop, &stats, &small, &big);
            scope.spawn(move || {
                load::client(id, port, id % 2 == 0, stop, stats, small, big, BOUNDS)
            });
        }
        // The 16 MiB download, read slowly (at most 64 KiB per 5 ms) so that it spans several reloads.
        let huge_ref = &huge;
        let download = scope.spawn(move || -> Result<(), String> {
            let mut c = load::connect(port).map_err(|e| format!("connect: {e}"))?;
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
