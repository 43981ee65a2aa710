//! `make run` (the demo): what it installs and what it tells the user, read from `make -n run`
//! and `envoy/demo.sh` without starting anything.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::project_root;

#[test]
fn make_run_installs_only_what_the_demo_needs() {
    let out = Command::new("make")
        .args(["-n", "run"])
        .current_dir(project_root())
        .env_remove("MAKEFLAGS")
        .output()
        .expect("make on PATH");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    assert!(plan.contains("envoy/demo.sh"), "{plan}");
    // Test-only tools stay out of the demo's way.
    for test_only in ["grpcio", "skopeo", "wrk", "tests/istio"] {
        assert!(!plan.contains(test_only), "{test_only} in:\n{plan}");
    }
}

#[test]
fn the_demo_says_where_decisions_can_be_seen() {
    let script = std::fs::read_to_string(project_root().join("envoy/demo.sh")).unwrap();
    for place in [
        "keygate_code",
        "/stats/prometheus",
        "dashboards/keygate.json",
    ] {
        assert!(
            script.contains(place),
            "{place} not printed by envoy/demo.sh"
        );
    }
}
