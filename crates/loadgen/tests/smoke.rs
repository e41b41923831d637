//! Smoke run of the load generator, as CI does it: tiny numbers against a real server (the
//! `nightmarket` binary, started as a process the way the benchmark driver starts it),
//! checking the JSON summaries for correctness only: every viewer gets every event in order,
//! every claim is answered and the stock adds up. Throughput and latency are for
//! `scripts/bench` to measure, never asserted here.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nightmarket_loadgen::bench::procs::{Proc, Procs, free_port};
use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_nightmarket-loadgen");
/// Longest one generator run may take here; the runs below need a few seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const VIEWERS: u64 = 5;
/// Seller pins per second, for `PUBLISH_SECONDS`: about ten events.
const RATE: &str = "10";
const PUBLISH_SECONDS: &str = "1";
const BUYERS: u64 = 4;
const CLAIMS_PER_BUYER: u64 = 5;

/// The `nightmarket` binary: `NIGHTMARKET_BIN` if set, else the one beside this generator,
/// built (or found fresh) by cargo once per test process. The generator does not link the
/// server; it drives the real binary, as the benchmarks do.
fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("NIGHTMARKET_BIN") {
            return PathBuf::from(bin);
        }
        let dir = Path::new(LOADGEN).parent().unwrap();
        let mut build = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "nightmarket",
                "--bin",
                "nightmarket",
            ])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"));
        if dir.file_name().is_some_and(|d| d == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build -p nightmarket");
        assert!(status.success(), "cargo build -p nightmarket failed");
        dir.join("nightmarket")
    })
}

/// A server on a free port of 127.0.0.1 over a fresh data directory, with `env` on top of
/// the benchmark settings (rate limits raised: the buyers claim back to back).
async fn start(env: &[(&str, String)]) -> (Proc, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs::new(
        dir.path().to_path_buf(),
        server_bin().to_path_buf(),
        PathBuf::from(LOADGEN),
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let data = dir.path().join("data");
    let node = procs
        .nightmarket("smoke", "nightmarket", addr, &data, env, None)
        .await
        .unwrap();
    (node, addr, dir)
}

/// Runs the generator with `args` and returns its JSON summary (the last line of stdout).
async fn loadgen(addr: SocketAddr, args: &[&str]) -> Value {
    let run = tokio::process::Command::new(LOADGEN)
        .args(["--addr", &addr.to_string(), "--json"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("nightmarket-loadgen {args:?} took over {RUN_TIMEOUT:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nightmarket-loadgen {args:?} failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}) in {stdout:?}; stderr:\n{stderr}"))
}

/// `fanout` of `shows` (comma-separated) to [`VIEWERS`] viewers a show, the seller publishing
/// at [`RATE`] for [`PUBLISH_SECONDS`], with `extra` arguments.
async fn fanout(addr: SocketAddr, shows: &str, extra: &[&str]) -> Value {
    let viewers = VIEWERS.to_string();
    let mut args = vec![
        "fanout",
        "--show",
        shows,
        "--viewers",
        &viewers,
        "--rate",
        RATE,
        "--duration",
        PUBLISH_SECONDS,
        "--grace",
        "1",
    ];
    args.extend_from_slice(extra);
    loadgen(addr, &args).await
}

/// A fanout summary in which something was published without error and every event reached
/// every viewer of its show, none lost or left behind at the end.
fn every_event_reached_every_viewer(f: &Value) {
    let events = f["publish"]["events"].as_u64().unwrap();
    assert!(events > 0, "nothing published: {f}");
    assert_eq!(f["publish"]["errors"], serde_json::json!({}), "{f}");
    assert_eq!(f["deliveries"], events * VIEWERS, "{f}");
    assert_eq!(f["lost"], 0, "{f}");
    assert_eq!(f["behind_at_end"], 0, "{f}");
}

/// `setup`, then `fanout`, `claims` and `close` against the server at `addr`.
async fn smoke(addr: SocketAddr, pid: u32) {
    let pid = pid.to_string();
    let show = loadgen(addr, &["setup", "--products", "2", "--stock", "1000"]).await;
    let show_id = show["show_id"].as_str().unwrap();
    let product = show["product_ids"][0].as_str().unwrap();

    let f = fanout(addr, show_id, &[]).await;
    assert_eq!(f["connected"], VIEWERS, "{f}");
    every_event_reached_every_viewer(&f);
    assert_eq!(f["out_of_order"], 0, "{f}");
    assert_eq!(f["dropped"], serde_json::json!({}), "{f}");

    // Two shows at once, each seller sending in open loop (not waiting for answers): every
    // viewer still gets every event of its own show, and ends with its show's newest state.
    let second_show = loadgen(addr, &["setup", "--products", "2", "--stock", "1000"]).await;
    let both = format!("{show_id},{}", second_show["show_id"].as_str().unwrap());
    let m = fanout(addr, &both, &["--open-loop", "--server-pid", &pid]).await;
    assert_eq!(m["shows"], 2, "{m}");
    assert_eq!(m["connected"], VIEWERS * 2, "{m}");
    every_event_reached_every_viewer(&m);
    assert_eq!(m["latest"]["reached"], VIEWERS * 2, "{m}");
    assert!(
        m["server"]["window_user_s"].is_number(),
        "no CPU split: {m}"
    );

    let (buyers, per_buyer) = (BUYERS.to_string(), CLAIMS_PER_BUYER.to_string());
    let c = loadgen(
        addr,
        &[
            "claims",
            "--show",
            show_id,
            "--product",
            product,
            "--pin",
            "--buyers",
            &buyers,
            "--claims-per-buyer",
            &per_buyer,
        ],
    )
    .await;
    let claims = BUYERS * CLAIMS_PER_BUYER;
    assert_eq!(c["connected"], BUYERS, "{c}");
    assert_eq!(c["errors"], serde_json::json!({}), "{c}");
    assert_eq!(c["answered"], claims, "{c}");
    assert_eq!(c["accepted"], claims, "{c}");
    assert_eq!(c["accounting_ok"], true, "{c}");
    assert_eq!(c["oversold"], 0, "{c}");
    assert_eq!(c["left_after"], 1000 - claims, "{c}");

    // A night as the settlement benchmark plays it: each connection plays buyers in turn and
    // cancels some accepted claims, then the operator closes the show.
    let second = show["product_ids"][1].as_str().unwrap();
    let n = loadgen(
        addr,
        &[
            "claims",
            "--show",
            show_id,
            "--product",
            second,
            "--pin",
            "--buyers",
            &buyers,
            "--rounds",
            "2",
            "--claims-per-buyer",
            &per_buyer,
            "--cancel-every",
            "2",
        ],
    )
    .await;
    assert_eq!(n["distinct_buyers"], BUYERS * 2, "{n}");
    assert_eq!(n["accepted"], claims * 2, "{n}");
    let cancelled = n["cancelled_qty"].as_u64().unwrap();
    assert!(cancelled > 0, "nothing cancelled: {n}");
    assert_eq!(n["accounting_ok"], true, "{n}");
    assert_eq!(n["left_after"], 1000 - (claims * 2 - cancelled), "{n}");

    let closed = loadgen(addr, &["close", "--show", show_id]).await;
    assert_eq!(closed["status"], "closed", "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_claims_on_the_embedded_server() {
    let (server, addr, _dir) = start(&[]).await;
    smoke(addr, server.pid).await;
    server.stop().await;
}

/// The same on the Redis inventory (distributed mode), on the Redis `scripts/test` provides,
/// under a key prefix of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_claims_on_the_redis_inventory() {
    let url = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let prefix = format!("lg{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("NIGHTMARKET_REDIS_URL", url),
        ("NIGHTMARKET_REDIS_PREFIX", prefix),
    ];
    let (server, addr, _dir) = start(&env).await;
    smoke(addr, server.pid).await;
    server.stop().await;
}
