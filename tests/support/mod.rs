//! The one harness of keygate's tests: real processes (the demo key manager, Envoy) and an
//! in-process echo upstream, all on 127.0.0.1, every wait bounded, every process killed on drop;
//! the whole stack of a product test (`stack`); a fault-injecting proxy (`faultproxy`); canned
//! HTTP documents for the CLI tests (`canned`); real signers and token/JWKS builders with the
//! committed test keys (`signers`); the plugin config the native tests start from (`policies`).
//!
//! A test file includes it with `mod support;` and uses what it needs, so items may go unused.
#![allow(dead_code, unused_imports)]
// Test-only code: failing loudly with a message is how a harness reports a broken setup, and
// clippy.toml's test exemptions do not reach helper modules outside `#[test]` functions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(not(target_arch = "wasm32"))]
pub mod canned;
pub mod cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod console;
pub mod directory;
pub mod echo;
pub mod envoy;
pub mod faultproxy;
pub mod http;
pub mod jwt;
pub mod keymanager;
pub mod paths;
pub mod policies;
#[cfg(not(target_arch = "wasm32"))]
pub mod postgres;
pub mod process;
pub mod shell;
pub mod signers;
pub mod stack;
pub mod tempdir;

pub use cli::{keygate, CliRun};
pub use echo::{EchoUpstream, EchoedRequest};
pub use envoy::Envoy;
pub use http::{expect_reply, http, http_raw, http_with_body, try_http, Response};
pub use jwt::{ath, decode_jwt_claims, decode_jwt_header, DpopKey};
pub use keymanager::KeyManager;
pub use paths::{envoy_bin, free_port, keygate_bin, project_root, wasm_path};
pub use process::ProcessGuard;
pub use tempdir::TempDir;
