//! A worker's cache of files: the bytes of small files, an open descriptor for large ones,
//! and their precomputed validators, so a hit costs one `fstatat` (revalidation) instead
//! of open + fstat (+ read) + close.
//!
//! Never stale: a file covered by inotify watches ([`super::watch`]) is dropped, with the
//! whole cache, as soon as anything about it changes; any other file is stat'ed again on
//! every hit and its [`FileId`] (device, inode, size, mtime and ctime in nanoseconds)
//! compared with the cached one; any difference, or a failed stat, drops the entry and the
//! request takes the normal path (which opens the file beneath the root again). A file
//! changed on disk is therefore served new on the very next request.
//!
//! Bounded: at most [`MAX_ENTRIES`] entries, [`MAX_BYTES`] of content and
//! `FileCache::max_files` descriptors per worker. Small files are kept as bytes while the
//! byte budget lasts and as descriptors after that (a descriptor costs no resident memory:
//! the page cache holds the data, and a hit pays one `pread`). When an insert would exceed
//! a limit anyway, the cache is emptied (simple, and rare). A descriptor still in use by a
//! response stays open until that response ends (`Rc`).

use std::time::SystemTime;

use std::fs::File;
use std::rc::Rc;

use crate::sys::fs::{FileId, RootDir};

/// Most files cached per worker.
pub const MAX_ENTRIES: usize = 4096;
/// Most content bytes cached per worker: small enough to keep a worker's RSS modest,
/// large enough for a typical site's hot HTML, CSS, JS and icons.
/// Kept small on purpose: past it, small files are cached as descriptors, which saves the
/// same open/fstat/close syscalls without adding to the worker's resident memory.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Most descriptors cached per worker, whatever the fd limit allows.
pub const MAX_OPEN_FILES: usize = 1024;

/// What a cache entry holds of the file's content.
#[derive(Debug)]
pub enum Content {
    /// A small file (or an encoded variant), whole; shared with encoding jobs.
    Bytes(Rc<[u8]>),
    /// A large file, open; responses send from it with offsets (sendfile, pread), so one
    /// descriptor serves any number of concurrent responses.
    File(Rc<File>),
}

impl Content {
    fn bytes(&self) -> usize {
        match self {
            Content::Bytes(b) => b.len(),
            Content::File(_) => 0,
        }
    }

    fn files(&self) -> usize {
        usize::from(matches!(self, Content::File(_)))
    }
}

/// One cached file.
#[derive(Debug)]
pub struct Entry {
    pub id: FileId,
    /// The file's path relative to the root (after index resolution), for revalidation.
    pub rel: String,
    /// The request path that names the file (e.g. "/docs/index.html"), for the MIME type.
    pub served_path: String,
    pub etag: String,
    pub last_modified: SystemTime,
    /// `Last-Modified` value, formatted once.
    pub last_modified_text: String,
    pub body: Content,
    /// Covered by inotify watches ([`super::watch`]): hits skip the `fstatat`, and any
    /// change empties the cache instead.
    pub watched: bool,
    /// The site's header rules that match the key path (a mask, see
    /// [`crate::site::headers`]): matched once per entry, not once per response.
    pub rules: u64,
    /// Those rules as a success response writes them, rendered once (one copy per
    /// response instead of a walk over the rules), and the built-ins they suppress.
    pub rule_block: Box<[u8]>,
    pub rule_suppress: u8,
    /// Which Cache-Control the site's preset gives this file.
    pub cache_class: CacheClass,
    /// The file's encoded representations (RFC 9110 §8.4): sidecars and on-the-fly results.
    pub variants: Variants,
}

/// An encoded representation of a cached file.
#[derive(Debug)]
pub struct Variant {
    pub body: Content,
    pub len: u64,
    /// Strong and distinct per coding.
    pub etag: String,
}

/// What a cached file has besides its identity bytes, by `Coding::index`.
#[derive(Debug, Default)]
pub struct Variants {
    /// Precompressed sidecars found beside the file (`file.br`, `file.zst`, `file.gz`), not
    /// older than it.
    pub sidecar: [Option<Variant>; 3],
    /// Encoded on the fly by this worker, or found in the cache directory.
    pub encoded: [Option<Variant>; 3],
    /// An encoding was queued (or looked up in the cache directory) already.
    pub asked: [bool; 3],
    /// The file may be encoded on the fly: a compressible type within the size bounds.
    pub compressible: bool,
    /// A header rule on the path sets `Cache-Control: no-transform`.
    pub no_transform: bool,
    /// Each sidecar path probed and what was there (`None`: nothing), rechecked with the
    /// file on every hit when the entry is not watched, so a sidecar that appears, goes
    /// or changes is seen either way.
    pub sidecar_ids: Vec<(String, Option<FileId>)>,
}

impl Variants {
    /// The response may differ by Accept-Encoding: `Vary: Accept-Encoding` is due.
    pub fn varies(&self) -> bool {
        self.compressible || self.sidecar.iter().any(Option::is_some)
    }

    fn encoded_bytes(&self) -> usize {
        self.encoded.iter().flatten().map(|v| v.body.bytes()).sum()
    }
}

/// The Cache-Control class of a file under a site's `cache` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheClass {
    /// No preset.
    None,
    /// HTML: revalidate every time.
    NoCache,
    /// A content-hashed name: cached for a year.
    Immutable,
    /// Any other asset: the site's `cache_max_age`.
    Other,
}

/// (site, request path) → cached file. One map per site, one budget for the worker.
#[derive(Debug)]
pub struct FileCache {
    /// FxHash: keys are paths of files that exist under the root (only opened files are
    /// inserted), and the maps are bounded, so a cheap hash is safe here.
    maps: Vec<rustc_hash::FxHashMap<String, Entry>>,
    /// Entries in all maps.
    entries: usize,
    /// Bytes of encoded variants in memory (their own budget, see `add_encoded`).
    encoded: usize,
    bytes: usize,
    files: usize,
    /// Descriptor budget: a quarter of the fd limit (connections need the rest), at most
    /// [`MAX_OPEN_FILES`].
    max_files: usize,
}

impl FileCache {
    /// An empty cache for `sites` sites, with a descriptor budget of a quarter of the fd
    /// limit (connections need the rest), at most [`MAX_OPEN_FILES`].
    pub fn new(sites: usize) -> FileCache {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        FileCache::with_max_files(sites, (limit / 4).clamp(16, MAX_OPEN_FILES as u64) as usize)
    }

    /// An empty cache that keeps at most `max_files` descriptors.
    pub fn with_max_files(sites: usize, max_files: usize) -> FileCache {
        FileCache {
            maps: (0..sites.max(1)).map(|_| Default::default()).collect(),
            entries: 0,
            encoded: 0,
            bytes: 0,
            files: 0,
            max_files,
        }
    }

    /// Whether a small file of `len` bytes still fits the byte budget.
    pub fn has_room_for_bytes(&self, len: u64) -> bool {
        self.bytes as u64 + len <= MAX_BYTES as u64
    }

    /// Whether `key` is cached and the file on disk is still the one cached; a stale entry
    /// is dropped. (A bool, not the entry: returning a borrow from one branch while the
    /// other removes is what the borrow checker refuses, and a second lookup per hit here
    /// would be a third one per request.)
    pub fn is_fresh(&mut self, site: usize, root: &RootDir, key: &str) -> bool {
        let fresh = match self.maps[site].get(key) {
            None => return false,
            Some(e) => {
                e.watched
                    || (root.stat_beneath(&e.rel).is_ok_and(|id| id == e.id)
                        && e.variants
                            .sidecar_ids
                            .iter()
                            .all(|(rel, id)| root.stat_beneath(rel).ok() == *id))
            }
        };
        if !fresh {
            if let Some(old) = self.maps[site].remove(key) {
                self.forget(&old);
            }
        }
        fresh
    }

    /// The entry for `key`, without revalidation: only after [`FileCache::is_fresh`] or
    /// [`FileCache::insert`] for the same key in the same request.
    pub fn entry(&self, site: usize, key: &str) -> Option<&Entry> {
        self.maps[site].get(key)
    }

    /// Mutable access to an entry (to add an encoded variant or mark one asked for).
    pub fn entry_mut(&mut self, site: usize, key: &str) -> Option<&mut Entry> {
        self.maps[site].get_mut(key)
    }

    /// Bytes of encoded variants held in memory.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded
    }

    /// Stores an encoded variant of the entry at `key` if it still is the file `id`
    /// (it may have changed while the encoding ran); past `budget` bytes of encoded
    /// variants, every encoded variant in memory is dropped first. False if not stored.
    pub fn add_encoded(
        &mut self,
        site: usize,
        key: &str,
        id: &FileId,
        index: usize,
        variant: Variant,
        budget: usize,
    ) -> bool {
        let len = variant.body.bytes();
        if len > budget {
            return false;
        }
        if self.encoded + len > budget {
            for map in &mut self.maps {
                for e in map.values_mut() {
                    e.variants.encoded = Default::default();
                    e.variants.asked = Default::default();
                }
            }
            self.encoded = 0;
        }
        let Some(e) = self.maps[site].get_mut(key).filter(|e| e.id == *id) else {
            return false;
        };
        if let Some(old) = e.variants.encoded[index].replace(variant) {
            self.encoded -= old.body.bytes();
        }
        self.encoded += len;
        true
    }

    /// Caches `entry` under `key` for `site`.
    pub fn insert(&mut self, site: usize, key: String, entry: Entry) {
        if self.entries >= MAX_ENTRIES
            || self.bytes + entry.body.bytes() > MAX_BYTES
            || self.files + entry.body.files() > self.max_files
        {
            self.clear();
        }
        self.bytes += entry.body.bytes();
        self.files += entry.body.files();
        self.entries += 1;
        self.encoded += entry.variants.encoded_bytes();
        if let Some(old) = self.maps[site].insert(key, entry) {
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &Entry) {
        self.bytes -= old.body.bytes();
        self.files -= old.body.files();
        self.entries -= 1;
        self.encoded -= old.variants.encoded_bytes();
    }

    /// Empties the cache (a watched file or directory changed).
    pub fn clear(&mut self) {
        for map in &mut self.maps {
            map.clear();
        }
        self.entries = 0;
        self.bytes = 0;
        self.files = 0;
        self.encoded = 0;
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn entry(root: &RootDir, rel: &str, body: &[u8]) -> Entry {
        let file = root.open_beneath(rel).unwrap();
        Entry {
            id: FileId::of(&file.metadata().unwrap()),
            rel: rel.into(),
            served_path: format!("/{rel}"),
            etag: "\"x\"".into(),
            last_modified: UNIX_EPOCH,
            last_modified_text: String::new(),
            body: Content::Bytes(body.into()),
            watched: false,
            rules: 0,
            rule_block: Box::default(),
            rule_suppress: 0,
            cache_class: CacheClass::None,
            variants: Default::default(),
        }
    }

    fn temp_root(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("srvd-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn hit_until_the_file_changes() {
        let dir = temp_root("change");
        std::fs::write(dir.join("a.txt"), b"one").unwrap();
        let root = RootDir::open(&dir).unwrap();
        let mut cache = FileCache::new(1);
        cache.insert(0, "/a.txt".into(), entry(&root, "a.txt", b"one"));
        assert!(
            cache.is_fresh(0, &root, "/a.txt")
                && matches!(&cache.entry(0, "/a.txt").unwrap().body, Content::Bytes(b) if &b[..] == b"one")
        );
        // Same size, new content: mtime/ctime in nanoseconds differ.
        std::fs::write(dir.join("a.txt"), b"two").unwrap();
        assert!(!cache.is_fresh(0, &root, "/a.txt"));
        assert!(cache.is_empty());
    }

    #[test]
    fn removed_or_replaced_file_is_a_miss() {
        let dir = temp_root("replace");
        std::fs::write(dir.join("a.txt"), b"one").unwrap();
        let root = RootDir::open(&dir).unwrap();
        let mut cache = FileCache::new(1);
        cache.insert(0, "/a.txt".into(), entry(&root, "a.txt", b"one"));
        std::fs::write(dir.join("b.txt"), b"one").unwrap();
        std::fs::rename(dir.join("b.txt"), dir.join("a.txt")).unwrap();
        assert!(!cache.is_fresh(0, &root, "/a.txt"), "another inode");
        cache.insert(0, "/a.txt".into(), entry(&root, "a.txt", b"one"));
        std::fs::remove_file(dir.join("a.txt")).unwrap();
        assert!(!cache.is_fresh(0, &root, "/a.txt"), "gone");
    }

    #[test]
    fn bounded_by_bytes() {
        let dir = temp_root("bound");
        std::fs::write(dir.join("a.txt"), b"x").unwrap();
        let root = RootDir::open(&dir).unwrap();
        let mut cache = FileCache::new(1);
        let big = vec![0u8; MAX_BYTES / 2 + 1];
        cache.insert(0, "/1".into(), entry(&root, "a.txt", &big));
        cache.insert(0, "/2".into(), entry(&root, "a.txt", &big));
        assert_eq!(cache.len(), 1, "the second insert emptied the cache first");
        assert!(cache.bytes <= MAX_BYTES);
    }
}
