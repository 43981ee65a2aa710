//! Applications as the decision sees them, whichever way they reach the gateway: inline in the
//! plugin config (compiled once, [`InlineApplications`]) or from the application directory
//! (`crate::directory`, looked up in shared data per request). Both compile an
//! [`crate::config::ApplicationConfig`] with the same rules ([`Catalog::compile`]) into the same
//! [`Application`], and both answer the same question through [`ApplicationLookup`]: which
//! application owns this client id of this key manager.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ApplicationConfig, ApplicationState, ConfigError, ConfigProblem};
use crate::config::{SubscriptionState, TierConfig};

use super::tier::{Budget, Tier};
use super::KeyManagerId;

/// An application, compiled: its state and its subscriptions by API index.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub name: String,
    pub blocked: bool,
    /// API index → subscription.
    pub subscriptions: HashMap<usize, Subscription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub state: SubscriptionState,
    /// `None`: unlimited.
    pub budget: Option<Arc<Budget>>,
}

/// What a lookup by (key manager, client id) found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    Found(Cow<'a, Application>),
    /// No application owns this client id.
    Unknown,
    /// The applications cannot be looked up now (the directory was never loaded, or is older than
    /// its stale bound): answered 503 with `Retry-After`.
    Unavailable {
        retry_after: u64,
    },
}

/// An API key's entry and the application it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOwner<'a> {
    /// The key's configured name (`<prefix>api-key` upstream).
    pub key_name: Cow<'a, str>,
    /// Unix seconds after which the key is refused; `None`: never.
    pub expires: Option<u64>,
    pub application: Cow<'a, Application>,
}

/// What a lookup by API-key hash found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyLookup<'a> {
    Found(KeyOwner<'a>),
    /// No application has a key with this hash.
    Unknown,
    /// As [`Lookup::Unavailable`].
    Unavailable {
        retry_after: u64,
    },
}

/// Where the decision finds applications: the owner of a verified client id, and the owner of
/// an API key (by the key's SHA-256). Inline applications (the [`super::Policy`] itself) and
/// the directory in shared data (`crate::directory::SharedLookup`) both answer it.
pub trait ApplicationLookup {
    fn find(&self, key_manager: KeyManagerId, client_id: &str) -> Lookup<'_>;
    fn find_key(&self, hash: &[u8; 32]) -> KeyLookup<'_>;
}

/// The names applications refer to, resolved to the policy's indices: what an application is
/// compiled against, inline at `on_configure` or from the directory per entry.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub key_managers: Vec<String>,
    pub apis: Vec<String>,
    /// Tier names, with the compiled tier (`None` where the tier itself was refused).
    pub tiers: Vec<(String, Option<Tier>)>,
}

/// One application compiled, with the client ids it claims.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub application: Application,
    pub client_ids: Vec<ClientId>,
}

/// A client id an application claims, at a key manager (index), from its `client_ids[at]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    pub key_manager: usize,
    pub client_id: String,
    pub at: usize,
}

impl Catalog {
    pub fn new(key_managers: Vec<String>, apis: Vec<String>, tiers: &[TierConfig]) -> Self {
        let tiers = tiers.iter().map(|t| (t.name.clone(), None)).collect();
        Catalog {
            key_managers,
            apis,
            tiers,
        }
    }

    pub fn key_manager(&self, name: &str) -> Option<usize> {
        self.key_managers.iter().position(|k| k == name)
    }

    pub fn api(&self, name: &str) -> Option<usize> {
        self.apis.iter().position(|a| a == name)
    }

    /// The budget of a subscription of `application` to API `api` on the tier at `tier`.
    pub fn budget(&self, tier: usize, application: &str, api: usize) -> Option<Arc<Budget>> {
        let (_, tier) = self.tiers.get(tier)?;
        let api = self.apis.get(api)?;
        Some(Arc::new(Budget::new(tier.clone()?, application, api)))
    }

    /// Compiles one application; every problem is pushed with its path under `at`
    /// (`applications[3]`). Client ids are not checked against other applications here (the
    /// caller knows the others).
    pub fn compile(
        &self,
        at: &str,
        app: &ApplicationConfig,
        errors: &mut Vec<ConfigError>,
    ) -> Compiled {
        let mut push = |path: String, problem| errors.push(ConfigError::new(path, problem));
        check_name(&mut push, format!("{at}.name"), &app.name);
        let mut client_ids = Vec::with_capacity(app.client_ids.len());
        for (k, id) in app.client_ids.iter().enumerate() {
            let path = format!("{at}.client_ids[{k}]");
            let key_manager = self.key_manager(&id.key_manager);
            if key_manager.is_none() {
                push(
                    format!("{path}.key_manager"),
                    ConfigProblem::UnknownKeyManager {
                        name: id.key_manager.clone(),
                    },
                );
            }
            if !check_name(&mut push, format!("{path}.client_id"), &id.client_id) {
                continue;
            }
            if let Some(km) = key_manager {
                let seen = |c: &ClientId| c.key_manager == km && c.client_id == id.client_id;
                if client_ids.iter().any(seen) {
                    push(
                        format!("{path}.client_id"),
                        ConfigProblem::DuplicateClientId {
                            client_id: id.client_id.clone(),
                            key_manager: id.key_manager.clone(),
                            application: app.name.clone(),
                        },
                    );
                } else {
                    client_ids.push(ClientId {
                        key_manager: km,
                        client_id: id.client_id.clone(),
                        at: k,
                    });
                }
            }
        }
        let mut subscriptions = HashMap::new();
        for (k, sub) in app.subscriptions.iter().enumerate() {
            let api = self.api(&sub.api);
            let mut budget = None;
            if let Some(tier) = &sub.tier {
                match self.tiers.iter().position(|(name, _)| name == tier) {
                    None => push(
                        format!("{at}.subscriptions[{k}].tier"),
                        ConfigProblem::UnknownTier { name: tier.clone() },
                    ),
                    Some(t) => budget = api.and_then(|api| self.budget(t, &app.name, api)),
                }
            }
            let path = format!("{at}.subscriptions[{k}].api");
            match api {
                None => push(
                    path,
                    ConfigProblem::UnknownApi {
                        name: sub.api.clone(),
                    },
                ),
                Some(api) if subscriptions.contains_key(&api) => push(
                    path,
                    ConfigProblem::DuplicateSubscription {
                        api: sub.api.clone(),
                    },
                ),
                Some(api) => {
                    let state = sub.state;
                    subscriptions.insert(api, Subscription { state, budget });
                }
            }
        }
        Compiled {
            application: Application {
                name: app.name.clone(),
                blocked: app.state == ApplicationState::Blocked,
                subscriptions,
            },
            client_ids,
        }
    }
}

/// Non-empty and free of control characters (names show up in headers and logs).
fn check_name(push: &mut impl FnMut(String, ConfigProblem), path: String, value: &str) -> bool {
    if value.is_empty() {
        push(path, ConfigProblem::Missing);
        false
    } else if value.chars().any(char::is_control) {
        push(
            path,
            ConfigProblem::Invalid {
                value: value.to_string(),
                reason: "control characters are not allowed",
            },
        );
        false
    } else {
        true
    }
}

/// The applications of the plugin config, indexed by (key manager, client id).
#[derive(Debug, Clone, Default)]
pub struct InlineApplications {
    applications: Vec<Application>,
    /// Per key manager index: client id → application index.
    clients: Vec<HashMap<String, usize>>,
}

impl InlineApplications {
    pub fn new(key_managers: usize) -> Self {
        InlineApplications {
            applications: Vec::new(),
            clients: vec![HashMap::new(); key_managers],
        }
    }

    /// The application that already owns `client_id` at key manager `km`.
    pub fn owner(&self, km: usize, client_id: &str) -> Option<&Application> {
        let index = self.clients.get(km)?.get(client_id)?;
        self.applications.get(*index)
    }

    /// Adds a compiled application (its client ids must be free: see [`Self::owner`]).
    pub fn add(&mut self, compiled: Compiled) {
        let index = self.applications.len();
        for id in compiled.client_ids {
            if let Some(clients) = self.clients.get_mut(id.key_manager) {
                clients.insert(id.client_id, index);
            }
        }
        self.applications.push(compiled.application);
    }

    /// The application at `index` (the order of the plugin config's `applications`).
    pub fn get(&self, index: usize) -> Option<&Application> {
        self.applications.get(index)
    }

    pub fn len(&self) -> usize {
        self.applications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applications.is_empty()
    }
}

impl InlineApplications {
    /// The application of a verified client id.
    pub fn find(&self, key_manager: KeyManagerId, client_id: &str) -> Lookup<'_> {
        match self.owner(key_manager.index(), client_id) {
            Some(app) => Lookup::Found(Cow::Borrowed(app)),
            None => Lookup::Unknown,
        }
    }
}
