//! What the worker needs from its host: the small surface the proxy-wasm shell implements over
//! Envoy's host calls, and [`super::FakeHost`] implements in memory for native tests.

use crate::jose::HostCrypto;
use crate::keys::{Expect, SlotError};

/// A request stream, as the host numbers it (proxy-wasm's context id).
pub type StreamId = u32;

/// An outgoing call the worker wants made: a GET (a JWKS fetch), or a form POST (an
/// introspection call) when `post` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch<'a> {
    /// The Envoy cluster that reaches the key manager.
    pub cluster: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub timeout_ms: u64,
    pub post: Option<Post<'a>>,
    /// More request headers of a GET (the directory's `If-None-Match` and `Authorization`).
    pub headers: &'a [(&'a str, &'a str)],
}

/// A POST of an `application/x-www-form-urlencoded` body with client credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Post<'a> {
    /// The `Authorization` header value (HTTP Basic client credentials).
    pub authorization: &'a str,
    pub body: &'a [u8],
}

impl std::fmt::Debug for Post<'_> {
    /// The credentials and the body (which carries a token) are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Post({} body bytes)", self.body.len())
    }
}

/// Host calls, each one that can fail returning a value instead of panicking.
///
/// Calls that act on a stream name it: the host makes that stream current for the call (the
/// proxy-wasm shell through `set_effective_context`) and reports `false` when the stream is gone.
///
/// [`HostCrypto`] is part of it: a host that cannot verify signatures answers `None` and the
/// worker verifies in Wasm.
pub trait Host: HostCrypto {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// The current request's TLS client certificate digest as Envoy gives it
    /// (`connection.sha256_peer_certificate_digest`: hex of the SHA-256 of its DER); `None`
    /// without TLS or without a client certificate.
    fn peer_certificate_sha256(&self) -> Option<String> {
        None
    }
    /// Microseconds since the Unix epoch (the filter's own time per request is measured with
    /// it); a host without a finer clock answers in whole milliseconds.
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }

    /// A shared-data entry visible to every worker of this Envoy: bytes and their CAS value.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// A compare-and-swap write of a shared-data entry.
    fn shared_set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError>;

    /// Starts a call that belongs to the worker, not to any stream: its answer arrives through
    /// [`super::Worker::on_fetch_answer`] even when the stream that needed it is gone. The worker
    /// calls it only from root callbacks (tick, wake-up, callout answer). Returns the callout
    /// token, or `None` when the host refused to start it.
    fn dispatch(&mut self, fetch: &Fetch<'_>) -> Option<u32>;
    /// Asks for a root callback ([`super::Worker::on_wakeup`]) as soon as the current callback
    /// returns; false when the host cannot (the next tick then does the work).
    fn wake_root(&mut self) -> bool;
    /// Response headers of the callout being answered (empty when the host got no response).
    fn fetch_headers(&self) -> Vec<(String, String)>;
    /// Response body of the callout being answered, at most `size` bytes.
    fn fetch_body(&self, size: usize) -> Vec<u8>;
    /// `size` bytes of that body from `start` (a large answer is read in parts, never copied
    /// whole into the VM).
    fn fetch_body_part(&self, start: usize, size: usize) -> Vec<u8> {
        let body = self.fetch_body(start.saturating_add(size));
        body.get(start..).map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// Adds a request header to `stream` (the worker removed any incoming one of that name first).
    fn set_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool;
    /// Removes a request header of `stream`.
    fn remove_header(&mut self, stream: StreamId, name: &str) -> bool;
    /// Filter state of `stream` (access logs read it as `wasm.<name>`).
    fn set_filter_state(&mut self, stream: StreamId, name: &str, value: &str) -> bool;
    /// Answers `stream` locally; it is not forwarded.
    fn reply(
        &mut self,
        stream: StreamId,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
    ) -> bool;
    /// Lets a paused `stream` continue upstream.
    fn resume(&mut self, stream: StreamId) -> bool;
    /// Adds a header to the upstream's response on `stream` (called while its response headers
    /// are being handled).
    fn add_response_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool;

    /// Adds one to the counter `name` (a plain name, or a labeled one built with
    /// [`crate::worker::metrics::StatName`]).
    fn count(&mut self, name: &str);
    /// Records `value` in the histogram `name`.
    fn record(&mut self, name: &str, value: u64);
}
