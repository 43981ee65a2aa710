//! Every signature algorithm through the built filter in a real Envoy (issue 20, finding 1).
//!
//! The key manager's JWKS (one RSA-2048, RSA-3072, P-256, P-384, P-521 and Ed25519 key and an
//! HMAC secret, the committed test keys) is served from loopback; the tokens are signed here by test code, fresh
//! for the run. RS* and ES* go to Envoy's `verify_signature` foreign function (BoringSSL) once the
//! filter's self-test passed (gauge `keygate_signature_host` 1); PS*, EdDSA stay in Wasm. An
//! error answer from Envoy (a key it cannot import, a hash it does not know) is "does not verify",
//! so a wrong key identifier or hash name on the host path turns a valid token into a 401: every
//! valid token must be 200 and every tampered one 401 `signature_invalid`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{canned, signers};

use serde_json::{json, Value};

use support::stack::{gateway_and_key_manager, generate, now, Options, AUDIENCE};
use support::{free_port, http, EchoUpstream, Envoy, Response, TempDir};

/// Algorithms, as (alg, test key, kid); HMAC is never accepted from a key manager.
const ALGS: [(&str, &str, &str); 10] = [
    ("RS256", "rsa2048", "k-rsa"),
    ("RS384", "rsa2048", "k-rsa"),
    ("RS512", "rsa3072", "k-rsa3072"),
    ("PS256", "rsa2048", "k-rsa"),
    ("PS384", "rsa3072", "k-rsa3072"),
    ("PS512", "rsa2048", "k-rsa"),
    ("ES256", "p256", "k-p256"),
    ("ES384", "p384", "k-p384"),
    ("ES512", "p521", "k-p521"),
    ("EdDSA", "ed25519", "k-ed"),
];

/// Which of them Envoy checks (README "Metrics", `keygate_signature_host`; `src/jose/offload.rs`).
fn host_checked(alg: &str) -> bool {
    alg.starts_with("RS") || alg.starts_with("ES")
}

struct Gateway {
    envoy: Envoy,
    echo: EchoUpstream,
    issuer: String,
    port: u16,
    _jwks: canned::Server,
    _dir: TempDir,
}

fn start() -> Gateway {
    // Every test key, the HMAC secret included: a JWKS is public, so it must never verify.
    let jwks = String::from_utf8(signers::jwks(&signers::all_keys())).unwrap();
    let server = canned::Server::start(vec![("/jwks".to_string(), 200, jwks)]);
    let issuer = server.base.clone();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let dir = TempDir::new("signatures");
    let head = gateway_and_key_manager(
        &Options::default(),
        &issuer,
        &format!("{issuer}/jwks"),
        listen,
        admin,
    );
    let declaration = format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
"#,
        upstream = echo.port()
    );
    let out = generate(dir.path(), &declaration);
    let envoy = Envoy::start(&out.join("envoy.yaml"));
    Gateway {
        envoy,
        echo,
        issuer,
        port: listen,
        _jwks: server,
        _dir: dir,
    }
}

fn claims(issuer: &str, subject: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "sub": subject,
        "aud": AUDIENCE,
        "client_id": "shop-app",
        "scope": "pets:read",
        "iat": now,
        "exp": now + 3600,
    })
}

/// The same header and signature over other claims: a token whose payload was changed.
fn tampered(token: &str, issuer: &str) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let payload = signers::b64(&serde_json::to_vec(&claims(issuer, "mallory")).unwrap());
    format!("{header}.{payload}.{signature}")
}

fn get(gateway: &Gateway, token: &str) -> Response {
    http(
        gateway.port,
        "GET",
        "/pets/v1/pets",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn every_algorithm_is_verified_on_its_real_path() {
    let gateway = start();
    // The host path is on: the self-test against Envoy's BoringSSL passed at configuration.
    assert_eq!(
        gateway.envoy.stat("wasmcustom.keygate_signature_host"),
        Some(1),
        "Envoy's verify_signature is not in use:\n{}",
        gateway.envoy.log()
    );
    assert!(gateway
        .envoy
        .log()
        .contains("RS*/ES* signatures checked by Envoy (verify_signature)"));

    let mut forwarded = 0;
    for (alg, key, kid) in ALGS {
        let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
        let token = signers::token(&header, &claims(&gateway.issuer, alg), key);
        let path = if host_checked(alg) { "host" } else { "wasm" };

        let ok = get(&gateway, &token);
        assert_eq!(
            ok.status, 200,
            "{alg} ({path} path): a valid token was refused: {}",
            ok.body
        );
        forwarded += 1;
        let seen = gateway.echo.last_request().unwrap();
        assert_eq!(seen.header("x-keygate-subject"), Some(alg), "{alg}");
        assert_eq!(seen.header("x-keygate-client-id"), Some("shop-app"));

        let bad = get(&gateway, &tampered(&token, &gateway.issuer));
        assert_eq!(
            (bad.status, bad.code().as_str()),
            (401, "signature_invalid"),
            "{alg} ({path} path): a tampered token: {}",
            bad.body
        );
        assert_eq!(bad.header("cache-control"), Some("no-store"), "{alg}");
        let challenge = bad.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
            "{alg}: {challenge}"
        );
    }
    assert_eq!(
        gateway.echo.request_count(),
        forwarded,
        "a tampered token reached the upstream"
    );

    // HMAC is never accepted from a key manager (even with its oct key published), nor `none`.
    for alg in ["HS256", "HS384", "HS512"] {
        let header = json!({"alg": alg, "kid": "k-oct", "typ": "at+jwt"});
        let token = signers::token(&header, &claims(&gateway.issuer, alg), "oct64");
        let r = get(&gateway, &token);
        support::expect_reply(&r, 401, "alg_not_allowed", alg);
    }
    for none in ["none", "None", "NONE"] {
        let input = signers::signing_input(
            &json!({"alg": none, "typ": "at+jwt"}),
            &claims(&gateway.issuer, none),
        );
        for token in [
            format!("{input}."),
            format!("{input}.{}", signers::b64(b"x")),
        ] {
            let r = get(&gateway, &token);
            assert_eq!(r.status, 401, "{none}: {}", r.body);
            assert!(
                matches!(r.code().as_str(), "alg_not_allowed" | "malformed_token"),
                "{none}: {}",
                r.body
            );
        }
    }
    assert_eq!(
        gateway.echo.request_count(),
        forwarded,
        "an HMAC or unsigned token reached the upstream"
    );

    // README "Reason codes": every denial Envoy sends for keygate is `cache-control: no-store`.
    let es256 = |scope: &str| {
        let mut c = claims(&gateway.issuer, "scoped");
        c["scope"] = json!(scope);
        signers::token(
            &json!({"alg": "ES256", "kid": "k-p256", "typ": "at+jwt"}),
            &c,
            "p256",
        )
    };
    let wrong_scope = format!("Bearer {}", es256("orders:read"));
    // (method, path, Authorization, status, code)
    let cases = [
        ("GET", "/pets/v1/pets", None, 401, "missing_token"),
        (
            "GET",
            "/pets/v1/pets",
            Some("Basic YTpi"),
            401,
            "unsupported_scheme",
        ),
        (
            "GET",
            "/pets/v1/pets",
            Some("Bearer a b"),
            400,
            "malformed_authorization",
        ),
        (
            "GET",
            "/pets/v1/pets",
            Some(wrong_scope.as_str()),
            403,
            "insufficient_scope",
        ),
        ("GET", "/nothing", None, 404, "no_api"),
        ("POST", "/pets/v1/pets", None, 405, "method_not_allowed"),
        ("GET", "/pets/v1/pets%3Bx", None, 400, "path_not_canonical"),
    ];
    for (method, path, authorization, status, code) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let r = http(gateway.port, method, path, &headers);
        support::expect_reply(&r, status, code, path);
        assert_eq!(r.header_all("cache-control"), vec!["no-store"], "{code}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{code}");
    }

    // The verified-token cache did not decide any of them: every token was new.
    assert_eq!(
        gateway
            .envoy
            .stat("wasmcustom.keygate_token_cache.result.hit")
            .unwrap_or(0),
        0
    );
}
