//! The one place that maps a [`Denial`] to the wire: status, RFC 6750 `WWW-Authenticate`, a small
//! JSON body `{"error", "error_description", "code"}` and `cache-control: no-store`. No token ever
//! reaches a reply.

use super::denial::{Challenge, Denial};

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
        | Denial::IntrospectionUnavailable { retry_after }
        | Denial::DirectoryUnavailable { retry_after } => {
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
    if let Denial::ApiKey(key) = denial {
        return key.challenge(realm, description, quoted, description_chars, scope_chars);
    }
    let scheme = match denial {
        Denial::Dpop { .. }
        | Denial::InvalidToken {
            challenge: Challenge::Dpop { .. },
            ..
        } => "DPoP",
        _ => "Bearer",
    };
    let mut value = format!("{scheme} realm=\"{}\"", quoted(realm));
    if let Some(error) = denial.oauth_error() {
        value.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            description_chars(description)
        ));
    }
    if let Denial::InsufficientScope { required } | Denial::MissingScopes { required, .. } = denial
    {
        let scopes: Vec<String> = required.iter().map(|s| scope_chars(s)).collect();
        value.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    if let Denial::Dpop { algs, .. }
    | Denial::InvalidToken {
        challenge: Challenge::Dpop { algs },
        ..
    } = denial
    {
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
    use crate::decision::denial::TokenRefusal;
    use crate::decision::AuthorizationProblem;
    use crate::dpop::DpopError;
    use crate::policy::path::PathProblem;
    use crate::policy::routes::MethodProblem;
    use crate::policy::tier::Tier;
    use crate::policy::{ClientIdError, IssuerRefusal};
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
        // Claim names reach the description; quotes, controls and backslashes never the header.
        let d = Denial::from(TokenRefusal::ClientId(ClientIdError::Ambiguous {
            first: "\"azp\"\r\nx:".to_string(),
            second: "y \\".to_string(),
        }));
        let r = reply(&d, "api");
        assert_eq!(r.status, 401);
        let www = header(&r, "www-authenticate").unwrap();
        assert_eq!(
            www,
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token's client id claims 'azp'??x: and y / differ\""
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["code"], "client_id_ambiguous");
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
                Denial::from(IssuerRefusal::Unknown),
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
