//! One show's channel: sequence numbers, bounded history, conflated cells and the catch-up
//! source, and the hand-off of each frame to the shards that have viewers of the show.
//!
//! Publishing is ordered: a frame that arrives early (a relay message overtaking another) is
//! held until the missing ones arrive, duplicates are ignored, and the caller is told about a
//! gap so it can repair it. Each frame then goes, once, to the inbox of every shard holding a
//! viewer of the show; the shard's task walks those viewers. The publisher never waits for a
//! viewer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::net::tcp::OwnedWriteHalf;

use crate::config::LiveConfig;
pub use crate::delivery::cell::{CellKind, Sequenced};
use crate::delivery::shard::{Shard, Work};
use crate::delivery::viewer::{Source, Viewer, ViewerCell};
use crate::frame::Frame;
use crate::sync::lock;

/// What became of a published frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Handed to the viewers' shards, with any held frames it unblocked (`frames` in all).
    Delivered { frames: usize },
    /// Already published; ignored.
    Duplicate,
    /// Held: frames `expected..seq` are missing. The caller should fetch and publish them.
    Gap { expected: u64 },
}

/// Where a slow viewer's catch-up frame comes from: the caller's compact encoding of the show's
/// newest state, stamped with the sequence number it reflects.
pub trait CatchUp: Send + Sync + 'static {
    /// A catch-up frame for a viewer due every event up to `seq`, and the sequence number the
    /// frame brings it to. A frame a few events older than `seq` is fine: the engine sends the
    /// events after it from its history. `None` when there is none; the viewer is then closed
    /// with `resync_close` and resumes.
    ///
    /// Called while the engine holds the viewer's lock: it must be quick and must not block.
    fn catch_up(&self, seq: u64) -> Option<(u64, Frame)>;
}

impl<F> CatchUp for F
where
    F: Fn(u64) -> Option<(u64, Frame)> + Send + Sync + 'static,
{
    fn catch_up(&self, seq: u64) -> Option<(u64, Frame)> {
        self(seq)
    }
}

/// A catch-up source that is a cell: the caller stores the newest catch-up frame after each
/// event (or whenever it likes), the engine reads it when a viewer falls behind.
#[derive(Debug, Default)]
pub struct CatchUpCell(Mutex<Option<(u64, Frame)>>);

impl CatchUpCell {
    /// Replaces the frame, unless the cell already holds a newer one.
    pub fn set(&self, seq: u64, frame: Frame) {
        let mut cell = lock(&self.0);
        if cell.as_ref().is_none_or(|(s, _)| *s <= seq) {
            *cell = Some((seq, frame));
        }
    }
}

impl CatchUp for CatchUpCell {
    fn catch_up(&self, _seq: u64) -> Option<(u64, Frame)> {
        lock(&self.0).clone()
    }
}

impl<T: CatchUp> CatchUp for Arc<T> {
    fn catch_up(&self, seq: u64) -> Option<(u64, Frame)> {
        (**self).catch_up(seq)
    }
}

struct Ordered {
    last_seq: u64,
    history: VecDeque<Sequenced>,
    pending: BTreeMap<u64, Frame>,
}

pub(crate) struct ChannelInner {
    pub(crate) id: u64,
    pub(crate) config: Arc<LiveConfig>,
    shards: Arc<[Arc<Shard>]>,
    ordered: Mutex<Ordered>,
    /// The newest sequence number handed to the shards. A private frame sent while a viewer is
    /// behind it goes through the shard too, so it stays behind those events.
    published: AtomicU64,
    /// The newest value of each cell and its version (counting from 1), so a viewer is never
    /// sent a value older than, or the same as, one it already has.
    cells: [Mutex<Option<(u32, Frame)>>; 3],
    catch_up: Box<dyn CatchUp>,
    /// Viewers attached per shard: a shard with none of this show's viewers gets no work.
    per_shard: Box<[AtomicUsize]>,
    next_shard: AtomicUsize,
    viewers: AtomicU64,
    connections: AtomicUsize,
}

/// A show's channel. Cloning is cheap; every clone is the same channel.
#[derive(Clone)]
pub struct Channel(pub(crate) Arc<ChannelInner>);

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.0.id)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

/// How a socket joins a channel.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Counted in [`Channel::viewer_count`] (viewers are; the seller's own console is not).
    pub counted: bool,
    /// Bytes owed to the socket before any frame (the HTTP answer of the upgrade, held back by
    /// the server): written first, in the same `writev` as the session's first frames.
    pub prefix: Option<bytes::Bytes>,
}

impl Channel {
    pub(crate) fn new(
        id: u64,
        config: Arc<LiveConfig>,
        shards: Arc<[Arc<Shard>]>,
        last_seq: u64,
        catch_up: Box<dyn CatchUp>,
    ) -> Self {
        let per_shard = shards.iter().map(|_| AtomicUsize::new(0)).collect();
        Self(Arc::new(ChannelInner {
            id,
            ordered: Mutex::new(Ordered {
                last_seq,
                history: VecDeque::with_capacity(config.history.min(1024)),
                pending: BTreeMap::new(),
            }),
            config,
            shards,
            published: AtomicU64::new(last_seq),
            cells: Default::default(),
            catch_up,
            per_shard,
            next_shard: AtomicUsize::new(0),
            viewers: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
        }))
    }

    /// Publishes a frame in sequence order, from this node's command or relayed from another
    /// node. Frames arriving early are held until the missing ones arrive, so every viewer sees
    /// a gap-free, ordered sequence.
    pub fn publish(&self, seq: u64, frame: Frame) -> Published {
        let inner = &self.0;
        let mut guard = lock(&inner.ordered);
        let o = &mut *guard;
        if seq <= o.last_seq || o.pending.contains_key(&seq) {
            return Published::Duplicate;
        }
        if seq > o.last_seq + 1 {
            if o.pending.len() < inner.config.max_pending {
                o.pending.insert(seq, frame);
            }
            return Published::Gap {
                expected: o.last_seq + 1,
            };
        }
        inner.push(o, seq, frame);
        let mut frames = 1;
        while let Some(next) = o.pending.remove(&(o.last_seq + 1)) {
            let s = o.last_seq + 1;
            inner.push(o, s, next);
            frames += 1;
        }
        Published::Delivered { frames }
    }

    /// The newest published sequence number.
    pub fn last_seq(&self) -> u64 {
        lock(&self.0.ordered).last_seq
    }

    /// Replaces a conflated value; every viewer is sent the newest one.
    pub fn set_cell(&self, kind: CellKind, frame: Frame) {
        let inner = &self.0;
        let mut cell = lock(&inner.cells[kind.index()]);
        let version = cell.as_ref().map_or(1, |(v, _)| v.wrapping_add(1));
        *cell = Some((version, frame.clone()));
        // Handed over under the cell's lock, so the shards see the values in the order they
        // were set and the last one walked is the newest.
        inner.each_shard(|shard| {
            shard.push(Work::Cell {
                channel: inner.id,
                kind,
                version,
                frame: frame.clone(),
            })
        });
    }

    /// Replaces the conflated stock frame.
    pub fn set_stock(&self, frame: Frame) {
        self.set_cell(CellKind::Stock, frame);
    }

    /// Replaces the conflated claim-feed frame.
    pub fn set_feed(&self, frame: Frame) {
        self.set_cell(CellKind::Feed, frame);
    }

    /// Replaces the conflated viewer-count frame.
    pub fn set_viewers(&self, frame: Frame) {
        self.set_cell(CellKind::Viewers, frame);
    }

    /// Counted viewers attached on this node now.
    pub fn viewer_count(&self) -> u64 {
        self.0.viewers.load(Relaxed)
    }

    /// Sockets attached on this node now (viewers and sellers).
    pub fn connection_count(&self) -> usize {
        self.0.connections.load(Relaxed)
    }

    /// Hands a socket's write half to the channel, right after the WebSocket upgrade. The
    /// viewer starts in the *starting* state: events published from now on wait in its queue
    /// until [`Viewer::start`] has written the session's first frames (hello, snapshot or
    /// resume), so nothing slips between the two and nothing is sent twice.
    pub fn attach(&self, socket: OwnedWriteHalf, options: AttachOptions) -> Viewer {
        let inner = &self.0;
        let index = inner.next_shard.fetch_add(1, Relaxed) % inner.shards.len();
        let shard = inner.shards[index].clone();
        let cell = Arc::new(ViewerCell::new(
            socket,
            self.0.clone(),
            shard.clone(),
            index,
            options.prefix.map(Frame::raw),
        ));
        // Counted before the shard hears of it: an event published after this point reaches
        // the shard behind the attachment; an earlier one is in the history `start` reads.
        inner.per_shard[index].fetch_add(1, Relaxed);
        shard.push(Work::Attach(cell.clone()));
        inner.connections.fetch_add(1, Relaxed);
        if options.counted {
            inner.viewers.fetch_add(1, Relaxed);
        }
        Viewer::new(cell, options.counted)
    }
}

impl ChannelInner {
    fn push(&self, o: &mut Ordered, seq: u64, frame: Frame) {
        o.last_seq = seq;
        if self.config.history > 0 {
            if o.history.len() >= self.config.history {
                o.history.pop_front();
            }
            o.history.push_back(Sequenced {
                seq,
                frame: frame.clone(),
            });
        }
        // Under the channel's lock, so every shard's inbox holds the show's frames in sequence
        // order.
        let published_at = std::time::Instant::now();
        self.each_shard(|shard| {
            shard.push(Work::Event {
                channel: self.id,
                seq,
                frame: frame.clone(),
                published_at,
            })
        });
        self.published.store(seq, Relaxed);
    }

    fn each_shard(&self, mut f: impl FnMut(&Shard)) {
        for (shard, n) in self.shards.iter().zip(self.per_shard.iter()) {
            if n.load(Relaxed) > 0 {
                f(shard);
            }
        }
    }
}

/// What a viewer reads back from its channel.
impl Source for ChannelInner {
    fn id(&self) -> u64 {
        self.id
    }

    fn config(&self) -> &LiveConfig {
        &self.config
    }

    fn catch_up(&self, seq: u64) -> Option<(u64, Frame)> {
        self.catch_up.catch_up(seq)
    }

    fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// The newest value of a cell and its version.
    fn cell(&self, kind: CellKind) -> Option<(u32, Frame)> {
        lock(&self.cells[kind.index()]).clone()
    }

    /// The kept frames after `after`, the newest sequence number, and whether the history
    /// reaches back to `after + 1` (or nothing was published after it).
    fn history_after(&self, after: u64) -> (Vec<Sequenced>, u64, bool) {
        let o = lock(&self.ordered);
        let reaches = after >= o.last_seq || o.history.front().is_some_and(|f| f.seq <= after + 1);
        let frames = o
            .history
            .iter()
            .filter(|f| f.seq > after)
            .cloned()
            .collect();
        (frames, o.last_seq, reaches)
    }

    /// The kept frames in `(after, upto]`, if the history still holds every one of them.
    fn history_between(&self, after: u64, upto: u64) -> Option<Vec<Sequenced>> {
        let o = lock(&self.ordered);
        let frames: Vec<Sequenced> = o
            .history
            .iter()
            .filter(|f| f.seq > after && f.seq <= upto)
            .cloned()
            .collect();
        let whole = frames.len() as u64 == upto.saturating_sub(after);
        whole.then_some(frames)
    }

    fn detached(&self, shard: usize, counted: bool) {
        self.per_shard[shard].fetch_sub(1, Relaxed);
        self.connections.fetch_sub(1, Relaxed);
        if counted {
            self.viewers.fetch_sub(1, Relaxed);
        }
    }
}
