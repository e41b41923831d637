//! A shard: a share of the node's viewers and the one task that walks them.
//!
//! Every channel spreads its viewers over the engine's shards, round-robin. A published frame
//! becomes one work item per shard that holds viewers of its show, and one wake of that
//! shard's task if it was idle; the task then writes the frame to each of its viewers' sockets
//! in turn. So an event costs one task wake per shard, not per viewer, and the shards of one
//! show run on as many runtime workers as there are. A viewer belongs to one shard, whose inbox
//! is first in, first out, so its frames keep their order.
//!
//! The task owns the lists of its viewers outright (attach and detach are work items too), so
//! walking them takes no lock but each viewer's own, which nobody else holds for long.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::delivery::cell::Bridge;
use crate::delivery::viewer::{Entry, ViewerCell};
pub(crate) use crate::delivery::viewer::{Shard, Work};
use crate::frame::Frame;
use crate::metrics::Tally;
use crate::sync::lock;

/// Viewers written in one go before a walk lets the worker's other tasks run. A write to a
/// socket costs a few microseconds, so a walk over a show of 10,000 viewers takes tens of
/// milliseconds; without a pause the seller's next command (and every join and claim on the
/// same worker) waits behind whole walks, and under overload the commands fall seconds behind.
/// 256 writes keep that wait around a millisecond while a pause (one trip through the
/// scheduler) stays rare next to the writes.
pub(crate) const WALK_CHUNK: usize = 256;

impl Shard {
    /// The shard's task: drains the inbox and walks viewers until the engine is dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut lists: HashMap<u64, Vec<Arc<ViewerCell>>> = HashMap::new();
        let mut batch = Vec::new();
        let mut run = Run::default();
        loop {
            std::mem::swap(&mut *lock(&self.inbox), &mut batch);
            if batch.is_empty() {
                if self.stop.load(Relaxed) {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let mut tally = Tally::default();
            // Consecutive events of one show (the shard fell behind, or a relay burst) are
            // walked once: each viewer gets them in one `writev`. A private frame of one of the
            // show's viewers joins the run at its place, so an answer to each command of a
            // seller (or to each claim) does not cut it into walks of one event.
            for work in batch.drain(..) {
                match work {
                    Work::Event {
                        channel,
                        seq,
                        frame,
                        published_at,
                    } => {
                        if run.show.is_some_and(|(c, _)| c != channel) {
                            self.walk_run(&lists, &mut run, &mut tally).await;
                        }
                        run.show.get_or_insert((channel, published_at));
                        run.events.push((seq, frame));
                    }
                    Work::Private(viewer, entry)
                        if run.show.is_some_and(|(c, _)| c == viewer.channel_id()) =>
                    {
                        run.privates.push((run.events.len(), viewer, Some(entry)));
                    }
                    work => {
                        self.walk_run(&lists, &mut run, &mut tally).await;
                        process(&mut lists, work, &mut tally).await;
                    }
                }
            }
            self.walk_run(&lists, &mut run, &mut tally).await;
            self.counters.add(&tally);
            // A long batch (a big show) should not keep the worker from its other tasks.
            tokio::task::yield_now().await;
        }
    }
}

/// Consecutive events of one show taken from a shard's inbox, and the private frames of its
/// viewers that stood among them.
#[derive(Default)]
struct Run {
    /// The show, and when the run's oldest event was published.
    show: Option<(u64, Instant)>,
    events: Vec<(u64, Frame)>,
    /// Each private frame with the number of the run's events that precede it.
    privates: Vec<(usize, Arc<ViewerCell>, Option<Entry>)>,
}

impl Shard {
    /// Hands a run of one show's consecutive events to each of its viewers in this shard, then
    /// samples the lag of the run's oldest event once.
    async fn walk_run(
        &self,
        lists: &HashMap<u64, Vec<Arc<ViewerCell>>>,
        run: &mut Run,
        tally: &mut Tally,
    ) {
        let Some((channel, published_at)) = run.show.take() else {
            return;
        };
        let Run {
            events, privates, ..
        } = run;
        let list = lists.get(&channel).map_or(&[][..], Vec::as_slice);
        // A long run whose oldest event has waited means this shard fell behind the show: one
        // catch-up, looked up once for the whole walk, stands for it.
        let skip = match (list.first(), events.first(), events.last()) {
            (Some(viewer), Some((first, _)), Some((last, _))) => {
                let config = viewer.channel().config();
                (config.skip_run > 0
                    && events.len() >= config.skip_run
                    && published_at.elapsed() >= config.skip_after)
                    .then(|| viewer.channel().bridge(first - 1, *last))
                    .flatten()
            }
            _ => None,
        };
        match (privates.is_empty(), events.as_slice()) {
            // The common case, walked without looking for private frames per viewer.
            (true, [(seq, frame)]) => {
                walk(list, |viewer| viewer.deliver_seq(*seq, frame, tally)).await;
            }
            (true, many) => {
                let skip = skip.as_ref();
                walk(list, |viewer| viewer.deliver_seqs(many, skip, tally)).await;
            }
            (false, _) => {
                walk(list, |viewer| {
                    Self::deliver_around_privates(viewer, events, privates, skip.as_ref(), tally)
                })
                .await;
            }
        }
        // A viewer that left the list meanwhile still has its private frames counted.
        for (_, viewer, entry) in privates.drain(..) {
            if let Some(entry) = entry {
                viewer.deliver_private(entry, tally);
            }
        }
        if !list.is_empty() {
            self.sample_lag(published_at.elapsed());
        }
        events.clear();
    }

    /// A run to one viewer when private frames stood among its events: a viewer with frames of
    /// its own gets every event with its frames at their places (never the skip: a frame
    /// answers what came before it); any other gets the run as usual.
    fn deliver_around_privates(
        viewer: &Arc<ViewerCell>,
        events: &[(u64, Frame)],
        privates: &mut [(usize, Arc<ViewerCell>, Option<Entry>)],
        skip: Option<&Bridge>,
        tally: &mut Tally,
    ) {
        let mut from = 0;
        for (at, _, entry) in privates
            .iter_mut()
            .filter(|(_, v, _)| Arc::ptr_eq(v, viewer))
        {
            viewer.deliver_run(&events[from..*at], None, tally);
            if let Some(entry) = entry.take() {
                viewer.deliver_private(entry, tally);
            }
            from = *at;
        }
        let skip = if from == 0 { skip } else { None };
        viewer.deliver_run(&events[from..], skip, tally);
    }
}

/// Hands something to every viewer of a list, pausing every [`WALK_CHUNK`] viewers. The list
/// cannot change meanwhile: only this shard's task, which is the one walking, changes it.
async fn walk(list: &[Arc<ViewerCell>], mut each: impl FnMut(&Arc<ViewerCell>)) {
    for (i, chunk) in list.chunks(WALK_CHUNK).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        chunk.iter().for_each(&mut each);
    }
}

async fn process(lists: &mut HashMap<u64, Vec<Arc<ViewerCell>>>, work: Work, tally: &mut Tally) {
    match work {
        // Runs of events are walked by `walk_run`.
        Work::Event { .. } => {}
        Work::Cell {
            channel,
            kind,
            version,
            frame,
        } => {
            let list = lists.get(&channel).map_or(&[][..], Vec::as_slice);
            walk(list, |viewer| {
                viewer.deliver_cell(kind, version, &frame, tally)
            })
            .await;
        }
        Work::Attach(viewer) => {
            let list = lists.entry(viewer.channel_id()).or_default();
            viewer.set_slot(list.len());
            list.push(viewer);
        }
        Work::Detach(viewer) => {
            let id = viewer.channel_id();
            if let Some(list) = lists.get_mut(&id) {
                let slot = viewer.slot();
                if slot < list.len() && Arc::ptr_eq(&list[slot], &viewer) {
                    list.swap_remove(slot);
                    if let Some(moved) = list.get(slot) {
                        moved.set_slot(slot);
                    }
                }
                if list.is_empty() {
                    lists.remove(&id);
                }
            }
        }
        Work::Private(viewer, entry) => viewer.deliver_private(entry, tally),
    }
}
