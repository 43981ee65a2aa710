//! Why DPoP refused a request. Codes are stable: they appear in replies, logs and metrics.

use std::fmt;

/// Which OAuth error a refusal is (RFC 9449 §7.1): a problem of the proof, of the token's
/// binding, or the replay store being unable to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopErrorKind {
    /// `invalid_dpop_proof`, 401.
    InvalidProof,
    /// `invalid_token`, 401 (the token is not usable as presented).
    InvalidToken,
    /// 503 with `Retry-After`: the jti cannot be recorded, so single use cannot be promised.
    Unavailable,
}

/// A DPoP refusal. Variants follow the order of the checks (RFC 9449 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// The DPoP scheme without a `DPoP` proof header.
    ProofMissing,
    /// More than one `DPoP` header (§4.3 check 1).
    ProofMultiple,
    /// The proof is not a compact JWS (what the JWS parser said).
    ProofMalformed { reason: String },
    /// `typ` is not `dpop+jwt`.
    TypInvalid,
    /// `alg` is not an asymmetric algorithm this gateway accepts for proofs.
    AlgNotAllowed { alg: String },
    /// The header `jwk` is missing, not a usable public key, or does not fit `alg`.
    JwkInvalid,
    /// The header `jwk` carries private key members.
    JwkPrivate,
    /// The proof's signature does not verify with its `jwk`.
    SignatureInvalid,
    /// A required claim (`jti`, `htm`, `htu`, `iat`, `ath`) is absent or of the wrong type.
    ClaimMissing { claim: &'static str },
    /// `htm` is not the request method.
    HtmMismatch,
    /// `htu` is not the request URI.
    HtuMismatch,
    /// `iat` is older than the accepted window.
    ProofExpired,
    /// `iat` is further in the future than the clock skew allows.
    IatInFuture,
    /// `ath` is not the hash of the access token presented with it.
    AthMismatch,
    /// The token's `cnf.jkt` is not the thumbprint of the proof's key.
    KeyMismatch,
    /// The proof's `jti` was used before within the window.
    Replayed,
    /// A DPoP-bound token (`cnf.jkt`) presented with the Bearer scheme.
    BoundTokenAsBearer,
    /// The DPoP scheme with a token that is not DPoP-bound.
    TokenNotBound,
    /// The key manager or API requires DPoP and the token is a plain bearer token.
    Required,
    /// `cnf.jkt` is not a string.
    CnfInvalid,
    /// Every jti slot that this proof maps to is taken by live entries.
    ReplayStoreFull { retry_after: u64 },
    /// Shared data refused the write (or kept losing the compare-and-swap race).
    ReplayStoreUnavailable,
}

impl DpopError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::ProofMissing => "dpop_proof_missing",
            DpopError::ProofMultiple => "dpop_proof_multiple",
            DpopError::ProofMalformed { .. } => "dpop_proof_malformed",
            DpopError::TypInvalid => "dpop_typ_invalid",
            DpopError::AlgNotAllowed { .. } => "dpop_alg_not_allowed",
            DpopError::JwkInvalid => "dpop_jwk_invalid",
            DpopError::JwkPrivate => "dpop_jwk_private",
            DpopError::SignatureInvalid => "dpop_signature_invalid",
            DpopError::ClaimMissing { .. } => "dpop_claim_missing",
            DpopError::HtmMismatch => "dpop_htm_mismatch",
            DpopError::HtuMismatch => "dpop_htu_mismatch",
            DpopError::ProofExpired => "dpop_proof_expired",
            DpopError::IatInFuture => "dpop_iat_in_future",
            DpopError::AthMismatch => "dpop_ath_mismatch",
            DpopError::KeyMismatch => "dpop_key_mismatch",
            DpopError::Replayed => "dpop_jti_replayed",
            DpopError::BoundTokenAsBearer => "dpop_bound_token_as_bearer",
            DpopError::TokenNotBound => "dpop_token_not_bound",
            DpopError::Required => "dpop_required",
            DpopError::CnfInvalid => "dpop_cnf_invalid",
            DpopError::ReplayStoreFull { .. } => "dpop_replay_store_full",
            DpopError::ReplayStoreUnavailable => "dpop_replay_store_unavailable",
        }
    }

    pub fn kind(&self) -> DpopErrorKind {
        match self {
            DpopError::KeyMismatch
            | DpopError::BoundTokenAsBearer
            | DpopError::TokenNotBound
            | DpopError::Required
            | DpopError::CnfInvalid => DpopErrorKind::InvalidToken,
            DpopError::ReplayStoreFull { .. } | DpopError::ReplayStoreUnavailable => {
                DpopErrorKind::Unavailable
            }
            _ => DpopErrorKind::InvalidProof,
        }
    }

    /// Seconds a client should wait before retrying, for [`DpopErrorKind::Unavailable`].
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            DpopError::ReplayStoreFull { retry_after } => Some(*retry_after),
            DpopError::ReplayStoreUnavailable => Some(1),
            _ => None,
        }
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpopError::ProofMissing => f.write_str("the DPoP scheme needs a DPoP proof header"),
            DpopError::ProofMultiple => f.write_str("the request has more than one DPoP header"),
            DpopError::ProofMalformed { reason } => write!(f, "DPoP proof: {reason}"),
            DpopError::TypInvalid => f.write_str("DPoP proof typ is not dpop+jwt"),
            DpopError::AlgNotAllowed { alg } => {
                write!(f, "DPoP proof alg {alg} is not accepted")
            }
            DpopError::JwkInvalid => f.write_str(
                "DPoP proof jwk is missing, not a supported public key, or does not fit its alg",
            ),
            DpopError::JwkPrivate => f.write_str("DPoP proof jwk contains a private key"),
            DpopError::SignatureInvalid => {
                f.write_str("DPoP proof signature does not verify with its jwk")
            }
            DpopError::ClaimMissing { claim } => {
                write!(
                    f,
                    "DPoP proof claim {claim} is missing or of the wrong type"
                )
            }
            DpopError::HtmMismatch => f.write_str("DPoP proof htm is not the request method"),
            DpopError::HtuMismatch => f.write_str("DPoP proof htu is not the request URI"),
            DpopError::ProofExpired => f.write_str("DPoP proof iat is too old"),
            DpopError::IatInFuture => f.write_str("DPoP proof iat is in the future"),
            DpopError::AthMismatch => {
                f.write_str("DPoP proof ath is not the hash of the access token")
            }
            DpopError::KeyMismatch => {
                f.write_str("the token is bound to another key than the DPoP proof's")
            }
            DpopError::Replayed => f.write_str("DPoP proof jti was used before"),
            DpopError::BoundTokenAsBearer => {
                f.write_str("a DPoP-bound token must be presented with the DPoP scheme")
            }
            DpopError::TokenNotBound => {
                f.write_str("the DPoP scheme carries a token that is not DPoP-bound")
            }
            DpopError::Required => f.write_str("this API requires DPoP-bound tokens"),
            DpopError::CnfInvalid => f.write_str("the token's cnf.jkt is not a string"),
            DpopError::ReplayStoreFull { .. } => {
                f.write_str("too many DPoP proofs to remember right now; retry later")
            }
            DpopError::ReplayStoreUnavailable => {
                f.write_str("DPoP proofs cannot be checked for replay right now; retry later")
            }
        }
    }
}

impl std::error::Error for DpopError {}
