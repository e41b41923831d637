//! One viewer: the write half of its socket, how far it has been sent, and, only while its
//! socket is full, a queue.
//!
//! The fast path is a `try_write` of the shared frame straight from the shard's walk: no task
//! is woken and nothing is copied. When the kernel buffer is full the frame goes into the
//! viewer's queue and one writer task is spawned for this viewer alone; it waits until the
//! socket is writable, writes the queue with one `writev` per batch and ends, freeing the
//! queue, once it is empty.
//!
//! The queue is bounded twice. Past `queue_frames` sequenced frames, they are replaced by one
//! catch-up frame (the caller's compact encoding of the newest state), the events after it from
//! the history, and the newest conflated values: the viewer skips ahead, sequence preserved,
//! and stays connected. A viewer whose queue makes no progress for `stall_timeout`, or holds
//! more than `queue_bytes`, has stopped reading: it gets a close frame (within `close_grace`, or
//! its connection is reset).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::CloseReason;
use crate::config::LiveConfig;
use crate::delivery::cell::{Bridge, CellKind, Sequenced};
use crate::delivery::inbox::Inbox;
use crate::frame::Frame;
use crate::metrics::Tally;
use crate::sync::lock;

/// What a viewer reads back from its channel (the channel implements it): the viewer names
/// no channel, so the channel, which attaches viewers, stays above it.
pub(crate) trait Source: Send + Sync {
    fn id(&self) -> u64;
    fn config(&self) -> &LiveConfig;
    /// The catch-up frame for a viewer behind `seq` (see [`crate::CatchUp`]).
    fn catch_up(&self, seq: u64) -> Option<(u64, Frame)>;
    /// The newest sequence number handed to the shards.
    fn published(&self) -> u64;
    /// The newest value of a cell and its version.
    fn cell(&self, kind: CellKind) -> Option<(u32, Frame)>;
    /// The kept frames after `after`, the newest sequence number, and whether the history
    /// reaches back to `after + 1` (or nothing was published after it).
    fn history_after(&self, after: u64) -> (Vec<Sequenced>, u64, bool);
    /// The kept frames in `(after, upto]`, if the history still holds every one of them.
    fn history_between(&self, after: u64, upto: u64) -> Option<Vec<Sequenced>>;
    /// A viewer of shard `shard` left (`counted`: it was counted among the viewers).
    fn detached(&self, shard: usize, counted: bool);

    /// What brings a viewer that has every event up to `floor` to `target` at least: the
    /// catch-up frame, if it is no older than `floor`, and the kept events between it and
    /// `target`. `None` if there is none that new or the history no longer holds the events
    /// after it.
    fn bridge(&self, floor: u64, target: u64) -> Option<Bridge> {
        let (seq, frame) = self.catch_up(target).filter(|(c, _)| *c >= floor)?;
        let tail = if seq < target {
            self.history_between(seq, target)?
        } else {
            Vec::new()
        };
        Some(Bridge { seq, frame, tail })
    }
}

/// The shard a viewer belongs to, as the viewer sees it: the inbox of the shard's task.
pub(crate) type Shard = Inbox<Arc<ViewerCell>, Entry>;
/// What a shard's task is handed.
pub(crate) type Work = crate::delivery::inbox::Work<Arc<ViewerCell>, Entry>;

/// One thing waiting in a viewer's queue.
pub(crate) enum Entry {
    /// A sequenced event. May be replaced by a catch-up.
    Seq(u64, Frame),
    /// A catch-up frame standing for every event up to its number. May be replaced by a newer
    /// one; unlike an event, it is not counted as one delivered.
    CatchUp(u64, Frame),
    /// A frame of the session's own (start frames, answers, pongs): never dropped.
    Private(Frame),
    /// The newest value of a conflated cell, read when it is about to be written.
    Cell(CellKind, Option<Frame>),
    /// The close frame; nothing follows it.
    Close(Frame),
}

impl Entry {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Seq(_, f)
            | Self::CatchUp(_, f)
            | Self::Private(f)
            | Self::Close(f)
            | Self::Cell(_, Some(f)) => f.bytes(),
            Self::Cell(_, None) => &[],
        }
    }

    fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The sequence number of an event or a catch-up frame: what the `queue_frames` bound
    /// counts and a catch-up replaces.
    fn seq(&self) -> Option<u64> {
        match self {
            Self::Seq(s, _) | Self::CatchUp(s, _) => Some(*s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Attached; frames wait until the session has written its first ones.
    Starting,
    Live,
    /// A close frame is on its way; nothing else is sent.
    Closing,
    /// Done: the socket is shut.
    Closed,
}

struct Queue {
    entries: VecDeque<Entry>,
    /// Bytes of the front entry already written: it must be finished before anything else.
    offset: usize,
    bytes: usize,
    seq_entries: usize,
    /// Cells with an entry still to be read in the queue: a newer value needs no second one.
    dirty: u8,
    progress_at: Instant,
    close_by: Option<Instant>,
}

impl Queue {
    fn new() -> Box<Self> {
        Box::new(Self {
            entries: VecDeque::new(),
            offset: 0,
            bytes: 0,
            seq_entries: 0,
            dirty: 0,
            progress_at: Instant::now(),
            close_by: None,
        })
    }

    fn push(&mut self, e: Entry) {
        self.bytes += e.len();
        match &e {
            Entry::Seq(..) | Entry::CatchUp(..) => self.seq_entries += 1,
            Entry::Cell(kind, None) => self.dirty |= kind.bit(),
            _ => {}
        }
        self.entries.push_back(e);
    }

    /// Queues a catch-up frame and the events after it; the sequence number they reach.
    fn push_bridge(&mut self, bridge: &Bridge) -> u64 {
        self.push(Entry::CatchUp(bridge.seq, bridge.frame.clone()));
        for s in &bridge.tail {
            self.push(Entry::Seq(s.seq, s.frame.clone()));
        }
        bridge.tail.last().map_or(bridge.seq, |s| s.seq)
    }

    fn recount(&mut self) {
        self.bytes = self.entries.iter().map(Entry::len).sum();
        self.seq_entries = self.entries.iter().filter(|e| e.seq().is_some()).count();
        self.dirty = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Cell(kind, None) => Some(kind.bit()),
                _ => None,
            })
            .fold(0, |a, b| a | b);
    }

    /// Queues the newest value of every cell that has one and is not queued yet.
    fn add_cells(&mut self, channel: &dyn Source, wanted: impl Fn(CellKind) -> bool) {
        for kind in CellKind::ALL {
            if wanted(kind) && self.dirty & kind.bit() == 0 && channel.cell(kind).is_some() {
                self.push(Entry::Cell(kind, None));
            }
        }
    }

    /// Takes `n` written bytes off the front.
    fn advance(&mut self, mut n: usize, tally: &mut Tally) {
        while let Some(front) = self.entries.front() {
            if matches!(front, Entry::Cell(_, None)) {
                break;
            }
            let len = front.len();
            let left = len - self.offset;
            if n < left {
                self.offset += n;
                break;
            }
            n -= left;
            self.offset = 0;
            self.bytes -= len;
            if front.seq().is_some() {
                self.seq_entries -= 1;
            }
            if len > 0 {
                tally.frames += 1;
            }
            if matches!(front, Entry::Seq(..)) {
                tally.events += 1;
            }
            self.entries.pop_front();
        }
    }
}

struct State {
    phase: Phase,
    /// The newest sequence number this viewer was handed (written, or waiting in its queue).
    seq: u64,
    /// Private frames of this viewer waiting in its shard's inbox: later ones must follow.
    inbox_privates: u32,
    /// A writer task is running for this viewer.
    flushing: bool,
    /// The version of each cell last handed to this viewer (or covered by its start).
    cells_seen: [u32; 3],
    /// The queue's first entry is the prefix owed before any frame (see
    /// `AttachOptions::prefix`): it stays first when the start or a close rebuilds the queue.
    owes_prefix: bool,
    queue: Option<Box<Queue>>,
}

pub(crate) struct ViewerCell {
    socket: OwnedWriteHalf,
    channel: Arc<dyn Source>,
    shard: Arc<Shard>,
    shard_index: usize,
    /// Index in its shard's list of the channel's viewers (the shard's task alone moves it).
    slot: AtomicUsize,
    state: Mutex<State>,
    /// Woken when the viewer starts closing or is closed.
    changed: Notify,
}

/// How a writer task was woken.
enum Wake {
    Writable(io::Result<()>),
    Deadline,
    Changed,
}

impl ViewerCell {
    pub(crate) fn new(
        socket: OwnedWriteHalf,
        channel: Arc<dyn Source>,
        shard: Arc<Shard>,
        shard_index: usize,
        prefix: Option<Frame>,
    ) -> Self {
        let owes_prefix = prefix.is_some();
        let queue = prefix.map(|p| {
            let mut q = Queue::new();
            q.push(Entry::Private(p));
            q
        });
        Self {
            socket,
            channel,
            shard,
            shard_index,
            slot: AtomicUsize::new(usize::MAX),
            state: Mutex::new(State {
                phase: Phase::Starting,
                seq: 0,
                inbox_privates: 0,
                flushing: false,
                cells_seen: [0; 3],
                owes_prefix,
                queue,
            }),
            changed: Notify::new(),
        }
    }

    pub(crate) fn channel_id(&self) -> u64 {
        self.channel.id()
    }

    pub(crate) fn channel(&self) -> &dyn Source {
        &*self.channel
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot.load(Relaxed)
    }

    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot.store(slot, Relaxed);
    }

    // ----- from the shard's walk ------------------------------------------------------------

    pub(crate) fn deliver_seq(self: &Arc<Self>, seq: u64, frame: &Frame, tally: &mut Tally) {
        let mut st = lock(&self.state);
        match st.phase {
            Phase::Closing | Phase::Closed => {}
            Phase::Starting => {
                self.enqueue(&mut st, Entry::Seq(seq, frame.clone()), tally);
                self.check_bytes(&mut st, tally);
            }
            Phase::Live if seq <= st.seq => {} // covered by a catch-up or the start
            Phase::Live if seq > st.seq + 1 => {
                // Not reachable by construction (one ordered inbox per viewer); should it
                // happen, the viewer is caught up rather than left with a hole.
                st.seq = seq;
                self.enqueue(&mut st, Entry::Seq(seq, frame.clone()), tally);
                self.catch_up(&mut st, tally);
                self.flush_now(&mut st, tally);
            }
            Phase::Live => {
                st.seq = seq;
                self.send(&mut st, Entry::Seq(seq, frame.clone()), tally);
            }
        }
    }

    /// Consecutive events, however many (none included).
    pub(crate) fn deliver_run(
        self: &Arc<Self>,
        events: &[(u64, Frame)],
        skip: Option<&Bridge>,
        tally: &mut Tally,
    ) {
        match events {
            [] => {}
            [(seq, frame)] => self.deliver_seq(*seq, frame, tally),
            many => self.deliver_seqs(many, skip, tally),
        }
    }

    /// Several consecutive events at once: a viewer with nothing queued gets them in one
    /// `writev`, or, given `skip` (the shard fell behind), the catch-up frame that stands for
    /// them if it is no older than what the viewer has; any other case takes them one by one.
    pub(crate) fn deliver_seqs(
        self: &Arc<Self>,
        events: &[(u64, Frame)],
        skip: Option<&Bridge>,
        tally: &mut Tally,
    ) {
        let mut st = lock(&self.state);
        let simple = st.phase == Phase::Live
            && st.queue.is_none()
            && events.first().is_some_and(|(seq, _)| *seq <= st.seq + 1);
        if !simple {
            drop(st);
            for (seq, frame) in events {
                self.deliver_seq(*seq, frame, tally);
            }
            return;
        }
        let fresh = &events[events.partition_point(|(seq, _)| *seq <= st.seq)..];
        let Some((last, _)) = fresh.last() else {
            return;
        };
        let mut q = Queue::new();
        match skip.filter(|b| b.seq >= st.seq) {
            Some(b) => {
                let reached = q.push_bridge(b);
                st.seq = reached.max(*last);
                tally.catch_ups += 1;
            }
            None => {
                for (seq, frame) in fresh {
                    q.push(Entry::Seq(*seq, frame.clone()));
                }
                st.seq = *last;
            }
        }
        st.queue = Some(q);
        self.flush_now(&mut st, tally);
        if let Some(q) = &st.queue {
            tally.queued += q.entries.len() as u64;
            tally.high_water = tally.high_water.max(q.bytes as u64);
        }
    }

    pub(crate) fn deliver_cell(
        self: &Arc<Self>,
        kind: CellKind,
        version: u32,
        frame: &Frame,
        tally: &mut Tally,
    ) {
        let mut st = lock(&self.state);
        if version <= st.cells_seen[kind.index()] {
            return; // this value or a newer one went out already
        }
        match st.phase {
            Phase::Closing | Phase::Closed => {}
            Phase::Live if st.queue.is_none() => {
                st.cells_seen[kind.index()] = version;
                self.send(&mut st, Entry::Cell(kind, Some(frame.clone())), tally);
            }
            Phase::Starting | Phase::Live => {
                let q = st.queue.get_or_insert_with(Queue::new);
                if q.dirty & kind.bit() == 0 {
                    q.push(Entry::Cell(kind, None));
                    tally.queued += 1;
                }
            }
        }
    }

    pub(crate) fn deliver_private(self: &Arc<Self>, entry: Entry, tally: &mut Tally) {
        let mut st = lock(&self.state);
        st.inbox_privates = st.inbox_privates.saturating_sub(1);
        if st.phase != Phase::Live {
            return;
        }
        match entry {
            Entry::Close(frame) => self.begin_close(&mut st, frame, true, tally),
            entry => self.send(&mut st, entry, tally),
        }
    }

    // ----- from the session -----------------------------------------------------------------

    fn private(self: &Arc<Self>, entry: Entry) -> Result<(), ViewerClosed> {
        let mut tally = Tally::default();
        let mut st = lock(&self.state);
        let result = match st.phase {
            Phase::Closing | Phase::Closed => Err(ViewerClosed),
            Phase::Starting => {
                match entry {
                    Entry::Close(frame) => self.begin_close(&mut st, frame, true, &mut tally),
                    entry => {
                        self.enqueue(&mut st, entry, &mut tally);
                        self.check_bytes(&mut st, &mut tally);
                    }
                }
                Ok(())
            }
            Phase::Live if st.inbox_privates > 0 || st.seq < self.channel.published() => {
                // Events published before this call are still in the shard's inbox for this
                // viewer: the frame queues behind them there.
                st.inbox_privates += 1;
                self.shard.push(Work::Private(self.clone(), entry));
                Ok(())
            }
            Phase::Live => {
                match entry {
                    Entry::Close(frame) => self.begin_close(&mut st, frame, true, &mut tally),
                    entry => self.send(&mut st, entry, &mut tally),
                }
                Ok(())
            }
        };
        drop(st);
        self.shard.counters.add(&tally);
        result
    }

    fn start(self: &Arc<Self>, start: Start) -> Result<(), StartError> {
        let (from, resume) = match start.from {
            StartFrom::Resume { after } => (after, true),
            StartFrom::At { seq } => (seq, false),
        };
        let (kept, last, reaches) = self.channel.history_after(from);
        if resume && from > last {
            return Err(StartError::Ahead { after: from, last });
        }
        if resume && !reaches {
            return Err(StartError::Gap { from });
        }
        let mut tally = Tally::default();
        let mut st = lock(&self.state);
        match st.phase {
            Phase::Starting => {}
            Phase::Live => return Err(StartError::Started),
            Phase::Closing | Phase::Closed => return Err(StartError::Closed),
        }
        // The events after `from`: kept in the history, or published since the attachment and
        // waiting in the queue. Both are in order; together they must leave no hole.
        let mut events: Vec<(u64, Frame)> = kept.into_iter().map(|s| (s.seq, s.frame)).collect();
        if let Some(q) = &st.queue {
            events.extend(q.entries.iter().filter_map(|e| match e {
                Entry::Seq(s, f) => Some((*s, f.clone())),
                _ => None,
            }));
        }
        events.sort_by_key(|(s, _)| *s);
        let mut at = from;
        let mut sequenced = Vec::with_capacity(events.len());
        for (seq, frame) in events {
            if seq <= at {
                continue;
            }
            if seq != at + 1 {
                return Err(StartError::Gap { from: at });
            }
            at = seq;
            sequenced.push(Entry::Seq(seq, frame));
        }
        if at < last {
            return Err(StartError::Gap { from: at });
        }
        let mut q = Queue::new();
        let mut old = st.queue.take();
        if std::mem::take(&mut st.owes_prefix)
            && let Some(prefix) = old.as_mut().and_then(|o| o.entries.pop_front())
        {
            q.push(prefix);
        }
        for frame in start.frames {
            q.push(Entry::Private(frame));
        }
        for e in sequenced {
            q.push(e);
        }
        // Private frames sent while starting follow; conflated values queued meanwhile give way
        // to the caller's choice of cells.
        if let Some(old) = old {
            for e in old.entries {
                if matches!(e, Entry::Private(_)) {
                    q.push(e);
                }
            }
        }
        q.add_cells(&*self.channel, |kind| start.cells.contains(kind));
        for kind in CellKind::ALL {
            if !start.cells.contains(kind)
                && let Some((version, _)) = self.channel.cell(kind)
            {
                st.cells_seen[kind.index()] = version;
            }
        }
        st.seq = at;
        st.phase = Phase::Live;
        st.queue = Some(q);
        self.flush_now(&mut st, &mut tally);
        // Counted as queued only if the socket could not take them at once.
        if let Some(q) = &st.queue {
            tally.queued += q.entries.len() as u64;
            tally.high_water = tally.high_water.max(q.bytes as u64);
        }
        drop(st);
        self.shard.counters.add(&tally);
        Ok(())
    }

    fn close(self: &Arc<Self>, code: u16, reason: &str) {
        let _ = self.private(Entry::Close(Frame::close(code, reason)));
    }

    fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    /// Resolves once the viewer's phase is at least `phase`.
    async fn reached(&self, phase: Phase) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.phase() >= phase {
                return;
            }
            changed.await;
        }
    }

    fn detach(self: &Arc<Self>, counted: bool) {
        {
            let mut st = lock(&self.state);
            if st.phase < Phase::Closing {
                // Dropped without a close: the queue goes, the peer sees the stream end.
                self.finish(&mut st);
            }
        }
        self.channel.detached(self.shard_index, counted);
        self.shard.push(Work::Detach(self.clone()));
    }

    // ----- writing ---------------------------------------------------------------------------

    /// Sends one entry to a live viewer: straight to the socket when nothing is queued,
    /// otherwise behind the queue.
    fn send(self: &Arc<Self>, st: &mut State, entry: Entry, tally: &mut Tally) {
        if st.queue.is_some() {
            self.enqueue(st, entry, tally);
            self.check_bounds(st, tally);
            return;
        }
        let written = match self.socket.try_write(entry.bytes()) {
            Ok(n) if n == entry.len() => {
                tally.frames += 1;
                tally.events += u64::from(matches!(entry, Entry::Seq(..)));
                tally.bytes += n as u64;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                tally.closed_gone += 1;
                self.abort(st);
                return;
            }
        };
        tally.bytes += written as u64;
        let mut q = Queue::new();
        q.push(entry);
        q.offset = written;
        tally.queued += 1;
        tally.high_water = tally.high_water.max(q.bytes as u64);
        st.queue = Some(q);
        self.ensure_writer(st);
    }

    fn enqueue(&self, st: &mut State, entry: Entry, tally: &mut Tally) {
        let q = st.queue.get_or_insert_with(Queue::new);
        q.push(entry);
        tally.queued += 1;
        tally.high_water = tally.high_water.max(q.bytes as u64);
    }

    /// The two bounds of a live viewer's queue: sequenced frames (catch up) and bytes (close).
    fn check_bounds(self: &Arc<Self>, st: &mut State, tally: &mut Tally) {
        if st.phase != Phase::Live {
            return;
        }
        let over = st
            .queue
            .as_ref()
            .is_some_and(|q| q.seq_entries > self.channel.config().queue_frames);
        if over {
            self.catch_up(st, tally);
        }
        self.check_bytes(st, tally);
    }

    fn check_bytes(self: &Arc<Self>, st: &mut State, tally: &mut Tally) {
        let over = st
            .queue
            .as_ref()
            .is_some_and(|q| q.bytes > self.channel.config().queue_bytes);
        if over && st.phase < Phase::Closing {
            tally.closed_slow += 1;
            let slow = self.channel.config().slow_close;
            self.begin_close(st, close_frame(slow), false, tally);
        }
    }

    /// Replaces the queued sequenced frames (all but one already partly written) with the
    /// catch-up frame, the kept events after it, and the newest conflated values. Private
    /// frames keep their order, after the catch-up. Without a catch-up that bridges the gap,
    /// the viewer is closed with `resync_close`.
    fn catch_up(self: &Arc<Self>, st: &mut State, tally: &mut Tally) {
        let target = st.seq;
        let Some(q) = st.queue.as_deref_mut() else {
            return;
        };
        let skip = usize::from(q.offset > 0);
        let first = q
            .entries
            .iter()
            .enumerate()
            .skip(skip)
            .find_map(|(i, e)| e.seq().map(|s| (i, s)));
        let Some((first, first_seq)) = first else {
            return;
        };
        // Everything up to `floor` has been written (or is ahead of `first` in the queue).
        let Some(bridge) = self.channel.bridge(first_seq - 1, target) else {
            tally.closed_resync += 1;
            let resync = self.channel.config().resync_close;
            self.begin_close(st, close_frame(resync), false, tally);
            return;
        };
        let old = std::mem::take(&mut q.entries);
        let mut later = Vec::new();
        for (i, e) in old.into_iter().enumerate() {
            if i < first {
                q.entries.push_back(e);
            } else if matches!(e, Entry::Private(_)) {
                later.push(e);
            }
        }
        let reached = q.push_bridge(&bridge);
        q.entries.extend(later);
        q.recount();
        q.add_cells(&*self.channel, |_| true);
        st.seq = target.max(reached);
        tally.catch_ups += 1;
    }

    /// Queues the close frame behind what must still go (a partly written frame; private
    /// frames too when the session closes), dropping the rest.
    fn begin_close(
        self: &Arc<Self>,
        st: &mut State,
        frame: Frame,
        keep_private: bool,
        tally: &mut Tally,
    ) {
        if st.phase >= Phase::Closing {
            return;
        }
        st.phase = Phase::Closing;
        // The prefix owed before any frame is kept too, or the close frame would reach a
        // client that never had the upgrade's answer.
        let first_stays = std::mem::take(&mut st.owes_prefix);
        let q = st.queue.get_or_insert_with(Queue::new);
        let partial = q.offset > 0 || first_stays;
        let old = std::mem::take(&mut q.entries);
        for (i, e) in old.into_iter().enumerate() {
            if (i == 0 && partial) || (keep_private && matches!(e, Entry::Private(_))) {
                q.entries.push_back(e);
            }
        }
        q.entries.push_back(Entry::Close(frame));
        q.recount();
        q.close_by = Some(Instant::now() + self.channel.config().close_grace);
        self.changed.notify_waiters();
        self.flush_now(st, tally);
    }

    /// Writes the queue now, unless a writer task is on it; what does not fit goes to one.
    fn flush_now(self: &Arc<Self>, st: &mut State, tally: &mut Tally) {
        if st.flushing {
            return;
        }
        match self.write_queue(st, tally) {
            Ok(true) => self.drained(st),
            Ok(false) => {
                self.check_bounds(st, tally);
                self.ensure_writer(st);
            }
            Err(_) => {
                tally.closed_gone += 1;
                self.abort(st);
            }
        }
    }

    fn ensure_writer(self: &Arc<Self>, st: &mut State) {
        if !st.flushing && st.queue.is_some() && st.phase != Phase::Closed {
            st.flushing = true;
            tokio::spawn(writer(self.clone()));
        }
    }

    /// Writes queued frames, up to `max_batch` per system call, until the socket is full or
    /// the queue is empty (`Ok(true)`).
    fn write_queue(&self, st: &mut State, tally: &mut Tally) -> io::Result<bool> {
        let max_batch = self.channel.config().max_batch;
        let State {
            queue, cells_seen, ..
        } = st;
        let Some(q) = queue.as_deref_mut() else {
            return Ok(true);
        };
        loop {
            for e in q.entries.iter_mut().take(max_batch) {
                if let Entry::Cell(kind, slot @ None) = e {
                    // Read as late as possible: the newest value is the one that goes, unless
                    // the viewer has it already (then nothing goes).
                    let seen = &mut cells_seen[kind.index()];
                    let frame = match self.channel.cell(*kind) {
                        Some((version, frame)) if version > *seen => {
                            *seen = version;
                            frame
                        }
                        _ => Frame::empty(),
                    };
                    q.bytes += frame.len();
                    q.dirty &= !kind.bit();
                    *slot = Some(frame);
                }
            }
            if q.entries.is_empty() {
                return Ok(true);
            }
            let result = {
                let mut slices = Vec::with_capacity(q.entries.len().min(max_batch));
                for (i, e) in q.entries.iter().take(max_batch).enumerate() {
                    let b = if i == 0 {
                        &e.bytes()[q.offset..]
                    } else {
                        e.bytes()
                    };
                    if !b.is_empty() {
                        slices.push(IoSlice::new(b));
                    }
                }
                if slices.is_empty() {
                    Ok(0)
                } else {
                    match self.socket.try_write_vectored(&slices) {
                        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                        other => other,
                    }
                }
            };
            match result {
                Ok(n) => {
                    if n > 0 {
                        q.progress_at = Instant::now();
                        tally.bytes += n as u64;
                    }
                    q.advance(n, tally);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// The queue is empty: a live viewer lets it go (no buffer is kept while idle), a closing
    /// one is done.
    fn drained(&self, st: &mut State) {
        if st.phase == Phase::Closing {
            self.finish(st);
        } else {
            st.queue = None;
        }
    }

    /// Closed in good order: the stream ends after what was written.
    fn finish(&self, st: &mut State) {
        st.phase = Phase::Closed;
        st.queue = None;
        let _ = socket2::SockRef::from(self.socket.as_ref()).shutdown(std::net::Shutdown::Write);
        self.changed.notify_waiters();
    }

    /// Closed at once: the peer is gone or would not take the close frame in time. The socket
    /// resets when it is dropped instead of holding unsent bytes, and the session's read half
    /// sees the end too.
    fn abort(&self, st: &mut State) {
        st.phase = Phase::Closed;
        st.queue = None;
        let sock = socket2::SockRef::from(self.socket.as_ref());
        let _ = sock.set_linger(Some(Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
        self.changed.notify_waiters();
    }

    /// One turn of the writer task. `true`: the task is done.
    fn writer_turn(self: &Arc<Self>, st: &mut State, wake: Wake, tally: &mut Tally) -> bool {
        if st.phase == Phase::Closed || st.queue.is_none() {
            st.flushing = false;
            return true;
        }
        let written = match wake {
            Wake::Writable(Err(_)) => Err(()),
            Wake::Writable(Ok(())) | Wake::Changed => self.write_queue(st, tally).map_err(|_| ()),
            Wake::Deadline => Ok(false),
        };
        match written {
            Ok(true) => {
                self.drained(st);
                st.flushing = false;
                return true;
            }
            Ok(false) => {}
            Err(()) => {
                tally.closed_gone += 1;
                self.abort(st);
                st.flushing = false;
                return true;
            }
        }
        let now = Instant::now();
        let stall = self.channel.config().stall_timeout;
        let (close_by, progress_at) = match st.queue.as_ref() {
            Some(q) => (q.close_by, q.progress_at),
            None => (None, now),
        };
        match close_by {
            Some(by) if now >= by => {
                self.abort(st);
                st.flushing = false;
                return true;
            }
            Some(_) => {}
            None if now >= progress_at + stall => {
                tally.closed_slow += 1;
                let slow = self.channel.config().slow_close;
                self.begin_close(st, close_frame(slow), false, tally);
            }
            None => {}
        }
        false
    }
}

fn close_frame(reason: CloseReason) -> Frame {
    Frame::close(reason.code, reason.reason)
}

/// The writer task of one viewer whose socket was full: runs until its queue is empty.
async fn writer(cell: Arc<ViewerCell>) {
    loop {
        let changed = cell.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let deadline = {
            let st = lock(&cell.state);
            match st.queue.as_ref() {
                Some(q) => q
                    .close_by
                    .unwrap_or(q.progress_at + cell.channel.config().stall_timeout),
                None => Instant::now(),
            }
        };
        let wake = tokio::select! {
            r = cell.socket.writable() => Wake::Writable(r),
            () = tokio::time::sleep_until(deadline) => Wake::Deadline,
            () = &mut changed => Wake::Changed,
        };
        let mut tally = Tally::default();
        let done = {
            let mut st = lock(&cell.state);
            cell.writer_turn(&mut st, wake, &mut tally)
        };
        cell.shard.counters.add(&tally);
        if done {
            return;
        }
    }
}

/// The viewer is closed (or closing): nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the viewer is closed")]
pub struct ViewerClosed;

/// Which conflated values follow a viewer's start frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cells {
    pub stock: bool,
    pub feed: bool,
    pub viewers: bool,
}

impl Cells {
    pub const NONE: Cells = Cells {
        stock: false,
        feed: false,
        viewers: false,
    };
    pub const ALL: Cells = Cells {
        stock: true,
        feed: true,
        viewers: true,
    };

    fn contains(self, kind: CellKind) -> bool {
        match kind {
            CellKind::Stock => self.stock,
            CellKind::Feed => self.feed,
            CellKind::Viewers => self.viewers,
        }
    }
}

/// Where a viewer's first frames leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The client last saw `after`: the engine sends every kept event after it. `Gap` if the
    /// history no longer reaches back, `Ahead` if the show never got that far: send a snapshot
    /// instead.
    Resume { after: u64 },
    /// The start frames bring the viewer to `seq` (a snapshot stamped `seq`, or events the
    /// caller fetched elsewhere): events up to it are skipped, later ones follow.
    At { seq: u64 },
}

/// A viewer's first frames.
#[derive(Debug, Clone)]
pub struct Start {
    /// Written first, in order (hello, snapshot, events the caller fetched itself).
    pub frames: Vec<Frame>,
    pub from: StartFrom,
    /// The conflated values sent right after; changes to the others before the start are
    /// taken as covered by the start frames.
    pub cells: Cells,
}

/// Why a viewer could not start; nothing was written and it may start again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("sequence {after} is ahead of the show ({last})")]
    Ahead { after: u64, last: u64 },
    #[error("the kept history does not reach back to sequence {from}")]
    Gap { from: u64 },
    #[error("the viewer has started already")]
    Started,
    #[error("the viewer is closed")]
    Closed,
}

/// A session's handle on its viewer. Dropping it detaches the viewer (after a [`Viewer::close`],
/// or ending the stream at once).
pub struct Viewer {
    cell: Arc<ViewerCell>,
    counted: bool,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("phase", &self.cell.phase())
            .finish()
    }
}

impl Viewer {
    pub(crate) fn new(cell: Arc<ViewerCell>, counted: bool) -> Self {
        Self { cell, counted }
    }

    /// Writes the session's first frames, then lets the show's frames flow. See [`Start`].
    pub fn start(&self, start: Start) -> Result<(), StartError> {
        self.cell.start(start)
    }

    /// Sends a frame of the session's own (an answer, a pong, a notice), in order with every
    /// frame sent before it and behind every event published before the call.
    pub fn send(&self, frame: Frame) -> Result<(), ViewerClosed> {
        self.cell.private(Entry::Private(frame))
    }

    /// Closes with `code`: the close frame follows the private frames already sent, and the
    /// stream ends. Returns once it is written, or the grace ran out and the connection was
    /// reset.
    pub async fn close(&self, code: u16, reason: &str) {
        self.cell.close(code, reason);
        self.cell.reached(Phase::Closed).await;
    }

    /// Resolves once the viewer is closing, whoever decided it (the engine closes a viewer that
    /// stopped reading, that cannot be caught up, or whose peer is gone).
    pub async fn closing(&self) {
        self.cell.reached(Phase::Closing).await;
    }

    /// Whether frames can still be sent.
    pub fn is_open(&self) -> bool {
        self.cell.phase() < Phase::Closing
    }

    /// The newest sequence number this viewer was handed.
    pub fn seq(&self) -> u64 {
        lock(&self.cell.state).seq
    }

    /// Bytes this viewer's queue holds allocated now (its own state and its slots; the frames
    /// are shared): 0 while its socket keeps up. For tests and the documentation's idle
    /// figures.
    pub fn queue_capacity(&self) -> usize {
        lock(&self.cell.state).queue.as_ref().map_or(0, |q| {
            std::mem::size_of::<Queue>() + q.entries.capacity() * std::mem::size_of::<Entry>()
        })
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.cell.detach(self.counted);
    }
}

/// Sizes of what an idle viewer costs the engine, for the crate documentation's figures.
#[cfg(test)]
pub(crate) fn idle_sizes() -> [(&'static str, usize); 3] {
    [
        ("ViewerCell", std::mem::size_of::<ViewerCell>()),
        ("Viewer", std::mem::size_of::<Viewer>()),
        ("shard list entry", std::mem::size_of::<Arc<ViewerCell>>()),
    ]
}
