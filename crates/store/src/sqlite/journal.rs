//! The claim journal: an append-only SQLite file (`journal.sqlite`) holding every show's
//! sequenced events and claim log (claims and cancellations).
//!
//! Appends are queued (bounded: `journal_queue`) to one writer thread that commits them in
//! groups: one transaction, one fsync, for however many entries arrived meanwhile. Each append
//! gets a [`Ticket`]; [`SqliteJournal::durable`] resolves once the entry's transaction is
//! committed. Entries are committed in ticket order, so "ticket N is durable" means every
//! earlier entry is too. If a commit fails the journal stops for good (fail-stop): the memory
//! state it backs is now ahead of the disk, and only a restart (which replays the disk) makes the
//! two agree again.

use std::path::Path;
use std::sync::{Arc, Mutex};

use nightmarket_domain::{
    BuyerId, ClaimId, ClaimRecord, Dong, Millis, ProductId, SequencedEvent, ShowId,
};
use rusqlite::{Connection, params};
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
    PRIMARY KEY (show_id, pos)
) WITHOUT ROWID;
"#;

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
}

/// The place of an append in the journal's commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Debug, Clone)]
struct Durable {
    /// Every ticket up to and including this one is committed.
    upto: u64,
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
}

/// The SQLite claim journal. Cheap to clone.
#[derive(Clone)]
pub struct SqliteJournal {
    tx: mpsc::Sender<(u64, JournalEntry)>,
    next: NextTicket,
    durable: watch::Receiver<Durable>,
    path: Arc<std::path::PathBuf>,
}

fn storage(e: impl std::fmt::Display) -> JournalError {
    JournalError::Storage(e.to_string())
}

impl SqliteJournal {
    /// Opens the journal file and starts its writer thread. `queue_bound` is the most appends
    /// that may wait for a commit; beyond it reservations fail with [`JournalError::Full`].
    pub fn open(path: &Path, queue_bound: usize) -> Result<Self, JournalError> {
        let conn = super::open(path).map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        let (tx, rx) = mpsc::channel(queue_bound.max(1));
        let (durable_tx, durable_rx) = watch::channel(Durable {
            upto: 0,
            failed: None,
        });
        std::thread::Builder::new()
            .name("nightmarket-journal".into())
            .spawn(move || writer(conn, rx, durable_tx))
            .map_err(storage)?;
        Ok(Self {
            tx,
            next: Arc::new(Mutex::new(1)),
            durable: durable_rx,
            path: Arc::new(path.to_owned()),
        })
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

    /// Waits until the entry with this ticket is committed to disk.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), JournalError> {
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| d.upto >= ticket.0 || d.failed.is_some())
            .await
            .map_err(|_| JournalError::Failed("journal writer stopped".into()))?;
        if state.upto >= ticket.0 {
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
        let conn = super::open(&self.path).map_err(storage)?;
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
        let mut stmt = conn
            .prepare(
                "SELECT kind, claim_id, buyer_id, product_id, quantity, unit_price, flash_id, at
                 FROM claim_log WHERE show_id = ?1 ORDER BY pos",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![show.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<u64>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .map_err(storage)?;
        let corrupt = |e: &dyn std::fmt::Display| JournalError::Corrupt(e.to_string());
        for row in rows {
            let (kind, claim_id, buyer, product, quantity, price, flash_id, at) =
                row.map_err(storage)?;
            let cancelled = kind == "cancel";
            let record = ClaimRecord {
                claim_id: ClaimId::parse(claim_id).map_err(|e| corrupt(&e))?,
                buyer: BuyerId::parse(buyer).map_err(|e| corrupt(&e))?,
                product_id: ProductId::parse(product).map_err(|e| corrupt(&e))?,
                quantity,
                unit_price: Dong::parse(price).map_err(|e| corrupt(&e))?,
                flash_id,
                at,
                cancelled_at: None,
            };
            out.log.push((record, cancelled.then_some(at)));
        }
        Ok(out)
    }
}

/// The writer thread: take what is queued, commit it in one transaction, publish the new
/// durable ticket; repeat until every sender is gone.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<(u64, JournalEntry)>,
    durable: watch::Sender<Durable>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |(t, _)| *t);
        match commit(&mut conn, &batch) {
            Ok(()) => {
                durable.send_modify(|d| d.upto = last);
            }
            Err(e) => {
                tracing::error!(error = %e, "journal commit failed; refusing further appends");
                durable.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[(u64, JournalEntry)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut ev_stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO show_events (show_id, seq, at, event) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut log_stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO claim_log
                (show_id, pos, kind, claim_id, buyer_id, product_id, quantity, unit_price, flash_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for (_, entry) in batch {
            match entry {
                JournalEntry::Event { show, event } => {
                    let text = serde_json::to_string(event)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    ev_stmt.execute(params![show.as_str(), event.seq, event.at, text])?;
                }
                JournalEntry::Claim { show, pos, record } => {
                    log_stmt.execute(params![
                        show.as_str(),
                        pos,
                        "claim",
                        record.claim_id.as_str(),
                        record.buyer.as_str(),
                        record.product_id.as_str(),
                        record.quantity,
                        record.unit_price.get(),
                        record.flash_id,
                        record.at
                    ])?;
                }
                JournalEntry::Cancel {
                    show,
                    pos,
                    record,
                    at,
                } => {
                    log_stmt.execute(params![
                        show.as_str(),
                        pos,
                        "cancel",
                        record.claim_id.as_str(),
                        record.buyer.as_str(),
                        record.product_id.as_str(),
                        record.quantity,
                        record.unit_price.get(),
                        record.flash_id,
                        at
                    ])?;
                }
            }
        }
    }
    tx.commit()
}
