//! One DPoP proof checked against the request it came with (RFC 9449 §4.3): a compact JWS whose
//! header carries the client's public key, signed with the matching private key, naming the
//! request's method (`htm`) and URI (`htu`), when it was made (`iat`), a unique id (`jti`) and
//! the hash of the access token it accompanies (`ath`).
//!
//! Checks run cheapest first; the signature is checked before any claim is judged, so a claim
//! reason is only reported for a proof that is genuinely signed by its key. What is left for the
//! caller: that the token's `cnf.jkt` is the proof key's thumbprint and that the `jti` is new
//! (shared state, `super::replay`).

use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::DpopError;
use super::flat::{self, Claims};
use super::htu;
use super::thumbprint::thumbprint;
use crate::jose::token::{MAX_HEADER_BYTES, MAX_SIGNATURE_BYTES, MAX_TOKEN_BYTES};
use crate::jose::{b64, signature_valid, signed_by, Alg, HostCrypto, Jwk, UntrustedToken};

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; §6.4 for `oct`).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the gateway accepts in proofs.
#[derive(Debug, Clone, Copy)]
pub struct ProofRules<'a> {
    /// Accepted `alg` values (asymmetric only; the compiler guarantees it).
    pub algorithms: &'a [String],
    /// How old `iat` may be, seconds.
    pub max_age_seconds: u64,
    /// How far in the future `iat` may be (client clocks run ahead), seconds.
    pub future_skew_seconds: u64,
}

/// The request a proof must describe.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// `:method`.
    pub method: &'a str,
    /// The URIs the request may be named by, normalized by [`htu::request_uri`]: the gateway's
    /// configured origins with the request's path (never the client's `Host` or `:scheme`);
    /// empty: no `htu` matches.
    pub uris: &'a [String],
    /// The access token presented with the proof (for `ath`).
    pub access_token: &'a str,
}

/// A proof whose signature and claims passed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key.
    pub jkt: String,
    pub jti: String,
    pub iat: f64,
}

/// `base64url(SHA-256(token))`, the `ath` of a proof that accompanies `token`.
pub fn access_token_hash(token: &str) -> String {
    ath_memo::recall(token).unwrap_or_else(|| {
        let ath = b64::encode(&Sha256::digest(token.as_bytes()));
        ath_memo::remember(token, &ath);
        ath
    })
}

/// Whether two texts are equal, compared eight bytes at a time: the memos below compare whole
/// tokens and headers on every proof, and in Wasm the byte-wise `memcmp` made that a tenth of a
/// DPoP request's own work (`docs/performance.md`); the verified-token cache compares the whole
/// token on every hit the same way.
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let words = x.by_ref().zip(y.by_ref()).all(|(p, q)| {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        word(p) == word(q)
    });
    words && x.remainder() == y.remainder()
}

/// The `ath` of recent tokens. A DPoP client sends one access token with every proof, and in Wasm
/// hashing a 1 KB token was a fifth of a DPoP request's own cost (`docs/performance.md`). A small
/// direct-mapped table per thread (a worker is one thread): the slot is chosen by the token's last
/// characters (its signature, so spread out), an entry is used only for the identical token, and
/// a newer token takes the slot. About 70 KB for 1 KB tokens, 260 KB at most.
mod ath_memo {
    use std::cell::RefCell;

    use crate::dpop::memo::{self, Memo};

    const SLOTS: usize = 64;
    /// Longer tokens are hashed every time (the memo stays under 64 × 4 KB).
    const MAX_TOKEN: usize = 4_096;

    thread_local! {
        /// A token and its `ath`.
        static MEMO: RefCell<Memo<(Box<str>, String), SLOTS>> = const { RefCell::new(Memo::new()) };
    }

    fn slot(token: &str) -> usize {
        let tail = token.as_bytes().iter().rev().take(2);
        tail.fold(0usize, |acc, &b| {
            acc.wrapping_mul(31).wrapping_add(usize::from(b))
        })
    }

    pub(super) fn recall(token: &str) -> Option<String> {
        memo::recall(&MEMO, slot(token), |(seen, ath)| {
            super::same_text(seen, token).then(|| ath.clone())
        })
    }

    pub(super) fn remember(token: &str, ath: &str) {
        if token.len() <= MAX_TOKEN {
            memo::remember(&MEMO, slot(token), (token.into(), ath.to_string()));
        }
    }
}

/// The proof keys of recent proof headers (see [`verify_proof`]): 16 direct-mapped slots per
/// thread, chosen by a hash of the header text, an entry used only for the identical text.
mod key_memo {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::dpop::memo::{self, Memo};
    use crate::jose::{Alg, Jwk};

    const SLOTS: usize = 16;

    /// A proof header's text (one that passed every header check), its `alg`, its key and the
    /// key's thumbprint.
    type Seen = (Box<str>, Alg, Rc<Jwk>, String);

    thread_local! {
        static MEMO: RefCell<Memo<Seen, SLOTS>> = const { RefCell::new(Memo::new()) };
    }

    pub(super) fn recall(header: &str) -> Option<(Alg, Rc<Jwk>, String)> {
        memo::recall(&MEMO, memo::fnv(header), |(seen, alg, key, jkt)| {
            super::same_text(seen, header).then(|| (*alg, Rc::clone(key), jkt.clone()))
        })
    }

    pub(super) fn remember(header: &str, alg: Alg, key: &Rc<Jwk>, jkt: &str) {
        let seen = (header.into(), alg, Rc::clone(key), jkt.to_string());
        memo::remember(&MEMO, memo::fnv(header), seen);
    }
}

/// Checks `proof` (the `DPoP` header value) for `target` at `now` (seconds since the epoch).
pub fn verify_proof(
    proof: &str,
    target: &ProofTarget<'_>,
    rules: &ProofRules<'_>,
    now: f64,
    host: Option<&dyn HostCrypto>,
) -> Result<VerifiedProof, DpopError> {
    match known_header(proof, target, rules, now, host) {
        Some(decided) => decided,
        None => full_check(proof, target, rules, now, host),
    }
}

/// The common case, decided without a JSON tree: a proof whose header text is one the full check
/// passed before (the key memo: a client signs every proof with one key, so its header repeats)
/// and whose payload is a flat object of plain members ([`flat::claims`]). The same checks run in
/// the same order on the same values as in [`full_check`]; `None` (an unknown header, anything
/// unusual in the payload, an `alg` the rules no longer allow) leaves the proof to it.
pub(super) fn known_header(
    proof: &str,
    target: &ProofTarget<'_>,
    rules: &ProofRules<'_>,
    now: f64,
    host: Option<&dyn HostCrypto>,
) -> Option<Result<VerifiedProof, DpopError>> {
    if proof.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut parts = proof.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if header.len() > MAX_HEADER_BYTES || signature.len() > MAX_SIGNATURE_BYTES {
        return None;
    }
    let (alg, key, jkt) = key_memo::recall(header)?;
    if !rules.algorithms.iter().any(|a| a == alg.name()) || key.permits(alg).is_err() {
        return None;
    }
    let payload_bytes = b64::decode(payload)?;
    let claims = flat::claims(&payload_bytes)?;
    let signature = b64::decode(signature)?;
    let message = proof.as_bytes().get(..header.len() + 1 + payload.len())?;
    if !signature_valid(message, &signature, alg, &key, host) {
        return Some(Err(DpopError::SignatureInvalid));
    }
    Some(judge(&claims, jkt, target, rules, now))
}

/// The whole check, from the parsed token.
pub(super) fn full_check(
    proof: &str,
    target: &ProofTarget<'_>,
    rules: &ProofRules<'_>,
    now: f64,
    host: Option<&dyn HostCrypto>,
) -> Result<VerifiedProof, DpopError> {
    let token = UntrustedToken::parse(proof).map_err(|err| DpopError::ProofMalformed {
        reason: err.to_string(),
    })?;
    let header = token.header();
    let typ = header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Media types compare case-insensitively and may omit "application/" (RFC 7515 §4.1.9).
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(DpopError::TypInvalid);
    }
    let refused = || DpopError::AlgNotAllowed {
        alg: crate::jose::safe_label(token.alg()),
    };
    let alg = Alg::from_name(token.alg()).map_err(|_| refused())?;
    if alg.is_symmetric() || !rules.algorithms.iter().any(|a| a == alg.name()) {
        return Err(refused());
    }
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopError::JwkInvalid)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::JwkPrivate);
    }
    // A client signs every proof with one key, so the header (and its `jwk`) repeats: the key
    // and its thumbprint are remembered by the exact header text.
    let header_text = proof.split('.').next().unwrap_or_default();
    let (key, jkt) = match key_memo::recall(header_text) {
        Some((_, key, jkt)) => (key, jkt),
        None => {
            let key =
                Jwk::from_value(&Value::Object(jwk.clone())).map_err(|_| DpopError::JwkInvalid)?;
            let jkt = thumbprint(jwk).ok_or(DpopError::JwkInvalid)?;
            let key = Rc::new(key);
            key_memo::remember(header_text, alg, &key, &jkt);
            (key, jkt)
        }
    };
    if key.permits(alg).is_err() {
        return Err(DpopError::JwkInvalid);
    }
    if !signed_by(&token, alg, &key, host) {
        return Err(DpopError::SignatureInvalid);
    }

    let claims = token.claims();
    let claims = Claims {
        jti: string_claim(claims, "jti")?,
        htm: string_claim(claims, "htm")?,
        htu: string_claim(claims, "htu")?,
        iat: claims
            .get("iat")
            .and_then(Value::as_f64)
            .ok_or(DpopError::ClaimMissing { claim: "iat" })?,
        ath: string_claim(claims, "ath")?,
    };
    judge(&claims, jkt, target, rules, now)
}

/// The claim checks of a proof whose signature verified (RFC 9449 §4.3 checks 8-12).
fn judge(
    claims: &Claims<'_>,
    jkt: String,
    target: &ProofTarget<'_>,
    rules: &ProofRules<'_>,
    now: f64,
) -> Result<VerifiedProof, DpopError> {
    let Claims {
        jti,
        htm,
        htu,
        iat,
        ath,
    } = *claims;
    if jti.is_empty() {
        return Err(DpopError::ClaimMissing { claim: "jti" });
    }
    // Methods are case-sensitive (RFC 9110 §9.1).
    if htm != target.method {
        return Err(DpopError::HtmMismatch);
    }
    match htu::recent::normalize(htu) {
        Some(claimed) if target.uris.contains(&claimed) => {}
        _ => return Err(DpopError::HtuMismatch),
    }
    // A clock that reads NaN would pass both comparisons; fail closed instead.
    if now.is_nan() || iat < now - rules.max_age_seconds as f64 {
        return Err(DpopError::ProofExpired);
    }
    if iat > now + rules.future_skew_seconds as f64 {
        return Err(DpopError::IatInFuture);
    }
    if ath != access_token_hash(target.access_token) {
        return Err(DpopError::AthMismatch);
    }
    Ok(VerifiedProof {
        jkt,
        jti: jti.to_string(),
        iat,
    })
}

fn string_claim<'c>(
    claims: &'c Map<String, Value>,
    claim: &'static str,
) -> Result<&'c str, DpopError> {
    claims
        .get(claim)
        .and_then(Value::as_str)
        .ok_or(DpopError::ClaimMissing { claim })
}

#[cfg(test)]
mod ath_tests {
    use super::*;

    #[test]
    fn same_text_is_equality() {
        let texts = [
            "",
            "a",
            "abcdefgh",
            "abcdefgi",
            "abcdefghi",
            "abcdefghj",
            "bbcdefghi",
            "abcdefgh ",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
        let long = "x".repeat(1_025);
        let mut other = long.clone();
        other.replace_range(1_000..1_001, "y");
        assert!(same_text(&long, &long.clone()));
        assert!(!same_text(&long, &other));
    }

    #[test]
    fn the_memo_never_answers_for_another_token() {
        let direct = |t: &str| b64::encode(&Sha256::digest(t.as_bytes()));
        // Same last characters, so the same slot; each must get its own hash, again and again.
        let tokens = ["aaa.bbb.xyz", "ccc.ddd.xyz", "aaa.bbb.xyzz", "", "z"];
        for _ in 0..3 {
            for token in tokens {
                assert_eq!(access_token_hash(token), direct(token), "{token:?}");
            }
        }
        // RFC 9449 §7.1's example token and `ath`.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        for _ in 0..2 {
            assert_eq!(
                access_token_hash(token),
                "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
            );
        }
    }
}
