//! Published examples: RFC 7515 Appendix A.1 (HS256), A.2 (RS256), A.3 (ES256) and
//! RFC 8037 Appendix A.4 (Ed25519). Their `exp` is 1300819380 (March 2011), so they are judged
//! at an earlier time; a later time must report them expired. Also tokens signed by Python's
//! `cryptography`, an implementation independent of the crates keygate verifies with.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::signers;

use keygate::jose::backends::{self, SigCheck};
use keygate::jose::Validation;
use keygate::jose::{verify, Alg, Jwk, KeySet, UntrustedToken};
use serde_json::{json, Value};

const BEFORE_EXP: f64 = 1_300_819_379.0;
const AT_EXP: f64 = 1_300_819_380.0;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/rfc.json")).unwrap()
}

fn set_of(jwk: &Value) -> KeySet {
    KeySet::from_json(&serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()).unwrap()
}

#[test]
fn rfc7515_examples_verify_and_expire() {
    let v = vectors();
    for (name, alg) in [
        ("a1_hs256", "HS256"),
        ("a2_rs256", "RS256"),
        ("a3_es256", "ES256"),
    ] {
        let case = &v[name];
        let token = UntrustedToken::parse(case["token"].as_str().unwrap()).unwrap();
        let keys = set_of(&case["jwk"]);
        let validation = Validation {
            issuer: Some("joe".into()),
            ..Validation::default()
        };
        let verified = verify(&token, &keys, &validation, BEFORE_EXP)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.claims["iss"], "joe");
        assert_eq!(verified.claims["http://example.com/is_root"], true);
        assert_eq!(
            verify(&token, &keys, &validation, AT_EXP)
                .unwrap_err()
                .code(),
            "token_expired"
        );
        let wrong_iss = Validation {
            issuer: Some("jane".into()),
            ..Validation::default()
        };
        assert_eq!(
            verify(&token, &keys, &wrong_iss, BEFORE_EXP)
                .unwrap_err()
                .code(),
            "issuer_mismatch"
        );
    }
}

#[test]
fn rfc7515_examples_fail_with_each_others_keys() {
    let v = vectors();
    let hs = UntrustedToken::parse(v["a1_hs256"]["token"].as_str().unwrap()).unwrap();
    let rs_keys = set_of(&v["a2_rs256"]["jwk"]);
    assert_eq!(
        verify(&hs, &rs_keys, &Validation::default(), BEFORE_EXP)
            .unwrap_err()
            .code(),
        "no_matching_key"
    );
    // A.1's secret with one bit changed
    let mut k = keygate::jose::b64::decode(v["a1_hs256"]["jwk"]["k"].as_str().unwrap()).unwrap();
    k[0] ^= 1;
    let other = set_of(&json!({"kty": "oct", "k": keygate::jose::b64::encode(&k)}));
    assert_eq!(
        verify(&hs, &other, &Validation::default(), BEFORE_EXP)
            .unwrap_err()
            .code(),
        "signature_invalid"
    );
}

#[test]
fn rfc8037_ed25519_example_signature_verifies() {
    // The A.4 payload is the text "Example of Ed25519 signing", not a JSON object: the token
    // parser refuses it as an access token, but the signature itself must verify.
    let case = &vectors()["rfc8037_a4_ed25519"];
    let text = case["token"].as_str().unwrap();
    assert_eq!(
        UntrustedToken::parse(text).unwrap_err().code(),
        "malformed_token"
    );
    let (input, sig) = text.rsplit_once('.').unwrap();
    let sig = keygate::jose::b64::decode(sig).unwrap();
    let key = Jwk::from_value(&case["jwk"]).unwrap();
    assert_eq!(
        backends::check(Alg::EdDsa, &key.material, input.as_bytes(), &sig),
        SigCheck::Valid
    );
    let mut tampered = input.as_bytes().to_vec();
    tampered[30] ^= 1;
    assert_eq!(
        backends::check(Alg::EdDsa, &key.material, &tampered, &sig),
        SigCheck::Invalid
    );
}

#[test]
fn tokens_signed_by_an_independent_implementation_verify() {
    // tests/vectors/interop.json: signed with Python `cryptography` (gen_interop.py) using the
    // same test keys, one token per algorithm.
    let tokens: Value = serde_json::from_str(include_str!("vectors/interop.json")).unwrap();
    let keys = KeySet::from_json(&signers::jwks(&signers::all_keys())).unwrap();
    let validation = Validation {
        issuer: Some("https://idp.example".into()),
        audiences: vec!["api://pets".into()],
        ..Validation::default()
    };
    for alg in Alg::ALL {
        let text = tokens[alg.name()].as_str().unwrap();
        let token = UntrustedToken::parse(text).unwrap();
        let verified = verify(&token, &keys, &validation, signers::NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", alg.name()));
        assert_eq!(verified.claims["sub"], format!("py-{}", alg.name()));
    }
}
