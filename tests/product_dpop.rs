//! DPoP (RFC 9449) through the built filter in a real Envoy with two workers: DPoP-bound tokens
//! issued by the real key manager (oidc-provider, `features.dPoP`) to a client key made here,
//! proofs signed here for real. Every rule has its allowed and its refused side; a replayed proof
//! is refused on whichever worker it lands (Envoy's per-worker listener stats show both got one).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::stack::{gateway_and_key_manager, generate, now, Options};
use support::{
    decode_jwt_claims, http, DpopKey, EchoUpstream, Envoy, KeyManager, Response, TempDir,
};

/// `pets` takes bearer and DPoP-bound tokens; `vault` requires DPoP. `settings` are the
/// `settings:` mapping's lines (two-space indented), or empty.
fn declaration(km: &KeyManager, listen: u16, admin: u16, upstream: u16, settings: &str) -> String {
    let options = Options {
        settings: settings.to_string(),
        ..Options::default()
    };
    let jwks_uri = format!("http://127.0.0.1:{}{}", km.port(), km.jwks_path());
    let head = gateway_and_key_manager(&options, km.issuer(), &jwks_uri, listen, admin);
    format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
      - {{method: POST, path: /pets, scopes: [pets:write]}}
  - name: vault
    base_path: /vault
    dpop: required
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /items, scopes: [pets:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
      - {{api: vault}}
"#
    )
}

struct Gateway {
    envoy: Envoy,
    km: KeyManager,
    port: u16,
    _echo: EchoUpstream,
    _dir: TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with("")
    }

    fn start_with(settings: &str) -> Gateway {
        let dir = TempDir::new("dpop");
        let km = KeyManager::start();
        let echo = EchoUpstream::start();
        let (listen, admin) = (support::free_port(), support::free_port());
        let out = generate(
            dir.path(),
            &declaration(&km, listen, admin, echo.port(), settings),
        );
        let envoy = Envoy::start_with_workers(&out.join("envoy.yaml"), 2);
        Gateway {
            envoy,
            km,
            port: listen,
            _echo: echo,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One request on its own connection.
    fn call(&self, method: &str, path: &str, authorization: &str, proofs: &[&str]) -> Response {
        let mut headers = vec![("authorization", authorization)];
        headers.extend(proofs.iter().map(|p| ("dpop", *p)));
        http(self.port, method, path, &headers)
    }

    /// Connections each worker accepted so far (Envoy's per-worker listener stats).
    fn connections_per_worker(&self) -> Vec<u64> {
        self.envoy.worker_connections(self.port)
    }
}

/// A refusal: 401, the DPoP challenge with `error` and `algs`, and the JSON body's code.
fn assert_refused(r: &Response, error: &str, want_code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (401, want_code),
        "{}",
        r.body
    );
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains(&format!("error=\"{error}\"")),
        "{want_code}: {challenge}"
    );
    assert!(
        challenge.contains("algs=\"") && challenge.contains("ES256"),
        "{challenge}"
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], error);
    assert!(body["error_description"].is_string());
}

#[test]
fn dpop_bound_tokens_need_a_valid_single_use_proof() {
    let gw = Gateway::start();
    let key = DpopKey::generate();
    let reply =
        gw.km
            .token_client_credentials_dpop("shop-app", "shop-app-secret", "pets:read", &key);
    assert_eq!(reply["token_type"], "DPoP", "{reply}");
    let token = reply["access_token"].as_str().unwrap().to_string();
    // The real key manager bound the token to our key: cnf.jkt is its RFC 7638 thumbprint.
    assert_eq!(
        decode_jwt_claims(&token)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );

    let auth = format!("DPoP {token}");
    let pets = gw.url("/pets/v1/pets");
    let fresh = |method: &str, url: &str| key.proof(method, url, now(), Some(&token));

    // Allowed: the token with a fresh proof, every time with a new one (the second request is a
    // verified-token cache hit on its worker or the first on the other; both check the proof).
    for _ in 0..3 {
        let ok = gw.call("GET", "/pets/v1/pets", &auth, &[&fresh("GET", &pets)]);
        assert_eq!(ok.status, 200, "{}", ok.code());
        let echoed: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
        assert!(
            echoed["headers"]["dpop"].is_null(),
            "the proof is not forwarded"
        );
        assert!(echoed["headers"]["authorization"].is_null());
    }
    // htu normalization: the proof may spell scheme, host and default port differently; the
    // query and fragment are not part of it.
    let spelled = key.proof(
        "GET",
        &pets.replace("http://", "HTTP://"),
        now(),
        Some(&token),
    );
    let ok = gw.call("GET", "/pets/v1/pets?limit=5", &auth, &[&spelled]);
    assert_eq!(ok.status, 200, "{}", ok.code());

    // Refused, one rule each.
    let wrong_method = fresh("POST", &pets);
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&wrong_method]),
        "invalid_dpop_proof",
        "dpop_htm_mismatch",
    );
    let wrong_url = fresh("GET", &gw.url("/pets/v1/other"));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&wrong_url]),
        "invalid_dpop_proof",
        "dpop_htu_mismatch",
    );
    let wrong_port = fresh("GET", &pets.replace(&gw.port.to_string(), "1"));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&wrong_port]),
        "invalid_dpop_proof",
        "dpop_htu_mismatch",
    );
    let wrong_ath = key.proof("GET", &pets, now(), Some("another-access-token"));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&wrong_ath]),
        "invalid_dpop_proof",
        "dpop_ath_mismatch",
    );
    let no_ath = key.proof("GET", &pets, now(), None);
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&no_ath]),
        "invalid_dpop_proof",
        "dpop_claim_missing",
    );
    let stale = key.proof("GET", &pets, now() - 600, Some(&token));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&stale]),
        "invalid_dpop_proof",
        "dpop_proof_expired",
    );
    let future = key.proof("GET", &pets, now() + 120, Some(&token));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&future]),
        "invalid_dpop_proof",
        "dpop_iat_in_future",
    );
    let stranger = DpopKey::generate().proof("GET", &pets, now(), Some(&token));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&stranger]),
        "invalid_token",
        "dpop_key_mismatch",
    );
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[]),
        "invalid_dpop_proof",
        "dpop_proof_missing",
    );
    let (a, b) = (fresh("GET", &pets), fresh("GET", &pets));
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&a, &b]),
        "invalid_dpop_proof",
        "dpop_proof_multiple",
    );
    let bearer = format!("Bearer {token}");
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &bearer, &[&fresh("GET", &pets)]),
        "invalid_token",
        "dpop_bound_token_as_bearer",
    );
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &bearer, &[]),
        "invalid_token",
        "dpop_bound_token_as_bearer",
    );

    // Replay: one proof sent on several connections is allowed once, wherever it lands. Rounds
    // repeat (bounded) until a round's connections reached both workers.
    let mut spread = false;
    for _round in 0..6 {
        let proof = fresh("GET", &pets);
        let before = gw.connections_per_worker();
        let statuses: Vec<(u16, String)> = (0..6)
            .map(|_| {
                let r = gw.call("GET", "/pets/v1/pets", &auth, &[&proof]);
                (r.status, r.code())
            })
            .collect();
        let after = gw.connections_per_worker();
        assert_eq!(
            statuses[0].0, 200,
            "the first use of a proof is allowed: {statuses:?}"
        );
        for (status, code) in &statuses[1..] {
            assert_eq!(
                (*status, code.as_str()),
                (401, "dpop_jti_replayed"),
                "{statuses:?}"
            );
        }
        if (0..2).all(|w| after.get(w) > before.get(w)) {
            spread = true;
            break;
        }
    }
    assert!(
        spread,
        "no round reached both workers: {:?}",
        gw.connections_per_worker()
    );
    // The replay refusal is a DPoP challenge like the others.
    let once = fresh("GET", &pets);
    assert_eq!(gw.call("GET", "/pets/v1/pets", &auth, &[&once]).status, 200);
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&once]),
        "invalid_dpop_proof",
        "dpop_jti_replayed",
    );
    // Scopes still apply to bound tokens (pets:write is not in this token).
    let post = gw.call("POST", "/pets/v1/pets", &auth, &[&fresh("POST", &pets)]);
    assert_eq!(
        (post.status, post.code().as_str()),
        (403, "insufficient_scope")
    );
    // DPoP refusals are counted in keygate_requests under their reason (README "Metrics"),
    // and there is no metric per reason.
    assert_eq!(
        gw.envoy.stat_sum(
            "wasmcustom.keygate_requests.outcome.denied.reason.dpop_bound_token_as_bearer"
        ),
        2,
        "{:?}",
        gw.envoy
            .stats()
            .keys()
            .filter(|k| k.contains("dpop"))
            .collect::<Vec<_>>()
    );
    assert!(gw
        .envoy
        .stats()
        .keys()
        .all(|name| !name.starts_with("wasmcustom.keygate_denied")));
    // Proofs are never logged.
    let log = gw.envoy.log();
    assert!(
        !log.contains(&once[..40]),
        "a DPoP proof reached Envoy's log"
    );
}

#[test]
fn required_dpop_refuses_plain_bearer_tokens_and_takes_bound_ones() {
    let gw = Gateway::start();
    let plain = gw
        .km
        .token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    assert!(decode_jwt_claims(&plain)["cnf"].is_null());
    // The plain token is fine where DPoP is not required...
    let bearer = format!("Bearer {plain}");
    assert_eq!(gw.call("GET", "/pets/v1/pets", &bearer, &[]).status, 200);
    // ...and refused where it is.
    assert_refused(
        &gw.call("GET", "/vault/items", &bearer, &[]),
        "invalid_token",
        "dpop_required",
    );
    // The DPoP scheme with an unbound token is refused anywhere.
    let key = DpopKey::generate();
    let proof = key.proof("GET", &gw.url("/vault/items"), now(), Some(&plain));
    assert_refused(
        &gw.call("GET", "/vault/items", &format!("DPoP {plain}"), &[&proof]),
        "invalid_token",
        "dpop_token_not_bound",
    );
    // A bound token with its proof passes.
    let reply =
        gw.km
            .token_client_credentials_dpop("shop-app", "shop-app-secret", "pets:read", &key);
    let token = reply["access_token"].as_str().unwrap();
    let proof = key.proof("GET", &gw.url("/vault/items"), now(), Some(token));
    let ok = gw.call("GET", "/vault/items", &format!("DPoP {token}"), &[&proof]);
    assert_eq!(ok.status, 200, "{}", ok.code());
    // A forged token under the DPoP scheme keeps its own code, under the DPoP challenge.
    let mut forged = token.to_string();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let proof = key.proof("GET", &gw.url("/vault/items"), now(), Some(&forged));
    let r = gw.call("GET", "/vault/items", &format!("DPoP {forged}"), &[&proof]);
    assert_refused(&r, "invalid_token", "signature_invalid");
}

/// Issue 21, finding 1: a refused request's proof takes no room in the replay store. With one
/// slot of 8 entries, a client id no application has (the real key manager's `orphan-app`) sends
/// 8 valid, fresh proofs with its DPoP-bound token, each refused 403; the good client is allowed
/// afterwards, proof after proof, and its own replay is still refused.
#[test]
fn refused_requests_do_not_fill_the_replay_store() {
    let gw = Gateway::start_with("  dpop_replay_slots: 1\n  dpop_replay_slot_entries: 8");
    let pets = gw.url("/pets/v1/pets");
    let token_of = |client: &str, key: &DpopKey| {
        let secret = format!("{client}-secret");
        let reply = gw
            .km
            .token_client_credentials_dpop(client, &secret, "pets:read", key);
        assert_eq!(reply["token_type"], "DPoP", "{reply}");
        reply["access_token"].as_str().unwrap().to_string()
    };
    let attacker = DpopKey::generate();
    let orphan = token_of("orphan-app", &attacker);
    for i in 0..8 {
        let proof = attacker.proof("GET", &pets, now(), Some(&orphan));
        let r = gw.call("GET", "/pets/v1/pets", &format!("DPoP {orphan}"), &[&proof]);
        assert_eq!((r.status, i), (403, i), "{}", r.body);
    }
    let key = DpopKey::generate();
    let good = token_of("shop-app", &key);
    let auth = format!("DPoP {good}");
    let mut last = String::new();
    for i in 0..4 {
        last = key.proof("GET", &pets, now(), Some(&good));
        let r = gw.call("GET", "/pets/v1/pets", &auth, &[&last]);
        assert_eq!((r.status, i), (200, i), "{} {}", r.code(), r.body);
    }
    assert_refused(
        &gw.call("GET", "/pets/v1/pets", &auth, &[&last]),
        "invalid_dpop_proof",
        "dpop_jti_replayed",
    );
}

#[test]
fn a_proof_for_another_origin_is_refused_whatever_the_host_header() {
    let gw = Gateway::start();
    let key = DpopKey::generate();
    let reply =
        gw.km
            .token_client_credentials_dpop("shop-app", "shop-app-secret", "pets:read", &key);
    let token = reply["access_token"].as_str().unwrap().to_string();
    let auth = format!("DPoP {token}");
    // Made for another company's resource server and sent with its Host: the generated virtual
    // host takes any Host, but the expected htu comes from the configured origin (here the
    // listener's, http://127.0.0.1:PORT), never from the request.
    let other = "rs.other-company.example";
    let foreign = key.proof(
        "GET",
        &format!("http://{other}/pets/v1/pets"),
        now(),
        Some(&token),
    );
    let headers = [
        ("authorization", auth.as_str()),
        ("dpop", foreign.as_str()),
        ("host", other),
    ];
    assert_refused(
        &http(gw.port, "GET", "/pets/v1/pets", &headers),
        "invalid_dpop_proof",
        "dpop_htu_mismatch",
    );
    // A proof naming the gateway's own origin is accepted whatever Host the request carries.
    let own = key.proof("GET", &gw.url("/pets/v1/pets"), now(), Some(&token));
    let headers = [
        ("authorization", auth.as_str()),
        ("dpop", own.as_str()),
        ("host", other),
    ];
    let ok = http(gw.port, "GET", "/pets/v1/pets", &headers);
    assert_eq!(ok.status, 200, "{}", ok.body);
}
