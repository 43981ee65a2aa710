//! Subscription tiers in the worker, through the fake host: two workers of one Envoy (sibling fake
//! hosts sharing shared data with Envoy's compare-and-swap rules) spend one budget exactly, also
//! when their writes race; windows roll over on the clock; refusals for other reasons spend
//! nothing; cached authorizations still count; with a rate-limit service the filter does not count.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use keygate::policy::Policy;
use keygate::worker::metrics;
use keygate::worker::{counters, FakeHost, RequestAction, Worker};
use serde_json::{json, Value};
use support::policies::{compile, key_manager};
use support::signers::{claims, jwks, public_jwk, token, NOW};

/// Requests the worker allowed (all labels).
fn allowed_count(host: &FakeHost) -> u64 {
    host.counter_where(metrics::REQUESTS, &[("outcome", "allowed")])
}

/// The start of a minute (windows are aligned to the clock), a little after `NOW`.
const MINUTE_MS: u64 = (NOW as u64 / 60 + 1) * 60_000;

/// `shop` → `pets` on tier `three` (3 per minute), `kiosk` → `pets` on the same tier, and
/// `shop` → `cats` unlimited.
fn policy(limiter: &str) -> Policy {
    let cfg = json!({
        "environment": "production",
        "key_managers": [key_manager("idp")],
        "apis": [
            {"name": "pets", "base_path": "/pets", "resources": [
                {"method": "GET", "path": "/items", "scopes": ["pets:read"]},
                {"method": "GET", "path": "/admin", "scopes": ["pets:admin"]}
            ]},
            {"name": "cats", "base_path": "/cats", "resources": [{"method": "GET", "path": "/items"}]}
        ],
        "tiers": [{"name": "three", "requests": 3, "per": "minute"}],
        "limiter": limiter,
        "applications": [
            {"name": "shop",
             "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
             "subscriptions": [{"api": "pets", "tier": "three"}, {"api": "cats"}]},
            {"name": "kiosk",
             "client_ids": [{"key_manager": "idp", "client_id": "app-2"}],
             "subscriptions": [{"api": "pets", "tier": "three"}]}
        ]
    });
    compile(&cfg)
}

fn signed(client: &str, scope: &str) -> String {
    let mut c = claims();
    c["client_id"] = json!(client);
    c["scope"] = json!(scope);
    // Valid across the windows the tests move the clock through.
    c["exp"] = json!(NOW + 3_600.0);
    token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256")
}

fn headers(path: &str, token: &str) -> Vec<(String, String)> {
    vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
    ]
}

/// A worker that has its keys, on `host`: fetched, or adopted from a sibling that fetched them.
fn warmed(limiter: &str, host: &mut FakeHost) -> Worker {
    let mut w = Worker::new(policy(limiter), 7);
    w.on_tick(host);
    if let Some(fetch) = host.last_dispatch().map(|d| d.token) {
        let keys: Vec<Value> = vec![public_jwk("p256", "k1")];
        host.answer(&mut w, fetch, 200, &jwks(&keys));
    }
    w
}

/// Two workers of one Envoy, both with keys.
fn two_workers(limiter: &str) -> (Worker, FakeHost, Worker, FakeHost) {
    let mut host_a = FakeHost::new(MINUTE_MS);
    let a = warmed(limiter, &mut host_a);
    let mut host_b = host_a.sibling();
    let b = warmed(limiter, &mut host_b);
    (a, host_a, b, host_b)
}

/// The status a request got: 200 when forwarded, else the local reply's.
fn status(w: &mut Worker, host: &mut FakeHost, stream: u32, path: &str, token: &str) -> u32 {
    match w.on_request(host, stream, &headers(path, token)) {
        RequestAction::Continue => 200,
        RequestAction::Pause => host.reply_of(stream).map_or(0, |r| r.status),
    }
}

#[test]
fn two_workers_together_admit_the_tier_not_twice_it() {
    let (mut a, mut host_a, mut b, mut host_b) = two_workers("local");
    let t = signed("app-1", "pets:read");
    let mut seen = Vec::new();
    for stream in 0..10 {
        let (w, host) = if stream % 2 == 0 {
            (&mut a, &mut host_a)
        } else {
            (&mut b, &mut host_b)
        };
        seen.push(status(w, host, stream, "/pets/items", &t));
    }
    assert_eq!(seen, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        host_a.counter(counters::RATE_LIMITED) + host_b.counter(counters::RATE_LIMITED),
        7
    );
    assert_eq!(allowed_count(&host_a) + allowed_count(&host_b), 3);
    // The same token each time: after the first, an authorization remembered by the worker's
    // token cache, which must still be counted.
    let refused = host_b.reply_of(9).unwrap();
    assert_eq!(refused.code().as_deref(), Some("rate_limited"));
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"three\";q=3;w=60")
    );
    assert_eq!(refused.header("ratelimit"), Some("\"three\";r=0;t=60"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    // Allowed responses tell what is left: stream 0 was the first of three (worker A), stream 1
    // the second (worker B), stream 2 the last.
    let expect = |left: u64| {
        vec![
            (
                "ratelimit-policy".to_string(),
                "\"three\";q=3;w=60".to_string(),
            ),
            ("ratelimit".to_string(), format!("\"three\";r={left};t=60")),
        ]
    };
    a.on_response(&mut host_a, 0);
    assert_eq!(host_a.stream(0).unwrap().response_headers, expect(2));
    b.on_response(&mut host_b, 1);
    assert_eq!(host_b.stream(1).unwrap().response_headers, expect(1));
    a.on_response(&mut host_a, 2);
    assert_eq!(host_a.stream(2).unwrap().response_headers, expect(0));
    // Refused streams and forgotten ones get nothing added.
    a.on_response(&mut host_a, 4);
    assert!(host_a.stream(4).unwrap().response_headers.is_empty());
    b.on_request(&mut host_b, 99, &headers("/cats/items", &t));
    b.on_done(99);
    b.on_response(&mut host_b, 99);
    assert!(host_b.stream(99).unwrap().response_headers.is_empty());
}

#[test]
fn a_write_that_lost_the_race_is_decided_again_on_the_new_count() {
    let (mut a, mut host_a, b, host_b) = two_workers("local");
    let t = signed("app-1", "pets:read");
    let b = Rc::new(RefCell::new((b, host_b)));
    // Worker B admits a request between A's read of the counter and A's write.
    let other = Rc::clone(&b);
    let t_b = t.clone();
    *host_a.between_read_and_write.borrow_mut() = Some(Box::new(move || {
        let (w, host) = &mut *other.borrow_mut();
        assert_eq!(status(w, host, 100, "/pets/items", &t_b), 200);
    }));
    assert_eq!(status(&mut a, &mut host_a, 1, "/pets/items", &t), 200);
    assert!(
        host_a.between_read_and_write.borrow().is_none(),
        "the race ran"
    );
    // Two admitted so far (one each): one left for both workers together.
    assert_eq!(status(&mut a, &mut host_a, 2, "/pets/items", &t), 200);
    let (w, host) = &mut *b.borrow_mut();
    assert_eq!(status(w, host, 101, "/pets/items", &t), 429);
    assert_eq!(status(&mut a, &mut host_a, 3, "/pets/items", &t), 429);
    assert_eq!(allowed_count(host), 1);
    assert_eq!(allowed_count(&host_a), 2);
}

#[test]
fn the_budget_comes_back_when_the_window_rolls_over() {
    let (mut a, mut host_a, mut b, mut host_b) = two_workers("local");
    let t = signed("app-1", "pets:read");
    for stream in 0..3 {
        assert_eq!(status(&mut a, &mut host_a, stream, "/pets/items", &t), 200);
    }
    host_a.now_ms = MINUTE_MS + 45_250;
    host_b.now_ms = MINUTE_MS + 45_250;
    assert_eq!(status(&mut b, &mut host_b, 10, "/pets/items", &t), 429);
    // Seconds until the next minute starts, rounded up.
    assert_eq!(
        host_b.reply_of(10).unwrap().header("retry-after"),
        Some("15")
    );
    host_a.now_ms = MINUTE_MS + 60_000;
    host_b.now_ms = MINUTE_MS + 60_000;
    assert_eq!(status(&mut b, &mut host_b, 11, "/pets/items", &t), 200);
    assert_eq!(status(&mut a, &mut host_a, 12, "/pets/items", &t), 200);
    assert_eq!(status(&mut a, &mut host_a, 13, "/pets/items", &t), 200);
    assert_eq!(status(&mut b, &mut host_b, 14, "/pets/items", &t), 429);
}

#[test]
fn other_subscriptions_and_other_refusals_spend_nothing() {
    let (mut a, mut host_a, mut b, mut host_b) = two_workers("local");
    let shop = signed("app-1", "pets:read");
    for stream in 0..3 {
        assert_eq!(
            status(&mut a, &mut host_a, stream, "/pets/items", &shop),
            200
        );
    }
    assert_eq!(status(&mut a, &mut host_a, 3, "/pets/items", &shop), 429);
    // Another application on the same API and tier has its own budget.
    let kiosk = signed("app-2", "pets:read");
    for stream in 10..13 {
        assert_eq!(
            status(&mut b, &mut host_b, stream, "/pets/items", &kiosk),
            200
        );
    }
    // The same application on an unlimited API is not counted.
    for stream in 20..30 {
        assert_eq!(
            status(&mut a, &mut host_a, stream, "/cats/items", &shop),
            200
        );
    }
    // Refusals for another reason (scope, step 7) never reach the tier: on another Envoy, ten of
    // them (403, not 429) leave the kiosk's whole budget.
    let mut fresh = FakeHost::new(MINUTE_MS);
    let mut c = warmed("local", &mut fresh);
    for stream in 40..50 {
        assert_eq!(
            status(&mut c, &mut fresh, stream, "/pets/admin", &kiosk),
            403
        );
    }
    assert_eq!(status(&mut c, &mut fresh, 50, "/pets/items", &kiosk), 200);
    assert_eq!(status(&mut c, &mut fresh, 51, "/pets/items", &kiosk), 200);
    assert_eq!(status(&mut c, &mut fresh, 52, "/pets/items", &kiosk), 200);
    assert_eq!(status(&mut c, &mut fresh, 53, "/pets/items", &kiosk), 429);
}

#[test]
fn identity_names_the_tier_and_a_rate_limit_service_counts_instead() {
    let (mut a, mut host_a, _, _) = two_workers("service");
    let t = signed("app-1", "pets:read");
    for stream in 0..10 {
        assert_eq!(status(&mut a, &mut host_a, stream, "/pets/items", &t), 200);
    }
    let set = &host_a.stream(9).unwrap().set_headers;
    let get = |name: &str| set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("x-keygate-tier"), Some("three"));
    assert_eq!(get("x-keygate-application"), Some("shop"));
    assert_eq!(get("x-keygate-api"), Some("pets"));
    assert_eq!(host_a.counter(counters::RATE_LIMITED), 0);
    // An unlimited subscription carries no tier header, so the service counts nothing for it.
    assert_eq!(status(&mut a, &mut host_a, 20, "/cats/items", &t), 200);
    let set = &host_a.stream(20).unwrap().set_headers;
    assert!(!set.iter().any(|(n, _)| n == "x-keygate-tier"), "{set:?}");
}
