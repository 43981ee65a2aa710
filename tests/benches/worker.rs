//! Native benchmark of one whole request through the worker (fake host, real tokens and
//! verification): a verified-token cache hit, a miss (cache off: signature every time), a public
//! resource and a denial; and DPoP: a bound token served from the cache with a fresh ES256 proof
//! per request (proof signing is setup, outside the measurement). Prints the host calls each case
//! makes per request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(not(target_arch = "wasm32"))]
#[path = "../support/signers.rs"]
mod signers;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::Duration;

    use super::signers::*;
    use criterion::{criterion_group, BatchSize, Criterion};
    use keygate::policy::Policy;
    use keygate::worker::{FakeHost, RequestAction, Worker};
    use serde_json::{json, Value};

    const NOW_MS: u64 = NOW as u64 * 1000;

    fn worker(cache_entries: usize) -> (Worker, FakeHost) {
        let cfg = json!({
            "environment": "production",
            "key_managers": [{
                "name": "idp",
                "issuer": "https://idp.example",
                "audiences": ["api://pets"],
                "jwks": {"uri": "https://idp.example/jwks", "cluster": "jwks_idp",
                         "authority": "idp.example", "path": "/jwks"}
            }],
            "apis": [{"name": "pets", "base_path": "/pets/v1", "resources": [
                {"method": "GET", "path": "/pets", "scopes": ["pets:read"]},
                {"method": "GET", "path": "/pets/{id}", "scopes": ["pets:read"]},
                {"method": "POST", "path": "/pets", "scopes": ["pets:write"]},
                {"method": "GET", "path": "/health", "public": true}
            ]}],
            "applications": [{"name": "shop",
                "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
                "subscriptions": [{"api": "pets"}]}],
            "settings": {"token_cache_entries": cache_entries, "dpop_replay_slots": 65536}
        });
        let policy = Policy::from_json(cfg.to_string().as_bytes()).unwrap();
        let mut w = Worker::new(policy, 1);
        let mut host = FakeHost::new(NOW_MS);
        w.on_tick(&mut host);
        let token = host.last_dispatch().unwrap().token;
        let keys: Vec<Value> = vec![public_jwk("rsa2048", "k-rsa"), public_jwk("p256", "k-p256")];
        host.answer(&mut w, token, 200, &jwks(&keys));
        host.record = false;
        (w, host)
    }

    fn headers(path: &str, token: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "api.example".to_string()),
            (":scheme".to_string(), "http".to_string()),
            ("user-agent".to_string(), "bench".to_string()),
            ("accept".to_string(), "*/*".to_string()),
        ];
        if let Some(token) = token {
            h.push(("authorization".to_string(), format!("Bearer {token}")));
        }
        h
    }

    fn token(alg: &str, key: &str, kid: &str) -> String {
        let mut c = claims();
        c["scope"] = json!("pets:read");
        super::signers::token(&json!({"alg": alg, "kid": kid}), &c, key)
    }

    struct Case {
        name: &'static str,
        cache: usize,
        headers: Vec<(String, String)>,
        expect: RequestAction,
    }

    fn cases() -> Vec<Case> {
        let rs = token("RS256", "rsa2048", "k-rsa");
        let es = token("ES256", "p256", "k-p256");
        vec![
            Case {
                name: "cache_hit_rs256",
                cache: 1024,
                headers: headers("/pets/v1/pets", Some(&rs)),
                expect: RequestAction::Continue,
            },
            Case {
                name: "cache_off_rs256",
                cache: 0,
                headers: headers("/pets/v1/pets", Some(&rs)),
                expect: RequestAction::Continue,
            },
            Case {
                name: "cache_off_es256",
                cache: 0,
                headers: headers("/pets/v1/pets", Some(&es)),
                expect: RequestAction::Continue,
            },
            Case {
                name: "public",
                cache: 1024,
                headers: headers("/pets/v1/health", None),
                expect: RequestAction::Continue,
            },
            Case {
                name: "denied_missing_token",
                cache: 1024,
                headers: headers("/pets/v1/pets", None),
                expect: RequestAction::Pause,
            },
        ]
    }

    fn request(c: &mut Criterion) {
        let mut group = c.benchmark_group("worker_request");
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        for case in cases() {
            let (mut w, mut host) = worker(case.cache);
            // One request to warm the cache, then one counted.
            assert_eq!(w.on_request(&mut host, 1, &case.headers), case.expect);
            host.reset_calls();
            assert_eq!(w.on_request(&mut host, 1, &case.headers), case.expect);
            println!("{}: {} host calls per request", case.name, host.calls());
            group.bench_function(case.name, |b| {
                b.iter(|| black_box(w.on_request(&mut host, 1, black_box(&case.headers))))
            });
        }
        group.finish();
    }

    /// DPoP: an RS256 token bound to a P-256 client key, cached after its first use; every
    /// request carries a new ES256 proof (checked in Rust here: the fake host has no crypto).
    fn dpop(c: &mut Criterion) {
        let mut group = c.benchmark_group("worker_request");
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        let mut claims = claims();
        claims["scope"] = json!("pets:read");
        claims["cnf"] = json!({"jkt": jwk_thumbprint(&public_jwk("p256", "x"))});
        let token =
            super::signers::token(&json!({"alg": "RS256", "kid": "k-rsa"}), &claims, "rsa2048");
        let mut next = 0u64;
        let mut fresh = move || {
            next += 1;
            let proof = dpop_proof(
                "p256",
                "ES256",
                &json!({"jti": format!("bench-{next}"), "htm": "GET",
                        "htu": "http://api.example/pets/v1/pets", "iat": NOW, "ath": ath(&token)}),
            );
            let mut h = headers("/pets/v1/pets", None);
            h.push(("authorization".to_string(), format!("DPoP {token}")));
            h.push(("dpop".to_string(), proof));
            h
        };
        let (mut w, mut host) = worker(1024);
        assert_eq!(
            w.on_request(&mut host, 1, &fresh()),
            RequestAction::Continue
        );
        host.reset_calls();
        assert_eq!(
            w.on_request(&mut host, 1, &fresh()),
            RequestAction::Continue
        );
        println!(
            "dpop_cache_hit_rs256_proof_es256: {} host calls per request ({} shared-data reads)",
            host.calls(),
            host.shared_reads()
        );
        group.bench_function("dpop_cache_hit_rs256_proof_es256", |b| {
            b.iter_batched(
                &mut fresh,
                |h| black_box(w.on_request(&mut host, 1, &h)),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }

    criterion_group!(benches, request, dpop);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
