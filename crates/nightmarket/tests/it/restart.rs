//! Restart: kill -9 the server mid-show, start it again on the same data directory; counters,
//! claims, sequence and idempotency are exactly as before.

use crate::support::{ChildServer, Client, Market, get, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_show_and_restarted_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = ChildServer::start(env!("CARGO_BIN_EXE_nightmarket"), dir.path())
        .await
        .unwrap();
    let m = Market::create(first.addr, &[250_000, 45_000], 20, 5, true).await;
    let mut seller = m.pinned_seller(0).await;
    seller
        .command(json!({"type": "start_flash", "product_id": m.product(0), "price": 200_000, "duration_s": 600, "quantity_cap": 15}), "flash")
        .await
        .unwrap();

    let mut accepted = 0;
    for b in 0..4 {
        let mut v = Client::connect(
            m.addr,
            &m.show,
            &token(Role::Viewer, &format!("b{b}")),
            None,
        )
        .await
        .unwrap();
        for n in 0..2 {
            let r = v
                .claim(&format!("b{b}-{n}"), m.product(0), 2, 200_000)
                .await;
            if r.outcome == ClaimOutcomeKind::Accepted {
                accepted += r.quantity.unwrap();
            }
        }
        if b == 0 {
            let mut cancel = v;
            cancel
                .send(json!({"type": "cancel", "claim_id": "b0-0"}))
                .await;
            cancel
                .until(|msg| matches!(msg, ServerMessage::CancelResult(_)).then_some(()))
                .await;
            accepted -= 2;
        }
    }
    assert_eq!(accepted, 14, "16 asked, 2 given back, under the cap of 15");
    let mut b1 = Client::connect(m.addr, &m.show, &token(Role::Viewer, "b1"), None)
        .await
        .unwrap();
    let before = b1.snapshot().await;
    let (_, show_before) = get(m.addr, &format!("/api/shows/{}", m.show), None).await;

    first.kill().await;

    let second = ChildServer::start(env!("CARGO_BIN_EXE_nightmarket"), dir.path())
        .await
        .unwrap();
    let show_after = crate::support::get_ok(second.addr, &format!("/api/shows/{}", m.show)).await;
    assert_eq!(show_after["stock"], show_before["stock"]);
    assert_eq!(show_after["status"], "live");
    assert_eq!(show_after["seq"], show_before["seq"]);

    let mut b1 = Client::connect(second.addr, &m.show, &token(Role::Viewer, "b1"), None)
        .await
        .unwrap();
    let after = b1.snapshot().await;
    assert_eq!(after.seq, before.seq);
    assert_eq!(after.lineup, before.lineup);
    assert_eq!(after.my_claims, before.my_claims);
    assert_eq!(after.pinned, before.pinned);
    assert_eq!(
        after.flash, before.flash,
        "the flash, its cap and units sold survive"
    );
    assert_eq!(after.price, Some(200_000));

    // The same claim id retried after the crash is a duplicate, not a second sale.
    let retry = b1.claim("b1-0", m.product(0), 2, 200_000).await;
    assert_eq!(retry.outcome, ClaimOutcomeKind::Duplicate);
    // The buyer limit still counts what b1 holds: 4 of 5.
    let r = b1.claim("b1-new", m.product(0), 2, 200_000).await;
    assert_eq!(r.limit_left, Some(1), "{r:?}");
    // The flash cap still counts what was sold before the crash: 1 of 15 left.
    let mut b5 = Client::connect(second.addr, &m.show, &token(Role::Viewer, "b5"), None)
        .await
        .unwrap();
    let r = b5.claim("b5-new", m.product(0), 2, 200_000).await;
    assert_eq!(r.available, Some(1), "{r:?}");
    let r = b5.claim("b5-new2", m.product(0), 1, 200_000).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
    second.kill().await;
}

/// `nightmarket_shows_loaded` as `/metrics` reports it.
async fn shows_loaded(addr: std::net::SocketAddr) -> u64 {
    crate::support::gauge(addr, "nightmarket_shows_loaded").await
}

/// A restart loads the shows still open and leaves the closed ones on disk until someone asks
/// for one: a viewer joining a closed show loads it, with its final stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_open_shows_and_closed_ones_on_demand() {
    let server = crate::support::TestServer::start(|_| {}).await;
    let open = Market::create(server.addr, &[250_000], 10, 5, true).await;
    let closed = Market::create(server.addr, &[45_000], 20, 5, true).await;
    closed.close().await;
    assert_eq!(shows_loaded(server.addr).await, 2);

    let dir = server.stop_keep_dir().await;
    let clock = nightmarket_server::clock::ManualClock::new(crate::support::now_secs() * 1000);
    let server = crate::support::TestServer::start_clocked(dir, clock, |_| {}).await;
    assert_eq!(shows_loaded(server.addr).await, 1, "only the open show");
    let (status, body) = get(server.addr, &format!("/api/shows/{}", open.show), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("live")));

    let mut viewer = Client::connect(server.addr, &closed.show, &token(Role::Viewer, "b1"), None)
        .await
        .unwrap();
    let snap = viewer.snapshot().await;
    assert_eq!(snap.show.status, "closed");
    assert_eq!(snap.lineup[0].left, 20, "its final stock, from the journal");
    assert_eq!(shows_loaded(server.addr).await, 2, "loaded when asked for");
    server.shutdown().await;
}
