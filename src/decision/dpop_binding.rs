//! DPoP binding (RFC 9449 §7.1): how a genuine token was presented must fit whether it is bound.
//! A token bound to a key (`cnf.jkt`) needs the `DPoP` scheme and a valid proof of that key on
//! every request (a verified-token cache hit skips the token's signature, never the proof, which
//! is per request); a plain token is refused where DPoP is required. The proof's `jti` is
//! recorded last, in the shared replay store.

use serde_json::{Map, Value};

use crate::dpop::{
    request_uri, verify_proof, DpopError, ProofRules, ProofTarget, ReplayStore, Slots,
};
use crate::jose::HostCrypto;
use crate::policy::{Policy, RouteMatch};

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
    uri: Option<String>,
}

impl Presentation {
    /// How a token came: its scheme and, for DPoP, the one proof (or why there is not exactly
    /// one) with the method and URI it must describe.
    pub(super) fn of(scheme: AuthScheme, request: &Request<'_>) -> Presentation {
        match scheme {
            AuthScheme::Bearer => Presentation::Bearer,
            AuthScheme::Dpop => {
                let dpop = &request.dpop;
                let proof = match dpop.proofs {
                    [] => Err(DpopError::ProofMissing),
                    [one] => Ok((*one).to_string()),
                    _ => Err(DpopError::ProofMultiple),
                };
                Presentation::Dpop(Box::new(ProofInput {
                    proof,
                    method: request.method.to_string(),
                    uri: request_uri(dpop.scheme, dpop.authority, request.path),
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
}

/// RFC 9449 §7.1: how the token came must fit whether it is bound. A bound token (`cnf.jkt`)
/// needs the DPoP scheme and a proof that passes [`verify_proof`] with the key it is bound to,
/// whose `jti` is then recorded; a plain token needs the Bearer scheme, and is refused where the
/// key manager or the API requires DPoP.
pub(super) fn check_dpop(
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
