//! Counters per shard, summed when read.
//!
//! A shard's walk over its viewers counts in local variables and adds them to its own counters
//! once per walk, so no atomic is touched per frame per viewer and no cache line is shared
//! between shards. Only the slow paths (a flush of a full socket, a private frame, a close) add
//! to a shard's counters directly.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What one pass counted, before it is added to its shard.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub frames: u64,
    pub events: u64,
    pub bytes: u64,
    pub queued: u64,
    pub catch_ups: u64,
    pub closed_slow: u64,
    pub closed_resync: u64,
    pub closed_gone: u64,
    pub high_water: u64,
}

/// One shard's counters, on a cache line pair of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ShardCounters {
    frames: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    queued: AtomicU64,
    catch_ups: AtomicU64,
    closed_slow: AtomicU64,
    closed_resync: AtomicU64,
    closed_gone: AtomicU64,
    high_water: AtomicU64,
}

impl ShardCounters {
    pub(crate) fn add(&self, t: &Tally) {
        for (counter, n) in [
            (&self.frames, t.frames),
            (&self.events, t.events),
            (&self.bytes, t.bytes),
            (&self.queued, t.queued),
            (&self.catch_ups, t.catch_ups),
            (&self.closed_slow, t.closed_slow),
            (&self.closed_resync, t.closed_resync),
            (&self.closed_gone, t.closed_gone),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        if t.high_water > 0 {
            self.high_water.fetch_max(t.high_water, Relaxed);
        }
    }

    fn read(&self) -> LiveMetrics {
        LiveMetrics {
            frames_delivered: self.frames.load(Relaxed),
            events_delivered: self.events.load(Relaxed),
            bytes_written: self.bytes.load(Relaxed),
            frames_queued: self.queued.load(Relaxed),
            catch_ups: self.catch_ups.load(Relaxed),
            closed_slow: self.closed_slow.load(Relaxed),
            closed_resync: self.closed_resync.load(Relaxed),
            closed_gone: self.closed_gone.load(Relaxed),
            queue_high_water_bytes: self.high_water.load(Relaxed),
        }
    }
}

/// The engine's counters, summed over its shards (the high-water mark is the largest).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LiveMetrics {
    /// Frames written whole to viewers' sockets: events, conflated values, private frames.
    pub frames_delivered: u64,
    /// Event frames written whole to viewers' sockets: one per viewer per event, counted when
    /// its last byte is handed to the kernel, whether straight from the shard's walk, from the
    /// viewer's queue, or from the history at its start. An event skipped by a catch-up, or
    /// dropped with a closing viewer's queue, is not counted (nor is the catch-up frame itself,
    /// nor events the session sends as start frames of its own).
    pub events_delivered: u64,
    /// Bytes written to viewers' sockets.
    pub bytes_written: u64,
    /// Frames that waited in a viewer's queue because its socket was full.
    pub frames_queued: u64,
    /// Queues of sequenced frames replaced by a catch-up frame.
    pub catch_ups: u64,
    /// Viewers closed because they stopped reading (no progress, or too many bytes queued).
    pub closed_slow: u64,
    /// Viewers closed because no catch-up could bridge what they missed.
    pub closed_resync: u64,
    /// Viewers whose socket failed (the peer went away).
    pub closed_gone: u64,
    /// The most bytes one viewer's queue has held.
    pub queue_high_water_bytes: u64,
}

pub(crate) fn sum<'a>(shards: impl Iterator<Item = &'a ShardCounters>) -> LiveMetrics {
    shards
        .map(ShardCounters::read)
        .fold(LiveMetrics::default(), |a, b| LiveMetrics {
            frames_delivered: a.frames_delivered + b.frames_delivered,
            events_delivered: a.events_delivered + b.events_delivered,
            bytes_written: a.bytes_written + b.bytes_written,
            frames_queued: a.frames_queued + b.frames_queued,
            catch_ups: a.catch_ups + b.catch_ups,
            closed_slow: a.closed_slow + b.closed_slow,
            closed_resync: a.closed_resync + b.closed_resync,
            closed_gone: a.closed_gone + b.closed_gone,
            queue_high_water_bytes: a.queue_high_water_bytes.max(b.queue_high_water_bytes),
        })
}
