//! Decision step 8 with the local limiter: one request of an authorized caller against its
//! subscription's tier, counted in Envoy's shared data so that every worker of the Envoy spends
//! from one budget (see [`crate::policy::tier`] for the window).
//!
//! The counter is read with its CAS value and written back raised by one with that CAS value.
//! Envoy refuses the write when another worker wrote in between; the request is then decided
//! again on the newer count. A request is admitted only by a write that succeeded, so the workers
//! together admit exactly the tier's number per window. Should the host keep refusing (contention
//! beyond [`ATTEMPTS`] rounds, or a shared-data error) the request is refused: an uncounted
//! request is never let through.

use crate::decision::Denial;
use crate::keys::{Expect, SlotError};
use crate::policy::tier::{Admission, Budget};

use super::host::Host;

/// Compare-and-swap rounds before a request is refused. Each lost round means another worker
/// admitted a request meanwhile, so this is only reached under a storm on one subscription.
const ATTEMPTS: usize = 16;

/// What is left of a budget after a request spent from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    pub remaining: u64,
    /// Seconds until the window ends.
    pub reset: u64,
}

/// Spends one request of a subscription's budget, or says why not.
pub fn spend(host: &impl Host, budget: &Budget, now_ms: u64) -> Result<Left, Denial> {
    let (tier, key) = (&budget.tier, budget.counter_key.as_str());
    for _ in 0..ATTEMPTS {
        let current = host.shared_get(key);
        let (bytes, expect) = match &current {
            Some((bytes, cas)) => (Some(bytes.as_slice()), Expect::Cas(*cas)),
            None => (None, Expect::Absent),
        };
        let (record, left) = match tier.admit(bytes, now_ms) {
            Admission::Admitted {
                record,
                remaining,
                reset,
            } => (record, Left { remaining, reset }),
            Admission::Refused { retry_after } => {
                return Err(Denial::RateLimited {
                    tier: tier.clone(),
                    retry_after,
                })
            }
        };
        match host.shared_set(key, &record, expect) {
            Ok(()) => return Ok(left),
            Err(SlotError::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    log::warn!(
        "keygate: the request budget of tier {} could not be counted; refusing the request",
        tier.name
    );
    Err(Denial::RateLimited {
        tier: tier.clone(),
        retry_after: 1,
    })
}
