//! Several listeners: `listen = ["IP:PORT", ...]` in place of `bind`/`port`. Every address
//! is served by every worker; a reload adds and removes addresses while the ones kept keep
//! their very socket; an upgrade and socket activation carry all of them; and the config
//! errors name the entry at file:line:column.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// A prepared srvd whose config lists `addrs` under `listen` (plus `extra`).
fn with_listen(name: &str, addrs: &[SocketAddr], extra: &str) -> Srvd {
    let mut s = Srvd::prepare(name, "");
    s.port = addrs[0].port();
    write_listen(&s, addrs, extra);
    s
}

fn write_listen(s: &Srvd, addrs: &[SocketAddr], extra: &str) {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "listen = [{}]\nworkers = {}\nroot = \"root\"\npid_file = \"srvd.pid\"\n{extra}\n",
        list.join(", "),
        s.workers_expected
    );
    std::fs::write(&s.config_path, text).unwrap();
}

fn get_on(addr: SocketAddr) -> Option<Response> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).ok()?;
    Response::parse(&out)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The inodes of the listening TCP sockets process `pid` holds (`socket:[N]` links whose
/// inode is in LISTEN state in /proc/net/tcp{,6}).
fn listening_inodes(pid: i32) -> Vec<String> {
    let listening: Vec<String> = tcp_table(true)
        .into_iter()
        .filter(|r| r.state == *b"0A")
        .map(|r| r.inode.to_string())
        .collect();
    let mut found: Vec<String> = fds_of(pid)
        .into_iter()
        .filter_map(|(_, target)| {
            let inode = target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .to_owned();
            listening.contains(&inode).then_some(inode)
        })
        .collect();
    found.sort();
    found
}

#[test]
fn every_listed_address_is_served_by_every_worker() {
    let (a, b) = (free_port(), free_port());
    let s = with_listen("listen-two", &[loopback(a), loopback(b)], "").start_prepared();
    for addr in [loopback(a), loopback(b)] {
        let r = get_on(addr).unwrap_or_else(|| panic!("no answer on {addr}"));
        assert_eq!(r.status, 200, "{addr}");
        assert_eq!(r.body_str(), "hello\n");
    }
    for w in s.workers() {
        assert_eq!(
            listening_inodes(w).len(),
            2,
            "worker {w} holds both listeners"
        );
    }
    assert!(
        s.error_log()
            .contains(&format!("listening on 127.0.0.1:{a}, 127.0.0.1:{b}")),
        "{}",
        s.error_log()
    );
}

#[test]
fn ipv4_and_ipv6_loopback_on_one_port() {
    let port = free_port();
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    if std::net::TcpListener::bind(v6).is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let s = with_listen("listen-v4v6", &[loopback(port), v6], "").start_prepared();
    assert_eq!(get_on(loopback(port)).unwrap().status, 200);
    assert_eq!(get_on(v6).unwrap().status, 200);
    drop(s);
}

#[test]
fn a_reload_adds_and_removes_addresses_and_keeps_the_others_socket() {
    let (a, b, c) = (free_port(), free_port(), free_port());
    let s = with_listen("listen-reload", &[loopback(a), loopback(b)], "").start_prepared();
    let master = s.pid().as_raw();
    let before = listening_inodes(master);
    assert_eq!(before.len(), 2);
    // a stays, b goes, c comes.
    write_listen(&s, &[loopback(a), loopback(c)], "");
    let out = run_cli(
        &s.dir,
        &["reload", "--config", s.config_path.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(get_on(loopback(c)).map(|r| r.status), Some(200));
    assert_eq!(get_on(loopback(a)).map(|r| r.status), Some(200));
    wait_for("the removed address to close", || {
        TcpStream::connect(loopback(b)).is_err().then_some(())
    });
    let after = listening_inodes(master);
    assert_eq!(after.len(), 2, "{after:?}");
    let kept: Vec<_> = after.iter().filter(|i| before.contains(i)).collect();
    assert_eq!(
        kept.len(),
        1,
        "the socket of {a} is the same one: {before:?} {after:?}"
    );
}

#[test]
fn a_reload_that_cannot_bind_one_address_changes_nothing() {
    let (a, b) = (free_port(), free_port());
    let taken = std::net::TcpListener::bind(loopback(b)).unwrap();
    let s = with_listen("listen-reload-taken", &[loopback(a)], "").start_prepared();
    write_listen(&s, &[loopback(a), loopback(b)], "");
    let out = run_cli(
        &s.dir,
        &["reload", "--config", s.config_path.to_str().unwrap()],
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{b}")),
        "{out:?}"
    );
    assert_eq!(get_on(loopback(a)).map(|r| r.status), Some(200));
    drop(taken);
}

#[test]
fn an_upgrade_carries_every_listener() {
    let (a, b) = (free_port(), free_port());
    let s = with_listen("listen-upgrade", &[loopback(a), loopback(b)], "");
    // The upgrade executes the binary at srvd's path: run a copy the test owns.
    let copy = s.dir.join("srvd-bin");
    std::fs::copy(bin(), &copy).unwrap();
    let log = std::fs::File::create(s.dir.join("error.log")).unwrap();
    let mut child = std::process::Command::new(&copy)
        .arg("--config")
        .arg(&s.config_path)
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("both listeners", || {
        (get_on(loopback(a)).is_some() && get_on(loopback(b)).is_some()).then_some(())
    });
    let old: i32 = child.id() as i32;
    let before = listening_inodes(old);
    let out = run_cli(
        &s.dir,
        &["upgrade", "--config", s.config_path.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let new: i32 = std::fs::read_to_string(s.dir.join("srvd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        listening_inodes(new),
        before,
        "the same two sockets, never re-bound"
    );
    assert_eq!(get_on(loopback(a)).map(|r| r.status), Some(200));
    assert_eq!(get_on(loopback(b)).map(|r| r.status), Some(200));
    wait_for("the old master to exit", || {
        child.try_wait().unwrap().map(|_| ())
    });
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new), Signal::SIGTERM);
    wait_for("the new master to exit", || (!alive(new)).then_some(()));
}

#[test]
fn socket_activation_matches_each_passed_socket_to_its_address() {
    let Ok(tool) = which("systemd-socket-activate") else {
        if std::env::var_os("SRVD_REQUIRE_SYSTEMD_TOOLS").is_some() {
            panic!("systemd-socket-activate is missing (apt-get install systemd)");
        }
        eprintln!("skipped: systemd-socket-activate is missing");
        return;
    };
    let (a, b) = (free_port(), free_port());
    // srvd lists them the other way round: matching is by address, not by order.
    let s = with_listen("listen-activate", &[loopback(b), loopback(a)], "");
    let log = std::fs::File::create(s.dir.join("error.log")).unwrap();
    let mut child = std::process::Command::new(tool)
        .arg("-l")
        .arg(loopback(a).to_string())
        .arg("-l")
        .arg(loopback(b).to_string())
        .arg(bin())
        .arg("--config")
        .arg(&s.config_path)
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first connection makes the tool execute srvd.
    let r = wait_for("an answer on the first socket", || get_on(loopback(a)));
    assert_eq!(r.status, 200);
    assert_eq!(get_on(loopback(b)).map(|r| r.status), Some(200));
    let log = std::fs::read_to_string(s.dir.join("error.log")).unwrap();
    assert!(
        log.contains(&format!("listener 127.0.0.1:{a} received from systemd")),
        "{log}"
    );
    assert!(
        log.contains(&format!("listener 127.0.0.1:{b} received from systemd")),
        "{log}"
    );
    assert!(!log.contains("kept open, unused"), "{log}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    wait_for("srvd to exit", || child.try_wait().unwrap().map(|_| ()));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let paths = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn listen_errors_name_the_entry() {
    let dir = temp_dir("listen-errors");
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let check = |text: &str| {
        std::fs::write(dir.join("srvd.toml"), text).unwrap();
        let out = run_cli(&dir, &["--check", "--config", "srvd.toml"]);
        assert_eq!(out.code, Some(1), "{text}: {out:?}");
        out.stderr
    };
    let e = check("root = \"root\"\nport = 8080\nlisten = [\"127.0.0.1:8081\"]\n");
    assert!(
        e.contains("srvd.toml:3:10: listen replaces port and bind"),
        "{e}"
    );
    let e = check("root = \"root\"\nlisten = [\"127.0.0.1:8081\", \"127.0.0.1:8081\"]\n");
    assert!(e.contains("srvd.toml:2:29: invalid listen entry \"127.0.0.1:8081\": 127.0.0.1:8081 is listed twice"), "{e}");
    let e = check("root = \"root\"\nlisten = [\"localhost:80\"]\n");
    assert!(e.contains("srvd.toml:2:11: invalid listen entry \"localhost:80\": expected an IP address and a port"), "{e}");
    let e = check("root = \"root\"\nlisten = [\"127.0.0.1:0\"]\n");
    assert!(e.contains("the port must be between 1 and 65535"), "{e}");
    let e = check("root = \"root\"\nlisten = []\n");
    assert!(
        e.contains("srvd.toml:2:10: listen needs at least one address"),
        "{e}"
    );
    let e = check("root = \"root\"\nlisten = [\"0.0.0.0:443 tls\"]\n");
    assert!(
        e.contains("srvd.toml:2:10: a TLS listener needs a certificate"),
        "{e}"
    );
    let e = check(
        "root = \"root\"\nlisten = [\"127.0.0.1:8081\"]\n[[site]]\nhosts = [\"a\"]\nroot = \"root\"\nlisten = [\"127.0.0.1:8082\"]\n",
    );
    assert!(e.contains("srvd.toml:6:1: listen is process-wide"), "{e}");
}
