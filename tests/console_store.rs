//! The console's store: export → import → export gives the same bytes and `generate` accepts the
//! export; a restart keeps everything; two concurrent edits of one row: one wins, the other is
//! refused (409), nothing is lost silently; the application directory protocol (snapshot, ETag
//! and 304, changes since a version, 410 for an unknown one). Each runs on both backends: the
//! SQLite file and Debian's PostgreSQL 15 started by the test (tests/support/postgres.rs); and
//! two console replicas on one PostgreSQL database see each other's changes in the directory
//! feed and conflict on concurrent edits.
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
use support::console::{admin_setup, create_app, hidden, Browser, Console, ADMIN, DEV, DEV2};
use support::postgres::Postgres;
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
    let tmp = TempDir::new("console-store");
    let db = tmp.join("out/console.sqlite");
    let other = tmp.join("other.sqlite");
    scenario(&tmp, &[], db.to_str().unwrap(), other.to_str().unwrap());
}

#[test]
fn console_store_postgres_round_trip_restart_concurrency_directory() {
    let pg = Postgres::start();
    let tmp = TempDir::new("console-store-pg");
    let db = pg.create_database("console");
    let other = pg.create_database("other");
    scenario(&tmp, &["--db", &db], &db, &other);
    // The tables are PostgreSQL's, not a file beside the output.
    assert!(!tmp.join("out/console.sqlite").exists());
}

/// The store scenario; `extra` selects the console's store, `db` is the same store for the
/// export/import commands and `other` an empty one.
fn scenario(tmp: &TempDir, extra: &[&str], db: &str, other: &str) {
    let km = KeyManager::start();
    let out = tmp.join("out");
    let mut console = Console::start(&km, &out, extra);
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
    let first = run(&["console", "export", "--db", db]);
    assert!(
        first.contains("client_id: shop-app") && first.contains("tier: gold"),
        "{first}"
    );
    let file = tmp.join("exported.yaml");
    std::fs::write(&file, &first).unwrap();
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
    let console = Console::start(&km, &out, extra);
    let c = console.url.clone();
    let (status, _, again) = get_json(&format!("{c}/keygate/directory/v1/snapshot"), &[]);
    assert_eq!(status, 200);
    assert_eq!(again, last);
    let mut dave = Browser::sign_in(&console, DEV);
    let page = dave.get(&format!("{c}/devportal/applications/{app}"));
    assert!(page.body.contains("shop-app") && page.body.contains("gold"));
    assert_eq!(run(&["console", "export", "--db", db]), first);
}

/// Two console replicas (each its own --out) on one PostgreSQL database: a change made in one
/// shows in the other's directory feed and pages, the feed's versions are one sequence across
/// both, and two administrators saving the same API at once on the two replicas: one wins, the
/// other is refused (409).
#[test]
fn console_store_postgres_two_replicas() {
    let mut pg = Postgres::start();
    let km = KeyManager::start();
    let tmp = TempDir::new("console-replicas");
    let db = pg.create_database("fleet");
    let a = Console::start(&km, &tmp.join("a"), &["--db", &db]);
    let b = Console::start(&km, &tmp.join("b"), &["--store", &db]);
    let mut admin_a = Browser::sign_in(&a, ADMIN);
    admin_setup(&a, &mut admin_a, &km, "http://127.0.0.1:9");

    // One store: the same directory version from both.
    let dir_a = format!("{}/keygate/directory/v1", a.url);
    let dir_b = format!("{}/keygate/directory/v1", b.url);
    let (_, _, snap_b) = get_json(&format!("{dir_b}/snapshot"), &[]);
    let v0 = snap_b["version"].as_str().unwrap().to_string();
    let (_, _, snap_a) = get_json(&format!("{dir_a}/snapshot"), &[]);
    assert_eq!(snap_a["version"].as_str(), Some(v0.as_str()));

    // A developer works on A; B's feed and pages show it.
    let mut dave_a = Browser::sign_in(&a, DEV);
    let app = create_app(&a, &mut dave_a, "dave-shop");
    dave_a.get(&format!("{}/devportal/applications/{app}", a.url));
    let added = dave_a.post(
        &format!("{}/devportal/applications/{app}/client-ids", a.url),
        &[("key_manager", "demo"), ("client_id", "shop-app")],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    let (status, _, changes) = get_json(&format!("{dir_b}/changes?since={v0}"), &[]);
    assert_eq!(status, 200, "{changes}");
    let last = changes["changes"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["op"], "upsert");
    assert_eq!(last["application"]["name"], "dave-shop");
    assert_eq!(
        last["application"]["client_ids"][0]["client_id"],
        "shop-app"
    );
    let v1 = changes["version"].as_str().unwrap().to_string();
    let mut dave_b = Browser::sign_in(&b, DEV);
    let page = dave_b.get(&format!("{}/devportal/applications/{app}", b.url));
    assert!(page.body.contains("shop-app"), "{}", page.body);

    // A change made on B follows in the same sequence, read from A.
    dave_b.get(&format!("{}/devportal/applications/{app}/subscribe", b.url));
    let sub = dave_b.post(
        &format!("{}/devportal/applications/{app}/subscriptions", b.url),
        &[("api", "pets")],
    );
    assert_eq!(sub.status, 303, "{}", sub.body);
    let (status, _, changes) = get_json(&format!("{dir_a}/changes?since={v1}"), &[]);
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["changes"].as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(
        changes["changes"][0]["application"]["subscriptions"][0]["api"],
        "pets"
    );
    let seq = |v: &str| v.rsplit('.').next().unwrap().parse::<u64>().unwrap();
    let v2 = changes["version"].as_str().unwrap().to_string();
    assert!(seq(&v2) > seq(&v1) && seq(&v1) > seq(&v0), "{v0} {v1} {v2}");
    assert_eq!(get_json(&format!("{dir_b}/changes?since={v2}"), &[]).0, 304);

    // Two administrators, one on each replica, save the API from the same version at once.
    let mut admin_b = Browser::sign_in(&b, ADMIN);
    let list = admin_b.get(&format!("{}/admin/apis", b.url));
    let version = hidden(&list.body, "version").unwrap();
    let threads: Vec<_> = [
        (admin_a.clone(), a.url.clone()),
        (admin_b.clone(), b.url.clone()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (mut browser, url))| {
        let version = version.clone();
        std::thread::spawn(move || {
            let resources = format!("GET /pets; scopes=pets:read\nGET /replica{i}; public");
            let reply = browser.post(
                &format!("{url}/admin/apis"),
                &[
                    ("version", &version),
                    ("name", "pets"),
                    ("base_path", "/pets/v1"),
                    ("upstream", "http://127.0.0.1:9"),
                    ("resources", &resources),
                ],
            );
            (reply.status, reply.body)
        })
    })
    .collect();
    let mut replies: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    replies.sort_by_key(|r| r.0);
    assert_eq!(
        replies.iter().map(|r| r.0).collect::<Vec<_>>(),
        [303, 409],
        "{replies:?}"
    );
    assert!(
        support::console::unescape(&replies[1].1).contains("changed by someone else"),
        "{}",
        replies[1].1
    );
    // Both replicas show the one saved version.
    let on_a = admin_a.get(&format!("{}/admin/apis", a.url)).body;
    let on_b = admin_b.get(&format!("{}/admin/apis", b.url)).body;
    assert_eq!(hidden(&on_a, "version"), hidden(&on_b, "version"));
    assert_ne!(hidden(&on_a, "version"), Some(version));
    let form =
        support::console::unescape(&admin_b.get(&format!("{}/admin/apis/pets/edit", b.url)).body);
    assert!(
        form.contains("/replica0") ^ form.contains("/replica1"),
        "{form}"
    );

    // Two developers create an application of the same name at once, one on each replica: one
    // is created, the other refused (409 when the inserts raced, 422 when the name was already
    // there), never a 500; the name exists once.
    let mut erin_b = Browser::sign_in(&b, DEV2);
    erin_b.get(&format!("{}/devportal/applications/new", b.url));
    dave_a.get(&format!("{}/devportal/applications/new", a.url));
    for round in 0..5 {
        let name = format!("race-{round}");
        let creators: Vec<_> = [
            (dave_a.clone(), a.url.clone()),
            (erin_b.clone(), b.url.clone()),
        ]
        .into_iter()
        .map(|(mut browser, url)| {
            let name = name.clone();
            std::thread::spawn(move || {
                let reply =
                    browser.post(&format!("{url}/devportal/applications"), &[("name", &name)]);
                (reply.status, reply.body)
            })
        })
        .collect();
        let mut replies: Vec<(u16, String)> =
            creators.into_iter().map(|t| t.join().unwrap()).collect();
        replies.sort_by_key(|r| r.0);
        assert_eq!(replies[0].0, 303, "{replies:?}");
        assert!(matches!(replies[1].0, 409 | 422), "{replies:?}");
        let (_, _, snapshot) = get_json(&format!("{dir_b}/snapshot"), &[]);
        let named = snapshot["applications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|app| app["name"] == name.as_str())
            .count();
        assert_eq!(named, 1, "{snapshot}");
    }

    // The feed is one sequence while both replicas write at once: a reader following it on a
    // third replica (each step `since` the last version it saw) collects exactly the full
    // history, in order, with nothing skipped or repeated.
    let c = Console::start(&km, &tmp.join("c"), &["--db", &db]);
    let dir_c = format!("{}/keygate/directory/v1", c.url);
    let erin_app = create_app(&b, &mut erin_b, "erin-shop");
    erin_b.get(&format!("{}/devportal/applications/{erin_app}", b.url));
    let (_, _, start) = get_json(&format!("{dir_a}/snapshot"), &[]);
    let start = start["version"].as_str().unwrap().to_string();
    const TOGGLES: usize = 10;
    let writers: Vec<_> = [
        (dave_a.clone(), a.url.clone(), app, true),
        (erin_b.clone(), b.url.clone(), erin_app, false),
    ]
    .into_iter()
    .map(|(mut browser, url, id, subscribed)| {
        std::thread::spawn(move || {
            for i in 0..TOGGLES {
                let remove = (i % 2 == 0) == subscribed;
                let path = if remove {
                    "subscriptions/remove"
                } else {
                    "subscriptions"
                };
                let reply = browser.post(
                    &format!("{url}/devportal/applications/{id}/{path}"),
                    &[("api", "pets")],
                );
                assert_eq!(reply.status, 303, "{}", reply.body);
            }
        })
    })
    .collect();
    let mut seen: Vec<Value> = Vec::new();
    let mut since = start.clone();
    let mut poll = |dir: &str, seen: &mut Vec<Value>| {
        let (status, _, page) = get_json(&format!("{dir}/changes?since={since}"), &[]);
        if status == 200 {
            seen.extend(page["changes"].as_array().unwrap().iter().cloned());
            since = page["version"].as_str().unwrap().to_string();
        } else {
            assert_eq!(status, 304, "{page}");
        }
    };
    let mut turn = 0usize;
    while writers.iter().any(|w| !w.is_finished()) {
        poll(&dir_c, &mut seen);
        turn += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    poll(&dir_b, &mut seen);
    let (status, _, all) = get_json(&format!("{dir_b}/changes?since={start}"), &[]);
    assert_eq!(status, 200);
    let all = all["changes"].as_array().unwrap();
    assert_eq!(all.len(), 2 * TOGGLES, "{all:?}");
    assert_eq!(
        &seen,
        all,
        "the reader saw {} of {} changes",
        seen.len(),
        all.len()
    );
    assert!(turn > 1, "the reader polled while the writers ran");

    // The database restarts under the running replicas: each reconnects on its next call, and
    // nothing was lost.
    let (_, _, before) = get_json(&format!("{dir_a}/snapshot"), &[]);
    pg.restart();
    for dir in [&dir_a, &dir_b, &dir_c] {
        let (status, _, after) = get_json(&format!("{dir}/snapshot"), &[]);
        assert_eq!((status, &after), (200, &before));
    }
    let page = erin_b.get(&format!("{}/devportal/applications/{erin_app}", b.url));
    assert_eq!(page.status, 200);
}

/// A PostgreSQL store that cannot be reached: the commands fail naming the server, never the
/// password, and the console does not start.
#[test]
fn console_store_postgres_unreachable_fails_without_the_password() {
    let port = support::free_port();
    let url = format!("postgres://keygate:s3cret-pw@127.0.0.1:{port}/console");
    let export = Command::new(keygate_bin())
        .args(["console", "export", "--db", &url])
        .output()
        .unwrap();
    assert!(!export.status.success());
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(
        stderr.contains(&format!("PostgreSQL at 127.0.0.1:{port}/console")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    let tmp = TempDir::new("console-store-pg-down");
    let serve = Command::new(keygate_bin())
        .args(["console", "--listen", "127.0.0.1:0", "--out"])
        .arg(tmp.join("out"))
        .args(["--store", &url])
        .args([
            "--oidc-well-known-url",
            "http://127.0.0.1:9/.well-known/openid-configuration",
        ])
        .env("KEYGATE_CONSOLE_CLIENT_SECRET", "x")
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("PostgreSQL at 127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(!tmp.join("out/console.sqlite").exists());
}
