//! Fan-out micro-benchmark: N loopback viewers, M events, the server's CPU per delivery (user and
//! system time from `/proc/self/stat`) for the live engine and for the pattern the server used
//! before it (the "hub": a broadcast ring, one task per viewer writing through tungstenite).
//!
//! ```sh
//! cargo run --release -p nightmarket-live --example fanout -- --viewers 2000 --events 200
//! ```
//!
//! Options: `--viewers N` (2000), `--events M` (200), `--rate R` events per second (50),
//! `--shards S` (one per CPU), `--only engine|hub` (both, engine first).
//!
//! The clients (tokio-tungstenite) run in a child process, so their CPU is not counted; on a
//! small machine they still compete with the server for the same cores, so the figures are
//! noisy: compare the two lines of one run, not runs with each other.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nightmarket_live::inbound::Reader;
use nightmarket_live::{CatchUpCell, Engine, Frame, LiveConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Clock ticks per second in `/proc/<pid>/stat` (Linux's USER_HZ, 100 on every architecture
/// this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Longest client message a viewer's reader accepts (the server's `hard_frame_bytes`).
const MAX_MESSAGE: usize = 65536;

/// Clients connecting at once, so the listener's backlog is never the bottleneck.
const CONNECT_AT_ONCE: usize = 200;

/// The event frames' shape and size, as in docs/benchmarks.md.
fn payload(seq: u64) -> String {
    format!(
        r#"{{"type":"event","seq":{seq},"at":{},"event":{{"kind":"pinned","product_id":"01a23c0c-b1d7-70ae-a8d0-79edf6563916","price":250000}}}}"#,
        now_us()
    )
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Args {
    viewers: usize,
    events: u64,
    rate: u64,
    shards: usize,
}

fn arg(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(addr) = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1))
    {
        let addr: SocketAddr = addr.parse().unwrap();
        let n = arg(&args, "--viewers").unwrap() as usize;
        let m = arg(&args, "--events").unwrap();
        runtime.block_on(clients(addr, n, m));
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let a = Args {
        viewers: arg(&args, "--viewers").unwrap_or(2000) as usize,
        events: arg(&args, "--events").unwrap_or(200),
        rate: arg(&args, "--rate").unwrap_or(50).max(1),
        shards: arg(&args, "--shards").map_or(cores, |s| s as usize),
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "fan-out: {} viewers, {} events at {}/s, {cores} CPUs shared with the clients, load average {} (noisy)",
        a.viewers,
        a.events,
        a.rate,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<34} {:>10} {:>7} {:>7} {:>26} {:>22}",
        "pattern",
        "deliveries",
        "user s",
        "sys s",
        "µs/delivery user/sys/all",
        "latency p50/p99 ms"
    );
    // `--only engine` or `--only hub` runs one pattern: its memory figure is then not
    // flattered by pages the other one left behind.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let engine = (only != Some("hub")).then(|| runtime.block_on(engine_run(&a)));
    if let Some(e) = &engine {
        e.print(&format!("live engine ({} shards)", a.shards));
    }
    let hub = (only != Some("engine")).then(|| runtime.block_on(hub_run(&a)));
    if let Some(h) = &hub {
        h.print("hub: broadcast + task per viewer");
    }
    let (Some(engine), Some(hub)) = (engine, hub) else {
        return;
    };
    println!(
        "engine ÷ hub, CPU per delivery: user {:.2}×, system {:.2}×, total {:.2}×",
        engine.user / hub.user,
        engine.sys / hub.sys,
        (engine.user + engine.sys) / (hub.user + hub.sys)
    );
}

/// Resident memory of this process, KiB.
fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User and system CPU seconds of this process so far.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which may contain spaces, start with the state (field 3).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f[i].parse::<f64>().unwrap() / TICKS_PER_SECOND;
    (ticks(11), ticks(12))
}

struct Outcome {
    deliveries: u64,
    user: f64,
    sys: f64,
    latency: String,
    /// Growth of the server's resident memory while the viewers connected, per viewer.
    rss_per_viewer: f64,
}

impl Outcome {
    fn print(&self, name: &str) {
        let per = |s: f64| s * 1e6 / self.deliveries as f64;
        println!(
            "{name:<34} {:>10} {:>7.2} {:>7.2} {:>26} {:>22} {:>10.2}",
            self.deliveries,
            self.user,
            self.sys,
            format!(
                "{:.2} / {:.2} / {:.2}",
                per(self.user),
                per(self.sys),
                per(self.user + self.sys)
            ),
            self.latency,
            self.rss_per_viewer
        );
    }
}

/// Starts this program again as the clients' process.
fn spawn_clients(addr: SocketAddr, a: &Args) -> (Child, tokio::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--clients".to_owned(),
            addr.to_string(),
            "--viewers".to_owned(),
            a.viewers.to_string(),
            "--events".to_owned(),
            a.events.to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn expect_line(lines: &mut tokio::io::Lines<BufReader<ChildStdout>>, word: &str) -> String {
    let line = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(line.starts_with(word), "the clients said {line:?}");
    line
}

/// Publishes the events at the rate asked and measures the CPU until every client has them.
async fn measure(
    a: &Args,
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    mut publish: impl FnMut(u64),
) -> Outcome {
    expect_line(lines, "ready").await;
    let (user0, sys0) = cpu();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / a.rate));
    for seq in 1..=a.events {
        tick.tick().await;
        publish(seq);
    }
    let done = expect_line(lines, "done").await;
    let (user1, sys1) = cpu();
    Outcome {
        deliveries: a.viewers as u64 * a.events,
        user: user1 - user0,
        sys: sys1 - sys0,
        latency: done.trim_start_matches("done ").to_owned(),
        rss_per_viewer: 0.0,
    }
}

async fn engine_run(a: &Args) -> Outcome {
    let engine = Engine::new(LiveConfig {
        shards: a.shards,
        ..LiveConfig::default()
    })
    .unwrap();
    let ch = engine.channel("bench", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let (_child, mut lines) = spawn_clients(addr, a);
    let rss0 = rss_kib();
    for _ in 0..a.viewers {
        let (tcp, already) = support::accept(&listener, None).await;
        let (read, write) = tcp.into_split();
        let viewer = support::start_at_newest(&ch, write);
        // What a session keeps per viewer: a task reading the client's frames until either
        // side closes.
        tokio::spawn(async move {
            let mut reader = Reader::new(read, &already, MAX_MESSAGE);
            loop {
                tokio::select! {
                    msg = reader.next(&viewer) => if !matches!(msg, Ok(Some(_))) { return },
                    () = viewer.closing() => return,
                }
            }
        });
    }
    let rss = rss_kib() - rss0;
    let mut outcome = measure(a, &mut lines, |seq| {
        ch.publish(seq, Frame::text(&payload(seq)));
    })
    .await;
    let m = engine.metrics();
    println!(
        "  engine: {} frames waited in a queue (socket full), {} catch-ups, largest queue {} bytes",
        m.frames_queued, m.catch_ups, m.queue_high_water_bytes
    );
    outcome.rss_per_viewer = rss / a.viewers as f64;
    outcome
}

async fn hub_run(a: &Args) -> Outcome {
    // The hub's event ring: a broadcast channel of `event_buffer` (512) shared frames.
    let (ring, _) = tokio::sync::broadcast::channel::<Utf8Bytes>(512);
    let (listener, addr) = support::listener().await;
    let (_child, mut lines) = spawn_clients(addr, a);
    let rss0 = rss_kib();
    for _ in 0..a.viewers {
        let (tcp, _) = support::accept(&listener, None).await;
        let mut ws =
            WebSocketStream::from_raw_socket(tcp, Role::Server, Some(session_config())).await;
        let mut events = ring.subscribe();
        // The former session loop, reduced to its fan-out path: one task per viewer selecting
        // over the socket and the show's ring.
        tokio::spawn(async move {
            if ws.send(Message::text("hello")).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(f) => {
                            if ws.send(Message::Text(f)).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    msg = ws.next() => if !matches!(msg, Some(Ok(_))) { return },
                }
            }
        });
    }
    let rss = rss_kib() - rss0;
    let mut outcome = measure(a, &mut lines, |seq| {
        let _ = ring.send(Utf8Bytes::from(payload(seq)));
    })
    .await;
    outcome.rss_per_viewer = rss / a.viewers as f64;
    outcome
}

/// The WebSocket settings the server's sessions used with the hub: a 512-byte
/// read buffer, no write buffering.
fn session_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE * 4)
}

/// The clients' process: connects, says `ready` once every client has its hello, then `done`
/// with the latency percentiles once every client has every event.
async fn clients(addr: SocketAddr, n: usize, m: u64) {
    let mut connected = Vec::with_capacity(n);
    while connected.len() < n {
        let batch = (n - connected.len()).min(CONNECT_AT_ONCE);
        let joins: Vec<_> = (0..batch).map(|_| tokio::spawn(connect(addr))).collect();
        for j in joins {
            connected.push(j.await.unwrap());
        }
    }
    println!("ready");
    let readers: Vec<_> = connected
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(m as usize);
                let mut seq = 0;
                while seq < m {
                    let Some(Ok(Message::Text(t))) = ws.next().await else {
                        panic!("a client lost its connection at {seq}");
                    };
                    let got = field(&t, "\"seq\":");
                    assert_eq!(got, seq + 1, "out of order");
                    seq = got;
                    latencies.push(now_us().saturating_sub(field(&t, "\"at\":")));
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n * m as usize);
    for r in readers {
        all.extend(r.await.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!("done {:.2} / {:.2}", pct(0.5), pct(0.99));
}

async fn connect(addr: SocketAddr) -> WebSocketStream<tokio::net::TcpStream> {
    let mut ws = support::connect(addr, None).await;
    assert_eq!(support::next_text(&mut ws).await, "hello");
    ws
}

/// The number after `name` in a JSON text.
fn field(text: &str, name: &str) -> u64 {
    let start = text.find(name).unwrap() + name.len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}
