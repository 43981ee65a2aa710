//! Strict parsing of a compact JWS (RFC 7515 §7.1) into an untrusted token.
//!
//! Nothing here checks a signature: the result is used only to pick the key manager (by `iss`)
//! and the key (by `kid`/`alg`) before [`super::verify`] decides. Parsing refuses everything a
//! second parser might read differently: extra segments, padding, non-canonical base64url,
//! duplicate member names, non-object JSON, and `crit` (no JWS extension is implemented).

use serde_json::{Map, Value};

use super::b64;
use super::error::{Malformation, TokenError, TokenPart};
use super::json;

/// Largest compact token accepted, in bytes. Generous for access tokens carrying a few KB of
/// scopes or groups, far below the point where parsing costs matter.
pub const MAX_TOKEN_BYTES: usize = 32 * 1024;
/// Largest header segment (base64url text), in bytes. Real headers are under 200 bytes; `x5c`
/// chains fit. A header that needs more is not an access token.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest signature segment: an RSA-8192 signature (1024 bytes) in base64url.
pub const MAX_SIGNATURE_BYTES: usize = 1366;
/// Deepest object/array nesting in the header (`{"jwk":{...}}` is 2).
pub const MAX_HEADER_DEPTH: usize = 4;
/// Deepest object/array nesting in the payload (`realm_access.roles` is 3).
pub const MAX_PAYLOAD_DEPTH: usize = 16;

/// A compact JWS that parsed strictly but whose signature is not checked yet.
#[derive(Debug, Clone)]
pub struct UntrustedToken {
    compact: String,
    signing_input_len: usize,
    header: Map<String, Value>,
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    signature: Vec<u8>,
}

impl UntrustedToken {
    /// Parses `header.payload.signature`. Limits: [`MAX_TOKEN_BYTES`], [`MAX_HEADER_BYTES`],
    /// [`MAX_SIGNATURE_BYTES`], [`MAX_HEADER_DEPTH`], [`MAX_PAYLOAD_DEPTH`].
    pub fn parse(compact: &str) -> Result<UntrustedToken, TokenError> {
        if compact.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                part: TokenPart::Whole,
                limit: MAX_TOKEN_BYTES,
            });
        }
        let mut segments = compact.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(malformed(TokenPart::Whole, Malformation::SegmentCount));
        };
        if header_b64.len() > MAX_HEADER_BYTES {
            return Err(TokenError::TooLarge {
                part: TokenPart::Header,
                limit: MAX_HEADER_BYTES,
            });
        }
        if signature_b64.len() > MAX_SIGNATURE_BYTES {
            return Err(TokenError::TooLarge {
                part: TokenPart::Signature,
                limit: MAX_SIGNATURE_BYTES,
            });
        }

        let header = decode_object(header_b64, TokenPart::Header, MAX_HEADER_DEPTH)?;
        if header.contains_key("crit") {
            return Err(TokenError::CritUnsupported);
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            Some(_) => return Err(malformed(TokenPart::Header, Malformation::AlgNotString)),
            None => return Err(malformed(TokenPart::Header, Malformation::MissingAlg)),
        };
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed(TokenPart::Header, Malformation::KidNotString)),
            None => None,
        };
        let claims = decode_object(payload_b64, TokenPart::Payload, MAX_PAYLOAD_DEPTH)?;
        let signature = b64::decode(signature_b64)
            .ok_or(malformed(TokenPart::Signature, Malformation::Base64))?;

        Ok(UntrustedToken {
            compact: compact.to_owned(),
            // header and payload plus the dot between them
            signing_input_len: header_b64.len() + 1 + payload_b64.len(),
            header,
            alg,
            kid,
            claims,
            signature,
        })
    }

    /// The header `alg` as written (not necessarily supported; [`super::Alg::from_name`]).
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The header `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The whole header object.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The payload claims. UNVERIFIED: use only to choose the key manager before verifying.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Moves the claims out (leaving none): for the owner of a token that has just been verified
    /// ([`super::verify_in_place`]), so they are not copied.
    pub fn take_claims(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.claims)
    }

    /// The unverified `iss` claim when it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The bytes the signature covers: `base64url(header) '.' base64url(payload)`.
    pub fn signing_input(&self) -> &[u8] {
        self.compact
            .as_bytes()
            .get(..self.signing_input_len)
            .unwrap_or_default()
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The token as received, for cache keys. Never log it.
    pub fn as_str(&self) -> &str {
        &self.compact
    }
}

fn malformed(part: TokenPart, problem: Malformation) -> TokenError {
    TokenError::Malformed { part, problem }
}

fn decode_object(
    segment: &str,
    part: TokenPart,
    max_depth: usize,
) -> Result<Map<String, Value>, TokenError> {
    if segment.is_empty() {
        return Err(malformed(part, Malformation::EmptySegment));
    }
    let bytes = b64::decode(segment).ok_or(malformed(part, Malformation::Base64))?;
    json::parse_object(&bytes, max_depth).map_err(|problem| malformed(part, problem))
}
