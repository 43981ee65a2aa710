//! Opaque tokens in one worker: the introspection cache shared by all workers, the lease that
//! lets one worker call per token, requests parked while a call is out, and the calls themselves.
//!
//! # The shared cache
//! A token's answer lives in one of `settings.introspection_cache_entries` shared-data entries,
//! picked by the token's SHA-256 ([`TokenHash`]); the entry holds that hash, never the token.
//! A colliding token replaces the entry (a later miss, never a wrong answer: the hash is compared).
//! Active answers hold until the token's `exp`, at most `introspection_cache_seconds`; inactive
//! ones `introspection_negative_cache_seconds`; a failed call `introspection_retry_seconds`.
//! Only active answers live in those entries: everything else (inactive answers, failures, the
//! lease of a call in flight) lives in a separate area of `introspection_negative_cache_entries`,
//! so a flood of junk tokens never evicts an active answer. A lookup reads the active entry
//! first, then the other.
//!
//! # Bounded calls
//! Calls cost the key manager and are authenticated as the gateway, so they are bounded per
//! second: `introspection_worker_calls_per_second` per worker and
//! `introspection_calls_per_second` for all the workers of the Envoy together (a counter in shared
//! data, written with compare-and-swap). A token that needs a call past either bound is answered
//! 503 `introspection_unavailable` with `Retry-After`, and `keygate_introspection_throttled` counts
//! it; requests for a token whose call is already out wait for it at no cost.
//!
//! # One call per token
//! A worker that misses writes a `Pending` record (compare-and-swap) before it calls: other workers
//! that see it park their requests and read the entry on their ticks instead of calling too. In one
//! worker, every request for the token parks behind the one call. Calls are dispatched from root
//! callbacks only (see `super`), so an answer arrives whatever happened to the first request.
//!
//! # Several key managers
//! The key managers trusted here that have `introspection` are asked in declaration order, one
//! after the other; the first `active: true` wins. A token every one calls inactive is refused
//! 401; if a call failed and none said active, the request is answered 503.
//!
//! This file holds the [`Introspector`]: requests that park, leases, and the timer. The calls and
//! their answers are in `calls`, the per-second bounds in `budget`, the shared entries in `cache`.

mod budget;
mod cache;
mod calls;

use super::sorted_map::{SortedMap, SortedSet};

use self::budget::{call_allowed, Calls};
use self::cache::{introspecting, known, lookup, negative_key_of};
use crate::decision::Denial;
use crate::decision::{Opaque, Outcome};
use crate::introspection::{CallFailure, EntryState, IntrospectionEntry, Secrets, TokenHash};
use crate::keys::Expect;
use crate::policy::KeyManagerId;
use crate::policy::Policy;
use crate::worker::metrics;

use super::counters;
use super::host::{Host, StreamId};

/// A call this worker holds the lease for.
struct InFlight {
    token: String,
    /// The key managers to ask, in order (the API's, [`Opaque::asked`]).
    asked: Vec<KeyManagerId>,
    /// Position, in `asked`, of the key manager asked now (or next).
    next: usize,
    failed: Option<CallFailure>,
}

struct Waiting {
    opaque: Box<Opaque>,
    deadline_ms: u64,
}

/// A decision for an opaque token, with the key manager whose answer it rests on (for the
/// metrics' `key_manager` label; `None` when no key manager vouched for the token).
pub(super) struct Settled {
    pub outcome: Outcome,
    pub key_manager: Option<KeyManagerId>,
}

impl Settled {
    fn unvouched(outcome: Outcome) -> Self {
        Settled {
            outcome,
            key_manager: None,
        }
    }
}

/// What became of a request with an opaque token.
pub(super) enum Handled {
    Answer(Settled),
    /// Parked; `wake` when the root must dispatch a call.
    Parked {
        wake: bool,
    },
}

pub(super) struct Introspector {
    secrets: Secrets,
    worker_id: u64,
    /// This worker's calls in the current second.
    calls: Calls,
    inflight: SortedMap<TokenHash, InFlight>,
    wanted: SortedSet<TokenHash>,
    callouts: SortedMap<u32, TokenHash>,
    parked: SortedMap<StreamId, Waiting>,
}

impl Introspector {
    pub(super) fn new(worker_id: u64) -> Self {
        Introspector {
            secrets: Secrets::default(),
            worker_id,
            calls: Calls::default(),
            inflight: SortedMap::new(),
            wanted: SortedSet::new(),
            callouts: SortedMap::new(),
            parked: SortedMap::new(),
        }
    }

    pub(super) fn set_secrets(&mut self, secrets: Secrets) {
        self.secrets = secrets;
    }

    pub(super) fn parked(&self) -> usize {
        self.parked.len()
    }

    pub(super) fn callouts(&self) -> usize {
        self.callouts.len()
    }

    pub(super) fn done(&mut self, stream: StreamId) {
        self.parked.remove(&stream);
    }

    /// A request with an opaque token: a cached answer, or park it (taking the lease and asking
    /// for a call when nobody is calling yet). `room` is false when the parking bound is reached.
    pub(super) fn request(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        stream: StreamId,
        opaque: Box<Opaque>,
        now_ms: u64,
        room: bool,
    ) -> Handled {
        let (record, negative_cas) = lookup(policy, host, &opaque.hash, now_ms);
        let mut pending_elsewhere = false;
        if let Some(record) = &record {
            if let Some(outcome) = known(policy, record, &opaque, now_ms, host, self.worker_id) {
                host.count(metrics::introspection_cache(true));
                return Handled::Answer(outcome);
            }
            pending_elsewhere = matches!(record.state, EntryState::Pending { .. });
        }
        host.count(metrics::introspection_cache(false));
        if !room {
            log::warn!("keygate: parked-request bound reached; answering 503");
            host.count(counters::PARKED_OVERFLOW);
            return Handled::Answer(Settled::unvouched(Outcome::Deny(
                Denial::IntrospectionUnavailable { retry_after: 1 },
            )));
        }
        let wake = if pending_elsewhere || self.inflight.contains_key(&opaque.hash) {
            false
        } else if !call_allowed(self.calls, policy, host, now_ms) {
            log::warn!("keygate: introspection calls of this second spent; answering 503");
            host.count(counters::INTROSPECTION_THROTTLED);
            return Handled::Answer(Settled::unvouched(Outcome::Deny(
                Denial::IntrospectionUnavailable { retry_after: 1 },
            )));
        } else {
            self.lease(policy, host, &opaque, negative_cas, now_ms)
        };
        let deadline_ms = now_ms.saturating_add(policy.settings().request_wait_ms);
        self.parked.insert(
            stream,
            Waiting {
                opaque,
                deadline_ms,
            },
        );
        Handled::Parked { wake }
    }

    /// Writes this worker's `Pending` record for the token; true when it holds the lease now (the
    /// call is wanted).
    fn lease(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        opaque: &Opaque,
        cas: Option<u32>,
        now_ms: u64,
    ) -> bool {
        let settings = policy.settings();
        let calls = u64::try_from(opaque.asked.len()).unwrap_or(1);
        let lease_ms = settings
            .introspection_timeout_ms
            .saturating_mul(calls)
            .saturating_add(1_000);
        let record = IntrospectionEntry {
            hash: opaque.hash.hex(),
            until_ms: now_ms.saturating_add(lease_ms),
            state: EntryState::Pending {
                worker: self.worker_id,
            },
        };
        let expect = cas.map_or(Expect::Absent, Expect::Cas);
        let key = negative_key_of(policy, &opaque.hash);
        if host.shared_set(&key, &record.to_bytes(), expect).is_err() {
            // Another worker wrote first: its record is read again on the next tick.
            return false;
        }
        self.inflight.insert(
            opaque.hash,
            InFlight {
                token: opaque.token.clone(),
                asked: opaque.asked.clone(),
                next: 0,
                failed: None,
            },
        );
        self.wanted.insert(opaque.hash);
        true
    }

    /// Answers the requests parked for `hash` from `record`.
    fn resolve(
        &mut self,
        policy: &Policy,
        host: &impl Host,
        record: &IntrospectionEntry,
        hash: TokenHash,
        now_ms: u64,
    ) -> Vec<(StreamId, Settled)> {
        let streams: Vec<StreamId> = self
            .parked
            .iter()
            .filter(|(_, w)| w.opaque.hash == hash)
            .map(|(id, _)| *id)
            .collect();
        let mut ready = Vec::with_capacity(streams.len());
        for stream in streams {
            let Some(waiting) = self.parked.remove(&stream) else {
                continue;
            };
            let outcome = known(
                policy,
                record,
                &waiting.opaque,
                now_ms,
                host,
                self.worker_id,
            )
            .unwrap_or_else(|| {
                Settled::unvouched(Outcome::Deny(Denial::IntrospectionUnavailable {
                    retry_after: 1,
                }))
            });
            ready.push((stream, outcome));
        }
        ready
    }

    /// Timer: wanted calls a lost wake-up left, answers other workers published for requests
    /// parked here, leases nobody holds any more, and requests that waited too long.
    pub(super) fn tick(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        now_ms: u64,
    ) -> Vec<(StreamId, Settled)> {
        let mut ready = self.dispatch_wanted(policy, host, now_ms);
        let waiting: SortedSet<TokenHash> = self
            .parked
            .values()
            .map(|w| w.opaque.hash)
            .filter(|hash| !self.inflight.contains_key(hash))
            .collect();
        for hash in waiting {
            let (record, negative_cas) = lookup(policy, host, &hash, now_ms);
            if let Some(record) = &record {
                let usable = match &record.state {
                    EntryState::Pending { .. } => continue,
                    // An answer from a key manager no longer asked here counts as none.
                    EntryState::Active { key_manager, .. } => {
                        introspecting(policy, key_manager).is_some()
                    }
                    EntryState::Inactive | EntryState::Failed => true,
                };
                if usable {
                    ready.extend(self.resolve(policy, host, record, hash, now_ms));
                    continue;
                }
            }
            // No answer and nobody calling (the lease ran out, or a colliding token replaced
            // the entry): this worker calls.
            let opaque = self
                .parked
                .values()
                .find(|w| w.opaque.hash == hash)
                .map(|w| (*w.opaque).clone());
            if let Some(opaque) = opaque {
                self.lease(policy, host, &opaque, negative_cas, now_ms);
            }
        }
        ready.extend(self.dispatch_wanted(policy, host, now_ms));
        let late: Vec<StreamId> = self
            .parked
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for stream in late {
            self.parked.remove(&stream);
            let unavailable = Denial::IntrospectionUnavailable { retry_after: 1 };
            ready.push((stream, Settled::unvouched(Outcome::Deny(unavailable))));
        }
        ready
    }
}
