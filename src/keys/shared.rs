//! Sharing one fetch among all worker VMs through proxy-wasm shared data (see the `keys` module
//! doc for the protocol). The host side is the small `SharedSlot` trait: the shell implements it
//! over `get_shared_data`/`set_shared_data`, tests over an in-memory map.

use super::cache::{Fetched, JwksCache, UnknownKidAction};
use super::error::{BodyProblem, FetchError};
use super::record::{FetchReason, JwksRecord};

/// How many times a write that lost a compare-and-swap is redone on the newer record.
const CAS_ATTEMPTS: usize = 4;

/// The condition a write needs to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The slot must not exist yet. (Envoy has no such mode; the shell passes a CAS value Envoy
    /// never hands out for a live key, such as `u32::MAX`: an absent key accepts any CAS, an
    /// existing one refuses the wrong one.)
    Absent,
    /// The slot must still hold the version read with this CAS value.
    Cas(u32),
}

/// Why a write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// Someone wrote first; re-read and decide again.
    CasMismatch,
    /// The host refused for another reason (shared data unavailable).
    Host,
}

impl SlotError {
    pub fn code(&self) -> &'static str {
        match self {
            SlotError::CasMismatch => "cas_mismatch",
            SlotError::Host => "shared_data_unavailable",
        }
    }
}

/// One shared-data entry: the record of one key manager, seen by every worker.
pub trait SharedSlot {
    /// The bytes and their CAS value, or `None` when the entry does not exist.
    fn read(&self) -> Option<(Vec<u8>, u32)>;
    fn write(&self, bytes: &[u8], expect: Expect) -> Result<(), SlotError>;
}

/// Shared-data key for a key manager's record. Shared data outlives a configuration (it belongs
/// to the VM id), so a new plugin config whose key manager has the same name, issuer and JWKS URI
/// adopts the keys fetched under the old one instead of fetching again. The issuer and the JWKS
/// URI are part of the key (hashed), so after a reconfiguration that points a key manager at
/// another issuer or another JWKS no worker adopts keys from the old place.
pub fn slot_key(key_manager: &str, issuer: &str, jwks_uri: &str) -> String {
    // NUL cannot occur in either (both are URLs), so the concatenation is unambiguous.
    let source = format!("{issuer}\0{jwks_uri}");
    format!(
        "keygate.jwks.{key_manager}.{:016x}",
        fnv1a(source.as_bytes())
    )
}

/// FNV-1a, 64 bit: a stable, dependency-free hash (not for security, only to tell URIs apart).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<K> JwksCache<K> {
    /// Adopt the shared record (call on every tick; resume waiting requests afterwards when
    /// `fetch_in_flight` is false). Returns whether the served keys changed, or why the shared
    /// key set could not be parsed.
    pub fn sync_shared(
        &mut self,
        slot: &impl SharedSlot,
        parse: impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) -> Result<bool, FetchError> {
        self.read_slot(slot, &parse).1
    }

    /// `poll` coordinated with the other workers: returns a reason only when this worker won the
    /// lease, i.e. its compare-and-swap write went through. The loser fetches nothing.
    pub fn poll_shared(
        &mut self,
        slot: &impl SharedSlot,
        now_ms: u64,
        parse: impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) -> Option<FetchReason> {
        let (expect, _) = self.read_slot(slot, &parse);
        let reason = self.poll(now_ms)?;
        match slot.write(&self.record().encode(), expect) {
            // Without shared data each worker fetches for itself: more fetches, still correct.
            Ok(()) | Err(SlotError::Host) => Some(reason),
            Err(SlotError::CasMismatch) => {
                // Drop our lease by adopting the winner's record.
                let _ = self.read_slot(slot, &parse);
                None
            }
        }
    }

    /// `unknown_kid` coordinated with the other workers: the rate limit and the fetch in flight
    /// are shared, so a flood of unknown kids spread over all workers still fetches at most once
    /// per interval.
    pub fn unknown_kid_shared(
        &mut self,
        slot: &impl SharedSlot,
        now_ms: u64,
        parse: impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) -> UnknownKidAction {
        for _ in 0..CAS_ATTEMPTS {
            let (expect, _) = self.read_slot(slot, &parse);
            let action = self.unknown_kid(now_ms);
            if action != UnknownKidAction::Fetch {
                return action;
            }
            match slot.write(&self.record().encode(), expect) {
                Ok(()) | Err(SlotError::Host) => return UnknownKidAction::Fetch,
                Err(SlotError::CasMismatch) => continue,
            }
        }
        // Lost every race: someone is busy with this record; their fetch is the one to wait for.
        let _ = self.read_slot(slot, &parse);
        if self.fetch_in_flight(now_ms) {
            UnknownKidAction::Wait
        } else {
            UnknownKidAction::Decide
        }
    }

    /// `on_response` for a fetch this worker dispatched, published to all workers.
    pub fn on_response_shared(
        &mut self,
        slot: &impl SharedSlot,
        now_ms: u64,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
        parse: impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) -> Result<(), FetchError> {
        let outcome = self.check_response(status, headers, body, &parse);
        self.publish(slot, now_ms, &outcome, &parse);
        outcome.map(|_| ())
    }

    /// `on_failure` for a fetch this worker dispatched, published to all workers.
    pub fn on_failure_shared(
        &mut self,
        slot: &impl SharedSlot,
        now_ms: u64,
        error: FetchError,
        parse: impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) {
        self.publish(slot, now_ms, &Err(error), &parse);
    }

    /// Apply an outcome on top of the newest shared record and write it back, redoing the
    /// application when another worker wrote in between. The local record always ends with the
    /// outcome applied, so this worker serves the new keys even if every write lost.
    fn publish(
        &mut self,
        slot: &impl SharedSlot,
        now_ms: u64,
        outcome: &Result<Fetched<K>, FetchError>,
        parse: &impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) {
        for _ in 0..CAS_ATTEMPTS {
            let (expect, _) = self.read_slot(slot, parse);
            let before = self.record().clone();
            self.apply(now_ms, outcome);
            if *self.record() == before {
                // A failure report from a worker that no longer holds the lease: nothing to say.
                return;
            }
            match slot.write(&self.record().encode(), expect) {
                Ok(()) | Err(SlotError::Host) => return,
                Err(SlotError::CasMismatch) => continue,
            }
        }
    }

    /// Read the slot and adopt its record. Returns the condition for the next write. Bytes that
    /// are not a record (another format) are not adopted; the next write replaces them.
    fn read_slot(
        &mut self,
        slot: &impl SharedSlot,
        parse: &impl Fn(&[u8]) -> Result<K, BodyProblem>,
    ) -> (Expect, Result<bool, FetchError>) {
        match slot.read() {
            None => (Expect::Absent, Ok(false)),
            Some((bytes, cas)) => match JwksRecord::decode(&bytes, self.timing().max_bytes) {
                Some(record) => (Expect::Cas(cas), self.sync(record, parse)),
                None => (Expect::Cas(cas), Ok(false)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::cell::{Cell, RefCell};

    /// In-memory shared data with Envoy's semantics: every write gets a new CAS value; a write
    /// with a stale CAS fails.
    #[derive(Default)]
    struct Store {
        entry: RefCell<Option<(Vec<u8>, u32)>>,
        next_cas: Cell<u32>,
        writes: Cell<usize>,
    }

    impl SharedSlot for Store {
        fn read(&self) -> Option<(Vec<u8>, u32)> {
            self.entry.borrow().clone()
        }

        fn write(&self, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
            let mut entry = self.entry.borrow_mut();
            let ok = match (&*entry, expect) {
                (None, Expect::Absent) => true,
                (Some((_, current)), Expect::Cas(cas)) => *current == cas,
                _ => false,
            };
            if !ok {
                return Err(SlotError::CasMismatch);
            }
            self.next_cas.set(self.next_cas.get() + 1);
            *entry = Some((bytes.to_vec(), self.next_cas.get()));
            self.writes.set(self.writes.get() + 1);
            Ok(())
        }
    }

    /// A worker's view of the store in a tick where every worker read before any wrote: the
    /// first read returns the snapshot taken at the start of the tick, later reads the truth.
    struct Racing<'a> {
        store: &'a Store,
        snapshot: RefCell<Option<Entry>>,
    }

    /// What a read returns: bytes and CAS, or nothing.
    type Entry = Option<(Vec<u8>, u32)>;

    impl SharedSlot for Racing<'_> {
        fn read(&self) -> Option<(Vec<u8>, u32)> {
            match self.snapshot.borrow_mut().take() {
                Some(snapshot) => snapshot,
                None => self.store.read(),
            }
        }

        fn write(&self, bytes: &[u8], expect: Expect) -> Result<(), SlotError> {
            self.store.write(bytes, expect)
        }
    }

    /// A store whose writes fail as if shared data were unavailable.
    struct Broken;

    impl SharedSlot for Broken {
        fn read(&self) -> Option<(Vec<u8>, u32)> {
            None
        }
        fn write(&self, _: &[u8], _: Expect) -> Result<(), SlotError> {
            Err(SlotError::Host)
        }
    }

    #[derive(Debug)]
    struct Body(String);

    fn parse(body: &[u8]) -> Result<Body, BodyProblem> {
        match std::str::from_utf8(body) {
            Ok("") => Err(BodyProblem::NoUsableKey),
            Ok(text) => Ok(Body(text.to_string())),
            Err(_) => Err(BodyProblem::Malformed),
        }
    }

    fn settings() -> Settings {
        Settings {
            jwks_min_refresh_seconds: 60,
            jwks_default_refresh_seconds: 300,
            jwks_unknown_kid_refetch_seconds: 10,
            jwks_fetch_timeout_ms: 2_000,
            jwks_retry_initial_seconds: 1,
            jwks_retry_max_seconds: 16,
            ..Settings::default()
        }
    }

    /// A simulated Envoy: `n` worker VMs sharing one store, a key manager that answers after
    /// `latency_ms` (or fails while `down`), and a log of fetches.
    struct Sim {
        store: Store,
        workers: Vec<JwksCache<Body>>,
        /// (worker, reason, dispatched at, answer at)
        in_flight: Vec<(usize, FetchReason, u64)>,
        fetches: Vec<(u64, FetchReason)>,
        latency_ms: u64,
        down: bool,
        body: String,
    }

    impl Sim {
        fn new(n: usize) -> Sim {
            Sim {
                store: Store::default(),
                workers: (0..n)
                    .map(|i| JwksCache::new(&settings(), 1_000 + i as u64))
                    .collect(),
                in_flight: Vec::new(),
                fetches: Vec::new(),
                latency_ms: 40,
                down: false,
                body: "k1".to_string(),
            }
        }

        fn dispatch(&mut self, worker: usize, reason: FetchReason, now: u64) {
            self.fetches.push((now, reason));
            self.in_flight.push((worker, reason, now + self.latency_ms));
        }

        /// Deliver answers due by `now`.
        fn deliver(&mut self, now: u64) {
            let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|f| f.2 <= now);
            self.in_flight = later;
            for (worker, _, at) in due {
                let cache = &mut self.workers[worker];
                if self.down {
                    cache.on_failure_shared(&self.store, at, FetchError::Unreachable, parse);
                } else {
                    let _ = cache.on_response_shared(
                        &self.store,
                        at,
                        200,
                        &[],
                        self.body.as_bytes(),
                        parse,
                    );
                }
            }
        }

        /// Every worker's tick at the same instant, in rotating order, as threads would race:
        /// all of them read the record before any of them writes.
        fn tick(&mut self, now: u64) {
            self.deliver(now);
            let snapshot = self.store.read();
            let n = self.workers.len();
            for k in 0..n {
                let worker = (k + (now / 7) as usize) % n;
                let slot = Racing {
                    store: &self.store,
                    snapshot: RefCell::new(Some(snapshot.clone())),
                };
                if let Some(reason) = self.workers[worker].poll_shared(&slot, now, parse) {
                    self.dispatch(worker, reason, now);
                }
            }
        }

        fn keys_of(&self, worker: usize, now: u64) -> Option<&str> {
            self.workers[worker].keys(now).map(|b| b.0.as_str())
        }
    }

    #[test]
    fn four_workers_fetch_once_per_refresh() {
        let mut sim = Sim::new(4);
        let end = 10 * 300_000 + 5_000;
        for now in (0..end).step_by(250) {
            sim.tick(now);
        }
        let startups = sim
            .fetches
            .iter()
            .filter(|f| f.1 == FetchReason::Startup)
            .count();
        let refreshes = sim
            .fetches
            .iter()
            .filter(|f| f.1 == FetchReason::Refresh)
            .count();
        assert_eq!(startups, 1);
        assert_eq!(
            refreshes, 10,
            "one fetch per 300 s refresh: {:?}",
            sim.fetches
        );
        for w in 0..4 {
            assert_eq!(sim.keys_of(w, end), Some("k1"));
        }
    }

    #[test]
    fn racing_reads_before_writes_still_give_one_fetch() {
        // All four workers read the empty record before any of them writes: the worst race.
        let store = Store::default();
        let mut workers: Vec<JwksCache<Body>> =
            (0..4).map(|i| JwksCache::new(&settings(), i)).collect();
        let expects: Vec<Expect> = workers
            .iter_mut()
            .map(|w| w.read_slot(&store, &parse).0)
            .collect();
        let mut winners = 0;
        for (w, expect) in workers.iter_mut().zip(expects) {
            assert_eq!(w.poll(0), Some(FetchReason::Startup));
            if store.write(&w.record().encode(), expect).is_ok() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        // Same race on a refresh, with an existing record.
        let mut sim = Sim::new(4);
        sim.tick(0);
        sim.tick(100);
        let expects: Vec<Expect> = sim
            .workers
            .iter_mut()
            .map(|w| w.read_slot(&sim.store, &parse).0)
            .collect();
        let mut winners = 0;
        for (w, expect) in sim.workers.iter_mut().zip(expects) {
            assert_eq!(w.poll(300_040), Some(FetchReason::Refresh));
            if sim.store.write(&w.record().encode(), expect).is_ok() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
    }

    #[test]
    fn all_workers_adopt_a_rotation_and_drop_removed_keys() {
        let mut sim = Sim::new(4);
        for now in (0..1_000).step_by(250) {
            sim.tick(now);
        }
        sim.body = "k2".to_string();
        for now in (1_000..301_000).step_by(250) {
            sim.tick(now);
        }
        for w in 0..4 {
            assert_eq!(sim.keys_of(w, 301_000), Some("k2"));
        }
    }

    #[test]
    fn unknown_kid_flood_over_four_workers_is_rate_limited() {
        let mut sim = Sim::new(4);
        sim.latency_ms = 120;
        sim.tick(0);
        sim.tick(200);
        sim.body = "k1,k2".to_string();
        let mut actions = [0usize; 3];
        // 60 s of requests with unknown kids on every worker, 20 per second per worker.
        for now in (1_000..61_000).step_by(50) {
            sim.tick(now);
            // Every worker sees an unknown kid at the same instant, all reading before any writes.
            let snapshot = sim.store.read();
            for worker in 0..4 {
                let slot = Racing {
                    store: &sim.store,
                    snapshot: RefCell::new(Some(snapshot.clone())),
                };
                match sim.workers[worker].unknown_kid_shared(&slot, now, parse) {
                    UnknownKidAction::Fetch => {
                        actions[0] += 1;
                        sim.dispatch(worker, FetchReason::UnknownKid, now);
                    }
                    UnknownKidAction::Wait => actions[1] += 1,
                    UnknownKidAction::Decide => actions[2] += 1,
                }
            }
        }
        let refetches = sim
            .fetches
            .iter()
            .filter(|f| f.1 == FetchReason::UnknownKid)
            .count();
        assert_eq!(refetches, actions[0]);
        assert_eq!(refetches, 6, "one per 10 s over 60 s: {:?}", sim.fetches);
        assert!(actions[1] > 0 && actions[2] > actions[1]);
        for w in 0..4 {
            assert_eq!(sim.keys_of(w, 61_000), Some("k1,k2"));
        }
    }

    #[test]
    fn down_key_manager_is_retried_once_per_backoff_step_across_workers() {
        let mut sim = Sim::new(4);
        sim.down = true;
        for now in (0..60_000).step_by(50) {
            sim.tick(now);
        }
        let times: Vec<u64> = sim.fetches.iter().map(|f| f.0).collect();
        // Attempts at 0, then backoff 1, 2, 4, 8, 16, 16 s after each failure (answer +40 ms).
        assert_eq!(times, vec![0, 1_050, 3_100, 7_150, 15_200, 31_250, 47_300]);
        assert!(sim.keys_of(0, 60_000).is_none());
        let status = sim.workers[3].status(60_000);
        assert_eq!(status.failures, 7);
        assert_eq!(status.last_error, Some(FetchError::Unreachable));
        sim.down = false;
        for now in (60_000..70_000).step_by(50) {
            sim.tick(now);
        }
        assert_eq!(sim.fetches.len(), 8, "recovers on the next retry");
        for w in 0..4 {
            assert_eq!(sim.keys_of(w, 70_000), Some("k1"));
        }
    }

    #[test]
    fn lost_fetch_is_taken_over_by_another_worker() {
        let mut sim = Sim::new(4);
        sim.tick(0);
        // The fetching worker's callback never comes (its VM went away).
        sim.in_flight.clear();
        for now in (50..3_500).step_by(50) {
            sim.tick(now);
        }
        // Lease = 2 s timeout + 1 s grace: a second startup fetch at 3 s, by exactly one worker.
        let times: Vec<u64> = sim.fetches.iter().map(|f| f.0).collect();
        assert_eq!(times, vec![0, 3_000]);
    }

    #[test]
    fn foreign_bytes_in_the_slot_are_replaced() {
        let store = Store::default();
        store.write(b"not a record", Expect::Absent).unwrap();
        let mut w: JwksCache<Body> = JwksCache::new(&settings(), 1);
        assert_eq!(w.poll_shared(&store, 0, parse), Some(FetchReason::Startup));
        let (bytes, _) = store.read().unwrap();
        assert!(JwksRecord::decode(&bytes, 1 << 20).is_some());
    }

    #[test]
    fn without_shared_data_each_worker_works_alone() {
        let mut w: JwksCache<Body> = JwksCache::new(&settings(), 1);
        assert_eq!(w.poll_shared(&Broken, 0, parse), Some(FetchReason::Startup));
        assert_eq!(
            w.on_response_shared(&Broken, 10, 200, &[], b"k", parse),
            Ok(())
        );
        assert_eq!(w.keys(10).map(|b| b.0.as_str()), Some("k"));
        assert_eq!(w.poll_shared(&Broken, 20, parse), None);
    }

    #[test]
    fn stale_failure_report_does_not_write() {
        let store = Store::default();
        let mut a: JwksCache<Body> = JwksCache::new(&settings(), 1);
        let mut b: JwksCache<Body> = JwksCache::new(&settings(), 2);
        assert!(a.poll_shared(&store, 0, parse).is_some());
        // a's lease expires, b takes over and succeeds; then a's late timeout arrives.
        assert!(b.poll_shared(&store, 3_000, parse).is_some());
        assert_eq!(
            b.on_response_shared(&store, 3_050, 200, &[], b"k", parse),
            Ok(())
        );
        let writes = store.writes.get();
        a.on_failure_shared(&store, 3_100, FetchError::Timeout, parse);
        assert_eq!(store.writes.get(), writes);
        assert_eq!(a.status(3_100).failures, 0);
        assert_eq!(a.keys(3_100).map(|b| b.0.as_str()), Some("k"));
    }

    #[test]
    fn slot_key_names_the_key_manager_and_its_source() {
        let iss = "https://a.example";
        let a = slot_key("asgardeo", iss, "https://a.example/jwks");
        assert!(a.starts_with("keygate.jwks.asgardeo."));
        assert_eq!(a, slot_key("asgardeo", iss, "https://a.example/jwks"));
        assert_ne!(a, slot_key("asgardeo", iss, "https://b.example/jwks"));
        assert_ne!(a, slot_key("okta", iss, "https://a.example/jwks"));
        assert_ne!(
            a,
            slot_key("asgardeo", "https://b.example", "https://a.example/jwks")
        );
        // FNV-1a test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
