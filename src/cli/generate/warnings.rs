//! Warnings about a declaration that `generate` accepts: a JWKS that cannot be fetched
//! (`--check`), and opaque tokens introspected at more than one key manager.

use super::Loaded;
use crate::cli::declaration::model::{line_of, Declaration};
use crate::cli::discovery::http::{self, HttpGetError};
use crate::cli::discovery::oidc::CheckedDiscovery;

/// `--check`: each key manager whose discovery was fetched gets its JWKS fetched too, and one that
/// cannot be (unreachable, not 200, not a JWKS) is a warning with its URL: Envoy would start, and
/// refuse every token of that key manager with 503 until the JWKS answers. An inline `discovery:`
/// means nothing of that key manager is fetched, so its JWKS is not either.
pub(super) fn jwks_warnings(decl: &Declaration, discovered: &[CheckedDiscovery]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (km, found) in decl.key_managers.iter().zip(discovered) {
        if km.discovery.is_some() {
            continue;
        }
        let url = found.jwks_uri.to_string();
        let problem = match http::get_json::<serde_json::Value>(&url) {
            Ok(jwks) if jwks.get("keys").is_some_and(serde_json::Value::is_array) => continue,
            Ok(_) => "answered JSON without a \"keys\" array".to_string(),
            Err(HttpGetError::Transport { detail, .. }) => format!("cannot be fetched: {detail}"),
            Err(HttpGetError::Status { status, .. }) => format!("answered HTTP {status}"),
            Err(HttpGetError::NotJson { detail, .. }) => format!("did not answer a JWKS: {detail}"),
        };
        warnings.push(format!(
            "line {}: warning: key manager {}: JWKS {url} {problem}; Envoy would answer its \
             tokens 503 until it can be fetched",
            line_of(&km.well_known_url),
            km.name.value
        ));
    }
    warnings
}

/// One warning per API whose opaque tokens would be introspected at more than one key manager
/// (`line L: warning: ...`): they are asked in declaration order, so a token issued by a later
/// one is disclosed to the earlier ones. `apis[].key_managers` routes them to one.
pub fn introspection_warnings(loaded: &Loaded) -> Vec<String> {
    let policy = &loaded.policy;
    let decl = &loaded.declaration;
    let mut warnings = Vec::new();
    for (i, api) in decl.apis.iter().enumerate() {
        let route = crate::policy::RouteMatch {
            api: crate::policy::ApiId::new(i),
            resource: 0,
        };
        let asked = policy.introspection_order_for(&route);
        if asked.len() < 2 {
            continue;
        }
        let names: Vec<&str> = asked
            .iter()
            .filter_map(|&km| policy.key_manager(km).map(|m| m.name.as_str()))
            .collect();
        warnings.push(format!(
            "line {}: warning: API {}: an opaque token is introspected at key managers {} in \
             this order, so a token issued by a later one is sent to the earlier ones; list the \
             one that issues this API's tokens in `apis[].key_managers`",
            line_of(&api.name),
            api.name.value,
            names.join(", ")
        ));
    }
    warnings
}
