//! Reading and checking a declaration. Every error names the field (as a path such as
//! `applications[1].client_ids[0].client_id`) and the line, so the operator can jump to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use crate::cli::declaration::{line_of, Declaration, Located};
use crate::cli::oidc::{self, DiscoveryError};
use crate::cli::presets::Preset;
use crate::cli::url::{HttpUrl, UrlProblem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclarationError {
    /// Not YAML/JSON, a wrong type, a missing or unknown field (as the parser reports it).
    Syntax {
        line: u64,
        column: u64,
        detail: String,
    },
    UnknownKeyManager {
        field: String,
        line: u64,
        name: String,
    },
    UnknownApi {
        field: String,
        line: u64,
        name: String,
    },
    DuplicateName {
        field: String,
        line: u64,
        name: String,
        first_line: u64,
    },
    /// A client id belongs to one application per key manager.
    DuplicateClientId {
        field: String,
        line: u64,
        key_manager: String,
        client_id: String,
        application: String,
        other_application: String,
        other_line: u64,
    },
    MalformedPathTemplate {
        field: String,
        line: u64,
        path: String,
        problem: PathProblem,
    },
    InvalidValue {
        field: String,
        line: u64,
        value: String,
        problem: ValueProblem,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    NoLeadingSlash,
    EmptySegment,
    DotSegment,
    IllegalCharacter { character: char },
    BadParameter,
    DuplicateParameter { name: String },
    WildcardNotLast,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueProblem {
    Empty,
    NotSocketAddress,
    BadUrl { problem: UrlProblem },
    UpstreamWithPath,
    UnknownProvider,
    UnknownMethod,
    Discovery { error: DiscoveryError },
}

impl DeclarationError {
    pub fn code(&self) -> &'static str {
        match self {
            DeclarationError::Syntax { .. } => "syntax",
            DeclarationError::UnknownKeyManager { .. } => "unknown_key_manager",
            DeclarationError::UnknownApi { .. } => "unknown_api",
            DeclarationError::DuplicateName { .. } => "duplicate_name",
            DeclarationError::DuplicateClientId { .. } => "duplicate_client_id",
            DeclarationError::MalformedPathTemplate { .. } => "malformed_path_template",
            DeclarationError::InvalidValue { .. } => "invalid_value",
        }
    }

    pub fn line(&self) -> u64 {
        match self {
            DeclarationError::Syntax { line, .. }
            | DeclarationError::UnknownKeyManager { line, .. }
            | DeclarationError::UnknownApi { line, .. }
            | DeclarationError::DuplicateName { line, .. }
            | DeclarationError::DuplicateClientId { line, .. }
            | DeclarationError::MalformedPathTemplate { line, .. }
            | DeclarationError::InvalidValue { line, .. } => *line,
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
            DeclarationError::UnknownKeyManager { field, line, name } => write!(
                f,
                "line {line}: {field}: unknown key manager `{name}` (not in key_managers)"
            ),
            DeclarationError::UnknownApi { field, line, name } => {
                write!(
                    f,
                    "line {line}: {field}: unknown API `{name}` (not in apis)"
                )
            }
            DeclarationError::DuplicateName {
                field,
                line,
                name,
                first_line,
            } => write!(
                f,
                "line {line}: {field}: `{name}` is already declared on line {first_line}"
            ),
            DeclarationError::DuplicateClientId {
                field,
                line,
                key_manager,
                client_id,
                application,
                other_application,
                other_line,
            } => write!(
                f,
                "line {line}: {field}: client id `{client_id}` of key manager `{key_manager}` is \
                 used by application `{application}` and by application `{other_application}` \
                 (line {other_line}); a client id belongs to one application"
            ),
            DeclarationError::MalformedPathTemplate {
                field,
                line,
                path,
                problem,
            } => write!(
                f,
                "line {line}: {field}: malformed path template `{path}`: {problem}"
            ),
            DeclarationError::InvalidValue {
                field,
                line,
                value,
                problem,
            } => write!(f, "line {line}: {field}: `{value}` {problem}"),
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::NoLeadingSlash => f.write_str("must start with `/`"),
            PathProblem::EmptySegment => f.write_str("has an empty segment (`//` or a trailing `/`)"),
            PathProblem::DotSegment => f.write_str("has a `.` or `..` segment"),
            PathProblem::IllegalCharacter { character } => {
                write!(f, "contains `{character}` (not allowed in a path template)")
            }
            PathProblem::BadParameter => f.write_str(
                "a parameter must be a whole segment `{name}` with a name of letters, digits or `_`",
            ),
            PathProblem::DuplicateParameter { name } => {
                write!(f, "parameter `{name}` appears twice")
            }
            PathProblem::WildcardNotLast => f.write_str("`*` may only be the whole last segment"),
        }
    }
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::Empty => f.write_str("must not be empty"),
            ValueProblem::NotSocketAddress => {
                f.write_str("is not an IP:port address (e.g. 127.0.0.1:8080)")
            }
            ValueProblem::BadUrl { problem } => write!(f, "is not a valid URL: it {problem}"),
            ValueProblem::UpstreamWithPath => {
                f.write_str("must be scheme://host[:port] only (no path)")
            }
            ValueProblem::UnknownProvider => {
                let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
                write!(f, "is not a known provider (one of: {})", names.join(", "))
            }
            ValueProblem::UnknownMethod => {
                f.write_str("is not an HTTP method (GET, POST, ..., or * for any)")
            }
            ValueProblem::Discovery { error } => write!(f, "is refused: {error}"),
        }
    }
}

/// Parses and checks a declaration. All problems found are returned, in source order.
pub fn parse(text: &str) -> Result<Declaration, Vec<DeclarationError>> {
    parse_with(text, false)
}

/// `parse`, with `--allow-http` applied to every key manager's URLs.
pub fn parse_with(text: &str, allow_http: bool) -> Result<Declaration, Vec<DeclarationError>> {
    let declaration: Declaration = serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        vec![DeclarationError::Syntax {
            line,
            column,
            detail: first_line(&err.to_string()),
        }]
    })?;
    let mut errors = check(&declaration, allow_http);
    if errors.is_empty() {
        Ok(declaration)
    } else {
        errors.sort_by_key(DeclarationError::line);
        Err(errors)
    }
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

/// Cross-field checks on a parsed declaration.
pub fn check(decl: &Declaration, allow_http: bool) -> Vec<DeclarationError> {
    let mut errors = Vec::new();
    let gateway = &decl.gateway;
    non_empty(&mut errors, "gateway.environment", &gateway.environment);
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

    let mut key_managers = Names::default();
    for (i, km) in decl.key_managers.iter().enumerate() {
        let at = format!("key_managers[{i}]");
        key_managers.add(&mut errors, &format!("{at}.name"), &km.name);
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

    let mut apis = Names::default();
    let mut base_paths = Names::default();
    for (i, api) in decl.apis.iter().enumerate() {
        let at = format!("apis[{i}]");
        apis.add(&mut errors, &format!("{at}.name"), &api.name);
        let base_field = format!("{at}.base_path");
        if let Err(problem) = check_base_path(&api.base_path.value) {
            errors.push(malformed(&base_field, &api.base_path, problem));
        } else {
            base_paths.add(&mut errors, &base_field, &api.base_path);
        }
        if let Some(upstream) = &api.upstream {
            let field = format!("{at}.upstream");
            match HttpUrl::parse(&upstream.value) {
                Err(problem) => {
                    errors.push(invalid(&field, upstream, ValueProblem::BadUrl { problem }))
                }
                Ok(url) if url.path_and_query != "/" => {
                    errors.push(invalid(&field, upstream, ValueProblem::UpstreamWithPath))
                }
                Ok(_) => {}
            }
        }
        let mut resources = Names::default();
        for (j, resource) in api.resources.iter().enumerate() {
            let rat = format!("{at}.resources[{j}]");
            if !is_method(&resource.method.value) {
                errors.push(invalid(
                    &format!("{rat}.method"),
                    &resource.method,
                    ValueProblem::UnknownMethod,
                ));
            }
            let path_field = format!("{rat}.path");
            if let Err(problem) = check_path_template(&resource.path.value) {
                errors.push(malformed(&path_field, &resource.path, problem));
            }
            let key = Located {
                value: format!(
                    "{} {}",
                    resource.method.value.to_ascii_uppercase(),
                    resource.path.value
                ),
                referenced: resource.path.referenced,
                defined: resource.path.defined,
            };
            resources.add(&mut errors, &path_field, &key);
        }
    }

    let mut applications = Names::default();
    // (key manager, client id) → (application, line)
    let mut owners: BTreeMap<(String, String), (String, u64)> = BTreeMap::new();
    for (i, app) in decl.applications.iter().enumerate() {
        let at = format!("applications[{i}]");
        applications.add(&mut errors, &format!("{at}.name"), &app.name);
        for (j, client) in app.client_ids.iter().enumerate() {
            let cat = format!("{at}.client_ids[{j}]");
            if !key_managers.contains(&client.key_manager.value) {
                errors.push(DeclarationError::UnknownKeyManager {
                    field: format!("{cat}.key_manager"),
                    line: line_of(&client.key_manager),
                    name: client.key_manager.value.clone(),
                });
            }
            non_empty(&mut errors, &format!("{cat}.client_id"), &client.client_id);
            let key = (
                client.key_manager.value.clone(),
                client.client_id.value.clone(),
            );
            match owners.get(&key) {
                Some((other, other_line)) => errors.push(DeclarationError::DuplicateClientId {
                    field: format!("{cat}.client_id"),
                    line: line_of(&client.client_id),
                    key_manager: key.0.clone(),
                    client_id: key.1.clone(),
                    application: app.name.value.clone(),
                    other_application: other.clone(),
                    other_line: *other_line,
                }),
                None => {
                    owners.insert(key, (app.name.value.clone(), line_of(&client.client_id)));
                }
            }
        }
        let mut subscribed = Names::default();
        for (j, sub) in app.subscriptions.iter().enumerate() {
            let field = format!("{at}.subscriptions[{j}].api");
            if apis.contains(&sub.api.value) {
                subscribed.add(&mut errors, &field, &sub.api);
            } else {
                errors.push(DeclarationError::UnknownApi {
                    field,
                    line: line_of(&sub.api),
                    name: sub.api.value.clone(),
                });
            }
        }
    }
    errors
}

/// Names declared so far, with their lines, to report duplicates and resolve references.
#[derive(Default)]
struct Names(BTreeMap<String, u64>);

impl Names {
    fn add(&mut self, errors: &mut Vec<DeclarationError>, field: &str, name: &Located) {
        if name.value.is_empty() {
            errors.push(invalid(field, name, ValueProblem::Empty));
            return;
        }
        match self.0.get(&name.value) {
            Some(first_line) => errors.push(DeclarationError::DuplicateName {
                field: field.to_string(),
                line: line_of(name),
                name: name.value.clone(),
                first_line: *first_line,
            }),
            None => {
                self.0.insert(name.value.clone(), line_of(name));
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

fn non_empty(errors: &mut Vec<DeclarationError>, field: &str, value: &Located) {
    if value.value.trim().is_empty() {
        errors.push(invalid(field, value, ValueProblem::Empty));
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

fn malformed(field: &str, value: &Located, problem: PathProblem) -> DeclarationError {
    DeclarationError::MalformedPathTemplate {
        field: field.to_string(),
        line: line_of(value),
        path: value.value.clone(),
        problem,
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*", "ANY",
];

fn is_method(method: &str) -> bool {
    METHODS.contains(&method.to_ascii_uppercase().as_str())
}

/// A base path is a literal path: `/`, or segments without templates and without a trailing `/`.
pub fn check_base_path(path: &str) -> Result<(), PathProblem> {
    if path == "/" {
        return Ok(());
    }
    check_path_template(path)?;
    if path.contains(['{', '*']) {
        return Err(PathProblem::IllegalCharacter {
            character: if path.contains('{') { '{' } else { '*' },
        });
    }
    Ok(())
}

/// Resource path templates: `/`, literal segments, whole-segment `{name}` parameters, and `*` as
/// the whole last segment (any rest of the path).
pub fn check_path_template(path: &str) -> Result<(), PathProblem> {
    let rest = path.strip_prefix('/').ok_or(PathProblem::NoLeadingSlash)?;
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut params = BTreeSet::new();
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(PathProblem::EmptySegment);
        }
        if *segment == "." || *segment == ".." {
            return Err(PathProblem::DotSegment);
        }
        if let Some(character) = segment
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%' | '\\'))
        {
            return Err(PathProblem::IllegalCharacter { character });
        }
        if segment.contains('*') {
            if *segment != "*" || index != last {
                return Err(PathProblem::WildcardNotLast);
            }
            continue;
        }
        if segment.contains(['{', '}']) {
            let name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .ok_or(PathProblem::BadParameter)?;
            if !params.insert(name) {
                return Err(PathProblem::DuplicateParameter {
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        for ok in [
            "/",
            "/pets",
            "/pets/{id}",
            "/files/*",
            "/a/{x}/b/{y_2}",
            "/v1.0/x",
        ] {
            assert_eq!(check_path_template(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("pets", PathProblem::NoLeadingSlash),
            ("/pets//x", PathProblem::EmptySegment),
            ("/pets/", PathProblem::EmptySegment),
            ("/pets/../admin", PathProblem::DotSegment),
            (
                "/pets/%2F",
                PathProblem::IllegalCharacter { character: '%' },
            ),
            (
                "/pets?x=1",
                PathProblem::IllegalCharacter { character: '?' },
            ),
            ("/pets/{id", PathProblem::BadParameter),
            ("/pets/x{id}", PathProblem::BadParameter),
            ("/pets/{}", PathProblem::BadParameter),
            ("/pets/{a-b}", PathProblem::BadParameter),
            ("/*/pets", PathProblem::WildcardNotLast),
            ("/pets*", PathProblem::WildcardNotLast),
            (
                "/a/{id}/b/{id}",
                PathProblem::DuplicateParameter { name: "id".into() },
            ),
        ];
        for (path, want) in cases {
            assert_eq!(check_path_template(path), Err(want), "{path}");
        }
    }

    #[test]
    fn base_paths_are_literal() {
        assert_eq!(check_base_path("/"), Ok(()));
        assert_eq!(check_base_path("/pets/v1"), Ok(()));
        assert!(check_base_path("/pets/v1/").is_err());
        assert!(check_base_path("/pets/{v}").is_err());
        assert!(check_base_path("/pets/*").is_err());
    }

    #[test]
    fn parser_messages_lose_their_location_prefix() {
        assert_eq!(
            first_line("error: line 3 column 5: unknown field `x`\n  |\n3 | x: 1"),
            "unknown field `x`"
        );
        assert_eq!(first_line("missing field `a`"), "missing field `a`");
    }

    #[test]
    fn methods() {
        assert!(is_method("get"));
        assert!(is_method("*"));
        assert!(!is_method("FETCH"));
    }
}
