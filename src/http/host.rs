//! The authority of a request: the Host header, or the authority of an absolute-form
//! target (RFC 9112 §3.2, RFC 3986 §3.2.2).
//!
//! `authority = host [ ":" port ]`, `host = IP-literal / IPv4address / reg-name`,
//! `port = *DIGIT`. Anything else is a 400 (RFC 9112 §3.2: "a Host header field with an
//! invalid field value").
//!
//! Two rules are stricter than RFC 3986, on purpose, because srvd matches host names
//! against its configuration and a name must have one spelling only:
//! - no percent-encoding in a reg-name (`%31` would otherwise name `1`);
//! - a reg-name whose last label starts with a digit must be a dotted-decimal IPv4
//!   address (std's strict parser: four decimal parts, no leading zeros). Browsers read
//!   `0x7f.1` or `127.1` as 127.0.0.1 (WHATWG URL); srvd refuses such names rather than
//!   guess.

use std::net::Ipv6Addr;

/// Whether `v` is a valid `host [ ":" port ]` with a non-empty host.
///
/// Runs on every request: a reg-name (the common case) is checked in one pass over a
/// byte table, a few instructions a byte.
pub fn valid(v: &[u8]) -> bool {
    if v.first() == Some(&b'[') {
        return match split_literal(v) {
            Some((inner, port)) => port.iter().all(u8::is_ascii_digit) && valid_ip_literal(inner),
            None => false,
        };
    }
    // A reg-name or IPv4 address holds no ':', so the first one starts the port. The
    // scan also notes where the last two labels start, for the IPv4 rule.
    let (mut end, mut label, mut prev_label) = (v.len(), 0, 0);
    for (i, &b) in v.iter().enumerate() {
        match CLASS[usize::from(b)] {
            NAME => {}
            DOT => (prev_label, label) = (label, i + 1),
            COLON => {
                end = i;
                break;
            }
            _ => return false,
        }
    }
    let port = v.get(end + 1..).unwrap_or(&[]);
    if !port.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // One trailing dot is allowed (an absolute name); the label before it counts.
    let (name_end, last) = if end > 0 && label == end {
        (end - 1, prev_label)
    } else {
        (end, label)
    };
    match v[..name_end].get(last) {
        None => false,
        Some(d) if d.is_ascii_digit() => dotted_decimal(&v[..name_end]),
        Some(_) => true,
    }
}

/// Splits `"[" literal "]" [ ":" port ]` into the literal and the port; `None` when the
/// literal is not closed or is followed by something other than `:port`.
fn split_literal(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = v.iter().position(|&b| b == b']')?;
    let inner = &v[1..close];
    match &v[close + 1..] {
        [] => Some((inner, &[])),
        [b':', port @ ..] => Some((inner, port)),
        _ => None,
    }
}

/// RFC 3986 `IPv4address`: four `dec-octet`s (0-255, no leading zero) joined by dots.
/// Written out rather than `Ipv4Addr::from_str`: it runs on every request whose Host is
/// an address, and this is a handful of instructions.
fn dotted_decimal(name: &[u8]) -> bool {
    let mut parts = 0;
    for part in name.split(|&b| b == b'.') {
        parts += 1;
        let ok = match part {
            [d] => d.is_ascii_digit(),
            [b'1'..=b'9', rest @ ..] if rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit) => {
                part.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 255
            }
            _ => false,
        };
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// `IPv6address / IPvFuture` between the brackets.
fn valid_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail.iter().all(|&b| CLASS[usize::from(b)] != INVALID);
    }
    // std's parser takes exactly RFC 4291 text forms (one "::" at most, embedded IPv4),
    // and no zone identifier, which RFC 9110 does not allow in http URIs.
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// `unreserved / sub-delims` (RFC 3986 §2.2, §2.3); `%` is left out (see the module docs).
const fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Byte classes of the per-request scan: one table lookup and one branch a byte. Any
/// class but INVALID is also what IPvFuture allows (unreserved, sub-delims, `:`).
const INVALID: u8 = 0;
const NAME: u8 = 1;
const DOT: u8 = 2;
const COLON: u8 = 3;
static CLASS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match i as u8 {
            b'.' => DOT,
            b':' => COLON,
            b if reg_name_byte(b) => NAME,
            _ => INVALID,
        };
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn accepts_names_addresses_and_ports() {
        for ok in [
            "localhost",
            "localhost:8080",
            "localhost:",
            "example.com.",
            "Example.COM:80",
            "a-b_c~d.example",
            "1.example",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]",
            "[::ffff:192.0.2.1]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
        ] {
            assert!(valid(ok.as_bytes()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_rfc_9112_and_3986_refuse() {
        for bad in [
            "",
            ":80",
            "bad host",
            "abc\\foo",
            "caf\u{e9}.example",
            "localhost:80x",
            "localhost:80:80",
            "localhost::80",
            "[4712::abcd::]",
            "::1",
            "2001:db8::7",
            "[::1",
            "[::1]x",
            "[::1]:8x",
            "[fe80::1%25eth0]",
            "[v1.]",
            "[vx.a]",
            "a@b",
            "a/b",
            "a?b",
            "a#b",
            "a\tb",
            "[]",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn refuses_names_with_two_spellings() {
        for bad in [
            "0x7f.1",
            "%3127.0.0.1",
            "127.1",
            "0177.0.0.1",
            "127.0.0.01",
            "123",
            "1.2.3.256",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad:?}");
        }
        assert!(!valid(&[b'a', 0x80, b'b']));
        assert!(!valid(b"a\0b"));
    }

    /// The plain definition of a reg-name or IPv4 host: all reg-name bytes, non-empty
    /// after one trailing dot, dotted-decimal when the last label starts with a digit.
    fn reference_host(host: &[u8]) -> bool {
        let name = host.strip_suffix(b".").unwrap_or(host);
        let last = name.rsplit(|&b| b == b'.').next().unwrap_or(name);
        host.iter().all(|&b| super::reg_name_byte(b))
            && match last.first() {
                None => false,
                Some(d) if d.is_ascii_digit() => super::dotted_decimal(name),
                Some(_) => true,
            }
    }

    /// The one-pass scan agrees with the plain definition (split at the first ':', then
    /// [`reference_host`]) over every short string of an alphabet that exercises labels,
    /// dots, ports and digits.
    #[test]
    fn one_pass_scan_agrees_with_the_definition() {
        let alphabet = [b'a', b'1', b'0', b'.', b':', b'x', b'%'];
        let mut s = Vec::new();
        fn walk(s: &mut Vec<u8>, alphabet: &[u8], depth: usize) {
            let reference = {
                let (host, port) = match s.iter().position(|&b| b == b':') {
                    Some(i) => (&s[..i], &s[i + 1..]),
                    None => (&s[..], &[][..]),
                };
                port.iter().all(u8::is_ascii_digit) && reference_host(host)
            };
            assert_eq!(
                super::valid(s),
                reference,
                "{:?}",
                String::from_utf8_lossy(s)
            );
            if depth == 0 {
                return;
            }
            for &b in alphabet {
                s.push(b);
                walk(s, alphabet, depth - 1);
                s.pop();
            }
        }
        walk(&mut s, &alphabet, 6);
    }

    /// The hand-written IPv4 check agrees with std's strict parser.
    #[test]
    fn dotted_decimal_agrees_with_std() {
        let parts = [
            "0", "1", "9", "10", "99", "100", "199", "255", "256", "00", "01", "999", "", "1a",
        ];
        for a in parts {
            for b in parts {
                for s in [
                    format!("{a}.{b}.1.2"),
                    format!("1.2.{a}.{b}"),
                    format!("{a}.{b}"),
                ] {
                    let std_ok = s.parse::<std::net::Ipv4Addr>().is_ok();
                    assert_eq!(super::dotted_decimal(s.as_bytes()), std_ok, "{s}");
                }
            }
        }
    }
}
