//! README "What is accepted": "`jwk`, `jku`, `x5u`, `x5c` in the header are ignored: keys only
//! ever come from the key manager's JWKS" (issue 20, finding 9). A genuine token carrying them
//! verifies with the JWKS key; a token signed by a key of its own header never does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::Validation;
use keygate::jose::{verify, KeySet, UntrustedToken};
use serde_json::{json, Value};
use support::signers::*;

/// Header members that would name a key elsewhere, all pointing at the attacker's key.
fn key_members(attacker: &Value) -> Value {
    json!({
        "jwk": attacker,
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBszCCAVmgAwIBAgIUQ2F0dGFja2Vy"],
    })
}

fn code(token: &str, keys: &KeySet) -> String {
    let token = UntrustedToken::parse(token).unwrap();
    match verify(&token, keys, &Validation::default(), NOW) {
        Ok(_) => "valid".into(),
        Err(e) => e.code().into(),
    }
}

fn with_members(base: Value, members: &Value) -> Value {
    let mut header = base;
    for (name, value) in members.as_object().unwrap() {
        header[name] = value.clone();
    }
    header
}

#[test]
fn key_members_of_the_header_are_ignored() {
    // The key manager publishes the P-256 key; the attacker holds the P-384 and Ed25519 keys.
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    for (alg, attacker_key) in [("ES384", "p384"), ("EdDSA", "ed25519"), ("ES256", "p256")] {
        let mut attacker = public_jwk(attacker_key, "k-p256");
        attacker.as_object_mut().unwrap().remove("kid");
        let members = key_members(&attacker);

        if attacker_key == "p256" {
            // A genuine token (the JWKS key signed it) carrying the members: they change
            // nothing, with or without a kid.
            for base in [json!({"alg": alg, "kid": "k-p256"}), json!({"alg": alg})] {
                let header = with_members(base, &members);
                assert_eq!(code(&token(&header, &claims(), "p256"), &keys), "valid");
            }
            continue;
        }
        // Signed by the attacker's own key, which its header carries: never verified with it.
        let kid = with_members(json!({"alg": alg, "kid": "k-p256"}), &members);
        assert_eq!(
            code(&token(&kid, &claims(), attacker_key), &keys),
            "key_alg_mismatch",
            "{alg} under the JWKS key's kid"
        );
        let kidless = with_members(json!({"alg": alg}), &members);
        assert_eq!(
            code(&token(&kidless, &claims(), attacker_key), &keys),
            "no_matching_key",
            "{alg} without a kid"
        );
    }
    // Same algorithm as the JWKS key, signed by another P-256 key the header carries.
    let stranger = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let point = stranger.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())});
    for base in [
        json!({"alg": "ES256", "kid": "k-p256"}),
        json!({"alg": "ES256"}),
    ] {
        let header = with_members(base, &key_members(&jwk));
        let input = signing_input(&header, &claims());
        let signature: p256::ecdsa::Signature =
            p256::ecdsa::signature::Signer::sign(&stranger, input.as_bytes());
        let forged = format!("{input}.{}", b64(&signature.to_bytes()));
        assert_eq!(code(&forged, &keys), "signature_invalid", "{header}");
    }
}
