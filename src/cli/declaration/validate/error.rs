//! [`DeclarationError`] and the problems it carries ([`ValueProblem`], [`IstioProblem`]): each
//! with its field, its line, a code and the message the operator reads.

use std::fmt;

use crate::cli::declaration::istio::KubeProblem;
use crate::cli::declaration::presets::Preset;
use crate::cli::discovery::oidc::DiscoveryError;
use crate::cli::discovery::url::UrlProblem;
use crate::config::ConfigError;

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
