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

    /// Starts a line: `ip - - [time] "request line" `. The rest comes from [`AccessLog::finish`].
    pub fn begin(
        &mut self,
        line: &mut Vec<u8>,
        ip: IpAddr,
        now: u64,
        method: &str,
        target: &str,
        minor: u8,
    ) {
        if now != self.time_secs {
            let (y, mo, d, h, mi, s) = civil(now);
            self.time = format!(
                "[{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000]",
                MONTHS[(mo - 1) as usize]
            );
            self.time_secs = now;
        }
        line.clear();
        let _ = write!(line, "{ip} - - {} \"", self.time);
        escape(line, method.as_bytes());
        line.push(b' ');
        escape(line, target.as_bytes());
        line.extend_from_slice(if minor == 0 {
            b" HTTP/1.0\" "
        } else {
            b" HTTP/1.1\" "
        });
    }

    /// Completes a begun line with status, bytes, referer and user agent, and queues it.
    pub fn finish(&mut self, line: &[u8], status: u16, bytes: u64, referer: &[u8], agent: &[u8]) {
        self.buf.extend_from_slice(line);
        let mut n = itoa::Buffer::new();
        self.buf.extend_from_slice(n.format(status).as_bytes());
        self.buf.push(b' ');
        self.buf.extend_from_slice(n.format(bytes).as_bytes());
        self.buf.extend_from_slice(b" \"");
        escape(
            &mut self.buf,
            if referer.is_empty() { b"-" } else { referer },
        );
        self.buf.extend_from_slice(b"\" \"");
        escape(&mut self.buf, if agent.is_empty() { b"-" } else { agent });
        self.buf.extend_from_slice(b"\"\n");
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
        log.begin(
            &mut line,
            "127.0.0.1".parse().unwrap(),
            784_111_777,
            "GET",
            "/a\"b",
            1,
        );
        log.finish(&line, 200, 52, b"", b"curl/8.0");
        assert_eq!(
            String::from_utf8(log.buf.clone()).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.1\" 200 52 \"-\" \"curl/8.0\"\n"
        );
    }
}
