//! The connection the store's queries run on, whichever the backend: SQL is written once, with
//! SQLite's numbered placeholders (`?1`, `?2`), and [`Db`] runs it on SQLite as written or on
//! PostgreSQL with the placeholders renumbered as `$1`, `$2`. Parameters and columns are the three
//! kinds the schema uses: integers (64-bit), text and NULL.

use std::cell::RefCell;

use super::{postgres as pg, sqlite, ConsoleError, Result};

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}

impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Param::Int(i64::from(value))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Param::Text(value)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(value: &'a String) -> Self {
        Param::Text(value)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(value: &'a Option<String>) -> Self {
        value.as_deref().map_or(Param::Null, Param::Text)
    }
}

/// The parameters of one query: `args![name, version]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::cli::console::store::db::Param::from($value)),*][..]
    };
}
pub(crate) use args;

/// One column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| ConsoleError::Internal(format!("store: no column {i}")))
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| ConsoleError::Internal(format!("store: column {i} is NULL")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.column(i)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            Value::Text(_) => Err(ConsoleError::Internal(format!(
                "store: column {i} is text, not an integer"
            ))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| ConsoleError::Internal(format!("store: column {i} is NULL")))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.column(i)? {
            Value::Text(v) => Ok(Some(v.clone())),
            Value::Null => Ok(None),
            Value::Int(_) => Err(ConsoleError::Internal(format!(
                "store: column {i} is an integer, not text"
            ))),
        }
    }
}

/// Which SQL dialect a connection speaks (for the few statements that differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The transaction-scoped locks PostgreSQL replicas take (SQLite has one writer at a time).
#[derive(Debug, Clone, Copy)]
pub enum Lock {
    /// Running the migrations (two replicas starting on a new database).
    Migrations,
    /// Appending to the directory's change log: held to the commit, so sequence numbers are
    /// committed in order and a reader never sees seq N+1 before N.
    Directory,
}

/// A connection inside a transaction (or, for SQLite reads, outside one).
pub struct Db<'c> {
    inner: Inner<'c>,
}

enum Inner<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(RefCell<::postgres::Transaction<'c>>),
}

impl<'c> Db<'c> {
    pub(super) fn sqlite(conn: &'c rusqlite::Connection) -> Db<'c> {
        Db {
            inner: Inner::Sqlite(conn),
        }
    }

    pub(super) fn postgres(tx: ::postgres::Transaction<'c>) -> Db<'c> {
        Db {
            inner: Inner::Postgres(RefCell::new(tx)),
        }
    }

    /// The PostgreSQL transaction back, to commit or roll back.
    pub(super) fn into_postgres(self) -> Option<::postgres::Transaction<'c>> {
        match self.inner {
            Inner::Postgres(tx) => Some(tx.into_inner()),
            Inner::Sqlite(_) => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    fn pg<T>(
        tx: &RefCell<::postgres::Transaction<'c>>,
        f: impl FnOnce(&mut ::postgres::Transaction<'c>) -> Result<T>,
    ) -> Result<T> {
        let mut tx = tx
            .try_borrow_mut()
            .map_err(|_| ConsoleError::Internal("store: connection in use".into()))?;
        f(&mut tx)
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<usize> {
        match &self.inner {
            Inner::Sqlite(conn) => sqlite::execute(conn, sql, params),
            Inner::Postgres(tx) => Self::pg(tx, |tx| pg::execute(tx, sql, params)),
        }
    }

    /// Every row of a query.
    pub fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        match &self.inner {
            Inner::Sqlite(conn) => sqlite::query(conn, sql, params),
            Inner::Postgres(tx) => Self::pg(tx, |tx| pg::query(tx, sql, params)),
        }
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; an error when there is none.
    pub fn query_one(&self, sql: &str, params: &[Param<'_>]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| ConsoleError::Internal("store: the query returned no row".into()))
    }

    /// Statements separated by `;`, without parameters (schema, bulk deletes).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres(tx) => Self::pg(tx, |tx| pg::batch(tx, sql)),
        }
    }

    /// Takes `lock` until the transaction ends (PostgreSQL); nothing on SQLite, whose write
    /// transactions already run one at a time.
    pub fn lock(&self, lock: Lock) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(()),
            Inner::Postgres(tx) => Self::pg(tx, |tx| pg::lock(tx, lock)),
        }
    }
}
