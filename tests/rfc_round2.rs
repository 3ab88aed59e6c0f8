//! Protocol fixes found against outside conformance corpora:
//! - Host validation (RFC 9112 §3.2, RFC 3986 §3.2.2): a Host header or an absolute-form
//!   authority that is not `reg-name / IPv4address / IP-literal [ ":" DIGIT* ]` is a 400;
//! - a client that half-closes after part of a request head gets a 400 before the close.
//!
//! Transfer-Encoding and request-line cases are in conformance.rs's tables.

mod common;

use std::io::Write;
use std::net::Shutdown;

use common::*;

fn status_of(s: &Srvd, target: &str, host: &[u8]) -> String {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: ").into_bytes();
    req.extend_from_slice(host);
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    status_line(&s.raw(&req))
}

#[test]
fn invalid_host_headers_are_400() {
    let s = Srvd::start("host-bad", "");
    let cases: [&[u8]; 11] = [
        b"bad host",
        b"abc\\foo",
        "caf\u{e9}.example".as_bytes(),
        b"localhost:80x",
        b"localhost:80:80",
        b"localhost::80",
        b"[4712::abcd::]",
        b"::1",
        b"2001:db8::7",
        b"a@b",
        b"0x7f.1",
    ];
    for host in cases {
        let got = status_of(&s, "/", host);
        assert!(
            got.starts_with("HTTP/1.1 400"),
            "Host {:?}: {got}",
            String::from_utf8_lossy(host)
        );
    }
}

#[test]
fn valid_host_headers_are_served() {
    let s = Srvd::start("host-good", "");
    for host in [
        "localhost",
        "localhost:8080",
        "Example.COM.",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:80",
        "[v1.x]",
    ] {
        let got = status_of(&s, "/", host.as_bytes());
        assert!(got.starts_with("HTTP/1.1 200"), "Host {host:?}: {got}");
    }
}

#[test]
fn invalid_absolute_form_authorities_are_400() {
    let s = Srvd::start("host-absolute", "");
    for target in [
        "http://0x7f.1/",
        "http://%3127.0.0.1/",
        "http://localhost:80x/",
        "http://[4712::abcd::]/",
        "http://user@localhost/",
        "http:///",
    ] {
        let got = status_of(&s, target, b"localhost");
        assert!(got.starts_with("HTTP/1.1 400"), "{target}: {got}");
    }
    for target in [
        "http://localhost/",
        "http://127.0.0.1:8080/",
        "HTTP://[::1]/",
    ] {
        let got = status_of(&s, target, b"localhost");
        assert!(got.starts_with("HTTP/1.1 200"), "{target}: {got}");
    }
}

#[test]
fn a_half_close_after_a_partial_head_gets_a_400() {
    let s = Srvd::start("half-close", "");
    for partial in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
        b"GET / HTT",
        b"\r\nGET /",
    ] {
        let mut c = s.connect();
        c.write_all(partial).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let got = read_until_eof(&mut c).expect("the server closes");
        assert!(
            status_line(&got).starts_with("HTTP/1.1 400"),
            "{:?}: {:?}",
            String::from_utf8_lossy(partial),
            String::from_utf8_lossy(&got)
        );
    }
    // Nothing but the empty lines a client may send before a request: just the close.
    let mut c = s.connect();
    c.write_all(b"\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_eof(&mut c).expect("the server closes"), b"");
    // A complete request before the half-close is answered normally.
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = read_until_eof(&mut c).expect("the server closes");
    assert!(status_line(&got).starts_with("HTTP/1.1 200"));
}

/// RFC 9112 §7.1: a chunked request body whose chunk size overflows, is not hex, or
/// exceeds what srvd reads and discards, is a framing error: 400 and close, and nothing
/// after it is read as a request (the smuggled GET below never gets an answer).
#[test]
fn broken_chunked_bodies_are_400_and_close() {
    let s = Srvd::start("chunk-bad", "");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for (what, body) in [
        (
            "overflowing size",
            "ffffffffffffffffff\r\nx\r\n0\r\n\r\n".to_owned(),
        ),
        ("not hex", "zz\r\nx\r\n0\r\n\r\n".to_owned()),
        // 2 MiB declared: past the 1 MiB srvd discards.
        ("past the discard limit", "200000\r\nxx".to_owned()),
        (
            "no CRLF after the data",
            "3\r\nabcXX\r\n0\r\n\r\n".to_owned(),
        ),
    ] {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}{smuggled}"
        );
        let bytes = s.raw(req.as_bytes());
        let all = Response::parse_all(&bytes);
        assert_eq!(
            all.len(),
            1,
            "{what}: one answer only: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(all[0].status, 400, "{what}");
        assert_eq!(all[0].header("connection"), Some("close"), "{what}");
    }
    // A well-formed chunked body is read and dropped; the next request is served.
    let req = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n{smuggled}"
    );
    let mut c = s.connect();
    c.write_all(req.as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let bytes = read_to_close(&mut c);
    let all = Response::parse_all(&bytes);
    assert_eq!(all.len(), 2, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(all[0].status, 200);
    assert_eq!(all[1].status, 404);
}

/// The body may arrive after the head, in pieces: srvd waits for it before answering.
#[test]
fn a_chunked_body_in_pieces_is_waited_for() {
    let s = Srvd::start("chunk-pieces", "");
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .unwrap();
    // Nothing is answered while the body is incomplete (a bounded wait for no bytes).
    c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut probe = [0u8; 64];
    let early = std::io::Read::read(&mut c, &mut probe);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "answered before the body was complete: {early:?}"
    );
    c.set_read_timeout(None).unwrap();
    c.write_all(b"lo\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let bytes = read_to_close(&mut c);
    let all = Response::parse_all(&bytes);
    assert_eq!(all.len(), 2, "{:?}", String::from_utf8_lossy(&bytes));
    assert!(all.iter().all(|r| r.status == 200));
}
