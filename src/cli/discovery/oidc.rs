//! The OpenID Connect discovery document and the rules a document must pass before keygate trusts
//! it (OpenID Connect Discovery 1.0 §4.3 plus transport rules). Pure functions: the network lives in
//! `http.rs`, so every rule is testable without a server.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cli::discovery::url::{HttpUrl, Scheme, UrlProblem};

pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";

/// The fields keygate uses. Unknown members are ignored, as the discovery spec asks of clients, so a
/// provider's full document can be pasted inline into `discovery:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
}

/// Why a discovery document (or its URL) is refused. Each names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The URL given is not `<issuer>/.well-known/openid-configuration`.
    NotWellKnownUrl {
        url: String,
    },
    MissingIssuer,
    MissingJwksUri,
    /// §4.3: the issuer must equal the URL the well-known path was appended to.
    IssuerMismatch {
        expected: String,
        issuer: String,
    },
    /// An endpoint is not a usable http(s) URL.
    BadUrl {
        field: &'static str,
        url: String,
        problem: UrlProblem,
    },
    /// Plain http to a host that is not loopback, without `--allow-http`.
    InsecureUrl {
        field: &'static str,
        url: String,
    },
}

impl DiscoveryError {
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::NotWellKnownUrl { .. } => "not_well_known_url",
            DiscoveryError::MissingIssuer => "missing_issuer",
            DiscoveryError::MissingJwksUri => "missing_jwks_uri",
            DiscoveryError::IssuerMismatch { .. } => "issuer_mismatch",
            DiscoveryError::BadUrl { .. } => "bad_url",
            DiscoveryError::InsecureUrl { .. } => "https_required",
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NotWellKnownUrl { url } => write!(
                f,
                "{url} must end with {WELL_KNOWN_SUFFIX} (OpenID Connect Discovery 1.0 §4)"
            ),
            DiscoveryError::MissingIssuer => {
                f.write_str("the document has no `issuer` (OpenID Connect Discovery 1.0 §3)")
            }
            DiscoveryError::MissingJwksUri => {
                f.write_str("the document has no `jwks_uri`: keygate needs it to verify tokens")
            }
            DiscoveryError::IssuerMismatch { expected, issuer } => write!(
                f,
                "issuer `{issuer}` does not match the discovery URL: expected `{expected}` \
                 (OpenID Connect Discovery 1.0 §4.3)"
            ),
            DiscoveryError::BadUrl {
                field,
                url,
                problem,
            } => write!(f, "`{field}` {url} {problem}"),
            DiscoveryError::InsecureUrl { field, url } => write!(
                f,
                "`{field}` {url} uses plain http to a non-loopback host; https is required \
                 (pass --allow-http to accept it)"
            ),
        }
    }
}

/// A tolerated deviation from §4.3, reported to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerNote {
    /// Entra multi-tenant documents publish `{tenantid}`: the tenant comes from each token's `tid`.
    TenantTemplate,
    /// Entra v1 documents on login.microsoftonline.com name sts.windows.net as issuer.
    EntraV1Host,
}

impl fmt::Display for IssuerNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IssuerNote::TenantTemplate => {
                "the issuer is a {tenantid} template (Entra ID multi-tenant): the tenant is taken \
                 from each token's `tid`; list the tenants you trust under `tenants:`"
            }
            IssuerNote::EntraV1Host => {
                "the issuer is on sts.windows.net while the document is on \
                 login.microsoftonline.com: Entra ID v1 documents do this, accepted"
            }
        })
    }
}

/// A document that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDiscovery {
    pub issuer: String,
    pub jwks_uri: HttpUrl,
    pub notes: Vec<IssuerNote>,
    pub document: DiscoveryDocument,
}

/// RFC 8414 §3: the authorization server metadata URL of `issuer`, the well-known segment
/// inserted between the host and the issuer's path.
pub fn metadata_url(issuer: &str) -> Option<String> {
    let url = HttpUrl::parse(issuer).ok()?;
    let path = url.path().trim_end_matches('/');
    Some(format!(
        "{}://{}/.well-known/oauth-authorization-server{path}",
        url.scheme.as_str(),
        url.authority()
    ))
}

/// The `introspection_endpoint` of RFC 8414 metadata, when the metadata is `issuer`'s own (§3.3:
/// its `issuer` is identical) and the endpoint passes the transport rule; `None` otherwise.
pub fn metadata_introspection(
    issuer: &str,
    metadata: &DiscoveryDocument,
    allow_http: bool,
) -> Option<String> {
    if metadata.issuer.as_deref() != Some(issuer) {
        return None;
    }
    let endpoint = metadata.introspection_endpoint.clone()?;
    parse_endpoint("introspection_endpoint", &endpoint, allow_http).ok()?;
    Some(endpoint)
}

/// Checks the URL an operator gave before anything is fetched.
pub fn check_well_known_url(url: &str, allow_http: bool) -> Result<HttpUrl, DiscoveryError> {
    let parsed = parse_endpoint("well_known_url", url, allow_http)?;
    if !parsed.path_and_query.ends_with(WELL_KNOWN_SUFFIX) {
        return Err(DiscoveryError::NotWellKnownUrl {
            url: url.to_string(),
        });
    }
    Ok(parsed)
}

/// Applies the issuer, `jwks_uri` and transport rules to a document fetched from `well_known_url`.
pub fn check_document(
    well_known_url: &str,
    document: DiscoveryDocument,
    allow_http: bool,
) -> Result<CheckedDiscovery, DiscoveryError> {
    let url = check_well_known_url(well_known_url, allow_http)?;
    let issuer = document
        .issuer
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or(DiscoveryError::MissingIssuer)?;
    let jwks = document
        .jwks_uri
        .clone()
        .filter(|j| !j.is_empty())
        .ok_or(DiscoveryError::MissingJwksUri)?;
    let notes = check_issuer(&url, &issuer)?;
    parse_endpoint("issuer", &issuer, allow_http)?;
    let jwks_uri = parse_endpoint("jwks_uri", &jwks, allow_http)?;
    let optional = [
        ("token_endpoint", &document.token_endpoint),
        ("introspection_endpoint", &document.introspection_endpoint),
        ("revocation_endpoint", &document.revocation_endpoint),
        ("userinfo_endpoint", &document.userinfo_endpoint),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            parse_endpoint(field, value, allow_http)?;
        }
    }
    Ok(CheckedDiscovery {
        issuer,
        jwks_uri,
        notes,
        document,
    })
}

/// §4.3: `issuer` (trailing `/` removed) + `/.well-known/openid-configuration` must be the URL.
/// Two Entra ID shapes are tolerated and reported: the `{tenantid}` template, whose segment is
/// compared with the URL's tenant segment (`common`, `organizations`, or a tenant id), and the v1
/// issuer host `sts.windows.net` for documents on `login.microsoftonline.com`.
pub fn check_issuer(url: &HttpUrl, issuer: &str) -> Result<Vec<IssuerNote>, DiscoveryError> {
    let base = url
        .path_and_query
        .strip_suffix(WELL_KNOWN_SUFFIX)
        .unwrap_or(url.path_and_query.as_str());
    let expected = format!(
        "{}://{}{}",
        url.scheme.as_str(),
        url.authority(),
        base.trim_end_matches('/')
    );
    let mismatch = || DiscoveryError::IssuerMismatch {
        expected: expected.clone(),
        issuer: issuer.to_string(),
    };
    let parsed = HttpUrl::parse(issuer).map_err(|_| mismatch())?;
    if parsed.path_and_query.contains('?') {
        return Err(mismatch());
    }
    let mut notes = Vec::new();

    let url_segments: Vec<&str> = base.trim_matches('/').split('/').collect();
    let issuer_path = parsed.path().trim_end_matches('/');
    let mut compared = Vec::new();
    for (index, segment) in issuer_path.trim_start_matches('/').split('/').enumerate() {
        if segment == "{tenantid}" {
            let tenant = url_segments.get(index).ok_or_else(mismatch)?;
            compared.push(*tenant);
            if !notes.contains(&IssuerNote::TenantTemplate) {
                notes.push(IssuerNote::TenantTemplate);
            }
        } else {
            compared.push(segment);
        }
    }
    let issuer_path = if issuer_path.is_empty() {
        String::new()
    } else {
        format!("/{}", compared.join("/"))
    };

    let mut host_matches = parsed.host == url.host && parsed.port == url.port;
    if !host_matches
        && parsed.host == "sts.windows.net"
        && url.host == "login.microsoftonline.com"
        && parsed.port == url.port
    {
        host_matches = true;
        notes.push(IssuerNote::EntraV1Host);
    }
    let same =
        parsed.scheme == url.scheme && host_matches && issuer_path == base.trim_end_matches('/');
    if same {
        Ok(notes)
    } else {
        Err(mismatch())
    }
}

/// Parses an endpoint URL and applies the transport rule: https, or http to a loopback host, or
/// http anywhere with `--allow-http`.
pub fn parse_endpoint(
    field: &'static str,
    url: &str,
    allow_http: bool,
) -> Result<HttpUrl, DiscoveryError> {
    let parsed = HttpUrl::parse(url).map_err(|problem| DiscoveryError::BadUrl {
        field,
        url: url.to_string(),
        problem,
    })?;
    if parsed.scheme == Scheme::Http && !parsed.is_loopback() && !allow_http {
        return Err(DiscoveryError::InsecureUrl {
            field,
            url: url.to_string(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap()
    }

    #[test]
    fn issuer_equal_to_prefix_is_accepted() {
        let u = url("https://sso.example.com/realms/shop/.well-known/openid-configuration");
        assert_eq!(
            check_issuer(&u, "https://sso.example.com/realms/shop"),
            Ok(vec![])
        );
    }

    #[test]
    fn trailing_slash_issuer_is_accepted() {
        let u = url("https://acme.eu.auth0.com/.well-known/openid-configuration");
        assert_eq!(check_issuer(&u, "https://acme.eu.auth0.com/"), Ok(vec![]));
    }

    #[test]
    fn other_issuer_is_refused() {
        let u = url("https://sso.example.com/realms/shop/.well-known/openid-configuration");
        for issuer in [
            "https://sso.example.com/realms/other",
            "https://evil.example.com/realms/shop",
            "http://sso.example.com/realms/shop",
            "https://sso.example.com:8443/realms/shop",
            "https://sso.example.com/realms/shop/extra",
            "https://sso.example.com/realms",
        ] {
            let err = check_issuer(&u, issuer).unwrap_err();
            assert_eq!(err.code(), "issuer_mismatch", "{issuer}");
        }
    }

    #[test]
    fn entra_tenant_template_is_accepted_with_a_note() {
        let u =
            url("https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration");
        assert_eq!(
            check_issuer(&u, "https://login.microsoftonline.com/{tenantid}/v2.0"),
            Ok(vec![IssuerNote::TenantTemplate])
        );
        // The template stands for the tenant segment only, not for other path parts.
        assert!(check_issuer(&u, "https://login.microsoftonline.com/{tenantid}/v1.0").is_err());
    }

    #[test]
    fn entra_v1_issuer_host_is_accepted_with_a_note() {
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let u = url(&format!(
            "https://login.microsoftonline.com/{tenant}/.well-known/openid-configuration"
        ));
        assert_eq!(
            check_issuer(&u, &format!("https://sts.windows.net/{tenant}/")),
            Ok(vec![IssuerNote::EntraV1Host])
        );
        assert!(check_issuer(&u, "https://sts.windows.net/another-tenant/").is_err());
        // The host swap is specific to Microsoft's hosts.
        let other = url(&format!(
            "https://idp.example.com/{tenant}/.well-known/openid-configuration"
        ));
        assert!(check_issuer(&other, &format!("https://sts.windows.net/{tenant}/")).is_err());
    }

    #[test]
    fn http_needs_loopback_or_the_flag() {
        let err = parse_endpoint("jwks_uri", "http://idp.example.com/keys", false).unwrap_err();
        assert_eq!(err.code(), "https_required");
        assert!(err.to_string().contains("--allow-http"));
        assert!(parse_endpoint("jwks_uri", "http://idp.example.com/keys", true).is_ok());
        assert!(parse_endpoint("jwks_uri", "http://127.0.0.1:8000/keys", false).is_ok());
        assert!(parse_endpoint("jwks_uri", "http://[::1]:8000/keys", false).is_ok());
        assert!(parse_endpoint("jwks_uri", "http://localhost/keys", false).is_ok());
        assert!(parse_endpoint("jwks_uri", "https://idp.example.com/keys", false).is_ok());
    }

    #[test]
    fn document_rules() {
        let wk = "https://idp.example.com/.well-known/openid-configuration";
        let good = DiscoveryDocument {
            issuer: Some("https://idp.example.com".into()),
            jwks_uri: Some("https://idp.example.com/jwks".into()),
            token_endpoint: Some("https://idp.example.com/token".into()),
            ..Default::default()
        };
        let checked = check_document(wk, good.clone(), false).unwrap();
        assert_eq!(checked.jwks_uri.path_and_query, "/jwks");

        let no_jwks = DiscoveryDocument {
            jwks_uri: None,
            ..good.clone()
        };
        assert_eq!(
            check_document(wk, no_jwks, false),
            Err(DiscoveryError::MissingJwksUri)
        );
        let no_issuer = DiscoveryDocument {
            issuer: None,
            ..good.clone()
        };
        assert_eq!(
            check_document(wk, no_issuer, false),
            Err(DiscoveryError::MissingIssuer)
        );
        let http_token = DiscoveryDocument {
            token_endpoint: Some("http://idp.example.com/token".into()),
            ..good.clone()
        };
        assert_eq!(
            check_document(wk, http_token, false).unwrap_err().code(),
            "https_required"
        );
        assert_eq!(
            check_document("https://idp.example.com/openid", good, false)
                .unwrap_err()
                .code(),
            "not_well_known_url"
        );
    }
}
