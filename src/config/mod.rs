//! Plugin configuration: the JSON the CLI writes and the filter reads in `on_configure`.
//!
//! The serde structs below are the wire contract between `keygate generate` and the filter, with
//! their errors (`error.rs`) and the wire-level constants. Judging a configuration and compiling it
//! into indexed, typed structures is the policy compiler's work (`crate::policy::compile`).

use serde::{Deserialize, Serialize};

mod error;
mod json_path;

pub(crate) use json_path::error_path;

pub use error::{ConfigError, ConfigErrors, ConfigProblem};

/// Signing algorithms a key manager may list in `algorithms` (asymmetric only: never `none`,
/// never HMAC, whose "key" would be public).
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// The placeholder of an Entra ID multi-tenant issuer.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

impl PluginConfig {
    /// Parse the plugin configuration JSON: syntax and types only. A syntax or type error names
    /// the field path (`key_managers[1].issuer: missing`). The semantic rules are the compiler's,
    /// [`crate::policy::Policy::compile`], the one place that judges a configuration.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let config = PluginConfig::deserialize(&mut deserializer)
            .map_err(|e| ConfigError::from_serde(error_path(bytes, &e), &e))?;
        deserializer
            .end()
            .map_err(|e| ConfigError::from_serde(".".to_string(), &e))?;
        Ok(config)
    }
}

/// Top level of the filter's `configuration` (JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The environment this gateway serves (`production`, `sandbox`, ...).
    pub environment: String,
    #[serde(default)]
    pub key_managers: Vec<KeyManagerConfig>,
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
    #[serde(default)]
    pub applications: Vec<ApplicationConfig>,
    /// The gateway's own origins (`https://api.example.com`): a DPoP proof's `htu` must name one
    /// of them with the request's path. Never taken from the client's `Host` or `:scheme`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_urls: Vec<String>,
    /// Request budgets that subscriptions refer to by name (`subscriptions[].tier`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierConfig>,
    /// Who counts the tiers: the filter itself (`local`, one Envoy) or Envoy's rate-limit filter
    /// against a rate-limit service (`service`, a fleet sharing one budget).
    #[serde(default, skip_serializing_if = "is_default")]
    pub limiter: Limiter,
    #[serde(default)]
    pub settings: Settings,
    /// Where the applications come from instead of `applications`: a directory source the filter
    /// pulls them from (`docs/directory.md`); absent: the applications above, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryConfig>,
    /// The gateway's signing keys for backend JWTs (`apis[].backend_jwt`); absent: no API may
    /// ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_jwt: Option<BackendSigningConfig>,
}

/// The application directory source (`docs/directory.md`): the filter fetches the applications
/// through an Envoy cluster, like a JWKS, and keeps them once per Envoy in shared data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Base URL of the source (informational, used in logs and in the shared-data key).
    pub url: String,
    /// Envoy cluster that routes to the source.
    pub cluster: String,
    /// `:authority` of the fetches.
    pub authority: String,
    /// `:path` of the base URL (`/v1/snapshot` and `/v1/changes` are appended).
    pub path: String,
    /// Environment variable (of Envoy's Wasm VM) holding the bearer token sent to the source;
    /// empty: no `Authorization` header.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_env: String,
    /// Poll interval, seconds.
    #[serde(default = "default_directory_refresh")]
    pub refresh_seconds: u64,
    /// Keep serving the last good directory this long after the last successful refresh.
    #[serde(default = "default_directory_stale")]
    pub stale_seconds: u64,
    /// Fetch timeout, milliseconds.
    #[serde(default = "default_directory_timeout")]
    pub timeout_ms: u64,
    /// Largest answer accepted, bytes.
    #[serde(default = "default_directory_max_bytes")]
    pub max_bytes: usize,
}

fn default_directory_refresh() -> u64 {
    1
}
fn default_directory_stale() -> u64 {
    300
}
fn default_directory_timeout() -> u64 {
    15_000
}
fn default_directory_max_bytes() -> usize {
    64 * 1024 * 1024
}

/// How the gateway signs the JWTs it forwards to upstreams (docs/backend-jwt.md): its `iss` and
/// its ES256 (P-256) keys. Only public parts are here; each private key is read from Envoy's
/// environment (the variable `env`, a private JWK) and must match `x`/`y`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSigningConfig {
    pub issuer: String,
    /// The first key signs; every key is published (rotation).
    pub keys: Vec<BackendKeyConfig>,
    /// Sign in Wasm even where Envoy's `sign` foreign function works (for measurements).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_wasm: bool,
}

/// One P-256 signing key: where its private part is and its public coordinates (base64url).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendKeyConfig {
    pub env: String,
    pub x: String,
    pub y: String,
}

/// Per API: forward a JWT signed by the gateway that vouches for the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendJwtConfig {
    /// The request header that carries it upstream (any incoming copy is removed).
    #[serde(default = "default_backend_jwt_header")]
    pub header: String,
    /// Lifetime of a backend JWT, seconds (never beyond the access token's `exp`).
    #[serde(default = "default_backend_jwt_ttl")]
    pub ttl_seconds: u64,
}

impl Default for BackendJwtConfig {
    fn default() -> Self {
        BackendJwtConfig {
            header: default_backend_jwt_header(),
            ttl_seconds: default_backend_jwt_ttl(),
        }
    }
}

fn default_backend_jwt_header() -> String {
    "x-jwt-assertion".to_string()
}
fn default_backend_jwt_ttl() -> u64 {
    300
}

/// Whether tokens for an API must be bound to the TLS client certificate (RFC 8705). Either way
/// a token that *is* bound (`cnf.x5t#S256`) must match the connection's certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertBinding {
    /// Bound tokens must match; unbound tokens pass.
    #[default]
    WhenBound,
    /// Unbound tokens are refused.
    Required,
}

impl CertBinding {
    pub fn is_default(&self) -> bool {
        *self == CertBinding::WhenBound
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A tier: at most `requests` requests per `per` (`second`, `minute`, `hour` or `day`) for each
/// subscription that names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub name: String,
    pub requests: u64,
    pub per: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limiter {
    /// The filter counts every subscription's requests across the workers of its Envoy.
    #[default]
    Local,
    /// Envoy's `envoy.filters.http.ratelimit` counts them at a rate-limit service; the filter
    /// only names the application, API and tier in its identity headers.
    Service,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyManagerConfig {
    pub name: String,
    /// Exact `iss` value. For Entra multi-tenant discovery it may hold the literal `{tenantid}`
    /// placeholder; the tenant then comes from the token's `tid` and must be in `tenants`.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Environments where this key manager is trusted; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Accepted audiences; empty means the audience is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where client id, scopes and groups are in this key manager's tokens.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Allowed tenants when `issuer` is a `{tenantid}` template (Entra ID multi-tenant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Accepted signing algorithms; empty means every asymmetric algorithm keygate supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// `required`: every token of this key manager must be DPoP-bound and come with a proof.
    #[serde(default, skip_serializing_if = "DpopMode::is_default")]
    pub dpop: DpopMode,
    /// Opaque (non-JWT) access tokens are checked at this key manager's RFC 7662 introspection
    /// endpoint; absent: opaque tokens are not accepted from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<IntrospectionConfig>,
}

/// How the filter reaches a key manager's introspection endpoint (RFC 7662), and with which client
/// credentials. The secret itself is never in the configuration: `client_secret_env` names the
/// variable of Envoy's process environment (passed to the Wasm VM) that holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The discovery document's `introspection_endpoint` (informational, used in logs); empty when
    /// the document has none, which the compiler refuses.
    pub endpoint: String,
    /// Envoy cluster that routes to the introspection host.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// `:path` of the call.
    pub path: String,
    /// The gateway's client id at the key manager (HTTP Basic user).
    pub client_id: String,
    /// Environment variable holding the gateway client's secret.
    pub client_secret_env: String,
}

/// Whether tokens must be DPoP-bound (RFC 9449). Either way a token that *is* bound
/// (`cnf.jkt`) needs the DPoP scheme and a valid proof.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpopMode {
    /// Bound tokens need a proof; plain bearer tokens are accepted.
    #[default]
    Allowed,
    /// Plain bearer tokens are refused.
    Required,
}

impl DpopMode {
    pub fn is_default(&self) -> bool {
        *self == DpopMode::Allowed
    }
}

/// How the filter reaches the JWKS: through an Envoy cluster, with `dispatch_http_call`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    /// The JWKS URL as published by the key manager (informational, used in logs).
    pub uri: String,
    /// Envoy cluster that routes to the JWKS host (`outbound|443||host` under Istio).
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
}

/// Claim names (dotted paths allowed, e.g. `realm_access.roles`), tried in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    #[serde(default = "default_client_id_claims")]
    pub client_id: Vec<String>,
    #[serde(default = "default_scope_claims")]
    pub scopes: Vec<String>,
    #[serde(default = "default_group_claims")]
    pub groups: Vec<String>,
    /// Who the token speaks for (the `x-keygate-subject` header): the first claim present as a
    /// non-empty string; empty: no subject.
    #[serde(default = "default_subject_claims")]
    pub subject: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            client_id: default_client_id_claims(),
            scopes: default_scope_claims(),
            groups: default_group_claims(),
            subject: default_subject_claims(),
        }
    }
}

fn default_client_id_claims() -> Vec<String> {
    ["client_id", "azp", "appid", "cid"]
        .map(String::from)
        .to_vec()
}
fn default_scope_claims() -> Vec<String> {
    ["scope", "scp"].map(String::from).to_vec()
}
fn default_group_claims() -> Vec<String> {
    ["groups"].map(String::from).to_vec()
}
fn default_subject_claims() -> Vec<String> {
    ["sub"].map(String::from).to_vec()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub base_path: String,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    /// The key managers whose tokens this API accepts (JWTs and opaque tokens alike); empty: every
    /// key manager trusted in this environment. An opaque token for this API is introspected at
    /// these only, so it is never disclosed to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_managers: Vec<String>,
    /// This API's own origins, instead of the top-level `public_urls` (an API served under
    /// another host name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_urls: Vec<String>,
    /// `required`: every token for this API must be DPoP-bound and come with a proof.
    #[serde(default, skip_serializing_if = "DpopMode::is_default")]
    pub dpop: DpopMode,
    /// The credentials this API accepts (`oauth2`, `api_key`); empty: `[oauth2]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security: Vec<Security>,
    /// Where an API key is read from (when `security` has `api_key`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub api_key: ApiKeyLocation,
    /// `required`: every token for this API must be bound to the client certificate (RFC 8705).
    #[serde(default, skip_serializing_if = "CertBinding::is_default")]
    pub mtls_bound_tokens: CertBinding,
    /// Forward a gateway-signed JWT to the upstream; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_jwt: Option<BackendJwtConfig>,
}

/// A kind of credential an API accepts (`apis[].security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// An OAuth2 access token (`Authorization: Bearer` or `DPoP`).
    Oauth2,
    /// An application's API key (`apis[].api_key`).
    ApiKey,
}

/// Where an API takes its API key from: a request header, and the query string only when named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyLocation {
    /// The request header that carries the key (default `apikey`).
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// A query parameter that may carry the key instead (off by default); it is removed from the
    /// path before the request is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for ApiKeyLocation {
    fn default() -> Self {
        ApiKeyLocation {
            header: default_api_key_header(),
            query: None,
        }
    }
}

/// The default API key header.
pub const DEFAULT_API_KEY_HEADER: &str = "apikey";

fn default_api_key_header() -> String {
    DEFAULT_API_KEY_HEADER.to_string()
}

/// One API key of an application: only the SHA-256 of the key is configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for the key (shown upstream in `<prefix>api-key`, never the key itself).
    pub name: String,
    /// The SHA-256 of the whole key string (`kg_...`), 64 lower-case hex digits.
    pub sha256: String,
    /// When the key stops being accepted: an RFC 3339 date-time or Unix seconds; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Expiry>,
}

/// An instant as written in a configuration: Unix seconds or an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expiry {
    Unix(u64),
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// HTTP method, or `*` / `ANY` for every method.
    pub method: String,
    /// Path template relative to the API base path: `/pets`, `/pets/{id}`, `/files/*`.
    pub path: String,
    /// The token needs at least one of these scopes (empty: no scope needed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The token needs at least one of these groups (empty: no group needed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The token needs every one of these scopes (beside one of `scopes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_all: Vec<String>,
    /// Claim conditions: each named claim (a name or dotted path) must hold one of its values;
    /// all the conditions must hold.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub claims: std::collections::BTreeMap<String, Vec<String>>,
    /// No token needed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    pub name: String,
    #[serde(default)]
    pub state: ApplicationState,
    #[serde(default)]
    pub client_ids: Vec<ClientIdConfig>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// The application's API keys (their hashes); several may be active at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    #[default]
    Active,
    Blocked,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdConfig {
    pub key_manager: String,
    pub client_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// API name.
    pub api: String,
    #[serde(default)]
    pub state: SubscriptionState,
    /// The tier's name; `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    #[default]
    Active,
    Blocked,
    ProductionOnlyBlocked,
}

/// Tunables, each with a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Clock skew allowed for `exp`/`nbf`/`iat`, seconds.
    pub leeway_seconds: u64,
    /// What to do with a path that matches no API: `deny` (404) or `pass`.
    pub unknown_api: UnknownApi,
    /// Prefix of the identity headers added upstream (always stripped from requests).
    pub header_prefix: String,
    /// Remove `Authorization` from every request keygate forwards (allowed or public).
    pub strip_authorization: bool,
    /// A `GET`/`HEAD` of exactly this path is answered 200 by the filter itself (a readiness
    /// check through the listener: a gateway whose configuration was refused answers 500 there);
    /// empty: off.
    pub ready_path: String,
    /// `realm` in `WWW-Authenticate`.
    pub realm: String,
    /// JWKS fetch timeout, milliseconds.
    pub jwks_fetch_timeout_ms: u64,
    /// Largest JWKS body accepted, bytes.
    pub jwks_max_bytes: usize,
    /// Refresh interval bounds (seconds) applied to `Cache-Control: max-age`.
    pub jwks_min_refresh_seconds: u64,
    pub jwks_max_refresh_seconds: u64,
    /// Refresh interval when the response has no `max-age`.
    pub jwks_default_refresh_seconds: u64,
    /// At most one unknown-`kid` refetch per key manager per this many seconds.
    pub jwks_unknown_kid_refetch_seconds: u64,
    /// Keep serving the last good keys this long after refreshes start failing.
    pub jwks_stale_seconds: u64,
    /// First retry delay after a failed fetch (doubles up to `jwks_retry_max_seconds`).
    pub jwks_retry_initial_seconds: u64,
    pub jwks_retry_max_seconds: u64,
    /// How long a request may wait for keys before it is answered 503.
    pub request_wait_ms: u64,
    /// Requests one worker holds while keys are fetched, in all and for one key manager; beyond
    /// either bound a request is answered 503 at once (never forwarded).
    pub max_parked_requests: usize,
    pub max_parked_per_key_manager: usize,
    /// Verified tokens remembered per worker (0 disables): a repeated token skips the signature
    /// check while the key set is unchanged; time, issuer and audience are checked every time.
    pub token_cache_entries: usize,
    /// Approximate memory the verified-token cache may use per worker, bytes.
    pub token_cache_bytes: usize,
    /// `alg` values accepted in DPoP proofs; empty means every asymmetric algorithm keygate
    /// supports (they are listed in the `algs` of DPoP challenges).
    pub dpop_algorithms: Vec<String>,
    /// How old a DPoP proof's `iat` may be, seconds (also how long its `jti` is remembered).
    pub dpop_max_age_seconds: u64,
    /// How far a DPoP proof's `iat` may be in the future (client clock ahead), seconds.
    pub dpop_future_skew_seconds: u64,
    /// Shared-data slots of the DPoP `jti` replay store (all workers share them).
    pub dpop_replay_slots: usize,
    /// Proof ids one slot remembers at most; a proof whose slot is full is answered 503.
    pub dpop_replay_slot_entries: usize,
    /// Longest time an active introspection answer is reused (it never outlives the token's `exp`).
    pub introspection_cache_seconds: u64,
    /// How long an inactive answer is reused before the token is introspected again.
    pub introspection_negative_cache_seconds: u64,
    /// How long requests are answered 503 after an introspection call failed, before another try.
    pub introspection_retry_seconds: u64,
    /// Introspection call timeout, milliseconds.
    pub introspection_timeout_ms: u64,
    /// Largest introspection answer accepted, bytes.
    pub introspection_max_bytes: usize,
    /// Entries of the introspection cache shared by all workers (a token's hash picks its entry;
    /// a colliding token replaces it), which bounds the cache's memory. Only active answers live
    /// there.
    pub introspection_cache_entries: usize,
    /// Entries of the separate shared area for everything but active answers (inactive answers,
    /// failures, the lease of a call in flight), so junk tokens never evict an active answer.
    pub introspection_negative_cache_entries: usize,
    /// Introspection calls the workers of one Envoy start together in one second (counted in
    /// shared data); past it a token that needs a call is answered 503 with `Retry-After`.
    pub introspection_calls_per_second: u64,
    /// Introspection calls one worker starts in one second (within the Envoy's bound).
    pub introspection_worker_calls_per_second: u64,
    /// Take the client certificate's hash from `x-forwarded-client-cert` (`Hash=`), set by a
    /// trusted front proxy that ends TLS; false: that header is ignored and removed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub trusted_client_cert_header: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            leeway_seconds: 60,
            unknown_api: UnknownApi::Deny,
            header_prefix: "x-keygate-".to_string(),
            ready_path: "/keygate/ready".to_string(),
            strip_authorization: true,
            realm: "keygate".to_string(),
            jwks_fetch_timeout_ms: 5_000,
            jwks_max_bytes: 512 * 1024,
            jwks_min_refresh_seconds: 300,
            jwks_max_refresh_seconds: 86_400,
            jwks_default_refresh_seconds: 600,
            jwks_unknown_kid_refetch_seconds: 10,
            jwks_stale_seconds: 3_600,
            jwks_retry_initial_seconds: 1,
            jwks_retry_max_seconds: 60,
            request_wait_ms: 5_000,
            max_parked_requests: 1_024,
            max_parked_per_key_manager: 256,
            token_cache_entries: 2_048,
            token_cache_bytes: 16 * 1024 * 1024,
            dpop_algorithms: Vec::new(),
            dpop_max_age_seconds: 300,
            dpop_future_skew_seconds: 5,
            dpop_replay_slots: 4_096,
            dpop_replay_slot_entries: 32,
            introspection_cache_seconds: 60,
            introspection_negative_cache_seconds: 10,
            introspection_retry_seconds: 1,
            introspection_timeout_ms: 3_000,
            introspection_max_bytes: 16 * 1024,
            introspection_cache_entries: 1_024,
            introspection_negative_cache_entries: 1_024,
            introspection_calls_per_second: 100,
            introspection_worker_calls_per_second: 50,
            trusted_client_cert_header: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownApi {
    #[default]
    Deny,
    Pass,
}
