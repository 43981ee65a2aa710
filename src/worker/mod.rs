//! The per-worker request path: one request from its headers to a verdict, requests parked while
//! keys are fetched, JWKS callouts and the timer. Everything here talks to Envoy only through the
//! [`Host`] trait, so the whole path runs natively against [`FakeHost`] in tests and benchmarks;
//! the proxy-wasm shell (`src/filter/`) implements `Host` and forwards callbacks, nothing more.
//!
//! # Fetches belong to the key manager
//! A JWKS fetch is started for a key manager, never for the request that happened to need it. A
//! callout made while a stream's callback runs belongs to that stream (proxy-wasm delivers its
//! answer to that stream, or nowhere once it is gone), so a request that needs a fetch only marks
//! it wanted and asks the host for a root callback ([`Host::wake_root`]); the worker dispatches
//! wanted fetches from root callbacks only ([`Worker::on_wakeup`], [`Worker::on_tick`]), and the
//! answer reaches [`Worker::on_fetch_answer`] whatever happened to the client that triggered it.
//! The worker maps the callout token to the key manager; an unknown token (late, duplicate, or
//! from a previous configuration) is ignored.
//!
//! # Metrics
//! Every request that gets a verdict is counted once in `keygate_requests` with its outcome, the
//! denial's code, and the key manager and API when they are known by then, and its time in the
//! filter is recorded once in `keygate_filter_time_us` (the time spent in the worker's callbacks
//! for it; a parked request's wait for keys is not the filter's time). Names are built in
//! [`crate::worker::metrics`].

mod answering;
mod api_key;
mod directory_client;
mod header_map;
mod host;
mod introspect;
mod jwks_client;
mod limiter;
pub mod metrics;
mod parking;
mod sorted_map;

#[cfg(not(target_arch = "wasm32"))]
mod fake;

use sorted_map::{SortedMap, SortedSet};

use crate::decision::is_identity_header;
use crate::decision::VerifiedTokens;
use crate::decision::{self, DpopHost, DpopRequest, Outcome, Pending, Request, SigningKeys};
use crate::decision::{authorization, dpop_proofs, AuthScheme};
use crate::decision::{client_cert, ClientCert, XFCC};
use crate::dpop::Slots;
use crate::introspection::Secrets;
use crate::jose::HostCrypto;
use crate::keys::FetchError;
use crate::policy::KeyManagerId;
use crate::policy::Policy;
use answering::Answering;
use metrics::Labels;
use parking::Parked;

pub use crate::decision::BackendSigner;
pub use metrics::counters;

#[cfg(not(target_arch = "wasm32"))]
pub use fake::{Crypto, Dispatched, FakeHost, Interleaved, Sent, SharedData, StreamLog};
pub use header_map::{decode_header_map, encode_header_map};
pub use host::{Fetch, Host, Post, StreamId};

use directory_client::DirectoryClient;
use introspect::{Handled, Introspector, Settled};
use jwks_client::{Answered, JwksClient};

pub use directory_client::directory_token;

/// What the shell tells the host about the request headers it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    /// Forward upstream now.
    Continue,
    /// Stop here: the request was answered locally, or it is parked and the worker will answer
    /// or resume it later.
    Pause,
}

/// The host's shared data as the DPoP replay store's slots, with this worker's random id as the
/// seed of the store's secret.
struct SharedSlots<'h, H>(&'h H, u64);

impl<H: Host> Slots for SharedSlots<'_, H> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.shared_get(key)
    }

    fn set(
        &self,
        key: &str,
        bytes: &[u8],
        expect: crate::keys::Expect,
    ) -> Result<(), crate::keys::SlotError> {
        self.0.shared_set(key, bytes, expect)
    }

    fn seed(&self) -> u64 {
        self.1 ^ self.0.now_us()
    }

    // In Wasm one VM is one thread and shared data outlives it: the store's secret is read once.
    #[cfg(target_arch = "wasm32")]
    fn known_secret(&self) -> Option<[u8; crate::dpop::SECRET_BYTES]> {
        crate::dpop::vm_secret::known()
    }

    #[cfg(target_arch = "wasm32")]
    fn keep_secret(&self, secret: [u8; crate::dpop::SECRET_BYTES]) {
        crate::dpop::vm_secret::keep(secret);
    }
}

/// Runs `f` with the host as the DPoP checks' crypto and `jti` replay store.
fn with_dpop<H: Host, R>(host: &H, seed: u64, f: impl FnOnce(DpopHost<'_>) -> R) -> R {
    let slots = SharedSlots(host, seed);
    f(DpopHost {
        crypto: Some(host as &dyn HostCrypto),
        slots: &slots,
    })
}

/// One worker's request handling. Built from a compiled [`Policy`] at `on_configure`.
pub struct Worker {
    policy: Policy,
    stores: Vec<JwksClient>,
    parked: SortedMap<StreamId, Parked>,
    /// `RateLimit-Policy` and `RateLimit` for the responses of allowed streams with a tier.
    budgets: SortedMap<StreamId, [(&'static str, String); 2]>,
    /// Callout token → key manager index.
    callouts: SortedMap<u32, KeyManagerId>,
    /// Key managers whose fetch this worker took the lease for and has not dispatched yet.
    wanted: SortedSet<KeyManagerId>,
    /// A root wake-up was asked for and has not run yet.
    wakeup_asked: bool,
    verified: VerifiedTokens,
    /// Label values of the key managers and APIs.
    labels: Labels,
    /// Opaque tokens: the shared introspection cache, calls and the requests waiting for them.
    introspector: Introspector,
    /// Metric labels and filter time so far of the requests waiting for introspection.
    introspecting: SortedMap<StreamId, Answering>,
    /// This worker's random id, the seed of the DPoP replay store's secret if it draws it.
    seed: u64,
    /// The identities granted to API keys, per key and resource.
    key_grants: decision::KeyGrants,
    /// The application directory's fetches, when the applications are not inline.
    directory: Option<DirectoryClient>,
    /// The gateway's backend-JWT keys (docs/backend-jwt.md), read at `on_configure`.
    backend: Option<BackendSigner>,
    /// Request headers removed from every request: the backend-JWT headers of the APIs (only
    /// the gateway sets them).
    reserved_headers: Vec<String>,
}

impl Worker {
    /// `worker_id` tells this worker apart from the others sharing the key records (any value
    /// unique among them; the shell draws a random one).
    pub fn new(policy: Policy, worker_id: u64) -> Worker {
        let settings = policy.settings();
        let stores = policy
            .key_managers()
            .iter()
            .map(|km| JwksClient::new(km, settings, worker_id))
            .collect();
        let verified =
            VerifiedTokens::new(settings.token_cache_entries, settings.token_cache_bytes);
        let labels = Labels::new(&policy);
        let directory = DirectoryClient::new(&policy, worker_id, None);
        let mut reserved_headers: Vec<String> = policy
            .apis()
            .iter()
            .filter_map(|api| Some(api.backend_jwt.as_ref()?.header.clone()))
            .collect();
        reserved_headers.sort_unstable();
        reserved_headers.dedup();
        Worker {
            directory,
            policy,
            stores,
            parked: SortedMap::new(),
            budgets: SortedMap::new(),
            callouts: SortedMap::new(),
            wanted: SortedSet::new(),
            wakeup_asked: false,
            verified,
            labels,
            introspector: Introspector::new(worker_id),
            introspecting: SortedMap::new(),
            seed: worker_id,
            key_grants: decision::KeyGrants::default(),
            backend: None,
            reserved_headers,
        }
    }

    /// The backend-JWT signing keys ([`BackendSigner::from_env`]). Without them an API that
    /// forwards a backend JWT answers 503 `backend_jwt_unavailable`.
    pub fn with_backend_signer(mut self, signer: Option<BackendSigner>) -> Worker {
        self.backend = signer;
        self
    }

    pub(crate) fn backend_signer(&self) -> Option<&BackendSigner> {
        self.backend.as_ref()
    }

    /// The introspection client credentials, read at `on_configure` ([`Secrets::from_env`]).
    /// Without them an opaque token can never be checked (answered 503).
    pub fn with_secrets(mut self, secrets: Secrets) -> Worker {
        self.introspector.set_secrets(secrets);
        self
    }

    /// The bearer token the directory source expects ([`directory_token`], read at
    /// `on_configure`).
    pub fn with_directory_token(mut self, token: Option<String>) -> Worker {
        self.directory = DirectoryClient::new(&self.policy, self.seed, token);
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Requests parked right now (waiting for keys or for an introspection answer).
    pub fn parked(&self) -> usize {
        self.parked.len() + self.introspector.parked()
    }

    /// Callouts started and not answered yet.
    pub fn callouts_in_flight(&self) -> usize {
        self.callouts.len() + self.introspector.callouts()
    }

    /// The request headers of `stream` arrived (`headers` as the host lists them, pseudo-headers
    /// included). Incoming identity headers are removed first, whatever the outcome.
    pub fn on_request(
        &mut self,
        host: &mut impl Host,
        stream: StreamId,
        headers: &[(String, String)],
    ) -> RequestAction {
        let prefix = &self.policy.settings().header_prefix;
        let trusted_xfcc = self.policy.settings().trusted_client_cert_header;
        for (name, _) in headers {
            let forged = is_identity_header(prefix, name)
                || self
                    .reserved_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name))
                || (!trusted_xfcc && name.eq_ignore_ascii_case(XFCC));
            if forged {
                host.remove_header(stream, name);
            }
        }
        let method = header(headers, ":method").unwrap_or_default();
        let path = header(headers, ":path").unwrap_or_default();
        let ready_path = &self.policy.settings().ready_path;
        if !ready_path.is_empty() && path == ready_path.as_str() && matches!(method, "GET" | "HEAD")
        {
            // Configured, so able to decide (a refused configuration never gets here: Envoy
            // answers 500). Not an API request: not counted in `keygate_requests`.
            let headers = [
                ("content-type".to_string(), "application/json".to_string()),
                ("cache-control".to_string(), "no-store".to_string()),
            ];
            host.reply(stream, 200, &headers, br#"{"status":"ready"}"#);
            return RequestAction::Pause;
        }
        let authorization = authorization(headers);
        let proofs = dpop_proofs(headers);
        let request = Request {
            method,
            path,
            authorization: authorization.as_deref(),
            dpop: DpopRequest { proofs: &proofs },
            headers,
        };
        let now_us = host.now_us();
        let now_ms = now_us / 1000;
        let mut answering = Answering::new(now_us);
        answering.had_authorization = authorization.is_some();
        answering.had_dpop = !proofs.is_empty();
        let start = decision::start(&self.policy, &request);
        answering.api = start.api;
        if let Some(api) = start.api {
            // An API key never goes upstream, whatever the outcome (header and query string).
            self.strip_api_key(host, stream, api, headers, path);
        }
        let outcome = match start.next {
            Err(outcome) => outcome,
            Ok(started) if started.is_api_key() => {
                answering.api_key = true;
                let now = seconds(now_ms);
                let (policy, grants) = (&self.policy, &mut self.key_grants);
                with_dpop(&*host, self.seed, |dpop| {
                    decision::decide_api_key_with(policy, &started, now, grants, dpop.slots)
                })
            }
            Ok(started) => {
                answering.dpop = started.scheme() == AuthScheme::Dpop;
                // RFC 8705: the certificate this request came with, read only for a bound token
                // (or an API that requires one), so most requests never ask Envoy for it.
                let read_cert = || {
                    let xfcc = header(headers, XFCC);
                    let connection = host.peer_certificate_sha256();
                    client_cert(connection.as_deref(), xfcc, trusted_xfcc)
                };
                let started = started.with_client_cert_from(ClientCert::Lazy(&read_cert));
                let stores = &self.stores;
                let generation = |km: KeyManagerId| {
                    stores
                        .get(km.index())
                        .and_then(|s| s.usable_generation(now_ms))
                };
                let recalled = with_dpop(&*host, self.seed, |dpop| {
                    decision::recall(
                        &self.policy,
                        &started,
                        &mut self.verified,
                        generation,
                        seconds(now_ms),
                        dpop,
                    )
                });
                let hit = recalled.is_some();
                let outcome = match recalled {
                    Some((km, outcome)) => {
                        answering.key_manager = Some(km);
                        outcome
                    }
                    None => match decision::parse(&self.policy, started) {
                        Ok(pending) => {
                            let km = pending.key_manager();
                            answering.key_manager = Some(km);
                            self.finish(host, Box::new(pending), km, now_ms, false)
                        }
                        Err(outcome) => outcome,
                    },
                };
                host.count(metrics::token_cache(hit));
                outcome
            }
        };
        let verdict = match outcome {
            Outcome::NeedKeys {
                pending,
                unknown_kid,
            } => self.park(host, stream, pending, unknown_kid, now_ms, answering),
            Outcome::NeedIntrospection(opaque) => {
                let room = self.parked() < self.policy.settings().max_parked_requests;
                let handled =
                    self.introspector
                        .request(&self.policy, host, stream, opaque, now_ms, room);
                match handled {
                    Handled::Answer(settled) => {
                        answering.key_manager = settled.key_manager;
                        self.apply(host, stream, &settled.outcome, &answering)
                    }
                    Handled::Parked { wake } => {
                        // The wait for the key manager is not the filter's own time.
                        let spent_us = answering.spent(host.now_us());
                        self.introspecting.insert(
                            stream,
                            Answering {
                                spent_us,
                                ..answering
                            },
                        );
                        if wake && !self.wakeup_asked {
                            self.wakeup_asked = host.wake_root();
                        }
                        RequestAction::Pause
                    }
                }
            }
            other => self.apply(host, stream, &other, &answering),
        };
        verdict
    }

    /// The stream is gone (finished or reset by the client): forget it if it was parked.
    pub fn on_done(&mut self, stream: StreamId) {
        self.parked.remove(&stream);
        self.budgets.remove(&stream);
        self.introspector.done(stream);
        self.introspecting.remove(&stream);
    }

    /// The upstream's response headers of `stream` arrived: an allowed request with a tier tells
    /// the client what is left of its budget.
    pub fn on_response(&mut self, host: &mut impl Host, stream: StreamId) {
        if let Some(headers) = self.budgets.remove(&stream) {
            for (name, value) in &headers {
                host.add_response_header(stream, name, value);
            }
        }
    }

    /// Answers or resumes requests whose introspection answer arrived.
    fn settle(&mut self, host: &mut impl Host, ready: Vec<(StreamId, Settled)>) {
        for (stream, settled) in ready {
            let now_us = host.now_us();
            let mut answering = match self.introspecting.remove(&stream) {
                Some(waited) => Answering {
                    since_us: now_us,
                    ..waited
                },
                None => Answering::new(now_us),
            };
            answering.key_manager = settled.key_manager;
            if self.apply(host, stream, &settled.outcome, &answering) == RequestAction::Continue {
                host.resume(stream);
            }
        }
    }

    /// A callout answered (`body_size` as the host reports it). Unknown tokens are ignored.
    pub fn on_fetch_answer(&mut self, host: &mut impl Host, token: u32, body_size: usize) {
        let now_ms = host.now_ms();
        if let Some(ready) =
            self.introspector
                .answered(&self.policy, host, token, body_size, now_ms)
        {
            self.settle(host, ready);
            return;
        }
        if let Some(directory) = self.directory.as_mut().filter(|d| d.owns(token)) {
            let headers = host.fetch_headers();
            let changed = directory.answered(host, &self.policy, now_ms, &headers, body_size);
            if changed {
                self.verified.forget_authorizations();
                self.key_grants.clear();
            }
            return;
        }
        let Some(km) = self.callouts.remove(&token) else {
            return;
        };
        let headers = host.fetch_headers();
        let body = (body_size <= self.policy.settings().jwks_max_bytes)
            .then(|| host.fetch_body(body_size));
        let answered = self
            .stores
            .get_mut(km.index())
            .map(|store| store.fetch_answered(host, now_ms, &headers, body.as_deref(), body_size));
        let outcome = match answered {
            Some(Answered::Keys) => "ok",
            Some(Answered::Failed(error)) => error.code(),
            None => FetchError::DispatchFailed.code(),
        };
        self.labels.count_fetch(host, km, outcome);
        self.wake(host, km, now_ms);
    }

    /// The root callback asked for with [`Host::wake_root`]: dispatch the wanted fetches.
    pub fn on_wakeup(&mut self, host: &mut impl Host) {
        self.wakeup_asked = false;
        let now_ms = host.now_ms();
        self.dispatch_wanted(host, now_ms);
        let ready = self
            .introspector
            .dispatch_wanted(&self.policy, host, now_ms);
        self.settle(host, ready);
    }

    /// Timer: start due refreshes (and wanted fetches a lost wake-up left), adopt other workers'
    /// keys, answer parked requests that waited too long.
    pub fn on_tick(&mut self, host: &mut impl Host) {
        let now_ms = host.now_ms();
        if let Some(directory) = self.directory.as_mut() {
            if directory.tick(host, now_ms) {
                self.verified.forget_authorizations();
                self.key_grants.clear();
            }
        }
        self.dispatch_wanted(host, now_ms);
        let ids: Vec<KeyManagerId> = self.policy.key_manager_ids().collect();
        for km in ids {
            let due = self
                .stores
                .get_mut(km.index())
                .is_some_and(|store| store.refresh_due(host, now_ms));
            if due {
                let _ = self.start_fetch(host, km, now_ms);
            }
            self.wake(host, km, now_ms);
        }
        self.expire(host, now_ms);
        let ready = self.introspector.tick(&self.policy, host, now_ms);
        self.settle(host, ready);
    }

    /// The decision's second phase with the key manager's current keys.
    fn finish(
        &mut self,
        host: &impl Host,
        pending: Box<Pending>,
        km: KeyManagerId,
        now_ms: u64,
        after_refetch: bool,
    ) -> Outcome {
        let keys = self
            .stores
            .get_mut(km.index())
            .and_then(|store| Some((store.keys(now_ms)?, store.generation())));
        let keys = keys.as_ref().map(|(set, generation)| SigningKeys {
            set,
            generation: *generation,
            crypto: Some(host as &dyn HostCrypto),
        });
        with_dpop(host, self.seed, |dpop| {
            decision::finish(
                &self.policy,
                pending,
                keys,
                seconds(now_ms),
                after_refetch,
                &mut self.verified,
                dpop,
            )
        })
    }

    /// Dispatches every wanted fetch (root callbacks only). A refused dispatch answers the
    /// requests waiting for it at once.
    fn dispatch_wanted(&mut self, host: &mut impl Host, now_ms: u64) {
        while let Some(km) = self.wanted.pop_first() {
            if !self.start_fetch(host, km, now_ms) {
                self.wake(host, km, now_ms);
            }
        }
    }

    /// Dispatches a fetch this worker took the lease for (root callbacks only); false when the
    /// host refused it (the failure is recorded, so the lease is released and a retry scheduled).
    fn start_fetch(&mut self, host: &mut impl Host, km: KeyManagerId, now_ms: u64) -> bool {
        let (Some(store), Some(manager)) =
            (self.stores.get_mut(km.index()), self.policy.key_manager(km))
        else {
            return false;
        };
        let fetch = Fetch {
            cluster: &manager.jwks.cluster,
            authority: &manager.jwks.authority,
            path: &manager.jwks.path,
            timeout_ms: store.fetch_timeout_ms(),
            post: None,
            headers: &[],
        };
        match host.dispatch(&fetch) {
            Some(token) => {
                self.callouts.insert(token, km);
                true
            }
            None => {
                store.fetch_failed(host, now_ms, FetchError::DispatchFailed);
                self.labels
                    .count_fetch(host, km, FetchError::DispatchFailed.code());
                false
            }
        }
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The value of a header that must appear at most once (names compared ASCII case-insensitively).
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
