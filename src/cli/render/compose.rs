//! `docker-compose.yaml` for trying the gateway with Docker: the official Envoy image, the module
//! and a container variant of `envoy.yaml` mounted read-only, the same ports published on the
//! host's loopback. The live filter config is mounted as its directory (`compose/live`), not as a
//! file: a file mount would keep showing the replaced file after `generate` renames a new one in.

use std::net::SocketAddr;

use serde_json::{json, Value};

pub const ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40.0";
/// Where the container sees its files.
pub const CONTAINER_ENVOY_YAML: &str = "/etc/keygate/envoy.yaml";
pub const CONTAINER_WASM: &str = "/etc/keygate/keygate.wasm";
/// The container bootstrap, relative to the output directory.
pub const COMPOSE_ENVOY_YAML: &str = "compose/envoy.yaml";
/// The container's live filter config directory, relative to the output directory, and where
/// the container sees it.
pub const COMPOSE_LIVE_DIR: &str = "compose/live";
pub const CONTAINER_LIVE_DIR: &str = "/etc/keygate/live";
/// How the container reaches services the declaration puts on the host's loopback.
pub const HOST_ALIAS: &str = "host.docker.internal";

/// The container listens on all interfaces at the declared ports.
pub fn container_address(declared: &SocketAddr) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], declared.port()))
}

/// `secret_envs`: variables passed through from the environment `docker compose` runs in (names
/// only; the values never reach a file).
pub fn compose_file(
    wasm_host_path: &str,
    listen: &SocketAddr,
    admin: &SocketAddr,
    secret_envs: &[String],
) -> Value {
    // Compose wants IPv6 host addresses in brackets: `[::1]:8080:8080`.
    let publish = |addr: &SocketAddr| match addr {
        SocketAddr::V4(v4) => format!("{}:{}:{}", v4.ip(), v4.port(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}:{}", v6.ip(), v6.port(), v6.port()),
    };
    let mut envoy = json!({
        "image": ENVOY_IMAGE,
        "command": ["envoy", "-c", CONTAINER_ENVOY_YAML, "--log-level", "info"],
        "volumes": [
            format!("./{COMPOSE_ENVOY_YAML}:{CONTAINER_ENVOY_YAML}:ro"),
            format!("{wasm_host_path}:{CONTAINER_WASM}:ro"),
            format!("./{COMPOSE_LIVE_DIR}:{CONTAINER_LIVE_DIR}:ro"),
        ],
        "ports": [publish(listen), publish(admin)],
        "extra_hosts": [format!("{HOST_ALIAS}:host-gateway")],
    });
    if let (false, Some(obj)) = (secret_envs.is_empty(), envoy.as_object_mut()) {
        obj.insert("environment".into(), json!(secret_envs));
    }
    json!({"services": {"envoy": envoy}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_publish_on_the_declared_host_address() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let admin: SocketAddr = "[::1]:9901".parse().unwrap();
        let file = compose_file("/x/keygate.wasm", &listen, &admin, &[]);
        let ports = &file["services"]["envoy"]["ports"];
        assert_eq!(ports[0], "127.0.0.1:8080:8080");
        assert_eq!(ports[1], "[::1]:9901:9901");
        assert_eq!(container_address(&admin).to_string(), "0.0.0.0:9901");
    }
}
