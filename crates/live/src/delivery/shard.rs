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

use crate::delivery::viewer::ViewerCell;
pub(crate) use crate::delivery::viewer::{Shard, Work};
use crate::frame::Frame;
use crate::metrics::Tally;
use crate::sync::lock;

impl Shard {
    /// The shard's task: drains the inbox and walks viewers until the engine is dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut lists: HashMap<u64, Vec<Arc<ViewerCell>>> = HashMap::new();
        let mut batch = Vec::new();
        let mut events: Vec<(u64, Frame)> = Vec::new();
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
            // walked once: each viewer gets them in one `writev`.
            // The show of the run and when its oldest event was published.
            let mut run: Option<(u64, Instant)> = None;
            for work in batch.drain(..) {
                if let Work::Event {
                    channel,
                    seq,
                    frame,
                    published_at,
                } = work
                {
                    if run.is_some_and(|(c, _)| c != channel) {
                        self.walk_events(&lists, &mut run, &mut events, &mut tally);
                    }
                    run.get_or_insert((channel, published_at));
                    events.push((seq, frame));
                } else {
                    self.walk_events(&lists, &mut run, &mut events, &mut tally);
                    process(&mut lists, work, &mut tally);
                }
            }
            self.walk_events(&lists, &mut run, &mut events, &mut tally);
            self.counters.add(&tally);
            // A long batch (a big show) should not keep the worker from its other tasks.
            tokio::task::yield_now().await;
        }
    }
}

impl Shard {
    /// Hands a run of one show's consecutive events to each of its viewers in this shard, then
    /// samples the lag of the run's oldest event once.
    fn walk_events(
        &self,
        lists: &HashMap<u64, Vec<Arc<ViewerCell>>>,
        run: &mut Option<(u64, Instant)>,
        events: &mut Vec<(u64, Frame)>,
        tally: &mut Tally,
    ) {
        let Some((channel, published_at)) = run.take() else {
            return;
        };
        let mut walked = false;
        for viewer in lists.get(&channel).into_iter().flatten() {
            walked = true;
            match events.as_slice() {
                [(seq, frame)] => viewer.deliver_seq(*seq, frame, tally),
                many => viewer.deliver_seqs(many, tally),
            }
        }
        if walked {
            self.sample_lag(published_at.elapsed());
        }
        events.clear();
    }
}

fn process(lists: &mut HashMap<u64, Vec<Arc<ViewerCell>>>, work: Work, tally: &mut Tally) {
    match work {
        // Runs of events are walked by `walk_events`.
        Work::Event { .. } => {}
        Work::Cell {
            channel,
            kind,
            version,
            frame,
        } => {
            for viewer in lists.get(&channel).into_iter().flatten() {
                viewer.deliver_cell(kind, version, &frame, tally);
            }
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
