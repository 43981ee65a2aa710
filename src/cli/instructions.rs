//! `keygate instructions --input keygate.yaml APPLICATION`: what a consumer needs once its client
//! ids are registered: per client id, the token endpoint and ready-to-run `curl` commands, then a
//! call to a subscribed API with the token.
//!
//! The output is meant to be pasted into a shell, and client ids, endpoints and names come from
//! the declaration and the key manager's discovery document: every value in a command is
//! single-quoted ([`shell_quote`]), and every value in a `#` comment has its line breaks and other
//! control characters escaped ([`comment_safe`]), so no value can end the comment or the quotes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::declaration::model::{ApiDecl, ApplicationDecl, DEFAULT_LISTEN};
use crate::cli::declaration::presets::Preset;
use crate::cli::generate::{self, GenerateError, Loaded};
use crate::config::{Expiry, Security, SubscriptionState};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The declaration (YAML or JSON).
    #[arg(long)]
    pub input: PathBuf,
    /// Application name.
    pub application: String,
    /// Accept plain http discovery URLs on non-loopback hosts.
    #[arg(long)]
    pub allow_http: bool,
}

/// Quotes a value for a POSIX shell: inside single quotes nothing is special, and a `'` itself is
/// written as `'\''` (close, escaped quote, reopen).
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A value for a `#` comment line: control characters (a newline would start a command) are
/// written as `\u{..}` escapes.
pub fn comment_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The scopes a client needs: every scope of every resource of the APIs it is actively
/// subscribed to (a resource needs one of its scopes, so asking for all covers every resource).
pub fn needed_scopes(loaded: &Loaded, application: &str) -> BTreeSet<String> {
    subscribed_apis(loaded, application)
        .flat_map(|api| api.resources.iter().flat_map(|r| r.scopes.iter().cloned()))
        .collect()
}

fn subscribed_apis<'a>(
    loaded: &'a Loaded,
    application: &'a str,
) -> impl Iterator<Item = &'a ApiDecl> + 'a {
    let decl = &loaded.declaration;
    decl.applications
        .iter()
        .filter(move |app| app.name.value == application)
        .flat_map(|app| app.subscriptions.iter())
        .filter(|sub| sub.state != SubscriptionState::Blocked)
        .filter_map(move |sub| decl.apis.iter().find(|api| api.name.value == sub.api.value))
}

/// Renders the instructions, or `None` when the application is not declared.
pub fn render(loaded: &Loaded, application: &str) -> Option<String> {
    let decl = &loaded.declaration;
    let app = decl
        .applications
        .iter()
        .find(|a| a.name.value == application)?;
    let scopes: Vec<String> = needed_scopes(loaded, application).into_iter().collect();
    let scope = scopes.join(" ");
    let listen = decl
        .gateway
        .listen
        .as_ref()
        .map(|l| l.value.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Application {} (environment {})",
        comment_safe(application),
        comment_safe(&decl.gateway.environment.value)
    );
    if app.client_ids.is_empty() {
        let _ = writeln!(
            out,
            "# It has no client ids yet: add one under client_ids in the declaration."
        );
    }
    write_tiers(&mut out, loaded, app);
    let mut secret_index = 0;
    for client in &app.client_ids {
        let found = decl
            .key_managers
            .iter()
            .position(|km| km.name.value == client.key_manager.value)
            .and_then(|i| loaded.discovered.get(i));
        let Some(found) = found else { continue };
        let client_id = &client.client_id.value;
        let _ = writeln!(
            out,
            "\n## Client id {} at key manager {}",
            comment_safe(client_id),
            comment_safe(&client.key_manager.value)
        );
        let Some(token_endpoint) = &found.document.token_endpoint else {
            let _ = writeln!(
                out,
                "# The discovery document has no token_endpoint: ask the key manager's admin."
            );
            continue;
        };
        let _ = writeln!(out, "# Token endpoint: {}", comment_safe(token_endpoint));
        let introspected = decl
            .key_managers
            .iter()
            .find(|km| km.name.value == client.key_manager.value)
            .is_some_and(|km| km.introspection.is_some());
        match (&found.document.introspection_endpoint, introspected) {
            (Some(endpoint), true) => {
                let _ = writeln!(
                    out,
                    "# Opaque (non-JWT) access tokens of this key manager are accepted too: the \
                     gateway checks them at {} (RFC 7662) and caches the answer; send them the \
                     same way (Authorization: Bearer).",
                    comment_safe(endpoint)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "# The gateway accepts JWT access tokens only from this key manager: if it \
                     issues opaque tokens to this client, ask for JWTs (or declare `introspection`)."
                );
            }
        }
        let mut scope_arg = if scope.is_empty() {
            String::new()
        } else {
            format!(
                " \\\n  --data-urlencode {}",
                shell_quote(&format!("scope={scope}"))
            )
        };
        // With `audiences` the gateway refuses a token minted for another resource server: ask
        // for the first accepted one (RFC 8707 `resource`; Auth0 names it `audience`).
        let key_manager = decl
            .key_managers
            .iter()
            .find(|km| km.name.value == client.key_manager.value);
        if let Some((km, audience)) =
            key_manager.and_then(|km| km.audiences.first().map(|aud| (km, aud)))
        {
            let preset = km
                .provider
                .as_ref()
                .and_then(|p| Preset::from_name(&p.value));
            let auth0 = preset == Some(Preset::Auth0);
            let parameter = if auth0 { "audience" } else { "resource" };
            let _ = write!(
                scope_arg,
                " \\\n  --data-urlencode {}",
                shell_quote(&format!("{parameter}={audience}"))
            );
        }
        // The secret and the user's sign-in are read from variables the user sets; a command
        // stops with a message while one is unset (`${NAME:?...}` inside the substitution), and
        // no printed line assigns them.
        let secret = secret_variable(secret_index);
        secret_index += 1;
        let extract = "sed -nE 's/.*\"access_token\" *: *\"([^\"]+)\".*/\\1/p'";
        let _ = writeln!(
            out,
            "\n# Client credentials (the application acts for itself): set {secret} to the client \
             secret of {} first.",
            comment_safe(client_id)
        );
        let _ = writeln!(
            out,
            "TOKEN=$(curl -sS -X POST {} \\\n  -u {}\"${{{secret}:?set {secret} to the client secret first}}\" \\\n  -d grant_type=client_credentials{scope_arg} \\\n  | {extract})\n{TOKEN_REPORT}",
            shell_quote(token_endpoint),
            shell_quote(&format!("{client_id}:")),
        );
        let _ = writeln!(
            out,
            "\n# Password grant (a user signs in; only if the key manager allows it): set \
             {SIGNIN_USER} and {SIGNIN_PASSWORD} (and {secret}) first."
        );
        let _ = writeln!(
            out,
            "TOKEN=$(curl -sS -X POST {} \\\n  -u {}\"${{{secret}:?set {secret} to the client secret first}}\" \\\n  -d grant_type=password \\\n  --data-urlencode \"username=${{{SIGNIN_USER}:?set {SIGNIN_USER} first}}\" \\\n  --data-urlencode \"password=${{{SIGNIN_PASSWORD}:?set {SIGNIN_PASSWORD} first}}\"{scope_arg} \\\n  | {extract})\n{TOKEN_REPORT}",
            shell_quote(token_endpoint),
            shell_quote(&format!("{client_id}:")),
        );
    }
    let call = subscribed_apis(loaded, application)
        .filter(|api| accepts(api, Security::Oauth2))
        .find_map(|api| api.resources.iter().find(|r| !r.public).map(|r| (api, r)));
    match call {
        Some((api, resource)) if !app.client_ids.is_empty() => {
            let path = example_path(&api.base_path.value, &resource.path.value);
            let method = resource.method.value.to_ascii_uppercase();
            let method = if method == "*" || method == "ANY" {
                "GET".to_string()
            } else {
                method
            };
            let _ = writeln!(
                out,
                "\n# Call API {} with the token:",
                comment_safe(&api.name.value)
            );
            let _ = writeln!(
                out,
                "curl -sS -X {} {} \\\n  -H \"Authorization: Bearer ${{TOKEN:?no token yet: run a token request above}}\"",
                shell_quote(&method),
                shell_quote(&format!("http://{listen}{path}"))
            );
        }
        Some(_) => {}
        None => {
            let _ = writeln!(
                out,
                "\n# No active subscription to an API with protected resources that accepts tokens."
            );
        }
    }
    write_api_keys(&mut out, loaded, app, &listen);
    Some(out)
}

/// Whether an API accepts a credential (`security` omitted: tokens only).
fn accepts(api: &ApiDecl, security: Security) -> bool {
    if api.security.is_empty() {
        security == Security::Oauth2
    } else {
        api.security.contains(&security)
    }
}

/// The variable the API-key call reads the key from.
const API_KEY_VARIABLE: &str = "API_KEY";

/// For an application with API keys: their names (never a key: only hashes are declared), and
/// per subscribed API that accepts keys, where the key goes and a call with it.
fn write_api_keys(out: &mut String, loaded: &Loaded, app: &ApplicationDecl, listen: &str) {
    if app.api_keys.is_empty() {
        return;
    }
    let names: Vec<String> = app
        .api_keys
        .iter()
        .map(|key| {
            let expires = key
                .expires
                .as_ref()
                .map(|e| match e {
                    Expiry::Unix(at) => format!(" (expires at Unix time {at})"),
                    Expiry::Text(at) => format!(" (expires {})", comment_safe(at)),
                })
                .unwrap_or_default();
            format!("{}{expires}", comment_safe(&key.name.value))
        })
        .collect();
    let _ = writeln!(
        out,
        "\n## API keys\n# This application has {} API key(s): {}. The gateway keeps only their \
         SHA-256: a key is shown once, by `keygate api-key new`, to whoever made it; ask them. Set \
         {API_KEY_VARIABLE} to the key first.",
        app.api_keys.len(),
        names.join(", ")
    );
    let keyed: Vec<&ApiDecl> = subscribed_apis(loaded, &app.name.value)
        .filter(|api| accepts(api, Security::ApiKey))
        .collect();
    if keyed.is_empty() {
        let _ = writeln!(
            out,
            "# None of its active subscriptions is to an API that accepts API keys."
        );
        return;
    }
    for api in keyed {
        let header = api.api_key.header.to_ascii_lowercase();
        let query = api
            .api_key
            .query
            .as_ref()
            .map(|q| {
                format!(
                    " (or the query parameter {}, removed before the request is forwarded)",
                    comment_safe(q)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n# API {} takes the key in the header {}{query}; never in Authorization.",
            comment_safe(&api.name.value),
            comment_safe(&header)
        );
        let Some(resource) = api.resources.iter().find(|r| !r.public) else {
            continue;
        };
        let path = example_path(&api.base_path.value, &resource.path.value);
        let method = resource.method.value.to_ascii_uppercase();
        let method = if method == "*" || method == "ANY" {
            "GET".to_string()
        } else {
            method
        };
        let _ = writeln!(
            out,
            "curl -sS -X {} {} \\\n  -H {}\"${{{API_KEY_VARIABLE}:?set {API_KEY_VARIABLE} to an API key of the application first}}\"",
            shell_quote(&method),
            shell_quote(&format!("http://{listen}{path}")),
            shell_quote(&format!("{header}: "))
        );
    }
}

/// The variables the password grant reads the user's sign-in from.
const SIGNIN_USER: &str = "SIGNIN_USER";
const SIGNIN_PASSWORD: &str = "SIGNIN_PASSWORD";
/// Printed after each token request: whether `$TOKEN` was set (the extraction prints nothing
/// unless the answer has an `access_token`, so an error answer never ends up in `$TOKEN`).
const TOKEN_REPORT: &str =
    "echo \"${TOKEN:+TOKEN is set}${TOKEN:-no access_token in the answer: check the secret, the grant and the scopes}\"";

/// The variable holding the secret of the application's `index`-th client id (from 0):
/// `CLIENT_SECRET`, then `CLIENT_SECRET_2`, `CLIENT_SECRET_3`, ...
fn secret_variable(index: usize) -> String {
    match index {
        0 => "CLIENT_SECRET".to_string(),
        n => format!("CLIENT_SECRET_{}", n + 1),
    }
}

/// Each subscription with its request budget, and what happens when it is spent.
fn write_tiers(out: &mut String, loaded: &Loaded, app: &ApplicationDecl) {
    if app.subscriptions.is_empty() {
        return;
    }
    let _ = writeln!(out, "# Subscriptions:");
    let mut limited = false;
    for sub in &app.subscriptions {
        let state = match sub.state {
            SubscriptionState::Active => "",
            SubscriptionState::Blocked => " (blocked)",
            SubscriptionState::ProductionOnlyBlocked => " (blocked in production)",
        };
        let tier = sub.tier.as_ref().and_then(|name| {
            loaded
                .declaration
                .tiers
                .iter()
                .find(|t| t.name.value == name.value)
        });
        let budget = match tier {
            Some(tier) => {
                limited = true;
                format!(
                    "tier {}: {} requests per {}",
                    comment_safe(&tier.name.value),
                    tier.requests,
                    comment_safe(&tier.per.value)
                )
            }
            None => "unlimited".to_string(),
        };
        let _ = writeln!(
            out,
            "#   API {}{state}: {budget}",
            comment_safe(&sub.api.value)
        );
    }
    if limited {
        let _ = writeln!(
            out,
            "# Past its budget a request is answered 429 (code rate_limited) with Retry-After:
             # the seconds until the budget's window (aligned to the clock) starts again."
        );
    }
}

/// A concrete path for a template: `{id}` → `1`, `*` → `example`.
fn example_path(base: &str, template: &str) -> String {
    let filled: Vec<String> = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "1".to_string()
            } else if segment == "*" {
                "example".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect();
    let base = base.trim_end_matches('/');
    format!("{base}{}", filled.join("/"))
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    let loaded = match generate::load(&args.input, args.allow_http) {
        Ok(loaded) => loaded,
        Err(GenerateError::Declaration { errors }) => {
            for error in &errors {
                eprintln!("{}:{error}", args.input.display());
            }
            return 1;
        }
        Err(err) => {
            eprintln!("keygate: {}", err.about(&args.input));
            return err.exit_code();
        }
    };
    match render(&loaded, &args.application) {
        Some(text) => {
            print!("{text}");
            0
        }
        None => {
            eprintln!(
                "keygate: no application `{}` in {}",
                args.application,
                args.input.display()
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(x)`y`"), "'$(x)`y`'");
    }

    #[test]
    fn comments_stay_one_line() {
        assert_eq!(comment_safe("a\ntouch x"), "a\\u{a}touch x");
        assert_eq!(comment_safe("a\rb\u{7f}"), "a\\u{d}b\\u{7f}");
        assert_eq!(comment_safe("$(x) 'y'"), "$(x) 'y'");
    }

    #[test]
    fn example_paths() {
        assert_eq!(example_path("/pets/v1", "/pets/{id}"), "/pets/v1/pets/1");
        assert_eq!(example_path("/files", "/*"), "/files/example");
        assert_eq!(example_path("/", "/health"), "/health");
    }
}
