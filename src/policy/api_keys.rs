//! API keys: an application's keys, known by the SHA-256 of the whole key string (`kg_...`), and
//! what an API accepts (`apis[].security`, `apis[].api_key`).
//!
//! A key is judged with one SHA-256 and one map lookup ([`Policy::application_for_key`]: hash →
//! application, the one place that knows where applications live), then the same application and
//! subscription checks as a token. A key carries no scopes, groups or claims: a resource that
//! requires any of them needs a token.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use std::borrow::Cow;

use super::applications::{ApplicationLookup, KeyLookup, KeyOwner, Lookup};
use super::compile::Checker;
use super::refusal::AccessRefusal;
use super::requirements::needs_token;
use super::{Api, Policy, Resource, RouteMatch};
use crate::config::{ApiConfig, ApiKeyConfig, ApiKeyLocation, ConfigProblem, Expiry, Security};

/// What every keygate API key starts with (secret scanners look for it).
pub const API_KEY_PREFIX: &str = "kg_";

/// The SHA-256 of a key string.
pub type KeyHash = [u8; 32];

/// The SHA-256 of the whole key string, as configured (`sha256`).
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A hash as the configuration writes it: 64 lower-case hex digits.
pub fn hash_hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lower-case hex digits back into a hash.
pub fn parse_hash_hex(text: &str) -> Option<KeyHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let (hi, lo) = match pair {
            [hi, lo] => (digit(*hi)?, digit(*lo)?),
            _ => return None,
        };
        *byte = hi << 4 | lo;
    }
    Some(out)
}

/// An expiry as Unix seconds (an RFC 3339 date-time is converted).
pub fn expiry_seconds(expiry: &Expiry) -> Option<u64> {
    match expiry {
        Expiry::Unix(seconds) => Some(*seconds),
        Expiry::Text(text) => parse_rfc3339(text),
    }
}

/// An RFC 3339 date-time (`2027-01-31T12:00:00Z`, `...+02:00`, fractions of a second dropped)
/// as Unix seconds; `None` when it is not one or lies before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = bytes.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|b| allowed.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut rest = bytes.get(19..)?;
    if rest.first() == Some(&b'.') {
        let digits = rest
            .iter()
            .skip(1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        rest = rest.get(1 + digits..)?;
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let all = [*h1, *h2, *m1, *m2];
            if !all.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let month_days = usize::try_from(month - 1)
        .ok()
        .and_then(|m| days_in.get(m))?;
    if day < 1 || day > *month_days || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    u64::try_from(seconds).ok()
}

/// Which credentials an API accepts, and where its API key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCredentials {
    pub oauth2: bool,
    /// `Some` when the API accepts API keys.
    pub api_key: Option<KeySource>,
}

impl Default for ApiCredentials {
    fn default() -> Self {
        ApiCredentials {
            oauth2: true,
            api_key: None,
        }
    }
}

/// Where an API key is read: a header (lower case) and, when opted in, a query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    pub header: String,
    pub query: Option<String>,
}

/// One configured key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The application's index.
    application: usize,
    /// The key's name (`<prefix>api-key` upstream).
    pub name: String,
    /// Unix seconds after which the key is refused; `None`: never.
    pub expires: Option<u64>,
}

/// Every configured key by hash.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<KeyHash, KeyEntry>,
}

impl ApiKeys {
    /// Keys configured.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Why an API key does not open a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No application has a key with this hash (never issued, or revoked by removing it).
    Unknown,
    /// The key's `expires` has passed.
    Expired,
    /// The application or its subscription refuses (the same refusals as for a token).
    Access(AccessRefusal),
    /// The resource requires scopes, groups or claims, which only a token carries; `scopes` are
    /// the scopes it names (any of, then all of).
    NeedsToken { scopes: Vec<String> },
}

/// What an API key is granted on a resource.
#[derive(Debug, Clone)]
pub struct KeyAccess<'p> {
    pub application: Cow<'p, str>,
    /// The key's configured name.
    pub key_name: Cow<'p, str>,
    pub api: &'p Api,
    pub resource: &'p Resource,
    pub budget: Option<std::sync::Arc<super::tier::Budget>>,
}

impl Policy {
    /// The inline application a key hash belongs to, with the key's entry (its name and expiry).
    pub fn application_for_key(&self, hash: &KeyHash) -> Option<(&KeyEntry, &str)> {
        let entry = self.api_keys.by_hash.get(hash)?;
        let application = self.inline_applications().get(entry.application)?;
        Some((entry, application.name.as_str()))
    }

    /// The owner of a key hash among the plugin config's own applications.
    pub(super) fn inline_key_owner(&self, hash: &KeyHash) -> KeyLookup<'_> {
        let Some(entry) = self.api_keys.by_hash.get(hash) else {
            return KeyLookup::Unknown;
        };
        match self.inline_applications().get(entry.application) {
            Some(application) => KeyLookup::Found(KeyOwner {
                key_name: Cow::Borrowed(&entry.name),
                expires: entry.expires,
                application: Cow::Borrowed(application),
            }),
            None => KeyLookup::Unknown,
        }
    }

    /// Decision steps 2-7 for an API key with the plugin config's own applications.
    pub fn authorize_key<'p>(
        &'p self,
        route: &RouteMatch,
        key: &KeyHash,
        now: f64,
    ) -> Result<KeyAccess<'p>, KeyRefusal> {
        self.authorize_key_with(route, key, now, self)
    }

    /// Decision steps 2-7 for an API key (its SHA-256, [`hash_key`]) at `now` (Unix seconds): the
    /// key and its application (found by `applications`: inline or the directory), expiry, the
    /// subscription to the API of `route`, and the resource's requirements.
    pub fn authorize_key_with<'p>(
        &'p self,
        route: &RouteMatch,
        key: &KeyHash,
        now: f64,
        applications: &dyn ApplicationLookup,
    ) -> Result<KeyAccess<'p>, KeyRefusal> {
        let (api, resource) = self
            .resource(route)
            .ok_or(KeyRefusal::Access(AccessRefusal::ResourceNotFound))?;
        let owner = match applications.find_key(key) {
            KeyLookup::Found(owner) => owner,
            KeyLookup::Unknown => return Err(KeyRefusal::Unknown),
            KeyLookup::Unavailable { retry_after } => {
                return Err(KeyRefusal::Access(AccessRefusal::DirectoryUnavailable {
                    retry_after,
                }))
            }
        };
        if owner.expires.is_some_and(|at| now >= at as f64) {
            return Err(KeyRefusal::Expired);
        }
        let application = &*owner.application;
        let subscription = self
            .active_subscription(application, api, route)
            .map_err(KeyRefusal::Access)?;
        if needs_token(resource) {
            let mut scopes = resource.scopes.clone();
            scopes.extend(resource.scopes_all.iter().cloned());
            return Err(KeyRefusal::NeedsToken { scopes });
        }
        let budget = subscription.budget.clone();
        Ok(KeyAccess {
            application: Cow::Owned(application.name.clone()),
            key_name: Cow::Owned(owner.key_name.into_owned()),
            api,
            resource,
            budget,
        })
    }
}

/// The inline applications: the plugin config's own client ids and keys.
impl ApplicationLookup for Policy {
    fn find(&self, key_manager: super::KeyManagerId, client_id: &str) -> Lookup<'_> {
        self.inline_applications().find(key_manager, client_id)
    }

    fn find_key(&self, hash: &[u8; 32]) -> KeyLookup<'_> {
        self.inline_key_owner(hash)
    }
}

/// `apis[i].security` and `apis[i].api_key` (`at` is the API's path; `prefix` the identity
/// headers' prefix, `settings.header_prefix`).
pub(super) fn compile_credentials(
    c: &mut Checker,
    at: &str,
    api: &ApiConfig,
    prefix: &str,
) -> ApiCredentials {
    let mut oauth2 = api.security.is_empty();
    let mut api_key = false;
    for (k, security) in api.security.iter().enumerate() {
        let seen = match security {
            Security::Oauth2 => std::mem::replace(&mut oauth2, true),
            Security::ApiKey => std::mem::replace(&mut api_key, true),
        };
        if seen {
            c.invalid(
                format!("{at}.security[{k}]"),
                security_name(*security),
                "listed twice",
            );
        }
    }
    let location = &api.api_key;
    if !api_key {
        if *location != ApiKeyLocation::default() {
            c.invalid(
                format!("{at}.api_key"),
                &location.header,
                "api_key is set but security does not list api_key",
            );
        }
        return ApiCredentials {
            oauth2,
            api_key: None,
        };
    }
    let header = location.header.to_ascii_lowercase();
    let token = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let reserved = [
        "authorization",
        "dpop",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "x-forwarded-for",
    ];
    if !token {
        c.invalid(
            format!("{at}.api_key.header"),
            &location.header,
            "a header name is an HTTP token (letters, digits, '-', ...)",
        );
    } else if reserved.contains(&header.as_str()) || header.starts_with("x-envoy-") {
        c.invalid(
            format!("{at}.api_key.header"),
            &location.header,
            "this header has another meaning; choose another name",
        );
    } else {
        let prefix = prefix.to_ascii_lowercase();
        if !prefix.is_empty() && header.starts_with(&prefix) {
            c.invalid(
                format!("{at}.api_key.header"),
                &location.header,
                "a name under settings.header_prefix is an identity header the gateway sets; choose another name",
            );
        }
    }
    if let Some(query) = &location.query {
        let ok = !query.is_empty()
            && query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            c.invalid(
                format!("{at}.api_key.query"),
                query,
                "a query parameter name is letters, digits, '-', '.', '_' or '~'",
            );
        }
    }
    ApiCredentials {
        oauth2,
        api_key: Some(KeySource {
            header,
            query: location.query.clone(),
        }),
    }
}

fn security_name(security: Security) -> &'static str {
    match security {
        Security::Oauth2 => "oauth2",
        Security::ApiKey => "api_key",
    }
}

/// An API that accepts only keys cannot have a resource that requires what only tokens carry
/// (`at` is the resource's path).
pub(super) fn check_key_only_resource(
    c: &mut Checker,
    at: &str,
    credentials: &ApiCredentials,
    resource: &Resource,
) {
    if !credentials.oauth2 && !resource.public && needs_token(resource) {
        c.invalid(
            format!("{at}.scopes"),
            &resource.path,
            "the API accepts only API keys, which carry no scopes, groups or claims",
        );
    }
}

/// `applications[i].api_keys` (`at` is the application's path) into `keys`; `first` remembers
/// where each hash was first configured, across applications.
pub(super) fn compile_keys(
    c: &mut Checker,
    at: &str,
    application: usize,
    configured: &[ApiKeyConfig],
    keys: &mut ApiKeys,
    first: &mut HashMap<KeyHash, String>,
) {
    for (k, key) in configured.iter().enumerate() {
        let at = format!("{at}.api_keys[{k}]");
        c.name(format!("{at}.name"), &key.name);
        let expires = match &key.expires {
            None => None,
            Some(expiry) => {
                let seconds = expiry_seconds(expiry);
                if seconds.is_none() {
                    let shown = match expiry {
                        Expiry::Unix(n) => n.to_string(),
                        Expiry::Text(text) => text.clone(),
                    };
                    c.invalid(
                        format!("{at}.expires"),
                        &shown,
                        "an expiry is an RFC 3339 date-time (2027-01-31T00:00:00Z) or Unix seconds",
                    );
                }
                seconds
            }
        };
        let path = format!("{at}.sha256");
        let Some(hash) = parse_hash_hex(&key.sha256) else {
            if key.sha256.is_empty() {
                c.push(path, ConfigProblem::Missing);
            } else {
                c.invalid(
                    path,
                    &key.sha256,
                    "the SHA-256 of the key is 64 lower-case hex digits",
                );
            }
            continue;
        };
        if let Some(earlier) = first.get(&hash) {
            c.push(
                path,
                ConfigProblem::DuplicateApiKey {
                    first: earlier.clone(),
                },
            );
            continue;
        }
        first.insert(hash, path);
        keys.by_hash.insert(
            hash,
            KeyEntry {
                application,
                name: key.name.clone(),
                expires,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2027-01-31T12:00:00Z"), Some(1_801_396_800));
        assert_eq!(
            parse_rfc3339("2027-01-31T14:00:00+02:00"),
            Some(1_801_396_800)
        );
        assert_eq!(
            parse_rfc3339("2027-01-31T12:00:00.250Z"),
            Some(1_801_396_800)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2027-01-31",
            "2027-01-31T12:00:00",
            "2027-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2027-01-31T12:00:00.Z",
            "2027-01-31T12:00:00+2:00",
            "２０２７-01-31T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_round_trip_as_lower_case_hex() {
        let hash = hash_key("kg_example");
        let hex = hash_hex(&hash);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_hash_hex(&hex), Some(hash));
        assert_eq!(parse_hash_hex(&hex.to_ascii_uppercase()), None);
        assert_eq!(parse_hash_hex(&hex[..62]), None);
        // sha256("abc")
        assert_eq!(
            hash_hex(&hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
