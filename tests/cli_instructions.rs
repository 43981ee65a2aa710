//! `keygate instructions`: token endpoint, ready-to-run curl commands, and the API call.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::canned::*;
use support::shell::{run_block, sh, READ};

fn declaration(keycloak_url: &str) -> String {
    format!(
        "\
gateway:
  environment: production
  listen: 127.0.0.1:18080
key_managers:
  - name: keycloak
    well_known_url: {keycloak_url}
    provider: keycloak
apis:
  - name: pets
    base_path: /pets/v1
    resources:
      - {{method: GET,  path: /health, public: true}}
      - {{method: GET,  path: \"/pets/{{id}}\", scopes: [pets:read]}}
      - {{method: POST, path: /pets, scopes: [pets:write, pets:admin]}}
  - name: orders
    base_path: /orders
    resources:
      - {{method: GET, path: /orders, scopes: [orders:read]}}
  - name: catalog
    base_path: /catalog/v1
    security: [api_key]
    api_key: {{header: X-Catalog-Key, query: key}}
    resources:
      - {{method: GET, path: \"/items/{{id}}\"}}
tiers:
  - {{name: bronze, requests: 1000, per: minute}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: keycloak, client_id: shop-app}}
    subscriptions:
      - {{api: pets, tier: bronze}}
      - {{api: orders, state: blocked}}
  - name: empty
  - name: kiosk
    subscriptions:
      - {{api: pets}}
      - {{api: catalog}}
    api_keys:
      - {{name: kiosk-2026, sha256: {KIOSK_KEY_SHA256}, expires: \"2027-01-31T00:00:00Z\"}}
"
    )
}

/// A Keycloak-shaped key manager whose token endpoint hands out a fixed token.
fn key_manager() -> (Server, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::start_with(
        listener,
        vec![
            (format!("/realms/shop{WELL_KNOWN}"), 200, fixture("keycloak", &base)),
            (
                "/realms/shop/protocol/openid-connect/token".into(),
                200,
                "{\"access_token\":\"eyJ.test.token\",\"token_type\":\"Bearer\",\"expires_in\":300}".into(),
            ),
        ],
    );
    let url = format!("{}/realms/shop{WELL_KNOWN}", server.base);
    (server, url)
}

fn instructions(app: &str) -> (std::process::Output, Server) {
    let (server, url) = key_manager();
    let dir = temp_dir("instr");
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, declaration(&url)).unwrap();
    let out = keygate(&["instructions", "--input", input.to_str().unwrap(), app]);
    (out, server)
}

#[test]
fn prints_token_endpoint_grants_scopes_and_the_call() {
    let (out, server) = instructions("shop");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let token_endpoint = format!("{}/realms/shop/protocol/openid-connect/token", server.base);
    assert!(
        text.contains(&format!("Token endpoint: {token_endpoint}")),
        "{text}"
    );
    assert!(text.contains("Client id shop-app at key manager keycloak"));
    assert!(text.contains("grant_type=client_credentials"));
    assert!(text.contains("grant_type=password"));
    // Union of the scopes of the active subscription only (orders is blocked), sorted.
    assert!(
        text.contains("'scope=pets:admin pets:read pets:write'"),
        "{text}"
    );
    assert!(!text.contains("orders:read"));
    // The call goes to the first protected resource, template filled in.
    assert!(
        text.contains("curl -sS -X 'GET' 'http://127.0.0.1:18080/pets/v1/pets/1'"),
        "{text}"
    );
    assert!(text.contains("Authorization: Bearer ${TOKEN:?"), "{text}");
    // The consumer learns its budget per subscription, and what a spent one answers.
    assert!(
        text.contains("#   API pets: tier bronze: 1000 requests per minute"),
        "{text}"
    );
    assert!(
        text.contains("#   API orders (blocked): unlimited"),
        "{text}"
    );
    assert!(
        text.contains("429 (code rate_limited) with Retry-After"),
        "{text}"
    );
}

/// The lines of the printed block that starts with `# {title}`, up to the next blank line.
fn block(text: &str, title: &str) -> String {
    text.split(&format!("# {title}"))
        .nth(1)
        .unwrap_or_else(|| panic!("no block {title:?} in:\n{text}"))
        .lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_printed_token_commands_really_fetch_a_token_from_the_key_manager() {
    // The demo key manager (oidc-provider, tests/keymanager), its discovery fetched by the CLI.
    let km = support::KeyManager::start();
    let dir = temp_dir("instr-live");
    let input = dir.join("keygate.yaml");
    // With `audiences` the gateway refuses a token for another resource server, so the printed
    // commands must ask for this one (RFC 8707 `resource`).
    let text = declaration(&km.well_known_url())
        .replace(
            "    provider: keycloak\n",
            "    allow_http: true\n    audiences: [https://api.keygate.test]\n",
        )
        .replace("pets:write, pets:admin", "pets:write");
    std::fs::write(&input, text).unwrap();
    let out = keygate(&["instructions", "--input", input.to_str().unwrap(), "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("# Token endpoint: {}/token", km.issuer())),
        "{text}"
    );
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, km.jwks().to_string()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();

    let secret = ("CLIENT_SECRET", "shop-app-secret");
    let client_credentials = block(&text, "Client credentials");
    for grant in [client_credentials.clone(), block(&text, "Password grant")] {
        assert!(
            grant.contains("--data-urlencode 'resource=https://api.keygate.test'"),
            "{grant}"
        );
    }
    let application = run_block(&client_credentials, &[secret]);
    let user = run_block(
        &block(&text, "Password grant"),
        &[
            secret,
            ("SIGNIN_USER", "alice"),
            ("SIGNIN_PASSWORD", "alice-pass"),
        ],
    );
    for (token, subject) in [(application, "shop-app"), (user, "alice")] {
        // A JWT the key manager signed, checked with keygate's own verifier against its JWKS.
        let check = keygate(&[
            "check-token",
            "--jwks",
            jwks.to_str().unwrap(),
            "--at",
            &now,
            "--issuer",
            km.issuer(),
            "--audience",
            "https://api.keygate.test",
            &token,
        ]);
        let verdict: serde_json::Value = serde_json::from_str(&stdout(&check)).unwrap();
        assert_eq!(verdict["valid"], true, "{subject}: {verdict}");
        let claims = &verdict["claims"];
        assert_eq!(claims["sub"], subject);
        assert_eq!(claims["client_id"], "shop-app");
        // The printed scope request: every scope of the active subscriptions.
        assert_eq!(claims["scope"], "pets:read pets:write", "{subject}");
    }
}

#[test]
fn an_application_without_client_ids_or_subscriptions_says_so() {
    let (out, _server) = instructions("empty");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("no client ids yet"), "{text}");
    assert!(text.contains("No active subscription"), "{text}");
}

#[test]
fn unknown_application_exits_1() {
    let (out, _server) = instructions("nobody");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no application `nobody`"));
}

/// Client ids that would run `touch <mark>` if a printed line left them unquoted.
fn hostile_client_ids(dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let mark = |i: usize| dir.join(format!("mark{i}"));
    let ids = [
        format!("$(touch {})", mark(0).display()),
        format!("`touch {}`", mark(1).display()),
        format!("'; touch {}; '", mark(2).display()),
        format!("\"; touch {}; \"", mark(3).display()),
        // (A newline would be refused: the filter's compiler allows no control characters.)
        format!("x;touch {}", mark(4).display()),
        format!("a'\"$(touch {})\"'b", mark(5).display()),
    ];
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (id, mark(i)))
        .collect()
}

fn hostile_instructions(
    dir: &std::path::Path,
) -> (String, Vec<(String, std::path::PathBuf)>, Server) {
    let (server, url) = key_manager();
    let ids = hostile_client_ids(dir);
    // JSON strings are YAML double-quoted scalars: the ids arrive in the declaration verbatim.
    let client_ids: String = ids
        .iter()
        .map(|(id, _)| {
            format!(
                "      - {{key_manager: keycloak, client_id: {}}}\n",
                serde_json::to_string(id).unwrap()
            )
        })
        .collect();
    let text = declaration(&url).replace(
        "  - name: empty\n",
        &format!("  - name: evil\n    client_ids:\n{client_ids}    subscriptions:\n      - {{api: pets}}\n"),
    );
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, text).unwrap();
    let out = keygate(&["instructions", "--input", input.to_str().unwrap(), "evil"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (stdout(&out), ids, server)
}

#[test]
fn pasting_the_instructions_into_sh_runs_no_code_from_a_client_id() {
    let dir = temp_dir("inject");
    let (text, ids, _server) = hostile_instructions(&dir);
    assert!(
        text.matches("## Client id ").count() == ids.len(),
        "every client id has its section:\n{text}"
    );
    // Each client id stays inside its own comment line.
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("## Client id "))
        .collect();
    assert_eq!(headings.len(), ids.len(), "{text}");
    assert!(
        headings
            .iter()
            .all(|l| l.ends_with(" at key manager keycloak")),
        "{headings:#?}"
    );

    // The whole output, pasted: the token requests and the API call run (the API call fails,
    // nothing listens on its port), the injected `touch`es must not.
    let mut env: Vec<(&str, &str)> = READ.iter().skip(1).map(|name| (*name, "s")).collect();
    env.push(("TOKEN", "t"));
    let run = sh(&format!("cd {}\n{text}", dir.display()), &env);
    for (id, mark) in &ids {
        assert!(
            !mark.exists(),
            "client id {id:?} ran code:\n{text}\n{}",
            stderr(&run)
        );
    }
}

#[test]
fn the_basic_auth_argument_holds_the_client_id_literally() {
    let dir = temp_dir("inject-user");
    let (text, ids, _server) = hostile_instructions(&dir);
    let secrets: Vec<(&str, &str)> = READ[1..7].iter().map(|name| (*name, "s")).collect();
    for (id, mark) in &ids {
        // This client's section, its `-u` argument as printed.
        let section = text
            .split("## Client id ")
            .find(|s| s.contains(&format!("{}:", id.replace('\'', r"'\''"))))
            .unwrap_or_else(|| panic!("no section for {id:?}:\n{text}"));
        let argument = section
            .lines()
            .find_map(|line| line.strip_prefix("  -u "))
            .and_then(|rest| rest.strip_suffix(" \\"))
            .unwrap();
        let script = format!("printf '%s' {argument}\n");
        let run = sh(&script, &secrets);
        assert!(run.status.success(), "{script}\n{}", stderr(&run));
        assert_eq!(stdout(&run), format!("{id}:s"), "{script}");
        assert!(!mark.exists(), "{script}");
    }
}

#[test]
fn a_pasted_block_needs_no_editing_and_overwrites_nothing_the_user_set() {
    let (out, _server) = instructions("shop");
    let text = stdout(&out);
    // No placeholder to fill in any command: commands read variables, comments say which.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains('<') && !line.contains('>'), "{line}");
    }
    assert!(!text.contains("export "), "{text}");
    let client_credentials = block(&text, "Client credentials");
    let password = block(&text, "Password grant");

    // Unset secret: the request is not sent (no token, the variable named), in a strict shell
    // the block stops there.
    for (what, script, env) in [
        ("client credentials", &client_credentials, vec![]),
        (
            "password grant",
            &password,
            vec![("CLIENT_SECRET", "shop-app-secret")],
        ),
    ] {
        let run = sh(&format!("{script}\nprintf 'TOKEN=%s' \"$TOKEN\""), &env);
        let err = stderr(&run);
        let named = if env.is_empty() {
            "CLIENT_SECRET"
        } else {
            "SIGNIN_USER"
        };
        assert!(err.contains(&format!("set {named}")), "{what}: {err}");
        assert!(
            !stdout(&run).contains("TOKEN=ey"),
            "{what}: {}",
            stdout(&run)
        );
    }

    // Set: used as it is, and still the user's afterwards.
    let script = format!("{client_credentials}\nprintf '|%s|%s' \"$CLIENT_SECRET\" \"$TOKEN\"");
    let run = sh(&script, &[("CLIENT_SECRET", "mine")]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).ends_with("|mine|eyJ.test.token"),
        "{}",
        stdout(&run)
    );

    // The call refuses to go without a token rather than sending `Bearer ` alone.
    let call = block(&text, "Call API pets with the token:");
    let run = sh(&call, &[]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("no token yet"), "{}", stderr(&run));
}

#[test]
fn knows_whether_opaque_tokens_are_accepted() {
    let (out, server) = instructions("shop");
    let text = stdout(&out);
    assert!(
        text.contains("accepts JWT access tokens only from this key manager"),
        "{text}"
    );
    assert!(!text.contains("Opaque"), "{text}");

    let dir = temp_dir("instr-opaque");
    let input = dir.join("keygate.yaml");
    let url = format!("{}/realms/shop{WELL_KNOWN}", server.base);
    let text = declaration(&url).replace(
        "    provider: keycloak\n",
        "    provider: keycloak\n    introspection: {client_id: gateway, client_secret_env: KC_SECRET}\n",
    );
    std::fs::write(&input, text).unwrap();
    let out = keygate(&["instructions", "--input", input.to_str().unwrap(), "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let endpoint = format!(
        "{}/realms/shop/protocol/openid-connect/token/introspect",
        server.base
    );
    assert!(
        text.contains(&format!("Opaque (non-JWT) access tokens of this key manager are accepted too: the gateway checks them at {endpoint}")),
        "{text}"
    );
    assert!(
        !text.contains("KC_SECRET"),
        "the gateway's secret is not the consumer's business"
    );
}

#[test]
fn the_token_request_names_the_audience_the_gateway_checks() {
    let (server, url) = key_manager();
    let dir = temp_dir("instr-audience");
    let input = dir.join("keygate.yaml");
    let with_audience = |provider: &str| {
        declaration(&url).replace(
            "    provider: keycloak\n",
            &format!("    provider: {provider}\n    audiences: [api://pets, api://other]\n"),
        )
    };
    for (provider, parameter) in [("keycloak", "resource"), ("auth0", "audience")] {
        std::fs::write(&input, with_audience(provider)).unwrap();
        let out = keygate(&["instructions", "--input", input.to_str().unwrap(), "shop"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        for grant in ["Client credentials", "Password grant"] {
            let commands = block(&text, grant);
            let wanted = format!("--data-urlencode '{parameter}=api://pets'");
            assert!(commands.contains(&wanted), "{provider}: {commands}");
            assert!(
                !commands.contains("api://other"),
                "one audience: {commands}"
            );
        }
    }
    // Without audiences nothing is asked for.
    std::fs::write(&input, declaration(&url)).unwrap();
    let out = keygate(&["instructions", "--input", input.to_str().unwrap(), "shop"]);
    let text = stdout(&out);
    assert!(!text.contains("resource="), "{text}");
    drop(server);
}

/// SHA-256 of a key nobody holds: the declaration carries only hashes.
const KIOSK_KEY_SHA256: &str = "5d0c6c1e5d0c6c1e5d0c6c1e5d0c6c1e5d0c6c1e5d0c6c1e5d0c6c1e5d0c6c1e";

#[test]
fn an_application_with_api_keys_learns_where_the_key_goes() {
    let (out, _server) = instructions("kiosk");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\n## API keys\n"), "{text}");
    assert!(
        text.contains("1 API key(s): kiosk-2026 (expires 2027-01-31T00:00:00Z)"),
        "{text}"
    );
    // Per API that accepts keys: the header (lower case), the opted-in query parameter, and a
    // call that reads the key from $API_KEY; never a key or a hash.
    assert!(
        text.contains(
            "# API catalog takes the key in the header x-catalog-key (or the query parameter key"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "curl -sS -X 'GET' 'http://127.0.0.1:18080/catalog/v1/items/1' \\\n  -H 'x-catalog-key: '\"${API_KEY:?set API_KEY"
        ),
        "{text}"
    );
    assert!(!text.contains("kg_"), "{text}");
    assert!(!text.contains(KIOSK_KEY_SHA256), "{text}");
    // pets takes only tokens and kiosk has no client id: no key line and no token call for it.
    assert!(!text.contains("API pets takes the key"), "{text}");
    assert!(!text.contains("Authorization: Bearer"), "{text}");

    // The printed call, pasted into sh with API_KEY set, sends the key in that header.
    let call = text
        .lines()
        .skip_while(|l| !l.starts_with("curl -sS -X 'GET' 'http://127.0.0.1:18080/catalog"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    let script = format!("curl() {{ for a in \"$@\"; do printf '%s\\n' \"$a\"; done; }}\n{call}\n");
    let ran = sh(&script, &[("API_KEY", "kg_example")]);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert!(
        stdout(&ran)
            .lines()
            .any(|l| l == "x-catalog-key: kg_example"),
        "{}",
        stdout(&ran)
    );
    // Without the variable the call does not run.
    let ran = sh(&script, &[]);
    assert_ne!(ran.status.code(), Some(0));
    assert!(stderr(&ran).contains("set API_KEY"), "{}", stderr(&ran));
}

#[test]
fn an_application_without_api_keys_gets_no_key_section() {
    let (out, _server) = instructions("shop");
    let text = stdout(&out);
    assert!(!text.contains("## API keys"), "{text}");
}
