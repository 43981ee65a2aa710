//! Rendering what `generate` writes from a checked declaration: the filter's plugin config (and
//! the cluster names it uses), the Envoy bootstrap and live filter config, Istio manifests,
//! docker-compose and the rate-limit service's config. May import `cli::declaration` and
//! `cli::discovery`, never a subcommand.

pub mod cluster_naming;
pub mod compose;
pub mod envoy;
pub mod istio;
pub mod plugin;
pub mod ratelimit;
