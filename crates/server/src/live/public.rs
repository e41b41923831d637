//! Each show's public state (status, pin, flash, price: what every viewer sees alike), folded
//! from its events in sequence order, and the `catch_up` frame the live engine sends a viewer
//! that fell too far behind, in place of the events it missed.
//!
//! Events reach a node out of order at times (a relay message overtaking another, a repair):
//! an early one waits, at most `limits.event_buffer` of them, until the missing ones arrive.
//! Until then the state stays where it was; the engine bridges from an older catch-up with the
//! events it keeps.

use std::collections::BTreeMap;

use nightmarket_wire::server::{CatchUp, EventFrame, ServerMessage, ShowEvent};

/// A show's public state and the events that arrived ahead of it.
pub struct PublicState {
    now: CatchUp,
    early: BTreeMap<u64, EventFrame>,
}

impl PublicState {
    /// The state as of `now.seq`.
    pub fn new(now: CatchUp) -> Self {
        Self {
            now,
            early: BTreeMap::new(),
        }
    }

    /// Folds `ev` (and any early events it unblocks); whether the state moved. At most `bound`
    /// early events are held.
    pub fn fold(&mut self, ev: &EventFrame, bound: usize) -> bool {
        if ev.seq <= self.now.seq {
            return false;
        }
        if ev.seq > self.now.seq + 1 {
            if self.early.len() < bound {
                self.early.insert(ev.seq, ev.clone());
            }
            return false;
        }
        apply(&mut self.now, ev);
        while let Some(next) = self.early.remove(&(self.now.seq + 1)) {
            apply(&mut self.now, &next);
        }
        let seq = self.now.seq;
        self.early.retain(|s, _| *s > seq);
        true
    }

    /// The state as of the newest folded event.
    pub fn current(&self) -> &CatchUp {
        &self.now
    }

    /// The catch-up message as of the newest folded event.
    pub fn message(&self) -> (u64, ServerMessage) {
        (self.now.seq, ServerMessage::CatchUp(self.now.clone()))
    }
}

fn apply(s: &mut CatchUp, ev: &EventFrame) {
    s.seq = ev.seq;
    match &ev.event {
        ShowEvent::ShowLive => s.status = "live".to_owned(),
        ShowEvent::ShowClosed { .. } => {
            s.status = "closed".to_owned();
            s.pinned = None;
            s.flash = None;
            s.price = None;
        }
        ShowEvent::Pinned { product_id, price } => {
            if s.flash
                .as_ref()
                .is_some_and(|f| &f.product_id != product_id)
            {
                s.flash = None;
            }
            s.pinned = Some(product_id.clone());
            s.price = Some(*price);
        }
        ShowEvent::Unpinned { .. } => {
            s.pinned = None;
            s.flash = None;
            s.price = None;
        }
        ShowEvent::FlashStarted(flash) => {
            // A flash counting down changes the price only once it starts: the client's clock
            // does that from `flash.starts_at`, as after a snapshot.
            if s.pinned.as_ref() == Some(&flash.product_id) && flash.starts_at <= ev.at {
                s.price = Some(flash.price);
            }
            s.flash = Some(flash.clone());
        }
        ShowEvent::FlashEnded {
            flash_id,
            product_id,
            list_price,
            ..
        } => {
            if s.flash.as_ref().is_some_and(|f| f.flash_id == *flash_id) {
                s.flash = None;
            }
            if s.pinned.as_ref() == Some(product_id) {
                s.price = Some(*list_price);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PublicState {
        PublicState::new(CatchUp {
            seq: 3,
            status: "live".into(),
            pinned: None,
            flash: None,
            price: None,
        })
    }

    fn pinned(seq: u64, product: &str, price: i64) -> EventFrame {
        EventFrame {
            seq,
            at: 0,
            event: ShowEvent::Pinned {
                product_id: product.into(),
                price,
            },
        }
    }

    /// An early event waits for the missing one; a duplicate changes nothing.
    #[test]
    fn events_fold_in_sequence_order() {
        let mut s = state();
        assert!(!s.fold(&pinned(5, "b", 200), 8), "5 waits for 4");
        assert_eq!(s.message().0, 3);
        assert!(s.fold(&pinned(4, "a", 100), 8));
        let (seq, msg) = s.message();
        assert_eq!(seq, 5);
        let ServerMessage::CatchUp(c) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!((c.pinned.as_deref(), c.price), (Some("b"), Some(200)));
        assert!(!s.fold(&pinned(4, "a", 100), 8), "a duplicate");
        let closed = EventFrame {
            seq: 6,
            at: 0,
            event: ShowEvent::ShowClosed {
                final_stock: Vec::new(),
            },
        };
        assert!(s.fold(&closed, 8));
        let ServerMessage::CatchUp(c) = s.message().1 else {
            panic!()
        };
        assert_eq!(
            (c.status.as_str(), c.pinned, c.price),
            ("closed", None, None)
        );
    }
}
