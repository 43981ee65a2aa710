//! The root context: configuration, the worker's gateway state, the timer, JWKS responses.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::policy::Policy;

use super::gateway::Gateway;
use super::host;
use super::http::Http;

/// Timer period: bounds how late a worker adopts keys another worker fetched, and how precisely
/// parked requests time out.
const TICK_MS: u64 = 200;

pub struct Root {
    context_id: u32,
    gateway: Option<Rc<RefCell<Gateway>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            gateway: None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(gateway) = &self.gateway {
            Gateway::fetch_done(gateway, token_id, body_size, self.context_id);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            log::error!(
                "keygate: configuration: missing (the filter needs a JSON plugin configuration)"
            );
            return false;
        };
        let policy = Policy::from_json(&bytes);
        match policy {
            Ok(policy) => {
                log::info!(
                    "keygate: configured for environment {}: {} key manager(s), {} API(s)",
                    policy.environment(),
                    policy.key_managers().len(),
                    policy.apis().len()
                );
                self.gateway = Some(Rc::new(RefCell::new(Gateway::new(policy))));
                // The first tick pre-warms the key caches (clusters are ready by then).
                host::set_tick_period_ms(TICK_MS);
                true
            }
            Err(err) => {
                log::error!("keygate: configuration refused: {err}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(gateway) = &self.gateway {
            Gateway::tick(gateway, self.context_id);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.gateway.clone())))
    }
}
