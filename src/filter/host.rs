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
