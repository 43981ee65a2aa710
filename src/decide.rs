//! One request through the decision steps (ARCHITECTURE.md §3) as a function of its inputs.
//!
//! The shell calls [`begin`] with the request line and `Authorization` header; that settles everything
//! that needs no keys (route, bearer syntax, token syntax, key manager by issuer). What is left is a
//! [`Pending`] check that [`finish`] completes once the key manager's keys are at hand. Between the
//! two the shell may park the request while it fetches a JWKS; `finish` may be called again after a
//! refetch, with `after_refetch` set so an unknown `kid` becomes a final answer.

use serde_json::{Map, Value};

use crate::cache::VerifiedTokens;
use crate::claims::{check, Validation};
use crate::config::SUPPORTED_ALGORITHMS;
use crate::identity::Identity;
use crate::jose::{verify, KeySet, TokenError, UntrustedToken};
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
    /// Forward with this identity.
    Allow(Box<Identity>),
    /// Answer with this denial.
    Deny(Denial),
    /// Keys of key manager `key_manager` are needed: none are usable yet (`unknown_kid` false) or the
    /// token names a `kid` the cached set lacks (`unknown_kid` true).
    NeedKeys {
        pending: Box<Pending>,
        unknown_kid: bool,
    },
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
}

/// First phase: everything that needs no keys.
pub fn begin(policy: &Policy, request: &Request<'_>) -> Result<Pending, Outcome> {
    let route = match policy.route(request.method, request.path) {
        Route::Protected(route) => route,
        Route::Public(_) => return Err(Outcome::Public),
        Route::PassThrough => return Err(Outcome::Pass),
        Route::Denied(denial) => return Err(Outcome::Deny(denial)),
    };
    let bearer = bearer_token(request.authorization).map_err(Outcome::Deny)?;
    let token = UntrustedToken::parse(bearer).map_err(|err| Outcome::Deny(invalid(&err)))?;
    let found = policy
        .key_manager_for(token.issuer(), token.claims())
        .map_err(Outcome::Deny)?;
    let key_manager = found.index;
    let manager = policy.key_managers().get(key_manager).ok_or(Outcome::Deny(
        Denial::KeyManagerUnavailable { retry_after: 1 },
    ))?;
    let validation = Validation {
        issuer: Some(found.issuer),
        audiences: manager.audiences.clone(),
        leeway_seconds: policy.settings().leeway_seconds,
        require_exp: true,
        // A key manager's JWKS is public, so the filter never accepts HMAC from it: with no
        // explicit list, every asymmetric algorithm keygate supports.
        algorithms: if manager.algorithms.is_empty() {
            SUPPORTED_ALGORITHMS.iter().map(|a| a.to_string()).collect()
        } else {
            manager.algorithms.clone()
        },
    };
    Ok(Pending {
        route,
        token,
        key_manager,
        validation,
    })
}

/// A key manager's key set and its generation (changes whenever another set is adopted).
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub set: &'a KeySet,
    pub generation: u64,
}

/// Second phase: signature and claims with the key manager's keys, then the application checks.
/// A token verified before under the same key set skips the signature check (`cache`); its
/// claims are checked again against `now` every time.
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
    let token = pending.token.as_str();
    let km = pending.key_manager;
    if let Some(claims) = cache.get(token, km, keys.generation) {
        return match check(claims, &pending.validation, now) {
            Ok(()) => authorized(policy, &pending, claims),
            Err(err) => Outcome::Deny(invalid(&err)),
        };
    }
    match verify(&pending.token, keys.set, &pending.validation, now) {
        Ok(verified) => {
            let outcome = authorized(policy, &pending, &verified.claims);
            cache.insert(token, km, keys.generation, verified.claims);
            outcome
        }
        Err(TokenError::UnknownKid { .. }) if !after_refetch => Outcome::NeedKeys {
            pending,
            unknown_kid: true,
        },
        Err(err) => Outcome::Deny(invalid(&err)),
    }
}

fn authorized(policy: &Policy, pending: &Pending, claims: &Map<String, Value>) -> Outcome {
    match policy.authorize(&pending.route, pending.key_manager, claims) {
        Ok(identity) => Outcome::Allow(Box::new(identity)),
        Err(denial) => Outcome::Deny(denial),
    }
}

/// Both phases at once, for callers that already hold every key set (tests, the CLI).
pub fn decide<'k>(
    policy: &Policy,
    request: &Request<'_>,
    keys: impl Fn(usize) -> Option<&'k KeySet>,
    now: f64,
) -> Outcome {
    match begin(policy, request) {
        Ok(pending) => {
            let set = keys(pending.key_manager).map(|set| Keys { set, generation: 0 });
            let mut no_cache = VerifiedTokens::new(0);
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
