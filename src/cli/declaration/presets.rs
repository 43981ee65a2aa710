//! Claim-mapping presets: where each known key manager puts the client id, scopes and groups in its
//! access tokens (facts from the providers' public documentation, see PROVIDERS.md), and a guess of
//! the provider from the shape of its discovery document.

use crate::cli::discovery::url::HttpUrl;
use crate::config::ClaimMapping;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Asgardeo,
    EntraV1,
    EntraV2,
    Keycloak,
    Okta,
    Auth0,
    Generic,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Asgardeo,
        Preset::EntraV1,
        Preset::EntraV2,
        Preset::Keycloak,
        Preset::Okta,
        Preset::Auth0,
        Preset::Generic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Asgardeo => "asgardeo",
            Preset::EntraV1 => "entra-v1",
            Preset::EntraV2 => "entra-v2",
            Preset::Keycloak => "keycloak",
            Preset::Okta => "okta",
            Preset::Auth0 => "auth0",
            Preset::Generic => "generic",
        }
    }

    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The claim mapping of this provider; claims are tried in order, the first present wins.
    pub fn claims(self) -> ClaimMapping {
        let (client_id, scopes, groups): (&[&str], &[&str], &[&str]) = match self {
            Preset::Asgardeo => (&["client_id", "azp"], &["scope"], &["groups", "roles"]),
            // v1 tokens name the client `appid`; delegated scopes are in `scp`, application
            // permissions in `roles`.
            Preset::EntraV1 => (&["appid"], &["scp", "roles"], &["groups", "roles"]),
            Preset::EntraV2 => (&["azp"], &["scp", "roles"], &["groups", "roles"]),
            // Client-credentials tokens carry `client_id`; user tokens only `azp`.
            Preset::Keycloak => (
                &["client_id", "azp"],
                &["scope"],
                &["realm_access.roles", "groups"],
            ),
            Preset::Okta => (&["cid"], &["scp"], &["groups"]),
            // `client_id` under the RFC 9068 token profile, `azp` under the default one; RBAC puts
            // granted permissions in `permissions`.
            Preset::Auth0 => (
                &["client_id", "azp"],
                &["scope", "permissions"],
                &["permissions"],
            ),
            Preset::Generic => return ClaimMapping::default(),
        };
        ClaimMapping {
            client_id: owned(client_id),
            scopes: owned(scopes),
            groups: owned(groups),
            ..ClaimMapping::default()
        }
    }

    /// Guesses the provider from the discovery document's issuer and JWKS URL. Hosts decide first
    /// (they are unambiguous); path shapes decide when the host says nothing (self-hosted, tests).
    pub fn suggest(issuer: &str, jwks_uri: &str) -> Preset {
        let issuer_url = HttpUrl::parse(issuer).ok();
        let jwks_url = HttpUrl::parse(jwks_uri).ok();
        let host = issuer_url.as_ref().map(|u| u.host.as_str()).unwrap_or("");
        let issuer_path = issuer_url.as_ref().map(|u| u.path()).unwrap_or("");
        let jwks_path = jwks_url.as_ref().map(|u| u.path()).unwrap_or("");

        if host == "sts.windows.net" || jwks_path.ends_with("/discovery/keys") {
            return Preset::EntraV1;
        }
        if host == "login.microsoftonline.com" || jwks_path.ends_with("/discovery/v2.0/keys") {
            return Preset::EntraV2;
        }
        if host.ends_with("asgardeo.io") || is_asgardeo_issuer_path(issuer_path) {
            return Preset::Asgardeo;
        }
        if issuer_path.contains("/realms/") && jwks_path.ends_with("/protocol/openid-connect/certs")
        {
            return Preset::Keycloak;
        }
        if host.ends_with(".okta.com")
            || host.ends_with(".oktapreview.com")
            || (issuer_path.starts_with("/oauth2/") && jwks_path.ends_with("/v1/keys"))
        {
            return Preset::Okta;
        }
        if host.ends_with(".auth0.com") || jwks_path.ends_with("/.well-known/jwks.json") {
            return Preset::Auth0;
        }
        Preset::Generic
    }
}

/// Asgardeo (and WSO2 Identity Server) issuers look like `/t/{org}/oauth2/token`.
fn is_asgardeo_issuer_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["t", org, "oauth2", "token"] if !org.is_empty())
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()), Some(preset));
        }
        assert_eq!(Preset::from_name("entra"), None);
    }

    #[test]
    fn provider_claims() {
        assert_eq!(Preset::EntraV1.claims().client_id, ["appid"]);
        assert_eq!(Preset::EntraV2.claims().client_id, ["azp"]);
        assert_eq!(Preset::Okta.claims().client_id, ["cid"]);
        assert_eq!(Preset::Okta.claims().scopes, ["scp"]);
        assert_eq!(
            Preset::Keycloak.claims().groups,
            ["realm_access.roles", "groups"]
        );
        assert_eq!(Preset::Generic.claims(), ClaimMapping::default());
    }

    #[test]
    fn suggestion_by_public_host() {
        let cases = [
            (
                "https://api.asgardeo.io/t/acme/oauth2/token",
                "https://api.asgardeo.io/t/acme/oauth2/jwks",
                Preset::Asgardeo,
            ),
            (
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                "https://login.microsoftonline.com/common/discovery/keys",
                Preset::EntraV1,
            ),
            (
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                "https://login.microsoftonline.com/common/discovery/v2.0/keys",
                Preset::EntraV2,
            ),
            (
                "https://dev-1.okta.com/oauth2/default",
                "https://dev-1.okta.com/oauth2/default/v1/keys",
                Preset::Okta,
            ),
            (
                "https://acme.eu.auth0.com/",
                "https://acme.eu.auth0.com/.well-known/jwks.json",
                Preset::Auth0,
            ),
            (
                "https://sso.example.com/realms/shop",
                "https://sso.example.com/realms/shop/protocol/openid-connect/certs",
                Preset::Keycloak,
            ),
            (
                "https://idp.example.com",
                "https://idp.example.com/jwks",
                Preset::Generic,
            ),
        ];
        for (issuer, jwks, want) in cases {
            assert_eq!(Preset::suggest(issuer, jwks), want, "{issuer}");
        }
    }
}
