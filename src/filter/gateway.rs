//! Per-VM state shared by the root context and the request contexts of one worker.
//!
//! Envoy calls into a VM on one thread only, so a `Rc<RefCell<_>>` is enough; every borrow is
//! `try_borrow_mut` so that a re-entrant call fails closed instead of panicking.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::cache::VerifiedTokens;
use crate::decide::{self, Keys, Outcome, Pending};
use crate::jose::KeySet;
use crate::keys::FetchError;
use crate::policy::Policy;
use crate::response::{reply, Denial};

use super::host;
use super::keystore::{KeyStore, Need};
use super::metrics::Metrics;

/// A request paused while keys are fetched.
pub struct Parked {
    pub pending: Box<Pending>,
    pub deadline: f64,
    /// The key set generation it saw when it parked.
    pub generation: u64,
}

pub struct Gateway {
    pub policy: Policy,
    stores: Vec<KeyStore>,
    parked: BTreeMap<u32, Parked>,
    /// Callout token → key manager index.
    callouts: BTreeMap<u32, usize>,
    metrics: Metrics,
    pub verified: VerifiedTokens,
}

impl Gateway {
    pub fn new(policy: Policy) -> Self {
        let capacity = policy.settings().token_cache_entries;
        let stores = policy
            .key_managers()
            .iter()
            .map(|km| KeyStore::new(km, policy.settings()))
            .collect();
        Gateway {
            policy,
            stores,
            parked: BTreeMap::new(),
            callouts: BTreeMap::new(),
            metrics: Metrics::new(),
            verified: VerifiedTokens::new(capacity),
        }
    }

    pub fn request_wait_seconds(&self) -> f64 {
        self.policy.settings().request_wait_ms as f64 / 1000.0
    }

    /// Usable keys of key manager `km` right now (adopting what another worker published), with
    /// their generation.
    pub fn keys_for(&mut self, km: usize, now: f64) -> Option<(Arc<KeySet>, u64)> {
        let store = self.stores.get_mut(km)?;
        let keys = store.keys(now)?;
        Some((keys, store.generation()))
    }

    /// Parks a request until keys arrive, starting a fetch when one is due; or says why it cannot wait.
    pub fn park(
        &mut self,
        context_id: u32,
        parked: Parked,
        unknown_kid: bool,
        now: f64,
    ) -> Result<(), Outcome> {
        let km = parked.pending.key_manager();
        let Some(store) = self.stores.get_mut(km) else {
            return Err(Outcome::Deny(Denial::KeyManagerUnavailable {
                retry_after: 1,
            }));
        };
        let mut parked = parked;
        match store.need(unknown_kid, now) {
            Need::Fetch => {
                self.start_fetch(km, now);
            }
            Need::Wait => {}
            Need::DecideWithCurrentKeys => {
                // Unknown kid but the refetch budget is spent: decide with what we have.
                let keys = store.keys(now);
                let generation = store.generation();
                let keys = keys.as_deref().map(|set| Keys { set, generation });
                return Err(decide::finish(
                    &self.policy,
                    parked.pending,
                    keys,
                    now,
                    true,
                    &mut self.verified,
                ));
            }
            Need::Unavailable { retry_after } => {
                return Err(Outcome::Deny(Denial::KeyManagerUnavailable { retry_after }));
            }
        }
        // The generation it waits to see change (read after `need`, which may adopt new keys).
        parked.generation = self
            .stores
            .get(km)
            .map(KeyStore::generation)
            .unwrap_or_default();
        self.parked.insert(context_id, parked);
        Ok(())
    }

    pub fn forget(&mut self, context_id: u32) {
        self.parked.remove(&context_id);
    }

    fn start_fetch(&mut self, km: usize, now: f64) {
        let Some(store) = self.stores.get_mut(km) else {
            return;
        };
        let Some(manager) = self.policy.key_managers().get(km) else {
            return;
        };
        let timeout = store.fetch_timeout_ms();
        match host::dispatch_get(
            &manager.jwks.cluster,
            &manager.jwks.authority,
            &manager.jwks.path,
            timeout,
        ) {
            Some(token) => {
                self.callouts.insert(token, km);
                self.metrics.jwks_fetch();
            }
            None => {
                store.fetch_failed(now, FetchError::DispatchFailed);
                self.metrics.jwks_fetch_failed();
            }
        }
    }

    /// Applies a final outcome to the current stream. Returns true when the request goes on.
    pub fn apply(&mut self, outcome: &Outcome) -> bool {
        let settings = self.policy.settings();
        match outcome {
            Outcome::Pass | Outcome::Public => true,
            Outcome::Allow(identity) => {
                for (name, value) in identity.headers(&settings.header_prefix) {
                    host::set_request_header(&name, Some(&value));
                }
                if settings.strip_authorization {
                    host::set_request_header("authorization", None);
                }
                host::set_filter_state("keygate.application", &identity.application);
                host::set_filter_state("keygate.client_id", &identity.client_id);
                host::set_filter_state("keygate.key_manager", &identity.key_manager);
                host::set_filter_state("keygate.code", "allowed");
                self.metrics.allowed();
                true
            }
            Outcome::Deny(denial) => {
                let answer = reply(denial, &settings.realm);
                log::info!(
                    "keygate: denied {} {}: {}",
                    answer.status,
                    denial.code(),
                    denial.description()
                );
                self.metrics.denied(denial.code());
                host::set_filter_state("keygate.code", denial.code());
                host::send_reply(answer.status, &answer.headers, answer.body.as_bytes());
                false
            }
            Outcome::NeedKeys { .. } => {
                // Never forwarded without a decision.
                let answer = reply(
                    &Denial::KeyManagerUnavailable { retry_after: 1 },
                    &settings.realm,
                );
                host::send_reply(answer.status, &answer.headers, answer.body.as_bytes());
                false
            }
        }
    }

    /// A JWKS fetch answered (in whichever context dispatched it).
    pub fn fetch_done(cell: &Rc<RefCell<Gateway>>, token_id: u32, body_size: usize, current: u32) {
        let Ok(mut gateway) = cell.try_borrow_mut() else {
            log::error!("keygate: JWKS response arrived while the gateway was busy");
            return;
        };
        let now = host::now();
        let Some(km) = gateway.callouts.remove(&token_id) else {
            return;
        };
        let headers = host::call_response_headers();
        let max = gateway.policy.settings().jwks_max_bytes;
        let body = if body_size > max {
            None
        } else {
            Some(host::call_response_body(body_size))
        };
        let fresh = gateway
            .stores
            .get_mut(km)
            .map(|store| store.fetch_answered(now, &headers, body.as_deref(), body_size))
            .unwrap_or(false);
        if !fresh {
            gateway.metrics.jwks_fetch_failed();
        }
        gateway.wake(km, now);
        host::set_effective_context(current);
    }

    /// Timer: refresh due caches, adopt other workers' keys, time out parked requests.
    pub fn tick(cell: &Rc<RefCell<Gateway>>, root_context: u32) {
        let Ok(mut gateway) = cell.try_borrow_mut() else {
            return;
        };
        let now = host::now();
        for km in 0..gateway.stores.len() {
            let due = gateway
                .stores
                .get_mut(km)
                .map(|store| store.refresh_due(now))
                .unwrap_or(false);
            if due {
                gateway.start_fetch(km, now);
            }
            gateway.wake(km, now);
        }
        gateway.expire(now);
        host::set_effective_context(root_context);
    }

    /// Finishes parked requests of key manager `km` that can be decided now: the key set changed
    /// since they parked, or no fetch is in flight any more (it failed or was never possible).
    fn wake(&mut self, km: usize, now: f64) {
        let Some(store) = self.stores.get_mut(km) else {
            return;
        };
        let keys = store.keys(now);
        let generation = store.generation();
        let fetching = store.fetching(now);
        let retry_after = store.retry_after(now);
        let ready: Vec<u32> = self
            .parked
            .iter()
            .filter(|(_, p)| p.pending.key_manager() == km)
            .filter(|(_, p)| p.generation != generation || !fetching)
            .map(|(id, _)| *id)
            .collect();
        for context_id in ready {
            let Some(parked) = self.parked.remove(&context_id) else {
                continue;
            };
            if !host::set_effective_context(context_id) {
                continue;
            }
            let outcome = match &keys {
                // After a refetch (or when no fetch can help any more) an unknown kid is final.
                Some(set) => decide::finish(
                    &self.policy,
                    parked.pending,
                    Some(Keys { set, generation }),
                    now,
                    true,
                    &mut self.verified,
                ),
                None => Outcome::Deny(Denial::KeyManagerUnavailable { retry_after }),
            };
            if self.apply(&outcome) {
                host::resume_request();
            }
        }
    }

    fn expire(&mut self, now: f64) {
        let late: Vec<u32> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for context_id in late {
            let Some(parked) = self.parked.remove(&context_id) else {
                continue;
            };
            if !host::set_effective_context(context_id) {
                continue;
            }
            let retry_after = self
                .stores
                .get(parked.pending.key_manager())
                .map(|s| s.retry_after(now))
                .unwrap_or(1);
            self.apply(&Outcome::Deny(Denial::KeyManagerUnavailable {
                retry_after,
            }));
        }
    }
}
