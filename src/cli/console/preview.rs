//! What a change would do, before it is applied (docs/console.md, "Preview"): each change below
//! is one function run in the change's transaction, by the operation that applies it
//! ([`Console::change`]) and by its preview ([`Console::preview`], rolled back), so the preview
//! is exactly what applying would do: the same checks, the same compiler, the same refusals.
//! A preview answers who gains or loses what ([`super::apply::access_changes`]).

use super::auth::Identity;
use super::model::{Api, KeyManager, Tier};
use super::ops::{check_name, require_admin, Console};
use super::store::{self, ConsoleError, Db, Doc, Result};

/// A key manager's editable fields.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct KeyManagerEdit {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
}

pub fn edit_key_manager(tx: &Db, name: &str, version: i64, edit: &KeyManagerEdit) -> Result<()> {
    let mut km = store::get::<KeyManager>(tx, Doc::KeyManagers, name)?.item;
    km.description = edit.description.clone().filter(|d| !d.is_empty());
    km.environments = edit.environments.clone();
    km.audiences = edit.audiences.clone();
    store::update(tx, Doc::KeyManagers, name, version, &km)
}

/// Removes a key manager and every client ID of it (those applications lose it).
pub fn remove_key_manager(tx: &Db, name: &str, version: i64) -> Result<()> {
    store::remove(tx, Doc::KeyManagers, name, version)?;
    for id in store::remove_key_manager_client_ids(tx, name)? {
        store::record_application(tx, id)?;
    }
    Ok(())
}

/// Removes an API and every subscription to it (those applications lose it).
pub fn remove_api(tx: &Db, name: &str, version: i64) -> Result<()> {
    store::remove(tx, Doc::Apis, name, version)?;
    for id in store::remove_api_subscriptions(tx, name)? {
        store::record_application(tx, id)?;
    }
    Ok(())
}

/// Adds a tier (`version` None) or changes one still at `version`.
pub fn save_tier(tx: &Db, version: Option<i64>, tier: &Tier) -> Result<()> {
    check_name("name", &tier.name)?;
    match version {
        Some(version) => store::update(tx, Doc::Tiers, &tier.name, version, tier),
        None => store::insert(tx, Doc::Tiers, &tier.name, tier),
    }
}

pub fn remove_tier(tx: &Db, name: &str, version: i64) -> Result<()> {
    store::remove(tx, Doc::Tiers, name, version)
}

/// Removes one of `user`'s applications.
pub fn delete_application(tx: &Db, user: &Identity, id: i64, version: i64) -> Result<()> {
    let row = store::application(tx, id, Some(&user.sub))?;
    store::delete_application(tx, id, version)?;
    store::record_change(tx, "remove", &row.application.name, None)
}

/// Subscribes one of `user`'s applications to an API.
pub fn subscribe(tx: &Db, user: &Identity, id: i64, api: &str, tier: Option<&str>) -> Result<()> {
    store::application(tx, id, Some(&user.sub))?;
    store::get::<Api>(tx, Doc::Apis, api)
        .map_err(|_| ConsoleError::invalid("api", format!("no API named `{api}`")))?;
    store::subscribe(tx, id, api, tier.filter(|t| !t.is_empty()))?;
    store::record_application(tx, id)
}

/// Unsubscribes one of `user`'s applications from an API.
pub fn unsubscribe(tx: &Db, user: &Identity, id: i64, api: &str) -> Result<()> {
    store::application(tx, id, Some(&user.sub))?;
    store::unsubscribe(tx, id, api)?;
    store::record_application(tx, id)
}

impl Console {
    pub fn preview_edit_key_manager(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
        edit: &KeyManagerEdit,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        self.preview(|tx| edit_key_manager(tx, name, version, edit))
    }

    pub fn preview_remove_key_manager(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        self.preview(|tx| remove_key_manager(tx, name, version))
    }

    pub fn preview_remove_api(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        self.preview(|tx| remove_api(tx, name, version))
    }

    pub fn preview_save_tier(
        &self,
        user: &Identity,
        version: Option<i64>,
        tier: &Tier,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        self.preview(|tx| save_tier(tx, version, tier))
    }

    pub fn preview_remove_tier(
        &self,
        user: &Identity,
        name: &str,
        version: i64,
    ) -> Result<Vec<String>> {
        require_admin(user)?;
        self.preview(|tx| remove_tier(tx, name, version))
    }

    pub fn preview_delete_application(
        &self,
        user: &Identity,
        id: i64,
        version: i64,
    ) -> Result<Vec<String>> {
        self.preview(|tx| delete_application(tx, user, id, version))
    }

    pub fn preview_subscribe(
        &self,
        user: &Identity,
        id: i64,
        api: &str,
        tier: Option<&str>,
    ) -> Result<Vec<String>> {
        self.preview(|tx| subscribe(tx, user, id, api, tier))
    }

    pub fn preview_unsubscribe(&self, user: &Identity, id: i64, api: &str) -> Result<Vec<String>> {
        self.preview(|tx| unsubscribe(tx, user, id, api))
    }

    /// Changes a tier's limit (the subscriptions with it get the new one).
    pub fn update_tier(
        &self,
        user: &Identity,
        version: i64,
        tier: Tier,
    ) -> Result<super::apply::Applied> {
        require_admin(user)?;
        let action = format!("edit tier {}", tier.name);
        self.change(user, &action, |tx| save_tier(tx, Some(version), &tier))
            .map(|(_, applied)| applied)
    }
}
