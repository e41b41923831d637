//! The session side of the waitlist: a buyer who leaves the show leaves its waitlists.
//!
//! When a buyer's last connection to a show on this node closes, and it may be waiting, the node
//! takes it off every waitlist of the show after `waitlist_leave_grace_ms`, unless it has come
//! back to this node meanwhile (a page reload or a reconnect must not lose its place). A node
//! shutting down leaves nobody: its viewers reconnect elsewhere. Telling a buyer what became of
//! its place is the fan-out's ([`crate::live::inbox`]).

use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::BuyerId;
use nightmarket_inventory::WaitlistLeave;

use crate::live::ShowRuntime;
use crate::shutdown::stopped;
use crate::state::AppState;

/// A buyer's last session of a show on this node ended: after the grace, unless it is back
/// (or the node is shutting down, when its viewers reconnect elsewhere), it leaves every
/// waitlist of the show.
pub fn leave_later(state: &Arc<AppState>, rt: Arc<ShowRuntime>, buyer: BuyerId) {
    let state = state.clone();
    let grace = Duration::from_millis(state.config().limits.waitlist_leave_grace_ms);
    let mut shutdown = state.shutdown();
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
            .inventory()
            .waitlist_leave(
                &rt.id,
                WaitlistLeave {
                    buyer: buyer.clone(),
                    product: None,
                    now: state.inventory_now(),
                },
            )
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
