//! The root context: configuration, the timer, JWKS callout answers.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::introspection::Secrets;
use crate::policy::Policy;
use crate::worker::metrics;
use crate::worker::{directory_token, BackendSigner, Worker};

use super::host;
use super::http::Http;
use super::VmState;

/// Timer period: bounds how late a worker adopts keys another worker fetched, and how precisely
/// parked requests time out.
const TICK_MS: u64 = 200;

pub struct Root {
    context_id: u32,
    state: Option<Rc<RefCell<VmState>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            state: None,
        }
    }
}

/// A worker id unique among the VMs sharing the key records (WASI randomness via `RandomState`).
fn worker_id() -> u64 {
    RandomState::new().build_hasher().finish()
}

impl Context for Root {
    /// Envoy retires a root context when a newer configuration has replaced it and the last
    /// stream that started under it has ended, and at shutdown. Keys stay in shared data.
    fn on_done(&mut self) -> bool {
        if self.state.take().is_some() {
            log::info!("keygate: configuration retired");
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) else {
            log::error!("keygate: JWKS response arrived while the worker was busy");
            return;
        };
        let (worker, mut host) = state.host(self.context_id);
        worker.on_fetch_answer(&mut host, token_id, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            log::error!(
                "keygate: configuration: missing (the filter needs a JSON plugin configuration)"
            );
            host::count(metrics::configuration(false));
            return false;
        };
        let configured = Policy::from_json(&bytes).and_then(|policy| {
            // Introspection secrets come from the Wasm VM's environment (Envoy's
            // `vm_config.environment_variables`); only the filter can see them.
            let secrets = Secrets::from_env(&policy, |name| std::env::var(name).ok())?;
            let token = directory_token(&policy, |name| std::env::var(name).ok())?;
            let signer = BackendSigner::from_env(&policy, |name| std::env::var(name).ok())?;
            Ok((policy, secrets, token, signer))
        });
        match configured {
            Ok((policy, secrets, token, mut signer)) => {
                if let Some(signer) = signer.as_mut() {
                    let hosted = signer.probe(host::envoy_signer());
                    log::info!(
                        "keygate: backend JWTs signed with kid {} by {}",
                        signer.signing_kid().unwrap_or_default(),
                        if hosted { "Envoy (sign)" } else { "Wasm" }
                    );
                }
                log::info!(
                    "keygate: configured for environment {}: {} key manager(s), {} API(s)",
                    policy.environment(),
                    policy.key_managers().len(),
                    policy.apis().len()
                );
                let id = worker_id();
                let queue = host::register_queue(&format!("keygate.wakeup.{id:016x}"));
                let worker = Worker::new(policy, id)
                    .with_secrets(secrets)
                    .with_directory_token(token)
                    .with_backend_signer(signer);
                let crypto = host::probe_host_crypto();
                if crypto {
                    log::info!("keygate: RS*/ES* signatures checked by Envoy (verify_signature)");
                } else {
                    log::warn!("keygate: Envoy's verify_signature unavailable or unsound; all signatures checked in Wasm");
                }
                host::set_gauge(metrics::SIGNATURE_HOST, u64::from(crypto));
                host::count(metrics::configuration(true));
                self.state = Some(Rc::new(RefCell::new(VmState::new(worker, queue, crypto))));
                // The first tick pre-warms the key caches (clusters are ready by then).
                host::set_tick_period_ms(TICK_MS);
                true
            }
            Err(err) => {
                log::error!("keygate: configuration refused: {err}");
                host::count(metrics::configuration(false));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) else {
            return;
        };
        let (worker, mut host) = state.host(self.context_id);
        worker.on_tick(&mut host);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        host::drain_queue(queue_id);
        let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) else {
            return;
        };
        let (worker, mut host) = state.host(self.context_id);
        worker.on_wakeup(&mut host);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.state.clone())))
    }
}
