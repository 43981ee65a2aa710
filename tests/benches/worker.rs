//! Native benchmark of one whole request through the worker (fake host, real tokens and
//! verification): a verified-token cache hit, a miss (cache off: signature every time), a public
//! resource and a denial, an API key request (`api_key`: one SHA-256 and one lookup); and DPoP: a bound token served from the cache with a fresh ES256 proof
//! per request (proof signing is setup, outside the measurement). Prints the host calls each case
//! makes per request. `scale`: the same cache hit with 1, 100 and 1,000 APIs (20 resources each)
//! and 3,000 applications, so the cost of a larger configuration shows as a ratio.
//!
//! Instruction counts (repeatable on a loaded machine): `KEYGATE_BENCH_APIS=1000` makes the
//! binary run `KEYGATE_BENCH_REQUESTS` (default 1,000) cache hits on that configuration in
//! `measured_requests` and exit (`KEYGATE_BENCH_CASE=api_key`: API key requests instead), for
//! `valgrind --tool=callgrind --toggle-collect='*measured_requests*' target/release/deps/worker-…`.

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
    use keygate::policy::api_keys::{hash_hex, hash_key};
    use keygate::policy::Policy;
    use keygate::worker::{FakeHost, RequestAction, Worker};
    use serde_json::{json, Value};

    const NOW_MS: u64 = NOW as u64 * 1000;
    /// The API key of the `api_key` case (its SHA-256 is in the configuration).
    const API_KEY: &str = "kg_bG9uZy1saXZlZC1iZW5jaC1rZXktb2YtMzItYnl0ZXMhIQ";

    fn api_key_headers() -> Vec<(String, String)> {
        let mut h = headers("/keyed/v1/pets", None);
        h.push(("apikey".to_string(), API_KEY.to_string()));
        h
    }

    fn worker(cache_entries: usize) -> (Worker, FakeHost) {
        worker_with(cache_entries, 0)
    }

    /// The bench configuration plus `extra` generated APIs (20 resources each, added before the
    /// pets API so a scan meets them first) and 3,000 applications subscribed to some of them.
    fn worker_with(cache_entries: usize, extra: usize) -> (Worker, FakeHost) {
        let mut cfg = json!({
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
            ]}, {"name": "keyed", "base_path": "/keyed/v1", "security": ["api_key"], "resources": [
                {"method": "GET", "path": "/pets"}
            ]}],
            "applications": [{"name": "shop",
                "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
                "subscriptions": [{"api": "pets"}, {"api": "keyed"}],
                "api_keys": [{"name": "bench", "sha256": hash_hex(&hash_key(API_KEY))}]}],
            "settings": {"token_cache_entries": cache_entries, "dpop_replay_slots": 65536}
        });
        if extra > 0 {
            let mut apis: Vec<Value> = (0..extra)
                .map(|i| {
                    let resources: Vec<Value> = [
                        "/items",
                        "/items/{id}",
                        "/items/{id}/parts",
                        "/items/{id}/parts/{part}",
                        "/search",
                    ]
                    .iter()
                    .flat_map(|path| {
                        ["GET", "POST", "PUT", "DELETE"].map(
                            |method| json!({"method": method, "path": path, "scopes": ["svc:use"]}),
                        )
                    })
                    .collect();
                    json!({"name": format!("svc{i}"), "base_path": format!("/svc{i}/v1"),
                           "resources": resources})
                })
                .collect();
            apis.extend(cfg["apis"].as_array().unwrap().iter().cloned());
            cfg["apis"] = Value::Array(apis);
            let apps = cfg["applications"].as_array_mut().unwrap();
            for i in 0..3000 {
                apps.push(json!({"name": format!("app{i}"),
                    "client_ids": [{"key_manager": "idp", "client_id": format!("client-{i}")}],
                    "subscriptions": [{"api": format!("svc{}", i % extra)}]}));
            }
        }
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
                name: "api_key",
                cache: 1024,
                headers: api_key_headers(),
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

    fn cache_hit_headers() -> Vec<(String, String)> {
        headers("/pets/v1/pets", Some(&token("RS256", "rsa2048", "k-rsa")))
    }

    /// The same cache hit as the configuration grows: 1 API, then 100 and 1,000 more.
    fn scale(c: &mut Criterion) {
        let mut group = c.benchmark_group("worker_scale");
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        let headers = cache_hit_headers();
        for extra in [0, 99, 999] {
            let (mut w, mut host) = worker_with(1024, extra);
            assert_eq!(
                w.on_request(&mut host, 1, &headers),
                RequestAction::Continue
            );
            group.bench_function(format!("cache_hit_rs256_apis_{}", extra + 1), |b| {
                b.iter(|| black_box(w.on_request(&mut host, 1, black_box(&headers))))
            });
        }
        group.finish();
    }

    #[inline(never)]
    fn measured_requests(
        w: &mut Worker,
        host: &mut FakeHost,
        headers: &[(String, String)],
        n: usize,
    ) {
        for _ in 0..n {
            black_box(w.on_request(host, 1, black_box(headers)));
        }
    }

    /// `KEYGATE_BENCH_APIS` set: run cache hits for callgrind instead of criterion.
    pub fn instructions() -> bool {
        let Ok(apis) = std::env::var("KEYGATE_BENCH_APIS") else {
            return false;
        };
        let apis: usize = apis.parse().unwrap();
        let n: usize = std::env::var("KEYGATE_BENCH_REQUESTS")
            .map(|n| n.parse().unwrap())
            .unwrap_or(1000);
        // KEYGATE_BENCH_CASE=api_key: the API key request instead of the token cache hit.
        let api_key = std::env::var("KEYGATE_BENCH_CASE").is_ok_and(|c| c == "api_key");
        let headers = if api_key {
            api_key_headers()
        } else {
            cache_hit_headers()
        };
        let (mut w, mut host) = worker_with(1024, apis.saturating_sub(1));
        assert_eq!(
            w.on_request(&mut host, 1, &headers),
            RequestAction::Continue
        );
        measured_requests(&mut w, &mut host, &headers, n);
        let what = if api_key {
            "API key requests"
        } else {
            "cache hits"
        };
        println!("{n} {what} with {apis} APIs");
        true
    }

    criterion_group!(benches, request, dpop, scale);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if native::instructions() {
        return;
    }
    native::benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}

#[cfg(target_arch = "wasm32")]
fn main() {}
