//! The fan-out of this node: each show's events, published once and read by every connection,
//! and its conflated values (stock, claim feed, viewers), refreshed on a tick.
//!
//! Its interface to the rest of the server is narrow: [`Live::open`] registers a show this node
//! serves and [`Live::runtime`] finds it; [`Live::command`] runs a command on a show's gate
//! (inventory, then publish) and [`Live::follow_ups`] hands its events on, in order, for what
//! happens outside the gate; [`Live::follow`] takes in the events other nodes publish and
//! [`Live::ticker`] refreshes what connections see; sessions subscribe to a runtime's channel
//! and its buyers' inboxes, and start from a snapshot the runtime builds out of what it keeps
//! ([`snapshot`]). Everything else (gaps repaired from the inventory's history, flashes
//! ended on time, waitlist news handed to the buyers connected here) happens inside.

pub mod inbox;
mod public;
mod runtime;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nightmarket_domain::{
    ClaimRecord, Dong, EndReason, LineupEntry, Millis, SellerId, SequencedEvent, ShowEvent, ShowId,
    ShowStatus,
};
use nightmarket_inventory::{
    BookView, Command, EventFeed, FeedItem as ShowFeedItem, Inventory, InventoryError,
};
use nightmarket_live::{CatchUpCell, Engine, Frame, LiveConfig, LiveError, Published};
use nightmarket_wire::server::{
    CatchUp, FeedFrame, FeedItem, FlashProgress, ServerMessage, StockFrame, ViewersFrame,
};
use tokio::sync::watch;

use crate::clock::{SharedClock, sleep_until};
use crate::config::Limits;
use crate::convert;
use crate::live::inbox::Buyers;
use crate::metrics::{Metrics, inc};
use crate::show_stats::{ShowStats, minute_of};
use crate::shutdown::stopped;

use public::PublicState;
pub use runtime::ShowRuntime;
use snapshot::TickState;

/// How long a closed show stays in this node's memory (its runtime and fan-out channel) once
/// nobody watches it: long enough for viewers to read the final stock and reconnect, short
/// enough that a night's shows do not pile up. A later viewer or command loads it again.
pub const CLOSED_SHOW_KEPT_MS: Millis = 10 * 60_000;

/// Encodes a server message once as a complete WebSocket text frame; the bytes are then
/// shared by every connection.
pub fn frame(msg: &ServerMessage) -> Frame {
    Frame::text(&serde_json::to_string(msg).unwrap_or_default())
}

/// The live engine's bounds from the server's limits.
pub fn engine_config(limits: &Limits) -> LiveConfig {
    let engine = LiveConfig::default();
    LiveConfig {
        shards: match limits.live_shards {
            0 => engine.shards,
            n => n,
        },
        history: limits.event_history,
        max_pending: limits.event_buffer,
        queue_frames: limits.event_buffer,
        queue_bytes: limits.queue_bytes,
        stall_timeout: Duration::from_millis(limits.write_timeout_ms),
        ..engine
    }
}

/// Who a show is, as its viewers see it.
pub struct ShowIdentity {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
}

/// Where a show stands when this node starts serving it.
pub struct Opening {
    /// The show's sequence number now.
    pub seq: u64,
    /// Its claim log's length now: waitlist news from here on is this node's to tell.
    pub log_len: u64,
    /// The flash running now, if any: its id and end time.
    pub flash: Option<(u64, Millis)>,
    /// Whether the show is closed already.
    pub closed: bool,
    /// Its public state now (status, pin, flash, price), stamped with `seq`: where catching
    /// up starts from.
    pub public: CatchUp,
    /// Its lineup (what is left in it is the refresh's to tell).
    pub lineup: Vec<LineupEntry>,
}

impl Opening {
    /// Where a show stands by the inventory's `view` of it (read without a buyer), with its claim
    /// log's length `log_len`.
    pub fn from_view(view: &BookView, log_len: u64) -> Self {
        Self {
            seq: view.seq,
            log_len,
            flash: view.flash.as_ref().map(|f| (f.id, f.ends_at)),
            closed: view.status == ShowStatus::Closed,
            public: CatchUp {
                seq: view.seq,
                status: view.status.as_str().to_owned(),
                pinned: view.pinned.as_ref().map(ToString::to_string),
                flash: view.flash.as_ref().map(convert::flash_view),
                price: view.price.map(Dong::get),
            },
            lineup: view.lineup.clone(),
        }
    }
}

/// A command's events, published.
pub struct Commanded {
    pub events: Vec<SequencedEvent>,
    /// The show's sequence number after the command.
    pub seq: u64,
}

/// Who runs a command on a show, and why when that alone does not say (a stable code such as
/// `seller_absent`): what the store records beside a transition the command makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commander {
    pub actor: String,
    pub reason: Option<&'static str>,
}

impl Commander {
    /// An actor whose name says enough.
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            reason: None,
        }
    }
}

/// The events left to follow up on one show, taken in command order; holding this, no other
/// caller follows up on the show.
pub struct FollowUps<'a> {
    rt: &'a ShowRuntime,
    _order: tokio::sync::MutexGuard<'a, ()>,
}

/// The oldest event left to follow up first, each with who commanded it.
impl Iterator for FollowUps<'_> {
    type Item = (SequencedEvent, Commander);

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.follow.lock().ok()?.pop_front()
    }
}

/// The fan-out of every show this node serves.
pub struct Live {
    inventory: Arc<dyn Inventory>,
    /// Distributed mode: the subscription to show events published by every node.
    feed: Option<EventFeed>,
    engine: Engine,
    shows: RwLock<HashMap<ShowId, Arc<ShowRuntime>>>,
    metrics: Arc<Metrics>,
    stats: Arc<ShowStats>,
    clock: SharedClock,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
}

impl Live {
    pub fn new(
        inventory: Arc<dyn Inventory>,
        feed: Option<EventFeed>,
        metrics: Arc<Metrics>,
        stats: Arc<ShowStats>,
        clock: SharedClock,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, LiveError> {
        let engine = Engine::new(engine_config(&limits))?;
        Ok(Self {
            inventory,
            feed,
            engine,
            shows: RwLock::new(HashMap::new()),
            metrics,
            stats,
            clock,
            limits,
            shutdown,
        })
    }

    /// The node's live engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Copies the engine's counters into the node's metrics and records the fan-out lag samples
    /// its shards took: once per scrape, so delivery itself touches no shared metric.
    pub fn observe(&self) {
        let m = self.engine.metrics();
        self.metrics.frames_sent.absolute(m.frames_delivered);
        self.metrics.events_fanned_out.absolute(m.events_delivered);
        self.metrics.drops_resync.absolute(m.closed_resync);
        self.metrics.drops_write_timeout.absolute(m.closed_slow);
        for lag in self.engine.take_lag_samples() {
            self.metrics.fanout_lag.record(lag);
        }
    }

    /// The bytes of a client message the engine's reader accepts at most.
    pub fn max_message(&self) -> usize {
        self.limits.hard_frame_bytes
    }

    /// The runtime of a show this node serves.
    pub fn runtime(&self, id: &ShowId) -> Option<Arc<ShowRuntime>> {
        self.shows.read().ok().and_then(|s| s.get(id).cloned())
    }

    /// How many shows this node serves.
    pub fn count(&self) -> usize {
        self.shows.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Viewers connected to this node, over every show.
    pub fn viewers(&self) -> u64 {
        self.engine
            .channels()
            .iter()
            .map(|(_, c)| c.viewer_count())
            .sum()
    }

    /// Every show this node serves now.
    pub fn all(&self) -> Vec<Arc<ShowRuntime>> {
        self.shows
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts serving a show. Two first opens of one show may race (two viewers arriving at
    /// once): the first to register wins, and the other caller gets the winner's runtime, so
    /// there is only ever one gate and one flash timer per show. The flag says whether this
    /// call registered it.
    pub fn open(self: &Arc<Self>, show: ShowIdentity, at: Opening) -> (Arc<ShowRuntime>, bool) {
        let public = PublicState::new(at.public);
        let catch_up = Arc::new(CatchUpCell::default());
        let (seq, msg) = public.message();
        catch_up.set(seq, frame(&msg));
        let rt = Arc::new(ShowRuntime {
            channel: self
                .engine
                .channel(show.id.as_str(), at.seq, catch_up.clone()),
            public: Mutex::new(public),
            lineup: at.lineup,
            catch_up,
            gate: tokio::sync::Mutex::new(()),
            follow: Mutex::default(),
            watched: Default::default(),
            sellers: Default::default(),
            closed_since: Mutex::new(at.closed.then(|| self.clock.now())),
            following: tokio::sync::Mutex::new(()),
            refreshing: tokio::sync::Mutex::new(()),
            tick: Mutex::new(TickState {
                notices_from: at.log_len,
                ..TickState::default()
            }),
            stats: self.stats.counters(&show.id),
            buyers: Buyers::default(),
            id: show.id,
            seller_id: show.seller_id,
            seller_name: show.seller_name,
            title: show.title,
        });
        let winner = match self.shows.write() {
            Ok(mut shows) => shows
                .entry(rt.id.clone())
                .or_insert_with(|| rt.clone())
                .clone(),
            Err(_) => rt.clone(),
        };
        if !Arc::ptr_eq(&winner, &rt) {
            return (winner, false);
        }
        if let Some((flash_id, ends_at)) = at.flash {
            self.schedule_flash_end(rt.clone(), flash_id, ends_at);
        }
        (rt, true)
    }

    /// Distributed mode: this node follows the show's events from every other node. Only the
    /// first call for a runtime asks the feed (whose request queue has no bound of its own);
    /// the feed keeps following the show across reconnections.
    pub fn watch(&self, rt: &ShowRuntime) {
        if let Some(feed) = &self.feed
            && rt.first_watch()
        {
            feed.watch(&rt.id);
        }
    }

    /// Runs a command on a show: inventory, then publish each event once, in order, all behind
    /// the show's gate. With `follow_up_as`, the events are also left for [`Live::follow_ups`],
    /// in the gate's order, so that what follows a command outside the fan-out (the store's
    /// record of a transition) happens in command order without holding the gate.
    pub async fn command(
        self: &Arc<Self>,
        rt: &Arc<ShowRuntime>,
        cmd: Command,
        follow_up_as: Option<&Commander>,
    ) -> Result<Commanded, InventoryError> {
        let _gate = rt.gate.lock().await;
        let events = self
            .inventory
            .command(&rt.id, cmd, self.inventory.clock().now())
            .await?;
        for ev in &events {
            self.deliver(rt, ev).await;
        }
        if let Some(actor) = follow_up_as
            && let Ok(mut follow) = rt.follow.lock()
        {
            follow.extend(events.iter().map(|ev| (ev.clone(), actor.clone())));
        }
        let seq = events
            .last()
            .map_or_else(|| rt.channel.last_seq(), |e| e.seq);
        Ok(Commanded { events, seq })
    }

    /// The events of a show's commands left to follow up, once earlier callers are done with
    /// theirs.
    pub async fn follow_ups<'a>(&self, rt: &'a ShowRuntime) -> FollowUps<'a> {
        FollowUps {
            _order: rt.following.lock().await,
            rt,
        }
    }

    fn publish(&self, rt: &ShowRuntime, ev: &SequencedEvent) -> Published {
        let event = convert::event_frame(ev);
        let bytes = frame(&ServerMessage::Event(event.clone()));
        let published = rt.channel.publish(ev.seq, bytes);
        // The show's public state follows every event, in order, so a viewer that falls
        // behind is caught up to it rather than closed.
        if published != Published::Duplicate
            && let Ok(mut public) = rt.public.lock()
            && public.fold(&event, self.limits.event_buffer)
        {
            let (seq, msg) = public.message();
            rt.catch_up.set(seq, frame(&msg));
        }
        if let Published::Delivered { frames } = published {
            self.metrics.events_published.increment(frames as u64);
        }
        published
    }

    /// Hands an event to the show's channel, from this node's command or from another node.
    /// A gap (pub/sub lost an event, or this node joined late) is repaired from the show's
    /// event history before anything newer reaches viewers.
    async fn deliver(self: &Arc<Self>, rt: &Arc<ShowRuntime>, ev: &SequencedEvent) {
        match self.publish(rt, ev) {
            Published::Delivered { .. } => self.published(rt, ev),
            Published::Duplicate => {}
            Published::Gap { expected } => self.repair(rt, expected.saturating_sub(1)).await,
        }
    }

    /// What an event published on this node starts here: every node that sees a flash start
    /// ends it on time (the flash id makes the later timers no-ops), and a close starts the time
    /// the show stays in memory.
    fn published(self: &Arc<Self>, rt: &Arc<ShowRuntime>, ev: &SequencedEvent) {
        match &ev.event {
            ShowEvent::FlashStarted { flash } => {
                self.schedule_flash_end(rt.clone(), flash.id, flash.ends_at);
            }
            ShowEvent::ShowClosed { .. } => {
                if let Ok(mut since) = rt.closed_since.lock() {
                    since.get_or_insert(self.clock.now());
                }
            }
            _ => {}
        }
    }

    /// Lets go of the shows closed for [`CLOSED_SHOW_KEPT_MS`] at `now` that no connection
    /// watches: their runtimes and channels leave memory, and this node stops following their
    /// events. Returns how many went.
    pub fn evict_closed(&self, now: Millis) -> usize {
        let Ok(mut shows) = self.shows.write() else {
            return 0;
        };
        let due: Vec<ShowId> = shows
            .values()
            .filter(|rt| {
                let since = rt.closed_since.lock().ok().and_then(|s| *s);
                since.is_some_and(|t| now.saturating_sub(t) >= CLOSED_SHOW_KEPT_MS)
                    && rt.channel.connection_count() == 0
            })
            .map(|rt| rt.id.clone())
            .collect();
        for id in &due {
            shows.remove(id);
            self.engine.remove(id.as_str());
            // Its channel goes with it; a viewer coming back watches it afresh.
            if let Some(feed) = &self.feed {
                feed.unwatch(id);
            }
            tracing::debug!(show = %id, "closed show left memory");
        }
        due.len()
    }

    /// Publishes the kept events after `after`, in order.
    async fn repair(self: &Arc<Self>, rt: &Arc<ShowRuntime>, after: u64) {
        let limit = self.limits.event_history;
        match self.inventory.events_after(&rt.id, after, limit).await {
            Ok(Some(events)) => {
                for ev in &events {
                    if let Published::Delivered { .. } = self.publish(rt, ev) {
                        self.published(rt, ev);
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
                    if let Some(rt) = self.runtime(&show) {
                        self.deliver(&rt, &ev).await;
                    }
                }
                ShowFeedItem::Reconnected => {
                    for rt in self.all() {
                        self.repair(&rt, rt.channel.last_seq()).await;
                    }
                }
            }
        }
    }

    /// Ends a flash at its end time on the clock the inventory decides by (the server's clock
    /// with the embedded inventory: on a test's manual clock, when the test moves it there).
    /// The timer names the flash, so a late timer never ends a newer one.
    fn schedule_flash_end(self: &Arc<Self>, rt: Arc<ShowRuntime>, flash_id: u64, ends_at: Millis) {
        let live = self.clone();
        tokio::spawn(async move {
            sleep_until(live.inventory.clock().clone(), ends_at).await;
            live.end_flash(&rt, flash_id, EndReason::Expired).await;
        });
    }

    /// Ends a flash whose quantity cap was just reached.
    pub fn end_capped_flash(self: &Arc<Self>, rt: Arc<ShowRuntime>, flash_id: u64) {
        let live = self.clone();
        tokio::spawn(async move {
            live.end_flash(&rt, flash_id, EndReason::CapReached).await;
        });
    }

    async fn end_flash(self: &Arc<Self>, rt: &Arc<ShowRuntime>, flash_id: u64, reason: EndReason) {
        let cmd = Command::EndFlash {
            reason,
            only: Some(flash_id),
        };
        if let Err(e) = self.command(rt, cmd, None).await {
            tracing::warn!(show = %rt.id, flash_id, error = %e, "could not end the flash ({reason:?})");
        }
    }

    /// Refreshes one show's conflated frames if anything changed since the last refresh.
    pub async fn refresh(self: &Arc<Self>, rt: &Arc<ShowRuntime>) {
        let _one = rt.refreshing.lock().await;
        self.refresh_now(rt).await;
    }

    /// Refreshes a show unless a refresh has brought it to stock `version` meanwhile (with
    /// `None`: unless it has been refreshed at all). Joiners that find the node behind call
    /// this together, and the first read serves them all.
    pub async fn refresh_to(self: &Arc<Self>, rt: &Arc<ShowRuntime>, version: Option<u64>) {
        let _one = rt.refreshing.lock().await;
        let have = rt.tick.lock().ok().and_then(|t| t.stock_version);
        if have.is_some_and(|have| version.is_none_or(|wanted| have >= wanted)) {
            return;
        }
        self.refresh_now(rt).await;
    }

    /// The refresh itself, under `rt.refreshing`.
    async fn refresh_now(self: &Arc<Self>, rt: &Arc<ShowRuntime>) {
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
            tick.levels.clone_from(&stock.levels);
            tick.flash_sold = stock.flash_sold;
            tick.generation += 1;
            let msg = ServerMessage::Stock(StockFrame {
                levels: convert::stock_levels(&stock.levels),
                flash: stock
                    .flash_sold
                    .map(|(flash_id, sold)| FlashProgress { flash_id, sold }),
            });
            rt.channel.set_stock(frame(&msg));
            inc(&self.metrics.conflated_frames_published);
        }
        let keep = self.limits.feed_items;
        let newest = |recent: &[ClaimRecord]| -> Vec<FeedItem> {
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
            tick.generation += 1;
        }
        if !first && (!stock.recent.is_empty() || tick.feed_from != stock.log_len) {
            let items = newest(&stock.recent);
            tick.recent.extend(items.iter().cloned());
            let excess = tick.recent.len().saturating_sub(keep);
            tick.recent.drain(..excess);
            tick.feed_from = stock.log_len;
            if !items.is_empty() {
                tick.generation += 1;
                let msg = ServerMessage::Feed(FeedFrame {
                    items,
                    total_claims: stock.accepted_claims,
                });
                rt.channel.set_feed(frame(&msg));
                inc(&self.metrics.conflated_frames_published);
            }
        }
        // The count goes out when it changed and the last one is `viewers_tick_ms` old: during
        // a join storm it changes at every refresh, and each change is a frame to every viewer.
        let now = tokio::time::Instant::now();
        let due = tick.viewers_at.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_millis(self.limits.viewers_tick_ms)
        });
        if tick.viewers != Some(viewers) && due {
            tick.viewers = Some(viewers);
            tick.viewers_at = Some(now);
            rt.channel
                .set_viewers(frame(&ServerMessage::Viewers(ViewersFrame {
                    count: viewers,
                })));
            inc(&self.metrics.conflated_frames_published);
        }
    }

    /// Every `stock_tick_ms`, refresh the conflated frames of every show someone watches.
    pub async fn ticker(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut every = tokio::time::interval(Duration::from_millis(self.limits.stock_tick_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = stopped(&mut shutdown) => return,
            }
            for rt in self.all() {
                if rt.channel.connection_count() > 0 {
                    self.refresh(&rt).await;
                }
            }
            self.evict_closed(self.clock.now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use nightmarket_inventory::MemoryInventory;
    use nightmarket_store::SqliteJournal;

    use crate::clock::{Clock, ManualClock};
    use crate::config::Config;

    /// A node's fan-out over an embedded inventory in `dir`, both on `clock`.
    pub(super) fn live(
        dir: &std::path::Path,
        clock: &ManualClock,
    ) -> (Arc<Live>, watch::Sender<bool>) {
        let journal = SqliteJournal::open(&dir.join("journal.sqlite"), 64).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let live = Live::new(
            Arc::new(MemoryInventory::new(journal, 64).with_clock(Arc::new(clock.clone()))),
            None,
            Arc::new(Metrics::default()),
            Arc::new(ShowStats::new("test")),
            Arc::new(clock.clone()),
            Config::defaults().unwrap().limits,
            shutdown,
        )
        .unwrap();
        (Arc::new(live), stop)
    }

    /// Serves show `id`, closed or not, on `live`.
    fn open(live: &Arc<Live>, id: &str, closed: bool) -> Arc<ShowRuntime> {
        let show = ShowIdentity {
            id: ShowId::parse(id).unwrap(),
            seller_id: SellerId::parse("seller").unwrap(),
            seller_name: "HTX".into(),
            title: "Đêm".into(),
        };
        let opening = Opening {
            seq: 3,
            log_len: 0,
            flash: None,
            closed,
            public: CatchUp {
                seq: 3,
                status: "live".into(),
                pinned: None,
                flash: None,
                price: None,
            },
            lineup: Vec::new(),
        };
        live.open(show, opening).0
    }

    /// However many sessions open on a show at once, the feed is asked to follow it once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_show_is_watched_once_whatever_the_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let (live, _stop) = live(dir.path(), &ManualClock::new(0));
        let rt = open(&live, "s1", false);
        let asks: Vec<_> = (0..64)
            .map(|_| {
                let rt = rt.clone();
                tokio::spawn(async move { rt.first_watch() })
            })
            .collect();
        let mut first = 0;
        for ask in asks {
            first += usize::from(ask.await.unwrap());
        }
        assert_eq!(first, 1, "one request to the feed per show");
    }

    /// A viewer counted on `rt`, over a real socket pair; the client end is returned with it.
    async fn counted_viewer(rt: &ShowRuntime) -> (nightmarket_live::Viewer, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let (_read, write) = socket.into_split();
        let viewer = rt.channel.attach(
            write,
            nightmarket_live::AttachOptions {
                counted: true,
                prefix: None,
            },
        );
        (viewer, client)
    }

    /// The viewer count goes out when it changed and the last one is `viewers_tick_ms` old,
    /// however often the show is refreshed meanwhile; a count that did not change never does.
    #[tokio::test(start_paused = true)]
    async fn the_viewer_count_goes_out_at_most_once_per_viewers_tick() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let (live, _stop) = live(dir.path(), &clock);
        let id = ShowId::parse("audience").unwrap();
        let inv = live.inventory.clone();
        inv.open_show(&id, Vec::new()).await.unwrap();
        let view = inv.view(&id, None, clock.now()).await.unwrap();
        let show = ShowIdentity {
            id,
            seller_id: SellerId::parse("seller").unwrap(),
            seller_name: "HTX".into(),
            title: "Đêm".into(),
        };
        let (rt, _) = live.open(show, Opening::from_view(&view, 0));
        let sent = || rt.tick.lock().unwrap().viewers;
        let published = || rt.tick.lock().unwrap().viewers_at;

        let mut audience = vec![counted_viewer(&rt).await];
        live.refresh(&rt).await;
        assert_eq!(sent(), Some(1), "the first count goes out at once");
        let first = tokio::time::Instant::now();
        assert_eq!(published(), Some(first));

        let tick = Duration::from_millis(live.limits.viewers_tick_ms);
        for step in 1..=4 {
            audience.push(counted_viewer(&rt).await);
            tokio::time::advance(tick / 5).await;
            live.refresh(&rt).await;
            assert_eq!(
                sent(),
                Some(1),
                "{step} refreshes within the tick: still the first count"
            );
        }
        assert_eq!(published(), Some(first), "no frame within the tick");
        tokio::time::advance(tick - 4 * (tick / 5)).await;
        live.refresh(&rt).await;
        assert_eq!(sent(), Some(5), "the tick has passed: the newest count");
        let second = tokio::time::Instant::now();
        assert_eq!(published(), Some(second));

        tokio::time::advance(10 * tick).await;
        live.refresh(&rt).await;
        assert_eq!(
            published(),
            Some(second),
            "an unchanged count is not sent again"
        );
        drop(audience);
    }

    /// A closed show leaves memory once it has been closed for the bound and nobody watches
    /// it; one still watched, or still open, stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_shows_leave_memory_after_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let (live, _stop) = live(dir.path(), &clock);
        let closed = open(&live, "closed", true);
        let watched = open(&live, "watched", true);
        let _viewer = counted_viewer(&watched).await;
        let running = open(&live, "running", false);
        clock.advance(CLOSED_SHOW_KEPT_MS - 1);
        assert_eq!(live.evict_closed(clock.now()), 0, "not yet");
        clock.advance(1);
        assert_eq!(live.evict_closed(clock.now()), 1);
        assert!(
            live.runtime(&closed.id).is_none(),
            "the idle closed show went"
        );
        assert!(live.runtime(&watched.id).is_some(), "a watched one stays");
        assert!(live.runtime(&running.id).is_some(), "an open one stays");
        assert_eq!(live.count(), 2);
        let names: Vec<String> = live.engine.channels().into_iter().map(|(n, _)| n).collect();
        assert!(
            !names.contains(&"closed".to_owned()),
            "its channel went too: {names:?}"
        );
        let again = open(&live, "closed", true);
        assert!(!Arc::ptr_eq(&again, &closed), "opened again, afresh");
    }
}
