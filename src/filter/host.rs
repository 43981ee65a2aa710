//! Host calls that return values instead of panicking.
//!
//! The SDK's trait methods unwrap host results; a filter must not abort a worker because the host
//! refused one call, so the shell goes through these wrappers and logs the failure instead.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// Seconds since the Unix epoch as the host sees them (0.0 if the host cannot tell).
pub fn now() -> f64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The plugin configuration bytes, if any.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

/// Removes every incoming identity header: only the filter may set them.
pub fn remove_identity_headers(prefix: &str) {
    for (name, _) in request_headers() {
        if crate::identity::is_identity_header(prefix, &name) {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name);
        }
    }
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
        log::warn!("keygate: could not set request header {name}");
    }
}

/// Sends a local reply for the current stream.
pub fn send_reply(status: u32, headers: &[(String, String)], body: &[u8]) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(body)) {
        log::error!("keygate: could not send a local reply: {status:?}");
    }
}

/// Last resort when the shell's own state is unavailable: fail closed.
pub fn reply_internal_error() {
    send_reply(
        500,
        &[("content-type".to_string(), "application/json".to_string())],
        br#"{"error":"server_error","error_description":"authorization unavailable","code":"internal_error"}"#,
    );
}

pub fn resume_request() {
    if hostcalls::resume_http_request().is_err() {
        log::warn!("keygate: could not resume a request");
    }
}

/// Makes `context_id` the stream later host calls act on.
pub fn set_effective_context(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

/// Stores a value in the stream's filter state (readable in access logs as `wasm.<name>`).
pub fn set_filter_state(name: &str, value: &str) {
    let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
}

pub fn call_response_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default()
}

pub fn call_response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Starts an HTTP GET through an Envoy cluster; returns the callout token.
pub fn dispatch_get(cluster: &str, authority: &str, path: &str, timeout_ms: u64) -> Option<u32> {
    let headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        ("accept", "application/jwk-set+json, application/json"),
        ("user-agent", "keygate"),
    ];
    match hostcalls::dispatch_http_call(
        cluster,
        headers,
        None,
        vec![],
        std::time::Duration::from_millis(timeout_ms),
    ) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("keygate: JWKS fetch through cluster {cluster} could not start: {status:?}");
            None
        }
    }
}

pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Compare-and-swap write (`CasMismatch` when another worker wrote first).
pub fn shared_set_status(
    key: &str,
    value: &[u8],
    cas: Option<u32>,
) -> Result<(), proxy_wasm::types::Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

pub fn set_tick_period_ms(ms: u64) {
    let _ = hostcalls::set_tick_period(std::time::Duration::from_millis(ms));
}

/// A counter, defined once per name (the host returns the same id for the same name).
pub fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
}

pub fn increment(id: u32) {
    let _ = hostcalls::increment_metric(id, 1);
}
