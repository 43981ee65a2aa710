//! JWKS cache per key manager: a state machine driven by `now` and fetch events, shared by all
//! worker VMs of one Envoy.
//!
//! # One worker
//! [`JwksCache<K>`] holds a [`JwksRecord`] (plain timing data) and the key set `K` parsed from the last
//! good body. `K` is whatever the caller's parser builds (the shell passes `jose`'s key set), so
//! this module never looks inside keys. All clock values are milliseconds since the Unix epoch,
//! passed in by the caller.
//!
//! - `poll(now)` says when a scheduled fetch is due: `Startup` (never fetched), `Refresh` (the
//!   keys reached `Cache-Control: max-age`, clamped to the configured bounds, else the default
//!   interval), `Retry` (after failures, doubling from `jwks_retry_initial_seconds` up to
//!   `jwks_retry_max_seconds`). A due fetch is marked in flight by a *lease* that expires after
//!   the fetch timeout plus a grace second, so a callback that never comes cannot wedge the cache.
//! - `unknown_kid(now)`: a token names a `kid` we lack (key rotation), or there are no keys at all.
//!   One refetch per `jwks_unknown_kid_refetch_seconds`; requests arriving while a fetch is in
//!   flight wait for it; rate-limited requests are decided with the current keys.
//! - `on_response` accepts only a 2xx body within `jwks_max_bytes` that the parser accepts; any
//!   other answer, and `on_failure` (timeout, reset, refused), keeps the old keys and counts a
//!   failure. A good body replaces the whole key set, so removed keys stop verifying.
//! - `keys(now)` serves the last good keys until their refresh time plus `jwks_stale_seconds`
//!   (stale-if-error), then `None`: the shell answers 503 `key_manager_unavailable` with
//!   `Retry-After: retry_after(now)`, never forwards.
//! - `status(now)` derives the state (Empty, Fresh, Stale, Refreshing, Failed) for logs/metrics.
//!
//! # Many workers: one fetch per refresh
//! Envoy runs one VM per worker thread; each has its own `JwksCache`, but the [`JwksRecord`] lives in
//! proxy-wasm shared data under [`slot_key`] (key manager name + hash of the issuer and JWKS URI), read and
//! written through [`SharedSlot`] (the shell implements it over `get_shared_data` /
//! `set_shared_data`). Shared data gives compare-and-swap:
//! a read returns the bytes and a CAS value, and a write with that value fails if anyone wrote
//! in between. The protocol, all in the `*_shared` methods:
//!
//! 1. **Adopt.** Every tick (and before every decision) a worker reads the record and takes it as
//!    the truth. If its body differs from the one the worker parsed, the worker parses it: every
//!    worker serves the same keys, fetched once.
//! 2. **Lease.** When a fetch is due and no lease is active, the worker writes the record with
//!    itself as lease owner, conditional on the CAS value it read (or on the entry being absent,
//!    for the very first fetch). Only the winner of that write fetches; a loser re-reads, sees the
//!    lease and does nothing. The unknown-kid rate limit is a timestamp in the same record, so it
//!    holds across workers too.
//! 3. **Publish.** The fetcher applies its outcome to the newest record and writes it back (again
//!    conditional; on conflict it re-reads and re-applies, a few times). A good body bumps
//!    `version` and clears the lease; a failure counts, sets the backoff and clears the lease.
//!    A failure from a worker that no longer owns the lease (it expired and someone took over)
//!    changes nothing.
//! 4. **Takeover.** A lease that outlives fetch timeout + grace is ignored by everyone, so a lost
//!    callback delays the next fetch by at most that much.
//!
//! Requests waiting in other workers learn of the result on their next tick (`sync_shared`, then
//! `fetch_in_flight(now)` is false). Without shared data (writes fail with [`SlotError::Host`])
//! each worker fetches for itself: more fetches, same correctness.
//!
//! # Shell sketch
//! ```text
//! tick:      cache.sync_shared(slot, parse); if let Some(r) = cache.poll_shared(slot, now, parse)
//!            { dispatch_http_call(timeout = timing().fetch_timeout_ms) or on_failure_shared(
//!            DispatchFailed) }; resume waiting requests when !fetch_in_flight(now)
//! request:   keys(now) has the kid → verify; else match unknown_kid_shared(slot, now, parse)
//!            { Fetch → dispatch + pause, Wait → pause, Decide → verify with keys(now) or 503 }
//! response:  no headers, or made_by_proxy(status, headers) (Envoy's own 503/504 for a lost
//!            answer) → on_failure_shared(no_answer_error(now)); else check_size(body_size),
//!            then on_response_shared(status, headers, body, parse)
//! 503:       keys(now) is None → Denial::KeyManagerUnavailable { retry_after: retry_after(now) }
//! ```

mod answer;
mod cache;
mod error;
mod record;
mod shared;
mod timing;

pub use answer::made_by_proxy;
pub use cache::{JwksCache, UnknownKidAction};
pub use error::{BodyProblem, FetchError};
pub use shared::{slot_key, Expect, SharedSlot, SlotError};
