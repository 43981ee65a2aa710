//! `generate` with a `directory` (docs/directory.md): the applications are checked but left out of
//! the plugin config, which names the source; `envoy.yaml` has its cluster (and passes
//! `envoy --mode validate`), the Istio output its ServiceEntry. The plugin config's own rules for
//! `directory`: refused together with inline applications, every bad field named.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use keygate::config::PluginConfig;
use keygate::policy::Policy;
use serde_json::json;
use support::canned::{istio_check, read, temp_dir, wasm_path, yaml};
use support::{keygate, Envoy};

fn declaration(applications: &str) -> String {
    format!(
        "\
gateway:
  environment: production
  listen: 127.0.0.1:18080
  admin: 127.0.0.1:19901
istio:
  selector: {{app: pets}}
  image: registry.example/keygate:0.1.0
key_managers:
  - name: idp
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    discovery:
      issuer: https://idp.example.com
      jwks_uri: https://idp.example.com/jwks
directory:
  url: https://directory.example.com:8443/keygate/directory
  token_env: KEYGATE_DIRECTORY_TOKEN
  stale_seconds: 60
apis:
  - name: pets
    base_path: /pets
    upstream: http://127.0.0.1:3000
    resources:
      - {{method: GET, path: /items}}
{applications}"
    )
}

const APPS: &str = "\
applications:
  - name: shop
    client_ids: [{key_manager: idp, client_id: c1}]
    subscriptions: [{api: pets}]
";

#[test]
fn the_source_replaces_the_applications_in_every_output() {
    let dir = temp_dir("cli-directory");
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, declaration(APPS)).unwrap();
    let out = dir.join("out");
    let wasm = wasm_path().to_string_lossy().into_owned();
    let run = keygate(
        &[
            "generate",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--wasm",
            &wasm,
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let plugin: PluginConfig =
        serde_json::from_str(&read(&out.join("plugin-config.json"))).unwrap();
    assert!(plugin.applications.is_empty());
    let source = plugin
        .directory
        .clone()
        .expect("directory in the plugin config");
    assert_eq!(
        source.url,
        "https://directory.example.com:8443/keygate/directory"
    );
    assert_eq!(source.authority, "directory.example.com:8443");
    assert_eq!(source.path, "/keygate/directory");
    assert!(source
        .cluster
        .starts_with("keygate_directory_directory_example_com_8443_"));
    assert_eq!(source.token_env, "KEYGATE_DIRECTORY_TOKEN");
    assert_eq!((source.refresh_seconds, source.stale_seconds), (1, 60));
    assert_eq!(
        (source.timeout_ms, source.max_bytes),
        (15_000, 64 * 1024 * 1024)
    );

    let envoy = yaml(&out.join("envoy.yaml"));
    let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
    assert!(clusters
        .iter()
        .any(|c| c["name"] == source.cluster.as_str()));
    let filter = read(&out.join("live/keygate-filter.yaml"));
    assert!(
        filter.contains("KEYGATE_DIRECTORY_TOKEN"),
        "the token variable reaches the VM"
    );
    let (valid, log) = Envoy::validate(&out.join("envoy.yaml"));
    assert!(valid, "{log}");

    let files: Vec<std::path::PathBuf> = std::fs::read_dir(out.join("istio"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    let (code, stdout, stderr) = istio_check(&files);
    assert_eq!(code, Some(0), "Istio's schemas: {stdout}{stderr}");
    let entries: Vec<String> = files
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("serviceentry-")
        })
        .map(|p| read(p))
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e.contains("directory.example.com") && e.contains("8443")),
        "{entries:?}"
    );
    let wasmplugin = read(&out.join("istio/wasmplugin.yaml"));
    assert!(wasmplugin.contains("outbound|8443||directory.example.com"));
    assert!(!wasmplugin.contains("client_ids"));
}

#[test]
fn the_applications_are_still_judged_with_the_filters_rules() {
    let dir = temp_dir("cli-directory-refused");
    let input = dir.join("keygate.yaml");
    let bad = APPS.replace("{api: pets}", "{api: nope}");
    std::fs::write(&input, declaration(&bad)).unwrap();
    let run = keygate(
        &["generate", "--input", input.to_str().unwrap(), "--check"],
        b"",
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
}

fn compile(directory: serde_json::Value, applications: serde_json::Value) -> Vec<String> {
    let cfg = json!({
        "environment": "production",
        "key_managers": [{"name": "idp", "issuer": "https://idp",
            "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [{"method": "GET", "path": "/x"}]}],
        "applications": applications,
        "directory": directory,
    });
    match Policy::from_json(cfg.to_string().as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.code()))
            .collect(),
    }
}

#[test]
fn the_plugin_configs_directory_is_refused_naming_the_field() {
    let good = json!({"url": "http://dir/", "cluster": "d", "authority": "dir", "path": "/"});
    assert!(compile(good.clone(), json!([])).is_empty());
    let app = json!([{"name": "a"}]);
    assert_eq!(compile(good, app), ["applications: invalid"]);
    let bad = json!({"url": "ftp://dir/", "cluster": "", "authority": "dir", "path": "x",
        "token_env": "1X", "refresh_seconds": 0, "stale_seconds": 1, "timeout_ms": 5,
        "max_bytes": 10});
    assert_eq!(
        compile(bad, json!([])),
        [
            "directory.url: invalid",
            "directory.cluster: missing",
            "directory.path: invalid",
            "directory.token_env: invalid",
            "directory.refresh_seconds: out_of_range",
            "directory.timeout_ms: out_of_range",
            "directory.max_bytes: out_of_range",
        ]
    );
    let stale = json!({"url": "http://dir/", "cluster": "d", "authority": "dir", "path": "/",
        "refresh_seconds": 10, "stale_seconds": 10});
    assert_eq!(
        compile(stale, json!([])),
        ["directory.stale_seconds: out_of_range"]
    );
}

/// `keygate directory serve`'s paging (docs/directory.md, "Pages"), with the docs' literal values.
#[test]
fn the_source_pages_its_snapshot_as_documented() {
    use keygate::cli::directory_history::Served;
    use keygate::directory::{Refusal, Snapshot, MAX_PAGE, SNAPSHOT_PAGE};
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/directory.md")).unwrap();
    assert!(doc.contains("the gateway asks `limit=1000`"));
    assert_eq!(SNAPSHOT_PAGE, 1000);
    assert!(doc.contains("serve at most 10,000 per page"));
    assert_eq!(MAX_PAGE, 10_000);
    assert!(doc.contains(r#""api_key_taken""#));
    assert_eq!(Refusal::ApiKeyTaken.code(), "api_key_taken");
    assert!(doc.contains("`snapshot_page`"));

    let app = |name: &str| serde_json::from_value(json!({"name": name})).unwrap();
    let mut served = Served::new("run".into(), vec![app("c"), app("a"), app("b")], 10);
    let page = |s: &mut Served, target: &str| {
        let answer = s.answer("GET", target, None, None);
        let body: Option<Snapshot> = serde_json::from_slice(&answer.body).ok();
        (answer.status, body)
    };
    let (status, first) = page(&mut served, "/d/v1/snapshot?limit=2");
    let first = first.unwrap();
    assert_eq!(status, 200);
    let names: Vec<_> = first.applications.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "name order");
    let next = first.next.clone().unwrap();
    assert_eq!(next, format!("{}/2", first.version));
    let after = next.replace('/', "%2F");
    let (_, last) = page(
        &mut served,
        &format!("/d/v1/snapshot?limit=2&after={after}"),
    );
    let last = last.unwrap();
    assert_eq!(
        (last.version.as_str(), last.next.as_deref()),
        (first.version.as_str(), None)
    );
    assert_eq!(last.applications.len(), 1);
    // Unpaged: everything, no `next`.
    let (_, all) = page(&mut served, "/d/v1/snapshot");
    assert_eq!(all.unwrap().applications.len(), 3);
    assert_eq!(page(&mut served, "/d/v1/snapshot?limit=0").0, 400);
    // The applications changed: the old cursor is gone.
    served.update(vec![app("a")]);
    assert_eq!(
        page(
            &mut served,
            &format!("/d/v1/snapshot?limit=2&after={after}")
        )
        .0,
        410
    );
}
