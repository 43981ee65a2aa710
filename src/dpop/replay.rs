//! The bounded, shared memory of DPoP proof ids (RFC 9449 §11.1): a `jti` is accepted once per
//! key within the window in which its proof's `iat` is acceptable, across every worker of the
//! Envoy.
//!
//! # Design
//! Envoy's shared data is the only state the workers (one Wasm VM each) share, and it offers a
//! get and a compare-and-swap set per key, but no delete. So the store is a fixed set of
//! `slots` keys, `keygate.dpop.<i>`, each holding a small record of at most `entries` seen proofs:
//! 16 bytes each, an 8-byte fingerprint and the 8-byte second at which the entry may be
//! forgotten. Memory is bounded by `slots × entries × 16` bytes whatever the traffic, and a
//! check copies one record (at most `entries × 16` bytes), never the whole store.
//!
//! - Fingerprint: SHA-256 over the proof key's thumbprint and the `jti` (so one client cannot
//!   burn another's ids); its first 8 bytes choose the slot, the next 8 are kept. Every worker
//!   computes the same, with no per-process secret.
//! - Expiry: `iat + max_age`, rounded up. After that the proof is refused as too old anyway, so
//!   the entry is no longer needed; expired entries are dropped whenever their record is written.
//! - Race: the write names the version it read (CAS). Two workers seeing the same new proof both
//!   read "absent", one write wins, the other's fails, it reads again, finds the entry, and
//!   refuses the proof as replayed.
//! - Full: when a record holds `entries` live ids, the proof is refused with 503 and
//!   `Retry-After` (the time until the oldest entry expires) instead of forgetting a live id,
//!   which would let that proof be replayed. Size `slots × entries` for the proofs expected in
//!   one window (README, DPoP).

use sha2::{Digest, Sha256};

use super::error::DpopError;
use crate::keys::{Expect, SlotError};

/// One shared-data key per slot.
const KEY_PREFIX: &str = "keygate.dpop.";
const ENTRY_BYTES: usize = 16;
/// Compare-and-swap rounds before giving up (each lost round means another worker wrote the
/// same slot in between; a handful covers any real contention).
const CAS_ATTEMPTS: usize = 8;

/// Envoy's shared data as the replay store uses it (the worker's host implements it).
pub trait Slots {
    /// The bytes of `key` and their CAS value.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// A compare-and-swap write.
    fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError>;
}

/// The replay store's shape (from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStore {
    pub slots: usize,
    pub entries: usize,
}

impl ReplayStore {
    /// Records the proof `jti` of key `jkt`, to be remembered until `expires_at` (seconds);
    /// refuses it when it was recorded before and has not expired at `now`.
    pub fn first_use(
        &self,
        slots: &dyn Slots,
        jkt: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), DpopError> {
        let (slot, fingerprint) = fingerprint(jkt, jti, self.slots);
        let key = format!("{KEY_PREFIX}{slot}");
        for _ in 0..CAS_ATTEMPTS {
            let (record, expect) = match slots.get(&key) {
                Some((bytes, cas)) => (bytes, Expect::Cas(cas)),
                None => (Vec::new(), Expect::Absent),
            };
            let mut live: Vec<([u8; 8], u64)> =
                decode(&record).filter(|(_, until)| *until > now).collect();
            if live.iter().any(|(seen, _)| *seen == fingerprint) {
                return Err(DpopError::Replayed);
            }
            if live.len() >= self.entries {
                let soonest = live.iter().map(|(_, until)| *until).min().unwrap_or(now);
                return Err(DpopError::ReplayStoreFull {
                    retry_after: soonest.saturating_sub(now).max(1),
                });
            }
            live.push((fingerprint, expires_at));
            match slots.set(&key, &encode(&live), expect) {
                Ok(()) => return Ok(()),
                Err(SlotError::CasMismatch) => continue,
                Err(SlotError::Host) => return Err(DpopError::ReplayStoreUnavailable),
            }
        }
        Err(DpopError::ReplayStoreUnavailable)
    }
}

/// (slot index, kept fingerprint) of a proof.
fn fingerprint(jkt: &str, jti: &str, slots: usize) -> (usize, [u8; 8]) {
    let mut hasher = Sha256::new();
    hasher.update(b"keygate dpop jti\0");
    hasher.update(jkt.as_bytes());
    hasher.update(b"\0");
    hasher.update(jti.as_bytes());
    let digest = hasher.finalize();
    let word = |range: std::ops::Range<usize>| -> [u8; 8] {
        digest
            .get(range)
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or_default()
    };
    let (chooser, kept) = (word(0..8), word(8..16));
    let slots = u64::try_from(slots.max(1)).unwrap_or(u64::MAX);
    let slot = usize::try_from(u64::from_be_bytes(chooser) % slots).unwrap_or(0);
    (slot, kept)
}

/// The entries of a record (a trailing partial entry, which only a foreign writer could leave,
/// is ignored).
fn decode(record: &[u8]) -> impl Iterator<Item = ([u8; 8], u64)> + '_ {
    record.chunks_exact(ENTRY_BYTES).filter_map(|entry| {
        let (seen, until) = entry.split_at_checked(8)?;
        Some((
            seen.try_into().ok()?,
            u64::from_be_bytes(until.try_into().ok()?),
        ))
    })
}

fn encode(entries: &[([u8; 8], u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for (seen, until) in entries {
        out.extend_from_slice(seen);
        out.extend_from_slice(&until.to_be_bytes());
    }
    out
}

/// Shared data in memory, for callers without a host (`decide`, `keygate explain`, tests).
#[derive(Debug, Default)]
pub struct MemorySlots {
    data: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl Slots for MemorySlots {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.try_borrow().ok()?.get(key).cloned()
    }

    fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
        let mut data = self.data.try_borrow_mut().map_err(|_| SlotError::Host)?;
        let cas = match (data.get(key), expect) {
            (None, _) => 1,
            (Some(_), Expect::Absent) => return Err(SlotError::CasMismatch),
            (Some((_, current)), Expect::Cas(cas)) if *current == cas => cas.wrapping_add(1),
            (Some(_), Expect::Cas(_)) => return Err(SlotError::CasMismatch),
        };
        data.insert(key.to_string(), (bytes.to_vec(), cas));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const STORE: ReplayStore = ReplayStore {
        slots: 4,
        entries: 3,
    };

    #[test]
    fn a_jti_is_accepted_once_until_it_expires() {
        let slots = MemorySlots::default();
        assert_eq!(STORE.first_use(&slots, "k", "j1", 1_300, 1_000), Ok(()));
        assert_eq!(
            STORE.first_use(&slots, "k", "j1", 1_300, 1_100),
            Err(DpopError::Replayed)
        );
        // The same jti of another key is another proof.
        assert_eq!(STORE.first_use(&slots, "k2", "j1", 1_300, 1_100), Ok(()));
        // Once expired it is forgotten (and its proof would be refused as too old anyway).
        assert_eq!(STORE.first_use(&slots, "k", "j1", 1_700, 1_300), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_a_full_slot_refuses_instead_of_forgetting() {
        let one = ReplayStore {
            slots: 1,
            entries: 3,
        };
        let slots = MemorySlots::default();
        for (i, until) in [1_010, 1_020, 1_030].iter().enumerate() {
            assert_eq!(
                one.first_use(&slots, "k", &format!("j{i}"), *until, 1_000),
                Ok(())
            );
        }
        assert_eq!(
            one.first_use(&slots, "k", "j9", 1_300, 1_000),
            Err(DpopError::ReplayStoreFull { retry_after: 10 })
        );
        // Still refused as replayed, not forgotten.
        assert_eq!(
            one.first_use(&slots, "k", "j0", 1_300, 1_005),
            Err(DpopError::Replayed)
        );
        let bytes = slots.get("keygate.dpop.0").map(|(b, _)| b.len());
        assert_eq!(bytes, Some(3 * ENTRY_BYTES));
        // After the first entry expires there is room again, and the record does not grow.
        assert_eq!(one.first_use(&slots, "k", "j9", 1_300, 1_011), Ok(()));
        let bytes = slots.get("keygate.dpop.0").map(|(b, _)| b.len());
        assert_eq!(bytes, Some(3 * ENTRY_BYTES));
    }

    #[test]
    fn slots_spread_and_stay_in_range() {
        let slots = MemorySlots::default();
        let store = ReplayStore {
            slots: 8,
            entries: 64,
        };
        for i in 0..200 {
            assert_eq!(
                store.first_use(&slots, "k", &format!("jti-{i}"), 2_000, 1_000),
                Ok(())
            );
        }
        let data = slots.data.borrow();
        assert!(
            data.len() > 4 && data.len() <= 8,
            "{} slots used",
            data.len()
        );
        assert!(data.keys().all(|k| {
            k.strip_prefix(KEY_PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i < 8)
        }));
    }

    /// Another worker writes the same slot between this worker's read and write.
    struct Racing {
        inner: MemorySlots,
        interfere: Cell<bool>,
    }

    impl Slots for Racing {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            let seen = self.inner.get(key);
            if self.interfere.replace(false) {
                // The other worker records the same proof first.
                let _ = STORE.first_use(&self.inner, "k", "same", 1_300, 1_000);
            }
            seen
        }
        fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
            self.inner.set(key, bytes, expect)
        }
    }

    #[test]
    fn a_lost_race_rereads_and_finds_the_replay() {
        let racing = Racing {
            inner: MemorySlots::default(),
            interfere: Cell::new(true),
        };
        assert_eq!(
            STORE.first_use(&racing, "k", "same", 1_300, 1_000),
            Err(DpopError::Replayed)
        );
    }

    struct Broken;
    impl Slots for Broken {
        fn get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
            None
        }
        fn set(&self, _: &str, _: &[u8], _: Expect) -> Result<(), SlotError> {
            Err(SlotError::Host)
        }
    }

    #[test]
    fn shared_data_refusing_fails_closed() {
        assert_eq!(
            STORE.first_use(&Broken, "k", "j", 1_300, 1_000),
            Err(DpopError::ReplayStoreUnavailable)
        );
    }
}
