//! Process control: fork a worker, turn the child into a worker, drop privileges.
//!
//! Invariant: the master is single-threaded. That is what makes `fork()` sound (no other
//! thread can hold a lock the child would inherit), and `fork_worker` is the only place
//! the crate forks.

use std::io;
use std::os::fd::RawFd;

use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork we are on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the process. The child must go straight into [`become_worker`] and the worker
/// loop, and leave through [`exit`]; it never returns into master code.
pub fn fork_worker() -> io::Result<Forked> {
    // SAFETY: the master is single-threaded (it never spawns threads, and signal-hook's
    // pipe registration runs in the signal handler, not a thread), so no lock or allocator
    // state can be held by another thread at the moment of the fork. The child only runs
    // worker code and exits without returning to the caller's frames.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Asks the kernel to send `sig` when the master dies, then checks it has not died
/// already (between fork and this call the child would have been reparented).
///
/// The child's very first act is `die_with_master(master, SIGKILL)`: during start-up all
/// signals are blocked (see [`crate::sys::signals::Signals::block_all`]) and a step such
/// as opening a FIFO access log may block, so only an unblockable signal guarantees the
/// worker cannot outlive its master; a starting worker has nothing to clean up. Once its
/// handlers run, the worker switches to SIGTERM, its fast stop.
pub fn die_with_master(master: Pid, sig: Signal) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(sig).map_err(io::Error::from)?;
    if nix::unistd::getppid() != master {
        return Err(io::Error::other("master exited during worker start"));
    }
    Ok(())
}

/// Closes every file descriptor except stdio and `keep`. Signals stay blocked (the master
/// blocked them around fork) until the worker has installed its own handlers.
///
/// Signal *handlers* are reset by [`crate::sys::signals::Signals::forget`] before this is
/// called, so that no inherited handler can write to a pipe we are about to close.
pub fn become_worker(keep: &[RawFd]) -> io::Result<()> {
    close_fds_except(keep)
}

/// Closes every open fd above 2 that is not in `keep`, by listing /proc/self/fd.
fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    // Collect first: the directory listing holds an fd of its own while it is open.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // EBADF is expected once, for the read_dir fd that is already gone.
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}

/// When running as root and a user (and optionally a group) is configured, switch to
/// them for good: supplementary groups, then gid, then uid.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> io::Result<()> {
    let Some((uid, gid)) = worker_ids(user, group)? else {
        return Ok(());
    };
    nix::unistd::setgroups(&[gid]).map_err(io::Error::from)?;
    nix::unistd::setgid(gid).map_err(io::Error::from)?;
    if let Some(uid) = uid {
        nix::unistd::setuid(uid).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Gives directories the workers write to (the compression cache) to the user and group
/// they will run as, before privileges are dropped. Nothing to do unless started as root
/// with `user`/`group`.
pub fn hand_over(
    dirs: &[&std::path::Path],
    user: Option<&str>,
    group: Option<&str>,
) -> io::Result<()> {
    let Some((uid, gid)) = worker_ids(user, group)? else {
        return Ok(());
    };
    for dir in dirs {
        nix::unistd::chown(*dir, uid, Some(gid)).map_err(io::Error::from)?;
    }
    Ok(())
}

/// The uid (if a user is set) and gid the workers switch to, or `None` when there is
/// nothing to switch (not root, or neither key set).
fn worker_ids(
    user: Option<&str>,
    group: Option<&str>,
) -> io::Result<Option<(Option<nix::unistd::Uid>, nix::unistd::Gid)>> {
    use nix::unistd::{Group, User};
    if !nix::unistd::geteuid().is_root() || (user.is_none() && group.is_none()) {
        return Ok(None);
    }
    let u = match user {
        Some(name) => Some(
            User::from_name(name)
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::other(format!("unknown user \"{name}\"")))?,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => {
            Group::from_name(name)
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::other(format!("unknown group \"{name}\"")))?
                .gid
        }
        None => u.as_ref().map(|u| u.gid).expect("user or group is set"),
    };
    Ok(Some((u.map(|u| u.uid), gid)))
}

/// Leaves the process now: used by workers, which never unwind into master frames.
pub fn exit(code: i32) -> ! {
    std::process::exit(code)
}
