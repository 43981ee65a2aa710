//! One key manager's keys in one worker: the `keys` module's `JwksCache` over the host's shared data.
//!
//! The cache record lives in shared data so that every worker of an Envoy serves the same keys and
//! about one of them fetches per refresh (the protocol is in `crate::keys`). This file adapts the
//! host's shared data to `SharedSlot` and tracks the *generation* of the served key set, which the
//! verified-token cache and parked requests are tied to.

use std::sync::Arc;

use crate::config::Settings;
use crate::jose::KeySet;
use crate::keys::{
    made_by_proxy, slot_key, BodyProblem, Expect, FetchError, JwksCache, SharedSlot, SlotError,
    UnknownKidAction,
};
use crate::policy::KeyManager;

use super::host::Host;

/// What a request that lacks usable keys should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// This worker took the fetch: dispatch it, then wait.
    Fetch,
    /// A fetch is in flight (here or in another worker): wait.
    Wait,
    /// No fetch may start now (rate limit): decide with the keys at hand.
    DecideWithCurrentKeys,
    /// No usable keys and no fetch possible now: 503.
    Unavailable { retry_after: u64 },
}

/// How a JWKS callout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// A new key set is served.
    Keys,
    /// The fetch failed; old keys (if any) stay.
    Failed(FetchError),
}

/// The shared-data entry of one key manager, reached through the host.
struct Slot<'h, H: Host> {
    host: &'h H,
    key: &'h str,
}

impl<'h, H: Host> Slot<'h, H> {
    fn new(host: &'h H, key: &'h str) -> Self {
        Slot { host, key }
    }
}

impl<H: Host> SharedSlot for Slot<'_, H> {
    fn read(&self) -> Option<(Vec<u8>, u32)> {
        self.host.shared_get(self.key)
    }

    fn write(&self, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
        self.host.shared_set(self.key, bytes, expect)
    }
}

fn parse(body: &[u8]) -> Result<KeySet, BodyProblem> {
    KeySet::from_json(body).map_err(|err| match err.code() {
        "jwks_no_keys" | "jwks_no_usable_key" => BodyProblem::NoUsableKey,
        _ => BodyProblem::Malformed,
    })
}

pub(super) struct JwksClient {
    cache: JwksCache<KeySet>,
    slot_key: String,
    name: String,
    /// The key set last served. Holding the `Arc` keeps its address from being reused, so
    /// `Arc::ptr_eq` tells a new set from the old one reliably.
    last: Option<Arc<KeySet>>,
    /// Bumped whenever the served key set changes; verified-token cache entries and parked
    /// requests are tied to it.
    generation: u64,
}

impl JwksClient {
    pub(super) fn new(manager: &KeyManager, settings: &Settings, worker_id: u64) -> Self {
        JwksClient {
            cache: JwksCache::new(settings, worker_id),
            slot_key: slot_key(&manager.name, &manager.issuer, &manager.jwks.uri),
            name: manager.name.clone(),
            last: None,
            generation: 0,
        }
    }

    /// Adopts what any worker published (a shared-data read: ticks, parking and wake-ups do it,
    /// not every request).
    pub(super) fn adopt(&mut self, host: &impl Host, now_ms: u64) {
        let slot = Slot::new(host, &self.slot_key);
        let _ = self.cache.sync_shared(&slot, parse);
        self.keys(now_ms);
    }

    /// The generation of the keys usable now, `None` when there are none (no host call).
    pub(super) fn usable_generation(&self, now_ms: u64) -> Option<u64> {
        let keys = self.cache.keys_shared(now_ms)?;
        // A set not noted yet has no generation of its own: nothing cached can match it.
        match &self.last {
            Some(last) if Arc::ptr_eq(last, keys) => Some(self.generation),
            _ => None,
        }
    }

    /// The keys usable now, as this worker last adopted them (no host call).
    pub(super) fn keys(&mut self, now_ms: u64) -> Option<Arc<KeySet>> {
        let keys = self.cache.keys_shared(now_ms).cloned();
        self.note(keys.as_ref());
        keys
    }

    /// Bumps the generation when the served key set changes (another set, or none). A refresh
    /// that fetched the same JWKS keeps the same set (`JwksCache::apply`), so it bumps nothing.
    fn note(&mut self, keys: Option<&Arc<KeySet>>) {
        let same = match (&self.last, keys) {
            (Some(old), Some(new)) => Arc::ptr_eq(old, new),
            (None, None) => true,
            (Some(_), None) | (None, Some(_)) => false,
        };
        if !same {
            self.generation = self.generation.wrapping_add(1);
            self.last = keys.map(Arc::clone);
        }
    }

    /// Generation of the key set this worker serves (changes whenever other keys are adopted).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn fetching(&self, now_ms: u64) -> bool {
        self.cache.fetch_in_flight(now_ms)
    }

    pub(super) fn retry_after(&self, now_ms: u64) -> u64 {
        self.cache.retry_after(now_ms)
    }

    pub(super) fn fetch_timeout_ms(&self) -> u64 {
        self.cache.timing().fetch_timeout_ms
    }

    /// A request lacks keys (none usable, or not the `kid` it names).
    pub(super) fn need(&mut self, host: &impl Host, unknown_kid: bool, now_ms: u64) -> Need {
        self.adopt(host, now_ms);
        let has_keys = self.keys(now_ms).is_some();
        let slot = Slot::new(host, &self.slot_key);
        if !unknown_kid && !has_keys {
            if self.cache.fetch_in_flight(now_ms) {
                return Need::Wait;
            }
            if self.cache.poll_shared(&slot, now_ms, parse).is_some() {
                self.keys(now_ms);
                return Need::Fetch;
            }
        }
        let need = match self.cache.unknown_kid_shared(&slot, now_ms, parse) {
            UnknownKidAction::Fetch => Need::Fetch,
            UnknownKidAction::Wait => Need::Wait,
            UnknownKidAction::Decide if has_keys => Need::DecideWithCurrentKeys,
            UnknownKidAction::Decide => Need::Unavailable {
                retry_after: self.cache.retry_after(now_ms),
            },
        };
        self.keys(now_ms);
        need
    }

    /// Timer: adopt shared state; true when this worker just took a scheduled fetch.
    pub(super) fn refresh_due(&mut self, host: &impl Host, now_ms: u64) -> bool {
        let slot = Slot::new(host, &self.slot_key);
        let _ = self.cache.sync_shared(&slot, parse);
        let due = self.cache.poll_shared(&slot, now_ms, parse).is_some();
        self.keys(now_ms);
        due
    }

    pub(super) fn fetch_failed(&mut self, host: &impl Host, now_ms: u64, error: FetchError) {
        log::warn!(
            "keygate: JWKS of {} not fetched: {}",
            self.name,
            error.code()
        );
        let slot = Slot::new(host, &self.slot_key);
        self.cache.on_failure_shared(&slot, now_ms, error, parse);
    }

    /// The JWKS callout answered: `headers` is empty when the host got no response at all; `body`
    /// is `None` when `body_size` is over the limit (it was not read).
    pub(super) fn fetch_answered(
        &mut self,
        host: &impl Host,
        now_ms: u64,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        body_size: usize,
    ) -> Answered {
        if headers.is_empty() {
            let error = self.cache.no_answer_error(now_ms);
            self.fetch_failed(host, now_ms, error);
            return Answered::Failed(error);
        }
        if let Err(error) = self.cache.check_size(body_size) {
            self.fetch_failed(host, now_ms, error);
            return Answered::Failed(error);
        }
        let status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse::<u32>().ok())
            .unwrap_or(0);
        if made_by_proxy(status, headers) {
            // Envoy answered the call itself: the key manager timed out or was unreachable.
            let error = self.cache.no_answer_error(now_ms);
            self.fetch_failed(host, now_ms, error);
            return Answered::Failed(error);
        }
        let body = body.unwrap_or_default();
        let slot = Slot::new(host, &self.slot_key);
        match self
            .cache
            .on_response_shared(&slot, now_ms, status, headers, body, parse)
        {
            Ok(()) => {
                log::info!(
                    "keygate: JWKS of {} refreshed (version {})",
                    self.name,
                    self.cache.record().version
                );
                Answered::Keys
            }
            Err(error) => {
                log::warn!("keygate: JWKS of {} refused: {}", self.name, error.code());
                Answered::Failed(error)
            }
        }
    }
}
