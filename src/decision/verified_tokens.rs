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
//! once. The cache is bounded both in entries and in (approximate) bytes; the oldest entry leaves
//! first.
//!
//! An entry stands for the token only. A DPoP-bound token's proof is per request, so
//! `crate::decision` checks it on every hit before anything remembered is used.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

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
    key_manager: KeyManagerId,
    generation: u64,
    verdict: Verification,
    bytes: usize,
}

/// Approximate memory of an entry: the token, and its claims (decoded from about three quarters of
/// the token), counted twice for the map's overhead.
fn entry_bytes(token: &str) -> usize {
    token.len().saturating_mul(5) / 2 + 128
}

/// A bounded map from token to verdict.
pub struct VerifiedTokens {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    hasher: RandomState,
    entries: HashMap<u64, Entry>,
    /// Hashes in insertion order (a hash may appear for an entry since replaced: skipped).
    order: VecDeque<u64>,
}

impl VerifiedTokens {
    /// `capacity` 0 disables the cache; `max_bytes` bounds its approximate size.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        VerifiedTokens {
            capacity,
            max_bytes,
            bytes: 0,
            hasher: RandomState::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> Self {
        VerifiedTokens::new(0, 0)
    }

    fn hash(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    /// What was concluded earlier for exactly this token, if anything.
    pub fn get(&self, token: &str) -> Option<Hit<'_>> {
        if self.capacity == 0 {
            return None;
        }
        let entry = self.entries.get(&self.hash(token))?;
        (*entry.token == *token).then_some(Hit {
            key_manager: entry.key_manager,
            generation: entry.generation,
            verdict: &entry.verdict,
        })
    }

    /// [`VerifiedTokens::get`], mutable.
    /// Forgets every remembered authorization (the application directory changed); the
    /// verdicts on the tokens themselves stay.
    pub fn forget_authorizations(&mut self) {
        for entry in self.entries.values_mut() {
            if let Verification::Valid { allowed, .. } = &mut entry.verdict {
                *allowed = None;
            }
        }
    }

    pub fn get_mut(&mut self, token: &str) -> Option<HitMut<'_>> {
        if self.capacity == 0 {
            return None;
        }
        let hash = self.hash(token);
        let entry = self.entries.get_mut(&hash)?;
        (*entry.token == *token).then_some(HitMut {
            key_manager: entry.key_manager,
            generation: entry.generation,
            verdict: &mut entry.verdict,
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
        let entry = Entry {
            token: token.into(),
            key_manager,
            generation,
            verdict,
            bytes,
        };
        match self.entries.insert(hash, entry) {
            // Refreshed in place (or a hash collision replaced another token): its age stays.
            Some(old) => self.bytes = self.bytes.saturating_sub(old.bytes),
            None => self.order.push_back(hash),
        }
        self.bytes = self.bytes.saturating_add(bytes);
        while self.entries.len() > self.capacity || self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(old.bytes);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    fn zero_capacity_caches_nothing() {
        let mut cache = VerifiedTokens::disabled();
        cache.insert("t1", KeyManagerId::new(0), 1, valid("a"));
        assert!(cache.is_empty());
        assert!(cache.get("t1").is_none());
    }
}
