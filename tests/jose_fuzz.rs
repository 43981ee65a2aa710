//! Random input never panics: arbitrary strings, arbitrary JWKS bytes, and random mutations of
//! genuine tokens. Mutated genuine tokens must never verify unless unchanged.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::Validation;
use keygate::jose::{verify, KeySet, UntrustedToken};
use proptest::prelude::*;
use serde_json::json;
use std::sync::OnceLock;
use support::signers::*;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::from_json(&jwks(&all_keys())).unwrap())
}

fn genuine() -> &'static Vec<String> {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        ["HS256", "ES256", "ES384", "EdDSA", "RS256"]
            .iter()
            .map(|alg| {
                let (_, key, kid) = ALG_KEYS.iter().find(|(a, _, _)| a == alg).unwrap();
                token(&json!({"alg": alg, "kid": kid}), &claims(), key)
            })
            .collect()
    })
}

fn judge(text: &str) -> bool {
    match UntrustedToken::parse(text) {
        Ok(t) => verify(&t, keys(), &Validation::default(), NOW).is_ok(),
        Err(e) => {
            assert!(!e.code().is_empty());
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,400}") {
        prop_assert!(!judge(&text));
    }

    #[test]
    fn dotted_base64ish_strings_never_panic(a in "[A-Za-z0-9_=+/-]{0,80}", b in "[A-Za-z0-9_-]{0,120}", c in "[A-Za-z0-9_-]{0,200}") {
        let text = [a, b, c].join(".");
        prop_assert!(!judge(&text));
    }

    #[test]
    fn arbitrary_jwks_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(set) = KeySet::from_json(&bytes) {
            prop_assert!(!set.is_empty());
        }
    }

    #[test]
    fn json_shaped_jwks_never_panic(kty in "RSA|EC|OKP|oct|x", crv in "P-256|P-384|P-521|Ed25519|Ed448|", x in "[A-Za-z0-9_-]{0,90}", n in "[A-Za-z0-9_-]{0,400}") {
        let doc = json!({"keys": [{"kty": kty, "crv": crv, "x": x, "y": x, "n": n, "e": "AQAB", "k": x}]});
        let _ = KeySet::from_json(&serde_json::to_vec(&doc).unwrap());
    }

    #[test]
    fn mutated_genuine_tokens_never_verify(which in 0usize..5, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let original = &genuine()[which];
        let mut bytes = original.clone().into_bytes();
        for (pos, byte) in edits {
            let i = pos % bytes.len();
            // keep it ASCII so it stays a &str; the parser must cope with anything else anyway
            bytes[i] = byte & 0x7f;
        }
        let text = String::from_utf8(bytes).unwrap();
        let unchanged = text == *original;
        let ok = judge(&text);
        prop_assert!(!ok || unchanged);
    }
}

#[test]
fn unmutated_genuine_tokens_verify() {
    for t in genuine() {
        assert!(judge(t));
    }
}
