//! Change notification for the file cache (inotify), so a cache hit needs no `fstatat`.
//!
//! A cached file is *watched* when inotify watches cover everything that could change what
//! its path serves: the file itself (content, attributes, removal) and every directory from
//! the root down to it (an entry created, removed or renamed, a directory moved). Any event
//! at all empties the worker's cache; the worker reads the inotify fd before any connection
//! in the same epoll batch, and the kernel queues the event before the write that caused it
//! returns, so a request sent after a change never sees the old content.
//!
//! Paths that go through a symlink are not watched (the link's target could change where
//! no watch sees it); they, and every file whose watches could not be added (the per-user
//! watch limit), keep the per-hit `fstatat` revalidation of [`super::cache`].

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Events on a directory that change what paths below it resolve to.
fn dir_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// Events on a file that change what it serves.
fn file_mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// One worker's inotify instance.
pub struct Watcher {
    inotify: Inotify,
}

impl Watcher {
    /// A non-blocking, close-on-exec inotify instance, or `None` where inotify is missing.
    pub fn new() -> Option<Watcher> {
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .map(|inotify| Watcher { inotify })
    }

    /// The fd to register in the worker's epoll set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Watches `root/rel` and each directory from `root` down to it. False when a
    /// component is a symlink or a watch could not be added: the caller must then keep
    /// revalidating by stat.
    pub fn watch(&self, root: &Path, rel: &str) -> bool {
        let mut dir = root.to_path_buf();
        if self.inotify.add_watch(&dir, dir_mask()).is_err() {
            return false;
        }
        let mut parts = rel.split('/').filter(|p| !p.is_empty()).peekable();
        while let Some(part) = parts.next() {
            dir.push(part);
            let is_symlink =
                std::fs::symlink_metadata(&dir).map_or(true, |m| m.file_type().is_symlink());
            if is_symlink {
                return false;
            }
            let mask = if parts.peek().is_some() {
                dir_mask()
            } else {
                file_mask()
            };
            if self.inotify.add_watch(&dir, mask).is_err() {
                return false;
            }
        }
        true
    }

    /// Drains pending events; true when anything happened (or the queue overflowed, or it
    /// could not be read): the cache must be emptied.
    pub fn changed(&self) -> bool {
        let mut any = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return any,
                Ok(_) => any = true,
                Err(nix::errno::Errno::EAGAIN) => return any,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }
}
