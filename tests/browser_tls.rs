//! A real browser over HTTPS: headless Chromium loads a page with a stylesheet, a script and
//! a `fetch()` of a JSON file from srvd's TLS listener. The certificate is a leaf issued by a
//! CA the test makes with rcgen (no key is committed); Chromium is told to accept it with
//! `--ignore-certificate-errors-spki-list`, the base64 SHA-256 of the leaf's
//! SubjectPublicKeyInfo, which the test computes. The page's script writes into the DOM
//! what it saw (the computed colour set by the CSS, the JSON, `location.protocol`, the URL of
//! every subresource), and `--dump-dom` hands the DOM back.
//!
//! srvd listens only on its TLS port here, so every request in the access log came over TLS.
//! Chromium is a Debian package that `.ci/run` installs; elsewhere the test is skipped with a
//! message unless `SRVD_REQUIRE_CHROMIUM=1` makes a missing browser a failure.

mod common;

use std::time::Instant;

use common::browser::{self, chromium};
use common::certs::Ca;
use common::*;
use sha2::{Digest, Sha256};

/// Standard base64 with padding (RFC 4648 §4), as Chromium's SPKI list wants it.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), want);
    }
}

const INDEX: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>srvd over TLS</title>
  <link rel="stylesheet" href="/style.css">
  <script src="/app.js" defer></script>
</head>
<body>
  <h1 id="title">srvd over https</h1>
  <p id="css">css: not checked</p>
  <p id="data">data: not fetched</p>
  <p id="resources">resources: none</p>
  <p id="status">JavaScript did not run</p>
</body>
</html>
"#;

/// The colour is the proof the stylesheet was applied.
const CSS: &str = "#title { color: rgb(12, 34, 56); }\nbody { margin: 2em; }\n";

const JS: &str = r#"(function () {
  "use strict";
  var title = document.getElementById("title");
  document.getElementById("css").textContent =
    "css: " + window.getComputedStyle(title).color;
  fetch("/data.json")
    .then(function (r) { return r.json(); })
    .then(function (j) {
      document.getElementById("data").textContent =
        "data: " + j.word + " via " + location.protocol;
      var names = performance.getEntriesByType("resource").map(function (e) {
        return e.name;
      });
      document.getElementById("resources").textContent = "resources: " + names.join(" ");
      document.getElementById("status").textContent = "JavaScript ran";
    })
    .catch(function (e) {
      document.getElementById("status").textContent = "fetch failed: " + e;
    });
})();
"#;

#[test]
fn chromium_loads_a_page_with_css_js_and_fetch_over_https() {
    let Some(browser) = chromium() else {
        if std::env::var_os("SRVD_REQUIRE_CHROMIUM").is_some() {
            panic!("SRVD_REQUIRE_CHROMIUM is set but no chromium binary was found");
        }
        eprintln!("skipped: no chromium on this machine (.ci/run installs it)");
        return;
    };

    // The CA and the leaf (localhost), and the SPKI pin Chromium is given.
    let mut s = Srvd::prepare_with_workers("browser-tls", "", 1);
    let ca = Ca::named("srvd browser test CA");
    let (chain, leaf_key) = ca.leaf(&["localhost", "127.0.0.1"], 30);
    std::fs::write(s.dir.join("leaf.pem"), chain).unwrap();
    std::fs::write(s.dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
    let spki = base64(&Sha256::digest(leaf_key.public_key_der()));

    // Only a TLS listener: whatever reaches srvd came over TLS.
    let tls_port = s.port;
    std::fs::write(
        &s.config_path,
        format!(
            "listen = [\"127.0.0.1:{tls_port} tls\"]\nworkers = 1\nroot = \"root\"\n\
             tls = {{ cert = \"leaf.pem\", key = \"leaf.key\" }}\nhsts = \"max-age=60\"\n"
        ),
    )
    .unwrap();
    s.workers_expected = 1;
    s.file("index.html", INDEX);
    s.file("style.css", CSS);
    s.file("app.js", JS);
    s.file("data.json", "{\"word\": \"encrypted\"}\n");
    let s = s.start_prepared();

    let profile = s.dir.join("chromium-profile");
    let url = format!("https://localhost:{tls_port}/");
    let started = Instant::now();
    let (status, dom, stderr) = browser::dump_dom(
        browser,
        &profile,
        &url,
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    eprintln!("chromium ran for {:?}", started.elapsed());
    assert!(status.success(), "chromium failed: {status:?}\n{stderr}");
    let tail = &stderr[stderr.len().saturating_sub(2000)..];
    assert!(
        dom.contains("srvd over https"),
        "the page did not load (certificate refused?):\n{dom}\n--- stderr ---\n{tail}"
    );
    assert!(
        dom.contains("JavaScript ran"),
        "app.js did not run or its fetch failed:\n{dom}\n--- stderr ---\n{tail}"
    );
    assert!(
        dom.contains("css: rgb(12, 34, 56)"),
        "style.css was not applied:\n{dom}"
    );
    assert!(
        dom.contains("data: encrypted via https:"),
        "data.json did not arrive over https:\n{dom}"
    );
    for path in ["/style.css", "/app.js", "/data.json"] {
        assert!(
            dom.contains(&format!("https://localhost:{tls_port}{path}")),
            "{path} was not loaded over https:\n{dom}"
        );
    }

    // srvd's side: Chromium's requests, all on the TLS listener (the only one).
    wait_for("chromium's requests in the access log", || {
        let log = s.access_log();
        let has = |p: &str| {
            log.lines().any(|l| {
                l.contains("HeadlessChrome") && l.contains(&format!("\"GET {p} HTTP/1.1\" 200 "))
            })
        };
        ["/", "/style.css", "/app.js", "/data.json"]
            .into_iter()
            .all(has)
            .then_some(())
    });
}
