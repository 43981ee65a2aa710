//! Signature checks, one per key kind, all through jwt-compact's `Algorithm` trait.
//!
//! jwt-compact 0.8 covers HS*, RS*, PS* (salt length = hash length, as RFC 7518 §3.5 asks) and
//! ES256. It has no P-384/P-521 backend, so `Es384`/`Es512` below plug p384/p521 (the same
//! elliptic-curve 0.13 generation as its p256) into the trait. Its Ed25519 backend calls
//! ed25519-dalek's permissive `verify`; `Ed25519Strict` uses `verify_strict`, which also refuses
//! small-order keys and non-canonical `R`, the behaviour RFC 8032 verifiers converge on.
//!
//! Decisions: ECDSA signatures are raw fixed-length r||s (RFC 7518 §3.4), so DER or any other
//! length is malformed; r or s of zero or not below the group order never verify (the `ecdsa`
//! crate refuses such scalars). High-s ECDSA signatures are accepted: JWS does not require low-s,
//! common signers (OpenSSL, Go) emit both halves, and a bearer token gains nothing from
//! non-malleability. RSA signatures must be exactly as long as the modulus and below it.

use std::borrow::Cow;
use std::num::NonZeroUsize;

use jwt_compact::alg::{Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

use super::alg::Alg;
use super::jwk::KeyMaterial;

/// Outcome of one signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigCheck {
    Valid,
    Invalid,
    /// The signature's length cannot be right for this algorithm and key.
    Malformed {
        expected: usize,
    },
    /// The key does not fit the algorithm (callers filter these out first).
    WrongKey,
}

/// Checks `signature` over `message` with `key` under `alg`.
pub fn check(alg: Alg, key: &KeyMaterial, message: &[u8], signature: &[u8]) -> SigCheck {
    match (alg, key) {
        (Alg::Hs256, KeyMaterial::Oct(secret)) => {
            run(&Hs256, &Hs256Key::new(secret), message, signature)
        }
        (Alg::Hs384, KeyMaterial::Oct(secret)) => {
            run(&Hs384, &Hs384Key::new(secret), message, signature)
        }
        (Alg::Hs512, KeyMaterial::Oct(secret)) => {
            run(&Hs512, &Hs512Key::new(secret), message, signature)
        }
        (Alg::Rs256, KeyMaterial::Rsa(key)) => rsa(Rsa::rs256(), key, message, signature),
        (Alg::Rs384, KeyMaterial::Rsa(key)) => rsa(Rsa::rs384(), key, message, signature),
        (Alg::Rs512, KeyMaterial::Rsa(key)) => rsa(Rsa::rs512(), key, message, signature),
        (Alg::Ps256, KeyMaterial::Rsa(key)) => rsa(Rsa::ps256(), key, message, signature),
        (Alg::Ps384, KeyMaterial::Rsa(key)) => rsa(Rsa::ps384(), key, message, signature),
        (Alg::Ps512, KeyMaterial::Rsa(key)) => rsa(Rsa::ps512(), key, message, signature),
        (Alg::Es256, KeyMaterial::P256(key)) => run(&Es256, key, message, signature),
        (Alg::Es384, KeyMaterial::P384(key)) => run(&Es384, key, message, signature),
        (Alg::Es512, KeyMaterial::P521(key)) => run(&Es512, key, message, signature),
        (Alg::EdDsa, KeyMaterial::Ed25519(key)) => run(&Ed25519Strict, key, message, signature),
        _ => SigCheck::WrongKey,
    }
}

fn run<A: Algorithm>(alg: &A, key: &A::VerifyingKey, message: &[u8], signature: &[u8]) -> SigCheck {
    // Length first: jwt-compact's HMAC `try_from_slice` assumes the caller checked it.
    if let Some(expected) = <A::Signature as AlgorithmSignature>::LENGTH {
        if signature.len() != expected.get() {
            return SigCheck::Malformed {
                expected: expected.get(),
            };
        }
    }
    match A::Signature::try_from_slice(signature) {
        Ok(sig) if alg.verify_signature(&sig, key, message) => SigCheck::Valid,
        _ => SigCheck::Invalid,
    }
}

fn rsa(alg: Rsa, key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> SigCheck {
    let modulus = key.n().to_bytes_be();
    if signature.len() != modulus.len() {
        return SigCheck::Malformed {
            expected: modulus.len(),
        };
    }
    // Equal-length big-endian byte strings compare like the integers they encode; a signature
    // not below the modulus is a second encoding of a smaller one (malleability), refuse it.
    if signature >= modulus.as_slice() {
        return SigCheck::Invalid;
    }
    run(&alg, key, message, signature)
}

macro_rules! ecdsa_backend {
    ($(#[$doc:meta])* $alg:ident, $sig:ident, $curve:ident, $name:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $alg;

        /// Raw r||s signature for this curve.
        #[derive(Debug, Clone)]
        pub struct $sig(pub $curve::ecdsa::Signature);

        impl AlgorithmSignature for $sig {
            const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new($len);

            fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
                $curve::ecdsa::Signature::from_slice(slice)
                    .map($sig)
                    .map_err(|_| anyhow::anyhow!("not an ECDSA signature for this curve"))
            }

            fn as_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned(self.0.to_bytes().to_vec())
            }
        }

        impl Algorithm for $alg {
            type SigningKey = $curve::ecdsa::SigningKey;
            type VerifyingKey = $curve::ecdsa::VerifyingKey;
            type Signature = $sig;

            fn name(&self) -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn sign(&self, key: &Self::SigningKey, message: &[u8]) -> Self::Signature {
                use $curve::ecdsa::signature::Signer as _;
                $sig(key.sign(message))
            }

            fn verify_signature(
                &self,
                signature: &Self::Signature,
                key: &Self::VerifyingKey,
                message: &[u8],
            ) -> bool {
                use $curve::ecdsa::signature::Verifier as _;
                key.verify(message, &signature.0).is_ok()
            }
        }
    };
}

ecdsa_backend!(
    /// `ES384`: ECDSA on P-384 with SHA-384 (p384 crate).
    Es384, Es384Signature, p384, "ES384", 96
);
ecdsa_backend!(
    /// `ES512`: ECDSA on P-521 with SHA-512 (p521 crate).
    Es512, Es512Signature, p521, "ES512", 132
);

/// `EdDSA` over Ed25519 with ed25519-dalek's strict verification.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519Strict;

impl Algorithm for Ed25519Strict {
    type SigningKey = ed25519_dalek::SigningKey;
    type VerifyingKey = ed25519_dalek::VerifyingKey;
    type Signature = ed25519_dalek::Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("EdDSA")
    }

    fn sign(&self, key: &Self::SigningKey, message: &[u8]) -> Self::Signature {
        use ed25519_dalek::Signer as _;
        key.sign(message)
    }

    fn verify_signature(
        &self,
        signature: &Self::Signature,
        key: &Self::VerifyingKey,
        message: &[u8],
    ) -> bool {
        key.verify_strict(message, signature).is_ok()
    }
}
