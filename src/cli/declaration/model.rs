//! The operator's declaration (`keygate.yaml`, YAML or JSON): the model `generate` and
//! `instructions` read. Unknown fields are refused; names the cross-checks refer to carry their
//! source line (`Spanned`) so every error can say where to look.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::cli::discovery::oidc::DiscoveryDocument;
use crate::config::{
    ApiKeyLocation, ApplicationState, BackendJwtConfig, BackendKeyConfig, CertBinding, DpopMode,
    Expiry, Security, Settings, SubscriptionState,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A string with the line it came from.
pub type Located = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    pub gateway: GatewayDecl,
    #[serde(default)]
    pub key_managers: Vec<KeyManagerDecl>,
    #[serde(default)]
    pub apis: Vec<ApiDecl>,
    #[serde(default)]
    pub applications: Vec<ApplicationDecl>,
    /// Request budgets subscriptions refer to by name.
    #[serde(default)]
    pub tiers: Vec<TierDecl>,
    /// The filter's tunables (`Settings` of the plugin config); every field optional.
    #[serde(default)]
    pub settings: Settings,
    /// Istio manifests are generated only when this block is present.
    #[serde(default)]
    pub istio: Option<Spanned<IstioDecl>>,
    /// The application directory source (`docs/directory.md`): with it the applications are
    /// served by the source (`keygate directory serve`) and left out of the plugin config.
    #[serde(default)]
    pub directory: Option<DirectoryDecl>,
}

/// `directory: {url, token_env, refresh_seconds, stale_seconds}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryDecl {
    /// Base URL of the directory source (`http(s)://host[:port][/path]`).
    pub url: Located,
    /// Envoy's environment variable holding the bearer token the gateway sends to the source.
    #[serde(default)]
    pub token_env: Option<Located>,
    /// Poll interval, seconds (default 1).
    #[serde(default = "default_directory_refresh")]
    pub refresh_seconds: u64,
    /// Serve the last good directory this long after the last successful refresh (default 300).
    #[serde(default = "default_directory_stale")]
    pub stale_seconds: u64,
}

fn default_directory_refresh() -> u64 {
    1
}

fn default_directory_stale() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayDecl {
    pub environment: Located,
    /// Listener address `host:port`.
    #[serde(default)]
    pub listen: Option<Located>,
    /// Envoy admin address `host:port`.
    #[serde(default)]
    pub admin: Option<Located>,
    /// The origins clients call the gateway at (`https://api.example.com`): a DPoP proof's `htu`
    /// must name one of them. Omitted: `http://` + `listen` when that is a specific address
    /// (standalone Envoy), else none (DPoP proofs refused).
    #[serde(default)]
    pub public_urls: Vec<Located>,
    /// CA bundle Envoy uses to verify https key managers and upstreams.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Route timeout towards upstreams, seconds.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_seconds: u64,
    /// `HOST:PORT` of a gRPC rate-limit service (envoyproxy/ratelimit): the tiers are then
    /// counted there, for every Envoy of the fleet, instead of by each filter.
    #[serde(default)]
    pub rate_limit_service: Option<Located>,
    /// Let requests through when the rate-limit service cannot answer (default: refuse them).
    #[serde(default)]
    pub rate_limit_fail_open: bool,
    /// Serve the listener over TLS and ask clients for certificates (docs/mtls.md).
    #[serde(default)]
    pub tls: Option<TlsDecl>,
    /// The gateway's backend-JWT signing keys (docs/backend-jwt.md).
    #[serde(default)]
    pub backend_jwt: Option<BackendSigningDecl>,
}

/// `gateway.tls`: the listener's certificate and key (PEM files Envoy reads) and the CA bundle
/// client certificates must chain to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDecl {
    pub cert: Located,
    pub key: Located,
    /// Omitted: no client certificate is asked for (no certificate-bound token can be used).
    #[serde(default)]
    pub client_ca: Option<Located>,
    /// Refuse TLS connections without a client certificate (default: ask, do not require).
    #[serde(default)]
    pub require_client_certificate: bool,
}

/// `gateway.backend_jwt`: the issuer of backend JWTs and the signing keys (public parts; each
/// private key is in Envoy's environment variable `env`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSigningDecl {
    /// Omitted: the first of `gateway.public_urls`, else `keygate`.
    #[serde(default)]
    pub issuer: Option<String>,
    pub keys: Vec<BackendKeyConfig>,
    #[serde(default)]
    pub in_wasm: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierDecl {
    pub name: Located,
    pub requests: u64,
    /// `second`, `minute`, `hour` or `day`.
    pub per: Located,
}

fn default_upstream_timeout() -> u64 {
    30
}

/// The `istio` block: where the WasmPlugin attaches, where sidecars load the module from, how
/// the key managers' hosts are reached from the pod.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IstioDecl {
    /// Namespace of the generated resources (a DNS-1123 label; omitted: the namespace
    /// `kubectl apply` uses).
    #[serde(default)]
    pub namespace: Option<Located>,
    /// `sidecar` (default), `gateway NAME` or `waypoint NAME`: which proxies run the filter.
    #[serde(default)]
    pub attach: Option<Located>,
    /// `spec.selector.matchLabels` of the WasmPlugin (sidecar attachment).
    #[serde(default)]
    pub selector: BTreeMap<String, Located>,
    /// Accept a sidecar WasmPlugin without a selector: every workload of the namespace (of the
    /// whole mesh in Istio's root namespace).
    #[serde(default)]
    pub mesh_wide: bool,
    /// The image `make oci` builds, as pushed (`registry.example/keygate:0.1.0`): the WasmPlugin
    /// loads `oci://` + this.
    #[serde(default)]
    pub image: Option<Located>,
    /// Where the sidecars load the module from instead (`oci://`, `file://`, `http(s)://`).
    #[serde(default)]
    pub wasm_url: Option<Located>,
    /// The WasmPlugin `sha256` (for an `oci://` URL the image's manifest digest); omitted:
    /// computed from the local module.
    #[serde(default)]
    pub wasm_sha256: Option<Located>,
    /// `spec.priority` of the WasmPlugin (higher runs first within `phase: AUTHN`).
    #[serde(default = "default_istio_priority")]
    pub priority: i32,
    /// CA bundle inside the proxy container that verifies the key managers' certificates.
    #[serde(default)]
    pub ca_certificates: Option<Located>,
}

pub const DEFAULT_ISTIO_PRIORITY: i32 = 1000;
pub const DEFAULT_ISTIO_CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

fn default_istio_priority() -> i32 {
    DEFAULT_ISTIO_PRIORITY
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyManagerDecl {
    pub name: Located,
    /// Free text for people (the console shows it); not used by the gateway.
    #[serde(default)]
    pub description: Option<String>,
    pub well_known_url: Located,
    /// Environments that trust this key manager; empty: all.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Accepted `aud` values; empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claim-mapping preset; omitted: `generic`.
    #[serde(default)]
    pub provider: Option<Located>,
    /// Per-field overrides of the preset.
    #[serde(default)]
    pub claims: ClaimsDecl,
    /// Allowed tenants for a `{tenantid}` issuer.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Accepted signing algorithms; empty: every asymmetric algorithm keygate supports.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// The discovery document inline, used instead of fetching `well_known_url`.
    #[serde(default)]
    pub discovery: Option<DiscoveryDocument>,
    /// Accept plain http for this key manager's non-loopback URLs.
    #[serde(default)]
    pub allow_http: bool,
    /// `required`: every token of this key manager must be DPoP-bound (RFC 9449).
    #[serde(default)]
    pub dpop: DpopMode,
    /// Check opaque (non-JWT) tokens at the discovery document's `introspection_endpoint`.
    #[serde(default)]
    pub introspection: Option<IntrospectionDecl>,
}

/// The gateway's client at the key manager for RFC 7662 introspection. The secret is not here:
/// `client_secret_env` names the variable of Envoy's environment that holds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionDecl {
    pub client_id: Located,
    pub client_secret_env: Located,
    /// The introspection endpoint, for a key manager that publishes it in neither its OpenID
    /// discovery document nor its RFC 8414 metadata.
    #[serde(default)]
    pub endpoint: Option<Located>,
}

/// Claim names: a single name or a list tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClaimNames {
    One(String),
    Many(Vec<String>),
}

impl ClaimNames {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            ClaimNames::One(name) => vec![name],
            ClaimNames::Many(names) => names,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsDecl {
    #[serde(default)]
    pub client_id: Option<ClaimNames>,
    #[serde(default)]
    pub scopes: Option<ClaimNames>,
    #[serde(default)]
    pub groups: Option<ClaimNames>,
    /// Where the subject is (default `sub`; e.g. `username` in introspection answers).
    #[serde(default)]
    pub subject: Option<ClaimNames>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDecl {
    pub name: Located,
    #[serde(default)]
    pub version: String,
    pub base_path: Located,
    /// Where allowed requests go (`http(s)://host[:port][/path]`); omitted: Envoy answers 502.
    /// With a path, the base path is replaced by it on the way (`/pets/v1/pets/7` to
    /// `http://h/v2` goes as `/v2/pets/7`); without one the path goes unchanged.
    #[serde(default)]
    pub upstream: Option<Located>,
    #[serde(default)]
    pub resources: Vec<ResourceDecl>,
    /// The key managers whose tokens this API accepts (JWTs and opaque tokens); omitted: all.
    #[serde(default)]
    pub key_managers: Vec<Located>,
    /// This API's own origins, instead of `gateway.public_urls`.
    #[serde(default)]
    pub public_urls: Vec<Located>,
    /// `required`: every token for this API must be DPoP-bound (RFC 9449).
    #[serde(default)]
    pub dpop: DpopMode,
    /// The credentials the API accepts: `oauth2` (default), `api_key`, or both.
    #[serde(default)]
    pub security: Vec<Security>,
    /// Where an API key is read: `header` (default `apikey`), `query` (off unless named).
    #[serde(default)]
    pub api_key: ApiKeyLocation,
    /// `required`: every token must be bound to the client certificate (RFC 8705); default
    /// `when_bound`.
    #[serde(default)]
    pub mtls_bound_tokens: CertBinding,
    /// Forward a JWT signed by the gateway (docs/backend-jwt.md).
    #[serde(default)]
    pub backend_jwt: Option<BackendJwtConfig>,
}

impl ApiDecl {
    /// The path written after the upstream's `host[:port]` (`/v2`, or `/` to drop the base
    /// path), or `None` when the URL ends at the authority: the request path then goes unchanged.
    pub fn upstream_path(&self) -> Option<&str> {
        let raw = self.upstream.as_ref()?.value.as_str();
        let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
        rest.find('/').and_then(|at| rest.get(at..))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDecl {
    pub method: Located,
    pub path: Located,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Every one of these scopes is needed (beside one of `scopes`).
    #[serde(default)]
    pub scopes_all: Vec<String>,
    /// Claim conditions: claim name (or dotted path) → accepted values (one value or a list).
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimNames>,
    #[serde(default)]
    pub public: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDecl {
    pub name: Located,
    /// Who owns the application in the console's developer portal (the owner's `sub`); not used
    /// by the gateway.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub state: ApplicationState,
    #[serde(default)]
    pub client_ids: Vec<ClientIdDecl>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionDecl>,
    /// The application's API keys, by hash (`keygate api-key new` prints an entry).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyDecl>,
}

/// An API key: its name, the SHA-256 of the key, an optional expiry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyDecl {
    pub name: Located,
    pub sha256: Located,
    /// RFC 3339 date-time or Unix seconds; omitted: never expires.
    #[serde(default)]
    pub expires: Option<Expiry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdDecl {
    pub key_manager: Located,
    pub client_id: Located,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDecl {
    pub api: Located,
    #[serde(default)]
    pub state: SubscriptionState,
    /// A tier's name; omitted: unlimited.
    #[serde(default)]
    pub tier: Option<Located>,
}

/// The line of a located value (1-based; 0 when unknown).
pub fn line_of<T>(value: &Spanned<T>) -> u64 {
    value.referenced.line()
}
