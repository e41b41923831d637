//! The SQLite engine: the embedded default, one file under the data directory.
//!
//! SQLite admits one writer per file, and in WAL mode readers never wait for it: a reader sees
//! the last commit before its statement began, however long a write transaction stays open.
//! So the engine keeps exactly one writer connection, which every transaction (and migration)
//! queues for in turn, and a bounded pool of reader connections for plain queries. A settlement
//! that holds the writer for seconds then delays other writes, never the reads of consoles,
//! show loads and reports. Readers are `query_only`: a write sent down the read path fails
//! instead of racing the writer.
//!
//! Every transaction begins `IMMEDIATE`: it takes the file's writer lock first, so the steps that
//! follow see a database no one else (another process on the same file) changes until commit.
//! Connections are used from the blocking pool; waiting for one happens on the async side, so
//! a queue of callers holds no thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Append, Engine, Outcome, Row, SqlError, Step, Value, Work, sqlite_placeholders};

/// Reader connections of a store opened with [`SqliteEngine::open`] (the server passes its
/// `database_pool_size` instead).
pub const DEFAULT_READERS: usize = 4;
/// How long a query waits for a free reader connection when opened with
/// [`SqliteEngine::open`] (the server passes its `database_timeout_ms` instead).
pub const DEFAULT_READER_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteEngine {
    /// The one connection that writes. A tokio mutex: callers queue for it in order, without
    /// holding a thread while they wait.
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Arc<ReaderPool>,
}

/// At most `size` reader connections, opened on first need and kept; a query waits up to
/// `wait` for one to be free, then fails `Backend` (the server answers `unavailable`).
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// A reader connection lent to one query; it goes back to the pool when dropped.
struct Reader {
    conn: Option<Connection>,
    pool: Arc<ReaderPool>,
    _permit: OwnedSemaphorePermit,
}

impl ReaderPool {
    async fn get(self: &Arc<Self>) -> Result<Reader, SqlError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                backend(format!(
                    "no reader connection free within {} ms",
                    self.wait.as_millis()
                ))
            })?
            .map_err(backend)?;
        let idle = self
            .idle
            .lock()
            .map_err(|_| backend("reader pool poisoned"))?
            .pop();
        let conn = match idle {
            Some(c) => c,
            // Holding a permit means fewer than `size` connections are lent, so opening one
            // keeps the pool within its bound.
            None => open_reader(&self.path)?,
        };
        Ok(Reader {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.pool.idle.lock()) {
            idle.push(conn);
        }
    }
}

impl std::ops::Deref for Reader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

/// A connection for reads only: a write through it fails (`query_only`), so nothing but the
/// writer ever takes the file's writer lock.
fn open_reader(path: &Path) -> Result<Connection, SqlError> {
    let conn = crate::sqlite::open(path).map_err(backend)?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(backend)?;
    Ok(conn)
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
    /// file uses (WAL, `synchronous=FULL`, foreign keys on), with [`DEFAULT_READERS`] readers.
    pub fn open(path: &Path) -> Result<Self, SqlError> {
        Self::open_pooled(path, DEFAULT_READERS, DEFAULT_READER_WAIT)
    }

    /// [`SqliteEngine::open`] with at most `readers` reader connections (at least one), a
    /// query waiting up to `wait` for a free one.
    pub fn open_pooled(path: &Path, readers: usize, wait: Duration) -> Result<Self, SqlError> {
        let writer = crate::sqlite::open(path).map_err(backend)?;
        Ok(Self {
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Arc::new(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(readers.max(1))),
                wait,
            }),
        })
    }

    /// Runs `f` on the writer once every earlier caller is done with it.
    async fn write<T, F>(&self, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let mut conn = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut conn))
            .await
            .map_err(backend)?
    }

    /// Runs `f` on a reader of the pool.
    async fn read<T, F>(&self, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let reader = self.readers.get().await?;
        tokio::task::spawn_blocking(move || f(&reader))
            .await
            .map_err(backend)?
    }

    /// Runs `steps` in a write transaction like [`Engine::transaction`], but once they ran
    /// says so on `held` and keeps the transaction open, uncommitted, until `release` fires
    /// (or is dropped): a long write (a settlement) made to last as long as a test needs.
    #[cfg(feature = "testing")]
    pub async fn hold_transaction(
        &self,
        steps: Vec<Step>,
        held: tokio::sync::oneshot::Sender<()>,
        release: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<Vec<Outcome>, SqlError> {
        self.write(move |c| {
            in_transaction(c, |tx| {
                let out = run_steps(tx, &steps)?;
                let _ = held.send(());
                let _ = release.blocking_recv();
                Ok(out)
            })
        })
        .await
    }
}

/// The steps in order, each checked against its requirement.
fn run_steps(tx: &Connection, steps: &[Step]) -> Result<Vec<Outcome>, SqlError> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let o = run_work(tx, &step.work)?;
        if let Some(tag) = step.broken_by(&o) {
            return Err(SqlError::Requirement(tag));
        }
        out.push(o);
    }
    Ok(out)
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
        self.read(move |c| Ok(run_step(c, &sql, &params)?.rows))
            .await
    }

    async fn transaction(&self, steps: Vec<Step>) -> Result<Vec<Outcome>, SqlError> {
        self.write(move |c| in_transaction(c, |tx| run_steps(tx, &steps)))
            .await
    }

    async fn migrate(&self) -> Result<(), SqlError> {
        self.write(|c| {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool lends at most its size; past it a query waits its bound, then fails.
    #[tokio::test]
    async fn the_reader_pool_is_bounded_and_waits_its_bound() {
        let dir = tempfile::tempdir()
            .map_err(backend)
            .unwrap_or_else(|e| panic!("{e}"));
        let wait = Duration::from_millis(100);
        let engine = SqliteEngine::open_pooled(&dir.path().join("db.sqlite"), 1, wait)
            .unwrap_or_else(|e| panic!("{e}"));
        let first = engine.readers.get().await.unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        match engine.readers.get().await {
            Err(SqlError::Backend(m)) => assert!(m.contains("no reader connection"), "{m}"),
            Err(e) => panic!("expected a bounded wait, got {e}"),
            Ok(_) => panic!("a pool of one lent two readers"),
        }
        assert!(started.elapsed() >= wait);
        drop(first);
        let again = engine.readers.get().await.unwrap_or_else(|e| panic!("{e}"));
        drop(again);
        let idle = engine.readers.idle.lock().map(|i| i.len()).unwrap_or(0);
        assert_eq!(
            idle, 1,
            "the returned connection is kept, not a second one opened"
        );
    }

    /// A reader cannot write: only the writer takes the file's writer lock.
    #[tokio::test]
    async fn readers_refuse_writes() {
        let dir = tempfile::tempdir()
            .map_err(backend)
            .unwrap_or_else(|e| panic!("{e}"));
        let engine =
            SqliteEngine::open(&dir.path().join("db.sqlite")).unwrap_or_else(|e| panic!("{e}"));
        engine
            .execute("CREATE TABLE t (x BIGINT)", Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = engine
            .query("INSERT INTO t (x) VALUES (1) RETURNING x", Vec::new())
            .await;
        assert!(matches!(refused, Err(SqlError::Backend(_))), "{refused:?}");
        let rows = engine.query("SELECT COUNT(*) FROM t", Vec::new()).await;
        assert_eq!(rows.ok(), Some(vec![Row(vec![Value::Int(0)])]));
    }
}
