//! Path globs: the patterns with which header rules, redirects and listing paths select
//! request paths.
//!
//! This module owns the glob syntax, its compilation and its matching. It does no I/O
//! and knows nothing of the rules that hold a glob. It matches paths as
//! `static_files::path::normalize` leaves them: absolute, percent-decoded, normalised,
//! without a query, possibly ending in `/`.
//!
//! # Syntax
//!
//! | token | matches |
//! |---|---|
//! | `*` | any run of characters other than `/`, possibly empty |
//! | `**` | any run of characters, `/` included, possibly empty |
//! | `?` | exactly one character other than `/` (a Unicode scalar value, not a byte) |
//! | anything else | itself, case-sensitively: `[`, `]`, `{` and `}` are literal too |
//!
//! These are errors: an empty pattern, one longer than 1024 bytes, `***` (three or more
//! `*` in a row), a backslash, more than 16 wildcards, and a pattern that contains `/`
//! without starting with it.
//!
//! **What a pattern is matched against.** A pattern that contains a `/` must start with
//! one, and matches the whole path. A pattern without `/` matches the last segment of the
//! path (the text after its last `/`) at any depth; the last segment of `/dir/` is empty.
//!
//! ```text
//! pattern      matches                          does not match
//! /index.html  /index.html                      /a/index.html, /index.htm
//! /assets/**   /assets/, /assets/x/y.css        /assets, /assetsx/a
//! /docs/*      /docs/, /docs/a                  /docs/a/b
//! /a/**/b      /a/x/b, /a/x/y/b                 /a/b  (the two '/' are literal)
//! *.woff2      /font.woff2, /a/b/font.woff2     /font.woff2/, /a.woff2/b
//! robots.txt   /robots.txt, /x/robots.txt       /robots.txt.bak
//! *            every path, also /dir/           (nothing)
//! ?            /a, /x/é                         /dir/, /ab
//! ```
//!
//! `**` is a plain wildcard, not gitignore's "zero or more directories": that is why
//! `/a/**/b` does not match `/a/b`.
//!
//! # Captures
//!
//! Every wildcard (`*`, `**`, `?`) is a capture, numbered 1, 2, … from the left; its value
//! is the text it matched. When a path can be split in several ways, the wildcards are
//! **leftmost-greedy**: each in turn, from the left, takes the longest text that still
//! lets the rest of the pattern match, as `(.*)` does in a regex. So `/**/*` against
//! `/a/b/c` captures `a/b` and `c`, and `*-*` against `/x-y-z` captures `x-y` and `z`.
//!
//! # Cost
//!
//! [`Glob::is_match`] runs on every request, so it never allocates and the common shapes
//! never reach the regex engine: a pattern without wildcard is a string comparison, and
//! a pattern with one wildcard (`/assets/**`, `*.woff2`, `/docs/*`) is `starts_with`,
//! `ends_with` and one scan of the text in between. Any other pattern first checks its
//! literal prefix, its literal suffix and the shortest length a match can have, and only
//! then runs a [`regex::Regex`], whose engines take time linear in the path (times the
//! pattern), so hostile paths cannot make matching backtrack exponentially. The regex
//! keeps its scratch space in a pool: a worker is one thread, which after its first match
//! reuses that space without allocating.

use regex::Regex;

/// The longest pattern accepted, in bytes.
const MAX_PATTERN_LEN: usize = 1024;

/// The most wildcards (and so captures) a pattern may have.
const MAX_WILDCARDS: usize = 16;

/// A compiled path glob.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    /// The pattern has no `/`, so it is matched against the path's last segment.
    last_segment: bool,
    captures_len: usize,
    matcher: Matcher,
}

impl Glob {
    /// Compiles `pattern`; Err is a short lowercase reason for a config error message,
    /// e.g. "a pattern with '/' must start with '/'".
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let parts = parse(pattern)?;
        Ok(Glob {
            pattern: pattern.to_owned(),
            last_segment: !pattern.contains('/'),
            captures_len: parts.wildcards.len(),
            matcher: Matcher::new(&parts)?,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Number of captures (wildcards).
    pub fn captures_len(&self) -> usize {
        self.captures_len
    }

    /// Whether `path` matches. Does not allocate.
    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(self.haystack(path))
    }

    /// Like [`Glob::is_match`], and on a match pushes each capture's text onto `out`,
    /// [`Glob::captures_len`] of them in order. `out` is cleared first, so it is empty
    /// after a miss. May allocate.
    pub fn captures<'p>(&self, path: &'p str, out: &mut Vec<&'p str>) -> bool {
        out.clear();
        self.matcher.captures(self.haystack(path), out)
    }

    /// The part of `path` the pattern is matched against: all of it, or its last segment.
    fn haystack<'p>(&self, path: &'p str) -> &'p str {
        if self.last_segment {
            // '/' is one byte, so `i + 1` is a character boundary.
            path.rfind('/').map_or(path, |i| &path[i + 1..])
        } else {
            path
        }
    }
}

/// One wildcard token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    /// `*`
    Star,
    /// `**`
    DoubleStar,
    /// `?`
    Question,
}

impl Wildcard {
    /// The capturing group for this wildcard; greedy, hence leftmost-greedy captures.
    fn regex(self) -> &'static str {
        match self {
            Wildcard::Star => "([^/]*)",
            Wildcard::DoubleStar => "(.*)",
            Wildcard::Question => "([^/])",
        }
    }

    /// Whether this wildcard matches all of `text`.
    fn matches(self, text: &str) -> bool {
        match self {
            Wildcard::Star => !text.contains('/'),
            Wildcard::DoubleStar => true,
            Wildcard::Question => {
                let mut chars = text.chars();
                chars.next().is_some_and(|c| c != '/') && chars.next().is_none()
            }
        }
    }
}

/// A pattern cut at its wildcards. `literals[i]` comes before `wildcards[i]` and the last
/// literal after the last wildcard, so there is one literal more than wildcards (any of
/// them possibly empty): `/a/*.css` is `["/a/", ".css"]` around `[Star]`.
#[derive(Debug)]
struct Parts {
    literals: Vec<String>,
    wildcards: Vec<Wildcard>,
}

/// Checks `pattern` against the syntax and cuts it at its wildcards.
fn parse(pattern: &str) -> Result<Parts, String> {
    if pattern.is_empty() {
        return Err("empty pattern".to_owned());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    if pattern.contains('\\') {
        return Err("backslash is not allowed".to_owned());
    }
    if pattern.contains('/') && !pattern.starts_with('/') {
        return Err("a pattern with '/' must start with '/'".to_owned());
    }
    let mut literals = Vec::new();
    let mut wildcards = Vec::new();
    let mut literal = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let wildcard = match c {
            '?' => Wildcard::Question,
            '*' => {
                let mut run = 1;
                while chars.next_if_eq(&'*').is_some() {
                    run += 1;
                }
                match run {
                    1 => Wildcard::Star,
                    2 => Wildcard::DoubleStar,
                    _ => return Err("'***' is not allowed (use '*' or '**')".to_owned()),
                }
            }
            _ => {
                literal.push(c);
                continue;
            }
        };
        literals.push(std::mem::take(&mut literal));
        wildcards.push(wildcard);
    }
    literals.push(literal);
    if wildcards.len() > MAX_WILDCARDS {
        return Err(format!("more than {MAX_WILDCARDS} wildcards"));
    }
    Ok(Parts {
        literals,
        wildcards,
    })
}

/// How a compiled glob matches its haystack (the path, or its last segment).
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard: string equality.
    Exact(String),
    /// One wildcard between two literals (`/assets/**`, `*.woff2`, `/docs/*`): strip the
    /// prefix and the suffix, and check the text left over.
    One {
        prefix: String,
        wildcard: Wildcard,
        suffix: String,
    },
    /// Anything else.
    General(General),
}

impl Matcher {
    fn new(parts: &Parts) -> Result<Matcher, String> {
        match Matcher::fast(parts) {
            Some(matcher) => Ok(matcher),
            None => General::new(parts).map(Matcher::General),
        }
    }

    /// The matcher that needs no regex, for the shapes that have one.
    fn fast(parts: &Parts) -> Option<Matcher> {
        match (parts.literals.as_slice(), parts.wildcards.as_slice()) {
            ([literal], []) => Some(Matcher::Exact(literal.clone())),
            ([prefix, suffix], [wildcard]) => Some(Matcher::One {
                prefix: prefix.clone(),
                wildcard: *wildcard,
                suffix: suffix.clone(),
            }),
            _ => None,
        }
    }

    fn is_match(&self, haystack: &str) -> bool {
        match self {
            Matcher::Exact(literal) => haystack == literal,
            Matcher::One {
                prefix,
                wildcard,
                suffix,
            } => between(haystack, prefix, suffix).is_some_and(|middle| wildcard.matches(middle)),
            Matcher::General(general) => {
                general.may_match(haystack) && general.regex.is_match(haystack)
            }
        }
    }

    /// Pushes the captures onto `out` (which the caller cleared) on a match.
    fn captures<'p>(&self, haystack: &'p str, out: &mut Vec<&'p str>) -> bool {
        match self {
            Matcher::Exact(literal) => haystack == literal,
            Matcher::One {
                prefix,
                wildcard,
                suffix,
            } => match between(haystack, prefix, suffix) {
                // The only split there is: the prefix and suffix are literal and anchored.
                Some(middle) if wildcard.matches(middle) => {
                    out.push(middle);
                    true
                }
                _ => false,
            },
            Matcher::General(general) => general.captures(haystack, out),
        }
    }
}

/// The text between `prefix` and `suffix` when `haystack` starts with the one and ends
/// with the other, the two not overlapping.
fn between<'h>(haystack: &'h str, prefix: &str, suffix: &str) -> Option<&'h str> {
    haystack.strip_prefix(prefix)?.strip_suffix(suffix)
}

/// A pattern with two wildcards or more: literal prefilters, then an anchored regex.
#[derive(Debug, Clone)]
struct General {
    /// The literal before the first wildcard.
    prefix: String,
    /// The literal after the last wildcard.
    suffix: String,
    /// The fewest bytes a match can have: every literal, and one per `?`.
    min_len: usize,
    /// `^lit(group)lit(group)…lit$`, one capturing group per wildcard.
    regex: Regex,
}

impl General {
    fn new(parts: &Parts) -> Result<General, String> {
        let mut source = String::from("(?s)^");
        for (i, literal) in parts.literals.iter().enumerate() {
            source.push_str(&regex::escape(literal));
            if let Some(wildcard) = parts.wildcards.get(i) {
                source.push_str(wildcard.regex());
            }
        }
        source.push('$');
        // Cannot fail for what `parse` lets through (the pattern and wildcard limits keep
        // the program far below the regex size limit), but a config error beats a panic.
        let regex = Regex::new(&source).map_err(|_| "pattern is too complex".to_owned())?;
        let questions = parts
            .wildcards
            .iter()
            .filter(|&&w| w == Wildcard::Question)
            .count();
        Ok(General {
            prefix: parts.literals.first().cloned().unwrap_or_default(),
            suffix: parts.literals.last().cloned().unwrap_or_default(),
            min_len: parts.literals.iter().map(String::len).sum::<usize>() + questions,
            regex,
        })
    }

    /// The cheap necessary conditions, checked before the regex runs.
    fn may_match(&self, haystack: &str) -> bool {
        haystack.len() >= self.min_len
            && haystack.starts_with(&self.prefix)
            && haystack.ends_with(&self.suffix)
    }

    fn captures<'p>(&self, haystack: &'p str, out: &mut Vec<&'p str>) -> bool {
        if !self.may_match(haystack) {
            return false;
        }
        let mut locations = self.regex.capture_locations();
        if self.regex.captures_read(&mut locations, haystack).is_none() {
            return false;
        }
        // Group 0 is the whole match. Every group takes part in a match (there is no
        // alternation), so the empty-string fallback is never used.
        out.extend(
            (1..locations.len()).map(|i| locations.get(i).map_or("", |(s, e)| &haystack[s..e])),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
    }

    fn captures<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
        let mut out = Vec::new();
        glob(pattern).captures(path, &mut out).then_some(out)
    }

    /// Asserts, for each `(pattern, path, expected)`, that `is_match` and `captures`
    /// both say `expected`.
    fn check(table: &[(&str, &str, bool)]) {
        for &(pattern, path, expected) in table {
            let g = glob(pattern);
            assert_eq!(g.is_match(path), expected, "{pattern:?} is_match {path:?}");
            let mut out = Vec::new();
            assert_eq!(
                g.captures(path, &mut out),
                expected,
                "{pattern:?} captures {path:?}"
            );
        }
    }

    #[test]
    fn star_matches_a_run_within_one_segment() {
        check(&[
            ("/docs/*", "/docs/", true),
            ("/docs/*", "/docs/a", true),
            ("/docs/*", "/docs/a.html", true),
            ("/docs/*", "/docs/a/", false),
            ("/docs/*", "/docs/a/b", false),
            ("/docs/*", "/docs", false),
            ("/*/index.html", "/a/index.html", true),
            ("/*/index.html", "/index.html", false),
            ("/*/index.html", "/a/b/index.html", false),
            ("/a*b*c", "/abc", true),
            ("/a*b*c", "/axbyc", true),
            ("/a*b*c", "/ax/byc", false),
        ]);
    }

    #[test]
    fn double_star_matches_a_run_across_segments() {
        check(&[
            ("/assets/**", "/assets/", true),
            ("/assets/**", "/assets/a.css", true),
            ("/assets/**", "/assets/x/y.css", true),
            ("/assets/**", "/assets", false),
            ("/assetsx/**", "/assets/a", false),
            ("/assets/**", "/assetsx/a", false),
            ("/**", "/", true),
            ("/**", "/a/b/", true),
            ("/**.css", "/a/b/c.css", true),
            ("/**.css", "/a/b/c.cssx", false),
            ("/a/**/b", "/a/x/b", true),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a/**/b", "/a/b", false),
            ("/**/*.css", "/a/b.css", true),
            ("/**/*.css", "/b.css", false),
        ]);
    }

    #[test]
    fn question_matches_one_character_but_not_a_slash() {
        check(&[
            ("/?", "/a", true),
            ("/?", "/é", true), // two bytes, one character
            ("/?", "/", false),
            ("/?", "/ab", false),
            ("/a?b", "/a/b", false),
            ("/a?b", "/axb", true),
            ("/??", "/é", false),
            ("/??", "/éé", true),
            ("/v?/**", "/v1/x", true),
            ("/v?/**", "/v10/x", false),
        ]);
    }

    #[test]
    fn everything_else_is_literal_and_case_sensitive() {
        check(&[
            ("/index.html", "/index.html", true),
            ("/index.html", "/Index.html", false),
            ("/index.html", "/index.htm", false),
            ("/index.html", "/index.html/", false),
            ("/index.html", "/a/index.html", false),
            ("/index.html", "/indexxhtml", false), // '.' is not a regex dot
            ("/[ab].txt", "/[ab].txt", true),
            ("/[ab].txt", "/a.txt", false),
            ("/{a,b}/*", "/{a,b}/x", true),
            ("/{a,b}/*", "/a/x", false),
            ("/a+(b)|c$^**", "/a+(b)|c$^x", true),
            ("/a+(b)|c$^**", "/aa(b)|c$^x", false),
            ("/é/**", "/é/x", true),
        ]);
    }

    #[test]
    fn a_pattern_without_slash_matches_the_last_segment_at_any_depth() {
        check(&[
            ("*.woff2", "/font.woff2", true),
            ("*.woff2", "/a/b/font.woff2", true),
            ("*.woff2", "/font.woff2/", false),
            ("*.woff2", "/a.woff2/b", false),
            ("*.woff2", "/font.woff", false),
            ("robots.txt", "/robots.txt", true),
            ("robots.txt", "/x/robots.txt", true),
            ("robots.txt", "/robots.txt.bak", false),
            ("robots.txt", "/xrobots.txt", false),
            // The last segment of a directory path is empty.
            ("*", "/dir/", true),
            ("*", "/", true),
            ("**", "/dir/", true),
            ("?", "/dir/", false),
            ("?", "/x/é", true),
            ("*.css", "/dir/", false),
            // `**` cannot reach past the last '/' in this mode.
            ("a**", "/x/ab", true),
            ("a**", "/a/x", false),
            ("*.*", "/a.b/c", false),
            ("*.*", "/c/a.b", true),
        ]);
    }

    #[test]
    fn a_pattern_with_slash_matches_the_whole_path() {
        check(&[
            ("/a", "/a/b", false),
            ("/a", "/x/a", false),
            ("/*", "/a/b", false),
            ("/*/b", "/a/b", true),
            ("/a/", "/a/", true),
            ("/a/", "/a", false),
        ]);
    }

    #[test]
    fn captures_are_numbered_left_to_right() {
        let g = glob("/*/**/?.*");
        assert_eq!(g.captures_len(), 4);
        assert_eq!(
            captures("/*/**/?.*", "/a/b/c/d.css"),
            Some(vec!["a", "b/c", "d", "css"])
        );
        assert_eq!(captures("/old/**", "/old/x/y"), Some(vec!["x/y"]));
        assert_eq!(captures("/old/**", "/old/"), Some(vec![""]));
        assert_eq!(captures("*.woff2", "/a/font.woff2"), Some(vec!["font"]));
        assert_eq!(captures("/v?/*", "/v2/x"), Some(vec!["2", "x"]));
        assert_eq!(captures("/a", "/a"), Some(vec![]));
        assert_eq!(captures("/a/**", "/b/x"), None);
    }

    #[test]
    fn captures_are_leftmost_greedy() {
        assert_eq!(captures("/**/*", "/a/b/c"), Some(vec!["a/b", "c"]));
        assert_eq!(captures("/**/**", "/a/b/c"), Some(vec!["a/b", "c"]));
        assert_eq!(captures("*-*", "/x-y-z"), Some(vec!["x-y", "z"]));
        assert_eq!(captures("/**a**", "/aaa"), Some(vec!["aa", ""]));
        assert_eq!(captures("/*?", "/abc"), Some(vec!["ab", "c"]));
        assert_eq!(captures("/?*", "/abc"), Some(vec!["a", "bc"]));
        assert_eq!(captures("/**.*", "/a.b/c.d.e"), Some(vec!["a.b/c.d", "e"]));
    }

    #[test]
    fn captures_clears_out_first() {
        let g = glob("/**/*");
        let mut out = vec!["stale"];
        assert!(g.captures("/a/b", &mut out));
        assert_eq!(out, ["a", "b"]);
        assert!(!g.captures("/a", &mut out));
        assert!(out.is_empty());
        let exact = glob("/a");
        out.push("stale");
        assert!(exact.captures("/a", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn pattern_and_captures_len() {
        for (pattern, n) in [("/a", 0), ("*.css", 1), ("/**/*", 2), ("/?/?/*/**", 4)] {
            let g = glob(pattern);
            assert_eq!(g.pattern(), pattern);
            assert_eq!(g.captures_len(), n, "{pattern:?}");
        }
    }

    #[test]
    fn errors() {
        let long_ok = format!("/{}", "a".repeat(MAX_PATTERN_LEN - 1));
        let too_long = format!("/{}", "a".repeat(MAX_PATTERN_LEN));
        let sixteen = "/*".repeat(MAX_WILDCARDS);
        let seventeen = "/*".repeat(MAX_WILDCARDS + 1);
        assert!(Glob::new(&long_ok).is_ok());
        assert!(Glob::new(&sixteen).is_ok());
        assert!(Glob::new("/**").is_ok());
        let table: &[(&str, &str)] = &[
            ("", "empty pattern"),
            (&too_long, "pattern is longer than 1024 bytes"),
            ("/a\\b", "backslash is not allowed"),
            ("*\\*", "backslash is not allowed"),
            ("a/b", "a pattern with '/' must start with '/'"),
            ("*/x", "a pattern with '/' must start with '/'"),
            ("**/x", "a pattern with '/' must start with '/'"),
            ("/***", "'***' is not allowed (use '*' or '**')"),
            ("/a/****.css", "'***' is not allowed (use '*' or '**')"),
            ("***", "'***' is not allowed (use '*' or '**')"),
            (&seventeen, "more than 16 wildcards"),
        ];
        for &(pattern, reason) in table {
            assert_eq!(Glob::new(pattern).unwrap_err(), reason, "{pattern:?}");
        }
    }

    #[test]
    fn common_shapes_take_a_fast_path() {
        for pattern in [
            "/index.html",
            "robots.txt",
            "/assets/**",
            "**",
            "*.woff2",
            "*",
            "/docs/*",
            "/v?",
        ] {
            assert!(
                !matches!(glob(pattern).matcher, Matcher::General(_)),
                "{pattern:?} reaches the regex"
            );
        }
        for pattern in ["/**/*.css", "/a/*/b/*", "*.*"] {
            assert!(
                matches!(glob(pattern).matcher, Matcher::General(_)),
                "{pattern:?}"
            );
        }
    }

    /// Both matchers of `pattern`: the fast one (if its shape has one) and the regex.
    fn matchers(pattern: &str) -> (Option<Matcher>, General) {
        let parts = parse(pattern).unwrap();
        (Matcher::fast(&parts), General::new(&parts).unwrap())
    }

    /// What `general` says about the path's haystack under `pattern`'s scope.
    fn general_captures<'p>(g: &Glob, general: &General, path: &'p str) -> Option<Vec<&'p str>> {
        let mut out = Vec::new();
        general.captures(g.haystack(path), &mut out).then_some(out)
    }

    #[test]
    fn fast_paths_agree_with_the_regex() {
        let patterns = [
            "/index.html",
            "/",
            "robots.txt",
            "/assets/**",
            "/**",
            "**",
            "/a**",
            "/**.css",
            "/a/**/",
            "*.woff2",
            "*",
            "*.",
            "a*",
            "/docs/*",
            "/*",
            "/a*a",
            "?",
            "/v?",
            "/?/",
            "/é?",
        ];
        let paths = [
            "/",
            "/index.html",
            "/index.html/",
            "/robots.txt",
            "/x/robots.txt",
            "/assets",
            "/assets/",
            "/assets/a.css",
            "/assets/x/y.css",
            "/assetsx/a",
            "/a",
            "/aa",
            "/aba",
            "/a/b/",
            "/font.woff2",
            "/a/b/font.woff2",
            "/font.woff2/",
            "/docs/",
            "/docs/a",
            "/docs/a/b",
            "/v1",
            "/v12",
            "/é",
            "/éé",
            "/é/",
            "/x/",
            "/a.",
            "/a/",
        ];
        for pattern in patterns {
            let (fast, general) = matchers(pattern);
            let fast = fast.unwrap_or_else(|| panic!("{pattern:?} has no fast path"));
            let g = glob(pattern);
            for path in paths {
                let haystack = g.haystack(path);
                let expected = general_captures(&g, &general, path);
                assert_eq!(
                    fast.is_match(haystack),
                    expected.is_some(),
                    "{pattern:?} {path:?}"
                );
                let mut out = Vec::new();
                let got = fast.captures(haystack, &mut out).then_some(out);
                assert_eq!(got, expected, "{pattern:?} {path:?}");
                assert_eq!(general.regex.is_match(haystack), expected.is_some());
            }
        }
    }

    /// The spec read literally: a backtracking matcher in which each wildcard tries its
    /// longest run first, which is what leftmost-greedy means. Exponential, so only for
    /// tiny inputs. `rest` is what is left of the pattern, `at` the offset in `haystack`.
    fn reference<'p>(rest: &str, haystack: &'p str, at: usize, caps: &mut Vec<&'p str>) -> bool {
        let attempt = |rest: &str, end: usize, caps: &mut Vec<&'p str>| {
            caps.push(&haystack[at..end]);
            let found = reference(rest, haystack, end, caps);
            if !found {
                caps.pop();
            }
            found
        };
        let left = &haystack[at..];
        if let Some(rest) = rest.strip_prefix("**") {
            let ends = (at..=haystack.len()).rev();
            ends.filter(|&e| haystack.is_char_boundary(e))
                .any(|e| attempt(rest, e, caps))
        } else if let Some(rest) = rest.strip_prefix('*') {
            let limit = at + left.find('/').unwrap_or(left.len());
            let ends = (at..=limit).rev();
            ends.filter(|&e| haystack.is_char_boundary(e))
                .any(|e| attempt(rest, e, caps))
        } else if let Some(rest) = rest.strip_prefix('?') {
            match left.chars().next() {
                Some(c) if c != '/' => attempt(rest, at + c.len_utf8(), caps),
                _ => false,
            }
        } else if let Some(c) = rest.chars().next() {
            left.starts_with(c)
                && reference(&rest[c.len_utf8()..], haystack, at + c.len_utf8(), caps)
        } else {
            at == haystack.len()
        }
    }

    fn reference_captures<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
        let haystack = if pattern.contains('/') {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        let mut caps = Vec::new();
        reference(pattern, haystack, 0, &mut caps).then_some(caps)
    }

    #[test]
    fn matches_the_reference_on_every_short_path() {
        let patterns = [
            "/", "/a", "/*", "/**", "/?", "/a*", "/*a", "/**a", "/a**", "/*/*", "/**/*", "/*/**",
            "/**/**", "/?*", "/*?", "/**?", "/?**", "/*a*", "/**a**", "/*a**b*", "/a?b", "/**/a",
            "/*/", "/**/", "a", "*", "**", "?", "*a", "a*", "*a*", "?a", "a?", "*?*", "**?**", "é",
            "?é*", "/é**", "**b", "/*é?*",
        ];
        let alphabet = ['a', 'b', '/', 'é'];
        let mut paths = vec!["/".to_owned()];
        let mut last = paths.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        for pattern in patterns {
            let g = glob(pattern);
            let (_, general) = matchers(pattern);
            for path in &paths {
                let expected = reference_captures(pattern, path);
                assert_eq!(g.is_match(path), expected.is_some(), "{pattern:?} {path:?}");
                let mut out = Vec::new();
                assert_eq!(
                    g.captures(path, &mut out).then_some(out),
                    expected,
                    "{pattern:?} {path:?}"
                );
                assert_eq!(
                    general_captures(&g, &general, path),
                    expected,
                    "regex {pattern:?} {path:?}"
                );
            }
        }
    }

    #[test]
    fn hostile_paths_match_in_linear_time() {
        let limit = Duration::from_millis(100);
        let a = format!("/{}", "a".repeat(8191));
        let a_then_d = format!("{}d", &a[..8191]);
        let slashes = "/a".repeat(4096);
        // These two pass the prefilters of most of the patterns below.
        let wrong_order = format!("/{}{}d", "dcb".repeat(2000), "a".repeat(8192 - 6002));
        let a_slash_b = format!("/{}/b", "a".repeat(8189));
        for pattern in [
            "/**a**b**c**d",
            "/**a**b**c**",
            "/*a*a*a*a*a*a*a*b",
            "/**a*a**a*a**a*a**a*a**a*a**a*ab",
            "**a**a**a**b",
            "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
        ] {
            let g = glob(pattern);
            let (_, general) = matchers(pattern);
            for path in [&a, &a_then_d, &slashes, &wrong_order, &a_slash_b] {
                assert_eq!(path.len(), 8192);
                let start = Instant::now();
                assert!(!g.is_match(path), "{pattern:?}");
                assert!(!g.captures(path, &mut Vec::new()), "{pattern:?}");
                // And without the prefilters, which reject some of these on their own.
                assert!(!general.regex.is_match(g.haystack(path)));
                assert!(general.regex.captures(g.haystack(path)).is_none());
                let took = start.elapsed();
                assert!(took < limit, "{pattern:?} on {:?}…: {took:?}", &path[..8]);
            }
        }
    }
}
