//! Accept-Encoding: which content codings a request allows, and which of the
//! server's available representations to send (RFC 9110 §12.5.3, §12.4.2).
//!
//! This module owns the parse of one Accept-Encoding field value into
//! [`Accepted`] (a q-value per [`Coding`] plus one for identity) and the
//! choice among the codings a resource is available in ([`Accepted::choose`]).
//! It does not know which variants exist on disk or which types are
//! compressible; the caller passes those in. Pure, no allocation, no panics on
//! any input: it runs on every request.
//!
//! # Grammar (strict)
//!
//! ```text
//! Accept-Encoding = #( codings [ weight ] )           ; RFC 9110 §12.5.3
//! codings         = content-coding / "identity" / "*"
//! weight          = OWS ";" OWS "q=" qvalue           ; RFC 9110 §12.4.2
//! qvalue          = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//! ```
//!
//! Codings are tokens (`tchar`), compared case-insensitively, as is the `q`
//! name. Empty list elements are allowed (`gzip, , br`, the #rule of RFC 9110
//! §5.6.1). Parameters other than `q` (`gzip;level=1`) are accepted and
//! ignored; `q` may appear once per element. Anything else (a q above 1 or
//! with four decimals, `q=` with no value, `;;`, a quoted coding, control
//! bytes, two tokens separated by a space) makes the whole value unparsable,
//! and an unparsable value counts as no header at all: identity only.
//!
//! # Meaning
//!
//! * "The asterisk "*" symbol in an Accept-Encoding field matches any
//!   available content coding not explicitly listed in the field." So `*`
//!   gives its q to every coding without an entry of its own, and to identity
//!   too when identity has none.
//! * Identity "is acceptable by default unless specifically excluded by the
//!   Accept-Encoding header field stating either "identity;q=0" or "*;q=0"
//!   without a more specific entry for "identity"".
//! * "A value of 0 means "not acceptable"" and "if no "q" parameter is
//!   present, the default weight is 1".
//! * An identity that is listed (`identity;q=…`, or covered by `*;q=…`)
//!   competes with the codings by its q and loses ties. One that is only
//!   implied is a fallback: `gzip;q=0.8` still chooses gzip.
//! * An empty field value "implies that the user agent does not want any
//!   content coding in response": identity only.
//! * No field at all would allow any coding (RFC 9110 §12.5.3 rule 1); srvd
//!   serves identity then, as the RFC advises when identity is available.
//! * Unknown codings (`deflate`, `compress`) are ignored. When a coding is
//!   listed twice (`gzip;q=0, x-gzip`), the first entry counts.
//!
//! # One value, not several lines
//!
//! [`Accepted::parse`] takes one field value. A client may split the list
//! over several `Accept-Encoding` lines; the request parser keeps one line
//! (the last), and a caller that has several can join them with `", "`, which
//! RFC 9110 §5.3 makes equivalent.
//!
//! # Worked examples
//!
//! With the server's order `[Br, Zstd, Gzip]`:
//!
//! | Accept-Encoding                   | br  | zstd | gzip | identity | choice          |
//! |-----------------------------------|-----|------|------|----------|-----------------|
//! | absent, empty, `gzip;q=2`         | 0   | 0    | 0    | 1        | identity        |
//! | `gzip, deflate, br, zstd`         | 1   | 1    | 1    | 1        | br              |
//! | `br;q=0.5, gzip`                  | 0.5 | 0    | 1    | 1        | gzip            |
//! | `gzip;q=0.5, identity;q=1`        | 0   | 0    | 0.5  | 1        | identity        |
//! | `gzip;q=0.5`                      | 0   | 0    | 0.5  | 1        | gzip            |
//! | `gzip;q=0.5, *;q=0.6`             | 0.6 | 0.6  | 0.5  | 0.6      | br              |
//! | `*;q=0`                           | 0   | 0    | 0    | 0        | 406             |
//! | `*;q=0, identity`                 | 0   | 0    | 0    | 1        | identity        |
//! | `identity;q=0, zstd;q=0.1`        | 0   | 0.1  | 0    | 0        | zstd            |

use crate::http::coding::Coding;

/// Quality values 0..=1000 (q=0.5 is 500).
pub type Q = u16;

/// q=1, the default weight.
const Q_ONE: Q = 1000;

/// What a request's Accept-Encoding allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The q of each coding, indexed by [`Coding::index`].
    codings: [Q; Coding::ALL.len()],
    /// The q of identity (no content coding).
    identity: Q,
    /// Whether that q was given (`identity;q=…`, or `*` covering it) rather than
    /// implied: only a given q competes with the codings in [`Accepted::choose`].
    identity_listed: bool,
}

/// The representation [`Accepted::choose`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Send the variant in this coding.
    Coding(Coding),
    /// Send the unencoded representation.
    Identity,
    /// Neither identity nor any available coding is acceptable (406).
    NotAcceptable,
}

impl Accepted {
    /// No coding, identity at q=1: what an absent, empty or unparsable field means.
    const IDENTITY_ONLY: Accepted = Accepted {
        codings: [0; Coding::ALL.len()],
        identity: Q_ONE,
        identity_listed: false,
    };

    /// From the header value(s): `None` (no header) → identity only. A value that does not parse
    /// as a whole (bad q syntax, q > 1, more than 3 decimals, junk characters, empty elements are
    /// fine though: `gzip, , br` is valid per the #rule) → treated as absent (identity only).
    /// Tokens are case-insensitive; unknown codings (deflate, compress, foo) are ignored; parameters
    /// other than q are ignored; `*` sets the q of every coding (and of identity) not listed explicitly;
    /// identity is acceptable (q=1) unless `identity;q=0`, or `*;q=0` without an `identity` entry.
    /// An empty header value (`Accept-Encoding:`) means identity only. Must not allocate (hot path).
    ///
    /// Takes one field value: see the module docs for requests with several lines.
    pub fn parse(value: Option<&[u8]>) -> Accepted {
        value
            .and_then(parse_list)
            .unwrap_or(Accepted::IDENTITY_ONLY)
    }

    /// The q of `coding` (0: not acceptable).
    pub fn q(&self, coding: Coding) -> Q {
        self.codings[coding.index()]
    }

    /// The q of identity (0: not acceptable).
    pub fn identity_q(&self) -> Q {
        self.identity
    }

    /// Picks the representation among `available` codings (given in the server's preference order):
    /// the highest q > 0 wins; among equal q, earlier in `available` wins; identity competes with its q
    /// but loses ties (identity comes last on ties). `gzip;q=0.5, identity;q=1` → Identity.
    /// When neither identity nor any available coding is acceptable → NotAcceptable.
    ///
    /// Only a listed identity competes (`identity;q=…`, or `*;q=…` without an identity entry,
    /// issue 10: "An explicit `identity;q=…` takes part in the comparison"). An implied identity
    /// is acceptable but only a fallback: `gzip;q=0.8` asks for gzip, it does not rank it
    /// below an unlisted identity at q=1.
    pub fn choose(&self, available: &[Coding]) -> Choice {
        let mut best = None;
        let mut best_q = 0;
        for &coding in available {
            // Strictly greater: on a tie the earlier coding (the server's preference) stays.
            let q = self.q(coding);
            if q > best_q {
                best = Some(coding);
                best_q = q;
            }
        }
        match best {
            // `>=`: identity loses ties, so `gzip, identity` is gzip.
            Some(coding) if !self.identity_listed || best_q >= self.identity => {
                Choice::Coding(coding)
            }
            _ if self.identity > 0 => Choice::Identity,
            _ => Choice::NotAcceptable,
        }
    }
}

/// The whole list, or `None` if any part of it is malformed.
fn parse_list(value: &[u8]) -> Option<Accepted> {
    // Explicit entries first; `*` fills the gaps once the whole list is read.
    let mut codings: [Option<Q>; Coding::ALL.len()] = [None; Coding::ALL.len()];
    let mut identity = None;
    let mut star = None;

    let mut cur = Cursor { s: value, i: 0 };
    loop {
        cur.skip_ows();
        match cur.peek() {
            None => break,
            // An empty element (`gzip, , br`, or a leading or trailing comma).
            Some(b',') => {
                cur.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cur.token()?;
        let q = cur.params()?.unwrap_or(Q_ONE);
        cur.skip_ows();
        match cur.peek() {
            None | Some(b',') => {}
            Some(_) => return None,
        }
        let slot = if name == b"*" {
            &mut star
        } else if name.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else if let Some(coding) = Coding::from_token(name) {
            &mut codings[coding.index()]
        } else {
            continue; // deflate, compress, …: srvd has no such variant.
        };
        if slot.is_none() {
            *slot = Some(q);
        }
    }

    let mut accepted = Accepted {
        codings: [0; Coding::ALL.len()],
        identity: identity.or(star).unwrap_or(Q_ONE),
        identity_listed: identity.or(star).is_some(),
    };
    for (q, explicit) in accepted.codings.iter_mut().zip(codings) {
        *q = explicit.or(star).unwrap_or(0);
    }
    Some(accepted)
}

/// A position in the field value; every method returns `None` on a syntax error.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Consumes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// OWS = *( SP / HTAB )
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// token = 1*tchar
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let s: &'a [u8] = self.s;
        (self.i > start).then(|| &s[start..self.i])
    }

    /// `*( OWS ";" OWS parameter )` after a coding: the q if one was given.
    /// `Some(None)` is "no q", `None` a syntax error (including a second q).
    fn params(&mut self) -> Option<Option<Q>> {
        let mut q = None;
        loop {
            self.skip_ows();
            if !self.eat(b';') {
                return Some(q);
            }
            self.skip_ows();
            let name = self.token()?;
            if !self.eat(b'=') {
                return None;
            }
            if name.eq_ignore_ascii_case(b"q") {
                if q.is_some() {
                    return None;
                }
                q = Some(self.qvalue()?);
            } else {
                self.param_value()?;
            }
        }
    }

    /// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
    ///
    /// Stops after at most three decimals; a fourth digit is left for the
    /// caller, which then finds no delimiter and rejects the value.
    fn qvalue(&mut self) -> Option<Q> {
        if self.eat(b'1') {
            if self.eat(b'.') {
                for _ in 0..3 {
                    if !self.eat(b'0') {
                        break;
                    }
                }
            }
            return Some(Q_ONE);
        }
        if !self.eat(b'0') {
            return None;
        }
        let mut q = 0;
        if self.eat(b'.') {
            for scale in [100, 10, 1] {
                match self.peek() {
                    Some(d @ b'0'..=b'9') => {
                        q += Q::from(d - b'0') * scale;
                        self.i += 1;
                    }
                    _ => break,
                }
            }
        }
        Some(q)
    }

    /// parameter-value = ( token / quoted-string ), skipped (RFC 9110 §5.6.6).
    fn param_value(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return self.token().map(drop);
        }
        // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    match self.peek()? {
                        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => self.i += 1,
                        _ => return None,
                    }
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => self.i += 1,
                _ => return None,
            }
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Br, Gzip, Zstd};

    /// q of br, zstd, gzip, identity: the columns of the tables below.
    type Qs = [Q; 4];

    const IDENTITY_ONLY: Qs = [0, 0, 0, 1000];
    const ALL: Qs = [1000, 1000, 1000, 1000];

    fn qs(a: &Accepted) -> Qs {
        [a.q(Br), a.q(Zstd), a.q(Gzip), a.identity_q()]
    }

    fn parse(value: &str) -> Accepted {
        Accepted::parse(Some(value.as_bytes()))
    }

    #[test]
    fn coding_array_is_indexed_by_coding_index() {
        // The Qs columns assume this order; a reordered enum must fail here first.
        assert_eq!([Br.index(), Zstd.index(), Gzip.index()], [0, 1, 2]);
    }

    #[test]
    fn absent_header_means_identity_only() {
        assert_eq!(qs(&Accepted::parse(None)), IDENTITY_ONLY);
        assert_eq!(Accepted::parse(None).choose(&Coding::ALL), Choice::Identity);
    }

    #[test]
    fn valid_values_table() {
        let cases: &[(&str, Qs)] = &[
            // Empty: identity only (RFC 9110 §12.5.3).
            ("", IDENTITY_ONLY),
            (" ", IDENTITY_ONLY),
            (",", IDENTITY_ONLY),
            (" , ,\t", IDENTITY_ONLY),
            // Tokens, case, alias.
            ("gzip", [0, 0, 1000, 1000]),
            ("GZIP", [0, 0, 1000, 1000]),
            ("GZip", [0, 0, 1000, 1000]),
            ("x-gzip", [0, 0, 1000, 1000]),
            ("X-GZIP;q=0.3", [0, 0, 300, 1000]),
            ("br", [1000, 0, 0, 1000]),
            ("zstd", [0, 1000, 0, 1000]),
            ("br;q=1.0, gzip;q=0.8", [1000, 0, 800, 1000]),
            ("br;q=0", [0, 0, 0, 1000]),
            // Real clients.
            ("gzip, deflate, br, zstd", ALL), // Chrome, Edge, Firefox ≥ 126
            ("gzip, deflate, br", [1000, 0, 1000, 1000]), // Safari, older Firefox
            ("deflate, gzip, br, zstd", ALL), // curl --compressed
            ("gzip, deflate", [0, 0, 1000, 1000]),
            ("gzip,deflate,br,zstd", ALL),
            // Unknown codings are ignored.
            ("deflate", IDENTITY_ONLY),
            ("compress, foo;q=0.5", IDENTITY_ONLY),
            // `*` fills whatever is not listed, identity included.
            ("*", ALL),
            ("*;q=0", [0, 0, 0, 0]),
            ("*;q=0, identity", [0, 0, 0, 1000]),
            ("identity, *;q=0", [0, 0, 0, 1000]),
            ("*;q=0, identity;q=0.2", [0, 0, 0, 200]),
            ("*;q=0.5", [500, 500, 500, 500]),
            ("*;q=0.5, br", [1000, 500, 500, 500]),
            ("br;q=0, *", [0, 1000, 1000, 1000]),
            ("*;q=0, gzip", [0, 0, 1000, 0]),
            ("*, deflate;q=0", ALL),
            // identity.
            ("identity;q=0", [0, 0, 0, 0]),
            ("IDENTITY;Q=0", [0, 0, 0, 0]),
            ("identity;q=0, zstd;q=0.1", [0, 100, 0, 0]),
            ("gzip;q=0.5, identity;q=1", [0, 0, 500, 1000]),
            ("identity", IDENTITY_ONLY),
            // qvalue forms.
            ("gzip;q=1", [0, 0, 1000, 1000]),
            ("gzip;q=1.", [0, 0, 1000, 1000]),
            ("gzip;q=1.000", [0, 0, 1000, 1000]),
            ("gzip;q=0", [0, 0, 0, 1000]),
            ("gzip;q=0.", [0, 0, 0, 1000]),
            ("gzip;q=0.000", [0, 0, 0, 1000]),
            ("gzip;q=0.001", [0, 0, 1, 1000]),
            ("gzip;q=0.01", [0, 0, 10, 1000]),
            ("gzip;q=0.5", [0, 0, 500, 1000]),
            ("gzip;q=0.50", [0, 0, 500, 1000]),
            ("gzip;q=0.999", [0, 0, 999, 1000]),
            ("gzip;Q=0.25", [0, 0, 250, 1000]),
            // Whitespace: OWS around `;` and `,`, SP or HTAB.
            ("gzip ; q=0.5", [0, 0, 500, 1000]),
            ("gzip\t;\tq=0.5", [0, 0, 500, 1000]),
            ("  gzip  ,  br;q=0.2  ", [200, 0, 1000, 1000]),
            ("\tgzip,\tbr\t", [1000, 0, 1000, 1000]),
            // Empty elements (#rule).
            ("gzip, , br", [1000, 0, 1000, 1000]),
            (",gzip,", [0, 0, 1000, 1000]),
            ("gzip,,,br", [1000, 0, 1000, 1000]),
            // Other parameters are ignored, before or after q.
            ("gzip;level=1;q=0.5", [0, 0, 500, 1000]),
            ("gzip;q=0.5;level=1", [0, 0, 500, 1000]),
            ("gzip ; level=1 ; q=0.5", [0, 0, 500, 1000]),
            ("gzip;level=\"a, b;q=0\";q=0.5, br", [1000, 0, 500, 1000]),
            ("gzip;x=\"\\\"\", br;q=0.1", [100, 0, 1000, 1000]),
            ("gzip;x=\"\"", [0, 0, 1000, 1000]),
            // A coding listed twice: the first entry counts.
            ("gzip;q=0, gzip", [0, 0, 0, 1000]),
            ("gzip, x-gzip;q=0", [0, 0, 1000, 1000]),
            ("identity;q=0, identity", [0, 0, 0, 0]),
            ("*;q=0.2, *", [200, 200, 200, 200]),
            // `0,5` is q=0 and then an unknown coding `5`, not q=0.5.
            ("gzip;q=0,5", [0, 0, 0, 1000]),
        ];
        for &(value, want) in cases {
            assert_eq!(qs(&parse(value)), want, "Accept-Encoding: {value:?}");
        }
    }

    #[test]
    fn malformed_values_count_as_absent() {
        // Each would grant gzip (or br) something if it were parsed leniently.
        let cases: &[&str] = &[
            // q out of range or with too many decimals.
            "gzip;q=1.5",
            "gzip;q=2",
            "gzip;q=1.01",
            "gzip;q=1.0001",
            "gzip;q=0.1234",
            "gzip;q=0.0001",
            // q syntax.
            "gzip;q=",
            "gzip;q=abc",
            "gzip;q=.5",
            "gzip;q=00.5",
            "gzip;q=0.5x",
            "gzip;q=-0",
            "gzip;q=+1",
            "gzip;q=\"0.5\"",
            "gzip;q = 0.5",
            "gzip;q =0.5",
            "gzip;q= 0.5",
            "gzip;q",
            "gzip;q=0.5;q=0.5",
            // Parameters.
            "gzip;;q=1",
            "gzip;",
            "gzip; ",
            "gzip;=1",
            "gzip;level",
            "gzip;level=",
            "gzip;level=\"open",
            "gzip;level=\"a\"b",
            "gzip;level=\"\x01\"",
            "gzip;level=\"\\\x01\"",
            "gzip;level=\"\\",
            "gzip;level=a b",
            // Element syntax.
            "gzip q=1",
            "gzip br",
            ";q=1, gzip",
            "gzip, ;q=1",
            "\"gzip\"",
            "gzip\x01",
            "gzip,\x7f",
            "gzip\r\n",
            "gzip\r",
            "gzip\n, br",
            "gzip, brü",
            "gzip/1",
            "gzip, br(9)",
            "gzip, [br]",
        ];
        for &value in cases {
            let a = parse(value);
            assert_eq!(qs(&a), IDENTITY_ONLY, "Accept-Encoding: {value:?}");
            assert_eq!(a, Accepted::parse(None), "Accept-Encoding: {value:?}");
        }
        // Non-UTF-8 bytes in a token.
        let a = Accepted::parse(Some(b"gzip, b\xffr"));
        assert_eq!(qs(&a), IDENTITY_ONLY);
    }

    #[test]
    fn malformed_tail_spoils_valid_head() {
        // Strict: a good prefix does not survive a bad element later on.
        let a = parse("br, gzip, zstd;q=1.5");
        assert_eq!(qs(&a), IDENTITY_ONLY);
        assert_eq!(a.choose(&Coding::ALL), Choice::Identity);
    }

    #[test]
    fn obs_text_is_allowed_in_quoted_parameter_values() {
        let a = Accepted::parse(Some(b"gzip;x=\"\xe9\\\xe9\";q=0.7"));
        assert_eq!(qs(&a), [0, 0, 700, 1000]);
    }

    #[test]
    fn choose_table() {
        use Choice::{Coding as C, Identity, NotAcceptable};
        const PREF: &[Coding] = &[Br, Zstd, Gzip];
        let cases: &[(Option<&str>, &[Coding], Choice)] = &[
            // Absent, empty, malformed: identity, whatever is available.
            (None, PREF, Identity),
            (None, &[], Identity),
            (Some(""), PREF, Identity),
            (Some("gzip;q=1.5"), PREF, Identity),
            // Browsers: the server's order decides among equal q.
            (Some("gzip, deflate, br, zstd"), PREF, C(Br)),
            (Some("gzip, deflate, br, zstd"), &[Zstd, Br, Gzip], C(Zstd)),
            (Some("gzip, deflate, br, zstd"), &[Gzip, Zstd, Br], C(Gzip)),
            (Some("deflate, gzip, br, zstd"), PREF, C(Br)),
            (Some("gzip, deflate, br"), PREF, C(Br)),
            (Some("gzip, deflate, br"), &[Zstd, Gzip], C(Gzip)),
            (Some("gzip, deflate, br, zstd"), &[], Identity),
            // Only what is available counts.
            (Some("gzip"), &[Br], Identity),
            (Some("gzip"), &[Br, Gzip], C(Gzip)),
            (Some("x-gzip"), PREF, C(Gzip)),
            (Some("deflate"), PREF, Identity),
            // The client's q beats the server's order.
            (Some("br;q=0.5, gzip"), PREF, C(Gzip)),
            (Some("br;q=1.0, gzip;q=0.8"), &[Gzip, Br], C(Br)),
            (Some("br;q=0.8, zstd;q=0.8, gzip;q=0.9"), PREF, C(Gzip)),
            (Some("br;q=0.8, zstd;q=0.8, gzip;q=0.7"), PREF, C(Br)),
            (
                Some("br;q=0.8, zstd;q=0.8, gzip;q=0.7"),
                &[Zstd, Br],
                C(Zstd),
            ),
            (Some("br;q=0.001, gzip;q=0.002"), PREF, C(Gzip)),
            (Some("br;q=0"), &[Br], Identity),
            (Some("br;q=0, gzip;q=0.1"), PREF, C(Gzip)),
            // Identity competes with its q and loses ties.
            (Some("gzip;q=0.5, identity;q=1"), PREF, Identity),
            (Some("gzip;q=0.9, identity"), PREF, Identity),
            (Some("IDENTITY;q=0.6, gzip;q=0.5"), PREF, Identity),
            // ... but only a listed identity: an implied one is the fallback.
            (Some("gzip;q=0.5"), PREF, C(Gzip)),
            (Some("gzip;q=0.001"), PREF, C(Gzip)),
            // `*` lists identity too.
            (Some("gzip;q=0.5, *;q=0.6"), &[Gzip], Identity),
            (Some("gzip;q=0.5, *;q=0.6"), PREF, C(Br)),
            (Some("gzip;q=0.7, *;q=0.6"), &[Gzip], C(Gzip)),
            (Some("gzip, identity"), PREF, C(Gzip)),
            (Some("gzip;q=0.5, identity;q=0.5"), PREF, C(Gzip)),
            (Some("gzip;q=0.5, identity;q=0.501"), PREF, Identity),
            (Some("identity;q=0.1, gzip;q=0.2"), &[Gzip], C(Gzip)),
            (Some("*"), PREF, C(Br)),
            (Some("*"), &[Gzip, Br], C(Gzip)),
            (Some("*;q=0.5, br"), &[Zstd, Br], C(Br)),
            (Some("*;q=0.5"), &[], Identity),
            // Not acceptable: identity refused and no acceptable coding available.
            (Some("identity;q=0"), &[], NotAcceptable),
            (Some("identity;q=0"), PREF, NotAcceptable),
            (Some("identity;q=0, gzip"), &[Br], NotAcceptable),
            (Some("identity;q=0, gzip"), &[Br, Gzip], C(Gzip)),
            (Some("identity;q=0, zstd;q=0.1"), PREF, C(Zstd)),
            (Some("*;q=0"), PREF, NotAcceptable),
            (Some("*;q=0"), &[], NotAcceptable),
            (Some("*;q=0, gzip"), &[Br, Gzip], C(Gzip)),
            (Some("*;q=0, gzip"), &[Br], NotAcceptable),
            (Some("*;q=0, identity"), PREF, Identity),
            (Some("*;q=0, identity;q=0.1, br"), PREF, C(Br)),
        ];
        for &(value, available, want) in cases {
            let a = Accepted::parse(value.map(str::as_bytes));
            assert_eq!(
                a.choose(available),
                want,
                "Accept-Encoding: {value:?}, available {available:?}"
            );
        }
    }

    #[test]
    fn choose_ignores_duplicates_in_available() {
        let a = parse("br;q=0.5, gzip");
        assert_eq!(a.choose(&[Br, Br, Gzip, Gzip]), Choice::Coding(Gzip));
    }

    #[test]
    fn never_panics_on_prefixes_and_byte_substitutions() {
        // A poor man's fuzz run: every prefix of a rich value, and every byte value
        // at every position, must parse to something (the fuzz target does the rest).
        let base: &[u8] =
            b" br;q=0.5 ;level=\"a\\\"b,c\" , , x-GZIP;Q=1.000,*;q=0,identity;q=0.001\t";
        for end in 0..=base.len() {
            let a = Accepted::parse(Some(&base[..end]));
            assert!(a.identity_q() <= Q_ONE);
        }
        let mut buf = base.to_vec();
        for i in 0..buf.len() {
            for b in 0..=u8::MAX {
                let saved = buf[i];
                buf[i] = b;
                let a = Accepted::parse(Some(&buf));
                assert!(Coding::ALL.iter().all(|&c| a.q(c) <= Q_ONE));
                buf[i] = saved;
            }
        }
        assert_eq!(qs(&Accepted::parse(Some(base))), [500, 0, 1000, 1]);
    }
}
