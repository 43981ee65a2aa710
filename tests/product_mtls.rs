//! RFC 8705 certificate-bound access tokens through the built filter in a real Envoy with TLS
//! (docs/mtls.md). The CA, the listener's certificate and two client certificates are made here
//! at test time (rcgen); the listener is the one `keygate generate` writes from `gateway.tls`
//! (it asks for, and does not require, a client certificate). Tokens are ES256, signed here with
//! the committed P-256 test key, and carry `cnf.x5t#S256` = base64url(SHA-256(client cert DER)).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use support::stack::{gateway_and_key_manager, generate, now, Options, AUDIENCE};
use support::{canned, free_port, signers, EchoUpstream, Envoy, TempDir};

/// A client certificate and key (PEM) and the thumbprint a token bound to it carries.
struct Client {
    cert_pem: String,
    key_pem: String,
    x5t: String,
    hex: String,
}

struct Pki {
    ca_pem: String,
    a: Client,
    b: Client,
}

fn client(name: &str, ca: &rcgen::Certificate, ca_key: &KeyPair) -> Client {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    let digest = Sha256::digest(cert.der());
    Client {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        x5t: signers::b64(&digest),
        hex: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A CA, the gateway's certificate for 127.0.0.1 (written to `dir`) and two client certificates.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "keygate test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        a: client("client a", &ca, &ca_key),
        b: client("client b", &ca, &ca_key),
    }
}

struct Gateway {
    envoy: Envoy,
    echo: EchoUpstream,
    port: u16,
    _dir: TempDir,
}

/// `generate` with `gateway.tls` and two APIs: `pets` (default `when_bound`) and `strict`
/// (`mtls_bound_tokens: required`). `trusted` sets `settings.trusted_client_cert_header`;
/// `forward_xfcc` makes Envoy hand an incoming `x-forwarded-client-cert` to the filter even when
/// the filter does not trust it (so the filter's own handling is what is tested).
fn start(dir: TempDir, issuer: &str, trusted: bool, forward_xfcc: bool) -> Gateway {
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let options = Options {
        settings: if trusted {
            "  trusted_client_cert_header: true".to_string()
        } else {
            String::new()
        },
        ..Options::default()
    };
    let head = gateway_and_key_manager(&options, issuer, &format!("{issuer}/jwks"), listen, admin);
    let d = dir.path().display();
    let head = head.replacen(
        &format!("  admin: 127.0.0.1:{admin}\n"),
        &format!(
            "  admin: 127.0.0.1:{admin}\n  tls:\n    cert: {d}/server.pem\n    key: {d}/server.key\n    client_ca: {d}/ca.pem\n"
        ),
        1,
    );
    let declaration = format!(
        r#"{head}apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
  - name: strict
    version: v1
    base_path: /strict/v1
    upstream: http://127.0.0.1:{upstream}
    mtls_bound_tokens: required
    resources:
      - {{method: GET, path: /items, scopes: [pets:read]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
    subscriptions:
      - {{api: pets}}
      - {{api: strict}}
"#,
        upstream = echo.port()
    );
    let out = generate(dir.path(), &declaration);
    let mut config = out.join("envoy.yaml");
    let (valid, output) = Envoy::validate(&config);
    assert!(
        valid,
        "envoy --mode validate refused the TLS listener: {output}"
    );
    if forward_xfcc {
        let mut bootstrap = canned::yaml(&config);
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["forward_client_cert_details"] = json!("ALWAYS_FORWARD_ONLY");
        config = out.join("envoy-forwarding.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
    }
    let envoy = Envoy::start(&config);
    Gateway {
        envoy,
        echo,
        port: listen,
        _dir: dir,
    }
}

fn token(issuer: &str, x5t: Option<&str>) -> String {
    let now = now();
    let mut claims = json!({
        "iss": issuer, "sub": "alice", "aud": AUDIENCE, "client_id": "shop-app",
        "scope": "pets:read", "iat": now, "exp": now + 3600,
    });
    if let Some(x5t) = x5t {
        claims["cnf"] = json!({ "x5t#S256": x5t });
    }
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k-p256"});
    let input = format!(
        "{}.{}",
        signers::b64(header.to_string().as_bytes()),
        signers::b64(claims.to_string().as_bytes())
    );
    let signature = signers::sign("ES256", "p256", input.as_bytes());
    format!("{input}.{}", signers::b64(&signature))
}

/// A GET over TLS (the gateway's certificate checked against the test CA), with the client
/// certificate `cert` if any and the extra `headers`. Returns the status and the reply's `code`.
fn call(
    gateway: &Gateway,
    pki: &Pki,
    path: &str,
    token: &str,
    cert: Option<&Client>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let ca = Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(vec![ca])));
    if let Some(cert) = cert {
        let chain = [Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKey::from_pem(cert.key_pem.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .get(format!("https://127.0.0.1:{}{path}", gateway.port))
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, code)
}

fn jwks_server() -> (canned::Server, String) {
    let jwks = String::from_utf8(signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap();
    let server = canned::Server::start(vec![("/jwks".to_string(), 200, jwks)]);
    let issuer = server.base.clone();
    (server, issuer)
}

#[test]
fn a_bound_token_needs_the_certificate_it_names() {
    let (_jwks, issuer) = jwks_server();
    let dir = TempDir::new("mtls");
    let pki = pki(dir.path());
    let gateway = start(dir, &issuer, false, false);
    let bound = token(&issuer, Some(&pki.a.x5t));
    let plain = token(&issuer, None);
    let pets = "/pets/v1/pets";
    let strict = "/strict/v1/items";

    assert_eq!(
        call(&gateway, &pki, pets, &bound, Some(&pki.a), &[]),
        (200, String::new()),
        "the certificate the token is bound to"
    );
    // The same token again, now a verified-token cache hit: the binding is still checked.
    assert_eq!(
        call(&gateway, &pki, pets, &bound, Some(&pki.b), &[]),
        (401, "client_certificate_mismatch".to_string()),
        "another certificate of the same CA"
    );
    assert_eq!(
        call(&gateway, &pki, pets, &bound, None, &[]),
        (401, "client_certificate_missing".to_string()),
        "no certificate"
    );
    assert_eq!(
        call(&gateway, &pki, pets, &plain, None, &[]),
        (200, String::new()),
        "an unbound token where binding is when_bound"
    );
    assert_eq!(
        call(&gateway, &pki, strict, &plain, Some(&pki.a), &[]),
        (401, "token_not_certificate_bound".to_string()),
        "an unbound token where binding is required"
    );
    assert_eq!(
        call(&gateway, &pki, strict, &bound, Some(&pki.a), &[]),
        (200, String::new()),
        "a bound token with its certificate where binding is required"
    );
    // A malformed thumbprint is refused whatever the certificate.
    let bad = token(&issuer, Some("not-a-thumbprint"));
    assert_eq!(
        call(&gateway, &pki, pets, &bad, Some(&pki.a), &[]),
        (401, "certificate_binding_invalid".to_string())
    );
    let log = gateway.envoy.log();
    assert!(!log.contains(&bound), "the token was logged");
}

#[test]
fn an_untrusted_forwarded_certificate_header_is_ignored_and_removed() {
    let (_jwks, issuer) = jwks_server();
    let dir = TempDir::new("mtls-xfcc-untrusted");
    let pki = pki(dir.path());
    // Envoy passes the header on; the filter, not trusting it, must not use it.
    let gateway = start(dir, &issuer, false, true);
    let bound = token(&issuer, Some(&pki.a.x5t));
    let forged = format!("Hash={};Subject=\"CN=client a\"", pki.a.hex);
    let xfcc = [("x-forwarded-client-cert", forged.as_str())];
    assert_eq!(
        call(&gateway, &pki, "/pets/v1/pets", &bound, None, &xfcc),
        (401, "client_certificate_missing".to_string()),
        "a forged Hash= stands in for no certificate"
    );
    assert_eq!(
        call(&gateway, &pki, "/pets/v1/pets", &bound, Some(&pki.b), &xfcc),
        (401, "client_certificate_mismatch".to_string()),
        "the connection's certificate counts, not the header's"
    );
    let plain = token(&issuer, None);
    assert_eq!(
        call(&gateway, &pki, "/pets/v1/pets", &plain, None, &xfcc),
        (200, String::new())
    );
    let seen = gateway.echo.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-client-cert"), None, "{seen:?}");
}

#[test]
fn a_trusted_front_proxy_names_the_certificate_in_its_header() {
    let (_jwks, issuer) = jwks_server();
    let dir = TempDir::new("mtls-xfcc-trusted");
    let pki = pki(dir.path());
    let gateway = start(dir, &issuer, true, false);
    let bound = token(&issuer, Some(&pki.a.x5t));
    // What a front proxy that ended TLS with client a adds (an earlier hop's element first).
    let forwarded = format!(
        "By=spiffe://edge;Hash={};Subject=\"CN=x, O=y\",By=spiffe://front;Hash={};Subject=\"CN=client a\"",
        "00".repeat(32),
        pki.a.hex
    );
    let xfcc = [("x-forwarded-client-cert", forwarded.as_str())];
    assert_eq!(
        call(&gateway, &pki, "/pets/v1/pets", &bound, None, &xfcc),
        (200, String::new()),
        "the trusted hop's Hash= is the client's certificate"
    );
    let other = format!("Hash={}", pki.b.hex);
    assert_eq!(
        call(
            &gateway,
            &pki,
            "/pets/v1/pets",
            &bound,
            None,
            &[("x-forwarded-client-cert", other.as_str())]
        ),
        (401, "client_certificate_mismatch".to_string())
    );
    // Kept for the upstream: the header came from a trusted hop.
    let plain = token(&issuer, None);
    assert_eq!(
        call(&gateway, &pki, "/pets/v1/pets", &plain, None, &xfcc),
        (200, String::new())
    );
    let seen = gateway.echo.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-client-cert"),
        Some(forwarded.as_str())
    );
    let _ = &gateway.envoy;
}
