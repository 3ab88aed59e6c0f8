//! The worker table: who runs, of which generation, whether it serves yet, and how fast
//! crashing workers may be replaced.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// A worker that dies sooner than this after its start counts as a crash-loop death.
pub const QUICK_DEATH: Duration = Duration::from_secs(1);
/// First back-off delay after a quick death; doubles per further quick death.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest back-off between two respawns of a crash-looping worker.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One forked worker.
pub struct Child {
    pub pid: Pid,
    pub generation: u64,
    /// Scoreboard slot (`sys::shm`), freed when the worker is reaped.
    pub slot: Option<usize>,
    /// Read end of the worker's channel; `None` once the worker closed it.
    pub channel: Option<UnixStream>,
    /// The worker reported that it serves.
    pub ready: bool,
    /// The worker was told to drain (old generation, TTOU or stop).
    pub retiring: bool,
    pub started: Instant,
}

/// Respawn pacing for crash loops: immediate for a worker that lived, exponential for
/// workers dying right after start; logged once per burst.
#[derive(Default)]
pub struct Backoff {
    quick_deaths: u32,
    pub not_before: Option<Instant>,
}

impl Backoff {
    /// Records a death; returns true when this starts a burst (the one time to log it).
    pub fn on_death(&mut self, lived: Duration, now: Instant) -> bool {
        if lived >= QUICK_DEATH {
            self.quick_deaths = 0;
            self.not_before = None;
            return false;
        }
        self.quick_deaths += 1;
        let delay = BACKOFF_START
            .saturating_mul(1 << (self.quick_deaths - 1).min(16))
            .min(BACKOFF_MAX);
        self.not_before = Some(now + delay);
        self.quick_deaths == 1
    }

    /// Whether a respawn may happen now.
    pub fn allows(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_and_resets() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(b.on_death(Duration::from_millis(10), now));
        assert_eq!(b.not_before, Some(now + BACKOFF_START));
        assert!(!b.on_death(Duration::from_millis(10), now));
        assert_eq!(b.not_before, Some(now + BACKOFF_START * 2));
        for _ in 0..20 {
            b.on_death(Duration::from_millis(10), now);
        }
        assert_eq!(b.not_before, Some(now + BACKOFF_MAX));
        assert!(!b.on_death(Duration::from_secs(5), now));
        assert!(b.allows(now));
    }
}
