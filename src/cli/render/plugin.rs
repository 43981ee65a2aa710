//! Declaration + resolved discovery documents → the filter's `PluginConfig`.

use crate::cli::declaration::model::{
    ClaimsDecl, Declaration, DirectoryDecl, KeyManagerDecl, DEFAULT_LISTEN,
};
use crate::cli::declaration::presets::Preset;
use crate::cli::discovery::oidc::CheckedDiscovery;
use crate::cli::discovery::url::HttpUrl;
use crate::cli::render::cluster_naming::ClusterNaming;
use crate::config::{
    ApiConfig, ApiKeyConfig, ApplicationConfig, BackendSigningConfig, ClaimMapping, ClientIdConfig,
    DirectoryConfig, IntrospectionConfig, JwksSource, KeyManagerConfig, Limiter, PluginConfig,
    ResourceConfig, SubscriptionConfig, TierConfig,
};

/// Builds the plugin config. `resolved` holds one checked discovery per key manager, in order.
pub fn plugin_config(
    decl: &Declaration,
    resolved: &[CheckedDiscovery],
    naming: ClusterNaming,
) -> PluginConfig {
    PluginConfig {
        environment: decl.gateway.environment.value.clone(),
        key_managers: decl
            .key_managers
            .iter()
            .zip(resolved)
            .map(|(km, found)| key_manager(km, found, naming))
            .collect(),
        apis: decl
            .apis
            .iter()
            .map(|api| ApiConfig {
                name: api.name.value.clone(),
                version: api.version.clone(),
                base_path: api.base_path.value.clone(),
                key_managers: api.key_managers.iter().map(|k| k.value.clone()).collect(),
                public_urls: api.public_urls.iter().map(|u| u.value.clone()).collect(),
                dpop: api.dpop,
                security: api.security.clone(),
                api_key: api.api_key.clone(),
                mtls_bound_tokens: api.mtls_bound_tokens,
                backend_jwt: api.backend_jwt.clone(),
                resources: api
                    .resources
                    .iter()
                    .map(|r| ResourceConfig {
                        method: r.method.value.to_ascii_uppercase(),
                        path: r.path.value.clone(),
                        scopes: r.scopes.clone(),
                        groups: r.groups.clone(),
                        scopes_all: r.scopes_all.clone(),
                        claims: r
                            .claims
                            .iter()
                            .map(|(name, values)| (name.clone(), values.clone().into_vec()))
                            .collect(),
                        public: r.public,
                    })
                    .collect(),
            })
            .collect(),
        public_urls: public_urls(decl),
        // With a directory the source serves them (`keygate directory serve`).
        applications: if decl.directory.is_some() {
            Vec::new()
        } else {
            applications(decl)
        },
        directory: decl.directory.as_ref().and_then(|d| directory(d, naming)),
        tiers: decl
            .tiers
            .iter()
            .map(|t| TierConfig {
                name: t.name.value.clone(),
                requests: t.requests,
                per: t.per.value.clone(),
            })
            .collect(),
        // With a rate-limit service, Envoy's rate-limit filter counts (one budget for the fleet)
        // and the filter must not count a second time. The Istio manifests do not wire that
        // filter, so there each sidecar keeps counting (never nobody).
        limiter: if decl.gateway.rate_limit_service.is_some() && naming == ClusterNaming::Envoy {
            Limiter::Service
        } else {
            Limiter::Local
        },
        settings: decl.settings.clone(),
        backend_jwt: decl
            .gateway
            .backend_jwt
            .as_ref()
            .map(|b| BackendSigningConfig {
                issuer: b.issuer.clone().unwrap_or_else(|| {
                    public_urls(decl)
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| "keygate".to_string())
                }),
                keys: b.keys.clone(),
                in_wasm: b.in_wasm,
            }),
    }
}

/// The declaration's applications as the plugin config (and the directory protocol) has them.
pub fn applications(decl: &Declaration) -> Vec<ApplicationConfig> {
    decl.applications
        .iter()
        .map(|app| ApplicationConfig {
            name: app.name.value.clone(),
            state: app.state,
            client_ids: app
                .client_ids
                .iter()
                .map(|c| ClientIdConfig {
                    key_manager: c.key_manager.value.clone(),
                    client_id: c.client_id.value.clone(),
                })
                .collect(),
            subscriptions: app
                .subscriptions
                .iter()
                .map(|s| SubscriptionConfig {
                    api: s.api.value.clone(),
                    state: s.state,
                    tier: s.tier.as_ref().map(|t| t.value.clone()),
                })
                .collect(),
            api_keys: app
                .api_keys
                .iter()
                .map(|k| ApiKeyConfig {
                    name: k.name.value.clone(),
                    sha256: k.sha256.value.clone(),
                    expires: k.expires.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The plugin config's `directory`: the source's URL split into the cluster, authority and path
/// of the fetches (`None` for a URL the declaration check refused).
fn directory(d: &DirectoryDecl, naming: ClusterNaming) -> Option<DirectoryConfig> {
    let url = HttpUrl::parse(&d.url.value).ok()?;
    Some(DirectoryConfig {
        url: d.url.value.clone(),
        cluster: naming.directory_cluster(&url),
        authority: url.authority(),
        path: url.path().to_string(),
        token_env: d
            .token_env
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default(),
        refresh_seconds: d.refresh_seconds,
        stale_seconds: d.stale_seconds,
        timeout_ms: 15_000,
        max_bytes: 64 * 1024 * 1024,
    })
}

/// The gateway's origins: as declared, else `http://` + the listener when it is a specific
/// address (the demo's `127.0.0.1:8080`: the origin a client on that socket calls); else none,
/// and DPoP proofs are refused (the compiler refuses `dpop: required` without one). Never the
/// client's `Host`. Under Istio the listener is not the sidecar's, so declare `public_urls`
/// there (the derived origin would match no proof: refused, never accepted).
fn public_urls(decl: &Declaration) -> Vec<String> {
    if !decl.gateway.public_urls.is_empty() {
        return decl
            .gateway
            .public_urls
            .iter()
            .map(|u| u.value.clone())
            .collect();
    }
    let listen = decl
        .gateway
        .listen
        .as_ref()
        .map_or(DEFAULT_LISTEN, |l| l.value.as_str());
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if !addr.ip().is_unspecified() => {
            vec![format!("http://{addr}")]
        }
        _ => Vec::new(),
    }
}

fn key_manager(
    km: &KeyManagerDecl,
    found: &CheckedDiscovery,
    naming: ClusterNaming,
) -> KeyManagerConfig {
    let preset = km
        .provider
        .as_ref()
        .and_then(|p| Preset::from_name(&p.value))
        .unwrap_or(Preset::Generic);
    KeyManagerConfig {
        name: km.name.value.clone(),
        issuer: found.issuer.clone(),
        jwks: JwksSource {
            uri: found.jwks_uri.to_string(),
            cluster: naming.jwks_cluster(&found.jwks_uri),
            authority: found.jwks_uri.authority(),
            path: found.jwks_uri.path_and_query.clone(),
        },
        environments: km.environments.clone(),
        audiences: km.audiences.clone(),
        claims: claim_mapping(preset, &km.claims),
        tenants: km.tenants.clone(),
        algorithms: km.algorithms.clone(),
        dpop: km.dpop,
        introspection: km.introspection.as_ref().map(|decl| {
            // The declared endpoint, else the discovery document's (or its RFC 8414 metadata's,
            // filled in by `generate::resolve`).
            let endpoint = decl
                .endpoint
                .as_ref()
                .map(|e| e.value.as_str())
                .or(found.document.introspection_endpoint.as_deref())
                .and_then(|e| HttpUrl::parse(e).ok());
            // Without an endpoint the fields stay empty, which the compiler refuses, naming
            // `introspection`.
            let (endpoint, cluster, authority, path) = match endpoint {
                Some(url) => (
                    url.to_string(),
                    naming.introspection_cluster(&url, &found.jwks_uri),
                    url.authority(),
                    url.path_and_query.clone(),
                ),
                None => Default::default(),
            };
            IntrospectionConfig {
                endpoint,
                cluster,
                authority,
                path,
                client_id: decl.client_id.value.clone(),
                client_secret_env: decl.client_secret_env.value.clone(),
            }
        }),
    }
}

/// The preset's mapping with each field the declaration sets replaced.
pub fn claim_mapping(preset: Preset, overrides: &ClaimsDecl) -> ClaimMapping {
    let mut mapping = preset.claims();
    if let Some(names) = overrides.client_id.clone() {
        mapping.client_id = names.into_vec();
    }
    if let Some(names) = overrides.scopes.clone() {
        mapping.scopes = names.into_vec();
    }
    if let Some(names) = overrides.groups.clone() {
        mapping.groups = names.into_vec();
    }
    if let Some(names) = overrides.subject.clone() {
        mapping.subject = names.into_vec();
    }
    mapping
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::declaration::model::ClaimNames;

    #[test]
    fn overrides_replace_only_their_field() {
        let overrides = ClaimsDecl {
            client_id: None,
            scopes: Some(ClaimNames::One("permissions".into())),
            groups: Some(ClaimNames::Many(vec!["a".into(), "b.c".into()])),
            subject: None,
        };
        let mapping = claim_mapping(Preset::Okta, &overrides);
        assert_eq!(mapping.client_id, ["cid"]);
        assert_eq!(mapping.scopes, ["permissions"]);
        assert_eq!(mapping.groups, ["a", "b.c"]);
        assert_eq!(mapping.subject, ["sub"]);
    }
}
