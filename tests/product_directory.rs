//! Product tests of the application directory (`docs/directory.md`): the built filter in a real
//! Envoy takes its applications from `keygate directory serve`, which follows edits of the
//! declaration. Tokens are signed for real by test code with the committed P-256 test key, whose
//! JWKS a canned server publishes, so any client id can have one.
//! Every wait is a bounded poll: a change must be enforced within 5 s of the edit.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use support::canned::Server;
use support::directory::DirectorySource;
use support::process::poll_until;
use support::signers::{jwks, public_jwk, token};
use support::stack::{gateway_and_key_manager, now, Options, AUDIENCE};
use support::{free_port, http, EchoUpstream, Envoy, Response, TempDir};

/// The bound the issue sets for a change to be enforced.
const ENFORCED_WITHIN: Duration = Duration::from_secs(5);

/// An application of the declaration: name, client id, subscribed APIs.
type App<'a> = (&'a str, &'a str, &'a [&'a str]);

struct Gateway {
    envoy: Envoy,
    source: DirectorySource,
    issuer: String,
    _jwks: Server,
    _echo: EchoUpstream,
    dir: TempDir,
    input: PathBuf,
    head: String,
    port: u16,
}

fn applications(apps: &[App]) -> String {
    let mut out = String::from("applications:\n");
    for (name, client, apis) in apps {
        out.push_str(&format!(
            "  - name: {name}\n    client_ids:\n      - {{key_manager: demo, client_id: {client}}}\n    subscriptions: [{}]\n",
            apis.iter().map(|a| format!("{{api: {a}}}")).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

impl Gateway {
    /// A gateway whose applications come from a directory source serving `apps`; `directory`
    /// holds the declaration's extra `directory:` lines, `serve` more `serve` arguments.
    fn start(apps: &[App], directory: &str, serve: &[&str], workers: u32) -> Gateway {
        Gateway::start_with(apps, directory, serve, workers, None)
    }

    fn start_with(
        apps: &[App],
        directory: &str,
        serve: &[&str],
        workers: u32,
        url: Option<String>,
    ) -> Gateway {
        let dir = TempDir::new("directory");
        let keys = String::from_utf8(jwks(&[public_jwk("p256", "k-p256")])).unwrap();
        let jwks_server = Server::start(vec![("/jwks".to_string(), 200, keys)]);
        let issuer = jwks_server.base.clone();
        let jwks_uri = format!("{issuer}/jwks");
        let echo = EchoUpstream::start();
        let (port, admin) = (free_port(), free_port());
        let input = dir.path().join("keygate.yaml");
        let source_port = free_port();
        let url =
            url.unwrap_or_else(|| format!("http://127.0.0.1:{source_port}/keygate/directory"));
        let head = format!(
            "{}apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:{}
    resources:
      - {{method: GET, path: /pets}}
      - {{method: GET, path: /health, public: true}}
  - name: orders
    base_path: /orders/v1
    upstream: http://127.0.0.1:{}
    resources:
      - {{method: GET, path: /orders}}
  - name: keys
    base_path: /keys/v1
    upstream: http://127.0.0.1:{}
    security: [api_key]
    resources:
      - {{method: GET, path: /items}}
directory:
  url: {url}
{directory}",
            gateway_and_key_manager(&Options::default(), &issuer, &jwks_uri, port, admin),
            echo.port(),
            echo.port(),
            echo.port(),
        );
        std::fs::write(&input, format!("{head}{}", applications(apps))).unwrap();
        let source = DirectorySource::start(&input, dir.path(), source_port, serve);
        let out = support::stack::generate(dir.path(), &std::fs::read_to_string(&input).unwrap());
        let envoy = Envoy::start_with_workers(&out.join("envoy.yaml"), workers);
        Gateway {
            envoy,
            source,
            issuer,
            _jwks: jwks_server,
            _echo: echo,
            input,
            head,
            port,
            dir,
        }
    }

    /// Rewrites the declaration with `apps` (the source follows the file).
    fn edit(&mut self, apps: &[App]) {
        let text = format!("{}{}", self.head, applications(apps));
        let temp = self.dir.path().join("keygate.yaml.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &self.input).unwrap();
    }

    /// Rewrites the declaration's applications with `tail` (YAML from `applications:` on).
    fn edit_raw(&mut self, tail: &str) {
        let temp = self.dir.path().join("keygate.yaml.tmp");
        std::fs::write(&temp, format!("{}{tail}", self.head)).unwrap();
        std::fs::rename(&temp, &self.input).unwrap();
    }

    /// GET `path` with `key` in the `apikey` header.
    fn get_key(&self, path: &str, key: &str) -> Response {
        http(
            self.port,
            "GET",
            path,
            &[("apikey", key), ("connection", "close")],
        )
    }

    /// Polls until `path` with `key` answers `status` (and `code`, when given).
    fn until_key(&self, path: &str, key: &str, status: u16, code: &str) -> Response {
        let found = poll_until(ENFORCED_WITHIN, || {
            let r = self.get_key(path, key);
            (r.status == status && (code.is_empty() || r.code() == code)).then_some(r)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{path} with a key: not {status} {code} within {ENFORCED_WITHIN:?} (last: {:?})\nsource:\n{}",
                self.get_key(path, key),
                self.source.log()
            )
        })
    }

    fn token(&self, client: &str) -> String {
        let now = now();
        let claims = json!({"iss": self.issuer, "sub": client, "aud": AUDIENCE,
            "client_id": client, "iat": now, "exp": now + 3600, "jti": format!("{client}-{now}")});
        token(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k-p256"}),
            &claims,
            "p256",
        )
    }

    fn get(&self, path: &str, client: &str) -> Response {
        let auth = format!("Bearer {}", self.token(client));
        http(
            self.port,
            "GET",
            path,
            &[("authorization", &auth), ("connection", "close")],
        )
    }

    /// Polls until `path` for `client` answers `status` (and `code`, when given).
    fn until(&self, path: &str, client: &str, status: u16, code: &str) -> Response {
        let started = Instant::now();
        let mut last = None;
        let found = poll_until(ENFORCED_WITHIN, || {
            let r = self.get(path, client);
            let ok = r.status == status && (code.is_empty() || r.code() == code);
            last = Some(r.clone());
            ok.then_some(r)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{client} {path}: not {status} {code} within {:?} (last: {:?})\nsource:\n{}",
                started.elapsed(),
                last,
                self.source.log()
            )
        })
    }
}

#[test]
fn a_subscription_added_and_removed_through_the_source_is_enforced_incrementally() {
    let mut gw = Gateway::start(&[("shop", "dir-shop", &["pets"])], "", &[], 1);
    let allowed = gw.until("/pets/v1/pets", "dir-shop", 200, "");
    assert!(
        allowed.body.contains("x-keygate-application"),
        "{}",
        allowed.body
    );
    let refused = gw.get("/orders/v1/orders", "dir-shop");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "not_subscribed")
    );
    assert_eq!(
        gw.get("/pets/v1/pets", "dir-new").code(),
        "application_not_found"
    );

    // Added: a subscription and a whole application.
    gw.edit(&[
        ("shop", "dir-shop", &["pets", "orders"]),
        ("new", "dir-new", &["pets"]),
    ]);
    gw.until("/orders/v1/orders", "dir-shop", 200, "");
    gw.until("/pets/v1/pets", "dir-new", 200, "");
    // Removed: the subscription, then the application.
    gw.edit(&[
        ("shop", "dir-shop", &["orders"]),
        ("new", "dir-new", &["pets"]),
    ]);
    gw.until("/pets/v1/pets", "dir-shop", 403, "not_subscribed");
    assert_eq!(gw.get("/orders/v1/orders", "dir-shop").status, 200);
    gw.edit(&[("shop", "dir-shop", &["orders"])]);
    gw.until("/pets/v1/pets", "dir-new", 403, "application_not_found");

    // Nothing changes any more: the next poll is answered 304.
    let unchanged = poll_until(ENFORCED_WITHIN, || {
        gw.source
            .served()
            .last()
            .filter(|s| s.status == 304)
            .cloned()
    });
    assert!(unchanged.is_some(), "{:?}", gw.source.served());
    // One snapshot at start; every later fetch asked for the changes since the version held.
    let served = gw.source.served();
    let snapshots = served
        .iter()
        .filter(|s| s.target.contains("/v1/snapshot"))
        .count();
    assert_eq!(snapshots, 1, "{served:?}");
    let changes: Vec<_> = served
        .iter()
        .filter(|s| s.target.starts_with("/keygate/directory/v1/changes?since="))
        .collect();
    assert!(
        changes.iter().filter(|s| s.status == 200).count() >= 3,
        "{served:?}"
    );
    assert!(served.iter().all(|s| s.status != 410), "{served:?}");
}

#[test]
fn a_gap_beyond_the_source_history_is_closed_with_a_full_snapshot() {
    // The source keeps one change: an edit that changes two applications leaves the gateway's
    // version out of reach (410), and the gateway fetches a snapshot.
    let apps: [App; 2] = [("a", "dir-a", &["pets"]), ("b", "dir-b", &["pets"])];
    let mut gw = Gateway::start(&apps, "", &["--history", "1"], 1);
    gw.until("/pets/v1/pets", "dir-a", 200, "");
    gw.edit(&[("a", "dir-a", &["orders"]), ("b", "dir-b", &["orders"])]);
    gw.until("/pets/v1/pets", "dir-a", 403, "not_subscribed");
    gw.until("/orders/v1/orders", "dir-b", 200, "");
    let served = gw.source.served();
    let gone = served
        .iter()
        .position(|s| s.target.contains("/v1/changes?since=") && s.status == 410)
        .unwrap_or_else(|| panic!("no 410: {served:?}"));
    assert!(
        served[gone + 1..]
            .iter()
            .any(|s| s.target.contains("/v1/snapshot?limit=") && s.status == 200),
        "a snapshot after the 410: {served:?}"
    );
    assert!(
        gw.envoy
            .stat_sum("wasmcustom.keygate_directory_fetches.outcome.gone")
            >= 1
    );
}

#[test]
fn an_outage_keeps_known_applications_for_the_stale_bound_only() {
    let mut gw = Gateway::start(
        &[("shop", "dir-shop", &["pets"])],
        "  stale_seconds: 4\n",
        &[],
        1,
    );
    gw.until("/pets/v1/pets", "dir-shop", 200, "");
    gw.source.stop();
    // Within the stale bound: the known application still passes, an unknown one is refused.
    assert_eq!(gw.get("/pets/v1/pets", "dir-shop").status, 200);
    let unknown = gw.get("/pets/v1/pets", "dir-stranger");
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (403, "application_not_found")
    );
    // Past it: 503 with Retry-After, never forwarded; public resources still pass.
    let stale = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/pets/v1/pets", "dir-shop");
        (r.status == 503).then_some(r)
    })
    .unwrap_or_else(|| panic!("still served after the stale bound\n{}", gw.envoy.log()));
    assert_eq!(stale.code(), "directory_unavailable");
    assert_eq!(stale.header("retry-after"), Some("1"));
    assert_eq!(gw.get("/pets/v1/health", "dir-shop").status, 200);
    // The source comes back (a new run: the version held is unknown to it, 410, snapshot).
    gw.source.restart();
    gw.until("/pets/v1/pets", "dir-shop", 200, "");
}

#[test]
fn a_gateway_that_never_loaded_the_directory_answers_503() {
    let nowhere = format!("http://127.0.0.1:{}/keygate/directory", free_port());
    let gw = Gateway::start_with(
        &[("shop", "dir-shop", &["pets"])],
        "",
        &[],
        1,
        Some(nowhere),
    );
    let r = gw.get("/pets/v1/pets", "dir-shop");
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "directory_unavailable")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert_eq!(
        gw.get("/pets/v1/health", "dir-shop").status,
        200,
        "public resources pass"
    );
}

#[test]
fn two_workers_share_one_copy_and_one_fetch_per_refresh() {
    let mut gw = Gateway::start(&[("shop", "dir-shop", &["pets"])], "", &[], 2);
    gw.until("/pets/v1/pets", "dir-shop", 200, "");
    // Over a window of several refreshes, the source sees about one fetch per refresh for the
    // whole Envoy (two workers polling on their own would make it two).
    let before = gw.source.served().len();
    std::thread::sleep(Duration::from_secs(4));
    let fetched = gw.source.served().len() - before;
    assert!(
        (2..=6).contains(&fetched),
        "{fetched} fetches in 4 s: {:?}",
        gw.source.served()
    );
    // Both workers enforce a change (new connections spread over them).
    gw.edit(&[("shop", "dir-shop", &["orders"])]);
    // Every worker within the bound: 20 requests in a row on new connections all refused.
    let everywhere = poll_until(ENFORCED_WITHIN, || {
        (0..20)
            .all(|_| gw.get("/pets/v1/pets", "dir-shop").code() == "not_subscribed")
            .then_some(())
    });
    assert!(
        everywhere.is_some(),
        "a worker still allows the removed subscription"
    );
    let connections = gw.envoy.worker_connections(gw.port);
    assert!(
        connections.iter().filter(|n| **n > 0).count() == 2,
        "{connections:?}"
    );
    // One snapshot for both workers.
    let snapshots = gw
        .source
        .served()
        .iter()
        .filter(|s| s.target.contains("/v1/snapshot"))
        .count();
    assert_eq!(snapshots, 1);
}

/// The application `shop` subscribed to `keys`, with `keys` as its `api_keys` entries (name,
/// key, expiry).
fn with_keys(keys: &[(&str, &str, Option<&str>)]) -> String {
    use keygate::policy::api_keys::{hash_hex, hash_key};
    let mut out = String::from(
        "applications:\n  - name: shop\n    subscriptions: [{api: keys}]\n    api_keys:\n",
    );
    if keys.is_empty() {
        out = out.replace("    api_keys:\n", "    api_keys: []\n");
    }
    for (name, key, expires) in keys {
        out.push_str(&format!(
            "      - {{name: {name}, sha256: {}{}}}\n",
            hash_hex(&hash_key(key)),
            expires.map_or(String::new(), |e| format!(", expires: \"{e}\""))
        ));
    }
    out
}

#[test]
fn an_api_key_added_to_the_source_works_and_removed_stops() {
    let live = "kg_directoryLiveKey0123456789abcdefghijklmnopqrstu";
    let added = "kg_directoryAddedKey0123456789abcdefghijklmnopqrst";
    let old = "kg_directoryOldKey0123456789abcdefghijklmnopqrstuv";
    let mut gw = Gateway::start(&[("other", "dir-other", &["pets"])], "", &[], 2);
    gw.edit_raw(&with_keys(&[
        ("live", live, None),
        ("old", old, Some("2020-01-01T00:00:00Z")),
    ]));
    let allowed = gw.until_key("/keys/v1/items", live, 200, "");
    assert!(
        allowed.body.contains("x-keygate-api-key"),
        "{}",
        allowed.body
    );
    assert!(!allowed.body.contains(live), "the key never goes upstream");
    let expired = gw.get_key("/keys/v1/items", old);
    assert_eq!(
        (expired.status, expired.code().as_str()),
        (401, "api_key_expired")
    );
    assert_eq!(
        gw.get_key("/keys/v1/items", added).code(),
        "api_key_unknown"
    );

    // Added: works within 5 s; removed: refused within 5 s.
    gw.edit_raw(&with_keys(&[("live", live, None), ("added", added, None)]));
    gw.until_key("/keys/v1/items", added, 200, "");
    gw.edit_raw(&with_keys(&[("added", added, None)]));
    gw.until_key("/keys/v1/items", live, 401, "api_key_unknown");
    assert_eq!(gw.get_key("/keys/v1/items", added).status, 200);
}

#[test]
fn a_snapshot_larger_than_a_page_is_fetched_in_pages() {
    // 1,200 applications: the gateway asks 1,000 per page, so two pages of one version.
    let names: Vec<(String, String)> = (0..1200)
        .map(|i| (format!("app{i:04}"), format!("dir-{i:04}")))
        .collect();
    let apps: Vec<App> = names
        .iter()
        .map(|(name, client)| (name.as_str(), client.as_str(), &["pets"][..]))
        .collect();
    let gw = Gateway::start(&apps, "", &[], 1);
    // The last application in name order is on the second page.
    gw.until("/pets/v1/pets", "dir-1199", 200, "");
    assert_eq!(gw.get("/pets/v1/pets", "dir-0000").status, 200);
    let served = gw.source.served();
    let pages: Vec<_> = served
        .iter()
        .filter(|s| s.target.contains("/v1/snapshot"))
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(
        pages[0].target.ends_with("/v1/snapshot?limit=1000"),
        "{pages:?}"
    );
    assert!(pages[1].target.contains("&after="), "{pages:?}");
    assert!(
        gw.envoy
            .stat_sum("wasmcustom.keygate_directory_fetches.outcome.snapshot_page")
            >= 1
    );
}
