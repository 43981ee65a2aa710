//! The core's [`Host`] over proxy-wasm host calls.
//!
//! Every call goes through `hostcalls` functions that return `Result` (the SDK's trait methods
//! unwrap), so a host refusal becomes a value and a log line, never an aborted worker. Calls on a
//! stream first make that stream the effective context. The SDK delivers a callout's answer to the
//! context whose callback made it, so the worker dispatches only from root callbacks; a stream
//! that needs a fetch wakes the root through a shared queue that only this worker listens to.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::jose::{offload, sign, HostCrypto};
use crate::keys::{Expect, SlotError};
use crate::worker::{decode_header_map, Fetch, Host, StreamId};

use super::raw::{self, HeaderMap};

/// The host as seen from one callback: `current` is the context Envoy called into.
pub struct ProxyHost<'m> {
    current: u32,
    /// Envoy's `verify_signature` passed the self-test at configuration.
    crypto: bool,
    /// This worker's wake-up queue (see `super::root`).
    queue: Option<u32>,
    /// The context host calls act on right now.
    effective: u32,
    metrics: &'m mut BTreeMap<String, Option<u32>>,
}

impl<'m> ProxyHost<'m> {
    pub fn new(
        current: u32,
        queue: Option<u32>,
        crypto: bool,
        metrics: &'m mut BTreeMap<String, Option<u32>>,
    ) -> Self {
        ProxyHost {
            current,
            crypto,
            queue,
            effective: current,
            metrics,
        }
    }

    fn focus(&mut self, context: u32) -> bool {
        if self.effective == context {
            return true;
        }
        if hostcalls::set_effective_context(context).is_ok() {
            self.effective = context;
            true
        } else {
            false
        }
    }
}

impl Drop for ProxyHost<'_> {
    /// Hand the callback back to Envoy on the context it called into.
    fn drop(&mut self) {
        let current = self.current;
        self.focus(current);
    }
}

impl HostCrypto for ProxyHost<'_> {
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Option<bool> {
        if !self.crypto {
            return None;
        }
        EnvoyCrypto.verify_signature(hash, public_key, signature, message)
    }

    fn sign(&self, hash: &str, private_key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        EnvoyCrypto.sign(hash, private_key, message)
    }
}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    /// `None` when the host has no such function or refused the arguments.
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Option<bool> {
        let args = offload::encode_arguments(hash, public_key, signature, message);
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(result)) => offload::decode_result(&result),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Envoy's `sign` (BoringSSL); `None` when the host has no such function or refused.
    fn sign(&self, hash: &str, private_key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        let args = sign::encode_sign_arguments(hash, private_key, message);
        match hostcalls::call_foreign_function("sign", Some(&args)) {
            Ok(Some(result)) => sign::decode_sign_result(&result),
            _ => None,
        }
    }
}

/// Envoy's `sign` for the probe at configuration (the signer checks the answer).
pub fn envoy_signer() -> &'static dyn HostCrypto {
    &EnvoyCrypto
}

/// Whether Envoy's `verify_signature` is there and answers a known vector correctly.
pub fn probe_host_crypto() -> bool {
    offload::host_is_sound(&EnvoyCrypto)
}

/// Sets a gauge (defined on first use).
pub fn set_gauge(name: &str, value: u64) {
    if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, name) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Adds one to a counter outside any callback's host (configuration loads and refusals).
pub fn count(name: &str) {
    if let Ok(id) = hostcalls::define_metric(MetricType::Counter, name) {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl ProxyHost<'_> {
    /// The host's id for metric `name` of `kind`, defined on first use.
    fn metric(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.metrics.get(name) {
            return *id;
        }
        let id = hostcalls::define_metric(kind, name).ok();
        self.metrics.insert(name.to_string(), id);
        id
    }
}

/// Time since the Unix epoch by the host's clock.
fn since_epoch() -> Option<Duration> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
}

impl Host for ProxyHost<'_> {
    fn peer_certificate_sha256(&self) -> Option<String> {
        let path = vec!["connection", "sha256_peer_certificate_digest"];
        let bytes = hostcalls::get_property(path).ok()??;
        String::from_utf8(bytes).ok().filter(|hex| !hex.is_empty())
    }

    fn now_ms(&self) -> u64 {
        since_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_us(&self) -> u64 {
        since_epoch().map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn shared_set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
        // Envoy accepts any CAS value for a missing key and refuses a stale one for an existing
        // key, so "must be absent" is spelled with a CAS value it never hands out.
        let cas = match expect {
            Expect::Absent => u32::MAX,
            Expect::Cas(cas) => cas,
        };
        match hostcalls::set_shared_data(key, Some(bytes), Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SlotError::CasMismatch),
            Err(_) => Err(SlotError::Host),
        }
    }

    fn dispatch(&mut self, fetch: &Fetch<'_>) -> Option<u32> {
        let current = self.current;
        self.focus(current);
        // Sent as a length, not chunked: every HTTP/1.1 server reads that.
        let length = fetch
            .post
            .map(|p| p.body.len().to_string())
            .unwrap_or_default();
        let (headers, body) = match &fetch.post {
            None => {
                let mut headers = vec![
                    (":method", "GET"),
                    (":path", fetch.path),
                    (":authority", fetch.authority),
                    ("accept", "application/jwk-set+json, application/json"),
                    ("user-agent", "keygate"),
                ];
                headers.extend_from_slice(fetch.headers);
                (headers, None)
            }
            Some(post) => (
                vec![
                    (":method", "POST"),
                    (":path", fetch.path),
                    (":authority", fetch.authority),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("content-length", length.as_str()),
                    ("accept", "application/json"),
                    ("authorization", post.authorization),
                    ("user-agent", "keygate"),
                ],
                Some(post.body),
            ),
        };
        match hostcalls::dispatch_http_call(
            fetch.cluster,
            headers,
            body,
            vec![],
            Duration::from_millis(fetch.timeout_ms),
        ) {
            Ok(token) => Some(token),
            Err(status) => {
                log::warn!(
                    "keygate: callout through cluster {} could not start: {status:?}",
                    fetch.cluster
                );
                None
            }
        }
    }

    fn wake_root(&mut self) -> bool {
        let Some(queue) = self.queue else {
            return false;
        };
        match hostcalls::enqueue_shared_queue(queue, Some(b"w")) {
            Ok(()) => true,
            Err(status) => {
                log::warn!("keygate: could not wake the root context: {status:?}");
                false
            }
        }
    }

    fn fetch_headers(&self) -> Vec<(String, String)> {
        let bytes = raw::header_map_bytes(HeaderMap::CallResponse);
        decode_header_map(&bytes).unwrap_or_default()
    }

    fn fetch_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn fetch_body_part(&self, start: usize, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, start, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        if !self.focus(stream) {
            return false;
        }
        // Every identity header was removed when the request arrived, so adding is enough (and
        // spares Envoy the lookup a replace does).
        let done = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_ok();
        if !done {
            log::warn!("keygate: could not set request header {name}");
        }
        done
    }

    fn remove_header(&mut self, stream: StreamId, name: &str) -> bool {
        self.focus(stream) && hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok()
    }

    fn set_filter_state(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        self.focus(stream) && hostcalls::set_property(vec![name], Some(value.as_bytes())).is_ok()
    }

    fn reply(
        &mut self,
        stream: StreamId,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
    ) -> bool {
        if !self.focus(stream) {
            return false;
        }
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match hostcalls::send_http_response(status, headers, Some(body)) {
            Ok(()) => true,
            Err(status) => {
                log::error!("keygate: could not send a local reply: {status:?}");
                false
            }
        }
    }

    fn resume(&mut self, stream: StreamId) -> bool {
        let done = self.focus(stream) && hostcalls::resume_http_request().is_ok();
        if !done {
            log::warn!("keygate: could not resume a request");
        }
        done
    }

    fn add_response_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        self.focus(stream)
            && hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value).is_ok()
    }

    fn count(&mut self, name: &str) {
        if let Some(id) = self.metric(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn record(&mut self, name: &str, value: u64) {
        if let Some(id) = self.metric(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// The plugin configuration bytes, if any.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// The current stream's request headers, pseudo-headers included (values that are not UTF-8
/// read with U+FFFD for their bad bytes); `None` for a map that is not well-formed.
pub fn request_headers() -> Option<Vec<(String, String)>> {
    decode_header_map(&raw::header_map_bytes(HeaderMap::Request))
}

/// Last resort when the worker is unavailable (re-entrant call, failed configuration): fail closed.
pub fn reply_internal_error() {
    let body = br#"{"error":"server_error","error_description":"authorization unavailable","code":"internal_error"}"#;
    let headers = vec![("content-type", "application/json")];
    if let Err(status) = hostcalls::send_http_response(500, headers, Some(body)) {
        log::error!("keygate: could not send a local reply: {status:?}");
    }
}

/// Registers this worker's wake-up queue under a name no other worker uses (Envoy notifies only
/// the last context that registered a name).
pub fn register_queue(name: &str) -> Option<u32> {
    match hostcalls::register_shared_queue(name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("keygate: no wake-up queue ({status:?}); fetches start on the next tick");
            None
        }
    }
}

/// Empties a queue (its items only say "wake up").
pub fn drain_queue(queue: u32) {
    while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue) {}
}

pub fn set_tick_period_ms(ms: u64) {
    let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
}
