//! The console's store: SQLite (rusqlite, bundled), schema by numbered migrations, every change a
//! transaction. Key managers, APIs and tiers are versioned documents (a row per name with a
//! `version` counter): an edit names the version it started from and is refused when the row has
//! moved on ([`ConsoleError::Conflict`]), so two browsers never overwrite each other silently.
//! Applications have the same counter; their client ids are a table whose primary key is
//! (key manager, client id), so a client id belongs to one application only.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{de::DeserializeOwned, Serialize};

use super::model::{Api, Application, ClientId, Export, Gateway, KeyManager, Subscription, Tier};
use crate::config::{ApiKeyConfig, ApplicationState, Expiry, SubscriptionState};

/// The migrations, in order; `schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE gateway (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
     CREATE TABLE key_managers (name TEXT PRIMARY KEY, position INTEGER NOT NULL,
       version INTEGER NOT NULL, devportal INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL);
     CREATE TABLE apis (name TEXT PRIMARY KEY, position INTEGER NOT NULL,
       version INTEGER NOT NULL, body TEXT NOT NULL);
     CREATE TABLE tiers (name TEXT PRIMARY KEY, position INTEGER NOT NULL,
       version INTEGER NOT NULL, body TEXT NOT NULL);
     CREATE TABLE applications (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
       owner TEXT, version INTEGER NOT NULL, state TEXT NOT NULL);
     CREATE TABLE client_ids (key_manager TEXT NOT NULL, client_id TEXT NOT NULL,
       application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
       PRIMARY KEY (key_manager, client_id));
     CREATE TABLE subscriptions (application_id INTEGER NOT NULL
       REFERENCES applications(id) ON DELETE CASCADE, api TEXT NOT NULL, state TEXT NOT NULL,
       tier TEXT, PRIMARY KEY (application_id, api));
     CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
       actor TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL);
     CREATE TABLE directory_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL,
       name TEXT NOT NULL, body TEXT);
     CREATE TABLE sessions (id TEXT PRIMARY KEY, sub TEXT NOT NULL, name TEXT NOT NULL,
       admin INTEGER NOT NULL, csrf TEXT NOT NULL, expires INTEGER NOT NULL);",
    // 2: API keys of applications (the SHA-256 of the key only; a hash is in one application).
    "CREATE TABLE api_keys (application_id INTEGER NOT NULL
       REFERENCES applications(id) ON DELETE CASCADE, name TEXT NOT NULL,
       sha256 TEXT NOT NULL UNIQUE, expires TEXT, PRIMARY KEY (application_id, name));",
];

/// How many directory changes are kept for `/v1/changes` (older `since` values get 410).
pub const DIRECTORY_HISTORY: i64 = 1000;

/// Why a console operation did not happen. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleError {
    NotFound(String),
    Forbidden(String),
    /// The row changed since the form was opened.
    Conflict(String),
    /// A field's value is refused (by the console's checks or by the compiler).
    Invalid {
        field: String,
        message: String,
    },
    /// Discovery or another dependency failed.
    Upstream(String),
    Internal(String),
}

impl ConsoleError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConsoleError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ConsoleError::NotFound(_) => 404,
            ConsoleError::Forbidden(_) => 403,
            ConsoleError::Conflict(_) => 409,
            ConsoleError::Invalid { .. } => 422,
            ConsoleError::Upstream(_) => 502,
            ConsoleError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ConsoleError::NotFound(_) => "not_found",
            ConsoleError::Forbidden(_) => "forbidden",
            ConsoleError::Conflict(_) => "conflict",
            ConsoleError::Invalid { .. } => "invalid",
            ConsoleError::Upstream(_) => "upstream",
            ConsoleError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ConsoleError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::NotFound(m)
            | ConsoleError::Forbidden(m)
            | ConsoleError::Conflict(m)
            | ConsoleError::Upstream(m)
            | ConsoleError::Internal(m) => f.write_str(m),
            ConsoleError::Invalid { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

impl From<rusqlite::Error> for ConsoleError {
    fn from(err: rusqlite::Error) -> Self {
        ConsoleError::Internal(format!("store: {err}"))
    }
}

impl From<serde_json::Error> for ConsoleError {
    fn from(err: serde_json::Error) -> Self {
        ConsoleError::Internal(format!("store: {err}"))
    }
}

pub type Result<T> = std::result::Result<T, ConsoleError>;

/// One versioned row of key managers, APIs or tiers.
#[derive(Debug, Clone, Serialize)]
pub struct Versioned<T> {
    pub version: i64,
    #[serde(flatten)]
    pub item: T,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyManagerRow {
    pub version: i64,
    pub developer_portal: bool,
    #[serde(flatten)]
    pub key_manager: KeyManager,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplicationRow {
    pub id: i64,
    pub version: i64,
    #[serde(flatten)]
    pub application: Application,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub sub: String,
    pub name: String,
    pub admin: bool,
    pub csrf: String,
    pub expires: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Random per store, part of every directory version (so versions of another store are 410).
    pub store_id: String,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A random token (hex of 32 bytes from the OS).
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|err| ConsoleError::Internal(format!("no randomness: {err}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Store {
    /// Opens (creating) the store and runs the migrations it has not run yet.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path)
            .map_err(|err| ConsoleError::Internal(format!("{}: {err}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;")?;
        migrate(&mut conn)?;
        let tx = conn.transaction()?;
        let existing: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let store_id = match existing {
            Some(id) => id,
            None => {
                let id = random_token()?.chars().take(12).collect::<String>();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
                    params![id],
                )?;
                id
            }
        };
        tx.commit()?;
        Ok(Store {
            conn: Mutex::new(conn),
            store_id,
        })
    }

    /// Runs `f` in one transaction: committed when it returns Ok, rolled back otherwise.
    pub fn tx<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?;
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in a transaction that is always rolled back (previews).
    pub fn preview<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?;
        let tx = conn.transaction()?;
        let value = f(&tx);
        tx.rollback()?;
        value
    }

    /// Runs `f` on the connection outside a transaction (reads, audit entries).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?;
        f(&conn)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    )?;
    let tx = conn.transaction()?;
    let done: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= done {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            params![version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

// ---- gateway ---------------------------------------------------------------------------------

pub fn gateway(conn: &Connection) -> Result<Option<Gateway>> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM gateway WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    Ok(match body {
        Some(body) => Some(serde_json::from_str(&body)?),
        None => None,
    })
}

pub fn set_gateway(conn: &Connection, gateway: &Gateway) -> Result<()> {
    conn.execute(
        "INSERT INTO gateway (id, body) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET body = excluded.body",
        params![serde_json::to_string(gateway)?],
    )?;
    Ok(())
}

// ---- versioned documents: key managers, APIs, tiers ---------------------------------------------

/// The tables of versioned documents (never user input: the SQL names them).
#[derive(Debug, Clone, Copy)]
pub enum Doc {
    KeyManagers,
    Apis,
    Tiers,
}

impl Doc {
    fn table(self) -> &'static str {
        match self {
            Doc::KeyManagers => "key_managers",
            Doc::Apis => "apis",
            Doc::Tiers => "tiers",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Doc::KeyManagers => "key manager",
            Doc::Apis => "API",
            Doc::Tiers => "tier",
        }
    }
}

pub fn list<T: DeserializeOwned>(conn: &Connection, doc: Doc) -> Result<Vec<Versioned<T>>> {
    let sql = format!(
        "SELECT version, body FROM {} ORDER BY position, name",
        doc.table()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (version, body) = row?;
        out.push(Versioned {
            version,
            item: serde_json::from_str(&body)?,
        });
    }
    Ok(out)
}

pub fn get<T: DeserializeOwned>(conn: &Connection, doc: Doc, name: &str) -> Result<Versioned<T>> {
    let sql = format!("SELECT version, body FROM {} WHERE name = ?1", doc.table());
    let row: Option<(i64, String)> = conn
        .query_row(&sql, params![name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((version, body)) => Ok(Versioned {
            version,
            item: serde_json::from_str(&body)?,
        }),
        None => Err(ConsoleError::NotFound(format!(
            "no {} named `{name}`",
            doc.what()
        ))),
    }
}

/// Adds a new document; refused when the name is taken.
pub fn insert<T: Serialize>(conn: &Connection, doc: Doc, name: &str, item: &T) -> Result<()> {
    let exists = format!("SELECT 1 FROM {} WHERE name = ?1", doc.table());
    if conn
        .query_row(&exists, params![name], |_| Ok(()))
        .optional()?
        .is_some()
    {
        return Err(ConsoleError::invalid(
            "name",
            format!("a {} named `{name}` already exists", doc.what()),
        ));
    }
    let sql = format!(
        "INSERT INTO {t} (name, position, version, body)
         VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM {t}), 1, ?2)",
        t = doc.table()
    );
    conn.execute(&sql, params![name, serde_json::to_string(item)?])?;
    Ok(())
}

/// Replaces a document if it is still at `version`.
pub fn update<T: Serialize>(
    conn: &Connection,
    doc: Doc,
    name: &str,
    version: i64,
    item: &T,
) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET body = ?1, version = version + 1 WHERE name = ?2 AND version = ?3",
        doc.table()
    );
    let changed = conn.execute(&sql, params![serde_json::to_string(item)?, name, version])?;
    check_changed(conn, doc, name, changed)
}

/// Removes a document if it is still at `version`.
pub fn remove(conn: &Connection, doc: Doc, name: &str, version: i64) -> Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE name = ?1 AND version = ?2",
        doc.table()
    );
    let changed = conn.execute(&sql, params![name, version])?;
    check_changed(conn, doc, name, changed)
}

fn check_changed(conn: &Connection, doc: Doc, name: &str, changed: usize) -> Result<()> {
    if changed == 1 {
        return Ok(());
    }
    let current: Option<i64> = conn
        .query_row(
            &format!("SELECT version FROM {} WHERE name = ?1", doc.table()),
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    Err(match current {
        Some(current) => ConsoleError::Conflict(format!(
            "the {} `{name}` was changed by someone else since you opened it (now at version \
             {current}); nothing was saved: reload it and make your change again",
            doc.what()
        )),
        None => ConsoleError::NotFound(format!("no {} named `{name}`", doc.what())),
    })
}

pub fn key_managers(conn: &Connection) -> Result<Vec<KeyManagerRow>> {
    let mut stmt =
        conn.prepare("SELECT version, devportal, body FROM key_managers ORDER BY position, name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (version, devportal, body) = row?;
        out.push(KeyManagerRow {
            version,
            developer_portal: devportal != 0,
            key_manager: serde_json::from_str(&body)?,
        });
    }
    Ok(out)
}

pub fn set_devportal(conn: &Connection, name: &str, version: i64, enabled: bool) -> Result<()> {
    let changed = conn.execute(
        "UPDATE key_managers SET devportal = ?1, version = version + 1
         WHERE name = ?2 AND version = ?3",
        params![i64::from(enabled), name, version],
    )?;
    check_changed(conn, Doc::KeyManagers, name, changed)
}

// ---- applications -------------------------------------------------------------------------------

fn app_state(text: &str) -> ApplicationState {
    if text == "blocked" {
        ApplicationState::Blocked
    } else {
        ApplicationState::Active
    }
}

fn sub_state(text: &str) -> SubscriptionState {
    serde_json::from_value(serde_json::Value::String(text.to_string())).unwrap_or_default()
}

fn state_text<T: Serialize>(state: &T) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "active".to_string(),
    }
}

/// Every application (`owner`: only that owner's), in creation order.
pub fn applications(conn: &Connection, owner: Option<&str>) -> Result<Vec<ApplicationRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, version, name, owner, state FROM applications
         WHERE ?1 IS NULL OR owner = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![owner], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut heads = Vec::new();
    for row in rows {
        heads.push(row?);
    }
    let mut out = Vec::new();
    for (id, version, name, owner, state) in heads {
        out.push(ApplicationRow {
            id,
            version,
            application: Application {
                name,
                owner,
                state: app_state(&state),
                client_ids: client_ids(conn, id)?,
                subscriptions: subscriptions(conn, id)?,
                api_keys: api_keys(conn, id)?,
            },
        });
    }
    Ok(out)
}

fn client_ids(conn: &Connection, app: i64) -> Result<Vec<ClientId>> {
    let mut stmt = conn.prepare(
        "SELECT key_manager, client_id FROM client_ids WHERE application_id = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![app], |r| {
        Ok(ClientId {
            key_manager: r.get(0)?,
            client_id: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

fn subscriptions(conn: &Connection, app: i64) -> Result<Vec<Subscription>> {
    let mut stmt = conn.prepare(
        "SELECT api, state, tier FROM subscriptions WHERE application_id = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![app], |r| {
        Ok(Subscription {
            api: r.get(0)?,
            state: sub_state(&r.get::<_, String>(1)?),
            tier: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

fn api_keys(conn: &Connection, app: i64) -> Result<Vec<ApiKeyConfig>> {
    let mut stmt = conn.prepare(
        "SELECT name, sha256, expires FROM api_keys WHERE application_id = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![app], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, sha256, expires) = row?;
        out.push(ApiKeyConfig {
            name,
            sha256,
            expires: expires.map(|text| expiry_from_text(&text)),
        });
    }
    Ok(out)
}

/// An expiry as stored: Unix seconds as digits, else the RFC 3339 text.
fn expiry_from_text(text: &str) -> Expiry {
    match text.parse::<u64>() {
        Ok(seconds) => Expiry::Unix(seconds),
        Err(_) => Expiry::Text(text.to_string()),
    }
}

fn expiry_text(expiry: &Expiry) -> String {
    match expiry {
        Expiry::Unix(seconds) => seconds.to_string(),
        Expiry::Text(text) => text.clone(),
    }
}

/// Adds an API key (by hash) to an application; a name is used once per application and a
/// hash once in the whole store.
pub fn add_api_key(conn: &Connection, app: i64, key: &ApiKeyConfig) -> Result<()> {
    let named = conn
        .query_row(
            "SELECT 1 FROM api_keys WHERE application_id = ?1 AND name = ?2",
            params![app, key.name],
            |_| Ok(()),
        )
        .optional()?;
    if named.is_some() {
        return Err(ConsoleError::invalid(
            "name",
            format!(
                "this application already has an API key named `{}`",
                key.name
            ),
        ));
    }
    conn.execute(
        "INSERT INTO api_keys (application_id, name, sha256, expires) VALUES (?1, ?2, ?3, ?4)",
        params![
            app,
            key.name,
            key.sha256,
            key.expires.as_ref().map(expiry_text)
        ],
    )
    .map_err(|_| ConsoleError::invalid("sha256", "this API key is already in an application"))?;
    touch_application(conn, app, None)
}

/// Revokes (removes) an application's API key by name.
pub fn revoke_api_key(conn: &Connection, app: i64, name: &str) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM api_keys WHERE application_id = ?1 AND name = ?2",
        params![app, name],
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
pub fn application(conn: &Connection, id: i64, owner: Option<&str>) -> Result<ApplicationRow> {
    let row: Option<(i64, String, Option<String>, String)> = conn
        .query_row(
            "SELECT version, name, owner, state FROM applications WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((version, name, app_owner, state)) = row else {
        return Err(ConsoleError::NotFound(format!("no application {id}")));
    };
    if owner.is_some() && owner != app_owner.as_deref() {
        return Err(ConsoleError::NotFound(format!("no application {id}")));
    }
    Ok(ApplicationRow {
        id,
        version,
        application: Application {
            name,
            owner: app_owner,
            state: app_state(&state),
            client_ids: client_ids(conn, id)?,
            subscriptions: subscriptions(conn, id)?,
            api_keys: api_keys(conn, id)?,
        },
    })
}

pub fn create_application(conn: &Connection, name: &str, owner: &str) -> Result<i64> {
    let taken = conn
        .query_row(
            "SELECT 1 FROM applications WHERE name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?;
    if taken.is_some() {
        return Err(ConsoleError::invalid(
            "name",
            format!("an application named `{name}` already exists; choose another name"),
        ));
    }
    conn.execute(
        "INSERT INTO applications (name, owner, version, state) VALUES (?1, ?2, 1, 'active')",
        params![name, owner],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Bumps an application's version; with `expected`, only from that version.
pub fn touch_application(conn: &Connection, id: i64, expected: Option<i64>) -> Result<()> {
    let changed = conn.execute(
        "UPDATE applications SET version = version + 1 WHERE id = ?1 AND (?2 IS NULL OR version = ?2)",
        params![id, expected],
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

pub fn delete_application(conn: &Connection, id: i64, version: i64) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM applications WHERE id = ?1 AND version = ?2",
        params![id, version],
    )?;
    if changed == 1 {
        Ok(())
    } else {
        Err(ConsoleError::Conflict(format!(
            "application {id} was changed since you opened it; nothing was removed"
        )))
    }
}

pub fn add_client_id(
    conn: &Connection,
    app: i64,
    key_manager: &str,
    client_id: &str,
) -> Result<()> {
    let holder: Option<i64> = conn
        .query_row(
            "SELECT application_id FROM client_ids WHERE key_manager = ?1 AND client_id = ?2",
            params![key_manager, client_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(holder) = holder {
        let message = if holder == app {
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
        params![key_manager, client_id, app],
    )?;
    touch_application(conn, app, None)
}

pub fn remove_client_id(
    conn: &Connection,
    app: i64,
    key_manager: &str,
    client_id: &str,
) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM client_ids WHERE application_id = ?1 AND key_manager = ?2 AND client_id = ?3",
        params![app, key_manager, client_id],
    )?;
    if changed == 0 {
        return Err(ConsoleError::NotFound(
            "no such client ID in this application".into(),
        ));
    }
    touch_application(conn, app, None)
}

pub fn subscribe(conn: &Connection, app: i64, api: &str, tier: Option<&str>) -> Result<()> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM subscriptions WHERE application_id = ?1 AND api = ?2",
            params![app, api],
            |_| Ok(()),
        )
        .optional()?;
    if exists.is_some() {
        return Err(ConsoleError::invalid(
            "api",
            format!("this application is already subscribed to `{api}`"),
        ));
    }
    conn.execute(
        "INSERT INTO subscriptions (application_id, api, state, tier) VALUES (?1, ?2, 'active', ?3)",
        params![app, api, tier],
    )?;
    touch_application(conn, app, None)
}

pub fn unsubscribe(conn: &Connection, app: i64, api: &str) -> Result<()> {
    let changed = conn.execute(
        "DELETE FROM subscriptions WHERE application_id = ?1 AND api = ?2",
        params![app, api],
    )?;
    if changed == 0 {
        return Err(ConsoleError::NotFound(format!("not subscribed to `{api}`")));
    }
    touch_application(conn, app, None)
}

/// Removes every client ID of a key manager (the key manager is being removed); returns the
/// applications that held one, each with its version bumped.
pub fn remove_key_manager_client_ids(conn: &Connection, key_manager: &str) -> Result<Vec<i64>> {
    let held = ids(
        conn,
        "SELECT DISTINCT application_id FROM client_ids WHERE key_manager = ?1 ORDER BY 1",
        key_manager,
    )?;
    conn.execute(
        "DELETE FROM client_ids WHERE key_manager = ?1",
        params![key_manager],
    )?;
    for id in &held {
        touch_application(conn, *id, None)?;
    }
    Ok(held)
}

/// Removes every subscription to an API (the API is being removed); returns the applications
/// that had one, each with its version bumped.
pub fn remove_api_subscriptions(conn: &Connection, api: &str) -> Result<Vec<i64>> {
    let held = ids(
        conn,
        "SELECT DISTINCT application_id FROM subscriptions WHERE api = ?1 ORDER BY 1",
        api,
    )?;
    conn.execute("DELETE FROM subscriptions WHERE api = ?1", params![api])?;
    for id in &held {
        touch_application(conn, *id, None)?;
    }
    Ok(held)
}

fn ids(conn: &Connection, sql: &str, name: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params![name], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

// ---- the whole state ----------------------------------------------------------------------------

/// The store as a declaration.
pub fn export(conn: &Connection) -> Result<Export> {
    Ok(Export {
        gateway: gateway(conn)?.unwrap_or_default(),
        key_managers: key_managers(conn)?
            .into_iter()
            .map(|row| row.key_manager)
            .collect(),
        tiers: list::<Tier>(conn, Doc::Tiers)?
            .into_iter()
            .map(|v| v.item)
            .collect(),
        apis: list::<Api>(conn, Doc::Apis)?
            .into_iter()
            .map(|v| v.item)
            .collect(),
        applications: applications(conn, None)?
            .into_iter()
            .map(|row| row.application)
            .collect(),
    })
}

/// Replaces everything with a declaration's contents (import). Developer-portal flags of key
/// managers that stay are kept. The directory history restarts with one upsert per application.
pub fn replace_all(conn: &Connection, export: &Export) -> Result<()> {
    let enabled: Vec<String> = key_managers(conn)?
        .into_iter()
        .filter(|row| row.developer_portal)
        .map(|row| row.key_manager.name)
        .collect();
    let before: Vec<String> = applications(conn, None)?
        .into_iter()
        .map(|row| row.application.name)
        .collect();
    conn.execute_batch(
        "DELETE FROM api_keys; DELETE FROM subscriptions; DELETE FROM client_ids;
         DELETE FROM applications;
         DELETE FROM key_managers; DELETE FROM apis; DELETE FROM tiers;",
    )?;
    set_gateway(conn, &export.gateway)?;
    for km in &export.key_managers {
        insert(conn, Doc::KeyManagers, &km.name, km)?;
        if enabled.contains(&km.name) {
            conn.execute(
                "UPDATE key_managers SET devportal = 1 WHERE name = ?1",
                params![km.name],
            )?;
        }
    }
    for tier in &export.tiers {
        insert(conn, Doc::Tiers, &tier.name, tier)?;
    }
    for api in &export.apis {
        insert(conn, Doc::Apis, &api.name, api)?;
    }
    for app in &export.applications {
        let owner = app.owner.clone();
        conn.execute(
            "INSERT INTO applications (name, owner, version, state) VALUES (?1, ?2, 1, ?3)",
            params![app.name, owner, state_text(&app.state)],
        )
        .map_err(|_| {
            ConsoleError::invalid("applications", format!("`{}` appears twice", app.name))
        })?;
        let id = conn.last_insert_rowid();
        for c in &app.client_ids {
            conn.execute(
                "INSERT INTO client_ids (key_manager, client_id, application_id) VALUES (?1, ?2, ?3)",
                params![c.key_manager, c.client_id, id],
            )
            .map_err(|_| {
                ConsoleError::invalid(
                    "client_ids",
                    format!(
                        "client ID `{}` of `{}` is in two applications",
                        c.client_id, c.key_manager
                    ),
                )
            })?;
        }
        for s in &app.subscriptions {
            conn.execute(
                "INSERT INTO subscriptions (application_id, api, state, tier) VALUES (?1, ?2, ?3, ?4)",
                params![id, s.api, state_text(&s.state), s.tier],
            )?;
        }
        for k in &app.api_keys {
            conn.execute(
                "INSERT INTO api_keys (application_id, name, sha256, expires) VALUES (?1, ?2, ?3, ?4)",
                params![id, k.name, k.sha256, k.expires.as_ref().map(expiry_text)],
            )
            .map_err(|_| {
                ConsoleError::invalid(
                    "api_keys",
                    format!("API key `{}` of `{}` appears twice", k.name, app.name),
                )
            })?;
        }
    }
    for name in before {
        if !export.applications.iter().any(|a| a.name == name) {
            record_change(conn, "remove", &name, None)?;
        }
    }
    for app in &export.applications {
        record_change(conn, "upsert", &app.name, Some(app))?;
    }
    Ok(())
}

// ---- audit ----------------------------------------------------------------------------------------

pub fn audit(conn: &Connection, actor: &str, action: &str, outcome: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, outcome) VALUES (?1, ?2, ?3, ?4)",
        params![now(), actor, action, outcome],
    )?;
    Ok(())
}

pub fn audit_log(conn: &Connection, limit: i64) -> Result<Vec<AuditEntry>> {
    let mut stmt =
        conn.prepare("SELECT at, actor, action, outcome FROM audit ORDER BY id DESC LIMIT ?1")?;
    let rows = stmt.query_map(params![limit], |r| {
        Ok(AuditEntry {
            at: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            outcome: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

// ---- the application directory --------------------------------------------------------------

/// Records one change of an application for `/v1/changes` and trims the history.
pub fn record_change(
    conn: &Connection,
    op: &str,
    name: &str,
    app: Option<&Application>,
) -> Result<()> {
    let body = match app {
        Some(app) => Some(serde_json::to_string(&app.config())?),
        None => None,
    };
    conn.execute(
        "INSERT INTO directory_log (op, name, body) VALUES (?1, ?2, ?3)",
        params![op, name, body],
    )?;
    conn.execute(
        "DELETE FROM directory_log WHERE seq <= (SELECT MAX(seq) FROM directory_log) - ?1",
        params![DIRECTORY_HISTORY],
    )?;
    Ok(())
}

/// Records the application's current state (upsert), by id.
pub fn record_application(conn: &Connection, id: i64) -> Result<()> {
    let row = application(conn, id, None)?;
    record_change(
        conn,
        "upsert",
        &row.application.name,
        Some(&row.application),
    )
}

/// The newest change's sequence number (0: none yet).
pub fn directory_seq(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM directory_log", [], |r| {
            r.get(0)
        })?,
    )
}

/// The oldest sequence number still kept (None: empty history).
pub fn directory_oldest(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT MIN(seq) FROM directory_log", [], |r| r.get(0))?)
}

/// Changes after `since`, in order: (op, name, application JSON).
pub fn directory_changes(
    conn: &Connection,
    since: i64,
) -> Result<Vec<(String, String, Option<String>)>> {
    let mut stmt =
        conn.prepare("SELECT op, name, body FROM directory_log WHERE seq > ?1 ORDER BY seq")?;
    let rows = stmt.query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

// ---- sessions ------------------------------------------------------------------------------------

pub fn create_session(
    conn: &Connection,
    sub: &str,
    name: &str,
    admin: bool,
    ttl_seconds: i64,
) -> Result<Session> {
    let session = Session {
        id: random_token()?,
        sub: sub.to_string(),
        name: name.to_string(),
        admin,
        csrf: random_token()?,
        expires: now() + ttl_seconds,
    };
    conn.execute("DELETE FROM sessions WHERE expires < ?1", params![now()])?;
    conn.execute(
        "INSERT INTO sessions (id, sub, name, admin, csrf, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            session.id,
            session.sub,
            session.name,
            i64::from(session.admin),
            session.csrf,
            session.expires
        ],
    )?;
    Ok(session)
}

/// A session that has not expired.
pub fn session(conn: &Connection, id: &str) -> Result<Option<Session>> {
    Ok(conn
        .query_row(
            "SELECT id, sub, name, admin, csrf, expires FROM sessions WHERE id = ?1 AND expires > ?2",
            params![id, now()],
            |r| {
                Ok(Session {
                    id: r.get(0)?,
                    sub: r.get(1)?,
                    name: r.get(2)?,
                    admin: r.get::<_, i64>(3)? != 0,
                    csrf: r.get(4)?,
                    expires: r.get(5)?,
                })
            },
        )
        .optional()?)
}

pub fn delete_session(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
    Ok(())
}
