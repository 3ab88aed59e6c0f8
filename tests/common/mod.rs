//! Black-box harness: every test starts the real `srvd` binary with its own config and
//! docroot in a fresh directory, talks raw bytes over loopback, and reads /proc.
//!
//! - [`Srvd::start`] writes the config (a free port is chosen), spawns
//!   `srvd --config …` with stderr (the error log) and stdout (the access log) going to
//!   files, and waits until every worker serves.
//! - [`Srvd::raw`] sends bytes and reads until the server closes or a timeout.
//! - [`Srvd::workers`] lists the master's children from /proc.
//! - `Drop` sends SIGTERM, waits with a deadline, then SIGKILLs, prints the logs when the
//!   test is failing, and asserts the error log shows no panic and no worker killed by a
//!   signal (nginx-tests' `unlike($t->read_file('error.log'), …)`).
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Longest any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_srvd"))
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("srvd-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nobody listens on right now (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running srvd.
pub struct Srvd {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub workers_expected: usize,
}

impl Srvd {
    /// A directory with `root/` (index.html = "hello\n") and a config whose `port`, `bind`,
    /// `root` and `workers` (2) keys are set, followed by `extra` TOML lines. Not started.
    pub fn prepare(name: &str, extra: &str) -> Srvd {
        Self::prepare_with_workers(name, extra, 2)
    }

    pub fn prepare_with_workers(name: &str, extra: &str, workers: usize) -> Srvd {
        let dir = temp_dir(name);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "hello\n").unwrap();
        let port = free_port();
        let config_path = dir.join("srvd.toml");
        let mut s = Srvd {
            dir,
            root,
            config_path,
            port,
            child: None,
            workers_expected: workers,
        };
        s.write_config(extra);
        s
    }

    /// Rewrites the config with the same port and root and these extra lines.
    pub fn write_config(&mut self, extra: &str) {
        let text = format!(
            "port = {}\nbind = \"127.0.0.1\"\nworkers = {}\nroot = \"root\"\n{extra}\n",
            self.port, self.workers_expected
        );
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Starts it and waits until it accepts connections and all workers exist.
    pub fn start_prepared(self) -> Srvd {
        let s = self.start_unready();
        // connect() succeeds as soon as the master listens (the kernel queues the
        // connection); a worker serves only once its listener is in its epoll set, so wait
        // for that too, or a test could act on a server whose workers are still starting.
        wait_for("every worker to serve", || {
            s.workers().iter().all(|&p| worker_ready(p)).then_some(())
        });
        s
    }

    /// Spawns srvd and waits only until it accepts connections and all workers exist
    /// (for tests that hold workers inside their start-up on purpose).
    pub fn start_unready(mut self) -> Srvd {
        let stderr = std::fs::File::create(self.dir.join("error.log")).unwrap();
        let stdout = std::fs::File::create(self.dir.join("access.log")).unwrap();
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn srvd");
        self.child = Some(child);
        let n = self.workers_expected;
        wait_for("srvd to accept connections", || {
            (TcpStream::connect(self.addr()).is_ok() && self.workers().len() == n).then_some(())
        });
        self
    }

    /// `prepare` + `start_prepared`.
    pub fn start(name: &str, extra: &str) -> Srvd {
        Self::prepare(name, extra).start_prepared()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("started").id() as i32)
    }

    /// Writes a file below the root (creating directories).
    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A connected socket with 5 s read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends `req` and reads until the server closes the connection (or 5 s pass).
    pub fn raw(&self, req: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(req).unwrap();
        read_to_close(&mut s)
    }

    /// Sends one request with `Connection: close` and parses the response.
    pub fn get(&self, path: &str) -> Response {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        Response::parse(&self.raw(req.as_bytes())).expect("a response")
    }

    /// Sends a request made of `head` lines (without the final empty line).
    pub fn request(&self, head: &str) -> Response {
        let req = format!("{head}\r\n\r\n");
        Response::parse(&self.raw(req.as_bytes())).expect("a response")
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal master");
    }

    /// PIDs of the master's children, from /proc.
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.pid().as_raw())
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits for the master to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("started");
        let status = wait_for("srvd to exit", || child.try_wait().unwrap());
        status.code()
    }

    /// Stops it (SIGTERM, then SIGKILL after the deadline) and checks the error log.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Srvd {
    fn drop(&mut self) {
        self.stop();
        let log = self.error_log();
        if std::thread::panicking() {
            eprintln!("--- srvd error log ({}) ---\n{log}", self.dir.display());
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

/// Reads until EOF, error or timeout.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Children of `pid` according to /proc (all threads' children lists).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort();
    out
}

/// What /proc/PID/fd points at, one string per fd ("socket:[123]", "/path", "pipe:[4]").
pub fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in entries.flatten() {
            let fd = e.file_name().to_string_lossy().parse().unwrap_or(-1);
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((fd, target));
        }
    }
    out.sort();
    out
}

/// True while /proc/PID exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A parsed HTTP/1.1 response (one; `rest` holds any bytes after its body).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub rest: Vec<u8>,
}

impl Response {
    /// Parses one response from `bytes`, using Content-Length (absent: no body, as for
    /// srvd every response has one).
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        Self::parse_with(bytes, false)
    }

    /// As `parse`; `head_request` means no body follows whatever Content-Length says.
    pub fn parse_with(bytes: &[u8], head_request: bool) -> Option<Response> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let len: usize = if head_request || status == 304 || status == 204 {
            0
        } else {
            headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        let body = bytes.get(end..end + len)?.to_vec();
        let rest = bytes[end + len..].to_vec();
        Some(Response {
            status,
            headers,
            body,
            rest,
        })
    }

    /// Parses every response in `bytes` in order (pipelining).
    pub fn parse_all(mut bytes: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        while let Some(r) = Response::parse(bytes) {
            let consumed = bytes.len() - r.rest.len();
            out.push(r);
            bytes = &bytes[consumed..];
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads exactly one response from a kept-alive connection (head, then Content-Length).
pub fn read_response(s: &mut TcpStream, head_request: bool) -> Option<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(r) = Response::parse_with(&buf, head_request) {
            return Some(r);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

impl Srvd {
    /// As [`Srvd::start_prepared`], with extra environment variables for the master (for
    /// example `NOTIFY_SOCKET`).
    pub fn start_prepared_env(mut self, env: &[(&str, &str)]) -> Srvd {
        let stderr = std::fs::File::create(self.dir.join("error.log")).unwrap();
        let stdout = std::fs::File::create(self.dir.join("access.log")).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn srvd"));
        let n = self.workers_expected;
        // connect() succeeds as soon as the master listens (the kernel queues the
        // connection); a worker serves only once its listener is in its epoll set, so wait
        // for that too, or a test could act on a server whose workers are still starting.
        wait_for("srvd to serve", || {
            let workers = self.workers();
            (TcpStream::connect(self.addr()).is_ok()
                && workers.len() == n
                && workers.iter().all(|&p| worker_ready(p)))
            .then_some(())
        });
        self
    }

    /// Removes the error-log lines reporting that worker `pid` died on a signal, for tests
    /// that kill a worker on purpose (`Drop` rejects such lines otherwise). Call after
    /// [`Srvd::stop`], when nothing writes the log any more.
    pub fn forgive_signal_death(&self, pid: i32) {
        let path = self.dir.join("error.log");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let needle = format!("worker {pid} exited on signal");
        let kept: String = log
            .lines()
            .filter(|l| !l.contains(&needle))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
    }
}

// ---- Added for the foundation tests (static_files, protocol, security, process) ----

/// What a short-lived `srvd` invocation (`--check`, `--version`, a failing start) did.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `srvd args…` with `dir` as its working directory and waits for it to exit
/// (killing it and failing the test after the deadline).
pub fn run_cli(dir: &Path, args: &[&str]) -> CliRun {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = dir.join(format!("cli-{n}.stdout"));
    let err_path = dir.join(format!("cli-{n}.stderr"));
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn srvd");
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("srvd {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliRun {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Reads until the server closes the connection: `Some(bytes)` on EOF, `None` when the
/// socket's read timeout (or an error) came first, i.e. the server kept it open.
pub fn read_until_eof(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The status line of a raw response (without CRLF).
pub fn status_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n").next().unwrap_or("").to_string()
}

/// A row of /proc/net/tcp (IPv4) or /proc/net/tcp6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    pub port: u16,
    /// The kernel's state code: "0A" LISTEN, "01" ESTABLISHED.
    pub state: [u8; 2],
    /// For a listening socket: connections waiting in its accept queue.
    pub rx_queue: u64,
    /// 0 for a connection not accepted yet.
    pub inode: u64,
}

/// Every socket of /proc/net/tcp (and /proc/net/tcp6 when `v6`).
pub fn tcp_table(v6: bool) -> Vec<TcpRow> {
    let mut out = Vec::new();
    let tables: &[&str] = if v6 {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    } else {
        &["/proc/net/tcp"]
    };
    for table in tables {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3].len() != 2 {
                continue;
            }
            let Some(port) = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            let rx_queue = f[4]
                .split(':')
                .nth(1)
                .and_then(|q| u64::from_str_radix(q, 16).ok())
                .unwrap_or(0);
            let state = [f[3].as_bytes()[0], f[3].as_bytes()[1]];
            let inode = f[9].parse::<u64>().unwrap_or(0);
            out.push(TcpRow {
                port,
                state,
                rx_queue,
                inode,
            });
        }
    }
    out
}

/// Inodes of the server-side ends of ESTABLISHED IPv4 connections to local `port`, from
/// /proc/net/tcp (0 = not yet accepted, left out).
pub fn established_server_inodes(port: u16) -> Vec<u64> {
    let mut out: Vec<u64> = tcp_table(false)
        .into_iter()
        .filter(|r| r.state == *b"01" && r.port == port && r.inode != 0)
        .map(|r| r.inode)
        .collect();
    out.sort();
    out
}

/// Inodes of the sockets `pid` holds open (from /proc/PID/fd "socket:[N]").
pub fn socket_inodes_of(pid: i32) -> Vec<u64> {
    fds_of(pid)
        .into_iter()
        .filter_map(|(_, target)| {
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

impl Srvd {
    /// For tests that deliberately provoke an error-log line `Drop` would reject (e.g.
    /// "exited on signal" after killing a worker): stops the server, asserts the log holds
    /// a line containing `fragment`, and removes exactly those lines so the remaining
    /// checks in `Drop` still apply to everything else.
    pub fn stop_expecting_log_line(&mut self, fragment: &str) {
        self.stop();
        let log = self.error_log();
        assert!(
            log.lines().any(|l| l.contains(fragment)),
            "expected a line containing {fragment:?} in the error log:\n{log}"
        );
        let kept: String = log
            .lines()
            .filter(|l| !l.contains(fragment))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(self.dir.join("error.log"), kept).unwrap();
    }
}

/// True once worker `pid` has finished starting: its epoll instance watches at least two
/// fds (its signal pipe, registered after its signal handlers, and the listener). Before
/// that a stop signal sent to it can be lost (see `sigterm_during_worker_start_is_not_lost`
/// in tests/foundation_process.rs), so lifecycle tests wait for this.
pub fn worker_ready(pid: i32) -> bool {
    fds_of(pid).iter().any(|(fd, target)| {
        target == "anon_inode:[eventpoll]"
            && std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .map(|info| info.lines().filter(|l| l.starts_with("tfd:")).count() >= 2)
                .unwrap_or(false)
    })
}

impl Srvd {
    /// Waits until there are `workers_expected` workers and every one of them has finished
    /// starting ([`worker_ready`]).
    pub fn wait_workers_ready(&self) {
        let n = self.workers_expected;
        wait_for("every worker to finish starting", || {
            let w = self.workers();
            (w.len() == n && w.iter().all(|&p| worker_ready(p))).then_some(())
        });
    }

    /// `start` + [`Srvd::wait_workers_ready`].
    pub fn start_ready(name: &str, extra: &str) -> Srvd {
        let s = Self::start(name, extra);
        s.wait_workers_ready();
        s
    }
}

/// Deterministic pseudo-random bytes (xorshift from `seed`), so a corrupted or truncated
/// download shows in a checksum.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
