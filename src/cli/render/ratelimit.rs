//! Fleet-wide tiers: with `gateway.rate_limit_service: HOST:PORT` the Envoy bootstrap runs Envoy's
//! own `envoy.filters.http.ratelimit` after keygate, against that gRPC rate-limit service
//! (envoyproxy/ratelimit), and `generate` writes the service's configuration,
//! `ratelimit/config.yaml`. Every Envoy of the fleet then spends from one budget per subscription.
//!
//! The descriptors come from the identity headers keygate writes for an allowed request
//! (`<prefix>tier`, `<prefix>application`, `<prefix>api`). Keygate removes every incoming header
//! with its prefix before deciding, so they are the filter's own values, never the client's; an
//! unlimited subscription has no tier header, and a request without one sends no descriptor (it
//! is not counted). The plugin config says `limiter: service`, so the filter does not count too.

use serde_json::{json, Value};

use crate::cli::declaration::model::Declaration;
use crate::config::PluginConfig;

/// The rate-limit domain of keygate's descriptors.
pub const DOMAIN: &str = "keygate";

/// The Envoy cluster of the rate-limit service.
pub const CLUSTER: &str = "keygate_ratelimit";

/// How long a request waits for the service's answer before it counts as a failure.
const TIMEOUT: &str = "0.25s";

/// Where `generate` writes the service's configuration.
pub const CONFIG_FILE: &str = "ratelimit/config.yaml";

/// The `envoy.filters.http.ratelimit` entry of the HTTP filter chain, when the declaration names a
/// rate-limit service.
pub fn http_filter(decl: &Declaration) -> Option<Value> {
    decl.gateway.rate_limit_service.as_ref()?;
    let gateway = &decl.gateway;
    Some(json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": DOMAIN,
            // Fail closed unless the operator chose otherwise: a request the service could not
            // count is answered 503 rather than let through uncounted.
            "failure_mode_deny": !gateway.rate_limit_fail_open,
            "status_on_error": {"code": "ServiceUnavailable"},
            // Envoy's default (20 ms) is tight for a service behind Redis on a busy network.
            "timeout": TIMEOUT,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": CLUSTER}},
                "transport_api_version": "V3",
            },
        },
    }))
}

/// The virtual host's `rate_limits`: one descriptor (tier, application, API) per allowed request
/// of a subscription with a tier.
pub fn rate_limits(plugin: &PluginConfig) -> Value {
    let prefix = plugin.settings.header_prefix.to_ascii_lowercase();
    let action = |suffix: &str, key: &str| json!({"request_headers": {"header_name": format!("{prefix}{suffix}"), "descriptor_key": key}});
    json!([{"actions": [
        action("tier", "tier"),
        action("application", "application"),
        action("api", "api"),
    ]}])
}

/// Local replies of the rate-limit filter in keygate's JSON shape: over the limit (response flag
/// `RL`) 429 `rate_limited` with `Retry-After` from the service's reset time; the service failed
/// (`RLSE`, only with `failure_mode_deny`) 503 `rate_limit_unavailable`.
pub fn local_reply_config() -> Value {
    json!({"mappers": [
        json_reply(
            json!({"response_flag_filter": {"flags": ["RL"]}}),
            ("rate_limited", "the subscription's tier allows no more requests in this window"),
            "rate_limited",
            &[("retry-after", "%RESP(x-ratelimit-reset)%")],
        ),
        json_reply(
            json!({"response_flag_filter": {"flags": ["RLSE"]}}),
            (
                "temporarily_unavailable",
                "the rate-limit service could not count the request; retry later",
            ),
            "rate_limit_unavailable",
            &[],
        ),
    ]})
}

/// A local reply mapper: the replies `filter` matches get keygate's JSON body (`error` and
/// `error_description`, `code`), `cache-control: no-store` and `headers`.
pub fn json_reply(
    filter: Value,
    (error, description): (&str, &str),
    code: &str,
    headers: &[(&str, &str)],
) -> Value {
    let body = json!({"error": error, "error_description": description, "code": code});
    let headers: Vec<Value> = headers
        .iter()
        .chain(&[("cache-control", "no-store")])
        .map(|(key, value)| {
            json!({"header": {"key": key, "value": value},
                   "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
        })
        .collect();
    json!({
        "filter": filter,
        "body": {"inline_string": body.to_string()},
        "body_format_override": {
            "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": "application/json",
        },
        "headers_to_add": headers,
    })
}

/// `ratelimit/config.yaml` for envoyproxy/ratelimit: domain `keygate`, one descriptor per tier,
/// with nested application and API keys that have no value, so the service keeps one counter per
/// (tier, application, API).
pub fn service_config(plugin: &PluginConfig) -> Value {
    let descriptors: Vec<Value> = plugin
        .tiers
        .iter()
        .map(|tier| {
            json!({
                "key": "tier",
                "value": tier.name,
                "descriptors": [{
                    "key": "application",
                    "descriptors": [{
                        "key": "api",
                        "rate_limit": {"unit": tier.per, "requests_per_unit": tier.requests},
                    }],
                }],
            })
        })
        .collect();
    json!({"domain": DOMAIN, "descriptors": descriptors})
}
