//! Verification decisions with tokens signed for real by every algorithm.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::Validation;
use keygate::jose::{verify, KeyConflict, KeySet, TokenError, UntrustedToken};
use serde_json::{json, Value};
use support::signers::*;

fn keyset() -> KeySet {
    KeySet::from_json(&jwks(&all_keys())).unwrap()
}

fn check(token: &str, keys: &KeySet, validation: &Validation) -> Result<Value, TokenError> {
    let parsed = UntrustedToken::parse(token)?;
    verify(&parsed, keys, validation, NOW).map(|v| Value::Object(v.claims))
}

fn code(token: &str, keys: &KeySet) -> &'static str {
    match check(token, keys, &Validation::default()) {
        Ok(_) => "valid",
        Err(err) => err.code(),
    }
}

#[test]
fn every_algorithm_verifies_with_and_without_kid() {
    let keys = keyset();
    for (alg, key, kid) in ALG_KEYS {
        let with_kid = token(
            &json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
            &claims(),
            key,
        );
        let verified = verify(
            &UntrustedToken::parse(&with_kid).unwrap(),
            &keys,
            &Validation::default(),
            NOW,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.kid.as_deref(), Some(kid));
        assert_eq!(verified.claims["sub"], "user-1");
        // without kid, every key that fits the alg is tried
        let without_kid = token(&json!({"alg": alg}), &claims(), key);
        assert_eq!(code(&without_kid, &keys), "valid", "{alg} without kid");
    }
}

#[test]
fn tampering_with_any_part_breaks_the_signature() {
    let keys = keyset();
    for (alg, key, kid) in ALG_KEYS {
        let good = token(&json!({"alg": alg, "kid": kid}), &claims(), key);
        let parts: Vec<&str> = good.split('.').collect();
        // payload: same header and signature, different claims
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let forged_payload = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&evil).unwrap()),
            parts[2]
        );
        assert_eq!(
            code(&forged_payload, &keys),
            "signature_invalid",
            "{alg} payload"
        );
        // header: an extra member changes the signing input
        let header = json!({"alg": alg, "kid": kid, "x": 1});
        let forged_header = format!(
            "{}.{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            parts[1],
            parts[2]
        );
        assert_eq!(
            code(&forged_header, &keys),
            "signature_invalid",
            "{alg} header"
        );
        // signature: flip one bit in the middle
        let mut sig = unb64(parts[2]);
        let mid = sig.len() / 2;
        sig[mid] ^= 0x01;
        let forged_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(
            code(&forged_sig, &keys),
            "signature_invalid",
            "{alg} signature"
        );
    }
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    let keys = keyset();
    for none in ["none", "None", "NONE", "nOnE"] {
        let input = signing_input(&json!({"alg": none}), &claims());
        for sig in ["", "AAAA"] {
            let token = format!("{input}.{sig}");
            let err = check(&token, &keys, &Validation::default()).unwrap_err();
            assert_eq!(err.code(), "alg_not_allowed", "{none}");
            assert!(err.to_string().contains(none));
        }
    }
}

#[test]
fn unknown_algorithms_are_unsupported() {
    let keys = keyset();
    for alg in ["HS1", "ES256K", "Ed448", "RSA-OAEP", "hs256", "\u{1}x"] {
        let token = format!(
            "{}.{}",
            signing_input(&json!({"alg": alg}), &claims()),
            b64(&[0; 64])
        );
        let err = check(&token, &keys, &Validation::default()).unwrap_err();
        assert_eq!(err.code(), "unsupported_alg", "{alg}");
        assert!(
            !err.to_string().contains('\u{1}'),
            "control characters are not echoed"
        );
    }
}

#[test]
fn configured_algorithms_restrict() {
    let keys = keyset();
    let v = Validation {
        algorithms: vec!["RS256".into(), "ES256".into()],
        ..Validation::default()
    };
    let es = token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256");
    assert!(check(&es, &keys, &v).is_ok());
    let hs = token(&json!({"alg": "HS256", "kid": "k-oct"}), &claims(), "oct64");
    assert_eq!(check(&hs, &keys, &v).unwrap_err().code(), "alg_not_allowed");
}

#[test]
fn hmac_keyed_with_the_rsa_public_key_is_refused() {
    // The classic confusion attack: the attacker knows the RSA public key and uses its bytes
    // (here the JWK JSON and the raw modulus) as an HMAC secret, naming the RSA key's kid.
    let keys = keyset();
    let public = public_jwk("rsa2048", "k-rsa");
    let secrets = [
        serde_json::to_vec(&public).unwrap(),
        unb64(public["n"].as_str().unwrap()),
    ];
    for secret in secrets {
        for (alg, hash) in [("HS256", 256), ("HS384", 384), ("HS512", 512)] {
            let input = signing_input(&json!({"alg": alg, "kid": "k-rsa"}), &claims());
            let token = format!(
                "{input}.{}",
                b64(&hmac_sign(hash, &secret, input.as_bytes()))
            );
            let err = check(&token, &keys, &Validation::default()).unwrap_err();
            assert_eq!(
                err,
                TokenError::KeyConflict {
                    kid: "\"k-rsa\"".into(),
                    alg: alg_name(alg),
                    conflict: KeyConflict::KeyType
                }
            );
            // Without kid no oct key fits... except the set's real oct key, which fails the MAC.
            let input = signing_input(&json!({"alg": alg}), &claims());
            let token = format!(
                "{input}.{}",
                b64(&hmac_sign(hash, &secret, input.as_bytes()))
            );
            assert_eq!(code(&token, &keys), "signature_invalid");
            let rsa_only = KeySet::from_json(&jwks(std::slice::from_ref(&public))).unwrap();
            assert_eq!(code(&token, &rsa_only), "no_matching_key");
        }
    }
}

fn alg_name(alg: &str) -> &'static str {
    keygate::jose::Alg::from_name(alg).unwrap().name()
}

#[test]
fn kid_of_a_key_of_another_type_is_a_conflict() {
    let keys = keyset();
    // ES256 signature presented under the Ed25519 key's kid, and RS256 under the P-256 kid.
    let es = token(&json!({"alg": "ES256", "kid": "k-ed"}), &claims(), "p256");
    assert_eq!(code(&es, &keys), "key_alg_mismatch");
    let rs = token(
        &json!({"alg": "RS256", "kid": "k-p256"}),
        &claims(),
        "rsa2048",
    );
    assert_eq!(code(&rs, &keys), "key_alg_mismatch");
    // ES384 signed with P-384 but naming the P-256 key: curve mismatch
    let es384 = token(&json!({"alg": "ES384", "kid": "k-p256"}), &claims(), "p384");
    assert_eq!(code(&es384, &keys), "key_alg_mismatch");
}

#[test]
fn unknown_and_unusable_kids_are_told_apart() {
    let mut entries = all_keys();
    entries.push(public_jwk("rsa1024", "k-small"));
    let keys = KeySet::from_json(&jwks(&entries)).unwrap();
    assert_eq!(keys.skipped(), 1);
    assert!(!keys.contains_kid("k-small"));
    let small = token(
        &json!({"alg": "RS256", "kid": "k-small"}),
        &claims(),
        "rsa1024",
    );
    assert_eq!(code(&small, &keys), "key_unusable");
    let unknown = token(
        &json!({"alg": "RS256", "kid": "rotated-away"}),
        &claims(),
        "rsa2048",
    );
    let err = check(&unknown, &keys, &Validation::default()).unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKid {
            kid: "\"rotated-away\"".into()
        }
    );
    // the 1024-bit key's signature never verifies without kid either
    let small_no_kid = token(&json!({"alg": "RS256"}), &claims(), "rsa1024");
    assert_eq!(code(&small_no_kid, &keys), "signature_malformed");
}

#[test]
fn jwk_alg_use_and_key_ops_restrict_the_key() {
    let mut restricted = public_jwk("rsa2048", "k-rsa");
    restricted["alg"] = json!("PS256");
    let keys = KeySet::from_json(&jwks(&[restricted])).unwrap();
    let rs = token(
        &json!({"alg": "RS256", "kid": "k-rsa"}),
        &claims(),
        "rsa2048",
    );
    let err = check(&rs, &keys, &Validation::default()).unwrap_err();
    assert!(matches!(
        err,
        TokenError::KeyConflict {
            conflict: KeyConflict::JwkAlg,
            ..
        }
    ));
    let ps = token(
        &json!({"alg": "PS256", "kid": "k-rsa"}),
        &claims(),
        "rsa2048",
    );
    assert_eq!(code(&ps, &keys), "valid");

    let mut enc = public_jwk("rsa2048", "k-rsa");
    enc["use"] = json!("enc");
    let keys = KeySet::from_json(&jwks(&[enc])).unwrap();
    let err = check(&rs, &keys, &Validation::default()).unwrap_err();
    assert!(matches!(
        err,
        TokenError::KeyConflict {
            conflict: KeyConflict::JwkUse,
            ..
        }
    ));

    let mut ops = public_jwk("rsa2048", "k-rsa");
    ops["key_ops"] = json!(["encrypt"]);
    let keys = KeySet::from_json(&jwks(&[ops])).unwrap();
    let err = check(&rs, &keys, &Validation::default()).unwrap_err();
    assert!(matches!(
        err,
        TokenError::KeyConflict {
            conflict: KeyConflict::JwkKeyOps,
            ..
        }
    ));

    let mut ok = public_jwk("rsa2048", "k-rsa");
    ok["use"] = json!("sig");
    ok["key_ops"] = json!(["verify"]);
    ok["alg"] = json!("RS256");
    let keys = KeySet::from_json(&jwks(&[ok])).unwrap();
    assert_eq!(code(&rs, &keys), "valid");
}

#[test]
fn hmac_secret_shorter_than_the_hash_is_refused() {
    let keys = KeySet::from_json(&jwks(&[public_jwk("oct16", "k-short")])).unwrap();
    for alg in ["HS256", "HS384", "HS512"] {
        let t = token(&json!({"alg": alg, "kid": "k-short"}), &claims(), "oct16");
        assert_eq!(code(&t, &keys), "key_too_weak", "{alg}");
    }
    // 64 bytes is enough for all three; a 32-byte secret is enough for HS256 only
    let secret32 = vec![7u8; 32];
    let keys = KeySet::from_json(&jwks(&[json!({"kty": "oct", "k": b64(&secret32)})])).unwrap();
    for (alg, hash, expected) in [("HS256", 256, "valid"), ("HS384", 384, "key_too_weak")] {
        let input = signing_input(&json!({"alg": alg}), &claims());
        let t = format!(
            "{input}.{}",
            b64(&hmac_sign(hash, &secret32, input.as_bytes()))
        );
        assert_eq!(code(&t, &keys), expected, "{alg}");
    }
}

#[test]
fn pss_salt_must_equal_hash_length() {
    let keys = keyset();
    let input = signing_input(&json!({"alg": "PS256", "kid": "k-rsa"}), &claims());
    for (salt, expected) in [
        (32, "valid"),
        (0, "signature_invalid"),
        (20, "signature_invalid"),
        (64, "signature_invalid"),
    ] {
        let t = format!(
            "{input}.{}",
            b64(&pss_sign("rsa2048", 256, salt, input.as_bytes()))
        );
        assert_eq!(code(&t, &keys), expected, "salt {salt}");
    }
}

#[test]
fn claims_are_checked_after_the_signature() {
    let keys = keyset();
    let sign_with =
        |claims: Value| token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims, "p256");
    let base = claims();
    let with = |name: &str, value: Value| {
        let mut c = base.clone();
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let v = Validation {
        issuer: Some("https://idp.example".into()),
        audiences: vec!["api://pets".into()],
        ..Validation::default()
    };
    let run = |claims: Value, v: &Validation| match check(&sign_with(claims), &keys, v) {
        Ok(_) => "valid",
        Err(e) => e.code(),
    };
    assert_eq!(run(base.clone(), &v), "valid");
    assert_eq!(run(with("exp", json!(NOW)), &v), "token_expired");
    assert_eq!(run(with("exp", json!(NOW - 0.5)), &v), "token_expired");
    assert_eq!(run(with("exp", json!(NOW + 0.5)), &v), "valid");
    assert_eq!(
        run(with("nbf", json!(NOW + 1.0)), &v),
        "token_not_yet_valid"
    );
    assert_eq!(
        run(with("iss", json!("https://evil.example")), &v),
        "issuer_mismatch"
    );
    assert_eq!(run(without("iss"), &v), "issuer_mismatch");
    assert_eq!(
        run(with("aud", json!("api://other")), &v),
        "audience_mismatch"
    );
    assert_eq!(run(without("aud"), &v), "audience_mismatch");
    assert_eq!(run(without("exp"), &v), "missing_exp");
    assert_eq!(run(with("exp", json!("soon")), &v), "invalid_claim");
    let lenient = Validation {
        require_exp: false,
        ..v.clone()
    };
    assert_eq!(run(without("exp"), &lenient), "valid");
    let skewed = Validation {
        leeway_seconds: 60,
        ..v.clone()
    };
    assert_eq!(run(with("exp", json!(NOW - 30.0)), &skewed), "valid");
    // No issuer/audience configured: not checked.
    assert_eq!(
        run(
            with("iss", json!("https://evil.example")),
            &Validation::default()
        ),
        "valid"
    );
    assert_eq!(run(without("aud"), &Validation::default()), "valid");

    // An expired token with a bad signature is reported as a bad signature.
    let expired = sign_with(with("exp", json!(NOW - 100.0)));
    let mut parts: Vec<String> = expired.split('.').map(str::to_owned).collect();
    let mut sig = unb64(&parts[2]);
    sig[5] ^= 0x40;
    parts[2] = b64(&sig);
    assert_eq!(
        check(&parts.join("."), &keys, &v).unwrap_err().code(),
        "signature_invalid"
    );
}

#[test]
fn degenerate_signatures_are_refused() {
    let keys = keyset();
    let cases: [(&str, &str, usize); 8] = [
        ("HS256", "k-oct", 32),
        ("RS256", "k-rsa", 256),
        ("PS256", "k-rsa", 256),
        ("RS512", "k-rsa3072", 384),
        ("ES256", "k-p256", 64),
        ("ES384", "k-p384", 96),
        ("ES512", "k-p521", 132),
        ("EdDSA", "k-ed", 64),
    ];
    for (alg, kid, len) in cases {
        let input = signing_input(&json!({"alg": alg, "kid": kid}), &claims());
        let with_sig = |sig: &[u8]| format!("{input}.{}", b64(sig));
        // empty and wrong lengths are malformed
        for bad_len in [0, 1, len - 1, len + 1, 2 * len] {
            let t = with_sig(&vec![0x11; bad_len]);
            assert_eq!(
                code(&t, &keys),
                "signature_malformed",
                "{alg} len {bad_len}"
            );
        }
        // all zero (r = s = 0 for ECDSA) at the right length never verifies
        assert_eq!(
            code(&with_sig(&vec![0; len]), &keys),
            "signature_invalid",
            "{alg} zeros"
        );
        // all 0xff: for RSA above the modulus, for ECDSA scalars above the order
        assert_eq!(
            code(&with_sig(&vec![0xff; len]), &keys),
            "signature_invalid",
            "{alg} ones"
        );
    }
}

#[test]
fn der_encoded_ecdsa_is_refused() {
    let keys = keyset();
    let input = signing_input(&json!({"alg": "ES256", "kid": "k-p256"}), &claims());
    let raw = sign("ES256", "p256", input.as_bytes());
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let der = sig.to_der();
    let t = format!("{input}.{}", b64(der.as_bytes()));
    let err = check(&t, &keys, &Validation::default()).unwrap_err();
    assert_eq!(err.code(), "signature_malformed");
    assert!(err.to_string().contains("r||s"));
    // the same signature raw verifies, so only the encoding was wrong
    assert_eq!(code(&format!("{input}.{}", b64(&raw)), &keys), "valid");
}

#[test]
fn high_s_ecdsa_is_accepted() {
    // Decision documented in backends.rs: JWS does not require low-s.
    use p256::elliptic_curve::ops::Neg;
    let keys = keyset();
    let input = signing_input(&json!({"alg": "ES256", "kid": "k-p256"}), &claims());
    let sig = p256::ecdsa::Signature::from_slice(&sign("ES256", "p256", input.as_bytes())).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, s.as_ref().neg()).unwrap();
    assert_ne!(flipped.to_bytes(), sig.to_bytes());
    assert_eq!(
        code(&format!("{input}.{}", b64(&flipped.to_bytes())), &keys),
        "valid"
    );
}

#[test]
fn rsa_signature_not_below_the_modulus_is_refused() {
    // s + n encodes the same residue as s when it fits in the modulus length; it must not verify.
    use rsa::BigUint;
    let keys = keyset();
    let input = signing_input(&json!({"alg": "RS256", "kid": "k-rsa"}), &claims());
    let sig = sign("RS256", "rsa2048", input.as_bytes());
    let n = BigUint::from_bytes_be(&unb64(public_jwk("rsa2048", "k")["n"].as_str().unwrap()));
    let bumped = (BigUint::from_bytes_be(&sig) + &n).to_bytes_be();
    if bumped.len() == sig.len() {
        assert_eq!(
            code(&format!("{input}.{}", b64(&bumped)), &keys),
            "signature_invalid"
        );
    }
    assert_eq!(code(&format!("{input}.{}", b64(&sig)), &keys), "valid");
}

#[test]
fn jwks_with_junk_beside_good_keys() {
    let mut entries = vec![
        json!("not an object"),
        json!({"kty": "RSA", "kid": "no-n", "e": "AQAB"}),
        json!({"kty": "EC", "kid": "bad-point", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
        json!({"kty": "EC", "kid": "short-x", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])}),
        json!({"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"}),
        json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": b64(&[9; 57])}),
        json!({"kty": "OKP", "kid": "small-order", "crv": "Ed25519", "x": b64(&[0; 32])}),
        json!({"kty": "oct", "kid": "empty", "k": ""}),
        json!({"kty": "RSA", "kid": 42, "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "padded", "n": "AQAB=", "e": "AQAB"}),
        json!({"kty": "XYZ", "kid": "alien"}),
        json!({"kid": "no-kty"}),
        json!({"kty": "RSA", "kid": "ops", "key_ops": "verify", "n": "AQAB", "e": "AQAB"}),
        public_jwk("rsa1024", "small"),
    ];
    let junk = entries.len();
    entries.extend(all_keys());
    let keys = KeySet::from_json(&jwks(&entries)).unwrap();
    assert_eq!(keys.skipped(), junk);
    assert_eq!(keys.len(), all_keys().len());
    for (alg, key, kid) in ALG_KEYS {
        assert_eq!(
            code(
                &token(&json!({"alg": alg, "kid": kid}), &claims(), key),
                &keys
            ),
            "valid"
        );
    }
    let ed448 = format!(
        "{}.{}",
        signing_input(&json!({"alg": "EdDSA", "kid": "ed448"}), &claims()),
        b64(&[1; 64])
    );
    assert_eq!(code(&ed448, &keys), "key_unusable");
}

#[test]
fn jwks_documents_that_fail_as_a_whole() {
    let code = |bytes: &[u8]| KeySet::from_json(bytes).unwrap_err().code();
    assert_eq!(code(b"not json"), "jwks_not_json");
    assert_eq!(code(br#"{"keys":[],"keys":[]}"#), "jwks_not_json");
    assert_eq!(code(b"[]"), "jwks_not_json");
    assert_eq!(code(br#"{"keys":{}}"#), "jwks_no_keys");
    assert_eq!(code(br#"{"key":[]}"#), "jwks_no_keys");
    assert_eq!(code(br#"{"keys":[]}"#), "jwks_no_usable_key");
    assert_eq!(
        code(br#"{"keys":[{"kty":"oct","k":""}]}"#),
        "jwks_no_usable_key"
    );
    let huge = vec![b' '; 512 * 1024 + 1];
    assert_eq!(code(&huge), "jwks_too_large");
}

#[test]
fn jwks_entry_count_is_bounded() {
    // README: the first 64 entries are used.
    let mut entries: Vec<Value> = (0..64)
        .map(|i| public_jwk("p256", &format!("k{i}")))
        .collect();
    entries.push(public_jwk("ed25519", "late"));
    let keys = KeySet::from_json(&jwks(&entries)).unwrap();
    assert_eq!(keys.len(), 64);
    assert_eq!(keys.skipped(), 1);
    assert_eq!(
        code(
            &token(
                &json!({"alg": "EdDSA", "kid": "late"}),
                &claims(),
                "ed25519"
            ),
            &keys
        ),
        "key_unusable"
    );
}

#[test]
fn several_keys_share_a_kid_during_rotation() {
    let mut old = public_jwk("p256", "same");
    old["x"] = public_jwk("p384", "x")["x"].clone(); // not a valid P-256 key: skipped
    let keys = KeySet::from_json(&jwks(&[
        old,
        public_jwk("rsa2048", "same"),
        public_jwk("p256", "same"),
    ]))
    .unwrap();
    assert_eq!(
        code(
            &token(&json!({"alg": "ES256", "kid": "same"}), &claims(), "p256"),
            &keys
        ),
        "valid"
    );
    assert_eq!(
        code(
            &token(
                &json!({"alg": "RS256", "kid": "same"}),
                &claims(),
                "rsa2048"
            ),
            &keys
        ),
        "valid"
    );
}

#[test]
fn error_text_never_contains_the_token_or_secrets() {
    let keys = keyset();
    let t = token(
        &json!({"alg": "HS256", "kid": "k-oct"}),
        &with_secret_claim(),
        "oct64",
    );
    let mut parts: Vec<&str> = t.split('.').collect();
    let bad_sig = b64(&[0u8; 32]);
    parts[2] = &bad_sig;
    let err = check(&parts.join("."), &keys, &Validation::default()).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3t"));
    assert!(!text.contains(parts[1]));
    let secret = private_jwk("oct64")["k"].as_str().unwrap().to_owned();
    assert!(!format!("{keys:?}").contains(&secret));
}

fn with_secret_claim() -> Value {
    let mut c = claims();
    c["note"] = json!("s3cr3t");
    c
}

/// `n` distinct Ed25519 keys (cheap to make and check), as signing keys and their public JWKs.
fn ed25519_keys(n: u8, kid: Option<&str>) -> (Vec<ed25519_dalek::SigningKey>, Vec<Value>) {
    let signing: Vec<_> = (1..=n)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
        .collect();
    let public = signing
        .iter()
        .map(|k| {
            let mut jwk = json!({"kty": "OKP", "crv": "Ed25519",
                "x": b64(k.verifying_key().as_bytes())});
            if let Some(kid) = kid {
                jwk["kid"] = json!(kid);
            }
            jwk
        })
        .collect();
    (signing, public)
}

fn ed25519_token(key: &ed25519_dalek::SigningKey, header: &Value) -> String {
    use ed25519_dalek::Signer;
    let input = signing_input(header, &claims());
    format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()))
}

#[test]
fn a_token_without_kid_is_tried_against_a_bounded_number_of_keys() {
    assert_eq!(keygate::jose::MAX_KEYS_TRIED, 4);
    let (signing, public) = ed25519_keys(6, None);
    let keys = KeySet::from_json(&jwks(&public)).unwrap();
    let kidless = |i: usize| ed25519_token(&signing[i], &json!({"alg": "EdDSA"}));
    // The first four keys in JWKS order are tried.
    for i in 0..4 {
        assert_eq!(code(&kidless(i), &keys), "valid", "key {i}");
    }
    // Beyond them the token is refused, naming why, instead of costing up to 64 checks.
    let err = check(&kidless(5), &keys, &Validation::default()).unwrap_err();
    assert_eq!(
        err,
        TokenError::TooManyFittingKeys {
            alg: "EdDSA",
            kid: None,
            fitting: 6
        }
    );
    assert_eq!(err.code(), "too_many_fitting_keys");
    assert!(err.to_string().contains("no kid"), "{err}");
    // A forged kid-less token gets the same answer.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[99; 32]);
    let forged = ed25519_token(&stranger, &json!({"alg": "EdDSA"}));
    assert_eq!(code(&forged, &keys), "too_many_fitting_keys");
    // Exactly the bound: a forged token is a plain bad signature.
    let four = KeySet::from_json(&jwks(&public[..4])).unwrap();
    assert_eq!(code(&forged, &four), "signature_invalid");
    // With kids, any key of the set is found by its kid.
    let with_kids: Vec<Value> = public
        .iter()
        .enumerate()
        .map(|(i, jwk)| {
            let mut jwk = jwk.clone();
            jwk["kid"] = json!(format!("k{i}"));
            jwk
        })
        .collect();
    let keys = KeySet::from_json(&jwks(&with_kids)).unwrap();
    let sixth = ed25519_token(&signing[5], &json!({"alg": "EdDSA", "kid": "k5"}));
    assert_eq!(code(&sixth, &keys), "valid");
}

#[test]
fn duplicate_entries_of_one_kid_are_bounded_too() {
    let (signing, public) = ed25519_keys(5, Some("same"));
    let keys = KeySet::from_json(&jwks(&public)).unwrap();
    let first = ed25519_token(&signing[0], &json!({"alg": "EdDSA", "kid": "same"}));
    assert_eq!(code(&first, &keys), "valid");
    let last = ed25519_token(&signing[4], &json!({"alg": "EdDSA", "kid": "same"}));
    assert_eq!(
        check(&last, &keys, &Validation::default()).unwrap_err(),
        TokenError::TooManyFittingKeys {
            alg: "EdDSA",
            kid: Some("\"same\"".into()),
            fitting: 5
        }
    );
}
