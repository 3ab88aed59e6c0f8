//! The Prometheus text exposition format, version 0.0.4: [`render`] writes a snapshot for
//! `/metrics`, [`parse`] reads one back (for `srvd status`). Pure, no I/O.
//!
//! ```text
//! # HELP srvd_requests_total Requests answered, by site and status class.
//! # TYPE srvd_requests_total counter
//! srvd_requests_total{site="default",class="2xx"} 12
//! ```
//!
//! Every series with a fixed label set is written even at 0 (a counter that appears only
//! once it moves defeats `rate()` and alerting on absence); per-site series exist for
//! every label the master ever assigned.

use std::fmt::Write;

use super::labels::Labels;
use super::{ConnClass, Snapshot, Timeout, ACCEPTED, CACHE_HITS, CACHE_MISSES, CLASSES};
use super::{HANDLED, SENT_BYTES};

/// The Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes every metric of `s` (site labels from `labels`).
pub fn render(s: &Snapshot, labels: &Labels) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "srvd_requests_total",
        "counter",
        "Requests answered, by site and status class (a 101 counts as 2xx).",
    );
    for (label, name) in labels.all() {
        for (class, class_name) in CLASSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "srvd_requests_total{{site=\"{}\",class=\"{class_name}\"}} {}",
                escape(name),
                s.requests(label, class)
            );
        }
    }
    single(
        &mut out,
        "srvd_sent_bytes_total",
        "counter",
        "Bytes written to client connections (response heads and bodies).",
        s.figures[SENT_BYTES],
    );
    family(
        &mut out,
        "srvd_connections",
        "gauge",
        "Client connections open, by state (each worker publishes once a second).",
    );
    for class in ConnClass::ALL {
        let _ = writeln!(
            out,
            "srvd_connections{{state=\"{}\"}} {}",
            class.name(),
            s.connections(class)
        );
    }
    single(
        &mut out,
        "srvd_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        s.figures[ACCEPTED],
    );
    single(
        &mut out,
        "srvd_connections_handled_total",
        "counter",
        "Client connections that ended (closed by srvd or the client).",
        s.figures[HANDLED],
    );
    single(
        &mut out,
        "srvd_cache_hits_total",
        "counter",
        "Static requests answered from a worker's file cache.",
        s.figures[CACHE_HITS],
    );
    single(
        &mut out,
        "srvd_cache_misses_total",
        "counter",
        "Static requests whose path had to be looked up on disk.",
        s.figures[CACHE_MISSES],
    );
    family(
        &mut out,
        "srvd_timeouts_total",
        "counter",
        "Connections and proxied exchanges cut by a timeout, by what was awaited.",
    );
    for kind in Timeout::ALL {
        let _ = writeln!(
            out,
            "srvd_timeouts_total{{kind=\"{}\"}} {}",
            kind.name(),
            s.timeouts(kind)
        );
    }
    single(
        &mut out,
        "srvd_worker_restarts_total",
        "counter",
        "Workers that died unexpectedly and were replaced.",
        s.worker_restarts,
    );
    family(
        &mut out,
        "srvd_reloads_total",
        "counter",
        "Reloads by outcome (failed: rejected config or new workers that did not serve).",
    );
    let _ = writeln!(out, "srvd_reloads_total{{result=\"ok\"}} {}", s.reloads_ok);
    let _ = writeln!(
        out,
        "srvd_reloads_total{{result=\"failed\"}} {}",
        s.reloads_failed
    );
    single(
        &mut out,
        "srvd_generation",
        "gauge",
        "The generation of workers serving now (1 at start, one more per successful reload).",
        s.generation,
    );
    single(
        &mut out,
        "srvd_start_time_seconds",
        "gauge",
        "When the master started, in seconds since the Unix epoch.",
        s.start_time,
    );
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the format wants it: `\`, `"` and line feeds escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an exposition: every sample, in order. Comments and blank lines are skipped; any
/// other line that is not a well-formed sample is an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Some(s) => samples.push(s),
            None => return Err(format!("line {}: not a sample: {line:?}", n + 1)),
        }
    }
    Ok(samples)
}

/// `name{labels} value [timestamp]`, or `None`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let (value, after) = quoted(rest[eq + 1..].trim_start())?;
            labels.push((key.to_owned(), value));
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    // An optional timestamp (integer milliseconds), then nothing.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A double-quoted label value with its escapes undone, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                c @ ('\\' | '"') => value.push(c),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{request_index, USED};
    use super::*;

    #[test]
    fn renders_every_fixed_series_and_parses_back() {
        let mut labels = Labels::default();
        labels.assign(["default", "a.example"]);
        let mut s = Snapshot::empty();
        s.figures[request_index(1, 404)] = 3;
        s.figures[SENT_BYTES] = 12345;
        s.reloads_failed = 2;
        s.generation = 4;
        s.start_time = 1_700_000_000;
        let text = render(&s, &labels);
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || parse_sample(line).is_some(),
                "{line:?}"
            );
        }
        let samples = parse(&text).unwrap();
        let find = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|x| x.name == name && label.is_none_or(|(k, v)| x.label(k) == Some(v)))
                .map(|x| x.value)
        };
        // 2 sites × 4 classes, all present, the one that moved with its count.
        assert_eq!(
            samples
                .iter()
                .filter(|x| x.name == "srvd_requests_total")
                .count(),
            8
        );
        let a404 = samples
            .iter()
            .find(|x| x.label("site") == Some("a.example") && x.label("class") == Some("4xx"))
            .unwrap();
        assert_eq!(a404.value, 3.0);
        assert_eq!(find("srvd_sent_bytes_total", None), Some(12345.0));
        assert_eq!(
            find("srvd_reloads_total", Some(("result", "failed"))),
            Some(2.0)
        );
        assert_eq!(
            find("srvd_reloads_total", Some(("result", "ok"))),
            Some(0.0)
        );
        assert_eq!(find("srvd_generation", None), Some(4.0));
        assert_eq!(find("srvd_start_time_seconds", None), Some(1.7e9));
        for kind in Timeout::ALL {
            assert_eq!(
                find("srvd_timeouts_total", Some(("kind", kind.name()))),
                Some(0.0)
            );
        }
        for state in ["reading", "writing", "idle"] {
            assert_eq!(find("srvd_connections", Some(("state", state))), Some(0.0));
        }
        assert!(text.contains("# TYPE srvd_requests_total counter\n"));
        assert!(text.contains("# TYPE srvd_connections gauge\n"));
        assert_eq!(s.figures.len(), USED);
    }

    #[test]
    fn label_values_are_escaped_both_ways() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        let line = format!("m{{site=\"{}\"}} 1", escape("we\"ird\\\n"));
        let s = parse_sample(&line).unwrap();
        assert_eq!(s.label("site"), Some("we\"ird\\\n"));
    }

    #[test]
    fn parses_samples_and_rejects_junk() {
        let s = parse_sample("up 1").unwrap();
        assert_eq!((s.name.as_str(), s.value, s.labels.len()), ("up", 1.0, 0));
        let s = parse_sample("x_total{a=\"1\", b=\"two\",} 2.5 1700000000000").unwrap();
        assert_eq!(s.label("a"), Some("1"));
        assert_eq!(s.label("b"), Some("two"));
        assert_eq!(s.value, 2.5);
        assert_eq!(parse_sample("x +Inf").unwrap().value, f64::INFINITY);
        for bad in [
            "",
            "1x 2",
            "x",
            "x{",
            "x{a=1} 2",
            "x{a=\"1\" 2",
            "x{a=\"1\"}2",
            "x{a=\"\\q\"} 2",
            "x nan-ish",
            "x 1 2 3",
            "x{=\"1\"} 2",
        ] {
            assert!(parse_sample(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse("# HELP x y\n\nx 1\nbroken\n").unwrap_err(),
            "line 4: not a sample: \"broken\""
        );
    }
}
