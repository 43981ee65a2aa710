//! The per-key-manager record: every fact the cache's decisions depend on, as plain data that
//! encodes to bytes, so that all worker VMs can share one copy through proxy-wasm shared data.
//!
//! The transitions here are pure functions of the record, the worker id and `now`; `JwksCache`
//! adds the parsed keys on top, and `shared` moves the record through compare-and-swap.

use std::fmt;
use std::sync::Arc;

use super::error::FetchError;
use super::timing::Timing;

/// Why a fetch is started. Logged and counted by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    /// No key set has ever been fetched and no fetch has failed yet.
    Startup,
    /// The current keys reached their refresh time.
    Refresh,
    /// The previous fetch failed; this is the backoff retry.
    Retry,
    /// A token named a `kid` the current keys do not have (key rotation).
    UnknownKid,
}

impl FetchReason {
    fn to_wire(self) -> u8 {
        match self {
            FetchReason::Startup => 1,
            FetchReason::Refresh => 2,
            FetchReason::Retry => 3,
            FetchReason::UnknownKid => 4,
        }
    }

    fn from_wire(tag: u8) -> Option<FetchReason> {
        match tag {
            1 => Some(FetchReason::Startup),
            2 => Some(FetchReason::Refresh),
            3 => Some(FetchReason::Retry),
            4 => Some(FetchReason::UnknownKid),
            _ => None,
        }
    }
}

/// A worker's claim to be the one fetching, valid until `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub started_at_ms: u64,
    pub until_ms: u64,
    pub reason: FetchReason,
}

/// Everything known about one key manager's JWKS, shared by all workers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JwksRecord {
    /// Number of good key sets published so far; 0 means never fetched. Workers re-parse `jwks`
    /// only when this moves.
    pub(crate) version: u64,
    pub(crate) fetched_at_ms: u64,
    pub(crate) refresh_at_ms: u64,
    /// Keys are served until here: refresh time plus the stale bound.
    pub(crate) stale_until_ms: u64,
    /// When the next scheduled fetch (startup, refresh or retry) is due.
    pub(crate) next_attempt_at_ms: u64,
    /// Consecutive failed fetches; 0 after a success.
    pub(crate) failures: u32,
    pub(crate) last_error: Option<FetchError>,
    pub(crate) lease: Option<Lease>,
    /// Last unknown-kid refetch, shared so the rate limit holds across workers.
    pub(crate) unknown_kid_at_ms: Option<u64>,
    /// The last good JWKS body, exactly as received.
    pub(crate) jwks: Arc<[u8]>,
}

/// Debug shows the body's size only: a whole JWKS never goes to a log.
impl fmt::Debug for JwksRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksRecord")
            .field("version", &self.version)
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("refresh_at_ms", &self.refresh_at_ms)
            .field("stale_until_ms", &self.stale_until_ms)
            .field("next_attempt_at_ms", &self.next_attempt_at_ms)
            .field("failures", &self.failures)
            .field("last_error", &self.last_error)
            .field("lease", &self.lease)
            .field("unknown_kid_at_ms", &self.unknown_kid_at_ms)
            .field("jwks_bytes", &self.jwks.len())
            .finish()
    }
}

/// The record's bytes start with this, so a record of another format is never misread.
const MAGIC: &[u8; 4] = b"KGJ1";

impl JwksRecord {
    /// The lease, if a fetch is in flight and not yet presumed lost.
    pub fn active_lease(&self, now_ms: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| now_ms < lease.until_ms)
    }

    /// Whether the last good keys may still be served.
    pub fn keys_usable(&self, now_ms: u64) -> bool {
        self.version > 0 && now_ms < self.stale_until_ms
    }

    /// A scheduled fetch that is due now and not already in flight.
    pub fn due(&self, now_ms: u64) -> Option<FetchReason> {
        if self.active_lease(now_ms).is_some() || now_ms < self.next_attempt_at_ms {
            return None;
        }
        Some(if self.failures > 0 {
            FetchReason::Retry
        } else if self.version == 0 {
            FetchReason::Startup
        } else {
            FetchReason::Refresh
        })
    }

    /// Claim the fetch for `me`. The caller has checked that no other lease is active.
    pub fn take_lease(&mut self, me: u64, now_ms: u64, reason: FetchReason, timing: &Timing) {
        self.lease = Some(Lease {
            owner: me,
            started_at_ms: now_ms,
            until_ms: now_ms.saturating_add(timing.lease_ms()),
            reason,
        });
        if reason == FetchReason::UnknownKid {
            self.unknown_kid_at_ms = Some(now_ms);
        }
    }

    /// Whether an unknown-kid refetch is allowed by the shared rate limit.
    pub fn unknown_kid_allowed(&self, now_ms: u64, timing: &Timing) -> bool {
        match self.unknown_kid_at_ms {
            Some(at) => now_ms >= at.saturating_add(timing.unknown_kid_interval_ms),
            None => true,
        }
    }

    /// A good key set arrived: publish it, whoever fetched it (good data is never refused), and
    /// schedule the next refresh.
    pub fn record_success(
        &mut self,
        now_ms: u64,
        body: Arc<[u8]>,
        interval_ms: u64,
        timing: &Timing,
    ) {
        self.version = self.version.saturating_add(1);
        self.fetched_at_ms = now_ms;
        self.refresh_at_ms = now_ms.saturating_add(interval_ms);
        self.stale_until_ms = self.refresh_at_ms.saturating_add(timing.stale_ms);
        self.next_attempt_at_ms = self.refresh_at_ms;
        self.failures = 0;
        self.last_error = None;
        self.lease = None;
        self.jwks = body;
    }

    /// A fetch by `me` failed. Returns false (and changes nothing) when `me` no longer holds the
    /// lease: another worker has taken over, and its outcome is the one that counts.
    pub fn record_failure(
        &mut self,
        me: u64,
        now_ms: u64,
        error: FetchError,
        timing: &Timing,
    ) -> bool {
        if self.lease.map(|lease| lease.owner) != Some(me) {
            return false;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        self.lease = None;
        let mut next = now_ms.saturating_add(timing.backoff_ms(self.failures));
        // Keys still fresh (a failed unknown-kid refetch): the planned refresh may come sooner.
        if self.version > 0 && self.refresh_at_ms > now_ms {
            next = next.min(self.refresh_at_ms);
        }
        self.next_attempt_at_ms = next;
        true
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.jwks.len());
        out.extend_from_slice(MAGIC);
        for value in [
            self.version,
            self.fetched_at_ms,
            self.refresh_at_ms,
            self.stale_until_ms,
            self.next_attempt_at_ms,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&self.failures.to_le_bytes());
        let (tag, value) = self.last_error.map_or((0, 0), FetchError::to_wire);
        out.push(tag);
        out.extend_from_slice(&value.to_le_bytes());
        match self.lease {
            Some(lease) => {
                out.push(lease.reason.to_wire());
                out.extend_from_slice(&lease.owner.to_le_bytes());
                out.extend_from_slice(&lease.started_at_ms.to_le_bytes());
                out.extend_from_slice(&lease.until_ms.to_le_bytes());
            }
            None => out.push(0),
        }
        match self.unknown_kid_at_ms {
            Some(at) => {
                out.push(1);
                out.extend_from_slice(&at.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.jwks);
        out
    }

    /// `None` for bytes that are not a record of this format (the caller then starts afresh).
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Option<JwksRecord> {
        let mut r = Reader { rest: bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let version = r.u64()?;
        let fetched_at_ms = r.u64()?;
        let refresh_at_ms = r.u64()?;
        let stale_until_ms = r.u64()?;
        let next_attempt_at_ms = r.u64()?;
        let failures = u32::from_le_bytes(r.array()?);
        let error_tag = r.u8()?;
        let last_error = FetchError::from_wire(error_tag, r.u64()?, max_bytes)?;
        let lease = match r.u8()? {
            0 => None,
            tag => Some(Lease {
                reason: FetchReason::from_wire(tag)?,
                owner: r.u64()?,
                started_at_ms: r.u64()?,
                until_ms: r.u64()?,
            }),
        };
        let unknown_kid_at_ms = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return None,
        };
        Some(JwksRecord {
            version,
            fetched_at_ms,
            refresh_at_ms,
            stale_until_ms,
            next_attempt_at_ms,
            failures,
            last_error,
            lease,
            unknown_kid_at_ms,
            jwks: Arc::from(r.rest),
        })
    }
}

/// Panic-free cursor over the record bytes: every read returns `None` past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        let [byte] = self.array::<1>()?;
        Some(byte)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn timing() -> Timing {
        Timing::from_settings(&Settings::default())
    }

    fn sample() -> JwksRecord {
        let t = timing();
        let mut r = JwksRecord::default();
        r.record_success(1_000, Arc::from(&b"{\"keys\":[1]}"[..]), 300_000, &t);
        r.take_lease(7, 400_000, FetchReason::UnknownKid, &t);
        assert!(r.record_failure(7, 400_500, FetchError::Status { status: 502 }, &t));
        r.take_lease(9, 401_000, FetchReason::Retry, &t);
        r
    }

    #[test]
    fn encode_decode_round_trip() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(JwksRecord::decode(&bytes, 1024), Some(r));
        let empty = JwksRecord::default();
        assert_eq!(JwksRecord::decode(&empty.encode(), 1024), Some(empty));
    }

    #[test]
    fn decode_rejects_every_truncation_and_bad_tags() {
        let bytes = JwksRecord::default().encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                JwksRecord::decode(bytes.get(..cut).unwrap(), 1),
                None,
                "cut {cut}"
            );
        }
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert_eq!(JwksRecord::decode(&bad_magic, 1), None);
        let mut bad_error = bytes.clone();
        bad_error[4 + 5 * 8 + 4] = 200;
        assert_eq!(JwksRecord::decode(&bad_error, 1), None);
    }

    #[test]
    fn due_reasons_follow_history() {
        let t = timing();
        let mut r = JwksRecord::default();
        assert_eq!(r.due(0), Some(FetchReason::Startup));
        r.take_lease(1, 0, FetchReason::Startup, &t);
        assert_eq!(r.due(10), None, "lease blocks a second fetch");
        assert!(r.record_failure(1, 100, FetchError::Timeout, &t));
        assert_eq!(r.due(100), None, "backoff not over");
        assert_eq!(r.due(1_100), Some(FetchReason::Retry));
        r.take_lease(1, 1_100, FetchReason::Retry, &t);
        r.record_success(1_200, Arc::from(&b"k"[..]), 300_000, &t);
        assert_eq!(r.due(301_199), None);
        assert_eq!(r.due(301_200), Some(FetchReason::Refresh));
    }

    #[test]
    fn debug_never_shows_the_body() {
        let t = timing();
        let mut r = JwksRecord::default();
        r.record_success(
            0,
            Arc::from(&b"{\"keys\":[{\"n\":\"SECRETISH\"}]}"[..]),
            1,
            &t,
        );
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRETISH"));
        assert!(shown.contains("jwks_bytes: 28"), "{shown}");
    }

    #[test]
    fn lost_lease_expires() {
        let t = timing();
        let mut r = JwksRecord::default();
        r.take_lease(1, 0, FetchReason::Startup, &t);
        assert!(r.active_lease(t.lease_ms() - 1).is_some());
        assert!(r.active_lease(t.lease_ms()).is_none());
        assert_eq!(r.due(t.lease_ms()), Some(FetchReason::Startup));
    }

    #[test]
    fn failure_of_a_non_owner_changes_nothing() {
        let t = timing();
        let mut r = JwksRecord::default();
        r.take_lease(1, 0, FetchReason::Startup, &t);
        let before = r.clone();
        assert!(!r.record_failure(2, 10, FetchError::Unreachable, &t));
        assert_eq!(r, before);
    }

    #[test]
    fn failed_unknown_kid_fetch_does_not_delay_planned_refresh() {
        let t = timing();
        let mut r = JwksRecord::default();
        r.record_success(0, Arc::from(&b"k"[..]), 300_000, &t);
        // Five failures in a row: backoff grows to 16 s, but refresh time is closer.
        for i in 0..5u64 {
            let now = 299_000 + i;
            r.take_lease(3, now, FetchReason::UnknownKid, &t);
            assert!(r.record_failure(3, now, FetchError::Timeout, &t));
        }
        assert_eq!(r.next_attempt_at_ms, 300_000);
        assert!(r.keys_usable(300_000 + t.stale_ms - 1));
        assert!(!r.keys_usable(300_000 + t.stale_ms));
    }
}
