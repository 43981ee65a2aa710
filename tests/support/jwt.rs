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

/// A DPoP client key (P-256, ES256) made by the test, and proofs (RFC 9449 §4.2) signed with it.
pub struct DpopKey {
    key: p256::ecdsa::SigningKey,
}

impl DpopKey {
    /// A fresh random key.
    pub fn generate() -> DpopKey {
        DpopKey {
            key: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// The public JWK the proofs carry.
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        })
    }

    /// RFC 7638 thumbprint of [`DpopKey::jwk`], computed here (not by the filter's code).
    pub fn thumbprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for `htm` `htu` made at `iat`, for `access_token` when given (`ath`).
    pub fn proof(&self, htm: &str, htu: &str, iat: u64, access_token: Option<&str>) -> String {
        let mut claims = serde_json::json!({
            "jti": random_jti(),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = serde_json::json!(ath(token));
        }
        self.sign(&claims)
    }

    /// Signs arbitrary proof claims (header `typ: dpop+jwt`, `alg: ES256`, this key's `jwk`).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        use p256::ecdsa::signature::Signer;
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// `base64url(SHA-256(token))`.
pub fn ath(token: &str) -> String {
    use sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

fn random_jti() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
