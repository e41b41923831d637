//! What a claim costs: drives claims on one live show through an inventory, as many at a time as
//! a busy node has in flight, and prints claims per second and the CPU each claim took in this
//! process and (Redis mode) in Redis.
//!
//! ```text
//! cargo run --release -p nightmarket-inventory --example claim_cost -- redis redis://127.0.0.1:6379
//! cargo run --release -p nightmarket-inventory --example claim_cost -- memory
//! ```
//!
//! Optional third and fourth arguments: claims in all (default 200,000) and claims in flight
//! (default 256). CPU time comes from `/proc/self/stat` (clock ticks) and Redis's `INFO cpu`;
//! run it on an otherwise idle machine, as the numbers are per claim, not per second of wall
//! time. It is a measuring tool, not a test: nothing here asserts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nightmarket_domain::ClaimDecision;
use nightmarket_inventory::conformance::fixtures;
use nightmarket_inventory::{Claim, Inventory, MemoryInventory, RedisInventory};
use nightmarket_store::SqliteJournal;

/// This process's user and system CPU time so far.
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // Linux reports clock ticks of 1/100 s (USER_HZ) here.
    Duration::from_millis(ticks * 10)
}

/// Redis's user and system CPU time so far, and how many script calls it has run.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> (Duration, u64) {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let calls = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0);
    (
        Duration::from_secs_f64(field("used_cpu_user") + field("used_cpu_sys")),
        calls,
    )
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("memory", String::as_str);
    let total: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let in_flight: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (inv, mut redis): (Arc<dyn Inventory>, _) = match backend {
        "redis" => {
            let url = args
                .get(2)
                .cloned()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            let prefix = format!("nmcost:{}:", uuid::Uuid::new_v4());
            let inv = RedisInventory::connect(&url, &prefix, 100)
                .await
                .map_err(|e| e.to_string())?;
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            (Arc::new(inv), Some(conn))
        }
        _ => {
            let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096)
                .map_err(|e| e.to_string())?;
            (Arc::new(MemoryInventory::new(journal, 100)), None)
        }
    };
    let show = fixtures::live_show(inv.as_ref(), "cost", u32::MAX / 2, u32::MAX / 2, 0).await?;

    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let cpu0 = own_cpu();
    let redis0 = match &mut redis {
        Some(c) => Some(redis_cpu(c).await),
        None => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (inv, show, next, accepted, latencies) = (
            inv.clone(),
            show.clone(),
            next.clone(),
            accepted.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let req = fixtures::claim(&format!("k{n}"), &format!("b{}", n % 10_000), 1)?;
                let asked = Instant::now();
                let d = inv
                    .claim_within(
                        &show,
                        Claim {
                            req,
                            now: 0,
                            deadline: Some(wall_ms() + 5_000),
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                mine.push(asked.elapsed());
                if matches!(d, ClaimDecision::Accepted(_)) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let wall = started.elapsed();
    let cpu = own_cpu().saturating_sub(cpu0);
    let accepted = accepted.load(Ordering::Relaxed);
    let mut lat = latencies.lock().map_err(|e| e.to_string())?.clone();
    lat.sort_unstable();
    let p99 = lat
        .get(lat.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "{backend}: {total} claims ({accepted} accepted), {in_flight} in flight, {:.0} claims/s, p99 {:.2} ms",
        total as f64 / wall.as_secs_f64(),
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  this process: {:.2} µs CPU per claim",
        cpu.as_secs_f64() * 1e6 / total as f64
    );
    if let (Some(conn), Some((rcpu0, calls0))) = (&mut redis, redis0) {
        let (rcpu, calls) = redis_cpu(conn).await;
        let calls = calls.saturating_sub(calls0).max(1);
        println!(
            "  redis: {:.2} µs CPU per claim, {calls} script calls ({:.1} claims per call)",
            rcpu.saturating_sub(rcpu0).as_secs_f64() * 1e6 / total as f64,
            total as f64 / calls as f64
        );
    }
    Ok(())
}
