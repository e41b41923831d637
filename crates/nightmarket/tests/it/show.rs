//! A full show: the seller pins and starts a flash, 200 viewers claim more than the stock.

use std::collections::HashMap;

use crate::support::{Client, Market, TestServer, assert_contiguous, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage, ShowEvent};
use serde_json::json;

const VIEWERS: usize = 200;
const STOCK: u32 = 150;
const LIMIT: u32 = 3;
const LIST: i64 = 250_000;
const FLASH: i64 = 199_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_viewers_claim_more_than_the_stock() {
    let server = TestServer::start(|_| {}).await;
    let m = Market::create(server.addr, &[LIST, 90_000], STOCK, LIMIT, true).await;
    let p1 = m.product(0).to_owned();

    // Every viewer joins first and sees the full stock in its snapshot.
    let mut viewers = Vec::new();
    for v in 0..VIEWERS {
        let mut c = Client::connect(
            m.addr,
            &m.show,
            &token(Role::Viewer, &format!("buyer-{v}")),
            None,
        )
        .await
        .unwrap();
        let snap = c.snapshot().await;
        assert_eq!(snap.show.status, "live");
        assert!(snap.lineup.iter().all(|l| l.left == STOCK));
        assert_eq!(snap.lineup[0].product.name, "Mật ong hoa nhãn số 0");
        assert_eq!(snap.lineup[0].product.stars, 4);
        viewers.push(c);
    }

    let mut seller = m.seller_client().await;
    seller
        .command(json!({"type": "pin", "product_id": p1}), "pin")
        .await
        .unwrap();
    seller
        .command(
            json!({"type": "start_flash", "product_id": p1, "price": FLASH, "duration_s": 120}),
            "flash",
        )
        .await
        .unwrap();

    // Each viewer waits for the flash, then claims twice (2 + 2 units: the second claim may
    // break the limit of 3) and retries its first claim.
    let mut tasks = Vec::new();
    for (v, mut c) in viewers.into_iter().enumerate() {
        let p1 = p1.clone();
        tasks.push(tokio::spawn(async move {
            let price = c
                .until(|msg| match msg {
                    ServerMessage::Event(e) => match &e.event {
                        ShowEvent::FlashStarted(f) => Some(f.price),
                        _ => None,
                    },
                    _ => None,
                })
                .await;
            let first = c.claim(&format!("v{v}-a"), &p1, 2, price).await;
            let second = c.claim(&format!("v{v}-b"), &p1, 2, price).await;
            let retry = c.claim(&format!("v{v}-a"), &p1, 2, price).await;
            (c, vec![first, second], retry)
        }));
    }
    let mut clients = Vec::new();
    let mut accepted_units = 0u32;
    let mut reasons: HashMap<ErrorCode, usize> = HashMap::new();
    for t in tasks {
        let (c, results, retry) = t.await.unwrap();
        let first = &results[0];
        match first.outcome {
            ClaimOutcomeKind::Accepted => {
                assert_eq!(
                    retry.outcome,
                    ClaimOutcomeKind::Duplicate,
                    "retry of an accepted claim"
                );
                assert_eq!(
                    (retry.unit_price, retry.quantity),
                    (first.unit_price, first.quantity)
                );
            }
            ClaimOutcomeKind::Refused => assert_eq!(retry.outcome, ClaimOutcomeKind::Refused),
            ClaimOutcomeKind::Duplicate => panic!("a first claim cannot be a duplicate"),
            ClaimOutcomeKind::Pending => panic!("the claim helper waits past `pending`"),
        }
        for r in &results {
            match r.outcome {
                ClaimOutcomeKind::Accepted => {
                    assert_eq!(r.unit_price, Some(FLASH));
                    accepted_units += r.quantity.unwrap();
                }
                ClaimOutcomeKind::Pending => panic!("the claim helper waits past `pending`"),
                ClaimOutcomeKind::Refused => {
                    let reason = r.reason.unwrap();
                    match reason {
                        ErrorCode::SoldOut => assert!(r.available.unwrap() < 2),
                        ErrorCode::LimitExceeded => assert_eq!(r.limit_left, Some(1)),
                        other => panic!("unexpected refusal {other:?}: {r:?}"),
                    }
                    *reasons.entry(reason).or_default() += 1;
                }
                ClaimOutcomeKind::Duplicate => panic!("unexpected duplicate"),
            }
        }
        clients.push(c);
    }
    assert_eq!(
        accepted_units, STOCK,
        "accepted units sum exactly to the stock"
    );
    assert!(
        reasons.get(&ErrorCode::SoldOut).copied().unwrap_or(0) > 0,
        "demand exceeded stock: {reasons:?}"
    );

    // The conflated stock frame reaches zero and reports every unit sold at the flash price
    // (it may have arrived while the client was still reading its claim results).
    let zero = |msg: &ServerMessage| match msg {
        ServerMessage::Stock(s) if s.levels[0].left == 0 => Some(s.flash.as_ref().map(|f| f.sold)),
        _ => None,
    };
    let seen = clients[0].seen.iter().find_map(zero);
    let sold = match seen {
        Some(sold) => sold,
        None => clients[0].until(zero).await,
    };
    assert_eq!(sold, Some(STOCK));

    // Close; every viewer's feed ends in agreement with the final stock.
    let show = m.close().await;
    assert_eq!(show["stock"][0]["left"], 0);
    assert_eq!(show["stock"][1]["left"], STOCK);
    for c in &mut clients {
        let final_stock = c
            .until(|msg| match msg {
                ServerMessage::Event(e) => match &e.event {
                    ShowEvent::ShowClosed { final_stock } => Some(final_stock.clone()),
                    _ => None,
                },
                _ => None,
            })
            .await;
        assert_eq!(final_stock[0].left, 0);
        assert_eq!(final_stock[1].left, STOCK);
        assert_contiguous(&c.event_seqs()).unwrap();
        // Stock frames never go below zero or above the allotment, and the last one seen is
        // never lower than the final stock.
        for msg in &c.seen {
            if let ServerMessage::Stock(s) = msg {
                assert!(s.levels[0].left <= STOCK);
            }
        }
    }

    // A buyer reconnecting sees its own claims in the snapshot, matching what it was told.
    let mut again = Client::connect(m.addr, &m.show, &token(Role::Viewer, "buyer-0"), None)
        .await
        .unwrap();
    let snap = again.snapshot().await;
    assert_eq!(snap.show.status, "closed");
    assert_eq!(snap.lineup[0].left, 0);
    let mine: u32 = snap.my_claims.iter().map(|c| c.quantity).sum();
    let told: u32 = clients[0]
        .seen
        .iter()
        .filter_map(|msg| match msg {
            ServerMessage::ClaimResult(r) if r.outcome == ClaimOutcomeKind::Accepted => r.quantity,
            _ => None,
        })
        .sum();
    assert_eq!(mine, told);

    // Metrics count what happened.
    let (_, metrics) = crate::support::http_text(m.addr, "/metrics").await;
    assert!(
        metrics.contains("nightmarket_claims_total{outcome=\"accepted\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nightmarket_claims_refused_total{reason=\"sold_out\"}"),
        "{metrics}"
    );
    // Every claim's first answer was timed, and the embedded journal's group commits too.
    for histogram in [
        "nightmarket_claim_answer_seconds",
        "nightmarket_journal_commit_seconds",
    ] {
        assert!(
            crate::support::histogram_count(&metrics, histogram) >= 1,
            "{histogram}: {metrics}"
        );
    }
    server.shutdown().await;
}

/// A viewer joining mid-show sees the newest claims in its snapshot, not an empty feed, on a
/// node that had not looked at the show before and on one that had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_viewers_see_the_newest_claims_at_once() {
    let server = TestServer::start(|c| c.limits.feed_items = 3).await;
    let m = Market::create(server.addr, &[LIST], STOCK, 10, true).await;
    let _seller = m.pinned_seller(0).await;
    let buyer = token(Role::Viewer, "buyer-feed");
    let mut v = Client::connect(m.addr, &m.show, &buyer, None)
        .await
        .unwrap();
    v.snapshot().await;
    for (i, qty) in [1, 2, 3, 4].into_iter().enumerate() {
        let r = v.claim(&format!("feed-{i}"), m.product(0), qty, LIST).await;
        assert_eq!(r.outcome, ClaimOutcomeKind::Accepted);
    }
    // The node has refreshed since the last claim: its stock frame counts all ten units.
    v.until(|msg| match msg {
        ServerMessage::Stock(s) if s.levels[0].left == STOCK - 10 => Some(()),
        _ => None,
    })
    .await;
    let late = token(Role::Viewer, "buyer-late");
    let mut joined = Client::connect(m.addr, &m.show, &late, None).await.unwrap();
    let snap = joined.snapshot().await;
    let quantities: Vec<u32> = snap.recent_claims.iter().map(|c| c.quantity).collect();
    assert_eq!(
        quantities,
        [2, 3, 4],
        "the newest feed_items claims, oldest first"
    );
    assert!(snap.recent_claims.iter().all(|c| c.unit_price == LIST));
    drop((v, joined));

    // After a restart no session has looked at the show on this node yet: the first join
    // reads the feed itself.
    let dir = server.stop_keep_dir().await;
    let clock = nightmarket_server::clock::ManualClock::new(crate::support::now_secs() * 1000);
    let server = TestServer::start_clocked(dir, clock, |c| c.limits.feed_items = 3).await;
    let mut first = Client::connect(server.addr, &m.show, &late, None)
        .await
        .unwrap();
    let snap = first.snapshot().await;
    let quantities: Vec<u32> = snap.recent_claims.iter().map(|c| c.quantity).collect();
    assert_eq!(quantities, [2, 3, 4]);
    server.shutdown().await;
}

/// A flash ends on the server's clock, the one the embedded inventory decides by: a millisecond
/// before its end a claim still gets the flash price and nobody is told it ended; the moment a
/// test's manual clock passes the end, every viewer gets `flash_ended`, stamped at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_ends_when_the_servers_clock_passes_its_end() {
    const AT: i64 = 1_795_786_200_000; // a Friday evening in 2026
    let clock = nightmarket_server::clock::ManualClock::new(AT);
    let server =
        TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
    let m = Market::create(server.addr, &[LIST], STOCK, LIMIT, true).await;
    let p1 = m.product(0).to_owned();
    let mut viewers = [
        Client::viewer(m.addr, &m.show, "b0").await,
        Client::viewer(m.addr, &m.show, "b1").await,
    ];
    for c in &viewers {
        let told = c.seen.iter().find_map(|msg| match msg {
            ServerMessage::Snapshot(s) => Some(s.server_time),
            _ => None,
        });
        assert_eq!(told, Some(AT), "snapshots tell the server's time");
    }
    let mut seller = m.pinned_seller(0).await;
    seller
        .command(
            json!({"type": "start_flash", "product_id": p1, "price": FLASH, "duration_s": 60}),
            "flash",
        )
        .await
        .unwrap();
    let flash = viewers[0]
        .until(|msg| match msg {
            ServerMessage::Event(e) => match &e.event {
                ShowEvent::FlashStarted(f) => Some(f.clone()),
                _ => None,
            },
            _ => None,
        })
        .await;
    assert_eq!((flash.starts_at, flash.ends_at), (AT, AT + 60_000));

    clock.set(flash.ends_at - 1);
    let r = viewers[0].claim("c-last-ms", &p1, 1, FLASH).await;
    assert_eq!(
        (r.outcome, r.unit_price),
        (ClaimOutcomeKind::Accepted, Some(FLASH)),
        "{r:?}"
    );
    crate::support::quiet_for(std::time::Duration::from_millis(300)).await;
    viewers[1].ping().await;
    let ended = |c: &Client| {
        c.seen.iter().any(|msg| {
            matches!(msg, ServerMessage::Event(e) if matches!(e.event, ShowEvent::FlashEnded { .. }))
        })
    };
    assert!(!viewers.iter().any(ended), "ended before its time");

    clock.advance(1);
    for c in &mut viewers {
        let (at, reason) = c
            .until(|msg| match msg {
                ServerMessage::Event(e) => match &e.event {
                    ShowEvent::FlashEnded {
                        flash_id, reason, ..
                    } if *flash_id == flash.flash_id => Some((e.at, reason.clone())),
                    _ => None,
                },
                _ => None,
            })
            .await;
        assert_eq!((at, reason.as_str()), (flash.ends_at, "expired"));
    }
    let r = viewers[1].claim("c-after", &p1, 1, LIST).await;
    assert_eq!(
        (r.outcome, r.unit_price),
        (ClaimOutcomeKind::Accepted, Some(LIST)),
        "{r:?}"
    );
    server.shutdown().await;
}
