//! Decision step 8 with the local limiter: one request of an authorized caller against its
//! subscription's tier, counted in Envoy's shared data so that every worker of the Envoy spends
//! from one budget (see [`crate::tier`] for the window).
//!
//! The counter is read with its CAS value and written back raised by one with that CAS value.
//! Envoy refuses the write when another worker wrote in between; the request is then decided
//! again on the newer count. A request is admitted only by a write that succeeded, so the workers
//! together admit exactly the tier's number per window. Should the host keep refusing (contention
//! beyond [`ATTEMPTS`] rounds, or a shared-data error) the request is refused: an uncounted
//! request is never let through.

use crate::keys::{Expect, SlotError};
use crate::response::Denial;
use crate::tier::{Admission, Tier};

use super::host::Host;

/// Compare-and-swap rounds before a request is refused. Each lost round means another worker
/// admitted a request meanwhile, so this is only reached under a storm on one subscription.
const ATTEMPTS: usize = 16;

/// Spends one request of `tier` for (`application`, `api`), or says why not.
pub fn spend(
    host: &impl Host,
    tier: &Tier,
    application: &str,
    api: &str,
    now_ms: u64,
) -> Result<(), Denial> {
    let key = tier.counter_key(application, api);
    for _ in 0..ATTEMPTS {
        let current = host.shared_get(&key);
        let expect = current
            .as_ref()
            .map_or(Expect::Absent, |(_, cas)| Expect::Cas(*cas));
        let record = match tier.admit(current.as_ref().map(|(bytes, _)| bytes.as_slice()), now_ms) {
            Admission::Admitted { record, .. } => record,
            Admission::Refused { retry_after } => {
                return Err(Denial::RateLimited {
                    tier: tier.clone(),
                    retry_after,
                })
            }
        };
        match host.shared_set(&key, &record, expect) {
            Ok(()) => return Ok(()),
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
