//! Harness for keygate's product tests: real processes (the demo key manager, Envoy) and an
//! in-process echo upstream, all on 127.0.0.1, every wait bounded, every process killed on drop.
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

pub mod cli;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod jwt;
pub mod keymanager;
pub mod paths;
pub mod process;
pub mod tempdir;

pub use cli::{keygate, CliRun};
pub use echo::{EchoUpstream, EchoedRequest};
pub use envoy::Envoy;
pub use http::{expect_reply, http, http_with_body, try_http, Response};
pub use jwt::{ath, decode_jwt_claims, decode_jwt_header, DpopKey};
pub use keymanager::KeyManager;
pub use paths::{envoy_bin, free_port, keygate_bin, project_root, wasm_path};
pub use process::ProcessGuard;
pub use tempdir::TempDir;
