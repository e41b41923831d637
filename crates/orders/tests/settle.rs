//! Settlement end to end on the real claim log: the embedded pair (SQLite store, memory
//! inventory with its journal) and the distributed pair (PostgreSQL, Redis).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Env, Item, Kind, Model, T0, close, env, live_show, settle_all, small_batches, trade};
use nightmarket_domain::{BuyerId, OrderStatus, ShowId};
use nightmarket_domain::{ClaimDecision, ClaimId, ClaimRequest, Dong, LogCursor, Quantity};
use nightmarket_inventory::Command;
use nightmarket_orders::{SettlerLimits, Standing};
use nightmarket_store::testing::eventually;
use nightmarket_store::{SettlementState, ShowRow};

fn items() -> Vec<Item> {
    vec![
        Item {
            id: "p1",
            stock: 900,
            limit: 6,
            list: 120_000,
        },
        Item {
            id: "p2",
            stock: 2_000,
            limit: 3,
            list: 85_000,
        },
        Item {
            id: "p3",
            stock: 150,
            limit: 2,
            list: 250_000,
        },
    ]
}

/// The orders equal the model line for line, and totals equal the counters at the close.
async fn assert_orders_match(env: &Env, show: &ShowRow, model: &Model) {
    let lines = env.store.show_order_lines(&show.id).await.unwrap();
    let orders = env.store.show_orders(&show.id).await.unwrap();
    let mut got: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    let mut by_order: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for l in &lines {
        let buyer = l.order_id.rsplit('~').next().unwrap().to_owned();
        *got.entry((buyer, l.product_id.to_string(), l.unit_price))
            .or_default() += l.quantity;
        let o = by_order.entry(l.order_id.clone()).or_default();
        o.0 += l.quantity;
        o.1 += l.unit_price * l.quantity as i64;
        assert_eq!(
            l.list_price,
            show.lineup
                .iter()
                .find(|x| x.product.id == l.product_id)
                .unwrap()
                .product
                .list_price
                .get()
        );
    }
    assert_eq!(
        got, model.lines,
        "order lines equal the accepted claims net of cancels"
    );
    let buyers: Vec<String> = orders.iter().map(|o| o.buyer_id.to_string()).collect();
    let mut want = model.buyers();
    want.sort();
    want.dedup();
    assert_eq!(buyers, want, "one order per buyer with units");
    for o in &orders {
        assert_eq!(o.status, OrderStatus::PendingPayment);
        assert_eq!(
            o.id,
            nightmarket_domain::order::order_id(&show.id, &o.buyer_id)
        );
        let (units, total) = by_order[&o.id];
        assert_eq!((o.units, o.total), (units, total), "{o:?}");
        assert!(o.list_total >= o.total);
        assert_eq!(o.seller_id, show.seller_id);
    }
    // The counters at the close: allotted - left = units in orders, per product.
    let view = env.inv.stock(&show.id, 0).await.unwrap();
    for line in &show.lineup {
        let left = view
            .levels
            .iter()
            .find(|(p, _)| *p == line.product.id)
            .unwrap()
            .1;
        let ordered: u64 = lines
            .iter()
            .filter(|l| l.product_id == line.product.id)
            .map(|l| l.quantity)
            .sum();
        assert_eq!(u64::from(line.stock - left), ordered, "{}", line.product.id);
        assert_eq!(ordered, model.units_of(line.product.id.as_str()));
    }
    let s = env.store.settlement(&show.id).await.unwrap().unwrap();
    assert_eq!(s.state, SettlementState::Settled);
    assert_eq!((s.claims, s.cancels), (model.claims, model.cancels));
    assert_eq!(s.orders, orders.len() as u64);
    assert_eq!(s.units, model.units());
    assert_eq!(s.revenue, model.revenue());
}

async fn thousands_of_claims(kind: Kind) {
    let env = env(kind).await;
    let show = live_show(&env, "big", "htx-a", &items(), Some(("m1", "2026-11-27"))).await;
    let model = trade(&env, &show, 700, 7).await;
    assert!(
        model.claims > 1_000 && model.cancels > 100,
        "{} {}",
        model.claims,
        model.cancels
    );
    let settler = env.settler(small_batches());
    // While live, the log is recorded but nothing settles.
    settler.round().await.unwrap();
    assert!(env.store.settlement(&show.id).await.unwrap().is_none());
    assert!(
        env.store
            .log_checkpoint(&show.id)
            .await
            .unwrap()
            .cursor
            .next_pos
            > 0
    );
    close(&env, &show, T0 + 10_000_000).await;
    settle_all(&settler, &env, &show.id).await;
    assert_orders_match(&env, &show, &model).await;
    // Checkouts group the night per buyer.
    let orders = env.store.show_orders(&show.id).await.unwrap();
    assert!(orders.iter().all(
        |o| o.checkout_id == format!("c~m1~2026-11-27~{}", o.buyer_id)
            && o.night_date.as_deref() == Some("2026-11-27")
    ));
    // A rerun changes nothing.
    let before = env.store.show_order_lines(&show.id).await.unwrap();
    match settler.settle(&show.id, false).await.unwrap() {
        Standing::Settled { now, report, .. } => {
            assert!(!now);
            assert!(report.balanced);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.store.show_order_lines(&show.id).await.unwrap(), before);
    assert_eq!(env.store.show_orders(&show.id).await.unwrap(), orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_claims_settle_exactly_embedded() {
    thousands_of_claims(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_claims_settle_exactly_distributed() {
    thousands_of_claims(Kind::Distributed).await;
}

/// The settler killed at arbitrary points (its task aborted mid-batch, mid-transaction), then
/// restarted, any number of times: the same orders, no duplicates.
async fn crash_and_restart(kind: Kind) {
    let env = env(kind).await;
    let show = live_show(&env, "crashy", "htx-b", &items(), None).await;
    let model = trade(&env, &show, 400, 11).await;
    close(&env, &show, T0 + 10_000_000).await;
    let limits = SettlerLimits {
        batch: 53,
        batches_per_show: 1_000,
        ..SettlerLimits::default()
    };
    let mut rng = common::Lcg(5);
    for _ in 0..25 {
        let settler = Arc::new(env.settler(limits.clone()));
        let task = tokio::spawn(async move { settler.round().await });
        // A crash at a random point of the round: where it lands is the test, not a wait for
        // something to happen.
        tokio::time::sleep(std::time::Duration::from_micros(200 + rng.next(20_000))).await;
        task.abort();
        let _ = task.await;
    }
    // Also what a crash could leave if a batch and its checkpoint were ever split: a batch
    // recorded again from an old cursor is refused and changes nothing.
    let stale = env
        .store
        .record_claim_log(
            &show.id,
            &LogCursor::default(),
            &[],
            &LogCursor::default(),
            None,
            T0,
        )
        .await
        .unwrap();
    let cp = env.store.log_checkpoint(&show.id).await.unwrap();
    assert!(!stale || cp.cursor.next_pos == 0);
    let settler = env.settler(limits);
    settle_all(&settler, &env, &show.id).await;
    assert_orders_match(&env, &show, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_settler_restarts_to_the_same_orders_embedded() {
    crash_and_restart(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_settler_restarts_to_the_same_orders_distributed() {
    crash_and_restart(Kind::Distributed).await;
}

/// Two order services at once, as two nodes would run them: the same orders as one.
async fn two_settlers(kind: Kind) {
    let env = env(kind).await;
    let a = live_show(
        &env,
        "twin-a",
        "htx-c",
        &items(),
        Some(("m2", "2026-12-04")),
    )
    .await;
    let b = live_show(
        &env,
        "twin-b",
        "htx-d",
        &items(),
        Some(("m2", "2026-12-04")),
    )
    .await;
    let model_a = trade(&env, &a, 300, 21).await;
    let model_b = trade(&env, &b, 300, 22).await;
    close(&env, &a, T0 + 10_000_000).await;
    close(&env, &b, T0 + 10_000_000).await;
    let s1 = Arc::new(env.settler(small_batches()).with_actor("node-1"));
    let s2 = Arc::new(env.settler(small_batches()).with_actor("node-2"));
    let run = |s: Arc<nightmarket_orders::Settler>| async move {
        for _ in 0..500 {
            s.round().await.unwrap();
        }
    };
    let (x, y) = tokio::join!(tokio::spawn(run(s1.clone())), tokio::spawn(run(s2.clone())));
    x.unwrap();
    y.unwrap();
    settle_all(&s1, &env, &a.id).await;
    settle_all(&s2, &env, &b.id).await;
    assert_orders_match(&env, &a, &model_a).await;
    assert_orders_match(&env, &b, &model_b).await;
    // One checkout per buyer for the night, holding the buyer's orders of both shows.
    let orders_a = env.store.show_orders(&a.id).await.unwrap();
    let orders_b = env.store.show_orders(&b.id).await.unwrap();
    for o in &orders_a {
        if let Some(other) = orders_b.iter().find(|x| x.buyer_id == o.buyer_id) {
            assert_eq!(other.checkout_id, o.checkout_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_settlers_at_once_agree_embedded() {
    two_settlers(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_settlers_at_once_agree_distributed() {
    two_settlers(Kind::Distributed).await;
}

/// A settler keeps where it left each live show's checkpoint; when another one has moved it on
/// since, its next batch is refused by the store's compare and it reads on from the stored
/// checkpoint: nothing is recorded twice or skipped.
async fn a_checkpoint_moved_elsewhere(kind: Kind) {
    let env = env(kind).await;
    let show = live_show(&env, "moved", "htx-e", &items(), None).await;
    let model = trade(&env, &show, 300, 23).await;
    let s1 = env.settler(small_batches()).with_actor("node-1");
    let s2 = env.settler(small_batches()).with_actor("node-2");
    let batch = small_batches().batch as u64;
    assert_eq!(s1.record(&show.id, 1).await.unwrap().entries, batch);
    assert_eq!(s2.record(&show.id, 3).await.unwrap().entries, 3 * batch);
    assert_eq!(
        s1.record(&show.id, 1).await.unwrap().entries,
        0,
        "its batch from the old position is refused"
    );
    assert_eq!(
        env.store
            .log_checkpoint(&show.id)
            .await
            .unwrap()
            .cursor
            .next_pos,
        4 * batch
    );
    assert_eq!(
        s1.record(&show.id, 1).await.unwrap().entries,
        batch,
        "then it reads on from the stored checkpoint"
    );
    close(&env, &show, T0 + 10_000_000).await;
    settle_all(&s1, &env, &show.id).await;
    assert_orders_match(&env, &show, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_moved_by_another_settler_is_followed_embedded() {
    a_checkpoint_moved_elsewhere(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_moved_by_another_settler_is_followed_distributed() {
    a_checkpoint_moved_elsewhere(Kind::Distributed).await;
}

/// Claims sent while the show closes: each is either in the orders or was refused, never lost
/// in between.
async fn claims_racing_the_close(kind: Kind) {
    let env = env(kind).await;
    let show = live_show(
        &env,
        "race",
        "htx-e",
        &[Item {
            id: "p1",
            stock: 100_000,
            limit: 1_000,
            list: 50_000,
        }],
        None,
    )
    .await;
    let pid = show.lineup[0].product.id.clone();
    env.inv
        .command(&show.id, Command::Pin(pid.clone()), T0 + 1)
        .await
        .unwrap();
    // Claims accepted so far across the claimers: the close lands once the race is under way.
    let under_way = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let under_way = under_way.clone();
        let inv = env.inv.clone();
        let show_id = show.id.clone();
        let pid = pid.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            let mut refused_after_close = false;
            for i in 0..400 {
                let req = ClaimRequest {
                    claim_id: ClaimId::parse(format!("r{w}-{i}")).unwrap(),
                    buyer: BuyerId::parse(format!("rb{w}")).unwrap(),
                    product_id: pid.clone(),
                    quantity: Quantity::parse(1, 100).unwrap(),
                    seen_price: Dong::parse(50_000).unwrap(),
                };
                match inv.claim(&show_id, req, T0 + 2).await.unwrap() {
                    ClaimDecision::Accepted(_) => {
                        assert!(
                            !refused_after_close,
                            "accepted after a refusal for the close"
                        );
                        accepted += 1;
                        under_way.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    ClaimDecision::Refused(_) => refused_after_close = true,
                    ClaimDecision::Duplicate(_) => unreachable!(),
                }
                tokio::task::yield_now().await;
            }
            (BuyerId::parse(format!("rb{w}")).unwrap(), accepted)
        }));
    }
    // The close lands while the claimers run: after some claims were accepted, and (8 × 400
    // claims being far more than that) before they are done.
    const UNDER_WAY: u64 = 50;
    eventually("the claimers under way", || async {
        let n = under_way.load(std::sync::atomic::Ordering::Relaxed);
        if n >= UNDER_WAY {
            Ok(())
        } else {
            Err(format!("{n} accepted"))
        }
    })
    .await;
    close(&env, &show, T0 + 3).await;
    let mut expected = BTreeMap::new();
    for t in tasks {
        let (buyer, n) = t.await.unwrap();
        if n > 0 {
            expected.insert(buyer, n);
        }
    }
    let settler = env.settler(SettlerLimits::default());
    settle_all(&settler, &env, &show.id).await;
    let got: BTreeMap<BuyerId, u64> = env
        .store
        .show_orders(&show.id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.buyer_id, o.units))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_racing_the_close_is_ordered_or_refused_embedded() {
    claims_racing_the_close(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_racing_the_close_is_ordered_or_refused_distributed() {
    claims_racing_the_close(Kind::Distributed).await;
}

/// Runs the shared part of a mismatch test: settlement refuses, keeps a report naming what
/// disagrees, writes no order, and leaves the show out of later rounds.
async fn expect_mismatch(env: &Env, show: &ShowId, needle: &str) {
    let settler = env.settler(SettlerLimits::default());
    for _ in 0..50 {
        settler.round().await.unwrap();
    }
    let s = env.store.settlement(show).await.unwrap().unwrap();
    assert_eq!(s.state, SettlementState::Mismatch);
    assert!(s.report.contains(needle), "{}", s.report);
    assert!(env.store.show_orders(show).await.unwrap().is_empty());
    match settler.settle(show, false).await.unwrap() {
        Standing::Mismatch(report) => {
            assert!(!report.balanced);
            assert!(
                report.problems.iter().any(|p| p.contains(needle)),
                "{report:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_redis_counter_stops_settlement() {
    let env = env(Kind::Distributed).await;
    let show = live_show(&env, "bent", "htx-f", &items(), None).await;
    trade(&env, &show, 100, 3).await;
    // Someone "fixes" a stock level by hand before the close.
    let (url, prefix) = env.redis.clone().unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HINCRBY")
        .arg(format!("{prefix}{{bent}}:left"))
        .arg("bent-p2")
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    close(&env, &show, T0 + 10_000_000).await;
    expect_mismatch(&env, &show.id, "product bent-p2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_journal_stops_settlement() {
    let env = env(Kind::Embedded).await;
    let show = live_show(&env, "warped", "htx-g", &items(), None).await;
    trade(&env, &show, 100, 4).await;
    close(&env, &show, T0 + 10_000_000).await;
    // A claim's quantity altered on disk after the fact: the log no longer adds up to the
    // stock the book closed with.
    let conn = rusqlite::Connection::open(env.journal.as_ref().unwrap()).unwrap();
    let changed = conn
        .execute(
            "UPDATE claim_log SET quantity = quantity + 1
             WHERE show_id = 'warped' AND kind = 'claim' AND product_id = 'warped-p1'
               AND pos = (SELECT MIN(pos) FROM claim_log WHERE show_id = 'warped'
                          AND kind = 'claim' AND product_id = 'warped-p1')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    expect_mismatch(&env, &show.id, "product warped-p1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_show_settles_to_no_orders() {
    let env = env(Kind::Embedded).await;
    let show = live_show(&env, "quiet", "htx-h", &items(), None).await;
    close(&env, &show, T0 + 5).await;
    let settler = env.settler(SettlerLimits::default());
    settle_all(&settler, &env, &show.id).await;
    let s = env.store.settlement(&show.id).await.unwrap().unwrap();
    assert_eq!((s.orders, s.units, s.revenue), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing() {
    let env = env(Kind::Embedded).await;
    let show = live_show(&env, "dry", "htx-i", &items(), None).await;
    trade(&env, &show, 50, 9).await;
    close(&env, &show, T0 + 10_000_000).await;
    let settler = env.settler(SettlerLimits::default());
    // Nothing recorded yet: a dry run says so.
    match settler.settle(&show.id, true).await.unwrap() {
        Standing::Recording { recorded_to: 0 } => {}
        other => panic!("{other:?}"),
    }
    settler.record(&show.id, usize::MAX).await.unwrap();
    match settler.settle(&show.id, true).await.unwrap() {
        Standing::WouldSettle(r) => assert!(r.balanced, "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(env.store.settlement(&show.id).await.unwrap().is_none());
    assert!(env.store.show_orders(&show.id).await.unwrap().is_empty());
}
