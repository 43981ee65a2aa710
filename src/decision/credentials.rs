//! Reading the credentials of a request: the `Authorization` header's scheme (`Bearer` or `DPoP`,
//! RFC 6750 §2.1 and RFC 9449 §7.1) and its token68, from the request headers as the host lists them.

use super::denial::Denial;

/// What is wrong with an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationProblem {
    /// The header is present but blank.
    Empty,
    /// `Bearer` with nothing after it.
    NoToken,
    /// The credentials are not one token68 (spaces, commas from joined headers, other bytes).
    NotToken68,
}

impl AuthorizationProblem {
    pub(super) fn describe(&self) -> &'static str {
        match self {
            AuthorizationProblem::Empty => "the Authorization header is empty",
            AuthorizationProblem::NoToken => "the Bearer scheme carries no token",
            AuthorizationProblem::NotToken68 => {
                "the bearer token has characters outside the token68 syntax"
            }
        }
    }
}

/// The authorization scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    /// `DPoP` (RFC 9449 §7.1): the token is DPoP-bound and a `DPoP` proof header comes with it.
    Dpop,
}

/// The scheme and token of an `Authorization` header value: [`bearer_token`]'s rules, with
/// `DPoP` accepted beside `Bearer` (both case-insensitive).
pub fn credentials(authorization: Option<&str>) -> Result<(AuthScheme, &str), Denial> {
    let (scheme, token) = presented(authorization)?;
    token68(token)?;
    Ok((scheme, token))
}

/// [`credentials`] without the token68 check of the token, which [`token68`] makes later: the
/// decision looks a token up in the verified-token cache first, and every token there passed the
/// check when it was first seen (a 1 KB token's check was a tenth of a cache hit's own time).
pub(super) fn presented(authorization: Option<&str>) -> Result<(AuthScheme, &str), Denial> {
    let dpop = authorization.is_some_and(|value| {
        let value = value.trim_matches([' ', '\t']);
        let scheme = value.split_once(' ').map_or(value, |(scheme, _)| scheme);
        scheme.eq_ignore_ascii_case("dpop")
    });
    if dpop {
        Ok((AuthScheme::Dpop, unchecked_token_of(authorization, "dpop")?))
    } else {
        Ok((
            AuthScheme::Bearer,
            unchecked_token_of(authorization, "bearer")?,
        ))
    }
}

/// The token of [`presented`] is one token68 (400 `malformed_authorization` if not).
pub(super) fn token68(token: &str) -> Result<(), Denial> {
    if is_token68(token) {
        Ok(())
    } else {
        Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NotToken68,
        })
    }
}

/// The bearer token of an `Authorization` header value.
///
/// Missing → [`Denial::MissingToken`]; another scheme (`Basic ...`) → [`Denial::UnsupportedScheme`]
/// (RFC 6750 §3.1: the request has no bearer credentials, 401 without an error code); blank, `Bearer`
/// alone, or credentials that are not one token68 → 400 [`Denial::MalformedAuthorization`].
/// The scheme is case-insensitive; one or more spaces may separate it from the token.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, Denial> {
    token_of(authorization, "bearer")
}

/// The token68 after scheme `scheme` (lower case) in an `Authorization` header value.
fn token_of<'a>(authorization: Option<&'a str>, scheme: &str) -> Result<&'a str, Denial> {
    let token = unchecked_token_of(authorization, scheme)?;
    token68(token)?;
    Ok(token)
}

/// [`token_of`] without the token68 check.
fn unchecked_token_of<'a>(authorization: Option<&'a str>, scheme: &str) -> Result<&'a str, Denial> {
    let value = authorization
        .ok_or(Denial::MissingToken)?
        .trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::Empty,
        });
    }
    let (name, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !name.eq_ignore_ascii_case(scheme) {
        return Err(Denial::UnsupportedScheme);
    }
    let token = credentials.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Denial::MalformedAuthorization {
            problem: AuthorizationProblem::NoToken,
        });
    }
    Ok(token)
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=').as_bytes();
    let mut words = body.chunks_exact(8);
    !body.is_empty()
        && words.by_ref().all(|word| {
            let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            token68_word(word)
        })
        && words.remainder().iter().copied().all(is_token68_byte)
}

/// Eight bytes at once: a tenth of a 1 KB token's check byte by byte.
const fn token68_word(w: u64) -> bool {
    const fn every(b: u8) -> u64 {
        0x0101_0101_0101_0101 * b as u64
    }
    const HIGH: u64 = every(0x80);
    // A byte `b` below 0x80 is at least `lo` when `b + (0x80 - lo)` has its high bit, and at most
    // `hi` when `b + (0x7f - hi)` has not; neither sum passes 0xff, so bytes do not carry.
    const fn within(w: u64, lo: u8, hi: u8) -> u64 {
        w.wrapping_add(every(0x80 - lo)) & !w.wrapping_add(every(0x7f - hi)) & HIGH
    }
    if w & HIGH != 0 {
        return false;
    }
    let valid = within(w, b'-', b'9') // - . / 0-9
        | within(w, b'A', b'Z')
        | within(w, b'a', b'z')
        | within(w, b'+', b'+')
        | within(w, b'_', b'_')
        | within(w, b'~', b'~');
    valid == HIGH
}

/// Which bytes a token68 is made of (all ASCII): bit `b` of `TOKEN68[b / 64]` set for byte `b`,
/// so a byte is checked with one shift of a 64-bit word (a search of the six punctuation
/// characters per byte was a fifth of a cache hit's own time in Wasm for a 1 KB token).
const TOKEN68: [u64; 2] = {
    let mut masks = [0u64; 2];
    let mut c: u8 = 0;
    while c < 128 {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/') {
            if c < 64 {
                masks[0] |= 1 << c;
            } else {
                masks[1] |= 1 << (c - 64);
            }
        }
        c += 1;
    }
    masks
};

fn is_token68_byte(b: u8) -> bool {
    let [low, high] = TOKEN68;
    match b {
        0..=63 => (low >> b) & 1 == 1,
        64..=127 => (high >> (b - 64)) & 1 == 1,
        _ => false,
    }
}

/// `Authorization`, with repeated headers joined by commas as HTTP does (RFC 9110 §5.3): a
/// request carrying two is then refused as malformed instead of being decided on either one.
pub fn authorization(headers: &[(String, String)]) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    let first = values.next()?;
    let mut joined = first.to_string();
    for more in values {
        joined.push_str(", ");
        joined.push_str(more);
    }
    Some(joined)
}

/// Every `DPoP` header value, in order (exactly one is valid, RFC 9449 §4.3 check 1).
pub fn dpop_proofs(headers: &[(String, String)]) -> Vec<&str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("dpop"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_words_agree_with_the_bytes() {
        // Every byte at every place of a word of otherwise valid bytes, and of a word of
        // otherwise invalid ones.
        for fill in [b'a', b'~', b'0', b' ', 0xff] {
            for place in 0..8 {
                for b in 0..=u8::MAX {
                    let mut word = [fill; 8];
                    word[place] = b;
                    let want = word.iter().copied().all(is_token68_byte);
                    assert_eq!(token68_word(u64::from_le_bytes(word)), want, "{word:?}");
                }
            }
        }
        // Lengths around the word size, each byte changed in turn.
        for len in 1..=25 {
            let base: Vec<u8> = (0..len).map(|i| b"aZ9-._~+/"[i % 9]).collect();
            for at in 0..len {
                for b in [
                    b' ', b',', b'=', b'"', 0x7f, b'@', b'[', b'`', b'{', b'*', b',', b':',
                ] {
                    let mut token = base.clone();
                    token[at] = b;
                    let text = String::from_utf8_lossy(&token).into_owned();
                    let body = text.trim_end_matches('=');
                    let want = !body.is_empty() && body.bytes().all(is_token68_byte);
                    assert_eq!(is_token68(&text), want, "{text:?}");
                }
            }
            assert!(is_token68(&String::from_utf8_lossy(&base)));
        }
    }

    #[test]
    fn token68_bytes_are_exactly_rfc_7235s() {
        for b in 0..=u8::MAX {
            let spec = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            let mut token = vec![b'a', b];
            token.push(b'z');
            let text = String::from_utf8_lossy(&token);
            assert_eq!(is_token68(&text), spec, "byte {b:#04x}");
        }
        assert!(is_token68("abc=="));
        assert!(!is_token68("=="));
        assert!(!is_token68("a=b"));
    }

    #[test]
    fn credentials_tell_bearer_from_dpop() {
        assert_eq!(
            credentials(Some("Bearer a.b.c")),
            Ok((AuthScheme::Bearer, "a.b.c"))
        );
        assert_eq!(
            credentials(Some("DPoP a.b.c")),
            Ok((AuthScheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            credentials(Some(" dpop   a.b.c ")),
            Ok((AuthScheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            credentials(Some("DPoP")),
            Err(Denial::MalformedAuthorization {
                problem: AuthorizationProblem::NoToken
            })
        );
        assert_eq!(
            credentials(Some("DPoP a, Bearer b")),
            Err(Denial::MalformedAuthorization {
                problem: AuthorizationProblem::NotToken68
            })
        );
        assert_eq!(credentials(Some("DPoPx a")), Err(Denial::UnsupportedScheme));
        assert_eq!(credentials(None), Err(Denial::MissingToken));
        // bearer_token itself still takes only Bearer.
        assert_eq!(bearer_token(Some("DPoP a")), Err(Denial::UnsupportedScheme));
    }

    #[test]
    fn bearer_token_table() {
        let ok = [
            ("Bearer abc.def.ghi", "abc.def.ghi"),
            ("bearer abc", "abc"),
            ("BEARER   abc", "abc"),
            ("Bearer a-b_c~d+e/f==", "a-b_c~d+e/f=="),
            (" Bearer abc ", "abc"),
        ];
        for (header, token) in ok {
            assert_eq!(bearer_token(Some(header)), Ok(token), "{header:?}");
        }
        assert_eq!(bearer_token(None), Err(Denial::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic dXNlcjpwYXNz")),
            Err(Denial::UnsupportedScheme)
        );
        assert_eq!(
            bearer_token(Some("Bearerabc")),
            Err(Denial::UnsupportedScheme)
        );
        let malformed = [
            ("", AuthorizationProblem::Empty),
            ("   ", AuthorizationProblem::Empty),
            ("Bearer", AuthorizationProblem::NoToken),
            ("Bearer    ", AuthorizationProblem::NoToken),
            ("Bearer a b", AuthorizationProblem::NotToken68),
            ("Bearer a,Bearer b", AuthorizationProblem::NotToken68),
            ("Bearer a\"b", AuthorizationProblem::NotToken68),
            ("Bearer ===", AuthorizationProblem::NotToken68),
            ("Bearer a=b", AuthorizationProblem::NotToken68),
            ("Bearer \tabc", AuthorizationProblem::NotToken68),
        ];
        for (header, problem) in malformed {
            assert_eq!(
                bearer_token(Some(header)),
                Err(Denial::MalformedAuthorization { problem }),
                "{header:?}"
            );
        }
    }
}
