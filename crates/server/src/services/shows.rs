//! Shows as this node serves them: a stored show loaded into the inventory (replaying its
//! journal) and the fan-out, commands run on it, the store made to follow the transitions the
//! inventory decided, and the rules of creating a show and of taking one live by hand.

use std::sync::{Arc, OnceLock};

use nightmarket_auth::{Claims, Role};
use nightmarket_domain::{
    CommandError, LineupEntry, LogCursor, ProductId, SellerId, SequencedEvent, ShowEvent, ShowId,
    ShowStatus, ShowTiming, Slot,
};
use nightmarket_inventory::{BookView, Command, Inventory, InventoryError};
use nightmarket_orders::Settler;
use nightmarket_store::{Keyset, Paged, ShowRow, Store, TransitionBy, TransitionRow};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::CreateLineupItem;

use crate::clock::SharedClock;
use crate::config::{Config, MarketTiming};
use crate::convert::{rfc3339, show_body};
use crate::live::{Commander, Live, Opening, ShowIdentity, ShowRuntime};
use crate::services::catalog::build_lineup;
use crate::services::market::{admission_issues, min_stars, not_admitted};
use crate::services::webhooks::show_event;
use crate::services::{ServiceError, ServiceResult, field, may_act_for, new_id};

/// Where a stored show stands in the inventory, when this node serves it.
pub struct Standing {
    pub status: ShowStatus,
    /// Stock left per product, once the show has gone live.
    pub stock: Option<Vec<(ProductId, u32)>>,
    /// The show's sequence number (0 when this node does not serve it).
    pub seq: u64,
}

impl Standing {
    /// The store's word, for a show this node does not serve.
    fn stored(row: &ShowRow) -> Self {
        Self {
            status: row.status,
            stock: None,
            seq: 0,
        }
    }
}

/// The shows this node serves, and the rules that change them.
pub struct Shows {
    store: Arc<Store>,
    inventory: Arc<dyn Inventory>,
    live: Arc<Live>,
    clock: SharedClock,
    timing: MarketTiming,
    max_lineup: usize,
    /// The order service when this node runs it: woken as soon as a show closes here.
    settler: OnceLock<Arc<Settler>>,
}

impl Shows {
    pub fn new(
        store: Arc<Store>,
        inventory: Arc<dyn Inventory>,
        live: Arc<Live>,
        clock: SharedClock,
        config: &Config,
    ) -> Self {
        Self {
            store,
            inventory,
            live,
            clock,
            timing: config.market.clone(),
            max_lineup: config.limits.max_lineup,
            settler: OnceLock::new(),
        }
    }

    /// The order service this node runs, to wake when a show closes.
    pub fn wake_on_close(&self, settler: Arc<Settler>) {
        let _ = self.settler.set(settler);
    }

    /// The runtime of a show this node serves already.
    pub fn runtime(&self, id: &ShowId) -> Option<Arc<ShowRuntime>> {
        self.live.runtime(id)
    }

    /// The runtime of a stored show, loading it if this node does not serve it yet.
    pub async fn open(&self, id: &ShowId) -> ServiceResult<Arc<ShowRuntime>> {
        if let Some(rt) = self.runtime(id) {
            return Ok(rt);
        }
        let row = self
            .store
            .show(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("show {id}")))?;
        Ok(self.load(&row).await?)
    }

    /// Loads a stored show into the inventory (replaying its journal) and the fan-out.
    ///
    /// A closed show the inventory no longer holds (settled, released, its Redis keys expired)
    /// is refused with `NotLive`: opening it would create it afresh, scheduled with full stock.
    pub async fn load(&self, row: &ShowRow) -> Result<Arc<ShowRuntime>, InventoryError> {
        if let Some(rt) = self.runtime(&row.id) {
            return Ok(rt);
        }
        if self.released(row).await? {
            return Err(CommandError::NotLive(ShowStatus::Closed.as_str()).into());
        }
        let lineup: Vec<LineupEntry> = row
            .lineup
            .iter()
            .map(|l| LineupEntry::opening(l.product.clone(), l.stock, l.buyer_limit))
            .collect();
        self.inventory.open_show(&row.id, lineup).await?;
        let view = self.inventory.view(&row.id, None, self.clock.now()).await?;
        // Where this node starts telling waitlist news: what happened before, it did not see.
        let log_len = self.inventory.stock(&row.id, u64::MAX).await?.log_len;
        let seller_name = match self.store.seller(&row.seller_id).await {
            Ok(Some(s)) => s.name,
            _ => row.seller_id.to_string(),
        };
        let identity = ShowIdentity {
            id: row.id.clone(),
            seller_id: row.seller_id.clone(),
            seller_name,
            title: row.title.clone(),
        };
        let opening = Opening::from_view(&view, log_len);
        let (rt, registered) = self.live.open(identity, opening);
        // The store's status follows the book, which the journal (or Redis) made
        // authoritative: a node that stopped between the two catches up here.
        if registered && view.status != row.status {
            self.record_transition(&row.id, view.status, "recovery")
                .await;
        }
        Ok(rt)
    }

    /// Whether the inventory has let go of this show: the store says closed, and the inventory
    /// holds nothing for it. Only a closed show can be released, and the store records the close
    /// only after the inventory made it, so an open show the inventory does not hold yet is
    /// simply new.
    async fn released(&self, row: &ShowRow) -> Result<bool, InventoryError> {
        if row.status != ShowStatus::Closed {
            return Ok(false);
        }
        match self
            .inventory
            .claim_log(&row.id, &LogCursor::default(), 0)
            .await
        {
            Ok(_) => Ok(false),
            Err(InventoryError::UnknownShow(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Every show this node serves now.
    pub fn served(&self) -> Vec<Arc<ShowRuntime>> {
        self.live.all()
    }

    /// Runs a command on a show: inventory, then publish each event once, in order, behind the
    /// show's gate; a transition is then recorded in the store, after the gate, so a slow store
    /// never holds up the show's next command. Transitions are recorded in the order the gate let
    /// their commands through, and before this returns.
    pub async fn command(
        &self,
        rt: &Arc<ShowRuntime>,
        cmd: Command,
        actor: &str,
    ) -> Result<(Vec<SequencedEvent>, u64), InventoryError> {
        self.command_as(rt, cmd, &Commander::new(actor)).await
    }

    /// [`Shows::command`] by `by`, whose reason (if any) is recorded with the transition the
    /// command makes, in the same store write.
    pub async fn command_as(
        &self,
        rt: &Arc<ShowRuntime>,
        cmd: Command,
        by: &Commander,
    ) -> Result<(Vec<SequencedEvent>, u64), InventoryError> {
        let done = self.live.command(rt, cmd, Some(by)).await?;
        for (ev, by) in self.live.follow_ups(rt).await {
            self.after_event(rt, &ev, &by).await;
        }
        Ok((done.events, done.seq))
    }

    async fn after_event(&self, rt: &Arc<ShowRuntime>, ev: &SequencedEvent, by: &Commander) {
        let by = TransitionBy {
            actor: &by.actor,
            reason: by.reason,
        };
        match &ev.event {
            ShowEvent::ShowLive => {
                self.record_transition(&rt.id, ShowStatus::Live, by).await;
            }
            ShowEvent::ShowClosed { .. } => {
                self.record_transition(&rt.id, ShowStatus::Closed, by).await;
                // Final stock goes out at once rather than at the next tick.
                self.live.refresh(rt).await;
            }
            _ => {}
        }
    }

    /// Makes the store's status follow a transition the inventory made: a compare-and-set from
    /// each status the show may have come from, recording the actor and reason of `by` and
    /// enqueueing the webhook event in the same transaction. Of several nodes (or a node and its
    /// own recovery) exactly one records it.
    pub async fn record_transition<'a>(
        &self,
        id: &ShowId,
        to: ShowStatus,
        by: impl Into<TransitionBy<'a>>,
    ) {
        let by = by.into();
        let (froms, name): (&[ShowStatus], &str) = match to {
            ShowStatus::Live => (&[ShowStatus::Scheduled], "show.live"),
            ShowStatus::Closed => (&[ShowStatus::Live, ShowStatus::Scheduled], "show.closed"),
            ShowStatus::Scheduled => return,
        };
        let row = match self.store.show(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(show = %id, error = %e, "cannot record transition");
                return;
            }
        };
        let now = self.clock.now();
        let mut body = show_body(&row, to);
        match to {
            ShowStatus::Live => body.live_at = Some(now),
            _ => body.closed_at = Some(now),
        }
        let event = show_event(name, &body, now);
        for from in froms {
            match self
                .store
                .transition(id, *from, to, now, by, Some(&event))
                .await
            {
                Ok(true) => {
                    tracing::info!(show = %id, from = from.as_str(), to = to.as_str(), actor = by.actor, reason = by.reason, "show transition");
                    if to == ShowStatus::Closed
                        && let Some(settler) = self.settler.get()
                    {
                        // Settle now rather than at the next poll.
                        settler.wake();
                    }
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(show = %id, error = %e, "cannot record transition");
                    return;
                }
            }
        }
    }

    /// What the inventory holds of a show this node serves; `None` when it serves none.
    pub async fn view(&self, id: &ShowId) -> ServiceResult<Option<BookView>> {
        if self.runtime(id).is_none() {
            return Ok(None);
        }
        Ok(Some(self.inventory.view(id, None, self.clock.now()).await?))
    }

    /// Where a stored show stands: the inventory's word when this node serves it, else the
    /// store's. The same read as a list's ([`Shows::standings`]), for one show.
    pub async fn standing(&self, row: &ShowRow) -> ServiceResult<Standing> {
        let mut one = self.standings(std::slice::from_ref(row)).await?;
        Ok(one.pop().unwrap_or_else(|| Standing::stored(row)))
    }

    /// Where each stored show stands, in the order given: the inventory's word for the shows
    /// this node serves, read in one request for them all (not one per show: on Redis that was
    /// a round trip per row of a page), the store's for the rest and for a show the inventory
    /// no longer holds.
    pub async fn standings(&self, rows: &[ShowRow]) -> ServiceResult<Vec<Standing>> {
        // Decided once, so the inventory's answers line up with the rows they belong to.
        let served: Vec<bool> = rows
            .iter()
            .map(|row| self.runtime(&row.id).is_some())
            .collect();
        let ids: Vec<ShowId> = rows
            .iter()
            .zip(&served)
            .filter(|(_, served)| **served)
            .map(|(row, _)| row.id.clone())
            .collect();
        let mut held = if ids.is_empty() {
            Vec::new()
        } else {
            self.inventory.standings(&ids).await?
        }
        .into_iter();
        Ok(rows
            .iter()
            .zip(served)
            .map(
                |(row, served)| match served.then(|| held.next().flatten()).flatten() {
                    Some(s) => Standing {
                        stock: (s.status != ShowStatus::Scheduled).then_some(s.stock),
                        status: s.status,
                        seq: s.seq,
                    },
                    None => Standing::stored(row),
                },
            )
            .collect())
    }

    /// Creates a show outside any market night, scheduled, and serves it.
    pub async fn create(
        &self,
        seller_id: SellerId,
        title: String,
        items: Vec<CreateLineupItem>,
    ) -> ServiceResult<ShowRow> {
        let lineup = build_lineup(&self.store, self.max_lineup, &seller_id, items).await?;
        let row = ShowRow {
            id: field("id", ShowId::parse(new_id()))?,
            seller_id,
            title,
            status: ShowStatus::Scheduled,
            created_at: self.clock.now(),
            lineup,
            schedule: None,
            live_at: None,
            closed_at: None,
        };
        self.store.create_show(&row).await?;
        self.load(&row).await?;
        Ok(row)
    }

    /// Takes a show live or closes it by hand, for an operator or the show's seller.
    pub async fn transition(
        &self,
        claims: &Claims,
        row: &ShowRow,
        cmd: Command,
    ) -> ServiceResult<()> {
        if !may_act_for(claims, &row.seller_id) {
            return Err(ServiceError::forbidden(
                "only an operator or this show's seller may do this",
            ));
        }
        if matches!(cmd, Command::GoLive) {
            self.may_go_live(claims, row).await?;
        }
        let rt = self.load(row).await?;
        let actor = format!("{}:{}", claims.role.as_str(), claims.sub);
        self.command(&rt, cmd, &actor).await?;
        Ok(())
    }

    /// The rules of a scheduled show going live by hand: every product still admitted on the
    /// night (documents valid, decision standing, commitment signed), and for the seller, not
    /// more than `early_start_ms` before the slot nor after the slot is over. An operator may
    /// open it at any time, but never with an unadmitted product.
    async fn may_go_live(&self, claims: &Claims, row: &ShowRow) -> ServiceResult<()> {
        let Some(sched) = &row.schedule else {
            return Ok(());
        };
        if row.status != ShowStatus::Scheduled {
            return Ok(());
        }
        let min_stars = min_stars(&self.store, &sched.market_id).await?;
        let issues = admission_issues(&self.store, row, min_stars).await?;
        if !issues.is_empty() {
            return Err(not_admitted(issues));
        }
        if claims.role == Role::Seller {
            let timing = ShowTiming {
                slot: Slot {
                    starts_at: sched.slot_start,
                    ends_at: sched.slot_end,
                },
                live_grace_ms: self.timing.early_start_ms as i64,
                close_grace_ms: self.timing.close_grace_ms as i64,
            };
            if !timing.may_go_live(self.clock.now()) {
                return Err(ServiceError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "the slot is {} to {}; a seller may go live from {} ms before its start until it is over",
                        rfc3339(sched.slot_start),
                        rfc3339(sched.slot_end),
                        self.timing.early_start_ms
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The stored show `id` names; not found when there is none.
pub async fn stored(store: &Store, id: String) -> ServiceResult<ShowRow> {
    let id = ShowId::parse(id).map_err(|_| ServiceError::not_found("show"))?;
    store
        .show(&id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("show {id}")))
}

/// A page of every show, newest first.
pub async fn shows(store: &Store, page: &Keyset) -> ServiceResult<Paged<ShowRow>> {
    Ok(store.shows(page).await?)
}

/// A page of one seller's shows.
pub async fn seller_shows(
    store: &Store,
    seller: &SellerId,
    page: &Keyset,
) -> ServiceResult<Paged<ShowRow>> {
    Ok(store.seller_shows(seller, page).await?)
}

/// A page of a show's status moves, oldest first.
pub async fn transitions(
    store: &Store,
    show: &ShowId,
    page: &Keyset,
) -> ServiceResult<Paged<TransitionRow>> {
    Ok(store.transitions_page(show, page).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use nightmarket_inventory::MemoryInventory;
    use nightmarket_store::{LineupRow, SqliteJournal};
    use tokio::sync::watch;

    use crate::clock::SystemClock;
    use crate::metrics::Metrics;
    use crate::show_stats::ShowStats;

    /// How long a test waits for something that should happen at once.
    const WAIT: Duration = Duration::from_secs(3);
    /// How often a test looks again while it waits.
    const POLL: Duration = Duration::from_millis(5);

    /// One stored show of one seller over an embedded store and inventory, and the shows
    /// service over them.
    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<Store>,
        shows: Arc<Shows>,
        row: ShowRow,
        _stop: watch::Sender<bool>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults().unwrap();
        config.data_dir = dir.path().to_owned();
        let store = Arc::new(
            Store::sqlite(&dir.path().join("catalog.sqlite"))
                .await
                .unwrap(),
        );
        let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 64).unwrap();
        let inventory: Arc<dyn Inventory> = Arc::new(MemoryInventory::new(journal, 64));
        let (seller, product) = crate::services::testing::seller_with_product(&store).await;
        let row = ShowRow {
            id: ShowId::parse("show-race").unwrap(),
            seller_id: seller.id.clone(),
            title: "Đêm thứ Sáu".into(),
            status: ShowStatus::Scheduled,
            created_at: 0,
            lineup: vec![LineupRow {
                product,
                stock: 10,
                buyer_limit: 2,
            }],
            schedule: None,
            live_at: None,
            closed_at: None,
        };
        store.create_show(&row).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let clock: SharedClock = Arc::new(SystemClock);
        let live = Arc::new(
            Live::new(
                inventory.clone(),
                None,
                Arc::new(Metrics::default()),
                Arc::new(ShowStats::new("test")),
                clock.clone(),
                config.limits.clone(),
                shutdown,
            )
            .unwrap(),
        );
        let shows = Arc::new(Shows::new(store.clone(), inventory, live, clock, &config));
        Fixture {
            dir,
            store,
            shows,
            row,
            _stop: stop,
        }
    }

    /// Many first loads of one show at once end with one runtime, the one every caller got.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_first_loads_share_one_runtime() {
        let Fixture {
            shows,
            row,
            dir: _dir,
            ..
        } = fixture().await;
        let loads: Vec<_> = (0..16)
            .map(|_| {
                let (shows, row) = (shows.clone(), row.clone());
                tokio::spawn(async move { shows.load(&row).await.unwrap() })
            })
            .collect();
        let registered = {
            let mut got = Vec::new();
            for l in loads {
                got.push(l.await.unwrap());
            }
            got
        };
        let kept = shows.runtime(&row.id).unwrap();
        assert!(
            registered.iter().all(|rt| Arc::ptr_eq(rt, &kept)),
            "every caller holds the registered runtime"
        );
    }

    /// A store that cannot be written (another connection holds its write lock) delays the
    /// record of a transition, not the show: the next command runs and is published meanwhile,
    /// and once the store is free both transitions are recorded, in command order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_slow_store_does_not_hold_the_show() {
        let f = fixture().await;
        let rt = f.shows.load(&f.row).await.unwrap();
        let blocker = rusqlite::Connection::open(f.dir.path().join("catalog.sqlite")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

        let live = tokio::spawn({
            let (shows, rt) = (f.shows.clone(), rt.clone());
            async move { shows.command(&rt, Command::GoLive, "operator:a").await }
        });
        // GoLive is published, and its record waits for the store.
        let deadline = tokio::time::Instant::now() + WAIT;
        while rt.channel.last_seq() < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "go-live not published"
            );
            tokio::time::sleep(POLL).await;
        }
        let close = tokio::spawn({
            let (shows, rt) = (f.shows.clone(), rt.clone());
            async move { shows.command(&rt, Command::Close, "operator:b").await }
        });
        // The close runs and is published while the store is still locked.
        while rt.channel.last_seq() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the close waited for the store: the show's gate is held across store I/O"
            );
            tokio::time::sleep(POLL).await;
        }
        assert!(
            !live.is_finished() && !close.is_finished(),
            "records wait for the store"
        );

        blocker.execute_batch("COMMIT").unwrap();
        live.await.unwrap().unwrap();
        close.await.unwrap().unwrap();
        let recorded: Vec<(ShowStatus, ShowStatus, String)> = f
            .store
            .transitions(&f.row.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.from, t.to, t.actor))
            .collect();
        assert_eq!(
            recorded,
            [
                (ShowStatus::Scheduled, ShowStatus::Live, "operator:a".into()),
                (ShowStatus::Live, ShowStatus::Closed, "operator:b".into()),
            ]
        );
    }
}
