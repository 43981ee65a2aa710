//! The Envoy bootstrap: one listener whose HTTP connection manager runs the keygate wasm filter
//! then the router, one cluster per upstream and one per JWKS host (the filter reaches the JWKS
//! with `dispatch_http_call` on that cluster), and the admin interface.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::cli::declaration::Declaration;
use crate::cli::plugin::sanitize;
use crate::cli::url::{HttpUrl, Scheme};
use crate::config::PluginConfig;

/// What differs between the bootstrap run on this machine and the one inside a container.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Absolute path of the `.wasm` as Envoy will see it.
    pub wasm_path: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub ca_file: String,
    /// In a container, loopback hosts of the declaration mean the Docker host: they are replaced by
    /// this name (`host.docker.internal`).
    pub loopback_alias: Option<String>,
    pub upstream_timeout_seconds: u64,
}

/// The Envoy cluster name of an upstream.
pub fn upstream_cluster(url: &HttpUrl) -> String {
    format!("keygate_upstream_{}_{}", sanitize(&url.host), url.port)
}

/// Renders the bootstrap as a JSON value (written out as YAML).
pub fn bootstrap(
    decl: &Declaration,
    plugin: &PluginConfig,
    options: &EnvoyOptions,
) -> Result<Value, serde_json::Error> {
    let plugin_json = serde_json::to_string(plugin)?;
    let mut clusters: BTreeMap<String, Value> = BTreeMap::new();

    for km in &plugin.key_managers {
        if let Ok(url) = HttpUrl::parse(&km.jwks.uri) {
            clusters
                .entry(km.jwks.cluster.clone())
                .or_insert_with(|| cluster(&km.jwks.cluster, &url, options));
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
                clusters
                    .entry(name.clone())
                    .or_insert_with(|| cluster(&name, &url, options));
                json!({"route": {
                    "cluster": name,
                    "timeout": format!("{}s", options.upstream_timeout_seconds),
                }})
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
    // Unknown paths: the filter answers them first (404 or pass, per settings.unknown_api); a
    // passed request still must not reach anything.
    routes.push(json!({
        "name": "catch_all",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "{\"error\":\"not_found\"}"}},
    }));

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
        "route_config": {
            "name": "keygate_routes",
            "virtual_hosts": [{"name": "keygate", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "keygate",
                        "root_id": "keygate",
                        "fail_open": false,
                        "vm_config": {
                            "vm_id": "keygate",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": options.wasm_path}},
                        },
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": plugin_json,
                        },
                    },
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    });

    Ok(json!({
        "admin": {"address": socket_address(&options.admin)},
        "static_resources": {
            "listeners": [{
                "name": "keygate_listener",
                "address": socket_address(&options.listen),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters.into_values().collect::<Vec<_>>(),
        },
    }))
}

fn socket_address(addr: &SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// A cluster for one host: STATIC for IP literals, STRICT_DNS otherwise; TLS with SNI and
/// certificate checks (system CA bundle, SAN = host) for https.
fn cluster(name: &str, url: &HttpUrl, options: &EnvoyOptions) -> Value {
    let host = match &options.loopback_alias {
        Some(alias) if url.is_loopback() => alias.clone(),
        _ => url.host.clone(),
    };
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
        // Certificates are checked against the name in the URL, not the container alias.
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
