//! The shared introspection cache: the entry keys of a token's hash (the active area and the
//! other one), reading the record that holds for a token, the decision it gives, and writing a
//! record.

use super::Settled;
use crate::decision::{self, Denial, Opaque, Outcome};
use crate::introspection::{
    entry_key, negative_entry_key, EntryState, IntrospectionEntry, TokenHash,
};
use crate::keys::Expect;
use crate::policy::{KeyManagerId, Policy};
use crate::worker::host::Host;
use crate::worker::{seconds, with_dpop};

pub(super) fn key_of(policy: &Policy, hash: &TokenHash) -> String {
    entry_key(hash.entry(policy.settings().introspection_cache_entries))
}

pub(super) fn negative_key_of(policy: &Policy, hash: &TokenHash) -> String {
    negative_entry_key(hash.entry(policy.settings().introspection_negative_cache_entries))
}

/// The record that holds for `hash` at `now_ms`: its active answer from a key manager asked here
/// (one read, the cache hit), else what the other area holds for it with the CAS of that entry,
/// where a lease is written.
pub(super) fn lookup(
    policy: &Policy,
    host: &impl Host,
    hash: &TokenHash,
    now_ms: u64,
) -> (Option<IntrospectionEntry>, Option<u32>) {
    let holding = |current: &Option<(Vec<u8>, u32)>| {
        current
            .as_ref()
            .and_then(|(bytes, _)| IntrospectionEntry::from_bytes(bytes))
            .filter(|r| r.holds_for(hash, now_ms))
    };
    // An answer from a key manager no longer asked here counts as none.
    let active = holding(&host.shared_get(&key_of(policy, hash))).filter(|r| {
        matches!(&r.state, EntryState::Active { key_manager, .. }
            if introspecting(policy, key_manager).is_some())
    });
    if active.is_some() {
        return (active, None);
    }
    let negative = host.shared_get(&negative_key_of(policy, hash));
    let cas = negative.as_ref().map(|(_, cas)| *cas);
    (holding(&negative), cas)
}

/// The decision a record gives, `None` while it is pending (or names a key manager no longer
/// trusted here for introspection). `seed` is the worker's, for the DPoP replay store.
pub(super) fn known(
    policy: &Policy,
    record: &IntrospectionEntry,
    opaque: &Opaque,
    now_ms: u64,
    host: &impl Host,
    seed: u64,
) -> Option<Settled> {
    let outcome = match &record.state {
        EntryState::Active {
            key_manager,
            claims,
        } => {
            let km = introspecting(policy, key_manager)?;
            let outcome = with_dpop(host, seed, |dpop| {
                decision::introspected(policy, opaque, km, claims, seconds(now_ms), dpop)
            });
            return Some(Settled {
                outcome,
                key_manager: Some(km),
            });
        }
        EntryState::Inactive => Outcome::Deny(decision::inactive()),
        EntryState::Failed => {
            let left_ms = record.until_ms.saturating_sub(now_ms);
            let retry_after = left_ms.div_ceil(1_000).max(1);
            Outcome::Deny(Denial::IntrospectionUnavailable { retry_after })
        }
        EntryState::Pending { .. } => return None,
    };
    Some(Settled::unvouched(outcome))
}

/// Key manager `name` if opaque tokens are introspected there in this environment.
pub(super) fn introspecting(policy: &Policy, name: &str) -> Option<KeyManagerId> {
    policy
        .introspection_order()
        .find(|&i| policy.key_manager(i).is_some_and(|m| m.name == name))
}

/// Writes `record` over whatever the entry holds (compare-and-swap, retried a few times).
pub(super) fn publish(host: &impl Host, key: &str, record: &IntrospectionEntry) {
    let bytes = record.to_bytes();
    for _ in 0..4 {
        let expect = host
            .shared_get(key)
            .map_or(Expect::Absent, |(_, cas)| Expect::Cas(cas));
        if host.shared_set(key, &bytes, expect).is_ok() {
            return;
        }
    }
    log::warn!("keygate: introspection answer not shared (the cache entry kept changing)");
}
