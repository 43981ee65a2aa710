//! `keygate explain`: "why is this request refused?" answered offline with the filter's own
//! decision ([`crate::decision::decide`]) and its own reply mapping ([`crate::decision::reply`]).
//!
//! Input: the declaration (`--input`, compiled as `generate` compiles it) or a plugin config
//! (`--plugin-config`), one JWKS file per key manager the token may need (`--jwks NAME=FILE`, or
//! `--jwks FILE` when there is one key manager), the clock (`--at`), the request line (`--method`,
//! `--path`) and the token (argument, `-` for stdin, or none for a request without
//! `Authorization`), and the TLS client certificate (`--client-cert`, `--client-cert-sha256`) a
//! certificate-bound token must match. The policy's own settings apply (leeway, realm, `unknown_api`).
//!
//! Output: one JSON object on stdout, `{"decision", "status", "code", ...}`: for a forwarded
//! request (`allowed`, `public`, `pass`) the status is 200 and `allowed` adds the `identity` and the
//! identity `headers` sent upstream; for a refused one the status, `headers`, `error` and
//! `error_description` are the filter's reply. `route` names the API and resource matched, when
//! one was. Exit status: 0 forwarded, 1 refused, 2 usage, I/O or configuration error.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::cli::check_token::{parse_unix_seconds, read_token};
use crate::cli::generate::{self, GenerateError};
use crate::decision::reply;
use crate::decision::{decide_with_cert, CertDigest, DpopRequest, Outcome, Request};
use crate::jose::b64;
use crate::jose::KeySet;
use crate::policy::{Policy, Route, RouteMatch};

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("configuration")
        .required(true)
        .args(["input", "plugin_config"])
))]
pub struct Args {
    /// The declaration (YAML or JSON), read and compiled as `generate` does.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// A plugin config (the JSON `generate` writes), instead of a declaration.
    #[arg(long, value_name = "FILE")]
    pub plugin_config: Option<PathBuf>,
    /// A key manager's JWKS: NAME=FILE, or FILE alone when there is one key manager; repeatable.
    #[arg(long = "jwks", value_name = "[NAME=]FILE")]
    pub jwks: Vec<String>,
    /// The clock, seconds since the epoch (integer or decimal) or `now`; the policy's leeway
    /// applies.
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = parse_unix_seconds)]
    pub at: f64,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request path (`:path`, with any query string), as Envoy hands it to the filter.
    #[arg(long)]
    pub path: String,
    /// With --input: accept plain http discovery/JWKS URLs on non-loopback hosts.
    #[arg(long)]
    pub allow_http: bool,
    /// An API key, sent in the API's key header (`apis[].api_key.header`, default `apikey`).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// The client certificate of the TLS connection (PEM, the first certificate in the file, or
    /// DER): a certificate-bound token (`cnf.x5t#S256`, RFC 8705) must match it.
    #[arg(long, value_name = "PEM_FILE", conflicts_with = "client_cert_sha256")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate as Envoy gives it, the hex SHA-256 of its DER
    /// (`connection.sha256_peer_certificate_digest`, an XFCC `Hash=`).
    #[arg(long, value_name = "HEX")]
    pub client_cert_sha256: Option<String>,
    /// The access token (sent as `Authorization: Bearer TOKEN`), `-` to read it from stdin (one
    /// trailing newline removed); omitted: a request without `Authorization`.
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
}

/// A problem with the inputs (exit 2), as a message for stderr.
#[derive(Debug)]
struct Usage(String);

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    match explain(&args) {
        Ok((verdict, forwarded)) => {
            let summary = match (verdict.get("code"), verdict.get("error_description")) {
                (Some(Value::String(code)), Some(Value::String(description))) => {
                    format!("refused ({code}): {description}")
                }
                (Some(Value::String(code)), _) => format!("forwarded ({code})"),
                _ => String::new(),
            };
            eprintln!("keygate: {summary}");
            println!("{verdict}");
            if forwarded {
                0
            } else {
                1
            }
        }
        Err(Usage(message)) => {
            eprintln!("keygate: {message}");
            2
        }
    }
}

/// The verdict object and whether the filter forwards the request.
fn explain(args: &Args) -> Result<(Value, bool), Usage> {
    let policy = policy(args)?;
    let keys = key_sets(&policy, &args.jwks)?;
    let token = match &args.token {
        Some(arg) => Some(read_token(arg).map_err(Usage)?),
        None => None,
    };
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers = api_key_header(&policy, args);
    let cert = client_cert(args)?;
    let request = Request {
        method: &args.method,
        path: &args.path,
        authorization: authorization.as_deref(),
        // No DPoP proof offline: a DPoP-bound token is explained as presented with Bearer.
        dpop: DpopRequest::default(),
        headers: &headers,
    };
    let outcome = decide_with_cert(
        &policy,
        &request,
        cert,
        |km| keys.get(km.index()).and_then(Option::as_ref),
        args.at,
    );
    let (mut verdict, forwarded) = verdict(&policy, &request, outcome)?;
    if let (Some(digest), Some(object)) = (cert, verdict.as_object_mut()) {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        object.insert(
            "client_certificate".into(),
            json!({"sha256": hex, "x5t#S256": b64::encode(&digest)}),
        );
    }
    Ok((verdict, forwarded))
}

/// `--client-cert` (PEM or DER) or `--client-cert-sha256` as the digest Envoy would give.
fn client_cert(args: &Args) -> Result<Option<CertDigest>, Usage> {
    if let Some(hex) = &args.client_cert_sha256 {
        return crate::decision::client_cert(Some(hex.trim()), None, false)
            .map(Some)
            .ok_or_else(|| {
                Usage("--client-cert-sha256: expected 64 hex digits (a SHA-256)".to_string())
            });
    }
    let Some(path) = &args.client_cert else {
        return Ok(None);
    };
    let bytes =
        std::fs::read(path).map_err(|e| Usage(format!("--client-cert {}: {e}", path.display())))?;
    let der = certificate_der(&bytes).ok_or_else(|| {
        Usage(format!(
            "--client-cert {}: no certificate in it (PEM \
            -----BEGIN CERTIFICATE----- or DER expected)",
            path.display()
        ))
    })?;
    Ok(Some(Sha256::digest(der.as_slice()).into()))
}

/// The DER of the first `CERTIFICATE` block of a PEM file, or the file itself when it is DER
/// (an ASN.1 SEQUENCE).
fn certificate_der(bytes: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (bytes.first() == Some(&0x30)).then(|| bytes.to_vec());
    };
    let Some(start) = text.find(BEGIN) else {
        return (bytes.first() == Some(&0x30)).then(|| bytes.to_vec());
    };
    let body = text.get(start + BEGIN.len()..)?;
    let body = body.get(..body.find(END)?)?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|der| !der.is_empty())
}

/// `--api-key` as the request header of the API the path routes to (`apikey` when none).
fn api_key_header(policy: &Policy, args: &Args) -> Vec<(String, String)> {
    let Some(key) = &args.api_key else {
        return Vec::new();
    };
    let header = policy
        .route(&args.method, &args.path)
        .api()
        .and_then(|api| policy.api(api))
        .and_then(|api| api.credentials.api_key.as_ref())
        .map_or(crate::config::DEFAULT_API_KEY_HEADER.to_string(), |s| {
            s.header.clone()
        });
    vec![(header, key.clone())]
}

fn policy(args: &Args) -> Result<Policy, Usage> {
    match (&args.input, &args.plugin_config) {
        (Some(input), _) => generate::load(input, args.allow_http)
            .map(|loaded| {
                // With a directory the declaration's applications are what the source serves:
                // explain with them, as the gateway would once it loaded them.
                if loaded.plugin.directory.is_none() {
                    return loaded.policy;
                }
                let inline = crate::config::PluginConfig {
                    applications: crate::cli::render::plugin::applications(&loaded.declaration),
                    directory: None,
                    ..loaded.plugin.clone()
                };
                Policy::compile(inline).unwrap_or(loaded.policy)
            })
            .map_err(|err| match err {
                GenerateError::Declaration { .. } => Usage(format!(
                    "{}: configuration refused:\n{err}",
                    input.display()
                )),
                other => Usage(other.about(input)),
            }),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|err| Usage(format!("cannot read {}: {err}", path.display())))?;
            Policy::from_json(&bytes).map_err(|errors| {
                let lines: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
                Usage(format!(
                    "{}: configuration refused:\n{}",
                    path.display(),
                    lines.join("\n")
                ))
            })
        }
        (None, None) => Err(Usage("--input or --plugin-config is required".into())),
    }
}

/// One key set per key manager (by index), from the `--jwks` arguments.
fn key_sets(policy: &Policy, specs: &[String]) -> Result<Vec<Option<KeySet>>, Usage> {
    let names: Vec<&str> = policy
        .key_managers()
        .iter()
        .map(|km| km.name.as_str())
        .collect();
    let mut sets: Vec<Option<KeySet>> = names.iter().map(|_| None).collect();
    for spec in specs {
        let named = spec
            .split_once('=')
            .and_then(|(name, file)| Some((names.iter().position(|n| *n == name)?, file)));
        let (index, file) = match (named, names.as_slice()) {
            (Some(found), _) => found,
            (None, [_]) => (0, spec.as_str()),
            (None, []) => return Err(Usage("--jwks: the policy has no key manager".into())),
            (None, _) => {
                return Err(Usage(format!(
                    "--jwks {spec}: name the key manager as NAME=FILE (one of: {})",
                    names.join(", ")
                )))
            }
        };
        let name = names.get(index).copied().unwrap_or_default();
        let bytes = std::fs::read(file)
            .map_err(|err| Usage(format!("cannot read the JWKS of {name} ({file}): {err}")))?;
        let set = KeySet::from_json(&bytes)
            .map_err(|err| Usage(format!("the JWKS of {name} ({file}) is unusable: {err}")))?;
        match sets.get_mut(index) {
            Some(slot @ None) => *slot = Some(set),
            _ => return Err(Usage(format!("--jwks: {name} is given twice"))),
        }
    }
    Ok(sets)
}

/// The API and resource a request matched, as the filter's router found them.
fn route(policy: &Policy, request: &Request<'_>) -> Value {
    let found: Option<RouteMatch> = match policy.route(request.method, request.path) {
        Route::Public(found) | Route::Protected(found) => Some(found),
        Route::PassThrough | Route::Denied(_) => None,
    };
    match found.and_then(|found| policy.resource(&found)) {
        Some((api, resource)) => json!({
            "api": api.name,
            "version": api.version,
            "base_path": api.base_path,
            "resource": format!("{} {}", resource.method, resource.path),
            "public": resource.public,
        }),
        None => Value::Null,
    }
}

fn verdict(
    policy: &Policy,
    request: &Request<'_>,
    outcome: Outcome,
) -> Result<(Value, bool), Usage> {
    let settings = policy.settings();
    let forwarded = |code: &str| {
        json!({
            "decision": code,
            "status": 200,
            "code": code,
            "route": route(policy, request),
        })
    };
    Ok(match outcome {
        Outcome::Pass => (forwarded("pass"), true),
        Outcome::Public => (forwarded("public"), true),
        Outcome::Allow { allowed, .. } => {
            let mut verdict = forwarded("allowed");
            let headers: Map<String, Value> = allowed
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            if let Some(object) = verdict.as_object_mut() {
                object.insert("identity".into(), allowed.identity.metadata());
                object.insert("headers".into(), Value::Object(headers));
            }
            (verdict, true)
        }
        Outcome::Deny(denial) => {
            let answer = reply(&denial, &settings.realm);
            let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            let headers: Map<String, Value> = answer
                .headers
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect();
            (
                json!({
                    "decision": "refused",
                    "status": answer.status,
                    "code": denial.code(),
                    "error": body.get("error"),
                    "error_description": body.get("error_description"),
                    "headers": headers,
                    "route": route(policy, request),
                }),
                false,
            )
        }
        Outcome::NeedKeys { pending, .. } => {
            let name = policy
                .key_managers()
                .get(pending.key_manager().index())
                .map(|km| km.name.as_str())
                .unwrap_or_default();
            return Err(Usage(format!(
                "the token is from key manager {name}: give its keys with --jwks {name}=FILE"
            )));
        }
        Outcome::NeedIntrospection(_) => {
            return Err(Usage(
                "the token is opaque (not a JWT): only the key manager's introspection endpoint \
                 can judge it, which explain does not call"
                    .to_string(),
            ));
        }
    })
}
