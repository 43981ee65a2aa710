//! `docker-compose.yaml` for trying the gateway with Docker: the official Envoy image, with a
//! container variant of `envoy.yaml`, the module and every file the bootstrap names, all copied
//! into the output directory and mounted read-only by relative path, so the directory can be handed
//! on as it is. The live filter config is mounted as its directory (`compose/live`), not as a file:
//! a file mount would keep showing the replaced file after `generate` renames a new one in.
//!
//! Networking: when an upstream, a key manager or the rate-limit service is on the host's loopback,
//! the container shares the host's network (`network_mode: host`): on Linux nothing else reaches
//! `127.0.0.1` of the host (`host.docker.internal` is the bridge's address, where a service bound to
//! loopback does not listen). Envoy then binds the declared addresses itself. Otherwise the
//! container has its own network, binds `0.0.0.0` and the declared ports are published on the
//! declared host address.

use std::net::SocketAddr;

use serde_json::{json, Value};

pub const ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40.0";
/// Where the container sees its files.
pub const CONTAINER_ENVOY_YAML: &str = "/etc/keygate/envoy.yaml";
pub const CONTAINER_WASM: &str = "/etc/keygate/keygate.wasm";
pub const CONTAINER_CA_FILE: &str = "/etc/keygate/ca.pem";
/// The container bootstrap, relative to the output directory.
pub const COMPOSE_ENVOY_YAML: &str = "compose/envoy.yaml";
/// The copy of the module, relative to the output directory.
pub const COMPOSE_WASM: &str = "compose/keygate.wasm";
/// The copy of `gateway.ca_file` (when set), relative to the output directory.
pub const COMPOSE_CA_FILE: &str = "compose/ca.pem";
/// The container's live filter config directory, relative to the output directory, and where
/// the container sees it.
pub const COMPOSE_LIVE_DIR: &str = "compose/live";
pub const CONTAINER_LIVE_DIR: &str = "/etc/keygate/live";

/// How the compose service reaches the declaration's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `network_mode: host`: something is on the host's loopback.
    Host,
    /// The container's own network, ports published.
    Bridge,
}

impl Network {
    /// Host networking when any of `targets` (upstreams, JWKS, introspection, rate-limit service)
    /// is on loopback.
    pub fn for_targets(mut loopback: impl Iterator<Item = bool>) -> Network {
        if loopback.any(|is| is) {
            Network::Host
        } else {
            Network::Bridge
        }
    }

    /// The address the container's Envoy binds for a declared one.
    pub fn container_address(self, declared: &SocketAddr) -> SocketAddr {
        match self {
            Network::Host => *declared,
            Network::Bridge => SocketAddr::from(([0, 0, 0, 0], declared.port())),
        }
    }
}

/// What the compose service needs besides its fixed parts.
pub struct ComposeOptions<'a> {
    pub network: Network,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// A custom `gateway.ca_file` was copied to [`COMPOSE_CA_FILE`].
    pub ca_file: bool,
    /// Variables passed through from the environment `docker compose` runs in (names only; the
    /// values never reach a file).
    pub secret_envs: &'a [String],
}

pub fn compose_file(options: &ComposeOptions) -> Value {
    // Compose wants IPv6 host addresses in brackets: `[::1]:8080:8080`.
    let publish = |addr: &SocketAddr| match addr {
        SocketAddr::V4(v4) => format!("{}:{}:{}", v4.ip(), v4.port(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}:{}", v6.ip(), v6.port(), v6.port()),
    };
    let mut volumes = vec![
        format!("./{COMPOSE_ENVOY_YAML}:{CONTAINER_ENVOY_YAML}:ro"),
        format!("./{COMPOSE_WASM}:{CONTAINER_WASM}:ro"),
        format!("./{COMPOSE_LIVE_DIR}:{CONTAINER_LIVE_DIR}:ro"),
    ];
    if options.ca_file {
        volumes.push(format!("./{COMPOSE_CA_FILE}:{CONTAINER_CA_FILE}:ro"));
    }
    let mut envoy = json!({
        "image": ENVOY_IMAGE,
        "command": ["envoy", "-c", CONTAINER_ENVOY_YAML, "--log-level", "info"],
        "volumes": volumes,
    });
    let Some(obj) = envoy.as_object_mut() else {
        return envoy;
    };
    match options.network {
        Network::Host => {
            obj.insert("network_mode".into(), json!("host"));
        }
        Network::Bridge => {
            obj.insert(
                "ports".into(),
                json!([publish(&options.listen), publish(&options.admin)]),
            );
        }
    }
    if !options.secret_envs.is_empty() {
        obj.insert("environment".into(), json!(options.secret_envs));
    }
    json!({"services": {"envoy": envoy}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(network: Network) -> ComposeOptions<'static> {
        ComposeOptions {
            network,
            listen: "127.0.0.1:8080".parse().unwrap(),
            admin: "[::1]:9901".parse().unwrap(),
            ca_file: false,
            secret_envs: &[],
        }
    }

    #[test]
    fn ports_publish_on_the_declared_host_address() {
        let file = compose_file(&options(Network::Bridge));
        let ports = &file["services"]["envoy"]["ports"];
        assert_eq!(ports[0], "127.0.0.1:8080:8080");
        assert_eq!(ports[1], "[::1]:9901:9901");
        let admin = options(Network::Bridge).admin;
        assert_eq!(
            Network::Bridge.container_address(&admin).to_string(),
            "0.0.0.0:9901"
        );
    }

    #[test]
    fn host_networking_binds_the_declared_addresses_and_publishes_nothing() {
        assert_eq!(
            Network::for_targets([false, true].into_iter()),
            Network::Host
        );
        assert_eq!(Network::for_targets([false].into_iter()), Network::Bridge);
        let file = compose_file(&options(Network::Host));
        let envoy = &file["services"]["envoy"];
        assert_eq!(envoy["network_mode"], "host");
        assert!(envoy.get("ports").is_none() && envoy.get("extra_hosts").is_none());
        let admin = options(Network::Host).admin;
        assert_eq!(Network::Host.container_address(&admin), admin);
    }
}
