//! JSON Web Keys (RFC 7517/7518 §6, RFC 8037) and key sets as the verifier needs them.
//!
//! A JWKS comes from a key manager over the network; one odd entry (an encryption key, a curve we
//! do not implement, a 1024-bit RSA key) must not take the whole set down, so such entries are
//! skipped and counted. Only public parts are kept; private members, if a JWKS carries them, are
//! ignored. `oct` secrets are wiped from memory when dropped.

use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::alg::{Alg, KeyKind};
use super::b64;
use super::error::{KeyConflict, KeysError};
use super::json;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Deepest nesting of objects/arrays in a JWKS (`{"keys":[{"x5c":[..]}]}` is 3).
pub const MAX_JWKS_DEPTH: usize = 8;
/// Entries beyond this many are skipped (a bound on one JWKS's memory and parsing). The work one
/// token can cause is bounded separately, by [`super::verify::MAX_KEYS_TRIED`].
pub const MAX_KEYS: usize = 64;
/// RSA moduli accepted, in bits (RFC 7518 §3.3 asks for at least 2048).
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 8192;

/// An HMAC secret; never printed, zeroed on drop.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The verifying half of a key, typed by what it can verify.
pub enum KeyMaterial {
    Oct(Secret),
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for KeyMaterial {
    // p521's key type has no Debug; the kind is what logs need anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial::{:?}", self.kind())
    }
}

impl KeyMaterial {
    pub fn kind(&self) -> KeyKind {
        match self {
            KeyMaterial::Oct(_) => KeyKind::Oct,
            KeyMaterial::Rsa(_) => KeyKind::Rsa,
            KeyMaterial::P256(_) => KeyKind::P256,
            KeyMaterial::P384(_) => KeyKind::P384,
            KeyMaterial::P521(_) => KeyKind::P521,
            KeyMaterial::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

/// One usable key of a set, with the JWK members that restrict its use.
#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub usage: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub material: KeyMaterial,
    /// The DER SubjectPublicKeyInfo of RSA and EC keys, built once for host verification.
    pub spki: Option<Box<[u8]>>,
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg` (RFC 7517 §4.2-4.4: `use`, `key_ops`
    /// and `alg` restrict a key when present).
    pub fn permits(&self, alg: Alg) -> Result<(), KeyConflict> {
        if self.material.kind() != alg.key_kind() {
            return Err(KeyConflict::KeyType);
        }
        if self.alg.as_deref().is_some_and(|own| own != alg.name()) {
            return Err(KeyConflict::JwkAlg);
        }
        if self.usage.as_deref().is_some_and(|usage| usage != "sig") {
            return Err(KeyConflict::JwkUse);
        }
        if let Some(ops) = &self.key_ops {
            if !ops.iter().any(|op| op == "verify") {
                return Err(KeyConflict::JwkKeyOps);
            }
        }
        Ok(())
    }

    /// Parses one JWKS entry.
    pub fn from_value(value: &Value) -> Result<Jwk, SkipReason> {
        let obj = value.as_object().ok_or(SkipReason::NotObject)?;
        let kid = optional_string(obj, "kid").ok_or(SkipReason::BadMember)?;
        let alg = optional_string(obj, "alg").ok_or(SkipReason::BadMember)?;
        let usage = optional_string(obj, "use").ok_or(SkipReason::BadMember)?;
        let key_ops = match obj.get("key_ops") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|op| op.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(SkipReason::BadMember)?,
            ),
            Some(_) => return Err(SkipReason::BadMember),
        };
        let kty = obj
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(SkipReason::BadMember)?;
        let material = match kty {
            "RSA" => rsa_key(obj)?,
            "EC" => ec_key(obj)?,
            "OKP" => okp_key(obj)?,
            "oct" => {
                let secret = bytes_member(obj, "k")?;
                if secret.is_empty() {
                    return Err(SkipReason::WeakKey);
                }
                KeyMaterial::Oct(Secret(secret))
            }
            _ => return Err(SkipReason::UnsupportedKeyType),
        };
        Ok(Jwk {
            kid,
            alg,
            usage,
            key_ops,
            spki: super::offload::spki(&material),
            material,
        })
    }
}

/// Why a JWKS entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotObject,
    /// `kty`, `kid`, `alg`, `use` or `key_ops` missing where required or of the wrong type.
    BadMember,
    UnsupportedKeyType,
    /// EC/OKP curve keygate does not implement (Ed448, X25519, secp256k1, ...).
    UnsupportedCurve,
    /// Key bytes missing, not canonical base64url, wrong length, or not a valid key.
    MalformedKey,
    /// RSA modulus outside [`RSA_MIN_BITS`, `RSA_MAX_BITS`].
    RsaSize,
    /// Small-order Ed25519 point or empty secret.
    WeakKey,
    /// More than [`MAX_KEYS`] entries.
    TooMany,
}

impl SkipReason {
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::NotObject => "not_object",
            SkipReason::BadMember => "bad_member",
            SkipReason::UnsupportedKeyType => "unsupported_kty",
            SkipReason::UnsupportedCurve => "unsupported_crv",
            SkipReason::MalformedKey => "malformed_key",
            SkipReason::RsaSize => "rsa_size",
            SkipReason::WeakKey => "weak_key",
            SkipReason::TooMany => "too_many_keys",
        }
    }
}

/// `None` when present but not a string; `Some(None)` when absent.
fn optional_string(obj: &Map<String, Value>, name: &str) -> Option<Option<String>> {
    match obj.get(name) {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

fn bytes_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, SkipReason> {
    obj.get(name)
        .and_then(Value::as_str)
        .and_then(b64::decode)
        .ok_or(SkipReason::MalformedKey)
}

fn rsa_key(obj: &Map<String, Value>) -> Result<KeyMaterial, SkipReason> {
    let n = BigUint::from_bytes_be(&bytes_member(obj, "n")?);
    let e = BigUint::from_bytes_be(&bytes_member(obj, "e")?);
    let bits = n.bits();
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(SkipReason::RsaSize);
    }
    let key = RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS)
        .map_err(|_| SkipReason::MalformedKey)?;
    Ok(KeyMaterial::Rsa(key))
}

/// SEC1 uncompressed point `04 || x || y`, each coordinate `size` bytes.
///
/// RFC 7518 §6.2.1.2 asks for the full field size, but some key managers strip leading zero bytes
/// (a P-521 coordinate has a zero top byte about half the time); Envoy's jwt_verify_lib and jose
/// accept those, so a shorter coordinate is left-padded with zeros. A longer one is refused, even
/// with leading zeros: nothing legitimate publishes it, and the point check below catches the rest.
fn sec1_point(obj: &Map<String, Value>, size: usize) -> Result<Vec<u8>, SkipReason> {
    let x = bytes_member(obj, "x")?;
    let y = bytes_member(obj, "y")?;
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    for coordinate in [x, y] {
        let padding = size
            .checked_sub(coordinate.len())
            .ok_or(SkipReason::MalformedKey)?;
        point.resize(point.len() + padding, 0);
        point.extend_from_slice(&coordinate);
    }
    Ok(point)
}

fn ec_key(obj: &Map<String, Value>) -> Result<KeyMaterial, SkipReason> {
    let crv = obj
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(SkipReason::BadMember)?;
    // from_sec1_bytes refuses points that are not on the curve and the identity.
    let material =
        match crv {
            "P-256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(obj, 32)?)
                .map(KeyMaterial::P256),
            "P-384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(obj, 48)?)
                .map(KeyMaterial::P384),
            "P-521" => p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(obj, 66)?)
                .map(KeyMaterial::P521),
            _ => return Err(SkipReason::UnsupportedCurve),
        };
    material.map_err(|_| SkipReason::MalformedKey)
}

fn okp_key(obj: &Map<String, Value>) -> Result<KeyMaterial, SkipReason> {
    let crv = obj
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(SkipReason::BadMember)?;
    if crv != "Ed25519" {
        return Err(SkipReason::UnsupportedCurve);
    }
    let x = bytes_member(obj, "x")?;
    let x: &[u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| SkipReason::MalformedKey)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(x).map_err(|_| SkipReason::MalformedKey)?;
    if key.is_weak() {
        return Err(SkipReason::WeakKey);
    }
    Ok(KeyMaterial::Ed25519(key))
}

/// A JWKS entry that was not kept, for logs and precise errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub reason: SkipReason,
}

/// A parsed JWKS: the usable keys, and what was skipped.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
    skipped: Vec<SkippedKey>,
}

impl KeySet {
    /// Parses a JWKS document. Fails only when nothing usable is in it.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, KeysError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(KeysError::TooLarge {
                limit: MAX_JWKS_BYTES,
            });
        }
        let doc = json::parse_object(bytes, MAX_JWKS_DEPTH)
            .map_err(|problem| KeysError::NotJson { problem })?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeysError::NoKeys)?;
        let mut set = KeySet::default();
        for (index, entry) in entries.iter().enumerate() {
            let parsed = if index < MAX_KEYS {
                Jwk::from_value(entry)
            } else {
                Err(SkipReason::TooMany)
            };
            match parsed {
                Ok(key) => set.keys.push(key),
                Err(reason) => set.skipped.push(SkippedKey {
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        if set.keys.is_empty() {
            return Err(KeysError::NoUsableKey {
                skipped: set.skipped.len(),
            });
        }
        Ok(set)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a usable key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// How many entries were skipped.
    pub fn skipped(&self) -> usize {
        self.skipped.len()
    }

    /// The skipped entries, for logs.
    pub fn skipped_keys(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Whether a skipped entry had this `kid` (so an unknown kid is really an unusable key).
    pub fn skipped_kid(&self, kid: &str) -> bool {
        self.skipped.iter().any(|s| s.kid.as_deref() == Some(kid))
    }
}
