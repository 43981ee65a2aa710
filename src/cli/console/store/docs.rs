//! The gateway settings and the versioned documents: key managers, APIs and tiers (a row per
//! name with a `version` counter; an edit names the version it started from).

use serde::{de::DeserializeOwned, Serialize};

use super::db::{args, Db, Row};
use super::{ConsoleError, KeyManagerRow, Result, Versioned};
use crate::cli::console::model::Gateway;

pub fn gateway(conn: &Db) -> Result<Option<Gateway>> {
    let body = conn.query_opt("SELECT body FROM gateway WHERE id = 1", args![])?;
    Ok(match body {
        Some(row) => Some(serde_json::from_str(&row.text(0)?)?),
        None => None,
    })
}

pub fn set_gateway(conn: &Db, gateway: &Gateway) -> Result<()> {
    let body = serde_json::to_string(gateway)?;
    conn.execute(
        "INSERT INTO gateway (id, body) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET body = excluded.body",
        args![&body],
    )?;
    Ok(())
}

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

fn versioned<T: DeserializeOwned>(row: &Row) -> Result<Versioned<T>> {
    Ok(Versioned {
        version: row.int(0)?,
        item: serde_json::from_str(&row.text(1)?)?,
    })
}

pub fn list<T: DeserializeOwned>(conn: &Db, doc: Doc) -> Result<Vec<Versioned<T>>> {
    let sql = format!(
        "SELECT version, body FROM {} ORDER BY position, name",
        doc.table()
    );
    conn.query(&sql, args![])?.iter().map(versioned).collect()
}

pub fn get<T: DeserializeOwned>(conn: &Db, doc: Doc, name: &str) -> Result<Versioned<T>> {
    let sql = format!("SELECT version, body FROM {} WHERE name = ?1", doc.table());
    match conn.query_opt(&sql, args![name])? {
        Some(row) => versioned(&row),
        None => Err(ConsoleError::NotFound(format!(
            "no {} named `{name}`",
            doc.what()
        ))),
    }
}

/// Adds a new document; refused when the name is taken.
pub fn insert<T: Serialize>(conn: &Db, doc: Doc, name: &str, item: &T) -> Result<()> {
    let exists = format!("SELECT 1 FROM {} WHERE name = ?1", doc.table());
    if conn.query_opt(&exists, args![name])?.is_some() {
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
    let body = serde_json::to_string(item)?;
    conn.execute(&sql, args![name, &body])?;
    Ok(())
}

/// Replaces a document if it is still at `version`.
pub fn update<T: Serialize>(conn: &Db, doc: Doc, name: &str, version: i64, item: &T) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET body = ?1, version = version + 1 WHERE name = ?2 AND version = ?3",
        doc.table()
    );
    let body = serde_json::to_string(item)?;
    let changed = conn.execute(&sql, args![&body, name, version])?;
    check_changed(conn, doc, name, changed)
}

/// Removes a document if it is still at `version`.
pub fn remove(conn: &Db, doc: Doc, name: &str, version: i64) -> Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE name = ?1 AND version = ?2",
        doc.table()
    );
    let changed = conn.execute(&sql, args![name, version])?;
    check_changed(conn, doc, name, changed)
}

fn check_changed(conn: &Db, doc: Doc, name: &str, changed: usize) -> Result<()> {
    if changed == 1 {
        return Ok(());
    }
    let sql = format!("SELECT version FROM {} WHERE name = ?1", doc.table());
    let current = conn.query_opt(&sql, args![name])?;
    Err(match current {
        Some(row) => ConsoleError::Conflict(format!(
            "the {} `{name}` was changed by someone else since you opened it (now at version \
             {}); nothing was saved: reload it and make your change again",
            doc.what(),
            row.int(0)?
        )),
        None => ConsoleError::NotFound(format!("no {} named `{name}`", doc.what())),
    })
}

pub fn key_managers(conn: &Db) -> Result<Vec<KeyManagerRow>> {
    conn.query(
        "SELECT version, devportal, body FROM key_managers ORDER BY position, name",
        args![],
    )?
    .iter()
    .map(|row| {
        Ok(KeyManagerRow {
            version: row.int(0)?,
            developer_portal: row.int(1)? != 0,
            key_manager: serde_json::from_str(&row.text(2)?)?,
        })
    })
    .collect()
}

pub fn set_devportal(conn: &Db, name: &str, version: i64, enabled: bool) -> Result<()> {
    let changed = conn.execute(
        "UPDATE key_managers SET devportal = ?1, version = version + 1
         WHERE name = ?2 AND version = ?3",
        args![enabled, name, version],
    )?;
    check_changed(conn, Doc::KeyManagers, name, changed)
}
