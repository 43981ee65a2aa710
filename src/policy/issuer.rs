//! Issuer patterns: an exact `iss`, or an Entra ID multi-tenant issuer with a `{tenantid}`
//! placeholder whose tenant comes from the token's `tid` and must be allow-listed.

use serde_json::{Map, Value};

/// A compiled issuer (the compiler parses the configured one, `policy::compile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerPattern {
    Exact(String),
    /// The issuer's text before and after its `{tenantid}`, and the allowed tenants.
    Tenant {
        prefix: String,
        suffix: String,
        tenants: Vec<String>,
    },
}

/// How a token's `iss` relates to a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerFit {
    /// The exact issuer string the token must carry.
    Matches(String),
    /// The shape fits but the tenant is not allow-listed.
    TenantNotAllowed,
    NoMatch,
}

impl IssuerPattern {
    /// Check `iss` (and, for a tenant pattern, `tid` from the not yet verified claims: the exact
    /// issuer returned here is then verified with the signature, and it contains the tenant).
    pub fn fit(&self, iss: &str, claims: &Map<String, Value>) -> IssuerFit {
        match self {
            IssuerPattern::Exact(issuer) if issuer == iss => IssuerFit::Matches(iss.to_string()),
            IssuerPattern::Exact(_) => IssuerFit::NoMatch,
            IssuerPattern::Tenant {
                prefix,
                suffix,
                tenants,
            } => {
                let Some(tenant) = iss
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                else {
                    return IssuerFit::NoMatch;
                };
                let tid = claims.get("tid").and_then(Value::as_str);
                if tenant.is_empty() || tenant.contains('/') || tid != Some(tenant) {
                    return IssuerFit::NoMatch;
                }
                if tenants.iter().any(|t| t == tenant) {
                    IssuerFit::Matches(iss.to_string())
                } else {
                    IssuerFit::TenantNotAllowed
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn exact() {
        let p = IssuerPattern::Exact("https://idp/".into());
        let none = Map::new();
        assert_eq!(
            p.fit("https://idp/", &none),
            IssuerFit::Matches("https://idp/".into())
        );
        assert_eq!(p.fit("https://idp", &none), IssuerFit::NoMatch);
        assert_eq!(p.fit("HTTPS://IDP/", &none), IssuerFit::NoMatch);
    }

    #[test]
    fn tenant_template() {
        let p = IssuerPattern::Tenant {
            prefix: "https://login.microsoftonline.com/".into(),
            suffix: "/v2.0".into(),
            tenants: vec!["7a1b".into()],
        };
        let iss = "https://login.microsoftonline.com/7a1b/v2.0";
        assert_eq!(
            p.fit(iss, &claims(json!({"tid": "7a1b"}))),
            IssuerFit::Matches(iss.into())
        );
        // tid must agree with the issuer.
        assert_eq!(
            p.fit(iss, &claims(json!({"tid": "other"}))),
            IssuerFit::NoMatch
        );
        assert_eq!(p.fit(iss, &claims(json!({}))), IssuerFit::NoMatch);
        let other = "https://login.microsoftonline.com/9999/v2.0";
        assert_eq!(
            p.fit(other, &claims(json!({"tid": "9999"}))),
            IssuerFit::TenantNotAllowed
        );
        let sneaky = "https://login.microsoftonline.com/a/b/v2.0";
        assert_eq!(
            p.fit(sneaky, &claims(json!({"tid": "a/b"}))),
            IssuerFit::NoMatch
        );
        let empty = "https://login.microsoftonline.com//v2.0";
        assert_eq!(
            p.fit(empty, &claims(json!({"tid": ""}))),
            IssuerFit::NoMatch
        );
    }
}
