//! Verified-token cache: skip parsing and the signature check for a token this worker has seen.
//!
//! Signature verification dominates the cost of a request, and clients reuse a token for its
//! whole lifetime. An entry remembers, for an exact token string, what verification concluded
//! under one key set generation of one key manager:
//! - *valid*: the verified claims, with `exp`/`nbf` pulled out so a hit only compares times;
//! - *invalid*: the refusal (bad signature, wrong audience, ...), so a forged token costs one
//!   verification at most once per key set. Refusals that depend on the clock are not remembered.
//!
//! A hit is valid only for the same key manager and the same generation, so a key removed from the
//! JWKS stops verifying as soon as the new set is adopted. Entries are found by a keyed hash of
//! the token (random key per worker) and confirmed by comparing the token itself, which is stored
//! once. The cache is bounded both in entries and in (approximate) bytes.
//!
//! # Eviction: SIEVE
//! Entries sit in one queue, newest first, each with a *visited* bit that a hit sets. When room is
//! needed, a hand walks from the oldest entry towards the newest: a visited entry has its bit
//! cleared and stays where it is, the first unvisited one leaves, and the hand stays there for the
//! next eviction (it wraps to the oldest entry past the newest). A token seen once (a scan, a burst
//! of new clients) leaves before any token that was hit since the hand last passed it, so a
//! population of many distinct tokens does not flush the hot ones the way first-in-first-out did
//! (`docs/performance.md` has the hit rates). A hit costs one bit write; nothing moves.
//!
//! An entry stands for the token only. A DPoP-bound token's proof is per request, so
//! `crate::decision` checks it on every hit before anything remembered is used.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::dpop::same_text;

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::decision::denial::TokenRefusal;
use crate::decision::Allowed;
use crate::policy::{KeyManagerId, RouteMatch};

/// What verification concluded about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    Valid {
        claims: Map<String, Value>,
        exp: Option<f64>,
        nbf: Option<f64>,
        /// The last resource this token was allowed on, with what it was allowed as.
        allowed: Option<(RouteMatch, Rc<Allowed>)>,
    },
    /// The refusal, remembered unless it depends on the clock.
    Invalid(TokenRefusal),
}

/// A remembered verdict.
#[derive(Debug)]
pub struct Hit<'a> {
    pub key_manager: KeyManagerId,
    pub generation: u64,
    pub verdict: &'a Verification,
}

/// A remembered verdict that the caller may extend (the `allowed` memo).
#[derive(Debug)]
pub struct HitMut<'a> {
    pub key_manager: KeyManagerId,
    pub generation: u64,
    pub verdict: &'a mut Verification,
}

struct Entry {
    token: Box<str>,
    hash: u64,
    key_manager: KeyManagerId,
    generation: u64,
    verdict: Verification,
    bytes: usize,
    /// Hit since the hand last passed (SIEVE's bit).
    visited: Cell<bool>,
    /// The next newer and the next older entry (slot indices).
    newer: Option<usize>,
    older: Option<usize>,
}

/// Approximate memory of an entry: the token, its claims as a JSON map and the memo of the last
/// authorization with its identity headers. Measured in V8 (`bench/vm/requests.mjs`, wasm memory
/// growth over 2,048 entries of 1,050-byte tokens): about 4,550 bytes an entry.
fn entry_bytes(token: &str) -> usize {
    token.len().saturating_mul(3).saturating_add(1_536)
}

/// How many of a token's first and last bytes key its slot ([`VerifiedTokens::hash`]).
const HASHED_HEAD: usize = 64;
const HASHED_TAIL: usize = 96;

/// A bounded map from token to verdict.
pub struct VerifiedTokens {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    hasher: RandomState,
    /// Token hash → slot.
    index: HashMap<u64, usize>,
    slots: Vec<Option<Entry>>,
    /// Slots emptied by evictions, reused first.
    free: Vec<usize>,
    newest: Option<usize>,
    oldest: Option<usize>,
    /// Where the next eviction starts looking (`None`: at the oldest).
    hand: Option<usize>,
}

impl VerifiedTokens {
    /// `capacity` 0 disables the cache; `max_bytes` bounds its approximate size.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        VerifiedTokens {
            capacity,
            max_bytes,
            bytes: 0,
            hasher: RandomState::new(),
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: None,
            oldest: None,
            hand: None,
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> Self {
        VerifiedTokens::new(0, 0)
    }

    /// The token's length, first [`HASHED_HEAD`] and last [`HASHED_TAIL`] bytes, keyed per
    /// worker: a signed token's last characters are its signature (an opaque token's, random),
    /// so they tell tokens apart as well as the whole text would, at a seventh of the hashing for
    /// a 1 KB token. Tokens alike at both ends only share a slot (a hit compares the whole token).
    fn hash(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let head = bytes.get(..HASHED_HEAD).unwrap_or(bytes);
        let tail = bytes
            .get(bytes.len().saturating_sub(HASHED_TAIL)..)
            .unwrap_or(bytes);
        self.hasher.hash_one((bytes.len(), head, tail))
    }

    fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// What was concluded earlier for exactly this token, if anything.
    pub fn get(&self, token: &str) -> Option<Hit<'_>> {
        if self.capacity == 0 {
            return None;
        }
        let entry = self.entry(*self.index.get(&self.hash(token))?)?;
        same_text(&entry.token, token).then(|| {
            entry.visited.set(true);
            Hit {
                key_manager: entry.key_manager,
                generation: entry.generation,
                verdict: &entry.verdict,
            }
        })
    }

    /// Forgets every remembered authorization (the application directory changed); the
    /// verdicts on the tokens themselves stay.
    pub fn forget_authorizations(&mut self) {
        for entry in self.slots.iter_mut().flatten() {
            if let Verification::Valid { allowed, .. } = &mut entry.verdict {
                *allowed = None;
            }
        }
    }

    /// [`VerifiedTokens::get`], mutable.
    pub fn get_mut(&mut self, token: &str) -> Option<HitMut<'_>> {
        if self.capacity == 0 {
            return None;
        }
        let slot = *self.index.get(&self.hash(token))?;
        let entry = self.entry_mut(slot)?;
        same_text(&entry.token, token).then(|| {
            entry.visited.set(true);
            HitMut {
                key_manager: entry.key_manager,
                generation: entry.generation,
                verdict: &mut entry.verdict,
            }
        })
    }

    pub fn insert(
        &mut self,
        token: &str,
        key_manager: KeyManagerId,
        generation: u64,
        verdict: Verification,
    ) {
        let bytes = entry_bytes(token);
        if self.capacity == 0 || bytes > self.max_bytes {
            return;
        }
        let hash = self.hash(token);
        if let Some(&slot) = self.index.get(&hash) {
            // Refreshed in place (or a hash collision replaced another token): its place and
            // its bit stay.
            if let Some(entry) = self.entry_mut(slot) {
                let old = std::mem::replace(&mut entry.bytes, bytes);
                entry.token = token.into();
                entry.key_manager = key_manager;
                entry.generation = generation;
                entry.verdict = verdict;
                self.bytes = self.bytes.saturating_sub(old).saturating_add(bytes);
            }
            self.shrink();
            return;
        }
        // Room first, so the new entry is never its own victim.
        while !self.index.is_empty()
            && (self.index.len() >= self.capacity
                || self.bytes.saturating_add(bytes) > self.max_bytes)
        {
            if !self.evict() {
                break;
            }
        }
        let entry = Entry {
            token: token.into(),
            hash,
            key_manager,
            generation,
            verdict,
            bytes,
            visited: Cell::new(false),
            newer: None,
            older: self.newest,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot) {
                    *place = Some(entry);
                }
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        if let Some(previous) = self.newest.and_then(|s| self.entry_mut(s)) {
            previous.newer = Some(slot);
        }
        self.newest = Some(slot);
        if self.oldest.is_none() {
            self.oldest = Some(slot);
        }
        self.index.insert(hash, slot);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Evicts until both bounds hold (after an entry grew in place).
    fn shrink(&mut self) {
        while self.index.len() > self.capacity || self.bytes > self.max_bytes {
            if !self.evict() {
                break;
            }
        }
    }

    /// One SIEVE eviction; false when there was nothing to evict.
    fn evict(&mut self) -> bool {
        let mut at = self.hand.or(self.oldest);
        // Every entry is passed at most twice: once clearing its bit, once evicting it.
        for _ in 0..=self.index.len().saturating_mul(2) {
            let Some(slot) = at else {
                at = self.oldest;
                continue;
            };
            let Some(entry) = self.entry(slot) else {
                break;
            };
            if entry.visited.replace(false) {
                at = entry.newer;
                continue;
            }
            self.hand = entry.newer;
            self.remove(slot);
            return true;
        }
        false
    }

    /// Unlinks and drops the entry in `slot`.
    fn remove(&mut self, slot: usize) {
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        match entry.newer.and_then(|s| self.entry_mut(s)) {
            Some(newer) => newer.older = entry.older,
            None => self.newest = entry.older,
        }
        match entry.older.and_then(|s| self.entry_mut(s)) {
            Some(older) => older.newer = entry.newer,
            None => self.oldest = entry.newer,
        }
        if self.index.get(&entry.hash) == Some(&slot) {
            self.index.remove(&entry.hash);
        }
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        self.free.push(slot);
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(sub: &str) -> Verification {
        Verification::Valid {
            claims: json!({"sub": sub}).as_object().cloned().unwrap_or_default(),
            exp: None,
            nbf: None,
            allowed: None,
        }
    }

    fn sub_of(hit: Option<Hit<'_>>) -> Option<String> {
        match hit?.verdict {
            Verification::Valid { claims, .. } => claims.get("sub")?.as_str().map(String::from),
            Verification::Invalid { .. } => None,
        }
    }

    #[test]
    fn a_hit_names_its_key_manager_and_generation() {
        let mut cache = VerifiedTokens::new(4, 1 << 20);
        cache.insert("t1", KeyManagerId::new(0), 7, valid("a"));
        let hit = cache.get("t1");
        assert_eq!(
            hit.as_ref().map(|h| (h.key_manager, h.generation)),
            Some((KeyManagerId::new(0), 7))
        );
        assert_eq!(sub_of(hit), Some("a".into()));
        assert!(cache.get("t2").is_none());
        assert!(cache.get("t").is_none());
    }

    #[test]
    fn bounded_in_entries_oldest_first() {
        let mut cache = VerifiedTokens::new(2, 1 << 20);
        cache.insert("t1", KeyManagerId::new(0), 1, valid("a"));
        cache.insert("t2", KeyManagerId::new(0), 1, valid("b"));
        cache.insert("t3", KeyManagerId::new(0), 1, valid("c"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("t1").is_none());
        assert!(cache.get("t3").is_some());
    }

    #[test]
    fn tokens_alike_at_both_ends_are_never_taken_for_each_other() {
        let token = |mid: &str| format!("{}{mid}{}", "h".repeat(200), "t".repeat(200));
        let (a, b) = (token("aaaa"), token("bbbb"));
        let mut cache = VerifiedTokens::new(10, 1 << 20);
        cache.insert(&a, KeyManagerId::new(0), 1, valid("a"));
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none(), "a different token is a miss");
        assert!(cache.get_mut(&b).is_none());
        cache.insert(&b, KeyManagerId::new(0), 1, valid("b"));
        assert!(cache.get(&b).is_some());
        assert!(
            cache.get(&a).is_none(),
            "they share a slot: the newer one holds it"
        );
    }

    #[test]
    fn bounded_in_bytes() {
        let token = |i: usize| format!("{i:04}{}", "x".repeat(996));
        let per = entry_bytes(&token(0));
        let mut cache = VerifiedTokens::new(1_000, per * 3);
        for i in 0..10 {
            cache.insert(&token(i), KeyManagerId::new(0), 1, valid("a"));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.bytes() <= per * 3);
        assert!(cache.get(&token(9)).is_some());
        assert!(cache.get(&token(6)).is_none());
        // A token larger than the whole budget is not cached at all.
        let mut small = VerifiedTokens::new(10, 100);
        small.insert(&token(1), KeyManagerId::new(0), 1, valid("a"));
        assert!(small.is_empty());
    }

    #[test]
    fn refusals_are_remembered_too() {
        let mut cache = VerifiedTokens::new(4, 1 << 20);
        let refused = Verification::Invalid(TokenRefusal::Inactive);
        cache.insert("forged", KeyManagerId::new(1), 3, refused.clone());
        assert_eq!(
            cache.get("forged").map(|h| h.verdict.clone()),
            Some(refused)
        );
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count_exact() {
        let mut cache = VerifiedTokens::new(4, 1 << 20);
        cache.insert("t1", KeyManagerId::new(0), 1, valid("a"));
        let once = cache.bytes();
        cache.insert("t1", KeyManagerId::new(0), 2, valid("b"));
        assert_eq!(cache.bytes(), once);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_hit_token_outlives_a_scan_of_new_ones() {
        let mut cache = VerifiedTokens::new(4, 1 << 20);
        cache.insert("hot", KeyManagerId::new(0), 1, valid("hot"));
        for round in 0..3 {
            // Hit once per round; the scan in between is four times the cache.
            assert!(cache.get("hot").is_some(), "round {round}");
            for i in 0..16 {
                cache.insert(
                    &format!("scan-{round}-{i}"),
                    KeyManagerId::new(0),
                    1,
                    valid("s"),
                );
                assert!(cache.len() <= 4);
            }
        }
        assert_eq!(sub_of(cache.get("hot")), Some("hot".into()));
    }

    #[test]
    fn sieve_evicts_the_first_unvisited_entry_from_the_hand() {
        let mut cache = VerifiedTokens::new(3, 1 << 20);
        for t in ["a", "b", "c"] {
            cache.insert(t, KeyManagerId::new(0), 1, valid(t));
        }
        assert!(cache.get("a").is_some());
        assert!(cache.get_mut("c").is_some());
        // From the oldest: a's bit is cleared, b leaves; the hand stays at c.
        cache.insert("d", KeyManagerId::new(0), 1, valid("d"));
        let present = |cache: &VerifiedTokens| {
            ["a", "b", "c", "d", "e"]
                .into_iter()
                .filter(|t| cache.index.contains_key(&cache.hash(t)))
                .collect::<Vec<_>>()
        };
        assert_eq!(present(&cache), ["a", "c", "d"]);
        // c's bit is cleared, d (never hit) leaves.
        cache.insert("e", KeyManagerId::new(0), 1, valid("e"));
        assert_eq!(present(&cache), ["a", "c", "e"]);
    }

    #[test]
    fn bounds_and_lookups_hold_under_any_sequence() {
        use proptest::prelude::*;
        let ops = proptest::collection::vec((0u8..3, 0usize..12), 0..200);
        proptest!(|(ops in ops)| {
            let per = entry_bytes("t00");
            let mut cache = VerifiedTokens::new(5, per * 4);
            let mut live = std::collections::BTreeMap::new();
            for (op, n) in ops {
                let token = format!("t{n:02}");
                match op {
                    0 => {
                        cache.insert(&token, KeyManagerId::new(0), n as u64, valid(&token));
                        live.insert(token, n as u64);
                    }
                    1 => {
                        let _ = cache.get(&token);
                    }
                    _ => {
                        let _ = cache.get_mut(&token);
                    }
                }
                prop_assert!(cache.len() <= 4);
                prop_assert!(cache.bytes() <= per * 4);
                prop_assert_eq!(cache.bytes(), per * cache.len());
                let mut linked = 0;
                let mut at = cache.oldest;
                while let Some(slot) = at {
                    linked += 1;
                    at = cache.entry(slot).and_then(|e| e.newer);
                }
                prop_assert_eq!(linked, cache.len());
            }
            for (token, generation) in &live {
                if let Some(hit) = cache.get(token) {
                    prop_assert_eq!(hit.generation, *generation);
                    prop_assert_eq!(sub_of(Some(hit)), Some(token.clone()));
                }
            }
        });
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = VerifiedTokens::disabled();
        cache.insert("t1", KeyManagerId::new(0), 1, valid("a"));
        assert!(cache.is_empty());
        assert!(cache.get("t1").is_none());
    }
}
