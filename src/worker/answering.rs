//! What the worker knows of one request until it is answered: it travels with the request
//! (parked or waiting for introspection), never as worker state.

use super::parking::Parked;

/// The request about to be answered: what is known of it for its metrics, the filter's time spent
/// on it (`spent_us` in earlier callbacks, plus the time since `since_us`), and which credential
/// headers it carried (to strip when it goes upstream).
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    pub(super) api: Option<usize>,
    pub(super) key_manager: Option<usize>,
    /// The token came with the DPoP scheme.
    pub(super) dpop: bool,
    /// It carries `Authorization` (so there is one to strip). Parked requests always do: only
    /// token-carrying requests wait for keys.
    pub(super) had_authorization: bool,
    /// The same for `DPoP` proof headers (removed with `Authorization`: without the token they
    /// mean nothing upstream).
    pub(super) had_dpop: bool,
    pub(super) spent_us: u64,
    pub(super) since_us: u64,
}

impl Answering {
    /// A request first seen at `since_us` (credentials assumed present until read).
    pub(super) fn new(since_us: u64) -> Self {
        Answering {
            api: None,
            key_manager: None,
            dpop: false,
            had_authorization: true,
            had_dpop: true,
            spent_us: 0,
            since_us,
        }
    }

    /// A parked request taken up again at `now_us`.
    pub(super) fn resumed(parked: &Parked, now_us: u64) -> Self {
        Answering {
            api: Some(parked.pending.api()),
            key_manager: Some(parked.pending.key_manager()),
            dpop: parked.pending.is_dpop(),
            had_authorization: true,
            had_dpop: true,
            spent_us: parked.spent_us,
            since_us: now_us,
        }
    }

    pub(super) fn spent(&self, now_us: u64) -> u64 {
        self.spent_us
            .saturating_add(now_us.saturating_sub(self.since_us))
    }
}
