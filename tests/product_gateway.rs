//! Product tests: the built filter in a real Envoy, tokens from the real key manager.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::stack;

use serde_json::json;
use support::stack::{sign_es256, stranger_key, Options, Stack};
use support::{http, KeyManager, TempDir};

#[track_caller]
fn expect(response: &support::Response, status: u16, code_: &str) {
    assert_eq!(
        (response.status, response.code().as_str()),
        (status, code_),
        "body: {}",
        response.body
    );
}

#[test]
fn real_tokens_are_authorized_and_every_refusal_is_explained() {
    let stack = Stack::start(Options::default());
    let reader = stack.token("shop-app", "pets:read");

    // Allowed: identity headers reach the upstream, spoofed ones from the client never do.
    let before = stack.echo.request_count();
    let ok = http(
        stack.port,
        "GET",
        "/pets/v1/pets",
        &[
            ("authorization", &format!("Bearer {reader}")),
            ("x-keygate-application", "spoofed"),
            ("X-Keygate-Client-Id", "spoofed"),
        ],
    );
    assert_eq!(ok.status, 200, "{}\n{}", ok.body, stack.envoy.log());
    let seen = stack.echo.last_request().unwrap();
    assert_eq!(stack.echo.request_count(), before + 1);
    assert_eq!(seen.header("x-keygate-application"), Some("shop"));
    assert_eq!(seen.header("x-keygate-client-id"), Some("shop-app"));
    // The token stays at the gateway by default (strip_authorization: true).
    assert_eq!(seen.header("authorization"), None);
    // The RS256 signature was checked by Envoy's BoringSSL (the self-test passed at configure).
    let log = stack.envoy.log();
    assert!(
        log.contains("signatures checked by Envoy (verify_signature)"),
        "host verification not active:\n{log}"
    );
    let host_gauge = stack
        .envoy
        .stats()
        .into_iter()
        .find(|(name, _)| name.ends_with("keygate_signature_host"))
        .map(|(_, value)| value);
    assert_eq!(host_gauge.as_deref(), Some("1"));
    assert_eq!(seen.header("x-keygate-key-manager"), Some("demo"));
    assert_eq!(seen.header("x-keygate-subject"), Some("shop-app"));
    assert!(seen
        .header("x-keygate-scopes")
        .unwrap()
        .contains("pets:read"));

    // Templates: /pets/{id}.
    assert_eq!(stack.get("/pets/v1/pets/42", Some(&reader)).status, 200);

    let denied_before = stack.echo.request_count();

    // No token: 401 with a challenge and no error code (RFC 6750 §3.1).
    let none = stack.get("/pets/v1/pets", None);
    expect(&none, 401, "missing_token");
    let challenge = none.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");

    // Malformed header: 400 invalid_request.
    let bad = http(
        stack.port,
        "GET",
        "/pets/v1/pets",
        &[("authorization", "Bearer a b c")],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_request"));

    // Wrong scope: 403 insufficient_scope naming the scope needed.
    let orders_only = stack.token("shop-app", "orders:read");
    let scope = stack.get("/pets/v1/pets", Some(&orders_only));
    expect(&scope, 403, "insufficient_scope");
    let challenge = scope.header("www-authenticate").unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"scope="pets:read""#), "{challenge}");

    // Client id of no application; application not subscribed; subscription blocked.
    let orphan = stack.token("orphan-app", "pets:read");
    expect(
        &stack.get("/pets/v1/pets", Some(&orphan)),
        403,
        "application_not_found",
    );
    let other = stack.token("other-app", "pets:read");
    expect(
        &stack.get("/pets/v1/pets", Some(&other)),
        403,
        "not_subscribed",
    );
    let blocked = stack.token("blocked-app", "pets:read");
    expect(
        &stack.get("/pets/v1/pets", Some(&blocked)),
        403,
        "subscription_blocked",
    );
    // production_only_blocked: this gateway serves production.
    let orders = stack.token("shop-app", "orders:read");
    expect(
        &stack.get("/orders/v1/orders", Some(&orders)),
        403,
        "subscription_blocked",
    );
    // ... while the same application's other subscription is fine for another client.
    assert_eq!(
        stack
            .get(
                "/orders/v1/orders",
                Some(&stack.token("other-app", "orders:read"))
            )
            .status,
        200
    );

    // Tampered payload: the signature no longer matches.
    let mut parts: Vec<String> = reader.split('.').map(String::from).collect();
    let mut claims = support::decode_jwt_claims(&reader);
    claims["scope"] = json!("pets:read pets:write");
    parts[1] = base64_url(&claims.to_string());
    let tampered = parts.join(".");
    expect(
        &stack.get("/pets/v1/pets", Some(&tampered)),
        401,
        "signature_invalid",
    );

    // Crafted with the key manager's own key: expired, wrong audience, wrong issuer.
    let (kid, key) = stack.km_ec_key();
    let mut expired = stack.claims("shop-app", "pets:read");
    expired["exp"] = json!(stack::now() - 3600);
    expired["iat"] = json!(stack::now() - 7200);
    let response = stack.get("/pets/v1/pets", Some(&sign_es256(&key, &kid, &expired)));
    expect(&response, 401, "token_expired");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="invalid_token""#));

    let mut audience = stack.claims("shop-app", "pets:read");
    audience["aud"] = json!("https://elsewhere.example");
    expect(
        &stack.get("/pets/v1/pets", Some(&sign_es256(&key, &kid, &audience))),
        401,
        "audience_mismatch",
    );

    let mut issuer = stack.claims("shop-app", "pets:read");
    issuer["iss"] = json!("https://evil.example");
    expect(
        &stack.get("/pets/v1/pets", Some(&sign_es256(&key, &kid, &issuer))),
        401,
        "issuer_unknown",
    );

    // The same claims signed with the key manager's key pass: the crafted path itself is sound.
    let good = sign_es256(&key, &kid, &stack.claims("shop-app", "pets:read"));
    assert_eq!(stack.get("/pets/v1/pets", Some(&good)).status, 200);
    let denied_before = denied_before + 2;

    // Signed by a key the key manager never had, under its own kid and under a random one.
    let stranger = stranger_key();
    let forged = sign_es256(&stranger, &kid, &stack.claims("shop-app", "pets:read"));
    expect(
        &stack.get("/pets/v1/pets", Some(&forged)),
        401,
        "signature_invalid",
    );
    let unknown = sign_es256(
        &stranger,
        "no-such-kid",
        &stack.claims("shop-app", "pets:read"),
    );
    expect(
        &stack.get("/pets/v1/pets", Some(&unknown)),
        401,
        "unknown_kid",
    );

    // alg none never passes.
    let unsigned = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","typ":"JWT"}"#),
        base64_url(&stack.claims("shop-app", "pets:read").to_string())
    );
    assert_eq!(stack.get("/pets/v1/pets", Some(&unsigned)).status, 401);

    // None of the refused requests reached the upstream.
    assert_eq!(
        stack.echo.request_count(),
        denied_before,
        "a refused request was forwarded"
    );

    // Public resource: no token needed.
    assert_eq!(stack.get("/pets/v1/health", None).status, 200);

    // Groups: alice (pet-admins) may POST, bob may not.
    let alice = stack.km.token_password(
        "shop-app",
        "shop-app-secret",
        "alice",
        "alice-pass",
        "pets:write",
    );
    let bob = stack.km.token_password(
        "shop-app",
        "shop-app-secret",
        "bob",
        "bob-pass",
        "pets:write",
    );
    let post = |token: &str| {
        http(
            stack.port,
            "POST",
            "/pets/v1/pets",
            &[("authorization", &format!("Bearer {token}"))],
        )
    };
    let response = post(&alice);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        stack
            .echo
            .last_request()
            .unwrap()
            .header("x-keygate-subject"),
        Some("alice")
    );
    expect(&post(&bob), 403, "insufficient_group");

    // Routing refusals.
    expect(&stack.get("/nothing/here", Some(&reader)), 404, "no_api");
    expect(
        &stack.get("/pets/v1/unknown", Some(&reader)),
        404,
        "resource_not_found",
    );
    let delete = http(
        stack.port,
        "DELETE",
        "/pets/v1/pets",
        &[("authorization", &format!("Bearer {reader}"))],
    );
    expect(&delete, 405, "method_not_allowed");

    // The decision reaches the access log (filter state written by the filter).
    assert!(
        stack.envoy.wait_for_log(
            r#""keygate_code":"insufficient_group""#,
            std::time::Duration::from_secs(10)
        ),
        "access log lacks the decision code:\n{}",
        stack.envoy.log()
    );

    // The filter's counters are in Envoy's stats.
    assert!(
        stack
            .envoy
            .stat_sum("wasmcustom.keygate_requests.outcome.allowed")
            >= 5
    );
    assert!(
        stack
            .envoy
            .stat_sum("wasmcustom.keygate_requests.outcome.denied")
            >= 10
    );
}

#[test]
fn path_tricks_never_widen_access() {
    let stack = Stack::start(Options::default());
    // Public /pets/v1/health sits beside the protected /pets/v1/pets: no spelling of a protected
    // path may reach the upstream without a token, and no spelling of the public one may
    // smuggle a protected one.
    let tricks = [
        "/pets/v1/health/../pets",
        "/pets/v1/health/%2e%2e/pets",
        "/pets/v1/health%2F..%2Fpets",
        "/pets/v1/health/..%2fpets",
        "/pets/v1//pets",
        "/pets/v1/./pets",
        "/pets/v1/health\\..\\pets",
        "/PETS/v1/pets",
        "/pets/V1/pets",
        "/pets/v1/PETS",
        "/pets/v1/pets%00",
        "/pets/v1/pets#fragment",
        "/pets/v1/health;/../pets",
        "/pets/v1/pets?x=/pets/v1/health",
        "/pets/v1/%70ets",
    ];
    let before = stack.echo.request_count();
    for trick in tricks {
        let response = stack.get(trick, None);
        assert!(
            matches!(response.status, 400 | 401 | 404),
            "{trick}: {} {}",
            response.status,
            response.body
        );
    }
    assert_eq!(
        stack.echo.request_count(),
        before,
        "a trick reached the upstream without a token"
    );
    // Envoy itself refuses an encoded slash before the filter runs; the reply still carries
    // keygate's JSON body and code.
    for encoded in ["/pets/v1/health%2F..%2Fpets", "/pets/v1/a%5Cb"] {
        let response = stack.get(encoded, None);
        assert_eq!(response.status, 400, "{encoded}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        let body = response.json();
        assert_eq!(body["code"], "path_not_canonical", "{encoded}: {body}");
        assert_eq!(body["error"], "invalid_request", "{encoded}: {body}");
    }
    // The plain public path works, with and without a query.
    assert_eq!(stack.get("/pets/v1/health", None).status, 200);
    assert_eq!(stack.get("/pets/v1/health?probe=1", None).status, 200);
}

#[test]
fn key_manager_unreachable_before_the_first_fetch_is_503_never_forwarded() {
    let dir = TempDir::new("down");
    let mut km = KeyManager::start();
    let token = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    km.stop();
    let stack = Stack::start_with(
        Options {
            settings: "  request_wait_ms: 1500\n  jwks_fetch_timeout_ms: 1000".to_string(),
            ..Options::default()
        },
        km,
        dir,
    );
    let response = stack.get("/pets/v1/pets", Some(&token));
    expect(&response, 503, "key_manager_unavailable");
    assert!(response.header("retry-after").is_some());
    assert_eq!(stack.echo.request_count(), 0);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn discover_then_generate_from_the_well_known_url_authorizes_a_real_token() {
    let km = KeyManager::start();
    // `keygate discover` checks the live discovery document and prints the entry it would import.
    let discovered = std::process::Command::new(support::keygate_bin())
        .arg("discover")
        .arg(km.well_known_url())
        .output()
        .expect("run keygate discover");
    let printed = String::from_utf8_lossy(&discovered.stdout);
    assert!(
        discovered.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&discovered.stderr)
    );
    assert!(printed.contains(km.issuer()), "{printed}");
    assert!(printed.contains("jwks_uri"), "{printed}");

    // generate resolves the well-known URL itself (no inline discovery), then Envoy runs it.
    let stack = Stack::start_with(
        Options {
            fetch_discovery: true,
            ..Options::default()
        },
        km,
        TempDir::new("discover"),
    );
    let plugin: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(stack.dir.join("out/plugin-config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plugin["key_managers"][0]["issuer"], stack.km.issuer());
    let token = stack.token("shop-app", "pets:read");
    let response = stack.get("/pets/v1/pets", Some(&token));
    assert_eq!(response.status, 200, "{}", response.body);
}
