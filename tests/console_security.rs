//! `keygate console`, HTTP level, against the real demo key manager (sign-in through its login
//! form): anonymous browsers get the sign-in page only; a developer never reaches another's
//! application; state changes need the anti-forgery token; developers get 403 on admin routes
//! (pages and REST); a client ID is in one application only; a refused change writes nothing;
//! an expired session is sent to sign in; a stale edit is refused, not lost.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use support::console::{
    admin_setup, create_app, hidden, Browser, Console, ADMIN, CONSOLE_SECRET, DEV, DEV2,
};
use support::{KeyManager, TempDir};

fn files(out: &std::path::Path) -> Vec<(String, String)> {
    [
        "keygate.yaml",
        "live/keygate-filter.yaml",
        "plugin-config.json",
        "envoy.yaml",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read_to_string(out.join(f)).unwrap()))
    .collect()
}

fn bearer(
    console: &Console,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}{path}", console.url);
    let auth = format!("Bearer {token}");
    let mut response = match method {
        "GET" => agent.get(&url).header("authorization", &auth).call(),
        "DELETE" => agent.delete(&url).header("authorization", &auth).call(),
        _ => agent
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.unwrap_or("{}")),
    }
    .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn console_security_rules() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-security");
    let out = tmp.join("out");
    let console = Console::start(&km, &out, &[]);
    let c = &console.url;

    // Anonymous: every page redirects to the sign-in page, which is all that is served.
    let mut anonymous = Browser::default();
    for path in [
        "/",
        "/devportal/applications",
        "/admin/key-managers",
        "/devportal/applications/1",
    ] {
        let reply = anonymous.get(&format!("{c}{path}"));
        assert_eq!(reply.status, 303, "{path}");
        assert_eq!(
            reply.location.as_deref(),
            Some(format!("{c}/signin").as_str()),
            "{path}"
        );
    }
    assert!(anonymous
        .get(&format!("{c}/signin"))
        .body
        .contains("Sign in"));
    let reply = anonymous.post_bare(&format!("{c}/devportal/applications"), &[("name", "x")]);
    assert_eq!(reply.status, 303, "an anonymous POST is sent to sign in");
    // An unknown (or expired and purged) session cookie is anonymous too.
    let mut forged = Browser::default();
    forged.request("GET", &format!("{c}/signin"), None);
    let reply = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        agent
            .get(&format!("{c}/devportal/applications"))
            .header("cookie", "keygate_console=00ff")
            .call()
            .unwrap()
    };
    assert_eq!(reply.status().as_u16(), 303);

    let mut admin = Browser::sign_in(&console, ADMIN);
    admin_setup(&console, &mut admin, &km, "http://127.0.0.1:9");

    let mut dave = Browser::sign_in(&console, DEV);
    let mut erin = Browser::sign_in(&console, DEV2);
    let dave_app = create_app(&console, &mut dave, "dave-shop");

    // Result messages are kept per session, never taken from the URL.
    let page = dave.get(&format!(
        "{c}/devportal/applications?notice=Session+expired%3A+go+to+evil.example"
    ));
    assert!(!page.body.contains("evil.example"), "{}", page.body);

    // A developer calling an admin page: 403.
    for path in [
        "/admin/key-managers",
        "/admin/apis",
        "/admin/tiers",
        "/admin/audit",
    ] {
        assert_eq!(dave.get(&format!("{c}{path}")).status, 403, "{path}");
    }
    let reply = dave.post(
        &format!("{c}/admin/tiers"),
        &[("name", "x"), ("requests", "1"), ("per", "minute")],
    );
    assert_eq!(reply.status, 403);

    // Another developer's application by id: 404 for reading and for changing it.
    assert_eq!(
        erin.get(&format!("{c}/devportal/applications/{dave_app}"))
            .status,
        404
    );
    assert_eq!(
        erin.get(&format!(
            "{c}/devportal/applications/{dave_app}/instructions"
        ))
        .status,
        404
    );
    erin.get(&format!("{c}/devportal/applications"));
    let reply = erin.post(
        &format!("{c}/devportal/applications/{dave_app}/client-ids"),
        &[("key_manager", "demo"), ("client_id", "erins-client")],
    );
    assert_eq!(reply.status, 404);
    assert!(!erin
        .get(&format!("{c}/devportal/applications"))
        .body
        .contains("dave-shop"));

    // A state change without the anti-forgery token (or with another session's) is refused and
    // changes nothing.
    let before = files(&out);
    let reply = dave.post_bare(
        &format!("{c}/devportal/applications/{dave_app}/client-ids"),
        &[("key_manager", "demo"), ("client_id", "shop-app")],
    );
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("anti-forgery"), "{}", reply.body);
    let reply = dave.request(
        "POST",
        &format!("{c}/devportal/applications/{dave_app}/client-ids"),
        Some(&support::console::form_body(&[
            ("csrf", &erin.csrf),
            ("key_manager", "demo"),
            ("client_id", "shop-app"),
        ])),
    );
    assert_eq!(reply.status, 403);
    assert_eq!(files(&out), before);

    // Duplicate client ID: dave adds shop-app, erin's application cannot have it too.
    dave.get(&format!("{c}/devportal/applications/{dave_app}"));
    let reply = dave.post(
        &format!("{c}/devportal/applications/{dave_app}/client-ids"),
        &[("key_manager", "demo"), ("client_id", "shop-app")],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let page = dave.get(&reply.location.unwrap());
    let text = support::console::unescape(&page.body);
    assert!(
        text.contains("Token Endpoint") && text.contains(&format!("{}/token<", km.issuer())),
        "{text}"
    );
    let erin_app = create_app(&console, &mut erin, "erin-shop");
    let reply = erin.post(
        &format!("{c}/devportal/applications/{erin_app}/client-ids"),
        &[("key_manager", "demo"), ("client_id", "shop-app")],
    );
    assert_eq!(reply.status, 422);
    assert!(
        reply
            .body
            .contains("already belongs to another application"),
        "{}",
        reply.body
    );

    // A change the compiler refuses names the field and leaves the output directory untouched.
    let before = files(&out);
    admin.get(&format!("{c}/admin/apis/new"));
    let reply = admin.post(
        &format!("{c}/admin/apis"),
        &[
            ("name", "other"),
            ("base_path", "/pets/v1"),
            ("resources", "GET /x"),
        ],
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("apis[1].base_path"), "{}", reply.body);
    assert_eq!(files(&out), before);
    assert!(!admin
        .get(&format!("{c}/admin/apis"))
        .body
        .contains(">other<"));

    // A stale edit (a second browser still at version 1) is refused, not lost.
    let list = admin.get(&format!("{c}/admin/key-managers"));
    let version = hidden(&list.body, "version").unwrap();
    let mut admin2 = admin.clone();
    let first = admin.post(
        &format!("{c}/admin/key-managers/demo"),
        &[
            ("version", &version),
            ("description", "first"),
            ("all_environments", "on"),
            ("audiences", "https://api.keygate.test"),
        ],
    );
    assert_eq!(first.status, 303, "{}", first.body);
    let second = admin2.post(
        &format!("{c}/admin/key-managers/demo"),
        &[
            ("version", &version),
            ("description", "second"),
            ("all_environments", "on"),
            ("audiences", ""),
        ],
    );
    assert_eq!(second.status, 409);
    assert!(
        second.body.contains("changed by someone else"),
        "{}",
        second.body
    );
    assert!(admin
        .get(&format!("{c}/admin/key-managers"))
        .body
        .contains("first"));

    // REST: bearer tokens of the console's key manager, the same rules.
    let dave_token = km.token_password("keygate-console", CONSOLE_SECRET, DEV.0, DEV.1, "");
    let carol_token = km.token_password("keygate-console", CONSOLE_SECRET, ADMIN.0, ADMIN.1, "");
    assert_eq!(
        bearer(
            &console,
            &dave_token,
            "GET",
            "/api/admin/key-managers",
            None
        )
        .0,
        403
    );
    assert_eq!(
        bearer(
            &console,
            &carol_token,
            "GET",
            "/api/admin/key-managers",
            None
        )
        .0,
        200
    );
    let (status, body) = bearer(
        &console,
        &dave_token,
        "GET",
        "/api/devportal/applications",
        None,
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("dave-shop") && !body.contains("erin-shop"),
        "{body}"
    );
    let (status, _) = bearer(
        &console,
        &dave_token,
        "GET",
        &format!("/api/devportal/applications/{erin_app}"),
        None,
    );
    assert_eq!(status, 404);
    let (status, body) = bearer(
        &console,
        &dave_token,
        "POST",
        &format!("/api/devportal/applications/{erin_app}/subscriptions"),
        Some(r#"{"api": "pets"}"#),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        bearer(
            &console,
            "not.a.token",
            "GET",
            "/api/devportal/applications",
            None
        )
        .0,
        401
    );
    // REST writes: create an application, a duplicate client ID is refused with its field.
    let (status, body) = bearer(
        &console,
        &dave_token,
        "POST",
        "/api/devportal/applications",
        Some(r#"{"name": "dave-cli"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["id"].as_i64().unwrap();
    let (status, body) = bearer(
        &console,
        &dave_token,
        "POST",
        &format!("/api/devportal/applications/{id}/client-ids"),
        Some(r#"{"key_manager": "demo", "client_id": "shop-app"}"#),
    );
    assert_eq!(status, 422, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["field"], "client_id");
    let (status, body) = bearer(
        &console,
        &dave_token,
        "POST",
        &format!("/api/devportal/applications/{id}/client-ids"),
        Some(r#"{"key_manager": "demo", "client_id": "other-app"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = bearer(&console, &dave_token, "GET", "/api/openapi.json", None);
    assert_eq!(status, 200);
    assert!(body.contains("/api/devportal/applications"));
}

#[test]
fn console_expired_session_signs_in_again() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-expiry");
    let console = Console::start(&km, &tmp.join("out"), &["--session-minutes", "0"]);
    let mut browser = Browser::default();
    let (landed, _) = browser.follow(&format!("{}/auth/login", console.url));
    let page = browser.get(&landed);
    let action = page
        .body
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let origin: String = landed.split('/').take(3).collect::<Vec<_>>().join("/");
    let reply = browser.request(
        "POST",
        &format!("{origin}{action}"),
        Some(&support::console::form_body(&[
            ("username", DEV.0),
            ("password", DEV.1),
        ])),
    );
    // The session is created already expired: the first page after the callback is sign-in.
    let (landed, page) = browser.follow(&reply.location.unwrap());
    assert!(landed.ends_with("/signin"), "{landed}");
    assert!(page.body.contains("Sign in"));
}

#[test]
fn console_sign_in_is_bound_to_the_browser() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-login-csrf");
    let console = Console::start(&km, &tmp.join("out"), &[]);
    // An attacker starts a sign-in and hands its authorization URL to a victim's browser, which
    // completes it at the key manager: the console refuses the callback (no state cookie there).
    let mut attacker = Browser::default();
    let started = attacker.get(&format!("{}/auth/login", console.url));
    let authorize = started.location.unwrap();
    let mut victim = Browser::default();
    let (login_url, page) = victim.follow(&authorize);
    let action = page
        .body
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let origin: String = login_url.split('/').take(3).collect::<Vec<_>>().join("/");
    let reply = victim.request(
        "POST",
        &format!("{origin}{action}"),
        Some(&support::console::form_body(&[
            ("username", DEV.0),
            ("password", DEV.1),
        ])),
    );
    let (landed, page) = victim.follow(&reply.location.unwrap());
    assert!(landed.contains("/auth/callback"), "{landed}");
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("not started in this browser"),
        "{}",
        page.body
    );
    assert_eq!(
        victim
            .get(&format!("{}/devportal/applications", console.url))
            .status,
        303,
        "the victim is not signed in"
    );
}

#[test]
fn console_directory_needs_the_gateways_token() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-directory-token");
    let console = Console::start_with_env(
        &km,
        &tmp.join("out"),
        &["--directory-token-env", "CONSOLE_TEST_DIRECTORY_TOKEN"],
        &[("CONSOLE_TEST_DIRECTORY_TOKEN", "s3cret-gateway-token")],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/keygate/directory/v1/snapshot", console.url);
    let status = |auth: Option<&str>| {
        let mut request = agent.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.call().unwrap().status().as_u16()
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some("Bearer wrong")), 401);
    assert_eq!(status(Some("Bearer s3cret-gateway-token")), 200);
}
