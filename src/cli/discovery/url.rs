//! The small slice of URL handling the generator needs: `http`/`https` URLs with a host, an optional
//! port and a path. Kept local (no URL crate) because every consumer here only needs scheme, host,
//! port and path, and the parsing rules must be strict rather than forgiving.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An absolute `http`/`https` URL, split into the parts an Envoy cluster and a request need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: Scheme,
    /// Host without brackets (`::1`, not `[::1]`), lower-cased.
    pub host: String,
    pub port: u16,
    /// Whether the port was written in the URL (kept so `authority()` round-trips).
    pub explicit_port: bool,
    /// Path plus query, always starting with `/`.
    pub path_and_query: String,
}

/// Why a string is not an acceptable URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    NotHttp,
    MissingHost,
    UserInfo,
    BadPort,
    Fragment,
    Whitespace,
}

impl UrlProblem {
    pub fn code(self) -> &'static str {
        match self {
            UrlProblem::NotHttp => "url_not_http",
            UrlProblem::MissingHost => "url_missing_host",
            UrlProblem::UserInfo => "url_has_userinfo",
            UrlProblem::BadPort => "url_bad_port",
            UrlProblem::Fragment => "url_has_fragment",
            UrlProblem::Whitespace => "url_has_whitespace",
        }
    }
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlProblem::NotHttp => "must start with http:// or https://",
            UrlProblem::MissingHost => "has no host",
            UrlProblem::UserInfo => "must not carry user:password@",
            UrlProblem::BadPort => "has an invalid port",
            UrlProblem::Fragment => "must not have a #fragment",
            UrlProblem::Whitespace => "must not contain whitespace",
        })
    }
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<HttpUrl, UrlProblem> {
        if input.chars().any(char::is_whitespace) {
            return Err(UrlProblem::Whitespace);
        }
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(input, "https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ci(input, "http://") {
            (Scheme::Http, rest)
        } else {
            return Err(UrlProblem::NotHttp);
        };
        if rest.contains('#') {
            return Err(UrlProblem::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest
            .split_at_checked(split)
            .ok_or(UrlProblem::MissingHost)?;
        if authority.contains('@') {
            return Err(UrlProblem::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(UrlProblem::MissingHost);
        }
        let path_and_query = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(scheme.default_port()),
            explicit_port: port.is_some(),
            path_and_query,
        })
    }

    /// `host[:port]` as it goes into `:authority` / `Host` (port only when not the default).
    pub fn authority(&self) -> String {
        let host = self.host_for_authority();
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The host with brackets restored for IPv6 literals.
    pub fn host_for_authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or(self.path_and_query.as_str())
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// What a cluster for this URL connects to: `scheme://host:port`, the port always written.
    /// URLs with one target may share a cluster; URLs with different targets never may.
    pub fn target(&self) -> String {
        format!(
            "{}://{}:{}",
            self.scheme.as_str(),
            self.host_for_authority(),
            self.port
        )
    }

    /// 8 hex digits of SHA-256 over [`HttpUrl::target`]: the same on every run, and what keeps
    /// generated names apart when their readable part is the same (`a.b-c` and `a-b.c`).
    pub fn target_digest(&self) -> String {
        Sha256::digest(self.target().as_bytes())
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Loopback hosts may use plain http: `localhost`, 127.0.0.0/8 and `::1`.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.ip().is_some_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_for_authority();
        if self.explicit_port {
            write!(
                f,
                "{}://{host}:{}{}",
                self.scheme.as_str(),
                self.port,
                self.path_and_query
            )
        } else {
            write!(
                f,
                "{}://{host}{}",
                self.scheme.as_str(),
                self.path_and_query
            )
        }
    }
}

/// Two different targets that would get the same generated name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCollision {
    pub name: String,
    pub first: String,
    pub second: String,
}

impl fmt::Display for NameCollision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "generated name `{}` would be shared by {} and {}; refusing to merge two targets",
            self.name, self.first, self.second
        )
    }
}

impl std::error::Error for NameCollision {}

/// The generated names handed out so far, each with the one target it stands for. Generation
/// claims every name it writes here, so two targets can never end up behind one name.
#[derive(Debug, Default)]
pub struct TargetNames {
    by_name: BTreeMap<String, String>,
}

impl TargetNames {
    /// Records that `name` stands for `target`: fine again for the same target, an error for
    /// another one.
    pub fn claim(&mut self, name: &str, target: &str) -> Result<(), NameCollision> {
        match self.by_name.get(name) {
            Some(first) if first != target => Err(NameCollision {
                name: name.to_string(),
                first: first.clone(),
                second: target.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.by_name.insert(name.to_string(), target.to_string());
                Ok(())
            }
        }
    }
}

fn strip_prefix_ci<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, tail) = input.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlProblem> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(UrlProblem::MissingHost)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(UrlProblem::BadPort),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((authority, None)),
    }
}

fn parse_port(text: &str) -> Result<u16, UrlProblem> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlProblem::BadPort),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_port_and_path() {
        let url = HttpUrl::parse("https://Login.Example.com:8443/t/acme/keys?x=1").unwrap();
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!(url.host, "login.example.com");
        assert_eq!(url.port, 8443);
        assert_eq!(url.path_and_query, "/t/acme/keys?x=1");
        assert_eq!(url.path(), "/t/acme/keys");
        assert_eq!(url.authority(), "login.example.com:8443");
    }

    #[test]
    fn default_port_is_left_out_of_authority() {
        let url = HttpUrl::parse("https://idp.example.com").unwrap();
        assert_eq!(url.port, 443);
        assert_eq!(url.path_and_query, "/");
        assert_eq!(url.authority(), "idp.example.com");
    }

    #[test]
    fn ipv6_literal_keeps_brackets_in_authority() {
        let url = HttpUrl::parse("http://[::1]:9000/jwks").unwrap();
        assert_eq!(url.host, "::1");
        assert!(url.is_loopback());
        assert_eq!(url.authority(), "[::1]:9000");
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "http://localhost/",
            "http://127.0.0.1/",
            "http://127.8.9.10:1/",
        ] {
            assert!(HttpUrl::parse(ok).unwrap().is_loopback(), "{ok}");
        }
        for not in [
            "http://10.0.0.1/",
            "http://example.com/",
            "http://localhost.example.com/",
        ] {
            assert!(!HttpUrl::parse(not).unwrap().is_loopback(), "{not}");
        }
    }

    #[test]
    fn targets_keep_scheme_host_and_port_apart() {
        let target = |u: &str| HttpUrl::parse(u).unwrap().target();
        assert_eq!(
            target("https://IdP.example.com/keys"),
            "https://idp.example.com:443"
        );
        assert_eq!(
            target("https://idp.example.com:443/other"),
            "https://idp.example.com:443"
        );
        assert_eq!(target("http://[::1]:9000/jwks"), "http://[::1]:9000");
        let digest = |u: &str| HttpUrl::parse(u).unwrap().target_digest();
        let samples = [
            "https://idp.example-corp.com/",
            "https://idp-example.corp.com/",
            "http://idp.example-corp.com:443/",
            "https://idp.example-corp.com:8443/",
        ];
        let digests: std::collections::BTreeSet<String> =
            samples.iter().map(|u| digest(u)).collect();
        assert_eq!(digests.len(), samples.len(), "{digests:?}");
        // Stable across runs and builds: a fixed value, not a per-process hasher.
        assert_eq!(digest("https://idp.example.com/"), {
            let full = Sha256::digest(b"https://idp.example.com:443");
            format!(
                "{:02x}{:02x}{:02x}{:02x}",
                full[0], full[1], full[2], full[3]
            )
        });
        assert_eq!(
            digest("https://idp.example.com/a"),
            digest("https://idp.example.com:443/b")
        );
    }

    #[test]
    fn a_name_stands_for_one_target() {
        let mut names = TargetNames::default();
        names.claim("c", "https://a:443").unwrap();
        names.claim("c", "https://a:443").unwrap();
        names.claim("d", "https://a:443").unwrap();
        let err = names.claim("c", "https://b:443").unwrap_err();
        assert_eq!(err.first, "https://a:443");
        assert_eq!(err.second, "https://b:443");
        let text = err.to_string();
        assert!(
            text.contains("`c`")
                && text.contains("https://a:443")
                && text.contains("https://b:443")
        );
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(HttpUrl::parse("ftp://x/"), Err(UrlProblem::NotHttp));
        assert_eq!(HttpUrl::parse("https:///x"), Err(UrlProblem::MissingHost));
        assert_eq!(HttpUrl::parse("https://u:p@x/"), Err(UrlProblem::UserInfo));
        assert_eq!(HttpUrl::parse("https://x:0/"), Err(UrlProblem::BadPort));
        assert_eq!(HttpUrl::parse("https://x:99999/"), Err(UrlProblem::BadPort));
        assert_eq!(HttpUrl::parse("https://x/#a"), Err(UrlProblem::Fragment));
        assert_eq!(HttpUrl::parse("https://x/ a"), Err(UrlProblem::Whitespace));
    }
}
