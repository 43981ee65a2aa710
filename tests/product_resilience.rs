//! Product tests of key-manager resilience (issue 7): the built filter in a real Envoy, the real
//! key manager behind a fault-injecting proxy on Envoy's JWKS cluster, real requests on
//! 127.0.0.1. Every test is bounded in requests and time and prints what it measured
//! (`cargo test --test product_resilience -- --nocapture` shows the numbers).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod faultproxy;
mod stack;
mod support;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use faultproxy::{FaultProxy, Mode};
use serde_json::json;
use stack::{sign_es256, stranger_key, Options, Stack};
use support::{KeyManager, Response, TempDir};

const PETS: &str = "/pets/v1/pets";

/// A stack whose filter fetches the JWKS through a fault proxy in front of the key manager.
/// Fields drop in order: Envoy goes before the proxy it talks to.
struct Rig {
    stack: Stack,
    proxy: FaultProxy,
}

/// `settings:` lines of the declaration from name/value pairs.
fn settings(pairs: &[(&str, u64)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("  {name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts the key manager, the proxy (in `mode` from the start, so Envoy's very first fetch
/// already meets it) and the stack.
fn rig(pairs: &[(&str, u64)], workers: u32, mode: Mode) -> Rig {
    let dir = TempDir::new("resilience");
    let keys_file = dir.join("km-keys.json");
    let km = KeyManager::start_with_keys(0, &keys_file);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], km.port())))
        .expect("start the fault proxy");
    proxy.set_mode(mode);
    let options = Options {
        workers,
        jwks_port: Some(proxy.port()),
        settings: settings(pairs),
        ..Options::default()
    };
    let stack = Stack::start_with(options, km, keys_file, dir);
    Rig { stack, proxy }
}

fn code(response: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["code"].as_str().map(String::from))
        .unwrap_or_default()
}

#[track_caller]
fn expect(response: &Response, status: u16, expected: &str, what: &str) {
    assert_eq!(
        (response.status, code(response).as_str()),
        (status, expected),
        "{what}: {}",
        response.body
    );
}

fn get(port: u16, token: &str) -> Response {
    support::http(
        port,
        "GET",
        PETS,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", response.headers))
        .parse()
        .expect("Retry-After in seconds")
}

/// Polls `probe` every `step` until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, step: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(step);
    }
}

/// Waits until the filter has keys and a real token passes (the startup fetch landed).
#[track_caller]
fn wait_for_keys(rig: &Rig, token: &str) {
    let ok = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        (get(rig.stack.port, token).status == 200).then_some(())
    });
    assert!(ok.is_some(), "keys never loaded:\n{}", rig.stack.envoy.log());
}

/// Waits until the proxy has seen more than `count` fetches; returns when it did.
#[track_caller]
fn wait_for_fetch_after(proxy: &FaultProxy, count: usize, limit: Duration) -> Instant {
    assert!(
        proxy.wait_for_fetches(count + 1, limit),
        "no JWKS fetch within {limit:?}"
    );
    Instant::now()
}

/// The payload of `token` changed (more scope): the signature no longer matches.
fn tampered(token: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims = support::decode_jwt_claims(token);
    claims["scope"] = json!("pets:read pets:write");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

/// Well-formed claims of the key manager, signed by a stranger under a random kid.
fn unknown_kid_token(stack: &Stack, key: &p256::ecdsa::SigningKey) -> String {
    let kid = format!("unknown-{:016x}", rand::random::<u64>());
    sign_es256(key, &kid, &stack.claims("shop-app", "pets:read"))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Issue 7: key manager unreachable when Envoy starts → 503 `key_manager_unavailable` with
/// `Retry-After`, never forwarded; once it is back, the background retry (no traffic needed)
/// brings the keys within the retry interval.
#[test]
fn down_at_start_is_503_then_recovers_within_the_retry_interval() {
    const RETRY_MAX: u64 = 2;
    let rig = rig(
        &[
            ("jwks_fetch_timeout_ms", 1_000),
            ("jwks_retry_initial_seconds", 1),
            ("jwks_retry_max_seconds", RETRY_MAX),
            ("jwks_unknown_kid_refetch_seconds", 1),
            ("request_wait_ms", 1_500),
        ],
        1,
        Mode::Refuse,
    );
    let stack = &rig.stack;
    let token = stack.token("shop-app", "pets:read");

    let mut tried = 0;
    for _ in 0..4 {
        let response = get(stack.port, &token);
        tried += 1;
        expect(&response, 503, "key_manager_unavailable", "key manager down");
        let seconds = retry_after(&response);
        assert!(
            (1..=RETRY_MAX + 2).contains(&seconds),
            "Retry-After {seconds} outside 1..={}",
            RETRY_MAX + 2
        );
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(stack.echo.request_count(), 0, "a 503 request was forwarded");
    let attempts_while_down = stack
        .envoy
        .stat("wasmcustom.keygate_jwks_fetches")
        .unwrap_or(0);
    assert!(attempts_while_down >= 1, "no fetch was even tried");

    // Up again, and no request: only the timer's retry can load the keys.
    assert_eq!(rig.proxy.fetch_count(), 0, "refused connections are no requests");
    let up = Instant::now();
    rig.proxy.set_mode(Mode::Pass);
    let fetched = wait_for_fetch_after(&rig.proxy, 0, Duration::from_secs(RETRY_MAX + 5));
    let fetch_after = fetched - up;
    let served = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let response = get(stack.port, &token);
        tried += 1;
        (response.status == 200).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("no 200 after the key manager came back"));
    let recovery = served - up;
    println!(
        "down at start: {tried} requests, {attempts_while_down} fetch attempts while down; \
         back up -> first fetch after {:.2} s, first 200 after {:.2} s",
        secs(fetch_after),
        secs(recovery)
    );
    assert!(
        fetch_after <= Duration::from_millis(RETRY_MAX * 1_000 + 1_500),
        "retry came {:.2} s after recovery (retry max {RETRY_MAX} s)",
        secs(fetch_after)
    );
    assert!(
        recovery <= Duration::from_millis(RETRY_MAX * 1_000 + 2_000),
        "recovered after {:.2} s",
        secs(recovery)
    );
    assert_eq!(stack.echo.request_count(), 1, "only the final 200 went up");
}
