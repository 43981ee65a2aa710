//! Istio manifests: a `WasmPlugin` carrying the plugin config (with `outbound|port||host` JWKS
//! clusters; `vmConfig.env` passes introspection secrets from the sidecar's environment), and per
//! key-manager JWKS or introspection host a `ServiceEntry` (so the sidecar has that cluster) and,
//! for https, a `DestinationRule` that originates TLS (the filter's `dispatch_http_call` speaks
//! plain HTTP to the cluster; the cluster wraps it in TLS).
//!
//! Resource names are `keygate-jwks-<host>-<port>-<digest>`: the host with every character that is
//! not a letter or digit turned into `-`, then 8 hex digits of SHA-256 over the exact
//! `scheme://host:port` (see `envoy.rs`), at most 63 characters. Istio names the cluster of a
//! ServiceEntry `outbound|port||host`, without the scheme: two JWKS URLs on one host and port with
//! different schemes cannot both be served, and are refused like any other shared name.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cli::declaration::model::Declaration;
use crate::cli::discovery::url::{HttpUrl, NameCollision, Scheme, TargetNames};
use crate::config::PluginConfig;

pub const DEFAULT_WASM_URL: &str = "file:///opt/keygate/keygate.wasm";

/// Where sidecars load the module from (`spec.url`) and the checksum Istio verifies
/// (`spec.sha256`): for an `oci://` URL the image's manifest digest, for `file://`/`https://` the
/// SHA-256 of the `.wasm` (`keygate oci` prints both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmSource {
    pub url: String,
    /// 64 lowercase hex digits.
    pub sha256: Option<String>,
}

impl WasmSource {
    /// `sha256` as given (`sha256:` prefix accepted, any case), or why it is not a SHA-256.
    pub fn new(url: String, sha256: Option<&str>) -> Result<WasmSource, String> {
        let sha256 = match sha256 {
            None => None,
            Some(text) => {
                let hex = text
                    .strip_prefix("sha256:")
                    .unwrap_or(text)
                    .to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{text:?} is not a SHA-256 (64 hex digits, optionally after \"sha256:\")"
                    ));
                }
                Some(hex)
            }
        };
        Ok(WasmSource { url, sha256 })
    }
}

/// One manifest: the file name under `istio/` and the resource.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    pub resource: Value,
}

/// Renders every manifest. `plugin` must use Istio cluster naming.
pub fn manifests(
    decl: &Declaration,
    plugin: &PluginConfig,
    wasm: &WasmSource,
) -> Result<Vec<Manifest>, NameCollision> {
    let namespace = decl.istio.namespace.clone();
    let metadata = |name: &str| {
        let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "keygate"}});
        if let (Some(ns), Some(obj)) = (&namespace, meta.as_object_mut()) {
            obj.insert("namespace".into(), json!(ns));
        }
        meta
    };

    let mut spec = json!({
        "url": wasm.url,
        "pluginName": "keygate",
        "phase": "AUTHN",
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": plugin,
    });
    if let (Some(sha256), Some(obj)) = (&wasm.sha256, spec.as_object_mut()) {
        obj.insert("sha256".into(), json!(sha256));
    }
    let secret_keys = crate::cli::render::envoy::secret_env_keys(plugin);
    if let (false, Some(obj)) = (secret_keys.is_empty(), spec.as_object_mut()) {
        // Names only: the sidecar hands the values from its own environment to the VM.
        let env: Vec<Value> = secret_keys
            .iter()
            .map(|name| json!({"name": name, "valueFrom": "HOST"}))
            .collect();
        obj.insert("vmConfig".into(), json!({"env": env}));
    }
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

    // One entry per JWKS target, shared by key managers on the same scheme, host and port.
    let mut names = TargetNames::default();
    let mut targets: BTreeMap<String, HttpUrl> = BTreeMap::new();
    for km in &plugin.key_managers {
        if let Ok(url) = HttpUrl::parse(&km.jwks.uri) {
            names.claim(&km.jwks.cluster, &url.target())?;
            targets.entry(url.target()).or_insert(url);
        }
        // The introspection host, when it is another one, needs its own entry.
        if let Some(introspection) = &km.introspection {
            if let Ok(url) = HttpUrl::parse(&introspection.endpoint) {
                names.claim(&introspection.cluster, &url.target())?;
                targets.entry(url.target()).or_insert(url);
            }
        }
    }
    for url in targets.values() {
        let name = resource_name(url);
        names.claim(&name, &url.target())?;
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
    Ok(out)
}

/// A DNS-1123 label `keygate-jwks-<host>-<port>-<digest>`, at most 63 characters: the host part
/// is shortened to fit, the digest always kept.
fn resource_name(url: &HttpUrl) -> String {
    let suffix = format!("-{}-{}", url.port, url.target_digest());
    let room = 63usize.saturating_sub("keygate-jwks-".len() + suffix.len());
    let body: String = url
        .host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(room)
        .collect();
    let body = body.trim_matches('-');
    if body.is_empty() {
        format!("keygate-jwks{suffix}")
    } else {
        format!("keygate-jwks-{body}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(url: &str) -> String {
        resource_name(&HttpUrl::parse(url).unwrap())
    }

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_dns_labels() {
        let digest = HttpUrl::parse("https://api.asgardeo.io/")
            .unwrap()
            .target_digest();
        assert_eq!(
            name("https://api.asgardeo.io/"),
            format!("keygate-jwks-api-asgardeo-io-443-{digest}")
        );
        for url in [
            format!("https://{}.example/", "a".repeat(100)),
            format!("https://{}x.example/", "-".repeat(60)),
            "http://[::1]:9000/".to_string(),
            "https://1.2.3.4:65535/".to_string(),
        ] {
            let n = name(&url);
            assert!(is_dns_label(&n), "{url} -> {n}");
            assert!(n.ends_with(&HttpUrl::parse(&url).unwrap().target_digest()));
        }
    }

    #[test]
    fn names_differ_where_hosts_differ_only_in_dots_and_dashes() {
        let a = name("https://idp.example-corp.com/");
        let b = name("https://idp-example.corp.com/");
        assert_ne!(a, b);
        assert!(
            a.starts_with("keygate-jwks-idp-example-corp-com-443-"),
            "{a}"
        );
        // Long hosts that share the kept prefix still differ.
        let long = "a".repeat(80);
        assert_ne!(
            name(&format!("https://{long}.one/")),
            name(&format!("https://{long}.two/"))
        );
        // Scheme is part of the target.
        assert_ne!(
            name("http://idp.example:8443/"),
            name("https://idp.example:8443/")
        );
    }
}

#[cfg(test)]
mod manifest_tests {
    use super::*;
    use serde_json::json;

    fn manifests_for(jwks: &[&str]) -> Result<Vec<Manifest>, NameCollision> {
        let decl: Declaration =
            serde_saphyr::from_str("gateway: {environment: production}\n").unwrap();
        let kms: Vec<Value> = jwks
            .iter()
            .enumerate()
            .map(|(i, uri)| {
                let url = HttpUrl::parse(uri).unwrap();
                json!({"name": format!("km{i}"), "issuer": format!("https://km{i}.example"),
                   "jwks": {"uri": uri, "cluster": format!("outbound|{}||{}", url.port, url.host),
                            "authority": url.authority(), "path": url.path_and_query}})
            })
            .collect();
        let plugin: PluginConfig =
            serde_json::from_value(json!({"environment": "production", "key_managers": kms}))
                .unwrap();
        manifests(
            &decl,
            &plugin,
            &WasmSource::new(DEFAULT_WASM_URL.into(), None).unwrap(),
        )
    }

    fn service_entry_hosts(out: &[Manifest]) -> Vec<String> {
        out.iter()
            .filter(|m| m.resource["kind"] == "ServiceEntry")
            .map(|m| m.resource["spec"]["hosts"][0].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_jwks_host_keeps_its_service_entry() {
        let out = manifests_for(&[
            "https://idp.example-corp.com/jwks",
            "https://idp-example.corp.com/jwks",
            "https://idp-example.corp.com/t/2/jwks",
        ])
        .unwrap();
        let mut hosts = service_entry_hosts(&out);
        hosts.sort();
        assert_eq!(hosts, ["idp-example.corp.com", "idp.example-corp.com"]);
        let files: std::collections::BTreeSet<&str> = out.iter().map(|m| m.file.as_str()).collect();
        assert_eq!(files.len(), out.len(), "file names are unique: {files:?}");
    }

    #[test]
    fn one_host_and_port_with_two_schemes_is_refused() {
        // Istio's cluster `outbound|8443||keys.example` cannot be both plain and TLS.
        let err = manifests_for(&[
            "http://keys.example:8443/jwks",
            "https://keys.example:8443/jwks",
        ])
        .unwrap_err();
        assert_eq!(err.name, "outbound|8443||keys.example");
        assert_eq!(err.first, "http://keys.example:8443");
        assert_eq!(err.second, "https://keys.example:8443");
    }
}
