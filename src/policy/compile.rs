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

use std::collections::HashMap;
use std::sync::Arc;

use super::api_keys::{check_key_only_resource, compile_credentials, compile_keys, ApiKeys};
use super::applications::{Catalog, InlineApplications};
use super::issuer::IssuerPattern;
use super::mapping::{check_claim_name, Mapping};
use super::requirements::{compile_all_scopes, compile_claims};
use super::routes::{parse_base_path, MethodMatch, PathTemplate, Router};
use super::tier::{Per, Tier, MAX_REQUESTS};
use super::{accepted_algorithms, Api, KeyManager, Policy, Resource};
use crate::config::{
    ClaimMapping, ConfigError, ConfigErrors, ConfigProblem, DirectoryConfig, DpopMode,
    IntrospectionConfig, KeyManagerConfig, PluginConfig, Settings, TierConfig,
    SUPPORTED_ALGORITHMS, TENANT_PLACEHOLDER,
};
use crate::jose::claims::Validation;

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

/// The key managers, each without its client ids yet ([`applications`] adds them).
fn key_managers(c: &mut Checker, config: &PluginConfig) -> Vec<KeyManager> {
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

/// A portable environment variable name (POSIX: letters, digits, `_`, no leading digit).
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The issuer pattern: the exact issuer, or the parts around its one `{tenantid}` with the allowed
/// tenants. Any other brace (a second placeholder among them) is refused.
fn issuer(c: &mut Checker, at: &str, km: &KeyManagerConfig) -> IssuerPattern {
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

/// Two key managers with one issuer are ambiguous only where both are trusted.
fn environments_overlap(a: &KeyManagerConfig, b: &KeyManagerConfig) -> bool {
    a.environments.is_empty()
        || b.environments.is_empty()
        || a.environments.iter().any(|e| b.environments.contains(e))
}

/// The APIs and the router over their parsed base paths, methods and templates (an API whose base
/// path is refused stays out of the router; so does a resource that is refused).
fn apis(c: &mut Checker, cfg: &PluginConfig, kms: &[KeyManager]) -> (Vec<Api>, Router) {
    let apis = &cfg.apis;
    let gateway_origins = public_urls(c, "public_urls", &cfg.public_urls);
    // A key manager trusted here whose tokens must all be bound needs a proof on every API.
    let dpop_everywhere = kms
        .iter()
        .any(|km| km.enabled_here && km.dpop == DpopMode::Required);
    let mut names = HashMap::new();
    let mut base_paths: HashMap<&str, &str> = HashMap::new();
    let mut router = Router::default();
    let mut compiled = Vec::with_capacity(apis.len());
    for (i, api) in apis.iter().enumerate() {
        let at = format!("apis[{i}]");
        if c.name(format!("{at}.name"), &api.name) {
            c.unique(&mut names, format!("{at}.name"), &api.name);
        }
        let base = match parse_base_path(&api.base_path) {
            Err(reason) => {
                c.invalid(format!("{at}.base_path"), &api.base_path, reason);
                None
            }
            Ok(base) => {
                match base_paths.get(api.base_path.as_str()) {
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
                }
                Some(base)
            }
        };
        let credentials = compile_credentials(c, &at, api, &cfg.settings.header_prefix);
        // (resource index, method, template) of the resources that parsed, in declaration order.
        let mut routes: Vec<(usize, MethodMatch, PathTemplate)> = Vec::new();
        let mut resources = Vec::with_capacity(api.resources.len());
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
                if let Some((first, _, _)) = routes
                    .iter()
                    .find(|(_, m, t)| *m == method && *t == template)
                {
                    c.push(
                        format!("{at}.path"),
                        ConfigProblem::DuplicateResource {
                            resource: format!("{} {}", res.method, res.path),
                            first: format!("apis[{i}].resources[{first}]"),
                        },
                    );
                } else {
                    routes.push((r, method, template));
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
            let scopes_all = compile_all_scopes(c, &at, &res.scopes_all);
            let claims = compile_claims(c, &at, &res.claims);
            let requirements = !res.scopes.is_empty()
                || !res.groups.is_empty()
                || !scopes_all.is_empty()
                || !claims.is_empty();
            if res.public && requirements {
                c.push(
                    format!("{at}.public"),
                    ConfigProblem::PublicWithRequirements,
                );
            }
            let resource = Resource {
                method: res.method.clone(),
                path: res.path.clone(),
                scopes: res.scopes.clone(),
                groups: res.groups.clone(),
                scopes_all,
                claims,
                public: res.public,
            };
            check_key_only_resource(c, &at, &credentials, &resource);
            resources.push(resource);
        }
        if let Some(base) = base {
            router.add(i, base, routes);
        }
        let own = public_urls(c, &format!("{at}.public_urls"), &api.public_urls);
        let origins = if api.public_urls.is_empty() {
            gateway_origins.clone()
        } else {
            own
        };
        let accepted = accepted_key_managers(c, &at, api, &cfg.key_managers);
        let needs_proofs = dpop_everywhere || api.dpop == DpopMode::Required;
        if needs_proofs && origins.is_empty() && api.resources.iter().any(|r| !r.public) {
            c.push(format!("{at}.public_urls"), ConfigProblem::NoPublicUrl);
        }
        compiled.push(Api {
            name: api.name.clone(),
            version: api.version.clone(),
            base_path: api.base_path.clone(),
            resources,
            dpop: api.dpop,
            origins,
            key_managers: accepted,
            credentials,
            mtls_bound_tokens: api.mtls_bound_tokens,
            backend_jwt: api.backend_jwt.clone(),
        });
    }
    (compiled, router)
}

/// The key managers an API accepts (`None`: all), each named once and declared.
fn accepted_key_managers(
    c: &mut Checker,
    at: &str,
    api: &crate::config::ApiConfig,
    kms: &[KeyManagerConfig],
) -> Option<Vec<crate::policy::KeyManagerId>> {
    if api.key_managers.is_empty() {
        return None;
    }
    let mut accepted = Vec::with_capacity(api.key_managers.len());
    let mut seen = HashMap::new();
    for (k, name) in api.key_managers.iter().enumerate() {
        let path = format!("{at}.key_managers[{k}]");
        match kms.iter().position(|km| km.name == *name) {
            None => c.push(
                path,
                ConfigProblem::UnknownKeyManager { name: name.clone() },
            ),
            Some(index) => {
                c.unique(&mut seen, path, name);
                accepted.push(crate::policy::KeyManagerId::new(index));
            }
        }
    }
    Some(accepted)
}

/// The gateway's origins (`at` is the list's path): `http(s)://host[:port]`, nothing after the
/// authority but an optional `/`; the accepted ones without that `/`. A DPoP proof's `htu` is
/// compared with an origin plus the request's path, so an origin with a path, query or user
/// information could never match and is refused.
fn public_urls(c: &mut Checker, at: &str, urls: &[String]) -> Vec<String> {
    let mut origins = Vec::with_capacity(urls.len());
    for (k, url) in urls.iter().enumerate() {
        let origin = url.strip_suffix('/').unwrap_or(url);
        let authority = origin
            .split_once("://")
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
            })
            .map(|(_, authority)| authority);
        let ok = authority.is_some_and(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b))
        });
        if ok {
            origins.push(origin.to_string());
        } else {
            c.invalid(
                format!("{at}[{k}]"),
                url,
                "a public URL is http(s)://host[:port], without path, query or user information",
            );
        }
    }
    origins
}

/// The applications, each compiled by the rules directory entries follow too
/// ([`Catalog::compile`]); a client id belongs to one application per key manager.
fn applications(
    c: &mut Checker,
    config: &PluginConfig,
    catalog: &Catalog,
    api_keys: &mut ApiKeys,
) -> InlineApplications {
    let mut names = HashMap::new();
    let mut key_hashes = HashMap::new();
    let mut compiled = InlineApplications::new(config.key_managers.len());
    for (i, app) in config.applications.iter().enumerate() {
        let at = format!("applications[{i}]");
        let mut one = catalog.compile(&at, app, &mut c.errors);
        if !app.name.is_empty() {
            c.unique(&mut names, format!("{at}.name"), &app.name);
        }
        let mut free = Vec::with_capacity(one.client_ids.len());
        for id in one.client_ids {
            match compiled.owner(id.key_manager, &id.client_id) {
                Some(owner) => {
                    let problem = ConfigProblem::DuplicateClientId {
                        key_manager: catalog
                            .key_managers
                            .get(id.key_manager)
                            .cloned()
                            .unwrap_or_default(),
                        application: owner.name.clone(),
                        client_id: id.client_id,
                    };
                    c.push(format!("{at}.client_ids[{}].client_id", id.at), problem);
                }
                None => free.push(id),
            }
        }
        compile_keys(
            c,
            &at,
            compiled.len(),
            &app.api_keys,
            api_keys,
            &mut key_hashes,
        );
        one.client_ids = free;
        compiled.add(one);
    }
    compiled
}

/// The directory source: where and how often, and never together with inline applications.
fn directory(c: &mut Checker, d: &DirectoryConfig, inline: bool) {
    if inline {
        c.invalid(
            "applications",
            "(inline applications)",
            "the applications come from the directory when `directory` is set; leave them out",
        );
    }
    let at = "directory";
    if !(d.url.starts_with("http://") || d.url.starts_with("https://")) {
        c.invalid(
            format!("{at}.url"),
            &d.url,
            "the directory URL is http(s)://host[:port][/path]",
        );
    }
    if d.cluster.is_empty() {
        c.push(format!("{at}.cluster"), ConfigProblem::Missing);
    }
    if d.authority.is_empty() {
        c.push(format!("{at}.authority"), ConfigProblem::Missing);
    }
    if !d.path.starts_with('/') || d.path.contains(['?', '#']) {
        c.invalid(
            format!("{at}.path"),
            &d.path,
            "must start with '/' and have no query or fragment",
        );
    }
    if !d.token_env.is_empty() && !is_env_name(&d.token_env) {
        c.invalid(
            format!("{at}.token_env"),
            &d.token_env,
            "an environment variable name is letters, digits and '_', not starting with a digit",
        );
    }
    c.range(
        &format!("{at}.refresh_seconds"),
        d.refresh_seconds,
        1,
        3_600,
    );
    c.range(
        &format!("{at}.stale_seconds"),
        d.stale_seconds,
        d.refresh_seconds.saturating_add(1).min(3_601),
        7 * 86_400,
    );
    c.range(&format!("{at}.timeout_ms"), d.timeout_ms, 100, 60_000);
    let max_bytes = u64::try_from(d.max_bytes).unwrap_or(u64::MAX);
    c.range(&format!("{at}.max_bytes"), max_bytes, 1024, 1 << 30);
}

/// The tiers, in the configuration's order (`None` where `per` is refused). Tier names end up in a
/// header value and in the rate-limit service's configuration, so they are plain identifiers.
fn tiers(c: &mut Checker, tiers: &[TierConfig]) -> Vec<Option<Tier>> {
    let mut names = HashMap::new();
    let mut compiled = Vec::with_capacity(tiers.len());
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
        let per = Per::parse(&tier.per);
        if per.is_none() {
            c.invalid(
                format!("{at}.per"),
                &tier.per,
                "one of second, minute, hour, day",
            );
        }
        compiled.push(per.map(|per| Tier {
            name: tier.name.clone(),
            requests: tier.requests,
            per,
        }));
    }
    compiled
}

/// Backend JWTs (docs/backend-jwt.md): an API that asks for one needs the gateway's signing
/// keys; each header is a lower-case token that is no credential or identity header; each key
/// is a P-256 point named once.
fn backend_jwt(c: &mut Checker, cfg: &PluginConfig) {
    let prefix = cfg.settings.header_prefix.to_ascii_lowercase();
    for (i, api) in cfg.apis.iter().enumerate() {
        let Some(jwt) = &api.backend_jwt else {
            continue;
        };
        let at = format!("apis[{i}].backend_jwt");
        let token = !jwt.header.is_empty()
            && jwt
                .header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let reserved = ["authorization", "dpop", "host", "x-forwarded-client-cert"]
            .contains(&jwt.header.as_str())
            || (!prefix.is_empty() && jwt.header.starts_with(&prefix));
        if !token || reserved {
            c.invalid(
                format!("{at}.header"),
                &jwt.header,
                "a lower-case header name (letters, digits, '-') that is not authorization, dpop, host, x-forwarded-client-cert or an identity header",
            );
        }
        c.range(&format!("{at}.ttl_seconds"), jwt.ttl_seconds, 1, 86_400);
        if cfg.backend_jwt.is_none() {
            c.push("backend_jwt", ConfigProblem::Missing);
        }
    }
    let Some(signing) = &cfg.backend_jwt else {
        return;
    };
    c.name("backend_jwt.issuer".into(), &signing.issuer);
    if signing.keys.is_empty() {
        c.push("backend_jwt.keys", ConfigProblem::Missing);
    }
    let mut envs = HashMap::new();
    for (k, key) in signing.keys.iter().enumerate() {
        let at = format!("backend_jwt.keys[{k}]");
        if c.name(format!("{at}.env"), &key.env) {
            c.unique(&mut envs, format!("{at}.env"), &key.env);
        }
        if !crate::jose::sign::is_p256_point(&key.x, &key.y) {
            c.invalid(
                format!("{at}.x"),
                &key.x,
                "x and y are the base64url coordinates of a P-256 public key",
            );
        }
    }
}

/// The settings are kept as configured once in range; the DPoP algorithms accepted.
fn settings(c: &mut Checker, s: &Settings) -> Vec<String> {
    c.range("settings.leeway_seconds", s.leeway_seconds, 0, 600);
    let dpop_algorithms = dpop_settings(c, s);
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
    dpop_algorithms
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
/// The algorithms accepted in proofs.
fn dpop_settings(c: &mut Checker, s: &Settings) -> Vec<String> {
    let accepted = algorithms(c, "settings.dpop_algorithms", &s.dpop_algorithms);
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
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
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
