//! The host verification path (Envoy's `verify_signature`, see `src/jose/offload.rs`) against a
//! native stand-in that decodes the DER key and signature the filter sends, with RustCrypto: the
//! same tokens give the same decisions on both paths, tampered ones included, and the self-test
//! refuses hosts that answer wrongly.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::signers;

use std::cell::Cell;

use keygate::jose::offload::host_is_sound;
use keygate::jose::Validation;
use keygate::jose::{verify, verify_with, Alg, HostCrypto, KeySet, UntrustedToken};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Decodes what Envoy would get and verifies like BoringSSL's EVP_DigestVerify would.
#[derive(Default)]
struct Native {
    calls: Cell<u32>,
}

impl HostCrypto for Native {
    fn verify_signature(&self, hash: &str, spki: &[u8], sig: &[u8], msg: &[u8]) -> Option<bool> {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        self.calls.set(self.calls.get() + 1);
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            let (scheme, digest) = match hash {
                "sha256" => (
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Sha256::digest(msg).to_vec(),
                ),
                "sha384" => (
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Sha384::digest(msg).to_vec(),
                ),
                "sha512" => (
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    Sha512::digest(msg).to_vec(),
                ),
                _ => return None,
            };
            return Some(key.verify(scheme, &digest, sig).is_ok());
        }
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
            assert_eq!(hash, "sha256");
            let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
                return Some(false);
            };
            return Some(key.verify(msg, &sig).is_ok());
        }
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(spki) {
            assert_eq!(hash, "sha384");
            let Ok(sig) = p384::ecdsa::Signature::from_der(sig) else {
                return Some(false);
            };
            return Some(key.verify(msg, &sig).is_ok());
        }
        if let Ok(key) = p521::PublicKey::from_public_key_der(spki) {
            assert_eq!(hash, "sha512");
            let key = p521::ecdsa::VerifyingKey::from_affine(*key.as_affine()).unwrap();
            let Ok(sig) = p521::ecdsa::Signature::from_der(sig) else {
                return Some(false);
            };
            return Some(key.verify(msg, &sig).is_ok());
        }
        // Envoy answers a key it cannot import with an error, which the filter reads as "does
        // not verify" (src/filter/host.rs): so does the stand-in.
        Some(false)
    }
}

/// A broken host that says yes to everything.
struct Yes;
impl HostCrypto for Yes {
    fn verify_signature(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        Some(true)
    }
}

/// A host without the function.
struct Absent;
impl HostCrypto for Absent {
    fn verify_signature(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

fn tampered(token: &str) -> String {
    // Flip one bit of the signature's first byte (still canonical base64url: change one char).
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = signers::unb64(sig);
    bytes[0] ^= 0x01;
    format!("{input}.{}", signers::b64(&bytes))
}

#[test]
fn both_paths_decide_every_algorithm_alike() {
    let tokens: Value = serde_json::from_str(include_str!("vectors/interop.json")).unwrap();
    let keys = KeySet::from_json(&signers::jwks(&signers::all_keys())).unwrap();
    let validation = Validation {
        issuer: Some("https://idp.example".into()),
        audiences: vec!["api://pets".into()],
        ..Validation::default()
    };
    let native = Native::default();
    for alg in Alg::ALL {
        for (genuine, text) in [
            (true, tokens[alg.name()].as_str().unwrap().to_string()),
            (false, tampered(tokens[alg.name()].as_str().unwrap())),
        ] {
            let token = UntrustedToken::parse(&text).unwrap();
            let wasm = verify(&token, &keys, &validation, signers::NOW).map_err(|e| e.code());
            let host = verify_with(&token, &keys, &validation, signers::NOW, Some(&native))
                .map_err(|e| e.code());
            assert_eq!(
                wasm.as_ref().map(|v| &v.claims),
                host.as_ref().map(|v| &v.claims),
                "{}",
                alg.name()
            );
            if genuine {
                assert!(host.is_ok(), "{}: {:?}", alg.name(), host.map(|_| ()));
            } else {
                assert_eq!(
                    host.map(|_| ()),
                    Err("signature_invalid"),
                    "{}: tampered",
                    alg.name()
                );
            }
        }
    }
    // RS256/384/512 and ES256/384/512 went to the host, twice each (good and tampered), and the
    // host decided every one of them (the stand-in answers for P-521 too).
    assert_eq!(native.calls.get(), 12);
}

#[test]
fn the_self_test_accepts_only_a_host_that_answers_right() {
    assert!(host_is_sound(&Native::default()));
    assert!(
        !host_is_sound(&Yes),
        "a host that verifies everything must not be used"
    );
    assert!(!host_is_sound(&Absent));
}

#[test]
fn the_host_is_never_asked_for_hmac_pss_or_eddsa() {
    let tokens: Value = serde_json::from_str(include_str!("vectors/interop.json")).unwrap();
    let keys = KeySet::from_json(&signers::jwks(&signers::all_keys())).unwrap();
    let validation = Validation::default();
    let native = Native::default();
    for alg in ["HS256", "PS256", "PS384", "PS512", "EdDSA"] {
        let token = UntrustedToken::parse(tokens[alg].as_str().unwrap()).unwrap();
        // Each one really verified (a token refused before its signature was checked would
        // make "no host call" vacuous).
        let verified = verify_with(&token, &keys, &validation, signers::NOW, Some(&native));
        assert!(verified.is_ok(), "{alg}: {:?}", verified.map(|_| ()));
    }
    assert_eq!(native.calls.get(), 0);
}
