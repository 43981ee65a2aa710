//! The fuzz target bodies, one function per target, shared by the libFuzzer binaries in
//! `fuzz_targets/` (this file is the `keygate-fuzz` library) and by `tests/fuzz_corpora.rs`
//! (which includes it with `#[path]`), so the committed corpora replay on stable through exactly
//! the code the fuzzer runs.
//!
//! Each body must not panic on any input. Beyond that, each asserts only properties that hold for
//! every input (an oracle that can be wrong is worse than none).

use std::sync::OnceLock;

use keygate::decision::{authorization, decide, dpop_proofs, DpopRequest, Request};
use keygate::dpop::{normalize_uri, thumbprint, verify_proof, ProofRules, ProofTarget};
use keygate::introspection::{parse_answer, Answer, CallFailure};
use keygate::jose::{verify, KeySet, UntrustedToken, Validation};
use keygate::policy::path::CanonicalPath;
use keygate::policy::{Policy, Route};
use keygate::worker::{decode_header_map, encode_header_map};

/// The fixed clock: inside the validity window of the tokens in `tests/vectors/interop.json`.
pub const NOW: f64 = 1_700_000_000.0;

/// Public keys (and the HMAC secret) of `tests/vectors/keys.json`, with the kids the interop
/// tokens name.
const JWKS: &str = include_str!("fixtures/jwks.json");
/// One genuine token per algorithm, signed by an independent implementation.
const GENUINE: &str = include_str!("../tests/vectors/interop.json");
/// The compiled policy that `route` matches against.
const POLICY: &str = include_str!("../tests/fixtures/policy_fixture.json");

/// The fixed key set (`None` only if the committed JWKS is broken; the corpus test checks it).
pub fn fixed_keys() -> Option<&'static KeySet> {
    static KEYS: OnceLock<Option<KeySet>> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::from_json(JWKS.as_bytes()).ok())
        .as_ref()
}

/// The genuine token strings; the only ones that may verify.
pub fn genuine() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GENUINE).unwrap_or_default();
        map.values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    })
}

/// The fixed policy (`None` only if the committed fixture is broken; the corpus test checks it).
pub fn fixed_policy() -> Option<&'static Policy> {
    static COMPILED: OnceLock<Option<Policy>> = OnceLock::new();
    COMPILED
        .get_or_init(|| Policy::from_json(POLICY.as_bytes()).ok())
        .as_ref()
}

/// The issuer and audience the genuine tokens carry, so claim checks run to the end.
pub fn validation() -> Validation {
    Validation {
        issuer: Some("https://idp.example".to_owned()),
        audiences: vec!["api://pets".to_owned()],
        ..Validation::default()
    }
}

/// Token parse + verify against the fixed key set at the fixed `now`. Only a genuine token may
/// verify: no forgery, no second encoding of a genuine one. ECDSA is the one exception by design
/// (README: high-S accepted): anyone can turn `(r, s)` into the also valid `(r, n - s)`, so for
/// `ES*` the signed message must be genuine, for every other algorithm the whole token.
pub fn token(data: &[u8]) {
    let (Ok(text), Some(keys)) = (std::str::from_utf8(data), fixed_keys()) else {
        return;
    };
    match UntrustedToken::parse(text) {
        Ok(token) => {
            if verify(&token, keys, &validation(), NOW).is_ok() {
                let message = |t: &str| t.rsplit_once('.').map(|(m, _)| m.to_owned());
                let ecdsa = token.alg().starts_with("ES");
                let is_genuine = |g: &String| {
                    if ecdsa {
                        message(g) == message(text)
                    } else {
                        g == text
                    }
                };
                assert!(genuine().iter().any(is_genuine), "verified: {text:?}");
            }
        }
        Err(error) => assert!(!error.code().is_empty()),
    }
}

/// The request every `dpop` input is checked against (the seed proofs are made for it).
pub const DPOP_URI: &str = "https://api.example/pets/v1/pets";
pub const DPOP_ACCESS_TOKEN: &str = "access-token-of-the-dpop-seeds";

/// DPoP proof checks against a fixed request at the fixed `now`, and `htu` normalization. A proof
/// that passes names exactly that request and carries the key its thumbprint is of; normalizing a
/// URI twice changes nothing (the input read as a URI).
pub fn dpop(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(once) = normalize_uri(text) {
        assert_eq!(
            normalize_uri(&once).as_deref(),
            Some(once.as_str()),
            "{text:?}"
        );
    }
    let algorithms: Vec<String> = keygate::config::SUPPORTED_ALGORITHMS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let rules = ProofRules {
        algorithms: &algorithms,
        max_age_seconds: 300,
        future_skew_seconds: 5,
    };
    let uris = [DPOP_URI.to_string()];
    let target = ProofTarget {
        method: "GET",
        uris: &uris,
        access_token: DPOP_ACCESS_TOKEN,
    };
    match verify_proof(text, &target, &rules, NOW, None) {
        Ok(proof) => {
            let parsed = UntrustedToken::parse(text).ok();
            let jwk = parsed
                .as_ref()
                .and_then(|t| t.header().get("jwk")?.as_object().cloned());
            assert_eq!(
                jwk.as_ref().and_then(thumbprint),
                Some(proof.jkt),
                "{text:?}"
            );
            let claims = parsed.as_ref().map(UntrustedToken::claims);
            assert_eq!(claims.and_then(|c| c.get("htm")?.as_str()), Some("GET"));
            assert!(!proof.jti.is_empty());
            assert!((NOW - 300.0..=NOW + 5.0).contains(&proof.iat));
        }
        Err(error) => assert!(!error.code().is_empty()),
    }
}

/// An introspection answer (RFC 7662 §2.2) with status 200 through `parse_answer`, which reads it
/// as strictly as a token's payload. An accepted answer reads the same with plain serde_json
/// (no member it kept could have been read another way): `active` is the boolean it found and
/// the claims are the other members. A refused one is a failed call (`Malformed`), never
/// "inactive".
pub fn introspection(data: &[u8]) {
    let lenient = serde_json::from_slice::<serde_json::Value>(data).ok();
    let mut lenient = match lenient {
        Some(serde_json::Value::Object(members)) => Some(members),
        _ => None,
    };
    let active = lenient.as_mut().and_then(|m| m.remove("active"));
    match parse_answer(200, data) {
        Ok(Answer::Active(claims)) => {
            assert_eq!(active, Some(serde_json::Value::Bool(true)));
            assert_eq!(lenient.as_ref(), Some(&claims));
        }
        Ok(Answer::Inactive) => assert_eq!(active, Some(serde_json::Value::Bool(false))),
        Err(failure) => assert_eq!(failure, CallFailure::Malformed),
    }
}

/// JWKS parsing: a key set is either refused or holds at least one usable key.
pub fn jwks(data: &[u8]) {
    if let Ok(set) = KeySet::from_json(data) {
        assert!(!set.is_empty());
    }
}

/// Plugin config compile; a compiled policy then routes a few requests without panicking, and
/// every match names a resource of that policy.
pub fn policy(data: &[u8]) {
    let Ok(policy) = Policy::from_json(data) else {
        return;
    };
    for (method, path) in [("GET", "/"), ("GET", "/pets/v1/pets/1"), ("POST", "/a/b/")] {
        check_route(&policy, method, path);
    }
}

/// The CLI's YAML declaration parser. Kept to the one public entry point on purpose.
pub fn declaration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keygate::cli::declaration::validate::parse(text);
    }
}

/// Path canonicalization and routing on the fixed policy. Input: `METHOD PATH` (or a bare path,
/// routed as `GET`).
pub fn route(data: &[u8]) {
    let (Ok(text), Some(policy)) = (std::str::from_utf8(data), fixed_policy()) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    if let Ok(canonical) = CanonicalPath::parse(path) {
        check_canonical(&canonical);
    }
    check_route(policy, method, path);
}

fn check_route(policy: &Policy, method: &str, path: &str) {
    match policy.route(method, path) {
        Route::Public(found) | Route::Protected(found) => {
            assert!(policy.resource(&found).is_some());
        }
        Route::PassThrough | Route::Denied(_) => {}
    }
}

/// A canonical path has no empty or dot segments, no separators inside a segment, and is a fixed
/// point: written out plainly (when that needs no escapes) it parses to itself.
fn check_canonical(canonical: &CanonicalPath) {
    let mut plain = true;
    for segment in &canonical.segments {
        assert!(!matches!(segment.as_str(), "" | "." | ".."));
        assert!(!segment.contains(['/', '\\', '\0']));
        plain &= segment
            .bytes()
            .all(|b| matches!(b, 0x21..=0x7e) && !matches!(b, b'?' | b'#' | b';' | b'%'));
    }
    if plain {
        let mut written = format!("/{}", canonical.segments.join("/"));
        if canonical.trailing_slash && !canonical.segments.is_empty() {
            written.push('/');
        }
        assert_eq!(CanonicalPath::parse(&written).as_ref(), Ok(canonical));
    }
}

/// A request header map as Envoy serializes it for the filter, then the decision on the request it
/// describes under the fixed policy and keys. Decoding never panics; when no value needed a
/// replacement character, the decoded pairs encode back to the input (up to bytes after the last
/// pair, which the decoder ignores; an empty input is an empty map without a count).
pub fn headers(data: &[u8]) {
    let Some(pairs) = decode_header_map(data) else {
        return;
    };
    if !data.is_empty() && !pairs.iter().any(|(_, value)| value.contains('\u{fffd}')) {
        let bytes: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        assert!(data.starts_with(&encode_header_map(&bytes)), "{pairs:?}");
    }
    let (Some(policy), Some(keys)) = (fixed_policy(), fixed_keys()) else {
        return;
    };
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    };
    let auth = authorization(&pairs);
    let proofs = dpop_proofs(&pairs);
    let request = Request {
        method: value(":method"),
        path: value(":path"),
        authorization: auth.as_deref(),
        dpop: DpopRequest { proofs: &proofs },
        headers: &pairs,
    };
    let _ = decide(policy, &request, |_| Some(keys), NOW);
}
