//! The reverse proxy's wire format toward the app server: pure, no sockets.
//!
//! - [`parse_response`] reads an upstream response head (httparse plus the RFC 9112 §6.3
//!   framing rules) and says how its body is delimited, whether the upstream closes after it
//!   and whether it must be streamed. Like the request parser it answers `Ok(None)` for "read
//!   more", and refuses what a strict parser must (CL with TE, differing lengths): the proxy
//!   answers 502 and closes the upstream connection.
//! - [`write_request`] writes the request head srvd sends upstream: the client's fields minus
//!   the hop-by-hop ones and the framing ones (srvd re-frames every body with a
//!   Content-Length), plus `X-Forwarded-*` and `Via`.
//! - [`Cidr`] is an address range of `trusted_proxies`, the peers whose forwarding fields
//!   are believed.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::http::request::{parse_decimal, trim};

/// Most header fields accepted in an upstream response head (more is [`UpstreamError::TooLarge`]).
/// The same bound as for requests, and gunicorn's own `limit_request_fields` default.
pub const MAX_RESPONSE_HEADERS: usize = 100;

/// The `Via` entry srvd adds to a forwarded request (RFC 9110 §7.6.3).
const VIA: &[u8] = b"1.1 srvd";

/// A complete upstream response head; every slice borrows from the buffer.
#[derive(Debug)]
pub struct ResponseHead<'b> {
    pub status: u16,
    /// The reason phrase, empty if there was none (or it had non-ASCII bytes).
    pub reason: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Every header line as received (name, value with surrounding whitespace trimmed), for
    /// relaying minus the hop-by-hop ones ([`is_hop_by_hop`]).
    pub headers: Vec<(&'b str, &'b [u8])>,
    /// Bytes of the buffer the head used; the body (or the next head) starts there.
    pub head_len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The Content-Length field's value, even when it does not frame a body (a response to
    /// HEAD, or a 304, may carry the length a GET would have had).
    pub content_length: Option<u64>,
    /// The upstream will close after this response (`Connection: close`, HTTP/1.0 without
    /// keep-alive, or a body delimited by the close): the connection is not pooled.
    pub close: bool,
    /// `X-Accel-Buffering: no` or `Content-Type: text/event-stream`: relay each piece at once
    /// instead of buffering.
    pub streaming: bool,
}

impl ResponseHead<'_> {
    /// An interim response (1xx other than 101, RFC 9110 §15.2): no body; the caller skips
    /// its `head_len` bytes and parses the final response that follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// How an upstream response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, 1xx (101 included: the tunnel starts at `head_len`),
    /// 204, 304.
    None,
    /// Exactly this many bytes (possibly 0).
    Length(u64),
    /// The chunked coding ([`crate::http::chunked::Decoder`]).
    Chunked,
    /// Everything until the upstream closes: no Content-Length and no Transfer-Encoding, or
    /// a Transfer-Encoding whose final coding is not chunked.
    UntilClose,
}

/// Why an upstream response head was refused. Either way the proxy answers 502 (if nothing
/// was sent to the client yet) and closes the upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Not HTTP/1.x, a bad status line or field line, a status outside 100..=599, or framing
    /// that cannot be trusted: Content-Length with Transfer-Encoding, differing or bad
    /// Content-Lengths, Transfer-Encoding in HTTP/1.0, chunked applied twice.
    Malformed,
    /// The head is longer than `max_head`, or has more than [`MAX_RESPONSE_HEADERS`] fields.
    TooLarge,
}

/// Parses the upstream response head at the start of `buf`.
///
/// - `Ok(None)`: incomplete, read more (while `buf` is at most `max_head` bytes).
/// - `Ok(Some(head))`: a complete head. An interim response (1xx other than 101,
///   [`ResponseHead::is_interim`]) is returned like any other, with [`Framing::None`]: the
///   caller skips it (`head_len` bytes) and parses again for the final response.
/// - `Err(_)`: see [`UpstreamError`].
///
/// `request_was_head`: the request was HEAD, so the response has no body whatever its fields
/// say. The framing fields are checked even when they do not frame a body, because an
/// upstream that sends contradictory ones cannot be trusted with the rest of the connection.
pub fn parse_response(
    buf: &[u8],
    request_was_head: bool,
    max_head: usize,
) -> Result<Option<ResponseHead<'_>>, UpstreamError> {
    // Parse at most `max_head` bytes: a head that does not end within them is too large.
    let window = &buf[..buf.len().min(max_head)];
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(UpstreamError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(UpstreamError::TooLarge),
        Err(_) => return Err(UpstreamError::Malformed),
    };
    let status = res.code.expect("httparse completed");
    let minor = res.version.expect("httparse completed");
    let reason = res.reason.expect("httparse completed");
    if !(100..=599).contains(&status) {
        return Err(UpstreamError::Malformed); // RFC 9110 §15: outside 100..599 is invalid
    }

    let mut headers = Vec::with_capacity(res.headers.len());
    let mut content_length: Option<u64> = None;
    let mut coding = TransferCoding::default();
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut streaming = false;
    for h in res.headers.iter() {
        let (name, value) = (h.name, trim(h.value));
        headers.push((name, value));
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: a list of equal values is that value; differing ones are fatal.
            for item in value.split(|&b| b == b',').map(trim) {
                let n = parse_decimal(item).ok_or(UpstreamError::Malformed)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(UpstreamError::Malformed);
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coding.add(value)?;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list(value) {
                connection_close |= token.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("x-accel-buffering") {
            streaming |= value.eq_ignore_ascii_case(b"no");
        } else if name.eq_ignore_ascii_case("content-type") {
            let media_type = trim(value.split(|&b| b == b';').next().unwrap_or(value));
            streaming |= media_type.eq_ignore_ascii_case(b"text/event-stream");
        }
    }
    if coding.present {
        // RFC 9112 §6.2: never both; §6.1: TE in an HTTP/1.0 message is faulty framing;
        // §7.1: chunked at most once.
        if content_length.is_some() || minor == 0 || coding.chunked > 1 {
            return Err(UpstreamError::Malformed);
        }
    }
    // RFC 9112 §6.3, rules 1, 4, 6 and 7 in order (2 is CONNECT, which srvd does not proxy).
    let no_body =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else if coding.present {
        if coding.last_is_chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let close = connection_close
        || (minor == 0 && !connection_keep_alive)
        || framing == Framing::UntilClose;
    Ok(Some(ResponseHead {
        status,
        reason,
        minor,
        headers,
        head_len,
        framing,
        content_length,
        close,
        streaming,
    }))
}

/// The Transfer-Encoding field lines of a response, folded into one list (RFC 9110 §5.3).
#[derive(Default)]
struct TransferCoding {
    present: bool,
    chunked: u32,
    last_is_chunked: bool,
}

impl TransferCoding {
    /// One field line: codings, each a token with optional parameters. Junk, or a field
    /// with no coding at all, is malformed.
    fn add(&mut self, value: &[u8]) -> Result<(), UpstreamError> {
        self.present = true;
        let mut any = false;
        for item in list(value) {
            let name = trim(item.split(|&b| b == b';').next().unwrap_or(item));
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(UpstreamError::Malformed);
            }
            any = true;
            self.last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            self.chunked += u32::from(self.last_is_chunked);
        }
        if any {
            Ok(())
        } else {
            Err(UpstreamError::Malformed)
        }
    }
}

/// The fields that are never relayed from an upstream response to the client (RFC 9110
/// §7.6.1): Connection and the fields it names (`connection_names`, see
/// [`connection_names`]), Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
/// Upgrade, plus Content-Length, which srvd writes itself when it re-frames the body. (A 101's
/// Upgrade and Connection are the tunnel's business: the caller writes those itself.)
pub fn is_hop_by_hop(name: &str, connection_names: &[&[u8]]) -> bool {
    const FIELDS: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
        || connection_names
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name.as_bytes()))
}

/// The field names listed in every Connection field of `headers` (RFC 9112 §9.6), for
/// [`is_hop_by_hop`]. Options such as `close` and `keep-alive` are listed too; they name no
/// field, so that is harmless.
pub fn connection_names<'b>(headers: &[(&'b str, &'b [u8])]) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|&(_, value)| list(value))
        .collect()
}

/// What srvd forwards of one client request.
#[derive(Debug)]
pub struct Forward<'a> {
    pub method: &'a str,
    /// The path (and query) to send, already prefix-stripped by the caller.
    pub target: &'a str,
    /// The client's header lines (name, value) as parsed.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The client's address.
    pub peer: IpAddr,
    /// The peer is one of `trusted_proxies`: keep its X-Forwarded-For (append the peer),
    /// -Proto, -Host.
    pub peer_trusted: bool,
    /// "http" (or "https" later).
    pub proto: &'a str,
    /// `X-Forwarded-Prefix` when the route strips a prefix.
    pub prefix: Option<&'a str>,
    /// Content-Length of the (fully buffered) body, if any.
    pub body_len: Option<u64>,
}

/// Appends the request head srvd sends upstream: `METHOD target HTTP/1.1`, then the client's
/// fields in their order and spelling, minus:
/// - the hop-by-hop fields (RFC 9110 §7.6.1): Connection and the fields it names (never
///   Host), Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade;
/// - Expect (srvd answered it) and Content-Length (srvd re-frames the body);
/// - every field whose name contains `_` (WSGI maps `-` and `_` to the same environ key, so
///   `X_Forwarded_For` could pose as `X-Forwarded-For`);
/// - the forwarding fields, which srvd writes itself: X-Forwarded-For, -Proto, -Host (taken
///   over only from a trusted peer), X-Forwarded-Prefix (always dropped); `Forwarded` and
///   `X-Real-IP` make the same claims and are kept only from a trusted peer.
///
/// Then srvd's own: `X-Forwarded-For` (the peer, appended to the client's values when the
/// peer is trusted), `X-Forwarded-Proto` (`proto`, or the trusted client's), `X-Forwarded-Host`
/// (the client's Host, or the trusted client's X-Forwarded-Host), `X-Forwarded-Prefix` when
/// set, `Via: 1.1 srvd` (appended to the client's Via), `Content-Length` when `body_len` is
/// set. Host is passed as the client sent it; without one (HTTP/1.0) an empty Host is sent
/// (RFC 9112 §3.2). No Connection field: keep-alive is HTTP/1.1's default.
///
/// The names and values come from the request parser, so they hold no CR or LF.
pub fn write_request(f: &Forward, out: &mut Vec<u8>) {
    let hop = connection_names(f.headers);
    // One allocation for the whole head: what the client sent plus srvd's own fields.
    let fields: usize = f.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(f.method.len() + f.target.len() + fields + 192);
    out.extend_from_slice(f.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(f.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let mut host = None;
    let mut xff = Vec::new();
    let mut xfp = Vec::new();
    let mut xfh = Vec::new();
    let mut via = Vec::new();
    for &(name, value) in f.headers {
        let is = |field: &str| name.eq_ignore_ascii_case(field);
        if name.contains('_') {
            continue;
        }
        if is("host") {
            host = Some(value);
        } else if is_hop_by_hop(name, &hop) || is("expect") {
            continue;
        } else if is("x-forwarded-for") {
            join(&mut xff, value, f.peer_trusted);
            continue;
        } else if is("x-forwarded-proto") {
            join(&mut xfp, value, f.peer_trusted);
            continue;
        } else if is("x-forwarded-host") {
            join(&mut xfh, value, f.peer_trusted);
            continue;
        } else if is("via") {
            join(&mut via, value, true);
            continue;
        } else if is("x-forwarded-prefix")
            || (!f.peer_trusted && (is("forwarded") || is("x-real-ip")))
        {
            continue;
        }
        field(out, name.as_bytes(), value);
    }
    if host.is_none() {
        field(out, b"Host", b"");
    }

    out.extend_from_slice(b"X-Forwarded-For: ");
    if !xff.is_empty() {
        out.extend_from_slice(&xff);
        out.extend_from_slice(b", ");
    }
    push_ip(out, f.peer.to_canonical());
    out.extend_from_slice(b"\r\n");
    if xfp.is_empty() {
        field(out, b"X-Forwarded-Proto", f.proto.as_bytes());
    } else {
        field(out, b"X-Forwarded-Proto", &xfp);
    }
    match (xfh.is_empty(), host) {
        (false, _) => field(out, b"X-Forwarded-Host", &xfh),
        (true, Some(host)) => field(out, b"X-Forwarded-Host", host),
        (true, None) => {}
    }
    if let Some(prefix) = f.prefix {
        field(out, b"X-Forwarded-Prefix", prefix.as_bytes());
    }
    out.extend_from_slice(b"Via: ");
    if !via.is_empty() {
        out.extend_from_slice(&via);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(VIA);
    out.extend_from_slice(b"\r\n");
    if let Some(n) = f.body_len {
        field(
            out,
            b"Content-Length",
            itoa::Buffer::new().format(n).as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends an address as text (IPv4 without `fmt`, which costs more than the rest of the
/// head).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            write!(out, "{v6}").expect("writing to a Vec cannot fail");
        }
    }
}

/// Appends one field line.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the list elements of `value` (when `keep`) to a comma-separated list.
fn join(acc: &mut Vec<u8>, value: &[u8], keep: bool) {
    if !keep {
        return;
    }
    for item in list(value) {
        if !acc.is_empty() {
            acc.extend_from_slice(b", ");
        }
        acc.extend_from_slice(item);
    }
}

/// The non-empty elements of a comma-separated field value (RFC 9110 §5.6.1), trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An address range of `trusted_proxies`: `10.0.0.0/8`, `fd00::/8`, or one address
/// (`192.168.1.7`, `::1`) meaning a /32 or /128.
///
/// IPv4 and IPv6 meet through IPv4-mapped addresses (`::ffff:1.2.3.4`, what a dual-stack
/// socket reports for an IPv4 peer): such a peer is in the IPv4 ranges, and an IPv4 peer is in
/// the IPv6 ranges holding its mapped address (`::ffff:0:0/96`, `::/0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address: no bits set beyond the prefix.
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address[/prefix]`. A prefix longer than the address, or an address with bits
    /// set beyond its prefix (`10.0.0.1/8`, almost always a typo), is an error, returned as a
    /// message for the config's error report.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("invalid IP address {addr_text:?} in {text:?}"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "invalid prefix length {p:?} in {text:?} (0 to {bits})"
                    ))
                }
            },
        };
        let cidr = Cidr {
            addr: network(addr, prefix),
            prefix,
        };
        if cidr.addr != addr {
            return Err(format!(
                "{text:?} has bits set beyond its /{prefix} prefix (the range is {cidr})"
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => ip,
        };
        network(ip, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `addr` with the bits beyond `prefix` cleared (`prefix` at most the address's length).
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32 * 1024;

    /// (framing, close, streaming) of a head, or its error.
    type Outcome = Result<Option<(Framing, bool, bool)>, UpstreamError>;

    fn outcome(raw: &str, head: bool) -> Outcome {
        parse_response(raw.as_bytes(), head, MAX)
            .map(|r| r.map(|r| (r.framing, r.close, r.streaming)))
    }

    #[test]
    fn framing_table() {
        use Framing::*;
        use UpstreamError::*;
        let ok = |framing, close| Ok(Some((framing, close, false)));
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_RESPONSE_HEADERS + 1)
        );
        let enough = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
            "X-A: b\r\n".repeat(MAX_RESPONSE_HEADERS - 1)
        );
        let cases: &[(&str, bool, Outcome)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, ok(Length(5), false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, ok(Length(0), false)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, ok(Chunked, false)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", false, ok(Chunked, false)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", false, ok(Chunked, false)),
            // RFC 9112 §6.3 rule 4: chunked not last means "until close".
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, ok(UntilClose, true)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, ok(UntilClose, true)),
            ("HTTP/1.1 200 OK\r\n\r\n", false, ok(UntilClose, true)),
            ("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", false, ok(Length(1), false)),
            // No body whatever the fields say: HEAD, 1xx, 101, 204, 304.
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, ok(None, false)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, ok(None, false)),
            ("HTTP/1.1 200 OK\r\n\r\n", true, ok(None, false)),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, ok(None, false)),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false, ok(None, false)),
            ("HTTP/1.1 100 Continue\r\n\r\n", false, ok(None, false)),
            ("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false, ok(None, false)),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, ok(None, false)),
            // Content-Length lists (RFC 9110 §8.6) and bad lengths.
            ("HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n", false, ok(Length(1), false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", false, ok(Length(7), false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, Err(Malformed)),
            // CL with TE, even where neither frames a body.
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", true, Err(Malformed)),
            ("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err(Malformed)),
            // Connection: close, HTTP/1.0.
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false, ok(Length(0), true)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Upgrade, Close\r\n\r\n", false, ok(Length(0), true)),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, ok(Length(0), true)),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", false, ok(Length(0), false)),
            ("HTTP/1.0 200 OK\r\n\r\n", false, ok(UntilClose, true)),
            // Streaming.
            ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok(Some((Chunked, false, true)))),
            ("HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\n", false, Ok(Some((UntilClose, true, true)))),
            ("HTTP/1.1 200 OK\r\nX-Accel-Buffering: no\r\nContent-Length: 1\r\n\r\n", false, Ok(Some((Length(1), false, true)))),
            ("HTTP/1.1 200 OK\r\nX-Accel-Buffering: yes\r\nContent-Length: 1\r\n\r\n", false, ok(Length(1), false)),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/event-streams\r\nContent-Length: 1\r\n\r\n", false, ok(Length(1), false)),
            // Incomplete.
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false, Ok(Option::None)),
            ("HTTP/1.1 2", false, Ok(Option::None)),
            ("", false, Ok(Option::None)),
            // Malformed heads.
            ("HTTP/2 200 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 20 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 099 Low\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 600 High\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nX-A\r\n\r\n", false, Err(Malformed)),
            ("ICY 200 OK\r\n\r\n", false, Err(Malformed)),
            // The header count.
            (&enough, false, ok(Length(0), false)),
            (&many, false, Err(TooLarge)),
        ];
        for (raw, head, want) in cases {
            assert_eq!(&outcome(raw, *head), want, "{raw:?} head={head}");
        }
    }

    #[test]
    fn head_size_limit() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let head = raw.len() - 2;
        // Exactly max_head bytes of head, with the body after it: fine.
        let r = parse_response(raw, false, head).unwrap().unwrap();
        assert_eq!((r.head_len, r.framing), (head, Framing::Length(2)));
        // One byte more than max_head: too large, even though it would complete.
        assert_eq!(
            parse_response(raw, false, head - 1).unwrap_err(),
            UpstreamError::TooLarge
        );
        // Incomplete with exactly max_head bytes buffered: read more; one byte over: too large.
        assert!(parse_response(&raw[..head - 1], false, head - 1)
            .unwrap()
            .is_none());
        assert_eq!(
            parse_response(&raw[..head - 1], false, head - 2).unwrap_err(),
            UpstreamError::TooLarge
        );
        let endless = format!("HTTP/1.1 200 OK\r\nX-A: {}", "b".repeat(MAX));
        assert_eq!(
            parse_response(endless.as_bytes(), false, MAX).unwrap_err(),
            UpstreamError::TooLarge
        );
    }

    #[test]
    fn fields_are_kept_as_received() {
        let raw = b"HTTP/1.1 404 Not Found\r\nServer: app\r\nX-Two:  a, b \r\nContent-Length: 3\r\n\r\nnop";
        let r = parse_response(raw, false, MAX).unwrap().unwrap();
        assert_eq!((r.status, r.reason, r.minor), (404, "Not Found", 1));
        assert_eq!(r.head_len, raw.len() - 3);
        assert_eq!(r.content_length, Some(3));
        assert_eq!(
            r.headers,
            [
                ("Server", &b"app"[..]),
                ("X-Two", b"a, b"),
                ("Content-Length", b"3")
            ]
        );
        assert!(!r.is_interim());
        let r = parse_response(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            MAX,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.framing, r.content_length), (Framing::None, Some(9)));
    }

    #[test]
    fn interim_responses_are_skipped_by_the_caller() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut at = 0;
        let mut seen = Vec::new();
        let last = loop {
            let r = parse_response(&raw[at..], false, MAX).unwrap().unwrap();
            seen.push(r.status);
            at += r.head_len;
            if !r.is_interim() {
                break r;
            }
            assert_eq!(r.framing, Framing::None);
        };
        assert_eq!(seen, [100, 103, 200]);
        assert_eq!(last.framing, Framing::Length(2));
        assert_eq!(&raw[at..], b"ok");
        let r = parse_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, MAX)
            .unwrap()
            .unwrap();
        assert!(!r.is_interim());
    }

    #[test]
    fn hop_by_hop_fields() {
        let named: &[&[u8]] = &[b"keep-alive", b"X-Secret"];
        let cases = [
            ("Connection", true),
            ("keep-alive", true),
            ("Proxy-Connection", true),
            ("TE", true),
            ("Trailer", true),
            ("Transfer-Encoding", true),
            ("Upgrade", true),
            ("Content-Length", true),
            ("x-secret", true),
            ("X-Secret-Not", false),
            ("Content-Type", false),
            ("Set-Cookie", false),
            ("Trailers", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_hop_by_hop(name, named), want, "{name}");
        }
        assert!(!is_hop_by_hop("X-Secret", &[]));
        let headers: &[(&str, &[u8])] = &[
            ("Connection", b"close, X-A"),
            ("X-A", b"1"),
            ("connection", b" ,x-b ,"),
        ];
        assert_eq!(connection_names(headers), [&b"close"[..], b"X-A", b"x-b"]);
    }

    fn forward<'a>(headers: &'a [(&'a str, &'a [u8])], trusted: bool) -> Forward<'a> {
        Forward {
            method: "GET",
            target: "/users/7?x=1",
            headers,
            peer: "192.0.2.9".parse().unwrap(),
            peer_trusted: trusted,
            proto: "http",
            prefix: None,
            body_len: None,
        }
    }

    fn written(f: &Forward) -> String {
        let mut out = Vec::new();
        write_request(f, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn typical_request_exact() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"example.com"),
            ("User-Agent", b"curl/8"),
            ("Accept", b"*/*"),
            ("Connection", b"keep-alive"),
            ("Content-Length", b"5"),
            ("Expect", b"100-continue"),
        ];
        let mut f = forward(headers, false);
        f.method = "POST";
        f.prefix = Some("/api");
        f.body_len = Some(5);
        assert_eq!(
            written(&f),
            "POST /users/7?x=1 HTTP/1.1\r\n\
             Host: example.com\r\n\
             User-Agent: curl/8\r\n\
             Accept: */*\r\n\
             X-Forwarded-For: 192.0.2.9\r\n\
             X-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: example.com\r\n\
             X-Forwarded-Prefix: /api\r\n\
             Via: 1.1 srvd\r\n\
             Content-Length: 5\r\n\
             \r\n"
        );
    }

    #[test]
    fn request_fields_dropped_and_kept() {
        // (client fields, trusted peer, lines that must appear, substrings that must not)
        type Case<'a> = (
            &'a [(&'a str, &'a [u8])],
            bool,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            // Hop-by-hop, and what Connection names.
            (
                &[
                    ("Host", b"a"),
                    ("Connection", b"keep-alive, X-Secret"),
                    ("X-Secret", b"s"),
                    ("Keep-Alive", b"timeout=5"),
                    ("Proxy-Connection", b"keep-alive"),
                    ("TE", b"trailers"),
                    ("Trailer", b"X-Sum"),
                    ("Transfer-Encoding", b"chunked"),
                    ("Upgrade", b"websocket"),
                    ("Expect", b"100-continue"),
                    ("Content-Length", b"3"),
                    ("X-Kept", b"k"),
                ],
                false,
                &["\r\nHost: a\r\n", "X-Kept: k\r\n"],
                &[
                    "onnection",
                    "X-Secret",
                    "Keep-Alive",
                    "TE:",
                    "Trailer",
                    "Transfer",
                    "Upgrade",
                    "Expect",
                    "Content-Length",
                ],
            ),
            // Connection cannot take Host away.
            (
                &[("Host", b"a"), ("Connection", b"Host")],
                false,
                &["\r\nHost: a\r\n"],
                &[],
            ),
            // Underscores.
            (
                &[
                    ("Host", b"a"),
                    ("X_Forwarded_For", b"6.6.6.6"),
                    ("Auth_User", b"root"),
                ],
                false,
                &["X-Forwarded-For: 192.0.2.9\r\n"],
                &["6.6.6.6", "Auth_User", "root"],
            ),
            // Spoofed forwarding fields from an untrusted peer: replaced.
            (
                &[
                    ("Host", b"a"),
                    ("X-Forwarded-For", b"6.6.6.6"),
                    ("X-Forwarded-Proto", b"https"),
                    ("X-Forwarded-Host", b"evil"),
                    ("X-Forwarded-Prefix", b"/admin"),
                    ("Forwarded", b"for=6.6.6.6"),
                    ("X-Real-IP", b"6.6.6.6"),
                ],
                false,
                &[
                    "X-Forwarded-For: 192.0.2.9\r\n",
                    "X-Forwarded-Proto: http\r\n",
                    "X-Forwarded-Host: a\r\n",
                ],
                &["6.6.6.6", "https", "evil", "admin", "Forwarded:", "Real"],
            ),
            // ... and from a trusted one: kept, the peer appended.
            (
                &[
                    ("Host", b"a"),
                    ("X-Forwarded-For", b"203.0.113.1, 10.0.0.1"),
                    ("x-forwarded-for", b"10.0.0.2"),
                    ("X-Forwarded-Proto", b"https"),
                    ("X-Forwarded-Host", b"public.example"),
                    ("X-Forwarded-Prefix", b"/admin"),
                    ("Forwarded", b"for=203.0.113.1"),
                ],
                true,
                &[
                    "X-Forwarded-For: 203.0.113.1, 10.0.0.1, 10.0.0.2, 192.0.2.9\r\n",
                    "X-Forwarded-Proto: https\r\n",
                    "X-Forwarded-Host: public.example\r\n",
                    "Forwarded: for=203.0.113.1\r\n",
                ],
                &["admin", "X-Forwarded-Host: a"],
            ),
            // Via appended.
            (
                &[("Host", b"a"), ("Via", b"1.0 fred, 1.1 p.example")],
                false,
                &["Via: 1.0 fred, 1.1 p.example, 1.1 srvd\r\n"],
                &[],
            ),
            // No Host (HTTP/1.0): an empty one, and no X-Forwarded-Host.
            (
                &[("Accept", b"*/*")],
                false,
                &["Host: \r\n"],
                &["X-Forwarded-Host"],
            ),
        ];
        for (headers, trusted, present, absent) in cases {
            let out = written(&forward(headers, *trusted));
            assert!(out.starts_with("GET /users/7?x=1 HTTP/1.1\r\n"), "{out}");
            assert!(out.ends_with("\r\n\r\n"), "{out}");
            for line in *present {
                assert_eq!(out.matches(line).count(), 1, "{line:?} once in\n{out}");
            }
            for text in *absent {
                assert!(!out.contains(text), "{text:?} in\n{out}");
            }
            assert_eq!(out.matches("X-Forwarded-For:").count(), 1, "{out}");
        }
    }

    #[test]
    fn mapped_peer_written_as_ipv4() {
        let mut f = forward(&[], false);
        f.peer = "::ffff:198.51.100.4".parse().unwrap();
        assert!(written(&f).contains("X-Forwarded-For: 198.51.100.4\r\n"));
        f.peer = "2001:db8::1".parse().unwrap();
        assert!(written(&f).contains("X-Forwarded-For: 2001:db8::1\r\n"));
    }

    #[test]
    fn cidr_parse() {
        let ok = |s: &str| Cidr::parse(s).map(|c| c.to_string());
        let cases: &[(&str, Option<&str>)] = &[
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("192.168.1.7", Some("192.168.1.7/32")),
            ("192.168.1.7/32", Some("192.168.1.7/32")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("fd00::/8", Some("fd00::/8")),
            ("::/0", Some("::/0")),
            ("::ffff:0:0/96", Some("::ffff:0.0.0.0/96")),
            ("10.0.0.1/8", None),
            ("fd00::1/8", None),
            ("10.0.0.0/33", None),
            ("::/129", None),
            ("10.0.0.0/", None),
            ("10.0.0.0/+8", None),
            ("10.0.0.0/8/8", None),
            ("10.0.0.0/ 8", None),
            ("/8", None),
            ("", None),
            ("10.0.0", None),
            ("010.0.0.1", None),
            ("256.0.0.1", None),
            ("[::1]", None),
            ("fe80::1%eth0", None),
            ("localhost", None),
            (" 10.0.0.1", None),
        ];
        for (text, want) in cases {
            assert_eq!(ok(text).ok().as_deref(), *want, "{text:?}");
        }
        assert_eq!(
            Cidr::parse("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has bits set beyond its /8 prefix (the range is 10.0.0.0/8)"
        );
    }

    #[test]
    fn cidr_contains() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("10.0.0.0/8", "::a01:203", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7/32", "192.168.1.8", false),
            ("0.0.0.0/0", "203.0.113.5", true),
            ("0.0.0.0/0", "::ffff:203.0.113.5", true),
            ("0.0.0.0/0", "::1", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
            ("::1", "::1", true),
            ("::1/128", "::2", false),
            ("::1", "127.0.0.1", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe00::1", false),
            ("fd00::/8", "10.0.0.1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", true),
            ("::ffff:0:0/96", "10.0.0.1", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.9.9.9", false),
        ];
        for (range, ip, want) in cases {
            let cidr = Cidr::parse(range).unwrap();
            assert_eq!(cidr.contains(ip.parse().unwrap()), *want, "{range} ∋ {ip}");
        }
    }
}
