//! Backend JWTs through the built filter in a real Envoy (docs/backend-jwt.md): the upstream gets
//! a JWT the gateway signed, and verifies it with the JWKS the gateway's own route serves
//! (`/.well-known/keygate/jwks.json`), here with `keygate check-token --jwks`. The signing keys
//! are made by `keygate backend-key new` and handed to Envoy in its environment. Access tokens
//! are ES256, signed by test code with the committed P-256 test key.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::stack::{gateway_and_key_manager, generate, now, Options, AUDIENCE};
use support::{canned, decode_jwt_claims, decode_jwt_header, free_port, http, keygate, signers};
use support::{EchoUpstream, Envoy, Response, TempDir};

const ISSUER: &str = "https://gateway.keygate.test";
const JWKS_PATH: &str = "/.well-known/keygate/jwks.json";
const TTL: u64 = 120;

/// A key pair from `keygate backend-key new --env NAME`: the private JWK (Envoy's environment)
/// and the declaration entry.
struct BackendKey {
    env: String,
    private: String,
    entry: String,
}

fn backend_key(env: &str) -> BackendKey {
    let run = keygate(&["backend-key", "new", "--env", env], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let line = |prefix: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {}", run.stdout))
            .to_string()
    };
    let private = line(&format!("{env}='"));
    let private = private[env.len() + 2..private.len() - 1].to_string();
    let entry = line("- {env: ");
    BackendKey {
        env: env.to_string(),
        private,
        entry,
    }
}

fn kid(key: &BackendKey) -> String {
    let jwk: Value = serde_json::from_str(&key.private).unwrap();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    use sha2::Digest;
    signers::b64(&sha2::Sha256::digest(canonical.as_bytes()))
}

fn declaration(head: &str, keys: &[&BackendKey], upstream: u16) -> String {
    let entries: String = keys
        .iter()
        .map(|k| format!("      {}\n", k.entry))
        .collect();
    format!(
        r#"{head}tiers:
  - {{name: gold, requests: 1000, per: minute}}
apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    backend_jwt: {{ttl_seconds: {TTL}}}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
      - {{method: GET, path: /health, public: true}}
  - name: orders
    version: v1
    base_path: /orders/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /orders, scopes: [pets:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets, tier: gold}}
      - {{api: orders}}
"#
    )
    .replacen(
        "key_managers:\n",
        &format!("  backend_jwt:\n    issuer: {ISSUER}\n    keys:\n{entries}key_managers:\n"),
        1,
    )
}

fn token(issuer: &str, lifetime: u64) -> String {
    let now = now();
    let claims = json!({
        "iss": issuer, "sub": "alice", "aud": AUDIENCE, "client_id": "shop-app",
        "scope": "pets:read", "iat": now, "exp": now + lifetime, "jti": format!("t-{lifetime}"),
    });
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k-p256"});
    let input = format!(
        "{}.{}",
        signers::b64(header.to_string().as_bytes()),
        signers::b64(claims.to_string().as_bytes())
    );
    let signature = signers::sign("ES256", "p256", input.as_bytes());
    format!("{input}.{}", signers::b64(&signature))
}

struct Gateway {
    envoy: Envoy,
    echo: EchoUpstream,
    port: u16,
    head: String,
    dir: TempDir,
    _jwks: canned::Server,
    issuer: String,
}

fn start(keys: &[&BackendKey], all: &[&BackendKey]) -> Gateway {
    let jwks = String::from_utf8(signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap();
    let server = canned::Server::start(vec![("/jwks".to_string(), 200, jwks)]);
    let issuer = server.base.clone();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let head = gateway_and_key_manager(
        &Options::default(),
        &issuer,
        &format!("{issuer}/jwks"),
        listen,
        admin,
    );
    let dir = TempDir::new("backend-jwt");
    let out = generate(dir.path(), &declaration(&head, keys, echo.port()));
    let env: Vec<(&str, &str)> = all
        .iter()
        .map(|k| (k.env.as_str(), k.private.as_str()))
        .collect();
    let envoy = Envoy::start_with_env(&out.join("envoy.yaml"), 1, &env);
    Gateway {
        envoy,
        echo,
        port: listen,
        head,
        dir,
        _jwks: server,
        issuer,
    }
}

impl Gateway {
    fn get(&self, path: &str, token: Option<&str>, forged: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        if let Some(forged) = forged {
            headers.push(("x-jwt-assertion", forged));
        }
        http(self.port, "GET", path, &headers)
    }

    /// The backend JWT the upstream received with the last request.
    fn received(&self) -> Option<String> {
        let seen = self.echo.last_request().unwrap();
        seen.header("x-jwt-assertion").map(str::to_string)
    }

    /// The gateway's JWKS as its route serves it, saved for `check-token`.
    fn published_jwks(&self) -> PathBuf {
        let response = http(self.port, "GET", JWKS_PATH, &[]);
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let path = self.dir.path().join(format!("published-{}.json", now()));
        std::fs::write(&path, &response.body).unwrap();
        path
    }
}

/// `keygate check-token` of `jwt` against the published JWKS, as an upstream would check it.
fn check(jwks: &Path, jwt: &str, at: u64) -> Value {
    let run = keygate(
        &[
            "check-token",
            "--jwks",
            jwks.to_str().unwrap(),
            "--at",
            &at.to_string(),
            "--issuer",
            ISSUER,
            "--audience",
            "pets",
            jwt,
        ],
        b"",
    );
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

#[test]
fn the_upstream_verifies_the_gateway_signed_identity() {
    let a = backend_key("KG_BACKEND_A");
    let b = backend_key("KG_BACKEND_B");
    let gateway = start(&[&a, &b], &[&a, &b]);
    let jwks = gateway.published_jwks();
    let published: Value = serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    let mut kids: Vec<String> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    let mut expected = vec![kid(&a), kid(&b)];
    expected.sort();
    assert_eq!(
        kids, expected,
        "both keys are published under their RFC 7638 kids"
    );
    assert!(
        published.to_string().find("\"d\"").is_none(),
        "a private key was published"
    );
    // generate wrote the same JWKS next to the bootstrap.
    let written = canned::read(&gateway.dir.path().join("out/backend-jwks.json"));
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), published);

    let access = token(&gateway.issuer, 3600);
    let response = gateway.get("/pets/v1/pets", Some(&access), Some("forged.by.client"));
    assert_eq!(response.status, 200, "{}", response.body);
    let jwt = gateway.received().expect("the upstream got a backend JWT");
    assert_ne!(jwt, "forged.by.client");
    let checked = check(&jwks, &jwt, now());
    assert_eq!(checked["valid"], true, "{checked}");
    let claims = &checked["claims"];
    assert_eq!(
        decode_jwt_header(&jwt)["kid"],
        kid(&a),
        "the first key signs"
    );
    assert_eq!(decode_jwt_header(&jwt)["alg"], "ES256");
    for (claim, value) in [
        ("iss", json!(ISSUER)),
        ("aud", json!("pets")),
        ("sub", json!("alice")),
        ("application", json!("shop")),
        ("client_id", json!("shop-app")),
        ("key_manager", json!("demo")),
        ("scope", json!("pets:read")),
        ("tier", json!("gold")),
        ("environment", json!("production")),
    ] {
        assert_eq!(claims[claim], value, "{claim} in {claims}");
    }
    // Expiry: exp = iat + ttl_seconds, and the upstream refuses it once past.
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, TTL);
    assert_eq!(check(&jwks, &jwt, exp + 1)["reason"], "token_expired");

    // A cache hit signs nothing: the same JWT again.
    let again = gateway.get("/pets/v1/pets", Some(&access), None);
    assert_eq!(again.status, 200);
    assert_eq!(gateway.received().as_deref(), Some(jwt.as_str()));

    // Never beyond the access token: one that expires in 30 s gets a JWT that does too.
    let short = token(&gateway.issuer, 30);
    assert_eq!(gateway.get("/pets/v1/pets", Some(&short), None).status, 200);
    let short_jwt = gateway.received().unwrap();
    let short_claims = decode_jwt_claims(&short_jwt);
    assert_eq!(short_claims["exp"], decode_jwt_claims(&short)["exp"]);

    // An API without backend_jwt and a public resource: the forged header never arrives.
    let orders = gateway.get("/orders/v1/orders", Some(&access), Some("forged.by.client"));
    assert_eq!(orders.status, 200, "{}", orders.body);
    assert_eq!(gateway.received(), None);
    let health = gateway.get("/pets/v1/health", None, Some("forged.by.client"));
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(gateway.received(), None);
    // A refused request reaches nothing either.
    let before = gateway.echo.request_count();
    assert_eq!(
        gateway.get("/pets/v1/pets", None, Some("forged")).status,
        401
    );
    assert_eq!(gateway.echo.request_count(), before);
    let log = gateway.envoy.log();
    assert!(!log.contains(&jwt), "a backend JWT was logged");
    // Envoy 1.40 has the `sign` foreign function, and it passed the self-test.
    let signer = format!("backend JWTs signed with kid {} by Envoy (sign)", kid(&a));
    assert!(log.contains(&signer), "{log}");
}

#[test]
fn rotation_switches_the_signing_key_live_and_old_jwts_still_verify() {
    let a = backend_key("KG_ROTATE_A");
    let b = backend_key("KG_ROTATE_B");
    let gateway = start(&[&a, &b], &[&a, &b]);
    let access = token(&gateway.issuer, 3600);
    assert_eq!(
        gateway.get("/pets/v1/pets", Some(&access), None).status,
        200
    );
    let old = gateway.received().unwrap();
    assert_eq!(decode_jwt_header(&old)["kid"], kid(&a));

    // B first: the live configuration switches the signer; the published set is the same, so
    // the bootstrap is unchanged (generate would exit 3 otherwise and `generate` fails).
    let upstream = gateway.echo.port();
    generate(
        gateway.dir.path(),
        &declaration(&gateway.head, &[&b, &a], upstream),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        assert_eq!(
            gateway.get("/pets/v1/pets", Some(&access), None).status,
            200
        );
        let jwt = gateway.received().unwrap();
        if decode_jwt_header(&jwt)["kid"] == kid(&b) {
            break jwt;
        }
        assert!(
            Instant::now() < deadline,
            "the signing key never switched to B"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let jwks = gateway.published_jwks();
    assert_eq!(check(&jwks, &new, now())["valid"], true);
    assert_eq!(
        check(&jwks, &old, now())["valid"],
        true,
        "a JWT of the old key"
    );
    // A JWT of a key nobody published does not verify.
    let c = backend_key("KG_ROTATE_C");
    let stranger_jwks = gateway.dir.path().join("stranger.json");
    let public: Value = serde_json::from_str(&c.private).unwrap();
    let public = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": public["x"], "y": public["y"], "kid": kid(&a)}]});
    std::fs::write(&stranger_jwks, public.to_string()).unwrap();
    assert_eq!(check(&stranger_jwks, &old, now())["valid"], false);
}

#[test]
fn a_missing_or_wrong_signing_key_refuses_the_configuration() {
    let a = backend_key("KG_MISSING_A");
    let b = backend_key("KG_MISSING_B");
    let jwks = String::from_utf8(signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap();
    let server = canned::Server::start(vec![("/jwks".to_string(), 200, jwks)]);
    let issuer = server.base.clone();
    let (listen, admin) = (free_port(), free_port());
    let head = gateway_and_key_manager(
        &Options::default(),
        &issuer,
        &format!("{issuer}/jwks"),
        listen,
        admin,
    );
    let dir = TempDir::new("backend-jwt-refused");
    let out = generate(dir.path(), &declaration(&head, &[&a], 9));
    // A's variable holds B's private key: not the configured public key.
    let envoy = Envoy::start_with_env(&out.join("envoy.yaml"), 1, &[(&a.env, &b.private)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !envoy.log().contains("configuration refused") {
        assert!(Instant::now() < deadline, "{}", envoy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = envoy.log();
    assert!(log.contains("backend_jwt.keys[0].env"), "{log}");
    assert!(!log.contains(&b.private), "the private key was logged");
    drop(server);
}
