//! Request-head parsing (RFC 9112) on top of httparse.
//!
//! [`parse`] looks at the bytes buffered for a connection and answers:
//! - `Ok(None)`: the head is incomplete, read more (not an error);
//! - `Ok(Some(request))`: a complete head, borrowing from the buffer;
//! - `Err(ParseError)`: the head is malformed or too large. [`ParseError::status`] is the one
//!   place a parse error becomes a status; the connection is closed after answering it,
//!   because its framing can no longer be trusted.
//!
//! Limits, checked even before the head is complete so a client cannot make us buffer more:
//! the request line at most [`MAX_REQUEST_LINE`] bytes (else 414), the header block at most
//! [`MAX_HEADER_BLOCK`] bytes and [`MAX_HEADERS`] fields (else 431).

use crate::http::Status;

/// Longest request line accepted, in bytes (414 beyond). nginx's large buffer is 8 KiB too.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest header block accepted, in bytes (431 beyond).
pub const MAX_HEADER_BLOCK: usize = 32 * 1024;
/// Most header fields accepted (431 beyond).
pub const MAX_HEADERS: usize = 100;
/// The most a connection ever buffers for one head: line, CRLF, block.
pub const MAX_HEAD: usize = MAX_REQUEST_LINE + 2 + MAX_HEADER_BLOCK;

/// The request method, as far as a static server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// A registered method srvd does not allow on files (POST, PUT, ...): 405.
    NotAllowed,
    /// Any other token: 501.
    Unknown,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" | "PUT" | "DELETE" | "PATCH" | "CONNECT" | "TRACE" => Method::NotAllowed,
            _ => Method::Unknown,
        }
    }
}

/// How the request's body (if any) is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed line or header, bad Host, bad framing headers.
    Malformed,
    /// Request line longer than [`MAX_REQUEST_LINE`].
    UriTooLong,
    /// Header block longer than [`MAX_HEADER_BLOCK`] or more than [`MAX_HEADERS`] fields.
    HeadersTooLarge,
    /// An HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
    /// A transfer coding other than chunked.
    UnsupportedTransferCoding,
    /// An expectation other than 100-continue.
    ExpectationFailed,
}

impl ParseError {
    /// The one mapping from parse errors to statuses.
    pub fn status(self) -> Status {
        match self {
            ParseError::Malformed => Status::BadRequest,
            ParseError::UriTooLong => Status::UriTooLong,
            ParseError::HeadersTooLarge => Status::HeaderFieldsTooLarge,
            ParseError::VersionNotSupported => Status::VersionNotSupported,
            ParseError::UnsupportedTransferCoding => Status::NotImplemented,
            ParseError::ExpectationFailed => Status::ExpectationFailed,
        }
    }
}

/// A complete request head; every slice borrows from the connection's buffer.
#[derive(Debug)]
pub struct Request<'b> {
    pub method: Method,
    pub method_str: &'b str,
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Bytes of the buffer the head used, leading empty lines included.
    pub head_len: usize,
    pub body: BodyFraming,
    pub connection_close: bool,
    pub connection_keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` field: a protocol switch (websocket) asked for.
    pub upgrade: Option<&'b [u8]>,
    /// `Expect: 100-continue` was sent (the only expectation accepted).
    pub expect_continue: bool,
    pub host: Option<&'b [u8]>,
    pub if_match: Option<&'b [u8]>,
    pub if_none_match: Option<&'b [u8]>,
    pub if_modified_since: Option<&'b [u8]>,
    pub if_unmodified_since: Option<&'b [u8]>,
    pub range: Option<&'b [u8]>,
    pub if_range: Option<&'b [u8]>,
    pub user_agent: Option<&'b [u8]>,
    pub referer: Option<&'b [u8]>,
    pub accept: Option<&'b [u8]>,
    pub accept_encoding: Option<&'b [u8]>,
    /// `Cache-Control: no-transform` (RFC 9111 §5.2.1.6): no on-the-fly encoding.
    pub no_transform: bool,
}

impl Request<'_> {
    /// Whether the connection may stay open after this request (RFC 9112 §9.3):
    /// HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive".
    pub fn keep_alive(&self) -> bool {
        if self.connection_close {
            false
        } else {
            self.minor >= 1 || self.connection_keep_alive
        }
    }
}

/// Parses the head at the start of `buf`. See the module docs for the three outcomes.
pub fn parse(buf: &[u8]) -> Result<Option<Request<'_>>, ParseError> {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    let skip = leading_empty_lines(buf);
    if skip > MAX_REQUEST_LINE {
        // Tolerance for stray empty lines, not a way to fill our buffer with nothing.
        return Err(ParseError::Malformed);
    }
    let buf = &buf[skip..];
    if buf.is_empty() {
        return Ok(None);
    }
    let line_end = match memchr(b'\n', &buf[..buf.len().min(MAX_REQUEST_LINE + 2)]) {
        Some(i) => i,
        None if buf.len() > MAX_REQUEST_LINE + 1 => return Err(ParseError::UriTooLong),
        None => return Ok(None),
    };
    let line = strip_cr(&buf[..line_end]);
    if line.len() > MAX_REQUEST_LINE {
        return Err(ParseError::UriTooLong);
    }
    let later_minor = check_version(line)?;

    // Uninitialised slots: zeroing 100 headers per request would cost more than parsing.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let mut later_headers;
    let (method_str, target, minor, head_len, fields): (
        &str,
        &str,
        u8,
        usize,
        &[httparse::Header],
    ) = if later_minor {
        // HTTP/1.2 and up: served as HTTP/1.1 (RFC 9110 §2.5). httparse reads only 1.0
        // and 1.1 request lines, so this line is split here and its fields parsed by
        // httparse on their own.
        later_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (method, target) = split_request_line(line)?;
        let rest = &buf[line_end + 1..];
        let n = match httparse::parse_headers(rest, &mut later_headers) {
            Ok(httparse::Status::Complete((n, _))) => n,
            Ok(httparse::Status::Partial) => {
                return if rest.len() > MAX_HEADER_BLOCK + 2 {
                    Err(ParseError::HeadersTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
            Err(_) => return Err(ParseError::Malformed),
        };
        let count = later_headers
            .iter()
            .take_while(|h| !h.name.is_empty())
            .count();
        (method, target, 1, line_end + 1 + n, &later_headers[..count])
    } else {
        let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() - line_end > MAX_HEADER_BLOCK + 2 {
                    Err(ParseError::HeadersTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
            Err(httparse::Error::Version) => return Err(ParseError::VersionNotSupported),
            Err(_) => return Err(ParseError::Malformed),
        };
        (
            req.method.expect("httparse completed"),
            req.path.expect("httparse completed"),
            req.version.expect("httparse completed"),
            head_len,
            &*req.headers,
        )
    };
    if head_len - line_end > MAX_HEADER_BLOCK + 2 {
        return Err(ParseError::HeadersTooLarge);
    }

    let mut out = Request {
        method: Method::from_token(method_str),
        method_str,
        target,
        minor,
        head_len: skip + head_len,
        body: BodyFraming::None,
        connection_close: false,
        connection_keep_alive: false,
        upgrade: None,
        expect_continue: false,
        host: None,
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        if_unmodified_since: None,
        range: None,
        if_range: None,
        user_agent: None,
        referer: None,
        accept: None,
        accept_encoding: None,
        no_transform: false,
    };
    let mut hosts = 0;
    let mut connection_upgrade = false;
    let mut content_length: Option<u64> = None;
    let mut transfer_coding = TransferCoding::default();
    for h in fields.iter() {
        let v = trim(h.value);
        let name = h.name;
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        // By length first: most fields are told apart without comparing a byte.
        match name.len() {
            4 if is("host") => {
                hosts += 1;
                out.host = Some(v);
            }
            5 if is("range") => out.range = Some(v),
            6 if is("accept") => out.accept = Some(v),
            6 if is("expect") => {
                if !v.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ParseError::ExpectationFailed);
                }
                out.expect_continue = true;
            }
            7 if is("referer") => out.referer = Some(v),
            7 if is("upgrade") => out.upgrade = Some(v),
            8 if is("if-match") => out.if_match = Some(v),
            8 if is("if-range") => out.if_range = Some(v),
            10 if is("user-agent") => out.user_agent = Some(v),
            10 if is("connection") => {
                for token in v.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        out.connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        out.connection_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        connection_upgrade = true;
                    }
                }
            }
            13 if is("if-none-match") => out.if_none_match = Some(v),
            13 if is("cache-control") => {
                out.no_transform |= v
                    .split(|&b| b == b',')
                    .any(|d| trim(d).eq_ignore_ascii_case(b"no-transform"));
            }
            14 if is("content-length") => {
                // RFC 9112 §6.3: differing values are unrecoverable; a list of equal
                // values is the same length repeated.
                for item in v.split(|&b| b == b',').map(trim) {
                    let n = parse_decimal(item).ok_or(ParseError::Malformed)?;
                    if content_length.is_some_and(|old| old != n) {
                        return Err(ParseError::Malformed);
                    }
                    content_length = Some(n);
                }
            }
            15 if is("accept-encoding") => out.accept_encoding = Some(v),
            17 if is("if-modified-since") => out.if_modified_since = Some(v),
            17 if is("transfer-encoding") => transfer_coding.add(v)?,
            19 if is("if-unmodified-since") => out.if_unmodified_since = Some(v),
            _ => {}
        }
    }
    if !connection_upgrade || minor == 0 {
        out.upgrade = None;
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host, or with an empty one, is 400.
    if hosts > 1 || (minor == 1 && out.host.is_none_or(|h| h.is_empty())) {
        return Err(ParseError::Malformed);
    }
    // ... and so is one whose value is not `host [ ":" port ]` (RFC 3986 §3.2.2).
    if out.host.is_some_and(|h| !super::host::valid(h)) {
        return Err(ParseError::Malformed);
    }
    if transfer_coding.present {
        // RFC 9112 §6.1: TE with Content-Length, or TE in HTTP/1.0, is a framing error.
        if content_length.is_some() || minor == 0 {
            return Err(ParseError::Malformed);
        }
        transfer_coding.finish()?;
        out.body = BodyFraming::Chunked;
    } else if let Some(n) = content_length.filter(|&n| n > 0) {
        out.body = BodyFraming::Length(n);
    }
    Ok(Some(out))
}

/// The request line's shape (RFC 9112 §3): `method SP target SP HTTP/DIGIT.DIGIT`, one
/// SP each. More spaces, or a version of another shape (`HTTP/1.11`, `HTTP/10.0`), is a
/// 400; a well-formed `HTTP/2.0` or above is a 505. `HTTP/1.2` and up are served as
/// HTTP/1.1 (RFC 9110 §2.5): `Ok(true)` says so, and the caller parses that line itself
/// (httparse reads only 1.0 and 1.1).
fn check_version(line: &[u8]) -> Result<bool, ParseError> {
    // httparse refuses a second SP after the method; one before the version would reach
    // its version check (a 505), so it is caught here.
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(i) if i > 0 && line[i - 1] != b' ' => &line[i + 1..],
        _ => return Err(ParseError::Malformed),
    };
    if version == b"HTTP/1.1" || version == b"HTTP/1.0" {
        return Ok(false);
    }
    match version.strip_prefix(b"HTTP/") {
        Some([b'1', b'.', minor]) if minor.is_ascii_digit() => Ok(true),
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(ParseError::VersionNotSupported)
        }
        _ => Err(ParseError::Malformed),
    }
}

/// `method SP target SP version` of a line already checked by [`check_version`]: the
/// method a token, the target visible ASCII, as httparse would insist.
fn split_request_line(line: &[u8]) -> Result<(&str, &str), ParseError> {
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::Malformed)?;
    let sp2 = line
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::Malformed)?;
    let (method, target) = (&line[..sp1], &line[sp1 + 1..sp2.max(sp1 + 1)]);
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if method.is_empty()
        || !method.iter().all(tchar)
        || target.is_empty()
        || !target.iter().all(|&b| (0x21..0x7f).contains(&b))
    {
        return Err(ParseError::Malformed);
    }
    // ASCII only, checked above.
    fn text(b: &[u8]) -> Result<&str, ParseError> {
        std::str::from_utf8(b).map_err(|_| ParseError::Malformed)
    }
    Ok((text(method)?, text(target)?))
}

/// The Transfer-Encoding field lines of a request, folded into one list (RFC 9110 §5.3).
#[derive(Default)]
struct TransferCoding {
    present: bool,
    chunked: u32,
    last_is_chunked: bool,
    other: bool,
}

impl TransferCoding {
    /// One field line: a comma-separated list of codings, each a token with optional
    /// parameters. Junk that is not a token is a 400.
    fn add(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.present = true;
        for item in value.split(|&b| b == b',').map(trim) {
            if item.is_empty() {
                continue; // RFC 9110 §5.6.1: empty list elements are ignored
            }
            let name = trim(item.split(|&b| b == b';').next().unwrap_or(item));
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(ParseError::Malformed);
            }
            self.last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if self.last_is_chunked {
                self.chunked += 1;
            } else {
                self.other = true;
            }
        }
        Ok(())
    }

    /// RFC 9112 §6.3: unless chunked is the final coding, and only once, the body length
    /// cannot be known: 400 (and the connection closes). A coding srvd does not implement
    /// before it (`gzip, chunked`) is a 501 (§6.1).
    fn finish(&self) -> Result<(), ParseError> {
        if self.chunked != 1 || !self.last_is_chunked {
            return Err(ParseError::Malformed);
        }
        if self.other {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    while i < buf.len() && (buf[i] == b'\n' || (buf[i] == b'\r' && buf.get(i + 1) == Some(&b'\n')))
    {
        i += if buf[i] == b'\r' { 2 } else { 1 };
    }
    i
}

/// A decimal without sign, at most 19 digits (fits u64).
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Trims optional whitespace (SP, HTAB) at both ends.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(raw: &str) -> Result<Option<u16>, u16> {
        match parse(raw.as_bytes()) {
            Ok(Some(_)) => Ok(Some(200)),
            Ok(None) => Ok(None),
            Err(e) => Err(e.status().code()),
        }
    }

    #[test]
    fn table() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: {}\r\n\r\n",
            "b".repeat(MAX_HEADER_BLOCK)
        );
        let blank_flood = format!(
            "{}GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "\r\n".repeat(MAX_REQUEST_LINE)
        );
        let cases: &[(&str, Result<Option<u16>, u16>)] = &[
            (&blank_flood, Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.1\r\nHost: a\r\n", Ok(None)),
            ("GET / HTTP/1.1\r\n", Ok(None)),
            ("GE", Ok(None)),
            ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.0\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.1\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(400)),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(505)),
            ("GET / HTTP/3.7\r\nHost: a\r\n\r\n", Err(505)),
            ("GET / HTTX/1.1\r\nHost: a\r\n\r\n", Err(400)),
            ("GET /\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n  folded\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(501)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", Ok(Some(200))),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.11\r\nHost: a\r\n\r\n", Err(400)),
            ("GET / HTTP/10.0\r\nHost: a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", Ok(Some(200))),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", Err(417)),
            (&long_target, Err(414)),
            (&many, Err(431)),
            (&big, Err(431)),
        ];
        for (raw, want) in cases {
            assert_eq!(&status_of(raw), want, "{:?}", &raw[..raw.len().min(80)]);
        }
    }

    #[test]
    fn long_line_without_newline_is_414_before_complete() {
        let raw = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE + 10));
        assert_eq!(parse(raw.as_bytes()).unwrap_err(), ParseError::UriTooLong);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |raw: &str| parse(raw.as_bytes()).unwrap().unwrap().keep_alive();
        assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn fields_and_lengths() {
        let raw =
            b"GET /x?y HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1 \r\nContent-Length: 5\r\n\r\nhello";
        let r = parse(raw).unwrap().unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/x?y");
        assert_eq!(r.range, Some(&b"bytes=0-1"[..]));
        assert_eq!(r.body, BodyFraming::Length(5));
        assert_eq!(r.head_len, raw.len() - 5);
    }

    #[test]
    fn methods() {
        let m = |raw: &str| parse(raw.as_bytes()).unwrap().unwrap().method;
        assert_eq!(m("HEAD / HTTP/1.0\r\n\r\n"), Method::Head);
        assert_eq!(m("POST / HTTP/1.0\r\n\r\n"), Method::NotAllowed);
        assert_eq!(m("BREW / HTTP/1.0\r\n\r\n"), Method::Unknown);
    }
}
