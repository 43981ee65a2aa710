//! The native companion command `keygate`: `check-token`, `discover`, `explain`, `generate`,
//! `instructions`, `oci`.

pub mod check_token;
pub mod compose;
pub mod declaration;
pub mod discover;
pub mod envoy;
pub mod explain;
pub mod generate;
pub mod http;
pub mod instructions;
pub mod istio;
pub mod live;
pub mod oci;
pub mod oidc;
pub mod plugin;
pub mod presets;
pub mod ratelimit;
pub mod url;
pub mod validate;
