//! The show event feed across nodes: every event a command script appends is also published on
//! the show's channel; each node subscribes to the channels of the shows its viewers watch.
//!
//! Pub/sub may lose messages (a dropped connection, a Redis restart). The feed therefore
//! reports every reconnection, and the receiver repairs any gap from the show's event history
//! by sequence number; a lost message costs a little latency, never an event.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use nightmarket_domain::{SequencedEvent, ShowId};
use tokio::sync::mpsc;

/// Events waiting for the server to take them; beyond this the subscriber stops reading and
/// Redis buffers (bounded by its `client-output-buffer-limit pubsub`).
const FEED_QUEUE: usize = 4096;
/// Pause before reconnecting after the subscription connection failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub enum FeedItem {
    Event(ShowId, SequencedEvent),
    /// The subscription was re-established: events may have been missed meanwhile.
    Reconnected,
}

/// Asks the subscriber to follow more shows.
#[derive(Clone)]
pub struct EventFeed {
    watch: mpsc::UnboundedSender<ShowId>,
}

impl EventFeed {
    /// Follows a show's channel from now on (idempotent).
    pub fn watch(&self, show: &ShowId) {
        let _ = self.watch.send(show.clone());
    }
}

pub(super) fn start(
    client: redis::Client,
    channel_of: impl Fn(&ShowId) -> String + Send + 'static,
) -> (EventFeed, mpsc::Receiver<FeedItem>) {
    let (watch_tx, mut watch_rx) = mpsc::unbounded_channel::<ShowId>();
    let (out, rx) = mpsc::channel(FEED_QUEUE);
    tokio::spawn(async move {
        let mut channels: HashMap<String, ShowId> = HashMap::new();
        let mut first = true;
        loop {
            let pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "event feed: cannot subscribe; retrying");
                    tokio::time::sleep(RECONNECT_DELAY).await;
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
            first = false;
            while ok {
                tokio::select! {
                    show = watch_rx.recv() => {
                        let Some(show) = show else { return };
                        let channel = channel_of(&show);
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            channels.entry(channel.clone())
                        {
                            slot.insert(show);
                            ok = sink.subscribe(&channel).await.is_ok();
                        }
                    }
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let Some(show) = channels.get(msg.get_channel_name()) else { continue };
                        match serde_json::from_slice::<SequencedEvent>(msg.get_payload_bytes()) {
                            Ok(ev) => {
                                if out.send(FeedItem::Event(show.clone(), ev)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "event feed: unreadable event"),
                        }
                    }
                }
            }
            tracing::warn!("event feed: subscription lost; reconnecting");
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
    (EventFeed { watch: watch_tx }, rx)
}
