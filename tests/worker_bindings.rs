//! Certificate-bound tokens (RFC 8705) and backend JWTs through the worker on the fake host:
//! the binding is checked per request (cache hits included, JWTs and introspection answers), the
//! forwarded-certificate header counts only when trusted, and a backend JWT is signed once per
//! cached authorization, verifies with the published key and never outlives its lifetime.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use keygate::decision::BackendSigner;
use keygate::introspection::Secrets;
use keygate::jose::sign::{public_jwk, EcSigningKey};
use keygate::jose::{verify, KeySet, UntrustedToken, Validation};
use keygate::worker::{FakeHost, RequestAction, Worker};
use serde_json::{json, Value};

use support::policies::{compile, config, key_manager, warmed, NOW_MS};
use support::signers::{self, NOW};

const CERT_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const CERT_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn x5t(hex: &str) -> String {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    signers::b64(&bytes)
}

fn jwks() -> Vec<u8> {
    signers::jwks(&[signers::public_jwk("p256", "k1")])
}

fn token(cnf: Option<Value>, exp: u64) -> String {
    let mut claims = json!({"iss": "https://idp.example", "aud": "api://pets", "sub": "alice",
        "client_id": "app-1", "scope": "pets:read", "iat": NOW as u64, "exp": exp});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    let header = json!({"alg": "ES256", "kid": "k1"});
    let input = format!(
        "{}.{}",
        signers::b64(header.to_string().as_bytes()),
        signers::b64(claims.to_string().as_bytes())
    );
    format!(
        "{input}.{}",
        signers::b64(&signers::sign("ES256", "p256", input.as_bytes()))
    )
}

fn headers(token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/pets/items".to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
    ];
    for (name, value) in extra {
        headers.push((name.to_string(), value.to_string()));
    }
    headers
}

fn outcome(host: &FakeHost, stream: u32) -> (u32, String) {
    match host.reply_of(stream) {
        Some(sent) => (sent.status, sent.code().unwrap_or_default()),
        None => (200, String::new()),
    }
}

fn send(
    worker: &mut Worker,
    host: &mut FakeHost,
    stream: u32,
    token: &str,
    cert: Option<&str>,
    extra: &[(&str, &str)],
) -> (u32, String) {
    host.peer_certificate = cert.map(str::to_string);
    worker.on_request(host, stream, &headers(token, extra));
    host.run_wakeup(worker);
    outcome(host, stream)
}

#[test]
fn a_cached_jwt_is_checked_against_each_requests_certificate() {
    let (mut w, mut host) = warmed(compile(&config(json!({}))), &jwks());
    let bound = token(Some(json!({"x5t#S256": x5t(CERT_A)})), NOW as u64 + 600);
    let ok = (200, String::new());
    assert_eq!(send(&mut w, &mut host, 1, &bound, Some(CERT_A), &[]), ok);
    let mismatch = (401, "client_certificate_mismatch".to_string());
    assert_eq!(
        send(&mut w, &mut host, 2, &bound, Some(CERT_B), &[]),
        mismatch
    );
    let missing = (401, "client_certificate_missing".to_string());
    assert_eq!(send(&mut w, &mut host, 3, &bound, None, &[]), missing);
    assert_eq!(send(&mut w, &mut host, 4, &bound, Some(CERT_A), &[]), ok);
    // Upper-case hex from the host is the same certificate.
    let upper = CERT_A.to_uppercase();
    assert_eq!(send(&mut w, &mut host, 5, &bound, Some(&upper), &[]), ok);
}

#[test]
fn the_forwarded_header_counts_only_when_trusted() {
    let bound = token(Some(json!({"x5t#S256": x5t(CERT_A)})), NOW as u64 + 600);
    let xfcc = format!("By=spiffe://front;Hash={CERT_A};Subject=\"CN=a\"");
    let extra = [("x-forwarded-client-cert", xfcc.as_str())];

    let (mut w, mut host) = warmed(compile(&config(json!({}))), &jwks());
    let missing = (401, "client_certificate_missing".to_string());
    assert_eq!(send(&mut w, &mut host, 1, &bound, None, &extra), missing);
    let removed = &host.stream(1).unwrap().removed_headers;
    assert!(
        removed.iter().any(|h| h == "x-forwarded-client-cert"),
        "{removed:?}"
    );

    let trusted = config(json!({"trusted_client_cert_header": true}));
    let (mut w, mut host) = warmed(compile(&trusted), &jwks());
    assert_eq!(
        send(&mut w, &mut host, 1, &bound, None, &extra),
        (200, String::new())
    );
    let removed = &host.stream(1).unwrap().removed_headers;
    assert!(!removed.iter().any(|h| h == "x-forwarded-client-cert"));
    // The header's certificate wins over the connection's (the front proxy's own).
    assert_eq!(
        send(&mut w, &mut host, 2, &bound, Some(CERT_B), &extra),
        (200, String::new())
    );
}

#[test]
fn an_unbound_token_is_refused_only_where_binding_is_required() {
    let mut cfg = config(json!({}));
    cfg["apis"][0]["mtls_bound_tokens"] = json!("required");
    let (mut w, mut host) = warmed(compile(&cfg), &jwks());
    let plain = token(None, NOW as u64 + 600);
    let unbound = (401, "token_not_certificate_bound".to_string());
    assert_eq!(
        send(&mut w, &mut host, 1, &plain, Some(CERT_A), &[]),
        unbound
    );
    let (mut w, mut host) = warmed(compile(&config(json!({}))), &jwks());
    assert_eq!(
        send(&mut w, &mut host, 1, &plain, None, &[]),
        (200, String::new())
    );
}

#[test]
fn an_introspection_answer_bound_to_a_certificate_is_checked_per_request() {
    let mut km = key_manager("idp");
    km["introspection"] = json!({"endpoint": "https://idp.example/introspect",
        "cluster": "intro_idp", "authority": "idp.example", "path": "/introspect",
        "client_id": "gateway", "client_secret_env": "IDP_SECRET"});
    let mut cfg = config(json!({}));
    cfg["key_managers"] = json!([km]);
    let policy = compile(&cfg);
    let secrets = Secrets::from_env(&policy, |_| Some("s".to_string())).unwrap();
    let mut w = Worker::new(policy, 7).with_secrets(secrets);
    let mut host = FakeHost::new(NOW_MS);
    let opaque = "Lx8wOE7k1Ps0qHUdzy2Gf3CGqfoB6Nzm4cJmF9Mr2hx";
    host.peer_certificate = Some(CERT_A.to_string());
    assert_eq!(
        w.on_request(&mut host, 1, &headers(opaque, &[])),
        RequestAction::Pause
    );
    host.run_wakeup(&mut w);
    let call = host
        .dispatched
        .iter()
        .rfind(|d| d.method == "POST")
        .unwrap()
        .token;
    let answer = json!({"active": true, "client_id": "app-1", "scope": "pets:read",
        "iss": "https://idp.example", "aud": "api://pets", "exp": NOW as u64 + 600,
        "token_type": "Bearer", "cnf": {"x5t#S256": x5t(CERT_A)}});
    host.answer(&mut w, call, 200, answer.to_string().as_bytes());
    assert_eq!(outcome(&host, 1), (200, String::new()));
    assert!(host.stream(1).unwrap().resumed);
    // From the cached answer: the other certificate, then none.
    let mismatch = (401, "client_certificate_mismatch".to_string());
    assert_eq!(
        send(&mut w, &mut host, 2, opaque, Some(CERT_B), &[]),
        mismatch
    );
    let missing = (401, "client_certificate_missing".to_string());
    assert_eq!(send(&mut w, &mut host, 3, opaque, None, &[]), missing);
    assert_eq!(
        send(&mut w, &mut host, 4, opaque, Some(CERT_A), &[]),
        (200, String::new())
    );
}

/// A worker whose API `pets` forwards a backend JWT (`ttl` seconds) signed with `key`.
fn backend_worker(key: &EcSigningKey, ttl: u64) -> (Worker, FakeHost) {
    let mut cfg = config(json!({}));
    cfg["apis"][0]["backend_jwt"] = json!({"ttl_seconds": ttl});
    cfg["backend_jwt"] = json!({"issuer": "https://gw.example",
        "keys": [{"env": "GW_KEY", "x": key.x, "y": key.y}]});
    let policy = compile(&cfg);
    let private = key.private_jwk();
    let signer =
        BackendSigner::from_env(&policy, |name| (name == "GW_KEY").then(|| private.clone()))
            .unwrap();
    let (w, host) = warmed(policy, &jwks());
    (w.with_backend_signer(signer), host)
}

fn forwarded_jwt(host: &FakeHost, stream: u32) -> String {
    let log = host.stream(stream).unwrap();
    log.set_headers
        .iter()
        .find(|(n, _)| n == "x-jwt-assertion")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no backend JWT: {log:?}"))
}

#[test]
fn a_backend_jwt_is_signed_once_per_cached_authorization() {
    let key = EcSigningKey::from_scalar(&[5u8; 32]).unwrap();
    let (mut w, mut host) = backend_worker(&key, 60);
    let access = token(None, NOW as u64 + 3600);
    let forged = [("x-jwt-assertion", "forged")];
    assert_eq!(
        send(&mut w, &mut host, 1, &access, None, &forged),
        (200, String::new())
    );
    let removed = &host.stream(1).unwrap().removed_headers;
    assert!(
        removed.iter().any(|h| h == "x-jwt-assertion"),
        "{removed:?}"
    );
    let first = forwarded_jwt(&host, 1);

    let jwks = json!({"keys": [public_jwk(&key.x, &key.y)]}).to_string();
    let set = KeySet::from_json(jwks.as_bytes()).unwrap();
    let validation = Validation {
        issuer: Some("https://gw.example".into()),
        audiences: vec!["pets".into()],
        ..Validation::default()
    };
    let parsed = UntrustedToken::parse(&first).unwrap();
    let verified = verify(&parsed, &set, &validation, NOW).unwrap();
    assert_eq!(verified.claims["exp"], json!(NOW as u64 + 60));
    assert_eq!(verified.claims["application"], "shop");
    assert_eq!(verified.claims["client_id"], "app-1");
    assert_eq!(verified.claims["sub"], "alice");

    // A cache hit within half the lifetime forwards the same JWT, signed nothing new.
    host.now_ms = NOW_MS + 29_000;
    assert_eq!(
        send(&mut w, &mut host, 2, &access, None, &[]),
        (200, String::new())
    );
    assert_eq!(forwarded_jwt(&host, 2), first);
    // Past half of it, a fresh one.
    host.now_ms = NOW_MS + 31_000;
    assert_eq!(
        send(&mut w, &mut host, 3, &access, None, &[]),
        (200, String::new())
    );
    let second = forwarded_jwt(&host, 3);
    assert_ne!(second, first);
    let claims = keygate::jose::UntrustedToken::parse(&second).unwrap();
    let claims = verify(&claims, &set, &validation, NOW + 31.0)
        .unwrap()
        .claims;
    assert_eq!(claims["iat"], json!(NOW as u64 + 31));
    assert_eq!(claims["exp"], json!(NOW as u64 + 91));
}

#[test]
fn a_missing_signing_key_refuses_the_configuration() {
    let key = EcSigningKey::from_scalar(&[5u8; 32]).unwrap();
    let other = EcSigningKey::from_scalar(&[6u8; 32]).unwrap();
    let mut cfg = config(json!({}));
    cfg["apis"][0]["backend_jwt"] = json!({});
    cfg["backend_jwt"] =
        json!({"issuer": "gw", "keys": [{"env": "GW_KEY", "x": key.x, "y": key.y}]});
    let policy = compile(&cfg);
    let unset = BackendSigner::from_env(&policy, |_| None).unwrap_err();
    assert!(
        unset.to_string().contains("backend_jwt.keys[0].env"),
        "{unset}"
    );
    let wrong = other.private_jwk();
    let err = BackendSigner::from_env(&policy, |_| Some(wrong.clone())).unwrap_err();
    assert!(err.to_string().contains("not the key of x and y"), "{err}");
    assert!(!err.to_string().contains(&wrong));
    // And an API that wants a backend JWT without gateway keys does not compile.
    cfg.as_object_mut().unwrap().remove("backend_jwt");
    let refused = keygate::policy::Policy::from_json(cfg.to_string().as_bytes()).unwrap_err();
    assert!(refused.to_string().contains("backend_jwt"), "{refused}");
}

/// docs/mtls.md and docs/plugin-config.md list the reason codes the code gives, and
/// docs/backend-jwt.md the defaults and the JWKS path the code uses.
#[test]
fn the_documented_codes_and_defaults_are_the_codes_and_defaults() {
    use keygate::decision::CertError;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |page: &str| std::fs::read_to_string(root.join("docs").join(page)).unwrap();
    let (mtls, reasons) = (read("mtls.md"), read("plugin-config.md"));
    for error in [
        CertError::Missing,
        CertError::Mismatch,
        CertError::Unbound,
        CertError::Invalid,
    ] {
        let code = format!("`{}`", error.code());
        assert!(mtls.contains(&code), "docs/mtls.md lacks {code}");
        let row = format!("| {code} | 401 | `invalid_token` |");
        assert!(reasons.contains(&row), "docs/plugin-config.md lacks {row}");
    }
    let unavailable = keygate::decision::Denial::BackendJwtUnavailable;
    let row = format!("| `{}` | {} |", unavailable.code(), unavailable.status());
    assert!(reasons.contains(&row), "docs/plugin-config.md lacks {row}");

    let backend = read("backend-jwt.md");
    let defaults = keygate::config::BackendJwtConfig::default();
    let header = format!("| `apis[].backend_jwt.header` | `{}` |", defaults.header);
    let ttl = format!(
        "| `apis[].backend_jwt.ttl_seconds` | `{}` |",
        defaults.ttl_seconds
    );
    for row in [header, ttl] {
        assert!(backend.contains(&row), "docs/backend-jwt.md lacks {row}");
    }
    let path = keygate::cli::render::envoy::BACKEND_JWKS_PATH;
    assert!(backend.contains(&format!("**`{path}`**")), "{path}");
    let settings = keygate::config::Settings::default();
    assert!(!settings.trusted_client_cert_header);
    assert!(mtls.contains("| `settings.trusted_client_cert_header` | `false` |"));
    assert!(mtls.contains("| `apis[].mtls_bound_tokens` | `when_bound` |"));
}

#[test]
fn the_connection_certificate_is_read_only_for_a_bound_token() {
    let (mut w, mut host) = warmed(compile(&config(json!({}))), &jwks());
    let plain = token(None, NOW as u64 + 600);
    let ok = (200, String::new());
    // An unbound token: not read when first seen (parsed and verified), nor on a cache hit.
    assert_eq!(send(&mut w, &mut host, 1, &plain, Some(CERT_A), &[]), ok);
    assert_eq!(host.peer_certificate_reads.get(), 0);
    assert_eq!(send(&mut w, &mut host, 2, &plain, Some(CERT_A), &[]), ok);
    assert_eq!(host.peer_certificate_reads.get(), 0);
    // A bound token: read when first seen and on every hit (the binding is per request).
    let bound = token(Some(json!({"x5t#S256": x5t(CERT_A)})), NOW as u64 + 600);
    assert_eq!(send(&mut w, &mut host, 3, &bound, Some(CERT_A), &[]), ok);
    assert_eq!(host.peer_certificate_reads.get(), 1);
    assert_eq!(send(&mut w, &mut host, 4, &bound, Some(CERT_A), &[]), ok);
    assert_eq!(host.peer_certificate_reads.get(), 2);
    let mismatch = (401, "client_certificate_mismatch".to_string());
    assert_eq!(
        send(&mut w, &mut host, 5, &bound, Some(CERT_B), &[]),
        mismatch
    );
    // Where the API requires bound tokens, an unbound hit is refused without reading it.
    let mut cfg = config(json!({}));
    cfg["apis"][0]["mtls_bound_tokens"] = json!("required");
    let (mut w, mut host) = warmed(compile(&cfg), &jwks());
    let unbound = (401, "token_not_certificate_bound".to_string());
    assert_eq!(
        send(&mut w, &mut host, 1, &plain, Some(CERT_A), &[]),
        unbound
    );
    assert_eq!(
        send(&mut w, &mut host, 2, &plain, Some(CERT_A), &[]),
        unbound
    );
    assert_eq!(host.peer_certificate_reads.get(), 0);
}
