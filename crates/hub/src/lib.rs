//! The hub: per-show fan-out of already-serialized frames to every connection watching it.
//!
//! Two kinds of traffic, two structures, chosen so that memory does not grow with slow viewers:
//!
//! - **Sequenced events** go through one `tokio::sync::broadcast` ring per show, of
//!   `event_buffer` frames. A frame is stored once and every connection reads the same bytes; a
//!   connection that falls more than `event_buffer` frames behind is told it lagged (the server
//!   then closes it with the `resync` code), so a slow viewer costs nothing beyond the shared
//!   ring. The last `history` frames are also kept for resume.
//! - **Conflated values** (stock, claim feed, viewer count) sit in one `watch` cell each per
//!   show: a new value replaces the old, and a connection reads only the latest.
//!
//! The hub is generic over the payload `P` (the server uses the WebSocket text type, whose clone
//! is a reference-count increment), so it knows nothing of sockets or JSON.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{broadcast, watch};

/// Bounds of one show's channel.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Frames a connection may fall behind before it must resync (the broadcast ring size).
    pub event_buffer: usize,
    /// Frames kept per show for resume.
    pub history: usize,
    /// Out-of-order frames held while waiting for a missing sequence number.
    pub max_pending: usize,
}

/// A sequenced frame.
#[derive(Debug, Clone)]
pub struct Sequenced<P> {
    pub seq: u64,
    pub payload: P,
    /// When the frame was published to the channel (read once per frame, not per connection):
    /// a writer measures the fan-out lag from it.
    pub published_at: Instant,
}

/// What became of a published frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Delivered (with any held frames it unblocked) to this many connections.
    Delivered { receivers: usize, frames: usize },
    /// Already published; ignored.
    Duplicate,
    /// Held: frames `expected..seq` are missing. The caller should fetch and publish them.
    Gap { expected: u64 },
}

struct Ordered<P> {
    last_seq: u64,
    history: VecDeque<Sequenced<P>>,
    pending: BTreeMap<u64, P>,
}

/// One show's fan-out channel.
pub struct ShowChannel<P> {
    limits: HubLimits,
    events: broadcast::Sender<Sequenced<P>>,
    ordered: Mutex<Ordered<P>>,
    stock: watch::Sender<Option<P>>,
    feed: watch::Sender<Option<P>>,
    viewers_frame: watch::Sender<Option<P>>,
    viewers: AtomicU64,
}

/// A connection's view of a channel. Dropping it counts the viewer out.
pub struct Subscription<P> {
    pub events: broadcast::Receiver<Sequenced<P>>,
    pub stock: watch::Receiver<Option<P>>,
    pub feed: watch::Receiver<Option<P>>,
    pub viewers: watch::Receiver<Option<P>>,
    /// Kept frames with `seq > after`, when the history reached back that far.
    pub backlog: Option<Vec<Sequenced<P>>>,
    /// The newest sequence published when the subscription was made. Frames from `events`
    /// with `seq <= last_seq` are already covered by `backlog` or a snapshot.
    pub last_seq: u64,
    channel: Arc<ShowChannel<P>>,
    counted: bool,
}

impl<P> Drop for Subscription<P> {
    fn drop(&mut self) {
        if self.counted {
            self.channel.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is only ever changed by complete, panic-free steps; a poisoned lock
    // still holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<P: Clone + Send + Sync + 'static> ShowChannel<P> {
    fn new(limits: HubLimits, last_seq: u64) -> Self {
        let (events, _) = broadcast::channel(limits.event_buffer.max(1));
        Self {
            limits,
            events,
            ordered: Mutex::new(Ordered {
                last_seq,
                history: VecDeque::with_capacity(limits.history.min(1024)),
                pending: BTreeMap::new(),
            }),
            stock: watch::channel(None).0,
            feed: watch::channel(None).0,
            viewers_frame: watch::channel(None).0,
            viewers: AtomicU64::new(0),
        }
    }

    /// Publishes a frame in sequence order. Frames arriving early are held until the missing
    /// ones arrive, so every connection sees a gap-free, ordered sequence.
    pub fn publish(&self, seq: u64, payload: P) -> Published {
        let mut o = lock(&self.ordered);
        if seq <= o.last_seq || o.pending.contains_key(&seq) {
            return Published::Duplicate;
        }
        if seq > o.last_seq + 1 {
            if o.pending.len() < self.limits.max_pending {
                o.pending.insert(seq, payload);
            }
            return Published::Gap {
                expected: o.last_seq + 1,
            };
        }
        let mut receivers = self.push(&mut o, seq, payload);
        let mut frames = 1;
        loop {
            let s = o.last_seq + 1;
            let Some(next) = o.pending.remove(&s) else {
                break;
            };
            receivers = receivers.max(self.push(&mut o, s, next));
            frames += 1;
        }
        Published::Delivered { receivers, frames }
    }

    fn push(&self, o: &mut Ordered<P>, seq: u64, payload: P) -> usize {
        o.last_seq = seq;
        let published_at = Instant::now();
        if self.limits.history > 0 {
            if o.history.len() >= self.limits.history {
                o.history.pop_front();
            }
            o.history.push_back(Sequenced {
                seq,
                payload: payload.clone(),
                published_at,
            });
        }
        // Sending under the lock keeps broadcast order equal to sequence order.
        self.events
            .send(Sequenced {
                seq,
                payload,
                published_at,
            })
            .unwrap_or(0)
    }

    /// The newest published sequence number.
    pub fn last_seq(&self) -> u64 {
        lock(&self.ordered).last_seq
    }

    /// Subscribes a connection. With `after`, the kept frames newer than it are returned as
    /// the backlog if the history still reaches back to `after + 1`.
    pub fn subscribe(self: &Arc<Self>, after: Option<u64>, count_viewer: bool) -> Subscription<P> {
        let o = lock(&self.ordered);
        let events = self.events.subscribe();
        let backlog = after.and_then(|after| {
            if after > o.last_seq {
                return None;
            }
            if after == o.last_seq {
                return Some(Vec::new());
            }
            let oldest = o.history.front().map(|f| f.seq)?;
            (oldest <= after + 1).then(|| {
                o.history
                    .iter()
                    .filter(|f| f.seq > after)
                    .cloned()
                    .collect()
            })
        });
        let last_seq = o.last_seq;
        drop(o);
        if count_viewer {
            self.viewers.fetch_add(1, Ordering::Relaxed);
        }
        Subscription {
            events,
            stock: self.stock.subscribe(),
            feed: self.feed.subscribe(),
            viewers: self.viewers_frame.subscribe(),
            backlog,
            last_seq,
            channel: self.clone(),
            counted: count_viewer,
        }
    }

    /// Replaces the conflated stock frame.
    pub fn set_stock(&self, payload: P) {
        self.stock.send_replace(Some(payload));
    }

    /// Replaces the conflated claim-feed frame.
    pub fn set_feed(&self, payload: P) {
        self.feed.send_replace(Some(payload));
    }

    /// Replaces the conflated viewer-count frame.
    pub fn set_viewers(&self, payload: P) {
        self.viewers_frame.send_replace(Some(payload));
    }

    /// Viewers subscribed on this node now.
    pub fn viewer_count(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Connections subscribed on this node now (viewers and sellers).
    pub fn connection_count(&self) -> usize {
        self.events.receiver_count()
    }
}

/// Every show channel of this node.
pub struct Hub<P> {
    limits: HubLimits,
    shows: Mutex<HashMap<String, Arc<ShowChannel<P>>>>,
}

impl<P: Clone + Send + Sync + 'static> Hub<P> {
    pub fn new(limits: HubLimits) -> Self {
        Self {
            limits,
            shows: Mutex::new(HashMap::new()),
        }
    }

    /// The channel of a show, created on first use with `last_seq` as its starting point.
    pub fn channel(&self, show: &str, last_seq: u64) -> Arc<ShowChannel<P>> {
        lock(&self.shows)
            .entry(show.to_owned())
            .or_insert_with(|| Arc::new(ShowChannel::new(self.limits, last_seq)))
            .clone()
    }

    /// Forgets a show's channel (a closed show nobody watches any more): its ring, history and
    /// cells are freed once the last holder lets go, and a later [`Hub::channel`] starts afresh.
    pub fn remove(&self, show: &str) {
        lock(&self.shows).remove(show);
    }

    /// Every channel, for periodic work (stock ticks, metrics).
    pub fn channels(&self) -> Vec<(String, Arc<ShowChannel<P>>)> {
        lock(&self.shows)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HubLimits {
        HubLimits {
            event_buffer: 4,
            history: 3,
            max_pending: 8,
        }
    }

    #[tokio::test]
    async fn ordered_delivery_and_gap_holding() {
        let hub: Hub<Arc<str>> = Hub::new(limits());
        let ch = hub.channel("s", 0);
        let mut sub = ch.subscribe(None, true);
        assert_eq!(ch.viewer_count(), 1);
        assert_eq!(ch.publish(2, "two".into()), Published::Gap { expected: 1 });
        assert_eq!(
            ch.publish(1, "one".into()),
            Published::Delivered {
                receivers: 1,
                frames: 2
            }
        );
        assert_eq!(ch.publish(1, "again".into()), Published::Duplicate);
        assert_eq!(sub.events.recv().await.map(|f| f.seq).ok(), Some(1));
        assert_eq!(sub.events.recv().await.map(|f| f.seq).ok(), Some(2));
        drop(sub);
        assert_eq!(ch.viewer_count(), 0);
    }

    #[tokio::test]
    async fn backlog_reaches_back_only_as_far_as_history() {
        let hub: Hub<Arc<str>> = Hub::new(limits());
        let ch = hub.channel("s", 10);
        for seq in 11..=15 {
            ch.publish(seq, format!("e{seq}").into());
        }
        // History keeps 13, 14, 15.
        let seqs = |s: &Subscription<Arc<str>>| {
            s.backlog
                .as_ref()
                .map(|b| b.iter().map(|f| f.seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(&ch.subscribe(Some(12), false)), Some(vec![13, 14, 15]));
        assert_eq!(seqs(&ch.subscribe(Some(15), false)), Some(vec![]));
        assert_eq!(
            seqs(&ch.subscribe(Some(11), false)),
            None,
            "14 frames back is gone"
        );
        assert_eq!(
            seqs(&ch.subscribe(Some(16), false)),
            None,
            "from the future"
        );
    }

    #[tokio::test]
    async fn slow_receiver_lags_instead_of_growing() {
        let hub: Hub<Arc<str>> = Hub::new(limits());
        let ch = hub.channel("s", 0);
        let mut slow = ch.subscribe(None, true);
        for seq in 1..=10 {
            ch.publish(seq, "x".into());
        }
        assert!(matches!(
            slow.events.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[tokio::test]
    async fn conflated_values_keep_only_the_latest() {
        let hub: Hub<Arc<str>> = Hub::new(limits());
        let ch = hub.channel("s", 0);
        let mut sub = ch.subscribe(None, true);
        ch.set_stock("a".into());
        ch.set_stock("b".into());
        assert!(sub.stock.changed().await.is_ok());
        assert_eq!(sub.stock.borrow_and_update().as_deref(), Some("b"));
        assert!(!sub.stock.has_changed().unwrap_or(true));
    }

    #[test]
    fn a_removed_channel_starts_afresh() {
        let hub: Hub<Arc<str>> = Hub::new(limits());
        let ch = hub.channel("s", 0);
        assert_eq!(
            ch.publish(1, "one".into()),
            Published::Delivered {
                receivers: 0,
                frames: 1
            }
        );
        hub.remove("s");
        assert!(hub.channels().is_empty());
        assert_eq!(ch.last_seq(), 1, "a holder keeps its channel");
        assert_eq!(
            hub.channel("s", 7).last_seq(),
            7,
            "a new channel from the given point"
        );
    }
}
