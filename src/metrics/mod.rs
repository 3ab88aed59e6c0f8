//! Metrics: what the workers count, where each figure lives in a worker's scoreboard slot,
//! and how the master adds them up for the admin listener.
//!
//! ```text
//!  worker ── Recorder::request / sent / timeout ... ──▶ its slot's counters (sys::shm)
//!                                                         one writer, Relaxed load + store
//!  master ── Totals::snapshot: folded totals + Σ live slots ──▶ text::render ──▶ /metrics
//!         └─ on reaping a worker: Totals::fold(slot), then the slot is zeroed
//! ```
//!
//! - Each worker writes only its own slot, so an increment is a load and a store, not a
//!   locked read-modify-write: a few instructions on the request path, no lock anywhere.
//! - A worker's totals outlive it: when the master reaps a worker (crashed, retired after
//!   a reload, or stopped by TTOU) it folds the slot's counters into its own running
//!   totals before the slot is zeroed for the next worker.
//! - Sites are counted by label index, never by name: the master owns the name → index
//!   table ([`labels::Labels`], append-only, at most [`LABELS`] names per process
//!   lifetime, then [`OTHER`]) and hands each generation its sites' indices before it
//!   forks it. The Host header never becomes a label.
//! - Connection gauges (reading, writing, idle) are published by each worker from its
//!   once-a-second tick, so they lag by up to a second; counters are exact at once.
//!
//! This module owns the layout and the arithmetic; `sys::shm` owns the shared memory,
//! `master::admin` the listener, `text` the exposition format.

pub mod labels;
pub mod text;

use crate::sys::shm::{Counters, Table, COUNTERS};

/// Distinct site labels per process lifetime; sites named after those share [`OTHER`].
pub const LABELS: usize = 64;
/// The label index of every site past the first [`LABELS`] names: "other".
pub const OTHER: u8 = LABELS as u8;
/// Status classes of `srvd_requests_total`. A final 1xx (101 Switching Protocols, the
/// only one srvd relays) counts as 2xx: the request succeeded.
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Index of the first request counter: `(LABELS + 1) × CLASSES` of them, by label then
/// class.
const REQUESTS: usize = 0;
/// Bytes written to client sockets.
pub const SENT_BYTES: usize = REQUESTS + (LABELS + 1) * CLASSES.len();
/// Connections accepted.
pub const ACCEPTED: usize = SENT_BYTES + 1;
/// Connections that ended (closed by srvd or the client, or cut by the worker's exit).
pub const HANDLED: usize = ACCEPTED + 1;
/// Static requests answered from the worker's file cache.
pub const CACHE_HITS: usize = HANDLED + 1;
/// Static requests whose path had to be looked up on disk.
pub const CACHE_MISSES: usize = CACHE_HITS + 1;
/// First timeout counter, one per [`Timeout`].
const TIMEOUTS: usize = CACHE_MISSES + 1;
/// First of the connection gauges, one per [`ConnClass`]; everything before it is a
/// counter (folded when a worker is reaped), these are not (a dead worker holds nothing).
pub const GAUGES: usize = TIMEOUTS + Timeout::ALL.len();
/// Figures used in a slot.
pub const USED: usize = GAUGES + ConnClass::ALL.len();

const _: () = assert!(
    USED <= COUNTERS,
    "the metrics must fit in a scoreboard slot"
);

/// Index of the request counter of `label` and the class of `status`.
#[inline]
pub fn request_index(label: u8, status: u16) -> usize {
    let class = match status / 100 {
        0..=2 => 0,
        3 => 1,
        4 => 2,
        _ => 3,
    };
    REQUESTS + usize::from(label.min(OTHER)) * CLASSES.len() + class
}

/// A deadline that cut a connection or an exchange, by what was being waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `header_timeout`: a request head (or a first request) that did not arrive in time.
    Header,
    /// A request body that stopped coming (a discarded one, or a proxied one being read).
    Body,
    /// `keepalive_timeout`: an idle connection between requests.
    Keepalive,
    /// `send_timeout`: a client that took no bytes of its response.
    Send,
    /// A proxy route's `connect_timeout`.
    UpstreamConnect,
    /// A proxy route's `send_timeout` (the app took no bytes of the request).
    UpstreamSend,
    /// A proxy route's `read_timeout` (the app sent nothing for that long).
    UpstreamRead,
    /// A proxy route's `timeout`, the bound on the whole exchange.
    UpstreamTotal,
}

impl Timeout {
    pub const ALL: [Timeout; 8] = [
        Timeout::Header,
        Timeout::Body,
        Timeout::Keepalive,
        Timeout::Send,
        Timeout::UpstreamConnect,
        Timeout::UpstreamSend,
        Timeout::UpstreamRead,
        Timeout::UpstreamTotal,
    ];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Body => "body",
            Timeout::Keepalive => "keepalive",
            Timeout::Send => "send",
            Timeout::UpstreamConnect => "upstream_connect",
            Timeout::UpstreamSend => "upstream_send",
            Timeout::UpstreamRead => "upstream_read",
            Timeout::UpstreamTotal => "upstream_total",
        }
    }
}

/// What a connection is doing, for the `srvd_connections{state}` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnClass {
    /// A request head or body in progress.
    Reading,
    /// A response being sent (or proxied), or the close after it.
    Writing,
    /// Keep-alive: waiting for a request, nothing buffered.
    Idle,
}

impl ConnClass {
    pub const ALL: [ConnClass; 3] = [ConnClass::Reading, ConnClass::Writing, ConnClass::Idle];

    /// The `state` label.
    pub fn name(self) -> &'static str {
        match self {
            ConnClass::Reading => "reading",
            ConnClass::Writing => "writing",
            ConnClass::Idle => "idle",
        }
    }
}

/// A worker's handle on its own counters. `Copy`: it is one reference.
#[derive(Clone, Copy)]
pub struct Recorder {
    counters: &'static Counters,
}

impl Recorder {
    /// The counters of scoreboard slot `slot`, or, for a worker that got no slot (past
    /// `shm::SLOTS` workers), private ones nobody reads: its figures are then lost, but the
    /// request path stays free of a branch.
    pub fn new(table: &'static Table, slot: Option<usize>) -> Recorder {
        let counters = match slot {
            Some(i) => &table.slots[i].counters,
            None => Box::leak(Box::new(Counters::new())),
        };
        Recorder { counters }
    }

    /// A request of site label `label` was answered with `status`.
    #[inline]
    pub fn request(self, label: u8, status: u16) {
        self.counters.add(request_index(label, status), 1);
    }

    /// `n` bytes went out to a client.
    #[inline]
    pub fn sent(self, n: usize) {
        self.counters.add(SENT_BYTES, n as u64);
    }

    #[inline]
    pub fn accepted(self) {
        self.counters.add(ACCEPTED, 1);
    }

    /// `n` connections ended.
    #[inline]
    pub fn handled(self, n: usize) {
        self.counters.add(HANDLED, n as u64);
    }

    #[inline]
    pub fn cache(self, hit: bool) {
        self.counters
            .add(if hit { CACHE_HITS } else { CACHE_MISSES }, 1);
    }

    pub fn timeout(self, kind: Timeout) {
        self.counters.add(TIMEOUTS + kind as usize, 1);
    }

    /// Publishes how many connections are in each state (from the tick).
    pub fn connections(self, by_class: [u64; 3]) {
        for (i, n) in by_class.into_iter().enumerate() {
            self.counters.set(GAUGES + i, n);
        }
    }
}

/// The master's side: totals of the workers it has reaped, plus its own figures.
pub struct Totals {
    /// Counters of reaped workers (indices below [`GAUGES`]).
    folded: Vec<u64>,
    pub worker_restarts: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// When the master started, in seconds since the Unix epoch.
    pub start_time: u64,
}

impl Totals {
    pub fn new(start_time: u64) -> Totals {
        Totals {
            folded: vec![0; GAUGES],
            worker_restarts: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            start_time,
        }
    }

    /// Keeps a reaped worker's counters (called before its slot is zeroed; the worker is
    /// gone, so nothing writes the slot meanwhile).
    pub fn fold(&mut self, counters: &Counters) {
        for (i, total) in self.folded.iter_mut().enumerate() {
            *total = total.wrapping_add(counters.get(i));
        }
    }

    /// Every figure now: the folded totals plus every slot in use (a free slot is zero).
    pub fn snapshot(&self, table: &Table, generation: u64) -> Snapshot {
        let mut figures = vec![0u64; USED];
        figures[..GAUGES].copy_from_slice(&self.folded);
        // Relaxed loads: each figure is some value its writer stored, which is all a scrape
        // needs (no figure is derived from two others).
        for slot in table.in_use() {
            for (i, f) in figures.iter_mut().enumerate() {
                *f = f.wrapping_add(slot.counters.get(i));
            }
        }
        Snapshot {
            figures,
            worker_restarts: self.worker_restarts,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            generation,
            start_time: self.start_time,
        }
    }
}

/// Every figure at one moment, as rendered for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Indexed like a slot's counters, [`USED`] of them.
    pub figures: Vec<u64>,
    pub worker_restarts: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub generation: u64,
    pub start_time: u64,
}

impl Snapshot {
    /// All zero (tests, and the shape of a fresh master).
    pub fn empty() -> Snapshot {
        Snapshot {
            figures: vec![0; USED],
            worker_restarts: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            generation: 1,
            start_time: 0,
        }
    }

    pub fn requests(&self, label: u8, class: usize) -> u64 {
        self.figures[REQUESTS + usize::from(label) * CLASSES.len() + class]
    }

    pub fn timeouts(&self, kind: Timeout) -> u64 {
        self.figures[TIMEOUTS + kind as usize]
    }

    pub fn connections(&self, class: ConnClass) -> u64 {
        self.figures[GAUGES + class as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_class() {
        assert_eq!(request_index(0, 200), 0);
        assert_eq!(
            request_index(0, 101),
            0,
            "a switch of protocols counts as 2xx"
        );
        assert_eq!(request_index(0, 304), 1);
        assert_eq!(request_index(0, 404), 2);
        assert_eq!(request_index(0, 503), 3);
        assert_eq!(request_index(0, 999), 3);
        assert_eq!(request_index(2, 404), 2 * 4 + 2);
        assert_eq!(request_index(OTHER, 200), usize::from(OTHER) * 4);
        // A label past OTHER cannot reach another figure.
        assert_eq!(request_index(200, 500), request_index(OTHER, 500));
        assert!(request_index(OTHER, 599) < SENT_BYTES);
    }

    #[test]
    fn recorder_counts_and_master_folds() {
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let r = Recorder { counters };
        r.request(1, 200);
        r.request(1, 200);
        r.request(0, 404);
        r.sent(1000);
        r.accepted();
        r.handled(1);
        r.cache(true);
        r.cache(false);
        r.timeout(Timeout::UpstreamRead);
        r.connections([1, 2, 3]);
        let mut totals = Totals::new(0);
        totals.fold(counters);
        totals.fold(counters);
        // Folding keeps counters, never gauges.
        assert_eq!(totals.folded[request_index(1, 200)], 4);
        assert_eq!(totals.folded[SENT_BYTES], 2000);
        assert_eq!(totals.folded.len(), GAUGES);
        assert_eq!(counters.get(GAUGES + 1), 2);
        assert_eq!(counters.get(TIMEOUTS + 6), 1);
    }
}
