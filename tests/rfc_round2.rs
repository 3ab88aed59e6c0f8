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
