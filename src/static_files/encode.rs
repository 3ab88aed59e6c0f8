//! Content codings as representations (RFC 9110 §8.4, §12.5.3): which variant of a cached
//! file a request gets, and the worker's queue of on-the-fly encodings.
//!
//! The variant is chosen *before* preconditions and ranges ([`negotiate`]), so its ETag,
//! length and bytes are what If-None-Match, If-Range, Range and Content-Length see; no
//! step after it knows about encodings.
//!
//! A cold file is never encoded on the request path: the request gets the best variant
//! that exists now (identity at first) and the wanted coding is queued. The worker runs
//! the queue between epoll batches, one bounded slice ([`SLICE`] input bytes) per loop
//! iteration, so a 16 MiB file costs its neighbours at most one slice of latency at a
//! time. The result is kept in the file's cache entry (memory, bounded by
//! `cache_size`) and, when the site has a `cache_dir`, written there atomically so other
//! workers and later generations find it. A changed file is a different cache entry (and a
//! different cache-dir key), so a stale variant is never served.
//!
//! The one exception: a client that refuses identity (`identity;q=0`) for a file that has
//! no acceptable variant yet gets it encoded synchronously (or a 406 if no acceptable coding
//! is configured); no browser sends that.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use super::cache::{Content, Entry, Variant};
use super::compress::{self, Encoder};
use super::disk_cache::DiskCache;
use super::Files;
use crate::http::accept_encoding::{Accepted, Choice};
use crate::http::coding::Coding;
use crate::http::Request;
use crate::site::Site;
use crate::sys::fs::FileId;

/// Input bytes encoded per loop iteration: at the default levels about a millisecond.
pub const SLICE: usize = 32 * 1024;
/// Most encodings queued per worker; beyond, requests are served as they are and the
/// encoding is asked for again by a later request.
pub const MAX_JOBS: usize = 1024;

/// One queued encoding.
struct Job {
    site: usize,
    key: String,
    id: FileId,
    etag: String,
    coding: Coding,
    source: Content,
    len: u64,
    pos: u64,
    /// Made when the job first runs, not when it is queued: a queue of a thousand cold
    /// files must not hold a thousand encoders (brotli's are tens of KiB each).
    encoder: Option<Encoder>,
    level: u32,
    finished: bool,
    disk: Option<(Rc<DiskCache>, String)>,
    budget: usize,
}

/// The worker's encoding queue.
#[derive(Default)]
pub struct Jobs {
    queue: VecDeque<Job>,
    scratch: Vec<u8>,
}

impl Jobs {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// What [`choose`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send this variant (`None`: identity).
    Serve(Option<Coding>),
    /// Nothing acceptable exists or can exist: 406.
    NotAcceptable,
    /// `coding` is worth making (see [`ask`]); `now` is what exists meanwhile.
    Make { coding: Coding, now: Choice },
}

/// The variant of cached file `e` that `req` gets. Pure: the hot path of a file that
/// has its variants (or cannot vary) ends here, with no second cache lookup.
pub fn choose(site: &Site, e: &Entry, req: &Request) -> Decision {
    let comp = &site.config.compression;
    let v = &e.variants;
    if !v.varies() {
        return Decision::Serve(None);
    }
    let accepted = Accepted::parse(req.accept_encoding);
    let no_transform = req.no_transform || v.no_transform;
    let mut avail = [Coding::Br; 3];
    let mut n = 0;
    for &c in &comp.prefer {
        let i = c.index();
        if v.sidecar[i].is_some() || (!no_transform && v.encoded[i].is_some()) {
            avail[n] = c;
            n += 1;
        }
    }
    let choice = accepted.choose(&avail[..n]);
    // The coding worth making: the client's best among those configured and not there
    // yet (the first in the server's order on equal q), if it beats what is sent now
    // (identity loses ties; a coding later in the server's order loses them too).
    let rank = |c: Coding| comp.prefer.iter().position(|p| *p == c);
    let want = if v.compressible && !no_transform {
        let mut best: Option<Coding> = None;
        for &c in &comp.on_the_fly {
            let i = c.index();
            let q = accepted.q(c);
            if q > 0
                && !v.asked[i]
                && v.encoded[i].is_none()
                && v.sidecar[i].is_none()
                && best.is_none_or(|b| q > accepted.q(b))
            {
                best = Some(c);
            }
        }
        best.filter(|&c| {
            let q = accepted.q(c);
            match choice {
                Choice::Coding(x) => q > accepted.q(x) || (q == accepted.q(x) && rank(c) < rank(x)),
                Choice::Identity => q >= accepted.identity_q(),
                Choice::NotAcceptable => true,
            }
        })
    } else {
        None
    };
    match (want, choice) {
        (Some(coding), now) => Decision::Make { coding, now },
        (None, Choice::Coding(c)) => Decision::Serve(Some(c)),
        (None, Choice::Identity) => Decision::Serve(None),
        // Nothing encodable is acceptable and identity is refused.
        (None, Choice::NotAcceptable) => Decision::NotAcceptable,
    }
}

/// Asks for `coding` of the cached file at `key` (once per file and coding): found in the
/// cache directory, it serves at once; else it is queued and `now` serves meanwhile
/// (encoded on the spot when `now` is nothing acceptable). Returns the variant to send.
pub fn ask(
    site: &Site,
    files: &mut Files,
    key: &str,
    coding: Coding,
    now: Choice,
) -> Option<Coding> {
    let comp = &site.config.compression;
    let choice = now;
    let e = files
        .cache
        .entry(site.id, key)
        .expect("ask runs on a cached file");
    // Ask once per cached file and coding: the cache directory, else the queue.
    let id = e.id;
    let etag = variant_etag(&e.etag, coding, comp.level(coding));
    let source = match &e.body {
        Content::Bytes(b) => Content::Bytes(Rc::clone(b)),
        Content::File(f) => Content::File(Rc::clone(f)),
    };
    let len = e.id.size;
    let level = comp.level(coding);
    if let Some(e) = files.cache.entry_mut(site.id, key) {
        e.variants.asked[coding.index()] = true;
    }
    let budget = usize::try_from(comp.cache_size).unwrap_or(usize::MAX);
    let disk = files.disks.get(site.id).cloned().flatten().map(|d| {
        let name = DiskCache::key(&id, coding, level);
        (d, name)
    });
    if let Some((dir, name)) = &disk {
        if let Some(file) = dir.get(name) {
            if let Ok(meta) = file.metadata() {
                let variant = Variant {
                    body: Content::File(Rc::new(file)),
                    len: meta.len(),
                    etag,
                    // The identity of the bytes is the key: same source, coding, level.
                };
                files
                    .cache
                    .add_encoded(site.id, key, &id, coding.index(), variant, budget);
                return Some(coding);
            }
        }
    }
    let job = Job {
        site: site.id,
        key: key.to_owned(),
        id,
        etag,
        coding,
        source,
        len,
        pos: 0,
        encoder: None,
        level,
        finished: false,
        disk,
        budget,
    };
    if matches!(choice, Choice::NotAcceptable) {
        // A client that refuses identity: encode now rather than answer 406.
        let mut job = job;
        while !run_slice(files, &mut job, usize::MAX) {}
        return Some(coding);
    }
    if files.jobs.queue.len() < MAX_JOBS {
        files.jobs.queue.push_back(job);
    } else if let Some(e) = files.cache.entry_mut(site.id, key) {
        e.variants.asked[coding.index()] = false;
    }
    match choice {
        Choice::Coding(c) => Some(c),
        _ => None,
    }
}

/// The ETag of an encoded variant: the identity ETag with the coding and level inside the
/// quotes, so each coding (and each level's bytes) has its own strong validator.
pub fn variant_etag(identity: &str, coding: Coding, level: u32) -> String {
    let inner = identity.strip_suffix('"').unwrap_or(identity);
    format!("{inner}{}{level}\"", coding.etag_suffix())
}

/// Runs one slice of the first queued encoding; true while more work is queued.
pub fn run_queued(files: &mut Files) -> bool {
    let Some(mut job) = files.jobs.queue.pop_front() else {
        return false;
    };
    if !run_slice(files, &mut job, SLICE) {
        files.jobs.queue.push_front(job);
        return true;
    }
    // The finished job (and its encoder) is dropped here.
    drop(job);
    if files.jobs.queue.is_empty() {
        // The encoders' working memory is freed; let the kernel have it back.
        files.jobs.scratch = Vec::new();
        crate::sys::mem::release_free_memory();
        return false;
    }
    true
}

/// Feeds up to `slice` bytes to the job's encoder; true when the job is finished (done,
/// or given up because the source failed or changed).
fn run_slice(files: &mut Files, job: &mut Job, slice: usize) -> bool {
    let end = job.len.min(job.pos.saturating_add(slice as u64));
    let want = (end - job.pos) as usize;
    if job.finished {
        return true;
    }
    let encoder = job
        .encoder
        .get_or_insert_with(|| Encoder::new(job.coding, job.level, job.len as usize));
    let ok = match &job.source {
        Content::Bytes(b) => encoder.write(&b[job.pos as usize..end as usize]).is_ok(),
        Content::File(f) => {
            files.jobs.scratch.resize(want, 0);
            f.read_exact_at(&mut files.jobs.scratch, job.pos).is_ok()
                && encoder.write(&files.jobs.scratch).is_ok()
        }
    };
    if !ok {
        forget_job(files, job);
        return true;
    }
    job.pos = end;
    if job.pos < job.len {
        return false;
    }
    job.finished = true;
    let Ok(bytes) = job.encoder.take().expect("made above").finish() else {
        forget_job(files, job);
        return true;
    };
    if let Some((dir, name)) = &job.disk {
        if let Err(e) = dir.put(name, &bytes) {
            crate::log::warn(format_args!("compression cache write failed: {e}"));
        }
    }
    let len = bytes.len() as u64;
    let variant = Variant {
        body: Content::Bytes(Rc::from(bytes)),
        len,
        etag: std::mem::take(&mut job.etag),
    };
    files.cache.add_encoded(
        job.site,
        &job.key,
        &job.id,
        job.coding.index(),
        variant,
        job.budget,
    );
    true
}

/// A job that cannot finish: let a later request ask again.
fn forget_job(files: &mut Files, job: &Job) {
    if let Some(e) = files
        .cache
        .entry_mut(job.site, &job.key)
        .filter(|e| e.id == job.id)
    {
        e.variants.asked[job.coding.index()] = false;
    }
}

/// The compressible-and-in-bounds test of a file about to be cached.
pub fn compressible(site: &Site, content_type: &str, len: u64) -> bool {
    let comp = &site.config.compression;
    !comp.on_the_fly.is_empty()
        && len >= comp.min_size
        && len <= comp.max_size
        && compress::compressible(content_type, &comp.types)
}
