//! The master process: binds the listener, forks workers, supervises them
//! (the shape of nginx's `ngx_master_process_cycle`).
//!
//! The loop blocks in `poll` on the signal pipe and the workers' channels, then acts on
//! each intent in turn: reap and respawn, reload, reopen logs, add or retire workers, stop.
//! It stays single-threaded and never holds a client connection.
//!
//! Generations: every reload forks a new generation with the new config; the old one is
//! told to drain only once every new worker reported that it serves ([`reload`]).
//!
//! With `[admin]`, the same loop serves the admin listener ([`admin`]): `/health` and
//! `/metrics`, the latter summed from the workers' scoreboard slots plus the totals of
//! workers already reaped ([`crate::metrics`]).

pub mod admin;
pub mod children;
pub mod notify;
pub mod reload;
pub mod upgrade;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::Config;
use crate::log::{self, AccessLog};
use crate::metrics::{labels::Labels, Recorder, Totals};
use crate::site::Sites;
use crate::sys::process::{self, Forked};
use crate::sys::shm::{self, Scoreboard};
use crate::sys::signals::{Command, Role, Signals};
use crate::worker::{self, balance::Balance, WorkerInit};
use children::{Backoff, Child};
use notify::Notify;
use reload::PendingReload;

/// After a fast stop is asked, workers get this long before SIGKILL.
const FAST_STOP_GRACE: Duration = Duration::from_millis(800);
/// Longest the master sleeps between checks when nothing happens.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Graceful,
    Fast,
}

/// The listener of a generation.
pub struct Listener {
    pub addr: SocketAddr,
    pub socket: TcpListener,
    /// Bound by systemd (received at start directly, or through the previous master of
    /// an upgrade): never closed while the master runs, only set aside when unused
    /// (systemd would not hand it over again). Sockets srvd bound itself, including ones
    /// a previous master passed on, close when no longer configured.
    pub received: bool,
}

/// The supervisor.
pub struct Master {
    config: Config,
    config_path: PathBuf,
    /// The current generation's listeners, one per configured address in config order;
    /// empty once stopping (closed at once, so new connections are refused rather than
    /// queued for nobody).
    listeners: Vec<Listener>,
    signals: Signals,
    children: Vec<Child>,
    generation: u64,
    /// Workers the current generation should have (config `workers`, moved by TTIN/TTOU).
    target: usize,
    backoff: Backoff,
    pending: Option<PendingReload>,
    /// A HUP arrived during a reload: run one more when this one ends.
    reload_again: bool,
    /// Listeners of retired generations, closed once their workers are gone.
    retired_listeners: Vec<(u64, Listener)>,
    shutdown: Option<(Shutdown, Instant)>,
    notify: Notify,
    /// Per-worker slots in shared memory (connection counts for the balance).
    scoreboard: Scoreboard,
    /// The eventfd a worker writes when it stops listening (see `worker::balance`).
    kick: OwnedFd,
    /// Outcome of the last reload, for `STATUS=` and `srvd reload`.
    last_reload: String,
    reloads: u64,
    /// Listening sockets received at start (socket activation, upgrade) that the config
    /// does not use now: kept open for a reload that names their address, and passed on
    /// in an upgrade.
    spare_listeners: Vec<Listener>,
    /// The binary and arguments to execute for an upgrade (SIGUSR2).
    exec: Option<upgrade::Exec>,
    upgrading: Option<upgrade::PendingUpgrade>,
    /// How the new master of a failed upgrade ended, when `reap_children` collected it.
    upgrade_exit: Option<String>,
    upgrades: u64,
    /// This master was started by an upgrade: the socket to report on once it serves.
    upgrade_report: Option<UnixStream>,
    /// The upgrade succeeded: this master drains and exits, leaving the service (its
    /// `pid_file`, systemd's main pid) to the new one.
    handed_over: bool,
    /// The admin listener and its connections (no listener without `[admin]`).
    admin: admin::Admin,
    /// Counts of reaped workers and the master's own figures.
    totals: Totals,
    /// Site name → metrics label index, for the process's lifetime.
    labels: Labels,
    /// The label index of each site of the current generation's config.
    site_labels: Vec<u8>,
}

impl Master {
    /// Binds the listener and installs the signal handlers; forks nothing yet.
    pub fn new(config: Config, config_path: PathBuf) -> io::Result<Master> {
        // First, before anything else reads the environment or opens descriptors.
        let inherited = crate::sys::listen_fds::take();
        let generation = upgrade::inherited_generation().unwrap_or(1);
        raise_fd_limit();
        for (fd, why) in &inherited.refused {
            log::warn(format_args!("ignoring inherited descriptor {fd}: {why}"));
        }
        let mut spare_listeners: Vec<Listener> = inherited
            .listeners
            .into_iter()
            .map(|r| {
                log::notice(format_args!(
                    "listener {} received from {}",
                    r.addr,
                    match r.source {
                        crate::sys::listen_fds::Source::Systemd => "systemd",
                        crate::sys::listen_fds::Source::Upgrade => "the previous master",
                    }
                ));
                Listener {
                    addr: r.addr,
                    socket: r.socket,
                    received: r.systemd,
                }
            })
            .collect();
        let mut listeners = Vec::new();
        for &addr in &config.listeners {
            listeners.push(match take_listener(&mut spare_listeners, addr) {
                Some(l) => l,
                None => Listener {
                    addr,
                    socket: crate::sys::socket::bind_listener(addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?,
                    received: false,
                },
            });
        }
        // One the previous master bound itself and the config no longer names: closed.
        spare_listeners.retain(|l| l.received);
        for l in &spare_listeners {
            log::warn(format_args!(
                "received listener {} is not in the config (listen = {}): kept open, unused",
                l.addr,
                addr_list(&config.listeners)
            ));
        }
        let admin = match &config.admin {
            Some(addr) => Some(admin::Listener::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on admin {addr}: {e}"))
            })?),
            None => None,
        };
        let signals = Signals::install(Role::Master)?;
        let scoreboard = Scoreboard::new()?;
        let mut labels = Labels::default();
        let site_labels = labels.assign(config.sites.iter().map(|s| s.name.as_str()));
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let kick = OwnedFd::from(nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )?);
        Ok(Master {
            scoreboard,
            kick,
            target: config.workers,
            listeners,
            config,
            config_path,
            signals,
            children: Vec::new(),
            generation,
            backoff: Backoff::default(),
            pending: None,
            reload_again: false,
            retired_listeners: Vec::new(),
            shutdown: None,
            notify: Notify::from_env(),
            last_reload: "none".into(),
            reloads: 0,
            spare_listeners,
            exec: upgrade::Exec::from_env(),
            upgrading: None,
            upgrade_exit: None,
            upgrades: 0,
            upgrade_report: inherited.upgrade_report,
            handed_over: false,
            admin: admin::Admin::new(admin),
            totals: Totals::new(started),
            labels,
            site_labels,
        })
    }

    /// The supervisor loop; returns when every worker is gone after a stop.
    pub fn run(mut self) -> io::Result<()> {
        // A master started by an upgrade takes pid_file only once it serves (until then
        // it names the old master, which keeps serving if this one fails).
        if self.upgrade_report.is_none() {
            if let Some(path) = &self.config.pid_file {
                std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write pid file \"{}\": {e}", path.display()),
                    )
                })?;
            }
        }
        log::notice(format_args!(
            "srvd {} listening on {}, {} workers, {} site(s), root \"{}\"",
            env!("CARGO_PKG_VERSION"),
            addr_list(&self.config.listeners),
            self.target,
            self.config.sites.len(),
            self.config.default_site().root.display()
        ));
        if let Some(l) = &self.admin.listener {
            log::notice(format_args!("admin listener on {}", l.addr));
        }
        for warning in &self.config.warnings {
            log::warn(format_args!("{warning}"));
        }
        // A fresh master starts counting reloads from zero for `srvd reload`.
        self.publish_reload_state();
        let mut announced = false;
        loop {
            self.spawn_missing();
            self.wait_for_events()?;
            for cmd in self.signals.pending() {
                match cmd {
                    Command::ChildExited => {}
                    Command::Reload if self.shutdown.is_none() => self.reload(),
                    Command::ReopenLogs => self.signal_workers(Signal::SIGUSR1, |_| true),
                    Command::GracefulStop => self.begin_shutdown(Shutdown::Graceful),
                    Command::FastStop => self.begin_shutdown(Shutdown::Fast),
                    Command::MoreWorkers if self.shutdown.is_none() => {
                        self.target += 1;
                        log::notice(format_args!("TTIN: now {} workers", self.target));
                    }
                    Command::FewerWorkers if self.shutdown.is_none() => self.retire_one(),
                    Command::Upgrade if self.shutdown.is_none() => self.upgrade(),
                    _ => {}
                }
            }
            self.reap_children();
            self.check_reload();
            self.check_upgrade();
            if !announced && self.shutdown.is_none() && self.current_ready() {
                announced = true;
                self.notify
                    .send(&format!("READY=1\nSTATUS={}", self.status()));
                self.report_upgraded();
            }
            if let Some((_, deadline)) = self.shutdown {
                if self.children.is_empty() {
                    // After a handover the file names the new master.
                    if let Some(path) = self.config.pid_file.as_ref().filter(|_| !self.handed_over)
                    {
                        let _ = std::fs::remove_file(path);
                    }
                    log::notice(format_args!("exiting"));
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    self.signal_workers(Signal::SIGKILL, |_| true);
                }
            }
        }
    }

    /// Blocks until a signal, a worker message, or the next timed action.
    fn wait_for_events(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut wake = now + IDLE_WAIT;
        if let Some(t) = self.backoff.not_before {
            wake = wake.min(t.max(now));
        }
        if let Some((_, t)) = self.shutdown {
            wake = wake.min(t.max(now));
        }
        if let Some(p) = &self.pending {
            wake = wake.min(p.deadline.max(now));
        }
        if self.upgrading.is_some() {
            // The new master's report is not polled: look often while it starts.
            wake = wake.min(now + Duration::from_millis(20));
        }
        if let Some(t) = self.admin.next_deadline() {
            wake = wake.min(t.max(now));
        }
        // Rounded up: waking just before an admin deadline would leave it for the next turn.
        let timeout = wake
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000)
            .min(1000) as u16;
        let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        let mut owners = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            if let Some(ch) = &child.channel {
                fds.push(PollFd::new(ch.as_fd(), PollFlags::POLLIN));
                owners.push(i);
            }
        }
        let admin_at = fds.len();
        for (fd, flags) in self.admin.poll_fds() {
            fds.push(PollFd::new(fd, flags));
        }
        match nix::poll::poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let woke = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let ready: Vec<usize> = fds[1..admin_at]
            .iter()
            .zip(&owners)
            .filter(|(fd, _)| woke(fd))
            .map(|(_, &i)| i)
            .collect();
        let admin_ready: Vec<bool> = fds[admin_at..].iter().map(woke).collect();
        drop(fds);
        for i in ready {
            self.read_channel(i);
        }
        self.serve_admin(&admin_ready);
        Ok(())
    }

    /// Answers the admin connections that woke, and drops those past their deadline.
    fn serve_admin(&mut self, ready: &[bool]) {
        let mut admin = std::mem::take(&mut self.admin);
        admin.on_ready(ready, Instant::now(), &mut |head| {
            admin::respond(head, self.health(), || {
                let snapshot = self
                    .totals
                    .snapshot(self.scoreboard.table(), self.generation);
                crate::metrics::text::render(&snapshot, &self.labels)
            })
        });
        self.admin = admin;
    }

    /// What `/health` answers: stopping from the start of a stop, serving while a worker of
    /// the current generation serves.
    fn health(&self) -> admin::Health {
        if self.shutdown.is_some() {
            admin::Health::Stopping
        } else if self
            .children
            .iter()
            .any(|c| c.generation == self.generation && c.ready && !c.retiring)
        {
            admin::Health::Serving
        } else {
            admin::Health::Unavailable
        }
    }

    /// A worker wrote `R` (it serves) or closed its channel (it is exiting).
    fn read_channel(&mut self, i: usize) {
        let child = &mut self.children[i];
        let Some(ch) = child.channel.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16];
        match ch.read(&mut buf) {
            Ok(0) => child.channel = None,
            Ok(n) => {
                if buf[..n].contains(&b'R') {
                    child.ready = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => child.channel = None,
        }
    }

    /// Forks workers until the current generation has `target` live, unretired ones,
    /// unless stopping or inside a crash-loop back-off.
    fn spawn_missing(&mut self) {
        if self.shutdown.is_some() || !self.backoff.allows(Instant::now()) {
            return;
        }
        if self.listeners.is_empty() {
            return;
        }
        let have = self.live_in(self.generation);
        for _ in have..self.target {
            let sockets: Vec<&TcpListener> = self.listeners.iter().map(|l| &l.socket).collect();
            match self.spawn(
                self.config.clone(),
                &self.site_labels,
                &sockets,
                self.generation,
            ) {
                Ok(child) => self.children.push(child),
                Err(e) => {
                    log::alert(format_args!("cannot fork a worker: {e}"));
                    self.backoff.on_death(Duration::ZERO, Instant::now());
                    return;
                }
            }
        }
    }

    fn live_in(&self, generation: u64) -> usize {
        self.children
            .iter()
            .filter(|c| c.generation == generation && !c.retiring)
            .count()
    }

    /// Forks one worker of `generation` serving `config` on `listener`; `labels` are the
    /// metrics label indices of the config's sites.
    fn spawn(
        &self,
        config: Config,
        labels: &[u8],
        listeners: &[&TcpListener],
        generation: u64,
    ) -> io::Result<Child> {
        let (ours, theirs) = UnixStream::pair()?;
        // A free scoreboard slot, claimed before the fork so the worker's share counts
        // from its first accept; none left only past shm::SLOTS workers.
        let slot = (0..shm::SLOTS).find(|i| self.children.iter().all(|c| c.slot != Some(*i)));
        if let Some(i) = slot {
            self.scoreboard.reset(i);
        }
        ours.set_nonblocking(true)?;
        let master = nix::unistd::getpid();
        let mask = Signals::block_all()?;
        let forked = process::fork_worker();
        if !matches!(forked, Ok(Forked::Child)) {
            Signals::restore_mask(&mask)?;
        }
        match forked? {
            Forked::Parent(pid) => {
                drop(theirs);
                Ok(Child {
                    pid,
                    slot,
                    generation,
                    channel: Some(ours),
                    ready: false,
                    retiring: false,
                    started: Instant::now(),
                })
            }
            Forked::Child => {
                // From here on this is a worker; it never returns into master frames.
                self.signals.forget();
                let result = (|| -> io::Result<(WorkerInit, Vec<AccessLog>)> {
                    process::die_with_master(master, Signal::SIGKILL)?;
                    let (logs, log_of) = worker::open_logs(&config)?;
                    let sites = Sites::open(&config, |i| log_of[i], labels)?;
                    let init = WorkerInit {
                        listeners: listeners
                            .iter()
                            .map(|l| l.try_clone())
                            .collect::<io::Result<_>>()?,
                        channel: theirs,
                        balance: Balance::new(
                            self.scoreboard.table(),
                            slot,
                            generation,
                            self.kick.try_clone()?,
                        ),
                        metrics: Recorder::new(self.scoreboard.table(), slot),
                        master,
                        sites,
                        config,
                    };
                    let keep = worker::keep_fds(&init, &logs);
                    process::become_worker(&keep)?;
                    let dirs: Vec<&std::path::Path> = init
                        .config
                        .sites
                        .iter()
                        .filter_map(|s| s.compression.cache_dir.as_deref())
                        .collect();
                    process::hand_over(
                        &dirs,
                        init.config.user.as_deref(),
                        init.config.group.as_deref(),
                    )?;
                    process::drop_privileges(
                        init.config.user.as_deref(),
                        init.config.group.as_deref(),
                    )?;
                    Ok((init, logs))
                })();
                match result {
                    Ok((init, access_log)) => worker::run(init, access_log),
                    Err(e) => {
                        log::set_worker_role();
                        log::error(format_args!("worker start failed: {e}"));
                        process::exit(2)
                    }
                }
            }
        }
    }

    /// Collects every exited worker, logs how it ended, and arranges its replacement.
    fn reap_children(&mut self) {
        loop {
            let (pid, how) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            if self
                .upgrading
                .as_ref()
                .is_some_and(|u| u.child.id() as i32 == pid.as_raw())
            {
                self.upgrade_exit = Some(match how {
                    Exit::Code(code) => format!("exit status: {code}"),
                    Exit::Signal(sig) => format!("signal: {sig}"),
                });
                continue;
            }
            let Some(i) = self.children.iter().position(|c| c.pid == pid) else {
                continue;
            };
            let child = self.children.swap_remove(i);
            if let Some(slot) = child.slot {
                // Its counts are kept: folded into the master's totals, then the slot is
                // free for the next worker.
                self.totals
                    .fold(&self.scoreboard.table().slots[slot].counters);
                self.scoreboard.reset(slot);
            }
            let expected = child.retiring || self.shutdown.is_some();
            match how {
                Exit::Signal(sig) if !(expected && sig == Signal::SIGKILL) => {
                    log::alert(format_args!("worker {pid} exited on signal {sig}"))
                }
                Exit::Code(code) if code != 0 || !expected => {
                    log::notice(format_args!("worker {pid} exited with code {code}"))
                }
                _ => {}
            }
            if !expected && child.generation == self.generation {
                self.totals.worker_restarts += 1;
                let now = Instant::now();
                if self.backoff.on_death(now - child.started, now) {
                    log::alert(format_args!(
                        "worker {pid} died within {:?} of starting; respawning with back-off",
                        children::QUICK_DEATH
                    ));
                }
            }
            if self
                .pending
                .as_ref()
                .is_some_and(|p| p.generation == child.generation)
                && !child.retiring
            {
                self.fail_reload(format!("new worker {pid} exited before it served"));
            }
        }
        // Listeners of generations whose workers are all gone can close now (received
        // ones are set aside instead, for a later reload that names them again).
        let children = &self.children;
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired_listeners)
            .into_iter()
            .partition(|(g, _)| !children.iter().any(|c| c.generation == *g));
        self.retired_listeners = kept;
        self.spare_listeners
            .extend(gone.into_iter().map(|(_, l)| l).filter(|l| l.received));
    }

    /// Sends `sig` to every worker `which` selects.
    fn signal_workers(&self, sig: Signal, which: impl Fn(&Child) -> bool) {
        for child in self.children.iter().filter(|c| which(c)) {
            let _ = kill(child.pid, sig);
        }
    }

    /// TTOU: one worker fewer, never below one.
    fn retire_one(&mut self) {
        if self.target <= 1 {
            log::notice(format_args!("TTOU ignored: already at one worker"));
            return;
        }
        self.target -= 1;
        let generation = self.generation;
        if let Some(child) = self
            .children
            .iter_mut()
            .find(|c| c.generation == generation && !c.retiring)
        {
            child.retiring = true;
            let _ = kill(child.pid, Signal::SIGQUIT);
        }
        log::notice(format_args!("TTOU: now {} workers", self.target));
    }

    /// TERM/QUIT: workers drain (bounded by `shutdown_timeout`); INT: down within a second.
    fn begin_shutdown(&mut self, how: Shutdown) {
        if self.shutdown.is_some_and(|(h, _)| h == Shutdown::Fast) {
            return;
        }
        let now = Instant::now();
        let (sig, deadline) = match how {
            // The workers bound themselves by shutdown_timeout; the margin lets them log.
            Shutdown::Graceful => (
                Signal::SIGQUIT,
                now + self.config.shutdown_timeout + Duration::from_millis(500),
            ),
            Shutdown::Fast => (Signal::SIGTERM, now + FAST_STOP_GRACE),
        };
        log::notice(format_args!(
            "{} stop",
            if how == Shutdown::Fast {
                "fast"
            } else {
                "graceful"
            }
        ));
        if self.handed_over {
            // The service goes on in the new master: not a stop for systemd.
        } else {
            self.notify.send("STOPPING=1");
        }
        if let Some(mut p) = self.upgrading.take() {
            log::warn(format_args!(
                "upgrade abandoned: stopping; new master {} stops too",
                p.child.id()
            ));
            let _ = kill(Pid::from_raw(p.child.id() as i32), Signal::SIGINT);
            let _ = p.child.wait();
        }
        self.signal_workers(sig, |_| true);
        for child in &mut self.children {
            child.retiring = true;
        }
        self.shutdown = Some((how, deadline));
        // Stop accepting at once: the workers took what was queued before closing theirs.
        self.retired_listeners.clear();
        self.listeners.clear();
        if let Some(p) = self.pending.take() {
            drop(p);
        }
    }

    /// Whether every worker of the current generation serves.
    fn current_ready(&self) -> bool {
        let current: Vec<_> = self
            .children
            .iter()
            .filter(|c| c.generation == self.generation && !c.retiring)
            .collect();
        current.len() >= self.target && current.iter().all(|c| c.ready)
    }

    /// `STATUS=` text: generation, workers, last reload.
    fn status(&self) -> String {
        format!(
            "generation {}, {} workers, last reload: {}",
            self.generation,
            self.live_in(self.generation),
            self.last_reload
        )
    }
}

/// "a, b, c" for logs.
pub(super) fn addr_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes the received listener bound to `addr` out of `spare`, if there is one.
fn take_listener(spare: &mut Vec<Listener>, addr: SocketAddr) -> Option<Listener> {
    let i = spare.iter().position(|l| l.addr == addr)?;
    Some(spare.swap_remove(i))
}

impl Master {
    /// Writes `pid_file` with this process's pid (a failure is logged: serving goes on).
    fn write_pid_file(&self) {
        if let Some(path) = &self.config.pid_file {
            let tmp = path.with_extension("pid.tmp");
            if let Err(e) = std::fs::write(&tmp, format!("{}\n", std::process::id()))
                .and_then(|_| std::fs::rename(&tmp, path))
            {
                log::error(format_args!(
                    "cannot write pid file \"{}\": {e}",
                    path.display()
                ));
            }
        }
    }
}

/// Raises the soft fd limit to the hard one (inherited by the workers): each worker may
/// hold `max_connections` sockets plus cached files, and the common soft default (1024) is
/// lower than that. Failure only means the old limit stays.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// How a worker ended.
enum Exit {
    Code(i32),
    Signal(Signal),
}
