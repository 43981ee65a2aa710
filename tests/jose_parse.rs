//! Strict compact-JWS syntax: every deviation is refused with a precise reason.
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use keygate::jose::{Malformation, TokenError, TokenPart, UntrustedToken};
use serde_json::json;
use support::signers::*;

// README "Token verification" limits, as documented (tests/jose_limits.rs checks each boundary).
const MAX_TOKEN_BYTES: usize = 32 * 1024;
const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_PAYLOAD_DEPTH: usize = 16;

fn err(token: &str) -> TokenError {
    UntrustedToken::parse(token).unwrap_err()
}

fn malformed(part: TokenPart, problem: Malformation) -> TokenError {
    TokenError::Malformed { part, problem }
}

fn seg(json_text: &str) -> String {
    b64(json_text.as_bytes())
}

fn good() -> String {
    token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims(), "p256")
}

#[test]
fn accessors_expose_the_unverified_parts() {
    let t = UntrustedToken::parse(&good()).unwrap();
    assert_eq!(t.alg(), "ES256");
    assert_eq!(t.kid(), Some("k-p256"));
    assert_eq!(t.issuer(), Some("https://idp.example"));
    assert_eq!(t.claims()["client_id"], "app-1");
    assert_eq!(t.signature().len(), 64);
    let text = good();
    let dot = text.rfind('.').unwrap();
    assert_eq!(
        t.signing_input().len(),
        UntrustedToken::parse(&text).unwrap().signing_input().len()
    );
    assert_eq!(t.signing_input().len(), dot);
}

#[test]
fn segment_count_must_be_three() {
    let g = good();
    let p: Vec<&str> = g.split('.').collect();
    for bad in [
        p[0].to_owned(),
        format!("{}.{}", p[0], p[1]),
        format!("{g}.{}", p[2]),
        format!("{g}."),
        format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[1], p[2]), // JWE-shaped
        String::new(),
    ] {
        assert_eq!(
            err(&bad),
            malformed(TokenPart::Whole, Malformation::SegmentCount),
            "{bad}"
        );
    }
}

#[test]
fn base64url_must_be_canonical_and_unpadded() {
    let g = good();
    let p: Vec<&str> = g.split('.').collect();
    let header = seg(r#"{"alg":"ES256"}"#);
    // padding
    let padded = format!("{header}=.{}.{}", p[1], p[2]);
    assert_eq!(
        err(&padded),
        malformed(TokenPart::Header, Malformation::Base64)
    );
    // standard alphabet
    for foreign in ["+", "/"] {
        let std_alpha = format!("{}.{foreign}{}.{}", p[0], &p[1][1..], p[2]);
        assert_eq!(
            err(&std_alpha),
            malformed(TokenPart::Payload, Malformation::Base64)
        );
    }
    // non-canonical last character: "e30" is "{}"; "e31" decodes to the same bytes with a stray bit
    assert_eq!(unb64("e30"), b"{}");
    assert_eq!(
        err(&format!("e31.{}.{}", p[1], p[2])),
        malformed(TokenPart::Header, Malformation::Base64)
    );
    // signature segment is decoded strictly too
    assert_eq!(
        err(&format!("{}.{}.{}=", p[0], p[1], p[2])),
        malformed(TokenPart::Signature, Malformation::Base64)
    );
    assert_eq!(
        err(&format!("{}.{}.a", p[0], p[1])),
        malformed(TokenPart::Signature, Malformation::Base64)
    );
    // whitespace inside
    assert_eq!(
        err(&format!("{}.{} .{}", p[0], p[1], p[2])),
        malformed(TokenPart::Payload, Malformation::Base64)
    );
}

#[test]
fn header_and_payload_must_be_json_objects() {
    let sig = b64(&[0; 64]);
    let alg = seg(r#"{"alg":"ES256"}"#);
    for (payload, problem) in [
        ("[1,2]", Malformation::NotObject),
        ("\"text\"", Malformation::NotObject),
        ("42", Malformation::NotObject),
        ("null", Malformation::NotObject),
        ("{\"a\":1", Malformation::NotJson),
        ("{\"a\":1}x", Malformation::NotJson),
        ("{'a':1}", Malformation::NotJson),
    ] {
        assert_eq!(
            err(&format!("{alg}.{}.{sig}", seg(payload))),
            malformed(TokenPart::Payload, problem),
            "{payload}"
        );
    }
    assert_eq!(
        err(&format!("{alg}.{}.{sig}", b64(b"\xff\xfe"))),
        malformed(TokenPart::Payload, Malformation::NotUtf8)
    );
    assert_eq!(
        err(&format!("{}.{}.{sig}", seg("[]"), seg("{}"))),
        malformed(TokenPart::Header, Malformation::NotObject)
    );
    assert_eq!(
        err(&format!(".{}.{sig}", seg("{}"))),
        malformed(TokenPart::Header, Malformation::EmptySegment)
    );
    assert_eq!(
        err(&format!("{alg}..{sig}")),
        malformed(TokenPart::Payload, Malformation::EmptySegment)
    );
}

#[test]
fn duplicate_member_names_are_refused() {
    let sig = b64(&[0; 64]);
    let dup_header = seg(r#"{"alg":"ES256","alg":"none"}"#);
    assert_eq!(
        err(&format!("{dup_header}.{}.{sig}", seg("{}"))),
        malformed(TokenPart::Header, Malformation::DuplicateMember)
    );
    let alg = seg(r#"{"alg":"ES256"}"#);
    let dup_payload = seg(r#"{"sub":"a","exp":1,"sub":"admin"}"#);
    assert_eq!(
        err(&format!("{alg}.{dup_payload}.{sig}")),
        malformed(TokenPart::Payload, Malformation::DuplicateMember)
    );
    let nested = seg(r#"{"realm_access":{"roles":["a"],"roles":["admin"]}}"#);
    assert_eq!(
        err(&format!("{alg}.{nested}.{sig}")),
        malformed(TokenPart::Payload, Malformation::DuplicateMember)
    );
}

#[test]
fn header_members_are_typed_and_crit_is_refused() {
    let sig = b64(&[0; 64]);
    let body = seg("{}");
    let with = |h: &str| format!("{}.{body}.{sig}", seg(h));
    assert_eq!(
        err(&with(r#"{"typ":"JWT"}"#)),
        malformed(TokenPart::Header, Malformation::MissingAlg)
    );
    assert_eq!(
        err(&with(r#"{"alg":null}"#)),
        malformed(TokenPart::Header, Malformation::AlgNotString)
    );
    assert_eq!(
        err(&with(r#"{"alg":["ES256"]}"#)),
        malformed(TokenPart::Header, Malformation::AlgNotString)
    );
    assert_eq!(
        err(&with(r#"{"alg":"ES256","kid":7}"#)),
        malformed(TokenPart::Header, Malformation::KidNotString)
    );
    assert_eq!(
        err(&with(r#"{"alg":"ES256","kid":null}"#)),
        malformed(TokenPart::Header, Malformation::KidNotString)
    );
    assert_eq!(
        err(&with(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#)),
        TokenError::CritUnsupported
    );
    assert_eq!(
        err(&with(r#"{"alg":"ES256","crit":[]}"#)),
        TokenError::CritUnsupported
    );
    assert_eq!(
        err(&with(r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#)).code(),
        "crit_unsupported"
    );
}

#[test]
fn size_and_depth_limits() {
    let sig = b64(&[0; 64]);
    // a 4 KB scope claim is normal
    let mut c = claims();
    c["scope"] = json!("pets:read ".repeat(410));
    let normal = token(&json!({"alg": "ES256"}), &c, "p256");
    assert!(normal.len() > 5000);
    assert!(UntrustedToken::parse(&normal).is_ok());
    // a 64 KB header is not
    let huge_header = seg(&format!(
        r#"{{"alg":"ES256","x":"{}"}}"#,
        "a".repeat(64 * 1024)
    ));
    let t = format!("{huge_header}.{}.{sig}", seg("{}"));
    assert_eq!(err(&t).code(), "token_too_large");
    // a header just above the header limit but a token under the total limit
    let big_header = seg(&format!(
        r#"{{"alg":"ES256","x":"{}"}}"#,
        "a".repeat(MAX_HEADER_BYTES)
    ));
    assert!(big_header.len() + 100 < MAX_TOKEN_BYTES);
    assert_eq!(
        err(&format!("{big_header}.{}.{sig}", seg("{}"))),
        TokenError::TooLarge {
            part: TokenPart::Header,
            limit: MAX_HEADER_BYTES
        }
    );
    // total size
    let mut c = claims();
    c["blob"] = json!("b".repeat(MAX_TOKEN_BYTES));
    let t = format!("{}.{sig}", signing_input(&json!({"alg": "ES256"}), &c));
    assert_eq!(
        err(&t),
        TokenError::TooLarge {
            part: TokenPart::Whole,
            limit: MAX_TOKEN_BYTES
        }
    );
    // oversized signature segment
    let t = format!(
        "{}.{}",
        signing_input(&json!({"alg": "RS256"}), &claims()),
        b64(&[1; 2048])
    );
    assert_eq!(err(&t).code(), "token_too_large");
    // nesting
    let deep = format!(
        "{}{}",
        "[".repeat(MAX_PAYLOAD_DEPTH),
        "]".repeat(MAX_PAYLOAD_DEPTH)
    );
    let t = format!(
        "{}.{}.{sig}",
        seg(r#"{"alg":"ES256"}"#),
        seg(&format!(r#"{{"a":{deep}}}"#))
    );
    assert_eq!(
        err(&t),
        malformed(TokenPart::Payload, Malformation::TooDeep)
    );
    let ok = format!(
        "{}{}",
        "[".repeat(MAX_PAYLOAD_DEPTH - 1),
        "]".repeat(MAX_PAYLOAD_DEPTH - 1)
    );
    let t = format!(
        "{}.{}.{sig}",
        seg(r#"{"alg":"ES256"}"#),
        seg(&format!(r#"{{"a":{ok}}}"#))
    );
    assert!(UntrustedToken::parse(&t).is_ok());
}

#[test]
fn issuer_accessor_only_returns_strings() {
    let sig = b64(&[0; 64]);
    let alg = seg(r#"{"alg":"ES256"}"#);
    let t = UntrustedToken::parse(&format!("{alg}.{}.{sig}", seg(r#"{"iss":["a"]}"#))).unwrap();
    assert_eq!(t.issuer(), None);
    assert_eq!(t.kid(), None);
}

#[test]
fn display_names_the_part_and_the_problem() {
    let e = malformed(TokenPart::Payload, Malformation::DuplicateMember);
    assert_eq!(e.to_string(), "token payload repeats a member name");
    assert_eq!(e.code(), "malformed_token");
}
