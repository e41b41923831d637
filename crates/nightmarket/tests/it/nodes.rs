//! Distributed mode: three hub processes on one Redis (from `scripts/test`), sharing the
//! catalog under one data directory. Viewers on every node see the same events in the same
//! order, claims from every node never oversell, and a killed node's viewers resume on another.
//! Then the same in small on the Redis Cluster `scripts/test` starts.

use std::collections::HashMap;

use crate::support::{ChildServer, Client, Market, assert_contiguous, get, redis_url, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};
use serde_json::json;

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

fn redis_cluster_urls() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_CLUSTER_URLS").expect(
        "NIGHTMARKET_TEST_REDIS_CLUSTER_URLS is not set: run the tests with scripts/test, which starts a Redis Cluster",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_show() {
    let dir = tempfile::tempdir().unwrap();
    let url = redis_url();
    let prefix = format!("it{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("NIGHTMARKET_REDIS_URL", url.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND", "1000"),
        ("NIGHTMARKET_LIMITS_MESSAGE_BURST", "1000"),
    ];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            ChildServer::start_with(EXE, dir.path(), &env)
                .await
                .unwrap(),
        );
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    const STOCK: u32 = 1000;
    let m = Market::create(addrs[0], &[100_000, 60_000], STOCK, 1000, true).await;

    // Viewers spread over the three nodes.
    let mut viewers = Vec::new();
    for v in 0..30usize {
        let addr = addrs[v % 3];
        let mut c = Client::connect(addr, &m.show, &token(Role::Viewer, &format!("b{v}")), None)
            .await
            .unwrap();
        c.snapshot().await;
        viewers.push((v % 3, c));
    }
    // The seller drives the show from node 0.
    let mut seller = m.seller_client().await;
    let mut last = 0;
    for i in 0..10 {
        last = seller
            .command(
                json!({"type": "pin", "product_id": m.product(i % 2)}),
                &format!("p{i}"),
            )
            .await
            .unwrap();
    }
    let mut orders: Vec<Vec<(u64, String)>> = Vec::new();
    for (_, c) in &mut viewers {
        c.until(|msg| match msg {
            ServerMessage::Event(e) if e.seq == last => Some(()),
            _ => None,
        })
        .await;
        assert_contiguous(&c.event_seqs()).unwrap();
        orders.push(
            c.seen
                .iter()
                .filter_map(|msg| match msg {
                    ServerMessage::Event(e) => Some((e.seq, format!("{:?}", e.event))),
                    _ => None,
                })
                .collect(),
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "every viewer on every node saw the same events"
    );

    // Claims from every node, each sent twice: exactly the stock is accepted.
    seller
        .command(json!({"type": "pin", "product_id": m.product(0)}), "final")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (v, (_, mut c)) in viewers.into_iter().enumerate() {
        let product = m.product(0).to_owned();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u32;
            for n in 0..40 {
                let id = format!("c{v}-{n}");
                for _ in 0..2 {
                    let r = c.claim(&id, &product, 1, 100_000).await;
                    if r.outcome == ClaimOutcomeKind::Accepted {
                        accepted += 1;
                    }
                }
            }
            (accepted, c)
        }));
    }
    let mut total = 0;
    let mut by_node: HashMap<usize, Client> = HashMap::new();
    for (v, t) in tasks.into_iter().enumerate() {
        let (accepted, c) = t.await.unwrap();
        total += accepted;
        by_node.entry(v % 3).or_insert(c);
    }
    assert_eq!(
        total, STOCK,
        "1,200 claims (each sent twice) for 1,000 units: exactly the stock is accepted"
    );
    for addr in &addrs {
        let (_, show) = get(*addr, &format!("/api/shows/{}", m.show), None).await;
        assert_eq!(
            show["stock"][0]["left"], 0,
            "every node reads the same counters"
        );
    }

    // Kill node 1; its viewer resumes on node 2 from its last sequence, without a gap.
    let victim = by_node.remove(&1).unwrap();
    let last_seen = *victim.event_seqs().last().unwrap();
    let node1 = nodes.remove(1);
    node1.kill().await;
    let newer = seller
        .command(json!({"type": "unpin"}), "after-kill")
        .await
        .unwrap();
    let mut moved = Client::connect(
        addrs[2],
        &m.show,
        &token(Role::Viewer, "b1"),
        Some(last_seen),
    )
    .await
    .unwrap();
    moved
        .until(|msg| match msg {
            ServerMessage::Event(e) if e.seq == newer => Some(()),
            _ => None,
        })
        .await;
    let seqs = moved.event_seqs();
    assert_eq!(
        seqs.first().copied(),
        Some(last_seen + 1),
        "resumed right after the last event seen"
    );
    assert_contiguous(&seqs).unwrap();
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_two_shows_on_a_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let urls = redis_cluster_urls();
    let prefix = format!("it{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("NIGHTMARKET_REDIS_URL", urls.as_str()),
        ("NIGHTMARKET_REDIS_CLUSTER", "true"),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND", "1000"),
        ("NIGHTMARKET_LIMITS_MESSAGE_BURST", "1000"),
    ];
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(
            ChildServer::start_with(EXE, dir.path(), &env)
                .await
                .unwrap(),
        );
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    const STOCK: u32 = 5;
    // Two shows (their ids hash to slots that may sit on different masters), each made on a
    // different node, each watched from both.
    for (i, creator) in addrs.iter().enumerate() {
        let m = Market::create(*creator, &[80_000], STOCK, 100, true).await;
        let mut viewers = Vec::new();
        for v in 0..4usize {
            let who = format!("s{i}b{v}");
            let c = Client::viewer(addrs[v % 2], &m.show, &who).await;
            viewers.push(c);
        }
        // The seller drives the show from the other node.
        let mut seller = Client::connect(addrs[1 - i], &m.show, &m.seller, None)
            .await
            .unwrap();
        let mut last = 0;
        for n in 0..4 {
            let cmd = if n % 2 == 0 {
                json!({"type": "pin", "product_id": m.product(0)})
            } else {
                json!({"type": "unpin"})
            };
            last = seller.command(cmd, &format!("c{n}")).await.unwrap();
        }
        last = seller
            .command(json!({"type": "pin", "product_id": m.product(0)}), "final")
            .await
            .unwrap()
            .max(last);
        let mut seen = Vec::new();
        for c in &mut viewers {
            c.until(|msg| match msg {
                ServerMessage::Event(e) if e.seq == last => Some(()),
                _ => None,
            })
            .await;
            let seqs = c.event_seqs();
            assert_contiguous(&seqs).unwrap();
            seen.push(seqs);
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "every viewer on both nodes saw the same events: {seen:?}"
        );
        // Three claims from each of four viewers, on both nodes: exactly the stock is taken.
        let mut tasks = Vec::new();
        for (v, mut c) in viewers.into_iter().enumerate() {
            let product = m.product(0).to_owned();
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0u32;
                for n in 0..3 {
                    let r = c.claim(&format!("k{v}-{n}"), &product, 1, 80_000).await;
                    if r.outcome == ClaimOutcomeKind::Accepted {
                        accepted += 1;
                    }
                }
                accepted
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, STOCK, "12 claims for {STOCK} units");
        for addr in &addrs {
            let (_, show) = get(*addr, &format!("/api/shows/{}", m.show), None).await;
            assert_eq!(
                show["stock"][0]["left"], 0,
                "both nodes read the same counters"
            );
        }
    }
    for n in nodes {
        n.kill().await;
    }
}
