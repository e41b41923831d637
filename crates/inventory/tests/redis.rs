//! The Redis inventory against the shared conformance suite, on the real Redis that
//! `scripts/test` provides (NIGHTMARKET_TEST_REDIS_URL). Each run uses its own key prefix.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use nightmarket_inventory::{DecisionClock, Inventory, RedisInventory, conformance};

fn redis_url() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test, which starts a Redis")
    })
}

/// A Redis inventory under a key prefix of its own, for one conformance case.
async fn fresh_inventory() -> (Arc<dyn Inventory>, ()) {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .with_clock(DecisionClock::Scripted);
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
            .with_clock(DecisionClock::Scripted),
    );
    conformance::run(inv.clone(), "before").await.unwrap();
    // A Redis restart loses its script cache; EVALSHA then falls back to EVAL.
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    conformance::run(inv, "after").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_published_to_the_show_channel() {
    use nightmarket_domain::{
        Dong, LineupEntry, Product, ProductGroup, ProductId, SellerId, ShowEvent, ShowId, Stars,
    };
    use nightmarket_inventory::{Command, FeedItem};
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    let show = ShowId::parse("feed").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Chè Shan tuyết".into(),
        group: ProductGroup::Beverages,
        stars: Stars::parse(4).unwrap(),
        district: "Ba Vì".into(),
        commune: "Ba Trại".into(),
        producer: "HTX Chè Ba Vì".into(),
        list_price: Dong::parse(180_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 5,
            buyer_limit: 2,
            left: 5,
        }],
    )
    .await
    .unwrap();
    let (feed, mut rx) = inv.event_feed();
    feed.watch(&show);
    // Subscribing is asynchronous: give it a moment before the first command.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = inv.command(&show, Command::GoLive, 1).await.unwrap();
    let pinned = inv
        .command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
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
}

/// A redis-server of the test's own (so it can be given a replica, or stopped), on a free port.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_at(port, tempfile::tempdir().unwrap(), extra)
    }

    /// Starts (or restarts) a server on `port` whose files live in `dir`.
    fn start_at(port: u16, dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let bin = std::env::var("NIGHTMARKET_TEST_REDIS_SERVER")
            .unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test says how)");
        let me = Self {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server on {port} did not start");
    }

    /// SIGKILL, keeping the data directory for a restart.
    fn kill(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        (port, dir)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the server hangs with its sockets open, as under a stall or a partition that
    /// drops nothing; requests queue in its socket buffers.
    fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the server runs what queued meanwhile.
    fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} of our own redis-server");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // A paused server must run again to die of SIGKILL promptly and release its port.
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_before_acknowledging() {
    use nightmarket_domain::{
        BuyerId, ClaimDecision, ClaimId, ClaimRequest, Dong, LineupEntry, Product, ProductGroup,
        ProductId, Quantity, SellerId, ShowId, Stars,
    };
    use nightmarket_inventory::{Command, InventoryError};
    let primary = OwnRedis::start(&[]);
    let inv = RedisInventory::connect(&primary.url(), "w:", 100)
        .await
        .unwrap()
        .with_wait(1, 100);
    let show = ShowId::parse("wait").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Giò chả Ước Lễ".into(),
        group: ProductGroup::Food,
        stars: Stars::parse(4).unwrap(),
        district: "Thanh Oai".into(),
        commune: "Tân Ước".into(),
        producer: "HTX Giò chả Ước Lễ".into(),
        list_price: Dong::parse(280_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 10,
            buyer_limit: 5,
            left: 10,
        }],
    )
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
    inv.command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
        .await
        .unwrap();
    let req = ClaimRequest {
        claim_id: ClaimId::parse("c1").unwrap(),
        buyer: BuyerId::parse("b1").unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        quantity: Quantity::parse(2, 10).unwrap(),
        seen_price: Dong::parse(280_000).unwrap(),
    };
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
    use nightmarket_domain::{
        BuyerId, ClaimDecision, ClaimId, ClaimRequest, Dong, LineupEntry, Product, ProductGroup,
        ProductId, Quantity, SellerId, ShowId, Stars,
    };
    use nightmarket_inventory::{Command, FeedItem, InventoryError};
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let redis = OwnRedis::start(&aof);
    let inv = RedisInventory::connect(&redis.url(), "r:", 100)
        .await
        .unwrap();
    let show = ShowId::parse("restart").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Bưởi Diễn".into(),
        group: ProductGroup::Food,
        stars: Stars::parse(3).unwrap(),
        district: "Bắc Từ Liêm".into(),
        commune: "Phú Diễn".into(),
        producer: "HTX Bưởi Phú Diễn".into(),
        list_price: Dong::parse(120_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 50,
            buyer_limit: 50,
            left: 50,
        }],
    )
    .await
    .unwrap();
    let (feed, mut events) = inv.event_feed();
    feed.watch(&show);
    inv.command(&show, Command::GoLive, 1).await.unwrap();
    inv.command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
        .await
        .unwrap();
    let claim = |n: u32| ClaimRequest {
        claim_id: ClaimId::parse(format!("c{n}")).unwrap(),
        buyer: BuyerId::parse("b1").unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        quantity: Quantity::parse(1, 10).unwrap(),
        seen_price: Dong::parse(120_000).unwrap(),
    };
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

/// A TCP proxy in front of Redis that, once, forwards a request containing `marker` and then
/// drops the connection instead of returning Redis's reply: the script ran, the client never
/// heard.
async fn lossy_proxy(upstream: String, marker: &'static [u8]) -> u16 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let fired = fired.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let drop_reply = Arc::new(AtomicBool::new(false));
                let arm = drop_reply.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if buf[..n].windows(marker.len()).any(|w| w == marker)
                            && !fired.swap(true, Ordering::SeqCst)
                        {
                            arm.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if drop_reply.load(Ordering::SeqCst) {
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
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_and_a_retry_count_once_and_the_log_matches_the_counters() {
    use nightmarket_domain::{
        BuyerId, ClaimDecision, ClaimId, ClaimRequest, Dong, LineupEntry, Product, ProductGroup,
        ProductId, Quantity, SellerId, ShowId, Stars,
    };
    use nightmarket_inventory::Command;
    let url = redis_url();
    let upstream = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let port = lossy_proxy(upstream, b"lost-reply").await;
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&format!("redis://127.0.0.1:{port}"), &prefix, 100)
        .await
        .unwrap();
    let show = ShowId::parse("lost").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Khay mây tre đan Phú Vinh".into(),
        group: ProductGroup::Handicrafts,
        stars: Stars::parse(4).unwrap(),
        district: "Chương Mỹ".into(),
        commune: "Phú Nghĩa".into(),
        producer: "HTX Mây tre Phú Vinh".into(),
        list_price: Dong::parse(150_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 100,
            buyer_limit: 100,
            left: 100,
        }],
    )
    .await
    .unwrap();
    inv.command(&show, Command::GoLive, 1).await.unwrap();
    inv.command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
        .await
        .unwrap();
    let claim = |id: &str, qty: i64| ClaimRequest {
        claim_id: ClaimId::parse(id).unwrap(),
        buyer: BuyerId::parse("b1").unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        quantity: Quantity::parse(qty, 10).unwrap(),
        seen_price: Dong::parse(150_000).unwrap(),
    };
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
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let log: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}{{lost}}:log"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let units: u32 = log
        .ids
        .iter()
        .map(|e| e.get::<String>("quantity").unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(log.ids.len(), 21);
    assert_eq!(units, 100 - stock.levels[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_reads_the_claim_log_of_a_show_it_never_opened() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let writer = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .with_clock(DecisionClock::Scripted);
    let reader = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap()
        .with_clock(DecisionClock::Scripted);
    conformance::claim_log_from_another_instance(&writer, &reader, "node")
        .await
        .unwrap();
}

/// A show of one product, live with that product pinned, on a prefix of its own.
async fn live_show(name: &str) -> (RedisInventory, String, nightmarket_domain::ShowId) {
    use nightmarket_domain::{
        Dong, LineupEntry, Product, ProductGroup, ProductId, SellerId, ShowId, Stars,
    };
    use nightmarket_inventory::Command;
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    let show = ShowId::parse(name).unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Nón lá Chuông".into(),
        group: ProductGroup::Handicrafts,
        stars: Stars::parse(4).unwrap(),
        district: "Thanh Oai".into(),
        commune: "Phương Trung".into(),
        producer: "HTX Nón Chuông".into(),
        list_price: Dong::parse(90_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 10,
            buyer_limit: 5,
            left: 10,
        }],
    )
    .await
    .unwrap();
    inv.command(&show, Command::GoLive, 1).await.unwrap();
    inv.command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
        .await
        .unwrap();
    (inv, prefix, show)
}

fn claim(id: &str, buyer: &str, qty: i64) -> nightmarket_domain::ClaimRequest {
    use nightmarket_domain::{BuyerId, ClaimId, ClaimRequest, Dong, ProductId, Quantity};
    ClaimRequest {
        claim_id: ClaimId::parse(id).unwrap(),
        buyer: BuyerId::parse(buyer).unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        quantity: Quantity::parse(qty, 10).unwrap(),
        seen_price: Dong::parse(90_000).unwrap(),
    }
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
        &BuyerId::parse("b2").unwrap(),
        &ClaimId::parse("t2").unwrap(),
        5,
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
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        pttls(&mut conn, &prefix, "ttl")
            .await
            .iter()
            .all(|t| *t == -2)
    );
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
    use nightmarket_domain::{
        Dong, LineupEntry, Product, ProductGroup, ProductId, SellerId, Stars,
    };
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
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Nón lá Chuông".into(),
        group: ProductGroup::Handicrafts,
        stars: Stars::parse(4).unwrap(),
        district: "Thanh Oai".into(),
        commune: "Phương Trung".into(),
        producer: "HTX Nón Chuông".into(),
        list_price: Dong::parse(90_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    let lineup = vec![LineupEntry {
        product,
        allotted: 10,
        buyer_limit: 5,
        left: 10,
    }];
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
        .arg("b1|p1|2|90000||3|8")
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
            ("unit_price", "90000"),
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
    use nightmarket_domain::{
        ClaimDecision, Dong, FlashSpec, LineupEntry, Product, ProductGroup, ProductId, SellerId,
        ShowEvent, ShowId, Stars,
    };
    use nightmarket_inventory::{Command, InventoryError};
    let redis = OwnRedis::start(&[]);
    let inv = std::sync::Arc::new(
        RedisInventory::connect(&redis.url(), "late:", 100)
            .await
            .unwrap(),
    );
    let show = ShowId::parse("late").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Nón lá Chuông".into(),
        group: ProductGroup::Handicrafts,
        stars: Stars::parse(4).unwrap(),
        district: "Thanh Oai".into(),
        commune: "Phương Trung".into(),
        producer: "HTX Nón Chuông".into(),
        list_price: Dong::parse(90_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
        documents: Vec::new(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 10,
            buyer_limit: 5,
            left: 10,
        }],
    )
    .await
    .unwrap();
    inv.command(&show, Command::GoLive, wall_ms())
        .await
        .unwrap();
    inv.command(
        &show,
        Command::Pin(ProductId::parse("p1").unwrap()),
        wall_ms(),
    )
    .await
    .unwrap();
    let spec = FlashSpec {
        product_id: ProductId::parse("p1").unwrap(),
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
                inv.claim_within(&show, b, sent, Some(deadline)),
            );
            (first, second)
        })
    };
    // Hung past the flash's end, then resumed: what queued runs now.
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
        .claim_within(&show, deadline_claim, wall_ms(), Some(deadline))
        .await;
    assert!(
        matches!(again, Err(InventoryError::DeadlinePassed)),
        "the deadline claim never executed: {again:?}"
    );
    let stock = inv.stock(&show, 0).await.unwrap();
    assert_eq!(stock.levels[0].1, 10, "no unit taken");
    assert_eq!(stock.log_len, 0, "nothing in the claim log");
}
