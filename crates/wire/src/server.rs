//! Messages the server sends over the WebSocket, as JSON text frames tagged by `type`.
//!
//! Two kinds of traffic share a connection:
//! - sequenced `event`s (show state, pins, flash prices): every one is delivered, in order, each
//!   stamped with the show's sequence number; a client that misses one must resume or resync;
//! - conflated values (`stock`, `feed`, `viewers`): only the latest matters, so a slow client
//!   gets fewer of them instead of a growing queue. They carry no sequence number.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every connection.
    Hello(Hello),
    /// The whole show as of sequence `seq`; every later `event` has a greater `seq`.
    Snapshot(Box<Snapshot>),
    /// A sequenced show event.
    Event(EventFrame),
    /// The viewer fell behind: the show's public state as of sequence `seq`, in place of the
    /// events up to it; every later `event` has a greater `seq`.
    CatchUp(CatchUp),
    /// Conflated: stock left per lineup product.
    Stock(StockFrame),
    /// Conflated: recent accepted claims, without buyer identity.
    Feed(FeedFrame),
    /// Conflated: how many viewers watch the show now.
    Viewers(ViewersFrame),
    /// The private answer to a `claim`.
    ClaimResult(ClaimResult),
    /// The private answer to a `cancel`.
    CancelResult(CancelResult),
    /// The private answer to a `waitlist_join` or `waitlist_leave`, or news of the buyer's
    /// place on a waitlist (`promoted`, `skipped`) when units came back.
    WaitlistResult(WaitlistResult),
    /// A seller command was applied as event `seq`.
    Ack(Ack),
    /// A request could not be handled; the connection stays usable.
    Error(ErrorFrame),
}

/// The show's public state (what every viewer sees alike) as of sequence `seq`: sent to a
/// viewer that fell too far behind to be sent every event, instead of closing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    pub seq: u64,
    /// `scheduled`, `live` or `closed`.
    pub status: String,
    pub pinned: Option<String>,
    pub flash: Option<FlashView>,
    /// The price a claim on the pinned product must carry as of `seq`.
    pub price: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub show_id: String,
    pub role: String,
    pub subject: String,
    /// How the connection was started: `snapshot` (a snapshot follows) or `resume` (the missed
    /// events follow, starting after the client's `last_seq`).
    pub start: String,
    pub limits: ConnectionLimits,
}

/// Bounds the client should know about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionLimits {
    /// Longest text frame the server accepts, in bytes.
    pub max_frame_bytes: usize,
    /// Sustained client messages per second per connection (every text frame counts).
    pub messages_per_second: u32,
    /// Messages a client may send at once above the sustained rate.
    pub message_burst: u32,
    /// Largest quantity one claim may ask for.
    pub max_claim_quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    /// Server clock, UTC milliseconds since the Unix epoch, to correct countdowns.
    pub server_time: i64,
    pub show: ShowView,
    pub pinned: Option<String>,
    pub flash: Option<FlashView>,
    /// The price a claim on the pinned product must carry right now.
    pub price: Option<i64>,
    pub lineup: Vec<LineupView>,
    pub my_claims: Vec<MyClaim>,
    /// The waitlists this viewer is on, in lineup order.
    #[serde(default)]
    pub my_waitlist: Vec<MyWaitlistEntry>,
    pub viewers: u64,
    /// The newest accepted claims of the show as this node last saw them (at most
    /// `limits.feed_items`, oldest first, no buyer identity), so a page shows the claim feed
    /// at once instead of waiting for the next claim.
    #[serde(default)]
    pub recent_claims: Vec<FeedItem>,
}

/// A viewer's place on one product's waitlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyWaitlistEntry {
    pub product_id: String,
    /// 1 is the head: the next to get units that come back.
    pub position: u32,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowView {
    pub id: String,
    pub title: String,
    pub seller_id: String,
    pub seller_name: String,
    /// `scheduled`, `live` or `closed`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineupView {
    pub product: ProductView,
    pub allotted: u32,
    pub left: u32,
    pub buyer_limit: u32,
}

/// A product with the OCOP proof shown next to it on screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub group: String,
    pub stars: u8,
    pub district: String,
    pub commune: String,
    pub producer: String,
    pub list_price: i64,
    pub origin_document: String,
    pub quality_label: String,
    /// The documents behind the proof, as admitted.
    #[serde(default)]
    pub documents: Vec<DocumentBody>,
}

/// A proof document: `kind` is `ocop_certificate`, `origin_proof` or `quality_label`; dates are
/// local `YYYY-MM-DD`, valid from and until inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocumentBody {
    pub kind: String,
    pub reference: String,
    pub valid_from: String,
    pub valid_until: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlashView {
    pub flash_id: u64,
    pub product_id: String,
    pub price: i64,
    pub list_price: i64,
    /// UTC milliseconds; in the future while counting down.
    pub starts_at: i64,
    pub ends_at: i64,
    pub quantity_cap: Option<u32>,
    /// Units sold at the flash price so far (as of the snapshot).
    pub sold: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyClaim {
    pub claim_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: i64,
    /// `accepted` or `cancelled`.
    pub status: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub seq: u64,
    /// When the event happened, UTC milliseconds.
    pub at: i64,
    pub event: ShowEvent,
}

/// Sequenced show events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShowEvent {
    /// The show went live; claims are open.
    ShowLive,
    /// The show closed; no claim is accepted after this. Carries the stock left at close.
    ShowClosed {
        final_stock: Vec<StockLevel>,
    },
    Pinned {
        product_id: String,
        price: i64,
    },
    Unpinned {
        product_id: String,
    },
    FlashStarted(FlashView),
    /// `reason`: `ended_by_seller`, `expired`, `cap_reached`, `unpinned` or `show_closed`.
    FlashEnded {
        flash_id: u64,
        product_id: String,
        reason: String,
        list_price: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub product_id: String,
    pub left: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockFrame {
    pub levels: Vec<StockLevel>,
    /// Units sold so far at the running flash's price, if a flash is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash: Option<FlashProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashProgress {
    pub flash_id: u64,
    pub sold: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedFrame {
    /// The newest accepted claims since the previous feed frame, oldest first, at most a few.
    pub items: Vec<FeedItem>,
    /// Accepted claims in the show so far.
    pub total_claims: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewersFrame {
    pub count: u64,
}

/// `accepted`, `duplicate` (the original acceptance, repeated), `refused`, or `pending`: the
/// claim may have reached the inventory and its outcome is not known by the claim deadline; the
/// real `claim_result` for the same claim id follows on the connection (or shows in the next
/// snapshot's `my_claims`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcomeKind {
    Accepted,
    Duplicate,
    Refused,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResult {
    pub claim_id: String,
    pub outcome: ClaimOutcomeKind,
    /// Set when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Accepted: the unit price the claim was taken at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    /// Accepted: stock left of the product right after this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_left: Option<u32>,
    /// `sold_out`: how many units could still be claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// `limit_exceeded`: how many more units this buyer may claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_left: Option<u32>,
    /// `stale_price`: the price to claim at now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcomeKind {
    Cancelled,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelResult {
    pub claim_id: String,
    pub outcome: CancelOutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorCode>,
    /// Cancelled: stock left of the product after the units returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_left: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `joined`, `left`, `refused`, `promoted` (the buyer now holds the accepted claim `claim_id`)
/// or `skipped` (removed without a claim: `price_rose` or `limit_exceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistOutcomeKind {
    Joined,
    Left,
    Refused,
    Promoted,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitlistResult {
    pub product_id: String,
    pub outcome: WaitlistOutcomeKind,
    /// `joined`: the place on the list, 1 at the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// `joined`, `promoted`, `skipped`: the units waited for (promoted: now claimed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// `promoted`: the id of the accepted claim the buyer now holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_id: Option<String>,
    /// `joined`: the price when joining (a promotion never costs more); `promoted`: the unit
    /// price of the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    /// `refused` and `skipped`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Sequence number of the event the command produced.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
}
