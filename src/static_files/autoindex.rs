//! Directory listings as responses (`listing = true` or a list of path globs): reading a
//! directory, caching what was read, and answering HTML or JSON. The pure parts (reading
//! entries, sorting, rendering, escaping) are in [`super::listing`].
//!
//! A directory is read once and its entries kept, keyed by site and path, while the
//! directory's identity (inode, mtime, ctime) is unchanged and for at most [`MAX_AGE`]:
//! a 50 000-entry directory costs its `getdents`/`fstatat` calls once, not per request
//! (reading 50 000 entries takes about 0.2 s here, mostly `fstatat`; sizes of files
//! changed in place, which do not touch the directory, show within `MAX_AGE`). Rendered pages are kept
//! beside the entries per sort order and format, so a hit is one `fstatat` and a copy.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::listing::{self, Entry, Order};
use super::path::Target;
use super::{Files, Outcome};
use crate::http::response::{Connection, Head};
use crate::http::{Method, Request, Status};
use crate::site::Site;
use crate::sys::fs::FileId;

/// Most entries listed per directory; beyond, the page says it is truncated.
pub const MAX_ENTRIES: usize = 100_000;
/// How long a directory's entries are reused without rereading it.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Most directories whose entries are kept per worker.
const MAX_DIRS: usize = 64;

/// One directory as last read.
struct Listed {
    id: FileId,
    read_at: Instant,
    entries: Vec<Entry>,
    truncated: bool,
    /// Rendered pages: (order, json) → body.
    pages: Vec<((Order, bool), Vec<u8>)>,
}

/// The worker's listings, by (site, directory path).
#[derive(Default)]
pub struct Cache {
    dirs: FxHashMap<(usize, String), Listed>,
}

impl Cache {
    pub fn clear(&mut self) {
        self.dirs.clear();
    }
}

/// Answers a request for a directory that has no index and may be listed.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    site: &Site,
    files: &mut Files,
    req: &Request,
    target: &Target,
    dir: File,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Result<Outcome, Status> {
    let mut dir_path = target.path.to_string();
    if !dir_path.ends_with('/') {
        dir_path.push('/');
    }
    let id = FileId::of(&dir.metadata().map_err(|_| Status::InternalServerError)?);
    let now = Instant::now();
    let key = (site.id, dir_path);
    let fresh = files
        .listings
        .dirs
        .get(&key)
        .is_some_and(|l| l.id == id && now.duration_since(l.read_at) < MAX_AGE);
    if !fresh {
        let rel = key.1.trim_start_matches('/');
        let (entries, truncated) = listing::read_dir(&dir, MAX_ENTRIES, |name| {
            // A symlink is listed only when it resolves beneath the root.
            let file = site.root.open_beneath(&format!("{rel}{name}")).ok()?;
            let meta = file.metadata().ok()?;
            (meta.is_file() || meta.is_dir()).then(|| (meta.is_dir(), meta.len(), meta.mtime()))
        })
        .map_err(|e| {
            crate::log::error(format_args!("listing \"{}\" failed: {e}", key.1));
            Status::InternalServerError
        })?;
        if files.listings.dirs.len() >= MAX_DIRS {
            files.listings.dirs.clear();
        }
        files.listings.dirs.insert(
            key.clone(),
            Listed {
                id,
                read_at: now,
                entries,
                truncated,
                pages: Vec::new(),
            },
        );
    }
    let listed = files
        .listings
        .dirs
        .get_mut(&key)
        .expect("present: checked or inserted");
    let json = wants_json(req);
    let order = listing::parse_order(target.query);
    let page = match listed.pages.iter().position(|(k, _)| *k == (order, json)) {
        Some(i) => &listed.pages[i].1,
        None => {
            let mut sorted = listed.entries.clone();
            listing::sort(&mut sorted, order);
            let body = if json {
                listing::render_json(&sorted)
            } else {
                listing::render_html(&key.1, &sorted, order, listed.truncated)
            };
            listed.pages.push(((order, json), body));
            &listed.pages.last().expect("just pushed").1
        }
    };
    let mut head = Head::new(Status::Ok, page.len() as u64);
    head.content_type = Some(if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    });
    head.cache_control = Some("no-cache");
    head.connection = conn;
    head.rules = site.config.headers.rules_for(&target.path, 200);
    head.encode(date, out);
    let is_head = req.method == Method::Head;
    if !is_head {
        out.extend_from_slice(page);
    }
    Ok(Outcome {
        status: Status::Ok,
        body: super::Body::None,
        body_len: if is_head { 0 } else { page.len() as u64 },
        close: false,
    })
}

/// JSON when the client asks for `application/json` (and not for HTML first).
fn wants_json(req: &Request) -> bool {
    let Some(accept) = req.accept else {
        return false;
    };
    for media in super::accepted_media(accept) {
        if media.eq_ignore_ascii_case(b"application/json") {
            return true;
        }
        if media.eq_ignore_ascii_case(b"text/html") {
            return false;
        }
    }
    false
}
