//! The command line and the process model: `--check`, config errors, start-up failures,
//! the worker count, who holds client sockets, respawn and stop signals.

mod common;
use common::*;

use std::net::TcpListener;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A directory with `root/` and `srvd.toml` holding `config`.
fn config_dir(name: &str, config: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("srvd.toml"), config).unwrap();
    dir
}

/// True when `line` is `FILE:LINE:COL: message` with numeric LINE and COL.
fn has_position_shape(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(file).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let num =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    num(parts.next()) && num(parts.next()) && parts.next().is_some_and(|m| m.starts_with(' '))
}

#[test]
fn check_accepts_a_good_config_and_binds_nothing() {
    // Hold the port: if --check tried to bind it, it would fail.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = config_dir(
        "checkgood",
        &format!("port = {port}\nbind = \"127.0.0.1\"\nworkers = 2\nroot = \"root\"\n"),
    );
    let run = run_cli(&dir, &["--check", "--config", "srvd.toml"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "srvd.toml: configuration ok\n");
    assert_eq!(run.stderr, "");
    // Still ours, and nothing else started listening.
    held.set_nonblocking(true).unwrap();
    assert!(held.accept().is_err(), "someone connected during --check");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_key_is_reported_with_file_line_and_column() {
    let dir = config_dir("checkbad", "port = 8080\nroot = \"root\"\nrot = \"x\"\n");
    let run = run_cli(&dir, &["--check", "--config", "srvd.toml"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr, "srvd.toml:3:1: unknown key \"rot\"\n");
    assert!(has_position_shape(run.stderr.trim_end(), "srvd.toml"));
    assert!(!run.stderr.contains("panicked"));
    // The same without --check: it refuses to start.
    let run = run_cli(&dir, &["--config", "srvd.toml"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("srvd.toml:3:1: unknown key \"rot\""));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn several_semantic_errors_are_all_reported() {
    let dir = config_dir(
        "checkmany",
        "port = 0\nroot = \"root\"\nworkers = 0\nkeepalive_timeout = \"5x\"\nmax_connections = 0\n",
    );
    let run = run_cli(&dir, &["--check", "--config", "srvd.toml"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stderr);
    // One per key, in file order, each positioned.
    for (line, (at, key)) in lines.iter().zip([
        ("srvd.toml:1:", "port"),
        ("srvd.toml:3:", "workers"),
        ("srvd.toml:4:", "keepalive_timeout"),
        ("srvd.toml:5:", "max_connections"),
    ]) {
        assert!(line.starts_with(at), "{line:?} should start with {at:?}");
        assert!(line.contains(key), "{line:?} should name {key}");
        assert!(has_position_shape(line, "srvd.toml"), "{line:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn version_and_help_exit_zero() {
    let dir = temp_dir("cliinfo");
    let run = run_cli(&dir, &["--version"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("srvd {}\n", env!("CARGO_PKG_VERSION")));
    let run = run_cli(&dir, &["--help"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("Usage: srvd"), "{}", run.stdout);
    assert!(run.stdout.contains("--check"), "{}", run.stdout);
    assert!(run.stdout.contains("--config"), "{}", run.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_taken_port_is_one_clear_error() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = config_dir(
        "porttaken",
        &format!("port = {port}\nbind = \"127.0.0.1\"\nworkers = 1\nroot = \"root\"\n"),
    );
    let run = run_cli(&dir, &["--config", "srvd.toml"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.code.is_some(), "killed by a signal: {run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{}", run.stderr);
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}")) && lines[0].contains("in use"),
        "{}",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked"));
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_root_is_named() {
    // (config, expected stderr)
    let table: &[(&str, &str)] = &[
        ("port = 8080\n", "srvd.toml: missing key \"root\"\n"),
        (
            "port = 8080\nroot = \"nope\"\n",
            "srvd.toml:2:8: invalid root \"nope\": no such file or directory\n",
        ),
    ];
    for (config, want) in table {
        let dir = config_dir("noroot", config);
        for args in [
            &["--check", "--config", "srvd.toml"][..],
            &["--config", "srvd.toml"][..],
        ] {
            let run = run_cli(&dir, args);
            assert_eq!(run.code, Some(1), "{config:?} {args:?}: {run:?}");
            assert_eq!(run.stderr, *want, "{config:?} {args:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn exactly_the_configured_number_of_workers_start() {
    let s = Srvd::prepare_with_workers("workers3", "", 3).start_prepared();
    s.wait_workers_ready();
    let workers = s.workers();
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert!(workers.iter().all(|&p| alive(p)), "{workers:?}");
    // Every worker serves: enough requests land somewhere, all answered.
    for _ in 0..6 {
        assert_eq!(s.get("/").body, b"hello\n");
    }
    assert_eq!(s.workers(), workers, "workers changed while serving");
}

#[test]
fn the_master_holds_no_client_sockets() {
    let s = Srvd::prepare_with_workers("nosockets", "", 3).start_prepared();
    s.wait_workers_ready();
    let mut clients: Vec<_> = (0..4).map(|_| s.connect()).collect();
    for c in &mut clients {
        use std::io::Write;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(c, false).expect("keep-alive response");
        assert_eq!(r.body, b"hello\n");
    }
    // Every client is now accepted and kept alive by some worker.
    let inodes = wait_for("4 accepted server-side sockets", || {
        let v = established_server_inodes(s.port);
        (v.len() >= 4).then_some(v)
    });
    let master = socket_inodes_of(s.pid().as_raw());
    let workers: Vec<Vec<u64>> = s.workers().into_iter().map(socket_inodes_of).collect();
    for inode in &inodes {
        assert!(
            !master.contains(inode),
            "master holds client socket {inode} (master sockets {master:?})"
        );
        let holders = workers.iter().filter(|w| w.contains(inode)).count();
        assert_eq!(
            holders, 1,
            "client socket {inode} held by {holders} workers"
        );
    }
    drop(clients);
}

#[test]
fn a_killed_worker_is_replaced() {
    let mut s = Srvd::prepare_with_workers("respawn", "", 3).start_prepared();
    s.wait_workers_ready();
    let before = s.workers();
    assert_eq!(before.len(), 3);
    let victim = before[1];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let after = wait_for("a replacement worker", || {
        let now = s.workers();
        (now.len() == 3 && !now.contains(&victim)).then_some(now)
    });
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "before {before:?} after {after:?}");
    assert!(!alive(victim));
    s.wait_workers_ready();
    // Still serving on every path after the respawn.
    for _ in 0..6 {
        assert_eq!(s.get("/").body, b"hello\n");
    }
    s.stop_expecting_log_line(&format!("worker {victim} exited on signal"));
}

fn stops_cleanly_on(sig: Signal, name: &str) {
    let mut s = Srvd::prepare_with_workers(name, "", 3).start_prepared();
    // A worker still starting can lose the signal (see the test below); this test is about
    // stopping a running server.
    s.wait_workers_ready();
    let workers = s.workers();
    assert_eq!(workers.len(), 3);
    s.signal(sig);
    assert_eq!(s.wait_exit(), Some(0), "{sig} exit code");
    // Reaped: forget it, so Drop does not signal a pid that may be reused.
    s.child = None;
    wait_for("every worker to be gone", || {
        workers.iter().all(|&p| !alive(p)).then_some(())
    });
    assert!(
        std::net::TcpStream::connect(s.addr()).is_err(),
        "still accepting after {sig}"
    );
}

#[test]
fn sigint_stops_master_and_workers_with_exit_zero() {
    stops_cleanly_on(Signal::SIGINT, "sigint");
}

#[test]
fn sigterm_stops_master_and_workers_with_exit_zero() {
    stops_cleanly_on(Signal::SIGTERM, "sigterm");
}

/// A stop signal that reaches a worker before it has installed its own handlers must not be
/// lost. The access log is a FIFO nobody reads yet, so every worker blocks opening it, in
/// the middle of its start (after fork, before its handlers exist): deterministic.
#[test]
fn sigterm_during_worker_start_is_not_lost() {
    use std::os::unix::fs::OpenOptionsExt;
    let s = Srvd::prepare(
        "startsignal",
        "shutdown_timeout = \"30s\"\n[log]\naccess = \"log.fifo\"",
    );
    let fifo = s.dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut s = s.start_unready();
    let workers = s.workers();
    assert!(
        workers.iter().all(|&p| !worker_ready(p)),
        "workers started although the FIFO has no reader"
    );
    s.signal(Signal::SIGTERM);
    wait_for("the master to begin its stop", || {
        s.error_log().contains("graceful stop").then_some(())
    });
    // Now let the workers finish starting.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    // An idle server stops at once; 5 s is far below shutdown_timeout (30 s), after which
    // the master would SIGKILL the workers.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let child = s.child.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= end {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let Some(status) = status else {
        let stuck: Vec<String> = workers
            .iter()
            .filter(|&&p| alive(p))
            .map(|p| {
                let wchan = std::fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
                format!("{p} (ready: {}, in {wchan})", worker_ready(*p))
            })
            .collect();
        // Drop's SIGTERM is delivered to the now-started workers and ends the run.
        panic!("SIGTERM sent while workers were starting was lost: master still running 5 s later, workers {stuck:?}");
    };
    s.child = None;
    assert_eq!(status.code(), Some(0));
    wait_for("every worker to be gone", || {
        workers.iter().all(|&p| !alive(p)).then_some(())
    });
}

#[test]
fn workers_stuck_in_start_up_die_with_the_master() {
    // The access log is a FIFO without a reader: every worker blocks opening it, inside
    // its start-up, with signals still blocked.
    let s = Srvd::prepare("startdeath", "[log]\naccess = \"log.fifo\"");
    let fifo = s.dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut s = s.start_unready();
    let workers = s.workers();
    assert!(workers.iter().all(|&p| !worker_ready(p)));
    // The master dies without a chance to stop anyone.
    nix::sys::signal::kill(s.pid(), Signal::SIGKILL).unwrap();
    let _ = s.wait_exit();
    wait_for("the orphaned workers to die", || {
        workers.iter().all(|&p| !alive(p)).then_some(())
    });
}
