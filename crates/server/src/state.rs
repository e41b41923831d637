//! The server's shared state and the show runtime: executing commands in order, publishing
//! their events once, ending flashes on time, and refreshing the conflated frames.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use nightmarket_domain::{
    BuyerId, CommandError, EndReason, LineupEntry, LogCursor, Millis, SellerId, SequencedEvent,
    ShowEvent, ShowId, ShowStatus,
};
use nightmarket_hub::{Hub, HubLimits, Published, ShowChannel};
use nightmarket_inventory::{
    Command, EventFeed, FeedItem as ShowFeedItem, Inventory, InventoryError,
};
use nightmarket_store::{ShowRow, Store};
use nightmarket_wire::server::{
    FeedFrame, FeedItem, FlashProgress, ServerMessage, StockFrame, ViewersFrame,
};
use tokio::sync::{Notify, Semaphore, watch};

use crate::auth::TokenKey;
use crate::config::Config;
use crate::convert;
use crate::metrics::{Metrics, inc};
use crate::show_stats::{ShowCounters, ShowStats, minute_of, new_node_id, node_identity};

/// Current time, UTC milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Serializes a server message once; the bytes are then shared by every connection.
pub fn frame(msg: &ServerMessage) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

/// What a show needs at runtime besides its book: identity, its fan-out channel, and the
/// gate that orders its commands.
pub struct ShowRuntime {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
    pub channel: Arc<ShowChannel<Utf8Bytes>>,
    /// Commands on one show run one at a time from inventory to publish, so events reach the
    /// channel in sequence order.
    gate: tokio::sync::Mutex<()>,
    tick: Mutex<TickState>,
    /// This node's figures of the show for post-show reports.
    pub stats: Arc<ShowCounters>,
    /// This node's viewers of the show per buyer, for waitlist news and leaving.
    pub buyers: crate::live::inbox::Buyers,
}

#[derive(Default)]
struct TickState {
    stock_version: Option<u64>,
    feed_from: u64,
    viewers: Option<u64>,
    /// The newest accepted claims, oldest first, at most `limits.feed_items`: what a joining
    /// viewer's snapshot shows as the claim feed.
    recent: std::collections::VecDeque<FeedItem>,
    /// Waitlist notices at claim-log positions from here on are still to be told.
    notices_from: u64,
}

impl ShowRuntime {
    /// The newest accepted claims this node has seen, oldest first (see `TickState::recent`).
    pub fn recent_claims(&self) -> Vec<FeedItem> {
        self.tick
            .lock()
            .map(|t| t.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this node has refreshed the show's conflated values at least once.
    pub fn refreshed(&self) -> bool {
        self.tick.lock().is_ok_and(|t| t.stock_version.is_some())
    }
}

/// Counts WebSocket sessions so shutdown can wait for them (axum's graceful shutdown does not
/// see upgraded connections).
#[derive(Default)]
pub struct Sessions {
    open: AtomicUsize,
    idle: Notify,
}

pub struct SessionGuard(Arc<Sessions>);

impl Sessions {
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no session is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub struct AppState {
    pub config: Config,
    pub key: TokenKey,
    pub catalog: Arc<Store>,
    pub inventory: Arc<dyn Inventory>,
    /// Distributed mode: the subscription to show events published by every node.
    pub feed: Option<EventFeed>,
    pub clock: crate::clock::SharedClock,
    pub hub: Hub<Utf8Bytes>,
    pub metrics: Metrics,
    /// Claims refused and viewers per show, counted on this node for post-show reports.
    pub show_stats: Arc<ShowStats>,
    pub shows: RwLock<HashMap<ShowId, Arc<ShowRuntime>>>,
    pub connections: Arc<Semaphore>,
    pub sessions: Arc<Sessions>,
    /// Guest sign-ins left per address.
    pub guests: crate::http::sessions::GuestLimiter,
    /// Flips to true once shutdown starts; every session watches it.
    pub shutdown: watch::Receiver<bool>,
    /// The order service when this node runs it: woken as soon as a show closes here.
    pub settler: std::sync::OnceLock<Arc<nightmarket_orders::Settler>>,
    /// What the dependency probers last found, for `/readyz`.
    pub health: crate::jobs::health::Health,
}

impl AppState {
    pub fn new(
        config: Config,
        catalog: Arc<Store>,
        inventory: Arc<dyn Inventory>,
        feed: Option<EventFeed>,
        clock: crate::clock::SharedClock,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let l = &config.limits;
        let hub = Hub::new(HubLimits {
            event_buffer: l.event_buffer,
            history: l.event_history,
            max_pending: l.event_buffer,
        });
        let guests = crate::http::sessions::GuestLimiter::new(&config.sessions);
        use crate::jobs::health::{Health, Probe};
        let store = if config.database_url.is_empty() {
            "sqlite"
        } else {
            "postgres"
        };
        let health = Health::new(vec![
            (inventory.dependency(), Probe::Inventory(inventory.clone())),
            (store, Probe::Catalog(catalog.clone())),
        ]);
        let show_stats = Arc::new(ShowStats::for_node(
            new_node_id(),
            node_identity(&config.listen),
        ));
        Self {
            health,
            key: TokenKey::new(config.auth_secret.expose()),
            connections: Arc::new(Semaphore::new(l.max_connections)),
            config,
            catalog,
            inventory,
            feed,
            clock,
            hub,
            metrics: Metrics::default(),
            show_stats,
            shows: RwLock::new(HashMap::new()),
            sessions: Arc::new(Sessions::default()),
            guests,
            shutdown,
            settler: std::sync::OnceLock::new(),
        }
    }

    pub fn show(&self, id: &ShowId) -> Option<Arc<ShowRuntime>> {
        self.shows.read().ok().and_then(|s| s.get(id).cloned())
    }

    pub fn show_count(&self) -> usize {
        self.shows.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Loads a stored show into the inventory (replaying its journal) and the hub.
    ///
    /// A closed show the inventory no longer holds (settled, released, its Redis keys expired)
    /// is refused with `NotLive`: opening it would create it afresh, scheduled with full stock.
    pub async fn load_show(
        self: &Arc<Self>,
        row: &ShowRow,
    ) -> Result<Arc<ShowRuntime>, InventoryError> {
        if let Some(rt) = self.show(&row.id) {
            return Ok(rt);
        }
        if self.released(row).await? {
            return Err(CommandError::NotLive(ShowStatus::Closed.as_str()).into());
        }
        let lineup: Vec<LineupEntry> = row
            .lineup
            .iter()
            .map(|l| LineupEntry {
                product: l.product.clone(),
                allotted: l.stock,
                buyer_limit: l.buyer_limit,
                left: l.stock,
            })
            .collect();
        self.inventory.open_show(&row.id, lineup).await?;
        let view = self.inventory.view(&row.id, None, now_ms()).await?;
        // Where this node starts telling waitlist news: what happened before, it did not see.
        let log_len = self.inventory.stock(&row.id, u64::MAX).await?.log_len;
        let seller_name = match self.catalog.seller(&row.seller_id).await {
            Ok(Some(s)) => s.name,
            _ => row.seller_id.to_string(),
        };
        let rt = Arc::new(ShowRuntime {
            id: row.id.clone(),
            seller_id: row.seller_id.clone(),
            seller_name,
            title: row.title.clone(),
            channel: self.hub.channel(row.id.as_str(), view.seq),
            gate: tokio::sync::Mutex::new(()),
            tick: Mutex::new(TickState {
                notices_from: log_len,
                ..TickState::default()
            }),
            stats: self.show_stats.counters(&row.id),
            buyers: crate::live::inbox::Buyers::default(),
        });
        // Two first loads of one show may race (two viewers arriving at once): the first to
        // register wins, and the other caller gets the winner's runtime, so there is only ever
        // one gate and one flash timer per show.
        let winner = match self.shows.write() {
            Ok(mut shows) => shows
                .entry(row.id.clone())
                .or_insert_with(|| rt.clone())
                .clone(),
            Err(_) => rt.clone(),
        };
        if !Arc::ptr_eq(&winner, &rt) {
            return Ok(winner);
        }
        // The store's status follows the book, which the journal (or Redis) made
        // authoritative: a node that stopped between the two catches up here.
        if view.status != row.status {
            self.record_transition(&row.id, view.status, "recovery")
                .await;
        }
        if let Some(flash) = view.flash {
            self.schedule_flash_end(rt.clone(), flash.id, flash.ends_at);
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

    /// Runs a command on a show: inventory, then publish each event once, in order.
    pub async fn command(
        self: &Arc<Self>,
        rt: &Arc<ShowRuntime>,
        cmd: Command,
        actor: &str,
    ) -> Result<(Vec<SequencedEvent>, u64), InventoryError> {
        let _gate = rt.gate.lock().await;
        let events = self.inventory.command(&rt.id, cmd, now_ms()).await?;
        for ev in &events {
            self.deliver(rt, ev).await;
            self.after_event(rt, ev, actor).await;
        }
        let seq = events
            .last()
            .map_or_else(|| rt.channel.last_seq(), |e| e.seq);
        Ok((events, seq))
    }

    fn publish(&self, rt: &ShowRuntime, ev: &SequencedEvent) -> Published {
        let bytes = frame(&ServerMessage::Event(convert::event_frame(ev)));
        let published = rt.channel.publish(ev.seq, bytes);
        if let Published::Delivered { receivers, .. } = published {
            inc(&self.metrics.events_published);
            self.metrics.events_fanned_out.increment(receivers as u64);
        }
        published
    }

    /// Hands an event to the show's channel, from this node's command or from another node.
    /// A gap (pub/sub lost an event, or this node joined late) is repaired from the show's
    /// event history before anything newer reaches viewers.
    pub async fn deliver(self: &Arc<Self>, rt: &Arc<ShowRuntime>, ev: &SequencedEvent) {
        match self.publish(rt, ev) {
            Published::Delivered { .. } => self.started(rt, ev),
            Published::Duplicate => {}
            Published::Gap { expected } => self.repair(rt, expected.saturating_sub(1)).await,
        }
    }

    /// Every node that sees a flash start ends it on time; the flash id makes the later
    /// timers no-ops.
    fn started(self: &Arc<Self>, rt: &Arc<ShowRuntime>, ev: &SequencedEvent) {
        if let ShowEvent::FlashStarted { flash } = &ev.event {
            self.schedule_flash_end(rt.clone(), flash.id, flash.ends_at);
        }
    }

    /// Publishes the kept events after `after`, in order.
    async fn repair(self: &Arc<Self>, rt: &Arc<ShowRuntime>, after: u64) {
        let limit = self.config.limits.event_history;
        match self.inventory.events_after(&rt.id, after, limit).await {
            Ok(Some(events)) => {
                for ev in &events {
                    if let Published::Delivered { .. } = self.publish(rt, ev) {
                        self.started(rt, ev);
                    }
                }
            }
            Ok(None) => {
                tracing::error!(show = %rt.id, after, "events missed beyond the kept history")
            }
            Err(e) => tracing::warn!(show = %rt.id, error = %e, "cannot repair an event gap yet"),
        }
    }

    /// Distributed mode: delivers the events other nodes publish, and repairs every followed
    /// show after the subscription was re-established.
    pub async fn follow(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<ShowFeedItem>) {
        while let Some(item) = rx.recv().await {
            match item {
                ShowFeedItem::Event(show, ev) => {
                    if let Some(rt) = self.show(&show) {
                        self.deliver(&rt, &ev).await;
                    }
                }
                ShowFeedItem::Reconnected => {
                    let shows: Vec<Arc<ShowRuntime>> = self
                        .shows
                        .read()
                        .map(|s| s.values().cloned().collect())
                        .unwrap_or_default();
                    for rt in shows {
                        self.repair(&rt, rt.channel.last_seq()).await;
                    }
                }
            }
        }
    }

    async fn after_event(
        self: &Arc<Self>,
        rt: &Arc<ShowRuntime>,
        ev: &SequencedEvent,
        actor: &str,
    ) {
        match &ev.event {
            ShowEvent::ShowLive => {
                self.record_transition(&rt.id, ShowStatus::Live, actor)
                    .await;
            }
            ShowEvent::ShowClosed { .. } => {
                self.record_transition(&rt.id, ShowStatus::Closed, actor)
                    .await;
                // Final stock goes out at once rather than at the next tick.
                self.refresh(rt).await;
            }
            _ => {}
        }
    }

    /// Makes the store's status follow a transition the inventory made: a compare-and-set from
    /// each status the show may have come from, recording `actor` and enqueueing the webhook
    /// event in the same transaction. Of several nodes (or a node and its own recovery) exactly
    /// one records it.
    pub async fn record_transition(&self, id: &ShowId, to: ShowStatus, actor: &str) {
        let (froms, name): (&[ShowStatus], &str) = match to {
            ShowStatus::Live => (&[ShowStatus::Scheduled], "show.live"),
            ShowStatus::Closed => (&[ShowStatus::Live, ShowStatus::Scheduled], "show.closed"),
            ShowStatus::Scheduled => return,
        };
        let row = match self.catalog.show(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(show = %id, error = %e, "cannot record transition");
                return;
            }
        };
        let now = self.clock.now();
        let mut body = crate::http::shows::show_body(&row, to);
        match to {
            ShowStatus::Live => body.live_at = Some(now),
            _ => body.closed_at = Some(now),
        }
        let event = crate::http::market::show_event(name, &body, now);
        for from in froms {
            match self
                .catalog
                .transition(id, *from, to, now, actor, Some(&event))
                .await
            {
                Ok(true) => {
                    tracing::info!(show = %id, from = from.as_str(), to = to.as_str(), actor, "show transition");
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

    /// Ends a flash at its end time. The timer names the flash, so a late timer never ends a
    /// newer one.
    pub fn schedule_flash_end(
        self: &Arc<Self>,
        rt: Arc<ShowRuntime>,
        flash_id: u64,
        ends_at: Millis,
    ) {
        let state = self.clone();
        tokio::spawn(async move {
            let wait = (ends_at - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let cmd = Command::EndFlash {
                reason: EndReason::Expired,
                only: Some(flash_id),
            };
            if let Err(e) = state.command(&rt, cmd, "timer").await {
                tracing::warn!(show = %rt.id, flash_id, error = %e, "could not end expired flash");
            }
        });
    }

    /// Ends a flash whose quantity cap was just reached.
    pub fn end_capped_flash(self: &Arc<Self>, rt: Arc<ShowRuntime>, flash_id: u64) {
        let state = self.clone();
        tokio::spawn(async move {
            let cmd = Command::EndFlash {
                reason: EndReason::CapReached,
                only: Some(flash_id),
            };
            if let Err(e) = state.command(&rt, cmd, "timer").await {
                tracing::warn!(show = %rt.id, flash_id, error = %e, "could not end capped flash");
            }
        });
    }

    /// Refreshes one show's conflated frames if anything changed since the last refresh.
    pub async fn refresh(self: &Arc<Self>, rt: &Arc<ShowRuntime>) {
        // Sampled before anything that may fail, so the report's viewers do not depend on the
        // inventory answering.
        rt.stats
            .saw_viewers(minute_of(self.clock.now()), rt.channel.viewer_count());
        let feed_from = rt.tick.lock().map(|t| t.feed_from).unwrap_or(0);
        let Ok(stock) = self.inventory.stock(&rt.id, feed_from).await else {
            return;
        };
        // Events this node has not seen (a lost pub/sub message, a late subscription) are
        // repaired here at the latest, one tick after they happened.
        if stock.seq > rt.channel.last_seq() {
            self.repair(rt, rt.channel.last_seq()).await;
        }
        let viewers = rt.channel.viewer_count();
        let Ok(mut tick) = rt.tick.lock() else { return };
        // First refresh of this show on this node (e.g. after a restart): the feed starts from
        // now rather than replaying claims viewers already saw.
        let first = tick.stock_version.is_none();
        if first {
            tick.feed_from = stock.log_len;
        }
        // Waitlist news for this node's viewers, from the log position the show had when this
        // node loaded it (not from the first tick, which may come after a promotion), each
        // notice once: the cursor moves under the lock, so two refreshes cannot both tell it.
        for notice in stock.waitlist.iter().filter(|n| n.pos >= tick.notices_from) {
            rt.buyers.tell(&notice.outcome);
        }
        tick.notices_from = tick.notices_from.max(stock.log_len);
        if tick.stock_version != Some(stock.version) {
            tick.stock_version = Some(stock.version);
            let msg = ServerMessage::Stock(StockFrame {
                levels: convert::stock_levels(&stock.levels),
                flash: stock
                    .flash_sold
                    .map(|(flash_id, sold)| FlashProgress { flash_id, sold }),
            });
            rt.channel.set_stock(frame(&msg));
            inc(&self.metrics.conflated_frames_published);
        }
        let keep = self.config.limits.feed_items;
        let newest = |recent: &[nightmarket_domain::ClaimRecord]| -> Vec<FeedItem> {
            recent
                .iter()
                .skip(recent.len().saturating_sub(keep))
                .map(|c| FeedItem {
                    product_id: c.product_id.to_string(),
                    quantity: c.quantity,
                    unit_price: c.unit_price.get(),
                    at: c.at,
                })
                .collect()
        };
        if first {
            // The claims before this node's first look are not news for the feed, but they are
            // what a viewer joining now should see.
            tick.recent = newest(&stock.recent).into();
        }
        if !first && (!stock.recent.is_empty() || tick.feed_from != stock.log_len) {
            let items = newest(&stock.recent);
            tick.recent.extend(items.iter().cloned());
            let excess = tick.recent.len().saturating_sub(keep);
            tick.recent.drain(..excess);
            tick.feed_from = stock.log_len;
            if !items.is_empty() {
                let msg = ServerMessage::Feed(FeedFrame {
                    items,
                    total_claims: stock.accepted_claims,
                });
                rt.channel.set_feed(frame(&msg));
                inc(&self.metrics.conflated_frames_published);
            }
        }
        if tick.viewers != Some(viewers) {
            tick.viewers = Some(viewers);
            rt.channel
                .set_viewers(frame(&ServerMessage::Viewers(ViewersFrame {
                    count: viewers,
                })));
            inc(&self.metrics.conflated_frames_published);
        }
    }

    /// A buyer's last session of a show on this node ended: after the grace, unless it is back
    /// (or the node is shutting down, when its viewers reconnect elsewhere), it leaves every
    /// waitlist of the show.
    pub fn leave_waitlists_later(self: &Arc<Self>, rt: Arc<ShowRuntime>, buyer: BuyerId) {
        let state = self.clone();
        let grace = Duration::from_millis(self.config.limits.waitlist_leave_grace_ms);
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return;
        }
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = stopped(&mut shutdown) => return,
            }
            if !rt.buyers.gone(&buyer) {
                return;
            }
            match state
                .inventory
                .waitlist_leave(&rt.id, &buyer, None, now_ms())
                .await
            {
                Ok(gone) if !gone.is_empty() => {
                    tracing::debug!(show = %rt.id, buyer = %buyer, places = gone.len(), "left the show's waitlists");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(show = %rt.id, buyer = %buyer, error = %e, "could not take a buyer who left off the waitlists");
                }
            }
        });
    }

    /// Every `stock_tick_ms`, refresh the conflated frames of every show someone watches.
    pub async fn ticker(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut every =
            tokio::time::interval(Duration::from_millis(self.config.limits.stock_tick_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = stopped(&mut shutdown) => return,
            }
            let shows: Vec<Arc<ShowRuntime>> = self
                .shows
                .read()
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default();
            for rt in shows {
                if rt.channel.connection_count() > 0 {
                    self.refresh(&rt).await;
                }
            }
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        let stop = *rx.borrow_and_update();
        if stop || rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightmarket_domain::{Dong, Product, ProductGroup, ProductId, Stars};
    use nightmarket_inventory::MemoryInventory;
    use nightmarket_store::{LineupRow, SellerRow, SqliteJournal};

    /// Many first loads of one show at once end with one runtime, the one every caller got.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_first_loads_share_one_runtime() {
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
        let seller = SellerRow {
            id: SellerId::parse("htx-ba-vi").unwrap(),
            name: "HTX Mật ong Ba Vì".into(),
            kind: "cooperative".into(),
            district: "Ba Vì".into(),
            created_at: 0,
        };
        store.create_seller(&seller).await.unwrap();
        let product = Product {
            id: ProductId::parse("mat-ong").unwrap(),
            seller_id: seller.id.clone(),
            name: "Mật ong hoa nhãn".into(),
            group: ProductGroup::Food,
            stars: Stars::parse(4).unwrap(),
            district: "Ba Vì".into(),
            commune: "Tản Lĩnh".into(),
            producer: "HTX Mật ong Ba Vì".into(),
            list_price: Dong::parse(250_000).unwrap(),
            origin_document: "GCN-1".into(),
            quality_label: "TCCS-1".into(),
            documents: Vec::new(),
        };
        store.create_product(&product, 0).await.unwrap();
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
        let (_stop, shutdown) = watch::channel(false);
        let state = Arc::new(AppState::new(
            config,
            store,
            inventory,
            None,
            Arc::new(crate::clock::SystemClock),
            shutdown,
        ));
        let loads: Vec<_> = (0..16)
            .map(|_| {
                let (state, row) = (state.clone(), row.clone());
                tokio::spawn(async move { state.load_show(&row).await.unwrap() })
            })
            .collect();
        let registered = {
            let mut got = Vec::new();
            for l in loads {
                got.push(l.await.unwrap());
            }
            got
        };
        let kept = state.show(&row.id).unwrap();
        assert!(
            registered.iter().all(|rt| Arc::ptr_eq(rt, &kept)),
            "every caller holds the registered runtime"
        );
    }
}
