//! The configuration compiler: one pass over a parsed [`PluginConfig`] that judges every field
//! and builds the [`Policy`] out of what it parsed.
//!
//! Every rule names its field path. A problem is pushed and the walk goes on, so one run reports
//! every problem, in field order, and only a run without any yields the policy. What is parsed to
//! be judged (a base path, a method, a route template, an issuer pattern, a tier's window, the
//! accepted algorithms, a claim mapping) is the value the policy keeps: nothing is parsed twice,
//! and there is no second pass that "cannot fail".
//!
//! This runs once at `on_configure` (and in `keygate generate`, on the configuration it writes),
//! so the request path can rely on a configuration that is consistent: names resolve, client ids
//! are unambiguous, templates compile.
//!
//! The checks of each part live in a file of their own: `key_managers` (with `issuer_pattern`),
//! `apis`, `tiers`, `applications` (inline or the directory), `settings` and `backend_jwt`. This
//! file holds the pass that calls them in order, the [`Checker`] they push problems to, and the
//! checks more than one of them uses.

mod apis;
mod applications;
mod backend_jwt;
mod issuer_pattern;
mod key_managers;
mod settings;
mod tiers;

use std::collections::HashMap;

use self::apis::apis;
use self::applications::{applications, directory};
use self::backend_jwt::backend_jwt;
use self::key_managers::key_managers;
use self::settings::settings;
use self::tiers::tiers;
use super::api_keys::ApiKeys;
use super::applications::Catalog;
use super::{accepted_algorithms, Policy};
use crate::config::{ConfigError, ConfigErrors, ConfigProblem, PluginConfig, SUPPORTED_ALGORITHMS};

impl Policy {
    /// Parse and compile the plugin configuration (what `on_configure` calls, and what
    /// `keygate generate` runs on the plugin config it writes).
    pub fn from_json(bytes: &[u8]) -> Result<Policy, ConfigErrors> {
        Policy::compile(PluginConfig::parse(bytes)?)
    }

    /// The configuration compiler: every problem with its field path, or the policy. The checks
    /// run once, here; nothing else judges a configuration.
    pub fn compile(cfg: PluginConfig) -> Result<Policy, ConfigErrors> {
        let mut c = Checker { errors: Vec::new() };
        if c.name("environment".into(), &cfg.environment) && cfg.environment.contains(' ') {
            c.invalid("environment", &cfg.environment, "spaces are not allowed");
        }
        let key_managers = key_managers(&mut c, &cfg);
        let (apis, router) = apis(&mut c, &cfg, &key_managers);
        let tiers = tiers(&mut c, &cfg.tiers);
        let mut catalog = Catalog::new(
            cfg.key_managers.iter().map(|km| km.name.clone()).collect(),
            cfg.apis.iter().map(|api| api.name.clone()).collect(),
            &cfg.tiers,
        );
        for ((_, compiled), tier) in catalog.tiers.iter_mut().zip(tiers) {
            *compiled = tier;
        }
        let mut api_keys = ApiKeys::default();
        let applications = applications(&mut c, &cfg, &catalog, &mut api_keys);
        if let Some(directory) = &cfg.directory {
            self::directory(&mut c, directory, !cfg.applications.is_empty());
        }
        let dpop_algorithms = settings(&mut c, &cfg.settings);
        backend_jwt(&mut c, &cfg);
        if let Some(errors) = ConfigErrors::from_vec(c.errors) {
            return Err(errors);
        }
        let dpop_algs = dpop_algorithms.join(" ");
        Ok(Policy {
            environment: cfg.environment,
            settings: cfg.settings,
            key_managers,
            apis,
            applications,
            catalog,
            directory: cfg.directory,
            limiter: cfg.limiter,
            router,
            dpop_algorithms,
            dpop_algs,
            api_keys,
            backend_signing: cfg.backend_jwt,
        })
    }
}

/// Collects problems with their paths while the policy is built.
pub(super) struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    pub(super) fn push(&mut self, path: impl Into<String>, problem: ConfigProblem) {
        self.errors.push(ConfigError::new(path, problem));
    }

    pub(super) fn invalid(&mut self, path: impl Into<String>, value: &str, reason: &'static str) {
        self.push(
            path,
            ConfigProblem::Invalid {
                value: value.to_string(),
                reason,
            },
        );
    }

    /// Non-empty and free of control characters (names show up in headers and logs).
    pub(super) fn name(&mut self, path: String, value: &str) -> bool {
        if value.is_empty() {
            self.push(path, ConfigProblem::Missing);
            false
        } else if value.chars().any(char::is_control) {
            self.invalid(path, value, "control characters are not allowed");
            false
        } else {
            true
        }
    }

    fn range(&mut self, path: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.push(path, ConfigProblem::OutOfRange { value, min, max });
        }
    }

    /// Remember `name` at `path`; report a duplicate with the first path.
    fn unique(&mut self, seen: &mut HashMap<String, String>, path: String, name: &str) {
        match seen.get(name) {
            Some(first) => self.push(
                path,
                ConfigProblem::DuplicateName {
                    name: name.to_string(),
                    first: first.clone(),
                },
            ),
            None => {
                seen.insert(name.to_string(), path);
            }
        }
    }
}

/// Every `alg` of a configured list (`at` is its path) must be supported; the algorithms accepted
/// for the list.
fn algorithms(c: &mut Checker, at: &str, configured: &[String]) -> Vec<String> {
    for (k, alg) in configured.iter().enumerate() {
        if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
            c.push(
                format!("{at}[{k}]"),
                ConfigProblem::UnsupportedAlgorithm {
                    algorithm: alg.clone(),
                },
            );
        }
    }
    accepted_algorithms(configured)
}

/// A portable environment variable name (POSIX: letters, digits, `_`, no leading digit).
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::issuer::IssuerPattern;
    use crate::policy::tier::Per;
    use crate::policy::Route;
    use serde_json::{json, Value};

    /// One key manager with `issuer` and `tenants`, one API, one application subscribed to it.
    fn config(issuer: &str, tenants: &[&str]) -> Value {
        json!({
            "environment": "production",
            "key_managers": [{"name": "idp", "issuer": issuer, "tenants": tenants,
                "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
            "apis": [{"name": "a", "base_path": "/a", "resources": [{"method": "GET", "path": "/x"}]}],
            "tiers": [{"name": "gold", "requests": 5, "per": "minute"}],
            "applications": [{"name": "app",
                "client_ids": [{"key_manager": "idp", "client_id": "c"}],
                "subscriptions": [{"api": "a", "tier": "gold"}]}]
        })
    }

    /// The policy, or every problem as `path: code`.
    fn compile(cfg: &Value) -> Result<Policy, Vec<String>> {
        Policy::from_json(cfg.to_string().as_bytes()).map_err(|errors| {
            let show = |e: ConfigError| format!("{}: {}", e.path, e.code());
            errors.into_iter().map(show).collect()
        })
    }

    fn set(cfg: &mut Value, pointer: &str, value: Value) {
        *cfg.pointer_mut(pointer).unwrap() = value;
    }

    #[test]
    fn the_issuer_checked_is_the_pattern_kept() {
        let exact = compile(&config("https://idp/", &[])).unwrap();
        let want = IssuerPattern::Exact("https://idp/".into());
        assert_eq!(exact.key_managers()[0].pattern, want);
        let entra = compile(&config("https://login/{tenantid}/v2.0", &["t1"])).unwrap();
        let want = IssuerPattern::Tenant {
            prefix: "https://login/".into(),
            suffix: "/v2.0".into(),
            tenants: vec!["t1".into()],
        };
        assert_eq!(entra.key_managers()[0].pattern, want);
    }

    #[test]
    fn a_refused_issuer_still_has_its_tenants_judged() {
        let errors = compile(&config("https://x/{tenantid}/{tenantid}", &[])).unwrap_err();
        let want = [
            "key_managers[0].issuer: invalid",
            "key_managers[0].tenants: template_without_tenants",
        ];
        assert_eq!(errors, want);
        let errors = compile(&config("https://x/{tenant}", &["t1", "t/2"])).unwrap_err();
        let want = [
            "key_managers[0].issuer: invalid",
            "key_managers[0].tenants: tenants_without_template",
            "key_managers[0].tenants[1]: invalid",
        ];
        assert_eq!(errors, want);
    }

    #[test]
    fn what_is_refused_leaves_the_rest_judged() {
        let mut cfg = config("https://idp/", &[]);
        set(&mut cfg, "/apis/0/base_path", json!("a"));
        set(&mut cfg, "/apis/0/resources/0/path", json!("/x/*/y"));
        set(&mut cfg, "/tiers/0/per", json!("week"));
        cfg["settings"] = json!({"dpop_algorithms": ["HS256"]});
        // The subscription names an API and a tier that exist, refused or not: no more problems.
        let want = [
            "apis[0].base_path: invalid",
            "apis[0].resources[0].path: invalid",
            "tiers[0].per: invalid",
            "settings.dpop_algorithms[0]: unsupported_algorithm",
        ];
        assert_eq!(compile(&cfg).unwrap_err(), want);
    }

    #[test]
    fn the_router_and_budgets_come_from_the_checked_values() {
        let policy = compile(&config("https://idp/", &[])).unwrap();
        let Route::Protected(found) = policy.route("GET", "/a/x") else {
            panic!("expected a protected route");
        };
        let claims = json!({"client_id": "c"}).as_object().unwrap().clone();
        let access = policy
            .authorize(&found, crate::policy::KeyManagerId::new(0), &claims)
            .unwrap();
        let budget = access.budget.unwrap();
        assert_eq!((budget.tier.requests, budget.tier.per), (5, Per::Minute));
        assert_eq!(budget.policy_header, "\"gold\";q=5;w=60");
    }
}
