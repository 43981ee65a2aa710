//! Product tests of the security rules (issue 11, findings 2 and 3): the built filter in a real
//! Envoy, tokens signed with the real key manager's key. Only HTTP behaviour is checked: what the
//! client gets back and whether the upstream saw the request.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::Command;

use support::stack::{demo_head, generate, sign_es256, Stack};
use support::{free_port, http, EchoUpstream, Envoy, KeyManager, Response, TempDir};

/// `GET /adm/secret` needs `adm:secret`; everything else under `/adm/{page}` only `adm:page`.
fn declaration(km: &KeyManager, listen: u16, admin: u16, upstream: u16) -> String {
    let head = demo_head(km, listen, admin);
    format!(
        r#"{head}apis:
  - name: adm
    version: v1
    base_path: /adm
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /secret, scopes: ["adm:secret"]}}
      - {{method: ANY, path: "/{{page}}", scopes: ["adm:page"]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: adm}}
"#
    )
}

fn start() -> Stack {
    let dir = TempDir::new("security");
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let out = generate(dir.path(), &declaration(&km, listen, admin, echo.port()));
    let envoy = Envoy::start(&out.join("envoy.yaml"));
    Stack {
        envoy,
        echo,
        km,
        port: listen,
        dir,
    }
}

/// A real ES256 token of the key manager's own key, for client `shop-app` with `scope`.
fn token(stack: &Stack, scope: &str) -> String {
    let (kid, key) = stack.km_ec_key();
    sign_es256(&key, &kid, &stack.claims("shop-app", scope))
}

fn request(stack: &Stack, method: &str, path: &str, token: &str) -> Response {
    http(
        stack.port,
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// A reply body fit for a failure message: the denial code, or which request the upstream echoed
/// (never the echoed headers, which hold the bearer token).
fn shown(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v["code"].is_string() => format!("denied: {}", v["code"]),
        Ok(v) if v["headers"].is_object() => {
            format!("forwarded upstream as {} {}", v["method"], v["path"])
        }
        _ => body.chars().take(120).collect(),
    }
}

/// What curl got back.
struct Reply {
    status: u16,
    /// Lower-cased header lines, `name: value`.
    headers: Vec<String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}:");
        self.headers
            .iter()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(str::trim)
    }
}

/// `METHOD path` with curl, which sends the method as given: over HTTP/2 with prior knowledge
/// (h2c) when `h2`, else HTTP/1.1. Used for HEAD (no body to wait for) and lower-case methods,
/// which HTTP/2 carries as the client wrote them.
fn curl(stack: &Stack, h2: bool, method: &str, path: &str, token: &str) -> Reply {
    let head = stack.dir.join("curl-head.txt");
    let body = stack.dir.join("curl-body.txt");
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"])
        .arg(if h2 {
            "--http2-prior-knowledge"
        } else {
            "--http1.1"
        })
        .arg("-H")
        .arg(format!("authorization: Bearer {token}"));
    if method == "HEAD" {
        command.arg("--head");
    } else {
        command.arg("-X").arg(method);
    }
    let out = command
        .arg(format!("http://127.0.0.1:{}{path}", stack.port))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {method} {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let headers = std::fs::read_to_string(&head)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_ascii_lowercase())
        .collect();
    Reply {
        status,
        headers,
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

#[test]
fn method_variants_are_decided_by_the_most_specific_rule() {
    let stack = start();
    let page = token(&stack, "adm:page");
    let secret = token(&stack, "adm:secret");

    // Baselines: the strict rule for GET, the weaker one elsewhere under {page}.
    let r = request(&stack, "GET", "/adm/secret", &page);
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "insufficient_scope"),
        "{}\n{}",
        shown(&r.body),
        stack.envoy.log()
    );
    assert_eq!(request(&stack, "GET", "/adm/secret", &secret).status, 200);
    assert_eq!(request(&stack, "GET", "/adm/other", &page).status, 200);
    assert_eq!(request(&stack, "POST", "/adm/other", &page).status, 200);

    let before = stack.echo.request_count();
    // HEAD is decided as GET: the weaker {page} token is refused, with the GET rule's scope.
    for h2 in [false, true] {
        let head = curl(&stack, h2, "HEAD", "/adm/secret", &page);
        assert_eq!(head.status, 403, "h2 {h2}: {:?}", head.headers);
        let challenge = head.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains(r#"scope="adm:secret""#), "{challenge}");
    }
    // A method the specific template lacks is a 405, never the {page} rule.
    let post = request(&stack, "POST", "/adm/secret", &page);
    assert_eq!(
        (post.status, post.code().as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // HTTP/2 carries the method as the client wrote it: a lower-case one is refused (400).
    for method in ["get", "Get", "head"] {
        for path in ["/adm/secret", "/adm/other"] {
            let r = curl(&stack, true, method, path, &page);
            assert_eq!(r.status, 400, "{method} {path}: {}", shown(&r.body));
            assert_eq!(
                shown(&r.body),
                "denied: \"method_not_canonical\"",
                "{method}"
            );
        }
    }
    assert_eq!(
        stack.echo.request_count(),
        before,
        "a method variant reached the upstream"
    );

    // The strict rule lets the right token through, HEAD included, over both protocols.
    let head = curl(&stack, false, "HEAD", "/adm/secret", &secret);
    assert_eq!(head.status, 200);
    assert_eq!(stack.echo.last_request().unwrap().method, "HEAD");
    let get = curl(&stack, true, "GET", "/adm/secret", &secret);
    assert_eq!(get.status, 200, "{}", shown(&get.body));
}

#[test]
fn path_equivalents_of_the_strict_resource_are_refused() {
    let stack = start();
    let page = token(&stack, "adm:page");
    let equivalents = [
        // Encoded forms of delimiters whose raw form is refused.
        "/adm/secret%3Bx",
        "/adm/secret%3b",
        "/adm/secret%3Fx",
        "/adm/secret%23x",
        // Trailing dots and spaces, which Windows servers drop.
        "/adm/secret.",
        "/adm/secret..",
        "/adm/secret%20",
        // Encoded non-ASCII letters that Unicode folding maps to ASCII: ſ, the Kelvin sign.
        "/adm/%C5%BFecret",
        "/adm/%E2%84%AAey",
        "/adm/s%C3%A9cret",
    ];
    let before = stack.echo.request_count();
    for path in equivalents {
        let r = request(&stack, "GET", path, &page);
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "path_not_canonical"),
            "{path}: {}",
            shown(&r.body)
        );
    }
    assert_eq!(
        stack.echo.request_count(),
        before,
        "a path equivalent reached the upstream"
    );
    // Legitimate spellings under {page} still work.
    for path in ["/adm/a.b", "/adm/a%20b", "/adm/a=b,c", "/adm/.well-known"] {
        let r = request(&stack, "GET", path, &page);
        assert_eq!(r.status, 200, "{path}: {}", shown(&r.body));
    }
}
