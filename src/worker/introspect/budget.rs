//! The bounds on introspection calls per second: this worker's count, and the count of all the
//! workers of the Envoy in shared data (written with compare-and-swap).

use crate::keys::Expect;
use crate::policy::Policy;
use crate::worker::host::Host;

/// Calls started in one second (by this worker, or in shared data by all workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Calls {
    second: u64,
    used: u64,
}

impl Calls {
    /// The calls of `second` so far.
    fn at(self, second: u64) -> u64 {
        if self.second == second {
            self.used
        } else {
            0
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.second.to_be_bytes());
        b.copy_from_slice(&self.used.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Calls {
        let word = |at: usize| {
            bytes
                .get(at..at.saturating_add(8))
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        Calls {
            second: word(0),
            used: word(8),
        }
    }
}

/// The shared-data counter of the calls all workers started in the current second.
const CALLS_KEY: &str = "keygate.introspection.calls";

/// The Envoy-wide count of calls (and its CAS, to add to it).
fn shared_calls(host: &impl Host) -> (Calls, Expect) {
    match host.shared_get(CALLS_KEY) {
        Some((bytes, cas)) => (Calls::from_bytes(&bytes), Expect::Cas(cas)),
        None => (Calls::default(), Expect::Absent),
    }
}

/// Whether a call may start at `now_ms` within both bounds (read-only).
pub(super) fn call_allowed(mine: Calls, policy: &Policy, host: &impl Host, now_ms: u64) -> bool {
    let settings = policy.settings();
    let second = now_ms / 1_000;
    mine.at(second) < settings.introspection_worker_calls_per_second
        && shared_calls(host).0.at(second) < settings.introspection_calls_per_second
}

/// Spends one call of this second's budgets: false past either bound, or when the shared counter
/// cannot be written (fail closed: no call).
pub(super) fn spend_call(mine: &mut Calls, policy: &Policy, host: &impl Host, now_ms: u64) -> bool {
    let settings = policy.settings();
    let second = now_ms / 1_000;
    if mine.at(second) >= settings.introspection_worker_calls_per_second {
        return false;
    }
    for _ in 0..8 {
        let (all, expect) = shared_calls(host);
        let used = all.at(second);
        if used >= settings.introspection_calls_per_second {
            return false;
        }
        let next = Calls {
            second,
            used: used.saturating_add(1),
        };
        match host.shared_set(CALLS_KEY, &next.to_bytes(), expect) {
            Ok(()) => {
                *mine = Calls {
                    second,
                    used: mine.at(second).saturating_add(1),
                };
                return true;
            }
            Err(crate::keys::SlotError::CasMismatch) => continue,
            Err(crate::keys::SlotError::Host) => return false,
        }
    }
    false
}
