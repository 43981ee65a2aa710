//! The APIs: names, base paths, resources (method, path template, scopes, groups, claims),
//! credentials, accepted key managers and public URLs, checked and compiled into [`Api`]s and the
//! [`Router`] over them.

use std::collections::HashMap;

use super::Checker;
use crate::config::{ConfigProblem, DpopMode, KeyManagerConfig, PluginConfig};
use crate::policy::api_keys::{check_key_only_resource, compile_credentials};
use crate::policy::requirements::{compile_all_scopes, compile_claims};
use crate::policy::routes::{parse_base_path, MethodMatch, PathTemplate, Router};
use crate::policy::{Api, KeyManager, Resource};

/// The APIs and the router over their parsed base paths, methods and templates (an API whose base
/// path is refused stays out of the router; so does a resource that is refused).
pub(super) fn apis(c: &mut Checker, cfg: &PluginConfig, kms: &[KeyManager]) -> (Vec<Api>, Router) {
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
