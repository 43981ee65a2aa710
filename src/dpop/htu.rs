//! The URI a DPoP proof is for (`htu`, RFC 9449 §4.2) and the request's own, compared after the
//! same normalization (RFC 9449 §4.3 check 9: RFC 3986 §6.2.2 syntax-based and §6.2.3
//! scheme-based normalization), so a client that writes `HTTPS://API.Example.com:443/a%7eb`
//! matches a request Envoy sees as `https`, `api.example.com`, `/a~b`.
//!
//! Both sides go through [`normalize`]: query and fragment dropped, scheme and host lower-cased,
//! the scheme's default port removed, an empty path made `/`, percent-encodings upper-cased and
//! unreserved characters decoded, dot segments removed. A URI that is not absolute
//! `scheme://authority[path]`, carries user information or has a broken percent-encoding
//! normalizes to nothing, and nothing matches it.

/// The normalized URI of a request: one of the gateway's configured origins
/// (`https://api.example.com`) and the request's `:path`. The origin is configuration, never the
/// client's `Host`/`:authority` or `:scheme` (which the client chooses).
pub fn request_uri(origin: &str, path: &str) -> Option<String> {
    if origin.is_empty() || !path.starts_with('/') {
        return None;
    }
    recent::normalize(&format!("{origin}{path}"))
}

/// [`normalize`] of the same texts again and again (a gateway's origins with the paths its
/// clients call, and each client's `htu`): the last results per thread (a worker is one thread),
/// eight direct-mapped slots by a hash of the text, an entry used only for the identical text.
pub(super) mod recent {
    use std::cell::RefCell;

    use crate::dpop::memo::{self, Memo};

    const SLOTS: usize = 8;
    /// Longer texts are normalized every time.
    const MAX_TEXT: usize = 512;

    thread_local! {
        static MEMO: RefCell<Memo<(Box<str>, Option<String>), SLOTS>> =
            const { RefCell::new(Memo::new()) };
    }

    pub fn normalize(text: &str) -> Option<String> {
        if text.len() > MAX_TEXT {
            return super::normalize(text);
        }
        let at = memo::fnv(text);
        let known = memo::recall(&MEMO, at, |(seen, normal)| {
            crate::dpop::proof::same_text(seen, text).then(|| normal.clone())
        });
        if let Some(normal) = known {
            return normal;
        }
        let normal = super::normalize(text);
        memo::remember(&MEMO, at, (text.into(), normal.clone()));
        normal
    }
}

/// The comparable form of an absolute http(s) URI, without its query and fragment.
pub fn normalize(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !valid_scheme {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = normalize_authority(&scheme, authority)?;
    let path = normalize_path(path)?;
    Some(format!("{scheme}://{authority}{path}"))
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

fn normalize_authority(scheme: &str, authority: &str) -> Option<String> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // `[v6]:port`, `host:port`, or a host alone.
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // A registered name or IPv4 address (no ':' or brackets), or a bracketed IPv6 address.
    let ok_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b))
        }
    };
    if !ok_host {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let number: u16 = digits.parse().ok()?;
            let number = number.to_string();
            (default_port(scheme) != Some(number.as_str())).then_some(number)
        }
    };
    Some(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn normalize_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("/".to_string());
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (hi, lo) = (bytes.get(i + 1).copied()?, bytes.get(i + 2).copied()?);
            let value = hex(hi)? * 16 + hex(lo)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push(char::from(hi.to_ascii_uppercase()));
                out.push(char::from(lo.to_ascii_uppercase()));
            }
            i += 3;
        } else if b.is_ascii_graphic() {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(remove_dot_segments(&out))
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                kept.pop();
                trailing_slash = i == last;
            }
            other => {
                kept.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_host_and_default_port_are_normalized() {
        let want = Some("https://api.example.com/pets".to_string());
        assert_eq!(normalize("HTTPS://API.Example.COM:443/pets"), want);
        assert_eq!(normalize("https://api.example.com/pets?limit=1#top"), want);
        assert_eq!(
            request_uri("HTTPS://api.example.com:443", "/pets?limit=1"),
            want
        );
        assert_eq!(
            normalize("http://127.0.0.1:8080/a"),
            Some("http://127.0.0.1:8080/a".to_string())
        );
        assert_eq!(normalize("http://h:80"), Some("http://h/".to_string()));
        // 443 is only the default for https.
        assert_eq!(
            normalize("http://h:443/a"),
            Some("http://h:443/a".to_string())
        );
        assert_eq!(
            normalize("http://[::1]:8080/a"),
            Some("http://[::1]:8080/a".to_string())
        );
    }

    #[test]
    fn percent_encodings_and_dot_segments_are_normalized() {
        assert_eq!(
            normalize("https://h/a%7eb/%2f/%7A"),
            Some("https://h/a~b/%2F/z".to_string())
        );
        assert_eq!(
            normalize("https://h/a/./b/../c"),
            Some("https://h/a/c".to_string())
        );
        assert_eq!(normalize("https://h/a/.."), Some("https://h/".to_string()));
        // Normalizing twice changes nothing.
        for uri in [
            "HTTP://H:080//a/%2e%2E/%7e?q",
            "http://[::1]:80/",
            "https://h/%25",
        ] {
            let once = normalize(uri);
            assert!(once.is_some(), "{uri}");
            assert_eq!(once.as_deref().and_then(normalize), once, "{uri}");
        }
        // Path case is significant.
        assert_ne!(normalize("https://h/Pets"), normalize("https://h/pets"));
    }

    #[test]
    fn remembered_results_are_the_results() {
        let texts = [
            "HTTPS://API.Example.COM:443/pets",
            "https://h/a/./b/../c",
            "https://user@h/pets",
            "https://h/a%zz",
            "http://h:80",
            "http://h:81",
        ];
        // Several rounds, so that later ones answer from the memo (and slots are shared).
        for _ in 0..3 {
            for text in texts {
                assert_eq!(recent::normalize(text), normalize(text), "{text}");
            }
        }
        let long = format!("https://h/{}", "a".repeat(600));
        assert_eq!(recent::normalize(&long), normalize(&long));
    }

    #[test]
    fn refuses_what_is_not_an_absolute_uri() {
        for bad in [
            "/pets",
            "https:/h/pets",
            "https://",
            "https://user@h/pets",
            "https://h:99999/pets",
            "https://h:8a/pets",
            "https://h/a%zz",
            "https://h/a%4",
            "https://h/a b",
            "1http://h/",
            "http://a:b:80/",
            "http://[::1/",
            "http://[]/",
            "http://[::1]x/",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
        assert_eq!(request_uri("", "/a"), None);
        assert_eq!(request_uri("https://", "/a"), None);
        assert_eq!(request_uri("https://h", "a"), None);
    }
}
