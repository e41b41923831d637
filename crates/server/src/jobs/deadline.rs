//! The payment deadline: orders still pending payment past their `pay_by` are cancelled, by
//! the system, with the reason `payment_deadline`. Every node runs this loop on the server's
//! clock; the store cancels each order by compare-and-set, so nodes sweeping at once cancel
//! each order once, and an order paid meanwhile is left alone.

use std::time::Duration;

use nightmarket_store::Store;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::OrderService;
use crate::shutdown::stopped;

/// Batches one sweep cancels at most before it waits for the next: bounds how long one sweep
/// holds the store when a large night misses its deadline at once.
pub const MAX_BATCHES_PER_SWEEP: usize = 20;

pub async fn run(
    store: &Store,
    clock: &SharedClock,
    orders: &OrderService,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(orders.sweep_ms);
    loop {
        sweep(store, clock, orders.sweep_batch, &stop).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// One sweep: cancels what is due, batch after batch, until a batch comes back short (or
/// [`MAX_BATCHES_PER_SWEEP`]). Returns how many orders it cancelled; errors are logged and the
/// next sweep tries again.
pub async fn sweep(
    store: &Store,
    clock: &SharedClock,
    batch: usize,
    stop: &watch::Receiver<bool>,
) -> usize {
    let mut cancelled = 0;
    for _ in 0..MAX_BATCHES_PER_SWEEP {
        if *stop.borrow() {
            break;
        }
        match store.cancel_unpaid(clock.now(), batch).await {
            Ok(rows) => {
                for o in &rows {
                    tracing::debug!(order = %o.id, buyer = %o.buyer_id, pay_by = o.pay_by, "order cancelled: unpaid past its deadline");
                }
                cancelled += rows.len();
                if rows.len() < batch {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "payment deadline: cannot cancel unpaid orders");
                break;
            }
        }
    }
    if cancelled > 0 {
        tracing::info!(cancelled, "unpaid orders past their deadline cancelled");
    }
    cancelled
}
