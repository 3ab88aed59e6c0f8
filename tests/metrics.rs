//! Black-box tests of the admin listener (`[admin]`): `/health`, `/metrics` and
//! `srvd status`, driving the real binary.
//!
//! Counters move when a response is complete, a moment after its last byte left, so every
//! expectation on them is polled for with a deadline ([`wait_for`]); none is a fixed
//! sleep. Each test asserts exact figures: once they are reached, the test checks they do
//! not move further (no double counting).

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One sample of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition strictly: every line is `# HELP name text`, `# TYPE name kind`, or
/// `name{label="value",...} value`; every sample's family has HELP and TYPE lines before it.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (-?[0-9.e+]+|[+-]Inf|NaN)$"#,
    )
    .unwrap();
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut helped = Vec::new();
    let mut typed = Vec::new();
    let mut out = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty());
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(
                kind != "counter" || name.ends_with("_total"),
                "counter {name} should end in _total"
            );
            typed.push(name.to_owned());
        } else {
            let c = sample
                .captures(line)
                .unwrap_or_else(|| panic!("not a comment or a sample: {line:?}"));
            let name = c[1].to_owned();
            assert!(helped.contains(&name), "no # HELP before {line}");
            assert!(typed.contains(&name), "no # TYPE before {line}");
            let labels = c
                .get(2)
                .map(|l| {
                    label
                        .captures_iter(l.as_str())
                        .map(|m| (m[1].to_owned(), m[2].to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Sample {
                name,
                labels,
                value: c[3].parse().unwrap(),
            });
        }
    }
    out
}

/// The value of the series `name{labels}` (labels given must match; others may exist).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Where the admin listener is.
#[derive(Clone)]
enum Admin {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl Admin {
    /// A free port below the kernel's ephemeral range (32768 and up by default), so that
    /// no client socket of a concurrent test can be holding it when srvd binds it.
    fn tcp() -> Admin {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let base = 20_000 + (std::process::id() % 500) as u16 * 20;
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let addr = SocketAddr::from(([127, 0, 0, 1], base + n % 10_000));
            if std::net::TcpListener::bind(addr).is_ok() {
                return Admin::Tcp(addr);
            }
        }
    }

    fn config(&self) -> String {
        match self {
            Admin::Tcp(a) => format!("[admin]\nlisten = \"{a}\"\n"),
            Admin::Unix(p) => format!("[admin]\nlisten = \"unix:{}\"\n", p.display()),
        }
    }

    /// Sends `raw` and reads until the close.
    fn raw(&self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Admin::Tcp(a) => {
                let mut s = TcpStream::connect(a)?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(raw)?;
                s.read_to_end(&mut out)?;
            }
            Admin::Unix(p) => {
                let mut s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(raw)?;
                s.read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }

    fn request(&self, method: &str, path: &str) -> Response {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let bytes = self.raw(req.as_bytes()).expect("admin answers");
        Response::parse_with(&bytes, method == "HEAD").expect("an admin response")
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path)
    }

    fn scrape(&self) -> Vec<Sample> {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        parse_exposition(&r.body_str())
    }
}

/// The requests counter of `site` and `class`.
fn requests(samples: &[Sample], site: &str, class: &str) -> f64 {
    value(
        samples,
        "srvd_requests_total",
        &[("site", site), ("class", class)],
    )
    .unwrap_or_else(|| panic!("no srvd_requests_total{{site={site:?},class={class:?}}}"))
}

/// Waits until `check` holds for a scrape; returns that scrape. On timeout, the failure
/// shows the last scrape's figures that are not zero.
fn wait_scrape(admin: &Admin, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let samples = admin.scrape();
        if check(&samples) {
            return samples;
        }
        if std::time::Instant::now() >= end {
            let moved: Vec<String> = samples
                .iter()
                .filter(|s| s.value != 0.0)
                .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                .collect();
            panic!(
                "timed out waiting for {what}; last scrape:\n{}",
                moved.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one request on a fresh connection and reads the whole answer (the server closes:
/// `Connection: close`). Returns the raw bytes.
fn fetch(s: &Srvd, host: &str, path: &str) -> Vec<u8> {
    s.raw(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
}

fn status_of(raw: &[u8]) -> u16 {
    Response::parse(raw).expect("a response").status
}

fn start_with_admin(name: &str, admin: &Admin, extra: &str) -> Srvd {
    Srvd::start(name, &format!("{extra}\n{}", admin.config()))
}

/// Connections to local `port` that wait in its accept queue: server-side sockets with no
/// inode yet (/proc/net/tcp), established or already closed by the client.
fn queued_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9
                && f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
                && ["01", "03", "08"].contains(&f[3])
                && f[9] == "0"
        })
        .count()
}

/// Connections accepted so far, once every one of them has been accepted and has ended.
/// The harness connects to the sites' port to see that srvd is up, so a fresh server has
/// one or more already (possibly still queued when the harness returns).
fn settled_connections(s: &Srvd, admin: &Admin) -> f64 {
    wait_for("the connections so far to end", || {
        if queued_on(s.port) > 0 {
            return None;
        }
        let m = admin.scrape();
        let accepted = value(&m, "srvd_connections_accepted_total", &[])?;
        (accepted >= 1.0 && value(&m, "srvd_connections_handled_total", &[]) == Some(accepted))
            .then_some(accepted)
    })
}

#[test]
fn health_answers_ok_then_503_while_a_graceful_stop_drains() {
    let admin = Admin::tcp();
    let mut s = start_with_admin("health-drain", &admin, "");
    let r = admin.get("/health");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok\n"));
    assert_eq!(r.header("connection"), Some("close"));
    let head = admin.request("HEAD", "/health");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3"));
    assert!(head.body.is_empty());

    // A download the client does not read keeps the drain going.
    let data = noise(64 << 20, 7);
    s.file("big.bin", &data);
    let mut c = s.connect();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 65536];
    let n = c.read(&mut got).unwrap();
    got.truncate(n);
    s.signal(Signal::SIGTERM);
    let r = wait_for("/health to say the server is stopping", || {
        let r = admin.get("/health");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.body_str(), "stopping\n");
    // The sites' listener is closed, the admin one still answers, metrics included.
    wait_for("the sites' port to refuse", || {
        matches!(TcpStream::connect(s.addr()), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
            .then_some(())
    });
    assert_eq!(admin.get("/health").status, 503);
    assert_eq!(admin.request("HEAD", "/health").status, 503);
    assert!(value(&admin.scrape(), "srvd_generation", &[]).is_some());
    assert!(s.child.as_mut().unwrap().try_wait().unwrap().is_none());

    // The download completes; then the master exits and the admin port goes with it.
    c.read_to_end(&mut got).unwrap();
    let r = Response::parse(&got).expect("the whole download");
    assert_eq!(r.body.len(), data.len());
    assert_eq!(s.wait_exit(), Some(0));
    let Admin::Tcp(a) = admin else { unreachable!() };
    assert!(TcpStream::connect(a).is_err());
}

#[test]
fn counts_are_exact_per_site_and_class_and_admin_requests_are_not_counted() {
    let admin = Admin::tcp();
    let s = start_with_admin(
        "counts",
        &admin,
        "[log]\naccess = \"off\"\n\
         [[site]]\nhosts = [\"b.test\"]\n\
         [[site.redirect]]\nfrom = \"/old\"\nto = \"/new\"\nstatus = 301\n",
    );
    // Before any request: every fixed series is there, at 0.
    let zero = admin.scrape();
    for site in ["default", "b.test"] {
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            assert_eq!(requests(&zero, site, class), 0.0);
        }
    }
    for (name, labels) in [
        ("srvd_sent_bytes_total", vec![]),
        ("srvd_connections", vec![("state", "reading")]),
        ("srvd_connections", vec![("state", "writing")]),
        ("srvd_connections", vec![("state", "idle")]),
        ("srvd_cache_hits_total", vec![]),
        ("srvd_cache_misses_total", vec![]),
        ("srvd_timeouts_total", vec![("kind", "header")]),
        ("srvd_timeouts_total", vec![("kind", "keepalive")]),
        ("srvd_timeouts_total", vec![("kind", "send")]),
        ("srvd_timeouts_total", vec![("kind", "upstream_read")]),
        ("srvd_worker_restarts_total", vec![]),
        ("srvd_reloads_total", vec![("result", "ok")]),
        ("srvd_reloads_total", vec![("result", "failed")]),
    ] {
        assert_eq!(value(&zero, name, &labels), Some(0.0), "{name} {labels:?}");
    }
    assert_eq!(value(&zero, "srvd_generation", &[]), Some(1.0));
    let start = value(&zero, "srvd_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now && start > now - 60.0,
        "start {start}, now {now}"
    );
    let probes = settled_connections(&s, &admin);

    // Known answers: default 3×200 + 1×404; b.test 2×301 + 1×200 + 1×404.
    let mut received = 0;
    let mut connections = 0;
    let mut expect = |raw: Vec<u8>, status: u16| {
        assert_eq!(status_of(&raw), status);
        received += raw.len();
        connections += 1;
    };
    for _ in 0..3 {
        expect(fetch(&s, "localhost", "/"), 200);
    }
    expect(fetch(&s, "localhost", "/missing"), 404);
    expect(fetch(&s, "b.test", "/old"), 301);
    expect(fetch(&s, "b.test", "/old"), 301);
    expect(fetch(&s, "B.Test.", "/"), 200);
    expect(fetch(&s, "b.test", "/nope"), 404);
    // Two more requests on one keep-alive connection (one accepted connection).
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\nGET /index.html HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let both = read_to_close(&mut c);
    assert_eq!(Response::parse_all(&both).len(), 2);
    received += both.len();
    connections += 1;
    let (received, connections) = (received as f64, probes + connections as f64);

    let what = format!("the counts ({connections} connections)");
    let samples = wait_scrape(&admin, &what, |m| {
        requests(m, "default", "2xx") == 3.0
            && requests(m, "b.test", "2xx") == 3.0
            && value(m, "srvd_connections_handled_total", &[]) == Some(connections)
    });
    assert_eq!(requests(&samples, "default", "3xx"), 0.0);
    assert_eq!(requests(&samples, "default", "4xx"), 1.0);
    assert_eq!(requests(&samples, "default", "5xx"), 0.0);
    assert_eq!(requests(&samples, "b.test", "3xx"), 2.0);
    assert_eq!(requests(&samples, "b.test", "4xx"), 1.0);
    assert_eq!(requests(&samples, "b.test", "5xx"), 0.0);
    // The Host header never becomes a label.
    assert!(samples.iter().all(|x| x
        .labels
        .get("site")
        .is_none_or(|s| s == "default" || s == "b.test")));
    assert_eq!(
        value(&samples, "srvd_sent_bytes_total", &[]),
        Some(received),
        "every byte the clients received, heads included"
    );
    assert_eq!(
        value(&samples, "srvd_connections_accepted_total", &[]),
        Some(connections)
    );

    // Admin requests, answered or not, count nowhere.
    for path in ["/health", "/metrics", "/other"] {
        admin.get(path);
        admin.request("HEAD", path);
    }
    admin.request("POST", "/metrics");
    let after = admin.scrape();
    for s in samples
        .iter()
        .filter(|s| s.name != "srvd_start_time_seconds" && s.name != "srvd_connections")
    {
        assert_eq!(
            value(
                &after,
                &s.name,
                &s.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>()
            ),
            Some(s.value),
            "{} {:?} moved",
            s.name,
            s.labels
        );
    }
}

#[test]
fn admin_paths_and_methods() {
    let admin = Admin::tcp();
    let _s = start_with_admin("admin-paths", &admin, "");
    assert_eq!(admin.get("/").status, 404);
    assert_eq!(admin.get("/metrics/x").status, 404);
    assert_eq!(admin.get("/health?verbose=1").status, 200);
    let head = admin.request("HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = admin.request(method, "/health");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // A client that sends nothing holds no one up: others are answered meanwhile, and it
    // is closed after the admin deadline.
    let Admin::Tcp(a) = &admin else {
        unreachable!()
    };
    let mut idle = TcpStream::connect(a).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(admin.get("/health").status, 200);
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0)));
    assert!(t0.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_second_request_for_a_file_is_a_cache_hit() {
    let admin = Admin::tcp();
    let s = Srvd::prepare_with_workers("cache", &admin.config(), 1).start_prepared();
    s.file("f.txt", "cached\n");
    assert_eq!(s.get("/f.txt").status, 200);
    let m = wait_scrape(&admin, "one miss", |m| {
        value(m, "srvd_cache_misses_total", &[]) == Some(1.0)
    });
    assert_eq!(value(&m, "srvd_cache_hits_total", &[]), Some(0.0));
    assert_eq!(s.get("/f.txt").body_str(), "cached\n");
    let m = wait_scrape(&admin, "one hit", |m| {
        value(m, "srvd_cache_hits_total", &[]) == Some(1.0)
    });
    assert_eq!(value(&m, "srvd_cache_misses_total", &[]), Some(1.0));
}

#[test]
fn a_killed_worker_keeps_its_counts_and_counts_a_restart() {
    let admin = Admin::tcp();
    let mut s = Srvd::prepare_with_workers("restart", &admin.config(), 1).start_prepared();
    for _ in 0..5 {
        assert_eq!(s.get("/").status, 200);
    }
    let accepted = settled_connections(&s, &admin);
    let before = wait_scrape(&admin, "5 requests", |m| {
        requests(m, "default", "2xx") == 5.0
    });
    let sent = value(&before, "srvd_sent_bytes_total", &[]).unwrap();
    assert!(sent > 0.0);
    let victim = s.workers()[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_for("a replacement worker", || {
        let w = s.workers();
        (w.len() == 1 && w[0] != victim && worker_ready(w[0])).then_some(())
    });
    let after = wait_scrape(&admin, "the restart to be counted", |m| {
        value(m, "srvd_worker_restarts_total", &[]) == Some(1.0)
    });
    assert_eq!(requests(&after, "default", "2xx"), 5.0);
    assert_eq!(value(&after, "srvd_sent_bytes_total", &[]), Some(sent));
    assert_eq!(
        value(&after, "srvd_connections_accepted_total", &[]),
        Some(accepted)
    );
    wait_for("/health to be ok again", || {
        (admin.get("/health").status == 200).then_some(())
    });
    assert_eq!(s.get("/").status, 200);
    wait_scrape(&admin, "the new worker's request on top", |m| {
        requests(m, "default", "2xx") == 6.0
    });
    s.stop();
    s.forgive_signal_death(victim);
}

#[test]
fn reloads_are_counted_and_retired_workers_keep_their_counts() {
    let admin = Admin::tcp();
    let mut s = start_with_admin("reloads", &admin, "");
    for _ in 0..3 {
        assert_eq!(s.get("/").status, 200);
    }
    wait_scrape(&admin, "3 requests", |m| {
        requests(m, "default", "2xx") == 3.0
    });
    let old = s.workers();

    // A good reload that adds a site: generation 2, ok 1; the old workers' counts stay.
    s.write_config(&format!(
        "[log]\naccess = \"off\"\n{}[[site]]\nhosts = [\"new.test\"]\n",
        admin.config()
    ));
    s.signal(Signal::SIGHUP);
    let m = wait_scrape(&admin, "the reload", |m| {
        value(m, "srvd_reloads_total", &[("result", "ok")]) == Some(1.0)
    });
    assert_eq!(value(&m, "srvd_generation", &[]), Some(2.0));
    wait_for("the old generation to leave", || {
        old.iter().all(|&p| !alive(p)).then_some(())
    });
    let m = wait_scrape(&admin, "the old workers to be reaped", |m| {
        requests(m, "new.test", "2xx") == 0.0
    });
    assert_eq!(requests(&m, "default", "2xx"), 3.0);
    assert_eq!(value(&m, "srvd_worker_restarts_total", &[]), Some(0.0));
    assert_eq!(status_of(&fetch(&s, "new.test", "/")), 200);
    wait_scrape(&admin, "the new site's request", |m| {
        requests(m, "new.test", "2xx") == 1.0 && requests(m, "default", "2xx") == 3.0
    });

    // A rejected reload: failed 1, generation unchanged, nothing else moves.
    std::fs::write(&s.config_path, "this is not toml").unwrap();
    s.signal(Signal::SIGHUP);
    let m = wait_scrape(&admin, "the failed reload", |m| {
        value(m, "srvd_reloads_total", &[("result", "failed")]) == Some(1.0)
    });
    assert_eq!(
        value(&m, "srvd_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "srvd_generation", &[]), Some(2.0));
    assert_eq!(admin.get("/health").status, 200);
    s.stop();
}

#[test]
fn a_reload_can_move_the_admin_listener() {
    let admin = Admin::tcp();
    let mut s = start_with_admin("admin-move", &admin, "");
    let moved = Admin::tcp();
    s.write_config(&moved.config());
    s.signal(Signal::SIGHUP);
    wait_for("the new admin address", || {
        moved
            .raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()
            .filter(|r| status_line(r) == "HTTP/1.1 200 OK")
    });
    let Admin::Tcp(old) = admin else {
        unreachable!()
    };
    wait_for("the old admin address to close", || {
        TcpStream::connect(old).is_err().then_some(())
    });
    assert_eq!(
        value(&moved.scrape(), "srvd_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    // Removing [admin] closes it.
    s.write_config("");
    s.signal(Signal::SIGHUP);
    let Admin::Tcp(moved_addr) = moved else {
        unreachable!()
    };
    wait_for("the admin listener to close", || {
        TcpStream::connect(moved_addr).is_err().then_some(())
    });
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn admin_on_a_unix_socket() {
    let dir = temp_dir("admin-unix-sock");
    let path = dir.join("admin.sock");
    let admin = Admin::Unix(path.clone());
    let mut s = start_with_admin("admin-unix", &admin, "");
    let r = admin.get("/health");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok\n"));
    assert_eq!(s.get("/").status, 200);
    wait_scrape(&admin, "the request", |m| {
        requests(m, "default", "2xx") == 1.0
    });
    assert_eq!(admin.get("/nope").status, 404);
    assert_eq!(admin.request("POST", "/health").status, 405);
    s.stop();
    assert!(!path.exists(), "the socket file is removed at exit");

    // A stale socket file left behind (nobody listening) is replaced at start.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let s2 = start_with_admin("admin-unix-stale", &admin, "");
    assert_eq!(admin.get("/health").status, 200);
    drop(s2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_in_a_site_is_an_error_at_the_key() {
    let dir = temp_dir("admin-in-site");
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let config = dir.join("srvd.toml");
    std::fs::write(
        &config,
        "root = \"root\"\n[[site]]\nhosts = [\"a.test\"]\n[site.admin]\nlisten = \"127.0.0.1:9180\"\n",
    )
    .unwrap();
    let run = run_cli(&dir, &["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        format!(
            "{}:4:7: admin is process-wide: set it at the top level, not in a [[site]]",
            config.display()
        )
    );
    std::fs::write(
        &config,
        "root = \"root\"\n[[site]]\nhosts = [\"a.test\"]\nadmin = { listen = \"127.0.0.1:9180\" }\n",
    )
    .unwrap();
    let run = run_cli(&dir, &["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with(&format!("{}:4:1: admin is process-wide", config.display())),
        "{run:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn status_prints_the_figures() {
    let admin = Admin::tcp();
    let s = start_with_admin(
        "status",
        &admin,
        "[log]\naccess = \"off\"\n[[site]]\nhosts = [\"docs.test\"]\n",
    );
    assert_eq!(status_of(&fetch(&s, "localhost", "/")), 200);
    assert_eq!(status_of(&fetch(&s, "docs.test", "/")), 200);
    assert_eq!(status_of(&fetch(&s, "docs.test", "/missing")), 404);
    wait_scrape(&admin, "3 requests", |m| {
        requests(m, "docs.test", "4xx") == 1.0
            && requests(m, "docs.test", "2xx") == 1.0
            && requests(m, "default", "2xx") == 1.0
    });
    let accepted = settled_connections(&s, &admin);
    let config = s.config_path.to_str().unwrap();
    let run = run_cli(&s.dir, &["status", "--config", config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let out = run.stdout;
    let Admin::Tcp(a) = admin else { unreachable!() };
    for want in [
        format!("admin            {a}\n"),
        "generation       1\n".to_owned(),
        "requests         3  (2xx 2, 3xx 0, 4xx 1, 5xx 0)\n".to_owned(),
        "worker restarts  0\n".to_owned(),
        "reloads          ok 0, failed 0\n".to_owned(),
        format!("(accepted {accepted}, handled {accepted})"),
    ] {
        assert!(out.contains(&want), "{want:?} not in:\n{out}");
    }
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("site "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["site", "requests", "2xx", "3xx", "4xx", "5xx"],
            vec!["default", "1", "1", "0", "0", "0"],
            vec!["docs.test", "2", "1", "0", "1", "0"],
        ],
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("uptime ")));
}

#[test]
fn status_without_admin_says_to_configure_one() {
    let s = Srvd::start("status-none", "");
    let config = s.config_path.to_str().unwrap();
    let run = run_cli(&s.dir, &["status", "--config", config]);
    assert_ne!(run.code, Some(0));
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("no [admin] listener"), "{run:?}");
    assert!(
        run.stderr.contains("listen = \"127.0.0.1:9180\""),
        "{run:?}"
    );
}

#[test]
fn connections_by_state_and_timeouts() {
    let admin = Admin::tcp();
    let s = Srvd::prepare_with_workers(
        "gauges",
        &format!(
            "keepalive_timeout = \"1s\"\nheader_timeout = \"1s\"\n{}",
            admin.config()
        ),
        1,
    )
    .start_prepared();
    // One idle keep-alive connection and one stuck in the middle of a head.
    let mut idle = s.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);
    let mut partial = s.connect();
    partial.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    // Both are cut by their timeouts: the idle one by keepalive_timeout, the partial one by
    // header_timeout (with a 408).
    let mut buf = Vec::new();
    partial.read_to_end(&mut buf).unwrap();
    assert_eq!(status_line(&buf), "HTTP/1.1 408 Request Timeout");
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
    let m = wait_scrape(&admin, "the timeouts", |m| {
        value(m, "srvd_timeouts_total", &[("kind", "header")]) == Some(1.0)
            && value(m, "srvd_timeouts_total", &[("kind", "keepalive")]) == Some(1.0)
    });
    assert_eq!(
        value(&m, "srvd_timeouts_total", &[("kind", "send")]),
        Some(0.0)
    );
    // The 408 was an answer to no request: it is not in the request counts.
    assert_eq!(requests(&m, "default", "4xx"), 0.0);
    wait_scrape(&admin, "no connection left", |m| {
        ["reading", "writing", "idle"]
            .iter()
            .all(|st| value(m, "srvd_connections", &[("state", st)]) == Some(0.0))
    });
}

#[test]
fn connection_gauges_follow_within_a_tick() {
    let admin = Admin::tcp();
    let s = Srvd::prepare_with_workers("gauges2", &admin.config(), 1).start_prepared();
    let mut idle = s.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);
    let mut partial = s.connect();
    partial.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let state = |m: &[Sample], st: &str| value(m, "srvd_connections", &[("state", st)]);
    wait_scrape(&admin, "one idle and one reading", |m| {
        state(m, "idle") == Some(1.0)
            && state(m, "reading") == Some(1.0)
            && state(m, "writing") == Some(0.0)
    });
    drop(idle);
    drop(partial);
    wait_scrape(&admin, "none", |m| {
        state(m, "idle") == Some(0.0) && state(m, "reading") == Some(0.0)
    });
}

#[test]
fn proxy_errors_are_5xx_and_a_silent_app_is_an_upstream_read_timeout() {
    // An app that accepts and reads the request, then says nothing until the test ends.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let app = std::thread::spawn(move || {
        let (mut conn, _) = silent.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = wait.recv_timeout(Duration::from_secs(10));
    });
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = Admin::tcp();
    let s = start_with_admin(
        "proxy-errors",
        &admin,
        &format!(
            "[[proxy]]\nmatch = \"/slow\"\nupstream = \"{silent_addr}\"\nread_timeout = \"1s\"\n\
             [[proxy]]\nmatch = \"/dead\"\nupstream = \"{dead}\"\n"
        ),
    );
    assert_eq!(status_of(&fetch(&s, "localhost", "/dead")), 502);
    assert_eq!(status_of(&fetch(&s, "localhost", "/slow")), 504);
    let m = wait_scrape(&admin, "two 5xx", |m| requests(m, "default", "5xx") == 2.0);
    assert_eq!(
        value(&m, "srvd_timeouts_total", &[("kind", "upstream_read")]),
        Some(1.0)
    );
    for kind in [
        "upstream_connect",
        "upstream_send",
        "upstream_total",
        "send",
    ] {
        assert_eq!(
            value(&m, "srvd_timeouts_total", &[("kind", kind)]),
            Some(0.0),
            "{kind}"
        );
    }
    assert_eq!(requests(&m, "default", "2xx"), 0.0);
    done.send(()).unwrap();
    app.join().unwrap();
}

/// Inodes of the TCP sockets listening on local `port`, from /proc/net/tcp.
fn listening_inodes(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?.rsplit(':').next()?;
            (f.get(3) == Some(&"0A") && u16::from_str_radix(local, 16).ok() == Some(port))
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn only_the_master_holds_the_admin_listener() {
    let admin = Admin::tcp();
    let s = start_with_admin("admin-fds", &admin, "");
    let Admin::Tcp(a) = &admin else {
        unreachable!()
    };
    let inodes = listening_inodes(a.port());
    assert_eq!(inodes.len(), 1, "one admin listener");
    assert!(socket_inodes_of(s.pid().as_raw()).contains(&inodes[0]));
    for pid in s.workers() {
        assert!(
            !socket_inodes_of(pid).contains(&inodes[0]),
            "worker {pid} holds the admin listener"
        );
    }
    // Nor an admin connection open at the time of a fork: one is held open (mid-request)
    // while TTIN forks a new worker.
    let mut held = TcpStream::connect(a).unwrap();
    held.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let before = s.workers();
    s.signal(Signal::SIGTTIN);
    let added = wait_for("a third worker", || {
        let now = s.workers();
        (now.len() == 3 && now.iter().all(|&p| worker_ready(p)))
            .then(|| now.into_iter().find(|p| !before.contains(p)).unwrap())
    });
    let master_sockets = socket_inodes_of(s.pid().as_raw());
    for inode in socket_inodes_of(added) {
        // The worker's own sockets (listener dup, channel, signal pipe) are not the master's
        // admin ones; the sites' listener is shared on purpose.
        if listening_inodes(s.port).contains(&inode) {
            continue;
        }
        assert!(
            !master_sockets.contains(&inode),
            "worker {added} shares socket {inode} with the master"
        );
    }
    drop(held);
}
