//! docs/benchmarks.md: the whole page from one run, or one part of it replaced by a partial
//! run (a block between `<!-- NAME:begin -->` and `<!-- NAME:end -->`, rows found by their
//! first cell). Rendering is pure: results in, Markdown out.

use std::collections::BTreeMap;

use super::Params;
use super::goals::{self, Better, Row, measure};
use super::summary::{Claims, Fanout, Floor, Latency, Peer, Run, Settle, perf_rows};

/// What the page says about the machine and the peers.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub profile: String,
}

/// nginx + nchan: its versions and configuration, or why it was not run.
#[derive(Debug, Clone)]
pub enum Nchan {
    Ran {
        nginx: String,
        nchan: String,
        conf: String,
    },
    Skipped(String),
}

impl Nchan {
    pub fn ran(&self) -> bool {
        matches!(self, Nchan::Ran { .. })
    }
}

/// One cross-node configuration: viewers per node, rate, and each node's run (0 is the
/// seller's).
#[derive(Debug, Clone)]
pub struct NodesRun {
    pub viewers: u64,
    pub rate: f64,
    pub layout: String,
    pub loadavg: String,
    pub runs: Vec<Run<Fanout>>,
}

#[derive(Debug, Clone)]
pub struct SettleRun {
    pub loadavg: String,
    pub night: Run<Claims>,
    pub first: Run<Settle>,
    pub rerun: Run<Settle>,
    pub floor: Run<Floor>,
    /// Orders and units, and claim log entries, counted in PostgreSQL afterwards.
    pub orders_db: Option<(u64, u64)>,
    pub entries_db: Option<u64>,
}

/// perf's three reports of one profiled process.
#[derive(Debug, Clone, Default)]
pub struct ProfileReport {
    pub dso: String,
    pub symbols: String,
    pub children: String,
}

#[derive(Debug, Clone, Default)]
pub struct Profiles {
    pub loadavg: String,
    /// Keyed `nm-fanout`, `nx-fanout`, `redis-claims-server`, `redis-claims-redis`.
    pub reports: BTreeMap<String, Run<ProfileReport>>,
    /// The profiled fan-out runs themselves (for CPU per delivery under sampling).
    pub fanouts: BTreeMap<String, Run<Fanout>>,
    /// Title and path (relative to the page) of each flame graph drawn.
    pub svgs: Vec<(String, String)>,
}

/// Runs with the server on more and more cores: (cores, run).
pub type CoreRuns = Vec<(usize, Run<Fanout>)>;

/// Everything a run measured. Fan-out runs are keyed (see [`key`]).
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub fanout: BTreeMap<String, Run<Fanout>>,
    pub claims: Option<Run<Claims>>,
    pub redis_claims: Option<Run<Claims>>,
    pub peer: Option<Run<Peer>>,
    pub redis_loadavg: String,
    pub nodes: Vec<NodesRun>,
    pub settle: Option<SettleRun>,
    pub profiles: Option<Profiles>,
    /// Deliveries/s with 1, 2 and all cores, or why not.
    pub cores: Option<Result<CoreRuns, String>>,
    /// The commands run, by the part of the page that lists them (see [`part`]).
    pub commands: BTreeMap<String, Vec<String>>,
}

impl Results {
    pub fn commands(&self, part: &str) -> &[String] {
        self.commands.get(part).map_or(&[], Vec::as_slice)
    }
}

/// The parts of the page that list their commands.
pub mod part {
    pub const MAIN: &str = "main";
    pub const REDIS: &str = "claims-redis";
    pub const NODES: &str = "nodes";
    pub const SETTLEMENT: &str = "settlement";
    pub const PROFILE: &str = "profile";
}

/// Names of the fan-out runs.
pub mod key {
    pub fn nm(what: &str) -> String {
        format!("nm-{what}")
    }
    pub fn nx(what: &str) -> String {
        format!("nx-{what}")
    }
    pub fn scale(viewers: u64) -> String {
        format!("scale-{viewers}")
    }
    pub const FRIDAY_ONE: &str = "friday-one";
    pub const FRIDAY_MANY: &str = "friday-many";
    pub const OVERLOAD: &str = "overload";
}

/// The page's context: the run's parameters and where it ran.
pub struct Page<'a> {
    pub params: &'a Params,
    pub machine: &'a Machine,
    pub nchan: &'a Nchan,
    pub note: &'a str,
}

/// A number with thousands separators and `digits` decimals; "–" when missing.
pub fn num(v: Option<f64>, digits: usize) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "–".into();
    };
    let text = format!("{:.*}", digits, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn n(v: u64) -> String {
    num(Some(v as f64), 0)
}

fn times(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}×"))
}

fn lat(l: &Latency) -> String {
    format!(
        "{} / {} / {} / {}",
        num(l.p50_ms, 2),
        num(l.p90_ms, 2),
        num(l.p99_ms, 2),
        num(l.max_ms, 2)
    )
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", n(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn get<'r, T>(map: &'r BTreeMap<String, Run<T>>, k: &str) -> Option<&'r T> {
    map.get(k).and_then(|r| r.as_ref().ok())
}

/// The whole page.
pub fn page(p: &Page, r: &Results) -> String {
    let mut out = Vec::new();
    let w = &mut out;
    intro(w, p);
    fanout_section(w, p, r);
    w.push(nodes_block(
        p,
        &r.nodes,
        r.commands(part::NODES),
        "Measured in the same run",
    ));
    w.push(String::new());
    idle_section(w, p, r);
    claims_section(w, p, r);
    w.push(claims_redis_block(p, r, "measured in the same run"));
    w.push(String::new());
    if let Some(s) = &r.settle {
        let commands = r.commands(part::SETTLEMENT);
        w.push(settlement_block(p, s, commands, "Measured in the same run"));
        w.push(String::new());
    }
    if let Some(pr) = &r.profiles {
        let commands = r.commands(part::PROFILE);
        let note = "Measured in the same run, after the others";
        w.push(profile_block(p, pr, commands, note));
        w.push(String::new());
    }
    w.push("## Goals".into());
    w.push(String::new());
    w.push(
        "Each figure is judged against its target; a ratio is Nightmarket's figure divided by the \
         peer's, so below 1 means Nightmarket uses less or is faster."
            .into(),
    );
    w.push(String::new());
    w.push("| measure | target | measured | status |".into());
    w.push("|---|---|---|---|".into());
    for row in goal_rows(p, r) {
        w.push(row.line());
    }
    w.push(String::new());
    w.push("## Commands".into());
    w.push(String::new());
    w.push(
        "`$TMP` is the run's temporary directory and `$PREFIX` the nginx prefix inside it; show \
         and product ids are the ones `setup` printed."
            .into(),
    );
    w.push(String::new());
    w.push(commands_tail(r.commands(part::MAIN), p.nchan));
    out.join("\n")
}

/// The command list and nginx configuration that end the page.
/// The commands with each run of identical ones written once and counted (the Friday night's
/// 50 `setup` calls are one line and a note, not 50 lines).
fn collapse_repeats(commands: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < commands.len() {
        let same = commands[i..]
            .iter()
            .take_while(|c| **c == commands[i])
            .count();
        out.push(commands[i].clone());
        if same > 1 {
            out.push(format!("# the command above, {same} times in a row"));
        }
        i += same;
    }
    out
}

pub fn commands_tail(commands: &[String], nchan: &Nchan) -> String {
    let mut w = vec!["```sh".to_owned()];
    w.extend(collapse_repeats(commands));
    w.push("```".into());
    w.push(String::new());
    if let Nchan::Ran { conf, .. } = nchan {
        w.push("nginx configuration (`$PREFIX/nginx.conf`):".into());
        w.push(String::new());
        w.push("```nginx".into());
        w.push(conf.trim_end().to_owned());
        w.push("```".into());
        w.push(String::new());
    }
    w.join("\n")
}

fn intro(w: &mut Vec<String>, p: &Page) {
    let m = p.machine;
    let pr = p.params;
    w.push("# Benchmarks".into());
    w.push(String::new());
    w.push(format!(
        "Measured on {} by `scripts/bench` (the driver `nightmarket-loadgen bench`), which \
         rewrites this page from the JSON summaries of `nightmarket-loadgen`. Every figure below \
         comes from that one run. Run the script again to refresh them.{}",
        m.date,
        if pr.quick {
            " **This is a `--quick` run: small numbers that exercise the driver, not figures to \
             compare.**"
        } else {
            ""
        }
    ));
    w.push(String::new());
    w.push("## Machine".into());
    w.push(String::new());
    w.push("| | |".into());
    w.push("|---|---|".into());
    w.push(format!("| CPUs | {} × {} |", m.cores, m.cpu));
    w.push(format!("| memory | {} |", m.memory));
    w.push(format!("| kernel | Linux {} |", m.kernel));
    w.push(format!("| Rust | {} ({} profile) |", m.rustc, m.profile));
    match p.nchan {
        Nchan::Ran { nginx, nchan, .. } => w.push(format!(
            "| peer | {nginx} with nchan (Debian package libnginx-mod-nchan {nchan}) |"
        )),
        Nchan::Skipped(why) => w.push(format!("| peer | not run: {why} |")),
    }
    // What the one running the bench knows of the machine's state (`BENCH_NOTE`): a shared
    // machine's speed changes from day to day, and every figure below moves with it.
    if !p.note.is_empty() {
        w.push(format!("| note | {} |", p.note.replace('|', "/")));
    }
    w.push(String::new());
    w.push("## Method".into());
    w.push(String::new());
    for line in method(pr) {
        w.push(format!("- {line}"));
    }
    w.push(String::new());
}

fn method(p: &Params) -> Vec<String> {
    vec![
        format!(
            "The server under test runs on CPU {} only (`taskset`): Nightmarket is one process \
             whose runtime then has one worker thread; nginx has one worker process \
             (`worker_processes 1`). The load generator runs on CPU {}. Everything is on loopback.",
            p.server_cpu, p.loadgen_cpu
        ),
        format!(
            "Viewer sockets are bound round-robin to {} ({} for the idle run), have a 4 KiB \
             kernel receive buffer and a 4 KiB WebSocket read buffer.",
            p.sources, p.idle_sources
        ),
        format!(
            "Fan-out: all viewers connect, then the publisher sends {} events/s for {} s, one at \
             a time, and the viewers listen {} s more. On Nightmarket the publisher is the show's \
             seller pinning two products in turn over its WebSocket; every pin is one sequenced \
             `event` frame to every viewer. On nchan the publisher POSTs a frame of the same \
             shape and size (`{{\"type\":\"event\",\"seq\":N,\"at\":MS,\"event\":{{\"kind\":\
             \"pinned\",\"product_id\":\"<36-character id>\",\"price\":250000}}}}`) to \
             `/pub/CHANNEL`, and viewers are nchan WebSocket subscribers of `/sub/CHANNEL`. Both \
             sides are parsed and counted by the same code.",
            p.rate, p.duration, p.grace
        ),
        "Latency is the time a viewer receives an event minus the event's `at` stamp (Unix ms, \
         same clock), so it includes up to 1 ms of stamp truncation. Lost events are gaps in \
         `seq`; a frame other than an event that brings a viewer to a newer `seq` (a catch-up to \
         the newest state) counts as caught up, and the events it stands for as skipped, not \
         lost. Nightmarket stamps `at` when it decides the seller's command and journals the \
         event before publishing it, so its latency includes that write; nchan keeps messages \
         in memory only."
            .into(),
        "Server CPU is the server process's (for nginx, the worker's) time from `/proc/PID/stat` \
         over the publishing window plus the grace period, in 10 ms ticks, split into user time \
         (field 14: the process's own code) and system time (field 15: the kernel on its \
         behalf). CPU per delivery = that CPU / event frames delivered, given in seconds per \
         million deliveries (= µs per delivery). CPU per join is the same over the connection \
         phase, divided by the viewers who got their snapshot (token check and snapshot \
         included)."
            .into(),
        "RSS per connection = (VmRSS once every viewer is connected − VmRSS before) / viewers."
            .into(),
        format!(
            "The latency comparison is made at a rate neither server saturates: where either side \
             fell more than {:.0}% short of the asked rate or kept its core over {:.0}% busy at \
             {} events/s, both run again at {} events/s.",
            goals::RATE_SLACK * 100.0,
            goals::BUSY_CORE * 100.0,
            p.rate,
            p.unsaturated_rate
        ),
        format!(
            "Overload: the seller sends {} events/s to {} viewers without waiting for answers \
             (open loop), more than one core can deliver. Each viewer's newest state is the highest \
             `seq` it has when the run ends; it has the final pin when that is the last event \
             published, and the time it got there is measured from the moment the last command \
             was sent (bound: {:.0} ms).",
            p.overload_rate,
            n(p.overload_viewers),
            p.latest_bound_ms
        ),
        "Profiles are `perf record` samples taken in separate runs after the measured ones; \
         each has a flame graph drawn from `perf script` (inferno) under `flamegraphs/`."
            .into(),
    ]
}

fn fanout_table_head(w: &mut Vec<String>) {
    w.push(
        "| server | viewers | connected | events (per s) | deliveries | lost | out of order | \
         dropped | latency p50 / p90 / p99 / max (ms) | server CPU in window (s) | CPU s per \
         million deliveries (user + system) | server RSS at end (KiB) | generator CPU (s) |"
            .into(),
    );
    w.push("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|".into());
}

fn fanout_row(label: &str, r: Option<&Run<Fanout>>) -> String {
    let f = match r {
        None => return format!("| {label} | | not run | | | | | | | | | | |"),
        Some(Err(e)) => return format!("| {label} | | failed: {e} | | | | | | | | | | |"),
        Some(Ok(f)) => f,
    };
    let s = f.server();
    let (cpu, user, sys) = f.cpu_us_per_delivery();
    format!(
        "| {label} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} ({} + {}) | {} | {} |",
        n(f.viewers * f.shows.unwrap_or(1)),
        n(f.connected),
        n(f.publish.as_ref().map_or(0, |p| p.events)),
        num(f.events_per_s(), 1),
        n(f.deliveries),
        n(f.lost),
        n(f.out_of_order),
        n(f.dropped_total()),
        lat(&f.latency),
        num(s.window_cpu_s, 2),
        num(cpu, 2),
        num(user, 2),
        num(sys, 2),
        num(s.rss_kib_end, 0),
        num(f.generator_window_cpu_s, 2),
    )
}

/// The two fan-out sizes compared with nchan, and the runs their latency is compared at.
fn p99_runs<'r>(p: &Params, r: &'r Results, size: &str) -> Option<(&'r Fanout, &'r Fanout, f64)> {
    let low = format!("{size}-unsaturated");
    let (nm, nx) = (
        get(&r.fanout, &key::nm(&low)),
        get(&r.fanout, &key::nx(&low)),
    );
    if let (Some(a), Some(b)) = (nm, nx) {
        return Some((a, b, p.unsaturated_rate));
    }
    let a = get(&r.fanout, &key::nm(size))?;
    let b = get(&r.fanout, &key::nx(size))?;
    Some((a, b, p.rate))
}

/// Whether both sides kept `rate` below saturation in the main fan-out run of `size`.
pub fn main_run_unsaturated(p: &Params, nm: &Fanout, nx: &Fanout) -> bool {
    [nm, nx]
        .iter()
        .all(|f| goals::unsaturated(f.events_per_s(), p.rate, f.server_load()))
}

fn sizes(p: &Params) -> [(String, u64); 2] {
    [("10k".into(), p.viewers), ("2k".into(), p.small_viewers)]
}

fn fanout_section(w: &mut Vec<String>, p: &Page, r: &Results) {
    let pr = p.params;
    w.push("## Fan-out".into());
    w.push(String::new());
    fanout_table_head(w);
    for (size, _) in sizes(pr) {
        w.push(fanout_row("Nightmarket", r.fanout.get(&key::nm(&size))));
        if p.nchan.ran() {
            w.push(fanout_row("nginx + nchan", r.fanout.get(&key::nx(&size))));
        }
    }
    w.push(String::new());
    w.push(format!(
        "Each publisher has one message in flight at a time, so when a publish takes longer \
         than 1/{} s the rate reached is lower than asked; the events column shows what was \
         reached, and CPU per delivery is normalised by deliveries. Nightmarket viewers also \
         receive the conflated viewer-count frames (at most one per `viewers_tick_ms`); their \
         cost is in the server CPU, but they are not counted as deliveries.",
        pr.rate
    ));
    w.push(String::new());
    if !p.nchan.ran() {
        if let Nchan::Skipped(why) = p.nchan {
            w.push(format!("nginx + nchan was not run: {why}."));
            w.push(String::new());
        }
    } else {
        w.push("Nightmarket ÷ nchan (below 1 means Nightmarket uses less or is faster):".into());
        w.push(String::new());
        w.push("| viewers | CPU per delivery, user | system | total | latency p50 | latency p99 | p99 at a rate neither saturates |".into());
        w.push("|---:|---:|---:|---:|---:|---:|---:|".into());
        for (size, viewers) in sizes(pr) {
            let a = get(&r.fanout, &key::nm(&size));
            let b = get(&r.fanout, &key::nx(&size));
            let (Some(a), Some(b)) = (a, b) else {
                w.push(format!("| {} | – | – | – | – | – | – |", n(viewers)));
                continue;
            };
            let (ac, au, asy) = a.cpu_us_per_delivery();
            let (bc, bu, bsy) = b.cpu_us_per_delivery();
            let low = p99_runs(pr, r, &size).map(|(x, y, rate)| {
                format!(
                    "{} (at {rate} events/s)",
                    times(goals::ratio(x.latency.p99_ms, y.latency.p99_ms))
                )
            });
            w.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                n(viewers),
                times(goals::ratio(au, bu)),
                times(goals::ratio(asy, bsy)),
                times(goals::ratio(ac, bc)),
                times(goals::ratio(a.latency.p50_ms, b.latency.p50_ms)),
                times(goals::ratio(a.latency.p99_ms, b.latency.p99_ms)),
                low.unwrap_or_else(|| "–".into()),
            ));
        }
        w.push(String::new());
        let reruns: Vec<_> = sizes(pr)
            .into_iter()
            .filter(|(s, _)| r.fanout.contains_key(&key::nm(&format!("{s}-unsaturated"))))
            .collect();
        if !reruns.is_empty() {
            w.push(format!(
                "At {} events/s a side saturated at {}, so both ran again there at {} events/s:",
                pr.rate,
                reruns
                    .iter()
                    .map(|(_, v)| format!("{} viewers", n(*v)))
                    .collect::<Vec<_>>()
                    .join(" and "),
                pr.unsaturated_rate
            ));
            w.push(String::new());
            fanout_table_head(w);
            for (size, _) in &reruns {
                let k = format!("{size}-unsaturated");
                w.push(fanout_row("Nightmarket", r.fanout.get(&key::nm(&k))));
                w.push(fanout_row("nginx + nchan", r.fanout.get(&key::nx(&k))));
            }
            w.push(String::new());
        }
    }
    scale_section(w, pr, r);
    cores_section(w, pr, r);
    friday_section(w, pr, r);
    overload_section(w, pr, r);
}

/// CPU per delivery of each cost-of-scale run: (viewers, µs).
fn scale_points(p: &Params, r: &Results) -> Vec<(u64, Option<f64>)> {
    p.scale_viewers
        .iter()
        .map(|&v| {
            let f = get(&r.fanout, &key::scale(v));
            (v, f.and_then(|f| f.cpu_us_per_delivery().0))
        })
        .collect()
}

fn scale_section(w: &mut Vec<String>, p: &Params, r: &Results) {
    w.push("### The cost of scale".into());
    w.push(String::new());
    w.push(format!(
        "Nightmarket alone, one show, the same {} deliveries/s at every size (the rate is that \
         divided by the viewers), {} s of publishing each.",
        n(p.scale_deliveries as u64),
        p.duration
    ));
    w.push(String::new());
    fanout_table_head(w);
    for &v in &p.scale_viewers {
        w.push(fanout_row(
            &format!("Nightmarket at {} events/s", num(Some(p.scale_rate(v)), 1)),
            r.fanout.get(&key::scale(v)),
        ));
    }
    w.push(String::new());
}

fn cores_section(w: &mut Vec<String>, p: &Params, r: &Results) {
    w.push("### Cores".into());
    w.push(String::new());
    match &r.cores {
        None => w.push("Not run.".into()),
        Some(Err(why)) => w.push(format!(
            "Deliveries/s with 1, 2 and all cores for the server: not measured, {why}."
        )),
        Some(Ok(runs)) => {
            w.push(format!(
                "Nightmarket with its server on 1, 2 and all cores but the generator's, {} \
                 viewers, the seller publishing as fast as answers come:",
                n(p.viewers)
            ));
            w.push(String::new());
            w.push("| server cores | events/s | deliveries/s | latency p99 (ms) |".into());
            w.push("|---:|---:|---:|---:|".into());
            for (cores, run) in runs {
                match run {
                    Ok(f) => w.push(format!(
                        "| {cores} | {} | {} | {} |",
                        num(f.events_per_s(), 1),
                        num(f.deliveries_per_s, 0),
                        num(f.latency.p99_ms, 2)
                    )),
                    Err(e) => w.push(format!("| {cores} | failed: {e} | | |")),
                }
            }
        }
    }
    w.push(String::new());
}

fn friday_section(w: &mut Vec<String>, p: &Params, r: &Results) {
    w.push("### A Friday night".into());
    w.push(String::new());
    w.push(format!(
        "{} shows × {} viewers against 1 show × {} viewers, each show's seller at {} events/s \
         for {} s: the same events per show, the same deliveries in all.",
        p.friday_shows,
        p.friday_viewers,
        n(p.friday_one_viewers),
        p.friday_rate,
        p.friday_duration
    ));
    w.push(String::new());
    fanout_table_head(w);
    w.push(fanout_row(
        &format!(
            "Nightmarket, {} shows × {}",
            p.friday_shows, p.friday_viewers
        ),
        r.fanout.get(key::FRIDAY_MANY),
    ));
    w.push(fanout_row(
        &format!("Nightmarket, 1 show × {}", n(p.friday_one_viewers)),
        r.fanout.get(key::FRIDAY_ONE),
    ));
    let nx_many = key::nx(key::FRIDAY_MANY);
    let nx_one = key::nx(key::FRIDAY_ONE);
    let nchan = r.fanout.contains_key(&nx_many);
    if nchan {
        w.push(fanout_row(
            &format!(
                "nginx + nchan, {} channels × {}",
                p.friday_shows, p.friday_viewers
            ),
            r.fanout.get(&nx_many),
        ));
        w.push(fanout_row(
            &format!("nginx + nchan, 1 channel × {}", n(p.friday_one_viewers)),
            r.fanout.get(&nx_one),
        ));
    }
    w.push(String::new());
    if nchan {
        w.push(format!(
            "CPU per delivery, many shows ÷ one: Nightmarket {}, nginx + nchan {} (the same \
             pattern on channels, publishing by HTTP POST: no journal, no seller session); the \
             table splits each into user and system time.",
            times(cpu_ratio(r, key::FRIDAY_MANY, key::FRIDAY_ONE)),
            times(cpu_ratio(r, &nx_many, &nx_one)),
        ));
        w.push(String::new());
    }
}

/// CPU per delivery of run `a` ÷ that of run `b`.
fn cpu_ratio(r: &Results, a: &str, b: &str) -> Option<f64> {
    goals::ratio(
        get(&r.fanout, a).and_then(|f| f.cpu_us_per_delivery().0),
        get(&r.fanout, b).and_then(|f| f.cpu_us_per_delivery().0),
    )
}

/// The overload run's verdict: disconnected viewers, and whether every viewer had the final
/// pin within the bound.
fn overload_verdict(p: &Params, f: &Fanout) -> (u64, bool, String) {
    let dropped = f.dropped_total();
    let latest = f.latest.clone().unwrap_or_default();
    let all = latest.reached == f.connected && latest.open == f.connected && f.connected > 0;
    let within = latest
        .after_last_publish
        .max_ms
        .is_some_and(|m| m <= p.latest_bound_ms);
    let text = format!(
        "{} of {} viewers disconnected; {} of {} had the final pin, the last {} ms after the \
         last publish",
        n(dropped),
        n(f.connected),
        n(latest.reached),
        n(f.connected),
        num(latest.after_last_publish.max_ms, 0)
    );
    (dropped, all && within, text)
}

fn overload_section(w: &mut Vec<String>, p: &Params, r: &Results) {
    w.push("### Overload".into());
    w.push(String::new());
    w.push(format!(
        "{} viewers of one show, the seller sending {} events/s in open loop, the server on one \
         core.",
        n(p.overload_viewers),
        p.overload_rate
    ));
    w.push(String::new());
    fanout_table_head(w);
    w.push(fanout_row("Nightmarket", r.fanout.get(key::OVERLOAD)));
    w.push(String::new());
    if let Some(f) = get(&r.fanout, key::OVERLOAD) {
        let (_, _, text) = overload_verdict(p, f);
        let latest = f.latest.clone().unwrap_or_default();
        w.push(format!(
            "{text}; p50 / p90 / p99 / max after the last publish: {} ms. Caught up {} times \
             (skipping {} events); dropped by cause: {}.",
            lat(&latest.after_last_publish),
            n(f.caught_up),
            n(f.skipped),
            if f.dropped.is_empty() {
                "none".into()
            } else {
                counts(&f.dropped)
            }
        ));
        w.push(String::new());
    }
}

fn idle_section(w: &mut Vec<String>, p: &Page, r: &Results) {
    let pr = p.params;
    w.push("## Idle viewers".into());
    w.push(String::new());
    w.push(format!(
        "Viewers connect and stay for {} s; nothing is published.",
        pr.idle_seconds
    ));
    w.push(String::new());
    w.push("| server | connected | connect time (s) | RSS before (KiB) | RSS connected (KiB) | RSS per connection (KiB) |".into());
    w.push("|---|---:|---:|---:|---:|---:|".into());
    let mut rows = vec![("Nightmarket", key::nm("idle"))];
    if p.nchan.ran() {
        rows.push(("nginx + nchan", key::nx("idle")));
    }
    for (label, k) in &rows {
        match r.fanout.get(k) {
            None => w.push(format!("| {label} | not run | | | | |")),
            Some(Err(e)) => w.push(format!("| {label} | failed: {e} | | | | |")),
            Some(Ok(f)) => {
                let s = f.server();
                w.push(format!(
                    "| {label} | {} | {} | {} | {} | {} |",
                    n(f.connected),
                    num(f.connect_s, 2),
                    num(s.rss_kib_before, 0),
                    num(s.rss_kib_connected, 0),
                    num(s.rss_bytes_per_connection.map(|b| b / 1024.0), 2)
                ));
            }
        }
    }
    w.push(String::new());
    w.push("### Join storm".into());
    w.push(String::new());
    w.push(format!(
        "{} viewers join a show at once (64 handshakes in flight), after the fan-out runs, so \
         Nightmarket's show has a pinned product in its snapshot and nchan's channel has \
         messages.",
        n(pr.join_viewers)
    ));
    w.push(String::new());
    w.push("| server | joined | join time (s) | server CPU (s) | CPU per join (µs) | of which user (µs) |".into());
    w.push("|---|---:|---:|---:|---:|---:|".into());
    let mut rows = vec![("Nightmarket", key::nm("join"))];
    if p.nchan.ran() {
        rows.push(("nginx + nchan", key::nx("join")));
    }
    for (label, k) in &rows {
        match r.fanout.get(k) {
            None => w.push(format!("| {label} | not run | | | | |")),
            Some(Err(e)) => w.push(format!("| {label} | failed: {e} | | | | |")),
            Some(Ok(f)) => {
                let (all, user) = f.cpu_us_per_join();
                w.push(format!(
                    "| {label} | {} | {} | {} | {} | {} |",
                    n(f.connected),
                    num(f.connect_s, 2),
                    num(f.server().connect_cpu_s, 2),
                    num(all, 1),
                    num(user, 1)
                ));
            }
        }
    }
    w.push(String::new());
}

const PEER_ROW: &str = "| raw Redis Lua script (peer) |";
const NM_REDIS_ROW: &str = "| Nightmarket, Redis inventory |";

fn claims_row(label: &str, c: Option<&Run<Claims>>) -> String {
    let c = match c {
        None => return format!("| {label} | not run | | | | | | | |"),
        Some(Err(e)) => return format!("| {label} | failed: {e} | | | | | | | |"),
        Some(Ok(c)) => c,
    };
    let mut outcomes = counts(&c.outcomes);
    if outcomes.is_empty() {
        outcomes = "–".into();
    }
    if !c.errors.is_empty() {
        let errors: Vec<_> = c.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        outcomes.push_str(&format!("; buyer errors {}", errors.join(", ")));
    }
    let cpu = match c.redis_cpu_s {
        Some(redis) => format!(
            "{} (+ Redis {})",
            num(c.server_cpu_s(), 2),
            num(Some(redis), 2)
        ),
        None => num(c.server_cpu_s(), 2),
    };
    format!(
        "| {label} | {} | {} | {} | {} | {outcomes} | {} | {} | {cpu} |",
        n(c.answered),
        num(Some(c.answered_per_s), 0),
        num(Some(c.accepted_per_s), 0),
        lat(&c.ack),
        n(c.oversold),
        if c.accounting_ok { "OK" } else { "MISMATCH" },
    )
}

fn peer_row(peer: Option<&Run<Peer>>) -> String {
    let label = &PEER_ROW[2..PEER_ROW.len() - 2];
    let p = match peer {
        None => return format!("{PEER_ROW} not run | | | | | | | |"),
        Some(Err(e)) => return format!("{PEER_ROW} failed: {e} | | | | | | | |"),
        Some(Ok(p)) => p,
    };
    let mut outcomes = format!("accepted {}", n(p.accepted));
    if p.sent > p.accepted {
        outcomes.push_str(&format!(", not accepted {}", n(p.sent - p.accepted)));
    }
    let [p50, p95, p99, max] = p.ack.map(Some);
    format!(
        "| {label} | {} | {} | {} | {} / p95 {} / {} / {} | {outcomes} | {} | {} | Redis {} |",
        n(p.sent),
        num(Some(p.requests_per_s), 0),
        num(Some(p.accepted_per_s), 0),
        num(p50, 2),
        num(p95, 2),
        num(p99, 2),
        num(max, 2),
        n(p.oversold),
        if p.accounting_ok { "OK" } else { "MISMATCH" },
        num(Some(p.redis_cpu_s), 2),
    )
}

fn claims_section(w: &mut Vec<String>, p: &Page, r: &Results) {
    let pr = p.params;
    w.push("## Claims".into());
    w.push(String::new());
    w.push(format!(
        "{} buyers each send {} claims of one unit, one after another, for the pinned product \
         of one live show with a stock of {}. Every accepted claim is durable (journaled with \
         fsync) before its answer.",
        pr.buyers,
        pr.claims_per_buyer,
        n(pr.claim_stock)
    ));
    w.push(String::new());
    w.push("| system | answered | claims/s | accepted/s | ack p50 / p90 / p99 / max (ms) | outcomes | oversold | accounting | server CPU (s) |".into());
    w.push("|---|---:|---:|---:|---|---|---:|---|---:|".into());
    w.push(claims_row("Nightmarket (embedded)", r.claims.as_ref()));
    w.push(peer_row(r.peer.as_ref()));
    w.push(claims_row(
        &NM_REDIS_ROW[2..NM_REDIS_ROW.len() - 2],
        r.redis_claims.as_ref(),
    ));
    w.push(String::new());
}

fn per_claim_us(cpu: Option<f64>, claims: u64) -> Option<f64> {
    cpu.filter(|_| claims > 0).map(|c| c * 1e6 / claims as f64)
}

/// The paragraph and table below the Claims table about the two Redis rows.
pub fn claims_redis_block(p: &Page, r: &Results, note: &str) -> String {
    let pr = p.params;
    let mut w = vec!["<!-- claims-redis:begin -->".to_owned(), String::new()];
    let loadavg = format!(
        "load average (1, 5, 15 min) just before: {}{}",
        r.redis_loadavg,
        if p.note.is_empty() {
            String::new()
        } else {
            format!("; {}", p.note)
        }
    );
    w.push(format!(
        "The two Redis rows: {note} ({loadavg}). Nightmarket runs in distributed mode \
         (`NIGHTMARKET_REDIS_URL`) on a throwaway `redis-server` without persistence; the server \
         and Redis are both pinned to CPU {} (this machine has {} cores), the load generator and \
         redis-benchmark to CPU {}. Nightmarket: a fresh show, {} buyers × {} claims as above, \
         the order service off (recording the claim log is settlement's work). Then the server \
         is stopped and redis-benchmark sends the claim script itself, {} times from {} \
         connections (one request in flight each, like the buyers), to the same Redis and the \
         same show: `EVALSHA` of the script the server loaded (prelude and `claims.lua`), the \
         show's keys, and ARGV claim id, buyer, product, 1, the list price, now. Each request has \
         a new random claim id (so the idempotency check never answers `duplicate`) and a new \
         buyer (so no buyer limit applies). That favours the peer a little: `claims.lua` appends \
         the claim id to the buyer's current chunk of 32 ids (`mine`), which is longer for \
         Nightmarket's buyers, who claim {} times each, than for the peer's, who claim once. \
         Accepted claims are counted from the show's `accepted` counter and stock before and \
         after, so a refused or failed request does not count. redis-benchmark reports p50, \
         p95, p99 and max, not p90. CPU is each process's user + system time over each run.",
        pr.server_cpu,
        p.machine.cores,
        pr.loadgen_cpu,
        pr.buyers,
        pr.claims_per_buyer,
        n(pr.buyers * pr.claims_per_buyer),
        pr.buyers,
        pr.claims_per_buyer,
    ));
    w.push(String::new());
    let nm = r.redis_claims.as_ref().and_then(|c| c.as_ref().ok());
    let peer = r.peer.as_ref().and_then(|c| c.as_ref().ok());
    if let (Some(nm), Some(peer)) = (nm, peer) {
        let server = nm.server.clone().unwrap_or_default();
        w.push("| per accepted claim | Nightmarket, Redis inventory | raw script |".into());
        w.push("|---|---:|---:|".into());
        w.push(format!(
            "| Redis CPU (µs) | {} | {} |",
            num(per_claim_us(nm.redis_cpu_s, nm.accepted), 1),
            num(per_claim_us(Some(peer.redis_cpu_s), peer.accepted), 1)
        ));
        w.push(format!(
            "| Nightmarket server CPU (µs): user + system | {} + {} = {} | – |",
            num(per_claim_us(server.user_s, nm.accepted), 1),
            num(per_claim_us(server.sys_s, nm.accepted), 1),
            num(per_claim_us(server.cpu_s, nm.accepted), 1)
        ));
        w.push(String::new());
        w.push(
            "With Redis on a core of its own (as in production, on another machine) the Redis \
             CPU per claim bounds the rate; here Redis and the server share one core, so the rate \
             also pays for the server's work per claim."
                .into(),
        );
        w.push(String::new());
    }
    w.push("```sh".into());
    w.extend(r.commands(part::REDIS).iter().cloned());
    w.push("```".into());
    w.push(String::new());
    w.push("<!-- claims-redis:end -->".into());
    w.join("\n")
}

/// The cross-node section, one table per configuration.
pub fn nodes_block(p: &Page, nodes: &[NodesRun], commands: &[String], note: &str) -> String {
    let pr = p.params;
    let mut w = vec![
        "<!-- nodes:begin -->".to_owned(),
        String::new(),
        "### Across hub nodes".into(),
        String::new(),
    ];
    if nodes.is_empty() {
        w.push("Not run.".into());
        w.push(String::new());
    }
    for c in nodes {
        let extra = if p.note.is_empty() {
            String::new()
        } else {
            format!("; {}", p.note)
        };
        w.push(format!(
            "#### {} nodes × {} viewers at {} events/s",
            pr.nodes,
            n(c.viewers),
            c.rate
        ));
        w.push(String::new());
        w.push(format!(
            "{note} (load average (1, 5, 15 min) just before: {}{extra}). {} Nightmarket \
             processes in distributed mode on one throwaway `redis-server`; {}. Each node has \
             its own generator with {} viewers of the same show. The seller pins products on \
             node 0 at {} events/s for {} s; viewers on the other nodes receive each event \
             through Redis pub/sub. Latency is measured as for fan-out above (receive time minus \
             the deciding node's `at` stamp, one clock).",
            c.loadavg,
            pr.nodes,
            c.layout,
            n(c.viewers),
            c.rate,
            pr.duration
        ));
        w.push(String::new());
        w.push("| node | viewers | connected | deliveries | lost | out of order | behind at end | dropped | latency p50 / p90 / p99 / max (ms) | node CPU in window (s) | CPU s per million deliveries |".into());
        w.push("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|".into());
        for (i, r) in c.runs.iter().enumerate() {
            let label = if i == 0 {
                "0 (seller)".to_owned()
            } else {
                i.to_string()
            };
            match r {
                Err(e) => w.push(format!("| {label} | failed: {e} | | | | | | | | | |")),
                Ok(f) => w.push(format!(
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    n(f.viewers),
                    n(f.connected),
                    n(f.deliveries),
                    n(f.lost),
                    n(f.out_of_order),
                    num(f.behind_at_end.map(|b| b as f64), 0),
                    n(f.dropped_total()),
                    lat(&f.latency),
                    num(f.server().window_cpu_s, 2),
                    num(f.cpu_us_per_delivery().0, 2),
                )),
            }
        }
        w.push(String::new());
        let publish = c
            .runs
            .first()
            .and_then(|r| r.as_ref().ok())
            .and_then(|f| f.publish.clone())
            .unwrap_or_default();
        let errors: Vec<_> = publish
            .errors
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        w.push(format!(
            "Events published: {} ({}/s reached of {} asked{}). Node 0's generator listens only \
             {} s after publishing; events still on their way then are counted as behind at end, \
             not lost, while the other nodes' generators listen longer.",
            n(publish.events),
            num(publish.events_per_s, 1),
            c.rate,
            if errors.is_empty() {
                String::new()
            } else {
                format!("; seller commands refused: {}", errors.join(", "))
            },
            pr.grace
        ));
        let per_delivery = c
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok()?.cpu_us_per_delivery().0)
            .reduce(f64::max);
        if let Some(per) = per_delivery {
            // What the asked rate takes at the CPU per delivery measured here.
            let viewers = pr.nodes as u64 * c.viewers;
            let cores = per / 1e6 * viewers as f64 * c.rate;
            w.push(String::new());
            w.push(format!(
                "At up to {per:.2} CPU s per million deliveries, {} viewers at {} events/s need \
                 about {cores:.1} cores of node CPU ({} on the machine).",
                n(viewers),
                c.rate,
                p.machine.cores
            ));
        }
        if let Some(d) = nodes_difference(c) {
            w.push(String::new());
            w.push(format!(
                "p99 on the relay nodes − p99 on the seller's node: {} ms.",
                num(Some(d), 2)
            ));
        }
        w.push(String::new());
    }
    w.push("```sh".into());
    w.extend(commands.iter().cloned());
    w.push("```".into());
    w.push(String::new());
    w.push("<!-- nodes:end -->".into());
    w.join("\n")
}

/// The worst relay node's p99 minus the seller's node's p99, in ms.
pub fn nodes_difference(c: &NodesRun) -> Option<f64> {
    let seller = c.runs.first()?.as_ref().ok()?.latency.p99_ms?;
    let relays: Option<Vec<f64>> = c.runs[1..]
        .iter()
        .map(|r| r.as_ref().ok().and_then(|f| f.latency.p99_ms))
        .collect();
    let worst = relays?.into_iter().reduce(f64::max)?;
    Some(worst - seller)
}

pub fn settlement_block(p: &Page, s: &SettleRun, commands: &[String], note: &str) -> String {
    let pr = p.params;
    let buyers = pr.settle_connections * pr.settle_rounds;
    let version = s
        .floor
        .as_ref()
        .map(|f| f.server_version.clone())
        .unwrap_or_default();
    let mut w = vec![
        "<!-- settlement:begin -->".to_owned(),
        String::new(),
        "## Settlement".into(),
        String::new(),
    ];
    w.push(format!(
        "{note} (load average (1, 5, 15 min) just before: {}{}). A night on the embedded \
         inventory whose store is a throwaway PostgreSQL {version} cluster (initdb defaults: \
         fsync and synchronous commits on). {} connections each play {} buyers in turn ({} \
         buyers), each buyer claims one unit {} times, and every {}th accepted claim is \
         cancelled again; the server runs on CPU {}, the generator on CPU {}, with the order \
         service off. Then the show is closed, the server stopped, and `nightmarket settle` \
         (both CPUs, as PostgreSQL) records the whole claim log from the journal into PostgreSQL \
         in batches (binary `COPY`, each batch in one transaction with its checkpoint, the next \
         page read from the journal meanwhile) and settles it: reconciliation, then one \
         transaction writing orders, lines, checkouts, first statuses and the settlement row. In \
         `serve` the order service records while the show is live, so after a close mostly the \
         second part is left. The floor is PostgreSQL's own `COPY` of the same rows (from a CSV \
         file `\\copy`'d out of the table) into a table created `LIKE claim_log_entries \
         INCLUDING ALL`, with the same constraints and indexes.",
        s.loadavg,
        if p.note.is_empty() {
            String::new()
        } else {
            format!("; {}", p.note)
        },
        n(pr.settle_connections),
        pr.settle_rounds,
        n(buyers),
        pr.settle_claims_per_buyer,
        pr.settle_cancel_every,
        pr.server_cpu,
        pr.loadgen_cpu,
    ));
    w.push(String::new());
    match &s.night {
        Err(e) => w.push(format!("The night failed: {e}.")),
        Ok(c) => w.push(format!(
            "The night: {} claims accepted of {} sent, {} units cancelled again, {} units held \
             by {} buyers, accounting {}; {} claims/s answered, ack p99 {} ms.",
            n(c.accepted),
            n(pr.settle_claims()),
            n(c.cancelled_qty),
            n(c.accepted_qty.saturating_sub(c.cancelled_qty)),
            n(c.distinct_buyers),
            if c.accounting_ok { "OK" } else { "MISMATCH" },
            num(Some(c.answered_per_s), 0),
            num(c.ack.p99_ms, 2)
        )),
    }
    w.push(String::new());
    w.push("| step | time (s) | what |".into());
    w.push("|---|---:|---|".into());
    let secs = |ms: Option<f64>| num(ms.map(|m| m / 1000.0), 2);
    match &s.first {
        Err(e) => w.push(format!("| settle | failed | {e} |")),
        Ok(f) => {
            w.push(format!(
                "| record the claim log | {} | {} entries (claims and cancellations) into `claim_log_entries` |",
                secs(f.timing_ms.record),
                n(f.recorded_now)
            ));
            w.push(format!(
                "| reconcile and settle | {} | {} orders, {} units, {} đồng |",
                secs(f.timing_ms.settle),
                n(f.orders),
                n(f.units),
                num(Some(f.revenue as f64), 0)
            ));
            w.push(format!(
                "| **settlement, in all** | {} | `nightmarket settle` ran {} s wall clock, start-up included |",
                secs(f.timing_ms.total),
                secs(f.wall_ms)
            ));
        }
    }
    match &s.rerun {
        Err(e) => w.push(format!("| rerun of the settled show | failed | {e} |")),
        Ok(r) => w.push(format!(
            "| rerun of the settled show | {} | {} ({} s wall clock) |",
            secs(r.timing_ms.total),
            if r.outcome == "already_settled" {
                "changes nothing"
            } else {
                &r.outcome
            },
            secs(r.wall_ms)
        )),
    }
    match &s.floor {
        Err(e) => w.push(format!("| PostgreSQL COPY (floor) | failed | {e} |")),
        Ok(f) => w.push(format!(
            "| PostgreSQL `COPY` of the same rows (floor) | {} | {} rows, {} MB of CSV |",
            secs(Some(f.copy_ms)),
            n(f.rows),
            num(Some(f.csv_bytes as f64 / 1e6), 0)
        )),
    }
    w.push(String::new());
    if let (Ok(first), Ok(floor)) = (&s.first, &s.floor)
        && let (Some(total), Some(record)) = (first.timing_ms.total, first.timing_ms.record)
        && floor.copy_ms > 0.0
    {
        w.push(format!(
            "Settlement ÷ COPY floor: {:.2}×; recording alone ÷ floor: {:.2}×.",
            total / floor.copy_ms,
            record / floor.copy_ms
        ));
        w.push(String::new());
    }
    if let (Some((orders, units)), Some(entries)) = (s.orders_db, s.entries_db) {
        let ok = s.night.as_ref().is_ok_and(|c| {
            units == c.accepted_qty.saturating_sub(c.cancelled_qty) && orders == c.distinct_buyers
        });
        w.push(format!(
            "Counted in PostgreSQL afterwards: {} log entries, {} orders holding {} units ({} \
             the generator's buyers and held units).",
            n(entries),
            n(orders),
            n(units),
            if ok { "equal to" } else { "NOT equal to" }
        ));
        w.push(String::new());
    }
    w.push("```sh".into());
    w.extend(commands.iter().cloned());
    w.push("```".into());
    w.push(String::new());
    w.push("<!-- settlement:end -->".into());
    w.join("\n")
}

/// Which binary a perf `dso` column names, as the page groups them.
pub fn binary_of(dso: &str) -> String {
    if dso.starts_with("[kernel") {
        "kernel".into()
    } else if dso.starts_with("[unknown") || dso == "[vdso]" {
        "other".into()
    } else if dso == "redis-check-rdb" {
        // Debian installs redis-server as a link to this one binary.
        "redis-server".into()
    } else {
        dso.into()
    }
}

/// A symbol as the page shows it: without Rust's hash suffix, one line, at most `width`
/// characters.
pub fn short_symbol(sym: &str, width: usize) -> String {
    let sym = sym.trim();
    let sym = sym
        .strip_prefix("[.] ")
        .or_else(|| sym.strip_prefix("[k] "))
        .unwrap_or(sym)
        .trim();
    let sym = match sym.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => sym,
    };
    let sym = sym.split_whitespace().collect::<Vec<_>>().join(" ");
    if sym.chars().count() <= width {
        sym
    } else {
        let cut: String = sym.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// System calls under which the most samples were taken: (share, name).
pub fn syscalls(children: &str) -> (Option<f64>, Vec<(f64, String)>) {
    const CALLS: [&str; 13] = [
        "writev",
        "readv",
        "write",
        "read",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "epoll_wait",
        "epoll_ctl",
        "accept4",
        "close",
        "futex",
    ];
    let mut all = None;
    let mut calls: Vec<(f64, String)> = Vec::new();
    for (pct, rest) in perf_rows(children) {
        let sym = short_symbol(&rest, 200);
        if sym == "do_syscall_64" && all.is_none() {
            all = Some(pct);
        }
        // Entry points differ by call and kernel (`__x64_sys_sendto`, `do_writev`, ...).
        let name = ["__x64_sys_", "__do_sys_", "__se_sys_", "ksys_", "do_"]
            .iter()
            .find_map(|p| sym.strip_prefix(p));
        if let Some(name) = name.filter(|n| CALLS.contains(n))
            && !calls.iter().any(|(_, c)| c == name)
        {
            calls.push((pct, name.to_owned()));
        }
    }
    (all, calls)
}

/// Samples by binary, top symbols and system calls of one profiled process; returns the
/// kernel's share of its samples.
fn profile_process(
    w: &mut Vec<String>,
    top: usize,
    label: &str,
    report: Option<&Run<ProfileReport>>,
) -> Option<f64> {
    w.push(format!("### {label}"));
    w.push(String::new());
    let Some(Ok(rep)) = report else {
        w.push("Not profiled (the run failed or perf could not attach).".into());
        w.push(String::new());
        return None;
    };
    let mut split: Vec<(String, f64)> = Vec::new();
    for (pct, dso) in perf_rows(&rep.dso) {
        let b = binary_of(&dso);
        match split.iter_mut().find(|(k, _)| *k == b) {
            Some((_, v)) => *v += pct,
            None => split.push((b, pct)),
        }
    }
    split.sort_by(|a, b| b.1.total_cmp(&a.1));
    let kernel = split
        .iter()
        .find(|(k, _)| k == "kernel")
        .map_or(0.0, |(_, v)| *v);
    let shares: Vec<_> = split
        .iter()
        .filter(|(_, v)| *v >= 0.5)
        .map(|(k, v)| format!("{k} {v:.1}%"))
        .collect();
    w.push(format!("Samples by binary: {}.", shares.join(", ")));
    w.push(String::new());
    w.push("| self | binary | symbol |".into());
    w.push("|---:|---|---|".into());
    for (pct, rest) in perf_rows(&rep.symbols).into_iter().take(top) {
        let Some((dso, sym)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        w.push(format!(
            "| {pct:.1}% | {} | `{}` |",
            binary_of(dso),
            short_symbol(sym, 90)
        ));
    }
    w.push(String::new());
    let (all, calls) = syscalls(&rep.children);
    if all.is_some() || !calls.is_empty() {
        let mut parts = Vec::new();
        if let Some(a) = all {
            parts.push(format!("all system calls {a:.1}%"));
        }
        let each: Vec<_> = calls
            .iter()
            .take(8)
            .map(|(v, c)| format!("`{c}` {v:.1}%"))
            .collect();
        if !each.is_empty() {
            parts.push(each.join(", "));
        }
        w.push(format!(
            "Share of samples under system calls: {}.",
            parts.join("; ")
        ));
        w.push(String::new());
    }
    Some(kernel)
}

pub fn profile_block(p: &Page, pr: &Profiles, commands: &[String], note: &str) -> String {
    let par = p.params;
    let mut w = vec![
        "<!-- profile:begin -->".to_owned(),
        String::new(),
        "## Profiles".into(),
        String::new(),
    ];
    w.push(format!(
        "{note} ({}). Where the CPU goes in the runs whose goals are furthest off: `perf record` \
         samples the process named ({} Hz, with call graphs) while the load above runs again on \
         the same machine: fan-out to {} viewers at {} events/s for {} s (+{} s), and {} buyers \
         × {} claims on the Redis inventory. Sampling slows the process a little, so none of the \
         figures above come from these runs. Percentages are of the process's own samples (the \
         connection phase of the fan-out included); a system call's share counts every sample \
         taken under it, in the kernel. Symbols are Rust's, demangled, without the hash; a bare \
         address is code shipped without symbols (Debian's nchan module and redis-server).",
        pr.loadavg,
        par.profile_hz,
        n(par.viewers),
        par.rate,
        par.duration,
        par.grace,
        par.buyers,
        par.claims_per_buyer
    ));
    w.push(String::new());
    if !pr.svgs.is_empty() {
        let links: Vec<_> = pr
            .svgs
            .iter()
            .map(|(title, path)| format!("[{title}]({path})"))
            .collect();
        w.push(format!("Flame graphs: {}.", links.join(", ")));
        w.push(String::new());
    }
    let top = par.profile_top;
    let nm_k = profile_process(
        &mut w,
        top,
        "Nightmarket, fan-out",
        pr.reports.get("nm-fanout"),
    );
    let nx_k = if p.nchan.ran() {
        profile_process(
            &mut w,
            top,
            "nginx + nchan worker, fan-out",
            pr.reports.get("nx-fanout"),
        )
    } else {
        None
    };
    let per = |k: &str, kernel: Option<f64>| {
        let f = get(&pr.fanouts, k)?;
        let total = f.cpu_us_per_delivery().0?;
        Some((total, total * kernel? / 100.0))
    };
    if let (Some(a), Some(b)) = (per("nm-fanout", nm_k), per("nx-fanout", nx_k)) {
        w.push(format!(
            "CPU per delivery in these runs: Nightmarket {:.2} µs, of which {:.2} µs in the \
             kernel and {:.2} µs in the process; nchan {:.2} µs, of which {:.2} µs in the kernel \
             and {:.2} µs in the process. Half of nchan's total is {:.2} µs.",
            a.0,
            a.1,
            a.0 - a.1,
            b.0,
            b.1,
            b.0 - b.1,
            b.0 / 2.0
        ));
        w.push(String::new());
    }
    profile_process(
        &mut w,
        top,
        "Nightmarket, claims on the Redis inventory",
        pr.reports.get("redis-claims-server"),
    );
    profile_process(
        &mut w,
        top,
        "redis-server, under those claims",
        pr.reports.get("redis-claims-redis"),
    );
    w.push("```sh".into());
    w.extend(commands.iter().cloned());
    w.push("```".into());
    w.push(String::new());
    w.push("<!-- profile:end -->".into());
    w.join("\n")
}

/// Every row of the Goals table that `r` has figures for; rows of parts not run are left out
/// (a partial run replaces only its own).
pub fn goal_rows(p: &Page, r: &Results) -> Vec<Row> {
    let pr = p.params;
    let mut rows = Vec::new();
    let both = |size: &str| {
        Some((
            get(&r.fanout, &key::nm(size))?,
            get(&r.fanout, &key::nx(size))?,
        ))
    };
    if r.fanout.contains_key(&key::nm("10k")) {
        let pairs = [both("10k"), both("2k")];
        let cpu_ratio = |pick: fn(&Fanout) -> Option<f64>| -> Vec<Option<f64>> {
            pairs
                .iter()
                .map(|p| p.and_then(|(a, b)| goals::ratio(pick(a), pick(b))))
                .collect()
        };
        let user: Vec<_> = cpu_ratio(|f| f.cpu_us_per_delivery().1);
        let total: Vec<_> = cpu_ratio(|f| f.cpu_us_per_delivery().0);
        let describe = |pick: fn(&Fanout) -> Option<f64>, ratios: &[Option<f64>]| {
            let parts: Vec<_> = pairs
                .iter()
                .zip(["10k", "2k"])
                .zip(ratios)
                .map(|((pair, size), ratio)| match pair {
                    Some((a, b)) => format!(
                        "{size}: {} vs {} µs = {}",
                        num(pick(a), 2),
                        num(pick(b), 2),
                        times(*ratio)
                    ),
                    None => format!("{size}: not measured"),
                })
                .collect();
            parts.join("; ")
        };
        let unavailable = if p.nchan.ran() {
            ""
        } else {
            " (nchan not run)"
        };
        let user_worst = goals::worst(&user, Better::Lower);
        rows.push(Row::new(
            measure::USER_CPU,
            "≤ 0.5×",
            format!(
                "{}{unavailable}",
                describe(|f| f.cpu_us_per_delivery().1, &user)
            ),
            goals::status(user_worst, 0.5, Better::Lower),
        ));
        let total_worst = goals::worst(&total, Better::Lower);
        rows.push(Row::new(
            measure::TOTAL_CPU,
            "≤ 0.85×",
            format!(
                "{}{unavailable}",
                describe(|f| f.cpu_us_per_delivery().0, &total)
            ),
            goals::status(total_worst, 0.85, Better::Lower),
        ));
        let p99: Vec<_> = ["10k", "2k"].iter().map(|s| p99_runs(pr, r, s)).collect();
        let ratios: Vec<Option<f64>> = p99
            .iter()
            .map(|x| x.and_then(|(a, b, _)| goals::ratio(a.latency.p99_ms, b.latency.p99_ms)))
            .collect();
        let parts: Vec<_> = p99
            .iter()
            .zip(["10k", "2k"])
            .zip(&ratios)
            .map(|((x, size), ratio)| match x {
                Some((a, b, rate)) => format!(
                    "{size} at {rate} events/s: {} vs {} ms = {}",
                    num(a.latency.p99_ms, 2),
                    num(b.latency.p99_ms, 2),
                    times(*ratio)
                ),
                None => format!("{size}: not measured"),
            })
            .collect();
        rows.push(Row::new(
            measure::P99,
            "≤ 1.0×",
            format!("{}{unavailable}", parts.join("; ")),
            goals::status(goals::worst(&ratios, Better::Lower), 1.0, Better::Lower),
        ));
    }
    let points = scale_points(pr, r);
    if points.iter().any(|(_, v)| v.is_some()) {
        let values: Option<Vec<f64>> = points.iter().map(|(_, v)| *v).collect();
        let spread = values.as_deref().and_then(goals::spread_percent);
        let text: Vec<_> = points
            .iter()
            .map(|(v, c)| format!("{}: {}", n(*v), num(*c, 2)))
            .collect();
        rows.push(Row::new(
            measure::SCALE,
            "flat within ±15%",
            format!(
                "µs per delivery {}; furthest from the mean: {}%",
                text.join(", "),
                num(spread, 0)
            ),
            goals::status(spread, 15.0, Better::Lower),
        ));
    }
    if let Some(Ok(f)) = r.fanout.get(&key::nm("idle")) {
        let kib = f.server().rss_bytes_per_connection.map(|b| b / 1024.0);
        rows.push(Row::new(
            measure::IDLE,
            "≤ 4 KiB",
            format!("{} KiB per connection", num(kib, 2)),
            goals::status(kib, 4.0, Better::Lower),
        ));
    }
    if r.fanout.contains_key(key::FRIDAY_MANY) {
        let many = get(&r.fanout, key::FRIDAY_MANY).and_then(|f| f.cpu_us_per_delivery().0);
        let one = get(&r.fanout, key::FRIDAY_ONE).and_then(|f| f.cpu_us_per_delivery().0);
        let ratio = goals::ratio(many, one);
        let per_event = get(&r.fanout, key::FRIDAY_MANY).and_then(|f| {
            let events = f.publish.as_ref()?.events;
            let cpu = f.server().window_cpu_s?;
            (events > 0).then(|| cpu * 1e3 / events as f64)
        });
        let nchan = cpu_ratio(r, &key::nx(key::FRIDAY_MANY), &key::nx(key::FRIDAY_ONE));
        rows.push(Row::new(
            measure::FRIDAY,
            "≤ 1.2×",
            format!(
                "{} vs {} µs per delivery = {} ({} ms CPU per seller event; nginx + nchan on the \
                 same pattern: {})",
                num(many, 2),
                num(one, 2),
                times(ratio),
                num(per_event, 2),
                times(nchan)
            ),
            goals::status(ratio, 1.2, Better::Lower),
        ));
    }
    if r.fanout.contains_key(&key::nm("join")) {
        let a = get(&r.fanout, &key::nm("join")).map(Fanout::cpu_us_per_join);
        let b = get(&r.fanout, &key::nx("join")).map(Fanout::cpu_us_per_join);
        let ratio = goals::ratio(a.and_then(|x| x.0), b.and_then(|x| x.0));
        rows.push(Row::new(
            measure::JOIN,
            "≤ 1.5×",
            format!(
                "{} µs ({} user) vs {} µs ({} user) per join = {}",
                num(a.and_then(|x| x.0), 1),
                num(a.and_then(|x| x.1), 1),
                num(b.and_then(|x| x.0), 1),
                num(b.and_then(|x| x.1), 1),
                times(ratio)
            ),
            goals::status(ratio, 1.5, Better::Lower),
        ));
    }
    if let Some(run) = &r.redis_claims {
        let nm = run.as_ref().ok();
        let per = nm.and_then(|c| per_claim_us(c.server_cpu_s(), c.accepted));
        rows.push(Row::new(
            measure::REDIS_CPU,
            "≤ 5 µs",
            format!(
                "{} µs ({} buyers; Redis {} µs per claim)",
                num(per, 1),
                pr.buyers,
                num(nm.and_then(|c| per_claim_us(c.redis_cpu_s, c.accepted)), 1)
            ),
            goals::status(per, 5.0, Better::Lower),
        ));
        let peer = r.peer.as_ref().and_then(|p| p.as_ref().ok());
        let ratio = goals::ratio(nm.map(|c| c.accepted_per_s), peer.map(|p| p.accepted_per_s));
        rows.push(Row::new(
            measure::REDIS_RATE,
            "≥ 1.5×",
            format!(
                "{} vs {} accepted claims/s = {} (Redis on the server's core; ack p99 {} vs {} ms)",
                num(nm.map(|c| c.accepted_per_s), 0),
                num(peer.map(|p| p.accepted_per_s), 0),
                times(ratio),
                num(nm.and_then(|c| c.ack.p99_ms), 2),
                num(peer.map(|p| p.ack[2]), 2)
            ),
            goals::status(ratio, 1.5, Better::Higher),
        ));
    }
    if let Some(run) = &r.claims {
        let c = run.as_ref().ok();
        let rate = c.map(|c| c.accepted_per_s);
        rows.push(Row::new(
            measure::EMBEDDED_RATE,
            "≥ 100,000/s",
            format!("{}/s ({} buyers)", num(rate, 0), pr.buyers),
            goals::status(rate, 100_000.0, Better::Higher),
        ));
        let p99 = c.and_then(|c| c.ack.p99_ms);
        rows.push(Row::new(
            measure::EMBEDDED_ACK,
            "≤ 10 ms",
            format!("{} ms", num(p99, 2)),
            goals::status(p99, 10.0, Better::Lower),
        ));
        let status = match c {
            None => "not measured".to_owned(),
            Some(c) if c.oversold == 0 && c.accounting_ok => "**met**".into(),
            Some(_) => "**not met**".into(),
        };
        rows.push(Row::new(
            measure::OVERSELL,
            "0",
            format!(
                "{} oversold, accounting {}",
                num(c.map(|c| c.oversold as f64), 0),
                if c.is_some_and(|c| c.accounting_ok) {
                    "OK"
                } else {
                    "MISMATCH"
                }
            ),
            status,
        ));
    }
    for (i, c) in r.nodes.iter().enumerate() {
        let (label, judged) = if i == 0 {
            (measure::NODES_SMALL, Ok(()))
        } else {
            let need = goals::cores_for_nodes(pr.nodes);
            let enough = p.machine.cores >= need;
            (
                measure::NODES_LARGE,
                if enough {
                    Ok(())
                } else {
                    Err(format!(
                        "not judged: needs {need} cores (one per node, one for Redis, one for the \
                         generators), this machine has {}",
                        p.machine.cores
                    ))
                },
            )
        };
        let d = nodes_difference(c);
        let lost: u64 = c
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.lost)
            .sum();
        let measured = format!(
            "{} ms ({} × {} at {} events/s; {}; {} lost)",
            num(d, 2),
            pr.nodes,
            n(c.viewers),
            c.rate,
            c.layout,
            n(lost)
        );
        let status = match judged {
            Ok(()) => goals::status(d, 5.0, Better::Lower),
            Err(why) => why,
        };
        rows.push(Row::new(label, "≤ 5 ms", measured, status));
    }
    if let Some(run) = r.fanout.get(key::OVERLOAD) {
        let (measured, status) = match run {
            Err(e) => (format!("failed: {e}"), "not measured".to_owned()),
            Ok(f) => {
                let (dropped, latest_ok, text) = overload_verdict(pr, f);
                let status = if dropped == 0 && latest_ok {
                    "**met**".to_owned()
                } else {
                    let mut why = Vec::new();
                    if dropped > 0 {
                        why.push(format!("{} disconnected", n(dropped)));
                    }
                    if !latest_ok {
                        why.push("not every viewer had the final pin in time".into());
                    }
                    format!("**not met**: {}", why.join("; "))
                };
                (text, status)
            }
        };
        rows.push(Row::new(
            measure::OVERLOAD,
            "0 disconnected; every viewer has the final pin within 1 s of the last publish",
            measured,
            status,
        ));
    }
    if let Some(s) = &r.settle {
        rows.push(settlement_row(pr, s));
    }
    rows
}

fn settlement_row(p: &Params, s: &SettleRun) -> Row {
    let target = format!("≤ {:.0} s", p.settle_goal_s);
    let Ok(first) = &s.first else {
        return Row::new(
            measure::SETTLEMENT,
            &target,
            "a run failed (see Settlement)".into(),
            "not measured".into(),
        );
    };
    let t = first.timing_ms.total.map(|ms| ms / 1000.0);
    let floor = s
        .floor
        .as_ref()
        .map(|f| format!("; COPY floor {:.2} s", f.copy_ms / 1000.0))
        .unwrap_or_default();
    let rerun = s
        .rerun
        .as_ref()
        .ok()
        .and_then(|r| r.timing_ms.total)
        .map(|ms| ms / 1000.0);
    Row::new(
        measure::SETTLEMENT,
        &target,
        format!(
            "{} s into PostgreSQL (record {} s + settle {} s){floor}; rerun {} s",
            num(t, 2),
            num(first.timing_ms.record.map(|m| m / 1000.0), 2),
            num(first.timing_ms.settle.map(|m| m / 1000.0), 2),
            num(rerun, 2)
        ),
        goals::status(t, p.settle_goal_s, Better::Lower),
    )
}

/// Replaces the block `<!-- NAME:begin -->` … `<!-- NAME:end -->` of `doc` with `block`, or,
/// when the page has none yet, inserts it before the line `before`.
pub fn splice_block(doc: &str, name: &str, block: &str, before: &str) -> anyhow::Result<String> {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let mut lines: Vec<String> = doc.split('\n').map(str::to_owned).collect();
    let block: Vec<String> = block.split('\n').map(str::to_owned).collect();
    let at_begin = lines.iter().position(|l| *l == begin);
    let at_end = lines.iter().position(|l| *l == end);
    match (at_begin, at_end) {
        (Some(b), Some(e)) if b < e => {
            lines.splice(b..=e, block);
        }
        (None, None) => {
            let at = lines.iter().position(|l| l == before).ok_or_else(|| {
                anyhow::anyhow!("the page has no line {before:?} to put {name} before")
            })?;
            let mut insert = block;
            insert.push(String::new());
            lines.splice(at..at, insert);
        }
        _ => anyhow::bail!("the page's {name} block is broken: one marker without the other"),
    }
    Ok(lines.join("\n"))
}

/// Replaces each row of `rows` in `doc` (found by its first cell); a row the page lacks is
/// added at the end of the Goals table.
pub fn replace_rows(doc: &str, rows: &[Row]) -> anyhow::Result<String> {
    let mut lines: Vec<String> = doc.split('\n').map(str::to_owned).collect();
    for row in rows {
        let key = row.key();
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(&key))
            .collect();
        match hits.as_slice() {
            [i] => lines[*i] = row.line(),
            [] => {
                let goals = lines
                    .iter()
                    .position(|l| l == "## Goals")
                    .ok_or_else(|| anyhow::anyhow!("the page has no Goals section"))?;
                let head = (goals..lines.len())
                    .find(|&i| lines[i].starts_with("| "))
                    .ok_or_else(|| anyhow::anyhow!("the page's Goals section has no table"))?;
                let end = (head..lines.len())
                    .find(|&i| !lines[i].starts_with('|'))
                    .unwrap_or(lines.len());
                lines.insert(end, row.line());
            }
            _ => anyhow::bail!(
                "the page has {} rows starting {key:?}, expected one",
                hits.len()
            ),
        }
    }
    Ok(lines.join("\n"))
}

/// Replaces the rows of the Claims table that start with one of `rows`' first cells.
pub fn replace_lines(doc: &str, lines_by_prefix: &[(String, String)]) -> anyhow::Result<String> {
    let mut lines: Vec<String> = doc.split('\n').map(str::to_owned).collect();
    for (prefix, line) in lines_by_prefix {
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(prefix.as_str()))
            .collect();
        let [i] = hits.as_slice() else {
            anyhow::bail!(
                "the page has {} rows starting {prefix:?}, expected one",
                hits.len()
            );
        };
        lines[*i] = line.clone();
    }
    Ok(lines.join("\n"))
}

/// The opening of a page some of whose parts were rerun alone says which figures do not come
/// from its one run.
pub fn mark_separate_runs(doc: &str) -> String {
    doc.replacen(
        "Every figure below comes from that one run. ",
        "Every figure below comes from that one run, except those a section says come from a \
         separate run. ",
        1,
    )
}

/// The two Redis rows of the Claims table, for a partial run.
pub fn claims_redis_rows(r: &Results) -> Vec<(String, String)> {
    vec![
        (PEER_ROW.to_owned(), peer_row(r.peer.as_ref())),
        (
            NM_REDIS_ROW.to_owned(),
            claims_row(
                &NM_REDIS_ROW[2..NM_REDIS_ROW.len() - 2],
                r.redis_claims.as_ref(),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::summary;
    use serde_json::json;

    fn fanout(v: serde_json::Value) -> Run<Fanout> {
        summary::parse(Ok(v))
    }

    /// A fan-out summary with the figures the page reads.
    fn run(
        viewers: u64,
        events_per_s: f64,
        load: f64,
        user: f64,
        sys: f64,
        p99: f64,
    ) -> Run<Fanout> {
        fanout(json!({
            "viewers": viewers, "connected": viewers, "deliveries": viewers * 100,
            "publish": {"events": 100, "events_per_s": events_per_s, "errors": {}},
            "latency": {"p50_ms": p99 / 2.0, "p90_ms": p99 / 1.5, "p99_ms": p99, "max_ms": p99 * 2.0},
            "server": {"window_cpu_s": load * 12.0, "window_s": 12.0,
                       "cpu_s_per_million_deliveries": user + sys,
                       "user_s_per_million_deliveries": user, "sys_s_per_million_deliveries": sys,
                       "connect_cpu_s": 1.5, "connect_user_s": 0.7,
                       "rss_bytes_per_connection": 5478.4},
        }))
    }

    fn machine() -> Machine {
        Machine {
            date: "2026-12-03 13:19 UTC".into(),
            cores: 2,
            cpu: "Intel(R) Xeon(R) Processor".into(),
            memory: "23.5 GiB".into(),
            kernel: "6.18".into(),
            rustc: "rustc 1.95.0".into(),
            profile: "release".into(),
        }
    }

    fn nchan() -> Nchan {
        Nchan::Ran {
            nginx: "nginx/1.22.1".into(),
            nchan: "1:1.3.6+dfsg-2".into(),
            conf: "worker_processes 1;".into(),
        }
    }

    fn results() -> Results {
        let mut r = Results::default();
        // 10k: Nightmarket saturated at 20 events/s, so the latency is compared at 5/s.
        r.fanout
            .insert(key::nm("10k"), run(10_000, 12.1, 0.82, 3.4, 4.8, 209.5));
        r.fanout
            .insert(key::nx("10k"), run(10_000, 14.2, 0.80, 2.0, 4.8, 71.6));
        r.fanout.insert(
            key::nm("10k-unsaturated"),
            run(10_000, 5.0, 0.3, 3.4, 4.8, 20.0),
        );
        r.fanout.insert(
            key::nx("10k-unsaturated"),
            run(10_000, 5.0, 0.3, 2.0, 4.8, 25.0),
        );
        r.fanout
            .insert(key::nm("2k"), run(2_000, 20.1, 0.28, 3.5, 4.8, 25.7));
        r.fanout
            .insert(key::nx("2k"), run(2_000, 20.1, 0.22, 1.8, 4.8, 14.2));
        r.fanout
            .insert(key::nm("idle"), run(10_000, 0.0, 0.0, 0.0, 0.0, 0.0));
        r.fanout
            .insert(key::nm("join"), run(10_000, 0.0, 0.0, 0.0, 0.0, 0.0));
        r.fanout
            .insert(key::nx("join"), run(10_000, 0.0, 0.0, 0.0, 0.0, 0.0));
        r.fanout.insert(
            key::OVERLOAD.into(),
            fanout(json!({
                "viewers": 10_000, "connected": 10_000, "deliveries": 10,
                "dropped": {"close 4000": 2850},
                "latest": {"reached": 7150, "open": 7150, "after_last_publish": {"max_ms": 900.0}},
            })),
        );
        r.claims = Some(Ok(Claims {
            accepted: 100_000,
            accepted_per_s: 49_992.0,
            ack: Latency {
                p99_ms: Some(13.47),
                ..Latency::default()
            },
            accounting_ok: true,
            ..Claims::default()
        }));
        r
    }

    fn rows_of(r: &Results) -> Vec<Row> {
        let (params, m, nx) = (Params::full(), machine(), nchan());
        let page = Page {
            params: &params,
            machine: &m,
            nchan: &nx,
            note: "",
        };
        goal_rows(&page, r)
    }

    fn row<'r>(rows: &'r [Row], measure: &str) -> &'r Row {
        rows.iter().find(|r| r.measure == measure).unwrap()
    }

    #[test]
    fn numbers_read_with_separators() {
        assert_eq!(num(Some(1_210_000.0), 0), "1,210,000");
        assert_eq!(num(Some(49_992.4), 0), "49,992");
        assert_eq!(num(Some(1646.567), 2), "1,646.57");
        assert_eq!(num(Some(0.5), 2), "0.50");
        assert_eq!(num(Some(-3.0), 1), "-3.0");
        assert_eq!(num(Some(-0.001), 1), "0.0");
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(f64::INFINITY), 2), "–");
    }

    #[test]
    fn fan_out_goals_compare_both_sizes_with_nchan() {
        let rows = rows_of(&results());
        // User time: 3.4 / 2.0 = 1.70 at 10k, 3.5 / 1.8 = 1.94 at 2k; the worse is judged.
        let user = row(&rows, measure::USER_CPU);
        assert!(
            user.measured.contains("10k: 3.40 vs 2.00 µs = 1.70×"),
            "{}",
            user.measured
        );
        assert!(
            user.status.starts_with("**not met**: 3.89× the limit"),
            "{}",
            user.status
        );
        // The 10k latency comes from the runs below saturation, the 2k one from the main run.
        let p99 = row(&rows, measure::P99);
        assert!(
            p99.measured
                .contains("10k at 5 events/s: 20.00 vs 25.00 ms = 0.80×"),
            "{}",
            p99.measured
        );
        assert!(
            p99.measured
                .contains("2k at 20 events/s: 25.70 vs 14.20 ms = 1.81×"),
            "{}",
            p99.measured
        );
        assert!(p99.status.starts_with("**not met**"), "{}", p99.status);
        let idle = row(&rows, measure::IDLE);
        assert_eq!(idle.measured, "5.35 KiB per connection");
        assert_eq!(
            row(&rows, measure::JOIN).status,
            "**met**, 33% below the limit"
        );
    }

    #[test]
    fn claims_and_overload_goals() {
        let rows = rows_of(&results());
        assert_eq!(
            row(&rows, measure::EMBEDDED_RATE).status,
            "**not met**: 50% short; must rise 100%"
        );
        assert_eq!(row(&rows, measure::EMBEDDED_ACK).measured, "13.47 ms");
        assert_eq!(row(&rows, measure::OVERSELL).status, "**met**");
        let o = row(&rows, measure::OVERLOAD);
        assert!(
            o.measured
                .starts_with("2,850 of 10,000 viewers disconnected"),
            "{}",
            o.measured
        );
        assert!(o.status.contains("2,850 disconnected"), "{}", o.status);
        assert!(
            o.status.contains("not every viewer had the final pin"),
            "{}",
            o.status
        );
        // Parts that did not run have no row: a partial run leaves theirs alone.
        assert!(rows.iter().all(|r| r.measure != measure::SETTLEMENT));
        assert!(rows.iter().all(|r| r.measure != measure::REDIS_CPU));
    }

    #[test]
    fn the_overload_goal_is_met_only_without_disconnects_and_in_time() {
        let p = Params::full();
        let ok = fanout(json!({
            "connected": 10, "dropped": {},
            "latest": {"reached": 10, "open": 10, "after_last_publish": {"max_ms": 400.0}},
        }))
        .unwrap();
        assert!(overload_verdict(&p, &ok).1);
        let late = fanout(json!({
            "connected": 10, "dropped": {},
            "latest": {"reached": 10, "open": 10, "after_last_publish": {"max_ms": 1400.0}},
        }))
        .unwrap();
        assert!(!overload_verdict(&p, &late).1);
    }

    #[test]
    fn cross_node_difference_and_cores() {
        let node = |p99: f64| run(1_000, 20.0, 0.5, 1.0, 1.0, p99);
        let small = NodesRun {
            viewers: 1_000,
            rate: 20.0,
            layout: "all on CPU 0".into(),
            loadavg: "0.1 0.1 0.1".into(),
            runs: vec![node(30.0), node(33.5), node(32.0)],
        };
        assert_eq!(nodes_difference(&small), Some(3.5));
        let large = NodesRun {
            viewers: 6_000,
            runs: vec![node(1646.57), node(1769.27), node(1767.11)],
            ..small.clone()
        };
        let r = Results {
            nodes: vec![small, large],
            ..Results::default()
        };
        let rows = rows_of(&r);
        assert_eq!(
            row(&rows, measure::NODES_SMALL).status,
            "**met**, 30% below the limit"
        );
        let large = row(&rows, measure::NODES_LARGE);
        assert!(
            large.status.starts_with("not judged: needs 5 cores"),
            "{}",
            large.status
        );
        assert!(
            large.measured.starts_with("122.70 ms"),
            "{}",
            large.measured
        );
    }

    #[test]
    fn the_whole_page_has_every_section_and_the_commands() {
        let (params, m, nx) = (Params::full(), machine(), nchan());
        let page_ctx = Page {
            params: &params,
            machine: &m,
            nchan: &nx,
            note: "",
        };
        let mut r = results();
        r.commands
            .insert(part::MAIN.into(), vec!["nightmarket serve".into()]);
        r.cores = Some(Err(
            "this machine has 2 cores: one for the server and one for the load generator".into(),
        ));
        let text = page(&page_ctx, &r);
        for heading in [
            "# Benchmarks",
            "## Machine",
            "## Method",
            "## Fan-out",
            "### The cost of scale",
            "### Cores",
            "### A Friday night",
            "### Overload",
            "### Across hub nodes",
            "## Idle viewers",
            "### Join storm",
            "## Claims",
            "## Goals",
            "## Commands",
        ] {
            assert!(text.lines().any(|l| l == heading), "no {heading:?}");
        }
        assert!(text.contains("<!-- claims-redis:begin -->"));
        assert!(
            text.contains("| 10,000 | 1.70× | 1.00× | 1.21× |"),
            "ratio table"
        );
        assert!(text.contains("not measured, this machine has 2 cores"));
        assert!(text.contains("```sh\nnightmarket serve\n```"));
        assert!(text.contains("```nginx\nworker_processes 1;\n```"));
        // Every Goals row is a table row of four cells.
        let goals = text.split("## Goals").nth(1).unwrap();
        let table: Vec<_> = goals.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(table.len() > 5);
    }

    #[test]
    fn blocks_are_replaced_or_inserted() {
        let doc = "# B\n\n<!-- nodes:begin -->\nold\n<!-- nodes:end -->\n\n## Idle viewers\n";
        let block = "<!-- nodes:begin -->\nnew\n<!-- nodes:end -->";
        let out = splice_block(doc, "nodes", block, "## Idle viewers").unwrap();
        assert_eq!(
            out,
            "# B\n\n<!-- nodes:begin -->\nnew\n<!-- nodes:end -->\n\n## Idle viewers\n"
        );
        let bare = "# B\n\n## Idle viewers\n";
        let out = splice_block(bare, "nodes", block, "## Idle viewers").unwrap();
        assert_eq!(
            out,
            "# B\n\n<!-- nodes:begin -->\nnew\n<!-- nodes:end -->\n\n## Idle viewers\n"
        );
        assert!(splice_block("<!-- nodes:begin -->\n", "nodes", block, "x").is_err());
        assert!(splice_block("# B\n", "nodes", block, "## Idle viewers").is_err());
    }

    #[test]
    fn goal_rows_are_replaced_in_place_or_added_to_the_table() {
        let doc = "## Goals\n\n| measure | target | measured | status |\n|---|---|---|---|\n\
                   | idle RSS per viewer | ≤ 4 KiB | 5.35 KiB | no |\n\n## Commands\n";
        let idle = Row::new(measure::IDLE, "≤ 4 KiB", "3.9 KiB".into(), "**met**".into());
        let join = Row::new(measure::JOIN, "≤ 1.5×", "1.2×".into(), "**met**".into());
        let out = replace_rows(doc, &[idle.clone(), join.clone()]).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines[4], idle.line());
        assert_eq!(lines[5], join.line());
        assert_eq!(lines[7], "## Commands");
        let twice = format!("{doc}{}\n", idle.line());
        assert!(replace_rows(&twice, &[idle]).is_err());
    }

    #[test]
    fn a_partial_run_says_so_in_the_opening() {
        let doc = "Every figure below comes from that one run. Run the script again.";
        assert!(
            mark_separate_runs(doc)
                .contains("except those a section says come from a separate run. Run")
        );
        // Marking twice changes nothing more.
        assert_eq!(
            mark_separate_runs(&mark_separate_runs(doc)),
            mark_separate_runs(doc)
        );
    }

    #[test]
    fn perf_symbols_and_system_calls() {
        assert_eq!(
            short_symbol("[.] tokio::runtime::task::raw::poll::h0123456789abcdef", 90),
            "tokio::runtime::task::raw::poll"
        );
        assert_eq!(
            short_symbol("  [.] core::cmp::PartialOrd::le", 90),
            "core::cmp::PartialOrd::le"
        );
        assert_eq!(short_symbol("abcdef", 4), "abc…");
        assert_eq!(binary_of("[kernel.kallsyms]"), "kernel");
        assert_eq!(binary_of("redis-check-rdb"), "redis-server");
        let children = "    58.20%     0.00%  [k] do_syscall_64\n\
                        \x20   55.40%     0.10%  [k] __x64_sys_sendto\n\
                        \x20   12.00%     0.00%  [k] do_writev\n\
                        \x20   10.00%     0.00%  [k] __do_sys_sendto\n";
        let (all, calls) = syscalls(children);
        assert_eq!(all, Some(58.2));
        assert_eq!(
            calls,
            vec![(55.4, "sendto".to_owned()), (12.0, "writev".to_owned())]
        );
    }

    #[test]
    fn repeated_commands_are_written_once_and_counted() {
        let c = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            collapse_repeats(&c(&["a", "b", "b", "b", "a", "a", "c"])),
            c(&[
                "a",
                "b",
                "# the command above, 3 times in a row",
                "a",
                "# the command above, 2 times in a row",
                "c"
            ])
        );
        assert!(collapse_repeats(&[]).is_empty());
    }
}
