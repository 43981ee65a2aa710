//! The Envoy bootstrap: one listener whose HTTP connection manager runs the keygate wasm filter
//! then the router, one cluster per upstream and one per JWKS host (the filter reaches the JWKS
//! with `dispatch_http_call` on that cluster), and the admin interface.
//!
//! The keygate filter's own configuration (the Wasm filter config carrying the plugin config) is
//! not in the bootstrap: the HTTP filter names it through `config_discovery` (ECDS) from a file,
//! `<dir>/live/keygate-filter.yaml`, which `generate` replaces atomically, so Envoy applies a new
//! declaration without a restart ([`filter_discovery`], [`ecds_file`]).
//!
//! Cluster names are `keygate_<role>_<host>_<port>_<digest>`: the host with every character that
//! is not a letter or digit turned into `_` (readable, but `a.b-c` and `a-b.c` look alike), then 8
//! hex digits of SHA-256 over the exact `scheme://host:port`, which tell them apart. Every name is
//! claimed for its target while the bootstrap is built; two targets behind one name are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::cli::declaration::model::Declaration;
use crate::cli::discovery::url::{HttpUrl, NameCollision, Scheme, TargetNames};
use crate::cli::render::ratelimit;
use crate::config::PluginConfig;
use crate::worker::metrics;

/// Longest readable host part of a cluster name; the digest keeps truncated names apart.
const READABLE_HOST_MAX: usize = 40;

/// What differs between the bootstrap run on this machine and the one inside a container.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Absolute path of the `.wasm` as Envoy will see it.
    pub wasm_path: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub ca_file: String,
    pub upstream_timeout_seconds: u64,
    /// Absolute directory (as Envoy sees it) holding [`ECDS_FILE`]; Envoy watches it for renames.
    pub ecds_dir: String,
    /// The listener's TLS (`gateway.tls`), as Envoy sees the files.
    pub tls: Option<TlsOptions>,
}

/// `gateway.tls` for the bootstrap: PEM file paths and whether a client certificate is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
    pub require_client_certificate: bool,
}

/// The ECDS resource name: the keygate HTTP filter subscribes to it, an xDS server serves it.
pub const FILTER_NAME: &str = "keygate";
/// The type of the filter config inside the ECDS resource.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The ECDS resource's own type.
pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// The file in `EnvoyOptions::ecds_dir` that Envoy reads the filter config from.
pub const ECDS_FILE: &str = "keygate-filter.yaml";

/// The Envoy cluster name of an upstream.
pub fn upstream_cluster(url: &HttpUrl) -> String {
    cluster_name("upstream", url)
}

/// The Envoy cluster name of a JWKS host (the plugin config's `jwks.cluster`).
pub fn jwks_cluster(url: &HttpUrl) -> String {
    cluster_name("jwks", url)
}

/// The Envoy cluster name of an introspection host that is not the JWKS host.
pub fn introspection_cluster(url: &HttpUrl) -> String {
    cluster_name("introspection", url)
}

/// The Envoy cluster name of the application directory source.
pub fn directory_cluster(url: &HttpUrl) -> String {
    cluster_name("directory", url)
}

/// The environment variables the filter reads its introspection secrets from: names only (Envoy
/// hands their values from its own environment to the Wasm VM), sorted, each once.
pub fn secret_env_keys(plugin: &PluginConfig) -> Vec<String> {
    let keys: std::collections::BTreeSet<String> = plugin
        .key_managers
        .iter()
        .filter_map(|km| km.introspection.as_ref())
        .map(|i| i.client_secret_env.clone())
        .chain(plugin.directory.iter().map(|d| d.token_env.clone()))
        .chain(
            plugin
                .backend_jwt
                .iter()
                .flat_map(|b| b.keys.iter().map(|k| k.env.clone())),
        )
        .filter(|name| !name.is_empty())
        .collect();
    keys.into_iter().collect()
}

fn cluster_name(role: &str, url: &HttpUrl) -> String {
    let readable: String = url
        .host
        .chars()
        .take(READABLE_HOST_MAX)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!(
        "keygate_{role}_{readable}_{}_{}",
        url.port,
        url.target_digest()
    )
}

/// Why the bootstrap cannot be rendered.
#[derive(Debug)]
pub enum BootstrapError {
    Json(serde_json::Error),
    Collision(NameCollision),
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapError::Json(err) => write!(f, "{err}"),
            BootstrapError::Collision(err) => write!(f, "{err}"),
        }
    }
}

impl From<serde_json::Error> for BootstrapError {
    fn from(err: serde_json::Error) -> Self {
        BootstrapError::Json(err)
    }
}

impl From<NameCollision> for BootstrapError {
    fn from(err: NameCollision) -> Self {
        BootstrapError::Collision(err)
    }
}

/// Adds the cluster `name` for `url`, unless it is there for the same target already.
fn add_cluster(
    clusters: &mut BTreeMap<String, Value>,
    names: &mut TargetNames,
    name: &str,
    url: &HttpUrl,
    options: &EnvoyOptions,
) -> Result<(), NameCollision> {
    names.claim(name, &url.target())?;
    clusters
        .entry(name.to_string())
        .or_insert_with(|| cluster(name, url, options));
    Ok(())
}

/// Renders the bootstrap as a JSON value (written out as YAML).
pub fn bootstrap(
    decl: &Declaration,
    plugin: &PluginConfig,
    options: &EnvoyOptions,
) -> Result<Value, BootstrapError> {
    let mut clusters: BTreeMap<String, Value> = BTreeMap::new();
    let mut names = TargetNames::default();

    for km in &plugin.key_managers {
        if let Ok(url) = HttpUrl::parse(&km.jwks.uri) {
            add_cluster(&mut clusters, &mut names, &km.jwks.cluster, &url, options)?;
        }
        if let Some(introspection) = &km.introspection {
            if let Ok(url) = HttpUrl::parse(&introspection.endpoint) {
                add_cluster(
                    &mut clusters,
                    &mut names,
                    &introspection.cluster,
                    &url,
                    options,
                )?;
            }
        }
    }

    if let Some(directory) = &plugin.directory {
        if let Ok(url) = HttpUrl::parse(&directory.url) {
            add_cluster(&mut clusters, &mut names, &directory.cluster, &url, options)?;
        }
    }

    // Longest base path first, so `/pets/v1/admin` wins over `/pets/v1`.
    let mut apis: Vec<_> = decl.apis.iter().collect();
    apis.sort_by(|a, b| {
        b.base_path
            .value
            .len()
            .cmp(&a.base_path.value.len())
            .then_with(|| a.base_path.value.cmp(&b.base_path.value))
    });
    let mut routes = Vec::new();
    for api in apis {
        let base = api.base_path.value.as_str();
        let matcher = if base == "/" {
            json!({"prefix": "/"})
        } else {
            json!({"path_separated_prefix": base})
        };
        let upstream = api
            .upstream
            .as_ref()
            .and_then(|u| HttpUrl::parse(&u.value).ok());
        let action = match upstream {
            Some(url) => {
                let name = upstream_cluster(&url);
                add_cluster(&mut clusters, &mut names, &name, &url, options)?;
                let mut route = json!({
                    "cluster": name,
                    "timeout": format!("{}s", options.upstream_timeout_seconds),
                });
                if let (Some(path), Some(obj)) = (api.upstream_path(), route.as_object_mut()) {
                    obj.insert("regex_rewrite".into(), base_path_rewrite(base, path));
                }
                json!({ "route": route })
            }
            None => json!({"direct_response": {
                "status": 502,
                "body": {"inline_string": format!(
                    "{{\"error\":\"no_upstream\",\"error_description\":\"API {} has no upstream\"}}",
                    api.name.value)},
            }}),
        };
        let mut route = json!({"name": format!("api_{}", api.name.value), "match": matcher});
        if let (Some(obj), Some(action_obj)) = (route.as_object_mut(), action.as_object()) {
            obj.extend(action_obj.clone());
        }
        routes.push(route);
    }
    // The gateway's backend-JWT keys, for upstreams to verify with (docs/backend-jwt.md): served
    // by Envoy itself, the filter skipped on this route.
    if let Some(jwks) = backend_jwks(plugin) {
        routes.insert(
            0,
            json!({
                "name": "keygate_backend_jwks",
                "match": {"path": BACKEND_JWKS_PATH},
                "direct_response": {"status": 200, "body": {"inline_string": jwks.to_string()}},
                "response_headers_to_add": [{
                    "header": {"key": "content-type", "value": "application/json"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }],
                "typed_per_filter_config": {FILTER_NAME: {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": true,
                }},
            }),
        );
    }
    // Unknown paths: the filter answers them first (404 or pass, per settings.unknown_api); a
    // passed request still must not reach anything.
    routes.push(json!({
        "name": "catch_all",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "{\"error\":\"not_found\"}"}},
    }));

    let rate_limit = rate_limit_service(decl, &mut clusters, &mut names, options)?;

    let prefix = &plugin.settings.header_prefix;
    let access_log = json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"json_format": {
                "time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "status": "%RESPONSE_CODE%",
                "details": "%RESPONSE_CODE_DETAILS%",
                "duration_ms": "%DURATION%",
                "upstream": "%UPSTREAM_CLUSTER%",
                "application": format!("%REQ({prefix}application)%"),
                "client_id": format!("%REQ({prefix}client-id)%"),
                "key_manager": format!("%REQ({prefix}key-manager)%"),
                "keygate_code": "%FILTER_STATE(wasm.keygate.code:PLAIN)%",
            }},
        },
    }]);

    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "keygate",
        "codec_type": "AUTO",
        // Match routes and the filter's resources on one canonical path: `%2F` is refused rather
        // than decoded, `//` merged, dot segments resolved.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        // `x_keygate_application` must not slip past the identity-header strip as an alias.
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "use_remote_address": true,
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "300s",
        "access_log": access_log,
        "local_reply_config": {"mappers": [path_refusal_reply()]},
        "route_config": {
            "name": "keygate_routes",
            "virtual_hosts": [{"name": "keygate", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            filter_discovery(options),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    });
    let mut hcm = hcm;
    if let (true, Some(obj)) = (
        plugin.settings.trusted_client_cert_header,
        hcm.as_object_mut(),
    ) {
        // The front proxy's `x-forwarded-client-cert` reaches the filter as it was sent (Envoy's
        // default, SANITIZE, would drop it; APPEND_FORWARD would add this hop's own element).
        obj.insert(
            "forward_client_cert_details".into(),
            json!("ALWAYS_FORWARD_ONLY"),
        );
    }
    if let Some(filter) = rate_limit {
        add_rate_limiting(&mut hcm, filter, plugin);
    }

    Ok(json!({
        // File-based xDS (the filter's ECDS) needs the node named.
        "node": {"id": "keygate", "cluster": "keygate"},
        "admin": {"address": socket_address(&options.admin)},
        "stats_config": stats_config(),
        "static_resources": {
            "listeners": [{
                "name": "keygate_listener",
                "address": socket_address(&options.listen),
                "filter_chains": [filter_chain(hcm, options.tls.as_ref())],
            }],
            "clusters": clusters.into_values().collect::<Vec<_>>(),
        },
    }))
}

/// Where Envoy serves the gateway's backend-JWT JWKS.
pub const BACKEND_JWKS_PATH: &str = "/.well-known/keygate/jwks.json";

/// The gateway's public backend-JWT keys as a JWKS (sorted by `kid`, so reordering the keys to
/// switch the signing key changes nothing here), or `None` without `backend_jwt`.
pub fn backend_jwks(plugin: &PluginConfig) -> Option<Value> {
    let signing = plugin.backend_jwt.as_ref()?;
    let mut keys: Vec<Value> = signing
        .keys
        .iter()
        .map(|k| crate::jose::sign::public_jwk(&k.x, &k.y))
        .collect();
    keys.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
    keys.dedup();
    Some(json!({ "keys": keys }))
}

/// The listener's filter chain: plain HTTP, or TLS that asks for client certificates (RFC 8705
/// certificate-bound tokens) when `gateway.tls` is declared.
fn filter_chain(hcm: Value, tls: Option<&TlsOptions>) -> Value {
    let mut chain = json!({"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": hcm,
    }]});
    let (Some(tls), Some(obj)) = (tls, chain.as_object_mut()) else {
        return chain;
    };
    let mut common = json!({
        "tls_certificates": [{
            "certificate_chain": {"filename": tls.cert},
            "private_key": {"filename": tls.key},
        }],
    });
    if let (Some(ca), Some(c)) = (&tls.client_ca, common.as_object_mut()) {
        c.insert(
            "validation_context".into(),
            json!({"trusted_ca": {"filename": ca}}),
        );
    }
    obj.insert(
        "transport_socket".into(),
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": tls.require_client_certificate,
                "common_tls_context": common,
            },
        }),
    );
    chain
}

/// The route's `regex_rewrite` that puts the upstream's path in place of the base path:
/// `/pets/v1/pets/7` goes to `http://h/v2` as `/v2/pets/7`, `/pets/v1` as `/v2`; to `http://h/`
/// as `/pets/7` and `/`. Envoy rewrites the path only (the query string stays) after the filter
/// has decided on the original, which the access log shows (`x-envoy-original-path`).
pub fn base_path_rewrite(base: &str, upstream_path: &str) -> Value {
    let base = base.trim_end_matches('/');
    let target = upstream_path.trim_end_matches('/');
    let base = regex_escape(base);
    let (pattern, substitution) = if target.is_empty() {
        (format!("^{base}/?(.*)$"), "/\\1".to_string())
    } else {
        (format!("^{base}(/.*)?$"), format!("{target}\\1"))
    };
    json!({"pattern": {"regex": pattern}, "substitution": substitution})
}

/// `text` as an RE2 literal.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '/' && c != '_' && c != '-' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The cluster of `gateway.rate_limit_service` (gRPC, so HTTP/2) and the rate-limit filter, when
/// the declaration names a service (see `crate::cli::render::ratelimit`).
fn rate_limit_service(
    decl: &Declaration,
    clusters: &mut BTreeMap<String, Value>,
    names: &mut TargetNames,
    options: &EnvoyOptions,
) -> Result<Option<Value>, NameCollision> {
    let (Some(service), Some(filter)) = (
        decl.gateway.rate_limit_service.as_ref(),
        ratelimit::http_filter(decl),
    ) else {
        return Ok(None);
    };
    let Ok(url) = HttpUrl::parse(&format!("http://{}", service.value)) else {
        return Ok(None);
    };
    names.claim(ratelimit::CLUSTER, &url.target())?;
    let mut grpc = cluster(ratelimit::CLUSTER, &url, options);
    if let Some(obj) = grpc.as_object_mut() {
        obj.insert(
            "typed_extension_protocol_options".into(),
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }}),
        );
    }
    clusters.insert(ratelimit::CLUSTER.to_string(), grpc);
    Ok(Some(filter))
}

/// Puts the rate-limit filter after keygate (whose identity headers it reads) and before the
/// router, the descriptors on the virtual host, and the JSON local replies of the filter.
fn add_rate_limiting(hcm: &mut Value, filter: Value, plugin: &PluginConfig) {
    if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_array_mut) {
        let router = filters.len().saturating_sub(1);
        filters.insert(router, filter);
    }
    if let Some(vhost) = hcm
        .pointer_mut("/route_config/virtual_hosts/0")
        .and_then(Value::as_object_mut)
    {
        vhost.insert("rate_limits".into(), ratelimit::rate_limits(plugin));
    }
    let mappers = ratelimit::local_reply_config()
        .get("mappers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(existing) = hcm
        .pointer_mut("/local_reply_config/mappers")
        .and_then(Value::as_array_mut)
    {
        existing.extend(mappers);
    }
}

/// Envoy refuses a path it cannot normalize (`%2F`, `%5C`: `path_with_escaped_slashes_action:
/// REJECT_REQUEST`) before any filter runs, with an empty 400; this mapper gives that reply the
/// body keygate's own refusal of such a path has (`path_not_canonical`). It matches Envoy's
/// response code details with a CEL filter, so the filter's own replies are never rewritten.
fn path_refusal_reply() -> Value {
    ratelimit::json_reply(
        json!({"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "response.code_details == 'path_normalization_failed'",
            },
        }}),
        (
            "invalid_request",
            "the path contains an encoded '/' or '\\' (%2F, %5C) or cannot be normalized",
        ),
        "path_not_canonical",
        &[],
    )
}

/// The keygate HTTP filter in the bootstrap: its configuration comes by ECDS from [`ECDS_FILE`].
/// There is no default config: the listener starts serving once the file's config is loaded
/// (warming), and a later config Envoy rejects leaves the last accepted one in place.
fn filter_discovery(options: &EnvoyOptions) -> Value {
    let dir = options.ecds_dir.trim_end_matches('/');
    json!({
        "name": FILTER_NAME,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": format!("{dir}/{ECDS_FILE}"),
                    // Reload on any rename into the directory: a replaced file, and a
                    // Kubernetes ConfigMap's `..data` symlink swap.
                    "watched_directory": {"path": dir},
                },
            },
            "type_urls": [WASM_FILTER_TYPE],
        },
    })
}

/// The keygate HTTP filter for a listener served by an xDS management server: the same
/// subscription as [`filter_discovery`], over the server's ADS stream instead of a file.
pub fn filter_discovery_ads() -> Value {
    json!({
        "name": FILTER_NAME,
        "config_discovery": {
            "config_source": {"resource_api_version": "V3", "ads": {}},
            "type_urls": [WASM_FILTER_TYPE],
        },
    })
}

/// The Wasm filter config: the module, and the plugin config as its `configuration`.
pub fn filter_config(plugin: &PluginConfig, wasm_path: &str) -> Result<Value, BootstrapError> {
    let plugin_json = serde_json::to_string(plugin)?;
    let mut vm_config = json!({
        // Key records live in shared data, which belongs to the vm_id: a new filter
        // config (even a new module) keeps the keys fetched under the old one.
        "vm_id": "keygate",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": wasm_path}},
    });
    let secret_keys = secret_env_keys(plugin);
    if let (false, Some(vm)) = (secret_keys.is_empty(), vm_config.as_object_mut()) {
        // Names only: Envoy copies the values from its own environment into the VM's.
        vm.insert(
            "environment_variables".into(),
            json!({"host_env_keys": secret_keys}),
        );
    }
    Ok(json!({
        "@type": WASM_FILTER_TYPE,
        "config": {
            "name": FILTER_NAME,
            "root_id": "keygate",
            "fail_open": false,
            "vm_config": vm_config,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_json,
            },
        },
    }))
}

/// The ECDS resource: the filter config named [`FILTER_NAME`] (what an xDS server serves).
pub fn filter_resource(plugin: &PluginConfig, wasm_path: &str) -> Result<Value, BootstrapError> {
    Ok(json!({
        "@type": TYPED_EXTENSION_CONFIG,
        "name": FILTER_NAME,
        "typed_config": filter_config(plugin, wasm_path)?,
    }))
}

/// The contents of [`ECDS_FILE`]: a discovery response holding the one filter resource.
pub fn ecds_file(plugin: &PluginConfig, wasm_path: &str) -> Result<Value, BootstrapError> {
    Ok(json!({"resources": [filter_resource(plugin, wasm_path)?]}))
}

/// Histogram buckets of the filter's time per request, in microseconds (Envoy's defaults are
/// meant for milliseconds).
const FILTER_TIME_BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Tag extraction that turns the filter's labeled stat names into Prometheus labels (see
/// `crate::worker::metrics`), and microsecond buckets for its time histogram. Envoy's default tags stay.
pub fn stats_config() -> Value {
    let tags: Vec<Value> = metrics::stats_tags()
        .into_iter()
        .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
        .collect();
    json!({
        "stats_tags": tags,
        "use_all_default_tags": true,
        "histogram_bucket_settings": [{
            "match": {"prefix": format!("wasmcustom.{}", metrics::FILTER_TIME_US)},
            "buckets": FILTER_TIME_BUCKETS_US,
        }],
    })
}

fn socket_address(addr: &SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// A cluster for one host: STATIC for IP literals, STRICT_DNS otherwise; TLS with SNI and
/// certificate checks (system CA bundle, SAN = host) for https.
fn cluster(name: &str, url: &HttpUrl, options: &EnvoyOptions) -> Value {
    let host = url.host.clone();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": url.port},
            }}}]}],
        },
    });
    let Some(obj) = cluster.as_object_mut() else {
        return cluster;
    };
    if !is_ip {
        obj.insert("dns_lookup_family".into(), json!("V4_PREFERRED"));
    }
    if url.scheme == Scheme::Https {
        let san = if url.ip().is_some() {
            json!({"san_type": "IP_ADDRESS", "matcher": {"exact": url.host}})
        } else {
            json!({"san_type": "DNS", "matcher": {"exact": url.host}})
        };
        let mut tls = json!({
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": options.ca_file},
                "match_typed_subject_alt_names": [san],
            }},
        });
        if url.ip().is_none() {
            if let Some(tls_obj) = tls.as_object_mut() {
                tls_obj.insert("sni".into(), json!(url.host));
            }
        }
        obj.insert(
            "transport_socket".into(),
            json!({"name": "envoy.transport_sockets.tls", "typed_config": tls}),
        );
    }
    cluster
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declaration(yaml: &str) -> Declaration {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// A plugin config with one key manager per (name, JWKS URI, cluster).
    fn plugin(key_managers: &[(&str, &str, &str)]) -> PluginConfig {
        let kms: Vec<Value> = key_managers
            .iter()
            .map(|(name, uri, cluster)| {
                json!({"name": name, "issuer": format!("https://{name}.example"),
                   "jwks": {"uri": uri, "cluster": cluster, "authority": "x", "path": "/"}})
            })
            .collect();
        serde_json::from_value(json!({"environment": "production", "key_managers": kms})).unwrap()
    }

    fn options() -> EnvoyOptions {
        EnvoyOptions {
            wasm_path: "/k.wasm".into(),
            listen: "127.0.0.1:8080".parse().unwrap(),
            admin: "127.0.0.1:9901".parse().unwrap(),
            ca_file: "/ca.pem".into(),
            upstream_timeout_seconds: 15,
            ecds_dir: "/out/live".into(),
            tls: None,
        }
    }

    fn clusters(bootstrap: &Value) -> Vec<(String, String)> {
        bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let host = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                    ["address"]["socket_address"]["address"];
                (
                    c["name"].as_str().unwrap().to_string(),
                    host.as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn names_keep_hosts_apart_that_differ_only_in_dots_and_dashes() {
        let a = HttpUrl::parse("https://idp.example-corp.com/jwks").unwrap();
        let b = HttpUrl::parse("https://idp-example.corp.com/jwks").unwrap();
        assert_ne!(jwks_cluster(&a), jwks_cluster(&b));
        assert_ne!(upstream_cluster(&a), upstream_cluster(&b));
        let name = jwks_cluster(&a);
        let (readable, digest) = name.rsplit_once('_').unwrap();
        assert_eq!(readable, "keygate_jwks_idp_example_corp_com_443");
        assert_eq!(digest, a.target_digest());
        // Same target, same name (key managers on one host share a cluster); scheme and port
        // are part of the target.
        let same = HttpUrl::parse("https://IDP.example-corp.com:443/other").unwrap();
        assert_eq!(jwks_cluster(&same), name);
        let http = HttpUrl::parse("http://idp.example-corp.com:443/jwks").unwrap();
        assert_ne!(jwks_cluster(&http), name);
        // Envoy-friendly: letters, digits, `_`; bounded even for very long hosts.
        let long = HttpUrl::parse(&format!("https://{}.example/", "h".repeat(200))).unwrap();
        let long_name = upstream_cluster(&long);
        assert!(long_name.len() <= 80, "{long_name}");
        for n in [
            name,
            long_name,
            upstream_cluster(&HttpUrl::parse("http://[::1]:9/").unwrap()),
        ] {
            assert!(
                n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{n}"
            );
        }
    }

    #[test]
    fn each_cluster_reaches_its_own_host() {
        let decl = declaration(
            "gateway: {environment: production}\n\
             apis:\n\
             \x20 - {name: a, base_path: /a, upstream: \"https://api.example-corp.com\"}\n\
             \x20 - {name: b, base_path: /b, upstream: \"https://api-example.corp.com\"}\n",
        );
        let a = HttpUrl::parse("https://idp.example-corp.com/jwks").unwrap();
        let b = HttpUrl::parse("https://idp-example.corp.com/jwks").unwrap();
        let config = plugin(&[
            ("a", &a.to_string(), &jwks_cluster(&a)),
            ("b", &b.to_string(), &jwks_cluster(&b)),
        ]);
        let boot = bootstrap(&decl, &config, &options()).unwrap();
        let clusters = clusters(&boot);
        assert_eq!(clusters.len(), 4, "{clusters:?}");
        let host_of = |name: &str| {
            clusters
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| h.clone())
                .unwrap()
        };
        assert_eq!(host_of(&jwks_cluster(&a)), "idp.example-corp.com");
        assert_eq!(host_of(&jwks_cluster(&b)), "idp-example.corp.com");
        let routes = boot.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes").unwrap();
        for (route, host) in [
            ("api_a", "api.example-corp.com"),
            ("api_b", "api-example.corp.com"),
        ] {
            let cluster = routes
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == route)
                .unwrap()["route"]["cluster"]
                .as_str()
                .unwrap();
            assert_eq!(host_of(cluster), host, "{route}");
        }
    }

    #[test]
    fn an_upstream_path_takes_the_place_of_the_base_path() {
        let rewrite = |base: &str, path: &str| {
            let value = base_path_rewrite(base, path);
            (
                value["pattern"]["regex"].as_str().unwrap().to_string(),
                value["substitution"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            rewrite("/pets/v1", "/v2"),
            (r"^/pets/v1(/.*)?$".into(), r"/v2\1".into())
        );
        assert_eq!(
            rewrite("/pets/v1", "/v2/"),
            (r"^/pets/v1(/.*)?$".into(), r"/v2\1".into())
        );
        assert_eq!(
            rewrite("/a.b+c", "/"),
            (r"^/a\.b\+c/?(.*)$".into(), r"/\1".into())
        );
        assert_eq!(rewrite("/", "/v2"), (r"^(/.*)?$".into(), r"/v2\1".into()));

        let decl = declaration(
            "gateway: {environment: production}\n\
             apis:\n\
             \x20 - {name: a, base_path: /a, upstream: \"http://127.0.0.1:3000/v2\"}\n\
             \x20 - {name: b, base_path: /b, upstream: \"http://127.0.0.1:3000\"}\n",
        );
        let boot = bootstrap(&decl, &plugin(&[]), &options()).unwrap();
        let routes = boot.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes").unwrap();
        let route = |name: &str| {
            routes
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap()["route"]
                .clone()
        };
        assert_eq!(route("api_a")["regex_rewrite"]["substitution"], r"/v2\1");
        assert!(route("api_b").get("regex_rewrite").is_none());
    }

    #[test]
    fn the_bootstrap_extracts_every_metric_label_as_a_tag() {
        let decl = declaration("gateway: {environment: production}\n");
        let boot = bootstrap(&decl, &plugin(&[]), &options()).unwrap();
        let config = &boot["stats_config"];
        assert_eq!(config["use_all_default_tags"], true);
        let tags: Vec<(&str, &str)> = config["stats_tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tag_name"].as_str().unwrap(),
                    t["regex"].as_str().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = tags.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, metrics::LABELS);
        for (name, regex) in tags {
            assert!(regex.starts_with(r"^wasmcustom\.keygate_"), "{regex}");
            assert!(regex.contains(&format!(r"(\.{name}\.([^.]+))")), "{regex}");
        }
        let buckets = &config["histogram_bucket_settings"][0];
        assert_eq!(
            buckets["match"]["prefix"],
            format!("wasmcustom.{}", metrics::FILTER_TIME_US)
        );
        assert_eq!(buckets["buckets"][0], 10);
    }

    #[test]
    fn two_targets_behind_one_name_are_refused() {
        let decl = declaration("gateway: {environment: production}\n");
        // A plugin config whose JWKS cluster names collide (as the old naming made them do).
        let config = plugin(&[
            (
                "a",
                "https://idp.example-corp.com/jwks",
                "keygate_jwks_same",
            ),
            (
                "b",
                "https://idp-example.corp.com/jwks",
                "keygate_jwks_same",
            ),
        ]);
        let err = bootstrap(&decl, &config, &options()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("keygate_jwks_same"), "{text}");
        assert!(text.contains("https://idp.example-corp.com:443"), "{text}");
        assert!(text.contains("https://idp-example.corp.com:443"), "{text}");
        // Sharing a name is fine for one target.
        let config = plugin(&[
            ("a", "https://idp.example.com/t/a/jwks", "keygate_jwks_same"),
            (
                "b",
                "https://idp.example.com:443/t/b/jwks",
                "keygate_jwks_same",
            ),
        ]);
        let boot = bootstrap(&decl, &config, &options()).unwrap();
        assert_eq!(clusters(&boot).len(), 1);
    }
}
