//! Conditional requests: preconditions, `If-Range` and entity-tags
//! (RFC 9110 §8.8, §13).
//!
//! This module owns the answer to "does this request's precondition hold for
//! this file?" given the file's validators (a strong `ETag` and a
//! `Last-Modified` date). It is pure: no clock, no filesystem, no panics on
//! any input (it is fuzzed).
//!
//! # Order of evaluation (RFC 9110 §13.2.2)
//!
//! 1. "When recipient is the origin server and If-Match is present, evaluate
//!    the If-Match precondition: if true, continue to step 3; if false,
//!    respond 412 (Precondition Failed)". `*` is true (the file exists);
//!    otherwise true iff some member matches by **strong** comparison.
//! 2. "When recipient is the origin server, If-Match is not present, and
//!    If-Unmodified-Since is present, evaluate the If-Unmodified-Since
//!    precondition: if true, continue to step 3; if false, respond 412".
//!    False iff Last-Modified is later than the date. An invalid date is
//!    ignored (RFC 9110 §13.1.4: "A recipient MUST ignore the
//!    If-Unmodified-Since header field if the received field value is not a
//!    valid HTTP-date").
//! 3. "When If-None-Match is present, evaluate the If-None-Match
//!    precondition: if true, continue to step 5; if false for GET/HEAD,
//!    respond 304 (Not Modified); if false for other methods, respond 412".
//!    False iff `*` or some member matches by **weak** comparison (RFC 9110
//!    §13.1.2: "A recipient MUST use the weak comparison function").
//! 4. "When the method is GET or HEAD, If-None-Match is not present, and
//!    If-Modified-Since is present, evaluate the If-Modified-Since
//!    precondition: if true, continue to step 5; if false, respond 304".
//!    False iff Last-Modified is earlier than **or equal to** the date (not
//!    only an exact match). Invalid dates are ignored (RFC 9110 §13.1.3).
//! 5. Range / If-Range is the caller's business; [`if_range_matches`] helps.
//!
//! # Entity-tag comparison (RFC 9110 §8.8.3.2)
//!
//! | ETag 1  | ETag 2  | strong | weak  |
//! |---------|---------|--------|-------|
//! | `W/"1"` | `W/"1"` | no     | yes   |
//! | `W/"1"` | `W/"2"` | no     | no    |
//! | `W/"1"` | `"1"`   | no     | yes   |
//! | `"1"`   | `"1"`   | yes    | yes   |
//!
//! Lists are parsed leniently: `"a", W/"b" ,"c,d"` has three members (a comma
//! inside quotes is part of the tag); OWS and empty elements are skipped; a
//! malformed member (`abc`, `"unterminated`, `"a"junk`) is skipped up to the
//! next comma outside quotes and never matches. `*` counts only as the whole
//! field value (RFC 9110: `If-Match = "*" / #entity-tag`).
//!
//! # Worked example
//!
//! File with `ETag: "1a-2b-3c"` and `Last-Modified: Sun, 06 Nov 1994
//! 08:49:37 GMT`:
//!
//! * `If-None-Match: W/"1a-2b-3c"` on GET → [`Precondition::NotModified`].
//! * `If-Match: W/"1a-2b-3c"` → [`Precondition::Failed`] (weak never matches
//!   strongly).
//! * `If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT` on GET → `NotModified`.
//! * `If-None-Match: "x"` plus that same `If-Modified-Since` →
//!   [`Precondition::Proceed`] (If-Modified-Since is ignored when
//!   If-None-Match is present).

use std::time::{SystemTime, UNIX_EPOCH};

/// Result of evaluating the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// All preconditions hold (or none were sent): serve normally.
    Proceed,
    /// 304 Not Modified (GET/HEAD only).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The selected representation's validators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validators<'a> {
    /// Strong entity-tag, quoted, e.g. `"\"1a-2b-3c\""` (see [`make_etag`]).
    pub etag: &'a str,
    /// Last-Modified, whole seconds (sub-seconds are ignored anyway).
    pub last_modified: SystemTime,
}

/// The raw conditional header values of a request (`None` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a [u8]>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a [u8]>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a [u8]>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a [u8]>,
}

/// Evaluate `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
/// `If-Modified-Since` in the order of RFC 9110 §13.2.2 (see module docs).
/// `is_get_or_head` selects 304 vs 412 for a failed If-None-Match and
/// whether If-Modified-Since applies at all.
#[must_use]
pub fn evaluate(is_get_or_head: bool, c: &Conditions, v: &Validators) -> Precondition {
    // Most requests carry no precondition at all.
    if c.if_match.is_none()
        && c.if_unmodified_since.is_none()
        && c.if_none_match.is_none()
        && c.if_modified_since.is_none()
    {
        return Precondition::Proceed;
    }
    let own = EntityTag::parse_exact(v.etag.as_bytes());

    // Step 1 / 2.
    if let Some(value) = c.if_match {
        let ok = is_star(value) || own.is_some_and(|o| any_member(value, |m| m.strong_eq(&o)));
        if !ok {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_date) {
        if unix_secs(v.last_modified) > date {
            return Precondition::Failed;
        }
    }

    // Step 3 / 4.
    if let Some(value) = c.if_none_match {
        let matched = is_star(value) || own.is_some_and(|o| any_member(value, |m| m.weak_eq(&o)));
        if matched {
            return if is_get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if is_get_or_head {
        if let Some(date) = c.if_modified_since.and_then(parse_date) {
            if unix_secs(v.last_modified) <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Does an `If-Range` value (RFC 9110 §13.1.5) still describe the file, so
/// that the `Range` header may be honoured?
///
/// * An entity-tag must match by strong comparison; a weak tag never matches
///   ("A client MUST NOT generate an If-Range header field containing an
///   entity-tag that is marked as weak").
/// * An HTTP-date must equal Last-Modified exactly ("If the HTTP-date
///   validator provided exactly matches the Last-Modified field value for the
///   selected representation, the condition is true").
/// * Anything else (garbage, a list, a date that does not parse) is false, so
///   the caller sends the whole file.
///
/// RFC 9110 §13.1.5 also makes the condition false when the date "is not a
/// strong validator in the sense defined by Section 8.8.2.2" (roughly: the
/// file was modified at least a second before the response's Date). That
/// needs a clock, so it is the caller's check.
#[must_use]
pub fn if_range_matches(value: &[u8], v: &Validators) -> bool {
    let value = trim_ows(value);
    // RFC 9110 §13.1.5: "A valid entity-tag can be distinguished from a valid
    // HTTP-date by examining the first three characters for a DQUOTE."
    if value.iter().take(3).any(|&b| b == b'"') {
        return match (
            EntityTag::parse_exact(value),
            EntityTag::parse_exact(v.etag.as_bytes()),
        ) {
            (Some(theirs), Some(ours)) => theirs.strong_eq(&ours),
            _ => false,
        };
    }
    parse_date(value) == Some(unix_secs(v.last_modified))
}

/// A strong entity-tag for a file: `"<size>-<mtime_ns>-<inode>"` in lowercase
/// hex, quoted. Any change of content length, modification time (nanosecond
/// resolution) or inode (file replaced by rename) changes it.
///
/// `make_etag(0x1a, 0x2b, 0x3c)` → `"\"1a-2b-3c\""`. A pre-1970 mtime is
/// rendered as its 128-bit two's complement, which is still plain hex.
#[must_use]
pub fn make_etag(size: u64, mtime_ns: i128, ino: u64) -> String {
    format!("\"{size:x}-{mtime_ns:x}-{ino:x}\"")
}

/// A parsed entity-tag, borrowing its opaque-tag (including the quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Strong comparison: both strong and opaque-tags identical.
    fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison: opaque-tags identical, weakness ignored.
    fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }

    /// Parse one entity-tag at the start of `s`:
    /// `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`,
    /// `etagc = %x21 / %x23-7E / obs-text`. Returns the tag and the rest.
    fn parse_prefix(s: &'a [u8]) -> Option<(EntityTag<'a>, &'a [u8])> {
        let (weak, s) = match s {
            [b'W', b'/', rest @ ..] => (true, rest),
            _ => (false, s),
        };
        let [b'"', body @ ..] = s else {
            return None;
        };
        let close = body.iter().position(|&b| b == b'"')?;
        if !body[..close].iter().all(|&b| is_etagc(b)) {
            return None;
        }
        let (opaque, rest) = s.split_at(close + 2);
        Some((EntityTag { weak, opaque }, rest))
    }

    /// Parse `s` (after trimming OWS) as exactly one entity-tag.
    fn parse_exact(s: &'a [u8]) -> Option<EntityTag<'a>> {
        match EntityTag::parse_prefix(trim_ows(s))? {
            (tag, []) => Some(tag),
            _ => None,
        }
    }
}

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// The field value is exactly `*` (ignoring OWS).
fn is_star(value: &[u8]) -> bool {
    trim_ows(value) == b"*"
}

/// Walk a `#entity-tag` list and report whether any well-formed member
/// satisfies `pred`. Malformed members are skipped up to the next comma that
/// is outside quotes. No allocation.
fn any_member(mut s: &[u8], pred: impl Fn(&EntityTag) -> bool) -> bool {
    loop {
        // Skip OWS and empty list elements.
        while let [b' ' | b'\t' | b',', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return false;
        }
        if let Some((tag, rest)) = EntityTag::parse_prefix(s) {
            let after = trim_ows(rest);
            if matches!(after, [] | [b',', ..]) {
                if pred(&tag) {
                    return true;
                }
                s = after;
                continue;
            }
        }
        s = skip_member(s);
    }
}

/// Skip to just past the next comma outside double quotes (or to the end).
fn skip_member(s: &[u8]) -> &[u8] {
    let mut in_quotes = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => return &s[i + 1..],
            _ => {}
        }
    }
    &[]
}

/// Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime, RFC 9110 §5.6.7)
/// into whole seconds since the Unix epoch; `None` when invalid.
fn parse_date(value: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(trim_ows(value)).ok()?;
    httpdate::parse_http_date(s).ok().map(unix_secs)
}

/// Whole seconds since the Unix epoch, rounding toward the past, for any
/// `SystemTime` (including pre-1970), so comparisons ignore sub-seconds.
fn unix_secs(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            -i128::from(d.as_secs()) - i128::from(d.subsec_nanos() > 0)
        }
    }
}

/// Strip optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use Precondition::{Failed, NotModified, Proceed};

    const ETAG: &str = "\"1a-2b-3c\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const LM_SECS: u64 = 784_111_777;
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const LATER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";
    const LM_850: &str = "Sunday, 06-Nov-94 08:49:37 GMT";
    const LM_ASCTIME: &str = "Sun Nov  6 08:49:37 1994";

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: UNIX_EPOCH + Duration::from_secs(LM_SECS),
        }
    }

    fn b(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn if_match_table() {
        let cases: &[(&str, Precondition)] = &[
            ("*", Proceed),
            (" * ", Proceed),
            ("\"1a-2b-3c\"", Proceed),
            ("  \"1a-2b-3c\"  ", Proceed),
            ("\"x\", \"1a-2b-3c\"", Proceed),
            ("\"x\",\"1a-2b-3c\",\"y\"", Proceed),
            (",,\"1a-2b-3c\",,", Proceed),
            ("\"a,b\", \"1a-2b-3c\"", Proceed),
            ("junk, \"1a-2b-3c\"", Proceed),
            ("\"x\"junk, \"1a-2b-3c\"", Proceed),
            ("W/\"1a-2b-3c\"", Failed),
            ("W/\"x\", W/\"1a-2b-3c\"", Failed),
            ("w/\"1a-2b-3c\"", Failed),
            ("\"1a-2b-3d\"", Failed),
            ("\"1A-2B-3C\"", Failed),
            ("1a-2b-3c", Failed),
            ("\"1a-2b-3c", Failed),
            ("\"1a-2b-3c\"junk", Failed),
            ("\"a,\"1a-2b-3c\"\"", Failed),
            ("\"x\", *", Failed),
            ("**", Failed),
            ("", Failed),
            (",", Failed),
        ];
        for &(value, want) in cases {
            let c = Conditions {
                if_match: b(value),
                ..Default::default()
            };
            assert_eq!(evaluate(true, &c, &v()), want, "If-Match: {value}");
            assert_eq!(evaluate(false, &c, &v()), want, "If-Match: {value} (PUT)");
        }
    }

    #[test]
    fn if_unmodified_since_table() {
        let cases: &[(&str, Precondition)] = &[
            (LM, Proceed),
            (LATER, Proceed),
            (EARLIER, Failed),
            (LM_850, Proceed),
            (LM_ASCTIME, Proceed),
            ("Sun, 06 Nov 1994 08:49:36 GMT", Failed),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Failed),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Proceed),
            (" Sun, 06 Nov 1994 08:49:37 GMT ", Proceed),
            // invalid dates are ignored
            ("yesterday", Proceed),
            ("", Proceed),
            ("Sun, 06 Nov 1994 08:49:36", Proceed),
            (
                "Sun, 06 Nov 1994 08:49:36 GMT, Sun, 06 Nov 1994 08:49:36 GMT",
                Proceed,
            ),
            ("\u{0}", Proceed),
        ];
        for &(value, want) in cases {
            let c = Conditions {
                if_unmodified_since: b(value),
                ..Default::default()
            };
            assert_eq!(
                evaluate(true, &c, &v()),
                want,
                "If-Unmodified-Since: {value}"
            );
            assert_eq!(
                evaluate(false, &c, &v()),
                want,
                "If-Unmodified-Since: {value} (PUT)"
            );
        }
        // invalid UTF-8 is an invalid date
        let c = Conditions {
            if_unmodified_since: Some(b"\xff\xfe"),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &c, &v()), Proceed);
    }

    #[test]
    fn if_none_match_table() {
        // (value, GET/HEAD result, other-method result)
        let cases: &[(&str, Precondition, Precondition)] = &[
            ("*", NotModified, Failed),
            ("\"1a-2b-3c\"", NotModified, Failed),
            ("W/\"1a-2b-3c\"", NotModified, Failed),
            ("\"x\", W/\"1a-2b-3c\"", NotModified, Failed),
            ("\"x\" ,\t\"1a-2b-3c\" , \"y\"", NotModified, Failed),
            ("\"a,b\",\"1a-2b-3c\"", NotModified, Failed),
            ("garbage, \"1a-2b-3c\"", NotModified, Failed),
            ("\"x\"", Proceed, Proceed),
            ("W/\"x\"", Proceed, Proceed),
            ("\"x\", \"y\"", Proceed, Proceed),
            ("\"1a-2b-3c, x\"", Proceed, Proceed),
            ("1a-2b-3c", Proceed, Proceed),
            ("\"1a-2b-3c", Proceed, Proceed),
            ("W/ \"1a-2b-3c\"", Proceed, Proceed),
            ("\"x\", *", Proceed, Proceed),
            ("", Proceed, Proceed),
        ];
        for &(value, get, other) in cases {
            let c = Conditions {
                if_none_match: b(value),
                ..Default::default()
            };
            assert_eq!(evaluate(true, &c, &v()), get, "If-None-Match: {value}");
            assert_eq!(
                evaluate(false, &c, &v()),
                other,
                "If-None-Match: {value} (PUT)"
            );
        }
    }

    #[test]
    fn if_modified_since_table() {
        // (value, GET/HEAD result); other methods always Proceed
        let cases: &[(&str, Precondition)] = &[
            (LM, NotModified),
            (LATER, NotModified),
            ("Fri, 31 Dec 9999 23:59:59 GMT", NotModified),
            (EARLIER, Proceed),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Proceed),
            (LM_850, NotModified),
            (LM_ASCTIME, NotModified),
            ("\t", Proceed),
            ("not a date", Proceed),
            ("Sun, 06 Nov 1994 08:49:37 GMT; length=12", Proceed),
            ("Sun, 32 Nov 1994 08:49:37 GMT", Proceed),
        ];
        for &(value, want) in cases {
            let c = Conditions {
                if_modified_since: b(value),
                ..Default::default()
            };
            assert_eq!(evaluate(true, &c, &v()), want, "If-Modified-Since: {value}");
            assert_eq!(
                evaluate(false, &c, &v()),
                Proceed,
                "If-Modified-Since: {value} (PUT)"
            );
        }
    }

    #[test]
    fn combined_table() {
        // (if_match, if_unmodified_since, if_none_match, if_modified_since, get, other)
        type Row = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Precondition,
            Precondition,
        );
        let rows: &[Row] = &[
            (None, None, None, None, Proceed, Proceed),
            // If-Match wins over If-Unmodified-Since (which is then not looked at)
            (Some(ETAG), Some(EARLIER), None, None, Proceed, Proceed),
            (Some("\"x\""), Some(LATER), None, None, Failed, Failed),
            // If-Match failure beats If-None-Match
            (Some("\"x\""), None, Some(ETAG), None, Failed, Failed),
            // If-Match passes, If-None-Match decides
            (Some("*"), None, Some("*"), None, NotModified, Failed),
            (Some(ETAG), None, Some("\"x\""), None, Proceed, Proceed),
            // If-Unmodified-Since failure beats If-None-Match / If-Modified-Since
            (None, Some(EARLIER), Some(ETAG), None, Failed, Failed),
            (None, Some(EARLIER), None, Some(LATER), Failed, Failed),
            // invalid If-Unmodified-Since is ignored, the rest still applies
            (None, Some("bogus"), None, Some(LM), NotModified, Proceed),
            // If-None-Match present: If-Modified-Since is ignored
            (None, None, Some("\"x\""), Some(LATER), Proceed, Proceed),
            (None, None, Some(ETAG), Some(EARLIER), NotModified, Failed),
            (None, None, Some("garbage"), Some(LATER), Proceed, Proceed),
            // all four, all passing
            (
                Some(ETAG),
                Some(LATER),
                Some("\"x\""),
                Some(EARLIER),
                Proceed,
                Proceed,
            ),
            // all four, If-Modified-Since would say 304 but INM is present
            (
                Some(ETAG),
                Some(LM),
                Some("W/\"x\""),
                Some(LM),
                Proceed,
                Proceed,
            ),
        ];
        for &(im, ius, inm, ims, get, other) in rows {
            let c = Conditions {
                if_match: im.map(str::as_bytes),
                if_unmodified_since: ius.map(str::as_bytes),
                if_none_match: inm.map(str::as_bytes),
                if_modified_since: ims.map(str::as_bytes),
            };
            let row = (im, ius, inm, ims);
            assert_eq!(evaluate(true, &c, &v()), get, "{row:?}");
            assert_eq!(evaluate(false, &c, &v()), other, "{row:?} (PUT)");
        }
    }

    #[test]
    fn sub_second_last_modified_is_truncated() {
        let v = Validators {
            etag: ETAG,
            last_modified: UNIX_EPOCH + Duration::from_millis(LM_SECS * 1000 + 999),
        };
        let c = Conditions {
            if_modified_since: b(LM),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &c, &v), NotModified);
        assert!(if_range_matches(LM.as_bytes(), &v));
    }

    #[test]
    fn weak_own_etag_never_matches_strongly() {
        let v = Validators {
            etag: "W/\"1a-2b-3c\"",
            last_modified: UNIX_EPOCH,
        };
        let im = Conditions {
            if_match: b("W/\"1a-2b-3c\""),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &im, &v), Failed);
        let inm = Conditions {
            if_none_match: b(ETAG),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &inm, &v), NotModified);
        assert!(!if_range_matches(b"W/\"1a-2b-3c\"", &v));
        // A garbage own ETag matches nothing but "*".
        let v = Validators {
            etag: "garbage",
            last_modified: UNIX_EPOCH,
        };
        assert_eq!(evaluate(true, &inm, &v), Proceed);
        let star = Conditions {
            if_match: b("*"),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &star, &v), Proceed);
    }

    #[test]
    fn if_range_table() {
        let cases: &[(&str, bool)] = &[
            (ETAG, true),
            (" \"1a-2b-3c\" ", true),
            ("W/\"1a-2b-3c\"", false),
            ("\"1a-2b-3d\"", false),
            ("\"1a-2b-3c\", \"x\"", false),
            ("\"1a-2b-3c", false),
            ("\"1a-2b-3c\"x", false),
            (LM, true),
            (LM_850, true),
            (LM_ASCTIME, true),
            (EARLIER, false),
            (LATER, false),
            ("Sun, 06 Nov 1994 08:49:37", false),
            ("garbage", false),
            ("*", false),
            ("", false),
            ("1a-2b-3c", false),
        ];
        for &(value, want) in cases {
            assert_eq!(
                if_range_matches(value.as_bytes(), &v()),
                want,
                "If-Range: {value}"
            );
        }
        assert!(!if_range_matches(b"\xff\"", &v()));
        assert!(!if_range_matches(b"\xff", &v()));
    }

    #[test]
    fn make_etag_table() {
        let cases: &[(u64, i128, u64, &str)] = &[
            (0x1a, 0x2b, 0x3c, "\"1a-2b-3c\""),
            (0, 0, 0, "\"0-0-0\""),
            (
                u64::MAX,
                1_700_000_000_123_456_789,
                12345,
                "\"ffffffffffffffff-17979cfe3d85cd15-3039\"",
            ),
            (1, -1, 2, "\"1-ffffffffffffffffffffffffffffffff-2\""),
        ];
        for &(size, ns, ino, want) in cases {
            let e = make_etag(size, ns, ino);
            assert_eq!(e, want);
            // It is a valid strong entity-tag that matches itself.
            let tag = EntityTag::parse_exact(e.as_bytes()).expect("valid etag");
            assert!(tag.strong_eq(&tag));
        }
        assert_ne!(make_etag(1, 2, 3), make_etag(1, 3, 3));
    }

    #[test]
    fn entity_tag_parsing() {
        let cases: &[(&str, Option<(bool, &str)>)] = &[
            ("\"x\"", Some((false, "\"x\""))),
            ("W/\"x\"", Some((true, "\"x\""))),
            ("\"\"", Some((false, "\"\""))),
            ("W/\"\"", Some((true, "\"\""))),
            ("\"\u{e9}\"", Some((false, "\"\u{e9}\""))),
            ("w/\"x\"", None),
            ("W\"x\"", None),
            ("\"x", None),
            ("x", None),
            ("\"a b\"", None),
            ("\"a\tb\"", None),
            ("\"x\"\"", None),
            ("", None),
        ];
        for &(s, want) in cases {
            let got = EntityTag::parse_exact(s.as_bytes())
                .map(|t| (t.weak, std::str::from_utf8(t.opaque).unwrap()));
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn unix_secs_rounds_toward_past() {
        let cases: &[(SystemTime, i128)] = &[
            (UNIX_EPOCH, 0),
            (UNIX_EPOCH + Duration::from_millis(1500), 1),
            (UNIX_EPOCH - Duration::from_millis(1500), -2),
            (UNIX_EPOCH - Duration::from_secs(3), -3),
        ];
        for &(t, want) in cases {
            assert_eq!(unix_secs(t), want);
        }
    }

    #[test]
    fn no_panic_on_odd_bytes() {
        let odd: &[&[u8]] = &[
            b"",
            b"\"",
            b"W/",
            b"W/\"",
            b",",
            b"\",\"",
            b"\xff",
            b"*,*",
            b"\"\xff\"",
            b"W/W/\"x\"",
            b"\"x\",",
            b"\t\t",
            b"\"x\"\"y\"",
        ];
        for &s in odd {
            let c = Conditions {
                if_match: Some(s),
                if_unmodified_since: Some(s),
                if_none_match: Some(s),
                if_modified_since: Some(s),
            };
            let _ = evaluate(true, &c, &v());
            let _ = if_range_matches(s, &v());
        }
    }
}
