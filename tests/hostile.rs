//! Hostile clients, black box against the real binary: slow heads, idle connections,
//! clients that never read, connection floods, resets mid-transfer, slowloris.
//!
//! Timeouts are configured short ("500ms") so the tests run fast; every wait polls with
//! the harness deadline instead of sleeping for a fixed time, and lower bounds on elapsed
//! time are only checked where they prove *which* timeout fired.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads until the server closes (EOF or reset) or the harness deadline passes.
/// Returns the bytes and whether it closed.
fn read_until_close(c: &mut TcpStream) -> (Vec<u8>, bool) {
    let end = Instant::now() + DEADLINE;
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < end {
        match c.read(&mut buf) {
            Ok(0) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return (bytes, true),
        }
    }
    (bytes, false)
}

/// The only worker of a `workers = 1` server.
fn only_worker(s: &Srvd) -> i32 {
    let w = s.workers();
    assert_eq!(w.len(), 1, "expected one worker: {w:?}");
    w[0]
}

fn socket_fds(pid: i32) -> usize {
    fds_of(pid)
        .iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .count()
}

/// The worker's fd count once it has stopped changing (the harness's start-up probe
/// connection may still be closing): the same value for 10 samples in a row.
fn settled_fd_count(pid: i32) -> usize {
    let mut last = usize::MAX;
    let mut same = 0;
    wait_for("the worker's fd count to settle", || {
        let n = fds_of(pid).len();
        if n == last {
            same += 1;
        } else {
            same = 0;
            last = n;
        }
        (same >= 10).then_some(n)
    })
}

fn big_file(s: &Srvd, name: &str, len: u64) {
    let f = std::fs::File::create(s.root.join(name)).unwrap();
    f.set_len(len).unwrap(); // sparse: costs no disk
}

fn start_with_workers(name: &str, extra: &str, workers: usize) -> Srvd {
    Srvd::prepare_with_workers(name, extra, workers).start_prepared()
}

const BIG: u64 = 64 * 1024 * 1024;

#[test]
fn stalled_head_gets_408_then_eof() {
    let s = Srvd::start(
        "hostile-408",
        "header_timeout = \"500ms\"\nkeepalive_timeout = \"30s\"",
    );
    let mut c = s.connect();
    let t0 = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let (bytes, closed) = read_until_close(&mut c);
    assert!(closed, "stalled head still open after {:?}", t0.elapsed());
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "closed before header_timeout: {:?}",
        t0.elapsed()
    );
    let r = Response::parse(&bytes).expect("a 408 response");
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));

    // A connection that never sends a byte is closed as well, silently.
    let mut c = s.connect();
    let (bytes, closed) = read_until_close(&mut c);
    assert!(closed, "silent connection never closed");
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));

    // A head trickled in slowly but within the timeout overall is served.
    let mut c = s.connect();
    for piece in ["GET / HT", "TP/1.1\r\nHo", "st: a\r\n", "\r\n"] {
        c.write_all(piece.as_bytes()).unwrap();
        c.flush().unwrap();
    }
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
}

#[test]
fn second_head_stalled_after_keepalive_gets_408() {
    let s = Srvd::start(
        "hostile-408-ka",
        "header_timeout = \"500ms\"\nkeepalive_timeout = \"30s\"",
    );
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let (bytes, closed) = read_until_close(&mut c);
    assert!(closed);
    let r = Response::parse(&bytes).expect("a 408 for the stalled second head");
    assert_eq!(r.status, 408);
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let s = Srvd::start(
        "hostile-keepalive",
        "keepalive_timeout = \"500ms\"\nheader_timeout = \"30s\"",
    );
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    // Still usable right away.
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let t0 = Instant::now();
    let (bytes, closed) = read_until_close(&mut c);
    assert!(
        closed,
        "idle keep-alive connection kept past keepalive_timeout"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "closed early: {:?}",
        t0.elapsed()
    );
    assert!(
        bytes.is_empty(),
        "an idle close sends nothing: {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn client_that_never_reads_is_dropped_after_send_timeout() {
    let s = start_with_workers(
        "hostile-send-timeout",
        "send_timeout = \"500ms\"\n[log]\naccess = \"off\"",
        1,
    );
    big_file(&s, "big.bin", BIG);
    let worker = only_worker(&s);
    warm_file_cache(&s, "/big.bin");
    let base = settled_fd_count(worker);

    let mut stalled = s.connect();
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // The worker holds the connection (and the file) while it is blocked on us.
    wait_for("the stalled connection to be accepted", || {
        (fds_of(worker).len() > base).then_some(())
    });
    // Meanwhile the worker serves others.
    for _ in 0..3 {
        let r = s.get("/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    }
    // After send_timeout without progress it lets go: socket and file closed.
    wait_for("the stalled connection to be dropped", || {
        (fds_of(worker).len() == base).then_some(())
    });
    let (bytes, closed) = read_until_close(&mut stalled);
    assert!(closed);
    assert!(
        (bytes.len() as u64) < BIG,
        "the whole file was delivered: the server never blocked"
    );
    let r = Response::parse_with(&bytes, true).expect("a response head");
    assert_eq!(r.status, 200);
    assert_eq!(only_worker(&s), worker, "worker was replaced");
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn connection_limit_holds_and_recovers() {
    let s = start_with_workers(
        "hostile-maxconn",
        "max_connections = 5\nheader_timeout = \"30s\"\nkeepalive_timeout = \"30s\"",
        1,
    );
    let worker = only_worker(&s);
    let base_fds = settled_fd_count(worker);
    let base_sockets = socket_fds(worker);

    let idle: Vec<TcpStream> = (0..20).map(|_| s.connect()).collect();
    wait_for("5 connections to be accepted", || {
        (socket_fds(worker) >= base_sockets + 5).then_some(())
    });
    // The limit holds: sampled over a while, never more than 5 connections.
    for _ in 0..15 {
        let n = socket_fds(worker);
        assert!(
            n <= base_sockets + 5,
            "worker holds {} connections with max_connections = 5",
            n - base_sockets
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client queued behind the limit is served once the idle ones go away.
    let mut waiting = s.connect();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(idle);
    let (bytes, closed) = read_until_close(&mut waiting);
    assert!(closed, "queued client never answered");
    let r = Response::parse(&bytes).expect("a response for the queued client");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(only_worker(&s), worker, "worker was replaced");
    wait_for("the worker's fds to return to baseline", || {
        (fds_of(worker).len() == base_fds).then_some(())
    });
    assert!(!s.error_log().contains("panicked"), "{}", s.error_log());
}

#[test]
fn connection_limit_frees_slots_by_timeout() {
    // Idle connections that are never closed by the client still free their slots when
    // header_timeout expires, so queued clients are eventually served.
    let s = start_with_workers(
        "hostile-maxconn-timeout",
        "max_connections = 2\nheader_timeout = \"500ms\"",
        1,
    );
    let idle: Vec<TcpStream> = (0..4).map(|_| s.connect()).collect();
    let mut waiting = s.connect();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (bytes, closed) = read_until_close(&mut waiting);
    assert!(closed);
    assert_eq!(Response::parse(&bytes).expect("a response").status, 200);
    drop(idle);
}

#[test]
fn reset_mid_transfer_costs_nothing() {
    let s = start_with_workers("hostile-reset", "[log]\naccess = \"off\"", 1);
    big_file(&s, "big.bin", BIG);
    let worker = only_worker(&s);
    warm_file_cache(&s, "/big.bin");
    let base = settled_fd_count(worker);
    for _ in 0..10 {
        let mut c = s.connect();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        // Wait until the transfer is under way.
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        while got < 256 * 1024 {
            let n = c.read(&mut buf).expect("reading the body");
            assert!(n > 0, "closed early");
            got += n;
        }
        // SO_LINGER 0: close sends RST instead of FIN.
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
    }
    wait_for("the worker's fds to return to baseline", || {
        (fds_of(worker).len() == base).then_some(())
    });
    assert_eq!(only_worker(&s), worker, "worker was replaced");
    assert!(alive(worker));
    let r = s.get("/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
}

#[test]
fn slowloris_does_not_starve_normal_clients() {
    let s = start_with_workers(
        "hostile-slowloris",
        "header_timeout = \"5s\"\n[log]\naccess = \"off\"",
        1,
    );
    let worker = only_worker(&s);
    let head = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n";
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let c = s.connect();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut slow = slow;
            // One byte per connection every 100 ms, for about two seconds.
            for byte in head.iter().take(20) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for c in &mut slow {
                    let _ = c.write(std::slice::from_ref(byte));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            slow
        })
    };
    // Normal clients keep getting answers while the dribble goes on.
    let mut served = 0;
    while !dribbler.is_finished() && served < 50 {
        let t0 = Instant::now();
        let r = s.get("/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
        assert!(
            t0.elapsed() < DEADLINE,
            "normal request took {:?}",
            t0.elapsed()
        );
        served += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let slow = dribbler.join().unwrap();
    assert!(served > 0);
    // The slow clients are still connected (nobody crashed) and the worker is the same.
    assert_eq!(only_worker(&s), worker);
    assert!(
        socket_fds(worker) >= 100,
        "slow connections were dropped early"
    );
    drop(slow);
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn pipelined_flood_is_answered_in_order() {
    let s = Srvd::start("hostile-pipeline", "[log]\naccess = \"off\"");
    s.file("a.txt", "A");
    s.file("b.txt", "B");
    let mut req = Vec::new();
    for i in 0..500 {
        let p = if i % 2 == 0 { "/a.txt" } else { "/b.txt" };
        req.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut c = s.connect();
    let writer = {
        let mut w = c.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&req);
        })
    };
    let (bytes, closed) = read_until_close(&mut c);
    writer.join().unwrap();
    assert!(closed);
    let rs = Response::parse_all(&bytes);
    assert_eq!(rs.len(), 501);
    for (i, r) in rs.iter().take(500).enumerate() {
        let want: &[u8] = if i % 2 == 0 { b"A" } else { b"B" };
        assert_eq!((r.status, r.body.as_slice()), (200, want), "response {i}");
    }
    assert_eq!(rs[500].body, b"hello\n");
}

/// One HEAD of `path`: the worker's file cache now holds its descriptor, which is the
/// steady state a baseline fd count must include (a cached descriptor is not a leak).
fn warm_file_cache(s: &Srvd, path: &str) {
    let head = format!("HEAD {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let r = Response::parse_with(&s.raw(head.as_bytes()), true).expect("a response");
    assert_eq!(r.status, 200);
}

#[test]
fn running_out_of_descriptors_on_accept_is_logged_and_survived() {
    let s = start_with_workers("hostile-emfile", "[log]\naccess = \"off\"", 1);
    let worker = only_worker(&s);
    assert_eq!(s.get("/").status, 200);
    // Leave the worker room for only a few more descriptors, from outside (prlimit).
    let limit = settled_fd_count(worker) + 3;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={worker}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
    // More idle clients than descriptors: accept4 fails with EMFILE for some of them.
    let idle: Vec<TcpStream> = (0..10).map(|_| s.connect()).collect();
    wait_for("the EMFILE warning", || {
        s.error_log().contains("Too many open files").then_some(())
    });
    assert!(s.error_log().contains("pausing accepts"));
    // Survived: same worker, and once descriptors free up it serves again (the clients
    // left in the backlog are accepted after the pause).
    drop(idle);
    let r = s.get("/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    assert_eq!(only_worker(&s), worker);
}
