//! Opening files beneath the document root.
//!
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` lets the kernel refuse any path that
//! would leave the root directory, whether through `..`, an absolute symlink or a symlink
//! that climbs out. Symlinks whose targets stay inside the root resolve normally. On kernels
//! without `openat2` (before 5.6) we fall back to `openat` followed by a check of the
//! resolved `/proc/self/fd` link against the canonical root.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Set once `openat2` answered ENOSYS, so we stop trying it.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open directory handle for the document root.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// The canonical path, for the fallback containment check.
    canonical: std::path::PathBuf,
}

impl RootDir {
    /// Opens `path` (already canonical) as a directory.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_dir()
            .open(path)?;
        Ok(RootDir {
            fd: OwnedFd::from(file),
            canonical: path.to_path_buf(),
        })
    }

    /// The directory's fd, to keep across `become_worker`.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens `rel` (a normalized path without a leading '/', or "." for the root itself)
    /// read-only beneath the root. A path that would escape answers `PermissionDenied`.
    pub fn open_beneath(&self, rel: &str) -> io::Result<File> {
        let rel = if rel.is_empty() { "." } else { rel };
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let how = OpenHow::new()
                .flags(flags)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match nix::fcntl::openat2(self.fd.as_raw_fd(), rel, how) {
                // SAFETY: openat2 just returned this fd to us; nothing else owns it.
                Ok(fd) => return Ok(unsafe { File::from_raw_fd(fd) }),
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // An absolute symlink, or one that climbs out and back in: allowed only if
                // where it really leads is inside the root.
                Err(Errno::EXDEV) => return self.open_canonical(rel, flags),
                Err(Errno::ELOOP) => return Err(io::Error::from(io::ErrorKind::PermissionDenied)),
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        self.open_fallback(rel, flags)
    }

    /// RESOLVE_BENEATH refuses absolute symlinks even when their target is inside the
    /// root. Resolve the path fully, keep it only if it lies beneath the root, and open
    /// that symlink-free path with RESOLVE_NO_SYMLINKS: if a link was swapped between the
    /// two steps, the open fails instead of following it.
    fn open_canonical(&self, rel: &str, flags: OFlag) -> io::Result<File> {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let real = std::fs::canonicalize(self.canonical.join(rel)).map_err(|_| denied())?;
        let inside = real.strip_prefix(&self.canonical).map_err(|_| denied())?;
        let inside = if inside.as_os_str().is_empty() {
            Path::new(".")
        } else {
            inside
        };
        let how = OpenHow::new().flags(flags).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        match nix::fcntl::openat2(self.fd.as_raw_fd(), inside, how) {
            // SAFETY: openat2 just returned this fd to us; nothing else owns it.
            Ok(fd) => Ok(unsafe { File::from_raw_fd(fd) }),
            Err(_) => Err(denied()),
        }
    }

    /// Pre-5.6 kernels: open, then verify where the fd really points.
    fn open_fallback(&self, rel: &str, flags: OFlag) -> io::Result<File> {
        let fd = nix::fcntl::openat(Some(self.fd.as_raw_fd()), rel, flags, Mode::empty())
            .map_err(io::Error::from)?;
        // SAFETY: openat just returned this fd to us; nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        if real.starts_with(&self.canonical) {
            Ok(file)
        } else {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        }
    }
}

/// What identifies one version of a file's content: if any of these change, the content
/// may have changed. Nanosecond mtime and ctime catch rewrites within the same second;
/// ctime also moves on every metadata change (rename over, chmod, truncate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileId {
    /// From `std` metadata of an open file.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

impl RootDir {
    /// One `fstatat` of `rel` relative to the root, following symlinks. Used only to
    /// revalidate a file that was opened safely before: a path that now leads elsewhere
    /// (a swapped symlink) yields another `FileId`, which is a cache miss, and the miss is
    /// opened again with [`RootDir::open_beneath`].
    pub fn stat_beneath(&self, rel: &str) -> io::Result<FileId> {
        let st =
            nix::sys::stat::fstatat(Some(self.fd.as_raw_fd()), rel, nix::fcntl::AtFlags::empty())
                .map_err(io::Error::from)?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
        })
    }
}

/// Adds `O_DIRECTORY` to an `OpenOptions`.
trait DirFlag {
    fn custom_flags_dir(&mut self) -> &mut Self;
}

impl DirFlag for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_DIRECTORY)
    }
}
