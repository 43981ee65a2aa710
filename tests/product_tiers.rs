//! Product test of subscription tiers: the built filter in a real Envoy with two workers, real
//! tokens from the key manager. A 20-per-minute tier lets exactly 20 of 30 rapid requests through
//! across both workers; the rest get 429 with Retry-After, RateLimit headers and a JSON code;
//! other subscriptions keep their own budgets; refusals for other reasons spend nothing; Envoy's
//! stats count the rate-limited requests.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::stack;

use std::time::Duration;

use support::stack::demo_head;
use support::{free_port, http, EchoUpstream, Envoy, KeyManager, Response, TempDir};

const TIER_REQUESTS: usize = 20;
const BURST: usize = 30;
const CLIENTS: usize = 3;

fn declaration(km: &KeyManager, listen: u16, admin: u16, upstream: u16) -> String {
    let head = demo_head(km, listen, admin);
    format!(
        r#"{head}tiers:
  - {{name: twenty, requests: {TIER_REQUESTS}, per: minute}}
apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
  - name: orders
    base_path: /orders/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /orders, scopes: [orders:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets, tier: twenty}}
      - {{api: orders, tier: twenty}}
  - name: other
    client_ids:
      - {{key_manager: demo, client_id: other-app}}
    subscriptions:
      - {{api: pets, tier: twenty}}
"#
    )
}

fn get(port: u16, path: &str, token: &str) -> Response {
    http(
        port,
        "GET",
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Seconds left in the current window of a subscription, as its reply says: the `t` of keygate's
/// `RateLimit` header (local limiter), else Envoy's `x-ratelimit-reset` (rate-limit service).
fn window_left(reply: &Response) -> u64 {
    if let Some(value) = reply.header("ratelimit") {
        let t = value.rsplit(";t=").next().unwrap();
        return t.parse().unwrap_or_else(|_| panic!("RateLimit {value}"));
    }
    reply
        .header("x-ratelimit-reset")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no window in the reply: {reply:?}"))
}

/// Time left in the window before a burst starts (the burst itself takes well under a second).
const WINDOW_MARGIN_SECONDS: u64 = 10;

/// Runs `burst` inside one window of the tier, read from the replies of a `probe` request on
/// another subscription of the same tier (windows are aligned to the clock, so they share it):
/// with less than the margin left it first waits for the next window, polling the probe; when
/// the window turned during the burst after all (a loaded machine), it waits for the next one and
/// runs the burst again, so the result never depends on timing.
fn in_one_window<T>(probe: impl Fn() -> Response, mut burst: impl FnMut() -> T) -> T {
    let next_window = |left: u64| {
        // Poll (a second apart, the header's resolution) until the time left goes up: a new window.
        let turned = support::process::poll_until(Duration::from_secs(left + 30), || {
            std::thread::sleep(Duration::from_millis(950));
            let now = window_left(&probe());
            (now > left).then_some(now)
        });
        turned.expect("the tier's window never turned")
    };
    let mut left = window_left(&probe());
    for _ in 0..3 {
        if left < WINDOW_MARGIN_SECONDS {
            eprintln!("{left} s left in this window: waiting for the next one");
            left = next_window(left);
        }
        let out = burst();
        let after = window_left(&probe());
        if after <= left {
            return out;
        }
        eprintln!("the window turned during the burst: again in the next one");
        left = next_window(after);
    }
    panic!("no burst fitted in a window three times")
}

/// A counter from Envoy's stats whose name ends with `suffix` (custom wasm metrics carry a prefix).
fn stat_ending(envoy: &Envoy, suffix: &str) -> Option<u64> {
    envoy
        .stats()
        .into_iter()
        .find(|(name, _)| name.ends_with(suffix))
        .and_then(|(_, value)| value.parse().ok())
}

#[test]
fn a_tier_is_exact_across_two_workers_and_refuses_with_the_429_shape() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let dir = TempDir::new("tiers");
    let (listen, admin) = (free_port(), free_port());
    let out = stack::generate(dir.path(), &declaration(&km, listen, admin, echo.port()));
    let envoy = Envoy::start_with_workers(&out.join("envoy.yaml"), 2);

    let token = |client: &str, scope: &str| {
        km.token_client_credentials(client, &format!("{client}-secret"), scope)
    };
    let shop = token("shop-app", "pets:read orders:read");
    let shop_orders_only = token("shop-app", "orders:read");
    let other = token("other-app", "pets:read");

    // Refused for another reason (scope, step 7): these never reach the tier (step 8).
    for _ in 0..5 {
        let refused = get(listen, "/pets/v1/pets", &shop_orders_only);
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (403, "insufficient_scope"),
            "{}\n{}",
            refused.body,
            envoy.log()
        );
    }

    // 30 rapid requests of one subscription, from three clients at once, each on its own
    // connection, so both workers take some; the window is read from the (shop, orders)
    // subscription of the same tier.
    let policy = format!("\"twenty\";q={TIER_REQUESTS};w=60");
    let probe = || {
        let r = get(listen, "/orders/v1/orders", &shop);
        assert!(matches!(r.status, 200 | 429), "{}", r.body);
        r
    };
    let (responses, forwarded, limited_before) = in_one_window(probe, || {
        let upstream_before = echo.request_count();
        let limited_before = stat_ending(&envoy, "keygate_rate_limited").unwrap_or(0);
        let responses: Vec<Response> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    scope.spawn(|| {
                        (0..BURST / CLIENTS)
                            .map(|_| get(listen, "/pets/v1/pets", &shop))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        });
        (
            responses,
            echo.request_count() - upstream_before,
            limited_before,
        )
    });
    let allowed = responses.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Response> = responses.iter().filter(|r| r.status == 429).collect();
    let by_worker = envoy.worker_connections(listen);
    eprintln!(
        "tier {TIER_REQUESTS}/minute, {BURST} requests from {CLIENTS} clients: {allowed} allowed, {} rate limited; connections per worker {by_worker:?}",
        limited.len()
    );
    assert!(
        by_worker.len() == 2 && by_worker.iter().all(|&n| n > 0),
        "both workers must take connections: {by_worker:?}"
    );
    assert_eq!(allowed, TIER_REQUESTS, "allowed across both workers");
    assert_eq!(limited.len(), BURST - TIER_REQUESTS);
    assert_eq!(forwarded, TIER_REQUESTS);
    // Each allowed response says what was left after it: every count from 19 down to 0 exactly
    // once, whichever worker took the request.
    let mut left: Vec<u64> = responses
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            assert_eq!(r.header("ratelimit-policy"), Some(policy.as_str()));
            let value = r.header("ratelimit").unwrap();
            let rest = value.strip_prefix("\"twenty\";r=").unwrap();
            rest.split(';').next().unwrap().parse().unwrap()
        })
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..TIER_REQUESTS as u64).collect::<Vec<_>>());
    // Envoy's stats count the rate-limited requests, summed over the workers.
    let counted = stat_ending(&envoy, "keygate_rate_limited").unwrap_or(0) - limited_before;
    eprintln!("Envoy stat keygate_rate_limited after the burst: +{counted}");
    assert_eq!(counted, (BURST - TIER_REQUESTS) as u64);

    for refused in &limited {
        assert_eq!(refused.code(), "rate_limited", "{}", refused.body);
        assert_eq!(refused.json()["error"], "rate_limited");
        assert_eq!(refused.header("content-type"), Some("application/json"));
        assert_eq!(refused.header_all("cache-control"), vec!["no-store"]);
        let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(refused.header("ratelimit-policy"), Some(policy.as_str()));
        assert_eq!(
            refused.header("ratelimit"),
            Some(format!("\"twenty\";r=0;t={retry_after}").as_str())
        );
        assert_eq!(refused.header("www-authenticate"), None);
    }

    // Over budget and the wrong scope: the scope refusal comes first (step 7 before step 8).
    let refused = get(listen, "/pets/v1/pets", &shop_orders_only);
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "insufficient_scope")
    );

    // Other subscriptions have budgets of their own: another application on the same API, and
    // the same application on another API.
    let response = get(listen, "/pets/v1/pets", &other);
    assert_eq!(response.status, 200, "{}", response.body);
    let response = get(listen, "/orders/v1/orders", &shop);
    assert_eq!(response.status, 200, "{}", response.body);
    // ... while the spent one stays spent.
    let response = get(listen, "/pets/v1/pets", &shop);
    assert_eq!(response.status, 429, "{}", response.body);

    let counted = stat_ending(&envoy, "keygate_rate_limited").unwrap_or(0) - limited_before;
    assert_eq!(counted, (BURST - TIER_REQUESTS + 1) as u64);
}

/// Fleet mode with the rate-limit service down (nothing listens on its port): by default Envoy's
/// rate-limit filter fails closed with keygate's JSON 503, while an unlimited subscription sends no
/// descriptor and passes; with `rate_limit_fail_open: true` the tiered request passes too.
#[test]
fn a_rate_limit_service_that_cannot_answer_fails_closed_unless_told_otherwise() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let shop = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let unlimited = km.token_client_credentials("other-app", "other-app-secret", "orders:read");
    for fail_open in [false, true] {
        let dir = TempDir::new("tiers-fleet");
        let (listen, admin, service) = (free_port(), free_port(), free_port());
        // `other` gets an unlimited subscription (orders, no tier).
        let mut text = declaration(&km, listen, admin, echo.port()).replace(
                "  - name: other\n    client_ids:\n      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: pets, tier: twenty}\n",
                "  - name: other\n    client_ids:\n      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: orders}\n",
            );
        text = text.replace(
            &format!("  admin: 127.0.0.1:{admin}\n"),
            &format!(
                "  admin: 127.0.0.1:{admin}\n  rate_limit_service: 127.0.0.1:{service}\n  rate_limit_fail_open: {fail_open}\n"
            ),
        );
        assert!(text.contains("rate_limit_service") && text.contains("- {api: orders}\n"));
        let out = stack::generate(dir.path(), &text);
        let envoy = Envoy::start_with_workers(&out.join("envoy.yaml"), 2);

        let tiered = get(listen, "/pets/v1/pets", &shop);
        if fail_open {
            assert_eq!(tiered.status, 200, "{}", tiered.body);
        } else {
            assert_eq!(
                (tiered.status, tiered.code().as_str()),
                (503, "rate_limit_unavailable"),
                "{}\n{}",
                tiered.body,
                envoy.log()
            );
            assert_eq!(tiered.header("content-type"), Some("application/json"));
            assert_eq!(tiered.header_all("cache-control"), vec!["no-store"]);
        }
        let free = get(listen, "/orders/v1/orders", &unlimited);
        assert_eq!(free.status, 200, "fail_open {fail_open}: {}", free.body);
        // The filter itself counts nothing in fleet mode.
        assert_eq!(stat_ending(&envoy, "keygate_rate_limited").unwrap_or(0), 0);
        eprintln!(
            "rate-limit service down, fail_open {fail_open}: tiered {}, unlimited {}",
            tiered.status, free.status
        );
    }
}

/// The gRPC rate-limit service of the fleet tests (tests/ratelimit/rls.py, with the project's
/// Python and grpcio), fed the `ratelimit/config.yaml` that `generate` wrote, as JSON.
struct RateLimitService {
    log: std::path::PathBuf,
    _process: support::ProcessGuard,
}

impl RateLimitService {
    fn start(dir: &std::path::Path, config_yaml: &std::path::Path, port: u16) -> RateLimitService {
        let text = std::fs::read_to_string(config_yaml).unwrap();
        let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let config_json = dir.join("ratelimit-config.json");
        std::fs::write(&config_json, config.to_string()).unwrap();
        let python = support::project_root().join(".venv/bin/python");
        let script = support::project_root().join("tests/ratelimit/rls.py");
        let log = dir.join("rls-calls.jsonl");
        let output = std::fs::File::create(dir.join("rls.log")).unwrap();
        let child = std::process::Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--config")
            .arg(&config_json)
            .arg("--log")
            .arg(&log)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("{} (make deps installs grpcio): {e}", python.display()));
        let process = support::ProcessGuard::new("rls", child, Some(dir.join("rls.log")));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !process.log().contains("rls listening") {
            assert!(
                std::time::Instant::now() < deadline,
                "the rate-limit service did not start:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        RateLimitService {
            log,
            _process: process,
        }
    }

    /// Every call's descriptors, as `[[key, value], ...]` lists.
    fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Fleet mode for real: two Envoys (two workers each) count against one gRPC rate-limit service
/// configured from the generated `ratelimit/config.yaml`. Together they allow the tier's 20 of 30
/// requests; the rest get keygate's 429 JSON with Retry-After; the descriptors are keygate's own
/// (tier, application, API) and an unlimited subscription sends none.
#[test]
fn two_envoys_share_one_budget_through_the_rate_limit_service() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let shop = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let unlimited = km.token_client_credentials("other-app", "other-app-secret", "orders:read");
    let shop_orders = km.token_client_credentials("shop-app", "shop-app-secret", "orders:read");
    let dir = TempDir::new("tiers-fleet-rls");
    // The service port must be in the declaration before the service starts: pick it first.
    let service_port = free_port();
    let mut envoys = Vec::new();
    let mut listens = Vec::new();
    let mut service = None;
    for n in 0..2 {
        let (listen, admin) = (free_port(), free_port());
        let mut text = declaration(&km, listen, admin, echo.port()).replace(
            "  - name: other\n    client_ids:\n      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: pets, tier: twenty}\n",
            "  - name: other\n    client_ids:\n      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: orders}\n",
        );
        text = text.replace(
            &format!("  admin: 127.0.0.1:{admin}\n"),
            &format!(
                "  admin: 127.0.0.1:{admin}\n  rate_limit_service: 127.0.0.1:{service_port}\n"
            ),
        );
        assert!(text.contains("rate_limit_service") && text.contains("- {api: orders}\n"));
        let own = dir.path().join(format!("envoy{n}"));
        std::fs::create_dir_all(&own).unwrap();
        let out = stack::generate(&own, &text);
        if service.is_none() {
            let config = out.join("ratelimit/config.yaml");
            service = Some(RateLimitService::start(dir.path(), &config, service_port));
        }
        envoys.push(Envoy::start_with_workers(&out.join("envoy.yaml"), 2));
        listens.push(listen);
    }
    let service = service.unwrap();

    // The window is read from the service's reset time on the (shop, orders) subscription of the
    // same tier (Envoy's `x-ratelimit-reset`).
    let probe = || {
        let r = get(listens[0], "/orders/v1/orders", &shop_orders);
        assert!(matches!(r.status, 200 | 429), "{}", r.body);
        r
    };
    let (statuses, calls_before) = in_one_window(probe, || {
        let calls_before = service.calls().len();
        let mut statuses = Vec::new();
        for i in 0..BURST {
            let response = get(listens[i % 2], "/pets/v1/pets", &shop);
            if response.status == 429 {
                assert_eq!(response.code(), "rate_limited", "{}", response.body);
                assert_eq!(response.header("content-type"), Some("application/json"));
                assert_eq!(response.header_all("cache-control"), vec!["no-store"]);
                let retry: u64 = response
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {response:?}"));
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                assert!(!response.body.contains(&shop), "the token is never echoed");
            } else {
                assert_eq!(
                    response.status,
                    200,
                    "{}\n{}",
                    response.body,
                    envoys[0].log()
                );
            }
            statuses.push(response.status);
        }
        (statuses, calls_before)
    });
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((allowed, limited), (TIER_REQUESTS, BURST - TIER_REQUESTS));
    // Both Envoys answered both kinds: one budget, not one per Envoy.
    for (n, listen) in listens.iter().enumerate() {
        let theirs: Vec<u16> = statuses
            .iter()
            .enumerate()
            .filter(|(i, _)| listens[i % 2] == *listen)
            .map(|(_, s)| *s)
            .collect();
        assert!(
            theirs.contains(&200) && theirs.contains(&429),
            "envoy {n}: {theirs:?}"
        );
    }

    let free = get(listens[0], "/orders/v1/orders", &unlimited);
    assert_eq!(free.status, 200, "{}", free.body);

    // The burst's calls: one per tiered request (the probes are orders calls).
    let calls: Vec<serde_json::Value> = service
        .calls()
        .into_iter()
        .skip(calls_before)
        .filter(|call| call["descriptors"][0]["entries"][2][1] != "orders")
        .collect();
    assert_eq!(calls.len(), BURST, "one service call per tiered request");
    for call in &calls {
        assert_eq!(call["domain"], "keygate");
        assert_eq!(
            call["descriptors"][0]["entries"],
            serde_json::json!([["tier", "twenty"], ["application", "shop"], ["api", "pets"]])
        );
    }
    eprintln!(
        "fleet: 2 Envoys x 2 workers, {BURST} requests of a {TIER_REQUESTS}/minute tier: {allowed} allowed, {limited} rate limited, {} service calls, the unlimited subscription sent none",
        calls.len()
    );
}
