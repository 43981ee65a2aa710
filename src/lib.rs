//! keygate: authorize API calls in Envoy with access tokens from external OAuth2/OIDC key managers.
//!
//! Layers (data flows one way):
//! - core (`config`, `jose`, `claims`, `mapping`, `routes`, `policy`, `keys`, `response`): pure Rust,
//!   no host calls, builds natively and for wasm32, every decision a function of inputs and `now`;
//! - `filter`: the proxy-wasm shell (wasm32 only) that moves bytes between Envoy and the core;
//! - `cli`: the native companion command (`keygate`).

pub mod cache;
pub mod claims;
pub mod config;
pub mod decide;
pub mod identity;
pub mod issuer;
pub mod jose;
pub mod keys;
pub mod mapping;
pub mod path;
pub mod policy;
pub mod response;
pub mod routes;
pub mod worker;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
mod filter;
