//! The Redis inventory against the shared conformance suite, on the real Redis that
//! `scripts/test` provides (NIGHTMARKET_TEST_REDIS_URL). Each run uses its own key prefix.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use nightmarket_domain::{ClaimDecision, ShowId};
use nightmarket_inventory::conformance::fixtures::{self, LIST, claim as try_claim};
use nightmarket_inventory::testing::{OwnRedis, redis_url, run_across_a_script_flush};
use nightmarket_inventory::{
    Cancel, Claim, Command, DecisionClock, Inventory, RedisInventory, conformance,
};
use nightmarket_store::testing::eventually;

/// A Redis inventory under a key prefix of its own, for one conformance case.
async fn fresh_inventory() -> (Arc<dyn Inventory>, ()) {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .deciding_by(DecisionClock::Scripted);
    (Arc::new(inv), ())
}

/// One test per case of the shared suite: `conformance_cases::<case>`.
mod conformance_cases {
    nightmarket_inventory::inventory_conformance!(super::fresh_inventory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_inventory_decides_at_execution() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    conformance::decided_at_execution(&inv, "redis")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_cache_flush() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let url = redis_url();
    let inv: Arc<dyn Inventory> = Arc::new(
        RedisInventory::connect(&url, &prefix, 1000)
            .await
            .unwrap()
            .deciding_by(DecisionClock::Scripted),
    );
    // A Redis restart loses its script cache; EVALSHA then falls back to EVAL.
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    run_across_a_script_flush(inv, &mut conn).await.unwrap();
}

/// Waits until Redis counts `n` subscribers of `channel` (subscribing is asynchronous).
async fn subscribers(conn: &redis::aio::MultiplexedConnection, channel: &str, n: u64) {
    eventually(&format!("{n} subscribers of {channel}"), || async {
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        (counts.first().map(|c| c.1) == Some(n))
            .then_some(())
            .ok_or(format!("{counts:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_published_to_the_show_channel_until_it_is_unwatched() {
    use nightmarket_domain::ShowEvent;
    use nightmarket_inventory::FeedItem;
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    let show = ShowId::parse("feed").unwrap();
    inv.open_show(&show, fixtures::lineup(5, 2).unwrap())
        .await
        .unwrap();
    let (feed, mut rx) = inv.event_feed();
    feed.watch(&show);
    let channel = format!("{prefix}{{{show}}}:ev");
    let conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    subscribers(&conn, &channel, 1).await;
    let sent = inv.command(&show, Command::GoLive, 1).await.unwrap();
    let pinned = inv
        .command(&show, Command::Pin(fixtures::pid("p1")), 2)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            FeedItem::Event(s, ev) => {
                assert_eq!(s, show);
                got.push(ev);
            }
            FeedItem::Reconnected => {}
        }
    }
    assert_eq!(got, [sent, pinned].concat());
    assert!(matches!(got[1].event, ShowEvent::Pinned { .. }));

    // Let go of, the show is no longer followed: Redis counts no subscriber on its channel.
    feed.unwatch(&show);
    subscribers(&conn, &channel, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_before_acknowledging() {
    use nightmarket_inventory::InventoryError;
    let primary = OwnRedis::start(&[]);
    let inv = RedisInventory::connect(&primary.url(), "w:", 100)
        .await
        .unwrap()
        .with_wait(1, 100);
    let show = ShowId::parse("wait").unwrap();
    inv.open_show(&show, fixtures::lineup(10, 5).unwrap())
        .await
        .unwrap();
    // No replica: the command applies, but is not acknowledged.
    assert!(matches!(
        inv.command(&show, Command::GoLive, 1).await,
        Err(InventoryError::Unavailable(_))
    ));
    let replica = OwnRedis::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let client = redis::Client::open(primary.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..200 {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    inv.command(&show, Command::Pin(fixtures::pid("p1")), 2)
        .await
        .unwrap();
    let req = claim("c1", "b1", 2);
    assert!(matches!(
        inv.claim(&show, req.clone(), 3).await.unwrap(),
        ClaimDecision::Accepted(_)
    ));
    // The replica has it: stop it, and the retry of the same claim is not acknowledged until
    // replicated again (its outcome, as far as the caller knows, is unknown), never counted
    // twice.
    drop(replica);
    assert!(matches!(
        inv.claim(&show, req.clone(), 4).await,
        Err(InventoryError::Unknown(_))
    ));
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!(stock.levels[0].1, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_claim_and_the_service_recovers() {
    use nightmarket_inventory::{FeedItem, InventoryError};
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let redis = OwnRedis::start(&aof);
    let inv = RedisInventory::connect(&redis.url(), "r:", 100)
        .await
        .unwrap();
    let show = ShowId::parse("restart").unwrap();
    inv.open_show(&show, fixtures::lineup(50, 50).unwrap())
        .await
        .unwrap();
    let (feed, mut events) = inv.event_feed();
    feed.watch(&show);
    inv.command(&show, Command::GoLive, 1).await.unwrap();
    inv.command(&show, Command::Pin(fixtures::pid("p1")), 2)
        .await
        .unwrap();
    let claim = |n: u32| claim(&format!("c{n}"), "b1", 1);
    for n in 0..10 {
        assert!(matches!(
            inv.claim(&show, claim(n), 3).await.unwrap(),
            ClaimDecision::Accepted(_)
        ));
    }

    let (port, dir) = redis.kill();
    // While Redis is down: a retryable failure (refused, or unknown when the request may have
    // gone out on the connection that broke), never accepted unrecorded.
    assert!(matches!(
        inv.claim(&show, claim(10), 4).await,
        Err(InventoryError::Unavailable(_) | InventoryError::Unknown(_))
    ));
    assert!(inv.health().is_err());
    let _redis = OwnRedis::start_at(port, dir, &aof);

    // The connection comes back by itself; the scripts are reloaded (the cache is empty).
    let mut recovered = None;
    for _ in 0..100 {
        match inv.claim(&show, claim(10), 5).await {
            Ok(d) => {
                recovered = Some(d);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(
        matches!(recovered, Some(ClaimDecision::Accepted(_))),
        "{recovered:?}"
    );
    assert!(inv.health().is_ok());
    // Every claim acknowledged before the crash is still there, counted once.
    assert!(matches!(
        inv.claim(&show, claim(3), 6).await.unwrap(),
        ClaimDecision::Duplicate(_)
    ));
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!(stock.levels[0].1, 39);
    // The feed resubscribed and says so, so nodes repair what they missed.
    let mut reconnected = false;
    while let Ok(Some(item)) =
        tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await
    {
        if matches!(item, FeedItem::Reconnected) {
            reconnected = true;
            break;
        }
    }
    assert!(reconnected);
}

/// A TCP proxy in front of Redis that steps in once, on the first request that contains a
/// marker: `hold` holds back every reply from then on until [`ReplyGate::release`] (the
/// request is in Redis, its answer not yet at the node); `drop` forwards the request, then cuts
/// the connection instead of returning the reply (the script ran, the node never heard).
struct ReplyGate {
    port: u16,
    /// Told once the `hold` marker has gone through to Redis.
    held: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl ReplyGate {
    async fn start(hold: Option<&'static [u8]>, drop: Option<&'static [u8]>) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        // Once for the whole proxy, whichever connection the marker comes on.
        let hold_seen = Arc::new(AtomicBool::new(false));
        let drop_seen = Arc::new(AtomicBool::new(false));
        let (told, released) = (held.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let holding = Arc::new(AtomicBool::new(false));
                let dropping = Arc::new(AtomicBool::new(false));
                let (hold_seen, drop_seen, told) =
                    (hold_seen.clone(), drop_seen.clone(), told.clone());
                let (arm_hold, arm_drop) = (holding.clone(), dropping.clone());
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let has = |m: Option<&[u8]>| {
                            m.is_some_and(|m| buf[..n].windows(m.len()).any(|w| w == m))
                        };
                        let hold_now = has(hold) && !hold_seen.swap(true, Ordering::SeqCst);
                        if has(drop) && !drop_seen.swap(true, Ordering::SeqCst) {
                            arm_drop.store(true, Ordering::SeqCst);
                        }
                        if hold_now {
                            arm_hold.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if hold_now {
                            told.notify_one();
                        }
                    }
                });
                let released = released.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if holding.swap(false, Ordering::SeqCst) {
                            released.notified().await;
                        }
                        if dropping.load(Ordering::SeqCst) {
                            // The reply is swallowed and the connection cut.
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Self {
            port,
            held,
            release,
        }
    }

    /// An inventory that talks to Redis through this proxy, under a key prefix of its own.
    async fn inventory(&self) -> Arc<RedisInventory> {
        let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
        let url = format!("redis://127.0.0.1:{}", self.port);
        Arc::new(RedisInventory::connect(&url, &prefix, 100).await.unwrap())
    }

    /// Waits until the request with the `hold` marker is in Redis.
    async fn wait_held(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.held.notified())
            .await
            .expect("the held request reaches Redis");
    }

    fn release(&self) {
        self.release.notify_one();
    }
}

/// Polls `fut` once, so that whatever it does before its first wait (a claim joins its show's
/// queue) is done, and hands it back to be awaited later (or dropped).
async fn started<F: std::future::Future + Unpin>(mut fut: F) -> F {
    tokio::select! {
        biased;
        _ = &mut fut => panic!("answered before its batch could go"),
        () = std::future::ready(()) => {}
    }
    fut
}

/// The units taken from `p1` and the claim log's length.
async fn taken(inv: &RedisInventory, show: &ShowId) -> (u32, u64) {
    let stock = inv.stock(show, 0).await.unwrap();
    (100 - stock.levels[0].1, stock.log_len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_and_a_retry_count_once_and_the_log_matches_the_counters() {
    let gate = ReplyGate::start(None, Some(b"lost-reply")).await;
    let inv = gate.inventory().await;
    let show = fixtures::live_show(inv.as_ref(), "lost", 100, 100, 1)
        .await
        .unwrap();
    let claim = |id: &str, qty: u32| claim(id, "b1", qty);
    // The script runs but its reply is lost: the caller sees a retryable failure...
    assert!(inv.claim(&show, claim("lost-reply", 3), 3).await.is_err());
    // ...and retries the same claim id until it gets an answer: the original acceptance.
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(d) = inv.claim(&show, claim("lost-reply", 3), 4).await {
            answer = Some(d);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        matches!(answer, Some(ClaimDecision::Duplicate(_))),
        "{answer:?}"
    );
    for n in 0..20 {
        inv.claim(&show, claim(&format!("more-{n}"), 2), 5)
            .await
            .unwrap();
    }
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!(
        stock.levels[0].1,
        100 - 3 - 40,
        "the lost-reply claim counted exactly once"
    );

    // The claim log holds exactly the accepted claims, and they sum to what the counters took.
    let page = inv
        .claim_log(&show, &nightmarket_domain::LogCursor::default(), 100)
        .await
        .unwrap();
    let units: u32 = page
        .entries
        .iter()
        .map(|e| match e {
            nightmarket_domain::LogEntry::Claim { record, .. } => record.quantity,
            other => panic!("only claims in this log, got {other:?}"),
        })
        .sum();
    assert_eq!(page.entries.len(), 21);
    assert_eq!(units, 100 - stock.levels[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_reads_the_claim_log_of_a_show_it_never_opened() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let writer = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .deciding_by(DecisionClock::Scripted);
    let reader = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .deciding_by(DecisionClock::Scripted);
    conformance::claim_log_from_another_instance(&writer, &reader, "node")
        .await
        .unwrap();
}

/// A show live with `p1` pinned (10 units, 5 a buyer), on a prefix of its own.
async fn live_show(name: &str) -> (RedisInventory, String, ShowId) {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    let show = fixtures::live_show(&inv, name, 10, 5, 1).await.unwrap();
    (inv, prefix, show)
}

/// `qty` units of `p1` at its list price.
fn claim(id: &str, buyer: &str, qty: u32) -> nightmarket_domain::ClaimRequest {
    try_claim(id, buyer, qty).unwrap()
}

const KEYS: [&str; 10] = [
    "meta", "lineup", "left", "held", "claims", "flash", "log", "events", "mine", "products",
];

/// PTTL of every key of the show: -2 missing, -1 no TTL.
async fn pttls(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, show: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for k in KEYS {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}{{{show}}}:{k}"))
            .query_async(conn)
            .await
            .unwrap();
        out.push(ttl);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_sets_every_key_of_the_closed_show_to_expire_and_nothing_before() {
    use nightmarket_domain::{BuyerId, ClaimId, LogCursor};
    use nightmarket_inventory::{Command, InventoryError};
    let (inv, prefix, show) = live_show("ttl").await;
    inv.claim(&show, claim("t1", "b1", 2), 3).await.unwrap();
    inv.claim(&show, claim("t2", "b2", 1), 4).await.unwrap();
    inv.cancel(
        &show,
        Cancel {
            buyer: BuyerId::parse("b2").unwrap(),
            claim_id: ClaimId::parse("t2").unwrap(),
            now: 5,
        },
    )
    .await
    .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keep = std::time::Duration::from_secs(60);
    assert!(matches!(
        inv.release(&show, keep).await,
        Err(InventoryError::Command(_))
    ));
    inv.command(&show, Command::Close, 6).await.unwrap();
    let before = pttls(&mut conn, &prefix, "ttl").await;
    // Every key but `flash` (none ran) exists, and none expires.
    for (k, ttl) in KEYS.iter().zip(&before) {
        let expected = if *k == "flash" { -2 } else { -1 };
        assert_eq!(*ttl, expected, "{k} before release");
    }

    inv.release(&show, keep).await.unwrap();
    let after = pttls(&mut conn, &prefix, "ttl").await;
    for (k, ttl) in KEYS.iter().zip(&after) {
        if *k == "flash" {
            assert_eq!(*ttl, -2, "{k} after release");
        } else {
            assert!(*ttl > 50_000 && *ttl <= 60_000, "{k} after release: {ttl}");
        }
    }
    let page = inv
        .claim_log(&show, &LogCursor::default(), 100)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 4, "the log is kept meanwhile");

    // Once expired the show is gone, and reads say so.
    inv.release(&show, std::time::Duration::from_millis(50))
        .await
        .unwrap();
    eventually("the released keys expired", || async {
        let ttls = pttls(&mut conn.clone(), &prefix, "ttl").await;
        ttls.iter()
            .all(|t| *t == -2)
            .then_some(())
            .ok_or(format!("{ttls:?}"))
    })
    .await;
    assert!(matches!(
        inv.claim_log(&show, &LogCursor::default(), 100).await,
        Err(InventoryError::UnknownShow(_))
    ));
    assert!(matches!(
        inv.view(&show, None, 7).await,
        Err(InventoryError::UnknownShow(_))
    ));
    // Releasing what is gone is not an error: settlement may retry.
    inv.release(&show, keep).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_whose_meta_expired_first_is_not_opened_afresh_over_its_log() {
    use nightmarket_inventory::InventoryError;
    let (inv, prefix, show) = live_show("half").await;
    inv.claim(&show, claim("h1", "b1", 2), 3).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Keys with one deadline still expire one at a time.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}{{half}}:meta"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let lineup = fixtures::lineup(10, 5).unwrap();
    inv.open_show(&show, lineup).await.unwrap();
    let v = inv.view(&show, None, 4).await;
    assert!(matches!(v, Err(InventoryError::UnknownShow(_))), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_logged_without_the_claim_time_takes_it_from_the_claim() {
    use nightmarket_domain::{LogCursor, LogEntry};
    let (inv, prefix, show) = live_show("legacy").await;
    inv.claim(&show, claim("g1", "b1", 2), 3).await.unwrap();
    // A cancellation as the scripts logged it before its entry carried `claimed_at`.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = |k: &str| format!("{prefix}{{legacy}}:{k}");
    let _: () = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(key("claims"))
        .arg("g1")
        .arg(format!("b1|p1|2|{LIST}||3|8"))
        .ignore()
        .cmd("HINCRBY")
        .arg(key("meta"))
        .arg("log_len")
        .arg(1)
        .ignore()
        .cmd("XADD")
        .arg(key("log"))
        .arg("*")
        .arg(&[
            ("pos", "1"),
            ("kind", "cancel"),
            ("claim_id", "g1"),
            ("buyer", "b1"),
            ("product", "p1"),
            ("quantity", "2"),
            ("unit_price", LIST.to_string().as_str()),
            ("flash_id", ""),
            ("at", "8"),
        ])
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let page = inv
        .claim_log(&show, &LogCursor::default(), 10)
        .await
        .unwrap();
    let [
        LogEntry::Claim {
            record: claimed, ..
        },
        LogEntry::Cancel { pos, record, at },
    ] = page.entries.as_slice()
    else {
        panic!("a claim and its cancellation, got {:?}", page.entries);
    };
    assert_eq!(
        (*pos, *at, record.at, record.cancelled_at),
        (1, 8, 3, Some(8))
    );
    assert_eq!(record.claim_id, claimed.claim_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_kept_in_one_list_before_the_chunks_are_still_the_buyers() {
    use nightmarket_domain::BuyerId;
    // A show live across the upgrade: its first claims were listed in the `mine` field named
    // by the buyer alone, the ones after go to the buyer's chunks.
    let (inv, prefix, show) = live_show("legacy-mine").await;
    inv.claim(&show, claim("l1", "b1", 1), 3).await.unwrap();
    inv.claim(&show, claim("l2", "b1", 1), 4).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mine = format!("{prefix}{{legacy-mine}}:mine");
    let _: () = redis::cmd("DEL")
        .arg(&mine)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&mine)
        .arg("b1")
        .arg("l1,l2")
        .query_async(&mut conn)
        .await
        .unwrap();
    inv.claim(&show, claim("l3", "b1", 1), 5).await.unwrap();
    let view = inv
        .view(&show, Some(&BuyerId::parse("b1").unwrap()), 6)
        .await
        .unwrap();
    let ids: Vec<&str> = view.my_claims.iter().map(|c| c.claim_id.as_str()).collect();
    assert_eq!(ids, ["l1", "l2", "l3"]);
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&mine)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["b1", "b1#", "b1#0"]);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The late flash accept: claims sent during a flash while Redis hangs wait in the node's
/// connection and in Redis's socket buffer, and run once Redis resumes, after the flash ended.
/// They are judged at that moment (stale price), not at the time they were sent; and one with
/// a deadline that passed meanwhile changes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_queued_behind_a_hung_redis_are_judged_when_they_run() {
    use nightmarket_domain::{Dong, FlashSpec, ShowEvent};
    use nightmarket_inventory::InventoryError;
    let redis = OwnRedis::start(&[]);
    let inv = std::sync::Arc::new(
        RedisInventory::connect(&redis.url(), "late:", 100)
            .await
            .unwrap(),
    );
    let show = fixtures::live_show(inv.as_ref(), "late", 10, 5, wall_ms())
        .await
        .unwrap();
    let spec = FlashSpec {
        product_id: fixtures::pid("p1"),
        price: Dong::parse(60_000).unwrap(),
        duration_s: 1,
        quantity_cap: None,
        countdown_s: 0,
    };
    let events = inv
        .command(&show, Command::StartFlash(spec), wall_ms())
        .await
        .unwrap();
    let ShowEvent::FlashStarted { flash } = &events[0].event else {
        panic!("flash_started expected, got {events:?}");
    };
    let mut flash_claim = claim("at-flash", "b1", 1);
    flash_claim.seen_price = Dong::parse(60_000).unwrap();
    let mut deadline_claim = claim("with-deadline", "b2", 1);
    deadline_claim.seen_price = Dong::parse(60_000).unwrap();

    redis.pause();
    let sent = wall_ms();
    assert!(sent < flash.ends_at, "the claims are sent during the flash");
    let deadline = sent + 300;
    let queued = {
        let (inv, show, a, b) = (
            inv.clone(),
            show.clone(),
            flash_claim.clone(),
            deadline_claim.clone(),
        );
        tokio::spawn(async move {
            let (first, second) = tokio::join!(
                inv.claim(&show, a, sent),
                inv.claim_within(
                    &show,
                    Claim {
                        req: b,
                        now: sent,
                        deadline: Some(deadline)
                    }
                ),
            );
            (first, second)
        })
    };
    // Hung past the flash's end, then resumed: what queued runs now. The hang's length is the
    // fault under test, not a wait for something to happen.
    let wait = (flash.ends_at - wall_ms() + 300).max(0) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    redis.resume();
    let (first, second) = queued.await.unwrap();
    // Whatever the node heard (the replies may have timed out), Redis decided at execution: the
    // flash-price claim is stale and the deadline claim expired. Sending each again tells.
    assert!(
        !matches!(first, Ok(ClaimDecision::Accepted(_))),
        "accepted after the flash: {first:?}"
    );
    assert!(
        !matches!(second, Ok(ClaimDecision::Accepted(_))),
        "accepted after its deadline: {second:?}"
    );
    let again = inv.claim(&show, flash_claim, wall_ms()).await.unwrap();
    assert!(
        matches!(&again, ClaimDecision::Refused(r) if r.reason == nightmarket_domain::RefusalReason::StalePrice),
        "the flash-price claim was never accepted: {again:?}"
    );
    let again = inv
        .claim_within(
            &show,
            Claim {
                req: deadline_claim,
                now: wall_ms(),
                deadline: Some(deadline),
            },
        )
        .await;
    assert!(
        matches!(again, Err(InventoryError::DeadlinePassed)),
        "the deadline claim never executed: {again:?}"
    );
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!(stock.levels[0].1, 10, "no unit taken");
    assert_eq!(stock.log_len, 0, "nothing in the claim log");
}

/// How many script calls (EVALSHA) a Redis has run.
async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

type Answer = Result<ClaimDecision, nightmarket_inventory::InventoryError>;

/// A live show (`p1`: 100 units, 100 a buyer) behind a [`ReplyGate`], with a claim's call out
/// and its reply held: claims made now wait in the show's queue for the next call. Returns the
/// gate (release it to let the reply through), the inventory, the show, and the held claim.
async fn a_call_held_out(
    name: &str,
    drop: Option<&'static [u8]>,
) -> (
    ReplyGate,
    Arc<RedisInventory>,
    ShowId,
    tokio::task::JoinHandle<Answer>,
) {
    let gate = ReplyGate::start(Some(b"held-claim"), drop).await;
    let inv = gate.inventory().await;
    let show = fixtures::live_show(inv.as_ref(), name, 100, 100, 1)
        .await
        .unwrap();
    let first = tokio::spawn({
        let (inv, show) = (inv.clone(), show.clone());
        async move { inv.claim(&show, claim("held-claim", "b0", 1), 2).await }
    });
    gate.wait_held().await;
    (gate, inv, show, first)
}

/// Claims on one show that arrive together are decided in batches: far fewer script calls
/// than claims, every claim answered on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_arrive_together_share_script_calls() {
    const CLAIMS: u64 = 200;
    let redis = OwnRedis::start(&[]);
    let inv = RedisInventory::connect(&redis.url(), "together:", 100)
        .await
        .unwrap();
    let show = fixtures::live_show(&inv, "together", 1_000, 10, 1)
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let before = script_calls(&mut conn).await;
    let answers = futures_util::future::join_all((0..CLAIMS).map(|n| {
        inv.claim(
            &show,
            claim(&format!("s{n}"), &format!("b{}", n % 50), 1),
            2,
        )
    }))
    .await;
    let calls = script_calls(&mut conn).await - before;
    for (n, answer) in answers.iter().enumerate() {
        assert!(
            matches!(answer, Ok(ClaimDecision::Accepted(a)) if a.record.claim_id.as_str() == format!("s{n}")),
            "claim s{n}: {answer:?}"
        );
    }
    assert!(
        calls <= CLAIMS / 4,
        "{calls} script calls for {CLAIMS} claims sent together"
    );
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!((stock.levels[0].1, stock.log_len), (800, CLAIMS));
}

/// A batch whose reply is lost leaves each of its claims an unknown outcome (the script ran),
/// and sending each again finds it executed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_batch_reply_leaves_each_claim_unknown_and_each_resend_finds_it_once() {
    use nightmarket_inventory::InventoryError;
    let (gate, inv, show, first) = a_call_held_out("batch", Some(b"lost-batch")).await;
    // These wait in the show's queue and go together in the next call, whose reply is lost.
    let ids: Vec<String> = (1..10)
        .map(|n| match n {
            5 => "lost-batch".to_owned(),
            n => format!("q{n}"),
        })
        .collect();
    let batch = started(Box::pin(futures_util::future::join_all(
        ids.iter().map(|id| inv.claim(&show, claim(id, "b1", 2), 3)),
    )))
    .await;
    gate.release();
    let first = first.await.unwrap();
    assert!(matches!(first, Ok(ClaimDecision::Accepted(_))), "{first:?}");
    for (id, answer) in ids.iter().zip(batch.await) {
        assert!(
            matches!(answer, Err(InventoryError::Unknown(_))),
            "{id}: {answer:?}"
        );
    }
    for id in &ids {
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(d) = inv.claim(&show, claim(id, "b1", 2), 4).await {
                answer = Some(d);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            matches!(answer, Some(ClaimDecision::Duplicate(_))),
            "{id} sent again: {answer:?}"
        );
    }
    assert_eq!(taken(&inv, &show).await, (1 + 9 * 2, 10));
}

/// A claim whose caller went away (its connection closed) while it waited for its batch is
/// never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_caller_left_before_its_batch_went_is_never_sent() {
    use nightmarket_inventory::InventoryError;
    let (gate, inv, show, first) = a_call_held_out("left", None).await;
    let gone = started(inv.claim(&show, claim("gone", "b1", 2), 3)).await;
    drop(gone);
    gate.release();
    let first = first.await.unwrap();
    assert!(matches!(first, Ok(ClaimDecision::Accepted(_))), "{first:?}");
    // Sent again with a deadline long past, it is expired: it never executed.
    let again = inv
        .claim_within(
            &show,
            Claim {
                req: claim("gone", "b1", 2),
                now: 4,
                deadline: Some(0),
            },
        )
        .await;
    assert!(
        matches!(again, Err(InventoryError::DeadlinePassed)),
        "{again:?}"
    );
    assert_eq!(taken(&inv, &show).await, (1, 1));
}

/// The first claim on an idle show is sent by its own caller's task; if that caller leaves
/// while the call is out, the claims queued behind it are still sent and decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_queued_behind_a_caller_who_left_are_still_decided() {
    let (gate, inv, show, first) = a_call_held_out("leader", None).await;
    let behind = started(inv.claim(&show, claim("behind", "b1", 2), 3)).await;
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    gate.release();
    let behind = behind.await;
    assert!(
        matches!(&behind, Ok(ClaimDecision::Accepted(a)) if a.record.claim_id.as_str() == "behind"),
        "{behind:?}"
    );
    // The first claim ran too (its call was out); only its caller did not hear.
    let again = inv.claim(&show, claim("held-claim", "b0", 1), 4).await;
    assert!(
        matches!(again, Ok(ClaimDecision::Duplicate(_))),
        "{again:?}"
    );
    assert_eq!(taken(&inv, &show).await, (3, 2));
}
