//! Compact JWS parsing, algorithms, JWK/JWKS and signature verification (RFC 7515/7517/7518,
//! RFC 8037). Pure Rust, no host calls: the same code runs in the filter and in `check-token`.
//!
//! Flow: [`UntrustedToken::parse`] (strict syntax) → pick the key manager by
//! [`UntrustedToken::issuer`] → [`verify`] with its [`KeySet`] and a [`Validation`].

mod alg;
pub mod b64;
pub mod backends;
pub mod claims;
mod error;
mod json;
pub mod jwk;
pub mod offload;
mod plain_json;
pub mod sign;
pub mod token;
mod verify;

pub use alg::{Alg, AlgRefusal, KeyKind};
pub use claims::Validation;
pub use error::{safe_label, Claim, KeyConflict, KeysError, Malformation, TokenError, TokenPart};
pub use json::parse_object;
pub use jwk::{Jwk, KeyMaterial, KeySet, SkipReason, SkippedKey};
pub use offload::HostCrypto;
pub use token::UntrustedToken;
pub use verify::{
    signature_valid, signed_by, verify, verify_in_place, verify_with, VerifiedToken, MAX_KEYS_TRIED,
};
