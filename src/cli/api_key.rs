//! `keygate api-key new [--name NAME] [--expires RFC3339|UNIX]`: a new API key, printed once.
//!
//! The key is `kg_` followed by the base64url (no padding) of 32 bytes from the operating
//! system's random number generator. Only its SHA-256 (64 lower-case hex digits of the hash of the
//! whole key string, `kg_` included) goes into the declaration: stdout's first line is the key,
//! then the YAML entry to add under `applications[].api_keys`. Exit status: 0, or 2 for a bad
//! argument or when the random number generator fails.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::Expiry;
use crate::policy::api_keys::{expiry_seconds, hash_hex, hash_key, API_KEY_PREFIX};

/// Random bytes in a key.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a new API key (shown only this once) and the `applications[].api_keys` entry.
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The key's name (sent upstream in `<prefix>api-key`); default `key-` and the hash's first
    /// 8 hex digits.
    #[arg(long)]
    pub name: Option<String>,
    /// When the key stops being accepted: an RFC 3339 date-time (`2027-01-31T00:00:00Z`) or Unix
    /// seconds; omitted: never.
    #[arg(long, value_name = "RFC3339|UNIX")]
    pub expires: Option<String>,
}

/// Runs the subcommand and returns the process exit code.
pub fn run(command: Command) -> i32 {
    match command {
        Command::New(args) => match new_key(&args) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(message) => {
                eprintln!("keygate: {message}");
                2
            }
        },
    }
}

/// A fresh key string.
pub fn generate_key() -> Result<String, String> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::getrandom(&mut bytes)
        .map_err(|err| format!("the system random number generator failed: {err}"))?;
    Ok(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The key line and the entry, or what is wrong with the arguments.
fn new_key(args: &NewArgs) -> Result<String, String> {
    let expires = match &args.expires {
        None => None,
        Some(text) => {
            let expiry = match text.parse::<u64>() {
                Ok(seconds) => Expiry::Unix(seconds),
                Err(_) => Expiry::Text(text.clone()),
            };
            if expiry_seconds(&expiry).is_none() {
                return Err(format!(
                    "--expires {text:?}: an RFC 3339 date-time (2027-01-31T00:00:00Z) or Unix seconds"
                ));
            }
            Some(expiry)
        }
    };
    if let Some(name) = &args.name {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err("--name: a non-empty name without control characters".into());
        }
    }
    let key = generate_key()?;
    let hash = hash_hex(&hash_key(&key));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("key-{}", hash.get(..8).unwrap_or_default()));
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let mut out = format!(
        "{key}\n# The key above is shown only now: keygate keeps only its SHA-256.\n\
         # Add this entry under applications[].api_keys:\n- name: {}\n  sha256: {hash}\n",
        quote(&name)
    );
    match expires {
        Some(Expiry::Unix(seconds)) => out.push_str(&format!("  expires: {seconds}\n")),
        Some(Expiry::Text(text)) => out.push_str(&format!("  expires: {}\n", quote(&text))),
        None => {}
    }
    Ok(out)
}
