//! The root context: configuration, key caches, timers.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::PluginConfig;

use super::host;

pub struct Root {
    #[allow(dead_code)]
    context_id: u32,
    config: Option<PluginConfig>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            config: None,
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            log::error!("keygate: configuration: missing");
            return false;
        };
        match serde_json::from_slice::<PluginConfig>(&bytes) {
            Ok(config) => {
                self.config = Some(config);
                true
            }
            Err(err) => {
                log::error!("keygate: configuration: {err}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        None
    }
}
