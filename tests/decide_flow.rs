//! The whole decision chain of `keygate::decide` with real signed tokens: begin (route, bearer,
//! key manager), finish (signature, claims, application), and the verified-token cache between them.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{claims, jwks, public_jwk, token, NOW};
use keygate::cache::VerifiedTokens;
use keygate::decide::{begin, finish, Keys, Outcome, Request};
use keygate::jose::KeySet;
use keygate::policy::Policy;
use serde_json::json;

fn policy() -> Policy {
    let cfg = json!({
        "environment": "production",
        "key_managers": [{
            "name": "idp",
            "issuer": "https://idp.example",
            "audiences": ["api://pets"],
            "jwks": {"uri": "https://idp.example/jwks", "cluster": "jwks", "authority": "idp.example", "path": "/jwks"}
        }],
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [
            {"method": "GET", "path": "/items", "scopes": ["pets:read"]}
        ]}],
        "applications": [{"name": "shop",
            "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
            "subscriptions": [{"api": "pets"}]}]
    });
    Policy::from_json(cfg.to_string().as_bytes()).unwrap()
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
    let auth = format!("Bearer {bearer}");
    let request = Request {
        method: "GET",
        path: "/pets/items",
        authorization: Some(&auth),
    };
    let pending = match begin(policy, &request) {
        Ok(p) => p,
        Err(Outcome::Deny(d)) => return Err(d.code().to_string()),
        Err(other) => panic!("unexpected {other:?}"),
    };
    let keys = Some(Keys::new(keys, generation));
    match finish(policy, Box::new(pending), keys, now, false, cache) {
        Outcome::Allow(allowed) => Ok(allowed.identity.application.clone()),
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
