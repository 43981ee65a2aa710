//! Opaque tokens (not a compact JWS): the decision for a token that only a key manager's
//! introspection endpoint (RFC 7662) can judge, once its answer is in.

use serde_json::{Map, Value};

use crate::introspection::{is_opaque, TokenHash};
use crate::jose::claims::{check, Validation};
use crate::jose::TokenError;
use crate::policy::{IssuerRefusal, KeyManagerId, Policy, RouteMatch};

use super::cert_binding::{check_cert, CertDigest, ClientCert};
use super::dpop_binding::{
    admit_proof, check_dpop, dpop_denial, refuse, DpopHost, Presentation, Presented,
};
use super::{authorized, Denial, Outcome, Started, TokenRefusal};

/// A request with an opaque token, waiting for an introspection answer.
#[derive(Debug, Clone)]
pub struct Opaque {
    pub route: RouteMatch,
    /// The token, needed for the call only (the cache knows it by [`TokenHash`]).
    pub token: String,
    pub hash: TokenHash,
    /// The key managers to ask, in order: those with introspection that the API accepts. Part of
    /// `hash` when the API accepts only some, so each set has its own cache entries.
    pub asked: Vec<KeyManagerId>,
    /// The scheme it came with and, for DPoP, the proof (checked per request once the answer is in).
    presentation: Presentation,
    /// The request's client certificate, for a certificate-bound answer (RFC 8705).
    client_cert: Option<CertDigest>,
}

pub(super) fn opaque(policy: &Policy, started: &Started<'_>) -> Option<Outcome> {
    if !is_opaque(started.token) {
        return None;
    }
    let asked = policy.introspection_order_for(&started.route);
    if asked.is_empty() {
        return None;
    }
    let everyone = asked.iter().copied().eq(policy.introspection_order());
    let hash = if everyone {
        TokenHash::of(started.token)
    } else {
        TokenHash::of_asked(started.token, &asked)
    };
    Some(Outcome::NeedIntrospection(Box::new(Opaque {
        route: started.route,
        token: started.token.to_string(),
        hash,
        asked,
        presentation: started.presentation(),
        client_cert: started.client_cert.get(),
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
    key_manager: KeyManagerId,
    claims: &Map<String, Value>,
    now: f64,
    dpop: DpopHost<'_>,
) -> Outcome {
    let Some(manager) = policy.key_manager(key_manager) else {
        return Outcome::Deny(Denial::IntrospectionUnavailable { retry_after: 1 });
    };
    let presentation = &opaque.presentation;
    if !policy.accepts(&opaque.route, key_manager) {
        let refusal = TokenRefusal::Issuer(IssuerRefusal::NotEnabled);
        return refuse(policy, presentation, refusal);
    }
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if manager.issues(iss, claims) => {}
        Some(_) => {
            let err = TokenError::IssuerMismatch { missing: false };
            return refuse(policy, presentation, TokenRefusal::Token(err));
        }
    }
    // Bound to a key some other way (RFC 7800 `cnf` with neither `jkt` nor a certificate
    // thumbprint), or a token type keygate cannot check: not usable here. A certificate-bound
    // token (RFC 8705 `x5t#S256`) is a bearer token as far as the scheme goes.
    let token_type = claims
        .get("token_type")
        .map(|t| t.as_str().unwrap_or_default());
    let jkt = claims.get("cnf").and_then(|cnf| match cnf.get("jkt") {
        Some(_) => Some(true),
        None if cnf.get("x5t#S256").is_some() => None,
        None => Some(false),
    });
    let usable = match (token_type, jkt) {
        // Bound, but not to a DPoP key.
        (_, Some(false)) => false,
        (None, _) => true,
        (Some(t), jkt) if t.eq_ignore_ascii_case("bearer") => jkt.is_none(),
        (Some(t), jkt) if t.eq_ignore_ascii_case("dpop") => jkt == Some(true),
        (Some(_), _) => false,
    };
    if !usable {
        return refuse(policy, presentation, TokenRefusal::NotBearer);
    }
    let validation = Validation {
        issuer: None,
        require_exp: false,
        ..manager.time_validation().clone()
    };
    if let Err(err) = check(claims, &validation, now) {
        return refuse(policy, presentation, TokenRefusal::Token(err));
    }
    // Per request, like a JWT's binding: the certificate, the scheme, the proof and (once
    // authorized) its single use.
    if let Err(err) = check_cert(
        policy,
        &opaque.route,
        claims,
        ClientCert::Known(opaque.client_cert),
    ) {
        return refuse(policy, presentation, TokenRefusal::Certificate(err));
    }
    let presented = Presented {
        route: opaque.route,
        token: &opaque.token,
        presentation,
        client_cert: ClientCert::Known(opaque.client_cert),
    };
    let proven = match check_dpop(policy, &presented, key_manager, claims, now, dpop) {
        Ok(proven) => proven,
        Err(err) => return dpop_denial(policy, err),
    };
    let outcome = authorized(policy, &opaque.route, key_manager, claims, now, dpop);
    admit_proof(policy, outcome, proven, now, dpop)
}

/// The answer for an opaque token no key manager reports active.
pub fn inactive() -> Denial {
    TokenRefusal::Inactive.into()
}
