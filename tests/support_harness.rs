#![cfg(not(target_arch = "wasm32"))]
//! The test harness against the real things it drives: the demo key manager issues both kinds of
//! token with the claims keygate relies on and rotates keys; Envoy starts and proxies to the echo
//! upstream. A failure here means the product tests cannot be trusted, so nothing is skipped.

// Helpers below panic on a bad token the way `#[test]` bodies may.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::*;

const RESOURCE: &str = "https://api.keygate.test";

fn kid_of(token: &str) -> String {
    decode_jwt_header(token)["kid"]
        .as_str()
        .expect("token header has a kid")
        .to_string()
}

#[test]
fn key_manager_issues_application_and_user_tokens() {
    let km = KeyManager::start();
    eprintln!("key manager ready in {:?}", km.startup);

    let discovery = km.discovery();
    assert_eq!(discovery["issuer"], km.issuer());
    assert_eq!(discovery["jwks_uri"], format!("{}/jwks", km.issuer()));
    let grants: Vec<&str> = discovery["grant_types_supported"]
        .as_array()
        .expect("grant types")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(
        grants.contains(&"client_credentials") && grants.contains(&"password"),
        "{grants:?}"
    );

    let kids = km.jwks_kids();
    // The demo key manager publishes its RSA signer, an older RSA key and an EC P-256 key.
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert_eq!(
        kids.iter().filter(|k| k.starts_with("rsa-")).count(),
        2,
        "{kids:?}"
    );
    assert_eq!(
        kids.iter().filter(|k| k.starts_with("ec-")).count(),
        1,
        "{kids:?}"
    );
    let jwks = km.jwks();
    for key in jwks["keys"].as_array().expect("keys") {
        assert!(
            key.get("d").is_none(),
            "JWKS must not publish private key material"
        );
    }

    // Application token: client_credentials.
    let app = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read pets:write");
    let header = decode_jwt_header(&app);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert!(kids.contains(&kid_of(&app)), "signing kid is published");
    let claims = decode_jwt_claims(&app);
    assert_eq!(claims["iss"], km.issuer());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["client_id"], "shop-app");
    assert_eq!(claims["sub"], "shop-app");
    assert_eq!(claims["scope"], "pets:read pets:write");
    assert!(
        claims.get("groups").is_none(),
        "application tokens carry no groups"
    );
    let iat = claims["iat"].as_u64().expect("iat");
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp > iat, "exp after iat");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // User token: password grant, groups from demo-data.json.
    let alice = km.token_password(
        "shop-app",
        "shop-app-secret",
        "alice",
        "alice-pass",
        "pets:write",
    );
    let claims = decode_jwt_claims(&alice);
    assert_eq!(claims["iss"], km.issuer());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "shop-app");
    assert_eq!(claims["scope"], "pets:write");
    assert_eq!(claims["groups"], serde_json::json!(["pet-admins"]));

    let bob = km.token_password(
        "other-app",
        "other-app-secret",
        "bob",
        "bob-pass",
        "pets:read",
    );
    let claims = decode_jwt_claims(&bob);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["client_id"], "other-app");
    assert_eq!(claims["groups"], serde_json::json!([]));

    // Wrong credentials are refused by the real endpoint.
    let bad_password = km.token_request(
        "shop-app",
        "shop-app-secret",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "nope"),
        ],
    );
    assert_eq!(bad_password.status, 400);
    assert_eq!(bad_password.json()["error"], "invalid_grant");
    let bad_secret = km.token_request("shop-app", "wrong", &[("grant_type", "client_credentials")]);
    assert_eq!(bad_secret.status, 401);
    assert_eq!(bad_secret.json()["error"], "invalid_client");

    // The log says who got a token, never the token.
    let log = km.log();
    assert!(log.contains("client=shop-app"), "{log}");
    assert!(!log.contains(&app) && !log.contains(&alice));
}

#[test]
fn key_manager_rotates_and_retires_keys() {
    let km = KeyManager::start();
    let before = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let old_kid = kid_of(&before);
    let kids_before = km.jwks_kids();
    assert_eq!(km.keys()["signer"], old_kid.as_str());

    let new_kid = km.rotate();
    assert_ne!(new_kid, old_kid);
    let kids = km.jwks_kids();
    assert!(kids.contains(&new_kid), "new key published: {kids:?}");
    assert!(
        kids_before.iter().all(|k| kids.contains(k)),
        "old keys stay after rotate"
    );

    let after = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    assert_eq!(
        kid_of(&after),
        new_kid,
        "tokens after rotate use the new key"
    );

    let removed = km.retire();
    assert_eq!(removed as usize, kids.len() - 1);
    assert_eq!(km.jwks_kids(), vec![new_kid.clone()]);
    let last = km.token_password("shop-app", "shop-app-secret", "alice", "alice-pass", "");
    assert_eq!(kid_of(&last), new_kid);
}

/// A minimal bootstrap: listener on `listen_port` routes everything to the echo upstream.
fn static_bootstrap(listen_port: u16, upstream_port: u16) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: smoke
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: echo}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream_port}}}}}
"#
    )
}

#[test]
fn envoy_proxies_to_the_echo_upstream() {
    let echo = EchoUpstream::start();
    let dir = TempDir::new("harness-smoke");
    let listen = free_port();
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, static_bootstrap(listen, echo.port())).expect("write bootstrap");

    let envoy = Envoy::start(&config);
    eprintln!("envoy ready in {:?}", envoy.startup);

    let reply = http(
        listen,
        "GET",
        "/pets/v1/pets?limit=2",
        &[("x-test", "smoke")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/pets/v1/pets?limit=2");
    assert_eq!(body["headers"]["x-test"], "smoke");

    let seen = echo.last_request().expect("upstream saw the request");
    assert_eq!(seen.path, "/pets/v1/pets?limit=2");
    assert_eq!(seen.header("x-test"), Some("smoke"));
    assert_eq!(echo.request_count(), 1);

    let posted = http_with_body(
        listen,
        "POST",
        "/pets/v1/pets",
        &[("content-type", "application/json")],
        b"{\"name\":\"rex\"}",
    );
    assert_eq!(posted.status, 200);
    assert_eq!(
        echo.last_request().expect("post seen").body,
        b"{\"name\":\"rex\"}"
    );

    assert_eq!(envoy.stat("cluster.echo.upstream_rq_200"), Some(2));
    assert_eq!(envoy.stat("http.smoke.downstream_rq_2xx"), Some(2));
}

#[test]
fn echo_upstream_reports_and_records_requests() {
    let echo = EchoUpstream::start();
    let reply = http(
        echo.port(),
        "GET",
        "/a/b?c=d",
        &[("x-one", "1"), ("X-Dup", "a"), ("x-dup", "b")],
    );
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/a/b?c=d");
    assert_eq!(body["headers"]["x-one"], "1");
    assert_eq!(
        body["headers"]["x-dup"], "a, b",
        "repeated headers are all visible"
    );
    let seen = echo.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("X-ONE"), Some("1"));
}

#[test]
fn http_client_reads_chunked_and_sized_bodies() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n4\r\nWiki\r\n6;ext=1\r\npedia!\r\n0\r\n\r\n";
    let r = support::http::parse_response(chunked).expect("chunked response parses");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "Wikipedia!");
    assert_eq!(r.header("x-a"), Some("1"));

    let sized = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\nwww-authenticate: Bearer realm=\"k\"\r\n\r\nokEXTRA";
    let r = support::http::parse_response(sized).expect("sized response parses");
    assert_eq!(r.status, 401);
    assert_eq!(r.body, "ok");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer realm=\"k\""));

    assert!(
        support::http::parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort")
            .is_err()
    );
    assert!(support::http::parse_response(b"garbage").is_err());
    assert_eq!(
        support::http::form_encode(&[("scope", "pets:read pets:write"), ("a&b", "=")]),
        "scope=pets%3Aread+pets%3Awrite&a%26b=%3D"
    );
}

#[test]
fn key_manager_restarts_on_its_port_with_its_keys() {
    let mut km = KeyManager::start();
    let issuer = km.issuer().to_string();
    let kids = km.jwks_kids();
    km.stop();
    assert!(try_http(km.port(), "GET", "/jwks", &[], b"").is_err());
    km.restart();
    assert_eq!(km.issuer(), issuer);
    assert_eq!(km.jwks_kids(), kids, "same keys after a restart");
    let signer = km.signer_private_jwk();
    assert_eq!(signer["kid"], km.keys()["signer"]);
    assert_eq!(signer["kty"], "RSA");
    assert!(
        signer["d"].as_str().is_some_and(|d| !d.is_empty()),
        "private part present"
    );
    let token = km.token_client_credentials("shop-app", "shop-app-secret", "");
    assert!(kids.contains(&kid_of(&token)));
}

#[test]
fn keygate_cli_runs() {
    let run = keygate(&["--version"], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("keygate "), "{run:?}");
    let usage = keygate(&["no-such-command"], b"");
    assert_eq!(usage.code, Some(2), "{usage:?}");
}
