//! `keygate generate --check` and the filter's `on_configure` (`Policy::from_json` on the plugin
//! config generated from the declaration) agree: on every edge declaration below both accept, or
//! both refuse with the same field paths, and the CLI names the declaration line of each.
#![cfg(not(target_arch = "wasm32"))]
// Test code: failing loudly on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use keygate::cli::generate;
use keygate::cli::render::cluster_naming::ClusterNaming;
use keygate::policy::Policy;
use support::canned::*;

/// A valid declaration; each case edits it. Discovery is inline, so nothing is fetched.
const BASE: &str = "\
gateway:
  environment: production
key_managers:
  - name: idp
    well_known_url: https://idp.example.com/.well-known/openid-configuration
    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}
apis:
  - name: pets
    base_path: /pets/v1
    resources:
      - {method: GET, path: \"/pets/{id}\", scopes: [pets:read]}
      - {method: POST, path: /pets, scopes: [pets:write], groups: [admins]}
applications:
  - name: shop
    client_ids:
      - {key_manager: idp, client_id: abc}
    subscriptions:
      - {api: pets}
";

/// Two tiers, inserted before `applications:`.
const TIERS: &str = "tiers:\n  - {name: bronze, requests: 10, per: minute}\n  - {name: gold, requests: 99, per: day}\n";

/// A second API, inserted before `applications:`.
const SECOND_API: &str =
    "  - name: cats\n    base_path: /cats\n    resources:\n      - {method: GET, path: /cats}\n";
/// A second key manager, inserted before `apis:`.
const SECOND_KM: &str = "  - name: idp2\n    well_known_url: https://idp2.example.com/.well-known/openid-configuration\n    discovery: {issuer: https://idp2.example.com, jwks_uri: https://idp2.example.com/keys}\n";

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to [`BASE`] in order; each `from` must occur.
    edits: Vec<(&'static str, String)>,
    /// `None`: valid. `Some((path, needle))`: the first problem's field path, and text found on
    /// the line the CLI must name (`None` for a field without a line, such as settings).
    refused: Option<(&'static str, Option<&'static str>)>,
}

fn case(
    name: &'static str,
    edits: &[(&'static str, &str)],
    refused: Option<(&'static str, Option<&'static str>)>,
) -> Case {
    Case {
        name,
        edits: edits.iter().map(|(f, t)| (*f, t.to_string())).collect(),
        refused,
    }
}

fn with_second_api(api: &str) -> String {
    format!("{api}applications:")
}

fn cases() -> Vec<Case> {
    let res0 = "{method: GET, path: \"/pets/{id}\", scopes: [pets:read]}";
    let second_api = with_second_api(SECOND_API);
    let second_km = format!("{SECOND_KM}apis:");
    vec![
        case("the base declaration", &[], None),
        case("a lower-case method is upper-cased", &[("method: GET", "method: get")], None),
        case("any upper-case method token", &[("method: POST", "method: PROPFIND")], None),
        case("ANY and * methods", &[("method: GET", "method: ANY"), ("method: POST", "method: \"*\"")], None),
        case("a trailing wildcard", &[("path: /pets,", "path: /pets/*,")], None),
        case("a parameter name with '-'", &[("{id}", "{pet-id}")], None),
        case("literal segments with sub-delims", &[("path: /pets,", "path: \"/pets/a~b!$&'()+,=:@\",")], None),
        case("a second API under the first's base path", &[("applications:", &with_second_api(&SECOND_API.replace("/cats\n", "/pets/v1/admin\n")))], None),
        case("a method with a space", &[("method: POST", "method: \"PO ST\"")], Some(("apis[0].resources[1].method", Some("PO ST")))),
        case("a method with a non-token character", &[("method: POST", "method: \"POST/\"")], Some(("apis[0].resources[1].method", Some("POST/")))),
        case("an empty method", &[("method: POST", "method: \"\"")], Some(("apis[0].resources[1].method", Some("method: \"\"")))),
        case("'|' in a literal segment", &[("path: /pets,", "path: \"/pets|x\",")], Some(("apis[0].resources[1].path", Some("/pets|x")))),
        case("a non-ASCII literal segment", &[("path: /pets,", "path: /p\u{e9}ts,")], Some(("apis[0].resources[1].path", Some("/p\u{e9}ts")))),
        case("a literal segment ending in '.'", &[("path: /pets,", "path: /pets.,")], Some(("apis[0].resources[1].path", Some("/pets.")))),
        case("a percent in a literal segment", &[("path: /pets,", "path: /pets%2F,")], Some(("apis[0].resources[1].path", Some("/pets%2F")))),
        case("a scope with a space", &[("[pets:read]", "[\"pets read\"]")], Some(("apis[0].resources[0].scopes[0]", Some("pets read")))),
        case("an empty scope", &[("[pets:write]", "[\"\"]")], Some(("apis[0].resources[1].scopes[0]", Some("method: POST")))),
        case("an empty group name", &[("groups: [admins]", "groups: [\"\"]")], Some(("apis[0].resources[1].groups[0]", Some("method: POST")))),
        case("an empty API name", &[("  - name: pets", "  - name: \"\"")], Some(("apis[0].name", Some("name: \"\"")))),
        case("an empty application name", &[("  - name: shop", "  - name: \"\"")], Some(("applications[0].name", Some("name: \"\"")))),
        case("an empty environment", &[("environment: production", "environment: \"\"")], Some(("environment", Some("environment:")))),
        case("an environment with a space", &[("environment: production", "environment: prod uction")], Some(("environment", Some("prod uction")))),
        case("an empty client id", &[("client_id: abc", "client_id: \"\"")], Some(("applications[0].client_ids[0].client_id", Some("client_id: \"\"")))),
        case("a duplicate API name", &[("applications:", &second_api.replace("name: cats", "name: pets"))], Some(("apis[1].name", Some("name: pets\n    base_path: /cats")))),
        case("a duplicate base path", &[("applications:", &second_api.replace("/cats\n", "/pets/v1\n"))], Some(("apis[1].base_path", Some("base_path: /pets/v1\n    resources:\n      - {method: GET, path: /cats}")))),
        case("a duplicate resource up to parameter names", &[("path: /pets,", "path: \"/pets/{other}\","), ("method: POST", "method: GET")], Some(("apis[0].resources[1].path", Some("/pets/{other}")))),
        case("a duplicate key manager name", &[("apis:", &second_km.replace("name: idp2", "name: idp"))], Some(("key_managers[1].name", Some("name: idp\n    well_known_url: https://idp2")))),
        case("one issuer for two key managers", &[("apis:", &second_km.replace("issuer: https://idp2.example.com,", "issuer: https://idp.example.com,").replace("https://idp2.example.com/.well-known", "https://idp.example.com/.well-known"))], Some(("key_managers[1].issuer", Some("well_known_url: https://idp.example.com/.well-known/openid-configuration\n    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp2")))),
        case("an unknown key manager", &[("key_manager: idp,", "key_manager: nobody,")], Some(("applications[0].client_ids[0].key_manager", Some("nobody")))),
        case("an unknown API", &[("{api: pets}", "{api: dogs}")], Some(("applications[0].subscriptions[0].api", Some("dogs")))),
        case("a duplicate subscription", &[("      - {api: pets}\n", "      - {api: pets}\n      - {api: pets, state: blocked}\n")], Some(("applications[0].subscriptions[1].api", Some("state: blocked")))),
        case("a client id in two applications", &[("      - {api: pets}\n", "      - {api: pets}\n  - name: kiosk\n    client_ids:\n      - {client_id: abc, key_manager: idp}\n")], Some(("applications[1].client_ids[0].client_id", Some("{client_id: abc, key_manager: idp}")))),
        case("a base path with a trailing slash", &[("base_path: /pets/v1", "base_path: /pets/v1/")], Some(("apis[0].base_path", Some("/pets/v1/")))),
        case("a base path without a leading slash", &[("base_path: /pets/v1", "base_path: pets")], Some(("apis[0].base_path", Some("base_path: pets")))),
        case("a base path with a parameter", &[("base_path: /pets/v1", "base_path: \"/pets/{v}\"")], Some(("apis[0].base_path", Some("/pets/{v}")))),
        case("a base path with a wildcard", &[("base_path: /pets/v1", "base_path: /pets/*")], Some(("apis[0].base_path", Some("/pets/*")))),
        case("an empty parameter {}", &[("{id}", "{}")], Some(("apis[0].resources[0].path", Some("/pets/{}")))),
        case("a parameter that is not a whole segment", &[("{id}", "x{id}")], Some(("apis[0].resources[0].path", Some("x{id}")))),
        case("a parameter used twice", &[("\"/pets/{id}\"", "\"/pets/{id}/x/{id}\"")], Some(("apis[0].resources[0].path", Some("{id}/x/{id}")))),
        case("a wildcard before the end", &[("path: /pets,", "path: /*/pets,")], Some(("apis[0].resources[1].path", Some("/*/pets")))),
        case("a wildcard inside a segment", &[("path: /pets,", "path: /pets*,")], Some(("apis[0].resources[1].path", Some("/pets*")))),
        case("a dot segment", &[("path: /pets,", "path: /pets/../x,")], Some(("apis[0].resources[1].path", Some("/pets/../x")))),
        case("a public resource that requires scopes", &[(res0, "{method: GET, path: \"/pets/{id}\", scopes: [pets:read], public: true}")], Some(("apis[0].resources[0].public", Some("public: true")))),
        case("an HMAC algorithm", &[("    discovery: {issuer: https://idp.example.com,", "    algorithms: [HS256]\n    discovery: {issuer: https://idp.example.com,")], Some(("key_managers[0].algorithms[0]", Some("name: idp")))),
        case("tenants without a {tenantid} issuer", &[("    discovery: {issuer: https://idp.example.com,", "    tenants: [t1]\n    discovery: {issuer: https://idp.example.com,")], Some(("key_managers[0].tenants", Some("well_known_url: https://idp.example.com")))),
        case("a bad claim name", &[("    discovery: {issuer: https://idp.example.com,", "    claims: {groups: \"a..b\"}\n    discovery: {issuer: https://idp.example.com,")], Some(("key_managers[0].claims.groups[0]", Some("name: idp")))),
        case("introspection at the discovery document's endpoint (the secret is not generate's to check)", &[("    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}", "    introspection: {client_id: gateway, client_secret_env: KM_SECRET}\n    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys, introspection_endpoint: https://idp.example.com/introspect}")], None),
        case("introspection on another host than the JWKS", &[("    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}", "    introspection: {client_id: gateway, client_secret_env: KM_SECRET}\n    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys, introspection_endpoint: https://introspect.example.com/v1}")], None),
        case("introspection without an introspection_endpoint", &[("    discovery: {issuer: https://idp.example.com,", "    introspection: {client_id: gateway, client_secret_env: KM_SECRET}\n    discovery: {issuer: https://idp.example.com,")], Some(("key_managers[0].introspection", Some("introspection: {client_id")))),
        case("an introspection secret variable that is not a name", &[("    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}", "    introspection:\n      client_id: gateway\n      client_secret_env: \"1-SECRET\"\n    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys, introspection_endpoint: https://idp.example.com/introspect}")], Some(("key_managers[0].introspection.client_secret_env", Some("client_secret_env: \"1-SECRET")))),
        case("an empty introspection client id", &[("    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys}", "    introspection:\n      client_id: \"\"\n      client_secret_env: KM_SECRET\n    discovery: {issuer: https://idp.example.com, jwks_uri: https://idp.example.com/keys, introspection_endpoint: https://idp.example.com/introspect}")], Some(("key_managers[0].introspection.client_id", Some("client_id: \"\"\n      client_secret_env")))),
        case("an introspection cache time out of range", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {introspection_cache_seconds: 0}\n")], Some(("settings.introspection_cache_seconds", None))),
        case("a setting out of range", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {leeway_seconds: 601}\n")], Some(("settings.leeway_seconds", None))),
        case("introspection call bounds", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {introspection_calls_per_second: 5, introspection_worker_calls_per_second: 2, introspection_negative_cache_entries: 64}\n")], None),
        case("no introspection calls", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {introspection_calls_per_second: 0}\n")], Some(("settings.introspection_calls_per_second", None))),
        case("no introspection calls per worker", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {introspection_worker_calls_per_second: 0}\n")], Some(("settings.introspection_worker_calls_per_second", None))),
        case("a tiny negative introspection area", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {introspection_negative_cache_entries: 8}\n")], Some(("settings.introspection_negative_cache_entries", None))),
        case("a tier on a subscription", &[("applications:", &format!("{TIERS}applications:")), ("{api: pets}", "{api: pets, tier: bronze}")], None),
        case("an unknown tier", &[("applications:", &format!("{TIERS}applications:")), ("{api: pets}", "{api: pets, tier: silver}")], Some(("applications[0].subscriptions[0].tier", Some("tier: silver")))),
        case("a tier of zero requests", &[("applications:", &format!("{TIERS}applications:").replace("requests: 10,", "requests: 0,"))], Some(("tiers[0].requests", Some("name: bronze")))),
        case("a tier per week", &[("applications:", &format!("{TIERS}applications:").replace("per: minute", "per: week"))], Some(("tiers[0].per", Some("per: week")))),
        case("two tiers of one name", &[("applications:", &format!("{TIERS}applications:").replace("name: gold", "name: bronze"))], Some(("tiers[1].name", Some("name: bronze, requests: 99")))),
        case("a tier name with a space", &[("applications:", &format!("{TIERS}applications:").replace("name: gold", "name: \"go ld\""))], Some(("tiers[1].name", Some("go ld")))),
        case("dpop: required on a key manager and an API", &[("    discovery: {issuer: https://idp.example.com,", "    dpop: required\n    discovery: {issuer: https://idp.example.com,"), ("    base_path: /pets/v1\n", "    base_path: /pets/v1\n    dpop: required\n")], None),
        case("DPoP proof settings", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {dpop_algorithms: [ES256, EdDSA], dpop_max_age_seconds: 60, dpop_future_skew_seconds: 0, dpop_replay_slots: 64, dpop_replay_slot_entries: 8}\n")], None),
        case("an HMAC DPoP proof algorithm", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {dpop_algorithms: [ES256, HS256]}\n")], Some(("settings.dpop_algorithms[1]", None))),
        case("a DPoP proof window over an hour", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {dpop_max_age_seconds: 3601}\n")], Some(("settings.dpop_max_age_seconds", None))),
        case("no DPoP replay slots", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {dpop_replay_slots: 0}\n")], Some(("settings.dpop_replay_slots", None))),
        case("another readiness path", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {ready_path: /healthz/keygate}\n")], None),
        case("a readiness path with a query", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {ready_path: \"/ready?x=1\"}\n")], Some(("settings.ready_path", None))),
        case("a relative readiness path", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {ready_path: ready}\n")], Some(("settings.ready_path", None))),
        case("a bad header prefix", &[("      - {api: pets}\n", "      - {api: pets}\nsettings: {header_prefix: x-envoy-}\n")], Some(("settings.header_prefix", None))),
    ]
}

/// Line (1-based) where `needle` starts in `text`.
fn line_of(text: &str, needle: &str) -> u64 {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the declaration"));
    1 + text[..at].matches('\n').count() as u64
}

/// The filter's verdict: `Policy::from_json` on the plugin config generated from the declaration,
/// as `on_configure` reads it. Field paths of every problem, empty when accepted.
fn filter_verdict(text: &str) -> Vec<String> {
    let resolved = generate::resolve(text, false).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_string(&resolved.plugin_config(ClusterNaming::Envoy)).unwrap();
    match Policy::from_json(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.path).collect(),
    }
}

/// `generate --check`: exit status and each reported (line, field path), parsed from stderr lines
/// `FILE:line N: PATH: ...` (or `FILE:PATH: ...` for a field without a line); `warning` lines are
/// not refusals and are left out.
fn cli_verdict(text: &str, dir: &std::path::Path, index: usize) -> (i32, Vec<(u64, String)>) {
    let input = dir.join(format!("case-{index}.yaml"));
    std::fs::write(&input, text).unwrap();
    let out = keygate(&["generate", "--check", "--input", input.to_str().unwrap()]);
    let prefix = format!("{}:", input.display());
    let reported = stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (line, rest) = match rest.strip_prefix("line ") {
                Some(r) => {
                    let (n, rest) = r.split_once(": ").unwrap();
                    (n.parse().unwrap(), rest)
                }
                None => (0, rest),
            };
            (line, rest.split_once(": ").unwrap().0.to_string())
        })
        // Warnings (no audiences configured) are not refusals.
        .filter(|(_, path)| path != "warning")
        .collect();
    (out.status.code().unwrap(), reported)
}

#[test]
fn generate_check_and_on_configure_agree() {
    let dir = temp_dir("agreement");
    let cases = cases();
    assert_eq!(cases.len(), 72, "the table has 72 cases");
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let mut text = BASE.to_string();
        for (from, to) in &case.edits {
            assert!(
                text.contains(from),
                "{}: {from:?} not in the text",
                case.name
            );
            text = text.replacen(from, to, 1);
        }
        let filter = filter_verdict(&text);
        let (status, reported) = cli_verdict(&text, &dir, index);
        let cli_paths: Vec<String> = reported.iter().map(|(_, p)| p.clone()).collect();
        let mut sorted_filter = filter.clone();
        sorted_filter.sort();
        let mut sorted_cli = cli_paths.clone();
        sorted_cli.sort();
        let agree = (status == 0) == filter.is_empty() && sorted_filter == sorted_cli;
        if !agree {
            failures.push(format!(
                "{}: generate --check exit {status} {reported:?}, filter {filter:?}",
                case.name
            ));
            continue;
        }
        match case.refused {
            None if status != 0 => failures.push(format!("{}: refused {reported:?}", case.name)),
            None => {}
            Some(_) if status != 1 => {
                failures.push(format!("{}: accepted (exit {status})", case.name))
            }
            Some((path, needle)) => {
                let want_line = needle.map_or(0, |n| line_of(&text, n));
                match reported.iter().find(|(_, p)| p == path) {
                    Some((line, _)) if *line == want_line => {}
                    Some((line, _)) => failures.push(format!(
                        "{}: {path} reported on line {line}, expected {want_line}",
                        case.name
                    )),
                    None => {
                        failures.push(format!("{}: expected {path}, got {reported:?}", case.name))
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
