//! The verification decision: algorithm policy, key selection, signature, then claims.
//!
//! Order: the alg and signature shape are checked first (free), then the key is chosen, the
//! signature verified, and only then are claims judged, so a claim reason (`token_expired`,
//! `issuer_mismatch`, ...) is only ever reported for a token that is genuine.

use serde_json::{Map, Value};

use super::alg::{Alg, AlgRefusal};
use super::backends::{self, SigCheck};
use super::error::{safe_label, KeyConflict, TokenError};
use super::jwk::{Jwk, KeyMaterial, KeySet};
use super::offload::{self, HostCrypto};
use super::token::UntrustedToken;
use crate::jose::claims::{self, Validation};

/// Signature checks one token may cost at most. Without a `kid` every key of the alg's type fits,
/// and a JWKS may hold up to [`super::jwk::MAX_KEYS`] (64) of them: a forged kid-less token would
/// cost 64 RSA verifications. Key managers publish one to three keys per algorithm (the current
/// one, the next and the previous during a rotation), so the first four in JWKS order cover every
/// real kid-less token; with more, the token needs a `kid` (`too_many_fitting_keys`). The same
/// bound applies to duplicate entries of one `kid`.
pub const MAX_KEYS_TRIED: usize = 4;

/// A token whose signature and registered claims were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub claims: Map<String, Value>,
    pub kid: Option<String>,
    pub alg: String,
}

/// Verifies `token` against `keys` and `validation` at time `now` (seconds since the epoch), with
/// every signature checked in Wasm.
pub fn verify(
    token: &UntrustedToken,
    keys: &KeySet,
    validation: &Validation,
    now: f64,
) -> Result<VerifiedToken, TokenError> {
    verify_with(token, keys, validation, now, None)
}

/// [`verify`], with RS*/ES* signatures checked by `host` when it can (see `offload`); the
/// decision is the same either way.
pub fn verify_with(
    token: &UntrustedToken,
    keys: &KeySet,
    validation: &Validation,
    now: f64,
    host: Option<&dyn HostCrypto>,
) -> Result<VerifiedToken, TokenError> {
    let alg = verify_in_place(token, keys, validation, now, host)?;
    Ok(VerifiedToken {
        claims: token.claims().clone(),
        kid: token.kid().map(str::to_owned),
        alg: alg.name().to_owned(),
    })
}

/// [`verify_with`] without copying anything out of `token`: the caller that owns it takes the
/// claims ([`UntrustedToken::take_claims`]). Returns the algorithm that verified it.
pub fn verify_in_place(
    token: &UntrustedToken,
    keys: &KeySet,
    validation: &Validation,
    now: f64,
    host: Option<&dyn HostCrypto>,
) -> Result<Alg, TokenError> {
    let alg = allowed_alg(token.alg(), validation)?;
    let signature = token.signature();
    if let Some(expected) = alg.signature_len() {
        if signature.len() != expected {
            return Err(TokenError::SignatureMalformed {
                alg: alg.name(),
                expected,
                actual: signature.len(),
            });
        }
    }

    let candidates = candidate_keys(token.kid(), keys, alg)?;
    let fitting = candidates.len();
    let message = token.signing_input();
    let mut wrong_length = None;
    let mut right_length = false;
    for key in candidates.into_iter().take(MAX_KEYS_TRIED) {
        let checked = host
            .and_then(|host| offload::check(host, alg, key, message, signature))
            .unwrap_or_else(|| backends::check(alg, &key.material, message, signature));
        match checked {
            SigCheck::Valid => {
                claims::check(token.claims(), validation, now)?;
                return Ok(alg);
            }
            SigCheck::Malformed { expected } => wrong_length = Some(expected),
            SigCheck::Invalid => right_length = true,
            SigCheck::WrongKey => {}
        }
    }
    if fitting > MAX_KEYS_TRIED {
        // Say why the right key may not have been tried.
        return Err(TokenError::TooManyFittingKeys {
            alg: alg.name(),
            kid: token.kid().map(safe_label),
            fitting,
        });
    }
    Err(match wrong_length {
        // Only an RSA modulus can make the length wrong here; name it when it is the only issue.
        Some(expected) if !right_length => TokenError::SignatureMalformed {
            alg: alg.name(),
            expected,
            actual: signature.len(),
        },
        _ => TokenError::SignatureInvalid { alg: alg.name() },
    })
}

/// Whether `token`'s signature verifies under `alg` with the one `key` given, rather than a key
/// chosen from a key set: a DPoP proof is signed by the key its own header carries. The key must
/// fit the algorithm ([`Jwk::permits`]); the check runs on the host when it can, as in
/// [`verify_with`].
pub fn signed_by(
    token: &UntrustedToken,
    alg: Alg,
    key: &Jwk,
    host: Option<&dyn HostCrypto>,
) -> bool {
    signature_valid(token.signing_input(), token.signature(), alg, key, host)
}

/// [`signed_by`] on a signing input and signature already split out of a compact JWS (a DPoP
/// proof whose header was checked before).
pub fn signature_valid(
    message: &[u8],
    signature: &[u8],
    alg: Alg,
    key: &Jwk,
    host: Option<&dyn HostCrypto>,
) -> bool {
    if key.permits(alg).is_err()
        || alg
            .signature_len()
            .is_some_and(|expected| signature.len() != expected)
    {
        return false;
    }
    let checked = host
        .and_then(|host| offload::check(host, alg, key, message, signature))
        .unwrap_or_else(|| backends::check(alg, &key.material, message, signature));
    checked == SigCheck::Valid
}

/// Maps the header `alg` to a supported algorithm that the validation allows.
fn allowed_alg(name: &str, validation: &Validation) -> Result<Alg, TokenError> {
    let alg = Alg::from_name(name).map_err(|refusal| match refusal {
        AlgRefusal::None => TokenError::AlgNotAllowed {
            alg: safe_label(name),
        },
        AlgRefusal::Unsupported => TokenError::UnsupportedAlg {
            alg: safe_label(name),
        },
    })?;
    if !validation.allows_alg(alg.name()) {
        return Err(TokenError::AlgNotAllowed {
            alg: safe_label(name),
        });
    }
    Ok(alg)
}

/// The keys that may verify this token, by the rules of RFC 7515 §4.1.4 and RFC 7517 §4:
/// a `kid` selects the keys with that `kid`; without one every key that fits the alg is a candidate
/// (the caller tries at most [`MAX_KEYS_TRIED`] of them).
/// HMAC secrets shorter than the hash output are never used (RFC 7518 §3.2).
fn candidate_keys<'k>(
    kid: Option<&str>,
    keys: &'k KeySet,
    alg: Alg,
) -> Result<Vec<&'k Jwk>, TokenError> {
    let mut conflict: Option<KeyConflict> = None;
    let mut fitting = Vec::new();
    let mut selected_any = false;
    for key in keys.keys() {
        if kid.is_some() && key.kid.as_deref() != kid {
            continue;
        }
        selected_any = true;
        match key.permits(alg) {
            Ok(()) => fitting.push(key),
            Err(why) => {
                conflict.get_or_insert(why);
            }
        }
    }
    if let Some(kid) = kid {
        if !selected_any {
            return Err(if keys.skipped_kid(kid) {
                TokenError::KeyUnusable {
                    kid: safe_label(kid),
                }
            } else {
                TokenError::UnknownKid {
                    kid: safe_label(kid),
                }
            });
        }
        if fitting.is_empty() {
            return Err(TokenError::KeyConflict {
                kid: safe_label(kid),
                alg: alg.name(),
                conflict: conflict.unwrap_or(KeyConflict::KeyType),
            });
        }
    } else if fitting.is_empty() {
        return Err(TokenError::NoMatchingKey { alg: alg.name() });
    }

    if let Some(min) = alg.min_secret_len() {
        fitting.retain(|key| match &key.material {
            KeyMaterial::Oct(secret) => secret.len() >= min,
            _ => false,
        });
        if fitting.is_empty() {
            return Err(TokenError::KeyTooWeak { alg: alg.name() });
        }
    }
    Ok(fitting)
}
