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
//! is written to `plugin-config.json`, and compiled by
//! [`Policy::from_json`](crate::policy::Policy::from_json), the function the filter's
//! `on_configure` calls. A declaration is refused exactly when the filter would refuse its plugin
//! config, with each problem placed on the declaration's line.
//!
//! This file holds the command (its arguments and what it prints); the steps it runs are in
//! `load` (declaration to compiled plugin configs), `outputs` (every file rendered), `write`
//! (written under `--out`), `warnings` and `error`.

mod error;
mod load;
mod outputs;
mod warnings;
mod write;

use std::path::{Path, PathBuf};

use crate::cli::declaration::model::line_of;
use crate::cli::live;
use crate::cli::render::compose;
use crate::cli::render::istio;
use crate::cli::wasm_source;

pub use error::GenerateError;
pub use load::{compile, load, plugin_config_json, resolve, Loaded, Resolved};
pub use outputs::{live_file, render, XDS_HTTP_FILTER, XDS_RESOURCE};
pub use warnings::introspection_warnings;
use warnings::jwks_warnings;
pub use write::{write_all, WriteReport};

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
            crate::cli::discover::audience_warning(&km.name.value).trim_start_matches("# ")
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
