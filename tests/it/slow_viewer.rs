//! A viewer that stops reading is cut off at its bound; the others are unaffected.

use std::time::Duration;

use nightmarket_server::auth::Role;
use nightmarket_tests::{Client, Ended, Market, TestServer, assert_contiguous, http_text, token};
use nightmarket_wire::server::ServerMessage;

const EVENTS: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_is_cut_off_and_others_are_not() {
    let server = TestServer::start(|c| {
        c.limits.event_buffer = 32;
        c.limits.write_timeout_ms = 1000;
        c.limits.socket_send_buffer = 4096;
        // The seller here is a script pinning as fast as it can.
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let m = Market::create(server.addr, &[100_000, 50_000], 10, 2, true).await;
    let mut slow = Client::connect_with(
        m.addr,
        &m.show,
        &token(Role::Viewer, "slow"),
        None,
        Some(4096),
    )
    .await
    .unwrap();
    let first = slow.snapshot().await.seq;
    let mut fine = Client::connect(m.addr, &m.show, &token(Role::Viewer, "fine"), None)
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let target = first + EVENTS as u64;
        fine.until(|msg| match msg {
            ServerMessage::Event(e) if e.seq == target => Some(()),
            _ => None,
        })
        .await;
        fine
    });

    // The slow viewer reads nothing while the seller pins back and forth.
    m.pin_back_and_forth(EVENTS).await;
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
    assert_contiguous(&got).unwrap();
    assert!(
        matches!(
            ended,
            Ended::Close(Some(4000)) | Ended::Close(Some(4001)) | Ended::Eof | Ended::Error(_)
        ),
        "{ended:?}"
    );
    let (_, metrics) = http_text(m.addr, "/metrics").await;
    assert!(queue_drops(&metrics) >= 1, "{metrics}");
    // The fast viewer got every event: its fan-out lag was sampled (one frame in 64).
    assert!(
        nightmarket_tests::histogram_count(&metrics, "nightmarket_fanout_lag_seconds")
            >= (EVENTS / 64) as u64,
        "{metrics}"
    );

    // It can come back with its last sequence and catch up.
    let last = got.last().copied().unwrap_or(first);
    let mut back = Client::connect(m.addr, &m.show, &token(Role::Viewer, "slow"), Some(last))
        .await
        .unwrap();
    let seq = back
        .until(|msg| match msg {
            ServerMessage::Snapshot(s) => Some(s.seq),
            ServerMessage::Event(e) if e.seq == first + EVENTS as u64 => Some(e.seq),
            _ => None,
        })
        .await;
    assert_eq!(seq, first + EVENTS as u64);
    server.shutdown().await;
}

/// Viewers' queues dropped, summed over every reason.
fn queue_drops(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("nightmarket_queue_drops_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
