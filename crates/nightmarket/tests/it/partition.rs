//! Partitions, not only restarts: a TCP proxy of the test's own ([`Proxy`]) sits between ONE
//! process and its dependency, and the test cuts, delays and black-holes that traffic while the
//! rest of the system carries on.
//!
//! - Redis: three `nightmarket serve` processes on one redis-server of the test's own; node 2
//!   reaches it through the proxy. Viewers on every node claim a limited stock, phase after
//!   phase (each phase pins its own product and starts a one-second flash on it, so the flash
//!   ends inside the fault), then the show closes and the order service settles it.
//! - PostgreSQL: `nightmarket orders` reaches its database through the proxy while it records
//!   and settles a closed show.
//!
//! Afterwards everything is checked from Redis (the claim log), from the store (the orders) and
//! from what every viewer was told. Each test prints its table; docs/reliability.md keeps one
//! run of each. Regenerate with:
//!
//! ```text
//! scripts/test -p nightmarket --test it partition -- --nocapture --test-threads 1
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::proxy::{Fault, Proxy};
use crate::support::{ChildServer, Client, Market, WAIT, token};
use nightmarket_domain::ShowId;
use nightmarket_inventory::testing::OwnRedis;
use nightmarket_server::auth::Role;
use nightmarket_store::{SettlementState, Store};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ClaimResult, ServerMessage, ShowEvent};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");
/// The claim deadline of the nodes under test.
const DEADLINE_MS: u64 = 300;
const LIST: i64 = 100_000;
const FLASH: i64 = 80_000;
const POLL: Duration = Duration::from_millis(25);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn fresh_database() -> String {
    let url = nightmarket_store::testing::test_database_url().unwrap();
    nightmarket_store::testing::fresh_database(&url)
        .await
        .unwrap()
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn pg_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{host_port}: {e}"))
}

/// The same URL, with `addr` as its host and port.
fn pg_via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

// --- What viewers send and are told ---------------------------------------------------------

/// One sending of a claim (a retry of the same claim id is another attempt).
#[derive(Debug, Clone)]
struct Attempt {
    claim_id: String,
    node: usize,
    phase: usize,
    /// Test clock (same host as Redis's `TIME`), UTC ms.
    sent: i64,
    /// When the first answer for it arrived (`pending` or definite).
    first: Option<i64>,
    pending: bool,
    /// The definite answer.
    answer: Option<ClaimResult>,
}

impl Attempt {
    fn accepted(&self) -> bool {
        matches!(
            self.answer.as_ref().map(|a| a.outcome),
            Some(ClaimOutcomeKind::Accepted | ClaimOutcomeKind::Duplicate)
        )
    }
    fn unavailable(&self) -> bool {
        self.answer
            .as_ref()
            .is_some_and(|a| a.reason == Some(ErrorCode::Unavailable))
    }
}

/// How long a viewer waits between two claims.
const SEND_EVERY: Duration = Duration::from_millis(80);
/// A claim answered `unavailable` is sent again (same id) after this, at most twice.
const RETRY_AFTER: Duration = Duration::from_millis(250);
const RETRIES: usize = 2;

/// A claim a viewer may send again: its id and what it asked for.
#[derive(Debug, Clone)]
struct Intent {
    claim_id: String,
    quantity: i64,
    product: String,
    price: i64,
    tries: usize,
}

/// One viewer on `node`: claims the pinned product at the price it last heard of, every
/// [`SEND_EVERY`], while `phase` is `Some`, retrying a claim answered `unavailable` with the
/// same id; then waits for every claim's definite answer.
async fn viewer(
    addr: SocketAddr,
    show: String,
    buyer: String,
    node: usize,
    mut phase: watch::Receiver<Option<usize>>,
) -> Vec<Attempt> {
    let mut c = Client::connect(addr, &show, &token(Role::Viewer, &buyer), None)
        .await
        .unwrap();
    let snap = c.snapshot().await;
    let mut pinned = snap.pinned.clone();
    let mut price = snap.price;
    let mut attempts: Vec<Attempt> = Vec::new();
    // Claim id → (index of its attempt awaiting a definite answer, what it asked for).
    let mut open: HashMap<String, (usize, Intent)> = HashMap::new();
    let mut retries: Vec<(Instant, Intent)> = Vec::new();
    let mut n = 0u32;
    let mut tick = tokio::time::interval(SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut over = false;
    loop {
        let sending = if over { None } else { *phase.borrow() };
        if sending.is_none() && open.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending.is_some() => {
                let now = Instant::now();
                let intent = match retries.iter().position(|(at, _)| *at <= now) {
                    Some(i) => retries.swap_remove(i).1,
                    None => {
                        let (Some(product), Some(at_price)) = (pinned.clone(), price) else {
                            continue;
                        };
                        n += 1;
                        Intent {
                            claim_id: format!("{buyer}-{n}"),
                            quantity: 1 + i64::from(n % 2),
                            product,
                            price: at_price,
                            tries: 0,
                        }
                    }
                };
                // Taken before sending: the claim may be decided before `send` returns.
                let sent = now_ms();
                c.send(json!({"type": "claim", "claim_id": intent.claim_id,
                              "product_id": intent.product, "quantity": intent.quantity,
                              "price": intent.price})).await;
                attempts.push(Attempt {
                    claim_id: intent.claim_id.clone(),
                    node,
                    phase: sending.unwrap_or_default(),
                    sent,
                    first: None,
                    pending: false,
                    answer: None,
                });
                open.insert(intent.claim_id.clone(), (attempts.len() - 1, intent));
            }
            msg = c.next() => {
                let Some(msg) = msg else {
                    panic!("viewer {buyer} lost its connection: {:?}", c.ended)
                };
                match msg {
                    ServerMessage::ClaimResult(r) => {
                        let Some((i, _)) = open.get(&r.claim_id) else {
                            panic!("{buyer}: an answer for no open claim: {r:?}");
                        };
                        let a = &mut attempts[*i];
                        let at = now_ms();
                        a.first.get_or_insert(at);
                        if r.outcome == ClaimOutcomeKind::Pending {
                            assert!(!a.pending, "{buyer}: pending twice for {}", r.claim_id);
                            a.pending = true;
                            continue;
                        }
                        a.answer = Some(r.clone());
                        let Some((_, intent)) = open.remove(&r.claim_id) else { continue };
                        if r.reason == Some(ErrorCode::StalePrice)
                            && pinned.as_deref() == Some(intent.product.as_str())
                        {
                            price = r.current_price.or(price);
                        }
                        if r.reason == Some(ErrorCode::Unavailable) && intent.tries < RETRIES {
                            retries.push((
                                Instant::now() + RETRY_AFTER,
                                Intent { tries: intent.tries + 1, ..intent },
                            ));
                        }
                    }
                    ServerMessage::Event(e) => match e.event {
                        ShowEvent::Pinned { product_id, price: p } => {
                            pinned = Some(product_id);
                            price = Some(p);
                        }
                        ShowEvent::Unpinned { .. } => {
                            pinned = None;
                            price = None;
                        }
                        ShowEvent::FlashStarted(f)
                            if pinned.as_deref() == Some(f.product_id.as_str()) =>
                        {
                            price = Some(f.price);
                        }
                        ShowEvent::FlashEnded { product_id, list_price, .. }
                            if pinned.as_deref() == Some(product_id.as_str()) =>
                        {
                            price = Some(list_price);
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            changed = phase.changed(), if !over => {
                // The sender gone: the race is over, answers are still awaited.
                over |= changed.is_err() || phase.borrow().is_none();
            }
        }
    }
    c.close().await;
    attempts
}

// --- What Redis holds ------------------------------------------------------------------------

/// An accepted claim as the show's claim log (the `log` stream) holds it.
#[derive(Debug, Clone)]
struct LogClaim {
    claim_id: String,
    buyer: String,
    product: String,
    quantity: i64,
    unit_price: i64,
    flash_id: Option<u64>,
    /// Decision time: Redis's `TIME` as the script ran.
    at: i64,
}

/// Units and đồng per buyer, as the orders of `claims` must add up.
fn per_buyer<'a>(claims: impl Iterator<Item = &'a LogClaim>) -> BTreeMap<String, (u64, i64)> {
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for c in claims {
        let w = want.entry(c.buyer.clone()).or_default();
        w.0 += c.quantity as u64;
        w.1 += c.quantity * c.unit_price;
    }
    want
}

/// Units and đồng per buyer in the orders the store holds for `show`.
async fn orders_per_buyer(store: &Store, show: &ShowId) -> BTreeMap<String, (u64, i64)> {
    store
        .show_orders(show)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.buyer_id.to_string(), (o.units, o.total)))
        .collect()
}

#[derive(Debug, Default)]
struct RedisShow {
    claims: Vec<LogClaim>,
    cancels: usize,
    closed: bool,
    /// Product → (allotted, list price).
    lineup: HashMap<String, (i64, i64)>,
    left: HashMap<String, i64>,
}

async fn redis_show(url: &str, prefix: &str, show: &str) -> RedisShow {
    use redis::AsyncCommands;
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = |k: &str| format!("{prefix}{{{show}}}:{k}");
    let log: redis::streams::StreamRangeReply = conn.xrange_all(key("log")).await.unwrap();
    let mut out = RedisShow::default();
    for e in log.ids {
        let field = |f: &str| e.get::<String>(f).unwrap_or_default();
        match field("kind").as_str() {
            "claim" => out.claims.push(LogClaim {
                claim_id: field("claim_id"),
                buyer: field("buyer"),
                product: field("product"),
                quantity: field("quantity").parse().unwrap(),
                unit_price: field("unit_price").parse().unwrap(),
                flash_id: field("flash_id").parse().ok(),
                at: field("at").parse().unwrap(),
            }),
            "cancel" => out.cancels += 1,
            "close" => out.closed = true,
            other => panic!("claim log entry of kind {other:?}"),
        }
    }
    let lineup: HashMap<String, String> = conn.hgetall(key("lineup")).await.unwrap();
    for (product, entry) in lineup {
        let parts: Vec<i64> = entry.split(':').map(|x| x.parse().unwrap()).collect();
        out.lineup.insert(product, (parts[0], parts[2]));
    }
    out.left = conn.hgetall(key("left")).await.unwrap();
    out
}

// --- The report ------------------------------------------------------------------------------

/// One row of the printed table: a phase of the race (or the total).
#[derive(Debug, Default, Clone)]
struct Row {
    label: String,
    sent: usize,
    accepted: usize,
    refused: usize,
    unavailable: usize,
    pending: usize,
    /// Attempts with no definite answer when the test stopped waiting.
    unanswered: usize,
    /// Units taken beyond the allotment, or counters that disagree with the log.
    oversold: i64,
    /// Told accepted, missing from the claim log (or, in the total, from the orders).
    lost: usize,
    /// A claim id taken twice.
    duplicated: usize,
    /// Decided after its attempt was answered (`pending` or definite): past its deadline.
    late: usize,
    /// Decided outside its rule window: a flash price outside the flash, the list price inside
    /// one.
    off_rule: usize,
    /// Taken, but the viewer was told it was not (refused, `unavailable`).
    contradicted: usize,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.unavailable += o.unavailable;
        self.pending += o.pending;
        self.unanswered += o.unanswered;
        self.oversold += o.oversold;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.late += o.late;
        self.off_rule += o.off_rule;
        self.contradicted += o.contradicted;
    }

    fn faults(&self) -> usize {
        self.unanswered
            + self.oversold.max(0) as usize
            + self.lost
            + self.duplicated
            + self.late
            + self.off_rule
            + self.contradicted
    }
}

fn print_table(title: &str, first: &str, rows: &[Row]) {
    println!("\n{title}\n");
    println!(
        "| {first} | claims sent | accepted | refused | unavailable | pending | unanswered | oversold | lost | duplicated | decided late | off rule | told no, taken |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.sent,
            r.accepted,
            r.refused,
            r.unavailable,
            r.pending,
            r.unanswered,
            r.oversold,
            r.lost,
            r.duplicated,
            r.late,
            r.off_rule,
            r.contradicted
        );
    }
    println!();
}

/// A flash as the seller saw it start.
#[derive(Debug, Clone)]
struct FlashWindow {
    product: String,
    price: i64,
    starts: i64,
    ends: i64,
    /// When and why it ended, as its `flash_ended` event says.
    ended: Option<(i64, String)>,
}

/// Checks every attempt and every logged claim; one row per phase.
fn judge(
    phases: &[(Fault, u64)],
    products: &[String],
    attempts: &[Attempt],
    log: &RedisShow,
    flashes: &HashMap<u64, FlashWindow>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = phases
        .iter()
        .map(|(f, ms)| Row {
            label: format!("{f} ({:.1} s)", *ms as f64 / 1000.0),
            ..Row::default()
        })
        .collect();
    let mut by_id: HashMap<&str, Vec<&Attempt>> = HashMap::new();
    for a in attempts {
        by_id.entry(a.claim_id.as_str()).or_default().push(a);
        let row = &mut rows[a.phase];
        row.sent += 1;
        row.pending += usize::from(a.pending);
        match a.answer.as_ref().map(|r| (r.outcome, r.reason)) {
            None => row.unanswered += 1,
            Some((ClaimOutcomeKind::Accepted, _)) => row.accepted += 1,
            Some((ClaimOutcomeKind::Duplicate, _)) => {
                // Viewers retry only after `unavailable`, which promises the claim never
                // executes: a duplicate says it did.
                row.accepted += 1;
                row.contradicted += 1;
            }
            Some((_, Some(ErrorCode::Unavailable))) => row.unavailable += 1,
            Some(_) => row.refused += 1,
        }
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut taken: HashMap<&str, i64> = HashMap::new();
    for c in &log.claims {
        *taken.entry(c.product.as_str()).or_default() += c.quantity;
        let Some(tries) = by_id.get(c.claim_id.as_str()) else {
            panic!("a claim in the log that no viewer sent: {c:?}");
        };
        let phase_of = tries
            .iter()
            .rev()
            .find(|a| a.sent <= c.at)
            .unwrap_or(&tries[0])
            .phase;
        if !seen.insert(c.claim_id.as_str()) {
            rows[phase_of].duplicated += 1;
        }
        // The attempt that executed: sent before the decision, first answered after it.
        match tries
            .iter()
            .find(|a| a.sent <= c.at && a.first.is_none_or(|f| c.at <= f))
        {
            Some(a) if !a.accepted() => {
                println!("taken, but told otherwise: {c:?}\n  attempt: {a:?}");
                rows[a.phase].contradicted += 1;
            }
            Some(_) => {}
            None => {
                println!("decided late: {c:?}\n  attempts: {tries:?}");
                rows[phase_of].late += 1;
            }
        }
        let (_, list) = log.lineup[&c.product];
        let by_rule = match c.flash_id {
            Some(id) => flashes.get(&id).is_some_and(|f| {
                f.product == c.product
                    && f.starts <= c.at
                    && c.at < f.ends
                    && c.unit_price == f.price
            }),
            // Decision times are milliseconds: a claim decided in the very millisecond a flash
            // began, before it (Redis runs one script at a time), is at the list price with
            // `at == starts_at`. Strictly inside the window, only the flash price is right.
            None => {
                c.unit_price == list
                    && !flashes
                        .values()
                        .any(|f| f.product == c.product && f.starts < c.at && c.at < f.ends)
            }
        };
        if !by_rule {
            let near: Vec<_> = flashes
                .iter()
                .filter(|(_, f)| f.product == c.product)
                .collect();
            println!("outside its rule window: {c:?}\n  flashes of the product: {near:?}");
            rows[phase_of].off_rule += 1;
        }
    }
    for a in attempts.iter().filter(|a| a.accepted()) {
        if !seen.contains(a.claim_id.as_str()) {
            rows[a.phase].lost += 1;
        }
    }
    for (i, product) in products.iter().enumerate() {
        let (allotted, _) = log.lineup[product];
        let took = taken.get(product.as_str()).copied().unwrap_or(0);
        let left = log.left.get(product).copied().unwrap_or(allotted);
        rows[i].oversold = (took - allotted).max(0) + (allotted - took - left).abs();
    }
    rows
}

// --- The Redis partition ----------------------------------------------------------------------

/// The race, phase by phase: what the proxy does to node 2's Redis traffic and for how long.
/// Each phase pins its own product and starts a one-second flash on it, so the flash ends
/// inside the fault.
const REDIS_PHASES: [(Fault, u64); 10] = [
    (Fault::Pass, 1500),
    (Fault::Cut, 2000),
    (Fault::Pass, 1500),
    (Fault::Delay(Duration::from_millis(120)), 2000),
    (Fault::Delay(Duration::from_millis(450)), 2000),
    (Fault::Pass, 1500),
    (Fault::BlackHole, 2500),
    (Fault::Pass, 1500),
    (Fault::BlackHole, 2000),
    // The partition "heals", but the far side has lost the connections that were open: only
    // new ones work.
    (Fault::Stale, 3000),
];
/// Units of each phase's product.
const STOCK: u32 = 100;
const VIEWERS_PER_NODE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_neither_oversells_nor_loses_nor_decides_late() {
    let redis = OwnRedis::start(&[]);
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port))).await;
    let db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("part{}:", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let direct = redis.url();
    let proxied = format!("redis://{}", proxy.addr);
    let deadline = DEADLINE_MS.to_string();
    let mut nodes = Vec::new();
    for url in [&direct, &direct, &proxied] {
        let env = [
            ("NIGHTMARKET_REDIS_URL", url.as_str()),
            ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
            ("NIGHTMARKET_DATABASE_URL", db.as_str()),
            ("NIGHTMARKET_LIMITS_CLAIM_DEADLINE_MS", deadline.as_str()),
            ("NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND", "1000"),
            ("NIGHTMARKET_LIMITS_MESSAGE_BURST", "1000"),
            ("NIGHTMARKET_LIMITS_CLAIMS_IN_FLIGHT", "64"),
            ("NIGHTMARKET_ORDERS_POLL_MS", "100"),
        ];
        nodes.push(
            ChildServer::start_with(EXE, dir.path(), &env)
                .await
                .unwrap(),
        );
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let m = Market::create(addrs[0], &[LIST; REDIS_PHASES.len()], STOCK, 1000, true).await;
    let products: Vec<String> = m.products.iter().map(|(p, _)| p.clone()).collect();
    let mut seller = m.pinned_seller(0).await;

    let (phase_tx, phase_rx) = watch::channel(Some(0usize));
    let mut viewers = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        for k in 0..VIEWERS_PER_NODE {
            let buyer = format!("n{node}v{k}");
            viewers.push(tokio::spawn(viewer(
                *addr,
                m.show.clone(),
                buyer,
                node,
                phase_rx.clone(),
            )));
        }
    }
    drop(phase_rx);

    let race = Instant::now();
    let mut stale_since = 0;
    for (i, (fault, ms)) in REDIS_PHASES.iter().enumerate() {
        let started = Instant::now();
        proxy.set(*fault);
        if *fault == Fault::Stale {
            stale_since = now_ms();
        }
        if i > 0 {
            seller
                .command(
                    json!({"type": "pin", "product_id": products[i]}),
                    &format!("pin{i}"),
                )
                .await
                .unwrap();
        }
        phase_tx.send_replace(Some(i));
        seller
            .command(
                json!({"type": "start_flash", "product_id": products[i], "price": FLASH, "duration_s": 1}),
                &format!("flash{i}"),
            )
            .await
            .unwrap();
        // The phase lasts its time: load, not a wait for a condition.
        tokio::time::sleep_until(started + Duration::from_millis(*ms)).await;
    }
    proxy.set(Fault::Pass);
    phase_tx.send_replace(None);
    let raced = race.elapsed();
    let mut attempts = Vec::new();
    for v in viewers {
        attempts.extend(
            tokio::time::timeout(WAIT, v)
                .await
                .expect("every claim answered in time")
                .unwrap(),
        );
    }
    let answered = race.elapsed();

    // The flashes as the seller saw them start (the last one's event came before its ack, and
    // was read while waiting for it, unless it follows).
    let last = products[REDIS_PHASES.len() - 1].clone();
    let last_started = |msg: &ServerMessage| match msg {
        ServerMessage::Event(e) => {
            matches!(&e.event, ShowEvent::FlashStarted(f) if f.product_id == last)
        }
        _ => false,
    };
    if !seller.seen.iter().any(last_started) {
        seller.until(|msg| last_started(msg).then_some(())).await;
    }
    let mut flashes: HashMap<u64, FlashWindow> = HashMap::new();
    for msg in &seller.seen {
        let ServerMessage::Event(e) = msg else {
            continue;
        };
        match &e.event {
            ShowEvent::FlashStarted(f) => {
                flashes.insert(
                    f.flash_id,
                    FlashWindow {
                        product: f.product_id.clone(),
                        price: f.price,
                        starts: f.starts_at,
                        ends: f.ends_at,
                        ended: None,
                    },
                );
            }
            ShowEvent::FlashEnded {
                flash_id, reason, ..
            } => {
                if let Some(f) = flashes.get_mut(flash_id) {
                    f.ended = Some((e.at, reason.clone()));
                }
            }
            _ => {}
        }
    }
    assert_eq!(flashes.len(), REDIS_PHASES.len(), "one flash per phase");

    // Close; the order service (in every serve) settles.
    m.close_via(addrs[0]).await;
    let store = Store::postgres(&db, 2, Duration::from_secs(5))
        .await
        .unwrap();
    let show = ShowId::parse(m.show.clone()).unwrap();
    let settlement = wait_for("settlement", WAIT, || async {
        store.settlement(&show).await.unwrap()
    })
    .await;
    assert_eq!(settlement.state, SettlementState::Settled, "{settlement:?}");

    let log = redis_show(&direct, &prefix, &m.show).await;
    assert!(log.closed, "the claim log ends with its close marker");
    let mut rows = judge(&REDIS_PHASES, &products, &attempts, &log, &flashes);

    // The orders against the log, buyer by buyer.
    let want = per_buyer(log.claims.iter());
    let got = orders_per_buyer(&store, &show).await;
    let order_mismatches = want
        .keys()
        .chain(got.keys())
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|b| want.get(*b) != got.get(*b))
        .count();
    assert_eq!(
        settlement.units,
        log.claims.iter().map(|c| c.quantity as u64).sum::<u64>()
    );
    assert_eq!(settlement.claims as usize, log.claims.len());

    let mut total = Row {
        label: "**total**".into(),
        ..Row::default()
    };
    for r in &rows {
        total.add(r);
    }
    total.lost += order_mismatches;
    rows.push(total.clone());
    print_table(
        &format!(
            "Redis partition of node 2 of 3 ({} viewers, claim deadline {DEADLINE_MS} ms, \
             {STOCK} units per phase; race {:.1} s, last answer {:.1} s after it began; \
             proxy: {} connections, {} reset)",
            addrs.len() * VIEWERS_PER_NODE,
            raced.as_secs_f64(),
            answered.as_secs_f64(),
            proxy
                .counts
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed),
            proxy
                .counts
                .reset
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        "node 2's Redis traffic",
        &rows,
    );
    assert_eq!(total.faults(), 0, "{total:?}");
    assert_eq!(order_mismatches, 0, "orders: {got:?}\nlog: {want:?}");
    // After its old connections were lost, node 2 decides claims again, on new ones, and
    // its last claims were all decided.
    let stale = REDIS_PHASES.len() - 1;
    let mut late_phase: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.node == 2 && a.phase == stale)
        .collect();
    late_phase.sort_by_key(|a| a.sent);
    let decided = |a: &Attempt| a.answer.is_some() && !a.unavailable() && !a.pending;
    let first_decided = late_phase
        .iter()
        .find(|a| decided(a))
        .expect("node 2 decided nothing after its Redis connections were lost");
    let recovered_ms = first_decided.first.unwrap_or(first_decided.sent) - stale_since;
    println!(
        "node 2 decided claims again {recovered_ms} ms after its old Redis connections were lost"
    );
    let tail = &late_phase[late_phase.len().saturating_sub(10)..];
    assert!(
        tail.iter().all(|a| decided(a)),
        "node 2's last claims: {tail:?}"
    );
    // The faults did bite: the partitioned node's viewers met them.
    let node2 =
        |f: &dyn Fn(&Attempt) -> bool| attempts.iter().filter(|a| a.node == 2 && f(a)).count();
    assert!(
        node2(&|a| a.unavailable()) > 0,
        "no claim of node 2 was unavailable"
    );
    assert!(node2(&|a| a.pending) > 0, "no claim of node 2 was pending");
    for n in nodes {
        n.kill().await;
    }
}

// --- The PostgreSQL partition during settlement ----------------------------------------------

/// Buyers and claims of the settled show: enough entries for many small batches.
const BUYERS: usize = 8;
const CLAIMS_PER_BUYER: usize = 40;
/// Claim-log entries per recorded batch: small, so recording spans every fault.
const BATCH: usize = 16;

/// One step of the PostgreSQL partition: what the proxy did, how long, and how far recording
/// got meanwhile.
struct Step {
    fault: Fault,
    held: Duration,
    recorded_from: u64,
    recorded_to: u64,
    settled: bool,
}

impl Step {
    /// The step begun as `begun` (its fault, when, and how far recording was then), ended
    /// with recording at `recorded_to`.
    fn ended(begun: (Fault, Instant, u64), recorded_to: u64, settled: bool) -> Self {
        let (fault, since, recorded_from) = begun;
        Self {
            fault,
            held: since.elapsed(),
            recorded_from,
            recorded_to,
            settled,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_rides_out_a_partitioned_database_and_settles_each_claim_once() {
    let redis_url = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let prefix = format!(
        "pgpart{}:",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let db = fresh_database().await;
    let proxy = Proxy::start(pg_addr(&db)).await;
    let via = pg_via(&db, proxy.addr);
    let dir = tempfile::tempdir().unwrap();
    let batch = BATCH.to_string();
    let shared = [
        ("NIGHTMARKET_REDIS_URL", redis_url.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_ORDERS_IN_SERVE", "false"),
        ("NIGHTMARKET_ORDERS_POLL_MS", "50"),
        ("NIGHTMARKET_ORDERS_BATCH", batch.as_str()),
        ("NIGHTMARKET_ORDERS_BATCHES_PER_SHOW", "1"),
        ("NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND", "1000"),
        ("NIGHTMARKET_LIMITS_MESSAGE_BURST", "1000"),
    ];
    // The node serves the show on the database directly; only the order service is cut off.
    let mut env = shared.to_vec();
    env.push(("NIGHTMARKET_DATABASE_URL", db.as_str()));
    let node = ChildServer::start_with(EXE, dir.path(), &env)
        .await
        .unwrap();
    let mut orders = crate::support::command(EXE, dir.path(), &["orders"])
        .envs(shared.iter().copied())
        .env("NIGHTMARKET_DATABASE_URL", &via)
        // A call on a connection lost for good fails after this, rather than the default
        // minute, so the test sees the order service come back.
        .env("NIGHTMARKET_DATABASE_CALL_TIMEOUT_MS", "2000")
        // Every failed round logs a warning; the table below says what happened.
        .env("NIGHTMARKET_LOG", "error")
        .spawn()
        .unwrap();
    let store = Store::postgres(&db, 2, Duration::from_secs(5))
        .await
        .unwrap();
    let m = Market::create(
        node.addr,
        &[LIST],
        (BUYERS * CLAIMS_PER_BUYER) as u32,
        1000,
        true,
    )
    .await;
    let show = ShowId::parse(m.show.clone()).unwrap();
    let recorded = || async { store.log_checkpoint(&show).await.unwrap().cursor.next_pos };
    // The order service is running (it has recorded the show's first entries) before the cut.
    let _seller = m.pinned_seller(0).await;
    let mut first = Client::viewer(node.addr, &m.show, "b-first").await;
    let r = first.claim("b-first-1", m.product(0), 1, LIST).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
    wait_for("the order service records", WAIT, || async {
        (recorded().await > 0).then_some(())
    })
    .await;

    let mut steps: Vec<Step> = Vec::new();
    let step = |fault: Fault, from: u64| {
        proxy.set(fault);
        (fault, Instant::now(), from)
    };

    // Cut while the show sells: nothing is recorded meanwhile.
    let (fault, since, from) = step(Fault::Cut, recorded().await);
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let (addr, show, product) = (node.addr, m.show.clone(), m.product(0).to_owned());
        tasks.push(tokio::spawn(async move {
            let buyer = format!("b{b}");
            let mut c = Client::viewer(addr, &show, &buyer).await;
            for k in 0..CLAIMS_PER_BUYER {
                let r = c.claim(&format!("{buyer}-{k}"), &product, 1, LIST).await;
                assert!(
                    matches!(r.outcome, ClaimOutcomeKind::Accepted)
                        || r.reason == Some(ErrorCode::SoldOut),
                    "{r:?}"
                );
            }
            // One cancellation each, so settlement subtracts too.
            c.send(json!({"type": "cancel", "claim_id": format!("{buyer}-0")}))
                .await;
            c.until(|msg| match msg {
                ServerMessage::CancelResult(r) if r.claim_id == format!("{buyer}-0") => Some(()),
                _ => None,
            })
            .await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    m.close_via(node.addr).await;
    let log = redis_show(&redis_url, &prefix, &m.show).await;
    // Claims and cancellations; the close marker follows them and takes no position.
    let total = log.claims.len() as u64 + log.cancels as u64;
    let to = recorded().await;
    steps.push(Step::ended((fault, since, from), to, false));

    // Then, in turn: pass until some batches are in, a black hole, pass, a slow link, a cut.
    let settled = || async { store.settlement(&show).await.unwrap().is_some() };
    let pass_until = async |steps: &mut Vec<Step>, target: u64| {
        let (fault, since, from) = step(Fault::Pass, recorded().await);
        wait_for("recording to resume", WAIT, || async {
            let cp = store.log_checkpoint(&show).await.unwrap();
            let there =
                cp.cursor.next_pos >= target.min(total) && (target < total || cp.close.is_some());
            (there || settled().await).then_some(())
        })
        .await;
        steps.push(Step::ended(
            (fault, since, from),
            recorded().await,
            settled().await,
        ));
    };
    let hold = async |steps: &mut Vec<Step>, fault: Fault, ms: u64| {
        let (fault, since, from) = step(fault, recorded().await);
        // The fault is held for its time: the step under test, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(ms)).await;
        steps.push(Step::ended(
            (fault, since, from),
            recorded().await,
            settled().await,
        ));
    };
    let batches = |n: u64| n * BATCH as u64;
    pass_until(&mut steps, recorded().await + batches(3)).await;
    hold(&mut steps, Fault::BlackHole, 1500).await;
    pass_until(&mut steps, recorded().await + batches(3)).await;
    hold(&mut steps, Fault::Delay(Duration::from_millis(150)), 1500).await;
    hold(&mut steps, Fault::Cut, 1000).await;
    pass_until(&mut steps, recorded().await + batches(2)).await;
    // A black hole, then the far side has lost the connections open during it: a call in
    // flight on one never returns by itself.
    hold(&mut steps, Fault::BlackHole, 1000).await;
    let (fault, since, from) = step(Fault::Stale, recorded().await);
    wait_for("recording to resume on new connections", WAIT, || async {
        (recorded().await >= (from + batches(2)).min(total)).then_some(())
    })
    .await;
    steps.push(Step::ended(
        (fault, since, from),
        recorded().await,
        settled().await,
    ));
    // The close marker is recorded: settlement is next. A black hole, then a cut, there.
    pass_until(&mut steps, total).await;
    hold(&mut steps, Fault::BlackHole, 1000).await;
    hold(&mut steps, Fault::Cut, 1000).await;
    let (fault, since, from) = step(Fault::Pass, recorded().await);
    let settlement = wait_for("settlement after the partition", WAIT, || async {
        store.settlement(&show).await.unwrap()
    })
    .await;
    steps.push(Step::ended((fault, since, from), recorded().await, true));
    assert_eq!(settlement.state, SettlementState::Settled, "{settlement:?}");

    // Each claim exactly once: the orders equal the claim log, buyer by buyer.
    let log = redis_show(&redis_url, &prefix, &m.show).await;
    assert_eq!(recorded().await, total, "every entry recorded");
    let cancelled: HashSet<String> = (0..BUYERS).map(|b| format!("b{b}-0")).collect();
    let want = per_buyer(
        log.claims
            .iter()
            .filter(|c| !cancelled.contains(&c.claim_id)),
    );
    let got = orders_per_buyer(&store, &show).await;
    println!(
        "\nPostgreSQL partition of the order service (`nightmarket orders`), recording and \
         settling one closed show: {} claim-log entries, batches of {BATCH}\n",
        total
    );
    println!(
        "| the order service's PostgreSQL traffic | for | log entries recorded meanwhile | settled |"
    );
    println!("|---|---:|---:|---|");
    for s in &steps {
        println!(
            "| {} | {:.1} s | {} → {} | {} |",
            s.fault,
            s.held.as_secs_f64(),
            s.recorded_from,
            s.recorded_to,
            if s.settled { "yes" } else { "no" }
        );
    }
    let units: u64 = want.values().map(|w| w.0).sum();
    println!(
        "\nclaims {} · cancellations {} · orders {} (log: {} buyers) · units {} (log: {units}) · \
         settled claims {} cancels {}\n",
        log.claims.len(),
        log.cancels,
        got.len(),
        want.len(),
        settlement.units,
        settlement.claims,
        settlement.cancels,
    );
    assert_eq!(got, want, "orders against the claim log");
    assert_eq!(settlement.units, units);
    assert_eq!(settlement.claims as usize, log.claims.len());
    assert_eq!(settlement.cancels as usize, log.cancels);
    // Settled, then released: the show's Redis keys now expire.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl = wait_for("the settled show's keys to get a TTL", WAIT, || {
        let mut conn = conn.clone();
        let key = format!("{prefix}{{{}}}:log", m.show);
        async move {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            (ttl > 0).then_some(ttl)
        }
    })
    .await;
    assert!(ttl > 0);
    let _ = orders.kill().await;
    node.kill().await;
}
