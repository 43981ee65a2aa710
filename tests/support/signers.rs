//! Shared test helpers: the committed test keys (tests/vectors/keys.json), real signers for
//! every algorithm (RustCrypto crates used directly, not keygate's verifier), token and JWKS
//! builders.

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

pub const NOW: f64 = 1_700_000_000.0;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

pub fn keys() -> Value {
    serde_json::from_str(include_str!("../vectors/keys.json")).unwrap()
}

pub fn private_jwk(name: &str) -> Value {
    keys()[name].clone()
}

/// The public JWK of a named test key with the given kid (private members removed).
pub fn public_jwk(name: &str, kid: &str) -> Value {
    let mut jwk = private_jwk(name);
    let obj = jwk.as_object_mut().unwrap();
    if obj["kty"] != "oct" {
        for private in ["d", "p", "q"] {
            obj.remove(private);
        }
    }
    obj.insert("kid".into(), json!(kid));
    jwk
}

pub fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn field(jwk: &Value, name: &str) -> Vec<u8> {
    unb64(jwk[name].as_str().unwrap())
}

fn rsa_private(name: &str) -> rsa::RsaPrivateKey {
    use rsa::BigUint;
    let jwk = private_jwk(name);
    let int = |n: &str| BigUint::from_bytes_be(&field(&jwk, n));
    rsa::RsaPrivateKey::from_components(int("n"), int("e"), int("d"), vec![int("p"), int("q")])
        .unwrap()
}

fn digest(hash: usize, input: &[u8]) -> Vec<u8> {
    match hash {
        256 => Sha256::digest(input).to_vec(),
        384 => Sha384::digest(input).to_vec(),
        512 => Sha512::digest(input).to_vec(),
        _ => unreachable!(),
    }
}

/// Signs `input` with the named key, for real, as `alg` prescribes.
pub fn sign(alg: &str, key: &str, input: &[u8]) -> Vec<u8> {
    let hash: usize = alg.get(2..).and_then(|h| h.parse().ok()).unwrap_or(0);
    match alg {
        "HS256" | "HS384" | "HS512" => hmac_sign(hash, &field(&private_jwk(key), "k"), input),
        "RS256" | "RS384" | "RS512" => {
            let scheme = match hash {
                256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                _ => rsa::Pkcs1v15Sign::new::<Sha512>(),
            };
            rsa_private(key).sign(scheme, &digest(hash, input)).unwrap()
        }
        "PS256" | "PS384" | "PS512" => pss_sign(key, hash, hash / 8, input),
        "ES256" => {
            use p256::ecdsa::{signature::Signer, Signature, SigningKey};
            let sk = SigningKey::from_slice(&field(&private_jwk(key), "d")).unwrap();
            let sig: Signature = sk.sign(input);
            sig.to_bytes().to_vec()
        }
        "ES384" => {
            use p384::ecdsa::{signature::Signer, Signature, SigningKey};
            let sk = SigningKey::from_slice(&field(&private_jwk(key), "d")).unwrap();
            let sig: Signature = sk.sign(input);
            sig.to_bytes().to_vec()
        }
        "ES512" => {
            use p521::ecdsa::{signature::Signer, Signature, SigningKey};
            let sk = SigningKey::from_slice(&field(&private_jwk(key), "d")).unwrap();
            let sig: Signature = sk.sign(input);
            sig.to_bytes().to_vec()
        }
        "EdDSA" => {
            use ed25519_dalek::Signer;
            let d: [u8; 32] = field(&private_jwk(key), "d").try_into().unwrap();
            ed25519_dalek::SigningKey::from_bytes(&d)
                .sign(input)
                .to_bytes()
                .to_vec()
        }
        other => panic!("no signer for {other}"),
    }
}

pub fn hmac_sign(hash: usize, secret: &[u8], input: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    match hash {
        256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        384 => {
            let mut mac = Hmac::<Sha384>::new_from_slice(secret).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<Sha512>::new_from_slice(secret).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// RSASSA-PSS with an explicit salt length (JWS requires salt = hash length).
pub fn pss_sign(key: &str, hash: usize, salt: usize, input: &[u8]) -> Vec<u8> {
    let scheme = match hash {
        256 => rsa::Pss::new_with_salt::<Sha256>(salt),
        384 => rsa::Pss::new_with_salt::<Sha384>(salt),
        _ => rsa::Pss::new_with_salt::<Sha512>(salt),
    };
    rsa_private(key)
        .sign_with_rng(&mut rand::thread_rng(), scheme, &digest(hash, input))
        .unwrap()
}

/// `base64url(header).base64url(payload)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

/// A token signed for real with the named key.
pub fn token(header: &Value, claims: &Value, key: &str) -> String {
    let alg = header["alg"].as_str().unwrap();
    let input = signing_input(header, claims);
    let sig = sign(alg, key, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Default claims: valid at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": "https://idp.example",
        "sub": "user-1",
        "aud": ["api://pets"],
        "client_id": "app-1",
        "iat": NOW - 10.0,
        "nbf": NOW - 10.0,
        "exp": NOW + 300.0,
    })
}

/// Test key name and kid for each algorithm.
pub const ALG_KEYS: [(&str, &str, &str); 13] = [
    ("HS256", "oct64", "k-oct"),
    ("HS384", "oct64", "k-oct"),
    ("HS512", "oct64", "k-oct"),
    ("RS256", "rsa2048", "k-rsa"),
    ("RS384", "rsa2048", "k-rsa"),
    ("RS512", "rsa3072", "k-rsa3072"),
    ("PS256", "rsa2048", "k-rsa"),
    ("PS384", "rsa3072", "k-rsa3072"),
    ("PS512", "rsa2048", "k-rsa"),
    ("ES256", "p256", "k-p256"),
    ("ES384", "p384", "k-p384"),
    ("ES512", "p521", "k-p521"),
    ("EdDSA", "ed25519", "k-ed"),
];

/// A JWKS with one key of every type (kids as in [`ALG_KEYS`]).
pub fn all_keys() -> Vec<Value> {
    vec![
        public_jwk("oct64", "k-oct"),
        public_jwk("rsa2048", "k-rsa"),
        public_jwk("rsa3072", "k-rsa3072"),
        public_jwk("p256", "k-p256"),
        public_jwk("p384", "k-p384"),
        public_jwk("p521", "k-p521"),
        public_jwk("ed25519", "k-ed"),
    ]
}

/// RFC 7638 thumbprint of a public JWK, computed here independently of the filter's code.
pub fn jwk_thumbprint(jwk: &Value) -> String {
    use sha2::{Digest, Sha256};
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => panic!("no thumbprint for kty {other}"),
    };
    let body: Vec<String> = members
        .iter()
        .map(|m| format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()))
        .collect();
    b64(&Sha256::digest(
        format!("{{{}}}", body.join(",")).as_bytes(),
    ))
}

/// A DPoP proof (RFC 9449 §4.2) signed for real with the named test key under `alg`.
pub fn dpop_proof(key: &str, alg: &str, claims: &Value) -> String {
    let mut jwk = public_jwk(key, "client");
    jwk.as_object_mut().unwrap().remove("kid");
    token(
        &json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}),
        claims,
        key,
    )
}

/// `ath` of an access token.
pub fn ath(token: &str) -> String {
    use sha2::{Digest, Sha256};
    b64(&Sha256::digest(token.as_bytes()))
}
