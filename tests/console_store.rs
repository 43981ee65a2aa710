//! The console's store: export → import → export gives the same bytes and `generate` accepts the
//! export; a restart keeps everything; two concurrent edits of one row: one wins, the other is
//! refused (409), nothing is lost silently; the application directory protocol (snapshot, ETag
//! and 304, changes since a version, 410 for an unknown one).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::console::{admin_setup, create_app, hidden, Browser, Console, ADMIN, DEV};
use support::{keygate_bin, KeyManager, TempDir};

fn run(args: &[&str]) -> String {
    let output = Command::new(keygate_bin()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "keygate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[test]
fn console_store_round_trip_restart_concurrency_directory() {
    let km = KeyManager::start();
    let tmp = TempDir::new("console-store");
    let out = tmp.join("out");
    let mut console = Console::start(&km, &out, &[]);
    let c = console.url.clone();
    let mut admin = Browser::sign_in(&console, ADMIN);
    admin_setup(&console, &mut admin, &km, "http://127.0.0.1:9");
    let tier = admin.post(
        &format!("{c}/admin/tiers"),
        &[("name", "gold"), ("requests", "100"), ("per", "minute")],
    );
    assert_eq!(tier.status, 303, "{}", tier.body);
    let mut dave = Browser::sign_in(&console, DEV);
    let app = create_app(&console, &mut dave, "dave-shop");
    dave.get(&format!("{c}/devportal/applications/{app}"));
    let added = dave.post(
        &format!("{c}/devportal/applications/{app}/client-ids"),
        &[("key_manager", "demo"), ("client_id", "shop-app")],
    );
    assert_eq!(added.status, 303, "{}", added.body);

    // The directory: snapshot with ETag; 304 when unchanged; changes since; 410 when unknown.
    let dir = format!("{c}/keygate/directory/v1");
    let (status, etag, snapshot) = get_json(&format!("{dir}/snapshot"), &[]);
    assert_eq!(status, 200);
    let v1 = snapshot["version"].as_str().unwrap().to_string();
    assert_eq!(etag.as_deref(), Some(format!("\"{v1}\"").as_str()));
    assert_eq!(snapshot["applications"][0]["name"], "dave-shop");
    assert_eq!(
        snapshot["applications"][0]["client_ids"][0]["client_id"],
        "shop-app"
    );
    let etag = etag.unwrap();
    assert_eq!(
        get_json(&format!("{dir}/snapshot"), &[("if-none-match", &etag)]).0,
        304
    );
    assert_eq!(get_json(&format!("{dir}/changes?since={v1}"), &[]).0, 304);
    dave.get(&format!("{c}/devportal/applications/{app}/subscribe"));
    let sub = dave.post(
        &format!("{c}/devportal/applications/{app}/subscriptions"),
        &[("api", "pets"), ("tier", "gold")],
    );
    assert_eq!(sub.status, 303, "{}", sub.body);
    let (status, _, changes) = get_json(&format!("{dir}/changes?since={v1}"), &[]);
    assert_eq!(status, 200);
    assert_ne!(changes["version"].as_str().unwrap(), v1);
    assert_eq!(changes["changes"][0]["op"], "upsert");
    assert_eq!(
        changes["changes"][0]["application"]["subscriptions"][0],
        serde_json::json!({"api": "pets", "state": "active", "tier": "gold"})
    );
    assert_eq!(
        get_json(&format!("{dir}/changes?since=0123456789ab.1"), &[]).0,
        410
    );
    assert_eq!(get_json(&format!("{dir}/changes?since=oops"), &[]).0, 400);

    // The audit log says who gained access; a preview shows it before applying and changes
    // nothing.
    let audit = support::console::unescape(&admin.get(&format!("{c}/admin/audit")).body);
    assert!(
        audit.contains("gains application dave-shop: API pets: GET /pets/v1/pets"),
        "{audit}"
    );
    let list = admin.get(&format!("{c}/admin/apis"));
    let version = hidden(&list.body, "version").unwrap();
    let live = std::fs::read(out.join("live/keygate-filter.yaml")).unwrap();
    let preview = admin.post(
        &format!("{c}/admin/apis"),
        &[
            ("version", &version),
            ("name", "pets"),
            ("base_path", "/pets/v1"),
            ("upstream", "http://127.0.0.1:9"),
            (
                "resources",
                "GET /pets/{id}; scopes=pets:read\nGET /health; public",
            ),
            ("preview", "1"),
        ],
    );
    let text = support::console::unescape(&preview.body);
    assert_eq!(preview.status, 200, "{text}");
    assert!(
        text.contains("gains application dave-shop: API pets: GET /pets/v1/pets/{id}"),
        "{text}"
    );
    assert!(
        text.contains("loses application dave-shop: API pets: GET /pets/v1/pets<"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(out.join("live/keygate-filter.yaml")).unwrap(),
        live
    );

    // Two browsers save the same API from the same version at once: one wins, one gets 409.
    let threads: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|label| {
            let mut browser = admin.clone();
            let url = format!("{c}/admin/apis");
            let version = version.clone();
            std::thread::spawn(move || {
                let resources = format!("GET /pets; scopes=pets:read\nGET /{label}; public");
                browser
                    .post(
                        &url,
                        &[
                            ("version", &version),
                            ("name", "pets"),
                            ("base_path", "/pets/v1"),
                            ("upstream", "http://127.0.0.1:9"),
                            ("resources", &resources),
                        ],
                    )
                    .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 409]);

    // Export → import → export: the same bytes; generate accepts the export.
    let db = out.join("console.sqlite");
    let db = db.to_str().unwrap();
    let first = run(&["console", "export", "--db", db]);
    assert!(
        first.contains("client_id: shop-app") && first.contains("tier: gold"),
        "{first}"
    );
    let file = tmp.join("exported.yaml");
    std::fs::write(&file, &first).unwrap();
    let other = tmp.join("other.sqlite");
    let other = other.to_str().unwrap();
    run(&["console", "import", "--db", other, file.to_str().unwrap()]);
    let second = run(&["console", "export", "--db", other]);
    assert_eq!(first, second);
    run(&["generate", "--check", "--input", file.to_str().unwrap()]);
    // An import the compiler refuses changes nothing.
    let bad = tmp.join("bad.yaml");
    std::fs::write(&bad, first.replace("tier: gold", "tier: platinum")).unwrap();
    let refused = Command::new(keygate_bin())
        .args(["console", "import", "--db", other, bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(run(&["console", "export", "--db", other]), first);

    // A restart keeps everything: same applications, same directory version, same export.
    let (_, _, last) = get_json(&format!("{dir}/snapshot"), &[]);
    console.process.stop();
    let console = Console::start(&km, &out, &[]);
    let c = console.url.clone();
    let (status, _, again) = get_json(&format!("{c}/keygate/directory/v1/snapshot"), &[]);
    assert_eq!(status, 200);
    assert_eq!(again, last);
    let mut dave = Browser::sign_in(&console, DEV);
    let page = dave.get(&format!("{c}/devportal/applications/{app}"));
    assert!(page.body.contains("shop-app") && page.body.contains("gold"));
    assert_eq!(run(&["console", "export", "--db", db]), first);
}
