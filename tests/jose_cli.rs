#![cfg(not(target_arch = "wasm32"))]
//! `keygate check-token` contract: one JSON object on stdout; exit 0 valid, 1 invalid, 2 usage/I/O.
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
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::signers::*;

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
            "exactly one line on stdout: {:?}",
            self.stdout
        );
        serde_json::from_str(lines[0]).unwrap()
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("check-token")
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

fn jwks_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "keygate-jose-cli-{}-{name}.json",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

const AT: &str = "1700000000";

#[test]
fn valid_token_prints_claims_and_exits_zero() {
    let jwks = jwks_file("valid", &jwks(&all_keys()));
    let t = token(
        &json!({"alg": "RS256", "kid": "k-rsa"}),
        &claims(),
        "rsa2048",
    );
    let r = run(
        &[
            "--jwks",
            jwks.to_str().unwrap(),
            "--at",
            AT,
            "--issuer",
            "https://idp.example",
            "--audience",
            "x",
            "--audience",
            "api://pets",
            &t,
        ],
        None,
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v = r.verdict();
    assert_eq!(v["valid"], true);
    assert_eq!(v["reason"], "valid");
    assert_eq!(v["claims"]["client_id"], "app-1");
    assert!(!r.stderr.contains(&t));
}

#[test]
fn at_now_judges_at_this_machines_clock() {
    let jwks = jwks_file("now", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    let with_exp = |exp: f64| {
        let mut c = claims();
        c["iat"] = json!(now - 10.0);
        c["nbf"] = json!(now - 10.0);
        c["exp"] = json!(exp);
        token(&json!({"alg": "ES256", "kid": "k-p256"}), &c, "p256")
    };
    let r = run(&["--jwks", j, "--at", "now", &with_exp(now + 600.0)], None);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.verdict()["reason"], "valid");
    let r = run(&["--jwks", j, "--at", "now", &with_exp(now - 5.0)], None);
    assert_eq!(r.verdict()["reason"], "token_expired", "{}", r.stderr);
}

#[test]
fn invalid_tokens_exit_one_with_the_reason() {
    let jwks = jwks_file("invalid", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    let t = token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--at", "1700000300"], "token_expired"),
        (vec!["--at", "1700000299.5"], "valid"),
        (vec!["--at", "1699999989.9"], "token_not_yet_valid"),
        (
            vec!["--at", AT, "--issuer", "https://other"],
            "issuer_mismatch",
        ),
        (
            vec!["--at", AT, "--audience", "api://cats"],
            "audience_mismatch",
        ),
    ];
    for (extra, reason) in cases {
        let mut args = vec!["--jwks", j];
        args.extend(extra.iter().copied());
        args.push(&t);
        let r = run(&args, None);
        let v = r.verdict();
        assert_eq!(v["reason"], reason, "{extra:?}: {}", r.stderr);
        if reason == "valid" {
            assert_eq!(r.status, 0);
        } else {
            assert_eq!(r.status, 1);
            assert_eq!(v["valid"], false);
            assert!(v.get("claims").is_none(), "no claims for an invalid token");
        }
    }
    let r = run(&["--jwks", j, "--at", AT, "not.a.token"], None);
    assert_eq!(
        (r.status, r.verdict()["reason"].as_str().unwrap()),
        (1, "malformed_token")
    );
}

#[test]
fn missing_exp_is_refused_unless_allowed() {
    let jwks = jwks_file("exp", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let t = token(&json!({"alg": "EdDSA"}), &c, "ed25519");
    assert_eq!(
        run(&["--jwks", j, "--at", AT, &t], None).verdict()["reason"],
        "missing_exp"
    );
    let r = run(&["--jwks", j, "--at", AT, "--allow-missing-exp", &t], None);
    assert_eq!((r.status, r.verdict()["valid"].clone()), (0, json!(true)));
}

/// The filter's algorithm rule for a key manager without an `algorithms` list.
fn filter_algorithms() -> Value {
    json!(keygate::config::SUPPORTED_ALGORITHMS)
}

#[test]
fn token_from_stdin_loses_only_one_trailing_line_break() {
    let jwks = jwks_file("stdin", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    let t = token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256");
    for (input, reason) in [
        (format!("{t}\n"), "valid"),
        (format!("{t}\r\n"), "valid"),
        (t.clone(), "valid"),
        (format!("{t}\n\n"), "malformed_token"),
        (format!("{t}\r"), "malformed_token"),
        (format!("  {t}\n"), "malformed_token"),
        (format!("{t} \n"), "malformed_token"),
        (format!("\t{t}"), "malformed_token"),
    ] {
        let r = run(&["--jwks", j, "--at", AT, "-"], Some(&input));
        assert_eq!(r.verdict()["reason"], reason, "{input:?}: {}", r.stderr);
        assert_eq!(r.status, if reason == "valid" { 0 } else { 1 }, "{input:?}");
    }
    // An argument is taken as given: whitespace in it is not trimmed either.
    let r = run(&["--jwks", j, "--at", AT, &format!(" {t}")], None);
    assert_eq!(
        (r.status, r.verdict()["reason"].clone()),
        (1, json!("malformed_token"))
    );
}

#[test]
fn hmac_is_refused_as_the_filter_refuses_it_and_the_algorithms_are_stated() {
    // A JWKS with an oct key and a token signed with it: genuine, but the filter never accepts HMAC
    // from a key manager, so check-token must not call it valid.
    let jwks = jwks_file("hmac", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    let t = token(&json!({"alg": "HS256", "kid": "k-oct"}), &claims(), "oct64");
    let r = run(&["--jwks", j, "--at", AT, &t], None);
    assert_eq!(r.status, 1, "{}", r.stderr);
    let v = r.verdict();
    assert_eq!(v["reason"], "alg_not_allowed");
    assert_eq!(v["algorithms"], filter_algorithms());
    assert!(!v["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("HS")));
    // Every asymmetric algorithm the filter accepts is accepted here too.
    for (alg, key, kid) in ALG_KEYS {
        if alg.starts_with("HS") {
            continue;
        }
        let t = token(&json!({"alg": alg, "kid": kid}), &claims(), key);
        let r = run(&["--jwks", j, "--at", AT, &t], None);
        assert_eq!(
            (r.status, r.verdict()["reason"].clone()),
            (0, json!("valid")),
            "{alg}"
        );
        assert_eq!(r.verdict()["algorithms"], filter_algorithms());
    }
}

#[test]
fn unusable_jwks_is_invalid_with_the_keys_code() {
    let t = token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256");
    for (bytes, reason) in [
        (&b"{nope"[..], "jwks_not_json"),
        (&br#"{"x":1}"#[..], "jwks_no_keys"),
        (
            &br#"{"keys":[{"kty":"EC","crv":"P-192"}]}"#[..],
            "jwks_no_usable_key",
        ),
    ] {
        let jwks = jwks_file(reason, bytes);
        let r = run(&["--jwks", jwks.to_str().unwrap(), "--at", AT, &t], None);
        assert_eq!(r.status, 1);
        assert_eq!(
            r.verdict(),
            json!({"valid": false, "reason": reason, "algorithms": filter_algorithms()})
        );
    }
}

#[test]
fn usage_and_io_errors_exit_two() {
    let jwks = jwks_file("usage", &jwks(&all_keys()));
    let j = jwks.to_str().unwrap();
    for args in [
        vec!["--jwks", j, "tok"],                      // no --at
        vec!["--at", AT, "tok"],                       // no --jwks
        vec!["--jwks", j, "--at", AT],                 // no token
        vec!["--jwks", j, "--at", "yesterday", "tok"], // bad --at
        vec!["--jwks", j, "--at", "-5", "tok"],
        vec!["--jwks", j, "--at", "1e9", "tok"],
        vec!["--jwks", j, "--at", AT, "--bogus", "tok"],
        vec![
            "--jwks",
            "/nonexistent/keygate/jwks.json",
            "--at",
            AT,
            "tok",
        ],
    ] {
        let r = run(&args, None);
        assert_eq!(r.status, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}");
    }
}
