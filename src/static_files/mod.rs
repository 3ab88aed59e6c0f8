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

pub mod cache;
pub mod mime;
pub mod path;
pub mod resolve;
pub mod watch;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::http::conditional::{self, Conditions, Precondition, Validators};
use crate::http::range::{self, RangeOutcome};
use crate::http::response::{Connection, ContentRange, Head};
use crate::http::{Method, Request, Status};
use crate::sys::fs::{FileId, RootDir};
use cache::Content;

/// Files up to this size are read into the response buffer and leave with the head in a
/// single write; larger ones are sent with sendfile. 16 KiB keeps the copy cheap and the
/// per-connection buffer small.
pub const SMALL_FILE_MAX: u64 = 16 * 1024;

/// The page sent with a 404 when `not_found_page` is not configured.
const BUILTIN_404: &[u8] = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\
<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p>\
<hr><address>srvd</address></body></html>\n";

/// What a generation serves: its config, an open handle on its root, and the worker's
/// cache of small files (a worker is single-threaded, hence the `RefCell`).
pub struct Site {
    pub config: Config,
    pub root: RootDir,
    pub cache: std::cell::RefCell<cache::FileCache>,
    /// The worker's inotify instance, set by the worker once it runs (`None` in the master,
    /// or where inotify is unavailable: then every hit revalidates by stat).
    pub watcher: Option<watch::Watcher>,
}

impl Site {
    pub fn new(config: Config, root: RootDir) -> Site {
        Site {
            config,
            root,
            cache: Default::default(),
            watcher: None,
        }
    }
}

/// What remains to be sent after the bytes already placed in the response buffer.
#[derive(Debug)]
pub enum Body {
    None,
    /// A byte range `[offset, end)` of an open file, sent with sendfile.
    File {
        file: Rc<File>,
        offset: u64,
        end: u64,
    },
    /// multipart/byteranges: literal part heads interleaved with file ranges.
    Multipart {
        file: Rc<File>,
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

impl Outcome {
    /// A response whose head (and any small body) is all in the buffer, keep-alive intact.
    fn head_only(status: Status) -> Outcome {
        Outcome {
            status,
            body: Body::None,
            body_len: 0,
            close: false,
        }
    }
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
            return Ok(Outcome::head_only(Status::NoContent));
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
    // 4. resolve: the worker's cache first (one fstatat), else open beneath the root
    let mut cache = site.cache.borrow_mut();
    if !cache.is_fresh(&site.root, &target.path) {
        match resolve::resolve(site, &target)? {
            resolve::Resolved::File { file, meta, path } => {
                let as_bytes = meta.len() <= SMALL_FILE_MAX && cache.has_room_for_bytes(meta.len());
                let mut entry = new_entry(file, &meta, path, as_bytes)?;
                // Watches first, then one more stat: a change between our open and the
                // watches shows as a different FileId, and such an entry stays unwatched.
                entry.watched = site
                    .watcher
                    .as_ref()
                    .is_some_and(|w| w.watch(&site.config.root, &entry.rel))
                    && site
                        .root
                        .stat_beneath(&entry.rel)
                        .is_ok_and(|id| id == entry.id);
                cache.insert(target.path.to_string(), entry);
            }
            resolve::Resolved::Redirect(location) => {
                let mut head = Head::new(Status::MovedPermanently, 0);
                head.location = Some(&location);
                head.connection = conn;
                head.content_type = Some("text/html; charset=utf-8");
                head.encode(date, out);
                return Ok(Outcome::head_only(Status::MovedPermanently));
            }
        }
    }
    let e = cache
        .entry(&target.path)
        .expect("present: found or inserted above");
    let rep = Rep {
        etag: &e.etag,
        last_modified: e.last_modified,
        last_modified_text: &e.last_modified_text,
        len: e.id.size,
        content_type: site.config.mime.lookup(&e.served_path),
        body: match &e.body {
            Content::Bytes(bytes) => RepBody::Memory(bytes),
            Content::File(file) => RepBody::File(Rc::clone(file)),
        },
    };
    represent(rep, req, date, conn, out)
}

/// A representation ready to answer: validators, type, and where its bytes are.
struct Rep<'a> {
    etag: &'a str,
    last_modified: SystemTime,
    last_modified_text: &'a str,
    len: u64,
    content_type: &'a str,
    body: RepBody<'a>,
}

enum RepBody<'a> {
    /// A small file's bytes, from the cache.
    Memory(&'a [u8]),
    /// A large file, open (shared with the cache).
    File(Rc<File>),
}

/// Strong ETag from size, mtime in nanoseconds and inode; Last-Modified in whole seconds
/// (HTTP dates have no finer resolution, and comparisons use the truncated time).
fn validators_of(meta: &std::fs::Metadata) -> (String, SystemTime) {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let etag = conditional::make_etag(meta.len(), mtime_ns, meta.ino());
    let secs = u64::try_from(meta.mtime()).unwrap_or(0);
    (etag, UNIX_EPOCH + Duration::from_secs(secs))
}

/// A cache entry for a file just opened: read whole when `as_bytes` (a read that comes up
/// short, because the file shrank meanwhile, is a 500 for this request rather than a wrong
/// Content-Length), else it keeps its descriptor.
fn new_entry(
    mut file: File,
    meta: &std::fs::Metadata,
    served_path: String,
    as_bytes: bool,
) -> Result<cache::Entry, Status> {
    let body = if as_bytes {
        let mut body = Vec::with_capacity(meta.len() as usize);
        (&mut file)
            .take(meta.len())
            .read_to_end(&mut body)
            .map_err(|_| Status::InternalServerError)?;
        if body.len() as u64 != meta.len() {
            return Err(Status::InternalServerError);
        }
        Content::Bytes(body.into_boxed_slice())
    } else {
        Content::File(Rc::new(file))
    };
    let (etag, last_modified) = validators_of(meta);
    Ok(cache::Entry {
        id: FileId::of(meta),
        rel: served_path.trim_start_matches('/').to_owned(),
        served_path,
        etag,
        last_modified,
        last_modified_text: httpdate::fmt_http_date(last_modified),
        body,
        watched: false,
    })
}

/// Steps 5-7 for a resolved representation.
fn represent(
    rep: Rep,
    req: &Request,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    let len = rep.len;
    let validators = Validators {
        etag: rep.etag,
        last_modified: rep.last_modified,
    };
    let content_type = rep.content_type;

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
    head.last_modified = Some(rep.last_modified_text);
    head.etag = Some(rep.etag);
    head.accept_ranges = true;
    head.connection = conn;
    match conditional::evaluate(true, &conditions, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            head.status = Status::NotModified;
            head.content_type = None;
            head.accept_ranges = false;
            head.encode(date, out);
            return Ok(Outcome::head_only(Status::NotModified));
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
    let parts = match ranges {
        RangeOutcome::Full => {
            // 7. head + body
            head.encode(date, out);
            if is_head {
                return Ok(Outcome::head_only(Status::Ok));
            }
            return Ok(body_range(rep.body, 0, len, Status::Ok, out));
        }
        RangeOutcome::Unsatisfiable => {
            head.status = Status::RangeNotSatisfiable;
            head.content_type = Some("text/html; charset=utf-8");
            head.content_length = 0;
            head.content_range = Some(ContentRange::Unsatisfied { len });
            head.encode(date, out);
            return Ok(Outcome::head_only(Status::RangeNotSatisfiable));
        }
        RangeOutcome::Partial(parts) => parts,
    };
    head.status = Status::PartialContent;
    if let [r] = parts.as_slice() {
        head.content_length = r.end - r.start;
        head.content_range = Some(ContentRange::Bytes {
            first: r.start,
            last: r.end - 1,
            len,
        });
        head.encode(date, out);
        return Ok(body_range(
            rep.body,
            r.start,
            r.end,
            Status::PartialContent,
            out,
        ));
    }
    let boundary = range::multipart_boundary(boundary_seed());
    let ctype = format!("multipart/byteranges; boundary={boundary}");
    let total = range::multipart_len(&boundary, content_type, &parts, len);
    head.content_type = Some(&ctype);
    head.content_length = total;
    head.encode(date, out);
    match rep.body {
        RepBody::Memory(bytes) => {
            for r in &parts {
                out.extend_from_slice(range::part_head(&boundary, content_type, r, len).as_bytes());
                out.extend_from_slice(&bytes[r.start as usize..r.end as usize]);
            }
            out.extend_from_slice(range::multipart_tail(&boundary).as_bytes());
            Ok(Outcome {
                status: Status::PartialContent,
                body: Body::None,
                body_len: total,
                close: false,
            })
        }
        RepBody::File(file) => {
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
            Ok(Outcome {
                status: Status::PartialContent,
                body: Body::Multipart { file, chunks },
                body_len: total,
                close: false,
            })
        }
    }
}

/// The bytes `[start, end)` of a representation: copied behind the head from memory, or
/// left for sendfile.
fn body_range(body: RepBody, start: u64, end: u64, status: Status, out: &mut Vec<u8>) -> Outcome {
    match body {
        RepBody::Memory(bytes) => {
            out.extend_from_slice(&bytes[start as usize..end as usize]);
            Outcome {
                status,
                body: Body::None,
                body_len: end - start,
                close: false,
            }
        }
        RepBody::File(file) => file_body(file, start, end, status, out),
    }
}

/// Small ranges are copied behind the head; larger ones become a sendfile body. A file that
/// shrank under us cannot honour the Content-Length already written: close after it.
fn file_body(file: Rc<File>, start: u64, end: u64, status: Status, out: &mut Vec<u8>) -> Outcome {
    let want = end - start;
    if want <= SMALL_FILE_MAX {
        // pread: the descriptor is shared, so its file offset is never used.
        let before = out.len();
        if !read_at(&file, start, want, out) {
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
/// reveals), so an uploaded file cannot be crafted to contain the boundary of its own
/// multipart response. The key comes from /dev/urandom once per *process*: std's
/// `RandomState` keys are per thread and would be inherited unchanged by every forked
/// worker, replaying the same sequence. Each call mixes the key with a counter.
fn boundary_seed() -> u64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        /// (pid the key belongs to, key, calls so far)
        static KEY: Cell<(u32, u64, u64)> = const { Cell::new((0, 0, 0)) };
    }
    KEY.with(|cell| {
        let (mut pid, mut key, n) = cell.get();
        if pid != std::process::id() {
            pid = std::process::id();
            let mut bytes = [0u8; 8];
            key = match std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
            {
                Ok(()) => u64::from_ne_bytes(bytes),
                // No urandom (odd sandboxes): still differ per process and per start.
                Err(_) => {
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_u32(pid);
                    h.write_u128(
                        std::time::SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos()),
                    );
                    h.finish()
                }
            };
        }
        cell.set((pid, key, n + 1));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(key);
        h.write_u64(n);
        h.finish()
    })
}
