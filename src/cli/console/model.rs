//! What the console keeps, as the declaration (`keygate.yaml`) names it: the subset of the
//! declaration the console edits. `export` serialises [`Export`] (field order fixed here, empty
//! values left out), `import` reads it back with unknown fields refused, so export → import →
//! export gives the same bytes.

use serde::{Deserialize, Serialize};

use crate::cli::discovery::oidc::DiscoveryDocument;
use crate::config::{ApiKeyConfig, ApplicationConfig, ApplicationState, SubscriptionState};

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_active_app(state: &ApplicationState) -> bool {
    *state == ApplicationState::Active
}

fn is_active_sub(state: &SubscriptionState) -> bool {
    *state == SubscriptionState::Active
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            environment: "production".into(),
            listen: None,
            admin: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyManager {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub well_known_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The discovery document the administrator reviewed, pinned: `generate` uses it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryDocument>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub base_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The credentials the API accepts (`oauth2`, `api_key`); empty: the default, `[oauth2]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub requests: u64,
    pub per: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientId {
    pub key_manager: String,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub api: String,
    #[serde(default, skip_serializing_if = "is_active_sub")]
    pub state: SubscriptionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "is_active_app")]
    pub state: ApplicationState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<ClientId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
    /// The application's API keys: name and SHA-256 only (the key is shown once, never kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConfig>,
}

impl Application {
    /// The application as the plugin config and the directory protocol carry it. Fields the
    /// console does not keep (added to the plugin config by other changes) stay at their
    /// defaults.
    #[allow(clippy::needless_update)]
    pub fn config(&self) -> ApplicationConfig {
        ApplicationConfig {
            name: self.name.clone(),
            state: self.state,
            client_ids: self
                .client_ids
                .iter()
                .map(|c| crate::config::ClientIdConfig {
                    key_manager: c.key_manager.clone(),
                    client_id: c.client_id.clone(),
                    ..Default::default()
                })
                .collect(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| crate::config::SubscriptionConfig {
                    api: s.api.clone(),
                    state: s.state,
                    tier: s.tier.clone(),
                    ..Default::default()
                })
                .collect(),
            api_keys: self.api_keys.clone(),
            ..Default::default()
        }
    }
}

/// The whole console state as a declaration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub gateway: Gateway,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_managers: Vec<KeyManager>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<Api>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<Application>,
}

impl Export {
    /// The declaration text (YAML), as `export` prints it and `generate` reads it.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self)
            .map(|body| format!("# keygate.yaml exported by keygate console\n{body}"))
            .map_err(|err| err.to_string())
    }

    /// Reads a declaration the console can keep: every field must be one it edits.
    pub fn from_yaml(text: &str) -> Result<Export, String> {
        serde_saphyr::from_str(text).map_err(|err| {
            format!("{err} (the console keeps gateway.environment/listen/admin, key managers, tiers, APIs and applications with the fields it edits)")
        })
    }
}
