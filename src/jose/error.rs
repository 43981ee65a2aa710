//! Why a token or a key set was refused: one enum per phase, each variant with a stable code.
//!
//! Codes are used in replies, logs and metrics, so they never change once published. `Display`
//! describes the failure precisely for operators but never echoes token content beyond names that
//! are safe and short (an algorithm name, a `kid`), and those only after [`safe_label`] cleaned them.

use std::fmt;

/// Which part of the compact token a parse failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    Whole,
    Header,
    Payload,
    Signature,
}

impl TokenPart {
    fn label(self) -> &'static str {
        match self {
            TokenPart::Whole => "token",
            TokenPart::Header => "token header",
            TokenPart::Payload => "token payload",
            TokenPart::Signature => "token signature",
        }
    }
}

/// What exactly is wrong with a part of the token (or with a JWKS document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// Not exactly three dot-separated segments.
    SegmentCount,
    /// A segment is empty where content is required.
    EmptySegment,
    /// Not base64url, padded, or with non-zero trailing bits (non-canonical).
    Base64,
    /// Decoded bytes are not UTF-8.
    NotUtf8,
    /// Not valid JSON.
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// An object repeats a member name.
    DuplicateMember,
    /// Objects/arrays nested deeper than the limit.
    TooDeep,
    /// The header has no `alg`.
    MissingAlg,
    /// `alg` is not a string.
    AlgNotString,
    /// `kid` is present but not a string.
    KidNotString,
}

impl Malformation {
    fn describe(self) -> &'static str {
        match self {
            Malformation::SegmentCount => "must have exactly three dot-separated segments",
            Malformation::EmptySegment => "has an empty segment",
            Malformation::Base64 => "is not canonical unpadded base64url",
            Malformation::NotUtf8 => "is not UTF-8",
            Malformation::NotJson => "is not valid JSON",
            Malformation::NotObject => "is not a JSON object",
            Malformation::DuplicateMember => "repeats a member name",
            Malformation::TooDeep => "nests objects or arrays too deeply",
            Malformation::MissingAlg => "has no \"alg\" member",
            Malformation::AlgNotString => "has an \"alg\" that is not a string",
            Malformation::KidNotString => "has a \"kid\" that is not a string",
        }
    }
}

/// Which registered claim a claim failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
}

impl Claim {
    pub fn name(self) -> &'static str {
        match self {
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Iss => "iss",
            Claim::Aud => "aud",
        }
    }
}

/// Why a key that the token's `kid` selected may not verify this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyConflict {
    /// The key's type or curve does not fit the algorithm (e.g. HS256 with an RSA key).
    KeyType,
    /// The JWK's own `alg` names another algorithm.
    JwkAlg,
    /// The JWK's `use` is not `sig`.
    JwkUse,
    /// The JWK's `key_ops` does not include `verify`.
    JwkKeyOps,
}

impl KeyConflict {
    fn describe(self) -> &'static str {
        match self {
            KeyConflict::KeyType => "its key type or curve does not fit the token's alg",
            KeyConflict::JwkAlg => "its JWK \"alg\" names another algorithm",
            KeyConflict::JwkUse => "its JWK \"use\" is not \"sig\"",
            KeyConflict::JwkKeyOps => "its JWK \"key_ops\" does not include \"verify\"",
        }
    }
}

/// A token was refused. Variants are listed in the order verification meets them.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenError {
    /// The token (or one part) is larger than its documented limit.
    TooLarge { part: TokenPart, limit: usize },
    /// Structural problem in the compact serialization or its JSON.
    Malformed {
        part: TokenPart,
        problem: Malformation,
    },
    /// The header has a `crit` member; keygate implements no JWS extensions.
    CritUnsupported,
    /// `none` (any spelling) or an algorithm outside the configured list (`alg` as
    /// [`safe_label`] renders it).
    AlgNotAllowed { alg: String },
    /// An algorithm name keygate does not implement (`alg` as [`safe_label`] renders it).
    UnsupportedAlg { alg: String },
    /// The signature cannot be a signature of this algorithm (length, DER instead of raw r||s).
    SignatureMalformed {
        alg: &'static str,
        expected: usize,
        actual: usize,
    },
    /// No key in the set has the token's `kid`. The filter refetches the JWKS on this.
    UnknownKid { kid: String },
    /// The `kid` is in the JWKS, but every entry with it was skipped as unusable.
    KeyUnusable { kid: String },
    /// The `kid` selects keys, but none may verify this alg.
    KeyConflict {
        kid: String,
        alg: &'static str,
        conflict: KeyConflict,
    },
    /// No `kid`, and no key in the set fits the alg.
    NoMatchingKey { alg: &'static str },
    /// More keys fit than [`super::verify::MAX_KEYS_TRIED`] (without `kid`: every key of the alg's
    /// type; with one: duplicates of that `kid`), and none of the first that many verifies.
    TooManyFittingKeys {
        alg: &'static str,
        kid: Option<String>,
        fitting: usize,
    },
    /// The only keys that fit are HMAC secrets shorter than the hash output.
    KeyTooWeak { alg: &'static str },
    /// No fitting key verifies the signature.
    SignatureInvalid { alg: &'static str },
    /// A registered claim has the wrong JSON type.
    InvalidClaim { claim: Claim },
    /// `exp` is required and absent.
    MissingExp,
    /// `now` is at or past `exp` (+ leeway).
    Expired,
    /// `now` is before `nbf` (- leeway).
    NotYetValid,
    /// `iss` is absent or differs from the configured issuer.
    IssuerMismatch { missing: bool },
    /// `aud` is absent or names none of the configured audiences.
    AudienceMismatch { missing: bool },
}

impl TokenError {
    /// Stable snake_case code for replies, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Malformed { .. } => "malformed_token",
            TokenError::CritUnsupported => "crit_unsupported",
            TokenError::AlgNotAllowed { .. } => "alg_not_allowed",
            TokenError::UnsupportedAlg { .. } => "unsupported_alg",
            TokenError::SignatureMalformed { .. } => "signature_malformed",
            TokenError::UnknownKid { .. } => "unknown_kid",
            TokenError::KeyUnusable { .. } => "key_unusable",
            TokenError::KeyConflict { .. } => "key_alg_mismatch",
            TokenError::NoMatchingKey { .. } => "no_matching_key",
            TokenError::TooManyFittingKeys { .. } => "too_many_fitting_keys",
            TokenError::KeyTooWeak { .. } => "key_too_weak",
            TokenError::SignatureInvalid { .. } => "signature_invalid",
            TokenError::InvalidClaim { .. } => "invalid_claim",
            TokenError::MissingExp => "missing_exp",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuerMismatch { .. } => "issuer_mismatch",
            TokenError::AudienceMismatch { .. } => "audience_mismatch",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLarge { part, limit } => {
                write!(f, "{} is larger than {limit} bytes", part.label())
            }
            TokenError::Malformed { part, problem } => {
                write!(f, "{} {}", part.label(), problem.describe())
            }
            TokenError::CritUnsupported => {
                f.write_str("token header has \"crit\"; no JWS extension is supported")
            }
            TokenError::AlgNotAllowed { alg } => write!(f, "alg {alg} is not allowed"),
            TokenError::UnsupportedAlg { alg } => write!(f, "alg {alg} is not supported"),
            TokenError::SignatureMalformed { alg, expected, actual } => write!(
                f,
                "{alg} signature must be {expected} bytes, got {actual} (ECDSA needs raw r||s, not DER)"
            ),
            TokenError::UnknownKid { kid } => write!(f, "no key with kid {kid} in the JWKS"),
            TokenError::KeyUnusable { kid } => write!(
                f,
                "the JWKS entries with kid {kid} are unusable (unsupported type or curve, weak or malformed key)"
            ),
            TokenError::KeyConflict { kid, alg, conflict } => write!(
                f,
                "key {kid} may not verify {alg}: {}",
                conflict.describe()
            ),
            TokenError::NoMatchingKey { alg } => {
                write!(f, "token has no kid and no key in the JWKS fits {alg}")
            }
            TokenError::TooManyFittingKeys {
                alg,
                kid: None,
                fitting,
            } => write!(
                f,
                "token has no kid and {fitting} keys in the JWKS fit {alg}; only the first {} are tried",
                super::verify::MAX_KEYS_TRIED
            ),
            TokenError::TooManyFittingKeys {
                alg,
                kid: Some(kid),
                fitting,
            } => write!(
                f,
                "{fitting} keys with kid {kid} fit {alg}; only the first {} are tried",
                super::verify::MAX_KEYS_TRIED
            ),
            TokenError::KeyTooWeak { alg } => {
                write!(f, "the HMAC key is shorter than the {alg} hash output")
            }
            TokenError::SignatureInvalid { alg } => write!(f, "{alg} signature does not verify"),
            TokenError::InvalidClaim { claim } => match claim {
                Claim::Iss => f.write_str("claim iss is not a string"),
                Claim::Aud => f.write_str("claim aud is not a string or an array of strings"),
                other => write!(f, "claim {} is not a number", other.name()),
            },
            TokenError::MissingExp => f.write_str("token has no exp claim"),
            TokenError::Expired => f.write_str("token has expired (exp)"),
            TokenError::NotYetValid => f.write_str("token is not valid yet (nbf)"),
            TokenError::IssuerMismatch { missing: true } => f.write_str("token has no iss claim"),
            TokenError::IssuerMismatch { missing: false } => {
                f.write_str("token iss is not the configured issuer")
            }
            TokenError::AudienceMismatch { missing: true } => {
                f.write_str("token has no aud claim, and audiences are configured")
            }
            TokenError::AudienceMismatch { missing: false } => {
                f.write_str("token aud names none of the configured audiences")
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// A JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum KeysError {
    /// Larger than the JWKS size limit.
    TooLarge { limit: usize },
    /// Not UTF-8 JSON, duplicate member names, or nested too deeply.
    NotJson { problem: Malformation },
    /// Not an object with a `keys` array.
    NoKeys,
    /// Every entry was skipped.
    NoUsableKey { skipped: usize },
}

impl KeysError {
    /// Stable snake_case code for replies, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            KeysError::TooLarge { .. } => "jwks_too_large",
            KeysError::NotJson { .. } => "jwks_not_json",
            KeysError::NoKeys => "jwks_no_keys",
            KeysError::NoUsableKey { .. } => "jwks_no_usable_key",
        }
    }
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeysError::TooLarge { limit } => write!(f, "JWKS is larger than {limit} bytes"),
            KeysError::NotJson { problem } => write!(f, "JWKS {}", problem.describe()),
            KeysError::NoKeys => f.write_str("JWKS is not an object with a \"keys\" array"),
            KeysError::NoUsableKey { skipped } => {
                write!(f, "JWKS has no usable key ({skipped} entries skipped)")
            }
        }
    }
}

impl std::error::Error for KeysError {}

/// Makes an attacker-chosen name (alg, kid) safe to put in a log line or reply: short printable
/// ASCII is kept as is, anything else is replaced so no control characters or long blobs leak.
pub fn safe_label(raw: &str) -> String {
    const MAX: usize = 64;
    let printable = raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if !raw.is_empty() && raw.len() <= MAX && printable {
        format!("\"{raw}\"")
    } else {
        format!("(unprintable, {} bytes)", raw.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let token_errors = [
            TokenError::TooLarge {
                part: TokenPart::Whole,
                limit: 1,
            },
            TokenError::Malformed {
                part: TokenPart::Header,
                problem: Malformation::Base64,
            },
            TokenError::CritUnsupported,
            TokenError::AlgNotAllowed {
                alg: "\"none\"".into(),
            },
            TokenError::UnsupportedAlg {
                alg: "\"x\"".into(),
            },
            TokenError::SignatureMalformed {
                alg: "ES256",
                expected: 64,
                actual: 70,
            },
            TokenError::UnknownKid {
                kid: "\"k\"".into(),
            },
            TokenError::KeyUnusable {
                kid: "\"k\"".into(),
            },
            TokenError::KeyConflict {
                kid: "\"k\"".into(),
                alg: "HS256",
                conflict: KeyConflict::KeyType,
            },
            TokenError::NoMatchingKey { alg: "HS256" },
            TokenError::KeyTooWeak { alg: "HS256" },
            TokenError::SignatureInvalid { alg: "RS256" },
            TokenError::InvalidClaim { claim: Claim::Exp },
            TokenError::MissingExp,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuerMismatch { missing: true },
            TokenError::AudienceMismatch { missing: false },
        ];
        let keys_errors = [
            KeysError::TooLarge { limit: 1 },
            KeysError::NotJson {
                problem: Malformation::NotJson,
            },
            KeysError::NoKeys,
            KeysError::NoUsableKey { skipped: 2 },
        ];
        let mut codes: Vec<&str> = token_errors.iter().map(TokenError::code).collect();
        codes.extend(keys_errors.iter().map(KeysError::code));
        for code in &codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
        let count = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), count);
        for err in &token_errors {
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn labels_are_safe() {
        assert_eq!(safe_label("RS256"), "\"RS256\"");
        assert_eq!(safe_label("a\nb"), "(unprintable, 3 bytes)");
        assert_eq!(safe_label("\"quoted\""), "(unprintable, 8 bytes)");
        assert_eq!(safe_label(&"k".repeat(65)), "(unprintable, 65 bytes)");
        assert_eq!(safe_label(""), "(unprintable, 0 bytes)");
    }
}
