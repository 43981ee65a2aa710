//! Semantic checks of a parsed plugin configuration, each naming its field path.
//!
//! These run once at `on_configure` (and in `keygate generate`), so the request path can rely on a
//! configuration that is consistent: names resolve, client ids are unambiguous, templates compile.

use std::collections::HashMap;

use super::{
    ApiConfig, ApplicationConfig, ConfigError, ConfigProblem, IntrospectionConfig,
    KeyManagerConfig, PluginConfig, Settings, TierConfig,
};
use crate::policy::mapping::check_claim_name;
use crate::policy::routes::{parse_base_path, MethodMatch, PathTemplate};
use crate::policy::tier::{Per, MAX_REQUESTS};

/// Signing algorithms a key manager may list in `algorithms` (asymmetric only: never `none`,
/// never HMAC, whose "key" would be public).
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// The placeholder of an Entra ID multi-tenant issuer.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Collects problems with their paths.
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn push(&mut self, path: impl Into<String>, problem: ConfigProblem) {
        self.errors.push(ConfigError::new(path, problem));
    }

    fn invalid(&mut self, path: impl Into<String>, value: &str, reason: &'static str) {
        self.push(
            path,
            ConfigProblem::Invalid {
                value: value.to_string(),
                reason,
            },
        );
    }

    /// Non-empty and free of control characters (names show up in headers and logs).
    fn name(&mut self, path: String, value: &str) -> bool {
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

pub(super) fn problems(config: &PluginConfig) -> Vec<ConfigError> {
    let mut c = Checker { errors: Vec::new() };
    if c.name("environment".into(), &config.environment) && config.environment.contains(' ') {
        c.invalid("environment", &config.environment, "spaces are not allowed");
    }
    key_managers(&mut c, config);
    apis(&mut c, &config.apis);
    tiers(&mut c, &config.tiers);
    applications(&mut c, config);
    settings(&mut c, &config.settings);
    c.errors
}

fn key_managers(c: &mut Checker, config: &PluginConfig) {
    let mut names = HashMap::new();
    for (i, km) in config.key_managers.iter().enumerate() {
        let at = format!("key_managers[{i}]");
        if c.name(format!("{at}.name"), &km.name) {
            c.unique(&mut names, format!("{at}.name"), &km.name);
        }
        issuer(c, &at, km);
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
        for (k, alg) in km.algorithms.iter().enumerate() {
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                c.push(
                    format!("{at}.algorithms[{k}]"),
                    ConfigProblem::UnsupportedAlgorithm {
                        algorithm: alg.clone(),
                    },
                );
            }
        }
        if let Some(introspection) = &km.introspection {
            self::introspection(c, &at, introspection);
        }
        if km.claims.client_id.is_empty() {
            c.push(format!("{at}.claims.client_id"), ConfigProblem::Missing);
        }
        let lists = [
            ("client_id", &km.claims.client_id),
            ("scopes", &km.claims.scopes),
            ("groups", &km.claims.groups),
        ];
        for (field, names) in lists {
            for (k, name) in names.iter().enumerate() {
                if let Err(reason) = check_claim_name(name) {
                    c.invalid(format!("{at}.claims.{field}[{k}]"), name, reason);
                }
            }
        }
    }
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

/// A portable environment variable name (POSIX: letters, digits, `_`, no leading digit).
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn issuer(c: &mut Checker, at: &str, km: &KeyManagerConfig) {
    if km.issuer.is_empty() {
        c.push(format!("{at}.issuer"), ConfigProblem::Missing);
        return;
    }
    let placeholders = km.issuer.matches(TENANT_PLACEHOLDER).count();
    let rest = km.issuer.replace(TENANT_PLACEHOLDER, "");
    if placeholders > 1 || rest.contains(['{', '}']) {
        c.invalid(
            format!("{at}.issuer"),
            &km.issuer,
            "the only placeholder allowed is one {tenantid}",
        );
    }
    if placeholders > 0 && km.tenants.is_empty() {
        c.push(
            format!("{at}.tenants"),
            ConfigProblem::TemplateWithoutTenants,
        );
    }
    if placeholders == 0 && !km.tenants.is_empty() {
        c.push(
            format!("{at}.tenants"),
            ConfigProblem::TenantsWithoutTemplate,
        );
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
}

/// Two key managers with one issuer are ambiguous only where both are trusted.
fn environments_overlap(a: &KeyManagerConfig, b: &KeyManagerConfig) -> bool {
    a.environments.is_empty()
        || b.environments.is_empty()
        || a.environments.iter().any(|e| b.environments.contains(e))
}

fn apis(c: &mut Checker, apis: &[ApiConfig]) {
    let mut names = HashMap::new();
    let mut base_paths: HashMap<&str, &str> = HashMap::new();
    for (i, api) in apis.iter().enumerate() {
        let at = format!("apis[{i}]");
        if c.name(format!("{at}.name"), &api.name) {
            c.unique(&mut names, format!("{at}.name"), &api.name);
        }
        match parse_base_path(&api.base_path) {
            Err(reason) => c.invalid(format!("{at}.base_path"), &api.base_path, reason),
            Ok(_) => match base_paths.get(api.base_path.as_str()) {
                Some(first) => c.push(
                    format!("{at}.base_path"),
                    ConfigProblem::DuplicateBasePath {
                        base_path: api.base_path.clone(),
                        api: first.to_string(),
                    },
                ),
                None => {
                    base_paths.insert(&api.base_path, &api.name);
                }
            },
        }
        let mut seen: Vec<(MethodMatch, PathTemplate, usize)> = Vec::new();
        for (r, res) in api.resources.iter().enumerate() {
            let at = format!("{at}.resources[{r}]");
            let method = MethodMatch::parse(&res.method)
                .map_err(|reason| c.invalid(format!("{at}.method"), &res.method, reason))
                .ok();
            let template = PathTemplate::parse(&res.path)
                .map_err(|reason| c.invalid(format!("{at}.path"), &res.path, reason))
                .ok();
            if let (Some(method), Some(template)) = (method, template) {
                // Templates equal up to parameter names are the same resource.
                if let Some((_, _, first)) =
                    seen.iter().find(|(m, t, _)| *m == method && *t == template)
                {
                    c.push(
                        format!("{at}.path"),
                        ConfigProblem::DuplicateResource {
                            resource: format!("{} {}", res.method, res.path),
                            first: format!("apis[{i}].resources[{first}]"),
                        },
                    );
                } else {
                    seen.push((method, template, r));
                }
            }
            for (k, scope) in res.scopes.iter().enumerate() {
                // RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
                let ok = !scope.is_empty()
                    && scope
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
                if !ok {
                    c.invalid(
                        format!("{at}.scopes[{k}]"),
                        scope,
                        "a scope is visible ASCII without '\"' or '\\'",
                    );
                }
            }
            for (k, group) in res.groups.iter().enumerate() {
                c.name(format!("{at}.groups[{k}]"), group);
            }
            if res.public && (!res.scopes.is_empty() || !res.groups.is_empty()) {
                c.push(
                    format!("{at}.public"),
                    ConfigProblem::PublicWithRequirements,
                );
            }
        }
    }
}

fn applications(c: &mut Checker, config: &PluginConfig) {
    let mut names = HashMap::new();
    // (key manager, client id) → application name.
    let mut owners: HashMap<(&str, &str), &str> = HashMap::new();
    for (i, app) in config.applications.iter().enumerate() {
        let at = format!("applications[{i}]");
        if c.name(format!("{at}.name"), &app.name) {
            c.unique(&mut names, format!("{at}.name"), &app.name);
        }
        for (k, id) in app.client_ids.iter().enumerate() {
            let at = format!("{at}.client_ids[{k}]");
            if !config
                .key_managers
                .iter()
                .any(|km| km.name == id.key_manager)
            {
                c.push(
                    format!("{at}.key_manager"),
                    ConfigProblem::UnknownKeyManager {
                        name: id.key_manager.clone(),
                    },
                );
            }
            if !c.name(format!("{at}.client_id"), &id.client_id) {
                continue;
            }
            let key = (id.key_manager.as_str(), id.client_id.as_str());
            match owners.get(&key) {
                Some(owner) => c.push(
                    format!("{at}.client_id"),
                    ConfigProblem::DuplicateClientId {
                        client_id: id.client_id.clone(),
                        key_manager: id.key_manager.clone(),
                        application: owner.to_string(),
                    },
                ),
                None => {
                    owners.insert(key, &app.name);
                }
            }
        }
        subscriptions(c, &at, app, config);
    }
}

/// Tier names end up in a header value and in the rate-limit service's configuration, so they
/// are plain identifiers.
fn tiers(c: &mut Checker, tiers: &[TierConfig]) {
    let mut names = HashMap::new();
    for (i, tier) in tiers.iter().enumerate() {
        let at = format!("tiers[{i}]");
        if c.name(format!("{at}.name"), &tier.name) {
            if tier
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                c.unique(&mut names, format!("{at}.name"), &tier.name);
            } else {
                c.invalid(
                    format!("{at}.name"),
                    &tier.name,
                    "a tier name is letters, digits, '-', '_' and '.'",
                );
            }
        }
        c.range(&format!("{at}.requests"), tier.requests, 1, MAX_REQUESTS);
        if Per::parse(&tier.per).is_none() {
            c.invalid(
                format!("{at}.per"),
                &tier.per,
                "one of second, minute, hour, day",
            );
        }
    }
}

fn subscriptions(c: &mut Checker, at: &str, app: &ApplicationConfig, config: &PluginConfig) {
    for (k, sub) in app.subscriptions.iter().enumerate() {
        if let Some(tier) = &sub.tier {
            if !config.tiers.iter().any(|t| t.name == *tier) {
                c.push(
                    format!("{at}.subscriptions[{k}].tier"),
                    ConfigProblem::UnknownTier { name: tier.clone() },
                );
            }
        }
        let path = format!("{at}.subscriptions[{k}].api");
        if !config.apis.iter().any(|api| api.name == sub.api) {
            c.push(
                path,
                ConfigProblem::UnknownApi {
                    name: sub.api.clone(),
                },
            );
        } else if app.subscriptions.iter().take(k).any(|s| s.api == sub.api) {
            c.push(
                path,
                ConfigProblem::DuplicateSubscription {
                    api: sub.api.clone(),
                },
            );
        }
    }
}

fn settings(c: &mut Checker, s: &Settings) {
    c.range("settings.leeway_seconds", s.leeway_seconds, 0, 600);
    dpop_settings(c, s);
    header_prefix(c, &s.header_prefix);
    ready_path(c, &s.ready_path);
    if s.realm.is_empty() || !s.realm.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        c.invalid(
            "settings.realm",
            &s.realm,
            "the realm is 1 or more visible ASCII characters or spaces",
        );
    }
    c.range(
        "settings.jwks_fetch_timeout_ms",
        s.jwks_fetch_timeout_ms,
        100,
        60_000,
    );
    let max_bytes = u64::try_from(s.jwks_max_bytes).unwrap_or(u64::MAX);
    c.range("settings.jwks_max_bytes", max_bytes, 1024, 16 * 1024 * 1024);
    const WEEK: u64 = 7 * 86_400;
    c.range(
        "settings.jwks_max_refresh_seconds",
        s.jwks_max_refresh_seconds,
        1,
        WEEK,
    );
    c.range(
        "settings.jwks_min_refresh_seconds",
        s.jwks_min_refresh_seconds,
        1,
        s.jwks_max_refresh_seconds,
    );
    c.range(
        "settings.jwks_default_refresh_seconds",
        s.jwks_default_refresh_seconds,
        s.jwks_min_refresh_seconds,
        s.jwks_max_refresh_seconds,
    );
    c.range(
        "settings.jwks_unknown_kid_refetch_seconds",
        s.jwks_unknown_kid_refetch_seconds,
        1,
        3_600,
    );
    c.range("settings.jwks_stale_seconds", s.jwks_stale_seconds, 0, WEEK);
    c.range(
        "settings.jwks_retry_max_seconds",
        s.jwks_retry_max_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.jwks_retry_initial_seconds",
        s.jwks_retry_initial_seconds,
        1,
        s.jwks_retry_max_seconds,
    );
    c.range("settings.request_wait_ms", s.request_wait_ms, 100, 60_000);
    let parked = u64::try_from(s.max_parked_requests).unwrap_or(u64::MAX);
    c.range("settings.max_parked_requests", parked, 1, 100_000);
    let parked = u64::try_from(s.max_parked_per_key_manager).unwrap_or(u64::MAX);
    c.range("settings.max_parked_per_key_manager", parked, 1, 100_000);
    let entries = u64::try_from(s.token_cache_entries).unwrap_or(u64::MAX);
    c.range("settings.token_cache_entries", entries, 0, 100_000);
    let bytes = u64::try_from(s.token_cache_bytes).unwrap_or(u64::MAX);
    c.range("settings.token_cache_bytes", bytes, 4_096, 1 << 30);
    c.range(
        "settings.introspection_cache_seconds",
        s.introspection_cache_seconds,
        1,
        86_400,
    );
    c.range(
        "settings.introspection_negative_cache_seconds",
        s.introspection_negative_cache_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.introspection_retry_seconds",
        s.introspection_retry_seconds,
        1,
        300,
    );
    c.range(
        "settings.introspection_timeout_ms",
        s.introspection_timeout_ms,
        100,
        60_000,
    );
    let max_bytes = u64::try_from(s.introspection_max_bytes).unwrap_or(u64::MAX);
    c.range("settings.introspection_max_bytes", max_bytes, 1024, 1 << 20);
    let entries = u64::try_from(s.introspection_cache_entries).unwrap_or(u64::MAX);
    c.range("settings.introspection_cache_entries", entries, 16, 65_536);
    introspection_bounds(c, s);
}

/// The bounds that keep junk opaque tokens from costing calls or evicting active answers (issue
/// 21): the separate area for non-active answers, and the call budgets.
fn introspection_bounds(c: &mut Checker, s: &Settings) {
    let entries = u64::try_from(s.introspection_negative_cache_entries).unwrap_or(u64::MAX);
    c.range(
        "settings.introspection_negative_cache_entries",
        entries,
        16,
        65_536,
    );
    c.range(
        "settings.introspection_calls_per_second",
        s.introspection_calls_per_second,
        1,
        100_000,
    );
    c.range(
        "settings.introspection_worker_calls_per_second",
        s.introspection_worker_calls_per_second,
        1,
        100_000,
    );
}

/// The readiness path: empty (off), or an absolute path of visible ASCII without query or
/// fragment, at most 256 bytes.
fn ready_path(c: &mut Checker, path: &str) {
    let shape = path.is_empty()
        || (path.starts_with('/')
            && path.len() <= 256
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#'));
    if !shape {
        c.invalid(
            "settings.ready_path",
            path,
            "a readiness path is empty (off) or starts with '/', without query, fragment or spaces",
        );
    }
}

/// The prefix decides which incoming headers are stripped, so it must not reach headers others
/// own: lower case `x-…-`, and not a prefix of (or under) Envoy's and the forwarding headers.
fn header_prefix(c: &mut Checker, prefix: &str) {
    let shape = prefix.len() >= 4
        && prefix.len() <= 64
        && prefix.starts_with("x-")
        && prefix.ends_with('-')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !shape {
        c.invalid(
            "settings.header_prefix",
            prefix,
            "a prefix is lower case letters, digits and '-', starting with 'x-' and ending with '-'",
        );
        return;
    }
    let reserved = ["x-envoy-", "x-forwarded-", "x-request-id", "x-b3-"];
    if reserved
        .iter()
        .any(|r| r.starts_with(prefix) || prefix.starts_with(r))
    {
        c.invalid(
            "settings.header_prefix",
            prefix,
            "the prefix would strip Envoy's or the forwarding headers",
        );
    }
}

/// DPoP proofs: asymmetric algorithms only, a window of at most an hour, a bounded replay store.
fn dpop_settings(c: &mut Checker, s: &Settings) {
    for (k, alg) in s.dpop_algorithms.iter().enumerate() {
        if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
            c.push(
                format!("settings.dpop_algorithms[{k}]"),
                ConfigProblem::UnsupportedAlgorithm {
                    algorithm: alg.clone(),
                },
            );
        }
    }
    c.range(
        "settings.dpop_max_age_seconds",
        s.dpop_max_age_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.dpop_future_skew_seconds",
        s.dpop_future_skew_seconds,
        0,
        300,
    );
    let slots = u64::try_from(s.dpop_replay_slots).unwrap_or(u64::MAX);
    c.range("settings.dpop_replay_slots", slots, 1, 65_536);
    let entries = u64::try_from(s.dpop_replay_slot_entries).unwrap_or(u64::MAX);
    c.range("settings.dpop_replay_slot_entries", entries, 1, 1_024);
}
