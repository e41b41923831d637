//! A show that settlement recorded and the inventory released: once its Redis keys have
//! expired, a restarted server lists it as closed and does not open it afresh (scheduled, with
//! full stock) in the inventory.

use std::time::Duration;

use crate::support::{Client, Market, TestServer, get_ok, redis_url, token};
use nightmarket_domain::{LogCursor, LogEntry, ShowId};
use nightmarket_inventory::{Inventory, InventoryError, RedisInventory};
use nightmarket_server::auth::Role;
use nightmarket_server::clock::ManualClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_show_stays_closed_across_a_restart() {
    let url = redis_url();
    let prefix = format!("it{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let tweak = |c: &mut nightmarket_server::config::Config| {
        c.redis_url = url.clone();
        c.redis_prefix = prefix.clone();
        // The test is the order service here. The server's own would settle the closed show
        // too and release it again with `keep_settled_ms`, racing the short expiry below.
        c.orders.in_serve = false;
    };
    let server = TestServer::start(tweak).await;
    let m = Market::create(server.addr, &[100_000], 10, 5, true).await;
    m.close().await;

    // The order service: the log up to the close marker, then release.
    let inv = RedisInventory::connect(&url, &prefix, 100).await.unwrap();
    let show = ShowId::parse(m.show.clone()).unwrap();
    let page = inv
        .claim_log(&show, &LogCursor::default(), 10)
        .await
        .unwrap();
    assert!(
        matches!(page.close(), Some(LogEntry::Close { final_stock, .. }) if final_stock[0].1 == 10),
        "{page:?}"
    );
    inv.release(&show, Duration::from_millis(1)).await.unwrap();
    let gone = || async {
        matches!(
            inv.claim_log(&show, &LogCursor::default(), 0).await,
            Err(InventoryError::UnknownShow(_))
        )
    };
    crate::support::eventually("the released keys expiring", || async {
        gone()
            .await
            .then_some(())
            .ok_or_else(|| "still there".to_owned())
    })
    .await;

    let dir = server.stop_keep_dir().await;
    let clock = ManualClock::new(crate::support::now_secs() * 1000);
    let server = TestServer::start_clocked(dir, clock, tweak).await;
    let body = get_ok(server.addr, &format!("/api/shows/{}", m.show)).await;
    assert_eq!(body["status"], "closed", "{body}");
    let _ = get_ok(server.addr, "/api/shows").await;
    // Watching it is refused rather than opening it again.
    let watch = Client::connect(server.addr, &m.show, &token(Role::Viewer, "b1"), None).await;
    assert!(watch.is_err(), "a released show is not served");
    assert!(gone().await, "nothing recreated the show's keys");
    server.shutdown().await;
}
