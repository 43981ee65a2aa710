//! JWK thumbprints (RFC 7638): the SHA-256 of a key's required members, which is what a DPoP-bound
//! access token names in `cnf.jkt` (RFC 9449 §6.1).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jose::b64;

/// The required members of each key type, in the lexicographic order the hash input uses
/// (RFC 7638 §3.2; RFC 8037 §2 for OKP).
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "RSA" => Some(&["e", "kty", "n"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        _ => None,
    }
}

/// The base64url SHA-256 thumbprint of a public JWK, or `None` when its `kty` is not an
/// asymmetric type or a required member is missing or not a string. Members other than the
/// required ones (`kid`, `alg`, `use`, ...) do not change it.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let members = required_members(kty)?;
    // `{"crv":"P-256","kty":"EC",...}`: no whitespace, members in order, each value a JSON
    // string exactly as JSON escapes it (serde_json's string encoding).
    let mut input = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            input.push(',');
        }
        input.push_str(&Value::String((*name).to_string()).to_string());
        input.push(':');
        input.push_str(&Value::String(value.to_string()).to_string());
    }
    input.push('}');
    Some(b64::encode(&Sha256::digest(input.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// RFC 7638 §3.1: the example RSA key and its published thumbprint.
    #[test]
    fn rfc7638_section_3_1_example() {
        let jwk = object(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }));
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn optional_members_do_not_count_and_required_ones_do() {
        let base = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"});
        let plain = thumbprint(&object(base.clone()));
        let mut decorated = object(base);
        decorated.insert("kid".into(), json!("k1"));
        decorated.insert("use".into(), json!("sig"));
        assert!(plain.is_some());
        assert_eq!(thumbprint(&decorated), plain);
        decorated.insert("y".into(), json!("BBBC"));
        assert_ne!(thumbprint(&decorated), plain);
    }

    #[test]
    fn refuses_symmetric_unknown_and_incomplete_keys() {
        assert_eq!(
            thumbprint(&object(json!({"kty": "oct", "k": "AAAA"}))),
            None
        );
        assert_eq!(
            thumbprint(&object(json!({"kty": "EC", "crv": "P-256", "x": "AA"}))),
            None
        );
        assert_eq!(
            thumbprint(&object(json!({"kty": "RSA", "n": "AA", "e": 3}))),
            None
        );
        assert_eq!(
            thumbprint(&object(json!({"crv": "Ed25519", "x": "AA"}))),
            None
        );
        assert!(thumbprint(&object(json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}))).is_some());
    }
}
