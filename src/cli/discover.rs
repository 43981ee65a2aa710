//! `keygate discover URL`: fetch an OIDC discovery document, apply the rules of `oidc.rs`, and print
//! the key-manager entry for `keygate.yaml` (YAML, so it pastes under `key_managers:`).

use std::fmt;

use serde::Serialize;

use crate::cli::declaration::presets::Preset;
use crate::cli::discovery::http::{self, HttpGetError};
use crate::cli::discovery::oidc::{self, CheckedDiscovery, DiscoveryDocument, DiscoveryError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The well-known URL: `<issuer>/.well-known/openid-configuration`.
    pub url: String,
    /// Accept plain http for non-loopback hosts (loopback is always accepted).
    #[arg(long)]
    pub allow_http: bool,
}

/// Why a key manager could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// The network or the body (exit 2).
    Fetch(HttpGetError),
    /// A rule refused the URL or the document (exit 1).
    Refused(DiscoveryError),
}

impl ResolveError {
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::Fetch(err) => err.code(),
            ResolveError::Refused(err) => err.code(),
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Fetch(err) => err.fmt(f),
            ResolveError::Refused(err) => err.fmt(f),
        }
    }
}

/// Checks the URL, fetches the document and checks it.
pub fn resolve(well_known_url: &str, allow_http: bool) -> Result<CheckedDiscovery, ResolveError> {
    oidc::check_well_known_url(well_known_url, allow_http).map_err(ResolveError::Refused)?;
    let document: DiscoveryDocument =
        http::get_json(well_known_url).map_err(ResolveError::Fetch)?;
    oidc::check_document(well_known_url, document, allow_http).map_err(ResolveError::Refused)
}

/// RFC 8414 fallback: a checked document without `introspection_endpoint` gets the one of the
/// issuer's authorization server metadata, when that metadata names the same issuer. A metadata
/// document that cannot be fetched, names another issuer or has no endpoint changes nothing.
pub fn with_metadata_introspection(
    mut checked: CheckedDiscovery,
    allow_http: bool,
) -> CheckedDiscovery {
    if checked.document.introspection_endpoint.is_some() {
        return checked;
    }
    let Some(url) = oidc::metadata_url(&checked.issuer) else {
        return checked;
    };
    if oidc::parse_endpoint("issuer", &url, allow_http).is_err() {
        return checked;
    }
    if let Ok(metadata) = http::get_json::<DiscoveryDocument>(&url) {
        checked.document.introspection_endpoint =
            oidc::metadata_introspection(&checked.issuer, &metadata, allow_http);
    }
    checked
}

/// The entry printed by `discover`: the declaration's key-manager fields.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    name: String,
    well_known_url: &'a str,
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenants: Option<Vec<String>>,
    discovery: &'a DiscoveryDocument,
}

/// Renders the key-manager entry (a one-item YAML list) with the notes as comments.
pub fn render_entry(
    well_known_url: &str,
    checked: &CheckedDiscovery,
) -> Result<String, serde_saphyr::SerializeError> {
    let preset = Preset::suggest(
        &checked.issuer,
        &checked.document.jwks_uri.clone().unwrap_or_default(),
    );
    let templated = checked.notes.contains(&oidc::IssuerNote::TenantTemplate);
    let entry = Entry {
        name: suggest_name(preset, checked),
        well_known_url,
        provider: preset.name(),
        // An empty allow-list makes the operator decide which tenants to trust.
        tenants: templated.then(Vec::new),
        discovery: &checked.document,
    };
    let body = serde_saphyr::to_string(&[entry])?;
    let mut out = format!("# suggested preset: {}\n", preset.name());
    for note in &checked.notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    out.push_str(
        "# keep `discovery:` to pin this document, or delete it to fetch at generate time\n",
    );
    out.push_str(&audience_warning(&suggest_name(preset, checked)));
    if let Some(endpoint) = &checked.document.introspection_endpoint {
        out.push_str(&format!(
            "# introspection_endpoint: {endpoint}\n# opaque (non-JWT) tokens can be checked there: add \
             `introspection: {{client_id: <gateway client id>, client_secret_env: <VARIABLE>}}` and \
             set VARIABLE in Envoy's environment\n"
        ));
    }
    out.push_str(&body);
    Ok(out)
}

/// Without `audiences`, a token the key manager minted for any other resource server is accepted.
pub fn audience_warning(key_manager: &str) -> String {
    format!(
        "# warning: key manager {key_manager}: add `audiences: [<this API's identifier>]`; without \
         it a token minted for any other resource server of this key manager is accepted\n"
    )
}

fn suggest_name(preset: Preset, checked: &CheckedDiscovery) -> String {
    if preset != Preset::Generic {
        return preset.name().to_string();
    }
    checked
        .jwks_uri
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    let checked = match resolve(&args.url, args.allow_http) {
        Ok(checked) => checked,
        Err(ResolveError::Refused(err)) => {
            eprintln!(
                "keygate: discovery document refused ({}): {err}",
                err.code()
            );
            return 1;
        }
        Err(ResolveError::Fetch(err)) => {
            eprintln!("keygate: {err}");
            return 2;
        }
    };
    // A server may name its introspection endpoint in RFC 8414 metadata only.
    let checked = with_metadata_introspection(checked, args.allow_http);
    match render_entry(&args.url, &checked) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(err) => {
            eprintln!("keygate: cannot render the entry: {err}");
            2
        }
    }
}
