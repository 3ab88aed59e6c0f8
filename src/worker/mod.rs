//! A worker process: one non-blocking epoll loop serving many connections
//! (the shape of mio's `tcp_server.rs`).
//!
//! Each wake-up handles the tokens that are ready:
//! - a listener (`LISTENER_BASE + i`): accept until `WouldBlock`, pausing at
//!   `max_connections` and on EMFILE/ENFILE (logged, survived);
//! - `SIGNALS`: graceful stop (drain), fast stop, reopen logs;
//! - a connection (`slot | generation << 32`): drive its state machine.
//!
//! Once a second it expires deadlines (header, keep-alive, send timeouts), flushes the
//! access log, publishes its connections by state (`crate::metrics`) and checks that the
//! master is still alive.
//!
//! Invariant: a worker holds only its own fds: its listeners, its channel to the master,
//! its epoll and signal pipe, its access log and its connections.

pub mod balance;
pub mod client;
pub mod conn;

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::unistd::Pid;

use crate::config::Config;
use crate::http::date::DateCache;
use crate::log::{self, AccessLog};
use crate::site::Sites;
use crate::static_files::Files;
use crate::sys::signals::{Command, Role, Signals};
use conn::{Conn, Ctx, Wait};

/// Token of the signal pipe.
const SIGNALS: u64 = u64::MAX;
/// Token of the file cache's inotify fd.
const INOTIFY: u64 = u64::MAX - 1;
/// Token of the shared kick eventfd (see [`balance`]).
const KICK: u64 = u64::MAX - 2;
/// Tokens of the listeners: `LISTENER_BASE + index`.
const LISTENER_BASE: u64 = u64::MAX - 64;
/// Concurrent TLS handshakes per worker; past it the TLS listeners are not polled.
const MAX_HANDSHAKES: usize = 256;
/// Events handled per epoll_wait.
const EVENTS: usize = 256;
/// How often deadlines are checked and the access log flushed.
const TICK: Duration = Duration::from_secs(1);
/// After an EMFILE/ENFILE on accept, stop accepting for this long (the error would repeat
/// at once; meanwhile connections close and free descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// During a graceful stop, an idle keep-alive connection may still send one request for
/// this long (answered with `Connection: close`) before it is closed. This narrows the race
/// where a client reuses a connection just as the server closes it.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(500);

/// What a worker is given by the master at fork.
pub struct WorkerInit {
    /// The generation's config (process-wide settings; the sites are in `sites`).
    pub config: Config,
    /// The generation's sites, their roots open.
    pub sites: Sites,
    pub listeners: Vec<TcpListener>,
    /// Write end of this worker's channel: one byte `R` once it serves.
    pub channel: UnixStream,
    pub master: Pid,
    /// Scoreboard slot and kick eventfd: the share of connections this worker may take.
    pub balance: balance::Balance,
    /// This worker's counters (its scoreboard slot).
    pub metrics: crate::metrics::Recorder,
}

/// A slot in the connection table; the generation makes stale tokens harmless.
struct Slot {
    generation: u32,
    conn: Option<Conn>,
    /// Current epoll interest.
    interest: Wait,
    /// Added to the epoll set yet (a connection is registered only once it has to wait).
    registered: bool,
}

struct Worker {
    config: Config,
    sites: Sites,
    files: Files,
    listeners: Vec<TcpListener>,
    listening: bool,
    /// Per listener: it speaks TLS.
    tls_of: Vec<bool>,
    /// Connections still in their TLS handshake, and whether the TLS listeners are out of
    /// the epoll set because that reached [`MAX_HANDSHAKES`].
    handshakes: usize,
    tls_paused: bool,
    accept_resume: Option<Instant>,
    balance: balance::Balance,
    metrics: crate::metrics::Recorder,
    /// Set when a drain begins (before `draining`): the listeners are never registered
    /// again.
    closing_listeners: bool,
    epoll: Epoll,
    signals: Signals,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    date: DateCache,
    /// Upstream connections of proxy routes (the idle pool, failure marks).
    upstreams: crate::proxy::Upstreams,
    /// The event being handled is the upstream side of a proxied connection.
    upstream_woke: bool,
    /// The access logs of the sites (shared by sites that name the same one).
    logs: Vec<AccessLog>,
    pool: conn::BufPool,
    master: Pid,
    draining: Option<Instant>,
    next_tick: Instant,
    /// Ticks so far (for once-a-minute housekeeping).
    ticks: u64,
    /// Held for the worker's lifetime (not dropped after `R`): the master sees it close
    /// exactly when the worker exits, and the fd set matches the invariant above.
    channel: UnixStream,
}

/// Runs the worker until it is told to stop; never returns.
pub fn run(init: WorkerInit, logs: Vec<AccessLog>) -> ! {
    log::set_worker_role();
    let code = match Worker::new(init, logs) {
        Ok(mut worker) => match worker.run() {
            Ok(()) => 0,
            Err(e) => {
                log::error(format_args!("worker loop failed: {e}"));
                1
            }
        },
        Err(e) => {
            log::error(format_args!("worker start failed: {e}"));
            2
        }
    };
    crate::sys::process::exit(code)
}

impl Worker {
    fn new(init: WorkerInit, logs: Vec<AccessLog>) -> io::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let signals = Signals::install(Role::Worker)?;
        // Blocked since fork: anything the master sent meanwhile is delivered now, to the
        // handlers just installed.
        crate::sys::signals::unblock_all()?;
        // From now on the master's death is a fast stop (flush the log, exit), not SIGKILL.
        crate::sys::process::die_with_master(init.master, nix::sys::signal::Signal::SIGTERM)?;
        epoll.add(signals.fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
        let files = Files::new(
            &init.sites,
            crate::static_files::watch::Watcher::new(),
            init.metrics,
        );
        let tls_of = init
            .config
            .listeners
            .iter()
            .map(|a| init.config.tls_listeners.contains(a))
            .collect();
        let mut worker = Worker {
            config: init.config,
            sites: init.sites,
            files,
            listeners: init.listeners,
            listening: false,
            tls_of,
            handshakes: 0,
            tls_paused: false,
            accept_resume: None,
            balance: init.balance,
            metrics: init.metrics,
            closing_listeners: false,
            epoll,
            signals,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            date: DateCache::default(),
            upstreams: Default::default(),
            upstream_woke: false,
            logs,
            pool: conn::BufPool::default(),
            master: init.master,
            draining: None,
            next_tick: Instant::now() + TICK,
            ticks: 0,
            channel: init.channel,
        };
        worker.listen(true)?;
        worker.balance.join();
        worker.epoll.add(
            worker.balance.kick.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, KICK),
        )?;
        if let Some(w) = &worker.files.watcher {
            worker
                .epoll
                .add(w.fd(), EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY))?;
        }
        // Tell the master we serve; it retires the old generation only after this.
        (&worker.channel).write_all(b"R")?;
        Ok(worker)
    }

    /// Registers or deregisters the listeners. EPOLLEXCLUSIVE: one connection wakes one
    /// worker, not all of them (no thundering herd).
    /// A TLS handshake ended (done, or its connection closed): below the cap again, the
    /// TLS listeners come back.
    fn handshake_done(&mut self) {
        self.handshakes = self.handshakes.saturating_sub(1);
        if self.tls_paused && self.handshakes < MAX_HANDSHAKES {
            self.set_tls_paused(false);
        }
    }

    /// Takes the TLS listeners out of the epoll set (or back): past the handshake cap new
    /// TLS connections wait in the kernel's queue, never reset.
    fn set_tls_paused(&mut self, paused: bool) {
        if paused == self.tls_paused {
            return;
        }
        self.tls_paused = paused;
        if !self.listening {
            return; // `listen(true)` honours the flag when it registers them
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if !self.tls_of[i] {
                continue;
            }
            let done = if paused {
                self.epoll.delete(l.as_fd())
            } else {
                let ev = EpollEvent::new(
                    EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
                    LISTENER_BASE + i as u64,
                );
                self.epoll.add(l.as_fd(), ev)
            };
            if let Err(e) = done {
                log::error(format_args!("TLS listener {i}: epoll_ctl failed: {e}"));
            }
        }
    }

    fn listen(&mut self, on: bool) -> io::Result<()> {
        if on == self.listening {
            return Ok(());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if self.tls_paused && self.tls_of[i] {
                continue; // out of the set while the handshake cap holds
            }
            if on {
                let ev = EpollEvent::new(
                    EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
                    LISTENER_BASE + i as u64,
                );
                self.epoll.add(l.as_fd(), ev)?;
            } else {
                self.epoll.delete(l.as_fd())?;
            }
        }
        self.listening = on;
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); EVENTS];
        loop {
            let timeout = if self.files.jobs.is_empty() {
                let timeout = self.next_tick.saturating_duration_since(Instant::now());
                // +1 ms: wake just after the tick is due, not just before it.
                EpollTimeout::from(timeout.as_millis().min(1000) as u16 + 1)
            } else {
                // Encodings are queued: look at the sockets, then do one slice.
                EpollTimeout::ZERO
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            self.date.refresh(SystemTime::now());
            let now = Instant::now();
            // File changes first: a request in this batch may have been sent right after
            // a change, and must not be served from the cache it invalidated.
            if events[..n].iter().any(|e| e.data() == INOTIFY) {
                self.apply_file_changes();
            }
            for ev in &events[..n] {
                match ev.data() {
                    INOTIFY => {}
                    KICK => self.on_kick(),
                    SIGNALS => {
                        for cmd in self.signals.pending() {
                            match cmd {
                                Command::FastStop => {
                                    self.leave();
                                    return Ok(());
                                }
                                Command::GracefulStop => self.begin_drain(now),
                                Command::ReopenLogs => {
                                    self.logs.iter_mut().for_each(AccessLog::reopen)
                                }
                                _ => {}
                            }
                        }
                    }
                    t if t >= LISTENER_BASE => {
                        self.accept(now, (t - LISTENER_BASE) as usize, false)
                    }
                    t if t & crate::proxy::pool::POOL_FLAG != 0 => {
                        // An upstream connection: its session's client connection, if one
                        // holds it (else the pool dealt with it).
                        if let Some(owner) = self.upstreams.pool.on_event(t) {
                            self.conn_event(now, owner | crate::proxy::UPSTREAM_FLAG, ev.events());
                        }
                    }
                    t => self.conn_event(now, t, ev.events()),
                }
            }
            // Spare time: one bounded slice of a queued encoding (see static_files::encode).
            crate::static_files::encode::run_queued(&mut self.files);
            if now >= self.next_tick {
                self.tick(now);
            }
            if let Some(deadline) = self.draining {
                if self.live == 0 || now >= deadline {
                    self.leave();
                    return Ok(());
                }
            }
        }
    }

    /// Accepts until the backlog is empty, the table is full or descriptors run out.
    ///
    /// In normal operation one connection per readiness event (`all == false`): every
    /// connection is then accepted after an `epoll_wait` that also reported any file change
    /// made before it connected, and the change is applied to the cache first (see
    /// `run`). Looping here would accept a client that changed a file and reconnected
    /// while this loop still ran, and serve it from the cache the change invalidated. The
    /// listener is level-triggered, so what is still queued is reported again at once.
    /// A drain takes everything queued (`all == true`), after checking for changes itself.
    fn accept(&mut self, now: Instant, index: usize, all: bool) {
        let max = self.config.max_connections;
        while self.live < max && self.draining.is_none() {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match crate::sys::socket::accept(listener) {
                Ok((stream, ip)) => {
                    let port = self.config.listeners.get(index).map_or(0, |a| a.port());
                    let tls = self.tls_of.get(index).copied().unwrap_or(false);
                    let client = match (&self.config.tls, tls) {
                        (Some(setup), true) => match client::Client::tls(stream, &setup.server) {
                            Ok(c) => c,
                            Err(e) => {
                                log::error(format_args!("cannot start a TLS session: {e}"));
                                continue;
                            }
                        },
                        _ => client::Client::plain(stream),
                    };
                    self.add_conn(now, client, ip, port);
                    if tls && self.tls_paused {
                        // The handshake cap was reached: stop taking from TLS listeners.
                        break;
                    }
                    if !all {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED) | Some(libc::EINTR)
                    ) => {}
                Err(e) => {
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE)
                            | Some(libc::ENFILE)
                            | Some(libc::ENOBUFS)
                            | Some(libc::ENOMEM)
                    ) {
                        log::warn(format_args!(
                            "accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}"
                        ));
                    } else {
                        log::error(format_args!("accept failed: {e}"));
                    }
                    self.accept_resume = Some(now + ACCEPT_BACKOFF);
                    self.next_tick = self.next_tick.min(now + ACCEPT_BACKOFF);
                    break;
                }
            }
        }
        // Full, backing off, or past its share: stop listening until that changes
        // (level-triggered would spin otherwise).
        if !all {
            self.sync_listen();
        }
    }

    /// Whether this worker should have its listeners in its epoll set now.
    fn should_listen(&self) -> bool {
        !self.closing_listeners
            && self.accept_resume.is_none()
            && self.live < self.config.max_connections
            && self.balance.may_accept(self.live)
    }

    /// Makes the listeners' registration match [`Worker::should_listen`]. A worker that
    /// stops listening kicks the others: connections already queued would otherwise wait
    /// for the next arrival to wake one of them (see [`balance`]).
    fn sync_listen(&mut self) {
        let on = self.should_listen();
        if on == self.listening {
            return;
        }
        if self.listen(on).is_ok() && !on && !self.closing_listeners {
            self.balance.kick();
        }
    }

    /// Another worker stopped listening. If this one may accept, register the listeners
    /// afresh: adding them makes epoll look at the queue now, which an exclusive wake-up
    /// that went elsewhere never made it do.
    fn on_kick(&mut self) {
        // Off first, then `sync_listen` adds them back only if this worker may accept
        // (no kick of its own for that: every worker was just woken by this one).
        if self.listening {
            let _ = self.listen(false);
        }
        self.sync_listen();
    }

    fn add_conn(&mut self, now: Instant, client: client::Client, ip: std::net::IpAddr, port: u16) {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    interest: Wait::Readable,
                    registered: false,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let in_handshake = client.is_tls();
        let mut conn = Conn::new(client, ip, port, now, self.config.header_timeout);
        conn.in_handshake = in_handshake;
        slot.conn = Some(conn);
        slot.interest = Wait::Readable;
        slot.registered = false;
        if in_handshake {
            self.handshakes += 1;
            if self.handshakes >= MAX_HANDSHAKES {
                self.set_tls_paused(true);
            }
        }
        self.live += 1;
        self.metrics.accepted();
        self.balance.publish(self.live);
        // Most clients send their request with the handshake: serve it now. The connection
        // joins the epoll set only if it has to wait, so a one-request connection never
        // costs an epoll_ctl.
        self.drive(now, index);
    }

    fn conn_event(&mut self, now: Instant, token: u64, _flags: EpollFlags) {
        // The upstream side of a proxied connection wakes the same connection.
        let index = (token & 0xffff_ffff & !crate::proxy::UPSTREAM_FLAG) as usize;
        let generation = (token >> 32) as u32;
        match self.slots.get(index) {
            Some(slot) if slot.generation == generation && slot.conn.is_some() => {
                self.upstream_woke = token & crate::proxy::UPSTREAM_FLAG != 0;
                self.drive(now, index);
                self.upstream_woke = false;
            }
            _ => {} // stale: the connection closed earlier in this batch
        }
    }

    /// The connection table and a [`Ctx`] over the rest of the worker, borrowed apart.
    fn parts(&mut self, now: Instant) -> (&mut Vec<Slot>, Ctx<'_>) {
        let cx = Ctx {
            config: &self.config,
            sites: &self.sites,
            files: &mut self.files,
            date: &self.date,
            logs: &mut self.logs,
            pool: &mut self.pool,
            now,
            draining: self.draining.is_some(),
            metrics: self.metrics,
            epoll: &self.epoll,
            token: 0,
            client_woke: false,
            upstreams: &mut self.upstreams,
        };
        (&mut self.slots, cx)
    }

    /// Drives one connection, then makes its epoll registration match what it waits for.
    fn drive(&mut self, now: Instant, index: usize) {
        let upstream_woke = self.upstream_woke;
        let (slots, mut cx) = self.parts(now);
        cx.token = (u64::from(slots[index].generation) << 32) | index as u64;
        cx.client_woke = !upstream_woke;
        let Some(conn) = slots[index].conn.as_mut() else {
            return;
        };
        let wait = conn.drive(&mut cx);
        if conn.in_handshake && !conn.client.handshaking() {
            conn.in_handshake = false;
            self.handshake_done();
        }
        if wait == Wait::Close || self.watch(index, wait).is_err() {
            self.close(index);
        }
    }

    /// Registers the connection for `writable` (EPOLLOUT) or readable (EPOLLIN) interest,
    /// adding it to the epoll set on its first wait, modifying only on a change.
    fn watch(&mut self, index: usize, wait: Wait) -> nix::Result<()> {
        let slot = &mut self.slots[index];
        if slot.registered && slot.interest == wait {
            return Ok(());
        }
        let flags = match wait {
            Wait::Writable => EpollFlags::EPOLLOUT,
            Wait::Readable => EpollFlags::EPOLLIN,
            Wait::Hangup | Wait::Close => EpollFlags::empty(),
        } | EpollFlags::EPOLLRDHUP;
        let token = (u64::from(slot.generation) << 32) | index as u64;
        let conn = slot
            .conn
            .as_ref()
            .expect("watch is called for live connections");
        let mut ev = EpollEvent::new(flags, token);
        if slot.registered {
            self.epoll.modify(conn.client.stream.as_fd(), &mut ev)?;
        } else {
            self.epoll.add(conn.client.stream.as_fd(), ev)?;
            slot.registered = true;
        }
        slot.interest = wait;
        Ok(())
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.slots[index].conn.take() {
            if conn.in_handshake {
                self.handshake_done();
            }
            if let Some(id) = conn.upstream_id() {
                self.upstreams.pool.release(id);
            }
            // Closing the fd removes it from the epoll set.
            conn.recycle(&mut self.pool);
            self.free.push(index as u32);
            self.live -= 1;
            self.metrics.handled(1);
            self.balance.publish(self.live);
            // One connection fewer can only allow listening, never forbid it.
            if !self.listening {
                self.sync_listen();
            }
        }
    }

    /// Once a second: expire deadlines, resume paused accepts, flush the log, and leave
    /// if the master is gone (PR_SET_PDEATHSIG covers most cases; this covers the rest).
    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        self.ticks += 1;
        self.upstreams.pool.expire(now);
        if self.ticks % 60 == 0 {
            self.files.clean_disks();
        }
        if self.accept_resume.is_some_and(|t| now >= t) {
            self.accept_resume = None;
        }
        // Also the safety net for balance decisions made on counts that changed since.
        self.balance.heartbeat();
        self.sync_listen();
        // Connections by state, counted on the walk the deadlines need anyway: the gauges
        // lag by up to a tick, the request path pays nothing for them.
        let mut by_class = [0u64; 3];
        for index in 0..self.slots.len() {
            let (slots, mut cx) = self.parts(now);
            cx.token = (u64::from(slots[index].generation) << 32) | index as u64;
            let Some(conn) = slots[index].conn.as_mut() else {
                continue;
            };
            if conn.deadline <= now {
                conn.on_timeout(&mut cx);
                self.close(index);
            } else {
                by_class[conn.class() as usize] += 1;
            }
        }
        self.metrics.connections(by_class);
        self.flush_logs();
        if nix::unistd::getppid() != self.master {
            log::warn(format_args!("master is gone, exiting"));
            self.leave();
            crate::sys::process::exit(0);
        }
    }

    fn flush_logs(&mut self) {
        self.logs.iter_mut().for_each(AccessLog::flush);
    }

    /// Before exiting: flush the logs; the connections still open end with the process
    /// (counted as handled, so accepted − handled stays the number open).
    fn leave(&mut self) {
        self.flush_logs();
        self.metrics.handled(self.live);
        self.metrics.connections([0; 3]);
    }

    /// Reads pending inotify events; any change empties the file cache.
    fn apply_file_changes(&mut self) {
        if self.files.watcher.as_ref().is_some_and(|w| w.changed()) {
            self.files.clear();
        }
    }

    /// Graceful stop: take what is already queued on the listeners, close them, and let
    /// connections finish; idle ones close after a short grace.
    fn begin_drain(&mut self, now: Instant) {
        if self.draining.is_some() {
            return;
        }
        self.closing_listeners = true;
        let _ = self.listen(false);
        self.balance.leave();
        // Deregistered first, so new connections wake the other generation; then whatever
        // was already queued is served here rather than reset when the listener closes
        // (after applying any file change, as `run` does before every batch).
        self.apply_file_changes();
        for i in 0..self.listeners.len() {
            self.accept(now, i, true);
        }
        self.draining = Some(now + self.config.shutdown_timeout);
        self.listeners.clear();
        for slot in &mut self.slots {
            if let Some(conn) = slot.conn.as_mut() {
                conn.begin_drain(now, DRAIN_IDLE_GRACE);
            }
        }
        self.next_tick = self.next_tick.min(now + DRAIN_IDLE_GRACE);
    }
}

/// The fds a new worker keeps when `become_worker` closes everything else: its listeners,
/// its channel to the master, the kick eventfd, its sites' root directories and their
/// access logs.
pub fn keep_fds(init: &WorkerInit, logs: &[AccessLog]) -> Vec<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    let mut keep: Vec<_> = init.listeners.iter().map(|l| l.as_raw_fd()).collect();
    keep.push(init.channel.as_raw_fd());
    keep.push(init.balance.kick.as_raw_fd());
    keep.extend(init.sites.all().iter().map(|s| s.root.as_raw_fd()));
    keep.extend(logs.iter().filter_map(AccessLog::raw_fd));
    keep
}

/// Opens each distinct access log of `config`'s sites once; returns the logs and, per
/// site, the index of its log.
pub fn open_logs(config: &Config) -> io::Result<(Vec<AccessLog>, Vec<usize>)> {
    let mut seen: Vec<&crate::config::AccessLog> = Vec::new();
    let mut logs = Vec::new();
    let mut of_site = Vec::with_capacity(config.sites.len());
    for site in &config.sites {
        let i = match seen.iter().position(|l| **l == site.access_log) {
            Some(i) => i,
            None => {
                logs.push(AccessLog::open(&site.access_log)?);
                seen.push(&site.access_log);
                seen.len() - 1
            }
        };
        of_site.push(i);
    }
    Ok((logs, of_site))
}
