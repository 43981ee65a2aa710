//! Reading (not verifying) JWT parts in tests: the header and claims of a compact JWS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

fn decode_part(token: &str, index: usize) -> serde_json::Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("token has no part {index}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("token part {index} is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("token part {index} is not JSON: {e}"))
}

/// The JOSE header (`alg`, `kid`, `typ`).
pub fn decode_jwt_header(token: &str) -> serde_json::Value {
    decode_part(token, 0)
}

/// The claims, unverified: for asserting what a key manager issued.
pub fn decode_jwt_claims(token: &str) -> serde_json::Value {
    decode_part(token, 1)
}
