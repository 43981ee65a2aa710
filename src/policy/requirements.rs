//! What a resource requires of a token beyond "one of these scopes" and "one of these groups":
//! every scope of `scopes_all`, and claim conditions (`claims`: each named claim holds one of its
//! accepted values; all conditions must hold).
//!
//! A claim is found as the claim mapping finds its claims ([`super::mapping::lookup`]): the exact
//! name first, then a dotted path into nested objects. A claim matches when it is a string equal
//! to an accepted value, an array with an element equal to one (elements that are strings,
//! numbers or booleans), or a number or boolean whose JSON text (`42`, `true`) is one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::compile::Checker;
use super::mapping::{check_claim_name, lookup};
use super::refusal::AccessRefusal;
use super::Resource;
use crate::config::ConfigProblem;

/// One claim condition: `claim` must hold one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    /// A claim name or dotted path, as configured.
    pub claim: String,
    pub values: Vec<String>,
}

impl ClaimCondition {
    /// Whether the claims satisfy this condition.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        match lookup(claims, &self.claim) {
            Some(Value::Array(items)) => items.iter().any(|item| self.accepts(item)),
            Some(value) => self.accepts(value),
            None => false,
        }
    }

    fn accepts(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => self.values.iter().any(|v| v == text),
            Value::Number(_) | Value::Bool(_) => {
                let text = value.to_string();
                self.values.contains(&text)
            }
            _ => false,
        }
    }
}

/// Whether a resource needs anything only an access token carries (scopes, groups, claims).
pub fn needs_token(resource: &Resource) -> bool {
    !resource.scopes.is_empty()
        || !resource.groups.is_empty()
        || !resource.scopes_all.is_empty()
        || !resource.claims.is_empty()
}

/// Every scope of the resource's `scopes_all` must be among the token's `scopes`.
pub fn check_all_scopes(resource: &Resource, scopes: &[String]) -> Result<(), AccessRefusal> {
    let missing: Vec<String> = resource
        .scopes_all
        .iter()
        .filter(|s| !scopes.contains(s))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AccessRefusal::MissingScopes {
            required: resource.scopes_all.clone(),
            missing,
        })
    }
}

/// Every claim condition of the resource must hold; the first that does not is named.
pub fn check_claims(resource: &Resource, claims: &Map<String, Value>) -> Result<(), AccessRefusal> {
    match resource.claims.iter().find(|c| !c.holds(claims)) {
        None => Ok(()),
        Some(failed) => Err(AccessRefusal::ClaimNotSatisfied {
            claim: failed.claim.clone(),
            accepted: failed.values.clone(),
        }),
    }
}

/// RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
pub(super) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// `scopes_all` (`at` is the resource's path): scope tokens, each listed once.
pub(super) fn compile_all_scopes(c: &mut Checker, at: &str, scopes: &[String]) -> Vec<String> {
    for (k, scope) in scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            c.invalid(
                format!("{at}.scopes_all[{k}]"),
                scope,
                "a scope is visible ASCII without '\"' or '\\'",
            );
        } else if scopes.iter().take(k).any(|s| s == scope) {
            c.invalid(
                format!("{at}.scopes_all[{k}]"),
                scope,
                "the scope is listed twice",
            );
        }
    }
    scopes.to_vec()
}

/// `claims` (`at` is the resource's path): a valid claim name or dotted path, at least one
/// accepted value, each non-empty.
pub(super) fn compile_claims(
    c: &mut Checker,
    at: &str,
    claims: &BTreeMap<String, Vec<String>>,
) -> Vec<ClaimCondition> {
    let mut conditions = Vec::with_capacity(claims.len());
    for (claim, values) in claims {
        let path = format!("{at}.claims.{claim}");
        if let Err(reason) = check_claim_name(claim) {
            c.invalid(path.clone(), claim, reason);
        }
        if values.is_empty() {
            c.push(path.clone(), ConfigProblem::Missing);
        }
        for (k, value) in values.iter().enumerate() {
            if value.is_empty() || value.chars().any(char::is_control) {
                c.invalid(
                    format!("{path}[{k}]"),
                    value,
                    "an accepted claim value is non-empty, without control characters",
                );
            }
        }
        conditions.push(ClaimCondition {
            claim: claim.clone(),
            values: values.clone(),
        });
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn condition(claim: &str, values: &[&str]) -> ClaimCondition {
        ClaimCondition {
            claim: claim.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn strings_arrays_nested_paths_numbers_and_booleans() {
        let c = claims(json!({
            "tenant": "acme",
            "realm_access": {"roles": ["viewer", "admin"]},
            "level": 3,
            "email_verified": true,
            "https://acme.example/team": "blue",
            "obj": {"a": 1}
        }));
        assert!(condition("tenant", &["globex", "acme"]).holds(&c));
        assert!(!condition("tenant", &["globex"]).holds(&c));
        assert!(condition("realm_access.roles", &["admin"]).holds(&c));
        assert!(!condition("realm_access.roles", &["owner"]).holds(&c));
        assert!(condition("level", &["3"]).holds(&c));
        assert!(condition("email_verified", &["true"]).holds(&c));
        assert!(!condition("email_verified", &["false"]).holds(&c));
        assert!(condition("https://acme.example/team", &["blue"]).holds(&c));
        assert!(!condition("missing", &["x"]).holds(&c));
        assert!(!condition("obj", &["{\"a\":1}"]).holds(&c));
    }
}
