//! Answering a request: forward it (with identity headers, after spending its tier) or reply
//! with a denial, and count it. What the worker knows of one request until then travels with the
//! request ([`Answering`], parked or waiting for introspection), never as worker state.

use super::metrics::{counters, RequestOutcome};
use super::parking::Parked;
use super::{limiter, seconds, Host, RequestAction, SharedSlots, StreamId, Worker};
use crate::config::Limiter;
use crate::decision::{backend_jwt, record_proof, reply, Denial, Outcome};
use crate::policy::{ApiId, KeyManagerId};

/// The request about to be answered: what is known of it for its metrics, the filter's time spent
/// on it (`spent_us` in earlier callbacks, plus the time since `since_us`), and which credential
/// headers it carried (to strip when it goes upstream).
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    pub(super) api: Option<ApiId>,
    pub(super) key_manager: Option<KeyManagerId>,
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
    /// The request presented an API key (metrics label it `credential="api_key"`).
    pub(super) api_key: bool,
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
            api_key: false,
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
            api_key: false,
        }
    }

    pub(super) fn spent(&self, now_us: u64) -> u64 {
        self.spent_us
            .saturating_add(now_us.saturating_sub(self.since_us))
    }
}

impl Worker {
    /// Removes the credentials from a request that goes upstream (`settings.strip_authorization`):
    /// `Authorization` and the `DPoP` proofs, which mean nothing without the token. Only requests
    /// that carried a token reach Allow; a public one may or may not have.
    fn strip_credentials(&self, host: &mut impl Host, stream: StreamId, answering: &Answering) {
        if !self.policy.settings().strip_authorization {
            return;
        }
        if answering.had_authorization {
            host.remove_header(stream, "authorization");
        }
        if answering.had_dpop {
            host.remove_header(stream, "dpop");
        }
    }

    /// Answers or forwards `stream` according to a final outcome.
    pub(super) fn apply(
        &mut self,
        host: &mut impl Host,
        stream: StreamId,
        outcome: &Outcome,
        answering: &Answering,
    ) -> RequestAction {
        match outcome {
            Outcome::Pass => {
                self.labels
                    .count_request(host, RequestOutcome::Passed, None, answering);
                RequestAction::Continue
            }
            Outcome::Public => {
                self.strip_credentials(host, stream, answering);
                self.labels
                    .count_request(host, RequestOutcome::Public, None, answering);
                RequestAction::Continue
            }
            Outcome::Allow { allowed, proof } => {
                // The gateway's own JWT for the upstream, if the API wants one: before the tier
                // is spent, so a request that cannot get one costs nothing.
                // The request's time is the one read when this callback started: a verdict is
                // reached within it, so no second clock read.
                let now_ms = answering.since_us / 1000;
                let mut upstream_jwt = None;
                if let Some(api) = answering.api {
                    let now_s = now_ms / 1000;
                    let signer = self.backend_signer();
                    match backend_jwt(&self.policy, api, allowed, signer, &*host, now_s) {
                        Ok(jwt) => upstream_jwt = jwt,
                        Err(denial) => {
                            self.deny(host, stream, &denial, answering);
                            return RequestAction::Pause;
                        }
                    }
                }
                // Step 8, after every other check passed (a cached authorization counts too).
                if let (Some(budget), Limiter::Local) =
                    (&allowed.identity.budget, self.policy.limiter())
                {
                    match limiter::spend(host, budget, now_ms) {
                        Ok(left) => {
                            let limit = budget.tier.limit_header(left.remaining, left.reset);
                            let headers = [
                                ("ratelimit-policy", budget.policy_header.clone()),
                                ("ratelimit", limit),
                            ];
                            self.budgets.insert(stream, headers);
                        }
                        Err(denial) => {
                            host.count(counters::RATE_LIMITED);
                            self.deny(host, stream, &denial, answering);
                            return RequestAction::Pause;
                        }
                    }
                }
                // Last: the proof's `jti` takes room in the replay store only now that the
                // request is allowed and its tier spent.
                if let Some(proof) = proof {
                    let slots = SharedSlots(&*host, self.seed);
                    // The clock read at the start of this callback, as the decision's (one
                    // read less; an earlier `now` only keeps entries longer).
                    let now = seconds(answering.since_us / 1_000);
                    let recorded = record_proof(&self.policy, proof, &slots, now);
                    if let Err(denial) = recorded {
                        self.budgets.remove(&stream);
                        self.deny(host, stream, &denial, answering);
                        return RequestAction::Pause;
                    }
                }
                for (name, value) in &allowed.headers {
                    host.set_header(stream, name, value);
                }
                if let Some((name, jwt)) = &upstream_jwt {
                    host.set_header(stream, name, jwt);
                }
                self.strip_credentials(host, stream, answering);
                // Access logs read the identity from the headers just set; only the code is state.
                host.set_filter_state(stream, "keygate.code", "allowed");
                self.labels
                    .count_request(host, RequestOutcome::Allowed, None, answering);
                if answering.dpop {
                    host.count(counters::DPOP_ALLOWED);
                }
                RequestAction::Continue
            }
            Outcome::Deny(denial) => {
                self.deny(host, stream, denial, answering);
                RequestAction::Pause
            }
            Outcome::NeedKeys { .. } => {
                // Never forwarded without a decision.
                self.deny(
                    host,
                    stream,
                    &Denial::KeyManagerUnavailable { retry_after: 1 },
                    answering,
                );
                RequestAction::Pause
            }
            Outcome::NeedIntrospection(_) => {
                let unavailable = Denial::IntrospectionUnavailable { retry_after: 1 };
                self.deny(host, stream, &unavailable, answering);
                RequestAction::Pause
            }
        }
    }

    pub(super) fn deny(
        &self,
        host: &mut impl Host,
        stream: StreamId,
        denial: &Denial,
        answering: &Answering,
    ) {
        let answer = reply(denial, &self.policy.settings().realm);
        log::info!(
            "keygate: denied {} {}: {}",
            answer.status,
            denial.code(),
            denial.description()
        );
        host.set_filter_state(stream, "keygate.code", denial.code());
        host.reply(
            stream,
            answer.status,
            &answer.headers,
            answer.body.as_bytes(),
        );
        self.labels
            .count_request(host, RequestOutcome::Denied, Some(denial.code()), answering);
    }
}
