//! The worker's small ordered maps and sets: a `Vec` of entries kept sorted by key.
//!
//! They stand in for `BTreeMap`/`BTreeSet` in the worker, whose maps hold what is in flight on one
//! worker (parked requests, callouts, budgets: bounded by the parking limits or by the streams
//! open at once) and are mostly empty. Same ordering and the same answers as the standard
//! collections for the operations used here, with a fraction of their code in the module: every
//! `BTreeMap<K, V>` brings its own copy of the B-tree's insert, remove and rebalancing code
//! (docs/performance.md, Module size, round 3). Keys are looked up by binary search; an insert or
//! a removal moves the entries after it.

/// A map ordered by key, like `BTreeMap` for `new`, `insert`, `remove`, `get_mut`,
/// `contains_key`, `len`, `iter` and `values`.
#[derive(Debug)]
pub(crate) struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K: Ord, V> SortedMap<K, V> {
    pub(crate) const fn new() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// Inserts `value` at `key`, returning the value it replaces.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(at) => self
                .entries
                .get_mut(at)
                .map(|(_, old)| std::mem::replace(old, value)),
            Err(at) => {
                self.entries.insert(at, (key, value));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.find(key).ok()?;
        Some(self.entries.remove(at).1)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(key).ok()?;
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The values in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap::new()
    }
}

/// A set ordered by value, like `BTreeSet` for `new`, `insert`, `pop_first`, `collect` and
/// iteration.
#[derive(Debug)]
pub(crate) struct SortedSet<K> {
    items: Vec<K>,
}

impl<K: Ord> SortedSet<K> {
    pub(crate) const fn new() -> Self {
        SortedSet { items: Vec::new() }
    }

    /// Adds `item`; false when it was there already.
    pub(crate) fn insert(&mut self, item: K) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(at) => {
                self.items.insert(at, item);
                true
            }
        }
    }

    /// Removes and returns the smallest item.
    pub(crate) fn pop_first(&mut self) -> Option<K> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.items.remove(0))
        }
    }
}

impl<K: Ord> Default for SortedSet<K> {
    fn default() -> Self {
        SortedSet::new()
    }
}

impl<K: Ord> FromIterator<K> for SortedSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut items: Vec<K> = iter.into_iter().collect();
        items.sort_unstable();
        items.dedup();
        SortedSet { items }
    }
}

impl<K> IntoIterator for SortedSet<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::{SortedMap, SortedSet};
    use std::collections::{BTreeMap, BTreeSet};

    /// A small deterministic sequence (no rand in unit tests of the core).
    fn keys(n: usize, seed: u64) -> Vec<u32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % 64) as u32
            })
            .collect()
    }

    #[test]
    fn map_answers_as_btreemap_does() {
        for seed in 0..20 {
            let mut ours = SortedMap::new();
            let mut std = BTreeMap::new();
            for (i, k) in keys(300, seed).into_iter().enumerate() {
                match i % 4 {
                    0 | 1 => assert_eq!(ours.insert(k, i), std.insert(k, i)),
                    2 => assert_eq!(ours.remove(&k), std.remove(&k)),
                    _ => {
                        if let Some(v) = ours.get_mut(&k) {
                            *v += 1000;
                        }
                        if let Some(v) = std.get_mut(&k) {
                            *v += 1000;
                        }
                    }
                }
                assert_eq!(ours.len(), std.len());
                assert_eq!(ours.contains_key(&k), std.contains_key(&k));
                assert!(ours.iter().eq(std.iter()));
                assert!(ours.values().eq(std.values()));
            }
        }
    }

    #[test]
    fn set_answers_as_btreeset_does() {
        for seed in 0..20 {
            let mut ours = SortedSet::new();
            let mut std = BTreeSet::new();
            for (i, k) in keys(300, seed).into_iter().enumerate() {
                if i % 3 == 2 {
                    assert_eq!(ours.pop_first(), std.pop_first());
                } else {
                    assert_eq!(ours.insert(k), std.insert(k));
                }
            }
            let collected: SortedSet<u32> = keys(100, seed).into_iter().collect();
            let expected: BTreeSet<u32> = keys(100, seed).into_iter().collect();
            assert!(collected.into_iter().eq(expected));
        }
        assert_eq!(SortedSet::<u8>::new().pop_first(), None);
    }
}
