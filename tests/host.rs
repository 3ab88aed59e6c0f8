//! Host validation (RFC 9112 §3.2, RFC 3986 §3.2.2): a Host header or an absolute-form
//! authority that is not `reg-name / IPv4address / IP-literal [ ":" DIGIT* ]` is a 400.

mod common;

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
