//! One request through the decision steps (ARCHITECTURE.md §3) as a function of its inputs.
//!
//! [`start`] settles what needs neither keys nor token parsing: the route and the bearer token.
//! [`recall`] then answers from the verified-token cache by the raw token string, with no base64
//! or JSON work, when this worker has already verified (or refused) exactly that token under the
//! key manager's current key set. Otherwise [`parse`] reads the token and finds its key manager
//! by issuer, and [`finish`] completes the check once the key manager's keys are at hand. Between
//! the two the worker may park the request while it fetches a JWKS; `finish` may be called again
//! after a refetch, with `after_refetch` set so an unknown `kid` becomes a final answer.
//! [`decide`] runs every step at once for callers that hold every key set (tests, the CLI).
//!
//! DPoP (RFC 9449): once a token is genuine, from the cache or freshly verified, `check_dpop`
//! matches it with how it was presented: a token bound to a key (`cnf.jkt`) needs the `DPoP`
//! scheme and a valid proof of that key on every request (a cache hit skips the token's
//! signature, never the proof, which is per request), and a plain token is refused where DPoP
//! is required. The proof's `jti` is recorded last, in the shared replay store, so only proofs
//! that pass every other check take room in it.

pub mod denial;
pub mod identity;
pub mod verified_tokens;

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::decision::denial::{credentials, Denial, Scheme};
use crate::decision::identity::Identity;
use crate::decision::verified_tokens::{Verdict, VerifiedTokens};
use crate::dpop::{
    request_uri, verify_proof, DpopError, MemorySlots, ProofRules, ProofTarget, ReplayStore, Slots,
};
use crate::introspection::{is_opaque, TokenHash};
use crate::jose::claims::{check, check_time, times, Validation};
use crate::jose::{verify_with, HostCrypto, KeySet, TokenError, UntrustedToken};
use crate::policy::{Policy, Route, RouteMatch};

/// What the shell reads from the request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// What a DPoP proof is checked against.
    pub dpop: DpopRequest<'a>,
}

/// The parts of a request a DPoP proof must describe.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value (exactly one is valid, RFC 9449 §4.3 check 1).
    pub proofs: &'a [&'a str],
    /// `:scheme` and `:authority`, which with `:path` make the URI `htu` must name.
    pub scheme: &'a str,
    pub authority: &'a str,
}

/// What DPoP checks need from the host: signature checks (`None`: in Wasm) and the shared data
/// that holds the replay store.
#[derive(Clone, Copy)]
pub struct DpopHost<'a> {
    pub crypto: Option<&'a dyn HostCrypto>,
    pub slots: &'a dyn Slots,
}

/// How the token was presented: its scheme and, for DPoP, the proof and the request it is for.
#[derive(Debug, Clone, PartialEq)]
enum Presentation {
    Bearer,
    Dpop(Box<ProofInput>),
}

#[derive(Debug, Clone, PartialEq)]
struct ProofInput {
    /// The one proof, or why there is not exactly one.
    proof: Result<String, DpopError>,
    method: String,
    uri: Option<String>,
}

/// The final answer for a request, or what the shell must get before answering.
#[derive(Debug)]
pub enum Outcome {
    /// No API matched and the gateway is configured to pass such requests on untouched.
    Pass,
    /// A public resource: forward without identity.
    Public,
    /// Forward with this identity (and its headers, built once).
    Allow(Rc<Allowed>),
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

/// A request with an opaque token, waiting for an introspection answer.
#[derive(Debug, Clone)]
pub struct Opaque {
    pub route: RouteMatch,
    /// The token, needed for the call only (the cache knows it by [`TokenHash`]).
    pub token: String,
    pub hash: TokenHash,
    /// The scheme it came with and, for DPoP, the proof (checked per request once the answer is in).
    presentation: Presentation,
}

/// An authorized caller and the identity headers that go upstream (built once per token and
/// resource, then reused by verified-token cache hits).
#[derive(Debug, PartialEq, Eq)]
pub struct Allowed {
    pub identity: Identity,
    pub headers: Vec<(String, String)>,
}

/// A request whose token is well-formed and whose key manager is known, waiting for keys.
#[derive(Debug)]
pub struct Pending {
    route: RouteMatch,
    token: UntrustedToken,
    key_manager: usize,
    validation: Validation,
    presentation: Presentation,
}

impl Pending {
    /// Index of the key manager whose keys are needed.
    pub fn key_manager(&self) -> usize {
        self.key_manager
    }

    /// Index of the API the request is for.
    pub fn api(&self) -> usize {
        self.route.api
    }

    /// The token came with the DPoP scheme.
    pub fn is_dpop(&self) -> bool {
        matches!(self.presentation, Presentation::Dpop(_))
    }
}

/// A request whose route needs a token, with the token it carries.
#[derive(Debug, Clone, Copy)]
pub struct Started<'r> {
    route: RouteMatch,
    token: &'r str,
    scheme: Scheme,
    request: Request<'r>,
}

impl Started<'_> {
    /// The scheme the token came with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn presentation(&self) -> Presentation {
        match self.scheme {
            Scheme::Bearer => Presentation::Bearer,
            Scheme::Dpop => {
                let dpop = &self.request.dpop;
                let proof = match dpop.proofs {
                    [] => Err(DpopError::ProofMissing),
                    [one] => Ok((*one).to_string()),
                    _ => Err(DpopError::ProofMultiple),
                };
                Presentation::Dpop(Box::new(ProofInput {
                    proof,
                    method: self.request.method.to_string(),
                    uri: request_uri(dpop.scheme, dpop.authority, self.request.path),
                }))
            }
        }
    }
}

/// First phase: the route, then the bearer token (nothing is parsed yet).
pub fn start<'r>(policy: &Policy, request: &Request<'r>) -> Result<Started<'r>, Outcome> {
    start_at(policy.route(request.method, request.path), request)
}

/// [`start`] for a route already found (the worker reads the API off it for its metrics).
pub fn start_at<'r>(route: Route, request: &Request<'r>) -> Result<Started<'r>, Outcome> {
    let route = match route {
        Route::Protected(route) => route,
        Route::Public(_) => return Err(Outcome::Public),
        Route::PassThrough => return Err(Outcome::Pass),
        Route::Denied(denial) => return Err(Outcome::Deny(denial)),
    };
    let (scheme, token) = credentials(request.authorization).map_err(Outcome::Deny)?;
    Ok(Started {
        route,
        token,
        scheme,
        request: *request,
    })
}

/// The answer for a token this worker has verified or refused before, if the key manager that
/// did it still serves the same key set: `generation(km)` is that key manager's current key set
/// generation, or `None` when it has no usable keys (then nothing is recalled). Only the times and
/// the authorization are checked again.
pub fn recall(
    policy: &Policy,
    started: &Started<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(usize) -> Option<u64>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Option<Outcome> {
    recall_with_key_manager(policy, started, cache, generation, now, dpop)
        .map(|(_, outcome)| outcome)
}

/// [`recall`], with the index of the key manager that verified the token.
pub fn recall_with_key_manager(
    policy: &Policy,
    started: &Started<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(usize) -> Option<u64>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Option<(usize, Outcome)> {
    let presented = Presented {
        route: started.route,
        token: started.token,
        presentation: &started.presentation(),
    };
    recall_presented(policy, &presented, cache, generation, now, dpop)
}

/// A token and how it came, borrowed from a [`Started`] or a [`Pending`].
struct Presented<'p> {
    route: RouteMatch,
    token: &'p str,
    presentation: &'p Presentation,
}

fn recall_presented(
    policy: &Policy,
    started: &Presented<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(usize) -> Option<u64>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Option<(usize, Outcome)> {
    let hit = cache.get_mut(started.token)?;
    let key_manager = hit.key_manager;
    if generation(hit.key_manager) != Some(hit.generation) {
        return None;
    }
    let outcome = match hit.verdict {
        Verdict::Valid {
            claims,
            exp,
            nbf,
            allowed,
        } => {
            let manager = policy.key_managers().get(hit.key_manager)?;
            if let Err(err) = check_time(*exp, *nbf, manager.time_validation(), now) {
                return Some((
                    key_manager,
                    refuse(policy, started.presentation, invalid(&err)),
                ));
            }
            // Per request: a remembered token never stands in for its proof.
            if let Err(err) = check_dpop(policy, started, hit.key_manager, claims, now, dpop) {
                return Some((key_manager, dpop_denial(policy, err)));
            }
            // The authorization of a verified token for one resource never changes within a
            // policy: the last one is remembered.
            match allowed {
                Some((route, allowed)) if *route == started.route => {
                    Outcome::Allow(Rc::clone(allowed))
                }
                _ => {
                    let outcome = authorized(policy, &started.route, hit.key_manager, claims);
                    if let Outcome::Allow(fresh) = &outcome {
                        *allowed = Some((started.route, Rc::clone(fresh)));
                    }
                    outcome
                }
            }
        }
        Verdict::Invalid { code, description } => refuse(
            policy,
            started.presentation,
            Denial::InvalidToken {
                code,
                description: description.clone(),
            },
        ),
    };
    Some((key_manager, outcome))
}

/// Second phase without keys: the token's syntax and its key manager (by issuer). A bearer token
/// that is not a compact JWS goes to introspection when a key manager trusted here has it.
pub fn parse(policy: &Policy, started: Started<'_>) -> Result<Pending, Outcome> {
    let presentation = started.presentation();
    let token = UntrustedToken::parse(started.token).map_err(|err| {
        opaque(policy, &started).unwrap_or_else(|| refuse(policy, &presentation, invalid(&err)))
    })?;
    let found = policy
        .key_manager_for(token.issuer(), token.claims())
        .map_err(|denial| refuse(policy, &presentation, denial))?;
    let key_manager = found.index;
    let manager = policy.key_managers().get(key_manager).ok_or(Outcome::Deny(
        Denial::KeyManagerUnavailable { retry_after: 1 },
    ))?;
    let validation = manager.validation(found.issuer);
    Ok(Pending {
        route: started.route,
        token,
        key_manager,
        validation,
        presentation,
    })
}

fn opaque(policy: &Policy, started: &Started<'_>) -> Option<Outcome> {
    if !is_opaque(started.token) {
        return None;
    }
    policy.introspection_order().next()?;
    Some(Outcome::NeedIntrospection(Box::new(Opaque {
        route: started.route,
        token: started.token.to_string(),
        hash: TokenHash::of(started.token),
        presentation: started.presentation(),
    })))
}

/// The decision for an opaque token that key manager `key_manager` reported active, with the
/// members of its answer as claims: the issuer (when the answer names one) must be that key
/// manager's, the times and the audience pass the same checks as a JWT's (`exp` is optional, as
/// in RFC 7662), the binding fits the scheme (a `cnf.jkt` answer, RFC 9449 section 6.2, needs the
/// DPoP scheme and a valid proof for that key, as a JWT's `cnf.jkt` does; any other binding is
/// refused), and then the same authorization applies.
pub fn introspected(
    policy: &Policy,
    opaque: &Opaque,
    key_manager: usize,
    claims: &Map<String, Value>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Outcome {
    let Some(manager) = policy.key_managers().get(key_manager) else {
        return Outcome::Deny(Denial::IntrospectionUnavailable { retry_after: 1 });
    };
    let presentation = &opaque.presentation;
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if manager.issues(iss, claims) => {}
        Some(_) => {
            let err = TokenError::IssuerMismatch { missing: false };
            return refuse(policy, presentation, invalid(&err));
        }
    }
    // Bound to a key some other way (RFC 7800 `cnf` without `jkt`, e.g. a certificate), or a
    // token type keygate cannot check: not usable here.
    let token_type = claims
        .get("token_type")
        .map(|t| t.as_str().unwrap_or_default());
    let jkt = claims.get("cnf").map(|cnf| cnf.get("jkt").is_some());
    let usable = match (token_type, jkt) {
        // Bound, but not to a DPoP key.
        (_, Some(false)) => false,
        (None, _) => true,
        (Some(t), jkt) if t.eq_ignore_ascii_case("bearer") => jkt.is_none(),
        (Some(t), jkt) if t.eq_ignore_ascii_case("dpop") => jkt == Some(true),
        (Some(_), _) => false,
    };
    if !usable {
        return refuse(
            policy,
            presentation,
            Denial::InvalidToken {
                code: "token_not_bearer",
                description: "the key manager reports a token bound to a key keygate cannot check"
                    .to_string(),
            },
        );
    }
    let validation = Validation {
        issuer: None,
        require_exp: false,
        ..manager.time_validation().clone()
    };
    if let Err(err) = check(claims, &validation, now) {
        return refuse(policy, presentation, invalid(&err));
    }
    // Per request, like a JWT's binding: the scheme, the proof and its single use.
    let presented = Presented {
        route: opaque.route,
        token: &opaque.token,
        presentation,
    };
    if let Err(err) = check_dpop(policy, &presented, key_manager, claims, now, dpop) {
        return dpop_denial(policy, err);
    }
    authorized(policy, &opaque.route, key_manager, claims)
}

/// The answer for an opaque token no key manager reports active.
pub fn inactive() -> Denial {
    Denial::InvalidToken {
        code: "token_inactive",
        description:
            "the key manager reports the token as not active (expired, revoked or unknown)"
                .to_string(),
    }
}

/// [`start`] then [`parse`]: everything that needs no keys.
pub fn begin(policy: &Policy, request: &Request<'_>) -> Result<Pending, Outcome> {
    parse(policy, start(policy, request)?)
}

/// A key manager's key set and its generation (changes whenever another set is adopted), and
/// the host that can check RS*/ES* signatures natively, if any.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub set: &'a KeySet,
    pub generation: u64,
    pub crypto: Option<&'a dyn HostCrypto>,
}

impl<'a> Keys<'a> {
    /// Keys checked entirely in Wasm (no host crypto).
    pub fn new(set: &'a KeySet, generation: u64) -> Self {
        Keys {
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
    pending: Box<Pending>,
    keys: Option<Keys<'_>>,
    now: f64,
    after_refetch: bool,
    cache: &mut VerifiedTokens,
    dpop: DpopHost<'_>,
) -> Outcome {
    let Some(keys) = keys else {
        return Outcome::NeedKeys {
            pending,
            unknown_kid: false,
        };
    };
    let km = pending.key_manager;
    let presented = Presented {
        route: pending.route,
        token: pending.token.as_str(),
        presentation: &pending.presentation,
    };
    let generation = |_| Some(keys.generation);
    if let Some((_, outcome)) = recall_presented(policy, &presented, cache, generation, now, dpop) {
        return outcome;
    }
    match verify_with(
        &pending.token,
        keys.set,
        &pending.validation,
        now,
        keys.crypto,
    ) {
        Ok(verified) => {
            let bound = check_dpop(policy, &presented, km, &verified.claims, now, dpop);
            let outcome = match bound {
                Ok(()) => authorized(policy, &pending.route, km, &verified.claims),
                Err(err) => dpop_denial(policy, err),
            };
            let (exp, nbf) = times(&verified.claims);
            let allowed = match &outcome {
                Outcome::Allow(allowed) => Some((pending.route, Rc::clone(allowed))),
                _ => None,
            };
            let verdict = Verdict::Valid {
                claims: verified.claims,
                exp,
                nbf,
                allowed,
            };
            cache.insert(pending.token.as_str(), km, keys.generation, verdict);
            outcome
        }
        Err(TokenError::UnknownKid { .. }) if !after_refetch => Outcome::NeedKeys {
            pending,
            unknown_kid: true,
        },
        Err(err) => {
            let denial = invalid(&err);
            if !matches!(err, TokenError::Expired | TokenError::NotYetValid) {
                if let Denial::InvalidToken { code, description } = &denial {
                    let verdict = Verdict::Invalid {
                        code,
                        description: description.clone(),
                    };
                    cache.insert(pending.token.as_str(), km, keys.generation, verdict);
                }
            }
            refuse(policy, &pending.presentation, denial)
        }
    }
}

/// RFC 9449 §7.1: how the token came must fit whether it is bound. A bound token (`cnf.jkt`)
/// needs the DPoP scheme and a proof that passes [`verify_proof`] with the key it is bound to,
/// whose `jti` is then recorded; a plain token needs the Bearer scheme, and is refused where the
/// key manager or the API requires DPoP.
fn check_dpop(
    policy: &Policy,
    presented: &Presented<'_>,
    km: usize,
    claims: &Map<String, Value>,
    now: f64,
    host: DpopHost<'_>,
) -> Result<(), DpopError> {
    let jkt = match claims.get("cnf").and_then(|cnf| cnf.get("jkt")) {
        None => None,
        Some(Value::String(jkt)) => Some(jkt.as_str()),
        Some(_) => return Err(DpopError::CnfInvalid),
    };
    let (input, jkt) = match (presented.presentation, jkt) {
        (Presentation::Bearer, Some(_)) => return Err(DpopError::BoundTokenAsBearer),
        (Presentation::Bearer, None) if policy.dpop_required(&presented.route, km) => {
            return Err(DpopError::Required)
        }
        (Presentation::Bearer, None) => return Ok(()),
        (Presentation::Dpop(_), None) => return Err(DpopError::TokenNotBound),
        (Presentation::Dpop(input), Some(jkt)) => (input, jkt),
    };
    let proof = input.proof.as_ref().map_err(Clone::clone)?;
    let settings = policy.settings();
    let rules = ProofRules {
        algorithms: policy.dpop_algorithms(),
        max_age_seconds: settings.dpop_max_age_seconds,
        future_skew_seconds: settings.dpop_future_skew_seconds,
    };
    let target = ProofTarget {
        method: &input.method,
        uri: input.uri.as_deref(),
        access_token: presented.token,
    };
    let verified = verify_proof(proof, &target, &rules, now, host.crypto)?;
    if verified.jkt != jkt {
        return Err(DpopError::KeyMismatch);
    }
    let store = ReplayStore {
        slots: settings.dpop_replay_slots,
        entries: settings.dpop_replay_slot_entries,
    };
    // Remembered while the proof's iat is acceptable (one second more for the rounding of `now`);
    // `iat` is within the window here, so the value is finite and positive.
    let until = (verified.iat + settings.dpop_max_age_seconds as f64).ceil() + 1.0;
    let now_s = now.max(0.0) as u64;
    store.first_use(
        host.slots,
        &verified.jkt,
        &verified.jti,
        until as u64,
        now_s,
    )
}

fn dpop_denial(policy: &Policy, error: DpopError) -> Outcome {
    Outcome::Deny(Denial::Dpop {
        error,
        algs: policy.dpop_algs().to_string(),
    })
}

/// A token refusal, under the DPoP challenge when the token came with the DPoP scheme.
fn refuse(policy: &Policy, presentation: &Presentation, denial: Denial) -> Outcome {
    match (presentation, denial) {
        (Presentation::Dpop(_), Denial::InvalidToken { code, description }) => {
            dpop_denial(policy, DpopError::TokenInvalid { code, description })
        }
        (_, denial) => Outcome::Deny(denial),
    }
}

fn authorized(
    policy: &Policy,
    route: &RouteMatch,
    key_manager: usize,
    claims: &Map<String, Value>,
) -> Outcome {
    match policy.authorize(route, key_manager, claims) {
        Ok(identity) => {
            let headers = identity.headers(&policy.settings().header_prefix);
            Outcome::Allow(Rc::new(Allowed { identity, headers }))
        }
        Err(denial) => Outcome::Deny(denial),
    }
}

/// Every phase at once, for callers that already hold every key set (tests, the CLI).
pub fn decide<'k>(
    policy: &Policy,
    request: &Request<'_>,
    keys: impl Fn(usize) -> Option<&'k KeySet>,
    now: f64,
) -> Outcome {
    match begin(policy, request) {
        Ok(pending) => {
            let set = keys(pending.key_manager).map(|set| Keys::new(set, 0));
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

fn invalid(err: &TokenError) -> Denial {
    Denial::InvalidToken {
        code: err.code(),
        description: err.to_string(),
    }
}
