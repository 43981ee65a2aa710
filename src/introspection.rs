//! Opaque access tokens checked at a key manager's introspection endpoint (RFC 7662), as plain
//! data: which tokens are opaque, the call's body and client credentials, what an answer means,
//! and the record the workers share in a cache entry. The worker (`crate::worker`) moves the bytes.
//!
//! The token itself is never a key or a value of anything kept: the cache is addressed by the
//! SHA-256 of the token ([`TokenHash`]), and the secret is read from the filter's environment into
//! [`Credentials`], whose `Debug` does not show it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, ConfigErrors, ConfigProblem};
use crate::jose::parse_object;
use crate::jose::token::MAX_PAYLOAD_DEPTH;
use crate::policy::KeyManagerId;
use crate::policy::Policy;

/// Whether a bearer token is not a compact JWS (three dot-separated parts): such a token is
/// opaque and can only be checked by the key manager that issued it.
pub fn is_opaque(token: &str) -> bool {
    token.split('.').count() != 3
}

/// SHA-256 of a token: what the introspection cache is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash of a token asked of some key managers only (an API's `key_managers`): the token
    /// and the indices asked, so an answer found by one set is never taken for another's.
    pub fn of_asked(token: &str, asked: &[KeyManagerId]) -> TokenHash {
        let mut hasher = Sha256::new();
        hasher.update(token.as_bytes());
        for km in asked {
            hasher.update(b"\0");
            hasher.update(km.index().to_string().as_bytes());
        }
        TokenHash(hasher.finalize().into())
    }

    /// Lower-case hex, as stored in a cache record.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The shared cache entry (of `entries`) this token's answer lives in.
    pub fn entry(&self, entries: usize) -> usize {
        let mut first = [0u8; 8];
        first.copy_from_slice(self.0.get(..8).unwrap_or(&[0; 8]));
        let n = u64::from_be_bytes(first);
        usize::try_from(n % u64::try_from(entries.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell hashes apart in a test failure.
        write!(
            f,
            "TokenHash({}…)",
            self.hex().get(..12).unwrap_or_default()
        )
    }
}

/// The shared-data key of cache entry `entry` (active answers only).
pub fn entry_key(entry: usize) -> String {
    format!("keygate.introspection.{entry}")
}

/// The shared-data key of entry `entry` of the separate area for everything but active answers
/// (inactive answers, failures, the lease of a call in flight).
pub fn negative_entry_key(entry: usize) -> String {
    format!("keygate.introspection.negative.{entry}")
}

/// The gateway's client credentials at one key manager: the `Authorization` value of the call.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    authorization: String,
}

impl Credentials {
    /// HTTP Basic with the client id and secret form-urlencoded first (RFC 6749 §2.3.1), as
    /// RFC 7662 §2.1 asks of a protected resource that authenticates as a client.
    pub fn new(client_id: &str, secret: &str) -> Credentials {
        let pair = format!("{}:{}", form_urlencode(client_id), form_urlencode(secret));
        Credentials {
            authorization: format!("Basic {}", STANDARD.encode(pair)),
        }
    }

    pub fn authorization(&self) -> &str {
        &self.authorization
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Every key manager's credentials, by key manager index (`None`: no introspection there).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_key_manager: Vec<Option<Credentials>>,
}

impl Secrets {
    /// Reads each `client_secret_env` through `env` (the filter passes `std::env::var`, which in
    /// Envoy is the Wasm VM's environment). A variable that is unset or empty refuses the
    /// configuration, naming the field; the value never appears in the error.
    pub fn from_env(
        policy: &Policy,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secrets, ConfigErrors> {
        let mut errors = Vec::new();
        let mut by_key_manager = Vec::with_capacity(policy.key_managers().len());
        for (i, km) in policy.key_managers().iter().enumerate() {
            let Some(introspection) = &km.introspection else {
                by_key_manager.push(None);
                continue;
            };
            let variable = &introspection.client_secret_env;
            match env(variable).filter(|secret| !secret.is_empty()) {
                Some(secret) => {
                    by_key_manager.push(Some(Credentials::new(&introspection.client_id, &secret)))
                }
                None => {
                    errors.push(ConfigError::new(
                        format!("key_managers[{i}].introspection.client_secret_env"),
                        ConfigProblem::SecretNotSet {
                            variable: variable.clone(),
                        },
                    ));
                    by_key_manager.push(None);
                }
            }
        }
        match ConfigErrors::from_vec(errors) {
            Some(errors) => Err(errors),
            None => Ok(Secrets { by_key_manager }),
        }
    }

    pub fn get(&self, key_manager: KeyManagerId) -> Option<&Credentials> {
        self.by_key_manager.get(key_manager.index())?.as_ref()
    }
}

/// `application/x-www-form-urlencoded` for one value: letters, digits and `*-._` as they are,
/// space as `+`, every other byte `%XX`.
pub fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The body of the introspection request (RFC 7662 §2.1).
pub fn request_body(token: &str) -> String {
    format!(
        "token={}&token_type_hint=access_token",
        form_urlencode(token)
    )
}

/// What one key manager said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `active: true`, with the other members of the answer as the token's claims.
    Active(Map<String, Value>),
    /// `active: false`: expired, revoked, unknown, or not for this client to know.
    Inactive,
}

/// Why an introspection call gave no answer to go by (the request is answered 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// No response at all, or one Envoy made up (timeout, connection refused or reset).
    Unreachable,
    /// A status other than 200 (the key manager refused the gateway's credentials, failed, ...).
    Status(u32),
    /// Larger than `settings.introspection_max_bytes`.
    TooLarge,
    /// Not a strict JSON object (no member named twice at any depth, bounded nesting) with a
    /// boolean `active`.
    Malformed,
    /// The host refused to start the call (no such cluster).
    NotStarted,
    /// Not started: the introspection calls of this second are spent
    /// (`settings.introspection_calls_per_second`, `introspection_worker_calls_per_second`).
    Throttled,
}

impl CallFailure {
    pub fn code(&self) -> &'static str {
        match self {
            CallFailure::Unreachable => "introspection_unreachable",
            CallFailure::Status(_) => "introspection_status",
            CallFailure::TooLarge => "introspection_too_large",
            CallFailure::Malformed => "introspection_malformed",
            CallFailure::NotStarted => "introspection_not_started",
            CallFailure::Throttled => "introspection_throttled",
        }
    }
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::Unreachable => f.write_str("no answer (unreachable or timed out)"),
            CallFailure::Status(status) => write!(f, "answered HTTP {status}"),
            CallFailure::TooLarge => f.write_str("answer too large"),
            CallFailure::Malformed => f.write_str(
                "answer is not a strict JSON object (no repeated members) with a boolean `active`",
            ),
            CallFailure::NotStarted => f.write_str("call could not be started"),
            CallFailure::Throttled => {
                f.write_str("call not started: this second's calls are spent")
            }
        }
    }
}

/// How deep an introspection answer may nest (as a token's payload may).
pub const MAX_ANSWER_DEPTH: usize = MAX_PAYLOAD_DEPTH;

/// Reads an introspection response body with status `status` (RFC 7662 §2.2), as strictly as a
/// token's payload ([`parse_object`]): a member named twice at any depth, or nesting deeper than
/// [`MAX_ANSWER_DEPTH`], refuses the answer (a failed call, never "inactive").
pub fn parse_answer(status: u32, body: &[u8]) -> Result<Answer, CallFailure> {
    if status != 200 {
        return Err(CallFailure::Status(status));
    }
    let Ok(mut members) = parse_object(body, MAX_ANSWER_DEPTH) else {
        return Err(CallFailure::Malformed);
    };
    match members.remove("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(members)),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(CallFailure::Malformed),
    }
}

/// One shared cache entry: the token hash it is about, and what is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntrospectionEntry {
    /// [`TokenHash::hex`] of the token.
    pub hash: String,
    /// Milliseconds since the epoch until which the state holds.
    pub until_ms: u64,
    pub state: EntryState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryState {
    /// A worker is asking the key managers (a lease: others wait instead of calling too).
    Pending { worker: u64 },
    /// Key manager `key_manager` (by name) said active, with these claims.
    Active {
        key_manager: String,
        claims: Map<String, Value>,
    },
    /// Every key manager asked said inactive.
    Inactive,
    /// A call failed and no key manager said active: 503 until `until_ms`.
    Failed,
}

impl IntrospectionEntry {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<IntrospectionEntry> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether this record is about `hash` and still holds at `now_ms`.
    pub fn holds_for(&self, hash: &TokenHash, now_ms: u64) -> bool {
        now_ms < self.until_ms && self.hash == hash.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_three_part_tokens_are_jws() {
        assert!(!is_opaque("a.b.c"));
        assert!(is_opaque("Lx8wOE7k1Ps0qHUdzy2Gf3CGqfoB6Nzm4cJmF9Mr2hx"));
        assert!(is_opaque("a.b"));
        assert!(is_opaque("a.b.c.d.e"));
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1: "client id:secret" of `a b` and `p:ä%` is `a+b:p%3A%C3%A4%25`.
        let c = Credentials::new("a b", "p:ä%");
        let expected = format!("Basic {}", STANDARD.encode("a+b:p%3A%C3%A4%25"));
        assert_eq!(c.authorization(), expected);
        assert!(!format!("{c:?}").contains("p%3A"));
    }

    #[test]
    fn request_body_escapes_the_token() {
        assert_eq!(
            request_body("ab+/=~"),
            "token=ab%2B%2F%3D%7E&token_type_hint=access_token"
        );
    }

    #[test]
    fn answers() {
        let active = parse_answer(200, br#"{"active":true,"client_id":"c","exp":5}"#).unwrap();
        let Answer::Active(claims) = active else {
            panic!("active expected")
        };
        assert_eq!(claims.get("client_id"), Some(&json!("c")));
        assert!(!claims.contains_key("active"));
        assert_eq!(
            parse_answer(200, br#"{"active":false}"#),
            Ok(Answer::Inactive)
        );
        for bad in [
            &b"{}"[..],
            b"[]",
            b"{\"active\":\"true\"}",
            b"not json",
            b"",
        ] {
            assert_eq!(parse_answer(200, bad), Err(CallFailure::Malformed));
        }
        assert_eq!(
            parse_answer(401, br#"{"error":"invalid_client"}"#),
            Err(CallFailure::Status(401))
        );
    }

    #[test]
    fn answers_are_parsed_as_strictly_as_tokens() {
        // Duplicate members at any depth: serde_json would keep the last one.
        for bad in [
            &br#"{"active":false,"client_id":"c","active":true}"#[..],
            br#"{"active":true,"scope":"a","scope":"b"}"#,
            br#"{"active":true,"cnf":{"jkt":"a","jkt":"b"}}"#,
            br#"{"active":true,"x":[{"a":1,"a":2}]}"#,
        ] {
            assert_eq!(parse_answer(200, bad), Err(CallFailure::Malformed));
        }
        // Nesting is bounded too.
        let deep = format!(
            r#"{{"active":true,"x":{}1{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert_eq!(
            parse_answer(200, deep.as_bytes()),
            Err(CallFailure::Malformed)
        );
        let nested = br#"{"active":true,"cnf":{"jkt":"a"},"x":[{"a":1}]}"#;
        assert!(matches!(parse_answer(200, nested), Ok(Answer::Active(_))));
    }

    #[test]
    fn records_round_trip_and_hold_for_their_token_only() {
        let hash = TokenHash::of("tok");
        let record = IntrospectionEntry {
            hash: hash.hex(),
            until_ms: 10,
            state: EntryState::Active {
                key_manager: "km".into(),
                claims: Map::new(),
            },
        };
        let back = IntrospectionEntry::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert!(back.holds_for(&hash, 9));
        assert!(!back.holds_for(&hash, 10));
        assert!(!back.holds_for(&TokenHash::of("other"), 9));
        assert!(!String::from_utf8(record.to_bytes())
            .unwrap()
            .contains("tok\""));
        assert!(hash.entry(16) < 16);
    }
}
