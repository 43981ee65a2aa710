//! The console's store, behind one API whichever the backend: SQLite (the default, one file)
//! or PostgreSQL (several console replicas on one database, `--db postgres://…`). Both run the
//! same migrations (schema.rs) and the same SQL (db.rs renders the few dialect differences).
//! Every change is a transaction. Key managers, APIs and tiers are versioned documents (a row per
//! name with a `version` counter): an edit names the version it started from and is refused when
//! the row has moved on ([`ConsoleError::Conflict`]), so two browsers never overwrite each other
//! silently. Applications have the same counter; their client ids are a table whose primary key
//! is (key manager, client id), so a client id belongs to one application only.
//!
//! Callers run queries through [`Store::tx`], [`Store::preview`], [`Store::snapshot`] and
//! [`Store::read`], whose closures get a [`Db`], with the functions re-exported here
//! (`store.tx(|db| store::export(db))`); no caller names rusqlite or postgres.

mod apps;
pub mod db;
mod docs;
pub mod postgres;
mod schema;
mod sqlite;
mod state;

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

pub use apps::{
    add_api_key, add_client_id, application, applications, create_application, delete_application,
    remove_api_subscriptions, remove_client_id, remove_key_manager_client_ids, revoke_api_key,
    subscribe, touch_application, unsubscribe,
};
pub use db::Db;
pub use docs::{
    gateway, get, insert, key_managers, list, remove, set_devportal, set_gateway, update, Doc,
};
pub use state::{
    audit, audit_log, create_session, delete_session, directory_changes, directory_oldest,
    directory_seq, export, record_application, record_change, replace_all, session,
};

use super::model::{Application, KeyManager};

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
    backend: Backend,
    /// Random per store, part of every directory version (so versions of another store are 410).
    /// Replicas on one PostgreSQL database share it.
    pub store_id: String,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<postgres::Postgres>),
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
    /// Opens (creating) the SQLite store at `path` and runs the migrations it has not run yet.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = sqlite::open(path)?;
        let store = Store {
            backend: Backend::Sqlite(Mutex::new(conn)),
            store_id: String::new(),
        };
        store.init()
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`) and runs
    /// the migrations it has not run yet.
    pub fn open_postgres(url: &str) -> Result<Store> {
        let store = Store {
            backend: Backend::Postgres(Box::new(postgres::Postgres::connect(url)?)),
            store_id: String::new(),
        };
        store.init()
    }

    /// Opens `location`: a `postgres://` (or `postgresql://`) URL, else a SQLite file.
    pub fn open_location(location: &Path) -> Result<Store> {
        match location.to_str().filter(|l| postgres::is_url(l)) {
            Some(url) => Store::open_postgres(url),
            None => Store::open(location),
        }
    }

    /// The migrations and the store id, in one transaction.
    fn init(mut self) -> Result<Store> {
        self.store_id = self.tx(|db| {
            schema::migrate(db)?;
            let existing =
                db.query_opt("SELECT value FROM meta WHERE key = 'store_id'", db::args![])?;
            match existing {
                Some(row) => row.text(0),
                None => {
                    let id = random_token()?.chars().take(12).collect::<String>();
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
                        db::args![&id],
                    )?;
                    Ok(id)
                }
            }
        })?;
        Ok(self)
    }

    fn sqlite<T>(
        conn: &Mutex<rusqlite::Connection>,
        transaction: Option<bool>,
        f: impl FnOnce(&Db) -> Result<T>,
    ) -> Result<T> {
        let mut conn = conn
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?;
        let Some(commit) = transaction else {
            return f(&Db::sqlite(&conn));
        };
        let tx = conn.transaction()?;
        let value = f(&Db::sqlite(&tx));
        match value {
            Ok(value) if commit => {
                tx.commit()?;
                Ok(value)
            }
            other => {
                tx.rollback()?;
                other
            }
        }
    }

    /// Runs `f` in one transaction: committed when it returns Ok, rolled back otherwise.
    pub fn tx<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => Store::sqlite(conn, Some(true), f),
            Backend::Postgres(pg) => pg.run(true, false, f),
        }
    }

    /// Runs `f` in a transaction that is always rolled back (previews).
    pub fn preview<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => Store::sqlite(conn, Some(false), f),
            Backend::Postgres(pg) => pg.run(false, false, f),
        }
    }

    /// Runs `f` on one consistent state of the store, read only: its queries all see the same
    /// committed changes (the directory's version and its changes). SQLite: a transaction
    /// rolled back at the end; PostgreSQL: a read-only REPEATABLE READ transaction.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => Store::sqlite(conn, Some(false), f),
            Backend::Postgres(pg) => pg.run(false, true, f),
        }
    }

    /// Runs `f` for reads and small writes (audit entries, sessions): on SQLite outside a
    /// transaction, on PostgreSQL in one that is committed.
    pub fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => Store::sqlite(conn, None, f),
            Backend::Postgres(pg) => pg.run(true, false, f),
        }
    }
}
