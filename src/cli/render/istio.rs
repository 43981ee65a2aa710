//! Istio manifests: a `WasmPlugin` carrying the plugin config (with `outbound|port||host` JWKS
//! clusters; `vmConfig.env` passes introspection secrets from the sidecar's environment), and per
//! key-manager JWKS or introspection host a `ServiceEntry` (so the proxy has that cluster) and,
//! for https, a `DestinationRule` that originates TLS (the filter's `dispatch_http_call` speaks
//! plain HTTP to the cluster; the cluster wraps it in TLS, verifying the server's CA and name).
//!
//! Safe to apply: the WasmPlugin runs on inbound traffic of the selected sidecars only
//! (`match: [{mode: SERVER}]`), or on one Gateway/waypoint (`targetRefs`); the ServiceEntries and
//! DestinationRules are visible in their own namespace only (`exportTo: ["."]`), and the TLS
//! origination applies to the proxies that run the filter (`workloadSelector`), so another
//! workload calling the same identity provider over https is left alone. What the pod itself needs
//! (the introspection secrets in `istio-proxy`'s environment, a volume for a `file://` module)
//! is under `workload/`: a Secret template and a Deployment patch, applied separately.
//!
//! Resource names are `keygate-jwks-<host>-<port>-<digest>`: the host with every character that is
//! not a letter or digit turned into `-`, then 8 hex digits of SHA-256 over the exact
//! `scheme://host:port` (see `envoy.rs`), at most 63 characters. Istio names the cluster of a
//! ServiceEntry `outbound|port||host`, without the scheme: two JWKS URLs on one host and port with
//! different schemes cannot both be served, and are refused like any other shared name.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cli::declaration::istio::Attach;
use crate::cli::declaration::model::{IstioDecl, DEFAULT_ISTIO_CA_CERTIFICATES};
use crate::cli::discovery::url::{HttpUrl, NameCollision, Scheme, TargetNames};
use crate::config::PluginConfig;

/// The Secret `workload/secret-keygate-introspection.yaml` declares (one key per variable).
pub const SECRET_NAME: &str = "keygate-introspection";
/// The ConfigMap a `file://` module is mounted from (`workload/deployment-patch.yaml`).
pub const WASM_CONFIG_MAP: &str = "keygate-wasm";
/// The ConfigMap that publishes the backend-JWT JWKS (`workload/configmap-keygate-backend-jwks.yaml`).
pub const BACKEND_JWKS_CONFIG_MAP: &str = "keygate-backend-jwks";
/// Its one key: the file upstreams read when they mount it.
pub const BACKEND_JWKS_FILE: &str = "backend-jwks.json";
/// The label the Gateway API puts on a Gateway's (and a waypoint's) pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

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
            Some(text) => Some(
                crate::cli::declaration::validate::parse_sha256(text).ok_or_else(|| {
                    format!(
                        "{text:?} is not a SHA-256 (64 hex digits, optionally after \"sha256:\")"
                    )
                })?,
            ),
        };
        Ok(WasmSource { url, sha256 })
    }

    /// The file inside the proxy for a `file://` URL.
    pub fn file_path(&self) -> Option<&str> {
        self.url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("file://"))
            .and_then(|_| self.url.get(7..))
    }
}

/// One manifest: the file name under `istio/`, comment lines written above it, the resource.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    pub notes: Vec<String>,
    pub resource: Value,
}

impl Manifest {
    fn new(file: String, resource: Value) -> Manifest {
        Manifest {
            file,
            notes: Vec::new(),
            resource,
        }
    }

    /// The comment block above the YAML (empty without notes).
    pub fn comment(&self) -> String {
        self.notes
            .iter()
            .map(|note| format!("# {note}\n"))
            .collect()
    }
}

/// Where the filter runs, as the declaration says (checked before rendering; an unreadable
/// `attach` falls back to sidecar, which the checks have refused by then).
pub fn attach(istio: &IstioDecl) -> Attach {
    istio
        .attach
        .as_ref()
        .and_then(|text| Attach::parse(&text.value).ok())
        .unwrap_or(Attach::Sidecar)
}

/// The labels of the proxies that run the filter, for `workloadSelector` (none: every proxy of
/// the namespace, or a waypoint, whose pods Istio does not select this way).
fn proxy_labels(istio: &IstioDecl) -> Option<BTreeMap<String, String>> {
    match attach(istio) {
        Attach::Sidecar if !istio.selector.is_empty() => Some(
            istio
                .selector
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        ),
        Attach::Gateway(name) => Some(BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), name)])),
        Attach::Sidecar | Attach::Waypoint(_) => None,
    }
}

/// Renders every manifest. `plugin` must use Istio cluster naming.
pub fn manifests(
    istio: &IstioDecl,
    plugin: &PluginConfig,
    wasm: &WasmSource,
) -> Result<Vec<Manifest>, NameCollision> {
    let namespace = istio.namespace.as_ref().map(|ns| ns.value.clone());
    let metadata = |name: &str| {
        let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "keygate"}});
        if let (Some(ns), Some(obj)) = (&namespace, meta.as_object_mut()) {
            obj.insert("namespace".into(), json!(ns));
        }
        meta
    };
    let labels = proxy_labels(istio);

    let mut spec = serde_json::Map::new();
    spec.insert("url".into(), json!(wasm.url));
    if let Some(sha256) = &wasm.sha256 {
        spec.insert("sha256".into(), json!(sha256));
    }
    for (field, value) in [
        ("imagePullPolicy", json!("IfNotPresent")),
        ("pluginName", json!("keygate")),
        ("phase", json!("AUTHN")),
        ("priority", json!(istio.priority)),
        ("failStrategy", json!("FAIL_CLOSE")),
        ("pluginConfig", json!(plugin)),
    ] {
        spec.insert(field.into(), value);
    }
    let secret_keys = crate::cli::render::envoy::secret_env_keys(plugin);
    if !secret_keys.is_empty() {
        // Names only: the proxy hands the values from its own environment to the VM.
        let env: Vec<Value> = secret_keys
            .iter()
            .map(|name| json!({"name": name, "valueFrom": "HOST"}))
            .collect();
        spec.insert("vmConfig".into(), json!({"env": env}));
    }
    match attach(istio) {
        Attach::Sidecar => {
            // Inbound only: outbound calls of the selected workloads are none of its business.
            spec.insert("match".into(), json!([{"mode": "SERVER"}]));
            if let Some(labels) = &labels {
                spec.insert("selector".into(), json!({"matchLabels": labels}));
            }
        }
        // A Gateway's listeners count as CLIENT for Istio's `match`, so `mode: SERVER` would
        // never apply there; a gateway or waypoint only carries traffic sent to it anyway.
        Attach::Gateway(name) | Attach::Waypoint(name) => {
            spec.insert(
                "targetRefs".into(),
                json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}]),
            );
        }
    }
    let mut out = vec![Manifest::new(
        "wasmplugin.yaml".into(),
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": metadata("keygate"),
            "spec": spec,
        }),
    )];

    // One entry per JWKS target, shared by key managers on the same scheme, host and port.
    let mut names = TargetNames::default();
    let mut targets: BTreeMap<String, HttpUrl> = BTreeMap::new();
    for (cluster, url) in targets_of(plugin) {
        names.claim(&cluster, &url.target())?;
        targets.entry(url.target()).or_insert(url);
    }
    let ca = istio
        .ca_certificates
        .as_ref()
        .map_or(DEFAULT_ISTIO_CA_CERTIFICATES.to_string(), |ca| {
            ca.value.clone()
        });
    for url in targets.values() {
        let name = resource_name(url);
        names.claim(&name, &url.target())?;
        let tls = url.scheme == Scheme::Https;
        let port = json!({
            "number": url.port,
            "name": if tls { "https" } else { "http" },
            "protocol": if tls { "TLS" } else { "HTTP" },
        });
        out.push(Manifest::new(
            format!("serviceentry-{name}.yaml"),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": metadata(&name),
                "spec": {
                    "hosts": [url.host],
                    "location": "MESH_EXTERNAL",
                    "resolution": "DNS",
                    "ports": [port],
                    "exportTo": ["."],
                },
            }),
        ));
        if tls {
            // As the standalone bootstrap does: the CA bundle and the URL's host as the only
            // accepted name; SNI only for a name (never for an IP literal).
            let mut settings = json!({
                "mode": "SIMPLE",
                "caCertificates": ca,
                "subjectAltNames": [url.host],
            });
            if let (None, Some(obj)) = (url.ip(), settings.as_object_mut()) {
                obj.insert("sni".into(), json!(url.host));
            }
            let mut spec = json!({
                "host": url.host,
                "exportTo": ["."],
                "trafficPolicy": {"portLevelSettings": [{
                    "port": {"number": url.port},
                    "tls": settings,
                }]},
            });
            if let (Some(labels), Some(obj)) = (&labels, spec.as_object_mut()) {
                obj.insert("workloadSelector".into(), json!({"matchLabels": labels}));
            }
            out.push(Manifest::new(
                format!("destinationrule-{name}.yaml"),
                json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": metadata(&name),
                    "spec": spec,
                }),
            ));
        }
    }
    out.extend(workload(istio, &secret_keys, wasm, &metadata));
    out.extend(backend_jwks_config_map(istio, plugin, &metadata));
    Ok(out)
}

/// Every JWKS and introspection URL of the plugin config with its cluster name.
fn targets_of(plugin: &PluginConfig) -> Vec<(String, HttpUrl)> {
    let mut out = Vec::new();
    for km in &plugin.key_managers {
        if let Ok(url) = HttpUrl::parse(&km.jwks.uri) {
            out.push((km.jwks.cluster.clone(), url));
        }
        // The introspection host, when it is another one, needs its own entry.
        if let Some(introspection) = &km.introspection {
            if let Ok(url) = HttpUrl::parse(&introspection.endpoint) {
                out.push((introspection.cluster.clone(), url));
            }
        }
    }
    // The application directory source.
    if let Some(directory) = &plugin.directory {
        if let Ok(url) = HttpUrl::parse(&directory.url) {
            out.push((directory.cluster.clone(), url));
        }
    }
    out
}

/// What Istio cannot check for the operator, one line each (never a secret: names only).
pub fn warnings(plugin: &PluginConfig) -> Vec<String> {
    let mut out = Vec::new();
    for km in &plugin.key_managers {
        let mut urls = vec![("JWKS", km.jwks.uri.as_str())];
        if let Some(introspection) = &km.introspection {
            urls.push(("introspection", introspection.endpoint.as_str()));
        }
        for (what, uri) in urls {
            if HttpUrl::parse(uri).is_ok_and(|url| url.is_loopback()) {
                out.push(format!(
                    "key manager {}: {what} {uri} is on a loopback address: inside a pod that is \
                     the pod itself, so the ServiceEntry for it means nothing there; declare a \
                     host the pod can reach",
                    km.name
                ));
            }
        }
    }
    out
}

/// `workload/`: the Secret template for introspection secrets and the Deployment patch that puts
/// them (and a `file://` module) into the `istio-proxy` container.
fn workload(
    istio: &IstioDecl,
    secret_keys: &[String],
    wasm: &WasmSource,
    metadata: &dyn Fn(&str) -> Value,
) -> Vec<Manifest> {
    let mut out = Vec::new();
    if !secret_keys.is_empty() {
        out.push(secret_template(istio, secret_keys, metadata));
    }
    if let Some(patch) = deployment_patch(istio, secret_keys, wasm.file_path()) {
        out.push(patch);
    }
    out
}

/// With `backend_jwt`: the gateway's public keys as a ConfigMap (docs/backend-jwt.md, "Under
/// Istio"). Upstreams mount it and read the JWKS as a file, so no request for it crosses a
/// proxy that runs the filter; the kubelet refreshes a mounted ConfigMap, which is what key
/// rotation needs (publish the new key before it signs).
fn backend_jwks_config_map(
    istio: &IstioDecl,
    plugin: &PluginConfig,
    metadata: &dyn Fn(&str) -> Value,
) -> Option<Manifest> {
    let jwks = crate::cli::render::envoy::backend_jwks(plugin)?;
    let text = serde_json::to_string_pretty(&jwks).ok()? + "\n";
    let mut map = Manifest::new(
        format!("workload/configmap-{BACKEND_JWKS_CONFIG_MAP}.yaml"),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(BACKEND_JWKS_CONFIG_MAP),
            "data": {BACKEND_JWKS_FILE: text},
        }),
    );
    let ns = namespace_flag(istio);
    map.notes = vec![
        "The public keys upstreams verify backend JWTs with (x-jwt-assertion by default): no secret.".into(),
        format!("  kubectl apply{ns} -f configmap-{BACKEND_JWKS_CONFIG_MAP}.yaml"),
        "Mount it in each upstream's pod and read the JWKS from the file, e.g. with".into(),
        format!("  volumes: [{{name: {BACKEND_JWKS_CONFIG_MAP}, configMap: {{name: {BACKEND_JWKS_CONFIG_MAP}}}}}]"),
        format!("  volumeMounts: [{{name: {BACKEND_JWKS_CONFIG_MAP}, mountPath: /etc/keygate, readOnly: true}}]"),
        format!("  -> /etc/keygate/{BACKEND_JWKS_FILE}; re-read it when a kid is unknown (the kubelet updates"),
        "  the mounted file after each apply, within about a minute; not with subPath).".into(),
        "To serve it over HTTP (/.well-known/keygate/jwks.json) instead, mount it into a static file".into(),
        "server whose pods the keygate WasmPlugin does not select.".into(),
    ];
    Some(map)
}

/// ` -n NAMESPACE` for the kubectl lines of the comments (empty without a namespace).
fn namespace_flag(istio: &IstioDecl) -> String {
    istio
        .namespace
        .as_ref()
        .map_or(String::new(), |ns| format!(" -n {}", ns.value))
}

/// A Secret with one empty value per variable: the names are the declaration's, the values the
/// operator's, never written here.
fn secret_template(
    istio: &IstioDecl,
    secret_keys: &[String],
    metadata: &dyn Fn(&str) -> Value,
) -> Manifest {
    let data: BTreeMap<&str, &str> = secret_keys.iter().map(|k| (k.as_str(), "")).collect();
    let literals: Vec<String> = secret_keys
        .iter()
        .map(|k| format!("--from-literal={k}=..."))
        .collect();
    let mut secret = Manifest::new(
        format!("workload/secret-{SECRET_NAME}.yaml"),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(SECRET_NAME),
            "type": "Opaque",
            "stringData": data,
        }),
    );
    secret.notes = vec![
        "A template: fill in each value (the client secret of the key manager's introspection"
            .into(),
        "client), apply it, and keep the filled copy out of version control; or create it with"
            .into(),
        format!(
            "  kubectl create secret generic {SECRET_NAME}{} {}",
            namespace_flag(istio),
            literals.join(" ")
        ),
        "Without this Secret the pod does not start (CreateContainerConfigError); with an empty"
            .into(),
        "value the filter refuses its configuration and, failStrategy FAIL_CLOSE, the pod's".into(),
        "inbound requests are denied.".into(),
    ];
    secret
}

/// The strategic-merge patch of the pod template: an `istio-proxy` container with the secrets
/// from the Secret (the injector merges it into the proxy it injects), and for a `file://` module
/// the annotations that mount it. None when the pod needs neither.
fn deployment_patch(
    istio: &IstioDecl,
    secret_keys: &[String],
    file: Option<&str>,
) -> Option<Manifest> {
    if secret_keys.is_empty() && file.is_none() {
        return None;
    }
    let target = match attach(istio) {
        Attach::Sidecar => "each Deployment the WasmPlugin selects".to_string(),
        Attach::Gateway(name) | Attach::Waypoint(name) => {
            format!("the Deployment of Gateway {name}")
        }
    };
    let mut notes = vec![
        format!("A strategic-merge patch for {target}:"),
        format!(
            "  kubectl patch deployment NAME{} --patch-file deployment-patch.yaml",
            namespace_flag(istio)
        ),
    ];
    let mut template = serde_json::Map::new();
    if !secret_keys.is_empty() {
        let env: Vec<Value> = secret_keys
            .iter()
            .map(|key| {
                json!({"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}})
            })
            .collect();
        template.insert(
            "spec".into(),
            json!({"containers": [{"name": "istio-proxy", "image": "auto", "env": env}]}),
        );
        notes.push(format!(
            "The sidecar injector merges the `istio-proxy` container below into the one it injects \
             (`image: auto` is replaced by the proxy image), so Envoy gets {} from Secret \
             {SECRET_NAME}.",
            secret_keys.join(", ")
        ));
    }
    if let Some(path) = file {
        let (dir, name) = match path.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((dir, name)) => (dir, name),
            None => ("/", path),
        };
        let volume = json!([{"name": WASM_CONFIG_MAP, "configMap": {"name": WASM_CONFIG_MAP}}]);
        let mount = json!([{"name": WASM_CONFIG_MAP, "mountPath": dir, "readOnly": true}]);
        template.insert(
            "metadata".into(),
            json!({"annotations": {
                "sidecar.istio.io/userVolume": volume.to_string(),
                "sidecar.istio.io/userVolumeMount": mount.to_string(),
            }}),
        );
        notes.push(format!(
            "The annotations mount ConfigMap {WASM_CONFIG_MAP} into istio-proxy so that {path} \
             exists; create it with"
        ));
        notes.push(format!(
            "  kubectl create configmap {WASM_CONFIG_MAP}{} \
             --from-file={name}=target/wasm32-wasip1/release/keygate.wasm",
            namespace_flag(istio)
        ));
    }
    let mut patch = Manifest::new(
        "workload/deployment-patch.yaml".into(),
        json!({"spec": {"template": template}}),
    );
    patch.notes = notes;
    Some(patch)
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
    use crate::cli::declaration::istio::is_dns_label;

    fn name(url: &str) -> String {
        resource_name(&HttpUrl::parse(url).unwrap())
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
        let istio: IstioDecl = serde_saphyr::from_str("selector: {app: pets}\n").unwrap();
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
            &istio,
            &plugin,
            &WasmSource::new("oci://registry.example/keygate:1".into(), None).unwrap(),
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
