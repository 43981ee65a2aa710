//! The key managers: names, issuers, JWKS sources, environments, audiences, algorithms, claim
//! mappings and introspection clients, checked and compiled into [`KeyManager`]s.

use std::collections::HashMap;
use std::sync::Arc;

use super::issuer_pattern::issuer;
use super::{algorithms, is_env_name, Checker};
use crate::config::{
    ClaimMapping, ConfigProblem, IntrospectionConfig, KeyManagerConfig, PluginConfig,
};
use crate::jose::claims::Validation;
use crate::policy::issuer::IssuerPattern;
use crate::policy::mapping::{check_claim_name, Mapping};
use crate::policy::KeyManager;

/// The key managers, each without its client ids yet
/// ([`applications`](fn@super::applications) adds them).
pub(super) fn key_managers(c: &mut Checker, config: &PluginConfig) -> Vec<KeyManager> {
    let mut names = HashMap::new();
    let mut compiled = Vec::with_capacity(config.key_managers.len());
    for (i, km) in config.key_managers.iter().enumerate() {
        let at = format!("key_managers[{i}]");
        if c.name(format!("{at}.name"), &km.name) {
            c.unique(&mut names, format!("{at}.name"), &km.name);
        }
        let pattern = issuer(c, &at, km);
        if let Some(first) = config
            .key_managers
            .iter()
            .take(i)
            .find(|other| other.issuer == km.issuer && environments_overlap(other, km))
        {
            c.push(
                format!("{at}.issuer"),
                ConfigProblem::DuplicateIssuer {
                    issuer: km.issuer.clone(),
                    key_manager: first.name.clone(),
                },
            );
        }
        if km.jwks.cluster.is_empty() {
            c.push(format!("{at}.jwks.cluster"), ConfigProblem::Missing);
        }
        if km.jwks.authority.is_empty() {
            c.push(format!("{at}.jwks.authority"), ConfigProblem::Missing);
        }
        if !km.jwks.path.starts_with('/') {
            c.invalid(
                format!("{at}.jwks.path"),
                &km.jwks.path,
                "must start with '/'",
            );
        }
        for (k, env) in km.environments.iter().enumerate() {
            c.name(format!("{at}.environments[{k}]"), env);
        }
        for (k, aud) in km.audiences.iter().enumerate() {
            c.name(format!("{at}.audiences[{k}]"), aud);
        }
        let algorithms = algorithms(c, &format!("{at}.algorithms"), &km.algorithms);
        if let Some(introspection) = &km.introspection {
            self::introspection(c, &at, introspection);
        }
        let mapping = claims(c, &at, &km.claims);
        let validation = Validation {
            issuer: None,
            audiences: km.audiences.clone(),
            leeway_seconds: config.settings.leeway_seconds,
            require_exp: true,
            algorithms,
        };
        compiled.push(KeyManager {
            name: km.name.clone(),
            issuer: km.issuer.clone(),
            jwks: km.jwks.clone(),
            audiences: km.audiences.clone(),
            algorithms: km.algorithms.clone(),
            enabled_here: km.environments.is_empty()
                || km.environments.contains(&config.environment),
            dpop: km.dpop,
            mapping,
            introspection: km.introspection.clone(),
            exact_validation: match &pattern {
                IssuerPattern::Exact(issuer) => Some(Arc::new(Validation {
                    issuer: Some(issuer.clone()),
                    ..validation.clone()
                })),
                IssuerPattern::Tenant { .. } => None,
            },
            validation,
            pattern,
        });
    }
    compiled
}

/// Where a key manager's tokens carry the client id, scopes, groups and subject: at least one client id
/// claim, and every name a claim or a dotted path without empty parts.
fn claims(c: &mut Checker, at: &str, claims: &ClaimMapping) -> Mapping {
    if claims.client_id.is_empty() {
        c.push(format!("{at}.claims.client_id"), ConfigProblem::Missing);
    }
    let lists = [
        ("client_id", &claims.client_id),
        ("scopes", &claims.scopes),
        ("groups", &claims.groups),
        ("subject", &claims.subject),
    ];
    for (field, names) in lists {
        for (k, name) in names.iter().enumerate() {
            if let Err(reason) = check_claim_name(name) {
                c.invalid(format!("{at}.claims.{field}[{k}]"), name, reason);
            }
        }
    }
    Mapping::new(claims)
}

fn introspection(c: &mut Checker, at: &str, i: &IntrospectionConfig) {
    let at = format!("{at}.introspection");
    if i.endpoint.is_empty() {
        c.push(at.clone(), ConfigProblem::NoIntrospectionEndpoint);
    } else {
        if i.cluster.is_empty() {
            c.push(format!("{at}.cluster"), ConfigProblem::Missing);
        }
        if i.authority.is_empty() {
            c.push(format!("{at}.authority"), ConfigProblem::Missing);
        }
        if !i.path.starts_with('/') {
            c.invalid(format!("{at}.path"), &i.path, "must start with '/'");
        }
    }
    c.name(format!("{at}.client_id"), &i.client_id);
    if i.client_secret_env.is_empty() {
        c.push(format!("{at}.client_secret_env"), ConfigProblem::Missing);
    } else if !is_env_name(&i.client_secret_env) {
        c.invalid(
            format!("{at}.client_secret_env"),
            &i.client_secret_env,
            "an environment variable name is letters, digits and '_', not starting with a digit",
        );
    }
}

/// Two key managers with one issuer are ambiguous only where both are trusted.
fn environments_overlap(a: &KeyManagerConfig, b: &KeyManagerConfig) -> bool {
    a.environments.is_empty()
        || b.environments.is_empty()
        || a.environments.iter().any(|e| b.environments.contains(e))
}
