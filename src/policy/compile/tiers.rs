//! The rate-limit tiers: plain identifiers as names, request counts in range, and a window
//! (`per`) that parses.

use std::collections::HashMap;

use super::Checker;
use crate::config::TierConfig;
use crate::policy::tier::{Per, Tier, MAX_REQUESTS};

/// The tiers, in the configuration's order (`None` where `per` is refused). Tier names end up in a
/// header value and in the rate-limit service's configuration, so they are plain identifiers.
pub(super) fn tiers(c: &mut Checker, tiers: &[TierConfig]) -> Vec<Option<Tier>> {
    let mut names = HashMap::new();
    let mut compiled = Vec::with_capacity(tiers.len());
    for (i, tier) in tiers.iter().enumerate() {
        let at = format!("tiers[{i}]");
        if c.name(format!("{at}.name"), &tier.name) {
            if tier
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                c.unique(&mut names, format!("{at}.name"), &tier.name);
            } else {
                c.invalid(
                    format!("{at}.name"),
                    &tier.name,
                    "a tier name is letters, digits, '-', '_' and '.'",
                );
            }
        }
        c.range(&format!("{at}.requests"), tier.requests, 1, MAX_REQUESTS);
        let per = Per::parse(&tier.per);
        if per.is_none() {
            c.invalid(
                format!("{at}.per"),
                &tier.per,
                "one of second, minute, hour, day",
            );
        }
        compiled.push(per.map(|per| Tier {
            name: tier.name.clone(),
            requests: tier.requests,
            per,
        }));
    }
    compiled
}
