//! `keygate generate`: declaration → plugin config, Envoy bootstrap, the filter's live config
//! (ECDS), Istio manifests and a docker-compose file. `--check` stops after validation and
//! discovery.
//!
//! Live configuration: the bootstrap does not carry the filter's config; Envoy reads it by ECDS
//! from `live/keygate-filter.yaml` and reloads it when that file is renamed into place. Every file
//! is written by write-temp-then-rename and only when its contents change, so running `generate`
//! again while Envoy runs applies the new declaration without a restart. When the bootstrap
//! itself changes (a new cluster, listener, admin address or route), the new `envoy.yaml` is
//! written too and `generate` says a restart is required (a `keygate: restart required:` line on
//! stderr, exit status [`EXIT_RESTART_REQUIRED`]). A refused declaration writes nothing.
//!
//! Validation is the filter's: after discovery the plugin config is built, serialised exactly as it
//! is written to `plugin-config.json`, and compiled by [`Policy::from_json`], the function the
//! filter's `on_configure` calls. A declaration is refused exactly when the filter would refuse
//! its plugin config, with each problem placed on the declaration's line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::declaration::model::{
    line_of, Declaration, DEFAULT_ADMIN, DEFAULT_CA_FILE, DEFAULT_LISTEN,
};
use crate::cli::declaration::validate::{self, DeclarationError};
use crate::cli::discover::{self, ResolveError};
use crate::cli::discovery::http::{self, HttpGetError};
use crate::cli::discovery::oidc::{self, CheckedDiscovery};
use crate::cli::discovery::url::{HttpUrl, NameCollision};
use crate::cli::live;
use crate::cli::render::cluster_naming::ClusterNaming;
use crate::cli::render::compose;
use crate::cli::render::envoy::{self, BootstrapError, EnvoyOptions};
use crate::cli::render::istio;
use crate::cli::render::plugin;
use crate::cli::render::ratelimit;
use crate::cli::wasm_source::{self, SourceError};
use crate::config::PluginConfig;
use crate::policy::Policy;

/// Exit status when the files were written but the bootstrap changed: the live filter config is
/// applied by the running Envoy, the rest needs a restart.
pub const EXIT_RESTART_REQUIRED: i32 = 3;
/// The directory (under `--out`) of the file Envoy watches for the filter's config.
pub const LIVE_DIR: &str = "live";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The declaration (YAML or JSON).
    #[arg(long)]
    pub input: PathBuf,
    /// Output directory (created if missing); required unless --check.
    #[arg(long, required_unless_present = "check")]
    pub out: Option<PathBuf>,
    /// The filter module for envoy.yaml and docker-compose.yaml (default: the project's
    /// target/wasm32-wasip1/release/keygate.wasm).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Where Istio proxies load the module from (oci://, file://, http(s)://; default:
    /// oci:// + istio.image, else istio.wasm_url of the declaration).
    #[arg(long)]
    pub wasm_url: Option<String>,
    /// The checksum Istio verifies (WasmPlugin `sha256`; default: istio.wasm_sha256 of the
    /// declaration, else computed from --wasm): for an oci:// URL the image's manifest digest,
    /// else the .wasm's SHA-256 (`keygate oci` prints both).
    #[arg(long)]
    pub wasm_sha256: Option<String>,
    /// Validate and resolve discovery, write nothing.
    #[arg(long)]
    pub check: bool,
    /// Accept plain http discovery/JWKS URLs on non-loopback hosts.
    #[arg(long)]
    pub allow_http: bool,
}

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

#[derive(Debug)]
pub enum GenerateError {
    Io {
        path: PathBuf,
        detail: String,
    },
    Declaration {
        errors: Vec<DeclarationError>,
    },
    KeyManager {
        field: String,
        line: u64,
        error: ResolveError,
    },
    Render {
        what: &'static str,
        detail: String,
    },
    /// Writing the output failed part way: the files before `path` are written.
    Written {
        path: PathBuf,
        detail: String,
    },
}

impl GenerateError {
    pub fn code(&self) -> &'static str {
        match self {
            GenerateError::Io { .. } => "io",
            GenerateError::Declaration { .. } => "invalid_declaration",
            GenerateError::KeyManager { error, .. } => error.code(),
            GenerateError::Render { .. } => "render",
            GenerateError::Written { .. } => "io",
        }
    }

    /// Whether some output was written before the error.
    pub fn wrote(&self) -> bool {
        matches!(self, GenerateError::Written { .. })
    }

    /// 1 for a refused declaration or discovery document, 2 for I/O and network.
    pub fn exit_code(&self) -> i32 {
        match self {
            GenerateError::Declaration { .. } => 1,
            GenerateError::KeyManager {
                error: ResolveError::Refused(_),
                ..
            } => 1,
            _ => 2,
        }
    }
}

impl GenerateError {
    /// The error as said about the declaration `input`: `input: error`, with the path said once
    /// when the error is about that very file (it cannot be read).
    pub fn about(&self, input: &Path) -> String {
        match self {
            GenerateError::Io { path, .. } if path == input => self.to_string(),
            _ => format!("{}: {self}", input.display()),
        }
    }
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::Io { path, detail } => write!(f, "{}: {detail}", path.display()),
            GenerateError::Declaration { errors } => {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                f.write_str(&lines.join("\n"))
            }
            GenerateError::KeyManager { field, line, error } => {
                write!(f, "line {line}: {field}: {error}")
            }
            GenerateError::Render { what, detail } => write!(f, "cannot render {what}: {detail}"),
            GenerateError::Written { path, detail } => write!(
                f,
                "{}: {detail} (files before it were written; the live filter config is written \
                 last, so a running Envoy still has the old one)",
                path.display()
            ),
        }
    }
}

// The render files' errors become `GenerateError` here, not in the render files, so that
// rendering does not import `generate`.

/// An Envoy file that cannot be rendered.
impl From<BootstrapError> for GenerateError {
    fn from(err: BootstrapError) -> Self {
        GenerateError::Render {
            what: "envoy.yaml",
            detail: err.to_string(),
        }
    }
}

/// No module source for Istio, or a wrong `--wasm-url`/`--wasm-sha256`.
impl From<SourceError> for GenerateError {
    fn from(err: SourceError) -> Self {
        match err {
            SourceError::Flag { flag, detail } => GenerateError::Io {
                path: PathBuf::from(flag),
                detail,
            },
            SourceError::Declaration(error) => GenerateError::Declaration {
                errors: vec![error],
            },
        }
    }
}

/// Two Istio targets behind one name ([`istio::manifests`]).
impl From<NameCollision> for GenerateError {
    fn from(err: NameCollision) -> Self {
        GenerateError::Render {
            what: "istio manifests",
            detail: err.to_string(),
        }
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

/// `--check`: each key manager whose discovery was fetched gets its JWKS fetched too, and one that
/// cannot be (unreachable, not 200, not a JWKS) is a warning with its URL: Envoy would start, and
/// refuse every token of that key manager with 503 until the JWKS answers. An inline `discovery:`
/// means nothing of that key manager is fetched, so its JWKS is not either.
fn jwks_warnings(decl: &Declaration, discovered: &[CheckedDiscovery]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (km, found) in decl.key_managers.iter().zip(discovered) {
        if km.discovery.is_some() {
            continue;
        }
        let url = found.jwks_uri.to_string();
        let problem = match http::get_json::<serde_json::Value>(&url) {
            Ok(jwks) if jwks.get("keys").is_some_and(serde_json::Value::is_array) => continue,
            Ok(_) => "answered JSON without a \"keys\" array".to_string(),
            Err(HttpGetError::Transport { detail, .. }) => format!("cannot be fetched: {detail}"),
            Err(HttpGetError::Status { status, .. }) => format!("answered HTTP {status}"),
            Err(HttpGetError::NotJson { detail, .. }) => format!("did not answer a JWKS: {detail}"),
        };
        warnings.push(format!(
            "line {}: warning: key manager {}: JWKS {url} {problem}; Envoy would answer its \
             tokens 503 until it can be fetched",
            line_of(&km.well_known_url),
            km.name.value
        ));
    }
    warnings
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

/// The module path: `--wasm`, else the release build next to this binary's target directory, else
/// the one of the source tree this binary was built from; always absolute.
pub fn default_wasm_path() -> PathBuf {
    let relative = Path::new("wasm32-wasip1")
        .join("release")
        .join("keygate.wasm");
    // target/<profile>/keygate → target/wasm32-wasip1/release/keygate.wasm
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
    {
        let candidate = target.join(&relative);
        if candidate.is_file() {
            return candidate;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(relative)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Runs the subcommand and returns the process exit code: 0, [`EXIT_RESTART_REQUIRED`], or the
/// error's (1 refused, 2 I/O; nothing was written then).
pub fn run(args: Args) -> i32 {
    match run_inner(&args) {
        Ok(restart) if restart.is_empty() => 0,
        Ok(restart) => {
            eprintln!(
                "keygate: restart required: envoy.yaml changed ({}); a running Envoy applied the \
                 new filter config live but keeps its old bootstrap until restarted",
                restart.join("; ")
            );
            EXIT_RESTART_REQUIRED
        }
        Err(err) => {
            match &err {
                GenerateError::Declaration { errors } => {
                    for error in errors {
                        eprintln!("{}:{error}", args.input.display());
                    }
                    eprintln!(
                        "keygate: {} error(s) in {}",
                        errors.len(),
                        args.input.display()
                    );
                }
                _ => eprintln!("keygate: {}", err.about(&args.input)),
            }
            if let (Some(out), false, false) = (&args.out, args.check, err.wrote()) {
                eprintln!(
                    "keygate: nothing written to {}; a running Envoy keeps its configuration",
                    out.display()
                );
            }
            err.exit_code()
        }
    }
}

/// Generates; returns what changed in an existing `envoy.yaml` (empty when nothing did).
fn run_inner(args: &Args) -> Result<Vec<String>, GenerateError> {
    let loaded = load(&args.input, args.allow_http)?;
    let wasm = absolute(&args.wasm.clone().unwrap_or_else(default_wasm_path));
    // A module named on the command line must be there; the default one may be built later.
    if let (Some(given), false) = (&args.wasm, wasm.is_file()) {
        return Err(GenerateError::Io {
            path: given.clone(),
            detail: "--wasm: no such file (build it with `make wasm`, or name the module)".into(),
        });
    }
    let source = match &loaded.declaration.istio {
        Some(istio) => {
            let (source, warning) = wasm_source::resolve(
                istio,
                args.wasm_url.as_deref(),
                args.wasm_sha256.as_deref(),
                &wasm,
            )?;
            let warnings = istio::warnings(&loaded.istio_plugin);
            for warning in warning.iter().chain(&warnings) {
                eprintln!("keygate: warning: istio: {warning}");
            }
            for (i, api) in loaded.declaration.apis.iter().enumerate() {
                if let (Some(path), Some(upstream)) = (api.upstream_path(), &api.upstream) {
                    eprintln!(
                        "{}:line {}: keygate: warning: istio: apis[{i}].upstream carries the path \
                         {path}, which the WasmPlugin cannot rewrite: with `attach: gateway`, give the \
                         gateway's VirtualService route for {} a `rewrite: {{uri: {path}}}`; a \
                         sidecar sees the path as its workload receives it (docs/declaration.md, \"Upstream path\")",
                        args.input.display(),
                        line_of(upstream),
                        api.base_path.value,
                    );
                }
            }
            Some(source)
        }
        None => None,
    };
    let out_dir = args.out.as_deref().map(absolute).unwrap_or_default();
    let files = render(&loaded, &wasm.to_string_lossy(), source.as_ref(), &out_dir)?;
    let decl = &loaded.declaration;
    for km in decl
        .key_managers
        .iter()
        .filter(|km| km.audiences.is_empty())
    {
        eprint!(
            "{}:line {}: {}",
            args.input.display(),
            line_of(&km.name),
            super::discover::audience_warning(&km.name.value).trim_start_matches("# ")
        );
    }
    for warning in introspection_warnings(&loaded) {
        eprintln!("{}:{warning}", args.input.display());
    }
    if args.check {
        for warning in jwks_warnings(decl, &loaded.discovered) {
            eprintln!("{}:{warning}", args.input.display());
        }
        println!(
            "keygate: {} is valid: {} key manager(s), {} API(s), {} application(s)",
            args.input.display(),
            decl.key_managers.len(),
            decl.apis.len(),
            decl.applications.len()
        );
        return Ok(Vec::new());
    }
    let Some(out) = &args.out else {
        return Err(GenerateError::Io {
            path: PathBuf::from("--out"),
            detail: "an output directory is required".into(),
        });
    };
    let mut written = write_all(out, &files)?;
    // The compose folder's own copy of the module, so it can be handed on as it is.
    if let Ok(module) = std::fs::read(&wasm) {
        let path = out.join(compose::COMPOSE_WASM);
        let how = live::write_atomic(&path, module).map_err(|err| GenerateError::Written {
            path: path.clone(),
            detail: err.to_string(),
        })?;
        written.files.push((compose::COMPOSE_WASM.to_string(), how));
    }
    let unchanged = written
        .files
        .iter()
        .filter(|(_, how)| *how == live::Written::Unchanged)
        .count();
    let total = written.files.len();
    if unchanged == 0 {
        println!("keygate: wrote {total} files to {}", out.display());
    } else {
        println!(
            "keygate: wrote {} of {total} files to {} ({unchanged} unchanged)",
            total - unchanged,
            out.display()
        );
    }
    for (relative, how) in &written.files {
        println!("  {relative} ({})", how.label());
    }
    for (km, found) in decl.key_managers.iter().zip(&loaded.discovered) {
        println!(
            "  key manager {}: issuer {}, JWKS {}",
            km.name.value, found.issuer, found.jwks_uri
        );
        if let Some(introspection) = &km.introspection {
            println!(
                "    opaque tokens: introspected at {} as client {}; Envoy needs {} in its environment",
                found
                    .document
                    .introspection_endpoint
                    .as_deref()
                    .unwrap_or_default(),
                introspection.client_id.value,
                introspection.client_secret_env.value
            );
        }
        for note in &found.notes {
            println!("    note: {note}");
        }
    }
    if !wasm.is_file() {
        println!(
            "  warning: {} does not exist yet (build it with `make wasm`)",
            wasm.display()
        );
    }
    println!(
        "  run: envoy -c {}",
        absolute(&out.join("envoy.yaml")).display()
    );
    Ok(written.restart)
}

/// What [`write_all`] did.
#[derive(Debug)]
pub struct WriteReport {
    pub files: Vec<(String, live::Written)>,
    /// What changed in an `envoy.yaml` that was there before (a running Envoy needs a restart).
    pub restart: Vec<String>,
}

/// Writes every file atomically, when changed. The live filter config goes last: by then
/// everything it may refer to is on disk. A running Envoy reloads it on the rename.
pub fn write_all(out: &Path, files: &[(String, String)]) -> Result<WriteReport, GenerateError> {
    let live = live_file("");
    let mut restart = Vec::new();
    if let Some((_, contents)) = files.iter().find(|(name, _)| name == "envoy.yaml") {
        let path = out.join("envoy.yaml");
        if let Ok(old) = std::fs::read_to_string(&path) {
            if old != *contents {
                let parse = |text: &str| serde_saphyr::from_str::<serde_json::Value>(text).ok();
                restart = match (parse(&old), parse(contents)) {
                    (Some(old), Some(new)) => live::bootstrap_changes(&old, &new),
                    _ => Vec::new(),
                };
                if restart.is_empty() {
                    restart.push("edited since it was generated".to_string());
                }
            }
        }
    }
    let (last, first): (Vec<_>, Vec<_>) = files.iter().partition(|(name, _)| *name == live);
    let mut report = Vec::new();
    for (relative, contents) in first.into_iter().chain(last) {
        let path = out.join(relative);
        let how = live::write_atomic(&path, contents).map_err(|err| GenerateError::Written {
            path: path.clone(),
            detail: err.to_string(),
        })?;
        report.push((relative.clone(), how));
    }
    Ok(WriteReport {
        files: report,
        restart,
    })
}

/// One warning per API whose opaque tokens would be introspected at more than one key manager
/// (`line L: warning: ...`): they are asked in declaration order, so a token issued by a later
/// one is disclosed to the earlier ones. `apis[].key_managers` routes them to one.
pub fn introspection_warnings(loaded: &Loaded) -> Vec<String> {
    let policy = &loaded.policy;
    let decl = &loaded.declaration;
    let mut warnings = Vec::new();
    for (i, api) in decl.apis.iter().enumerate() {
        let route = crate::policy::RouteMatch {
            api: crate::policy::ApiId::new(i),
            resource: 0,
        };
        let asked = policy.introspection_order_for(&route);
        if asked.len() < 2 {
            continue;
        }
        let names: Vec<&str> = asked
            .iter()
            .filter_map(|&km| policy.key_manager(km).map(|m| m.name.as_str()))
            .collect();
        warnings.push(format!(
            "line {}: warning: API {}: an opaque token is introspected at key managers {} in \
             this order, so a token issued by a later one is sent to the earlier ones; list the \
             one that issues this API's tokens in `apis[].key_managers`",
            line_of(&api.name),
            api.name.value,
            names.join(", ")
        ));
    }
    warnings
}
