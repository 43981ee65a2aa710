//! One request through the decision steps (ARCHITECTURE.md §3) as a function of its inputs.
//!
//! [`start`] settles what needs neither keys nor token parsing: the route and the bearer token.
//! [`recall`] then answers from the verified-token cache by the raw token string, with no base64
//! or JSON work (nor the token68 check of its characters, which [`parse`] makes: every cached
//! token passed it), when this worker has already verified (or refused) exactly that token under the
//! key manager's current key set. Otherwise [`parse`] reads the token and finds its key manager
//! by issuer, and [`finish`] completes the check once the key manager's keys are at hand. Between
//! the two the worker may park the request while it fetches a JWKS; `finish` may be called again
//! after a refetch, with `after_refetch` set so an unknown `kid` becomes a final answer.
//! [`decide`] runs every step at once for callers that hold every key set (tests, the CLI).
//!
//! Once a token is genuine, from the cache or freshly verified, its bindings are checked against
//! how it was presented: the client certificate (`cert_binding`, RFC 8705), then DPoP
//! (`dpop_binding`); an opaque token is judged by introspection instead (`opaque`). The files, in
//! request order: `credentials` (reading `Authorization` and `DPoP`), this file (request, outcome,
//! the phases), `verified_tokens` (the per-worker cache), `cert_binding`, `dpop_binding`,
//! `opaque`, `identity` (what goes upstream), `backend_jwt` (the gateway-signed JWT kept with an
//! authorization), `denial` (why not) and `reply` (the one mapping of a denial to status, headers
//! and body).

mod api_key;
mod backend_jwt;
mod cert_binding;
mod credentials;
mod denial;
mod dpop_binding;
mod identity;
mod opaque;
mod reply;
mod verified_tokens;

pub use api_key::{
    api_key_headers, decide_api_key, decide_api_key_with, path_without_api_key, ApiKeyDenial,
    KeyGrants,
};
pub use backend_jwt::{backend_jwt, BackendJwt, BackendSigner};
pub use cert_binding::{client_cert, CertDigest, CertError, ClientCert, XFCC};
pub use credentials::{
    authorization, bearer_token, credentials, dpop_proofs, AuthScheme, AuthorizationProblem,
};
pub use denial::{Challenge, Denial, TokenRefusal};
pub use dpop_binding::{record_proof, DpopHost};
pub use identity::{identity_header_names, is_identity_header, Credential, Identity};
pub use opaque::{inactive, introspected, Opaque};
pub use reply::{reply, Reply};
pub use verified_tokens::VerifiedTokens;

use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::dpop::{MemorySlots, ProofUse};
use crate::jose::claims::{check_time, times, Validation};
use crate::jose::{verify_in_place, HostCrypto, KeySet, TokenError, UntrustedToken};
use crate::policy::{ApiId, IssuerRefusal, KeyManagerId, Policy, Route, RouteMatch};
use verified_tokens::Verification;

use cert_binding::check_cert;
use dpop_binding::{admit_proof, check_dpop, dpop_denial, refuse, Presentation, Presented};
use opaque::opaque;

/// What the shell reads from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// What a DPoP proof is checked against.
    pub dpop: DpopRequest<'a>,
    /// Every request header as the host lists them (an API that accepts API keys reads its key
    /// header here); empty where no header but the ones above matters.
    pub headers: &'a [(String, String)],
}

/// The DPoP proofs of a request. The URI a proof's `htu` must name is the API's configured
/// origin with the request's `:path` ([`crate::policy::Policy::dpop_origins`]): the client's
/// `:authority` and `:scheme` play no part.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value (exactly one is valid, RFC 9449 §4.3 check 1).
    pub proofs: &'a [&'a str],
}

/// The final answer for a request, or what the shell must get before answering.
#[derive(Debug)]
pub enum Outcome {
    /// No API matched and the gateway is configured to pass such requests on untouched.
    Pass,
    /// A public resource: forward without identity.
    Public,
    /// Forward with this identity (and its headers, built once). A request with a DPoP proof
    /// carries what recording its `jti` takes: the worker records it ([`record_proof`]) after
    /// spending the tier, so refused requests never take room in the replay store.
    Allow {
        allowed: Rc<Allowed>,
        proof: Option<ProofUse>,
    },
    /// Answer with this denial.
    Deny(Denial),
    /// Keys of key manager `key_manager` are needed: none are usable yet (`unknown_kid` false) or the
    /// token names a `kid` the cached set lacks (`unknown_kid` true).
    NeedKeys {
        pending: Box<Pending>,
        unknown_kid: bool,
    },
    /// An opaque token (not a compact JWS) that only the key managers' introspection endpoints
    /// can judge; [`introspected`] finishes the decision with an active answer.
    NeedIntrospection(Box<Opaque>),
}

/// An authorized caller and the identity headers that go upstream (built once per token and
/// resource, then reused by verified-token cache hits).
#[derive(Debug, PartialEq, Eq)]
pub struct Allowed {
    pub identity: Identity,
    pub headers: Vec<(String, String)>,
    /// The backend JWT signed for this caller, kept with the cached authorization so a cache
    /// hit signs nothing ([`backend_jwt`]).
    pub backend: BackendJwt,
}

/// A request whose token is well-formed and whose key manager is known, waiting for keys.
#[derive(Debug)]
pub struct Pending {
    route: RouteMatch,
    token: UntrustedToken,
    key_manager: KeyManagerId,
    validation: Arc<Validation>,
    presentation: Presentation,
    /// The request's client certificate (RFC 8705), checked against a bound token.
    client_cert: Option<CertDigest>,
    /// Look the token up in the verified-token cache before verifying: false on the first pass
    /// (the caller's [`recall`] just missed), true once the request waited (another request may
    /// have verified the same token meanwhile).
    recheck_cache: bool,
}

impl Pending {
    /// Index of the key manager whose keys are needed.
    pub fn key_manager(&self) -> KeyManagerId {
        self.key_manager
    }

    /// Index of the API the request is for.
    pub fn api(&self) -> ApiId {
        self.route.api
    }

    /// The token came with the DPoP scheme.
    pub fn is_dpop(&self) -> bool {
        matches!(self.presentation, Presentation::Dpop(_))
    }

    /// The token as this request presented it, for the binding checks and the cache.
    fn presented(&self) -> Presented<'_> {
        Presented {
            route: self.route,
            token: self.token.as_str(),
            presentation: &self.presentation,
            client_cert: ClientCert::Known(self.client_cert),
        }
    }
}

/// A request whose route needs a token, with the token it carries.
#[derive(Debug, Clone, Copy)]
pub struct Started<'r> {
    route: RouteMatch,
    /// The token, or the API key when `api_key` is set.
    token: &'r str,
    scheme: AuthScheme,
    request: Request<'r>,
    api_key: bool,
    client_cert: ClientCert<'r>,
}

impl<'r> Started<'r> {
    /// The request presents an API key ([`decide_api_key`] decides it), not a token.
    pub fn is_api_key(&self) -> bool {
        self.api_key
    }

    /// The client certificate the request came with (the shell reads it only for requests that
    /// carry a token): a certificate-bound token must match it.
    pub fn with_client_cert(self, client_cert: Option<CertDigest>) -> Self {
        self.with_client_cert_from(ClientCert::Known(client_cert))
    }

    /// [`Self::with_client_cert`], read only if the decision needs it (a certificate-bound token).
    pub fn with_client_cert_from(self, client_cert: ClientCert<'r>) -> Self {
        Started {
            client_cert,
            ..self
        }
    }

    /// The scheme the token came with.
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    fn presentation(&self) -> Presentation {
        Presentation::of(self.scheme, &self.request)
    }
}

/// What [`start`] settled: the API the route matched (for metrics, whatever comes next) and
/// either a request that needs its token checked or the final outcome.
#[derive(Debug)]
pub struct Start<'r> {
    pub api: Option<ApiId>,
    pub next: Result<Started<'r>, Outcome>,
}

/// First phase: the route, then the bearer token (nothing is parsed yet).
pub fn start<'r>(policy: &Policy, request: &Request<'r>) -> Start<'r> {
    let route = policy.route(request.method, request.path);
    let api = route.api();
    let route = match route {
        Route::Protected(route) => route,
        Route::Public(_) => {
            return Start {
                api,
                next: Err(Outcome::Public),
            }
        }
        Route::PassThrough => {
            return Start {
                api,
                next: Err(Outcome::Pass),
            }
        }
        Route::Denied(refusal) => {
            return Start {
                api,
                next: Err(Outcome::Deny(refusal.into())),
            }
        }
    };
    let next = match api_key::select(policy, &route, request) {
        Err(denial) => Err(Outcome::Deny(denial)),
        Ok(Some(key)) => Ok(Started {
            route,
            token: key,
            scheme: AuthScheme::Bearer,
            request: *request,
            api_key: true,
            client_cert: ClientCert::Known(None),
        }),
        Ok(None) => credentials::presented(request.authorization)
            .map_err(Outcome::Deny)
            .map(|(scheme, token)| Started {
                route,
                token,
                scheme,
                request: *request,
                api_key: false,
                client_cert: ClientCert::Known(None),
            }),
    };
    Start { api, next }
}

/// The answer for a token this worker has verified or refused before, if the key manager that
/// did it still serves the same key set: `generation(km)` is that key manager's current key set
/// generation, or `None` when it has no usable keys (then nothing is recalled). Only the times and
/// the authorization are checked again. With the answer comes the index of the key manager that
/// verified the token.
pub fn recall(
    policy: &Policy,
    started: &Started<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(KeyManagerId) -> Option<u64>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Option<(KeyManagerId, Outcome)> {
    let presented = Presented {
        route: started.route,
        token: started.token,
        presentation: &started.presentation(),
        client_cert: started.client_cert,
    };
    recall_presented(policy, &presented, cache, generation, now, dpop)
}

fn recall_presented(
    policy: &Policy,
    started: &Presented<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(KeyManagerId) -> Option<u64>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Option<(KeyManagerId, Outcome)> {
    let hit = cache.get_mut(started.token)?;
    let key_manager = hit.key_manager;
    if generation(hit.key_manager) != Some(hit.generation) {
        return None;
    }
    // Verified for another API, by a key manager this one does not accept.
    if !policy.accepts(&started.route, key_manager) {
        let refusal = TokenRefusal::Issuer(IssuerRefusal::NotEnabled);
        return Some((key_manager, refuse(policy, started.presentation, refusal)));
    }
    let outcome = match hit.verdict {
        Verification::Valid {
            claims,
            exp,
            nbf,
            allowed,
        } => {
            let manager = policy.key_manager(hit.key_manager)?;
            if let Err(err) = check_time(*exp, *nbf, manager.time_validation(), now) {
                return Some((
                    key_manager,
                    refuse(policy, started.presentation, TokenRefusal::Token(err)),
                ));
            }
            // Per request: a remembered token never stands in for its proof or certificate.
            if let Err(err) = check_cert(policy, &started.route, claims, started.client_cert) {
                let refusal = TokenRefusal::Certificate(err);
                return Some((key_manager, refuse(policy, started.presentation, refusal)));
            }
            let proven = match check_dpop(policy, started, hit.key_manager, claims, now, dpop) {
                Ok(proven) => proven,
                Err(err) => return Some((key_manager, dpop_denial(policy, err))),
            };
            // The authorization of a verified token for one resource never changes within a
            // policy: the last one is remembered.
            let outcome = match allowed {
                Some((route, allowed)) if *route == started.route => Outcome::Allow {
                    allowed: Rc::clone(allowed),
                    proof: None,
                },
                _ => {
                    let route = &started.route;
                    let outcome = authorized(policy, route, hit.key_manager, claims, now, dpop);
                    if let Outcome::Allow { allowed: fresh, .. } = &outcome {
                        *allowed = Some((started.route, Rc::clone(fresh)));
                    }
                    outcome
                }
            };
            admit_proof(policy, outcome, proven, now, dpop)
        }
        Verification::Invalid(refusal) => refuse(policy, started.presentation, refusal.clone()),
    };
    Some((key_manager, outcome))
}

/// Second phase without keys: the token's syntax and its key manager (by issuer). A bearer token
/// that is not a compact JWS goes to introspection when a key manager trusted here has it.
pub fn parse(policy: &Policy, started: Started<'_>) -> Result<Pending, Outcome> {
    // Deferred from `start` ([`credentials::presented`]): no cached token needs it.
    credentials::token68(started.token).map_err(Outcome::Deny)?;
    let presentation = started.presentation();
    let token = UntrustedToken::parse(started.token).map_err(|err| {
        opaque(policy, &started)
            .unwrap_or_else(|| refuse(policy, &presentation, TokenRefusal::Token(err)))
    })?;
    let found = policy
        .key_manager_for(token.issuer(), token.claims())
        .map_err(|issuer| refuse(policy, &presentation, TokenRefusal::Issuer(issuer)))?;
    let key_manager = found.id;
    // The API accepts tokens of some key managers only (`apis[].key_managers`).
    if !policy.accepts(&started.route, key_manager) {
        let refusal = TokenRefusal::Issuer(IssuerRefusal::NotEnabled);
        return Err(refuse(policy, &presentation, refusal));
    }
    let manager =
        policy
            .key_manager(key_manager)
            .ok_or(Outcome::Deny(Denial::KeyManagerUnavailable {
                retry_after: 1,
            }))?;
    let validation = manager.validation(found.issuer);
    // Only a token whose `cnf` names a certificate makes `check_cert` read the request's (the
    // claims verified later are these same claims), so an unbound one never asks the host.
    let bound = token
        .claims()
        .get("cnf")
        .and_then(|cnf| cnf.get("x5t#S256"));
    let client_cert = bound.and_then(|_| started.client_cert.get());
    Ok(Pending {
        route: started.route,
        token,
        key_manager,
        validation,
        presentation,
        client_cert,
        recheck_cache: false,
    })
}

/// A key manager's key set and its generation (changes whenever another set is adopted), and
/// the host that can check RS*/ES* signatures natively, if any.
#[derive(Clone, Copy)]
pub struct SigningKeys<'a> {
    pub set: &'a KeySet,
    pub generation: u64,
    pub crypto: Option<&'a dyn HostCrypto>,
}

impl<'a> SigningKeys<'a> {
    /// Keys checked entirely in Wasm (no host crypto).
    pub fn new(set: &'a KeySet, generation: u64) -> Self {
        SigningKeys {
            set,
            generation,
            crypto: None,
        }
    }
}

/// Last phase: signature and claims with the key manager's keys, then the application checks.
/// The verdict is remembered in `cache` under the key set's generation (refusals too, unless they
/// depend on the clock), so [`recall`] answers the same token next time without verifying.
pub fn finish(
    policy: &Policy,
    mut pending: Box<Pending>,
    keys: Option<SigningKeys<'_>>,
    now: f64,
    after_refetch: bool,
    cache: &mut VerifiedTokens,
    dpop: DpopHost<'_>,
) -> Outcome {
    let Some(keys) = keys else {
        pending.recheck_cache = true;
        return Outcome::NeedKeys {
            pending,
            unknown_kid: false,
        };
    };
    let km = pending.key_manager;
    let presented = pending.presented();
    if pending.recheck_cache {
        let generation = |_| Some(keys.generation);
        if let Some((_, outcome)) =
            recall_presented(policy, &presented, cache, generation, now, dpop)
        {
            return outcome;
        }
    }
    match verify_in_place(
        &pending.token,
        keys.set,
        &pending.validation,
        now,
        keys.crypto,
    ) {
        Ok(_) => {
            let claims = pending.token.take_claims();
            let presented = pending.presented();
            let cert = check_cert(
                policy,
                &pending.route,
                &claims,
                ClientCert::Known(pending.client_cert),
            );
            let bound = cert.map(|()| check_dpop(policy, &presented, km, &claims, now, dpop));
            let (outcome, proven) = match bound {
                Ok(Ok(proven)) => (
                    authorized(policy, &pending.route, km, &claims, now, dpop),
                    proven,
                ),
                Ok(Err(err)) => (dpop_denial(policy, err), None),
                Err(err) => {
                    let refusal = TokenRefusal::Certificate(err);
                    (refuse(policy, &pending.presentation, refusal), None)
                }
            };
            let (exp, nbf) = times(&claims);
            let allowed = match &outcome {
                Outcome::Allow { allowed, .. } => Some((pending.route, Rc::clone(allowed))),
                _ => None,
            };
            let verdict = Verification::Valid {
                claims,
                exp,
                nbf,
                allowed,
            };
            cache.insert(pending.token.as_str(), km, keys.generation, verdict);
            admit_proof(policy, outcome, proven, now, dpop)
        }
        Err(TokenError::UnknownKid { .. }) if !after_refetch => {
            pending.recheck_cache = true;
            Outcome::NeedKeys {
                pending,
                unknown_kid: true,
            }
        }
        Err(err) => {
            let refusal = TokenRefusal::Token(err);
            if !matches!(
                refusal,
                TokenRefusal::Token(TokenError::Expired | TokenError::NotYetValid)
            ) {
                let verdict = Verification::Invalid(refusal.clone());
                cache.insert(pending.token.as_str(), km, keys.generation, verdict);
            }
            refuse(policy, &pending.presentation, refusal)
        }
    }
}

/// Steps 6-7: the application (inline, or looked up in the directory in shared data), then the
/// subscription, scopes and groups.
pub(super) fn authorized(
    policy: &Policy,
    route: &RouteMatch,
    key_manager: KeyManagerId,
    claims: &Map<String, Value>,
    now: f64,
    host: DpopHost<'_>,
) -> Outcome {
    let access = match policy.directory() {
        None => policy.authorize(route, key_manager, claims),
        Some(_) => {
            let lookup = crate::directory::SharedLookup {
                policy,
                slots: host.slots,
                now_ms: (now * 1000.0) as u64,
            };
            policy.authorize_with(route, key_manager, claims, &lookup)
        }
    };
    match access {
        Ok(access) => {
            let identity = Identity::new(access);
            let headers = identity.headers(&policy.settings().header_prefix);
            let backend = BackendJwt::new(claims);
            Outcome::Allow {
                allowed: Rc::new(Allowed {
                    identity,
                    headers,
                    backend,
                }),
                proof: None,
            }
        }
        Err(refusal) => Outcome::Deny(refusal.into()),
    }
}

/// Every phase at once, for callers that already hold every key set (tests, the CLI).
pub fn decide<'k>(
    policy: &Policy,
    request: &Request<'_>,
    keys: impl Fn(KeyManagerId) -> Option<&'k KeySet>,
    now: f64,
) -> Outcome {
    decide_with_cert(policy, request, None, keys, now)
}

/// [`decide`] for a request that came with a client certificate (its SHA-256 digest), which a
/// certificate-bound token must match (RFC 8705; `keygate explain --client-cert`).
pub fn decide_with_cert<'k>(
    policy: &Policy,
    request: &Request<'_>,
    client_cert: Option<CertDigest>,
    keys: impl Fn(KeyManagerId) -> Option<&'k KeySet>,
    now: f64,
) -> Outcome {
    let started = match start(policy, request).next {
        Ok(started) if started.is_api_key() => return decide_api_key(policy, &started, now),
        Ok(started) => started.with_client_cert(client_cert),
        Err(outcome) => return outcome,
    };
    match parse(policy, started) {
        Ok(pending) => {
            let set = keys(pending.key_manager).map(|set| SigningKeys::new(set, 0));
            let mut no_cache = VerifiedTokens::disabled();
            let slots = MemorySlots::default();
            let dpop = DpopHost {
                crypto: None,
                slots: &slots,
            };
            finish(
                policy,
                Box::new(pending),
                set,
                now,
                true,
                &mut no_cache,
                dpop,
            )
        }
        Err(outcome) => outcome,
    }
}
