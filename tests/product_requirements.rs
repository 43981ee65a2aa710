//! Product test of resource requirements beyond "one of these scopes" (issue 25 part 4): the
//! built filter in a real Envoy, tokens signed for real with the demo key manager's own EC key
//! (so every claim is the test's choice). `scopes_all` (every scope needed, beside one of
//! `scopes`) and `claims` conditions (a top-level claim, a dotted path into nested objects,
//! string and array values, several claims combined with AND): allowed and refused, with the 403
//! bodies and challenges that name what was missing.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::SigningKey;

use support::stack::{self, demo_head, sign_es256};
use support::{free_port, http, EchoUpstream, Envoy, KeyManager, Response, TempDir};

fn declaration(km: &KeyManager, listen: u16, admin: u16, upstream: u16) -> String {
    let head = demo_head(km, listen, admin);
    format!(
        r#"{head}apis:
  - name: reports
    base_path: /reports/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /monthly, scopes: [reports:read, reports:admin], scopes_all: [reports:export, audit]}}
      - {{method: GET, path: /tenant, claims: {{tenant: [acme, globex]}}}}
      - {{method: GET, path: /admin, scopes: [reports:read], claims: {{tenant: acme, realm_access.roles: [admin, owner]}}}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: reports}}
"#
    )
}

/// The key manager's EC P-256 private key (kid, key), from its persisted keys.
fn ec_key(km: &KeyManager) -> (String, SigningKey) {
    let state = km.signing_keys();
    let key = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC" && k["crv"] == "P-256")
        .expect("an EC P-256 key");
    let d = URL_SAFE_NO_PAD.decode(key["d"].as_str().unwrap()).unwrap();
    let signing = SigningKey::from_slice(&d).unwrap();
    (key["kid"].as_str().unwrap().to_string(), signing)
}

struct Rig {
    port: u16,
    km: KeyManager,
    echo: EchoUpstream,
    _envoy: Envoy,
    _dir: TempDir,
}

fn rig() -> Rig {
    let dir = TempDir::new("requirements");
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let (port, admin) = (free_port(), free_port());
    let out = stack::generate(dir.path(), &declaration(&km, port, admin, echo.port()));
    let envoy = Envoy::start(&out.join("envoy.yaml"));
    Rig {
        port,
        km,
        echo,
        _envoy: envoy,
        _dir: dir,
    }
}

impl Rig {
    /// A token of `shop-app` with `scope` and the `extra` claims, signed with the key manager's
    /// own EC key.
    fn token(&self, scope: &str, extra: Value) -> String {
        let signer = ec_key(&self.km);
        let now = stack::now();
        let mut claims = json!({
            "iss": self.km.issuer(),
            "sub": "alice",
            "aud": stack::AUDIENCE,
            "client_id": "shop-app",
            "scope": scope,
            "iat": now,
            "exp": now + 600,
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        sign_es256(&signer.1, &signer.0, &claims)
    }

    fn get(&self, path: &str, token: &str) -> Response {
        let bearer = format!("Bearer {token}");
        http(self.port, "GET", path, &[("authorization", &bearer)])
    }
}

fn assert_forbidden(r: &Response, code: &str, description: &str, challenge: &str) {
    assert_eq!(r.status, 403, "{}", r.body);
    let body = r.json();
    assert_eq!(body["code"], code, "{}", r.body);
    assert_eq!(body["error"], "insufficient_scope", "{}", r.body);
    assert_eq!(body["error_description"], description, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some(challenge));
}

#[test]
fn all_of_scopes_and_claim_conditions_in_a_real_envoy() {
    let rig = rig();

    // One of `scopes` and every one of `scopes_all`.
    let all = rig.token("reports:admin reports:export audit", json!({}));
    let r = rig.get("/reports/v1/monthly", &all);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        rig.echo
            .last_request()
            .unwrap()
            .header("x-keygate-application"),
        Some("shop")
    );
    // One all-of scope missing: 403 insufficient_scope, scope= lists the whole all-of set.
    let lacking = rig.token("reports:read reports:export", json!({}));
    assert_forbidden(
        &rig.get("/reports/v1/monthly", &lacking),
        "insufficient_scope",
        "the token needs all of the scopes reports:export audit; it lacks audit",
        "Bearer realm=\"keygate\", error=\"insufficient_scope\", error_description=\"the token \
         needs all of the scopes reports:export audit; it lacks audit\", \
         scope=\"reports:export audit\"",
    );
    // The all-of set without any of `scopes`: the any-of rule answers first.
    let no_any = rig.token("reports:export audit", json!({}));
    let r = rig.get("/reports/v1/monthly", &no_any);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        "Bearer realm=\"keygate\", error=\"insufficient_scope\", error_description=\"the token \
         needs one of the scopes: reports:read reports:admin\", scope=\"reports:read reports:admin\""
    );

    // A claim condition: the tenant is one of the accepted values.
    let globex = rig.token("", json!({"tenant": "globex"}));
    assert_eq!(rig.get("/reports/v1/tenant", &globex).status, 200);
    let initech = rig.token("", json!({"tenant": "initech"}));
    let claim_refused = "the token's claim \"tenant\" must be one of: acme, globex";
    assert_forbidden(
        &rig.get("/reports/v1/tenant", &initech),
        "insufficient_claim",
        claim_refused,
        "Bearer realm=\"keygate\", error=\"insufficient_scope\", \
         error_description=\"the token's claim 'tenant' must be one of: acme, globex\"",
    );
    // An array claim matches when one element is accepted; no claim at all is refused.
    let array = rig.token("", json!({"tenant": ["initech", "acme"]}));
    assert_eq!(rig.get("/reports/v1/tenant", &array).status, 200);
    let none = rig.token("", json!({}));
    assert_eq!(
        rig.get("/reports/v1/tenant", &none).json()["code"],
        "insufficient_claim"
    );

    // Several conditions (AND), one a nested path into the token.
    let admin = json!({"tenant": "acme", "realm_access": {"roles": ["viewer", "owner"]}});
    let ok = rig.token("reports:read", admin);
    assert_eq!(rig.get("/reports/v1/admin", &ok).status, 200);
    let viewer = json!({"tenant": "acme", "realm_access": {"roles": ["viewer"]}});
    let r = rig.get("/reports/v1/admin", &rig.token("reports:read", viewer));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["code"], "insufficient_claim");
    assert_eq!(
        r.json()["error_description"],
        "the token's claim \"realm_access.roles\" must be one of: admin, owner"
    );
    let wrong_tenant = json!({"tenant": "globex", "realm_access": {"roles": ["admin"]}});
    let r = rig.get(
        "/reports/v1/admin",
        &rig.token("reports:read", wrong_tenant),
    );
    assert_eq!(
        r.json()["error_description"],
        "the token's claim \"tenant\" must be one of: acme"
    );
    // Scopes are checked before claims.
    let r = rig.get(
        "/reports/v1/admin",
        &rig.token(
            "",
            json!({"tenant": "acme", "realm_access": {"roles": ["admin"]}}),
        ),
    );
    assert_eq!(r.json()["code"], "insufficient_scope", "{}", r.body);
}
