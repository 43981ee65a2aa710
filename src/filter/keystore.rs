//! One key manager's keys in one worker: the core's `KeyCache` over proxy-wasm shared data.
//!
//! The cache record lives in shared data so that all worker VMs of an Envoy serve the same keys and
//! about one of them fetches per refresh (see `crate::keys` for the protocol). This file only adapts
//! host calls and time units; every decision is the core's.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::config::Settings;
use crate::jose::KeySet;
use crate::keys::{
    made_by_proxy, slot_key, BodyProblem, Expect, FetchError, KeyCache, SharedSlot, SlotError,
    UnknownKidAction,
};
use crate::policy::KeyManager;

use super::host;

/// What a request that lacks usable keys should do.
pub enum Need {
    /// This worker took the fetch: dispatch it, then wait.
    Fetch,
    /// A fetch is in flight (here or in another worker): wait.
    Wait,
    /// No fetch may start now (rate limit): decide with the keys at hand.
    DecideWithCurrentKeys,
    /// No usable keys and no fetch possible now: 503.
    Unavailable { retry_after: u64 },
}

/// The shared-data entry of one key manager.
struct HostSlot {
    key: String,
}

impl SharedSlot for HostSlot {
    fn read(&self) -> Option<(Vec<u8>, u32)> {
        match host::shared_get(&self.key) {
            (Some(bytes), Some(cas)) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn write(&self, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
        // Envoy accepts any CAS value for a missing key and refuses a stale one for an existing
        // key, so "must be absent" is spelled with a CAS value it never hands out.
        let cas = match expect {
            Expect::Absent => u32::MAX,
            Expect::Cas(cas) => cas,
        };
        match host::shared_set_status(&self.key, bytes, Some(cas)) {
            Ok(()) => Ok(()),
            Err(proxy_wasm::types::Status::CasMismatch) => Err(SlotError::CasMismatch),
            Err(_) => Err(SlotError::Host),
        }
    }
}

fn parse(body: &[u8]) -> Result<KeySet, BodyProblem> {
    KeySet::from_json(body).map_err(|err| match err.code() {
        "jwks_no_keys" | "jwks_no_usable_key" => BodyProblem::NoUsableKey,
        _ => BodyProblem::Malformed,
    })
}

fn ms(now: f64) -> u64 {
    if now <= 0.0 {
        0
    } else {
        (now * 1000.0) as u64
    }
}

/// A worker id unique among the VMs sharing the record (WASI randomness via `RandomState`).
fn worker_id() -> u64 {
    RandomState::new().build_hasher().finish()
}

pub struct KeyStore {
    cache: KeyCache<KeySet>,
    slot: HostSlot,
    name: String,
    /// The key set last served and the record version it came with. Holding the `Arc` keeps its
    /// address from being reused, so `Arc::ptr_eq` tells a new set from the old one reliably.
    last: Option<(Arc<KeySet>, u64)>,
    /// Bumped whenever the served key set or the record version changes; verified-token cache
    /// entries and parked requests are tied to it.
    generation: u64,
}

impl KeyStore {
    pub fn new(manager: &KeyManager, settings: &Settings) -> Self {
        KeyStore {
            cache: KeyCache::new(settings, worker_id()),
            slot: HostSlot {
                key: slot_key(&manager.name, &manager.jwks.uri),
            },
            name: manager.name.clone(),
            last: None,
            generation: 0,
        }
    }

    /// Adopts what any worker published, then returns the keys usable now.
    pub fn keys(&mut self, now: f64) -> Option<Arc<KeySet>> {
        let _ = self.cache.sync_shared(&self.slot, parse);
        let keys = self.cache.keys_shared(ms(now)).cloned();
        self.note(keys.as_ref());
        keys
    }

    fn note(&mut self, keys: Option<&Arc<KeySet>>) {
        let version = self.cache.record().version;
        let same = match (&self.last, keys) {
            (Some((old, old_version)), Some(new)) => {
                Arc::ptr_eq(old, new) && *old_version == version
            }
            (None, None) => true,
            (Some((_, old_version)), None) => *old_version == version,
            (None, Some(_)) => false,
        };
        if !same {
            self.generation = self.generation.wrapping_add(1);
            if let Some(new) = keys {
                self.last = Some((Arc::clone(new), version));
            } else if let Some((_, v)) = self.last.as_mut() {
                *v = version;
            }
        }
    }

    /// Generation of the key set this worker serves (changes whenever other keys are adopted).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn fetching(&self, now: f64) -> bool {
        self.cache.fetch_in_flight(ms(now))
    }

    pub fn retry_after(&self, now: f64) -> u64 {
        self.cache.retry_after(ms(now))
    }

    pub fn fetch_timeout_ms(&self) -> u64 {
        self.cache.timing().fetch_timeout_ms
    }

    /// A request lacks keys (none usable, or not the `kid` it names).
    pub fn need(&mut self, unknown_kid: bool, now: f64) -> Need {
        let now_ms = ms(now);
        let has_keys = self.keys(now).is_some();
        if !unknown_kid && !has_keys {
            if self.cache.fetch_in_flight(now_ms) {
                return Need::Wait;
            }
            if self.cache.poll_shared(&self.slot, now_ms, parse).is_some() {
                return Need::Fetch;
            }
        }
        match self.cache.unknown_kid_shared(&self.slot, now_ms, parse) {
            UnknownKidAction::Fetch => Need::Fetch,
            UnknownKidAction::Wait => Need::Wait,
            UnknownKidAction::Decide if has_keys => Need::DecideWithCurrentKeys,
            UnknownKidAction::Decide => Need::Unavailable {
                retry_after: self.cache.retry_after(now_ms),
            },
        }
    }

    /// Timer: adopt shared state; true when this worker just took a scheduled fetch.
    pub fn refresh_due(&mut self, now: f64) -> bool {
        let now_ms = ms(now);
        let _ = self.cache.sync_shared(&self.slot, parse);
        self.cache.poll_shared(&self.slot, now_ms, parse).is_some()
    }

    pub fn fetch_failed(&mut self, now: f64, error: FetchError) {
        log::warn!(
            "keygate: JWKS of {} not fetched: {}",
            self.name,
            error.code()
        );
        self.cache
            .on_failure_shared(&self.slot, ms(now), error, parse);
    }

    /// The JWKS call answered: `headers` is empty when the host got no response at all.
    pub fn fetch_answered(
        &mut self,
        now: f64,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        body_size: usize,
    ) -> bool {
        let now_ms = ms(now);
        if headers.is_empty() {
            let error = self.cache.no_answer_error(now_ms);
            self.fetch_failed(now, error);
            return false;
        }
        if let Err(error) = self.cache.check_size(body_size) {
            self.fetch_failed(now, error);
            return false;
        }
        let status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse::<u32>().ok())
            .unwrap_or(0);
        if made_by_proxy(status, headers) {
            // Envoy answered the call itself: the key manager timed out or was unreachable.
            let error = self.cache.no_answer_error(now_ms);
            self.fetch_failed(now, error);
            return false;
        }
        let body = body.unwrap_or_default();
        match self
            .cache
            .on_response_shared(&self.slot, now_ms, status, headers, body, parse)
        {
            Ok(()) => {
                log::info!(
                    "keygate: JWKS of {} refreshed (version {})",
                    self.name,
                    self.generation()
                );
                true
            }
            Err(error) => {
                log::warn!("keygate: JWKS of {} refused: {}", self.name, error.code());
                false
            }
        }
    }
}
