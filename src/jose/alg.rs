//! The JWS algorithms keygate verifies (RFC 7518 §3, RFC 8037 §3.1) and what each needs.

/// A supported `alg`. `none` is not one of them and never will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    /// EdDSA with Ed25519 keys. Ed448 keys are not supported (no well-kept pure-Rust crate of
    /// the same generation); JWKS entries with `crv: Ed448` are skipped as unusable.
    EdDsa,
}

/// What a verifying key must be for an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty: oct` secret.
    Oct,
    /// `kty: RSA` public key.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: EC`, `crv: P-384`.
    P384,
    /// `kty: EC`, `crv: P-521`.
    P521,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

/// Why a header `alg` is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgRefusal {
    /// `none` in any letter case: unsecured JWS is never accepted.
    None,
    /// Not an algorithm keygate implements.
    Unsupported,
}

impl Alg {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Alg; 13] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::Es512,
        Alg::EdDsa,
    ];

    /// Looks up a header `alg`. Names are case-sensitive (RFC 7515 §4.1.1), except that every
    /// spelling of `none` is recognised so it is reported as refused rather than unknown.
    pub fn from_name(name: &str) -> Result<Alg, AlgRefusal> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name).ok_or(
            if name.eq_ignore_ascii_case("none") {
                AlgRefusal::None
            } else {
                AlgRefusal::Unsupported
            },
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::EdDsa => "EdDSA",
        }
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => KeyKind::Oct,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                KeyKind::Rsa
            }
            Alg::Es256 => KeyKind::P256,
            Alg::Es384 => KeyKind::P384,
            Alg::Es512 => KeyKind::P521,
            Alg::EdDsa => KeyKind::Ed25519,
        }
    }

    /// True for the HMAC family, whose "verifying key" is a shared secret.
    pub fn is_symmetric(self) -> bool {
        self.key_kind() == KeyKind::Oct
    }

    /// The exact signature length when the algorithm fixes it (HMAC, ECDSA raw r||s, EdDSA).
    /// RSA signatures are as long as the key's modulus, checked against the key.
    pub fn signature_len(self) -> Option<usize> {
        match self {
            Alg::Hs256 => Some(32),
            Alg::Hs384 => Some(48),
            Alg::Hs512 => Some(64),
            Alg::Es256 => Some(64),
            Alg::Es384 => Some(96),
            Alg::Es512 => Some(132),
            Alg::EdDsa => Some(64),
            _ => None,
        }
    }

    /// For HMAC: the hash output length, the minimum secret length (RFC 7518 §3.2).
    pub fn min_secret_len(self) -> Option<usize> {
        if self.is_symmetric() {
            self.signature_len()
        } else {
            None
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_refused_in_every_case() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Ok(alg));
        }
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Alg::from_name(none), Err(AlgRefusal::None));
        }
        for other in ["hs256", "Ed25519", "Ed448", "ES256K", "RS1", ""] {
            assert_eq!(Alg::from_name(other), Err(AlgRefusal::Unsupported));
        }
    }
}
