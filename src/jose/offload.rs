//! Signature checks done by the host: Envoy's BoringSSL through the `verify_signature` foreign
//! function, about 40 times faster than the same RSA or ECDSA check inside V8.
//!
//! Only RS256/384/512 and ES256/384/512 go to the host: its function takes a DER
//! SubjectPublicKeyInfo, a hash name and (for ECDSA) a DER signature, and applies PKCS#1 v1.5 to
//! RSA keys, which is what RS* means; PS* (PSS), EdDSA and HMAC stay in Wasm. Everything that
//! decides *whether* a key may verify (algorithm policy, key selection, signature length) runs
//! before, in Wasm, exactly as without the host; the host only answers "does this signature
//! verify". When it cannot answer (function missing, key or argument refused) the in-Wasm backend
//! decides, so the two paths give the same decisions (the conformance suite runs on both).
//!
//! The key's SPKI is built once, when a key set is parsed ([`spki`]); the JWS `r || s` is turned
//! into a DER `ECDSA-Sig-Value` per check ([`ecdsa_der`]). The foreign function's arguments and
//! result are two small protobuf messages, encoded and decoded here by hand:
//! `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2; bytes signature
//! = 3; bytes text = 4; }` and `VerifySignatureResult { bool result = 1; string error = 2; }`.

use rsa::traits::PublicKeyParts;

use super::alg::Alg;
use super::backends::SigCheck;
use super::jwk::{Jwk, KeyMaterial};

/// A host that can check signatures natively.
pub trait HostCrypto {
    /// Whether `signature` over `message` verifies with the DER SPKI `public_key` and the hash
    /// `hash` (`sha256`, `sha384`, `sha512`); `None` when the host cannot tell.
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Option<bool>;

    /// A signature over `message` with the DER private key `private_key` (PKCS#8) and the hash
    /// `hash`, as the host's crypto makes it (DER `ECDSA-Sig-Value` for EC keys); `None` when the
    /// host cannot sign (then the signer in Wasm does).
    fn sign(&self, _hash: &str, _private_key: &[u8], _message: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// RFC 7515 Appendix A.3 (ES256): a published key and token.
const KAT_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
const KAT_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// Whether `host` checks signatures correctly: the published RFC 7515 A.3 signature must verify
/// and the same signature over a changed message must not. The filter uses the host only when
/// this holds (checked once, at configuration).
pub fn host_is_sound(host: &dyn HostCrypto) -> bool {
    let Some(key) = serde_json::from_str(KAT_JWK)
        .ok()
        .and_then(|jwk| Jwk::from_value(&jwk).ok())
    else {
        return false;
    };
    let Ok(token) = super::token::UntrustedToken::parse(KAT_TOKEN) else {
        return false;
    };
    let message = token.signing_input();
    let mut altered = message.to_vec();
    if let Some(last) = altered.last_mut() {
        *last ^= 1;
    }
    let good = check(host, Alg::Es256, &key, message, token.signature());
    let bad = check(host, Alg::Es256, &key, &altered, token.signature());
    good == Some(SigCheck::Valid) && bad == Some(SigCheck::Invalid)
}

/// The host's answer for one check, or `None` to check in Wasm.
pub(crate) fn check(
    host: &dyn HostCrypto,
    alg: Alg,
    key: &Jwk,
    message: &[u8],
    signature: &[u8],
) -> Option<SigCheck> {
    let spki = key.spki.as_deref()?;
    let (hash, der);
    let signature = match (alg, &key.material) {
        (Alg::Rs256 | Alg::Rs384 | Alg::Rs512, KeyMaterial::Rsa(rsa)) => {
            // A wrong length is reported precisely by the Wasm backend.
            if signature.len() != rsa.size() {
                return None;
            }
            hash = hash_name(alg)?;
            signature
        }
        (Alg::Es256, KeyMaterial::P256(_))
        | (Alg::Es384, KeyMaterial::P384(_))
        | (Alg::Es512, KeyMaterial::P521(_)) => {
            hash = hash_name(alg)?;
            der = ecdsa_der(signature)?;
            &der
        }
        _ => return None,
    };
    let valid = host.verify_signature(hash, spki, signature, message)?;
    Some(if valid {
        SigCheck::Valid
    } else {
        SigCheck::Invalid
    })
}

fn hash_name(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::Rs256 | Alg::Es256 => Some("sha256"),
        Alg::Rs384 | Alg::Es384 => Some("sha384"),
        Alg::Rs512 | Alg::Es512 => Some("sha512"),
        _ => None,
    }
}

/// The DER SubjectPublicKeyInfo of an RSA or EC key (`None` for other kinds).
pub(crate) fn spki(material: &KeyMaterial) -> Option<Box<[u8]>> {
    const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
    let (algorithm, key) = match material {
        KeyMaterial::Rsa(rsa) => {
            let mut fields = integer(&rsa.n().to_bytes_be());
            fields.extend(integer(&rsa.e().to_bytes_be()));
            (RSA_ENCRYPTION.to_vec(), tlv(0x30, &fields))
        }
        KeyMaterial::P256(key) => (
            [EC_PUBLIC_KEY, P256].concat(),
            key.to_encoded_point(false).as_bytes().to_vec(),
        ),
        KeyMaterial::P384(key) => (
            [EC_PUBLIC_KEY, P384].concat(),
            key.to_encoded_point(false).as_bytes().to_vec(),
        ),
        KeyMaterial::P521(key) => (
            [EC_PUBLIC_KEY, P521].concat(),
            key.to_encoded_point(false).as_bytes().to_vec(),
        ),
        KeyMaterial::Oct(_) | KeyMaterial::Ed25519(_) => return None,
    };
    let mut bits = vec![0x00];
    bits.extend(key);
    let mut body = tlv(0x30, &algorithm);
    body.extend(tlv(0x03, &bits));
    Some(tlv(0x30, &body).into_boxed_slice())
}

/// A JWS ECDSA signature (`r || s`, equal halves) as DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub(crate) fn ecdsa_der(signature: &[u8]) -> Option<Vec<u8>> {
    if signature.is_empty() || !signature.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut fields = integer(r);
    fields.extend(integer(s));
    Some(tlv(0x30, &fields))
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = bytes.get(start..).unwrap_or_default();
    let mut value = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0x00);
    }
    value.extend_from_slice(digits);
    tlv(0x02, &value)
}

/// Tag, DER length, value.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// The foreign function's `VerifySignatureArguments`.
pub fn encode_arguments(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(hash.len() + public_key.len() + signature.len() + text.len() + 16);
    for (field, bytes) in [
        (1u8, hash.as_bytes()),
        (2, public_key),
        (3, signature),
        (4, text),
    ] {
        out.push(field << 3 | 2);
        varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

pub(crate) fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `result` of a `VerifySignatureResult`; `None` when the bytes are not one.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut result = false;
    let mut rest = bytes;
    while let Some((&key, tail)) = rest.split_first() {
        rest = tail;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let (value, tail) = read_varint(rest)?;
                result = value != 0;
                rest = tail;
            }
            (_, 0) => rest = read_varint(rest)?.1,
            (_, 2) => {
                let (len, tail) = read_varint(rest)?;
                rest = tail.get(usize::try_from(len).ok()?..)?;
            }
            _ => return None,
        }
    }
    Some(result)
}

pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(integer(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0x00, 0x00]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn ecdsa_signatures_become_der_sequences() {
        let mut sig = vec![0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0xff; // s has its high bit set
        let der = ecdsa_der(&sig).unwrap_or_default();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        assert_eq!(&tlv(0x04, &[0; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn arguments_and_result_round_trip_the_wire_format() {
        let args = encode_arguments("sha256", &[1, 2], &[3], b"t");
        assert_eq!(
            args,
            vec![
                0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 1,
                b't'
            ]
        );
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(
            decode_result(&[0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd']),
            Some(false)
        );
        assert_eq!(decode_result(&[]), Some(false));
        assert_eq!(decode_result(&[0x12, 0x09, b'x']), None);
    }
}
