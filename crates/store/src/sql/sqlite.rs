//! The SQLite engine: the embedded default, one file under the data directory. Store calls are
//! operator actions, show loads and lifecycle ticks, not the claim path, so one connection
//! behind a mutex, used from the blocking pool, is enough. Every transaction begins
//! `IMMEDIATE`: it takes the writer lock first, so the steps that follow see a database no one
//! else changes until commit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::{Append, Engine, Outcome, Row, SqlError, Step, Value, Work, sqlite_placeholders};

#[derive(Clone)]
pub struct SqliteEngine {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteEngine")
    }
}

fn backend(e: impl std::fmt::Display) -> SqlError {
    SqlError::Backend(e.to_string())
}

fn classify(e: rusqlite::Error) -> SqlError {
    match &e {
        rusqlite::Error::SqliteFailure(err, msg)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            SqlError::Unique(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => backend(e),
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn read_row(r: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    let mut out = Vec::with_capacity(columns);
    for i in 0..columns {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Real(f) => Value::Text(f.to_string()),
            ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
        });
    }
    Ok(Row(out))
}

fn run_step(conn: &Connection, sql: &str, params: &[Value]) -> Result<Outcome, SqlError> {
    let sql = sqlite_placeholders(sql);
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let columns = stmt.column_count();
    let params = rusqlite::params_from_iter(params.iter());
    if columns == 0 {
        let affected = stmt.execute(params).map_err(classify)?;
        return Ok(Outcome {
            affected: affected as u64,
            rows: Vec::new(),
        });
    }
    let mut rows = stmt.query(params).map_err(classify)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(classify)? {
        out.push(read_row(r, columns).map_err(classify)?);
    }
    // A write with RETURNING reports its rows; a SELECT reports what it found.
    Ok(Outcome {
        affected: out.len() as u64,
        rows: out,
    })
}

/// One prepared single-row `INSERT`, run once per row: with the statement compiled once and
/// the whole batch in one transaction, this is as fast as SQLite appends.
fn run_append(conn: &Connection, append: &Append) -> Result<Outcome, SqlError> {
    append.check()?;
    let sql = sqlite_placeholders(&append.insert_one());
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    for row in &append.rows {
        stmt.execute(rusqlite::params_from_iter(row.iter()))
            .map_err(classify)?;
    }
    Ok(Outcome {
        affected: append.rows.len() as u64,
        rows: Vec::new(),
    })
}

fn run_work(conn: &Connection, work: &Work) -> Result<Outcome, SqlError> {
    match work {
        Work::Statement { sql, params } => run_step(conn, sql, params),
        Work::Append(append) => run_append(conn, append),
    }
}

impl SqliteEngine {
    /// Opens (creating if needed) the database file with the settings every Nightmarket SQLite
    /// file uses (WAL, `synchronous=FULL`, foreign keys on).
    pub fn open(path: &Path) -> Result<Self, SqlError> {
        let conn = crate::sqlite::open(path).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| backend("database connection poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

fn in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(classify)?;
    let out = f(&tx)?;
    tx.commit().map_err(classify)?;
    Ok(out)
}

#[async_trait]
impl Engine for SqliteEngine {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, SqlError> {
        let sql = sql.to_owned();
        self.with(move |c| Ok(run_step(c, &sql, &params)?.rows))
            .await
    }

    async fn transaction(&self, steps: Vec<Step>) -> Result<Vec<Outcome>, SqlError> {
        self.with(move |c| {
            in_transaction(c, |tx| {
                let mut out = Vec::with_capacity(steps.len());
                for step in &steps {
                    let o = run_work(tx, &step.work)?;
                    if let Some(tag) = step.broken_by(&o) {
                        return Err(SqlError::Requirement(tag));
                    }
                    out.push(o);
                }
                Ok(out)
            })
        })
        .await
    }

    async fn migrate(&self) -> Result<(), SqlError> {
        self.with(|c| {
            // Every transaction refinery opens takes the writer lock first, so a process
            // starting on the same file waits for this one's run rather than interleaving.
            c.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
            let out = migrate_sqlite(c);
            c.set_transaction_behavior(rusqlite::TransactionBehavior::Deferred);
            out
        })
        .await
    }
}

/// Adopts a database of the old runner, then runs the pending migrations. Refinery reads the
/// history and applies in two transactions; a process that applied in between makes this
/// run fail on a table or row that now exists, so a failed run reads the history once more and
/// succeeds if nothing is left to apply (any other failure repeats and is returned).
fn migrate_sqlite(c: &mut Connection) -> Result<(), SqlError> {
    use crate::migrations::{self, LEGACY_TABLE, explain};
    let once = |c: &mut Connection| -> Result<(), SqlError> {
        let legacy_exists: bool = c
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [LEGACY_TABLE],
                |r| r.get(0),
            )
            .map_err(classify)?;
        if legacy_exists && !history_has_rows(c)? {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT version, name FROM {LEGACY_TABLE} ORDER BY version"
                ))
                .map_err(classify)?;
            let legacy = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(classify)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(classify)?;
            drop(stmt);
            if let Some(last) = migrations::adopt(&legacy)? {
                migrations::runner(refinery::Target::FakeVersion(last))
                    .run(c)
                    .map_err(|e| explain(&e))?;
            }
        }
        migrations::runner(refinery::Target::Latest)
            .run(c)
            .map_err(|e| explain(&e))?;
        Ok(())
    };
    match once(c) {
        Ok(()) => Ok(()),
        Err(first) => once(c).map_err(|_| first),
    }
}

fn history_has_rows(c: &Connection) -> Result<bool, SqlError> {
    let table = crate::migrations::HISTORY_TABLE;
    let exists: bool = c
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(classify)?;
    if !exists {
        return Ok(false);
    }
    c.query_row(&format!("SELECT COUNT(*) > 0 FROM {table}"), [], |r| {
        r.get(0)
    })
    .map_err(classify)
}
