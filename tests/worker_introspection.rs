//! Opaque tokens through the worker and the fake host: one introspection call per token and cache
//! period (in one worker and across two sharing data), what active, inactive and failed answers
//! give, the order of several key managers, parking limits, and the secret and the token kept out
//! of everything shared. Real authorization; only the host (and the key manager's answers) is fake.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::policies::{compile, key_manager};
use support::signers;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keygate::introspection::{Secrets, TokenHash};
use keygate::policy::Policy;
use keygate::worker::{counters, Dispatched, FakeHost, RequestAction, Worker};
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;
const NOW_MS: u64 = NOW * 1000;
const SECRET: &str = "s3cret:/+";

fn km(name: &str, envs: &[&str]) -> Value {
    let mut km = key_manager(name);
    km["environments"] = json!(envs);
    km["introspection"] = json!({"endpoint": format!("https://{name}.example/introspect"),
        "cluster": format!("intro_{name}"), "authority": format!("{name}.example"),
        "path": "/introspect", "client_id": "gateway",
        "client_secret_env": format!("{}_SECRET", name.to_uppercase())});
    km
}

fn policy_with(key_managers: Vec<Value>, settings: Value) -> Policy {
    let client_ids: Vec<Value> = [("idp", "app-1"), ("second", "app-2")]
        .iter()
        .filter(|(name, _)| key_managers.iter().any(|km| km["name"] == *name))
        .map(|(name, id)| json!({"key_manager": name, "client_id": id}))
        .collect();
    let cfg = json!({
        "environment": "production",
        "public_urls": ["http://api.example"],
        "key_managers": key_managers,
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [
            {"method": "GET", "path": "/items", "scopes": ["pets:read"]},
            {"method": "POST", "path": "/items", "scopes": ["pets:write"], "groups": ["admins"]}
        ]}],
        "applications": [{"name": "shop",
            "client_ids": client_ids,
            "subscriptions": [{"api": "pets"}]}],
        "settings": settings
    });
    compile(&cfg)
}

fn env(name: &str) -> Option<String> {
    name.ends_with("_SECRET").then(|| SECRET.to_string())
}

fn worker_for(policy: Policy) -> Worker {
    let secrets = Secrets::from_env(&policy, env).unwrap();
    Worker::new(policy, 7).with_secrets(secrets)
}

fn worker() -> Worker {
    worker_for(policy_with(vec![km("idp", &[])], json!({})))
}

fn request(
    worker: &mut Worker,
    host: &mut FakeHost,
    stream: u32,
    method: &str,
    token: &str,
) -> RequestAction {
    let headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), "/pets/items".to_string()),
        (":authority".to_string(), "api.example".to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
    ];
    let verdict = worker.on_request(host, stream, &headers);
    host.run_wakeup(worker);
    verdict
}

fn get(worker: &mut Worker, host: &mut FakeHost, stream: u32, token: &str) -> RequestAction {
    request(worker, host, stream, "GET", token)
}

fn active(client_id: &str, scope: &str) -> Value {
    json!({"active": true, "client_id": client_id, "scope": scope, "sub": "alice",
           "iss": "https://idp.example", "aud": "api://pets", "exp": NOW + 3600,
           "token_type": "Bearer"})
}

/// Introspection calls started (ticks also start JWKS fetches, which are GETs).
fn calls(host: &FakeHost) -> Vec<Dispatched> {
    host.dispatched
        .iter()
        .filter(|d| d.method == "POST")
        .cloned()
        .collect()
}

/// The callout token of the last introspection call.
fn last_call(host: &FakeHost) -> u32 {
    calls(host).last().unwrap().token
}

fn answer(worker: &mut Worker, host: &mut FakeHost, body: &Value) {
    let token = last_call(host);
    host.answer(worker, token, 200, body.to_string().as_bytes());
}

fn allowed(host: &FakeHost, stream: u32) -> bool {
    let log = host.stream(stream).unwrap();
    log.reply.is_none()
        && log
            .set_headers
            .iter()
            .any(|(n, v)| n == "x-keygate-application" && v == "shop")
}

fn code(host: &FakeHost, stream: u32) -> (u32, String) {
    let sent = host
        .reply_of(stream)
        .unwrap_or_else(|| panic!("stream {stream} not answered: {:?}", host.stream(stream)));
    (sent.status, sent.code().unwrap_or_default())
}

/// The `WWW-Authenticate` of the reply to `stream`.
fn www_authenticate(host: &FakeHost, stream: u32) -> String {
    let sent = host.reply_of(stream).unwrap();
    sent.header("www-authenticate").unwrap().to_string()
}

const OPAQUE: &str = "Lx8wOE7k1Ps0qHUdzy2Gf3CGqfoB6Nzm4cJmF9Mr2hx";

#[test]
fn one_call_for_concurrent_requests_then_cache_hits() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    assert_eq!(get(&mut w, &mut host, 1, OPAQUE), RequestAction::Pause);
    assert_eq!(get(&mut w, &mut host, 2, OPAQUE), RequestAction::Pause);
    assert_eq!(w.parked(), 2);
    assert_eq!(calls(&host).len(), 1, "one call for both requests");
    let call = calls(&host).last().unwrap().clone();
    assert_eq!(call.method, "POST");
    assert_eq!(
        (call.cluster.as_str(), call.path.as_str()),
        ("intro_idp", "/introspect")
    );
    assert_eq!(
        String::from_utf8(call.body).unwrap(),
        format!("token={OPAQUE}&token_type_hint=access_token")
    );
    // RFC 6749 §2.3.1: the secret is form-encoded before Basic encoding.
    let basic = format!("Basic {}", STANDARD.encode("gateway:s3cret%3A%2F%2B"));
    assert_eq!(call.authorization.as_deref(), Some(basic.as_str()));

    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    for stream in [1, 2] {
        assert!(allowed(&host, stream), "{:?}", host.stream(stream));
        assert!(host.stream(stream).unwrap().resumed);
    }
    host.reset_calls();
    for stream in 3..103 {
        assert_eq!(
            get(&mut w, &mut host, stream, OPAQUE),
            RequestAction::Continue
        );
        assert!(allowed(&host, stream));
    }
    println!(
        "opaque token, cached: {} host calls and {} shared-data read(s) per request",
        host.calls() / 100,
        host.shared_reads() / 100
    );
    assert_eq!(
        host.counter("keygate_introspections.key_manager.idp.outcome.active"),
        1
    );
    assert_eq!(host.counter("keygate_introspection_cache.result.hit"), 100);
    // Every allowed request is counted under the key manager that vouched for the token, parked
    // ones and cache hits alike.
    let allowed_here = [
        ("outcome", "allowed"),
        ("key_manager", "idp"),
        ("api", "pets"),
    ];
    assert_eq!(
        host.counter_where("keygate_requests", &allowed_here),
        host.counter_where("keygate_requests", &[("outcome", "allowed")])
    );
    // Streams 1 and 2 (parked behind the one call) and 3..103 (cache hits).
    assert_eq!(host.counter_where("keygate_requests", &allowed_here), 102);
    // The shared cache holds the token's hash, never the token or the secret.
    for (key, (bytes, _)) in host.shared.borrow().iter() {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(OPAQUE) && !key.contains(OPAQUE), "{key}");
        assert!(!text.contains("s3cret"), "{key}");
    }
    let hash = TokenHash::of(OPAQUE).hex();
    assert!(host
        .shared
        .borrow()
        .values()
        .any(|(bytes, _)| String::from_utf8_lossy(bytes).contains(&hash)));
}

#[test]
fn two_workers_share_one_call_and_its_answer() {
    let policy = policy_with(vec![km("idp", &[])], json!({}));
    let mut a = worker_for(policy.clone());
    let mut b = worker_for(policy);
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    assert_eq!(get(&mut a, &mut host_a, 1, OPAQUE), RequestAction::Pause);
    assert_eq!(get(&mut b, &mut host_b, 2, OPAQUE), RequestAction::Pause);
    assert!(
        calls(&host_b).is_empty(),
        "the second worker waits for the first's call"
    );
    answer(&mut a, &mut host_a, &active("app-1", "pets:read"));
    assert!(allowed(&host_a, 1));
    host_b.now_ms += 200;
    b.on_tick(&mut host_b);
    assert!(allowed(&host_b, 2), "{:?}", host_b.stream(2));
    assert!(host_b.stream(2).unwrap().resumed);
    assert_eq!(get(&mut b, &mut host_b, 3, OPAQUE), RequestAction::Continue);
    assert!(calls(&host_b).is_empty());
    assert_eq!(calls(&host_a).len(), 1);
}

#[test]
fn a_lease_nobody_answers_runs_out_and_another_worker_calls() {
    let policy = policy_with(
        vec![km("idp", &[])],
        json!({"introspection_timeout_ms": 1000}),
    );
    let mut a = worker_for(policy.clone());
    let mut b = worker_for(policy);
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    get(&mut a, &mut host_a, 1, OPAQUE);
    get(&mut b, &mut host_b, 2, OPAQUE);
    host_b.now_ms += 1_500;
    b.on_tick(&mut host_b);
    assert!(calls(&host_b).is_empty(), "the lease still holds");
    host_b.now_ms += 600;
    b.on_tick(&mut host_b);
    assert_eq!(
        calls(&host_b).len(),
        1,
        "the lease ran out: this worker calls"
    );
    answer(&mut b, &mut host_b, &active("app-1", "pets:read"));
    assert!(allowed(&host_b, 2));
}

#[test]
fn inactive_is_401_and_cached_for_the_negative_time() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &json!({"active": false}));
    assert_eq!(code(&host, 1), (401, "token_inactive".to_string()));
    let www = www_authenticate(&host, 1);
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    assert!(!host.stream(1).unwrap().resumed);
    host.now_ms += 9_000;
    assert_eq!(get(&mut w, &mut host, 2, OPAQUE), RequestAction::Pause);
    assert_eq!(code(&host, 2), (401, "token_inactive".to_string()));
    assert_eq!(calls(&host).len(), 1);
    host.now_ms += 1_001;
    get(&mut w, &mut host, 3, OPAQUE);
    assert_eq!(calls(&host).len(), 2, "the negative entry ended (10 s)");
}

#[test]
fn an_active_answer_holds_until_exp_and_at_most_the_cache_time() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    host.now_ms += 59_000;
    assert_eq!(get(&mut w, &mut host, 2, OPAQUE), RequestAction::Continue);
    host.now_ms += 1_001;
    assert_eq!(get(&mut w, &mut host, 3, OPAQUE), RequestAction::Pause);
    assert_eq!(
        calls(&host).len(),
        2,
        "60 s (introspection_cache_seconds) passed"
    );

    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    let short = "short-lived-opaque-token";
    get(&mut w, &mut host, 1, short);
    let mut soon = active("app-1", "pets:read");
    soon["exp"] = json!(NOW + 20);
    answer(&mut w, &mut host, &soon);
    assert!(allowed(&host, 1));
    host.now_ms += 20_000;
    assert_eq!(get(&mut w, &mut host, 2, short), RequestAction::Pause);
    assert_eq!(calls(&host).len(), 2, "the entry ends at the token's exp");
}

#[test]
fn failures_answer_503_with_retry_after_and_are_never_forwarded() {
    type Fail = fn(&mut Worker, &mut FakeHost);
    let cases: Vec<(&str, Fail)> = vec![
        ("no answer", |w, h| {
            let t = last_call(h);
            h.no_answer(w, t)
        }),
        ("HTTP 500", |w, h| {
            let t = last_call(h);
            h.answer(w, t, 500, b"oops")
        }),
        ("HTTP 401 (credentials refused)", |w, h| {
            let t = last_call(h);
            h.answer(w, t, 401, br#"{"error":"invalid_client"}"#)
        }),
        ("not JSON", |w, h| {
            let t = last_call(h);
            h.answer(w, t, 200, b"<html>")
        }),
        ("no active member", |w, h| {
            let t = last_call(h);
            h.answer(w, t, 200, br#"{"client_id":"app-1"}"#)
        }),
        // Issue 21, finding 2: duplicate members are refused like a token's, at any depth, and
        // a refused answer is a failed call (503), never "inactive" or "active".
        ("duplicate active", |w, h| {
            let t = last_call(h);
            let body = br#"{"active":false,"client_id":"app-1","scope":"pets:read","active":true}"#;
            h.answer(w, t, 200, body)
        }),
        ("nested duplicate", |w, h| {
            let t = last_call(h);
            let body = br#"{"active":true,"client_id":"app-1","scope":"pets:read","cnf":{"jkt":"a","jkt":"b"}}"#;
            h.answer(w, t, 200, body)
        }),
        ("too large", |w, h| {
            let t = last_call(h);
            let big = format!(r#"{{"active":true,"x":"{}"}}"#, "a".repeat(20_000));
            h.answer(w, t, 200, big.as_bytes())
        }),
    ];
    for (name, fail) in cases {
        let mut w = worker();
        let mut host = FakeHost::new(NOW_MS);
        get(&mut w, &mut host, 1, OPAQUE);
        fail(&mut w, &mut host);
        assert_eq!(
            code(&host, 1),
            (503, "introspection_unavailable".to_string()),
            "{name}"
        );
        let sent = host.reply_of(1).unwrap();
        assert_eq!(sent.header("retry-after"), Some("1"), "{name}");
        assert!(!host.stream(1).unwrap().resumed, "{name}");
        // One finished call, and it is a failure (neither active nor inactive).
        let finished = host.counter_where("keygate_introspections", &[("key_manager", "idp")]);
        let answered = host.counter_where("keygate_introspections", &[("outcome", "active")])
            + host.counter_where("keygate_introspections", &[("outcome", "inactive")]);
        assert_eq!((finished, answered), (1, 0), "{name}");
        // Within the retry time: 503 again without a call; after it: a new call.
        get(&mut w, &mut host, 2, OPAQUE);
        assert_eq!(code(&host, 2).0, 503, "{name}");
        assert_eq!(calls(&host).len(), 1, "{name}");
        host.now_ms += 1_000;
        get(&mut w, &mut host, 3, OPAQUE);
        assert_eq!(calls(&host).len(), 2, "{name}");
    }
}

#[test]
fn a_refused_dispatch_is_503() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    host.refuse_dispatch = true;
    get(&mut w, &mut host, 1, OPAQUE);
    assert_eq!(
        code(&host, 1),
        (503, "introspection_unavailable".to_string())
    );
    assert_eq!(w.parked(), 0);
}

#[test]
fn a_cached_active_token_keeps_working_through_an_outage() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    get(&mut w, &mut host, 2, "another-opaque-token");
    let t = last_call(&host);
    host.no_answer(&mut w, t);
    assert_eq!(code(&host, 2).0, 503);
    host.now_ms += 30_000;
    assert_eq!(get(&mut w, &mut host, 3, OPAQUE), RequestAction::Continue);
    assert!(allowed(&host, 3));
}

#[test]
fn the_answer_is_authorized_like_a_jwt() {
    let with = |patch: Value| {
        let mut a = active("app-1", "pets:read");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                a.as_object_mut().unwrap().remove(k);
            } else {
                a[k] = v.clone();
            }
        }
        a
    };
    let cases = [
        ("allowed", with(json!({})), "GET", (0, "")),
        (
            "no exp, no iss, no token_type",
            with(json!({"exp": null, "iss": null, "token_type": null})),
            "GET",
            (0, ""),
        ),
        (
            "wrong scope",
            with(json!({"scope": "orders:read"})),
            "GET",
            (403, "insufficient_scope"),
        ),
        (
            "unknown client",
            with(json!({"client_id": "stranger"})),
            "GET",
            (403, "application_not_found"),
        ),
        (
            "no client id",
            with(json!({"client_id": null})),
            "GET",
            (401, "client_id_missing"),
        ),
        (
            "group missing",
            with(json!({"scope": "pets:write"})),
            "POST",
            (403, "insufficient_group"),
        ),
        (
            "group present",
            with(json!({"scope": "pets:write", "groups": ["admins"]})),
            "POST",
            (0, ""),
        ),
        (
            "other audience",
            with(json!({"aud": "api://other"})),
            "GET",
            (401, "audience_mismatch"),
        ),
        (
            "other issuer",
            with(json!({"iss": "https://evil.example"})),
            "GET",
            (401, "issuer_mismatch"),
        ),
        (
            "expired",
            with(json!({"exp": NOW - 120})),
            "GET",
            (401, "token_expired"),
        ),
        (
            "DPoP-bound",
            with(json!({"token_type": "DPoP"})),
            "GET",
            (401, "token_not_bearer"),
        ),
        (
            // RFC 8705: checked against the request's certificate (docs/mtls.md); "x" is no
            // SHA-256 thumbprint.
            "bound to a certificate",
            with(json!({"cnf": {"x5t#S256": "x"}})),
            "GET",
            (401, "certificate_binding_invalid"),
        ),
        (
            "bound some other way",
            with(json!({"cnf": {"kid": "x"}})),
            "GET",
            (401, "token_not_bearer"),
        ),
        (
            "bearer type with a DPoP key",
            with(json!({"cnf": {"jkt": "x"}})),
            "GET",
            (401, "token_not_bearer"),
        ),
        (
            "DPoP-bound, sent as a bearer token",
            with(json!({"token_type": "DPoP", "cnf": {"jkt": "x"}})),
            "GET",
            (401, "dpop_bound_token_as_bearer"),
        ),
    ];
    for (name, body, method, (status, expected)) in cases {
        let mut w = worker();
        let mut host = FakeHost::new(NOW_MS);
        request(&mut w, &mut host, 1, method, OPAQUE);
        answer(&mut w, &mut host, &body);
        if status == 0 {
            assert!(allowed(&host, 1), "{name}: {:?}", host.stream(1));
            let log = host.stream(1).unwrap();
            assert!(
                log.set_headers
                    .iter()
                    .any(|(n, v)| n == "x-keygate-client-id" && v == "app-1"),
                "{name}"
            );
            assert!(
                log.removed_headers.iter().any(|n| n == "authorization"),
                "{name}"
            );
        } else {
            assert_eq!(code(&host, 1), (status, expected.to_string()), "{name}");
        }
    }
}

#[test]
fn several_key_managers_are_asked_in_declaration_order() {
    let second = km("second", &[]);
    let sandbox_only = km("sandboxed", &["sandbox"]);
    let policy = policy_with(vec![sandbox_only, km("idp", &[]), second], json!({}));
    let mut w = worker_for(policy.clone());
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    assert_eq!(
        calls(&host).last().unwrap().cluster,
        "intro_idp",
        "not the sandbox one"
    );
    answer(&mut w, &mut host, &json!({"active": false}));
    assert_eq!(calls(&host).last().unwrap().cluster, "intro_second");
    let mut from_second = active("app-2", "pets:read");
    from_second["iss"] = json!("https://second.example");
    answer(&mut w, &mut host, &from_second);
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
    let log = host.stream(1).unwrap();
    assert!(log
        .set_headers
        .iter()
        .any(|(n, v)| n == "x-keygate-key-manager" && v == "second"));
    assert_eq!(calls(&host).len(), 2);

    // The first failing and the second inactive: nobody vouched and one could not answer: 503.
    let mut w = worker_for(policy.clone());
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    let t = last_call(&host);
    host.no_answer(&mut w, t);
    answer(&mut w, &mut host, &json!({"active": false}));
    assert_eq!(code(&host, 1).0, 503);

    // Both inactive: 401 after two calls.
    let mut w = worker_for(policy);
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &json!({"active": false}));
    answer(&mut w, &mut host, &json!({"active": false}));
    assert_eq!(code(&host, 1), (401, "token_inactive".to_string()));
    assert_eq!(calls(&host).len(), 2);
}

#[test]
fn a_parked_request_times_out_with_503_and_a_late_answer_still_fills_the_cache() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    get(&mut w, &mut host, 2, OPAQUE);
    w.on_done(2);
    host.now_ms += 5_000;
    w.on_tick(&mut host);
    assert_eq!(
        code(&host, 1),
        (503, "introspection_unavailable".to_string())
    );
    assert!(host.stream(2).is_none(), "a gone stream is not answered");
    assert_eq!(w.parked(), 0);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    assert_eq!(get(&mut w, &mut host, 3, OPAQUE), RequestAction::Continue);
    assert_eq!(calls(&host).len(), 1);
}

#[test]
fn parking_is_bounded() {
    let mut w = worker_for(policy_with(
        vec![km("idp", &[])],
        json!({"max_parked_requests": 2}),
    ));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    get(&mut w, &mut host, 2, OPAQUE);
    get(&mut w, &mut host, 3, OPAQUE);
    assert_eq!(
        code(&host, 3),
        (503, "introspection_unavailable".to_string())
    );
    assert_eq!(host.counter(counters::PARKED_OVERFLOW), 1);
}

#[test]
fn tokens_sharing_a_cache_entry_never_get_each_others_answer() {
    let policy = policy_with(
        vec![km("idp", &[])],
        json!({"introspection_cache_entries": 16}),
    );
    let first = "opaque-token-0";
    let entry = TokenHash::of(first).entry(16);
    let second = (1..)
        .map(|i| format!("opaque-token-{i}"))
        .find(|t| TokenHash::of(t).entry(16) == entry)
        .unwrap();
    let mut w = worker_for(policy);
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, first);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    get(&mut w, &mut host, 2, &second);
    assert_eq!(
        calls(&host).len(),
        2,
        "the other token is introspected itself"
    );
    answer(&mut w, &mut host, &active("app-2", "pets:read"));
    assert_eq!(
        code(&host, 2).0,
        403,
        "its own answer (app-2 has no subscription)"
    );
    get(&mut w, &mut host, 3, first);
    assert_eq!(
        calls(&host).len(),
        3,
        "its entry was replaced: a miss, not a wrong answer"
    );
}

#[test]
fn jwts_are_not_introspected_and_opaque_tokens_need_introspection() {
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(
        &mut w,
        &mut host,
        1,
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.c2ln",
    );
    assert!(host.dispatched.iter().all(|d| d.method == "GET"));

    // Without introspection anywhere an opaque token stays a malformed JWT.
    let mut plain = km("idp", &[]);
    plain.as_object_mut().unwrap().remove("introspection");
    let mut w = worker_for(policy_with(vec![plain], json!({})));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    assert_eq!(code(&host, 1), (401, "malformed_token".to_string()));
    assert!(calls(&host).is_empty());
}

#[test]
fn a_missing_secret_refuses_the_configuration_naming_the_field() {
    let policy = policy_with(vec![km("idp", &[]), km("second", &[])], json!({}));
    let err =
        Secrets::from_env(&policy, |name| (name == "IDP_SECRET").then(|| "x".into())).unwrap_err();
    let paths: Vec<&str> = err.as_slice().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["key_managers[1].introspection.client_secret_env"]);
    assert!(err.to_string().contains("SECOND_SECRET"), "{err}");
    let empty = Secrets::from_env(&policy, |_| Some(String::new())).unwrap_err();
    assert_eq!(empty.len(), 2);
    let ok = Secrets::from_env(&policy, env).unwrap();
    assert!(!format!("{ok:?}").contains("s3cret"));

    // A worker built without secrets never calls and never forwards.
    let mut w = Worker::new(policy, 1);
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    assert_eq!(code(&host, 1).0, 503);
    assert!(calls(&host).is_empty());
}

#[test]
fn an_answer_from_a_key_manager_not_asked_here_is_not_used() {
    // Two configurations sharing data (as during a reload): the second no longer trusts `idp`.
    let mut a = worker_for(policy_with(vec![km("idp", &[])], json!({})));
    let mut b = worker_for(policy_with(
        vec![km("idp", &["sandbox"]), km("second", &[])],
        json!({}),
    ));
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    get(&mut a, &mut host_a, 1, OPAQUE);
    answer(&mut a, &mut host_a, &active("app-1", "pets:read"));
    assert!(allowed(&host_a, 1));
    get(&mut b, &mut host_b, 2, OPAQUE);
    let asked = calls(&host_b);
    assert_eq!(asked.len(), 1, "idp's cached answer does not count here");
    assert_eq!(asked[0].cluster, "intro_second");
    answer(&mut b, &mut host_b, &json!({"active": false}));
    assert_eq!(code(&host_b, 2), (401, "token_inactive".to_string()));
}

#[test]
fn where_dpop_is_required_an_active_opaque_bearer_token_is_refused() {
    // Required by the key manager: the answer is active, but the token is a bearer token.
    let mut idp = km("idp", &[]);
    idp["dpop"] = json!("required");
    let mut w = worker_for(policy_with(vec![idp], json!({})));
    let mut host = FakeHost::new(NOW_MS);
    assert_eq!(get(&mut w, &mut host, 1, OPAQUE), RequestAction::Pause);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    assert_eq!(code(&host, 1), (401, "dpop_required".to_string()));
    let www = www_authenticate(&host, 1);
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(!allowed(&host, 1));
    // The same answer where DPoP is not required is allowed.
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
}

/// A request with `Authorization: DPoP <token>` and the given proofs, for
/// `http://api.example/pets/items`.
fn dpop_get(w: &mut Worker, host: &mut FakeHost, stream: u32, token: &str, proofs: &[&str]) {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/pets/items".to_string()),
        (":scheme".to_string(), "http".to_string()),
        (":authority".to_string(), "api.example".to_string()),
        ("authorization".to_string(), format!("DPoP {token}")),
    ];
    for p in proofs {
        headers.push(("dpop".to_string(), p.to_string()));
    }
    w.on_request(host, stream, &headers);
    host.run_wakeup(w);
}

fn opaque_proof(jti: &str, htm: &str) -> String {
    signers::dpop_proof(
        "p256",
        "ES256",
        &json!({"jti": jti, "htm": htm, "htu": "http://api.example/pets/items", "iat": NOW,
                "ath": signers::ath(OPAQUE)}),
    )
}

#[test]
fn a_dpop_bound_opaque_token_needs_its_proof_on_every_request() {
    // RFC 9449 section 6.2: the introspection answer binds the token with cnf.jkt.
    let jkt = signers::jwk_thumbprint(&signers::public_jwk("p256", "client"));
    let mut bound = active("app-1", "pets:read");
    bound["token_type"] = json!("DPoP");
    bound["cnf"] = json!({"jkt": jkt});
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    let first = opaque_proof("one", "GET");
    dpop_get(&mut w, &mut host, 1, OPAQUE, &[&first]);
    answer(&mut w, &mut host, &bound);
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
    // From the cache now (no second call), but each request still needs a fresh, valid proof.
    let second = opaque_proof("two", "GET");
    dpop_get(&mut w, &mut host, 2, OPAQUE, &[&second]);
    assert!(allowed(&host, 2), "{:?}", host.stream(2));
    dpop_get(&mut w, &mut host, 3, OPAQUE, &[&second]);
    assert_eq!(code(&host, 3), (401, "dpop_jti_replayed".to_string()));
    dpop_get(
        &mut w,
        &mut host,
        4,
        OPAQUE,
        &[&opaque_proof("three", "POST")],
    );
    assert_eq!(code(&host, 4), (401, "dpop_htm_mismatch".to_string()));
    dpop_get(&mut w, &mut host, 5, OPAQUE, &[]);
    assert_eq!(code(&host, 5), (401, "dpop_proof_missing".to_string()));
    let www = www_authenticate(&host, 5);
    assert!(www.starts_with("DPoP "), "{www}");
    get(&mut w, &mut host, 6, OPAQUE);
    assert_eq!(
        code(&host, 6),
        (401, "dpop_bound_token_as_bearer".to_string())
    );
    // A proof made with another key.
    let other = signers::dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": "four", "htm": "GET", "htu": "http://api.example/pets/items", "iat": NOW,
                "ath": signers::ath(OPAQUE)}),
    );
    dpop_get(&mut w, &mut host, 7, OPAQUE, &[&other]);
    assert_eq!(code(&host, 7), (401, "dpop_key_mismatch".to_string()));
    assert_eq!(
        calls(&host).len(),
        1,
        "one introspection call for all of them"
    );
    assert_eq!(
        host.counter(counters::DPOP_ALLOWED),
        2,
        "the parked request and the cache hit"
    );

    // An unbound opaque token with the DPoP scheme is refused.
    let mut w = worker();
    let mut host = FakeHost::new(NOW_MS);
    dpop_get(
        &mut w,
        &mut host,
        1,
        OPAQUE,
        &[&opaque_proof("five", "GET")],
    );
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    assert_eq!(code(&host, 1), (401, "dpop_token_not_bound".to_string()));
}

/// Sends `count` distinct junk opaque tokens from streams `first..`, answering every call made
/// for them inactive; returns how many were answered 503 `introspection_unavailable` with a
/// `Retry-After`, and checks every other one was refused 401 `token_inactive`.
fn junk(w: &mut Worker, host: &mut FakeHost, first: u32, count: u32) -> usize {
    let mut unavailable = 0;
    for i in 0..count {
        let stream = first + i;
        let before = calls(host).len();
        get(w, host, stream, &format!("junk-token-{i}-{first}"));
        if calls(host).len() > before {
            answer(w, host, &json!({"active": false}));
        }
        match code(host, stream) {
            (503, c) if c == "introspection_unavailable" => {
                let sent = host.reply_of(stream).unwrap();
                let retry: u64 = sent.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "{retry}");
                unavailable += 1;
            }
            other => assert_eq!(other, (401, "token_inactive".to_string()), "junk {i}"),
        }
    }
    unavailable
}

/// Issue 21, finding 3: inactive answers live in their own bounded area, so a flood of junk
/// tokens (each answered inactive) never evicts a cached active answer, even from a small cache.
#[test]
fn inactive_answers_never_evict_an_active_one() {
    let settings = json!({"introspection_cache_entries": 16});
    let mut w = worker_for(policy_with(vec![km("idp", &[])], settings));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &active("app-1", "pets:read"));
    assert!(allowed(&host, 1));
    assert_eq!(junk(&mut w, &mut host, 100, 40), 0);
    assert_eq!(calls(&host).len(), 41);
    let before = calls(&host).len();
    assert_eq!(get(&mut w, &mut host, 2, OPAQUE), RequestAction::Continue);
    assert!(allowed(&host, 2));
    assert_eq!(
        calls(&host).len(),
        before,
        "the active answer is still cached"
    );
}

/// Issue 21, finding 3: introspection calls are bounded per second, per worker and for all the
/// workers of one Envoy together (shared data); past the bound a request is answered 503
/// `introspection_unavailable` with `Retry-After`, and the next second has a fresh budget.
#[test]
fn introspection_calls_are_bounded_per_worker_and_across_workers() {
    let settings = json!({
        "introspection_cache_entries": 16,
        "introspection_calls_per_second": 10,
        "introspection_worker_calls_per_second": 6
    });
    let policy = policy_with(vec![km("idp", &[])], settings);
    let mut a = worker_for(policy.clone());
    let mut b = worker_for(policy);
    let mut host_a = FakeHost::new(NOW_MS);
    let mut host_b = host_a.sibling();
    get(&mut a, &mut host_a, 1, OPAQUE);
    answer(&mut a, &mut host_a, &active("app-1", "pets:read"));
    host_a.now_ms += 1_000;
    host_b.now_ms += 1_000;
    // Worker a: its own bound (6) first.
    let calls_a = calls(&host_a).len();
    assert_eq!(junk(&mut a, &mut host_a, 100, 20), 14);
    assert_eq!(calls(&host_a).len() - calls_a, 6);
    // Worker b: what is left of the Envoy's 10.
    assert_eq!(junk(&mut b, &mut host_b, 200, 20), 16);
    assert_eq!(calls(&host_b).len(), 4);
    // The cached active token needs no call and is allowed meanwhile.
    assert_eq!(get(&mut a, &mut host_a, 2, OPAQUE), RequestAction::Continue);
    assert_eq!(get(&mut b, &mut host_b, 3, OPAQUE), RequestAction::Continue);
    // Next second: a fresh budget.
    host_a.now_ms += 1_000;
    host_b.now_ms += 1_000;
    let calls_b = calls(&host_b).len();
    assert_eq!(junk(&mut b, &mut host_b, 300, 3), 0);
    assert_eq!(calls(&host_b).len() - calls_b, 3);
}

#[test]
fn the_subject_of_an_answer_comes_from_the_configured_claim() {
    let mut idp = km("idp", &[]);
    idp["claims"] = json!({"subject": ["username"]});
    let mut w = worker_for(policy_with(vec![idp], json!({})));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    let mut body = active("app-1", "pets:read");
    body["username"] = json!("alice@example.com");
    body["sub"] = json!("3f2c-uuid");
    answer(&mut w, &mut host, &body);
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
    let log = host.stream(1).unwrap();
    assert!(
        log.set_headers
            .iter()
            .any(|(n, v)| n == "x-keygate-subject" && v == "alice@example.com"),
        "{:?}",
        log.set_headers
    );
}

#[test]
fn an_api_that_names_its_key_manager_sends_opaque_tokens_there_only() {
    // `idp` is declared first; API pets accepts tokens of `second` only.
    let cfg_policy = |accepted: Value| {
        let cfg = json!({
            "environment": "production",
            "public_urls": ["http://api.example"],
            "key_managers": [km("idp", &[]), km("second", &[])],
            "apis": [{"name": "pets", "base_path": "/pets", "key_managers": accepted,
                "resources": [{"method": "GET", "path": "/items", "scopes": ["pets:read"]}]}],
            "applications": [{"name": "shop",
                "client_ids": [{"key_manager": "idp", "client_id": "app-1"},
                               {"key_manager": "second", "client_id": "app-2"}],
                "subscriptions": [{"api": "pets"}]}]
        });
        compile(&cfg)
    };
    let mut w = worker_for(cfg_policy(json!(["second"])));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    let mut from_second = active("app-2", "pets:read");
    from_second["iss"] = json!("https://second.example");
    answer(&mut w, &mut host, &from_second);
    assert!(allowed(&host, 1), "{:?}", host.stream(1));
    let asked: Vec<String> = calls(&host).iter().map(|c| c.cluster.clone()).collect();
    assert_eq!(asked, ["intro_second"], "the token never went to idp");

    // Inactive there: 401 after that one call, idp still not asked.
    let mut w = worker_for(cfg_policy(json!(["second"])));
    let mut host = FakeHost::new(NOW_MS);
    get(
        &mut w,
        &mut host,
        1,
        "another-opaque-token-value-0123456789",
    );
    answer(&mut w, &mut host, &json!({"active": false}));
    assert_eq!(code(&host, 1), (401, "token_inactive".to_string()));
    let asked: Vec<String> = calls(&host).iter().map(|c| c.cluster.clone()).collect();
    assert_eq!(asked, ["intro_second"]);

    // Without the list both are asked, in declaration order (the choice generate warns about).
    let mut w = worker_for(cfg_policy(json!([])));
    let mut host = FakeHost::new(NOW_MS);
    get(&mut w, &mut host, 1, OPAQUE);
    answer(&mut w, &mut host, &json!({"active": false}));
    answer(&mut w, &mut host, &from_second);
    assert!(allowed(&host, 1));
    let asked: Vec<String> = calls(&host).iter().map(|c| c.cluster.clone()).collect();
    assert_eq!(asked, ["intro_idp", "intro_second"]);

    // An unknown name is refused, naming the field.
    let cfg = json!({"environment": "production", "key_managers": [km("idp", &[])],
        "apis": [{"name": "pets", "base_path": "/pets", "key_managers": ["nobody"]}]});
    let errors = Policy::from_json(cfg.to_string().as_bytes()).unwrap_err();
    let paths: Vec<String> = errors.into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["apis[0].key_managers[0]"]);
}
