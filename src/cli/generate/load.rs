//! From a declaration to a [`Loaded`] one: reading the file, the CLI's own checks, discovery of
//! every key manager, and the filter's compiler run on the plugin configs built from it.

use std::path::Path;

use super::GenerateError;
use crate::cli::declaration::model::{line_of, Declaration};
use crate::cli::declaration::validate;
use crate::cli::discover::{self, ResolveError};
use crate::cli::discovery::oidc::{self, CheckedDiscovery};
use crate::cli::render::cluster_naming::ClusterNaming;
use crate::cli::render::plugin;
use crate::config::PluginConfig;
use crate::policy::Policy;

/// A declaration whose key managers all passed discovery (in declaration order) and whose plugin
/// configs the filter's compiler accepted.
#[derive(Debug)]
pub struct Loaded {
    pub declaration: Declaration,
    pub discovered: Vec<CheckedDiscovery>,
    /// The plugin config for the Envoy bootstrap, and its text as written to `plugin-config.json`.
    pub plugin: PluginConfig,
    pub plugin_json: String,
    /// The plugin config for Istio (clusters named as Istio derives them).
    pub istio_plugin: PluginConfig,
    /// What the filter compiles from `plugin_json`.
    pub policy: Policy,
}

/// A declaration whose key managers all passed discovery, before the filter's compiler ran.
#[derive(Debug)]
pub struct Resolved {
    pub declaration: Declaration,
    pub discovered: Vec<CheckedDiscovery>,
}

impl Resolved {
    /// The plugin config the filter will read.
    pub fn plugin_config(&self, naming: ClusterNaming) -> PluginConfig {
        plugin::plugin_config(&self.declaration, &self.discovered, naming)
    }
}

/// Reads, validates and resolves a declaration (fetching well-known URLs without `discovery:`),
/// then compiles its plugin configs with the filter's compiler.
pub fn load(input: &Path, allow_http: bool) -> Result<Loaded, GenerateError> {
    let text = read(input)?;
    compile(resolve(&text, allow_http)?)
}

fn read(input: &Path) -> Result<String, GenerateError> {
    std::fs::read_to_string(input).map_err(|err| GenerateError::Io {
        path: input.to_path_buf(),
        detail: err.to_string(),
    })
}

/// Parses a declaration, runs the CLI's own checks and resolves every key manager's discovery.
pub fn resolve(text: &str, allow_http: bool) -> Result<Resolved, GenerateError> {
    let declaration = validate::parse_with(text, allow_http)
        .map_err(|errors| GenerateError::Declaration { errors })?;
    let mut discovered = Vec::new();
    for (i, km) in declaration.key_managers.iter().enumerate() {
        let allow = allow_http || km.allow_http;
        let url = &km.well_known_url;
        let (field, result) = match &km.discovery {
            Some(document) => (
                format!("key_managers[{i}].discovery"),
                oidc::check_document(&url.value, document.clone(), allow)
                    .map_err(ResolveError::Refused),
            ),
            None => (
                format!("key_managers[{i}].well_known_url"),
                discover::resolve(&url.value, allow),
            ),
        };
        let mut checked = result.map_err(|error| GenerateError::KeyManager {
            field,
            line: line_of(url),
            error,
        })?;
        // Introspection without an endpoint in the fetched document nor in the declaration: the
        // issuer's RFC 8414 metadata may name it (an inline document is used as it is).
        let declared = km.introspection.as_ref().map(|i| i.endpoint.is_some());
        if km.discovery.is_none() && declared == Some(false) {
            checked = discover::with_metadata_introspection(checked, allow);
        }
        discovered.push(checked);
    }
    Ok(Resolved {
        declaration,
        discovered,
    })
}

/// The plugin config as `plugin-config.json` holds it.
pub fn plugin_config_json(plugin: &PluginConfig) -> Result<String, GenerateError> {
    serde_json::to_string_pretty(plugin)
        .map(|text| text + "\n")
        .map_err(|err| GenerateError::Render {
            what: "plugin-config.json",
            detail: err.to_string(),
        })
}

/// Runs the filter's compiler on the plugin configs of a resolved declaration: the text written to
/// `plugin-config.json` first, then the Istio variant (which differs only in cluster names, so it
/// can only fail where the first does; it is compiled anyway, since it is what sidecars load).
pub fn compile(resolved: Resolved) -> Result<Loaded, GenerateError> {
    let plugin = resolved.plugin_config(ClusterNaming::Envoy);
    let istio_plugin = resolved.plugin_config(ClusterNaming::Istio);
    let plugin_json = plugin_config_json(&plugin)?;
    let refused = |errors| GenerateError::Declaration {
        errors: validate::refused(&resolved.declaration, errors),
    };
    let policy = Policy::from_json(plugin_json.as_bytes()).map_err(refused)?;
    Policy::from_json(plugin_config_json(&istio_plugin)?.as_bytes()).map_err(refused)?;
    if plugin.directory.is_some() {
        // The applications the source serves are judged by the filter's rules all the same.
        let inline = PluginConfig {
            applications: plugin::applications(&resolved.declaration),
            directory: None,
            ..plugin.clone()
        };
        Policy::compile(inline).map_err(refused)?;
    }
    Ok(Loaded {
        declaration: resolved.declaration,
        discovered: resolved.discovered,
        plugin,
        plugin_json,
        istio_plugin,
        policy,
    })
}
