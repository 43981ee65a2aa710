//! Declaration errors: each names the field and the line it is on.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use keygate::cli::declaration::validate::{parse, parse_with, DeclarationError};
use keygate::cli::generate::{self, GenerateError, Loaded};
use support::canned::*;

/// A valid declaration; tests break one thing at a time. Line numbers matter below. Discovery is
/// inline, so nothing is fetched.
const BASE: &str = "\
gateway:
  environment: production
key_managers:
  - name: idp
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    provider: keycloak
    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}
  - name: other
    well_known_url: https://other.example.com/.well-known/openid-configuration
    discovery: {issuer: https://other.example.com, jwks_uri: https://other.example.com/keys}
apis:
  - name: pets
    base_path: /pets/v1
    resources:
      - {method: GET, path: /pets, scopes: [pets:read]}
      - {method: GET, path: \"/pets/{id}\", scopes: [pets:read]}
applications:
  - name: shop
    client_ids:
      - {key_manager: idp, client_id: abc}
    subscriptions:
      - {api: pets}
  - name: kiosk
    client_ids:
      - {key_manager: other, client_id: abc}
    subscriptions:
      - {api: pets}
";

/// What `generate --check` does in process: CLI checks, discovery, the filter's compiler.
fn check(text: &str) -> Result<Loaded, Vec<DeclarationError>> {
    match generate::resolve(text, false).and_then(generate::compile) {
        Ok(loaded) => Ok(loaded),
        Err(GenerateError::Declaration { errors }) => Err(errors),
        Err(other) => panic!("not a declaration error: {other}"),
    }
}

fn errors(text: &str) -> Vec<DeclarationError> {
    check(text).expect_err("declaration should be refused")
}

fn one_error(text: &str) -> DeclarationError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn the_base_declaration_is_valid() {
    let loaded = check(BASE).unwrap();
    let decl = &loaded.declaration;
    assert_eq!(decl.applications.len(), 2);
    // The same client id under two different key managers is fine.
    assert_eq!(decl.applications[1].client_ids[0].client_id.value, "abc");
    assert_eq!(loaded.policy.key_managers().len(), 2);
}

#[test]
fn unknown_key_manager_in_an_application() {
    let err = one_error(&BASE.replace("{key_manager: other,", "{key_manager: nobody,"));
    assert_eq!(err.code(), "unknown_key_manager");
    assert_eq!(err.line(), 25);
    assert_eq!(err.field(), "applications[1].client_ids[0].key_manager");
    let text = err.to_string();
    assert!(
        text.starts_with("line 25: applications[1].client_ids[0].key_manager: ")
            && text.contains("nobody"),
        "{text}"
    );
}

#[test]
fn duplicate_client_id_names_both_applications() {
    let err = one_error(&BASE.replace(
        "{key_manager: other, client_id: abc}",
        "{key_manager: idp, client_id: abc}",
    ));
    assert_eq!(err.code(), "duplicate_client_id");
    assert_eq!(err.line(), 25);
    let text = err.to_string();
    assert!(
        text.contains("applications[1].client_ids[0].client_id"),
        "{text}"
    );
    assert!(
        text.contains("\"shop\"") && text.ends_with("(line 20)"),
        "{text}"
    );
}

#[test]
fn unknown_api_in_a_subscription() {
    let text = BASE.replacen(
        "      - {api: pets}\n  - name: kiosk",
        "      - {api: cats}\n  - name: kiosk",
        1,
    );
    let err = one_error(&text);
    assert_eq!(err.code(), "unknown_api");
    assert_eq!(err.line(), 22);
    assert_eq!(err.field(), "applications[0].subscriptions[0].api");
}

#[test]
fn path_templates_follow_the_filters_rules() {
    for (bad, why) in [
        ("/pets/{id", "whole segment"),
        ("pets", "start with '/'"),
        ("/a//b", "empty segment"),
        ("/*/x", "last segment"),
        ("/a|b", "literal segment may hold only"),
        ("/caf\u{e9}", "literal segment may hold only"),
        ("/pets/{}", "parameter name"),
    ] {
        let err = one_error(&BASE.replace("\"/pets/{id}\"", &format!("\"{bad}\"")));
        assert_eq!(err.code(), "invalid", "{bad}");
        assert_eq!(err.line(), 16, "{bad}");
        assert_eq!(err.field(), "apis[0].resources[1].path", "{bad}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
}

#[test]
fn fields_without_a_line_of_their_own_take_their_items_line() {
    let err = one_error(&BASE.replacen("scopes: [pets:read]", "scopes: [pets read]", 1));
    assert_eq!(
        (err.code(), err.line(), err.field()),
        ("invalid", 15, "apis[0].resources[0].scopes[0]")
    );
    let err = one_error(&BASE.replace(
        "path: /pets, scopes: [pets:read]",
        "path: /pets, groups: [\"\"]",
    ));
    assert_eq!(
        (err.code(), err.line(), err.field()),
        ("missing", 15, "apis[0].resources[0].groups[0]")
    );
    let err = one_error(&BASE.replace(
        "    provider: keycloak\n",
        "    provider: keycloak\n    algorithms: [HS256]\n",
    ));
    assert_eq!(
        (err.code(), err.line(), err.field()),
        ("unsupported_algorithm", 4, "key_managers[0].algorithms[0]")
    );
    // Settings have no line: the problem is reported with its path only, after the others.
    let text = format!("{BASE}settings: {{leeway_seconds: 9999}}\n").replace(
        "{api: pets}\n  - name: kiosk",
        "{api: cats}\n  - name: kiosk",
    );
    let errs = errors(&text);
    let lines: Vec<u64> = errs.iter().map(DeclarationError::line).collect();
    assert_eq!(lines, [22, 0]);
    assert!(
        errs[1]
            .to_string()
            .starts_with("settings.leeway_seconds: 9999"),
        "{}",
        errs[1]
    );
}

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let err = one_error(&BASE.replace(
        "    base_path: /pets/v1\n",
        "    base_path: /pets/v1\n    basepath: /x\n",
    ));
    assert_eq!(err.code(), "syntax");
    assert_eq!(err.line(), 14);
    assert!(err.to_string().contains("basepath"), "{err}");

    let err = one_error(&BASE.replace(
        "  environment: production\n",
        "  environment: production\n  enviroment: x\n",
    ));
    assert_eq!(err.line(), 3);
}

#[test]
fn duplicate_names_point_at_the_first_declaration() {
    let err = one_error(&BASE.replace("  - name: kiosk", "  - name: shop"));
    assert_eq!(err.code(), "duplicate_name");
    assert_eq!(err.line(), 23);
    let text = err.to_string();
    assert!(
        text.contains("applications[1].name") && text.ends_with("(line 18)"),
        "{text}"
    );

    // A duplicated key manager name is reported on its second declaration.
    let errs = errors(&BASE.replace("  - name: other", "  - name: idp"));
    assert!(
        errs.iter()
            .any(|e| e.code() == "duplicate_name" && e.line() == 8),
        "{errs:?}"
    );
}

#[test]
fn unknown_provider_and_bad_values() {
    let err = one_error(&BASE.replace("provider: keycloak", "provider: cognito"));
    assert_eq!(err.code(), "invalid_value");
    assert_eq!(err.line(), 6);
    assert!(
        err.to_string().contains("key_managers[0].provider")
            && err.to_string().contains("entra-v2")
    );

    let err = one_error(&BASE.replace(
        "  environment: production\n",
        "  environment: production\n  listen: localhost:80\n",
    ));
    assert!(
        err.to_string().contains("gateway.listen") && err.line() == 3,
        "{err}"
    );
}

#[test]
fn an_upstream_may_carry_a_plain_path_but_no_query() {
    let with = |upstream: &str| {
        BASE.replace(
            "    base_path: /pets/v1\n",
            &format!("    base_path: /pets/v1\n    upstream: \"{upstream}\"\n"),
        )
    };
    for ok in [
        "http://127.0.0.1:3000",
        "http://127.0.0.1:3000/",
        "http://127.0.0.1:3000/v2",
        "https://api.example.com/api/v2/",
    ] {
        let loaded = check(&with(ok)).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        assert_eq!(loaded.declaration.apis.len(), 1);
    }
    for bad in [
        "http://127.0.0.1:3000?x=1",
        "http://127.0.0.1:3000/v2?x=1",
        "http://127.0.0.1:3000/a/../b",
        "http://127.0.0.1:3000//v2",
        "http://127.0.0.1:3000/v%2F2",
    ] {
        let err = one_error(&with(bad));
        let text = err.to_string();
        assert_eq!(err.code(), "invalid_value", "{bad}: {text}");
        assert_eq!(err.line(), 14, "{bad}: {text}");
        assert!(
            text.contains("apis[0].upstream") && text.contains("no query"),
            "{bad}: {text}"
        );
    }
}

/// The base declaration with the second key manager's discovery fetched from its URL.
fn fetched_other(url: &str) -> String {
    BASE.replace(
        "    well_known_url: https://other.example.com/.well-known/openid-configuration\n    discovery: {issuer: https://other.example.com, jwks_uri: https://other.example.com/keys}\n",
        &format!("    well_known_url: {url}\n"),
    )
}

#[test]
fn well_known_urls_are_checked_before_anything_is_fetched() {
    let text = fetched_other("http://other.example.com/.well-known/openid-configuration");
    let errs = parse(&text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line(), 9);
    assert!(
        errs[0]
            .to_string()
            .contains("key_managers[1].well_known_url")
            && errs[0].to_string().contains("https"),
        "{}",
        errs[0]
    );
}

#[test]
fn allow_http_lifts_the_https_rule_for_well_known_urls() {
    let text = fetched_other("http://other.example.com/.well-known/openid-configuration");
    assert!(parse(&text).is_err());
    assert!(parse_with(&text, true).is_ok());
    let per_key_manager = text.replace(
        "    well_known_url: http://other.example.com",
        "    allow_http: true\n    well_known_url: http://other.example.com",
    );
    assert!(parse(&per_key_manager).is_ok());
}

#[test]
fn several_errors_are_reported_together_in_line_order() {
    let text = BASE
        .replace("{key_manager: other,", "{key_manager: nobody,")
        .replace("\"/pets/{id}\"", "\"/pets/{id\"")
        .replace("base_path: /pets/v1", "base_path: /pets/v1/");
    let errs = errors(&text);
    let lines: Vec<u64> = errs.iter().map(DeclarationError::line).collect();
    assert_eq!(lines, [13, 16, 25], "{errs:?}");
}

/// A parse error's text, which must name the field and speak of the declaration, not the parser.
fn syntax_error(text: &str) -> String {
    let errs = parse(text).expect_err("refused");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].code(), "syntax", "{errs:?}");
    errs[0].to_string()
}

#[test]
fn parse_errors_name_the_field_in_the_declarations_words() {
    let cases = [
        (
            BASE.replace("scopes: [pets:read]}", "scopes: pets:read}"),
            "apis[0].resources[0].scopes: expected a list",
        ),
        (
            BASE.replace("apis:\n  - name: pets", "apis:\n  - name: [pets]"),
            "apis[0].name: expected a string",
        ),
        (
            "gateway:\n  environment: production\n  environment: staging\n".to_string(),
            "gateway.environment: `environment` is given twice",
        ),
        (
            "gateway: {environment: production}\nsettings: {leeway_seconds: soon}\n".to_string(),
            "settings.leeway_seconds: expected a whole number (0 or more)",
        ),
        (
            BASE.replace(
                "scopes: [pets:read]}",
                "scopes: [pets:read], public: maybe}",
            ),
            "apis[0].resources[0].public: expected true or false",
        ),
        (
            "gateway: {environment: production}\napis: {name: x}\n".to_string(),
            "apis: expected a list",
        ),
    ];
    for (text, want) in cases {
        let got = syntax_error(&text);
        assert!(got.ends_with(want), "want {want:?} in {got:?}");
        assert!(!got.contains("DuplicateKeyPolicy"), "{got}");
        assert!(
            !got.contains("sequence") && !got.contains("scalar"),
            "{got}"
        );
    }
    for empty in ["", "\n", "# nothing yet\n", "---\n"] {
        let got = syntax_error(empty);
        assert!(got.contains("the declaration is empty"), "{empty:?}: {got}");
    }
}

#[test]
fn twenty_thousand_applications_fit_the_parsers_budget_and_a_breach_names_the_limit() {
    let mut text = BASE.to_string();
    for i in 0..20_000 {
        text.push_str(&format!(
            "  - name: app-{i}\n    client_ids:\n      - {{key_manager: idp, client_id: a-{i}}}\n      - {{key_manager: other, client_id: b-{i}}}\n    subscriptions:\n      - {{api: pets}}\n      - {{api: pets, state: blocked}}\n      - {{api: pets}}\n"
        ));
    }
    let declaration = parse(&text).expect("20,000 applications parse");
    assert_eq!(declaration.applications.len(), 20_002);

    // The real limit is 20,000,000 nodes; a breach is said the same way at any limit, so it is
    // checked at a small one (twenty million nodes take minutes to build in a debug test).
    assert_eq!(
        keygate::cli::declaration::validate::MAX_YAML_NODES,
        20_000_000
    );
    let limit = 10_000;
    let huge = BASE.replace(
        "    provider: keycloak\n",
        &format!(
            "    provider: keycloak\n    environments: [{}]\n",
            vec!["e"; limit + 1].join(",")
        ),
    );
    let errors = keygate::cli::declaration::validate::parse_limited(&huge, false, (limit, 40_000))
        .unwrap_err();
    let got = errors[0].to_string();
    assert!(
        got.contains("too large") && got.contains(&limit.to_string()),
        "{got}"
    );
    assert!(!got.contains("budget breached"), "{got}");
}

#[test]
fn json_declarations_are_accepted() {
    let json = r#"{"gateway": {"environment": "sandbox"},
 "apis": [{"name": "a", "base_path": "/a", "resources": [{"method": "GET", "path": "/x"}]}],
 "applications": [{"name": "app", "subscriptions": [{"api": "b"}]}]}"#;
    let err = one_error(json);
    assert_eq!(err.code(), "unknown_api");
    assert_eq!(err.line(), 3);
}

#[test]
fn the_command_prints_file_line_and_field_and_exits_1() {
    let dir = temp_dir("decl");
    let input = dir.join("keygate.yaml");
    std::fs::write(
        &input,
        BASE.replace(
            "{api: pets}\n  - name: kiosk",
            "{api: cats}\n  - name: kiosk",
        ),
    )
    .unwrap();
    let out = keygate(&["generate", "--check", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:line 22: applications[0].subscriptions[0].api",
            input.display()
        )),
        "{err}"
    );
}

#[test]
fn a_key_manager_without_audiences_is_warned_about_by_name_and_line() {
    let dir = temp_dir("aud");
    let input = dir.join("keygate.yaml");
    let with_audience = BASE.replace(
        "    provider: keycloak\n",
        "    provider: keycloak\n    audiences: [api://pets]\n",
    );
    std::fs::write(&input, &with_audience).unwrap();
    let out = keygate(&["generate", "--check", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("key manager idp:"), "{err}");
    assert!(
        err.contains(&format!(
            "{}:line 9: warning: key manager other: add `audiences",
            input.display()
        )),
        "{err}"
    );
}
