//! The worker's request path through the fake host: parking while keys are fetched, waking,
//! expiry, callouts that outlive their stream, late and duplicate answers, parking bounds, and two
//! workers sharing one key record. Real signed tokens and real verification; only the host is fake.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use keygate::policy::Policy;
use keygate::worker::metrics::{self, RequestOutcome};
use keygate::worker::{counters, FakeHost, RequestAction, Worker};
use serde_json::{json, Value};
use support::policies::{self, compile, config, NOW_MS};
use support::signers::{claims, jwks, public_jwk, token, NOW};

/// JWKS fetches that ended in anything but new keys.
fn fetch_failures(host: &FakeHost) -> u64 {
    host.counter_where(metrics::JWKS_FETCHES, &[])
        - host.counter_where(metrics::JWKS_FETCHES, &[("outcome", "ok")])
}

fn requests(host: &FakeHost, labels: &[(&str, &str)]) -> u64 {
    host.counter_where(metrics::REQUESTS, labels)
}

fn policy(settings: Value) -> Policy {
    let mut cfg = config(settings);
    cfg["apis"][0]["resources"] = json!([
        {"method": "GET", "path": "/items", "scopes": ["pets:read"]},
        {"method": "GET", "path": "/health", "public": true},
        {"method": "GET", "path": "/admin", "scopes": ["pets:admin"]}
    ]);
    compile(&cfg)
}

fn worker(settings: Value) -> Worker {
    Worker::new(policy(settings), 7)
}

fn signed(kid: &str) -> String {
    let mut c = claims();
    c["scope"] = json!("pets:read");
    token(&json!({"alg": "ES256", "kid": kid}), &c, "p256")
}

fn keys(kids: &[&str]) -> Vec<u8> {
    let list: Vec<Value> = kids.iter().map(|kid| public_jwk("p256", kid)).collect();
    jwks(&list)
}

fn headers(path: &str, token: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "api.example".to_string()),
    ];
    if let Some(token) = token {
        h.push(("authorization".to_string(), format!("Bearer {token}")));
    }
    h
}

/// A request, then the root wake-up it may have asked for (Envoy runs it right after).
fn get(worker: &mut Worker, host: &mut FakeHost, stream: u32, token: &str) -> RequestAction {
    let verdict = worker.on_request(host, stream, &headers("/pets/items", Some(token)));
    host.run_wakeup(worker);
    verdict
}

/// A worker that has fetched `kids` already.
fn warmed(kids: &[&str], settings: Value) -> (Worker, FakeHost) {
    let (w, host) = policies::warmed(policy(settings), &keys(kids));
    assert_eq!(fetch_failures(&host), 0);
    (w, host)
}

fn allowed(host: &FakeHost, stream: u32) -> bool {
    let log = host.stream(stream).unwrap();
    log.reply.is_none()
        && log
            .set_headers
            .iter()
            .any(|(n, v)| n == "x-keygate-application" && v == "shop")
}

#[test]
fn first_request_parks_fetches_once_and_resumes_with_identity() {
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    let t = signed("k1");
    assert_eq!(get(&mut w, &mut host, 10, &t), RequestAction::Pause);
    assert_eq!(get(&mut w, &mut host, 11, &t), RequestAction::Pause);
    assert_eq!(w.parked(), 2);
    assert_eq!(host.dispatched.len(), 1, "one fetch for both requests");
    let fetch = host.last_dispatch().unwrap().clone();
    assert_eq!(
        (fetch.cluster.as_str(), fetch.path.as_str()),
        ("jwks_idp", "/jwks")
    );
    host.answer(&mut w, fetch.token, 200, &keys(&["k1"]));
    assert_eq!(w.parked(), 0);
    for stream in [10, 11] {
        assert!(
            allowed(&host, stream),
            "stream {stream}: {:?}",
            host.stream(stream)
        );
        assert!(host.stream(stream).unwrap().resumed);
    }
    assert_eq!(requests(&host, &[("outcome", "allowed")]), 2);
    assert_eq!(
        host.counter(metrics::jwks_fetch("idp", "ok").as_str()),
        1,
        "{:?}",
        host.counters
    );
    // The next request is decided at once, with no further fetch.
    assert_eq!(get(&mut w, &mut host, 12, &t), RequestAction::Continue);
    assert!(allowed(&host, 12));
    assert_eq!(host.dispatched.len(), 1);
}

#[test]
fn a_stream_callback_never_dispatches_the_fetch_itself() {
    // A callout made in a stream's callback would belong to that stream and die with it.
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    let h = headers("/pets/items", Some(&signed("k1")));
    assert_eq!(w.on_request(&mut host, 5, &h), RequestAction::Pause);
    assert!(host.dispatched.is_empty());
    assert_eq!(host.wakeups, 1, "the root is woken to dispatch");
    // A second request on the same wanted fetch asks for no second wake-up.
    assert_eq!(w.on_request(&mut host, 6, &h), RequestAction::Pause);
    assert_eq!(host.wakeups, 1);
    host.run_wakeup(&mut w);
    assert_eq!(host.dispatched.len(), 1);
}

#[test]
fn a_lost_wake_up_is_made_good_by_the_next_tick() {
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    let h = headers("/pets/items", Some(&signed("k1")));
    assert_eq!(w.on_request(&mut host, 7, &h), RequestAction::Pause);
    host.wakeups = 0; // the host never calls back
    host.now_ms += 200;
    w.on_tick(&mut host);
    assert_eq!(host.dispatched.len(), 1);
    let token = host.last_dispatch().unwrap().token;
    host.answer(&mut w, token, 200, &keys(&["k1"]));
    assert!(allowed(&host, 7));
}

#[test]
fn a_client_gone_while_its_fetch_is_in_flight_does_not_lose_the_answer() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    let rotated = signed("k2");
    // The request with the rotated key starts the unknown-kid refetch, then its client resets.
    assert_eq!(get(&mut w, &mut host, 20, &rotated), RequestAction::Pause);
    let refetch = host.last_dispatch().unwrap().token;
    assert_eq!(host.dispatched.len(), 2);
    // Another client with the same new key waits on the same fetch.
    assert_eq!(get(&mut w, &mut host, 21, &rotated), RequestAction::Pause);
    assert_eq!(host.dispatched.len(), 2, "waits on the fetch in flight");
    w.on_done(20);
    host.gone.insert(20);
    assert_eq!(w.parked(), 1);
    // The answer belongs to the worker: it is applied and the waiting request passes.
    host.answer(&mut w, refetch, 200, &keys(&["k1", "k2"]));
    assert!(allowed(&host, 21));
    assert!(host.stream(21).unwrap().resumed);
    assert!(
        host.stream(20).is_none(),
        "nothing is sent to a stream that is gone"
    );
    // And a later request with the rotated key passes without another fetch.
    assert_eq!(
        get(&mut w, &mut host, 22, &rotated),
        RequestAction::Continue
    );
    assert!(allowed(&host, 22));
    assert_eq!(host.dispatched.len(), 2);
}

#[test]
fn late_duplicate_and_unknown_callouts_change_nothing() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    let first = host.dispatched[0].token;
    // The same answer again, and an answer for a token never dispatched.
    host.answer(&mut w, first, 500, b"oops");
    host.no_answer(&mut w, 4242);
    assert_eq!(fetch_failures(&host), 0);
    assert_eq!(w.callouts_in_flight(), 0);
    assert_eq!(
        get(&mut w, &mut host, 30, &signed("k1")),
        RequestAction::Continue
    );
    assert!(allowed(&host, 30));
}

#[test]
fn a_parked_request_times_out_with_503_and_retry_after() {
    let mut w = worker(json!({"request_wait_ms": 1000}));
    let mut host = FakeHost::new(NOW_MS);
    assert_eq!(
        get(&mut w, &mut host, 40, &signed("k1")),
        RequestAction::Pause
    );
    host.now_ms += 500;
    w.on_tick(&mut host);
    assert!(host.reply_of(40).is_none(), "still within request_wait_ms");
    host.now_ms += 600;
    w.on_tick(&mut host);
    let sent = host.reply_of(40).unwrap();
    assert_eq!(sent.status, 503);
    assert_eq!(sent.code().as_deref(), Some("key_manager_unavailable"));
    let retry: u64 = sent.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(w.parked(), 0);
    assert!(!host.stream(40).unwrap().resumed);
}

#[test]
fn no_answer_at_all_fails_parked_requests_closed() {
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    assert_eq!(
        get(&mut w, &mut host, 50, &signed("k1")),
        RequestAction::Pause
    );
    let token = host.last_dispatch().unwrap().token;
    host.no_answer(&mut w, token);
    let sent = host.reply_of(50).unwrap();
    assert_eq!(sent.status, 503);
    assert_eq!(fetch_failures(&host), 1);
    assert!(!host.stream(50).unwrap().resumed);
}

#[test]
fn a_host_that_refuses_the_callout_answers_503_at_once() {
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    host.refuse_dispatch = true;
    assert_eq!(
        get(&mut w, &mut host, 55, &signed("k1")),
        RequestAction::Pause
    );
    assert_eq!(host.reply_of(55).unwrap().status, 503);
    assert_eq!(w.parked(), 0);
}

#[test]
fn parked_requests_are_bounded_per_key_manager_and_in_total() {
    let mut w = worker(json!({"max_parked_per_key_manager": 3, "max_parked_requests": 5}));
    let mut host = FakeHost::new(NOW_MS);
    let t = signed("k1");
    for stream in 100..110 {
        assert_eq!(get(&mut w, &mut host, stream, &t), RequestAction::Pause);
    }
    assert_eq!(w.parked(), 3);
    assert_eq!(host.dispatched.len(), 1);
    assert_eq!(host.counter(counters::PARKED_OVERFLOW), 7);
    for stream in 103..110 {
        let sent = host.reply_of(stream).unwrap();
        assert_eq!(sent.status, 503);
        assert!(sent.header("retry-after").is_some());
    }
    // The three within the bound still pass when the keys arrive.
    let token = host.last_dispatch().unwrap().token;
    host.answer(&mut w, token, 200, &keys(&["k1"]));
    for stream in 100..103 {
        assert!(allowed(&host, stream));
    }
}

#[test]
fn the_total_bound_holds_across_key_managers() {
    let mut w = worker(json!({"max_parked_per_key_manager": 10, "max_parked_requests": 2}));
    let mut host = FakeHost::new(NOW_MS);
    let t = signed("k1");
    for stream in 1..=4 {
        get(&mut w, &mut host, stream, &t);
    }
    assert_eq!(w.parked(), 2);
    assert_eq!(host.reply_of(3).unwrap().status, 503);
    assert_eq!(host.reply_of(4).unwrap().status, 503);
}

#[test]
fn two_workers_share_one_fetch_through_shared_data() {
    let mut a = worker(json!({}));
    let mut b = worker(json!({}));
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    let t = signed("k1");
    assert_eq!(get(&mut a, &mut host_a, 1, &t), RequestAction::Pause);
    // Worker B sees A's lease and waits instead of fetching.
    assert_eq!(get(&mut b, &mut host_b, 2, &t), RequestAction::Pause);
    assert_eq!(host_a.dispatched.len(), 1);
    assert!(host_b.dispatched.is_empty(), "only one worker fetches");
    let token = host_a.last_dispatch().unwrap().token;
    host_a.answer(&mut a, token, 200, &keys(&["k1"]));
    assert!(allowed(&host_a, 1));
    // B adopts the published keys on its next tick and finishes its parked request.
    host_b.now_ms += 200;
    b.on_tick(&mut host_b);
    assert!(allowed(&host_b, 2), "{:?}", host_b.stream(2));
    assert!(host_b.stream(2).unwrap().resumed);
    assert!(host_b.dispatched.is_empty());
}

#[test]
fn unknown_kid_refetch_is_rate_limited_then_decided_with_current_keys() {
    let (mut w, mut host) = warmed(&["k1"], json!({"jwks_unknown_kid_refetch_seconds": 30}));
    let forged = signed("nope");
    assert_eq!(get(&mut w, &mut host, 60, &forged), RequestAction::Pause);
    let token = host.last_dispatch().unwrap().token;
    host.answer(&mut w, token, 200, &keys(&["k1"]));
    assert_eq!(host.reply_of(60).unwrap().status, 401);
    // Within the refetch interval an unknown kid is refused at once, with no fetch.
    let fetches = host.dispatched.len();
    assert_eq!(get(&mut w, &mut host, 61, &forged), RequestAction::Pause);
    assert_eq!(host.reply_of(61).unwrap().status, 401);
    assert_eq!(host.dispatched.len(), fetches);
    assert_eq!(w.parked(), 0);
}

#[test]
fn identity_headers_are_removed_and_authorization_follows_the_setting() {
    let (mut w, mut host) = warmed(&["k1"], json!({"strip_authorization": true}));
    let mut h = headers("/pets/items", Some(&signed("k1")));
    h.push(("X-Keygate-Application".to_string(), "forged".to_string()));
    assert_eq!(w.on_request(&mut host, 70, &h), RequestAction::Continue);
    let log = host.stream(70).unwrap();
    assert!(log
        .removed_headers
        .iter()
        .any(|n| n == "X-Keygate-Application"));
    assert!(log.removed_headers.iter().any(|n| n == "authorization"));
    assert!(allowed(&host, 70));
    // A public resource: identity headers removed too, no token needed.
    let mut h = headers("/pets/health", None);
    h.push(("x-keygate-client-id".to_string(), "forged".to_string()));
    assert_eq!(w.on_request(&mut host, 71, &h), RequestAction::Continue);
    assert!(host
        .stream(71)
        .unwrap()
        .removed_headers
        .iter()
        .any(|n| n == "x-keygate-client-id"));
}

#[test]
fn two_authorization_headers_are_refused_not_decided_on_either() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    let mut h = headers("/pets/items", Some(&signed("k1")));
    h.push((
        "authorization".to_string(),
        format!("Bearer {}", signed("k1")),
    ));
    assert_eq!(w.on_request(&mut host, 80, &h), RequestAction::Pause);
    assert_eq!(host.reply_of(80).unwrap().status, 400);
}

#[test]
fn denials_are_answered_and_counted_by_code() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    assert_eq!(
        w.on_request(&mut host, 90, &headers("/pets/items", None)),
        RequestAction::Pause
    );
    let sent = host.reply_of(90).unwrap();
    assert_eq!(sent.status, 401);
    assert!(sent
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let name = metrics::request(
        RequestOutcome::Denied,
        Some("missing_token"),
        None,
        Some("pets"),
    );
    assert_eq!(host.counter(name.as_str()), 1, "{:?}", host.counters);
    assert_eq!(requests(&host, &[("outcome", "denied")]), 1);
    let state = &host.stream(90).unwrap().filter_state;
    assert!(state.contains(&("keygate.code".to_string(), "missing_token".to_string())));
}

#[test]
fn a_cache_hit_reads_no_shared_data_and_a_forged_token_is_verified_once() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    let good = signed("k1");
    assert_eq!(get(&mut w, &mut host, 1, &good), RequestAction::Continue);
    host.reset_calls();
    assert_eq!(get(&mut w, &mut host, 2, &good), RequestAction::Continue);
    assert!(allowed(&host, 2));
    assert_eq!(
        host.shared_reads(),
        0,
        "a hit needs no copy of the key record"
    );
    // A forged signature under a known kid: refused, and the refusal is remembered.
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[2] = "A".repeat(parts[2].len());
    let forged = parts.join(".");
    assert_eq!(get(&mut w, &mut host, 3, &forged), RequestAction::Pause);
    let first = host.reply_of(3).unwrap().clone();
    assert_eq!(first.status, 401);
    assert_eq!(get(&mut w, &mut host, 4, &forged), RequestAction::Pause);
    assert_eq!(
        host.reply_of(4),
        Some(&first),
        "the same answer from the cache"
    );
}

#[test]
fn a_worker_that_has_not_adopted_yet_uses_published_keys_without_fetching() {
    let mut a = worker(json!({}));
    let mut b = worker(json!({}));
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    a.on_tick(&mut host_a);
    let token = host_a.last_dispatch().unwrap().token;
    host_a.answer(&mut a, token, 200, &keys(&["k1"]));
    // B has never ticked: it finds the published keys when the request would park.
    assert_eq!(
        get(&mut b, &mut host_b, 9, &signed("k1")),
        RequestAction::Continue
    );
    assert!(allowed(&host_b, 9));
    assert!(host_b.dispatched.is_empty());
    assert_eq!(b.parked(), 0);
}

#[test]
fn a_worker_adopts_rotated_keys_published_by_another_before_refetching() {
    let (mut a, mut host_a) = warmed(&["k1"], json!({}));
    let mut b = worker(json!({}));
    let mut host_b = host_a.sibling();
    b.on_tick(&mut host_b); // adopts k1
    assert_eq!(
        get(&mut b, &mut host_b, 1, &signed("k1")),
        RequestAction::Continue
    );
    // A refetches after a rotation and publishes k2.
    assert_eq!(
        get(&mut a, &mut host_a, 2, &signed("k2")),
        RequestAction::Pause
    );
    let token = host_a.last_dispatch().unwrap().token;
    host_a.answer(&mut a, token, 200, &keys(&["k1", "k2"]));
    assert!(allowed(&host_a, 2));
    // B sees k2 unknown locally, adopts the shared record instead of fetching, and allows.
    assert_eq!(
        get(&mut b, &mut host_b, 3, &signed("k2")),
        RequestAction::Continue
    );
    assert!(allowed(&host_b, 3));
    assert!(host_b.dispatched.is_empty());
}

#[test]
fn a_refresh_that_fetches_the_same_jwks_keeps_verified_tokens() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    // A host asked for every ES256 check that lets Wasm decide: it counts verifications.
    host.crypto = Some(Box::new(|_, _, _, _| None));
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["exp"] = json!(NOW + 86_400.0);
    let t = token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256");
    let refresh = |w: &mut Worker, host: &mut FakeHost, kids: &[&str]| {
        host.now_ms += 700_000;
        w.on_tick(host);
        let token = host.last_dispatch().unwrap().token;
        host.answer(w, token, 200, &keys(kids));
    };
    assert_eq!(get(&mut w, &mut host, 1, &t), RequestAction::Continue);
    assert_eq!(get(&mut w, &mut host, 2, &t), RequestAction::Continue);
    assert_eq!(
        host.crypto_calls.get(),
        1,
        "verified once, then a cache hit"
    );
    // The scheduled refresh brings a byte-identical JWKS: still a hit.
    refresh(&mut w, &mut host, &["k1"]);
    assert_eq!(host.dispatched.len(), 2);
    assert_eq!(get(&mut w, &mut host, 3, &t), RequestAction::Continue);
    assert_eq!(
        host.crypto_calls.get(),
        1,
        "an identical JWKS invalidates nothing"
    );
    // A JWKS that changed does: the token is verified again, once.
    refresh(&mut w, &mut host, &["k1", "k3"]);
    assert_eq!(get(&mut w, &mut host, 4, &t), RequestAction::Continue);
    assert_eq!(get(&mut w, &mut host, 5, &t), RequestAction::Continue);
    assert_eq!(host.crypto_calls.get(), 2);
    assert!(allowed(&host, 5));
}

#[test]
fn authorization_is_stripped_by_default_and_kept_on_request() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    assert_eq!(
        get(&mut w, &mut host, 1, &signed("k1")),
        RequestAction::Continue
    );
    assert!(host
        .stream(1)
        .unwrap()
        .removed_headers
        .iter()
        .any(|n| n == "authorization"));
    // A public request without a token has nothing to strip: no host call for it.
    assert_eq!(
        w.on_request(&mut host, 2, &headers("/pets/health", None)),
        RequestAction::Continue
    );
    assert!(host
        .stream(2)
        .is_none_or(|log| log.removed_headers.is_empty()));
    // With a token on a public resource, it is stripped there too.
    let h = headers("/pets/health", Some(&signed("k1")));
    assert_eq!(w.on_request(&mut host, 3, &h), RequestAction::Continue);
    assert!(host
        .stream(3)
        .unwrap()
        .removed_headers
        .iter()
        .any(|n| n == "authorization"));
    let (mut keep, mut host) = warmed(&["k1"], json!({"strip_authorization": false}));
    assert_eq!(
        get(&mut keep, &mut host, 4, &signed("k1")),
        RequestAction::Continue
    );
    assert!(!host
        .stream(4)
        .unwrap()
        .removed_headers
        .iter()
        .any(|n| n == "authorization"));
}

#[test]
fn a_cached_token_is_authorized_per_resource() {
    let (mut w, mut host) = warmed(&["k1"], json!({}));
    let t = signed("k1");
    assert_eq!(get(&mut w, &mut host, 1, &t), RequestAction::Continue);
    assert_eq!(get(&mut w, &mut host, 2, &t), RequestAction::Continue);
    // The same verified token on a resource that needs another scope: refused, from the cache.
    let admin = headers("/pets/admin", Some(&t));
    assert_eq!(w.on_request(&mut host, 3, &admin), RequestAction::Pause);
    assert_eq!(host.reply_of(3).unwrap().status, 403);
    assert_eq!(
        host.reply_of(3).unwrap().code().as_deref(),
        Some("insufficient_scope")
    );
    assert_eq!(get(&mut w, &mut host, 4, &t), RequestAction::Continue);
    assert!(allowed(&host, 4));
}

/// The plugin config of `policy` with another issuer / JWKS URI for `idp` and one more
/// application (`web`, client `app-2`): what a new ECDS config delivers.
fn reconfigured(issuer: &str, jwks_uri: &str) -> Policy {
    let cfg = json!({
        "environment": "production",
        "key_managers": [{
            "name": "idp",
            "issuer": issuer,
            "audiences": ["api://pets"],
            "jwks": {"uri": jwks_uri, "cluster": "jwks_idp", "authority": "idp.example", "path": "/jwks"}
        }],
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [
            {"method": "GET", "path": "/items", "scopes": ["pets:read"]}
        ]}],
        "applications": [
            {"name": "shop", "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
             "subscriptions": [{"api": "pets"}]},
            {"name": "web", "client_ids": [{"key_manager": "idp", "client_id": "app-2"}],
             "subscriptions": [{"api": "pets"}]}
        ]
    });
    Policy::from_json(cfg.to_string().as_bytes()).unwrap()
}

#[test]
fn a_new_config_with_the_same_key_manager_adopts_the_stored_keys_without_fetching() {
    // Envoy builds a new root context (a new Worker) in the same VM for a new filter config;
    // shared data belongs to the VM id, so the old config's key record is still there.
    let (_old, mut host) = warmed(&["k1"], json!({}));
    assert_eq!(host.dispatched.len(), 1);
    let mut new = Worker::new(
        reconfigured("https://idp.example", "https://idp.example/jwks"),
        8,
    );
    new.on_tick(&mut host);
    assert_eq!(
        get(&mut new, &mut host, 1, &signed("k1")),
        RequestAction::Continue
    );
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
    // Many ticks later (still within the refresh interval) nothing was fetched again.
    for _ in 0..50 {
        host.now_ms += 200;
        new.on_tick(&mut host);
    }
    assert_eq!(host.dispatched.len(), 1, "no refetch for a new config");
    // The new application is served with the same keys.
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["client_id"] = json!("app-2");
    let web = token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256");
    assert_eq!(get(&mut new, &mut host, 2, &web), RequestAction::Continue);
    let log = host.stream(2).unwrap();
    assert!(log.reply.is_none(), "{log:?}");
    assert!(log
        .set_headers
        .iter()
        .any(|(n, v)| n == "x-keygate-application" && v == "web"));
    assert_eq!(host.dispatched.len(), 1);
}

#[test]
fn a_new_config_that_moves_a_key_manager_fetches_its_keys_afresh() {
    for (issuer, jwks_uri) in [
        // Another issuer behind the same JWKS URI: its keys are not assumed to be the old ones.
        ("https://idp2.example", "https://idp.example/jwks"),
        // Another JWKS URI.
        ("https://idp.example", "https://idp.example/other-jwks"),
    ] {
        let (_old, mut host) = warmed(&["k1"], json!({}));
        let mut new = Worker::new(reconfigured(issuer, jwks_uri), 8);
        new.on_tick(&mut host);
        assert_eq!(
            host.dispatched.len(),
            2,
            "{issuer} {jwks_uri}: fetched anew"
        );
        let mut c = claims();
        c["scope"] = json!("pets:read");
        c["iss"] = json!(issuer);
        let t = token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256");
        // Until the new fetch answers, the request waits: the old record is not served.
        let verdict = new.on_request(&mut host, 1, &headers("/pets/items", Some(&t)));
        assert_eq!(verdict, RequestAction::Pause, "{issuer} {jwks_uri}");
        let fetch = host.last_dispatch().unwrap().token;
        host.answer(&mut new, fetch, 200, &keys(&["k1"]));
        assert!(allowed(&host, 1), "{:?}", host.stream(1));
    }
}

#[test]
fn every_verdict_is_counted_once_with_its_labels_and_timed_once() {
    let mut w = worker(json!({"request_wait_ms": 1000}));
    let mut host = FakeHost::new(NOW_MS);
    let good = signed("k1");
    // Parked while the first fetch runs, then allowed: counted when answered, with the key
    // manager and API it was decided under.
    assert_eq!(get(&mut w, &mut host, 1, &good), RequestAction::Pause);
    assert_eq!(
        requests(&host, &[]),
        0,
        "a parked request has no verdict yet"
    );
    assert!(host.histogram(metrics::FILTER_TIME_US).is_empty());
    let fetch = host.last_dispatch().unwrap().token;
    host.answer(&mut w, fetch, 200, &keys(&["k1"]));
    let allowed_name = metrics::request(RequestOutcome::Allowed, None, Some("idp"), Some("pets"));
    assert_eq!(
        host.counter(allowed_name.as_str()),
        1,
        "{:?}",
        host.counters
    );
    // Repeats come from the verified-token cache.
    for stream in 2..5 {
        assert_eq!(
            get(&mut w, &mut host, stream, &good),
            RequestAction::Continue
        );
    }
    assert_eq!(host.counter(allowed_name.as_str()), 4);
    assert_eq!(host.counter(metrics::token_cache(true)), 3);
    assert_eq!(host.counter(metrics::token_cache(false)), 1);
    // A token without the resource's scope: the cached verdict still names key manager and API.
    let admin = headers("/pets/admin", Some(&good));
    assert_eq!(w.on_request(&mut host, 5, &admin), RequestAction::Pause);
    let scope = metrics::request(
        RequestOutcome::Denied,
        Some("insufficient_scope"),
        Some("idp"),
        Some("pets"),
    );
    assert_eq!(host.counter(scope.as_str()), 1, "{:?}", host.counters);
    // Public, unknown API, missing token: what is known is labeled, nothing else.
    assert_eq!(
        w.on_request(&mut host, 6, &headers("/pets/health", None)),
        RequestAction::Continue
    );
    assert_eq!(
        host.counter(metrics::request(RequestOutcome::Public, None, None, Some("pets")).as_str()),
        1
    );
    assert_eq!(
        w.on_request(&mut host, 7, &headers("/nowhere", None)),
        RequestAction::Pause
    );
    assert_eq!(
        host.counter(metrics::request(RequestOutcome::Denied, Some("no_api"), None, None).as_str()),
        1
    );
    // A token of an issuer nobody trusts: refused before any key manager is known.
    let mut c = claims();
    c["iss"] = json!("https://stranger.example");
    let stranger = token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256");
    assert_eq!(get(&mut w, &mut host, 8, &stranger), RequestAction::Pause);
    let denied_8 = host.reply_of(8).unwrap().code().unwrap();
    assert_eq!(
        host.counter(
            metrics::request(RequestOutcome::Denied, Some(&denied_8), None, Some("pets")).as_str()
        ),
        1,
        "{:?}",
        host.counters
    );
    // A request parked past request_wait_ms: one 503, counted with its labels.
    let mut cold = worker(json!({"request_wait_ms": 1000}));
    let mut cold_host = FakeHost::new(NOW_MS);
    assert_eq!(
        get(&mut cold, &mut cold_host, 9, &good),
        RequestAction::Pause
    );
    cold_host.now_ms += 1_100;
    cold.on_tick(&mut cold_host);
    let unavailable = metrics::request(
        RequestOutcome::Denied,
        Some("key_manager_unavailable"),
        Some("idp"),
        Some("pets"),
    );
    assert_eq!(
        cold_host.counter(unavailable.as_str()),
        1,
        "{:?}",
        cold_host.counters
    );
    assert_eq!(cold_host.histogram(metrics::FILTER_TIME_US).len(), 1);
    // One time sample per verdict, nothing else: no client id or subject anywhere in a name.
    assert_eq!(
        host.histogram(metrics::FILTER_TIME_US).len() as u64,
        requests(&host, &[])
    );
    assert_eq!(requests(&host, &[]), 8);
    for name in host.counters.keys() {
        assert!(!name.contains("app-1"), "{name}");
        let (metric, labels) = metrics::parse(name).unwrap();
        assert!(metric.starts_with("keygate_"), "{name}");
        for (label, _) in labels {
            assert!(metrics::LABELS.contains(&label), "{name}");
        }
    }
}

#[test]
fn jwks_fetches_are_counted_by_key_manager_and_outcome() {
    let mut w = worker(json!({}));
    let mut host = FakeHost::new(NOW_MS);
    w.on_tick(&mut host);
    let token = host.last_dispatch().unwrap().token;
    host.answer(&mut w, token, 500, b"down");
    assert_eq!(
        host.counter(metrics::jwks_fetch("idp", "jwks_http_status").as_str()),
        1,
        "{:?}",
        host.counters
    );
    let mut refusing = FakeHost::new(NOW_MS);
    refusing.refuse_dispatch = true;
    let mut w = worker(json!({}));
    w.on_tick(&mut refusing);
    assert_eq!(
        refusing.counter(metrics::jwks_fetch("idp", "jwks_dispatch_failed").as_str()),
        1,
        "{:?}",
        refusing.counters
    );
}

/// Issue 21, item 10: the filter answers its readiness path (`settings.ready_path`, default
/// `/keygate/ready`) itself, GET and HEAD only, so a health check through the listener sees a
/// gateway that can decide (a refused configuration makes Envoy answer 500 there instead).
#[test]
fn the_readiness_path_is_answered_by_the_filter() {
    let cfg = |settings: serde_json::Value| {
        let mut cfg: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/policy_fixture.json")).unwrap();
        cfg["settings"] = settings;
        Policy::from_json(cfg.to_string().as_bytes()).unwrap()
    };
    let ask = |w: &mut Worker, host: &mut FakeHost, stream: u32, method: &str, path: &str| {
        let headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "api.example".to_string()),
        ];
        w.on_request(host, stream, &headers)
    };
    let mut w = Worker::new(cfg(serde_json::json!({})), 1);
    let mut host = FakeHost::new(1_700_000_000_000);
    assert_eq!(
        ask(&mut w, &mut host, 1, "GET", "/keygate/ready"),
        RequestAction::Pause
    );
    let sent = host.reply_of(1).unwrap();
    assert_eq!(sent.status, 200);
    assert_eq!(sent.body, r#"{"status":"ready"}"#);
    assert_eq!(
        ask(&mut w, &mut host, 2, "HEAD", "/keygate/ready"),
        RequestAction::Pause
    );
    assert_eq!(host.reply_of(2).unwrap().status, 200);
    // Another method, or the path with a query, is an ordinary request.
    ask(&mut w, &mut host, 3, "POST", "/keygate/ready");
    assert_ne!(host.reply_of(3).map(|s| s.status), Some(200));
    ask(&mut w, &mut host, 4, "GET", "/keygate/ready/x");
    assert_ne!(host.reply_of(4).map(|s| s.status), Some(200));
    // Another path, or none.
    let mut w = Worker::new(
        cfg(serde_json::json!({"ready_path": "/healthz/keygate"})),
        1,
    );
    ask(&mut w, &mut host, 5, "GET", "/healthz/keygate");
    assert_eq!(host.reply_of(5).unwrap().status, 200);
    let mut w = Worker::new(cfg(serde_json::json!({"ready_path": ""})), 1);
    ask(&mut w, &mut host, 6, "GET", "/keygate/ready");
    assert_ne!(host.reply_of(6).map(|s| s.status), Some(200));
}
