//! Identity of an authorized caller: the headers forwarded upstream and the access-log metadata.
//!
//! Every header keygate adds starts with the configured prefix, and the shell removes every incoming
//! header with that prefix first, in any spelling an upstream may merge with it, so a client can
//! never forge one.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::policy::api_keys::KeyAccess;
use crate::policy::tier::Budget;
use crate::policy::Access;

/// The kind of credential a caller was authorized with (`<prefix>credential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An OAuth2 access token.
    OAuth2,
    /// An application's API key.
    ApiKey,
}

impl Credential {
    /// The header value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            Credential::OAuth2 => "oauth2",
            Credential::ApiKey => "api_key",
        }
    }
}

/// Who called, established from a verified token and the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub application: String,
    pub client_id: String,
    /// The token's subject (the key manager's `claims.subject`, default `sub`), when present.
    pub subject: Option<String>,
    pub key_manager: String,
    /// Every scope the token carries (not only the ones the resource asked for).
    pub scopes: Vec<String>,
    pub api: String,
    pub api_version: String,
    /// The matched resource, `METHOD template` as configured (e.g. `GET /pets/{id}`).
    pub resource: String,
    /// The subscription's tier and its counter (`None`: unlimited), shared with the policy.
    pub budget: Option<Arc<Budget>>,
    /// What the caller was authorized with.
    pub credential: Credential,
    /// The API key's configured name, for a caller with an API key.
    pub api_key: Option<String>,
}

/// The header suffixes keygate adds, after the prefix.
const SUFFIXES: [&str; 9] = [
    "application",
    "client-id",
    "subject",
    "key-manager",
    "scopes",
    "api",
    "tier",
    "credential",
    "api-key",
];

/// The exact names of the identity headers for a prefix (all lower case).
pub fn identity_header_names(prefix: &str) -> Vec<String> {
    SUFFIXES
        .iter()
        .map(|suffix| format!("{}{suffix}", prefix.to_ascii_lowercase()))
        .collect()
}

/// Whether an incoming header must be removed: it starts with the identity prefix, ignoring ASCII
/// case and treating `-` and `_` as the same. Envoy and Istio sidecars accept header names with
/// underscores by default, and CGI, WSGI, Rack, PHP and many frameworks read `X-Keygate_Client-Id`
/// as `x-keygate-client-id` (both become `HTTP_X_KEYGATE_CLIENT_ID`), so a forged spelling would
/// merge with (or shadow) the real header. Stripping by prefix also covers headers a later version
/// may add.
pub fn is_identity_header(prefix: &str, name: &str) -> bool {
    let fold = |b: u8| match b {
        b'_' => b'-',
        _ => b.to_ascii_lowercase(),
    };
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(got, want)| fold(got) == fold(want))
}

impl Identity {
    /// The identity of a caller the policy granted `access`.
    pub fn new(access: Access<'_>) -> Identity {
        Identity {
            application: access.application.to_string(),
            client_id: access.client_id,
            subject: access.subject,
            key_manager: access.key_manager.to_string(),
            scopes: access.scopes,
            api: access.api.name.clone(),
            api_version: access.api.version.clone(),
            resource: [access.resource.method.as_str(), " ", &access.resource.path].concat(),
            budget: access.budget,
            credential: Credential::OAuth2,
            api_key: None,
        }
    }

    /// The identity of a caller whose API key the policy granted `access`: no client id, subject,
    /// key manager or scopes.
    pub fn for_api_key(access: KeyAccess<'_>) -> Identity {
        Identity {
            application: access.application.to_string(),
            client_id: String::new(),
            subject: None,
            key_manager: String::new(),
            scopes: Vec::new(),
            api: access.api.name.clone(),
            api_version: access.api.version.clone(),
            resource: [access.resource.method.as_str(), " ", &access.resource.path].concat(),
            budget: access.budget,
            credential: Credential::ApiKey,
            api_key: Some(access.key_name.to_string()),
        }
    }

    /// The headers to add upstream, `(name, value)`; values are made safe for a header line.
    /// The subject header is left out when the token has no subject; an API key's identity has
    /// the application, `api-key` (the key's name), the API and the tier.
    pub fn headers(&self, prefix: &str) -> Vec<(String, String)> {
        let prefix = prefix.to_ascii_lowercase();
        if let Some(name) = &self.api_key {
            let mut headers = vec![
                (
                    named(&prefix, "application"),
                    header_value(&self.application),
                ),
                (named(&prefix, "api-key"), header_value(name)),
                (named(&prefix, "api"), header_value(&self.api)),
            ];
            if let Some(budget) = &self.budget {
                headers.push((named(&prefix, "tier"), header_value(&budget.tier.name)));
            }
            headers.push((
                named(&prefix, "credential"),
                self.credential.label().to_string(),
            ));
            return headers;
        }
        let mut headers = vec![
            (
                named(&prefix, "application"),
                header_value(&self.application),
            ),
            (named(&prefix, "client-id"), header_value(&self.client_id)),
        ];
        if let Some(subject) = &self.subject {
            headers.push((named(&prefix, "subject"), header_value(subject)));
        }
        headers.push((
            named(&prefix, "key-manager"),
            header_value(&self.key_manager),
        ));
        headers.push((
            named(&prefix, "scopes"),
            header_value(&self.scopes.join(" ")),
        ));
        headers.push((named(&prefix, "api"), header_value(&self.api)));
        // Envoy's rate-limit filter (fleet mode) builds its descriptors from these three.
        if let Some(budget) = &self.budget {
            headers.push((named(&prefix, "tier"), header_value(&budget.tier.name)));
        }
        headers.push((
            named(&prefix, "credential"),
            self.credential.label().to_string(),
        ));
        headers
    }

    /// Dynamic metadata for access logs (`keygate` namespace in the shell).
    pub fn metadata(&self) -> Value {
        json!({
            "application": self.application,
            "client_id": self.client_id,
            "subject": self.subject,
            "key_manager": self.key_manager,
            "scopes": self.scopes,
            "api": self.api,
            "api_version": self.api_version,
            "resource": self.resource,
            "tier": self.budget.as_ref().map(|b| b.tier.name.as_str()),
            "credential": self.credential.label(),
            "api_key": self.api_key,
        })
    }
}

/// Percent-encode control bytes (so no CR/LF/NUL reaches a header line) and `%` itself (so two
/// different claim values never produce the same header value). Other text is kept.
fn header_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() || c == '%' {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `prefix` then `name`, built without the formatting machinery (once per authorization).
fn named(prefix: &str, name: &str) -> String {
    let mut header = String::with_capacity(prefix.len() + name.len());
    header.push_str(prefix);
    header.push_str(name);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            application: "shop".into(),
            client_id: "c1".into(),
            subject: Some("alice\r\nx-keygate-application: admin".into()),
            key_manager: "km".into(),
            scopes: vec!["a".into(), "b".into()],
            api: "pets".into(),
            api_version: "v1".into(),
            resource: "GET /pets".into(),
            budget: None,
            credential: Credential::OAuth2,
            api_key: None,
        }
    }

    #[test]
    fn headers_are_prefixed_and_sanitized() {
        let h = identity().headers("X-Keygate-");
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-keygate-application"), Some("shop"));
        assert_eq!(get("x-keygate-client-id"), Some("c1"));
        assert_eq!(
            get("x-keygate-subject"),
            Some("alice%0D%0Ax-keygate-application: admin")
        );
        assert_eq!(get("x-keygate-key-manager"), Some("km"));
        assert_eq!(get("x-keygate-scopes"), Some("a b"));
        assert_eq!(get("x-keygate-api"), Some("pets"));
        assert_eq!(get("x-keygate-credential"), Some("oauth2"));
        assert_eq!(h.len(), 7);
        for (name, value) in &h {
            assert!(identity_header_names("x-keygate-").contains(name));
            assert!(!value.chars().any(|c| c.is_ascii_control()));
        }
    }

    #[test]
    fn no_subject_no_header() {
        let mut id = identity();
        id.subject = None;
        assert!(!id.headers("x-k-").iter().any(|(k, _)| k == "x-k-subject"));
        assert_eq!(id.metadata()["subject"], Value::Null);
    }

    #[test]
    fn percent_is_encoded_so_values_stay_distinct() {
        assert_eq!(header_value("a%0Ab"), "a%250Ab");
        assert_eq!(header_value("a\nb"), "a%0Ab");
        assert_eq!(header_value("café"), "café");
    }

    #[test]
    fn prefix_test_is_case_insensitive() {
        assert!(is_identity_header("x-keygate-", "X-KeyGate-Application"));
        assert!(is_identity_header("x-keygate-", "x-keygate-anything"));
        assert!(!is_identity_header("x-keygate-", "x-keygat"));
        assert!(!is_identity_header("x-keygate-", "authorization"));
        // A multi-byte character at the cut must not panic.
        assert!(!is_identity_header("x-keygate-", "x-keygat\u{e9}-a"));
    }

    #[test]
    fn underscore_spellings_are_identity_headers_too() {
        for name in [
            "x-keygate_client-id",
            "x_keygate_client_id",
            "X_KEYGATE_APPLICATION",
            "X-Keygate_Subject",
            "x_keygate-",
        ] {
            assert!(is_identity_header("x-keygate-", name), "{name}");
        }
        // A prefix configured with underscores strips the dashed spelling as well.
        assert!(is_identity_header("x_id_", "X-Id-Client-Id"));
        assert!(!is_identity_header("x-keygate-", "x-keygate"));
        assert!(!is_identity_header("x-keygate-", "x.keygate-client-id"));
        assert!(!is_identity_header("x-keygate-", "xkeygate-client-id"));
    }

    #[test]
    fn metadata_has_every_field() {
        let m = identity().metadata();
        assert_eq!(m["application"], "shop");
        assert_eq!(m["scopes"], json!(["a", "b"]));
        assert_eq!(m["resource"], "GET /pets");
        assert_eq!(m["api_version"], "v1");
    }
}
