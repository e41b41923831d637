//! A viewer that stops reading is cut off at its bound; the others are unaffected. A viewer
//! that still reads but falls behind is caught up to the newest state and stays connected.

use std::time::Duration;

use crate::support::{
    Client, Ended, Market, TestServer, assert_bridged, assert_contiguous, http_text, queue_drops,
    token,
};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::ServerMessage;
use serde_json::json;

const EVENTS: usize = 1500;

/// Events the seller may be ahead of the reading viewer in the cut-off test: half of its
/// `event_buffer`.
const AHEAD: u64 = 16;

/// A server with small socket buffers and a 32-event `event_buffer`, a live show, and a viewer
/// `buyer` whose socket holds little, connected.
async fn small_buffers(write_timeout_ms: u64, buyer: &str) -> (TestServer, Market, Client) {
    let server = TestServer::start(move |c| {
        c.limits.event_buffer = 32;
        c.limits.write_timeout_ms = write_timeout_ms;
        c.limits.socket_send_buffer = 4096;
        // The seller here is a script pinning as fast as it can.
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let m = Market::create(server.addr, &[100_000, 50_000], 10, 2, true).await;
    let viewer = Client::connect_with(
        m.addr,
        &m.show,
        &token(Role::Viewer, buyer),
        None,
        Some(4096),
    )
    .await
    .unwrap();
    (server, m, viewer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_is_cut_off_and_others_are_not() {
    let (server, m, mut slow) = small_buffers(1000, "slow").await;
    let first = slow.snapshot().await.seq;
    let mut fine = Client::connect(m.addr, &m.show, &token(Role::Viewer, "fine"), None)
        .await
        .unwrap();
    // The reading viewer tells how far it has read: the seller keeps within `AHEAD` events of
    // it, as a seller's pace is within what viewers read (a script pins far faster than any
    // seller, and faster than this test's client parses), so a catch-up here could only come
    // from the slow viewer's trouble.
    let (progress, mut read_to) = tokio::sync::watch::channel(first);
    let reader = tokio::spawn(async move {
        let target = first + EVENTS as u64;
        fine.until(|msg| match msg {
            ServerMessage::Event(e) => {
                progress.send_replace(e.seq);
                (e.seq == target).then_some(())
            }
            _ => None,
        })
        .await;
        fine
    });

    // The slow viewer reads nothing while the seller pins back and forth.
    let mut seller = m.seller_client().await;
    for i in 0..EVENTS {
        let ahead = first + i as u64;
        tokio::time::timeout(
            Duration::from_secs(60),
            read_to.wait_for(|&seq| seq + AHEAD >= ahead),
        )
        .await
        .expect("the reading viewer keeps reading")
        .unwrap();
        m.pin_back_and_forth_from(&mut seller, i, 1).await;
    }
    let fine = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_contiguous(&fine.event_seqs()).unwrap();
    assert_eq!(
        fine.event_seqs().len(),
        EVENTS,
        "the reading viewer got every event"
    );

    // Once the server has given up on the slow one (a drop counted), read what it was sent.
    crate::support::eventually("the slow viewer dropped", || async {
        let (_, metrics) = http_text(m.addr, "/metrics").await;
        (queue_drops(&metrics) >= 1).then_some(()).ok_or(metrics)
    })
    .await;
    let ended = slow.drain_to_end().await;
    let got = slow.event_seqs();
    assert!(
        got.len() < EVENTS,
        "the slow viewer was cut off, not buffered without bound"
    );
    // What reached it before the cut followed on, or skipped ahead only by a catch-up.
    assert_bridged(&slow.seen).unwrap();
    assert!(
        matches!(
            ended,
            Ended::Close(Some(4000)) | Ended::Close(Some(4001)) | Ended::Eof | Ended::Error(_)
        ),
        "{ended:?}"
    );
    let (_, metrics) = http_text(m.addr, "/metrics").await;
    let drops = queue_drops(&metrics);
    assert!(drops >= 1, "{metrics}");
    // The fast viewer got every event: the fan-out lag was sampled (once per shard walk).
    assert!(
        crate::support::histogram_count(&metrics, "nightmarket_fanout_lag_seconds")
            >= (EVENTS / 64) as u64,
        "{metrics}"
    );

    // It can come back with its last sequence and catch up.
    let last = got.last().copied().unwrap_or(first);
    let mut back = Client::connect(m.addr, &m.show, &token(Role::Viewer, "slow"), Some(last))
        .await
        .unwrap();
    // The missed events do not fit its socket at once: it may be caught up to the newest
    // state rather than sent every one of them.
    let seq = back
        .until(|msg| match msg {
            ServerMessage::Snapshot(s) => Some(s.seq),
            ServerMessage::Event(e) if e.seq == first + EVENTS as u64 => Some(e.seq),
            ServerMessage::CatchUp(c) if c.seq == first + EVENTS as u64 => Some(c.seq),
            _ => None,
        })
        .await;
    assert_eq!(seq, first + EVENTS as u64);
    server.shutdown().await;
}

/// Pins the seller sends in the catch-up test: far more than `event_buffer`.
const BEHIND_EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_falls_behind_is_caught_up_not_dropped() {
    // A write timeout far longer than the test: the viewer below pauses, it has not stopped
    // reading.
    let (server, m, mut behind) = small_buffers(120_000, "behind").await;
    let first = behind.snapshot().await.seq;

    // It reads nothing while the seller pins back and forth: far more events than its socket
    // and `event_buffer` hold.
    let mut seller = m.seller_client().await;
    m.pin_back_and_forth(&mut seller, BEHIND_EVENTS).await;
    let newest = first + BEHIND_EVENTS as u64;

    // Then it reads again: a catch-up to the newest state, then only the events after it.
    let caught = tokio::time::timeout(
        Duration::from_secs(60),
        behind.until(|msg| match msg {
            ServerMessage::CatchUp(c) => Some(c.clone()),
            _ => None,
        }),
    )
    .await
    .expect("a catch-up within the deadline");
    assert!(caught.seq > first && caught.seq <= newest, "{caught:?}");
    if caught.seq < newest {
        // The newest state comes as its event, or as a later catch-up to it.
        behind
            .until(|msg| match msg {
                ServerMessage::Event(e) if e.seq == newest => Some(()),
                ServerMessage::CatchUp(c) if c.seq == newest => Some(()),
                _ => None,
            })
            .await;
    }
    // After it, events follow on by one, or jump just past a later catch-up: a shard that
    // fell behind the script's burst sends one too.
    assert_bridged(&behind.seen).unwrap();
    let after: Vec<u64> = behind
        .event_seqs()
        .into_iter()
        .filter(|s| *s > caught.seq)
        .collect();
    if let Some(&next) = after.first() {
        assert!(next == caught.seq + 1 || behind.seen.iter().any(
            |m| matches!(m, ServerMessage::CatchUp(c) if c.seq > caught.seq && c.seq + 1 == next)
        ), "{after:?}");
    }
    let before: Vec<u64> = behind
        .event_seqs()
        .into_iter()
        .filter(|s| *s <= caught.seq)
        .collect();
    assert!(
        before.len() < BEHIND_EVENTS,
        "the catch-up stood in for events it was not sent"
    );
    // The newest pin was product 1 (pins alternate from product 0).
    assert_eq!(caught.status, "live");
    if caught.seq == newest {
        assert_eq!(
            caught.pinned.as_deref(),
            Some(m.product((BEHIND_EVENTS - 1) % 2))
        );
    }

    // Still connected: the next event reaches it, and nobody was closed.
    seller
        .command(json!({"type": "unpin"}), "last")
        .await
        .unwrap();
    behind
        .until(|msg| match msg {
            ServerMessage::Event(e) if e.seq == newest + 1 => Some(()),
            _ => None,
        })
        .await;
    let (_, metrics) = http_text(m.addr, "/metrics").await;
    let drops = queue_drops(&metrics);
    assert_eq!(drops, 0, "{metrics}");
    server.shutdown().await;
}
