//! Declaration errors: each names the field and the line it is on.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cli_support;

use cli_support::*;
use keygate::cli::validate::{parse, parse_with, DeclarationError};

/// A valid declaration; tests break one thing at a time. Line numbers matter below.
const BASE: &str = "\
gateway:
  environment: production
key_managers:
  - name: idp
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    provider: keycloak
  - name: other
    well_known_url: https://other.example.com/.well-known/openid-configuration
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

fn errors(text: &str) -> Vec<DeclarationError> {
    parse(text).expect_err("declaration should be refused")
}

fn one_error(text: &str) -> DeclarationError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn the_base_declaration_is_valid() {
    let decl = parse(BASE).unwrap();
    assert_eq!(decl.applications.len(), 2);
    // The same client id under two different key managers is fine.
    assert_eq!(decl.applications[1].client_ids[0].client_id.value, "abc");
}

#[test]
fn unknown_key_manager_in_an_application() {
    let err = one_error(&BASE.replace("{key_manager: other,", "{key_manager: nobody,"));
    assert_eq!(err.code(), "unknown_key_manager");
    assert_eq!(err.line(), 23);
    let text = err.to_string();
    assert!(
        text.contains("applications[1].client_ids[0].key_manager"),
        "{text}"
    );
    assert!(
        text.contains("line 23") && text.contains("nobody"),
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
    assert_eq!(err.line(), 23);
    let text = err.to_string();
    assert!(
        text.contains("applications[1].client_ids[0].client_id"),
        "{text}"
    );
    assert!(
        text.contains("`kiosk`") && text.contains("`shop`") && text.contains("line 18"),
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
    assert_eq!(err.line(), 20);
    assert!(err
        .to_string()
        .contains("applications[0].subscriptions[0].api"));
}

#[test]
fn malformed_path_templates() {
    for (bad, why) in [
        ("/pets/{id", "parameter"),
        ("pets", "start with"),
        ("/a//b", "empty segment"),
        ("/*/x", "last segment"),
    ] {
        let err = one_error(&BASE.replace("\"/pets/{id}\"", &format!("\"{bad}\"")));
        assert_eq!(err.code(), "malformed_path_template", "{bad}");
        assert_eq!(err.line(), 14, "{bad}");
        let text = err.to_string();
        assert!(
            text.contains("apis[0].resources[1].path") && text.contains(why),
            "{text}"
        );
    }
}

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let err = one_error(&BASE.replace(
        "    base_path: /pets/v1\n",
        "    base_path: /pets/v1\n    basepath: /x\n",
    ));
    assert_eq!(err.code(), "syntax");
    assert_eq!(err.line(), 12);
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
    assert_eq!(err.line(), 21);
    let text = err.to_string();
    assert!(
        text.contains("applications[1].name") && text.contains("line 16"),
        "{text}"
    );

    // A duplicated key manager name is reported on its second declaration.
    let errs = errors(&BASE.replace("  - name: other", "  - name: idp"));
    assert!(
        errs.iter()
            .any(|e| e.code() == "duplicate_name" && e.line() == 7),
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

    let err = one_error(&BASE.replace(
        "https://other.example.com/.well-known/openid-configuration",
        "http://other.example.com/.well-known/openid-configuration",
    ));
    assert_eq!(err.line(), 8);
    assert!(
        err.to_string().contains("key_managers[1].well_known_url")
            && err.to_string().contains("https"),
        "{err}"
    );
}

#[test]
fn allow_http_lifts_the_https_rule_for_well_known_urls() {
    let text = BASE.replace(
        "https://other.example.com/.well-known/openid-configuration",
        "http://other.example.com/.well-known/openid-configuration",
    );
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
        .replace("\"/pets/{id}\"", "\"/pets/{id\"");
    let errs = errors(&text);
    let lines: Vec<u64> = errs.iter().map(DeclarationError::line).collect();
    assert_eq!(lines, [14, 23]);
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
            "{}:line 20: applications[0].subscriptions[0].api",
            input.display()
        )),
        "{err}"
    );
}
