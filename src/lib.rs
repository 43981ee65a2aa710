//! keygate: authorize API calls in Envoy with access tokens from external OAuth2/OIDC key managers.
//!
//! Layers (data flows one way):
//! - core (`config`, `jose`, `claims`, `policy`, `decide`, `dpop`, `introspection`, `worker`,
//!   `response`; internally
//!   `keys`, `routes`, `mapping`, `issuer`): pure Rust,
//!   no host calls, builds natively and for wasm32, every decision a function of inputs and `now`;
//! - `filter`: the proxy-wasm shell (wasm32 only): the `worker::Host` trait over Envoy's host calls;
//! - `cli`: the native companion command (`keygate`).

pub mod config;
pub mod decision;
pub mod dpop;
pub mod introspection;
pub mod jose;
mod keys;
pub mod policy;
pub mod worker;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
mod filter;
