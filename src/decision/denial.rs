//! Denials and the one place that maps them to the wire: status, RFC 6750 `WWW-Authenticate`,
//! a small JSON body `{"error", "error_description", "code"}`. No token ever reaches a reply.

use crate::dpop::{DpopError, DpopErrorKind};
use crate::policy::path::PathProblem;
use crate::policy::routes::MethodProblem;
use crate::policy::tier::Tier;

/// What is wrong with an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationProblem {
    /// The header is present but blank.
    Empty,
    /// `Bearer` with nothing after it.
    NoToken,
    /// The credentials are not one token68 (spaces, commas from joined headers, other bytes).
    NotToken68,
}

impl AuthorizationProblem {
    fn describe(&self) -> &'static str {
        match self {
            AuthorizationProblem::Empty => "the Authorization header is empty",
            AuthorizationProblem::NoToken => "the Bearer scheme carries no token",
            AuthorizationProblem::NotToken68 => {
                "the bearer token has characters outside the token68 syntax"
            }
        }
    }
}

/// Why a request is not forwarded. Each variant has a stable `code()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization` header (RFC 6750 §3.1: no error attribute).
    MissingToken,
    /// An `Authorization` header with another scheme (`Basic`, ...): no bearer credentials, so it is
    /// answered like a missing token, with its own code.
    UnsupportedScheme,
    MalformedAuthorization {
        problem: AuthorizationProblem,
    },
    /// The token failed a check; `code` names the check (`token_expired`, `issuer_unknown`, ...).
    InvalidToken {
        code: &'static str,
        description: String,
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
}

impl Denial {
    /// Stable snake_case reason, used in the reply body, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::UnsupportedScheme => "unsupported_scheme",
            Denial::MalformedAuthorization { .. } => "malformed_authorization",
            Denial::InvalidToken { code, .. } => code,
            Denial::KeyManagerUnavailable { .. } => "key_manager_unavailable",
            Denial::IntrospectionUnavailable { .. } => "introspection_unavailable",
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
            Denial::RateLimited { .. } => "rate_limited",
            Denial::Dpop { error, .. } => error.code(),
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
            | Denial::InsufficientGroup { .. } => 403,
            Denial::NoApi | Denial::ResourceNotFound => 404,
            Denial::MethodNotAllowed { .. } => 405,
            Denial::RateLimited { .. } => 429,
            Denial::KeyManagerUnavailable { .. } | Denial::IntrospectionUnavailable { .. } => 503,
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
    fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Denial::MissingToken | Denial::UnsupportedScheme => None,
            Denial::MalformedAuthorization { .. }
            | Denial::PathNotCanonical { .. }
            | Denial::MethodNotCanonical { .. } => Some("invalid_request"),
            Denial::InvalidToken { .. } => Some("invalid_token"),
            Denial::KeyManagerUnavailable { .. } | Denial::IntrospectionUnavailable { .. } => {
                Some("temporarily_unavailable")
            }
            Denial::NoApi | Denial::ResourceNotFound | Denial::MethodNotAllowed { .. } => None,
            Denial::ApplicationNotFound { .. }
            | Denial::ApplicationBlocked { .. }
            | Denial::NotSubscribed { .. }
            | Denial::SubscriptionBlocked { .. }
            | Denial::InsufficientScope { .. }
            | Denial::InsufficientGroup { .. } => Some("insufficient_scope"),
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
    fn body_error(&self) -> &'static str {
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
            Denial::InvalidToken { description, .. } => description.clone(),
            Denial::KeyManagerUnavailable { .. } => {
                "the key manager's signing keys are unavailable; retry later".to_string()
            }
            Denial::IntrospectionUnavailable { .. } => {
                "the key manager's introspection endpoint is unavailable; retry later".to_string()
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
            Denial::RateLimited { tier, retry_after } => format!(
                "the subscription's tier \"{}\" allows {} requests per {}; retry in {retry_after} s",
                tier.name, tier.requests, tier.per
            ),
            Denial::Dpop { error, .. } => error.to_string(),
        }
    }
}

/// The authorization scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    /// `DPoP` (RFC 9449 §7.1): the token is DPoP-bound and a `DPoP` proof header comes with it.
    Dpop,
}

/// The scheme and token of an `Authorization` header value: [`bearer_token`]'s rules, with
/// `DPoP` accepted beside `Bearer` (both case-insensitive).
pub fn credentials(authorization: Option<&str>) -> Result<(Scheme, &str), Denial> {
    let dpop = authorization.is_some_and(|value| {
        let value = value.trim_matches([' ', '\t']);
        let scheme = value.split_once(' ').map_or(value, |(scheme, _)| scheme);
        scheme.eq_ignore_ascii_case("dpop")
    });
    if dpop {
        Ok((Scheme::Dpop, token_of(authorization, "dpop")?))
    } else {
        Ok((Scheme::Bearer, token_of(authorization, "bearer")?))
    }
}

/// The bearer token of an `Authorization` header value.
///
/// Missing → [`Denial::MissingToken`]; another scheme (`Basic ...`) → [`Denial::UnsupportedScheme`]
/// (RFC 6750 §3.1: the request has no bearer credentials, 401 without an error code); blank, `Bearer`
/// alone, or credentials that are not one token68 → 400 [`Denial::MalformedAuthorization`].
/// The scheme is case-insensitive; one or more spaces may separate it from the token.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, Denial> {
    token_of(authorization, "bearer")
}

/// The token68 after scheme `scheme` (lower case) in an `Authorization` header value.
fn token_of<'a>(authorization: Option<&'a str>, scheme: &str) -> Result<&'a str, Denial> {
    let value = authorization
        .ok_or(Denial::MissingToken)?
        .trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::Empty,
        });
    }
    let (name, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !name.eq_ignore_ascii_case(scheme) {
        return Err(Denial::UnsupportedScheme);
    }
    let token = credentials.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NoToken,
        });
    }
    if !is_token68(token) {
        return Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NotToken68,
        });
    }
    Ok(token)
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A local reply for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Map a denial to status, headers and body.
pub fn reply(denial: &Denial, realm: &str) -> Reply {
    let status = denial.status();
    let description = denial.description();
    let mut headers = Vec::new();
    // A refused path or method is about the request, not its token: no challenge.
    let request_shape = matches!(
        denial,
        Denial::PathNotCanonical { .. } | Denial::MethodNotCanonical { .. }
    );
    if matches!(status, 400 | 401 | 403) && !request_shape {
        headers.push((
            "www-authenticate".to_string(),
            www_authenticate(denial, realm, &description),
        ));
    }
    match denial {
        Denial::MethodNotAllowed { allow } => {
            headers.push(("allow".to_string(), allow.join(", ")));
        }
        Denial::KeyManagerUnavailable { retry_after }
        | Denial::IntrospectionUnavailable { retry_after } => {
            headers.push(("retry-after".to_string(), retry_after.to_string()));
        }
        Denial::RateLimited { tier, retry_after } => {
            headers.push(("retry-after".to_string(), retry_after.to_string()));
            headers.push(("ratelimit-policy".to_string(), tier.policy_header()));
            headers.push(("ratelimit".to_string(), tier.limit_header(0, *retry_after)));
        }
        Denial::Dpop { error, .. } => {
            if let Some(retry_after) = error.retry_after() {
                headers.push(("retry-after".to_string(), retry_after.to_string()));
            }
        }
        _ => {}
    }
    headers.push(("content-type".to_string(), "application/json".to_string()));
    headers.push(("cache-control".to_string(), "no-store".to_string()));
    let body = serde_json::json!({
        "error": denial.body_error(),
        "error_description": description,
        "code": denial.code(),
    })
    .to_string();
    Reply {
        status,
        headers,
        body,
    }
}

/// `Bearer realm="…"[, error="…", error_description="…"][, scope="…"]`.
fn www_authenticate(denial: &Denial, realm: &str, description: &str) -> String {
    let scheme = match denial {
        Denial::Dpop { .. } => "DPoP",
        _ => "Bearer",
    };
    let mut value = format!("{scheme} realm=\"{}\"", quoted(realm));
    if let Some(error) = denial.oauth_error() {
        value.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            description_chars(description)
        ));
    }
    if let Denial::InsufficientScope { required } = denial {
        let scopes: Vec<String> = required.iter().map(|s| scope_chars(s)).collect();
        value.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    if let Denial::Dpop { algs, .. } = denial {
        value.push_str(&format!(", algs=\"{}\"", quoted(algs)));
    }
    value
}

/// Quoted-string content: `"` and `\` escaped, anything not visible ASCII or space replaced.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// RFC 6750 `error_description` allows %x20-21 / %x23-5B / %x5D-7E: no `"`, no `\`.
fn description_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
fn scope_chars(scope: &str) -> String {
    scope
        .chars()
        .map(|c| match c {
            '"' | '\\' | ' ' => '?',
            '!'..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn gold() -> Tier {
        Tier {
            name: "gold".into(),
            requests: 20,
            per: crate::policy::tier::Per::Minute,
        }
    }

    #[test]
    fn rate_limited_reply_tells_when_to_come_back() {
        let r = reply(
            &Denial::RateLimited {
                tier: gold(),
                retry_after: 12,
            },
            "keygate",
        );
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("12"));
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"gold\";q=20;w=60"));
        assert_eq!(header(&r, "ratelimit"), Some("\"gold\";r=0;t=12"));
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["code"], "rate_limited");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains("20 requests per minute"),
            "{description}"
        );
    }

    #[test]
    fn credentials_tell_bearer_from_dpop() {
        assert_eq!(
            credentials(Some("Bearer a.b.c")),
            Ok((Scheme::Bearer, "a.b.c"))
        );
        assert_eq!(credentials(Some("DPoP a.b.c")), Ok((Scheme::Dpop, "a.b.c")));
        assert_eq!(
            credentials(Some(" dpop   a.b.c ")),
            Ok((Scheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            credentials(Some("DPoP")),
            Err(Denial::MalformedAuthorization {
                problem: AuthorizationProblem::NoToken
            })
        );
        assert_eq!(
            credentials(Some("DPoP a, Bearer b")),
            Err(Denial::MalformedAuthorization {
                problem: AuthorizationProblem::NotToken68
            })
        );
        assert_eq!(credentials(Some("DPoPx a")), Err(Denial::UnsupportedScheme));
        assert_eq!(credentials(None), Err(Denial::MissingToken));
        // bearer_token itself still takes only Bearer.
        assert_eq!(bearer_token(Some("DPoP a")), Err(Denial::UnsupportedScheme));
    }

    #[test]
    fn dpop_refusals_are_dpop_challenges_with_algs() {
        let algs = "ES256 EdDSA".to_string();
        let proof = reply(
            &Denial::Dpop {
                error: DpopError::HtuMismatch,
                algs: algs.clone(),
            },
            "keygate",
        );
        assert_eq!(proof.status, 401);
        assert_eq!(
            header(&proof, "www-authenticate"),
            Some("DPoP realm=\"keygate\", error=\"invalid_dpop_proof\", error_description=\"DPoP proof htu is not the request URI\", algs=\"ES256 EdDSA\"")
        );
        let body: Value = serde_json::from_str(&proof.body).unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(body["code"], "dpop_htu_mismatch");
        let token = reply(
            &Denial::Dpop {
                error: DpopError::KeyMismatch,
                algs: algs.clone(),
            },
            "keygate",
        );
        assert_eq!(token.status, 401);
        assert!(header(&token, "www-authenticate")
            .is_some_and(|v| v.starts_with("DPoP realm=\"keygate\", error=\"invalid_token\"")));
        let full = reply(
            &Denial::Dpop {
                error: DpopError::ReplayStoreFull { retry_after: 42 },
                algs,
            },
            "keygate",
        );
        assert_eq!(full.status, 503);
        assert_eq!(header(&full, "retry-after"), Some("42"));
        assert_eq!(header(&full, "www-authenticate"), None);
    }

    #[test]
    fn bearer_token_table() {
        let ok = [
            ("Bearer abc.def.ghi", "abc.def.ghi"),
            ("bearer abc", "abc"),
            ("BEARER   abc", "abc"),
            ("Bearer a-b_c~d+e/f==", "a-b_c~d+e/f=="),
            (" Bearer abc ", "abc"),
        ];
        for (header, token) in ok {
            assert_eq!(bearer_token(Some(header)), Ok(token), "{header:?}");
        }
        assert_eq!(bearer_token(None), Err(Denial::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic dXNlcjpwYXNz")),
            Err(Denial::UnsupportedScheme)
        );
        assert_eq!(
            bearer_token(Some("Bearerabc")),
            Err(Denial::UnsupportedScheme)
        );
        let malformed = [
            ("", AuthorizationProblem::Empty),
            ("   ", AuthorizationProblem::Empty),
            ("Bearer", AuthorizationProblem::NoToken),
            ("Bearer    ", AuthorizationProblem::NoToken),
            ("Bearer a b", AuthorizationProblem::NotToken68),
            ("Bearer a,Bearer b", AuthorizationProblem::NotToken68),
            ("Bearer a\"b", AuthorizationProblem::NotToken68),
            ("Bearer ===", AuthorizationProblem::NotToken68),
            ("Bearer a=b", AuthorizationProblem::NotToken68),
            ("Bearer \tabc", AuthorizationProblem::NotToken68),
        ];
        for (header, problem) in malformed {
            assert_eq!(
                bearer_token(Some(header)),
                Err(Denial::MalformedAuthorization { problem }),
                "{header:?}"
            );
        }
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        for denial in [Denial::MissingToken, Denial::UnsupportedScheme] {
            let r = reply(&denial, "keygate");
            assert_eq!(r.status, 401);
            assert_eq!(
                header(&r, "www-authenticate"),
                Some("Bearer realm=\"keygate\"")
            );
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"], "unauthorized");
            assert_eq!(body["code"], denial.code());
        }
    }

    #[test]
    fn invalid_token_reply() {
        let d = Denial::InvalidToken {
            code: "token_expired",
            description: "the token \"expired\"\r\nx: y \\".to_string(),
        };
        let r = reply(&d, "api");
        assert_eq!(r.status, 401);
        let www = header(&r, "www-authenticate").unwrap();
        assert_eq!(
            www,
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token 'expired'??x: y /\""
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["code"], "token_expired");
        assert_eq!(header(&r, "content-type"), Some("application/json"));
    }

    #[test]
    fn scope_reply_lists_required_scopes() {
        let d = Denial::InsufficientScope {
            required: vec!["pets:read".into(), "pets:admin".into()],
        };
        let r = reply(&d, "keygate");
        assert_eq!(r.status, 403);
        let www = header(&r, "www-authenticate").unwrap();
        assert!(www.starts_with("Bearer realm=\"keygate\", error=\"insufficient_scope\""));
        assert!(www.ends_with(", scope=\"pets:read pets:admin\""), "{www}");
    }

    #[test]
    fn realm_is_escaped() {
        let r = reply(&Denial::MissingToken, "a\"b\\c\nd");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"a\\\"b\\\\c?d\"")
        );
    }

    #[test]
    fn status_code_and_headers_of_every_denial() {
        use AuthorizationProblem::*;
        let s = |x: &str| x.to_string();
        let table: Vec<(Denial, u32, &str, Option<&str>)> = vec![
            (Denial::MissingToken, 401, "missing_token", None),
            (Denial::UnsupportedScheme, 401, "unsupported_scheme", None),
            (
                Denial::MalformedAuthorization { problem: NoToken },
                400,
                "malformed_authorization",
                Some("invalid_request"),
            ),
            (
                Denial::InvalidToken {
                    code: "issuer_unknown",
                    description: s("x"),
                },
                401,
                "issuer_unknown",
                Some("invalid_token"),
            ),
            (
                Denial::KeyManagerUnavailable { retry_after: 7 },
                503,
                "key_manager_unavailable",
                None,
            ),
            (
                Denial::IntrospectionUnavailable { retry_after: 3 },
                503,
                "introspection_unavailable",
                None,
            ),
            (Denial::NoApi, 404, "no_api", None),
            (Denial::ResourceNotFound, 404, "resource_not_found", None),
            (
                Denial::MethodNotAllowed {
                    allow: vec![s("GET"), s("POST")],
                },
                405,
                "method_not_allowed",
                None,
            ),
            (
                Denial::PathNotCanonical {
                    problem: PathProblem::DotSegment,
                },
                400,
                "path_not_canonical",
                None,
            ),
            (
                Denial::MethodNotCanonical {
                    problem: MethodProblem::NotUpperCase,
                },
                400,
                "method_not_canonical",
                None,
            ),
            (
                Denial::ApplicationNotFound {
                    key_manager: s("km"),
                    client_id: s("c"),
                },
                403,
                "application_not_found",
                Some("insufficient_scope"),
            ),
            (
                Denial::ApplicationBlocked {
                    application: s("a"),
                },
                403,
                "application_blocked",
                Some("insufficient_scope"),
            ),
            (
                Denial::NotSubscribed {
                    application: s("a"),
                    api: s("p"),
                },
                403,
                "not_subscribed",
                Some("insufficient_scope"),
            ),
            (
                Denial::SubscriptionBlocked {
                    application: s("a"),
                    api: s("p"),
                },
                403,
                "subscription_blocked",
                Some("insufficient_scope"),
            ),
            (
                Denial::InsufficientScope {
                    required: vec![s("a")],
                },
                403,
                "insufficient_scope",
                Some("insufficient_scope"),
            ),
            (
                Denial::InsufficientGroup {
                    required: vec![s("g")],
                },
                403,
                "insufficient_group",
                Some("insufficient_scope"),
            ),
            (
                Denial::RateLimited {
                    tier: gold(),
                    retry_after: 12,
                },
                429,
                "rate_limited",
                None,
            ),
        ];
        for (denial, status, code, error) in table {
            let r = reply(&denial, "keygate");
            assert_eq!(r.status, status, "{denial:?}");
            assert_eq!(denial.code(), code);
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["code"], code);
            assert!(body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()));
            let www = header(&r, "www-authenticate");
            match error {
                Some(e) => {
                    assert!(
                        www.unwrap().contains(&format!("error=\"{e}\"")),
                        "{denial:?}"
                    );
                    assert_eq!(body["error"], e);
                }
                None => assert!(!www.is_some_and(|w| w.contains("error=")), "{denial:?}"),
            }
            // WWW-Authenticate exactly on token-related 400/401/403.
            let expect_www = matches!(status, 401 | 403)
                || matches!(denial, Denial::MalformedAuthorization { .. });
            assert_eq!(www.is_some(), expect_www, "{denial:?}");
            assert_eq!(header(&r, "content-type"), Some("application/json"));
            assert_eq!(header(&r, "allow").is_some(), status == 405);
            assert_eq!(
                header(&r, "retry-after").is_some(),
                matches!(status, 429 | 503)
            );
        }
        let r = reply(
            &Denial::MethodNotAllowed {
                allow: vec![s("GET"), s("POST")],
            },
            "k",
        );
        assert_eq!(header(&r, "allow"), Some("GET, POST"));
        let r = reply(&Denial::KeyManagerUnavailable { retry_after: 7 }, "k");
        assert_eq!(header(&r, "retry-after"), Some("7"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        let r = reply(&Denial::IntrospectionUnavailable { retry_after: 3 }, "k");
        assert_eq!(header(&r, "retry-after"), Some("3"));
        assert!(header(&r, "www-authenticate").is_none());
    }
}
