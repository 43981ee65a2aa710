//! The introspection calls of one worker: dispatching them to each key manager in turn, reading
//! their answers, and settling a token's final answer (published to every worker, given to the
//! requests parked here).

use super::budget::spend_call;
use super::cache::{key_of, negative_key_of, publish};
use super::{Introspector, Settled};
use crate::introspection::{
    parse_answer, request_body, Answer, CallFailure, EntryState, IntrospectionEntry, TokenHash,
};
use crate::keys::{made_by_proxy, Expect};
use crate::policy::Policy;
use crate::worker::host::{Fetch, Host, Post, StreamId};
use crate::worker::{counters, metrics};

impl Introspector {
    /// Dispatches the wanted calls (root callbacks only).
    pub(in crate::worker) fn dispatch_wanted(
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
    pub(in crate::worker) fn answered(
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
}
