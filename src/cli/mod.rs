//! The native companion command `keygate`: `api-key`, `check-token`, `console`, `directory serve`,
//! `discover`, `explain`, `generate`, `instructions`, `oci`.
//!
//! The subcommands are the flat modules here. What they share lives in three wings, imported one
//! way only: subcommands → wings; `render` → `declaration`, `discovery`; `declaration` →
//! `discovery`; `discovery` → nothing in `cli`.

pub mod declaration;
pub mod discovery;
pub mod render;

pub mod api_key;
pub mod backend_key;
pub mod check_token;
#[cfg(not(target_arch = "wasm32"))]
pub mod console;
pub mod directory;
pub mod directory_history;
pub mod discover;
pub mod explain;
pub mod generate;
pub mod instructions;
pub mod live;
pub mod oci;
pub mod wasm_source;
