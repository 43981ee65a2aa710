//! One HTTP stream: hand its headers to the worker, tell Envoy the verdict.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::worker::RequestAction;

use super::host;
use super::VmState;

pub struct Http {
    context_id: u32,
    /// None only when configuration failed (Envoy then refuses the plugin; fail closed anyway).
    state: Option<Rc<RefCell<VmState>>>,
}

impl Http {
    pub fn new(context_id: u32, state: Option<Rc<RefCell<VmState>>>) -> Self {
        Http { context_id, state }
    }
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        if let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) {
            state.worker.on_done(self.context_id);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) else {
            host::reply_internal_error();
            return Action::Pause;
        };
        let Some(headers) = host::request_headers() else {
            host::reply_internal_error();
            return Action::Pause;
        };
        let (worker, mut host) = state.host(self.context_id);
        match worker.on_request(&mut host, self.context_id, &headers) {
            RequestAction::Continue => Action::Continue,
            RequestAction::Pause => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(Ok(mut state)) = self.state.as_ref().map(|s| s.try_borrow_mut()) {
            let (worker, mut host) = state.host(self.context_id);
            worker.on_response(&mut host, self.context_id);
        }
        Action::Continue
    }
}
