//! Proof checks with proofs signed for real (P-256 and Ed25519 keys made here).

use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};

use super::*;
use crate::jose::b64;

const NOW: f64 = 1_700_000_000.0;
const URI: &str = "https://api.example.com/pets/v1/pets";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

fn algorithms() -> Vec<String> {
    ["ES256", "EdDSA", "RS256"].map(String::from).to_vec()
}

fn rules(algs: &[String]) -> ProofRules<'_> {
    ProofRules {
        algorithms: algs,
        max_age_seconds: 300,
        future_skew_seconds: 5,
    }
}

fn target() -> ProofTarget<'static> {
    ProofTarget {
        method: "GET",
        uris: Box::leak(vec![URI.to_string()].into_boxed_slice()),
        access_token: TOKEN,
    }
}

fn p256_key(seed: u8) -> p256::ecdsa::SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 1;
    p256::ecdsa::SigningKey::from_slice(&bytes).unwrap()
}

fn p256_jwk(key: &p256::ecdsa::SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256",
        "x": b64::encode(point.x().unwrap()),
        "y": b64::encode(point.y().unwrap()),
    })
}

fn claims() -> Value {
    json!({
        "jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": URI, "iat": NOW,
        "ath": access_token_hash(TOKEN),
    })
}

fn sign_with(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&signature.to_bytes()))
}

fn proof(claims: &Value) -> String {
    let key = p256_key(7);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p256_jwk(&key)});
    sign_with(&key, &header, claims)
}

fn check(proof: &str) -> Result<VerifiedProof, DpopError> {
    let algs = algorithms();
    verify_proof(proof, &target(), &rules(&algs), NOW, None)
}

fn edit(mut value: Value, name: &str, to: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        if to.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_string(), to);
        }
    }
    value
}

#[test]
fn a_valid_proof_names_its_key_thumbprint_and_jti() {
    let verified = check(&proof(&claims())).unwrap();
    let jwk = p256_jwk(&p256_key(7));
    assert_eq!(Some(verified.jkt), thumbprint(jwk.as_object().unwrap()));
    assert_eq!(verified.jti, "e1j3V_bKic8-LAEB");
    assert_eq!(verified.iat, NOW);
}

/// RFC 9449 §7.1's example access token and the `ath` it publishes for it.
#[test]
fn ath_of_the_rfc_9449_example_token() {
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn each_claim_is_checked() {
    let cases = [
        (edit(claims(), "htm", json!("POST")), DpopError::HtmMismatch),
        (edit(claims(), "htm", json!("get")), DpopError::HtmMismatch),
        (
            edit(
                claims(),
                "htu",
                json!("https://api.example.com/pets/v1/other"),
            ),
            DpopError::HtuMismatch,
        ),
        (
            edit(
                claims(),
                "htu",
                json!("http://api.example.com/pets/v1/pets"),
            ),
            DpopError::HtuMismatch,
        ),
        (
            edit(claims(), "htu", json!("/pets/v1/pets")),
            DpopError::HtuMismatch,
        ),
        (
            edit(claims(), "iat", json!(NOW - 301.0)),
            DpopError::ProofExpired,
        ),
        (
            edit(claims(), "iat", json!(NOW + 6.0)),
            DpopError::IatInFuture,
        ),
        (
            edit(claims(), "iat", json!("now")),
            DpopError::ClaimMissing { claim: "iat" },
        ),
        (
            edit(claims(), "ath", json!(access_token_hash("another token"))),
            DpopError::AthMismatch,
        ),
        (
            edit(claims(), "ath", Value::Null),
            DpopError::ClaimMissing { claim: "ath" },
        ),
        (
            edit(claims(), "jti", Value::Null),
            DpopError::ClaimMissing { claim: "jti" },
        ),
        (
            edit(claims(), "jti", json!("")),
            DpopError::ClaimMissing { claim: "jti" },
        ),
        (
            edit(claims(), "htu", Value::Null),
            DpopError::ClaimMissing { claim: "htu" },
        ),
        (
            edit(claims(), "htm", Value::Null),
            DpopError::ClaimMissing { claim: "htm" },
        ),
    ];
    for (claims, want) in cases {
        assert_eq!(check(&proof(&claims)), Err(want.clone()), "{claims}");
    }
    // Inside the window on both sides; htu differing only by normalization and query matches.
    for ok in [
        edit(claims(), "iat", json!(NOW - 299.0)),
        edit(claims(), "iat", json!(NOW + 4.5)),
        edit(
            claims(),
            "htu",
            json!("HTTPS://API.example.com:443/pets/v1/pets?x=1"),
        ),
    ] {
        assert!(check(&proof(&ok)).is_ok(), "{ok}");
    }
}

#[test]
fn header_and_key_rules() {
    let key = p256_key(7);
    let jwk = p256_jwk(&key);
    let cases = [
        (
            json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}),
            DpopError::TypInvalid,
        ),
        (json!({"alg": "ES256", "jwk": jwk}), DpopError::TypInvalid),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256"}),
            DpopError::JwkInvalid,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": "x"}),
            DpopError::JwkInvalid,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": edit(jwk.clone(), "d", json!("AAAA"))}),
            DpopError::JwkPrivate,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
            DpopError::AlgNotAllowed {
                alg: crate::jose::safe_label("HS256"),
            },
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}),
            DpopError::AlgNotAllowed {
                alg: crate::jose::safe_label("none"),
            },
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": jwk}),
            DpopError::AlgNotAllowed {
                alg: crate::jose::safe_label("ES384"),
            },
        ),
        // The key's type does not fit the alg.
        (
            json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}),
            DpopError::JwkInvalid,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p256_jwk(&p256_key(9))}),
            DpopError::SignatureInvalid,
        ),
    ];
    for (header, want) in cases {
        assert_eq!(
            check(&sign_with(&key, &header, &claims())),
            Err(want.clone()),
            "{header}"
        );
    }
    let application = json!({"typ": "application/DPoP+JWT", "alg": "ES256", "jwk": jwk});
    assert!(check(&sign_with(&key, &application, &claims())).is_ok());
    assert!(matches!(
        check("not.a.jws"),
        Err(DpopError::ProofMalformed { .. })
    ));
    assert!(matches!(check("x"), Err(DpopError::ProofMalformed { .. })));
}

#[test]
fn ed25519_proofs_verify_in_wasm_backends() {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519",
                     "x": b64::encode(key.verifying_key().as_bytes())});
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims().to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    let proof = format!("{input}.{}", b64::encode(&signature.to_bytes()));
    let verified = check(&proof).unwrap();
    assert_eq!(Some(verified.jkt), thumbprint(jwk.as_object().unwrap()));
}

#[test]
fn a_proof_without_a_request_uri_never_matches() {
    let algs = algorithms();
    let no_uri = ProofTarget {
        uris: &[],
        ..target()
    };
    assert_eq!(
        verify_proof(&proof(&claims()), &no_uri, &rules(&algs), NOW, None),
        Err(DpopError::HtuMismatch)
    );
    assert_eq!(
        verify_proof(&proof(&claims()), &target(), &rules(&algs), f64::NAN, None),
        Err(DpopError::ProofExpired)
    );
}

/// A proof whose header the key memo knows is decided without a JSON tree; every outcome must be
/// the full check's.
#[test]
fn a_known_header_is_decided_like_a_new_one() {
    let algs = algorithms();
    let key = p256_key(7);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p256_jwk(&key)});
    // Clients write `iat` as whole seconds (a fraction is read by the full check only).
    let claims = || edit(super::tests::claims(), "iat", json!(1_700_000_000_i64));
    let warm = sign_with(&key, &header, &claims());
    assert!(check(&warm).is_ok());
    let fast = |p: &str| proof::known_header(p, &target(), &rules(&algs), NOW, None);
    let full = |p: &str| proof::full_check(p, &target(), &rules(&algs), NOW, None);
    assert_eq!(
        fast(&warm),
        Some(full(&warm)),
        "an ordinary proof takes the quick path"
    );
    let variants = [
        claims(),
        edit(claims(), "htm", json!("POST")),
        edit(claims(), "htu", json!("https://api.example.com/other")),
        edit(
            claims(),
            "htu",
            json!("HTTPS://API.example.com:443/pets/v1/pets?x"),
        ),
        edit(claims(), "iat", json!(1_699_999_699_i64)),
        edit(claims(), "iat", json!(1_700_000_006_i64)),
        edit(claims(), "iat", json!(NOW + 0.5)),
        edit(claims(), "iat", json!("1700000000")),
        edit(claims(), "ath", json!("x")),
        edit(claims(), "jti", json!("")),
        edit(claims(), "jti", Value::Null),
        edit(claims(), "jti", json!("quote\"d")),
        edit(claims(), "cnf", json!({"jkt": "k"})),
        edit(claims(), "nonce", json!("n-1")),
    ];
    let mut quick = 0;
    for claims in &variants {
        let proof = sign_with(&key, &header, claims);
        let decided = full(&proof);
        if let Some(fast) = fast(&proof) {
            assert_eq!(fast, decided, "{claims}");
            quick += 1;
        }
        assert_eq!(check(&proof), decided, "{claims}");
    }
    // All but the five unusual payloads (iat a string or a fraction, no jti, an escape, nesting).
    assert_eq!(quick, variants.len() - 5);
    // Another proof's signature: refused on both paths.
    let other = sign_with(&key, &header, &edit(claims(), "jti", json!("other")));
    let forged = format!(
        "{}.{}",
        warm.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    assert_eq!(fast(&forged), Some(Err(DpopError::SignatureInvalid)));
    assert_eq!(full(&forged), Err(DpopError::SignatureInvalid));
    // A known header whose alg the rules no longer allow goes to the full check, which refuses.
    let eddsa_only = ["EdDSA".to_string()];
    let rules_now = rules(&eddsa_only);
    assert_eq!(
        proof::known_header(&warm, &target(), &rules_now, NOW, None),
        None
    );
    assert!(matches!(
        verify_proof(&warm, &target(), &rules_now, NOW, None),
        Err(DpopError::AlgNotAllowed { .. })
    ));
}
