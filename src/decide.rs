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

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::cache::{Verdict, VerifiedTokens};
use crate::claims::{check, check_time, times, Validation};
use crate::identity::Identity;
use crate::introspection::{is_opaque, TokenHash};
use crate::jose::{verify_with, HostCrypto, KeySet, TokenError, UntrustedToken};
use crate::policy::{Policy, Route, RouteMatch};
use crate::response::{bearer_token, Denial};

/// What the shell reads from the request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
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

/// A request with an opaque bearer token, waiting for an introspection answer.
#[derive(Debug)]
pub struct Opaque {
    pub route: RouteMatch,
    /// The token, needed for the call only (the cache knows it by [`TokenHash`]).
    pub token: String,
    pub hash: TokenHash,
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
}

/// A request whose route needs a token, with the bearer token it carries.
#[derive(Debug, Clone, Copy)]
pub struct Started<'r> {
    route: RouteMatch,
    token: &'r str,
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
    let token = bearer_token(request.authorization).map_err(Outcome::Deny)?;
    Ok(Started { route, token })
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
) -> Option<Outcome> {
    recall_with_key_manager(policy, started, cache, generation, now).map(|(_, outcome)| outcome)
}

/// [`recall`], with the index of the key manager that verified the token.
pub fn recall_with_key_manager(
    policy: &Policy,
    started: &Started<'_>,
    cache: &mut VerifiedTokens,
    generation: impl Fn(usize) -> Option<u64>,
    now: f64,
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
                return Some((key_manager, Outcome::Deny(invalid(&err))));
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
        Verdict::Invalid { code, description } => Outcome::Deny(Denial::InvalidToken {
            code,
            description: description.clone(),
        }),
    };
    Some((key_manager, outcome))
}

/// Second phase without keys: the token's syntax and its key manager (by issuer). A token that is
/// not a compact JWS goes to introspection when a key manager trusted here has it.
pub fn parse(policy: &Policy, started: Started<'_>) -> Result<Pending, Outcome> {
    let token = UntrustedToken::parse(started.token)
        .map_err(|err| opaque(policy, &started).unwrap_or_else(|| Outcome::Deny(invalid(&err))))?;
    let found = policy
        .key_manager_for(token.issuer(), token.claims())
        .map_err(Outcome::Deny)?;
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
    })))
}

/// The decision for an opaque token that key manager `key_manager` reported active, with the
/// members of its answer as claims: the issuer (when the answer names one) must be that key
/// manager's, the times and the audience pass the same checks as a JWT's (`exp` is optional, as
/// in RFC 7662), the token must be a bearer token, and then the same authorization applies.
pub fn introspected(
    policy: &Policy,
    route: &RouteMatch,
    key_manager: usize,
    claims: &Map<String, Value>,
    now: f64,
) -> Outcome {
    let Some(manager) = policy.key_managers().get(key_manager) else {
        return Outcome::Deny(Denial::IntrospectionUnavailable { retry_after: 1 });
    };
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if manager.issues(iss, claims) => {}
        Some(_) => {
            return Outcome::Deny(invalid(&TokenError::IssuerMismatch { missing: false }));
        }
    }
    // A token bound to a key (RFC 7800 `cnf`) is not a bearer token.
    let bearer = claims
        .get("token_type")
        .is_none_or(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
    if !bearer || claims.contains_key("cnf") {
        return Outcome::Deny(Denial::InvalidToken {
            code: "token_not_bearer",
            description: "the key manager reports a token bound to a key, not a bearer token"
                .to_string(),
        });
    }
    let validation = Validation {
        issuer: None,
        require_exp: false,
        ..manager.time_validation().clone()
    };
    if let Err(err) = check(claims, &validation, now) {
        return Outcome::Deny(invalid(&err));
    }
    authorized(policy, route, key_manager, claims)
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
) -> Outcome {
    let Some(keys) = keys else {
        return Outcome::NeedKeys {
            pending,
            unknown_kid: false,
        };
    };
    let km = pending.key_manager;
    let started = Started {
        route: pending.route,
        token: pending.token.as_str(),
    };
    if let Some(outcome) = recall(policy, &started, cache, |_| Some(keys.generation), now) {
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
            let outcome = authorized(policy, &pending.route, km, &verified.claims);
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
            Outcome::Deny(denial)
        }
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
            finish(policy, Box::new(pending), set, now, true, &mut no_cache)
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
