//! The console as the application directory source, end to end: `keygate console
//! --directory-url` writes a declaration with `directory: {url, token_env}`, so the plugin config
//! in DIR carries no applications and a real Envoy started from DIR pulls them from the console's
//! own `/keygate/directory` (with the gateways' bearer token). A developer's REST calls
//! (subscribe, unsubscribe) reach Envoy through the directory alone: 403 -> 200 -> 403, each within
//! 5 s, no other answer in between, and the plugin config in DIR never changes. API keys too: a
//! key created in the console is 200 once subscribed and 401 once revoked, each within 5 s, and a
//! key created while no Envoy runs arrives in the next Envoy's first snapshot.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::console::{
    admin_setup_with, rest_app, rest_expect, user_token, Browser, GatewayConsole, ADMIN, DEV,
};
use support::{free_port, http, EchoUpstream, Envoy, KeyManager, TempDir};

const TOKEN_ENV: &str = "KEYGATE_DIRECTORY_TOKEN";
const TOKEN: &str = "console-directory-test-token";

#[test]
fn console_is_the_directory_source_of_a_real_envoy() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let tmp = TempDir::new("console-directory");
    let port = free_port();
    let directory_url = format!("http://127.0.0.1:{port}/keygate/directory");
    let GatewayConsole {
        console, listen, ..
    } = GatewayConsole::start(
        &km,
        &tmp.join("out"),
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--directory-url",
            &directory_url,
            "--directory-token-env",
            TOKEN_ENV,
        ],
        &[(TOKEN_ENV, TOKEN)],
    );
    let mut admin = Browser::sign_in(&console, ADMIN);
    admin_setup_with(
        &console,
        &mut admin,
        &km,
        &format!("http://127.0.0.1:{}", echo.port()),
        true,
    );

    // The declaration written names the directory; the plugin config has no applications.
    let declaration = std::fs::read_to_string(console.out.join("keygate.yaml")).unwrap();
    assert!(
        declaration.contains(&format!(
            "directory:\n  url: \"{directory_url}\"\n  token_env: \"{TOKEN_ENV}\""
        )),
        "{declaration}"
    );
    let plugin_path = console.out.join("plugin-config.json");
    let plugin_text = std::fs::read_to_string(&plugin_path).unwrap();
    let plugin: Value = serde_json::from_str(&plugin_text).unwrap();
    assert!(
        plugin
            .get("applications")
            .is_none_or(|apps| apps.as_array().is_some_and(Vec::is_empty)),
        "{plugin_text}"
    );
    assert_eq!(plugin["directory"]["token_env"], TOKEN_ENV, "{plugin_text}");
    assert!(
        std::fs::read_to_string(console.out.join("envoy.yaml"))
            .unwrap()
            .contains(&format!("port_value: {port}")),
        "the bootstrap has a cluster for the console's directory"
    );

    let envoy = Envoy::start_with_env(&console.out.join("envoy.yaml"), 2, &[(TOKEN_ENV, TOKEN)]);
    let token = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let bearer = format!("Bearer {token}");
    let call = || {
        http(
            listen,
            "GET",
            "/pets/v1/pets",
            &[("authorization", &bearer)],
        )
        .status
    };
    // Until its first snapshot from the console, Envoy answers 503 directory_unavailable.
    assert!(
        envoy.wait_for_log(": snapshot (", Duration::from_secs(10)),
        "no snapshot from the console's directory:\n{}",
        envoy.log()
    );
    assert_eq!(call(), 403, "shop-app belongs to no application yet");
    assert_eq!(http(listen, "GET", "/pets/v1/health", &[]).status, 200);

    // The developer, over the REST API: an application with shop-app's client ID.
    let dave = user_token(&km, DEV);
    let (_, app) = rest_app(&console, &dave, "dave-shop");
    rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/client-ids"),
        Some(r#"{"key_manager": "demo", "client_id": "shop-app"}"#),
        200,
    );
    assert_eq!(call(), 403, "a client ID without a subscription");
    // An API key made in the console reaches Envoy through the directory: 403 while the
    // application has no subscription, 200 once subscribed (below), 401 once revoked.
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/api-keys"),
        Some(r#"{"name": "ci"}"#),
        201,
    );
    let key = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key_call = || http(listen, "GET", "/pets/v1/toys", &[("apikey", &key)]).status;
    let sent = Instant::now();
    until_status(&key_call, 403, &[401, 403], sent);

    let mut seconds = Vec::new();
    for _ in 0..3 {
        let sent = Instant::now();
        rest_expect(
            &console,
            &dave,
            "POST",
            &format!("{app}/subscriptions"),
            Some(r#"{"api": "pets"}"#),
            200,
        );
        let allowed = until_status(&call, 200, &[403, 200], sent);
        let sent = Instant::now();
        rest_expect(
            &console,
            &dave,
            "DELETE",
            &format!("{app}/subscriptions/pets"),
            None,
            200,
        );
        let refused = until_status(&call, 403, &[403, 200], sent);
        seconds.push((allowed.as_secs_f64(), refused.as_secs_f64()));
    }
    eprintln!("console directory: REST call to enforcement in Envoy (subscribe, unsubscribe) s: {seconds:.2?}");

    // The API key: subscribed, 200 within 5 s; revoked, 401 within 5 s.
    rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/subscriptions"),
        Some(r#"{"api": "pets"}"#),
        200,
    );
    let key_allowed = until_status(&key_call, 200, &[403, 200], Instant::now());
    let sent = Instant::now();
    rest_expect(
        &console,
        &dave,
        "DELETE",
        &format!("{app}/api-keys/ci"),
        None,
        200,
    );
    let key_revoked = until_status(&key_call, 401, &[200, 401], sent);
    // A key created while the application is subscribed: 200 within 5 s of its creation.
    let sent = Instant::now();
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/api-keys"),
        Some(r#"{"name": "ci2"}"#),
        201,
    );
    let key2 = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key2_call = || http(listen, "GET", "/pets/v1/toys", &[("apikey", &key2)]).status;
    let key_created = until_status(&key2_call, 200, &[401, 200], sent);
    eprintln!(
        "console directory: API key subscribed -> 200 in {:.2} s, revoked -> 401 in {:.2} s, \
         created -> 200 in {:.2} s",
        key_allowed.as_secs_f64(),
        key_revoked.as_secs_f64(),
        key_created.as_secs_f64()
    );

    // Only the directory carried the changes: the plugin config in DIR is what it was.
    assert_eq!(
        std::fs::read_to_string(&plugin_path).unwrap(),
        plugin_text,
        "the plugin config changed: applications must come from the directory"
    );
    let fetched = envoy.stat_sum("wasmcustom.keygate_directory_fetches.outcome.changes");
    assert!(
        fetched >= 6,
        "Envoy fetched the changes from the console: {fetched}"
    );
    drop(envoy);

    // Keys travel in the (paged) snapshot too: a key made while no Envoy runs is accepted by
    // the next Envoy from its first snapshot, the revoked one is not.
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/api-keys"),
        Some(r#"{"name": "late"}"#),
        201,
    );
    let late = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let envoy = Envoy::start_with_env(&console.out.join("envoy.yaml"), 2, &[(TOKEN_ENV, TOKEN)]);
    assert!(
        envoy.wait_for_log(": snapshot (", Duration::from_secs(10)),
        "no snapshot from the console's directory:\n{}",
        envoy.log()
    );
    let late_call = || http(listen, "GET", "/pets/v1/toys", &[("apikey", &late)]).status;
    assert_eq!(late_call(), 200, "the key from the snapshot");
    assert_eq!(key_call(), 401, "the revoked key");
    drop(envoy);
}

/// Calls until `want` answers steadily (the next 15 calls, about 0.3 s, answer it too: with two
/// workers, one may answer from its previous directory generation for up to one 200 ms timer
/// tick), within 5 s of `since`; every answer must be one of `allowed` (no failed request while
/// the directory changes). Returns the time from `since` to the first of the steady answers.
fn until_status(call: &dyn Fn() -> u16, want: u16, allowed: &[u16], since: Instant) -> Duration {
    let mut first: Option<Duration> = None;
    let mut streak = 0;
    loop {
        let status = call();
        assert!(allowed.contains(&status), "a failed request: {status}");
        if status == want {
            first.get_or_insert(since.elapsed());
            streak += 1;
            if streak > 15 {
                return first.unwrap();
            }
        } else {
            first = None;
            streak = 0;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "not steadily {want} within 5 s of the REST call"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
