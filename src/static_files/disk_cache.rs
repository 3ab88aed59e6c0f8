//! The optional cache directory shared by the workers: encoded variants written here are
//! reused by the other workers, by the next generation after a reload and by a worker
//! that replaced a crashed one.
//!
//! - **Never a torn file.** An entry is written to a temp file of its own (a name unique
//!   to the process and the call, `O_EXCL`, mode 0600) in the same directory, fully, and
//!   then renamed over its name: a reader opens either the whole old entry, the whole new
//!   one or nothing. A worker that dies mid-write leaves only a temp file, which no key
//!   names and [`DiskCache::clean`] removes after a minute.
//! - **Never a file from before a power loss.** Entries are not fsync'ed (that would
//!   block the worker's loop on the disk), so after a power loss a renamed entry could
//!   come back short. Every entry's file name therefore begins with this boot's id
//!   (`/proc/sys/kernel/random/boot_id`): entries written before the last boot are never
//!   opened, and `clean` removes them.
//! - **Never stale.** The name ([`DiskCache::key`]) is derived from the source file's
//!   identity (device, inode, size, mtime and ctime in nanoseconds), the coding and the
//!   level: a changed file, or another level, names another entry.
//! - **Bounded.** `clean` keeps the entries within `max_bytes`, removing the least
//!   recently used first, and reads a bounded number of directory entries per call.
//!   Between two calls the directory may exceed the bound by what was written since.
//!
//! Files of other names in the directory are left alone and not counted.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::http::coding::Coding;
use crate::sys::fs::FileId;

/// Where the kernel tells this boot's id.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Hex digits of the boot id kept in file names: 64 bits tell boots apart.
const BOOT_LEN: usize = 16;
/// The name prefix of temp files. Keys never begin with '.'.
const TEMP_PREFIX: &str = ".tmp-";
/// A temp file lives for one `put` (a write and a rename, far below a second); one older
/// than this was left by a process that died.
const TEMP_MAX_AGE: Duration = Duration::from_secs(60);
/// Most directory entries `clean` stats (and so removes) per call: 10 000 `statx` calls
/// and a sort are a few milliseconds.
const MAX_STAT: usize = 10_000;
/// Most names `clean` lists per call; the ones past [`MAX_STAT`] are only counted (no
/// syscall per name), to estimate the size of the entries it did not stat.
const MAX_LIST: usize = 100_000;
/// Longest key accepted: [`DiskCache::key`] makes at most about 120 bytes, and with the
/// boot prefix the name stays far below the file systems' 255.
const MAX_KEY_LEN: usize = 200;
/// Attempts at a fresh temp name: a clash means a temp file of a dead process whose pid
/// was reused.
const TEMP_ATTEMPTS: u32 = 16;

/// Makes temp names unique within a process (the pid makes them unique between).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cache directory of encoded variants.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    /// This boot's id, the prefix of every entry's file name.
    boot: String,
}

/// What one [`DiskCache::clean`] removed: stale temp files, entries of earlier boots and
/// entries evicted for the size bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Files removed.
    pub removed: usize,
    /// Their total size.
    pub bytes: u64,
}

/// How `clean` sees a directory entry, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Temp,
    Entry,
    OtherBoot,
    Foreign,
}

impl DiskCache {
    /// Creates `dir` (mode 0700, recursively) when missing; an existing directory is used
    /// as it is. `max_bytes` bounds the total size of the entries (enforced by
    /// [`DiskCache::clean`]).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<DiskCache> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let message = format!("{} is not a directory", dir.display());
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The umask can only take bits away: never more open than 0700.
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            Err(e) => return Err(e),
        }
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            max_bytes,
            boot: boot_id(),
        })
    }

    /// The entry's name: the source file's identity (device, inode, size, mtime and ctime
    /// in nanoseconds) in hex joined by '-', then the level and the coding's file suffix,
    /// e.g. `803-4a1c2-1f40-18b3c0f2a1d4e000-18b3c0f2a1d4e000-9.br`. A changed source file
    /// never matches an old entry. (On disk the name is prefixed with the boot id.)
    pub fn key(id: &FileId, coding: Coding, level: u32) -> String {
        format!(
            "{:x}-{:x}-{:x}-{:x}-{:x}-{}{}",
            id.dev,
            id.ino,
            id.size,
            id.mtime_ns,
            id.ctime_ns,
            level,
            coding.file_suffix()
        )
    }

    /// Opens a complete entry read-only (`O_NOFOLLOW`, `O_CLOEXEC`), or None when there is
    /// none (or the name is not a key, or the file is empty or not a regular file). Never
    /// writes: not even the entry's times.
    pub fn get(&self, key: &str) -> Option<File> {
        if !is_key(key) {
            return None;
        }
        let file = OpenOptions::new()
            .read(true)
            // O_NONBLOCK: a FIFO put here cannot block the worker; no effect on files.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.path(key))
            .ok()?;
        let meta = file.metadata().ok()?;
        // Every coding encodes even empty content into a few bytes.
        (meta.is_file() && meta.len() > 0).then_some(file)
    }

    /// Writes the entry atomically: a temp file with a unique name (pid + counter,
    /// `O_EXCL`, mode 0600) in the same directory, written fully, then renamed over the
    /// key's name. On any error the temp file is removed and the error returned.
    pub fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        if !is_key(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid cache key",
            ));
        }
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty cache entry",
            ));
        }
        let (temp, mut file) = self.create_temp()?;
        let result = file
            .write_all(bytes)
            .and_then(|()| fs::rename(&temp, self.path(key)));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Housekeeping, to be called rarely (once a minute by one worker): removes temp files
    /// older than a minute and entries of earlier boots, then, while the entries' total
    /// size exceeds `max_bytes`, the least recently used entries.
    ///
    /// "Last used" is the later of an entry's mtime (when it was written) and its atime:
    /// [`DiskCache::get`] stays read-only, and the kernel moves the atime on the first
    /// read after the write and then at most once a day (the default `relatime`); under
    /// `noatime` this is the write time, and eviction oldest-written first.
    ///
    /// Bounded: at most 10 000 directory entries are stat'ed (and so removed) per call and
    /// 100 000 listed; when the directory holds more, the size of the entries not stat'ed
    /// is estimated from the ones that were, and the next calls go on.
    pub fn clean(&self) -> io::Result<CleanStats> {
        self.clean_bounded(MAX_STAT, MAX_LIST)
    }

    fn clean_bounded(&self, max_stat: usize, max_list: usize) -> io::Result<CleanStats> {
        let now = SystemTime::now();
        let mut stats = CleanStats::default();
        // (last used, size, name) of the entries stat'ed.
        let mut entries: Vec<(SystemTime, u64, OsString)> = Vec::new();
        let mut stated = 0;
        let mut not_stated = 0u64;
        for dirent in fs::read_dir(&self.dir)?.take(max_list) {
            let dirent = dirent?;
            let name = dirent.file_name();
            let kind = name.to_str().map_or(Kind::Foreign, |n| self.kind(n));
            if kind == Kind::Foreign {
                continue;
            }
            if stated == max_stat {
                not_stated += u64::from(kind == Kind::Entry);
                continue;
            }
            stated += 1;
            let Ok(meta) = dirent.metadata() else {
                continue; // removed meanwhile
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            let stale = match kind {
                Kind::Temp => now.duration_since(modified).unwrap_or_default() > TEMP_MAX_AGE,
                Kind::OtherBoot => true,
                Kind::Entry | Kind::Foreign => false,
            };
            if stale {
                self.remove(&name, meta.len(), &mut stats);
            } else if kind == Kind::Entry {
                let used = meta.accessed().map_or(modified, |a| a.max(modified));
                entries.push((used, meta.len(), name));
            }
        }
        let stated_bytes: u64 = entries.iter().map(|e| e.1).sum();
        let average = stated_bytes.checked_div(entries.len() as u64).unwrap_or(0);
        let mut total = stated_bytes.saturating_add(average.saturating_mul(not_stated));
        if total > self.max_bytes {
            entries.sort_unstable_by_key(|e| e.0);
            for (_, len, name) in entries {
                if total <= self.max_bytes {
                    break;
                }
                self.remove(&name, len, &mut stats);
                total = total.saturating_sub(len);
            }
        }
        Ok(stats)
    }

    fn remove(&self, name: &OsStr, len: u64, stats: &mut CleanStats) {
        if fs::remove_file(self.dir.join(name)).is_ok() {
            stats.removed += 1;
            stats.bytes += len;
        }
    }

    fn kind(&self, name: &str) -> Kind {
        if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
            let is_temp = rest
                .split_once('-')
                .is_some_and(|(pid, n)| is_digits(pid) && is_digits(n));
            return if is_temp { Kind::Temp } else { Kind::Foreign };
        }
        let (Some(boot), Some(key)) = (name.get(..BOOT_LEN), name.get(BOOT_LEN + 1..)) else {
            return Kind::Foreign;
        };
        if name.as_bytes()[BOOT_LEN] != b'-'
            || !boot.bytes().all(|b| b.is_ascii_hexdigit())
            || !is_key(key)
            || !Coding::ALL.iter().any(|c| key.ends_with(c.file_suffix()))
        {
            Kind::Foreign
        } else if boot == self.boot {
            Kind::Entry
        } else {
            Kind::OtherBoot
        }
    }

    /// The path of the key's entry: `dir/<boot>-<key>`.
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}-{key}", self.boot))
    }

    /// A new temp file, open for writing, and its path.
    fn create_temp(&self) -> io::Result<(PathBuf, File)> {
        let pid = std::process::id();
        let mut attempt = 0;
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.join(format!("{TEMP_PREFIX}{pid}-{n}"));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path);
            match opened {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < TEMP_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// This boot's id, its first [`BOOT_LEN`] hex digits; zeros when the kernel does not tell
/// (then entries from before a reboot are not told apart).
fn boot_id() -> String {
    let text = fs::read_to_string(BOOT_ID_PATH).unwrap_or_default();
    let hex: String = text
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(BOOT_LEN)
        .collect();
    if hex.len() == BOOT_LEN {
        hex
    } else {
        "0".repeat(BOOT_LEN)
    }
}

/// Whether `key` can name an entry: what [`DiskCache::key`] makes (lowercase hex digits,
/// digits, '-', the suffix), so never a path, a temp name or a dotfile.
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'-' | b'.'))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::fs::FileTimes;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("srvd-disk-cache-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn id() -> FileId {
        FileId {
            dev: 0x803,
            ino: 1234,
            size: 65536,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_223_456_789,
        }
    }

    fn read(mut file: File) -> Vec<u8> {
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    /// Sets both times of `path` to `secs_ago` seconds ago.
    fn age(path: &Path, secs_ago: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        set_times(path, t, t);
    }

    fn set_times(path: &Path, accessed: SystemTime, modified: SystemTime) {
        let file = File::open(path).unwrap();
        let times = FileTimes::new()
            .set_accessed(accessed)
            .set_modified(modified);
        file.set_times(times).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn key_changes_when_any_identity_field_coding_or_level_changes() {
        let base = id();
        let mut variants = vec![base];
        variants.push(FileId { dev: 0x804, ..base });
        variants.push(FileId { ino: 1235, ..base });
        variants.push(FileId {
            size: 65537,
            ..base
        });
        variants.push(FileId {
            mtime_ns: base.mtime_ns + 1,
            ..base
        });
        variants.push(FileId {
            ctime_ns: base.ctime_ns + 1,
            ..base
        });
        variants.push(FileId {
            mtime_ns: -1,
            ..base
        });
        let mut keys = HashSet::new();
        for v in &variants {
            for coding in Coding::ALL {
                for level in [1, 9, 11, 19] {
                    let key = DiskCache::key(v, coding, level);
                    assert!(is_key(&key), "{key}");
                    assert!(key.ends_with(coding.file_suffix()), "{key}");
                    assert!(keys.insert(key.clone()), "duplicate {key}");
                }
            }
        }
        assert_eq!(keys.len(), variants.len() * 3 * 4);
        // Fields run together must not collide: 1-23 vs 12-3.
        let a = FileId {
            dev: 1,
            ino: 0x23,
            ..base
        };
        let b = FileId {
            dev: 0x12,
            ino: 3,
            ..base
        };
        assert_ne!(
            DiskCache::key(&a, Coding::Br, 5),
            DiskCache::key(&b, Coding::Br, 5)
        );
        assert_eq!(
            DiskCache::key(&base, Coding::Gzip, 9),
            "803-4d2-10000-17979cfe3d85cd15-17979cfe437bae15-9.gz"
        );
    }

    #[test]
    fn put_then_get_returns_the_same_bytes() {
        let scratch = Scratch::new("put-get");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        let key = DiskCache::key(&id(), Coding::Br, 5);
        assert!(cache.get(&key).is_none(), "nothing yet");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        cache.put(&key, &bytes).unwrap();
        assert_eq!(read(cache.get(&key).unwrap()), bytes);
        // Replacing keeps one entry and serves the new bytes.
        cache.put(&key, b"second").unwrap();
        assert_eq!(read(cache.get(&key).unwrap()), b"second");
        assert_eq!(names(&scratch.0), [format!("{}-{key}", cache.boot)]);
        // Another cache on the same directory (another worker) sees it.
        let other = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        assert_eq!(read(other.get(&key).unwrap()), b"second");
        let meta = fs::metadata(cache.path(&key)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn keys_that_are_no_entry_names_are_refused() {
        let scratch = Scratch::new("bad-keys");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        fs::write(scratch.0.join("x"), b"outside").unwrap();
        for key in ["", "../x", "a/b", ".tmp-1-1", ".hidden", "A.br", "x\0y"] {
            assert!(cache.put(key, b"data").is_err(), "{key:?}");
            assert!(cache.get(key).is_none(), "{key:?}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        assert!(cache.put(&long, b"data").is_err());
        let key = DiskCache::key(&id(), Coding::Zstd, 3);
        assert!(cache.put(&key, b"").is_err(), "an empty entry");
        assert_eq!(names(&scratch.0), ["x"], "nothing written");
    }

    #[test]
    fn a_failed_put_leaves_no_temp_file() {
        let scratch = Scratch::new("put-fails");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        let key = DiskCache::key(&id(), Coding::Br, 5);
        // A non-empty directory where the entry goes: the rename fails.
        fs::create_dir(cache.path(&key)).unwrap();
        fs::write(cache.path(&key).join("f"), b"").unwrap();
        assert!(cache.put(&key, b"data").is_err());
        assert_eq!(names(&scratch.0), [format!("{}-{key}", cache.boot)]);
    }

    #[test]
    fn get_refuses_symlinks_empty_files_and_directories() {
        let scratch = Scratch::new("get-refuses");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        let target = scratch.0.join("target");
        fs::write(&target, b"not an entry").unwrap();
        let link = DiskCache::key(&id(), Coding::Br, 1);
        std::os::unix::fs::symlink(&target, cache.path(&link)).unwrap();
        assert!(cache.get(&link).is_none(), "O_NOFOLLOW");
        let empty = DiskCache::key(&id(), Coding::Br, 2);
        fs::write(cache.path(&empty), b"").unwrap();
        assert!(cache.get(&empty).is_none());
        let dir = DiskCache::key(&id(), Coding::Br, 3);
        fs::create_dir(cache.path(&dir)).unwrap();
        assert!(cache.get(&dir).is_none());
        let fine = DiskCache::key(&id(), Coding::Br, 4);
        fs::write(cache.path(&fine), b"ok").unwrap();
        assert!(cache.get(&fine).is_some());
    }

    #[test]
    fn a_leftover_temp_file_is_never_returned_and_is_removed_by_clean_when_old() {
        let scratch = Scratch::new("temp");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        let key = DiskCache::key(&id(), Coding::Gzip, 9);
        // A worker dies in the middle of `put`: half the bytes, no rename.
        let (temp, mut file) = cache.create_temp().unwrap();
        file.write_all(&[7u8; 500]).unwrap();
        drop(file);
        let temp_name = temp.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(cache.kind(&temp_name), Kind::Temp);
        assert!(cache.get(&key).is_none());
        assert!(cache.get(&temp_name).is_none());

        // Young: may belong to a put in progress.
        assert_eq!(cache.clean().unwrap(), CleanStats::default());
        assert!(temp.exists());

        age(&temp, 61);
        let stats = cache.clean().unwrap();
        assert_eq!(
            stats,
            CleanStats {
                removed: 1,
                bytes: 500
            }
        );
        assert!(!temp.exists());
        assert!(names(&scratch.0).is_empty());
    }

    #[test]
    fn size_bound_evicts_least_recently_used_first() {
        let scratch = Scratch::new("evict");
        let cache = DiskCache::open(&scratch.0, 3000).unwrap();
        let keys: Vec<String> = (1..=5)
            .map(|level| DiskCache::key(&id(), Coding::Zstd, level))
            .collect();
        // Put in an order unlike their age: keys[i] was last used 1000 - 100 i s ago.
        for i in [2, 0, 4, 1, 3] {
            cache.put(&keys[i], &[i as u8; 1000]).unwrap();
            age(&cache.path(&keys[i]), 1000 - 100 * i as u64);
        }
        let stats = cache.clean().unwrap();
        assert_eq!(
            stats,
            CleanStats {
                removed: 2,
                bytes: 2000
            }
        );
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(cache.get(key).is_some(), i >= 2, "entry {i}");
        }
        // Within the bound now: nothing more goes.
        assert_eq!(cache.clean().unwrap(), CleanStats::default());
    }

    #[test]
    fn a_recent_read_keeps_an_old_entry() {
        let scratch = Scratch::new("atime");
        let cache = DiskCache::open(&scratch.0, 1000).unwrap();
        let old_but_read = DiskCache::key(&id(), Coding::Br, 1);
        let newer = DiskCache::key(&id(), Coding::Br, 2);
        cache.put(&old_but_read, &[1; 600]).unwrap();
        cache.put(&newer, &[2; 600]).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        set_times(&cache.path(&old_but_read), now, now - 2 * hour);
        set_times(&cache.path(&newer), now - hour, now - hour);
        assert_eq!(cache.clean().unwrap().removed, 1);
        assert!(cache.get(&old_but_read).is_some());
        assert!(cache.get(&newer).is_none());
    }

    #[test]
    fn clean_removes_entries_of_other_boots_and_leaves_foreign_files() {
        let scratch = Scratch::new("boots");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        assert_eq!(cache.boot.len(), BOOT_LEN);
        let key = DiskCache::key(&id(), Coding::Br, 5);
        cache.put(&key, b"this boot").unwrap();
        let other_boot = if cache.boot.starts_with('0') {
            "1"
        } else {
            "0"
        }
        .repeat(BOOT_LEN);
        let stale = format!("{other_boot}-{key}");
        fs::write(scratch.0.join(&stale), b"torn?").unwrap();
        let foreign = ["notes.txt", ".tmp-x-1", "0123-4.br", "README"];
        for name in foreign {
            fs::write(scratch.0.join(name), b"not ours").unwrap();
            age(&scratch.0.join(name), 3600);
        }
        fs::create_dir(scratch.0.join(".tmp-1-2")).unwrap();
        let stats = cache.clean().unwrap();
        assert_eq!(
            stats,
            CleanStats {
                removed: 1,
                bytes: 5
            }
        );
        let left = names(&scratch.0);
        let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
        expected.push(".tmp-1-2".to_owned());
        expected.push(format!("{}-{key}", cache.boot));
        expected.sort();
        assert_eq!(left, expected);
        assert!(cache.get(&key).is_some());
    }

    #[test]
    fn clean_does_bounded_work_and_estimates_what_it_did_not_read() {
        let scratch = Scratch::new("bounded");
        // 20 entries of 100 bytes; room for 10.
        let cache = DiskCache::open(&scratch.0, 1000).unwrap();
        for level in 0..20 {
            let key = DiskCache::key(&id(), Coding::Br, level);
            cache.put(&key, &[0; 100]).unwrap();
        }
        let mut calls = 0;
        loop {
            let stats = cache.clean_bounded(5, 100).unwrap();
            assert!(stats.removed <= 5, "{stats:?}");
            calls += 1;
            if stats.removed == 0 {
                break;
            }
            assert!(calls < 10, "converges");
        }
        assert_eq!(names(&scratch.0).len(), 10);
        assert_eq!(calls, 3);
    }

    #[test]
    fn open_creates_the_directory_with_mode_0700() {
        let scratch = Scratch::new("open");
        let dir = scratch.0.join("a/b");
        let cache = DiskCache::open(&dir, 1 << 20).unwrap();
        for d in [&scratch.0, &scratch.0.join("a"), &dir] {
            let mode = fs::metadata(d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        // Existing: opened as it is.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        DiskCache::open(&dir, 1 << 20).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
        // A file where the directory should be.
        let file = scratch.0.join("file");
        fs::write(&file, b"").unwrap();
        assert!(DiskCache::open(&file, 1 << 20).is_err());
        drop(cache);
    }

    #[test]
    fn errors_are_returned_when_the_directory_is_gone() {
        let scratch = Scratch::new("gone");
        let cache = DiskCache::open(&scratch.0, 1 << 20).unwrap();
        fs::remove_dir_all(&scratch.0).unwrap();
        let key = DiskCache::key(&id(), Coding::Br, 5);
        assert!(cache.put(&key, b"data").is_err());
        assert!(cache.get(&key).is_none());
        assert!(cache.clean().is_err());
    }

    #[test]
    fn concurrent_puts_of_the_same_key_leave_a_complete_file() {
        let scratch = Scratch::new("race");
        let cache = Arc::new(DiskCache::open(&scratch.0, 1 << 30).unwrap());
        let key = DiskCache::key(&id(), Coding::Gzip, 6);
        const LEN: usize = 256 * 1024;
        let writers: Vec<_> = [b'a', b'b']
            .into_iter()
            .map(|byte| {
                let cache = Arc::clone(&cache);
                let key = key.clone();
                std::thread::spawn(move || {
                    let bytes = vec![byte; LEN];
                    for _ in 0..50 {
                        cache.put(&key, &bytes).unwrap();
                    }
                })
            })
            .collect();
        // The reader runs until the writers are done (however the threads are scheduled
        // on a loaded machine), and once more after that, so it always sees an entry.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let cache = Arc::clone(&cache);
            let key = key.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut last = false;
                while !last {
                    last = done.load(std::sync::atomic::Ordering::Acquire);
                    if let Some(file) = cache.get(&key) {
                        let bytes = read(file);
                        assert_eq!(bytes.len(), LEN, "torn entry");
                        assert!(bytes.iter().all(|&b| b == bytes[0]), "mixed entry");
                        seen += 1;
                    }
                }
                seen
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        let bytes = read(cache.get(&key).unwrap());
        assert_eq!(bytes.len(), LEN);
        assert!(bytes == vec![b'a'; LEN] || bytes == vec![b'b'; LEN]);
        assert_eq!(names(&scratch.0).len(), 1, "no temp file left");
    }
}
