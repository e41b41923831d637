//! This node's viewers per buyer, for the waitlist: telling a buyer what became of its place, on
//! every connection it has here, and knowing when it has left.
//!
//! A promotion happens inside the cancel step of whichever node served the cancel, and the
//! promoted buyer may be connected to any node. Rather than a message bus of its own, every node
//! learns of promotions and skips where it already learns of claims: the per-show tick reads the
//! inventory's [`StockView`](nightmarket_inventory::StockView) from the node's claim-log position
//! (`feed_from`), which now carries the waitlist notices caused since. Each node hands each notice
//! to the inboxes of the buyer's sessions it holds ([`Buyers::tell`]); a buyer with no session on
//! a node is simply not there. A buyer is told within one tick (`stock_tick_ms`); the promoted
//! claim is in its next snapshot's `my_claims` in any case (the notices are bounded:
//! `WAITLIST_NOTICES_KEPT` per show).
//!
//! Leaving the show leaves the waitlist ([`crate::ws::waitlist`]): [`Buyers::exit`] says when a
//! buyer's last session here closed while it may be waiting, and [`Buyers::gone`] whether it is
//! still away after the grace.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use nightmarket_domain::{BuyerId, WaitlistOutcome};
use nightmarket_live::Frame;
use nightmarket_wire::server::{ServerMessage, WaitlistOutcomeKind, WaitlistResult};
use tokio::sync::Notify;

use crate::live::frame;

/// Private frames one session may have waiting; beyond it the oldest goes (the snapshot's
/// `my_claims` and `my_waitlist` stay the truth).
pub const INBOX_BOUND: usize = 16;

/// One session's private frames, filled by the tick, drained by the session.
#[derive(Default)]
pub struct Inbox {
    notify: Notify,
    queue: Mutex<VecDeque<Frame>>,
}

impl Inbox {
    fn push(&self, bytes: Frame) {
        if let Ok(mut q) = self.queue.lock() {
            if q.len() == INBOX_BOUND {
                q.pop_front();
            }
            q.push_back(bytes);
        }
        // A permit is kept if the session is not waiting right now: no frame is missed.
        self.notify.notify_one();
    }

    /// Resolves when frames may be waiting.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Frame> {
        self.queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct BuyerSessions {
    inboxes: Vec<Arc<Inbox>>,
    /// The buyer joined a waitlist through this node or its snapshot showed it waiting: when it
    /// leaves, its places go too.
    may_wait: bool,
}

/// One show's viewers on this node, per buyer.
#[derive(Default)]
pub struct Buyers {
    map: Mutex<HashMap<BuyerId, BuyerSessions>>,
}

/// What the end of a session means for the buyer's places.
pub struct Left {
    /// No other session of the buyer is open on this node, and it may be waiting.
    pub may_leave_waitlists: bool,
}

impl Buyers {
    /// A session of `buyer` starts: its inbox.
    pub fn enter(&self, buyer: &BuyerId) -> Arc<Inbox> {
        let inbox = Arc::new(Inbox::default());
        if let Ok(mut map) = self.map.lock() {
            map.entry(buyer.clone())
                .or_default()
                .inboxes
                .push(inbox.clone());
        }
        inbox
    }

    /// A session of `buyer` ends.
    pub fn exit(&self, buyer: &BuyerId, inbox: &Arc<Inbox>) -> Left {
        let Ok(mut map) = self.map.lock() else {
            return Left {
                may_leave_waitlists: false,
            };
        };
        let Some(sessions) = map.get_mut(buyer) else {
            return Left {
                may_leave_waitlists: false,
            };
        };
        sessions.inboxes.retain(|i| !Arc::ptr_eq(i, inbox));
        if !sessions.inboxes.is_empty() {
            return Left {
                may_leave_waitlists: false,
            };
        }
        let may_wait = sessions.may_wait;
        // Kept while it may wait, so the grace check below can see whether it came back.
        if !may_wait {
            map.remove(buyer);
        }
        Left {
            may_leave_waitlists: may_wait,
        }
    }

    /// The buyer is (or may be) on a waitlist of the show.
    pub fn may_wait(&self, buyer: &BuyerId) {
        if let Ok(mut map) = self.map.lock() {
            map.entry(buyer.clone()).or_default().may_wait = true;
        }
    }

    /// After the grace: whether the buyer has no session here any more; if so it is forgotten,
    /// and its places should go.
    pub fn gone(&self, buyer: &BuyerId) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        match map.get(buyer) {
            Some(s) if !s.inboxes.is_empty() => false,
            _ => {
                map.remove(buyer);
                true
            }
        }
    }

    /// Hands a waitlist outcome to every session of its buyer on this node.
    pub fn tell(&self, outcome: &WaitlistOutcome) {
        let buyer = &outcome.entry().buyer;
        let Ok(map) = self.map.lock() else { return };
        let Some(sessions) = map.get(buyer).filter(|s| !s.inboxes.is_empty()) else {
            return;
        };
        let bytes = frame(&ServerMessage::WaitlistResult(result_of(outcome)));
        for inbox in &sessions.inboxes {
            inbox.push(bytes.clone());
        }
    }
}

/// The `waitlist_result` a buyer gets for a promotion or a skip.
pub fn result_of(outcome: &WaitlistOutcome) -> WaitlistResult {
    let entry = outcome.entry();
    let base = WaitlistResult {
        product_id: entry.product_id.to_string(),
        outcome: WaitlistOutcomeKind::Promoted,
        position: None,
        quantity: Some(entry.quantity),
        claim_id: None,
        unit_price: None,
        reason: None,
        message: None,
    };
    match outcome {
        WaitlistOutcome::Promoted { record, .. } => WaitlistResult {
            claim_id: Some(record.claim_id.to_string()),
            unit_price: Some(record.unit_price.get()),
            message: Some("units came back: you now hold this claim".into()),
            ..base
        },
        WaitlistOutcome::Skipped { reason, .. } => WaitlistResult {
            outcome: WaitlistOutcomeKind::Skipped,
            reason: Some(crate::convert::skip_code(*reason)),
            message: Some(match reason {
                nightmarket_domain::SkipReason::PriceRose => {
                    "units came back at a higher price than when you joined; you left the waitlist"
                        .into()
                }
                nightmarket_domain::SkipReason::LimitExceeded => {
                    "units came back but your limit for this product has no room; you left the waitlist"
                        .into()
                }
            }),
            ..base
        },
    }
}
