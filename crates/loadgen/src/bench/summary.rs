//! The results a benchmark reads: the generator's JSON summaries, redis-benchmark's CSV line,
//! `nightmarket settle`'s JSON and perf's reports, parsed into the few fields the page shows.
//! Every field is optional or defaulted, so a summary from an older generator still parses and
//! shows "–" where a figure is missing.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// A run's result, or why it has none (shown in its row as "failed: ...").
pub type Run<T> = Result<T, String>;

/// Parses a summary, keeping the reason when it does not parse.
pub fn parse<T: serde::de::DeserializeOwned>(v: anyhow::Result<Value>) -> Run<T> {
    let v = v.map_err(|e| format!("{e:#}"))?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(e.to_owned());
    }
    serde_json::from_value(v).map_err(|e| format!("unexpected summary: {e}"))
}

/// p50 / p90 / p99 / max of a latency distribution, in ms.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Publish {
    pub events: u64,
    /// Per show.
    pub events_per_s: Option<f64>,
    pub commands: u64,
    pub errors: BTreeMap<String, u64>,
    pub open_loop: bool,
}

/// The server's CPU and memory around a fan-out run, from `/proc`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FanoutServer {
    pub connect_cpu_s: Option<f64>,
    pub connect_user_s: Option<f64>,
    pub connect_sys_s: Option<f64>,
    pub window_cpu_s: Option<f64>,
    pub window_user_s: Option<f64>,
    pub window_sys_s: Option<f64>,
    pub window_s: Option<f64>,
    pub cpu_s_per_million_deliveries: Option<f64>,
    pub user_s_per_million_deliveries: Option<f64>,
    pub sys_s_per_million_deliveries: Option<f64>,
    pub rss_kib_before: Option<f64>,
    pub rss_kib_connected: Option<f64>,
    pub rss_kib_end: Option<f64>,
    pub rss_bytes_per_connection: Option<f64>,
}

/// How soon viewers had the newest state of their show after the last publish.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Latest {
    pub reached: u64,
    pub open: u64,
    pub after_last_publish: Latency,
}

/// `nightmarket-loadgen fanout --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fanout {
    /// Per show.
    pub viewers: u64,
    pub shows: Option<u64>,
    pub connected: u64,
    pub connect_s: Option<f64>,
    pub publish: Option<Publish>,
    pub deliveries: u64,
    pub deliveries_per_s: Option<f64>,
    pub latency: Latency,
    pub lost: u64,
    pub out_of_order: u64,
    pub caught_up: u64,
    pub skipped: u64,
    pub behind_at_end: Option<u64>,
    pub dropped: BTreeMap<String, u64>,
    pub latest: Option<Latest>,
    pub server: Option<FanoutServer>,
    pub generator_window_cpu_s: Option<f64>,
}

impl Fanout {
    pub fn server(&self) -> FanoutServer {
        self.server.clone().unwrap_or_default()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    pub fn events_per_s(&self) -> Option<f64> {
        self.publish.as_ref().and_then(|p| p.events_per_s)
    }

    /// CPU µs per delivery (total, user, system).
    pub fn cpu_us_per_delivery(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let s = self.server();
        (
            s.cpu_s_per_million_deliveries,
            s.user_s_per_million_deliveries,
            s.sys_s_per_million_deliveries,
        )
    }

    /// CPU µs per join (total, user), over the connection phase.
    pub fn cpu_us_per_join(&self) -> (Option<f64>, Option<f64>) {
        let s = self.server();
        let per = |cpu: Option<f64>| {
            cpu.filter(|_| self.connected > 0)
                .map(|c| c * 1e6 / self.connected as f64)
        };
        (per(s.connect_cpu_s), per(s.connect_user_s))
    }

    /// Share of a core the server used while publishing (1.0: one core busy all the time).
    pub fn server_load(&self) -> Option<f64> {
        let s = self.server();
        Some(s.window_cpu_s? / s.window_s.filter(|w| *w > 0.0)?)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClaimsServer {
    pub cpu_s: Option<f64>,
    pub user_s: Option<f64>,
    pub sys_s: Option<f64>,
}

/// `nightmarket-loadgen claims --json`, plus the Redis CPU the driver measured around it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Claims {
    pub answered: u64,
    pub answered_per_s: f64,
    pub accepted: u64,
    pub accepted_per_s: f64,
    pub ack: Latency,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub oversold: u64,
    pub accounting_ok: bool,
    pub distinct_buyers: u64,
    pub accepted_qty: u64,
    pub cancelled_qty: u64,
    pub server: Option<ClaimsServer>,
    pub redis_cpu_s: Option<f64>,
}

impl Claims {
    pub fn server_cpu_s(&self) -> Option<f64> {
        self.server.as_ref().and_then(|s| s.cpu_s)
    }
}

/// The raw claim script's figures: redis-benchmark's CSV and the show's counters around it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub sent: u64,
    pub requests_per_s: f64,
    pub accepted: u64,
    pub accepted_per_s: f64,
    /// p50, p95, p99, max in ms (redis-benchmark has no p90).
    pub ack: [f64; 4],
    pub accounting_ok: bool,
    pub oversold: u64,
    pub redis_cpu_s: f64,
}

/// The show's counters in Redis that the peer's figures are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub accepted: i64,
    pub left: i64,
}

/// Reads redis-benchmark's `--csv` output (a header line, then one line per test).
pub fn parse_benchmark_csv(csv: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let rows: Vec<Vec<String>> = csv
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .map(|c| c.trim().trim_matches('"').to_owned())
                .collect()
        })
        .collect();
    let [header, .., last] = rows.as_slice() else {
        bail!("redis-benchmark printed no result line: {csv:?}");
    };
    Ok(header.iter().cloned().zip(last.iter().cloned()).collect())
}

/// The peer's figures from redis-benchmark's CSV and the counters before and after.
pub fn peer_figures(
    csv: &str,
    sent: u64,
    before: Counters,
    after: Counters,
    stock: i64,
    redis_cpu_s: f64,
) -> anyhow::Result<Peer> {
    let row = parse_benchmark_csv(csv)?;
    let field = |k: &str| -> anyhow::Result<f64> {
        row.get(k)
            .with_context(|| format!("no {k} in redis-benchmark's CSV"))?
            .parse()
            .with_context(|| format!("{k} is not a number"))
    };
    let rps = field("rps")?;
    let elapsed = if rps > 0.0 { sent as f64 / rps } else { 0.0 };
    let accepted = (after.accepted - before.accepted).max(0) as u64;
    let taken = before.left - after.left;
    Ok(Peer {
        sent,
        requests_per_s: rps,
        accepted,
        accepted_per_s: if elapsed > 0.0 {
            accepted as f64 / elapsed
        } else {
            0.0
        },
        ack: [
            field("p50_latency_ms")?,
            field("p95_latency_ms")?,
            field("p99_latency_ms")?,
            field("max_latency_ms")?,
        ],
        // Each claim is one unit: accepted claims are exactly the units taken, and the show's
        // accepted counter equals everything taken from its stock.
        accounting_ok: taken == accepted as i64
            && after.left >= 0
            && after.accepted == stock - after.left,
        oversold: (-after.left).max(0) as u64,
        redis_cpu_s,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Timing {
    pub record: Option<f64>,
    pub settle: Option<f64>,
    pub total: Option<f64>,
}

/// `nightmarket settle SHOW`'s JSON, plus the wall time the driver measured around it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settle {
    pub outcome: String,
    pub orders: u64,
    pub units: u64,
    pub revenue: i64,
    pub recorded_now: u64,
    pub timing_ms: Timing,
    pub wall_ms: Option<f64>,
}

/// PostgreSQL's own COPY of the same rows.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    pub copy_ms: f64,
    pub rows: u64,
    pub csv_bytes: u64,
    pub server_version: String,
}

/// One line of a `perf report --stdio` table: the first percentage and the rest.
pub fn perf_rows(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let t = l.trim_start();
            let (pct, rest) = t.split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            let rest = rest.trim();
            // `--children` reports print two percentages: keep what follows the second.
            let rest = match rest.split_once('%') {
                Some((second, tail)) if second.trim().parse::<f64>().is_ok() => tail.trim(),
                _ => rest,
            };
            (!rest.is_empty()).then(|| (pct, rest.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fanout_summary_with_the_cpu_split() {
        let v = json!({
            "mode": "fanout", "viewers": 2000, "connected": 2000, "deliveries": 402000,
            "publish": {"events": 201, "events_per_s": 20.1, "errors": {}},
            "latency": {"count": 402000, "p50_ms": 10.38, "p90_ms": 16.42, "p99_ms": 25.68, "max_ms": 34.96},
            "lost": 0, "out_of_order": 0, "dropped": {"close 4000": 3},
            "server": {"connect_cpu_s": 0.5, "connect_user_s": 0.2, "window_cpu_s": 3.35,
                       "window_s": 12.0, "cpu_s_per_million_deliveries": 8.33,
                       "user_s_per_million_deliveries": 3.0, "sys_s_per_million_deliveries": 5.33},
        });
        let f: Fanout = parse(Ok(v)).unwrap();
        assert_eq!(f.cpu_us_per_delivery(), (Some(8.33), Some(3.0), Some(5.33)));
        assert_eq!(f.cpu_us_per_join(), (Some(250.0), Some(100.0)));
        assert_eq!(f.dropped_total(), 3);
        assert_eq!(f.events_per_s(), Some(20.1));
        assert!((f.server_load().unwrap() - 3.35 / 12.0).abs() < 1e-9);
    }

    #[test]
    fn a_summary_from_an_older_generator_still_parses() {
        let f: Fanout =
            parse(Ok(json!({"viewers": 10, "connected": 10, "deliveries": 0}))).unwrap();
        assert_eq!(f.cpu_us_per_delivery(), (None, None, None));
        assert_eq!(f.latest.map(|l| l.reached), None);
    }

    #[test]
    fn a_failed_run_keeps_its_reason() {
        let r: Run<Fanout> = parse(Ok(json!({"error": "nightmarket-loadgen exited with 1"})));
        assert_eq!(r.unwrap_err(), "nightmarket-loadgen exited with 1");
        let r: Run<Claims> = parse(Err(anyhow::anyhow!("no JSON summary")));
        assert_eq!(r.unwrap_err(), "no JSON summary");
    }

    #[test]
    fn redis_benchmark_csv_and_counters() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"EVALSHA\",\"30826.14\",\"6.4\",\"0.9\",\"6.58\",\"8.79\",\"9.57\",\"12.42\"\n";
        let before = Counters {
            accepted: 100_000,
            left: 9_900_000,
        };
        let after = Counters {
            accepted: 200_000,
            left: 9_800_000,
        };
        let p = peer_figures(csv, 100_000, before, after, 10_000_000, 3.24).unwrap();
        assert_eq!(p.accepted, 100_000);
        assert!((p.accepted_per_s - 30826.14).abs() < 0.01);
        assert_eq!(p.ack, [6.58, 8.79, 9.57, 12.42]);
        assert!(p.accounting_ok);
        assert_eq!(p.oversold, 0);
        // Units taken that no accepted claim accounts for.
        let leak = Counters {
            accepted: 200_000,
            left: 9_799_999,
        };
        assert!(
            !peer_figures(csv, 100_000, before, leak, 10_000_000, 3.24)
                .unwrap()
                .accounting_ok
        );
        assert!(parse_benchmark_csv("").is_err());
    }

    #[test]
    fn perf_report_lines() {
        let report = "# Overhead  Shared Object\n\
                      #\n\
                      \x20   60.90%  [kernel.kallsyms]\n\
                      \x20   35.70%  nightmarket\n\
                      \x20    58.20%     0.00%  [k] do_syscall_64\n\
                      \n";
        assert_eq!(
            perf_rows(report),
            vec![
                (60.9, "[kernel.kallsyms]".to_owned()),
                (35.7, "nightmarket".to_owned()),
                (58.2, "[k] do_syscall_64".to_owned()),
            ]
        );
    }
}
