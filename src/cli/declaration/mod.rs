//! The operator's declaration (`keygate.yaml`): its model, the checks that refuse it line by line,
//! and the key-manager presets. May import `cli::discovery` only.

pub mod model;
pub mod presets;
pub mod validate;
