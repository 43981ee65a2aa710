//! Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf` names a certificate
//! thumbprint (`x5t#S256`, base64url of the SHA-256 of the certificate's DER) is accepted only
//! from a client that presented that certificate. Like a DPoP binding, this is checked on every
//! request (a verified-token cache hit skips the signature, never the binding): the certificate
//! belongs to the connection, not to the token.
//!
//! Where the certificate comes from is the shell's business ([`client_cert`]): Envoy's
//! `connection.sha256_peer_certificate_digest` (hex), or, where TLS ends at a trusted front
//! proxy, the `Hash=` of the `x-forwarded-client-cert` element that proxy added.

use serde_json::{Map, Value};

use crate::config::CertBinding;
use crate::jose::b64;
use crate::policy::{Policy, RouteMatch};

/// The SHA-256 digest of the client certificate's DER, when the request came with one.
pub type CertDigest = [u8; 32];

/// A request's client certificate as the decision sees it: known, or read only when a
/// certificate-bound token (or an API that requires one) needs it, so a request whose token is not
/// bound never asks the host for its connection's certificate.
#[derive(Clone, Copy)]
pub enum ClientCert<'r> {
    Known(Option<CertDigest>),
    /// Reads it (the shell: Envoy's connection property, or the trusted XFCC header).
    Lazy(&'r dyn Fn() -> Option<CertDigest>),
}

impl ClientCert<'_> {
    /// The digest, read now if it was not yet.
    pub fn get(self) -> Option<CertDigest> {
        match self {
            ClientCert::Known(cert) => cert,
            ClientCert::Lazy(read) => read(),
        }
    }
}

impl std::fmt::Debug for ClientCert<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCert::Known(cert) => write!(f, "Known({})", cert.is_some()),
            ClientCert::Lazy(_) => f.write_str("Lazy"),
        }
    }
}

/// The forwarded-certificate header a front proxy sets (Envoy's XFCC).
pub const XFCC: &str = "x-forwarded-client-cert";

/// Why a token's certificate binding does not hold (401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// The token is bound to a certificate but the request came with none.
    Missing,
    /// The request's certificate is not the one the token is bound to.
    Mismatch,
    /// The API requires bound tokens and this one is not bound.
    Unbound,
    /// `cnf.x5t#S256` is not a base64url SHA-256 digest.
    Invalid,
}

impl CertError {
    pub fn code(self) -> &'static str {
        match self {
            CertError::Missing => "client_certificate_missing",
            CertError::Mismatch => "client_certificate_mismatch",
            CertError::Unbound => "token_not_certificate_bound",
            CertError::Invalid => "certificate_binding_invalid",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            CertError::Missing => {
                "the token is bound to a client certificate and the request came without one"
            }
            CertError::Mismatch => {
                "the token is bound to another client certificate than the request's"
            }
            CertError::Unbound => "this API requires a token bound to the client certificate",
            CertError::Invalid => "the token's cnf.x5t#S256 is not a SHA-256 thumbprint",
        }
    }
}

/// RFC 8705 §3.1: a bound token needs the certificate it names; where the API requires it
/// (`mtls_bound_tokens: required`), an unbound token is refused.
pub(super) fn check_cert(
    policy: &Policy,
    route: &RouteMatch,
    claims: &Map<String, Value>,
    cert: ClientCert<'_>,
) -> Result<(), CertError> {
    let bound = claims.get("cnf").and_then(|cnf| cnf.get("x5t#S256"));
    let Some(bound) = bound else {
        let required = policy
            .api(route.api)
            .is_some_and(|api| api.mtls_bound_tokens == CertBinding::Required);
        return if required {
            Err(CertError::Unbound)
        } else {
            Ok(())
        };
    };
    let bound = bound
        .as_str()
        .and_then(b64::decode)
        .filter(|digest| digest.len() == 32)
        .ok_or(CertError::Invalid)?;
    match cert.get() {
        None => Err(CertError::Missing),
        Some(cert) if cert.as_slice() == bound.as_slice() => Ok(()),
        Some(_) => Err(CertError::Mismatch),
    }
}

/// The client certificate of a request: with `trusted_header` (a front proxy that ends TLS is
/// trusted to set [`XFCC`]), the `Hash` of the header's last element (the one the nearest proxy
/// added) when there is one, else the connection's own (`connection_hex`, Envoy's
/// `connection.sha256_peer_certificate_digest`). Without it the header plays no part.
pub fn client_cert(
    connection_hex: Option<&str>,
    xfcc: Option<&str>,
    trusted_header: bool,
) -> Option<CertDigest> {
    let forwarded = xfcc.filter(|_| trusted_header).and_then(forwarded_hash);
    forwarded.or_else(|| connection_hex.and_then(from_hex))
}

/// `Hash=` of the last element of an XFCC value (elements are comma-separated, pairs
/// semicolon-separated; a value may be quoted). `None` when that element has none, or it is not
/// 64 hex digits.
fn forwarded_hash(xfcc: &str) -> Option<CertDigest> {
    let last = split_unquoted(xfcc, ',').pop()?;
    split_unquoted(last, ';').into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("hash") {
            return None;
        }
        from_hex(value.trim().trim_matches('"'))
    })
}

/// `text` split at `sep` outside double quotes.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// 64 hex digits (either case) as 32 bytes.
fn from_hex(hex: &str) -> Option<CertDigest> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| char::from(b).to_digit(16);
        let (hi, lo) = (digit(*pair.first()?)?, digit(*pair.get(1)?)?);
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_connection_certificate_is_read_from_hex() {
        let digest = client_cert(Some(HEX), None, false).unwrap();
        assert_eq!(digest[0], 0x9f);
        assert_eq!(digest[31], 0x08);
        assert_eq!(
            client_cert(Some(&HEX.to_uppercase()), None, false),
            Some(digest)
        );
        assert_eq!(client_cert(Some("9f86"), None, false), None);
        assert_eq!(client_cert(None, None, false), None);
    }

    #[test]
    fn a_forwarded_hash_counts_only_from_a_trusted_hop() {
        let other = "00".repeat(32);
        let xfcc = format!(
            r#"By=spiffe://a;Hash={other};Subject="CN=x, O=y",By=spiffe://b;Hash={HEX};URI=spiffe://c"#
        );
        let trusted = client_cert(None, Some(&xfcc), true).unwrap();
        assert_eq!(trusted, client_cert(Some(HEX), None, false).unwrap());
        assert_eq!(client_cert(None, Some(&xfcc), false), None);
        // Untrusted: the connection's certificate, never the header's.
        let conn = client_cert(Some(&other), Some(&xfcc), false).unwrap();
        assert_eq!(conn, [0u8; 32]);
        // Trusted but without a hash in its element: the connection's.
        let no_hash = client_cert(Some(&other), Some("By=spiffe://a"), true).unwrap();
        assert_eq!(no_hash, [0u8; 32]);
    }
}
