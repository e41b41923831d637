//! The order service: follows every live or closed show's claim log into the SQL store, and
//! settles each closed show into orders once the recorded log reconciles.
//!
//! - **Recording** runs continuously, in batches of up to [`SettlerLimits::batch`] entries:
//!   each batch and the checkpoint that follows it commit in one transaction, so once a batch
//!   is recorded, losing the inventory (a Redis failure) cannot erase it, and a restarted
//!   service resumes at the checkpoint.
//! - **Settlement** starts when the recorded log reaches the close marker. [`reconcile`] checks
//!   it against the counters at the close and the show's rules; a mismatch stops that show and
//!   is kept with a report. A balanced show becomes orders, lines, checkouts and their first
//!   status in one transaction, with ids derived from the show and buyer, so a rerun changes
//!   nothing. Only then may the inventory let the show's keys expire.
//!
//! Any number of instances may run: a checkpoint moves by compare-and-set, and settling is
//! guarded in the transaction, so two instances produce the same orders as one.

pub mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::clock::SharedClock;
use nightmarket_domain::{LogCursor, LogEntry, LogPage, Millis, RecordedEntry, ShowId};
use nightmarket_inventory::{Inventory, InventoryError};
use nightmarket_store::{
    CloseMarker, LogCheckpoint, SettleOutcome, SettlePlan, SettlementRow, Store, StoreError,
    WebhookEvent,
};
use tokio::sync::{Notify, watch};

pub use reconcile::{OverLimit, ProductAccount, Report, reconcile};

/// Bounds and timing of the order service.
#[derive(Debug, Clone)]
pub struct SettlerLimits {
    /// Claim-log entries read and recorded per batch.
    pub batch: usize,
    /// Batches one show may record per round before the others get their turn.
    pub batches_per_show: usize,
    /// Shows looked at per round.
    pub shows_per_round: usize,
    /// Pause between rounds when nothing woke the service.
    pub poll: Duration,
    /// How long after settlement an order may stay unpaid before it is cancelled.
    pub payment_window: Duration,
    /// How long a settled show's inventory keys are kept (for late readers) before they expire.
    pub keep_settled: Duration,
}

impl Default for SettlerLimits {
    fn default() -> Self {
        Self {
            batch: 5_000,
            batches_per_show: 40,
            shows_per_round: 100,
            poll: Duration::from_millis(1_000),
            payment_window: Duration::from_secs(24 * 3_600),
            keep_settled: Duration::from_secs(24 * 3_600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("show {0} not found")]
    UnknownShow(ShowId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

impl SettleError {
    /// A stable code for logs, the CLI and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownShow(_) => "unknown_show",
            Self::Store(StoreError::Refused { code, .. }) => code,
            Self::Store(_) => "store_unavailable",
            Self::Inventory(InventoryError::UnknownShow(_)) => "claim_log_missing",
            Self::Inventory(_) => "inventory_unavailable",
        }
    }
}

/// What recording one show did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Entries recorded by this call.
    pub entries: u64,
    /// The close marker, once recorded (by this call or before).
    pub close: Option<CloseMarker>,
}

/// Where a show stands with the order service.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// The show is still live, or its close is not recorded yet.
    Recording { recorded_to: u64 },
    /// The recorded log does not reconcile; nothing was settled.
    Mismatch(Report),
    /// Settled now or before.
    Settled {
        row: SettlementRow,
        report: Report,
        /// False when an earlier run (or another instance) had settled it.
        now: bool,
    },
    /// A dry run: the log reconciles (or not) and nothing was written.
    WouldSettle(Report),
}

/// Builds the `show.settled` webhook event for a settled show.
pub type SettledEvent = Arc<dyn Fn(&ShowId, &Report, Millis) -> WebhookEvent + Send + Sync>;

/// The order service. See the crate documentation.
pub struct Settler {
    store: Arc<Store>,
    inventory: Arc<dyn Inventory>,
    limits: SettlerLimits,
    /// Recorded as the actor of settlements and first order statuses.
    actor: String,
    event: Option<SettledEvent>,
    wake: Notify,
    clock: SharedClock,
    /// How long each settlement made by [`Settler::round`] takes (a no-op until given one).
    settle_time: metrics::Histogram,
    /// Shows whose settling failed in a round, the outcome unknown: the store may have
    /// committed a settlement whose answer was lost. Such a show is no longer among the shows
    /// to settle, so the next round asks about it here and releases its inventory keys if it
    /// did settle. At most [`UNSURE_SHOWS`] are kept.
    unsure: std::sync::Mutex<std::collections::BTreeSet<ShowId>>,
    /// Where this service last left each open show's checkpoint: a round asks every live show
    /// for news, and reading the checkpoint back from the store each time cost a query per show
    /// per round. Another instance moving a checkpoint on is seen when this one's write does
    /// not move it (the write compares), and the checkpoint is read again. At most
    /// [`CHECKPOINTS_KEPT`] are kept.
    checkpoints: std::sync::Mutex<std::collections::HashMap<ShowId, LogCursor>>,
}

/// Most open shows' checkpoints [`Settler`] keeps in memory; past it they are forgotten and read
/// from the store again.
pub const CHECKPOINTS_KEPT: usize = 10_000;

/// Most shows kept to be asked about again after a settlement with an unknown outcome. Past
/// it, a show's keys are released at the latest when an operator settles it again.
pub const UNSURE_SHOWS: usize = 1_000;

impl std::fmt::Debug for Settler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settler")
            .field("limits", &self.limits)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Settler {
    pub fn new(store: Arc<Store>, inventory: Arc<dyn Inventory>, limits: SettlerLimits) -> Self {
        Self {
            store,
            inventory,
            limits: SettlerLimits {
                batch: limits.batch.max(1),
                batches_per_show: limits.batches_per_show.max(1),
                shows_per_round: limits.shows_per_round.max(1),
                ..limits
            },
            actor: "order-service".into(),
            event: None,
            wake: Notify::new(),
            clock: nightmarket_domain::clock::system(),
            settle_time: metrics::Histogram::noop(),
            unsure: std::sync::Mutex::default(),
            checkpoints: std::sync::Mutex::default(),
        }
    }

    /// Who settlements are recorded as (e.g. the node, or an operator running the CLI).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Enqueue this event in the settlement transaction.
    pub fn with_event(mut self, event: SettledEvent) -> Self {
        self.event = Some(event);
        self
    }

    /// The clock settlement instants and payment deadlines are taken from.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Records the duration of each settlement the service's rounds make in `histogram` (the
    /// server's `nightmarket_settlement_seconds`).
    pub fn with_settle_time(mut self, histogram: metrics::Histogram) -> Self {
        self.settle_time = histogram;
        self
    }

    /// Starts a round now rather than at the next poll (a show just closed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records what is new in the show's claim log, up to `batches` batches.
    ///
    /// The next page is read while the current one is written: the inventory read and the
    /// store write each take about half of a batch's time, and they use different machines
    /// (or cores). A page read ahead is used only if this recorder's write moved the
    /// checkpoint to where the page starts; otherwise it is dropped and the checkpoint
    /// re-read.
    pub async fn record(&self, show: &ShowId, batches: usize) -> Result<Recorded, SettleError> {
        let known = self.known_checkpoint(show);
        let outcome = self.record_from(show, batches, known).await;
        // A failure leaves the checkpoint unknown (a write may have committed unseen).
        if outcome.is_err() {
            self.forget_checkpoint(show);
        }
        outcome
    }

    fn known_checkpoint(&self, show: &ShowId) -> Option<LogCursor> {
        self.checkpoints.lock().ok()?.get(show).cloned()
    }

    fn forget_checkpoint(&self, show: &ShowId) {
        if let Ok(mut known) = self.checkpoints.lock() {
            known.remove(show);
        }
    }

    /// The show's checkpoint as the store has it, kept for the next round.
    async fn stored_checkpoint(&self, show: &ShowId) -> Result<LogCheckpoint, SettleError> {
        let cp = self.store.log_checkpoint(show).await?;
        self.keep_checkpoint(show, &cp);
        Ok(cp)
    }

    /// Keeps `cp` as the show's checkpoint while the show is open; a closed show's is not
    /// needed again.
    fn keep_checkpoint(&self, show: &ShowId, cp: &LogCheckpoint) {
        let Ok(mut known) = self.checkpoints.lock() else {
            return;
        };
        if cp.close.is_some() {
            known.remove(show);
            return;
        }
        if known.len() >= CHECKPOINTS_KEPT && !known.contains_key(show) {
            known.clear();
        }
        known.insert(show.clone(), cp.cursor.clone());
    }

    async fn record_from(
        &self,
        show: &ShowId,
        batches: usize,
        known: Option<LogCursor>,
    ) -> Result<Recorded, SettleError> {
        let mut out = Recorded::default();
        let batches = batches.max(1);
        let mut cp = match known {
            Some(cursor) => LogCheckpoint {
                cursor,
                close: None,
            },
            None => self.stored_checkpoint(show).await?,
        };
        let mut ahead: Option<LogPage> = None;
        for round in 1..=batches {
            if cp.close.is_some() {
                out.close = cp.close;
                return Ok(out);
            }
            let page = match ahead.take() {
                Some(page) => page,
                None => {
                    self.inventory
                        .claim_log(show, &cp.cursor, self.limits.batch)
                        .await?
                }
            };
            if page.entries.is_empty() {
                return Ok(out);
            }
            let entries: Vec<RecordedEntry> = page
                .entries
                .iter()
                .filter_map(RecordedEntry::from_entry)
                .collect();
            let close = page.entries.iter().find_map(|e| match e {
                LogEntry::Close {
                    pos,
                    at,
                    final_stock,
                } => Some(CloseMarker {
                    pos: *pos,
                    at: *at,
                    final_stock: final_stock.clone(),
                }),
                _ => None,
            });
            // Positions follow the cursor without gaps; anything else means the inventory and
            // the checkpoint disagree, which settlement must not paper over.
            let expected_next = cp.cursor.next_pos + entries.len() as u64;
            let gapless = entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.pos == cp.cursor.next_pos + i as u64)
                && close.as_ref().is_none_or(|c| c.pos == expected_next);
            if !gapless {
                return Err(SettleError::Store(StoreError::Refused {
                    code: "log_gap",
                    message: format!(
                        "show {show}: the claim log page after position {} is not contiguous",
                        cp.cursor.next_pos
                    ),
                }));
            }
            let next = LogCursor {
                next_pos: expected_next,
                token: page.next.token.clone(),
            };
            let now = self.clock.now();
            let write =
                self.store
                    .record_claim_log(show, &cp.cursor, &entries, &next, close.as_ref(), now);
            // Nothing follows a close, and the last round reads nothing it would not use.
            let read_on = close.is_none() && round < batches;
            let read = async {
                if read_on {
                    Some(
                        self.inventory
                            .claim_log(show, &next, self.limits.batch)
                            .await,
                    )
                } else {
                    None
                }
            };
            let (moved, read) = tokio::join!(write, read);
            if moved? {
                out.entries += entries.len() as u64;
                if close.is_some() {
                    self.forget_checkpoint(show);
                    out.close = close;
                    return Ok(out);
                }
                cp = LogCheckpoint {
                    cursor: next,
                    close: None,
                };
                self.keep_checkpoint(show, &cp);
                ahead = read.transpose()?;
            } else {
                // Another instance recorded this batch first (or this one's known checkpoint
                // was behind): read on from the stored checkpoint.
                cp = self.stored_checkpoint(show).await?;
            }
        }
        Ok(out)
    }

    /// Reconciles a recorded, closed show and settles it (or, with `dry_run`, reports what
    /// settling would find). Records what is left of the log first.
    pub async fn settle(&self, show: &ShowId, dry_run: bool) -> Result<Standing, SettleError> {
        let row = self
            .store
            .show(show)
            .await?
            .ok_or_else(|| SettleError::UnknownShow(show.clone()))?;
        if let Some(done) = self.store.settlement(show).await?
            && done.state == nightmarket_store::SettlementState::Settled
        {
            let report = self.report_of(&row, show, &done.report).await?;
            if !dry_run {
                self.release(show).await;
            }
            return Ok(Standing::Settled {
                row: done,
                report,
                now: false,
            });
        }
        let close = if dry_run {
            self.store.log_checkpoint(show).await?.close
        } else {
            self.record(show, usize::MAX).await?.close
        };
        let Some(close) = close else {
            let cp: LogCheckpoint = self.store.log_checkpoint(show).await?;
            return Ok(Standing::Recording {
                recorded_to: cp.cursor.next_pos,
            });
        };
        let tally = self.tally(&row, show).await?;
        let report = reconcile(&row, &close, &tally);
        let now = self.clock.now();
        let json = serde_json::to_string(&report)
            .map_err(|e| SettleError::Store(StoreError::Corrupt(e.to_string())))?;
        if dry_run {
            return Ok(Standing::WouldSettle(report));
        }
        if !report.balanced {
            tracing::warn!(show = %show, problems = ?report.problems, "settlement stopped: the claim log does not reconcile");
            self.store
                .record_mismatch(show, &json, &self.actor, now)
                .await?;
            return Ok(Standing::Mismatch(report));
        }
        let event = self.event.as_ref().map(|f| f(show, &report, now));
        let outcome = self
            .store
            .settle_show(&SettlePlan {
                show: &row,
                close: &close,
                report: json,
                claims: tally.products.iter().map(|p| p.claims).sum(),
                cancels: tally.products.iter().map(|p| p.cancels).sum(),
                payment_window_ms: millis(self.limits.payment_window),
                by: &self.actor,
                at: now,
                event: event.as_ref(),
            })
            .await?;
        let (row, now) = match outcome {
            SettleOutcome::Settled(row) => {
                tracing::info!(show = %show, orders = row.orders, units = row.units, revenue = row.revenue, "show settled");
                (row, true)
            }
            SettleOutcome::AlreadySettled(row) => (row, false),
        };
        self.release(show).await;
        Ok(Standing::Settled { row, report, now })
    }

    /// What the show's recorded log adds up to, each product held to its buyer limit.
    async fn tally(
        &self,
        row: &nightmarket_store::ShowRow,
        show: &ShowId,
    ) -> Result<nightmarket_store::LogTally, SettleError> {
        let limits: Vec<_> = row
            .lineup
            .iter()
            .map(|l| (l.product.id.clone(), l.buyer_limit))
            .collect();
        Ok(self.store.log_tally(show, &limits).await?)
    }

    /// The report kept with a settlement. A settled show's log never changes, so the stored
    /// report stands; it is recomputed only when it cannot be read back (a settlement written
    /// by a version that kept another shape).
    async fn report_of(
        &self,
        row: &nightmarket_store::ShowRow,
        show: &ShowId,
        stored: &str,
    ) -> Result<Report, SettleError> {
        if let Ok(report) = serde_json::from_str::<Report>(stored) {
            return Ok(report);
        }
        let close = self
            .store
            .log_checkpoint(show)
            .await?
            .close
            .unwrap_or(CloseMarker {
                pos: 0,
                at: 0,
                final_stock: Vec::new(),
            });
        let tally = self.tally(row, show).await?;
        Ok(reconcile(row, &close, &tally))
    }

    /// Settlement is recorded: the inventory may let the show's keys expire. A failure here
    /// only delays expiry (the next settle of the show asks again), so it is logged, not
    /// returned.
    async fn release(&self, show: &ShowId) {
        if let Err(e) = self.inventory.release(show, self.limits.keep_settled).await {
            tracing::warn!(show = %show, error = %e, "could not release a settled show's inventory keys");
        }
    }

    /// One pass over every show the service follows: record, and settle the closed ones.
    /// Returns how many shows were settled by this pass. A failing show is logged and skipped;
    /// the others go on.
    pub async fn round(&self) -> Result<usize, SettleError> {
        let shows = self
            .store
            .shows_to_settle(self.limits.shows_per_round)
            .await?;
        // Settlements that may have committed unseen: once settled, settling again only
        // releases the show's keys.
        let unsure: Vec<ShowId> = self
            .unsure
            .lock()
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        for show in unsure {
            if self.settle(&show, false).await.is_ok()
                && let Ok(mut u) = self.unsure.lock()
            {
                u.remove(&show);
            }
        }
        let mut settled = 0;
        for show in shows {
            match self.record(&show, self.limits.batches_per_show).await {
                Ok(Recorded { close: Some(_), .. }) => {
                    let started = std::time::Instant::now();
                    let outcome = self.settle(&show, false).await;
                    if matches!(outcome, Ok(Standing::Settled { now: true, .. })) {
                        self.settle_time.record(started.elapsed());
                    }
                    match outcome {
                        Ok(Standing::Settled { now: true, .. }) => settled += 1,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(show = %show, code = e.code(), error = %e, "settlement failed; retried next round");
                            if let Ok(mut u) = self.unsure.lock()
                                && u.len() < UNSURE_SHOWS
                            {
                                u.insert(show.clone());
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(show = %show, code = e.code(), error = %e, "recording the claim log failed; retried next round")
                }
            }
        }
        Ok(settled)
    }

    /// Runs rounds until `shutdown` turns true: every [`SettlerLimits::poll`], or at once when
    /// woken.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.round().await {
                tracing::warn!(code = e.code(), error = %e, "order service round failed");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.limits.poll) => {}
            }
        }
    }
}
