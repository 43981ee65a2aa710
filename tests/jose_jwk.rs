//! JWK parsing: each unusable entry is skipped for a precise reason; usable ones keep their
//! restrictions and never their private parts.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::{Jwk, KeyKind, SkipReason};
use serde_json::json;
use support::signers::*;

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
    // A short coordinate is left-padded; with a non-zero byte cut off, the point is off the curve.
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

/// The first P-256 / P-521 key (by a counting seed) whose public `x` or `y` starts with a zero
/// byte, with its JWK published with that byte stripped, as some key managers do.
fn stripped_p256() -> (p256::ecdsa::SigningKey, serde_json::Value) {
    for seed in 1u32.. {
        let mut d = [0u8; 32];
        d[28..].copy_from_slice(&seed.to_be_bytes());
        let key = p256::ecdsa::SigningKey::from_slice(&d).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());
        if x[0] == 0 || y[0] == 0 {
            let strip = |c: &[u8]| b64(&c[usize::from(c[0] == 0)..]);
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": strip(&x), "y": strip(&y)});
            return (key, jwk);
        }
    }
    unreachable!()
}

#[test]
fn ec_coordinates_published_short_are_left_padded() {
    use keygate::jose::{verify, KeySet, UntrustedToken, Validation};
    use p256::ecdsa::signature::Signer;
    let (key, jwk) = stripped_p256();
    let short = ["x", "y"]
        .iter()
        .any(|c| unb64(jwk[*c].as_str().unwrap()).len() == 31);
    assert!(short, "the fixture must have a 31-byte coordinate: {jwk}");
    let parsed = Jwk::from_value(&jwk).unwrap();
    assert_eq!(parsed.material.kind(), KeyKind::P256);
    // A token signed by that key verifies against the stripped JWK.
    let input = signing_input(&json!({"alg": "ES256"}), &claims());
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    let token = format!("{input}.{}", b64(&signature.to_bytes()));
    let keys = KeySet::from_json(&jwks(std::slice::from_ref(&jwk))).unwrap();
    let verified = verify(
        &UntrustedToken::parse(&token).unwrap(),
        &keys,
        &Validation::default(),
        NOW,
    );
    assert!(verified.is_ok(), "{verified:?}");
    // Longer than the field size is refused, even when the extra byte is a leading zero.
    for c in ["x", "y"] {
        let full = p256::EncodedPoint::from(key.verifying_key());
        let coordinate = if c == "x" { full.x() } else { full.y() };
        let mut long = vec![0u8];
        long.extend_from_slice(coordinate.unwrap());
        let mut v = jwk.clone();
        v[c] = json!(b64(&long));
        assert_eq!(skip(v), SkipReason::MalformedKey, "{c}");
    }
}

#[test]
fn p521_coordinates_without_the_zero_top_byte_are_accepted() {
    // A P-521 coordinate is 66 bytes whose top byte is 0 or 1; publishers that strip leading
    // zeros send 65 bytes about half the time. Both of the test key's top bytes are zero.
    let jwk = public_jwk("p521", "k");
    let mut stripped = jwk.clone();
    for c in ["x", "y"] {
        let bytes = unb64(jwk[c].as_str().unwrap());
        assert_eq!((bytes.len(), bytes[0]), (66, 0), "{c}");
        stripped[c] = json!(b64(&bytes[1..]));
    }
    let key = Jwk::from_value(&stripped).unwrap();
    assert_eq!(key.material.kind(), KeyKind::P521);
    // The padded key is the same key: a token the original verifies, the stripped one does too.
    use keygate::jose::{verify, KeySet, UntrustedToken, Validation};
    let token = token(&json!({"alg": "ES512"}), &claims(), "p521");
    let keys = KeySet::from_json(&jwks(&[stripped])).unwrap();
    let parsed = UntrustedToken::parse(&token).unwrap();
    assert!(verify(&parsed, &keys, &Validation::default(), NOW).is_ok());
}
