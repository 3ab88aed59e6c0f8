//! HTTP/1.x protocol behaviour over raw sockets: methods, mandatory headers, keep-alive,
//! connection close, pipelining and byte-at-a-time requests.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;

/// Sends `req` on `s` and reads exactly one response.
fn exchange(s: &mut TcpStream, req: &str, head: bool) -> Response {
    s.write_all(req.as_bytes()).unwrap();
    read_response(s, head).unwrap_or_else(|| panic!("no response to {req:?}"))
}

/// Headers other than Date (which may tick between two requests).
fn stable_headers(r: &Response) -> Vec<(String, String)> {
    let mut h: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k != "date")
        .cloned()
        .collect();
    h.sort();
    h
}

#[test]
fn head_has_same_headers_and_no_body() {
    let s = Srvd::start_ready("head", "");
    s.file("page.html", "<p>a page</p>\n");
    let get = s.get("/page.html");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"<p>a page</p>\n");

    let raw = s.raw(b"HEAD /page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(&raw), "HTTP/1.1 200 OK");
    let head = Response::parse_with(&raw, true).expect("a HEAD response");
    assert_eq!(head.header("content-length"), Some("14"));
    assert!(head.rest.is_empty(), "HEAD carried a body: {:?}", head.rest);
    // GET was sent with Connection: close too, so the header sets must be identical.
    assert_eq!(stable_headers(&head), stable_headers(&get));
}

#[test]
fn options_is_204_with_allow() {
    let s = Srvd::start_ready("options", "");
    for target in ["/", "/index.html", "*"] {
        let raw = s.raw(
            format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_line(&raw), "HTTP/1.1 204 No Content", "{target}");
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{target}");
        assert_eq!(r.header("content-length"), Some("0"), "{target}");
        assert!(r.rest.is_empty(), "{target}: 204 with a body: {:?}", r.rest);
    }
}

#[test]
fn post_put_delete_are_405_with_allow() {
    let s = Srvd::start_ready("405", "");
    for method in ["POST", "PUT", "DELETE"] {
        let raw = s.raw(
            format!(
                "{method} /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(
            status_line(&raw),
            "HTTP/1.1 405 Method Not Allowed",
            "{method}"
        );
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{method}");
        assert_ne!(r.body, b"hello\n", "{method} served the file");
    }
    // The file is untouched.
    assert_eq!(s.get("/index.html").body, b"hello\n");
}

#[test]
fn unknown_method_is_501() {
    let s = Srvd::start_ready("501", "");
    let raw = s.raw(b"BREW /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_line(&raw), "HTTP/1.1 501 Not Implemented");
    let r = Response::parse(&raw).unwrap();
    assert_eq!(r.header("allow"), None);
    assert_ne!(r.body, b"hello\n");
}

#[test]
fn every_response_has_content_length_date_and_server() {
    let s = Srvd::start_ready("mandatory", "");
    s.file("dir/index.html", "in dir\n");
    let cases: &[(&str, &str)] = &[
        ("GET /index.html HTTP/1.1", "HTTP/1.1 200 OK"),
        ("GET /missing HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ("GET /dir HTTP/1.1", "HTTP/1.1 301 Moved Permanently"),
        ("OPTIONS / HTTP/1.1", "HTTP/1.1 204 No Content"),
        ("DELETE / HTTP/1.1", "HTTP/1.1 405 Method Not Allowed"),
        ("BREW / HTTP/1.1", "HTTP/1.1 501 Not Implemented"),
        ("GET /../x HTTP/1.1", "HTTP/1.1 400 Bad Request"),
        ("GET /index.html HTTP/1.0", "HTTP/1.1 200 OK"),
    ];
    for (line, want) in cases {
        let raw = s.raw(format!("{line}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(&status_line(&raw), want, "{line}");
        let r = Response::parse(&raw).unwrap_or_else(|| panic!("{line}: unparsable"));
        let len: usize = r
            .header("content-length")
            .unwrap_or_else(|| panic!("{line}: no Content-Length"))
            .parse()
            .unwrap();
        assert_eq!(len, r.body.len(), "{line}");
        assert!(r.rest.is_empty(), "{line}: bytes beyond Content-Length");
        let date = r
            .header("date")
            .unwrap_or_else(|| panic!("{line}: no Date"));
        assert!(
            httpdate::parse_http_date(date).is_ok(),
            "{line}: Date {date:?} is not an HTTP-date"
        );
        assert_eq!(r.header("server"), Some("srvd"), "{line}");
    }
}

#[test]
fn http11_serves_two_requests_on_one_connection() {
    let s = Srvd::start_ready("ka11", "");
    s.file("b.txt", "bee\n");
    let mut c = s.connect();
    let a = exchange(&mut c, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"hello\n");
    assert_eq!(a.header("connection"), None);
    let b = exchange(&mut c, "GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(b.status, 200);
    assert_eq!(b.body, b"bee\n");
}

#[test]
fn http10_closes_by_default() {
    let s = Srvd::start_ready("close10", "");
    let mut c = s.connect();
    c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let raw = read_until_eof(&mut c).expect("server closes an HTTP/1.0 connection");
    assert_eq!(status_line(&raw), "HTTP/1.1 200 OK");
    let r = Response::parse(&raw).unwrap();
    assert_eq!(r.body, b"hello\n");
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn http10_keeps_alive_when_asked() {
    let s = Srvd::start_ready("ka10", "");
    let mut c = s.connect();
    let req = "GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let first = exchange(&mut c, req, false);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.body, b"hello\n");
    assert!(first.rest.is_empty());
    let second = exchange(&mut c, req, false);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("keep-alive"));
    assert_eq!(second.body, b"hello\n");
    // Without the header the third one ends the connection.
    c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let raw = read_until_eof(&mut c).expect("closed after a plain HTTP/1.0 request");
    assert_eq!(Response::parse(&raw).unwrap().body, b"hello\n");
}

#[test]
fn connection_close_is_honoured() {
    let s = Srvd::start_ready("close11", "");
    let mut c = s.connect();
    // A second request after the one saying "close" must not be answered.
    c.write_all(
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
          GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let raw = read_until_eof(&mut c).expect("server closes after Connection: close");
    let all = Response::parse_all(&raw);
    assert_eq!(all.len(), 1, "answered past Connection: close");
    assert_eq!(all[0].status, 200);
    assert_eq!(all[0].header("connection"), Some("close"));
    assert_eq!(all[0].body, b"hello\n");
    assert!(all[0].rest.is_empty());
}

#[test]
fn three_pipelined_requests_get_three_responses_in_order() {
    let s = Srvd::start_ready("pipeline", "");
    s.file("one.txt", "1\n");
    s.file("two.txt", "22\n");
    s.file("three.txt", "333\n");
    let raw = s.raw(
        b"GET /one.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /two.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /three.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let first = Response::parse(&raw).expect("first response");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"1\n");
    let second = Response::parse_with(&first.rest, true).expect("second response");
    assert_eq!(second.status, 200);
    assert_eq!(second.header("content-length"), Some("3"));
    let third = Response::parse(&second.rest).expect("third response");
    assert_eq!(third.status, 200);
    assert_eq!(third.body, b"333\n");
    assert_eq!(third.header("connection"), Some("close"));
    assert!(third.rest.is_empty(), "extra bytes: {:?}", third.rest);
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let s = Srvd::start_ready("trickle", "");
    let mut c = s.connect();
    c.set_nodelay(true).unwrap();
    for b in b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        c.write_all(&[*b]).unwrap();
        c.flush().unwrap();
    }
    let raw = read_until_eof(&mut c).expect("response then close");
    assert_eq!(status_line(&raw), "HTTP/1.1 200 OK");
    let r = Response::parse(&raw).unwrap();
    assert_eq!(r.body, b"hello\n");
    assert!(r.rest.is_empty());
}
