//! Backend JWTs (docs/backend-jwt.md): for an API that asks for one (`apis[].backend_jwt`), the
//! gateway forwards a short-lived JWT it signs itself (ES256), so the upstream can verify who
//! called with the gateway's public JWKS instead of trusting plain headers.
//!
//! The JWT is kept with the authorization of the verified-token cache ([`super::Allowed`]), so a
//! cache hit signs nothing; it is signed again once less than half its lifetime is left, and it
//! never outlives the access token (`exp` is the earlier of `iat + ttl_seconds` and the token's).

use std::cell::RefCell;

use serde_json::{json, Map, Value};

use crate::config::{ConfigError, ConfigErrors, ConfigProblem};
use crate::jose::sign::EcSigningKey;
use crate::jose::HostCrypto;
use crate::policy::{ApiId, Policy};

use super::{Allowed, Denial};

/// The backend JWT of one authorization: the access token's `exp` (a bound for the JWT's) and
/// the last JWT signed for it.
pub struct BackendJwt {
    token_exp: Option<u64>,
    signed: RefCell<Option<Signed>>,
}

struct Signed {
    jwt: String,
    iat: u64,
    exp: u64,
}

impl BackendJwt {
    pub(super) fn new(claims: &Map<String, Value>) -> BackendJwt {
        let token_exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .filter(|exp| exp.is_finite() && *exp >= 0.0)
            .map(|exp| exp as u64);
        BackendJwt {
            token_exp,
            signed: RefCell::new(None),
        }
    }

    /// The JWT signed earlier, while more than half its lifetime is left.
    fn fresh(&self, now: u64) -> Option<String> {
        let signed = self.signed.try_borrow().ok()?;
        let signed = signed.as_ref()?;
        let half = signed.iat + (signed.exp.saturating_sub(signed.iat)) / 2;
        (now < half.max(signed.iat + 1) && now < signed.exp).then(|| signed.jwt.clone())
    }
}

impl std::fmt::Debug for BackendJwt {
    /// The JWT itself is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signed = self
            .signed
            .try_borrow()
            .map(|s| s.is_some())
            .unwrap_or(false);
        write!(f, "BackendJwt {{ signed: {signed} }}")
    }
}

impl PartialEq for BackendJwt {
    /// Two authorizations are the same whatever JWT either happens to hold.
    fn eq(&self, other: &Self) -> bool {
        self.token_exp == other.token_exp
    }
}

impl Eq for BackendJwt {}

/// The gateway's signing keys (the first signs; all are published), read from the environment
/// at configuration, and whether the host signs for it.
#[derive(Debug)]
pub struct BackendSigner {
    issuer: String,
    keys: Vec<EcSigningKey>,
    /// Envoy's `sign` passed the self-test with the signing key.
    hosted: bool,
    /// Sign in Wasm even when the host could (`backend_jwt.in_wasm`).
    in_wasm: bool,
}

impl BackendSigner {
    /// The private keys of `backend_jwt.keys`, each read through `env` (in the filter: the Wasm
    /// VM's environment) as a private JWK that must be the configured public key. `None` when
    /// the configuration signs nothing. A missing or wrong key refuses the configuration, naming
    /// the field; the value never appears in the error.
    pub fn from_env(
        policy: &Policy,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<BackendSigner>, ConfigErrors> {
        let Some(config) = policy.backend_signing() else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let mut keys = Vec::with_capacity(config.keys.len());
        for (k, key) in config.keys.iter().enumerate() {
            let at = format!("backend_jwt.keys[{k}].env");
            let Some(text) = env(&key.env).filter(|text| !text.is_empty()) else {
                let variable = key.env.clone();
                errors.push(ConfigError::new(
                    at,
                    ConfigProblem::SecretNotSet { variable },
                ));
                continue;
            };
            let reason = match EcSigningKey::from_private_jwk(&text) {
                Ok(private) if private.x == key.x && private.y == key.y => {
                    keys.push(private);
                    continue;
                }
                Ok(_) => "the private key in this variable is not the key of x and y",
                Err(reason) => reason,
            };
            let value = key.env.clone();
            errors.push(ConfigError::new(
                at,
                ConfigProblem::Invalid { value, reason },
            ));
        }
        match ConfigErrors::from_vec(errors) {
            Some(errors) => Err(errors),
            None => Ok(Some(BackendSigner {
                issuer: config.issuer.clone(),
                keys,
                hosted: false,
                in_wasm: config.in_wasm,
            })),
        }
    }

    /// Asks `host` to sign with the signing key once (checked here): from then on it signs
    /// every backend JWT, unless `in_wasm` is configured. Returns whether it will.
    pub fn probe(&mut self, host: &dyn HostCrypto) -> bool {
        self.hosted = !self.in_wasm && self.keys.first().is_some_and(|key| key.host_signs(host));
        self.hosted
    }

    /// The `kid` new JWTs are signed with.
    pub fn signing_kid(&self) -> Option<&str> {
        self.keys.first().map(|key| key.kid.as_str())
    }
}

/// The header and JWT to forward for an allowed request to API `api`, if that API asks for one:
/// the one kept with the authorization while fresh, else a new one (kept for next time).
pub fn backend_jwt(
    policy: &Policy,
    api: ApiId,
    allowed: &Allowed,
    signer: Option<&BackendSigner>,
    host: &dyn HostCrypto,
    now: u64,
) -> Result<Option<(String, String)>, Denial> {
    let Some(config) = policy.api(api).and_then(|api| api.backend_jwt.as_ref()) else {
        return Ok(None);
    };
    let header = config.header.clone();
    if let Some(jwt) = allowed.backend.fresh(now) {
        return Ok(Some((header, jwt)));
    }
    let signer = signer.ok_or(Denial::BackendJwtUnavailable)?;
    let key = signer.keys.first().ok_or(Denial::BackendJwtUnavailable)?;
    let identity = &allowed.identity;
    let exp = now
        .saturating_add(config.ttl_seconds)
        .min(allowed.backend.token_exp.unwrap_or(u64::MAX));
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(signer.issuer));
    claims.insert("aud".into(), json!(identity.api));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    if let Some(subject) = &identity.subject {
        claims.insert("sub".into(), json!(subject));
    }
    claims.insert("application".into(), json!(identity.application));
    claims.insert("client_id".into(), json!(identity.client_id));
    claims.insert("key_manager".into(), json!(identity.key_manager));
    claims.insert("scope".into(), json!(identity.scopes.join(" ")));
    if let Some(budget) = &identity.budget {
        claims.insert("tier".into(), json!(budget.tier.name));
    }
    claims.insert("environment".into(), json!(policy.environment()));
    let header_json = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}).to_string();
    let payload = Value::Object(claims).to_string();
    let crypto = signer.hosted.then_some(host);
    let (jwt, _) = key
        .sign_jws(&header_json, &payload, crypto)
        .ok_or(Denial::BackendJwtUnavailable)?;
    if let Ok(mut slot) = allowed.backend.signed.try_borrow_mut() {
        *slot = Some(Signed {
            jwt: jwt.clone(),
            iat: now,
            exp,
        });
    }
    Ok(Some((header, jwt)))
}
