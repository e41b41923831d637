//! The order service end to end: buyers claim over WebSocket, the show closes, and `serve`
//! settles it into orders on its own; `nightmarket settle` inspects and settles by hand, with
//! its exit codes.

use crate::support::{eventually, postgres_url, store_of};
use std::collections::BTreeMap;

use crate::support::{Client, Market, TestServer};
use nightmarket_domain::{OrderStatus, ShowId};
use nightmarket_store::{SettlementState, Store};
use nightmarket_wire::server::{CancelOutcomeKind, ClaimOutcomeKind, ServerMessage};

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");
const LIST: i64 = 180_000;

/// Buyers claim over WebSocket, one cancels; returns the units each buyer holds.
async fn buy(m: &Market) -> BTreeMap<String, u64> {
    let _seller = m.pinned_seller(0).await;
    let p = m.product(0).to_owned();
    let mut held = BTreeMap::new();
    for b in 0..6 {
        let buyer = format!("buyer-{b}");
        let mut c = Client::viewer(m.addr, &m.show, &buyer).await;
        for k in 0..=b % 3 {
            let r = c.claim(&format!("{buyer}-{k}"), &p, 1, LIST).await;
            assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
            *held.entry(buyer.clone()).or_insert(0) += 1;
        }
        if b == 5 {
            c.send(serde_json::json!({"type": "cancel", "claim_id": "buyer-5-0"}))
                .await;
            let r = c
                .until(|msg| match msg {
                    ServerMessage::CancelResult(r) if r.claim_id == "buyer-5-0" => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(r.outcome, CancelOutcomeKind::Cancelled, "{r:?}");
            *held.get_mut(&buyer).unwrap() -= 1;
        }
        c.close().await;
    }
    held
}

async fn closed_shows_settle_in_serve(database_url: Option<String>) {
    let url = database_url.clone();
    let server = TestServer::start(|c| {
        c.orders.poll_ms = 20;
        if let Some(url) = url {
            c.database_url = url;
        }
    })
    .await;
    let m = Market::create(server.addr, &[LIST], 100, 5, true).await;
    let held = buy(&m).await;
    let store = store_of(server.dir.path(), database_url.as_deref()).await;
    let show = ShowId::parse(m.show.clone()).unwrap();
    // Recorded while live, not settled.
    eventually("the claim log recorded", || async {
        let next = store.log_checkpoint(&show).await.unwrap().cursor.next_pos;
        (next >= 10).then_some(()).ok_or(format!("up to {next}"))
    })
    .await;
    assert!(store.settlement(&show).await.unwrap().is_none());
    m.close().await;
    let settlement = settled(&store, &show).await;
    assert_eq!(settlement.state, SettlementState::Settled, "{settlement:?}");
    assert_eq!((settlement.claims, settlement.cancels), (12, 1));
    let orders: BTreeMap<String, u64> = store
        .show_orders(&show)
        .await
        .unwrap()
        .into_iter()
        .map(|o| {
            assert_eq!(o.status, OrderStatus::PendingPayment);
            assert_eq!(o.total, LIST * o.units as i64);
            (o.buyer_id.to_string(), o.units)
        })
        .collect();
    assert_eq!(orders, held);
    assert_eq!(settlement.revenue, LIST * held.values().sum::<u64>() as i64);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_show_is_settled_by_serve_on_sqlite() {
    closed_shows_settle_in_serve(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_show_is_settled_by_serve_on_postgres() {
    closed_shows_settle_in_serve(Some(postgres_url().await)).await;
}

/// Runs `nightmarket settle` over a data directory; returns the exit code and the JSON printed.
async fn settle_cli(dir: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = crate::support::command(EXE, dir, &["settle"])
        .args(args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (out.status.code().unwrap_or(-1), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_by_hand_inspects_then_settles_once() {
    // The service inside serve is off: everything here is by hand.
    let server = TestServer::start(|c| c.orders.in_serve = false).await;
    let m = Market::create(server.addr, &[LIST], 100, 5, true).await;
    let live = Market::create(server.addr, &[LIST], 10, 1, true).await;
    let held = buy(&m).await;
    m.close().await;
    let dir = server.stop_keep_dir().await;

    let (code, out) = settle_cli(dir.path(), &[&live.show]).await;
    assert_eq!(
        (code, out["outcome"].as_str()),
        (4, Some("not_closed")),
        "{out}"
    );
    let (code, out) = settle_cli(dir.path(), &["no-such-show"]).await;
    assert_eq!(
        (code, out["code"].as_str()),
        (2, Some("unknown_show")),
        "{out}"
    );
    let (code, out) = settle_cli(dir.path(), &[&m.show, "--dry-run"]).await;
    // A dry run reads only what is recorded: nothing yet.
    assert_eq!(
        (code, out["outcome"].as_str()),
        (4, Some("not_closed")),
        "{out}"
    );

    let (code, out) = settle_cli(dir.path(), &[&m.show]).await;
    assert_eq!(
        (code, out["outcome"].as_str()),
        (0, Some("settled")),
        "{out}"
    );
    assert_eq!(out["orders"], held.len());
    assert_eq!(out["units"], held.values().sum::<u64>());
    assert_eq!(out["report"]["balanced"], true);
    // Nothing was recorded while the show ran: this run recorded the whole log, and says how
    // long that and the settling took.
    let entries = out["claims"].as_u64().unwrap() + out["cancels"].as_u64().unwrap();
    assert_eq!(out["recorded_now"], entries, "{out}");
    for part in ["record", "settle", "total"] {
        assert!(out["timing_ms"][part].as_f64().unwrap() >= 0.0, "{out}");
    }
    let (code, out) = settle_cli(dir.path(), &[&m.show]).await;
    assert_eq!(
        (code, out["outcome"].as_str()),
        (0, Some("already_settled")),
        "{out}"
    );
    assert_eq!(out["recorded_now"], 0, "{out}");
    let (code, out) = settle_cli(dir.path(), &[&m.show, "--dry-run"]).await;
    assert_eq!(
        (code, out["outcome"].as_str()),
        (0, Some("already_settled")),
        "{out}"
    );

    let store = store_of(dir.path(), None).await;
    let show = ShowId::parse(m.show.clone()).unwrap();
    assert_eq!(store.show_orders(&show).await.unwrap().len(), held.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_alone_needs_the_shared_backends() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::command(EXE, dir.path(), &["orders"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("distributed mode"));
}

/// Distributed mode: a node that only serves shows, and `nightmarket orders` on its own
/// settling them from the shared Redis and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_runs_on_its_own_in_distributed_mode() {
    let db = postgres_url().await;
    let redis = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let prefix = format!("nmo{}:", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("NIGHTMARKET_REDIS_URL", redis.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_DATABASE_URL", db.as_str()),
        ("NIGHTMARKET_ORDERS_IN_SERVE", "false"),
        ("NIGHTMARKET_ORDERS_POLL_MS", "20"),
    ];
    let node = crate::support::ChildServer::start_with(EXE, dir.path(), &env)
        .await
        .unwrap();
    let mut orders = crate::support::command(EXE, dir.path(), &["orders"])
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let m = Market::create(node.addr, &[LIST], 100, 5, true).await;
    let held = buy(&m).await;
    m.close().await;
    let store = store_of(dir.path(), Some(&db)).await;
    let show = ShowId::parse(m.show.clone()).unwrap();
    let settlement = settled(&store, &show).await;
    assert_eq!(settlement.state, SettlementState::Settled, "{settlement:?}");
    assert!(
        settlement.decided_by.starts_with("order-service@"),
        "{settlement:?}"
    );
    assert_eq!(settlement.units, held.values().sum::<u64>());
    // Settled: the show's Redis keys now expire.
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}{{{}}}:log", m.show))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0,
        "the claim log key has no expiry after settlement: {ttl}"
    );
    let _ = orders.kill().await;
    node.kill().await;
}

/// `settle` over a directory that holds no store refuses, naming it, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_refuses_a_data_directory_without_a_store() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("not-here");
    let out = crate::support::command(
        EXE,
        &missing,
        &["settle", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no store at") && err.contains("not-here"),
        "{err}"
    );
    assert!(!missing.exists(), "nothing was created");
}

/// `serve` reaches every dependency before it says it listens: an unreachable store ends the
/// start with a non-zero exit naming it (password hidden), and nothing is announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_names_an_unreachable_dependency_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, name) in [
        (
            "NIGHTMARKET_DATABASE_URL",
            "postgres://nightmarket:s3cret@127.0.0.1:1/nightmarket",
            "postgres",
        ),
        ("NIGHTMARKET_REDIS_URL", "redis://127.0.0.1:1", "redis"),
    ] {
        let out = crate::support::command(EXE, dir.path(), &["serve"])
            .env("NIGHTMARKET_DATABASE_TIMEOUT_MS", "500")
            .env("NIGHTMARKET_LOG", "error")
            .env(var, value)
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
        assert!(
            stderr.contains(&format!("cannot use {name} at")),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

/// Redis without a shared store: the node says at start what is and is not shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_the_embedded_store_says_what_it_shares() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let redis = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::command(EXE, dir.path(), &["serve"])
        .env("NIGHTMARKET_REDIS_URL", &redis)
        .env(
            "NIGHTMARKET_REDIS_PREFIX",
            format!("nm-{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(crate::support::WAIT, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("nightmarket listening on"), "{line}");
    child.kill().await.unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(
        err.contains("distributed mode with the embedded SQLite store")
            && err.contains("NIGHTMARKET_DATABASE_URL"),
        "{err}"
    );
}

/// The show's settlement, once the order service has made one.
async fn settled(store: &Store, show: &ShowId) -> nightmarket_store::SettlementRow {
    eventually("the show settled", || async {
        store
            .settlement(show)
            .await
            .unwrap()
            .ok_or_else(|| "no settlement yet".to_owned())
    })
    .await
}
