//! The authorization decision: the configuration compiled once into indexed structures
//! ([`Policy::compile`], in `compile/`), and the steps the shell calls in order
//! (ARCHITECTURE.md §3):
//! [`Policy::route`] → (bearer token) → [`Policy::key_manager_for`] → (keys, signature, time,
//! audience: the jose layer) → [`Policy::authorize`].

pub mod api_keys;
pub mod applications;
mod compile;
mod ids;
mod issuer;
pub(crate) mod mapping;
pub mod path;
mod refusal;
pub mod requirements;
pub(crate) mod routes;
pub mod tier;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{
    BackendJwtConfig, BackendSigningConfig, CertBinding, DirectoryConfig, DpopMode,
    IntrospectionConfig, JwksSource, Limiter, Settings, SubscriptionState, UnknownApi,
    SUPPORTED_ALGORITHMS,
};
use crate::jose::claims::Validation;
use crate::policy::api_keys::{ApiCredentials, ApiKeys};
use crate::policy::applications::{
    Application, ApplicationLookup, Catalog, InlineApplications, Lookup, Subscription,
};
use crate::policy::issuer::{IssuerFit, IssuerPattern};
use crate::policy::mapping::Mapping;
use crate::policy::path::CanonicalPath;
use crate::policy::requirements::{check_all_scopes, check_claims, ClaimCondition};
use crate::policy::routes::{check_method, RouteOutcome, Router};
use crate::policy::tier::Budget;

pub use ids::{ApiId, KeyManagerId};
pub use refusal::{AccessRefusal, ClientIdError, IssuerRefusal, RouteRefusal};

/// The environment in which `production_only_blocked` subscriptions are blocked.
pub const PRODUCTION: &str = "production";

/// A trusted key manager.
#[derive(Debug, Clone)]
pub struct KeyManager {
    pub name: String,
    /// As configured; may hold `{tenantid}`.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Accepted `aud` values; empty: not checked.
    pub audiences: Vec<String>,
    /// Accepted `alg` values; empty: every supported asymmetric algorithm.
    pub algorithms: Vec<String>,
    /// Trusted in this gateway's environment.
    pub enabled_here: bool,
    /// Whether its tokens must be DPoP-bound.
    pub dpop: DpopMode,
    pub mapping: Mapping,
    /// Where opaque tokens of this key manager are introspected (RFC 7662), if anywhere.
    pub introspection: Option<IntrospectionConfig>,
    /// What this key manager's tokens must pass, built once at compile time; the exact issuer
    /// is filled in per token ([`KeyManager::validation`]).
    validation: Validation,
    /// [`Self::validation`] for the one issuer of an exact pattern, built once and shared by
    /// every token of it.
    exact_validation: Option<Arc<Validation>>,
    pattern: IssuerPattern,
}

impl KeyManager {
    /// The checks a token of this key manager must pass, for the exact `iss` that
    /// [`Policy::key_manager_for`] resolved.
    pub fn validation(&self, issuer: String) -> Arc<Validation> {
        match &self.exact_validation {
            Some(exact) if exact.issuer.as_deref() == Some(issuer.as_str()) => Arc::clone(exact),
            _ => Arc::new(Validation {
                issuer: Some(issuer),
                ..self.validation.clone()
            }),
        }
    }

    /// The checks without the issuer (what a verified-token cache hit repeats: the times).
    pub fn time_validation(&self) -> &Validation {
        &self.validation
    }

    /// The signing algorithms accepted from this key manager (never empty, never HMAC).
    pub fn accepted_algorithms(&self) -> &[String] {
        &self.validation.algorithms
    }

    /// Whether `iss` is this key manager's issuer (for a `{tenantid}` issuer: an allowed tenant,
    /// taken from `claims`).
    pub fn issues(&self, iss: &str, claims: &Map<String, Value>) -> bool {
        matches!(self.pattern.fit(iss, claims), IssuerFit::Matches(_))
    }
}

/// The algorithms the filter accepts for a configured list: the list itself, or, when it is empty,
/// every asymmetric algorithm keygate supports. A key manager's JWKS is public, so HMAC (whose key
/// would be that public value) is never among them; `check-token` uses the same rule.
pub fn accepted_algorithms(configured: &[String]) -> Vec<String> {
    if configured.is_empty() {
        SUPPORTED_ALGORITHMS.iter().map(|a| a.to_string()).collect()
    } else {
        configured.to_vec()
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    pub name: String,
    pub version: String,
    pub base_path: String,
    pub resources: Vec<Resource>,
    /// Whether tokens for this API must be DPoP-bound.
    pub dpop: DpopMode,
    /// The origins a DPoP proof for this API may name (its own, else the gateway's).
    pub origins: Vec<String>,
    /// Indices of the key managers this API accepts tokens from; `None`: all trusted here.
    pub key_managers: Option<Vec<KeyManagerId>>,
    /// The credentials it accepts (`security`) and where its API key is read.
    pub credentials: ApiCredentials,
    /// Whether tokens for this API must be bound to the client certificate (RFC 8705).
    pub mtls_bound_tokens: CertBinding,
    /// The gateway-signed JWT forwarded upstream, if any.
    pub backend_jwt: Option<BackendJwtConfig>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub method: String,
    pub path: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    /// Every one of these scopes is needed too (`scopes_all`).
    pub scopes_all: Vec<String>,
    /// Claim conditions, all of which must hold (`claims`).
    pub claims: Vec<ClaimCondition>,
    pub public: bool,
}

/// A matched resource. Indices into the [`Policy`] that produced it; use it only with that policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub api: ApiId,
    /// The resource's position among its API's resources.
    pub resource: usize,
}

/// The first decision, before any token is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A `public: true` resource: forward without a token (identity headers still stripped).
    Public(RouteMatch),
    /// A resource that needs a token.
    Protected(RouteMatch),
    /// No API at this path and `settings.unknown_api` is `pass`.
    PassThrough,
    Denied(RouteRefusal),
}

impl Route {
    /// The API of a matched resource.
    pub fn api(&self) -> Option<ApiId> {
        match self {
            Route::Public(found) | Route::Protected(found) => Some(found.api),
            Route::PassThrough | Route::Denied(_) => None,
        }
    }
}

/// The key manager that will verify a token, and the exact `iss` the token must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyManagerMatch {
    pub id: KeyManagerId,
    pub issuer: String,
}

/// What verified claims are granted on a resource: decision steps 6 and 7 passed.
#[derive(Debug, Clone)]
pub struct Access<'p> {
    pub application: String,
    pub client_id: String,
    /// The subject, from the key manager's subject claims (`claims.subject`, default `sub`).
    pub subject: Option<String>,
    pub key_manager: &'p str,
    /// Every scope the token carries (not only the ones the resource asked for).
    pub scopes: Vec<String>,
    pub api: &'p Api,
    pub resource: &'p Resource,
    /// The subscription's tier and its counter (`None`: unlimited).
    pub budget: Option<Arc<Budget>>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    environment: String,
    settings: Settings,
    key_managers: Vec<KeyManager>,
    apis: Vec<Api>,
    /// The plugin config's applications (none when they come from the directory).
    applications: InlineApplications,
    /// The names applications refer to (what directory entries are compiled against).
    catalog: Catalog,
    /// Where the applications come from when not inline.
    directory: Option<DirectoryConfig>,
    limiter: Limiter,
    router: Router,
    /// `alg` values accepted in DPoP proofs (never empty, never HMAC) and the same list as the
    /// `algs` of DPoP challenges.
    dpop_algorithms: Vec<String>,
    dpop_algs: String,
    /// Every application's API keys by hash.
    api_keys: ApiKeys,
    /// How backend JWTs are signed (public parts), when any API forwards one.
    backend_signing: Option<BackendSigningConfig>,
}

impl Policy {
    /// The gateway's backend-JWT issuer and public keys (docs/backend-jwt.md).
    pub fn backend_signing(&self) -> Option<&BackendSigningConfig> {
        self.backend_signing.as_ref()
    }

    /// Who counts the tiers' budgets.
    pub fn limiter(&self) -> Limiter {
        self.limiter
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `alg` values accepted in DPoP proofs.
    pub fn dpop_algorithms(&self) -> &[String] {
        &self.dpop_algorithms
    }

    /// [`Policy::dpop_algorithms`] space-separated, as DPoP challenges list them.
    pub fn dpop_algs(&self) -> &str {
        &self.dpop_algs
    }

    /// The origins (`scheme://host[:port]`) a DPoP proof's `htu` may name for the API of
    /// `route`, from the configuration only; empty: none (every proof is refused).
    pub fn dpop_origins(&self, route: &RouteMatch) -> &[String] {
        self.api(route.api).map_or(&[], |api| &api.origins)
    }

    /// Whether a token of key manager `km` for the API of `route` must be DPoP-bound.
    pub fn dpop_required(&self, route: &RouteMatch, km: KeyManagerId) -> bool {
        let required = |mode: DpopMode| mode == DpopMode::Required;
        self.key_manager(km).is_some_and(|k| required(k.dpop))
            || self.api(route.api).is_some_and(|a| required(a.dpop))
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The application directory source, when the applications are not inline.
    pub fn directory(&self) -> Option<&DirectoryConfig> {
        self.directory.as_ref()
    }

    /// The names applications refer to, resolved to this policy's indices.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The plugin config's own applications.
    pub fn inline_applications(&self) -> &InlineApplications {
        &self.applications
    }

    pub fn key_managers(&self) -> &[KeyManager] {
        &self.key_managers
    }

    /// Every key manager's id, in declaration order.
    pub fn key_manager_ids(&self) -> impl Iterator<Item = KeyManagerId> {
        (0..self.key_managers.len()).map(KeyManagerId::new)
    }

    /// The key manager `id` (`None` only for an id from another policy).
    pub fn key_manager(&self, id: KeyManagerId) -> Option<&KeyManager> {
        self.key_managers.get(id.index())
    }

    /// The API `id` (`None` only for an id from another policy).
    pub fn api(&self, id: ApiId) -> Option<&Api> {
        self.apis.get(id.index())
    }

    /// The key managers an opaque token is introspected at, in declaration order: those trusted
    /// in this environment that have `introspection`.
    pub fn introspection_order(&self) -> impl Iterator<Item = KeyManagerId> + '_ {
        self.key_managers
            .iter()
            .enumerate()
            .filter(|(_, km)| km.enabled_here && km.introspection.is_some())
            .map(|(i, _)| KeyManagerId::new(i))
    }

    /// The key managers an opaque token for the API of `route` is introspected at, in
    /// declaration order: [`Policy::introspection_order`] limited to those the API accepts
    /// (`apis[].key_managers`), so a token is disclosed to no other.
    pub fn introspection_order_for(&self, route: &RouteMatch) -> Vec<KeyManagerId> {
        self.introspection_order()
            .filter(|&km| self.accepts(route, km))
            .collect()
    }

    /// Whether the API of `route` accepts tokens of key manager `km` (`apis[].key_managers`;
    /// empty: every key manager trusted here).
    pub fn accepts(&self, route: &RouteMatch, km: KeyManagerId) -> bool {
        match self.api(route.api) {
            Some(api) => api
                .key_managers
                .as_ref()
                .is_none_or(|kms| kms.contains(&km)),
            None => false,
        }
    }

    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// The API and resource of a match (`None` only for a match from another policy).
    pub fn resource(&self, route: &RouteMatch) -> Option<(&Api, &Resource)> {
        let api = self.api(route.api)?;
        Some((api, api.resources.get(route.resource)?))
    }

    /// Step 1: method and path hygiene, then API, then resource and method (`crate::policy::routes`).
    pub fn route(&self, method: &str, path: &str) -> Route {
        if let Err(problem) = check_method(method) {
            return Route::Denied(RouteRefusal::MethodNotCanonical { problem });
        }
        let path = match CanonicalPath::parse(path) {
            Ok(path) => path,
            Err(problem) => return Route::Denied(RouteRefusal::PathNotCanonical { problem }),
        };
        match self.router.find(method, &path) {
            RouteOutcome::Matched { api, resource } => {
                let found = RouteMatch {
                    api: ApiId::new(api),
                    resource,
                };
                match self.resource(&found) {
                    Some((_, r)) if r.public => Route::Public(found),
                    Some(_) => Route::Protected(found),
                    None => Route::Denied(RouteRefusal::ResourceNotFound),
                }
            }
            RouteOutcome::NoApi => match self.settings.unknown_api {
                UnknownApi::Deny => Route::Denied(RouteRefusal::NoApi),
                UnknownApi::Pass => Route::PassThrough,
            },
            RouteOutcome::ResourceNotFound { .. } => Route::Denied(RouteRefusal::ResourceNotFound),
            RouteOutcome::MethodNotAllowed { allow, .. } => {
                Route::Denied(RouteRefusal::MethodNotAllowed { allow })
            }
            RouteOutcome::Refused(problem) => {
                Route::Denied(RouteRefusal::PathNotCanonical { problem })
            }
        }
    }

    /// Step 3: the key manager for the token's `iss` (read before verification; the returned exact
    /// issuer is then checked by the verifier). A key manager trusted here wins over one that is not.
    pub fn key_manager_for(
        &self,
        issuer: Option<&str>,
        unverified: &Map<String, Value>,
    ) -> Result<KeyManagerMatch, IssuerRefusal> {
        let Some(iss) = issuer else {
            return Err(IssuerRefusal::Missing);
        };
        let mut not_enabled = false;
        let mut tenant_refused = false;
        for (index, km) in self.key_managers.iter().enumerate() {
            match km.pattern.fit(iss, unverified) {
                IssuerFit::Matches(issuer) if km.enabled_here => {
                    return Ok(KeyManagerMatch {
                        id: KeyManagerId::new(index),
                        issuer,
                    });
                }
                IssuerFit::Matches(_) => not_enabled = true,
                IssuerFit::TenantNotAllowed => tenant_refused |= km.enabled_here,
                IssuerFit::NoMatch => {}
            }
        }
        Err(if not_enabled {
            IssuerRefusal::NotEnabled
        } else if tenant_refused {
            IssuerRefusal::TenantNotAllowed
        } else {
            IssuerRefusal::Unknown
        })
    }

    /// Steps 6–7 on verified claims with the plugin config's own applications.
    pub fn authorize<'p>(
        &'p self,
        route: &RouteMatch,
        km: KeyManagerId,
        claims: &Map<String, Value>,
    ) -> Result<Access<'p>, AccessRefusal> {
        self.authorize_with(route, km, claims, self)
    }

    /// Steps 6–7 on verified claims: application (found by `applications`: inline or the
    /// directory), subscription, scopes, groups → access.
    pub fn authorize_with<'p>(
        &'p self,
        route: &RouteMatch,
        km: KeyManagerId,
        claims: &Map<String, Value>,
        applications: &dyn ApplicationLookup,
    ) -> Result<Access<'p>, AccessRefusal> {
        let key_manager = self
            .key_manager(km)
            .ok_or(AccessRefusal::Issuer(IssuerRefusal::Unknown))?;
        let (api, resource) = self
            .resource(route)
            .ok_or(AccessRefusal::ResourceNotFound)?;
        // A verified token without one client id cannot be tied to an application: the token, not
        // the caller's rights, is unusable here, so this is a 401.
        let client_id = key_manager
            .mapping
            .client_id(claims)
            .map_err(AccessRefusal::ClientId)?;
        let application = match applications.find(km, client_id) {
            Lookup::Found(application) => application,
            Lookup::Unknown => {
                return Err(AccessRefusal::ApplicationNotFound {
                    key_manager: key_manager.name.clone(),
                    client_id: client_id.to_string(),
                })
            }
            Lookup::Unavailable { retry_after } => {
                return Err(AccessRefusal::DirectoryUnavailable { retry_after })
            }
        };
        let subscription = self.active_subscription(&application, api, route)?;
        let scopes = key_manager.mapping.scopes(claims);
        if !resource.scopes.is_empty() && !resource.scopes.iter().any(|s| scopes.contains(s)) {
            return Err(AccessRefusal::InsufficientScope {
                required: resource.scopes.clone(),
            });
        }
        check_all_scopes(resource, &scopes)?;
        if !resource.groups.is_empty() {
            let groups = key_manager.mapping.groups(claims);
            if !resource.groups.iter().any(|g| groups.contains(g)) {
                return Err(AccessRefusal::InsufficientGroup {
                    required: resource.groups.clone(),
                });
            }
        }
        check_claims(resource, claims)?;
        Ok(Access {
            application: application.name.clone(),
            client_id: client_id.to_string(),
            subject: key_manager.mapping.subject(claims).map(str::to_string),
            key_manager: &key_manager.name,
            scopes,
            api,
            resource,
            budget: subscription.budget.clone(),
        })
    }

    /// Step 6 after the lookup, for a token or an API key: the application is not blocked and
    /// holds a subscription to the route's API that is active in this environment.
    pub(crate) fn active_subscription<'a>(
        &self,
        application: &'a Application,
        api: &Api,
        route: &RouteMatch,
    ) -> Result<&'a Subscription, AccessRefusal> {
        if application.blocked {
            return Err(AccessRefusal::ApplicationBlocked {
                application: application.name.clone(),
            });
        }
        let Some(subscription) = application.subscriptions.get(&route.api.index()) else {
            return Err(AccessRefusal::NotSubscribed {
                application: application.name.clone(),
                api: api.name.clone(),
            });
        };
        let blocked = match subscription.state {
            SubscriptionState::Active => false,
            SubscriptionState::Blocked => true,
            SubscriptionState::ProductionOnlyBlocked => self.environment == PRODUCTION,
        };
        if blocked {
            return Err(AccessRefusal::SubscriptionBlocked {
                application: application.name.clone(),
                api: api.name.clone(),
            });
        }
        Ok(subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(environment: &str) -> Policy {
        let km = |name: &str, envs: &[&str]| {
            json!({"name": name, "issuer": "https://idp", "environments": envs,
                   "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}})
        };
        let cfg = json!({
            "environment": environment,
            "key_managers": [km("prod-idp", &["production"]), km("sandbox-idp", &["sandbox"])],
            "apis": [{"name": "a", "base_path": "/a", "resources": [{"method": "GET", "path": "/x"}]}],
            "applications": [{"name": "app",
                "client_ids": [{"key_manager": "sandbox-idp", "client_id": "c"}],
                "subscriptions": [{"api": "a"}]}]
        });
        Policy::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn one_issuer_resolves_to_the_key_manager_enabled_here() {
        let none = Map::new();
        let prod = policy("production").key_manager_for(Some("https://idp"), &none);
        assert_eq!(prod.unwrap().id.index(), 0);
        let sandbox = policy("sandbox").key_manager_for(Some("https://idp"), &none);
        assert_eq!(sandbox.unwrap().id.index(), 1);
        let staging = policy("staging").key_manager_for(Some("https://idp"), &none);
        assert_eq!(staging.unwrap_err(), IssuerRefusal::NotEnabled);
    }

    #[test]
    fn client_ids_belong_to_their_key_manager() {
        let p = policy("sandbox");
        let Route::Protected(found) = p.route("GET", "/a/x") else {
            panic!("expected protected");
        };
        let claims = json!({"client_id": "c"}).as_object().unwrap().clone();
        assert_eq!(
            p.authorize(&found, KeyManagerId::new(1), &claims)
                .unwrap()
                .application,
            "app"
        );
        let err = p
            .authorize(&found, KeyManagerId::new(0), &claims)
            .unwrap_err();
        assert_eq!(
            err,
            AccessRefusal::ApplicationNotFound {
                key_manager: "prod-idp".into(),
                client_id: "c".into()
            }
        );
    }

    #[test]
    fn indices_from_elsewhere_fail_closed() {
        let p = policy("sandbox");
        let claims = json!({"client_id": "c"}).as_object().unwrap().clone();
        let stray = RouteMatch {
            api: ApiId::new(5),
            resource: 0,
        };
        assert_eq!(
            p.authorize(&stray, KeyManagerId::new(1), &claims)
                .unwrap_err(),
            AccessRefusal::ResourceNotFound
        );
        let found = RouteMatch {
            api: ApiId::new(0),
            resource: 0,
        };
        assert_eq!(
            p.authorize(&found, KeyManagerId::new(9), &claims)
                .unwrap_err(),
            AccessRefusal::Issuer(IssuerRefusal::Unknown)
        );
    }
}
