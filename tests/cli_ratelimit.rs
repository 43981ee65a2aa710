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

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keygate::config::{Limiter, PluginConfig};
use serde_json::{json, Value};
use support::canned::*;

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

/// What envoyproxy/ratelimit's README documents for a configuration file ("Configuration",
/// "Definitions" and "Descriptor list definition"): a `domain` string and a `descriptors` list;
/// each descriptor a `key` string, an optional `value` string, an optional `rate_limit` with a
/// `unit` of `second`, `minute`, `hour` or `day` and an integer `requests_per_unit`, and
/// optionally nested `descriptors`. The service refuses members it does not know, and so does
/// this check (the documented optional ones are let through). Returns the problems found.
fn ratelimit_config_problems(doc: &Value) -> Vec<String> {
    fn descriptor(d: &Value, at: &str, problems: &mut Vec<String>) {
        let Some(object) = d.as_object() else {
            problems.push(format!("{at}: not a mapping"));
            return;
        };
        for member in object.keys() {
            let known = [
                "key",
                "value",
                "rate_limit",
                "descriptors",
                "shadow_mode",
                "detailed_metric",
            ];
            if !known.contains(&member.as_str()) {
                problems.push(format!("{at}.{member}: unknown member"));
            }
        }
        if object
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            problems.push(format!("{at}.key: missing or not a non-empty string"));
        }
        if object.get("value").is_some_and(|v| !v.is_string()) {
            problems.push(format!("{at}.value: not a string"));
        }
        if let Some(limit) = object.get("rate_limit") {
            let Some(limit) = limit.as_object() else {
                problems.push(format!("{at}.rate_limit: not a mapping"));
                return;
            };
            for member in limit.keys() {
                if !["unit", "requests_per_unit", "unlimited", "name", "replaces"]
                    .contains(&member.as_str())
                {
                    problems.push(format!("{at}.rate_limit.{member}: unknown member"));
                }
            }
            let unit = limit.get("unit").and_then(Value::as_str);
            if !matches!(unit, Some("second" | "minute" | "hour" | "day")) {
                problems.push(format!("{at}.rate_limit.unit: {unit:?}"));
            }
            if !limit.get("requests_per_unit").is_some_and(|n| n.is_u64()) {
                problems.push(format!(
                    "{at}.rate_limit.requests_per_unit: {:?}",
                    limit.get("requests_per_unit")
                ));
            }
        }
        if let Some(nested) = object.get("descriptors") {
            list(nested, &format!("{at}.descriptors"), problems);
        }
    }
    fn list(l: &Value, at: &str, problems: &mut Vec<String>) {
        match l.as_array() {
            Some(items) => {
                for (i, d) in items.iter().enumerate() {
                    descriptor(d, &format!("{at}[{i}]"), problems);
                }
            }
            None => problems.push(format!("{at}: not a list")),
        }
    }
    let mut problems = Vec::new();
    let Some(root) = doc.as_object() else {
        return vec!["not a mapping".into()];
    };
    for member in root.keys() {
        if !["domain", "descriptors"].contains(&member.as_str()) {
            problems.push(format!("{member}: unknown member"));
        }
    }
    if root
        .get("domain")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        problems.push("domain: missing or not a non-empty string".into());
    }
    match root.get("descriptors") {
        Some(descriptors) => list(descriptors, "descriptors", &mut problems),
        None => problems.push("descriptors: missing".into()),
    }
    problems
}

#[test]
fn the_service_config_has_envoyproxy_ratelimits_format_for_every_unit() {
    let text = declaration("  rate_limit_service: ratelimit.internal:8081\n", "bronze").replace(
        "tiers:\n",
        "tiers:\n  - {name: burst, requests: 5, per: second}\n  - {name: daily, requests: 100000, per: day}\n",
    );
    let (out, result) = generate("tiers-schema", &text);
    assert!(result.status.success(), "{}", stderr(&result));
    let service = yaml(&out.join("ratelimit/config.yaml"));
    assert_eq!(ratelimit_config_problems(&service), Vec::<String>::new());
    // Every tier, every unit, each under (tier, application, api).
    let mut limits: Vec<(String, String, u64)> = service["descriptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tier| {
            let limit = &tier["descriptors"][0]["descriptors"][0]["rate_limit"];
            (
                tier["value"].as_str().unwrap().to_string(),
                limit["unit"].as_str().unwrap().to_string(),
                limit["requests_per_unit"].as_u64().unwrap(),
            )
        })
        .collect();
    limits.sort();
    let expected = [
        ("bronze", "minute", 1000),
        ("burst", "second", 5),
        ("daily", "day", 100_000),
        ("gold", "hour", 20_000),
    ]
    .map(|(t, u, n)| (t.to_string(), u.to_string(), n));
    assert_eq!(limits, expected);

    // The check refuses what the service would refuse, so the pass above means something.
    type Tamper = fn(&mut Value);
    let tampered: [(&str, Tamper); 7] = [
        ("unit", |v| {
            v["descriptors"][0]["descriptors"][0]["descriptors"][0]["rate_limit"]["unit"] =
                json!("minutes")
        }),
        ("count as text", |v| {
            v["descriptors"][0]["descriptors"][0]["descriptors"][0]["rate_limit"]
                ["requests_per_unit"] = json!("1000")
        }),
        ("fractional count", |v| {
            v["descriptors"][0]["descriptors"][0]["descriptors"][0]["rate_limit"]
                ["requests_per_unit"] = json!(10.5)
        }),
        ("no key", |v| {
            v["descriptors"][0].as_object_mut().unwrap().remove("key");
        }),
        ("no domain", |v| {
            v.as_object_mut().unwrap().remove("domain");
        }),
        ("unknown member", |v| {
            v["descriptors"][0]["rate_limits"] = json!([])
        }),
        ("value not a string", |v| {
            v["descriptors"][0]["value"] = json!(7)
        }),
    ];
    for (what, change) in tampered {
        let mut doc = service.clone();
        change(&mut doc);
        assert!(!ratelimit_config_problems(&doc).is_empty(), "{what} passed");
    }
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
