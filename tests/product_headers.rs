//! README "Security rules" on the request headers, through the built filter in a real Envoy over
//! HTTP/1.1 (raw requests on a TcpStream) and HTTP/2 (curl, h2c prior knowledge, which the
//! generated listener accepts) (issue 20, finding 6): two `Authorization` headers are 400, forged
//! identity headers in any spelling (`_` for `-`, any case) never reach the upstream, and
//! `Authorization` stays at the gateway unless `strip_authorization: false`. What the upstream
//! receives is read from the echo upstream's record.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{canned, signers};

use std::process::Command;

use serde_json::{json, Value};

use support::stack::{gateway_and_key_manager, generate, now, Options, AUDIENCE};
use support::{expect_reply, free_port, http, EchoUpstream, EchoedRequest, Envoy, TempDir};

struct Gateway {
    envoy: Envoy,
    echo: EchoUpstream,
    issuer: String,
    port: u16,
    _jwks: canned::Server,
    _dir: TempDir,
}

/// A gateway whose key manager's JWKS (the committed P-256 test key) is served from loopback;
/// `settings` are extra declaration lines under `settings:`.
fn start(settings: &str) -> Gateway {
    start_with(settings, false)
}

/// [`start`]; with `underscores` the listener accepts header names with `_`, as Istio sidecars
/// do (the generated bootstrap rejects them: `headers_with_underscores_action: REJECT_REQUEST`).
fn start_with(settings: &str, underscores: bool) -> Gateway {
    start_serving(settings, underscores, b"")
}

/// [`start_with`], the JWKS response carrying `jwks_header` (raw header lines).
fn start_serving(settings: &str, underscores: bool, jwks_header: &[u8]) -> Gateway {
    let jwks = String::from_utf8(signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap();
    let routes = vec![("/jwks".to_string(), 200, jwks)];
    let server = canned::Server::start_with_header_bytes(routes, jwks_header);
    let issuer = server.base.clone();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let dir = TempDir::new("headers");
    let options = Options {
        settings: if settings.is_empty() {
            String::new()
        } else {
            format!("  {settings}")
        },
        ..Options::default()
    };
    let head = gateway_and_key_manager(&options, &issuer, &format!("{issuer}/jwks"), listen, admin);
    let declaration = format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
      - {{method: GET, path: /health, public: true}}
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
    let bootstrap = out.join("envoy.yaml");
    if underscores {
        let text = std::fs::read_to_string(&bootstrap).unwrap();
        let rule = "headers_with_underscores_action: REJECT_REQUEST";
        assert_eq!(text.matches(rule).count(), 1, "{text}");
        std::fs::write(
            &bootstrap,
            text.replace(rule, "headers_with_underscores_action: ALLOW"),
        )
        .unwrap();
    }
    let envoy = Envoy::start(&bootstrap);
    Gateway {
        envoy,
        echo,
        issuer,
        port: listen,
        _jwks: server,
        _dir: dir,
    }
}

/// A real ES256 token of the key manager's key for `shop-app`.
fn token(gateway: &Gateway, subject: &str) -> String {
    let now = now();
    let claims: Value = json!({
        "iss": gateway.issuer,
        "sub": subject,
        "aud": AUDIENCE,
        "client_id": "shop-app",
        "scope": "pets:read",
        "iat": now,
        "exp": now + 3600,
    });
    signers::token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims, "p256")
}

/// Status and `code` of a request over HTTP/2 (h2c prior knowledge) with curl, headers as given.
fn h2(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    try_h2(port, path, headers).unwrap_or_else(|e| panic!("curl {path}: {e}"))
}

/// [`h2`], or curl's error (a reset stream).
fn try_h2(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_code}",
    ]);
    // HTTP/2 field names are lower case (RFC 9113 §8.2.1; Envoy resets a stream that has an
    // upper-case one): case variants are an HTTP/1.1 spelling.
    for (name, value) in headers {
        command
            .arg("-H")
            .arg(format!("{}: {value}", name.to_ascii_lowercase()));
    }
    let out = command
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((status.trim().parse().unwrap(), code))
}

/// The headers of a request the upstream saw whose name is an identity header in any spelling.
fn identity_like(seen: &EchoedRequest) -> Vec<(String, String)> {
    seen.headers
        .iter()
        .filter(|(name, _)| name.replace('_', "-").starts_with("x-keygate-"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

#[test]
fn two_authorization_headers_are_refused_over_both_protocols() {
    let gateway = start("");
    let a = format!("Bearer {}", token(&gateway, "a"));
    let b = format!("Bearer {}", token(&gateway, "b"));
    // Each alone is allowed.
    let one = http(
        gateway.port,
        "GET",
        "/pets/v1/pets",
        &[("authorization", &a)],
    );
    assert_eq!(one.status, 200, "{}", one.body);
    // Envoy hands the filter both values joined by a comma (`authorization` is one of its inline
    // headers), which is not one token68: keygate refuses it rather than deciding on either.
    let before = gateway.echo.request_count();
    for (first, second) in [(&a, &b), (&a, &a), (&a, &"Bearer junk".to_string())] {
        let headers = [
            ("authorization", first.as_str()),
            ("authorization", second.as_str()),
        ];
        let r = http(gateway.port, "GET", "/pets/v1/pets", &headers);
        expect_reply(&r, 400, "malformed_authorization", "HTTP/1.1, two headers");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(
            h2(gateway.port, "/pets/v1/pets", &headers),
            (400, "malformed_authorization".to_string()),
            "HTTP/2, two headers"
        );
    }
    assert_eq!(
        gateway.echo.request_count(),
        before,
        "a request with two Authorization headers reached the upstream"
    );
}

/// Requests `path` with `headers` over `protocol`; the status.
fn status(gateway: &Gateway, protocol: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    if protocol == "HTTP/1.1" {
        http(gateway.port, "GET", path, headers).status
    } else {
        h2(gateway.port, path, headers).0
    }
}

/// Sends `forged` identity headers with a token and without one (public resource) over both
/// protocols: every request is forwarded with keygate's identity only.
fn forged_headers_are_removed(gateway: &Gateway, forged: &[(&str, &str)]) {
    let bearer = format!("Bearer {}", token(gateway, "alice"));
    let mut with_token: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
    with_token.extend(forged);
    let own: Vec<(String, String)> = [
        ("x-keygate-api", "pets"),
        ("x-keygate-application", "shop"),
        ("x-keygate-client-id", "shop-app"),
        ("x-keygate-credential", "oauth2"),
        ("x-keygate-key-manager", "demo"),
        ("x-keygate-scopes", "pets:read"),
        ("x-keygate-subject", "alice"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let before = gateway.echo.request_count();
    for protocol in ["HTTP/1.1", "HTTP/2"] {
        // An allowed request: keygate's own identity and nothing forged.
        assert_eq!(
            status(gateway, protocol, "/pets/v1/pets", &with_token),
            200,
            "{protocol}"
        );
        let seen = gateway.echo.last_request().unwrap();
        let mut identity = identity_like(&seen);
        identity.sort();
        assert_eq!(identity, own, "{protocol}");
        // A public request: no identity at all.
        assert_eq!(
            status(gateway, protocol, "/pets/v1/health", forged),
            200,
            "{protocol}"
        );
        let seen = gateway.echo.last_request().unwrap();
        assert_eq!(seen.path, "/pets/v1/health");
        assert_eq!(identity_like(&seen), vec![], "{protocol}");
    }
    assert_eq!(gateway.echo.request_count(), before + 4);
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    // The generated bootstrap: names with `_` are refused by Envoy before keygate runs (HTTP/1.1
    // 400, HTTP/2 a reset stream); other spellings are removed by keygate.
    let gateway = start("");
    let before = gateway.echo.request_count();
    let headers = [("x-keygate_client-id", "forged")];
    let r = http(gateway.port, "GET", "/pets/v1/health", &headers);
    assert_eq!((r.status, r.code().as_str()), (400, ""), "{}", r.body);
    let reset = try_h2(gateway.port, "/pets/v1/health", &headers).unwrap_err();
    assert!(reset.contains("INTERNAL_ERROR"), "{reset}");
    assert_eq!(gateway.echo.request_count(), before);
    forged_headers_are_removed(
        &gateway,
        &[
            ("x-keygate-client-id", "forged"),
            ("X-KEYGATE-APPLICATION", "forged"),
            ("x-keygate-tier", "forged"),
            ("x-KeyGate-Whatever", "forged"),
        ],
    );
}

#[test]
fn identity_headers_spelled_with_underscores_are_removed_where_envoy_accepts_them() {
    // An Istio-like listener that lets `_` through: keygate removes those spellings itself.
    let gateway = start_with("", true);
    forged_headers_are_removed(
        &gateway,
        &[
            ("x-keygate_client-id", "forged"),
            ("x_keygate_application", "forged"),
            ("X-KEYGATE_SUBJECT", "forged"),
            ("x_keygate_tier", "forged"),
            ("x-keygate-api", "forged"),
        ],
    );
}

#[test]
fn authorization_stays_at_the_gateway_unless_configured_otherwise() {
    let stripping = start("");
    let keeping = start("strip_authorization: false");
    for (gateway, kept) in [(&stripping, false), (&keeping, true)] {
        let bearer = format!("Bearer {}", token(gateway, "alice"));
        let headers = [("authorization", bearer.as_str())];
        for protocol in ["HTTP/1.1", "HTTP/2"] {
            for path in ["/pets/v1/pets", "/pets/v1/health"] {
                assert_eq!(
                    status(gateway, protocol, path, &headers),
                    200,
                    "{protocol} {path}"
                );
                let seen = gateway.echo.last_request().unwrap();
                assert_eq!(seen.path, path);
                let expected = kept.then_some(bearer.as_str());
                assert!(
                    seen.header("authorization") == expected,
                    "{protocol} {path}: strip_authorization {}: the upstream got {}",
                    !kept,
                    if seen.header("authorization").is_some() {
                        "an Authorization header"
                    } else {
                        "none"
                    }
                );
            }
        }
        assert_eq!(gateway.echo.request_count(), 4);
    }
    assert!(stripping.envoy.admin_port() != keeping.envoy.admin_port());
}

/// Envoy passes header values that are not UTF-8 (obs-text bytes) to the filter. They are only
/// bytes to keygate: the request is decided like any other, the filter keeps serving, and a
/// forged identity header carrying such a value is still removed.
#[test]
fn header_values_that_are_not_utf8_are_decided_like_any_other() {
    let gateway = start("");
    let bearer = format!("Bearer {}", token(&gateway, "a"));
    let request = |extra: &[u8], authorization: &str| {
        let mut raw = format!(
            "GET /pets/v1/pets HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nauthorization: {authorization}\r\n",
            gateway.port
        )
        .into_bytes();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(b"connection: close\r\n\r\n");
        support::http_raw(gateway.port, &raw).expect("a response")
    };
    let odd: &[&[u8]] = &[
        b"x-odd: \xff\xfe\r\n",
        b"user-agent: caf\xe9\r\n",
        b"x-keygate-application: \xc3\x28admin\r\n",
        b"x-odd: \x80\r\nx-odd-2: \xed\xa0\x80\r\n",
    ];
    for extra in odd {
        let before = gateway.echo.request_count();
        let allowed = request(extra, &bearer);
        assert_eq!(allowed.status, 200, "{}", allowed.body);
        assert_eq!(gateway.echo.request_count(), before + 1);
        let seen = gateway.echo.last_request().expect("the upstream saw it");
        assert_eq!(
            identity_like(&seen)
                .iter()
                .filter(|(name, _)| name == "x-keygate-application")
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>(),
            vec!["shop"],
            "only keygate's own identity header goes upstream"
        );
        let refused = request(extra, "Bearer junk");
        expect_reply(
            &refused,
            401,
            "malformed_token",
            "a bad token with an odd header",
        );
    }
    // An Authorization value that is not UTF-8 is a malformed credential, never forwarded.
    let before = gateway.echo.request_count();
    let raw = format!(
        "GET /pets/v1/pets HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nconnection: close\r\n",
        gateway.port
    );
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(b"authorization: Bearer ");
    raw.extend_from_slice(bearer.trim_start_matches("Bearer ").as_bytes());
    raw.extend_from_slice(b"\xff\r\n\r\n");
    let odd_token = support::http_raw(gateway.port, &raw).expect("a response");
    assert!(
        matches!(odd_token.status, 400 | 401),
        "{} {}",
        odd_token.status,
        odd_token.body
    );
    assert_eq!(gateway.echo.request_count(), before);
    // The filter still answers ordinary requests on the same worker.
    let plain = http(
        gateway.port,
        "GET",
        "/pets/v1/pets",
        &[("authorization", &bearer)],
    );
    assert_eq!(plain.status, 200, "{}", plain.body);
}

/// A key manager's JWKS answer whose headers hold bytes that are not UTF-8 is read like any other
/// (the SDK's reader of callout headers stopped the VM on them, as it did for request headers).
#[test]
fn a_jwks_answer_with_header_values_that_are_not_utf8_is_read() {
    let gateway = start_serving(
        "",
        false,
        b"x-odd: \xff\xfe\r\ncache-control: max-age=\xe9\r\n",
    );
    let bearer = format!("Bearer {}", token(&gateway, "a"));
    for _ in 0..3 {
        let r = http(
            gateway.port,
            "GET",
            "/pets/v1/pets",
            &[("authorization", &bearer)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
}
