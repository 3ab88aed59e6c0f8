//! `Range` request parsing and `multipart/byteranges` framing (RFC 9110 §14).
//!
//! This module owns the decision "200, 206 or 416" for a `Range` header on a
//! representation of known length, and the exact bytes of the part headers of
//! a multi-range 206. It does no I/O and never panics (it is fuzzed). Whether
//! a `Range` header is looked at at all (GET only, `If-Range`) is decided by
//! the caller; see `http::conditional::if_range_matches`.
//!
//! # Grammar (RFC 9110 §14.1.1, §14.1.2)
//!
//! ```text
//! ranges-specifier = range-unit "=" range-set
//! range-set        = 1#range-spec
//! range-spec       = int-range / suffix-range / other-range
//! int-range        = first-pos "-" [ last-pos ]
//! suffix-range     = "-" suffix-length
//! ```
//!
//! # Decisions
//!
//! * Unit other than `bytes` (range unit names are case-insensitive, RFC 9110
//!   §14.1) → [`RangeOutcome::Full`]: "An origin server MUST ignore a Range
//!   header field that contains a range unit it does not understand" (RFC 9110
//!   §14.2).
//! * Any syntax error → `Full`. RFC 9110 §14.1.1: "A ranges-specifier is
//!   invalid if it contains any range-spec that is invalid or undefined for
//!   the indicated range-unit", and §14.2: "A server MAY ignore the Range
//!   header field." `bytes=5-2` is invalid ("An int-range is invalid if the
//!   last-pos value is present and less than the first-pos").
//! * Empty list elements (`bytes=0-1,,2-3`) and OWS around commas are
//!   accepted (RFC 9110 §5.6.1.2: "A recipient MUST parse and ignore a
//!   reasonable number of empty list elements").
//! * `a-b`: `b` is clamped to `len - 1`. `a-`: to the end. `-n`: the last `n`
//!   bytes, the whole representation when `n > len` (RFC 9110 §14.1.2: "If
//!   the selected representation is shorter than the specified suffix-length,
//!   the entire representation is used").
//! * A range whose first-pos is `>= len`, or `-0`, is unsatisfiable and
//!   dropped; if nothing remains → [`RangeOutcome::Unsatisfiable`] (416).
//!   With `len == 0` every range is unsatisfiable. (RFC 9110 §14.1.1 calls a
//!   non-zero suffix-range on an empty representation satisfiable, but it
//!   selects zero bytes and no `Content-Range` can describe it; srvd answers
//!   416 with `Content-Range: bytes */0` instead.)
//! * The rest are sorted and coalesced: overlapping, adjacent, or separated by
//!   fewer than [`COALESCE_GAP`] bytes. RFC 9110 §15.3.7.2: "When multiple
//!   ranges are requested, a server MAY coalesce any of the ranges that
//!   overlap, or that are separated by a gap that is smaller than the overhead
//!   of sending multiple parts, regardless of the order in which the
//!   corresponding range-spec appeared in the received Range header field."
//!   The typical per-part overhead is around 80 bytes, hence the gap.
//! * More than [`MAX_RANGES`] parts after coalescing (or more than
//!   [`MAX_RANGE_SPECS`] specs before) → `Full`. After coalescing the parts
//!   are disjoint and inside `0..len`, so a 206 never carries more payload
//!   bytes than the 200 would: the sum of the ranges is at most `len`. (RFC
//!   9110 §14.2 lets a server ignore overlapping ranges or many small ones,
//!   "since these are indications of either a broken client or a deliberate
//!   denial-of-service attack".)
//!
//! # Worked examples (len = 1000)
//!
//! | header                  | outcome                          |
//! |-------------------------|----------------------------------|
//! | `bytes=0-499`           | `Partial([0..500])`              |
//! | `bytes=500-`            | `Partial([500..1000])`           |
//! | `bytes=-100`            | `Partial([900..1000])`           |
//! | `bytes=900-5000`        | `Partial([900..1000])`           |
//! | `bytes=0-9, 500-509`    | `Partial([0..10, 500..510])`     |
//! | `bytes=0-9,50-59`       | `Partial([0..60])` (gap < 80)    |
//! | `bytes=1000-`           | `Unsatisfiable`                  |
//! | `bytes=5-2`             | `Full`                           |
//! | `items=0-1`             | `Full`                           |
//!
//! # multipart/byteranges (RFC 9110 §14.6)
//!
//! A 206 with several parts has the body
//!
//! ```text
//! \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\r\n<10 bytes>
//! \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 500-509/1000\r\n\r\n<10 bytes>
//! \r\n--B--\r\n
//! ```
//!
//! (line breaks added between parts for reading). [`part_head`] renders each
//! part header, [`multipart_tail`] the closing delimiter, and
//! [`multipart_len`] the exact body length for `Content-Length` without
//! rendering anything.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::ops::Range;

/// Most parts a 206 may carry after coalescing; more → ignore `Range` (200).
pub const MAX_RANGES: usize = 16;

/// Most range-specs looked at in one header before coalescing; more → 200.
/// Bounds the work (and the allocation) spent on an abusive header.
pub const MAX_RANGE_SPECS: usize = 256;

/// Ranges separated by fewer than this many bytes are merged into one part:
/// roughly the per-part overhead (delimiter + part headers) of
/// multipart/byteranges, so merging never costs more than it saves.
pub const COALESCE_GAP: u64 = 80;

/// Length in hex digits of [`multipart_boundary`] output.
pub const BOUNDARY_LEN: usize = 20;

/// What to do with a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and send the whole representation (200).
    Full,
    /// No range overlaps the representation (416, `Content-Range: bytes */len`).
    Unsatisfiable,
    /// Send these parts (206). Sorted, disjoint, non-adjacent, non-empty,
    /// half-open, all inside `0..len`, at most [`MAX_RANGES`] of them.
    Partial(Vec<Range<u64>>),
}

/// One syntactically valid range-spec, before it meets the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    Int { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

impl Spec {
    /// The half-open byte range this spec selects in a representation of
    /// `len` bytes, or `None` when it is unsatisfiable.
    fn resolve(self, len: u64) -> Option<Range<u64>> {
        match self {
            Spec::Int { first, last } => {
                if first >= len {
                    return None;
                }
                // len >= 1 here, so len - 1 cannot underflow and +1 cannot
                // overflow (the min is at most len - 1).
                let end = last.map_or(len, |l| l.min(len - 1) + 1);
                Some(first..end)
            }
            Spec::Suffix(n) => {
                if n == 0 || len == 0 {
                    return None;
                }
                Some(len - n.min(len)..len)
            }
        }
    }
}

/// Parse a raw `Range` header value against a representation of `len` bytes.
/// See the module docs for the rules.
#[must_use]
pub fn parse_range(header: &[u8], len: u64) -> RangeOutcome {
    let header = trim_ows(header);
    let Some(eq) = header.iter().position(|&b| b == b'=') else {
        return RangeOutcome::Full;
    };
    let (unit, set) = (&header[..eq], &header[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return RangeOutcome::Full;
    }

    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut specs = 0usize;
    for element in set.split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_RANGE_SPECS {
            return RangeOutcome::Full;
        }
        let Some(spec) = parse_spec(element) else {
            return RangeOutcome::Full;
        };
        if let Some(r) = spec.resolve(len) {
            ranges.push(r);
        }
    }
    if specs == 0 {
        // "bytes=" or "bytes= , ": range-set needs at least one element.
        return RangeOutcome::Full;
    }
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    coalesce(&mut ranges);
    if ranges.len() > MAX_RANGES {
        return RangeOutcome::Full;
    }
    RangeOutcome::Partial(ranges)
}

/// A deterministic multipart boundary of [`BOUNDARY_LEN`] lowercase hex
/// digits derived from `seed` (splitmix64). Callers should feed something
/// that varies per response (e.g. inode ^ mtime ^ a counter) so a file cannot
/// be crafted to contain its own boundary.
///
/// `multipart_boundary(0)` → `"e220a8397b1dcdaf7e6f"`.
#[must_use]
pub fn multipart_boundary(seed: u64) -> String {
    let hi = splitmix64(seed);
    let lo = splitmix64(hi ^ seed.rotate_left(32));
    format!("{hi:016x}{:04x}", lo & 0xffff)
}

/// The delimiter and headers that precede one part:
/// `"\r\n--B\r\nContent-Type: T\r\nContent-Range: bytes a-b/len\r\n\r\n"`,
/// where `a-b` is the inclusive form of `r`. The `Content-Type` line is left
/// out when `content_type` is empty (RFC 9110 §14.6: "If the selected
/// representation would have had a Content-Type header field in a 200 (OK)
/// response, the server SHOULD generate that same Content-Type header field
/// in each body part"). `content_type` is trusted (it comes from srvd's own
/// MIME table).
#[must_use]
pub fn part_head(boundary: &str, content_type: &str, r: &Range<u64>, len: u64) -> String {
    let cap = usize::try_from(part_head_len(boundary, content_type, r, len)).unwrap_or(0);
    let mut s = String::with_capacity(cap);
    s.push_str("\r\n--");
    s.push_str(boundary);
    s.push_str("\r\n");
    if !content_type.is_empty() {
        s.push_str("Content-Type: ");
        s.push_str(content_type);
        s.push_str("\r\n");
    }
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "Content-Range: bytes {}-{}/{}\r\n\r\n",
        r.start,
        last_pos(r),
        len
    );
    s
}

/// The close-delimiter that ends the body: `"\r\n--B--\r\n"`.
#[must_use]
pub fn multipart_tail(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

/// Exact length of the whole multipart/byteranges body (every part head, every
/// part's bytes, and the tail), for `Content-Length`. Computed without
/// rendering; saturates instead of overflowing on absurd input.
#[must_use]
pub fn multipart_len(boundary: &str, content_type: &str, ranges: &[Range<u64>], len: u64) -> u64 {
    let body = ranges.iter().fold(0u64, |acc, r| {
        acc.saturating_add(part_head_len(boundary, content_type, r, len))
            .saturating_add(r.end.saturating_sub(r.start))
    });
    body.saturating_add(boundary.len() as u64 + 8)
}

/// Length of [`part_head`]'s output, without rendering it.
fn part_head_len(boundary: &str, content_type: &str, r: &Range<u64>, len: u64) -> u64 {
    const DELIM: u64 = 4 + 2; // "\r\n--" B "\r\n"
    const CT: u64 = 14 + 2; // "Content-Type: " T "\r\n"
    const CR: u64 = 21 + 1 + 1 + 4; // "Content-Range: bytes " a "-" b "/" len "\r\n\r\n"
    let ct = if content_type.is_empty() {
        0
    } else {
        CT + content_type.len() as u64
    };
    DELIM
        + boundary.len() as u64
        + ct
        + CR
        + decimal_len(r.start)
        + decimal_len(last_pos(r))
        + decimal_len(len)
}

/// Inclusive last byte position of a non-empty half-open range (never
/// underflows on an empty one).
fn last_pos(r: &Range<u64>) -> u64 {
    r.end.saturating_sub(1).max(r.start)
}

/// Number of decimal digits of `n`.
fn decimal_len(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

/// splitmix64 finalizer: a cheap bijective mixer with good avalanche.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

/// Parse one non-empty range-spec; `None` when it is invalid.
fn parse_spec(s: &[u8]) -> Option<Spec> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (first, last) = (&s[..dash], &s[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(parse_digits(last)?));
    }
    let first_n = parse_digits(first)?;
    if last.is_empty() {
        return Some(Spec::Int {
            first: first_n,
            last: None,
        });
    }
    let last_n = parse_digits(last)?;
    // Compare the digit strings, not the (saturated) numbers, so that
    // "99999999999999999999-19999999999999999999" is still seen as invalid.
    if cmp_decimal(last, first) == Ordering::Less {
        return None;
    }
    Some(Spec::Int {
        first: first_n,
        last: Some(last_n),
    })
}

/// `1*DIGIT` as a u64, saturating at `u64::MAX` (a position past any real
/// file is still a valid position). `None` if empty or not all digits.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

/// Numeric comparison of two all-digit strings of any length.
fn cmp_decimal(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Sort by start and merge, in place, ranges that overlap, touch, or are
/// separated by fewer than [`COALESCE_GAP`] bytes.
fn coalesce(ranges: &mut Vec<Range<u64>>) {
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    // dedup_by hands us (current, previous kept); returning true drops current.
    ranges.dedup_by(|cur, kept| {
        if cur.start.saturating_sub(kept.end) < COALESCE_GAP {
            kept.end = kept.end.max(cur.end);
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::{Full, Partial, Unsatisfiable};

    fn p(v: &[(u64, u64)]) -> RangeOutcome {
        Partial(v.iter().map(|&(a, b)| a..b).collect())
    }

    #[test]
    fn parse_range_table() {
        let cases: Vec<(&str, u64, RangeOutcome)> = vec![
            // single int-range
            ("bytes=0-0", 1000, p(&[(0, 1)])),
            ("bytes=0-499", 1000, p(&[(0, 500)])),
            ("bytes=500-999", 1000, p(&[(500, 1000)])),
            ("bytes=999-999", 1000, p(&[(999, 1000)])),
            ("bytes=900-5000", 1000, p(&[(900, 1000)])),
            ("bytes=0-18446744073709551615", 10, p(&[(0, 10)])),
            ("bytes=0-99999999999999999999999", 10, p(&[(0, 10)])),
            ("bytes=0-0", 1, p(&[(0, 1)])),
            ("bytes=007-009", 1000, p(&[(7, 10)])),
            // open-ended
            ("bytes=500-", 1000, p(&[(500, 1000)])),
            ("bytes=0-", 1000, p(&[(0, 1000)])),
            ("bytes=999-", 1000, p(&[(999, 1000)])),
            // suffix
            ("bytes=-100", 1000, p(&[(900, 1000)])),
            ("bytes=-1", 1000, p(&[(999, 1000)])),
            ("bytes=-1000", 1000, p(&[(0, 1000)])),
            ("bytes=-5000", 1000, p(&[(0, 1000)])),
            ("bytes=-99999999999999999999999", 1000, p(&[(0, 1000)])),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=-000", 1000, Unsatisfiable),
            // unsatisfiable
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=99999999999999999999999-", 1000, Unsatisfiable),
            ("bytes=1000-,2000-3000,-0", 1000, Unsatisfiable),
            ("bytes=1000-,0-0", 1000, p(&[(0, 1)])),
            ("bytes=-0,-1", 1000, p(&[(999, 1000)])),
            // len 0: everything unsatisfiable
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=-0", 0, Unsatisfiable),
            // but a syntax error still wins
            ("bytes=5-2", 0, Full),
            // invalid syntax → Full
            ("bytes=5-2", 1000, Full),
            ("bytes=0-1,5-2", 1000, Full),
            (
                "bytes=99999999999999999999-19999999999999999999",
                1000,
                Full,
            ),
            ("bytes=", 1000, Full),
            ("bytes=,", 1000, Full),
            ("bytes= , ", 1000, Full),
            ("bytes=-", 1000, Full),
            ("bytes=--1", 1000, Full),
            ("bytes=1--2", 1000, Full),
            ("bytes=1-2-3", 1000, Full),
            ("bytes=a-b", 1000, Full),
            ("bytes=1", 1000, Full),
            ("bytes=+1-2", 1000, Full),
            ("bytes=-+1", 1000, Full),
            ("bytes=0x10-", 1000, Full),
            ("bytes=1 -2", 1000, Full),
            ("bytes=1- 2", 1000, Full),
            ("bytes=0-1;2-3", 1000, Full),
            ("bytes=0-1,x", 1000, Full),
            ("bytes=1000-,junk", 1000, Full),
            ("bytes=\u{e9}-1", 1000, Full),
            // unit
            ("items=0-1", 1000, Full),
            ("bytes 0-1", 1000, Full),
            ("0-1", 1000, Full),
            ("", 1000, Full),
            ("=0-1", 1000, Full),
            ("bytes =0-1", 1000, Full),
            ("byte=0-1", 1000, Full),
            ("bytesx=0-1", 1000, Full),
            ("BYTES=0-1", 1000, p(&[(0, 2)])),
            ("Bytes=0-1", 1000, p(&[(0, 2)])),
            // whitespace and empty list elements
            ("  bytes=0-1  ", 1000, p(&[(0, 2)])),
            ("bytes=0-9 , 500-509", 1000, p(&[(0, 10), (500, 510)])),
            ("bytes=0-9,\t500-509", 1000, p(&[(0, 10), (500, 510)])),
            ("bytes= 0-9 ,500-509 ", 1000, p(&[(0, 10), (500, 510)])),
            ("bytes=0-9,,500-509", 1000, p(&[(0, 10), (500, 510)])),
            ("bytes=,0-9,", 1000, p(&[(0, 10)])),
            // sorting
            ("bytes=500-509,0-9", 1000, p(&[(0, 10), (500, 510)])),
            ("bytes=-10,0-9", 1000, p(&[(0, 10), (990, 1000)])),
            // overlap / adjacency / small gaps coalesce
            ("bytes=0-499,400-999", 1000, p(&[(0, 1000)])),
            ("bytes=0-9,10-19", 1000, p(&[(0, 20)])),
            ("bytes=0-9,0-9", 1000, p(&[(0, 10)])),
            ("bytes=0-99,10-19", 1000, p(&[(0, 100)])),
            ("bytes=0-9,89-99", 1000, p(&[(0, 100)])), // gap 79
            ("bytes=0-9,90-99", 1000, p(&[(0, 10), (90, 100)])), // gap 80
            ("bytes=0-,-10", 1000, p(&[(0, 1000)])),
            ("bytes=0-0,-1", 2, p(&[(0, 2)])),
            ("bytes=0-0,0-0,0-0,0-0", 1000, p(&[(0, 1)])),
            // exactly MAX_RANGES parts, 100 bytes apart
            (
                "bytes=0-0,100-100,200-200,300-300,400-400,500-500,600-600,700-700,\
                 800-800,900-900,1000-1000,1100-1100,1200-1200,1300-1300,1400-1400,1500-1500",
                10_000,
                Partial((0..16).map(|i| i * 100..i * 100 + 1).collect()),
            ),
            // one more → Full (never amplify)
            (
                "bytes=0-0,100-100,200-200,300-300,400-400,500-500,600-600,700-700,\
                 800-800,900-900,1000-1000,1100-1100,1200-1200,1300-1300,1400-1400,\
                 1500-1500,1600-1600",
                10_000,
                Full,
            ),
        ];
        for (header, len, want) in cases {
            assert_eq!(
                parse_range(header.as_bytes(), len),
                want,
                "{header:?} len={len}"
            );
        }
    }

    #[test]
    fn twenty_tiny_ranges() {
        // 20 one-byte ranges far apart: too many parts → Full.
        let far: Vec<String> = (0..20).map(|i| format!("{0}-{0}", i * 1000)).collect();
        let header = format!("bytes={}", far.join(","));
        assert_eq!(parse_range(header.as_bytes(), 100_000), Full);
        // 20 one-byte ranges close together coalesce into one part.
        let near: Vec<String> = (0..20).map(|i| format!("{0}-{0}", i * 2)).collect();
        let header = format!("bytes={}", near.join(","));
        assert_eq!(parse_range(header.as_bytes(), 100_000), p(&[(0, 39)]));
        // 20 ranges of which only a few are satisfiable.
        let header = format!("bytes={}", far.join(","));
        assert_eq!(
            parse_range(header.as_bytes(), 2001),
            p(&[(0, 1), (1000, 1001), (2000, 2001)])
        );
    }

    #[test]
    fn too_many_specs_is_full() {
        let header = format!("bytes={}", vec!["0-0"; MAX_RANGE_SPECS].join(","));
        assert_eq!(parse_range(header.as_bytes(), 10), p(&[(0, 1)]));
        let header = format!("bytes={}", vec!["0-0"; MAX_RANGE_SPECS + 1].join(","));
        assert_eq!(parse_range(header.as_bytes(), 10), Full);
    }

    #[test]
    fn partial_invariants_hold() {
        let headers = [
            "bytes=0-0,1-1,2-2,-1,-2,-3,5-,4-",
            "bytes=10-20,0-5,30-,-50,7-8",
            "bytes=0-,0-,0-,0-",
            "bytes=-1000000,0-1",
            "bytes=200-300,100-150,50-60,400-450,600-610",
        ];
        for h in headers {
            for len in [1u64, 2, 3, 10, 100, 500, 1000, u64::MAX] {
                if let Partial(rs) = parse_range(h.as_bytes(), len) {
                    assert!(!rs.is_empty() && rs.len() <= MAX_RANGES, "{h} {len}");
                    let total: u64 = rs.iter().map(|r| r.end - r.start).sum();
                    assert!(total <= len, "{h} {len}");
                    for r in &rs {
                        assert!(r.start < r.end && r.end <= len, "{h} {len} {r:?}");
                    }
                    for w in rs.windows(2) {
                        assert!(w[1].start >= w[0].end + COALESCE_GAP, "{h} {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn huge_len() {
        assert_eq!(
            parse_range(b"bytes=-1", u64::MAX),
            p(&[(u64::MAX - 1, u64::MAX)])
        );
        assert_eq!(
            parse_range(b"bytes=18446744073709551614-", u64::MAX),
            p(&[(u64::MAX - 1, u64::MAX)])
        );
        assert_eq!(
            parse_range(b"bytes=18446744073709551615-", u64::MAX),
            Unsatisfiable
        );
    }

    #[test]
    fn no_panic_on_odd_bytes() {
        let odd: &[&[u8]] = &[
            b"",
            b"=",
            b"==",
            b"bytes==",
            b"bytes=\xff",
            b"\xff=0-1",
            b"bytes=\x00",
            b"bytes=-",
            b"bytes=,-,",
            b"bytes=0-0\r\n",
            b"\t",
            b"bytes=\t",
        ];
        for h in odd {
            for len in [0, 1, u64::MAX] {
                let _ = parse_range(h, len);
            }
        }
    }

    #[test]
    fn boundary_is_deterministic_hex() {
        assert_eq!(multipart_boundary(0), "e220a8397b1dcdaf7e6f");
        let mut seen = std::collections::HashSet::new();
        for seed in [0u64, 1, 2, 42, u64::MAX, 0xdead_beef] {
            let b = multipart_boundary(seed);
            assert_eq!(b, multipart_boundary(seed));
            assert_eq!(b.len(), BOUNDARY_LEN);
            assert!(b
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(seen.insert(b));
        }
    }

    #[test]
    fn part_head_and_tail_format() {
        let cases: &[(&str, &str, Range<u64>, u64, &str)] = &[
            (
                "B",
                "text/plain",
                0..10,
                1000,
                "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\r\n",
            ),
            (
                "xyz",
                "image/png",
                999..1000,
                1000,
                "\r\n--xyz\r\nContent-Type: image/png\r\nContent-Range: bytes 999-999/1000\r\n\r\n",
            ),
            (
                "B",
                "",
                5..6,
                6,
                "\r\n--B\r\nContent-Range: bytes 5-5/6\r\n\r\n",
            ),
            // degenerate input must not panic
            (
                "B",
                "",
                0..0,
                0,
                "\r\n--B\r\nContent-Range: bytes 0-0/0\r\n\r\n",
            ),
        ];
        for (b, ct, r, len, want) in cases {
            assert_eq!(part_head(b, ct, r, *len), *want);
            assert_eq!(part_head_len(b, ct, r, *len), want.len() as u64);
        }
        assert_eq!(multipart_tail("B"), "\r\n--B--\r\n");
    }

    /// Build the body the way the sender will and compare with multipart_len.
    #[test]
    fn multipart_len_matches_assembled_body() {
        let data: Vec<u8> = (0..=255u8).cycle().take(123_457).collect();
        let len = data.len() as u64;
        let headers = [
            "bytes=0-9,500-509",
            "bytes=0-0,-1",
            "bytes=0-,100-200",
            "bytes=1-1,1000-1999,99999-,-7",
            "bytes=0-8,9-99,1000-1000,2000-2000,3000-3000,4000-4000,5000-5000,\
             6000-6000,7000-7000,8000-8000,9000-9000,10000-10000,100000-123456",
        ];
        for (i, h) in headers.iter().enumerate() {
            let Partial(ranges) = parse_range(h.as_bytes(), len) else {
                panic!("{h} should be partial");
            };
            for ct in ["application/octet-stream", "text/html; charset=utf-8", ""] {
                let b = multipart_boundary(i as u64);
                let mut body = Vec::new();
                for r in &ranges {
                    body.extend_from_slice(part_head(&b, ct, r, len).as_bytes());
                    body.extend_from_slice(&data[r.start as usize..r.end as usize]);
                }
                body.extend_from_slice(multipart_tail(&b).as_bytes());
                assert_eq!(
                    multipart_len(&b, ct, &ranges, len),
                    body.len() as u64,
                    "{h} {ct:?}"
                );
            }
        }
        // no parts: just the tail
        assert_eq!(
            multipart_len("B", "x", &[], 5),
            "\r\n--B--\r\n".len() as u64
        );
        // absurd input saturates instead of panicking
        let r = [0..u64::MAX, 0..u64::MAX];
        assert_eq!(multipart_len("B", "x", &r, u64::MAX), u64::MAX);
    }

    #[test]
    fn helpers() {
        let digits: &[(u64, u64)] = &[(0, 1), (9, 1), (10, 2), (999, 3), (1000, 4), (u64::MAX, 20)];
        for &(n, want) in digits {
            assert_eq!(decimal_len(n), want, "{n}");
        }
        let cmp: &[(&str, &str, Ordering)] = &[
            ("1", "2", Ordering::Less),
            ("10", "9", Ordering::Greater),
            ("0010", "10", Ordering::Equal),
            ("000", "0", Ordering::Equal),
            (
                "99999999999999999999",
                "19999999999999999999",
                Ordering::Greater,
            ),
        ];
        for &(a, b, want) in cmp {
            assert_eq!(cmp_decimal(a.as_bytes(), b.as_bytes()), want, "{a} {b}");
        }
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
    }
}
