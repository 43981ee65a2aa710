//! Verified-token cache: skip the signature check for a token this worker already verified.
//!
//! Signature verification dominates the cost of a request (an RSA-2048 verify is a millisecond in
//! wasm), and clients reuse a token for its whole lifetime. An entry remembers the verified claims
//! of an exact token string under the key set generation that verified it. A hit is valid only for
//! the same key manager and the same generation, so a key removed from the JWKS stops verifying as
//! soon as the new set is adopted; time, issuer and audience checks still run on every hit.

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value};

struct Entry {
    key_manager: usize,
    generation: u64,
    claims: Map<String, Value>,
}

/// A bounded map from token to verified claims; the oldest entry leaves first.
pub struct VerifiedTokens {
    capacity: usize,
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl VerifiedTokens {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The claims verified earlier for exactly this token, key manager and key set generation.
    pub fn get(
        &self,
        token: &str,
        key_manager: usize,
        generation: u64,
    ) -> Option<&Map<String, Value>> {
        self.entries
            .get(token)
            .filter(|e| e.key_manager == key_manager && e.generation == generation)
            .map(|e| &e.claims)
    }

    pub fn insert(
        &mut self,
        token: &str,
        key_manager: usize,
        generation: u64,
        claims: Map<String, Value>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let entry = Entry {
            key_manager,
            generation,
            claims,
        };
        if self.entries.insert(token.to_string(), entry).is_some() {
            return; // refreshed in place; its age in `order` stays
        }
        self.order.push_back(token.to_string());
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(sub: &str) -> Map<String, Value> {
        json!({"sub": sub}).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn hit_needs_same_key_manager_and_generation() {
        let mut cache = VerifiedTokens::new(4);
        cache.insert("t1", 0, 7, claims("a"));
        assert_eq!(cache.get("t1", 0, 7), Some(&claims("a")));
        assert!(
            cache.get("t1", 0, 8).is_none(),
            "a new key set must re-verify"
        );
        assert!(
            cache.get("t1", 1, 7).is_none(),
            "another key manager must verify itself"
        );
        assert!(cache.get("t2", 0, 7).is_none());
    }

    #[test]
    fn bounded_oldest_first() {
        let mut cache = VerifiedTokens::new(2);
        cache.insert("t1", 0, 1, claims("a"));
        cache.insert("t2", 0, 1, claims("b"));
        cache.insert("t3", 0, 1, claims("c"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("t1", 0, 1).is_none());
        assert!(cache.get("t3", 0, 1).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = VerifiedTokens::new(0);
        cache.insert("t1", 0, 1, claims("a"));
        assert!(cache.is_empty());
    }
}
