//! The claim journal: an append-only SQLite file (`journal.sqlite`) holding every show's
//! sequenced events, claim log (claims and cancellations) and waitlist changes (joins and
//! removals, in the order they happened).
//!
//! Appends are queued (bounded: `journal_queue`) to one writer thread that commits them in
//! groups: one transaction, one fsync, for however many entries arrived meanwhile. Each append
//! gets a [`Ticket`]; [`SqliteJournal::durable`] resolves once the entry's transaction is
//! committed and synced. Entries are committed in ticket order, so "ticket N is durable" means
//! every earlier entry is too. If a commit fails the journal stops for good (fail-stop): the
//! memory state it backs is now ahead of the disk, and only a restart (which replays the disk)
//! makes the two agree again.
//!
//! A group of nothing but a seller's stream events (pins, unpins, flashes: see
//! [`JournalEntry::syncs_at_once`]) is committed without its own fsync: it is written to the
//! file, so [`SqliteJournal::written`] resolves and a crash of the process loses nothing, and it
//! is synced by the next group that syncs or, at the latest, [`EVENT_SYNC_MS`] after it was
//! written. On a night of many shows each seller event was otherwise a commit with an fsync of
//! its own, which cost more CPU than delivering the event to a show's viewers. What a power
//! loss (or a crash of the machine) can lose is therefore the stream events of the last
//! `EVENT_SYNC_MS`, and nothing else: claims, cancellations, waitlist changes, a show going
//! live and a show closing are synced before they are answered, and their fsync covers every
//! entry written before them. After such a loss the show restarts from its last synced event;
//! a viewer who had seen more resumes with a `last_seq` the node has not reached, and gets a
//! snapshot.
//!
//! The order service reads the claim log back page by page ([`SqliteJournal::read_log`]), from
//! its own connections: WAL lets it read while the writer commits.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nightmarket_domain::{
    BuyerId, ClaimId, ClaimRecord, Dong, LogEntry, Millis, ProductId, SequencedEvent, ShowEvent,
    ShowId, WaitlistEntry,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS show_events (
    show_id  TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    event    TEXT NOT NULL,
    PRIMARY KEY (show_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claim_log (
    show_id     TEXT NOT NULL,
    pos         INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('claim', 'cancel')),
    claim_id    TEXT NOT NULL,
    buyer_id    TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    unit_price  INTEGER NOT NULL CHECK (unit_price > 0),
    flash_id    INTEGER,
    at          INTEGER NOT NULL,
    claimed_at  INTEGER,
    PRIMARY KEY (show_id, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS waitlist_log (
    id          INTEGER PRIMARY KEY,
    show_id     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('join', 'leave')),
    number      INTEGER NOT NULL,
    buyer_id    TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    unit_price  INTEGER NOT NULL CHECK (unit_price > 0),
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS waitlist_log_show ON waitlist_log (show_id, id);
"#;

// `waitlist_log.id` is the rowid: one writer inserts in ticket order, so it is the order the
// changes were decided in, which replay needs (a leave after its join).

// In a 'cancel' row, `at` is when the claim was cancelled and `claimed_at` when it was made:
// the order service needs the claim's own terms, and looking the claim row up by claim id would
// take an index that every claim pays for. Journals written before the column existed get it
// (NULL in their cancel rows, which then look the claim up: see `claimed_at`).
const ADD_CLAIMED_AT: &str = "ALTER TABLE claim_log ADD COLUMN claimed_at INTEGER";

/// The longest a group of stream events stays written but not synced (see the module
/// documentation): the most of a seller's stream a power loss can take back.
pub const EVENT_SYNC_MS: u64 = 50;

/// Most entries committed in one transaction. Bounds the latency one commit adds to the
/// claims queued behind it while still amortizing the fsync over many claims.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("the journal queue is full; retry shortly")]
    Full,
    #[error("the journal has failed and accepts nothing until restart: {0}")]
    Failed(String),
    #[error("journal storage error: {0}")]
    Storage(String),
    #[error("journal data is corrupt: {0}")]
    Corrupt(String),
}

/// One journal append.
#[derive(Debug, Clone)]
pub enum JournalEntry {
    Event {
        show: ShowId,
        event: SequencedEvent,
    },
    /// An accepted claim at claim-log position `pos` of its show.
    Claim {
        show: ShowId,
        pos: u64,
        record: ClaimRecord,
    },
    /// A cancellation at claim-log position `pos`; `record` is the claim it cancels.
    Cancel {
        show: ShowId,
        pos: u64,
        record: ClaimRecord,
        at: Millis,
    },
    /// A buyer joined a waitlist.
    WaitlistJoin {
        show: ShowId,
        entry: WaitlistEntry,
    },
    /// An entry left a waitlist: the buyer left, was promoted or was skipped.
    WaitlistLeave {
        show: ShowId,
        entry: WaitlistEntry,
        at: Millis,
    },
}

impl JournalEntry {
    /// Whether the group holding this entry is synced before it counts as committed. Claims,
    /// cancellations and waitlist changes are answered to buyers, and a show going live or
    /// closing changes what the order service and the schedule do: all synced at once. A
    /// seller's stream events (pin, unpin, flash start and end) may wait for the next sync.
    pub fn syncs_at_once(&self) -> bool {
        match self {
            Self::Event { event, .. } => {
                matches!(
                    event.event,
                    ShowEvent::ShowLive | ShowEvent::ShowClosed { .. }
                )
            }
            Self::Claim { .. }
            | Self::Cancel { .. }
            | Self::WaitlistJoin { .. }
            | Self::WaitlistLeave { .. } => true,
        }
    }
}

/// The place of an append in the journal's commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Debug, Clone)]
struct Durable {
    /// Every ticket up to and including this one is committed and synced.
    upto: u64,
    /// Every ticket up to and including this one is committed (written to the file, perhaps
    /// not yet synced); never behind `upto`.
    written: u64,
    failed: Option<String>,
}

/// Ticket numbering shared by every clone; the number is taken and the entry sent under this
/// one lock, so the channel (and therefore the commit) order is the ticket order.
type NextTicket = Arc<Mutex<u64>>;

/// A reserved place in the journal queue. Holding one guarantees the append cannot fail for
/// lack of room, so a caller reserves first, then changes state, then appends: a full queue
/// refuses the request before anything changed. Dropping it unused frees the place.
pub struct Reservation {
    permit: mpsc::OwnedPermit<(u64, JournalEntry)>,
    next: NextTicket,
}

impl Reservation {
    pub fn append(self, entry: JournalEntry) -> Ticket {
        // The counter is a plain integer: a panic elsewhere cannot leave it half-written.
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = *next;
        *next += 1;
        self.permit.send((ticket, entry));
        Ticket(ticket)
    }
}

/// What a show's journal holds, for replay.
#[derive(Debug, Default)]
pub struct ShowJournal {
    pub events: Vec<SequencedEvent>,
    /// Claim-log entries in position order: the claim record and, for a cancellation, when.
    pub log: Vec<(ClaimRecord, Option<Millis>)>,
    /// Waitlist changes in the order they happened: the entry, and `true` for a join, `false`
    /// for a removal.
    pub waitlist: Vec<(WaitlistEntry, bool)>,
}

/// The SQLite claim journal. Cheap to clone.
#[derive(Clone)]
pub struct SqliteJournal {
    tx: mpsc::Sender<(u64, JournalEntry)>,
    next: NextTicket,
    durable: watch::Receiver<Durable>,
    readers: Arc<Readers>,
    /// Where the writer records how long each group commit takes, once the server has given
    /// it a histogram ([`SqliteJournal::observe_commits`]): one atomic load per commit until
    /// then.
    commit_time: Arc<OnceLock<metrics::Histogram>>,
    /// Claim-log pages read from disk so far ([`SqliteJournal::log_reads`]).
    log_reads: Arc<std::sync::atomic::AtomicU64>,
}

fn storage(e: impl std::fmt::Display) -> JournalError {
    JournalError::Storage(e.to_string())
}

/// Read connections kept open between reads. The order service reads every live show's log
/// each round; a connection opened per read parsed the schema and opened the WAL every time,
/// which on a night of 50 shows cost more than the reads. Reads running at once beyond this
/// open a connection of their own, closed after use.
const IDLE_READERS: usize = 4;

/// The journal's read connections, each with its own cache of prepared statements.
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs `read` on an idle connection, or a new one when none is idle; the connection is
    /// kept for the next read unless the read failed (it may be what failed).
    fn with<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => super::open(&self.path).map_err(storage)?,
        };
        let out = read(&mut conn);
        if out.is_ok() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }
}

impl SqliteJournal {
    /// Opens the journal file and starts its writer thread. `queue_bound` is the most appends
    /// that may wait for a commit; beyond it reservations fail with [`JournalError::Full`].
    pub fn open(path: &Path, queue_bound: usize) -> Result<Self, JournalError> {
        Self::open_with(path, queue_bound, Duration::from_millis(EVENT_SYNC_MS))
    }

    /// [`Self::open`] with stream events synced at the latest `event_sync` after they were
    /// written, instead of [`EVENT_SYNC_MS`].
    pub fn open_with(
        path: &Path,
        queue_bound: usize,
        event_sync: Duration,
    ) -> Result<Self, JournalError> {
        let mut conn = super::open(path).map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        add_claimed_at(&mut conn).map_err(storage)?;
        let (tx, rx) = mpsc::channel(queue_bound.max(1));
        let (durable_tx, durable_rx) = watch::channel(Durable {
            upto: 0,
            written: 0,
            failed: None,
        });
        let wal = wal_path(path);
        let commit_time = Arc::new(OnceLock::new());
        let observed = commit_time.clone();
        std::thread::Builder::new()
            .name("nightmarket-journal".into())
            .spawn(move || writer(conn, &wal, event_sync, rx, durable_tx, &observed))
            .map_err(storage)?;
        Ok(Self {
            tx,
            next: Arc::new(Mutex::new(1)),
            durable: durable_rx,
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
            commit_time,
            log_reads: Arc::default(),
        })
    }

    /// Records the duration of every later group commit (its transaction and fsync) in
    /// `histogram`. The first histogram given stays.
    pub fn observe_commits(&self, histogram: metrics::Histogram) {
        let _ = self.commit_time.set(histogram);
    }

    /// Reserves room for one append, or says why there is none.
    pub fn reserve(&self) -> Result<Reservation, JournalError> {
        self.health()?;
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(Reservation {
                permit,
                next: self.next.clone(),
            }),
            Err(mpsc::error::TrySendError::Full(_)) => Err(JournalError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(JournalError::Failed("journal writer stopped".into()))
            }
        }
    }

    /// Reserves and appends in one step.
    pub fn try_append(&self, entry: JournalEntry) -> Result<Ticket, JournalError> {
        Ok(self.reserve()?.append(entry))
    }

    /// The newest ticket handed out. Waiting for it to be durable waits for every entry
    /// appended so far, e.g. the original of a duplicate claim.
    pub fn last_ticket(&self) -> Ticket {
        Ticket(
            self.next
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .saturating_sub(1),
        )
    }

    /// Waits until the entry with this ticket is committed and synced to disk.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), JournalError> {
        self.wait_until(|d| d.upto >= ticket.0).await
    }

    /// Waits until the entry with this ticket is committed, synced or not: enough for a
    /// seller's stream events (see the module documentation); [`Self::durable`] for anything
    /// that must survive a power loss.
    pub async fn written(&self, ticket: Ticket) -> Result<(), JournalError> {
        self.wait_until(|d| d.written >= ticket.0).await
    }

    /// Whether the entry with this ticket is committed and synced now.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        self.durable.borrow().upto >= ticket.0
    }

    async fn wait_until(&self, reached: impl Fn(&Durable) -> bool) -> Result<(), JournalError> {
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| reached(d) || d.failed.is_some())
            .await
            .map_err(|_| JournalError::Failed("journal writer stopped".into()))?;
        if reached(&state) {
            return Ok(());
        }
        Err(JournalError::Failed(
            state.failed.clone().unwrap_or_default(),
        ))
    }

    /// The journal's health, for readiness: `Err` once it has failed.
    pub fn health(&self) -> Result<(), JournalError> {
        match &self.durable.borrow().failed {
            Some(reason) => Err(JournalError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Everything journaled for one show, for replay after a restart. Blocking: call it from
    /// the blocking pool or before serving.
    pub fn load_show(&self, show: &ShowId) -> Result<ShowJournal, JournalError> {
        let conn = super::open(&self.readers.path).map_err(storage)?;
        let mut out = ShowJournal::default();
        let mut stmt = conn
            .prepare("SELECT event FROM show_events WHERE show_id = ?1 ORDER BY seq")
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![show.as_str()], |r| r.get::<_, String>(0))
            .map_err(storage)?;
        for row in rows {
            let text = row.map_err(storage)?;
            let ev: SequencedEvent =
                serde_json::from_str(&text).map_err(|e| JournalError::Corrupt(e.to_string()))?;
            out.events.push(ev);
        }
        // Replay wants each entry as it was journaled: a cancellation at its own instant.
        for row in log_rows(&conn, show, 0, i64::MAX)? {
            let cancelled = row.cancel()?;
            let at = row.at;
            out.log.push((row.record(at)?, cancelled.then_some(at)));
        }
        let mut stmt = conn
            .prepare(
                "SELECT kind, number, buyer_id, product_id, quantity, unit_price, at
                 FROM waitlist_log WHERE show_id = ?1 ORDER BY id",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![show.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(storage)?;
        for row in rows {
            let (kind, number, buyer, product, quantity, price, at) = row.map_err(storage)?;
            let entry = WaitlistEntry {
                number,
                buyer: BuyerId::parse(buyer).map_err(|e| corrupt(&e))?,
                product_id: ProductId::parse(product).map_err(|e| corrupt(&e))?,
                quantity,
                price: Dong::parse(price).map_err(|e| corrupt(&e))?,
                at,
            };
            out.waitlist.push((entry, kind == "join"));
        }
        Ok(out)
    }

    /// One page of a show's claim log, for the order service: the claims and cancellations at
    /// positions `from..`, in position order, at most `limit` entries; then, once the show has
    /// closed and the page still has room, the close marker at the position after the last
    /// entry. A reader past the marker (`from` beyond it) gets nothing. `None` when the journal
    /// holds nothing for the show. Blocking: call it from the blocking pool.
    pub fn read_log(
        &self,
        show: &ShowId,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<LogEntry>>, JournalError> {
        self.log_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers.with(|conn| read_log(conn, show, from, limit))
    }

    /// How many claim-log pages [`SqliteJournal::read_log`] has read (from every clone of this
    /// journal): what the order service's rounds cost the disk.
    pub fn log_reads(&self) -> u64 {
        self.log_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the show has closed: `None` when the journal holds nothing for it. Blocking.
    pub fn show_closed(&self, show: &ShowId) -> Result<Option<bool>, JournalError> {
        self.readers.with(|conn| show_closed(conn, show))
    }
}

/// See [`SqliteJournal::show_closed`].
fn show_closed(conn: &mut Connection, show: &ShowId) -> Result<Option<bool>, JournalError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM show_events WHERE show_id = ?1)
             OR EXISTS (SELECT 1 FROM claim_log WHERE show_id = ?1),
                EXISTS (SELECT 1 FROM show_events WHERE show_id = ?1
                        AND json_extract(event, '$.event.kind') = 'show_closed')",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![show.as_str()], |r| {
            Ok(r.get::<_, bool>(0)?.then_some(r.get::<_, bool>(1)?))
        })
    })
    .map_err(storage)
}

/// One row of a cached statement whose one parameter is the show's id.
fn row_of<T>(
    conn: &Connection,
    sql: &str,
    show: &ShowId,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?
        .query_row(params![show.as_str()], row)
}

/// See [`SqliteJournal::read_log`].
fn read_log(
    conn: &mut Connection,
    show: &ShowId,
    from: u64,
    limit: usize,
) -> Result<Option<Vec<LogEntry>>, JournalError> {
    // One snapshot for the rows and the close: read apart, a claim and the close committed
    // between the two reads would put the marker before a claim the page never saw.
    let tx = conn.transaction().map_err(storage)?;
    let known: bool = row_of(
        &tx,
        "SELECT EXISTS (SELECT 1 FROM show_events WHERE show_id = ?1)
                 OR EXISTS (SELECT 1 FROM claim_log WHERE show_id = ?1)",
        show,
        |r| r.get(0),
    )
    .map_err(storage)?;
    if !known {
        return Ok(None);
    }
    // Positions past what SQLite can hold are past the end of any log.
    let from_i = i64::try_from(from).unwrap_or(i64::MAX);
    let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(limit.min(4096));
    for row in log_rows(&tx, show, from_i, limit_i)? {
        let expected = from.saturating_add(out.len() as u64);
        if row.pos != expected {
            return Err(JournalError::Corrupt(format!(
                "claim log of show {show}: position {expected} is missing (next is {})",
                row.pos
            )));
        }
        out.push(row.entry(&tx, show)?);
    }
    if out.len() >= limit {
        return Ok(Some(out));
    }
    // Every claim before the close was durable before the close event (commit order), so a
    // journaled close means the rows above reached the end of the log.
    let close: Option<String> = row_of(
        &tx,
        "SELECT event FROM show_events
             WHERE show_id = ?1 AND json_extract(event, '$.event.kind') = 'show_closed'
             ORDER BY seq LIMIT 1",
        show,
        |r| r.get(0),
    )
    .optional()
    .map_err(storage)?;
    let Some(text) = close else {
        return Ok(Some(out));
    };
    let ev: SequencedEvent =
        serde_json::from_str(&text).map_err(|e| JournalError::Corrupt(e.to_string()))?;
    let ShowEvent::ShowClosed { final_stock } = ev.event else {
        return Err(JournalError::Corrupt(format!(
            "show {show}: event {} is not the close it was selected as",
            ev.seq
        )));
    };
    let len: u64 = row_of(
        &tx,
        "SELECT COALESCE(MAX(pos) + 1, 0) FROM claim_log WHERE show_id = ?1",
        show,
        |r| r.get(0),
    )
    .map_err(storage)?;
    // The marker sits at `len`: a page that ends there gets it, a reader past it does not.
    if from.saturating_add(out.len() as u64) == len {
        out.push(LogEntry::Close {
            pos: len,
            at: ev.at,
            final_stock,
        });
    }
    Ok(Some(out))
}

/// A `claim_log` row as read back for the order service.
struct LogRow {
    pos: u64,
    kind: String,
    claim_id: String,
    buyer: String,
    product: String,
    quantity: u32,
    unit_price: i64,
    flash_id: Option<u64>,
    at: Millis,
    claimed_at: Option<Millis>,
}

/// The `claim_log` rows of `show` at positions `from..`, in position order, at most `limit`.
fn log_rows(
    conn: &Connection,
    show: &ShowId,
    from: i64,
    limit: i64,
) -> Result<Vec<LogRow>, JournalError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT pos, kind, claim_id, buyer_id, product_id, quantity, unit_price,
                    flash_id, at, claimed_at
             FROM claim_log WHERE show_id = ?1 AND pos >= ?2 ORDER BY pos LIMIT ?3",
        )
        .map_err(storage)?;
    let rows = stmt
        .query_map(params![show.as_str(), from, limit], |r| {
            Ok(LogRow {
                pos: r.get(0)?,
                kind: r.get(1)?,
                claim_id: r.get(2)?,
                buyer: r.get(3)?,
                product: r.get(4)?,
                quantity: r.get(5)?,
                unit_price: r.get(6)?,
                flash_id: r.get(7)?,
                at: r.get(8)?,
                claimed_at: r.get(9)?,
            })
        })
        .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

fn corrupt(e: &dyn std::fmt::Display) -> JournalError {
    JournalError::Corrupt(e.to_string())
}

impl LogRow {
    /// `true` for a cancellation, `false` for a claim.
    fn cancel(&self) -> Result<bool, JournalError> {
        match self.kind.as_str() {
            "claim" => Ok(false),
            "cancel" => Ok(true),
            other => Err(corrupt(&format!("claim log kind {other:?}"))),
        }
    }

    /// The claim the row records (or cancels), stamped `at`.
    fn record(&self, at: Millis) -> Result<ClaimRecord, JournalError> {
        Ok(ClaimRecord {
            claim_id: ClaimId::parse(self.claim_id.as_str()).map_err(|e| corrupt(&e))?,
            buyer: BuyerId::parse(self.buyer.as_str()).map_err(|e| corrupt(&e))?,
            product_id: ProductId::parse(self.product.as_str()).map_err(|e| corrupt(&e))?,
            quantity: self.quantity,
            unit_price: Dong::parse(self.unit_price).map_err(|e| corrupt(&e))?,
            flash_id: self.flash_id,
            at,
            cancelled_at: None,
        })
    }

    /// The row as the order service reads it: a cancellation carries the claim as made.
    fn entry(self, conn: &Connection, show: &ShowId) -> Result<LogEntry, JournalError> {
        let cancel = self.cancel()?;
        let claimed_at = match (cancel, self.claimed_at) {
            (false, _) => self.at,
            (true, Some(at)) => at,
            (true, None) => claimed_at(conn, show, &self.claim_id)?,
        };
        let mut record = self.record(claimed_at)?;
        Ok(if cancel {
            // As the cancellation answered it: the claim, cancelled at `at`.
            record.cancelled_at = Some(self.at);
            LogEntry::Cancel {
                pos: self.pos,
                record,
                at: self.at,
            }
        } else {
            LogEntry::Claim {
                pos: self.pos,
                record,
            }
        })
    }
}

/// When a claim was made, from its own row: for cancel rows journaled before they carried it.
/// A claim id is taken once per show, so there is one such row.
fn claimed_at(conn: &Connection, show: &ShowId, claim_id: &str) -> Result<Millis, JournalError> {
    conn.query_row(
        "SELECT at FROM claim_log WHERE show_id = ?1 AND claim_id = ?2 AND kind = 'claim'",
        params![show.as_str(), claim_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| {
        JournalError::Corrupt(format!(
            "show {show}: claim {claim_id} is cancelled but was never journaled"
        ))
    })
}

/// Adds `claimed_at` to a journal that predates it. Under a write lock, so two processes opening
/// the same old file cannot both add it.
fn add_claimed_at(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let present: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('claim_log') WHERE name = 'claimed_at')",
        [],
        |r| r.get(0),
    )?;
    if !present {
        tx.execute_batch(ADD_CLAIMED_AT)?;
    }
    tx.commit()
}

/// The WAL file SQLite keeps beside the journal (`<file>-wal`).
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// The writer's own handle on the WAL, for syncing groups committed without a sync: an fsync
/// of the file is what a synced commit ends with. Opened at the first use (the WAL exists once
/// something was written) and kept: SQLite reuses the same file while the writer's connection
/// is open.
struct Wal {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl Wal {
    fn sync(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(&self.path)?);
        }
        self.file.as_ref().map_or(Ok(()), std::fs::File::sync_data)
    }
}

/// What the writer waits for next.
enum Next {
    Entry((u64, JournalEntry)),
    /// Written groups have waited their longest for a sync: do it now.
    SyncDue,
    Closed,
}

/// The writer thread: take what is queued, commit it in one transaction (synced unless it is
/// only stream events), publish the new committed and durable tickets; sync written groups
/// at the latest `event_sync` after they were written; repeat until every sender is gone.
fn writer(
    mut conn: Connection,
    wal: &Path,
    event_sync: Duration,
    mut rx: mpsc::Receiver<(u64, JournalEntry)>,
    durable: watch::Sender<Durable>,
    commit_time: &OnceLock<metrics::Histogram>,
) {
    // A runtime of the writer's own, only to wait for the queue with a deadline.
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "journal writer cannot start; refusing appends");
            durable.send_modify(|d| d.failed = Some(e.to_string()));
            return;
        }
    };
    let mut wal = Wal {
        path: wal.to_owned(),
        file: None,
    };
    let fail = |e: String| {
        tracing::error!(error = %e, "journal commit failed; refusing further appends");
        durable.send_modify(|d| d.failed = Some(e));
    };
    // The oldest written group not yet synced, and the newest ticket written.
    let mut unsynced: Option<(std::time::Instant, u64)> = None;
    let mut synced_mode = true;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let next = waiter.block_on(async {
            let recv = rx.recv();
            match unsynced {
                None => recv.await.map_or(Next::Closed, Next::Entry),
                Some((since, _)) => {
                    let due = since + event_sync;
                    match tokio::time::timeout_at(due.into(), recv).await {
                        Ok(got) => got.map_or(Next::Closed, Next::Entry),
                        Err(_) => Next::SyncDue,
                    }
                }
            }
        });
        let first = match next {
            Next::Entry(first) => first,
            Next::SyncDue | Next::Closed => {
                if let Some((_, last)) = unsynced.take() {
                    if let Err(e) = wal.sync() {
                        fail(format!("syncing the journal: {e}"));
                        return;
                    }
                    durable.send_modify(|d| d.upto = d.upto.max(last));
                }
                if matches!(next, Next::Closed) {
                    return;
                }
                continue;
            }
        };
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |(t, _)| *t);
        let sync = batch.iter().any(|(_, e)| e.syncs_at_once());
        let started = std::time::Instant::now();
        // `synchronous` is the connection's setting, changed only when the kind of group does.
        let mode = if sync == synced_mode {
            Ok(())
        } else {
            conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })
        };
        let committed = mode.and_then(|()| commit(&mut conn, &batch));
        if let Some(h) = commit_time.get() {
            h.record(started.elapsed());
        }
        if let Err(e) = committed {
            fail(e.to_string());
            return;
        }
        synced_mode = sync;
        if sync {
            // A synced commit's fsync covers every group written before it.
            unsynced = None;
            durable.send_modify(|d| {
                d.upto = last;
                d.written = last;
            });
        } else {
            unsynced = Some(unsynced.map_or((started, last), |(since, _)| (since, last)));
            durable.send_modify(|d| d.written = last);
        }
    }
}

fn commit(conn: &mut Connection, batch: &[(u64, JournalEntry)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut ev_stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO show_events (show_id, seq, at, event) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut wait_stmt = tx.prepare_cached(
            "INSERT INTO waitlist_log
                (show_id, kind, number, buyer_id, product_id, quantity, unit_price, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut log_stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO claim_log
                (show_id, pos, kind, claim_id, buyer_id, product_id, quantity, unit_price, flash_id, at,
                 claimed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for (_, entry) in batch {
            match entry {
                JournalEntry::Event { show, event } => {
                    let text = serde_json::to_string(event)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    ev_stmt.execute(params![show.as_str(), event.seq, event.at, text])?;
                }
                JournalEntry::Claim { show, pos, record } => {
                    insert_log(&mut log_stmt, show, *pos, "claim", record, record.at, None)?;
                }
                // A cancel row carries the claim's own instant too (see `claimed_at`).
                JournalEntry::Cancel {
                    show,
                    pos,
                    record,
                    at,
                } => {
                    insert_log(
                        &mut log_stmt,
                        show,
                        *pos,
                        "cancel",
                        record,
                        *at,
                        Some(record.at),
                    )?;
                }
                JournalEntry::WaitlistJoin { show, entry } => {
                    insert_waitlist(&mut wait_stmt, show, "join", entry, entry.at)?;
                }
                JournalEntry::WaitlistLeave { show, entry, at } => {
                    insert_waitlist(&mut wait_stmt, show, "leave", entry, *at)?;
                }
            }
        }
    }
    tx.commit()
}

/// One `claim_log` row: the claim `record` as a `kind` entry at `pos`, stamped `at`.
fn insert_log(
    stmt: &mut rusqlite::CachedStatement<'_>,
    show: &ShowId,
    pos: u64,
    kind: &str,
    record: &ClaimRecord,
    at: Millis,
    claimed_at: Option<Millis>,
) -> rusqlite::Result<()> {
    stmt.execute(params![
        show.as_str(),
        pos,
        kind,
        record.claim_id.as_str(),
        record.buyer.as_str(),
        record.product_id.as_str(),
        record.quantity,
        record.unit_price.get(),
        record.flash_id,
        at,
        claimed_at
    ])?;
    Ok(())
}

/// One `waitlist_log` row: `entry` joining or leaving (`kind`) at `at`.
fn insert_waitlist(
    stmt: &mut rusqlite::CachedStatement<'_>,
    show: &ShowId,
    kind: &str,
    entry: &WaitlistEntry,
    at: Millis,
) -> rusqlite::Result<()> {
    stmt.execute(params![
        show.as_str(),
        kind,
        entry.number,
        entry.buyer.as_str(),
        entry.product_id.as_str(),
        entry.quantity,
        entry.price.get(),
        at
    ])?;
    Ok(())
}
