//! The whole decision chain of `keygate::decision` with real signed tokens: start (route, bearer),
//! recall (the verified-token cache), parse (key manager) and finish (signature, claims, application).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use keygate::decision::VerifiedTokens;
use keygate::decision::{
    finish, parse, recall, start, DpopHost, DpopRequest, Outcome, Request, SigningKeys,
};
use keygate::dpop::{MemorySlots, Slots};
use keygate::jose::KeySet;
use keygate::policy::Policy;
use serde_json::json;
use support::policies::{compile, config};
use support::signers::{ath, claims, dpop_proof, jwk_thumbprint, jwks, public_jwk, token, NOW};

fn policy() -> Policy {
    let mut cfg = config(json!({}));
    cfg["public_urls"] = json!(["https://api.example"]);
    compile(&cfg)
}

fn signed(scope: &str) -> String {
    let mut c = claims();
    c["scope"] = json!(scope);
    token(&json!({"alg": "ES256", "kid": "k-p256"}), &c, "p256")
}

fn run(
    policy: &Policy,
    bearer: &str,
    keys: &KeySet,
    generation: u64,
    now: f64,
    cache: &mut VerifiedTokens,
) -> Result<String, String> {
    run_at(
        policy,
        "/pets/items",
        bearer,
        keys,
        (generation, now),
        cache,
    )
}

/// [`run`] for a `GET` of `path`.
fn run_at(
    policy: &Policy,
    path: &str,
    bearer: &str,
    keys: &KeySet,
    (generation, now): (u64, f64),
    cache: &mut VerifiedTokens,
) -> Result<String, String> {
    let auth = format!("Bearer {bearer}");
    let request = Request {
        method: "GET",
        path,
        authorization: Some(&auth),
        dpop: DpopRequest::default(),
        headers: &[],
    };
    let slots = MemorySlots::default();
    let dpop = DpopHost {
        crypto: None,
        slots: &slots,
    };
    // As the worker does: the cache by the raw token first, then parse and verify.
    let started = match start(policy, &request).next {
        Ok(started) => started,
        Err(Outcome::Deny(d)) => return Err(d.code().to_string()),
        Err(other) => panic!("unexpected {other:?}"),
    };
    let recalled = recall(policy, &started, cache, |_| Some(generation), now, dpop);
    let outcome = match recalled {
        Some((_, outcome)) => outcome,
        None => match parse(policy, started) {
            Ok(pending) => {
                let keys = Some(SigningKeys::new(keys, generation));
                finish(policy, Box::new(pending), keys, now, false, cache, dpop)
            }
            Err(outcome) => outcome,
        },
    };
    match outcome {
        Outcome::Allow { allowed, .. } => Ok(allowed.identity.application.clone()),
        Outcome::Deny(d) => Err(d.code().to_string()),
        Outcome::NeedKeys { unknown_kid, .. } => {
            Err(format!("need_keys unknown_kid={unknown_kid}"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_real_token_is_allowed_and_then_served_from_the_cache_with_claims_rechecked() {
    let policy = policy();
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let good = signed("pets:read");

    assert_eq!(
        run(&policy, &good, &keys, 1, NOW, &mut cache),
        Ok("shop".into())
    );
    assert_eq!(cache.len(), 1);
    // A hit still checks time: the same token after its exp is refused.
    assert_eq!(
        run(&policy, &good, &keys, 1, NOW + 3600.0, &mut cache),
        Err("token_expired".into())
    );
    // And authorization: scopes come from the cached claims.
    let other_scope = signed("orders:read");
    assert_eq!(
        run(&policy, &other_scope, &keys, 1, NOW, &mut cache),
        Err("insufficient_scope".into())
    );
}

#[test]
fn a_new_key_set_generation_verifies_again() {
    let policy = policy();
    let old = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let rotated = KeySet::from_json(&jwks(&[public_jwk("p384", "k-p384")])).unwrap();
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let good = signed("pets:read");
    assert_eq!(
        run(&policy, &good, &old, 1, NOW, &mut cache),
        Ok("shop".into())
    );
    // The key that signed it is gone from the new set: the cached verdict must not survive.
    assert_eq!(
        run(&policy, &good, &rotated, 2, NOW, &mut cache),
        Err("need_keys unknown_kid=true".into())
    );
}

#[test]
fn a_tampered_token_is_never_a_cache_hit() {
    let policy = policy();
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let good = signed("pets:read");
    assert!(run(&policy, &good, &keys, 1, NOW, &mut cache).is_ok());
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_sig = "A".repeat(parts[2].len());
    parts[2] = &forged_sig;
    let forged = parts.join(".");
    assert_eq!(
        run(&policy, &forged, &keys, 1, NOW, &mut cache),
        Err("signature_invalid".into())
    );
}

const URL: &str = "https://api.example/pets/items";

/// One request as the worker makes it: the cache first, then parse and finish. `Ok(application)`
/// or `Err(code)`, and the `WWW-Authenticate` scheme of a refusal.
fn run_dpop(
    policy: &Policy,
    authorization: &str,
    proofs: &[&str],
    keys: &KeySet,
    now: f64,
    cache: &mut VerifiedTokens,
    slots: &dyn Slots,
) -> Result<String, String> {
    let request = Request {
        method: "GET",
        path: "/pets/items",
        authorization: Some(authorization),
        dpop: DpopRequest { proofs },
        headers: &[],
    };
    let dpop = DpopHost {
        crypto: None,
        slots,
    };
    let started = match start(policy, &request).next {
        Ok(started) => started,
        Err(Outcome::Deny(d)) => return Err(d.code().to_string()),
        Err(other) => panic!("unexpected {other:?}"),
    };
    let outcome = match recall(policy, &started, cache, |_| Some(1), now, dpop).map(|(_, o)| o) {
        Some(outcome) => outcome,
        None => {
            let pending = keygate::decision::parse(policy, started).unwrap();
            finish(
                policy,
                Box::new(pending),
                Some(SigningKeys::new(keys, 1)),
                now,
                false,
                cache,
                dpop,
            )
        }
    };
    // As the worker does once the request is allowed (and its tier spent): record the proof.
    let outcome = match outcome {
        Outcome::Allow {
            allowed,
            proof: Some(proof),
        } => match keygate::decision::record_proof(policy, &proof, slots, now) {
            Ok(()) => Outcome::Allow {
                allowed,
                proof: None,
            },
            Err(denial) => Outcome::Deny(denial),
        },
        other => other,
    };
    match outcome {
        Outcome::Allow { allowed, .. } => Ok(allowed.identity.application.clone()),
        Outcome::Deny(d) => {
            let reply = keygate::decision::reply(&d, "keygate");
            let challenge = reply
                .headers
                .iter()
                .find(|(n, _)| n == "www-authenticate")
                .map(|(_, v)| v.split(' ').next().unwrap_or_default().to_string())
                .unwrap_or_default();
            Err(format!("{challenge} {}", d.code()))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn bound_token() -> String {
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["cnf"] = json!({"jkt": jwk_thumbprint(&public_jwk("p384", "x"))});
    token(&json!({"alg": "ES256", "kid": "k-p256"}), &c, "p256")
}

fn proof_for(token: &str, jti: &str) -> String {
    dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(token)}),
    )
}

#[test]
fn a_cached_dpop_bound_token_still_needs_a_fresh_proof_every_time() {
    let policy = policy();
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let slots = MemorySlots::default();
    let token = bound_token();
    let auth = format!("DPoP {token}");
    let first = proof_for(&token, "jti-1");
    let run = |proofs: &[&str], auth: &str, cache: &mut VerifiedTokens| {
        run_dpop(&policy, auth, proofs, &keys, NOW, cache, &slots)
    };

    assert_eq!(run(&[&first], &auth, &mut cache), Ok("shop".into()));
    assert_eq!(cache.len(), 1, "the token is cached after its first use");
    // A cache hit without a proof, with the same proof again, or as a bearer token: refused.
    assert_eq!(
        run(&[], &auth, &mut cache),
        Err("DPoP dpop_proof_missing".into())
    );
    assert_eq!(
        run(&[&first], &auth, &mut cache),
        Err("DPoP dpop_jti_replayed".into())
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        run(&[&first], &bearer, &mut cache),
        Err("DPoP dpop_bound_token_as_bearer".into())
    );
    let second = proof_for(&token, "jti-2");
    assert_eq!(
        run(&[&second, &second], &auth, &mut cache),
        Err("DPoP dpop_proof_multiple".into())
    );
    // A new proof on the cached token is allowed.
    assert_eq!(run(&[&second], &auth, &mut cache), Ok("shop".into()));
    // A proof of another key (thumbprint differs from cnf.jkt).
    let stranger = dpop_proof(
        "ed25519",
        "EdDSA",
        &json!({"jti": "jti-3", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(&token)}),
    );
    assert_eq!(
        run(&[&stranger], &auth, &mut cache),
        Err("DPoP dpop_key_mismatch".into())
    );
}

#[test]
fn the_dpop_scheme_needs_a_bound_token_and_token_refusals_keep_their_code() {
    let policy = policy();
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let slots = MemorySlots::default();
    let plain = signed("pets:read");
    let proof = proof_for(&plain, "jti-1");
    assert_eq!(
        run_dpop(
            &policy,
            &format!("DPoP {plain}"),
            &[&proof],
            &keys,
            NOW,
            &mut cache,
            &slots
        ),
        Err("DPoP dpop_token_not_bound".into())
    );
    // The same plain token with Bearer is fine (DPoP is not required here).
    assert_eq!(
        run_dpop(
            &policy,
            &format!("Bearer {plain}"),
            &[],
            &keys,
            NOW,
            &mut cache,
            &slots
        ),
        Ok("shop".into())
    );
    // A bound token that expired is refused for that, under the DPoP challenge.
    let token = bound_token();
    let late = NOW + 3600.0;
    let proof = dpop_proof(
        "p384",
        "ES384",
        &json!({"jti": "j", "htm": "GET", "htu": URL, "iat": late, "ath": ath(&token)}),
    );
    assert_eq!(
        run_dpop(
            &policy,
            &format!("DPoP {token}"),
            &[&proof],
            &keys,
            late,
            &mut cache,
            &slots
        ),
        Err("DPoP token_expired".into())
    );
}

#[test]
fn the_subject_comes_from_the_configured_claim() {
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut c = claims();
    c["scope"] = json!("pets:read");
    c["sub"] = json!("6d1f-uuid");
    c["preferred_username"] = json!("alice");
    let jwt = token(&json!({"alg": "ES256", "kid": "k-p256"}), &c, "p256");
    let auth = format!("Bearer {jwt}");
    let request = Request {
        method: "GET",
        path: "/pets/items",
        authorization: Some(&auth),
        dpop: DpopRequest::default(),
        headers: &[],
    };
    let subject = |cfg: serde_json::Value| match keygate::decision::decide(
        &compile(&cfg),
        &request,
        |_| Some(&keys),
        NOW,
    ) {
        Outcome::Allow { allowed, .. } => allowed.identity.subject.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let mut cfg = config(json!({}));
    assert_eq!(
        subject(cfg.clone()),
        Some("6d1f-uuid".to_string()),
        "default: sub"
    );
    cfg["key_managers"][0]["claims"] = json!({"subject": ["preferred_username", "sub"]});
    assert_eq!(subject(cfg.clone()), Some("alice".to_string()));
    cfg["key_managers"][0]["claims"] = json!({"subject": ["username"]});
    assert_eq!(
        subject(cfg),
        None,
        "no configured subject claim: no subject"
    );
}

#[test]
fn an_api_refuses_jwts_of_a_key_manager_it_does_not_name() {
    let keys = KeySet::from_json(&jwks(&[public_jwk("p256", "k-p256")])).unwrap();
    let mut cfg = config(json!({}));
    cfg["key_managers"]
        .as_array_mut()
        .unwrap()
        .push(support::policies::key_manager("other"));
    cfg["apis"][0]["key_managers"] = json!(["other"]);
    let policy = compile(&cfg);
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    assert_eq!(
        run(&policy, &signed("pets:read"), &keys, 1, NOW, &mut cache),
        Err("key_manager_not_enabled".into())
    );
    // Named, it is accepted; a token verified for one API is not taken from the cache by another.
    cfg["apis"][0]["key_managers"] = json!(["idp"]);
    let mut both = cfg.clone();
    both["apis"].as_array_mut().unwrap().push(
        json!({"name": "orders", "base_path": "/orders", "key_managers": ["other"],
            "resources": [{"method": "GET", "path": "/items"}]}),
    );
    both["applications"][0]["subscriptions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"api": "orders"}));
    let policy = compile(&both);
    let token = signed("pets:read");
    assert_eq!(
        run(&policy, &token, &keys, 1, NOW, &mut cache),
        Ok("shop".into())
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(
        run_at(
            &policy,
            "/orders/items",
            &signed("pets:read"),
            &keys,
            (1, NOW),
            &mut cache
        ),
        Err("key_manager_not_enabled".into()),
        "a cache hit verified for pets"
    );
    assert_eq!(cache.len(), 1);
}
