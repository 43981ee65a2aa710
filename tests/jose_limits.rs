//! README "Token verification" limits, by their documented values (issue 20, finding 2): each
//! one at exactly N (accepted) and N+1 (refused). The numbers are README's, written here as
//! literals, never the implementation's constants, so a changed limit fails here.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::Validation;
use keygate::jose::{
    verify, KeySet, KeysError, Malformation, TokenError, TokenPart, UntrustedToken,
};
use serde_json::{json, Value};
use support::signers::*;

/// README: whole token 32 KiB.
const TOKEN_BYTES: usize = 32 * 1024;
/// README: header segment (base64url text) 8 KiB.
const HEADER_CHARS: usize = 8 * 1024;
/// README: signature segment 1366 characters.
const SIGNATURE_CHARS: usize = 1366;
/// README: nesting depth, header 4, payload 16.
const HEADER_DEPTH: usize = 4;
const PAYLOAD_DEPTH: usize = 16;
/// README: JWKS document 512 KiB, depth 8, first 64 entries.
const JWKS_BYTES: usize = 512 * 1024;
const JWKS_DEPTH: usize = 8;
const JWKS_ENTRIES: usize = 64;

fn seg(text: &str) -> String {
    b64(text.as_bytes())
}

/// An ES256-shaped signature segment (64 bytes, 86 characters); parsing never checks it.
fn sig64() -> String {
    b64(&[7; 64])
}

/// A JSON object text of exactly `len` bytes: `{"alg":"ES256","x":"aaa…"}`.
fn header_json(len: usize) -> String {
    let fixed = r#"{"alg":"ES256","x":""}"#.len();
    format!(r#"{{"alg":"ES256","x":"{}"}}"#, "a".repeat(len - fixed))
}

/// A value nested `depth` levels deep counting the enclosing object: `{"a":[[…]]}`.
fn nested_object(depth: usize) -> String {
    format!(
        r#"{{"a":{}{}}}"#,
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

/// A token of exactly `len` bytes: a small header, the ES256-shaped signature, and a payload
/// whose filler claim makes up the rest (the header gets one extra member when base64url has
/// no text of the length needed).
fn token_of_len(len: usize) -> String {
    for extra in ["", r#","y":"b""#, r#","y":"bb""#, r#","y":"bbb""#] {
        let header = seg(&format!(r#"{{"alg":"ES256"{extra}}}"#));
        let fixed = header.len() + 2 + sig64().len();
        // base64url text is 4/3 of the bytes: start just below the filler that fits.
        let start = ((len - fixed) * 3 / 4).saturating_sub(16);
        for filler in start..len {
            let payload = seg(&format!(r#"{{"f":"{}"}}"#, "c".repeat(filler)));
            match (fixed + payload.len()).cmp(&len) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return format!("{header}.{payload}.{}", sig64()),
                std::cmp::Ordering::Greater => break,
            }
        }
    }
    panic!("no token of {len} bytes")
}

fn parse_err(token: &str) -> TokenError {
    UntrustedToken::parse(token).unwrap_err()
}

#[test]
fn a_token_may_be_32_kib_and_not_one_byte_more() {
    let at = token_of_len(TOKEN_BYTES);
    assert_eq!(at.len(), 32768);
    UntrustedToken::parse(&at).unwrap();
    let over = token_of_len(TOKEN_BYTES + 1);
    assert_eq!(over.len(), 32769);
    assert_eq!(
        parse_err(&over),
        TokenError::TooLarge {
            part: TokenPart::Whole,
            limit: 32768
        }
    );
}

#[test]
fn a_header_segment_may_be_8_kib_of_text_and_not_one_character_more() {
    // 6144 bytes of JSON are exactly 8192 base64url characters.
    let at = b64(header_json(6144).as_bytes());
    assert_eq!(at.len(), HEADER_CHARS);
    let token = format!("{at}.{}.{}", seg("{}"), sig64());
    assert_eq!(UntrustedToken::parse(&token).unwrap().alg(), "ES256");
    // One more byte of JSON is 8194 characters; one more character of text (8193) is refused
    // for its size before it is decoded.
    let over = b64(header_json(6145).as_bytes());
    assert_eq!(over.len(), 8194);
    for header in [over.clone(), format!("{at}A")] {
        assert!(header.len() > HEADER_CHARS);
        assert_eq!(
            parse_err(&format!("{header}.{}.{}", seg("{}"), sig64())),
            TokenError::TooLarge {
                part: TokenPart::Header,
                limit: 8192
            },
            "{} characters",
            header.len()
        );
    }
}

#[test]
fn a_signature_segment_may_be_1366_characters_and_not_one_more() {
    let input = format!("{}.{}", seg(r#"{"alg":"RS256"}"#), seg("{}"));
    // An RSA-8192 signature: 1024 bytes, 1366 characters.
    let at = b64(&[1; 1024]);
    assert_eq!(at.len(), SIGNATURE_CHARS);
    assert_eq!(
        UntrustedToken::parse(&format!("{input}.{at}"))
            .unwrap()
            .signature()
            .len(),
        1024
    );
    let over = b64(&[1; 1025]);
    assert_eq!(over.len(), 1367);
    assert_eq!(
        parse_err(&format!("{input}.{over}")),
        TokenError::TooLarge {
            part: TokenPart::Signature,
            limit: 1366
        }
    );
}

#[test]
fn a_header_nests_4_deep_and_not_5() {
    // {"alg":"ES256","jwk":{"a":{"b":{}}}} is 4 deep.
    let at = r#"{"alg":"ES256","jwk":{"a":{"b":{}}}}"#;
    let over = r#"{"alg":"ES256","jwk":{"a":{"b":{"c":[]}}}}"#;
    let token = |header: &str| format!("{}.{}.{}", seg(header), seg("{}"), sig64());
    assert_eq!(HEADER_DEPTH, 4);
    UntrustedToken::parse(&token(at)).unwrap();
    assert_eq!(
        parse_err(&token(over)),
        TokenError::Malformed {
            part: TokenPart::Header,
            problem: Malformation::TooDeep
        }
    );
}

#[test]
fn a_payload_nests_16_deep_and_not_17() {
    let token =
        |payload: &str| format!("{}.{}.{}", seg(r#"{"alg":"ES256"}"#), seg(payload), sig64());
    UntrustedToken::parse(&token(&nested_object(PAYLOAD_DEPTH))).unwrap();
    assert_eq!(
        parse_err(&token(&nested_object(17))),
        TokenError::Malformed {
            part: TokenPart::Payload,
            problem: Malformation::TooDeep
        }
    );
}

/// A JWKS holding one usable P-256 key, `extra` as a member of it, padded with trailing
/// whitespace to `len` bytes when given.
fn jwks_doc(extra: Option<Value>, len: Option<usize>) -> Vec<u8> {
    let mut key = public_jwk("p256", "k-p256");
    if let Some(extra) = extra {
        key["extra"] = extra;
    }
    let mut doc = jwks(&[key]);
    if let Some(len) = len {
        assert!(doc.len() <= len);
        doc.resize(len, b' ');
    }
    doc
}

#[test]
fn a_jwks_document_may_be_512_kib_and_not_one_byte_more() {
    let at = jwks_doc(None, Some(JWKS_BYTES));
    assert_eq!(at.len(), 524_288);
    assert_eq!(KeySet::from_json(&at).unwrap().len(), 1);
    let over = jwks_doc(None, Some(JWKS_BYTES + 1));
    let err = KeySet::from_json(&over).unwrap_err();
    assert_eq!(err.code(), "jwks_too_large");
    assert!(
        matches!(err, KeysError::TooLarge { limit: 524_288 }),
        "{err:?}"
    );
}

#[test]
fn a_jwks_document_nests_8_deep_and_not_9() {
    // {"keys":[{"extra": …}]}: the document, the array and the key are 3 levels.
    let deep = |levels: usize| -> Value {
        let mut value = json!([]);
        for _ in 1..levels {
            value = json!([value]);
        }
        value
    };
    let at = jwks_doc(Some(deep(JWKS_DEPTH - 3)), None);
    assert_eq!(KeySet::from_json(&at).unwrap().len(), 1);
    let over = jwks_doc(Some(deep(JWKS_DEPTH - 2)), None);
    assert_eq!(
        KeySet::from_json(&over).unwrap_err().code(),
        "jwks_not_json"
    );
}

#[test]
fn the_first_64_jwks_entries_are_used_and_later_ones_skipped() {
    let entry = |i: usize| {
        if i < 63 {
            public_jwk("p256", &format!("k{i}"))
        } else {
            public_jwk("ed25519", &format!("k{i}"))
        }
    };
    // 64 entries: the 64th (an Ed25519 key) is used.
    let entries: Vec<Value> = (0..JWKS_ENTRIES).map(entry).collect();
    let keys = KeySet::from_json(&jwks(&entries)).unwrap();
    assert_eq!((keys.len(), keys.skipped()), (64, 0));
    let validation = Validation::default();
    let ed = |kid: &str| {
        let text = token(&json!({"alg": "EdDSA", "kid": kid}), &claims(), "ed25519");
        UntrustedToken::parse(&text).unwrap()
    };
    verify(&ed("k63"), &keys, &validation, NOW).unwrap();
    // 65 entries: the 65th is skipped, and a token naming it cannot use it.
    let entries: Vec<Value> = (0..=JWKS_ENTRIES).map(entry).collect();
    let keys = KeySet::from_json(&jwks(&entries)).unwrap();
    assert_eq!((keys.len(), keys.skipped()), (64, 1));
    assert_eq!(
        verify(&ed("k64"), &keys, &validation, NOW)
            .unwrap_err()
            .code(),
        "key_unusable"
    );
    verify(&ed("k63"), &keys, &validation, NOW).unwrap();
}
