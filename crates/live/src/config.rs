//! The engine's bounds, each named, with the policy that applies when it is reached.

use std::time::Duration;

/// A close the engine sends on its own initiative: the code and reason of the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// Bounds of the engine. [`LiveConfig::default`] gives the values the server's defaults map to.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Shards viewers are spread across, each walked by its own task; one per runtime worker
    /// lets one show use every core. At least 1.
    pub shards: usize,
    /// Sequenced frames kept per show for resume and for catching a slow viewer up.
    pub history: usize,
    /// Out-of-order frames a channel holds while it waits for a missing sequence number; more
    /// are dropped and come back through the caller's gap repair.
    pub max_pending: usize,
    /// Sequenced frames a viewer may have waiting in its queue (its socket full). One more, and
    /// they are replaced by one catch-up frame: the viewer skips to the newest state and stays
    /// connected.
    pub queue_frames: usize,
    /// Events of one show that a shard finds waiting together in its inbox, at or past which
    /// the shard (the node's core) has fallen behind the show as a whole: a viewer with nothing
    /// queued is then sent one catch-up frame (and the kept events after it) in place of the
    /// run, so a walk costs the same however far behind it is and the newest state arrives
    /// after one walk rather than after the whole backlog. Smaller runs (a command's few
    /// events, a relay burst) go out event by event. 0: never.
    pub skip_run: usize,
    /// How old the run's oldest event must be, too, for the run to be skipped: a seller's
    /// script pinning thousands of times a second queues runs of several events on a shard
    /// that is only a millisecond behind, and viewers reading along should get each event.
    pub skip_after: Duration,
    /// Bytes a viewer may have waiting in its queue, whatever they are. Past this the viewer is
    /// closed with [`LiveConfig::slow_close`]. With catch-up in place this is reached only by a
    /// viewer whose own private frames pile up.
    pub queue_bytes: usize,
    /// A viewer whose queue made no progress for this long has stopped reading: it is closed
    /// with [`LiveConfig::slow_close`].
    pub stall_timeout: Duration,
    /// How long a close frame may wait for a full socket before the connection is reset.
    pub close_grace: Duration,
    /// Queued frames written per system call at most (one `writev`).
    pub max_batch: usize,
    /// The close sent to a viewer that stopped reading (no progress for `stall_timeout`, or
    /// more than `queue_bytes` waiting).
    pub slow_close: CloseReason,
    /// The close sent when a viewer must catch up but no catch-up frame bridges the gap (the
    /// source has none, or the history no longer reaches back to it): the client resumes.
    pub resync_close: CloseReason,
}

/// The most frames one `writev` takes: Linux's `IOV_MAX`.
pub const MAX_BATCH_LIMIT: usize = 1024;

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            history: 4096,
            max_pending: 512,
            queue_frames: 512,
            // At 20 events/s, four waiting events mean the shard is 150 ms or more behind.
            skip_run: 4,
            // A viewer notices 100 ms; well below what the overload bound (1 s) allows.
            skip_after: Duration::from_millis(100),
            queue_bytes: 1 << 20,
            stall_timeout: Duration::from_secs(10),
            close_grace: Duration::from_millis(500),
            max_batch: 64,
            slow_close: CloseReason {
                code: 4001,
                reason: "write_timeout",
            },
            resync_close: CloseReason {
                code: 4000,
                reason: "resync",
            },
        }
    }
}

/// A bound out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("live engine: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl LiveConfig {
    /// Checks every bound before anything is spawned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError { field, problem });
        if self.shards == 0 || self.shards > 1024 {
            return bad("shards", "must be 1 to 1024");
        }
        if self.queue_frames == 0 {
            return bad("queue_frames", "must be at least 1");
        }
        if self.queue_bytes == 0 {
            return bad("queue_bytes", "must be at least 1");
        }
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_LIMIT {
            return bad("max_batch", "must be 1 to 1024 (IOV_MAX)");
        }
        if self.stall_timeout.is_zero() {
            return bad("stall_timeout", "must be above zero");
        }
        Ok(())
    }
}
