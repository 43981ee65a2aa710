//! Registered-claim checks (RFC 7519 §4.1) against an explicit `now`: `exp`, `nbf`, `iat`,
//! exact `iss`, and `aud` when audiences are configured.
//!
//! Times are JSON numbers (fractions allowed) in seconds since the epoch. A token is valid while
//! `now < exp + leeway` and `now >= nbf - leeway`. `iat` is only type-checked: providers disagree
//! on clock skew at issue time and a future `iat` proves nothing `exp`/`nbf` do not.

use serde_json::{Map, Value};

use crate::jose::{Claim, TokenError};

/// What a verified token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Exact `iss` required; `None` skips the issuer check.
    pub issuer: Option<String>,
    /// `aud` must contain one of these; empty skips the audience check.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Accepted `alg` names; empty means every algorithm keygate supports.
    pub algorithms: Vec<String>,
}

impl Default for Validation {
    /// Strict defaults: `exp` required, no leeway, no issuer/audience pinned, every algorithm.
    fn default() -> Self {
        Validation {
            issuer: None,
            audiences: Vec::new(),
            leeway_seconds: 0,
            require_exp: true,
            algorithms: Vec::new(),
        }
    }
}

impl Validation {
    /// Whether `alg` is on the configured list (an empty list allows all supported ones).
    pub fn allows_alg(&self, alg: &str) -> bool {
        self.algorithms.is_empty() || self.algorithms.iter().any(|allowed| allowed == alg)
    }
}

/// Checks the registered claims of an authentic token.
pub fn check(
    claims: &Map<String, Value>,
    validation: &Validation,
    now: f64,
) -> Result<(), TokenError> {
    let exp = number_claim(claims, Claim::Exp)?;
    let nbf = number_claim(claims, Claim::Nbf)?;
    number_claim(claims, Claim::Iat)?;
    let iss = match claims.get("iss") {
        None => None,
        Some(Value::String(iss)) => Some(iss.as_str()),
        Some(_) => return Err(TokenError::InvalidClaim { claim: Claim::Iss }),
    };
    let aud = audiences(claims)?;

    check_time(exp, nbf, validation, now)?;
    if let Some(expected) = &validation.issuer {
        match iss {
            None => return Err(TokenError::IssuerMismatch { missing: true }),
            Some(iss) if iss != expected => {
                return Err(TokenError::IssuerMismatch { missing: false })
            }
            Some(_) => {}
        }
    }
    if !validation.audiences.is_empty() {
        match aud {
            None => return Err(TokenError::AudienceMismatch { missing: true }),
            Some(aud)
                if !aud
                    .iter()
                    .any(|a| validation.audiences.iter().any(|c| c == a)) =>
            {
                return Err(TokenError::AudienceMismatch { missing: false })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The time checks alone, on `exp` and `nbf` already read from the claims (a verified-token cache
/// hit repeats only these: everything else about a token is fixed once it is verified).
pub fn check_time(
    exp: Option<f64>,
    nbf: Option<f64>,
    validation: &Validation,
    now: f64,
) -> Result<(), TokenError> {
    // A clock that reads NaN would pass every comparison below; fail closed instead.
    if now.is_nan() {
        return Err(TokenError::Expired);
    }
    // Leeway is a config value in seconds; f64 is exact for any sane value.
    let leeway = validation.leeway_seconds as f64;
    match exp {
        Some(exp) if now >= exp + leeway => return Err(TokenError::Expired),
        Some(_) => {}
        None if validation.require_exp => return Err(TokenError::MissingExp),
        None => {}
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// `exp` and `nbf` of claims that passed [`check`].
pub fn times(claims: &Map<String, Value>) -> (Option<f64>, Option<f64>) {
    let number = |name: &str| claims.get(name).and_then(Value::as_f64);
    (number("exp"), number("nbf"))
}

fn number_claim(claims: &Map<String, Value>, claim: Claim) -> Result<Option<f64>, TokenError> {
    match claims.get(claim.name()) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(TokenError::InvalidClaim { claim }),
        Some(_) => Err(TokenError::InvalidClaim { claim }),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audiences(claims: &Map<String, Value>) -> Result<Option<Vec<&str>>, TokenError> {
    let invalid = TokenError::InvalidClaim { claim: Claim::Aud };
    match claims.get("aud") {
        None => Ok(None),
        Some(Value::String(aud)) => Ok(Some(vec![aud.as_str()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or(invalid),
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn time_window_is_half_open_with_leeway() {
        let c = claims(json!({"exp": 100.5, "nbf": 50}));
        let mut v = Validation::default();
        assert_eq!(check(&c, &v, 100.4), Ok(()));
        assert_eq!(check(&c, &v, 100.5), Err(TokenError::Expired));
        assert_eq!(check(&c, &v, 50.0), Ok(()));
        assert_eq!(check(&c, &v, 49.9), Err(TokenError::NotYetValid));
        v.leeway_seconds = 10;
        assert_eq!(check(&c, &v, 110.0), Ok(()));
        assert_eq!(check(&c, &v, 110.5), Err(TokenError::Expired));
        assert_eq!(check(&c, &v, 40.0), Ok(()));
        assert_eq!(check(&c, &v, 39.0), Err(TokenError::NotYetValid));
    }

    #[test]
    fn exp_required_unless_configured() {
        let c = claims(json!({"sub": "x"}));
        let mut v = Validation::default();
        assert_eq!(check(&c, &v, 1.0), Err(TokenError::MissingExp));
        v.require_exp = false;
        assert_eq!(check(&c, &v, 1.0), Ok(()));
    }

    #[test]
    fn claim_types_are_checked() {
        let v = Validation::default();
        for (bad, claim) in [
            (json!({"exp": "100"}), Claim::Exp),
            (json!({"exp": 100, "nbf": true}), Claim::Nbf),
            (json!({"exp": 100, "iat": null}), Claim::Iat),
            (json!({"exp": 100, "iss": 7}), Claim::Iss),
            (json!({"exp": 100, "aud": ["a", 1]}), Claim::Aud),
            (json!({"exp": 100, "aud": {}}), Claim::Aud),
        ] {
            assert_eq!(
                check(&claims(bad), &v, 1.0),
                Err(TokenError::InvalidClaim { claim })
            );
        }
    }

    #[test]
    fn issuer_and_audience() {
        let v = Validation {
            issuer: Some("https://idp".into()),
            audiences: vec!["api".into(), "other".into()],
            ..Validation::default()
        };
        let ok = claims(json!({"exp": 10, "iss": "https://idp", "aud": ["x", "other"]}));
        assert_eq!(check(&ok, &v, 1.0), Ok(()));
        let ok = claims(json!({"exp": 10, "iss": "https://idp", "aud": "api"}));
        assert_eq!(check(&ok, &v, 1.0), Ok(()));
        let wrong_iss = claims(json!({"exp": 10, "iss": "https://idp/", "aud": "api"}));
        assert_eq!(
            check(&wrong_iss, &v, 1.0),
            Err(TokenError::IssuerMismatch { missing: false })
        );
        let no_iss = claims(json!({"exp": 10, "aud": "api"}));
        assert_eq!(
            check(&no_iss, &v, 1.0),
            Err(TokenError::IssuerMismatch { missing: true })
        );
        let wrong_aud = claims(json!({"exp": 10, "iss": "https://idp", "aud": ["API"]}));
        assert_eq!(
            check(&wrong_aud, &v, 1.0),
            Err(TokenError::AudienceMismatch { missing: false })
        );
        let no_aud = claims(json!({"exp": 10, "iss": "https://idp"}));
        assert_eq!(
            check(&no_aud, &v, 1.0),
            Err(TokenError::AudienceMismatch { missing: true })
        );
    }
}
