//! `keygate check-token`: the filter's own verification, natively, to answer "why is this token
//! refused?".
//!
//! Contract (other tools rely on it): prints exactly one JSON object on stdout,
//! `{"valid": true, "reason": "valid", "claims": {...}, "algorithms": [...]}` or
//! `{"valid": false, "reason": "<code>", "algorithms": [...]}`, where `<code>` is a `TokenError` or
//! `KeysError` code and `algorithms` the `alg` values accepted (the filter's rule for a key manager
//! without an `algorithms` list: every supported asymmetric algorithm, never HMAC); a human
//! description goes to stderr. Exit status: 0 valid, 1 invalid (bad token or unusable JWKS),
//! 2 usage or I/O error.
//!
//! A token read from stdin (`-`) loses one trailing line break (`\n` or `\r\n`), nothing else: any
//! other whitespace is part of the token, which is then malformed, as it would be in a header.

use std::io::Read as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::jose::claims::Validation;
use crate::jose::{self, KeySet, UntrustedToken};
use crate::policy::accepted_algorithms;

/// Reason reported for a token that passed every check.
pub const VALID_REASON: &str = "valid";

/// Upper bound on what is read from stdin; far above any token `UntrustedToken` accepts.
const MAX_STDIN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JWKS document (JSON file with a "keys" array).
    #[arg(long, value_name = "FILE")]
    pub jwks: PathBuf,
    /// The time to judge exp/nbf at, in seconds since the epoch (integer or decimal), or `now`;
    /// no leeway.
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
    /// The compact JWS, or `-` to read it from stdin (one trailing newline is removed).
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: String,
}

/// The token argument as given, or for `-` stdin without its one trailing line break.
pub fn read_token(arg: &str) -> Result<String, String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read the token from stdin: {err}"))?;
    // Bytes that are not UTF-8 cannot be a token either; the parser says so (malformed_token).
    let text = String::from_utf8_lossy(&bytes);
    Ok(strip_one_newline(&text).to_owned())
}

/// `tok\n` and `tok\r\n` are `tok`; `tok\n\n`, ` tok` and `tok ` are kept as they are.
fn strip_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    let token_text = match read_token(&args.token) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("keygate: {message}");
            return 2;
        }
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
        algorithms: accepted_algorithms(&[]),
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
    let algorithms = &validation.algorithms;
    let keys = match KeySet::from_json(jwks) {
        Ok(keys) => keys,
        Err(err) => return refused(err.code(), algorithms, format!("JWKS unusable: {err}")),
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
                json!({
                    "valid": true,
                    "reason": VALID_REASON,
                    "claims": verified.claims,
                    "algorithms": algorithms,
                }),
                description,
            )
        }
        Err(err) => refused(err.code(), algorithms, format!("token refused: {err}")),
    }
}

fn refused(code: &str, algorithms: &[String], description: String) -> (Value, String) {
    (
        json!({"valid": false, "reason": code, "algorithms": algorithms}),
        description,
    )
}

/// `--at`: `now` (this machine's clock), or digits, optionally a fraction (`1300819380`,
/// `1300819380.5`); no sign, exponent, `inf` or `nan`, so a typo cannot silently become a clock
/// that never expires anything.
pub(crate) fn parse_unix_seconds(text: &str) -> Result<f64, String> {
    if text == "now" {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs_f64())
            .map_err(|_| "this machine's clock is before 1970".into());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(
            "expected `now` or seconds since the epoch, e.g. 1700000000 or 1700000000.5".into(),
        );
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
    fn only_one_trailing_line_break_is_removed() {
        assert_eq!(strip_one_newline("a.b.c\n"), "a.b.c");
        assert_eq!(strip_one_newline("a.b.c\r\n"), "a.b.c");
        assert_eq!(strip_one_newline("a.b.c"), "a.b.c");
        assert_eq!(strip_one_newline("a.b.c\n\n"), "a.b.c\n");
        assert_eq!(strip_one_newline("a.b.c\r"), "a.b.c\r");
        assert_eq!(strip_one_newline(" a.b.c\n"), " a.b.c");
    }

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
