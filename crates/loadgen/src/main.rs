//! `nightmarket-loadgen`: drives a running Nightmarket server through its public HTTP API and
//! WebSocket protocol and prints throughput and latency figures (it never asserts them).
//!
//! - `setup` creates a seller, products and a live show, and prints their ids, so several
//!   generator processes can share one show;
//! - `fanout` opens many viewer connections, has one seller pin products at a fixed rate, and
//!   measures event delivery: latency, gaps, reordering and dropped connections;
//! - `claims` runs concurrent buyers claiming one product and checks the stock accounting.
//!
//! - `bench` is the benchmark driver (see `nightmarket_loadgen::bench`): it starts the server
//!   and its peers and runs the commands above against each, then writes docs/benchmarks.md.
//!
//! `fanout --nchan` runs the same fan-out measurement against an nginx + nchan server, the peer
//! the benchmarks compare with: viewers subscribe over WebSocket to `/sub/CHANNEL` and the
//! publisher POSTs event frames of the same shape to `/pub/CHANNEL`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use nightmarket_auth::{DEV_SECRET, Role, TokenKey};
use nightmarket_wire::client::ClientMessage;
use nightmarket_wire::http::{
    CreateLineupItem, CreateProduct, CreateSeller, CreateShow, Product, Seller, Show,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};

use nightmarket_loadgen::bench::{self, BenchArgs};
use nightmarket_loadgen::stats::{Latencies, ProcSample};
use nightmarket_loadgen::{http, stats};

type Ws = WebSocketStream<TcpStream>;
type Counts = BTreeMap<String, u64>;

/// How long to wait for one expected frame (snapshot, ack, claim result).
const WAIT: Duration = Duration::from_secs(30);

const RATE_LIMIT_NOTE: &str = "The server rate-limits every connection (default 10 messages/s, \
burst 20). Run benchmarks against a server started with NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND \
and NIGHTMARKET_LIMITS_MESSAGE_BURST raised (e.g. 100000); otherwise seller pins above 10/s fail \
and buyer claims are refused `rate_limited`.";

#[derive(Parser)]
#[command(
    name = "nightmarket-loadgen",
    version,
    about = "Load generator for a running Nightmarket server: fan-out and claim benchmarks.",
    after_help = RATE_LIMIT_NOTE
)]
struct Cli {
    /// host:port of the server.
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    addr: String,
    /// HS256 secret the server verifies tokens with (its auth_secret); tokens are minted locally.
    #[arg(long, global = true, env = "NIGHTMARKET_AUTH_SECRET", default_value = DEV_SECRET,
          hide_env_values = true)]
    secret: String,
    /// Also print one JSON summary line on stdout at the end.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a seller, products and a live show; print `SELLER_ID SHOW_ID PRODUCT_ID...`
    /// on one line (a JSON object instead with --json).
    Setup(SetupArgs),
    /// Open many viewer connections to a show (with --nchan: subscribers to an nginx + nchan
    /// channel) and measure the delivery of sequenced events.
    #[command(after_help = RATE_LIMIT_NOTE)]
    Fanout(FanoutArgs),
    /// Run concurrent buyers claiming one product; check that accepted units match the stock.
    #[command(after_help = RATE_LIMIT_NOTE)]
    Claims(ClaimsArgs),
    /// Close a live show as the operator, so the order service can settle it; print the show
    /// as the server answered.
    Close(CloseArgs),
    /// Run the benchmarks beside nginx + nchan, raw Redis and PostgreSQL (started here as
    /// processes) and write docs/benchmarks.md; `scripts/bench` installs the peers first.
    Bench(BenchArgs),
}

#[derive(Args)]
struct CloseArgs {
    /// The show to close.
    #[arg(long)]
    show: String,
}

#[derive(Args)]
struct SetupArgs {
    /// Products in the show's lineup.
    #[arg(long, default_value_t = 2)]
    products: usize,
    /// Units of each product allotted to the show.
    #[arg(long, default_value_t = 10_000)]
    stock: i64,
    /// Most units one buyer may hold of each product.
    #[arg(long, default_value_t = 1_000_000)]
    buyer_limit: i64,
    /// List price of every product, in đồng.
    #[arg(long, default_value_t = 250_000)]
    price: i64,
}

#[derive(Args)]
struct ConnectArgs {
    /// Show id (the second id `setup` prints). `fanout` takes several, comma-separated: its
    /// viewers are spread over them and each gets its own seller.
    #[arg(long = "show", value_delimiter = ',', required = true)]
    shows: Vec<String>,
    /// Local addresses to bind client sockets to, round-robin (e.g. 127.0.0.2,127.0.0.3):
    /// each source address has its own range of ephemeral ports.
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Connections handshaking at once. Kept below the server's listen backlog (128 with a
    /// default `TcpListener::bind`): an overflowing backlog drops SYNs, and each dropped one
    /// costs its client a 1 s retransmit that would show up as connect time.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds to wait for every connection to get its snapshot.
    #[arg(long, default_value_t = 180.0)]
    connect_timeout: f64,
    /// Server process id: report its CPU time and resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

impl ConnectArgs {
    /// The one show of a command that takes one.
    fn show(&self) -> anyhow::Result<&str> {
        match self.shows.as_slice() {
            [one] => Ok(one),
            _ => bail!("give one --show, not {}", self.shows.len()),
        }
    }
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Viewer connections to open to each show. One process stays below its open-file limit;
    /// spread large runs over several processes with different --sources and one --publish true.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// Seller commands (each makes one event) per second. One command is in flight at a time,
    /// so when acks take longer than 1/rate fewer are sent; the summary shows the rate reached.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds to publish (or, with --publish false, to listen).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Whether this process drives the seller; run one publisher per show.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    publish: bool,
    /// Send the seller's commands at --rate without waiting for each answer, as a seller who
    /// clicks on whatever the server's pace: a rate above what the server sustains overloads it.
    #[arg(long)]
    open_loop: bool,
    /// Products to pin back and forth (default: the first two of the lineup; a single product
    /// is pinned and unpinned in turn).
    #[arg(long, value_delimiter = ',')]
    pin_products: Vec<String>,
    /// Seconds to keep listening after publishing, for late deliveries.
    #[arg(long, default_value_t = 2.0)]
    grace: f64,
    /// Kernel receive buffer of each viewer socket, in bytes; small keeps memory low.
    #[arg(long, default_value_t = 4096)]
    recv_buffer: u32,
    /// Target an nginx + nchan server instead of Nightmarket: --show is the nchan channel id,
    /// viewers subscribe to ws://ADDR/sub/CHANNEL, and the publisher POSTs
    /// `{"type":"event","seq":N,"at":MS,"event":{...}}` to http://ADDR/pub/CHANNEL at --rate.
    /// Latency, gaps and the server figures are measured exactly as for Nightmarket.
    #[arg(long)]
    nchan: bool,
}

#[derive(Args)]
struct ClaimsArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// The product to claim; it must be pinned (see --pin).
    #[arg(long)]
    product: String,
    /// Buyer connections, claiming concurrently (subjects `lg-buyer-0`, `lg-buyer-1`, ...).
    #[arg(long, default_value_t = 100)]
    buyers: usize,
    /// Claims each buyer sends, one after another.
    #[arg(long, default_value_t = 100)]
    claims_per_buyer: usize,
    /// Buyers each connection plays in turn: it claims as one buyer, disconnects and connects
    /// again as the next, so a run reaches `buyers × rounds` distinct buyers (as a night with
    /// many orders does) while only `buyers` connections are open at once.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Cancel every Nth accepted claim right after its answer (0: never), so the claim log
    /// holds cancellations as a real night's does.
    #[arg(long, default_value_t = 0)]
    cancel_every: usize,
    /// Unit price each claim carries (default: the price in the buyer's snapshot).
    #[arg(long)]
    price: Option<i64>,
    /// Units per claim.
    #[arg(long, default_value_t = 1)]
    qty: u32,
    /// Pin the product first, as the show's seller.
    #[arg(long)]
    pin: bool,
}

/// The server under load and the key to mint its tokens.
struct Target {
    addr: SocketAddr,
    key: TokenKey,
}

impl Target {
    fn token(&self, role: Role, subject: &str) -> String {
        self.key
            .mint(role, subject, stats::now_unix_secs(), 24 * 3600)
    }

    async fn show(&self, id: &str) -> anyhow::Result<Show> {
        http::call(
            self.addr,
            "GET",
            &format!("/api/shows/{id}"),
            None,
            None,
            200,
        )
        .await
    }

    /// Opens a WebSocket to a show from `source`.
    async fn connect(
        &self,
        show: &str,
        token: &str,
        source: Option<IpAddr>,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Ws> {
        let path = format!("/ws/shows/{show}?token={token}");
        self.connect_path(&path, source, recv_buffer).await
    }

    /// Opens a WebSocket to `path` from `source`. The read buffer is small so that thousands
    /// of connections cost the generator little memory.
    async fn connect_path(
        &self,
        path: &str,
        source: Option<IpAddr>,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Ws> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{}{path}", self.addr);
        // Client frames are small and each send is flushed at once: no write buffering.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        match tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(r)) => bail!("upgrade refused: HTTP {}", r.status()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A JSON request body.
fn body(v: &impl Serialize) -> anyhow::Result<Option<String>> {
    Ok(Some(serde_json::to_string(v)?))
}

/// The fields of a server frame the benchmarks read. Only these are deserialized (borrowed,
/// no allocation); the rest of each frame is skipped, so parsing does not dominate the
/// generator's CPU. Ids, codes and outcomes never contain JSON escapes.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    /// `event`: when the server made it, UTC ms.
    at: i64,
    req: Option<&'a str>,
    /// `error`: the error code.
    code: Option<&'a str>,
    /// `snapshot`: the pinned product and the price a claim on it must carry.
    pinned: Option<&'a str>,
    price: Option<i64>,
    claim_id: Option<&'a str>,
    outcome: Option<&'a str>,
    reason: Option<&'a str>,
    quantity: Option<u32>,
}

/// How a connection ended (`Some`), or `None` for a frame that does not end it.
fn ending(msg: Option<Result<Message, tungstenite::Error>>) -> Option<String> {
    match msg {
        Some(Ok(Message::Close(f))) => Some(f.map_or_else(
            || "close without code".into(),
            |f| format!("close {}", u16::from(f.code)),
        )),
        Some(Ok(_)) => None,
        Some(Err(e)) => Some(format!("error: {e}")),
        None => Some("eof without close frame".into()),
    }
}

/// The next text frame within [`WAIT`]; an error once the connection ends.
async fn next_text(ws: &mut Ws) -> anyhow::Result<Utf8Bytes> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no frame from the server")?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t),
            other => {
                if let Some(how) = ending(other) {
                    bail!("connection ended: {how}");
                }
            }
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> anyhow::Result<()> {
    Ok(ws.send(Message::text(serde_json::to_string(msg)?)).await?)
}

/// Sends one seller command and waits for its `ack` (the event's seq) or `error` (its code).
async fn command(ws: &mut Ws, msg: &ClientMessage) -> anyhow::Result<Result<u64, String>> {
    send(ws, msg).await?;
    loop {
        let text = next_text(ws).await?;
        let f: Frame = serde_json::from_str(&text)?;
        match f.kind {
            "ack" if f.req == msg.req() => return Ok(Ok(f.seq)),
            "error" if f.req == msg.req() => return Ok(Err(f.code.unwrap_or("?").into())),
            _ => {}
        }
    }
}

/// A seller connection to a show, with the sequence and pinned product of its snapshot.
async fn seller(target: &Target, show: &Show) -> anyhow::Result<(Ws, u64, Option<String>)> {
    let token = target.token(Role::Seller, &show.seller_id);
    let mut ws = target.connect(&show.id, &token, None, None).await?;
    loop {
        let text = next_text(&mut ws).await?;
        let f: Frame = serde_json::from_str(&text)?;
        if f.kind == "snapshot" {
            return Ok((ws, f.seq, f.pinned.map(str::to_owned)));
        }
    }
}

/// Many client connections to one show, opened a bounded number at a time.
struct Swarm {
    target: Target,
    shows: Vec<String>,
    sources: Vec<IpAddr>,
    recv_buffer: Option<u32>,
    /// Subscribe to the nchan channel `show` instead (no token, no snapshot).
    nchan: bool,
    gate: Semaphore,
    ready: AtomicUsize,
    failed: AtomicUsize,
}

/// A connection that has its snapshot: its sequence and price.
struct Opened {
    ws: Ws,
    seq: u64,
    price: Option<i64>,
}

impl Swarm {
    fn new(target: Target, conn: &ConnectArgs, recv_buffer: Option<u32>) -> Self {
        Self {
            target,
            shows: conn.shows.clone(),
            sources: conn.sources.clone(),
            recv_buffer,
            nchan: false,
            gate: Semaphore::new(conn.connect_concurrency.max(1)),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        }
    }

    /// The show client `i` joins (an index into `shows`): clients are spread round-robin.
    fn show_of(&self, i: usize) -> usize {
        i % self.shows.len().max(1)
    }

    /// Connects client `i` as `role`/`subject` and reads up to its snapshot (with nchan:
    /// subscribes, and counts events from seq 0).
    async fn open(&self, i: usize, role: Role, subject: &str) -> anyhow::Result<Opened> {
        let show = &self.shows[self.show_of(i)];
        let opened = async {
            let _permit = self.gate.acquire().await?;
            let source = (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()]);
            if self.nchan {
                let path = format!("/sub/{show}");
                let ws = (self.target)
                    .connect_path(&path, source, self.recv_buffer)
                    .await?;
                let (seq, price) = (0, None);
                return anyhow::Ok(Opened { ws, seq, price });
            }
            let token = self.target.token(role, subject);
            let mut ws = self
                .target
                .connect(show, &token, source, self.recv_buffer)
                .await?;
            loop {
                let text = next_text(&mut ws).await?;
                let f: Frame = serde_json::from_str(&text)?;
                if f.kind == "snapshot" {
                    let (seq, price) = (f.seq, f.price);
                    return anyhow::Ok(Opened { ws, seq, price });
                }
            }
        };
        let result = opened.await;
        let counter = if result.is_ok() {
            &self.ready
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Waits until all `n` clients have their snapshot or failed, or the timeout passes.
    async fn settle(&self, n: usize, timeout: f64) -> (usize, usize, f64) {
        let start = Instant::now();
        let mut reported = Instant::now();
        loop {
            let ready = self.ready.load(Ordering::Relaxed);
            let failed = self.failed.load(Ordering::Relaxed);
            let elapsed = start.elapsed().as_secs_f64();
            if ready + failed >= n || elapsed > timeout {
                return (ready, failed, elapsed);
            }
            if reported.elapsed() > Duration::from_secs(5) {
                eprintln!("  connecting: {ready} ready, {failed} failed of {n}");
                reported = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn bump(map: &mut Counts, key: impl Into<String>, n: u64) {
    *map.entry(key.into()).or_default() += n;
}

fn sample(pid: Option<u32>) -> anyhow::Result<Option<ProcSample>> {
    pid.map(stats::sample).transpose()
}

/// CPU seconds this process has used, to show whether the generator was the bottleneck.
fn own_cpu() -> f64 {
    stats::sample(std::process::id()).map_or(0.0, |s| s.cpu_s)
}

fn rate(n: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { n / seconds } else { 0.0 }
}

/// What one viewer saw, or (merged) what all of them saw.
#[derive(Default)]
struct ViewerReport {
    latencies: Latencies,
    deliveries: u64,
    lost: u64,
    out_of_order: u64,
    /// Frames other than events that moved the viewer to a newer sequence (a catch-up to the
    /// newest state), and the events they stood in for.
    caught_up: u64,
    skipped: u64,
    other_frames: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    /// One viewer: the show it watches (an index into the run's shows), the newest sequence it
    /// has applied and when it got there. Merged: unused.
    show: usize,
    last_seq: u64,
    reached: Option<Instant>,
    /// How the connection failed before its snapshot, or ended before the run did.
    connect_error: Option<String>,
    dropped: Option<String>,
}

impl ViewerReport {
    fn absorb(&mut self, r: ViewerReport) {
        self.latencies.merge(r.latencies);
        self.deliveries += r.deliveries;
        self.lost += r.lost;
        self.out_of_order += r.out_of_order;
        self.caught_up += r.caught_up;
        self.skipped += r.skipped;
        self.other_frames += r.other_frames;
        self.first = self.first.into_iter().chain(r.first).min();
        self.last = self.last.max(r.last);
    }
}

/// One viewer: connects, then records every event until told to stop.
async fn viewer(swarm: Arc<Swarm>, i: usize, mut stop: watch::Receiver<bool>) -> ViewerReport {
    let mut r = ViewerReport {
        show: swarm.show_of(i),
        ..Default::default()
    };
    let mut ws = match swarm.open(i, Role::Viewer, &format!("lg-viewer-{i}")).await {
        Ok(o) => {
            r.last_seq = o.seq;
            o.ws
        }
        Err(e) => {
            r.connect_error = Some(e.root_cause().to_string());
            return r;
        }
    };
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        let text: Bytes = match msg {
            Some(Ok(Message::Text(t))) => t.into(),
            Some(Ok(Message::Binary(b))) => b,
            other => match ending(other) {
                Some(how) => {
                    r.dropped = Some(how);
                    break;
                }
                None => continue,
            },
        };
        match serde_json::from_slice::<Frame>(&text) {
            Ok(f) if f.kind == "event" => {
                let now = Instant::now();
                r.first.get_or_insert(now);
                r.last = Some(now);
                // Same machine, same clock: the server stamps `at` in ms when it makes the event.
                r.latencies.push_us(stats::now_unix_us() - f.at * 1000);
                r.deliveries += 1;
                if f.seq <= r.last_seq {
                    r.out_of_order += 1;
                } else {
                    r.lost += f.seq - r.last_seq - 1;
                    r.last_seq = f.seq;
                    r.reached = Some(now);
                }
            }
            // A frame that carries a newer sequence without being that event (a snapshot or
            // catch-up sent in-band to a viewer who fell behind): the viewer has the newest
            // state up to `seq`, and the events in between are skipped by design, not lost.
            Ok(f) if f.seq > r.last_seq => {
                r.caught_up += 1;
                r.skipped += f.seq - r.last_seq - 1;
                r.last_seq = f.seq;
                r.reached = Some(Instant::now());
            }
            _ => r.other_frames += 1,
        }
    }
    if r.dropped.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    r
}

#[derive(Default)]
struct PublishReport {
    commands: u64,
    errors: Counts,
    events: u64,
    last_seq: u64,
    acks: Latencies,
    /// When the last command (or POST) that made an event was sent.
    last_sent: Option<Instant>,
}

impl PublishReport {
    fn absorb(&mut self, r: &mut PublishReport) {
        self.commands += r.commands;
        r.errors
            .iter()
            .for_each(|(k, n)| bump(&mut self.errors, k.clone(), *n));
        self.events += r.events;
        self.acks.merge(std::mem::take(&mut r.acks));
        self.last_sent = self.last_sent.max(r.last_sent);
    }
}

/// How a seller publishes: the products to pin in turn, how fast, for how long, and whether
/// it waits for each command's answer before the next (closed loop) or keeps the rate
/// whatever the server's pace (open loop, to overload it).
struct PublishPlan {
    products: Vec<String>,
    rate: f64,
    duration: f64,
    open_loop: bool,
}

impl PublishPlan {
    /// The command at tick `n` and the product pinned once it succeeds: pins the products in
    /// turn, starting after the pinned one (pinning the pinned product makes no event), or
    /// pins and unpins a single product in turn.
    fn command(&self, n: u64, first_pinned: Option<&String>) -> (ClientMessage, Option<String>) {
        let req = Some(format!("lg-{n}"));
        let start = self
            .products
            .iter()
            .position(|p| Some(p) == first_pinned)
            .map_or(0, |i| i + 1);
        match self.products.as_slice() {
            [only] => {
                // With one product, the state alternates: pinned at even ticks if it started
                // unpinned, at odd ones otherwise.
                let pin_now = n.is_multiple_of(2) != (first_pinned == Some(only));
                if pin_now {
                    let product_id = only.clone();
                    (ClientMessage::Pin { req, product_id }, Some(only.clone()))
                } else {
                    (ClientMessage::Unpin { req }, None)
                }
            }
            products => {
                let product_id = products[(start + n as usize) % products.len()].clone();
                let after = Some(product_id.clone());
                (ClientMessage::Pin { req, product_id }, after)
            }
        }
    }
}

/// Publishes on one show as its seller, following `plan`.
async fn publish(
    target: &Target,
    show: &Show,
    plan: &PublishPlan,
) -> anyhow::Result<PublishReport> {
    let (ws, first_seq, pinned) = seller(target, show).await.context("seller")?;
    let mut r = if plan.open_loop {
        publish_open_loop(ws, pinned.as_ref(), plan).await?
    } else {
        publish_closed_loop(ws, pinned.as_ref(), plan).await?
    };
    r.last_seq = r.last_seq.max(first_seq);
    r.events = r.last_seq - first_seq;
    Ok(r)
}

/// A publisher's clock: `rate` ticks a second for `duration` seconds.
struct Pace {
    interval: tokio::time::Interval,
    start: Instant,
    duration: f64,
}

impl Pace {
    fn new(rate: f64, duration: f64) -> Self {
        Self {
            interval: tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001))),
            start: Instant::now(),
            duration,
        }
    }

    /// Waits for the next tick; false once the duration has passed.
    async fn tick(&mut self) -> bool {
        if self.start.elapsed().as_secs_f64() >= self.duration {
            return false;
        }
        self.interval.tick().await;
        true
    }
}

/// One command in flight at a time: when answers take longer than 1/rate, fewer are sent.
async fn publish_closed_loop(
    mut ws: Ws,
    pinned: Option<&String>,
    plan: &PublishPlan,
) -> anyhow::Result<PublishReport> {
    let mut r = PublishReport::default();
    let mut pace = Pace::new(plan.rate, plan.duration);
    // With one product, a refused command leaves the state as it was: the next tick repeats it.
    let mut n = 0;
    while pace.tick().await {
        let (msg, _) = plan.command(n, pinned);
        let sent = Instant::now();
        r.commands += 1;
        match command(&mut ws, &msg).await? {
            Ok(seq) => {
                r.acks.push_us(sent.elapsed().as_micros() as i64);
                r.last_seq = r.last_seq.max(seq);
                r.last_sent = Some(sent);
                n += 1;
            }
            Err(code) => bump(&mut r.errors, code, 1),
        }
    }
    let _ = ws.close(None).await;
    Ok(r)
}

/// Sends a command at every tick without waiting for answers; a reader collects them. Each
/// command assumes the previous ones succeed, as a seller clicking ahead would.
async fn publish_open_loop(
    ws: Ws,
    pinned: Option<&String>,
    plan: &PublishPlan,
) -> anyhow::Result<PublishReport> {
    let (mut sink, mut stream) = ws.split();
    let sent_at = Arc::new(std::sync::Mutex::new(BTreeMap::<String, Instant>::new()));
    let (done_tx, mut done_rx) = watch::channel(None::<u64>);
    let reader = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut r = PublishReport::default();
            let mut answered = 0u64;
            loop {
                let total = *done_rx.borrow();
                if total.is_some_and(|t| answered >= t) {
                    break;
                }
                let msg = tokio::select! {
                    m = stream.next() => m,
                    _ = done_rx.changed() => continue,
                };
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    other => match ending(other) {
                        Some(how) => bail!("the seller's connection ended: {how}"),
                        None => continue,
                    },
                };
                let f: Frame = serde_json::from_str(&text)?;
                let Some(req) = f.req else { continue };
                let Some(sent) = sent_at.lock().ok().and_then(|mut m| m.remove(req)) else {
                    continue;
                };
                answered += 1;
                match (f.kind, f.code) {
                    ("ack", _) => {
                        r.acks.push_us(sent.elapsed().as_micros() as i64);
                        if f.seq > r.last_seq {
                            r.last_seq = f.seq;
                            r.last_sent = Some(sent);
                        }
                    }
                    (_, code) => bump(&mut r.errors, code.unwrap_or("?"), 1),
                }
            }
            anyhow::Ok(r)
        })
    };
    let mut pace = Pace::new(plan.rate, plan.duration);
    let mut n = 0;
    while pace.tick().await {
        let (msg, _) = plan.command(n, pinned);
        if let (Some(req), Ok(mut m)) = (msg.req(), sent_at.lock()) {
            m.insert(req.to_owned(), Instant::now());
        }
        sink.send(Message::text(serde_json::to_string(&msg)?))
            .await?;
        n += 1;
    }
    let _ = done_tx.send(Some(n));
    let mut r = tokio::time::timeout(WAIT, reader)
        .await
        .context("the seller's commands were not all answered")???;
    r.commands = n;
    let _ = sink.close().await;
    Ok(r)
}

/// A product id of the length Nightmarket uses, so nchan messages match its event frames in size.
const NCHAN_PRODUCT: &str = "0193b6ea-7d14-7c92-a1e5-3b8f6d2c9e11";

/// Publishes event frames numbered 1, 2, ... to the nchan channel at `rate` for `duration`
/// seconds, one POST at a time; the ack latency is the POST's round trip.
async fn publish_nchan(
    target: &Target,
    channel: &str,
    rate: f64,
    duration: f64,
) -> anyhow::Result<PublishReport> {
    let mut r = PublishReport::default();
    let path = format!("/pub/{channel}");
    let mut pace = Pace::new(rate, duration);
    while pace.tick().await {
        let seq = r.last_seq + 1;
        let price = if seq % 2 == 0 { 250_000 } else { 200_000 };
        let frame = json!({
            "type": "event", "seq": seq, "at": stats::now_unix_us() / 1000,
            "event": {"kind": "pinned", "product_id": NCHAN_PRODUCT, "price": price},
        });
        let sent = Instant::now();
        r.commands += 1;
        let (status, _) = http::raw(target.addr, "POST", &path, None, body(&frame)?).await?;
        if (200..300).contains(&status) {
            r.acks.push_us(sent.elapsed().as_micros() as i64);
            r.last_seq = seq;
            r.last_sent = Some(sent);
        } else {
            bump(&mut r.errors, format!("http {status}"), 1);
        }
    }
    r.events = r.last_seq;
    Ok(r)
}

/// The products a show's seller pins in turn: `--pin-products`, or the first two of its lineup.
fn products_to_pin(show: &Show, chosen: &[String]) -> Vec<String> {
    if !chosen.is_empty() {
        return chosen.to_vec();
    }
    show.lineup
        .iter()
        .take(2)
        .map(|l| l.product_id.clone())
        .collect()
}

async fn fanout(target: Target, a: FanoutArgs, json_out: bool) -> anyhow::Result<()> {
    let mut shows = Vec::new();
    if !a.nchan {
        for id in &a.conn.shows {
            let show = target.show(id).await?;
            if show.status != "live" {
                eprintln!("warning: show {} is {}, not live", show.id, show.status);
            }
            if a.publish && products_to_pin(&show, &a.pin_products).is_empty() {
                bail!("no products to pin in show {id}");
            }
            shows.push(show);
        }
    }
    let pid = a.conn.server_pid;
    let before = sample(pid)?;
    let mut swarm = Swarm::new(target, &a.conn, Some(a.recv_buffer));
    swarm.nchan = a.nchan;
    let swarm = Arc::new(swarm);
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = a.viewers * a.conn.shows.len();
    let tasks: Vec<_> = (0..total)
        .map(|i| tokio::spawn(viewer(swarm.clone(), i, stop_rx.clone())))
        .collect();
    let (ready, failed, connect_s) = swarm.settle(total, a.conn.connect_timeout).await;
    let joined = if a.nchan {
        "are subscribed"
    } else {
        "have their snapshot"
    };
    eprintln!("{ready} viewers {joined}, {failed} failed, in {connect_s:.2} s");
    let connected = sample(pid)?;
    let own = own_cpu();
    let window = Instant::now();
    // One publisher per show, all at once; each keeps the rate on its own show.
    let mut published: Option<Vec<PublishReport>> = None;
    if a.publish {
        let runs = (0..a.conn.shows.len()).map(|k| {
            let swarm = swarm.clone();
            let plan = PublishPlan {
                products: shows
                    .get(k)
                    .map(|s| products_to_pin(s, &a.pin_products))
                    .unwrap_or_default(),
                rate: a.rate,
                duration: a.duration,
                open_loop: a.open_loop,
            };
            let show = shows.get(k).cloned();
            let channel = a.conn.shows[k].clone();
            tokio::spawn(async move {
                match show {
                    Some(show) => publish(&swarm.target, &show, &plan).await,
                    None => publish_nchan(&swarm.target, &channel, plan.rate, plan.duration).await,
                }
            })
        });
        let mut reports = Vec::new();
        for run in runs.collect::<Vec<_>>() {
            reports.push(run.await??);
        }
        published = Some(reports);
    } else {
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(a.grace)).await;
    let after = sample(pid)?;
    let own = own_cpu() - own;
    let window_s = window.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);

    let mut all = ViewerReport::default();
    let (mut drops, mut connect_errors) = (Counts::new(), Counts::new());
    // Viewers still connected at the end: their show, newest sequence and when they got it.
    let mut open = Vec::new();
    for t in tasks {
        let mut r = t.await?;
        if let Some(e) = r.connect_error.take() {
            bump(&mut connect_errors, e, 1);
            continue;
        }
        match r.dropped.take() {
            Some(how) => bump(&mut drops, how, 1),
            None => open.push((r.show, r.last_seq, r.reached)),
        }
        all.absorb(r);
    }
    let (deliveries, lost, ooo) = (all.deliveries, all.lost, all.out_of_order);
    // The newest sequence of each show: what its publisher made, or what some viewer saw.
    let mut final_seq = vec![0u64; a.conn.shows.len()];
    for &(show, seq, _) in &open {
        final_seq[show] = final_seq[show].max(seq);
    }
    if let Some(reports) = &published {
        for (k, p) in reports.iter().enumerate() {
            final_seq[k] = final_seq[k].max(p.last_seq);
        }
    }
    // Events that a connection still open at the end had not received yet, and how long after
    // the last publish each viewer had the newest state of its show.
    let behind: u64 = open.iter().map(|&(k, s, _)| final_seq[k] - s).sum();
    let mut latest = Latencies::default();
    if let Some(reports) = &published {
        for &(k, seq, reached) in &open {
            let (Some(sent), Some(at)) = (reports[k].last_sent, reached) else {
                continue;
            };
            if seq >= final_seq[k] {
                latest.push_us(at.saturating_duration_since(sent).as_micros() as i64);
            }
        }
    }
    let span = all
        .first
        .zip(all.last)
        .map_or(0.0, |(f, l)| (l - f).as_secs_f64());
    let per_s = rate(deliveries as f64, span);
    let mut publish_all = published.map(|mut reports| {
        let mut sum = PublishReport::default();
        reports.iter_mut().for_each(|r| sum.absorb(r));
        sum
    });

    let (mode, what) = if a.nchan {
        ("fanout-nchan", "nchan channel")
    } else {
        ("fanout", "show")
    };
    let names = a.conn.shows.join(",");
    eprintln!("{mode} on {what} {names}: {} viewers each", a.viewers);
    eprintln!(
        "  connected {ready} ({failed} failed) in {connect_s:.2} s = {:.0}/s {connect_errors:?}",
        rate(ready as f64, connect_s)
    );
    let show_count = a.conn.shows.len() as f64;
    if let Some(p) = publish_all.as_mut() {
        eprintln!(
            "  published {} events = {:.1}/s per show (asked {}/s{}) with {} commands (errors \
             {:?}); ack {}",
            p.events,
            p.events as f64 / a.duration / show_count,
            a.rate,
            if a.open_loop { ", open loop" } else { "" },
            p.commands,
            p.errors,
            p.acks.human()
        );
    }
    eprintln!(
        "  deliveries {deliveries} over {span:.2} s = {per_s:.0}/s ({} other frames)",
        all.other_frames
    );
    eprintln!("  latency (receive - event at): {}", all.latencies.human());
    eprintln!(
        "  lost (seq gaps) {lost}, out of order {ooo}, behind at end {behind}; caught up {} \
         times, skipping {} events",
        all.caught_up, all.skipped
    );
    eprintln!(
        "  newest state reached by {} of {} open viewers; after the last publish: {}",
        latest.len(),
        open.len(),
        latest.human()
    );
    eprintln!("  dropped {}: {drops:?}", drops.values().sum::<u64>());
    eprintln!(
        "  generator CPU {own:.2} s in the {window_s:.1} s window ({:.0}% of a core)",
        own / window_s * 100.0
    );
    let mut server = Value::Null;
    if let (Some(b), Some(c), Some(e)) = (before, connected, after) {
        let (join_cpu, join_user, join_sys) = stats::cpu_between(&b, &c);
        let (cpu, user, sys) = stats::cpu_between(&c, &e);
        let per_m = |s: f64| rate(s * 1e6, deliveries as f64);
        let per_join_us = |s: f64| rate(s * 1e6, ready as f64);
        let rss_per = (c.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / ready.max(1) as f64;
        eprintln!(
            "  server CPU: {join_cpu:.2} s connecting ({:.1} µs per join, {:.1} in user space); \
             {cpu:.2} s in the {window_s:.1} s window ({:.0}% of a core) = {:.2} s per million \
             deliveries ({:.2} user + {:.2} system)",
            per_join_us(join_cpu),
            per_join_us(join_user),
            cpu / window_s * 100.0,
            per_m(cpu),
            per_m(user),
            per_m(sys)
        );
        eprintln!(
            "  server RSS: {} KiB before, {} KiB connected, {} KiB at end = {:.1} KiB/connection",
            b.rss_kib,
            c.rss_kib,
            e.rss_kib,
            rss_per / 1024.0
        );
        server = json!({
            "connect_cpu_s": join_cpu, "connect_user_s": join_user, "connect_sys_s": join_sys,
            "window_cpu_s": cpu, "window_user_s": user, "window_sys_s": sys, "window_s": window_s,
            "cpu_s_per_million_deliveries": per_m(cpu),
            "user_s_per_million_deliveries": per_m(user),
            "sys_s_per_million_deliveries": per_m(sys),
            "rss_kib_before": b.rss_kib, "rss_kib_connected": c.rss_kib, "rss_kib_end": e.rss_kib,
            "rss_bytes_per_connection": rss_per,
        });
    }
    if json_out {
        let publish = publish_all.map(|mut p| {
            json!({
                "events": p.events, "events_per_s": p.events as f64 / a.duration / show_count,
                "commands": p.commands, "errors": p.errors, "ack": p.acks.json(),
                "open_loop": a.open_loop,
            })
        });
        let summary = json!({
            "mode": mode, "show": names, "shows": a.conn.shows.len(), "viewers": a.viewers,
            "connected": ready, "failed": failed, "connect_errors": connect_errors,
            "connect_s": connect_s, "publish": publish, "deliveries": deliveries,
            "deliveries_per_s": per_s, "delivery_span_s": span, "latency": all.latencies.json(),
            "lost": lost, "out_of_order": ooo, "caught_up": all.caught_up,
            "skipped": all.skipped, "behind_at_end": behind, "dropped": drops,
            "latest": {"reached": latest.len(), "open": open.len(), "after_last_publish": latest.json()},
            "server": server, "generator_window_cpu_s": own,
        });
        println!("{summary}");
    }
    Ok(())
}

/// The parts of a `claim_result` or `cancel_result` a buyer keeps.
struct Answer {
    outcome: Option<String>,
    reason: Option<String>,
    quantity: Option<u32>,
}

/// Reads frames until the `kind` answer for `claim_id` arrives; other frames (stock, feed,
/// viewer counts) are skipped.
async fn answer(ws: &mut Ws, kind: &str, claim_id: &str) -> anyhow::Result<Answer> {
    loop {
        let text = next_text(ws).await?;
        let f: Frame = serde_json::from_str(&text)?;
        if f.kind == kind && f.claim_id == Some(claim_id) {
            return Ok(Answer {
                outcome: f.outcome.map(str::to_owned),
                reason: f.reason.map(str::to_owned),
                quantity: f.quantity,
            });
        }
    }
}

#[derive(Default)]
struct BuyerReport {
    error: Option<String>,
    acks: Latencies,
    outcomes: Counts,
    accepted_qty: u64,
    /// Units returned by accepted cancellations.
    cancelled_qty: u64,
}

/// What every buyer of a claims run does.
struct ClaimPlan {
    product: String,
    claims: usize,
    qty: u32,
    price: Option<i64>,
    /// Buyers each connection plays in turn, and how many connections there are.
    rounds: usize,
    connections: usize,
    cancel_every: usize,
    /// Keeps this run's claim ids apart from earlier runs on the same show.
    run: String,
}

/// One connection: for each of its rounds, connects as the next buyer (the first waits for the
/// start), sends that buyer's claims one after another, each once the previous one is answered,
/// and cancels every `cancel_every`th accepted claim.
async fn buyer(
    swarm: Arc<Swarm>,
    plan: Arc<ClaimPlan>,
    i: usize,
    mut go: watch::Receiver<bool>,
) -> BuyerReport {
    let mut r = BuyerReport::default();
    let run = async {
        let mut accepted = 0usize;
        for round in 0..plan.rounds.max(1) {
            let b = i + round * plan.connections;
            let mut o = swarm
                .open(i, Role::Viewer, &format!("lg-buyer-{b}"))
                .await?;
            go.wait_for(|go| *go).await?;
            let price = plan
                .price
                .or(o.price)
                .context("nothing is pinned: no price")?;
            for k in 0..plan.claims {
                let claim_id = format!("{}-{b}-{k}", plan.run);
                let claim = ClientMessage::Claim {
                    claim_id: claim_id.clone(),
                    product_id: plan.product.clone(),
                    quantity: plan.qty.into(),
                    price,
                };
                let sent = Instant::now();
                send(&mut o.ws, &claim).await?;
                let mut f = answer(&mut o.ws, "claim_result", &claim_id).await?;
                if f.outcome.as_deref() == Some("pending") {
                    // Not known at the claim deadline: the definite answer follows.
                    bump(&mut r.outcomes, "pending (then)", 1);
                    f = answer(&mut o.ws, "claim_result", &claim_id).await?;
                }
                r.acks.push_us(sent.elapsed().as_micros() as i64);
                let outcome = f.outcome.as_deref().unwrap_or("?");
                let qty = f.quantity.unwrap_or(plan.qty);
                match &f.reason {
                    Some(reason) => bump(&mut r.outcomes, format!("{outcome}:{reason}"), 1),
                    None => bump(&mut r.outcomes, outcome, 1),
                }
                if outcome != "accepted" {
                    continue;
                }
                r.accepted_qty += u64::from(qty);
                accepted += 1;
                if plan.cancel_every == 0 || !accepted.is_multiple_of(plan.cancel_every) {
                    continue;
                }
                let cancel = ClientMessage::Cancel {
                    claim_id: claim_id.clone(),
                };
                send(&mut o.ws, &cancel).await?;
                let f = answer(&mut o.ws, "cancel_result", &claim_id).await?;
                let outcome = f.outcome.as_deref().unwrap_or("?");
                match &f.reason {
                    Some(reason) => bump(&mut r.outcomes, format!("cancel {outcome}:{reason}"), 1),
                    None => bump(&mut r.outcomes, format!("cancel {outcome}"), 1),
                }
                if outcome == "cancelled" {
                    r.cancelled_qty += u64::from(qty);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), o.ws.close(None)).await;
        }
        anyhow::Ok(())
    };
    if let Err(e) = run.await {
        r.error = Some(e.root_cause().to_string());
    }
    r
}

fn stock_left(show: &Show, product: &str) -> anyhow::Result<u64> {
    let levels = show.stock.as_deref().unwrap_or_default();
    levels
        .iter()
        .find(|l| l.product_id == product)
        .map(|l| u64::from(l.left))
        .with_context(|| format!("no stock for {product} in a {} show", show.status))
}

async fn claims(target: Target, a: ClaimsArgs, json_out: bool) -> anyhow::Result<()> {
    let show_id = a.conn.show()?.to_owned();
    let show = target.show(&show_id).await?;
    let allotted = show
        .lineup
        .iter()
        .find(|l| l.product_id == a.product)
        .map(|l| u64::from(l.stock))
        .with_context(|| format!("{} is not in the lineup of {}", a.product, show.id))?;
    if a.pin {
        let (mut ws, _, _) = seller(&target, &show).await.context("seller")?;
        let req = Some("lg-pin".into());
        let pin = ClientMessage::Pin {
            req,
            product_id: a.product.clone(),
        };
        if let Err(code) = command(&mut ws, &pin).await? {
            bail!("pinning {} failed: {code}", a.product);
        }
        let _ = ws.close(None).await;
    }
    let plan = Arc::new(ClaimPlan {
        product: a.product.clone(),
        claims: a.claims_per_buyer,
        qty: a.qty,
        price: a.price,
        rounds: a.rounds.max(1),
        connections: a.buyers,
        cancel_every: a.cancel_every,
        run: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    });
    let pid = a.conn.server_pid;
    let swarm = Arc::new(Swarm::new(target, &a.conn, None));
    let (go_tx, go_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..a.buyers)
        .map(|i| tokio::spawn(buyer(swarm.clone(), plan.clone(), i, go_rx.clone())))
        .collect();
    let (ready, failed, _) = swarm.settle(a.buyers, a.conn.connect_timeout).await;
    eprintln!("{ready} buyers have their snapshot, {failed} failed; claiming");
    let left_before = stock_left(&swarm.target.show(&show_id).await?, &a.product)?;
    let before = sample(pid)?;
    let own = own_cpu();
    let start = Instant::now();
    let _ = go_tx.send(true);
    let (mut acks, mut outcomes, mut errors) = (Latencies::default(), Counts::new(), Counts::new());
    let (mut accepted_qty, mut cancelled_qty) = (0, 0);
    for t in tasks {
        let r = t.await?;
        if let Some(e) = r.error {
            bump(&mut errors, e, 1);
        }
        acks.merge(r.acks);
        r.outcomes
            .into_iter()
            .for_each(|(k, n)| bump(&mut outcomes, k, n));
        accepted_qty += r.accepted_qty;
        cancelled_qty += r.cancelled_qty;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = sample(pid)?;
    let own = own_cpu() - own;
    let left_after = stock_left(&swarm.target.show(&show_id).await?, &a.product)?;

    let answered = acks.len();
    let accepted = outcomes.get("accepted").copied().unwrap_or(0);
    // Measured against the stock before this run, so earlier runs on the show do not count.
    let taken = left_before.saturating_sub(left_after);
    let held = accepted_qty.saturating_sub(cancelled_qty);
    let ok = held == taken && left_after <= left_before;
    let oversold = held.saturating_sub(left_before);
    let rounds = a.rounds.max(1);
    eprintln!(
        "claims on show {} product {}: {} connections x {rounds} buyers in turn x {} claims of {} \
         unit(s)",
        show_id, a.product, a.buyers, a.claims_per_buyer, a.qty
    );
    eprintln!(
        "  answered {answered} in {elapsed:.2} s = {:.0}/s; accepted {accepted} = {:.0}/s",
        rate(answered as f64, elapsed),
        rate(accepted as f64, elapsed)
    );
    eprintln!("  ack latency: {}", acks.human());
    eprintln!("  outcomes {outcomes:?}; buyer errors {errors:?}");
    eprintln!(
        "  accounting {}: accepted {accepted_qty} units, {cancelled_qty} cancelled; stock \
         {left_before} -> {left_after} (taken {taken}, allotted {allotted}); oversold {oversold}",
        if ok { "OK" } else { "MISMATCH" }
    );
    eprintln!(
        "  generator CPU {own:.2} s ({:.0}% of a core)",
        own / elapsed * 100.0
    );
    let mut server = Value::Null;
    if let (Some(b), Some(e)) = (before, after) {
        let (cpu, user, sys) = stats::cpu_between(&b, &e);
        eprintln!(
            "  server CPU {cpu:.2} s ({:.0}% of a core) = {:.1} ms per 1000 claims; RSS {} KiB",
            cpu / elapsed * 100.0,
            rate(cpu * 1e6, answered as f64),
            e.rss_kib
        );
        server = json!({"cpu_s": cpu, "user_s": user, "sys_s": sys, "rss_kib": e.rss_kib});
    }
    if json_out {
        let summary = json!({
            "mode": "claims", "show": show_id, "product": a.product, "buyers": a.buyers,
            "rounds": rounds, "distinct_buyers": a.buyers * rounds, "cancel_every": a.cancel_every,
            "connected": ready, "claims_per_buyer": a.claims_per_buyer, "qty": a.qty,
            "elapsed_s": elapsed, "answered": answered, "answered_per_s": rate(answered as f64, elapsed),
            "accepted": accepted, "accepted_per_s": rate(accepted as f64, elapsed),
            "ack": acks.json(), "outcomes": outcomes, "errors": errors,
            "accepted_qty": accepted_qty, "cancelled_qty": cancelled_qty, "allotted": allotted, "left_before": left_before,
            "left_after": left_after, "accounting_ok": ok, "oversold": oversold, "server": server,
            "generator_cpu_s": own,
        });
        println!("{summary}");
    }
    Ok(())
}

async fn setup(target: &Target, a: SetupArgs, json_out: bool) -> anyhow::Result<()> {
    let op = target.token(Role::Operator, "loadgen");
    let op = Some(op.as_str());
    let seller = CreateSeller {
        name: "HTX Mật ong Ba Vì".into(),
        kind: Some("cooperative".into()),
        district: Some("Ba Vì".into()),
    };
    let seller: Seller =
        http::call(target.addr, "POST", "/api/sellers", op, body(&seller)?, 201).await?;
    let mut ids = Vec::with_capacity(a.products);
    for i in 0..a.products {
        let p = CreateProduct {
            seller_id: seller.id.clone(),
            name: format!("Mật ong hoa nhãn Ba Vì số {i}"),
            group: "food".into(),
            stars: 4,
            district: "Ba Vì".into(),
            commune: "Tản Lĩnh".into(),
            producer: "HTX Mật ong Ba Vì".into(),
            list_price: a.price,
            origin_document: "GCN-OCOP-HN-2024-0101".into(),
            quality_label: "TCCS 01:2024/MOBV".into(),
            documents: Vec::new(),
        };
        let p: Product =
            http::call(target.addr, "POST", "/api/products", op, body(&p)?, 201).await?;
        ids.push(p.view.id);
    }
    let lineup = ids.iter().map(|id| CreateLineupItem {
        product_id: id.clone(),
        stock: a.stock,
        buyer_limit: a.buyer_limit,
    });
    let show = CreateShow {
        seller_id: seller.id.clone(),
        title: "Chợ đêm trên mây (load test)".into(),
        lineup: lineup.collect(),
    };
    let show: Show = http::call(target.addr, "POST", "/api/shows", op, body(&show)?, 201).await?;
    let live = format!("/api/shows/{}/live", show.id);
    let _: Show = http::call(target.addr, "POST", &live, op, None, 200).await?;
    if json_out {
        println!(
            "{}",
            json!({"seller_id": seller.id, "show_id": show.id, "product_ids": ids})
        );
    } else {
        println!("{} {} {}", seller.id, show.id, ids.join(" "));
    }
    Ok(())
}

async fn close(target: &Target, a: CloseArgs) -> anyhow::Result<()> {
    let op = target.token(Role::Operator, "loadgen");
    let path = format!("/api/shows/{}/close", a.show);
    let show: Value = http::call(target.addr, "POST", &path, Some(&op), None, 200).await?;
    println!("{show}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Bench(a) = cli.cmd {
        return bench::run::bench(a).await;
    }
    let addr = (cli.addr.to_socket_addrs())
        .with_context(|| format!("resolving {}", cli.addr))?
        .next()
        .with_context(|| format!("{} resolves to no address", cli.addr))?;
    let target = Target {
        addr,
        key: TokenKey::new(&cli.secret),
    };
    match cli.cmd {
        Cmd::Setup(a) => setup(&target, a, cli.json).await,
        Cmd::Fanout(a) => fanout(target, a, cli.json).await,
        Cmd::Claims(a) => claims(target, a, cli.json).await,
        Cmd::Close(a) => close(&target, a).await,
        Cmd::Bench(_) => unreachable!("handled before the target is resolved"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(products: &[&str]) -> PublishPlan {
        PublishPlan {
            products: products.iter().map(|p| p.to_string()).collect(),
            rate: 20.0,
            duration: 1.0,
            open_loop: true,
        }
    }

    fn pinned_by(msg: &ClientMessage) -> Option<&str> {
        match msg {
            ClientMessage::Pin { product_id, .. } => Some(product_id),
            _ => None,
        }
    }

    #[test]
    fn every_command_changes_the_pinned_product() {
        // Two products, `b` pinned at the start: `a`, `b`, `a`, ... so each pin is an event.
        let p = plan(&["a", "b"]);
        let b = "b".to_owned();
        let pins: Vec<_> = (0..4)
            .map(|n| pinned_by(&p.command(n, Some(&b)).0).map(str::to_owned))
            .collect();
        assert_eq!(pins, ["a", "b", "a", "b"].map(|s| Some(s.to_owned())));
        // One product, pinned at the start: unpin, pin, unpin, ...
        let p = plan(&["a"]);
        let a = "a".to_owned();
        assert_eq!(pinned_by(&p.command(0, Some(&a)).0), None);
        assert_eq!(pinned_by(&p.command(1, Some(&a)).0), Some("a"));
        assert_eq!(pinned_by(&p.command(0, None).0), Some("a"));
        // Each command has its own request id, which the open-loop reader matches answers by.
        assert_eq!(p.command(7, None).0.req(), Some("lg-7"));
    }
}
