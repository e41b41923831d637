//! The periodic upkeep of what this node observes: its show statistics written to the store for
//! post-show reports, and its metrics' histogram samples folded into buckets.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nightmarket_store::Store;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::metrics::{Metrics, UPKEEP_EVERY};
use crate::show_stats::ShowStats;
use crate::shutdown::stopped;

/// How long shutdown waits for the last flush: the store may be the reason for the shutdown,
/// and a stuck write must not hold the process.
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Flushes every `every` until `shutdown` resolves, then once more. The caller decides when
/// that is: after the last session ended, so every refusal answered is in the last flush.
pub async fn flush_show_stats(
    stats: Arc<ShowStats>,
    store: Arc<Store>,
    clock: SharedClock,
    every: Duration,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = &mut shutdown => break,
        }
        if let Err(e) = stats.flush(&store, clock.now()).await {
            tracing::warn!(error = %e, "show statistics not written; retrying at the next flush");
        }
    }
    if let Err(e) = stats.flush(&store, clock.now()).await {
        tracing::warn!(error = %e, "show statistics not written at shutdown");
    }
}

/// Folds histogram samples into buckets every [`UPKEEP_EVERY`] until shutdown, so the samples
/// held between two scrapes stay bounded when nobody scrapes.
pub async fn metrics_upkeep(metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = every.tick() => metrics.upkeep(),
        }
    }
}
