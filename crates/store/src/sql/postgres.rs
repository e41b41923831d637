//! The PostgreSQL engine for distributed mode: a small connection pool shared by the node's
//! tasks; statements are prepared once per connection and cached.

use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Pool, Runtime, Timeouts};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Append, ColumnType, Engine, Outcome, Row, SqlError, Step, Value, Work};

/// Arbitrary constant naming the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x6e6d_6d69_6772;

/// The longest one store call may take when no bound is given (see
/// [`PgEngine::connect`]).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct PgEngine {
    pool: Pool,
    /// Longest one call (a query, or a transaction with every statement and the commit) may
    /// take; past it the call fails and its connection is closed.
    call_timeout: Duration,
}

/// A pooled connection that goes back to the pool only once its call has finished.
///
/// Why: a call dropped midway (its bound passed, or the caller gave up: the readiness probe's
/// own timeout) leaves the connection with a statement in flight. Back in the pool, it was
/// handed to the next call, which queued behind a reply that, on a connection whose far side
/// vanished, never comes: the order service hung for good after a partition (found by the
/// partition test's `old connections lost` step). Such a connection is taken out of the pool
/// and closed instead.
struct Checked {
    client: Option<deadpool_postgres::Object>,
    finished: bool,
}

impl Drop for Checked {
    fn drop(&mut self) {
        if !self.finished
            && let Some(client) = self.client.take()
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl std::ops::Deref for Checked {
    type Target = deadpool_postgres::Object;
    fn deref(&self) -> &Self::Target {
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl std::ops::DerefMut for Checked {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgEngine")
    }
}

fn backend(e: impl std::fmt::Display) -> SqlError {
    SqlError::Backend(e.to_string())
}

fn classify(e: tokio_postgres::Error) -> SqlError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let detail = e
            .as_db_error()
            .map(|d| d.detail().unwrap_or(d.message()).to_owned())
            .unwrap_or_else(|| e.to_string());
        return SqlError::Unique(detail);
    }
    match e.as_db_error() {
        Some(d) => backend(format!("{}: {}", d.code().code(), d.message())),
        None => backend(e),
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer as {ty}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(r: &tokio_postgres::Row) -> Result<Row, SqlError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Value::Int(i64::from(v)))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Value::Int(i64::from(v)))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Value::Int(i64::from(v)))),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => r
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text)),
            ref other => {
                // The portable dialect casts aggregates (SUM is NUMERIC here) to BIGINT.
                return Err(SqlError::Corrupt(format!(
                    "column {} has type {other}, outside the portable dialect",
                    col.name()
                )));
            }
        };
        out.push(v.map_err(backend)?.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

async fn run_step(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    let stmt = tx.prepare_cached(sql).await.map_err(classify)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    if stmt.columns().is_empty() {
        let affected = tx.execute(&stmt, &refs).await.map_err(classify)?;
        return Ok(Outcome {
            affected,
            rows: Vec::new(),
        });
    }
    let rows = tx.query(&stmt, &refs).await.map_err(classify)?;
    let rows = rows.iter().map(read_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        affected: rows.len() as u64,
        rows,
    })
}

/// Streams the rows with binary `COPY` inside the transaction: no statement text grows with
/// the batch, nothing is planned per row, and integers and text cross as they are.
async fn run_append(
    tx: &deadpool_postgres::Transaction<'_>,
    append: &Append,
) -> Result<Outcome, SqlError> {
    append.check()?;
    let types: Vec<Type> = append
        .columns
        .iter()
        .map(|(_, t)| match t {
            ColumnType::Int => Type::INT8,
            ColumnType::Text => Type::TEXT,
        })
        .collect();
    let copy = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        append.table,
        append.column_list()
    );
    let sink = tx.copy_in(copy.as_str()).await.map_err(classify)?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for row in &append.rows {
        writer
            .as_mut()
            .write_raw(row.iter())
            .await
            .map_err(classify)?;
    }
    let affected = writer.as_mut().finish().await.map_err(classify)?;
    Ok(Outcome {
        affected,
        rows: Vec::new(),
    })
}

async fn run_work(
    tx: &deadpool_postgres::Transaction<'_>,
    work: &Work,
) -> Result<Outcome, SqlError> {
    match work {
        Work::Statement { sql, params } => run_step(tx, sql, params).await,
        Work::Append(append) => run_append(tx, append).await,
    }
}

impl PgEngine {
    /// Builds the pool; connections are opened on first use, so a database that is down at
    /// start makes calls fail (and /readyz report it) instead of the process.
    ///
    /// `timeout` bounds waiting for a connection and opening one; `call_timeout` bounds each
    /// call once it has its connection.
    pub fn connect(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, SqlError> {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        let pool = cfg
            .builder(NoTls)
            .map_err(backend)?
            .max_size(pool_size)
            .timeouts(Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(backend)?;
        Ok(Self { pool, call_timeout })
    }

    async fn client(&self) -> Result<Checked, SqlError> {
        let client = self.pool.get().await.map_err(backend)?;
        Ok(Checked {
            client: Some(client),
            finished: false,
        })
    }

    /// Runs `call` on a connection of the pool within the call timeout. The connection goes
    /// back to the pool only if the call finished (see [`Checked`]).
    async fn bounded<T>(
        &self,
        call: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut client = self.client().await?;
        match tokio::time::timeout(self.call_timeout, call(&mut client)).await {
            Ok(result) => {
                client.finished = true;
                result
            }
            Err(_) => Err(backend(format!(
                "no answer within {} ms; connection closed",
                self.call_timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl Engine for PgEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, SqlError> {
        self.bounded(async |client| {
            let stmt = client.prepare_cached(sql).await.map_err(classify)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&stmt, &refs).await.map_err(classify)?;
            rows.iter().map(read_row).collect()
        })
        .await
    }

    async fn transaction(&self, steps: Vec<Step>) -> Result<Vec<Outcome>, SqlError> {
        self.bounded(async |client| {
            let tx = client.transaction().await.map_err(classify)?;
            let mut out = Vec::with_capacity(steps.len());
            for step in &steps {
                let o = run_work(&tx, &step.work).await?;
                if let Some(tag) = step.broken_by(&o) {
                    // Dropping the transaction rolls it back.
                    return Err(SqlError::Requirement(tag));
                }
                out.push(o);
            }
            tx.commit().await.map_err(classify)?;
            Ok(out)
        })
        .await
    }

    async fn migrate(&self) -> Result<(), SqlError> {
        let mut client = self.client().await?;
        // A session lock, held on this connection around the whole run (refinery opens its own
        // transactions): nodes starting at once migrate one after the other, and the later ones
        // find nothing to do.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(classify)?;
        let outcome = migrate_postgres(&mut client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        // Never hand a connection that may still hold the lock back to the pool: unfinished,
        // it is closed when dropped (see `Checked`), which releases the lock.
        client.finished = unlocked.is_ok();
        outcome
    }
}

/// Adopts a database of the old runner, then runs the pending migrations (under the advisory
/// lock [`PgEngine::migrate`] holds).
async fn migrate_postgres(client: &mut tokio_postgres::Client) -> Result<(), SqlError> {
    use crate::migrations::{self, HISTORY_TABLE, LEGACY_TABLE, explain};
    // to_regclass is NULL for a table missing from the search path.
    let exists = |table: &str| format!("SELECT to_regclass('{table}') IS NOT NULL");
    let legacy_exists: bool = client
        .query_one(&exists(LEGACY_TABLE), &[])
        .await
        .map_err(classify)?
        .get(0);
    if legacy_exists {
        let history_exists: bool = client
            .query_one(&exists(HISTORY_TABLE), &[])
            .await
            .map_err(classify)?
            .get(0);
        let history_rows = if history_exists {
            client
                .query_one(&format!("SELECT COUNT(*) FROM {HISTORY_TABLE}"), &[])
                .await
                .map_err(classify)?
                .get::<_, i64>(0)
        } else {
            0
        };
        if history_rows == 0 {
            let legacy: Vec<(i64, String)> = client
                .query(
                    &format!("SELECT version, name FROM {LEGACY_TABLE} ORDER BY version"),
                    &[],
                )
                .await
                .map_err(classify)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            if let Some(last) = migrations::adopt(&legacy)? {
                migrations::runner(refinery::Target::FakeVersion(last))
                    .run_async(client)
                    .await
                    .map_err(|e| explain(&e))?;
            }
        }
    }
    migrations::runner(refinery::Target::Latest)
        .run_async(client)
        .await
        .map_err(|e| explain(&e))?;
    Ok(())
}
