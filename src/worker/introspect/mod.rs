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

use super::sorted_map::{SortedMap, SortedSet};

use crate::decision::Denial;
use crate::decision::{self, Opaque, Outcome};
use crate::introspection::{
    entry_key, negative_entry_key, parse_answer, request_body, Answer, CallFailure, EntryState,
    IntrospectionEntry, Secrets, TokenHash,
};
use crate::keys::{made_by_proxy, Expect};
use crate::policy::KeyManagerId;
use crate::policy::Policy;
use crate::worker::metrics;

use super::host::{Fetch, Host, Post, StreamId};
use super::{counters, seconds, with_dpop};

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

/// Calls started in one second (by this worker, or in shared data by all workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Calls {
    second: u64,
    used: u64,
}

impl Calls {
    /// The calls of `second` so far.
    fn at(self, second: u64) -> u64 {
        if self.second == second {
            self.used
        } else {
            0
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.second.to_be_bytes());
        b.copy_from_slice(&self.used.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Calls {
        let word = |at: usize| {
            bytes
                .get(at..at.saturating_add(8))
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        Calls {
            second: word(0),
            used: word(8),
        }
    }
}

/// The shared-data counter of the calls all workers started in the current second.
const CALLS_KEY: &str = "keygate.introspection.calls";

/// The Envoy-wide count of calls (and its CAS, to add to it).
fn shared_calls(host: &impl Host) -> (Calls, Expect) {
    match host.shared_get(CALLS_KEY) {
        Some((bytes, cas)) => (Calls::from_bytes(&bytes), Expect::Cas(cas)),
        None => (Calls::default(), Expect::Absent),
    }
}

/// Whether a call may start at `now_ms` within both bounds (read-only).
fn call_allowed(mine: Calls, policy: &Policy, host: &impl Host, now_ms: u64) -> bool {
    let settings = policy.settings();
    let second = now_ms / 1_000;
    mine.at(second) < settings.introspection_worker_calls_per_second
        && shared_calls(host).0.at(second) < settings.introspection_calls_per_second
}

/// Spends one call of this second's budgets: false past either bound, or when the shared counter
/// cannot be written (fail closed: no call).
fn spend_call(mine: &mut Calls, policy: &Policy, host: &impl Host, now_ms: u64) -> bool {
    let settings = policy.settings();
    let second = now_ms / 1_000;
    if mine.at(second) >= settings.introspection_worker_calls_per_second {
        return false;
    }
    for _ in 0..8 {
        let (all, expect) = shared_calls(host);
        let used = all.at(second);
        if used >= settings.introspection_calls_per_second {
            return false;
        }
        let next = Calls {
            second,
            used: used.saturating_add(1),
        };
        match host.shared_set(CALLS_KEY, &next.to_bytes(), expect) {
            Ok(()) => {
                *mine = Calls {
                    second,
                    used: mine.at(second).saturating_add(1),
                };
                return true;
            }
            Err(crate::keys::SlotError::CasMismatch) => continue,
            Err(crate::keys::SlotError::Host) => return false,
        }
    }
    false
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

    /// Dispatches the wanted calls (root callbacks only).
    pub(super) fn dispatch_wanted(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        now_ms: u64,
    ) -> Vec<(StreamId, Settled)> {
        let mut ready = Vec::new();
        while let Some(hash) = self.wanted.pop_first() {
            ready.extend(self.call(policy, host, hash, now_ms));
        }
        ready
    }

    /// Calls the next key manager for `hash`, or settles the token when none is left.
    fn call(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        hash: TokenHash,
        now_ms: u64,
    ) -> Vec<(StreamId, Settled)> {
        loop {
            let Some(flight) = self.inflight.get_mut(&hash) else {
                return Vec::new();
            };
            let Some(&km) = flight.asked.get(flight.next) else {
                let state = if flight.failed.is_some() {
                    EntryState::Failed
                } else {
                    EntryState::Inactive
                };
                return self.settle(policy, host, hash, state, now_ms);
            };
            let manager = policy.key_manager(km);
            let target = manager.and_then(|m| Some((m, m.introspection.as_ref()?)));
            let credentials = self.secrets.get(km);
            let (Some((manager, introspection)), Some(credentials)) = (target, credentials) else {
                log::warn!(
                    "keygate: introspection of key manager #{} has no client secret",
                    km.index()
                );
                flight.failed = Some(CallFailure::NotStarted);
                flight.next = flight.next.saturating_add(1);
                continue;
            };
            if !spend_call(&mut self.calls, policy, host, now_ms) {
                log::warn!("keygate: introspection calls of this second spent");
                host.count(counters::INTROSPECTION_THROTTLED);
                flight.failed = Some(CallFailure::Throttled);
                flight.next = flight.next.saturating_add(1);
                continue;
            }
            let body = request_body(&flight.token);
            let fetch = Fetch {
                cluster: &introspection.cluster,
                authority: &introspection.authority,
                path: &introspection.path,
                timeout_ms: policy.settings().introspection_timeout_ms,
                post: Some(Post {
                    authorization: credentials.authorization(),
                    body: body.as_bytes(),
                }),
                headers: &[],
            };
            match host.dispatch(&fetch) {
                Some(token) => {
                    self.callouts.insert(token, hash);
                    return Vec::new();
                }
                None => {
                    log::warn!("keygate: introspection at {} could not start", manager.name);
                    let label = metrics::label_value(&manager.name);
                    let outcome = CallFailure::NotStarted.code();
                    host.count(metrics::introspection(&label, outcome).as_str());
                    flight.failed = Some(CallFailure::NotStarted);
                    flight.next = flight.next.saturating_add(1);
                }
            }
        }
    }

    /// A callout answered: `None` when it is not an introspection call of this worker.
    pub(super) fn answered(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
    ) -> Option<Vec<(StreamId, Settled)>> {
        let hash = self.callouts.remove(&token)?;
        let headers = host.fetch_headers();
        let status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse::<u32>().ok())
            .unwrap_or(0);
        let result = if headers.is_empty() || made_by_proxy(status, &headers) {
            Err(CallFailure::Unreachable)
        } else if body_size > policy.settings().introspection_max_bytes {
            Err(CallFailure::TooLarge)
        } else {
            parse_answer(status, &host.fetch_body(body_size))
        };
        let Some(flight) = self.inflight.get_mut(&hash) else {
            return Some(Vec::new());
        };
        let km = flight.asked.get(flight.next);
        let name = km
            .and_then(|&km| policy.key_manager(km))
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let outcome = match &result {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Inactive) => "inactive",
            Err(failure) => failure.code(),
        };
        let label = metrics::label_value(&name);
        host.count(metrics::introspection(&label, outcome).as_str());
        let ready = match result {
            Ok(Answer::Active(claims)) => {
                let state = EntryState::Active {
                    key_manager: name,
                    claims,
                };
                self.settle(policy, host, hash, state, now_ms)
            }
            Ok(Answer::Inactive) => {
                flight.next = flight.next.saturating_add(1);
                self.call(policy, host, hash, now_ms)
            }
            Err(failure) => {
                log::warn!("keygate: introspection at {name} failed: {failure}");
                flight.failed = Some(failure);
                flight.next = flight.next.saturating_add(1);
                self.call(policy, host, hash, now_ms)
            }
        };
        Some(ready)
    }

    /// The final answer for `hash`: published for every worker, and given to the requests here.
    fn settle(
        &mut self,
        policy: &Policy,
        host: &mut impl Host,
        hash: TokenHash,
        state: EntryState,
        now_ms: u64,
    ) -> Vec<(StreamId, Settled)> {
        self.inflight.remove(&hash);
        let settings = policy.settings();
        let later = |s: u64| now_ms.saturating_add(s.saturating_mul(1_000));
        let until_ms = match &state {
            EntryState::Active { claims, .. } => {
                let most = later(settings.introspection_cache_seconds);
                let exp = claims
                    .get("exp")
                    .and_then(serde_json::Value::as_f64)
                    .filter(|exp| exp.is_finite() && *exp >= 0.0)
                    .map(|exp| (exp * 1000.0) as u64);
                match exp {
                    // An answer for a token already past `exp` is kept briefly, so a clock
                    // difference costs no call per request (requests are refused as expired).
                    Some(exp) if exp <= now_ms => {
                        later(settings.introspection_negative_cache_seconds)
                    }
                    Some(exp) => most.min(exp),
                    None => most,
                }
            }
            EntryState::Inactive | EntryState::Pending { .. } => {
                later(settings.introspection_negative_cache_seconds)
            }
            EntryState::Failed => later(settings.introspection_retry_seconds),
        };
        let record = IntrospectionEntry {
            hash: hash.hex(),
            until_ms,
            state,
        };
        if matches!(record.state, EntryState::Active { .. }) {
            publish(host, &key_of(policy, &hash), &record);
            self.release_lease(policy, host, &hash, now_ms);
        } else {
            publish(host, &negative_key_of(policy, &hash), &record);
        }
        self.resolve(policy, host, &record, hash, now_ms)
    }

    /// Ends this worker's lease for `hash` in the other area once the answer is active (it lives
    /// in the active area), so nobody waits for a call that is over. Left alone when the entry
    /// holds anything else by now.
    fn release_lease(&self, policy: &Policy, host: &impl Host, hash: &TokenHash, now_ms: u64) {
        let key = negative_key_of(policy, hash);
        let Some((bytes, cas)) = host.shared_get(&key) else {
            return;
        };
        let ours = IntrospectionEntry::from_bytes(&bytes).is_some_and(|r| {
            r.hash == hash.hex()
                && r.state
                    == (EntryState::Pending {
                        worker: self.worker_id,
                    })
        });
        if ours {
            let over = IntrospectionEntry {
                hash: hash.hex(),
                until_ms: now_ms,
                state: EntryState::Failed,
            };
            // Lost to another writer: the entry holds something else now, which is fine.
            let _ = host.shared_set(&key, &over.to_bytes(), Expect::Cas(cas));
        }
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

fn key_of(policy: &Policy, hash: &TokenHash) -> String {
    entry_key(hash.entry(policy.settings().introspection_cache_entries))
}

fn negative_key_of(policy: &Policy, hash: &TokenHash) -> String {
    negative_entry_key(hash.entry(policy.settings().introspection_negative_cache_entries))
}

/// The record that holds for `hash` at `now_ms`: its active answer from a key manager asked here
/// (one read, the cache hit), else what the other area holds for it with the CAS of that entry,
/// where a lease is written.
fn lookup(
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
fn known(
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
fn introspecting(policy: &Policy, name: &str) -> Option<KeyManagerId> {
    policy
        .introspection_order()
        .find(|&i| policy.key_manager(i).is_some_and(|m| m.name == name))
}

/// Writes `record` over whatever the entry holds (compare-and-swap, retried a few times).
fn publish(host: &impl Host, key: &str, record: &IntrospectionEntry) {
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
