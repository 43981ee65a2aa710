//! Configuration errors: each one names its field path, has a stable code and says what is wrong.

// Helpers outside #[test] functions are test code too (clippy.toml only covers #[test] bodies).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use keygate::config::{ConfigError, ConfigErrors, PluginConfig};
use keygate::policy::Policy;
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/policy_fixture.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// What `on_configure` does with the configuration: the first problem, if any.
fn load(cfg: &Value) -> Result<Policy, ConfigError> {
    compile(cfg).map_err(|errors| errors.first().unwrap().clone())
}

fn compile(cfg: &Value) -> Result<Policy, ConfigErrors> {
    Policy::from_json(cfg.to_string().as_bytes())
}

/// Set the value at a JSON pointer (`null` removes the key).
fn set(cfg: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = cfg.pointer_mut(parent).unwrap();
    match (target, value) {
        (Value::Object(map), Value::Null) => {
            map.remove(key);
        }
        (Value::Object(map), value) => {
            map.insert(key.to_string(), value);
        }
        (Value::Array(items), value) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("bad pointer {pointer}"),
    }
}

#[test]
fn the_fixture_is_valid() {
    let cfg = PluginConfig::parse(FIXTURE.as_bytes()).unwrap();
    assert!(Policy::compile(cfg).is_ok());
}

#[test]
fn config_error_table() {
    let client = |km: &str, id: &str| json!({"key_manager": km, "client_id": id});
    let table: Vec<(&str, Value, &str, &str, &str)> = vec![
        // (pointer, new value, path, code, display contains)
        ("/key_managers/1/issuer", Value::Null, "key_managers[1].issuer", "missing", "key_managers[1].issuer: missing"),
        ("/key_managers/1/issuer", json!(""), "key_managers[1].issuer", "missing", "key_managers[1].issuer: missing"),
        ("/environment", Value::Null, "environment", "missing", "environment: missing"),
        ("/environment", json!(""), "environment", "missing", "environment: missing"),
        ("/environment", json!("prod uction"), "environment", "invalid", "spaces"),
        ("/key_managers/0/surprise", json!(1), "key_managers[0].surprise", "unknown_field", "unknown field"),
        ("/settings/leeway_seconds", json!("60"), "settings.leeway_seconds", "syntax", "invalid type"),
        ("/apis/0/resources/2/public", json!("yes"), "apis[0].resources[2].public", "syntax", "invalid type"),
        ("/applications/0/subscriptions/0/state", json!("paused"), "applications[0].subscriptions[0].state", "syntax", "unknown variant"),
        ("/key_managers/1/name", json!("asgardeo"), "key_managers[1].name", "duplicate_name", "already used at key_managers[0].name"),
        ("/apis/1/name", json!("pets"), "apis[1].name", "duplicate_name", "already used at apis[0].name"),
        ("/applications/2/name", json!("shop"), "applications[2].name", "duplicate_name", "already used at applications[0].name"),
        ("/key_managers/0/jwks/cluster", json!(""), "key_managers[0].jwks.cluster", "missing", "missing"),
        ("/key_managers/0/jwks/authority", json!(""), "key_managers[0].jwks.authority", "missing", "missing"),
        ("/key_managers/0/jwks/path", json!("jwks"), "key_managers[0].jwks.path", "invalid", "must start with '/'"),
        ("/key_managers/0/algorithms", json!(["RS256", "HS256"]), "key_managers[0].algorithms[1]", "unsupported_algorithm", "\"HS256\" is not supported"),
        ("/key_managers/0/algorithms", json!(["none"]), "key_managers[0].algorithms[0]", "unsupported_algorithm", "\"none\""),
        ("/key_managers/0/environments", json!([""]), "key_managers[0].environments[0]", "missing", "missing"),
        ("/key_managers/0/audiences", json!(["a", ""]), "key_managers[0].audiences[1]", "missing", "missing"),
        ("/key_managers/0/claims/client_id", json!([]), "key_managers[0].claims.client_id", "missing", "missing"),
        ("/key_managers/0/claims/groups", json!(["realm_access..roles"]), "key_managers[0].claims.groups[0]", "invalid", "empty parts"),
        ("/key_managers/0/tenants", json!(["t1"]), "key_managers[0].tenants", "tenants_without_template", "no {tenantid}"),
        ("/key_managers/2/tenants", json!([]), "key_managers[2].tenants", "template_without_tenants", "no tenants"),
        ("/key_managers/2/tenants", json!(["a/b"]), "key_managers[2].tenants[0]", "invalid", "letters"),
        ("/key_managers/2/issuer", json!("https://x/{tenantid}/{tenantid}"), "key_managers[2].issuer", "invalid", "placeholder"),
        ("/key_managers/0/issuer", json!("https://x/{tenant}"), "key_managers[0].issuer", "invalid", "placeholder"),
        ("/key_managers/3/issuer", json!("https://api.asgardeo.io/t/acme/oauth2/token"), "key_managers[3].issuer", "duplicate_issuer", "already used by key manager \"asgardeo\""),
        ("/apis/0/base_path", json!("pets/v1"), "apis[0].base_path", "invalid", "must start with '/'"),
        ("/apis/0/base_path", json!("/pets/v1/"), "apis[0].base_path", "invalid", "must not end with '/'"),
        ("/apis/0/base_path", json!("/pets//v1"), "apis[0].base_path", "invalid", "empty segment"),
        ("/apis/1/base_path", json!("/pets/v1"), "apis[1].base_path", "duplicate_base_path", "already used by API \"pets\""),
        ("/apis/0/resources/3/path", json!("/pets/{id"), "apis[0].resources[3].path", "invalid", "whole segment"),
        ("/apis/0/resources/3/path", json!("/a/*/b"), "apis[0].resources[3].path", "invalid", "last segment"),
        ("/apis/0/resources/3/path", json!("pets"), "apis[0].resources[3].path", "invalid", "start with '/'"),
        ("/apis/0/resources/3/path", json!("/pets/../x"), "apis[0].resources[3].path", "invalid", "'..'"),
        ("/apis/0/resources/3/method", json!("delete"), "apis[0].resources[3].method", "invalid", "upper-case"),
        ("/apis/0/resources/3/method", json!(""), "apis[0].resources[3].method", "invalid", "1 to 32"),
        ("/apis/0/resources/0/scopes", json!(["pets read"]), "apis[0].resources[0].scopes[0]", "invalid", "visible ASCII"),
        ("/apis/0/resources/2/groups", json!([""]), "apis[0].resources[2].groups[0]", "missing", "missing"),
        ("/apis/0/resources/4/scopes", json!(["x"]), "apis[0].resources[4].public", "public_with_requirements", "cannot require"),
        ("/applications/1/client_ids/0/client_id", json!("c-shop"), "applications[1].client_ids[0].client_id", "duplicate_client_id", "client id \"c-shop\" of key manager \"asgardeo\" is already used by application \"shop\""),
        ("/applications/0/client_ids/1", client("asgardeo", "c-shop"), "applications[0].client_ids[1].client_id", "duplicate_client_id", "already used by application \"shop\""),
        ("/applications/0/client_ids/1", client("nope", "x"), "applications[0].client_ids[1].key_manager", "unknown_key_manager", "unknown key manager \"nope\""),
        ("/applications/0/client_ids/1", client("entra", ""), "applications[0].client_ids[1].client_id", "missing", "missing"),
        ("/applications/2/subscriptions/0/api", json!("x"), "applications[2].subscriptions[0].api", "unknown_api", "applications[2].subscriptions[0].api: unknown API \"x\""),
        ("/applications/0/subscriptions/1/api", json!("pets"), "applications[0].subscriptions[1].api", "duplicate_subscription", "subscribed twice"),
        ("/settings/leeway_seconds", json!(601), "settings.leeway_seconds", "out_of_range", "601 is outside 0..=600"),
        ("/settings/jwks_min_refresh_seconds", json!(90000), "settings.jwks_min_refresh_seconds", "out_of_range", "90000 is outside 1..=86400"),
        ("/settings/jwks_retry_initial_seconds", json!(0), "settings.jwks_retry_initial_seconds", "out_of_range", "outside 1..=60"),
        ("/settings/jwks_fetch_timeout_ms", json!(0), "settings.jwks_fetch_timeout_ms", "out_of_range", "outside"),
        ("/settings/jwks_max_bytes", json!(10), "settings.jwks_max_bytes", "out_of_range", "outside"),
        ("/settings/request_wait_ms", json!(3600000), "settings.request_wait_ms", "out_of_range", "outside"),
        ("/settings/header_prefix", json!("X-Keygate-"), "settings.header_prefix", "invalid", "lower case"),
        ("/settings/header_prefix", json!("x-"), "settings.header_prefix", "invalid", "starting with 'x-'"),
        ("/settings/header_prefix", json!("x-envoy-"), "settings.header_prefix", "invalid", "Envoy's"),
        ("/settings/header_prefix", json!("x-forwarded-keygate-"), "settings.header_prefix", "invalid", "Envoy's"),
        ("/settings/realm", json!("a\nb"), "settings.realm", "invalid", "visible ASCII"),
        ("/settings/unknown_api", json!("allow"), "settings.unknown_api", "syntax", "unknown variant"),
    ];
    let mut failures = Vec::new();
    for (pointer, value, path, code, text) in table {
        let mut cfg = fixture();
        set(&mut cfg, pointer, value.clone());
        match load(&cfg) {
            Ok(_) => failures.push(format!("{pointer} = {value}: accepted")),
            Err(e) => {
                let shown = e.to_string();
                if e.path != path || e.code() != code || !shown.contains(text) {
                    failures.push(format!(
                        "{pointer} = {value}: got path {} code {} {shown:?}",
                        e.path,
                        e.code()
                    ));
                }
                assert!(shown.starts_with(&format!("{}: ", e.path)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn templates_equal_up_to_parameter_names_are_one_resource() {
    let mut cfg = fixture();
    set(&mut cfg, "/apis/0/resources/3/method", json!("GET"));
    set(&mut cfg, "/apis/0/resources/3/path", json!("/pets/{other}"));
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.path, "apis[0].resources[3].path");
    assert_eq!(e.code(), "duplicate_resource");
    assert!(
        e.to_string()
            .contains("same resource as apis[0].resources[1]"),
        "{e}"
    );
    // The same template under ANY is a different resource (GET prefers the named method).
    set(&mut cfg, "/apis/0/resources/3/method", json!("ANY"));
    assert!(load(&cfg).is_ok());
}

#[test]
fn one_issuer_in_disjoint_environments_is_fine() {
    let mut cfg = fixture();
    set(
        &mut cfg,
        "/key_managers/3/issuer",
        json!("https://sandbox.example/issuer"),
    );
    set(
        &mut cfg,
        "/key_managers/3/environments",
        json!(["production"]),
    );
    assert!(load(&cfg).is_ok());
    set(&mut cfg, "/key_managers/3/environments", json!(["sandbox"]));
    assert_eq!(load(&cfg).unwrap_err().code(), "duplicate_issuer");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = PluginConfig::parse(b"{\"environment\": \"x\",}").unwrap_err();
    assert_eq!(e.code(), "syntax");
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = PluginConfig::parse(b"{\"environment\": \"x\"} trailing").unwrap_err();
    assert_eq!(e.code(), "syntax");
    let e = Policy::from_json(b"").unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e.first().unwrap().code(), "syntax");
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut cfg = fixture();
    set(&mut cfg, "/environment", json!(""));
    set(&mut cfg, "/apis/0/base_path", json!("x"));
    set(&mut cfg, "/settings/leeway_seconds", json!(9999));
    let parsed: PluginConfig = serde_json::from_value(cfg).unwrap();
    let errors = Policy::compile(parsed).unwrap_err();
    let paths: Vec<&str> = errors.as_slice().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "environment",
            "apis[0].base_path",
            "settings.leeway_seconds"
        ]
    );
    // The log line of a refused on_configure names every problem.
    let shown = errors.to_string();
    assert!(
        shown.starts_with("3 problems: environment: missing; "),
        "{shown}"
    );
    assert!(shown.contains("; settings.leeway_seconds: 9999"), "{shown}");
}

#[test]
fn defaults_apply_when_fields_are_omitted() {
    let cfg = PluginConfig::parse(br#"{"environment": "production"}"#).unwrap();
    assert_eq!(cfg.settings.leeway_seconds, 60);
    assert_eq!(cfg.settings.header_prefix, "x-keygate-");
    assert_eq!(cfg.settings.realm, "keygate");
    let policy = Policy::compile(cfg).unwrap();
    assert_eq!(policy.environment(), "production");
    assert!(policy.key_managers().is_empty());
}

#[test]
fn each_key_managers_validation_is_built_at_compile_time() {
    let mut cfg = fixture();
    set(&mut cfg, "/key_managers/1/algorithms", json!(["ES256"]));
    set(&mut cfg, "/settings/leeway_seconds", json!(7));
    let policy = compile(&cfg).unwrap();
    let kms = policy.key_managers();
    // No list: every asymmetric algorithm, never HMAC (the JWKS is public).
    let default = kms[0].accepted_algorithms();
    assert!(default.iter().any(|a| a == "RS256") && default.iter().any(|a| a == "EdDSA"));
    assert!(!default.iter().any(|a| a.starts_with("HS")), "{default:?}");
    assert_eq!(kms[1].accepted_algorithms(), ["ES256"]);
    let v = kms[1].validation("https://iss.example".into());
    assert_eq!(v.issuer.as_deref(), Some("https://iss.example"));
    assert_eq!(v.leeway_seconds, 7);
    assert!(v.require_exp);
    assert_eq!(v.algorithms, ["ES256"]);
    assert_eq!(v.audiences, kms[1].audiences);
}
