//! keygate: authorize API calls in Envoy with access tokens from external OAuth2/OIDC key managers.
//!
//! The modules in layer order; data flows one way, and a module imports only those above it
//! (the core never imports `worker`, `filter` or `cli`):
//!
//! Core (pure Rust, no host calls, native and wasm32; every decision a function of its inputs
//! and `now`):
//! - [`config`]: the wire contract, the plugin config's serde types and their errors.
//! - [`policy`]: the configuration compiled once (routes, paths, issuers, claim mappings, tiers)
//!   and the policy's own refusals.
//! - [`jose`]: compact JWS, algorithms, JWK/JWKS, claims, signature checks (host or Wasm).
//! - `keys`: the JWKS cache state machine shared by all workers (compare-and-swap lease).
//! - [`dpop`]: RFC 9449 proofs and the shared `jti` replay store.
//! - [`introspection`]: RFC 7662 answers and their shared cache.
//! - [`decision`]: one request: credentials, verified tokens, DPoP binding, opaque tokens,
//!   identity, denial and its one reply.
//! - [`worker`]: `Worker<H: Host>`, the per-worker request path (parking, JWKS and introspection
//!   callouts, tiers, metrics) over a small host trait; a fake host tests it natively.
//!
//! Shell and companion:
//! - `filter` (wasm32 only): the proxy-wasm contexts, the `Host` trait over Envoy's calls.
//! - [`cli`] (native only): the `keygate` command (`discover`, `generate`, `check-token`,
//!   `explain`, ...).
//!
//! The curated API below is what a caller needs for the common paths: compile a configuration,
//! verify a token, drive a worker.

pub mod config;
pub mod policy;

pub mod jose;
mod keys;

pub mod directory;
pub mod dpop;
pub mod introspection;

pub mod decision;
pub mod worker;

#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

pub use config::{ConfigError, ConfigErrors, PluginConfig};
pub use decision::{reply, Denial, Outcome, Reply, Request};
pub use jose::{verify, KeySet, UntrustedToken, Validation, VerifiedToken};
pub use policy::Policy;
pub use worker::{Host, RequestAction, Worker};
