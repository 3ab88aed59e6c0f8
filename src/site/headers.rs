//! Header rules (`[[headers]]`): which extra header fields a response of a path carries.
//!
//! A site's rules are one ordered list: the inherited rules first, then its own. For a
//! response, the rules whose glob matches the request path form a bit mask (at most
//! [`MAX_RULES`] rules, so a `u64`); rules marked `on = "success"` drop out of the mask for
//! 4xx/5xx. Within the mask, a later rule wins for the same header name: each operation
//! knows, from load time, which later rules touch its name (`shadow`), so applying a mask
//! is a walk over its bits with no allocation and no name comparison.
//!
//! Operations on a header srvd writes itself ([`Builtin`]) replace it: the response head
//! leaves the built-in out ([`Applied::suppress`]) and writes the rule's value instead
//! (or nothing, for `remove`). Framing fields can never be named (checked at load).
//!
//! The static pipeline computes the mask once per cached file and keeps it in the cache
//! entry, so a cache hit pays no glob matching at all.

use super::glob::Glob;

/// Most rules one site may have, inherited ones included (the mask is a `u64`).
pub const MAX_RULES: usize = 64;

/// Headers srvd writes on its own that a rule may replace or remove: bits of a `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Server = 1,
    ContentType = 2,
    ETag = 4,
    LastModified = 8,
    AcceptRanges = 16,
    CacheControl = 32,
}

impl Builtin {
    /// The built-in a (case-insensitive) name refers to, if any.
    pub fn of(name: &str) -> Option<Builtin> {
        const ALL: [(&str, Builtin); 6] = [
            ("server", Builtin::Server),
            ("content-type", Builtin::ContentType),
            ("etag", Builtin::ETag),
            ("last-modified", Builtin::LastModified),
            ("accept-ranges", Builtin::AcceptRanges),
            ("cache-control", Builtin::CacheControl),
        ];
        ALL.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, b)| b)
    }

    pub fn bit(self) -> u8 {
        self as u8
    }
}

/// Header names no rule may set or remove: they frame the message or belong to the
/// connection (RFC 9110 §7.6.1, RFC 9112 §6), or are computed per response.
pub const FORBIDDEN: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "date",
    "content-range",
    "proxy-connection",
    "location",
];

/// One header operation of a rule.
#[derive(Debug, Clone)]
pub struct Op {
    /// The name as written in the config (a valid token).
    pub name: String,
    /// `Some(value)` sets the header; `None` removes it.
    pub value: Option<String>,
    builtin: Option<Builtin>,
    /// Rules after this one that set or remove the same name: when one of them is in the
    /// mask, this operation is overridden.
    shadow: u64,
}

impl Op {
    pub fn set(name: String, value: String) -> Op {
        Op {
            builtin: Builtin::of(&name),
            name,
            value: Some(value),
            shadow: 0,
        }
    }

    pub fn remove(name: String) -> Op {
        Op {
            builtin: Builtin::of(&name),
            name,
            value: None,
            shadow: 0,
        }
    }
}

/// One `[[headers]]` rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub glob: Glob,
    /// `on = "success"`: only on 2xx and 3xx responses.
    pub success_only: bool,
    pub ops: Vec<Op>,
}

/// A site's rules, inherited first, with the overriding relations computed.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Vec<Rule>,
    /// Bits of the `success_only` rules.
    success_only: u64,
}

impl HeaderRules {
    /// Builds the list; `rules.len()` must be at most [`MAX_RULES`] (the config checks it).
    pub fn new(mut rules: Vec<Rule>) -> HeaderRules {
        assert!(rules.len() <= MAX_RULES, "checked by the config");
        let mut success_only = 0;
        let names: Vec<Vec<String>> = rules
            .iter()
            .map(|r| r.ops.iter().map(|o| o.name.to_ascii_lowercase()).collect())
            .collect();
        for (i, rule) in rules.iter_mut().enumerate() {
            if rule.success_only {
                success_only |= 1 << i;
            }
            for op in &mut rule.ops {
                let name = op.name.to_ascii_lowercase();
                op.shadow = names
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .filter(|(_, later)| later.contains(&name))
                    .fold(0, |m, (j, _)| m | 1 << j);
            }
        }
        HeaderRules {
            rules,
            success_only,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules whose glob matches `path`, for any status.
    pub fn matching(&self, path: &str) -> u64 {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.glob.is_match(path))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The rules for a response of `path` with status `code`, matched now (error replies,
    /// redirects, listings: not the cached hot path, which keeps its mask per file).
    pub fn rules_for(&self, path: &str, code: u16) -> crate::http::response::Rules<'_> {
        if self.is_empty() {
            return crate::http::response::Rules::None;
        }
        crate::http::response::Rules::Applied(self.applied(self.matching(path), code))
    }

    /// The rules of `mask` that apply to a response with status `code`.
    pub fn applied(&self, mask: u64, code: u16) -> Applied<'_> {
        let mask = if (200..400).contains(&code) {
            mask
        } else {
            mask & !self.success_only
        };
        Applied { rules: self, mask }
    }
}

/// The rules that apply to one response.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    rules: &'a HeaderRules,
    mask: u64,
}

impl<'a> Applied<'a> {
    /// Calls `f` for each operation in effect (not overridden by a later rule), in order.
    fn each(&self, mut f: impl FnMut(&'a Op)) {
        let mut bits = self.mask;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            for op in &self.rules.rules[i].ops {
                if op.shadow & self.mask == 0 {
                    f(op);
                }
            }
        }
    }

    /// The value the rules give `name` (case-insensitive), if they set it.
    pub fn value_of(&self, name: &str) -> Option<&'a str> {
        let mut value = None;
        self.each(|op| {
            if op.name.eq_ignore_ascii_case(name) {
                value = op.value.as_deref();
            }
        });
        value
    }

    /// Built-in headers ([`Builtin`] bits) the head must leave out.
    pub fn suppress(&self) -> u8 {
        if self.mask == 0 {
            return 0;
        }
        let mut bits = 0;
        self.each(|op| bits |= op.builtin.map_or(0, Builtin::bit));
        bits
    }

    /// Appends `\r\nName: value` for each header the rules set.
    pub fn write(&self, out: &mut Vec<u8>) {
        if self.mask == 0 {
            return;
        }
        self.each(|op| {
            if let Some(value) = &op.value {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(op.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
            }
        });
    }
}

/// A header name is a token (RFC 9110 §5.1).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value: visible ASCII, or non-ASCII bytes, SP and HTAB inside, no leading or
/// trailing whitespace (RFC 9110 §5.5); never CR, LF, NUL or another control.
pub fn value_problem(value: &str) -> Option<&'static str> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        Some("must not contain control characters (CR, LF, NUL, ...)")
    } else if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        Some("must not start or end with whitespace")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, ops: Vec<Op>) -> Rule {
        Rule {
            glob: Glob::new(pattern).unwrap(),
            success_only: false,
            ops,
        }
    }

    fn render(rules: &HeaderRules, path: &str, code: u16) -> (String, u8) {
        let applied = rules.applied(rules.matching(path), code);
        let mut out = Vec::new();
        applied.write(&mut out);
        (String::from_utf8(out).unwrap(), applied.suppress())
    }

    #[test]
    fn later_rules_win_per_name() {
        let rules = HeaderRules::new(vec![
            rule(
                "/**",
                vec![
                    Op::set("X-A".into(), "1".into()),
                    Op::set("X-B".into(), "1".into()),
                ],
            ),
            rule("*.css", vec![Op::set("x-a".into(), "2".into())]),
            rule("/other/**", vec![Op::set("X-B".into(), "3".into())]),
        ]);
        assert_eq!(render(&rules, "/a.css", 200).0, "\r\nX-B: 1\r\nx-a: 2");
        assert_eq!(render(&rules, "/a.js", 200).0, "\r\nX-A: 1\r\nX-B: 1");
        assert_eq!(
            render(&rules, "/other/a.css", 200).0,
            "\r\nx-a: 2\r\nX-B: 3"
        );
    }

    #[test]
    fn remove_and_replace_builtins() {
        let rules = HeaderRules::new(vec![
            rule("/**", vec![Op::remove("Server".into())]),
            rule(
                "*.txt",
                vec![Op::set("Content-Type".into(), "text/x".into())],
            ),
        ]);
        assert_eq!(render(&rules, "/a", 200), (String::new(), 1));
        assert_eq!(
            render(&rules, "/a.txt", 404),
            ("\r\nContent-Type: text/x".into(), 1 | 2)
        );
        // A later rule that sets what an earlier one removed brings it back.
        let rules = HeaderRules::new(vec![
            rule("/**", vec![Op::remove("Server".into())]),
            rule("/x", vec![Op::set("server".into(), "mine".into())]),
        ]);
        assert_eq!(render(&rules, "/x", 200), ("\r\nserver: mine".into(), 1));
    }

    #[test]
    fn success_only_rules_skip_errors() {
        let mut r = rule(
            "/**",
            vec![Op::set("Cache-Control".into(), "max-age=9".into())],
        );
        r.success_only = true;
        let rules = HeaderRules::new(vec![r, rule("/**", vec![Op::set("X".into(), "y".into())])]);
        assert_eq!(
            render(&rules, "/", 304).0,
            "\r\nCache-Control: max-age=9\r\nX: y"
        );
        assert_eq!(
            render(&rules, "/", 301).0,
            "\r\nCache-Control: max-age=9\r\nX: y"
        );
        assert_eq!(render(&rules, "/", 404), ("\r\nX: y".into(), 0));
        assert_eq!(render(&rules, "/", 500).0, "\r\nX: y");
    }

    #[test]
    fn names_and_values() {
        assert!(valid_name("X-Frame-Options"));
        assert!(!valid_name("X Frame"));
        assert!(!valid_name(""));
        assert!(!valid_name("X:Y"));
        assert!(value_problem("default-src 'self'").is_none());
        assert!(value_problem("a\r\nX-Injected: 1").is_some());
        assert!(value_problem("a\0").is_some());
        assert!(value_problem(" a").is_some());
        assert!(value_problem("a\tb").is_none());
    }
}
