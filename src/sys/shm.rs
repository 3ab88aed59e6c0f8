//! The scoreboard: a table of per-worker slots in anonymous shared memory, mapped by the
//! master before the first fork so that every worker inherits the same pages.
//!
//! Each slot has one writer at a time: the master resets it for a worker before forking
//! and again after reaping; in between only that worker writes it. Readers (the other
//! workers, and the master for the metrics) only load. Fields are atomics, so no lock is
//! ever taken.
//!
//! A slot holds the balance figures (`worker::balance`) and, on cache lines of their own,
//! [`COUNTERS`] single-writer counters whose meaning belongs to [`crate::metrics`].

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Slots in the table: more workers than this (TTIN far past the core count) run
/// without a slot and are then left out of the balance (see `worker::balance`).
pub const SLOTS: usize = 256;
/// Counters per slot: room for every figure `metrics` defines (it checks at compile time
/// that they fit).
pub const COUNTERS: usize = 288;

/// One worker's published figures. Aligned to a cache line so that two workers'
/// writes never share one.
#[repr(C, align(64))]
pub struct Slot {
    /// Generation of the worker that owns the slot, once it serves; 0 before that, when
    /// free, and once it drains.
    pub generation: AtomicU64,
    /// Connections the worker holds open.
    pub live: AtomicU32,
    /// CLOCK_MONOTONIC in milliseconds when the worker last showed that it runs.
    pub seen_ms: AtomicU64,
    /// The worker's metrics. Their own cache lines (`Counters` is aligned): they change on
    /// every request, the fields above are read by the peers on every accept.
    pub counters: Counters,
}

/// Counters with a single writer: the slot's worker. Readers load them at any time.
#[repr(C, align(64))]
pub struct Counters([AtomicU64; COUNTERS]);

impl Counters {
    /// All zero (also what the kernel's zeroed pages hold).
    pub const fn new() -> Counters {
        Counters([const { AtomicU64::new(0) }; COUNTERS])
    }

    /// Adds `n` to counter `i`. Only the one writer calls this, so a plain load and store
    /// are enough (nobody can store in between): no locked read-modify-write on the
    /// request path.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let c = &self.0[i];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets counter `i` (a gauge); the writer only.
    #[inline]
    pub fn set(&self, i: usize, v: u64) {
        self.0[i].store(v, Ordering::Relaxed);
    }

    /// Counter `i` as last stored.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }

    /// Zeroes every counter; only while nobody writes (the slot is between workers).
    fn clear(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new()
    }
}

/// The shared table: the slots, and how many of them the master has ever handed out (so
/// a reader scans only those).
#[repr(C)]
pub struct Table {
    /// One past the highest slot index ever claimed; only grows.
    pub used: AtomicUsize,
    pub slots: [Slot; SLOTS],
}

impl Table {
    /// The slots that may be in use.
    pub fn in_use(&self) -> &[Slot] {
        &self.slots[..self.used.load(Ordering::Acquire).min(SLOTS)]
    }
}

/// The mapped table; lives as long as the process (never unmapped: workers hold it until
/// they exit, and the master until it does).
pub struct Scoreboard {
    table: &'static Table,
}

impl Scoreboard {
    /// Maps a zeroed table of [`SLOTS`] slots, shared with every process forked later.
    pub fn new() -> io::Result<Scoreboard> {
        let len = std::mem::size_of::<Table>();
        // SAFETY: an anonymous mapping with no address hint touches no existing memory;
        // the result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<Table>()).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: the mapping is `len` bytes, page-aligned (so aligned for `Table`), zeroed
        // by the kernel (all-zero is a valid `Table`: atomics of 0), and never unmapped, so
        // a `'static` shared reference to it is valid. All access goes through atomics, so
        // concurrent access from other processes is not a data race.
        let table = unsafe { ptr.as_ref() };
        Ok(Scoreboard { table })
    }

    /// The table (read by workers to compute their share).
    pub fn table(&self) -> &'static Table {
        self.table
    }

    /// Master: slot `i` goes to a worker about to be forked, or its worker was reaped (and
    /// its counters were folded into the master's totals first, see `metrics::Totals`).
    /// Either way it is zeroed; a new worker counts for the balance only once it joins
    /// (so one stuck in start-up holds nobody back).
    pub fn reset(&self, i: usize) {
        self.table.used.fetch_max(i + 1, Ordering::AcqRel);
        let slot = &self.table.slots[i];
        slot.generation.store(0, Ordering::Release);
        slot.live.store(0, Ordering::Relaxed);
        slot.seen_ms.store(0, Ordering::Relaxed);
        slot.counters.clear();
    }
}

/// CLOCK_MONOTONIC in milliseconds: one clock for every process of the machine.
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}
