//! Counters (Envoy shows them as `wasmcustom.keygate_*`; every worker adds to the same stat).

use std::collections::BTreeMap;

use super::host;

pub struct Metrics {
    ids: BTreeMap<String, Option<u32>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            ids: BTreeMap::new(),
        }
    }

    fn bump(&mut self, name: &str) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => {
                let id = host::counter(name);
                self.ids.insert(name.to_string(), id);
                id
            }
        };
        if let Some(id) = id {
            host::increment(id);
        }
    }

    pub fn allowed(&mut self) {
        self.bump("keygate_allowed");
    }

    pub fn denied(&mut self, code: &str) {
        self.bump("keygate_denied");
        self.bump(&format!("keygate_denied_{code}"));
    }

    pub fn jwks_fetch(&mut self) {
        self.bump("keygate_jwks_fetches");
    }

    pub fn jwks_fetch_failed(&mut self) {
        self.bump("keygate_jwks_fetch_failures");
    }
}
