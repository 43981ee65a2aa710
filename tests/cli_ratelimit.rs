//! Tiers in `keygate generate`: the plugin config carries them, an unknown tier is refused with its
//! line, and with `gateway.rate_limit_service` the Envoy bootstrap runs Envoy's rate-limit filter
//! (checked by `envoy --mode validate`) and `ratelimit/config.yaml` is written for
//! envoyproxy/ratelimit.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::*;
use keygate::config::{Limiter, PluginConfig};
use serde_json::{json, Value};

fn declaration(gateway_extra: &str, sub_tier: &str) -> String {
    format!(
        "\
gateway:
  environment: production
  listen: 127.0.0.1:18080
  admin: 127.0.0.1:19901
{gateway_extra}key_managers:
  - name: idp
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    audiences: [api://pets]
    discovery: {{issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}}
tiers:
  - {{name: bronze, requests: 1000, per: minute}}
  - {{name: gold, requests: 20000, per: hour}}
apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:3000
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
applications:
  - name: mobile-shop
    client_ids:
      - {{key_manager: idp, client_id: abc}}
    subscriptions:
      - {{api: pets, tier: {sub_tier}}}
  - name: kiosk
    client_ids:
      - {{key_manager: idp, client_id: def}}
    subscriptions:
      - {{api: pets}}
istio: {{selector: {{app: pets}}, image: registry.example/keygate:0.1.0}}
"
    )
}

/// Writes the declaration and runs `generate` into `out/`.
fn generate(name: &str, text: &str) -> (PathBuf, std::process::Output) {
    let dir = temp_dir(name);
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, text).unwrap();
    let out = dir.join("out");
    let result = keygate(&[
        "generate",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--wasm",
        wasm_path().to_str().unwrap(),
    ]);
    (out, result)
}

fn hcm(bootstrap: &Value) -> &Value {
    bootstrap
        .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .unwrap()
}

fn filter_names(bootstrap: &Value) -> Vec<String> {
    hcm(bootstrap)["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn envoy_validate(config: &Path) -> (bool, String) {
    let out = Command::new(envoy_path())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn the_plugin_config_carries_tiers_and_the_local_limiter_by_default() {
    let (out, result) = generate("tiers-local", &declaration("", "bronze"));
    assert!(result.status.success(), "{}", stderr(&result));
    let plugin: PluginConfig =
        serde_json::from_str(&read(&out.join("plugin-config.json"))).unwrap();
    assert_eq!(plugin.tiers.len(), 2);
    assert_eq!(
        (
            plugin.tiers[0].name.as_str(),
            plugin.tiers[0].requests,
            plugin.tiers[0].per.as_str()
        ),
        ("bronze", 1000, "minute")
    );
    assert_eq!(
        plugin.applications[0].subscriptions[0].tier.as_deref(),
        Some("bronze")
    );
    assert_eq!(plugin.applications[1].subscriptions[0].tier, None);
    assert_eq!(plugin.limiter, Limiter::Local);
    // One Envoy: the filter counts; no rate-limit filter, no service cluster.
    let bootstrap = yaml(&out.join("envoy.yaml"));
    assert_eq!(
        filter_names(&bootstrap),
        ["keygate", "envoy.filters.http.router"]
    );
    assert!(!read(&out.join("envoy.yaml")).contains("keygate_ratelimit"));
}

#[test]
fn an_unknown_tier_is_refused_with_its_line() {
    let text = declaration("", "silver");
    let line = text
        .lines()
        .position(|l| l.contains("tier: silver"))
        .unwrap()
        + 1;
    let (_, result) = generate("tiers-unknown", &text);
    assert_eq!(result.status.code(), Some(1));
    let err = stderr(&result);
    assert!(
        err.contains(&format!(
            "line {line}: applications[0].subscriptions[0].tier: unknown tier \"silver\""
        )),
        "{err}"
    );
}

#[test]
fn bad_tiers_are_refused_naming_the_field() {
    let cases = [
        (
            "{name: bronze, requests: 1000, per: minute}",
            "{name: bronze, requests: 0, per: minute}",
            "tiers[0].requests: 0 is outside 1..=1000000000",
        ),
        (
            "{name: bronze, requests: 1000, per: minute}",
            "{name: bronze, requests: 1000, per: week}",
            "tiers[0].per: \"week\": one of second, minute, hour, day",
        ),
        (
            "{name: gold, requests: 20000, per: hour}",
            "{name: bronze, requests: 20000, per: hour}",
            "tiers[1].name: name \"bronze\" is already used at tiers[0].name",
        ),
        (
            "{name: gold, requests: 20000, per: hour}",
            "{name: \"go ld\", requests: 20000, per: hour}",
            "tiers[1].name: \"go ld\": a tier name is letters, digits",
        ),
    ];
    for (from, to, message) in cases {
        let text = declaration("", "bronze").replace(from, to);
        let line = text.lines().position(|l| l.contains(to)).unwrap() + 1;
        let (_, result) = generate("tiers-bad", &text);
        assert_eq!(result.status.code(), Some(1), "{to}");
        let err = stderr(&result);
        assert!(
            err.contains(&format!("line {line}: {message}")),
            "{to}:\n{err}"
        );
    }
    let (_, result) = generate(
        "tiers-bad-service",
        &declaration("  rate_limit_service: \"ratelimit:0\"\n", "bronze"),
    );
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("gateway.rate_limit_service: `ratelimit:0` is not HOST:PORT"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn a_rate_limit_service_gets_envoys_rate_limit_filter_and_its_config() {
    let (out, result) = generate(
        "tiers-fleet",
        &declaration("  rate_limit_service: ratelimit.internal:8081\n", "bronze"),
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let plugin: PluginConfig =
        serde_json::from_str(&read(&out.join("plugin-config.json"))).unwrap();
    assert_eq!(
        plugin.limiter,
        Limiter::Service,
        "the filter must not count too"
    );
    // Istio's sidecars run no rate-limit filter from these manifests: they keep counting.
    let wasm_plugin = yaml(&out.join("istio/wasmplugin.yaml"));
    let istio_plugin: PluginConfig =
        serde_json::from_value(wasm_plugin["spec"]["pluginConfig"].clone()).unwrap();
    assert_eq!(istio_plugin.limiter, Limiter::Local);
    assert_eq!(istio_plugin.tiers, plugin.tiers);

    let bootstrap = yaml(&out.join("envoy.yaml"));
    assert_eq!(
        filter_names(&bootstrap),
        [
            "keygate",
            "envoy.filters.http.ratelimit",
            "envoy.filters.http.router"
        ]
    );
    let filter = &hcm(&bootstrap)["http_filters"][1]["typed_config"];
    assert_eq!(filter["domain"], "keygate");
    assert_eq!(filter["failure_mode_deny"], true, "fail closed by default");
    assert_eq!(
        filter["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"],
        "keygate_ratelimit"
    );
    let cluster = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "keygate_ratelimit")
        .unwrap();
    let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(endpoint["address"], "ratelimit.internal");
    assert_eq!(endpoint["port_value"], 8081);
    assert!(cluster["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
        .get("http2_protocol_options")
        .is_some());
    // Descriptors from the identity headers keygate writes (and strips from every request).
    let actions = &hcm(&bootstrap)["route_config"]["virtual_hosts"][0]["rate_limits"][0]["actions"];
    assert_eq!(
        actions,
        &json!([
            {"request_headers": {"header_name": "x-keygate-tier", "descriptor_key": "tier"}},
            {"request_headers": {"header_name": "x-keygate-application", "descriptor_key": "application"}},
            {"request_headers": {"header_name": "x-keygate-api", "descriptor_key": "api"}},
        ])
    );

    // The service's configuration: one descriptor per tier, a counter per application and API.
    let service = yaml(&out.join("ratelimit/config.yaml"));
    assert_eq!(service["domain"], "keygate");
    let descriptors = service["descriptors"].as_array().unwrap();
    assert_eq!(descriptors.len(), 2);
    assert_eq!(
        descriptors[0],
        json!({"key": "tier", "value": "bronze", "descriptors": [{"key": "application",
            "descriptors": [{"key": "api", "rate_limit": {"unit": "minute", "requests_per_unit": 1000}}]}]})
    );
    assert_eq!(descriptors[1]["value"], "gold");
    assert_eq!(
        descriptors[1]["descriptors"][0]["descriptors"][0]["rate_limit"],
        json!({"unit": "hour", "requests_per_unit": 20000})
    );

    // Real Envoy accepts it, the filter's on_configure included.
    let (ok, log) = envoy_validate(&out.join("envoy.yaml"));
    assert!(ok, "envoy --mode validate failed:\n{log}");
    // ... and refuses it when the rate-limit filter is broken, so the check above is real.
    let broken = out.join("broken.yaml");
    std::fs::write(
        &broken,
        read(&out.join("envoy.yaml")).replace("DRAFT_VERSION_03", "DRAFT_VERSION_99"),
    )
    .unwrap();
    assert!(!envoy_validate(&broken).0);
}

#[test]
fn fail_open_is_the_operators_choice() {
    let (out, result) = generate(
        "tiers-fail-open",
        &declaration(
            "  rate_limit_service: 127.0.0.1:8081\n  rate_limit_fail_open: true\n",
            "bronze",
        ),
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let bootstrap = yaml(&out.join("envoy.yaml"));
    let filter = &hcm(&bootstrap)["http_filters"][1]["typed_config"];
    assert_eq!(filter["failure_mode_deny"], false);
    let (ok, log) = envoy_validate(&out.join("envoy.yaml"));
    assert!(ok, "envoy --mode validate failed:\n{log}");
}
