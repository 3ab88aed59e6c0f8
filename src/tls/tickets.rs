//! Session ticket keys shared by every worker of a generation, rotated on a wall-clock
//! schedule that all of them agree on without talking to each other.
//!
//! **Why not rustls's `Ticketer`.** `rustls::crypto::ring::Ticketer::new()` is a
//! `TicketRotator` that holds a current and a next key, each drawn from the system RNG, and
//! switches every 6 hours counted from its creation. Created in the master before fork, every
//! worker starts with the same two keys, and the first switch (to the shared "next" key) is still
//! common; but at that switch each process draws its *own* new "next" key, so from the second
//! switch on (12 hours in) a ticket issued by one worker can no longer be opened by another and a
//! returning client that lands elsewhere gets a full handshake. That is not a failed handshake,
//! only a lost resumption, but it is exactly what sharing the keys is for.
//!
//! **The key ring here.** [`TicketKeys`] is a one-way ratchet over wall-clock epochs of
//! `period` seconds (epoch = unix time / period):
//!
//! ```text
//! secret(E0)   = HKDF-Extract(salt, 32 random bytes)        drawn once, in the master
//! secret(e+1)  = HKDF-Expand(secret(e), "srvd tls ticket ratchet v1")
//! key(e)       = HKDF-Expand(secret(e), "srvd tls ticket key v1")   AES-256-GCM
//! ```
//!
//! Every process that holds `secret(e)` (a forked copy) computes the same `secret(e')` for every
//! later epoch from the same clock, so all workers of a generation encrypt with the same key at
//! the same time, and none needs a message from the master to rotate. A ticket is
//! `epoch (8 bytes, big-endian) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16)`, the epoch
//! authenticated as associated data. It is accepted under the key of its epoch when that is the
//! current epoch or the one before (a ticket lives between one and two periods; the lifetime hint
//! sent to clients is one period), or the next one (a worker whose clock read fell just past the
//! boundary encrypted with it). When a process moves on it forgets the older secret and keys: the
//! ratchet only runs forward, so a process memory dump reveals no ticket key older than the
//! previous epoch (forward secrecy of tickets, bounded by two periods). Ring's key objects are
//! dropped, not zeroed (best effort, like rustls's own ticketer).
//!
//! **Across reloads.** The master may create one `TicketKeys` for its whole life and hand a clone
//! of the `Arc` to each generation's [`super::server::server_config`]: resumption then survives a
//! reload. It must then call [`TicketKeys::advance`] at least once a period (on its loop
//! wake-ups and before each fork), so that its own copy does not keep an old secret from which
//! every later key follows. Creating a new one per generation is also correct; resumption then
//! starts over after each reload.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hkdf::{self, Prk, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How often the ticket key changes: rustls's own rotation period. A ticket stays usable for
/// one to two periods, within TLS 1.3's 7-day cap (RFC 8446 §4.6.1) and short enough that a
/// stolen key opens few sessions.
pub const ROTATION: Duration = Duration::from_secs(6 * 60 * 60);

const SALT: &[u8] = b"srvd tls ticket seed v1";
const RATCHET_INFO: &[u8] = b"srvd tls ticket ratchet v1";
const KEY_INFO: &[u8] = b"srvd tls ticket key v1";
const EPOCH_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Largest ticket opened. rustls's session state (secrets, SNI, ALPN, no client certificates
/// here) is a few hundred bytes; a cap keeps attacker-chosen lengths from probing the AEAD
/// (the "partitioning oracle" rustls's ticketer guards against).
const MAX_TICKET: usize = 2048;

/// The system RNG failed (no entropy source: getrandom(2) refused).
#[derive(thiserror::Error, Debug)]
#[error("cannot draw random bytes for the session ticket keys")]
pub struct RandomFailed;

/// The shared, rotating ticket key ring: a `ProducesTickets` for rustls (module docs).
pub struct TicketKeys {
    /// Seconds per epoch, ≥ 1.
    period: u64,
    ring: Mutex<KeyRing>,
}

struct KeyRing {
    epoch: u64,
    secret: Prk,
    current: LessSafeKey,
    /// The key of `epoch - 1`, once the ring moved past its first epoch.
    previous: Option<LessSafeKey>,
}

impl TicketKeys {
    /// A new ring seeded from the system RNG, starting at the current epoch. Call it in the
    /// master before forking the workers that share it.
    pub fn new(period: Duration) -> Result<TicketKeys, RandomFailed> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| RandomFailed)?;
        let keys = TicketKeys::from_seed(&seed, period, SystemTime::now());
        seed.fill(0);
        Ok(keys)
    }

    /// A ring from explicit seed material, at the epoch of `now`. Two rings made from the same
    /// seed at the same epoch agree on every key from then on (that is what fork gives the
    /// workers; tests use it to stand for two processes).
    pub fn from_seed(seed: &[u8; 32], period: Duration, now: SystemTime) -> TicketKeys {
        let period = period.as_secs().max(1);
        let secret = hkdf::Salt::new(HKDF_SHA256, SALT).extract(seed);
        let epoch = epoch_of(period, now);
        TicketKeys {
            period,
            ring: Mutex::new(KeyRing {
                epoch,
                current: key_of(&secret),
                secret,
                previous: None,
            }),
        }
    }

    /// Moves the ring to the epoch of `now`, forgetting older secrets. Never moves back (a
    /// clock set back keeps the current key until the clock catches up).
    pub fn advance(&self, now: SystemTime) {
        let target = epoch_of(self.period, now);
        let mut ring = self.lock();
        ring.advance_to(target);
    }

    /// The epoch the ring is at (for tests and logs).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    fn lock(&self) -> MutexGuard<'_, KeyRing> {
        // Nothing panics while the lock is held; a poisoned lock still holds a consistent ring.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`ProducesTickets::encrypt`] at time `now`.
    pub fn encrypt_at(&self, plain: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        if plain.len() + EPOCH_LEN + NONCE_LEN + TAG_LEN > MAX_TICKET {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ring = self.lock();
        ring.advance_to(epoch_of(self.period, now));
        let header = ring.epoch.to_be_bytes();
        let mut out = Vec::with_capacity(EPOCH_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        ring.current
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// [`ProducesTickets::decrypt`] at time `now`: `None` for anything not sealed by a key of
    /// this ring's previous, current or next epoch.
    pub fn decrypt_at(&self, ticket: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        if ticket.len() < EPOCH_LEN + NONCE_LEN + TAG_LEN || ticket.len() > MAX_TICKET {
            return None;
        }
        let (header, rest) = ticket.split_at(EPOCH_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let epoch = u64::from_be_bytes(header.try_into().ok()?);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut ring = self.lock();
        ring.advance_to(epoch_of(self.period, now));
        let next;
        let key = if epoch == ring.epoch {
            &ring.current
        } else if epoch.checked_add(1) == Some(ring.epoch) {
            ring.previous.as_ref()?
        } else if ring.epoch.checked_add(1) == Some(epoch) {
            next = key_of(&ratchet(&ring.secret));
            &next
        } else {
            return None;
        };
        let mut body = sealed.to_vec();
        let plain_len = key
            .open_in_place(nonce, Aad::from(header), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

impl KeyRing {
    fn advance_to(&mut self, target: u64) {
        if target <= self.epoch {
            return;
        }
        // Ratchet to target - 1 (its key becomes `previous`), then once more.
        let mut secret = self.secret.clone();
        let mut epoch = self.epoch;
        while epoch + 1 < target {
            secret = ratchet(&secret);
            epoch += 1;
        }
        let previous = if epoch == self.epoch {
            std::mem::replace(&mut self.current, key_of(&ratchet(&secret)))
        } else {
            let previous = key_of(&secret);
            self.current = key_of(&ratchet(&secret));
            previous
        };
        self.secret = ratchet(&secret);
        self.previous = Some(previous);
        self.epoch = target;
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, SystemTime::now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, SystemTime::now())
    }
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("period", &self.period)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn epoch_of(period: u64, now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / period
}

fn ratchet(secret: &Prk) -> Prk {
    Prk::from(
        secret
            .expand(&[RATCHET_INFO], HKDF_SHA256)
            .expect("32 bytes are within HKDF-SHA256's output limit"),
    )
}

fn key_of(secret: &Prk) -> LessSafeKey {
    let okm = secret
        .expand(&[KEY_INFO], &aead::AES_256_GCM)
        .expect("32 bytes are within HKDF-SHA256's output limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(3600);
    const SEED: [u8; 32] = [7; 32];

    fn at(epoch: u64, secs_into: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(epoch * PERIOD.as_secs() + secs_into)
    }

    #[test]
    fn two_copies_of_a_ring_open_each_others_tickets_across_rotations() {
        // Two "workers" forked from the same master state.
        let a = TicketKeys::from_seed(&SEED, PERIOD, at(100, 10));
        let b = TicketKeys::from_seed(&SEED, PERIOD, at(100, 10));
        for epoch in [100, 101, 102, 105, 200] {
            let now = at(epoch, 1800);
            let ticket = a.encrypt_at(b"session state", now).unwrap();
            assert_eq!(b.decrypt_at(&ticket, now).unwrap(), b"session state");
            assert_eq!(a.epoch(), epoch);
            assert_eq!(b.epoch(), epoch);
        }
    }

    #[test]
    fn a_ring_that_rotated_by_steps_agrees_with_one_that_jumped() {
        let stepping = TicketKeys::from_seed(&SEED, PERIOD, at(10, 0));
        let jumping = TicketKeys::from_seed(&SEED, PERIOD, at(10, 0));
        for e in 11..=20 {
            stepping.advance(at(e, 0));
        }
        let ticket = stepping.encrypt_at(b"x", at(20, 5)).unwrap();
        assert_eq!(jumping.decrypt_at(&ticket, at(20, 5)).unwrap(), b"x");
        let ticket = jumping.encrypt_at(b"y", at(20, 6)).unwrap();
        assert_eq!(stepping.decrypt_at(&ticket, at(20, 6)).unwrap(), b"y");
    }

    #[test]
    fn tickets_live_for_the_next_epoch_and_no_longer() {
        let keys = TicketKeys::from_seed(&SEED, PERIOD, at(50, 0));
        let ticket = keys.encrypt_at(b"t", at(50, 100)).unwrap();
        assert!(keys.decrypt_at(&ticket, at(50, 3599)).is_some());
        assert!(keys.decrypt_at(&ticket, at(51, 3599)).is_some());
        assert!(keys.decrypt_at(&ticket, at(52, 0)).is_none());
    }

    #[test]
    fn a_worker_behind_the_boundary_opens_a_ticket_sealed_past_it() {
        let ahead = TicketKeys::from_seed(&SEED, PERIOD, at(7, 0));
        let behind = TicketKeys::from_seed(&SEED, PERIOD, at(7, 0));
        let ticket = ahead.encrypt_at(b"t", at(8, 0)).unwrap();
        assert_eq!(behind.decrypt_at(&ticket, at(7, 3599)).unwrap(), b"t");
        // Two epochs ahead is not accepted.
        let ticket = ahead.encrypt_at(b"t", at(9, 0)).unwrap();
        assert!(behind.decrypt_at(&ticket, at(7, 3599)).is_none());
    }

    #[test]
    fn other_seeds_tampering_and_junk_are_refused() {
        let keys = TicketKeys::from_seed(&SEED, PERIOD, at(3, 0));
        let other = TicketKeys::from_seed(&[8; 32], PERIOD, at(3, 0));
        let now = at(3, 1);
        let ticket = keys.encrypt_at(b"state", now).unwrap();
        assert!(other.decrypt_at(&ticket, now).is_none());
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert!(keys.decrypt_at(&bad, now).is_none(), "flipped byte {i}");
        }
        assert!(keys.decrypt_at(&ticket[..ticket.len() - 1], now).is_none());
        assert!(keys.decrypt_at(&[], now).is_none());
        assert!(keys.decrypt_at(&[0u8; 40], now).is_none());
        assert!(keys.decrypt_at(&vec![0u8; MAX_TICKET + 1], now).is_none());
        assert!(keys.encrypt_at(&vec![0u8; MAX_TICKET], now).is_none());
    }

    #[test]
    fn a_clock_set_back_keeps_the_current_key() {
        let keys = TicketKeys::from_seed(&SEED, PERIOD, at(30, 0));
        keys.advance(at(31, 0));
        let ticket = keys.encrypt_at(b"t", at(29, 0)).unwrap();
        assert_eq!(keys.epoch(), 31);
        assert_eq!(keys.decrypt_at(&ticket, at(31, 10)).unwrap(), b"t");
    }

    #[test]
    fn random_rings_differ() {
        let a = TicketKeys::new(ROTATION).unwrap();
        let b = TicketKeys::new(ROTATION).unwrap();
        let ticket = a.encrypt(b"t").unwrap();
        assert_eq!(a.decrypt(&ticket).unwrap(), b"t");
        assert!(b.decrypt(&ticket).is_none());
        assert!(a.enabled());
        assert_eq!(a.lifetime(), 6 * 60 * 60);
    }
}
