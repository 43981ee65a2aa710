//! `keygate explain`: the filter's own decision on one request, offline, as one JSON object;
//! exit 0 forwarded, 1 refused, 2 usage/I/O/configuration. Tokens are signed here with the
//! committed test keys (tests/support/signers.rs), independently of keygate's verifier.
#![cfg(not(target_arch = "wasm32"))]
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::signers::*;

const DECLARATION: &str = "\
gateway:
  environment: production
key_managers:
  - name: idp
    well_known_url: https://idp.example/.well-known/openid-configuration
    audiences: [api://pets]
    discovery: {issuer: https://idp.example, jwks_uri: https://idp.example/keys}
apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    resources:
      - {method: GET, path: \"/pets/{id}\", scopes: [pets:read]}
      - {method: POST, path: /pets, scopes: [pets:write]}
      - {method: GET, path: /health, public: true}
  - name: cats
    base_path: /cats
    resources:
      - {method: GET, path: /cats}
applications:
  - name: shop
    client_ids:
      - {key_manager: idp, client_id: app-1}
    subscriptions:
      - {api: pets}
";

/// A second key manager, so `--jwks` must name which one a file is for.
const SECOND_KM: &str = "  - name: other
    well_known_url: https://other.example/.well-known/openid-configuration
    discovery: {issuer: https://other.example, jwks_uri: https://other.example/keys}
apis:";

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn verdict(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one line on stdout: {:?} {}",
            self.stdout,
            self.stderr
        );
        serde_json::from_str(lines[0]).unwrap()
    }
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keygate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(name: &str, contents: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("explain")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Claims of a token `shop` may use: client id app-1, audience api://pets, scope `scope`.
fn shop_claims(scope: &str) -> Value {
    let mut c = claims();
    c["scope"] = json!(scope);
    c
}

fn es256(claims: &Value) -> String {
    token(&json!({"alg": "ES256", "kid": "k-p256"}), claims, "p256")
}

struct Setup {
    input: PathBuf,
    jwks: PathBuf,
}

fn setup(name: &str) -> Setup {
    Setup {
        input: write(&format!("{name}.yaml"), DECLARATION.as_bytes()),
        jwks: write(&format!("{name}-jwks.json"), &jwks(&all_keys())),
    }
}

const AT: &str = "1700000000";

/// `explain --input … --jwks … --at AT --method M --path P [TOKEN]`.
fn ask(setup: &Setup, method: &str, path: &str, token: Option<&str>) -> Run {
    let mut args = vec![
        "--input",
        s(&setup.input),
        "--jwks",
        s(&setup.jwks),
        "--at",
        AT,
        "--method",
        method,
        "--path",
        path,
    ];
    args.extend(token);
    run(&args, None)
}

#[test]
fn an_allowed_request_shows_the_identity_and_the_route() {
    let setup = setup("allowed");
    let t = es256(&shop_claims("pets:read other"));
    let r = ask(&setup, "GET", "/pets/v1/pets/7", Some(&t));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v = r.verdict();
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["status"], 200);
    assert_eq!(v["code"], "allowed");
    assert_eq!(v["identity"]["application"], "shop");
    assert_eq!(v["identity"]["client_id"], "app-1");
    assert_eq!(v["identity"]["subject"], "user-1");
    assert_eq!(v["identity"]["scopes"], json!(["pets:read", "other"]));
    assert_eq!(v["headers"]["x-keygate-application"], "shop");
    assert_eq!(v["headers"]["x-keygate-key-manager"], "idp");
    assert_eq!(
        v["route"],
        json!({"api": "pets", "version": "v1", "base_path": "/pets/v1",
               "resource": "GET /pets/{id}", "public": false})
    );
    assert!(
        !r.stdout.contains(&t) && !r.stderr.contains(&t),
        "never echo the token"
    );
}

#[test]
fn at_now_uses_this_machines_clock() {
    let setup = setup("now");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    let mut c = shop_claims("pets:read");
    c["iat"] = json!(now - 10.0);
    c["nbf"] = json!(now - 10.0);
    c["exp"] = json!(now + 600.0);
    let t = es256(&c);
    let r = run(
        &[
            "--input",
            s(&setup.input),
            "--jwks",
            s(&setup.jwks),
            "--at",
            "now",
            "--path",
            "/pets/v1/pets/7",
            &t,
        ],
        None,
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.verdict()["decision"], "allowed", "{}", r.stdout);
}

#[test]
fn refusals_carry_the_filters_status_code_and_reply_headers() {
    let setup = setup("denials");
    let read = es256(&shop_claims("pets:read"));
    let mut foreign = shop_claims("pets:read");
    foreign["client_id"] = json!("stranger");
    let mut wrong_aud = shop_claims("pets:read");
    wrong_aud["aud"] = json!("api://cats");
    let hmac = token(
        &json!({"alg": "HS256", "kid": "k-oct"}),
        &shop_claims("pets:read"),
        "oct64",
    );
    let cases: Vec<(&str, &str, Option<String>, u32, &str)> = vec![
        (
            "POST",
            "/pets/v1/pets",
            Some(read.clone()),
            403,
            "insufficient_scope",
        ),
        (
            "GET",
            "/cats/cats",
            Some(read.clone()),
            403,
            "not_subscribed",
        ),
        (
            "GET",
            "/pets/v1/pets/7",
            Some(es256(&foreign)),
            403,
            "application_not_found",
        ),
        (
            "GET",
            "/pets/v1/pets/7",
            Some(es256(&wrong_aud)),
            401,
            "audience_mismatch",
        ),
        ("GET", "/pets/v1/pets/7", Some(hmac), 401, "alg_not_allowed"),
        (
            "GET",
            "/pets/v1/pets/7",
            Some("not-a-token".into()),
            401,
            "malformed_token",
        ),
        ("GET", "/pets/v1/pets/7", None, 401, "missing_token"),
        (
            "DELETE",
            "/pets/v1/pets/7",
            Some(read.clone()),
            405,
            "method_not_allowed",
        ),
        ("GET", "/dogs", Some(read.clone()), 404, "no_api"),
        (
            "GET",
            "/pets/v1/pets/%2e%2e/x",
            Some(read),
            400,
            "path_not_canonical",
        ),
    ];
    for (method, path, token, status, code) in cases {
        let r = ask(&setup, method, path, token.as_deref());
        assert_eq!(r.status, 1, "{method} {path}: {}", r.stderr);
        let v = r.verdict();
        assert_eq!(
            (v["status"].as_u64(), v["code"].as_str()),
            (Some(status.into()), Some(code)),
            "{method} {path}: {v}"
        );
        assert_eq!(v["decision"], "refused");
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{v}"
        );
        assert_eq!(v["headers"]["content-type"], "application/json");
        if status == 401 {
            let challenge = v["headers"]["www-authenticate"].as_str().unwrap();
            assert!(
                challenge.starts_with("Bearer realm=\"keygate\""),
                "{challenge}"
            );
        }
        if code == "insufficient_scope" {
            let challenge = v["headers"]["www-authenticate"].as_str().unwrap();
            assert!(challenge.contains("scope=\"pets:write\""), "{challenge}");
            assert_eq!(v["route"]["resource"], "POST /pets");
        }
        if code == "method_not_allowed" {
            // HEAD is served by a GET resource, so it is allowed wherever GET is.
            assert_eq!(v["headers"]["allow"], "GET, HEAD");
            assert_eq!(v["route"], Value::Null);
        }
        if code == "not_subscribed" {
            assert_eq!(v["route"]["api"], "cats");
        }
    }
}

#[test]
fn public_resources_and_the_policys_leeway() {
    let setup = setup("public");
    let r = ask(&setup, "GET", "/pets/v1/health", None);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v = r.verdict();
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("public"), Some(200))
    );
    assert_eq!(v["route"]["public"], true);

    // exp is NOW+300; the policy's default leeway (60 s) applies, as in the filter.
    let t = es256(&shop_claims("pets:read"));
    for (at, status, code) in [
        ("1700000330", 0, "allowed"),
        ("1700000361", 1, "token_expired"),
    ] {
        let r = run(
            &[
                "--input",
                s(&setup.input),
                "--jwks",
                s(&setup.jwks),
                "--at",
                at,
                "--path",
                "/pets/v1/pets/1",
                &t,
            ],
            None,
        );
        assert_eq!(
            (r.status, r.verdict()["code"].clone()),
            (status, json!(code)),
            "at {at}"
        );
    }
}

#[test]
fn token_from_stdin_loses_only_one_newline() {
    let setup = setup("stdin");
    let t = es256(&shop_claims("pets:read"));
    let args = [
        "--input",
        s(&setup.input),
        "--jwks",
        s(&setup.jwks),
        "--at",
        AT,
        "--path",
        "/pets/v1/pets/1",
        "-",
    ];
    let r = run(&args, Some(&format!("{t}\n")));
    assert_eq!(
        (r.status, r.verdict()["code"].clone()),
        (0, json!("allowed")),
        "{}",
        r.stderr
    );
    // A second newline stays in the token, so the header the filter sees is not one token68.
    let r = run(&args, Some(&format!("{t}\n\n")));
    assert_eq!(r.status, 1);
    assert_eq!(r.verdict()["code"], "malformed_authorization");
}

#[test]
fn a_plugin_config_is_explained_like_its_declaration() {
    let setup = setup("plugin");
    let out = dir().join("plugin-out");
    let generated = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["generate", "--input", s(&setup.input), "--out", s(&out)])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let plugin = out.join("plugin-config.json");
    let t = es256(&shop_claims("pets:read"));
    for (method, path, exit) in [("GET", "/pets/v1/pets/1", 0), ("POST", "/pets/v1/pets", 1)] {
        let from_plugin = run(
            &[
                "--plugin-config",
                s(&plugin),
                "--jwks",
                &format!("idp={}", s(&setup.jwks)),
                "--at",
                AT,
                "--method",
                method,
                "--path",
                path,
                &t,
            ],
            None,
        );
        let from_declaration = ask(&setup, method, path, Some(&t));
        assert_eq!(from_plugin.status, exit, "{}", from_plugin.stderr);
        assert_eq!(from_plugin.verdict(), from_declaration.verdict());
    }
}

#[test]
fn usage_io_and_configuration_errors_exit_two() {
    let setup = setup("usage");
    let t = es256(&shop_claims("pets:read"));
    let two_kms = write(
        "two.yaml",
        DECLARATION.replacen("apis:", SECOND_KM, 1).as_bytes(),
    );
    let refused = write(
        "refused-declaration.yaml",
        DECLARATION
            .replace("path: /cats}", "path: \"/c|ats\"}")
            .as_bytes(),
    );
    let bad_jwks = write("bad-jwks.json", b"{\"keys\": 1}");
    let input = s(&setup.input);
    let jwks = s(&setup.jwks);
    let named = format!("idp={jwks}");
    let unknown = format!("nobody={jwks}");
    let two = s(&two_kms);
    let refused = s(&refused);
    let bad_jwks = s(&bad_jwks);
    let x = "/x";
    let p1 = "/pets/v1/pets/1";
    // (arguments, what stderr must say)
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--jwks", jwks, "--at", AT, "--path", p1, &t],
            "required arguments were not provided:\n  <--input <FILE>|--plugin-config <FILE>>".into(),
        ),
        (
            vec!["--input", input, "--jwks", jwks, "--path", p1, &t],
            "required arguments were not provided:\n  --at <UNIX_SECONDS>".into(),
        ),
        (
            vec!["--input", input, "--jwks", jwks, "--at", AT, &t],
            "required arguments were not provided:\n  --path <PATH>".into(),
        ),
        (
            vec!["--input", input, "--at", AT, "--path", p1, &t],
            "the token is from key manager idp: give its keys with --jwks idp=FILE".into(),
        ),
        // An unknown key manager name where the name matters (two key managers): refused as such.
        (
            vec!["--input", two, "--jwks", &unknown, "--at", AT, "--path", x, &t],
            format!("--jwks {unknown}: name the key manager as NAME=FILE (one of: idp, other)"),
        ),
        // With one key manager `--jwks FILE` needs no name, so `nobody=FILE` is a file name
        // (README "keygate explain"), here one that does not exist.
        (
            vec!["--input", input, "--jwks", &unknown, "--at", AT, "--path", x, &t],
            format!("cannot read the JWKS of idp ({unknown}): No such file"),
        ),
        (
            vec!["--input", input, "--jwks", jwks, "--jwks", &named, "--at", AT, "--path", x, &t],
            "--jwks: idp is given twice".into(),
        ),
        (
            vec!["--input", input, "--jwks", bad_jwks, "--at", AT, "--path", x, &t],
            format!("the JWKS of idp ({bad_jwks}) is unusable: JWKS is not an object with a \"keys\" array"),
        ),
        (
            vec!["--input", input, "--jwks", "/nonexistent/jwks.json", "--at", AT, "--path", x, &t],
            "cannot read the JWKS of idp (/nonexistent/jwks.json): No such file".into(),
        ),
        (
            vec!["--input", "/nonexistent/keygate.yaml", "--jwks", jwks, "--at", AT, "--path", x],
            // The unreadable file named once, not as a refused configuration.
            "keygate: /nonexistent/keygate.yaml: No such file".into(),
        ),
        (
            vec!["--input", refused, "--jwks", jwks, "--at", AT, "--path", x],
            format!("{refused}: configuration refused:\nline 19: apis[1].resources[0].path"),
        ),
        (
            vec!["--input", two, "--jwks", jwks, "--at", AT, "--path", x, &t],
            format!("--jwks {jwks}: name the key manager as NAME=FILE (one of: idp, other)"),
        ),
    ];
    for (args, message) in cases {
        let r = run(&args, None);
        assert_eq!(r.status, 2, "{args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}");
        assert!(
            r.stderr.contains(&message),
            "{args:?}: expected {message:?} in:\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains(&t), "never echo the token");
    }
    // The refused declaration names the field and line, as generate does.
    let r = run(
        &["--input", refused, "--jwks", jwks, "--at", AT, "--path", x],
        None,
    );
    assert!(
        r.stderr.contains("line 19: apis[1].resources[0].path"),
        "{}",
        r.stderr
    );
    // With two key managers a named file works.
    let r = run(
        &[
            "--input",
            two,
            "--jwks",
            &named,
            "--at",
            AT,
            "--path",
            "/pets/v1/pets/1",
            &t,
        ],
        None,
    );
    assert_eq!(
        (r.status, r.verdict()["code"].clone()),
        (0, json!("allowed")),
        "{}",
        r.stderr
    );
}

#[test]
fn an_opaque_token_cannot_be_explained_offline() {
    let text = DECLARATION.replace(
        "    discovery: {issuer: https://idp.example, jwks_uri: https://idp.example/keys}\n",
        "    introspection: {client_id: gateway, client_secret_env: IDP_SECRET}\n    discovery: {issuer: https://idp.example, jwks_uri: https://idp.example/keys, introspection_endpoint: https://idp.example/introspect}\n",
    );
    let setup = Setup {
        input: write("opaque.yaml", text.as_bytes()),
        jwks: write("opaque-jwks.json", &jwks(&all_keys())),
    };
    let r = ask(
        &setup,
        "GET",
        "/pets/v1/pets/7",
        Some("Lx8wOE7k1Ps0qHUdzy2Gf3CGqfoB6Nzm4cJmF9Mr2hx"),
    );
    assert_eq!(r.status, 2, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("opaque"), "{}", r.stderr);
    assert!(!r.stderr.contains("Lx8wOE7k"), "the token is not echoed");
    // A JWT of the same key manager is still explained.
    let t = es256(&shop_claims("pets:read"));
    assert_eq!(ask(&setup, "GET", "/pets/v1/pets/7", Some(&t)).status, 0);
}

/// A self-signed client certificate made here: (PEM, DER).
fn client_certificate(name: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

/// base64url(SHA-256(DER)), the token's `cnf.x5t#S256` (RFC 8705 §3.1), and its hex.
fn thumbprint(der: &[u8]) -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(der);
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    (
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        hex,
    )
}

#[test]
fn a_certificate_bound_token_is_explained_with_the_client_certificate() {
    let setup = setup("cert");
    let (pem, der) = client_certificate("shop client");
    let (other_pem, _) = client_certificate("someone else");
    let (x5t, hex) = thumbprint(&der);
    let mut claims = shop_claims("pets:read");
    claims["cnf"] = json!({ "x5t#S256": x5t });
    let t = es256(&claims);
    let pem_file = write(
        "client.pem",
        format!("{pem}\n(a chain may follow)\n").as_bytes(),
    );
    let der_file = write("client.der", &der);
    let other_file = write("other.pem", other_pem.as_bytes());
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "--input",
            s(&setup.input),
            "--jwks",
            s(&setup.jwks),
            "--at",
            AT,
            "--path",
            "/pets/v1/pets/7",
        ];
        args.extend_from_slice(extra);
        args.push(&t);
        run(&args, None)
    };

    // The certificate the token names, as PEM, DER or Envoy's hex digest: forwarded.
    for flags in [
        vec!["--client-cert", s(&pem_file)],
        vec!["--client-cert", s(&der_file)],
        vec!["--client-cert-sha256", &hex],
        vec!["--client-cert-sha256", &hex.to_uppercase()],
    ] {
        let r = explain(&flags);
        assert_eq!(r.status, 0, "{flags:?}: {} {}", r.stdout, r.stderr);
        let v = r.verdict();
        assert_eq!(v["code"], "allowed");
        assert_eq!(v["client_certificate"]["x5t#S256"], json!(x5t));
        assert_eq!(v["client_certificate"]["sha256"], json!(hex));
    }

    // Another certificate, or none: the filter's 401s.
    for (flags, code) in [
        (
            vec!["--client-cert", s(&other_file)],
            "client_certificate_mismatch",
        ),
        (vec![], "client_certificate_missing"),
    ] {
        let r = explain(&flags);
        assert_eq!(r.status, 1, "{flags:?}: {} {}", r.stdout, r.stderr);
        let v = r.verdict();
        assert_eq!(v["status"], 401);
        assert_eq!(v["code"], code);
        assert_eq!(v["error"], "invalid_token");
        assert!(
            v["headers"]["www-authenticate"]
                .as_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{v}"
        );
    }

    // Inputs that are no certificate: usage errors, nothing decided.
    let garbage = write("garbage.pem", b"not a certificate");
    for (flags, said) in [
        (vec!["--client-cert", s(&garbage)], "no certificate in it"),
        (
            vec!["--client-cert", "/nonexistent/client.pem"],
            "--client-cert /nonexistent/client.pem",
        ),
        (vec!["--client-cert-sha256", "abcd"], "64 hex digits"),
        (
            vec!["--client-cert", s(&pem_file), "--client-cert-sha256", &hex],
            "cannot be used with",
        ),
    ] {
        let r = explain(&flags);
        assert_eq!(r.status, 2, "{flags:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
        assert!(r.stderr.contains(said), "{flags:?}: {}", r.stderr);
    }

    // An API that requires bound tokens refuses an unbound one even with a certificate.
    let required = write(
        "cert-required.yaml",
        DECLARATION
            .replacen(
                "    base_path: /pets/v1\n",
                "    base_path: /pets/v1\n    mtls_bound_tokens: required\n",
                1,
            )
            .as_bytes(),
    );
    let unbound = es256(&shop_claims("pets:read"));
    let r = run(
        &[
            "--input",
            s(&required),
            "--jwks",
            s(&setup.jwks),
            "--at",
            AT,
            "--path",
            "/pets/v1/pets/7",
            "--client-cert",
            s(&pem_file),
            &unbound,
        ],
        None,
    );
    assert_eq!(r.status, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.verdict()["code"], "token_not_certificate_bound");
}
