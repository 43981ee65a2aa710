//! Reading a declaration and the checks only the CLI can make. Every error names the field (as a
//! path such as `applications[1].client_ids[0].client_id`) and the line, so the operator can jump
//! to it.
//!
//! The rules about what the filter accepts are not here: `generate` builds the plugin config and
//! runs the filter's own compiler on it ([`crate::policy::Policy::from_json`]); [`refused`] maps
//! each of its field paths back to the declaration's line. What stays here is what the plugin
//! config does not carry: listener and admin addresses, well-known and upstream URLs, the
//! claim-mapping preset's name.

use std::fmt;
use std::net::SocketAddr;

use crate::cli::declaration::istio::{self, Attach, KubeProblem};
use crate::cli::declaration::model::{line_of, Declaration, IstioDecl, Located};
use crate::cli::declaration::presets::Preset;
use crate::cli::discovery::oidc::{self, DiscoveryError};
use crate::cli::discovery::url::{HttpUrl, UrlProblem};
use crate::config::{ConfigError, ConfigErrors, ConfigProblem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclarationError {
    /// Not YAML/JSON, a wrong type, a missing or unknown field (as the parser reports it).
    Syntax {
        line: u64,
        column: u64,
        detail: String,
    },
    /// A value the plugin config does not carry, refused by the CLI.
    InvalidValue {
        field: String,
        line: u64,
        value: String,
        problem: ValueProblem,
    },
    /// The filter's compiler refused the plugin config built from the declaration: `error` is its
    /// verdict (field path of the plugin config, which mirrors the declaration's), `line` where
    /// that field is declared (0 when it has no line, e.g. `settings`), `other_line` the line of
    /// the earlier declaration a duplicate collides with.
    Refused {
        line: u64,
        other_line: Option<u64>,
        error: ConfigError,
    },
    /// A field that must be set, or two that exclude each other (`line` of the block or field).
    Istio {
        field: String,
        line: u64,
        problem: IstioProblem,
    },
}

/// What is missing or contradictory in the `istio` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioProblem {
    /// A sidecar WasmPlugin without a selector and without `mesh_wide: true`.
    SelectorRequired,
    /// `selector` with `attach: gateway|waypoint` (Istio takes one of selector and targetRefs).
    SelectorWithTarget,
    /// `mesh_wide: true` with a selector or a gateway/waypoint: it would not be mesh-wide.
    MeshWideNotWide,
    /// Both `image` and `wasm_url`.
    TwoSources,
    /// Neither `image` nor `wasm_url` (nor `--wasm-url`).
    SourceRequired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueProblem {
    NotSocketAddress,
    NotHostPort,
    BadUrl { problem: UrlProblem },
    UpstreamPath,
    UnknownProvider,
    Discovery { error: DiscoveryError },
    Kubernetes { problem: KubeProblem },
    NotSha256,
}

impl DeclarationError {
    pub fn code(&self) -> &'static str {
        match self {
            DeclarationError::Syntax { .. } => "syntax",
            DeclarationError::InvalidValue { .. } => "invalid_value",
            DeclarationError::Refused { error, .. } => error.code(),
            DeclarationError::Istio { .. } => "istio",
        }
    }

    pub fn line(&self) -> u64 {
        match self {
            DeclarationError::Syntax { line, .. }
            | DeclarationError::InvalidValue { line, .. }
            | DeclarationError::Refused { line, .. }
            | DeclarationError::Istio { line, .. } => *line,
        }
    }

    /// The field path (empty for a syntax error, which has only a position).
    pub fn field(&self) -> &str {
        match self {
            DeclarationError::Syntax { .. } => "",
            DeclarationError::InvalidValue { field, .. }
            | DeclarationError::Istio { field, .. } => field,
            DeclarationError::Refused { error, .. } => &error.path,
        }
    }
}

impl fmt::Display for DeclarationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclarationError::Syntax {
                line,
                column,
                detail,
            } => write!(f, "line {line}, column {column}: {detail}"),
            DeclarationError::InvalidValue {
                field,
                line,
                value,
                problem,
            } => write!(f, "line {line}: {field}: `{value}` {problem}"),
            DeclarationError::Refused {
                line,
                other_line,
                error,
            } => {
                if *line > 0 {
                    write!(f, "line {line}: ")?;
                }
                write!(f, "{error}")?;
                match other_line {
                    Some(other) if *other > 0 => write!(f, " (line {other})"),
                    _ => Ok(()),
                }
            }
            DeclarationError::Istio {
                field,
                line,
                problem,
            } => write!(f, "line {line}: {field}: {problem}"),
        }
    }
}

impl fmt::Display for IstioProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IstioProblem::SelectorRequired => {
                "is required: a WasmPlugin without a selector runs in every workload of its \
                 namespace (in Istio's root namespace: the whole mesh); set istio.selector, or \
                 attach to a gateway or waypoint (istio.attach), or say istio.mesh_wide: true"
            }
            IstioProblem::SelectorWithTarget => {
                "cannot be combined with attach gateway/waypoint (Istio takes either a selector \
                 or targetRefs); the Gateway's name selects its proxies"
            }
            IstioProblem::MeshWideNotWide => {
                "is true but a selector or a gateway/waypoint limits the WasmPlugin; drop one"
            }
            IstioProblem::TwoSources => {
                "and istio.image both say where the module comes from; keep one"
            }
            IstioProblem::SourceRequired => {
                "is required: the image `make oci` builds, as pushed to a registry the cluster \
                 pulls from (e.g. registry.example/keygate:0.1.0); or set istio.wasm_url \
                 (file://, https://) or --wasm-url"
            }
        })
    }
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::NotSocketAddress => {
                f.write_str("is not an IP:port address (e.g. 127.0.0.1:8080)")
            }
            ValueProblem::NotHostPort => {
                f.write_str("is not HOST:PORT (e.g. ratelimit.internal:8081)")
            }
            ValueProblem::BadUrl { problem } => write!(f, "is not a valid URL: it {problem}"),
            ValueProblem::UpstreamPath => f.write_str(
                "must be scheme://host[:port][/path]: a path of letters, digits and -._~!$&'()*+,;=:@ \
                 without empty or dot segments, and no query",
            ),
            ValueProblem::UnknownProvider => {
                let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
                write!(f, "is not a known provider (one of: {})", names.join(", "))
            }
            ValueProblem::Discovery { error } => write!(f, "is refused: {error}"),
            ValueProblem::Kubernetes { problem } => write!(f, "{problem}"),
            ValueProblem::NotSha256 => {
                f.write_str("is not a SHA-256 (64 hex digits, optionally after \"sha256:\")")
            }
        }
    }
}

/// Parses a declaration and runs the CLI's own checks ([`check`]); all problems found are returned,
/// in source order. The filter's rules run later, on the plugin config (`generate::load`).
pub fn parse(text: &str) -> Result<Declaration, Vec<DeclarationError>> {
    parse_with(text, false)
}

/// The YAML parser's budget: far above serde-saphyr's defaults (250,000 nodes, 1,000,000 events),
/// which a declaration of about 9,000 applications exceeds. An application with three client ids
/// and three subscriptions is about 50 nodes: these fit 400,000 of them (a directory source
/// serves that many; `make bench-scale` parses 100,000 in a few seconds).
pub const MAX_YAML_NODES: usize = 20_000_000;
pub const MAX_YAML_EVENTS: usize = 40_000_000;

/// `parse`, with `--allow-http` applied to every key manager's URLs.
pub fn parse_with(text: &str, allow_http: bool) -> Result<Declaration, Vec<DeclarationError>> {
    parse_limited(text, allow_http, (MAX_YAML_NODES, MAX_YAML_EVENTS))
}

/// [`parse_with`] under another parser budget (nodes, events): what a breach says, checked
/// without building a declaration of twenty million nodes.
pub fn parse_limited(
    text: &str,
    allow_http: bool,
    (max_nodes, max_events): (usize, usize),
) -> Result<Declaration, Vec<DeclarationError>> {
    if text.trim().is_empty()
        || text.lines().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || line == "---"
        })
    {
        return Err(vec![DeclarationError::Syntax {
            line: 1,
            column: 1,
            detail: "the declaration is empty: it needs at least `gateway: {environment: NAME}`"
                .to_string(),
        }]);
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = max_nodes;
    budget.max_events = max_events;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Declaration>(de).map_err(|err| {
            path = Some(err.path().to_string());
            err.into_inner()
        })
    });
    let declaration = parsed.map_err(|err| vec![syntax(&err, path, (max_nodes, max_events))])?;
    let mut errors = check(&declaration, allow_http);
    if errors.is_empty() {
        Ok(declaration)
    } else {
        sort_by_line(&mut errors);
        Err(errors)
    }
}

/// A parser error as the operator reads it: where, which field (`path`, when known), and what was
/// expected in words of the declaration rather than the parser's.
fn syntax(
    err: &serde_saphyr::Error,
    path: Option<String>,
    limits: (usize, usize),
) -> DeclarationError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = first_line(&err.to_string());
    let detail = plain_words(&message, limits);
    // A key the parser refused before naming it is `?` in the path: the duplicate's own name.
    let path = path.map(|p| {
        let parent = p.strip_suffix('?').unwrap_or(&p).trim_end_matches('.');
        match message.strip_prefix("duplicate mapping key: ") {
            Some(rest) if p.ends_with('?') => {
                let key = rest.split(", ").next().unwrap_or(rest);
                if parent.is_empty() {
                    key.to_string()
                } else {
                    format!("{parent}.{key}")
                }
            }
            _ if p.ends_with('?') => parent.to_string(),
            // A located value (`Spanned`) reads its text as an inner `value`.
            _ => p.strip_suffix(".value").unwrap_or(&p).to_string(),
        }
    });
    let detail = match path.filter(|p| !p.is_empty() && p != ".") {
        Some(path) if !detail.contains(&path) => format!("{path}: {detail}"),
        _ => detail,
    };
    DeclarationError::Syntax {
        line,
        column,
        detail,
    }
}

/// The parser's wording turned into the declaration's: YAML sequences and mappings are lists and
/// maps, a duplicate key is just that, a breached budget names its limit.
fn plain_words(detail: &str, (max_nodes, max_events): (usize, usize)) -> String {
    if let Some(breach) = detail.strip_prefix("budget breached: ") {
        let kind = breach.split([' ', '{']).next().unwrap_or(breach);
        let limit = match kind {
            "Nodes" => format!("{max_nodes} YAML nodes (every key, value, list and map)"),
            "Events" => format!("{max_events} YAML parser events"),
            _ => format!("the parser's {kind} limit"),
        };
        return format!(
            "the declaration is too large to read: it exceeds {limit}; about 50 nodes make an \
             application with three client ids and three subscriptions"
        );
    }
    if let Some(rest) = detail.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", ").next().unwrap_or(rest);
        return format!("`{key}` is given twice");
    }
    let words = [
        ("expected sequence start", "expected a list"),
        ("expected mapping start", "expected a map"),
        ("expected string scalar", "expected a string"),
        ("invalid u64", "expected a whole number (0 or more)"),
        ("invalid u32", "expected a whole number (0 or more)"),
        ("invalid u16", "expected a whole number (0 or more)"),
        ("invalid i64", "expected a whole number"),
        ("invalid i32", "expected a whole number"),
        ("invalid f64", "expected a number"),
        ("invalid boolean", "expected true or false"),
    ];
    for (library, plain) in words {
        if detail == library {
            return plain.to_string();
        }
    }
    let detail = detail
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(detail);
    detail.to_string()
}

/// The parser's message without the source snippet it may append and without its own
/// `error: line L column C:` prefix (the location is reported separately).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((location, detail)) if location.contains("column") => detail.to_string(),
        _ => line.to_string(),
    }
}

/// The checks on what the plugin config does not carry (addresses, URLs, preset names). Everything
/// else is judged by the filter's compiler on the generated plugin config, see [`refused`].
pub fn check(decl: &Declaration, allow_http: bool) -> Vec<DeclarationError> {
    let mut errors = Vec::new();
    let gateway = &decl.gateway;
    for (field, value) in [
        ("gateway.listen", &gateway.listen),
        ("gateway.admin", &gateway.admin),
    ] {
        if let Some(value) = value {
            if value.value.parse::<SocketAddr>().is_err() {
                errors.push(invalid(field, value, ValueProblem::NotSocketAddress));
            }
        }
    }
    if let Some(service) = &gateway.rate_limit_service {
        if !is_host_port(&service.value) {
            errors.push(invalid(
                "gateway.rate_limit_service",
                service,
                ValueProblem::NotHostPort,
            ));
        }
    }
    if let Some(directory) = &decl.directory {
        if let Err(problem) = HttpUrl::parse(&directory.url.value) {
            errors.push(invalid(
                "directory.url",
                &directory.url,
                ValueProblem::BadUrl { problem },
            ));
        }
    }
    for (i, km) in decl.key_managers.iter().enumerate() {
        let at = format!("key_managers[{i}]");
        if km.discovery.is_none() {
            if let Err(error) =
                oidc::check_well_known_url(&km.well_known_url.value, allow_http || km.allow_http)
            {
                errors.push(invalid(
                    &format!("{at}.well_known_url"),
                    &km.well_known_url,
                    ValueProblem::Discovery { error },
                ));
            }
        }
        if let Some(endpoint) = km.introspection.as_ref().and_then(|i| i.endpoint.as_ref()) {
            let allow = allow_http || km.allow_http;
            if let Err(error) =
                oidc::parse_endpoint("introspection.endpoint", &endpoint.value, allow)
            {
                errors.push(invalid(
                    &format!("{at}.introspection.endpoint"),
                    endpoint,
                    ValueProblem::Discovery { error },
                ));
            }
        }
        if let Some(provider) = &km.provider {
            if Preset::from_name(&provider.value).is_none() {
                errors.push(invalid(
                    &format!("{at}.provider"),
                    provider,
                    ValueProblem::UnknownProvider,
                ));
            }
        }
    }
    for (i, api) in decl.apis.iter().enumerate() {
        if let Some(upstream) = &api.upstream {
            let field = format!("apis[{i}].upstream");
            match HttpUrl::parse(&upstream.value) {
                Err(problem) => {
                    errors.push(invalid(&field, upstream, ValueProblem::BadUrl { problem }))
                }
                Ok(url)
                    if url.path_and_query.contains('?')
                        || !api.upstream_path().is_none_or(is_plain_path) =>
                {
                    errors.push(invalid(&field, upstream, ValueProblem::UpstreamPath))
                }
                Ok(_) => {}
            }
        }
    }
    if let Some(block) = &decl.istio {
        check_istio(&block.value, line_of(block), &mut errors);
    }
    errors
}

/// An upstream path Envoy can put in place of the base path as written: `/` alone, or segments
/// of RFC 3986 `pchar`s except `%`, none empty or a dot segment (`/v2`, `/api/v2/`).
fn is_plain_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c))
    })
}

/// The `istio` block: names and labels as the API server accepts them, where the WasmPlugin
/// attaches (never silently to a whole namespace), where the module comes from.
fn check_istio(istio: &IstioDecl, block_line: u64, errors: &mut Vec<DeclarationError>) {
    let kube = |problem| ValueProblem::Kubernetes { problem };
    let block = |field: &str, problem| DeclarationError::Istio {
        field: field.to_string(),
        line: block_line,
        problem,
    };
    if let Some(namespace) = &istio.namespace {
        if !istio::is_dns_label(&namespace.value) {
            errors.push(invalid(
                "istio.namespace",
                namespace,
                kube(KubeProblem::NotDnsLabel),
            ));
        }
    }
    let attach = match &istio.attach {
        None => Some(Attach::Sidecar),
        Some(text) => match Attach::parse(&text.value) {
            Ok(attach) => Some(attach),
            Err(problem) => {
                errors.push(invalid("istio.attach", text, kube(problem)));
                None
            }
        },
    };
    for (key, value) in &istio.selector {
        if !istio::is_label_key(key) {
            let key = Located::new(key.clone(), value.referenced, value.defined);
            errors.push(invalid(
                "istio.selector",
                &key,
                kube(KubeProblem::NotLabelKey),
            ));
        } else if !istio::is_label_value(&value.value) {
            errors.push(invalid(
                &format!("istio.selector.{key}"),
                value,
                kube(KubeProblem::NotLabelValue),
            ));
        }
    }
    let first_selector_line = istio.selector.values().map(line_of).min();
    match (&attach, istio.selector.is_empty(), istio.mesh_wide) {
        (Some(Attach::Sidecar), true, false) => {
            errors.push(block("istio.selector", IstioProblem::SelectorRequired))
        }
        (Some(Attach::Gateway(_) | Attach::Waypoint(_)), false, _) => {
            errors.push(DeclarationError::Istio {
                field: "istio.selector".into(),
                line: first_selector_line.unwrap_or(block_line),
                problem: IstioProblem::SelectorWithTarget,
            })
        }
        _ => {}
    }
    if istio.mesh_wide && (!istio.selector.is_empty() || attach != Some(Attach::Sidecar)) {
        errors.push(block("istio.mesh_wide", IstioProblem::MeshWideNotWide));
    }
    if let Some(image) = &istio.image {
        if !istio::is_image(&image.value) {
            errors.push(invalid("istio.image", image, kube(KubeProblem::NotImage)));
        }
    }
    if let Some(url) = &istio.wasm_url {
        if istio.image.is_some() {
            errors.push(DeclarationError::Istio {
                field: "istio.wasm_url".into(),
                line: line_of(url),
                problem: IstioProblem::TwoSources,
            });
        } else if !istio::has_wasm_scheme(&url.value) {
            errors.push(invalid(
                "istio.wasm_url",
                url,
                kube(KubeProblem::NotWasmScheme),
            ));
        }
    }
    if let Some(sha256) = &istio.wasm_sha256 {
        if parse_sha256(&sha256.value).is_none() {
            errors.push(invalid(
                "istio.wasm_sha256",
                sha256,
                ValueProblem::NotSha256,
            ));
        }
    }
    if let Some(path) = &istio.ca_certificates {
        if !path.value.starts_with('/') || path.value.chars().any(char::is_control) {
            errors.push(invalid(
                "istio.ca_certificates",
                path,
                kube(KubeProblem::NotAbsolutePath),
            ));
        }
    }
}

/// A SHA-256 as 64 lower-case hex digits (`sha256:` prefix and upper case accepted).
pub fn parse_sha256(text: &str) -> Option<String> {
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address, and a port other than 0).
fn is_host_port(value: &str) -> bool {
    match HttpUrl::parse(&format!("http://{value}")) {
        Ok(url) => url.path_and_query == "/" && url.explicit_port && url.port != 0,
        Err(_) => false,
    }
}

fn invalid(field: &str, value: &Located, problem: ValueProblem) -> DeclarationError {
    DeclarationError::InvalidValue {
        field: field.to_string(),
        line: line_of(value),
        value: value.value.clone(),
        problem,
    }
}

/// The filter compiler's verdict on the plugin config built from `decl`, each problem placed on
/// the declaration's line; in line order (problems without a line last).
pub fn refused(decl: &Declaration, errors: ConfigErrors) -> Vec<DeclarationError> {
    let mut mapped: Vec<DeclarationError> = errors
        .into_iter()
        .map(|error| DeclarationError::Refused {
            line: line_of_field(decl, &error.path),
            other_line: other_line(decl, &error.problem),
            error,
        })
        .collect();
    sort_by_line(&mut mapped);
    mapped
}

/// Source order, problems without a line (0) after the others; stable otherwise.
fn sort_by_line(errors: &mut [DeclarationError]) {
    errors.sort_by_key(|e| (e.line() == 0, e.line()));
}

/// For a duplicate, the line of the declaration it collides with.
fn other_line(decl: &Declaration, problem: &ConfigProblem) -> Option<u64> {
    match problem {
        ConfigProblem::DuplicateName { first, .. }
        | ConfigProblem::DuplicateResource { first, .. }
        | ConfigProblem::DuplicateApiKey { first } => Some(line_of_field(decl, first)),
        ConfigProblem::DuplicateBasePath { api, .. } => decl
            .apis
            .iter()
            .find(|a| a.name.value == *api)
            .map(|a| line_of(&a.base_path)),
        ConfigProblem::DuplicateIssuer { key_manager, .. } => decl
            .key_managers
            .iter()
            .find(|km| km.name.value == *key_manager)
            .map(|km| line_of(&km.well_known_url)),
        ConfigProblem::DuplicateClientId {
            client_id,
            key_manager,
            application,
        } => decl
            .applications
            .iter()
            .filter(|app| app.name.value == *application)
            .flat_map(|app| &app.client_ids)
            .find(|c| c.client_id.value == *client_id && c.key_manager.value == *key_manager)
            .map(|c| line_of(&c.client_id)),
        _ => None,
    }
}

/// One step of a field path: `apis[0]` is (`apis`, Some(0)), `path` is (`path`, None).
fn steps(path: &str) -> Vec<(&str, Option<usize>)> {
    path.split('.')
        .map(|step| match step.split_once('[') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix(']').and_then(|n| n.parse::<usize>().ok()),
            ),
            None => (step, None),
        })
        .collect()
}

/// The declaration line of a plugin-config field path. The plugin config mirrors the declaration
/// (same lists, same order), so the path leads to the declared item; a field without a line of its
/// own (scopes, algorithms, ...) takes the line of the item it belongs to, a key manager's issuer and
/// JWKS (from discovery) that of its `well_known_url`. 0 when nothing in the declaration has a line
/// (`settings`).
pub fn line_of_field(decl: &Declaration, path: &str) -> u64 {
    let steps = steps(path);
    let mut rest = steps.iter().copied();
    match rest.next() {
        Some(("environment", None)) => line_of(&decl.gateway.environment),
        Some(("public_urls", index)) => {
            let urls = &decl.gateway.public_urls;
            urls.get(index.unwrap_or(0))
                .map_or(line_of(&decl.gateway.environment), line_of)
        }
        Some(("key_managers", Some(i))) => match decl.key_managers.get(i) {
            Some(km) => match rest.next() {
                Some(("issuer" | "jwks" | "tenants", _)) => line_of(&km.well_known_url),
                Some(("introspection", _)) => match (&km.introspection, rest.next()) {
                    (Some(i), Some(("client_secret_env", _))) => line_of(&i.client_secret_env),
                    (Some(i), _) => line_of(&i.client_id),
                    (None, _) => line_of(&km.name),
                },
                Some(("claims", _)) => km.provider.as_ref().map_or(line_of(&km.name), line_of),
                _ => line_of(&km.name),
            },
            None => 0,
        },
        Some(("apis", Some(i))) => match decl.apis.get(i) {
            Some(api) => match rest.next() {
                Some(("base_path", _)) => line_of(&api.base_path),
                Some(("key_managers", k)) => api
                    .key_managers
                    .get(k.unwrap_or(0))
                    .map_or(line_of(&api.name), line_of),
                Some(("public_urls", k)) => api
                    .public_urls
                    .get(k.unwrap_or(0))
                    .map_or(line_of(&api.name), line_of),
                Some(("resources", Some(r))) => match api.resources.get(r) {
                    Some(resource) => match rest.next() {
                        Some(("path", _)) => line_of(&resource.path),
                        _ => line_of(&resource.method),
                    },
                    None => line_of(&api.name),
                },
                _ => line_of(&api.name),
            },
            None => 0,
        },
        Some(("applications", Some(i))) => match decl.applications.get(i) {
            Some(app) => match rest.next() {
                Some(("client_ids", Some(k))) => match app.client_ids.get(k) {
                    Some(client) => match rest.next() {
                        Some(("key_manager", _)) => line_of(&client.key_manager),
                        _ => line_of(&client.client_id),
                    },
                    None => line_of(&app.name),
                },
                Some(("subscriptions", Some(k))) => match app.subscriptions.get(k) {
                    Some(sub) => match (rest.next(), &sub.tier) {
                        (Some(("tier", _)), Some(tier)) => line_of(tier),
                        _ => line_of(&sub.api),
                    },
                    None => line_of(&app.name),
                },
                Some(("api_keys", Some(k))) => match app.api_keys.get(k) {
                    Some(key) => match rest.next() {
                        Some(("name", _)) => line_of(&key.name),
                        _ => line_of(&key.sha256),
                    },
                    None => line_of(&app.name),
                },
                _ => line_of(&app.name),
            },
            None => 0,
        },
        Some(("tiers", Some(i))) => match decl.tiers.get(i) {
            Some(tier) => match rest.next() {
                Some(("per", _)) => line_of(&tier.per),
                _ => line_of(&tier.name),
            },
            None => 0,
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_their_location_prefix() {
        assert_eq!(
            first_line("error: line 3 column 5: unknown field `x`\n  |\n3 | x: 1"),
            "unknown field `x`"
        );
        assert_eq!(first_line("missing field `a`"), "missing field `a`");
    }

    #[test]
    fn field_paths_split_into_steps() {
        assert_eq!(
            steps("apis[2].resources[10].scopes[0]"),
            [
                ("apis", Some(2)),
                ("resources", Some(10)),
                ("scopes", Some(0))
            ]
        );
        assert_eq!(steps("environment"), [("environment", None)]);
        assert_eq!(steps("x[y]"), [("x", None)]);
    }
}
