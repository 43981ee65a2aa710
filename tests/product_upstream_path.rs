//! An API's `upstream` with a path (issue 22, item 8b): the built filter in a real Envoy decides
//! on the request path as the client sent it, and the echo upstream shows the path it received —
//! the base path replaced by the upstream's path, or unchanged when the upstream has none.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::stack::{demo_head, generate, sign_es256, Stack};
use support::{free_port, http, EchoUpstream, Envoy, KeyManager, TempDir};

/// `pets` goes to `/v2`, `strip` to `/` (base path dropped), `stock` unchanged.
fn declaration(km: &KeyManager, listen: u16, admin: u16, upstream: u16) -> String {
    let head = demo_head(km, listen, admin);
    format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}/v2
    resources:
      - {{method: GET, path: "/pets/{{id}}", scopes: [pets:read]}}
      - {{method: GET, path: /, public: true}}
  - name: strip
    base_path: /strip
    upstream: http://127.0.0.1:{upstream}/
    resources:
      - {{method: ANY, path: "/{{any}}", public: true}}
  - name: stock
    base_path: /stock/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /items, public: true}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
"#
    )
}

#[test]
fn the_upstream_path_replaces_the_base_path_and_keygate_decides_on_the_original() {
    let dir = TempDir::new("upstream-path");
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let out = generate(dir.path(), &declaration(&km, listen, admin, echo.port()));

    let (ok, log) = Envoy::validate(&out.join("envoy.yaml"));
    assert!(ok, "envoy --mode validate failed:\n{log}");

    let envoy = Envoy::start(&out.join("envoy.yaml"));
    let stack = Stack {
        envoy,
        echo,
        km,
        port: listen,
        dir,
    };
    let (kid, key) = stack.km_ec_key();
    let token = sign_es256(&key, &kid, &stack.claims("shop-app", "pets:read"));
    let auth = format!("Bearer {token}");

    let received = |path: &str, with_token: bool| -> String {
        let before = stack.echo.request_count();
        let headers: Vec<(&str, &str)> = if with_token {
            vec![("authorization", auth.as_str())]
        } else {
            Vec::new()
        };
        let response = http(stack.port, "GET", path, &headers);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert_eq!(stack.echo.request_count(), before + 1, "{path}");
        stack.echo.last_request().unwrap().path
    };
    // The filter matched `/pets/{id}` under `/pets/v1` (the scope was checked), then Envoy
    // replaced the base path; the query string goes as it came.
    assert_eq!(received("/pets/v1/pets/7", true), "/v2/pets/7");
    assert_eq!(received("/pets/v1/pets/7?x=1", true), "/v2/pets/7?x=1");
    assert_eq!(received("/pets/v1/", false), "/v2/");
    // `/` as the upstream's path drops the base path.
    assert_eq!(received("/strip/a", false), "/a");
    // No path: unchanged.
    assert_eq!(received("/stock/v1/items", false), "/stock/v1/items");

    // The decision is still the one for the original path: no token, no rewrite to reach.
    let before = stack.echo.request_count();
    let refused = http(stack.port, "GET", "/pets/v1/pets/7", &[]);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(stack.echo.request_count(), before);
    // The access log shows the path the client sent.
    assert!(
        stack.envoy.wait_for_log(
            "\"path\":\"/pets/v1/pets/7\"",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        stack.envoy.log()
    );
}
