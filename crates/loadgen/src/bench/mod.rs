//! `nightmarket-loadgen bench`: the benchmark driver. It starts Nightmarket and its peers
//! (nginx + nchan, redis-server with redis-benchmark, PostgreSQL, perf) as processes pinned to
//! CPUs, runs this generator against each with fixed parameters, and writes
//! docs/benchmarks.md from the results, every goal marked met or not. `scripts/bench` only
//! installs the peers and builds the binaries, then runs this.
//!
//! - [`procs`]: the processes and the command lines the page lists;
//! - [`summary`]: the results as the generator, redis-benchmark, `settle` and perf print them;
//! - [`goals`]: the targets and how a figure is judged against one;
//! - [`report`]: the page, whole or one section of it replaced;
//! - [`flame`]: flame graphs of the profiled runs;
//! - [`run`]: what each mode runs, in order.

pub mod flame;
pub mod goals;
pub mod procs;
pub mod report;
pub mod run;
pub mod summary;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Which part of the benchmark to run; all but `all` replace only their own part of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Everything, and the whole page rewritten.
    All,
    /// Claims on the Redis inventory beside the raw claim script.
    ClaimsRedis,
    /// Fan-out across three hub nodes on one Redis.
    Nodes,
    /// Settlement of a night of claims into PostgreSQL.
    Settlement,
    /// perf profiles and flame graphs of fan-out and of Redis claims.
    Profile,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run.
    #[arg(value_enum, default_value_t = Mode::All)]
    pub mode: Mode,
    /// Small viewer counts and short runs, to exercise the whole driver in a minute or two;
    /// the figures mean nothing, so the page goes to target/ unless --out says otherwise, and
    /// never to docs/benchmarks.md.
    #[arg(long)]
    pub quick: bool,
    /// The page to write (default: docs/benchmarks.md, or target/bench-quick/benchmarks.md
    /// with --quick). Flame graphs go to `flamegraphs/` beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `nightmarket` binary (default: the one beside this generator).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The repository (for the claim scripts and the default page); default: the current
    /// directory.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Printed in the Machine table and beside the Redis claim and cross-node figures, e.g. what
    /// else ran meanwhile or how the machine's speed compared.
    #[arg(long, env = "BENCH_NOTE", default_value = "")]
    pub note: String,
    /// Why nginx + nchan cannot run here, when scripts/bench could not install it; the
    /// fan-out then runs on Nightmarket alone and the page says why.
    #[arg(long, env = "NCHAN_NOTE", default_value = "")]
    pub nchan_note: String,
    /// The build profile the binaries come from, as the page states it.
    #[arg(long, default_value = "release")]
    pub profile: String,
}

/// The fixed parameters of a run. Changing one changes the method: the page says which.
#[derive(Debug, Clone)]
pub struct Params {
    pub quick: bool,
    /// Viewers of the two fan-out sizes compared with nchan.
    pub viewers: u64,
    pub small_viewers: u64,
    /// Events per second the seller asks for, how long it publishes, and how long viewers
    /// listen after.
    pub rate: f64,
    pub duration: f64,
    pub grace: f64,
    /// The rate of the latency comparison for a size where either side saturated at `rate`.
    pub unsaturated_rate: f64,
    /// Source addresses of the viewer sockets (each has its own ephemeral ports).
    pub sources: String,
    pub idle_sources: String,
    pub idle_seconds: f64,
    /// The cost of scale: these viewer counts, each at the rate that makes `scale_deliveries`
    /// deliveries per second.
    pub scale_viewers: Vec<u64>,
    pub scale_deliveries: f64,
    /// A Friday night: many small shows against one big one, same events/s per show.
    pub friday_shows: u64,
    pub friday_viewers: u64,
    pub friday_one_viewers: u64,
    pub friday_rate: f64,
    pub friday_duration: f64,
    /// The join storm: viewers connecting at once to a show with a pinned product.
    pub join_viewers: u64,
    /// Overload: viewers, and the seller's open-loop rate; the bound on reaching the newest
    /// state after the last publish.
    pub overload_viewers: u64,
    pub overload_rate: f64,
    pub latest_bound_ms: f64,
    /// Claims: buyers each sending claims one after another, on a show with this stock.
    pub buyers: u64,
    pub claims_per_buyer: u64,
    pub claim_stock: u64,
    /// The server's CPU and the generator's.
    pub server_cpu: String,
    pub loadgen_cpu: String,
    /// Across nodes: how many, and the (viewers per node, events/s) configurations.
    pub nodes: usize,
    pub node_configs: Vec<(u64, f64)>,
    pub node_sources: Vec<String>,
    /// How much longer than the publishing the other nodes' viewers listen.
    pub node_listen_margin: f64,
    /// Settlement: connections × buyers each plays in turn × claims per buyer.
    pub settle_connections: u64,
    pub settle_rounds: u64,
    pub settle_claims_per_buyer: u64,
    pub settle_cancel_every: u64,
    pub settle_goal_s: f64,
    /// perf's sampling rate, and symbols listed per profiled process.
    pub profile_hz: u32,
    pub profile_top: usize,
}

impl Params {
    /// The method of docs/benchmarks.md.
    pub fn full() -> Self {
        Self {
            quick: false,
            viewers: 10_000,
            small_viewers: 2_000,
            rate: 20.0,
            duration: 10.0,
            grace: 2.0,
            unsaturated_rate: 5.0,
            sources: "127.0.0.2,127.0.0.3".into(),
            idle_sources: "127.0.0.4,127.0.0.5".into(),
            idle_seconds: 3.0,
            scale_viewers: vec![1_000, 2_000, 5_000, 10_000, 18_000],
            scale_deliveries: 36_000.0,
            friday_shows: 50,
            friday_viewers: 40,
            friday_one_viewers: 2_000,
            friday_rate: 2.0,
            friday_duration: 20.0,
            join_viewers: 10_000,
            overload_viewers: 10_000,
            overload_rate: 20.0,
            latest_bound_ms: 1_000.0,
            buyers: 200,
            claims_per_buyer: 500,
            claim_stock: 10_000_000,
            server_cpu: "0".into(),
            loadgen_cpu: "1".into(),
            nodes: 3,
            node_configs: vec![(1_000, 20.0), (6_000, 20.0)],
            node_sources: vec![
                "127.0.0.2,127.0.0.3".into(),
                "127.0.0.4,127.0.0.5".into(),
                "127.0.0.6,127.0.0.7".into(),
            ],
            node_listen_margin: 30.0,
            settle_connections: 200,
            settle_rounds: 50,
            settle_claims_per_buyer: 100,
            settle_cancel_every: 20,
            settle_goal_s: 15.0,
            profile_hz: 499,
            profile_top: 12,
        }
    }

    /// Everything at a small scale, to exercise the driver end to end in a minute or two.
    pub fn quick() -> Self {
        Self {
            quick: true,
            viewers: 200,
            small_viewers: 100,
            duration: 2.0,
            grace: 1.0,
            idle_seconds: 1.0,
            scale_viewers: vec![50, 100, 200],
            scale_deliveries: 2_000.0,
            friday_shows: 5,
            friday_viewers: 10,
            friday_one_viewers: 50,
            friday_duration: 2.0,
            join_viewers: 200,
            overload_viewers: 200,
            buyers: 10,
            claims_per_buyer: 20,
            node_configs: vec![(50, 20.0), (100, 20.0)],
            node_listen_margin: 5.0,
            settle_connections: 10,
            settle_rounds: 2,
            settle_claims_per_buyer: 10,
            settle_cancel_every: 4,
            ..Self::full()
        }
    }

    /// The events/s of a cost-of-scale run with `viewers` viewers.
    pub fn scale_rate(&self, viewers: u64) -> f64 {
        self.scale_deliveries / viewers.max(1) as f64
    }

    /// Claims the settlement night sends.
    pub fn settle_claims(&self) -> u64 {
        self.settle_connections * self.settle_rounds * self.settle_claims_per_buyer
    }
}

/// The server CPU sets of the scaling runs on a machine with `cores` cores (one is the
/// generator's): 1, 2 and all, or why it cannot run them.
pub fn scaling_cpus(cores: usize) -> Result<Vec<(usize, String)>, String> {
    if cores < 3 {
        return Err(format!(
            "this machine has {cores} cores: one for the server and one for the load generator"
        ));
    }
    let mut counts = vec![1, 2, cores - 1];
    counts.dedup();
    Ok(counts
        .into_iter()
        .map(|n| {
            (
                n,
                if n == 1 {
                    "0".into()
                } else {
                    format!("0-{}", n - 1)
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_needs_a_third_core() {
        assert!(scaling_cpus(2).unwrap_err().contains("2 cores"));
        assert_eq!(
            scaling_cpus(3).unwrap(),
            vec![(1, "0".to_owned()), (2, "0-1".to_owned())]
        );
        assert_eq!(
            scaling_cpus(8).unwrap(),
            vec![
                (1, "0".to_owned()),
                (2, "0-1".to_owned()),
                (7, "0-6".to_owned())
            ]
        );
    }

    #[test]
    fn the_cost_of_scale_keeps_deliveries_per_second() {
        let p = Params::full();
        assert_eq!(p.scale_rate(1_000), 36.0);
        assert_eq!(p.scale_rate(18_000), 2.0);
        assert_eq!(p.settle_claims(), 1_000_000);
        assert!(Params::quick().settle_claims() < 1_000);
    }
}
