//! Every file `generate` writes, rendered in memory as (relative path, contents): the plugin
//! config, the Envoy bootstraps (local and compose), the live filter configs, the xDS files,
//! docker-compose.yaml, the rate-limit service's config and the Istio manifests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{GenerateError, Loaded, LIVE_DIR};
use crate::cli::declaration::model::{Declaration, DEFAULT_ADMIN, DEFAULT_CA_FILE, DEFAULT_LISTEN};
use crate::cli::discovery::url::HttpUrl;
use crate::cli::render::compose;
use crate::cli::render::envoy::{self, EnvoyOptions};
use crate::cli::render::istio;
use crate::cli::render::ratelimit;
use crate::config::PluginConfig;

/// Everything `generate` writes, as (relative path, contents). `out_dir` is the absolute output
/// directory, as Envoy on this machine sees it (the bootstrap names the live file inside it).
pub fn render(
    loaded: &Loaded,
    wasm_path: &str,
    wasm: Option<&istio::WasmSource>,
    out_dir: &Path,
) -> Result<Vec<(String, String)>, GenerateError> {
    let decl = &loaded.declaration;
    let plugin = &loaded.plugin;
    let listen = address(
        decl.gateway.listen.as_ref().map(|l| l.value.as_str()),
        DEFAULT_LISTEN,
    )?;
    let admin = address(
        decl.gateway.admin.as_ref().map(|l| l.value.as_str()),
        DEFAULT_ADMIN,
    )?;
    let local = EnvoyOptions {
        wasm_path: wasm_path.to_string(),
        listen,
        admin,
        ca_file: decl
            .gateway
            .ca_file
            .clone()
            .unwrap_or_else(|| DEFAULT_CA_FILE.to_string()),
        upstream_timeout_seconds: decl.gateway.upstream_timeout_seconds,
        ecds_dir: out_dir.join(LIVE_DIR).to_string_lossy().into_owned(),
        tls: decl.gateway.tls.as_ref().map(|tls| envoy::TlsOptions {
            cert: tls.cert.value.clone(),
            key: tls.key.value.clone(),
            client_ca: tls.client_ca.as_ref().map(|ca| ca.value.clone()),
            require_client_certificate: tls.require_client_certificate,
        }),
    };
    let network = compose::Network::for_targets(loopback_targets(decl, plugin));
    let container = EnvoyOptions {
        wasm_path: compose::CONTAINER_WASM.to_string(),
        listen: network.container_address(&listen),
        admin: network.container_address(&admin),
        ecds_dir: compose::CONTAINER_LIVE_DIR.to_string(),
        // The compose folder does not carry the TLS files: its listener stays plain HTTP.
        tls: None,
        ca_file: match decl.gateway.ca_file {
            Some(_) => compose::CONTAINER_CA_FILE.to_string(),
            None => DEFAULT_CA_FILE.to_string(),
        },
        ..local.clone()
    };

    let mut files = vec![("plugin-config.json".to_string(), loaded.plugin_json.clone())];
    if let Some(jwks) = envoy::backend_jwks(plugin) {
        files.push((
            "backend-jwks.json".into(),
            json_text("backend-jwks.json", &jwks)?,
        ));
    }
    let envoy_local = envoy::bootstrap(decl, plugin, &local)?;
    files.push(("envoy.yaml".into(), yaml("envoy.yaml", &envoy_local)?));
    let ecds_local = envoy::ecds_file(plugin, &local.wasm_path)?;
    files.push((live_file(""), yaml("live filter config", &ecds_local)?));
    let envoy_container = envoy::bootstrap(decl, plugin, &container)?;
    files.push((
        compose::COMPOSE_ENVOY_YAML.into(),
        yaml("compose/envoy.yaml", &envoy_container)?,
    ));
    let ecds_container = envoy::ecds_file(plugin, &container.wasm_path)?;
    files.push((
        live_file("compose/"),
        yaml("live filter config", &ecds_container)?,
    ));
    // For an xDS management server: the one resource to serve (JSON, as protojson reads it).
    let resource = envoy::filter_resource(plugin, &local.wasm_path)?;
    files.push((XDS_RESOURCE.into(), json_text("xds resource", &resource)?));
    files.push((
        XDS_HTTP_FILTER.into(),
        json_text("xds http filter", &envoy::filter_discovery_ads())?,
    ));
    // The compose folder carries every file its bootstrap names (the module is copied by `run`).
    if let Some(ca_file) = &decl.gateway.ca_file {
        let pem = std::fs::read_to_string(ca_file).map_err(|err| GenerateError::Io {
            path: PathBuf::from(ca_file),
            detail: format!("gateway.ca_file: {err}"),
        })?;
        files.push((compose::COMPOSE_CA_FILE.into(), pem));
    }
    let compose_options = compose::ComposeOptions {
        network,
        listen,
        admin,
        ca_file: decl.gateway.ca_file.is_some(),
        secret_envs: &envoy::secret_env_keys(plugin),
    };
    files.push((
        "docker-compose.yaml".into(),
        yaml(
            "docker-compose.yaml",
            &compose::compose_file(&compose_options),
        )?,
    ));
    if decl.gateway.rate_limit_service.is_some() || !plugin.tiers.is_empty() {
        files.push((
            ratelimit::CONFIG_FILE.into(),
            yaml(ratelimit::CONFIG_FILE, &ratelimit::service_config(plugin))?,
        ));
    }
    // Only when the declaration has an `istio` block (and so a module source).
    if let (Some(istio), Some(wasm)) = (&decl.istio, wasm) {
        for manifest in istio::manifests(&istio.value, &loaded.istio_plugin, wasm)? {
            let text = yaml("istio manifest", &manifest.resource)?;
            files.push((
                format!("istio/{}", manifest.file),
                manifest.comment() + &text,
            ));
        }
    }
    Ok(files)
}

/// For each host the bootstrap has a cluster for (upstreams, JWKS, introspection, rate-limit
/// service): whether it is on loopback.
fn loopback_targets<'a>(
    decl: &'a Declaration,
    plugin: &'a PluginConfig,
) -> impl Iterator<Item = bool> + 'a {
    let upstreams = decl
        .apis
        .iter()
        .filter_map(|api| api.upstream.as_ref().map(|u| u.value.clone()));
    let key_managers = plugin.key_managers.iter().flat_map(|km| {
        std::iter::once(km.jwks.uri.clone())
            .chain(km.introspection.as_ref().map(|i| i.endpoint.clone()))
    });
    let rate_limit = decl
        .gateway
        .rate_limit_service
        .as_ref()
        .map(|service| format!("http://{}", service.value));
    upstreams
        .chain(key_managers)
        .chain(rate_limit)
        .map(|url| HttpUrl::parse(&url).is_ok_and(|url| url.is_loopback()))
}

/// The xDS resource file, relative to the output directory.
pub const XDS_RESOURCE: &str = "xds/keygate-filter.json";
/// The HTTP filter entry that subscribes to it over ADS, for the listener an xDS server serves.
pub const XDS_HTTP_FILTER: &str = "xds/http-filter.json";

/// `<prefix>live/keygate-filter.yaml`.
pub fn live_file(prefix: &str) -> String {
    format!("{prefix}{LIVE_DIR}/{}", envoy::ECDS_FILE)
}

fn json_text(what: &'static str, value: &serde_json::Value) -> Result<String, GenerateError> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|err| GenerateError::Render {
            what,
            detail: err.to_string(),
        })
}

fn yaml(what: &'static str, value: &serde_json::Value) -> Result<String, GenerateError> {
    let body = serde_saphyr::to_string(value).map_err(|err| GenerateError::Render {
        what,
        detail: err.to_string(),
    })?;
    Ok(format!(
        "# Generated by keygate generate; edit keygate.yaml and regenerate instead.\n{body}"
    ))
}

fn address(value: Option<&str>, default: &str) -> Result<SocketAddr, GenerateError> {
    value
        .unwrap_or(default)
        .parse()
        .map_err(|err: std::net::AddrParseError| GenerateError::Render {
            what: "gateway address",
            detail: err.to_string(),
        })
}
