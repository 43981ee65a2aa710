//! The filter compiler's verdict placed on the declaration: each plugin-config field path led
//! back to the line that declares it, and a duplicate to the line it collides with.

use super::DeclarationError;
use crate::cli::declaration::model::{line_of, Declaration};
use crate::config::{ConfigErrors, ConfigProblem};

/// The filter compiler's verdict on the plugin config built from `decl`, each problem placed on
/// the declaration's line; in line order (problems without a line last).
pub fn refused(decl: &Declaration, errors: ConfigErrors) -> Vec<DeclarationError> {
    let mut mapped: Vec<DeclarationError> = errors
        .into_iter()
        .map(|error| DeclarationError::Refused {
            line: line_of_field(decl, &error.path),
            other_line: other_line(decl, &error.problem),
            error,
        })
        .collect();
    sort_by_line(&mut mapped);
    mapped
}

/// Source order, problems without a line (0) after the others; stable otherwise.
pub(super) fn sort_by_line(errors: &mut [DeclarationError]) {
    errors.sort_by_key(|e| (e.line() == 0, e.line()));
}

/// For a duplicate, the line of the declaration it collides with.
fn other_line(decl: &Declaration, problem: &ConfigProblem) -> Option<u64> {
    match problem {
        ConfigProblem::DuplicateName { first, .. }
        | ConfigProblem::DuplicateResource { first, .. }
        | ConfigProblem::DuplicateApiKey { first } => Some(line_of_field(decl, first)),
        ConfigProblem::DuplicateBasePath { api, .. } => decl
            .apis
            .iter()
            .find(|a| a.name.value == *api)
            .map(|a| line_of(&a.base_path)),
        ConfigProblem::DuplicateIssuer { key_manager, .. } => decl
            .key_managers
            .iter()
            .find(|km| km.name.value == *key_manager)
            .map(|km| line_of(&km.well_known_url)),
        ConfigProblem::DuplicateClientId {
            client_id,
            key_manager,
            application,
        } => decl
            .applications
            .iter()
            .filter(|app| app.name.value == *application)
            .flat_map(|app| &app.client_ids)
            .find(|c| c.client_id.value == *client_id && c.key_manager.value == *key_manager)
            .map(|c| line_of(&c.client_id)),
        _ => None,
    }
}

/// One step of a field path: `apis[0]` is (`apis`, Some(0)), `path` is (`path`, None).
fn steps(path: &str) -> Vec<(&str, Option<usize>)> {
    path.split('.')
        .map(|step| match step.split_once('[') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix(']').and_then(|n| n.parse::<usize>().ok()),
            ),
            None => (step, None),
        })
        .collect()
}

/// The declaration line of a plugin-config field path. The plugin config mirrors the declaration
/// (same lists, same order), so the path leads to the declared item; a field without a line of its
/// own (scopes, algorithms, ...) takes the line of the item it belongs to, a key manager's issuer and
/// JWKS (from discovery) that of its `well_known_url`. 0 when nothing in the declaration has a line
/// (`settings`).
pub fn line_of_field(decl: &Declaration, path: &str) -> u64 {
    let steps = steps(path);
    let mut rest = steps.iter().copied();
    match rest.next() {
        Some(("environment", None)) => line_of(&decl.gateway.environment),
        Some(("public_urls", index)) => {
            let urls = &decl.gateway.public_urls;
            urls.get(index.unwrap_or(0))
                .map_or(line_of(&decl.gateway.environment), line_of)
        }
        Some(("key_managers", Some(i))) => match decl.key_managers.get(i) {
            Some(km) => match rest.next() {
                Some(("issuer" | "jwks" | "tenants", _)) => line_of(&km.well_known_url),
                Some(("introspection", _)) => match (&km.introspection, rest.next()) {
                    (Some(i), Some(("client_secret_env", _))) => line_of(&i.client_secret_env),
                    (Some(i), _) => line_of(&i.client_id),
                    (None, _) => line_of(&km.name),
                },
                Some(("claims", _)) => km.provider.as_ref().map_or(line_of(&km.name), line_of),
                _ => line_of(&km.name),
            },
            None => 0,
        },
        Some(("apis", Some(i))) => match decl.apis.get(i) {
            Some(api) => match rest.next() {
                Some(("base_path", _)) => line_of(&api.base_path),
                Some(("key_managers", k)) => api
                    .key_managers
                    .get(k.unwrap_or(0))
                    .map_or(line_of(&api.name), line_of),
                Some(("public_urls", k)) => api
                    .public_urls
                    .get(k.unwrap_or(0))
                    .map_or(line_of(&api.name), line_of),
                Some(("resources", Some(r))) => match api.resources.get(r) {
                    Some(resource) => match rest.next() {
                        Some(("path", _)) => line_of(&resource.path),
                        _ => line_of(&resource.method),
                    },
                    None => line_of(&api.name),
                },
                _ => line_of(&api.name),
            },
            None => 0,
        },
        Some(("applications", Some(i))) => match decl.applications.get(i) {
            Some(app) => match rest.next() {
                Some(("client_ids", Some(k))) => match app.client_ids.get(k) {
                    Some(client) => match rest.next() {
                        Some(("key_manager", _)) => line_of(&client.key_manager),
                        _ => line_of(&client.client_id),
                    },
                    None => line_of(&app.name),
                },
                Some(("subscriptions", Some(k))) => match app.subscriptions.get(k) {
                    Some(sub) => match (rest.next(), &sub.tier) {
                        (Some(("tier", _)), Some(tier)) => line_of(tier),
                        _ => line_of(&sub.api),
                    },
                    None => line_of(&app.name),
                },
                Some(("api_keys", Some(k))) => match app.api_keys.get(k) {
                    Some(key) => match rest.next() {
                        Some(("name", _)) => line_of(&key.name),
                        _ => line_of(&key.sha256),
                    },
                    None => line_of(&app.name),
                },
                _ => line_of(&app.name),
            },
            None => 0,
        },
        Some(("tiers", Some(i))) => match decl.tiers.get(i) {
            Some(tier) => match rest.next() {
                Some(("per", _)) => line_of(&tier.per),
                _ => line_of(&tier.name),
            },
            None => 0,
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_split_into_steps() {
        assert_eq!(
            steps("apis[2].resources[10].scopes[0]"),
            [
                ("apis", Some(2)),
                ("resources", Some(10)),
                ("scopes", Some(0))
            ]
        );
        assert_eq!(steps("environment"), [("environment", None)]);
        assert_eq!(steps("x[y]"), [("x", None)]);
    }
}
