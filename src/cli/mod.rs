//! The native companion command `keygate`: `check-token`, `discover`, `explain`, `generate`,
//! `instructions`, `oci`.
//!
//! The subcommands are the flat modules here. What they share lives in three wings, imported one
//! way only: subcommands → wings; `render` → `declaration`, `discovery`; `declaration` →
//! `discovery`; `discovery` → nothing in `cli`.

pub mod declaration;
pub mod discovery;
pub mod render;

pub mod backend_key;
pub mod check_token;
pub mod discover;
pub mod explain;
pub mod generate;
pub mod instructions;
pub mod live;
pub mod oci;
pub mod wasm_source;
