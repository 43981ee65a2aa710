//! The bounded, shared memory of DPoP proof ids (RFC 9449 §11.1): a `jti` is accepted once per
//! key within the window in which its proof's `iat` is acceptable, across every worker of the
//! Envoy.
//!
//! # Design
//! Envoy's shared data is the only state the workers (one Wasm VM each) share, and it offers a
//! get and a compare-and-swap set per key, but no delete. So the store is a fixed set of
//! `slots` keys, `keygate.dpop.<i>`, each holding a small record of at most `entries` seen proofs:
//! 16 bytes each, an 8-byte fingerprint, a 4-byte tag of the proof's key and the 4-byte second at
//! which the entry may be forgotten. Memory is bounded by `slots × entries × 16` bytes whatever
//! the traffic, and a check copies one record (at most `entries × 16` bytes), never the whole
//! store.
//!
//! - Only proofs that pass every other check take room. The decision checks the proof, then
//!   authorizes the request, then looks the store up read-only ([`ReplayStore::check`]: a replay
//!   is refused there); the worker spends the request's tier and only then records the `jti`
//!   ([`ReplayStore::record`], which checks again under the compare-and-swap). A request refused
//!   for any reason (403, 429, a bad proof) leaves nothing behind.
//! - Fingerprint: SHA-256 over a per-Envoy secret, the proof key's thumbprint and the `jti` (so
//!   one client cannot burn another's ids); its first 8 bytes choose the slot, the next 8 are
//!   kept. The secret (`keygate.dpop.secret`, 32 random bytes written once by the first worker
//!   that needs it, read by the others) keeps clients from choosing proof ids that land in one
//!   slot: each client's proofs spread over every slot however its ids are picked, so a full slot
//!   only refuses the proofs that happen to land there.
//! - One key holds at most half of a slot (`entries / 2`, rounded up): the entries carry a tag of
//!   their key (secret-keyed too), and a proof of a key that already holds that many live entries
//!   in its slot is refused as the store being full, while other keys still find room there.
//! - Expiry: `iat + max_age`, rounded up. After that the proof is refused as too old anyway, so
//!   the entry is no longer needed; expired entries are dropped whenever their record is written.
//! - Race: the write names the version it read (CAS). Two workers seeing the same new proof both
//!   read "absent", one write wins, the other's fails, it reads again, finds the entry, and
//!   refuses the proof as replayed.
//! - Full: when a record holds `entries` live ids, the proof is refused with 503 and
//!   `Retry-After` (the time until the oldest entry expires) instead of forgetting a live id,
//!   which would let that proof be replayed. Size `slots × entries` for the proofs expected in
//!   one window (docs/dpop.md).

use sha2::{Digest, Sha256};

use super::error::DpopError;
use crate::keys::{Expect, SlotError};

/// One shared-data key per slot.
const KEY_PREFIX: &str = "keygate.dpop.";
/// The per-Envoy secret the slots, fingerprints and key tags are keyed with.
const SECRET_KEY: &str = "keygate.dpop.secret";
const ENTRY_BYTES: usize = 16;
/// The secret's length (a SHA-256).
pub const SECRET_BYTES: usize = 32;
/// Compare-and-swap rounds before giving up (each lost round means another worker wrote the
/// same slot in between; a handful covers any real contention).
const CAS_ATTEMPTS: usize = 8;

/// Envoy's shared data as the replay store uses it (the worker's host implements it).
pub trait Slots {
    /// The bytes of `key` and their CAS value.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// A compare-and-swap write.
    fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError>;
    /// Randomness for the store's secret, asked for when no worker has written it yet (the
    /// worker answers from its random id; the in-memory store from a fixed value).
    fn seed(&self) -> u64 {
        0
    }
    /// The store's secret, when this caller already read or wrote it. Once written the secret
    /// never changes (it is written only when absent and shared data has no delete), so a caller
    /// whose memory lives no longer than its shared data may keep it and save a read per proof.
    fn known_secret(&self) -> Option<[u8; SECRET_BYTES]> {
        None
    }
    /// Keeps the secret read or written (see [`known_secret`](Self::known_secret)).
    fn keep_secret(&self, _secret: [u8; SECRET_BYTES]) {}
}

/// The replay store's shape (from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStore {
    pub slots: usize,
    pub entries: usize,
}

/// A proof that passed every check and was not seen before (at [`ReplayStore::check`]): where
/// and what [`ReplayStore::record`] writes. It holds no part of the proof in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUse {
    slot: usize,
    fingerprint: [u8; 8],
    tag: [u8; 4],
    expires_at: u32,
    /// The slot's record as the check read it, and how to write over exactly that version:
    /// [`ReplayStore::record`] tries its first write on it without reading again (a record
    /// written meanwhile fails the compare-and-swap, and it reads again).
    seen: (Vec<u8>, Expect),
}

/// One live entry of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    fingerprint: [u8; 8],
    tag: [u8; 4],
    until: u32,
}

impl ReplayStore {
    /// The live entries one proof key may hold in one slot.
    pub fn per_key(&self) -> usize {
        self.entries.div_ceil(2).max(1)
    }

    /// Read-only: whether the proof `jti` of key `jkt`, to be remembered until `expires_at`
    /// (seconds), could be recorded at `now`. Refuses it when it was recorded before and has not
    /// expired, or when its slot (or its key's share of it) is full; writes nothing but the
    /// store's secret, once per Envoy.
    pub fn check(
        &self,
        slots: &dyn Slots,
        jkt: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<ProofUse, DpopError> {
        let secret = secret(slots)?;
        let mut proof = self.locate(&secret, jkt, jti, expires_at);
        proof.seen = read(slots, &slot_key(proof.slot));
        self.admit(&live(&proof.seen.0, now), &proof, now)?;
        Ok(proof)
    }

    /// Records a proof [`check`](Self::check) admitted, once its request is authorized and its
    /// tier spent. The checks run again on what the write replaces: another worker may have
    /// recorded the same proof (a replay) or filled the slot in between.
    pub fn record(&self, slots: &dyn Slots, proof: &ProofUse, now: u64) -> Result<(), DpopError> {
        let key = slot_key(proof.slot);
        for attempt in 0..CAS_ATTEMPTS {
            let fresh;
            let (record, expect) = if attempt == 0 {
                (&proof.seen.0, proof.seen.1)
            } else {
                fresh = read(slots, &key);
                (&fresh.0, fresh.1)
            };
            let mut live = live(record, now);
            self.admit(&live, proof, now)?;
            live.push(Entry {
                fingerprint: proof.fingerprint,
                tag: proof.tag,
                until: proof.expires_at,
            });
            match slots.set(&key, &encode(&live), expect) {
                Ok(()) => return Ok(()),
                Err(SlotError::CasMismatch) => continue,
                Err(SlotError::Host) => return Err(DpopError::ReplayStoreUnavailable),
            }
        }
        Err(DpopError::ReplayStoreUnavailable)
    }

    /// [`check`](Self::check) then [`record`](Self::record), for a proof whose request is
    /// already allowed.
    pub fn first_use(
        &self,
        slots: &dyn Slots,
        jkt: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), DpopError> {
        let proof = self.check(slots, jkt, jti, expires_at, now)?;
        self.record(slots, &proof, now)
    }

    /// A proof's slot, fingerprint and key tag under `secret`.
    fn locate(&self, secret: &[u8], jkt: &str, jti: &str, expires_at: u64) -> ProofUse {
        let (tag, mut hasher) = key_hash::of(secret, jkt);
        hasher.update(jti.as_bytes());
        let digest = hasher.finalize();
        let (chooser, fingerprint) = (word::<8>(&digest, 0), word::<8>(&digest, 8));
        let slots = u64::try_from(self.slots.max(1)).unwrap_or(u64::MAX);
        let slot = usize::try_from(u64::from_be_bytes(chooser) % slots).unwrap_or(0);
        ProofUse {
            slot,
            fingerprint,
            tag,
            expires_at: u32::try_from(expires_at).unwrap_or(u32::MAX),
            seen: (Vec::new(), Expect::Absent),
        }
    }

    /// Whether `proof` may join the `live` entries of its slot.
    fn admit(&self, live: &[Entry], proof: &ProofUse, now: u64) -> Result<(), DpopError> {
        if live.iter().any(|e| e.fingerprint == proof.fingerprint) {
            return Err(DpopError::Replayed);
        }
        let full = |of: &mut dyn Iterator<Item = &Entry>| {
            let soonest = of.map(|e| u64::from(e.until)).min().unwrap_or(now);
            Err(DpopError::ReplayStoreFull {
                retry_after: soonest.saturating_sub(now).max(1),
            })
        };
        if live.len() >= self.entries {
            return full(&mut live.iter());
        }
        let mut own = live.iter().filter(|e| e.tag == proof.tag);
        if own.clone().count() >= self.per_key() {
            return full(&mut own);
        }
        Ok(())
    }
}

/// What a proof key contributes to its proofs' places, computed once per key and secret (a client
/// signs every proof with one key): its tag, and the fingerprint's hash state after the key. A few
/// direct-mapped slots per thread, an entry used only for the identical secret and key.
mod key_hash {
    use std::cell::RefCell;

    use sha2::{Digest, Sha256};

    use crate::dpop::memo::{self, Memo};

    const SLOTS: usize = 8;

    type Seen = (Box<[u8]>, Box<str>, [u8; 4], Sha256);

    thread_local! {
        static MEMO: RefCell<Memo<Seen, SLOTS>> = const { RefCell::new(Memo::new()) };
    }

    /// The key's tag and the fingerprint hasher with everything but the `jti` taken in.
    pub(super) fn of(secret: &[u8], jkt: &str) -> ([u8; 4], Sha256) {
        let at = jkt.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let known = memo::recall(&MEMO, at, |(s, k, tag, state)| {
            (**s == *secret && **k == *jkt).then(|| (*tag, state.clone()))
        });
        if let Some(known) = known {
            return known;
        }
        let fresh = compute(secret, jkt);
        let seen = (secret.into(), jkt.into(), fresh.0, fresh.1.clone());
        memo::remember(&MEMO, at, seen);
        fresh
    }

    pub(super) fn compute(secret: &[u8], jkt: &str) -> ([u8; 4], Sha256) {
        let mut fingerprint = Sha256::new();
        fingerprint.update(b"keygate dpop jti\0");
        fingerprint.update(secret);
        fingerprint.update(jkt.as_bytes());
        fingerprint.update(b"\0");
        let mut hasher = Sha256::new();
        hasher.update(b"keygate dpop key\0");
        hasher.update(secret);
        hasher.update(jkt.as_bytes());
        (super::word::<4>(&hasher.finalize(), 0), fingerprint)
    }
}

/// A slot's record and the expectation that writes over exactly it.
fn read(slots: &dyn Slots, key: &str) -> (Vec<u8>, Expect) {
    match slots.get(key) {
        Some((bytes, cas)) => (bytes, Expect::Cas(cas)),
        None => (Vec::new(), Expect::Absent),
    }
}

fn slot_key(slot: usize) -> String {
    format!("{KEY_PREFIX}{slot}")
}

/// `N` bytes of `digest` from `at` (zeros where it is shorter, which SHA-256 never is).
fn word<const N: usize>(digest: &[u8], at: usize) -> [u8; N] {
    digest
        .get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or([0; N])
}

/// The per-Envoy secret: read, or written by the first worker that needs it (a worker that loses
/// the race reads the winner's).
fn secret(slots: &dyn Slots) -> Result<Vec<u8>, DpopError> {
    if let Some(known) = slots.known_secret() {
        return Ok(known.to_vec());
    }
    for _ in 0..CAS_ATTEMPTS {
        if let Some((bytes, _)) = slots.get(SECRET_KEY).filter(|(b, _)| !b.is_empty()) {
            // Any other length (a foreign writer) is used as it is, never kept.
            if let Ok(kept) = <[u8; SECRET_BYTES]>::try_from(bytes.as_slice()) {
                slots.keep_secret(kept);
            }
            return Ok(bytes);
        }
        let mut hasher = Sha256::new();
        hasher.update(b"keygate dpop secret\0");
        hasher.update(slots.seed().to_be_bytes());
        let fresh: [u8; SECRET_BYTES] = hasher.finalize().into();
        match slots.set(SECRET_KEY, &fresh, Expect::Absent) {
            Ok(()) => {
                slots.keep_secret(fresh);
                return Ok(fresh.to_vec());
            }
            Err(SlotError::CasMismatch) => continue,
            Err(SlotError::Host) => return Err(DpopError::ReplayStoreUnavailable),
        }
    }
    Err(DpopError::ReplayStoreUnavailable)
}

/// The entries of a record still live at `now` (a trailing partial entry, which only a foreign
/// writer could leave, is ignored).
fn live(record: &[u8], now: u64) -> Vec<Entry> {
    record
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| Entry {
            fingerprint: word::<8>(entry, 0),
            tag: word::<4>(entry, 8),
            until: u32::from_be_bytes(word::<4>(entry, 12)),
        })
        .filter(|e| u64::from(e.until) > now)
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        out.extend_from_slice(&e.fingerprint);
        out.extend_from_slice(&e.tag);
        out.extend_from_slice(&e.until.to_be_bytes());
    }
    out
}

/// The secret kept for the life of a Wasm VM ([`Slots::known_secret`]): a VM is one thread, and
/// Envoy's shared data lives as long as the Envoy process, longer than any VM. Native callers
/// (tests, the CLI) do not use it: there several stores may share a thread.
pub mod vm_secret {
    use std::cell::Cell;

    use super::SECRET_BYTES;

    thread_local! {
        static KEPT: Cell<Option<[u8; SECRET_BYTES]>> = const { Cell::new(None) };
    }

    pub fn known() -> Option<[u8; SECRET_BYTES]> {
        KEPT.with(Cell::get)
    }

    pub fn keep(secret: [u8; SECRET_BYTES]) {
        KEPT.with(|kept| kept.set(Some(secret)));
    }
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
                one.first_use(&slots, &format!("k{i}"), &format!("j{i}"), *until, 1_000),
                Ok(())
            );
        }
        assert_eq!(
            one.first_use(&slots, "k9", "j9", 1_300, 1_000),
            Err(DpopError::ReplayStoreFull { retry_after: 10 })
        );
        // Still refused as replayed, not forgotten.
        assert_eq!(
            one.first_use(&slots, "k0", "j0", 1_300, 1_005),
            Err(DpopError::Replayed)
        );
        let bytes = slots.get("keygate.dpop.0").map(|(b, _)| b.len());
        assert_eq!(bytes, Some(3 * ENTRY_BYTES));
        // After the first entry expires there is room again, and the record does not grow.
        assert_eq!(one.first_use(&slots, "k9", "j9", 1_300, 1_011), Ok(()));
        let bytes = slots.get("keygate.dpop.0").map(|(b, _)| b.len());
        assert_eq!(bytes, Some(3 * ENTRY_BYTES));
    }

    #[test]
    fn one_key_holds_at_most_half_a_slot() {
        let one = ReplayStore {
            slots: 1,
            entries: 8,
        };
        assert_eq!(one.per_key(), 4);
        let slots = MemorySlots::default();
        for i in 0..4 {
            let until = 1_010 + i;
            assert_eq!(
                one.first_use(&slots, "greedy", &format!("j{i}"), until, 1_000),
                Ok(())
            );
        }
        assert_eq!(
            one.first_use(&slots, "greedy", "j9", 1_300, 1_000),
            Err(DpopError::ReplayStoreFull { retry_after: 10 })
        );
        // Other keys still have the other half.
        for i in 0..4 {
            assert_eq!(
                one.first_use(&slots, &format!("k{i}"), "j", 1_300, 1_000),
                Ok(())
            );
        }
        let tiny = ReplayStore {
            slots: 1,
            entries: 1,
        };
        assert_eq!(tiny.per_key(), 1);
    }

    #[test]
    fn a_check_writes_nothing_and_a_record_checks_again() {
        let slots = MemorySlots::default();
        let first = STORE.check(&slots, "k", "j", 1_300, 1_000).unwrap();
        let second = STORE.check(&slots, "k", "j", 1_300, 1_000).unwrap();
        assert_eq!(first, second);
        let data = slots.data.borrow().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            data,
            vec![SECRET_KEY.to_string()],
            "only the secret is written"
        );
        assert_eq!(STORE.record(&slots, &first, 1_000), Ok(()));
        assert_eq!(
            STORE.record(&slots, &second, 1_000),
            Err(DpopError::Replayed)
        );
        assert_eq!(
            STORE.check(&slots, "k", "j", 1_300, 1_000),
            Err(DpopError::Replayed)
        );
    }

    #[test]
    fn the_secret_is_drawn_once_and_keys_the_slots() {
        struct Seeded(MemorySlots, u64);
        impl Slots for Seeded {
            fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
                self.0.get(key)
            }
            fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
                self.0.set(key, bytes, expect)
            }
            fn seed(&self) -> u64 {
                self.1
            }
        }
        let many = ReplayStore {
            slots: 1_024,
            entries: 4,
        };
        let placed = |seed: u64| -> Vec<usize> {
            let slots = Seeded(MemorySlots::default(), seed);
            (0..16)
                .map(|i| many.check(&slots, "k", &format!("j{i}"), 1_300, 1_000))
                .map(|proof| proof.map(|p| p.slot).unwrap_or(usize::MAX))
                .collect()
        };
        // Another Envoy (another secret) puts the same proofs in other slots, so no client can
        // pick ids that land in one chosen slot.
        assert_ne!(placed(1), placed(2));
        // The first worker's secret stays: a second worker with another seed agrees with it.
        let shared = Seeded(MemorySlots::default(), 1);
        let a = many.check(&shared, "k", "j", 1_300, 1_000).unwrap();
        let other = Seeded(MemorySlots::default(), 2);
        other.0.data.replace(shared.0.data.borrow().clone());
        assert_eq!(many.check(&other, "k", "j", 1_300, 1_000), Ok(a));
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
                store.first_use(
                    &slots,
                    &format!("k{}", i % 4),
                    &format!("jti-{i}"),
                    2_000,
                    1_000
                ),
                Ok(())
            );
        }
        let data = slots.data.borrow();
        let used = data.keys().filter(|k| *k != SECRET_KEY).count();
        assert!(used > 4 && used <= 8, "{used} slots used");
        assert!(data.keys().filter(|k| *k != SECRET_KEY).all(|k| {
            k.strip_prefix(KEY_PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i < 8)
        }));
    }

    /// Another worker writes the same slot between this worker's read and its write (here: just
    /// before the first write of a slot, whichever read it was based on).
    struct Racing {
        inner: MemorySlots,
        raced: Cell<bool>,
    }

    impl Slots for Racing {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
            if key != SECRET_KEY && !self.raced.replace(true) {
                // The other worker records the same proof first.
                let _ = STORE.first_use(&self.inner, "k", "same", 1_300, 1_000);
            }
            self.inner.set(key, bytes, expect)
        }
    }

    /// Counts reads per key and keeps the secret like a worker does.
    #[derive(Default)]
    struct Counting {
        inner: MemorySlots,
        reads: std::cell::RefCell<Vec<String>>,
        kept: Cell<Option<[u8; SECRET_BYTES]>>,
    }

    impl Slots for Counting {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.reads.borrow_mut().push(key.to_string());
            self.inner.get(key)
        }
        fn set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
            self.inner.set(key, bytes, expect)
        }
        fn known_secret(&self) -> Option<[u8; SECRET_BYTES]> {
            self.kept.get()
        }
        fn keep_secret(&self, secret: [u8; SECRET_BYTES]) {
            self.kept.set(Some(secret));
        }
    }

    #[test]
    fn a_kept_secret_and_the_checks_read_leave_one_read_per_proof() {
        let slots = Counting::default();
        assert_eq!(STORE.first_use(&slots, "k", "j0", 1_300, 1_000), Ok(()));
        let kept = slots.kept.get();
        assert_eq!(
            kept.map(|k| k.to_vec()),
            slots.inner.get(SECRET_KEY).map(|(b, _)| b)
        );
        slots.reads.borrow_mut().clear();
        for i in 1..3 {
            assert_eq!(
                STORE.first_use(&slots, "k", &format!("j{i}"), 1_300, 1_000),
                Ok(())
            );
        }
        // One read of the slot per proof (the check's; the record writes over what it read),
        // none of the secret.
        let reads = slots.reads.borrow().clone();
        assert_eq!(reads.len(), 2, "{reads:?}");
        assert!(reads.iter().all(|k| k != SECRET_KEY), "{reads:?}");
        // Still exact: every one is a replay now.
        for i in 0..3 {
            assert_eq!(
                STORE.first_use(&slots, "k", &format!("j{i}"), 1_300, 1_000),
                Err(DpopError::Replayed)
            );
        }
        // A second worker that reads the secret keeps the first one's, and agrees on slots.
        let other = Counting::default();
        other.inner.data.replace(slots.inner.data.borrow().clone());
        assert_eq!(
            STORE.first_use(&other, "k", "j1", 1_300, 1_000),
            Err(DpopError::Replayed)
        );
        assert_eq!(other.kept.get(), kept);
    }

    /// The places of proofs are those of the plain hashes, whether the key's part is remembered
    /// or not (another secret or key in the same memo slot never answers).
    #[test]
    fn remembered_key_hashes_place_proofs_as_computed_ones() {
        let direct = |secret: &[u8], jkt: &str, jti: &str| {
            let mut h = Sha256::new();
            h.update(b"keygate dpop jti\0");
            h.update(secret);
            h.update(jkt.as_bytes());
            h.update(b"\0");
            h.update(jti.as_bytes());
            let digest = h.finalize();
            let mut t = Sha256::new();
            t.update(b"keygate dpop key\0");
            t.update(secret);
            t.update(jkt.as_bytes());
            (
                word::<8>(&digest, 8),
                word::<4>(&t.finalize(), 0),
                u64::from_be_bytes(word::<8>(&digest, 0)) % 4,
            )
        };
        for _ in 0..2 {
            for secret in [&[1u8; 32][..], &[2u8; 32][..], &[1u8; 7][..]] {
                for jkt in ["k", "k2", "a-longer-key-thumbprint-0123456789abcdefghijk"] {
                    for jti in ["j", "j2"] {
                        let placed = STORE.locate(secret, jkt, jti, 1_300);
                        let (fingerprint, tag, slot) = direct(secret, jkt, jti);
                        assert_eq!(placed.fingerprint, fingerprint);
                        assert_eq!(placed.tag, tag);
                        assert_eq!(placed.slot as u64, slot);
                    }
                }
            }
        }
    }

    #[test]
    fn a_slot_written_between_check_and_record_keeps_both_proofs() {
        let one = ReplayStore {
            slots: 1,
            entries: 8,
        };
        let slots = MemorySlots::default();
        let mine = one.check(&slots, "k", "mine", 1_300, 1_000).unwrap();
        // Another worker records another proof in the same (only) slot meanwhile.
        assert_eq!(one.first_use(&slots, "k2", "theirs", 1_300, 1_000), Ok(()));
        assert_eq!(one.record(&slots, &mine, 1_000), Ok(()));
        for (key, jti) in [("k", "mine"), ("k2", "theirs")] {
            assert_eq!(
                one.check(&slots, key, jti, 1_300, 1_000),
                Err(DpopError::Replayed)
            );
        }
    }

    #[test]
    fn a_lost_race_rereads_and_finds_the_replay() {
        let racing = Racing {
            inner: MemorySlots::default(),
            raced: Cell::new(false),
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
