//! `keygate discover` against discovery documents shaped like real providers', served on loopback.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use keygate::cli::discover::{self, ResolveError};
use serde_json::Value;
use support::canned::*;

const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Runs `discover` and returns the printed entry (first list item) as JSON.
fn discover_ok(url: &str) -> (Value, String) {
    let out = keygate(&["discover", url]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let list: Value = serde_saphyr::from_str(&text).unwrap();
    (list[0].clone(), text)
}

#[test]
fn imports_each_provider_with_its_preset() {
    let cases = [
        (
            "asgardeo",
            "/t/acme/oauth2/token".to_string(),
            "asgardeo",
            "/t/acme/oauth2/jwks".to_string(),
        ),
        (
            "entra-v1",
            format!("/{TENANT}"),
            "entra-v1",
            "/common/discovery/keys".to_string(),
        ),
        (
            "entra-v2",
            format!("/{TENANT}/v2.0"),
            "entra-v2",
            format!("/{TENANT}/discovery/v2.0/keys"),
        ),
        (
            "keycloak",
            "/realms/shop".to_string(),
            "keycloak",
            "/realms/shop/protocol/openid-connect/certs".to_string(),
        ),
        (
            "okta",
            "/oauth2/default".to_string(),
            "okta",
            "/oauth2/default/v1/keys".to_string(),
        ),
        (
            "auth0",
            String::new(),
            "auth0",
            "/.well-known/jwks.json".to_string(),
        ),
    ];
    for (fixture, prefix, preset, jwks_path) in cases {
        let (server, url) = serve_fixture(fixture, &prefix);
        let (entry, text) = discover_ok(&url);
        assert_eq!(entry["provider"], preset, "{fixture}: {text}");
        assert_eq!(entry["well_known_url"], url.as_str());
        let discovery = &entry["discovery"];
        assert_eq!(
            discovery["jwks_uri"],
            format!("{}{jwks_path}", server.base),
            "{fixture}"
        );
        let issuer = discovery["issuer"].as_str().unwrap();
        assert!(issuer.starts_with(&server.base), "{fixture}: {issuer}");
        assert!(discovery["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&server.base));
        assert!(text.contains(&format!("# suggested preset: {preset}")));
        // No tenant allow-list unless the issuer is a template.
        assert!(entry.get("tenants").is_none(), "{fixture}");
    }
}

#[test]
fn prints_optional_endpoints_and_algorithms_when_present() {
    let (server, url) = serve_fixture("keycloak", "/realms/shop");
    let (entry, _) = discover_ok(&url);
    let d = &entry["discovery"];
    let base = format!("{}/realms/shop/protocol/openid-connect", server.base);
    assert_eq!(
        d["introspection_endpoint"],
        format!("{base}/token/introspect")
    );
    assert_eq!(d["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(d["userinfo_endpoint"], format!("{base}/userinfo"));
    assert!(d["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from("PS256")));
    // Auth0 publishes no introspection endpoint: the key is left out, not printed empty.
    let (_s, url) = serve_fixture("auth0", "");
    let (entry, _) = discover_ok(&url);
    assert!(entry["discovery"].get("introspection_endpoint").is_none());
    assert!(entry["discovery"]["revocation_endpoint"].is_string());
}

#[test]
fn entra_common_tenant_template_is_accepted_with_a_note_and_tenant_list() {
    let (_server, url) = serve_fixture("entra-common", "/common/v2.0");
    let (entry, text) = discover_ok(&url);
    assert_eq!(entry["provider"], "entra-v2");
    assert!(entry["discovery"]["issuer"]
        .as_str()
        .unwrap()
        .ends_with("/{tenantid}/v2.0"));
    assert_eq!(entry["tenants"], Value::Array(vec![]));
    assert!(
        text.contains("# note:") && text.contains("tenantid"),
        "{text}"
    );
}

#[test]
fn issuer_mismatch_is_refused_with_exit_1() {
    // The Keycloak document names realm `shop` but is served under realm `other`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = fixture("keycloak", &base);
    let server = Server::start_with(
        listener,
        vec![(format!("/realms/other{WELL_KNOWN}"), 200, body)],
    );
    let out = keygate(&[
        "discover",
        &format!("{}/realms/other{WELL_KNOWN}", server.base),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("issuer_mismatch") && err.contains("§4.3"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn missing_jwks_uri_is_refused_with_exit_1() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut doc: Value = serde_json::from_str(&fixture("okta", &base)).unwrap();
    doc.as_object_mut().unwrap().remove("jwks_uri");
    let server = Server::start_with(
        listener,
        vec![(format!("/oauth2/default{WELL_KNOWN}"), 200, doc.to_string())],
    );
    let out = keygate(&[
        "discover",
        &format!("{}/oauth2/default{WELL_KNOWN}", server.base),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing_jwks_uri"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_issuer_is_refused_with_exit_1() {
    let server = Server::start(vec![(
        WELL_KNOWN.to_string(),
        200,
        "{\"jwks_uri\":\"http://127.0.0.1/k\"}".into(),
    )]);
    let out = keygate(&["discover", &format!("{}{WELL_KNOWN}", server.base)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing_issuer"));
}

#[test]
fn http_to_a_non_loopback_host_is_refused_before_any_request() {
    // Refused by the transport rule alone: nothing is fetched, so no network is needed.
    let out = keygate(&[
        "discover",
        "http://idp.example.com/.well-known/openid-configuration",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("https_required") && err.contains("--allow-http"),
        "{err}"
    );
}

#[test]
fn non_loopback_http_endpoint_inside_a_loopback_document_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut doc: Value = serde_json::from_str(&fixture("auth0", &base)).unwrap();
    doc["jwks_uri"] = Value::from("http://cdn.example.com/jwks.json");
    let server = Server::start_with(
        listener,
        vec![(WELL_KNOWN.to_string(), 200, doc.to_string())],
    );
    let url = format!("{}{WELL_KNOWN}", server.base);
    match discover::resolve(&url, false) {
        Err(ResolveError::Refused(err)) => assert_eq!(err.code(), "https_required"),
        other => panic!("expected refusal, got {other:?}"),
    }
    // The operator can accept it explicitly.
    let checked = discover::resolve(&url, true).unwrap();
    assert_eq!(checked.jwks_uri.host, "cdn.example.com");
}

#[test]
fn url_without_the_well_known_suffix_is_refused() {
    let out = keygate(&["discover", "https://idp.example.com/oauth2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not_well_known_url"));
}

#[test]
fn http_errors_and_unreachable_hosts_exit_2() {
    let server = Server::start(vec![]);
    let out = keygate(&["discover", &format!("{}{WELL_KNOWN}", server.base)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));

    let redirect = Server::start(vec![(WELL_KNOWN.to_string(), 302, String::new())]);
    let out = keygate(&["discover", &format!("{}{WELL_KNOWN}", redirect.base)]);
    assert_eq!(out.status.code(), Some(2), "redirects are not followed");

    let not_json = Server::start(vec![(WELL_KNOWN.to_string(), 200, "<html>".into())]);
    let out = keygate(&["discover", &format!("{}{WELL_KNOWN}", not_json.base)]);
    assert_eq!(out.status.code(), Some(2));

    // A port nobody listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = keygate(&["discover", &format!("http://127.0.0.1:{port}{WELL_KNOWN}")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    let out = keygate(&["discover"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn points_at_the_introspection_endpoint_for_opaque_tokens() {
    let (server, url) = serve_fixture("keycloak", "/realms/shop");
    let (_, text) = discover_ok(&url);
    let endpoint = format!(
        "{}/realms/shop/protocol/openid-connect/token/introspect",
        server.base
    );
    assert!(
        text.contains(&format!("# introspection_endpoint: {endpoint}\n")),
        "{text}"
    );
    assert!(
        text.contains(
            "introspection: {client_id: <gateway client id>, client_secret_env: <VARIABLE>}"
        ),
        "{text}"
    );
    let (_s, url) = serve_fixture("auth0", "");
    let (_, text) = discover_ok(&url);
    assert!(!text.contains("introspection"), "{text}");
}

#[test]
fn warns_that_the_suggested_entry_has_no_audiences() {
    // README "Security rules": discover warns, naming the key manager, when `audiences` is
    // omitted (it cannot know the API's identifier, so its entry never has one).
    for (fixture, prefix) in [
        ("keycloak", "/realms/shop"),
        ("auth0", ""),
        ("asgardeo", "/t/acme/oauth2/token"),
    ] {
        let (_server, url) = serve_fixture(fixture, prefix);
        let (entry, text) = discover_ok(&url);
        let name = entry["name"].as_str().unwrap();
        let warning = format!(
            "# warning: key manager {name}: add `audiences: [<this API's identifier>]`; without \
             it a token minted for any other resource server of this key manager is accepted\n"
        );
        assert!(text.contains(&warning), "{fixture}: {text}");
        assert_eq!(text.matches("# warning:").count(), 1, "{fixture}: {text}");
        assert!(entry.get("audiences").is_none(), "{fixture}: {entry}");
    }
}

#[test]
fn the_introspection_endpoint_falls_back_to_rfc8414_metadata_of_the_same_issuer() {
    let same = |issuer: &str| {
        serde_json::json!({"issuer": issuer, "introspection_endpoint": format!("{issuer}/introspect")})
            .to_string()
    };
    let (_server, issuer) = rfc8414_server(Some(&same));
    let (entry, text) = discover_ok(&format!("{issuer}{WELL_KNOWN}"));
    assert_eq!(
        entry["discovery"]["introspection_endpoint"],
        format!("{issuer}/introspect")
    );
    assert!(text.contains("# introspection_endpoint:"), "{text}");

    // Metadata that names another issuer is not trusted; no metadata changes nothing.
    let other = |_: &str| {
        serde_json::json!({"issuer": "https://evil.example",
            "introspection_endpoint": "https://evil.example/introspect"})
        .to_string()
    };
    for metadata in [Some(&other as &dyn Fn(&str) -> String), None] {
        let (_server, issuer) = rfc8414_server(metadata);
        let (entry, text) = discover_ok(&format!("{issuer}{WELL_KNOWN}"));
        assert!(
            entry["discovery"].get("introspection_endpoint").is_none(),
            "{text}"
        );
        assert!(!text.contains("evil.example"), "{text}");
    }
}
