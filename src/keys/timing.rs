//! Intervals of the JWKS cache, taken once from `Settings` and sanitized so that no setting can
//! make the cache fetch in a tight loop or overflow a clock value.

use crate::config::Settings;

/// Milliseconds; every clock value in `keys` is milliseconds since the Unix epoch.
const SECOND_MS: u64 = 1_000;
/// Floor for the retry delay and the unknown-kid interval, so a zero setting cannot spin.
const FLOOR_MS: u64 = 100;
/// Time a lease outlives the fetch timeout before others treat the fetch as lost.
const LEASE_GRACE_MS: u64 = 1_000;
/// Largest slack when telling a timeout from a failed connection (see `timeout_slack_ms`).
const TIMEOUT_SLACK_MS: u64 = 50;

/// Sanitized timing and size limits of one key manager's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub min_refresh_ms: u64,
    pub max_refresh_ms: u64,
    pub default_refresh_ms: u64,
    pub unknown_kid_interval_ms: u64,
    pub stale_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub fetch_timeout_ms: u64,
    pub max_bytes: usize,
}

impl Timing {
    pub fn from_settings(settings: &Settings) -> Timing {
        let secs = |s: u64| s.saturating_mul(SECOND_MS);
        let min_refresh_ms = secs(settings.jwks_min_refresh_seconds).max(SECOND_MS);
        // A maximum below the minimum is a configuration mistake; the minimum wins.
        let max_refresh_ms = secs(settings.jwks_max_refresh_seconds).max(min_refresh_ms);
        let default_refresh_ms =
            secs(settings.jwks_default_refresh_seconds).clamp(min_refresh_ms, max_refresh_ms);
        let retry_initial_ms = secs(settings.jwks_retry_initial_seconds).max(FLOOR_MS);
        Timing {
            min_refresh_ms,
            max_refresh_ms,
            default_refresh_ms,
            unknown_kid_interval_ms: secs(settings.jwks_unknown_kid_refetch_seconds).max(FLOOR_MS),
            stale_ms: secs(settings.jwks_stale_seconds),
            retry_initial_ms,
            retry_max_ms: secs(settings.jwks_retry_max_seconds).max(retry_initial_ms),
            fetch_timeout_ms: settings.jwks_fetch_timeout_ms.max(FLOOR_MS),
            max_bytes: settings.jwks_max_bytes,
        }
    }

    /// How long a fetch may hold the lease: past this, others assume its answer is lost.
    pub fn lease_ms(&self) -> u64 {
        self.fetch_timeout_ms.saturating_add(LEASE_GRACE_MS)
    }

    /// How much earlier than `fetch_timeout_ms` a fetch that ended without an answer still
    /// counts as timed out: a tenth of the timeout, at most 50 ms (timer and clock granularity).
    pub fn timeout_slack_ms(&self) -> u64 {
        (self.fetch_timeout_ms / 10).min(TIMEOUT_SLACK_MS)
    }

    /// Delay before retry number `failures` (1 = first retry): doubles, capped at the maximum.
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.retry_initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.retry_max_ms)
    }

    /// Refresh interval for a response: its `Cache-Control: max-age` clamped to the bounds, else
    /// the default. `no-cache`/`no-store` count as `max-age=0`, i.e. the minimum: the key manager
    /// asks to revalidate often, but keygate must keep keys to verify anything at all.
    pub fn refresh_interval_ms(&self, headers: &[(String, String)]) -> u64 {
        match max_age_seconds(headers) {
            Some(secs) => secs
                .saturating_mul(SECOND_MS)
                .clamp(self.min_refresh_ms, self.max_refresh_ms),
            None => self.default_refresh_ms,
        }
    }
}

/// `max-age` from every `Cache-Control` header (names and directives are case-insensitive);
/// `no-cache`/`no-store` win over any `max-age` because they are the more cautious reading.
fn max_age_seconds(headers: &[(String, String)]) -> Option<u64> {
    let mut max_age = None;
    let directives = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
        .flat_map(|(_, value)| value.split(','));
    for directive in directives {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            max_age = value.and_then(parse_delta_seconds);
        }
    }
    max_age
}

/// RFC 9111 delta-seconds: digits only; a too-large value means "very long" (then clamped).
fn parse_delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing::from_settings(&Settings::default())
    }

    fn cc(value: &str) -> Vec<(String, String)> {
        vec![("Cache-Control".to_string(), value.to_string())]
    }

    #[test]
    fn max_age_is_clamped_to_bounds() {
        let t = timing();
        assert_eq!(
            t.refresh_interval_ms(&cc("public, max-age=3600")),
            3_600_000
        );
        assert_eq!(t.refresh_interval_ms(&cc("max-age=10")), 300_000);
        assert_eq!(t.refresh_interval_ms(&cc("max-age=999999999")), 86_400_000);
        assert_eq!(
            t.refresh_interval_ms(&cc("max-age=99999999999999999999999")),
            86_400_000
        );
        assert_eq!(t.refresh_interval_ms(&cc("MAX-AGE=\"1200\"")), 1_200_000);
    }

    #[test]
    fn missing_or_bad_max_age_uses_default() {
        let t = timing();
        assert_eq!(t.refresh_interval_ms(&[]), 600_000);
        assert_eq!(t.refresh_interval_ms(&cc("public")), 600_000);
        assert_eq!(t.refresh_interval_ms(&cc("max-age=-5")), 600_000);
        assert_eq!(t.refresh_interval_ms(&cc("max-age=")), 600_000);
        let other = vec![("x-max-age".to_string(), "max-age=4000".to_string())];
        assert_eq!(t.refresh_interval_ms(&other), 600_000);
    }

    #[test]
    fn no_cache_means_minimum() {
        let t = timing();
        assert_eq!(
            t.refresh_interval_ms(&cc("max-age=7200, no-cache")),
            300_000
        );
        assert_eq!(t.refresh_interval_ms(&cc("no-store")), 300_000);
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let t = timing();
        let delays: Vec<u64> = (1..=8).map(|n| t.backoff_ms(n)).collect();
        assert_eq!(
            delays,
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(t.backoff_ms(u32::MAX), 60_000);
    }

    #[test]
    fn timeout_slack_is_a_tenth_up_to_50_ms() {
        let with = |ms: u64| {
            Timing::from_settings(&Settings {
                jwks_fetch_timeout_ms: ms,
                ..Settings::default()
            })
            .timeout_slack_ms()
        };
        assert_eq!(with(100), 10);
        assert_eq!(with(300), 30);
        assert_eq!(with(500), 50);
        assert_eq!(with(5_000), 50);
    }

    #[test]
    fn inconsistent_settings_are_sanitized() {
        let settings = Settings {
            jwks_min_refresh_seconds: 900,
            jwks_max_refresh_seconds: 60,
            jwks_default_refresh_seconds: 5,
            jwks_retry_initial_seconds: 0,
            jwks_retry_max_seconds: 0,
            jwks_unknown_kid_refetch_seconds: 0,
            jwks_fetch_timeout_ms: 0,
            jwks_stale_seconds: u64::MAX,
            ..Settings::default()
        };
        let t = Timing::from_settings(&settings);
        assert_eq!(t.min_refresh_ms, 900_000);
        assert_eq!(t.max_refresh_ms, 900_000);
        assert_eq!(t.default_refresh_ms, 900_000);
        assert_eq!(t.retry_initial_ms, FLOOR_MS);
        assert_eq!(t.retry_max_ms, FLOOR_MS);
        assert_eq!(t.unknown_kid_interval_ms, FLOOR_MS);
        assert_eq!(t.fetch_timeout_ms, FLOOR_MS);
        assert_eq!(t.stale_ms, u64::MAX);
    }
}
