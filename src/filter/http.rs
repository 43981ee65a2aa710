//! One HTTP request: read it, run the core's decision, apply the outcome.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::decide::{self, Keys, Outcome, Request};

use super::gateway::{Gateway, Parked};
use super::host;

pub struct Http {
    context_id: u32,
    /// None only when configuration failed (Envoy then refuses the plugin; fail closed anyway).
    gateway: Option<Rc<RefCell<Gateway>>>,
}

impl Http {
    pub fn new(context_id: u32, gateway: Option<Rc<RefCell<Gateway>>>) -> Self {
        Http {
            context_id,
            gateway,
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        // A JWKS fetch started while this request was being handled answers here; the gateway
        // applies it to the cache and finishes every parked request (this one included).
        if let Some(gateway) = &self.gateway {
            Gateway::fetch_done(gateway, token_id, body_size, self.context_id);
        }
    }

    fn on_done(&mut self) -> bool {
        // The stream is gone (client went away): forget it if it was parked.
        if let Some(Ok(mut gateway)) = self.gateway.as_ref().map(|g| g.try_borrow_mut()) {
            gateway.forget(self.context_id);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(Ok(mut gateway)) = self.gateway.as_ref().map(|g| g.try_borrow_mut()) else {
            host::reply_internal_error();
            return Action::Pause;
        };
        let prefix = gateway.policy.settings().header_prefix.clone();
        host::remove_identity_headers(&prefix);

        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        let authorization = host::request_header("authorization");
        let request = Request {
            method: &method,
            path: &path,
            authorization: authorization.as_deref(),
        };
        let now = host::now();
        let outcome = match decide::begin(&gateway.policy, &request) {
            Ok(pending) => {
                let km = pending.key_manager();
                let keys = gateway.keys_for(km, now);
                let keys = keys.as_ref().map(|(set, generation)| Keys {
                    set,
                    generation: *generation,
                });
                let gw = &mut *gateway;
                decide::finish(
                    &gw.policy,
                    Box::new(pending),
                    keys,
                    now,
                    false,
                    &mut gw.verified,
                )
            }
            Err(outcome) => outcome,
        };
        match outcome {
            Outcome::NeedKeys {
                pending,
                unknown_kid,
            } => {
                let parked = Parked {
                    pending,
                    deadline: now + gateway.request_wait_seconds(),
                    generation: 0,
                };
                match gateway.park(self.context_id, parked, unknown_kid, now) {
                    Ok(()) => Action::Pause,
                    Err(outcome) => {
                        let continue_now = gateway.apply(&outcome);
                        drop(gateway);
                        if continue_now {
                            Action::Continue
                        } else {
                            Action::Pause
                        }
                    }
                }
            }
            other => {
                if gateway.apply(&other) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
        }
    }
}
