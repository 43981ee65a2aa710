//! What a backend JWT costs in a real Envoy (`make bench-backend-jwt`, docs/backend-jwt.md): the
//! filter's own time per request (`keygate_filter_time_us`, Envoy's histogram, read from the
//! admin's Prometheus page before and after each phase) for verified-token misses without a
//! backend JWT, misses that sign one (with Envoy's `sign`, then with the Wasm signer), and cache
//! hits that reuse it. Every request must be allowed; nothing is timed against a target.
#![cfg_attr(target_arch = "wasm32", allow(unused))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(not(target_arch = "wasm32"))]
#[path = "../support/mod.rs"]
mod support;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    bench::run();
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod bench {
    use std::time::Duration;

    use serde_json::json;

    use crate::support::stack::{gateway_and_key_manager, generate, now, Options, AUDIENCE};
    use crate::support::TempDir;
    use crate::support::{canned, free_port, http, keygate, signers, EchoUpstream, Envoy};

    /// Requests per phase; `BENCH_BACKEND_JWT_REQUESTS` overrides it.
    fn requests() -> u64 {
        std::env::var("BENCH_BACKEND_JWT_REQUESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(300)
    }

    fn token(issuer: &str, n: u64) -> String {
        let now = now();
        let claims = json!({"iss": issuer, "sub": "alice", "aud": AUDIENCE,
            "client_id": "shop-app", "scope": "pets:read", "iat": now, "exp": now + 3600,
            "jti": format!("bench-{n}")});
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k-p256"});
        let input = format!(
            "{}.{}",
            signers::b64(header.to_string().as_bytes()),
            signers::b64(claims.to_string().as_bytes())
        );
        let signature = signers::sign("ES256", "p256", input.as_bytes());
        format!("{input}.{}", signers::b64(&signature))
    }

    /// The filter-time histogram's sum and count (Envoy updates them at each stats flush).
    fn filter_time(envoy: &Envoy) -> (f64, f64) {
        let text = envoy.prometheus();
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("keygate_filter_time_us_sum"),
            value("keygate_filter_time_us_count"),
        )
    }

    /// Sends `requests` (path, token) once each and returns the mean filter time, µs.
    fn phase(envoy: &Envoy, port: u16, requests: &[(&str, String)]) -> f64 {
        let flush = Duration::from_millis(5_500);
        std::thread::sleep(flush);
        let (sum0, count0) = filter_time(envoy);
        for (path, token) in requests {
            let auth = format!("Bearer {token}");
            let answer = http(port, "GET", path, &[("authorization", &auth)]);
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        }
        std::thread::sleep(flush);
        let (sum1, count1) = filter_time(envoy);
        assert_eq!((count1 - count0) as u64, requests.len() as u64);
        (sum1 - sum0) / (count1 - count0)
    }

    pub fn run() {
        let n = requests();
        println!("| signer | request | mean filter time (µs) |");
        println!("|---|---|---|");
        for in_wasm in [false, true] {
            let key = keygate(&["backend-key", "new", "--env", "KG_BENCH_KEY"], b"");
            let line = |prefix: &str| {
                key.stdout
                    .lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap()
                    .to_string()
            };
            let private = line("KG_BENCH_KEY='");
            let private = private["KG_BENCH_KEY='".len()..private.len() - 1].to_string();
            let entry = line("- {env");
            let jwks =
                String::from_utf8(signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap();
            let server = canned::Server::start(vec![("/jwks".to_string(), 200, jwks)]);
            let issuer = server.base.clone();
            let echo = EchoUpstream::start();
            let (listen, admin) = (free_port(), free_port());
            let head = gateway_and_key_manager(
                &Options::default(),
                &issuer,
                &format!("{issuer}/jwks"),
                listen,
                admin,
            )
            .replacen(
                "key_managers:\n",
                &format!(
                    "  backend_jwt:\n    in_wasm: {in_wasm}\n    keys:\n      {entry}\nkey_managers:\n"
                ),
                1,
            );
            let declaration = format!(
                r#"{head}apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    backend_jwt: {{}}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
  - name: orders
    base_path: /orders/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /orders, scopes: [pets:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
      - {{api: orders}}
"#,
                upstream = echo.port()
            );
            let dir = TempDir::new("bench-backend-jwt");
            let out = generate(dir.path(), &declaration);
            let envoy =
                Envoy::start_with_env(&out.join("envoy.yaml"), 1, &[("KG_BENCH_KEY", &private)]);
            // Warm-up: V8's tiers and Envoy's connections.
            for i in 0..50 {
                let auth = format!("Bearer {}", token(&issuer, 1_000_000 + i));
                http(
                    listen,
                    "GET",
                    "/orders/v1/orders",
                    &[("authorization", &auth)],
                );
                http(listen, "GET", "/pets/v1/pets", &[("authorization", &auth)]);
            }
            let base = if in_wasm { 100_000 } else { 0 };
            let misses: Vec<(&str, String)> = (0..n)
                .map(|i| ("/orders/v1/orders", token(&issuer, base + i)))
                .collect();
            let signed: Vec<(&str, String)> = (0..n)
                .map(|i| ("/pets/v1/pets", token(&issuer, base + 50_000 + i)))
                .collect();
            let hits: Vec<(&str, String)> = (0..n)
                .map(|_| ("/pets/v1/pets", signed[0].1.clone()))
                .collect();
            let signer = if in_wasm {
                "Wasm (p256)"
            } else {
                "Envoy `sign`"
            };
            let rows = [
                ("verified-token miss, no backend JWT", misses),
                ("verified-token miss + backend JWT signed", signed),
                ("verified-token hit, backend JWT reused", hits),
            ];
            for (what, requests) in rows {
                let mean = phase(&envoy, listen, &requests);
                println!("| {signer} | {what} | {mean:.1} |");
            }
            drop(server);
        }
    }
}
