//! The operator's declaration (`keygate.yaml`): its model, the checks that refuse it line by line,
//! the key-manager presets and the `istio` block's Kubernetes rules. May import `cli::discovery` only.

pub mod istio;
pub mod model;
pub mod presets;
pub mod validate;
