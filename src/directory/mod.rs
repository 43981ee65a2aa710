//! The application directory (`docs/directory.md`): applications, their client ids and
//! subscriptions as live data the filter pulls from a directory source instead of carrying them
//! in the plugin config.
//!
//! - `wire`: the protocol's JSON, read entry by entry (a snapshot is never held whole);
//! - `buckets`: the compact encoding in shared data (hashed buckets per key kind);
//! - `store`: the state record, the per-request lookup ([`SharedLookup`], an
//!   [`crate::policy::applications::ApplicationLookup`] like the inline applications) and the
//!   application of an answer ([`Applier`]).
//!
//! The fetching itself (timer, lease, callouts) is the worker's (`crate::worker`), like the JWKS.

pub mod buckets;
pub mod store;
pub mod wire;

pub use store::{prefix, read_state, state_key, Applier, Refusal, Refused, SharedLookup, State};
pub use wire::{
    page_cursor, page_query, read_answer, read_page, Change, Changes, Entry, ErrorBody, PageQuery,
    PageRefusal, Snapshot, CHANGES_PATH, MAX_PAGE, SNAPSHOT_PAGE, SNAPSHOT_PATH,
};
