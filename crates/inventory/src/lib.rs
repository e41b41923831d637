//! The inventory: one atomic step per claim, cancel, close and seller command, per show.
//!
//! [`Inventory`] is the seam between the hub and where the show's counters live. The embedded
//! implementation is [`MemoryInventory`]: the [`ShowBook`](nightmarket_domain::ShowBook) of each
//! show in memory behind a lock, every accepted change journaled to SQLite before it is
//! acknowledged. The Redis implementation (distributed mode) runs the same rules as Lua scripts.
//! Both must pass the conformance suite (`conformance`, built only with the `testing` feature:
//! one test per case, run against each implementation by `tests/memory.rs` and `tests/redis.rs`).
//!
//! Every rule (show live, price current, flash window, buyer limit) is judged at the time the
//! inventory executes the step ([`DecisionClock::Execution`]): the memory inventory reads the
//! process's one injected clock ([`nightmarket_domain::clock`]) while it holds the show's lock,
//! the Redis scripts read Redis's `TIME`. A timestamp taken earlier (when the claim was
//! received) never decides, however long the request waited.
//!
//! Why Redis decides by its own `TIME` rather than the process's clock: in distributed mode a
//! show's claims, commands and flash ends come from every hub node at once, and each node's
//! clock is its own. One clock that every node's step reads, inside the atomic script, is the
//! only way two nodes agree on whether a flash has ended or a deadline has passed; a node's
//! clock passed in would let a node whose clock runs behind sell at a flash price another node
//! already saw end. Tests that script time use [`DecisionClock::Scripted`] there.

/// The shared conformance suite: test code, so only with the `testing` feature (which the
/// crate's own dev-dependencies turn on), never in a release binary.
#[cfg(feature = "testing")]
pub mod conformance;
mod memory;
mod redis_backend;
/// Redis test support (the test Redis's address, a redis-server of a test's own): test code as
/// well, only with the `testing` feature.
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use nightmarket_domain::clock::SharedClock;
use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest, CommandError, Dong,
    EndReason, Flash, FlashSpec, JoinDecision, LineupEntry, LogCursor, LogPage, Millis, ProductId,
    Quantity, SequencedEvent, ShowId, ShowStatus, WaitlistEntry, WaitlistNotice,
};

pub use memory::MemoryInventory;
pub use redis_backend::{EventFeed, FeedItem, RedisInventory};

/// Which clock decides a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecisionClock {
    /// The inventory's own clock at the moment it executes the step: the injected clock
    /// (system, or a test's manual clock; see `MemoryInventory::with_clock`) read under the
    /// show's lock (memory), Redis's `TIME` inside the script (Redis, for cross-node agreement).
    /// What serving uses; the `now` a caller passes is ignored.
    #[default]
    Execution,
    /// The `now` the caller passes: for tests that script time (a flash that ends an hour
    /// later without waiting an hour). Never used by `nightmarket serve`.
    Scripted,
}

impl DecisionClock {
    /// The caller's `now` when it decides (scripted), `None` when the inventory's own clock
    /// does: each backend reads that clock where its step executes.
    pub fn scripted(self, now: Millis) -> Option<Millis> {
        match self {
            DecisionClock::Execution => None,
            DecisionClock::Scripted => Some(now),
        }
    }
}

/// What every inventory step answers.
pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

/// The events of one step or of a read of the history, in sequence order.
pub type Events = Vec<SequencedEvent>;

/// A claim to decide ([`Inventory::claim_within`]). `now` is the caller's clock (it decides only
/// on [`DecisionClock::Scripted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub req: ClaimRequest,
    pub now: Millis,
    /// UTC milliseconds: executed after it, the claim changes nothing and answers
    /// [`InventoryError::DeadlinePassed`]. `None`: no deadline.
    pub deadline: Option<Millis>,
}

/// A buyer cancelling its own claim ([`Inventory::cancel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub buyer: BuyerId,
    pub claim_id: ClaimId,
    pub now: Millis,
}

/// A buyer asking to wait for units of a sold-out product ([`Inventory::waitlist_join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitlistJoin {
    pub buyer: BuyerId,
    pub product: ProductId,
    pub quantity: Quantity,
    pub now: Millis,
}

/// A buyer leaving one product's waitlist, or every waitlist of the show (`product: None`)
/// ([`Inventory::waitlist_leave`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitlistLeave {
    pub buyer: BuyerId,
    pub product: Option<ProductId>,
    pub now: Millis,
}

/// A seller or operator command on one show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    GoLive,
    Close,
    Pin(ProductId),
    Unpin,
    StartFlash(FlashSpec),
    /// End the flash; with `only`, end it only if it is still that flash (timers).
    EndFlash {
        reason: EndReason,
        only: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("show {0} is not loaded in the inventory")]
    UnknownShow(ShowId),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Retryable: the journal queue is full, or the backend is unreachable. The request did
    /// not take effect.
    #[error("inventory unavailable: {0}")]
    Unavailable(String),
    /// The request may have reached the backend (its reply was lost or late): whether it took
    /// effect is not known. A claim sent again with the same id and deadline tells.
    #[error("inventory outcome unknown: {0}")]
    Unknown(String),
    /// The claim was not executed by its deadline and never will be: the inventory refuses it
    /// once its clock has passed the deadline. Retryable with the same claim id.
    #[error("the claim was not decided by its deadline")]
    DeadlinePassed,
    #[error("inventory failure: {0}")]
    Internal(String),
}

impl InventoryError {
    /// [`Inventory::release`] on a show that has not closed (`from` is its status): its claim
    /// log is not complete yet.
    fn not_releasable(from: &'static str) -> Self {
        CommandError::BadTransition {
            from,
            to: "released",
        }
        .into()
    }

    /// [`Inventory::waitlist_leave`] naming a product outside the lineup.
    fn unknown_product(product: &ProductId) -> Self {
        CommandError::UnknownProduct(product.clone()).into()
    }
}

/// A show as a viewer sees it on joining, consistent as of `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookView {
    pub status: ShowStatus,
    pub seq: u64,
    pub pinned: Option<ProductId>,
    pub flash: Option<Flash>,
    /// The price a claim on the pinned product must carry now.
    pub price: Option<Dong>,
    pub lineup: Vec<LineupEntry>,
    /// The requesting buyer's claims, oldest first (empty for sellers and operators).
    pub my_claims: Vec<ClaimRecord>,
    /// The waitlists the requesting buyer is on, in lineup order, with its position (from 1).
    pub my_waitlist: Vec<(WaitlistEntry, u32)>,
    pub accepted_claims: u64,
}

/// A buyer's own part of a snapshot (what [`BookView`] holds for it alone), with the show's
/// sequence number and stock version as of the same read: what a node that keeps the public
/// part of the show itself must still ask for, and how it tells whether its copy is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerView {
    /// The show's newest event sequence number.
    pub seq: u64,
    /// The show's stock version, as [`StockView::version`].
    pub stock_version: u64,
    /// As [`BookView::my_claims`].
    pub my_claims: Vec<ClaimRecord>,
    /// As [`BookView::my_waitlist`].
    pub my_waitlist: Vec<(WaitlistEntry, u32)>,
}

/// Where a show stands, as a list of shows gives it: what [`Inventory::standings`] reads of each
/// show, and nothing more (no lineup details, no buyer's claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowStanding {
    pub status: ShowStatus,
    /// The show's newest event sequence number.
    pub seq: u64,
    /// Units left per product, in lineup order.
    pub stock: Vec<(ProductId, u32)>,
}

/// Conflated values for the fan-out's periodic stock and feed frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockView {
    /// The show's newest event sequence number: a node whose channel is behind it has missed
    /// events and repairs from the history.
    pub seq: u64,
    /// Changes whenever stock changes; equal versions mean equal levels.
    pub version: u64,
    pub levels: Vec<(ProductId, u32)>,
    /// Claim-log length: pass it back as `feed_from` to get only newer claims next time.
    pub log_len: u64,
    pub accepted_claims: u64,
    /// The running flash's id and units sold at its price.
    pub flash_sold: Option<(u64, u32)>,
    /// Accepted claims at log positions `>= feed_from` (bounded), oldest first.
    pub recent: Vec<ClaimRecord>,
    /// Waitlist promotions and skips caused at log positions `>= feed_from` (bounded, see
    /// [`WAITLIST_NOTICES_KEPT`](nightmarket_domain::book::WAITLIST_NOTICES_KEPT)), oldest
    /// first: each node tells the buyers concerned that are connected to it.
    pub waitlist: Vec<WaitlistNotice>,
}

/// The `now` that commands, claims, cancellations and views take is the caller's clock; only an
/// inventory on [`DecisionClock::Scripted`] decides by it.
#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    /// The clock this inventory decides by, as the process can read it: the times a caller
    /// compares with the inventory's (a claim's deadline, a flash's end, a snapshot's time) are
    /// read from it. The memory inventory's injected clock; for Redis, the system clock, which
    /// stands for Redis's `TIME` (assumed to agree within NTP's tens of milliseconds).
    fn clock(&self) -> &SharedClock;

    /// Makes a show known to the inventory with its lineup. If the show has journaled history
    /// (a restart), its state is rebuilt from it; opening an open show is a no-op.
    async fn open_show(&self, show: &ShowId, lineup: Vec<LineupEntry>) -> Result<()>;

    /// Applies a command; returns the events it produced (empty: nothing changed), each already
    /// durable and numbered in the show's sequence.
    async fn command(&self, show: &ShowId, cmd: Command, now: Millis) -> Result<Events>;

    /// Decides a claim in one atomic step; an acceptance is durable when this returns. Without
    /// a deadline: see [`Inventory::claim_within`].
    async fn claim(&self, show: &ShowId, req: ClaimRequest, now: Millis) -> Result<ClaimDecision> {
        let claim = Claim {
            req,
            now,
            deadline: None,
        };
        self.claim_within(show, claim).await
    }

    /// Decides a claim in one atomic step, judged at the time the step executes. With a
    /// `deadline` (UTC milliseconds), a step that executes after it changes nothing and
    /// answers [`InventoryError::DeadlinePassed`] — except for a claim id already taken,
    /// which answers as always (`Duplicate`, or refused `ClaimIdTaken`). So once the
    /// deadline has passed on the inventory's clock, a claim that has not executed never
    /// will, and sending it again with the same deadline tells which of the two it was.
    async fn claim_within(&self, show: &ShowId, claim: Claim) -> Result<ClaimDecision>;

    /// Cancels a buyer's own claim in one atomic step; durable when this returns. The units it
    /// returns go to the product's waitlist first, in the same step: the promoted claims are in
    /// the claim log right after the cancellation.
    async fn cancel(&self, show: &ShowId, cancel: Cancel) -> Result<CancelDecision>;

    /// Puts a buyer on a sold-out product's waitlist in one atomic step (the rules of
    /// [`ShowBook::waitlist_join`](nightmarket_domain::ShowBook::waitlist_join)); durable when
    /// this returns.
    async fn waitlist_join(&self, show: &ShowId, join: WaitlistJoin) -> Result<JoinDecision>;

    /// Takes a buyer off one product's waitlist, or off every waitlist of the show (`None`), in
    /// one atomic step; returns the entries removed (none is fine). A product outside the
    /// lineup is `Command(UnknownProduct)`. Durable when this returns.
    async fn waitlist_leave(
        &self,
        show: &ShowId,
        leave: WaitlistLeave,
    ) -> Result<Vec<WaitlistEntry>>;

    /// The show's state for a snapshot.
    async fn view(&self, show: &ShowId, buyer: Option<&BuyerId>, now: Millis) -> Result<BookView>;

    /// A buyer's claims and waitlist places as [`Inventory::view`] gives them, and the show's
    /// sequence and stock version, in one consistent read that touches nothing else (on Redis
    /// one small script: no lineup, no products).
    async fn buyer_view(&self, show: &ShowId, buyer: &BuyerId)
    -> Result<BuyerView, InventoryError>;

    /// Status, sequence and stock of each show in `shows`, in the order given; `None` for a show
    /// the inventory does not hold. One round trip for the whole list on Redis (one pipeline;
    /// on a Cluster one per show, sent together), so a page of shows costs what one show does.
    async fn standings(&self, shows: &[ShowId]) -> Result<Vec<Option<ShowStanding>>>;

    /// Stock levels and claims since `feed_from` for the conflated frames.
    async fn stock(&self, show: &ShowId, feed_from: u64) -> Result<StockView>;

    /// Events with `seq > after`, oldest first, at most `most`; `None` when the kept history
    /// no longer reaches back to `after + 1` (the client needs a snapshot).
    async fn events_after(&self, show: &ShowId, after: u64, most: usize) -> Result<Option<Events>>;

    /// One page of the show's claim log after `from`: claims and cancellations in decision
    /// order, then, once the show has closed, the close marker (nothing follows it). At most
    /// `limit` entries. Works whether or not the show is opened on this node (the order service
    /// reads shows it never served). `UnknownShow` when the backend holds nothing for the show.
    async fn claim_log(&self, show: &ShowId, from: &LogCursor, limit: usize) -> Result<LogPage>;

    /// Settlement has recorded the show: its keys may go after `keep_for` (Redis: EXPIRE on
    /// every key of the show, never before this call). The embedded backend keeps its journal
    /// and lets the book leave memory after `keep_for`; its claim log still reads from the
    /// journal, and [`Inventory::open_show`] replays it again. Refused (`BadTransition`) while the show is not closed: its claim
    /// log is not complete yet. Releasing again, or a show the backend no longer holds, is `Ok`.
    async fn release(&self, show: &ShowId, keep_for: std::time::Duration) -> Result<()>;

    /// `Err` while claims cannot be accepted: the last word of [`Inventory::probe`] or of the
    /// last round trip, without waiting (claims fail fast on it).
    fn health(&self) -> Result<()>;

    /// Checks the backend now (a round trip to Redis, bounded in time) and updates
    /// [`Inventory::health`]. Readiness runs it in the background, never per request.
    async fn probe(&self) -> Result<()> {
        self.health()
    }

    /// The dependency this inventory lives in, as `/readyz` names it: `sqlite` (the embedded
    /// journal) or `redis`.
    fn dependency(&self) -> &'static str;
}
