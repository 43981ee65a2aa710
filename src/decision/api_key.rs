//! API keys in a request: which credential a request presents to an API (`apis[].security`), the
//! decision for a key, its refusals and their challenge.
//!
//! An API that accepts keys reads them from its header (`apis[].api_key.header`, default
//! `apikey`) and, only when named, from a query parameter. A key sent to an API that does not
//! accept keys is no credential there; so is a token sent to an API that accepts only keys. On an
//! API that accepts both, a request carrying an API key and an `Authorization` header is refused
//! (400 `ambiguous_credentials`), as is one carrying several keys. No key ever reaches a reply or a
//! log line.
//!
//! The challenge of a key refusal uses the scheme `ApiKey` (not registered with IANA: there is no
//! standard one) with the header the key goes in: `ApiKey realm="keygate", header="apikey"`.

use std::collections::HashMap;
use std::rc::Rc;

use super::denial::Denial;
use super::identity::Identity;
use super::{Allowed, Outcome, Request, Started};
use crate::policy::api_keys::{hash_key, KeyHash, KeyRefusal, KeySource};
use crate::policy::{Policy, RouteMatch};

/// Why a request's API key (or the lack of one) does not open a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyDenial {
    /// No credential the API accepts: `oauth2` says whether a token would do too.
    Missing { header: String, oauth2: bool },
    /// No application has this key (never issued, or revoked by removing its entry).
    Unknown { header: String },
    /// The key's `expires` has passed.
    Expired { header: String },
    /// The resource requires scopes, groups or claims: only an access token carries them.
    NeedsToken { scopes: Vec<String> },
    /// An API key together with `Authorization`, or several API keys.
    Ambiguous,
}

impl ApiKeyDenial {
    pub fn code(&self) -> &'static str {
        match self {
            ApiKeyDenial::Missing { oauth2: false, .. } => "missing_api_key",
            ApiKeyDenial::Missing { oauth2: true, .. } => "missing_credentials",
            ApiKeyDenial::Unknown { .. } => "api_key_unknown",
            ApiKeyDenial::Expired { .. } => "api_key_expired",
            ApiKeyDenial::NeedsToken { .. } => "api_key_not_sufficient",
            ApiKeyDenial::Ambiguous => "ambiguous_credentials",
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            ApiKeyDenial::Missing { .. }
            | ApiKeyDenial::Unknown { .. }
            | ApiKeyDenial::Expired { .. } => 401,
            ApiKeyDenial::NeedsToken { .. } => 403,
            ApiKeyDenial::Ambiguous => 400,
        }
    }

    /// The body's `error`.
    pub(super) fn error(&self) -> &'static str {
        match self {
            ApiKeyDenial::Missing { .. } => "unauthorized",
            ApiKeyDenial::Unknown { .. } | ApiKeyDenial::Expired { .. } => "invalid_key",
            ApiKeyDenial::NeedsToken { .. } => "insufficient_scope",
            ApiKeyDenial::Ambiguous => "invalid_request",
        }
    }

    pub fn description(&self) -> String {
        match self {
            ApiKeyDenial::Missing {
                header,
                oauth2: false,
            } => format!("an API key is required in the {header} header"),
            ApiKeyDenial::Missing {
                header,
                oauth2: true,
            } => format!("a bearer access token or an API key in the {header} header is required"),
            ApiKeyDenial::Unknown { .. } => "the API key is not known (or was revoked)".into(),
            ApiKeyDenial::Expired { .. } => "the API key has expired".into(),
            ApiKeyDenial::NeedsToken { scopes } if scopes.is_empty() => {
                "the resource requires an access token: an API key carries no groups or claims"
                    .into()
            }
            ApiKeyDenial::NeedsToken { scopes } => format!(
                "the resource requires an access token with the scopes {}: an API key carries none",
                scopes.join(" ")
            ),
            ApiKeyDenial::Ambiguous => {
                "send one credential: an API key or an Authorization header, not both or several"
                    .into()
            }
        }
    }

    /// The `WWW-Authenticate` value (`quote`, `describe` and `scope` make text safe for it).
    pub(super) fn challenge(
        &self,
        realm: &str,
        description: &str,
        quote: fn(&str) -> String,
        describe: fn(&str) -> String,
        scope: fn(&str) -> String,
    ) -> String {
        let realm = quote(realm);
        let key = |header: &str| format!("ApiKey realm=\"{realm}\", header=\"{}\"", quote(header));
        let error = |error: &str| {
            format!(
                ", error=\"{error}\", error_description=\"{}\"",
                describe(description)
            )
        };
        match self {
            ApiKeyDenial::Missing {
                header,
                oauth2: false,
            } => key(header),
            ApiKeyDenial::Missing {
                header,
                oauth2: true,
            } => format!("Bearer realm=\"{realm}\", {}", key(header)),
            ApiKeyDenial::Unknown { header } | ApiKeyDenial::Expired { header } => {
                format!("{}{}", key(header), error("invalid_key"))
            }
            ApiKeyDenial::NeedsToken { scopes } => {
                let mut value = format!("Bearer realm=\"{realm}\"{}", error("insufficient_scope"));
                if !scopes.is_empty() {
                    let scopes: Vec<String> = scopes.iter().map(|s| scope(s)).collect();
                    value.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
                }
                value
            }
            ApiKeyDenial::Ambiguous => {
                format!("Bearer realm=\"{realm}\"{}", error("invalid_request"))
            }
        }
    }
}

impl From<ApiKeyDenial> for Denial {
    fn from(denial: ApiKeyDenial) -> Denial {
        Denial::ApiKey(denial)
    }
}

/// The credential a request presents to the API of `route`: `Ok(Some(key))` an API key,
/// `Ok(None)` whatever `Authorization` holds (the token path), or a refusal.
pub(super) fn select<'r>(
    policy: &Policy,
    route: &RouteMatch,
    request: &Request<'r>,
) -> Result<Option<&'r str>, Denial> {
    let Some(api) = policy.api(route.api) else {
        return Ok(None);
    };
    let Some(source) = &api.credentials.api_key else {
        return Ok(None);
    };
    let oauth2 = api.credentials.oauth2;
    let mut keys = presented_keys(source, request);
    let key = keys.next();
    if keys.next().is_some() {
        return Err(ApiKeyDenial::Ambiguous.into());
    }
    let has_authorization = oauth2 && request.authorization.is_some();
    match key {
        Some(_) if has_authorization => Err(ApiKeyDenial::Ambiguous.into()),
        Some(key) => Ok(Some(key)),
        None if has_authorization => Ok(None),
        None => Err(ApiKeyDenial::Missing {
            header: source.header.clone(),
            oauth2,
        }
        .into()),
    }
}

/// Every API key the request carries where the API reads keys: its header (every copy), then
/// its query parameter when one is configured.
fn presented_keys<'s, 'r: 's>(
    source: &'s KeySource,
    request: &Request<'r>,
) -> impl Iterator<Item = &'r str> + 's {
    let headers = request
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(&source.header))
        .map(|(_, value)| value.as_str());
    let query = request.path.split_once('?').map_or("", |(_, query)| query);
    let params = source.query.as_deref().into_iter().flat_map(move |name| {
        query
            .split('&')
            .filter_map(move |param| match param.split_once('=') {
                Some((n, value)) if n == name => Some(value),
                None if param == name => Some(""),
                _ => None,
            })
    });
    headers.chain(params)
}

/// The request headers (as named in `headers`) that carry an API key for API `api`: removed
/// before any request to that API goes upstream.
pub fn api_key_headers<'h>(
    policy: &Policy,
    api: crate::policy::ApiId,
    headers: &'h [(String, String)],
) -> Vec<&'h str> {
    let Some(source) = policy
        .api(api)
        .and_then(|api| api.credentials.api_key.as_ref())
    else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(&source.header))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// `path` without the API key query parameter, when API `api` reads keys from one and `path`
/// carries it; `None` when there is nothing to remove. Other parameters keep their order and bytes.
pub fn path_without_api_key(
    policy: &Policy,
    api: crate::policy::ApiId,
    path: &str,
) -> Option<String> {
    let name = policy
        .api(api)?
        .credentials
        .api_key
        .as_ref()?
        .query
        .as_deref()?;
    let (before, query) = path.split_once('?')?;
    let is_key = |param: &&str| param.split_once('=').map_or(*param, |(n, _)| n) == name;
    if !query.split('&').any(|param| is_key(&param)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|param| !is_key(param)).collect();
    if kept.is_empty() {
        Some(before.to_string())
    } else {
        Some(format!("{before}?{}", kept.join("&")))
    }
}

/// The identities (and their headers) granted to API keys on resources, built once per key and
/// resource: a grant never changes within a policy (the checks before it run every time).
#[derive(Debug, Default)]
pub struct KeyGrants {
    by: HashMap<(KeyHash, usize, usize), Rc<Allowed>>,
}

impl KeyGrants {
    /// Grants remembered at most (then the map starts over).
    const MAX: usize = 4_096;

    /// Forgets every grant (the directory changed: a key's name or tier may have).
    pub fn clear(&mut self) {
        self.by.clear();
    }
}

/// The decision for a request that presents an API key, at `now` (Unix seconds).
pub fn decide_api_key(policy: &Policy, started: &Started<'_>, now: f64) -> Outcome {
    let slots = crate::dpop::MemorySlots::default();
    decide_api_key_with(policy, started, now, &mut KeyGrants::default(), &slots)
}

/// [`decide_api_key`], reusing the identity of an earlier grant of `grants` (which the caller
/// forgets when the directory changes), with the directory (when configured) in `slots`.
pub fn decide_api_key_with(
    policy: &Policy,
    started: &Started<'_>,
    now: f64,
    grants: &mut KeyGrants,
    slots: &dyn crate::dpop::Slots,
) -> Outcome {
    let header = || {
        policy
            .api(started.route.api)
            .and_then(|api| api.credentials.api_key.as_ref())
            .map_or_else(String::new, |source| source.header.clone())
    };
    let hash = hash_key(started.token);
    let access = match policy.directory() {
        None => policy.authorize_key(&started.route, &hash, now),
        Some(_) => {
            let lookup = crate::directory::SharedLookup {
                policy,
                slots,
                now_ms: (now * 1000.0) as u64,
            };
            policy.authorize_key_with(&started.route, &hash, now, &lookup)
        }
    };
    match access {
        Ok(access) => {
            let at = (hash, started.route.api.index(), started.route.resource);
            if let Some(allowed) = grants.by.get(&at) {
                return Outcome::Allow {
                    allowed: Rc::clone(allowed),
                    proof: None,
                };
            }
            let identity = Identity::for_api_key(access);
            let headers = identity.headers(&policy.settings().header_prefix);
            let allowed = Rc::new(Allowed {
                identity,
                headers,
                backend: super::BackendJwt::new(&serde_json::Map::new()),
            });
            if grants.by.len() >= KeyGrants::MAX {
                grants.by.clear();
            }
            grants.by.insert(at, Rc::clone(&allowed));
            Outcome::Allow {
                allowed,
                proof: None,
            }
        }
        Err(KeyRefusal::Unknown) => {
            Outcome::Deny(ApiKeyDenial::Unknown { header: header() }.into())
        }
        Err(KeyRefusal::Expired) => {
            Outcome::Deny(ApiKeyDenial::Expired { header: header() }.into())
        }
        Err(KeyRefusal::NeedsToken { scopes }) => {
            Outcome::Deny(ApiKeyDenial::NeedsToken { scopes }.into())
        }
        Err(KeyRefusal::Access(refusal)) => Outcome::Deny(refusal.into()),
    }
}
