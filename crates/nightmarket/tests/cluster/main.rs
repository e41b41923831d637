//! The distributed market end to end, as `scripts/cluster` starts it: throwaway Redis and
//! PostgreSQL, two hubs, the order service and nginx. Everything goes through the balancer:
//! the market is created, the show goes live, viewers who land on different hubs claim, the
//! show closes, and the order service (the hubs run without it) writes the orders. Then
//! `scripts/cluster stop` must leave nothing running.
//!
//! Not part of a plain `cargo test`: it needs nginx, redis-server and PostgreSQL's server
//! programs, and takes a while. `scripts/test` runs it (`NIGHTMARKET_TEST_CLUSTER`), or:
//! `cargo test -p nightmarket --test cluster`.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Client, Market, SECRET, http, http_text, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the cluster may take to start (a throwaway PostgreSQL, then every process ready).
const START_WAIT: Duration = Duration::from_secs(120);
/// How long the order service may take to settle the closed show.
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// How long `scripts/cluster stop` may take, hubs draining included.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// Viewers connected through the balancer; enough that both hubs get some.
const VIEWERS: usize = 4;
/// Units each viewer claims.
const UNITS: i64 = 2;

/// What `scripts/cluster start` printed: `cluster: <name> <rest>` lines.
struct Cluster {
    child: Child,
    lines: HashMap<String, String>,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(hubs: usize) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("cluster.state");
        let mut child = Command::new(repo.join("scripts/cluster"))
            .args(["start", "--hubs", &hubs.to_string(), "--state"])
            .arg(&state)
            .arg("--bin")
            .arg(env!("CARGO_BIN_EXE_nightmarket"))
            .env("NIGHTMARKET_AUTH_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("scripts/cluster starts");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines = HashMap::new();
        let read = async {
            while let Some(line) = out.next_line().await.unwrap() {
                println!("{line}");
                let Some(rest) = line.strip_prefix("cluster: ") else {
                    continue;
                };
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                if name == "ready" {
                    return true;
                }
                lines.insert(name.to_owned(), value.to_owned());
            }
            false
        };
        let ready = tokio::time::timeout(START_WAIT, read)
            .await
            .expect("the cluster is ready in time");
        assert!(ready, "scripts/cluster ended before it was ready");
        Self {
            child,
            lines,
            state,
            _dir: dir,
        }
    }

    /// The `host:port` of an `http://…` line (the balancer, a hub).
    fn addr(&self, name: &str) -> SocketAddr {
        let value = &self.lines[name];
        let url = value.split_whitespace().next().unwrap();
        let hostport = url.rsplit("://").next().unwrap();
        let hostport = hostport.split('/').next().unwrap();
        let hostport = hostport.rsplit('@').next().unwrap();
        hostport.parse().unwrap()
    }

    /// The pid a line ends with (`… pid N`).
    fn pid(&self, name: &str) -> u32 {
        let value = &self.lines[name];
        let pid = value.rsplit_once("pid ").unwrap().1;
        pid.trim().parse().unwrap()
    }
}

/// `nightmarket_connections` on one hub's /metrics: WebSocket connections it holds now.
async fn hub_connections(hub: SocketAddr) -> u64 {
    let (status, body) = http_text(hub, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("nightmarket_connections "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether a process runs (a zombie, exited but not yet reaped, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_across_two_hubs_become_orders_through_the_balancer() {
    let mut cluster = Cluster::start(2).await;
    let balancer = cluster.addr("balancer");
    let hubs = [cluster.addr("hub-1"), cluster.addr("hub-2")];

    // The probes and metrics stay inside: the balancer only passes the public paths.
    let (status, _) = http_text(balancer, "/readyz").await;
    assert_eq!(status, 404, "/readyz is not public");
    for hub in hubs {
        let (status, body) = http_text(hub, "/readyz").await;
        assert_eq!(status, 200, "hub {hub} ready: {body}");
    }

    // The market, through the balancer: seller, product, a live show, the product pinned.
    let price = 250_000;
    let market = Market::create(balancer, &[price], 100, 3, true).await;
    let product = market.product(0).to_owned();
    let seller = market.pinned_seller(0).await;

    // Viewers through the balancer; each holds its connection, so the balancer spreads them.
    let mut viewers = Vec::new();
    for i in 0..VIEWERS {
        let buyer = format!("buyer-{i}");
        let viewer = Client::connect(balancer, &market.show, &token(Role::Viewer, &buyer), None)
            .await
            .unwrap_or_else(|status| panic!("viewer {i} refused: {status}"));
        viewers.push((buyer, viewer));
    }
    let on_hubs = [
        hub_connections(hubs[0]).await,
        hub_connections(hubs[1]).await,
    ];
    assert_eq!(
        on_hubs.iter().sum::<u64>(),
        VIEWERS as u64 + 1,
        "every viewer and the seller hold one connection: {on_hubs:?}"
    );
    assert!(
        on_hubs.iter().all(|&n| n >= 1),
        "both hubs serve connections of the show: {on_hubs:?}"
    );

    for (i, (_, viewer)) in viewers.iter_mut().enumerate() {
        let claim_id = format!("claim-{i}");
        let mut result = viewer.claim(&claim_id, &product, UNITS, price).await;
        // A claim not decided within the claim deadline is answered `pending` first; its
        // definite answer follows on the same connection.
        if result.outcome == ClaimOutcomeKind::Pending {
            result = viewer
                .until(|m| match m {
                    ServerMessage::ClaimResult(r)
                        if r.claim_id == claim_id && r.outcome != ClaimOutcomeKind::Pending =>
                    {
                        Some(r.clone())
                    }
                    _ => None,
                })
                .await;
        }
        assert_eq!(
            result.outcome,
            ClaimOutcomeKind::Accepted,
            "claim {i}: {result:?}"
        );
    }
    // Every hub's viewers see the claims made on the other hub: the stock reaches each of them.
    let left = 100 - VIEWERS as u32 * UNITS as u32;
    for (_, viewer) in &mut viewers {
        viewer
            .until(|m| match m {
                ServerMessage::Stock(s) => s
                    .levels
                    .iter()
                    .any(|l| l.product_id == product && l.left == left)
                    .then_some(()),
                _ => None,
            })
            .await;
    }

    market.close_via(balancer).await;
    seller.close().await;
    for (_, viewer) in viewers {
        viewer.close().await;
    }

    // The order service settles the show: one order per buyer.
    let deadline = Instant::now() + SETTLE_WAIT;
    let orders = loop {
        let (status, orders) = http(
            balancer,
            "GET",
            &format!("/api/shows/{}/orders", market.show),
            Some(&market.operator),
            None,
        )
        .await;
        assert_eq!(status, 200, "orders: {orders}");
        let orders = orders.as_array().cloned().unwrap_or_default();
        if orders.len() == VIEWERS {
            break orders;
        }
        assert!(
            Instant::now() < deadline,
            "the order service wrote {} of {VIEWERS} orders within {SETTLE_WAIT:?}",
            orders.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut buyers: Vec<&str> = orders
        .iter()
        .map(|o| o["buyer_id"].as_str().unwrap())
        .collect();
    buyers.sort_unstable();
    let expected: Vec<String> = (0..VIEWERS).map(|i| format!("buyer-{i}")).collect();
    assert_eq!(
        buyers,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for order in &orders {
        assert_eq!(order["units"], UNITS, "{order}");
        assert_eq!(order["total"], UNITS * price, "{order}");
        assert_eq!(order["status"], "pending_payment", "{order}");
    }

    // Stopping leaves nothing running: no process, no listening port, no temp dir.
    let pids: Vec<(String, u32)> = ["hub-1", "hub-2", "orders", "nginx", "redis", "postgres"]
        .iter()
        .map(|n| (n.to_string(), cluster.pid(n)))
        .collect();
    let ports = [
        balancer,
        hubs[0],
        hubs[1],
        cluster.addr("redis"),
        cluster.addr("postgres"),
    ];
    let temp_dir = PathBuf::from(cluster.lines["env"].trim())
        .parent()
        .unwrap()
        .to_owned();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stop = Command::new(repo.join("scripts/cluster"))
        .args(["stop", "--state"])
        .arg(&cluster.state)
        .status();
    let stopped = tokio::time::timeout(STOP_WAIT, stop)
        .await
        .expect("stop ends in time");
    assert!(stopped.unwrap().success(), "scripts/cluster stop");
    let start_status = tokio::time::timeout(STOP_WAIT, cluster.child.wait())
        .await
        .expect("start ends once stopped")
        .unwrap();
    assert!(
        start_status.code().is_some_and(|c| c == 143),
        "start ends as asked to (SIGTERM): {start_status:?}"
    );
    // Daemons reparented to init may wait a moment to be reaped; `running` ignores zombies.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|(_, pid)| running(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, pid) in &pids {
        assert!(!running(*pid), "{name} (pid {pid}) still runs");
    }
    for addr in ports {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts connections"
        );
    }
    assert!(!temp_dir.exists(), "{} removed", temp_dir.display());
    assert!(!cluster.state.exists(), "the state file removed");
}
