//! Why a request is not forwarded: [`Denial`], one variant per refusal, each with a stable
//! snake_case `code()`, its status and its sentence for the client developer. The wire form (headers
//! and body) is made in one place, [`super::reply`].

use crate::dpop::{DpopError, DpopErrorKind};
use crate::jose::TokenError;
use crate::policy::path::PathProblem;
use crate::policy::routes::MethodProblem;
use crate::policy::tier::Tier;
use crate::policy::{AccessRefusal, ClientIdError, IssuerRefusal, RouteRefusal};

use super::api_key::ApiKeyDenial;
use super::cert_binding::CertError;
use super::credentials::AuthorizationProblem;

/// Why a request is not forwarded. Each variant has a stable `code()`.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    /// No `Authorization` header (RFC 6750 §3.1: no error attribute).
    MissingToken,
    /// An `Authorization` header with another scheme (`Basic`, ...): no bearer credentials, so it is
    /// answered like a missing token, with its own code.
    UnsupportedScheme,
    MalformedAuthorization {
        problem: AuthorizationProblem,
    },
    /// The token is unusable here; the refusal names the check (`token_expired`,
    /// `issuer_unknown`, ...). Challenged with the scheme the token came with.
    InvalidToken {
        refusal: TokenRefusal,
        challenge: Challenge,
    },
    /// No usable key for the key manager and it cannot be reached (fail closed).
    KeyManagerUnavailable {
        retry_after: u64,
    },
    /// An opaque token could not be checked: the introspection endpoint failed or did not answer
    /// in time, and no cached answer holds (fail closed).
    IntrospectionUnavailable {
        retry_after: u64,
    },
    /// The application directory was never loaded, or is older than its stale bound.
    DirectoryUnavailable {
        retry_after: u64,
    },
    NoApi,
    ResourceNotFound,
    MethodNotAllowed {
        allow: Vec<String>,
    },
    PathNotCanonical {
        problem: PathProblem,
    },
    /// The request method is not an upper-case HTTP token (`get`, `Get`, ...).
    MethodNotCanonical {
        problem: MethodProblem,
    },
    ApplicationNotFound {
        key_manager: String,
        client_id: String,
    },
    ApplicationBlocked {
        application: String,
    },
    NotSubscribed {
        application: String,
        api: String,
    },
    SubscriptionBlocked {
        application: String,
        api: String,
    },
    InsufficientScope {
        required: Vec<String>,
    },
    InsufficientGroup {
        required: Vec<String>,
    },
    /// The token lacks scopes of the resource's `scopes_all` (`required`: all of them).
    MissingScopes {
        required: Vec<String>,
        missing: Vec<String>,
    },
    /// A claim condition of the resource does not hold.
    InsufficientClaim {
        claim: String,
        accepted: Vec<String>,
    },
    /// An API key refused, missing or not enough (`super::api_key`).
    ApiKey(ApiKeyDenial),
    /// The subscription's tier has no request left in this window (decision step 8).
    RateLimited {
        tier: Tier,
        /// Seconds until a request is admitted again.
        retry_after: u64,
    },
    /// A DPoP refusal (RFC 9449 §7.1): challenged with the `DPoP` scheme and the proof
    /// algorithms the gateway accepts (`algs`, space-separated).
    Dpop {
        error: DpopError,
        algs: String,
    },
    /// The API forwards a gateway-signed JWT and none could be signed (fail closed).
    BackendJwtUnavailable,
}

impl Denial {
    /// Stable snake_case reason, used in the reply body, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::UnsupportedScheme => "unsupported_scheme",
            Denial::MalformedAuthorization { .. } => "malformed_authorization",
            Denial::InvalidToken { refusal, .. } => refusal.code(),
            Denial::KeyManagerUnavailable { .. } => "key_manager_unavailable",
            Denial::IntrospectionUnavailable { .. } => "introspection_unavailable",
            Denial::DirectoryUnavailable { .. } => "directory_unavailable",
            Denial::NoApi => "no_api",
            Denial::ResourceNotFound => "resource_not_found",
            Denial::MethodNotAllowed { .. } => "method_not_allowed",
            Denial::PathNotCanonical { .. } => "path_not_canonical",
            Denial::MethodNotCanonical { .. } => "method_not_canonical",
            Denial::ApplicationNotFound { .. } => "application_not_found",
            Denial::ApplicationBlocked { .. } => "application_blocked",
            Denial::NotSubscribed { .. } => "not_subscribed",
            Denial::SubscriptionBlocked { .. } => "subscription_blocked",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::InsufficientGroup { .. } => "insufficient_group",
            Denial::MissingScopes { .. } => "insufficient_scope",
            Denial::InsufficientClaim { .. } => "insufficient_claim",
            Denial::ApiKey(denial) => denial.code(),
            Denial::RateLimited { .. } => "rate_limited",
            Denial::Dpop { error, .. } => error.code(),
            Denial::BackendJwtUnavailable => "backend_jwt_unavailable",
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            Denial::MalformedAuthorization { .. }
            | Denial::PathNotCanonical { .. }
            | Denial::MethodNotCanonical { .. } => 400,
            Denial::MissingToken | Denial::UnsupportedScheme | Denial::InvalidToken { .. } => 401,
            Denial::ApplicationNotFound { .. }
            | Denial::ApplicationBlocked { .. }
            | Denial::NotSubscribed { .. }
            | Denial::SubscriptionBlocked { .. }
            | Denial::InsufficientScope { .. }
            | Denial::InsufficientGroup { .. }
            | Denial::MissingScopes { .. }
            | Denial::InsufficientClaim { .. } => 403,
            Denial::ApiKey(denial) => denial.status(),
            Denial::NoApi | Denial::ResourceNotFound => 404,
            Denial::MethodNotAllowed { .. } => 405,
            Denial::RateLimited { .. } => 429,
            Denial::KeyManagerUnavailable { .. }
            | Denial::IntrospectionUnavailable { .. }
            | Denial::DirectoryUnavailable { .. }
            | Denial::BackendJwtUnavailable => 503,
            Denial::Dpop { error, .. } => match error.kind() {
                DpopErrorKind::InvalidProof | DpopErrorKind::InvalidToken => 401,
                DpopErrorKind::Unavailable => 503,
            },
        }
    }

    /// The RFC 6750 / OAuth 2.0 error code, where the reply carries one.
    ///
    /// Every 403 says `insufficient_scope` ("the request requires higher privileges than provided by
    /// the access token"); the `code` in the body tells which privilege is missing.
    pub(super) fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Denial::MissingToken | Denial::UnsupportedScheme => None,
            Denial::MalformedAuthorization { .. }
            | Denial::PathNotCanonical { .. }
            | Denial::MethodNotCanonical { .. } => Some("invalid_request"),
            Denial::InvalidToken { .. } => Some("invalid_token"),
            Denial::KeyManagerUnavailable { .. }
            | Denial::IntrospectionUnavailable { .. }
            | Denial::DirectoryUnavailable { .. }
            | Denial::BackendJwtUnavailable => Some("temporarily_unavailable"),
            Denial::NoApi | Denial::ResourceNotFound | Denial::MethodNotAllowed { .. } => None,
            Denial::ApplicationNotFound { .. }
            | Denial::ApplicationBlocked { .. }
            | Denial::NotSubscribed { .. }
            | Denial::SubscriptionBlocked { .. }
            | Denial::InsufficientScope { .. }
            | Denial::InsufficientGroup { .. }
            | Denial::MissingScopes { .. }
            | Denial::InsufficientClaim { .. } => Some("insufficient_scope"),
            Denial::ApiKey(denial) => Some(denial.error()),
            // Not an OAuth error: the token is fine, the budget is spent.
            Denial::RateLimited { .. } => None,
            Denial::Dpop { error, .. } => Some(match error.kind() {
                DpopErrorKind::InvalidProof => "invalid_dpop_proof",
                DpopErrorKind::InvalidToken => "invalid_token",
                DpopErrorKind::Unavailable => "temporarily_unavailable",
            }),
        }
    }

    /// The body's `error`: the OAuth error, else a name for the status.
    pub(super) fn body_error(&self) -> &'static str {
        match (self.oauth_error(), self.status()) {
            (Some(error), _) => error,
            (None, 401) => "unauthorized",
            (None, 405) => "method_not_allowed",
            (None, 429) => "rate_limited",
            (None, _) => "not_found",
        }
    }

    /// A sentence for the client developer. Never contains the token.
    pub fn description(&self) -> String {
        match self {
            Denial::MissingToken => "a bearer access token is required".to_string(),
            Denial::UnsupportedScheme => {
                "the Authorization header must use the Bearer scheme".to_string()
            }
            Denial::MalformedAuthorization { problem } => problem.describe().to_string(),
            Denial::InvalidToken { refusal, .. } => refusal.description(),
            Denial::KeyManagerUnavailable { .. } => {
                "the key manager's signing keys are unavailable; retry later".to_string()
            }
            Denial::IntrospectionUnavailable { .. } => {
                "the key manager's introspection endpoint is unavailable; retry later".to_string()
            }
            Denial::DirectoryUnavailable { .. } => {
                "the application directory is unavailable; retry later".to_string()
            }
            Denial::NoApi => "no API is served at this path".to_string(),
            Denial::ResourceNotFound => "the API has no resource at this path".to_string(),
            Denial::MethodNotAllowed { .. } => {
                "the resource does not accept this method".to_string()
            }
            Denial::PathNotCanonical { problem } => problem.describe().to_string(),
            Denial::MethodNotCanonical { problem } => problem.describe().to_string(),
            Denial::ApplicationNotFound {
                key_manager,
                client_id,
            } => format!(
                "client id \"{client_id}\" of key manager \"{key_manager}\" belongs to no application"
            ),
            Denial::ApplicationBlocked { application } => {
                format!("application \"{application}\" is blocked")
            }
            Denial::NotSubscribed { application, api } => {
                format!("application \"{application}\" is not subscribed to API \"{api}\"")
            }
            Denial::SubscriptionBlocked { application, api } => format!(
                "the subscription of application \"{application}\" to API \"{api}\" is blocked"
            ),
            Denial::InsufficientScope { required } => {
                format!("the token needs one of the scopes: {}", required.join(" "))
            }
            Denial::InsufficientGroup { required } => {
                format!("the token needs one of the groups: {}", required.join(", "))
            }
            Denial::MissingScopes { required, missing } => format!(
                "the token needs all of the scopes {}; it lacks {}",
                required.join(" "),
                missing.join(" ")
            ),
            Denial::InsufficientClaim { claim, accepted } => format!(
                "the token's claim \"{claim}\" must be one of: {}",
                accepted.join(", ")
            ),
            Denial::ApiKey(denial) => denial.description(),
            Denial::RateLimited { tier, retry_after } => format!(
                "the subscription's tier \"{}\" allows {} requests per {}; retry in {retry_after} s",
                tier.name, tier.requests, tier.per
            ),
            Denial::Dpop { error, .. } => error.to_string(),
            Denial::BackendJwtUnavailable => {
                "the gateway could not sign the upstream's identity token; retry later".to_string()
            }
        }
    }
}

/// Why a token is unusable (401 `invalid_token`): the one place of each refusal's code and text.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenRefusal {
    /// Syntax, signature or claims (`crate::jose`).
    Token(TokenError),
    /// Its `iss` names no key manager trusted here.
    Issuer(IssuerRefusal),
    /// It cannot be tied to one client id.
    ClientId(ClientIdError),
    /// Introspection reports it as not active.
    Inactive,
    /// Introspection reports it bound to a key keygate cannot check.
    NotBearer,
    /// Its certificate binding (RFC 8705) does not hold for this request.
    Certificate(CertError),
}

impl TokenRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            TokenRefusal::Token(err) => err.code(),
            TokenRefusal::Issuer(IssuerRefusal::Missing) => "issuer_missing",
            TokenRefusal::Issuer(IssuerRefusal::NotEnabled) => "key_manager_not_enabled",
            TokenRefusal::Issuer(IssuerRefusal::TenantNotAllowed) => "tenant_not_allowed",
            TokenRefusal::Issuer(IssuerRefusal::Unknown) => "issuer_unknown",
            TokenRefusal::ClientId(ClientIdError::Missing) => "client_id_missing",
            TokenRefusal::ClientId(ClientIdError::Ambiguous { .. }) => "client_id_ambiguous",
            TokenRefusal::Inactive => "token_inactive",
            TokenRefusal::NotBearer => "token_not_bearer",
            TokenRefusal::Certificate(err) => err.code(),
        }
    }

    pub fn description(&self) -> String {
        match self {
            TokenRefusal::Token(err) => err.to_string(),
            TokenRefusal::Issuer(IssuerRefusal::Missing) => "the token has no iss claim".into(),
            TokenRefusal::Issuer(IssuerRefusal::NotEnabled) => {
                "the token's key manager is not trusted in this environment".into()
            }
            TokenRefusal::Issuer(IssuerRefusal::TenantNotAllowed) => {
                "the token's tenant is not allowed by this gateway".into()
            }
            TokenRefusal::Issuer(IssuerRefusal::Unknown) => {
                "the token's issuer is not a key manager of this gateway".into()
            }
            TokenRefusal::ClientId(ClientIdError::Missing) => {
                "the token has no client id claim this key manager is configured with".into()
            }
            TokenRefusal::ClientId(ClientIdError::Ambiguous { first, second }) => {
                format!("the token's client id claims {first} and {second} differ")
            }
            TokenRefusal::Inactive => {
                "the key manager reports the token as not active (expired, revoked or unknown)"
                    .into()
            }
            TokenRefusal::NotBearer => {
                "the key manager reports a token bound to a key keygate cannot check".into()
            }
            TokenRefusal::Certificate(err) => err.description().into(),
        }
    }
}

/// The `WWW-Authenticate` scheme a token refusal is challenged with: the one the token came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer,
    /// RFC 9449 §7.1, with the proof algorithms the gateway accepts (space-separated).
    Dpop {
        algs: String,
    },
}

impl From<TokenRefusal> for Denial {
    fn from(refusal: TokenRefusal) -> Denial {
        Denial::InvalidToken {
            refusal,
            challenge: Challenge::Bearer,
        }
    }
}

impl From<TokenError> for Denial {
    fn from(err: TokenError) -> Denial {
        TokenRefusal::Token(err).into()
    }
}

impl From<IssuerRefusal> for Denial {
    fn from(refusal: IssuerRefusal) -> Denial {
        TokenRefusal::Issuer(refusal).into()
    }
}

impl From<RouteRefusal> for Denial {
    fn from(refusal: RouteRefusal) -> Denial {
        match refusal {
            RouteRefusal::NoApi => Denial::NoApi,
            RouteRefusal::ResourceNotFound => Denial::ResourceNotFound,
            RouteRefusal::MethodNotAllowed { allow } => Denial::MethodNotAllowed { allow },
            RouteRefusal::PathNotCanonical { problem } => Denial::PathNotCanonical { problem },
            RouteRefusal::MethodNotCanonical { problem } => Denial::MethodNotCanonical { problem },
        }
    }
}

impl From<AccessRefusal> for Denial {
    fn from(refusal: AccessRefusal) -> Denial {
        match refusal {
            AccessRefusal::Issuer(issuer) => issuer.into(),
            AccessRefusal::ClientId(err) => TokenRefusal::ClientId(err).into(),
            AccessRefusal::ResourceNotFound => Denial::ResourceNotFound,
            AccessRefusal::DirectoryUnavailable { retry_after } => {
                Denial::DirectoryUnavailable { retry_after }
            }
            AccessRefusal::ApplicationNotFound {
                key_manager,
                client_id,
            } => Denial::ApplicationNotFound {
                key_manager,
                client_id,
            },
            AccessRefusal::ApplicationBlocked { application } => {
                Denial::ApplicationBlocked { application }
            }
            AccessRefusal::NotSubscribed { application, api } => {
                Denial::NotSubscribed { application, api }
            }
            AccessRefusal::SubscriptionBlocked { application, api } => {
                Denial::SubscriptionBlocked { application, api }
            }
            AccessRefusal::InsufficientScope { required } => Denial::InsufficientScope { required },
            AccessRefusal::InsufficientGroup { required } => Denial::InsufficientGroup { required },
            AccessRefusal::MissingScopes { required, missing } => {
                Denial::MissingScopes { required, missing }
            }
            AccessRefusal::ClaimNotSatisfied { claim, accepted } => {
                Denial::InsufficientClaim { claim, accepted }
            }
        }
    }
}
