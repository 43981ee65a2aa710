//! The console's operations, shared by the pages and the REST API: who may do what, and every
//! change as one transaction that is compiled and applied before it commits.

use serde::Serialize;

use super::apply::{self, Applied, Applier};
use super::auth::{Auth, Identity};
use super::model::{Api, Application, KeyManager, Tier};
use super::preview;
pub use super::resources::{format_resources, parse_resources, resources_from_openapi, split_list};
use super::store::{self, ConsoleError, Db, Doc, Result, Store};
use crate::cli::declaration::presets::Preset;
use crate::cli::discover;
use crate::cli::discovery::oidc::DiscoveryDocument;
use crate::cli::instructions;
use crate::config::{ApiKeyConfig, Expiry};

pub struct Console {
    pub store: Store,
    pub applier: Applier,
    pub auth: Auth,
    /// Cookies get `Secure` (the console is served over https).
    pub secure_cookies: bool,
    /// The bearer token gateways must send to the directory (None: not required).
    pub directory_token: Option<String>,
    pub session_ttl_seconds: i64,
}

/// What discovery gave, for the review page.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub well_known_url: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub algorithms: Vec<String>,
    pub provider: String,
    pub claims: String,
    pub warnings: Vec<String>,
    pub discovery: DiscoveryDocument,
    pub discovery_json: String,
}

/// A new key manager as the form or the API gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewKeyManager {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub well_known_url: String,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// The reviewed document; omitted: discovered now.
    #[serde(default)]
    pub discovery: Option<DiscoveryDocument>,
}

/// A name of a key manager, API, tier or application.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConsoleError::invalid(
            field,
            "use 1 to 64 letters, digits, `-`, `_` or `.`",
        ))
    }
}

pub fn require_admin(user: &Identity) -> Result<()> {
    if user.admin {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "administrators only: you are not in the administrators' group".into(),
        ))
    }
}

impl Console {
    /// Runs a change in one transaction, applies the result (compile + write) before committing,
    /// and records it in the audit log (a refusal too, after the rollback).
    pub fn change<T>(
        &self,
        user: &Identity,
        action: &str,
        f: impl FnOnce(&Db) -> Result<T>,
    ) -> Result<(T, Applied)> {
        let result = self.store.tx(|tx| {
            let before = store::export(tx)?;
            let value = f(tx)?;
            let mut applied = self.applier.apply(tx)?;
            applied.access = apply::access_changes(&before, &store::export(tx)?);
            store::audit(tx, &user.name, action, &applied.summary())?;
            Ok((value, applied))
        });
        if let Err(err) = &result {
            let outcome = format!("not applied: {err}");
            let _ = self
                .store
                .read(|conn| store::audit(conn, &user.name, action, &outcome));
        }
        result
    }

    /// What a change would do, without doing it: it runs in a transaction that is rolled back,
    /// compiled by the filter's compiler (a refusal is returned as it would be on applying);
    /// returns who gains or loses access to what.
    pub fn preview(&self, f: impl FnOnce(&Db) -> Result<()>) -> Result<Vec<String>> {
        self.store.preview(|tx| {
            let before = store::export(tx)?;
            f(tx)?;
            let after = store::export(tx)?;
            apply::compile(&after, self.applier.allow_http)?;
            Ok(apply::access_changes(&before, &after))
        })
    }

    /// [`Console::preview`] of saving an API.
    pub fn preview_api(
        &self,
        user: &Identity,
        version: Option<i64>,
        api: &Api,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        check_name("name", &api.name)?;
        self.preview(|tx| match version {
            Some(version) => store::update(tx, Doc::Apis, &api.name, version, api),
            None => store::insert(tx, Doc::Apis, &api.name, api),
        })
    }

    // ---- key managers ---------------------------------------------------------------------------

    pub fn discover(&self, well_known_url: &str) -> Result<Review> {
        let url = well_known_url.trim();
        let allow = self.applier.allow_http;
        let checked = discover::resolve(url, allow).map_err(|err| match err {
            discover::ResolveError::Refused(e) => {
                ConsoleError::invalid("well_known_url", e.to_string())
            }
            discover::ResolveError::Fetch(e) => {
                ConsoleError::invalid("well_known_url", e.to_string())
            }
        })?;
        let checked = discover::with_metadata_introspection(checked, allow);
        let jwks = checked.jwks_uri.to_string();
        let preset = Preset::suggest(&checked.issuer, &jwks);
        let claims = serde_json::to_string(&preset.claims())?;
        let mut warnings: Vec<String> = checked.notes.iter().map(|n| n.to_string()).collect();
        warnings.push(
            "audience unset: without `audiences` a token this key manager minted for any other \
             resource server is accepted; set them in Edit after adding"
                .to_string(),
        );
        let document = checked.document.clone();
        Ok(Review {
            well_known_url: url.to_string(),
            issuer: checked.issuer.clone(),
            jwks_uri: jwks,
            token_endpoint: document.token_endpoint.clone(),
            introspection_endpoint: document.introspection_endpoint.clone(),
            algorithms: document.id_token_signing_alg_values_supported.clone(),
            provider: preset.name().to_string(),
            claims,
            warnings,
            discovery_json: serde_json::to_string(&document)?,
            discovery: document,
        })
    }

    pub fn add_key_manager(&self, user: &Identity, new: NewKeyManager) -> Result<Applied> {
        require_admin(user)?;
        check_name("name", &new.name)?;
        let discovery = match new.discovery {
            Some(document) => document,
            None => self.discover(&new.well_known_url)?.discovery,
        };
        let provider = match new.provider.filter(|p| !p.is_empty()) {
            Some(p) if Preset::from_name(&p).is_some() => p,
            Some(p) => {
                return Err(ConsoleError::invalid(
                    "provider",
                    format!("unknown preset `{p}`"),
                ))
            }
            None => Preset::suggest(
                discovery.issuer.as_deref().unwrap_or_default(),
                discovery.jwks_uri.as_deref().unwrap_or_default(),
            )
            .name()
            .to_string(),
        };
        let km = KeyManager {
            name: new.name.clone(),
            description: new.description.filter(|d| !d.is_empty()),
            well_known_url: new.well_known_url.trim().to_string(),
            environments: new.environments,
            audiences: new.audiences,
            provider: Some(provider),
            discovery: Some(discovery),
        };
        let action = format!("add key manager {}", km.name);
        self.change(user, &action, |tx| {
            store::insert(tx, Doc::KeyManagers, &km.name, &km)
        })
        .map(|(_, applied)| applied)
    }

    pub fn update_key_manager(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
        description: Option<String>,
        environments: Vec<String>,
        audiences: Vec<String>,
    ) -> Result<Applied> {
        require_admin(user)?;
        let action = format!("edit key manager {name}");
        let edit = preview::KeyManagerEdit {
            description,
            environments,
            audiences,
        };
        self.change(user, &action, |tx| {
            preview::edit_key_manager(tx, name, version, &edit)
        })
        .map(|(_, applied)| applied)
    }

    pub fn remove_key_manager(&self, user: &Identity, name: &str, version: i64) -> Result<Applied> {
        require_admin(user)?;
        let action = format!("remove key manager {name}");
        self.change(user, &action, |tx| {
            preview::remove_key_manager(tx, name, version)
        })
        .map(|(_, applied)| applied)
    }

    pub fn set_developer_portal(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
        enabled: bool,
    ) -> Result<()> {
        require_admin(user)?;
        let action = format!(
            "{} key manager {name} in the developer portal",
            if enabled { "enable" } else { "disable" }
        );
        self.store.tx(|tx| {
            store::set_devportal(tx, name, version, enabled)?;
            store::audit(tx, &user.name, &action, "saved")
        })
    }

    // ---- APIs and tiers ----------------------------------------------------------------------------

    pub fn save_api(&self, user: &Identity, version: Option<i64>, api: Api) -> Result<Applied> {
        require_admin(user)?;
        check_name("name", &api.name)?;
        if !api.base_path.starts_with('/') {
            return Err(ConsoleError::invalid("base_path", "must start with `/`"));
        }
        let action = format!("save API {}", api.name);
        self.change(user, &action, |tx| match version {
            Some(version) => store::update(tx, Doc::Apis, &api.name, version, &api),
            None => store::insert(tx, Doc::Apis, &api.name, &api),
        })
        .map(|(_, applied)| applied)
    }

    pub fn remove_api(&self, user: &Identity, name: &str, version: i64) -> Result<Applied> {
        require_admin(user)?;
        let action = format!("remove API {name}");
        self.change(user, &action, |tx| preview::remove_api(tx, name, version))
            .map(|(_, applied)| applied)
    }

    pub fn add_tier(&self, user: &Identity, tier: Tier) -> Result<Applied> {
        require_admin(user)?;
        let action = format!("add tier {}", tier.name);
        self.change(user, &action, |tx| preview::save_tier(tx, None, &tier))
            .map(|(_, applied)| applied)
    }

    pub fn remove_tier(&self, user: &Identity, name: &str, version: i64) -> Result<Applied> {
        require_admin(user)?;
        let action = format!("remove tier {name}");
        self.change(user, &action, |tx| preview::remove_tier(tx, name, version))
            .map(|(_, applied)| applied)
    }

    // ---- applications --------------------------------------------------------------------------------

    /// The application if `user` owns it (404 otherwise, for everyone, administrators included).
    pub fn application(&self, user: &Identity, id: i64) -> Result<store::ApplicationRow> {
        self.store
            .read(|conn| store::application(conn, id, Some(&user.sub)))
    }

    pub fn applications(&self, user: &Identity) -> Result<Vec<store::ApplicationRow>> {
        self.store
            .read(|conn| store::applications(conn, Some(&user.sub)))
    }

    pub fn create_application(&self, user: &Identity, name: &str) -> Result<i64> {
        check_name("name", name)?;
        let action = format!("create application {name}");
        self.change(user, &action, |tx| {
            let id = store::create_application(tx, name, &user.sub)?;
            store::record_application(tx, id)?;
            Ok(id)
        })
        .map(|(id, _)| id)
    }

    /// Runs a change of one of `user`'s applications.
    fn app_change(
        &self,
        user: &Identity,
        id: i64,
        action: &str,
        f: impl FnOnce(&Db, &Application) -> Result<()>,
    ) -> Result<Applied> {
        self.change(user, action, |tx| {
            let row = store::application(tx, id, Some(&user.sub))?;
            f(tx, &row.application)?;
            store::record_application(tx, id)
        })
        .map(|(_, applied)| applied)
    }

    pub fn add_client_id(
        &self,
        user: &Identity,
        id: i64,
        key_manager: &str,
        client_id: &str,
    ) -> Result<Applied> {
        let client_id = client_id.trim();
        if client_id.is_empty() || client_id.len() > 256 || client_id.chars().any(char::is_control)
        {
            return Err(ConsoleError::invalid(
                "client_id",
                "enter the client ID (up to 256 characters)",
            ));
        }
        let action = format!("add client ID to application {id}");
        self.app_change(user, id, &action, |tx, _| {
            let enabled = store::key_managers(tx)?
                .into_iter()
                .any(|row| row.developer_portal && row.key_manager.name == key_manager);
            if !enabled {
                return Err(ConsoleError::invalid(
                    "key_manager",
                    format!("`{key_manager}` is not a key manager of the developer portal"),
                ));
            }
            store::add_client_id(tx, id, key_manager, client_id)
        })
    }

    pub fn remove_client_id(
        &self,
        user: &Identity,
        id: i64,
        key_manager: &str,
        client_id: &str,
    ) -> Result<Applied> {
        let action = format!("remove client ID from application {id}");
        self.app_change(user, id, &action, |tx, _| {
            store::remove_client_id(tx, id, key_manager, client_id)
        })
    }

    pub fn subscribe(
        &self,
        user: &Identity,
        id: i64,
        api: &str,
        tier: Option<&str>,
    ) -> Result<Applied> {
        let action = format!("subscribe application {id} to {api}");
        self.change(user, &action, |tx| {
            preview::subscribe(tx, user, id, api, tier)
        })
        .map(|(_, applied)| applied)
    }

    pub fn unsubscribe(&self, user: &Identity, id: i64, api: &str) -> Result<Applied> {
        let action = format!("unsubscribe application {id} from {api}");
        self.change(user, &action, |tx| preview::unsubscribe(tx, user, id, api))
            .map(|(_, applied)| applied)
    }

    /// A new API key for one of `user`'s applications, made as `keygate api-key new` makes it
    /// (`kg_` + 32 random bytes, base64url). Returns the key (shown this once; only its SHA-256
    /// is kept), its entry and what applying did.
    pub fn create_api_key(
        &self,
        user: &Identity,
        id: i64,
        name: &str,
        expires: Option<&str>,
    ) -> Result<(String, ApiKeyConfig, Applied)> {
        use crate::policy::api_keys::{expiry_seconds, hash_hex, hash_key};
        let name = name.trim();
        if name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ConsoleError::invalid(
                "name",
                "a name of up to 128 characters without control characters",
            ));
        }
        let expires = match expires.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => {
                let expiry = match text.parse::<u64>() {
                    Ok(seconds) => Expiry::Unix(seconds),
                    Err(_) => Expiry::Text(text.to_string()),
                };
                if expiry_seconds(&expiry).is_none() {
                    return Err(ConsoleError::invalid(
                        "expires",
                        "an RFC 3339 date-time (2027-01-31T00:00:00Z) or Unix seconds",
                    ));
                }
                Some(expiry)
            }
        };
        let key = crate::cli::api_key::generate_key().map_err(ConsoleError::Internal)?;
        let sha256 = hash_hex(&hash_key(&key));
        let entry = ApiKeyConfig {
            name: if name.is_empty() {
                format!("key-{}", sha256.get(..8).unwrap_or_default())
            } else {
                name.to_string()
            },
            sha256,
            expires,
        };
        let action = format!("add API key {} to application {id}", entry.name);
        let applied = self.app_change(user, id, &action, |tx, _| {
            store::add_api_key(tx, id, &entry)
        })?;
        Ok((key, entry, applied))
    }

    /// Revokes one of the application's API keys by name.
    pub fn revoke_api_key(&self, user: &Identity, id: i64, name: &str) -> Result<Applied> {
        let action = format!("revoke API key {name} of application {id}");
        self.app_change(user, id, &action, |tx, _| {
            store::revoke_api_key(tx, id, name)
        })
    }

    pub fn delete_application(&self, user: &Identity, id: i64, version: i64) -> Result<Applied> {
        let action = format!("remove application {id}");
        self.change(user, &action, |tx| {
            preview::delete_application(tx, user, id, version)
        })
        .map(|(_, applied)| applied)
    }

    /// `keygate instructions` for one of `user`'s applications.
    pub fn instructions(&self, user: &Identity, id: i64) -> Result<(String, String)> {
        let row = self.application(user, id)?;
        let export = self.store.read(store::export)?;
        let loaded = apply::compile(&export, self.applier.allow_http)?;
        let text = instructions::render(&loaded, &row.application.name)
            .ok_or_else(|| ConsoleError::NotFound(format!("no application {id}")))?;
        Ok((row.application.name, text))
    }

    /// The token endpoint of a key manager (from its reviewed discovery document).
    pub fn token_endpoint(&self, key_manager: &str) -> Option<String> {
        self.store
            .read(|conn| store::get::<KeyManager>(conn, Doc::KeyManagers, key_manager))
            .ok()
            .and_then(|v| v.item.discovery.and_then(|d| d.token_endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("name", "shop-app_1.v2").is_ok());
        for bad in ["", "a b", "a/b", "é"] {
            assert!(check_name("name", bad).is_err(), "{bad}");
        }
    }
}
