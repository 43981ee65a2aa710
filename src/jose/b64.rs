//! Strict base64url (RFC 7515 §2): URL alphabet, no padding, no whitespace, and canonical
//! trailing bits, so that every byte string has exactly one accepted encoding. A token that
//! differs only in the unused low bits of its last character is a different token string with
//! the same bytes; refusing it keeps token caches and logs honest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes unpadded, canonical base64url. `None` on any deviation.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // The engine refuses padding, foreign characters, impossible lengths and non-zero
    // trailing bits (`decode_allow_trailing_bits` is false in `URL_SAFE_NO_PAD`).
    URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()
}

/// Encodes without padding (used by tests, benches and the CLI's examples).
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_deviations() {
        assert_eq!(decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(encode(b"hi"), "aGk");
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
        // padding
        assert!(decode("aGk=").is_none());
        // standard alphabet characters
        assert!(decode("a+k").is_none());
        assert!(decode("a/k").is_none());
        // non-canonical last character: 'l' has a non-zero low bit that "hi" does not use
        assert!(decode("aGl").is_none());
        // impossible length
        assert!(decode("a").is_none());
        // whitespace
        assert!(decode("aG k").is_none());
        assert!(decode("aGk\n").is_none());
    }
}
