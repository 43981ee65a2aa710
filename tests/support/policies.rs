//! The plugin config the native decision and worker tests start from, its key manager, and a
//! worker that already has its keys. A test changes what it is about and keeps the rest.

use keygate::policy::Policy;
#[cfg(not(target_arch = "wasm32"))]
use keygate::worker::{FakeHost, Worker};
use serde_json::{json, Value};

use super::signers::NOW;

/// [`NOW`] in milliseconds, the fake host's clock.
pub const NOW_MS: u64 = NOW as u64 * 1000;

/// Key manager `name`: issuer `https://NAME.example`, audience `api://pets`, its JWKS at
/// `https://NAME.example/jwks` through cluster `jwks_NAME`.
pub fn key_manager(name: &str) -> Value {
    json!({
        "name": name,
        "issuer": format!("https://{name}.example"),
        "audiences": ["api://pets"],
        "jwks": {"uri": format!("https://{name}.example/jwks"), "cluster": format!("jwks_{name}"),
                 "authority": format!("{name}.example"), "path": "/jwks"}
    })
}

/// Key manager `idp`; API `pets` at `/pets` whose `GET /items` needs `pets:read`; application
/// `shop` (client id `app-1` of `idp`) subscribed to it; the gateway's origin (what DPoP proofs
/// name) `http://api.example`; `settings` as given.
pub fn config(settings: Value) -> Value {
    json!({
        "environment": "production",
        "public_urls": ["http://api.example"],
        "key_managers": [key_manager("idp")],
        "apis": [{"name": "pets", "base_path": "/pets", "resources": [
            {"method": "GET", "path": "/items", "scopes": ["pets:read"]}
        ]}],
        "applications": [{"name": "shop",
            "client_ids": [{"key_manager": "idp", "client_id": "app-1"}],
            "subscriptions": [{"api": "pets"}]}],
        "settings": settings
    })
}

/// The policy the filter compiles from `cfg` (a test config must compile).
pub fn compile(cfg: &Value) -> Policy {
    Policy::from_json(cfg.to_string().as_bytes()).unwrap()
}

/// A worker of `policy` whose first tick fetched `jwks`, and its host at [`NOW_MS`].
#[cfg(not(target_arch = "wasm32"))]
pub fn warmed(policy: Policy, jwks: &[u8]) -> (Worker, FakeHost) {
    let mut worker = Worker::new(policy, 7);
    let mut host = FakeHost::new(NOW_MS);
    worker.on_tick(&mut host);
    let token = host.last_dispatch().unwrap().token;
    host.answer(&mut worker, token, 200, jwks);
    (worker, host)
}
