//! Resume: a viewer that drops and reconnects with its last sequence gets exactly what it
//! missed; one whose sequence history no longer reaches gets a fresh snapshot.

use crate::support::{Client, Market, TestServer, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::{ServerMessage, ShowEvent};
use serde_json::json;

fn snapshot_seq(m: &ServerMessage) -> Option<u64> {
    match m {
        ServerMessage::Snapshot(s) => Some(s.seq),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_gets_exactly_the_missed_events() {
    let server = TestServer::start(|_| {}).await;
    let m = Market::create(server.addr, &[120_000, 80_000], 10, 2, true).await;
    let mut seller = m.seller_client().await;
    let viewer_token = token(Role::Viewer, "khach-1");

    let mut viewer = Client::connect(m.addr, &m.show, &viewer_token, None)
        .await
        .unwrap();
    let s0 = viewer.until(snapshot_seq).await;
    let pinned = seller
        .command(json!({"type": "pin", "product_id": m.product(0)}), "p0")
        .await
        .unwrap();
    let last = viewer
        .until(|msg| match msg {
            ServerMessage::Event(e) if e.seq == pinned => Some(e.seq),
            _ => None,
        })
        .await;
    assert_eq!(last, s0 + 1);
    viewer.close().await;

    // Missed while away: a flash, a pin of another product (ends the flash), an unpin.
    seller
        .command(json!({"type": "start_flash", "product_id": m.product(0), "price": 99_000, "duration_s": 60, "countdown_s": 5}), "f")
        .await
        .unwrap();
    seller
        .command(json!({"type": "pin", "product_id": m.product(1)}), "p1")
        .await
        .unwrap();
    let newest = seller.command(json!({"type": "unpin"}), "u").await.unwrap();

    let mut back = Client::connect(m.addr, &m.show, &viewer_token, Some(last))
        .await
        .unwrap();
    let hello = back
        .until(|msg| match msg {
            ServerMessage::Hello(h) => Some(h.clone()),
            _ => None,
        })
        .await;
    assert_eq!(hello.start, "resume");
    let mut kinds = Vec::new();
    while kinds.len() < (newest - last) as usize {
        let msg = back.next().await.unwrap();
        assert!(
            snapshot_seq(&msg).is_none(),
            "resume must not send a snapshot"
        );
        if let ServerMessage::Event(e) = msg {
            kinds.push((e.seq, e.event));
        }
    }
    let seqs: Vec<u64> = kinds.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        ((last + 1)..=newest).collect::<Vec<_>>(),
        "exactly the missed events, in order"
    );
    assert!(matches!(kinds[0].1, ShowEvent::FlashStarted(_)));
    assert!(matches!(kinds[1].1, ShowEvent::FlashEnded { ref reason, .. } if reason == "unpinned"));
    assert!(matches!(kinds[2].1, ShowEvent::Pinned { .. }));
    assert!(matches!(kinds[3].1, ShowEvent::Unpinned { .. }));

    // Live events keep flowing after the replay, without a gap.
    let next = seller
        .command(json!({"type": "pin", "product_id": m.product(0)}), "p2")
        .await
        .unwrap();
    back.until(|msg| match msg {
        ServerMessage::Event(e) if e.seq == next => Some(()),
        _ => None,
    })
    .await;
    crate::support::assert_contiguous(&back.event_seqs()).unwrap();

    // Already up to date: resume with nothing to replay.
    let mut current = Client::connect(m.addr, &m.show, &viewer_token, Some(next))
        .await
        .unwrap();
    let hello = current
        .until(|msg| match msg {
            ServerMessage::Hello(h) => Some(h.start.clone()),
            _ => None,
        })
        .await;
    assert_eq!(hello, "resume");

    // A sequence from the future (e.g. another deployment): a snapshot at the current seq.
    let mut future = Client::connect(m.addr, &m.show, &viewer_token, Some(next + 100))
        .await
        .unwrap();
    assert_eq!(future.until(snapshot_seq).await, next);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_that_no_longer_reaches_back_gives_a_snapshot() {
    let server = TestServer::start(|c| c.limits.event_history = 3).await;
    let m = Market::create(server.addr, &[120_000, 80_000], 10, 2, true).await;
    let mut seller = m.seller_client().await;
    m.pin_back_and_forth(&mut seller, 6).await;
    let mut viewer = Client::connect(m.addr, &m.show, &token(Role::Viewer, "khach-2"), Some(1))
        .await
        .unwrap();
    let snap = viewer.snapshot().await;
    assert_eq!(snap.seq, 7);
    assert_eq!(snap.pinned.as_deref(), Some(m.product(1)));
    server.shutdown().await;
}
