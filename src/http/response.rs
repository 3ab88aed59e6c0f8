//! Response-head encoding into a reusable buffer, without format machinery on the hot path.
//!
//! [`Head`] says what a response is; [`Head::encode`] writes the status line and every header
//! in one pass. Every response carries `Date`, `Server` and `Content-Length` (even 304 and
//! HEAD, where it states what a GET would carry), so the client always knows the framing.

use crate::http::Status;
use crate::site::headers::{Applied, Builtin};

/// What the `Connection` header should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: nothing to say.
    Default,
    /// An HTTP/1.0 client asked for keep-alive and gets it.
    KeepAlive,
    Close,
}

/// `Content-Range` of a 206 or 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/len`
    Bytes { first: u64, last: u64, len: u64 },
    /// `bytes */len`
    Unsatisfied { len: u64 },
}

/// A response head, borrowed from wherever its values live.
#[derive(Debug)]
pub struct Head<'a> {
    pub status: Status,
    pub content_type: Option<&'a str>,
    pub content_length: u64,
    /// Preformatted IMF-fixdate (formatted once per cached file, not per response).
    pub last_modified: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub accept_ranges: bool,
    pub content_range: Option<ContentRange>,
    pub location: Option<&'a str>,
    pub allow: bool,
    pub connection: Connection,
    /// `Content-Encoding` of the variant sent.
    pub content_encoding: Option<&'static str>,
    /// The response could differ by Accept-Encoding: `Vary: Accept-Encoding`.
    pub vary_encoding: bool,
    /// From the site's `cache` preset (successful responses only).
    pub cache_control: Option<&'a str>,
    /// The site's header rules for this response: they replace or remove built-in
    /// headers and add their own at the end.
    pub rules: Rules<'a>,
}

/// The header rules of a response, as rules or already rendered.
#[derive(Debug, Clone, Copy)]
pub enum Rules<'a> {
    None,
    Applied(Applied<'a>),
    /// Pre-rendered `\r\nName: value` lines and the [`Builtin`] bits they suppress
    /// (kept per cached file).
    Rendered(&'a [u8], u8),
}

impl Rules<'_> {
    fn suppress(&self) -> u8 {
        match self {
            Rules::None => 0,
            Rules::Applied(a) => a.suppress(),
            Rules::Rendered(_, bits) => *bits,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Rules::None => {}
            Rules::Applied(a) => a.write(out),
            Rules::Rendered(block, _) => out.extend_from_slice(block),
        }
    }
}

/// The methods srvd serves, for `Allow`.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

impl<'a> Head<'a> {
    /// A head with only the status and framing set.
    pub fn new(status: Status, content_length: u64) -> Head<'a> {
        Head {
            status,
            content_type: None,
            content_length,
            last_modified: None,
            etag: None,
            accept_ranges: false,
            content_range: None,
            location: None,
            allow: false,
            connection: Connection::Default,
            content_encoding: None,
            vary_encoding: false,
            cache_control: None,
            rules: Rules::None,
        }
    }

    /// Appends the head, ending with the empty line, to `out`.
    pub fn encode(&self, date: &[u8], out: &mut Vec<u8>) {
        let off = self.rules.suppress();
        let on = |b: Builtin| off & b.bit() == 0;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.line().as_bytes());
        if on(Builtin::Server) {
            out.extend_from_slice(b"\r\nServer: srvd");
        }
        out.extend_from_slice(b"\r\nDate: ");
        out.extend_from_slice(date);
        if let Some(ct) = self.content_type.filter(|_| on(Builtin::ContentType)) {
            header(out, b"Content-Type", ct.as_bytes());
        }
        if let Some(ce) = self.content_encoding {
            header(out, b"Content-Encoding", ce.as_bytes());
        }
        out.extend_from_slice(b"\r\nContent-Length: ");
        number(out, self.content_length);
        if let Some(lm) = self.last_modified.filter(|_| on(Builtin::LastModified)) {
            header(out, b"Last-Modified", lm.as_bytes());
        }
        if let Some(etag) = self.etag.filter(|_| on(Builtin::ETag)) {
            header(out, b"ETag", etag.as_bytes());
        }
        if self.accept_ranges && on(Builtin::AcceptRanges) {
            out.extend_from_slice(b"\r\nAccept-Ranges: bytes");
        }
        if self.vary_encoding {
            out.extend_from_slice(b"\r\nVary: Accept-Encoding");
        }
        if let Some(cc) = self.cache_control.filter(|_| on(Builtin::CacheControl)) {
            header(out, b"Cache-Control", cc.as_bytes());
        }
        match self.content_range {
            Some(ContentRange::Bytes { first, last, len }) => {
                out.extend_from_slice(b"\r\nContent-Range: bytes ");
                number(out, first);
                out.push(b'-');
                number(out, last);
                out.push(b'/');
                number(out, len);
            }
            Some(ContentRange::Unsatisfied { len }) => {
                out.extend_from_slice(b"\r\nContent-Range: bytes */");
                number(out, len);
            }
            None => {}
        }
        if let Some(loc) = self.location {
            header(out, b"Location", loc.as_bytes());
        }
        if self.allow {
            header(out, b"Allow", ALLOW.as_bytes());
        }
        self.rules.write(out);
        match self.connection {
            Connection::Default => {}
            Connection::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
            Connection::Close => out.extend_from_slice(b"\r\nConnection: close"),
        }
        out.extend_from_slice(b"\r\n\r\n");
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_complete_head() {
        let mut h = Head::new(Status::PartialContent, 2);
        h.content_type = Some("text/plain");
        h.content_range = Some(ContentRange::Bytes {
            first: 0,
            last: 1,
            len: 10,
        });
        h.connection = Connection::Close;
        let mut out = Vec::new();
        h.encode(b"Sun, 06 Nov 1994 08:49:37 GMT", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 206 Partial Content\r\nServer: srvd\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\nContent-Range: bytes 0-1/10\r\n\
             Connection: close\r\n\r\n"
        );
    }
}

/// Adds `name: value` to the response head at the start of `out` (before the blank line
/// that ends it), for a field that depends on the connection rather than the resource:
/// `Strict-Transport-Security`, sent over TLS only. Nothing happens when `out` holds no
/// complete head.
pub fn insert_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let at = end + 2;
    let line = name
        .iter()
        .chain(b": ")
        .chain(value)
        .chain(b"\r\n")
        .copied();
    out.splice(at..at, line);
}

#[cfg(test)]
mod insert_field_tests {
    use super::insert_field;

    #[test]
    fn goes_before_the_blank_line_and_leaves_the_body() {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody".to_vec();
        insert_field(&mut out, b"Strict-Transport-Security", b"max-age=60");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nStrict-Transport-Security: max-age=60\r\n\r\nbody"
        );
        let mut partial = b"HTTP/1.1 200 OK\r\n".to_vec();
        insert_field(&mut partial, b"X", b"y");
        assert_eq!(partial, b"HTTP/1.1 200 OK\r\n");
    }
}
