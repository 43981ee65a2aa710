//! From the store to the gateway: the store is exported as a declaration, compiled by `generate`'s
//! own path (the CLI's checks, then the filter's `Policy::from_json`) and written into the output
//! directory atomically, exactly as `keygate generate` writes it (a running Envoy reloads the live
//! filter config on the rename). A refused declaration writes nothing: the caller rolls back.

use std::path::{Path, PathBuf};

use super::model::Export;
use super::store::{self, ConsoleError, Db, Result};
use crate::cli::generate::{self, GenerateError, Loaded};
use crate::cli::live;

/// The declaration the console last applied, next to what `generate` writes.
pub const DECLARATION_FILE: &str = "keygate.yaml";

#[derive(Debug, Clone)]
pub struct Applier {
    /// The output directory (absolute).
    pub out: PathBuf,
    /// The filter module the bootstrap names.
    pub wasm: PathBuf,
    /// Accept plain http key managers on non-loopback hosts.
    pub allow_http: bool,
    /// Gateways read the applications from this directory source (the console's own
    /// `/keygate/directory`): the declaration written gets a `directory:` block (the application
    /// directory change, issue 24), so `generate` leaves the applications out of the plugin
    /// config. They are still compiled inline first, so a refused application is refused here.
    pub directory: Option<DirectorySource>,
}

/// The `directory:` block of the declaration the console writes.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    pub url: String,
    /// The variable of Envoy's environment holding the bearer token for the source.
    pub token_env: Option<String>,
}

impl DirectorySource {
    fn block(&self) -> String {
        let quote = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let mut block = format!("directory:\n  url: {}\n", quote(&self.url));
        if let Some(var) = &self.token_env {
            block.push_str(&format!("  token_env: {}\n", quote(var)));
        }
        block
    }
}

/// What applying did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Files that changed.
    pub changed: usize,
    /// Why a running Envoy needs a restart (empty: everything applied live).
    pub restart: Vec<String>,
    /// Which applications gained or lost access to which resources ([`access_changes`]).
    pub access: Vec<String>,
}

impl Applied {
    pub fn summary(&self) -> String {
        let mut text = if self.restart.is_empty() {
            format!("applied ({} file(s) changed)", self.changed)
        } else {
            format!(
                "applied; restart Envoy to complete it: {}",
                self.restart.join("; ")
            )
        };
        if !self.access.is_empty() {
            text.push_str(&format!("; {}", self.access.join("; ")));
        }
        text
    }
}

/// A refusal of `generate`, as the field it names and the whole message.
pub fn refusal(err: GenerateError) -> ConsoleError {
    match &err {
        GenerateError::Declaration { errors } => {
            let field = errors
                .first()
                .map(|e| e.field().to_string())
                .unwrap_or_default();
            let message: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            ConsoleError::Invalid {
                field: if field.is_empty() {
                    "declaration".into()
                } else {
                    field
                },
                message: format!(
                    "refused by the compiler, nothing changed: {}",
                    message.join("; ")
                ),
            }
        }
        GenerateError::KeyManager { field, .. } => ConsoleError::Invalid {
            field: field.clone(),
            message: format!("refused, nothing changed: {err}"),
        },
        _ => ConsoleError::Internal(err.to_string()),
    }
}

/// Compiles a declaration with the filter's compiler (no network: key managers carry their
/// reviewed discovery document).
pub fn compile(export: &Export, allow_http: bool) -> Result<Loaded> {
    let text = export.to_yaml().map_err(ConsoleError::Internal)?;
    generate::resolve(&text, allow_http)
        .and_then(generate::compile)
        .map_err(refusal)
}

impl Applier {
    /// Compiles the store's current state and writes it; refused: nothing is written.
    pub fn apply(&self, conn: &Db) -> Result<Applied> {
        let export = store::export(conn)?;
        let mut text = export.to_yaml().map_err(ConsoleError::Internal)?;
        let mut loaded = generate::resolve(&text, self.allow_http)
            .and_then(generate::compile)
            .map_err(refusal)?;
        if let Some(directory) = &self.directory {
            text.push_str(&directory.block());
            loaded = generate::resolve(&text, self.allow_http)
                .and_then(generate::compile)
                .map_err(refusal)?;
        }
        let mut files = generate::render(&loaded, &self.wasm.to_string_lossy(), None, &self.out)
            .map_err(refusal)?;
        files.insert(0, (DECLARATION_FILE.to_string(), text));
        let report = generate::write_all(&self.out, &files).map_err(refusal)?;
        Ok(Applied {
            changed: report
                .files
                .iter()
                .filter(|(_, how)| *how != live::Written::Unchanged)
                .count(),
            restart: report.restart,
            access: Vec::new(),
        })
    }
}

/// The absolute form of a path (relative to the working directory).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What each application may call and how: `application A: API X: METHOD /path` for every
/// resource of every API it is actively subscribed to, when the application is active and has a
/// client ID of a key manager enabled in the gateway's environment (or, for a resource without
/// scopes and groups of an API that accepts API keys, an API key); `application A: client ID C
/// of key manager K` for each client ID that key manager would accept; and `application A: API
/// X: tier T (N per P)` for each subscription with a tier. Public resources are open to everyone
/// and left out.
pub fn access(export: &Export) -> std::collections::BTreeSet<String> {
    use crate::config::{ApplicationState, SubscriptionState};
    let environment = export.gateway.environment.as_str();
    let enabled = |name: &str| {
        export.key_managers.iter().any(|km| {
            km.name == name
                && (km.environments.is_empty() || km.environments.iter().any(|e| e == environment))
        })
    };
    let mut out = std::collections::BTreeSet::new();
    for app in &export.applications {
        if app.state != ApplicationState::Active {
            continue;
        }
        let mut tokens = false;
        for c in app.client_ids.iter().filter(|c| enabled(&c.key_manager)) {
            tokens = true;
            out.insert(format!(
                "application {}: client ID {} of key manager {}",
                app.name, c.client_id, c.key_manager
            ));
        }
        let keys = !app.api_keys.is_empty();
        for sub in app
            .subscriptions
            .iter()
            .filter(|s| s.state == SubscriptionState::Active)
        {
            let Some(api) = export.apis.iter().find(|a| a.name == sub.api) else {
                continue;
            };
            if let Some(tier) = &sub.tier {
                let limit = export
                    .tiers
                    .iter()
                    .find(|t| &t.name == tier)
                    .map(|t| format!(" ({} per {})", t.requests, t.per))
                    .unwrap_or_default();
                out.insert(format!(
                    "application {}: API {}: tier {tier}{limit}",
                    app.name, api.name
                ));
            }
            let by_key = keys && api.security.iter().any(|s| s == "api_key");
            for r in api.resources.iter().filter(|r| !r.public) {
                let open_to_key = by_key && r.scopes.is_empty() && r.groups.is_empty();
                if tokens || open_to_key {
                    out.insert(format!(
                        "application {}: API {}: {} {}{}",
                        app.name,
                        api.name,
                        r.method,
                        api.base_path.trim_end_matches('/'),
                        r.path
                    ));
                }
            }
        }
    }
    out
}

/// The difference of two access sets, as `gains ...` and `loses ...` lines.
pub fn access_changes(before: &Export, after: &Export) -> Vec<String> {
    let (old, new) = (access(before), access(after));
    let mut lines: Vec<String> = new
        .difference(&old)
        .map(|line| format!("gains {line}"))
        .collect();
    lines.extend(old.difference(&new).map(|line| format!("loses {line}")));
    lines
}
