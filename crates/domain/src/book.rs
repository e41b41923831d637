//! One show's live state ("the book") and every rule that changes it.
//!
//! The book is the single authority on what a claim may do. It holds the show status, the pinned
//! product, the flash price, stock left per lineup product, what each buyer holds and every
//! accepted claim. Seller commands produce sequenced [`ShowEvent`]s; the book's state is exactly
//! the fold of those events plus the claim log, which is how it is rebuilt after a restart
//! ([`ShowBook::replay_event`], [`ShowBook::replay_claim`], [`ShowBook::replay_cancel`]).
//!
//! Time is a parameter (`now`, UTC milliseconds): the book never reads a clock, so the rules
//! are deterministic and property-testable.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::ids::{BuyerId, ClaimId, ProductId, ShowId};
use crate::money::{Dong, Quantity};
use crate::product::Product;

/// Longest flash sale a seller may run, in seconds (a whole market night).
pub const MAX_FLASH_SECONDS: i64 = 3 * 60 * 60;
/// Longest countdown before a flash price applies, in seconds.
pub const MAX_COUNTDOWN_SECONDS: i64 = 10 * 60;
/// Most units one lineup entry may carry, and most one buyer may be allowed.
pub const MAX_STOCK: u32 = 10_000_000;
/// How many recent accepted claims the book keeps for the public claim feed.
pub const FEED_RECENT: usize = 64;
/// Most buyers waiting on one product's waitlist. A sold-out product with this many waiting
/// refuses further joins (`waitlist_full`): units coming back rarely reach further down, and a
/// promotion scans the list inside one atomic step, so the list must stay short.
pub const MAX_WAITLIST_PER_PRODUCT: usize = 200;
/// How many recent waitlist outcomes (promotions, skips) the book keeps for the nodes' ticks,
/// which tell the buyers concerned. Older ones are only in the buyers' snapshots (`my_claims`).
pub const WAITLIST_NOTICES_KEPT: usize = 64;
/// Claim ids of promotions from a waitlist: an id rule, kept with the ids.
pub use crate::ids::PROMOTED_CLAIM_PREFIX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShowStatus {
    Scheduled,
    Live,
    Closed,
}

impl ShowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Closed => "closed",
        }
    }
}

/// One product of the show's lineup with its allotment and what is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineupEntry {
    pub product: Product,
    pub allotted: u32,
    pub buyer_limit: u32,
    pub left: u32,
}

impl LineupEntry {
    /// `product` as a show opens with it: `allotted` units, every one of them left.
    pub fn opening(product: Product, allotted: u32, buyer_limit: u32) -> Self {
        Self {
            product,
            allotted,
            buyer_limit,
            left: allotted,
        }
    }
}

/// A flash price on one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub id: u64,
    pub product_id: ProductId,
    pub price: Dong,
    pub list_price: Dong,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub quantity_cap: Option<u32>,
    /// Units currently held by buyers at this flash's price (cancellations give units back).
    pub sold: u32,
}

impl Flash {
    /// Whether the flash price applies at `now` (started, not expired, cap not reached).
    pub fn applies(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at && self.cap_left() != Some(0)
    }

    pub fn cap_left(&self) -> Option<u32> {
        self.quantity_cap.map(|cap| cap.saturating_sub(self.sold))
    }
}

/// Why a flash ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    EndedBySeller,
    Expired,
    CapReached,
    Unpinned,
    ShowClosed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndedBySeller => "ended_by_seller",
            Self::Expired => "expired",
            Self::CapReached => "cap_reached",
            Self::Unpinned => "unpinned",
            Self::ShowClosed => "show_closed",
        }
    }
}

/// A sequenced show event. The book's non-claim state is the fold of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShowEvent {
    ShowLive,
    ShowClosed {
        final_stock: Vec<(ProductId, u32)>,
    },
    Pinned {
        product_id: ProductId,
        price: Dong,
    },
    Unpinned {
        product_id: ProductId,
    },
    FlashStarted {
        flash: Flash,
    },
    FlashEnded {
        flash_id: u64,
        product_id: ProductId,
        reason: EndReason,
        list_price: Dong,
    },
}

/// An event with its place in the show's sequence and the instant it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedEvent {
    pub seq: u64,
    pub at: Millis,
    pub event: ShowEvent,
}

/// What a seller asks for when starting a flash price (already parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashSpec {
    pub product_id: ProductId,
    pub price: Dong,
    pub duration_s: i64,
    pub quantity_cap: Option<u32>,
    pub countdown_s: i64,
}

/// Why a seller or operator command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the show is {0}, not live")]
    NotLive(&'static str),
    #[error("the show is {from}; it cannot become {to}")]
    BadTransition {
        from: &'static str,
        to: &'static str,
    },
    #[error("product {0} is not in this show's lineup")]
    UnknownProduct(ProductId),
    #[error("product {0} is not pinned")]
    NotPinned(ProductId),
    #[error("no product is pinned")]
    NothingPinned,
    #[error("flash price {price} is above the list price {list}")]
    PriceAboveList { price: Dong, list: Dong },
    #[error("a flash sale is already running or counting down; end it first")]
    FlashActive,
    #[error("no flash sale is running")]
    NoFlash,
    #[error("{0}")]
    OutOfRange(String),
}

/// A claim as the book sees it: parsed, with the buyer taken from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub claim_id: ClaimId,
    pub buyer: BuyerId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    /// The unit price the viewer saw.
    pub seen_price: Dong,
}

/// An accepted claim, as kept in the book and written to the claim log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub claim_id: ClaimId,
    pub buyer: BuyerId,
    pub product_id: ProductId,
    pub quantity: u32,
    pub unit_price: Dong,
    /// The flash whose price applied, if any.
    pub flash_id: Option<u64>,
    pub at: Millis,
    pub cancelled_at: Option<Millis>,
}

/// The answer to an accepted (or duplicate) claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAccepted {
    pub record: ClaimRecord,
    /// Stock left of the product right after the claim was taken.
    pub stock_left: u32,
    /// This claim used up the flash's quantity cap: the flash should end now.
    pub flash_exhausted: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    ShowNotLive,
    UnknownProduct,
    NotPinned,
    StalePrice,
    LimitExceeded,
    SoldOut,
    /// The claim id is already used by another buyer.
    ClaimIdTaken,
}

/// A refused claim, with what the viewer needs to try again sensibly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub available: Option<u32>,
    pub limit_left: Option<u32>,
    pub current_price: Option<Dong>,
}

impl Refusal {
    fn plain(reason: RefusalReason) -> Self {
        Self {
            reason,
            available: None,
            limit_left: None,
            current_price: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    Accepted(ClaimAccepted),
    /// The claim id was accepted before: the original result, unchanged.
    Duplicate(ClaimAccepted),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelDecision {
    /// Units returned to stock now.
    Cancelled {
        record: ClaimRecord,
        /// Stock left once the returned units went to the waitlist (see [`ShowBook::cancel`]).
        stock_left: u32,
        /// What the returned units did for the product's waitlist, in order.
        waitlist: Vec<WaitlistOutcome>,
    },
    /// It was cancelled before; nothing changed.
    AlreadyCancelled {
        record: ClaimRecord,
        stock_left: u32,
    },
    UnknownClaim,
    ShowNotLive,
}

/// A buyer waiting for units of a sold-out product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistEntry {
    /// Unique within the show and increasing with every join: the FIFO order across the show,
    /// and the promoted claim's id (see [`WaitlistEntry::claim_id`]).
    pub number: u64,
    pub buyer: BuyerId,
    pub product_id: ProductId,
    /// Units wanted, 1 to the per-claim maximum; a promotion is for all of them or none.
    pub quantity: u32,
    /// The unit price when the buyer joined: a promotion never charges more than this.
    pub price: Dong,
    pub at: Millis,
}

impl WaitlistEntry {
    /// The id of the claim a promotion of this entry makes. Derived from the show-unique entry
    /// number only, so the same entry can never be promoted into two claims.
    pub fn claim_id(&self) -> Option<ClaimId> {
        ClaimId::parse(format!("{PROMOTED_CLAIM_PREFIX}{}", self.number)).ok()
    }
}

/// Why a waitlist join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistRefusal {
    ShowNotLive,
    UnknownProduct,
    /// Units are left: claim them instead.
    NotSoldOut,
    /// The buyer already holds so many units that the quantity would pass its limit.
    LimitExceeded,
    /// [`MAX_WAITLIST_PER_PRODUCT`] buyers are waiting already.
    WaitlistFull,
}

/// The answer to a waitlist join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// Added at the end; `position` counts from 1 at the head.
    Joined {
        entry: WaitlistEntry,
        position: u32,
    },
    /// The buyer was waiting on this product already: its entry (quantity and price as first
    /// joined) and position, unchanged.
    AlreadyWaiting {
        entry: WaitlistEntry,
        position: u32,
    },
    Refused(WaitlistRefusal),
}

/// Why a waiting buyer was passed over and removed when units came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The price now is above the price when the buyer joined.
    PriceRose,
    /// The buyer's per-product limit no longer leaves room for the quantity.
    LimitExceeded,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PriceRose => "price_rose",
            Self::LimitExceeded => "limit_exceeded",
        }
    }
}

/// What units coming back did for one waiting buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WaitlistOutcome {
    /// The buyer now holds an accepted claim (`record`), an ordinary one in the claim log.
    Promoted {
        entry: WaitlistEntry,
        record: ClaimRecord,
        /// The promotion used up the flash's quantity cap: the flash should end now.
        flash_exhausted: Option<u64>,
    },
    /// The buyer was removed from the waitlist without a claim.
    Skipped {
        entry: WaitlistEntry,
        reason: SkipReason,
    },
}

impl WaitlistOutcome {
    pub fn entry(&self) -> &WaitlistEntry {
        match self {
            Self::Promoted { entry, .. } | Self::Skipped { entry, .. } => entry,
        }
    }
}

/// A waitlist outcome kept for the nodes' ticks: `pos` is the claim-log position of the change
/// that caused it (the cancellation), so a tick reading the log from `feed_from` sees each
/// outcome once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistNotice {
    pub pos: u64,
    pub outcome: WaitlistOutcome,
}

/// One show's state and rules. See the module documentation.
#[derive(Debug, Clone)]
pub struct ShowBook {
    show_id: ShowId,
    status: ShowStatus,
    seq: u64,
    pinned: Option<usize>,
    flash: Option<Flash>,
    next_flash_id: u64,
    lineup: Vec<LineupEntry>,
    index: HashMap<ProductId, usize>,
    claims: HashMap<ClaimId, ClaimRecord>,
    /// Each buyer's claims and held units.
    buyers: HashMap<BuyerId, BuyerBook>,
    /// Claim-log entries (claims and cancels) so far; the position of the next entry.
    log_len: u64,
    accepted_claims: u64,
    /// Recent accepted claims for the public feed: (log position, claim id). The records are
    /// in `claims`; keeping only the id here spares copying a whole record on every claim.
    recent: VecDeque<(u64, ClaimId)>,
    /// Bumped on every stock change, so the fan-out can skip unchanged stock frames.
    stock_version: u64,
    /// Per lineup index, the buyers waiting for units, oldest first.
    waitlists: Vec<VecDeque<WaitlistEntry>>,
    /// The number the next waitlist entry gets.
    next_wait_number: u64,
    /// Recent waitlist outcomes for the nodes' ticks, at most [`WAITLIST_NOTICES_KEPT`].
    notices: VecDeque<WaitlistNotice>,
}

/// One buyer's part of a show: its claim ids, oldest first, and the units it holds per lineup
/// index, net of cancellations. Kept in one map keyed by the buyer alone, so a claim finds its
/// buyer with one look-up by reference; a map keyed by `(buyer, product)` needed a copy of the
/// buyer id for every look-up, on the hottest path of the embedded mode.
#[derive(Debug, Clone, Default)]
struct BuyerBook {
    claims: Vec<ClaimId>,
    /// Indexed by lineup index; shorter when the buyer never held the later products.
    held: Vec<u32>,
}

impl BuyerBook {
    fn held(&self, idx: usize) -> u32 {
        self.held.get(idx).copied().unwrap_or(0)
    }

    fn held_mut(&mut self, idx: usize) -> &mut u32 {
        if self.held.len() <= idx {
            self.held.resize(idx + 1, 0);
        }
        &mut self.held[idx]
    }
}

impl ShowBook {
    /// A new book. `lineup` entries start with `left == allotted`; duplicates of a product are
    /// refused by the caller (the store), the book keeps the first.
    pub fn new(show_id: ShowId, lineup: Vec<LineupEntry>) -> Self {
        let mut index = HashMap::with_capacity(lineup.len());
        for (i, entry) in lineup.iter().enumerate() {
            index.entry(entry.product.id.clone()).or_insert(i);
        }
        let waitlists = vec![VecDeque::new(); lineup.len()];
        Self {
            show_id,
            status: ShowStatus::Scheduled,
            seq: 0,
            pinned: None,
            flash: None,
            next_flash_id: 1,
            lineup,
            index,
            claims: HashMap::new(),
            buyers: HashMap::new(),
            log_len: 0,
            accepted_claims: 0,
            recent: VecDeque::with_capacity(FEED_RECENT),
            stock_version: 0,
            waitlists,
            next_wait_number: 1,
            notices: VecDeque::new(),
        }
    }

    // ----- reading ---------------------------------------------------------------------------

    pub fn show_id(&self) -> &ShowId {
        &self.show_id
    }
    pub fn status(&self) -> ShowStatus {
        self.status
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn lineup(&self) -> &[LineupEntry] {
        &self.lineup
    }
    pub fn pinned(&self) -> Option<&LineupEntry> {
        self.pinned.and_then(|i| self.lineup.get(i))
    }
    pub fn flash(&self) -> Option<&Flash> {
        self.flash.as_ref()
    }
    pub fn log_len(&self) -> u64 {
        self.log_len
    }
    pub fn accepted_claims(&self) -> u64 {
        self.accepted_claims
    }
    pub fn stock_version(&self) -> u64 {
        self.stock_version
    }
    pub fn claim_record(&self, id: &ClaimId) -> Option<&ClaimRecord> {
        self.claims.get(id)
    }
    pub fn claims(&self) -> impl Iterator<Item = &ClaimRecord> {
        self.claims.values()
    }

    /// Stock left per lineup product, in lineup order.
    pub fn stock(&self) -> Vec<(ProductId, u32)> {
        self.lineup
            .iter()
            .map(|e| (e.product.id.clone(), e.left))
            .collect()
    }

    /// The buyer's claims, oldest first.
    pub fn claims_of(&self, buyer: &BuyerId) -> Vec<ClaimRecord> {
        let mut out: Vec<ClaimRecord> = self
            .buyers
            .get(buyer)
            .into_iter()
            .flat_map(|b| &b.claims)
            .filter_map(|id| self.claims.get(id).cloned())
            .collect();
        out.sort_by_key(|c| c.at);
        out
    }

    /// Units the buyer holds of a product (accepted, not cancelled).
    pub fn held(&self, buyer: &BuyerId, product: &ProductId) -> u32 {
        self.index
            .get(product)
            .map_or(0, |&i| self.held_at(buyer, i))
    }

    /// Units the buyer holds of the product at lineup index `idx`.
    fn held_at(&self, buyer: &BuyerId, idx: usize) -> u32 {
        self.buyers.get(buyer).map_or(0, |b| b.held(idx))
    }

    /// Accepted claims at log positions `>= from`, oldest first, at most [`FEED_RECENT`].
    pub fn recent_since(&self, from: u64) -> Vec<ClaimRecord> {
        self.recent
            .iter()
            .filter(|(pos, _)| *pos >= from)
            .filter_map(|(_, id)| self.claims.get(id))
            // As it was accepted: a later cancellation is an entry of its own.
            .map(|r| ClaimRecord {
                cancelled_at: None,
                ..r.clone()
            })
            .collect()
    }

    /// The unit price a claim on this lineup index must carry at `now`.
    fn price_of(&self, idx: usize, now: Millis) -> Option<(Dong, Option<u64>)> {
        let entry = self.lineup.get(idx)?;
        match &self.flash {
            Some(f) if f.product_id == entry.product.id && f.applies(now) => {
                Some((f.price, Some(f.id)))
            }
            _ => Some((entry.product.list_price, None)),
        }
    }

    /// The price a claim on the pinned product must carry at `now`, if something is pinned.
    pub fn current_price(&self, now: Millis) -> Option<Dong> {
        self.pinned
            .and_then(|i| self.price_of(i, now))
            .map(|(p, _)| p)
    }

    // ----- claims ----------------------------------------------------------------------------

    /// Decides a claim and, if accepted, applies it. Every check happens before the first
    /// change, so a refusal leaves the book exactly as it was.
    pub fn claim(&mut self, req: &ClaimRequest, now: Millis) -> ClaimDecision {
        // 1. Idempotency: the same claim id always gets the same answer.
        if let Some(existing) = self.claims.get(&req.claim_id) {
            if existing.buyer != req.buyer {
                return ClaimDecision::Refused(Refusal::plain(RefusalReason::ClaimIdTaken));
            }
            let record = existing.clone();
            let stock_left = self
                .index
                .get(&record.product_id)
                .map_or(0, |&i| self.lineup[i].left);
            return ClaimDecision::Duplicate(ClaimAccepted {
                record,
                stock_left,
                flash_exhausted: None,
            });
        }
        // 2. The show must be live.
        if self.status != ShowStatus::Live {
            return ClaimDecision::Refused(Refusal::plain(RefusalReason::ShowNotLive));
        }
        // 3. The product must be in the lineup and on screen.
        let Some(&idx) = self.index.get(&req.product_id) else {
            return ClaimDecision::Refused(Refusal::plain(RefusalReason::UnknownProduct));
        };
        if self.pinned != Some(idx) {
            return ClaimDecision::Refused(Refusal::plain(RefusalReason::NotPinned));
        }
        // 4. The price the viewer saw must be the price now.
        let Some((price, flash_id)) = self.price_of(idx, now) else {
            return ClaimDecision::Refused(Refusal::plain(RefusalReason::UnknownProduct));
        };
        if price != req.seen_price {
            return ClaimDecision::Refused(Refusal {
                current_price: Some(price),
                ..Refusal::plain(RefusalReason::StalePrice)
            });
        }
        let qty = req.quantity.get();
        let entry = &self.lineup[idx];
        // 5. The buyer's limit for this product.
        let held = self.held_at(&req.buyer, idx);
        let limit_left = entry.buyer_limit.saturating_sub(held);
        if qty > limit_left {
            return ClaimDecision::Refused(Refusal {
                limit_left: Some(limit_left),
                ..Refusal::plain(RefusalReason::LimitExceeded)
            });
        }
        // 6. The flash quantity cap, then 7. stock. No partial fills: all or nothing.
        let cap_left = match (&self.flash, flash_id) {
            (Some(f), Some(_)) => f.cap_left(),
            _ => None,
        };
        let available = cap_left.map_or(entry.left, |c| c.min(entry.left));
        if qty > available {
            return ClaimDecision::Refused(Refusal {
                available: Some(available),
                ..Refusal::plain(RefusalReason::SoldOut)
            });
        }

        // Every check passed: apply.
        let record = ClaimRecord {
            claim_id: req.claim_id.clone(),
            buyer: req.buyer.clone(),
            product_id: req.product_id.clone(),
            quantity: qty,
            unit_price: price,
            flash_id,
            at: now,
            cancelled_at: None,
        };
        let stock_left = self.apply_claim(idx, &record);
        let flash_exhausted = match &self.flash {
            Some(f) if Some(f.id) == flash_id && f.cap_left() == Some(0) => Some(f.id),
            _ => None,
        };
        ClaimDecision::Accepted(ClaimAccepted {
            record,
            stock_left,
            flash_exhausted,
        })
    }

    /// Applies an accepted claim's effects; returns the stock left.
    fn apply_claim(&mut self, idx: usize, record: &ClaimRecord) -> u32 {
        let entry = &mut self.lineup[idx];
        entry.left = entry.left.saturating_sub(record.quantity);
        let left = entry.left;
        // Only a buyer's first claim copies its id into the map.
        if let Some(b) = self.buyers.get_mut(&record.buyer) {
            *b.held_mut(idx) += record.quantity;
            b.claims.push(record.claim_id.clone());
        } else {
            let mut b = BuyerBook::default();
            *b.held_mut(idx) += record.quantity;
            b.claims.push(record.claim_id.clone());
            self.buyers.insert(record.buyer.clone(), b);
        }
        if let Some(f) = self.flash.as_mut()
            && Some(f.id) == record.flash_id
        {
            f.sold = f.sold.saturating_add(record.quantity);
        }
        self.claims.insert(record.claim_id.clone(), record.clone());
        if self.recent.len() == FEED_RECENT {
            self.recent.pop_front();
        }
        self.recent
            .push_back((self.log_len, record.claim_id.clone()));
        self.log_len += 1;
        self.accepted_claims += 1;
        self.stock_version += 1;
        left
    }

    /// Cancels one of the buyer's claims while the show is live; the units go back to stock.
    pub fn cancel(&mut self, buyer: &BuyerId, claim_id: &ClaimId, now: Millis) -> CancelDecision {
        let Some(record) = self.claims.get(claim_id) else {
            return CancelDecision::UnknownClaim;
        };
        // Another buyer's claim is indistinguishable from a missing one: ids are not leaked.
        if &record.buyer != buyer {
            return CancelDecision::UnknownClaim;
        }
        let idx = self.index.get(&record.product_id).copied();
        let stock_left = idx.map_or(0, |i| self.lineup[i].left);
        if record.cancelled_at.is_some() {
            return CancelDecision::AlreadyCancelled {
                record: record.clone(),
                stock_left,
            };
        }
        if self.status != ShowStatus::Live {
            return CancelDecision::ShowNotLive;
        }
        let record = record.clone();
        let cancel_pos = self.log_len;
        let mut stock_left = self.apply_cancel(&record, now);
        let mut waitlist = Vec::new();
        if let Some(&idx) = self.index.get(&record.product_id) {
            waitlist = self.promote(idx, cancel_pos, now);
            stock_left = self.lineup[idx].left;
        }
        let mut record = record;
        record.cancelled_at = Some(now);
        CancelDecision::Cancelled {
            record,
            stock_left,
            waitlist,
        }
    }

    fn apply_cancel(&mut self, record: &ClaimRecord, now: Millis) -> u32 {
        let Some(&idx) = self.index.get(&record.product_id) else {
            return 0;
        };
        let entry = &mut self.lineup[idx];
        entry.left = entry
            .left
            .saturating_add(record.quantity)
            .min(entry.allotted);
        let left = entry.left;
        if let Some(b) = self.buyers.get_mut(&record.buyer) {
            let h = b.held_mut(idx);
            *h = h.saturating_sub(record.quantity);
        }
        if let Some(f) = self.flash.as_mut()
            && Some(f.id) == record.flash_id
        {
            f.sold = f.sold.saturating_sub(record.quantity);
        }
        if let Some(stored) = self.claims.get_mut(&record.claim_id) {
            stored.cancelled_at = Some(now);
        }
        self.log_len += 1;
        self.stock_version += 1;
        left
    }

    // ----- waitlist ------------------------------------------------------------------------------
    //
    // A sold-out product keeps a bounded FIFO of buyers waiting for units. Units come back only
    // when a claim is cancelled while the show is live (the one way stock grows today); they go
    // to the waitlist first, in the same step, by [`ShowBook::promote`]. A promotion is an
    // ordinary accepted claim with an id derived from the entry ([`WaitlistEntry::claim_id`]).

    /// Puts the buyer on a product's waitlist. Allowed only while the show is live, for a lineup
    /// product with no unit left, within the buyer's limit and the list's bound. Joining again
    /// changes nothing and answers the same entry and position.
    pub fn waitlist_join(
        &mut self,
        buyer: &BuyerId,
        product_id: &ProductId,
        quantity: Quantity,
        now: Millis,
    ) -> JoinDecision {
        if self.status != ShowStatus::Live {
            return JoinDecision::Refused(WaitlistRefusal::ShowNotLive);
        }
        let Some(&idx) = self.index.get(product_id) else {
            return JoinDecision::Refused(WaitlistRefusal::UnknownProduct);
        };
        if let Some((entry, position)) = self.waiting(idx, buyer) {
            return JoinDecision::AlreadyWaiting { entry, position };
        }
        let entry = &self.lineup[idx];
        if entry.left > 0 {
            return JoinDecision::Refused(WaitlistRefusal::NotSoldOut);
        }
        let held = self.held_at(buyer, idx);
        if held.saturating_add(quantity.get()) > entry.buyer_limit {
            return JoinDecision::Refused(WaitlistRefusal::LimitExceeded);
        }
        if self.waitlists[idx].len() >= MAX_WAITLIST_PER_PRODUCT {
            return JoinDecision::Refused(WaitlistRefusal::WaitlistFull);
        }
        let Some((price, _)) = self.price_of(idx, now) else {
            return JoinDecision::Refused(WaitlistRefusal::UnknownProduct);
        };
        let entry = WaitlistEntry {
            number: self.next_wait_number,
            buyer: buyer.clone(),
            product_id: product_id.clone(),
            quantity: quantity.get(),
            price,
            at: now,
        };
        self.next_wait_number += 1;
        self.waitlists[idx].push_back(entry.clone());
        let position = self.waitlists[idx].len() as u32;
        JoinDecision::Joined { entry, position }
    }

    /// Takes the buyer off one product's waitlist, or (`None`) off every waitlist of the show,
    /// as when it leaves the show. Returns the entries removed; none is not an error (leaving
    /// is idempotent). `Err` only for a product outside the lineup.
    pub fn waitlist_leave(
        &mut self,
        buyer: &BuyerId,
        product_id: Option<&ProductId>,
    ) -> Result<Vec<WaitlistEntry>, WaitlistRefusal> {
        let range = match product_id {
            Some(p) => match self.index.get(p) {
                Some(&idx) => idx..idx + 1,
                None => return Err(WaitlistRefusal::UnknownProduct),
            },
            None => 0..self.waitlists.len(),
        };
        let mut removed = Vec::new();
        for idx in range {
            if let Some(pos) = self.waitlists[idx].iter().position(|e| &e.buyer == buyer)
                && let Some(entry) = self.waitlists[idx].remove(pos)
            {
                removed.push(entry);
            }
        }
        Ok(removed)
    }

    /// The buyer's entry on a lineup index's waitlist and its position (from 1).
    fn waiting(&self, idx: usize, buyer: &BuyerId) -> Option<(WaitlistEntry, u32)> {
        self.waitlists.get(idx).and_then(|list| {
            list.iter()
                .position(|e| &e.buyer == buyer)
                .map(|i| (list[i].clone(), i as u32 + 1))
        })
    }

    /// The waitlists the buyer is on, in lineup order, with its position on each.
    pub fn waitlist_of(&self, buyer: &BuyerId) -> Vec<(WaitlistEntry, u32)> {
        (0..self.waitlists.len())
            .filter_map(|idx| self.waiting(idx, buyer))
            .collect()
    }

    /// A product's waitlist, oldest first (empty for a product outside the lineup).
    pub fn waitlist(&self, product_id: &ProductId) -> Vec<WaitlistEntry> {
        self.index
            .get(product_id)
            .map(|&idx| self.waitlists[idx].iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many buyers wait on a product (0 for a product outside the lineup).
    pub fn waiting_count(&self, product_id: &ProductId) -> usize {
        self.index
            .get(product_id)
            .map_or(0, |&idx| self.waitlists[idx].len())
    }

    /// Waitlist outcomes caused at claim-log positions `>= from`, oldest first, at most
    /// [`WAITLIST_NOTICES_KEPT`].
    pub fn waitlist_notices_since(&self, from: u64) -> Vec<&WaitlistNotice> {
        self.notices.iter().filter(|n| n.pos >= from).collect()
    }

    /// Gives units that came back on lineup index `idx` to its waitlist, head first. Each entry,
    /// in order, while units are available (stock, and the flash cap if the flash price applies):
    ///
    /// - price now above the entry's price: removed, skipped `price_rose`;
    /// - its quantity would pass the buyer's limit: removed, skipped `limit_exceeded`;
    /// - its quantity is more than the units available: it stays, keeping its place, and the
    ///   next entry is tried (first fit: no partial claim, and the units go to a waiting buyer
    ///   who can take them rather than back on the shelf while anyone waits who fits);
    /// - otherwise: removed and promoted, an accepted claim at the current price.
    ///
    /// Units nobody waiting can take stay in stock for anyone to claim. `cause_pos` is the
    /// claim-log position of the change that returned the units, for the notices.
    fn promote(&mut self, idx: usize, cause_pos: u64, now: Millis) -> Vec<WaitlistOutcome> {
        let mut out = Vec::new();
        if self.status != ShowStatus::Live {
            return out;
        }
        let mut i = 0;
        while i < self.waitlists[idx].len() {
            // Recomputed per entry: a promotion may use up the flash cap, ending its price.
            let Some((price, flash_id)) = self.price_of(idx, now) else {
                break;
            };
            let entry = &self.lineup[idx];
            let cap_left = match (&self.flash, flash_id) {
                (Some(f), Some(_)) => f.cap_left(),
                _ => None,
            };
            let available = cap_left.map_or(entry.left, |c| c.min(entry.left));
            if available == 0 {
                break;
            }
            let limit = entry.buyer_limit;
            let waiting = &self.waitlists[idx][i];
            let held = self.held_at(&waiting.buyer, idx);
            let skip = if price > waiting.price {
                Some(SkipReason::PriceRose)
            } else if held.saturating_add(waiting.quantity) > limit {
                Some(SkipReason::LimitExceeded)
            } else {
                None
            };
            if let Some(reason) = skip {
                if let Some(entry) = self.waitlists[idx].remove(i) {
                    out.push(WaitlistOutcome::Skipped { entry, reason });
                }
                continue;
            }
            let claim_id = waiting.claim_id();
            let fits = waiting.quantity <= available;
            let Some(claim_id) = claim_id.filter(|id| fits && !self.claims.contains_key(id)) else {
                i += 1;
                continue;
            };
            let Some(entry) = self.waitlists[idx].remove(i) else {
                break;
            };
            let record = ClaimRecord {
                claim_id,
                buyer: entry.buyer.clone(),
                product_id: entry.product_id.clone(),
                quantity: entry.quantity,
                unit_price: price,
                flash_id,
                at: now,
                cancelled_at: None,
            };
            self.apply_claim(idx, &record);
            let flash_exhausted = match &self.flash {
                Some(f) if Some(f.id) == flash_id && f.cap_left() == Some(0) => Some(f.id),
                _ => None,
            };
            out.push(WaitlistOutcome::Promoted {
                entry,
                record,
                flash_exhausted,
            });
            if flash_exhausted.is_some() {
                // The flash price just ended: price and units available changed for every
                // entry, those passed over included, so judge them again from the head.
                i = 0;
            }
        }
        for outcome in &out {
            if self.notices.len() == WAITLIST_NOTICES_KEPT {
                self.notices.pop_front();
            }
            self.notices.push_back(WaitlistNotice {
                pos: cause_pos,
                outcome: outcome.clone(),
            });
        }
        out
    }

    // ----- seller and operator commands ---------------------------------------------------------

    fn emit(&mut self, at: Millis, event: ShowEvent) -> SequencedEvent {
        self.seq += 1;
        let ev = SequencedEvent {
            seq: self.seq,
            at,
            event,
        };
        self.fold(&ev.event);
        ev
    }

    /// Ends a flash that has run past its end (or its cap), so a new command starts clean.
    fn end_lapsed_flash(&mut self, now: Millis, out: &mut Vec<SequencedEvent>) {
        let reason = match &self.flash {
            Some(f) if now >= f.ends_at => EndReason::Expired,
            Some(f) if f.cap_left() == Some(0) => EndReason::CapReached,
            _ => return,
        };
        self.end_flash_event(now, reason, out);
    }

    fn end_flash_event(&mut self, now: Millis, reason: EndReason, out: &mut Vec<SequencedEvent>) {
        if let Some(f) = &self.flash {
            let ev = ShowEvent::FlashEnded {
                flash_id: f.id,
                product_id: f.product_id.clone(),
                reason,
                list_price: f.list_price,
            };
            out.push(self.emit(now, ev));
        }
    }

    /// Scheduled → live.
    pub fn go_live(&mut self, now: Millis) -> Result<Vec<SequencedEvent>, CommandError> {
        if self.status != ShowStatus::Scheduled {
            return Err(CommandError::BadTransition {
                from: self.status.as_str(),
                to: "live",
            });
        }
        Ok(vec![self.emit(now, ShowEvent::ShowLive)])
    }

    /// Scheduled or live → closed. After this no claim or cancel is accepted.
    pub fn close(&mut self, now: Millis) -> Result<Vec<SequencedEvent>, CommandError> {
        if self.status == ShowStatus::Closed {
            return Err(CommandError::BadTransition {
                from: "closed",
                to: "closed",
            });
        }
        let mut out = Vec::new();
        self.end_flash_event(now, EndReason::ShowClosed, &mut out);
        let final_stock = self.stock();
        out.push(self.emit(now, ShowEvent::ShowClosed { final_stock }));
        Ok(out)
    }

    fn require_live(&self) -> Result<(), CommandError> {
        match self.status {
            ShowStatus::Live => Ok(()),
            other => Err(CommandError::NotLive(other.as_str())),
        }
    }

    /// Puts a lineup product on screen. Pinning another product ends the running flash.
    pub fn pin(
        &mut self,
        product_id: &ProductId,
        now: Millis,
    ) -> Result<Vec<SequencedEvent>, CommandError> {
        self.require_live()?;
        let Some(&idx) = self.index.get(product_id) else {
            return Err(CommandError::UnknownProduct(product_id.clone()));
        };
        let mut out = Vec::new();
        self.end_lapsed_flash(now, &mut out);
        if self.pinned != Some(idx) {
            if self.flash.is_some() {
                self.end_flash_event(now, EndReason::Unpinned, &mut out);
            }
            let price = self.lineup[idx].product.list_price;
            out.push(self.emit(
                now,
                ShowEvent::Pinned {
                    product_id: product_id.clone(),
                    price,
                },
            ));
        }
        // Pinning what is already pinned changes nothing: no event, the ack carries the
        // current sequence.
        Ok(out)
    }

    /// Takes the pinned product off screen, ending its flash.
    pub fn unpin(&mut self, now: Millis) -> Result<Vec<SequencedEvent>, CommandError> {
        self.require_live()?;
        let Some(entry) = self.pinned() else {
            return Err(CommandError::NothingPinned);
        };
        let product_id = entry.product.id.clone();
        let mut out = Vec::new();
        self.end_lapsed_flash(now, &mut out);
        self.end_flash_event(now, EndReason::Unpinned, &mut out);
        out.push(self.emit(now, ShowEvent::Unpinned { product_id }));
        Ok(out)
    }

    /// Starts a flash price on the pinned product, optionally after a countdown.
    pub fn start_flash(
        &mut self,
        spec: &FlashSpec,
        now: Millis,
    ) -> Result<Vec<SequencedEvent>, CommandError> {
        self.require_live()?;
        let Some(&idx) = self.index.get(&spec.product_id) else {
            return Err(CommandError::UnknownProduct(spec.product_id.clone()));
        };
        if self.pinned != Some(idx) {
            return Err(CommandError::NotPinned(spec.product_id.clone()));
        }
        let list = self.lineup[idx].product.list_price;
        if spec.price > list {
            return Err(CommandError::PriceAboveList {
                price: spec.price,
                list,
            });
        }
        if !(1..=MAX_FLASH_SECONDS).contains(&spec.duration_s) {
            return Err(CommandError::OutOfRange(format!(
                "duration_s must be 1 to {MAX_FLASH_SECONDS}, got {}",
                spec.duration_s
            )));
        }
        if !(0..=MAX_COUNTDOWN_SECONDS).contains(&spec.countdown_s) {
            return Err(CommandError::OutOfRange(format!(
                "countdown_s must be 0 to {MAX_COUNTDOWN_SECONDS}, got {}",
                spec.countdown_s
            )));
        }
        if spec.quantity_cap == Some(0) {
            return Err(CommandError::OutOfRange(
                "quantity_cap must be at least 1".into(),
            ));
        }
        let mut out = Vec::new();
        self.end_lapsed_flash(now, &mut out);
        if self.flash.is_some() {
            return Err(CommandError::FlashActive);
        }
        let starts_at = now + spec.countdown_s * 1000;
        let flash = Flash {
            id: self.next_flash_id,
            product_id: spec.product_id.clone(),
            price: spec.price,
            list_price: list,
            starts_at,
            ends_at: starts_at + spec.duration_s * 1000,
            quantity_cap: spec.quantity_cap,
            sold: 0,
        };
        out.push(self.emit(now, ShowEvent::FlashStarted { flash }));
        Ok(out)
    }

    /// Ends the flash. With `only` set, ends it only if it is still that flash (timers use
    /// this so a late timer never ends a newer flash); then `Ok(vec![])` means nothing to do.
    pub fn end_flash(
        &mut self,
        reason: EndReason,
        only: Option<u64>,
        now: Millis,
    ) -> Result<Vec<SequencedEvent>, CommandError> {
        match (&self.flash, only) {
            (None, None) => Err(CommandError::NoFlash),
            (None, Some(_)) => Ok(Vec::new()),
            (Some(f), Some(id)) if f.id != id => Ok(Vec::new()),
            (Some(_), _) => {
                let mut out = Vec::new();
                self.end_flash_event(now, reason, &mut out);
                Ok(out)
            }
        }
    }

    // ----- rebuilding ----------------------------------------------------------------------------

    /// The effect of an event on the state. Commands call it through `emit`; replay calls it
    /// directly, so live state and rebuilt state cannot drift apart.
    fn fold(&mut self, event: &ShowEvent) {
        match event {
            ShowEvent::ShowLive => self.status = ShowStatus::Live,
            ShowEvent::ShowClosed { .. } => {
                self.status = ShowStatus::Closed;
                self.pinned = None;
                self.flash = None;
                // Nothing comes back after the close: nobody waits any more.
                for list in &mut self.waitlists {
                    list.clear();
                }
            }
            ShowEvent::Pinned { product_id, .. } => {
                self.pinned = self.index.get(product_id).copied()
            }
            ShowEvent::Unpinned { .. } => self.pinned = None,
            ShowEvent::FlashStarted { flash } => {
                self.next_flash_id = self.next_flash_id.max(flash.id + 1);
                let mut flash = flash.clone();
                // Units already held at this flash's price (replay may see claims first).
                flash.sold = self
                    .claims
                    .values()
                    .filter(|c| c.flash_id == Some(flash.id) && c.cancelled_at.is_none())
                    .map(|c| c.quantity)
                    .sum();
                self.flash = Some(flash);
            }
            ShowEvent::FlashEnded { .. } => self.flash = None,
        }
    }

    /// Replays a journaled event. Events must come in sequence order; older ones are ignored.
    pub fn replay_event(&mut self, ev: &SequencedEvent) {
        if ev.seq <= self.seq {
            return;
        }
        self.seq = ev.seq;
        self.fold(&ev.event);
    }

    /// Replays a journaled accepted claim, without re-checking rules: it was accepted then.
    pub fn replay_claim(&mut self, record: &ClaimRecord) {
        if self.claims.contains_key(&record.claim_id) {
            return;
        }
        let Some(&idx) = self.index.get(&record.product_id) else {
            return;
        };
        let mut fresh = record.clone();
        fresh.cancelled_at = None;
        self.apply_claim(idx, &fresh);
    }

    /// Replays a journaled cancellation.
    pub fn replay_cancel(&mut self, claim_id: &ClaimId, at: Millis) {
        let Some(record) = self.claims.get(claim_id).cloned() else {
            return;
        };
        if record.cancelled_at.is_none() {
            self.apply_cancel(&record, at);
        }
    }

    /// Replays a journaled waitlist join, without re-checking rules. Entries replay in journal
    /// order, which is the order they joined. A closed show keeps no waitlist.
    pub fn replay_waitlist_join(&mut self, entry: &WaitlistEntry) {
        self.next_wait_number = self.next_wait_number.max(entry.number + 1);
        if self.status == ShowStatus::Closed {
            return;
        }
        let Some(&idx) = self.index.get(&entry.product_id) else {
            return;
        };
        let list = &mut self.waitlists[idx];
        if !list
            .iter()
            .any(|e| e.number == entry.number || e.buyer == entry.buyer)
        {
            list.push_back(entry.clone());
        }
    }

    /// Replays a journaled removal from a waitlist (a leave, a promotion or a skip).
    pub fn replay_waitlist_leave(&mut self, entry: &WaitlistEntry) {
        if let Some(&idx) = self.index.get(&entry.product_id) {
            self.waitlists[idx].retain(|e| e.number != entry.number);
        }
    }

    /// Checks the book's own invariants; used by tests and after replay.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, entry) in self.lineup.iter().enumerate() {
            let held: u64 = self
                .claims
                .values()
                .filter(|c| c.product_id == entry.product.id && c.cancelled_at.is_none())
                .map(|c| u64::from(c.quantity))
                .sum();
            if u64::from(entry.allotted) != u64::from(entry.left) + held {
                return Err(format!(
                    "product {}: allotted {} != left {} + held {held}",
                    entry.product.id, entry.allotted, entry.left
                ));
            }
            for (buyer, b) in &self.buyers {
                let h = b.held(i);
                if h > entry.buyer_limit {
                    return Err(format!(
                        "buyer {buyer} holds {h} > limit {}",
                        entry.buyer_limit
                    ));
                }
            }
            let list = &self.waitlists[i];
            if list.len() > MAX_WAITLIST_PER_PRODUCT {
                return Err(format!(
                    "product {}: {} waiting > {MAX_WAITLIST_PER_PRODUCT}",
                    entry.product.id,
                    list.len()
                ));
            }
            for (k, w) in list.iter().enumerate() {
                if w.product_id != entry.product.id {
                    return Err(format!("entry {} on the wrong waitlist", w.number));
                }
                if list.iter().skip(k + 1).any(|o| o.buyer == w.buyer) {
                    return Err(format!("buyer {} waits twice", w.buyer));
                }
                if list.iter().skip(k + 1).any(|o| o.number <= w.number) {
                    return Err(format!("waitlist of {} out of order", entry.product.id));
                }
            }
            if self.status == ShowStatus::Closed && !list.is_empty() {
                return Err(format!(
                    "closed show still has a waitlist on {}",
                    entry.product.id
                ));
            }
        }
        Ok(())
    }
}
