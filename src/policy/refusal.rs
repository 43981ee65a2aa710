//! What the policy refuses, in its own terms. The decision wraps these into its `Denial`
//! (`crate::decision`), which alone knows codes, statuses and wire text.

use crate::policy::path::PathProblem;
use crate::policy::routes::MethodProblem;

pub use crate::policy::mapping::ClientIdError;

/// Step 1: why a request matches no resource it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRefusal {
    /// No API is served at this path (and `settings.unknown_api` is `deny`).
    NoApi,
    /// The API has no resource at this path.
    ResourceNotFound,
    /// The resource exists for other methods only.
    MethodNotAllowed { allow: Vec<String> },
    /// The path is not in canonical form (`..`, `%2F`, `//`, ...).
    PathNotCanonical { problem: PathProblem },
    /// The method is not an upper-case HTTP token.
    MethodNotCanonical { problem: MethodProblem },
}

/// Step 3: why a token's `iss` names no key manager trusted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerRefusal {
    /// The token has no `iss`.
    Missing,
    /// The issuer's key manager is not enabled in this gateway's environment.
    NotEnabled,
    /// A multi-tenant issuer whose tenant is not allowed.
    TenantNotAllowed,
    /// No key manager has this issuer (or the key manager is not this policy's).
    Unknown,
}

/// Steps 6-7: why verified claims do not grant access to the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessRefusal {
    /// The key manager is not this policy's.
    Issuer(IssuerRefusal),
    /// The token cannot be tied to one client id.
    ClientId(ClientIdError),
    /// The route is not this policy's.
    ResourceNotFound,
    ApplicationNotFound {
        key_manager: String,
        client_id: String,
    },
    /// The application directory cannot be consulted (never loaded, or older than its stale
    /// bound).
    DirectoryUnavailable {
        retry_after: u64,
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
    /// Scopes of the resource's `scopes_all` the token lacks (`required` is the whole list).
    MissingScopes {
        required: Vec<String>,
        missing: Vec<String>,
    },
    /// A claim condition that does not hold: the claim and the values it may have.
    ClaimNotSatisfied {
        claim: String,
        accepted: Vec<String>,
    },
}
