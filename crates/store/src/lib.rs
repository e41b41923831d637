//! Storage of Nightmarket.
//!
//! - [`Store`]: sellers, products with their OCOP proof, shows with lineups and slots, recurring
//!   markets and their exceptions, admission decisions, seller commitments, reusable lineups,
//!   show transitions, webhooks with their delivery log, and post-show statistics (claims
//!   refused per reason, peak viewers), and who may sign in (invites, browser sessions). Written once in a portable SQL dialect over an
//!   [`sql::Engine`]: SQLite is the embedded default, PostgreSQL serves distributed mode, and
//!   both pass one conformance suite (`conformance`, with the `testing` feature: one test per
//!   case, run against each engine by `tests/sqlite.rs` and `tests/postgres.rs`).
//! - [`migrations`]: the schema as SQL files (`migrations/V<n>__<name>.sql`), applied at start
//!   by `refinery` with a checksum per migration, adopting databases of the old runner.
//! - [`SqliteJournal`]: the durable claim journal behind the in-memory inventory. Claims,
//!   cancellations and show events are appended in group-committed transactions; a claim is
//!   acknowledged only once its transaction is on disk, and a restart replays the journal.
//!
//! The store and the journal live in separate SQLite files so that the journal's constant
//! writes never wait on a store write (SQLite admits one writer per file).

pub mod access;
pub mod catalog;
/// The shared conformance suite: test code, so only with the `testing` feature (which the
/// crate's own dev-dependencies turn on), never in a release binary.
#[cfg(feature = "testing")]
pub mod conformance;
pub mod market;
pub mod migrations;
pub mod orders;
pub mod page;
pub mod reports;
pub mod settlement;
pub mod sql;
pub mod sqlite;
pub mod stats;
/// Support for tests (a fresh PostgreSQL database, settling fixture claims): `testing` only.
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use access::{InviteRefusal, InviteRow, SessionRow};
pub use catalog::{LineupRow, SellerRow, ShowRow, ShowSchedule};
pub use market::{
    CommitmentRow, DecisionRow, ExceptionKind, ExceptionRow, LineupSetItem, LineupSetRow,
    MarketRow, TransitionBy, TransitionRow,
};
pub use orders::{
    CheckoutRow, OrderDetail, OrderLineDetail, OrderLineRow, OrderRow, OrderScope, Page,
    StatusChange,
};
pub use page::{Key, KeyPart, Keyset, MAX_PAGE_SIZE, Paged};
pub use reports::{
    GroupSales, NightReport, PendingReason, PendingShow, ProductSales, Programme, RefusalCount,
    ReportTally, SalesFigures, ShowReport, ShowSales,
};
pub use settlement::{
    CloseMarker, LogCheckpoint, LogTally, ProductTally, SettleOutcome, SettlePlan, SettlementRow,
    SettlementState,
};
pub use sql::postgres::DEFAULT_CALL_TIMEOUT;
pub use sqlite::{JournalEntry, JournalError, Reservation, ShowJournal, SqliteJournal, Ticket};
pub use stats::{LiveSales, RefusalTotal, ShowStatsBatch, ViewerSample};
pub use webhook::{DeliveryOutcome, DeliveryRow, WebhookEvent, WebhookRow};

use nightmarket_domain::clock::SharedClock;
use sql::{Engine, SqlError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The store refused a write that would break a rule it guards (e.g. two overlapping
    /// shows of one seller). `code` is stable; the message names what collides.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Unique(m) => StoreError::Conflict(m),
            SqlError::Requirement(tag) => StoreError::Refused {
                code: tag,
                message: format!("refused: {tag}"),
            },
            SqlError::Backend(m) => StoreError::Backend(m),
            SqlError::Corrupt(m) => StoreError::Corrupt(m),
        }
    }
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The store: every behaviour over one engine.
#[derive(Clone)]
pub struct Store {
    pub(crate) engine: Arc<dyn Engine>,
    /// What the store stamps on its own (a system status move); the system clock unless
    /// [`Store::with_clock`] gives the one the rest of the process reads.
    pub(crate) clock: SharedClock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.engine.name())
    }
}

impl Store {
    /// Opens the embedded store at `path` (created if missing) and brings its schema up to date,
    /// with [`sql::sqlite::DEFAULT_READERS`] reader connections.
    pub async fn sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::with_engine(Arc::new(sql::sqlite::SqliteEngine::open(path)?)).await
    }

    /// [`Store::sqlite`] with at most `readers` reader connections beside its one writer; a
    /// query waits up to `wait` for a free reader, then fails [`StoreError::Backend`].
    pub async fn sqlite_pooled(
        path: &Path,
        readers: usize,
        wait: Duration,
    ) -> Result<Self, StoreError> {
        let engine = sql::sqlite::SqliteEngine::open_pooled(path, readers, wait)?;
        Self::with_engine(Arc::new(engine)).await
    }

    /// Connects to PostgreSQL and brings its schema up to date; several nodes may do this at
    /// once (migrations take an advisory lock).
    /// `timeout` bounds waiting for a connection; each call may then take
    /// [`DEFAULT_CALL_TIMEOUT`] (see [`Store::postgres_bounded`]).
    pub async fn postgres(
        url: &str,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::postgres_bounded(url, pool_size, timeout, DEFAULT_CALL_TIMEOUT).await
    }

    /// [`Store::postgres`], each call (a query, or a transaction with its commit) bounded by
    /// `call_timeout`: past it the call fails and its connection is closed, so a connection
    /// whose far side vanished costs one call, not every later one.
    pub async fn postgres_bounded(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::with_engine(Arc::new(sql::postgres::PgEngine::connect(
            url,
            pool_size,
            timeout,
            call_timeout,
        )?))
        .await
    }

    pub async fn with_engine(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        engine.migrate().await?;
        Ok(Self {
            engine,
            clock: nightmarket_domain::clock::system(),
        })
    }

    /// The same store on `clock`: instants the store takes itself come from it.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// `sqlite` or `postgres`.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }
}
