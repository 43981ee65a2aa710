//! `keygate generate` end to end: discovery on loopback, then every output checked by the tool
//! that consumes it (the filter's config type, real Envoy, Istio's schemas from npm, compose paths).
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keygate::config::{PluginConfig, UnknownApi};
use serde_json::Value;
use support::canned::*;

const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The naming rule (README, `generate`), computed here independently of the generator: 8 hex
/// digits of SHA-256 over the exact `scheme://host:port`.
fn digest(target: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(target.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `keygate_<role>_<host with non-alphanumerics as _>_<port>_<digest>`.
fn cluster_name(role: &str, scheme: &str, host: &str, port: u16) -> String {
    let readable: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!(
        "keygate_{role}_{readable}_{port}_{}",
        digest(&format!("{scheme}://{host}:{port}"))
    )
}

/// `keygate-jwks-<host with non-alphanumerics as ->-<port>-<digest>`.
fn istio_name(scheme: &str, host: &str, port: u16) -> String {
    let readable: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "keygate-jwks-{readable}-{port}-{}",
        digest(&format!("{scheme}://{host}:{port}"))
    )
}

/// The sample declaration: Keycloak fetched from the loopback server, Asgardeo and Entra
/// (multi-tenant) given inline.
fn declaration(keycloak_url: &str) -> String {
    format!(
        "\
gateway:
  environment: production
  listen: 127.0.0.1:18080
  admin: 127.0.0.1:19901
settings:
  leeway_seconds: 30
  unknown_api: pass
istio:
  namespace: shop
  selector: {{app: pets}}
  image: registry.example/keygate:0.1.0
key_managers:
  - name: keycloak
    well_known_url: {keycloak_url}
    provider: keycloak
    audiences: [pets-api]
    claims: {{groups: [resource_access.pets.roles]}}
  - name: asgardeo
    well_known_url: https://api.asgardeo.io/t/acme/oauth2/token/.well-known/openid-configuration
    provider: asgardeo
    environments: [production]
    discovery:
      issuer: https://api.asgardeo.io/t/acme/oauth2/token
      jwks_uri: https://api.asgardeo.io/t/acme/oauth2/jwks
      token_endpoint: https://api.asgardeo.io/t/acme/oauth2/token
  - name: entra
    well_known_url: https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration
    provider: entra-v2
    tenants: [{TENANT}]
    discovery:
      issuer: https://login.microsoftonline.com/{{tenantid}}/v2.0
      jwks_uri: https://login.microsoftonline.com/common/discovery/v2.0/keys
      token_endpoint: https://login.microsoftonline.com/common/oauth2/v2.0/token
apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:3000
    resources:
      - {{method: GET,  path: /pets,        scopes: [pets:read]}}
      - {{method: GET,  path: \"/pets/{{id}}\", scopes: [pets:read]}}
      - {{method: POST, path: /pets,        scopes: [pets:write], groups: [pet-admins]}}
      - {{method: GET,  path: /health,      public: true}}
  - name: pets-admin
    base_path: /pets/v1/admin
    upstream: https://admin.internal.example:8443
    resources:
      - {{method: \"*\", path: /*, scopes: [pets:admin]}}
applications:
  - name: mobile-shop
    client_ids:
      - {{key_manager: keycloak, client_id: shop-app}}
      - {{key_manager: asgardeo, client_id: 9b2f0c1e}}
    subscriptions:
      - {{api: pets}}
      - {{api: pets-admin, state: blocked}}
"
    )
}

struct Generated {
    out: PathBuf,
    keycloak_base: String,
    _server: Server,
}

fn generate(extra: &[&str]) -> Generated {
    let (server, url) = serve_fixture("keycloak", "/realms/shop");
    let dir = temp_dir("gen");
    std::fs::write(dir.join("keygate.yaml"), declaration(&url)).unwrap();
    let out = dir.join("out");
    let mut args = vec!["generate", "--input", "keygate.yaml", "--out", "out"];
    args.extend_from_slice(extra);
    // Run from the declaration's directory with relative paths: outputs must still be absolute.
    let result = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(&args)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "stderr: {}", stderr(&result));
    Generated {
        out,
        keycloak_base: server.base.clone(),
        _server: server,
    }
}

fn plugin(out: &Path) -> PluginConfig {
    serde_json::from_str(&read(&out.join("plugin-config.json"))).unwrap()
}

fn wasm_arg() -> String {
    wasm_path().to_string_lossy().into_owned()
}

#[test]
fn plugin_config_is_a_plugin_config_with_resolved_key_managers() {
    let g = generate(&["--wasm", &wasm_arg()]);
    let config = plugin(&g.out);
    assert_eq!(config.environment, "production");
    assert_eq!(config.settings.leeway_seconds, 30);
    assert_eq!(config.settings.unknown_api, UnknownApi::Pass);
    // Settings not given keep their defaults.
    assert_eq!(config.settings.header_prefix, "x-keygate-");

    let kc = &config.key_managers[0];
    assert_eq!(kc.issuer, format!("{}/realms/shop", g.keycloak_base));
    let port = g.keycloak_base.rsplit(':').next().unwrap();
    assert_eq!(
        kc.jwks.cluster,
        cluster_name("jwks", "http", "127.0.0.1", port.parse().unwrap())
    );
    assert_eq!(kc.jwks.authority, format!("127.0.0.1:{port}"));
    assert_eq!(kc.jwks.path, "/realms/shop/protocol/openid-connect/certs");
    assert_eq!(kc.audiences, ["pets-api"]);
    assert_eq!(kc.claims.client_id, ["client_id", "azp"], "keycloak preset");
    assert_eq!(
        kc.claims.groups,
        ["resource_access.pets.roles"],
        "override wins"
    );

    let asg = &config.key_managers[1];
    assert_eq!(
        asg.jwks.cluster,
        cluster_name("jwks", "https", "api.asgardeo.io", 443)
    );
    assert_eq!(asg.jwks.authority, "api.asgardeo.io");
    assert_eq!(asg.environments, ["production"]);

    let entra = &config.key_managers[2];
    assert_eq!(
        entra.issuer,
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    );
    assert_eq!(entra.tenants, [TENANT]);
    assert_eq!(entra.claims.client_id, ["azp"]);

    assert_eq!(config.apis[1].resources[0].method, "*");
    assert_eq!(config.applications[0].client_ids.len(), 2);
}

#[test]
fn envoy_bootstrap_has_the_expected_shape() {
    let g = generate(&["--wasm", &wasm_arg()]);
    let envoy = yaml(&g.out.join("envoy.yaml"));
    let config = plugin(&g.out);
    let listener = &envoy["static_resources"]["listeners"][0];
    assert_eq!(listener["address"]["socket_address"]["port_value"], 18080);
    assert_eq!(
        envoy["admin"]["address"]["socket_address"]["port_value"],
        19901
    );
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");

    let filters = hcm["http_filters"].as_array().unwrap();
    assert_eq!(filters[0]["name"], "keygate");
    assert_eq!(filters[1]["name"], "envoy.filters.http.router");
    // The filter's config is not in the bootstrap: ECDS from the live file, watched for renames.
    assert!(filters[0].get("typed_config").is_none(), "{}", filters[0]);
    let discovery = &filters[0]["config_discovery"];
    assert_eq!(
        discovery["type_urls"][0],
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let live_dir = std::path::absolute(&g.out).unwrap().join("live");
    let source = &discovery["config_source"]["path_config_source"];
    assert_eq!(
        source["path"].as_str().unwrap(),
        live_dir.join("keygate-filter.yaml").to_str().unwrap()
    );
    assert_eq!(
        source["watched_directory"]["path"].as_str().unwrap(),
        live_dir.to_str().unwrap()
    );
    assert_eq!(envoy["node"]["id"], "keygate");
    assert!(
        !read(&g.out.join("envoy.yaml")).contains("9b2f0c1e"),
        "no application in the bootstrap"
    );

    let live = yaml(&g.out.join("live/keygate-filter.yaml"));
    let resource = &live["resources"][0];
    assert_eq!(
        resource["@type"],
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
    );
    assert_eq!(
        resource["name"], "keygate",
        "the name the filter subscribes to"
    );
    let wasm = &resource["typed_config"]["config"];
    assert_eq!(wasm["root_id"], "keygate");
    assert_eq!(wasm["fail_open"], false);
    assert_eq!(wasm["vm_config"]["vm_id"], "keygate");
    assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        wasm["vm_config"]["code"]["local"]["filename"],
        wasm_arg().as_str()
    );
    let embedded: PluginConfig =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        embedded, config,
        "the live file carries exactly plugin-config.json"
    );
    // The xDS resource is the live file's one resource.
    let xds: Value = serde_json::from_str(&read(&g.out.join("xds/keygate-filter.json"))).unwrap();
    assert_eq!(&xds, resource);

    // Longest base path first; the catch-all last.
    let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    let matches: Vec<&Value> = routes.iter().map(|r| &r["match"]).collect();
    assert_eq!(matches[0]["path_separated_prefix"], "/pets/v1/admin");
    assert_eq!(matches[1]["path_separated_prefix"], "/pets/v1");
    assert_eq!(matches[2]["prefix"], "/");
    assert_eq!(routes[2]["direct_response"]["status"], 404);

    // Every JWKS cluster the filter dispatches to exists; https ones verify the server name.
    let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
    let by_name = |name: &str| {
        clusters
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    };
    for km in &config.key_managers {
        by_name(&km.jwks.cluster);
    }
    let asg = by_name(&cluster_name("jwks", "https", "api.asgardeo.io", 443));
    assert_eq!(asg["type"], "STRICT_DNS");
    let tls = &asg["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], "api.asgardeo.io");
    assert_eq!(
        tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]
            ["matcher"]["exact"],
        "api.asgardeo.io"
    );
    let kc = by_name(&config.key_managers[0].jwks.cluster);
    assert_eq!(kc["type"], "STATIC");
    assert!(
        kc.get("transport_socket").is_none(),
        "plain http on loopback"
    );
    // Microsoft's host is shared by nothing else here, one cluster for it.
    assert_eq!(
        clusters
            .iter()
            .filter(|c| c["name"].as_str().unwrap().contains("microsoftonline"))
            .count(),
        1
    );
    // Upstreams: one per host.
    by_name(&cluster_name("upstream", "http", "127.0.0.1", 3000));
    let admin = by_name(&cluster_name(
        "upstream",
        "https",
        "admin.internal.example",
        8443,
    ));
    assert_eq!(
        admin["transport_socket"]["typed_config"]["sni"],
        "admin.internal.example"
    );
}

fn require_envoy() -> PathBuf {
    let envoy = envoy_path();
    assert!(
        envoy.is_file(),
        "Envoy not found at {} (set KEYGATE_ENVOY or run `make`)",
        envoy.display()
    );
    let wasm = wasm_path();
    assert!(
        wasm.is_file(),
        "filter not built at {} (run `make wasm` or set KEYGATE_WASM)",
        wasm.display()
    );
    envoy
}

fn envoy_validate(envoy: &Path, config: &Path) -> (bool, String) {
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

/// The bootstrap with the live file's filter config in place of its `config_discovery` (what
/// Envoy runs once it loaded the file), as a file next to it. `envoy --mode validate` does not
/// load ECDS files; on this variant it runs the filter's `on_configure` on the plugin config.
fn inlined(bootstrap: &Path, live: &Path, name: &str) -> PathBuf {
    let mut envoy = yaml(bootstrap);
    let resource = yaml(live)["resources"][0].clone();
    let filter = envoy
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0",
        )
        .unwrap();
    assert!(filter.get("config_discovery").is_some(), "{filter}");
    *filter = serde_json::json!({
        "name": resource["name"],
        "typed_config": resource["typed_config"],
    });
    let path = bootstrap.with_file_name(name);
    std::fs::write(&path, serde_saphyr::to_string(&envoy).unwrap()).unwrap();
    path
}

#[test]
fn envoy_validates_the_bootstrap_and_its_container_variant() {
    let envoy = require_envoy();
    let g = generate(&["--wasm", &wasm_arg()]);
    let (ok, log) = envoy_validate(&envoy, &g.out.join("envoy.yaml"));
    assert!(ok, "envoy --mode validate failed:\n{log}");
    assert!(log.contains("OK"), "{log}");
    let live = g.out.join("live/keygate-filter.yaml");
    let with_filter = inlined(&g.out.join("envoy.yaml"), &live, "inlined.yaml");
    let (ok, log) = envoy_validate(&envoy, &with_filter);
    assert!(ok, "the live filter config failed validation:\n{log}");

    // The container variant points at in-container paths; swap in the real ones.
    let compose_yaml = read(&g.out.join("compose/envoy.yaml"));
    assert!(compose_yaml.contains("/etc/keygate/live/keygate-filter.yaml"));
    let compose_live = std::path::absolute(g.out.join("compose/live")).unwrap();
    let local_copy = g.out.join("compose-validate.yaml");
    std::fs::write(
        &local_copy,
        compose_yaml.replace("/etc/keygate/live", compose_live.to_str().unwrap()),
    )
    .unwrap();
    let (ok, log) = envoy_validate(&envoy, &local_copy);
    assert!(ok, "container bootstrap failed validation:\n{log}");
    let container_live = read(&compose_live.join("keygate-filter.yaml"));
    assert!(container_live.contains("/etc/keygate/keygate.wasm"));
    let live_copy = g.out.join("compose-live.yaml");
    std::fs::write(
        &live_copy,
        container_live.replace("/etc/keygate/keygate.wasm", &wasm_arg()),
    )
    .unwrap();
    let with_filter = inlined(&local_copy, &live_copy, "compose-inlined.yaml");
    let (ok, log) = envoy_validate(&envoy, &with_filter);
    assert!(ok, "container filter config failed validation:\n{log}");
}

#[test]
fn envoy_validates_the_xds_variant_of_the_filter() {
    // What a fleet runs: the listener's keygate filter subscribes over ADS (xds/http-filter.json)
    // to the resource an xDS server serves (xds/keygate-filter.json, named `keygate`).
    let envoy = require_envoy();
    let g = generate(&["--wasm", &wasm_arg()]);
    let filter: Value = serde_json::from_str(&read(&g.out.join("xds/http-filter.json"))).unwrap();
    let resource: Value =
        serde_json::from_str(&read(&g.out.join("xds/keygate-filter.json"))).unwrap();
    assert_eq!(filter["name"], resource["name"]);
    assert_eq!(
        filter["config_discovery"]["type_urls"][0],
        resource["typed_config"]["@type"]
    );
    let mut bootstrap = yaml(&g.out.join("envoy.yaml"));
    *bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0",
        )
        .unwrap() = filter;
    bootstrap["dynamic_resources"] = serde_json::json!({"ads_config": {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_server"}}],
    }});
    bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "xds_server",
            "type": "STATIC",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {"cluster_name": "xds_server", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18000}}}}
            ]}]},
        }));
    let path = g.out.join("xds-validate.yaml");
    std::fs::write(&path, serde_saphyr::to_string(&bootstrap).unwrap()).unwrap();
    let (ok, log) = envoy_validate(&envoy, &path);
    assert!(ok, "the ADS variant failed validation:\n{log}");
    // The served resource is the live file's, so it passes the filter's on_configure the same way.
    let live = yaml(&g.out.join("live/keygate-filter.yaml"));
    assert_eq!(live["resources"][0], resource);
}

#[test]
fn envoy_refuses_a_broken_bootstrap() {
    // Guards the test above: validation really checks the file, and it runs the filter's
    // on_configure on the plugin config of the live file.
    let envoy = require_envoy();
    let g = generate(&["--wasm", &wasm_arg()]);
    let broken = g.out.join("broken.yaml");
    std::fs::write(
        &broken,
        read(&g.out.join("envoy.yaml")).replace("REJECT_REQUEST", "REJECT_SOMETIMES"),
    )
    .unwrap();
    let (ok, _) = envoy_validate(&envoy, &broken);
    assert!(!ok);

    let live = g.out.join("live/keygate-filter.yaml");
    let mut resource = yaml(&live);
    let value = resource
        .pointer_mut("/resources/0/typed_config/config/configuration/value")
        .unwrap();
    let mut config: Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    config["surprise"] = Value::from(true);
    *value = Value::from(config.to_string());
    let bad_live = g.out.join("bad-live.yaml");
    std::fs::write(&bad_live, serde_saphyr::to_string(&resource).unwrap()).unwrap();
    let bad_config = inlined(&g.out.join("envoy.yaml"), &bad_live, "bad-config.yaml");
    let (ok, log) = envoy_validate(&envoy, &bad_config);
    assert!(
        !ok,
        "the filter accepted an unknown plugin-config field:\n{log}"
    );
}

/// Writes `resource` as YAML next to the generated manifests and checks it alone.
fn istio_check_value(dir: &Path, name: &str, resource: &Value) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, serde_saphyr::to_string(resource).unwrap()).unwrap();
    let (code, _, err) = istio_check(&[path]);
    (code, err)
}

/// A manifest digest as `keygate oci` prints it (any 64 hex digits do here).
const DIGEST: &str = "661d7effdd5299a513d5c960cd60c5cd9adea3a560ed44a279d04330d5b8dbe5";

#[test]
fn a_wasm_sha256_that_is_no_sha256_is_refused_before_anything_is_written() {
    let (_server, url) = serve_fixture("keycloak", "/realms/shop");
    let dir = temp_dir("gen-sha");
    std::fs::write(dir.join("keygate.yaml"), declaration(&url)).unwrap();
    for bad in ["abc", &"g".repeat(64), &format!("md5:{DIGEST}")] {
        let result = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["generate", "--input", "keygate.yaml", "--out", "out"])
            .args(["--wasm", &wasm_arg(), "--wasm-sha256", bad])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(result.status.code(), Some(2), "{bad}: {}", stderr(&result));
        assert!(
            stderr(&result).contains("--wasm-sha256"),
            "{}",
            stderr(&result)
        );
        assert!(!dir.join("out").exists(), "{bad}: nothing written");
    }
    // Without --wasm-sha256 the WasmPlugin has the manifest digest of the image `keygate oci`
    // packs from --wasm.
    let g = generate(&["--wasm", &wasm_arg()]);
    let plugin = yaml(&g.out.join("istio").join("wasmplugin.yaml"));
    let image = keygate::cli::oci::build(&std::fs::read(wasm_path()).unwrap(), "0.1.0").unwrap();
    assert_eq!(plugin["spec"]["sha256"], image.manifest_hex(), "{plugin}");
}

#[test]
fn istio_manifests_validate_against_istios_schemas() {
    let g = generate(&[
        "--wasm",
        &wasm_arg(),
        "--wasm-url",
        "oci://registry.example/keygate:1",
        "--wasm-sha256",
        &format!("sha256:{}", DIGEST.to_ascii_uppercase()),
    ]);
    let dir = g.out.join("istio");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let (code, out, err) = istio_check(&files);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{out}"
    );
    let mut kinds: Vec<String> = files
        .iter()
        .map(|path| yaml(path)["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    // JWKS hosts: loopback (http: no DestinationRule), asgardeo, microsoft (https).
    assert_eq!(
        kinds,
        [
            "DestinationRule",
            "DestinationRule",
            "ServiceEntry",
            "ServiceEntry",
            "ServiceEntry",
            "WasmPlugin"
        ]
    );

    let plugin = yaml(&dir.join("wasmplugin.yaml"));
    let spec = &plugin["spec"];
    assert_eq!(spec["url"], "oci://registry.example/keygate:1");
    assert_eq!(spec["sha256"], DIGEST, "lowercase hex, no prefix");
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["selector"]["matchLabels"]["app"], "pets");
    assert_eq!(plugin["metadata"]["namespace"], "shop");
    let config: PluginConfig = serde_json::from_value(spec["pluginConfig"].clone()).unwrap();
    assert_eq!(
        config.key_managers[1].jwks.cluster,
        "outbound|443||api.asgardeo.io"
    );
    assert_eq!(config.key_managers[1].jwks.authority, "api.asgardeo.io");

    let asgardeo = istio_name("https", "api.asgardeo.io", 443);
    let se = yaml(&dir.join(format!("serviceentry-{asgardeo}.yaml")));
    assert_eq!(se["metadata"]["name"], asgardeo.as_str());
    assert_eq!(se["spec"]["hosts"][0], "api.asgardeo.io");
    assert_eq!(se["spec"]["ports"][0]["number"], 443);
    let dr = yaml(&dir.join(format!("destinationrule-{asgardeo}.yaml")));
    assert_eq!(
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"],
        "SIMPLE"
    );
    assert_eq!(
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"],
        "api.asgardeo.io"
    );
}

#[test]
fn the_schema_check_refuses_tampered_manifests() {
    // Guards the test above: each tampered copy of a generated manifest is refused, naming the field.
    let g = generate(&["--wasm", &wasm_arg()]);
    let dir = g.out.join("istio");
    let plugin = yaml(&dir.join("wasmplugin.yaml"));
    let rule = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("destinationrule-")
        })
        .unwrap();
    let rule = yaml(&rule);
    let entry = yaml(&dir.join(format!(
        "serviceentry-{}.yaml",
        rule["metadata"]["name"].as_str().unwrap()
    )));
    let tampered_dir = temp_dir("istio-tampered");

    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut bad = plugin.clone();
    bad["spec"]["phase"] = Value::from("BEFORE_EVERYTHING");
    cases.push((
        "phase.yaml",
        bad,
        "data/spec/phase must be equal to one of the allowed values",
    ));
    let mut bad = plugin.clone();
    bad["spec"]["plugin_config"] = bad["spec"]["pluginConfig"].take();
    bad["spec"].as_object_mut().unwrap().remove("pluginConfig");
    cases.push((
        "typo.yaml",
        bad,
        "data/spec/plugin_config is not a field of the schema",
    ));
    let mut bad = plugin.clone();
    bad["spec"]["targetRefs"] = serde_json::json!([{"group": "gateway.networking.k8s.io",
                                                    "kind": "Gateway", "name": "ingress"}]);
    cases.push((
        "both.yaml",
        bad,
        "only one of selector, targetRef and targetRefs can be set",
    ));
    let mut bad = plugin.clone();
    bad["spec"]["url"] = Value::from(7);
    cases.push(("url.yaml", bad, "data/spec/url must be string"));
    let mut bad = rule.clone();
    bad["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"] = Value::from("TLS");
    cases.push((
        "mode.yaml",
        bad,
        "portLevelSettings/0/tls/mode must be equal to one of",
    ));
    let mut bad = entry.clone();
    bad["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    cases.push((
        "port.yaml",
        bad,
        "data/spec/ports/0 must have required property",
    ));
    let mut bad = entry.clone();
    bad["metadata"]["name"] = Value::from("Keygate_JWKS");
    cases.push(("name.yaml", bad, "is not a DNS-1123 subdomain"));
    let mut bad = entry.clone();
    bad["apiVersion"] = Value::from("networking.istio.io/v9");
    cases.push(("version.yaml", bad, "no Istio model"));

    for (name, resource, want) in cases {
        let (code, err) = istio_check_value(&tampered_dir, name, &resource);
        assert_eq!(code, Some(1), "{name} was accepted");
        assert!(err.contains(want), "{name}: want `{want}` in:\n{err}");
    }
    // The untampered originals written the same way still pass: the refusals are the tampering.
    for (name, resource) in [("p.yaml", &plugin), ("r.yaml", &rule), ("e.yaml", &entry)] {
        let (code, err) = istio_check_value(&tampered_dir, name, resource);
        assert_eq!(code, Some(0), "{name}: {err}");
    }
}

/// The compose service's volumes as (host side, container side).
fn compose_volumes(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect()
}

/// Every file the container bootstrap and its live filter config name is mounted from the output
/// directory by a relative path, and the compose file passes the Compose Specification's schema.
fn compose_is_self_contained(out: &Path) -> Value {
    let compose_file = out.join("docker-compose.yaml");
    let (code, ok, err) = compose_check(std::slice::from_ref(&compose_file));
    assert_eq!(code, Some(0), "{ok}{err}");
    let compose = yaml(&compose_file);
    let service = compose["services"]["envoy"].clone();
    let volumes = compose_volumes(&service);
    for (from, to) in &volumes {
        assert!(from.starts_with("./"), "{from}:{to} is not relative");
        assert!(
            out.join(from).exists(),
            "{from} is not in {}",
            out.display()
        );
    }
    let container_envoy = read(&out.join("compose/envoy.yaml"));
    let container_live = read(&out.join("compose/live/keygate-filter.yaml"));
    let named = |text: &str| -> Vec<String> {
        text.split(['"', ' ', '\n'])
            .filter(|word| word.starts_with("/etc/"))
            .map(str::to_string)
            .collect()
    };
    for path in named(&container_envoy)
        .iter()
        .chain(&named(&container_live))
    {
        let mounted = volumes
            .iter()
            .any(|(_, to)| path == to || path.starts_with(&format!("{to}/")));
        // The image's own CA bundle is the one path that is not mounted.
        assert!(
            mounted || path == "/etc/ssl/certs/ca-certificates.crt",
            "{path} is named by the container bootstrap but not mounted: {volumes:?}"
        );
    }
    service
}

#[test]
fn docker_compose_agrees_with_the_bootstraps() {
    let g = generate(&["--wasm", &wasm_arg()]);
    let service = compose_is_self_contained(&g.out);
    assert!(service["image"]
        .as_str()
        .unwrap()
        .starts_with("envoyproxy/envoy:"));
    let container_envoy = yaml(&g.out.join("compose/envoy.yaml"));
    let host_envoy = yaml(&g.out.join("envoy.yaml"));
    let volumes = compose_volumes(&service);
    let command: Vec<&str> = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let config_in_container = command[command.iter().position(|c| *c == "-c").unwrap() + 1];
    assert!(volumes.iter().any(|(_, to)| to == config_in_container));

    // The live filter config is mounted as a directory (a file mount would not see renames),
    // where the container bootstrap looks for it.
    let live_volume = volumes
        .iter()
        .find(|(_, to)| to == "/etc/keygate/live")
        .expect("live directory mounted");
    assert!(g.out.join(&live_volume.0).is_dir(), "{}", live_volume.0);
    assert_eq!(
        container_envoy.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/config_discovery/config_source/path_config_source/path").unwrap(),
        "/etc/keygate/live/keygate-filter.yaml"
    );

    // The module is a copy inside the output directory, byte for byte the one given.
    let container_wasm = yaml(&g.out.join("compose/live/keygate-filter.yaml"))["resources"][0]
        ["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let wasm_volume = volumes
        .iter()
        .find(|(_, to)| *to == container_wasm)
        .expect("wasm mounted");
    assert_eq!(
        std::fs::read(g.out.join(&wasm_volume.0)).unwrap(),
        std::fs::read(wasm_arg()).unwrap()
    );

    // The key manager and an upstream are on the host's loopback, which a container reaches only
    // on the host's network: Envoy binds the declared addresses and publishes nothing.
    assert_eq!(service["network_mode"], "host");
    assert!(service.get("ports").is_none(), "{service}");
    for pointer in [
        "/static_resources/listeners/0/address",
        "/admin/address",
        "/static_resources/clusters",
    ] {
        assert_eq!(
            container_envoy.pointer(pointer),
            host_envoy.pointer(pointer),
            "{pointer}"
        );
    }
}

#[test]
fn docker_compose_without_loopback_services_publishes_ports_and_carries_the_ca_file() {
    let dir = temp_dir("compose-ca");
    let ca = dir.join("corp-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = look_alike_declaration().replace(
        "  admin: 127.0.0.1:19902\n",
        &format!("  admin: 127.0.0.1:19902\n  ca_file: {}\n", ca.display()),
    );
    let (out, result) = generate_from(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let service = compose_is_self_contained(&out);
    assert!(service.get("network_mode").is_none(), "{service}");
    let ports: Vec<&str> = service["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(ports, ["127.0.0.1:18081:18081", "127.0.0.1:19902:19902"]);
    let container_envoy = yaml(&out.join("compose/envoy.yaml"));
    assert_eq!(
        container_envoy
            .pointer("/static_resources/listeners/0/address/socket_address/address")
            .unwrap(),
        "0.0.0.0"
    );
    // The https clusters trust the copied CA file, mounted where the container bootstrap names it.
    assert_eq!(
        read(&out.join("compose/ca.pem")),
        std::fs::read_to_string(&ca).unwrap()
    );
    let clusters = container_envoy["static_resources"]["clusters"].to_string();
    assert!(clusters.contains("\"/etc/keygate/ca.pem\""), "{clusters}");
    assert!(!clusters.contains(&ca.display().to_string()), "{clusters}");

    // A CA file that is not there is refused by its field.
    let missing = look_alike_declaration().replace(
        "  admin: 127.0.0.1:19902\n",
        "  admin: 127.0.0.1:19902\n  ca_file: /nonexistent/ca.pem\n",
    );
    let (_, result) = generate_from(&missing, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("gateway.ca_file"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn check_validates_without_writing() {
    let (_server, url) = serve_fixture("keycloak", "/realms/shop");
    let dir = temp_dir("check");
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, declaration(&url)).unwrap();
    let out_dir = dir.join("out");
    let out = keygate(&[
        "generate",
        "--check",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("is valid"));
    assert!(!out_dir.exists());
}

/// `generate --check` on a declaration whose one key manager is fetched from `well_known_url`.
fn check_fetched(well_known_url: &str) -> std::process::Output {
    let dir = temp_dir("check-jwks");
    let input = dir.join("keygate.yaml");
    std::fs::write(
        &input,
        format!(
            "gateway: {{environment: production}}\nkey_managers:\n  - name: kc\n    \
             well_known_url: {well_known_url}\n    audiences: [pets]\n"
        ),
    )
    .unwrap();
    keygate(&["generate", "--check", "--input", input.to_str().unwrap()])
}

#[test]
fn check_warns_of_an_unreachable_jwks_with_its_url() {
    // The fixture server publishes discovery only: its JWKS URL answers 404.
    let (server, url) = serve_fixture("keycloak", "/realms/shop");
    let jwks = format!("{}/realms/shop/protocol/openid-connect/certs", server.base);
    let out = check_fetched(&url);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "keygate.yaml:line 4: warning: key manager kc: JWKS {jwks} answered HTTP 404"
        )),
        "{err}"
    );

    // Served: no warning.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Server::start_with(
        listener,
        vec![
            (
                format!("/realms/shop{WELL_KNOWN}"),
                200,
                fixture("keycloak", &base),
            ),
            (
                "/realms/shop/protocol/openid-connect/certs".into(),
                200,
                r#"{"keys": []}"#.into(),
            ),
        ],
    );
    let out = check_fetched(&format!("{}/realms/shop{WELL_KNOWN}", served.base));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("JWKS"), "{}", stderr(&out));
}

#[test]
fn a_wasm_flag_naming_a_missing_file_is_an_error() {
    let (_server, url) = serve_fixture("keycloak", "/realms/shop");
    let dir = temp_dir("missing-wasm");
    std::fs::write(dir.join("keygate.yaml"), declaration(&url)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["generate", "--input", "keygate.yaml", "--out", "out"])
        .args(["--wasm", "nowhere/keygate.wasm"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nowhere/keygate.wasm: --wasm: no such file"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("out").exists());
}

#[test]
fn default_wasm_path_is_absolute_and_points_at_the_release_build() {
    let g = generate(&[]);
    let live = yaml(&g.out.join("live/keygate-filter.yaml"));
    let filename = live
        .pointer("/resources/0/typed_config/config/vm_config/code/local/filename")
        .unwrap();
    let path = PathBuf::from(filename.as_str().unwrap());
    assert!(path.is_absolute());
    assert!(
        path.ends_with("wasm32-wasip1/release/keygate.wasm"),
        "{}",
        path.display()
    );
}

#[test]
fn refused_discovery_stops_generation_with_the_key_manager_line() {
    // Served under realm `other` while the document says `shop`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::start_with(
        listener,
        vec![(
            format!("/realms/other{WELL_KNOWN}"),
            200,
            fixture("keycloak", &base),
        )],
    );
    let dir = temp_dir("refused");
    let input = dir.join("keygate.yaml");
    std::fs::write(
        &input,
        declaration(&format!("{}/realms/other{WELL_KNOWN}", server.base)),
    )
    .unwrap();
    let out = keygate(&[
        "generate",
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 14: key_managers[0].well_known_url") && err.contains("issuer"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
}

/// Appended to declarations that need Istio manifests (last, so line numbers stay).
const ISTIO_BLOCK: &str = "istio: {selector: {app: pets}, image: registry.example/keygate:0.1.0}\n";

/// The YAML files of `dir` (not its subdirectories).
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect()
}

/// Two key managers and two APIs whose hosts differ only in `.` versus `-` (issue 11, finding 1).
fn look_alike_declaration() -> String {
    // Indented lines: no `\` continuations, which would strip the indentation.
    let km = |name: &str, host: &str| {
        [
            format!("  - name: {name}"),
            format!("    well_known_url: https://{host}/.well-known/openid-configuration"),
            "    discovery:".to_string(),
            format!("      issuer: https://{host}"),
            format!("      jwks_uri: https://{host}/jwks\n"),
        ]
        .join("\n")
    };
    format!(
        "\
gateway:
  environment: production
  listen: 127.0.0.1:18081
  admin: 127.0.0.1:19902
key_managers:
{}{}apis:
  - name: corp
    base_path: /corp
    upstream: https://api.example-corp.com
    resources: [{{method: GET, path: /x, scopes: [a]}}]
  - name: example
    base_path: /example
    upstream: https://api-example.corp.com
    resources: [{{method: GET, path: /x, scopes: [a]}}]
",
        km("corp", "idp.example-corp.com"),
        km("example", "idp-example.corp.com")
    ) + ISTIO_BLOCK
}

fn generate_from(text: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let dir = temp_dir("names");
    std::fs::write(dir.join("keygate.yaml"), text).unwrap();
    let mut args = vec!["generate", "--input", "keygate.yaml", "--out", "out"];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(&args)
        .current_dir(&dir)
        .output()
        .unwrap();
    (dir.join("out"), out)
}

#[test]
fn hosts_that_differ_only_in_dots_and_dashes_keep_their_own_clusters() {
    let (out, result) = generate_from(&look_alike_declaration(), &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let config = plugin(&out);
    let envoy = yaml(&out.join("envoy.yaml"));
    let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 4, "two JWKS hosts, two upstreams");
    let endpoint_of = |name: &str| {
        let c = clusters
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name}"));
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Each key manager's JWKS is fetched from its own host.
    let kms: Vec<(&str, &str)> = config
        .key_managers
        .iter()
        .map(|km| (km.name.as_str(), km.jwks.cluster.as_str()))
        .collect();
    assert_ne!(kms[0].1, kms[1].1);
    assert_eq!(endpoint_of(kms[0].1), "idp.example-corp.com");
    assert_eq!(endpoint_of(kms[1].1), "idp-example.corp.com");
    // Each API is routed to its own upstream.
    let routes = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    let upstream_of = |route: &str| {
        let r = routes.iter().find(|r| r["name"] == route).unwrap();
        endpoint_of(r["route"]["cluster"].as_str().unwrap())
    };
    assert_eq!(upstream_of("api_corp"), "api.example-corp.com");
    assert_eq!(upstream_of("api_example"), "api-example.corp.com");

    // Istio: both hosts keep a ServiceEntry and a DestinationRule, all valid.
    let istio = manifest_files(&out.join("istio"));
    let mut entry_hosts: Vec<String> = istio
        .iter()
        .map(|p| yaml(p))
        .filter(|r| r["kind"] == "ServiceEntry")
        .map(|r| r["spec"]["hosts"][0].as_str().unwrap().to_string())
        .collect();
    entry_hosts.sort();
    assert_eq!(
        entry_hosts,
        ["idp-example.corp.com", "idp.example-corp.com"]
    );
    assert_eq!(
        istio.len(),
        5,
        "WasmPlugin + 2 ServiceEntry + 2 DestinationRule"
    );
    let (code, _, err) = istio_check(&istio);
    assert_eq!(code, Some(0), "{err}");

    // And Envoy accepts the bootstrap with its filter configured.
    let envoy_bin = require_envoy();
    let (ok, log) = envoy_validate(&envoy_bin, &out.join("envoy.yaml"));
    assert!(ok, "envoy --mode validate failed:\n{log}");
}

#[test]
fn a_name_istio_would_give_two_targets_stops_generation() {
    // Istio's JWKS cluster is `outbound|port||host`: plain http and TLS on one host and port
    // cannot both be served, so generation refuses rather than drop one.
    let text = "\
gateway: {environment: production}
key_managers:
  - name: plain
    well_known_url: http://keys.example:8443/a/.well-known/openid-configuration
    discovery: {issuer: \"http://keys.example:8443/a\", jwks_uri: \"http://keys.example:8443/a/jwks\"}
  - name: tls
    well_known_url: https://keys.example:8443/b/.well-known/openid-configuration
    discovery: {issuer: \"https://keys.example:8443/b\", jwks_uri: \"https://keys.example:8443/b/jwks\"}
"
    .to_string()
        + ISTIO_BLOCK;
    let (out, result) = generate_from(&text, &["--allow-http"]);
    assert_ne!(result.status.code(), Some(0), "{}", stdout(&result));
    let err = stderr(&result);
    assert!(
        err.contains("outbound|8443||keys.example")
            && err.contains("http://keys.example:8443")
            && err.contains("https://keys.example:8443"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn regenerating_rewrites_only_what_changed_and_says_when_envoy_needs_a_restart() {
    use std::os::unix::fs::MetadataExt;
    let g = generate(&["--wasm", &wasm_arg()]);
    let dir = g.out.parent().unwrap().to_path_buf();
    let input = dir.join("keygate.yaml");
    let original = read(&input);
    let again = |text: &str| {
        std::fs::write(&input, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args([
                "generate",
                "--input",
                "keygate.yaml",
                "--out",
                "out",
                "--wasm",
            ])
            .arg(wasm_arg())
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let live = g.out.join("live/keygate-filter.yaml");
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();

    // The same declaration: nothing is touched (a running Envoy reloads nothing).
    let before = (inode(&live), inode(&g.out.join("envoy.yaml")));
    let out = again(&original);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("(replaced)"), "{}", stdout(&out));
    assert_eq!(before, (inode(&live), inode(&g.out.join("envoy.yaml"))));

    // Applications only: the live file is replaced (by a rename: a new inode), the bootstrap not.
    let more_clients = original.replace(
        "      - {key_manager: asgardeo, client_id: 9b2f0c1e}\n",
        "      - {key_manager: asgardeo, client_id: 9b2f0c1e}\n      - {key_manager: asgardeo, client_id: 7c3d1f2a}\n",
    );
    assert_ne!(more_clients, original);
    let out = again(&more_clients);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("restart required"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("live/keygate-filter.yaml (replaced)"));
    assert!(stdout(&out).contains("envoy.yaml (unchanged)"));
    assert_ne!(inode(&live), before.0);
    assert_eq!(inode(&g.out.join("envoy.yaml")), before.1);
    assert!(read(&live).contains("7c3d1f2a"));

    // A new listener address and a new API on a new upstream: written, and a restart is named.
    let moved = more_clients
        .replace("listen: 127.0.0.1:18080", "listen: 127.0.0.1:18081")
        .replace(
            "apis:\n",
            "apis:\n  - name: stock\n    base_path: /stock/v1\n    upstream: http://127.0.0.1:3999\n    resources:\n      - {method: GET, path: /items, scopes: [stock:read]}\n",
        );
    let out = again(&moved);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("keygate: restart required: envoy.yaml changed ("))
        .unwrap_or_else(|| panic!("no restart line: {err}"));
    assert!(line.contains("listener address"), "{line}");
    let upstream = cluster_name("upstream", "http", "127.0.0.1", 3999);
    assert!(line.contains(&format!("new cluster {upstream}")), "{line}");
    assert!(line.contains("routes"), "{line}");
    assert!(read(&g.out.join("envoy.yaml")).contains("18081"));
    assert!(
        read(&live).contains("/stock/v1"),
        "the filter config is written too"
    );
    // Once written, the same declaration again is no change.
    let out = again(&moved);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A refused declaration writes nothing at all.
    let files = snapshot(&g.out);
    let refused = moved.replace(
        "      - {api: pets}\n",
        "      - {api: pets}\n      - {api: no-such-api}\n",
    );
    assert_ne!(refused, moved);
    let out = again(&refused);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-api"), "{err}");
    assert!(err.contains("nothing written"), "{err}");
    assert_eq!(
        snapshot(&g.out),
        files,
        "a refused declaration changed the output"
    );
}

/// A key manager whose introspection endpoint is on another host than its JWKS, and one whose
/// endpoint shares the JWKS host.
fn introspection_declaration() -> String {
    "\
gateway:
  environment: production
  listen: 127.0.0.1:18082
  admin: 127.0.0.1:19903
key_managers:
  - name: split
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    introspection: {client_id: gateway, client_secret_env: SPLIT_SECRET}
    discovery:
      issuer: https://idp.example.com
      jwks_uri: https://idp.example.com/jwks
      introspection_endpoint: https://introspect.example.com/oauth2/introspect
  - name: shared
    well_known_url: https://sso.example.com/.well-known/openid-configuration
    introspection: {client_id: gateway, client_secret_env: SHARED_SECRET}
    discovery:
      issuer: https://sso.example.com
      jwks_uri: https://sso.example.com/jwks
      introspection_endpoint: https://sso.example.com/introspect
"
    .to_string()
        + ISTIO_BLOCK
}

#[test]
fn introspection_gets_its_cluster_and_only_the_secrets_name() {
    let (out, result) = generate_from(&introspection_declaration(), &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    assert!(
        stdout(&result).contains("SPLIT_SECRET in its environment"),
        "{}",
        stdout(&result)
    );
    let config = plugin(&out);
    let split = config.key_managers[0].introspection.clone().unwrap();
    assert_eq!(
        split.cluster,
        cluster_name("introspection", "https", "introspect.example.com", 443)
    );
    assert_eq!(
        (split.authority.as_str(), split.path.as_str()),
        ("introspect.example.com", "/oauth2/introspect")
    );
    let shared = config.key_managers[1].introspection.clone().unwrap();
    assert_eq!(
        shared.cluster, config.key_managers[1].jwks.cluster,
        "same host, same cluster"
    );

    let envoy = yaml(&out.join("envoy.yaml"));
    let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clusters.len(), 3, "{names:?}");
    assert!(names.contains(&split.cluster.as_str()));
    let live = yaml(&out.join("live/keygate-filter.yaml"));
    let vm = &live["resources"][0]["typed_config"]["config"]["vm_config"];
    assert_eq!(
        vm["environment_variables"]["host_env_keys"],
        serde_json::json!(["SHARED_SECRET", "SPLIT_SECRET"])
    );
    let compose = yaml(&out.join("docker-compose.yaml"));
    assert_eq!(
        compose["services"]["envoy"]["environment"],
        serde_json::json!(["SHARED_SECRET", "SPLIT_SECRET"])
    );

    let plugin_manifest = yaml(&out.join("istio/wasmplugin.yaml"));
    assert_eq!(
        plugin_manifest["spec"]["vmConfig"]["env"],
        serde_json::json!([{"name": "SHARED_SECRET", "valueFrom": "HOST"},
                           {"name": "SPLIT_SECRET", "valueFrom": "HOST"}])
    );
    let istio = manifest_files(&out.join("istio"));
    let mut hosts: Vec<String> = istio
        .iter()
        .map(|p| yaml(p))
        .filter(|r| r["kind"] == "ServiceEntry")
        .map(|r| r["spec"]["hosts"][0].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "idp.example.com",
            "introspect.example.com",
            "sso.example.com"
        ]
    );
    let (code, _, err) = istio_check(&istio);
    assert_eq!(code, Some(0), "{err}");
    // `envoy --mode validate` on the bootstrap with the live filter config inlined runs the
    // filter's on_configure: it needs the secrets in Envoy's environment, and refuses without
    // them, naming each field (and never a value).
    let envoy = require_envoy();
    let with_filter = inlined(
        &out.join("envoy.yaml"),
        &out.join("live/keygate-filter.yaml"),
        "inlined.yaml",
    );
    let validate = |secrets: &[(&str, &str)]| {
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(&with_filter)
            .env_remove("SPLIT_SECRET")
            .env_remove("SHARED_SECRET")
            .envs(secrets.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    };
    let (ok, log) = validate(&[
        ("SPLIT_SECRET", "split-value"),
        ("SHARED_SECRET", "shared-value"),
    ]);
    assert!(ok, "envoy --mode validate failed:\n{log}");
    let (ok, log) = validate(&[("SPLIT_SECRET", "split-value")]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("key_managers[1].introspection.client_secret_env"),
        "{log}"
    );
    assert!(
        !log.contains("key_managers[0].introspection") && !log.contains("split-value"),
        "{log}"
    );
}

#[test]
fn introspection_without_an_endpoint_is_refused_naming_the_field() {
    let text = introspection_declaration().replace(
        "      introspection_endpoint: https://introspect.example.com/oauth2/introspect\n",
        "",
    );
    let (_, result) = generate_from(&text, &["--check"]);
    assert_eq!(result.status.code(), Some(1));
    let err = stderr(&result);
    assert!(
        err.contains("line 8: key_managers[0].introspection:"),
        "{err}"
    );
    assert!(err.contains("no introspection endpoint"), "{err}");
    // Both ways out: the issuer's RFC 8414 metadata, or the endpoint declared outright.
    assert!(
        err.contains("RFC 8414") && err.contains("`introspection.endpoint`"),
        "{err}"
    );
}

#[test]
fn warns_for_each_key_manager_without_audiences_naming_its_line() {
    let (_server, url) = serve_fixture("keycloak", "/realms/shop");
    let dir = temp_dir("gen-audience");
    std::fs::write(dir.join("keygate.yaml"), declaration(&url)).unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["generate", "--input", "keygate.yaml", "--out", "out"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "stderr: {}", stderr(&result));
    let text = stderr(&result);
    let warning = |name: &str, line: usize| {
        format!(
            "keygate.yaml:line {line}: warning: key manager {name}: add `audiences: [<this API's \
             identifier>]`; without it a token minted for any other resource server of this key \
             manager is accepted\n"
        )
    };
    // keycloak declares audiences; asgardeo and entra do not. Each warning names the line of
    // its key manager's `- name:` in the declaration.
    let line_of = |name: &str| {
        let entry = format!("- name: {name}");
        declaration(&url)
            .lines()
            .position(|l| l.trim_start() == entry)
            .map(|i| i + 1)
            .unwrap()
    };
    assert!(
        text.contains(&warning("asgardeo", line_of("asgardeo"))),
        "{text}"
    );
    assert!(text.contains(&warning("entra", line_of("entra"))), "{text}");
    assert!(!text.contains("warning: key manager keycloak"), "{text}");
    assert_eq!(text.matches("add `audiences").count(), 2, "{text}");
}

#[test]
fn opaque_tokens_asked_of_several_key_managers_are_warned_about_and_can_be_routed() {
    let text = introspection_declaration()
        + "\
apis:
  - name: pets
    base_path: /pets
  - name: orders
    base_path: /orders
    key_managers: [shared]
";
    let (out, result) = generate_from(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let err = stderr(&result);
    let pets_line = text.lines().position(|l| l == "  - name: pets").unwrap() + 1;
    assert!(
        err.contains(&format!(
            "line {pets_line}: warning: API pets: an opaque token is introspected at key \
             managers split, shared in this order"
        )),
        "{err}"
    );
    assert!(!err.contains("API orders"), "{err}");
    let config = plugin(&out);
    assert_eq!(config.apis[1].key_managers, ["shared"]);
    assert!(config.apis[0].key_managers.is_empty());
}

fn introspecting_declaration(issuer: &str, introspection: &str) -> String {
    format!(
        "\
gateway:
  environment: production
key_managers:
  - name: shop
    well_known_url: {issuer}{WELL_KNOWN}
    introspection: {introspection}
"
    )
}

#[test]
fn the_introspection_endpoint_falls_back_to_rfc8414_metadata_of_the_same_issuer() {
    let introspect = "{client_id: gateway, client_secret_env: SHOP_SECRET}";
    let metadata = |issuer: &str| {
        serde_json::json!({"issuer": issuer,
            "introspection_endpoint": format!("{issuer}/introspect")})
        .to_string()
    };
    let (server, issuer) = rfc8414_server(Some(&metadata));
    let text = introspecting_declaration(&issuer, introspect);
    let (out, result) = generate_from(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let config = plugin(&out);
    let found = config.key_managers[0].introspection.clone().unwrap();
    assert_eq!(found.endpoint, format!("{issuer}/introspect"));
    assert_eq!(found.path, "/realms/shop/introspect");
    drop(server);

    // Metadata of another issuer is not trusted; without any endpoint the error names both ways.
    let other = |_: &str| {
        serde_json::json!({"issuer": "https://evil.example",
            "introspection_endpoint": "https://evil.example/introspect"})
        .to_string()
    };
    for metadata in [Some(&other as &dyn Fn(&str) -> String), None] {
        let (server, issuer) = rfc8414_server(metadata);
        let text = introspecting_declaration(&issuer, introspect);
        let (_, result) = generate_from(&text, &["--wasm", &wasm_arg()]);
        assert_eq!(result.status.code(), Some(1), "{}", stdout(&result));
        let err = stderr(&result);
        assert!(err.contains("introspection"), "{err}");
        assert!(
            err.contains("RFC 8414") && err.contains("introspection.endpoint"),
            "{err}"
        );
        assert!(!err.contains("evil.example"), "{err}");
        drop(server);
    }

    // Or the operator says where it is.
    let (server, issuer) = rfc8414_server(None);
    let explicit = format!(
        "{{client_id: gateway, client_secret_env: SHOP_SECRET, endpoint: {issuer}/oauth2/introspect}}"
    );
    let (out, result) = generate_from(
        &introspecting_declaration(&issuer, &explicit),
        &["--wasm", &wasm_arg()],
    );
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let found = plugin(&out).key_managers[0].introspection.clone().unwrap();
    assert_eq!(found.endpoint, format!("{issuer}/oauth2/introspect"));
    drop(server);
}
