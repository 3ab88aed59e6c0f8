//! Turns a parsed request into exactly one response (cf. darkhttpd `process_request`).
//!
//! The pipeline, one step each, any step may end it with a status:
//! 1. method: OPTIONS → 204, other registered methods → 405, unknown → 501;
//! 2. path: strip the query, decode, normalise ([`path::normalize`]) → 400 when unsafe;
//! 3. hidden: dotfiles and dot-directories → 404, except `/.well-known/`;
//! 4. resolve: open beneath the root, directory → 301 or index file ([`resolve`]);
//! 5. preconditions: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since → 412/304;
//! 6. ranges: Range (with If-Range) on a 200 → 206 / 416;
//! 7. head + body: small files are copied behind the head (one write); larger ones go out
//!    by sendfile from the open file.
//!
//! Every status that is not a success is built by [`error_reply`], the one place that
//! writes error responses.

pub mod mime;
pub mod path;
pub mod resolve;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::http::conditional::{self, Conditions, Precondition, Validators};
use crate::http::range::{self, RangeOutcome};
use crate::http::response::{Connection, ContentRange, Head};
use crate::http::{Method, Request, Status};
use crate::sys::fs::RootDir;

/// Files up to this size are read into the response buffer and leave with the head in a
/// single write; larger ones are sent with sendfile. 16 KiB keeps the copy cheap and the
/// per-connection buffer small.
pub const SMALL_FILE_MAX: u64 = 16 * 1024;

/// The page sent with a 404 when `not_found_page` is not configured.
const BUILTIN_404: &[u8] = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\
<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p>\
<hr><address>srvd</address></body></html>\n";

/// What a generation serves: its config and an open handle on its root.
pub struct Site {
    pub config: Config,
    pub root: RootDir,
}

/// What remains to be sent after the bytes already placed in the response buffer.
#[derive(Debug)]
pub enum Body {
    None,
    /// A byte range `[offset, end)` of an open file, sent with sendfile.
    File {
        file: File,
        offset: u64,
        end: u64,
    },
    /// multipart/byteranges: literal part heads interleaved with file ranges.
    Multipart {
        file: File,
        chunks: VecDeque<Chunk>,
    },
}

/// One piece of a multipart body.
#[derive(Debug)]
pub enum Chunk {
    Bytes(Vec<u8>),
    File { offset: u64, end: u64 },
}

/// The result of handling one request; the head (and any small body) is already in `out`.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    pub body: Body,
    /// Body bytes this response carries, for the access log.
    pub body_len: u64,
    /// The connection must close after this response.
    pub close: bool,
}

/// Handles `req` and appends the response head (and small bodies) to `out`.
pub fn handle(
    site: &Site,
    req: &Request,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    match serve(site, req, date, conn, out) {
        Ok(outcome) => outcome,
        Err(status) => error_reply(site, status, req.method == Method::Head, date, conn, out),
    }
}

/// Steps 1-7; an `Err` is the status of an error reply.
fn serve(
    site: &Site,
    req: &Request,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    // 1. method
    match req.method {
        Method::Get | Method::Head => {}
        Method::Options => {
            let mut head = Head::new(Status::NoContent, 0);
            head.allow = true;
            head.connection = conn;
            head.encode(date, out);
            return Ok(Outcome {
                status: Status::NoContent,
                body: Body::None,
                body_len: 0,
                close: false,
            });
        }
        Method::NotAllowed => return Err(Status::MethodNotAllowed),
        Method::Unknown => return Err(Status::NotImplemented),
    }
    // 2. path
    let target = path::normalize(req.target).map_err(|_| Status::BadRequest)?;
    // 3. hidden
    if path::is_hidden(&target.path) {
        return Err(Status::NotFound);
    }
    // 4. resolve
    let (file, meta, served_path) = match resolve::resolve(site, &target)? {
        resolve::Resolved::File { file, meta, path } => (file, meta, path),
        resolve::Resolved::Redirect(location) => {
            let mut head = Head::new(Status::MovedPermanently, 0);
            head.location = Some(&location);
            head.connection = conn;
            head.content_type = Some("text/html; charset=utf-8");
            head.encode(date, out);
            return Ok(Outcome {
                status: Status::MovedPermanently,
                body: Body::None,
                body_len: 0,
                close: false,
            });
        }
    };
    let len = meta.len();
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let etag = conditional::make_etag(len, mtime_ns, meta.ino());
    // HTTP dates have whole seconds; comparisons use the truncated time.
    let last_modified = UNIX_EPOCH + Duration::from_secs(u64::try_from(meta.mtime()).unwrap_or(0));
    let validators = Validators {
        etag: &etag,
        last_modified,
    };
    let content_type = site.config.mime.lookup(&served_path);

    // 5. preconditions
    let conditions = Conditions {
        if_match: req.if_match,
        if_unmodified_since: req.if_unmodified_since,
        if_none_match: req.if_none_match,
        if_modified_since: req.if_modified_since,
    };
    let is_head = req.method == Method::Head;
    let mut head = Head::new(Status::Ok, len);
    head.content_type = Some(content_type);
    head.last_modified = Some(last_modified);
    head.etag = Some(&etag);
    head.accept_ranges = true;
    head.connection = conn;
    match conditional::evaluate(true, &conditions, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            head.status = Status::NotModified;
            head.content_type = None;
            head.accept_ranges = false;
            head.encode(date, out);
            return Ok(Outcome {
                status: Status::NotModified,
                body: Body::None,
                body_len: 0,
                close: false,
            });
        }
        Precondition::Failed => return Err(Status::PreconditionFailed),
    }

    // 6. ranges: only for GET (RFC 9110 §14.2), only when If-Range (if any) still holds
    let ranges = match req.range {
        Some(value)
            if req.method == Method::Get
                && req
                    .if_range
                    .is_none_or(|v| conditional::if_range_matches(v, &validators)) =>
        {
            range::parse_range(value, len)
        }
        _ => RangeOutcome::Full,
    };
    match ranges {
        RangeOutcome::Full => {}
        RangeOutcome::Unsatisfiable => {
            head.status = Status::RangeNotSatisfiable;
            head.content_type = Some("text/html; charset=utf-8");
            head.content_length = 0;
            head.content_range = Some(ContentRange::Unsatisfied { len });
            head.encode(date, out);
            return Ok(Outcome {
                status: Status::RangeNotSatisfiable,
                body: Body::None,
                body_len: 0,
                close: false,
            });
        }
        RangeOutcome::Partial(parts) if parts.len() == 1 => {
            let r = &parts[0];
            head.status = Status::PartialContent;
            head.content_length = r.end - r.start;
            head.content_range = Some(ContentRange::Bytes {
                first: r.start,
                last: r.end - 1,
                len,
            });
            head.encode(date, out);
            return Ok(file_body(file, r.start, r.end, Status::PartialContent, out));
        }
        RangeOutcome::Partial(parts) => {
            let boundary = range::multipart_boundary(boundary_seed());
            let ctype = format!("multipart/byteranges; boundary={boundary}");
            let total = range::multipart_len(&boundary, content_type, &parts, len);
            head.status = Status::PartialContent;
            head.content_type = Some(&ctype);
            head.content_length = total;
            head.encode(date, out);
            let mut chunks = VecDeque::with_capacity(parts.len() * 2 + 1);
            for r in &parts {
                chunks.push_back(Chunk::Bytes(
                    range::part_head(&boundary, content_type, r, len).into_bytes(),
                ));
                chunks.push_back(Chunk::File {
                    offset: r.start,
                    end: r.end,
                });
            }
            chunks.push_back(Chunk::Bytes(range::multipart_tail(&boundary).into_bytes()));
            return Ok(Outcome {
                status: Status::PartialContent,
                body: Body::Multipart { file, chunks },
                body_len: total,
                close: false,
            });
        }
    }

    // 7. head + body
    head.encode(date, out);
    if is_head {
        return Ok(Outcome {
            status: Status::Ok,
            body: Body::None,
            body_len: 0,
            close: false,
        });
    }
    Ok(file_body(file, 0, len, Status::Ok, out))
}

/// Small ranges are copied behind the head; larger ones become a sendfile body. A file that
/// shrank under us cannot honour the Content-Length already written: close after it.
fn file_body(mut file: File, start: u64, end: u64, status: Status, out: &mut Vec<u8>) -> Outcome {
    let want = end - start;
    if want <= SMALL_FILE_MAX {
        let before = out.len();
        let ok = if start == 0 {
            (&mut file)
                .take(want)
                .read_to_end(out)
                .is_ok_and(|n| n as u64 == want)
        } else {
            read_at(&file, start, want, out)
        };
        if !ok {
            out.truncate(before);
            return Outcome {
                status,
                body: Body::None,
                body_len: 0,
                close: true,
            };
        }
        return Outcome {
            status,
            body: Body::None,
            body_len: want,
            close: false,
        };
    }
    Outcome {
        status,
        body: Body::File {
            file,
            offset: start,
            end,
        },
        body_len: want,
        close: false,
    }
}

fn read_at(file: &File, start: u64, want: u64, out: &mut Vec<u8>) -> bool {
    use std::os::unix::fs::FileExt;
    let before = out.len();
    out.resize(before + want as usize, 0);
    file.read_exact_at(&mut out[before..], start).is_ok()
}

/// The one place error responses are built: status line, small HTML body (the configured
/// 404 page for 404), `Allow` on 405, `Connection: close` after framing errors.
pub fn error_reply(
    site: &Site,
    status: Status,
    is_head: bool,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    let generic;
    let body: &[u8] = match status {
        Status::NotFound => site.config.not_found_body.as_deref().unwrap_or(BUILTIN_404),
        _ => {
            generic = format!(
                "<!DOCTYPE html>\n<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>\n",
                status.line()
            );
            generic.as_bytes()
        }
    };
    let mut head = Head::new(status, body.len() as u64);
    head.content_type = Some("text/html; charset=utf-8");
    head.allow = status == Status::MethodNotAllowed;
    // A request that failed before its framing was understood leaves the stream unusable.
    let close = closes_connection(status);
    head.connection = if close { Connection::Close } else { conn };
    head.encode(date, out);
    let body_len = if is_head { 0 } else { body.len() as u64 };
    if !is_head {
        out.extend_from_slice(body);
    }
    Outcome {
        status,
        body: Body::None,
        body_len,
        close: close || conn == Connection::Close,
    }
}

/// Statuses after which the connection's framing can no longer be trusted.
pub fn closes_connection(status: Status) -> bool {
    matches!(
        status,
        Status::BadRequest
            | Status::RequestTimeout
            | Status::PayloadTooLarge
            | Status::UriTooLong
            | Status::HeaderFieldsTooLarge
            | Status::NotImplemented
            | Status::VersionNotSupported
            | Status::ExpectationFailed
            | Status::InternalServerError
    )
}

/// A boundary seed a client cannot predict from the file's validators (which the ETag
/// reveals): the process's random hasher keys mixed with a per-process counter, so an
/// uploaded file cannot be crafted to contain the boundary of its own multipart response.
fn boundary_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The time of `meta` as a SystemTime (for tests and logging).
pub fn mtime(meta: &std::fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(UNIX_EPOCH)
}
