//! The show event feed across nodes: every event a command script appends is also published on
//! the show's channel; each node subscribes to the channels of the shows its viewers watch, and
//! unsubscribes when it lets a show go.
//!
//! Pub/sub may lose messages (a dropped connection, a Redis restart). The feed therefore
//! reports every reconnection, and the receiver repairs any gap from the show's event history
//! by sequence number; a lost message costs a little latency, never an event.
//!
//! On a Redis Cluster the feed uses sharded pub/sub: `SSUBSCRIBE` to each show's channel, which
//! the cluster connection sends to the master owning the channel's slot (the show's slot). The
//! `redis` crate delivers the messages as RESP3 pushes and, when a node's connection drops or
//! the slot map changes, reconnects and subscribes again by itself without telling the caller.
//! The feed infers it from the pushes: every subscription confirmation other than the first one
//! of a newly watched show is a resubscription, so events may have been missed before it; the
//! confirmations of one reconnection are gathered for [`RESUBSCRIBE_SETTLE`] and reported as
//! one [`FeedItem::Reconnected`]. A `sunsubscribe` the server sends on its own (the slot moved
//! to another master: failover, resharding) is answered by subscribing again, which the new
//! owner confirms; the crate itself forgets such a subscription. Should all this miss a case, the server still compares each watched show's
//! sequence with Redis on every stock tick and repairs from history: a lost event then costs
//! at most one tick.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use nightmarket_domain::{SequencedEvent, ShowId};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

/// Events waiting for the server to take them; beyond this the subscriber stops reading and
/// Redis buffers (bounded by its `client-output-buffer-limit pubsub`).
const FEED_QUEUE: usize = 4096;
/// Pause before reconnecting after the subscription connection failed; it doubles with each
/// failure in a row, up to [`RECONNECT_DELAY_MAX`]. (Events missed meanwhile are repaired from
/// history on the next stock tick anyway.)
const RECONNECT_DELAY: Duration = Duration::from_millis(250);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(4);

/// Reconnection attempts in a row: their pauses, and a warning only at the 1st, 2nd, 4th, 8th …
/// failure, so an outage does not fill the log; then one line when the feed is back.
#[derive(Default)]
struct Retry {
    failures: u32,
    since: Option<std::time::Instant>,
}

impl Retry {
    async fn failed(&mut self, what: &str, error: String) {
        self.failures += 1;
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        if self.failures.is_power_of_two() {
            tracing::warn!(
                %error,
                failures = self.failures,
                down_ms = since.elapsed().as_millis() as u64,
                "event feed: {what}; retrying"
            );
        }
        let delay = RECONNECT_DELAY
            .saturating_mul(1 << (self.failures - 1).min(8))
            .min(RECONNECT_DELAY_MAX);
        tokio::time::sleep(delay).await;
    }

    fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                failures = self.failures,
                down_ms = since.elapsed().as_millis() as u64,
                "event feed: Redis is back; subscribed again"
            );
        }
        self.failures = 0;
    }
}
/// On a Cluster, resubscription confirmations arriving within this window of the first one
/// (several channels, several nodes reconnecting) are reported as one reconnection.
const RESUBSCRIBE_SETTLE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum FeedItem {
    Event(ShowId, SequencedEvent),
    /// The subscription was re-established: events may have been missed meanwhile.
    Reconnected,
}

/// What the subscriber is asked to do about one show.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Watch,
    Unwatch,
}

/// The changes asked and not yet applied: one per show, the latest ask winning (both asks are
/// idempotent, so only the last one matters). However fast shows are watched and let go, or
/// however slowly Redis answers, this holds at most one entry per show the node knows of; a
/// queue of asks would grow without bound while a subscription call hangs.
#[derive(Default)]
struct Asked {
    changes: std::sync::Mutex<HashMap<ShowId, Want>>,
    /// Wakes the subscriber; a wake given while it is busy is kept for its next wait.
    wake: tokio::sync::Notify,
}

impl Asked {
    fn ask(&self, show: &ShowId, want: Want) {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(show.clone(), want);
        self.wake.notify_one();
    }

    /// Every change asked since the last call, waiting for one if there is none.
    async fn take(&self) -> HashMap<ShowId, Want> {
        loop {
            let changes = std::mem::take(
                &mut *self
                    .changes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if !changes.is_empty() {
                return changes;
            }
            self.wake.notified().await;
        }
    }
}

/// Asks the subscriber to follow more shows, or fewer.
#[derive(Clone)]
pub struct EventFeed {
    asked: Arc<Asked>,
}

impl EventFeed {
    /// Follows a show's channel from now on (idempotent).
    pub fn watch(&self, show: &ShowId) {
        self.asked.ask(show, Want::Watch);
    }

    /// Stops following a show's channel (idempotent): the subscription and its entry go, so a
    /// node that serves shows one after another holds only the ones it serves now.
    pub fn unwatch(&self, show: &ShowId) {
        self.asked.ask(show, Want::Unwatch);
    }
}

pub(super) fn start(
    client: redis::Client,
    channel_of: impl Fn(&ShowId) -> String + Send + 'static,
) -> (EventFeed, mpsc::Receiver<FeedItem>) {
    let asked = Arc::new(Asked::default());
    let requests = asked.clone();
    let (out, rx) = mpsc::channel(FEED_QUEUE);
    tokio::spawn(async move {
        let mut channels: HashMap<String, ShowId> = HashMap::new();
        let mut first = true;
        let mut retry = Retry::default();
        // The feed lives as long as someone reads it.
        while !out.is_closed() {
            let pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    retry.failed("cannot subscribe", e.to_string()).await;
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            let mut ok = true;
            for channel in channels.keys() {
                if sink.subscribe(channel).await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok && !first && out.send(FeedItem::Reconnected).await.is_err() {
                return;
            }
            if ok {
                retry.succeeded();
            }
            first = false;
            while ok {
                tokio::select! {
                    () = out.closed() => return,
                    changes = asked.take() => {
                        // After a failed call the rest only update the map: the connection
                        // is made again and subscribes to every channel in it.
                        for (show, want) in changes {
                            let change = change(&mut channels, &show, want, &channel_of);
                            if ok {
                                ok = match change {
                                    Some(Change::Subscribe(channel)) => {
                                        sink.subscribe(&channel).await.is_ok()
                                    }
                                    Some(Change::Unsubscribe(channel)) => {
                                        sink.unsubscribe(&channel).await.is_ok()
                                    }
                                    None => true,
                                };
                            }
                        }
                    }
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let channel = msg.get_channel_name();
                        let Some(item) = event(&channels, channel, msg.get_payload_bytes()) else {
                            continue;
                        };
                        if out.send(item).await.is_err() {
                            return;
                        }
                    }
                }
            }
            retry
                .failed("subscription lost", "connection closed".into())
                .await;
        }
    });
    (EventFeed { asked: requests }, rx)
}

/// The sharded pub/sub feed of a Redis Cluster (see the module documentation).
pub(super) fn start_cluster(
    seeds: Vec<String>,
    channel_of: impl Fn(&ShowId) -> String + Send + 'static,
) -> (EventFeed, mpsc::Receiver<FeedItem>) {
    let asked = Arc::new(Asked::default());
    let requests = asked.clone();
    let (out, rx) = mpsc::channel(FEED_QUEUE);
    // The crate hands pushes over synchronously and must not block: beyond FEED_QUEUE they are
    // dropped, and the drop is reported as a reconnection so the receiver repairs from history.
    let (push_tx, mut pushes) = mpsc::channel::<PushInfo>(FEED_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let dropped = overflow.clone();
    let push_sender = move |info: PushInfo| {
        if push_tx.try_send(info).is_err() {
            dropped.store(true, Ordering::Relaxed);
        }
        Ok::<(), ()>(())
    };
    tokio::spawn(async move {
        let client = match super::cluster_builder(&seeds)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_sender)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "event feed: bad Redis Cluster configuration");
                return;
            }
        };
        let mut retry = Retry::default();
        let conn = loop {
            match client.get_async_connection().await {
                Ok(c) => {
                    retry.succeeded();
                    break c;
                }
                Err(e) => {
                    retry
                        .failed("cannot reach the cluster", e.to_string())
                        .await
                }
            }
        };
        // Subscribing waits for the owning master; a slow one must not hold up the others'
        // messages, so each subscription runs on its own until it is confirmed.
        let subscribe = |channel: String| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                let mut retry = Retry::default();
                while let Err(e) = conn.ssubscribe(&channel).await {
                    retry.failed("cannot subscribe", e.to_string()).await;
                }
                retry.succeeded();
            });
        };
        // Best effort: should it fail, the channel is no longer followed here anyway (its
        // messages are passed over), and the connection forgets it when it reconnects.
        let unsubscribe = |channel: String| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.sunsubscribe(&channel).await {
                    tracing::debug!(error = %e, "event feed: cannot unsubscribe");
                }
            });
        };
        let mut channels: HashMap<String, ShowId> = HashMap::new();
        // Channels newly watched whose first confirmation is still to come: that confirmation
        // is not a resubscription.
        let mut fresh: HashSet<String> = HashSet::new();
        // When to report the resubscriptions confirmed so far.
        let mut report_at: Option<tokio::time::Instant> = None;
        loop {
            let settled = async {
                match report_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let item = tokio::select! {
                () = settled => {
                    report_at = None;
                    Some(FeedItem::Reconnected)
                }
                () = out.closed() => return,
                changes = asked.take() => {
                    for (show, want) in changes {
                        match change(&mut channels, &show, want, &channel_of) {
                            Some(Change::Subscribe(channel)) => {
                                fresh.insert(channel.clone());
                                subscribe(channel);
                            }
                            Some(Change::Unsubscribe(channel)) => {
                                fresh.remove(&channel);
                                unsubscribe(channel);
                            }
                            None => {}
                        }
                    }
                    None
                }
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    match push.kind {
                        PushKind::SMessage => smessage(&channels, push.data),
                        PushKind::Disconnection => {
                            tracing::warn!("event feed: a cluster node connection dropped");
                            None
                        }
                        // Sent by a master that no longer owns the slot (failover, resharding).
                        PushKind::SUnsubscribe => {
                            let channel = push.data.first().and_then(text);
                            if let Some(channel) = channel.filter(|c| channels.contains_key(c)) {
                                subscribe(channel);
                            }
                            None
                        }
                        PushKind::SSubscribe => {
                            let channel = push.data.first().and_then(text).unwrap_or_default();
                            if !fresh.remove(&channel) && report_at.is_none() {
                                report_at =
                                    Some(tokio::time::Instant::now() + RESUBSCRIBE_SETTLE);
                            }
                            None
                        }
                        _ => None,
                    }
                }
            };
            if let Some(item) = item
                && out.send(item).await.is_err()
            {
                return;
            }
            if overflow.swap(false, Ordering::Relaxed) {
                tracing::warn!("event feed: queue full, events dropped; repairing from history");
                if out.send(FeedItem::Reconnected).await.is_err() {
                    return;
                }
            }
        }
    });
    (EventFeed { asked: requests }, rx)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// What a request changes on the connection.
enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

/// Follows a show from now on, or no longer: the channel to subscribe to (unless it was
/// followed already) or to unsubscribe from (unless it was not followed).
fn change(
    channels: &mut HashMap<String, ShowId>,
    show: &ShowId,
    want: Want,
    channel_of: &impl Fn(&ShowId) -> String,
) -> Option<Change> {
    match want {
        Want::Watch => {
            let channel = channel_of(show);
            match channels.entry(channel.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(show.clone());
                    Some(Change::Subscribe(channel))
                }
                Entry::Occupied(_) => None,
            }
        }
        Want::Unwatch => {
            let channel = channel_of(show);
            channels
                .remove(&channel)
                .map(|_| Change::Unsubscribe(channel))
        }
    }
}

/// An `smessage` push: `[channel, payload]`.
fn smessage(channels: &HashMap<String, ShowId>, data: Vec<Value>) -> Option<FeedItem> {
    let [channel, Value::BulkString(payload)] = <[Value; 2]>::try_from(data).ok()? else {
        return None;
    };
    event(channels, &text(&channel)?, &payload)
}

/// The event a message on `channel` carries, if that is a followed show's channel; an unreadable
/// one is logged and passed over (the receiver repairs from history).
fn event(channels: &HashMap<String, ShowId>, channel: &str, payload: &[u8]) -> Option<FeedItem> {
    let show = channels.get(channel)?;
    match serde_json::from_slice::<SequencedEvent>(payload) {
        Ok(ev) => Some(FeedItem::Event(show.clone(), ev)),
        Err(e) => {
            tracing::error!(error = %e, "event feed: unreadable event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(n: usize) -> ShowId {
        ShowId::parse(format!("s{n}")).unwrap()
    }

    /// Asks pile up while the subscriber is busy (a hung Redis): they hold one entry per show,
    /// the last ask of each, however many there were.
    #[tokio::test]
    async fn asks_coalesce_per_show_while_the_subscriber_is_busy() {
        let asked = Asked::default();
        for round in 0..10_000 {
            for n in 0..3 {
                asked.ask(&show(n), Want::Watch);
                if round % 2 == 0 || n == 1 {
                    asked.ask(&show(n), Want::Unwatch);
                }
            }
        }
        assert_eq!(asked.changes.lock().unwrap().len(), 3);
        let taken = asked.take().await;
        assert_eq!(taken.len(), 3);
        assert_eq!(taken[&show(0)], Want::Watch);
        assert_eq!(taken[&show(1)], Want::Unwatch);
        assert_eq!(taken[&show(2)], Want::Watch);
        // Nothing left; a later ask wakes the next wait.
        assert!(asked.changes.lock().unwrap().is_empty());
        asked.ask(&show(7), Want::Watch);
        assert_eq!(asked.take().await.len(), 1);
    }
}
