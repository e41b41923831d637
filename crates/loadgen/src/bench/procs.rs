//! The processes a benchmark starts: Nightmarket nodes, the load generator, and the peers
//! (redis-server, nginx + nchan, PostgreSQL, perf), each pinned to its CPUs with `taskset`.
//! Every child is registered in [`Procs`] and stopped when it is dropped, whatever happened,
//! and every command is kept, as a reader could type it, for the page's command lists.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::http;

/// Longest a server may take to answer its readiness probe after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a stopped process may take to exit on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness is polled while a process starts.
const POLL: Duration = Duration::from_millis(100);

/// A port on 127.0.0.1 that nothing listens on right now (for peers that cannot take port 0).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends `signal` (a name such as `TERM` or `INT`) to a process we started.
pub async fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// One command line: environment, program and arguments, shown with `$TMP` for the run's
/// temporary directory.
#[derive(Debug, Clone, Default)]
pub struct Line {
    pub env: Vec<(String, String)>,
    pub program: String,
    pub args: Vec<String>,
}

impl Line {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Runs pinned to `cpus` (a `taskset -c` list) when given.
    pub fn pinned(self, cpus: Option<&str>) -> Self {
        match cpus {
            None => self,
            Some(cpus) => {
                let mut args = vec!["-c".to_owned(), cpus.to_owned(), self.program];
                args.extend(self.args);
                Self {
                    env: self.env,
                    program: "taskset".into(),
                    args,
                }
            }
        }
    }

    /// As a reader would type it: the temporary directory as `$TMP`, the binaries by name,
    /// words with shell characters quoted.
    pub fn shown(&self, work: &Path, bins: &[(&Path, &str)]) -> String {
        let work = work.to_string_lossy();
        let show = |w: &str| {
            let mut w = w.replace(work.as_ref(), "$TMP");
            for (path, name) in bins {
                if w == path.to_string_lossy() {
                    w = (*name).to_owned();
                }
            }
            quote(&w)
        };
        let env = self.env.iter().map(|(k, v)| format!("{k}={}", show(v)));
        let words = std::iter::once(show(&self.program)).chain(self.args.iter().map(|a| show(a)));
        env.chain(words).collect::<Vec<_>>().join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }
}

/// Quotes a word for a POSIX shell when it needs it; `$TMP`, `$PREFIX` and the like stay
/// readable as variables.
pub fn quote(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+{}$".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// A child process of the benchmark.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Whether it has exited (then its log says why).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        if self.exited() {
            return;
        }
        signal(self.pid, "TERM").await;
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Waits for it to exit on its own.
    pub async fn wait(mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(self.child.wait().await?)
    }

    /// Waits for it to exit on its own; its exit status and its whole log.
    pub async fn finish(mut self) -> (anyhow::Result<std::process::ExitStatus>, String) {
        let status = self.child.wait().await.map_err(Into::into);
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }
}

/// What the benchmark runs with: the binaries, its temporary directory, and the commands run
/// so far, listed per section of the page.
pub struct Procs {
    pub work: PathBuf,
    pub server_bin: PathBuf,
    pub loadgen_bin: PathBuf,
    /// Where `setup`, `fanout` and `claims` run, and where the servers run.
    pub loadgen_cpus: Option<String>,
    pub server_cpus: Option<String>,
    commands: BTreeMap<String, Vec<String>>,
    /// Processes that run detached (PostgreSQL's pg_ctl) and how to stop them.
    detached: Vec<Line>,
}

impl Procs {
    pub fn new(work: PathBuf, server_bin: PathBuf, loadgen_bin: PathBuf) -> Self {
        Self {
            work,
            server_bin,
            loadgen_bin,
            loadgen_cpus: None,
            server_cpus: None,
            commands: BTreeMap::new(),
            detached: Vec::new(),
        }
    }

    /// Lists `line` under `section` of the page and on the terminal.
    pub fn note(&mut self, section: &str, line: &Line) {
        let bins = [
            (self.server_bin.as_path(), "nightmarket"),
            (self.loadgen_bin.as_path(), "nightmarket-loadgen"),
        ];
        let shown = line.shown(&self.work, &bins);
        eprintln!("\n-- {section}: {shown}");
        self.commands
            .entry(section.to_owned())
            .or_default()
            .push(shown);
    }

    /// Lists a line as given (for commands shown differently from how they run).
    pub fn note_text(&mut self, section: &str, text: impl Into<String>) {
        self.commands
            .entry(section.to_owned())
            .or_default()
            .push(text.into());
    }

    pub fn commands(&self, section: &str) -> &[String] {
        self.commands.get(section).map_or(&[], Vec::as_slice)
    }

    /// Starts `line` in the background, its output in `$TMP/<name>.log`.
    pub fn spawn(&mut self, section: &str, name: &str, line: &Line) -> anyhow::Result<Proc> {
        self.note(section, line);
        self.spawn_quiet(name, line)
    }

    /// Like [`Procs::spawn`], without listing the command.
    pub fn spawn_quiet(&mut self, name: &str, line: &Line) -> anyhow::Result<Proc> {
        let log = self.work.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = line
            .command()
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", line.program))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child,
            log,
        })
    }

    /// Runs `line` to its end and returns its standard output; fails on a non-zero exit.
    pub async fn output(&mut self, line: &Line) -> anyhow::Result<String> {
        self.run(line, false).await
    }

    /// Like [`Procs::output`]; with `report`, the program's standard error (the generator's
    /// human report) goes to the terminal as it comes.
    async fn run(&mut self, line: &Line, report: bool) -> anyhow::Result<String> {
        let stderr = if report {
            Stdio::inherit()
        } else {
            Stdio::piped()
        };
        let out = line
            .command()
            .stdout(Stdio::piped())
            .stderr(stderr)
            .output()
            .await
            .with_context(|| format!("running {}", line.program))?;
        if !out.status.success() {
            bail!(
                "{} exited with {}: {}",
                line.program,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A Nightmarket node on `addr` with the benchmark's limits, extra environment `env`,
    /// pinned to `cpus` (default: the servers' CPUs), ready once `/readyz` answers.
    pub async fn nightmarket(
        &mut self,
        section: &str,
        name: &str,
        addr: SocketAddr,
        data: &Path,
        env: &[(&str, String)],
        cpus: Option<&str>,
    ) -> anyhow::Result<Proc> {
        std::fs::create_dir_all(data)?;
        let mut line = Line::new(self.server_bin.to_string_lossy())
            .env("NIGHTMARKET_LISTEN", addr.to_string())
            .env("NIGHTMARKET_DATA_DIR", data.to_string_lossy());
        for (k, v) in env {
            line = line.env(k, v.clone());
        }
        // Sellers and buyers send far faster than the default per-connection rate limit.
        let line = line
            .env("NIGHTMARKET_LIMITS_MESSAGES_PER_SECOND", "1000000")
            .env("NIGHTMARKET_LIMITS_MESSAGE_BURST", "1000000")
            .env("NIGHTMARKET_LOG", "warn")
            .pinned(cpus.or(self.server_cpus.as_deref()))
            .arg("serve");
        let mut p = self.spawn(section, name, &line)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http::raw(addr, "GET", "/readyz", None, None).await {
                return Ok(p);
            }
            if p.exited() {
                bail!("{name} exited; its log:\n{}", p.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} not ready within {START_TIMEOUT:?}; its log:\n{}",
                    p.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A redis-server without persistence on a free port, pinned to `cpus`; returns it and
    /// its port once it answers PING.
    pub async fn redis(
        &mut self,
        section: &str,
        cpus: Option<&str>,
        dir: &Path,
    ) -> anyhow::Result<(Proc, u16)> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let line = Line::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.to_string_lossy())
            .pinned(cpus);
        let mut p = self.spawn(section, "redis", &line)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while redis_cmd(port, &["PING"]).await.ok().as_deref() != Some("PONG") {
            if p.exited() || Instant::now() > deadline {
                bail!("redis-server did not answer; its log:\n{}", p.log_tail());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok((p, port))
    }

    /// Runs the load generator against `addr` (on the generator's CPUs) and returns its JSON
    /// summary, the last line of its output.
    pub async fn loadgen(
        &mut self,
        section: &str,
        addr: &str,
        args: &[String],
    ) -> anyhow::Result<Value> {
        let line = self.loadgen_line(addr, args);
        self.note(section, &line);
        let out = self.run(&line, true).await?;
        last_json(&out)
    }

    pub fn loadgen_line(&self, addr: &str, args: &[String]) -> Line {
        Line::new(self.loadgen_bin.to_string_lossy())
            .args(["--addr", addr, "--json"])
            .args(args.iter().cloned())
            .pinned(self.loadgen_cpus.as_deref())
    }

    /// Registers a detached process and the command that stops it when the run ends.
    pub fn on_exit(&mut self, stop: Line) {
        self.detached.push(stop);
    }

    /// Stops detached processes (children registered as [`Proc`] stop when dropped).
    pub async fn shutdown(&mut self) {
        for line in std::mem::take(&mut self.detached) {
            let _ = self.output(&line).await;
        }
    }
}

/// The JSON summary on the last non-empty line of a generator's output.
pub fn last_json(out: &str) -> anyhow::Result<Value> {
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("no JSON summary in {last:?}"))
}

/// One Redis command over RESP (no client library for the few the benchmark sends); returns a
/// simple string, bulk string or integer reply as text, or "" for a nil reply.
pub async fn redis_cmd(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let n = tokio::time::timeout(START_TIMEOUT, s.read(&mut chunk)).await??;
        if n == 0 || Instant::now() > deadline {
            bail!("redis closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(reply) = parse_resp(&buf)? {
            return Ok(reply);
        }
    }
}

/// A complete RESP reply of one value as text (`None` while more bytes are needed).
pub fn parse_resp(buf: &[u8]) -> anyhow::Result<Option<String>> {
    let text = String::from_utf8_lossy(buf);
    let Some((head, rest)) = text.split_once("\r\n") else {
        return Ok(None);
    };
    let (kind, value) = head.split_at(head.len().min(1));
    match kind {
        "+" | ":" => Ok(Some(value.to_owned())),
        "-" => bail!("redis: {value}"),
        "$" => {
            let len: i64 = value.parse().context("bad bulk length")?;
            if len < 0 {
                return Ok(Some(String::new()));
            }
            let len = len as usize;
            if rest.len() < len + 2 {
                return Ok(None);
            }
            Ok(Some(rest[..len].to_owned()))
        }
        // An array (SCRIPT EXISTS): its first element is the answer the benchmark asks for.
        "*" => {
            if value.parse::<i64>().context("bad array length")? < 1 {
                return Ok(Some(String::new()));
            }
            parse_resp(rest.as_bytes())
        }
        _ => bail!("unexpected redis reply {head:?}"),
    }
}

/// The child processes of `pid` (nginx's workers), from `/proc`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut kids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| parent_in_stat(&s))
                == Some(pid)
        })
        .collect();
    kids.sort_unstable();
    kids
}

/// The parent pid (field 4) of a `/proc/PID/stat` text.
pub fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The load average (1, 5, 15 min) now, as the page quotes it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_read_as_typed() {
        let work = Path::new("/tmp/nm-bench.x1");
        let bin = Path::new("/src/target/release/nightmarket");
        let line = Line::new(bin.to_string_lossy())
            .env("NIGHTMARKET_DATA_DIR", "/tmp/nm-bench.x1/data")
            .args(["serve", "--save", "", "it's"])
            .pinned(Some("0"));
        assert_eq!(
            line.shown(work, &[(bin, "nightmarket")]),
            "NIGHTMARKET_DATA_DIR=$TMP/data taskset -c 0 nightmarket serve --save '' 'it'\\''s'"
        );
    }

    #[test]
    fn resp_replies() {
        assert_eq!(parse_resp(b"+PONG\r\n").unwrap().as_deref(), Some("PONG"));
        assert_eq!(parse_resp(b":42\r\n").unwrap().as_deref(), Some("42"));
        assert_eq!(parse_resp(b"$5\r\nhel").unwrap(), None);
        assert_eq!(
            parse_resp(b"$5\r\nhello\r\n").unwrap().as_deref(),
            Some("hello")
        );
        assert_eq!(parse_resp(b"$-1\r\n").unwrap().as_deref(), Some(""));
        assert!(parse_resp(b"-ERR nope\r\n").is_err());
        assert_eq!(parse_resp(b"*1\r\n:1\r\n").unwrap().as_deref(), Some("1"));
        assert_eq!(parse_resp(b"*1\r\n").unwrap(), None);
    }

    #[test]
    fn parent_pid_after_a_name_with_spaces() {
        assert_eq!(
            parent_in_stat("77 (nginx: worker process) S 76 77 77"),
            Some(76)
        );
    }

    #[test]
    fn summary_is_the_last_line() {
        let v = last_json("progress\n{\"a\": 1}\n\n").unwrap();
        assert_eq!(v["a"], 1);
        assert!(last_json("no json here").is_err());
    }
}
