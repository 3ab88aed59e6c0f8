//! SIGHUP: new config → new generation → drain the old one. On any error the old
//! generation keeps serving, untouched (nginx: `cycle == NULL → continue`).
//!
//! 1. read and validate the whole file; an error is logged with file:line:column;
//! 2. if the listen address changed, bind the new one first (failure rejects the reload);
//!    an unchanged address keeps the very same socket, so nothing is refused meanwhile;
//!    the same goes for the `[admin]` listener (added, moved or removed at step 4);
//! 3. give the new sites their metrics labels (`metrics::labels`), then fork the new
//!    generation; each worker reports when it serves;
//! 4. only then tell the old generation to drain; a listener no longer configured closes
//!    when its workers are gone;
//! 5. HUPs during a reload are coalesced into one more reload afterwards.
//!
//! The outcome is announced to systemd and, when `pid_file` is set, written to
//! `<pid_file>.reload` for `srvd reload` (see [`crate::reload_cmd`]).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{admin, Listener, Master};
use crate::config::Config;
use crate::log;

/// How long a new generation may take to report that it serves before the reload is
/// abandoned (the old generation never stopped serving meanwhile).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A reload in progress: the new generation is starting.
pub struct PendingReload {
    pub generation: u64,
    pub config: Config,
    /// Listeners for addresses the current generation does not serve (newly bound, or
    /// received from systemd).
    pub fresh: Vec<Listener>,
    /// `Some` when `[admin]` changed: the new admin listener (`None`: removed).
    pub admin: Option<Option<admin::Listener>>,
    /// The metrics label index of each of the new config's sites.
    pub labels: Vec<u8>,
    pub deadline: Instant,
}

impl Master {
    /// Steps 1-3.
    pub(super) fn reload(&mut self) {
        if self.pending.is_some() {
            self.reload_again = true;
            return;
        }
        log::notice(format_args!("reloading \"{}\"", self.config_path.display()));
        self.notify.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            super::notify::Notify::monotonic_usec()
        ));
        let config = match Config::load(&self.config_path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    log::error(format_args!("{e}"));
                }
                let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
                self.finish_reload(format!("rejected: {first}"));
                return;
            }
        };
        for warning in &config.warnings {
            log::warn(format_args!("{warning}"));
        }
        if self.listeners.is_empty() {
            return; // stopping
        }
        // An address already served keeps its very socket; a new one is bound first (or
        // taken from those systemd passed), and failing to bind rejects the reload.
        let mut fresh: Vec<Listener> = Vec::new();
        for &addr in &config.listeners {
            if self.listeners.iter().any(|l| l.addr == addr) {
                continue;
            }
            if let Some(l) = super::take_listener(&mut self.spare_listeners, addr) {
                fresh.push(l);
                continue;
            }
            match crate::sys::socket::bind_listener(addr) {
                Ok(socket) => fresh.push(Listener {
                    addr,
                    socket,
                    received: false,
                }),
                Err(e) => {
                    log::error(format_args!(
                        "reload rejected: cannot listen on {addr}: {e}"
                    ));
                    self.spare_listeners
                        .extend(fresh.into_iter().filter(|l| l.received));
                    self.finish_reload(format!("rejected: cannot listen on {addr}: {e}"));
                    return;
                }
            }
        }
        let current_admin = self.admin.listener.as_ref().map(|l| &l.addr);
        let admin = if config.admin.as_ref() == current_admin {
            None
        } else {
            match config.admin.as_ref().map(admin::Listener::bind).transpose() {
                Ok(new) => Some(new),
                Err(e) => {
                    let addr = config.admin.as_ref().expect("bound only when set");
                    log::error(format_args!(
                        "reload rejected: cannot listen on admin {addr}: {e}"
                    ));
                    self.spare_listeners
                        .extend(fresh.into_iter().filter(|l| l.received));
                    self.finish_reload(format!("rejected: cannot listen on admin {addr}: {e}"));
                    return;
                }
            }
        };
        let labels = self
            .labels
            .assign(config.sites.iter().map(|s| s.name.as_str()));
        let generation = self.generation + 1;
        let mut started = 0;
        for _ in 0..config.workers {
            let sockets: Vec<&TcpListener> = config
                .listeners
                .iter()
                .map(|a| {
                    let l = self.listeners.iter().chain(&fresh).find(|l| l.addr == *a);
                    &l.expect("every address is served or was just bound").socket
                })
                .collect();
            match self.spawn(config.clone(), &labels, &sockets, generation) {
                // Into the table at once: the next spawn must see this one's slot taken.
                Ok(child) => {
                    self.children.push(child);
                    started += 1;
                }
                Err(e) => {
                    log::alert(format_args!("reload: cannot fork a worker: {e}"));
                    break;
                }
            }
        }
        let complete = started == config.workers;
        self.pending = Some(PendingReload {
            generation,
            config,
            fresh,
            admin,
            labels,
            deadline: Instant::now() + READY_TIMEOUT,
        });
        if !complete {
            self.fail_reload("cannot fork the new workers".into());
        }
    }

    /// Step 4, once every new worker serves; or give up at the deadline.
    pub(super) fn check_reload(&mut self) {
        let Some(p) = &self.pending else {
            if self.reload_again && self.shutdown.is_none() {
                self.reload_again = false;
                self.reload();
            }
            return;
        };
        let generation = p.generation;
        let new: Vec<_> = self
            .children
            .iter()
            .filter(|c| c.generation == generation)
            .collect();
        if new.len() == p.config.workers && new.iter().all(|c| c.ready) {
            let p = self.pending.take().expect("checked above");
            let old = self.generation;
            self.signal_workers(Signal::SIGQUIT, |c| c.generation == old);
            for c in self.children.iter_mut().filter(|c| c.generation == old) {
                c.retiring = true;
            }
            // The new set in config order: kept sockets and fresh ones; the rest retire
            // with the old generation.
            let mut pool: Vec<Listener> = std::mem::take(&mut self.listeners);
            pool.extend(p.fresh);
            for &addr in &p.config.listeners {
                if let Some(i) = pool.iter().position(|l| l.addr == addr) {
                    self.listeners.push(pool.swap_remove(i));
                }
            }
            self.retired_listeners
                .extend(pool.into_iter().map(|l| (old, l)));
            if let Some(admin) = p.admin {
                match &admin {
                    Some(l) => log::notice(format_args!("admin listener on {}", l.addr)),
                    None => log::notice(format_args!("admin listener closed")),
                }
                self.admin.listener = admin;
            }
            self.site_labels = p.labels;
            self.generation = generation;
            self.target = p.config.workers;
            self.config = p.config;
            self.backoff = Default::default();
            log::notice(format_args!(
                "reload done: generation {generation}, {} workers on {}",
                self.target,
                super::addr_list(&self.config.listeners)
            ));
            self.finish_reload("ok".into());
        } else if Instant::now() >= p.deadline {
            self.fail_reload(format!(
                "new workers did not report ready within {READY_TIMEOUT:?}"
            ));
        }
    }

    /// Abandons the pending reload: its workers drain, the current generation stays.
    pub(super) fn fail_reload(&mut self, why: String) {
        let Some(p) = self.pending.take() else { return };
        self.spare_listeners
            .extend(p.fresh.into_iter().filter(|l| l.received));
        let generation = p.generation;
        self.signal_workers(Signal::SIGQUIT, |c| c.generation == generation);
        for c in self
            .children
            .iter_mut()
            .filter(|c| c.generation == generation)
        {
            c.retiring = true;
        }
        log::error(format_args!("reload failed: {why}"));
        self.finish_reload(format!("failed: {why}"));
    }

    /// Publishes a reload's outcome to systemd and to `<pid_file>.reload`.
    fn finish_reload(&mut self, outcome: String) {
        self.reloads += 1;
        if outcome == "ok" {
            self.totals.reloads_ok += 1;
        } else {
            self.totals.reloads_failed += 1;
        }
        self.last_reload = outcome;
        self.notify
            .send(&format!("READY=1\nSTATUS={}", self.status()));
        self.publish_reload_state();
    }

    /// Writes `<pid_file>.reload` (atomically: temp file + rename) when `pid_file` is set.
    pub(super) fn publish_reload_state(&self) {
        if let Some(path) = &self.config.pid_file {
            let state = format!(
                "reloads={}\ngeneration={}\nresult={}\n",
                self.reloads, self.generation, self.last_reload
            );
            super::upgrade::write_state(&crate::reload_cmd::state_path(path), &state);
        }
    }
}
