//! Istio manifests: a `WasmPlugin` carrying the plugin config (with `outbound|port||host` JWKS
//! clusters), and per key-manager JWKS host a `ServiceEntry` (so the sidecar has that cluster) and,
//! for https, a `DestinationRule` that originates TLS (the filter's `dispatch_http_call` speaks
//! plain HTTP to the cluster; the cluster wraps it in TLS).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cli::declaration::Declaration;
use crate::cli::url::{HttpUrl, Scheme};
use crate::config::PluginConfig;

pub const DEFAULT_WASM_URL: &str = "file:///opt/keygate/keygate.wasm";

/// One manifest: the file name under `istio/` and the resource.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    pub resource: Value,
}

/// Renders every manifest. `plugin` must use Istio cluster naming.
pub fn manifests(decl: &Declaration, plugin: &PluginConfig, wasm_url: &str) -> Vec<Manifest> {
    let namespace = decl.istio.namespace.clone();
    let metadata = |name: &str| {
        let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "keygate"}});
        if let (Some(ns), Some(obj)) = (&namespace, meta.as_object_mut()) {
            obj.insert("namespace".into(), json!(ns));
        }
        meta
    };

    let mut spec = json!({
        "url": wasm_url,
        "pluginName": "keygate",
        "phase": "AUTHN",
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": plugin,
    });
    if !decl.istio.selector.is_empty() {
        if let Some(obj) = spec.as_object_mut() {
            obj.insert(
                "selector".into(),
                json!({"matchLabels": decl.istio.selector}),
            );
        }
    }
    let mut out = vec![Manifest {
        file: "wasmplugin.yaml".into(),
        resource: json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": metadata("keygate"),
            "spec": spec,
        }),
    }];

    // One entry per JWKS host and port, shared by key managers on the same host.
    let mut hosts: BTreeMap<(String, u16), HttpUrl> = BTreeMap::new();
    for km in &plugin.key_managers {
        if let Ok(url) = HttpUrl::parse(&km.jwks.uri) {
            hosts.entry((url.host.clone(), url.port)).or_insert(url);
        }
    }
    for url in hosts.values() {
        let name = resource_name(&url.host, url.port);
        let tls = url.scheme == Scheme::Https;
        let port = json!({
            "number": url.port,
            "name": if tls { "https" } else { "http" },
            "protocol": if tls { "TLS" } else { "HTTP" },
        });
        out.push(Manifest {
            file: format!("serviceentry-{name}.yaml"),
            resource: json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": metadata(&name),
                "spec": {
                    "hosts": [url.host],
                    "location": "MESH_EXTERNAL",
                    "resolution": "DNS",
                    "ports": [port],
                },
            }),
        });
        if tls {
            out.push(Manifest {
                file: format!("destinationrule-{name}.yaml"),
                resource: json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": metadata(&name),
                    "spec": {
                        "host": url.host,
                        "trafficPolicy": {"portLevelSettings": [{
                            "port": {"number": url.port},
                            "tls": {"mode": "SIMPLE", "sni": url.host},
                        }]},
                    },
                }),
            });
        }
    }
    out
}

/// A DNS-1123 label for `keygate-jwks-<host>-<port>`, at most 63 characters.
fn resource_name(host: &str, port: u16) -> String {
    let body: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("keygate-jwks-{body}-{port}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(
            resource_name("api.asgardeo.io", 443),
            "keygate-jwks-api-asgardeo-io-443"
        );
        let long = resource_name(&"a".repeat(100), 443);
        assert!(long.len() <= 63);
        assert!(!long.ends_with('-'));
    }
}
