//! Scheduled shows open at their slot start and close at their slot end plus grace, without
//! anyone pressing a button. Every node runs this loop; the inventory's atomic commands and the
//! store's compare-and-set make each transition happen once, whoever gets there first. The
//! first pass runs at start, so a show whose end passed while every node was down is closed
//! then (and one whose start passed is opened, if its slot is still running).
//!
//! It also keeps live shows honest about their seller: while the seller has a session on this
//! node, each pass marks the show's seller as present in the store (shared by every node), and a
//! live show whose seller nobody has seen for `market.seller_absent_close_ms` is closed, the
//! transition recording the reason `seller_absent` in the same store write as the close.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::ShowId;
use nightmarket_inventory::{Command, InventoryError};
use nightmarket_store::Store;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::MarketTiming;
use crate::live::Commander;
use crate::services::market::{admission_issues, min_stars};
use crate::services::shows::Shows;
use crate::shutdown::stopped;

/// What the loop works with.
pub struct Lifecycle {
    pub shows: Arc<Shows>,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub timing: MarketTiming,
}

/// The actor recorded for transitions this loop makes.
fn actor() -> String {
    format!("scheduler@{}", std::process::id())
}

pub async fn run(state: Lifecycle, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(state.timing.tick_ms);
    // Shows already reported as not admitted, so the log says it once, not every tick.
    let mut reported = HashSet::new();
    loop {
        tick(&state, &mut reported).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// One pass: close what is due, then open what is due. Errors are logged and retried next tick.
pub async fn tick(state: &Lifecycle, reported: &mut HashSet<ShowId>) {
    let now = state.clock.now();
    let grace = state.timing.close_grace_ms as i64;
    let closing = match state.store.shows_due_close(now.saturating_sub(grace)).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle: cannot list shows due to close");
            return;
        }
    };
    for id in &closing {
        apply(state, id, Command::Close, None).await;
    }
    sellers(state, now).await;
    let opening = match state.store.shows_due_live(now).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle: cannot list shows due to open");
            return;
        }
    };
    for id in opening.iter().filter(|id| !closing.contains(id)) {
        let Ok(Some(row)) = state.store.show(id).await else {
            continue;
        };
        let Some(sched) = &row.schedule else { continue };
        let min_stars = min_stars(&state.store, &sched.market_id)
            .await
            .unwrap_or(nightmarket_domain::market::DEFAULT_MIN_STARS);
        match admission_issues(&state.store, &row, min_stars).await {
            Ok(issues) if issues.is_empty() => {
                apply(state, id, Command::GoLive, None).await;
            }
            Ok(issues) => {
                if reported.insert(id.clone()) {
                    let reasons: Vec<String> = issues
                        .iter()
                        .map(|i| format!("{}: {}", i.product_id, i.reason))
                        .collect();
                    tracing::warn!(show = %id, reasons = ?reasons, "lifecycle: show not opened, a product is not admitted");
                }
            }
            Err(e) => {
                tracing::warn!(show = %id, error = %e.message, "lifecycle: admission check failed")
            }
        }
    }
}

/// The stable code recorded beside a close for a seller's absence.
pub const SELLER_ABSENT: &str = "seller_absent";

/// Marks the sellers connected here as present, then closes the live shows whose seller has
/// been away past the bound.
async fn sellers(state: &Lifecycle, now: nightmarket_domain::Millis) {
    let present: Vec<ShowId> = state
        .shows
        .served()
        .iter()
        .filter(|rt| rt.sellers.load(std::sync::atomic::Ordering::Relaxed) > 0)
        .map(|rt| rt.id.clone())
        .collect();
    if !present.is_empty()
        && let Err(e) = state.store.sellers_seen(&present, now).await
    {
        tracing::warn!(shows = present.len(), error = %e, "lifecycle: cannot record the sellers' presence");
    }
    let absent_for = state.timing.seller_absent_close_ms;
    if absent_for == 0 {
        return;
    }
    let cutoff = now.saturating_sub(i64::try_from(absent_for).unwrap_or(i64::MAX));
    let absent = match state.store.shows_seller_absent(cutoff).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle: cannot list shows without their seller");
            return;
        }
    };
    for id in &absent {
        if apply(state, id, Command::Close, Some(SELLER_ABSENT)).await {
            tracing::info!(show = %id, absent_ms = absent_for, "lifecycle: show closed, its seller was away");
        }
    }
}

/// Runs `cmd` on the show, recording `reason` (if any) with the transition it makes, in the
/// same store write; whether this call made it.
async fn apply(state: &Lifecycle, id: &ShowId, cmd: Command, reason: Option<&'static str>) -> bool {
    let row = match state.store.show(id).await {
        Ok(Some(row)) => row,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(show = %id, error = %e, "lifecycle: cannot load show");
            return false;
        }
    };
    // Loading syncs the store with the inventory: a transition another node made in the
    // inventory but did not record yet is recorded here.
    let rt = match state.shows.load(&row).await {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(show = %id, error = %e, "lifecycle: cannot open show");
            return false;
        }
    };
    let by = Commander {
        actor: actor(),
        reason,
    };
    match state.shows.command_as(&rt, cmd, &by).await {
        Ok(_) => true,
        // Another node (or the seller) got there first: the inventory refused the second
        // transition, and the store follows the inventory.
        Err(InventoryError::Command(_)) => {
            if let Ok(Some(view)) = state.shows.view(id).await {
                state
                    .shows
                    .record_transition(id, view.status, "recovery")
                    .await;
            }
            false
        }
        Err(e) => {
            tracing::warn!(show = %id, error = %e, "lifecycle: transition failed");
            false
        }
    }
}
