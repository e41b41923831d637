//! Readiness that tells the truth: each dependency (`redis`, `postgres`, `sqlite`) is probed in
//! the background every [`PROBE_EVERY`], each probe bounded by [`PROBE_TIMEOUT`], and `/readyz`
//! reads the last result without touching any dependency itself. A dependency that stops
//! answering is reported failing within `PROBE_EVERY + PROBE_TIMEOUT` (750 ms), and ready
//! again within `PROBE_EVERY` of answering again.
//!
//! The prober also writes the log of each outage: one warning when it starts, further ones at
//! doubling intervals (1 s, 2 s, 4 s … at most [`LOG_EVERY_MAX`]) while it lasts, and one line
//! saying the dependency is back and how long it was away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightmarket_domain::Millis;
use nightmarket_inventory::Inventory;
use nightmarket_store::Store;
use nightmarket_wire::http::BackendState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::shutdown::stopped;

/// Pause between two probes of one dependency.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Longest one probe may take; a dependency that has not answered by then is failing.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// First pause between two warnings about one outage; it doubles up to [`LOG_EVERY_MAX`].
const LOG_EVERY_MIN: Duration = Duration::from_secs(1);
const LOG_EVERY_MAX: Duration = Duration::from_secs(60);

/// What one dependency is checked through.
#[derive(Clone)]
pub enum Probe {
    Inventory(Arc<dyn Inventory>),
    Catalog(Arc<Store>),
}

/// A failed probe: a stable code for `/readyz` (`timeout` or `error`) and the driver's words,
/// which only the log gets (they name hosts, ports and OS errors).
struct Failure {
    code: &'static str,
    text: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The fixed words `/readyz` gives for a failure code.
fn described(code: &str) -> String {
    match code {
        "timeout" => format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
        _ => "the check failed; the server log has the cause".into(),
    }
}

impl Probe {
    async fn run(&self) -> Result<(), Failure> {
        let check = async {
            match self {
                Probe::Inventory(inv) => inv.probe().await.map_err(|e| e.to_string()),
                Probe::Catalog(store) => store.ping().await.map_err(|e| e.to_string()),
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, check).await {
            Ok(r) => r.map_err(|text| Failure {
                code: "error",
                text,
            }),
            Err(_) => Err(Failure {
                code: "timeout",
                text: described("timeout"),
            }),
        }
    }
}

#[derive(Debug, Clone)]
struct DependencyState {
    ok: bool,
    /// When `ok` last changed (or the server started).
    since: Millis,
    /// The code of the most recent failure (`timeout`, `error`).
    last_error: Option<&'static str>,
    last_error_at: Option<Millis>,
}

struct Dependency {
    name: &'static str,
    /// Every check of this dependency: the embedded store and journal are both `sqlite`.
    probes: Vec<Probe>,
    state: Mutex<DependencyState>,
    /// The server's clock, for when a state began and when an error was last seen.
    clock: SharedClock,
}

/// The dependencies of this node and what their probers last found.
pub struct Health {
    deps: Vec<Arc<Dependency>>,
}

impl Health {
    /// `probes`: each dependency's name with what checks it; probes sharing a name are one
    /// dependency, failing when any of them fails.
    pub fn new(probes: Vec<(&'static str, Probe)>, clock: SharedClock) -> Self {
        let mut deps: Vec<Arc<Dependency>> = Vec::new();
        let started = clock.now();
        for (name, probe) in probes {
            match deps.iter_mut().find(|d| d.name == name) {
                Some(d) => {
                    if let Some(d) = Arc::get_mut(d) {
                        d.probes.push(probe);
                    }
                }
                None => deps.push(Arc::new(Dependency {
                    name,
                    probes: vec![probe],
                    clock: clock.clone(),
                    state: Mutex::new(DependencyState {
                        ok: true,
                        since: started,
                        last_error: None,
                        last_error_at: None,
                    }),
                })),
            }
        }
        Self { deps }
    }

    /// Probes every dependency once, now (at start, before serving).
    pub async fn probe_all(&self) {
        for dep in &self.deps {
            let result = dep.check().await;
            dep.record(result, &mut Outage::default());
        }
    }

    /// Starts one prober per dependency; they stop with `shutdown`.
    pub fn spawn(&self, shutdown: &watch::Receiver<bool>) {
        for dep in &self.deps {
            let dep = dep.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut outage = Outage::default();
                loop {
                    let result = dep.check().await;
                    dep.record(result, &mut outage);
                    tokio::select! {
                        () = tokio::time::sleep(PROBE_EVERY) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            });
        }
    }

    /// Every dependency as `/readyz` shows it.
    pub fn report(&self) -> Vec<BackendState> {
        self.deps
            .iter()
            .map(|d| {
                let s = d
                    .state
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_else(|p| p.into_inner().clone());
                BackendState {
                    name: d.name.into(),
                    state: if s.ok { "ok" } else { "failing" }.into(),
                    detail: s.last_error.filter(|_| !s.ok).map(described),
                    since: Some(s.since),
                    last_error: s.last_error.map(String::from),
                    last_error_at: s.last_error_at,
                }
            })
            .collect()
    }
}

/// The warnings of one outage, spaced at doubling intervals.
#[derive(Default)]
struct Outage {
    started: Option<Instant>,
    failed_probes: u64,
    next_warning: Option<Instant>,
    every: Duration,
}

impl Dependency {
    async fn check(&self) -> Result<(), Failure> {
        for probe in &self.probes {
            probe.run().await?;
        }
        Ok(())
    }

    fn record(&self, result: Result<(), Failure>, outage: &mut Outage) {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                if !state.ok {
                    state.ok = true;
                    state.since = self.clock.now();
                }
                if let Some(started) = outage.started.take() {
                    tracing::info!(
                        dependency = self.name,
                        down_ms = now.duration_since(started).as_millis() as u64,
                        failed_probes = outage.failed_probes,
                        "{} is back",
                        self.name
                    );
                }
                *outage = Outage::default();
            }
            Err(error) => {
                if state.ok {
                    state.ok = false;
                    state.since = self.clock.now();
                }
                state.last_error_at = Some(self.clock.now());
                outage.failed_probes += 1;
                match outage.started {
                    None => {
                        tracing::warn!(dependency = self.name, %error, "{} unreachable", self.name);
                        outage.started = Some(now);
                        outage.every = LOG_EVERY_MIN;
                        outage.next_warning = Some(now + LOG_EVERY_MIN);
                    }
                    Some(started) if outage.next_warning.is_some_and(|at| now >= at) => {
                        tracing::warn!(
                            dependency = self.name,
                            %error,
                            down_ms = now.duration_since(started).as_millis() as u64,
                            failed_probes = outage.failed_probes,
                            "{} still unreachable",
                            self.name
                        );
                        outage.every = (outage.every * 2).min(LOG_EVERY_MAX);
                        outage.next_warning = Some(now + outage.every);
                    }
                    Some(_) => {
                        tracing::debug!(dependency = self.name, %error, "probe failed");
                    }
                }
                state.last_error = Some(error.code);
            }
        }
    }
}
