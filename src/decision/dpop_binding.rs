//! DPoP binding (RFC 9449 §7.1): how a genuine token was presented must fit whether it is bound.
//! A token bound to a key (`cnf.jkt`) needs the `DPoP` scheme and a valid proof of that key on
//! every request (a verified-token cache hit skips the token's signature, never the proof, which
//! is per request); a plain token is refused where DPoP is required.
//!
//! The order keeps refused requests out of the shared replay store: [`check_dpop`] checks the
//! proof without touching the store, the request is authorized, then [`admit_proof`] looks the
//! store up read-only (a replay is refused there) and the allowed outcome carries the proof's
//! [`ProofUse`]; the worker spends the tier and only then records the `jti` ([`record_proof`]).

use serde_json::{Map, Value};

use crate::dpop::{
    request_uri, verify_proof, DpopError, ProofRules, ProofTarget, ProofUse, ReplayStore, Slots,
};
use crate::jose::HostCrypto;
use crate::policy::{KeyManagerId, Policy, RouteMatch};

use super::{AuthScheme, Challenge, Denial, Outcome, Request, TokenRefusal};

/// What DPoP checks need from the host: signature checks (`None`: in Wasm) and the shared data
/// that holds the replay store.
#[derive(Clone, Copy)]
pub struct DpopHost<'a> {
    pub crypto: Option<&'a dyn HostCrypto>,
    pub slots: &'a dyn Slots,
}

/// How the token was presented: its scheme and, for DPoP, the proof and the request it is for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Presentation {
    Bearer,
    Dpop(Box<ProofInput>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProofInput {
    /// The one proof, or why there is not exactly one.
    proof: Result<String, DpopError>,
    method: String,
    /// `:path`; with the configured origins it makes the URIs `htu` may name.
    path: String,
}

impl Presentation {
    /// How a token came: its scheme and, for DPoP, the one proof (or why there is not exactly
    /// one) with the method and path it must describe.
    pub(super) fn of(scheme: AuthScheme, request: &Request<'_>) -> Presentation {
        match scheme {
            AuthScheme::Bearer => Presentation::Bearer,
            AuthScheme::Dpop => {
                let proof = match request.dpop.proofs {
                    [] => Err(DpopError::ProofMissing),
                    [one] => Ok((*one).to_string()),
                    _ => Err(DpopError::ProofMultiple),
                };
                Presentation::Dpop(Box::new(ProofInput {
                    proof,
                    method: request.method.to_string(),
                    path: request.path.to_string(),
                }))
            }
        }
    }
}

/// A token and how it came, borrowed from a [`Started`] or a [`Pending`].
pub(super) struct Presented<'p> {
    pub(super) route: RouteMatch,
    pub(super) token: &'p str,
    pub(super) presentation: &'p Presentation,
    /// The request's client certificate (`cert_binding`).
    pub(super) client_cert: super::ClientCert<'p>,
}

/// A proof that passed [`verify_proof`] for the token's key, before the replay store is asked.
#[derive(Debug)]
pub(super) struct Proven {
    jkt: String,
    jti: String,
    /// The second until which its `jti` must be remembered.
    until: u64,
}

/// RFC 9449 §7.1: how the token came must fit whether it is bound. A bound token (`cnf.jkt`)
/// needs the DPoP scheme and a proof that passes [`verify_proof`] with the key it is bound to
/// (returned, for [`admit_proof`] once the request is authorized); a plain token needs the Bearer
/// scheme, and is refused where the key manager or the API requires DPoP.
pub(super) fn check_dpop(
    policy: &Policy,
    presented: &Presented<'_>,
    km: KeyManagerId,
    claims: &Map<String, Value>,
    now: f64,
    host: DpopHost<'_>,
) -> Result<Option<Proven>, DpopError> {
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
        (Presentation::Bearer, None) => return Ok(None),
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
    // The URIs this request may be named by: the configured origins of its API (never the
    // client's Host or :scheme) with its path.
    let uris: Vec<String> = policy
        .dpop_origins(&presented.route)
        .iter()
        .filter_map(|origin| request_uri(origin, &input.path))
        .collect();
    let target = ProofTarget {
        method: &input.method,
        uris: &uris,
        access_token: presented.token,
    };
    let verified = verify_proof(proof, &target, &rules, now, host.crypto)?;
    if verified.jkt != jkt {
        return Err(DpopError::KeyMismatch);
    }
    // Remembered while the proof's iat is acceptable (one second more for the rounding of `now`);
    // `iat` is within the window here, so the value is finite and positive.
    let until = (verified.iat + settings.dpop_max_age_seconds as f64).ceil() + 1.0;
    Ok(Some(Proven {
        jkt: verified.jkt,
        jti: verified.jti,
        until: until as u64,
    }))
}

fn replay_store(policy: &Policy) -> ReplayStore {
    let settings = policy.settings();
    ReplayStore {
        slots: settings.dpop_replay_slots,
        entries: settings.dpop_replay_slot_entries,
    }
}

/// An authorized request's proof against the replay store, read-only: an allowed outcome with a
/// proof carries what recording it takes, or becomes the refusal (a replay, a full slot). Any
/// other outcome is returned as it is, and its proof takes no room.
pub(super) fn admit_proof(
    policy: &Policy,
    outcome: Outcome,
    proven: Option<Proven>,
    now: f64,
    host: DpopHost<'_>,
) -> Outcome {
    match (outcome, proven) {
        (Outcome::Allow { allowed, .. }, Some(proven)) => {
            let now_s = now.max(0.0) as u64;
            let store = replay_store(policy);
            match store.check(host.slots, &proven.jkt, &proven.jti, proven.until, now_s) {
                Ok(proof) => Outcome::Allow {
                    allowed,
                    proof: Some(proof),
                },
                Err(err) => dpop_denial(policy, err),
            }
        }
        (outcome, _) => outcome,
    }
}

/// Records the `jti` of an allowed request's proof ([`Outcome::Allow`]'s `proof`), last: after
/// its tier is spent. Refused when another worker recorded the same proof meanwhile (a replay) or
/// the slot filled up.
pub fn record_proof(
    policy: &Policy,
    proof: &ProofUse,
    slots: &dyn Slots,
    now: f64,
) -> Result<(), Denial> {
    let now_s = now.max(0.0) as u64;
    replay_store(policy)
        .record(slots, proof, now_s)
        .map_err(|error| Denial::Dpop {
            error,
            algs: policy.dpop_algs().to_string(),
        })
}

pub(super) fn dpop_denial(policy: &Policy, error: DpopError) -> Outcome {
    Outcome::Deny(Denial::Dpop {
        error,
        algs: policy.dpop_algs().to_string(),
    })
}

/// A token refusal, under the DPoP challenge when the token came with the DPoP scheme.
pub(super) fn refuse(
    policy: &Policy,
    presentation: &Presentation,
    refusal: TokenRefusal,
) -> Outcome {
    let challenge = match presentation {
        Presentation::Bearer => Challenge::Bearer,
        Presentation::Dpop(_) => Challenge::Dpop {
            algs: policy.dpop_algs().to_string(),
        },
    };
    Outcome::Deny(Denial::InvalidToken { refusal, challenge })
}
