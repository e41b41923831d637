//! One SQL store, two engines. Every store behaviour is written once, in SQL both SQLite and
//! PostgreSQL accept, over the small [`Engine`] interface; [`sqlite::SqliteEngine`] (the embedded
//! default) and [`postgres::PgEngine`] (distributed mode) implement it and pass one conformance
//! suite.
//!
//! The portable dialect, kept deliberately narrow so that one text serves both engines:
//! - parameters are `$1..$n` (rewritten to `?n` for SQLite);
//! - integers are `BIGINT` (PostgreSQL's `INTEGER` is 32-bit), booleans are `BIGINT` 0/1, money is
//!   integer đồng, instants are `BIGINT` milliseconds since the epoch (UTC), local dates are
//!   `TEXT` `YYYY-MM-DD`, structured snapshots are JSON in `TEXT`;
//! - `INSERT .. ON CONFLICT`, `RETURNING`, `UPDATE .. WHERE` compare-and-set, sub-selects.
//!
//! Multi-statement work is a [`Step`] list run in one transaction. A step may *require* a row
//! (affected or returned): when it gets none the transaction rolls back and the caller learns
//! which requirement failed. Concurrency across server nodes comes from the first step locking a
//! row (`UPDATE .. SET version = version + 1`): PostgreSQL holds that row lock until commit and
//! SQLite's writer lock covers the whole transaction, so the checks that follow see every
//! committed competitor.

pub mod postgres;
pub mod sqlite;

use std::borrow::Cow;

use async_trait::async_trait;

/// A value crossing the engine boundary. The portable dialect needs no more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$($crate::sql::Value::from($v)),*] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value, SqlError> {
        self.0
            .get(i)
            .ok_or_else(|| SqlError::Corrupt(format!("row has no column {i}")))
    }

    pub fn int(&self, i: usize) -> Result<i64, SqlError> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(SqlError::Corrupt(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, SqlError> {
        match self.get(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(SqlError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, SqlError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool, SqlError> {
        Ok(self.int(i)? != 0)
    }

    pub fn u32(&self, i: usize) -> Result<u32, SqlError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| SqlError::Corrupt(format!("column {i}: {v} out of range")))
    }
}

/// The type a column of an [`Append`] carries: PostgreSQL's binary COPY needs it up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `BIGINT`.
    Int,
    /// `TEXT`.
    Text,
}

/// Rows appended to one table in bulk, for the one write that carries a million rows a night
/// (the recorded claim log). PostgreSQL streams them with binary `COPY`, which skips parsing
/// and planning a statement per batch; SQLite runs one prepared `INSERT` per row, its fastest
/// path. There is no conflict clause: a row that collides with a key fails the transaction
/// with [`SqlError::Unique`] on both engines.
#[derive(Debug, Clone)]
pub struct Append {
    pub table: &'static str,
    pub columns: &'static [(&'static str, ColumnType)],
    /// Each row holds one value per column, in column order.
    pub rows: Vec<Vec<Value>>,
}

impl Append {
    /// `a, b, c`: the column names, in order.
    pub(crate) fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// `INSERT INTO table (a, b) VALUES ($1, $2)`: one row.
    pub(crate) fn insert_one(&self) -> String {
        let marks: Vec<String> = (1..=self.columns.len()).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table,
            self.column_list(),
            marks.join(", ")
        )
    }

    /// Every row has one value per column.
    pub(crate) fn check(&self) -> Result<(), SqlError> {
        match self.rows.iter().position(|r| r.len() != self.columns.len()) {
            None => Ok(()),
            Some(i) => Err(SqlError::Corrupt(format!(
                "row {i} appended to {} has {} values for {} columns",
                self.table,
                self.rows[i].len(),
                self.columns.len()
            ))),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Work {
    /// One statement and its parameters.
    Statement {
        sql: Cow<'static, str>,
        params: Vec<Value>,
    },
    /// Rows appended in bulk; affects as many rows as it carries.
    Append(Append),
}

/// One step of a transaction.
#[derive(Debug, Clone)]
pub struct Step {
    pub work: Work,
    /// When set, the step must affect or return at least one row; otherwise the whole
    /// transaction rolls back with [`SqlError::Requirement`] carrying this tag.
    pub require: Option<&'static str>,
    /// When set, the step must affect or return no row; otherwise the transaction rolls
    /// back with [`SqlError::Requirement`] carrying this tag.
    pub forbid: Option<&'static str>,
}

impl Step {
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Value>) -> Self {
        Self {
            work: Work::Statement {
                sql: sql.into(),
                params,
            },
            require: None,
            forbid: None,
        }
    }

    pub fn append(append: Append) -> Self {
        Self {
            work: Work::Append(append),
            require: None,
            forbid: None,
        }
    }

    pub fn forbid(mut self, tag: &'static str) -> Self {
        self.forbid = Some(tag);
        self
    }

    /// The tag of the requirement `o` breaks, if any.
    pub fn broken_by(&self, o: &Outcome) -> Option<&'static str> {
        match (self.require, self.forbid) {
            (Some(tag), _) if o.affected == 0 => Some(tag),
            (_, Some(tag)) if o.affected > 0 => Some(tag),
            _ => None,
        }
    }

    pub fn require(mut self, tag: &'static str) -> Self {
        self.require = Some(tag);
        self
    }
}

/// What one step did: rows affected (or returned) and the rows it returned, if any.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub affected: u64,
    pub rows: Vec<Row>,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A unique or primary-key constraint refused the write.
    #[error("already exists: {0}")]
    Unique(String),
    /// A [`Step::require`] found no row; the transaction was rolled back.
    #[error("requirement failed: {0}")]
    Requirement(&'static str),
    /// The engine is unreachable or failed.
    #[error("database failure: {0}")]
    Backend(String),
    /// Stored data does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn name(&self) -> &'static str;
    /// Runs one statement outside any explicit transaction and returns its rows.
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, SqlError>;
    /// Runs the steps in one transaction; all or nothing.
    async fn transaction(&self, steps: Vec<Step>) -> Result<Vec<Outcome>, SqlError>;
    /// Brings the schema up to date with [`crate::migrations`] (adopting a database the old
    /// runner migrated), serialised against other nodes doing the same.
    async fn migrate(&self) -> Result<(), SqlError>;

    /// Runs one statement and returns the rows it affected.
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let mut out = self
            .transaction(vec![Step::new(sql.to_owned(), params)])
            .await?;
        Ok(out.pop().map_or(0, |o| o.affected))
    }
}

/// Rewrites `$n` placeholders to SQLite's `?n`, leaving string literals and quoted names alone.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    out.push(c);
                } else if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                    out.push('?');
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}

// A migration failing while the engine opens is the engine failing.
impl From<crate::migrations::MigrationError> for SqlError {
    fn from(e: crate::migrations::MigrationError) -> Self {
        SqlError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn placeholders_outside_literals_only() {
        assert_eq!(
            sqlite_placeholders("SELECT $1, '$2', \"$3\" WHERE a = $10"),
            "SELECT ?1, '$2', \"$3\" WHERE a = ?10"
        );
    }
}
