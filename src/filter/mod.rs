//! The proxy-wasm shell (wasm32 only): reads host state, calls the core, applies the result.
