//! In-place binary upgrade (SIGUSR2, `srvd upgrade`) and socket activation (LISTEN_FDS),
//! black-box.
//!
//! Every server here runs from its own copy of the binary (`DIR/bin/srvd`), because the
//! tests replace that file: a new binary is installed the way a package manager does it,
//! copied next to the target and renamed over it (a running executable cannot be
//! written). Copies are made by `cp` in a child process, never written by this
//! (multi-threaded) process: a file open for writing here could leak, for an instant,
//! into a child another test thread forks, and `execve` of it would fail with ETXTBSY.
//!
//! Every wait is a poll with a deadline ([`wait_for`], 10 s); every load loop is bounded
//! in time and in count. Socket activation uses systemd's own tool,
//! `systemd-socket-activate` (Debian package `systemd`); without it those tests skip with
//! a message, unless `SRVD_REQUIRE_SYSTEMD_TOOLS=1` makes that a failure.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WORKERS: usize = 2;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GET `path` on `port` with `Connection: close`; `None` when no response came.
fn get_on(port: u16, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect(addr(port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    Response::parse(&read_to_close(&mut s))
}

fn serves(port: u16) -> bool {
    get_on(port, "/").is_some_and(|r| r.status == 200 && r.body == b"hello\n")
}

fn refuses(port: u16) -> bool {
    matches!(TcpStream::connect(addr(port)), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

/// A listening IPv4 TCP socket on a 127.0.0.1 port, from /proc/net/tcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListenSocket {
    inode: u64,
    /// For a listening socket: connections waiting in its accept queue.
    queued: u64,
}

/// Every socket in LISTEN state on `port` (one, normally; two would mean it was bound
/// again).
fn listening(port: u16) -> Vec<ListenSocket> {
    tcp_table(false)
        .into_iter()
        .filter(|r| r.state == *b"0A" && r.port == port)
        .map(|r| ListenSocket {
            inode: r.inode,
            queued: r.rx_queue,
        })
        .collect()
}

/// The one listening socket on `port`, or a failure naming all of them.
fn the_listener(port: u16) -> ListenSocket {
    let all = listening(port);
    assert_eq!(all.len(), 1, "listening sockets on port {port}: {all:?}");
    all[0]
}

/// What /proc/PID/exe points at.
fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Live (not zombie) processes whose command line has `arg` as one of its arguments.
fn processes_with_arg(arg: &Path) -> Vec<i32> {
    let want = arg.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|&b| b == 0).any(|a| a == want) && alive(pid) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// `cp SRC DEST.new`, chmod, rename over `dest`: an install as a package manager does it.
fn install(src: &Path, dest: &Path, mode: u32) {
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let status = Command::new("cp")
        .arg(src)
        .arg(&tmp)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {} {}", src.display(), tmp.display());
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// Installs `bytes` at `dest` (staged in a file nobody executes, then [`install`]ed).
fn install_bytes(dest: &Path, bytes: &[u8], mode: u32) {
    let mut staged = dest.as_os_str().to_owned();
    staged.push(".staged");
    let staged = PathBuf::from(staged);
    std::fs::write(&staged, bytes).unwrap();
    install(&staged, dest, mode);
    std::fs::remove_file(&staged).unwrap();
}

/// `systemd-socket-activate`, or `None` (after saying why) when the test should skip.
fn socket_activate_tool(test: &str) -> Option<PathBuf> {
    systemd_tool(test, "systemd-socket-activate")
}

fn systemd_tool(test: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
            .map(|d| d.join(name))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    });
    if found.is_none() {
        let why = format!("{name} not found (Debian: apt-get install -y systemd)");
        if std::env::var("SRVD_REQUIRE_SYSTEMD_TOOLS").is_ok_and(|v| v == "1") {
            panic!("SRVD_REQUIRE_SYSTEMD_TOOLS=1 but {why}");
        }
        eprintln!("SKIPPED {test}: {why} (SRVD_REQUIRE_SYSTEMD_TOOLS=1 makes this a failure)");
    }
    found
}

/// A server directory: `bin/srvd` (a copy of the binary under test), `root/`, a config
/// with `pid_file = "srvd.pid"`, and the logs. Dropping it stops every process started
/// with its config (by pid), then checks the error log.
struct Server {
    dir: PathBuf,
    /// The path masters are started from, and that an upgrade executes.
    exe: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    /// `<pid_file>.upgrade`.
    state: PathBuf,
    port: u16,
    /// What this test spawned: the first master, or `systemd-socket-activate`, which
    /// becomes the first master when it executes srvd.
    child: Option<Child>,
}

impl Server {
    fn prepare(name: &str, extra: &str) -> Server {
        let dir = temp_dir(name);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "hello\n").unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let exe = dir.join("bin/srvd");
        install(&bin(), &exe, 0o755);
        let s = Server {
            config: dir.join("srvd.toml"),
            pid_file: dir.join("srvd.pid"),
            state: dir.join("srvd.pid.upgrade"),
            port: free_port(),
            exe,
            dir,
            child: None,
        };
        s.write_config(s.port, extra);
        s
    }

    fn write_config(&self, port: u16, extra: &str) {
        let text = format!(
            "port = {port}\nbind = \"127.0.0.1\"\nworkers = {WORKERS}\nroot = \"root\"\n\
             pid_file = \"srvd.pid\"\n{extra}\n"
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn spawn(&mut self, mut cmd: Command) {
        let stderr = std::fs::File::create(self.dir.join("error.log")).unwrap();
        let stdout = std::fs::File::create(self.dir.join("access.log")).unwrap();
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.child = Some(cmd.spawn().expect("spawn"));
    }

    /// Starts `bin/srvd --config …` and waits until it serves.
    fn start(name: &str, extra: &str) -> Server {
        let mut s = Server::prepare(name, extra);
        let mut cmd = Command::new(&s.exe);
        cmd.arg("--config").arg(&s.config);
        s.spawn(cmd);
        let pid = s.wait_serving(s.port);
        assert_eq!(pid, s.child_pid(), "pid_file names the master started");
        s
    }

    /// `systemd-socket-activate -l 127.0.0.1:PORT bin/srvd --config …`; returns once the
    /// tool listens (srvd is not running yet: it is executed on the first connection).
    fn start_activated(&mut self, tool: &Path, port: u16) -> ListenSocket {
        let mut cmd = Command::new(tool);
        cmd.arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&self.exe)
            .arg("--config")
            .arg(&self.config);
        self.spawn(cmd);
        let pid = self.child_pid();
        let socket = wait_for("systemd-socket-activate to listen", || {
            let held = socket_inodes_of(pid);
            listening(port)
                .into_iter()
                .find(|l| held.contains(&l.inode))
        });
        assert!(
            exe_of(pid).ends_with("/systemd-socket-activate"),
            "before any connection, pid {pid} should still be the tool: {}",
            exe_of(pid)
        );
        assert!(!self.pid_file.exists(), "srvd must not have started yet");
        socket
    }

    fn child_pid(&self) -> i32 {
        self.child.as_ref().expect("spawned").id() as i32
    }

    /// The pid in `pid_file`.
    fn master(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the master named by `pid_file` has all its workers serving and `port`
    /// answers; returns that master's pid.
    fn wait_serving(&self, port: u16) -> i32 {
        wait_for("the master in pid_file to serve", || {
            let pid = self.master()?;
            let workers = children_of(pid);
            (alive(pid)
                && workers.len() == WORKERS
                && workers.iter().all(|&w| worker_ready(w))
                && serves(port))
            .then_some(pid)
        })
    }

    /// `srvd upgrade --config …` (the CLI is the binary under test, not the copy).
    fn upgrade(&self) -> CliRun {
        run_cli(
            &self.dir,
            &["upgrade", "--config", self.config.to_str().unwrap()],
        )
    }

    fn reload(&self) -> CliRun {
        run_cli(
            &self.dir,
            &["reload", "--config", self.config.to_str().unwrap()],
        )
    }

    /// `upgrades=` and `result=` of `<pid_file>.upgrade`.
    fn upgrade_state(&self) -> (u64, String) {
        let text = std::fs::read_to_string(&self.state).unwrap_or_default();
        let n = srvd::reload_cmd::count(&self.state, "upgrades=");
        let result = text
            .lines()
            .find_map(|l| l.strip_prefix("result="))
            .unwrap_or("")
            .to_owned();
        (n, result)
    }

    /// Waits for the process this test spawned to exit; its exit code.
    fn wait_child_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("spawned");
        wait_for("the first master to exit", || child.try_wait().unwrap()).code()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// An upgrade that must be refused: `srvd upgrade` fails with `reason` in its message
    /// and in `<pid_file>.upgrade` (whose counter moves by one), and the old master goes
    /// on exactly as before: same pid_file, same workers, no other child, same number of
    /// descriptors, same listener, serving.
    fn expect_failed_upgrade(&self, what: &str, reason: &str) {
        let master = self.master().expect("pid_file");
        let workers = children_of(master);
        let fds = fds_of(master).len();
        let listener = self.the_listener();
        let (before, _) = self.upgrade_state();
        let t0 = Instant::now();
        let run = self.upgrade();
        eprintln!(
            "{what}: srvd upgrade exit {:?} after {:?}: {}",
            run.code,
            t0.elapsed(),
            run.stderr.trim()
        );
        assert_eq!(run.code, Some(1), "{what}: {run:?}\n{}", self.error_log());
        assert!(
            run.stderr.contains("upgrade failed: ") && run.stderr.contains(reason),
            "{what}: srvd upgrade should say why ({reason:?}): {run:?}"
        );
        let (after, result) = self.upgrade_state();
        assert_eq!(after, before + 1, "{what}: upgrades= counter");
        assert!(
            result.starts_with("failed: ") && result.contains(reason),
            "{what}: result={result}"
        );
        assert!(
            self.error_log()
                .lines()
                .any(|l| l.contains(reason) && l.contains("this master keeps serving")),
            "{what}: error log:\n{}",
            self.error_log()
        );
        assert_eq!(self.master(), Some(master), "{what}: pid_file changed");
        assert!(alive(master), "{what}: the master died");
        // The failed new master (if it ran) is reaped: only the same workers are left.
        wait_for("the failed new master to be reaped", || {
            (children_of(master) == workers).then_some(())
        });
        assert!(serves(self.port), "{what}: the old master stopped serving");
        assert_eq!(self.the_listener(), listener, "{what}: listener changed");
        assert_eq!(
            fds_of(master).len(),
            fds,
            "{what}: the master's descriptors changed (a leak?): {:?}",
            fds_of(master)
        );
    }

    /// `srvd upgrade` during a reload: refused, the master and both generations untouched.
    fn expect_failed_upgrade_while_reloading(&self) {
        let master = self.master().unwrap();
        let children = children_of(master);
        let (before, _) = self.upgrade_state();
        let run = self.upgrade();
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr
                .contains("upgrade failed: a reload is in progress"),
            "{run:?}"
        );
        assert_eq!(
            self.upgrade_state(),
            (
                before + 1,
                "failed: a reload is in progress; try again".to_string()
            )
        );
        assert_eq!(self.master(), Some(master));
        assert_eq!(children_of(master), children, "no new master was started");
        assert!(serves(self.port));
    }

    fn the_listener(&self) -> ListenSocket {
        the_listener(self.port)
    }

    /// A good upgrade from the master in pid_file: `srvd upgrade` exits 0 naming both pids,
    /// the new master serves on the very same socket, the old one and its workers exit.
    /// Returns the new master's pid.
    fn expect_good_upgrade(&self, port: u16) -> i32 {
        let old = self.master().expect("pid_file");
        let old_workers = children_of(old);
        let listener = the_listener(port);
        let (before, _) = self.upgrade_state();
        let t0 = Instant::now();
        let run = self.upgrade();
        eprintln!(
            "upgrade from {old}: exit {:?} after {:?}: {}",
            run.code,
            t0.elapsed(),
            run.stdout.trim()
        );
        assert_eq!(run.code, Some(0), "{run:?}\n{}", self.error_log());
        let new = self.master().expect("pid_file");
        assert_ne!(new, old, "pid_file must name the new master");
        assert_eq!(
            run.stdout.trim(),
            format!("upgraded: new master {new} serves, master {old} drains")
        );
        assert_eq!(
            self.upgrade_state(),
            (before + 1, format!("ok pid={new}")),
            "<pid_file>.upgrade"
        );
        wait_for("the old master and its workers to exit", || {
            (!alive(old) && old_workers.iter().all(|&w| !alive(w))).then_some(())
        });
        assert_eq!(self.wait_serving(port), new);
        let now = the_listener(port);
        assert_eq!(now.inode, listener.inode, "the listener was bound again");
        assert!(
            socket_inodes_of(new).contains(&listener.inode),
            "new master {new} does not hold listener {}: {:?}",
            listener.inode,
            fds_of(new)
        );
        for w in children_of(new) {
            assert!(
                socket_inodes_of(w).contains(&listener.inode),
                "worker {w} does not hold the inherited listener"
            );
        }
        new
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Masters first (a graceful stop), then whatever is left of ours, by pid.
        let mut masters: Vec<i32> = self.master().into_iter().collect();
        if let Some(c) = &self.child {
            masters.push(c.id() as i32);
        }
        for pid in masters.into_iter().filter(|&p| alive(p)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let end = Instant::now() + DEADLINE;
        while !processes_with_arg(&self.config).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in processes_with_arg(&self.config) {
            eprintln!("killing leftover process {pid}");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let log = self.error_log();
        if std::thread::panicking() {
            eprintln!("--- error log ({}) ---\n{log}", self.dir.display());
            return;
        }
        assert!(!log.contains("panicked"), "srvd panicked:\n{log}");
        assert!(
            !log.contains("exited on signal"),
            "a worker died on a signal:\n{log}"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Load: keep-alive clients and one-connection-per-request clients
// ---------------------------------------------------------------------------------------

const CLIENTS: usize = 4;
/// Bounds of the load, all clients together: the main thread stops it long before
/// either, normally (about 1 s and 30k requests here).
const LOAD_MAX_REQUESTS: u64 = 50_000;
const LOAD_MAX_TIME: Duration = Duration::from_secs(8);
const BOUNDS: load::Bounds = load::Bounds {
    per_client: u64::MAX,
    total: LOAD_MAX_REQUESTS,
    time: LOAD_MAX_TIME,
    big_every: 8,
};
/// The slow download across an upgrade, and the most of it the socket buffers can hold
/// (the client's receive buffer is pinned at 64 KiB; the server's send buffer is at most
/// net.core.wmem_max or tcp_wmem's 4 MiB by default).
const HUGE: usize = 16 << 20;
const IN_FLIGHT_MAX: usize = 8 << 20;

/// GETs `/huge.bin` with a small receive buffer and reads at most 64 KiB per 2 ms, so
/// that it lasts across the handover; `received` follows its progress.
fn slow_download(port: u16, expect: &[u8], received: &AtomicU64) -> Result<(), String> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    sock.set_recv_buffer_size(64 << 10)
        .map_err(|e| e.to_string())?;
    sock.connect(&addr(port).into())
        .map_err(|e| format!("connect: {e}"))?;
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut got = Vec::with_capacity(expect.len() + 512);
    let mut chunk = vec![0u8; 64 << 10];
    let end = Instant::now() + DEADLINE;
    loop {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {} bytes", got.len())),
        }
        received.store(got.len() as u64, Ordering::Relaxed);
        if Instant::now() > end {
            return Err(format!("too slow: {} bytes by the deadline", got.len()));
        }
        std::thread::sleep(Duration::from_millis(2)); // pacing, not waiting for a state
    }
    let r = Response::parse(&got).ok_or(format!("no complete response in {} bytes", got.len()))?;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    if r.body != expect {
        return Err(format!("wrong body ({} bytes)", r.body.len()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Upgrade under load
// ---------------------------------------------------------------------------------------

/// `srvd upgrade` while clients fetch over kept-alive and fresh connections: nothing is
/// refused, reset or answered with anything but the right 200; the new master (a new pid
/// in pid_file, running the binary at the path) serves on the very socket the old one
/// listened on, and the old master drains and exits 0.
#[test]
fn upgrade_under_load_loses_nothing_and_keeps_the_socket() {
    let mut s = Server::start("upgrade-load", "[log]\naccess = \"off\"");
    let big = noise(64 << 10, 5);
    std::fs::write(s.dir.join("root/big.bin"), &big).unwrap();
    let old = s.child_pid();
    let old_workers = children_of(old);
    let listener = s.the_listener();
    assert!(
        socket_inodes_of(old).contains(&listener.inode),
        "the master holds the listener"
    );
    let old_fds = fds_of(old).len();
    let port = s.port;

    let stop = AtomicBool::new(false);
    let stats = load::Stats::default();
    let huge = noise(HUGE, 11);
    std::fs::write(s.dir.join("root/huge.bin"), &huge).unwrap();
    let received = AtomicU64::new(0);
    let t0 = Instant::now();
    let (run, marks, download) = std::thread::scope(|scope| {
        for id in 0..CLIENTS {
            let (stop, stats, big) = (&stop, &stats, &big);
            scope.spawn(move || {
                load::client(id, port, id % 2 == 0, stop, stats, b"hello\n", big, BOUNDS)
            });
        }
        // A slow download from an old worker, in flight across the handover.
        let (huge, received) = (&huge, &received);
        let download = scope.spawn(move || slow_download(port, huge, received));
        let ok = || stats.ok.load(Ordering::Relaxed);
        wait_for("the load and the download to flow", || {
            (ok() >= 500 && received.load(Ordering::Relaxed) > 0).then_some(())
        });
        let before = ok();
        let t = Instant::now();
        let run = s.upgrade();
        let upgrade_took = t.elapsed();
        let at_upgrade = ok();
        // The download still needs more bytes than the socket buffers hold: its worker,
        // and so the old master, cannot be gone yet.
        let got = received.load(Ordering::Relaxed);
        let old_alive = alive(old);
        // The old master drains (kept-alive connections are told `Connection: close`,
        // the download finishes) and exits; after that the new master serves alone.
        let code = s.wait_child_exit();
        let drained_in = t.elapsed();
        wait_for("the old workers to exit", || {
            old_workers.iter().all(|&w| !alive(w)).then_some(())
        });
        let at_exit = ok();
        let exhausted = || stats.issued.load(Ordering::Relaxed) >= LOAD_MAX_REQUESTS;
        wait_for("requests served by the new master alone", || {
            (ok() >= at_exit + 500 || exhausted()).then_some(())
        });
        if exhausted() {
            eprintln!("upgrade-load: the load reached its bound of {LOAD_MAX_REQUESTS} requests");
        }
        stop.store(true, Ordering::Relaxed);
        (
            run,
            (
                before,
                at_upgrade,
                at_exit,
                upgrade_took,
                drained_in,
                code,
                got,
                old_alive,
            ),
            download.join().unwrap(),
        )
    });
    let (before, at_upgrade, at_exit, upgrade_took, drained_in, old_exit, got, old_alive) = marks;
    let failures = stats.failures.lock().unwrap();
    eprintln!(
        "upgrade-load: {} ok ({before} before the upgrade, {at_upgrade} when `srvd upgrade` \
         returned after {upgrade_took:?}, {at_exit} when the old master had exited after \
         {drained_in:?}), {} retries on reused idle connections, {} failures, {:?} in all; \
         download at {got} bytes when the upgrade returned",
        stats.ok.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        failures.len(),
        t0.elapsed()
    );
    assert!(
        failures.is_empty(),
        "lost requests:\n{}\n{}",
        failures.join("\n"),
        s.error_log()
    );
    assert_eq!(download, Ok(()), "the download across the handover");
    assert_eq!(
        run.code,
        Some(0),
        "srvd upgrade: {run:?}\n{}",
        s.error_log()
    );
    if got < (HUGE - IN_FLIGHT_MAX) as u64 {
        assert!(
            old_alive,
            "the old master exited with a download from one of its workers unfinished"
        );
    }
    assert_eq!(old_exit, Some(0), "the old master's exit code");

    let new = s.master().expect("pid_file");
    assert_ne!(new, old);
    assert_eq!(
        run.stdout.trim(),
        format!("upgraded: new master {new} serves, master {old} drains")
    );
    assert_eq!(s.upgrade_state(), (1, format!("ok pid={new}")));
    assert!(alive(new), "the new master runs");
    assert_eq!(s.wait_serving(port), new);
    let exe = std::fs::canonicalize(&s.exe).unwrap();
    assert_eq!(
        exe_of(new),
        exe.display().to_string(),
        "the new master's binary"
    );

    // Never bound again: one listening socket on the port, the one the old master had,
    // held by the new master and each of its workers.
    assert_eq!(
        s.the_listener().inode,
        listener.inode,
        "the listener changed"
    );
    assert!(
        socket_inodes_of(new).contains(&listener.inode),
        "new master: {:?}",
        fds_of(new)
    );
    let new_workers = children_of(new);
    assert_eq!(new_workers.len(), WORKERS);
    for w in &new_workers {
        assert!(socket_inodes_of(*w).contains(&listener.inode), "worker {w}");
    }
    // Nothing of the handover left open in the new master (the report socket, a second
    // copy of the listener): it holds what a master started afresh holds.
    assert_eq!(
        fds_of(new).len(),
        old_fds,
        "new master's fds {:?}",
        fds_of(new)
    );
    let log = s.error_log();
    assert!(
        log.contains(&format!(
            "master {new}: listener 127.0.0.1:{port} received from the previous master"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("master {old}: upgrade ok pid={new}")),
        "{log}"
    );
}

/// After an upgrade the new master received its listener from the old one; that socket
/// was bound by srvd, not by systemd, so a reload that moves to another port must close
/// it, as a reload does without an upgrade (docs/operations.md, reload step 4). Otherwise
/// the old port keeps accepting connections into a queue that nobody serves.
#[test]
fn reload_after_an_upgrade_closes_the_address_it_leaves() {
    let s = Server::start("upgrade-then-move", "");
    let old_port = s.port;
    s.expect_good_upgrade(old_port);
    let master = s.master().unwrap();
    let new_port = free_port();
    s.write_config(new_port, "");
    let run = s.reload();
    assert_eq!(run.code, Some(0), "{run:?}\n{}", s.error_log());
    assert!(serves(new_port));
    let end = Instant::now() + DEADLINE;
    while !refuses(old_port) {
        if Instant::now() > end {
            // Show that a client there is queued and never answered.
            let mut c = TcpStream::connect(addr(old_port)).expect("connect");
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 64];
            let read = c.read(&mut buf);
            panic!(
                "port {old_port} still listens {DEADLINE:?} after the reload moved to \
                 {new_port}: sockets {:?}, master {master} holds {:?}; a request there: \
                 {read:?} (workers {:?})",
                listening(old_port),
                fds_of(master),
                children_of(master)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// 2. The binary on disk is what runs
// ---------------------------------------------------------------------------------------

/// The file at the master's path is replaced by a script that leaves a marker and then
/// executes the real binary with its arguments: the upgrade runs the script (the path on
/// disk, not the old inode behind /proc/self/exe) with the master's own arguments.
#[test]
fn upgrade_executes_the_file_now_at_the_path() {
    let s = Server::start("upgrade-path", "");
    let old = s.child_pid();
    let marker = s.dir.join("marker");
    let real = bin();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '{}'\nexec '{}' \"$@\"\n",
        marker.display(),
        real.display()
    );
    install_bytes(&s.exe, script.as_bytes(), 0o755);
    assert!(
        exe_of(old).ends_with(" (deleted)"),
        "the running binary was replaced: {}",
        exe_of(old)
    );
    let new = s.expect_good_upgrade(s.port);
    let ran = std::fs::read_to_string(&marker).expect("the script ran");
    assert_eq!(
        ran,
        format!("{}\n--config\n{}\n", s.exe.display(), s.config.display()),
        "the script at the path, with the master's arguments"
    );
    assert_eq!(
        exe_of(new),
        std::fs::canonicalize(&real).unwrap().display().to_string(),
        "the new master is what the script executed"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Failed upgrades
// ---------------------------------------------------------------------------------------

/// Every way the new binary can fail leaves the old master serving with the same
/// workers, and says why; a good binary installed afterwards upgrades.
#[test]
fn failed_upgrades_keep_the_old_master_and_say_why() {
    let s = Server::start("upgrade-fail", "");
    let good = s.dir.join("srvd.good");
    install(&bin(), &good, 0o755);

    // Missing.
    std::fs::remove_file(&s.exe).unwrap();
    s.expect_failed_upgrade("missing binary", "No such file or directory");

    // Present but not executable.
    install(&good, &s.exe, 0o644);
    s.expect_failed_upgrade("binary without x bits", "Permission denied");

    // Executable garbage.
    install_bytes(&s.exe, &noise(4096, 3), 0o755);
    s.expect_failed_upgrade("garbage with +x", "Exec format error");

    // A truncated ELF (its header, nothing else).
    let elf = std::fs::read(&good).unwrap();
    install_bytes(&s.exe, &elf[..64], 0o755);
    s.expect_failed_upgrade("truncated ELF", "Exec format error");

    // Runs, then exits before it serves.
    install_bytes(&s.exe, b"#!/bin/sh\nexit 3\n", 0o755);
    s.expect_failed_upgrade(
        "script exiting 3",
        "exited before it served (exit status: 3)",
    );

    // A real srvd that cannot start: its config is broken by then. It must not touch
    // pid_file or the old master's listener on its way out.
    install(&good, &s.exe, 0o755);
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace("workers = 2", "workers = 0")).unwrap();
    // `srvd upgrade` itself validates the config first: signal the master directly.
    let master = s.master().unwrap();
    let workers = children_of(master);
    kill(Pid::from_raw(master), Signal::SIGUSR2).unwrap();
    let (n, result) = wait_for("the outcome of the upgrade to a bad config", || {
        let (n, result) = s.upgrade_state();
        (n == 6).then_some((n, result))
    });
    assert!(
        result.starts_with("failed: ") && result.contains("exited before it served"),
        "upgrades={n} result={result}"
    );
    wait_for("the failed new master to be reaped", || {
        (children_of(master) == workers).then_some(())
    });
    assert_eq!(s.master(), Some(master));
    assert!(serves(s.port));
    std::fs::write(&s.config, config).unwrap();

    // And now a good one.
    let new = s.expect_good_upgrade(s.port);
    assert_eq!(s.upgrade_state(), (7, format!("ok pid={new}")));
}

/// An upgrade asked while a reload is still starting its workers is refused with the
/// reason (it would hand the new master a half-changed state); the reload then completes
/// and a later upgrade works. The reload is held deterministically: its workers block
/// opening an access log that is a FIFO nobody reads yet.
#[test]
fn upgrade_during_a_reload_is_refused_and_the_reload_completes() {
    use std::os::unix::fs::OpenOptionsExt;
    let s = Server::start("upgrade-reloading", "");
    let master = s.master().unwrap();
    let old_workers = children_of(master);
    let fifo = s.dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    s.write_config(s.port, "[log]\naccess = \"log.fifo\"");
    let reload_state = s.dir.join("srvd.pid.reload");
    let reloads = srvd::reload_cmd::reloads_done(&reload_state);
    kill(Pid::from_raw(master), Signal::SIGHUP).unwrap();
    wait_for("the new generation to be stuck starting", || {
        (children_of(master).len() == 2 * WORKERS).then_some(())
    });
    s.expect_failed_upgrade_while_reloading();
    // Let the new workers finish starting.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    wait_for("the reload to finish", || {
        (srvd::reload_cmd::reloads_done(&reload_state) > reloads).then_some(())
    });
    let text = std::fs::read_to_string(&reload_state).unwrap();
    assert!(text.contains("result=ok"), "{text}");
    wait_for("the old generation to leave", || {
        old_workers.iter().all(|&w| !alive(w)).then_some(())
    });
    s.expect_good_upgrade(s.port);
}

// ---------------------------------------------------------------------------------------
// 4. Upgrades in a row, then a stop
// ---------------------------------------------------------------------------------------

/// Two upgrades in a row (a fresh binary installed before each): the counter keeps
/// growing across masters; a graceful stop of the last one leaves no process and no
/// pid_file.
#[test]
fn two_upgrades_in_a_row_then_a_clean_stop() {
    let mut s = Server::start("upgrade-twice", "");
    let first = s.child_pid();
    let first_workers = children_of(first);
    install(&bin(), &s.exe, 0o755);
    let second = s.expect_good_upgrade(s.port);
    assert_eq!(s.wait_child_exit(), Some(0), "the first master's exit code");
    let second_workers = children_of(second);
    install(&bin(), &s.exe, 0o755);
    let third = s.expect_good_upgrade(s.port);
    assert_eq!(s.upgrade_state(), (2, format!("ok pid={third}")));
    let third_workers = children_of(third);
    let listener = s.the_listener();

    // A kept-alive connection to the last master, idle when the stop comes.
    let mut idle = load::connect(s.port).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);

    kill(Pid::from_raw(third), Signal::SIGTERM).unwrap();
    let mut everyone = vec![first, second, third];
    everyone.extend(first_workers);
    everyone.extend(second_workers);
    everyone.extend(third_workers);
    wait_for("every master and worker to exit", || {
        everyone.iter().all(|&p| !alive(p)).then_some(())
    });
    assert_eq!(
        processes_with_arg(&s.config),
        Vec::<i32>::new(),
        "processes left running with this config"
    );
    assert!(!s.pid_file.exists(), "pid_file must be removed on stop");
    assert!(
        listening(s.port).is_empty(),
        "socket {listener:?} still listening"
    );
    assert!(refuses(s.port));
    // The idle connection was closed cleanly.
    let mut buf = [0u8; 16];
    assert!(
        matches!(idle.read(&mut buf), Ok(0)),
        "idle connection not closed cleanly"
    );
    let log = s.error_log();
    assert!(
        log.contains(&format!("master {third}: exiting")),
        "the last master's log:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Socket activation (systemd-socket-activate)
// ---------------------------------------------------------------------------------------

/// Sends a GET on a connection made while only systemd-socket-activate listened; it is the
/// connection that makes the tool execute srvd.
fn connect_before_srvd(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(addr(port)).expect("connect to the activation socket");
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    c
}

fn answered(c: &mut TcpStream) -> Response {
    let r = Response::parse(&read_to_close(c)).expect("a response");
    assert_eq!((r.status, r.body.as_slice()), (200, b"hello\n".as_slice()));
    r
}

/// srvd started by `systemd-socket-activate` serves on the socket it was given (the
/// connection that started it is answered), says where the socket came from, and an
/// upgrade keeps that very socket.
#[test]
fn socket_activation_serves_the_passed_socket_and_upgrades_on_it() {
    let test = "socket_activation_serves_the_passed_socket_and_upgrades_on_it";
    let Some(tool) = socket_activate_tool(test) else {
        return;
    };
    let mut s = Server::prepare("activate", "");
    let port = s.port;
    let passed = s.start_activated(&tool, port);
    let mut early = connect_before_srvd(port);
    answered(&mut early);
    let master = s.wait_serving(port);
    assert_eq!(
        master,
        s.child_pid(),
        "the tool executes srvd in its own process"
    );
    assert_eq!(
        exe_of(master),
        std::fs::canonicalize(&s.exe).unwrap().display().to_string()
    );
    let log = s.error_log();
    assert!(
        log.contains(&format!(
            "master {master}: listener 127.0.0.1:{port} received from systemd"
        )),
        "{log}"
    );
    assert!(!log.contains("not in the config"), "{log}");
    assert_eq!(
        s.the_listener().inode,
        passed.inode,
        "srvd bound its own socket"
    );
    assert!(socket_inodes_of(master).contains(&passed.inode));

    let new = s.expect_good_upgrade(port);
    assert_eq!(s.wait_child_exit(), Some(0));
    assert_eq!(s.the_listener().inode, passed.inode);
    assert!(serves(port));
    // The new master was given no LISTEN_FDS of its own (they were for the first one).
    assert!(
        s.error_log().contains(&format!(
            "master {new}: listener 127.0.0.1:{port} received from the previous master"
        )),
        "{}",
        s.error_log()
    );
}

/// A passed socket that the config does not name (srvd binds its own address and logs
/// that the received one is unused) is kept open: the connection waiting on it is
/// answered once a reload names its address, which then serves on the received socket.
#[test]
fn socket_activation_unused_socket_serves_after_a_reload() {
    let test = "socket_activation_unused_socket_serves_after_a_reload";
    let Some(tool) = socket_activate_tool(test) else {
        return;
    };
    let mut s = Server::prepare("activate-unused", "");
    unused_socket_then_reload(&mut s, &tool, false);
}

/// As above with an upgrade in between: the unused received socket is passed on to the
/// new master, which keeps it for the reload.
#[test]
fn socket_activation_unused_socket_survives_an_upgrade() {
    let test = "socket_activation_unused_socket_survives_an_upgrade";
    let Some(tool) = socket_activate_tool(test) else {
        return;
    };
    let mut s = Server::prepare("activate-unused-upgrade", "");
    unused_socket_then_reload(&mut s, &tool, true);
}

fn unused_socket_then_reload(s: &mut Server, tool: &Path, upgrade_first: bool) {
    let own = s.port;
    let passed_port = free_port();
    let passed = s.start_activated(tool, passed_port);
    let mut early = connect_before_srvd(passed_port);
    let mut master = s.wait_serving(own);
    let line = format!(
        "received listener 127.0.0.1:{passed_port} is not in the config \
         (listen = 127.0.0.1:{own}): kept open, unused"
    );
    assert!(
        s.error_log().contains(&format!("master {master}: {line}")),
        "{}",
        s.error_log()
    );
    // Still the tool's socket, held by the master, its one connection waiting.
    assert!(socket_inodes_of(master).contains(&passed.inode));
    assert_eq!(
        the_listener(passed_port),
        ListenSocket {
            inode: passed.inode,
            queued: 1
        },
        "the early connection should wait in the passed socket's queue"
    );
    if upgrade_first {
        master = s.expect_good_upgrade(own);
        assert_eq!(s.wait_child_exit(), Some(0));
        assert!(
            s.error_log().contains(&format!("master {master}: {line}")),
            "the new master should keep the unused socket too:\n{}",
            s.error_log()
        );
        assert!(
            socket_inodes_of(master).contains(&passed.inode),
            "the unused socket was not passed on: {:?}",
            fds_of(master)
        );
        assert_eq!(the_listener(passed_port).inode, passed.inode);
    }

    s.write_config(passed_port, "");
    let run = s.reload();
    assert_eq!(run.code, Some(0), "{run:?}\n{}", s.error_log());
    assert!(run.stdout.starts_with("reloaded"), "{run:?}");
    answered(&mut early);
    assert!(serves(passed_port));
    assert_eq!(
        the_listener(passed_port).inode,
        passed.inode,
        "the reload bound the address again instead of using the received socket"
    );
    // Once the old generation has drained, every worker serves on the received socket.
    wait_for("the workers on the received socket", || {
        let w = children_of(master);
        (w.len() == WORKERS
            && w.iter()
                .all(|&p| worker_ready(p) && socket_inodes_of(p).contains(&passed.inode)))
        .then_some(())
    });
    // The address srvd bound itself is closed once its workers are gone.
    wait_for("the previous address to close", || {
        refuses(own).then_some(())
    });
    assert_eq!(s.master(), Some(master));
}

// ---------------------------------------------------------------------------------------
// 6. The shipped socket unit
// ---------------------------------------------------------------------------------------

/// `systemd-analyze verify` of systemd/srvd.socket, next to srvd.service (its `Exec*=`
/// paths rewritten to the binary under test, as verify checks that they exist), is clean.
#[test]
fn socket_unit_verifies_cleanly() {
    let test = "socket_unit_verifies_cleanly";
    let Some(analyze) = systemd_tool(test, "systemd-analyze") else {
        return;
    };
    let dir = temp_dir("socket-unit");
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = std::fs::read_to_string(units.join("srvd.service")).unwrap();
    assert!(service.contains("/usr/local/bin/srvd"));
    std::fs::write(
        dir.join("srvd.service"),
        service.replace("/usr/local/bin/srvd", bin().to_str().unwrap()),
    )
    .unwrap();
    std::fs::copy(units.join("srvd.socket"), dir.join("srvd.socket")).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.join("srvd.socket"))
        .arg(dir.join("srvd.service"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "systemd-analyze verify srvd.socket srvd.service:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
