//! Parked requests.
//! A request whose key manager has no usable keys yet, or whose token names a `kid` the key set
//! lacks, is parked until the keys change, the fetch ends, or `request_wait_ms` passes (then 503
//! with `Retry-After`). Parking is bounded: at most `settings.max_parked_per_key_manager` for one
//! key manager and `settings.max_parked_requests` in all, per worker; a request beyond either bound
//! is answered 503 `key_manager_unavailable` at once, never forwarded.
//!

use super::answering::Answering;
use super::jwks_client::{JwksClient, Need};
use super::{counters, Host, RequestAction, StreamId, Worker};
use crate::decision::{Denial, Outcome, Pending};
use crate::policy::KeyManagerId;

/// A request waiting for keys.
pub(super) struct Parked {
    pub(super) pending: Box<Pending>,
    pub(super) deadline_ms: u64,
    /// The key set generation it saw when it parked; it wakes when that changes.
    pub(super) generation: u64,
    /// The filter's time spent on it before it parked.
    pub(super) spent_us: u64,
}

impl Worker {
    /// Parks a request until keys arrive (starting a fetch when one is due), or answers it now.
    pub(super) fn park(
        &mut self,
        host: &mut impl Host,
        stream: StreamId,
        pending: Box<Pending>,
        unknown_kid: bool,
        now_ms: u64,
        answering: Answering,
    ) -> RequestAction {
        let km = pending.key_manager();
        let settings = self.policy.settings();
        let here = self
            .parked
            .values()
            .filter(|p| p.pending.key_manager() == km)
            .count();
        if self.parked.len() >= settings.max_parked_requests
            || here >= settings.max_parked_per_key_manager
        {
            log::warn!("keygate: parked-request bound reached; answering 503");
            host.count(counters::PARKED_OVERFLOW);
            let retry_after = self
                .stores
                .get(km.index())
                .map_or(1, |s| s.retry_after(now_ms));
            return self.apply(
                host,
                stream,
                &Outcome::Deny(Denial::KeyManagerUnavailable { retry_after }),
                &answering,
            );
        }
        let deadline_ms = now_ms.saturating_add(settings.request_wait_ms);
        let Some(store) = self.stores.get_mut(km.index()) else {
            let unavailable = Denial::KeyManagerUnavailable { retry_after: 1 };
            return self.apply(host, stream, &Outcome::Deny(unavailable), &answering);
        };
        // Requests decide with the keys adopted at the last tick; another worker may have
        // published newer ones since. Adopt them, and decide again if they changed.
        let before = store.generation();
        store.adopt(host, now_ms);
        let (pending, unknown_kid) = if store.generation() == before {
            (pending, unknown_kid)
        } else {
            match self.finish(host, pending, km, now_ms, false) {
                Outcome::NeedKeys {
                    pending,
                    unknown_kid,
                } => (pending, unknown_kid),
                other => return self.apply(host, stream, &other, &answering),
            }
        };
        let Some(store) = self.stores.get_mut(km.index()) else {
            let unavailable = Denial::KeyManagerUnavailable { retry_after: 1 };
            return self.apply(host, stream, &Outcome::Deny(unavailable), &answering);
        };
        match store.need(host, unknown_kid, now_ms) {
            Need::Fetch => {
                self.wanted.insert(km);
                if !self.wakeup_asked {
                    self.wakeup_asked = host.wake_root();
                }
            }
            Need::Wait => {}
            Need::DecideWithCurrentKeys => {
                // Unknown kid but the refetch budget is spent: decide with what we have.
                let outcome = self.finish(host, pending, km, now_ms, true);
                return self.apply(host, stream, &outcome, &answering);
            }
            Need::Unavailable { retry_after } => {
                let unavailable = Denial::KeyManagerUnavailable { retry_after };
                return self.apply(host, stream, &Outcome::Deny(unavailable), &answering);
            }
        }
        // The generation it waits to see change (read after `need`, which may adopt new keys).
        let generation = self
            .stores
            .get(km.index())
            .map_or(0, JwksClient::generation);
        let spent_us = answering.spent(host.now_us());
        self.parked.insert(
            stream,
            Parked {
                pending,
                deadline_ms,
                generation,
                spent_us,
            },
        );
        RequestAction::Pause
    }

    /// Finishes parked requests of key manager `km` that can be decided now: the key set changed
    /// since they parked, or no fetch is in flight any more (it failed or was never possible).
    pub(super) fn wake(&mut self, host: &mut impl Host, km: KeyManagerId, now_ms: u64) {
        let Some(store) = self.stores.get_mut(km.index()) else {
            return;
        };
        // Ticks adopt shared keys (`refresh_due`); answers publish them here first.
        let has_keys = store.keys(now_ms).is_some();
        let generation = store.generation();
        let fetching = store.fetching(now_ms);
        let retry_after = store.retry_after(now_ms);
        let ready: Vec<StreamId> = self
            .parked
            .iter()
            .filter(|(_, p)| p.pending.key_manager() == km)
            .filter(|(_, p)| p.generation != generation || !fetching)
            .map(|(id, _)| *id)
            .collect();
        for stream in ready {
            let Some(parked) = self.parked.remove(&stream) else {
                continue;
            };
            let answering = Answering::resumed(&parked, host.now_us());
            let outcome = if has_keys {
                // After a refetch (or when no fetch can help any more) an unknown kid is final.
                self.finish(host, parked.pending, km, now_ms, true)
            } else {
                Outcome::Deny(Denial::KeyManagerUnavailable { retry_after })
            };
            if self.apply(host, stream, &outcome, &answering) == RequestAction::Continue {
                host.resume(stream);
            }
        }
    }

    pub(super) fn expire(&mut self, host: &mut impl Host, now_ms: u64) {
        let late: Vec<StreamId> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for stream in late {
            let Some(parked) = self.parked.remove(&stream) else {
                continue;
            };
            let retry_after = self
                .stores
                .get(parked.pending.key_manager().index())
                .map_or(1, |s| s.retry_after(now_ms));
            let answering = Answering::resumed(&parked, host.now_us());
            let unavailable = Denial::KeyManagerUnavailable { retry_after };
            self.deny(host, stream, &unavailable, &answering);
        }
    }
}
