//! Issue 10, "compression", seen from a client: each content coding decoded by a real
//! decoder (the `flate2`, `brotli` and `zstd` crates, and `curl --compressed`) equals the
//! original bytes, on the fly and from precompressed sidecars; Accept-Encoding negotiation
//! (RFC 9110 §12.5.3: q-values, `*`, `q=0`, `identity;q=0`, case, junk, the server's
//! `prefer` order); `Vary: Accept-Encoding` on 200, 206 and 304; HEAD equal to GET;
//! sidecar rules (older ones ignored, any type, served as themselves by their own name,
//! ranges over the encoded bytes, distinct strong ETags); conditional requests against the
//! chosen variant; `no-transform`; what is never encoded; a changed file never serving a
//! stale variant; the shared `cache_dir` across a reload and a worker crash, never serving a
//! torn file; and config errors from `srvd --check`.
//!
//! The contract is /work/notes/compression-spec.md. On-the-fly encoding happens off the
//! request path: the first answer for a file is identity and later ones carry the encoded
//! variant once it is ready, so tests poll (with the harness's deadline) until
//! Content-Encoding appears, checking every response on the way. Tests that compare
//! successive responses run one worker, so every request meets the same in-memory cache.
//!
//! `$D` in a config below stands for the test's own directory.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

const CODINGS: [&str; 3] = ["br", "zstd", "gzip"];

/// A mtime far enough in the past that "now" is always newer.
const T: u64 = 1_700_000_000;

/// Deterministic text of exactly `len` bytes: numbered lines of words picked by `seed`, so
/// it compresses like real text but two seeds give different bytes.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "static",
        "server",
        "worker",
        "epoll",
        "sendfile",
        "header",
        "content",
        "coding",
        "variant",
        "brotli",
        "zstandard",
        "gzip",
        "request",
        "response",
        "cache",
        "range",
    ];
    let pick = noise(len, seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        if i % 11 == 0 {
            out.extend_from_slice(format!("\n{:06} ", i / 11).as_bytes());
        }
        out.extend_from_slice(WORDS[(pick[i % pick.len()] & 15) as usize].as_bytes());
        out.push(b' ');
        i += 1;
    }
    out.truncate(len);
    out
}

/// The sidecar file extension of a coding.
fn ext(coding: &str) -> &'static str {
    match coding {
        "br" => "br",
        "zstd" => "zst",
        "gzip" => "gz",
        other => panic!("no sidecar extension for {other}"),
    }
}

/// `data` encoded with `coding` by the reference crates.
fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(data, 9).unwrap(),
        other => panic!("no encoder for {other}"),
    }
}

/// `data` decoded as `coding` by the reference crates (`x-gzip` is gzip).
fn decode(coding: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match coding.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => {
            let mut d = flate2::read::GzDecoder::new(data);
            d.read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
            // One member, nothing after it.
            let mut rest = Vec::new();
            d.into_inner().read_to_end(&mut rest).unwrap();
            if !rest.is_empty() {
                return Err(format!("{} bytes after the gzip member", rest.len()));
            }
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .map_err(|e| format!("br: {e}"))?;
        }
        "zstd" => out = zstd::decode_all(data).map_err(|e| format!("zstd: {e}"))?,
        other => return Err(format!("unknown coding {other:?}")),
    }
    Ok(out)
}

/// Writes `body` at `dir/rel`, creating directories.
fn put(dir: &Path, rel: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

/// Sets a file's modification time to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Writes `data` at `root/rel` (mtime `T`) and a sidecar per coding in `codings` (mtime
/// `T + 10`); returns the sidecars' bytes by coding.
fn with_sidecars(
    root: &Path,
    rel: &str,
    data: &[u8],
    codings: &[&str],
) -> Vec<(&'static str, Vec<u8>)> {
    let p = put(root, rel, data);
    set_mtime(&p, T);
    let mut out = Vec::new();
    for &c in codings {
        let bytes = encode(c, data);
        let sp = put(root, &format!("{rel}.{}", ext(c)), &bytes);
        set_mtime(&sp, T + 10);
        let name = CODINGS.iter().find(|x| **x == c).unwrap();
        out.push((*name, bytes));
    }
    out
}

fn bytes_of<'a>(sidecars: &'a [(&'static str, Vec<u8>)], coding: &str) -> &'a [u8] {
    &sidecars.iter().find(|(c, _)| *c == coding).unwrap().1
}

/// A prepared server with `workers` workers; `extra` (with `$D` replaced) follows the
/// harness's top-level keys.
fn prepare(name: &str, workers: usize, extra: &str) -> Srvd {
    let mut s = Srvd::prepare_with_workers(name, "", workers);
    let text = extra.replace("$D", s.dir.to_str().unwrap());
    s.write_config(&text);
    s
}

fn start(s: Srvd) -> Srvd {
    let s = s.start_prepared();
    s.wait_workers_ready();
    s
}

fn server(name: &str, workers: usize, extra: &str) -> Srvd {
    start(prepare(name, workers, extra))
}

/// One request with `Connection: close` and extra header lines; the whole response must be
/// exactly one message (so a wrong Content-Length shows).
fn fetch_host(s: &Srvd, method: &str, host: &str, target: &str, headers: &[&str]) -> Response {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let bytes = s.raw(req.as_bytes());
    let r = Response::parse_with(&bytes, method == "HEAD").unwrap_or_else(|| {
        panic!(
            "no complete response to {req:?}: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        )
    });
    assert!(
        r.rest.is_empty(),
        "{method} {target} {headers:?}: {} bytes after the response (Content-Length {:?})",
        r.rest.len(),
        r.header("content-length")
    );
    r
}

fn fetch(s: &Srvd, method: &str, target: &str, headers: &[&str]) -> Response {
    fetch_host(s, method, "localhost", target, headers)
}

fn get(s: &Srvd, target: &str, headers: &[&str]) -> Response {
    fetch(s, "GET", target, headers)
}

fn ae(value: &str) -> String {
    format!("Accept-Encoding: {value}")
}

fn ce(r: &Response) -> Option<&str> {
    r.header("content-encoding")
}

/// Whether some Vary field lists Accept-Encoding.
fn varies(r: &Response) -> bool {
    r.headers.iter().any(|(k, v)| {
        k == "vary"
            && v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
    })
}

fn etag(r: &Response) -> String {
    let t = r
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag: {:?}", r.headers))
        .to_owned();
    assert!(
        t.len() > 2 && t.starts_with('"') && t.ends_with('"') && !t[1..t.len() - 1].contains('"'),
        "ETag {t:?} is not a strong quoted tag"
    );
    t
}

fn short(r: &Response) -> String {
    format!("{} {:?}", r.status, r.headers)
}

/// Checks one 200 answer to a request accepting `coding`: identity with the original
/// bytes, or `coding` decoding to them. Returns whether it was encoded.
fn check_answer(what: &str, r: &Response, coding: &str, original: &[u8]) -> bool {
    assert_eq!(r.status, 200, "{what}: {}", short(r));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "{what}"
    );
    assert!(varies(r), "{what}: no Vary: Accept-Encoding: {}", short(r));
    match ce(r) {
        None => {
            assert!(
                r.body == original,
                "{what}: identity body differs from the file"
            );
            false
        }
        Some(got) => {
            assert_eq!(got, coding, "{what}: {}", short(r));
            let plain = decode(got, &r.body).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                plain == original,
                "{what}: {coding} body decodes to {} bytes that differ from the file's {}",
                plain.len(),
                original.len()
            );
            true
        }
    }
}

/// Repeats `GET target` with `Accept-Encoding: accept` until the answer is encoded as
/// `coding`, checking every answer on the way; returns the encoded answer.
fn poll_encoded_host(
    s: &Srvd,
    host: &str,
    target: &str,
    accept: &str,
    coding: &str,
    original: &[u8],
) -> Response {
    let what = format!("{host}{target} [{accept}]");
    wait_for(&format!("{what} to be served as {coding}"), || {
        let r = fetch_host(s, "GET", host, target, &[&ae(accept)]);
        check_answer(&what, &r, coding, original).then_some(r)
    })
}

fn poll_encoded(s: &Srvd, target: &str, coding: &str, original: &[u8]) -> Response {
    poll_encoded_host(s, "localhost", target, coding, coding, original)
}

/// Asserts `r` is the identity representation `original`, not encoded.
fn assert_identity(what: &str, r: &Response, original: &[u8]) {
    assert_eq!(r.status, 200, "{what}: {}", short(r));
    assert_eq!(ce(r), None, "{what}: {}", short(r));
    assert!(r.body == original, "{what}: body differs from the file");
}

/// `srvd --check --config srvd.toml` in the test directory.
fn check(s: &Srvd) -> CliRun {
    run_cli(&s.dir, &["--check", "--config", "srvd.toml"])
}

/// `(line, column)` (1-based) of `token` inside the one config line holding `context`.
fn position_in(s: &Srvd, context: &str, token: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(&s.config_path).unwrap();
    let found: Vec<(usize, usize)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let at = l.find(context)?;
            let within = context.find(token).expect("token inside context");
            Some((i + 1, at + within + 1))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{context:?} must be on exactly one line:\n{text}"
    );
    found[0]
}

fn line_of(s: &Srvd, context: &str) -> usize {
    position_in(s, context, context).0
}

/// `srvd.toml:LINE:COL: message` → (LINE, COL).
fn positioned(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("srvd.toml:")?;
    let mut parts = rest.splitn(3, ':');
    let l = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    parts.next()?.strip_prefix(' ')?;
    Some((l, c))
}

/// Every regular file below `dir` (recursively) with its bytes.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push((e.path(), b));
                }
            }
        }
    }
    out.sort();
    out
}

/// Sends HUP and waits for the reload's outcome (needs `pid_file = "srvd.pid"`).
fn reload(s: &Srvd) -> String {
    let state = s.dir.join("srvd.pid.reload");
    wait_for("the reload state file", || state.exists().then_some(()));
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
}

/// Waits until none of `old` is among the workers and the set is complete and serving.
fn wait_new_workers(s: &Srvd, old: &[i32]) -> Vec<i32> {
    let now = wait_for("a new generation of workers", || {
        let w = s.workers();
        (w.len() == s.workers_expected && w.iter().all(|p| !old.contains(p))).then_some(w)
    });
    s.wait_workers_ready();
    now
}

// ---------------------------------------------------------------------------------------
// each coding, decoded by a real decoder
// ---------------------------------------------------------------------------------------

#[test]
fn each_coding_on_the_fly_decodes_to_the_original() {
    let s = server("otf-each", 1, "");
    let original = text(64 * 1024, 1);
    s.file("page.html", &original);
    let plain = get(&s, "/page.html", &[]);
    assert_identity("no Accept-Encoding", &plain, &original);
    assert!(varies(&plain), "{}", short(&plain));
    let ctype = plain.header("content-type").unwrap().to_owned();
    assert_eq!(ctype, "text/html; charset=utf-8");
    let mut tags = vec![etag(&plain)];
    for coding in CODINGS {
        let r = poll_encoded(&s, "/page.html", coding, &original);
        assert_eq!(r.header("content-type"), Some(ctype.as_str()), "{coding}");
        assert!(
            r.body.len() < original.len() / 2,
            "{coding}: {} bytes for {} of text",
            r.body.len(),
            original.len()
        );
        let tag = etag(&r);
        assert!(
            !tags.contains(&tag),
            "{coding}: ETag {tag} reused among {tags:?}"
        );
        tags.push(tag.clone());
        // The kept variant: the same bytes and tag again.
        let again = get(&s, "/page.html", &[&ae(coding)]);
        assert_eq!(ce(&again), Some(coding));
        assert!(again.body == r.body, "{coding}: the cached variant changed");
        assert_eq!(etag(&again), tag);
    }
    // Identity is still identity for a client without Accept-Encoding.
    assert_identity("identity again", &get(&s, "/page.html", &[]), &original);
}

#[test]
fn each_coding_from_a_sidecar_decodes_to_the_original() {
    let s = server("sidecar-each", 1, "");
    let original = text(64 * 1024, 2);
    let sidecars = with_sidecars(&s.root, "app.js", &original, &CODINGS);
    let plain = get(&s, "/app.js", &[]);
    assert_identity("no Accept-Encoding", &plain, &original);
    assert!(varies(&plain));
    for coding in CODINGS {
        // A sidecar serves on the very first request (nothing to wait for).
        let r = get(&s, "/app.js", &[&ae(coding)]);
        assert_eq!(r.status, 200, "{coding}: {}", short(&r));
        assert_eq!(ce(&r), Some(coding), "{coding}: {}", short(&r));
        assert!(varies(&r), "{coding}: {}", short(&r));
        assert_eq!(r.header("content-type"), plain.header("content-type"));
        assert!(
            r.body == bytes_of(&sidecars, coding),
            "{coding}: body is not the sidecar's bytes"
        );
        assert_eq!(decode(coding, &r.body).unwrap(), original, "{coding}");
        assert_eq!(
            r.header("content-length"),
            Some(bytes_of(&sidecars, coding).len().to_string().as_str())
        );
    }
}

/// `curl` with `--compressed` decodes what srvd sends, for every coding, from a sidecar
/// and from an on-the-fly variant; curl's own Accept-Encoding gets br.
#[test]
fn curl_compressed_decodes_each_coding() {
    let version = Command::new("curl").arg("-V").output().expect("curl -V");
    let features = String::from_utf8_lossy(&version.stdout).to_ascii_lowercase();
    for f in ["brotli", "zstd", "libz"] {
        assert!(features.contains(f), "curl lacks {f}:\n{features}");
    }
    let s = server("curl", 1, "");
    let side = text(64 * 1024, 3);
    with_sidecars(&s.root, "side.css", &side, &CODINGS);
    let fly = text(64 * 1024, 4);
    s.file("fly.js", &fly);
    for coding in CODINGS {
        poll_encoded(&s, "/fly.js", coding, &fly);
    }
    let curl = |target: &str, accept: Option<&str>| -> (String, Vec<u8>) {
        let body = s.dir.join("curl.body");
        let _ = std::fs::remove_file(&body);
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--compressed", "--max-time", "5", "-D", "-", "-o"])
            .arg(&body)
            .stdin(Stdio::null());
        if let Some(a) = accept {
            cmd.arg("-H").arg(ae(a));
        }
        cmd.arg(format!("http://127.0.0.1:{}{target}", s.port));
        let out = cmd.output().expect("run curl");
        assert!(out.status.success(), "curl {target}: {out:?}");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        (head, std::fs::read(&body).unwrap())
    };
    for (target, original) in [("/side.css", &side), ("/fly.js", &fly)] {
        for coding in CODINGS {
            let (head, body) = curl(target, Some(coding));
            assert!(
                head.starts_with("http/1.1 200"),
                "{target} {coding}:\n{head}"
            );
            assert!(
                head.contains(&format!("\ncontent-encoding: {coding}\r\n")),
                "{target} {coding}:\n{head}"
            );
            assert!(
                body == *original,
                "{target} {coding}: curl's decoded body differs"
            );
        }
        // curl's own list ("deflate, gzip, br, zstd"): the server's first preference.
        let (head, body) = curl(target, None);
        assert!(
            head.contains("\ncontent-encoding: br\r\n"),
            "{target}:\n{head}"
        );
        assert!(body == *original, "{target}: curl's decoded body differs");
    }
}

// ---------------------------------------------------------------------------------------
// negotiation
// ---------------------------------------------------------------------------------------

/// Checks `GET target` with each Accept-Encoding line of `table` gets the expected coding
/// (`None`: identity) with the sidecar's (or the file's) exact bytes.
fn check_table(
    s: &Srvd,
    host: &str,
    target: &str,
    original: &[u8],
    sidecars: &[(&'static str, Vec<u8>)],
    table: &[(Option<&str>, Option<&str>)],
) {
    for (header, want) in table {
        let lines: Vec<String> = header
            .map(|h| format!("Accept-Encoding:{h}"))
            .into_iter()
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = fetch_host(s, "GET", host, target, &lines);
        let what = format!("{host}{target} Accept-Encoding {header:?}");
        assert_eq!(r.status, 200, "{what}: {}", short(&r));
        assert_eq!(ce(&r), *want, "{what}: {}", short(&r));
        assert!(varies(&r), "{what}: {}", short(&r));
        match want {
            Some(c) => assert!(
                r.body == bytes_of(sidecars, c),
                "{what}: not the {c} sidecar"
            ),
            None => assert!(r.body == original, "{what}: not the file"),
        }
    }
}

#[test]
fn negotiation_follows_q_values_and_the_servers_order() {
    let s = server("negotiate", 1, "");
    let original = text(16 * 1024, 5);
    let sidecars = with_sidecars(&s.root, "n.css", &original, &CODINGS);
    #[rustfmt::skip]
    let table: &[(Option<&str>, Option<&str>)] = &[
        // No header, an empty one: identity.
        (None, None),
        (Some(""), None),
        (Some(" "), None),
        // What browsers send: the server's first preference.
        (Some(" gzip, deflate, br, zstd"), Some("br")),
        (Some(" gzip, deflate, br"), Some("br")),
        (Some(" gzip, zstd"), Some("zstd")),
        (Some(" gzip"), Some("gzip")),
        // Equal q: server order (br over gzip), whatever the client's order.
        (Some(" gzip;q=1, br;q=1"), Some("br")),
        (Some(" gzip;q=0.7, br;q=0.7, identity;q=0.1"), Some("br")),
        (Some(" gzip;q=1.000, zstd;q=1.0"), Some("zstd")),
        // Highest q wins.
        (Some(" br;q=0.5, gzip"), Some("gzip")),
        (Some(" br;q=0.5, zstd;q=0.8, gzip;q=0.1, identity;q=0.05"), Some("zstd")),
        (Some(" br;q=0.999, gzip"), Some("gzip")),
        (Some(" br;q=0.001, gzip;q=0, identity;q=0"), Some("br")),
        // q=0 excludes.
        (Some(" br;q=0, gzip"), Some("gzip")),
        (Some(" br;q=0.0, zstd;q=0.000, gzip"), Some("gzip")),
        (Some(" gzip;q=0"), None),
        // Identity takes part with its q and loses ties.
        (Some(" gzip;q=0.5, identity;q=1"), None),
        (Some(" gzip;q=0.5, identity;q=0.5"), Some("gzip")),
        (Some(" gzip, identity"), Some("gzip")),
        (Some(" identity"), None),
        (Some(" identity, br;q=0.9"), None),
        // `*` covers what is not listed.
        (Some(" *"), Some("br")),
        (Some(" br;q=0, *"), Some("zstd")),
        (Some(" br;q=0, zstd;q=0, *;q=0.3"), Some("gzip")),
        (Some(" *;q=0.5, gzip"), Some("gzip")),
        (Some(" *;q=0, gzip"), Some("gzip")),
        (Some(" *;q=0, identity"), None),
        // Unknown codings are ignored.
        (Some(" deflate"), None),
        (Some(" compress, deflate, lzma"), None),
        (Some(" deflate, gzip;q=0.2, identity;q=0.1"), Some("gzip")),
        // Tokens and `q` are case-insensitive; x-gzip is gzip.
        (Some(" GZIP"), Some("gzip")),
        (Some(" ZSTD, GZip"), Some("zstd")),
        (Some(" Br;Q=0.5, GZip;q=0.4, identity;q=0"), Some("br")),
        (Some(" x-gzip"), Some("gzip")),
        (Some(" X-GZIP, deflate"), Some("gzip")),
        // Other parameters are ignored; empty list elements are allowed.
        (Some(" gzip;level=1"), Some("gzip")),
        (Some(" gzip , , br"), Some("br")),
        (Some(" ,gzip,"), Some("gzip")),
        (Some("gzip;q=0.5 , br ;q=0.4,identity;q=0"), Some("gzip")),
        // A value that does not parse as a whole is no header: identity.
        (Some(" gzip;q=2"), None),
        (Some(" br, gzip;q=1.5"), None),
        (Some(" gzip;q=0.1234"), None),
        (Some(" gzip;q="), None),
        (Some(" gzip;q=abc"), None),
        (Some(" gzip;;q=1"), None),
        (Some(" gzip;q=1;q=1"), None),
        (Some(" gzip br"), None),
        (Some(" \"gzip\""), None),
        (Some(" br, g(zip)"), None),
        (Some(" br;q=-1"), None),
    ];
    check_table(&s, "localhost", "/n.css", &original, &sidecars, table);
}

#[test]
fn prefer_sets_the_servers_order_per_site() {
    let s = prepare(
        "prefer",
        1,
        r#"
[compression]
prefer = ["gzip", "zstd", "br"]

[[site]]
hosts = ["z.test"]
root = "$D/z"

[site.compression]
prefer = ["zstd"]
"#,
    );
    let original = text(16 * 1024, 6);
    let top = with_sidecars(&s.root, "p.css", &original, &CODINGS);
    let z = with_sidecars(&s.dir.join("z"), "p.css", &original, &CODINGS);
    let s = start(s);
    #[rustfmt::skip]
    check_table(&s, "localhost", "/p.css", &original, &top, &[
        (Some(" gzip, deflate, br, zstd"), Some("gzip")),
        (Some(" br, zstd"), Some("zstd")),
        (Some(" br;q=1, gzip;q=1"), Some("gzip")),
        (Some(" *"), Some("gzip")),
        // A higher q still beats the server's order.
        (Some(" br, gzip;q=0.9"), Some("br")),
    ]);
    // Only zstd named: it comes first. (Where the unnamed ones go, after the default order
    // or the inherited one, the spec leaves open; not tested.)
    #[rustfmt::skip]
    check_table(&s, "z.test", "/p.css", &original, &z, &[
        (Some(" gzip, deflate, br, zstd"), Some("zstd")),
        (Some(" *"), Some("zstd")),
        (Some(" gzip"), Some("gzip")),
    ]);
}

/// `identity;q=0` and `*;q=0`: an encoded answer when one can exist (made on the spot for
/// an on-the-fly coding), 406 when none can for a compressible resource, and identity
/// anyway for a type srvd never encodes.
#[test]
fn refusing_identity_gets_an_encoding_or_406() {
    let s = prepare(
        "no-identity",
        1,
        r#"
[[site]]
hosts = ["side.test"]
root = "$D/side"

[site.compression]
on_the_fly = []
"#,
    );
    let a = text(64 * 1024, 7);
    s.file("a.js", &a);
    let b = text(64 * 1024, 8);
    s.file("b.js", &b);
    let c = text(64 * 1024, 9);
    s.file("c.js", &c);
    let png = noise(20_000, 10);
    s.file("pic.png", &png);
    let small = text(100, 11);
    s.file("small.css", &small);
    let side = text(16 * 1024, 12);
    let sidecars = with_sidecars(&s.dir.join("side"), "s.css", &side, &["gzip"]);
    let s = start(s);

    // Compressible, nothing encoded yet: encoded for this very request.
    let r = get(&s, "/a.js", &[&ae("identity;q=0, gzip")]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"), "{}", short(&r));
    assert_eq!(decode("gzip", &r.body).unwrap(), a);
    assert!(varies(&r));
    let r = get(&s, "/c.js", &[&ae("*;q=0, br")]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"), "{}", short(&r));
    assert_eq!(decode("br", &r.body).unwrap(), c);

    // Nothing acceptable at all for a compressible file: 406.
    for header in [
        "*;q=0",
        "identity;q=0",
        "identity;q=0, deflate",
        "*;q=0, gzip;q=0",
    ] {
        let r = get(&s, "/b.js", &[&ae(header)]);
        assert_eq!(r.status, 406, "{header}: {}", short(&r));
        assert_eq!(ce(&r), None, "{header}");
    }
    // Identity allowed again by a more specific entry.
    for header in ["*;q=0, identity", "*;q=0, identity;q=0.5"] {
        let r = get(&s, "/b.js", &[&ae(header)]);
        assert_identity(header, &r, &b);
    }
    // Types srvd never encodes, and files too small to encode: identity;q=0 is disregarded.
    for (target, body) in [("/pic.png", &png), ("/small.css", &small)] {
        for header in ["*;q=0", "identity;q=0", "identity;q=0, gzip"] {
            let r = get(&s, target, &[&ae(header)]);
            assert_identity(&format!("{target} {header}"), &r, body);
        }
    }
    // A site without on-the-fly encoding but with a gzip sidecar.
    let r = fetch_host(
        &s,
        "GET",
        "side.test",
        "/s.css",
        &[&ae("identity;q=0, gzip")],
    );
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"));
    assert!(r.body == bytes_of(&sidecars, "gzip"));
    let r = fetch_host(&s, "GET", "side.test", "/s.css", &[&ae("identity;q=0, br")]);
    assert_eq!(r.status, 406, "{}", short(&r));
}

// ---------------------------------------------------------------------------------------
// Vary and HEAD
// ---------------------------------------------------------------------------------------

#[test]
fn vary_on_200_206_and_304_identity_and_encoded() {
    let s = server("vary", 1, "");
    let original = text(64 * 1024, 13);
    s.file("v.css", &original);
    let png = noise(64 * 1024, 14);
    s.file("pic.png", &png);

    // Identity answers of a compressible file vary too.
    let r = get(&s, "/v.css", &[]);
    assert_identity("200", &r, &original);
    assert!(varies(&r), "200 identity: {}", short(&r));
    let plain_tag = etag(&r);
    let r = get(&s, "/v.css", &["Range: bytes=0-9"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), None);
    assert!(varies(&r), "206 identity: {}", short(&r));
    let r = get(&s, "/v.css", &[&format!("If-None-Match: {plain_tag}")]);
    assert_eq!(r.status, 304, "{}", short(&r));
    assert!(varies(&r), "304 identity: {}", short(&r));
    assert_eq!(etag(&r), plain_tag);
    let r = fetch(&s, "HEAD", "/v.css", &[]);
    assert!(varies(&r), "HEAD identity: {}", short(&r));

    // And the encoded ones.
    let full = poll_encoded(&s, "/v.css", "br", &original);
    let br_tag = etag(&full);
    let r = get(&s, "/v.css", &[&ae("br"), "Range: bytes=0-9"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    assert!(varies(&r), "206 br: {}", short(&r));
    let r = get(
        &s,
        "/v.css",
        &[&ae("br"), &format!("If-None-Match: {br_tag}")],
    );
    assert_eq!(r.status, 304, "{}", short(&r));
    assert!(varies(&r), "304 br: {}", short(&r));
    assert_eq!(etag(&r), br_tag);
    let r = fetch(&s, "HEAD", "/v.css", &[&ae("br")]);
    assert!(varies(&r), "HEAD br: {}", short(&r));

    // A PNG without sidecars never differs by encoding: no Vary.
    let r = get(&s, "/pic.png", &[&ae("gzip, br")]);
    assert_identity("png", &r, &png);
    assert!(!varies(&r), "png 200: {}", short(&r));
    let png_tag = etag(&r);
    let r = get(&s, "/pic.png", &[&ae("gzip, br"), "Range: bytes=5-9"]);
    assert_eq!(r.status, 206);
    assert_eq!(ce(&r), None);
    assert!(!varies(&r), "png 206: {}", short(&r));
    let r = get(
        &s,
        "/pic.png",
        &[&ae("gzip, br"), &format!("If-None-Match: {png_tag}")],
    );
    assert_eq!(r.status, 304);
    assert!(!varies(&r), "png 304: {}", short(&r));
    let r = get(&s, "/pic.png", &[]);
    assert!(
        !varies(&r),
        "png 200 without Accept-Encoding: {}",
        short(&r)
    );
}

/// HEAD gets what GET gets at that moment: Content-Length, Content-Encoding, ETag, Vary.
#[test]
fn head_has_the_headers_of_get() {
    let s = server("head", 1, "");
    let side = text(64 * 1024, 15);
    with_sidecars(&s.root, "side.css", &side, &["gzip", "br"]);
    let fly = text(64 * 1024, 16);
    s.file("fly.js", &fly);
    let same = |what: &str, target: &str, headers: &[&str]| {
        let g = get(&s, target, headers);
        let h = fetch(&s, "HEAD", target, headers);
        assert_eq!(h.status, g.status, "{what}");
        assert!(h.body.is_empty(), "{what}: HEAD has a body");
        for name in [
            "content-length",
            "content-encoding",
            "etag",
            "vary",
            "content-type",
        ] {
            assert_eq!(h.header(name), g.header(name), "{what}: {name}");
        }
        g
    };
    // A fresh file, HEAD first: identity with the file's length.
    let h = fetch(&s, "HEAD", "/fly.js", &[&ae("zstd")]);
    assert_eq!(h.status, 200);
    assert_eq!(ce(&h), None, "the first answer is identity: {}", short(&h));
    assert_eq!(
        h.header("content-length"),
        Some(fly.len().to_string().as_str())
    );
    assert!(varies(&h));
    same("identity", "/side.css", &[]);
    same("identity, unknown coding", "/fly.js", &[&ae("deflate")]);
    let g = same("gzip sidecar", "/side.css", &[&ae("gzip")]);
    assert_eq!(ce(&g), Some("gzip"));
    let g = same("br sidecar", "/side.css", &[&ae("br, gzip")]);
    assert_eq!(ce(&g), Some("br"));
    poll_encoded(&s, "/fly.js", "zstd", &fly);
    let g = same("zstd on the fly", "/fly.js", &[&ae("zstd")]);
    assert_eq!(ce(&g), Some("zstd"));
    same(
        "304 on the zstd variant",
        "/fly.js",
        &[&ae("zstd"), &format!("If-None-Match: {}", etag(&g))],
    );
}

// ---------------------------------------------------------------------------------------
// sidecars
// ---------------------------------------------------------------------------------------

#[test]
fn a_sidecar_older_than_the_original_is_ignored() {
    let s = prepare(
        "sidecar-old",
        1,
        r#"
[[site]]
hosts = ["plain.test"]
root = "$D/plain"

[site.compression]
on_the_fly = []
"#,
    );
    let original = text(64 * 1024, 17);
    let old = text(64 * 1024, 18);
    // f.css: its gzip sidecar holds older content and an older mtime.
    let p = s.file("f.css", &original);
    set_mtime(&p, T);
    let stale = encode("gzip", &old);
    let sp = s.file("f.css.gz", &stale);
    set_mtime(&sp, T - 100);
    // In a site without on-the-fly encoding: g.css with a stale but valid sidecar.
    let plain = s.dir.join("plain");
    let g = put(&plain, "g.css", &original);
    set_mtime(&g, T);
    let g_gz = encode("gzip", &original);
    let g_side = put(&plain, "g.css.gz", &g_gz);
    set_mtime(&g_side, T - 1);
    // A sidecar without its original; a "sidecar" that is a directory.
    put(&plain, "gone.css.gz", &g_gz);
    let i = put(&plain, "i.css", &original);
    set_mtime(&i, T);
    std::fs::create_dir_all(plain.join("i.css.gz")).unwrap();
    let s = start(s);

    // The stale sidecar is never served; on-the-fly gzip takes its place.
    let r = poll_encoded(&s, "/f.css", "gzip", &original);
    assert!(r.body != stale);
    let r = get(&s, "/f.css", &[&ae("gzip")]);
    check_answer("again", &r, "gzip", &original);

    let r = fetch_host(&s, "GET", "plain.test", "/g.css", &[&ae("gzip")]);
    assert_identity("stale sidecar, no on-the-fly", &r, &original);
    // Rebuilt in place (as a build tool rewrites it) and as new as the original ("not
    // older"): now it serves. (Rewriting in place and setting only the mtime both raise
    // IN_MODIFY on the sidecar, not IN_ATTRIB or IN_CREATE.)
    std::fs::write(&g_side, &g_gz).unwrap();
    set_mtime(&g_side, T);
    let r = wait_for("the refreshed sidecar to serve", || {
        let r = fetch_host(&s, "GET", "plain.test", "/g.css", &[&ae("gzip")]);
        // Until the change is seen: identity (without Vary, there being no usable sidecar
        // and no on-the-fly encoding in this site).
        if ce(&r).is_none() {
            assert_identity("before the refresh is seen", &r, &original);
            return None;
        }
        check_answer("refreshed", &r, "gzip", &original).then_some(r)
    });
    assert!(r.body == g_gz);

    let r = fetch_host(&s, "GET", "plain.test", "/gone.css", &[&ae("gzip")]);
    assert_eq!(
        r.status,
        404,
        "a sidecar without its original: {}",
        short(&r)
    );
    let r = fetch_host(&s, "GET", "plain.test", "/i.css", &[&ae("gzip")]);
    assert_identity("a directory named like a sidecar", &r, &original);
}

#[test]
fn a_sidecar_serves_for_a_type_never_encoded_on_the_fly() {
    let s = server("sidecar-png", 1, "");
    let png = noise(30_000, 19);
    let sidecars = with_sidecars(&s.root, "logo.png", &png, &["gzip"]);
    let r = get(&s, "/logo.png", &[&ae("gzip, br")]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"), "{}", short(&r));
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r.body == bytes_of(&sidecars, "gzip"));
    assert_eq!(decode("gzip", &r.body).unwrap(), png);
    assert!(varies(&r), "{}", short(&r));
    // Having a sidecar, its identity answers vary too.
    let r = get(&s, "/logo.png", &[]);
    assert_identity("identity", &r, &png);
    assert!(varies(&r), "{}", short(&r));
    // br is not available (no sidecar, never on the fly): identity.
    let r = get(&s, "/logo.png", &[&ae("br")]);
    assert_identity("br", &r, &png);
}

#[test]
fn a_sidecar_requested_by_its_own_name_is_served_as_itself() {
    let s = server("sidecar-direct", 1, "");
    let original = text(16 * 1024, 20);
    let sidecars = with_sidecars(&s.root, "x.css", &original, &["gzip", "br"]);
    for (target, coding) in [("/x.css.gz", "gzip"), ("/x.css.br", "br")] {
        for accept in [None, Some("gzip, br, zstd")] {
            let lines: Vec<String> = accept.map(ae).into_iter().collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let r = get(&s, target, &lines);
            let what = format!("{target} {accept:?}");
            assert_eq!(r.status, 200, "{what}: {}", short(&r));
            assert_eq!(ce(&r), None, "{what}: {}", short(&r));
            assert!(
                r.body == bytes_of(&sidecars, coding),
                "{what}: not the file's bytes"
            );
            assert_ne!(
                r.header("content-type"),
                Some("text/css; charset=utf-8"),
                "{what}: labelled as the original"
            );
        }
    }
    let r = get(&s, "/x.css.gz.gz", &[&ae("gzip")]);
    assert_eq!(r.status, 404);
}

#[test]
fn range_on_a_sidecar_covers_the_encoded_bytes() {
    let s = server("sidecar-range", 1, "");
    let original = text(64 * 1024, 21);
    let sidecars = with_sidecars(&s.root, "r.css", &original, &["gzip", "br"]);
    let gz = bytes_of(&sidecars, "gzip").to_vec();
    let n = gz.len();
    let full = get(&s, "/r.css", &[&ae("gzip")]);
    assert_eq!(ce(&full), Some("gzip"));
    let gz_tag = etag(&full);
    let br_tag = etag(&get(&s, "/r.css", &[&ae("br")]));
    let id_tag = etag(&get(&s, "/r.css", &[]));

    let r = get(&s, "/r.css", &[&ae("gzip"), "Range: bytes=10-109"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-109/{n}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("100"));
    assert!(r.body == gz[10..110], "not the sidecar's bytes 10-109");
    assert_eq!(etag(&r), gz_tag);
    assert!(varies(&r));

    let r = get(&s, "/r.css", &[&ae("gzip"), "Range: bytes=-20"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{n}", n - 20, n - 1).as_str())
    );
    assert!(r.body == gz[n - 20..]);

    // Past the encoded length (though inside the original's): unsatisfiable.
    let r = get(&s, "/r.css", &[&ae("gzip"), &format!("Range: bytes={n}-")]);
    assert_eq!(r.status, 416, "{}", short(&r));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{n}").as_str())
    );

    // If-Range: the gzip variant's tag → the range; another variant's → all of gzip.
    let r = get(
        &s,
        "/r.css",
        &[
            &ae("gzip"),
            "Range: bytes=0-99",
            &format!("If-Range: {gz_tag}"),
        ],
    );
    assert_eq!(r.status, 206, "{}", short(&r));
    assert!(r.body == gz[..100]);
    for other in [&id_tag, &br_tag] {
        let r = get(
            &s,
            "/r.css",
            &[
                &ae("gzip"),
                "Range: bytes=0-99",
                &format!("If-Range: {other}"),
            ],
        );
        assert_eq!(r.status, 200, "If-Range {other}: {}", short(&r));
        assert_eq!(ce(&r), Some("gzip"));
        assert!(r.body == gz, "If-Range {other}: not the whole sidecar");
    }
    // The identity tag still ranges over identity.
    let r = get(
        &s,
        "/r.css",
        &["Range: bytes=0-99", &format!("If-Range: {id_tag}")],
    );
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), None);
    assert!(r.body == original[..100]);
}

#[test]
fn sidecar_etags_are_strong_distinct_and_follow_changes() {
    let s = server("sidecar-etag", 1, "");
    let original = text(16 * 1024, 22);
    with_sidecars(&s.root, "e.css", &original, &CODINGS);
    let mut tags = vec![etag(&get(&s, "/e.css", &[]))];
    for coding in CODINGS {
        let r = get(&s, "/e.css", &[&ae(coding)]);
        assert_eq!(ce(&r), Some(coding));
        let t = etag(&r);
        assert!(!tags.contains(&t), "{coding}: {t} among {tags:?}");
        assert_eq!(
            etag(&get(&s, "/e.css", &[&ae(coding)])),
            t,
            "{coding}: unstable"
        );
        tags.push(t);
    }
    // A new sidecar (replaced atomically, newer): served from the next request on, new tag.
    let new_gz = {
        let mut e = flate2::GzBuilder::new()
            .filename("e.css")
            .write(Vec::new(), flate2::Compression::new(1));
        e.write_all(&original).unwrap();
        e.finish().unwrap()
    };
    let tmp = put(&s.root, "e.css.gz.new", &new_gz);
    set_mtime(&tmp, T + 20);
    std::fs::rename(&tmp, s.root.join("e.css.gz")).unwrap();
    let r = get(&s, "/e.css", &[&ae("gzip")]);
    assert_eq!(ce(&r), Some("gzip"));
    assert!(
        r.body == new_gz,
        "the replaced sidecar's old bytes were served"
    );
    assert!(!tags.contains(&etag(&r)), "the new sidecar kept an old tag");
}

// ---------------------------------------------------------------------------------------
// conditional requests
// ---------------------------------------------------------------------------------------

#[test]
fn validators_are_compared_with_the_chosen_variant() {
    let s = server("conditional", 1, "");
    let original = text(32 * 1024, 23);
    let sidecars = with_sidecars(&s.root, "c.css", &original, &["gzip", "br"]);
    let id_tag = etag(&get(&s, "/c.css", &[]));
    let gz_tag = etag(&get(&s, "/c.css", &[&ae("gzip")]));
    let br_tag = etag(&get(&s, "/c.css", &[&ae("br")]));
    let inm = |t: &str| format!("If-None-Match: {t}");

    let r = get(&s, "/c.css", &[&ae("gzip"), &inm(&gz_tag)]);
    assert_eq!(r.status, 304, "{}", short(&r));
    assert_eq!(etag(&r), gz_tag, "the 304 carries the variant's tag");
    assert!(varies(&r));
    let r = get(
        &s,
        "/c.css",
        &[&ae("gzip"), &inm(&format!("{br_tag}, {gz_tag}"))],
    );
    assert_eq!(r.status, 304, "{}", short(&r));
    assert_eq!(etag(&r), gz_tag);
    let r = get(&s, "/c.css", &[&ae("gzip"), &inm("*")]);
    assert_eq!(r.status, 304, "{}", short(&r));

    // Another variant's tag does not match this one.
    let r = get(&s, "/c.css", &[&ae("br"), &inm(&gz_tag)]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    assert!(r.body == bytes_of(&sidecars, "br"));
    let r = get(&s, "/c.css", &[&inm(&gz_tag)]);
    assert_identity("identity after a gzip tag", &r, &original);
    let r = get(&s, "/c.css", &[&ae("gzip"), &inm(&id_tag)]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"));

    // If-Match likewise.
    let r = get(&s, "/c.css", &[&ae("gzip"), &format!("If-Match: {gz_tag}")]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("gzip"));
    let r = get(&s, "/c.css", &[&ae("br"), &format!("If-Match: {gz_tag}")]);
    assert_eq!(r.status, 412, "{}", short(&r));
    let r = get(&s, "/c.css", &[&ae("gzip"), &format!("If-Match: {id_tag}")]);
    assert_eq!(r.status, 412, "{}", short(&r));

    // An on-the-fly variant: 304 on its own tag, the full variant for a wrong If-Range.
    let fly = text(64 * 1024, 24);
    s.file("o.js", &fly);
    let plain_tag = etag(&get(&s, "/o.js", &[]));
    let full = poll_encoded(&s, "/o.js", "br", &fly);
    let fly_tag = etag(&full);
    assert_ne!(fly_tag, plain_tag);
    let r = get(&s, "/o.js", &[&ae("br"), &inm(&fly_tag)]);
    assert_eq!(r.status, 304, "{}", short(&r));
    assert_eq!(etag(&r), fly_tag);
    assert!(varies(&r));
    let r = get(&s, "/o.js", &[&ae("br"), &inm(&plain_tag)]);
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    let r = get(&s, "/o.js", &[&inm(&fly_tag)]);
    assert_identity("identity after the br tag", &r, &fly);
    let r = get(
        &s,
        "/o.js",
        &[
            &ae("br"),
            "Range: bytes=0-99",
            &format!("If-Range: {plain_tag}"),
        ],
    );
    assert_eq!(r.status, 200, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    assert!(r.body == full.body);
    let r = get(
        &s,
        "/o.js",
        &[
            &ae("br"),
            "Range: bytes=0-99",
            &format!("If-Range: {fly_tag}"),
        ],
    );
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    assert!(r.body == full.body[..100]);
}

/// Before the variant exists a range is cut from identity; afterwards from the variant,
/// with Content-Range over the encoded length.
#[test]
fn ranges_follow_the_variant_served() {
    let s = server("otf-range", 1, "");
    let original = text(64 * 1024, 25);
    s.file("r.js", &original);
    let r = get(&s, "/r.js", &[&ae("br"), "Range: bytes=100-199"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(
        ce(&r),
        None,
        "a range of an uncached variant is identity: {}",
        short(&r)
    );
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{}", original.len()).as_str())
    );
    assert!(r.body == original[100..200]);
    assert!(varies(&r));
    let full = poll_encoded(&s, "/r.js", "br", &original);
    let n = full.body.len();
    let r = get(&s, "/r.js", &[&ae("br"), "Range: bytes=100-199"]);
    assert_eq!(r.status, 206, "{}", short(&r));
    assert_eq!(ce(&r), Some("br"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{n}").as_str())
    );
    assert!(r.body == full.body[100..200]);
}

// ---------------------------------------------------------------------------------------
// no-transform
// ---------------------------------------------------------------------------------------

#[test]
fn request_no_transform_stops_on_the_fly_encoding_but_not_sidecars() {
    let s = server("no-transform", 1, "");
    let original = text(64 * 1024, 26);
    s.file("o.css", &original);
    poll_encoded(&s, "/o.css", "br", &original);
    // The br variant is cached now; a no-transform request still gets identity.
    for cc in [
        "no-transform",
        "max-age=0, No-Transform",
        "no-cache,no-transform",
    ] {
        let r = get(&s, "/o.css", &[&ae("br"), &format!("Cache-Control: {cc}")]);
        assert_identity(cc, &r, &original);
    }
    assert_eq!(ce(&get(&s, "/o.css", &[&ae("br")])), Some("br"));

    // A sidecar is a stored representation: still served.
    let side = text(64 * 1024, 27);
    let sidecars = with_sidecars(&s.root, "s.css", &side, &["gzip"]);
    poll_encoded(&s, "/s.css", "br", &side);
    for accept in ["gzip", "br, gzip"] {
        let r = get(&s, "/s.css", &[&ae(accept), "Cache-Control: no-transform"]);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(ce(&r), Some("gzip"), "{accept}: {}", short(&r));
        assert!(r.body == bytes_of(&sidecars, "gzip"));
    }
}

#[test]
fn a_no_transform_header_rule_stops_on_the_fly_encoding() {
    let s = server(
        "no-transform-rule",
        1,
        r#"
[[headers]]
match = "/nt/**"
set = { "Cache-Control" = "no-transform" }
"#,
    );
    let original = text(64 * 1024, 28);
    s.file("nt/a.js", &original);
    s.file("ctl/a.js", &original);
    let side = text(16 * 1024, 29);
    let sidecars = with_sidecars(&s.root, "nt/s.css", &side, &["gzip"]);
    let check_nt = |what: &str| {
        let r = get(&s, "/nt/a.js", &[&ae("br, gzip")]);
        assert_identity(what, &r, &original);
        assert_eq!(r.header("cache-control"), Some("no-transform"), "{what}");
    };
    // Asked for alongside a control file until the control is encoded (one worker, one
    // queue: anything queued for /nt/a.js would be done by then too).
    wait_for("the control file to be encoded", || {
        check_nt("while the control is encoded");
        let r = get(&s, "/ctl/a.js", &[&ae("br")]);
        check_answer("control", &r, "br", &original).then_some(())
    });
    for _ in 0..5 {
        check_nt("after the control was encoded");
    }
    let r = get(&s, "/nt/s.css", &[&ae("gzip")]);
    assert_eq!(ce(&r), Some("gzip"), "{}", short(&r));
    assert!(r.body == bytes_of(&sidecars, "gzip"));
}

// ---------------------------------------------------------------------------------------
// what is never encoded
// ---------------------------------------------------------------------------------------

#[test]
fn small_large_and_compressed_types_are_not_encoded() {
    let s = server(
        "not-encoded",
        1,
        r#"
[mime_types]
foo = "application/x-srvd-foo"
bar = "application/x-srvd-bar"

[compression]
max_size = "32KiB"
types = ["application/x-srvd-foo"]
"#,
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/small.css", text(500, 30)),
        ("/big.css", text(40 * 1024, 31)),
        ("/pic.png", text(16 * 1024, 32)),
        ("/font.woff2", text(16 * 1024, 33)),
        ("/a.zip", text(16 * 1024, 34)),
        ("/clip.mp4", text(16 * 1024, 35)),
        ("/data.bar", text(16 * 1024, 36)),
    ];
    for (target, body) in &cases {
        s.file(&target[1..], body);
    }
    let foo = text(16 * 1024, 37);
    s.file("data.foo", &foo);
    let ctl = text(16 * 1024, 38);
    s.file("ctl.css", &ctl);
    let accept = "br, zstd, gzip";
    let check_all = |when: &str| {
        for (target, body) in &cases {
            let r = get(&s, target, &[&ae(accept)]);
            assert_identity(&format!("{target} {when}"), &r, body);
            assert!(!varies(&r), "{target} {when}: {}", short(&r));
        }
    };
    wait_for("the control file to be encoded", || {
        check_all("while the control is encoded");
        let r = get(&s, "/ctl.css", &[&ae("br")]);
        check_answer("control", &r, "br", &ctl).then_some(())
    });
    check_all("after the control was encoded");
    // A type added by `types` is encoded.
    let r = poll_encoded_host(&s, "localhost", "/data.foo", "br", "br", &foo);
    assert_eq!(r.header("content-type"), Some("application/x-srvd-foo"));
}

#[test]
fn on_the_fly_off_and_precompressed_off() {
    let s = prepare(
        "otf-off",
        1,
        r#"
[compression]
on_the_fly = []

[[site]]
hosts = ["ctl.test"]
root = "$D/ctl"

[site.compression]
on_the_fly = ["gzip"]
precompressed = false
"#,
    );
    let original = text(64 * 1024, 39);
    s.file("o.css", &original);
    let side = text(16 * 1024, 40);
    let sidecars = with_sidecars(&s.root, "s.css", &side, &["gzip"]);
    let ctl = s.dir.join("ctl");
    put(&ctl, "o.css", &original);
    // A sidecar distinguishable from anything srvd makes (a file name in its header).
    let named_gz = {
        let mut e = flate2::GzBuilder::new()
            .filename("s.css")
            .write(Vec::new(), flate2::Compression::new(1));
        e.write_all(&side).unwrap();
        e.finish().unwrap()
    };
    let p = put(&ctl, "s.css", &side);
    set_mtime(&p, T);
    let p = put(&ctl, "s.css.gz", &named_gz);
    set_mtime(&p, T + 10);
    let s = start(s);

    wait_for("the control site to encode", || {
        let r = get(&s, "/o.css", &[&ae("gzip, br")]);
        assert_identity("on_the_fly = []", &r, &original);
        assert!(!varies(&r), "nothing can vary: {}", short(&r));
        let r = fetch_host(&s, "GET", "ctl.test", "/o.css", &[&ae("gzip, br")]);
        check_answer("ctl.test", &r, "gzip", &original).then_some(())
    });
    let r = get(&s, "/o.css", &[&ae("gzip, br")]);
    assert_identity("on_the_fly = [] after the control", &r, &original);
    // Sidecars still serve with on_the_fly = [] ...
    let r = get(&s, "/s.css", &[&ae("gzip, br")]);
    assert_eq!(ce(&r), Some("gzip"), "{}", short(&r));
    assert!(r.body == bytes_of(&sidecars, "gzip"));
    // ... and not with precompressed = false (on-the-fly gzip instead).
    let r = poll_encoded_host(&s, "ctl.test", "/s.css", "gzip", "gzip", &side);
    assert!(
        r.body != named_gz,
        "precompressed = false served the sidecar"
    );
}

/// `[site.compression]` keys are inherited one by one from the top level.
#[test]
fn site_compression_keys_are_inherited_one_by_one() {
    let s = prepare(
        "inherit",
        1,
        r#"
[compression]
on_the_fly = ["gzip"]
min_size = 100

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.compression]
on_the_fly = ["zstd", "br"]

[[site]]
hosts = ["b.test"]
root = "$D/b"
"#,
    );
    let body = text(500, 41);
    let tiny = text(60, 42);
    for site in ["a", "b"] {
        put(&s.dir.join(site), "m.css", &body);
        put(&s.dir.join(site), "t.css", &tiny);
    }
    s.file("m.css", &body);
    let s = start(s);
    // a.test: its own codings, the inherited min_size. gzip is asked for first, then zstd is
    // polled until made (one worker, one queue): a gzip job would have run by then.
    let r = fetch_host(&s, "GET", "a.test", "/m.css", &[&ae("gzip")]);
    assert_identity("a.test gzip (not configured there)", &r, &body);
    poll_encoded_host(&s, "a.test", "/m.css", "zstd", "zstd", &body);
    poll_encoded_host(&s, "a.test", "/m.css", "br", "br", &body);
    let r = fetch_host(&s, "GET", "a.test", "/m.css", &[&ae("gzip")]);
    assert_identity("a.test gzip, later", &r, &body);
    // b.test and the top level: gzip only.
    for host in ["b.test", "localhost"] {
        let r = fetch_host(&s, "GET", host, "/m.css", &[&ae("br")]);
        assert_identity(&format!("{host} br (not configured)"), &r, &body);
        poll_encoded_host(&s, host, "/m.css", "gzip", "gzip", &body);
        let r = fetch_host(&s, "GET", host, "/m.css", &[&ae("br")]);
        assert_identity(&format!("{host} br, later"), &r, &body);
    }
    for host in ["a.test", "b.test"] {
        let r = fetch_host(&s, "GET", host, "/t.css", &[&ae("gzip, br, zstd")]);
        assert_identity(&format!("{host} below min_size"), &r, &tiny);
        assert!(!varies(&r), "{host} below min_size: {}", short(&r));
    }
}

/// What is made on the fly for a browser's Accept-Encoding is the coding it will be
/// served: the server's first preference among the best q, not just any acceptable one.
#[test]
fn on_the_fly_makes_the_preferred_coding() {
    let s = prepare(
        "otf-prefer",
        1,
        r#"
[[site]]
hosts = ["g.test"]
root = "$D/g"

[site.compression]
prefer = ["gzip", "br", "zstd"]
"#,
    );
    let body = text(64 * 1024, 50);
    s.file("p.css", &body);
    s.file("q.css", &body);
    put(&s.dir.join("g"), "p.css", &body);
    let s = start(s);
    let browser = "gzip, deflate, br, zstd";
    poll_encoded_host(&s, "localhost", "/p.css", browser, "br", &body);
    poll_encoded_host(&s, "g.test", "/p.css", browser, "gzip", &body);
    // A higher q for a later preference: that one is made.
    poll_encoded_host(
        &s,
        "localhost",
        "/q.css",
        "gzip;q=1, br;q=0.5, zstd;q=0.5",
        "gzip",
        &body,
    );
}

// ---------------------------------------------------------------------------------------
// changes, the cache directory, crashes
// ---------------------------------------------------------------------------------------

/// Rewrites the file in place several times; from the moment each write returns, every
/// answer (identity or decoded) is the new content.
fn never_stale(s: &Srvd, rel: &str, versions: &[(Vec<u8>, u64)]) {
    use std::os::unix::fs::MetadataExt;
    let target = format!("/{rel}");
    let path = s.root.join(rel);
    let mut last_ctime = None;
    for (i, (content, mtime)) in versions.iter().enumerate() {
        // Until the ctime differs from the previous version's (a coarse clock could give
        // two quick writes the same one, and then nothing could tell them apart).
        wait_for("a new ctime", || {
            std::fs::write(&path, content).unwrap();
            set_mtime(&path, *mtime);
            let m = std::fs::metadata(&path).unwrap();
            let ctime = (m.ctime(), m.ctime_nsec());
            (last_ctime != Some(ctime)).then(|| last_ctime = Some(ctime))
        });
        for coding in CODINGS {
            let what = format!("version {i} {coding}");
            wait_for(&format!("{what} to be encoded"), || {
                let r = get(s, &target, &[&ae(coding)]);
                check_answer(&what, &r, coding, content).then_some(())
            });
        }
    }
}

#[test]
fn a_changed_file_never_serves_a_stale_variant() {
    let s = server("stale-memory", 1, "");
    // Same length every time; the last one keeps the previous mtime (only ctime differs).
    let len = 64 * 1024;
    never_stale(
        &s,
        "c.js",
        &[
            (text(len, 43), T),
            (text(len, 44), T + 10),
            (text(len, 45), T + 10),
        ],
    );
}

#[test]
fn a_changed_file_never_serves_a_stale_variant_from_the_cache_dir() {
    let s = server("stale-disk", 2, "[compression]\ncache_dir = \"$D/zcache\"");
    let len = 64 * 1024;
    never_stale(
        &s,
        "c.js",
        &[
            (text(len, 46), T),
            (text(len, 47), T + 10),
            (text(len, 48), T + 10),
        ],
    );
    // Replaced by rename (a new inode) with the first version's exact bytes and mtime.
    let first = text(len, 46);
    let tmp = s.root.join("c.js.tmp");
    std::fs::write(&tmp, &first).unwrap();
    set_mtime(&tmp, T);
    std::fs::rename(&tmp, s.root.join("c.js")).unwrap();
    for coding in CODINGS {
        for _ in 0..4 {
            let r = get(&s, "/c.js", &[&ae(coding)]);
            check_answer("renamed back", &r, coding, &first);
        }
    }
}

/// Variants written to `cache_dir` by one worker are served by the next generation (after
/// SIGHUP) and by a respawned worker (after SIGKILL) on their first request; leftover
/// temporary files in the directory are never served.
#[test]
fn the_cache_dir_survives_a_reload_and_a_worker_crash() {
    let mut s = server(
        "cache-dir",
        1,
        "pid_file = \"srvd.pid\"\n[compression]\ncache_dir = \"zcache/variants\"",
    );
    let dir = s.dir.join("zcache/variants");
    let meta = std::fs::metadata(&dir).expect("cache_dir created");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "cache_dir mode");
    let original = text(64 * 1024, 49);
    s.file("c.js", &original);
    let full = poll_encoded(&s, "/c.js", "br", &original);
    let stored = wait_for("the variant in cache_dir", || {
        files_below(&dir)
            .into_iter()
            .find(|(_, b)| *b == full.body)
            .map(|(p, _)| p)
    });
    let first_request = |what: &str| {
        let r = get(&s, "/c.js", &[&ae("br")]);
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(
            ce(&r),
            Some("br"),
            "{what}: not served from cache_dir: {}",
            short(&r)
        );
        assert_eq!(decode("br", &r.body).unwrap(), original, "{what}");
        assert_eq!(etag(&r), etag(&full), "{what}");
    };

    // A new generation.
    let old = s.workers();
    assert_eq!(reload(&s), "ok");
    wait_new_workers(&s, &old);
    first_request("after a reload");

    // A crashed worker's replacement.
    let victim = s.workers()[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_new_workers(&s, &[victim]);
    first_request("after a worker crash");

    // Torn leftovers: the variant is gone, garbage lies under temporary-looking names.
    let name = stored.file_name().unwrap().to_str().unwrap().to_owned();
    let parent = stored.parent().unwrap().to_path_buf();
    std::fs::remove_file(&stored).unwrap();
    let torn = &full.body[..full.body.len() / 2];
    let garbage = [
        format!("{name}.tmp"),
        format!(".{name}.tmp"),
        format!(".{name}"),
        format!("{name}.part"),
        format!("{name}~"),
        format!("tmp.{name}"),
        format!(".tmp.{name}"),
        format!("{name}.{victim}"),
        format!("{name}.tmp.{victim}"),
    ];
    for g in &garbage {
        std::fs::write(parent.join(g), torn).unwrap();
    }
    let victim = s.workers()[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_new_workers(&s, &[victim]);
    let r = poll_encoded(&s, "/c.js", "br", &original);
    // The variant is written again, whole.
    wait_for("the variant to be written again", || {
        let b = std::fs::read(&stored).ok()?;
        (b == r.body || decode("br", &b).ok()? == original).then_some(())
    });
    s.stop_expecting_log_line("exited on signal");
}

// ---------------------------------------------------------------------------------------
// config errors (`srvd --check`)
// ---------------------------------------------------------------------------------------

/// Asserts `--check`'s output has an error at `token` (inside the config line holding
/// `context`) that mentions each of `words`.
fn assert_error_at(s: &Srvd, run: &CliRun, context: &str, token: &str, words: &[&str]) {
    let (line, col) = position_in(s, context, token);
    let found = run
        .stderr
        .lines()
        .find(|l| positioned(l) == Some((line, col)))
        .unwrap_or_else(|| {
            panic!(
                "no error at srvd.toml:{line}:{col} (for {token:?} in {context:?}):\n{}",
                run.stderr
            )
        });
    for w in words {
        assert!(found.contains(w), "{found:?} does not mention {w:?}");
    }
}

#[test]
fn bad_compression_settings_are_config_errors_with_file_line_col() {
    let s = prepare(
        "cfg-bad",
        1,
        r#"
[compression]
on_the_fly = ["br", "lzma"]
prefer = ["gzip", "deflate"]
levels = { gzip = 42, br = 3, zstd = 0 }
min_size = "12 parsecs"
max_size = -5
cache_size = "lots"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.compression]
levels = { br = 12, snappy = 1 }
"#,
    );
    put(&s.dir.join("a"), "index.html", "A\n");
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_error_at(&s, &run, "\"lzma\"", "\"lzma\"", &["lzma", "on_the_fly"]);
    assert_error_at(
        &s,
        &run,
        "\"deflate\"",
        "\"deflate\"",
        &["deflate", "prefer"],
    );
    assert_error_at(&s, &run, "gzip = 42", "42", &["42", "gzip"]);
    assert_error_at(&s, &run, "zstd = 0", "0", &["zstd"]);
    assert_error_at(
        &s,
        &run,
        "\"12 parsecs\"",
        "\"12 parsecs\"",
        &["min_size", "parsecs"],
    );
    assert_error_at(&s, &run, "max_size = -5", "-5", &["max_size", "-5"]);
    assert_error_at(&s, &run, "\"lots\"", "\"lots\"", &["cache_size", "lots"]);
    assert_error_at(&s, &run, "br = 12,", "12", &["12", "br"]);
    assert_error_at(&s, &run, "snappy", "snappy", &["snappy"]);
    // Nothing blamed on the good value (br = 3) of that line.
    let levels = line_of(&s, "levels = { gzip");
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| positioned(l).is_some_and(|(n, _)| n == levels))
            .count(),
        2,
        "only gzip = 42 and zstd = 0 on line {levels}:\n{}",
        run.stderr
    );
    // The server refuses to start with it too.
    let start = run_cli(&s.dir, &["--config", "srvd.toml"]);
    assert_eq!(start.code, Some(1), "{start:?}");
    assert!(start.stderr.contains("lzma"), "{}", start.stderr);
}

#[test]
fn min_size_above_max_size_is_a_config_error_with_file_line_col() {
    let s = prepare(
        "cfg-minmax",
        1,
        r#"
[compression]
min_size = "2MiB"
max_size = "1MiB"
"#,
    );
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines = [line_of(&s, "min_size"), line_of(&s, "max_size")];
    let err = run
        .stderr
        .lines()
        .find(|l| positioned(l).is_some_and(|(n, _)| lines.contains(&n)))
        .unwrap_or_else(|| {
            panic!(
                "no srvd.toml:LINE:COL error at min_size or max_size:\n{}",
                run.stderr
            )
        });
    assert!(
        err.contains("min_size") && err.contains("max_size"),
        "{err}"
    );

    // Inherited: the site's min_size above the top level's max_size.
    let s = prepare(
        "cfg-minmax-site",
        1,
        r#"
[compression]
min_size = 10
max_size = 1000

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.compression]
min_size = 2000
"#,
    );
    put(&s.dir.join("a"), "index.html", "A\n");
    let run = check(&s);
    assert_eq!(run.code, Some(1), "{run:?}");
    let line = line_of(&s, "min_size = 2000");
    assert!(
        run.stderr
            .lines()
            .any(|l| positioned(l).is_some_and(|(n, _)| n == line)),
        "no error at the site's min_size (line {line}):\n{}",
        run.stderr
    );
}

#[test]
fn a_full_compression_table_passes_check() {
    let s = prepare(
        "cfg-good",
        1,
        r#"
[compression]
precompressed = true
on_the_fly = ["br", "zstd", "gzip"]
prefer = ["br", "zstd", "gzip"]
min_size = "1KiB"
max_size = "16MiB"
types = ["application/x-srvd-foo"]
levels = { br = 9, zstd = 19, gzip = 9 }
cache_dir = "$D/zc"
cache_size = "32MiB"
cache_dir_size = "1GiB"

[[site]]
hosts = ["a.test"]
root = "$D/a"

[site.compression]
on_the_fly = []
min_size = 1024
max_size = "10MB"
"#,
    );
    put(&s.dir.join("a"), "index.html", "A\n");
    let run = check(&s);
    assert_eq!(run.code, Some(0), "{run:?}");
}
