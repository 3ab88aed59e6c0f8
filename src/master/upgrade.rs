//! SIGUSR2: in-place binary upgrade (nginx's USR2 + QUIT, as one signal with a reported
//! outcome).
//!
//! 1. The master executes the binary at the path it was started from (so a file
//!    installed over it is the one run, not the old inode behind `/proc/self/exe`) with
//!    the same arguments, as its own child. The listening sockets are passed open
//!    (`SRVD_LISTEN_FDS`, close-on-exec cleared for the spawn only), never re-bound, so
//!    no connection is refused; one end of a socketpair (`SRVD_UPGRADE_FD`) is how the new
//!    master says it serves.
//! 2. The new master loads the config, adopts the sockets, forks its workers and, once
//!    they all serve, writes `pid_file` with its own pid and `R` on the socketpair.
//! 3. Only then the old master hands over: it lets its own workers drain like a graceful
//!    stop (without `STOPPING=1`: the service is not stopping) and exits, leaving
//!    `pid_file` to the new master. Under systemd the unit's `PIDFile=` is what moves the
//!    main pid: when the main process exits while the service runs, systemd reads the pid
//!    file for the new one, which by then is its own child (orphans are re-parented to
//!    it), so it is supervised like the first master: its exit is seen and a stop waits
//!    for its drain. (`MAINPID=` sent by the old master would make systemd track a process
//!    that is not its child, and then a stop does not wait for it: it is killed.)
//! 4. A binary that cannot be executed, a new master that exits, or one that does not
//!    serve within [`UPGRADE_TIMEOUT`]: the old master keeps serving as if nothing
//!    happened (a hung new master is stopped).
//!
//! The outcome is written to `<pid_file>.upgrade` for `srvd upgrade` (see
//! [`crate::reload_cmd`]).

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Master;
use crate::log;
use crate::sys::listen_fds;

/// How long the new master may take to serve (it loads the config and forks its
/// workers; each worker's own start-up is bounded by the reload's ready timeout).
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary and arguments this master was started with, to execute again.
pub struct Exec {
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

impl Exec {
    /// `argv[0]` made absolute (relative to the start-up directory, or found in `PATH`
    /// when it has no `/`), and the rest of argv. `None` when it cannot be found.
    pub fn from_env() -> Option<Exec> {
        let mut argv = std::env::args_os();
        let arg0 = PathBuf::from(argv.next()?);
        let path = if arg0.components().count() > 1 || arg0.is_absolute() {
            std::env::current_dir().ok()?.join(arg0)
        } else {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths)
                .map(|d| d.join(&arg0))
                .find(|p| p.is_file())?
        };
        Some(Exec {
            path,
            args: argv.collect(),
        })
    }
}

/// An upgrade in progress: the new master is starting.
pub struct PendingUpgrade {
    pub child: std::process::Child,
    /// Our end of the socketpair; `R` when the new master serves, EOF when it died.
    report: UnixStream,
    deadline: Instant,
}

impl Master {
    /// Step 1 (SIGUSR2).
    pub(super) fn upgrade(&mut self) {
        if self.upgrading.is_some() {
            log::warn(format_args!("upgrade already in progress: signal ignored"));
            return;
        }
        if self.pending.is_some() {
            self.finish_upgrade("failed: a reload is in progress; try again".into());
            return;
        }
        let Some(exec) = &self.exec else {
            self.finish_upgrade("failed: the path of the srvd binary is unknown".into());
            return;
        };
        log::notice(format_args!(
            "upgrade: starting a new master from \"{}\"",
            exec.path.display()
        ));
        // The new master binds the `[admin]` listener itself (a unix socket cannot be
        // passed to it by address): this one lets it go for the upgrade, and takes it back
        // if the upgrade fails. Scrapes meanwhile wait or fail for a moment.
        self.admin.listener = None;
        match self.spawn_new_master() {
            Ok(p) => {
                log::notice(format_args!(
                    "upgrade: new master {} started; waiting for it to serve",
                    p.child.id()
                ));
                self.upgrading = Some(p);
            }
            Err(e) => {
                let path = self.exec.as_ref().map(|e| e.path.display().to_string());
                self.finish_upgrade(format!(
                    "failed: cannot execute \"{}\": {e}",
                    path.unwrap_or_default()
                ));
            }
        }
    }

    fn spawn_new_master(&self) -> io::Result<PendingUpgrade> {
        let exec = self.exec.as_ref().expect("checked by the caller");
        let mut sockets = Vec::new();
        sockets.extend(self.listeners.iter().map(|l| (&l.socket, l.received)));
        sockets.extend(self.spare_listeners.iter().map(|l| (&l.socket, l.received)));
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let fds = listen_fds::pass_on_exec(&sockets);
        let spawned = fds.and_then(|fds| {
            listen_fds::inherit_on_exec(&theirs)?;
            std::process::Command::new(&exec.path)
                .args(&exec.args)
                .env("SRVD_LISTEN_FDS", fds)
                .env(
                    "SRVD_UPGRADE_FD",
                    std::os::fd::AsRawFd::as_raw_fd(&theirs).to_string(),
                )
                .env("SRVD_GENERATION", (self.generation + 1).to_string())
                .spawn()
        });
        for (s, _) in &sockets {
            listen_fds::restore_cloexec(*s);
        }
        drop(theirs);
        Ok(PendingUpgrade {
            child: spawned?,
            report: ours,
            deadline: Instant::now() + UPGRADE_TIMEOUT,
        })
    }

    /// Steps 3 and 4, from the main loop: what the new master said, or its death, or the
    /// deadline.
    pub(super) fn check_upgrade(&mut self) {
        let Some(p) = self.upgrading.as_mut() else {
            return;
        };
        let pid = p.child.id();
        let mut buf = [0u8; 16];
        let said = match p.report.read(&mut buf) {
            Ok(0) => Some(false),
            Ok(n) => Some(buf[..n].contains(&b'R')),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(_) => Some(false),
        };
        match said {
            Some(true) => {
                self.upgrading = None;
                log::notice(format_args!(
                    "upgrade: new master {pid} serves; this master ({}) drains and exits",
                    std::process::id()
                ));
                self.finish_upgrade(format!("ok pid={pid}"));
                self.handed_over = true;
                self.begin_shutdown(super::Shutdown::Graceful);
            }
            Some(false) => {
                // It closed the socket without serving: it is exiting, or was reaped
                // already by `reap_children` (which kept how it ended).
                let status = match self.upgrade_exit.take() {
                    Some(how) => how,
                    None => {
                        if !matches!(p.child.try_wait(), Ok(Some(_))) {
                            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
                        }
                        p.child
                            .wait()
                            .map_or_else(|e| e.to_string(), |s| s.to_string())
                    }
                };
                self.upgrading = None;
                self.finish_upgrade(format!(
                    "failed: new master {pid} exited before it served ({status})"
                ));
            }
            None if Instant::now() >= p.deadline => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
                let _ = p.child.wait();
                self.upgrading = None;
                self.finish_upgrade(format!(
                    "failed: new master {pid} did not serve within {UPGRADE_TIMEOUT:?}"
                ));
            }
            None => {}
        }
    }

    /// New master, step 2: once every worker serves, take `pid_file` and tell the old
    /// master.
    pub(super) fn report_upgraded(&mut self) {
        let Some(mut report) = self.upgrade_report.take() else {
            return;
        };
        self.write_pid_file();
        let _ = io::Write::write_all(&mut report, b"R");
    }

    /// Records an upgrade's outcome in the log and `<pid_file>.upgrade`; after a failure
    /// this master takes the `[admin]` listener back.
    fn finish_upgrade(&mut self, outcome: String) {
        if !outcome.starts_with("ok") && self.admin.listener.is_none() {
            if let Some(addr) = &self.config.admin {
                match super::admin::Listener::bind(addr) {
                    Ok(l) => self.admin.listener = Some(l),
                    Err(e) => log::error(format_args!("cannot listen on admin {addr} again: {e}")),
                }
            }
        }
        // Past the file's figure too: the master before this one may have counted on.
        let on_file = self.config.pid_file.as_ref().map_or(0, |p| {
            crate::reload_cmd::count(&upgrade_state_path(p), "upgrades=")
        });
        self.upgrades = self.upgrades.max(on_file) + 1;
        if outcome.starts_with("ok") {
            log::notice(format_args!("upgrade {outcome}"));
        } else {
            log::error(format_args!("upgrade {outcome}; this master keeps serving"));
        }
        if let Some(path) = &self.config.pid_file {
            let state = format!("upgrades={}\nresult={outcome}\n", self.upgrades);
            write_state(&upgrade_state_path(path), &state);
        }
    }
}

/// `<pid_file>.upgrade`, where the master writes each upgrade's outcome.
pub fn upgrade_state_path(pid_file: &Path) -> PathBuf {
    let mut s = pid_file.as_os_str().to_owned();
    s.push(".upgrade");
    PathBuf::from(s)
}

/// Writes a state file atomically (temp file + rename).
pub fn write_state(target: &Path, text: &str) {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, target))
        .is_err()
    {
        log::warn(format_args!("cannot write \"{}\"", target.display()));
    }
}

/// The generation a new master continues from (`SRVD_GENERATION`, set by the old one),
/// read once and cleared.
pub fn inherited_generation() -> Option<u64> {
    let g = std::env::var("SRVD_GENERATION").ok()?.parse().ok();
    std::env::remove_var("SRVD_GENERATION");
    g
}
