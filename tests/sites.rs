//! Issue 9, "sites", seen from a client: virtual hosts (RFC 9110 §7.2, RFC 9112 §3.2), one
//! site never reaching another's files, per-site roots / pages / MIME types, header rules
//! (on errors and on 304, RFC 9110 §15.4.5), the `static-site` cache preset, redirects
//! (RFC 9110 §15.4), SPA fallback, clean URLs, directory listings, access-log formats and
//! per-site logs, config validation with `--check`, and a reload that adds and removes a
//! site under load.
//!
//! Every test writes its sites' roots under the test's own directory and names them by
//! absolute path: `$D` in a config below stands for that directory. The top-level site's
//! root is the harness's `root/` (index.html = "hello\n").

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

/// Writes `body` at `dir/rel`, creating directories.
fn put(dir: &Path, rel: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

/// A prepared (not started) server: `files` are written relative to the test directory
/// and `extra` (with `$D` replaced by that directory) follows the harness's top-level keys.
fn prepare(name: &str, files: &[(&str, &str)], extra: &str) -> Srvd {
    let mut s = Srvd::prepare(name, "");
    for (rel, body) in files {
        put(&s.dir, rel, body);
    }
    let text = extra.replace("$D", s.dir.to_str().unwrap());
    s.write_config(&text);
    s
}

/// `prepare` + start (every worker serving).
fn server(name: &str, files: &[(&str, &str)], extra: &str) -> Srvd {
    prepare(name, files, extra).start_prepared()
}

/// Sends `req` exactly as given; returns the status line and the parsed response.
fn send(s: &Srvd, req: &str, head_request: bool) -> (String, Response) {
    let bytes = s.raw(req.as_bytes());
    let line = status_line(&bytes);
    let r = Response::parse_with(&bytes, head_request).unwrap_or_else(|| {
        panic!(
            "no complete response to {req:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (line, r)
}

/// One request with `Connection: close` and the given extra header lines.
fn fetch_line(
    s: &Srvd,
    method: &str,
    host: &str,
    target: &str,
    headers: &[&str],
) -> (String, Response) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    send(s, &req, method == "HEAD")
}

fn fetch(s: &Srvd, method: &str, host: &str, target: &str, headers: &[&str]) -> Response {
    fetch_line(s, method, host, target, headers).1
}

fn get(s: &Srvd, host: &str, target: &str) -> Response {
    fetch(s, "GET", host, target, &[])
}

/// How many times header `name` occurs.
fn count(r: &Response, name: &str) -> usize {
    let name = name.to_ascii_lowercase();
    r.headers.iter().filter(|(k, _)| *k == name).count()
}

/// `srvd --check --config srvd.toml` in the test directory.
fn check(s: &Srvd) -> CliRun {
    run_cli(&s.dir, &["--check", "--config", "srvd.toml"])
}

/// 1-based numbers of the config lines containing `needle` (at least one).
fn lines_of(s: &Srvd, needle: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(&s.config_path).unwrap();
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        !found.is_empty(),
        "{needle:?} is not in the config:\n{text}"
    );
    found
}

fn line_of(s: &Srvd, needle: &str) -> usize {
    let found = lines_of(s, needle);
    assert_eq!(found.len(), 1, "{needle:?} is on several lines");
    found[0]
}

/// True when `line` is `srvd.toml:LINE:COL: message` with numeric LINE and COL.
fn positioned(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("srvd.toml:")?;
    let mut parts = rest.splitn(3, ':');
    let l = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    parts.next()?.strip_prefix(' ')?;
    Some((l, c))
}

/// The error line (of `--check`'s stderr) positioned at config line `line`.
fn error_at(run: &CliRun, line: usize) -> String {
    run.stderr
        .lines()
        .find(|l| positioned(l).is_some_and(|(n, _)| n == line))
        .unwrap_or_else(|| panic!("no error at line {line}:\n{}", run.stderr))
        .to_owned()
}

/// A Location is safe: visible ASCII only, and either an absolute http(s) URL or a path
/// that a browser cannot read as network-path (`//host`, `/\host`).
fn assert_safe_location(what: &str, loc: &str) {
    assert!(
        loc.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{what}: Location {loc:?} has a control, space or non-ASCII byte"
    );
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return;
    }
    let b = loc.as_bytes();
    assert!(b.first() == Some(&b'/'), "{what}: Location {loc:?}");
    assert!(
        b.len() == 1 || (b[1] != b'/' && b[1] != b'\\'),
        "{what}: Location {loc:?} is a network-path reference (open redirect)"
    );
}

/// The header block of a raw response has no bare CR or LF inside a line.
fn assert_clean_head(what: &str, bytes: &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no head"));
    let head = &bytes[..end];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "{what}: bare LF in head");
        }
        if b == b'\r' {
            assert!(head.get(i + 1) == Some(&b'\n'), "{what}: bare CR in head");
        }
    }
}

/// Sets a file's modification time to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// `YYYY-MM-DDTHH:MM:SS` followed by `Z`, fractional seconds, or an offset (RFC 3339 §5.6).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let d = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = d(0..4)
        && b[4] == b'-'
        && d(5..7)
        && b[7] == b'-'
        && d(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && d(11..13)
        && b[13] == b':'
        && d(14..16)
        && b[16] == b':'
        && d(17..19);
    let rest = &s[19..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    shape && (rest == "Z" || rest == "z" || (rest.len() == 6 && rest.as_bytes()[3] == b':'))
}

/// Positions of `names` in `body` are strictly increasing (first occurrences).
fn assert_order(body: &str, names: &[&str]) {
    let pos: Vec<usize> = names
        .iter()
        .map(|n| {
            body.find(n)
                .unwrap_or_else(|| panic!("{n:?} not in listing:\n{body}"))
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "expected the order {names:?}, positions {pos:?}:\n{body}"
    );
}

/// Waits until the file at `path` holds at least `n` lines containing `needle`.
fn wait_lines(path: &Path, needle: &str, n: usize) -> String {
    wait_for(
        &format!("{n} line(s) with {needle:?} in {}", path.display()),
        || {
            let t = std::fs::read_to_string(path).unwrap_or_default();
            (t.lines().filter(|l| l.contains(needle)).count() >= n).then_some(t)
        },
    )
}

// ---- a minimal JSON reader (no external dependency) -----------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// The number as written, so a test can insist on an integer.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer written without fraction or exponent.
    fn int(&self) -> Option<u64> {
        match self {
            Json::Num(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok(),
            _ => None,
        }
    }

    fn arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(m) => m.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value()?;
                    m.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8(self.b[start..self.i].to_vec()).unwrap(),
                ))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.b.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        let h = std::str::from_utf8(h).map_err(|e| e.to_string())?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.b.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let ch: char = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err("lone surrogate".into());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or("bad code point")?
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err("raw control character in a string".into()),
                c => out.push(c),
            }
        }
    }
}

#[test]
fn the_json_reader_reads_what_it_should() {
    let v = Json::parse(
        r#" [ {"a": "x\"y\\z\u00e9\ud83d\ude00", "n": 12, "f": 1.5, "t": true, "z": null} ] "#,
    )
    .unwrap();
    let o = &v.arr().unwrap()[0];
    assert_eq!(o.get("a").unwrap().str(), Some("x\"y\\zé😀"));
    assert_eq!(o.get("n").unwrap().int(), Some(12));
    assert_eq!(o.get("f").unwrap().int(), None);
    assert_eq!(o.keys(), ["a", "n", "f", "t", "z"]);
    assert!(Json::parse("{\"a\": 1,}").is_err());
    assert!(Json::parse("{\"a\": \"raw\nnewline\"}").is_err());
    assert!(Json::parse("{} x").is_err());
}

// ---------------------------------------------------------------------------------------
// host matching (RFC 9110 §7.2, RFC 9112 §3.2)
// ---------------------------------------------------------------------------------------

/// Wildcards listed in an order that defeats both "first match wins" and "last match
/// wins": only "longest suffix wins" gives the right answer for every host.
const HOSTS_CONFIG: &str = r#"
[[site]]
hosts = ["*.b.example.org"]
root = "$D/wildb"

[[site]]
hosts = ["*.example.org"]
root = "$D/wild"

[[site]]
hosts = ["*.c.b.example.org"]
root = "$D/wildcb"

[[site]]
hosts = ["a.example.org", "a.b.example.org"]
root = "$D/exact"

[[site]]
hosts = ["Shop.Example.NET."]
root = "$D/shop"
"#;

const HOSTS_FILES: &[(&str, &str)] = &[
    ("wildb/index.html", "wildb\n"),
    ("wild/index.html", "wild\n"),
    ("wildcb/index.html", "wildcb\n"),
    ("exact/index.html", "exact\n"),
    ("shop/index.html", "shop\n"),
];

fn assert_host_table(s: &Srvd, table: &[(&str, &str)]) {
    for (host, body) in table {
        let r = get(s, host, "/");
        assert_eq!(r.status, 200, "Host: {host}");
        assert_eq!(r.body_str(), *body, "Host: {host}");
    }
}

#[test]
fn host_exact_name_beats_any_wildcard() {
    let s = server("host-exact", HOSTS_FILES, HOSTS_CONFIG);
    // a.example.org matches *.example.org and a.b.example.org matches *.b.example.org,
    // but both are listed exactly (in the last site), and exact wins.
    assert_host_table(
        &s,
        &[("a.example.org", "exact\n"), ("a.b.example.org", "exact\n")],
    );
}

#[test]
fn host_longest_wildcard_wins_regardless_of_order() {
    let s = server("host-longest", HOSTS_FILES, HOSTS_CONFIG);
    assert_host_table(
        &s,
        &[
            ("z.example.org", "wild\n"),
            // one or more labels
            ("x.y.example.org", "wild\n"),
            ("x.b.example.org", "wildb\n"),
            ("x.y.b.example.org", "wildb\n"),
            ("x.c.b.example.org", "wildcb\n"),
            ("w.x.c.b.example.org", "wildcb\n"),
            // c.b.example.org matches *.b.example.org, not *.c.b.example.org
            ("c.b.example.org", "wildb\n"),
        ],
    );
}

#[test]
fn host_wildcard_does_not_match_its_bare_suffix() {
    let s = server("host-bare", HOSTS_FILES, HOSTS_CONFIG);
    // *.example.org needs at least one label before the suffix; these fall to the default site.
    assert_host_table(
        &s,
        &[
            ("example.org", "hello\n"),
            ("b.example.org", "wild\n"),
            ("xexample.org", "hello\n"),
            ("a.example.org.evil", "hello\n"),
            ("example.org.", "hello\n"),
        ],
    );
}

#[test]
fn host_is_lowercased_and_loses_its_port_and_one_trailing_dot() {
    let s = server("host-norm", HOSTS_FILES, HOSTS_CONFIG);
    let port = s.port;
    let own = format!("a.example.org:{port}");
    assert_host_table(
        &s,
        &[
            ("A.Example.ORG", "exact\n"),
            ("a.example.org:8080", "exact\n"),
            (own.as_str(), "exact\n"),
            ("a.example.org.", "exact\n"),
            ("A.EXAMPLE.ORG.:1234", "exact\n"),
            ("X.C.B.Example.Org.", "wildcb\n"),
            ("q.B.EXAMPLE.org:1", "wildb\n"),
        ],
    );
    // Only one trailing dot is stripped: "a.example.org.." is not a.example.org.
    let (line, r) = fetch_line(&s, "GET", "a.example.org..", "/", &[]);
    assert_ne!(r.body_str(), "exact\n", "{line}");
}

#[test]
fn host_names_in_the_config_are_normalised_too() {
    let s = server("host-cfgnorm", HOSTS_FILES, HOSTS_CONFIG);
    // The config says "Shop.Example.NET." (uppercase, trailing dot).
    assert_host_table(
        &s,
        &[
            ("shop.example.net", "shop\n"),
            ("SHOP.example.net.", "shop\n"),
            ("shop.example.net:99", "shop\n"),
        ],
    );
}

#[test]
fn absolute_form_target_overrides_the_host_header() {
    let s = server(
        "host-absform",
        &[("a/x.txt", "from a\n"), ("b/x.txt", "from b\n")],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    // RFC 9112 §3.2.2: with an absolute-form target the Host header is ignored.
    for target in [
        "http://b.test/x.txt",
        "http://B.TEST/x.txt",
        "http://b.test:80/x.txt",
        "http://b.test./x.txt",
        "HTTP://b.test/x.txt?q=1",
    ] {
        let r = get(&s, "a.test", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body_str(), "from b\n", "{target}");
    }
    let r = get(&s, "b.test", "http://a.test/x.txt");
    assert_eq!(r.body_str(), "from a\n");
    // An absolute-form authority that is no site's goes to the default site, whatever Host says.
    let r = get(&s, "a.test", "http://nobody.test/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    // Control: origin-form uses Host.
    assert_eq!(get(&s, "a.test", "/x.txt").body_str(), "from a\n");
}

#[test]
fn unknown_host_default_serves_the_default_site() {
    let s = server(
        "unknown-default",
        &[("a/index.html", "A\n")],
        r#"
hosts = ["main.test"]

[[site]]
hosts = ["a.test"]
root = "$D/a"
"#,
    );
    assert_eq!(get(&s, "main.test", "/").body_str(), "hello\n");
    assert_eq!(get(&s, "a.test", "/").body_str(), "A\n");
    let r = get(&s, "nobody.test", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    // An IP literal is a Host too.
    assert_eq!(get(&s, "127.0.0.1", "/").body_str(), "hello\n");
    // HTTP/1.0 without Host: the default site.
    let (line, r) = send(&s, "GET / HTTP/1.0\r\n\r\n", false);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(r.body_str(), "hello\n");
    // HTTP/1.1 without Host stays 400 (RFC 9112 §3.2).
    let (line, _) = send(&s, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false);
    assert_eq!(line, "HTTP/1.1 400 Bad Request");
}

#[test]
fn unknown_host_misdirected_answers_421_and_keeps_the_connection() {
    let s = server(
        "unknown-421",
        &[("a/index.html", "A\n")],
        r#"
unknown_host = "misdirected"
hosts = ["main.test"]

[[site]]
hosts = ["a.test"]
root = "$D/a"
"#,
    );
    let (line, r) = fetch_line(&s, "GET", "nobody.test", "/", &[]);
    assert_eq!(line, "HTTP/1.1 421 Misdirected Request");
    assert_ne!(r.body_str(), "hello\n");
    // The default site now serves only its own names.
    assert_eq!(get(&s, "main.test", "/").body_str(), "hello\n");
    assert_eq!(get(&s, "MAIN.test.", "/").body_str(), "hello\n");
    assert_eq!(get(&s, "a.test", "/").body_str(), "A\n");
    // HTTP/1.0 without a Host matches no name.
    let (line, _) = send(&s, "GET / HTTP/1.0\r\n\r\n", false);
    assert_eq!(line, "HTTP/1.1 421 Misdirected Request");
    // 421 keeps the connection: a second request on it is served.
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        .unwrap();
    let first = read_response(&mut c, false).expect("a 421");
    assert_eq!(first.status, 421);
    assert_ne!(
        first.header("connection").map(str::to_ascii_lowercase),
        Some("close".into())
    );
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let second = read_response(&mut c, false).expect("a second response on the same connection");
    assert_eq!(second.status, 200);
    assert_eq!(second.body_str(), "A\n");
}

/// Reads until EOF (or a reset); `None` when the server kept the connection open.
fn read_closed(c: &mut TcpStream) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}

#[test]
fn unknown_host_close_sends_no_bytes_at_all() {
    let s = server(
        "unknown-close",
        &[("a/index.html", "A\n")],
        r#"
unknown_host = "close"
hosts = ["main.test"]

[[site]]
hosts = ["a.test"]
root = "$D/a"
"#,
    );
    for req in [
        "GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: example.org:8080\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://nobody.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ] {
        let mut c = s.connect();
        c.write_all(req.as_bytes()).unwrap();
        let got = read_closed(&mut c).unwrap_or_else(|| panic!("{req:?}: connection kept open"));
        assert!(
            got.is_empty(),
            "{req:?}: expected no bytes, got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(get(&s, "main.test", "/").body_str(), "hello\n");
    assert_eq!(get(&s, "a.test", "/").body_str(), "A\n");
    // After a served request on a kept-alive connection, an unknown Host closes it silently.
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().body_str(), "A\n");
    c.write_all(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        .unwrap();
    let got = read_closed(&mut c).expect("closed");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

// ---------------------------------------------------------------------------------------
// isolation
// ---------------------------------------------------------------------------------------

const MARKER: &str = "SITE-B-SECRET-4c1f9e";

#[test]
fn a_site_never_serves_another_sites_files() {
    let s = prepare(
        "isolation",
        &[
            ("a/index.html", "A\n"),
            ("b/secret.txt", &format!("{MARKER}\n")),
        ],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    let a = s.dir.join("a");
    symlink(s.dir.join("b"), a.join("tob")).unwrap();
    symlink("../b", a.join("tob-rel")).unwrap();
    symlink("../b/secret.txt", a.join("secret.txt")).unwrap();
    symlink(s.dir.join("b/secret.txt"), a.join("abs-secret.txt")).unwrap();
    let s = s.start_prepared();
    // Control: b serves its own file.
    let r = get(&s, "b.test", "/secret.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), format!("{MARKER}\n"));

    let table: &[(&str, &str)] = &[
        ("/../b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("/%2e%2e/b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("/%2E%2E/b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("/..%2fb%2fsecret.txt", "HTTP/1.1 400 Bad Request"),
        ("../b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("/x/../../b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("http://a.test/../b/secret.txt", "HTTP/1.1 400 Bad Request"),
        ("/tob/secret.txt", "HTTP/1.1 404 Not Found"),
        ("/tob-rel/secret.txt", "HTTP/1.1 404 Not Found"),
        ("/tob/", "HTTP/1.1 404 Not Found"),
        ("/tob", "HTTP/1.1 404 Not Found"),
        ("/secret.txt", "HTTP/1.1 404 Not Found"),
        ("/abs-secret.txt", "HTTP/1.1 404 Not Found"),
        ("http://a.test/secret.txt", "HTTP/1.1 404 Not Found"),
    ];
    for (target, want) in table {
        for method in ["GET", "HEAD"] {
            let req =
                format!("{method} {target} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
            let bytes = s.raw(req.as_bytes());
            assert_eq!(status_line(&bytes), *want, "{method} {target}");
            assert!(
                !String::from_utf8_lossy(&bytes).contains(MARKER),
                "{method} {target}: leaked site b's file"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// per-site root, index, pages, MIME types
// ---------------------------------------------------------------------------------------

#[test]
fn each_site_has_its_own_root_and_index_and_inherits_the_rest() {
    let s = server(
        "site-index",
        &[
            ("a/start.html", "A start\n"),
            ("a/index.html", "A index\n"),
            ("a/home.html", "A home\n"),
            ("a/sub/start.html", "A sub start\n"),
            ("b/home.html", "B home\n"),
            ("b/index.html", "B index\n"),
        ],
        r#"
index = ["home.html", "index.html"]

[[site]]
hosts = ["a.test"]
root = "$D/a"
index = ["start.html"]

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    assert_eq!(get(&s, "a.test", "/").body_str(), "A start\n");
    assert_eq!(get(&s, "a.test", "/sub/").body_str(), "A sub start\n");
    assert_eq!(get(&s, "a.test", "/home.html").body_str(), "A home\n");
    // b sets no index: it inherits the top level's list.
    assert_eq!(get(&s, "b.test", "/").body_str(), "B home\n");
    // The default site: no home.html in root/, so index.html.
    assert_eq!(get(&s, "other.test", "/").body_str(), "hello\n");
    assert_eq!(get(&s, "a.test", "/index.html").body_str(), "A index\n");
    // a's root is not the default root.
    assert_eq!(get(&s, "other.test", "/start.html").status, 404);
}

#[test]
fn not_found_pages_are_per_site_and_keep_404() {
    let s = server(
        "site-404",
        &[
            ("pages/main404.html", "main missing\n"),
            ("pages/a404.html", "A missing\n"),
            ("pages/c404.html", "C missing\n"),
            ("a/index.html", "A\n"),
            ("b/index.html", "B\n"),
            ("c/index.html", "C\n"),
        ],
        r#"
not_found_page = "$D/pages/main404.html"

[[site]]
hosts = ["a.test"]
root = "$D/a"
not_found_page = "$D/pages/a404.html"

[[site]]
hosts = ["b.test"]
root = "$D/b"

[[site]]
hosts = ["c.test"]
root = "$D/c"
error_pages = { 404 = "$D/pages/c404.html" }
"#,
    );
    for (host, body) in [
        ("a.test", "A missing\n"),
        ("b.test", "main missing\n"),
        ("c.test", "C missing\n"),
        ("other.test", "main missing\n"),
    ] {
        let (line, r) = fetch_line(&s, "GET", host, "/nope.html", &[]);
        assert_eq!(line, "HTTP/1.1 404 Not Found", "{host}");
        assert_eq!(r.body_str(), body, "{host}");
        let (line, r) = fetch_line(&s, "HEAD", host, "/nope.html", &[]);
        assert_eq!(line, "HTTP/1.1 404 Not Found", "HEAD {host}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str()),
            "HEAD {host}"
        );
    }
}

#[test]
fn error_pages_by_class_and_exact_status() {
    let s = server(
        "site-errpages",
        &[
            ("pages/main5xx.html", "main 5xx page\n"),
            ("pages/a4xx.html", "A 4xx page\n"),
            ("pages/a404.html", "A 404 page\n"),
            ("a/index.html", "A\n"),
        ],
        r#"
error_pages = { "5xx" = "$D/pages/main5xx.html" }

[[site]]
hosts = ["a.test"]
root = "$D/a"
error_pages = { "4xx" = "$D/pages/a4xx.html", 404 = "$D/pages/a404.html" }
"#,
    );
    // 405 is a 4xx: the class page, status kept, Allow still sent (RFC 9110 §15.5.6).
    let (line, r) = fetch_line(&s, "POST", "a.test", "/", &[]);
    assert_eq!(line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(r.body_str(), "A 4xx page\n");
    assert!(r.header("allow").is_some(), "{:?}", r.headers);
    // The exact status beats the class.
    let (line, r) = fetch_line(&s, "GET", "a.test", "/nope", &[]);
    assert_eq!(line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.body_str(), "A 404 page\n");
    // 501 for an unknown method: the inherited "5xx" page (maps merge by status).
    let (line, r) = fetch_line(&s, "BREW", "a.test", "/", &[]);
    assert_eq!(line, "HTTP/1.1 501 Not Implemented");
    assert_eq!(r.body_str(), "main 5xx page\n");
    let (line, r) = fetch_line(&s, "BREW", "other.test", "/", &[]);
    assert_eq!(line, "HTTP/1.1 501 Not Implemented");
    assert_eq!(r.body_str(), "main 5xx page\n");
    // The default site has no 4xx page: a built-in one, not a's.
    let (line, r) = fetch_line(&s, "POST", "other.test", "/", &[]);
    assert_eq!(line, "HTTP/1.1 405 Method Not Allowed");
    assert_ne!(r.body_str(), "A 4xx page\n");
    assert!(r.body_str().contains("405"), "{}", r.body_str());
}

#[test]
fn malformed_requests_use_the_default_sites_error_pages() {
    let s = server(
        "site-400",
        &[
            ("pages/main400.html", "main 400 page\n"),
            ("pages/a400.html", "A 400 page\n"),
            ("a/index.html", "A\n"),
        ],
        r#"
error_pages = { 400 = "$D/pages/main400.html" }

[[site]]
hosts = ["a.test"]
root = "$D/a"
error_pages = { 400 = "$D/pages/a400.html", "4xx" = "$D/pages/a400.html" }
"#,
    );
    for req in [
        // two spaces in the request line (RFC 9112 §3)
        "GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        // two Host lines (RFC 9112 §3.2: 400)
        "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        // a header line without a colon
        "GET / HTTP/1.1\r\nHost: a.test\r\nBad header\r\n\r\n",
    ] {
        let (line, r) = send(&s, req, false);
        assert_eq!(line, "HTTP/1.1 400 Bad Request", "{req:?}");
        assert_eq!(r.body_str(), "main 400 page\n", "{req:?}");
    }
}

#[test]
fn site_mime_types_merge_over_the_top_level() {
    let files: Vec<(String, &str)> = ["a", "root"]
        .iter()
        .flat_map(|d| {
            ["f.zqx", "f.abc", "noext", "f.css"]
                .iter()
                .map(move |f| (format!("{d}/{f}"), "x"))
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let s = server(
        "site-mime",
        &files,
        r#"
[mime_types]
zqx = "application/x-top-zqx"
abc = "application/x-top-abc"

[[site]]
hosts = ["a.test"]
root = "$D/a"
default_type = "text/x-a-default"

[site.mime_types]
zqx = "application/x-site-zqx"
"#,
    );
    for (host, file, ctype) in [
        ("a.test", "/f.zqx", "application/x-site-zqx"),
        ("a.test", "/f.abc", "application/x-top-abc"),
        ("a.test", "/noext", "text/x-a-default"),
        ("a.test", "/f.css", "text/css; charset=utf-8"),
        ("other.test", "/f.zqx", "application/x-top-zqx"),
        ("other.test", "/f.abc", "application/x-top-abc"),
        ("other.test", "/noext", "application/octet-stream"),
    ] {
        let r = get(&s, host, file);
        assert_eq!(r.status, 200, "{host}{file}");
        assert_eq!(r.header("content-type"), Some(ctype), "{host}{file}");
    }
}

// ---------------------------------------------------------------------------------------
// header rules
// ---------------------------------------------------------------------------------------

#[test]
fn header_rule_applies_only_to_matching_paths() {
    let s = server(
        "hdr-match",
        &[
            ("root/assets/app.js", "js"),
            ("root/assets/deep/x.js", "js"),
            ("root/assetsx/y.js", "js"),
            ("root/fonts/a/b.woff2", "font"),
            ("root/b.woff2", "font"),
            ("root/b.woff2x", "no font"),
        ],
        r#"
[[headers]]
match = "/assets/**"
set = { "X-Asset" = "1" }

[[headers]]
match = "*.woff2"
set = { "X-Font" = "yes" }
"#,
    );
    for (target, asset, font) in [
        ("/assets/app.js", Some("1"), None),
        ("/assets/deep/x.js", Some("1"), None),
        ("/assets/app.js?x=1", Some("1"), None),
        // matched against the decoded, normalised path
        ("/%61ssets/app.js", Some("1"), None),
        ("/x/../assets/app.js", Some("1"), None),
        ("//assets//app.js", Some("1"), None),
        ("/assetsx/y.js", None, None),
        ("/index.html", None, None),
        ("/fonts/a/b.woff2", None, Some("yes")),
        ("/b.woff2", None, Some("yes")),
        ("/b.woff2x", None, None),
    ] {
        let r = get(&s, "localhost", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("x-asset"), asset, "{target}");
        assert_eq!(r.header("x-font"), font, "{target}");
    }
}

#[test]
fn later_header_rule_wins_for_the_same_header() {
    let s = server(
        "hdr-later",
        &[("root/s.css", "css"), ("root/s.js", "js")],
        r#"
[[headers]]
match = "/**"
set = { "X-Order" = "first", "X-Keep" = "k" }

[[headers]]
match = "*.css"
set = { "X-Order" = "second" }

[[headers]]
match = "/other/**"
set = { "x-ORDER" = "third, other case" }
"#,
    );
    let r = get(&s, "localhost", "/s.css");
    assert_eq!(r.header("x-order"), Some("second"));
    assert_eq!(count(&r, "x-order"), 1, "{:?}", r.headers);
    assert_eq!(r.header("x-keep"), Some("k"));
    let r = get(&s, "localhost", "/s.js");
    assert_eq!(r.header("x-order"), Some("first"));
    assert_eq!(count(&r, "x-order"), 1);
    // Field names are case-insensitive (RFC 9110 §5.1): "x-ORDER" is the same header.
    s.file("other/o.css", "css");
    let r = get(&s, "localhost", "/other/o.css");
    assert_eq!(r.header("x-order"), Some("third, other case"));
    assert_eq!(count(&r, "x-order"), 1, "{:?}", r.headers);
}

#[test]
fn site_header_rules_add_to_inherited_ones_and_win() {
    let s = server(
        "hdr-inherit",
        &[("a/index.html", "A\n"), ("b/index.html", "B\n")],
        r#"
[[headers]]
match = "/**"
set = { "X-Top" = "top", "X-Both" = "from-top" }

[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.headers]]
match = "/**"
set = { "X-Site" = "a", "X-Both" = "from-site" }

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    let r = get(&s, "a.test", "/index.html");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-top"),
        Some("top"),
        "inherited rule dropped: {:?}",
        r.headers
    );
    assert_eq!(r.header("x-site"), Some("a"));
    assert_eq!(r.header("x-both"), Some("from-site"));
    assert_eq!(count(&r, "x-both"), 1, "{:?}", r.headers);
    for host in ["b.test", "other.test"] {
        let r = get(&s, host, "/index.html");
        assert_eq!(r.header("x-top"), Some("top"), "{host}");
        assert_eq!(r.header("x-both"), Some("from-top"), "{host}");
        assert_eq!(r.header("x-site"), None, "{host}");
    }
}

#[test]
fn remove_drops_a_header_and_set_replaces_srvds_own() {
    let s = server(
        "hdr-remove",
        &[
            ("a/index.html", "A\n"),
            ("b/index.html", "B\n"),
            ("b/forced.txt", "f\n"),
        ],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.headers]]
match = "/**"
remove = ["Server"]

[[site]]
hosts = ["b.test"]
root = "$D/b"

[[site.headers]]
match = "/forced.txt"
set = { "Server" = "custom", "Content-Type" = "text/x-forced", "X-Tab" = "a\tb" }

[[site]]
hosts = ["c.test"]
root = "$D/b"
cache = "static-site"

[[site.headers]]
match = "/**"
remove = ["cache-control", "ACCEPT-RANGES", "server"]
"#,
    );
    let r = get(&s, "a.test", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("server"), None, "{:?}", r.headers);
    // rules apply to errors too
    let r = get(&s, "a.test", "/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("server"), None, "{:?}", r.headers);
    let r = get(&s, "b.test", "/forced.txt");
    assert_eq!(r.header("server"), Some("custom"));
    assert_eq!(count(&r, "server"), 1, "{:?}", r.headers);
    assert_eq!(r.header("content-type"), Some("text/x-forced"));
    assert_eq!(count(&r, "content-type"), 1, "{:?}", r.headers);
    assert_eq!(r.body_str(), "f\n");
    assert_eq!(
        r.header("x-tab"),
        Some("a\tb"),
        "a tab is allowed in a value"
    );
    let r = get(&s, "b.test", "/");
    assert_eq!(r.header("server"), Some("srvd"));
    assert_eq!(get(&s, "other.test", "/").header("server"), Some("srvd"));
    // remove is case-insensitive and also drops what the cache preset would add.
    let r = get(&s, "c.test", "/forced.txt");
    assert_eq!(r.status, 200);
    for h in ["cache-control", "accept-ranges", "server"] {
        assert_eq!(r.header(h), None, "{h}: {:?}", r.headers);
    }
    assert!(r.header("etag").is_some(), "{:?}", r.headers);
}

#[test]
fn header_rules_apply_to_error_responses() {
    let s = server(
        "hdr-errors",
        &[
            ("a/index.html", "A\n"),
            ("a/dir/index.html", "D\n"),
            ("root/dir/index.html", "D\n"),
        ],
        r#"
[[headers]]
match = "/**"
set = { "X-Content-Type-Options" = "nosniff", "Content-Security-Policy" = "default-src 'self'" }

[[headers]]
match = "/missing/**"
set = { "X-Missing" = "m" }

[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.headers]]
match = "/**"
set = { "X-Frame-Options" = "DENY" }
"#,
    );
    for host in ["a.test", "other.test"] {
        for (method, target, status) in [
            ("GET", "/nope", 404),
            ("HEAD", "/nope", 404),
            ("GET", "/missing/x", 404),
            ("POST", "/", 405),
            ("GET", "/dir", 301),
            ("GET", "/", 200),
        ] {
            let what = format!("{method} {host}{target}");
            let r = fetch(&s, method, host, target, &[]);
            assert_eq!(r.status, status, "{what}");
            assert_eq!(
                r.header("x-content-type-options"),
                Some("nosniff"),
                "{what}"
            );
            assert_eq!(
                r.header("content-security-policy"),
                Some("default-src 'self'"),
                "{what}"
            );
            let frame = (host == "a.test").then_some("DENY");
            assert_eq!(r.header("x-frame-options"), frame, "{what}");
            let missing = target.starts_with("/missing/").then_some("m");
            assert_eq!(r.header("x-missing"), missing, "{what}");
        }
    }
}

#[test]
fn on_success_rules_skip_errors_but_not_304_or_redirects() {
    let s = server(
        "hdr-success",
        &[("root/dir/index.html", "D\n")],
        r#"
[[headers]]
match = "/**"
set = { "X-Success" = "1" }
on = "success"

[[headers]]
match = "/**"
set = { "X-Always" = "1" }
"#,
    );
    let ok = get(&s, "localhost", "/index.html");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-success"), Some("1"));
    assert_eq!(ok.header("x-always"), Some("1"));
    let etag = ok.header("etag").expect("an ETag").to_owned();
    let nm = fetch(
        &s,
        "GET",
        "localhost",
        "/index.html",
        &[&format!("If-None-Match: {etag}")],
    );
    assert_eq!(nm.status, 304);
    assert_eq!(
        nm.header("x-success"),
        Some("1"),
        "304 is a success: {:?}",
        nm.headers
    );
    assert_eq!(nm.header("x-always"), Some("1"));
    let redirect = get(&s, "localhost", "/dir");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("x-success"), Some("1"), "3xx is a success");
    for (method, target, status) in [("GET", "/nope", 404), ("POST", "/", 405)] {
        let r = fetch(&s, method, "localhost", target, &[]);
        assert_eq!(r.status, status);
        assert_eq!(
            r.header("x-success"),
            None,
            "{method} {target}: {:?}",
            r.headers
        );
        assert_eq!(r.header("x-always"), Some("1"), "{method} {target}");
    }
}

#[test]
fn not_modified_carries_the_same_headers_as_200() {
    let s = server(
        "hdr-304",
        &[
            ("a/app.3f9a1c2b.js", "js\n"),
            ("a/page.html", "<p>hi</p>\n"),
            ("a/plain.txt", "t\n"),
        ],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/a"
cache = "static-site"

[[site.headers]]
match = "/**"
set = { "X-Rule" = "r", "Vary" = "Accept-Encoding" }
remove = ["Server"]
"#,
    );
    // RFC 9110 §15.4.5: a 304 carries the Cache-Control, ETag and Vary a 200 would.
    for target in ["/app.3f9a1c2b.js", "/page.html", "/plain.txt"] {
        let ok = get(&s, "a.test", target);
        assert_eq!(ok.status, 200, "{target}");
        let etag = ok.header("etag").expect("ETag").to_owned();
        let lm = ok
            .header("last-modified")
            .expect("Last-Modified")
            .to_owned();
        assert!(
            ok.header("cache-control").is_some(),
            "{target}: {:?}",
            ok.headers
        );
        for cond in [
            format!("If-None-Match: {etag}"),
            format!("If-Modified-Since: {lm}"),
        ] {
            let nm = fetch(&s, "GET", "a.test", target, &[&cond]);
            assert_eq!(nm.status, 304, "{target} {cond}");
            for h in ["etag", "cache-control", "x-rule", "vary"] {
                assert_eq!(nm.header(h), ok.header(h), "{target} {cond}: {h}");
                assert_eq!(count(&nm, h), 1, "{target} {cond}: {h}");
            }
            assert_eq!(nm.header("server"), None, "{target} {cond}");
        }
    }
}

#[test]
fn invalid_header_rules_are_config_errors() {
    let s = prepare(
        "hdr-invalid",
        &[("a/index.html", "A\n")],
        r#"
[[headers]]
match = "/**"
set = { "X-Evil" = "a\r\nSet-Cookie: x=1" }

[[headers]]
match = "/**"
set = { "Bad Name" = "v" }

[[headers]]
match = "/**"
set = { "X-Nul" = "a\u0000b" }

[[headers]]
match = "/**"
set = { "X-Lf" = "a\nb" }

[[headers]]
match = "/**"
set = { "Content-Length" = "5" }

[[headers]]
match = "/**"
remove = ["Transfer-Encoding"]

[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.headers]]
match = "/**"
set = { "X-Site-Evil" = "x\ry" }
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    let expect = [
        line_of(&s, "X-Evil"),
        line_of(&s, "Bad Name"),
        line_of(&s, "X-Nul"),
        line_of(&s, "X-Lf"),
        line_of(&s, "Content-Length"),
        line_of(&s, "Transfer-Encoding"),
        line_of(&s, "X-Site-Evil"),
    ];
    for line in expect {
        error_at(&run, line);
    }
    let errors = run
        .stderr
        .lines()
        .filter(|l| positioned(l).is_some())
        .count();
    assert_eq!(errors, expect.len(), "{}", run.stderr);
    // Refused at start as well.
    let start = run_cli(&s.dir, &["--config", "srvd.toml"]);
    assert_eq!(start.code, Some(1), "{start:?}");
}

// ---------------------------------------------------------------------------------------
// cache preset
// ---------------------------------------------------------------------------------------

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[test]
fn cache_preset_static_site() {
    let names = [
        "index.html",
        "page.html",
        "app.3f9a1c2b.js",
        "index-BdGx3f7A.js",
        "app.12345678.js",
        "chunk.Ab_9xYzQ.css",
        "chunk.Ab_9-xYz.css",
        "app.1234567.js",
        "handlers.js",
        "my-component.js",
        "vendor-abcdefgh.js",
        "style.css",
        "logo.png",
        "dir/index.html",
    ];
    let files: Vec<(String, &str)> = names.iter().map(|n| (format!("s/{n}"), "x")).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let s = server(
        "cache-preset",
        &files,
        r#"
[[site]]
hosts = ["s.test"]
root = "$D/s"
cache = "static-site"
"#,
    );
    for (target, want) in [
        ("/", "no-cache"),
        ("/index.html", "no-cache"),
        ("/page.html", "no-cache"),
        ("/dir/", "no-cache"),
        ("/app.3f9a1c2b.js", IMMUTABLE),
        ("/index-BdGx3f7A.js", IMMUTABLE),
        ("/app.12345678.js", IMMUTABLE),
        ("/chunk.Ab_9xYzQ.css", IMMUTABLE),
        ("/chunk.Ab_9-xYz.css", IMMUTABLE),
        // (a '-' inside the base64url hash: the last '.' is tried first, df22aa9)
        // 7 hex chars: too short to prove anything
        ("/app.1234567.js", "public, max-age=3600"),
        ("/handlers.js", "public, max-age=3600"),
        // base64url-looking but no digit
        ("/my-component.js", "public, max-age=3600"),
        ("/vendor-abcdefgh.js", "public, max-age=3600"),
        ("/style.css", "public, max-age=3600"),
        ("/logo.png", "public, max-age=3600"),
    ] {
        let r = get(&s, "s.test", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("cache-control"), Some(want), "{target}");
        assert_eq!(count(&r, "cache-control"), 1, "{target}");
        let etag = r.header("etag").unwrap().to_owned();
        let nm = fetch(
            &s,
            "GET",
            "s.test",
            target,
            &[&format!("If-None-Match: {etag}")],
        );
        assert_eq!(nm.status, 304, "{target}");
        assert_eq!(nm.header("cache-control"), Some(want), "304 {target}");
    }
    // A 206 is a 2xx: it carries the preset too.
    let r = fetch(&s, "GET", "s.test", "/handlers.js", &["Range: bytes=0-0"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    let r = fetch(
        &s,
        "GET",
        "s.test",
        "/app.3f9a1c2b.js",
        &["Range: bytes=0-0"],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("cache-control"), Some(IMMUTABLE));
    // Nothing on errors or on the directory redirect (2xx and 304 only).
    for (target, status) in [("/nope.js", 404), ("/nope.html", 404), ("/dir", 301)] {
        let r = get(&s, "s.test", target);
        assert_eq!(r.status, status, "{target}");
        assert_eq!(r.header("cache-control"), None, "{target}: {:?}", r.headers);
    }
    // The default site does not opt in.
    assert_eq!(get(&s, "other.test", "/").header("cache-control"), None);
}

#[test]
fn cache_max_age_is_configurable_and_header_rules_override_the_preset() {
    let s = server(
        "cache-maxage",
        &[
            ("m/handlers.js", "x"),
            ("m/app.3f9a1c2b.js", "x"),
            ("m/index.html", "x"),
            ("m/private/x.js", "x"),
        ],
        r#"
[[site]]
hosts = ["m.test"]
root = "$D/m"
cache = "static-site"
cache_max_age = "10m"

[[site.headers]]
match = "/private/**"
set = { "Cache-Control" = "private, no-store" }
"#,
    );
    for (target, want) in [
        ("/handlers.js", "public, max-age=600"),
        ("/app.3f9a1c2b.js", IMMUTABLE),
        ("/index.html", "no-cache"),
        ("/private/x.js", "private, no-store"),
    ] {
        let r = get(&s, "m.test", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("cache-control"), Some(want), "{target}");
        assert_eq!(count(&r, "cache-control"), 1, "{target}: {:?}", r.headers);
    }
}

// ---------------------------------------------------------------------------------------
// redirects (RFC 9110 §15.4)
// ---------------------------------------------------------------------------------------

const REDIRECTS: &str = r#"
[[site]]
hosts = ["r.test"]
root = "$D/r"

[[site.redirect]]
from = "/old-page"
to = "/new-page"

[[site.redirect]]
from = "/old/**"
to = "/new/{1}"
status = 301

[[site.redirect]]
from = "/blog/*/post-*.html"
to = "/posts/{1}/{2}"
status = 302

[[site.redirect]]
from = "/see/**"
to = "/other{path}"
status = 303

[[site.redirect]]
from = "/tmp/*"
to = "/t?from=tmp"
status = 307

[[site.redirect]]
from = "/abs"
to = "https://elsewhere.example/landing"
status = 308

[[site.redirect]]
from = "*.php"
to = "/php-gone"
status = 301
"#;

fn assert_redirects(s: &Srvd, host: &str, table: &[(&str, &str, &str)]) {
    for (target, want_line, want_loc) in table {
        let (line, r) = fetch_line(s, "GET", host, target, &[]);
        assert_eq!(line, *want_line, "{target}");
        assert_eq!(r.header("location"), Some(*want_loc), "{target}");
        assert_eq!(count(&r, "location"), 1, "{target}");
    }
}

#[test]
fn redirect_exact_from_defaults_to_308_and_keeps_the_query() {
    let s = server("redir-exact", &[("r/index.html", "R\n")], REDIRECTS);
    assert_redirects(
        &s,
        "r.test",
        &[
            ("/old-page", "HTTP/1.1 308 Permanent Redirect", "/new-page"),
            (
                "/old-page?utm=1&x=%20",
                "HTTP/1.1 308 Permanent Redirect",
                "/new-page?utm=1&x=%20",
            ),
            (
                "/abs?k=v",
                "HTTP/1.1 308 Permanent Redirect",
                "https://elsewhere.example/landing?k=v",
            ),
        ],
    );
    // Exact means exact.
    assert_eq!(get(&s, "r.test", "/old-page/extra").status, 404);
    assert_eq!(get(&s, "r.test", "/old-pages").status, 404);
    // Redirects apply to every method; HEAD gets no body.
    let (line, r) = fetch_line(&s, "POST", "r.test", "/old-page", &[]);
    assert_eq!(line, "HTTP/1.1 308 Permanent Redirect");
    assert_eq!(r.header("location"), Some("/new-page"));
    let (line, r) = fetch_line(&s, "HEAD", "r.test", "/old-page", &[]);
    assert_eq!(line, "HTTP/1.1 308 Permanent Redirect");
    assert_eq!(r.header("location"), Some("/new-page"));
    // Only for the site that declares them.
    assert_eq!(get(&s, "other.test", "/old-page").status, 404);
}

#[test]
fn redirect_glob_captures_and_each_status() {
    let s = server("redir-glob", &[("r/index.html", "R\n")], REDIRECTS);
    assert_redirects(
        &s,
        "r.test",
        &[
            (
                "/old/a/b/c.html",
                "HTTP/1.1 301 Moved Permanently",
                "/new/a/b/c.html",
            ),
            (
                "/old/a/b?x=1",
                "HTTP/1.1 301 Moved Permanently",
                "/new/a/b?x=1",
            ),
            ("/old/a%20b", "HTTP/1.1 301 Moved Permanently", "/new/a%20b"),
            (
                "/old/%C3%A9",
                "HTTP/1.1 301 Moved Permanently",
                "/new/%C3%A9",
            ),
            (
                "/blog/2024/post-hello.html",
                "HTTP/1.1 302 Found",
                "/posts/2024/hello",
            ),
            (
                "/see/a/b?q=2",
                "HTTP/1.1 303 See Other",
                "/other/see/a/b?q=2",
            ),
            ("/tmp/foo", "HTTP/1.1 307 Temporary Redirect", "/t?from=tmp"),
            // a pattern without '/' matches the last segment at any depth
            ("/x.php", "HTTP/1.1 301 Moved Permanently", "/php-gone"),
            (
                "/a/b/c/x.php?q",
                "HTTP/1.1 301 Moved Permanently",
                "/php-gone?q",
            ),
        ],
    );
    assert_eq!(get(&s, "r.test", "/x.php/y").status, 404);
    assert_eq!(get(&s, "r.test", "/x.phpx").status, 404);
    // `*` stays within one segment.
    assert_eq!(
        get(&s, "r.test", "/blog/2024/x/post-hello.html").status,
        404
    );
    assert_eq!(get(&s, "r.test", "/tmp/a/b").status, 404);
    assert_eq!(get(&s, "r.test", "/blog/2024/hello.html").status, 404);
}

#[test]
fn redirect_query_is_replaced_when_to_has_one() {
    let s = server("redir-query", &[("r/index.html", "R\n")], REDIRECTS);
    assert_redirects(
        &s,
        "r.test",
        &[
            (
                "/tmp/foo?x=1",
                "HTTP/1.1 307 Temporary Redirect",
                "/t?from=tmp",
            ),
            (
                "/tmp/foo?",
                "HTTP/1.1 307 Temporary Redirect",
                "/t?from=tmp",
            ),
        ],
    );
}

#[test]
fn redirect_hosts_restriction_www_to_apex() {
    let s = server(
        "redir-www",
        &[("e/a/b.txt", "apex file\n"), ("e/index.html", "apex\n")],
        r#"
[[site]]
hosts = ["example.test", "www.example.test"]
root = "$D/e"

[[site.redirect]]
from = "/**"
to = "https://example.test{path}"
status = 301
hosts = ["www.example.test"]
"#,
    );
    for host in [
        "www.example.test",
        "WWW.Example.Test.",
        "www.example.test:8443",
    ] {
        assert_redirects(
            &s,
            host,
            &[
                (
                    "/a/b.txt?x=1&y=2",
                    "HTTP/1.1 301 Moved Permanently",
                    "https://example.test/a/b.txt?x=1&y=2",
                ),
                (
                    "/",
                    "HTTP/1.1 301 Moved Permanently",
                    "https://example.test/",
                ),
            ],
        );
    }
    let r = get(&s, "example.test", "/a/b.txt?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "apex file\n");
    assert_eq!(get(&s, "example.test", "/").body_str(), "apex\n");
}

#[test]
fn redirect_location_never_starts_with_double_slash() {
    let s = server(
        "redir-slashes",
        &[("d/index.html", "D\n")],
        r#"
[[site]]
hosts = ["d.test"]
root = "$D/d"

[[site.redirect]]
from = "/out/**"
to = "/{path}"

[[site.redirect]]
from = "/go/**"
to = "/{1}"
"#,
    );
    for target in [
        "/out/evil.example",
        "/out//evil.example",
        "/go/evil.example",
        "/go//evil.example",
        "//go//evil.example/x",
        "/go/%2F%2Fevil.example",
        "/go/%2fevil.example/x",
        "/go/%5Cevil.example",
        "/go/%5C%5Cevil.example",
        "http://d.test//go//evil.example",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: d.test\r\nConnection: close\r\n\r\n");
        let bytes = s.raw(req.as_bytes());
        let r = Response::parse(&bytes).unwrap_or_else(|| panic!("{target}: no response"));
        if r.status == 400 {
            continue; // refused outright: safe
        }
        assert!(
            (300..400).contains(&r.status),
            "{target}: {}",
            status_line(&bytes)
        );
        let loc = r
            .header("location")
            .unwrap_or_else(|| panic!("{target}: no Location"));
        assert_safe_location(target, loc);
        assert!(
            loc.contains("evil.example"),
            "{target}: Location {loc:?} lost the path"
        );
    }
    // The plain case stays an ordinary redirect.
    let r = get(&s, "d.test", "/go/evil.example");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/evil.example"));
}

#[test]
fn redirect_location_never_carries_cr_or_lf() {
    let s = server("redir-crlf", &[("r/index.html", "R\n")], REDIRECTS);
    // The query is kept as sent (still percent-encoded): %0D%0A stays three-byte escapes.
    let (line, r) = fetch_line(
        &s,
        "GET",
        "r.test",
        "/old-page?x=%0D%0ASet-Cookie:%20a=1",
        &[],
    );
    assert_eq!(line, "HTTP/1.1 308 Permanent Redirect");
    assert_eq!(
        r.header("location"),
        Some("/new-page?x=%0D%0ASet-Cookie:%20a=1")
    );
    assert_eq!(r.header("set-cookie"), None);
    for target in [
        "/old/a%0D%0ASet-Cookie:%20a=1",
        "/old/a%0Ab",
        "/old/a%0Db",
        "/old/%E2%80%A8x",
        "/see/%0D%0AX-Injected:%201",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n");
        let bytes = s.raw(req.as_bytes());
        assert_clean_head(target, &bytes);
        let r = Response::parse(&bytes).unwrap_or_else(|| panic!("{target}: no response"));
        assert_eq!(r.header("set-cookie"), None, "{target}");
        assert_eq!(r.header("x-injected"), None, "{target}");
        if let Some(loc) = r.header("location") {
            assert_safe_location(target, loc);
        }
        assert!(
            r.status == 400 || (300..400).contains(&r.status),
            "{target}: {}",
            r.status
        );
    }
    // A non-ASCII capture is percent-encoded, not sent raw.
    let r = get(&s, "r.test", "/old/%E2%80%A8x");
    assert_eq!(r.header("location"), Some("/new/%E2%80%A8x"));
}

#[test]
fn site_redirects_are_tried_before_inherited_ones() {
    let s = server(
        "redir-inherit",
        &[("a/index.html", "A\n"), ("b/index.html", "B\n")],
        r#"
[[redirect]]
from = "/promo"
to = "/top-promo"

[[redirect]]
from = "/only-top"
to = "/t"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.redirect]]
from = "/promo"
to = "/site-promo"

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    for (host, target, loc) in [
        ("a.test", "/promo", "/site-promo"),
        ("a.test", "/only-top", "/t"),
        ("b.test", "/promo", "/top-promo"),
        ("other.test", "/promo", "/top-promo"),
    ] {
        let r = get(&s, host, target);
        assert_eq!(r.status, 308, "{host}{target}");
        assert_eq!(r.header("location"), Some(loc), "{host}{target}");
    }
}

// ---------------------------------------------------------------------------------------
// SPA fallback
// ---------------------------------------------------------------------------------------

#[test]
fn spa_fallback_serves_navigations_only() {
    let s = server(
        "spa",
        &[
            ("spa/index.html", "SPA shell\n"),
            ("spa/app.js", "js\n"),
            ("root/x", "x"),
        ],
        r#"
[[site]]
hosts = ["spa.test"]
root = "$D/spa"
fallback = "/index.html"
"#,
    );
    let browser = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (target, accept) in [
        ("/some/route", Some("Accept: text/html")),
        ("/some/route", Some(browser)),
        ("/some/route", None),
        ("/some/route", Some("Accept: */*")),
        ("/v1.2/route", Some("Accept: text/html")),
        ("/some/route?x=1", Some("Accept: text/html")),
    ] {
        let headers: Vec<&str> = accept.into_iter().collect();
        let r = fetch(&s, "GET", "spa.test", target, &headers);
        assert_eq!(r.status, 200, "{target} {accept:?}");
        assert_eq!(r.body_str(), "SPA shell\n", "{target} {accept:?}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{target}"
        );
    }
    let r = fetch(&s, "HEAD", "spa.test", "/some/route", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    for (target, accept) in [
        ("/some/route", Some("Accept: application/json")),
        ("/missing.js", Some("Accept: text/html")),
        ("/missing.js", None),
        ("/assets/missing.css", Some(browser)),
        ("/some/route.v2", Some("Accept: text/html")),
    ] {
        let headers: Vec<&str> = accept.into_iter().collect();
        let r = fetch(&s, "GET", "spa.test", target, &headers);
        assert_eq!(r.status, 404, "{target} {accept:?}");
        assert_ne!(r.body_str(), "SPA shell\n", "{target} {accept:?}");
    }
    // Existing files are themselves.
    assert_eq!(get(&s, "spa.test", "/app.js").body_str(), "js\n");
    assert_eq!(get(&s, "spa.test", "/").body_str(), "SPA shell\n");
    // No fallback on the default site.
    assert_eq!(get(&s, "other.test", "/some/route").status, 404);
}

// ---------------------------------------------------------------------------------------
// clean URLs and trailing slashes
// ---------------------------------------------------------------------------------------

#[test]
fn clean_urls_serve_and_canonicalise() {
    let s = server(
        "clean-urls",
        &[
            ("c/about.html", "About\n"),
            ("c/docs/intro.html", "Intro\n"),
            ("c/dir/index.html", "Dir\n"),
            ("c/both.html", "Both file\n"),
            ("c/both/index.html", "Both dir\n"),
            ("c/plain.txt", "t\n"),
            ("root/about.html", "root about\n"),
        ],
        r#"
[[site]]
hosts = ["c.test"]
root = "$D/c"
clean_urls = true
"#,
    );
    for (target, body) in [
        ("/about", "About\n"),
        ("/docs/intro", "Intro\n"),
        ("/dir/", "Dir\n"),
        ("/both/", "Both dir\n"),
        ("/plain.txt", "t\n"),
    ] {
        let r = get(&s, "c.test", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body_str(), body, "{target}");
    }
    assert_eq!(
        get(&s, "c.test", "/about").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_redirects(
        &s,
        "c.test",
        &[
            ("/about.html", "HTTP/1.1 308 Permanent Redirect", "/about"),
            (
                "/about.html?x=1",
                "HTTP/1.1 308 Permanent Redirect",
                "/about?x=1",
            ),
            (
                "/docs/intro.html",
                "HTTP/1.1 308 Permanent Redirect",
                "/docs/intro",
            ),
            (
                "/dir/index.html",
                "HTTP/1.1 308 Permanent Redirect",
                "/dir/",
            ),
            // directories keep today's 301 to the slash (trailing_slash = "redirect")
            ("/dir", "HTTP/1.1 301 Moved Permanently", "/dir/"),
            // a directory named like the page wins over the page
            ("/both", "HTTP/1.1 301 Moved Permanently", "/both/"),
        ],
    );
    assert_eq!(get(&s, "c.test", "/plain").status, 404);
    assert_eq!(get(&s, "c.test", "/nope").status, 404);
    // Off by default.
    assert_eq!(get(&s, "other.test", "/about").status, 404);
    assert_eq!(
        get(&s, "other.test", "/about.html").body_str(),
        "root about\n"
    );
}

#[test]
fn trailing_slash_ignore_serves_the_index() {
    let s = server(
        "trailing-ignore",
        &[
            ("t/dir/index.html", "Dir\n"),
            ("root/dir/index.html", "root dir\n"),
        ],
        r#"
[[site]]
hosts = ["t.test"]
root = "$D/t"
trailing_slash = "ignore"
"#,
    );
    for target in ["/dir", "/dir?x=1", "/dir/"] {
        let r = get(&s, "t.test", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body_str(), "Dir\n", "{target}");
        assert_eq!(r.header("location"), None, "{target}");
    }
    let r = get(&s, "other.test", "/dir");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/"));
}

// ---------------------------------------------------------------------------------------
// directory listing
// ---------------------------------------------------------------------------------------

/// A listing site `l.test` (listing = true) with known names, sizes and mtimes.
fn listing_server(name: &str) -> Srvd {
    let s = prepare(
        name,
        &[
            ("l/<script>.txt", "12345"),
            ("l/a.txt", "0123456789"),
            ("l/b.txt", "abc"),
            ("l/.hidden", "dot"),
            ("l/adir/x.txt", "x"),
            ("l/zdir/y.txt", "y"),
            ("l/withindex/index.html", "has index\n"),
            ("root/noindex/file.txt", "f"),
        ],
        r#"
[[site]]
hosts = ["l.test"]
root = "$D/l"
listing = true
"#,
    );
    let l = s.dir.join("l");
    set_mtime(&l.join("a.txt"), 1_551_675_967); // 2019-03-04T05:06:07Z
    set_mtime(&l.join("<script>.txt"), 1_577_934_245); // 2020-01-02T03:04:05Z
    set_mtime(&l.join("b.txt"), 1_623_053_350); // 2021-06-07T08:09:10Z
    s.start_prepared()
}

fn listing_json(s: &Srvd, host: &str, target: &str) -> Vec<Json> {
    let r = fetch(s, "GET", host, target, &["Accept: application/json"]);
    assert_eq!(r.status, 200, "{target}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{target}: Content-Type {ct:?}"
    );
    let v = Json::parse(&r.body_str())
        .unwrap_or_else(|e| panic!("{target}: not JSON ({e}):\n{}", r.body_str()));
    v.arr()
        .unwrap_or_else(|| panic!("{target}: not an array:\n{}", r.body_str()))
        .to_vec()
}

fn names(entries: &[Json]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.get("name")
                .and_then(Json::str)
                .expect("a name")
                .to_owned()
        })
        .collect()
}

#[test]
fn listing_is_off_by_default() {
    let s = server(
        "listing-off",
        &[("root/noindex/file.txt", "f"), ("n/sub/file.txt", "f")],
        r#"
[[site]]
hosts = ["n.test"]
root = "$D/n"
listing = false
"#,
    );
    assert_eq!(get(&s, "other.test", "/noindex/").status, 404);
    assert_eq!(
        fetch(
            &s,
            "GET",
            "other.test",
            "/noindex/",
            &["Accept: application/json"]
        )
        .status,
        404
    );
    assert_eq!(get(&s, "n.test", "/sub/").status, 404);
    assert_eq!(get(&s, "n.test", "/").status, 404);
}

#[test]
fn listing_html_escapes_sorts_and_hides_dotfiles() {
    let s = listing_server("listing-html");
    let l = s.dir.join("l");
    symlink("/etc", l.join("escape")).unwrap();
    symlink("a.txt", l.join("inner.txt")).unwrap();
    std::fs::write(l.join("a&b.txt"), "amp").unwrap();
    let r = get(&s, "l.test", "/");
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/html"), "{ct}");
    let body = r.body_str();
    assert!(body.contains("&lt;script&gt;.txt"), "{body}");
    assert!(!body.contains("<script>"), "raw name in listing:\n{body}");
    assert!(body.contains("a&amp;b.txt"), "{body}");
    assert!(!body.contains(".hidden"), "dotfile listed:\n{body}");
    assert!(
        !body.contains("escape"),
        "symlink out of the root listed:\n{body}"
    );
    assert!(body.contains("inner.txt"), "{body}");
    // directories first, then by name
    assert_order(
        &body,
        &[
            ">adir",
            ">withindex",
            ">zdir",
            ">&lt;script&gt;.txt<",
            ">a.txt<",
            ">b.txt<",
        ],
    );
    // a directory with an index is served, not listed
    assert_eq!(get(&s, "l.test", "/withindex/").body_str(), "has index\n");
    let sub = get(&s, "l.test", "/adir/");
    assert_eq!(sub.status, 200);
    assert!(sub.body_str().contains("x.txt"), "{}", sub.body_str());
    assert!(!sub.body_str().contains("zdir"), "{}", sub.body_str());
    // the default site does not list
    assert_eq!(get(&s, "other.test", "/noindex/").status, 404);
}

/// Names that try to break out of an attribute or a JSON string: HTML attributes stay
/// closed, JSON stays valid and gives the names back exactly; a name with a control
/// character is either escaped or not listed, never sent raw.
#[test]
fn listing_names_cannot_break_out_of_html_or_json() {
    let s = server(
        "listing-hostile",
        &[
            ("h/q\" onmouseover=\"alert(1)\".txt", "q"),
            ("h/back\\slash.txt", "b"),
            ("h/javascript:alert(1)", "j"),
            ("h/new\nline.txt", "n"),
            ("h/é.txt", "e"),
        ],
        r#"
[[site]]
hosts = ["h.test"]
root = "$D/h"
listing = true
"#,
    );
    let html = get(&s, "h.test", "/").body_str();
    let mut tags = 0;
    for (i, _) in html.match_indices("<a ") {
        let tag = &html[i..i + html[i..].find('>').expect("a closed tag")];
        tags += 1;
        assert!(!tag.contains("onmouseover=\""), "attribute injected: {tag}");
        assert!(!tag.contains("\n"), "raw newline in a tag: {tag:?}");
        assert!(
            !tag.contains("href=\"javascript:"),
            "a name became a javascript: URL: {tag}"
        );
    }
    assert!(tags >= 4, "links to the entries:\n{html}");
    let entries = listing_json(&s, "h.test", "/");
    let n = names(&entries);
    for want in [
        "q\" onmouseover=\"alert(1)\".txt",
        "back\\slash.txt",
        "javascript:alert(1)",
        "é.txt",
    ] {
        assert!(n.iter().any(|x| x == want), "{want:?} not in {n:?}");
    }
    assert!(
        n.iter().all(|x| x == "new\nline.txt" || !x.contains('\n')),
        "{n:?}"
    );
}

#[test]
fn listing_sort_and_order_query() {
    let s = listing_server("listing-sort");
    let files = |target: &str| -> (Vec<String>, Vec<String>) {
        let n = names(&listing_json(&s, "l.test", target));
        assert_eq!(n.len(), 6, "{target}: {n:?}");
        let (dirs, files) = n.split_at(3);
        let mut dirs = dirs.to_vec();
        dirs.sort();
        assert_eq!(
            dirs,
            ["adir", "withindex", "zdir"],
            "{target}: directories come first"
        );
        (n[..3].to_vec(), files.to_vec())
    };
    let (d, f) = files("/");
    assert_eq!(d, ["adir", "withindex", "zdir"]);
    assert_eq!(f, ["<script>.txt", "a.txt", "b.txt"]);
    let (d, f) = files("/?sort=name&order=desc");
    assert_eq!(d, ["zdir", "withindex", "adir"]);
    assert_eq!(f, ["b.txt", "a.txt", "<script>.txt"]);
    let (_, f) = files("/?sort=size");
    assert_eq!(f, ["b.txt", "<script>.txt", "a.txt"]);
    let (_, f) = files("/?sort=size&order=desc");
    assert_eq!(f, ["a.txt", "<script>.txt", "b.txt"]);
    let (_, f) = files("/?sort=mtime");
    assert_eq!(f, ["a.txt", "<script>.txt", "b.txt"]);
    let (_, f) = files("/?sort=mtime&order=desc");
    assert_eq!(f, ["b.txt", "<script>.txt", "a.txt"]);
    // The HTML listing follows the same query.
    let html = get(&s, "l.test", "/?sort=size&order=desc").body_str();
    assert_order(&html, &[">a.txt<", ">&lt;script&gt;.txt<", ">b.txt<"]);
    let first_dir = html.find(">adir").unwrap().min(html.find(">zdir").unwrap());
    assert!(
        first_dir < html.find(">a.txt<").unwrap(),
        "dirs first:\n{html}"
    );
}

#[test]
fn listing_json_has_name_type_size_mtime() {
    let s = listing_server("listing-json");
    let entries = listing_json(&s, "l.test", "/");
    assert_eq!(
        names(&entries),
        [
            "adir",
            "withindex",
            "zdir",
            "<script>.txt",
            "a.txt",
            "b.txt"
        ]
    );
    for e in &entries {
        let mut keys = e.keys();
        keys.sort();
        assert_eq!(keys, ["mtime", "name", "size", "type"], "{e:?}");
        assert!(
            e.get("size").unwrap().int().is_some(),
            "size is an integer: {e:?}"
        );
        let mtime = e.get("mtime").unwrap().str().expect("mtime is a string");
        assert!(is_rfc3339(mtime), "{mtime:?}");
    }
    let by_name = |n: &str| {
        entries
            .iter()
            .find(|e| e.get("name").unwrap().str() == Some(n))
            .unwrap()
    };
    assert_eq!(by_name("adir").get("type").unwrap().str(), Some("dir"));
    assert_eq!(by_name("zdir").get("type").unwrap().str(), Some("dir"));
    let a = by_name("a.txt");
    assert_eq!(a.get("type").unwrap().str(), Some("file"));
    assert_eq!(a.get("size").unwrap().int(), Some(10));
    assert_eq!(a.get("mtime").unwrap().str(), Some("2019-03-04T05:06:07Z"));
    let sc = by_name("<script>.txt");
    assert_eq!(sc.get("size").unwrap().int(), Some(5));
    assert_eq!(sc.get("mtime").unwrap().str(), Some("2020-01-02T03:04:05Z"));
    assert_eq!(by_name("b.txt").get("size").unwrap().int(), Some(3));
}

/// Issue 9: "large directories (50 000 entries) listed without blocking the worker for
/// long". One worker, so a request that waits behind the listing would show; the listing is
/// complete and correct; a listing cached per directory sees an added and a removed entry
/// at once (the directory's mtime changes).
#[test]
fn large_directory_is_listed_completely_and_changes_show_at_once() {
    const N: usize = 50_000;
    let mut s = Srvd::prepare_with_workers("listing-big", "", 1);
    let big = s.dir.join("big");
    std::fs::create_dir_all(big.join("many")).unwrap();
    for i in 0..N {
        std::fs::File::create(big.join(format!("many/f{i:05}.txt"))).unwrap();
    }
    let text = format!(
        "\n[[site]]\nhosts = [\"big.test\"]\nroot = \"{}\"\nlisting = true\n",
        big.display()
    );
    s.write_config(&text);
    let s = s.start_prepared();

    // A listing request whose response nobody reads yet, then a small request beside it.
    let mut slow = s.connect();
    slow.write_all(
        b"GET /many/ HTTP/1.1\r\nHost: big.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let r = get(&s, "other.test", "/index.html");
    let took = t0.elapsed();
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        took < Duration::from_secs(2),
        "a small request waited {took:?} behind a 50 000-entry listing"
    );
    let bytes = read_to_close(&mut slow);
    let r = Response::parse(&bytes).expect("a complete listing response");
    assert_eq!(r.status, 200);
    let v = Json::parse(&r.body_str()).expect("JSON");
    let entries = v.arr().expect("an array");
    assert_eq!(entries.len(), N);
    let n = names(entries);
    let want: Vec<String> = (0..N).map(|i| format!("f{i:05}.txt")).collect();
    assert_eq!(n, want, "all entries, sorted by name");

    // Changes show at once, whatever is cached.
    std::fs::File::create(big.join("many/zz-new.txt")).unwrap();
    std::fs::remove_file(big.join("many/f00000.txt")).unwrap();
    let n = names(&listing_json(&s, "big.test", "/many/"));
    assert_eq!(n.len(), N);
    assert_eq!(n.first().map(String::as_str), Some("f00001.txt"));
    assert_eq!(n.last().map(String::as_str), Some("zz-new.txt"));
    let html = get(&s, "big.test", "/many/").body_str();
    assert!(
        html.contains(">zz-new.txt<"),
        "new file missing from the HTML listing"
    );
    assert!(!html.contains(">f00000.txt<"), "removed file still listed");
}

#[test]
fn listing_per_path_glob() {
    let s = server(
        "listing-glob",
        &[
            ("p/downloads/file1.zip", "1"),
            ("p/downloads/sub/file2.zip", "2"),
            ("p/other/file3.zip", "3"),
            ("p/x.txt", "x"),
        ],
        r#"
[[site]]
hosts = ["p.test"]
root = "$D/p"
listing = ["/downloads/**"]
"#,
    );
    let r = get(&s, "p.test", "/downloads/sub/");
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("file2.zip"), "{}", r.body_str());
    let r = get(&s, "p.test", "/downloads/");
    assert_eq!(r.status, 200, "/downloads/ itself is under /downloads/**");
    assert!(r.body_str().contains("file1.zip"), "{}", r.body_str());
    assert!(r.body_str().contains("sub"), "{}", r.body_str());
    assert_eq!(get(&s, "p.test", "/other/").status, 404);
    assert_eq!(get(&s, "p.test", "/").status, 404);
}

// ---------------------------------------------------------------------------------------
// access logs
// ---------------------------------------------------------------------------------------

#[test]
fn json_access_log_lines_are_objects_with_the_listed_keys() {
    let s = server(
        "log-json",
        &[("a/x.txt", "0123456789\n")],
        r#"
[log]
access = "$D/json.log"
format = "json"

[[site]]
hosts = ["a.test", "alias.test"]
root = "$D/a"
"#,
    );
    let r = fetch(
        &s,
        "GET",
        "alias.test",
        "/x.txt?q=1",
        &[
            "User-Agent: ua \"quoted\" \\back",
            "Referer: http://ref.example/",
        ],
    );
    assert_eq!(r.status, 200);
    let r = get(&s, "other.test", "/nope");
    assert_eq!(r.status, 404);
    let not_found_len = r.body.len() as u64;
    assert_eq!(fetch(&s, "HEAD", "a.test", "/x.txt", &[]).status, 200);

    let path = s.dir.join("json.log");
    let text = wait_for("three JSON lines", || {
        let t = std::fs::read_to_string(&path).unwrap_or_default();
        (t.lines().count() >= 3).then_some(t)
    });
    let lines: Vec<Json> = text
        .lines()
        .map(|l| Json::parse(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let want_keys = [
        "bytes",
        "duration_us",
        "host",
        "method",
        "path",
        "referer",
        "site",
        "status",
        "time",
        "user_agent",
    ];
    for l in &lines {
        // The listed keys must be there; more (remote_addr, protocol) are allowed.
        let keys = l.keys();
        for k in want_keys {
            assert!(keys.contains(&k), "no {k:?} in {l:?}");
        }
        assert!(
            is_rfc3339(l.get("time").unwrap().str().expect("time string")),
            "{l:?}"
        );
        assert!(
            l.get("duration_us").unwrap().int().is_some(),
            "integer duration: {l:?}"
        );
        assert!(
            l.get("status").unwrap().int().is_some(),
            "integer status: {l:?}"
        );
        assert!(
            l.get("bytes").unwrap().int().is_some(),
            "integer bytes: {l:?}"
        );
    }
    let find = |host: &str, method: &str| {
        lines
            .iter()
            .find(|l| {
                l.get("host").unwrap().str() == Some(host)
                    && l.get("method").unwrap().str() == Some(method)
            })
            .unwrap_or_else(|| panic!("no {method} line for {host}:\n{text}"))
    };
    let first = find("alias.test", "GET");
    assert_eq!(
        first.get("site").unwrap().str(),
        Some("a.test"),
        "the site's first name"
    );
    assert_eq!(first.get("status").unwrap().int(), Some(200));
    assert_eq!(first.get("bytes").unwrap().int(), Some(11));
    let p = first.get("path").unwrap().str().unwrap();
    assert!(p == "/x.txt?q=1" || p == "/x.txt", "path {p:?}");
    assert_eq!(
        first.get("user_agent").unwrap().str(),
        Some("ua \"quoted\" \\back")
    );
    assert_eq!(
        first.get("referer").unwrap().str(),
        Some("http://ref.example/")
    );
    let nf = find("other.test", "GET");
    assert_eq!(nf.get("site").unwrap().str(), Some("default"));
    assert_eq!(nf.get("status").unwrap().int(), Some(404));
    assert_eq!(nf.get("bytes").unwrap().int(), Some(not_found_len));
    let head = find("a.test", "HEAD");
    assert_eq!(
        head.get("bytes").unwrap().int(),
        Some(0),
        "HEAD sends no body bytes"
    );
}

#[test]
fn vhost_combined_lines_start_with_the_host() {
    let s = server(
        "log-vhost",
        &[("a/index.html", "A\n")],
        r#"
[log]
access = "$D/v.log"
format = "vhost_combined"

[[site]]
hosts = ["a.test"]
root = "$D/a"
"#,
    );
    let own = format!("a.test:{}", s.port);
    let table: [(&str, &str, &str); 4] = [
        ("A.Test", "/?n=1", "a.test 127.0.0.1 - - ["),
        (own.as_str(), "/?n=2", "a.test 127.0.0.1 - - ["),
        ("a.test:9999", "/?n=3", "a.test:9999 127.0.0.1 - - ["),
        ("Other.Test.", "/?n=4", "other.test 127.0.0.1 - - ["),
    ];
    for (host, target, _) in &table {
        assert_eq!(get(&s, host, target).status, 200, "{host}");
    }
    let path = s.dir.join("v.log");
    let text = wait_lines(&path, "GET /?n=", 4);
    for (host, target, start) in &table {
        let needle = format!("\"GET {target} HTTP/1.1\" 200 ");
        let line = text
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no line for {target}:\n{text}"));
        assert!(
            line.starts_with(start),
            "Host {host}: {line:?} should start with {start:?}"
        );
    }
}

#[test]
fn per_site_access_log_gets_only_that_sites_lines() {
    let s = server(
        "log-persite",
        &[("a/index.html", "A\n"), ("b/index.html", "B\n")],
        r#"
[log]
access = "$D/main.log"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.log]
access = "$D/a.log"
format = "json"

[[site]]
hosts = ["b.test"]
root = "$D/b"

[[site]]
hosts = ["c.test"]
root = "$D/b"

[site.log]
access = "off"
"#,
    );
    assert_eq!(get(&s, "c.test", "/?from-c").status, 200);
    assert_eq!(get(&s, "a.test", "/?from-a1").status, 200);
    assert_eq!(get(&s, "b.test", "/?from-b").status, 200);
    assert_eq!(get(&s, "other.test", "/?from-default").status, 200);
    assert_eq!(get(&s, "a.test", "/?from-a2").status, 200);
    let a_log = wait_lines(&s.dir.join("a.log"), "from-a", 2);
    let main_log = wait_lines(&s.dir.join("main.log"), "from-", 2);
    assert_eq!(a_log.lines().count(), 2, "{a_log}");
    for l in a_log.lines() {
        let j = Json::parse(l).unwrap_or_else(|e| panic!("a.log is JSON ({e}): {l}"));
        assert_eq!(j.get("site").and_then(Json::str), Some("a.test"), "{l}");
    }
    assert!(
        !main_log.contains("from-a"),
        "site a's line in the shared log:\n{main_log}"
    );
    assert!(
        main_log.contains("\"GET /?from-b HTTP/1.1\" 200"),
        "{main_log}"
    );
    assert!(
        main_log.contains("\"GET /?from-default HTTP/1.1\" 200"),
        "{main_log}"
    );
    assert!(
        !s.access_log().contains("from-"),
        "a line went to stdout too"
    );
    assert!(
        !main_log.contains("from-c") && !a_log.contains("from-c"),
        "c's log is off"
    );
}

#[test]
fn usr1_reopens_every_access_log() {
    let s = server(
        "log-usr1",
        &[("a/index.html", "A\n")],
        r#"
[log]
access = "$D/main.log"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.log]
access = "$D/a.log"
"#,
    );
    let main = s.dir.join("main.log");
    let a = s.dir.join("a.log");
    assert_eq!(get(&s, "a.test", "/?before-a").status, 200);
    assert_eq!(get(&s, "other.test", "/?before-main").status, 200);
    wait_lines(&a, "before-a", 1);
    wait_lines(&main, "before-main", 1);
    std::fs::rename(&a, s.dir.join("a.log.1")).unwrap();
    std::fs::rename(&main, s.dir.join("main.log.1")).unwrap();
    s.signal(Signal::SIGUSR1);
    // Lines written before a worker handled USR1 still go to the renamed files: keep asking
    // until both fresh files have one.
    let mut n = 0;
    wait_for("lines in both fresh logs", || {
        n += 1;
        assert_eq!(get(&s, "a.test", &format!("/?after-a{n}")).status, 200);
        assert_eq!(
            get(&s, "other.test", &format!("/?after-main{n}")).status,
            200
        );
        let a_new = std::fs::read_to_string(&a).unwrap_or_default();
        let m_new = std::fs::read_to_string(&main).unwrap_or_default();
        (a_new.contains("after-a") && m_new.contains("after-main")).then_some(())
    });
    let a_old = std::fs::read_to_string(s.dir.join("a.log.1")).unwrap();
    let m_old = std::fs::read_to_string(s.dir.join("main.log.1")).unwrap();
    assert!(
        a_old.contains("before-a") && !a_old.contains("main"),
        "{a_old}"
    );
    assert!(
        m_old.contains("before-main") && !m_old.contains("before-a"),
        "{m_old}"
    );
    let a_new = std::fs::read_to_string(&a).unwrap();
    assert!(!a_new.contains("after-main"), "{a_new}");
}

// ---------------------------------------------------------------------------------------
// config validation (`srvd --check`)
// ---------------------------------------------------------------------------------------

#[test]
fn process_wide_keys_in_a_site_are_errors_with_file_line_col() {
    let s = prepare(
        "cfg-processwide",
        &[("a/index.html", "A\n"), ("b/index.html", "B\n")],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/a"
port = 9000
workers = 3
header_timeout = "5s"

[[site]]
hosts = ["b.test"]
root = "$D/b"
bind = "127.0.0.1"
pid_file = "x.pid"
unknown_host = "close"
max_connections = 10
keepalive_timeout = "1s"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    let keys = [
        "port",
        "workers",
        "header_timeout",
        "bind",
        "pid_file",
        "unknown_host",
        "max_connections",
        "keepalive_timeout",
    ];
    let mut expect = Vec::new();
    for key in keys {
        let line = lines_of(&s, &format!("{key} = "))
            .into_iter()
            .max()
            .unwrap(); // the one inside a [[site]] (after the harness's top-level keys)
        expect.push(format!(
            "srvd.toml:{line}:1: {key} is process-wide: set it at the top level, not in a [[site]]"
        ));
    }
    let got: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(got, expect, "{}", run.stderr);
    let start = run_cli(&s.dir, &["--config", "srvd.toml"]);
    assert_eq!(start.code, Some(1), "{start:?}");
    assert!(start.stderr.contains(&expect[0]), "{}", start.stderr);
}

#[test]
fn two_sites_claiming_one_host_name_is_an_error() {
    let s = prepare(
        "cfg-duphost",
        &[
            ("a/index.html", "A\n"),
            ("b/index.html", "B\n"),
            ("c/index.html", "C\n"),
        ],
        r#"
hosts = ["Top.Test"]

[[site]]
hosts = ["Example.com", "*.Wild.test"]
root = "$D/a"

[[site]]
hosts = ["www.example.com", "example.com."]
root = "$D/b"

[[site]]
hosts = ["top.test.", "*.wild.test."]
root = "$D/c"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    let second = error_at(&run, line_of(&s, "\"example.com.\""));
    assert!(second.contains("example.com"), "{second}");
    let third = error_at(&run, line_of(&s, "\"top.test.\""));
    assert!(
        third.contains("top.test") || third.contains("wild.test"),
        "{third}"
    );
    assert!(
        run.stderr.contains("top.test") && run.stderr.contains("wild.test"),
        "both the exact and the wildcard duplicate are reported:\n{}",
        run.stderr
    );
    // Nothing blamed on the first claimant.
    assert!(
        run.stderr
            .lines()
            .all(|l| positioned(l).is_none_or(|(n, _)| n != line_of(&s, "\"Example.com\""))),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_error_pages_are_config_errors() {
    let s = prepare(
        "cfg-nopage",
        &[("a/index.html", "A\n")],
        r#"
error_pages = { "5xx" = "$D/pages/missing-5xx.html" }

[[site]]
hosts = ["a.test"]
root = "$D/a"
error_pages = { 404 = "$D/pages/missing-404.html" }

[[site]]
hosts = ["b.test"]
root = "$D/a"
not_found_page = "$D/pages/missing-nf.html"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    for name in ["missing-5xx.html", "missing-404.html", "missing-nf.html"] {
        let line = error_at(&run, line_of(&s, name));
        assert!(line.contains(name), "{line}");
    }
}

#[test]
fn error_pages_are_read_at_load_and_on_reload() {
    let mut s = server(
        "cfg-pagereload",
        &[("pages/a404.html", "page v1\n"), ("a/index.html", "A\n")],
        r#"
pid_file = "srvd.pid"

[[site]]
hosts = ["a.test"]
root = "$D/a"
error_pages = { 404 = "$D/pages/a404.html" }
"#,
    );
    let state = s.dir.join("srvd.pid.reload");
    wait_for("the reload state file", || state.exists().then_some(()));
    let page = s.dir.join("pages/a404.html");
    assert_eq!(get(&s, "a.test", "/nope").body_str(), "page v1\n");
    // The page is held in memory: changing the file alone changes nothing ...
    std::fs::write(&page, "page v2\n").unwrap();
    assert_eq!(get(&s, "a.test", "/nope").body_str(), "page v1\n");
    // ... a reload reads it again.
    let reload = |s: &Srvd| {
        let before = srvd::reload_cmd::reloads_done(&state);
        s.signal(Signal::SIGHUP);
        wait_for("a reload to finish", || {
            (srvd::reload_cmd::reloads_done(&state) > before).then(|| {
                std::fs::read_to_string(&state)
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("result=").map(str::to_owned))
                    .unwrap_or_default()
            })
        })
    };
    assert_eq!(reload(&s), "ok");
    assert_eq!(get(&s, "a.test", "/nope").body_str(), "page v2\n");
    // A reload with the page gone is refused; the running config keeps serving.
    std::fs::remove_file(&page).unwrap();
    assert_ne!(reload(&s), "ok");
    let r = get(&s, "a.test", "/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.body_str(), "page v2\n");
    s.stop();
}

#[test]
fn bad_globs_are_config_errors() {
    let s = prepare(
        "cfg-glob",
        &[("a/index.html", "A\n")],
        r#"
[[headers]]
match = ""
set = { "X-A" = "1" }

[[site]]
hosts = ["a.test"]
root = "$D/a"
listing = ["/x/***"]

[[site.redirect]]
from = "/a/***/b"
to = "/c"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    error_at(&run, line_of(&s, "match = \"\""));
    error_at(&run, line_of(&s, "/x/***"));
    error_at(&run, line_of(&s, "/a/***/b"));
}

#[test]
fn check_reports_every_site_error_at_once() {
    let s = prepare(
        "cfg-many",
        &[("a/index.html", "A\n"), ("pages/p.html", "p")],
        r#"
[[site]]
hosts = ["a.test"]
root = "$D/does-not-exist"

[[site]]
hosts = ["b.test"]
root = "$D/a"
error_pages = { "3xx" = "$D/pages/p.html", 200 = "$D/pages/p.html" }

[[site.redirect]]
from = "/x"
to = "/y"
status = 200

[[site.redirect]]
from = "/z"
to = "//evil.example/z"

[[site.headers]]
match = "/**"
set = { "X-Bad" = "a\nb" }

[[site]]
hosts = []
root = "$D/a"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    for needle in [
        "does-not-exist",
        "\"3xx\"",
        "status = 200",
        "//evil.example",
        "X-Bad",
    ] {
        error_at(&run, line_of(&s, needle));
    }
    // The empty hosts list is blamed on the key (df22aa9).
    let empty = error_at(&run, line_of(&s, "hosts = []"));
    assert!(empty.contains("hosts"), "{empty}");
    assert!(run.stderr.contains("does-not-exist"), "{}", run.stderr);
}

#[test]
fn check_accepts_a_good_sites_config_and_warns_about_nested_roots() {
    let s = prepare(
        "cfg-good",
        &[
            ("a/index.html", "A\n"),
            ("a/inner/index.html", "inner\n"),
            ("pages/404.html", "p"),
            ("pages/5xx.html", "p"),
        ],
        r#"
unknown_host = "default"
hosts = ["main.test"]
error_pages = { 404 = "$D/pages/404.html", "5xx" = "$D/pages/5xx.html" }

[[headers]]
match = "/**"
set = { "X-Content-Type-Options" = "nosniff" }

[[redirect]]
from = "/old/**"
to = "/new/{1}"

[log]
format = "combined"

[[site]]
hosts = ["a.test", "*.a.test"]
root = "$D/a"
cache = "static-site"
cache_max_age = "2h"
clean_urls = true
trailing_slash = "ignore"
listing = ["/files/**"]
fallback = "/index.html"

[site.log]
access = "$D/a.log"
format = "json"

[[site]]
hosts = ["inner.test"]
root = "$D/a/inner"
listing = true
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "srvd.toml: configuration ok\n");
    assert!(
        run.stderr.contains("inner"),
        "expected a warning about a/inner inside a's root: {run:?}"
    );
}

// ---------------------------------------------------------------------------------------
// reload: add and remove sites under load
// ---------------------------------------------------------------------------------------

const RUN_FOR: Duration = Duration::from_secs(3);
const MAX_REQUESTS: u64 = 50_000;

#[derive(Default)]
struct LoadStats {
    ok: AtomicU64,
    /// Responses with the second accepted body (the default site's, for b.test).
    second: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl LoadStats {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 50 {
            f.push(what);
        }
    }
}

enum Outcome {
    Ok { body: Vec<u8>, close: bool },
    ClosedBeforeResponse(String),
    Failed(String),
}

fn exchange(c: &mut TcpStream, host: &str, keep_alive: bool) -> Outcome {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {conn}\r\n\r\n");
    if let Err(e) = c.write_all(req.as_bytes()) {
        return Outcome::ClosedBeforeResponse(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = Response::parse(&buf) {
            if r.status != 200 {
                return Outcome::Failed(format!("{host}: status {}", r.status));
            }
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            return Outcome::Ok {
                body: r.body,
                close,
            };
        }
        match c.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Outcome::ClosedBeforeResponse("EOF".into()),
            Ok(0) => return Outcome::Failed(format!("{host}: truncated at {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Outcome::ClosedBeforeResponse(format!("read: {e}")),
            Err(e) => return Outcome::Failed(format!("{host}: {e} after {} bytes", buf.len())),
        }
    }
}

fn dial(port: u16) -> std::io::Result<TcpStream> {
    let c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(c)
}

/// Loops requests for `host` until `stop`, the deadline or MAX_REQUESTS; a body must be
/// `accept[0]` or `accept[1]`. A reused kept-alive connection the server closed before any
/// response byte is retried once on a fresh one (RFC 9112 §9.3.1), as reload_load does.
fn load_client(
    port: u16,
    host: &str,
    keep_alive: bool,
    accept: [&[u8]; 2],
    stop: &AtomicBool,
    deadline: Instant,
    stats: &LoadStats,
) {
    let mut conn: Option<TcpStream> = None;
    let mut used = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < MAX_REQUESTS {
        n += 1;
        if conn.is_none() {
            match dial(port) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    stats.fail(format!("{host}: connect: {e}"));
                    continue;
                }
            }
            used = 0;
        }
        let mut outcome = exchange(conn.as_mut().unwrap(), host, keep_alive);
        if let Outcome::ClosedBeforeResponse(_) = &outcome {
            if keep_alive && used > 0 {
                match dial(port) {
                    Ok(mut fresh) => {
                        outcome = exchange(&mut fresh, host, keep_alive);
                        conn = Some(fresh);
                        used = 0;
                    }
                    Err(e) => outcome = Outcome::Failed(format!("{host}: reconnect: {e}")),
                }
            }
        }
        match outcome {
            Outcome::Ok { body, close } => {
                if body == accept[0] {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                } else if body == accept[1] {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    stats.second.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.fail(format!("{host}: body {:?}", String::from_utf8_lossy(&body)));
                }
                used += 1;
                if close || !keep_alive {
                    conn = None;
                }
            }
            Outcome::ClosedBeforeResponse(why) => {
                stats.fail(format!("{host}: closed before a response: {why}"));
                conn = None;
            }
            Outcome::Failed(why) => {
                stats.fail(why);
                conn = None;
            }
        }
    }
}

fn reload_config(second: bool) -> String {
    let (gen, other) = if second { ("2", "c") } else { ("1", "b") };
    format!(
        r#"
pid_file = "srvd.pid"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[[site.headers]]
match = "/**"
set = {{ "X-Gen" = "{gen}" }}

[[site]]
hosts = ["{other}.test"]
root = "$D/{other}"
"#
    )
}

#[test]
fn reload_adds_and_removes_sites_under_load() {
    let mut s = server(
        "reload-sites",
        &[
            ("a/index.html", "A\n"),
            ("b/index.html", "B\n"),
            ("c/index.html", "C\n"),
        ],
        &reload_config(false),
    );
    let state = s.dir.join("srvd.pid.reload");
    wait_for("the reload state file", || state.exists().then_some(()));
    assert_eq!(get(&s, "b.test", "/").body_str(), "B\n");
    assert_eq!(
        get(&s, "c.test", "/").body_str(),
        "hello\n",
        "c is not a site yet"
    );
    assert_eq!(get(&s, "a.test", "/").header("x-gen"), Some("1"));

    let port = s.port;
    let stop = AtomicBool::new(false);
    let (a_stats, b_stats) = (LoadStats::default(), LoadStats::default());
    let deadline = Instant::now() + RUN_FOR;
    let dir = s.dir.to_str().unwrap().to_owned();
    let reload_result = std::thread::scope(|scope| {
        for keep_alive in [true, false] {
            let (stop, a_stats, b_stats) = (&stop, &a_stats, &b_stats);
            scope.spawn(move || {
                load_client(
                    port,
                    "a.test",
                    keep_alive,
                    [b"A\n", b"A\n"],
                    stop,
                    deadline,
                    a_stats,
                )
            });
            scope.spawn(move || {
                load_client(
                    port,
                    "b.test",
                    keep_alive,
                    [b"B\n", b"hello\n"],
                    stop,
                    deadline,
                    b_stats,
                )
            });
        }
        wait_for("the load to run", || {
            (a_stats.ok.load(Ordering::Relaxed) >= 200 && b_stats.ok.load(Ordering::Relaxed) >= 200)
                .then_some(())
        });
        // Remove b, add c, change a's header.
        s.write_config(&reload_config(true).replace("$D", &dir));
        let before = srvd::reload_cmd::reloads_done(&state);
        s.signal(Signal::SIGHUP);
        let result = wait_for("the reload to finish", || {
            (srvd::reload_cmd::reloads_done(&state) > before).then(|| {
                std::fs::read_to_string(&state)
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("result=").map(str::to_owned))
                    .unwrap_or_default()
            })
        });
        wait_for("c.test to serve", || {
            let bytes = s.raw(b"GET / HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n");
            Response::parse(&bytes)
                .filter(|r| r.body == b"C\n")
                .map(|_| ())
        });
        // Keep the load going a little after the switch (bounded by the deadline).
        let (a_then, b_then) = (
            a_stats.ok.load(Ordering::Relaxed),
            b_stats.ok.load(Ordering::Relaxed),
        );
        wait_for("load after the reload", || {
            ((a_stats.ok.load(Ordering::Relaxed) >= a_then + 200
                && b_stats.ok.load(Ordering::Relaxed) >= b_then + 200)
                || Instant::now() >= deadline)
                .then_some(())
        });
        stop.store(true, Ordering::Relaxed);
        result
    });
    assert_eq!(reload_result, "ok", "{}", s.error_log());
    let a_fail = a_stats.failures.lock().unwrap();
    let b_fail = b_stats.failures.lock().unwrap();
    eprintln!(
        "reload-sites: a {} ok, b {} ok ({} from the default site), failures a {} b {}",
        a_stats.ok.load(Ordering::Relaxed),
        b_stats.ok.load(Ordering::Relaxed),
        b_stats.second.load(Ordering::Relaxed),
        a_fail.len(),
        b_fail.len()
    );
    assert!(
        a_fail.is_empty(),
        "a.test lost requests:\n{}",
        a_fail.join("\n")
    );
    assert!(
        b_fail.is_empty(),
        "b.test got errors:\n{}",
        b_fail.join("\n")
    );
    assert!(
        a_stats.ok.load(Ordering::Relaxed) >= 40,
        "the load barely ran"
    );
    // After the reload: b falls to the default site, c serves, a changed.
    let r = get(&s, "b.test", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert_eq!(get(&s, "c.test", "/").body_str(), "C\n");
    let r = get(&s, "a.test", "/");
    assert_eq!(r.body_str(), "A\n");
    assert_eq!(r.header("x-gen"), Some("2"));
}
