//! The application directory in the worker, on the fake host: two workers of one Envoy share one
//! fetch and one copy in shared data; the first fetch is a snapshot, later ones ask for changes
//! since the version held (conditional); a change is enforced by both workers after their next
//! tick, including for tokens they had already authorized; a 410 brings a snapshot; before the
//! first load a request that needs an application is 503 `directory_unavailable`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use keygate::policy::Policy;
use keygate::worker::{FakeHost, Worker};
use serde_json::{json, Value};
use support::policies::{compile, config, NOW_MS};
use support::signers::{claims, jwks, public_jwk, token};

fn policy() -> Policy {
    let mut cfg = config(json!({}));
    cfg.as_object_mut().unwrap().remove("applications");
    cfg["directory"] = json!({"url": "http://dir.example/base", "cluster": "dir",
        "authority": "dir.example", "path": "/base"});
    compile(&cfg)
}

fn signed() -> String {
    let mut c = claims();
    c["scope"] = json!("pets:read");
    token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256")
}

fn shop(subscriptions: Value) -> Value {
    json!({"name": "shop", "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
           "subscriptions": subscriptions})
}

/// The code of the reply to a GET of /pets/items with the test token (`allowed` when forwarded).
fn get(worker: &mut Worker, host: &mut FakeHost, stream: u32) -> String {
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/pets/items".to_string()),
        (":authority".to_string(), "api.example".to_string()),
        ("authorization".to_string(), format!("Bearer {}", signed())),
    ];
    worker.on_request(host, stream, &headers);
    host.run_wakeup(worker);
    match host.reply_of(stream) {
        Some(sent) => sent.code().unwrap_or_default(),
        None => "allowed".to_string(),
    }
}

/// A directory fetch: callout token, path, headers.
type Fetched = (u32, String, Vec<(String, String)>);

/// The directory fetches `host` started since `from` (cluster `dir`).
fn fetches(host: &FakeHost, from: usize) -> Vec<Fetched> {
    host.dispatched[from..]
        .iter()
        .filter(|d| d.cluster == "dir")
        .map(|d| (d.token, d.path.clone(), d.headers.clone()))
        .collect()
}

#[test]
fn two_workers_share_one_fetch_one_copy_and_every_change() {
    let (mut w1, mut w2) = (Worker::new(policy(), 1), Worker::new(policy(), 2));
    let mut h1 = FakeHost::new(NOW_MS);
    let mut h2 = h1.sibling();
    w1.on_tick(&mut h1);
    w2.on_tick(&mut h2);
    let first = fetches(&h1, 0);
    assert_eq!(first.len(), 1, "{:?}", h1.dispatched);
    assert_eq!(first[0].1, "/base/v1/snapshot?limit=1000");
    assert!(
        fetches(&h2, 0).is_empty(),
        "the other worker lost the lease"
    );
    let jwks_call = h1
        .dispatched
        .iter()
        .find(|d| d.cluster != "dir")
        .unwrap()
        .token;
    h1.answer(&mut w1, jwks_call, 200, &jwks(&[public_jwk("p256", "k1")]));

    // Never loaded: 503, never forwarded.
    assert_eq!(get(&mut w1, &mut h1, 1), "directory_unavailable");
    assert_eq!(h1.reply_of(1).unwrap().header("retry-after"), Some("1"));

    let snapshot = json!({"version": "v1", "applications": [shop(json!([{"api": "pets"}]))]});
    h1.answer(&mut w1, first[0].0, 200, snapshot.to_string().as_bytes());
    assert_eq!(get(&mut w1, &mut h1, 2), "allowed");
    w2.on_tick(&mut h2);
    assert_eq!(
        get(&mut w2, &mut h2, 3),
        "allowed",
        "one copy, read by both"
    );

    // A second later: one worker asks for the changes since v1, conditionally.
    h1.now_ms += 1_000;
    h2.now_ms += 1_000;
    let (n1, n2) = (h1.dispatched.len(), h2.dispatched.len());
    w1.on_tick(&mut h1);
    w2.on_tick(&mut h2);
    let (mut f1, f2) = (fetches(&h1, n1), fetches(&h2, n2));
    assert_eq!(f1.len() + f2.len(), 1, "{f1:?} {f2:?}");
    let (host, worker) = if f1.is_empty() {
        f1 = f2;
        (&mut h2, &mut w2)
    } else {
        (&mut h1, &mut w1)
    };
    assert_eq!(f1[0].1, "/base/v1/changes?since=v1");
    assert!(f1[0]
        .2
        .contains(&("if-none-match".to_string(), "\"v1\"".to_string())));
    let changes = json!({"version": "v2", "changes": [
        {"op": "upsert", "application": shop(json!([]))}]});
    host.answer(worker, f1[0].0, 200, changes.to_string().as_bytes());

    // Both workers, after their next tick, refuse the token they had allowed.
    w1.on_tick(&mut h1);
    w2.on_tick(&mut h2);
    assert_eq!(get(&mut w1, &mut h1, 4), "not_subscribed");
    assert_eq!(get(&mut w2, &mut h2, 5), "not_subscribed");

    // A 410: the next fetch is a snapshot.
    h1.now_ms += 1_000;
    h2.now_ms += 1_000;
    let n1 = h1.dispatched.len();
    w1.on_tick(&mut h1);
    let gone = fetches(&h1, n1);
    assert_eq!(gone[0].1, "/base/v1/changes?since=v2");
    h1.answer(&mut w1, gone[0].0, 410, br#"{"error": "version_unknown"}"#);
    let n1 = h1.dispatched.len();
    w1.on_tick(&mut h1);
    let again = fetches(&h1, n1);
    assert_eq!(again[0].1, "/base/v1/snapshot?limit=1000");
    let snapshot = json!({"version": "w1", "applications": [shop(json!([{"api": "pets"}]))]});
    h1.answer(&mut w1, again[0].0, 200, snapshot.to_string().as_bytes());
    w2.on_tick(&mut h2);
    assert_eq!(get(&mut w2, &mut h2, 6), "allowed");
}

/// The policy with an API `keys` at `/keys` that accepts only API keys.
fn key_policy() -> Policy {
    let mut cfg = config(json!({}));
    cfg.as_object_mut().unwrap().remove("applications");
    cfg["apis"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "keys", "base_path": "/keys",
        "security": ["api_key"], "resources": [{"method": "GET", "path": "/items"}]}));
    cfg["directory"] = json!({"url": "http://dir.example/base", "cluster": "dir",
        "authority": "dir.example", "path": "/base"});
    compile(&cfg)
}

/// The code of the reply to a GET of /keys/items with `key` in `apikey`.
fn get_with_key(worker: &mut Worker, host: &mut FakeHost, stream: u32, key: &str) -> String {
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/keys/items".to_string()),
        (":authority".to_string(), "api.example".to_string()),
        ("apikey".to_string(), key.to_string()),
    ];
    worker.on_request(host, stream, &headers);
    match host.reply_of(stream) {
        Some(sent) => sent.code().unwrap_or_default(),
        None => "allowed".to_string(),
    }
}

#[test]
fn api_keys_come_from_the_directory() {
    use keygate::policy::api_keys::{hash_hex, hash_key};
    let sha = |key: &str| hash_hex(&hash_key(key));
    let (mut w1, mut w2) = (Worker::new(key_policy(), 1), Worker::new(key_policy(), 2));
    let mut h1 = FakeHost::new(NOW_MS);
    let mut h2 = h1.sibling();
    w1.on_tick(&mut h1);
    w2.on_tick(&mut h2);
    let first = fetches(&h1, 0);
    assert_eq!(first[0].1, "/base/v1/snapshot?limit=1000");

    // Never loaded: a key cannot be looked up: 503, never forwarded.
    assert_eq!(
        get_with_key(&mut w1, &mut h1, 1, "kg_live"),
        "directory_unavailable"
    );
    assert_eq!(h1.reply_of(1).unwrap().status, 503);

    let shop =
        |keys: Value| json!({"name": "shop", "subscriptions": [{"api": "keys"}], "api_keys": keys});
    // NOW_MS is in 2026: an expiry in 2020 has passed.
    let keys = json!([{"name": "live", "sha256": sha("kg_live")},
                      {"name": "old", "sha256": sha("kg_old"), "expires": "2020-01-01T00:00:00Z"}]);
    let thief = json!({"name": "thief", "subscriptions": [{"api": "keys"}],
                       "api_keys": [{"name": "mine", "sha256": sha("kg_live")}]});
    let bad = json!({"name": "bad", "api_keys": [{"name": "x", "sha256": "ABC"}]});
    let snapshot = json!({"version": "v1", "applications": [shop(keys), thief, bad]});
    h1.answer(&mut w1, first[0].0, 200, snapshot.to_string().as_bytes());
    let refused =
        |reason: &str| h1.counter_where("keygate_directory_refused_entries", &[("reason", reason)]);
    assert_eq!(refused("api_key_taken"), 1, "the second claim of a hash");
    assert_eq!(refused("invalid"), 1, "a malformed hash");

    w2.on_tick(&mut h2);
    assert_eq!(get_with_key(&mut w2, &mut h2, 2, "kg_live"), "allowed");
    assert_eq!(
        get_with_key(&mut w1, &mut h1, 3, "kg_old"),
        "api_key_expired"
    );
    assert_eq!(
        get_with_key(&mut w1, &mut h1, 4, "kg_never"),
        "api_key_unknown"
    );

    // The key removed from the application: both workers refuse it after their next tick.
    h1.now_ms += 1_000;
    h2.now_ms += 1_000;
    let n1 = h1.dispatched.len();
    w1.on_tick(&mut h1);
    let next = fetches(&h1, n1);
    assert_eq!(next[0].1, "/base/v1/changes?since=v1");
    let changes = json!({"version": "v2", "changes": [
        {"op": "upsert", "application": shop(json!([{"name": "new", "sha256": sha("kg_new")}]))},
        {"op": "upsert", "application": {"name": "thief", "subscriptions": [{"api": "keys"}],
            "api_keys": [{"name": "mine", "sha256": sha("kg_live")}]}}]});
    h1.answer(&mut w1, next[0].0, 200, changes.to_string().as_bytes());
    w2.on_tick(&mut h2);
    assert_eq!(get_with_key(&mut w2, &mut h2, 5, "kg_new"), "allowed");
    // The hash was freed by shop, so thief's claim now applies.
    assert_eq!(get_with_key(&mut w2, &mut h2, 6, "kg_live"), "allowed");
    assert_eq!(
        get_with_key(&mut w1, &mut h1, 7, "kg_old"),
        "api_key_unknown"
    );
    let changes = json!({"version": "v3", "changes": [{"op": "remove", "name": "thief"}]});
    h1.now_ms += 1_000;
    h2.now_ms += 1_000;
    let n1 = h1.dispatched.len();
    w1.on_tick(&mut h1);
    let next = fetches(&h1, n1);
    h1.answer(&mut w1, next[0].0, 200, changes.to_string().as_bytes());
    w2.on_tick(&mut h2);
    assert_eq!(
        get_with_key(&mut w2, &mut h2, 8, "kg_live"),
        "api_key_unknown"
    );
}

#[test]
fn a_paged_snapshot_is_served_only_when_its_last_page_arrived() {
    let mut w1 = Worker::new(policy(), 1);
    let mut h1 = FakeHost::new(NOW_MS);
    w1.on_tick(&mut h1);
    let first = fetches(&h1, 0);
    assert_eq!(first[0].1, "/base/v1/snapshot?limit=1000");
    let jwks_call = h1
        .dispatched
        .iter()
        .find(|d| d.cluster != "dir")
        .unwrap()
        .token;
    h1.answer(&mut w1, jwks_call, 200, &jwks(&[public_jwk("p256", "k1")]));
    let other = json!({"name": "other", "client_ids": [{"key_manager": "idp", "client_id": "x"}]});
    let page = json!({"version": "v1", "applications": [other], "next": "v1/1"});
    let n = h1.dispatched.len();
    h1.answer(&mut w1, first[0].0, 200, page.to_string().as_bytes());
    // Half a snapshot is never served; the next page is asked for at once.
    assert_eq!(get(&mut w1, &mut h1, 1), "directory_unavailable");
    let second = fetches(&h1, n);
    assert_eq!(second[0].1, "/base/v1/snapshot?limit=1000&after=v1%2F1");
    // The source changed meanwhile: 410, and the snapshot starts again.
    h1.answer(
        &mut w1,
        second[0].0,
        410,
        br#"{"error": "version_unknown"}"#,
    );
    let n = h1.dispatched.len();
    w1.on_tick(&mut h1);
    let again = fetches(&h1, n);
    assert_eq!(again[0].1, "/base/v1/snapshot?limit=1000");
    let page = json!({"version": "v2", "applications": [shop(json!([]))], "next": "v2/1"});
    let n = h1.dispatched.len();
    h1.answer(&mut w1, again[0].0, 200, page.to_string().as_bytes());
    let last = fetches(&h1, n);
    let other = json!({"name": "other", "client_ids": [{"key_manager": "idp", "client_id": "x"}]});
    let page = json!({"version": "v2", "applications": [other]});
    h1.answer(&mut w1, last[0].0, 200, page.to_string().as_bytes());
    w1.on_tick(&mut h1);
    // Both pages applied: shop (from page one) is known, not subscribed to pets.
    assert_eq!(get(&mut w1, &mut h1, 2), "not_subscribed");
}
