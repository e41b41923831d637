//! The payment deadline: orders still pending payment past their `pay_by` are cancelled, by
//! the system, with the reason `payment_deadline`. Every node runs this loop on the server's
//! clock; the store cancels each order by compare-and-set, so nodes sweeping at once cancel
//! each order once, and an order paid meanwhile is left alone.

use std::sync::Arc;
use std::time::Duration;

use crate::state::{AppState, stopped};

/// Batches one sweep cancels at most before it waits for the next: bounds how long one sweep
/// holds the store when a large night misses its deadline at once.
pub const MAX_BATCHES_PER_SWEEP: usize = 20;

pub async fn run(state: Arc<AppState>) {
    let every = Duration::from_millis(state.config.orders.sweep_ms);
    let mut stop = state.shutdown.clone();
    loop {
        sweep(&state).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// One sweep: cancels what is due, batch after batch, until a batch comes back short (or
/// [`MAX_BATCHES_PER_SWEEP`]). Returns how many orders it cancelled; errors are logged and the
/// next sweep tries again.
pub async fn sweep(state: &AppState) -> usize {
    let batch = state.config.orders.sweep_batch;
    let mut cancelled = 0;
    for _ in 0..MAX_BATCHES_PER_SWEEP {
        if *state.shutdown.borrow() {
            break;
        }
        match state.catalog.cancel_unpaid(state.clock.now(), batch).await {
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
