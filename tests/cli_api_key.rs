//! The CLI side of API keys and resource requirements (issue 25 parts 1 and 4): `keygate api-key
//! new` (the key's shape, its hash, the entry), `generate --check` refusing what the filter refuses
//! (with the declaration's line), and `keygate explain` deciding key requests and requirements with
//! the filter's decision. Tokens are signed here with the committed test keys.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::policy::api_keys::{hash_hex, hash_key};
use serde_json::{json, Value};
use support::signers::{all_keys, claims, jwks, token};
use support::{keygate, TempDir};

#[test]
fn api_key_new_prints_a_key_once_and_its_entry() {
    let mut keys = BTreeSet::new();
    for _ in 0..3 {
        let run = keygate(
            &[
                "api-key",
                "new",
                "--name",
                "shop key",
                "--expires",
                "2027-01-31T00:00:00Z",
            ],
            b"",
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        let key = lines[0];
        let raw = URL_SAFE_NO_PAD
            .decode(key.strip_prefix("kg_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32, "{key}");
        let entry: Vec<&str> = lines
            .iter()
            .filter(|l| !l.starts_with('#'))
            .skip(1)
            .copied()
            .collect();
        assert_eq!(
            entry,
            [
                "- name: \"shop key\"".to_string(),
                format!("  sha256: {}", hash_hex(&hash_key(key))),
                "  expires: \"2027-01-31T00:00:00Z\"".to_string(),
            ]
        );
        assert_eq!(
            run.stdout.matches(key).count(),
            1,
            "the key is printed once"
        );
        keys.insert(key.to_string());
    }
    assert_eq!(keys.len(), 3, "every key is new");

    let run = keygate(&["api-key", "new", "--expires", "1900000000"], b"");
    assert_eq!(run.code, Some(0));
    assert!(
        run.stdout.contains("\n  expires: 1900000000\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("- name: \"key-"), "{}", run.stdout);
    for bad in [["--expires", "tomorrow"], ["--name", ""]] {
        let run = keygate(&["api-key", "new", bad[0], bad[1]], b"");
        assert_eq!(run.code, Some(2), "{bad:?}");
        assert!(run.stdout.is_empty());
        assert!(run.stderr.contains(bad[0]), "{}", run.stderr);
    }
}

const KEY: &str = "kg_Y2xpLXRlc3Qta2V5LW9mLXRoZS1leHBsYWluLWNhc2VzIQ";

fn declaration(sha256: &str) -> String {
    format!(
        "gateway:
  environment: production
key_managers:
  - name: idp
    well_known_url: https://idp.example/.well-known/openid-configuration
    audiences: [api://pets]
    discovery: {{issuer: https://idp.example, jwks_uri: https://idp.example/keys}}
apis:
  - name: pets
    base_path: /pets/v1
    security: [oauth2, api_key]
    resources:
      - {{method: GET, path: /pets}}
      - {{method: GET, path: /reports, scopes: [a, b], scopes_all: [c, d]}}
      - {{method: GET, path: /admin, claims: {{tenant: [acme, globex], realm_access.roles: admin}}}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: idp, client_id: app-1}}
    subscriptions:
      - {{api: pets}}
    api_keys:
      - name: cli
        sha256: {sha256}
        expires: 1700000100
"
    )
}

#[test]
fn generate_check_refuses_a_bad_hash_with_its_line() {
    let dir = TempDir::new("cli-api-key");
    let input = dir.path().join("keygate.yaml");
    let upper = hash_hex(&hash_key(KEY)).to_uppercase();
    std::fs::write(&input, declaration(&upper)).unwrap();
    let run = keygate(
        &["generate", "--check", "--input", input.to_str().unwrap()],
        b"",
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("applications[0].api_keys[0].sha256"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 24:"), "{}", run.stderr);
    std::fs::write(&input, declaration(&hash_hex(&hash_key(KEY)))).unwrap();
    let run = keygate(
        &["generate", "--check", "--input", input.to_str().unwrap()],
        b"",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// `explain` of GET `path` at 1700000000 with `extra` arguments; exit code and verdict.
fn explain(path: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let dir = TempDir::new("cli-explain-keys");
    let input = dir.path().join("keygate.yaml");
    std::fs::write(&input, declaration(&hash_hex(&hash_key(KEY)))).unwrap();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&all_keys())).unwrap();
    let mut args = vec![
        "explain",
        "--input",
        input.to_str().unwrap(),
        "--jwks",
        jwks_file.to_str().unwrap(),
        "--at",
        "1700000000",
        "--path",
        path,
    ];
    args.extend(extra);
    let run = keygate(&args, b"");
    let verdict = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
    (run.code, verdict)
}

fn signed(extra: Value) -> String {
    let mut c = claims();
    for (name, value) in extra.as_object().unwrap() {
        c[name] = value.clone();
    }
    token(&json!({"alg": "ES256", "kid": "k-p256"}), &c, "p256")
}

#[test]
fn explain_decides_keys_and_requirements() {
    let (code, v) = explain("/pets/v1/pets", &["--api-key", KEY]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["identity"]["credential"], "api_key");
    assert_eq!(v["identity"]["api_key"], "cli");
    assert_eq!(v["headers"]["x-keygate-api-key"], "cli");
    let (code, v) = explain("/pets/v1/reports", &["--api-key", KEY]);
    assert_eq!(
        (code, v["code"].clone()),
        (Some(1), json!("api_key_not_sufficient"))
    );
    let (_, v) = explain("/pets/v1/pets", &["--api-key", "kg_unknown"]);
    assert_eq!(v["code"], "api_key_unknown");
    assert!(
        !v.to_string().contains("kg_unknown"),
        "a key in the verdict"
    );

    let t = signed(json!({"scope": "a c"}));
    let (code, v) = explain("/pets/v1/reports", &[&t]);
    assert_eq!(code, Some(1));
    assert_eq!(v["code"], "insufficient_scope");
    assert_eq!(
        v["error_description"],
        "the token needs all of the scopes c d; it lacks d"
    );
    let t = signed(json!({"scope": "b c d"}));
    assert_eq!(explain("/pets/v1/reports", &[&t]).0, Some(0));
    let t = signed(json!({"tenant": "globex", "realm_access": {"roles": ["admin"]}}));
    assert_eq!(explain("/pets/v1/admin", &[&t]).0, Some(0));
    let t = signed(json!({"tenant": "initech", "realm_access": {"roles": ["admin"]}}));
    let (_, v) = explain("/pets/v1/admin", &[&t]);
    assert_eq!(v["code"], "insufficient_claim");
    assert_eq!(
        v["error_description"],
        "the token's claim \"tenant\" must be one of: acme, globex"
    );
}
