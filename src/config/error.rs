//! Configuration errors: the field path plus what is wrong there.

use std::fmt;

/// A configuration problem at a field path such as `applications[0].client_ids[1].client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub problem: ConfigProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    /// JSON syntax or type error, as serde reports it.
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// A required field is absent or empty.
    Missing,
    /// A field serde does not know.
    UnknownField {
        field: String,
    },
    /// A value with the wrong shape; `reason` says which rule it breaks.
    Invalid {
        value: String,
        reason: &'static str,
    },
    UnknownKeyManager {
        name: String,
    },
    UnknownApi {
        name: String,
    },
    UnknownTier {
        name: String,
    },
    DuplicateName {
        name: String,
        first: String,
    },
    DuplicateClientId {
        client_id: String,
        key_manager: String,
        application: String,
    },
    DuplicateBasePath {
        base_path: String,
        api: String,
    },
    DuplicateResource {
        resource: String,
        first: String,
    },
    DuplicateIssuer {
        issuer: String,
        key_manager: String,
    },
    DuplicateSubscription {
        api: String,
    },
    /// The same API key hash is configured twice (`first` is the other field path).
    DuplicateApiKey {
        first: String,
    },
    UnsupportedAlgorithm {
        algorithm: String,
    },
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
    },
    PublicWithRequirements,
    TenantsWithoutTemplate,
    TemplateWithoutTenants,
    /// `introspection` is configured but the discovery document has no `introspection_endpoint`.
    NoIntrospectionEndpoint,
    /// DPoP is required for an API but no origin (`public_urls`) says what a proof's `htu` must
    /// name.
    NoPublicUrl,
    /// The environment variable named by `client_secret_env` is not set (or empty) in the
    /// filter's environment (only the filter can see it; `generate` does not check it).
    SecretNotSet {
        variable: String,
    },
}

impl ConfigError {
    pub fn new(path: impl Into<String>, problem: ConfigProblem) -> ConfigError {
        ConfigError {
            path: path.into(),
            problem,
        }
    }

    /// Stable snake_case code of the problem.
    pub fn code(&self) -> &'static str {
        match &self.problem {
            ConfigProblem::Syntax { .. } => "syntax",
            ConfigProblem::Missing => "missing",
            ConfigProblem::UnknownField { .. } => "unknown_field",
            ConfigProblem::Invalid { .. } => "invalid",
            ConfigProblem::UnknownKeyManager { .. } => "unknown_key_manager",
            ConfigProblem::UnknownApi { .. } => "unknown_api",
            ConfigProblem::UnknownTier { .. } => "unknown_tier",
            ConfigProblem::DuplicateName { .. } => "duplicate_name",
            ConfigProblem::DuplicateClientId { .. } => "duplicate_client_id",
            ConfigProblem::DuplicateBasePath { .. } => "duplicate_base_path",
            ConfigProblem::DuplicateResource { .. } => "duplicate_resource",
            ConfigProblem::DuplicateIssuer { .. } => "duplicate_issuer",
            ConfigProblem::DuplicateSubscription { .. } => "duplicate_subscription",
            ConfigProblem::DuplicateApiKey { .. } => "duplicate_api_key",
            ConfigProblem::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            ConfigProblem::OutOfRange { .. } => "out_of_range",
            ConfigProblem::PublicWithRequirements => "public_with_requirements",
            ConfigProblem::TenantsWithoutTemplate => "tenants_without_template",
            ConfigProblem::TemplateWithoutTenants => "template_without_tenants",
            ConfigProblem::NoIntrospectionEndpoint => "no_introspection_endpoint",
            ConfigProblem::NoPublicUrl => "no_public_url",
            ConfigProblem::SecretNotSet { .. } => "secret_not_set",
        }
    }

    /// Turn a serde error at `path` into a config error. A missing or unknown field is moved into
    /// the path (`key_managers[1].issuer: missing`) instead of being left in the message.
    pub(crate) fn from_serde(path: String, error: &serde_json::Error) -> ConfigError {
        let full = error.to_string();
        let location = format!(" at line {} column {}", error.line(), error.column());
        let message = full.strip_suffix(&location).unwrap_or(&full);
        let join = |field: &str| {
            if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        if let Some(field) = backticked(message, "missing field `") {
            return ConfigError::new(join(field), ConfigProblem::Missing);
        }
        if let Some(field) = backticked(message, "unknown field `") {
            // The path (`json_path::error_path`) already ends with the unknown key.
            let at_field = path.rsplit('.').next() == Some(field);
            return ConfigError::new(
                if at_field { path.clone() } else { join(field) },
                ConfigProblem::UnknownField {
                    field: field.to_string(),
                },
            );
        }
        ConfigError::new(
            path,
            ConfigProblem::Syntax {
                message: message.to_string(),
                line: error.line(),
                column: error.column(),
            },
        )
    }
}

/// The text between `lead` and the next backtick, when `message` starts with `lead`.
fn backticked<'m>(message: &'m str, lead: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(lead)?;
    rest.split_once('`').map(|(field, _)| field)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.problem {
            ConfigProblem::Syntax {
                message,
                line,
                column,
            } => write!(f, "{message} (line {line}, column {column})"),
            ConfigProblem::Missing => f.write_str("missing"),
            ConfigProblem::UnknownField { field } => write!(f, "unknown field \"{field}\""),
            ConfigProblem::Invalid { value, reason } => write!(f, "{value:?}: {reason}"),
            ConfigProblem::UnknownKeyManager { name } => write!(f, "unknown key manager {name:?}"),
            ConfigProblem::UnknownApi { name } => write!(f, "unknown API {name:?}"),
            ConfigProblem::UnknownTier { name } => write!(f, "unknown tier {name:?}"),
            ConfigProblem::DuplicateName { name, first } => {
                write!(f, "name {name:?} is already used at {first}")
            }
            ConfigProblem::DuplicateClientId {
                client_id,
                key_manager,
                application,
            } => write!(
                f,
                "client id {client_id:?} of key manager {key_manager:?} is already used by application {application:?}"
            ),
            ConfigProblem::DuplicateBasePath { base_path, api } => {
                write!(f, "base path {base_path:?} is already used by API {api:?}")
            }
            ConfigProblem::DuplicateResource { resource, first } => {
                write!(f, "{resource} is the same resource as {first}")
            }
            ConfigProblem::DuplicateIssuer {
                issuer,
                key_manager,
            } => write!(
                f,
                "issuer {issuer:?} is already used by key manager {key_manager:?} in an overlapping environment"
            ),
            ConfigProblem::DuplicateSubscription { api } => {
                write!(f, "API {api:?} is subscribed twice")
            }
            ConfigProblem::DuplicateApiKey { first } => {
                write!(f, "the same API key hash is already configured at {first}")
            }
            ConfigProblem::UnsupportedAlgorithm { algorithm } => write!(
                f,
                "algorithm {algorithm:?} is not supported (one of {})",
                super::SUPPORTED_ALGORITHMS.join(", ")
            ),
            ConfigProblem::OutOfRange { value, min, max } => {
                write!(f, "{value} is outside {min}..={max}")
            }
            ConfigProblem::PublicWithRequirements => {
                f.write_str("a public resource cannot require scopes, groups or claims")
            }
            ConfigProblem::TenantsWithoutTemplate => {
                f.write_str("tenants are set but the issuer has no {tenantid} placeholder")
            }
            ConfigProblem::TemplateWithoutTenants => f.write_str(
                "the issuer has a {tenantid} placeholder but no tenants are allowed",
            ),
            ConfigProblem::NoIntrospectionEndpoint => f.write_str(
                "no introspection endpoint: neither the key manager's OpenID discovery document \
                 nor its RFC 8414 metadata (/.well-known/oauth-authorization-server, same issuer) \
                 has an introspection_endpoint, so opaque tokens cannot be checked; set \
                 `introspection.endpoint` in the declaration, or remove `introspection`",
            ),
            ConfigProblem::NoPublicUrl => f.write_str(
                "DPoP is required here but no public URL is configured: set gateway.public_urls \
                 (or apis[].public_urls) to the origin clients call, e.g. https://api.example.com; \
                 a proof's htu is checked against it, never against the client's Host",
            ),
            ConfigProblem::SecretNotSet { variable } => write!(
                f,
                "environment variable {variable} is not set in Envoy's environment (the Wasm VM \
                 gets it through vm_config environment_variables host_env_keys)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem the compiler found, in field order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `None` when there is nothing to report.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        if errors.is_empty() {
            None
        } else {
            Some(ConfigErrors(errors))
        }
    }

    pub fn as_slice(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first problem in field order.
    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per problem, so a log line or a terminal shows them all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        if count > 1 {
            write!(f, "{count} problems: ")?;
        }
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
