//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) on stable through the same bodies
//! the libFuzzer targets run (fuzz/targets.rs), so a regression on a seed or on a minimized crash
//! fails `cargo test` without nightly.
#![cfg(not(target_arch = "wasm32"))]
// Test code: failing loudly on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs `body` on every file of `fuzz/corpus/<target>/`; panics name every file that panicked.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "{} has no seeds", dir.display());
    let failed: Vec<String> = entries
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
    entries.len()
}

#[test]
fn fixtures_the_targets_rely_on_load() {
    assert!(targets::fixed_keys().is_some_and(|k| k.len() == 7));
    assert!(targets::fixed_policy().is_some());
    assert_eq!(targets::genuine().len(), 13);
}

#[test]
fn every_genuine_token_verifies_so_the_token_oracle_is_not_vacuous() {
    use keygate::jose::{verify, UntrustedToken};
    let keys = targets::fixed_keys().unwrap();
    for text in targets::genuine() {
        let token = UntrustedToken::parse(text).unwrap();
        verify(&token, keys, &targets::validation(), targets::NOW).unwrap();
    }
}

#[test]
fn token_corpus() {
    replay("token", targets::token);
}

#[test]
fn the_valid_dpop_seeds_verify_so_the_dpop_oracle_is_not_vacuous() {
    use keygate::dpop::{verify_proof, ProofRules, ProofTarget};
    let algorithms = vec!["ES256".to_string(), "EdDSA".to_string()];
    let rules = ProofRules {
        algorithms: &algorithms,
        max_age_seconds: 300,
        future_skew_seconds: 5,
    };
    let uris = [targets::DPOP_URI.to_string()];
    let target = ProofTarget {
        method: "GET",
        uris: &uris,
        access_token: targets::DPOP_ACCESS_TOKEN,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dpop");
    for seed in ["valid-es256", "valid-eddsa"] {
        let proof = std::fs::read_to_string(dir.join(seed)).unwrap();
        verify_proof(&proof, &target, &rules, targets::NOW, None).unwrap();
    }
}

#[test]
fn dpop_corpus() {
    // The seeds hold a valid proof, so the oracle's accepting side runs.
    // The 11 committed seeds of fuzz/corpus/dpop.
    assert_eq!(replay("dpop", targets::dpop), 11);
}

#[test]
fn introspection_corpus() {
    // The seeds hold an active and an inactive answer, so the oracle's accepting side runs.
    assert!(replay("introspection", targets::introspection) >= 6);
    use keygate::introspection::{parse_answer, Answer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/introspection");
    let read = |seed: &str| std::fs::read(dir.join(seed)).unwrap();
    assert!(matches!(
        parse_answer(200, &read("active")),
        Ok(Answer::Active(_))
    ));
    assert_eq!(parse_answer(200, &read("inactive")), Ok(Answer::Inactive));
    assert!(parse_answer(200, &read("duplicate-active")).is_err());
}

#[test]
fn jwks_corpus() {
    replay("jwks", targets::jwks);
}

#[test]
fn policy_corpus() {
    replay("policy", targets::policy);
}

#[test]
fn declaration_corpus() {
    replay("declaration", targets::declaration);
}

#[test]
fn headers_corpus() {
    replay("headers", targets::headers);
}

#[test]
fn route_corpus() {
    replay("route", targets::route);
}
