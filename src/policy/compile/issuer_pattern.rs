//! A key manager's issuer, checked and parsed into an [`IssuerPattern`]: the exact issuer, or one
//! `{tenantid}` placeholder with the tenants it allows.

use super::Checker;
use crate::config::{ConfigProblem, KeyManagerConfig, TENANT_PLACEHOLDER};
use crate::policy::issuer::IssuerPattern;

/// The issuer pattern: the exact issuer, or the parts around its one `{tenantid}` with the allowed
/// tenants. Any other brace (a second placeholder among them) is refused.
pub(super) fn issuer(c: &mut Checker, at: &str, km: &KeyManagerConfig) -> IssuerPattern {
    if km.issuer.is_empty() {
        c.push(format!("{at}.issuer"), ConfigProblem::Missing);
        return IssuerPattern::Exact(String::new());
    }
    let split = km.issuer.split_once(TENANT_PLACEHOLDER);
    let braces = match split {
        Some((prefix, suffix)) => prefix.contains(['{', '}']) || suffix.contains(['{', '}']),
        None => km.issuer.contains(['{', '}']),
    };
    if braces {
        c.invalid(
            format!("{at}.issuer"),
            &km.issuer,
            "the only placeholder allowed is one {tenantid}",
        );
    }
    match (split.is_some(), km.tenants.is_empty()) {
        (true, true) => c.push(
            format!("{at}.tenants"),
            ConfigProblem::TemplateWithoutTenants,
        ),
        (false, false) => c.push(
            format!("{at}.tenants"),
            ConfigProblem::TenantsWithoutTemplate,
        ),
        _ => {}
    }
    for (k, tenant) in km.tenants.iter().enumerate() {
        let ok = !tenant.is_empty()
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok {
            c.invalid(
                format!("{at}.tenants[{k}]"),
                tenant,
                "a tenant is letters, digits, '-', '.' or '_'",
            );
        }
    }
    match split {
        Some((prefix, suffix)) => IssuerPattern::Tenant {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            tenants: km.tenants.clone(),
        },
        None => IssuerPattern::Exact(km.issuer.clone()),
    }
}
