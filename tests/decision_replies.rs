//! README "Reason codes": "Every denial is a JSON body … with `content-type: application/json`
//! and `cache-control: no-store`" (issue 20, finding 3). Every `Denial` variant is built here
//! and its reply checked; the exhaustive match below stops compiling when a variant is added,
//! so a new denial cannot be left out.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use keygate::decision::{
    reply, ApiKeyDenial, AuthorizationProblem, CertError, Challenge, Denial, TokenRefusal,
};
use keygate::dpop::DpopError;
use keygate::policy::path::PathProblem;
use keygate::policy::tier::{Per, Tier};
use keygate::policy::IssuerRefusal;
use keygate::policy::{Policy, Route};
use serde_json::json;

/// The variant's name; no wildcard arm, on purpose.
fn variant(denial: &Denial) -> &'static str {
    match denial {
        Denial::MissingToken => "MissingToken",
        Denial::UnsupportedScheme => "UnsupportedScheme",
        Denial::MalformedAuthorization { .. } => "MalformedAuthorization",
        Denial::InvalidToken { .. } => "InvalidToken",
        Denial::KeyManagerUnavailable { .. } => "KeyManagerUnavailable",
        Denial::IntrospectionUnavailable { .. } => "IntrospectionUnavailable",
        Denial::DirectoryUnavailable { .. } => "DirectoryUnavailable",
        Denial::NoApi => "NoApi",
        Denial::ResourceNotFound => "ResourceNotFound",
        Denial::MethodNotAllowed { .. } => "MethodNotAllowed",
        Denial::PathNotCanonical { .. } => "PathNotCanonical",
        Denial::MethodNotCanonical { .. } => "MethodNotCanonical",
        Denial::ApplicationNotFound { .. } => "ApplicationNotFound",
        Denial::ApplicationBlocked { .. } => "ApplicationBlocked",
        Denial::NotSubscribed { .. } => "NotSubscribed",
        Denial::SubscriptionBlocked { .. } => "SubscriptionBlocked",
        Denial::InsufficientScope { .. } => "InsufficientScope",
        Denial::InsufficientGroup { .. } => "InsufficientGroup",
        Denial::RateLimited { .. } => "RateLimited",
        Denial::Dpop { .. } => "Dpop",
        Denial::MissingScopes { .. } => "MissingScopes",
        Denial::InsufficientClaim { .. } => "InsufficientClaim",
        Denial::ApiKey(_) => "ApiKey",
        Denial::BackendJwtUnavailable => "BackendJwtUnavailable",
    }
}

const VARIANTS: usize = 24;

/// `get` is not a canonical method: the router's own denial (its problem type is private).
fn method_not_canonical() -> Denial {
    let cfg = json!({
        "environment": "production",
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [
            {"method": "GET", "path": "/items", "public": true}
        ]}]
    });
    let policy = Policy::from_json(cfg.to_string().as_bytes()).unwrap();
    match policy.route("get", "/pets/items") {
        Route::Denied(refusal) => refusal.into(),
        _ => panic!("a lower-case method was not refused"),
    }
}

fn every_denial() -> Vec<Denial> {
    let app = || "shop".to_string();
    let mut denials = vec![
        Denial::MissingToken,
        Denial::UnsupportedScheme,
        Denial::MalformedAuthorization {
            problem: AuthorizationProblem::Empty,
        },
        Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NoToken,
        },
        Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NotToken68,
        },
        Denial::from(TokenRefusal::Inactive),
        Denial::from(IssuerRefusal::Unknown),
        // A token refusal under the DPoP challenge (the token came with the DPoP scheme).
        Denial::InvalidToken {
            refusal: TokenRefusal::NotBearer,
            challenge: Challenge::Dpop {
                algs: "ES256 EdDSA".into(),
            },
        },
        Denial::from(TokenRefusal::Certificate(CertError::Missing)),
        Denial::from(TokenRefusal::Certificate(CertError::Mismatch)),
        Denial::from(TokenRefusal::Certificate(CertError::Unbound)),
        Denial::from(TokenRefusal::Certificate(CertError::Invalid)),
        Denial::BackendJwtUnavailable,
        Denial::KeyManagerUnavailable { retry_after: 5 },
        Denial::IntrospectionUnavailable { retry_after: 1 },
        Denial::DirectoryUnavailable { retry_after: 1 },
        Denial::NoApi,
        Denial::ResourceNotFound,
        Denial::MethodNotAllowed {
            allow: vec!["GET".into(), "HEAD".into()],
        },
        method_not_canonical(),
        Denial::ApplicationNotFound {
            key_manager: "demo".into(),
            client_id: "nobody".into(),
        },
        Denial::ApplicationBlocked { application: app() },
        Denial::NotSubscribed {
            application: app(),
            api: "pets".into(),
        },
        Denial::SubscriptionBlocked {
            application: app(),
            api: "pets".into(),
        },
        Denial::InsufficientScope {
            required: vec!["pets:read".into()],
        },
        Denial::InsufficientGroup {
            required: vec!["pet-admins".into()],
        },
        Denial::MissingScopes {
            required: vec!["pets:read".into(), "pets:audit".into()],
            missing: vec!["pets:audit".into()],
        },
        Denial::InsufficientClaim {
            claim: "tenant".into(),
            accepted: vec!["acme".into()],
        },
        ApiKeyDenial::Missing {
            header: "apikey".into(),
            oauth2: false,
        }
        .into(),
        ApiKeyDenial::Missing {
            header: "apikey".into(),
            oauth2: true,
        }
        .into(),
        ApiKeyDenial::Unknown {
            header: "apikey".into(),
        }
        .into(),
        ApiKeyDenial::Expired {
            header: "apikey".into(),
        }
        .into(),
        ApiKeyDenial::NeedsToken {
            scopes: vec!["pets:read".into()],
        }
        .into(),
        ApiKeyDenial::Ambiguous.into(),
        Denial::RateLimited {
            tier: Tier {
                name: "bronze".into(),
                requests: 10,
                per: Per::Minute,
            },
            retry_after: 17,
        },
    ];
    for problem in [
        PathProblem::NotAbsolute,
        PathProblem::Fragment,
        PathProblem::BadByte,
        PathProblem::Backslash,
        PathProblem::PathParameter,
        PathProblem::BadEscape,
        PathProblem::EncodedDelimiter,
        PathProblem::EncodedNonAscii,
        PathProblem::TrailingDotOrSpace,
        PathProblem::BadEncodedByte,
        PathProblem::DotSegment,
        PathProblem::EmptySegment,
        PathProblem::CaseVariant,
    ] {
        denials.push(Denial::PathNotCanonical { problem });
    }
    for error in [
        DpopError::ProofMissing,
        DpopError::ProofMultiple,
        DpopError::ProofMalformed {
            reason: "not three segments".into(),
        },
        DpopError::TypInvalid,
        DpopError::AlgNotAllowed {
            alg: "HS256".into(),
        },
        DpopError::JwkInvalid,
        DpopError::JwkPrivate,
        DpopError::SignatureInvalid,
        DpopError::ClaimMissing { claim: "jti" },
        DpopError::HtmMismatch,
        DpopError::HtuMismatch,
        DpopError::ProofExpired,
        DpopError::IatInFuture,
        DpopError::AthMismatch,
        DpopError::KeyMismatch,
        DpopError::Replayed,
        DpopError::BoundTokenAsBearer,
        DpopError::TokenNotBound,
        DpopError::Required,
        DpopError::CnfInvalid,
        DpopError::ReplayStoreFull { retry_after: 3 },
        DpopError::ReplayStoreUnavailable,
    ] {
        denials.push(Denial::Dpop {
            error,
            algs: "ES256 EdDSA".into(),
        });
    }
    denials
}

#[test]
fn every_denial_reply_is_json_and_never_cached() {
    let denials = every_denial();
    let covered: BTreeSet<&str> = denials.iter().map(variant).collect();
    assert_eq!(covered.len(), VARIANTS, "a Denial variant has no case here");

    for denial in &denials {
        let r = reply(denial, "keygate");
        let all = |name: &str| -> Vec<&str> {
            r.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(
            all("cache-control"),
            vec!["no-store"],
            "{}: {:?}",
            denial.code(),
            r.headers
        );
        assert_eq!(all("content-type"), vec!["application/json"], "{denial:?}");
        assert!(r.status >= 400, "{denial:?}");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["code"], denial.code(), "{denial:?}");
        assert!(body["error"].is_string() && body["error_description"].is_string());
    }
}
