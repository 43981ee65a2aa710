//! An in-memory [`Host`] for native tests and benchmarks of the worker: a clock you set, shared
//! data with Envoy's compare-and-swap rules (shareable between several fake workers), callouts
//! you answer by hand, and a log of what each stream was told. It counts every host call, so a
//! benchmark can report host calls per request.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use crate::jose::HostCrypto;
use crate::keys::{Expect, SlotError};

use super::host::{Fetch, Host, StreamId};
use super::Worker;

/// Shared data as one Envoy holds it for all its workers: key → (bytes, CAS value).
pub type SharedData = Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>;

/// A local reply sent to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of the JSON body.
    pub fn code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body.get("code")?.as_str().map(str::to_string)
    }
}

/// What the worker did to one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamLog {
    pub set_headers: Vec<(String, String)>,
    pub removed_headers: Vec<String>,
    pub filter_state: Vec<(String, String)>,
    pub reply: Option<Sent>,
    pub resumed: bool,
    /// Headers added to the upstream's response.
    pub response_headers: Vec<(String, String)>,
}

/// A callout the worker started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub token: u32,
    pub cluster: String,
    pub path: String,
    pub timeout_ms: u64,
    /// `GET`, or `POST` for a call with a body.
    pub method: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// The more headers of a GET.
    pub headers: Vec<(String, String)>,
}

/// Runs in place of another worker's callback (see [`FakeHost::between_read_and_write`]).
pub type Interleaved = Box<dyn FnOnce()>;

/// A native signature check standing in for Envoy's `verify_signature` (hash, SPKI, signature,
/// message → verified?).
pub type Crypto = Box<dyn Fn(&str, &[u8], &[u8], &[u8]) -> Option<bool>>;

#[derive(Default)]
pub struct FakeHost {
    /// The host's signature check; `None` is a host without `verify_signature`.
    pub crypto: Option<Crypto>,
    /// Signature checks the host was asked for.
    pub crypto_calls: Cell<u64>,
    pub now_ms: u64,
    pub shared: SharedData,
    /// Callouts started, in order.
    pub dispatched: Vec<Dispatched>,
    /// When set, `dispatch` refuses (as a host without the cluster would).
    pub refuse_dispatch: bool,
    /// The TLS client certificate digest (hex) requests come with.
    pub peer_certificate: Option<String>,
    /// Times the worker asked for that certificate.
    pub peer_certificate_reads: Cell<u64>,
    next_token: u32,
    /// The callout response the next `on_fetch_answer` reads.
    answer_headers: Vec<(String, String)>,
    answer_body: Vec<u8>,
    pub streams: BTreeMap<StreamId, StreamLog>,
    /// Streams that no longer exist: calls on them fail.
    pub gone: HashSet<StreamId>,
    pub counters: BTreeMap<String, u64>,
    /// Values recorded per histogram, in order.
    pub histograms: BTreeMap<String, Vec<u64>>,
    /// Root wake-ups asked for and not run yet (see [`FakeHost::run_wakeup`]).
    pub wakeups: u32,
    /// When false, stream calls are counted but not logged (benchmarks run millions of them).
    pub record: bool,
    /// Every host call made, for cost accounting.
    calls: Cell<u64>,
    /// Shared-data reads (each copies the whole key record).
    shared_reads: Cell<u64>,
    /// Run once, at the next shared-data write, before it is applied: another worker's callback
    /// on the same shared data landing between this worker's read and its compare-and-swap write
    /// (Envoy's workers run truly in parallel; this is how a test makes them race).
    pub between_read_and_write: RefCell<Option<Interleaved>>,
}

impl FakeHost {
    pub fn new(now_ms: u64) -> FakeHost {
        FakeHost {
            now_ms,
            next_token: 1,
            record: true,
            ..FakeHost::default()
        }
    }

    /// Another worker of the same Envoy: same clock, same shared data.
    pub fn sibling(&self) -> FakeHost {
        FakeHost {
            now_ms: self.now_ms,
            shared: Rc::clone(&self.shared),
            // Tokens are per worker in Envoy; distinct ranges make mix-ups visible in tests.
            next_token: self.next_token.wrapping_add(1_000_000),
            record: self.record,
            ..FakeHost::default()
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    pub fn reset_calls(&self) {
        self.calls.set(0);
        self.shared_reads.set(0);
    }

    pub fn shared_reads(&self) -> u64 {
        self.shared_reads.get()
    }

    fn call(&self) {
        self.calls.set(self.calls.get().wrapping_add(1));
    }

    pub fn stream(&self, stream: StreamId) -> Option<&StreamLog> {
        self.streams.get(&stream)
    }

    pub fn reply_of(&self, stream: StreamId) -> Option<&Sent> {
        self.streams.get(&stream)?.reply.as_ref()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The sum of the labeled counter `metric` over the samples whose labels include every one
    /// of `labels` (as Prometheus would sum them).
    pub fn counter_where(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter_map(|(name, value)| {
                let (m, have) = crate::worker::metrics::parse(name)?;
                (m == metric && labels.iter().all(|l| have.contains(l))).then_some(*value)
            })
            .sum()
    }

    /// The values recorded in histogram `name`.
    pub fn histogram(&self, name: &str) -> &[u64] {
        self.histograms.get(name).map_or(&[], Vec::as_slice)
    }

    /// The last callout started, if any.
    pub fn last_dispatch(&self) -> Option<&Dispatched> {
        self.dispatched.last()
    }

    /// Runs the root callback the worker asked for, as the host would right after the current
    /// callback; does nothing when none was asked for.
    pub fn run_wakeup(&mut self, worker: &mut Worker) {
        if self.wakeups > 0 {
            self.wakeups = 0;
            worker.on_wakeup(self);
        }
    }

    /// Delivers an answer from the key manager (relayed through Envoy) for callout `token`.
    pub fn answer(&mut self, worker: &mut Worker, token: u32, status: u32, body: &[u8]) {
        self.answer_headers = vec![
            (":status".to_string(), status.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("x-envoy-upstream-service-time".to_string(), "1".to_string()),
        ];
        self.answer_body = body.to_vec();
        worker.on_fetch_answer(self, token, body.len());
    }

    /// Delivers "no response" for callout `token` (reset, refused, timeout before headers).
    pub fn no_answer(&mut self, worker: &mut Worker, token: u32) {
        self.answer_headers.clear();
        self.answer_body.clear();
        worker.on_fetch_answer(self, token, 0);
    }

    fn log(&mut self, stream: StreamId) -> Option<&mut StreamLog> {
        if self.gone.contains(&stream) {
            return None;
        }
        let log = self.streams.entry(stream).or_default();
        if !self.record {
            *log = StreamLog::default();
        }
        Some(log)
    }
}

impl HostCrypto for FakeHost {
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Option<bool> {
        let crypto = self.crypto.as_ref()?;
        self.call();
        self.crypto_calls
            .set(self.crypto_calls.get().wrapping_add(1));
        crypto(hash, public_key, signature, message)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.call();
        self.now_ms
    }

    fn peer_certificate_sha256(&self) -> Option<String> {
        self.call();
        self.peer_certificate_reads
            .set(self.peer_certificate_reads.get().wrapping_add(1));
        self.peer_certificate.clone()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.call();
        self.shared_reads
            .set(self.shared_reads.get().wrapping_add(1));
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
        self.call();
        let interleaved = self.between_read_and_write.borrow_mut().take();
        if let Some(other_worker) = interleaved {
            other_worker();
        }
        let mut shared = self.shared.try_borrow_mut().map_err(|_| SlotError::Host)?;
        let cas = match (shared.get(key), expect) {
            (None, _) => 1,
            (Some(_), Expect::Absent) => return Err(SlotError::CasMismatch),
            (Some((_, current)), Expect::Cas(cas)) if *current == cas => cas.wrapping_add(1),
            (Some(_), Expect::Cas(_)) => return Err(SlotError::CasMismatch),
        };
        shared.insert(key.to_string(), (bytes.to_vec(), cas));
        Ok(())
    }

    fn dispatch(&mut self, fetch: &Fetch<'_>) -> Option<u32> {
        self.call();
        if self.refuse_dispatch {
            return None;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.dispatched.push(Dispatched {
            token,
            cluster: fetch.cluster.to_string(),
            path: fetch.path.to_string(),
            timeout_ms: fetch.timeout_ms,
            method: if fetch.post.is_some() { "POST" } else { "GET" }.to_string(),
            authorization: fetch.post.map(|p| p.authorization.to_string()),
            body: fetch.post.map(|p| p.body.to_vec()).unwrap_or_default(),
            headers: fetch
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        });
        Some(token)
    }

    fn wake_root(&mut self) -> bool {
        self.call();
        self.wakeups = self.wakeups.saturating_add(1);
        true
    }

    fn fetch_headers(&self) -> Vec<(String, String)> {
        self.call();
        self.answer_headers.clone()
    }

    fn fetch_body(&self, size: usize) -> Vec<u8> {
        self.call();
        self.answer_body.iter().take(size).copied().collect()
    }

    fn fetch_body_part(&self, start: usize, size: usize) -> Vec<u8> {
        self.call();
        self.answer_body
            .iter()
            .skip(start)
            .take(size)
            .copied()
            .collect()
    }

    fn set_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        self.call();
        self.log(stream)
            .map(|log| log.set_headers.push((name.to_string(), value.to_string())))
            .is_some()
    }

    fn remove_header(&mut self, stream: StreamId, name: &str) -> bool {
        self.call();
        self.log(stream)
            .map(|log| log.removed_headers.push(name.to_string()))
            .is_some()
    }

    fn set_filter_state(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        self.call();
        self.log(stream)
            .map(|log| log.filter_state.push((name.to_string(), value.to_string())))
            .is_some()
    }

    fn reply(
        &mut self,
        stream: StreamId,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
    ) -> bool {
        self.call();
        self.log(stream)
            .map(|log| {
                log.reply = Some(Sent {
                    status,
                    headers: headers.to_vec(),
                    body: String::from_utf8_lossy(body).into_owned(),
                });
            })
            .is_some()
    }

    fn resume(&mut self, stream: StreamId) -> bool {
        self.call();
        self.log(stream).map(|log| log.resumed = true).is_some()
    }

    fn add_response_header(&mut self, stream: StreamId, name: &str, value: &str) -> bool {
        self.call();
        self.log(stream)
            .map(|log| {
                log.response_headers
                    .push((name.to_string(), value.to_string()))
            })
            .is_some()
    }

    fn count(&mut self, name: &str) {
        self.call();
        *self.counters.entry(name.to_string()).or_default() += 1;
    }

    fn record(&mut self, name: &str, value: u64) {
        self.call();
        self.histograms
            .entry(name.to_string())
            .or_default()
            .push(value);
    }
}
