//! DPoP through the worker and the fake host: proofs signed for real, the replay store in the
//! fake host's shared data (which two workers share as two Envoy workers do), parked requests,
//! the require-DPoP setting, and a full replay store.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use keygate::policy::Policy;
use keygate::worker::{counters, FakeHost, RequestAction, Worker};
use serde_json::{json, Value};
use support::policies::{self, compile, config, NOW_MS};
use support::signers::{ath, claims, dpop_proof, jwk_thumbprint, jwks, public_jwk, token, NOW};

const URL: &str = "http://api.example/pets/items";

fn policy(api_dpop: &str, settings: Value) -> Policy {
    compile(&dpop_config(api_dpop, settings))
}

/// The shared test config with API `pets` in DPoP mode `api_dpop`.
fn dpop_config(api_dpop: &str, settings: Value) -> Value {
    let mut cfg = config(settings);
    cfg["apis"][0]["dpop"] = json!(api_dpop);
    cfg
}

fn jwks_body() -> Vec<u8> {
    jwks(&[public_jwk("p256", "k1")])
}

/// A worker that has its keys, and its host.
fn warmed(api_dpop: &str, settings: Value) -> (Worker, FakeHost) {
    warmed_with(policy(api_dpop, settings))
}

fn warmed_with(policy: Policy) -> (Worker, FakeHost) {
    policies::warmed(policy, &jwks_body())
}

/// An access token of the key manager; bound to the client key `p384` when `bound`.
fn access_token(bound: bool) -> String {
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["exp"] = json!(NOW + 3600.0);
    if bound {
        c["cnf"] = json!({"jkt": jwk_thumbprint(&public_jwk("p384", "x"))});
    }
    token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256")
}

fn proof(token: &str, jti: &str) -> String {
    dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(token)}),
    )
}

fn request(
    w: &mut Worker,
    host: &mut FakeHost,
    stream: u32,
    authorization: &str,
    proofs: &[&str],
) -> RequestAction {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/pets/items?page=2".to_string()),
        (":scheme".to_string(), "http".to_string()),
        (":authority".to_string(), "API.example:80".to_string()),
        ("authorization".to_string(), authorization.to_string()),
    ];
    for p in proofs {
        h.push(("dpop".to_string(), p.to_string()));
    }
    let verdict = w.on_request(host, stream, &h);
    host.run_wakeup(w);
    verdict
}

fn allowed(host: &FakeHost, stream: u32) -> bool {
    let log = host.stream(stream).unwrap();
    log.reply.is_none()
        && log
            .set_headers
            .iter()
            .any(|(n, v)| n == "x-keygate-application" && v == "shop")
}

/// (status, code, WWW-Authenticate) of a refused stream.
fn refused(host: &FakeHost, stream: u32) -> (u32, String, String) {
    let sent = host
        .reply_of(stream)
        .unwrap_or_else(|| panic!("stream {stream} was not refused"));
    (
        sent.status,
        sent.code().unwrap_or_default(),
        sent.header("www-authenticate")
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn one_proof_is_accepted_once_across_two_workers() {
    let (mut a, mut host_a) = warmed("allowed", json!({}));
    let mut host_b = host_a.sibling();
    let mut b = Worker::new(policy("allowed", json!({})), 8);
    b.on_tick(&mut host_b);
    let fetch = host_b.last_dispatch().map(|d| d.token);
    if let Some(token) = fetch {
        host_b.answer(&mut b, token, 200, &jwks_body());
    }
    let token = access_token(true);
    let auth = format!("DPoP {token}");
    let once = proof(&token, "jti-1");

    assert_eq!(
        request(&mut a, &mut host_a, 1, &auth, &[&once]),
        RequestAction::Continue
    );
    assert!(allowed(&host_a, 1));
    assert_eq!(host_a.counter(counters::DPOP_ALLOWED), 1);
    // The proof goes no further than the token (strip_authorization, the default).
    let removed = &host_a.stream(1).unwrap().removed_headers;
    assert!(removed.iter().any(|n| n == "dpop"), "{removed:?}");
    // The other worker has never seen this token or proof, and still refuses the replay.
    assert_eq!(
        request(&mut b, &mut host_b, 2, &auth, &[&once]),
        RequestAction::Pause
    );
    let (status, code, challenge) = refused(&host_b, 2);
    assert_eq!((status, code.as_str()), (401, "dpop_jti_replayed"));
    assert!(
        challenge.starts_with("DPoP realm=\"keygate\", error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("algs=\"RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA\""),
        "{challenge}"
    );
    // A fresh proof on worker B is fine.
    let fresh = proof(&token, "jti-2");
    assert_eq!(
        request(&mut b, &mut host_b, 3, &auth, &[&fresh]),
        RequestAction::Continue
    );
    assert!(allowed(&host_b, 3));
}

#[test]
fn a_parked_dpop_request_is_checked_when_the_keys_arrive() {
    let mut w = Worker::new(policy("allowed", json!({})), 7);
    let mut host = FakeHost::new(NOW_MS);
    let token = access_token(true);
    let auth = format!("DPoP {token}");
    let good = proof(&token, "jti-1");
    let wrong_url = dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": "jti-2", "htm": "GET", "htu": "http://api.example/pets/other",
                "iat": NOW, "ath": ath(&token)}),
    );
    assert_eq!(
        request(&mut w, &mut host, 1, &auth, &[&good]),
        RequestAction::Pause
    );
    assert_eq!(
        request(&mut w, &mut host, 2, &auth, &[&wrong_url]),
        RequestAction::Pause
    );
    assert_eq!(w.parked(), 2);
    let fetch = host.last_dispatch().unwrap().token;
    host.answer(&mut w, fetch, 200, &jwks_body());
    assert!(allowed(&host, 1));
    assert!(host.stream(1).unwrap().resumed);
    assert_eq!(refused(&host, 2).1, "dpop_htu_mismatch");
    assert_eq!(host.counter(counters::DPOP_ALLOWED), 1);
}

#[test]
fn proofs_go_to_host_crypto_and_are_checked_on_cache_hits() {
    let (mut w, mut host) = warmed("allowed", json!({}));
    // The host is asked for every ES* check and lets Wasm decide: it counts them.
    host.crypto = Some(Box::new(|_, _, _, _| None));
    let token = access_token(true);
    let auth = format!("DPoP {token}");
    for (stream, jti) in [(1, "a"), (2, "b"), (3, "c")] {
        let p = proof(&token, jti);
        assert_eq!(
            request(&mut w, &mut host, stream, &auth, &[&p]),
            RequestAction::Continue
        );
    }
    // One token verification (then cache hits) and one proof check per request.
    assert_eq!(host.crypto_calls.get(), 1 + 3);
    assert_eq!(
        request(&mut w, &mut host, 4, &auth, &[]),
        RequestAction::Pause
    );
    assert_eq!(refused(&host, 4).1, "dpop_proof_missing");
}

#[test]
fn required_dpop_refuses_plain_bearer_tokens() {
    let (mut w, mut host) = warmed("required", json!({"dpop_algorithms": ["ES384", "EdDSA"]}));
    let plain = access_token(false);
    assert_eq!(
        request(&mut w, &mut host, 1, &format!("Bearer {plain}"), &[]),
        RequestAction::Pause
    );
    let (status, code, challenge) = refused(&host, 1);
    assert_eq!((status, code.as_str()), (401, "dpop_required"));
    assert_eq!(
        challenge,
        "DPoP realm=\"keygate\", error=\"invalid_token\", error_description=\"this API requires DPoP-bound tokens\", algs=\"ES384 EdDSA\""
    );
    let bound = access_token(true);
    let p = proof(&bound, "j");
    assert_eq!(
        request(&mut w, &mut host, 2, &format!("DPoP {bound}"), &[&p]),
        RequestAction::Continue
    );
    // ES256 proofs are not on this gateway's list.
    let mut key_claims =
        json!({"jti": "k", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(&bound)});
    let es256 = dpop_proof("p256", "ES256", &key_claims);
    assert_eq!(
        request(&mut w, &mut host, 3, &format!("DPoP {bound}"), &[&es256]),
        RequestAction::Pause
    );
    assert_eq!(refused(&host, 3).1, "dpop_alg_not_allowed");
    key_claims["iat"] = json!(NOW - 301.0);
    let stale = dpop_proof("p384", "ES384", &key_claims);
    assert_eq!(
        request(&mut w, &mut host, 4, &format!("DPoP {bound}"), &[&stale]),
        RequestAction::Pause
    );
    assert_eq!(refused(&host, 4).1, "dpop_proof_expired");
}

#[test]
fn a_full_replay_store_answers_503_and_never_forgets_a_live_jti() {
    let settings = json!({"dpop_replay_slots": 1, "dpop_replay_slot_entries": 2});
    let (mut w, mut host) = warmed("allowed", settings);
    let token = access_token(true);
    let auth = format!("DPoP {token}");
    let (p1, p3) = (proof(&token, "1"), proof(&token, "3"));
    // One key holds at most half a slot: the second entry is another key's.
    let other = bound_token_for("app-1", "p521");
    let p2 = proof_with("p521", "ES512", &other, "2");
    assert_eq!(
        request(&mut w, &mut host, 1, &auth, &[&p1]),
        RequestAction::Continue
    );
    assert_eq!(
        request(&mut w, &mut host, 2, &format!("DPoP {other}"), &[&p2]),
        RequestAction::Continue
    );
    assert_eq!(
        request(&mut w, &mut host, 3, &auth, &[&p3]),
        RequestAction::Pause
    );
    let sent = host.reply_of(3).unwrap();
    assert_eq!(
        (sent.status, sent.code().as_deref()),
        (503, Some("dpop_replay_store_full"))
    );
    let retry: u64 = sent.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=302).contains(&retry), "{retry}");
    assert_eq!(
        request(&mut w, &mut host, 4, &auth, &[&p1]),
        RequestAction::Pause
    );
    assert_eq!(refused(&host, 4).1, "dpop_jti_replayed");
    // Once the window has passed, the slot has room again (a new proof, a new iat).
    host.now_ms += 400_000;
    let later = dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": "4", "htm": "GET", "htu": URL, "iat": NOW + 400.0, "ath": ath(&token)}),
    );
    assert_eq!(
        request(&mut w, &mut host, 5, &auth, &[&later]),
        RequestAction::Continue
    );
    let record = host
        .shared
        .borrow()
        .get("keygate.dpop.0")
        .map(|(b, _)| b.len());
    assert_eq!(
        record,
        Some(16),
        "expired entries are dropped when the slot is written"
    );
}

/// A token of the key manager for client `client_id`, bound to the client key `key`.
fn bound_token_for(client_id: &str, key: &str) -> String {
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["exp"] = json!(NOW + 3600.0);
    c["client_id"] = json!(client_id);
    c["cnf"] = json!({"jkt": jwk_thumbprint(&public_jwk(key, "x"))});
    token(&json!({"alg": "ES256", "kid": "k1"}), &c, "p256")
}

fn proof_with(key: &str, alg: &str, token: &str, jti: &str) -> String {
    dpop_proof(
        key,
        alg,
        &json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(token)}),
    )
}

/// Issue 21, finding 1: a proof takes room in the replay store only once its request is
/// authorized and its tier spent. Refusals for a client id no application has (403) and for a
/// spent tier (429), each with a valid fresh proof, leave the one small slot free for the good
/// client; a replay of a refused proof's own `jti` is still refused as a replay once recorded.
#[test]
fn refused_requests_take_no_room_in_the_replay_store() {
    let settings = json!({"dpop_replay_slots": 1, "dpop_replay_slot_entries": 8});
    let mut cfg = dpop_config("allowed", settings);
    cfg["tiers"] = json!([{"name": "one", "requests": 1, "per": "minute"}]);
    cfg["applications"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "metered",
            "client_ids": [{"key_manager": "idp", "client_id": "app-2"}],
            "subscriptions": [{"api": "pets", "tier": "one"}]}));
    let policy = compile(&cfg);
    let (mut w, mut host) = warmed_with(policy);

    // A client id no application has: 403 with valid, fresh proofs.
    let stranger = bound_token_for("stranger", "p521");
    let auth = format!("DPoP {stranger}");
    let mut stream = 0;
    for i in 0..8 {
        stream += 1;
        let p = proof_with("p521", "ES512", &stranger, &format!("s{i}"));
        assert_eq!(
            request(&mut w, &mut host, stream, &auth, &[&p]),
            RequestAction::Pause
        );
        assert_eq!(refused(&host, stream).0, 403, "{i}");
    }
    // A tier of one request a minute: one allowed, then 429s with valid, fresh proofs.
    let metered = bound_token_for("app-2", "ed25519");
    let auth_m = format!("DPoP {metered}");
    for i in 0..8 {
        stream += 1;
        let p = proof_with("ed25519", "EdDSA", &metered, &format!("m{i}"));
        let verdict = request(&mut w, &mut host, stream, &auth_m, &[&p]);
        if i == 0 {
            assert_eq!(verdict, RequestAction::Continue);
        } else {
            assert_eq!(verdict, RequestAction::Pause);
            assert_eq!(refused(&host, stream).0, 429, "{i}");
        }
    }
    // The good client still gets in, proof after proof, up to what one key may hold.
    let good = access_token(true);
    let auth_g = format!("DPoP {good}");
    for i in 0..4 {
        stream += 1;
        let p = proof(&good, &format!("g{i}"));
        assert_eq!(
            request(&mut w, &mut host, stream, &auth_g, &[&p]),
            RequestAction::Continue,
            "good proof {i}: {:?}",
            host.reply_of(stream).and_then(|s| s.code())
        );
    }
    // Replays are still refused as replays: of an allowed proof, and of a refused proof once it
    // is used for real (the stranger's proof was never recorded, so it is not a replay).
    stream += 1;
    let again = proof(&good, "g0");
    assert_eq!(
        request(&mut w, &mut host, stream, &auth_g, &[&again]),
        RequestAction::Pause
    );
    assert_eq!(refused(&host, stream).1, "dpop_jti_replayed");
}

/// A request with its own `:scheme` and `:authority` (the client chooses both).
fn request_at(
    w: &mut Worker,
    host: &mut FakeHost,
    stream: u32,
    (scheme, authority): (&str, &str),
    authorization: &str,
    proof: &str,
) {
    let h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/pets/items".to_string()),
        (":scheme".to_string(), scheme.to_string()),
        (":authority".to_string(), authority.to_string()),
        ("authorization".to_string(), authorization.to_string()),
        ("dpop".to_string(), proof.to_string()),
    ];
    w.on_request(host, stream, &h);
    host.run_wakeup(w);
}

#[test]
fn htu_is_checked_against_the_configured_origin_never_the_clients_host() {
    let (mut w, mut host) = warmed("allowed", json!({}));
    let token = access_token(true);
    let auth = format!("DPoP {token}");
    let proof_for = |jti: &str, htu: &str| {
        dpop_proof(
            "p384",
            "ES384",
            &json!({"jti": jti, "htm": "GET", "htu": htu, "iat": NOW, "ath": ath(&token)}),
        )
    };
    // A token and proof made for another company's resource server, sent with its Host (and an
    // https :scheme, which HTTP/2 lets the client set): not this gateway's origin.
    let elsewhere = "https://rs.other-company.example/pets/items";
    for (stream, (scheme, authority)) in [
        (1, ("https", "rs.other-company.example")),
        (2, ("http", "rs.other-company.example")),
        (3, ("http", "api.example")),
    ] {
        let p = proof_for(&format!("other-{stream}"), elsewhere);
        request_at(&mut w, &mut host, stream, (scheme, authority), &auth, &p);
        assert_eq!(refused(&host, stream).1, "dpop_htu_mismatch", "{authority}");
    }
    // A proof for the configured origin passes whatever Host the request carries.
    let here = proof_for("here", "http://api.example/pets/items");
    request_at(
        &mut w,
        &mut host,
        4,
        ("https", "other.example"),
        &auth,
        &here,
    );
    assert!(allowed(&host, 4), "{:?}", host.stream(4));

    // An API with its own origin takes proofs for that origin only.
    let mut cfg = dpop_config("allowed", json!({}));
    cfg["apis"][0]["public_urls"] = json!(["https://pets.example.com/"]);
    let (mut w, mut host) = warmed_with(compile(&cfg));
    let gateway = proof_for("g", "http://api.example/pets/items");
    request_at(
        &mut w,
        &mut host,
        1,
        ("http", "api.example"),
        &auth,
        &gateway,
    );
    assert_eq!(refused(&host, 1).1, "dpop_htu_mismatch");
    let own = proof_for("o", "https://pets.example.com/pets/items");
    request_at(&mut w, &mut host, 2, ("http", "api.example"), &auth, &own);
    assert!(allowed(&host, 2), "{:?}", host.stream(2));
}

#[test]
fn without_an_origin_dpop_proofs_are_refused_and_required_dpop_is_a_config_error() {
    let mut cfg = dpop_config("allowed", json!({}));
    cfg.as_object_mut().unwrap().remove("public_urls");
    let (mut w, mut host) = warmed_with(compile(&cfg));
    let token = access_token(true);
    let p = proof(&token, "j");
    request_at(
        &mut w,
        &mut host,
        1,
        ("http", "api.example"),
        &format!("DPoP {token}"),
        &p,
    );
    assert_eq!(refused(&host, 1).1, "dpop_htu_mismatch");

    cfg["apis"][0]["dpop"] = json!("required");
    let errors = Policy::from_json(cfg.to_string().as_bytes()).unwrap_err();
    let shown: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("apis[0].public_urls: DPoP is required here but no public URL"),
        "{shown:?}"
    );
    cfg["public_urls"] = json!(["https://api.example/pets"]);
    let errors = Policy::from_json(cfg.to_string().as_bytes()).unwrap_err();
    let paths: Vec<String> = errors.into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["public_urls[0]", "apis[0].public_urls"]);
}
