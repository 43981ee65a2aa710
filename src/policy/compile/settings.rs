//! The `settings` block: timeouts, cache sizes and refresh intervals in range, the realm, the
//! header prefix, the readiness path and the DPoP proof settings.

use super::{algorithms, Checker};
use crate::config::Settings;

/// The settings are kept as configured once in range; the DPoP algorithms accepted.
pub(super) fn settings(c: &mut Checker, s: &Settings) -> Vec<String> {
    c.range("settings.leeway_seconds", s.leeway_seconds, 0, 600);
    let dpop_algorithms = dpop_settings(c, s);
    header_prefix(c, &s.header_prefix);
    ready_path(c, &s.ready_path);
    if s.realm.is_empty() || !s.realm.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        c.invalid(
            "settings.realm",
            &s.realm,
            "the realm is 1 or more visible ASCII characters or spaces",
        );
    }
    c.range(
        "settings.jwks_fetch_timeout_ms",
        s.jwks_fetch_timeout_ms,
        100,
        60_000,
    );
    let max_bytes = u64::try_from(s.jwks_max_bytes).unwrap_or(u64::MAX);
    c.range("settings.jwks_max_bytes", max_bytes, 1024, 16 * 1024 * 1024);
    const WEEK: u64 = 7 * 86_400;
    c.range(
        "settings.jwks_max_refresh_seconds",
        s.jwks_max_refresh_seconds,
        1,
        WEEK,
    );
    c.range(
        "settings.jwks_min_refresh_seconds",
        s.jwks_min_refresh_seconds,
        1,
        s.jwks_max_refresh_seconds,
    );
    c.range(
        "settings.jwks_default_refresh_seconds",
        s.jwks_default_refresh_seconds,
        s.jwks_min_refresh_seconds,
        s.jwks_max_refresh_seconds,
    );
    c.range(
        "settings.jwks_unknown_kid_refetch_seconds",
        s.jwks_unknown_kid_refetch_seconds,
        1,
        3_600,
    );
    c.range("settings.jwks_stale_seconds", s.jwks_stale_seconds, 0, WEEK);
    c.range(
        "settings.jwks_retry_max_seconds",
        s.jwks_retry_max_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.jwks_retry_initial_seconds",
        s.jwks_retry_initial_seconds,
        1,
        s.jwks_retry_max_seconds,
    );
    c.range("settings.request_wait_ms", s.request_wait_ms, 100, 60_000);
    let parked = u64::try_from(s.max_parked_requests).unwrap_or(u64::MAX);
    c.range("settings.max_parked_requests", parked, 1, 100_000);
    let parked = u64::try_from(s.max_parked_per_key_manager).unwrap_or(u64::MAX);
    c.range("settings.max_parked_per_key_manager", parked, 1, 100_000);
    let entries = u64::try_from(s.token_cache_entries).unwrap_or(u64::MAX);
    c.range("settings.token_cache_entries", entries, 0, 100_000);
    let bytes = u64::try_from(s.token_cache_bytes).unwrap_or(u64::MAX);
    c.range("settings.token_cache_bytes", bytes, 4_096, 1 << 30);
    c.range(
        "settings.introspection_cache_seconds",
        s.introspection_cache_seconds,
        1,
        86_400,
    );
    c.range(
        "settings.introspection_negative_cache_seconds",
        s.introspection_negative_cache_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.introspection_retry_seconds",
        s.introspection_retry_seconds,
        1,
        300,
    );
    c.range(
        "settings.introspection_timeout_ms",
        s.introspection_timeout_ms,
        100,
        60_000,
    );
    let max_bytes = u64::try_from(s.introspection_max_bytes).unwrap_or(u64::MAX);
    c.range("settings.introspection_max_bytes", max_bytes, 1024, 1 << 20);
    let entries = u64::try_from(s.introspection_cache_entries).unwrap_or(u64::MAX);
    c.range("settings.introspection_cache_entries", entries, 16, 65_536);
    introspection_bounds(c, s);
    dpop_algorithms
}

/// The bounds that keep junk opaque tokens from costing calls or evicting active answers (issue
/// 21): the separate area for non-active answers, and the call budgets.
fn introspection_bounds(c: &mut Checker, s: &Settings) {
    let entries = u64::try_from(s.introspection_negative_cache_entries).unwrap_or(u64::MAX);
    c.range(
        "settings.introspection_negative_cache_entries",
        entries,
        16,
        65_536,
    );
    c.range(
        "settings.introspection_calls_per_second",
        s.introspection_calls_per_second,
        1,
        100_000,
    );
    c.range(
        "settings.introspection_worker_calls_per_second",
        s.introspection_worker_calls_per_second,
        1,
        100_000,
    );
}

/// The readiness path: empty (off), or an absolute path of visible ASCII without query or
/// fragment, at most 256 bytes.
fn ready_path(c: &mut Checker, path: &str) {
    let shape = path.is_empty()
        || (path.starts_with('/')
            && path.len() <= 256
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#'));
    if !shape {
        c.invalid(
            "settings.ready_path",
            path,
            "a readiness path is empty (off) or starts with '/', without query, fragment or spaces",
        );
    }
}

/// The prefix decides which incoming headers are stripped, so it must not reach headers others
/// own: lower case `x-…-`, and not a prefix of (or under) Envoy's and the forwarding headers.
fn header_prefix(c: &mut Checker, prefix: &str) {
    let shape = prefix.len() >= 4
        && prefix.len() <= 64
        && prefix.starts_with("x-")
        && prefix.ends_with('-')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !shape {
        c.invalid(
            "settings.header_prefix",
            prefix,
            "a prefix is lower case letters, digits and '-', starting with 'x-' and ending with '-'",
        );
        return;
    }
    let reserved = ["x-envoy-", "x-forwarded-", "x-request-id", "x-b3-"];
    if reserved
        .iter()
        .any(|r| r.starts_with(prefix) || prefix.starts_with(r))
    {
        c.invalid(
            "settings.header_prefix",
            prefix,
            "the prefix would strip Envoy's or the forwarding headers",
        );
    }
}

/// DPoP proofs: asymmetric algorithms only, a window of at most an hour, a bounded replay store.
/// The algorithms accepted in proofs.
fn dpop_settings(c: &mut Checker, s: &Settings) -> Vec<String> {
    let accepted = algorithms(c, "settings.dpop_algorithms", &s.dpop_algorithms);
    c.range(
        "settings.dpop_max_age_seconds",
        s.dpop_max_age_seconds,
        1,
        3_600,
    );
    c.range(
        "settings.dpop_future_skew_seconds",
        s.dpop_future_skew_seconds,
        0,
        300,
    );
    let slots = u64::try_from(s.dpop_replay_slots).unwrap_or(u64::MAX);
    c.range("settings.dpop_replay_slots", slots, 1, 65_536);
    let entries = u64::try_from(s.dpop_replay_slot_entries).unwrap_or(u64::MAX);
    c.range("settings.dpop_replay_slot_entries", entries, 1, 1_024);
    accepted
}
