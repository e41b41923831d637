//! The waitlist over real WebSockets: a viewer takes the last units, another joins the waitlist
//! and sees its place, the first cancels, the waiting viewer is told it was promoted and holds
//! the claim. Then the same across two nodes on one Redis, the promoted viewer on the other node;
//! and leaving the show leaves the waitlist.

use crate::support::{ChildServer, Client, Market, TestServer, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{
    CancelOutcomeKind, ClaimOutcomeKind, ServerMessage, StockLevel, WaitlistOutcomeKind,
    WaitlistResult,
};
use serde_json::json;

const LIST: i64 = 180_000;

/// Sends a waitlist message and waits for its answer (not news of a promotion or skip).
async fn ask(c: &mut Client, msg: serde_json::Value) -> WaitlistResult {
    c.send(msg).await;
    waitlist_result(c, false).await
}

/// Joins `product`'s waitlist for `quantity` units and waits for the answer.
async fn join(c: &mut Client, product: &str, quantity: u32) -> WaitlistResult {
    ask(
        c,
        json!({"type": "waitlist_join", "product_id": product, "quantity": quantity}),
    )
    .await
}

/// `canceller` cancels `claim_id`; the units go to `waiting`, which is told it was promoted.
async fn cancel_promotes(
    canceller: &mut Client,
    claim_id: &str,
    waiting: &mut Client,
) -> WaitlistResult {
    canceller
        .send(json!({"type": "cancel", "claim_id": claim_id}))
        .await;
    let promoted = news(waiting).await;
    assert_eq!(
        promoted.outcome,
        WaitlistOutcomeKind::Promoted,
        "{promoted:?}"
    );
    promoted
}

/// The next news of a promotion or a skip.
async fn news(c: &mut Client) -> WaitlistResult {
    waitlist_result(c, true).await
}

/// The next waitlist result that is news (a promotion or a skip), or that is not.
async fn waitlist_result(c: &mut Client, news: bool) -> WaitlistResult {
    c.until(|m| match m {
        ServerMessage::WaitlistResult(r)
            if news
                == matches!(
                    r.outcome,
                    WaitlistOutcomeKind::Promoted | WaitlistOutcomeKind::Skipped
                ) =>
        {
            Some(r.clone())
        }
        _ => None,
    })
    .await
}

/// No stock frame a viewer saw ever showed more than the allotment of 2 (units are unsigned on
/// the wire: "never negative" is the counters' own invariant, checked by the conformance suite).
fn stock_within_allotment(seen: &[ServerMessage]) {
    for m in seen {
        if let ServerMessage::Stock(s) = m {
            for StockLevel { left, .. } in &s.levels {
                assert!(*left <= 2, "stock frame shows {left} of 2: {s:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_viewer_is_promoted_when_units_come_back() {
    let server = TestServer::start(|c| {
        c.limits.stock_tick_ms = 50;
        c.limits.waitlist_leave_grace_ms = 100;
    })
    .await;
    let m = Market::create(server.addr, &[LIST], 2, 2, true).await;
    let p = m.product(0).to_owned();
    let mut seller = m.pinned_seller(0).await;

    let mut a = Client::viewer(m.addr, &m.show, "buyer-a").await;
    let mut b = Client::viewer(m.addr, &m.show, "buyer-b").await;
    let mut c = Client::viewer(m.addr, &m.show, "buyer-c").await;

    let r = join(&mut b, &p, 1).await;
    assert_eq!(r.outcome, WaitlistOutcomeKind::Refused);
    assert_eq!(r.reason, Some(ErrorCode::NotSoldOut), "{r:?}");

    // A takes the last units.
    let claim = a.claim("a-1", &p, 2, LIST).await;
    assert_eq!(claim.outcome, ClaimOutcomeKind::Accepted, "{claim:?}");
    assert_eq!(claim.stock_left, Some(0));

    // B and C join and see their places; B again: the same place.
    let r = join(&mut b, &p, 1).await;
    assert_eq!(
        (r.outcome, r.position, r.quantity, r.unit_price),
        (WaitlistOutcomeKind::Joined, Some(1), Some(1), Some(LIST)),
        "{r:?}"
    );
    let r = join(&mut c, &p, 1).await;
    assert_eq!(
        (r.outcome, r.position),
        (WaitlistOutcomeKind::Joined, Some(2))
    );
    let r = join(&mut b, &p, 2).await;
    assert_eq!(
        (r.outcome, r.position, r.quantity),
        (WaitlistOutcomeKind::Joined, Some(1), Some(1))
    );
    // A second connection of B sees its place in the snapshot.
    let mut b2 = Client::connect(m.addr, &m.show, &token(Role::Viewer, "buyer-b"), None)
        .await
        .unwrap();
    let snap = b2.snapshot().await;
    assert_eq!(snap.my_waitlist.len(), 1);
    assert_eq!(
        (
            snap.my_waitlist[0].product_id.as_str(),
            snap.my_waitlist[0].position
        ),
        (p.as_str(), 1)
    );

    // Bad input and the wrong role get clear answers.
    let r = join(&mut b, &p, 0).await;
    assert_eq!(r.reason, Some(ErrorCode::BadRequest), "{r:?}");
    let r = join(&mut seller, &p, 1).await;
    assert_eq!(r.reason, Some(ErrorCode::Forbidden), "{r:?}");
    let reserved = b.claim("waitlist-9", &p, 1, LIST).await;
    assert_eq!(reserved.reason, Some(ErrorCode::BadRequest), "{reserved:?}");

    // A cancels: both units go to the waitlist, B first; each is told on its connections.
    let promoted = cancel_promotes(&mut a, "a-1", &mut b).await;
    assert_eq!(promoted.product_id, p);
    assert_eq!(promoted.quantity, Some(1));
    assert_eq!(promoted.unit_price, Some(LIST));
    let claim_id = promoted.claim_id.clone().unwrap();
    assert_eq!(
        news(&mut b2).await,
        promoted,
        "every connection of B is told"
    );
    let for_c = news(&mut c).await;
    assert_eq!(for_c.outcome, WaitlistOutcomeKind::Promoted);
    assert_ne!(for_c.claim_id, promoted.claim_id);

    // B holds the claim: in a fresh snapshot, and it can cancel it like any other.
    let mut b3 = Client::connect(m.addr, &m.show, &token(Role::Viewer, "buyer-b"), None)
        .await
        .unwrap();
    let snap = b3.snapshot().await;
    assert!(snap.my_waitlist.is_empty());
    let mine: Vec<_> = snap
        .my_claims
        .iter()
        .map(|c| (c.claim_id.as_str(), c.status.as_str(), c.quantity))
        .collect();
    assert_eq!(mine, [(claim_id.as_str(), "accepted", 1)]);
    assert_eq!(snap.lineup[0].left, 0, "both units went to the waitlist");
    // Leaving: explicitly, and by leaving the show.
    let mut d = Client::viewer(m.addr, &m.show, "buyer-d").await;
    let r = join(&mut d, &p, 1).await;
    assert_eq!(
        (r.outcome, r.position),
        (WaitlistOutcomeKind::Joined, Some(1))
    );
    let r = ask(&mut d, json!({"type": "waitlist_leave", "product_id": p})).await;
    assert_eq!(r.outcome, WaitlistOutcomeKind::Left, "{r:?}");
    let r = join(&mut d, &p, 1).await;
    assert_eq!(r.position, Some(1));
    d.close().await;
    // After the grace the node takes D off the list: a buyer joining then comes first (and
    // leaves again, so the list is as before).
    let e = tokio::sync::Mutex::new(Client::viewer(m.addr, &m.show, "buyer-e").await);
    crate::support::eventually("buyer-d off the list", || async {
        let mut e = e.lock().await;
        let joined = json!({"type": "waitlist_join", "product_id": p, "quantity": 1});
        let r = ask(&mut e, joined).await;
        let left = ask(&mut e, json!({"type": "waitlist_leave", "product_id": p})).await;
        assert_eq!(left.outcome, WaitlistOutcomeKind::Left, "{left:?}");
        (r.position == Some(1))
            .then_some(())
            .ok_or(format!("{r:?}"))
    })
    .await;
    let mut d = Client::connect(m.addr, &m.show, &token(Role::Viewer, "buyer-d"), None)
        .await
        .unwrap();
    assert!(
        d.snapshot().await.my_waitlist.is_empty(),
        "leaving the show left the waitlist"
    );

    b3.send(json!({"type": "cancel", "claim_id": claim_id}))
        .await;
    let r = b3
        .until(|m| match m {
            ServerMessage::CancelResult(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (r.outcome, r.stock_left),
        (CancelOutcomeKind::Cancelled, Some(1)),
        "the promoted claim cancels like any claim: {r:?}"
    );

    for cl in [&a, &b, &b2, &c] {
        stock_within_allotment(&cl.seen);
    }
    server.shutdown().await;
}

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

/// Two nodes on one Redis: the cancel is served by node 0, the waiting viewer is on node 1 and
/// is told there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promoted_viewer_is_told_on_another_node() {
    let url = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("itw{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("NIGHTMARKET_REDIS_URL", url.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_LIMITS_STOCK_TICK_MS", "50"),
    ];
    let n0 = ChildServer::start_with(EXE, dir.path(), &env)
        .await
        .unwrap();
    let n1 = ChildServer::start_with(EXE, dir.path(), &env)
        .await
        .unwrap();
    let m = Market::create(n0.addr, &[LIST], 2, 2, true).await;
    let p = m.product(0).to_owned();
    let _seller = m.pinned_seller(0).await;

    let mut a = Client::viewer(n0.addr, &m.show, "buyer-a").await;
    let mut b = Client::viewer(n1.addr, &m.show, "buyer-b").await;
    let claim = a.claim("a-1", &p, 2, LIST).await;
    assert_eq!(claim.outcome, ClaimOutcomeKind::Accepted, "{claim:?}");
    let r = join(&mut b, &p, 2).await;
    assert_eq!(
        (r.outcome, r.position),
        (WaitlistOutcomeKind::Joined, Some(1)),
        "{r:?}"
    );

    let promoted = cancel_promotes(&mut a, "a-1", &mut b).await;
    assert_eq!(promoted.quantity, Some(2));
    let claim_id = promoted.claim_id.unwrap();

    let mut b2 = Client::connect(n0.addr, &m.show, &token(Role::Viewer, "buyer-b"), None)
        .await
        .unwrap();
    let snap = b2.snapshot().await;
    assert_eq!(snap.my_claims.len(), 1);
    assert_eq!(snap.my_claims[0].claim_id, claim_id);
    assert_eq!(snap.lineup[0].left, 0);
    assert!(snap.my_waitlist.is_empty());
    stock_within_allotment(&a.seen);
    stock_within_allotment(&b.seen);
    n0.kill().await;
    n1.kill().await;
}
