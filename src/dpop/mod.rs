//! DPoP (RFC 9449) at the resource server: proofs of possession of the key an access token is
//! bound to (`cnf.jkt`).
//!
//! - [`verify_proof`] checks one proof against its request (§4.3): typ, asymmetric alg, public
//!   `jwk`, signature (host crypto first, as for access tokens), `htm`, `htu`, `iat`, `ath`;
//! - [`thumbprint`] is the RFC 7638 thumbprint the token's `cnf.jkt` must equal;
//! - [`ReplayStore`] remembers `jti`s across workers in shared data, bounded in memory;
//! - the binding rules (which scheme with which token, required DPoP) are in `crate::decision`
//!   (`dpop_binding`).

mod error;
mod flat;
mod htu;
mod memo;
mod proof;
pub(crate) use proof::same_text;
mod replay;
mod thumbprint;

#[cfg(test)]
mod tests;

pub use error::{DpopError, DpopErrorKind};
pub use htu::{normalize as normalize_uri, request_uri};
pub use proof::{access_token_hash, verify_proof, ProofRules, ProofTarget, VerifiedProof};
pub use replay::{vm_secret, MemorySlots, ProofUse, ReplayStore, Slots, SECRET_BYTES};
pub use thumbprint::thumbprint;
