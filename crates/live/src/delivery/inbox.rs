//! A shard's inbox: the work a channel and its viewers hand the shard's task, first in, first
//! out, with the wake of that task, its counters and its lag samples. Generic over what a viewer
//! is (`V`) and what one queues privately (`E`): viewers queue on their shard from below, and
//! the shard's task, which walks them, sits above them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::delivery::cell::CellKind;
use crate::frame::Frame;
use crate::metrics::ShardCounters;
use crate::sync::lock;

pub(crate) enum Work<V, E> {
    Event {
        channel: u64,
        seq: u64,
        frame: Frame,
        /// When the channel handed the frame over: the fan-out lag is measured from here.
        published_at: Instant,
    },
    Cell {
        channel: u64,
        kind: CellKind,
        version: u32,
        frame: Frame,
    },
    Attach(V),
    Detach(V),
    /// A private frame (or close) of a viewer that had events still on their way through this
    /// inbox when it was sent: it goes behind them.
    Private(V, E),
}

pub(crate) struct Inbox<V, E> {
    pub(crate) inbox: Mutex<Vec<Work<V, E>>>,
    pub(crate) wake: Notify,
    pub(crate) stop: AtomicBool,
    pub(crate) counters: ShardCounters,
    /// Fan-out lag samples not yet taken by [`crate::Engine::take_lag_samples`], at most
    /// [`LAG_SAMPLES_KEPT`]: one per walk of a show's events, not one per viewer.
    lags: Mutex<Vec<Duration>>,
}

/// Lag samples a shard keeps between two reads; later ones are dropped until the next read
/// (a scrape every few seconds takes far fewer).
pub(crate) const LAG_SAMPLES_KEPT: usize = 1024;

impl<V, E> Inbox<V, E> {
    pub(crate) fn new() -> Self {
        Self {
            inbox: Mutex::new(Vec::new()),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            counters: ShardCounters::default(),
            lags: Mutex::new(Vec::new()),
        }
    }

    /// Queues work. Only the push into an empty inbox wakes the task: a non-empty inbox means
    /// a wake is already on its way, and the task drains the whole inbox at once.
    pub(crate) fn push(&self, work: Work<V, E>) {
        let was_empty = {
            let mut inbox = lock(&self.inbox);
            let was_empty = inbox.is_empty();
            inbox.push(work);
            was_empty
        };
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// The lag samples kept since the last call.
    pub(crate) fn take_lags(&self) -> Vec<Duration> {
        std::mem::take(&mut *lock(&self.lags))
    }

    pub(crate) fn sample_lag(&self, lag: Duration) {
        let mut lags = lock(&self.lags);
        if lags.len() < LAG_SAMPLES_KEPT {
            lags.push(lag);
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake.notify_one();
    }
}
