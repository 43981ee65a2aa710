//! JWK parsing: each unusable entry is skipped for a precise reason; usable ones keep their
//! restrictions and never their private parts.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use keygate::jose::{Jwk, KeyKind, SkipReason};
use serde_json::json;

fn skip(value: serde_json::Value) -> SkipReason {
    Jwk::from_value(&value).unwrap_err()
}

#[test]
fn usable_keys_of_every_type() {
    for (name, kind) in [
        ("oct64", KeyKind::Oct),
        ("rsa2048", KeyKind::Rsa),
        ("rsa3072", KeyKind::Rsa),
        ("p256", KeyKind::P256),
        ("p384", KeyKind::P384),
        ("p521", KeyKind::P521),
        ("ed25519", KeyKind::Ed25519),
    ] {
        // private JWKs too: the private members are ignored, only the public part is kept
        let key = Jwk::from_value(&private_jwk(name)).unwrap();
        assert_eq!(key.material.kind(), kind, "{name}");
        assert_eq!(key.kid, None);
    }
    let mut restricted = public_jwk("p256", "k1");
    restricted["alg"] = json!("ES256");
    restricted["use"] = json!("sig");
    restricted["key_ops"] = json!(["verify", "sign"]);
    let key = Jwk::from_value(&restricted).unwrap();
    assert_eq!(key.kid.as_deref(), Some("k1"));
    assert_eq!(key.alg.as_deref(), Some("ES256"));
    assert_eq!(key.usage.as_deref(), Some("sig"));
    assert_eq!(key.key_ops.as_ref().unwrap().len(), 2);
}

#[test]
fn skip_reasons_are_precise() {
    let rsa = public_jwk("rsa2048", "r");
    let p256 = public_jwk("p256", "e");
    let with = |base: &serde_json::Value, name: &str, value: serde_json::Value| {
        let mut v = base.clone();
        v[name] = value;
        v
    };
    assert_eq!(skip(json!([])), SkipReason::NotObject);
    assert_eq!(skip(json!({"kid": "x"})), SkipReason::BadMember);
    assert_eq!(skip(with(&rsa, "kid", json!(1))), SkipReason::BadMember);
    assert_eq!(
        skip(with(&rsa, "alg", json!(["RS256"]))),
        SkipReason::BadMember
    );
    assert_eq!(skip(with(&rsa, "use", json!(null))), SkipReason::BadMember);
    assert_eq!(
        skip(with(&rsa, "key_ops", json!(["verify", 1]))),
        SkipReason::BadMember
    );
    assert_eq!(
        skip(with(&rsa, "kty", json!("rsa"))),
        SkipReason::UnsupportedKeyType
    );
    assert_eq!(skip(public_jwk("rsa1024", "s")), SkipReason::RsaSize);
    let huge_n = b64(&[0xff; 1025]);
    assert_eq!(skip(with(&rsa, "n", json!(huge_n))), SkipReason::RsaSize);
    assert_eq!(skip(with(&rsa, "e", json!("AA"))), SkipReason::MalformedKey);
    assert_eq!(
        skip(with(&rsa, "n", json!("not base64!"))),
        SkipReason::MalformedKey
    );
    assert_eq!(
        skip(with(&p256, "crv", json!("P-192"))),
        SkipReason::UnsupportedCurve
    );
    assert_eq!(skip(with(&p256, "crv", json!(256))), SkipReason::BadMember);
    let short = b64(&unb64(p256["x"].as_str().unwrap())[1..]);
    assert_eq!(
        skip(with(&p256, "x", json!(short))),
        SkipReason::MalformedKey
    );
    // a point that is not on the curve
    let mut y = unb64(p256["y"].as_str().unwrap());
    y[31] ^= 1;
    assert_eq!(
        skip(with(&p256, "y", json!(b64(&y)))),
        SkipReason::MalformedKey
    );
    // P-384 coordinates under a P-256 label
    let p384 = public_jwk("p384", "x");
    assert_eq!(
        skip(with(&p384, "crv", json!("P-256"))),
        SkipReason::MalformedKey
    );
    let ed = public_jwk("ed25519", "d");
    assert_eq!(
        skip(with(&ed, "crv", json!("X25519"))),
        SkipReason::UnsupportedCurve
    );
    assert_eq!(
        skip(with(&ed, "x", json!(b64(&[0; 32])))),
        SkipReason::WeakKey
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        skip(with(&ed, "x", json!(b64(&identity)))),
        SkipReason::WeakKey
    );
    assert_eq!(skip(json!({"kty": "oct", "k": ""})), SkipReason::WeakKey);
    assert_eq!(skip(json!({"kty": "oct"})), SkipReason::MalformedKey);
    for reason in [
        SkipReason::NotObject,
        SkipReason::RsaSize,
        SkipReason::TooMany,
    ] {
        assert!(!reason.code().is_empty());
    }
}
