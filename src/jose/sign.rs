//! Signing the gateway's own JWTs (backend JWTs, docs/backend-jwt.md): ES256 with a P-256 key.
//!
//! The signature is made by the host when it can (Envoy's `sign` foreign function, BoringSSL,
//! beside `verify_signature`), else here with RustCrypto's `p256` (RFC 6979 deterministic
//! nonces, so no randomness is needed in Wasm). Both give a valid ES256 signature over the same
//! input; the host's DER `ECDSA-Sig-Value` is turned into the JWS `r || s`.
//!
//! The foreign function takes `SignArguments { string hash_function = 1; bytes private_key = 2;
//! bytes text = 3; }` (the key as DER PKCS#8) and answers `SignResult { bool result = 1; bytes
//! signature = 2; string error = 3; }`, encoded here by hand like `verify_signature`'s.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::b64;
use super::offload::{read_varint, varint, HostCrypto};

/// PKCS#8 `PrivateKeyInfo` of a P-256 key without its public key, up to the 32 bytes of `d`:
/// version 0, `id-ecPublicKey` with `prime256v1`, then a SEC1 `ECPrivateKey` (version 1, `d`).
const PKCS8_P256_PREFIX: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

/// A P-256 signing key with its public coordinates and RFC 7638 thumbprint (the `kid`).
pub struct EcSigningKey {
    secret: SigningKey,
    /// `d` as DER PKCS#8, for the host's `sign` (wiped on drop).
    pkcs8: Zeroizing<Vec<u8>>,
    pub x: String,
    pub y: String,
    pub kid: String,
}

impl std::fmt::Debug for EcSigningKey {
    /// The private key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcSigningKey({})", self.kid)
    }
}

/// Why a private key is not usable.
pub const NOT_A_P256_JWK: &str =
    "a private JWK with kty EC, crv P-256 and d (as `keygate backend-key new` prints)";

impl EcSigningKey {
    /// A key from its private JWK (`{"kty":"EC","crv":"P-256","d":...}`, `x`/`y` optional but
    /// checked when present).
    pub fn from_private_jwk(text: &str) -> Result<EcSigningKey, &'static str> {
        let jwk: Value = serde_json::from_str(text.trim()).map_err(|_| NOT_A_P256_JWK)?;
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        if member("kty") != Some("EC") || member("crv") != Some("P-256") {
            return Err(NOT_A_P256_JWK);
        }
        let d = Zeroizing::new(member("d").and_then(b64::decode).ok_or(NOT_A_P256_JWK)?);
        let key = EcSigningKey::from_scalar(&d).ok_or(NOT_A_P256_JWK)?;
        for (name, value) in [("x", &key.x), ("y", &key.y)] {
            if member(name).is_some_and(|given| given != value) {
                return Err("the JWK's x/y are not the public key of its d");
            }
        }
        Ok(key)
    }

    /// A key from the 32 bytes of its private scalar.
    pub fn from_scalar(d: &[u8]) -> Option<EcSigningKey> {
        if d.len() != 32 {
            return None;
        }
        let secret = SigningKey::from_slice(d).ok()?;
        let point = secret.verifying_key().to_encoded_point(false);
        let (x, y) = (b64::encode(point.x()?), b64::encode(point.y()?));
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(PKCS8_P256_PREFIX.len() + 32));
        pkcs8.extend_from_slice(&PKCS8_P256_PREFIX);
        pkcs8.extend_from_slice(d);
        let kid = thumbprint(&x, &y);
        Some(EcSigningKey {
            secret,
            pkcs8,
            x,
            y,
            kid,
        })
    }

    /// The private JWK (what `keygate backend-key new` prints for the environment variable).
    pub fn private_jwk(&self) -> String {
        let d = Zeroizing::new(self.secret.to_bytes());
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y, "d": b64::encode(&d)})
            .to_string()
    }

    /// The compact JWS of `header` and `payload` (JSON texts), signed by the host when it can.
    /// With it: whether the host signed.
    pub fn sign_jws(
        &self,
        header: &str,
        payload: &str,
        host: Option<&dyn HostCrypto>,
    ) -> Option<(String, bool)> {
        let mut jws = b64::encode(header.as_bytes());
        jws.push('.');
        jws.push_str(&b64::encode(payload.as_bytes()));
        let by_host = host.and_then(|h| self.host_signature(h, jws.as_bytes()));
        let (raw, hosted) = match by_host {
            Some(raw) => (raw, true),
            None => {
                let signature: Signature = self.secret.try_sign(jws.as_bytes()).ok()?;
                (signature.to_bytes().to_vec(), false)
            }
        };
        jws.push('.');
        jws.push_str(&b64::encode(&raw));
        Some((jws, hosted))
    }

    /// The host's signature as JWS `r || s`, if it made one.
    fn host_signature(&self, host: &dyn HostCrypto, message: &[u8]) -> Option<Vec<u8>> {
        let der = host.sign("sha256", &self.pkcs8, message)?;
        ecdsa_raw(&der)
    }

    /// Whether the host signs correctly with this key: its signature over a fixed message must
    /// verify here (checked once, at configuration).
    pub fn host_signs(&self, host: &dyn HostCrypto) -> bool {
        let message = b"keygate backend JWT signer self-test";
        let Some(raw) = self.host_signature(host, message) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&raw) else {
            return false;
        };
        VerifyingKey::from(&self.secret)
            .verify(message, &signature)
            .is_ok()
    }
}

/// The RFC 7638 thumbprint of the P-256 public key `x`, `y` (base64url).
pub fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

/// Whether `x`, `y` (base64url) are a point of P-256.
pub fn is_p256_point(x: &str, y: &str) -> bool {
    let (Some(x), Some(y)) = (b64::decode(x), b64::decode(y)) else {
        return false;
    };
    if x.len() != 32 || y.len() != 32 {
        return false;
    }
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    p256::PublicKey::from_sec1_bytes(&sec1).is_ok()
}

/// The public JWK of a signing key as published in the gateway's JWKS.
pub fn public_jwk(x: &str, y: &str) -> Value {
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": thumbprint(x, y), "alg": "ES256", "use": "sig",
    })
}

/// The foreign function's `SignArguments`.
pub fn encode_sign_arguments(hash: &str, private_key: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hash.len() + private_key.len() + text.len() + 12);
    for (field, bytes) in [(1u8, hash.as_bytes()), (2, private_key), (3, text)] {
        out.push(field << 3 | 2);
        varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

/// The `signature` of a successful `SignResult`; `None` for a failure or bytes that are not one.
pub fn decode_sign_result(bytes: &[u8]) -> Option<Vec<u8>> {
    let (mut ok, mut signature) = (false, None);
    let mut rest = bytes;
    while let Some((&key, tail)) = rest.split_first() {
        rest = tail;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let (value, tail) = read_varint(rest)?;
                ok = value != 0;
                rest = tail;
            }
            (_, 0) => rest = read_varint(rest)?.1,
            (field, 2) => {
                let (len, tail) = read_varint(rest)?;
                let len = usize::try_from(len).ok()?;
                let value = tail.get(..len)?;
                if field == 2 {
                    signature = Some(value.to_vec());
                }
                rest = tail.get(len..)?;
            }
            _ => return None,
        }
    }
    signature.filter(|_| ok)
}

/// A DER `ECDSA-Sig-Value` (`SEQUENCE { INTEGER r, INTEGER s }`) as P-256's fixed `r || s`.
pub fn ecdsa_raw(der: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (body, tail) = der_value(rest)?;
    if !tail.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    let mut rest = body;
    for _ in 0..2 {
        let (&tag, after) = rest.split_first()?;
        if tag != 0x02 {
            return None;
        }
        let (int, after) = der_value(after)?;
        // Strip the sign byte, then left-pad to 32.
        let int = match int {
            [0, tail @ ..] => tail,
            other => other,
        };
        if int.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        rest = after;
    }
    rest.is_empty().then_some(out)
}

/// A DER length and its value: (value, what follows).
fn der_value(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn key() -> EcSigningKey {
        EcSigningKey::from_scalar(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_signed_jws_verifies_with_the_public_key() {
        let key = key();
        let (jws, hosted) = key
            .sign_jws(r#"{"alg":"ES256"}"#, r#"{"a":1}"#, None)
            .unwrap();
        assert!(!hosted);
        let parts: Vec<&str> = jws.split('.').collect();
        let signature = Signature::from_slice(&b64::decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        let public = VerifyingKey::from(&key.secret);
        assert!(public.verify(input.as_bytes(), &signature).is_ok());
        assert!(is_p256_point(&key.x, &key.y));
    }

    #[test]
    fn the_private_jwk_round_trips_and_refuses_other_keys() {
        let key = key();
        let again = EcSigningKey::from_private_jwk(&key.private_jwk()).unwrap();
        assert_eq!(
            (again.x, again.y, again.kid),
            (key.x.clone(), key.y, key.kid)
        );
        assert!(EcSigningKey::from_private_jwk(r#"{"kty":"RSA","d":"AA"}"#).is_err());
        let other = EcSigningKey::from_scalar(&[9u8; 32]).unwrap();
        let mixed = format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","d":"{}"}}"#,
            other.x,
            other.y,
            b64::encode(&[7u8; 32])
        );
        assert!(EcSigningKey::from_private_jwk(&mixed).is_err());
    }

    #[test]
    fn der_signatures_become_fixed_width() {
        let mut der = vec![0x30, 0x45, 0x02, 0x21, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 0x20]);
        der.extend([0x01; 32]);
        let raw = ecdsa_raw(&der).unwrap();
        assert_eq!(&raw[..32], &[0x80; 32]);
        assert_eq!(&raw[32..], &[0x01; 32]);
        let short = [0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x06];
        let raw = ecdsa_raw(&short).unwrap();
        assert_eq!((raw[31], raw[63], raw.len()), (5, 6, 64));
        assert!(ecdsa_raw(&[0x30, 0x03, 0x02, 0x01]).is_none());
    }

    #[test]
    fn sign_results_decode() {
        // result = true, signature = [1, 2]
        assert_eq!(
            decode_sign_result(&[0x08, 0x01, 0x12, 0x02, 1, 2]),
            Some(vec![1, 2])
        );
        assert_eq!(decode_sign_result(&[0x08, 0x00, 0x12, 0x02, 1, 2]), None);
        assert_eq!(
            encode_sign_arguments("sha256", &[9], b"t"),
            [&[0x0a, 6][..], b"sha256", &[0x12, 1, 9, 0x1a, 1], b"t"].concat()
        );
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 7638 has no EC example; RFC 9449 section 6.1 computes one over these members.
        let kid = thumbprint(
            "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        );
        assert_eq!(kid, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    }
}
