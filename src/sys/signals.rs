//! Signals as data: a signal-hook self-pipe plus one flag per signal, turned into
//! [`Command`]s by the loop that owns them (the master's poll, the worker's epoll).
//!
//! The table of what each signal means lives here, once per role (cf. nginx `signals[]`):
//!
//! | signal | master | worker |
//! |---|---|---|
//! | HUP | `Reload` | ignored |
//! | TERM, QUIT | `GracefulStop` | TERM: `FastStop`, QUIT: `GracefulStop` |
//! | INT | `FastStop` | `FastStop` |
//! | USR1 | `ReopenLogs` | `ReopenLogs` |
//! | TTIN / TTOU | `MoreWorkers` / `FewerWorkers` | ignored |
//! | CHLD | `ChildExited` | ignored |
//!
//! Handlers do no work: they set a flag and write a byte to the pipe. The loop first drains
//! the pipe, then swaps the flags, then acts (the order signal-hook's docs prescribe, so a
//! signal arriving meanwhile is never lost).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use signal_hook::consts::signal::*;
use signal_hook::SigId;

/// What a loop should do, decoded from the signals that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Reload,
    ReopenLogs,
    GracefulStop,
    FastStop,
    ChildExited,
    MoreWorkers,
    FewerWorkers,
    Upgrade,
}

/// Which process the table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Worker,
}

/// The signal table: (signal, master intent, worker intent).
const TABLE: &[(i32, Option<Command>, Option<Command>)] = &[
    (SIGHUP, Some(Command::Reload), None),
    (
        SIGTERM,
        Some(Command::GracefulStop),
        Some(Command::FastStop),
    ),
    (
        SIGQUIT,
        Some(Command::GracefulStop),
        Some(Command::GracefulStop),
    ),
    (SIGINT, Some(Command::FastStop), Some(Command::FastStop)),
    (
        SIGUSR1,
        Some(Command::ReopenLogs),
        Some(Command::ReopenLogs),
    ),
    (SIGTTIN, Some(Command::MoreWorkers), None),
    (SIGUSR2, Some(Command::Upgrade), None),
    (SIGTTOU, Some(Command::FewerWorkers), None),
    (SIGCHLD, Some(Command::ChildExited), None),
];

/// Registered signal handlers and the read end of their wake-up pipe.
pub struct Signals {
    pipe: UnixStream,
    flags: Vec<(Arc<AtomicBool>, Command)>,
    ids: Vec<SigId>,
}

impl Signals {
    /// Installs the handlers for `role`. Signals with no intent for the role are ignored.
    pub fn install(role: Role) -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for &(sig, master, worker) in TABLE {
            let intent = match role {
                Role::Master => master,
                Role::Worker => worker,
            };
            match intent {
                Some(cmd) => {
                    let flag = Arc::new(AtomicBool::new(false));
                    ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
                    ids.push(signal_hook::low_level::pipe::register(
                        sig,
                        write.try_clone()?,
                    )?);
                    flags.push((flag, cmd));
                }
                // Registering an empty flag makes the signal harmless (ignored) in this role.
                None => ids.push(signal_hook::flag::register(
                    sig,
                    Arc::new(AtomicBool::new(false)),
                )?),
            }
        }
        Ok(Signals {
            pipe: read,
            flags,
            ids,
        })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// Drains the pipe, then collects every signal that arrived since the last call.
    pub fn pending(&mut self) -> Vec<Command> {
        let mut sink = [0u8; 64];
        loop {
            match self.pipe.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        self.flags
            .iter()
            .filter(|(flag, _)| flag.swap(false, Ordering::SeqCst))
            .map(|&(_, cmd)| cmd)
            .collect()
    }

    /// In a freshly forked child: unregister the parent's actions so no handler can write
    /// to the parent's pipe. The pipe fds are closed by `become_worker` afterwards.
    /// Blocks every signal and returns the previous mask. The master does this around
    /// `fork()`: the child keeps the mask until its worker handlers are installed
    /// ([`unblock_all`]), so a stop signal sent to a starting worker waits, pending, instead
    /// of arriving while no handler is registered and being lost.
    pub fn block_all() -> io::Result<SigSet> {
        let mut old = SigSet::empty();
        sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        )?;
        Ok(old)
    }

    /// Restores a mask saved by [`Signals::block_all`].
    pub fn restore_mask(old: &SigSet) -> io::Result<()> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None)?;
        Ok(())
    }

    /// The `Signals` value itself is left alone: the child never returns to the frames that
    /// own it, so it is never dropped there.
    pub fn forget(&self) {
        for id in &self.ids {
            signal_hook::low_level::unregister(*id);
        }
    }
}

/// Unblocks every signal: the worker's last start-up step, once its handlers are in place.
pub fn unblock_all() -> io::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}
