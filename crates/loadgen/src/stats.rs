//! Measurements: latency samples with percentiles, the wall clock in microseconds, and CPU
//! time and resident memory of the server process read from `/proc`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

/// Latency samples in microseconds. Kept whole (4 bytes each) so percentiles are exact.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn push_us(&mut self, us: i64) {
        self.0.push(u32::try_from(us.max(0)).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50, p90, p99 and max in milliseconds (all 0 without samples).
    pub fn summary(&mut self) -> [f64; 4] {
        self.0.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            // Nearest-rank percentile.
            let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
            f64::from(self.0[rank - 1]) / 1000.0
        };
        [at(0.50), at(0.90), at(0.99), at(1.0)]
    }

    pub fn human(&mut self) -> String {
        let [p50, p90, p99, max] = self.summary();
        format!("p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms")
    }

    pub fn json(&mut self) -> Value {
        let [p50, p90, p99, max] = self.summary();
        json!({"count": self.len(), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max})
    }
}

/// Microseconds since the Unix epoch, on the clock the server stamps events with.
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, for token issue times.
pub fn now_unix_secs() -> i64 {
    now_unix_us() / 1_000_000
}

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_s: f64,
    /// CPU seconds in the process's own code (and its libraries).
    pub user_s: f64,
    /// CPU seconds in the kernel on the process's behalf (system calls, its sockets).
    pub sys_s: f64,
    pub rss_kib: u64,
}

/// Linux reports utime and stime in USER_HZ ticks, which is 100 on every mainstream
/// architecture; reading sysconf(_SC_CLK_TCK) would need libc for one constant.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User and system time of a process, in ticks, from the text of `/proc/PID/stat`.
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces; fields after the
    // last ')' start at field 3, so utime (14) and stime (15) are at indices 11 and 12.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let sys = fields.next()?.parse().ok()?;
    Some((user, sys))
}

/// User and system time of a process, in ticks, read from `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&stat).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmRSS).
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let (user, sys) = cpu_ticks(pid)?;
    let (user_s, sys_s) = (
        user as f64 / TICKS_PER_SECOND,
        sys as f64 / TICKS_PER_SECOND,
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu_s: user_s + sys_s,
        user_s,
        sys_s,
        rss_kib,
    })
}

/// CPU between two samples of one process: total, user and system seconds.
pub fn cpu_between(a: &ProcSample, b: &ProcSample) -> (f64, f64, f64) {
    (b.cpu_s - a.cpu_s, b.user_s - a.user_s, b.sys_s - a.sys_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.push_us(us * 1000);
        }
        assert_eq!(l.summary(), [50.0, 90.0, 99.0, 100.0]);
        assert_eq!(Latencies::default().summary(), [0.0; 4]);
    }

    #[test]
    fn user_and_system_ticks_after_a_name_with_spaces() {
        let stat = "4242 (tokio worker) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 \
                    3 0 100 0 0";
        assert_eq!(parse_stat(stat), Some((1234, 567)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn reads_own_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
    }
}
