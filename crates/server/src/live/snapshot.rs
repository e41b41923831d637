//! Snapshots for joining viewers, built on this node from what it keeps of the show already.
//!
//! A snapshot is the show's public part (identity, status, pin, flash, price, lineup with the
//! stock left, claim feed), alike for every viewer joining at one point; the viewer's own part
//! (`my_claims`, `my_waitlist`); and two numbers of the moment (`server_time`, `viewers`). The
//! public part comes from the node's own state: the status, pin and flash folded from the
//! show's events ([`super::public`]), the stock, flash sales and claim feed of the last refresh,
//! the lineup as the show was opened. It is encoded once per point (sequence number, refresh
//! generation, price now) and kept; every viewer joining at that point gets those bytes with
//! its own fields spliced in. A join storm then costs one encoding of the lineup, not one per
//! viewer, and no inventory read but the viewer's own claims and places (none for a viewer
//! without a buyer identity). The frame is byte for byte the one [`ShowRuntime::whole_snapshot`]
//! makes from the inventory's whole view (a test checks it).
//!
//! Why nothing is lost or sent twice:
//! - events: the snapshot is stamped with the sequence number of the public state it shows, and
//!   the engine sends every event after it (the viewer was attached before);
//! - stock and feed: the snapshot holds the values the refresh last set in the show's conflated
//!   cells, and it is built and the viewer started under the refresh's lock, so the engine marks
//!   exactly those values as seen; a newer one reaches the viewer as for everyone else;
//! - the viewer's own part: read from the inventory with the show's sequence number and stock
//!   version; a node behind either answers from a fresh refresh or from the whole view.

use std::collections::VecDeque;
use std::fmt::Write as _;

use nightmarket_domain::{LineupEntry, Millis, ProductId};
use nightmarket_inventory::BuyerView;
use nightmarket_live::Frame;
use nightmarket_wire::server::{CatchUp, FeedItem, FlashView};
use serde::Serialize;

use crate::convert;

/// A joining viewer's own part of its snapshot, encoded, and where the show stood when it was
/// read.
pub struct OwnPart {
    pub(super) my_claims: String,
    pub(super) my_waitlist: String,
    /// The show's sequence number and stock version as of the read; none without a buyer.
    pub(super) read_at: Option<(u64, u64)>,
}

impl OwnPart {
    /// A viewer without a buyer identity (a seller, an operator): nothing of its own.
    pub fn nobody() -> Self {
        Self {
            my_claims: "[]".to_owned(),
            my_waitlist: "[]".to_owned(),
            read_at: None,
        }
    }

    /// A buyer's part as the inventory's narrow read gave it.
    pub fn of(view: &BuyerView) -> Self {
        let claims: Vec<_> = view.my_claims.iter().map(convert::my_claim).collect();
        let places: Vec<_> = view
            .my_waitlist
            .iter()
            .map(|(e, position)| convert::my_waitlist_entry(e, *position))
            .collect();
        Self {
            my_claims: json(&claims).unwrap_or_else(|| "[]".to_owned()),
            my_waitlist: json(&places).unwrap_or_else(|| "[]".to_owned()),
            read_at: Some((view.seq, view.stock_version)),
        }
    }
}

/// Why this node cannot answer a join from its own state right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Not refreshed yet, or the stock it read does not match the lineup it opened with.
    NotReady,
    /// The viewer's own part was read at this stock version, newer than the node's.
    Stock(u64),
    /// The viewer's own part was read at a sequence number the node has not reached: events
    /// are on their way here.
    Events,
}

/// What an encoded public part depends on besides the show's identity and lineup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Point {
    pub(super) seq: u64,
    /// Bumped by the refresh whenever the stock, the flash's sales or the claim feed change.
    pub(super) generation: u64,
    /// A flash counting down changes the price at its start without an event.
    pub(super) price: Option<i64>,
}

/// The public fields of a snapshot as JSON, for one [`Point`].
pub(super) struct PublicPart {
    pub(super) at: Point,
    /// `"show":…,"pinned":…,"flash":…,"price":…,"lineup":[…]`
    pub(super) head: String,
    /// `"recent_claims":[…]`
    pub(super) tail: String,
}

impl PublicPart {
    /// The whole `snapshot` frame: the fields in [`Snapshot`]'s order, as serde writes them.
    pub(super) fn frame(&self, server_time: Millis, own: &OwnPart, viewers: u64) -> Frame {
        let mut text = String::with_capacity(
            self.head.len() + self.tail.len() + own.my_claims.len() + own.my_waitlist.len() + 128,
        );
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            r#"{{"type":"snapshot","seq":{},"server_time":{server_time},"#,
            self.at.seq
        );
        text.push_str(&self.head);
        text.push_str(r#","my_claims":"#);
        text.push_str(&own.my_claims);
        text.push_str(r#","my_waitlist":"#);
        text.push_str(&own.my_waitlist);
        let _ = write!(text, r#","viewers":{viewers},"#);
        text.push_str(&self.tail);
        text.push('}');
        Frame::text(&text)
    }
}

#[derive(Default)]
pub(super) struct TickState {
    pub(super) stock_version: Option<u64>,
    pub(super) feed_from: u64,
    pub(super) viewers: Option<u64>,
    /// When the viewer count was last published: it goes out at most every
    /// `limits.viewers_tick_ms` of real time (a bound on traffic, like the ticker's own
    /// interval, not a time of the market's clock).
    pub(super) viewers_at: Option<tokio::time::Instant>,
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

/// The running flash as of the last refresh: its units sold come from there, the rest from its
/// `flash_started` event.
pub(super) fn flash_now(flash: Option<&FlashView>, tick: &TickState) -> Option<FlashView> {
    let mut flash = flash?.clone();
    if let Some((id, sold)) = tick.flash_sold
        && id == flash.flash_id
    {
        flash.sold = sold;
    }
    Some(flash)
}

/// The price a claim on the pinned product must carry at `now`, as the inventory judges it
/// (`ShowBook::current_price`): the flash's while it applies (`Flash::applies`: started, not
/// ended, cap not reached), else the product's list price.
pub(super) fn price_at(
    state: &CatchUp,
    flash: Option<&FlashView>,
    lineup: &[LineupEntry],
    now: Millis,
) -> Option<i64> {
    let pinned = state.pinned.as_deref()?;
    let entry = lineup.iter().find(|e| e.product.id.as_str() == pinned)?;
    Some(match flash {
        Some(f)
            if f.product_id == pinned
                && f.starts_at <= now
                && now < f.ends_at
                && f.quantity_cap.map(|cap| cap.saturating_sub(f.sold)) != Some(0) =>
        {
            f.price
        }
        _ => entry.product.list_price.get(),
    })
}

fn json(value: &impl Serialize) -> Option<String> {
    serde_json::to_string(value).ok()
}

/// Appends `"name":value`, as serde writes a field of a struct.
pub(super) fn field(out: &mut String, name: &str, value: &impl Serialize) -> Option<()> {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    out.push_str(&json(value)?);
    Some(())
}
