//! Request-target → safe filesystem-relative path.
//!
//! This module owns the one place where a client-supplied request-target is
//! turned into a path that the static-file handler may join onto its document
//! root. Everything here is pure: no filesystem access, no I/O, no panics on
//! any input (these functions are fuzzed).
//!
//! # Accepted forms
//!
//! RFC 9112 §3.2 lists four request-target forms. Only two name a file:
//!
//! * **origin-form** — `absolute-path [ "?" query ]`, e.g. `/a/b?q`.
//! * **absolute-form** — `absolute-URI`, e.g. `http://host/a?q`. RFC 9112
//!   §3.2.2: "a server MUST accept the absolute-form in requests even though
//!   most HTTP/1.1 clients will only send the absolute-form to a proxy." The
//!   scheme (`http` or `https`, case-insensitive, RFC 9110 §4.2.3) and the
//!   authority are stripped; the Host header is not our business here.
//!
//! `*` (asterisk-form, only for `OPTIONS`) and authority-form (`CONNECT`) are
//! handled by the caller; here they are simply 400.
//!
//! In absolute-form an empty path means `/` — RFC 9110 §4.2.3: "an empty path
//! component is equivalent to an absolute path of "/"". An empty host is
//! rejected — RFC 9110 §4.2.1: "A recipient that processes such a URI
//! reference MUST reject it as invalid." Userinfo (`user@host`) is rejected —
//! RFC 9110 §4.2.4: a recipient "SHOULD parse for userinfo and treat its
//! presence as an error".
//!
//! # The model, in order
//!
//! 1. Strip scheme + authority (absolute-form only). What remains must start
//!    with `/`, else 400.
//! 2. The query starts at the first `?` and is returned raw (still
//!    percent-encoded, without the `?`). A fragment (`#…`) is cut off; clients
//!    must not send one, but it is harmless to drop.
//! 3. Percent-decode the path **once**. A `%` not followed by two hex digits
//!    is 400. `%252e` decodes to `%2e`, which is a literal three-byte name,
//!    never a dot: decoding twice is how traversal bugs are born.
//! 4. Reject (400) NUL and every other control byte (`< 0x20`, `0x7f`),
//!    backslash (a path separator on some systems and in browsers' URL
//!    parsers), and bytes that are not valid UTF-8.
//! 5. Split on `/` (decoded `%2f` counts as a separator too: one model for
//!    every slash), drop empty and `.` segments; `..` pops one segment, and
//!    popping above the root is 400 — it is an attack or a broken client, not
//!    something to clamp silently (RFC 3986 §5.2.4 clamps, but that algorithm
//!    is for resolving references, not for guarding a document root).
//! 6. Re-join. The result always starts with `/` and never contains `//`,
//!    `/./` or `/../`. If the decoded path ended in `/`, `/.` or `/..` and the
//!    result is not just `/`, the result keeps one trailing `/` and
//!    [`Target::trailing_slash`] is true.
//!
//! # Worked examples
//!
//! | target            | path         | query | trailing_slash |
//! |-------------------|--------------|-------|----------------|
//! | `/`               | `/`          | —     | false          |
//! | `/a//b`           | `/a/b`       | —     | false          |
//! | `/a/b/../`        | `/a/`        | —     | true           |
//! | `/docs/?x=1`      | `/docs/`     | `x=1` | true           |
//! | `HTTP://h/%c3%a9` | `/é`         | —     | false          |
//! | `//evil.com/`     | `/evil.com/` | —     | true           |
//! | `/%252e%252e/x`   | `/%2e%2e/x`  | —     | false          |
//! | `/..%2fetc`       | 400          |       |                |
//! | `/%ff`            | 400          |       |                |
//!
//! [`is_hidden`] and [`encode_for_location`] work on the normalized path.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// A normalized request-target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// Decoded, normalized absolute path: starts with `/`, no `//`, `/./` or
    /// `/../`; ends with `/` exactly when [`Target::trailing_slash`] is true.
    /// Borrowed from the request when it needed no decoding or normalisation.
    pub path: Cow<'a, str>,
    /// The raw query after the first `?` (still percent-encoded, without the
    /// `?` and without any fragment). `Some("")` for a bare trailing `?`.
    pub query: Option<&'a str>,
    /// The decoded path ended in `/` (or `/.`, `/..`) and the result is not
    /// just `/`: the client asked for a directory.
    pub trailing_slash: bool,
}

/// Why a request-target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The target is malformed or tries to escape the root: answer 400.
    BadRequest,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::BadRequest => f.write_str("bad request-target"),
        }
    }
}

impl std::error::Error for PathError {}

/// Schemes accepted in absolute-form (compared case-insensitively, RFC 9110
/// §4.2.3: "The scheme and host are case-insensitive").
const SCHEMES: [&str; 2] = ["http://", "https://"];

/// The first segment that may start with a dot without being hidden
/// (RFC 8615 well-known URIs; they answer 404 unless the file exists).
const WELL_KNOWN: &str = ".well-known";

/// Bytes escaped by [`encode_for_location`]: controls, space, non-ASCII
/// (always, by `utf8_percent_encode`), and every ASCII character that is not
/// allowed in an RFC 3986 path segment or would change how a browser parses
/// the reference (`"` `#` `%` `<` `>` `?` `[` `\` `]` `^` `` ` `` `{` `|` `}`).
/// `/` and the sub-delims stay as they are.
const LOCATION_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Normalize an origin-form (`/a/b?q`) or absolute-form (`http://host/a?q`)
/// request-target into a safe absolute path; see the module docs for the
/// exact rules.
///
/// # Errors
///
/// [`PathError::BadRequest`] (400) for a target that is not origin- or
/// absolute-form, has a bad `%` escape, decodes to a control character,
/// backslash or invalid UTF-8, or climbs above the root with `..`.
pub fn normalize(target: &str) -> Result<Target<'_>, PathError> {
    // Fast path, the common case: an origin-form path of plain characters, with no query,
    // no percent-escapes, no empty or dot-leading segments. It is already normalised.
    if is_plain(target.as_bytes()) {
        return Ok(Target {
            path: Cow::Borrowed(target),
            query: None,
            trailing_slash: target.len() > 1 && target.ends_with('/'),
        });
    }
    normalize_general(target)
}

/// The full algorithm: absolute-form, query and fragment, percent-decoding, dot segments.
fn normalize_general(target: &str) -> Result<Target<'_>, PathError> {
    let (rest, absolute) = match strip_absolute_form(target)? {
        Some(rest) => (rest, true),
        None => (target, false),
    };

    // Split off the fragment first: a '?' inside a fragment is not a query.
    let before_fragment = match rest.find('#') {
        Some(i) => &rest[..i],
        None => rest,
    };
    let (raw_path, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
        None => (before_fragment, None),
    };

    // Absolute-form with an empty path ("http://h", "http://h?q") means "/".
    let raw_path = if raw_path.is_empty() && absolute {
        "/"
    } else {
        raw_path
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::BadRequest);
    }

    let decoded = percent_decode_once(raw_path)?;
    let path = resolve_dot_segments(&decoded)?;
    let trailing_slash = path.len() > 1 && path.ends_with('/');
    Ok(Target {
        path: Cow::Owned(path),
        query,
        trailing_slash,
    })
}

/// `/` followed by unreserved characters and `/`, where no segment is empty or starts with
/// a dot: nothing to decode, resolve or hide, so the slow path would return it unchanged.
fn is_plain(p: &[u8]) -> bool {
    let mut prev = 0u8;
    if p.first() != Some(&b'/') {
        return false;
    }
    for &b in p {
        let ok = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'~')
            || (b == b'.' && prev != b'/')
            || (b == b'/' && prev != b'/');
        if !ok {
            return false;
        }
        prev = b;
    }
    true
}

/// True when some segment of `path` starts with `.` (dotfiles such as
/// `/.git/config` or `/a/.env`), except a **first** segment that is exactly
/// `.well-known` (RFC 8615), which is served normally.
///
/// `"/.well-known/acme"` → false, `"/a/.well-known/x"` → true,
/// `"/a.b/c"` → false.
#[must_use]
pub fn is_hidden(path: &str) -> bool {
    // Most paths have no "/." at all: one byte scan settles them.
    if !path.as_bytes().windows(2).any(|w| w == b"/.") {
        return false;
    }
    path.split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .any(|(i, s)| s.starts_with('.') && !(i == 0 && s == WELL_KNOWN))
}

/// Percent-encode a normalized path for a `Location` header (RFC 9110
/// §10.2.2: the value is a URI-reference, so raw spaces, non-ASCII, `%` and
/// friends must be escaped). `/` is kept.
///
/// The result always starts with exactly one `/`: leading slashes are
/// collapsed, so even input that did not come from [`normalize`] can never
/// become a network-path reference (`//evil.com`) or be read as a scheme
/// (`javascript:`) — an open-redirect guard. Backslash is escaped because
/// browsers treat `/\host` like `//host`.
///
/// `"/a b/é?"` → `"/a%20b/%C3%A9%3F"`.
#[must_use]
pub fn encode_for_location(path: &str) -> String {
    let rest = path.trim_start_matches('/');
    let mut out = String::with_capacity(rest.len() + 1);
    out.push('/');
    out.extend(utf8_percent_encode(rest, LOCATION_ESCAPE));
    out
}

/// Percent-encodes a piece of a path (a redirect capture) as [`encode_for_location`] does,
/// without making it absolute.
pub fn encode_piece(text: &str) -> String {
    utf8_percent_encode(text, LOCATION_ESCAPE).collect()
}

/// Keeps a query as it came but for bytes that do not belong in a header.
pub fn encode_query(q: &str) -> String {
    q.chars().filter(|c| !c.is_control()).collect()
}

/// Strip `scheme://authority` from an absolute-form target, returning what
/// follows the authority; `None` when the target is not absolute-form.
fn strip_absolute_form(target: &str) -> Result<Option<&str>, PathError> {
    for scheme in SCHEMES {
        let Some(prefix) = target.get(..scheme.len()) else {
            continue;
        };
        if !prefix.eq_ignore_ascii_case(scheme) {
            continue;
        }
        let after = &target[scheme.len()..];
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..end];
        // RFC 9112 §3.2.2 / RFC 3986 §3.2.2: userinfo, an empty or invalid host, or a
        // bad port is a 400 (see `http::host`).
        if !crate::http::host::valid(authority.as_bytes()) {
            return Err(PathError::BadRequest);
        }
        return Ok(Some(&after[end..]));
    }
    Ok(None)
}

/// Value of an ASCII hex digit.
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `%XX` escapes exactly once and validate the result (no controls,
/// no backslash, valid UTF-8). Borrows when there is nothing to decode.
fn percent_decode_once(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let decoded: Cow<'_, str> = if raw.contains('%') {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(PathError::BadRequest),
                }
                i += 3;
            } else {
                out.push(b);
                i += 1;
            }
        }
        Cow::Owned(String::from_utf8(out).map_err(|_| PathError::BadRequest)?)
    } else {
        Cow::Borrowed(raw)
    };
    if decoded.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Err(PathError::BadRequest);
    }
    Ok(decoded)
}

/// Split a decoded absolute path on `/`, drop empty and `.` segments, apply
/// `..` (400 above the root) and re-join, keeping one trailing `/` when the
/// input named a directory and the result is not the root.
fn resolve_dot_segments(decoded: &str) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::BadRequest);
                }
            }
            s => stack.push(s),
        }
    }
    let last = decoded.rsplit('/').next().unwrap_or("");
    let dir = matches!(last, "" | "." | "..");

    let mut path = String::with_capacity(decoded.len() + 1);
    for seg in &stack {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || dir {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (target, expected (path, query, trailing_slash) or None for 400)
    type Case = (
        &'static str,
        Option<(&'static str, Option<&'static str>, bool)>,
    );

    const NORMALIZE: &[Case] = &[
        // basics
        ("/", Some(("/", None, false))),
        ("/a", Some(("/a", None, false))),
        ("/a/b", Some(("/a/b", None, false))),
        ("/docs/", Some(("/docs/", None, true))),
        ("/a/b/", Some(("/a/b/", None, true))),
        // empty segments and "."
        ("/a//b", Some(("/a/b", None, false))),
        ("//", Some(("/", None, false))),
        ("///a///", Some(("/a/", None, true))),
        ("/a/./b", Some(("/a/b", None, false))),
        ("/./", Some(("/", None, false))),
        ("/.", Some(("/", None, false))),
        ("/a/.", Some(("/a/", None, true))),
        ("/a/./", Some(("/a/", None, true))),
        // ".."
        ("/a/../b", Some(("/b", None, false))),
        ("/a/b/../", Some(("/a/", None, true))),
        ("/a/b/..", Some(("/a/", None, true))),
        ("/a/..", Some(("/", None, false))),
        ("/a/../", Some(("/", None, false))),
        ("/a/b/../../c", Some(("/c", None, false))),
        ("/../a", None),
        ("/..", None),
        ("/a/../..", None),
        ("/a/../../b", None),
        // names that merely contain dots are literal
        ("/...", Some(("/...", None, false))),
        ("/a/..b", Some(("/a/..b", None, false))),
        ("/a../b", Some(("/a../b", None, false))),
        ("/.hidden", Some(("/.hidden", None, false))),
        // percent-decoding happens once, before dot handling
        ("/%2e%2e/x", None),
        ("/%2E%2E/x", None),
        ("/%2e/x", Some(("/x", None, false))),
        ("/..%2fetc", None),
        ("/..%2Fetc", None),
        ("/a%2f..%2f..%2fetc", None),
        ("/a%2fb", Some(("/a/b", None, false))),
        ("/a%2f", Some(("/a/", None, true))),
        ("/%252e%252e/x", Some(("/%2e%2e/x", None, false))),
        ("/%252e", Some(("/%2e", None, false))),
        ("/100%25", Some(("/100%", None, false))),
        ("/a%20b", Some(("/a b", None, false))),
        ("/a+b", Some(("/a+b", None, false))),
        ("/%c3%a9", Some(("/é", None, false))),
        ("/%C3%A9", Some(("/é", None, false))),
        ("/é", Some(("/é", None, false))),
        // bad escapes
        ("/%", None),
        ("/%2", None),
        ("/%zz", None),
        ("/%2g", None),
        ("/a%", None),
        ("/%%30", None),
        // controls, backslash, invalid UTF-8
        ("/%00", None),
        ("/a%00.html", None),
        ("/a%0d%0a", None),
        ("/a%09", None),
        ("/a%1f", None),
        ("/a%7f", None),
        ("/a\tb", None),
        ("/a\\b", None),
        ("/%5c", None),
        ("/%5C..%5C", None),
        ("/%ff", None),
        ("/%c3", None),
        ("/%c3%28", None),
        ("/%ed%a0%80", None),
        // query and fragment
        ("/a?x=1", Some(("/a", Some("x=1"), false))),
        ("/a?", Some(("/a", Some(""), false))),
        ("/?x", Some(("/", Some("x"), false))),
        ("/docs/?x=1", Some(("/docs/", Some("x=1"), true))),
        ("/a?x=/../..", Some(("/a", Some("x=/../.."), false))),
        ("/a?x=%zz", Some(("/a", Some("x=%zz"), false))),
        ("/a?b?c", Some(("/a", Some("b?c"), false))),
        ("/a%3fb", Some(("/a?b", None, false))),
        ("/a#frag", Some(("/a", None, false))),
        ("/a?q#frag", Some(("/a", Some("q"), false))),
        ("/a#f?not-query", Some(("/a", None, false))),
        ("/a%23b", Some(("/a#b", None, false))),
        // absolute-form
        ("http://h/x", Some(("/x", None, false))),
        ("HTTP://h/x", Some(("/x", None, false))),
        ("https://h:8443/x/", Some(("/x/", None, true))),
        ("HtTpS://h/a/../b?q=1", Some(("/b", Some("q=1"), false))),
        ("http://h", Some(("/", None, false))),
        ("http://h?q", Some(("/", Some("q"), false))),
        ("http://h#f", Some(("/", None, false))),
        ("http://h/../x", None),
        ("http:///x", None),
        ("http://u@h/x", None),
        ("ftp://h/x", None),
        ("http:/x", None),
        ("http:x", None),
        // other forms are not ours
        ("*", None),
        ("", None),
        ("a/b", None),
        ("example.com:443", None),
        ("%2fa", None),
        // a leading "//" is a path, never an authority
        ("//evil.com/", Some(("/evil.com/", None, true))),
        ("//evil.com/a", Some(("/evil.com/a", None, false))),
    ];

    /// The fast path must agree with the general algorithm on every input it takes:
    /// exhaustively, all strings up to 6 characters over an alphabet that exercises it.
    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let alphabet = ['/', 'a', '.', '-', '~', '_'];
        let mut inputs = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut next = Vec::new();
            for prefix in &inputs {
                for c in alphabet {
                    let s = format!("{prefix}{c}");
                    if is_plain(s.as_bytes()) {
                        checked += 1;
                        let fast = normalize(&s).unwrap();
                        let general = normalize_general(&s).unwrap();
                        assert_eq!(fast, general, "{s:?}");
                    }
                    next.push(s);
                }
            }
            inputs = next;
        }
        assert!(checked > 1000, "only {checked} plain inputs");
    }

    #[test]
    fn normalize_table() {
        for &(input, want) in NORMALIZE {
            let got = normalize(input)
                .map(|t| (t.path.into_owned(), t.query, t.trailing_slash))
                .ok();
            let want = want.map(|(p, q, t)| (p.to_string(), q, t));
            assert_eq!(got, want, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_invariants() {
        for &(input, _) in NORMALIZE {
            if let Ok(t) = normalize(input) {
                assert!(t.path.starts_with('/'), "{input:?}");
                for bad in ["//", "/./", "/../"] {
                    assert!(!t.path.contains(bad), "{input:?} -> {}", t.path);
                }
                assert_eq!(t.trailing_slash, t.path.len() > 1 && t.path.ends_with('/'));
                // Normalizing the re-encoded result is a fixed point.
                let encoded = encode_for_location(&t.path);
                let again = normalize(&encoded).expect("re-normalize");
                assert_eq!(again.path, t.path, "{input:?}");
            }
        }
    }

    #[test]
    fn normalize_error_message_is_lowercase() {
        assert_eq!(PathError::BadRequest.to_string(), "bad request-target");
    }

    #[test]
    fn is_hidden_table() {
        let cases: &[(&str, bool)] = &[
            ("/.git/config", true),
            ("/.git", true),
            ("/a/.env", true),
            ("/a/b/.htaccess", true),
            ("/.well-known/acme", false),
            ("/.well-known/", false),
            ("/.well-known", false),
            ("/.well-known/.x", true),
            ("/a/.well-known/x", true),
            ("/.well-knownx/a", true),
            ("/.WELL-KNOWN/a", true),
            ("/a.b/c", false),
            ("/a/b.", false),
            ("/", false),
            ("", false),
            ("/a/b/c", false),
            ("/%2e", false),
            ("//.x", true),
            ("/a/./b", true),
        ];
        for &(path, want) in cases {
            assert_eq!(is_hidden(path), want, "is_hidden({path:?})");
        }
    }

    #[test]
    fn encode_for_location_table() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/a/b/", "/a/b/"),
            ("/a b", "/a%20b"),
            ("/é", "/%C3%A9"),
            ("/a\"b", "/a%22b"),
            ("/a#b", "/a%23b"),
            ("/100%", "/100%25"),
            ("/%2e", "/%252e"),
            ("/a?b", "/a%3Fb"),
            ("/a\tb\r\n", "/a%09b%0D%0A"),
            ("/a\u{7f}", "/a%7F"),
            ("/<x>", "/%3Cx%3E"),
            ("/a\\b", "/a%5Cb"),
            ("/[x]", "/%5Bx%5D"),
            ("/{|}^`", "/%7B%7C%7D%5E%60"),
            ("/a-b_c.d~e", "/a-b_c.d~e"),
            ("/!$&'()*+,;=:@", "/!$&'()*+,;=:@"),
            // open-redirect guard
            ("//evil.com/", "/evil.com/"),
            ("///x", "/x"),
            ("evil.com", "/evil.com"),
            ("javascript:alert(1)", "/javascript:alert(1)"),
            ("/\\evil.com", "/%5Cevil.com"),
            ("", "/"),
        ];
        for &(path, want) in cases {
            assert_eq!(
                encode_for_location(path),
                want,
                "encode_for_location({path:?})"
            );
        }
    }

    #[test]
    fn normalize_borrows_query() {
        let target = String::from("/x?a=b");
        let t = normalize(&target).unwrap();
        let q = t.query.unwrap();
        assert!(std::ptr::eq(q.as_ptr(), target[3..].as_ptr()));
    }

    #[test]
    fn no_panic_on_odd_input() {
        let odd = [
            "%",
            "/%",
            "/%%",
            "/\u{0}",
            "http://",
            "https://",
            "http://\u{e9}/",
            "h\u{e9}tp://x/",
            "/\u{1F600}%",
            "htt",
            "http:/",
            "/?",
            "/#",
            "?",
            "#",
            "/%e9",
            "HTTP://",
            "https:///",
            "http://[::1]/a",
        ];
        for s in odd {
            let _ = normalize(s);
            let _ = is_hidden(s);
            let _ = encode_for_location(s);
        }
        assert_eq!(normalize("http://[::1]/a").unwrap().path, "/a");
    }
}
