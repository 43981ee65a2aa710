//! The filter's labeled metrics, as Envoy stat names that the bootstrap's tag extraction turns
//! into Prometheus labels.
//!
//! Envoy stats have no labels of their own: a wasm module defines a metric by name, Envoy files it
//! under `wasmcustom.<name>`, and `stats_config.stats_tags` regexes cut tags out of the name. So a
//! labeled sample is one stat whose name carries its labels as `.label.value` pairs after the
//! metric:
//!
//! ```text
//! wasmcustom.keygate_requests.outcome.denied.reason.missing_token.api.pets
//!   → keygate_requests{outcome="denied",reason="missing_token",api="pets"}
//! ```
//!
//! [`stats_tags`] gives one regex per label name, for every metric at once: it skips whole
//! `.label.value` pairs from the metric name on, so a value that happens to equal a label name is
//! never taken for one. A label whose value is unknown for a sample (the key manager of a request
//! refused before its token was read) is left out, not filled with a placeholder.
//!
//! Label values come from the operator's names (key managers, APIs) and from stable codes; never
//! from client ids, subjects or anything else a caller chooses, so the number of series is bounded
//! by the configuration. A name is reduced to `[A-Za-z0-9_-]` (anything else becomes `_`): a `.`
//! would split the stat name.

use std::cell::RefCell;

use super::answering::Answering;
use super::Host;
use crate::policy::Policy;
use crate::policy::{ApiId, KeyManagerId};

/// Every request the filter answered or let through, by outcome; denials by reason.
pub const REQUESTS: &str = "keygate_requests";
/// The filter's own time per request (microseconds; a parked request's wait is not counted).
pub const FILTER_TIME_US: &str = "keygate_filter_time_us";
/// Verified-token cache lookups by result.
pub const TOKEN_CACHE: &str = "keygate_token_cache";
/// Finished JWKS fetches by key manager and outcome.
pub const JWKS_FETCHES: &str = "keygate_jwks_fetches";
/// Finished introspection calls (RFC 7662, opaque tokens) by key manager and outcome.
pub const INTROSPECTIONS: &str = "keygate_introspections";
/// Opaque-token lookups in the shared introspection cache by result.
pub const INTROSPECTION_CACHE: &str = "keygate_introspection_cache";
/// Finished application directory fetches by outcome (`snapshot`, `changes`, `not_modified`,
/// `gone`, or why it failed).
pub const DIRECTORY_FETCHES: &str = "keygate_directory_fetches";
/// Directory entries not applied, by reason (`invalid`, `client_id_taken`, `duplicate_name`).
pub const DIRECTORY_REFUSED: &str = "keygate_directory_refused_entries";
/// Plugin configurations the filter's `on_configure` loaded or refused.
pub const CONFIGURATIONS: &str = "keygate_configurations";
/// Gauge: 1 when Envoy's `verify_signature` checks RS*/ES* signatures, 0 when Wasm does.
pub const SIGNATURE_HOST: &str = "keygate_signature_host";

/// The label names, in the order they appear in stat names.
pub const LABELS: [&str; 6] = [
    "outcome",
    "reason",
    "key_manager",
    "api",
    "result",
    "credential",
];

/// The labels each labeled metric carries (a sample may leave some out, see above).
pub fn labels_of(metric: &str) -> &'static [&'static str] {
    match metric {
        REQUESTS => &["outcome", "reason", "key_manager", "api", "credential"],
        TOKEN_CACHE => &["result"],
        JWKS_FETCHES => &["key_manager", "outcome"],
        INTROSPECTIONS => &["key_manager", "outcome"],
        INTROSPECTION_CACHE => &["result"],
        CONFIGURATIONS => &["outcome"],
        DIRECTORY_FETCHES => &["outcome"],
        DIRECTORY_REFUSED => &["reason"],
        _ => &[],
    }
}

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Forwarded with an identity.
    Allowed,
    /// Answered locally with a denial (`reason` is its code).
    Denied,
    /// A public resource, forwarded without identity.
    Public,
    /// No API matched and `settings.unknown_api` is `pass`.
    Passed,
}

impl RequestOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RequestOutcome::Allowed => "allowed",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Public => "public",
            RequestOutcome::Passed => "passed",
        }
    }
}

/// A labeled stat name being built: `metric(.label.value)*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatName(String);

impl StatName {
    pub fn new(metric: &str) -> Self {
        StatName(metric.to_string())
    }

    /// Adds `label` with `value` reduced to a safe label value; `None` leaves the label out.
    pub fn label(mut self, label: &str, value: Option<&str>) -> Self {
        if let Some(value) = value {
            self.0.push('.');
            self.0.push_str(label);
            self.0.push('.');
            push_label_value(&mut self.0, value);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name reduced to `[A-Za-z0-9_-]`, non-empty (`_` for an empty name).
pub fn label_value(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_label_value(&mut out, name);
    out
}

fn push_label_value(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// `keygate_requests{outcome, reason, key_manager, api}`; `key_manager` and `api` are label
/// values already (see [`label_value`]), `reason` a denial code.
pub fn request(
    outcome: RequestOutcome,
    reason: Option<&str>,
    key_manager: Option<&str>,
    api: Option<&str>,
) -> StatName {
    StatName::new(REQUESTS)
        .label("outcome", Some(outcome.label()))
        .label("reason", reason)
        .label("key_manager", key_manager)
        .label("api", api)
}

/// `keygate_token_cache{result="hit"|"miss"}`.
pub fn token_cache(hit: bool) -> &'static str {
    if hit {
        "keygate_token_cache.result.hit"
    } else {
        "keygate_token_cache.result.miss"
    }
}

/// `keygate_jwks_fetches{key_manager, outcome}`: `outcome` is `ok` or the fetch error's code
/// (`jwks_timeout`, `jwks_unreachable`, `jwks_http_status`, ...).
pub fn jwks_fetch(key_manager: &str, outcome: &str) -> StatName {
    StatName::new(JWKS_FETCHES)
        .label("key_manager", Some(key_manager))
        .label("outcome", Some(outcome))
}

/// `keygate_introspections{key_manager, outcome}`: `outcome` is `active`, `inactive` or the
/// failure's code (`introspection_unreachable`, `introspection_status`, ...).
pub fn introspection(key_manager: &str, outcome: &str) -> StatName {
    StatName::new(INTROSPECTIONS)
        .label("key_manager", Some(key_manager))
        .label("outcome", Some(outcome))
}

/// `keygate_introspection_cache{result="hit"|"miss"}`.
pub fn introspection_cache(hit: bool) -> &'static str {
    if hit {
        "keygate_introspection_cache.result.hit"
    } else {
        "keygate_introspection_cache.result.miss"
    }
}

/// `keygate_configurations{outcome="loaded"|"refused"}`.
pub fn configuration(loaded: bool) -> &'static str {
    if loaded {
        "keygate_configurations.outcome.loaded"
    } else {
        "keygate_configurations.outcome.refused"
    }
}

/// Envoy `stats_config.stats_tags` entries (`tag_name`, `regex`), one per label. Each regex
/// matches stat names `wasmcustom.keygate_<metric>(.label.value)*`, skips whole pairs, and
/// captures `.label.value` (removed from the name) around the value (the tag's value).
pub fn stats_tags() -> Vec<(&'static str, String)> {
    LABELS
        .iter()
        .map(|label| {
            (
                *label,
                format!(r"^wasmcustom\.keygate_\w+(?:\.\w+\.[^.]+)*?(\.{label}\.([^.]+))"),
            )
        })
        .collect()
}

/// Reads a stat name back into metric and labels (the inverse of [`StatName`]), as the tag
/// regexes do; `None` for a name that is not `metric(.label.value)*`.
pub fn parse(name: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let mut parts = name.split('.');
    let metric = parts.next()?;
    let mut labels = Vec::new();
    loop {
        match (parts.next(), parts.next()) {
            (None, _) => return Some((metric, labels)),
            (Some(label), Some(value)) => labels.push((label, value)),
            (Some(_), None) => return None,
        }
    }
}

/// Plain counter names (Envoy shows them as `wasmcustom.<name>`; all workers add to one stat).
/// Labeled metrics (requests by outcome and reason, JWKS fetches, the token cache) are named in
/// this module.
pub mod counters {
    /// Requests answered 503 because the parking bounds were reached.
    pub const PARKED_OVERFLOW: &str = "keygate_parked_overflow";
    /// Authorized requests answered 429 because their subscription's tier was spent (also
    /// counted as a denial with code `rate_limited`).
    pub const RATE_LIMITED: &str = "keygate_rate_limited";
    /// Requests allowed with a DPoP-bound token and a valid proof (refusals are counted in
    /// `keygate_requests` under their reason).
    pub const DPOP_ALLOWED: &str = "keygate_dpop_allowed";
    /// Opaque tokens answered 503 because the introspection calls of the second were spent
    /// (per worker or for the whole Envoy).
    pub const INTROSPECTION_THROTTLED: &str = "keygate_introspection_throttled";
}

/// The label values of one policy's key managers and APIs, by index, and the counting of what
/// happened with them.
pub(super) struct Labels {
    key_managers: Vec<String>,
    apis: Vec<String>,
    /// `keygate_requests` names already built for verdicts without a reason (allowed, public,
    /// passed: the common ones), so a request does not build its counter's name again: per API
    /// (index + 1; 0 for no API), by outcome, key manager and API key.
    names: RefCell<Vec<Vec<(NameKey, String)>>>,
}

/// Outcome, key manager index, API key.
type NameKey = (RequestOutcome, Option<usize>, bool);

/// At most this many remembered names per API (the rest are built per request).
const MAX_NAMES: usize = 32;

impl Labels {
    pub(super) fn new(policy: &Policy) -> Labels {
        Labels {
            key_managers: policy
                .key_managers()
                .iter()
                .map(|km| label_value(&km.name))
                .collect(),
            apis: policy
                .apis()
                .iter()
                .map(|api| label_value(&api.name))
                .collect(),
            names: RefCell::new(vec![Vec::new(); policy.apis().len().saturating_add(1)]),
        }
    }

    /// One finished (or refused) JWKS fetch of key manager `km`.
    pub(super) fn count_fetch(&self, host: &mut impl Host, km: KeyManagerId, outcome: &str) {
        let key_manager = self
            .key_managers
            .get(km.index())
            .map_or("_", String::as_str);
        host.count(jwks_fetch(key_manager, outcome).as_str());
    }

    /// Counts a request's verdict and records the filter's time on it.
    pub(super) fn count_request(
        &self,
        host: &mut impl Host,
        outcome: RequestOutcome,
        reason: Option<&str>,
        answering: &Answering,
    ) {
        fn label(labels: &[String], index: Option<usize>) -> Option<&str> {
            index.and_then(|i| labels.get(i)).map(String::as_str)
        }
        let km = answering.key_manager.map(KeyManagerId::index);
        let api = answering.api.map(ApiId::index);
        let build = || {
            request(
                outcome,
                reason,
                label(&self.key_managers, km),
                label(&self.apis, api),
            )
            .label("credential", answering.api_key.then_some("api_key"))
        };
        let key = (outcome, km, answering.api_key);
        let mut names = self.names.try_borrow_mut().ok();
        let bucket = names
            .as_mut()
            .filter(|_| reason.is_none())
            .and_then(|names| names.get_mut(api.map_or(0, |i| i.saturating_add(1))));
        match bucket {
            Some(bucket) => match bucket.iter().find(|(k, _)| *k == key) {
                Some((_, name)) => host.count(name),
                None => {
                    let name = build();
                    host.count(name.as_str());
                    if bucket.len() < MAX_NAMES {
                        bucket.push((key, name.0));
                    }
                }
            },
            None => host.count(build().as_str()),
        }
        let spent = answering.spent(host.now_us());
        host.record(FILTER_TIME_US, spent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_labels_in_order() {
        let name = request(
            RequestOutcome::Denied,
            Some("missing_token"),
            None,
            Some("pets"),
        );
        assert_eq!(
            name.as_str(),
            "keygate_requests.outcome.denied.reason.missing_token.api.pets"
        );
        assert_eq!(
            parse(name.as_str()),
            Some((
                "keygate_requests",
                vec![
                    ("outcome", "denied"),
                    ("reason", "missing_token"),
                    ("api", "pets")
                ]
            ))
        );
        assert_eq!(
            jwks_fetch("idp", "jwks_timeout").as_str(),
            "keygate_jwks_fetches.key_manager.idp.outcome.jwks_timeout"
        );
        assert_eq!(parse(token_cache(true)).unwrap().1, [("result", "hit")]);
        assert_eq!(
            parse(configuration(false)).unwrap().1,
            [("outcome", "refused")]
        );
    }

    #[test]
    fn operator_names_cannot_split_a_stat_name() {
        assert_eq!(label_value("pets.v1 (beta)"), "pets_v1__beta_");
        assert_eq!(label_value("asgardeo-prod_2"), "asgardeo-prod_2");
        assert_eq!(label_value(""), "_");
        assert_eq!(label_value("ключ"), "____");
        let name = jwks_fetch("a.b.c", "ok");
        assert_eq!(
            parse(name.as_str()).unwrap().1,
            [("key_manager", "a_b_c"), ("outcome", "ok")]
        );
    }

    #[test]
    fn one_tag_regex_per_label() {
        let tags = stats_tags();
        assert_eq!(tags.len(), LABELS.len());
        for (label, regex) in &tags {
            assert!(regex.starts_with(r"^wasmcustom\.keygate_"), "{regex}");
            assert!(regex.contains(&format!(r"(\.{label}\.([^.]+))")), "{regex}");
        }
    }
}
