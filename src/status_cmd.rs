//! `srvd status`: the running server's figures as a short table for a terminal.
//!
//! It reads the config for `[admin] listen`, GETs `/metrics` there (TCP or unix socket,
//! a few seconds at most) and prints what the exposition says: totals, connections by
//! state, cache, timeouts, restarts, reloads, generation and uptime, then one row per
//! site. It talks to the same endpoint a Prometheus scraper does, so it shows exactly
//! what is exported, and it needs no pid file or signal.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::admin::AdminListen;
use crate::config::Config;
use crate::metrics::text::{self, Sample};
use crate::metrics::{Timeout, CLASSES};

/// Longest the whole exchange with the admin listener may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the command; `Err` carries the message to print.
pub fn run(config_path: &Path) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let addr = config.admin.ok_or_else(|| {
        format!(
            "{}: no [admin] listener is configured; add\n\n    [admin]\n    listen = \"127.0.0.1:9180\"\n\nto the config and reload to use srvd status",
            config_path.display()
        )
    })?;
    let body = fetch(&addr).map_err(|e| format!("cannot read {addr}/metrics: {e}"))?;
    let samples = text::parse(&body).map_err(|e| format!("{addr}/metrics: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(format_status(&addr.to_string(), &samples, now))
}

/// GET /metrics; the body of a 200.
fn fetch(addr: &AdminListen) -> Result<String, String> {
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    match addr {
        AdminListen::Tcp(a) => {
            let mut s = std::net::TcpStream::connect_timeout(a, TIMEOUT).map_err(io)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
            s.write_all(request).map_err(io)?;
            s.read_to_end(&mut response).map_err(io)?;
        }
        AdminListen::Unix(path) => {
            let mut s = UnixStream::connect(path).map_err(io)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
            s.write_all(request).map_err(io)?;
            s.read_to_end(&mut response).map_err(io)?;
        }
    }
    let text = String::from_utf8(response).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no complete response".to_owned())?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(format!("answered {status:?}"));
    }
    Ok(body.to_owned())
}

/// The table for the samples of one scrape (`now`: seconds since the epoch, for uptime).
pub fn format_status(addr: &str, samples: &[Sample], now: u64) -> String {
    let value = |name: &str, label: Option<(&str, &str)>| -> u64 {
        samples
            .iter()
            .filter(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value as u64)
            .sum()
    };
    // Sites in the order the exposition lists them (label index order).
    let mut sites: Vec<&str> = Vec::new();
    for s in samples.iter().filter(|s| s.name == "srvd_requests_total") {
        if let Some(site) = s.label("site").filter(|site| !sites.contains(site)) {
            sites.push(site);
        }
    }
    let requests = |site: Option<&str>, class: &str| -> u64 {
        samples
            .iter()
            .filter(|s| {
                s.name == "srvd_requests_total"
                    && s.label("class") == Some(class)
                    && site.is_none_or(|site| s.label("site") == Some(site))
            })
            .map(|s| s.value as u64)
            .sum()
    };
    let total: u64 = CLASSES.iter().map(|c| requests(None, c)).sum();
    let start = value("srvd_start_time_seconds", None);
    let sent = value("srvd_sent_bytes_total", None);
    let mut out = String::new();
    let mut row = |name: &str, text: String| out.push_str(&format!("{name:<17}{text}\n"));
    row("admin", addr.to_owned());
    row("generation", value("srvd_generation", None).to_string());
    row("uptime", duration(now.saturating_sub(start)));
    row(
        "requests",
        format!(
            "{total}  ({})",
            CLASSES
                .iter()
                .map(|c| format!("{c} {}", requests(None, c)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    row("sent", format!("{sent} bytes ({})", size(sent)));
    let state = |s| value("srvd_connections", Some(("state", s)));
    row(
        "connections",
        format!(
            "reading {}, writing {}, idle {}  (accepted {}, handled {})",
            state("reading"),
            state("writing"),
            state("idle"),
            value("srvd_connections_accepted_total", None),
            value("srvd_connections_handled_total", None)
        ),
    );
    row(
        "cache",
        format!(
            "hits {}, misses {}",
            value("srvd_cache_hits_total", None),
            value("srvd_cache_misses_total", None)
        ),
    );
    row(
        "timeouts",
        Timeout::ALL
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    k.name(),
                    value("srvd_timeouts_total", Some(("kind", k.name())))
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    row(
        "worker restarts",
        value("srvd_worker_restarts_total", None).to_string(),
    );
    row(
        "reloads",
        format!(
            "ok {}, failed {}",
            value("srvd_reloads_total", Some(("result", "ok"))),
            value("srvd_reloads_total", Some(("result", "failed")))
        ),
    );
    let width = sites.iter().map(|s| s.len()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "\n{:<width$}  {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "site", "requests", CLASSES[0], CLASSES[1], CLASSES[2], CLASSES[3]
    ));
    for site in sites {
        let by_class: Vec<u64> = CLASSES.iter().map(|c| requests(Some(site), c)).collect();
        out.push_str(&format!(
            "{site:<width$}  {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            by_class.iter().sum::<u64>(),
            by_class[0],
            by_class[1],
            by_class[2],
            by_class[3]
        ));
    }
    out.truncate(out.trim_end().len());
    out
}

/// `3d 4h 5m 6s`, leading zero units left out.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// Bytes in binary units, one decimal.
fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::labels::Labels;
    use crate::metrics::{request_index, Snapshot, SENT_BYTES};

    #[test]
    fn formats_a_scrape() {
        let mut labels = Labels::default();
        labels.assign(["default", "docs.example.org"]);
        let mut s = Snapshot::empty();
        s.figures[request_index(0, 200)] = 7;
        s.figures[request_index(1, 301)] = 2;
        s.figures[request_index(1, 404)] = 1;
        s.figures[SENT_BYTES] = 3 * 1024 * 1024;
        s.generation = 3;
        s.start_time = 1000;
        s.reloads_ok = 2;
        let samples = text::parse(&text::render(&s, &labels)).unwrap();
        let out = format_status("127.0.0.1:9180", &samples, 1000 + 3725);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "admin            127.0.0.1:9180");
        assert_eq!(lines[1], "generation       3");
        assert_eq!(lines[2], "uptime           1h 2m 5s");
        assert_eq!(
            lines[3],
            "requests         10  (2xx 7, 3xx 2, 4xx 1, 5xx 0)"
        );
        assert_eq!(lines[4], "sent             3145728 bytes (3.0 MiB)");
        assert!(lines[9].ends_with("ok 2, failed 0"), "{out}");
        assert!(out.contains(
            "\nsite                requests        2xx        3xx        4xx        5xx\n"
        ));
        assert!(out.contains(
            "\ndefault                    7          7          0          0          0"
        ));
        assert!(out
            .ends_with("docs.example.org           3          0          2          1          0"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m 5s");
        assert_eq!(duration(90061), "1d 1h 1m 1s");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
