//! sd_notify: with `NOTIFY_SOCKET` set, the master tells systemd READY=1 (with STATUS=)
//! once every worker serves, RELOADING=1 + MONOTONIC_USEC= then READY=1 on HUP, and
//! STOPPING=1 on TERM (`Type=notify-reload` semantics, which `Type=notify` accepts too).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Receives datagrams until one contains `needle`; returns every message seen up to it.
fn until(sock: &UnixDatagram, needle: &str) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == needle);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    panic!("no {needle} within {DEADLINE:?}; got {seen:?}");
}

#[test]
fn notifies_ready_reloading_and_stopping() {
    let s = Srvd::prepare("sd-notify", "");
    let path = s.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut s = s.start_prepared_env(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);

    let msgs = until(&sock, "READY=1");
    let ready = msgs.last().unwrap();
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=")),
        "READY=1 without STATUS=: {ready:?}"
    );
    assert!(msgs.iter().all(|m| !m.contains("RELOADING=1")), "{msgs:?}");

    s.signal(Signal::SIGHUP);
    let msgs = until(&sock, "RELOADING=1");
    let reloading = msgs.last().unwrap();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC=")?.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {reloading:?}"));
    assert!(usec > 0);
    let msgs = until(&sock, "READY=1");
    let ready = msgs.last().unwrap();
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("ok")),
        "READY=1 after reload should report it in STATUS=: {ready:?}"
    );

    s.signal(Signal::SIGTERM);
    until(&sock, "STOPPING=1");
    assert_eq!(s.wait_exit(), Some(0));
}
