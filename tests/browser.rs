//! A real browser against the real binary: headless Chromium loads the shipped demo site
//! (`html/`) and gets its CSS and JavaScript compressed. Chromium sends its own
//! Accept-Encoding (`gzip, deflate, br, zstd`); the access log's byte counts of its
//! requests show what went over the wire.
//!
//! Chromium is a Debian package that `.ci/run` installs; elsewhere the test is skipped
//! with a message unless `SRVD_REQUIRE_CHROMIUM=1` makes a missing browser a failure.

mod common;

use common::browser::{self, chromium};
use common::*;

/// Asks srvd for `path` like a browser until the encoded variant is there.
fn warm(s: &Srvd, path: &str) {
    wait_for(&format!("an encoded {path}"), || {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nConnection: close\r\n\r\n"
        );
        let r = Response::parse(&s.raw(req.as_bytes()))?;
        r.header("content-encoding").map(|_| ())
    });
}

#[test]
fn chromium_loads_the_demo_site_with_compressed_css_and_js() {
    let Some(browser) = chromium() else {
        if std::env::var_os("SRVD_REQUIRE_CHROMIUM").is_some() {
            panic!("SRVD_REQUIRE_CHROMIUM is set but no chromium binary was found");
        }
        eprintln!("skipped: no chromium on this machine (.ci/run installs it)");
        return;
    };
    let s = Srvd::prepare_with_workers("browser", "", 1);
    let html = concat!(env!("CARGO_MANIFEST_DIR"), "/html");
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(html).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        let name = entry.file_name().into_string().unwrap();
        sizes.push((name.clone(), bytes.len()));
        std::fs::write(s.root.join(&name), bytes).unwrap();
    }
    let size_of = |name: &str| sizes.iter().find(|(n, _)| n == name).unwrap().1;
    let s = s.start_prepared();
    // The first request of a file is answered as it is while the worker encodes it.
    warm(&s, "/app.js");
    warm(&s, "/style.css");

    let profile = s.dir.join("chromium-profile");
    let url = format!("http://127.0.0.1:{}/", s.port);
    let (status, dom, _) = browser::dump_dom(browser, &profile, &url, &[]);
    assert!(status.success(), "chromium failed: {status:?}");
    assert!(
        dom.contains("srvd is serving"),
        "the page did not load:\n{dom}"
    );
    assert!(
        dom.contains("JavaScript ran"),
        "app.js did not run (was it served and decoded?):\n{dom}"
    );

    // The access log (flushed within a second) has Chromium's requests with the body
    // bytes sent: less than the files' sizes means they went compressed.
    let lines = wait_for("chromium's requests in the access log", || {
        let log = s.access_log();
        let mine: Vec<String> = log
            .lines()
            .filter(|l| l.contains("HeadlessChrome"))
            .map(str::to_owned)
            .collect();
        let has = |p: &str| {
            mine.iter()
                .any(|l| l.contains(&format!("\"GET {p} HTTP/1.1\" 200 ")))
        };
        (has("/") && has("/app.js") && has("/style.css")).then_some(mine)
    });
    for (path, file) in [("/app.js", "app.js"), ("/style.css", "style.css")] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"GET {path} HTTP/1.1\" 200 ")))
            .unwrap();
        let after = line
            .split(&format!("\"GET {path} HTTP/1.1\" 200 "))
            .nth(1)
            .unwrap();
        let bytes: usize = after.split(' ').next().unwrap().parse().unwrap();
        assert!(
            bytes < size_of(file) * 3 / 4,
            "{path} went as {bytes} bytes of {}: not compressed\n{line}",
            size_of(file)
        );
    }
}
