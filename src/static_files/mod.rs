//! Turns a request for a site's files into exactly one response (cf. darkhttpd
//! `process_request`). The site, OPTIONS, the path and the route table come first
//! ([`crate::site::respond`]); what reaches here is a static-file request.
//!
//! The pipeline, one step each, any step may end it with a status:
//! 1. method: GET and HEAD; other registered methods → 405, unknown → 501;
//! 2. hidden: dotfiles and dot-directories → 404, except `/.well-known/`;
//! 3. resolve: open beneath the site's root ([`resolve`]): file, index file, clean URL,
//!    redirect, listing; nothing there → the SPA fallback for navigations, else 404;
//! 4. preconditions: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since → 412/304;
//! 5. ranges: Range (with If-Range) on a 200 → 206 / 416;
//! 6. head + body: small files are copied behind the head (one write); larger ones go out
//!    by sendfile from the open file.
//!
//! Every head carries the site's header rules for the request path ([`crate::site::headers`])
//! and, on success, its Cache-Control preset. Every status that is not a success is built
//! by [`error_reply`], the one place that writes error responses (with the site's error
//! pages and rules).

pub mod autoindex;
pub mod cache;
pub mod compress;
pub mod disk_cache;
pub mod encode;
pub mod listing;
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

use crate::config::site::CachePreset;
use crate::http::coding::Coding;
use crate::http::conditional::{self, Conditions, Precondition, Validators};
use crate::http::range::{self, RangeOutcome};
use crate::http::response::{Connection, ContentRange, Head, Rules};
use crate::http::{Method, Request, Status};
use crate::site::Site;
use crate::sys::fs::FileId;
use cache::{CacheClass, Content};
use path::Target;

/// Files up to this size are read into the response buffer and leave with the head in a
/// single write; larger ones are sent with sendfile. 16 KiB keeps the copy cheap and the
/// per-connection buffer small.
pub const SMALL_FILE_MAX: u64 = 16 * 1024;

/// The page sent with a 404 when no 404 page is configured.
const BUILTIN_404: &[u8] = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\
<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p>\
<hr><address>srvd</address></body></html>\n";

/// `Cache-Control` of content-hashed files under the static-site preset.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A worker's file state, shared by its sites: the cache (partitioned by site) and the
/// inotify instance that keeps it fresh.
pub struct Files {
    pub cache: cache::FileCache,
    /// `None` where inotify is unavailable: then every hit revalidates by stat.
    pub watcher: Option<watch::Watcher>,
    pub listings: autoindex::Cache,
    /// On-the-fly encodings waiting for the loop's spare time.
    pub jobs: encode::Jobs,
    /// Each site's compression cache directory, if it has one.
    pub disks: Vec<Option<Rc<disk_cache::DiskCache>>>,
    /// Where cache hits and misses are counted.
    pub metrics: crate::metrics::Recorder,
}

impl Files {
    pub fn new(
        sites: &crate::site::Sites,
        watcher: Option<watch::Watcher>,
        metrics: crate::metrics::Recorder,
    ) -> Files {
        let disks = sites
            .all()
            .iter()
            .map(|s| {
                let c = &s.config.compression;
                let dir = c.cache_dir.as_ref()?;
                match disk_cache::DiskCache::open(dir, c.cache_dir_size) {
                    Ok(d) => Some(Rc::new(d)),
                    Err(e) => {
                        crate::log::warn(format_args!(
                            "compression cache dir {} unusable: {e}",
                            dir.display()
                        ));
                        None
                    }
                }
            })
            .collect();
        Files {
            cache: cache::FileCache::new(sites.all().len()),
            watcher,
            listings: Default::default(),
            jobs: Default::default(),
            disks,
            metrics,
        }
    }

    /// Housekeeping of the compression cache directories (bounded work each).
    pub fn clean_disks(&self) {
        for disk in self.disks.iter().flatten() {
            if let Err(e) = disk.clean() {
                crate::log::warn(format_args!("compression cache cleanup failed: {e}"));
            }
        }
    }

    /// A watched file changed: forget everything.
    pub fn clear(&mut self) {
        self.cache.clear();
        self.listings.clear();
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

/// OPTIONS (any target, `*` included): 204 with `Allow`.
pub fn options(date: &[u8], conn: Connection, out: &mut Vec<u8>) -> Outcome {
    let mut head = Head::new(Status::NoContent, 0);
    head.allow = true;
    head.connection = conn;
    head.encode(date, out);
    Outcome::head_only(Status::NoContent)
}

/// Handles a static-file request for `target` (normalised) and appends the response head
/// (and small bodies) to `out`.
pub fn handle(
    site: &Site,
    files: &mut Files,
    req: &Request,
    target: &Target,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    match serve(site, files, req, target, date, conn, out) {
        Ok(outcome) => outcome,
        Err(status) => error_reply(
            site,
            Some(&target.path),
            status,
            req.method == Method::Head,
            date,
            conn,
            out,
        ),
    }
}

/// Steps 1-6; an `Err` is the status of an error reply.
fn serve(
    site: &Site,
    files: &mut Files,
    req: &Request,
    target: &Target,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    // 1. method
    match req.method {
        Method::Get | Method::Head => {}
        Method::NotAllowed | Method::Options => return Err(Status::MethodNotAllowed),
        Method::Unknown => return Err(Status::NotImplemented),
    }
    // 2. hidden
    if path::is_hidden(&target.path) {
        return Err(Status::NotFound);
    }
    // 3. resolve: the worker's cache first (one fstatat), else open beneath the root
    let key: &str = &target.path;
    let hit = files.cache.is_fresh(site.id, &site.root, key);
    files.metrics.cache(hit);
    if !hit {
        match resolve::resolve(site, target) {
            Ok(resolve::Resolved::File { file, meta, path }) => {
                insert(site, files, key, file, &meta, path)?;
            }
            Ok(resolve::Resolved::Redirect(status, location)) => {
                return Ok(redirect_reply(
                    site, key, status, &location, date, conn, out,
                ));
            }
            Ok(resolve::Resolved::Listing(dir)) => {
                return autoindex::respond(site, files, req, target, dir, date, conn, out);
            }
            Err(Status::NotFound) => match site.config.fallback.as_deref() {
                Some(fallback) if is_navigation(req, key) => {
                    return serve_fallback(site, files, req, key, fallback, date, conn, out);
                }
                _ => return Err(Status::NotFound),
            },
            Err(other) => return Err(other),
        }
    }
    // 4. the representation: identity or an encoded variant
    let e = files
        .cache
        .entry(site.id, key)
        .expect("present: found or inserted above");
    let coding = match encode::choose(site, e, req) {
        encode::Decision::Serve(coding) => {
            return represent(site, e, coding, e.rules, req, date, conn, out)
        }
        encode::Decision::NotAcceptable => return Err(Status::NotAcceptable),
        encode::Decision::Make { coding, now } => encode::ask(site, files, key, coding, now),
    };
    let e = files
        .cache
        .entry(site.id, key)
        .expect("present: found or inserted above");
    represent(site, e, coding, e.rules, req, date, conn, out)
}

/// Opens the file of a cache miss into a new entry under `key`.
fn insert(
    site: &Site,
    files: &mut Files,
    key: &str,
    file: File,
    meta: &std::fs::Metadata,
    served_path: String,
) -> Result<(), Status> {
    let as_bytes = meta.len() <= SMALL_FILE_MAX && files.cache.has_room_for_bytes(meta.len());
    let mut entry = new_entry(file, meta, served_path, as_bytes)?;
    entry.rules = site.config.headers.matching(key);
    let applied = site.config.headers.applied(entry.rules, 200);
    let mut block = Vec::new();
    applied.write(&mut block);
    entry.rule_block = block.into_boxed_slice();
    entry.rule_suppress = applied.suppress();
    let content_type = site.config.mime.lookup(&entry.served_path);
    entry.cache_class = cache_class(&site.config.cache, content_type, &entry.served_path);
    entry.variants.compressible = encode::compressible(site, content_type, meta.len());
    entry.variants.no_transform = site
        .config
        .headers
        .applied(entry.rules, 200)
        .value_of("cache-control")
        .is_some_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        });
    let mut watched = files
        .watcher
        .as_ref()
        .is_some_and(|w| w.watch(&site.config.root, &entry.rel));
    if site.config.compression.precompressed {
        for coding in Coding::ALL {
            let rel = format!("{}{}", entry.rel, coding.file_suffix());
            let found = sidecar(site, &rel, meta);
            let id = site.root.stat_beneath(&rel).ok();
            if id.is_some() {
                // Watched even when refused as stale: rewriting it in place must be seen.
                watched &= files
                    .watcher
                    .as_ref()
                    .is_some_and(|w| w.watch(&site.config.root, &rel));
            }
            entry.variants.sidecar_ids.push((rel, id));
            if let Some(variant) = found {
                entry.variants.sidecar[coding.index()] = Some(variant);
            }
        }
    }
    // Watches first, then one more stat: a change between our open and the watches shows
    // as a different FileId, and such an entry stays unwatched.
    entry.watched = watched
        && site
            .root
            .stat_beneath(&entry.rel)
            .is_ok_and(|id| id == entry.id);
    files.cache.insert(site.id, key.to_owned(), entry);
    Ok(())
}

/// A precompressed sidecar `rel` of a file with metadata `original`: served only when it is
/// a regular file not older than the original (an older one is left over from a previous
/// version). Kept open (sent by sendfile like any file); its ETag is its own.
fn sidecar(site: &Site, rel: &str, original: &std::fs::Metadata) -> Option<cache::Variant> {
    let (file, meta) = resolve::open(&site.root, rel).ok()?;
    if !meta.is_file()
        || meta.mtime() < original.mtime()
        || (meta.mtime() == original.mtime() && meta.mtime_nsec() < original.mtime_nsec())
    {
        return None;
    }
    let (etag, _) = validators_of(&meta);
    let coding_suffix = rel.rsplit('.').next().unwrap_or("");
    let etag = format!(
        "{}-{coding_suffix}\"",
        etag.strip_suffix('"').unwrap_or(&etag)
    );
    Some(cache::Variant {
        body: Content::File(Rc::new(file)),
        len: meta.len(),
        etag,
    })
}

/// SPA fallback (`fallback`): a navigation is a GET or HEAD that accepts HTML (an absent
/// Accept, `text/html` or `*/*`) for a path whose last segment has no dot. Asset requests
/// (`/app.js`) and API calls (`Accept: application/json`) keep their 404.
fn is_navigation(req: &Request, path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return false;
    }
    match req.accept {
        None => true,
        Some(accept) => accepted_media(accept)
            .any(|media| media.eq_ignore_ascii_case(b"text/html") || media == b"*/*"),
    }
}

/// The media ranges of an Accept value, parameters dropped, in order.
pub fn accepted_media(accept: &[u8]) -> impl Iterator<Item = &[u8]> {
    accept.split(|&b| b == b',').map(|item| {
        item.split(|&b| b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii()
    })
}

/// Serves the fallback file (cached under its own path) for a navigation to `key`, with
/// the header rules of the path asked for.
#[allow(clippy::too_many_arguments)]
fn serve_fallback(
    site: &Site,
    files: &mut Files,
    req: &Request,
    key: &str,
    fallback: &str,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    if !files.cache.is_fresh(site.id, &site.root, fallback) {
        let (file, meta) = resolve::open(&site.root, fallback.trim_start_matches('/'))?;
        if !meta.is_file() {
            return Err(Status::NotFound);
        }
        insert(site, files, fallback, file, &meta, fallback.to_owned())?;
    }
    let e = files
        .cache
        .entry(site.id, fallback)
        .expect("present: found or inserted above");
    let coding = match encode::choose(site, e, req) {
        encode::Decision::Serve(coding) => coding,
        encode::Decision::NotAcceptable => return Err(Status::NotAcceptable),
        encode::Decision::Make { coding, now } => encode::ask(site, files, fallback, coding, now),
    };
    let e = files
        .cache
        .entry(site.id, fallback)
        .expect("present: found or inserted above");
    let rules = site.config.headers.matching(key);
    represent(site, e, coding, rules, req, date, conn, out)
}

/// Which preset Cache-Control a file gets.
fn cache_class(preset: &CachePreset, content_type: &str, served_path: &str) -> CacheClass {
    match preset {
        CachePreset::Off => CacheClass::None,
        CachePreset::StaticSite { .. } => {
            let name = served_path.rsplit('/').next().unwrap_or("");
            if content_type.starts_with("text/html") {
                CacheClass::NoCache
            } else if is_content_hashed(name) {
                CacheClass::Immutable
            } else {
                CacheClass::Other
            }
        }
    }
}

/// A file name that carries a content hash between a `.` or `-` and its extension: 8+
/// hex digits, or 8+ base64url characters with at least one digit and one letter
/// (`app.3f9a1c2b.js`, `index-BdGx3f7A.js`, `chunk.Ab_9-xYz.css`; not `handlers.js` or
/// `my-component.js`). The text after the last `.` of the stem is tried first (a
/// base64url hash may itself contain `-`), then the text after its last `-`.
pub fn is_content_hashed(name: &str) -> bool {
    let Some(dot) = name.rfind('.') else {
        return false;
    };
    let stem = &name[..dot];
    [stem.rfind('.'), stem.rfind('-')]
        .into_iter()
        .flatten()
        .filter(|&sep| sep > 0)
        .any(|sep| is_hash(&stem[sep + 1..]))
}

fn is_hash(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 8
        && (b.iter().all(u8::is_ascii_hexdigit)
            || (b
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                && b.iter().any(u8::is_ascii_digit)
                && b.iter().any(u8::is_ascii_alphabetic)))
}

/// The preset's header value for a class.
fn cache_control(preset: &CachePreset, class: CacheClass) -> Option<&str> {
    match (preset, class) {
        (_, CacheClass::None) | (CachePreset::Off, _) => None,
        (_, CacheClass::NoCache) => Some("no-cache"),
        (_, CacheClass::Immutable) => Some(IMMUTABLE),
        (CachePreset::StaticSite { other }, CacheClass::Other) => Some(other),
    }
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
        Content::Bytes(Rc::from(body))
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
        rules: 0,
        rule_block: Box::default(),
        rule_suppress: 0,
        cache_class: CacheClass::None,
        variants: Default::default(),
    })
}

/// Steps 4-6 for a cached file, with the header rules of `rules` (a mask over the site's).
#[allow(clippy::too_many_arguments)]
fn represent(
    site: &Site,
    e: &cache::Entry,
    coding: Option<Coding>,
    rules: u64,
    req: &Request,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    let variant = coding.and_then(|c| {
        let i = c.index();
        e.variants.sidecar[i]
            .as_ref()
            .or(e.variants.encoded[i].as_ref())
    });
    let (etag, len, body) = match variant {
        Some(v) => (v.etag.as_str(), v.len, &v.body),
        None => (e.etag.as_str(), e.id.size, &e.body),
    };
    let rep = Rep {
        etag,
        last_modified: e.last_modified,
        last_modified_text: &e.last_modified_text,
        len,
        content_type: site.config.mime.lookup(&e.served_path),
        body: match body {
            Content::Bytes(bytes) => RepBody::Memory(bytes),
            Content::File(file) => RepBody::File(Rc::clone(file)),
        },
    };
    let headers = &site.config.headers;
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
    head.cache_control = cache_control(&site.config.cache, e.cache_class);
    head.rules = if rules == e.rules {
        Rules::Rendered(&e.rule_block, e.rule_suppress)
    } else {
        Rules::Applied(headers.applied(rules, 200))
    };
    head.content_encoding = variant.and(coding).map(Coding::token);
    head.vary_encoding = e.variants.varies();
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
            head.cache_control = None;
            head.rules = Rules::Applied(headers.applied(rules, 416));
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

/// The one place error responses are built: status line, the site's page for the status
/// (or a small built-in one), its header rules for `path`, `Allow` on 405,
/// `Connection: close` after framing errors.
pub fn error_reply(
    site: &Site,
    path: Option<&str>,
    status: Status,
    is_head: bool,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    let generic;
    let page = site.config.error_pages.get(status.code());
    let body: &[u8] = match (page, status) {
        (Some(page), _) => &page.body,
        (None, Status::NotFound) => BUILTIN_404,
        _ => {
            generic = format!(
                "<!DOCTYPE html>\n<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>\n",
                status.line()
            );
            generic.as_bytes()
        }
    };
    let mut head = Head::new(status, body.len() as u64);
    head.content_type = Some(page.map_or("text/html; charset=utf-8", |p| &p.content_type));
    head.allow = status == Status::MethodNotAllowed;
    head.rules = match path {
        Some(path) => site.config.headers.rules_for(path, status.code()),
        None => Rules::None,
    };
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

/// A redirect (a route's, a directory's missing slash, a clean URL) to `location`, with
/// the header rules of `path`.
#[allow(clippy::too_many_arguments)]
pub fn redirect_reply(
    site: &Site,
    path: &str,
    status: Status,
    location: &str,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut head = Head::new(status, 0);
    head.location = Some(location);
    head.connection = conn;
    head.content_type = Some("text/html; charset=utf-8");
    head.rules = site.config.headers.rules_for(path, status.code());
    head.encode(date, out);
    Outcome::head_only(status)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashed_names() {
        for hashed in [
            "app.3f9a1c2b.js",
            "index-BdGx3f7A.js",
            "chunk.Ab_9-xYz.css",
            "main.0123456789abcdef.css",
            "logo-Zx81LmQ2.svg",
        ] {
            assert!(is_content_hashed(hashed), "{hashed}");
        }
        for plain in [
            "handlers.js",
            "my-component.js",
            "index.html",
            "jquery-3.7.1.min.js",
            "abcdefgh",
            ".3f9a1c2b.js",
            "my-long-component-name2.js",
            "app.3f9a1c2.js",
        ] {
            assert!(!is_content_hashed(plain), "{plain}");
        }
    }
}
