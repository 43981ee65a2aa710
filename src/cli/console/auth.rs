//! Sign-in and bearer tokens. The console is an OpenID Connect client of one key manager
//! (authorization code flow with PKCE S256, `state` and `nonce`), written on the CLI's own
//! discovery code and HTTP client (ureq) and the filter's own JWT verification (`jose::verify`
//! against the key manager's JWKS): the ID token of a sign-in and the access tokens of REST calls
//! are verified by the same code the gateway runs. Administrators are the members of a configured
//! group (a claim of the token, `groups` by default).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::{random_token, ConsoleError, Result};
use crate::cli::discover;
use crate::cli::discovery::http;
use crate::cli::discovery::oidc::CheckedDiscovery;
use crate::jose::{self, KeySet, UntrustedToken, Validation};
use crate::policy::accepted_algorithms;

/// How long a started sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// At most one JWKS refetch per this interval (an unknown `kid` triggers one).
const JWKS_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub well_known_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// The console's own origin (`http://127.0.0.1:9500`): the redirect URI is this +
    /// `/auth/callback`.
    pub public_url: String,
    /// Members of this group are administrators.
    pub admin_group: String,
    /// The claim holding the groups.
    pub groups_claim: String,
    /// Accepted `aud` values of REST access tokens (empty: not checked).
    pub api_audiences: Vec<String>,
    pub allow_http: bool,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub sub: String,
    pub name: String,
    pub admin: bool,
}

struct Pending {
    verifier: String,
    nonce: String,
    started: Instant,
}

struct Keys {
    keys: Option<(std::sync::Arc<KeySet>, Instant)>,
}

pub struct Auth {
    pub settings: OidcSettings,
    discovery: Mutex<Option<CheckedDiscovery>>,
    keys: Mutex<Keys>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| ConsoleError::Internal("lock poisoned".into()))
}

/// `application/x-www-form-urlencoded` / query component encoding.
pub fn url_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Auth {
    pub fn new(settings: OidcSettings) -> Auth {
        Auth {
            settings,
            discovery: Mutex::new(None),
            keys: Mutex::new(Keys { keys: None }),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/auth/callback",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    /// The key manager's checked discovery document (fetched once).
    fn discovery(&self) -> Result<CheckedDiscovery> {
        let mut cached = lock(&self.discovery)?;
        if let Some(found) = cached.as_ref() {
            return Ok(found.clone());
        }
        let found = discover::resolve(&self.settings.well_known_url, self.settings.allow_http)
            .map_err(|err| {
                ConsoleError::Upstream(format!("the sign-in key manager cannot be reached: {err}"))
            })?;
        *cached = Some(found.clone());
        Ok(found)
    }

    /// The authorization request URL of a new sign-in, and its `state` (the browser keeps it in
    /// a cookie, so a callback started in another browser is refused: no login CSRF).
    pub fn start(&self) -> Result<(String, String)> {
        let found = self.discovery()?;
        let endpoint = found
            .document
            .authorization_endpoint
            .clone()
            .ok_or_else(|| {
                ConsoleError::Upstream("the key manager has no authorization_endpoint".into())
            })?;
        let state = random_token()?;
        let verifier = random_token()?;
        let nonce = random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = lock(&self.pending)?;
            pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
            pending.insert(
                state.clone(),
                Pending {
                    verifier,
                    nonce: nonce.clone(),
                    started: Instant::now(),
                },
            );
        }
        let params = [
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("redirect_uri", &self.redirect_uri()),
            ("scope", "openid groups"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{endpoint}{sep}{}", query.join("&")), state))
    }

    /// Completes a sign-in: exchanges the code (with the PKCE verifier) and verifies the ID token.
    pub fn finish(&self, state: &str, code: &str) -> Result<Identity> {
        let pending = lock(&self.pending)?.remove(state).ok_or_else(|| {
            ConsoleError::Forbidden("this sign-in was not started here or has expired".into())
        })?;
        if pending.started.elapsed() >= PENDING_TTL {
            return Err(ConsoleError::Forbidden("this sign-in has expired".into()));
        }
        let found = self.discovery()?;
        let token_endpoint = found.document.token_endpoint.clone().ok_or_else(|| {
            ConsoleError::Upstream("the key manager has no token_endpoint".into())
        })?;
        let basic = STANDARD.encode(format!(
            "{}:{}",
            url_encode(&self.settings.client_id),
            url_encode(&self.settings.client_secret)
        ));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let redirect_uri = self.redirect_uri();
        let mut response = agent
            .post(&token_endpoint)
            .header("authorization", &format!("Basic {basic}"))
            .send_form([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ])
            .map_err(|err| ConsoleError::Upstream(format!("token endpoint: {err}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec()
            .map_err(|err| ConsoleError::Upstream(format!("token endpoint: {err}")))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|err| ConsoleError::Upstream(format!("token endpoint: {err}")))?;
        if status != 200 {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("?");
            return Err(ConsoleError::Forbidden(format!(
                "the key manager refused the sign-in ({status} {error})"
            )));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ConsoleError::Upstream("no id_token in the token response".into()))?;
        let claims = self.verify(id_token, std::slice::from_ref(&self.settings.client_id))?;
        if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
            return Err(ConsoleError::Forbidden(
                "the ID token's nonce is not this sign-in's".into(),
            ));
        }
        self.identity(&claims)
    }

    /// A REST call's bearer access token, verified like the gateway verifies tokens.
    pub fn bearer(&self, token: &str) -> Result<Identity> {
        let audiences = self.settings.api_audiences.clone();
        let claims = self.verify(token, &audiences)?;
        self.identity(&claims)
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Result<Identity> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConsoleError::Forbidden("the token names no user (sub)".into()))?;
        let admin = match claims.get(&self.settings.groups_claim) {
            Some(Value::Array(groups)) => groups
                .iter()
                .any(|g| g.as_str() == Some(self.settings.admin_group.as_str())),
            Some(Value::String(groups)) => groups
                .split(' ')
                .any(|g| g == self.settings.admin_group.as_str()),
            _ => false,
        };
        let name = claims
            .get("preferred_username")
            .or_else(|| claims.get("name"))
            .and_then(Value::as_str)
            .unwrap_or(sub);
        Ok(Identity {
            sub: sub.to_string(),
            name: name.to_string(),
            admin,
        })
    }

    /// Verifies a JWT with the filter's own code: issuer, audiences, expiry, algorithm, signature.
    fn verify(&self, token: &str, audiences: &[String]) -> Result<serde_json::Map<String, Value>> {
        let found = self.discovery()?;
        let validation = Validation {
            issuer: Some(found.issuer.clone()),
            audiences: audiences.to_vec(),
            leeway_seconds: 30,
            require_exp: true,
            algorithms: accepted_algorithms(&[]),
        };
        let parsed = UntrustedToken::parse(token)
            .map_err(|err| ConsoleError::Forbidden(format!("token refused: {}", err.code())))?;
        let first = {
            let keys = self.keyset(false)?;
            jose::verify(&parsed, &keys, &validation, now_f64())
        };
        let verified = match first {
            Ok(verified) => verified,
            // A rotated key: fetch the JWKS again (rate limited), then once more.
            Err(_) => {
                let keys = self.keyset(true)?;
                jose::verify(&parsed, &keys, &validation, now_f64()).map_err(|err| {
                    ConsoleError::Forbidden(format!("token refused: {}", err.code()))
                })?
            }
        };
        Ok(verified.claims)
    }

    fn keyset(&self, refresh: bool) -> Result<std::sync::Arc<KeySet>> {
        let mut keys = lock(&self.keys)?;
        let fresh_enough = keys
            .keys
            .as_ref()
            .is_some_and(|(_, at)| !refresh || at.elapsed() < JWKS_REFRESH);
        if !fresh_enough {
            let found = self.discovery()?;
            let jwks: Value = http::get_json(&found.jwks_uri.to_string())
                .map_err(|err| ConsoleError::Upstream(format!("JWKS: {err}")))?;
            let bytes = serde_json::to_vec(&jwks)?;
            let set = KeySet::from_json(&bytes)
                .map_err(|err| ConsoleError::Upstream(format!("JWKS unusable: {err}")))?;
            keys.keys = Some((std::sync::Arc::new(set), Instant::now()));
        }
        match &keys.keys {
            Some((set, _)) => Ok(set.clone()),
            None => Err(ConsoleError::Upstream("no JWKS".into())),
        }
    }
}
