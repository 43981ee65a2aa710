//! Subscription tiers: how many requests an application may make to an API per second, minute,
//! hour or day, counted as a fixed window aligned to the clock.
//!
//! # Why a fixed window
//! Each (application, API) subscription with a tier has one counter and the start of the window
//! it counts in. A window of `per` seconds starts at every multiple of `per` since the Unix epoch
//! (minutes start at :00, days at 00:00 UTC), so every worker of an Envoy — and every Envoy of a
//! fleet — agrees on the window from its clock alone, with nothing to coordinate but the counter.
//! That counter lives in Envoy's shared data and is raised with compare-and-swap
//! (`worker::limiter`): a request is admitted only by the write that moves the count from `n` to
//! `n + 1` with `n < requests`, and a write that lost a race is retried on the new value, so two
//! workers together admit exactly `requests`, never more. It is also what the fleet's rate-limit
//! service (envoyproxy/ratelimit) does, so a tier means the same thing in both modes, and the
//! `RateLimit` header's reset is simply the time to the window's end.
//!
//! The price of a fixed window is the edge: a client can spend a whole budget at the end of one
//! window and another at the start of the next. A sliding scheme (GCRA) would smooth that but needs
//! the exact arrival times across workers; for budgets counted per minute and longer, the edge is
//! the accepted trade-off of the API platforms tiers come from.

use std::fmt;

/// The largest `requests` a tier may have (the count is stored as a `u64`; this keeps every
/// product of counts and seconds far from overflow).
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// The length of a tier's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn parse(text: &str) -> Option<Per> {
        match text {
            "second" => Some(Per::Second),
            "minute" => Some(Per::Minute),
            "hour" => Some(Per::Hour),
            "day" => Some(Per::Day),
            _ => None,
        }
    }

    /// As declared (also envoyproxy/ratelimit's `unit`).
    pub fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
            Per::Day => 86_400,
        }
    }
}

impl fmt::Display for Per {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compiled tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub requests: u64,
    pub per: Per,
}

impl Tier {
    /// The shared-data key of one subscription's counter. The tier's limit is part of it, so a new
    /// configuration that changes a subscription's tier starts a fresh count instead of reading a
    /// count made under another limit. JSON keeps the parts apart whatever the names hold.
    pub fn counter_key(&self, application: &str, api: &str) -> String {
        let parts =
            serde_json::json!([self.name, self.requests, self.per.name(), application, api]);
        format!("keygate.tier.{parts}")
    }

    /// `RateLimit-Policy` (IETF httpapi ratelimit-headers draft, structured field list):
    /// `"gold";q=20000;w=60`.
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.name,
            self.requests,
            self.per.seconds()
        )
    }

    /// `RateLimit`: what is left of the quota (`r`) and the seconds until it is whole again (`t`).
    pub fn limit_header(&self, remaining: u64, reset_seconds: u64) -> String {
        format!("\"{}\";r={remaining};t={reset_seconds}", self.name)
    }

    /// The window `now_ms` falls in, as its start in seconds since the epoch.
    fn window(&self, now_ms: u64) -> u64 {
        let per = self.per.seconds();
        (now_ms / 1000) / per * per
    }

    /// Whole seconds from `now_ms` until the window ends (1 at least, `per` at most).
    pub fn reset_seconds(&self, now_ms: u64) -> u64 {
        let end_ms = self
            .window(now_ms)
            .saturating_add(self.per.seconds())
            .saturating_mul(1000);
        end_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }

    /// One request against the counter `record` (as shared data holds it; `None` when absent or
    /// unreadable, which counts as an empty window).
    pub fn admit(&self, record: Option<&[u8]>, now_ms: u64) -> Admission {
        let window = self.window(now_ms);
        let spent = record
            .and_then(Count::decode)
            .filter(|count| count.window == window)
            .map_or(0, |count| count.spent);
        let reset = self.reset_seconds(now_ms);
        if spent >= self.requests {
            return Admission::Refused { retry_after: reset };
        }
        let spent = spent.saturating_add(1);
        Admission::Admitted {
            record: Count { window, spent }.encode(),
            remaining: self.requests.saturating_sub(spent),
            reset,
        }
    }
}

/// A subscription's tier with what the request path needs of it, built once when the policy is
/// compiled: the counter's shared-data key and the `RateLimit-Policy` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub tier: Tier,
    pub counter_key: String,
    pub policy_header: String,
}

impl Budget {
    pub fn new(tier: Tier, application: &str, api: &str) -> Budget {
        Budget {
            counter_key: tier.counter_key(application, api),
            policy_header: tier.policy_header(),
            tier,
        }
    }
}

/// What [`Tier::admit`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Within budget, once `record` is written in place of the one read (compare-and-swap).
    Admitted {
        record: [u8; 16],
        remaining: u64,
        reset: u64,
    },
    /// Over budget until the window ends, `retry_after` seconds from now.
    Refused { retry_after: u64 },
}

/// A subscription's counter: the window it counts in and the requests admitted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    window: u64,
    spent: u64,
}

impl Count {
    fn encode(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        let (window, spent) = bytes.split_at_mut(8);
        window.copy_from_slice(&self.window.to_le_bytes());
        spent.copy_from_slice(&self.spent.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Count> {
        let window: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let spent: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        (bytes.len() == 16).then_some(Count {
            window: u64::from_le_bytes(window),
            spent: u64::from_le_bytes(spent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(requests: u64, per: Per) -> Tier {
        Tier {
            name: "bronze".into(),
            requests,
            per,
        }
    }

    /// Admits at `now_ms` against `record`, returning the new record when admitted.
    fn spend(t: &Tier, record: &mut Option<[u8; 16]>, now_ms: u64) -> bool {
        match t.admit(record.as_ref().map(|r| r.as_slice()), now_ms) {
            Admission::Admitted { record: next, .. } => {
                *record = Some(next);
                true
            }
            Admission::Refused { .. } => false,
        }
    }

    #[test]
    fn a_window_admits_exactly_its_requests() {
        let t = tier(3, Per::Minute);
        let mut record = None;
        let start = 1_800_000_000_000; // a whole minute
        let admitted: Vec<bool> = (0..5).map(|i| spend(&t, &mut record, start + i)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
    }

    #[test]
    fn windows_are_aligned_to_the_clock() {
        let t = tier(1, Per::Minute);
        let mut record = None;
        let minute = 1_800_000_000_000;
        assert!(spend(&t, &mut record, minute + 59_000));
        assert!(!spend(&t, &mut record, minute + 59_999));
        // A new minute starts at :00 whatever time the first request came.
        assert!(spend(&t, &mut record, minute + 60_000));
        assert!(!spend(&t, &mut record, minute + 61_000));
    }

    #[test]
    fn retry_after_counts_to_the_end_of_the_window() {
        let t = tier(1, Per::Minute);
        let minute = 1_800_000_000_000;
        let mut record = None;
        assert!(spend(&t, &mut record, minute));
        let at = |ms| t.admit(record.as_ref().map(|r| r.as_slice()), minute + ms);
        assert_eq!(at(0), Admission::Refused { retry_after: 60 });
        assert_eq!(at(30_500), Admission::Refused { retry_after: 30 });
        assert_eq!(at(59_999), Admission::Refused { retry_after: 1 });
        let day = tier(1, Per::Day);
        assert_eq!(day.reset_seconds(86_400_000 * 20_000 + 1_000), 86_399);
    }

    #[test]
    fn an_unreadable_record_is_an_empty_window() {
        let t = tier(2, Per::Second);
        for junk in [&b""[..], &b"short"[..], &[0u8; 17][..]] {
            match t.admit(Some(junk), 5_000) {
                Admission::Admitted { remaining, .. } => assert_eq!(remaining, 1),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn headers_follow_the_draft_structured_fields() {
        let t = tier(1000, Per::Hour);
        assert_eq!(t.policy_header(), "\"bronze\";q=1000;w=3600");
        assert_eq!(t.limit_header(0, 17), "\"bronze\";r=0;t=17");
    }

    #[test]
    fn counter_keys_keep_names_apart() {
        let t = tier(5, Per::Minute);
        assert_ne!(t.counter_key("a.b", "c"), t.counter_key("a", "b.c"));
        assert_ne!(
            t.counter_key("a", "b"),
            tier(6, Per::Minute).counter_key("a", "b")
        );
        assert_eq!(
            t.counter_key("shop", "pets"),
            "keygate.tier.[\"bronze\",5,\"minute\",\"shop\",\"pets\"]"
        );
    }
}
