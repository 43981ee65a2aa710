//! API keys and resource requirements natively (issue 25 parts 1 and 4): what the compiler
//! refuses (each refusal names its field), the decision for keys and requirements with
//! `decide`, the worker on the fake host (the key header and query parameter never go upstream,
//! the credential header and metric label), and the documented reason codes and challenges pinned
//! to docs/api-keys.md and docs/plugin-config.md.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use keygate::decision::{decide, reply, ApiKeyDenial, Denial, Outcome, Request};
use keygate::policy::api_keys::{hash_hex, hash_key};
use keygate::policy::Policy;
use keygate::worker::{FakeHost, RequestAction, Worker};
use serde_json::{json, Value};

const KEY: &str = "kg_c2hvcC1rZXktZm9yLXRoZS1kZWNpc2lvbi10ZXN0cy0x";
const OLD_KEY: &str = "kg_b2xkLWtleS1mb3ItdGhlLWRlY2lzaW9uLXRlc3RzLTAw";
const OTHER_KEY: &str = "kg_b3RoZXIta2V5LWZvci10aGUtZGVjaXNpb24tdGVzdHM";
const NOW: f64 = 1_800_000_000.0;

fn config() -> Value {
    json!({
        "environment": "production",
        "key_managers": [{"name": "idp", "issuer": "https://idp",
            "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
        "apis": [
            {"name": "both", "base_path": "/both", "security": ["oauth2", "api_key"], "resources": [
                {"method": "GET", "path": "/open"},
                {"method": "GET", "path": "/scoped", "scopes": ["s:read"], "scopes_all": ["s:audit"]},
                {"method": "GET", "path": "/grouped", "groups": ["g"]}
            ]},
            {"name": "keys", "base_path": "/keys", "security": ["api_key"],
             "api_key": {"header": "X-Api-Key", "query": "key"}, "resources": [
                {"method": "GET", "path": "/items"},
                {"method": "GET", "path": "/health", "public": true}
            ]},
            {"name": "tokens", "base_path": "/tokens", "resources": [{"method": "GET", "path": "/x"}]}
        ],
        "tiers": [{"name": "gold", "requests": 100, "per": "minute"}],
        "applications": [
            {"name": "shop", "subscriptions": [{"api": "both", "tier": "gold"}, {"api": "keys"}, {"api": "tokens"}],
             "api_keys": [
                {"name": "current", "sha256": hash_hex(&hash_key(KEY))},
                {"name": "old", "sha256": hash_hex(&hash_key(OLD_KEY)), "expires": "2026-01-01T00:00:00Z"}
             ]},
            {"name": "other", "subscriptions": [{"api": "tokens"}],
             "api_keys": [{"name": "o", "sha256": hash_hex(&hash_key(OTHER_KEY)), "expires": 1_900_000_000u64}]}
        ]
    })
}

fn policy() -> Policy {
    Policy::from_json(config().to_string().as_bytes()).unwrap()
}

/// Every problem as `path: code`.
fn refusals(cfg: &Value) -> Vec<String> {
    match Policy::from_json(cfg.to_string().as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.code()))
            .collect(),
    }
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    assert!(refusals(&config()).is_empty());
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/applications/0/api_keys/0/sha256",
            json!("abc"),
            "applications[0].api_keys[0].sha256: invalid",
        ),
        (
            "/applications/0/api_keys/0/sha256",
            json!(hash_hex(&hash_key(KEY)).to_uppercase()),
            "applications[0].api_keys[0].sha256: invalid",
        ),
        (
            "/applications/0/api_keys/0/sha256",
            json!(""),
            "applications[0].api_keys[0].sha256: missing",
        ),
        (
            "/applications/1/api_keys/0/sha256",
            json!(hash_hex(&hash_key(KEY))),
            "applications[1].api_keys[0].sha256: duplicate_api_key",
        ),
        (
            "/applications/0/api_keys/0/name",
            json!(""),
            "applications[0].api_keys[0].name: missing",
        ),
        (
            "/applications/0/api_keys/1/expires",
            json!("2026-02-30T00:00:00Z"),
            "applications[0].api_keys[1].expires: invalid",
        ),
        (
            "/apis/0/security",
            json!(["oauth2", "oauth2"]),
            "apis[0].security[1]: invalid",
        ),
        (
            "/apis/2/api_key",
            json!({"header": "x-key"}),
            "apis[2].api_key: invalid",
        ),
        (
            "/apis/1/api_key/header",
            json!("authorization"),
            "apis[1].api_key.header: invalid",
        ),
        (
            "/apis/1/api_key/header",
            json!("X-Keygate-Api-Key"),
            "apis[1].api_key.header: invalid",
        ),
        (
            "/apis/1/api_key/header",
            json!("x key"),
            "apis[1].api_key.header: invalid",
        ),
        (
            "/apis/1/api_key/query",
            json!("a&b"),
            "apis[1].api_key.query: invalid",
        ),
        (
            "/apis/1/resources/0/scopes",
            json!(["x"]),
            "apis[1].resources[0].scopes: invalid",
        ),
        (
            "/apis/1/resources/0/claims",
            json!({"tenant": ["acme"]}),
            "apis[1].resources[0].scopes: invalid",
        ),
        (
            "/apis/1/resources/1/scopes_all",
            json!(["x"]),
            "apis[1].resources[1].public: public_with_requirements",
        ),
        (
            "/apis/1/resources/1/claims",
            json!({"t": ["v"]}),
            "apis[1].resources[1].public: public_with_requirements",
        ),
        (
            "/apis/0/resources/0/scopes_all",
            json!(["a", "a"]),
            "apis[0].resources[0].scopes_all[1]: invalid",
        ),
        (
            "/apis/0/resources/0/scopes_all",
            json!(["a b"]),
            "apis[0].resources[0].scopes_all[0]: invalid",
        ),
        (
            "/apis/0/resources/0/claims",
            json!({"a..b": ["v"]}),
            "apis[0].resources[0].claims.a..b: invalid",
        ),
        (
            "/apis/0/resources/0/claims",
            json!({"tenant": []}),
            "apis[0].resources[0].claims.tenant: missing",
        ),
        (
            "/apis/0/resources/0/claims",
            json!({"tenant": [""]}),
            "apis[0].resources[0].claims.tenant[0]: invalid",
        ),
    ];
    for (pointer, value, want) in cases {
        let mut cfg = config();
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        match cfg.pointer_mut(parent).unwrap() {
            Value::Object(map) => {
                map.insert(last.to_string(), value.clone());
            }
            other => *other.get_mut(last.parse::<usize>().unwrap()).unwrap() = value.clone(),
        }
        assert_eq!(refusals(&cfg), [want], "{pointer} = {value}");
    }
    // An unknown security value is a type error at its path.
    let mut cfg = config();
    cfg["apis"][0]["security"] = json!(["oauth2", "basic"]);
    let errors = refusals(&cfg);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("apis[0].security[1]"), "{errors:?}");
}

fn request<'a>(
    path: &'a str,
    headers: &'a [(String, String)],
    auth: Option<&'a str>,
) -> Request<'a> {
    Request {
        method: "GET",
        path,
        authorization: auth,
        headers,
        ..Request::default()
    }
}

fn header(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), value.to_string())]
}

/// The outcome's code (`allowed`, `public` or the denial's) and, for a denial, its reply.
fn outcome(
    policy: &Policy,
    path: &str,
    headers: &[(String, String)],
    auth: Option<&str>,
) -> (String, Option<keygate::decision::Reply>) {
    match decide(policy, &request(path, headers, auth), |_| None, NOW) {
        Outcome::Allow { allowed, .. } => {
            let mut h = allowed.headers.clone();
            h.sort();
            (format!("allowed {h:?}"), None)
        }
        Outcome::Public => ("public".into(), None),
        Outcome::Deny(denial) => (denial.code().to_string(), Some(reply(&denial, "keygate"))),
        other => (format!("{other:?}"), None),
    }
}

/// Path, headers, `Authorization`, expected code, expected status.
type KeyCase = (
    &'static str,
    Vec<(String, String)>,
    Option<&'static str>,
    &'static str,
    u32,
);

#[test]
fn the_decision_for_keys() {
    let p = policy();
    let apikey = |key: &str| header("apikey", key);
    let (code, _) = outcome(&p, "/both/open", &apikey(KEY), None);
    assert_eq!(
        code,
        "allowed [(\"x-keygate-api\", \"both\"), (\"x-keygate-api-key\", \"current\"), \
         (\"x-keygate-application\", \"shop\"), (\"x-keygate-credential\", \"api_key\"), \
         (\"x-keygate-tier\", \"gold\")]"
    );
    let cases: Vec<KeyCase> = vec![
        ("/both/open", apikey(OLD_KEY), None, "api_key_expired", 401),
        (
            "/both/open",
            apikey("kg_nobody"),
            None,
            "api_key_unknown",
            401,
        ),
        ("/both/open", apikey(OTHER_KEY), None, "not_subscribed", 403),
        (
            "/both/scoped",
            apikey(KEY),
            None,
            "api_key_not_sufficient",
            403,
        ),
        (
            "/both/grouped",
            apikey(KEY),
            None,
            "api_key_not_sufficient",
            403,
        ),
        ("/both/open", vec![], None, "missing_credentials", 401),
        (
            "/both/open",
            apikey(KEY),
            Some("Bearer a.b.c"),
            "ambiguous_credentials",
            400,
        ),
        (
            "/both/open",
            [apikey(KEY), apikey(KEY)].concat(),
            None,
            "ambiguous_credentials",
            400,
        ),
        // The API reads X-Api-Key (any case) and the `key` query parameter, not `apikey`.
        ("/keys/items", apikey(KEY), None, "missing_api_key", 401),
        (
            "/keys/items",
            vec![],
            Some("Bearer a.b.c"),
            "missing_api_key",
            401,
        ),
        (
            "/keys/items",
            header("x-api-key", KEY),
            Some("Bearer a.b.c"),
            "allowed",
            200,
        ),
        ("/tokens/x", apikey(KEY), None, "missing_token", 401),
    ];
    for (path, headers, auth, want, status) in cases {
        let (code, answer) = outcome(&p, path, &headers, auth);
        assert!(code.starts_with(want), "{path} {headers:?}: {code}");
        if let Some(answer) = answer {
            assert_eq!(answer.status, status, "{path}");
            assert!(!answer.body.contains("kg_"), "a key in a reply");
        }
    }
    let query = format!("/keys/items?a=1&key={KEY}");
    assert!(outcome(&p, &query, &[], None).0.starts_with("allowed"));
    let refused = format!("/both/open?apikey={KEY}");
    assert_eq!(outcome(&p, &refused, &[], None).0, "missing_credentials");
}

trait CodeOrKind {
    fn code_or_kind(&self) -> String;
}

impl CodeOrKind for Outcome {
    fn code_or_kind(&self) -> String {
        match self {
            Outcome::Deny(d) => d.code().to_string(),
            other => format!("{other:?}"),
        }
    }
}

#[test]
fn a_key_hash_names_its_application() {
    let p = policy();
    let (entry, application) = p.application_for_key(&hash_key(KEY)).unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.expires, application),
        ("current", None, "shop")
    );
    let (entry, application) = p.application_for_key(&hash_key(OTHER_KEY)).unwrap();
    assert_eq!((entry.expires, application), (Some(1_900_000_000), "other"));
    assert!(p.application_for_key(&hash_key("kg_nobody")).is_none());
    // The RFC 3339 expiry is kept as Unix seconds.
    let (entry, _) = p.application_for_key(&hash_key(OLD_KEY)).unwrap();
    assert_eq!(entry.expires, Some(1_767_225_600));
}

#[test]
fn an_expiry_is_the_instant_the_key_stops() {
    let h = header("apikey", OTHER_KEY);
    let mut cfg = config();
    cfg["applications"][1]["subscriptions"] = json!([{"api": "both"}]);
    let p2 = Policy::from_json(cfg.to_string().as_bytes()).unwrap();
    let at = |t: f64| decide(&p2, &request("/both/open", &h, None), |_| None, t).code_or_kind();
    assert!(at(1_899_999_999.0).starts_with("Allow"));
    assert_eq!(at(1_900_000_000.0), "api_key_expired");
}

#[test]
fn the_worker_never_forwards_a_key() {
    let mut worker = Worker::new(policy(), 1);
    let mut host = FakeHost::new(NOW as u64 * 1000);
    let path = format!("/keys/items?a=1&key={KEY}&b=2");
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path),
        ("X-API-KEY".to_string(), "kg_extra".to_string()),
    ];
    // Two keys (header and query): refused, and both removed anyway.
    assert_eq!(
        worker.on_request(&mut host, 1, &headers),
        RequestAction::Pause
    );
    let log = host.stream(1).unwrap();
    assert_eq!(
        log.reply.as_ref().unwrap().code().as_deref(),
        Some("ambiguous_credentials")
    );
    assert!(log.removed_headers.contains(&"X-API-KEY".to_string()));
    assert!(log.removed_headers.contains(&":path".to_string()));
    assert!(log
        .set_headers
        .contains(&(":path".to_string(), "/keys/items?a=1&b=2".to_string())));

    // The query key alone: allowed, the path without it, the identity says api_key.
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), format!("/keys/items?key={KEY}")),
    ];
    assert_eq!(
        worker.on_request(&mut host, 2, &headers),
        RequestAction::Continue
    );
    let log = host.stream(2).unwrap();
    let set = |name: &str| {
        log.set_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(set(":path"), Some("/keys/items"));
    assert_eq!(set("x-keygate-credential"), Some("api_key"));
    assert_eq!(set("x-keygate-api-key"), Some("current"));
    assert_eq!(
        host.counter_where(
            "keygate_requests",
            &[("outcome", "allowed"), ("credential", "api_key")]
        ),
        1
    );
    // A public resource of the API: forwarded, the key header still removed.
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/keys/health".to_string()),
        ("x-api-key".to_string(), KEY.to_string()),
    ];
    assert_eq!(
        worker.on_request(&mut host, 3, &headers),
        RequestAction::Continue
    );
    assert!(host
        .stream(3)
        .unwrap()
        .removed_headers
        .contains(&"x-api-key".to_string()));
}

#[test]
fn requirements_name_what_is_missing() {
    let cfg = json!({
        "environment": "production",
        "key_managers": [{"name": "idp", "issuer": "https://idp",
            "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
        "apis": [{"name": "r", "base_path": "/r", "resources": [
            {"method": "GET", "path": "/x", "scopes": ["a", "b"], "scopes_all": ["c", "d"], "groups": ["g"],
             "claims": {"tenant": ["acme"], "realm_access.roles": ["admin"]}}
        ]}],
        "applications": [{"name": "app", "client_ids": [{"key_manager": "idp", "client_id": "c1"}],
            "subscriptions": [{"api": "r"}]}]
    });
    let p = Policy::from_json(cfg.to_string().as_bytes()).unwrap();
    let keygate::policy::Route::Protected(route) = p.route("GET", "/r/x") else {
        panic!("not protected");
    };
    let km = p.key_manager_ids().next().unwrap();
    let check = |claims: Value| -> Result<(), Denial> {
        p.authorize(&route, km, claims.as_object().unwrap())
            .map(|_| ())
            .map_err(Denial::from)
    };
    let full = json!({"client_id": "c1", "scope": "b c d", "groups": ["g"], "tenant": "acme",
                      "realm_access": {"roles": ["admin"]}});
    assert_eq!(check(full.clone()), Ok(()));
    let mut lacking = full.clone();
    lacking["scope"] = json!("a c");
    let denial = check(lacking).unwrap_err();
    assert_eq!(
        (denial.code(), denial.status()),
        ("insufficient_scope", 403)
    );
    assert_eq!(
        denial.description(),
        "the token needs all of the scopes c d; it lacks d"
    );
    let r = reply(&denial, "keygate");
    let challenge = r
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .unwrap();
    assert!(challenge.1.ends_with(", scope=\"c d\""), "{}", challenge.1);
    let mut nested = full.clone();
    nested["realm_access"]["roles"] = json!(["viewer"]);
    let denial = check(nested).unwrap_err();
    assert_eq!(
        (denial.code(), denial.status()),
        ("insufficient_claim", 403)
    );
    assert_eq!(
        denial.description(),
        "the token's claim \"realm_access.roles\" must be one of: admin"
    );
    // Groups are checked before claims, scopes before groups.
    let mut order = full.clone();
    order["groups"] = json!([]);
    order["tenant"] = json!("other");
    assert_eq!(
        check(order.clone()).unwrap_err().code(),
        "insufficient_group"
    );
    order["scope"] = json!("x");
    assert_eq!(check(order).unwrap_err().code(), "insufficient_scope");
}

fn doc(name: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("docs").join(name)).unwrap()
}

#[test]
fn every_new_reason_code_is_documented_with_its_status_and_challenge() {
    let api_keys = doc("api-keys.md");
    let plugin = doc("plugin-config.md");
    let header = || "apikey".to_string();
    let denials: Vec<ApiKeyDenial> = vec![
        ApiKeyDenial::Missing {
            header: header(),
            oauth2: false,
        },
        ApiKeyDenial::Missing {
            header: header(),
            oauth2: true,
        },
        ApiKeyDenial::Unknown { header: header() },
        ApiKeyDenial::Expired { header: header() },
        ApiKeyDenial::NeedsToken { scopes: vec![] },
        ApiKeyDenial::Ambiguous,
    ];
    for denial in denials {
        let code = denial.code();
        let status = denial.status();
        let row = format!("| `{code}` | {status} |");
        assert!(api_keys.contains(&row), "docs/api-keys.md lacks {row}");
        assert!(plugin.contains(&row), "docs/plugin-config.md lacks {row}");
        let answer = reply(&Denial::ApiKey(denial.clone()), "keygate");
        let challenge = &answer
            .headers
            .iter()
            .find(|(n, _)| n == "www-authenticate")
            .unwrap()
            .1;
        // The documented challenge up to its description is the reply's.
        let shown = challenge.split(", error_description=").next().unwrap();
        assert!(
            api_keys.contains(shown),
            "docs/api-keys.md lacks the challenge {shown}"
        );
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        let error = format!(
            "| `{code}` | {status} | `{}` |",
            body["error"].as_str().unwrap()
        );
        assert!(api_keys.contains(&error), "docs/api-keys.md lacks {error}");
    }
    for row in [
        "| `insufficient_claim` | 403 | `insufficient_scope` |",
        "| `insufficient_scope` (all of) | 403 |",
    ] {
        assert!(plugin.contains(row), "docs/plugin-config.md lacks {row}");
    }
    assert!(api_keys.contains("403 `insufficient_claim`"));
    assert!(plugin.contains("`duplicate_api_key`"));
}
