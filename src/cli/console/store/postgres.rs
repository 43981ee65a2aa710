//! The PostgreSQL backend (the sync `postgres` crate) for several console replicas on one
//! database: every store call is one transaction (READ COMMITTED) on the process's connection,
//! reconnected when it was lost. Versioned edits conflict rather than overwrite because the
//! `UPDATE … WHERE version = ?` of the second writer waits for the first one's row lock and then
//! matches no row; a unique key two replicas insert at once fails one of them, reported as a
//! conflict. The connection is plain TCP or a Unix socket (no TLS): keep the database on a
//! private network or the same host.

use std::error::Error;
use std::sync::Mutex;

use ::postgres::error::SqlState;
use ::postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use ::postgres::{Client, IsolationLevel, NoTls, Transaction};
use bytes::BytesMut;

use super::db::{Db, Lock, Param, Row, Value};
use super::{ConsoleError, Result};

/// Whether a `--db` value names a PostgreSQL database rather than a SQLite file.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The advisory lock keys (any two constants of this application).
fn lock_key(lock: Lock) -> i64 {
    match lock {
        Lock::Migrations => 0x6b67_0001,
        Lock::Directory => 0x6b67_0002,
    }
}

impl From<::postgres::Error> for ConsoleError {
    fn from(err: ::postgres::Error) -> Self {
        let code = err.code();
        if code == Some(&SqlState::UNIQUE_VIOLATION)
            || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            || code == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        {
            return ConsoleError::Conflict(
                "someone else made a conflicting change at the same time; nothing was saved: \
                 reload and make your change again"
                    .into(),
            );
        }
        match err.as_db_error() {
            Some(db) => {
                ConsoleError::Internal(format!("store: {}: {}", db.severity(), db.message()))
            }
            None => ConsoleError::Internal(format!("store: {err}")),
        }
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                _ => Err(format!("an integer given for a parameter of type {ty}").into()),
            },
            Param::Text(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `?N` placeholders as PostgreSQL's `$N` (the store's SQL has no `?` anywhere else).
pub fn placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

pub fn execute(tx: &mut Transaction<'_>, sql: &str, params: &[Param<'_>]) -> Result<usize> {
    let changed = tx.execute(placeholders(sql).as_str(), &refs(params))?;
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
}

pub fn query(tx: &mut Transaction<'_>, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
    let rows = tx.query(placeholders(sql).as_str(), &refs(params))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)?
                    .map(|v| Value::Int(i64::from(v))),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)?
                    .map(|v| Value::Int(i64::from(v))),
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)?
                    .map(|v| Value::Int(i64::from(v))),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    row.try_get::<_, Option<String>>(i)?.map(Value::Text)
                }
                ref other => {
                    return Err(ConsoleError::Internal(format!(
                        "store: column {i} has the unexpected type {other}"
                    )))
                }
            };
            values.push(value.unwrap_or(Value::Null));
        }
        out.push(Row(values));
    }
    Ok(out)
}

pub fn batch(tx: &mut Transaction<'_>, sql: &str) -> Result<()> {
    Ok(tx.batch_execute(sql)?)
}

pub fn lock(tx: &mut Transaction<'_>, lock: Lock) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(lock)])?;
    Ok(())
}

/// The process's connection to the database at `url`.
pub struct Postgres {
    url: String,
    client: Mutex<Option<Client>>,
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres> {
        let pg = Postgres {
            url: url.to_string(),
            client: Mutex::new(None),
        };
        let client = pg.new_client()?;
        pg.client
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?
            .replace(client);
        Ok(pg)
    }

    fn new_client(&self) -> Result<Client> {
        Client::connect(&self.url, NoTls).map_err(|err| connect_error(&self.url, &err))
    }

    /// Runs `f` in one transaction: committed when `commit` and `f` succeeded, else rolled back.
    /// `snapshot`: a read-only REPEATABLE READ transaction, whose statements all see one state.
    pub fn run<T>(
        &self,
        commit: bool,
        snapshot: bool,
        f: impl FnOnce(&Db) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self
            .client
            .lock()
            .map_err(|_| ConsoleError::Internal("store lock poisoned".into()))?;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.new_client()?);
        }
        // A connection the server closed (a restart) shows when the transaction begins: connect
        // again once; `f` has not run yet.
        let err = match begin(guard.as_mut(), snapshot) {
            Ok(tx) => return finish(tx, commit, f),
            Err(err) => err,
        };
        if !guard.as_ref().is_none_or(Client::is_closed) {
            return Err(err);
        }
        *guard = None;
        *guard = Some(self.new_client()?);
        let tx = begin(guard.as_mut(), snapshot)?;
        // Bound first: the transaction borrows `guard`, which must outlive it.
        #[allow(clippy::let_and_return)]
        let value = finish(tx, commit, f);
        value
    }
}

/// Runs `f` in `tx`: committed when `commit` and `f` succeeded, else rolled back.
fn finish<T>(tx: Transaction<'_>, commit: bool, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
    let db = Db::postgres(tx);
    let value = f(&db);
    let tx = db
        .into_postgres()
        .ok_or_else(|| ConsoleError::Internal("store: not a PostgreSQL transaction".into()))?;
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

/// Begins a transaction: READ COMMITTED, or a read-only REPEATABLE READ `snapshot`.
fn begin(client: Option<&mut Client>, snapshot: bool) -> Result<Transaction<'_>> {
    let client = client.ok_or_else(|| ConsoleError::Internal("store: not connected".into()))?;
    Ok(if snapshot {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?
    } else {
        client.transaction()?
    })
}

/// A connection error naming the server (host, port, database) but neither the user's password
/// nor the URL's parameters (which may hold one).
fn connect_error(url: &str, err: &::postgres::Error) -> ConsoleError {
    ConsoleError::Internal(format!("PostgreSQL at {}: {err}", server_of(url)))
}

fn server_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let rest = rest.split('?').next().unwrap_or("");
    rest.rsplit_once('@').map_or(rest, |(_, server)| server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_what_errors_name() {
        assert!(is_url("postgres://u@h/db") && is_url("postgresql:///db?host=/run/postgresql"));
        assert!(!is_url("out/console.sqlite") && !is_url("/srv/postgres/console.sqlite"));
        assert_eq!(
            server_of("postgres://u:secret@db.internal:5432/console"),
            "db.internal:5432/console"
        );
        assert_eq!(
            server_of("postgresql:///console?user=u&password=secret"),
            "/console"
        );
        assert_eq!(
            placeholders("WHERE a = ?1 AND b = ?12"),
            "WHERE a = $1 AND b = $12"
        );
    }
}
