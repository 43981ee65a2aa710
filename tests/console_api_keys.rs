//! API keys in the console, HTTP level, with a real Envoy started from what the console wrote:
//! the developer portal (REST and pages) creates a key for an application (`kg_` + 43 base64url
//! characters, shown once, only its SHA-256 kept: in the store, the declaration, the plugin
//! config), lists and revokes it; another developer cannot touch it; export/import carry
//! `api_keys` byte-identically; Envoy accepts the key once subscribed and refuses it once revoked.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::console::{
    admin_setup_with, rest, rest_app, rest_expect, until_status, user_token, Browser,
    GatewayConsole, ADMIN, DEV, DEV2,
};
use support::{http, keygate_bin, EchoUpstream, Envoy, KeyManager, TempDir};

fn run(args: &[&str]) -> String {
    let output = Command::new(keygate_bin()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "keygate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn console_api_keys_create_list_revoke_export() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let tmp = TempDir::new("console-api-keys");
    let GatewayConsole {
        console, listen, ..
    } = GatewayConsole::start(&km, &tmp.join("out"), &[], &[]);
    let mut admin = Browser::sign_in(&console, ADMIN);
    admin_setup_with(
        &console,
        &mut admin,
        &km,
        &format!("http://127.0.0.1:{}", echo.port()),
        true,
    );
    let envoy = Envoy::start(&console.out.join("envoy.yaml"));

    let dave = user_token(&km, DEV);
    let erin = user_token(&km, DEV2);
    let (id, app) = rest_app(&console, &dave, "dave-keys");

    // Create: the key once, in `keygate api-key new`'s format; its SHA-256 is what is kept.
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/api-keys"),
        Some(r#"{"name": "ci"}"#),
        201,
    );
    let created: Value = serde_json::from_str(&body).unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("kg_") && key.len() == 3 + 43, "{key}");
    assert!(key[3..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["sha256"], sha256_hex(&key));

    let (status, body) = rest(&console, &dave, "GET", &format!("{app}/api-keys"), None);
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["sha256"], sha256_hex(&key));
    assert!(!body.contains(&key), "the list never shows the key: {body}");
    for file in [
        "keygate.yaml",
        "plugin-config.json",
        "live/keygate-filter.yaml",
        "console.sqlite",
    ] {
        let bytes = std::fs::read(console.out.join(file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&key), "{file} holds the key");
        if file != "console.sqlite" {
            assert!(text.contains(&sha256_hex(&key)), "{file} lacks the hash");
        }
    }

    // A second key with the same name is refused, naming the field; another developer gets 404.
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/api-keys"),
        Some(r#"{"name": "ci"}"#),
        422,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["field"],
        "name"
    );
    for (method, path) in [
        ("POST", format!("{app}/api-keys")),
        ("GET", format!("{app}/api-keys")),
        ("DELETE", format!("{app}/api-keys/ci")),
    ] {
        let (status, body) = rest(&console, &erin, method, &path, Some("{}"));
        assert_eq!(status, 404, "{method} {path}: {body}");
    }

    // Envoy: the key of an application without a subscription is 403; subscribed, 200.
    let call = || http(listen, "GET", "/pets/v1/toys", &[("apikey", &key)]).status;
    until_status(&call, 403, &[401, 403], Instant::now());
    rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/subscriptions"),
        Some(r#"{"api": "pets"}"#),
        200,
    );
    until_status(&call, 200, &[403, 200], Instant::now());

    // The page: + API Key shows the key once, the next view does not.
    let mut page = Browser::sign_in(&console, DEV);
    let c = &console.url;
    page.get(&format!("{c}/devportal/applications/{id}"));
    let made = page.post(
        &format!("{c}/devportal/applications/{id}/api-keys"),
        &[("name", "web"), ("expires", "2099-01-01T00:00:00Z")],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    let shown = page.get(&format!("{c}/devportal/applications/{id}"));
    let web_key = shown
        .body
        .split("id=\"api-key-value\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new key on the page")
        .to_string();
    assert!(web_key.starts_with("kg_"), "{web_key}");
    let again = page.get(&format!("{c}/devportal/applications/{id}"));
    assert!(!again.body.contains(&web_key), "the key is shown once only");
    assert!(again.body.contains(&sha256_hex(&web_key)));
    assert!(again.body.contains("revoke-web"));

    // Export carries api_keys; import into another store, export again: the same bytes.
    let db = console.out.join("console.sqlite");
    let first = run(&["console", "export", "--db", db.to_str().unwrap()]);
    assert!(
        first.contains("api_keys:") && first.contains(&sha256_hex(&key)),
        "{first}"
    );
    assert!(first.contains("2099-01-01T00:00:00Z"), "{first}");
    assert!(!first.contains(&key) && !first.contains(&web_key));
    let file = tmp.join("exported.yaml");
    std::fs::write(&file, &first).unwrap();
    let other = tmp.join("other.sqlite");
    run(&[
        "console",
        "import",
        "--db",
        other.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        run(&["console", "export", "--db", other.to_str().unwrap()]),
        first
    );

    // Revoke: gone from the list, refused by Envoy within 5 s.
    rest_expect(
        &console,
        &dave,
        "DELETE",
        &format!("{app}/api-keys/ci"),
        None,
        200,
    );
    let (_, body) = rest(&console, &dave, "GET", &format!("{app}/api-keys"), None);
    assert!(
        !body.contains("\"ci\"") && body.contains("\"web\""),
        "{body}"
    );
    until_status(&call, 401, &[200, 401], Instant::now());
    let (status, _) = rest(
        &console,
        &dave,
        "DELETE",
        &format!("{app}/api-keys/ci"),
        None,
    );
    assert_eq!(status, 404);
    drop(envoy);
}
