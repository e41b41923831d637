//! The live engine: everything between "the show decided an event" and "bytes on viewers'
//! sockets".
//!
//! ```text
//!  publish(seq, frame) ──► Channel (one per show)      ordered: gaps held, duplicates ignored,
//!  set_cell(kind, frame)     │                          history kept for resume and catch-up
//!                            │  one work item per shard holding viewers of the show
//!                            ▼
//!                      Shard 0 … Shard N-1             one task each, spread over the workers;
//!                            │                          walks its viewers in turn
//!                            ▼
//!                      ViewerCell                       owns the socket's write half:
//!                            try_write ─── full? ──►    queue + one writer task (writev batches),
//!                                                       catch-up past `queue_frames`,
//!                                                       close past `stall_timeout`/`queue_bytes`
//!  session ── Viewer::send (answers, pongs, notices) ──► same order as the events
//!  session ◄─ inbound::Reader (the read half)           masked client frames, fragments, limits
//! ```
//!
//! - [`frame`]: a complete server WebSocket frame in one shared [`bytes::Bytes`], encoded once
//!   per event; every socket is written the same buffer.
//! - [`channel`]: per-show channels with sequence numbers, history, conflated cells (stock,
//!   claim feed, viewer count) and the catch-up source.
//! - `shard` and `viewer`: delivery without a task wake per viewer per event; below them
//!   `inbox` (a shard's queue of work) and `cell` (cell kinds, sequenced frames).
//! - [`inbound`]: the client's frames, decoded by a pure function over a byte buffer.
//! - [`metrics`]: counters per shard, summed when read.
//!
//! The engine knows nothing of JSON or of the show's rules: the caller encodes events, cells,
//! catch-up frames and its own answers as [`Frame`]s, and decides close codes.
//!
//! # A session's life
//!
//! 1. After the HTTP upgrade, split the `TcpStream`; [`Channel::attach`] takes the write half.
//!    From that instant every event is kept for the viewer.
//! 2. [`Viewer::start`] writes the session's first frames (hello; a snapshot stamped with its
//!    sequence, or nothing for a resume) and then the events after that point, from the
//!    history and from what arrived since step 1: no gap, no duplicate. A resume the history
//!    cannot serve fails with nothing written, and the session sends a snapshot instead.
//! 3. [`inbound::Reader`] reads the client's messages from the read half, answering pings
//!    through [`Viewer::send`]; the session sends its answers the same way.
//! 4. The session ends on the client's close, on [`Viewer::closing`] (the engine closed a viewer
//!    that stopped reading), or on its own decision with [`Viewer::close`].
//!
//! # Idle cost per viewer
//!
//! An idle viewer holds no buffer: its queue exists only while its socket is full, and the
//! inbound reader frees its buffer once a message has been read. What remains is its
//! `ViewerCell` (the socket's write half, its state, a notifier) in one allocation, its entry in
//! its shard's list, and the session's [`Viewer`] handle and [`inbound::Reader`]; the sizes are
//! listed in `docs/architecture.md` ("Live engine") and checked by a test in this crate. The
//! kernel's share (socket buffers, allocated by the kernel as data flows) and tokio's share (one
//! I/O registration per socket) come on top, as for any server.

pub mod config;
mod delivery;
pub mod frame;
pub mod inbound;
pub mod metrics;
mod sync;

pub use delivery::channel;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use sync::lock;

pub use channel::{AttachOptions, CatchUp, CatchUpCell, CellKind, Channel, Published, Sequenced};
pub use config::{CloseReason, ConfigError, LiveConfig};
pub use delivery::viewer::{Cells, Start, StartError, StartFrom, Viewer, ViewerClosed};
pub use frame::Frame;
pub use metrics::LiveMetrics;

use delivery::shard::Shard;

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine spawns its shard tasks on the current tokio runtime.
    #[error("the live engine must be created inside a tokio runtime")]
    NoRuntime,
}

struct EngineInner {
    config: Arc<LiveConfig>,
    shards: Arc<[Arc<Shard>]>,
    channels: Mutex<HashMap<String, Channel>>,
    next_id: AtomicU64,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        for shard in self.shards.iter() {
            shard.stop();
        }
    }
}

/// The node's live engine: its shards and every show's channel. Cloning is cheap.
#[derive(Clone)]
pub struct Engine(Arc<EngineInner>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.0.shards.len())
            .finish()
    }
}

impl Engine {
    /// Checks the bounds and spawns one task per shard on the current runtime.
    pub fn new(config: LiveConfig) -> Result<Self, LiveError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LiveError::NoRuntime)?;
        let shards: Arc<[Arc<Shard>]> =
            (0..config.shards).map(|_| Arc::new(Shard::new())).collect();
        for shard in shards.iter() {
            runtime.spawn(shard.clone().run());
        }
        Ok(Self(Arc::new(EngineInner {
            config: Arc::new(config),
            shards,
            channels: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })))
    }

    /// The channel of a show, created on first use, starting after `last_seq`, with its
    /// catch-up source. Later calls return the same channel (and ignore their arguments).
    pub fn channel(&self, show: &str, last_seq: u64, catch_up: impl CatchUp) -> Channel {
        let mut channels = lock(&self.0.channels);
        if let Some(ch) = channels.get(show) {
            return ch.clone();
        }
        let ch = Channel::new(
            self.0.next_id.fetch_add(1, Relaxed),
            self.0.config.clone(),
            self.0.shards.clone(),
            last_seq,
            Box::new(catch_up),
        );
        channels.insert(show.to_owned(), ch.clone());
        ch
    }

    /// Forgets a show's channel (a closed show nobody watches any more). Viewers still attached
    /// keep their channel until they leave; a later [`Engine::channel`] makes a new one.
    pub fn remove(&self, show: &str) -> Option<Channel> {
        lock(&self.0.channels).remove(show)
    }

    /// Every channel, for periodic work (stock ticks).
    pub fn channels(&self) -> Vec<(String, Channel)> {
        lock(&self.0.channels)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The counters of every shard, summed.
    pub fn metrics(&self) -> LiveMetrics {
        metrics::sum(self.0.shards.iter().map(|s| &s.counters))
    }

    /// The fan-out lag samples taken since the last call, over every shard: from a frame's
    /// publication to the end of its shard's walk over the show's viewers, one sample per walk
    /// (at most `LAG_SAMPLES_KEPT` per shard between two calls).
    pub fn take_lag_samples(&self) -> Vec<std::time::Duration> {
        self.0.shards.iter().flat_map(|s| s.take_lags()).collect()
    }

    /// The bounds the engine runs with.
    pub fn config(&self) -> &LiveConfig {
        &self.0.config
    }
}

#[cfg(test)]
mod tests {
    /// The figures quoted in docs/architecture.md; a change of layout shows up here first.
    #[test]
    fn idle_viewer_state_stays_small() {
        let sizes = crate::delivery::viewer::idle_sizes();
        for (name, size) in sizes {
            println!("{name}: {size} bytes");
        }
        let total: usize = sizes.iter().map(|(_, s)| s).sum();
        assert!(total <= 256, "{sizes:?}");
        println!(
            "inbound::Reader: {} bytes",
            std::mem::size_of::<crate::inbound::Reader>()
        );
    }
}
