//! Preview before applying (docs/console.md, "Preview"): for a key manager's edit (its
//! environments) and removal, a tier's edit and removal, an API's removal, an application's
//! removal and a subscription, the pages (**Preview**, **Remove…**) and the REST API
//! (`?preview=true`) answer who gains or loses which client ID, resource and tier, and change
//! nothing; applying then does what the preview said (a removed key manager's client IDs and a
//! removed API's subscriptions leave their applications, through the directory too). The
//! key-manager form's environments: one checkbox per known environment, **Apply to all
//! environments**, and a refusal naming `environments` when neither is chosen.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::{json, Value};
use support::console::{
    admin_setup, hidden, rest, rest_app, rest_expect, unescape, user_token, Browser, Console,
    ADMIN, DEV, DEV2,
};
use support::{KeyManager, TempDir};

const CLIENT: &str = "application dave-shop: client ID shop-app of key manager demo";
const PETS: &str = "application dave-shop: API pets: GET /pets/v1/pets";
const GOLD: &str = "application dave-shop: API pets: tier gold (100 per minute)";
const GOLD_10: &str = "application dave-shop: API pets: tier gold (10 per minute)";

fn changes(status: u16, body: &str) -> Vec<String> {
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(body).unwrap();
    assert_eq!(answer["preview"], true, "{body}");
    answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

/// Every file the console wrote into `out` (the store aside), to show a preview writes nothing.
fn files(out: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for dir in [out.to_path_buf(), out.join("live")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_file() && !name.starts_with("console.") {
                all.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    all.sort();
    all
}

#[test]
fn console_previews_changes_and_environments() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-preview");
    let out = tmp.join("out");
    let console = Console::start(&km, &out, &[]);
    let c = console.url.clone();
    let mut admin = Browser::sign_in(&console, ADMIN);

    // The environments chooser: Apply to all environments (checked) and the known ones.
    let page = admin.get(&format!("{c}/admin/key-managers/new"));
    assert!(
        page.body.contains(
            "id=\"all_environments\" name=\"all_environments\" value=\"on\" checked> Apply to all environments"
        ),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("name=\"environment\" value=\"production\"> production"),
        "{}",
        page.body
    );
    let well_known = km.well_known_url();
    let review = |admin: &mut Browser, fields: &[(&str, &str)]| {
        let mut all = vec![("name", "demo"), ("well_known_url", well_known.as_str())];
        all.extend_from_slice(fields);
        admin.post(&format!("{c}/admin/key-managers/review"), &all)
    };
    let refused = review(&mut admin, &[]);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("environments") && refused.body.contains("choose at least one"),
        "{}",
        refused.body
    );
    let chosen = review(
        &mut admin,
        &[
            ("environment", "production"),
            ("new_environment", "staging"),
        ],
    );
    assert_eq!(chosen.status, 200, "{}", chosen.body);
    assert!(
        chosen.body.contains("<dd>production, staging</dd>")
            && chosen
                .body
                .contains("name=\"environments\" value=\"production,staging\""),
        "{}",
        chosen.body
    );

    admin_setup(&console, &mut admin, &km, "http://127.0.0.1:9");
    let tier = admin.post(
        &format!("{c}/admin/tiers"),
        &[("name", "gold"), ("requests", "100"), ("per", "minute")],
    );
    assert_eq!(tier.status, 303, "{}", tier.body);
    let carol = user_token(&km, ADMIN);
    let dave = user_token(&km, DEV);
    let (id, app) = rest_app(&console, &dave, "dave-shop");
    rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/client-ids"),
        Some(r#"{"key_manager": "demo", "client_id": "shop-app"}"#),
        200,
    );
    // Subscribing: a preview first (gains), then the change.
    let sub = r#"{"api": "pets", "tier": "gold"}"#;
    let path = format!("{app}/subscriptions?preview=true");
    let (status, body) = rest(&console, &dave, "POST", &path, Some(sub));
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("gains {PETS}")), "{lines:?}");
    assert!(has(&lines, &format!("gains {GOLD}")), "{lines:?}");
    let (_, body) = rest(&console, &dave, "GET", &app, None);
    assert!(!body.contains("\"pets\""), "a preview subscribed: {body}");
    rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/subscriptions"),
        Some(sub),
        200,
    );

    let before = files(&out);
    let km_version = || {
        let (_, body) = rest(&console, &carol, "GET", "/api/admin/key-managers", None);
        serde_json::from_str::<Value>(&body).unwrap()[0]["version"]
            .as_i64()
            .unwrap()
    };
    let v = km_version();

    // REST: a key manager limited to another environment: its client IDs stop working here.
    let edit = json!({"version": v, "environments": ["staging"]}).to_string();
    let (status, body) = rest(
        &console,
        &carol,
        "PUT",
        "/api/admin/key-managers/demo?preview=true",
        Some(&edit),
    );
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("loses {CLIENT}")), "{lines:?}");
    assert!(has(&lines, &format!("loses {PETS}")), "{lines:?}");
    // Removing the key manager: the same losses.
    let path = format!("/api/admin/key-managers/demo?version={v}&preview=true");
    let (status, body) = rest(&console, &carol, "DELETE", &path, None);
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("loses {CLIENT}")), "{lines:?}");
    assert!(has(&lines, &format!("loses {PETS}")), "{lines:?}");
    // A tier's new limit: the subscriptions with it.
    let (_, body) = rest(&console, &carol, "GET", "/api/admin/tiers", None);
    let tv = serde_json::from_str::<Value>(&body).unwrap()[0]["version"]
        .as_i64()
        .unwrap();
    let tier_edit = json!({"version": tv, "requests": 10, "per": "minute"}).to_string();
    let (status, body) = rest(
        &console,
        &carol,
        "PUT",
        "/api/admin/tiers/gold?preview=true",
        Some(&tier_edit),
    );
    let lines = changes(status, &body);
    assert_eq!(
        lines,
        [format!("gains {GOLD_10}"), format!("loses {GOLD}")],
        "{lines:?}"
    );
    // A tier in use cannot go: the compiler's refusal, as applying would answer it.
    let path = format!("/api/admin/tiers/gold?version={tv}&preview=true");
    let body = rest_expect(&console, &carol, "DELETE", &path, None, 422);
    assert!(body.contains("gold"), "{body}");
    // Removing the API: its subscribers lose it.
    let (_, body) = rest(&console, &carol, "GET", "/api/admin/apis", None);
    let av = serde_json::from_str::<Value>(&body).unwrap()[0]["version"]
        .as_i64()
        .unwrap();
    let path = format!("/api/admin/apis/pets?version={av}&preview=true");
    let (status, body) = rest(&console, &carol, "DELETE", &path, None);
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("loses {PETS}")), "{lines:?}");
    assert!(has(&lines, &format!("loses {GOLD}")), "{lines:?}");
    assert!(!has(&lines, &format!("loses {CLIENT}")), "{lines:?}");
    // A developer: removing the application, unsubscribing.
    let (_, body) = rest(&console, &dave, "GET", &app, None);
    let app_version = serde_json::from_str::<Value>(&body).unwrap()["version"]
        .as_i64()
        .unwrap();
    let path = format!("{app}?version={app_version}&preview=true");
    let (status, body) = rest(&console, &dave, "DELETE", &path, None);
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("loses {CLIENT}")), "{lines:?}");
    assert!(has(&lines, &format!("loses {PETS}")), "{lines:?}");
    let path = format!("{app}/subscriptions/pets?preview=true");
    let (status, body) = rest(&console, &dave, "DELETE", &path, None);
    let lines = changes(status, &body);
    assert!(has(&lines, &format!("loses {PETS}")), "{lines:?}");
    assert!(!has(&lines, &format!("loses {CLIENT}")), "{lines:?}");
    // A change without a preview is not applied by mistake: 422 naming `preview`.
    let body = rest_expect(
        &console,
        &dave,
        "POST",
        &format!("{app}/client-ids?preview=true"),
        Some(r#"{"key_manager": "demo", "client_id": "other-app"}"#),
        422,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["field"],
        "preview"
    );
    // Previews keep the rules: a developer previewing an admin change is refused, another
    // developer previewing dave's application finds nothing.
    let path = format!("/api/admin/key-managers/demo?version={v}&preview=true");
    let (status, _) = rest(&console, &dave, "DELETE", &path, None);
    assert_eq!(status, 403);
    let erin = user_token(&km, DEV2);
    let path = format!("{app}?version={app_version}&preview=true");
    assert_eq!(rest(&console, &erin, "DELETE", &path, None).0, 404);

    // Pages: Preview on the key manager's edit form, Remove… on the lists, the tier's Preview.
    let edit_page = admin.get(&format!("{c}/admin/key-managers/demo/edit"));
    assert!(
        edit_page
            .body
            .contains("name=\"all_environments\" value=\"on\" checked> Apply to all environments"),
        "{}",
        edit_page.body
    );
    let v_text = v.to_string();
    let page = admin.post(
        &format!("{c}/admin/key-managers/demo"),
        &[
            ("version", &v_text),
            ("description", "the demo key manager"),
            ("environment", "staging"),
            ("preview", "1"),
        ],
    );
    let text = unescape(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(text.contains(&format!("<li>loses {CLIENT}</li>")), "{text}");
    assert!(
        text.contains("action=\"/admin/key-managers/demo\""),
        "{text}"
    );
    let page = admin.post(
        &format!("{c}/admin/key-managers/demo/remove"),
        &[("version", &v_text), ("preview", "1")],
    );
    let text = unescape(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(text.contains(&format!("<li>loses {PETS}</li>")), "{text}");
    let tiers = admin.get(&format!("{c}/admin/tiers"));
    assert!(tiers.body.contains("id=\"preview-gold\""), "{}", tiers.body);
    let tv_text = tv.to_string();
    let page = admin.post(
        &format!("{c}/admin/tiers/gold"),
        &[
            ("version", &tv_text),
            ("requests", "10"),
            ("per", "minute"),
            ("preview", "1"),
        ],
    );
    let text = unescape(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(
        text.contains(&format!("<li>gains {GOLD_10}</li>")),
        "{text}"
    );
    let apis = admin.get(&format!("{c}/admin/apis"));
    assert!(apis.body.contains("id=\"remove-pets\""), "{}", apis.body);
    let av_text = av.to_string();
    let page = admin.post(
        &format!("{c}/admin/apis/pets/remove"),
        &[("version", &av_text), ("preview", "1")],
    );
    assert!(unescape(&page.body).contains(&format!("<li>loses {GOLD}</li>")));
    let mut dave_page = Browser::sign_in(&console, DEV);
    let app_page = dave_page.get(&format!("{c}/devportal/applications/{id}"));
    let app_version_text = hidden(&app_page.body, "version").unwrap();
    let page = dave_page.post(
        &format!("{c}/devportal/applications/{id}/remove"),
        &[("version", &app_version_text), ("preview", "1")],
    );
    let text = unescape(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(text.contains(&format!("<li>loses {CLIENT}</li>")), "{text}");
    let page = dave_page.post(
        &format!("{c}/devportal/applications/{id}/subscriptions/remove"),
        &[("api", "pets"), ("preview", "1")],
    );
    assert!(unescape(&page.body).contains(&format!("<li>loses {PETS}</li>")));
    // None of the previews changed a file or a version.
    assert_eq!(files(&out), before, "a preview wrote into DIR");
    assert_eq!(km_version(), v);

    // Applying does what the previews said. The tier's new limit, over the page's Apply
    // (the same fields without `preview`):
    let applied = admin.post(
        &format!("{c}/admin/tiers/gold"),
        &[("version", &tv_text), ("requests", "10"), ("per", "minute")],
    );
    assert_eq!(applied.status, 303, "{}", applied.body);
    let notice = unescape(&admin.get(&format!("{c}/admin/tiers")).body);
    assert!(notice.contains(&format!("gains {GOLD_10}")), "{notice}");
    // The environments edit, from the form's checkboxes:
    let applied = admin.post(
        &format!("{c}/admin/key-managers/demo"),
        &[
            ("version", &v_text),
            ("description", "the demo key manager"),
            ("environment", "staging"),
        ],
    );
    assert_eq!(applied.status, 303, "{}", applied.body);
    let edit_page = admin.get(&format!("{c}/admin/key-managers/demo/edit"));
    assert!(
        edit_page
            .body
            .contains("name=\"environment\" value=\"staging\" checked> staging")
            && edit_page
                .body
                .contains("value=\"on\" > Apply to all environments"),
        "{}",
        edit_page.body
    );
    // Removing the key manager takes its client ID out of dave-shop, also in the directory.
    let (_, snapshot) = rest(
        &console,
        &carol,
        "GET",
        "/keygate/directory/v1/snapshot",
        None,
    );
    let since = serde_json::from_str::<Value>(&snapshot).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/admin/key-managers/demo?version={}", km_version());
    rest_expect(&console, &carol, "DELETE", &path, None, 200);
    let (_, body) = rest(&console, &dave, "GET", &app, None);
    let row: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(row["application"]["client_ids"], json!(null), "{body}");
    let body = rest_expect(
        &console,
        &carol,
        "GET",
        &format!("/keygate/directory/v1/changes?since={since}"),
        None,
        200,
    );
    let feed: Value = serde_json::from_str(&body).unwrap();
    let last = feed["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["op"], "upsert", "{body}");
    assert_eq!(last["application"]["name"], "dave-shop", "{body}");
    assert_eq!(last["application"]["client_ids"], json!([]), "{body}");
    // Removing the API takes dave-shop's subscription.
    let (_, body) = rest(&console, &carol, "GET", "/api/admin/apis", None);
    let av = serde_json::from_str::<Value>(&body).unwrap()[0]["version"]
        .as_i64()
        .unwrap();
    let path = format!("/api/admin/apis/pets?version={av}");
    rest_expect(&console, &carol, "DELETE", &path, None, 200);
    let (_, body) = rest(&console, &dave, "GET", &app, None);
    assert!(!body.contains("\"pets\""), "{body}");
}
