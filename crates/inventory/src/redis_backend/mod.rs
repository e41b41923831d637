//! The Redis inventory: the same rules as [`ShowBook`](nightmarket_domain::ShowBook), run as Lua
//! scripts so that any number of hub nodes share one show's counters.
//!
//! Key layout, every key tagged with the show so a show lives in one Cluster slot
//! (`<prefix>{<show>}:<name>`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `meta` | hash | status, seq, pinned, next_flash, log_len, accepted, version, order |
//! | `lineup` | hash | product → `allotted:limit:list_price` |
//! | `left` | hash | product → units left |
//! | `held` | hash | `buyer|product` → units held |
//! | `claims` | hash | claim id → `buyer|product|qty|price|flash|at|cancelled_at` |
//! | `flash` | hash | the running flash (absent when none) |
//! | `log` | stream | the claim log: claims and cancellations in decision order, then the close marker |
//! | `events` | stream | sequenced events, entry id `<seq>-0`, bounded to the history size |
//! | `mine` | hash | `<buyer>#` → how many claims the buyer made; `<buyer>#<k>` → the k-th 32 of its claim ids (see `prelude.lua`) |
//! | `products` | hash | product → the admitted product with its OCOP proof (JSON) |
//! | `wait` | sorted set | every waitlist entry as `<product>|<number>|<buyer>`, one lexical range per product in join order (see `waitlist_lib.lua`) |
//! | `waitent` | hash | `<product>|<buyer>` → `number|quantity|price|at` of its waitlist entry |
//! | `waitnews` | list | the newest waitlist promotions and skips (JSON), for the nodes' ticks |
//!
//! Once settlement has recorded a closed show, [`Inventory::release`] sets every key of it to
//! expire; until then no key has a TTL.
//!
//! Scripts run with EVALSHA and fall back to EVAL on NOSCRIPT (after a Redis restart), through
//! the `redis` crate's `Script`; claims write their EVALSHA themselves, batched per show, and on
//! NOSCRIPT load the script and send the call again (see `claims.rs`).
//!
//! The same code runs on one Redis ([`RedisInventory::connect`]) and on a Redis Cluster
//! ([`RedisInventory::connect_cluster`]): every script names all thirteen keys of one show in KEYS,
//! so it runs on the master that owns the show's slot. Events go out with `PUBLISH` on one
//! Redis and with sharded `SPUBLISH` on a Cluster, where the channel `<prefix>{<show>}:ev` carries
//! the show's hash tag and therefore lives on the same shard as the show (see [`EventFeed`]).

use async_trait::async_trait;
use nightmarket_domain::book::{
    MAX_COUNTDOWN_SECONDS, MAX_FLASH_SECONDS, MAX_WAITLIST_PER_PRODUCT,
};
use nightmarket_domain::clock::SharedClock;
use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, ClaimId, ClaimRecord, CommandError, Dong, Flash,
    JoinDecision, LineupEntry, LogCursor, LogEntry, LogPage, Millis, Product, ProductId,
    SequencedEvent, ShowId, ShowStatus, SkipReason, WaitlistEntry, WaitlistNotice, WaitlistOutcome,
    WaitlistRefusal,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{
    BookView, BuyerView, Cancel, Claim, Command, DecisionClock, Events, Inventory, InventoryError,
    Result, ShowStanding, StockView, WaitlistJoin, WaitlistLeave,
};

mod claims;
mod feed;
pub use feed::{EventFeed, FeedItem};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("prelude.lua"), "\n", include_str!($file))
    };
    // Scripts that read or change waitlists get their helpers too.
    (waitlist $file:literal) => {
        concat!(
            include_str!("prelude.lua"),
            "\n",
            include_str!("waitlist_lib.lua"),
            "\n",
            include_str!($file)
        )
    };
}

/// How long one reply from a Cluster node may take (as on one Redis).
const CLUSTER_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long one request may take on a Cluster with its redirections and retries in all: a
/// master that is down (until its replica takes over) is answered `unavailable` within this
/// rather than holding claims.
const CLUSTER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Retries of one request on a Cluster: redirections (MOVED, ASK after a slot moved), a dropped
/// connection, TRYAGAIN. A script whose reply was lost may run again; every script is safe to
/// rerun (a claim id answers `duplicate`, a command already applied is refused).
const CLUSTER_RETRIES: u32 = 3;
/// How long one reply from a single Redis may take; past it the request's outcome is unknown
/// (the script may have run). The `redis` crate's default, stated here.
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long connecting to a single Redis may take, per attempt.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// Attempts after the first when (re)connecting, and the longest pause between two. Requests
/// wait for a reconnection in progress: with the crate's defaults (6 retries, doubling from
/// 100 ms) a request could wait some 9 s for a Redis that is down. Two quick retries bound it
/// to about 1.5 s; the next request starts a new reconnection.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a readiness probe (`PING`) may take before Redis counts as unreachable. Under the
/// server prober's own bound (500 ms), so a silent connection is noticed (and replaced) here
/// rather than the probe being dropped from outside first.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(400);
/// Fewest time between two replacements of a silent connection: the many requests that time
/// out together on one dead connection replace it once.
const REPLACE_EVERY: std::time::Duration = RESPONSE_TIMEOUT;

/// Most claim-log entries one script reads: Redis runs nothing else meanwhile, so a long page
/// is read in several steps rather than holding up the claims of every show on the node.
const LOG_CHUNK: usize = 1000;
/// The longest `keep_for` passed on: Redis refuses expiry deadlines past its clock's range.
const MAX_KEEP_MS: u64 = (i64::MAX / 2) as u64;

/// Where the inventory's Redis lives: its address(es), for the event feed's own connections.
#[derive(Clone)]
enum Server {
    Single(redis::Client),
    /// The seed URLs of a Redis Cluster.
    Cluster(Vec<String>),
}

/// One connection handle for both kinds of deployment: a single Redis (reconnecting by itself)
/// or a Redis Cluster (routing each command by its first key's slot).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection to Redis and what the inventory has learned about it: shared by the
/// inventory and the tasks that send claim batches (see `claims.rs`).
struct Link {
    server: Server,
    /// Replaced as a whole when it falls silent (see [`Link::replace_silent`]).
    conn: std::sync::RwLock<Conn>,
    /// When `conn` was last replaced.
    replaced: std::sync::Mutex<Option<std::time::Instant>>,
    /// Whether the last round trip succeeded, for readiness.
    healthy: AtomicBool,
    /// Acknowledge a change only once this many replicas have it (0: do not wait), waiting at
    /// most `wait_ms`. Set once at start ([`RedisInventory::with_wait`]), read by every task.
    wait_replicas: AtomicU32,
    wait_ms: AtomicU64,
}

/// See the module documentation.
pub struct RedisInventory {
    link: Arc<Link>,
    /// Claims, batched per show.
    claims: Arc<claims::Lanes>,
    /// TIME in the scripts, or the caller's `now` (tests that script time).
    clock: DecisionClock,
    /// `PUBLISH`, or `SPUBLISH` on a Redis Cluster (sharded pub/sub: the message stays on the
    /// show's shard instead of being broadcast to every node).
    publish: &'static str,
    prefix: String,
    history: usize,
    open: redis::Script,
    cancel: redis::Script,
    command: redis::Script,
    read: redis::Script,
    mine: redis::Script,
    log: redis::Script,
    release: redis::Script,
    waitlist: redis::Script,
}

/// A Cluster client with the bounds above; the event feed adds RESP3 and a push sender.
fn cluster_builder(seeds: &[String]) -> redis::cluster::ClusterClientBuilder {
    redis::cluster::ClusterClientBuilder::new(seeds.to_vec())
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .connection_timeout(std::time::Duration::from_secs(1))
        .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
        .overall_response_timeout(Some(CLUSTER_REQUEST_TIMEOUT))
}

/// The bounds of a single-Redis connection (see the constants above).
fn single_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY)
}

fn unavailable(e: impl std::fmt::Display) -> InventoryError {
    InventoryError::Unavailable(format!("redis: {e}"))
}

/// A failed script call: refused connections never carried the request; anything else (a
/// timeout, a dropped connection, an error after sending) may have run the script, its reply
/// lost.
fn script_failed(e: &redis::RedisError) -> InventoryError {
    if e.is_connection_refusal() {
        unavailable(e)
    } else {
        InventoryError::Unknown(format!("redis: {e}"))
    }
}

fn internal(e: impl std::fmt::Display) -> InventoryError {
    InventoryError::Internal(format!("redis: {e}"))
}

/// cjson writes an empty Lua table as `{}`; lists may therefore arrive as an empty object.
fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrEmpty<T> {
        List(Vec<T>),
        Empty {},
    }
    Ok(match ListOrEmpty::deserialize(d)? {
        ListOrEmpty::List(v) => v,
        ListOrEmpty::Empty {} => Vec::new(),
    })
}

#[derive(Deserialize)]
struct RawRecord {
    claim_id: String,
    buyer: String,
    product_id: String,
    quantity: u32,
    unit_price: i64,
    flash_id: Option<u64>,
    at: i64,
    cancelled_at: Option<i64>,
}

impl RawRecord {
    fn parse(self) -> Result<ClaimRecord> {
        Ok(ClaimRecord {
            claim_id: ClaimId::parse(self.claim_id).map_err(internal)?,
            buyer: BuyerId::parse(self.buyer).map_err(internal)?,
            product_id: ProductId::parse(self.product_id).map_err(internal)?,
            quantity: self.quantity,
            unit_price: Dong::parse(self.unit_price).map_err(internal)?,
            flash_id: self.flash_id,
            at: self.at,
            cancelled_at: self.cancelled_at,
        })
    }
}

#[derive(Deserialize)]
struct CancelOut {
    o: String,
    rec: Option<RawRecord>,
    left: Option<u32>,
    /// What the returned units did for the waitlist.
    #[serde(default, deserialize_with = "list")]
    wait: Vec<RawOutcome>,
}

/// A waitlist entry as the scripts return it.
#[derive(Deserialize)]
struct RawWaitEntry {
    number: u64,
    buyer: String,
    product_id: String,
    quantity: u32,
    price: i64,
    at: i64,
}

impl RawWaitEntry {
    fn parse(self) -> Result<WaitlistEntry> {
        Ok(WaitlistEntry {
            number: self.number,
            buyer: BuyerId::parse(self.buyer).map_err(internal)?,
            product_id: ProductId::parse(self.product_id).map_err(internal)?,
            quantity: self.quantity,
            price: Dong::parse(self.price).map_err(internal)?,
            at: self.at,
        })
    }
}

#[derive(Deserialize)]
struct RawOutcome {
    outcome: String,
    entry: RawWaitEntry,
    record: Option<RawRecord>,
    reason: Option<String>,
    flash_exhausted: Option<u64>,
}

impl RawOutcome {
    fn parse(self) -> Result<WaitlistOutcome> {
        let entry = self.entry.parse()?;
        match (self.outcome.as_str(), self.record, self.reason.as_deref()) {
            ("promoted", Some(record), _) => Ok(WaitlistOutcome::Promoted {
                entry,
                record: record.parse()?,
                flash_exhausted: self.flash_exhausted,
            }),
            ("skipped", _, Some("price_rose")) => Ok(WaitlistOutcome::Skipped {
                entry,
                reason: SkipReason::PriceRose,
            }),
            ("skipped", _, Some("limit_exceeded")) => Ok(WaitlistOutcome::Skipped {
                entry,
                reason: SkipReason::LimitExceeded,
            }),
            (other, _, reason) => Err(internal(format!(
                "unknown waitlist outcome {other} ({reason:?})"
            ))),
        }
    }
}

#[derive(Deserialize)]
struct RawNotice {
    pos: u64,
    outcome: RawOutcome,
}

#[derive(Deserialize)]
struct RawPlace {
    entry: RawWaitEntry,
    position: u32,
}

#[derive(Deserialize)]
struct WaitlistOut {
    o: String,
    reason: Option<String>,
    entry: Option<RawWaitEntry>,
    position: Option<u32>,
    #[serde(default, deserialize_with = "list")]
    gone: Vec<RawWaitEntry>,
}

#[derive(Deserialize)]
struct CommandOut {
    err: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    events: Vec<SequencedEvent>,
}

#[derive(Deserialize)]
struct RawFlash {
    id: u64,
    product: String,
    price: i64,
    list: i64,
    starts: i64,
    ends: i64,
    cap: Option<u32>,
    sold: u32,
}

/// Every field defaults: the script answers `{}` for a show without keys.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReadOut {
    status: String,
    seq: String,
    pinned: String,
    accepted: String,
    log_len: String,
    version: String,
    order: String,
    #[serde(deserialize_with = "list")]
    left: Vec<u32>,
    #[serde(deserialize_with = "list")]
    lineup: Vec<String>,
    #[serde(deserialize_with = "list")]
    products: Vec<String>,
    flash: Option<RawFlash>,
    #[serde(deserialize_with = "list")]
    mine: Vec<RawRecord>,
    #[serde(deserialize_with = "list")]
    recent: Vec<RawRecord>,
    #[serde(deserialize_with = "list")]
    waiting: Vec<RawPlace>,
    #[serde(deserialize_with = "list")]
    news: Vec<RawNotice>,
    /// Redis's TIME as the read ran, in milliseconds.
    now: i64,
}

impl ReadOut {
    /// The requesting buyer's claims (oldest first) and waitlist places, taken out of the read.
    fn buyer_part(&mut self) -> Result<BuyerPart, InventoryError> {
        let mut my_claims = std::mem::take(&mut self.mine)
            .into_iter()
            .map(RawRecord::parse)
            .collect::<Result<Vec<_>, _>>()?;
        my_claims.sort_by_key(|c| c.at);
        let my_waitlist = std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|p| Ok((p.entry.parse()?, p.position)))
            .collect::<Result<Vec<_>, InventoryError>>()?;
        Ok((my_claims, my_waitlist))
    }
}

/// A buyer's claims and waitlist places, as a view holds them.
type BuyerPart = (Vec<ClaimRecord>, Vec<(WaitlistEntry, u32)>);

#[derive(Deserialize)]
struct LogOut {
    known: bool,
    #[serde(default, deserialize_with = "list")]
    entries: Vec<RawLogEntry>,
}

/// One `log` stream entry as the script returns it: every field is text, and each kind has its
/// own fields.
#[derive(Deserialize)]
struct RawLogEntry {
    id: String,
    pos: String,
    kind: String,
    at: String,
    claim_id: Option<String>,
    buyer: Option<String>,
    product: Option<String>,
    quantity: Option<String>,
    unit_price: Option<String>,
    flash_id: Option<String>,
    claimed_at: Option<String>,
    stock: Option<String>,
}

impl RawLogEntry {
    fn parse(self) -> Result<LogEntry> {
        let pos = num(&self.pos)?;
        let at = num(&self.at)?;
        let field = |name: &str, v: Option<String>| {
            v.ok_or_else(|| internal(format!("claim log entry {} lacks {name}", self.id)))
        };
        if self.kind == "close" {
            let mut final_stock = Vec::new();
            for item in field("stock", self.stock)?
                .split(',')
                .filter(|s| !s.is_empty())
            {
                // Product ids may contain ':'; the count after the last one never does.
                let (product, left) = item
                    .rsplit_once(':')
                    .ok_or_else(|| internal(format!("close stock item {item:?}")))?;
                final_stock.push((ProductId::parse(product).map_err(internal)?, num(left)?));
            }
            return Ok(LogEntry::Close {
                pos,
                at,
                final_stock,
            });
        }
        let flash_id = field("flash_id", self.flash_id)?;
        let mut record = ClaimRecord {
            claim_id: ClaimId::parse(field("claim_id", self.claim_id)?).map_err(internal)?,
            buyer: BuyerId::parse(field("buyer", self.buyer)?).map_err(internal)?,
            product_id: ProductId::parse(field("product", self.product)?).map_err(internal)?,
            quantity: num(&field("quantity", self.quantity)?)?,
            unit_price: Dong::parse(num::<i64>(&field("unit_price", self.unit_price)?)?)
                .map_err(internal)?,
            flash_id: (!flash_id.is_empty()).then(|| num(&flash_id)).transpose()?,
            at,
            cancelled_at: None,
        };
        match self.kind.as_str() {
            "claim" => Ok(LogEntry::Claim { pos, record }),
            "cancel" => {
                // As the cancellation answered it: the claim, made at its own time, cancelled
                // at this entry's.
                record.at = num(&field("claimed_at", self.claimed_at)?)?;
                record.cancelled_at = Some(at);
                Ok(LogEntry::Cancel { pos, record, at })
            }
            other => Err(internal(format!(
                "claim log entry {} of unknown kind {other:?}",
                self.id
            ))),
        }
    }
}

/// The stream id right after `id`: where a read that has seen `id` goes on. (XRANGE's exclusive
/// `(id` needs Redis 6.2.)
fn after_id(id: &str) -> Result<String> {
    let bad = || internal(format!("claim log cursor {id:?} is not a stream id"));
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    let ms: u64 = ms.parse().map_err(|_| bad())?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    Ok(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1).ok_or_else(bad)?),
    })
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| internal(format!("not a number: {s:?}")))
}

impl ReadOut {
    fn flash(&self) -> Result<Option<Flash>> {
        self.flash
            .as_ref()
            .map(|f| {
                Ok(Flash {
                    id: f.id,
                    product_id: ProductId::parse(f.product.clone()).map_err(internal)?,
                    price: Dong::parse(f.price).map_err(internal)?,
                    list_price: Dong::parse(f.list).map_err(internal)?,
                    starts_at: f.starts,
                    ends_at: f.ends,
                    quantity_cap: f.cap,
                    sold: f.sold,
                })
            })
            .transpose()
    }

    fn order(&self) -> Result<Vec<ProductId>> {
        lineup_order(&self.order)
    }
}

/// The products of `meta`'s `order` field (comma-separated), in lineup order.
fn lineup_order(order: &str) -> Result<Vec<ProductId>> {
    order
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| ProductId::parse(s).map_err(internal))
        .collect()
}

/// A show's status as `meta` holds it.
fn show_status(status: &str) -> Result<ShowStatus> {
    match status {
        "scheduled" => Ok(ShowStatus::Scheduled),
        "live" => Ok(ShowStatus::Live),
        "closed" => Ok(ShowStatus::Closed),
        other => Err(internal(format!("unknown status {other}"))),
    }
}

impl Link {
    /// The connection requests go through now.
    fn conn(&self) -> Conn {
        match self.conn.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A request went unanswered: the connection may be silent for good, and on one Redis it is
    /// replaced by a new one (connecting on first use).
    ///
    /// Why: the `redis` crate's `ConnectionManager` reconnects when a connection *fails*, not
    /// when it times out. A connection whose far side vanished without a reset (a partition
    /// that outlived the flow in a NAT or load balancer, a failover that moved the address to
    /// another host) does not fail until TCP gives up, some 15 minutes later: until then every
    /// request on it timed out and the node was down for Redis while Redis was fine (found by
    /// the partition test's `old connections lost` phase). A replacement costs a new TCP
    /// connection at most every [`REPLACE_EVERY`]; requests still out on the old one keep it
    /// until they end, and their outcome stays unknown as before (the claim deadline and the
    /// `pending` resend take care of it). A Cluster connection manages its node connections
    /// itself and is left alone.
    fn replace_silent(&self) {
        let Server::Single(client) = &self.server else {
            return;
        };
        {
            let Ok(mut last) = self.replaced.lock() else {
                return;
            };
            let now = std::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < REPLACE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        match ConnectionManager::new_lazy_with_config(client.clone(), single_config()) {
            Ok(fresh) => {
                if let Ok(mut conn) = self.conn.write() {
                    *conn = Conn::Single(fresh);
                }
                tracing::debug!("redis: a request went unanswered; connection replaced");
            }
            Err(e) => tracing::warn!(error = %e, "redis: cannot replace a silent connection"),
        }
    }

    /// Notes how a round trip went: for readiness, and to replace a connection gone silent.
    fn observe<T>(&self, reply: &redis::RedisResult<T>) {
        self.healthy.store(reply.is_ok(), Ordering::Relaxed);
        if reply.as_ref().is_err_and(redis::RedisError::is_timeout) {
            self.replace_silent();
        }
    }

    /// Waits until the configured replicas have this connection's writes so far (see
    /// [`RedisInventory::with_wait`]); `meta` is the show's `meta` key, for a Cluster's routing.
    async fn replicated(&self, meta: &str) -> Result<()> {
        let replicas = self.wait_replicas.load(Ordering::Relaxed);
        if replicas == 0 {
            return Ok(());
        }
        let timeout_ms = self.wait_ms.load(Ordering::Relaxed);
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        let acked: u32 = match &self.conn() {
            Conn::Single(c) => wait.query_async(&mut c.clone()).await,
            // WAIT concerns the writes of this connection to one master: the one that owns the
            // show's slot (the crate would otherwise ask every master and keep the minimum).
            Conn::Cluster(c) => {
                let route = Route::with_key(meta, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.clone()
                    .route_command(wait, routing)
                    .await
                    .and_then(|v| redis::from_redis_value(v).map_err(Into::into))
            }
        }
        .map_err(unavailable)?;
        if acked < replicas {
            return Err(InventoryError::Unavailable(format!(
                "redis: {acked} of {replicas} replicas acknowledged within {timeout_ms} ms; retry"
            )));
        }
        Ok(())
    }
}

/// The name of each key of a show, in the order every script takes them (`prelude.lua`).
fn key_names(prefix: &str, show: &ShowId) -> [String; 13] {
    [
        "meta", "lineup", "left", "held", "claims", "flash", "log", "events", "mine", "products",
        "wait", "waitent", "waitnews",
    ]
    .map(|k| format!("{prefix}{{{show}}}:{k}"))
}

/// A show's `meta` key (the first of [`key_names`]).
fn meta_key(prefix: &str, show: &ShowId) -> String {
    format!("{prefix}{{{show}}}:meta")
}

impl RedisInventory {
    /// Connects to the single Redis at `url`; keys are prefixed with `prefix` (one deployment, or
    /// one test, each). `history` bounds each show's kept events.
    pub async fn connect(url: &str, prefix: &str, history: usize) -> Result<Self> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let conn = client
            .get_connection_manager_with_config(single_config())
            .await
            .map_err(unavailable)?;
        Self::start(
            Server::Single(client),
            Conn::Single(conn),
            "PUBLISH",
            prefix,
            history,
        )
        .await
    }

    /// Connects to the Redis Cluster that `seeds` belong to (one reachable node is enough; the
    /// others are discovered). Keys and scripts are the same as on one Redis; events use sharded
    /// pub/sub, so Redis 7 or later is needed.
    pub async fn connect_cluster(seeds: &[String], prefix: &str, history: usize) -> Result<Self> {
        if seeds.is_empty() {
            return Err(unavailable("no Redis Cluster node given"));
        }
        let client = cluster_builder(seeds).build().map_err(unavailable)?;
        let conn = client.get_async_connection().await.map_err(unavailable)?;
        let server = Server::Cluster(seeds.to_vec());
        Self::start(server, Conn::Cluster(conn), "SPUBLISH", prefix, history).await
    }

    async fn start(
        server: Server,
        conn: Conn,
        publish: &'static str,
        prefix: &str,
        history: usize,
    ) -> Result<Self> {
        let link = Arc::new(Link {
            server,
            conn: std::sync::RwLock::new(conn),
            replaced: std::sync::Mutex::new(None),
            healthy: AtomicBool::new(true),
            wait_replicas: AtomicU32::new(0),
            wait_ms: AtomicU64::new(0),
        });
        let claim = redis::Script::new(script!("claims.lua"));
        let inventory = Self {
            link: link.clone(),
            claims: Arc::new(claims::Lanes::new(link, claim.clone(), prefix)),
            clock: DecisionClock::Execution,
            publish,
            prefix: prefix.to_owned(),
            history: history.max(1),
            open: redis::Script::new(script!("open.lua")),
            cancel: redis::Script::new(script!(waitlist "cancel.lua")),
            command: redis::Script::new(script!("command.lua")),
            read: redis::Script::new(script!(waitlist "read.lua")),
            mine: redis::Script::new(script!(waitlist "mine.lua")),
            log: redis::Script::new(script!("log.lua")),
            release: redis::Script::new(script!("release.lua")),
            waitlist: redis::Script::new(script!(waitlist "waitlist.lua")),
        };
        // Load every script up front: the first claim then runs with one round trip, and a
        // Redis too old for the scripts fails here, at start, rather than on a viewer's claim.
        // On a Cluster, SCRIPT LOAD goes to every master; a master that joins later, or a
        // replica promoted by a failover, loads a script on its first NOSCRIPT.
        let mut conn = inventory.link.conn();
        for script in [
            &inventory.open,
            &claim,
            &inventory.cancel,
            &inventory.command,
            &inventory.read,
            &inventory.mine,
            &inventory.log,
            &inventory.release,
            &inventory.waitlist,
        ] {
            script.load_async(&mut conn).await.map_err(unavailable)?;
        }
        Ok(inventory)
    }

    /// Decides by `clock` (the default is [`DecisionClock::Execution`]: Redis's `TIME`).
    pub fn deciding_by(mut self, clock: DecisionClock) -> Self {
        self.clock = clock;
        self
    }

    /// The `now` a script gets: empty for its own clock (TIME), the caller's when scripted.
    fn at(&self, now: Millis) -> String {
        self.clock
            .scripted(now)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    /// Whether this inventory runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link.server, Server::Cluster(_))
    }

    /// Acknowledges claims, cancellations and commands only once `replicas` replicas have
    /// them (Redis `WAIT`, at most `timeout_ms`). Otherwise the answer is `unavailable`; the
    /// change stands, and a retry with the same claim id is answered once it has replicated.
    pub fn with_wait(self, replicas: u32, timeout_ms: u64) -> Self {
        self.link.wait_replicas.store(replicas, Ordering::Relaxed);
        self.link
            .wait_ms
            .store(timeout_ms.max(1), Ordering::Relaxed);
        self
    }

    async fn replicated(&self, show: &ShowId) -> Result<()> {
        self.link.replicated(&meta_key(&self.prefix, show)).await
    }
    /// The pub/sub channel of a show's events; it carries the show's hash tag.
    pub fn event_channel(&self, show: &ShowId) -> String {
        format!("{}{{{}}}:ev", self.prefix, show)
    }

    /// Starts the node's subscription to show events (see [`EventFeed`]).
    pub fn event_feed(&self) -> (EventFeed, tokio::sync::mpsc::Receiver<FeedItem>) {
        let prefix = self.prefix.clone();
        let channel_of = move |show: &ShowId| format!("{prefix}{{{show}}}:ev");
        match &self.link.server {
            Server::Single(client) => feed::start(client.clone(), channel_of),
            Server::Cluster(seeds) => feed::start_cluster(seeds.clone(), channel_of),
        }
    }

    fn keys(&self, show: &ShowId) -> [String; 13] {
        key_names(&self.prefix, show)
    }

    async fn run<T: DeserializeOwned>(
        &self,
        script: &redis::Script,
        show: &ShowId,
        args: &[String],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in self.keys(show) {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.link.conn();
        let reply: Result<String, _> = inv.invoke_async(&mut conn).await;
        self.link.observe(&reply);
        let text = reply.map_err(|e| script_failed(&e))?;
        serde_json::from_str(&text).map_err(|e| internal(format!("{e}: {text}")))
    }

    /// The standings of `shows` in one atomic pipeline (MULTI/EXEC, so each show's status,
    /// sequence and stock agree): `meta`'s status, seq and order, and the `left` hash, per show.
    /// No script: a script names the keys of one show only, and this reads many.
    async fn standings_at_once(&self, shows: &[ShowId]) -> Result<Vec<Option<ShowStanding>>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for show in shows {
            let [meta, _, left, ..] = self.keys(show);
            pipe.cmd("HMGET").arg(meta).arg(&["status", "seq", "order"]);
            pipe.cmd("HGETALL").arg(left);
        }
        let mut conn = self.link.conn();
        let reply: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut conn).await;
        self.link.observe(&reply);
        let mut replies = reply.map_err(unavailable)?.into_iter();
        let mut out = Vec::with_capacity(shows.len());
        for _ in shows {
            let (Some(meta), Some(left)) = (replies.next(), replies.next()) else {
                return Err(internal("standings: the pipeline answered too few replies"));
            };
            let (status, seq, order): (Option<String>, Option<String>, Option<String>) =
                redis::from_redis_value(meta).map_err(internal)?;
            let left: std::collections::HashMap<String, u32> =
                redis::from_redis_value(left).map_err(internal)?;
            // No `meta`: never opened, or released and expired.
            let Some(status) = status else {
                out.push(None);
                continue;
            };
            let stock = lineup_order(order.as_deref().unwrap_or(""))?
                .into_iter()
                .map(|p| {
                    let units = left.get(p.as_str()).copied().unwrap_or(0);
                    (p, units)
                })
                .collect();
            out.push(Some(ShowStanding {
                status: show_status(&status)?,
                seq: num(seq.as_deref().unwrap_or("0"))?,
                stock,
            }));
        }
        Ok(out)
    }

    async fn read(
        &self,
        show: &ShowId,
        buyer: Option<&BuyerId>,
        feed_from: i64,
    ) -> Result<ReadOut, InventoryError> {
        let args = [
            buyer.map(ToString::to_string).unwrap_or_default(),
            feed_from.to_string(),
        ];
        self.read_with(&self.read, show, &args).await
    }

    /// Runs `read.lua` or `mine.lua`, which answer a show without keys with `{}`.
    async fn read_with(
        &self,
        script: &redis::Script,
        show: &ShowId,
        args: &[String],
    ) -> Result<ReadOut, InventoryError> {
        let out: ReadOut = self.run(script, show, args).await?;
        if out.order.is_empty() && out.status.is_empty() {
            return Err(InventoryError::UnknownShow(show.clone()));
        }
        Ok(out)
    }
}

fn command_error(code: &str, detail: String) -> InventoryError {
    let status = |s: &str| -> &'static str {
        match s {
            "scheduled" => "scheduled",
            "live" => "live",
            _ => "closed",
        }
    };
    let product = |d: &str| ProductId::parse(d).ok();
    InventoryError::Command(match code {
        "not_live" => CommandError::NotLive(status(&detail)),
        "bad_transition" => CommandError::BadTransition {
            from: status(&detail),
            to: "the requested state",
        },
        "unknown_product" => match product(&detail) {
            Some(p) => CommandError::UnknownProduct(p),
            None => CommandError::OutOfRange(format!("unknown product {detail}")),
        },
        "not_pinned" => match product(&detail) {
            Some(p) => CommandError::NotPinned(p),
            None => CommandError::NothingPinned,
        },
        "nothing_pinned" => CommandError::NothingPinned,
        "flash_active" => CommandError::FlashActive,
        "no_flash" => CommandError::NoFlash,
        "price_above_list" => {
            CommandError::OutOfRange(format!("flash price is above the list price {detail}"))
        }
        other => return internal(format!("unexpected refusal {other}: {detail}")),
    })
}

/// What the process reads for Redis's `TIME` (see [`Inventory::clock`]).
static REDIS_TIME: std::sync::LazyLock<SharedClock> =
    std::sync::LazyLock::new(nightmarket_domain::clock::system);

#[async_trait]
impl Inventory for RedisInventory {
    fn clock(&self) -> &SharedClock {
        &REDIS_TIME
    }

    async fn open_show(&self, show: &ShowId, lineup: Vec<LineupEntry>) -> Result<()> {
        let order: Vec<&str> = lineup.iter().map(|e| e.product.id.as_str()).collect();
        let mut args = vec![order.join(",")];
        for e in &lineup {
            args.push(e.product.id.to_string());
            args.push(e.allotted.to_string());
            args.push(e.buyer_limit.to_string());
            args.push(e.product.list_price.get().to_string());
            args.push(serde_json::to_string(&e.product).map_err(internal)?);
        }
        let _: i64 = self.run(&self.open, show, &args).await?;
        Ok(())
    }

    async fn command(&self, show: &ShowId, cmd: Command, now: Millis) -> Result<Events> {
        let mut args = vec![
            String::new(),
            self.at(now),
            self.history.to_string(),
            self.event_channel(show),
            self.publish.to_owned(),
        ];
        let mut flash_price = None;
        match cmd {
            Command::GoLive => args[0] = "go_live".into(),
            Command::Close => args[0] = "close".into(),
            Command::Pin(p) => {
                args[0] = "pin".into();
                args.push(p.to_string());
            }
            Command::Unpin => args[0] = "unpin".into(),
            Command::StartFlash(spec) => {
                // The same bounds the book checks, before touching Redis.
                if !(1..=MAX_FLASH_SECONDS).contains(&spec.duration_s) {
                    return Err(CommandError::OutOfRange(format!(
                        "duration_s must be 1 to {MAX_FLASH_SECONDS}, got {}",
                        spec.duration_s
                    ))
                    .into());
                }
                if !(0..=MAX_COUNTDOWN_SECONDS).contains(&spec.countdown_s) {
                    return Err(CommandError::OutOfRange(format!(
                        "countdown_s must be 0 to {MAX_COUNTDOWN_SECONDS}, got {}",
                        spec.countdown_s
                    ))
                    .into());
                }
                if spec.quantity_cap == Some(0) {
                    return Err(
                        CommandError::OutOfRange("quantity_cap must be at least 1".into()).into(),
                    );
                }
                flash_price = Some(spec.price);
                args[0] = "start_flash".into();
                args.push(spec.product_id.to_string());
                args.push(spec.price.get().to_string());
                args.push(spec.duration_s.to_string());
                args.push(spec.quantity_cap.map(|c| c.to_string()).unwrap_or_default());
                args.push(spec.countdown_s.to_string());
            }
            Command::EndFlash { reason, only } => {
                args[0] = "end_flash".into();
                args.push(reason.as_str().to_owned());
                args.push(only.map(|o| o.to_string()).unwrap_or_default());
            }
        }
        let out: CommandOut = self.run(&self.command, show, &args).await?;
        if out.err.as_deref() == Some("unknown_show") {
            return Err(InventoryError::UnknownShow(show.clone()));
        }
        if let Some(code) = out.err {
            let detail = out.detail.unwrap_or_default();
            if let (Some(price), "price_above_list") = (flash_price, code.as_str()) {
                let list = detail.parse().ok().and_then(|l| Dong::parse(l).ok());
                if let Some(list) = list {
                    return Err(CommandError::PriceAboveList { price, list }.into());
                }
            }
            return Err(command_error(&code, detail));
        }
        if !out.events.is_empty() {
            self.replicated(show).await?;
        }
        Ok(out.events)
    }

    async fn claim_within(&self, show: &ShowId, claim: Claim) -> Result<ClaimDecision> {
        let now = self.clock.scripted(claim.now);
        self.claims
            .claim(show, claim.req, now, claim.deadline)
            .await
    }

    async fn cancel(&self, show: &ShowId, cancel: Cancel) -> Result<CancelDecision> {
        let args = [
            cancel.claim_id.to_string(),
            cancel.buyer.to_string(),
            self.at(cancel.now),
        ];
        let mut out: CancelOut = self.run(&self.cancel, show, &args).await?;
        if matches!(out.o.as_str(), "cancelled" | "already") {
            self.replicated(show).await?;
        }
        let record = |out: CancelOut| -> Result<(ClaimRecord, u32)> {
            let rec = out
                .rec
                .ok_or_else(|| internal("cancel result without record"))?
                .parse()?;
            Ok((rec, out.left.unwrap_or(0)))
        };
        Ok(match out.o.as_str() {
            "cancelled" => {
                let wait = std::mem::take(&mut out.wait);
                let (record, stock_left) = record(out)?;
                CancelDecision::Cancelled {
                    record,
                    stock_left,
                    waitlist: wait
                        .into_iter()
                        .map(RawOutcome::parse)
                        .collect::<Result<_, _>>()?,
                }
            }
            "already" => {
                let (record, stock_left) = record(out)?;
                CancelDecision::AlreadyCancelled { record, stock_left }
            }
            "unknown_claim" => CancelDecision::UnknownClaim,
            "show_not_live" => CancelDecision::ShowNotLive,
            other => return Err(internal(format!("unknown cancel outcome {other}"))),
        })
    }

    async fn waitlist_join(&self, show: &ShowId, join: WaitlistJoin) -> Result<JoinDecision> {
        let args = [
            "join".to_owned(),
            join.buyer.to_string(),
            join.product.to_string(),
            join.quantity.get().to_string(),
            self.at(join.now),
            MAX_WAITLIST_PER_PRODUCT.to_string(),
        ];
        let out: WaitlistOut = self.run(&self.waitlist, show, &args).await?;
        if matches!(out.o.as_str(), "joined" | "already") {
            self.replicated(show).await?;
        }
        let place = |out: WaitlistOut| -> Result<(WaitlistEntry, u32)> {
            let entry = out
                .entry
                .ok_or_else(|| internal("waitlist join without entry"))?
                .parse()?;
            Ok((entry, out.position.unwrap_or(0)))
        };
        Ok(match out.o.as_str() {
            "joined" => {
                let (entry, position) = place(out)?;
                JoinDecision::Joined { entry, position }
            }
            "already" => {
                let (entry, position) = place(out)?;
                JoinDecision::AlreadyWaiting { entry, position }
            }
            "refused" => JoinDecision::Refused(match out.reason.as_deref() {
                Some("show_not_live") => WaitlistRefusal::ShowNotLive,
                Some("unknown_product") => WaitlistRefusal::UnknownProduct,
                Some("not_sold_out") => WaitlistRefusal::NotSoldOut,
                Some("limit_exceeded") => WaitlistRefusal::LimitExceeded,
                Some("waitlist_full") => WaitlistRefusal::WaitlistFull,
                other => return Err(internal(format!("unknown waitlist refusal {other:?}"))),
            }),
            other => return Err(internal(format!("unknown waitlist outcome {other}"))),
        })
    }

    async fn waitlist_leave(
        &self,
        show: &ShowId,
        leave: WaitlistLeave,
    ) -> Result<Vec<WaitlistEntry>> {
        let product = leave.product.as_ref();
        let args = [
            "leave".to_owned(),
            leave.buyer.to_string(),
            product.map(ToString::to_string).unwrap_or_default(),
            "0".to_owned(),
            self.at(leave.now),
            MAX_WAITLIST_PER_PRODUCT.to_string(),
        ];
        let out: WaitlistOut = self.run(&self.waitlist, show, &args).await?;
        match (out.o.as_str(), product) {
            ("left", _) => {
                if !out.gone.is_empty() {
                    self.replicated(show).await?;
                }
                out.gone.into_iter().map(RawWaitEntry::parse).collect()
            }
            ("unknown_product", Some(p)) => Err(InventoryError::unknown_product(p)),
            (other, _) => Err(internal(format!("unknown waitlist leave outcome {other}"))),
        }
    }

    async fn view(
        &self,
        show: &ShowId,
        buyer: Option<&BuyerId>,
        now: Millis,
    ) -> Result<BookView, InventoryError> {
        let mut out = self.read(show, buyer, -1).await?;
        let status = show_status(&out.status)?;
        let mut lineup = Vec::with_capacity(out.lineup.len());
        for ((raw, json), left) in out.lineup.iter().zip(&out.products).zip(&out.left) {
            let mut parts = raw.split(':');
            let allotted = num(parts.next().unwrap_or(""))?;
            let buyer_limit = num(parts.next().unwrap_or(""))?;
            let product: Product = serde_json::from_str(json).map_err(internal)?;
            lineup.push(LineupEntry {
                product,
                allotted,
                buyer_limit,
                left: *left,
            });
        }
        let flash = out.flash()?;
        let now = self.clock.scripted(now).unwrap_or(out.now);
        let pinned = (!out.pinned.is_empty())
            .then(|| ProductId::parse(out.pinned.clone()))
            .transpose()
            .map_err(internal)?;
        let price = pinned.as_ref().and_then(|p| {
            let list = lineup
                .iter()
                .find(|e| &e.product.id == p)?
                .product
                .list_price;
            Some(match &flash {
                Some(f) if &f.product_id == p && f.applies(now) => f.price,
                _ => list,
            })
        });
        let (my_claims, my_waitlist) = out.buyer_part()?;
        Ok(BookView {
            status,
            seq: num(&out.seq)?,
            pinned,
            flash,
            price,
            lineup,
            my_claims,
            my_waitlist,
            accepted_claims: num(&out.accepted)?,
        })
    }

    async fn buyer_view(
        &self,
        show: &ShowId,
        buyer: &BuyerId,
    ) -> Result<BuyerView, InventoryError> {
        let mut out = self
            .read_with(&self.mine, show, &[buyer.to_string()])
            .await?;
        let (my_claims, my_waitlist) = out.buyer_part()?;
        Ok(BuyerView {
            seq: num(&out.seq)?,
            stock_version: num(&out.version)?,
            my_claims,
            my_waitlist,
        })
    }

    async fn standings(
        &self,
        shows: &[ShowId],
    ) -> Result<Vec<Option<ShowStanding>>, InventoryError> {
        if shows.is_empty() {
            return Ok(Vec::new());
        }
        match self.link.server {
            Server::Single(_) => self.standings_at_once(shows).await,
            // A Cluster refuses a pipeline across slots, and every show has a slot of its own:
            // one pipeline per show, all sent together (one round trip's wait in all).
            Server::Cluster(_) => {
                let each = shows
                    .iter()
                    .map(|show| self.standings_at_once(std::slice::from_ref(show)));
                Ok(futures_util::future::try_join_all(each)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }

    async fn stock(&self, show: &ShowId, feed_from: u64) -> Result<StockView> {
        let out = self
            .read(show, None, i64::try_from(feed_from).unwrap_or(i64::MAX))
            .await?;
        let levels = out
            .order()?
            .into_iter()
            .zip(out.left.iter().copied())
            .collect();
        let flash_sold = out.flash.as_ref().map(|f| (f.id, f.sold));
        Ok(StockView {
            seq: num(&out.seq)?,
            version: num(&out.version)?,
            levels,
            log_len: num(&out.log_len)?,
            accepted_claims: num(&out.accepted)?,
            flash_sold,
            recent: out
                .recent
                .into_iter()
                .map(RawRecord::parse)
                .collect::<Result<_, _>>()?,
            waitlist: out
                .news
                .into_iter()
                .map(|n| {
                    Ok(WaitlistNotice {
                        pos: n.pos,
                        outcome: n.outcome.parse()?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn events_after(&self, show: &ShowId, after: u64, most: usize) -> Result<Option<Events>> {
        let [meta, .., events, _, _, _, _, _] = self.keys(show);
        let mut conn = self.link.conn();
        let seq: Option<u64> = redis::cmd("HGET")
            .arg(&meta)
            .arg("seq")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let newest = seq.ok_or_else(|| InventoryError::UnknownShow(show.clone()))?;
        if after >= newest {
            return Ok((after == newest).then(Vec::new));
        }
        let oldest: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&events)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let oldest_seq = oldest
            .ids
            .first()
            .and_then(|e| e.id.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if oldest_seq > after + 1 || oldest_seq == 0 {
            return Ok(None);
        }
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&events)
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .arg("COUNT")
            .arg(most)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let text: String = entry
                .get("e")
                .ok_or_else(|| internal("event entry without body"))?;
            out.push(serde_json::from_str(&text).map_err(internal)?);
        }
        Ok(Some(out))
    }

    async fn claim_log(&self, show: &ShowId, from: &LogCursor, limit: usize) -> Result<LogPage> {
        let mut next = from.clone();
        let mut start = match from.token.as_str() {
            "" => "-".to_owned(),
            token => after_id(token)?,
        };
        let mut entries = Vec::new();
        // At least one round, so an unknown show is told even for `limit` 0.
        loop {
            let want = limit.saturating_sub(entries.len()).min(LOG_CHUNK);
            let out: LogOut = self
                .run(&self.log, show, &[start.clone(), want.to_string()])
                .await?;
            if !out.known {
                return Err(InventoryError::UnknownShow(show.clone()));
            }
            let got = out.entries.len();
            for raw in out.entries {
                start = after_id(&raw.id)?;
                next.token = raw.id.clone();
                let entry = raw.parse()?;
                // A cursor without a token (or one behind its position) starts earlier in the
                // stream: what it has read already is passed over.
                if entry.pos() < next.next_pos {
                    continue;
                }
                if entry.pos() > next.next_pos {
                    return Err(internal(format!(
                        "claim log of show {show}: position {} is missing (next is {}); the \
                         cursor does not belong to this log",
                        next.next_pos,
                        entry.pos()
                    )));
                }
                next.next_pos = entry.pos() + 1;
                entries.push(entry);
            }
            if got < want || want == 0 || entries.len() >= limit {
                break;
            }
        }
        Ok(LogPage { entries, next })
    }

    async fn release(&self, show: &ShowId, keep_for: std::time::Duration) -> Result<()> {
        let keep_ms = u64::try_from(keep_for.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_KEEP_MS);
        let out: CommandOut = self
            .run(&self.release, show, &[keep_ms.to_string()])
            .await?;
        if let Some(status) = out.err {
            let from = match status.as_str() {
                "scheduled" => "scheduled",
                _ => "live",
            };
            return Err(InventoryError::not_releasable(from));
        }
        self.replicated(show).await?;
        Ok(())
    }

    fn dependency(&self) -> &'static str {
        "redis"
    }

    async fn probe(&self) -> Result<()> {
        let mut conn = self.link.conn();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let result = match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                if e.is_timeout() {
                    self.link.replace_silent();
                }
                Err(unavailable(e))
            }
            Err(_) => {
                self.link.replace_silent();
                Err(unavailable(format!(
                    "no answer to PING within {} ms",
                    PROBE_TIMEOUT.as_millis()
                )))
            }
        };
        self.link.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    fn health(&self) -> Result<()> {
        if self.link.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(InventoryError::Unavailable(
                "redis: the last round trip failed".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    /// The scripts name promotions' claims as the book does.
    #[test]
    fn the_scripts_use_the_books_promotion_prefix() {
        let prefix = nightmarket_domain::book::PROMOTED_CLAIM_PREFIX;
        assert!(
            include_str!("waitlist_lib.lua").contains(&format!("PROMOTED_PREFIX = '{prefix}'")),
            "waitlist_lib.lua must name promoted claims {prefix:?}<number>"
        );
    }
}
