//! `keygate check-token`: the filter's own verification, natively, to answer "why is this token
//! refused?".
//!
//! Contract (other tools rely on it): prints exactly one JSON object on stdout,
//! `{"valid": true, "reason": "valid", "claims": {...}}` or `{"valid": false, "reason": "<code>"}`,
//! where `<code>` is a `TokenError` or `KeysError` code; a human description goes to stderr.
//! Exit status: 0 valid, 1 invalid (bad token or unusable JWKS), 2 usage or I/O error.

use std::io::Read as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::claims::Validation;
use crate::jose::{self, KeySet, UntrustedToken};

/// Reason reported for a token that passed every check.
pub const VALID_REASON: &str = "valid";

/// Upper bound on what is read from stdin; far above any token `UntrustedToken` accepts.
const MAX_STDIN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JWKS document (JSON file with a "keys" array).
    #[arg(long, value_name = "FILE")]
    pub jwks: PathBuf,
    /// The time to judge exp/nbf at, in seconds since the epoch (integer or decimal); no leeway.
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = parse_unix_seconds)]
    pub at: f64,
    /// Require this exact iss (not checked when omitted).
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,
    /// Accept this audience; repeatable (aud not checked when omitted).
    #[arg(long = "audience", value_name = "AUD")]
    pub audiences: Vec<String>,
    /// Accept tokens without exp.
    #[arg(long)]
    pub allow_missing_exp: bool,
    /// The compact JWS, or `-` to read it from stdin (surrounding whitespace is trimmed).
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: String,
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    let token_text = if args.token == "-" {
        let mut text = String::new();
        if let Err(err) = std::io::stdin()
            .take(MAX_STDIN_BYTES)
            .read_to_string(&mut text)
        {
            eprintln!("keygate: cannot read the token from stdin: {err}");
            return 2;
        }
        text.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    let jwks = match std::fs::read(&args.jwks) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("keygate: cannot read {}: {err}", args.jwks.display());
            return 2;
        }
    };
    let validation = Validation {
        issuer: args.issuer,
        audiences: args.audiences,
        leeway_seconds: 0,
        require_exp: !args.allow_missing_exp,
        algorithms: Vec::new(),
    };
    let (verdict, description) = judge(&token_text, &jwks, &validation, args.at);
    eprintln!("keygate: {description}");
    println!("{verdict}");
    if verdict.get("valid") == Some(&Value::Bool(true)) {
        0
    } else {
        1
    }
}

/// The verdict object and a one-line human description.
pub fn judge(token: &str, jwks: &[u8], validation: &Validation, at: f64) -> (Value, String) {
    let keys = match KeySet::from_json(jwks) {
        Ok(keys) => keys,
        Err(err) => return refused(err.code(), format!("JWKS unusable: {err}")),
    };
    let outcome =
        UntrustedToken::parse(token).and_then(|t| jose::verify(&t, &keys, validation, at));
    match outcome {
        Ok(verified) => {
            let description = format!(
                "token valid ({}, kid {}; {} usable keys, {} JWKS entries skipped)",
                verified.alg,
                verified
                    .kid
                    .as_deref()
                    .map(jose::safe_label)
                    .unwrap_or_else(|| "none".into()),
                keys.len(),
                keys.skipped()
            );
            (
                json!({"valid": true, "reason": VALID_REASON, "claims": verified.claims}),
                description,
            )
        }
        Err(err) => refused(err.code(), format!("token refused: {err}")),
    }
}

fn refused(code: &str, description: String) -> (Value, String) {
    (json!({"valid": false, "reason": code}), description)
}

/// `--at`: digits, optionally a fraction (`1300819380`, `1300819380.5`); no sign, exponent,
/// `inf` or `nan`, so a typo cannot silently become a clock that never expires anything.
fn parse_unix_seconds(text: &str) -> Result<f64, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err("expected seconds since the epoch, e.g. 1700000000 or 1700000000.5".into());
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| "number out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_are_integers_or_decimals() {
        assert_eq!(parse_unix_seconds("1300819380"), Ok(1_300_819_380.0));
        assert_eq!(parse_unix_seconds("1.5"), Ok(1.5));
        for bad in [
            "", "-1", "+1", "1e9", "inf", "NaN", "1.", ".5", "1.2.3", " 1",
        ] {
            assert!(parse_unix_seconds(bad).is_err(), "{bad}");
        }
    }
}
