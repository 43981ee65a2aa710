//! `keygate console`: the web console (native only). Administrators register key managers by
//! their well-known URL, APIs and tiers; application developers create applications, add client
//! IDs, read the instructions and subscribe. Every change is compiled by `generate`'s own path and
//! written into `--out` atomically (live configuration); applications are also served to gateways
//! by the application directory protocol. `export` and `import` move the state to and from a
//! `keygate.yaml`. docs/console.md is the reference.

pub mod api;
pub mod apply;
pub mod auth;
pub mod directory;
pub mod http;
pub mod model;
pub mod ops;
pub mod preview;
pub mod resources;
pub mod store;
pub mod web;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apply::Applier;
use auth::{Auth, OidcSettings};
use model::Export;
use ops::Console;
use store::Store;
use web::Web;

/// The store's file name inside `--out` when `--db` is not given.
pub const DEFAULT_DB: &str = "console.sqlite";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9500";

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print the store as a keygate.yaml that `generate` accepts.
    Export(StoreArgs),
    /// Replace the store's contents with a keygate.yaml (checked by the compiler first).
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The store: a SQLite file (default: DIR/console.sqlite of --out) or a PostgreSQL URL
    /// (postgres://user@host:port/database).
    #[arg(long, visible_alias = "store")]
    pub db: Option<PathBuf>,
    /// The console's output directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The declaration to import.
    pub file: PathBuf,
    /// Accept plain http key managers on non-loopback hosts.
    #[arg(long)]
    pub allow_http: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Output directory: what `generate` writes (Envoy runs from DIR/envoy.yaml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// The store: a SQLite file (default: DIR/console.sqlite) or a PostgreSQL URL
    /// (postgres://user@host:port/database).
    #[arg(long, visible_alias = "store")]
    pub db: Option<PathBuf>,
    /// The filter module the bootstrap names (default as `generate`).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The console's origin as browsers reach it (default: http:// + the listen address).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Sign-in: the well-known URL of the console's key manager.
    #[arg(long)]
    pub oidc_well_known_url: Option<String>,
    /// Sign-in: the console's client ID at that key manager.
    #[arg(long, default_value = "keygate-console")]
    pub oidc_client_id: String,
    /// Sign-in: the environment variable holding the console's client secret.
    #[arg(long, default_value = "KEYGATE_CONSOLE_CLIENT_SECRET")]
    pub oidc_client_secret_env: String,
    /// Members of this group are administrators.
    #[arg(long, default_value = "keygate-admins")]
    pub admin_group: String,
    /// The token claim that lists the user's groups.
    #[arg(long, default_value = "groups")]
    pub groups_claim: String,
    /// Accepted `aud` of REST API access tokens; repeatable (omitted: not checked).
    #[arg(long = "api-audience")]
    pub api_audiences: Vec<String>,
    /// The gateway's environment, for a new store.
    #[arg(long, default_value = "production")]
    pub environment: String,
    /// The gateway's listener `host:port`, for a new store.
    #[arg(long)]
    pub gateway_listen: Option<String>,
    /// The gateway's admin `host:port`, for a new store.
    #[arg(long)]
    pub gateway_admin: Option<String>,
    /// The environment variable holding the bearer token gateways send to the directory (the
    /// console reads it; with --directory-url, Envoy reads the same name).
    #[arg(long)]
    pub directory_token_env: Option<String>,
    /// Gateways read applications from the directory at this URL (the console's
    /// `<public URL>/keygate/directory` as Envoy reaches it) instead of the live filter config;
    /// needs `generate`'s `directory:` support (the application directory change).
    #[arg(long)]
    pub directory_url: Option<String>,
    /// Session lifetime in minutes.
    #[arg(long, default_value_t = 480)]
    pub session_minutes: i64,
    /// Accept plain http key managers on non-loopback hosts.
    #[arg(long)]
    pub allow_http: bool,
}

fn db_path(db: &Option<PathBuf>, out: &Option<PathBuf>) -> Result<PathBuf, String> {
    match (db, out) {
        (Some(db), _) => Ok(db.clone()),
        (None, Some(out)) => Ok(out.join(DEFAULT_DB)),
        (None, None) => Err("--db or --out is required".into()),
    }
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    let result = match args.action {
        Some(Action::Export(store)) => export(&store),
        Some(Action::Import(import_args)) => import(&import_args),
        None => serve(args.serve),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("keygate console: {message}");
            1
        }
    }
}

fn open(store: &StoreArgs) -> Result<Store, String> {
    let path = db_path(&store.db, &store.out)?;
    if path.to_str().is_some_and(store::postgres::is_url) {
        return Store::open_location(&path).map_err(|err| err.to_string());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
    }
    Store::open(&path).map_err(|err| err.to_string())
}

fn export(args: &StoreArgs) -> Result<(), String> {
    let store = open(args)?;
    let text = store
        .read(store::export)
        .map_err(|err| err.to_string())?
        .to_yaml()?;
    print!("{text}");
    Ok(())
}

/// Imports a declaration: the compiler checks it first (as `generate` would), then the store is
/// replaced in one transaction; with --out, the result is applied there before the commit.
pub fn import_text(
    store: &Store,
    text: &str,
    applier: Option<&Applier>,
    allow_http: bool,
) -> Result<(), String> {
    crate::cli::generate::resolve(text, allow_http)
        .and_then(crate::cli::generate::compile)
        .map_err(|err| format!("refused, nothing imported: {err}"))?;
    let export = Export::from_yaml(text)?;
    store
        .tx(|tx| {
            store::replace_all(tx, &export)?;
            if let Some(applier) = applier {
                applier.apply(tx)?;
            }
            store::audit(tx, "import", "import a keygate.yaml", "applied")
        })
        .map_err(|err| err.to_string())
}

fn import(args: &ImportArgs) -> Result<(), String> {
    let store = open(&args.store)?;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|err| format!("{}: {err}", args.file.display()))?;
    let applier = args.store.out.as_ref().map(|out| Applier {
        out: apply::absolute(out),
        wasm: crate::cli::generate::default_wasm_path(),
        allow_http: args.allow_http,
        directory: None,
    });
    import_text(&store, &text, applier.as_ref(), args.allow_http)?;
    println!("keygate console: imported {}", args.file.display());
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let out = args
        .out
        .clone()
        .ok_or("--out DIR is required (where the gateway's configuration is written)")?;
    std::fs::create_dir_all(&out).map_err(|err| format!("{}: {err}", out.display()))?;
    let well_known = args
        .oidc_well_known_url
        .clone()
        .ok_or("--oidc-well-known-url is required: the key manager people sign in with")?;
    let secret = std::env::var(&args.oidc_client_secret_env).map_err(|_| {
        format!(
            "the environment variable {} (the console's client secret) is not set",
            args.oidc_client_secret_env
        )
    })?;
    let directory_token = match &args.directory_token_env {
        Some(var) => Some(
            std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))?,
        ),
        None => None,
    };
    let store = open(&StoreArgs {
        db: args.db.clone(),
        out: Some(out.clone()),
    })?;
    let applier = Applier {
        out: apply::absolute(&out),
        wasm: apply::absolute(
            &args
                .wasm
                .clone()
                .unwrap_or_else(crate::cli::generate::default_wasm_path),
        ),
        allow_http: args.allow_http,
        directory: args
            .directory_url
            .as_ref()
            .map(|url| apply::DirectorySource {
                url: url.clone(),
                token_env: args.directory_token_env.clone(),
            }),
    };
    // A new store gets the gateway from the flags; then the current state is applied once.
    store
        .tx(|tx| {
            if store::gateway(tx)?.is_none() {
                store::set_gateway(
                    tx,
                    &model::Gateway {
                        environment: args.environment.clone(),
                        listen: args.gateway_listen.clone(),
                        admin: args.gateway_admin.clone(),
                    },
                )?;
            }
            applier.apply(tx).map(|_| ())
        })
        .map_err(|err| format!("the stored configuration cannot be applied: {err}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| format!("runtime: {err}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
        let addr: SocketAddr = listener
            .local_addr()
            .map_err(|err| format!("listener: {err}"))?;
        let public_url = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let auth = Auth::new(OidcSettings {
            well_known_url: well_known,
            client_id: args.oidc_client_id.clone(),
            client_secret: secret,
            public_url: public_url.clone(),
            admin_group: args.admin_group.clone(),
            groups_claim: args.groups_claim.clone(),
            api_audiences: args.api_audiences.clone(),
            allow_http: args.allow_http,
        });
        let web = Arc::new(Web {
            console: Console {
                store,
                applier,
                auth,
                secure_cookies: public_url.starts_with("https://"),
                directory_token,
                session_ttl_seconds: args.session_minutes.saturating_mul(60),
            },
            templates: web::templates()?,
            flash: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let app = axum::Router::new().fallback(handle).with_state(web);
        println!("CONSOLE READY {public_url}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|err| format!("server: {err}"))
    })
}

/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

async fn handle(
    axum::extract::State(web): axum::extract::State<Arc<Web>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain(413, "request body too large");
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_string(), value.to_string());
        }
    }
    let req = http::Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: http::parse_urlencoded(parts.uri.query().unwrap_or_default()),
        headers,
        body: bytes.to_vec(),
    };
    match tokio::task::spawn_blocking(move || web.handle(&req)).await {
        Ok(response) => convert(response),
        Err(_) => plain(500, "handler failed"),
    }
}

fn plain(status: u16, text: &str) -> axum::response::Response {
    convert(http::Response::text(status, text.to_string()))
}

fn convert(response: http::Response) -> axum::response::Response {
    let mut builder = axum::response::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(axum::body::Body::from(response.body))
        .unwrap_or_default()
}

/// The default store path of an output directory.
pub fn default_db(out: &Path) -> PathBuf {
    out.join(DEFAULT_DB)
}
