//! `JwksCache<K>`: one key manager's JWKS cache as seen by one worker: the record (timing,
//! failures, lease) plus the key set parsed from it. `K` is whatever the parser builds (the
//! shell passes `jose`'s key set); the cache never looks inside it.

use std::fmt;
use std::sync::Arc;

use super::error::{BodyProblem, FetchError};
use super::record::{FetchReason, JwksRecord};
use super::timing::Timing;
use crate::config::Settings;

/// What a request whose token names an unknown `kid` (or that finds no keys) should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKidAction {
    /// This worker just took the fetch: dispatch it, and let the request wait for it.
    Fetch,
    /// A fetch is already in flight (here or in another worker): wait for it.
    Wait,
    /// Rate-limited: decide now with the keys at hand (401 for an unknown kid, 503 for none).
    Decide,
}

/// The cache's state, derived from the record at a given time (for logs and metrics).
#[cfg(test)] // state for tests and future metrics
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Never fetched, nothing has failed yet.
    Empty,
    /// Keys within their refresh interval.
    Fresh,
    /// Past the refresh time; keys served (while `has_keys`) until a refresh lands.
    Stale { has_keys: bool },
    /// A fetch is in flight, here or in another worker.
    Refreshing { has_keys: bool },
    /// The last fetch failed; keys served while within the stale bound.
    Failed { has_keys: bool },
}

/// A snapshot for logs and metrics. Holds no key material.
#[cfg(test)] // state for tests and future metrics
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    pub state: CacheState,
    /// Number of key sets published so far (0: never fetched).
    pub version: u64,
    /// Age of the served keys, if any were ever fetched.
    pub keys_age_ms: Option<u64>,
    pub failures: u32,
    pub last_error: Option<FetchError>,
    /// Time until the next scheduled fetch (0: due now or in flight).
    pub next_fetch_in_ms: u64,
}

/// A validated fetch result, ready to be applied (possibly more than once, when a shared-data
/// write loses a compare-and-swap and is redone on a newer record).
pub struct Fetched<K> {
    keys: Arc<K>,
    body: Arc<[u8]>,
    interval_ms: u64,
}

impl<K> Clone for Fetched<K> {
    fn clone(&self) -> Self {
        Fetched {
            keys: Arc::clone(&self.keys),
            body: Arc::clone(&self.body),
            interval_ms: self.interval_ms,
        }
    }
}

/// One key manager's JWKS cache in one worker. All times are milliseconds since the Unix epoch.
pub struct JwksCache<K> {
    timing: Timing,
    /// This worker's id, unique among the VMs that share the record.
    me: u64,
    record: JwksRecord,
    /// Keys parsed from `record.jwks`, with the body they were parsed from. Invariant: when set,
    /// the body equals `record.jwks` (kept by `apply` and `sync`).
    keys: Option<(Arc<[u8]>, Arc<K>)>,
}

// Debug by hand: sizes and timing only, never key material or a whole JWKS.
impl<K> fmt::Debug for Fetched<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("body_bytes", &self.body.len())
            .field("interval_ms", &self.interval_ms)
            .finish_non_exhaustive()
    }
}

impl<K> fmt::Debug for JwksCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("me", &self.me)
            .field("timing", &self.timing)
            .field("record", &self.record)
            .field("has_keys", &self.keys.is_some())
            .finish()
    }
}

impl<K> JwksCache<K> {
    /// An empty cache; the first `poll` asks for the startup fetch.
    pub fn new(settings: &Settings, me: u64) -> JwksCache<K> {
        JwksCache {
            timing: Timing::from_settings(settings),
            me,
            record: JwksRecord::default(),
            keys: None,
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// This worker's copy of the record (to encode and CAS-write into shared data).
    pub fn record(&self) -> &JwksRecord {
        &self.record
    }

    /// Is a scheduled fetch (startup, refresh, retry) due? If so the cache marks it in flight
    /// (takes the lease) and the shell must dispatch it and later report `on_response` or
    /// `on_failure`.
    pub fn poll(&mut self, now_ms: u64) -> Option<FetchReason> {
        let reason = self.record.due(now_ms)?;
        self.record
            .take_lease(self.me, now_ms, reason, &self.timing);
        Some(reason)
    }

    /// A token named a `kid` the current keys lack, or there are no keys: refetch at most once per
    /// configured interval, and let concurrent requests share the fetch in flight.
    pub fn unknown_kid(&mut self, now_ms: u64) -> UnknownKidAction {
        if self.record.active_lease(now_ms).is_some() {
            return UnknownKidAction::Wait;
        }
        if !self.record.unknown_kid_allowed(now_ms, &self.timing) {
            return UnknownKidAction::Decide;
        }
        self.record
            .take_lease(self.me, now_ms, FetchReason::UnknownKid, &self.timing);
        UnknownKidAction::Fetch
    }

    /// Validate a JWKS response: 2xx, within the size limit, and accepted by `parse`. Pure: the
    /// result is applied with `apply`.
    pub fn check_response(
        &self,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<K, BodyProblem>,
    ) -> Result<Fetched<K>, FetchError> {
        if !(200..300).contains(&status) {
            return Err(FetchError::Status { status });
        }
        self.check_size(body.len())?;
        let keys = parse(body)?;
        Ok(Fetched {
            keys: Arc::new(keys),
            body: Arc::from(body),
            interval_ms: self.timing.refresh_interval_ms(headers),
        })
    }

    /// Apply a checked fetch result. A good key set replaces the old one entirely (removed keys
    /// stop verifying), unless its body is byte for byte the one served: then the parsed keys stay
    /// the same object, so nothing tied to them (verified tokens) is invalidated by a refresh
    /// that changed nothing. A failure keeps the old keys and schedules a retry with backoff.
    pub fn apply(&mut self, now_ms: u64, outcome: &Result<Fetched<K>, FetchError>) {
        match outcome {
            Ok(fetched) => {
                self.record.record_success(
                    now_ms,
                    Arc::clone(&fetched.body),
                    fetched.interval_ms,
                    &self.timing,
                );
                let unchanged = self
                    .keys
                    .as_ref()
                    .is_some_and(|(body, _)| **body == *fetched.body);
                if !unchanged {
                    self.keys = Some((Arc::clone(&fetched.body), Arc::clone(&fetched.keys)));
                }
            }
            Err(error) => {
                self.record
                    .record_failure(self.me, now_ms, *error, &self.timing);
            }
        }
    }

    /// The fetch this worker dispatched got an answer: check and apply it.
    #[cfg(test)] // the single-worker protocol: the filter uses the *_shared forms
    pub fn on_response(
        &mut self,
        now_ms: u64,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<K, BodyProblem>,
    ) -> Result<(), FetchError> {
        let outcome = self.check_response(status, headers, body, parse);
        self.apply(now_ms, &outcome);
        outcome.map(|_| ())
    }

    /// Refuse a body by its announced size, before copying it out of the host (a 10 MB answer
    /// need not enter the VM to be refused).
    pub fn check_size(&self, body_size: usize) -> Result<(), FetchError> {
        if body_size > self.timing.max_bytes {
            return Err(FetchError::TooLarge {
                bytes: body_size,
                max_bytes: self.timing.max_bytes,
            });
        }
        Ok(())
    }

    /// The error for a fetch that ended without any response (the host reports no headers):
    /// a timeout when this worker's fetch has run for the fetch timeout, else a failed
    /// connection (refused, reset).
    pub fn no_answer_error(&self, now_ms: u64) -> FetchError {
        let started = self
            .record
            .lease
            .filter(|lease| lease.owner == self.me)
            .map(|lease| lease.started_at_ms);
        // The host's timer may fire a little before our clock shows the full timeout (clock
        // values are truncated to milliseconds, and Envoy starts its timer from its loop's cached
        // time): measured in Envoy, a 500 ms timeout was seen after 499 ms.
        let timed_out = self
            .timing
            .fetch_timeout_ms
            .saturating_sub(self.timing.timeout_slack_ms());
        match started {
            Some(at) if now_ms.saturating_sub(at) >= timed_out => FetchError::Timeout,
            _ => FetchError::Unreachable,
        }
    }

    /// The fetch this worker dispatched failed without an answer (timeout, reset, refused).
    #[cfg(test)] // the single-worker protocol: the filter uses the *_shared forms
    pub fn on_failure(&mut self, now_ms: u64, error: FetchError) {
        self.apply(now_ms, &Err(error));
    }

    /// Take a record written by another worker as the truth. When its key set is newer than the
    /// parsed one, `parse` builds it. If that fails (it should not: the writer checked the same
    /// body with the same parser) the error is returned and this worker serves no keys until a
    /// good set arrives, rather than old keys the record no longer vouches for.
    /// Returns whether the served keys changed.
    pub fn sync(
        &mut self,
        record: JwksRecord,
        parse: impl FnOnce(&[u8]) -> Result<K, BodyProblem>,
    ) -> Result<bool, FetchError> {
        self.record = record;
        // Compare bodies, not versions: two workers that both published "version 4" after a lost
        // compare-and-swap hold different bodies under the same number.
        let same = match &self.keys {
            Some((body, _)) => **body == *self.record.jwks,
            None => false,
        };
        if same {
            return Ok(false);
        }
        let had_keys = self.keys.take().is_some();
        if self.record.version == 0 {
            return Ok(had_keys);
        }
        let keys = parse(&self.record.jwks)?;
        self.keys = Some((Arc::clone(&self.record.jwks), Arc::new(keys)));
        Ok(true)
    }

    /// The keys to verify with, or `None` when never fetched or stale beyond the bound (the shell
    /// then answers 503 `key_manager_unavailable`, never forwards).
    #[cfg(test)] // the single-worker protocol: the filter uses the *_shared forms
    pub fn keys(&self, now_ms: u64) -> Option<&K> {
        self.keys_shared(now_ms).map(|keys| &**keys)
    }

    /// Like `keys`, as a shared handle a paused request can hold across callbacks.
    pub fn keys_shared(&self, now_ms: u64) -> Option<&Arc<K>> {
        if !self.record.keys_usable(now_ms) {
            return None;
        }
        self.keys.as_ref().map(|(_, keys)| keys)
    }

    /// Whether a fetch is in flight here or in another worker (waiting requests resume when not).
    pub fn fetch_in_flight(&self, now_ms: u64) -> bool {
        self.record.active_lease(now_ms).is_some()
    }

    /// Seconds for `Retry-After` on a 503: until the fetch in flight must have ended, or until the
    /// next scheduled attempt; at least 1.
    pub fn retry_after(&self, now_ms: u64) -> u64 {
        let until = match self.record.active_lease(now_ms) {
            Some(lease) => lease.until_ms,
            None => self.record.next_attempt_at_ms,
        };
        until.saturating_sub(now_ms).div_ceil(1_000).max(1)
    }

    #[cfg(test)] // the single-worker protocol: the filter uses the *_shared forms
    pub fn status(&self, now_ms: u64) -> CacheStatus {
        let r = &self.record;
        let has_keys = self.keys_shared(now_ms).is_some();
        let state = if r.active_lease(now_ms).is_some() {
            CacheState::Refreshing { has_keys }
        } else if r.failures > 0 {
            CacheState::Failed { has_keys }
        } else if r.version == 0 {
            CacheState::Empty
        } else if now_ms >= r.refresh_at_ms {
            CacheState::Stale { has_keys }
        } else {
            CacheState::Fresh
        };
        CacheStatus {
            state,
            version: r.version,
            keys_age_ms: (r.version > 0).then(|| now_ms.saturating_sub(r.fetched_at_ms)),
            failures: r.failures,
            last_error: r.last_error,
            next_fetch_in_ms: match r.active_lease(now_ms) {
                Some(_) => 0,
                None => r.next_attempt_at_ms.saturating_sub(now_ms),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test key set: the kids in a body like `a,b,c`. "!" is malformed, "" has no usable key.
    #[derive(Debug, PartialEq)]
    struct Kids(Vec<String>);

    fn parse(body: &[u8]) -> Result<Kids, BodyProblem> {
        let text = std::str::from_utf8(body).map_err(|_| BodyProblem::Malformed)?;
        if text.contains('!') {
            return Err(BodyProblem::Malformed);
        }
        let kids: Vec<String> = text
            .split(',')
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        if kids.is_empty() {
            return Err(BodyProblem::NoUsableKey);
        }
        Ok(Kids(kids))
    }

    fn settings() -> Settings {
        Settings {
            jwks_min_refresh_seconds: 60,
            jwks_max_refresh_seconds: 3_600,
            jwks_default_refresh_seconds: 300,
            jwks_unknown_kid_refetch_seconds: 10,
            jwks_stale_seconds: 600,
            jwks_retry_initial_seconds: 1,
            jwks_retry_max_seconds: 30,
            jwks_fetch_timeout_ms: 2_000,
            jwks_max_bytes: 64,
            ..Settings::default()
        }
    }

    fn cache() -> JwksCache<Kids> {
        JwksCache::new(&settings(), 1)
    }

    fn kids(cache: &JwksCache<Kids>, now: u64) -> Option<Vec<&str>> {
        cache
            .keys(now)
            .map(|k| k.0.iter().map(String::as_str).collect())
    }

    fn ok(cache: &mut JwksCache<Kids>, now: u64, body: &str) {
        assert_eq!(
            cache.on_response(now, 200, &[], body.as_bytes(), parse),
            Ok(())
        );
    }

    #[test]
    fn startup_fetch_then_fresh_then_refresh() {
        let mut c = cache();
        assert_eq!(c.status(0).state, CacheState::Empty);
        assert_eq!(c.keys(0), None);
        assert_eq!(c.poll(0), Some(FetchReason::Startup));
        assert_eq!(c.poll(1), None, "one fetch at a time");
        assert_eq!(
            c.status(1).state,
            CacheState::Refreshing { has_keys: false }
        );
        ok(&mut c, 50, "a,b");
        assert_eq!(kids(&c, 50), Some(vec!["a", "b"]));
        assert_eq!(c.status(50).state, CacheState::Fresh);
        assert_eq!(c.poll(300_049), None);
        assert_eq!(
            c.status(300_050).state,
            CacheState::Stale { has_keys: true }
        );
        assert_eq!(c.poll(300_050), Some(FetchReason::Refresh));
        assert_eq!(
            c.status(300_051).state,
            CacheState::Refreshing { has_keys: true }
        );
        assert_eq!(
            kids(&c, 300_051),
            Some(vec!["a", "b"]),
            "served while refreshing"
        );
        ok(&mut c, 300_100, "b,c");
        assert_eq!(
            kids(&c, 300_100),
            Some(vec!["b", "c"]),
            "removed key a is gone"
        );
        assert_eq!(c.status(300_100).version, 2);
    }

    #[test]
    fn max_age_sets_the_refresh_time() {
        let mut c = cache();
        c.poll(0);
        let headers = vec![("cache-control".to_string(), "max-age=120".to_string())];
        assert_eq!(c.on_response(0, 200, &headers, b"a", parse), Ok(()));
        assert_eq!(c.poll(119_999), None);
        assert_eq!(c.poll(120_000), Some(FetchReason::Refresh));
    }

    #[test]
    fn bad_responses_never_replace_good_keys() {
        let mut c = cache();
        c.poll(0);
        ok(&mut c, 0, "good");
        let big = "x".repeat(65);
        let cases: [(u32, &str, FetchError); 5] = [
            (500, "a", FetchError::Status { status: 500 }),
            (304, "a", FetchError::Status { status: 304 }),
            (200, "!!", FetchError::Malformed),
            (200, "", FetchError::NoUsableKey),
            (
                200,
                big.as_str(),
                FetchError::TooLarge {
                    bytes: 65,
                    max_bytes: 64,
                },
            ),
        ];
        let mut now = 300_000;
        for (status, body, expected) in cases {
            assert!(c.poll(now).is_some(), "a fetch is due at {now}");
            assert_eq!(
                c.on_response(now, status, &[], body.as_bytes(), parse),
                Err(expected)
            );
            assert_eq!(kids(&c, now), Some(vec!["good"]));
            assert_eq!(c.status(now).last_error, Some(expected));
            now += 60_000;
        }
        assert_eq!(c.status(now).failures, 5);
        assert_eq!(c.status(now).state, CacheState::Failed { has_keys: true });
    }

    #[test]
    fn retries_back_off_and_stale_keys_expire() {
        let mut c = cache();
        c.poll(0);
        ok(&mut c, 0, "k");
        // Refresh due at 300 s; the key manager is down from then on.
        let mut now = 300_000;
        let mut attempts = Vec::new();
        while now < 300_000 + 700_000 {
            if let Some(reason) = c.poll(now) {
                attempts.push((now - 300_000, reason));
                c.on_failure(now, FetchError::Unreachable);
            }
            now += 250;
        }
        let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert_eq!(
            gaps.iter().take(7).copied().collect::<Vec<_>>(),
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(attempts[0].1, FetchReason::Refresh);
        assert!(attempts[1..].iter().all(|(_, r)| *r == FetchReason::Retry));
        // Stale bound: keys served until refresh time + 600 s, then none.
        assert!(c.keys(899_999).is_some());
        assert!(c.keys(900_000).is_none());
        assert_eq!(
            c.status(900_000).state,
            CacheState::Failed { has_keys: false }
        );
        assert_eq!(c.record().last_error, Some(FetchError::Unreachable));
        assert!(c.retry_after(900_000) >= 1);
    }

    #[test]
    fn down_at_start_then_up_recovers_within_backoff() {
        let mut c = cache();
        for (i, now) in [0u64, 1_000, 3_000, 7_000].into_iter().enumerate() {
            if now > 0 {
                assert_eq!(c.poll(now - 1), None, "attempt {i} not early");
            }
            assert!(c.poll(now).is_some(), "attempt {i} on time");
            c.on_failure(now, FetchError::Unreachable);
            assert_eq!(c.keys(now), None);
        }
        assert_eq!(c.retry_after(7_000), 8);
        assert_eq!(c.poll(15_000), Some(FetchReason::Retry));
        ok(&mut c, 15_010, "k");
        assert_eq!(kids(&c, 15_010), Some(vec!["k"]));
        assert_eq!(c.status(15_010).failures, 0);
        assert_eq!(c.status(15_010).last_error, None);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited_and_shared() {
        let mut c = cache();
        c.poll(0);
        ok(&mut c, 0, "old");
        assert_eq!(c.unknown_kid(1_000), UnknownKidAction::Fetch);
        assert_eq!(c.unknown_kid(1_001), UnknownKidAction::Wait);
        assert_eq!(c.unknown_kid(1_002), UnknownKidAction::Wait);
        ok(&mut c, 1_100, "old,new");
        assert_eq!(kids(&c, 1_100), Some(vec!["old", "new"]));
        // Another unknown kid within 10 s of the last refetch: decide with current keys.
        assert_eq!(c.unknown_kid(5_000), UnknownKidAction::Decide);
        assert_eq!(c.unknown_kid(10_999), UnknownKidAction::Decide);
        assert_eq!(c.unknown_kid(11_000), UnknownKidAction::Fetch);
        // A flood over 60 s causes one fetch per 10 s.
        c.on_failure(11_050, FetchError::Timeout);
        let mut fetches = 0;
        for now in (11_100..71_001).step_by(10) {
            if c.unknown_kid(now) == UnknownKidAction::Fetch {
                fetches += 1;
                ok(&mut c, now + 20, "old,new");
            }
        }
        assert_eq!(fetches, 6);
    }

    #[test]
    fn lost_callback_frees_the_fetch_after_the_lease() {
        let mut c = cache();
        assert_eq!(c.poll(0), Some(FetchReason::Startup));
        assert_eq!(c.unknown_kid(2_999), UnknownKidAction::Wait);
        assert!(c.fetch_in_flight(2_999));
        assert!(!c.fetch_in_flight(3_000));
        assert_eq!(c.poll(3_000), Some(FetchReason::Startup));
    }

    #[test]
    fn no_answer_is_a_timeout_only_after_the_fetch_timeout() {
        let mut c = cache();
        assert_eq!(c.no_answer_error(0), FetchError::Unreachable);
        c.poll(1_000);
        assert_eq!(c.no_answer_error(1_005), FetchError::Unreachable);
        // Timeout 2 s, slack 50 ms: the host's timer may fire a moment early by our clock.
        assert_eq!(c.no_answer_error(2_949), FetchError::Unreachable);
        assert_eq!(c.no_answer_error(2_950), FetchError::Timeout);
        assert_eq!(c.no_answer_error(3_000), FetchError::Timeout);
        // Another worker's lease says nothing about this worker's fetch.
        let mut other: JwksCache<Kids> = JwksCache::new(&settings(), 2);
        assert_eq!(other.sync(c.record().clone(), parse), Ok(false));
        assert_eq!(other.no_answer_error(3_000), FetchError::Unreachable);
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let c = cache();
        assert_eq!(c.check_size(64), Ok(()));
        assert_eq!(
            c.check_size(10 * 1024 * 1024),
            Err(FetchError::TooLarge {
                bytes: 10 * 1024 * 1024,
                max_bytes: 64
            })
        );
        let mut parsed = false;
        let big = vec![b'a'; 65];
        let result = c.check_response(200, &[], &big, |_| {
            parsed = true;
            Ok(Kids(vec![]))
        });
        assert!(result.is_err());
        assert!(!parsed, "an oversized body never reaches the parser");
    }

    #[test]
    fn late_failure_after_success_is_ignored() {
        let mut c = cache();
        c.poll(0);
        ok(&mut c, 10, "k");
        c.on_failure(20, FetchError::Timeout);
        assert_eq!(c.status(20).failures, 0);
        assert_eq!(c.status(20).state, CacheState::Fresh);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let mut c = cache();
        assert_eq!(c.retry_after(0), 1);
        c.poll(0);
        assert_eq!(c.retry_after(0), 3, "lease = timeout 2 s + 1 s grace");
        c.on_failure(500, FetchError::Timeout);
        assert_eq!(c.retry_after(500), 1);
        assert_eq!(c.retry_after(1_499), 1);
    }

    #[test]
    fn sync_parses_only_new_versions() {
        let mut a = cache();
        let mut b: JwksCache<Kids> = JwksCache::new(&settings(), 2);
        a.poll(0);
        ok(&mut a, 0, "k1");
        assert_eq!(b.sync(a.record().clone(), parse), Ok(true));
        assert_eq!(kids(&b, 1), Some(vec!["k1"]));
        let mut calls = 0;
        let changed = b.sync(a.record().clone(), |body| {
            calls += 1;
            parse(body)
        });
        assert_eq!((changed, calls), (Ok(false), 0));
        // A record whose body cannot be parsed takes the old keys out of service rather than
        // serving keys the record no longer describes.
        let mut broken = a.record().clone();
        broken.version += 1;
        broken.jwks = Arc::from(&b"!"[..]);
        assert_eq!(b.sync(broken, parse), Err(FetchError::Malformed));
        assert_eq!(kids(&b, 1), None);
    }
}
