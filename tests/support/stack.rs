//! A whole keygate stack for product tests: the real key manager, an echo upstream, and a real
//! Envoy running the built filter with a bootstrap made by `keygate generate`.
//!
//! Reached as `support::stack` (with `mod support;`). Tokens are either real (from the key manager's token
//! endpoint) or crafted here and signed for real with P-256 keys: the key manager's own private key
//! (read from its persisted keys file) or a key of the test's own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

use crate::support::{free_port, keygate_bin, wasm_path, EchoUpstream, Envoy, KeyManager, TempDir};

/// The resource indicator the demo key manager puts in `aud`.
pub const AUDIENCE: &str = "https://api.keygate.test";

/// Options of a stack; `Default` is one worker, JWKS straight from the key manager.
#[derive(Clone)]
pub struct Options {
    /// Envoy worker threads (one wasm VM each).
    pub workers: u32,
    /// Fetch the JWKS through this port (a fault proxy) instead of the key manager's own.
    pub jwks_port: Option<u16>,
    /// Extra `settings:` lines of the declaration (YAML mapping body, two-space indented).
    pub settings: String,
    /// The environment the gateway serves.
    pub environment: String,
    /// Environments the key manager is enabled for (empty: all).
    pub km_environments: Vec<String>,
    /// Let `keygate generate` fetch the discovery document from the well-known URL instead of
    /// carrying it inline (then the JWKS comes from the key manager itself).
    pub fetch_discovery: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 1,
            jwks_port: None,
            settings: String::new(),
            environment: "production".to_string(),
            km_environments: Vec::new(),
            fetch_discovery: false,
        }
    }
}

pub struct Stack {
    pub envoy: Envoy,
    pub echo: EchoUpstream,
    pub km: KeyManager,
    pub port: u16,
    pub dir: TempDir,
}

/// The head every product declaration shares: the gateway (environment, listener, admin, any
/// `settings`) and the demo key manager with its discovery inline (or fetched, per `options`).
/// A test appends its own `tiers:`, `apis:` and `applications:`.
pub fn gateway_and_key_manager(
    options: &Options,
    issuer: &str,
    jwks_uri: &str,
    listen: u16,
    admin: u16,
) -> String {
    let environments = if options.km_environments.is_empty() {
        String::new()
    } else {
        format!(
            "    environments: [{}]\n",
            options.km_environments.join(", ")
        )
    };
    let discovery = if options.fetch_discovery {
        String::new()
    } else {
        format!(
            "    discovery:\n      issuer: {issuer}\n      jwks_uri: {jwks_uri}\n      token_endpoint: {issuer}/token\n"
        )
    };
    let settings = if options.settings.is_empty() {
        String::new()
    } else {
        format!("settings:\n{}\n", options.settings)
    };
    format!(
        r#"gateway:
  environment: {env}
  listen: 127.0.0.1:{listen}
  admin: 127.0.0.1:{admin}
{settings}key_managers:
  - name: demo
    well_known_url: {issuer}/.well-known/openid-configuration
    audiences: [{AUDIENCE}]
{environments}{discovery}"#,
        env = options.environment,
    )
}

/// [`gateway_and_key_manager`] for a default stack of `km`, its JWKS straight from it.
pub fn demo_head(km: &KeyManager, listen: u16, admin: u16) -> String {
    let jwks_uri = format!("http://127.0.0.1:{}{}", km.port(), km.jwks_path());
    gateway_and_key_manager(&Options::default(), km.issuer(), &jwks_uri, listen, admin)
}

/// The declaration the product tests run: APIs, applications and the demo key manager.
pub fn declaration(
    options: &Options,
    issuer: &str,
    jwks_uri: &str,
    listen: u16,
    admin: u16,
    upstream: u16,
) -> String {
    let head = gateway_and_key_manager(options, issuer, jwks_uri, listen, admin);
    format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
      - {{method: GET, path: "/pets/{{id}}", scopes: [pets:read]}}
      - {{method: POST, path: /pets, scopes: [pets:write], groups: [pet-admins]}}
      - {{method: GET, path: /health, public: true}}
  - name: orders
    version: v1
    base_path: /orders/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /orders, scopes: [orders:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
      - {{api: orders, state: production_only_blocked}}
  - name: other
    client_ids:
      - {{key_manager: demo, client_id: other-app}}
    subscriptions:
      - {{api: orders}}
  - name: blocked
    client_ids:
      - {{key_manager: demo, client_id: blocked-app}}
    subscriptions:
      - {{api: pets, state: blocked}}
"#
    )
}

/// Runs `keygate generate` and returns the directory it wrote.
pub fn generate(dir: &Path, declaration: &str) -> PathBuf {
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, declaration).expect("write keygate.yaml");
    let out = dir.join("out");
    let result = Command::new(keygate_bin())
        .arg("generate")
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--wasm")
        .arg(wasm_path())
        .output()
        .expect("run keygate generate");
    assert!(
        result.status.success(),
        "keygate generate failed:\n{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

impl Stack {
    pub fn start(options: Options) -> Stack {
        let dir = TempDir::new("stack");
        let km = KeyManager::start();
        Stack::start_with(options, km, dir)
    }

    /// A stack around a key manager started by the caller (it may be stopped already).
    pub fn start_with(options: Options, km: KeyManager, dir: TempDir) -> Stack {
        let echo = EchoUpstream::start();
        let (listen, admin) = (free_port(), free_port());
        let jwks_port = options.jwks_port.unwrap_or(km.port());
        let jwks_uri = format!("http://127.0.0.1:{jwks_port}{}", km.jwks_path());
        let text = declaration(&options, km.issuer(), &jwks_uri, listen, admin, echo.port());
        let out = generate(dir.path(), &text);
        let envoy = Envoy::start_with_workers(&out.join("envoy.yaml"), options.workers);
        Stack {
            envoy,
            echo,
            km,
            port: listen,
            dir,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> crate::support::Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        crate::support::http(self.port, "GET", path, &headers)
    }

    pub fn token(&self, client: &str, scope: &str) -> String {
        self.km
            .token_client_credentials(client, &format!("{client}-secret"), scope)
    }

    /// The key manager's EC P-256 private key (kid, signing key).
    pub fn km_ec_key(&self) -> (String, SigningKey) {
        let state = self.km.signing_keys();
        let key = state["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .find(|k| k["kty"] == "EC" && k["crv"] == "P-256")
            .expect("an EC P-256 key in the key manager's keys");
        let d = URL_SAFE_NO_PAD
            .decode(key["d"].as_str().expect("d"))
            .expect("d base64url");
        let signing = SigningKey::from_slice(&d).expect("P-256 private key");
        (key["kid"].as_str().expect("kid").to_string(), signing)
    }

    /// Claims like the key manager's own client-credentials tokens, valid for an hour from now.
    pub fn claims(&self, client: &str, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.km.issuer(),
            "sub": client,
            "aud": AUDIENCE,
            "client_id": client,
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
            "jti": format!("crafted-{now}"),
        })
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Signs `claims` with ES256 under `kid` (a real signature, compact JWS).
pub fn sign_es256(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// A fresh P-256 key no key manager knows.
pub fn stranger_key() -> SigningKey {
    SigningKey::random(&mut rand::rngs::OsRng)
}
