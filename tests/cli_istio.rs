//! The Istio manifests `keygate generate` writes, rule by rule (issue 22): where the WasmPlugin
//! runs, what it refuses to generate, where the module comes from, how the key managers' hosts are
//! reached, how the introspection secret gets into `istio-proxy`; and the committed example
//! (`examples/istio/`) is what `generate` writes today.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::canned::*;

/// A declaration without network needs (inline discovery); `{ISTIO}` is replaced by the lines
/// of the `istio` block (line 3 on), `{KM}` by the key manager's host.
const TEMPLATE: &str = "\
gateway: {environment: production}
istio:
{ISTIO}
key_managers:
  - name: idp
    well_known_url: https://{KM}/.well-known/openid-configuration
    audiences: [pets-api]
    discovery: {issuer: \"https://{KM}\", jwks_uri: \"https://{KM}/jwks\"}
apis:
  - name: pets
    base_path: /pets/v1
    resources:
      - {method: GET, path: /pets, scopes: [pets:read]}
";

fn declaration(istio: &[&str], km_host: &str) -> String {
    let block: Vec<String> = istio.iter().map(|line| format!("  {line}")).collect();
    TEMPLATE
        .replace("{ISTIO}", &block.join("\n"))
        .replace("{KM}", km_host)
}

/// Runs `keygate generate` on `text` in a fresh directory; returns the output directory.
fn run(text: &str, extra: &[&str]) -> (PathBuf, Output) {
    let dir = temp_dir("istio");
    std::fs::write(dir.join("keygate.yaml"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["generate", "--input", "keygate.yaml", "--out", "out"])
        .args(extra)
        .current_dir(&dir)
        .output()
        .unwrap();
    (dir.join("out"), out)
}

fn wasm_arg() -> String {
    wasm_path().to_string_lossy().into_owned()
}

/// Generates (must succeed) and returns the output directory and stderr.
fn generated(istio: &[&str], extra: &[&str]) -> (PathBuf, String) {
    let mut args = vec!["--wasm".to_string(), wasm_arg()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, result) = run(&declaration(istio, "idp.example.com"), &args);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{istio:?}: {}",
        stderr(&result)
    );
    (out, stderr(&result))
}

/// The YAML files directly in `dir`, checked with Istio's schemas.
fn schema_checked(dir: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    let (code, _, err) = istio_check(&files);
    assert_eq!(code, Some(0), "{}: {err}", dir.display());
    files
}

fn of_kind(files: &[PathBuf], kind: &str) -> Vec<Value> {
    files
        .iter()
        .map(|p| yaml(p))
        .filter(|r| r["kind"] == kind)
        .collect()
}

const SHA: &str = "661d7effdd5299a513d5c960cd60c5cd9adea3a560ed44a279d04330d5b8dbe5";

// Rule 1: where the filter runs.
#[test]
fn the_wasmplugin_runs_where_istio_attach_says() {
    let gateway_ref = json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                              "name": "ingress"}]);
    let waypoint_ref = json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                               "name": "waypoint"}]);
    let cases: Vec<(Vec<&str>, Value, Value, Value, Value)> = vec![
        // (istio block, match, selector, targetRefs, DestinationRule workloadSelector)
        (
            vec!["selector: {app: pets}", "image: r.example/keygate:1"],
            json!([{"mode": "SERVER"}]),
            json!({"matchLabels": {"app": "pets"}}),
            Value::Null,
            json!({"matchLabels": {"app": "pets"}}),
        ),
        (
            vec![
                "attach: sidecar",
                "selector: {app: pets, example.com/tier: api}",
                "image: r.example/keygate:1",
            ],
            json!([{"mode": "SERVER"}]),
            json!({"matchLabels": {"app": "pets", "example.com/tier": "api"}}),
            Value::Null,
            json!({"matchLabels": {"app": "pets", "example.com/tier": "api"}}),
        ),
        (
            vec!["attach: gateway ingress", "image: r.example/keygate:1"],
            Value::Null,
            Value::Null,
            gateway_ref,
            json!({"matchLabels": {"gateway.networking.k8s.io/gateway-name": "ingress"}}),
        ),
        (
            vec!["attach: waypoint waypoint", "image: r.example/keygate:1"],
            Value::Null,
            Value::Null,
            waypoint_ref,
            Value::Null,
        ),
        (
            vec!["mesh_wide: true", "image: r.example/keygate:1"],
            json!([{"mode": "SERVER"}]),
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    ];
    for (istio, matching, selector, target_refs, workload_selector) in cases {
        let (out, _) = generated(&istio, &[]);
        let files = schema_checked(&out.join("istio"));
        let plugin = &of_kind(&files, "WasmPlugin")[0]["spec"];
        assert_eq!(plugin["match"], matching, "{istio:?}");
        assert_eq!(plugin["selector"], selector, "{istio:?}");
        assert_eq!(plugin["targetRefs"], target_refs, "{istio:?}");
        let rule = &of_kind(&files, "DestinationRule")[0]["spec"];
        assert_eq!(rule["workloadSelector"], workload_selector, "{istio:?}");
    }
}

// Rule 2: no silent namespace- or mesh-wide plugin; Kubernetes syntax.
#[test]
fn unsafe_or_invalid_istio_blocks_are_refused_naming_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["image: r.example/keygate:1"],
            "line 3: istio.selector: is required: a WasmPlugin without a selector runs in every \
             workload of its namespace",
        ),
        (
            &["attach: sidecar", "image: r.example/keygate:1"],
            "line 3: istio.selector: is required",
        ),
        (
            &[
                "selector: {app: \"pets app\"}",
                "image: r.example/keygate:1",
            ],
            "line 3: istio.selector.app: `pets app` is not a label value",
        ),
        (
            &[
                "selector: {\"pets app\": pets}",
                "image: r.example/keygate:1",
            ],
            "line 3: istio.selector: `pets app` is not a label key",
        ),
        (
            &[
                "selector: {app: pets}",
                "namespace: Shop_NS",
                "image: r.example/keygate:1",
            ],
            "line 4: istio.namespace: `Shop_NS` is not a DNS-1123 label",
        ),
        (
            &["attach: gateway Ingress_GW", "image: r.example/keygate:1"],
            "line 3: istio.attach: `gateway Ingress_GW` is not a DNS-1123 subdomain",
        ),
        (
            &["attach: ingress", "image: r.example/keygate:1"],
            "line 3: istio.attach: `ingress` is not `sidecar`, `gateway NAME` or `waypoint NAME`",
        ),
        (
            &[
                "attach: gateway ingress",
                "selector: {app: pets}",
                "image: r.example/keygate:1",
            ],
            "line 4: istio.selector: cannot be combined with attach gateway/waypoint",
        ),
        (
            &[
                "mesh_wide: true",
                "selector: {app: pets}",
                "image: r.example/keygate:1",
            ],
            "line 3: istio.mesh_wide: is true but a selector or a gateway/waypoint limits",
        ),
    ];
    for (istio, want) in cases {
        let (out, result) = run(&declaration(istio, "idp.example.com"), &["--check"]);
        assert_eq!(result.status.code(), Some(1), "{istio:?} was accepted");
        let err = stderr(&result);
        assert!(err.contains(want), "{istio:?}: want `{want}` in:\n{err}");
        assert!(!out.exists());
    }
}

// Rule 3: where the module comes from.
#[test]
fn the_module_comes_from_the_declared_image_with_its_digest() {
    let module = std::fs::read(wasm_path()).unwrap();
    let manifest_digest = keygate::cli::oci::build(&module, "1")
        .unwrap()
        .manifest_hex()
        .to_string();
    let module_digest = keygate::cli::oci::sha256_hex(&module);
    // (istio block, extra arguments, url, sha256, priority)
    type Case<'a> = (Vec<&'a str>, Vec<&'a str>, &'a str, String, i64);
    let cases: Vec<Case> = vec![
        (
            vec!["selector: {app: pets}", "image: r.example/keygate:0.1.0"],
            vec![],
            "oci://r.example/keygate:0.1.0",
            manifest_digest.clone(),
            1000,
        ),
        (
            vec![
                "selector: {app: pets}",
                "image: r.example/keygate:0.1.0",
                "priority: 10",
                "wasm_sha256: \"sha256:661D7EFFDD5299A513D5C960CD60C5CD9ADEA3A560ED44A279D04330D5B8DBE5\"",
            ],
            vec![],
            "oci://r.example/keygate:0.1.0",
            SHA.to_string(),
            10,
        ),
        (
            vec![
                "selector: {app: pets}",
                "wasm_url: https://r.example/keygate.wasm",
            ],
            vec![],
            "https://r.example/keygate.wasm",
            module_digest.clone(),
            1000,
        ),
        (
            vec!["selector: {app: pets}"],
            vec!["--wasm-url", "oci://other.example/keygate:2"],
            "oci://other.example/keygate:2",
            manifest_digest.clone(),
            1000,
        ),
    ];
    for (istio, extra, url, sha256, priority) in cases {
        let (out, _) = generated(&istio, &extra);
        let files = schema_checked(&out.join("istio"));
        let spec = &of_kind(&files, "WasmPlugin")[0]["spec"];
        assert_eq!(spec["url"], url, "{istio:?}");
        assert_eq!(spec["sha256"], sha256.as_str(), "{istio:?}");
        assert_eq!(spec["priority"], priority, "{istio:?}");
        assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["phase"], "AUTHN");
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
        assert!(
            !out.join("istio/workload").exists(),
            "no secret, no file://: nothing for the pod"
        );
    }

    // Refused: no source, two sources, a scheme Istio does not load, a bad image reference.
    let refused: &[(&[&str], &str)] = &[
        (
            &["selector: {app: pets}"],
            "line 3: istio.image: is required: the image `make oci` builds",
        ),
        (
            &[
                "selector: {app: pets}",
                "image: r.example/keygate:1",
                "wasm_url: https://r.example/k.wasm",
            ],
            "line 5: istio.wasm_url: and istio.image both say where the module comes from",
        ),
        (
            &[
                "selector: {app: pets}",
                "wasm_url: s3://bucket/keygate.wasm",
            ],
            "line 4: istio.wasm_url: `s3://bucket/keygate.wasm` has a scheme Istio does not load",
        ),
        (
            &["selector: {app: pets}", "image: r.example/keygate"],
            "line 4: istio.image: `r.example/keygate` is not an image reference",
        ),
        (
            &["selector: {app: pets}", "image: oci://r.example/keygate:1"],
            "without a scheme (oci:// is added)",
        ),
        (
            &[
                "selector: {app: pets}",
                "image: r.example/keygate:1",
                "wasm_sha256: abc",
            ],
            "line 5: istio.wasm_sha256: `abc` is not a SHA-256",
        ),
    ];
    for (istio, want) in refused {
        let (out, result) = run(
            &declaration(istio, "idp.example.com"),
            &["--wasm", &wasm_arg()],
        );
        assert_eq!(result.status.code(), Some(1), "{istio:?} was accepted");
        let err = stderr(&result);
        assert!(err.contains(want), "{istio:?}: want `{want}` in:\n{err}");
        assert!(!out.exists());
    }
    let (out, result) = run(
        &declaration(&["selector: {app: pets}"], "idp.example.com"),
        &[
            "--wasm",
            &wasm_arg(),
            "--wasm-url",
            "ftp://r.example/k.wasm",
        ],
    );
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("--wasm-url"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists());

    // A module named on the command line that is not there: refused, nothing written.
    let with_image = declaration(
        &["selector: {app: pets}", "image: r.example/keygate:1"],
        "idp.example.com",
    );
    let (out, result) = run(&with_image, &["--wasm", "/nonexistent/keygate.wasm"]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("/nonexistent/keygate.wasm: --wasm: no such file"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists());

    // No module to hash: a warning on stderr, and no sha256 rather than a wrong one.
    let not_wasm = temp_dir("not-wasm").join("keygate.wasm");
    std::fs::write(&not_wasm, "not a module").unwrap();
    let (out, result) = run(&with_image, &["--wasm", not_wasm.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let err = stderr(&result);
    assert!(
        err.contains(&format!(
            "keygate: warning: istio: cannot compute the WasmPlugin sha256 from {}: not a \
             WebAssembly module",
            not_wasm.display()
        )),
        "{err}"
    );
    let plugin = yaml(&out.join("istio/wasmplugin.yaml"));
    assert!(plugin["spec"].get("sha256").is_none(), "{plugin}");
}

// Rule 3: a file:// module needs a volume in istio-proxy.
#[test]
fn a_file_module_comes_with_the_sidecar_volume_annotations() {
    let (out, _) = generated(
        &[
            "selector: {app: pets}",
            "namespace: shop",
            "wasm_url: file:///opt/keygate/keygate.wasm",
        ],
        &[],
    );
    let files = schema_checked(&out.join("istio"));
    let spec = &of_kind(&files, "WasmPlugin")[0]["spec"];
    assert_eq!(
        spec["sha256"],
        keygate::cli::oci::sha256_hex(&std::fs::read(wasm_path()).unwrap())
    );
    let patch_file = out.join("istio/workload/deployment-patch.yaml");
    let patch = yaml(&patch_file);
    let annotations = &patch["spec"]["template"]["metadata"]["annotations"];
    let volume: Value =
        serde_json::from_str(annotations["sidecar.istio.io/userVolume"].as_str().unwrap()).unwrap();
    let mount: Value = serde_json::from_str(
        annotations["sidecar.istio.io/userVolumeMount"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        volume,
        json!([{"name": "keygate-wasm", "configMap": {"name": "keygate-wasm"}}])
    );
    assert_eq!(
        mount,
        json!([{"name": "keygate-wasm", "mountPath": "/opt/keygate", "readOnly": true}])
    );
    // No introspection: no container override, no Secret.
    assert!(patch["spec"]["template"].get("spec").is_none(), "{patch}");
    assert!(!out
        .join("istio/workload/secret-keygate-introspection.yaml")
        .exists());
    let text = read(&patch_file);
    assert!(
        text.contains(
            "kubectl create configmap keygate-wasm -n shop --from-file=keygate.wasm=target/wasm32-wasip1/release/keygate.wasm"
        ),
        "{text}"
    );
}

// Rule 4: scoped entries, pinned TLS, loopback warned about.
#[test]
fn service_entries_stay_in_their_namespace_and_tls_is_pinned() {
    // (key manager host, istio extra lines, expected sni, expected CA)
    let cases: Vec<(&str, Vec<&str>, Value, &str)> = vec![
        (
            "idp.example.com",
            vec![],
            json!("idp.example.com"),
            "/etc/ssl/certs/ca-certificates.crt",
        ),
        (
            "idp.example.com",
            vec!["ca_certificates: /etc/keygate/ca.pem"],
            json!("idp.example.com"),
            "/etc/keygate/ca.pem",
        ),
        // An IP literal: no SNI (TLS forbids it), the SAN is the address.
        (
            "203.0.113.7",
            vec![],
            Value::Null,
            "/etc/ssl/certs/ca-certificates.crt",
        ),
    ];
    for (host, extra, sni, ca) in cases {
        let mut istio = vec!["selector: {app: pets}", "image: r.example/keygate:1"];
        istio.extend(extra);
        let (out, result) = run(&declaration(&istio, host), &["--wasm", &wasm_arg()]);
        assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
        let files = schema_checked(&out.join("istio"));
        let entry = &of_kind(&files, "ServiceEntry")[0]["spec"];
        assert_eq!(entry["exportTo"], json!(["."]));
        assert_eq!(entry["hosts"], json!([host]));
        let rule = &of_kind(&files, "DestinationRule")[0]["spec"];
        assert_eq!(rule["exportTo"], json!(["."]));
        let tls = &rule["trafficPolicy"]["portLevelSettings"][0]["tls"];
        assert_eq!(tls["mode"], "SIMPLE");
        assert_eq!(tls["subjectAltNames"], json!([host]), "{host}");
        assert_eq!(tls["caCertificates"], ca, "{host}");
        assert_eq!(tls["sni"], sni, "{host}");
        assert!(!stderr(&result).contains("loopback"), "{}", stderr(&result));
    }

    let (_, result) = run(
        &declaration(
            &["selector: {app: pets}", "image: r.example/keygate:1"],
            "127.0.0.1:9443",
        ),
        &["--wasm", &wasm_arg()],
    );
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    assert!(
        stderr(&result).contains(
            "keygate: warning: istio: key manager idp: JWKS https://127.0.0.1:9443/jwks is on a loopback address"
        ),
        "{}",
        stderr(&result)
    );
    // A relative CA path is refused.
    let (_, result) = run(
        &declaration(
            &[
                "selector: {app: pets}",
                "image: r.example/keygate:1",
                "ca_certificates: ca.pem",
            ],
            "idp.example.com",
        ),
        &["--check"],
    );
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("line 5: istio.ca_certificates: `ca.pem` is not an absolute path"),
        "{}",
        stderr(&result)
    );
}

// Rule 5: the introspection secret reaches istio-proxy's environment, by name only.
#[test]
fn the_introspection_secret_comes_from_a_secret_into_istio_proxy() {
    let text = declaration(
        &[
            "selector: {app: pets}",
            "namespace: shop",
            "image: r.example/keygate:1",
        ],
        "idp.example.com",
    )
    .replace(
        "    audiences: [pets-api]\n",
        "    audiences: [pets-api]\n    introspection: {client_id: gw, client_secret_env: IDP_SECRET}\n",
    )
    .replace(
        "jwks_uri: \"https://idp.example.com/jwks\"}",
        "jwks_uri: \"https://idp.example.com/jwks\", introspection_endpoint: \"https://idp.example.com/introspect\"}",
    );
    let (out, result) = run(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let files = schema_checked(&out.join("istio"));
    let spec = &of_kind(&files, "WasmPlugin")[0]["spec"];
    assert_eq!(
        spec["vmConfig"]["env"],
        json!([{"name": "IDP_SECRET", "valueFrom": "HOST"}])
    );
    let secret_file = out.join("istio/workload/secret-keygate-introspection.yaml");
    let secret = yaml(&secret_file);
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "keygate-introspection");
    assert_eq!(secret["metadata"]["namespace"], "shop");
    assert_eq!(secret["stringData"], json!({"IDP_SECRET": ""}), "no value");
    assert!(read(&secret_file).contains(
        "kubectl create secret generic keygate-introspection -n shop --from-literal=IDP_SECRET=..."
    ));
    let patch = yaml(&out.join("istio/workload/deployment-patch.yaml"));
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"],
        json!([{"name": "istio-proxy", "image": "auto", "env": [
            {"name": "IDP_SECRET", "valueFrom": {"secretKeyRef": {
                "name": "keygate-introspection", "key": "IDP_SECRET"}}}]}])
    );
    // The Secret and the patch are not Istio resources: `kubectl apply -f istio/` skips them.
    assert!(files.iter().all(|f| !f.ends_with("workload")));
}

/// No `istio` block: no Istio manifests (the declaration is for a standalone Envoy).
#[test]
fn without_an_istio_block_no_istio_manifests_are_written() {
    let text = declaration(&["selector: {app: pets}"], "idp.example.com")
        .replace("istio:\n  selector: {app: pets}\n", "");
    assert!(!text.contains("istio"));
    let (out, result) = run(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    assert!(out.join("envoy.yaml").is_file());
    assert!(!out.join("istio").exists());
}

// Rule 6: the committed example is what `generate` writes.
#[test]
fn the_committed_istio_example_is_what_generate_writes() {
    let example = project_root().join("examples/istio");
    let committed = example.join("manifests");
    // The sha256 is the digest of the module built when the example was generated: pinned here,
    // so that the comparison is about everything else.
    let committed_plugin = committed.join("wasmplugin.yaml");
    let sha = committed_plugin
        .is_file()
        .then(|| {
            yaml(&committed_plugin)["spec"]["sha256"]
                .as_str()
                .map(str::to_string)
        })
        .flatten();
    let mut args = vec![
        "generate".to_string(),
        "--input".into(),
        example.join("keygate.yaml").to_string_lossy().into_owned(),
        "--out".into(),
    ];
    let dir = temp_dir("istio-example");
    args.push(dir.join("out").to_string_lossy().into_owned());
    args.extend(["--wasm".into(), wasm_arg()]);
    let bless = std::env::var_os("KEYGATE_BLESS_EXAMPLES").is_some();
    if let (Some(sha), false) = (&sha, bless) {
        args.extend(["--wasm-sha256".into(), sha.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = keygate(&args);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let fresh = dir.join("out/istio");
    if bless {
        let _ = std::fs::remove_dir_all(&committed);
        copy_tree(&fresh, &committed);
    }
    let want = tree(&fresh);
    let have = tree(&committed);
    let names = |t: &[(String, String)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&have),
        names(&want),
        "examples/istio/manifests is stale: rerun with KEYGATE_BLESS_EXAMPLES=1"
    );
    for ((name, have), (_, want)) in have.iter().zip(&want) {
        assert_eq!(
            have, want,
            "examples/istio/manifests/{name} is stale: rerun with KEYGATE_BLESS_EXAMPLES=1"
        );
    }
    schema_checked(&committed);
    // The walkthrough applies these, by these names.
    let readme = read(&example.join("README.md"));
    for (name, _) in &have {
        assert!(
            readme.contains(name.as_str()),
            "README.md does not mention {name}"
        );
    }
}

/// Every file under `dir`, as (relative path, contents), sorted.
fn tree(dir: &Path) -> Vec<(String, String)> {
    snapshot(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, String::from_utf8(bytes).unwrap())
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    for (name, text) in tree(from) {
        let path = to.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn an_upstream_path_is_left_to_the_istio_route_with_a_warning() {
    let text = declaration(
        &["selector: {app: pets}", "image: r.example/keygate:1"],
        "idp.example.com",
    )
    .replace(
        "    base_path: /pets/v1\n",
        "    base_path: /pets/v1\n    upstream: http://pets.shop.svc:8080/v2\n",
    );
    let (out, result) = run(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let err = stderr(&result);
    assert!(
        err.contains(
            "keygate.yaml:line 13: keygate: warning: istio: apis[0].upstream carries the path /v2"
        ),
        "{err}"
    );
    assert!(err.contains("rewrite: {uri: /v2}"), "{err}");
    // The WasmPlugin itself carries no routes: the plugin config is as without the path.
    let plugin = yaml(&out.join("istio/wasmplugin.yaml"));
    assert_eq!(
        plugin["spec"]["pluginConfig"]["apis"][0]["base_path"],
        "/pets/v1"
    );
}

// Backend JWTs: the gateway's public keys are published as a ConfigMap upstreams mount.
#[test]
fn the_backend_jwt_jwks_is_published_as_a_config_map() {
    let public = support::signers::public_jwk("p256", "unused");
    let (x, y) = (public["x"].as_str().unwrap(), public["y"].as_str().unwrap());
    let text = declaration(
        &[
            "selector: {app: pets}",
            "namespace: shop",
            "image: r.example/keygate:1",
        ],
        "idp.example.com",
    )
        .replace(
            "gateway: {environment: production}",
            &format!(
                "gateway: {{environment: production, backend_jwt: {{keys: [{{env: KG_BACKEND_KEY, x: \"{x}\", y: \"{y}\"}}]}}}}"
            ),
        )
        .replace(
            "    base_path: /pets/v1\n",
            "    base_path: /pets/v1\n    backend_jwt: {}\n",
        );
    let (out, result) = run(&text, &["--wasm", &wasm_arg()]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    // The Istio resources still pass Istio's schemas; the ConfigMap is not one of them.
    let files = schema_checked(&out.join("istio"));
    assert!(files
        .iter()
        .all(|f| !f.to_string_lossy().contains("configmap")));
    let file = out.join("istio/workload/configmap-keygate-backend-jwks.yaml");
    let map = yaml(&file);
    assert_eq!(map["apiVersion"], "v1");
    assert_eq!(map["kind"], "ConfigMap");
    assert_eq!(map["metadata"]["name"], "keygate-backend-jwks");
    assert_eq!(map["metadata"]["namespace"], "shop");
    let jwks: Value =
        serde_json::from_str(map["data"]["backend-jwks.json"].as_str().unwrap()).unwrap();
    // The same document the standalone gateway serves at /.well-known/keygate/jwks.json.
    let standalone: Value = serde_json::from_str(&read(&out.join("backend-jwks.json"))).unwrap();
    assert_eq!(jwks, standalone);
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!((key["x"].as_str(), key["y"].as_str()), (Some(x), Some(y)));
    assert!(key.get("d").is_none(), "public keys only");
    let comment = read(&file);
    assert!(
        comment.contains("kubectl apply -n shop -f configmap-keygate-backend-jwks.yaml"),
        "{comment}"
    );
    assert!(
        comment.contains("/etc/keygate/backend-jwks.json"),
        "{comment}"
    );
    // The signing key's variable reaches the VM by name, never its value.
    let spec = &of_kind(&files, "WasmPlugin")[0]["spec"];
    assert!(
        spec["vmConfig"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "KG_BACKEND_KEY", "valueFrom": "HOST"})),
        "{spec}"
    );

    // docs/backend-jwt.md names the file, the ConfigMap and its key as written here.
    let docs = read(&project_root().join("docs/backend-jwt.md"));
    use keygate::cli::render::istio::{BACKEND_JWKS_CONFIG_MAP, BACKEND_JWKS_FILE};
    for literal in [
        format!("`istio/workload/configmap-{BACKEND_JWKS_CONFIG_MAP}.yaml`"),
        format!("name `{BACKEND_JWKS_CONFIG_MAP}`, one key `{BACKEND_JWKS_FILE}`"),
        format!("configMap: {{name: {BACKEND_JWKS_CONFIG_MAP}}}"),
    ] {
        assert!(
            docs.contains(&literal),
            "docs/backend-jwt.md lacks {literal}"
        );
    }

    // Without backend_jwt: no ConfigMap.
    let (out, _) = generated(
        &["selector: {app: pets}", "image: r.example/keygate:1"],
        &[],
    );
    assert!(!out
        .join("istio/workload/configmap-keygate-backend-jwks.yaml")
        .exists());
}
