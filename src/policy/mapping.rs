//! Claim mapping: where a key manager puts the client id, scopes, groups and subject in its
//! tokens (and introspection answers).
//!
//! A configured claim name is first looked up as a top-level key (so namespaced claims such as
//! `https://acme.example/roles` work), then, if absent, as a dotted path into nested objects
//! (`realm_access.roles`, `resource_access.app.roles`).
//!
//! The client id may be configured as several claims (`client_id`, `azp`, ...): a token carrying
//! two of them with different values is refused as ambiguous rather than read by claim order, since
//! which one names the caller (token exchange, delegation) is the key manager's business, not ours.

use serde_json::{Map, Value};

use crate::config::ClaimMapping;

/// A claim mapping checked at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    client_id: Vec<String>,
    scopes: Vec<String>,
    groups: Vec<String>,
    subject: Vec<String>,
}

impl Mapping {
    pub fn new(config: &ClaimMapping) -> Mapping {
        Mapping {
            client_id: config.client_id.clone(),
            scopes: config.scopes.clone(),
            groups: config.groups.clone(),
            subject: config.subject.clone(),
        }
    }

    /// The subject: the first configured subject claim present as a non-empty string.
    pub fn subject<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c str> {
        self.subject
            .iter()
            .filter_map(|name| lookup(claims, name)?.as_str())
            .find(|value| !value.is_empty())
    }

    /// The client id: every configured claim present as a non-empty string must agree.
    /// Claims that are absent, empty or not strings are skipped.
    pub fn client_id<'c>(&self, claims: &'c Map<String, Value>) -> Result<&'c str, ClientIdError> {
        let mut present = self.client_id.iter().filter_map(|name| {
            let value = lookup(claims, name)?.as_str()?;
            (!value.is_empty()).then_some((name, value))
        });
        let (first_name, first) = present.next().ok_or(ClientIdError::Missing)?;
        match present.find(|(_, value)| value != &first) {
            None => Ok(first),
            Some((second_name, _)) => Err(ClientIdError::Ambiguous {
                first: first_name.clone(),
                second: second_name.clone(),
            }),
        }
    }

    /// The union, in order and without repeats, of every configured scope claim: a string is split
    /// on spaces (`scope`, Entra `scp`), an array contributes its strings (Okta `scp`, `roles`).
    pub fn scopes(&self, claims: &Map<String, Value>) -> Vec<String> {
        collect(claims, &self.scopes, true)
    }

    /// The union of every configured group claim: an array of strings or a single string.
    pub fn groups(&self, claims: &Map<String, Value>) -> Vec<String> {
        collect(claims, &self.groups, false)
    }
}

/// Why a verified token yields no client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdError {
    /// No configured client id claim is a non-empty string.
    Missing,
    /// Two configured claims (named here) carry different client ids.
    Ambiguous { first: String, second: String },
}

/// Check a configured claim name: non-empty, and if dotted, no empty parts.
pub fn check_claim_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a claim name must not be empty");
    }
    if name.split('.').any(str::is_empty) {
        return Err("a dotted claim path must not have empty parts");
    }
    Ok(())
}

/// The value of a claim: the exact key, else a dotted path.
pub fn lookup<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn collect(claims: &Map<String, Value>, names: &[String], split_strings: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |item: &str| {
        if !item.is_empty() && !out.iter().any(|seen| seen == item) {
            out.push(item.to_string());
        }
    };
    for name in names {
        match lookup(claims, name) {
            Some(Value::String(text)) if split_strings => text.split(' ').for_each(&mut push),
            Some(Value::String(text)) => push(text),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut push),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn mapping(client_id: &[&str], scopes: &[&str], groups: &[&str]) -> Mapping {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Mapping::new(&ClaimMapping {
            client_id: s(client_id),
            scopes: s(scopes),
            groups: s(groups),
            subject: s(&["sub"]),
        })
    }

    #[test]
    fn client_id_is_the_one_value_of_the_present_claims() {
        let m = Mapping::new(&ClaimMapping::default());
        assert_eq!(m.client_id(&claims(json!({"cid": "c"}))), Ok("c"));
        assert_eq!(
            m.client_id(&claims(json!({"client_id": "a", "azp": "a"}))),
            Ok("a")
        );
        // Non-strings and empty strings are skipped, not stringified.
        assert_eq!(
            m.client_id(&claims(json!({"client_id": 5, "azp": "", "appid": "x"}))),
            Ok("x")
        );
        assert_eq!(
            m.client_id(&claims(json!({"sub": "u"}))),
            Err(ClientIdError::Missing)
        );
    }

    #[test]
    fn different_client_ids_are_ambiguous() {
        let m = mapping(&["client_id", "azp", "cid"], &[], &[]);
        assert_eq!(
            m.client_id(&claims(json!({"client_id": "a", "azp": "b"}))),
            Err(ClientIdError::Ambiguous {
                first: "client_id".into(),
                second: "azp".into()
            })
        );
        // Agreeing claims before the one that differs do not hide it.
        assert_eq!(
            m.client_id(&claims(json!({"client_id": "a", "azp": "a", "cid": "b"}))),
            Err(ClientIdError::Ambiguous {
                first: "client_id".into(),
                second: "cid".into()
            })
        );
        // Case is significant: client ids are compared exactly.
        assert!(m
            .client_id(&claims(json!({"client_id": "a", "azp": "A"})))
            .is_err());
    }

    #[test]
    fn scopes_from_string_and_array() {
        let m = mapping(&[], &["scope", "scp", "roles"], &[]);
        let c = claims(json!({"scope": "a b  a", "scp": ["c", 1, "b"], "roles": "d e"}));
        assert_eq!(m.scopes(&c), vec!["a", "b", "c", "d", "e"]);
        assert!(m.scopes(&claims(json!({"scope": 3}))).is_empty());
    }

    #[test]
    fn groups_from_nested_paths() {
        let m = mapping(
            &[],
            &[],
            &["groups", "realm_access.roles", "resource_access.app.roles"],
        );
        let c = claims(json!({
            "groups": "admins",
            "realm_access": {"roles": ["r1", "r2"]},
            "resource_access": {"app": {"roles": ["a1"]}, "other": {"roles": ["x"]}}
        }));
        assert_eq!(m.groups(&c), vec!["admins", "r1", "r2", "a1"]);
        // A group string is one group, never split.
        let c = claims(json!({"groups": "a b"}));
        assert_eq!(m.groups(&c), vec!["a b"]);
    }

    #[test]
    fn namespaced_claim_names_are_exact_keys_first() {
        let m = mapping(&[], &[], &["https://acme.example/roles"]);
        let c = claims(json!({"https://acme.example/roles": ["x"]}));
        assert_eq!(m.groups(&c), vec!["x"]);
        assert_eq!(lookup(&c, "https://acme"), None);
        assert_eq!(lookup(&claims(json!({"a": 1})), "a.b"), None);
        assert_eq!(
            lookup(&claims(json!({"a": {"b": 2}})), "a.b"),
            Some(&json!(2))
        );
    }

    #[test]
    fn claim_names_are_checked() {
        assert!(check_claim_name("realm_access.roles").is_ok());
        assert!(check_claim_name("").is_err());
        assert!(check_claim_name("a..b").is_err());
        assert!(check_claim_name(".a").is_err());
    }
}
