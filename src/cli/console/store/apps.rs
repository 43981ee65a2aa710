//! Applications and what they hold: client IDs (primary key (key manager, client id): a client
//! ID belongs to one application only), subscriptions and API keys (by SHA-256).

use serde::Serialize;

use super::db::{args, Db};
use super::{ApplicationRow, ConsoleError, Result};
use crate::cli::console::model::{Application, ClientId, Subscription};
use crate::config::{ApiKeyConfig, ApplicationState, Expiry, SubscriptionState};

pub(super) fn app_state(text: &str) -> ApplicationState {
    if text == "blocked" {
        ApplicationState::Blocked
    } else {
        ApplicationState::Active
    }
}

fn sub_state(text: &str) -> SubscriptionState {
    serde_json::from_value(serde_json::Value::String(text.to_string())).unwrap_or_default()
}

pub(super) fn state_text<T: Serialize>(state: &T) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "active".to_string(),
    }
}

fn row_of(
    conn: &Db,
    id: i64,
    version: i64,
    name: String,
    owner: Option<String>,
    state: &str,
) -> Result<ApplicationRow> {
    Ok(ApplicationRow {
        id,
        version,
        application: Application {
            name,
            owner,
            state: app_state(state),
            client_ids: client_ids(conn, id)?,
            subscriptions: subscriptions(conn, id)?,
            api_keys: api_keys(conn, id)?,
        },
    })
}

/// Every application (`owner`: only that owner's), in creation order.
pub fn applications(conn: &Db, owner: Option<&str>) -> Result<Vec<ApplicationRow>> {
    let heads = conn.query(
        "SELECT id, version, name, owner, state FROM applications
         WHERE CAST(?1 AS TEXT) IS NULL OR owner = ?1 ORDER BY id",
        args![owner],
    )?;
    heads
        .iter()
        .map(|r| {
            row_of(
                conn,
                r.int(0)?,
                r.int(1)?,
                r.text(2)?,
                r.opt_text(3)?,
                &r.text(4)?,
            )
        })
        .collect()
}

fn client_ids(conn: &Db, app: i64) -> Result<Vec<ClientId>> {
    conn.query(
        "SELECT key_manager, client_id FROM client_ids WHERE application_id = ?1 ORDER BY rowid",
        args![app],
    )?
    .iter()
    .map(|r| {
        Ok(ClientId {
            key_manager: r.text(0)?,
            client_id: r.text(1)?,
        })
    })
    .collect()
}

fn subscriptions(conn: &Db, app: i64) -> Result<Vec<Subscription>> {
    conn.query(
        "SELECT api, state, tier FROM subscriptions WHERE application_id = ?1 ORDER BY rowid",
        args![app],
    )?
    .iter()
    .map(|r| {
        Ok(Subscription {
            api: r.text(0)?,
            state: sub_state(&r.text(1)?),
            tier: r.opt_text(2)?,
        })
    })
    .collect()
}

fn api_keys(conn: &Db, app: i64) -> Result<Vec<ApiKeyConfig>> {
    conn.query(
        "SELECT name, sha256, expires FROM api_keys WHERE application_id = ?1 ORDER BY rowid",
        args![app],
    )?
    .iter()
    .map(|r| {
        Ok(ApiKeyConfig {
            name: r.text(0)?,
            sha256: r.text(1)?,
            expires: r.opt_text(2)?.map(|text| expiry_from_text(&text)),
        })
    })
    .collect()
}

/// An expiry as stored: Unix seconds as digits, else the RFC 3339 text.
fn expiry_from_text(text: &str) -> Expiry {
    match text.parse::<u64>() {
        Ok(seconds) => Expiry::Unix(seconds),
        Err(_) => Expiry::Text(text.to_string()),
    }
}

pub(super) fn expiry_text(expiry: &Expiry) -> String {
    match expiry {
        Expiry::Unix(seconds) => seconds.to_string(),
        Expiry::Text(text) => text.clone(),
    }
}

/// Adds an API key (by hash) to an application; a name is used once per application and a
/// hash once in the whole store.
pub fn add_api_key(conn: &Db, app: i64, key: &ApiKeyConfig) -> Result<()> {
    let named = conn.query_opt(
        "SELECT 1 FROM api_keys WHERE application_id = ?1 AND name = ?2",
        args![app, &key.name],
    )?;
    if named.is_some() {
        return Err(ConsoleError::invalid(
            "name",
            format!(
                "this application already has an API key named `{}`",
                key.name
            ),
        ));
    }
    let expires = key.expires.as_ref().map(expiry_text);
    conn.execute(
        "INSERT INTO api_keys (application_id, name, sha256, expires) VALUES (?1, ?2, ?3, ?4)",
        args![app, &key.name, &key.sha256, &expires],
    )
    .map_err(|_| ConsoleError::invalid("sha256", "this API key is already in an application"))?;
    touch_application(conn, app, None)
}

/// Revokes (removes) an application's API key by name.
pub fn revoke_api_key(conn: &Db, app: i64, name: &str) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM api_keys WHERE application_id = ?1 AND name = ?2",
        args![app, name],
    )?;
    if changed == 0 {
        return Err(ConsoleError::NotFound(format!(
            "no API key named `{name}` in this application"
        )));
    }
    touch_application(conn, app, None)
}

/// One application, only for its owner (`owner: None`: any, for administrators). Another
/// owner's application is "not found", so ids cannot be probed.
pub fn application(conn: &Db, id: i64, owner: Option<&str>) -> Result<ApplicationRow> {
    let Some(r) = conn.query_opt(
        "SELECT version, name, owner, state FROM applications WHERE id = ?1",
        args![id],
    )?
    else {
        return Err(ConsoleError::NotFound(format!("no application {id}")));
    };
    let app_owner = r.opt_text(2)?;
    if owner.is_some() && owner != app_owner.as_deref() {
        return Err(ConsoleError::NotFound(format!("no application {id}")));
    }
    row_of(conn, id, r.int(0)?, r.text(1)?, app_owner, &r.text(3)?)
}

pub fn create_application(conn: &Db, name: &str, owner: &str) -> Result<i64> {
    let taken = conn.query_opt("SELECT 1 FROM applications WHERE name = ?1", args![name])?;
    if taken.is_some() {
        return Err(ConsoleError::invalid(
            "name",
            format!("an application named `{name}` already exists; choose another name"),
        ));
    }
    conn.query_one(
        "INSERT INTO applications (name, owner, version, state) VALUES (?1, ?2, 1, 'active')
         RETURNING id",
        args![name, owner],
    )?
    .int(0)
}

/// Bumps an application's version; with `expected`, only from that version.
pub fn touch_application(conn: &Db, id: i64, expected: Option<i64>) -> Result<()> {
    let changed = conn.execute(
        "UPDATE applications SET version = version + 1 WHERE id = ?1
         AND (CAST(?2 AS INTEGER) IS NULL OR version = ?2)",
        args![id, expected],
    )?;
    if changed == 1 {
        Ok(())
    } else {
        Err(ConsoleError::Conflict(format!(
            "application {id} was changed since you opened it; nothing was saved: reload it and \
             make your change again"
        )))
    }
}

pub fn delete_application(conn: &Db, id: i64, version: i64) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM applications WHERE id = ?1 AND version = ?2",
        args![id, version],
    )?;
    if changed == 1 {
        Ok(())
    } else {
        Err(ConsoleError::Conflict(format!(
            "application {id} was changed since you opened it; nothing was removed"
        )))
    }
}

pub fn add_client_id(conn: &Db, app: i64, key_manager: &str, client_id: &str) -> Result<()> {
    let holder = conn.query_opt(
        "SELECT application_id FROM client_ids WHERE key_manager = ?1 AND client_id = ?2",
        args![key_manager, client_id],
    )?;
    if let Some(holder) = holder {
        let message = if holder.int(0)? == app {
            "this client ID is already in this application".to_string()
        } else {
            format!(
                "client ID `{client_id}` of key manager `{key_manager}` already belongs to \
                 another application; a client ID can be used in one application only"
            )
        };
        return Err(ConsoleError::invalid("client_id", message));
    }
    conn.execute(
        "INSERT INTO client_ids (key_manager, client_id, application_id) VALUES (?1, ?2, ?3)",
        args![key_manager, client_id, app],
    )?;
    touch_application(conn, app, None)
}

pub fn remove_client_id(conn: &Db, app: i64, key_manager: &str, client_id: &str) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM client_ids WHERE application_id = ?1 AND key_manager = ?2 AND client_id = ?3",
        args![app, key_manager, client_id],
    )?;
    if changed == 0 {
        return Err(ConsoleError::NotFound(
            "no such client ID in this application".into(),
        ));
    }
    touch_application(conn, app, None)
}

pub fn subscribe(conn: &Db, app: i64, api: &str, tier: Option<&str>) -> Result<()> {
    let exists = conn.query_opt(
        "SELECT 1 FROM subscriptions WHERE application_id = ?1 AND api = ?2",
        args![app, api],
    )?;
    if exists.is_some() {
        return Err(ConsoleError::invalid(
            "api",
            format!("this application is already subscribed to `{api}`"),
        ));
    }
    conn.execute(
        "INSERT INTO subscriptions (application_id, api, state, tier) VALUES (?1, ?2, 'active', ?3)",
        args![app, api, tier],
    )?;
    touch_application(conn, app, None)
}

pub fn unsubscribe(conn: &Db, app: i64, api: &str) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM subscriptions WHERE application_id = ?1 AND api = ?2",
        args![app, api],
    )?;
    if changed == 0 {
        return Err(ConsoleError::NotFound(format!("not subscribed to `{api}`")));
    }
    touch_application(conn, app, None)
}

/// Removes every client ID of a key manager (the key manager is being removed); returns the
/// applications that held one, each with its version bumped.
pub fn remove_key_manager_client_ids(conn: &Db, key_manager: &str) -> Result<Vec<i64>> {
    let held = ids(
        conn,
        "SELECT DISTINCT application_id FROM client_ids WHERE key_manager = ?1 ORDER BY 1",
        key_manager,
    )?;
    conn.execute(
        "DELETE FROM client_ids WHERE key_manager = ?1",
        args![key_manager],
    )?;
    for id in &held {
        touch_application(conn, *id, None)?;
    }
    Ok(held)
}

/// Removes every subscription to an API (the API is being removed); returns the applications
/// that had one, each with its version bumped.
pub fn remove_api_subscriptions(conn: &Db, api: &str) -> Result<Vec<i64>> {
    let held = ids(
        conn,
        "SELECT DISTINCT application_id FROM subscriptions WHERE api = ?1 ORDER BY 1",
        api,
    )?;
    conn.execute("DELETE FROM subscriptions WHERE api = ?1", args![api])?;
    for id in &held {
        touch_application(conn, *id, None)?;
    }
    Ok(held)
}

fn ids(conn: &Db, sql: &str, name: &str) -> Result<Vec<i64>> {
    conn.query(sql, args![name])?
        .iter()
        .map(|row| row.int(0))
        .collect()
}
