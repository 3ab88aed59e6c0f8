//! Nothing outside the document root, and no dotfile inside it, ever reaches a client.
//!
//! Every test plants files carrying a unique marker next to (outside) the root and asserts
//! that no response body contains it, whatever the status.

mod common;
use common::*;

use std::os::unix::fs::symlink;

const MARKER: &str = "SRVD-SECRET-MARKER-0b9d41e7";
const DOT_MARKER: &str = "SRVD-DOTFILE-MARKER-5a11c3";

/// A server whose test directory holds `secret.txt` and `outside/secret.txt` (both outside
/// the root, both with [`MARKER`]), and whose root holds symlinks pointing at them.
fn server_with_secrets(name: &str) -> Srvd {
    let s = Srvd::prepare(name, "");
    std::fs::write(s.dir.join("secret.txt"), format!("{MARKER}\n")).unwrap();
    std::fs::create_dir_all(s.dir.join("outside")).unwrap();
    std::fs::write(s.dir.join("outside/secret.txt"), format!("{MARKER} dir\n")).unwrap();
    std::fs::write(s.root.join("real.txt"), "real inside\n").unwrap();
    std::fs::create_dir_all(s.root.join("a/sub")).unwrap();
    // Escaping symlinks: relative, absolute, to a system file, to a directory.
    symlink("../secret.txt", s.root.join("rel-secret")).unwrap();
    symlink(s.dir.join("secret.txt"), s.root.join("abs-secret")).unwrap();
    symlink("/etc/passwd", s.root.join("passwd")).unwrap();
    symlink("../outside", s.root.join("outdir")).unwrap();
    symlink(s.dir.join("outside"), s.root.join("a/absdir")).unwrap();
    symlink("../../secret.txt", s.root.join("a/up2")).unwrap();
    // Symlinks that stay inside the root.
    symlink("real.txt", s.root.join("alias.txt")).unwrap();
    symlink("../../real.txt", s.root.join("a/sub/alias.txt")).unwrap();
    symlink("sub", s.root.join("a/subalias")).unwrap();
    std::fs::write(s.root.join("a/sub/index.html"), "sub index\n").unwrap();
    let s = s.start_prepared();
    s.wait_workers_ready();
    s
}

/// Sends `raw` as-is and returns (status line, parsed response if any, all bytes).
fn send(s: &Srvd, raw: &[u8]) -> (String, Option<Response>, Vec<u8>) {
    let bytes = s.raw(raw);
    (status_line(&bytes), Response::parse(&bytes), bytes)
}

fn assert_no_leak(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(MARKER), "{what}: leaked the secret:\n{text}");
    assert!(!text.contains("root:x:0:0"), "{what}: leaked /etc/passwd");
    assert!(
        !text.contains(DOT_MARKER),
        "{what}: leaked a dotfile:\n{text}"
    );
}

#[test]
fn traversal_attempts_never_leave_the_root() {
    let s = server_with_secrets("traversal");
    // (request line, expected status line). Raw bytes: nothing is normalised by a client.
    let table: &[(&str, &str)] = &[
        ("GET /../etc/passwd HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /../secret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        (
            "GET /..%2f..%2fetc%2fpasswd HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        ("GET /..%2fsecret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /..%2Fsecret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        (
            "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /%2e%2e/secret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /%2E%2E/secret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /a/../../etc/passwd HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /a/../../secret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /a/sub/../../../secret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        ("GET /%00 HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /a%00b HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /real.txt%00.html HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        (
            "GET /..\\..\\etc\\passwd HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        ("GET /..\\secret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /%5c..%5c HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        (
            "GET /%5c..%5csecret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET http://x/../../etc/passwd HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET http://x/../secret.txt HTTP/1.1",
            "HTTP/1.1 400 Bad Request",
        ),
        ("GET %2e%2e/secret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET ../secret.txt HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        // Double encoding decodes once: a literal "%2e%2e" name, which does not exist.
        (
            "GET /%252e%252e/secret.txt HTTP/1.1",
            "HTTP/1.1 404 Not Found",
        ),
        // Symlinks leading out of the root.
        ("GET /passwd HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /rel-secret HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /abs-secret HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /a/up2 HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /outdir/secret.txt HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /outdir/ HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /outdir HTTP/1.1", "HTTP/1.1 404 Not Found"),
        (
            "GET /a/absdir/secret.txt HTTP/1.1",
            "HTTP/1.1 404 Not Found",
        ),
        ("HEAD /rel-secret HTTP/1.1", "HTTP/1.1 404 Not Found"),
    ];
    for (line, want) in table {
        let req = format!("{line}\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (got, _, bytes) = send(&s, req.as_bytes());
        assert_eq!(&got, want, "{line}");
        assert_no_leak(line, &bytes);
    }
}

#[test]
fn symlinks_that_stay_inside_the_root_are_served() {
    let s = server_with_secrets("innerlinks");
    let table: &[(&str, &str)] = &[
        ("/alias.txt", "real inside\n"),
        ("/a/sub/alias.txt", "real inside\n"),
        ("/a/subalias/", "sub index\n"),
        ("/a/subalias/alias.txt", "real inside\n"),
    ];
    for (target, body) in table {
        let r = s.get(target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body_str(), *body, "{target}");
    }
}

#[test]
fn dotfiles_are_404_even_when_they_exist() {
    let s = Srvd::start_ready("dotfiles", "");
    for f in [
        ".env",
        ".git/config",
        "a/.hidden",
        "a/.git/HEAD",
        ".htpasswd",
    ] {
        s.file(f, format!("{DOT_MARKER} {f}\n"));
    }
    s.file("a/visible.txt", "visible\n");
    let table = [
        "/.env",
        "/.git/config",
        "/.git/",
        "/.git",
        "/a/.hidden",
        "/a/.git/HEAD",
        "/.htpasswd",
        "/%2eenv",
        "/%2Eenv",
        "/a/%2ehidden",
        "/a/./.hidden",
        "/x/../.env",
        "/a/.well-known/../.hidden",
    ];
    for target in table {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (got, _, bytes) = send(&s, req.as_bytes());
        assert_eq!(got, "HTTP/1.1 404 Not Found", "{target}");
        assert_no_leak(target, &bytes);
    }
    assert_eq!(s.get("/a/visible.txt").body, b"visible\n");
}

#[test]
fn well_known_is_served() {
    let s = Srvd::start_ready("wellknown", "");
    s.file(".well-known/x", "acme token\n");
    s.file(".well-known/.hidden", format!("{DOT_MARKER}\n"));
    let r = s.get("/.well-known/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"acme token\n");
    // Only the first segment is exempt; dotfiles below it stay hidden.
    let (got, _, bytes) = send(
        &s,
        b"GET /.well-known/.hidden HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(got, "HTTP/1.1 404 Not Found");
    assert_no_leak("/.well-known/.hidden", &bytes);
}

#[test]
fn absolute_and_climbing_symlinks_into_the_root_are_served() {
    let s = server_with_secrets("abslinks");
    // An absolute link to a file inside the root, and a relative one that leaves the
    // root and comes back: RESOLVE_BENEATH refuses both, the canonical re-check allows them.
    symlink(s.root.join("real.txt"), s.root.join("abs-inside.txt")).unwrap();
    symlink("../root/real.txt", s.root.join("climb.txt")).unwrap();
    symlink(s.root.join("a"), s.root.join("abs-dir")).unwrap();
    for target in ["/abs-inside.txt", "/climb.txt"] {
        let r = s.get(target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body_str(), "real inside\n", "{target}");
    }
    assert_eq!(s.get("/abs-dir/").status, s.get("/a/").status);
    // ...while the escaping ones stay refused.
    for target in ["/abs-secret", "/rel-secret", "/passwd", "/a/absdir/"] {
        let (_, _, bytes) = send(
            &s,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_no_leak(target, &bytes);
    }
}
