//! The SQLite backend (rusqlite, bundled): the default store, one file, one connection per
//! console process (write transactions run one at a time; WAL lets readers in meanwhile).

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ToSql};

use super::db::{Param, Row, Value};
use super::{ConsoleError, Result};

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

/// Opens (creating) the file with foreign keys on and the WAL journal.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|err| ConsoleError::Internal(format!("{}: {err}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;")?;
    Ok(conn)
}

pub fn execute(conn: &Connection, sql: &str, params: &[Param<'_>]) -> Result<usize> {
    Ok(conn.execute(sql, params_from_iter(params.iter()))?)
}

pub fn query(conn: &Connection, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                ValueRef::Real(_) | ValueRef::Blob(_) => {
                    return Err(ConsoleError::Internal(format!(
                        "store: column {i} is neither text nor an integer"
                    )))
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}
