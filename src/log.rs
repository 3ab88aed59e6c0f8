//! The error log (stderr, one line per event) and the access log (combined format).
//!
//! Error-log lines look like `2026-11-22T10:00:00Z [notice] master 1234: message`. The level
//! follows whose fault it is: a client's garbage is `debug` (not printed), an unexpected
//! I/O error is `error`, a worker killed by a signal is `alert`.
//!
//! The access log is buffered per worker and flushed at least once a second, in whole lines
//! and writes of at most `PIPE_BUF` bytes, so lines of several workers never interleave even
//! when the log is a pipe.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::site::LogFormat;
use crate::config::AccessLog as AccessLogConfig;

/// Largest single write to the access log: atomic on pipes (POSIX PIPE_BUF).
const PIPE_BUF: usize = 4096;
/// Flush the access log once this much is buffered.
const FLUSH_AT: usize = 32 * 1024;

static ROLE: AtomicU8 = AtomicU8::new(0);

/// Names this process in error-log lines: "master" or "worker".
pub fn set_worker_role() {
    ROLE.store(1, Ordering::Relaxed);
}

fn write_line(level: &str, args: fmt::Arguments) {
    let role = if ROLE.load(Ordering::Relaxed) == 1 {
        "worker"
    } else {
        "master"
    };
    let (y, mo, d, h, mi, s) = civil(now_secs());
    let line = format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z [{level}] {role} {}: {args}\n",
        std::process::id()
    );
    // One write per line so concurrent processes do not interleave inside a line.
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Something operators must see at once (a worker died on a signal).
pub fn alert(args: fmt::Arguments) {
    write_line("alert", args);
}
/// An unexpected failure.
pub fn error(args: fmt::Arguments) {
    write_line("error", args);
}
/// Something an operator may want to know; not a failure.
pub fn warn(args: fmt::Arguments) {
    write_line("warn", args);
}
/// Normal but significant: start, reload, stop.
pub fn notice(args: fmt::Arguments) {
    write_line("notice", args);
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch → (year, month, day, hour, minute, second), UTC.
/// Howard Hinnant's `civil_from_days`.
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The start of an access-log line: what is known when the request head is parsed.
pub struct LineStart<'a> {
    pub format: LogFormat,
    pub ip: IpAddr,
    /// Unix seconds.
    pub now: u64,
    pub method: &'a str,
    pub target: &'a str,
    pub minor: u8,
    /// The normalised host (port kept when it is not the listener's); empty if none.
    pub host: &'a [u8],
    /// The site's name (its first host, or "default").
    pub site: &'a str,
}

/// The end of an access-log line: what is known once the response is sent.
pub struct LineEnd<'a> {
    pub format: LogFormat,
    pub status: u16,
    pub bytes: u64,
    pub referer: &'a [u8],
    pub agent: &'a [u8],
    pub duration_us: u64,
    /// For a proxied request (JSON only): the upstream as configured, its status (0 when
    /// it gave none), the time it took and the attempts made.
    pub upstream: Option<UpstreamLog<'a>>,
}

/// The upstream part of a proxied request's log line.
pub struct UpstreamLog<'a> {
    pub name: &'a str,
    pub status: u16,
    pub us: u64,
    pub tries: u8,
}

/// Where access-log lines go.
enum Sink {
    Off,
    Stdout,
    File { path: PathBuf, file: File },
}

/// A worker's access log: a buffer of whole lines and its destination.
pub struct AccessLog {
    sink: Sink,
    buf: Vec<u8>,
    /// `[22/Nov/2026:10:00:00 +0000]` for `time_secs`.
    time: String,
    time_secs: u64,
}

impl AccessLog {
    /// Opens the configured destination (files in append mode, created 0644).
    pub fn open(config: &AccessLogConfig) -> io::Result<AccessLog> {
        let sink = match config {
            AccessLogConfig::Off => Sink::Off,
            AccessLogConfig::Stdout => Sink::Stdout,
            AccessLogConfig::File(path) => Sink::File {
                file: open_append(path)?,
                path: path.clone(),
            },
        };
        Ok(AccessLog {
            sink,
            buf: Vec::new(),
            time: String::new(),
            time_secs: u64::MAX,
        })
    }

    /// Whether lines are recorded at all (lets callers skip building them).
    pub fn enabled(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// The fd to keep open across `become_worker`, if any.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.sink {
            Sink::File { file, .. } => Some(file.as_raw_fd()),
            _ => None,
        }
    }

    /// Starts a line: for `combined`, `ip - - [time] "request line" `; `vhost_combined`
    /// puts the host first; `json` opens the object with time, site, host, method and
    /// path. The rest comes from [`AccessLog::finish`].
    pub fn begin(&mut self, line: &mut Vec<u8>, start: &LineStart) {
        let now = start.now;
        line.clear();
        if start.format == LogFormat::Json {
            let (y, mo, d, h, mi, s) = civil(now);
            let _ = write!(
                line,
                "{{\"time\":\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z\",\"site\":"
            );
            json_string(line, start.site.as_bytes());
            line.extend_from_slice(b",\"host\":");
            json_string(line, start.host);
            let _ = write!(line, ",\"remote_addr\":\"{}\",\"method\":", start.ip);
            json_string(line, start.method.as_bytes());
            line.extend_from_slice(b",\"path\":");
            json_string(line, start.target.as_bytes());
            line.extend_from_slice(if start.minor == 0 {
                b",\"protocol\":\"HTTP/1.0\""
            } else {
                b",\"protocol\":\"HTTP/1.1\""
            });
            return;
        }
        if now != self.time_secs {
            let (y, mo, d, h, mi, s) = civil(now);
            self.time = format!(
                "[{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000]",
                MONTHS[(mo - 1) as usize]
            );
            self.time_secs = now;
        }
        if start.format == LogFormat::VhostCombined {
            escape(
                line,
                if start.host.is_empty() {
                    b"-"
                } else {
                    start.host
                },
            );
            line.push(b' ');
        }
        let _ = write!(line, "{} - - {} \"", start.ip, self.time);
        escape(line, start.method.as_bytes());
        line.push(b' ');
        escape(line, start.target.as_bytes());
        line.extend_from_slice(if start.minor == 0 {
            b" HTTP/1.0\" "
        } else {
            b" HTTP/1.1\" "
        });
    }

    /// Completes a begun line with status, bytes, referer and user agent (and, in JSON,
    /// the duration), and queues it.
    pub fn finish(&mut self, line: &[u8], end: &LineEnd) {
        self.buf.extend_from_slice(line);
        let mut n = itoa::Buffer::new();
        if end.format == LogFormat::Json {
            self.buf.extend_from_slice(b",\"status\":");
            self.buf.extend_from_slice(n.format(end.status).as_bytes());
            self.buf.extend_from_slice(b",\"bytes\":");
            self.buf.extend_from_slice(n.format(end.bytes).as_bytes());
            self.buf.extend_from_slice(b",\"duration_us\":");
            self.buf
                .extend_from_slice(n.format(end.duration_us).as_bytes());
            if let Some(up) = &end.upstream {
                self.buf.extend_from_slice(b",\"upstream\":");
                json_string(&mut self.buf, up.name.as_bytes());
                self.buf.extend_from_slice(b",\"upstream_status\":");
                self.buf.extend_from_slice(n.format(up.status).as_bytes());
                self.buf.extend_from_slice(b",\"upstream_us\":");
                self.buf.extend_from_slice(n.format(up.us).as_bytes());
                if up.tries > 1 {
                    self.buf.extend_from_slice(b",\"upstream_tries\":");
                    self.buf.extend_from_slice(n.format(up.tries).as_bytes());
                }
            }
            self.buf.extend_from_slice(b",\"referer\":");
            json_string(&mut self.buf, end.referer);
            self.buf.extend_from_slice(b",\"user_agent\":");
            json_string(&mut self.buf, end.agent);
            self.buf.extend_from_slice(b"}\n");
        } else {
            self.buf.extend_from_slice(n.format(end.status).as_bytes());
            self.buf.push(b' ');
            self.buf.extend_from_slice(n.format(end.bytes).as_bytes());
            self.buf.extend_from_slice(b" \"");
            let referer = end.referer;
            escape(
                &mut self.buf,
                if referer.is_empty() { b"-" } else { referer },
            );
            self.buf.extend_from_slice(b"\" \"");
            let agent = end.agent;
            escape(&mut self.buf, if agent.is_empty() { b"-" } else { agent });
            self.buf.extend_from_slice(b"\"\n");
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes out every buffered line, in chunks of whole lines no larger than PIPE_BUF.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut rest = &self.buf[..];
        while !rest.is_empty() {
            let mut n = rest.len().min(PIPE_BUF);
            if n < rest.len() {
                // Cut after the last newline within the chunk (a line longer than PIPE_BUF
                // goes out whole).
                n = rest[..n].iter().rposition(|&b| b == b'\n').map_or_else(
                    || {
                        rest.iter()
                            .position(|&b| b == b'\n')
                            .map_or(rest.len(), |i| i + 1)
                    },
                    |i| i + 1,
                );
            }
            let result = match &mut self.sink {
                Sink::Off => Ok(()),
                Sink::Stdout => io::stdout().lock().write_all(&rest[..n]),
                Sink::File { file, .. } => file.write_all(&rest[..n]),
            };
            if let Err(e) = result {
                error(format_args!("access log write failed: {e}"));
                break;
            }
            rest = &rest[n..];
        }
        self.buf.clear();
    }

    /// USR1: flush, then reopen the file by its path (logrotate has moved the old one).
    pub fn reopen(&mut self) {
        self.flush();
        if let Sink::File { path, file } = &mut self.sink {
            match open_append(path) {
                Ok(new) => *file = new,
                Err(e) => error(format_args!(
                    "cannot reopen access log \"{}\": {e}",
                    path.display()
                )),
            }
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Copies `bytes`, escaping `"`, `\` and anything unprintable as `\xHH` (as nginx does),
/// so a client cannot forge log lines.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(format!("\\x{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Writes `bytes` as a JSON string: quotes, backslash and control characters escaped,
/// bytes that are not UTF-8 as `\u00XX` (a client cannot break the object).
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(out, "\\u{b:04x}");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(784_111_777), (1994, 11, 6, 8, 49, 37));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn combined_line() {
        let mut log = AccessLog::open(&AccessLogConfig::Off).unwrap();
        let mut line = Vec::new();
        let mut start = LineStart {
            format: LogFormat::Combined,
            ip: "127.0.0.1".parse().unwrap(),
            now: 784_111_777,
            method: "GET",
            target: "/a\"b",
            minor: 1,
            host: b"example.com",
            site: "example.com",
        };
        let mut end = LineEnd {
            format: LogFormat::Combined,
            status: 200,
            bytes: 52,
            referer: b"",
            agent: b"curl/8.0",
            duration_us: 17,
            upstream: None,
        };
        log.begin(&mut line, &start);
        log.finish(&line, &end);
        assert_eq!(
            String::from_utf8(std::mem::take(&mut log.buf)).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.1\" 200 52 \"-\" \"curl/8.0\"\n"
        );
        start.format = LogFormat::VhostCombined;
        end.format = LogFormat::VhostCombined;
        log.begin(&mut line, &start);
        log.finish(&line, &end);
        assert_eq!(
            String::from_utf8(std::mem::take(&mut log.buf)).unwrap(),
            "example.com 127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.1\" 200 52 \"-\" \"curl/8.0\"\n"
        );
        start.format = LogFormat::Json;
        end.format = LogFormat::Json;
        end.agent = b"a\"b\\c\n\xff";
        log.begin(&mut line, &start);
        log.finish(&line, &end);
        assert_eq!(
            String::from_utf8(std::mem::take(&mut log.buf)).unwrap(),
            "{\"time\":\"1994-11-06T08:49:37Z\",\"site\":\"example.com\",\"host\":\"example.com\",\
             \"remote_addr\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/a\\\"b\",\"protocol\":\"HTTP/1.1\",\
             \"status\":200,\"bytes\":52,\"duration_us\":17,\"referer\":\"\",\
             \"user_agent\":\"a\\\"b\\\\c\\u000a\\u00ff\"}\n"
        );
    }
}
