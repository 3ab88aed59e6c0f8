//! Static serving, seen from a client: content types, validators, directories and their
//! redirects, 404 pages, a large download, and the access log.

mod common;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn file_responses_carry_type_validators_and_accept_ranges() {
    let s = Srvd::start_ready("types", "default_type = \"application/x-srvd-default\"");
    // (file, Content-Type)
    let table: &[(&str, &str)] = &[
        ("style.css", "text/css; charset=utf-8"),
        ("pixel.png", "image/png"),
        ("page.html", "text/html; charset=utf-8"),
        ("data.zzqx", "application/x-srvd-default"),
        ("Makefile", "application/x-srvd-default"),
    ];
    for (name, ctype) in table {
        let contents = format!("contents of {name}\n");
        let path = s.file(name, &contents);
        let r = s.get(&format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body, contents.as_bytes(), "{name}");
        assert_eq!(r.header("content-type"), Some(*ctype), "{name}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{name}");
        assert_eq!(
            r.header("content-length"),
            Some(contents.len().to_string().as_str()),
            "{name}"
        );

        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let secs = mtime.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let want_lm = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(r.header("last-modified"), Some(want_lm.as_str()), "{name}");

        let etag = r
            .header("etag")
            .unwrap_or_else(|| panic!("{name}: no ETag"));
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{name}: ETag {etag:?} is not a strong quoted tag"
        );
        assert!(
            !etag[1..etag.len() - 1].contains('"'),
            "{name}: ETag {etag:?}"
        );
    }
    // Different files have different tags.
    let a = s.get("/style.css");
    let b = s.get("/page.html");
    assert_ne!(a.header("etag"), b.header("etag"));
}

#[test]
fn mime_override_matches_extensions_case_insensitively() {
    let s = Srvd::start_ready(
        "mimeover",
        "[mime_types]\nZQX = \"application/x-zqx\"\nCss = \"text/x-custom-css\"",
    );
    let table: &[(&str, &str)] = &[
        ("a.zqx", "application/x-zqx"),
        ("b.ZqX", "application/x-zqx"),
        ("c.css", "text/x-custom-css"),
        ("d.CSS", "text/x-custom-css"),
        ("e.png", "image/png"),
    ];
    for (name, ctype) in table {
        s.file(name, "x");
        let r = s.get(&format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(*ctype), "{name}");
    }
}

#[test]
fn directory_with_slash_serves_its_index() {
    let s = Srvd::start_ready("dirindex", "");
    s.file("dir/index.html", "dir index\n");
    for target in ["/dir/", "/dir/?x=1", "/dir//", "/dir/./"] {
        let r = s.get(target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body, b"dir index\n", "{target}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{target}"
        );
    }
    let root = s.get("/");
    assert_eq!(root.status, 200);
    assert_eq!(root.body, b"hello\n");
}

#[test]
fn directory_without_slash_redirects_keeping_the_query() {
    let s = Srvd::start_ready("dirredirect", "");
    s.file("dir/index.html", "dir index\n");
    s.file("dir/sub/index.html", "sub\n");
    let table: &[(&str, &str)] = &[
        ("/dir", "/dir/"),
        ("/dir?a=1", "/dir/?a=1"),
        ("/dir?a=1&b=%20", "/dir/?a=1&b=%20"),
        ("/dir/sub", "/dir/sub/"),
        ("/dir/sub?q", "/dir/sub/?q"),
    ];
    for (target, location) in table {
        let raw = s.raw(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            status_line(&raw),
            "HTTP/1.1 301 Moved Permanently",
            "{target}"
        );
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.header("location"), Some(*location), "{target}");
    }
}

#[test]
fn redirects_never_point_to_another_host() {
    let s = Srvd::start_ready("openredirect", "");
    s.file("evil.com/index.html", "local dir named evil.com\n");
    // (target, expected status, expected Location)
    let table: &[(&str, u16, Option<&str>)] = &[
        ("//evil.com", 301, Some("/evil.com/")),
        ("///evil.com", 301, Some("/evil.com/")),
        ("/%2F%2Fevil.com", 301, Some("/evil.com/")),
        ("/%2f/evil.com?x=1", 301, Some("/evil.com/?x=1")),
        ("//evil.com/..", 200, None),
        ("//evil.com/%2e%2e", 200, None),
        ("/%5Cevil.com", 400, None),
        ("/%5C%5Cevil.com", 400, None),
        ("http://x//evil.com", 301, Some("/evil.com/")),
    ];
    for (target, status, location) in table {
        let raw = s.raw(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let r = Response::parse(&raw).unwrap_or_else(|| panic!("{target}: no response"));
        assert_eq!(r.status, *status, "{target}: {}", status_line(&raw));
        assert_eq!(r.header("location"), *location, "{target}");
        if let Some(loc) = r.header("location") {
            assert!(
                loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\"),
                "{target}: Location {loc:?} leaves the site"
            );
        }
    }
}

#[test]
fn directory_without_index_is_404_without_listing() {
    let s = Srvd::start_ready("noindex", "");
    s.file("plain/listed-name-7c1f.txt", "x");
    for target in ["/plain/", "/plain"] {
        let r = s.get(target);
        // "/plain" still redirects (it is a directory); the directory itself is a 404.
        if target == "/plain" {
            assert_eq!(r.status, 301);
            assert_eq!(r.header("location"), Some("/plain/"));
            continue;
        }
        assert_eq!(r.status, 404, "{target}");
        assert!(
            !r.body_str().contains("listed-name-7c1f"),
            "{target}: listing leaked: {}",
            r.body_str()
        );
    }
    // The file itself is served.
    assert_eq!(s.get("/plain/listed-name-7c1f.txt").status, 200);
}

#[test]
fn not_found_uses_the_configured_page() {
    let s = Srvd::prepare("404page", "not_found_page = \"custom404.html\"");
    let page = "<h1>custom not found 5d2e</h1>\n";
    std::fs::write(s.dir.join("custom404.html"), page).unwrap();
    let s = s.start_prepared();
    s.wait_workers_ready();
    for target in ["/missing", "/a/b/c.txt", "/.env"] {
        let raw = s.raw(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_line(&raw), "HTTP/1.1 404 Not Found", "{target}");
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.body_str(), page, "{target}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{target}"
        );
        assert_eq!(r.header("content-length"), Some("31"), "{target}");
    }
}

#[test]
fn not_found_without_the_key_uses_the_builtin_page() {
    let s = Srvd::start_ready("404builtin", "");
    let raw = s.raw(b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(&raw), "HTTP/1.1 404 Not Found");
    let r = Response::parse(&raw).unwrap();
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let body = r.body_str();
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(body.contains("404 Not Found"), "{body}");
}

#[test]
fn sixteen_mib_file_downloads_intact() {
    let s = Srvd::start_ready("big", "");
    let mut data = vec![0u8; 16 * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let path = s.file("big.bin", &data);
    let want = sha256_hex(&std::fs::read(path).unwrap());

    let mut c = s.connect();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let raw = read_until_eof(&mut c).expect("complete download, then close");
    assert_eq!(status_line(&raw), "HTTP/1.1 200 OK");
    let r = Response::parse(&raw).expect("whole body received");
    assert_eq!(r.header("content-length"), Some("16777216"));
    assert_eq!(r.body.len(), data.len());
    assert!(r.rest.is_empty(), "{} bytes past the body", r.rest.len());
    assert_eq!(sha256_hex(&r.body), want);
}

/// Checks `s` is `dd/Mon/yyyy:hh:mm:ss +0000`.
fn is_clf_time(s: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 26
        && digits(0..2)
        && b[2] == b'/'
        && MONTHS.contains(&&s[3..6])
        && b[6] == b'/'
        && digits(7..11)
        && b[11] == b':'
        && digits(12..14)
        && b[14] == b':'
        && digits(15..17)
        && b[17] == b':'
        && digits(18..20)
        && &s[20..] == " +0000"
}

#[test]
fn access_log_gets_one_combined_line_per_request() {
    // A name other than the harness's stdout capture, so the line can only have come from
    // the configured file (resolved against the config's directory).
    let s = Srvd::start_ready("accesslog", "[log]\naccess = \"requests.log\"");
    let log_path = s.dir.join("requests.log");
    let r = s.request(
        "GET /index.html HTTP/1.1\r\nHost: x\r\nUser-Agent: test-agent/1.0\r\nConnection: close",
    );
    assert_eq!(r.status, 200);
    let r = s.request(
        "GET /nope?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://ref.example/\r\nUser-Agent: ua2\r\nConnection: close",
    );
    assert_eq!(r.status, 404);
    let builtin_404_len = r.body.len();

    let text = wait_for("two access-log lines", || {
        let t = std::fs::read_to_string(&log_path).unwrap_or_default();
        (t.lines().count() >= 2).then_some(t)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let expect = [
        "\"GET /index.html HTTP/1.1\" 200 6 \"-\" \"test-agent/1.0\"".to_string(),
        format!("\"GET /nope?q=1 HTTP/1.1\" 404 {builtin_404_len} \"http://ref.example/\" \"ua2\""),
    ];
    // Two workers buffer and flush independently, so the lines may come in either order.
    for tail in &expect {
        let line = lines
            .iter()
            .find(|l| l.ends_with(tail.as_str()))
            .unwrap_or_else(|| panic!("no line ending in {tail}:\n{text}"));
        let rest = line
            .strip_prefix("127.0.0.1 - - [")
            .unwrap_or_else(|| panic!("bad start: {line}"));
        let (time, rest) = rest
            .split_once("] ")
            .unwrap_or_else(|| panic!("no time: {line}"));
        assert!(is_clf_time(time), "bad time {time:?} in {line}");
        assert_eq!(rest, tail, "{line}");
    }
    assert!(
        !s.access_log().contains("GET /index.html"),
        "the line also went to stdout"
    );
}

#[test]
fn a_changed_file_is_served_new_on_the_very_next_request() {
    // One worker, so every request hits the same file cache.
    let s = Srvd::prepare_with_workers("cache-fresh", "", 1).start_prepared();
    let small_a = vec![b'a'; 1000];
    let small_b = vec![b'b'; 1000];
    let large_a = vec![b'A'; 200_000];
    let large_b = vec![b'B'; 200_000];
    for (name, first, second) in [
        ("small.txt", &small_a, &small_b),
        ("large.bin", &large_a, &large_b),
    ] {
        let path = s.file(name, first);
        for _ in 0..3 {
            assert_eq!(&s.get(&format!("/{name}")).body, first, "{name} cached");
        }
        // In place, same size: only mtime/ctime (nanoseconds) tell.
        std::fs::write(&path, second).unwrap();
        assert_eq!(
            &s.get(&format!("/{name}")).body,
            second,
            "{name} rewritten in place"
        );
        // Replaced by rename (a new inode), the way deploy tools do it.
        let tmp = s.root.join(format!("{name}.tmp"));
        std::fs::write(&tmp, first).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(
            &s.get(&format!("/{name}")).body,
            first,
            "{name} replaced by rename"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.get(&format!("/{name}")).status, 404, "{name} removed");
    }
}

#[test]
fn small_files_past_the_cache_byte_budget_are_served_right_and_fresh() {
    // 200 files of 12 KiB (2.4 MB) overflow the worker's 1 MiB byte budget, so the later
    // ones are cached as open descriptors and read with pread on every hit.
    let s = Srvd::prepare_with_workers("cache-budget", "", 1).start_prepared();
    let body =
        |i: usize, gen: u8| -> Vec<u8> { (0..12 * 1024).map(|j| (i + j) as u8 ^ gen).collect() };
    for i in 0..200 {
        s.file(&format!("f/{i}.bin"), body(i, 0));
    }
    for _ in 0..2 {
        for i in 0..200 {
            let r = s.get(&format!("/f/{i}.bin"));
            assert_eq!(r.status, 200);
            assert!(r.body == body(i, 0), "file {i}");
        }
    }
    std::fs::write(s.root.join("f/199.bin"), body(199, 0x55)).unwrap();
    assert!(
        s.get("/f/199.bin").body == body(199, 0x55),
        "rewritten file served new"
    );
    let r = s
        .request("GET /f/150.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=100-199\r\nConnection: close");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &body(150, 0)[100..200])
    );
}

#[test]
fn cached_files_are_fresh_through_links_and_replaced_directories() {
    let s = Srvd::prepare_with_workers("cache-paths", "", 1).start_prepared();
    let get = |p: &str| s.get(p).body_str();
    // 1. Through a symlinked directory (not watched: revalidated by stat on every hit).
    s.file("real/a.txt", "one\n");
    std::os::unix::fs::symlink("real", s.root.join("link")).unwrap();
    assert_eq!(get("/link/a.txt"), "one\n");
    assert_eq!(get("/link/a.txt"), "one\n");
    std::fs::write(s.root.join("real/a.txt"), "two\n").unwrap();
    assert_eq!(get("/link/a.txt"), "two\n", "through a symlinked directory");
    // 2. A directory of the path replaced by another (deploy by rename).
    s.file("d/x.txt", "old\n");
    assert_eq!(get("/d/x.txt"), "old\n");
    assert_eq!(get("/d/x.txt"), "old\n");
    s.file("d.new/x.txt", "new\n");
    std::fs::rename(s.root.join("d"), s.root.join("d.old")).unwrap();
    std::fs::rename(s.root.join("d.new"), s.root.join("d")).unwrap();
    assert_eq!(get("/d/x.txt"), "new\n", "directory replaced");
    // 3. The same inode changed through another name (a hard link).
    s.file("h.txt", "first\n");
    std::fs::hard_link(s.root.join("h.txt"), s.dir.join("outside-link")).unwrap();
    assert_eq!(get("/h.txt"), "first\n");
    assert_eq!(get("/h.txt"), "first\n");
    std::fs::write(s.dir.join("outside-link"), "other\n").unwrap();
    assert_eq!(get("/h.txt"), "other\n", "changed through a hard link");
}
