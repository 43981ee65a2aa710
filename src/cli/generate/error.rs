//! [`GenerateError`]: what stops `generate` (an unreadable file, a refused declaration or
//! discovery, a file that cannot be rendered or written), its code, exit status and message, and
//! the conversions from the render files' errors.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cli::declaration::validate::DeclarationError;
use crate::cli::discover::ResolveError;
use crate::cli::discovery::url::NameCollision;
use crate::cli::render::envoy::BootstrapError;
use crate::cli::wasm_source::SourceError;

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

/// Two Istio targets behind one name ([`istio::manifests`](crate::cli::render::istio::manifests)).
impl From<NameCollision> for GenerateError {
    fn from(err: NameCollision) -> Self {
        GenerateError::Render {
            what: "istio manifests",
            detail: err.to_string(),
        }
    }
}
