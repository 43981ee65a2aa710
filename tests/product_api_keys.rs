//! Product test of API keys (issue 25 part 1): keys made by `keygate api-key new`, a declaration
//! with their hashes run through `keygate generate`, the built filter in a real Envoy, the real
//! key manager for the token cases. Valid, unknown, expired and revoked keys (revoked by removing
//! the entry and generating again while Envoy runs), two active keys for rotation, a key for an API
//! the application is not subscribed to, a resource that requires scopes, the query string refused
//! unless the API opts in (and stripped when it does), a key sent to an API that does not accept
//! keys, a key together with a token; identity headers and metrics say which credential was used,
//! and no key reaches the upstream or Envoy's log.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use support::stack::{self, demo_head};
use support::{free_port, http, keygate, EchoUpstream, Envoy, KeyManager, Response, TempDir};

/// A key printed by `keygate api-key new`: the key and the entry's lines.
struct NewKey {
    key: String,
    entry: String,
}

fn new_key(name: &str, expires: Option<&str>) -> NewKey {
    let mut args = vec!["api-key", "new", "--name", name];
    if let Some(expires) = expires {
        args.extend(["--expires", expires]);
    }
    let run = keygate(&args, b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines = run.stdout.lines();
    let key = lines.next().unwrap().to_string();
    assert!(key.starts_with("kg_") && key.len() == 3 + 43, "{key}");
    // The entry (the comment lines left out), indented under `api_keys:`.
    let entry: String = lines
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("      {l}\n"))
        .collect();
    assert!(entry.contains("sha256: "), "{entry}");
    assert!(!entry.contains(&key), "the entry must not hold the key");
    NewKey { key, entry }
}

struct Keys {
    shop: NewKey,
    shop_next: NewKey,
    expired: NewKey,
    other: NewKey,
}

fn declaration(
    km: &KeyManager,
    listen: u16,
    admin: u16,
    upstream: u16,
    keys: &Keys,
    with_shop: bool,
) -> String {
    let head = demo_head(km, listen, admin);
    let shop_key = if with_shop {
        keys.shop.entry.as_str()
    } else {
        ""
    };
    format!(
        r#"{head}apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    security: [oauth2, api_key]
    resources:
      - {{method: GET, path: /pets}}
      - {{method: GET, path: "/pets/{{id}}", scopes: [pets:read]}}
  - name: keyonly
    base_path: /keyonly/v1
    upstream: http://127.0.0.1:{upstream}
    security: [api_key]
    api_key: {{header: x-api-key}}
    resources:
      - {{method: GET, path: /items}}
  - name: query
    base_path: /query/v1
    upstream: http://127.0.0.1:{upstream}
    security: [api_key]
    api_key: {{query: api_key}}
    resources:
      - {{method: GET, path: /items}}
  - name: orders
    base_path: /orders/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /orders}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
      - {{api: keyonly}}
      - {{api: query}}
      - {{api: orders}}
    api_keys:
{shop_key}{shop_next}{expired}  - name: other
    subscriptions:
      - {{api: orders}}
    api_keys:
{other}"#,
        shop_next = keys.shop_next.entry,
        expired = keys.expired.entry,
        other = keys.other.entry,
    )
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    http(port, "GET", path, headers)
}

fn assert_denied(response: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    assert_eq!(response.json()["code"], code, "{what}: {}", response.body);
}

#[test]
fn api_keys_through_a_real_envoy() {
    let keys = Keys {
        shop: new_key("shop-2026", None),
        shop_next: new_key("shop-next", Some("2099-01-01T00:00:00Z")),
        expired: new_key("shop-old", Some("1000")),
        other: new_key("other-key", None),
    };
    let dir = TempDir::new("api-keys");
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let (port, admin) = (free_port(), free_port());
    let text = declaration(&km, port, admin, echo.port(), &keys, true);
    let out = stack::generate(dir.path(), &text);
    let plugin = std::fs::read_to_string(out.join("plugin-config.json")).unwrap_or_default();
    assert!(
        !plugin.contains(&keys.shop.key),
        "a key reached the plugin config"
    );
    let envoy = Envoy::start(&out.join("envoy.yaml"));

    // A valid key: forwarded with the application's identity, no key upstream.
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.shop.key)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = echo.last_request().unwrap();
    assert_eq!(seen.header("x-keygate-application"), Some("shop"));
    assert_eq!(seen.header("x-keygate-credential"), Some("api_key"));
    assert_eq!(seen.header("x-keygate-api-key"), Some("shop-2026"));
    assert_eq!(seen.header("x-keygate-api"), Some("pets"));
    assert_eq!(seen.header("x-keygate-client-id"), None);
    assert_eq!(seen.header("apikey"), None, "the key went upstream");

    // Rotation: the second key of the same application works too.
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.shop_next.key)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        echo.last_request().unwrap().header("x-keygate-api-key"),
        Some("shop-next")
    );

    // A token still works on an API that accepts both, and says so.
    let token = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let bearer = format!("Bearer {token}");
    let r = get(port, "/pets/v1/pets", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        echo.last_request().unwrap().header("x-keygate-credential"),
        Some("oauth2")
    );

    // Unknown and expired keys: 401 with the ApiKey challenge.
    let r = get(
        port,
        "/pets/v1/pets",
        &[("apikey", "kg_not-a-key-of-anyone")],
    );
    assert_denied(&r, 401, "api_key_unknown", "unknown key");
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "ApiKey realm=\"keygate\", header=\"apikey\", error=\"invalid_key\", \
             error_description=\"the API key is not known (or was revoked)\""
        )
    );
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.expired.key)]);
    assert_denied(&r, 401, "api_key_expired", "expired key");

    // No credential on an API that takes both: both challenges.
    let r = get(port, "/pets/v1/pets", &[]);
    assert_denied(&r, 401, "missing_credentials", "no credential");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"keygate\", ApiKey realm=\"keygate\", header=\"apikey\"")
    );

    // Wrong API: the other application is not subscribed to pets.
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.other.key)]);
    assert_denied(&r, 403, "not_subscribed", "not subscribed");

    // A resource that requires scopes refuses a key.
    let r = get(port, "/pets/v1/pets/7", &[("apikey", &keys.shop.key)]);
    assert_denied(&r, 403, "api_key_not_sufficient", "scoped resource");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .ends_with("scope=\"pets:read\""));

    // A key together with a token is refused.
    let r = get(
        port,
        "/pets/v1/pets",
        &[("apikey", &keys.shop.key), ("authorization", &bearer)],
    );
    assert_denied(&r, 400, "ambiguous_credentials", "key and token");

    // The configured header of a key-only API; the default header is no credential there.
    let r = get(port, "/keyonly/v1/items", &[("x-api-key", &keys.shop.key)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echo.last_request().unwrap().header("x-api-key"), None);
    let r = get(port, "/keyonly/v1/items", &[("apikey", &keys.shop.key)]);
    assert_denied(&r, 401, "missing_api_key", "default header on keyonly");
    assert_eq!(
        r.header("www-authenticate"),
        Some("ApiKey realm=\"keygate\", header=\"x-api-key\"")
    );

    // The query string: refused where the API does not opt in...
    let r = get(
        port,
        &format!("/pets/v1/pets?apikey={}", keys.shop.key),
        &[],
    );
    assert_denied(&r, 401, "missing_credentials", "query on pets");
    let r = get(
        port,
        &format!("/keyonly/v1/items?x-api-key={}", keys.shop.key),
        &[],
    );
    assert_denied(&r, 401, "missing_api_key", "query on keyonly");
    // ...accepted where it does, and stripped before forwarding (other parameters kept).
    let path = format!("/query/v1/items?a=1&api_key={}&b=2", keys.shop.key);
    let r = get(port, &path, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = echo.last_request().unwrap();
    assert_eq!(seen.path, "/query/v1/items?a=1&b=2");
    assert_eq!(seen.header("x-keygate-application"), Some("shop"));
    // A refused query key is stripped as well (from the access log's path).
    let r = get(port, "/query/v1/items?api_key=kg_unknown", &[]);
    assert_denied(&r, 401, "api_key_unknown", "unknown query key");

    // A key sent to an API that does not accept keys is no credential there.
    let r = get(port, "/orders/v1/orders", &[("apikey", &keys.shop.key)]);
    assert_denied(&r, 401, "missing_token", "key on a token-only API");

    // Metrics label the credential.
    let allowed_with_keys =
        envoy.stat_sum("wasmcustom.keygate_requests.outcome.allowed.api.pets.credential.api_key");
    assert_eq!(allowed_with_keys, 2, "{:?}", envoy.stats());
    assert_eq!(
        envoy.stat_sum("wasmcustom.keygate_requests.outcome.denied.reason.api_key_unknown.api.pets.credential.api_key"),
        1
    );

    // Revocation: the entry removed, generate run again while Envoy runs.
    let text = declaration(&km, port, admin, echo.port(), &keys, false);
    stack::generate(dir.path(), &text);
    let revoked = wait_for(Duration::from_secs(10), || {
        get(port, "/pets/v1/pets", &[("apikey", &keys.shop.key)]).status == 401
    });
    assert!(revoked, "the removed key was still accepted");
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.shop.key)]);
    assert_denied(&r, 401, "api_key_unknown", "revoked key");
    let r = get(port, "/pets/v1/pets", &[("apikey", &keys.shop_next.key)]);
    assert_eq!(
        r.status, 200,
        "the other key of the application: {}",
        r.body
    );

    // No key in Envoy's log (access log paths, filter logs).
    let log = envoy.log();
    for key in [
        &keys.shop.key,
        &keys.shop_next.key,
        &keys.expired.key,
        &keys.other.key,
    ] {
        assert!(!log.contains(key.as_str()), "a key is in Envoy's log");
    }
    assert!(!log.contains("kg_unknown"), "a query key is in Envoy's log");
}

/// Polls `done` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
