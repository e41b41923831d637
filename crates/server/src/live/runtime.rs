//! A show as this node serves it: its identity, its fan-out channel, the gate that orders its
//! commands, and what the periodic refresh has seen of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nightmarket_domain::{LineupEntry, Millis, ProductId, SellerId, SequencedEvent, ShowId};
use nightmarket_live::{CatchUpCell, Channel};
use nightmarket_wire::server::FeedItem;

use crate::live::Commander;
use crate::live::inbox::Buyers;
use crate::live::public::PublicState;
use crate::live::snapshot::PublicPart;
use crate::show_stats::ShowCounters;

/// What a show needs at runtime besides its book: identity, its fan-out channel, and the
/// gate that orders its commands.
pub struct ShowRuntime {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
    /// The show's channel in the live engine.
    pub channel: Channel,
    /// The lineup as the show was opened (products, allotments, limits): a lineup never changes
    /// once the show exists, so snapshots built here take it from this copy and the stock left
    /// from the refresh.
    pub(super) lineup: Vec<LineupEntry>,
    /// The show's public state, folded from its events, for the catch-up below.
    pub(super) public: Mutex<PublicState>,
    /// The newest `catch_up` frame, which the engine sends a viewer that fell behind.
    pub(super) catch_up: Arc<CatchUpCell>,

    /// Commands on one show run one at a time from inventory to publish, so events reach the
    /// channel in sequence order.
    pub(super) gate: tokio::sync::Mutex<()>,
    /// The events of commands whose effects beyond the fan-out (the store's record of a
    /// transition) are still to happen, in the order the gate let the commands through, each
    /// with who commanded and why. At most one entry per event of a command still in flight: every
    /// caller that adds takes too.
    pub(super) follow: Mutex<VecDeque<(SequencedEvent, Commander)>>,
    /// Held while those effects happen, so that they happen in that order without the gate.
    pub(super) following: tokio::sync::Mutex<()>,
    pub(super) tick: Mutex<TickState>,
    /// Held while the conflated values are refreshed from the inventory: refreshes of one show
    /// never overlap (an older read cannot land after a newer one), and joiners that find the
    /// node behind wait for one read instead of each making their own.
    pub(super) refreshing: tokio::sync::Mutex<()>,
    /// Whether this node has asked the event feed to follow the show (distributed mode): once
    /// per runtime, so the feed's requests are bounded by the shows served, not the upgrades.
    pub(super) watched: AtomicBool,
    /// The show's seller's sessions open on this node: while one is, the lifecycle loop tells
    /// the store the seller is present (see `market.seller_absent_close_ms`).
    pub sellers: AtomicUsize,
    /// Since when (the server's clock) the show has been closed, as this node learnt it; a
    /// closed show nobody watches leaves memory after [`super::CLOSED_SHOW_KEPT_MS`].
    pub(super) closed_since: Mutex<Option<Millis>>,
    /// This node's figures of the show for post-show reports.
    pub stats: Arc<ShowCounters>,
    /// This node's viewers of the show per buyer, for waitlist news and leaving.
    pub buyers: Buyers,
}

#[derive(Default)]
pub(super) struct TickState {
    pub(super) stock_version: Option<u64>,
    pub(super) feed_from: u64,
    pub(super) viewers: Option<u64>,
    /// The newest accepted claims, oldest first, at most `limits.feed_items`: what a joining
    /// viewer's snapshot shows as the claim feed.
    pub(super) recent: VecDeque<FeedItem>,
    /// Waitlist notices at claim-log positions from here on are still to be told.
    pub(super) notices_from: u64,
    /// Stock left per lineup product, in lineup order, as of `stock_version`.
    pub(super) levels: Vec<(ProductId, u32)>,
    /// The running flash's id and units sold at its price, as of `stock_version`.
    pub(super) flash_sold: Option<(u64, u32)>,
    /// Bumped whenever `levels`, `flash_sold` or `recent` change: part of the point a kept
    /// snapshot was built at.
    pub(super) generation: u64,
    /// The public part of the newest snapshot built here, reused by every viewer joining at
    /// the same point (see [`crate::live::snapshot`]).
    pub(super) snapshot: Option<PublicPart>,
}

impl ShowRuntime {
    /// The newest accepted claims this node has seen, oldest first (see `TickState::recent`).
    pub fn recent_claims(&self) -> Vec<FeedItem> {
        self.tick
            .lock()
            .map(|t| t.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this call is the first to want the show followed across nodes.
    pub(super) fn first_watch(&self) -> bool {
        !self.watched.swap(true, Ordering::AcqRel)
    }

    /// Whether this node has refreshed the show's conflated values at least once.
    pub fn refreshed(&self) -> bool {
        self.tick.lock().is_ok_and(|t| t.stock_version.is_some())
    }
}
