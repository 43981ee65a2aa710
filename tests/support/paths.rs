//! Where the project's artefacts and tools are, and free loopback ports.

use std::net::TcpListener;
use std::path::PathBuf;

/// The repository root (the crate's manifest directory).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free on 127.0.0.1 a moment ago. Prefer letting a server bind port 0 itself
/// (as the key manager and echo upstream do); this is for configs that must name a port upfront.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of the probe socket")
        .port()
}

/// The Envoy binary: `KEYGATE_ENVOY`, else `<project root>/.venv/bin/envoy`. Fails the test with a
/// hint when it is missing, since skipping would hide that the product was never exercised.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("KEYGATE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join(".venv/bin/envoy"));
    assert!(
        path.is_file(),
        "Envoy not found at {} (set KEYGATE_ENVOY or run `make deps`)",
        path.display()
    );
    path
}

/// The release build of the filter that `make wasm` produces.
pub fn wasm_path() -> PathBuf {
    let path = project_root().join("target/wasm32-wasip1/release/keygate.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make wasm` (or `make test`, which builds it first)",
        path.display()
    );
    path
}

/// The `keygate` CLI: `KEYGATE_BIN`, else the release build, else the debug build.
pub fn keygate_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYGATE_BIN") {
        return PathBuf::from(path);
    }
    // Cargo builds the binary for integration tests of this package and says where.
    if let Some(path) = option_env!("CARGO_BIN_EXE_keygate") {
        return PathBuf::from(path);
    }
    let root = project_root();
    let release = root.join("target/release/keygate");
    if release.is_file() {
        return release;
    }
    root.join("target/debug/keygate")
}
