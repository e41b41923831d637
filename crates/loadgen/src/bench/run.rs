//! What each mode runs, in order, and how the page is written afterwards. Every part records
//! its failures in its results (a failed run shows as "failed: ..." in its row) so the others
//! still run; only a missing binary or an unwritable page stops the benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::goals;
use super::procs::{self, Line, Proc, Procs, free_port, loadavg, redis_cmd};
use super::report::{
    self, Machine, Nchan, NodesRun, Page, ProfileReport, Profiles, Results, SettleRun, key, part,
};
use super::summary::{self, Claims, Counters, Fanout, Floor, Run, Settle};
use super::{BenchArgs, Mode, Params, scaling_cpus};
use crate::stats;

/// Where Debian's nginx module package puts nchan.
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// The claim script's files, under the repository, as the server loads them.
const CLAIM_SCRIPT_DIR: &str = "crates/inventory/src/redis_backend";
/// Every Nightmarket key of a show, in the order the scripts take them as KEYS (see
/// `RedisInventory::keys`), and the default key prefix.
const REDIS_KEY_NAMES: [&str; 10] = [
    "meta", "lineup", "left", "held", "claims", "flash", "log", "events", "mine", "products",
];
const REDIS_PREFIX: &str = "nm:";
/// redis-benchmark replaces each `__rand_int__` with its own number below -r; two of them make
/// a claim id that does not repeat in a run.
const REDIS_RAND_RANGE: &str = "2147483647";
/// How long the other nodes' viewers may take to get their snapshots.
const LISTENERS_READY: Duration = Duration::from_secs(60);
/// perf prints nothing once attached: the load starts after this much.
const PERF_ATTACH: Duration = Duration::from_millis(500);
/// The scaling runs' seller publishes as fast as answers come (one in flight).
const SCALING_RATE: f64 = 1_000.0;
/// How often a condition is polled while the driver waits on it.
const POLL: Duration = Duration::from_millis(100);

/// The run's state: parameters, processes and what the page needs about the machine.
struct Bench {
    p: Params,
    procs: Procs,
    root: PathBuf,
    nchan: Nchan,
    /// Where flame graphs go, and the same path as the page links it.
    flame_dir: PathBuf,
    flame_link: String,
}

/// Removes the run's temporary directory however the run ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let p = if args.quick {
        Params::quick()
    } else {
        Params::full()
    };
    let root = args
        .root
        .canonicalize()
        .with_context(|| format!("no repository at {}", args.root.display()))?;
    let docs_page = root.join("docs/benchmarks.md");
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            root.join("target/bench-quick/benchmarks.md")
        } else {
            docs_page.clone()
        }
    });
    let out = absolute(&out)?;
    if args.quick && out == docs_page {
        bail!("a --quick run never writes docs/benchmarks.md: give another --out");
    }
    let loadgen_bin = std::env::current_exe()?;
    let server_bin = args
        .server_bin
        .clone()
        .unwrap_or_else(|| loadgen_bin.with_file_name("nightmarket"));
    if !server_bin.is_file() {
        bail!(
            "no server binary at {} (build it: cargo build --release -p nightmarket)",
            server_bin.display()
        );
    }
    let work = std::env::temp_dir().join(format!("nightmarket-bench.{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = WorkDir(work.clone());
    let mut procs = Procs::new(work, server_bin, loadgen_bin);
    procs.server_cpus = Some(p.server_cpu.clone());
    procs.loadgen_cpus = Some(p.loadgen_cpu.clone());
    let out_dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut b = Bench {
        nchan: detect_nchan(&mut procs, &args.nchan_note).await,
        p,
        procs,
        root,
        flame_dir: out_dir.join("flamegraphs"),
        flame_link: "flamegraphs".into(),
    };
    let machine = detect_machine(&mut b.procs, &args.profile).await;
    let mut r = Results::default();
    let result = run_mode(&mut b, args.mode, &mut r).await;
    b.procs.shutdown().await;
    result?;
    r.commands = [
        part::MAIN,
        part::REDIS,
        part::NODES,
        part::SETTLEMENT,
        part::PROFILE,
    ]
    .iter()
    .map(|k| (k.to_string(), b.procs.commands(k).to_vec()))
    .collect();
    let page = Page {
        params: &b.p,
        machine: &machine,
        nchan: &b.nchan,
        note: &args.note,
    };
    std::fs::create_dir_all(&out_dir)?;
    let text = if args.mode == Mode::All {
        report::page(&page, &r)
    } else {
        let doc = std::fs::read_to_string(&out).with_context(|| {
            format!(
                "a partial run updates {}, which does not exist",
                out.display()
            )
        })?;
        update(&page, &r, args.mode, &doc, &machine.date)?
    };
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    // The page's directory may not exist yet; its parent does or is made.
    Ok(
        match (
            p.parent().and_then(|d| d.canonicalize().ok()),
            p.file_name(),
        ) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => p,
        },
    )
}

async fn run_mode(b: &mut Bench, mode: Mode, r: &mut Results) -> anyhow::Result<()> {
    match mode {
        Mode::All => {
            main_runs(b, r).await?;
            claims_redis(b, r).await;
            cross_nodes(b, r).await;
            settlement(b, r).await;
            profile(b, r).await;
        }
        Mode::ClaimsRedis => claims_redis(b, r).await,
        Mode::Nodes => cross_nodes(b, r).await,
        Mode::Settlement => settlement(b, r).await,
        Mode::Profile => profile(b, r).await,
    }
    Ok(())
}

/// The page after a partial run: its own block and Goals rows replaced.
fn update(p: &Page, r: &Results, mode: Mode, doc: &str, date: &str) -> anyhow::Result<String> {
    let separate = |what: &str| {
        format!(
            "{what} on {date} by a separate run of `scripts/bench {}`, not in the run above",
            mode_name(mode)
        )
    };
    let rows = report::goal_rows(p, r);
    let doc = match mode {
        Mode::All => unreachable!("the whole page is written anew"),
        Mode::ClaimsRedis => {
            let doc = report::replace_lines(doc, &report::claims_redis_rows(r))?;
            let block = report::claims_redis_block(p, r, &separate("measured"));
            let doc = report::splice_block(&doc, "claims-redis", &block, "## Goals")?;
            report::mark_separate_runs(&report::replace_rows(&doc, &rows)?)
        }
        Mode::Nodes => {
            let block =
                report::nodes_block(p, &r.nodes, r.commands(part::NODES), &separate("Measured"));
            let doc = report::splice_block(doc, "nodes", &block, "## Idle viewers")?;
            report::mark_separate_runs(&report::replace_rows(&doc, &rows)?)
        }
        Mode::Settlement => {
            let Some(s) = &r.settle else {
                bail!("the settlement did not run");
            };
            let block =
                report::settlement_block(p, s, r.commands(part::SETTLEMENT), &separate("Measured"));
            let doc = report::splice_block(doc, "settlement", &block, "## Goals")?;
            report::mark_separate_runs(&report::replace_rows(&doc, &rows)?)
        }
        Mode::Profile => {
            let Some(pr) = &r.profiles else {
                bail!("the profiles did not run");
            };
            let note = format!("Measured on {date} by a separate run of `scripts/bench profile`");
            let block = report::profile_block(p, pr, r.commands(part::PROFILE), &note);
            report::splice_block(doc, "profile", &block, "## Goals")?
        }
    };
    Ok(doc)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::All => "",
        Mode::ClaimsRedis => "claims-redis",
        Mode::Nodes => "nodes",
        Mode::Settlement => "settlement",
        Mode::Profile => "profile",
    }
}

async fn detect_nchan(procs: &mut Procs, note: &str) -> Nchan {
    if !note.is_empty() {
        return Nchan::Skipped(note.to_owned());
    }
    let nginx = stderr_of(&Line::new("nginx").arg("-v")).await;
    let Some(nginx) = nginx.filter(|_| Path::new(NCHAN_MODULE).is_file()) else {
        return Nchan::Skipped(format!(
            "nginx or {NCHAN_MODULE} is missing (scripts/bench installs nginx-light and \
             libnginx-mod-nchan)"
        ));
    };
    let nchan = procs
        .output(&Line::new("dpkg-query").args(["-W", "-f", "${Version}", "libnginx-mod-nchan"]))
        .await
        .unwrap_or_else(|_| "unknown".into());
    Nchan::Ran {
        nginx: nginx
            .trim()
            .trim_start_matches("nginx version: ")
            .to_owned(),
        nchan,
        conf: String::new(),
    }
}

/// The standard error of a command that answers there (`nginx -v`), if it succeeds.
async fn stderr_of(line: &Line) -> Option<String> {
    let out = tokio::process::Command::new(&line.program)
        .args(&line.args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn detect_machine(procs: &mut Procs, profile: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let text =
        |s: anyhow::Result<String>| s.map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    Machine {
        date: text(
            procs
                .output(&Line::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .await,
        ),
        cores: cores(),
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, m)| m.trim().to_owned()),
        memory: format!("{:.1} GiB", mem_kib / 1_048_576.0),
        kernel: text(std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(Into::into)),
        rustc: text(procs.output(&Line::new("rustc").arg("--version")).await),
        profile: profile.to_owned(),
    }
}

/// The machine's cores (all of them, whatever this process is pinned to).
fn cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// The arguments of one `fanout` run.
struct FanoutRun<'a> {
    shows: &'a str,
    viewers: u64,
    sources: &'a str,
    rate: f64,
    duration: f64,
    grace: f64,
    publish: bool,
    pid: u32,
    extra: &'a [&'a str],
}

impl<'a> FanoutRun<'a> {
    /// The main fan-out of the method (`p.viewers` at `p.rate`) on `shows`, measuring `pid`.
    fn main(p: &'a Params, shows: &'a str, pid: u32) -> Self {
        Self {
            shows,
            viewers: p.viewers,
            sources: &p.sources,
            rate: p.rate,
            duration: p.duration,
            grace: p.grace,
            publish: true,
            pid,
            extra: &[],
        }
    }

    fn args(&self, nchan: bool) -> Vec<String> {
        let mut a: Vec<String> = vec!["fanout".into()];
        if nchan {
            a.push("--nchan".into());
        }
        for (k, v) in [
            ("--show", self.shows.to_owned()),
            ("--viewers", self.viewers.to_string()),
            ("--sources", self.sources.to_owned()),
        ] {
            a.push(k.into());
            a.push(v);
        }
        if self.publish {
            a.extend(["--rate".into(), self.rate.to_string()]);
        } else {
            a.extend(["--publish".into(), "false".into()]);
        }
        a.extend([
            "--duration".into(),
            self.duration.to_string(),
            "--grace".into(),
            self.grace.to_string(),
            "--server-pid".into(),
            self.pid.to_string(),
        ]);
        a.extend(self.extra.iter().map(|s| s.to_string()));
        a
    }
}

impl Bench {
    async fn fanout(
        &mut self,
        part: &str,
        addr: &str,
        run: &FanoutRun<'_>,
        nchan: bool,
    ) -> Run<Fanout> {
        let v = self.procs.loadgen(part, addr, &run.args(nchan)).await;
        summary::parse(v)
    }

    /// `setup` on the server at `addr`: a live show with two products; its id and products.
    async fn setup(
        &mut self,
        part: &str,
        addr: &str,
        stock: u64,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let args = ["setup", "--products", "2", "--stock", &stock.to_string()].map(String::from);
        let v = self.procs.loadgen(part, addr, &args).await?;
        let show = v["show_id"]
            .as_str()
            .context("no show_id from setup")?
            .to_owned();
        let products = v["product_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((show, products))
    }

    async fn claims(
        &mut self,
        part: &str,
        addr: &str,
        show: &str,
        product: &str,
        pid: u32,
        extra: &[String],
    ) -> anyhow::Result<Value> {
        let mut args: Vec<String> = [
            "claims",
            "--show",
            show,
            "--product",
            product,
            "--pin",
            "--buyers",
        ]
        .map(String::from)
        .to_vec();
        args.push(self.p.buyers.to_string());
        if !extra.iter().any(|a| a == "--claims-per-buyer") {
            args.extend([
                "--claims-per-buyer".into(),
                self.p.claims_per_buyer.to_string(),
            ]);
        }
        args.extend(extra.iter().cloned());
        args.extend([
            "--sources".into(),
            self.p.sources.clone(),
            "--server-pid".into(),
            pid.to_string(),
        ]);
        self.procs.loadgen(part, addr, &args).await
    }

    async fn node(
        &mut self,
        part: &str,
        name: &str,
        env: &[(&str, String)],
        cpus: Option<&str>,
    ) -> anyhow::Result<(Proc, SocketAddr)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let data = self.procs.work.join(format!("{name}-data"));
        eprintln!("\n== {name} on {addr}");
        let p = self
            .procs
            .nightmarket(part, name, addr, &data, env, cpus)
            .await?;
        Ok((p, addr))
    }
}

/// Fan-out, idle viewers, join storm, cost of scale, Friday night, overload and claims on the
/// embedded server, then the same fan-outs on nginx + nchan.
async fn main_runs(b: &mut Bench, r: &mut Results) -> anyhow::Result<()> {
    let p = b.p.clone();
    let (node, addr) = b.node(part::MAIN, "nightmarket", &[], None).await?;
    let (a, pid) = (addr.to_string(), node.pid);
    let (show, _) = b.setup(part::MAIN, &a, 10_000).await?;
    let base = FanoutRun::main(&p, &show, pid);
    let idle = FanoutRun {
        sources: &p.idle_sources,
        publish: false,
        duration: p.idle_seconds,
        grace: 0.0,
        ..base
    };
    r.fanout.insert(
        key::nm("idle"),
        b.fanout(part::MAIN, &a, &idle, false).await,
    );
    r.fanout
        .insert(key::nm("10k"), b.fanout(part::MAIN, &a, &base, false).await);
    let small = FanoutRun {
        viewers: p.small_viewers,
        ..base
    };
    r.fanout
        .insert(key::nm("2k"), b.fanout(part::MAIN, &a, &small, false).await);
    let join = FanoutRun {
        viewers: p.join_viewers,
        duration: 0.0,
        ..idle
    };
    r.fanout.insert(
        key::nm("join"),
        b.fanout(part::MAIN, &a, &join, false).await,
    );
    for &v in &p.scale_viewers {
        let run = FanoutRun {
            viewers: v,
            rate: p.scale_rate(v),
            ..base
        };
        r.fanout
            .insert(key::scale(v), b.fanout(part::MAIN, &a, &run, false).await);
    }
    match friday_shows(b, &a, p.friday_shows).await {
        Ok(shows) => {
            let one = FanoutRun {
                shows: &shows[0],
                viewers: p.friday_one_viewers,
                rate: p.friday_rate,
                duration: p.friday_duration,
                ..base
            };
            r.fanout.insert(
                key::FRIDAY_ONE.into(),
                b.fanout(part::MAIN, &a, &one, false).await,
            );
            let all = shows.join(",");
            let many = FanoutRun {
                shows: &all,
                viewers: p.friday_viewers,
                ..one
            };
            r.fanout.insert(
                key::FRIDAY_MANY.into(),
                b.fanout(part::MAIN, &a, &many, false).await,
            );
        }
        Err(e) => {
            r.fanout
                .insert(key::FRIDAY_ONE.into(), Err(format!("{e:#}")));
            r.fanout
                .insert(key::FRIDAY_MANY.into(), Err(format!("{e:#}")));
        }
    }
    let overload = FanoutRun {
        viewers: p.overload_viewers,
        rate: p.overload_rate,
        extra: &["--open-loop"],
        ..base
    };
    r.fanout.insert(
        key::OVERLOAD.into(),
        b.fanout(part::MAIN, &a, &overload, false).await,
    );
    r.claims = Some(match b.setup(part::MAIN, &a, p.claim_stock).await {
        Ok((show, products)) => {
            let v = b
                .claims(part::MAIN, &a, &show, &products[0], pid, &[])
                .await;
            summary::parse(v)
        }
        Err(e) => Err(format!("{e:#}")),
    });
    node.stop().await;

    if b.nchan.ran()
        && let Err(e) = nchan_runs(b, r).await
    {
        b.nchan = Nchan::Skipped(format!("nginx + nchan failed: {e:#}"));
    }
    // The latency comparison again at a lower rate where either side saturated.
    let saturated: Vec<(String, u64)> = [("10k", p.viewers), ("2k", p.small_viewers)]
        .into_iter()
        .filter(|(size, _)| {
            let nm = r.fanout.get(&key::nm(size)).and_then(|x| x.as_ref().ok());
            let nx = r.fanout.get(&key::nx(size)).and_then(|x| x.as_ref().ok());
            matches!((nm, nx), (Some(a), Some(b)) if !report::main_run_unsaturated(&p, a, b))
        })
        .map(|(s, v)| (s.to_owned(), v))
        .collect();
    if !saturated.is_empty() && b.nchan.ran() {
        let (node, addr) = b
            .node(part::MAIN, "nightmarket-unsaturated", &[], None)
            .await?;
        let a = addr.to_string();
        let (show, _) = b.setup(part::MAIN, &a, 10_000).await?;
        for (size, viewers) in &saturated {
            let run = FanoutRun {
                shows: &show,
                viewers: *viewers,
                rate: p.unsaturated_rate,
                pid: node.pid,
                ..base
            };
            let k = key::nm(&format!("{size}-unsaturated"));
            r.fanout
                .insert(k, b.fanout(part::MAIN, &a, &run, false).await);
        }
        node.stop().await;
        let (nginx, worker, nx_addr) = start_nchan(b, "nginx-unsaturated").await?;
        for (size, viewers) in &saturated {
            let channel = format!("low{size}");
            let run = FanoutRun {
                shows: &channel,
                viewers: *viewers,
                rate: p.unsaturated_rate,
                pid: worker,
                ..base
            };
            let k = key::nx(&format!("{size}-unsaturated"));
            r.fanout
                .insert(k, b.fanout(part::MAIN, &nx_addr, &run, true).await);
        }
        nginx.stop().await;
    }
    r.cores = Some(cores_runs(b).await);
    Ok(())
}

/// `count` live shows, each with its own seller and two products.
async fn friday_shows(b: &mut Bench, addr: &str, count: u64) -> anyhow::Result<Vec<String>> {
    let mut shows = Vec::new();
    for _ in 0..count {
        shows.push(b.setup(part::MAIN, addr, 10_000).await?.0);
    }
    Ok(shows)
}

async fn nchan_runs(b: &mut Bench, r: &mut Results) -> anyhow::Result<()> {
    let p = b.p.clone();
    let (nginx, worker, a) = start_nchan(b, "nginx").await?;
    let base = FanoutRun::main(&p, "fanout10k", worker);
    let idle = FanoutRun {
        shows: "idle",
        sources: &p.idle_sources,
        publish: false,
        duration: p.idle_seconds,
        grace: 0.0,
        ..base
    };
    r.fanout
        .insert(key::nx("idle"), b.fanout(part::MAIN, &a, &idle, true).await);
    r.fanout
        .insert(key::nx("10k"), b.fanout(part::MAIN, &a, &base, true).await);
    let small = FanoutRun {
        shows: "fanout2k",
        viewers: p.small_viewers,
        ..base
    };
    r.fanout
        .insert(key::nx("2k"), b.fanout(part::MAIN, &a, &small, true).await);
    // Joining the channel the 10k run filled, as Nightmarket's viewers join a show with state.
    let join = FanoutRun {
        viewers: p.join_viewers,
        duration: 0.0,
        ..idle
    };
    let join = FanoutRun {
        shows: "fanout10k",
        ..join
    };
    r.fanout
        .insert(key::nx("join"), b.fanout(part::MAIN, &a, &join, true).await);
    // The Friday night's pattern on nchan, for reference: what many small channels cost a
    // server that keeps no journal and has no seller sessions, against one large channel.
    let one = FanoutRun {
        shows: "friday0",
        viewers: p.friday_one_viewers,
        rate: p.friday_rate,
        duration: p.friday_duration,
        ..base
    };
    r.fanout.insert(
        key::nx(key::FRIDAY_ONE),
        b.fanout(part::MAIN, &a, &one, true).await,
    );
    let channels = (1..=p.friday_shows)
        .map(|i| format!("friday{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let many = FanoutRun {
        shows: &channels,
        viewers: p.friday_viewers,
        ..one
    };
    r.fanout.insert(
        key::nx(key::FRIDAY_MANY),
        b.fanout(part::MAIN, &a, &many, true).await,
    );
    nginx.stop().await;
    Ok(())
}

/// nginx with one worker serving one nchan channel per show id, on the servers' CPU; returns
/// the master, the worker's pid (whose CPU and memory are measured) and its address.
async fn start_nchan(b: &mut Bench, name: &str) -> anyhow::Result<(Proc, u32, String)> {
    let dir = b.procs.work.join(name);
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let conf = nginx_conf(&dir.to_string_lossy(), &addr);
    std::fs::write(dir.join("nginx.conf"), &conf)?;
    if let Nchan::Ran { conf: shown, .. } = &mut b.nchan {
        *shown = conf.replace(dir.to_string_lossy().as_ref(), "$PREFIX");
    }
    let d = dir.to_string_lossy().into_owned();
    let line = Line::new("nginx")
        .args([
            "-c",
            &format!("{d}/nginx.conf"),
            "-p",
            &d,
            "-e",
            &format!("{d}/logs/error.log"),
        ])
        .args(["-g", "daemon off;"])
        .pinned(Some(&b.p.server_cpu));
    b.procs.note_text(
        part::MAIN,
        format!(
            "taskset -c {} nginx -c $PREFIX/nginx.conf -p $PREFIX -e $PREFIX/logs/error.log -g 'daemon off;'",
            b.p.server_cpu
        ),
    );
    eprintln!("\n== nginx + nchan on {addr}");
    let mut master = b.procs.spawn_quiet(name, &line)?;
    let deadline = Instant::now() + procs::START_TIMEOUT;
    let worker = loop {
        if let Some(&w) = procs::children_of(master.pid).first() {
            break w;
        }
        if master.exited() || Instant::now() > deadline {
            bail!("no nginx worker; its log:\n{}", master.log_tail());
        }
        tokio::time::sleep(POLL).await;
    };
    let sock: SocketAddr = addr.parse()?;
    while crate::http::raw(sock, "GET", "/pub/probe", None, None)
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("nginx does not answer on {addr}");
        }
        tokio::time::sleep(POLL).await;
    }
    eprintln!("nginx master {}, worker {worker}", master.pid);
    Ok((master, worker, addr))
}

fn nginx_conf(prefix: &str, addr: &str) -> String {
    format!(
        r"load_module {NCHAN_MODULE};
user root;
worker_processes 1;
worker_rlimit_nofile 40000;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections 30000;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_timeout 65s;
    nchan_shared_memory_size 256M;

    server {{
        listen {addr} backlog=4096;

        location ~ ^/pub/(\w+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
            nchan_message_buffer_length 512;
            nchan_message_timeout 60s;
        }}

        location ~ ^/sub/(\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_websocket_ping_interval 0;
        }}
    }}
}}
"
    )
}

/// Deliveries/s with the server on 1, 2 and all cores but the generator's, where the machine
/// has them.
async fn cores_runs(b: &mut Bench) -> Result<report::CoreRuns, String> {
    let total = cores();
    let sets = scaling_cpus(total)?;
    let p = b.p.clone();
    let generator = (total - 1).to_string();
    let mut runs = Vec::new();
    for (count, cpus) in sets {
        let run = async {
            let name = format!("nightmarket-{count}-cores");
            let (node, addr) = b.node(part::MAIN, &name, &[], Some(&cpus)).await?;
            let a = addr.to_string();
            let saved = b.procs.loadgen_cpus.replace(generator.clone());
            let (show, _) = b.setup(part::MAIN, &a, 10_000).await?;
            let run = FanoutRun {
                shows: &show,
                viewers: p.viewers,
                sources: &p.sources,
                rate: SCALING_RATE,
                duration: p.duration,
                grace: p.grace,
                publish: true,
                pid: node.pid,
                extra: &[],
            };
            let f = b.fanout(part::MAIN, &a, &run, false).await;
            b.procs.loadgen_cpus = saved;
            node.stop().await;
            anyhow::Ok(f)
        };
        runs.push((count, run.await.unwrap_or_else(|e| Err(format!("{e:#}")))));
    }
    Ok(runs)
}

fn redis_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NIGHTMARKET_REDIS_URL", format!("redis://127.0.0.1:{port}")),
        ("NIGHTMARKET_REDIS_PREFIX", REDIS_PREFIX.to_owned()),
        // Recording the claim log into the store is settlement's work, measured on its own.
        ("NIGHTMARKET_ORDERS_IN_SERVE", "false".to_owned()),
    ]
}

/// Redis CPU seconds (user + system) between two tick readings.
fn ticks_s(before: (u64, u64), after: (u64, u64)) -> f64 {
    ((after.0 + after.1).saturating_sub(before.0 + before.1)) as f64 / stats::TICKS_PER_SECOND
}

/// Claims on the Redis inventory, then the peer: redis-benchmark sending the claim script
/// itself (EVALSHA) to the same Redis with the KEYS and ARGV a claim carries.
async fn claims_redis(b: &mut Bench, r: &mut Results) {
    r.redis_loadavg = loadavg();
    let (nm, peer) = match claims_redis_runs(b).await {
        Ok(x) => x,
        Err(e) => (Err(format!("{e:#}")), Err(format!("{e:#}"))),
    };
    r.redis_claims = Some(nm);
    r.peer = Some(peer);
}

async fn claims_redis_runs(b: &mut Bench) -> anyhow::Result<(Run<Claims>, Run<summary::Peer>)> {
    let p = b.p.clone();
    let cpu = p.server_cpu.clone();
    let dir = b.procs.work.join("redis");
    let (redis, port) = b.procs.redis(part::REDIS, Some(&cpu), &dir).await?;
    let (node, addr) = b
        .node(part::REDIS, "nightmarket-redis", &redis_env(port), None)
        .await?;
    let a = addr.to_string();
    let (show, products) = b.setup(part::REDIS, &a, p.claim_stock).await?;
    let product = products.first().context("setup made no product")?.clone();
    let t0 = stats::cpu_ticks(redis.pid)?;
    let v = b
        .claims(part::REDIS, &a, &show, &product, node.pid, &[])
        .await;
    let t1 = stats::cpu_ticks(redis.pid)?;
    let v = v.map(|mut v| {
        v["redis_cpu_s"] = ticks_s(t0, t1).into();
        v
    });
    let nm = summary::parse(v);
    // The peer then has Redis to itself, as the claims had it with the server beside it.
    node.stop().await;
    let peer = peer_run(b, port, redis.pid, &show, &product)
        .await
        .map_err(|e| format!("{e:#}"));
    redis.stop().await;
    Ok((nm, peer))
}

async fn peer_run(
    b: &mut Bench,
    port: u16,
    redis_pid: u32,
    show: &str,
    product: &str,
) -> anyhow::Result<summary::Peer> {
    let p = b.p.clone();
    // The claim script as the server loads it (prelude, newline, claims.lua); Redis must already
    // hold it under that SHA, or the peer would not run what the server runs.
    let dir = b.root.join(CLAIM_SCRIPT_DIR);
    let script = format!(
        "{}\n{}",
        std::fs::read_to_string(dir.join("prelude.lua"))?,
        std::fs::read_to_string(dir.join("claims.lua"))?
    );
    let file = b.procs.work.join("claim-script.lua");
    std::fs::write(&file, &script)?;
    let sha = b
        .procs
        .output(&Line::new("sha1sum").arg(file.to_string_lossy()))
        .await?;
    let sha = sha.split_whitespace().next().unwrap_or_default().to_owned();
    if redis_cmd(port, &["SCRIPT", "EXISTS", &sha]).await? != "1" {
        bail!("Redis has no script {sha}: the server loads another claim script");
    }
    let keys: Vec<String> = REDIS_KEY_NAMES
        .iter()
        .map(|k| format!("{REDIS_PREFIX}{{{show}}}:{k}"))
        .collect();
    // The lineup entry is `allotted:limit:list_price`; a claim carries the price it saw.
    let entry = redis_cmd(port, &["HGET", &keys[1], product]).await?;
    let price = entry
        .split(':')
        .nth(2)
        .context("no list price in the lineup")?
        .to_owned();
    let counters = |port| async move {
        let accepted = redis_cmd(port, &["HGET", &keys_meta(show), "accepted"]).await?;
        let left = redis_cmd(port, &["HGET", &keys_left(show), product]).await?;
        anyhow::Ok(Counters {
            accepted: accepted.parse().unwrap_or(0),
            left: left.parse().unwrap_or(0),
        })
    };
    let before = counters(port).await?;
    let now = stats::now_unix_us() / 1000;
    let sent = p.buyers * p.claims_per_buyer;
    // ARGV: claim id (unique: two random numbers), buyer (a new one per claim, so no buyer
    // limit applies), product, quantity 1, the price seen, now.
    let line = Line::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &p.buyers.to_string(),
        ])
        .args([
            "-n",
            &sent.to_string(),
            "-r",
            REDIS_RAND_RANGE,
            "--csv",
            "evalsha",
            &sha,
        ])
        .arg(keys.len().to_string())
        .args(keys.iter().cloned())
        .args([
            "rb-__rand_int__-__rand_int__",
            "rb-__rand_int__",
            product,
            "1",
            &price,
        ])
        .arg(now.to_string())
        .pinned(Some(&p.loadgen_cpu));
    b.procs.note(part::REDIS, &line);
    eprintln!("\n== redis-benchmark: the claim script, raw");
    let t0 = stats::cpu_ticks(redis_pid)?;
    let csv = b.procs.output(&line).await?;
    let t1 = stats::cpu_ticks(redis_pid)?;
    let after = counters(port).await?;
    eprintln!("{csv}");
    summary::peer_figures(
        &csv,
        sent,
        before,
        after,
        p.claim_stock as i64,
        ticks_s(t0, t1),
    )
}

fn keys_meta(show: &str) -> String {
    format!("{REDIS_PREFIX}{{{show}}}:meta")
}

fn keys_left(show: &str) -> String {
    format!("{REDIS_PREFIX}{{{show}}}:left")
}

/// The CPUs of the nodes, Redis and the generators across nodes, and how the page says it:
/// on a machine with a core for each, each its own; otherwise the servers share one.
fn node_layout(p: &Params, total: usize) -> (Vec<String>, String, String, String) {
    if total >= goals::cores_for_nodes(p.nodes) {
        let nodes = (0..p.nodes).map(|i| i.to_string()).collect();
        let redis = p.nodes.to_string();
        let gens = format!("{}-{}", p.nodes + 1, total - 1);
        let text = format!("node i on CPU i, Redis on CPU {redis}, the generators on CPUs {gens}");
        (nodes, redis, gens, text)
    } else {
        let nodes = vec![p.server_cpu.clone(); p.nodes];
        let text = format!(
            "all of them and Redis pinned to CPU {}, the generators to CPU {} (this machine has \
             {total} cores)",
            p.server_cpu, p.loadgen_cpu
        );
        (nodes, p.server_cpu.clone(), p.loadgen_cpu.clone(), text)
    }
}

async fn cross_nodes(b: &mut Bench, r: &mut Results) {
    let configs = b.p.node_configs.clone();
    for (viewers, rate) in configs {
        let loadavg = loadavg();
        let (_, _, _, layout) = node_layout(&b.p, cores());
        let runs = match nodes_run(b, viewers, rate).await {
            Ok(runs) => runs,
            Err(e) => vec![Err(format!("{e:#}"))],
        };
        r.nodes.push(NodesRun {
            viewers,
            rate,
            layout,
            loadavg,
            runs,
        });
    }
}

async fn nodes_run(b: &mut Bench, viewers: u64, rate: f64) -> anyhow::Result<Vec<Run<Fanout>>> {
    let p = b.p.clone();
    let (node_cpus, redis_cpu, gen_cpus, _) = node_layout(&p, cores());
    let dir = b.procs.work.join(format!("nodes-{viewers}-redis"));
    let (redis, port) = b.procs.redis(part::NODES, Some(&redis_cpu), &dir).await?;
    let mut nodes = Vec::new();
    // One data directory: the nodes share the catalog, as they would share PostgreSQL.
    let data = b.procs.work.join(format!("nodes-{viewers}-data"));
    for (i, cpus) in node_cpus.iter().enumerate() {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        eprintln!("\n== node {i} on {addr}");
        let name = format!("node-{viewers}-{i}");
        let node = b
            .procs
            .nightmarket(
                part::NODES,
                &name,
                addr,
                &data,
                &redis_env(port),
                Some(cpus),
            )
            .await?;
        nodes.push((node, addr.to_string()));
    }
    let saved = b.procs.loadgen_cpus.replace(gen_cpus);
    let (show, _) = b.setup(part::NODES, &nodes[0].1, 10_000).await?;
    let mut listeners = Vec::new();
    for (i, (node, addr)) in nodes.iter().enumerate().skip(1) {
        let run = FanoutRun {
            shows: &show,
            viewers,
            sources: &p.node_sources[i % p.node_sources.len()],
            rate,
            duration: p.duration + p.node_listen_margin,
            grace: p.grace,
            publish: false,
            pid: node.pid,
            extra: &[],
        };
        let line = b.procs.loadgen_line(addr, &run.args(false));
        let name = format!("nodes-{viewers}-listener-{i}");
        listeners.push(b.procs.spawn(part::NODES, &name, &line)?);
    }
    // The listeners start their window before the publisher connects its own viewers.
    let deadline = Instant::now() + LISTENERS_READY;
    for l in &mut listeners {
        while !l.log_tail().contains("viewers have their snapshot") {
            if l.exited() || Instant::now() > deadline {
                bail!("{}'s viewers did not connect:\n{}", l.name, l.log_tail());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let publish = FanoutRun {
        shows: &show,
        viewers,
        sources: &p.node_sources[0],
        rate,
        duration: p.duration,
        grace: p.grace,
        publish: true,
        pid: nodes[0].0.pid,
        extra: &[],
    };
    let mut runs = vec![
        b.fanout(part::NODES, &nodes[0].1.clone(), &publish, false)
            .await,
    ];
    for l in listeners {
        // The summary is the last line the generator prints, once it has exited.
        let (status, log) = l.finish().await;
        runs.push(match status {
            Ok(s) if s.success() => summary::parse(procs::last_json(&log)),
            Ok(s) => Err(format!("nightmarket-loadgen exited with {s}")),
            Err(e) => Err(format!("{e:#}")),
        });
    }
    b.procs.loadgen_cpus = saved;
    for (node, _) in nodes {
        node.stop().await;
    }
    redis.stop().await;
    Ok(runs)
}

/// Where initdb and pg_ctl are: Debian keeps them under /usr/lib/postgresql/<version>/bin.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// A throwaway PostgreSQL cluster on a free port; its URL, and `psql`'s line to it.
async fn start_postgres(b: &mut Bench) -> anyhow::Result<String> {
    let bin = pg_bin().context("no PostgreSQL server (initdb) under /usr/lib/postgresql")?;
    let work = b.procs.work.clone();
    let pg = work.join("pg");
    std::fs::create_dir_all(&pg)?;
    let data = pg.join("data");
    // initdb and pg_ctl refuse to run as root: then they run as the postgres user.
    let root = b.procs.output(&Line::new("id").arg("-u")).await?.trim() == "0";
    let as_pg = |line: Line| -> Line {
        if root {
            Line::new("runuser")
                .args(["-u", "postgres", "--", &line.program])
                .args(line.args)
        } else {
            line
        }
    };
    if root {
        if b.procs
            .output(&Line::new("id").args(["-u", "postgres"]))
            .await
            .is_err()
        {
            b.procs
                .output(&Line::new("useradd").args([
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "postgres",
                ]))
                .await?;
        }
        // The server's user must reach its directory inside ours.
        b.procs
            .output(&Line::new("chmod").args(["711", &work.to_string_lossy()]))
            .await?;
        b.procs
            .output(&Line::new("chown").args(["postgres:", &pg.to_string_lossy()]))
            .await?;
    }
    let port = free_port()?;
    let initdb = Line::new(bin.join("initdb").to_string_lossy())
        .args([
            "-D",
            &data.to_string_lossy(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ])
        .args(["--encoding=UTF8", "--locale=C"]);
    b.procs.output(&as_pg(initdb)).await?;
    let conf = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n",
        pg.display()
    );
    let mut existing = std::fs::read_to_string(data.join("postgresql.conf"))?;
    existing.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), existing)?;
    b.procs.note_text(
        part::SETTLEMENT,
        "initdb -D $TMP/pg/data -A trust -U postgres --encoding=UTF8 --locale=C && pg_ctl start -D $TMP/pg/data",
    );
    let pg_ctl = bin.join("pg_ctl").to_string_lossy().into_owned();
    let d = data.to_string_lossy().into_owned();
    let start = Line::new(&pg_ctl)
        .args(["start", "-w", "-t", "60", "-D", &d, "-l"])
        .arg(pg.join("postgres.log").to_string_lossy());
    b.procs.output(&as_pg(start)).await?;
    b.procs.on_exit(as_pg(Line::new(&pg_ctl).args([
        "stop",
        "-D",
        &d,
        "-m",
        "immediate",
        "-w",
    ])));
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    b.procs
        .output(&psql(&url, "CREATE DATABASE nightmarket"))
        .await?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/nightmarket"))
}

fn psql(url: &str, sql: &str) -> Line {
    Line::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", url, "-c", sql])
}

/// A night of claims on the embedded inventory whose store is a throwaway PostgreSQL; the
/// show is closed, the server stopped, and `nightmarket settle` records and settles it, twice.
async fn settlement(b: &mut Bench, r: &mut Results) {
    let loadavg = loadavg();
    r.settle = Some(match settlement_runs(b).await {
        Ok(mut s) => {
            s.loadavg = loadavg;
            s
        }
        Err(e) => {
            let e = format!("{e:#}");
            SettleRun {
                loadavg,
                night: Err(e.clone()),
                first: Err(e.clone()),
                rerun: Err(e.clone()),
                floor: Err(e),
                orders_db: None,
                entries_db: None,
            }
        }
    });
}

async fn settlement_runs(b: &mut Bench) -> anyhow::Result<SettleRun> {
    let p = b.p.clone();
    let url = start_postgres(b).await?;
    let env = [
        ("NIGHTMARKET_DATABASE_URL", url.clone()),
        // The figure is the whole log recorded and settled after the close, the most
        // settlement ever has to do at once.
        ("NIGHTMARKET_ORDERS_IN_SERVE", "false".to_owned()),
    ];
    let (node, addr) = b.node(part::SETTLEMENT, "settle", &env, None).await?;
    let a = addr.to_string();
    let (show, products) = b.setup(part::SETTLEMENT, &a, p.claim_stock).await?;
    let extra: Vec<String> = [
        ("--rounds", p.settle_rounds),
        ("--claims-per-buyer", p.settle_claims_per_buyer),
        ("--cancel-every", p.settle_cancel_every),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect();
    let saved = b.p.buyers;
    b.p.buyers = p.settle_connections;
    let night = summary::parse(
        b.claims(part::SETTLEMENT, &a, &show, &products[0], node.pid, &extra)
            .await,
    );
    b.p.buyers = saved;
    let close = b
        .procs
        .loadgen_line(&a, &["close".into(), "--show".into(), show.clone()]);
    b.procs.note(part::SETTLEMENT, &close);
    b.procs.output(&close).await?;
    node.stop().await;
    let data = b.procs.work.join("settle-data");
    let first = settle_run(b, &data, &url, &show).await;
    let rerun = settle_run(b, &data, &url, &show).await;
    let count = |sql: &str| psql(&url, sql);
    let orders = b
        .procs
        .output(&count(&format!(
            "SELECT COUNT(*), COALESCE(SUM(units), 0) FROM orders WHERE show_id = '{show}'"
        )))
        .await
        .ok()
        .and_then(|s| {
            let mut it = s.split('|').map(|x| x.trim().parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        });
    let entries = b
        .procs
        .output(&count(&format!(
            "SELECT COUNT(*) FROM claim_log_entries WHERE show_id = '{show}'"
        )))
        .await
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let floor = copy_floor(b, &url, &show)
        .await
        .map_err(|e| format!("{e:#}"));
    Ok(SettleRun {
        loadavg: String::new(),
        night,
        first,
        rerun,
        floor,
        orders_db: orders,
        entries_db: entries,
    })
}

async fn settle_run(b: &mut Bench, data: &Path, url: &str, show: &str) -> Run<Settle> {
    let line = Line::new(b.procs.server_bin.to_string_lossy())
        .env("NIGHTMARKET_DATA_DIR", data.to_string_lossy())
        .env("NIGHTMARKET_DATABASE_URL", url)
        .env("NIGHTMARKET_LOG", "warn")
        .args(["settle", show]);
    b.procs.note(part::SETTLEMENT, &line);
    let t0 = Instant::now();
    let out = b.procs.output(&line).await.map_err(|e| format!("{e:#}"))?;
    let wall = t0.elapsed().as_secs_f64() * 1000.0;
    let mut v: Value =
        serde_json::from_str(&out).map_err(|e| format!("settle printed no JSON: {e}"))?;
    v["wall_ms"] = wall.into();
    summary::parse(Ok(v))
}

/// The floor: the same rows, out to CSV and back in with COPY, into a table with the same
/// columns, constraints and indexes.
async fn copy_floor(b: &mut Bench, url: &str, show: &str) -> anyhow::Result<Floor> {
    let csv = b.procs.work.join("settle-log.csv");
    let c = csv.to_string_lossy().into_owned();
    let sql = |s: String| psql(url, &s);
    b.procs
        .output(&sql(format!("\\copy (SELECT * FROM claim_log_entries WHERE show_id = '{show}') TO '{c}' WITH (FORMAT csv)")))
        .await?;
    b.procs
        .output(&sql(
            "CREATE TABLE copy_floor (LIKE claim_log_entries INCLUDING ALL)".into(),
        ))
        .await?;
    b.procs.note_text(
        part::SETTLEMENT,
        "psql $PG_URL -c '\\copy copy_floor FROM log.csv WITH (FORMAT csv)'",
    );
    let t0 = Instant::now();
    b.procs
        .output(&sql(format!(
            "\\copy copy_floor FROM '{c}' WITH (FORMAT csv)"
        )))
        .await?;
    let copy_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let rows = b
        .procs
        .output(&sql("SELECT COUNT(*) FROM copy_floor".into()))
        .await?;
    let version = b.procs.output(&sql("SHOW server_version".into())).await?;
    let csv_bytes = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&csv);
    Ok(Floor {
        copy_ms,
        rows: rows.trim().parse().unwrap_or(0),
        csv_bytes,
        server_version: version.trim().to_owned(),
    })
}

/// perf samples of the servers while the loads whose goals are furthest off run again.
async fn profile(b: &mut Bench, r: &mut Results) {
    let mut pr = Profiles {
        loadavg: loadavg(),
        ..Profiles::default()
    };
    if let Err(e) = profile_runs(b, &mut pr).await {
        eprintln!("bench: profiling failed: {e:#}");
        for k in [
            "nm-fanout",
            "nx-fanout",
            "redis-claims-server",
            "redis-claims-redis",
        ] {
            pr.reports
                .entry(k.into())
                .or_insert_with(|| Err(format!("{e:#}")));
        }
    }
    r.profiles = Some(pr);
}

/// A perf recording attached to one process.
struct Recording {
    name: String,
    title: String,
    proc: Proc,
    data: PathBuf,
}

impl Bench {
    fn perf(&mut self, name: &str, title: &str, pid: u32) -> anyhow::Result<Recording> {
        let data = self.procs.work.join(format!("profile-{name}.data"));
        let line = Line::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                &self.p.profile_hz.to_string(),
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(data.to_string_lossy());
        let proc = self.procs.spawn_quiet(&format!("perf-{name}"), &line)?;
        Ok(Recording {
            name: name.into(),
            title: title.into(),
            proc,
            data,
        })
    }

    /// Stops a recording and reads it: perf's reports and a flame graph.
    async fn finish(&mut self, rec: Recording, pr: &mut Profiles) {
        procs::signal(rec.proc.pid, "INT").await;
        let _ = rec.proc.wait().await;
        let data = rec.data.to_string_lossy().into_owned();
        let report = |extra: &[&str]| {
            Line::new("perf")
                .args(["report", "-i", &data, "--stdio"])
                .args(extra.iter().copied())
        };
        let reports = async {
            Ok::<_, anyhow::Error>(ProfileReport {
                dso: self
                    .procs
                    .output(&report(&["--no-children", "--sort", "dso", "-g", "none"]))
                    .await?,
                symbols: self
                    .procs
                    .output(&report(&[
                        "--no-children",
                        "--sort",
                        "dso,sym",
                        "-g",
                        "none",
                        "--percent-limit",
                        "0.5",
                    ]))
                    .await?,
                children: self
                    .procs
                    .output(&report(&[
                        "--children",
                        "--sort",
                        "sym",
                        "-g",
                        "none",
                        "--percent-limit",
                        "1",
                    ]))
                    .await?,
            })
        };
        pr.reports.insert(
            rec.name.clone(),
            reports.await.map_err(|e| format!("{e:#}")),
        );
        let script = self
            .procs
            .output(&Line::new("perf").args(["script", "-i", &data]))
            .await;
        let drawn = script.and_then(|s| super::flame::svg(s.as_bytes(), &rec.title));
        match drawn {
            Ok(svg) => {
                let file = format!("{}.svg", rec.name);
                let written = std::fs::create_dir_all(&self.flame_dir)
                    .and_then(|()| std::fs::write(self.flame_dir.join(&file), svg));
                match written {
                    Ok(()) => pr
                        .svgs
                        .push((rec.title.clone(), format!("{}/{file}", self.flame_link))),
                    Err(e) => eprintln!("bench: writing the flame graph {file}: {e}"),
                }
            }
            Err(e) => eprintln!("bench: no flame graph for {}: {e:#}", rec.name),
        }
        let _ = std::fs::remove_file(&rec.data);
    }
}

async fn profile_runs(b: &mut Bench, pr: &mut Profiles) -> anyhow::Result<()> {
    if b.procs
        .output(&Line::new("perf").arg("--version"))
        .await
        .is_err()
    {
        bail!("perf is not installed (scripts/bench installs linux-perf)");
    }
    let p = b.p.clone();
    let (node, addr) = b
        .node(part::PROFILE, "profile-nightmarket", &[], None)
        .await?;
    let a = addr.to_string();
    let (show, _) = b.setup(part::PROFILE, &a, 10_000).await?;
    let run = FanoutRun::main(&p, &show, node.pid);
    b.procs.note_text(
        part::PROFILE,
        format!("perf record -F {} -g -p $SERVER_PID &", p.profile_hz),
    );
    let rec = b.perf("nm-fanout", "Nightmarket, fan-out", node.pid)?;
    tokio::time::sleep(PERF_ATTACH).await;
    let f = b.fanout(part::PROFILE, &a, &run, false).await;
    b.finish(rec, pr).await;
    pr.fanouts.insert("nm-fanout".into(), f);
    node.stop().await;

    if b.nchan.ran() {
        let (nginx, worker, nx) = start_nchan(b, "profile-nginx").await?;
        let run = FanoutRun {
            shows: "fanout10k",
            pid: worker,
            ..run
        };
        b.procs.note_text(
            part::PROFILE,
            format!("perf record -F {} -g -p $WORKER_PID &", p.profile_hz),
        );
        let rec = b.perf("nx-fanout", "nginx + nchan worker, fan-out", worker)?;
        tokio::time::sleep(PERF_ATTACH).await;
        let f = b.fanout(part::PROFILE, &nx, &run, true).await;
        b.finish(rec, pr).await;
        pr.fanouts.insert("nx-fanout".into(), f);
        nginx.stop().await;
    }

    let cpu = p.server_cpu.clone();
    let dir = b.procs.work.join("profile-redis");
    let (redis, port) = b.procs.redis(part::PROFILE, Some(&cpu), &dir).await?;
    let (node, addr) = b
        .node(
            part::PROFILE,
            "profile-nightmarket-redis",
            &redis_env(port),
            None,
        )
        .await?;
    let a = addr.to_string();
    let (show, products) = b.setup(part::PROFILE, &a, p.claim_stock).await?;
    b.procs.note_text(
        part::PROFILE,
        format!(
            "perf record -F {0} -g -p $SERVER_PID & perf record -F {0} -g -p $REDIS_PID &",
            p.profile_hz
        ),
    );
    let server = b.perf(
        "redis-claims-server",
        "Nightmarket, claims on the Redis inventory",
        node.pid,
    )?;
    let redis_rec = b.perf(
        "redis-claims-redis",
        "redis-server, under those claims",
        redis.pid,
    )?;
    tokio::time::sleep(PERF_ATTACH).await;
    let _ = b
        .claims(part::PROFILE, &a, &show, &products[0], node.pid, &[])
        .await;
    b.finish(server, pr).await;
    b.finish(redis_rec, pr).await;
    node.stop().await;
    redis.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_share_a_core_unless_each_has_one() {
        let p = Params::full();
        let (nodes, redis, gens, text) = node_layout(&p, 2);
        assert_eq!(nodes, vec!["0", "0", "0"]);
        assert_eq!((redis.as_str(), gens.as_str()), ("0", "1"));
        assert!(text.contains("this machine has 2 cores"), "{text}");
        let (nodes, redis, gens, _) = node_layout(&p, 8);
        assert_eq!(nodes, vec!["0", "1", "2"]);
        assert_eq!((redis.as_str(), gens.as_str()), ("3", "4-7"));
    }

    #[test]
    fn fanout_arguments() {
        let run = FanoutRun {
            shows: "a,b",
            viewers: 40,
            sources: "127.0.0.2",
            rate: 2.0,
            duration: 20.0,
            grace: 2.0,
            publish: true,
            pid: 7,
            extra: &["--open-loop"],
        };
        assert_eq!(
            run.args(false).join(" "),
            "fanout --show a,b --viewers 40 --sources 127.0.0.2 --rate 2 --duration 20 --grace 2 \
             --server-pid 7 --open-loop"
        );
        let idle = FanoutRun {
            publish: false,
            ..run
        };
        assert!(
            idle.args(true)
                .join(" ")
                .starts_with("fanout --nchan --show a,b")
        );
        assert!(idle.args(true).join(" ").contains("--publish false"));
    }

    #[test]
    fn the_nginx_configuration_loads_nchan_and_listens_where_asked() {
        let conf = nginx_conf("/tmp/x", "127.0.0.1:4000");
        assert!(conf.starts_with(&format!("load_module {NCHAN_MODULE};")));
        assert!(conf.contains("listen 127.0.0.1:4000 backlog=4096;"));
        assert!(conf.contains("location ~ ^/sub/(\\w+)$ {"));
    }
}
