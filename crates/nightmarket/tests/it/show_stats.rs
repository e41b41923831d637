//! Post-show statistics end to end: buyers over WebSocket are refused for several reasons and
//! viewers come and go; each node writes what it counted to the store, which reports claims
//! refused per reason and the show's peak viewers. On SQLite and PostgreSQL, at shutdown, and
//! across two nodes.

use crate::support::{eventually, postgres_url, store_of};
use std::time::Duration;

use crate::support::{ChildServer, Client, Market, TestServer, redis_url};
use nightmarket_domain::ShowId;
use nightmarket_server::clock::ManualClock;
use nightmarket_store::Store;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

/// 2026-11-27 20:30 in Hanoi, a whole minute.
const T0: i64 = 1_795_786_200_000;
const MINUTE: i64 = 60_000;
const LIST: i64 = 250_000;
/// Short enough that a test waits little for the store to catch up.
const FLUSH_MS: u64 = 50;
const TICK_MS: u64 = 20;

fn totals(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect()
}

/// Waits until the store reports exactly `refusals` and `peak` for `show`.
async fn wait_for_figures(store: &Store, show: &str, refusals: &[(&str, u64)], peak: u64) {
    let show = show_id(show);
    let want = totals(refusals);
    let what = format!("the store reporting refusals {want:?} and peak {peak}");
    eventually(what, || async {
        let got = (
            store.show_refusals(&show).await.unwrap(),
            store.show_peak_viewers(&show).await.unwrap(),
        );
        (got == (want.clone(), peak))
            .then_some(())
            .ok_or(format!("{got:?}"))
    })
    .await;
}

fn show_id(id: &str) -> ShowId {
    ShowId::parse(id).unwrap()
}

async fn refused(c: &mut Client, claim: &str, product: &str, price: i64, want: ErrorCode) {
    let r = c.claim(claim, product, 1, price).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Refused, "{claim}: {r:?}");
    assert_eq!(r.reason, Some(want), "{claim}: {r:?}");
}

async fn accepted(c: &mut Client, claim: &str, product: &str, price: i64) {
    let r = c.claim(claim, product, 1, price).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{claim}: {r:?}");
}

/// Four viewers; claims refused as not pinned, stale price, over the limit and sold out; the
/// store reports each exactly. A minute later a fifth viewer joins: the peak is five, not the
/// two minutes added up.
async fn refusals_and_peak_viewers(database_url: Option<String>) {
    let clock = ManualClock::new(T0);
    let url = database_url.clone();
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.market.stats_flush_ms = FLUSH_MS;
        c.limits.stock_tick_ms = TICK_MS;
        if let Some(url) = url {
            c.database_url = url;
        }
    })
    .await;
    let store = store_of(server.dir.path(), database_url.as_deref()).await;
    // Two units, one per buyer.
    let m = Market::create(server.addr, &[LIST], 2, 1, true).await;
    let p = m.product(0).to_owned();
    let mut viewers = Vec::new();
    for v in 0..4 {
        viewers.push(Client::viewer(m.addr, &m.show, &format!("buyer-{v}")).await);
    }

    refused(&mut viewers[0], "early-0", &p, LIST, ErrorCode::NotPinned).await;
    refused(&mut viewers[1], "early-1", &p, LIST, ErrorCode::NotPinned).await;
    let _seller = m.pinned_seller(0).await;
    refused(
        &mut viewers[0],
        "cheap",
        &p,
        LIST - 1_000,
        ErrorCode::StalePrice,
    )
    .await;
    accepted(&mut viewers[0], "first", &p, LIST).await;
    refused(&mut viewers[0], "again", &p, LIST, ErrorCode::LimitExceeded).await;
    accepted(&mut viewers[1], "second", &p, LIST).await;
    refused(&mut viewers[2], "late-2", &p, LIST, ErrorCode::SoldOut).await;
    refused(&mut viewers[3], "late-3", &p, LIST, ErrorCode::SoldOut).await;

    let expected = [
        ("limit_exceeded", 1),
        ("not_pinned", 2),
        ("sold_out", 2),
        ("stale_price", 1),
    ];
    wait_for_figures(&store, &m.show, &expected, 4).await;

    clock.advance(MINUTE);
    viewers.push(Client::viewer(m.addr, &m.show, "buyer-4").await);
    wait_for_figures(&store, &m.show, &expected, 5).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_peak_viewers_on_sqlite() {
    refusals_and_peak_viewers(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_peak_viewers_on_postgres() {
    refusals_and_peak_viewers(Some(postgres_url().await)).await;
}

/// `nightmarket_show_stats_held` of the server at `addr`.
async fn stats_held(addr: std::net::SocketAddr) -> u64 {
    crate::support::gauge(addr, "nightmarket_show_stats_held").await
}

/// A closed show's counters leave the node's memory once the show has left it and the store has
/// their figures; a viewer who loads the show again and is refused counts on top of the stored
/// totals, not from zero below them.
async fn counters_of_a_closed_show_leave_and_counting_again_adds_up(database_url: Option<String>) {
    let clock = ManualClock::new(T0);
    let url = database_url.clone();
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.market.stats_flush_ms = FLUSH_MS;
        c.limits.stock_tick_ms = TICK_MS;
        // No settlement: it would release the closed show, which could then not be loaded again.
        c.orders.in_serve = false;
        if let Some(url) = url {
            c.database_url = url;
        }
    })
    .await;
    let store = store_of(server.dir.path(), database_url.as_deref()).await;
    let m = Market::create(server.addr, &[LIST], 10, 1, true).await;
    let p = m.product(0).to_owned();
    let mut a = Client::viewer(m.addr, &m.show, "buyer-a").await;
    refused(&mut a, "early", &p, LIST, ErrorCode::NotPinned).await;
    m.close().await;
    refused(&mut a, "late", &p, LIST, ErrorCode::ShowNotLive).await;
    let first = [("not_pinned", 1), ("show_not_live", 1)];
    wait_for_figures(&store, &m.show, &first, 1).await;
    assert_eq!(
        stats_held(m.addr).await,
        1,
        "a show served keeps its counters"
    );

    // Nobody watches the closed show: it leaves memory once kept for the bound, and its
    // counters at the next flush.
    a.close().await;
    clock.advance(nightmarket_server::live::CLOSED_SHOW_KEPT_MS);
    eventually("the closed show's counters leaving memory", || async {
        let held = stats_held(m.addr).await;
        (held == 0).then_some(()).ok_or(format!("{held} held"))
    })
    .await;

    // Loaded again by a viewer, and refused twice more: 3 in all.
    let mut b = Client::viewer(m.addr, &m.show, "buyer-b").await;
    refused(&mut b, "again-1", &p, LIST, ErrorCode::ShowNotLive).await;
    refused(&mut b, "again-2", &p, LIST, ErrorCode::ShowNotLive).await;
    wait_for_figures(
        &store,
        &m.show,
        &[("not_pinned", 1), ("show_not_live", 3)],
        1,
    )
    .await;
    assert_eq!(stats_held(m.addr).await, 1, "served again");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_of_a_closed_show_leave_and_counting_again_adds_up_on_sqlite() {
    counters_of_a_closed_show_leave_and_counting_again_adds_up(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_of_a_closed_show_leave_and_counting_again_adds_up_on_postgres() {
    counters_of_a_closed_show_leave_and_counting_again_adds_up(Some(postgres_url().await)).await;
}

/// With a flush interval far longer than the test, the figures reach the store only through
/// the last flush at shutdown, after the sessions ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_are_written_at_shutdown() {
    let server =
        TestServer::start_clocked(tempfile::tempdir().unwrap(), ManualClock::new(T0), |c| {
            c.market.stats_flush_ms = nightmarket_server::config::MAX_STATS_FLUSH_MS;
            c.limits.stock_tick_ms = TICK_MS;
        })
        .await;
    let m = Market::create(server.addr, &[LIST], 10, 1, true).await;
    let p = m.product(0).to_owned();
    let mut a = Client::viewer(m.addr, &m.show, "buyer-a").await;
    let mut b = Client::viewer(m.addr, &m.show, "buyer-b").await;
    refused(&mut a, "early", &p, LIST, ErrorCode::NotPinned).await;
    let _seller = m.pinned_seller(0).await;
    refused(&mut b, "cheap", &p, LIST - 1, ErrorCode::StalePrice).await;
    accepted(&mut a, "bought", &p, LIST).await;
    // A stock frame showing the sale comes from a refresh after it, and every refresh first
    // samples the viewers: both were watching by then.
    b.until(|msg| match msg {
        ServerMessage::Stock(s) if s.levels.iter().any(|l| l.product_id == p && l.left == 9) => {
            Some(())
        }
        _ => None,
    })
    .await;

    let store = store_of(server.dir.path(), None).await;
    let show = show_id(&m.show);
    assert!(store.show_refusals(&show).await.unwrap().is_empty());
    let dir = server.stop_keep_dir().await;
    let store = store_of(dir.path(), None).await;
    assert_eq!(
        store.show_refusals(&show).await.unwrap(),
        totals(&[("not_pinned", 1), ("stale_price", 1)])
    );
    assert_eq!(store.show_peak_viewers(&show).await.unwrap(), 2);
}

/// Two processes on one PostgreSQL and one Redis, viewers and refusals on both: the show's
/// figures add both nodes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_add_up() {
    let db = postgres_url().await;
    let redis = redis_url();
    let prefix = format!("st{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let flush = FLUSH_MS.to_string();
    let tick = TICK_MS.to_string();
    let env = [
        ("NIGHTMARKET_DATABASE_URL", db.as_str()),
        ("NIGHTMARKET_REDIS_URL", redis.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_MARKET_STATS_FLUSH_MS", flush.as_str()),
        ("NIGHTMARKET_LIMITS_STOCK_TICK_MS", tick.as_str()),
    ];
    let [(a, a_dir), (b, _b_dir)] = ChildServer::two(EXE, &env).await;
    let store = store_of(a_dir.path(), Some(&db)).await;
    let m = Market::create(a.addr, &[LIST], 10, 1, true).await;
    let p = m.product(0).to_owned();

    let mut on_a = Vec::new();
    for v in 0..3 {
        on_a.push(Client::viewer(a.addr, &m.show, &format!("a-{v}")).await);
    }
    let mut on_b = Vec::new();
    for v in 0..2 {
        on_b.push(Client::viewer(b.addr, &m.show, &format!("b-{v}")).await);
    }
    refused(&mut on_a[0], "a-early", &p, LIST, ErrorCode::NotPinned).await;
    refused(&mut on_b[0], "b-early", &p, LIST, ErrorCode::NotPinned).await;
    let _seller = m.pinned_seller(0).await;
    refused(&mut on_b[1], "b-cheap", &p, LIST - 1, ErrorCode::StalePrice).await;

    // Viewers only join, so whichever minute both nodes last sampled in holds all five.
    wait_for_figures(&store, &m.show, &[("not_pinned", 2), ("stale_price", 1)], 5).await;
    a.kill().await;
    b.kill().await;
}

/// A node restarted within a minute sees its viewers come back: that minute's figure is the
/// larger of the two processes' figures, not their sum. One viewer before the restart, two
/// after: the peak is two (three would be the restart counted as a second node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_within_a_minute_is_not_counted_twice() {
    let clock = ManualClock::new(T0 + 10_000);
    // The node's identity is its host and configured listen address; the tests bind their own
    // listener, so this address only names the node (the same before and after the restart).
    let tweak = |c: &mut nightmarket_server::config::Config| {
        c.listen = "127.0.0.1:47123".into();
        c.market.stats_flush_ms = FLUSH_MS;
        c.limits.stock_tick_ms = TICK_MS;
    };
    let server =
        TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), tweak).await;
    let m = Market::create(server.addr, &[LIST], 10, 1, true).await;
    let store = store_of(server.dir.path(), None).await;
    let before = Client::viewer(m.addr, &m.show, "buyer-a").await;
    wait_for_figures(&store, &m.show, &[], 1).await;
    before.close().await;
    let dir = server.stop_keep_dir().await;

    clock.advance(20_000);
    let server = TestServer::start_clocked(dir, clock.clone(), tweak).await;
    let _a = Client::viewer(server.addr, &m.show, "buyer-a").await;
    let _b = Client::viewer(server.addr, &m.show, "buyer-b").await;
    wait_for_figures(&store, &m.show, &[], 2).await;
    // Later flushes of the same minute do not add to it either: a window of several flushes.
    crate::support::quiet_for(Duration::from_millis(FLUSH_MS * 6)).await;
    assert_eq!(store.show_peak_viewers(&show_id(&m.show)).await.unwrap(), 2);
    server.shutdown().await;
}
