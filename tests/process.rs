//! Black-box process tests: one per row of the master's signal table and per reload step.
//!
//! Every wait is a poll with a deadline ([`wait_for`], 10 s) or an explicit, asserted
//! time bound; no test sleeps for a state change.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// A config with every harness key spelled out, so tests can change `root` and `port`.
fn config_text(port: u16, workers: usize, root: &str, extra: &str) -> String {
    format!(
        "port = {port}\nbind = \"127.0.0.1\"\nworkers = {workers}\nroot = \"{root}\"\n{extra}\n"
    )
}

fn write_config(s: &Srvd, port: u16, root: &str, extra: &str) {
    std::fs::write(
        &s.config_path,
        config_text(port, s.workers_expected, root, extra),
    )
    .unwrap();
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GET `path` on `port` with `Connection: close`; `None` when no response came.
fn get_on(port: u16, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect(addr(port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    Response::parse(&read_to_close(&mut s))
}

fn refuses(port: u16) -> bool {
    matches!(TcpStream::connect(addr(port)), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

/// Lines of the error log containing `needle`.
fn count_lines(s: &Srvd, needle: &str) -> usize {
    s.error_log().lines().filter(|l| l.contains(needle)).count()
}

use srvd::reload_cmd::reloads_done as reloads;

/// Sends HUP and waits for the master to publish the outcome; returns the `result=` line.
fn hup_and_wait(s: &Srvd, state: &Path) -> String {
    let before = reloads(state);
    s.signal(Signal::SIGHUP);
    wait_for("reload outcome", || {
        (reloads(state) > before).then(|| std::fs::read_to_string(state).unwrap())
    })
    .lines()
    .find_map(|l| l.strip_prefix("result=").map(str::to_owned))
    .unwrap_or_default()
}

/// A started server with `pid_file = "srvd.pid"`, and the path of its reload state file.
fn start_with_pid_file(name: &str, extra: &str) -> (Srvd, PathBuf) {
    let s = Srvd::start(name, &format!("pid_file = \"srvd.pid\"\n{extra}"));
    let state = s.dir.join("srvd.pid.reload");
    wait_for("reload state file", || state.exists().then_some(()));
    (s, state)
}

fn all_gone(pids: &[i32]) -> bool {
    pids.iter().all(|&p| !alive(p))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

// ---------------------------------------------------------------------------------------
// HUP: reload
// ---------------------------------------------------------------------------------------

#[test]
fn hup_with_new_root_serves_it_and_old_workers_leave() {
    let s = Srvd::start("hup-root", "");
    let old = s.workers();
    std::fs::create_dir_all(s.dir.join("root2")).unwrap();
    std::fs::write(s.dir.join("root2/index.html"), "second\n").unwrap();
    write_config(&s, s.port, "root2", "");
    s.signal(Signal::SIGHUP);
    wait_for("the new root to serve", || {
        (s.get("/").body == b"second\n").then_some(())
    });
    // Exited is not yet reaped: a zombie still shows among the master's children, so
    // wait for the final state rather than assert it at the first moment.
    wait_for("old workers to exit and be reaped", || {
        let now = s.workers();
        (all_gone(&old) && now.len() == 2 && now.iter().all(|p| !old.contains(p))).then_some(())
    });
}

/// HUP with a config that fails validation: the error is logged with file:line:col and
/// the very same workers keep serving.
fn rejected_reload_keeps_workers(name: &str, bad: &str, expect_loc: &str) {
    let (s, state) = start_with_pid_file(name, "");
    let old = s.workers();
    std::fs::write(&s.config_path, bad).unwrap();
    let result = hup_and_wait(&s, &state);
    assert!(result.starts_with("rejected"), "result={result}");
    let log = s.error_log();
    assert!(
        log.contains(&format!("srvd.toml:{expect_loc}")),
        "no srvd.toml:{expect_loc} in the error log:\n{log}"
    );
    assert_eq!(s.workers(), old, "the workers must not change");
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn hup_with_broken_toml_keeps_the_same_workers() {
    let bad = "port = 8080\nbind = \"127.0.0.1\nroot = \"root\"\n";
    rejected_reload_keeps_workers("hup-broken", bad, "2:");
}

#[test]
fn hup_with_invalid_value_keeps_the_same_workers() {
    let bad = "port = 0\nbind = \"127.0.0.1\"\nroot = \"root\"\n";
    rejected_reload_keeps_workers("hup-port0", bad, "1:8");
}

#[test]
fn hup_with_new_port_moves_the_listener() {
    let s = Srvd::start("hup-port", "");
    let old = s.workers();
    let new_port = free_port();
    write_config(&s, new_port, "root", "");
    s.signal(Signal::SIGHUP);
    wait_for("the new port to serve", || {
        get_on(new_port, "/")
            .filter(|r| r.status == 200)
            .map(|_| ())
    });
    wait_for("old workers to exit", || all_gone(&old).then_some(()));
    wait_for("the old port to refuse", || refuses(s.port).then_some(()));
}

#[test]
fn hup_with_taken_port_is_rejected_and_old_port_serves() {
    let (s, state) = start_with_pid_file("hup-taken", "");
    let old = s.workers();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    write_config(&s, taken_port, "root", "pid_file = \"srvd.pid\"");
    let result = hup_and_wait(&s, &state);
    assert!(
        result.contains("cannot listen"),
        "result={result}\n{}",
        s.error_log()
    );
    assert_eq!(s.workers(), old);
    assert_eq!(s.get("/").status, 200);
    drop(taken);
}

#[test]
fn reload_command_reports_success_and_rejection() {
    let (s, _state) = start_with_pid_file("reload-cmd", "");
    let run = || {
        Command::new(bin())
            .arg("reload")
            .arg("--config")
            .arg(&s.config_path)
            .output()
            .unwrap()
    };
    let old = s.workers();
    let ok = run();
    assert!(
        ok.status.success(),
        "stdout={} stderr={}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // Exit 0 means the new generation serves: the old one is already retiring.
    wait_for("old workers to exit", || all_gone(&old).then_some(()));
    assert_eq!(s.get("/").status, 200);

    // Rejected by the command's own validation: file:line:col in the reason.
    let good = std::fs::read_to_string(&s.config_path).unwrap();
    std::fs::write(&s.config_path, good.replace("workers = 2", "workers = 0")).unwrap();
    let bad = run();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("srvd.toml:3:"), "stderr={err}");

    // Valid file, rejected by the master (port taken): the master's reason is relayed.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    std::fs::write(
        &s.config_path,
        good.replace(
            &format!("port = {}", s.port),
            &format!("port = {taken_port}"),
        ),
    )
    .unwrap();
    let bad = run();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("cannot listen"), "stderr={err}");
    assert_eq!(s.get("/").status, 200);
}

// ---------------------------------------------------------------------------------------
// TTIN / TTOU
// ---------------------------------------------------------------------------------------

#[test]
fn ttin_adds_and_ttou_removes_a_worker_never_below_one() {
    let s = Srvd::start("ttin", "");
    s.signal(Signal::SIGTTIN);
    wait_for("3 workers", || (s.workers().len() == 3).then_some(()));
    s.signal(Signal::SIGTTOU);
    wait_for("2 workers", || (s.workers().len() == 2).then_some(()));
    s.signal(Signal::SIGTTOU);
    wait_for("1 worker", || (s.workers().len() == 1).then_some(()));
    let last = s.workers();
    s.signal(Signal::SIGTTOU);
    wait_for("TTOU to be ignored", || {
        (count_lines(&s, "TTOU ignored") == 1).then_some(())
    });
    assert_eq!(s.workers(), last);
    assert_eq!(s.get("/").status, 200);
}

// ---------------------------------------------------------------------------------------
// USR1: reopen logs
// ---------------------------------------------------------------------------------------

#[test]
fn usr1_reopens_the_access_log() {
    let s = Srvd::start("usr1", "[log]\naccess = \"access_file.log\"");
    let log = s.dir.join("access_file.log");
    assert_eq!(s.get("/?before").status, 200);
    wait_for("the first line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("/?before"))
    });
    std::fs::rename(&log, s.dir.join("access_file.log.1")).unwrap();
    s.signal(Signal::SIGUSR1);
    // Requests made before a worker handled USR1 still go to the renamed file; keep
    // asking until one lands in the new one.
    let mut n = 0;
    wait_for("a line in the new access log", || {
        n += 1;
        assert_eq!(s.get(&format!("/?after{n}")).status, 200);
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("/?after"))
    });
    let old = std::fs::read_to_string(s.dir.join("access_file.log.1")).unwrap();
    assert!(old.contains("/?before"));
}

// ---------------------------------------------------------------------------------------
// CHLD: respawn, crash loops, master death
// ---------------------------------------------------------------------------------------

#[test]
fn killed_worker_is_replaced_within_a_second() {
    let mut s = Srvd::start("respawn", "");
    let old = s.workers();
    let victim = old[0];
    let t0 = Instant::now();
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let replaced = wait_for("a replacement", || {
        let now = s.workers();
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "replaced after {took:?}");
    assert!(replaced.contains(&old[1]));
    assert_eq!(s.get("/").status, 200);
    s.stop();
    s.forgive_signal_death(victim);
}

/// New workers are made to fail at start by renaming the docroot away: `RootDir::open`
/// runs in every freshly forked worker, so each replacement exits with code 2 right after
/// the fork, while the surviving worker (which holds the old directory fd) keeps serving.
/// This needs no root privileges and no fault injection in the binary.
#[test]
fn crash_loop_backs_off_and_alerts_once() {
    let mut s = Srvd::start("crashloop", "");
    let survivor_and_victim = s.workers();
    let victim = survivor_and_victim[0];
    std::fs::rename(&s.root, s.dir.join("root.gone")).unwrap();
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    // Watch for ~3 s: collect every pid that appears as a child.
    let mut seen: HashSet<i32> = HashSet::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        seen.extend(s.workers());
        std::thread::sleep(Duration::from_millis(2));
    }
    let failures = count_lines(&s, "worker start failed");
    let forks = seen.len().saturating_sub(2).max(failures);
    eprintln!(
        "crash loop: {failures} failed starts, {} pids seen in 3 s",
        seen.len()
    );
    // Back-off 100 ms, 200, 400, 800, 1600…: about 5 forks in 3 s; without it, hundreds.
    assert!(
        failures >= 2,
        "the loop should have retried:\n{}",
        s.error_log()
    );
    assert!(forks < 10, "{forks} forks in 3 s:\n{}", s.error_log());
    assert_eq!(
        count_lines(&s, "respawning with back-off"),
        1,
        "{}",
        s.error_log()
    );
    // The surviving worker serves throughout (its root fd still points at the directory).
    assert_eq!(s.get("/").status, 200);
    // Heals once the cause is gone (back-off is capped at 5 s).
    std::fs::rename(s.dir.join("root.gone"), &s.root).unwrap();
    wait_for("the pool to heal", || {
        (s.workers().len() == 2).then_some(())
    });
    s.stop();
    s.forgive_signal_death(victim);
}

#[test]
fn workers_exit_when_the_master_is_killed() {
    let mut s = Srvd::start("master-kill", "");
    let workers = s.workers();
    let mut child = s.child.take().unwrap();
    let t0 = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let end = t0 + Duration::from_millis(1500);
    while !all_gone(&workers) {
        assert!(
            Instant::now() < end,
            "workers {workers:?} outlived the master"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("workers gone {:?} after the master", t0.elapsed());
    wait_for("the port to be free", || {
        TcpListener::bind(addr(s.port)).ok().map(|_| ())
    });
}

// ---------------------------------------------------------------------------------------
// fd hygiene
// ---------------------------------------------------------------------------------------

/// socket inode → (state, local port) for every IPv4 TCP socket.
fn tcp_sockets() -> HashMap<u64, (String, u16)> {
    let mut out = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .unwrap_or(0);
            if let Ok(inode) = f[9].parse() {
                out.insert(inode, (f[3].to_string(), port));
            }
        }
    }
    out
}

fn unix_socket_inodes() -> HashSet<u64> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect()
}

fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[test]
fn every_worker_holds_only_its_own_fds() {
    let s = Srvd::start("fds", "[log]\naccess = \"access_file.log\"");
    let tcp = tcp_sockets();
    let unix = unix_socket_inodes();
    let root = std::fs::canonicalize(&s.root).unwrap();
    let access = std::fs::canonicalize(s.dir.join("access_file.log")).unwrap();
    let master_fds = fds_of(s.pid().as_raw());
    let master_sockets: HashSet<u64> = master_fds
        .iter()
        .filter_map(|(_, t)| socket_inode(t))
        .collect();
    let mut unix_owner: HashMap<u64, i32> = HashMap::new();
    for pid in s.workers() {
        let fds = fds_of(pid);
        let mut listeners = 0;
        let mut own_unix: HashSet<u64> = HashSet::new();
        let mut epolls = 0;
        let mut roots = 0;
        let mut logs = 0;
        let mut inotifies = 0;
        let mut kicks = 0;
        for (fd, target) in &fds {
            if *fd <= 2 {
                continue;
            }
            if let Some(inode) = socket_inode(target) {
                if let Some((state, port)) = tcp.get(&inode) {
                    assert_eq!(
                        state, "0A",
                        "worker {pid} fd {fd}: TCP socket not listening"
                    );
                    assert_eq!(*port, s.port);
                    listeners += 1;
                } else {
                    assert!(unix.contains(&inode), "worker {pid} fd {fd}: {target}");
                    assert!(
                        !master_sockets.contains(&inode),
                        "worker {pid} holds the master's end of a channel: fd {fd}"
                    );
                    if let Some(other) = unix_owner.insert(inode, pid) {
                        assert_eq!(other, pid, "workers {other} and {pid} share socket {inode}");
                    }
                    own_unix.insert(inode);
                }
            } else if target == "anon_inode:[eventpoll]" {
                epolls += 1;
            } else if target == "anon_inode:inotify" {
                // The file cache's change notifications.
                inotifies += 1;
            } else if target == "anon_inode:[eventfd]" {
                // The balance's kick, shared by the workers (worker::balance).
                kicks += 1;
            } else if Path::new(target) == root {
                roots += 1;
            } else if Path::new(target) == access {
                logs += 1;
            } else {
                panic!("worker {pid}: unexpected fd {fd} -> {target}\n{fds:?}");
            }
        }
        assert_eq!(
            (listeners, epolls, roots, logs, inotifies, kicks),
            (1, 1, 1, 1, 1, 1),
            "worker {pid}: {fds:?}"
        );
        // Three unix sockets: its channel, and its signal pipe's two ends (signal-hook
        // holds one dup of the write end per signal a worker handles: same inode).
        assert_eq!(own_unix.len(), 3, "worker {pid}: {fds:?}");
    }

    // The master never holds a client connection, even while one is open.
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let tcp = tcp_sockets();
    assert!(
        tcp.values().any(|(st, port)| st == "01" && *port == s.port),
        "the client connection should be ESTABLISHED"
    );
    for (fd, target) in fds_of(s.pid().as_raw()) {
        if let Some((state, _)) = socket_inode(&target).and_then(|i| tcp.get(&i)) {
            assert_eq!(
                state, "0A",
                "master fd {fd} is a TCP socket in state {state}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// TERM/QUIT, INT
// ---------------------------------------------------------------------------------------

#[test]
fn term_finishes_an_in_flight_download_and_exits_zero() {
    let mut s = Srvd::start("term-drain", "");
    let data = noise(16 << 20, 0x9E37_79B9_7F4A_7C15);
    s.file("big.bin", &data);
    let mut c = s.connect();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 65536];
    let n = c.read(&mut got).unwrap();
    got.truncate(n);
    s.signal(Signal::SIGTERM);
    // Stops accepting at once.
    wait_for("new connections to be refused", || {
        refuses(s.port).then_some(())
    });
    // Slow reader: 64 KiB per millisecond at most.
    let mut buf = vec![0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("download failed after {} bytes: {e}", got.len()),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = Response::parse(&got).expect("a complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), data.len());
    assert_eq!(sha256(&r.body), sha256(&data));
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn quit_is_a_graceful_stop_too() {
    let mut s = Srvd::start("quit", "");
    s.signal(Signal::SIGQUIT);
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn int_stops_within_a_second_with_an_idle_keepalive_open() {
    let mut s = Srvd::start("int", "");
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let workers = s.workers();
    let t0 = Instant::now();
    s.signal(Signal::SIGINT);
    assert_eq!(s.wait_exit(), Some(0));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "fast stop took {took:?}"
    );
    assert!(all_gone(&workers));
}

// ---------------------------------------------------------------------------------------
// Keep-alive connections across a reload
// ---------------------------------------------------------------------------------------

#[test]
fn idle_keepalive_is_closed_cleanly_on_hup() {
    let (s, state) = start_with_pid_file("hup-idle", "");
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    assert_eq!(hup_and_wait(&s, &state), "ok");
    // The old worker closes it after its short drain grace: EOF, not a reset.
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("idle keep-alive connection not closed cleanly: {e}"),
    }
}

#[test]
fn request_on_keepalive_just_after_hup_is_served() {
    let (s, _state) = start_with_pid_file("hup-busy", "");
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    s.signal(Signal::SIGHUP);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = read_response(&mut c, false).expect("a response on the kept-alive connection");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello\n");
    eprintln!("Connection: {:?}", r.header("connection"));
    // Whether it said `close` or not, the old worker ends the connection cleanly.
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("not closed cleanly: {e}"),
    }
}

/// The old worker's drain grace (`DRAIN_IDLE_GRACE`, 500 ms): a request arriving on an
/// idle kept-alive connection after the old generation began draining is still answered,
/// with `Connection: close`, instead of the connection being dropped with it unread.
#[test]
fn request_on_keepalive_during_drain_grace_gets_connection_close() {
    let (s, state) = start_with_pid_file("hup-grace", "");
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    // Returns once the new generation serves and the old one was told to drain.
    assert_eq!(hup_and_wait(&s, &state), "ok");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match c.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    let r = Response::parse(&got);
    assert!(
        r.as_ref()
            .is_some_and(|r| r.status == 200 && r.body == b"hello\n"),
        "request during the drain grace was not answered (read error: {err:?}, got {:?})",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(r.unwrap().header("connection"), Some("close"));
    assert!(err.is_none(), "not closed cleanly: {err:?}");
}

/// HUPs arriving while a reload is in progress coalesce into (at most) one more reload.
#[test]
fn hups_during_a_reload_coalesce() {
    let (s, state) = start_with_pid_file("hup-coalesce", "");
    // Back to back: far faster than a reload (fork + every new worker reporting ready).
    for _ in 0..5 {
        s.signal(Signal::SIGHUP);
    }
    // Settled: every started reload finished, and nothing changed for longer than the
    // master's idle wake-up (1 s), the latest a coalesced reload can start.
    let mut last = (u64::MAX, Instant::now());
    let total = wait_for("reloads to settle", || {
        let n = reloads(&state);
        let started = count_lines(&s, "reloading \"") as u64;
        if n != last.0 || n != started || n == 0 {
            last = (n, Instant::now());
            return None;
        }
        (last.1.elapsed() > Duration::from_millis(1500)).then_some(n)
    });
    assert!(
        (1..=2).contains(&total),
        "{total} reloads for 5 HUPs:\n{}",
        s.error_log()
    );
    assert_eq!(count_lines(&s, "reload done"), total as usize);
    wait_for("two workers", || (s.workers().len() == 2).then_some(()));
    assert_eq!(s.get("/").status, 200);
}

/// Uid line of /proc/PID/status: (real, effective).
fn uids(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let ids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    (ids[0], ids[1])
}

#[test]
fn workers_drop_privileges_to_the_configured_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED workers_drop_privileges_to_the_configured_user: needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let s = Srvd::prepare("privdrop", "user = \"nobody\"");
    // The docroot must be readable by the unprivileged workers.
    for p in [&s.dir, &s.root] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let s = s.start_prepared();
    assert_eq!(s.get("/").status, 200);
    assert_eq!(uids(s.pid().as_raw()), (0, 0), "the master keeps root");
    let workers = s.workers();
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert_eq!(
            uids(w),
            (nobody.uid.as_raw(), nobody.uid.as_raw()),
            "worker {w}"
        );
    }
}

#[test]
fn master_is_single_threaded() {
    let s = Srvd::start("one-thread", "");
    s.signal(Signal::SIGHUP);
    assert_eq!(s.get("/").status, 200);
    for pid in std::iter::once(s.pid().as_raw()).chain(s.workers()) {
        // An old-generation worker may exit between listing and reading: skip it.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let threads = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
        assert_eq!(threads.split_whitespace().nth(1), Some("1"), "pid {pid}");
    }
}
