//! Request-path hygiene: turn the `:path` Envoy hands the filter into decoded segments, or refuse it.
//!
//! The filter decides on the path but does not rewrite it, so the upstream sees the original bytes.
//! Anything an upstream could read as a *different* path than the one keygate matched is refused
//! (400 `path_not_canonical`) instead of guessed at: encoded `/` `\` `.` `%` or NUL, dot segments,
//! empty segments, backslashes, `;` path parameters (some servers drop `;…` from a segment),
//! fragments, control and non-ASCII bytes. A character whose raw form is refused or is a delimiter
//! (`;`, `?`, `#`) is refused percent-encoded too, since an upstream that decodes first reads the
//! delimiter; so is any percent-encoded non-ASCII character (Unicode case folding and compatibility
//! normalization map `%C5%BF` ſ to `s` and `%E2%84%AA` the Kelvin sign to `k`), and a segment that
//! ends in `.` or a space (Windows and IIS drop them: `secret.` is `secret` there).
//! Other percent-escapes are decoded once, per segment, before matching, so `/%61dmin` is matched as
//! `/admin`, exactly what a decoding upstream will serve.

/// Why a path was refused. `code()` is stable and used in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Does not start with `/` (authority-form, asterisk-form, absolute URL).
    NotAbsolute,
    /// Contains `#`: fragments are never sent by clients, a raw one is a smuggling attempt.
    Fragment,
    /// Space, control or non-ASCII byte in the raw path.
    BadByte,
    /// A raw `\`, which some servers treat as `/`.
    Backslash,
    /// `;` path parameters, which some servers strip from a segment before routing.
    PathParameter,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`, `%5C`, `%2E`, `%25`, `%00`, `%3B`, `%3F` or `%23`: an escape that could change the
    /// segment structure, or add a path parameter, query or fragment, after a round of decoding.
    EncodedDelimiter,
    /// An escape that decodes to a non-ASCII character, which an upstream may fold to ASCII.
    EncodedNonAscii,
    /// A segment that ends in `.` or a space, which some servers drop.
    TrailingDotOrSpace,
    /// An escape that decodes to a control byte or to bytes that are not UTF-8.
    BadEncodedByte,
    /// `.` or `..` segment.
    DotSegment,
    /// `//` (an empty segment before the end).
    EmptySegment,
    /// Only a different letter case separates the path from a more specific API or resource
    /// (`/pets/v1/ADMIN` beside `/admin`): a case-insensitive upstream would serve the latter.
    CaseVariant,
}

impl PathProblem {
    pub fn code(&self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "not_absolute",
            PathProblem::Fragment => "fragment",
            PathProblem::BadByte => "bad_byte",
            PathProblem::Backslash => "backslash",
            PathProblem::PathParameter => "path_parameter",
            PathProblem::BadEscape => "bad_escape",
            PathProblem::EncodedDelimiter => "encoded_delimiter",
            PathProblem::EncodedNonAscii => "encoded_non_ascii",
            PathProblem::TrailingDotOrSpace => "trailing_dot_or_space",
            PathProblem::BadEncodedByte => "bad_encoded_byte",
            PathProblem::DotSegment => "dot_segment",
            PathProblem::EmptySegment => "empty_segment",
            PathProblem::CaseVariant => "case_variant",
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "the path must start with '/'",
            PathProblem::Fragment => "the path contains a fragment ('#')",
            PathProblem::BadByte => "the path contains a space, control or non-ASCII byte",
            PathProblem::Backslash => "the path contains a backslash",
            PathProblem::PathParameter => "the path contains ';' parameters",
            PathProblem::BadEscape => "the path contains a malformed percent-escape",
            PathProblem::EncodedDelimiter => {
                "the path contains an encoded '/', '\\', '.', '%', ';', '?', '#' or NUL"
            }
            PathProblem::EncodedNonAscii => {
                "the path contains a percent-encoded non-ASCII character"
            }
            PathProblem::TrailingDotOrSpace => "a path segment ends in '.' or a space",
            PathProblem::BadEncodedByte => {
                "the path contains an escape that decodes to a control byte or invalid UTF-8"
            }
            PathProblem::DotSegment => "the path contains a '.' or '..' segment",
            PathProblem::EmptySegment => "the path contains an empty segment ('//')",
            PathProblem::CaseVariant => {
                "the path differs only in letter case from a more specific resource"
            }
        }
    }
}

/// A request path after hygiene: decoded segments, without the query.
///
/// `/` is no segments; `/a/b/` is segments `a`, `b` with `trailing_slash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    pub segments: Vec<String>,
    pub trailing_slash: bool,
}

impl CanonicalPath {
    /// Check and decode the `:path` pseudo-header value.
    pub fn parse(raw: &str) -> Result<CanonicalPath, PathProblem> {
        // A raw `#` anywhere (even in the query) is refused rather than interpreted.
        if raw.contains('#') {
            return Err(PathProblem::Fragment);
        }
        let path = match raw.split_once('?') {
            Some((path, _query)) => path,
            None => raw,
        };
        let body = path.strip_prefix('/').ok_or(PathProblem::NotAbsolute)?;
        for byte in body.bytes() {
            match byte {
                b'\\' => return Err(PathProblem::Backslash),
                b';' => return Err(PathProblem::PathParameter),
                0x21..=0x7e => {}
                _ => return Err(PathProblem::BadByte),
            }
        }
        if body.is_empty() {
            return Ok(CanonicalPath {
                segments: Vec::new(),
                trailing_slash: false,
            });
        }
        let (body, trailing_slash) = match body.strip_suffix('/') {
            Some(rest) => (rest, true),
            None => (body, false),
        };
        let mut segments = Vec::new();
        for raw_segment in body.split('/') {
            let segment = decode_segment(raw_segment)?;
            match segment.as_str() {
                "" => return Err(PathProblem::EmptySegment),
                "." | ".." => return Err(PathProblem::DotSegment),
                s if s.ends_with(['.', ' ']) => return Err(PathProblem::TrailingDotOrSpace),
                _ => segments.push(segment),
            }
        }
        Ok(CanonicalPath {
            segments,
            trailing_slash,
        })
    }
}

/// Decode the percent-escapes of one segment, refusing the escapes listed in [`PathProblem`].
fn decode_segment(raw: &str) -> Result<String, PathProblem> {
    if !raw.contains('%') {
        return Ok(raw.to_string());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let high = bytes
            .next()
            .and_then(hex_value)
            .ok_or(PathProblem::BadEscape)?;
        let low = bytes
            .next()
            .and_then(hex_value)
            .ok_or(PathProblem::BadEscape)?;
        let decoded = (high << 4) | low;
        match decoded {
            b'/' | b'\\' | b'.' | b'%' | 0 | b';' | b'?' | b'#' => {
                return Err(PathProblem::EncodedDelimiter)
            }
            0x01..=0x1f | 0x7f => return Err(PathProblem::BadEncodedByte),
            _ => out.push(decoded),
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathProblem::BadEncodedByte)?;
    // Raw non-ASCII bytes were refused before decoding, so any here came from an escape.
    if !text.is_ascii() {
        return Err(PathProblem::EncodedNonAscii);
    }
    Ok(text)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(raw: &str) -> (Vec<String>, bool) {
        let p = CanonicalPath::parse(raw).unwrap();
        (p.segments, p.trailing_slash)
    }

    #[test]
    fn plain_paths() {
        assert_eq!(segs("/"), (vec![], false));
        assert_eq!(segs("/a/b"), (vec!["a".into(), "b".into()], false));
        assert_eq!(segs("/a/b/"), (vec!["a".into(), "b".into()], true));
    }

    #[test]
    fn query_is_stripped() {
        assert_eq!(
            segs("/a/b?x=%2F&y=../z"),
            (vec!["a".into(), "b".into()], false)
        );
        assert_eq!(segs("/?q"), (vec![], false));
    }

    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(segs("/%61dmin"), (vec!["admin".into()], false));
        assert_eq!(segs("/a%20b"), (vec!["a b".into()], false));
        assert_eq!(segs("/a%3Db%2C%40"), (vec!["a=b,@".into()], false));
        // Dots and spaces inside a segment are fine; only the end is refused.
        assert_eq!(
            segs("/a.b/.well-known/x%20y"),
            (
                vec!["a.b".into(), ".well-known".into(), "x y".into()],
                false
            )
        );
    }

    #[test]
    fn refusals() {
        let table = [
            ("pets", PathProblem::NotAbsolute),
            ("", PathProblem::NotAbsolute),
            ("*", PathProblem::NotAbsolute),
            ("/a#b", PathProblem::Fragment),
            ("/a?b#c", PathProblem::Fragment),
            ("/a b", PathProblem::BadByte),
            ("/a\tb", PathProblem::BadByte),
            ("/caf\u{e9}", PathProblem::BadByte),
            ("/a\\b", PathProblem::Backslash),
            ("/admin;x=1", PathProblem::PathParameter),
            ("/a%2", PathProblem::BadEscape),
            ("/a%zz", PathProblem::BadEscape),
            ("/a%2Fb", PathProblem::EncodedDelimiter),
            ("/a%2fb", PathProblem::EncodedDelimiter),
            ("/a%5Cb", PathProblem::EncodedDelimiter),
            ("/a%5cb", PathProblem::EncodedDelimiter),
            ("/%2e%2e/admin", PathProblem::EncodedDelimiter),
            ("/a%252Fb", PathProblem::EncodedDelimiter),
            ("/a%00", PathProblem::EncodedDelimiter),
            ("/a%0A", PathProblem::BadEncodedByte),
            ("/a%FF", PathProblem::BadEncodedByte),
            ("/a%C3", PathProblem::BadEncodedByte),
            // Encoded forms of delimiters whose raw form is refused or means something else.
            ("/secret%3Bx", PathProblem::EncodedDelimiter),
            ("/secret%3bx", PathProblem::EncodedDelimiter),
            ("/secret%3Fx", PathProblem::EncodedDelimiter),
            ("/secret%23x", PathProblem::EncodedDelimiter),
            // Any encoded non-ASCII character: ſ, the Kelvin sign, é, a fullwidth letter.
            ("/%C5%BFecret", PathProblem::EncodedNonAscii),
            ("/%E2%84%AAey", PathProblem::EncodedNonAscii),
            ("/caf%C3%A9", PathProblem::EncodedNonAscii),
            ("/%EF%BD%81dmin", PathProblem::EncodedNonAscii),
            // Trailing dots and spaces, raw or encoded.
            ("/secret.", PathProblem::TrailingDotOrSpace),
            ("/secret./x", PathProblem::TrailingDotOrSpace),
            ("/secret...", PathProblem::TrailingDotOrSpace),
            ("/secret%20", PathProblem::TrailingDotOrSpace),
            ("/secret%20/", PathProblem::TrailingDotOrSpace),
            ("/...", PathProblem::TrailingDotOrSpace),
            ("/a/../b", PathProblem::DotSegment),
            ("/a/./b", PathProblem::DotSegment),
            ("/..", PathProblem::DotSegment),
            ("//a", PathProblem::EmptySegment),
            ("/a//b", PathProblem::EmptySegment),
            ("/a//", PathProblem::EmptySegment),
        ];
        for (raw, want) in table {
            assert_eq!(CanonicalPath::parse(raw), Err(want), "{raw:?}");
        }
    }
}
