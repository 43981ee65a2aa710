//! The proxy-wasm shell (wasm32 only): reads host state, calls the core, applies the result.
//!
//! No policy lives here. `root` owns the compiled configuration and the key caches; `http` runs one
//! request through the core's decision steps; `host` wraps the raw host calls so that a host error
//! becomes a value instead of a panic inside the SDK's convenience methods.

mod host;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
