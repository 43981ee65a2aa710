//! The proxy-wasm shell (wasm32 only): the core's `worker::Host` over Envoy's host calls, and the
//! contexts that forward Envoy's callbacks to the worker. No decision is made here.

mod host;
mod http;
mod raw;
mod root;

use std::collections::BTreeMap;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

use crate::worker::Worker;

/// Per-VM state shared by the root context and the stream contexts of one worker thread. Envoy
/// calls a VM on one thread only, so `Rc<RefCell<_>>` is enough; every borrow is `try_borrow_mut`
/// so that a re-entrant call fails closed instead of panicking.
pub struct VmState {
    worker: Worker,
    /// Counter name → host metric id (defined on first use).
    metrics: BTreeMap<String, Option<u32>>,
    /// The shared queue that wakes this worker's root context (None: ticks do the work).
    queue: Option<u32>,
    /// RS*/ES* signatures are checked by Envoy (`verify_signature`), not in Wasm.
    crypto: bool,
}

impl VmState {
    fn new(worker: Worker, queue: Option<u32>, crypto: bool) -> Self {
        VmState {
            worker,
            metrics: BTreeMap::new(),
            queue,
            crypto,
        }
    }

    /// The host for one callback into `context`.
    fn host(&mut self, context: u32) -> (&mut Worker, host::ProxyHost<'_>) {
        let VmState {
            worker,
            metrics,
            queue,
            crypto,
        } = self;
        (
            worker,
            host::ProxyHost::new(context, *queue, *crypto, metrics),
        )
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
