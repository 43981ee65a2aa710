//! The native companion command `keygate`: `check-token`, `discover`, `generate`, `instructions`.

pub mod check_token;
pub mod discover;
pub mod generate;
pub mod instructions;
