//! The embedded inventory: books in memory, changes journaled to SQLite before they are
//! acknowledged (synced to disk, except a seller's stream events, which are written and synced
//! within `EVENT_SYNC_MS`: see the journal).
//!
//! Each show's book sits behind its own mutex; a claim holds it only for the decision and the
//! journal enqueue (microseconds), then waits for the group commit without it, so claims on one
//! show are decided one at a time but their fsyncs are shared. The decision's time is read
//! while the lock is held (see [`DecisionClock`]).
//!
//! A released show's book leaves memory `keep_for` after the release (as a Redis show's keys
//! expire): the journal keeps it, so its claim log still reads from disk and opening it again
//! replays it. Memory holds the shows being served, not every show the node ever served.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use nightmarket_domain::clock::SharedClock;
use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, JoinDecision, LineupEntry, LogCursor, LogPage, Millis,
    SequencedEvent, ShowBook, ShowId, ShowStatus, WaitlistEntry, WaitlistOutcome,
};
use nightmarket_store::{JournalEntry, JournalError, Reservation, SqliteJournal, Ticket};

use crate::{
    BookView, BuyerView, Cancel, Claim, Command, DecisionClock, Events, Inventory, InventoryError,
    Result, ShowStanding, StockView, WaitlistJoin, WaitlistLeave,
};

/// Most events a seller command can produce (end flash, unpin/pin, close).
const MAX_EVENTS_PER_COMMAND: usize = 3;

struct Slot {
    book: Mutex<ShowBook>,
    /// The show's newest events, for resume. Seller commands are rare (hundreds a show), so a
    /// generous bound keeps practically all of them.
    history: Mutex<VecDeque<SequencedEvent>>,
}

/// See the module documentation.
pub struct MemoryInventory {
    shows: RwLock<HashMap<ShowId, Arc<Slot>>>,
    /// Released shows still in memory, and when their books leave it.
    leaving: Mutex<HashMap<ShowId, Millis>>,
    /// The `keep_for` of the latest release: a settled show opened again (a late viewer)
    /// leaves memory as long after as a release would have let it.
    kept_after_release: Mutex<Option<Duration>>,
    journal: SqliteJournal,
    history_limit: usize,
    deciding_by: DecisionClock,
    /// The process's one clock, read under a show's lock to decide a step.
    clock: SharedClock,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| InventoryError::Internal("show lock poisoned".into()))
}

/// The next of the places a step reserved in the journal before it changed anything; running
/// out is a bug in the step's count (`what` says which), never a partial write.
fn next_room(room: &mut Vec<Reservation>, what: &str) -> Result<Reservation> {
    room.pop()
        .ok_or_else(|| InventoryError::Internal(what.to_owned()))
}

fn journal_err(e: JournalError) -> InventoryError {
    match e {
        JournalError::Full => InventoryError::Unavailable(e.to_string()),
        JournalError::Failed(_) | JournalError::Storage(_) => {
            InventoryError::Unavailable(e.to_string())
        }
        JournalError::Corrupt(_) => InventoryError::Internal(e.to_string()),
    }
}

impl MemoryInventory {
    /// `history_limit`: events kept per show for resume.
    pub fn new(journal: SqliteJournal, history_limit: usize) -> Self {
        Self {
            shows: RwLock::new(HashMap::new()),
            leaving: Mutex::new(HashMap::new()),
            kept_after_release: Mutex::new(None),
            journal,
            history_limit: history_limit.max(1),
            deciding_by: DecisionClock::Execution,
            clock: nightmarket_domain::clock::system(),
        }
    }

    /// Decides by `deciding_by` (the default is [`DecisionClock::Execution`]).
    pub fn deciding_by(mut self, deciding_by: DecisionClock) -> Self {
        self.deciding_by = deciding_by;
        self
    }

    /// Reads `clock` when it decides a step (the default is the system clock): the one the
    /// rest of the process reads, so that a test's manual clock ends flashes and passes
    /// deadlines here too.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The time a step is decided at: call it while holding the show's lock, so a step that
    /// waited for the lock is judged when it runs, not when it was asked for.
    fn decision_time(&self, caller: Millis) -> Millis {
        self.deciding_by
            .scripted(caller)
            .unwrap_or_else(|| self.clock.now())
    }

    /// Journal places for `n` entries, reserved before a step changes anything, so a full
    /// queue refuses the step whole.
    fn room_for(&self, n: usize) -> Result<Vec<Reservation>> {
        (0..n)
            .map(|_| self.journal.reserve())
            .collect::<Result<_, _>>()
            .map_err(journal_err)
    }

    /// Waits, without the show's lock, until what the step appended (`wait`) is durable.
    async fn durable(&self, wait: Option<Ticket>) -> Result<()> {
        match wait {
            Some(t) => self.journal.durable(t).await.map_err(journal_err),
            None => Ok(()),
        }
    }

    fn slot(&self, show: &ShowId) -> Result<Arc<Slot>> {
        let shows = self
            .shows
            .read()
            .map_err(|_| InventoryError::Internal("poisoned".into()))?;
        shows
            .get(show)
            .cloned()
            .ok_or_else(|| InventoryError::UnknownShow(show.clone()))
    }

    /// Books in memory now.
    #[cfg(any(test, feature = "testing"))]
    pub fn books_in_memory(&self) -> usize {
        self.shows.read().map_or(0, |s| s.len())
    }

    /// Lets `show`'s book leave memory `keep_for` from now (at once for zero), then lets go of
    /// every book whose time has come.
    fn leave_after(&self, show: &ShowId, keep_for: Duration) -> Result<()> {
        let at = self
            .clock
            .now()
            .saturating_add_unsigned(u64::try_from(keep_for.as_millis()).unwrap_or(u64::MAX));
        lock(&self.leaving)?.entry(show.clone()).or_insert(at);
        self.let_go()
    }

    /// Drops the books of released shows whose time in memory is over. Run when a show is
    /// opened or released, so the books kept follow the shows the node takes on.
    fn let_go(&self) -> Result<()> {
        let now = self.clock.now();
        let due: Vec<ShowId> = {
            let mut leaving = lock(&self.leaving)?;
            let due = leaving
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(show, _)| show.clone())
                .collect();
            leaving.retain(|_, at| *at > now);
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        let mut shows = self
            .shows
            .write()
            .map_err(|_| InventoryError::Internal("poisoned".into()))?;
        for show in &due {
            shows.remove(show);
            tracing::debug!(show = %show, "released show's book left memory");
        }
        Ok(())
    }

    fn remember(&self, slot: &Slot, events: &[SequencedEvent]) -> Result<()> {
        let mut h = lock(&slot.history)?;
        for ev in events {
            if h.len() == self.history_limit {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl Inventory for MemoryInventory {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }

    async fn open_show(&self, show: &ShowId, lineup: Vec<LineupEntry>) -> Result<()> {
        self.let_go()?;
        if self.slot(show).is_ok() {
            return Ok(());
        }
        let journal = self.journal.clone();
        let id = show.clone();
        let history_limit = self.history_limit;
        // Replay reads the disk: keep it off the async workers.
        let slot = tokio::task::spawn_blocking(move || -> Result<Slot> {
            let saved = journal.load_show(&id).map_err(journal_err)?;
            let mut book = ShowBook::new(id.clone(), lineup);
            for ev in &saved.events {
                book.replay_event(ev);
            }
            for (record, cancelled_at) in &saved.log {
                match cancelled_at {
                    None => book.replay_claim(record),
                    Some(at) => book.replay_cancel(&record.claim_id, *at),
                }
            }
            // Waitlists depend on nothing above but the show's status (a closed show keeps
            // none): promotions and skips were journaled as removals of their own.
            for (entry, joined) in &saved.waitlist {
                if *joined {
                    book.replay_waitlist_join(entry);
                } else {
                    book.replay_waitlist_leave(entry);
                }
            }
            book.check_invariants().map_err(|e| {
                InventoryError::Internal(format!("show {id}: journal replay broke an invariant: {e}"))
            })?;
            let skip = saved.events.len().saturating_sub(history_limit);
            let history = saved.events.into_iter().skip(skip).collect();
            if book.log_len() > 0 || book.seq() > 0 {
                tracing::info!(show = %id, seq = book.seq(), log = book.log_len(), "show restored from journal");
            }
            Ok(Slot { book: Mutex::new(book), history: Mutex::new(history) })
        })
        .await
        .map_err(|e| InventoryError::Internal(e.to_string()))??;
        let closed = lock(&slot.book)?.status() == ShowStatus::Closed;
        self.shows
            .write()
            .map_err(|_| InventoryError::Internal("poisoned".into()))?
            .entry(show.clone())
            .or_insert_with(|| Arc::new(slot));
        // A closed show opened again after a release (a late viewer) goes as it did then; one
        // never released yet goes when settlement releases it.
        let kept = *lock(&self.kept_after_release)?;
        match kept {
            Some(keep_for) if closed => self.leave_after(show, keep_for),
            _ => Ok(()),
        }
    }

    async fn command(&self, show: &ShowId, cmd: Command, now: Millis) -> Result<Events> {
        let slot = self.slot(show)?;
        let (events, ticket) = {
            let mut book = lock(&slot.book)?;
            let now = self.decision_time(now);
            // Room for every event the command may produce, before anything changes.
            let mut room = self.room_for(MAX_EVENTS_PER_COMMAND)?;
            let events = match cmd {
                Command::GoLive => book.go_live(now),
                Command::Close => book.close(now),
                Command::Pin(product) => book.pin(&product, now),
                Command::Unpin => book.unpin(now),
                Command::StartFlash(spec) => book.start_flash(&spec, now),
                Command::EndFlash { reason, only } => book.end_flash(reason, only, now),
            }?;
            let mut ticket = None;
            let mut sync = false;
            for ev in &events {
                let r = next_room(&mut room, "command produced too many events")?;
                let entry = JournalEntry::Event {
                    show: show.clone(),
                    event: ev.clone(),
                };
                sync |= entry.syncs_at_once();
                ticket = Some(r.append(entry));
            }
            (events, ticket.map(|t| (t, sync)))
        };
        // A seller's stream events are published once written; going live and closing once
        // synced too (see `SqliteJournal::written`).
        match ticket {
            Some((t, false)) => self.journal.written(t).await.map_err(journal_err)?,
            other => self.durable(other.map(|(t, _)| t)).await?,
        }
        self.remember(&slot, &events)?;
        Ok(events)
    }

    async fn claim_within(&self, show: &ShowId, claim: Claim) -> Result<ClaimDecision> {
        let Claim { req, now, deadline } = claim;
        let slot = self.slot(show)?;
        let (decision, wait): (ClaimDecision, Option<Ticket>) = {
            let mut book = lock(&slot.book)?;
            let now = self.decision_time(now);
            // A claim id already taken answers as always; anything else past its deadline is
            // refused before it changes anything.
            if deadline.is_some_and(|d| now > d) && book.claim_record(&req.claim_id).is_none() {
                return Err(InventoryError::DeadlinePassed);
            }
            let room = self.journal.reserve().map_err(journal_err)?;
            let decision = book.claim(&req, now);
            let wait = match &decision {
                ClaimDecision::Accepted(a) => Some(room.append(JournalEntry::Claim {
                    show: show.clone(),
                    pos: book.log_len() - 1,
                    record: a.record.clone(),
                })),
                // The original may still be on its way to disk: answer only once everything
                // appended so far is durable, so a retry never hears "accepted" early.
                ClaimDecision::Duplicate(_) => Some(self.journal.last_ticket()),
                ClaimDecision::Refused(_) => None,
            };
            (decision, wait)
        };
        self.durable(wait).await?;
        Ok(decision)
    }

    async fn cancel(&self, show: &ShowId, cancel: Cancel) -> Result<CancelDecision> {
        let Cancel {
            ref buyer,
            ref claim_id,
            now,
        } = cancel;
        let slot = self.slot(show)?;
        let (decision, wait) = {
            let mut book = lock(&slot.book)?;
            let now = self.decision_time(now);
            // Room for the cancellation and, for each waiting buyer it may promote or skip, a
            // claim and a removal: all reserved before anything changes.
            let waiting = book
                .claim_record(claim_id)
                .map_or(0, |r| book.waiting_count(&r.product_id));
            let mut room = self.room_for(1 + 2 * waiting)?;
            let cancel_pos = book.log_len();
            let decision = book.cancel(buyer, claim_id, now);
            let mut append = |entry: JournalEntry| -> Result<Ticket> {
                Ok(next_room(&mut room, "cancel outgrew its journal room")?.append(entry))
            };
            let wait = match &decision {
                CancelDecision::Cancelled {
                    record, waitlist, ..
                } => {
                    let mut last = append(JournalEntry::Cancel {
                        show: show.clone(),
                        pos: cancel_pos,
                        record: record.clone(),
                        at: now,
                    })?;
                    let mut pos = cancel_pos;
                    for outcome in waitlist {
                        if let WaitlistOutcome::Promoted { record, .. } = outcome {
                            pos += 1;
                            append(JournalEntry::Claim {
                                show: show.clone(),
                                pos,
                                record: record.clone(),
                            })?;
                        }
                        last = append(JournalEntry::WaitlistLeave {
                            show: show.clone(),
                            entry: outcome.entry().clone(),
                            at: now,
                        })?;
                    }
                    Some(last)
                }
                CancelDecision::AlreadyCancelled { .. } => Some(self.journal.last_ticket()),
                CancelDecision::UnknownClaim | CancelDecision::ShowNotLive => None,
            };
            (decision, wait)
        };
        self.durable(wait).await?;
        Ok(decision)
    }

    async fn waitlist_join(&self, show: &ShowId, join: WaitlistJoin) -> Result<JoinDecision> {
        let WaitlistJoin {
            ref buyer,
            ref product,
            quantity,
            now,
        } = join;
        let slot = self.slot(show)?;
        let (decision, wait) = {
            let mut book = lock(&slot.book)?;
            let now = self.decision_time(now);
            let room = self.journal.reserve().map_err(journal_err)?;
            let decision = book.waitlist_join(buyer, product, quantity, now);
            let wait = match &decision {
                JoinDecision::Joined { entry, .. } => {
                    Some(room.append(JournalEntry::WaitlistJoin {
                        show: show.clone(),
                        entry: entry.clone(),
                    }))
                }
                // As for a duplicate claim: answer once the original join is on disk.
                JoinDecision::AlreadyWaiting { .. } => Some(self.journal.last_ticket()),
                JoinDecision::Refused(_) => None,
            };
            (decision, wait)
        };
        self.durable(wait).await?;
        Ok(decision)
    }

    async fn waitlist_leave(
        &self,
        show: &ShowId,
        leave: WaitlistLeave,
    ) -> Result<Vec<WaitlistEntry>> {
        let (buyer, product, now) = (&leave.buyer, leave.product.as_ref(), leave.now);
        let slot = self.slot(show)?;
        let (removed, wait) = {
            let mut book = lock(&slot.book)?;
            // At most one entry per product goes.
            let most = if product.is_some() {
                1
            } else {
                book.lineup().len()
            };
            let mut room = self.room_for(most)?;
            // The only refusal: a product outside the lineup (leaving every list cannot fail).
            let removed = match (book.waitlist_leave(buyer, product), product) {
                (Ok(removed), _) => removed,
                (Err(_), Some(p)) => return Err(InventoryError::unknown_product(p)),
                (Err(e), None) => return Err(InventoryError::Internal(format!("{e:?}"))),
            };
            let mut wait = None;
            for entry in &removed {
                let r = next_room(&mut room, "leave outgrew its journal room")?;
                wait = Some(r.append(JournalEntry::WaitlistLeave {
                    show: show.clone(),
                    entry: entry.clone(),
                    at: now,
                }));
            }
            (removed, wait)
        };
        self.durable(wait).await?;
        Ok(removed)
    }

    async fn view(&self, show: &ShowId, buyer: Option<&BuyerId>, now: Millis) -> Result<BookView> {
        let slot = self.slot(show)?;
        let book = lock(&slot.book)?;
        let now = self.decision_time(now);
        Ok(BookView {
            status: book.status(),
            seq: book.seq(),
            pinned: book.pinned().map(|e| e.product.id.clone()),
            flash: book.flash().cloned(),
            price: book.current_price(now),
            lineup: book.lineup().to_vec(),
            my_claims: buyer.map(|b| book.claims_of(b)).unwrap_or_default(),
            my_waitlist: buyer.map(|b| book.waitlist_of(b)).unwrap_or_default(),
            accepted_claims: book.accepted_claims(),
        })
    }

    async fn buyer_view(
        &self,
        show: &ShowId,
        buyer: &BuyerId,
    ) -> Result<BuyerView, InventoryError> {
        let slot = self.slot(show)?;
        let book = lock(&slot.book)?;
        Ok(BuyerView {
            seq: book.seq(),
            stock_version: book.stock_version(),
            my_claims: book.claims_of(buyer),
            my_waitlist: book.waitlist_of(buyer),
        })
    }

    async fn standings(
        &self,
        shows: &[ShowId],
    ) -> Result<Vec<Option<ShowStanding>>, InventoryError> {
        shows
            .iter()
            .map(|show| {
                let slot = match self.slot(show) {
                    Ok(slot) => slot,
                    Err(InventoryError::UnknownShow(_)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let book = lock(&slot.book)?;
                Ok(Some(ShowStanding {
                    status: book.status(),
                    seq: book.seq(),
                    stock: book.stock(),
                }))
            })
            .collect()
    }

    async fn stock(&self, show: &ShowId, feed_from: u64) -> Result<StockView> {
        let slot = self.slot(show)?;
        let book = lock(&slot.book)?;
        Ok(StockView {
            seq: book.seq(),
            version: book.stock_version(),
            levels: book.stock(),
            log_len: book.log_len(),
            accepted_claims: book.accepted_claims(),
            flash_sold: book.flash().map(|f| (f.id, f.sold)),
            recent: book.recent_since(feed_from),
            waitlist: book
                .waitlist_notices_since(feed_from)
                .into_iter()
                .cloned()
                .collect(),
        })
    }

    async fn events_after(&self, show: &ShowId, after: u64, most: usize) -> Result<Option<Events>> {
        let slot = self.slot(show)?;
        let history = lock(&slot.history)?;
        let newest = history.back().map_or(0, |e| e.seq);
        if after >= newest {
            return Ok(if after == newest {
                Some(Vec::new())
            } else {
                None
            });
        }
        let oldest = history.front().map_or(0, |e| e.seq);
        if oldest > after + 1 {
            return Ok(None);
        }
        Ok(Some(
            history
                .iter()
                .filter(|e| e.seq > after)
                .take(most)
                .cloned()
                .collect(),
        ))
    }

    async fn claim_log(&self, show: &ShowId, from: &LogCursor, limit: usize) -> Result<LogPage> {
        let start = from.next_pos;
        // An open book in memory knows its log's length, and the journal never holds more of
        // it than the book (a claim is decided in the book, then journaled): the order service
        // asks every live show each round, and most have nothing new, so that answer costs no
        // journal read. A closed book is read, for its close marker.
        if let Ok(slot) = self.slot(show) {
            let book = lock(&slot.book)?;
            if book.status() != ShowStatus::Closed && book.log_len() <= start {
                return Ok(LogPage {
                    entries: Vec::new(),
                    next: from.clone(),
                });
            }
        }
        // The journal is the log: every acknowledged claim is on disk there, and it holds the
        // shows this node never opened too. The embedded journal pages by position alone.
        let journal = self.journal.clone();
        let id = show.clone();
        let read = tokio::task::spawn_blocking(move || journal.read_log(&id, start, limit))
            .await
            .map_err(|e| InventoryError::Internal(e.to_string()))?
            .map_err(journal_err)?;
        let entries = match read {
            Some(entries) => entries,
            // Opened here, nothing journaled yet: a scheduled show's log is empty.
            None if self.slot(show).is_ok() => Vec::new(),
            None => return Err(InventoryError::UnknownShow(show.clone())),
        };
        let next = match entries.last() {
            Some(last) => LogCursor {
                next_pos: last.pos() + 1,
                token: String::new(),
            },
            None => from.clone(),
        };
        Ok(LogPage { entries, next })
    }

    async fn release(&self, show: &ShowId, keep_for: Duration) -> Result<()> {
        // The journal keeps every show, and replaying a closed show gives a closed book: only
        // the book in memory goes, `keep_for` from now.
        let in_memory = match self.slot(show) {
            Ok(slot) => Some(lock(&slot.book)?.status()),
            Err(_) => None,
        };
        let status = match in_memory {
            Some(s) => Some(s),
            None => {
                let journal = self.journal.clone();
                let id = show.clone();
                tokio::task::spawn_blocking(move || journal.show_closed(&id))
                    .await
                    .map_err(|e| InventoryError::Internal(e.to_string()))?
                    .map_err(journal_err)?
                    // Journaled but not closed: it has gone live (a scheduled show journals
                    // nothing).
                    .map(|closed| {
                        if closed {
                            ShowStatus::Closed
                        } else {
                            ShowStatus::Live
                        }
                    })
            }
        };
        match status {
            Some(s) if s != ShowStatus::Closed => Err(InventoryError::not_releasable(s.as_str())),
            Some(_) => {
                *lock(&self.kept_after_release)? = Some(keep_for);
                match in_memory {
                    Some(_) => self.leave_after(show, keep_for),
                    None => Ok(()),
                }
            }
            None => Ok(()),
        }
    }

    fn dependency(&self) -> &'static str {
        "sqlite"
    }

    fn health(&self) -> Result<()> {
        self.journal.health().map_err(journal_err)
    }
}
