//! Native microbenchmark: parse + verify of one access token per algorithm (`make bench`).
//!
//! Tokens are signed once up front with the committed test keys; each iteration parses the
//! compact string and verifies signature and claims against a JWKS holding one key of every type.

// Bench code: a broken fixture should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(not(target_arch = "wasm32"))]
#[path = "../support/signers.rs"]
mod signers;

// criterion is a native-only dev-dependency; the wasm32 build of this target is an empty main.
#[cfg(not(target_arch = "wasm32"))]
mod native {

    use std::hint::black_box;
    use std::time::Duration;

    use super::signers::*;
    use criterion::{criterion_group, Criterion};
    use keygate::jose::Validation;
    use keygate::jose::{verify, KeySet, UntrustedToken};
    use serde_json::json;

    fn parse_and_verify(c: &mut Criterion) {
        let jwks_bytes = jwks(&all_keys());
        let keys = KeySet::from_json(&jwks_bytes).unwrap();
        let validation = Validation {
            issuer: Some("https://idp.example".into()),
            audiences: vec!["api://pets".into()],
            ..Validation::default()
        };
        let mut group = c.benchmark_group("parse_verify");
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);
        for (alg, key, kid) in ALG_KEYS {
            let token = token(
                &json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
                &claims(),
                key,
            );
            group.bench_function(alg, |b| {
                b.iter(|| {
                    let parsed = UntrustedToken::parse(black_box(&token)).unwrap();
                    verify(&parsed, &keys, &validation, NOW).unwrap()
                })
            });
        }
        group.finish();

        let mut other = c.benchmark_group("other");
        other
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);
        let es = token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256");
        other.bench_function("parse_only", |b| {
            b.iter(|| UntrustedToken::parse(black_box(&es)).unwrap())
        });
        other.bench_function("jwks_7_keys", |b| {
            b.iter(|| KeySet::from_json(black_box(&jwks_bytes)).unwrap())
        });
        other.finish();
    }

    criterion_group!(benches, parse_and_verify);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
