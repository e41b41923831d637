//! The Nightmarket server: HTTP API, WebSocket sessions, the fan-out of each show, background
//! jobs, configuration and metrics, wired over the wire, auth, domain, inventory, live, store
//! and orders crates.
//!
//! A module's path tells its concern; dependencies point down this list, never up:
//!
//! - [`http`]: the router (every route in one place), one module per resource, the accept
//!   loop and request bounds, errors as JSON. Handlers parse, call a service, format.
//! - [`ws`]: the WebSocket session of a viewer or seller, its claims within the claim deadline,
//!   a buyer's waitlist places when it leaves.
//! - [`state`]: wiring: builds the parts from the configuration and holds them.
//! - [`jobs`]: background loops: shows opened and closed on their slots, unpaid orders
//!   cancelled, webhooks delivered, the order service, dependency probers, statistics upkeep.
//! - [`services`]: the rules the HTTP and WebSocket layers call (catalog, market, shows,
//!   orders, reports, sign-in, webhooks); plain values in and out, no axum types.
//! - [`live`]: the fan-out of each show on this node: events published once, gaps repaired,
//!   conflated stock, feed and viewer frames, flash timers, waitlist news per buyer, and the
//!   snapshots of joining viewers built from that state.
//! - [`show_stats`]: claims refused and viewers per show, counted for post-show reports.
//! - [`metrics`]: the Prometheus metrics served by `/metrics`.
//! - [`convert`]: domain values as wire messages, domain refusals as stable codes.
//! - [`config`], [`clock`], [`shutdown`]: layered configuration, the server's sense of time,
//!   the shutdown flag and the count of sessions it drains.
//! - [`auth`]: HS256 tokens carrying role and subject (the `nightmarket-auth` crate).
//! - [`run`]: serve on a bound listener until a shutdown future resolves, then drain.

// The examples of `#[utoipa::path]` annotations are `json!` values deeper than the default
// macro recursion limit allows.
#![recursion_limit = "256"]

/// Tokens live in their own crate (`nightmarket-auth`), shared with the command line and the
/// load generator; re-exported here so the server's modules name them as before.
pub use nightmarket_auth as auth;
pub mod clock;
pub mod config;
pub mod convert;
pub mod http;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod services;
pub mod show_stats;
pub mod shutdown;
pub mod state;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nightmarket_inventory::{EventFeed, FeedItem, Inventory, MemoryInventory, RedisInventory};
use nightmarket_store::{SqliteJournal, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::jobs::lifecycle::Lifecycle;
use crate::jobs::{deadline, lifecycle, order_service, stats, webhooks};
use crate::shutdown::stopped;
use crate::state::{AppState, Parts};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(String),
    /// A dependency could not be opened or reached at start: named, with where it was looked for.
    #[error("cannot use {name} at {target}: {message}")]
    Dependency {
        name: &'static str,
        target: String,
        message: String,
    },
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The live engine refused its bounds.
    #[error(transparent)]
    Live(#[from] nightmarket_live::LiveError),
}

/// Binds the configured address with the configured accept backlog.
pub fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = config.listen_addr()?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // Set before `listen`, so even a connection that arrives before the accept loop starts
    // inherits them (see `http::edge::serve`).
    socket.set_nodelay(true)?;
    if config.limits.socket_send_buffer > 0 {
        socket.set_send_buffer_size(
            u32::try_from(config.limits.socket_send_buffer).unwrap_or(u32::MAX),
        )?;
    }
    socket.bind(addr)?;
    Ok(socket.listen(config.limits.listen_backlog)?)
}

/// What a server runs on: the catalog, the inventory and, in distributed mode, the feed of
/// events other nodes produce.
pub struct Backends {
    pub catalog: Arc<Store>,
    pub inventory: Arc<dyn Inventory>,
    pub feed: Option<(EventFeed, tokio::sync::mpsc::Receiver<FeedItem>)>,
    /// The one clock the store, the inventory and the server read: the system clock when
    /// serving, a manual one in tests (see [`open_backends`]).
    pub clock: clock::SharedClock,
    /// The embedded claim journal (memory inventory), whose group commits the metrics time.
    pub journal: Option<SqliteJournal>,
}

/// Opens the store the configuration names: SQLite under `data_dir` (created if missing), or
/// PostgreSQL with `database_url`.
pub async fn open_store(config: &Config) -> Result<Store, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    if config.database_url.is_empty() {
        let path = config.data_dir.join("catalog.sqlite");
        Store::sqlite_pooled(
            &path,
            config.database_pool_size,
            std::time::Duration::from_millis(config.database_timeout_ms),
        )
        .await
        .map_err(|e| dependency("sqlite", path.display().to_string(), e))
    } else {
        Store::postgres_bounded(
            &config.database_url,
            config.database_pool_size,
            std::time::Duration::from_millis(config.database_timeout_ms),
            std::time::Duration::from_millis(config.database_call_timeout_ms),
        )
        .await
        .map_err(|e| dependency("postgres", redact(&config.database_url), e))
    }
}

fn dependency(name: &'static str, target: String, e: impl std::fmt::Display) -> ServerError {
    ServerError::Dependency {
        name,
        target,
        message: e.to_string(),
    }
}

/// A URL fit for logs and error messages: any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Opens the backends the configuration names: the embedded inventory (memory, journaled to
/// SQLite) or, with `redis_url`, the Redis inventory shared by every node, on one Redis or
/// (`redis_cluster`) on a Redis Cluster. The store is the SQLite file under `data_dir`, or
/// PostgreSQL with `database_url`. The store stamps on `clock`, and so does every part the state
/// builds from [`Backends::clock`], and so does the memory inventory: a test's manual clock
/// ends flashes, passes claim deadlines and expires tokens everywhere at once. The Redis
/// inventory decides by Redis's `TIME`, the one clock every node shares (see
/// `nightmarket_inventory`): a show's own times (flash ends, claim deadlines, snapshot times)
/// are then on the system clock standing for it ([`Inventory::clock`]), whatever `clock` is;
/// market times, records and tokens stay on `clock`.
pub async fn open_backends(
    config: &Config,
    clock: clock::SharedClock,
) -> Result<Backends, ServerError> {
    let catalog = open_store(config).await?.with_clock(clock.clone());
    if !config.redis_url.is_empty() {
        let (prefix, history) = (&config.redis_prefix, config.limits.event_history);
        let redis = if config.redis_cluster {
            RedisInventory::connect_cluster(&config.redis_seeds(), prefix, history).await
        } else {
            RedisInventory::connect(&config.redis_url, prefix, history).await
        }
        .map_err(|e| {
            let target = config
                .redis_seeds()
                .iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(",");
            dependency("redis", target, e)
        })?
        .with_wait(config.redis_wait_replicas, config.redis_wait_ms);
        let feed = redis.event_feed();
        return Ok(Backends {
            catalog: Arc::new(catalog),
            inventory: Arc::new(redis),
            feed: Some(feed),
            clock,
            journal: None,
        });
    }
    let path = config.data_dir.join("journal.sqlite");
    let journal = SqliteJournal::open(&path, config.limits.journal_queue)
        .map_err(|e| dependency("sqlite", path.display().to_string(), e))?;
    let inventory = MemoryInventory::new(journal.clone(), config.limits.event_history)
        .with_clock(clock.clone());
    Ok(Backends {
        catalog: Arc::new(catalog),
        inventory: Arc::new(inventory),
        feed: None,
        clock,
        journal: Some(journal),
    })
}

/// Serves on `listener` until `shutdown` resolves; then stops accepting, tells every WebSocket
/// client to reconnect (close 1012) and waits up to `shutdown_grace_ms` for sessions to end.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let backends = open_backends(&config, clock::system()).await?;
    serve_with(listener, config, backends, shutdown).await
}

/// Like [`run`], over given backends.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    backends: Backends,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    let Backends {
        catalog,
        inventory,
        feed,
        clock,
        journal,
    } = backends;
    let (feed, feed_rx) = feed.unzip();
    let parts = Parts {
        store: catalog,
        inventory,
        feed,
        clock,
    };
    let state = Arc::new(AppState::new(config, parts, stop_rx.clone())?);
    if let Some(rx) = feed_rx {
        tokio::spawn(state.live().clone().follow(rx));
    }
    if let Some(journal) = journal {
        journal.observe_commits(state.metrics().journal_commit.clone());
    }
    tokio::spawn(stats::metrics_upkeep(
        state.metrics().clone(),
        stop_rx.clone(),
    ));
    state.health().probe_all().await;
    state.health().spawn(&stop_rx);

    // Load every show still open: replays journals, restores flash timers, and records what
    // the inventory decided while no node ran. Closed shows are loaded when someone asks for
    // one (a viewer, a command), so a start costs the shows of tonight, not of every night.
    let rows: Vec<_> = state
        .store()
        .open_shows()
        .await
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    for row in &rows {
        state
            .shows()
            .load(row)
            .await
            .map_err(|e| ServerError::Storage(e.to_string()))?;
    }
    tracing::info!(
        shows = rows.len(),
        addr = %listener.local_addr()?,
        node = state.show_stats().node(),
        "nightmarket serving"
    );
    tokio::spawn(state.live().clone().ticker());
    let schedule = Lifecycle {
        shows: state.shows().clone(),
        store: state.store().clone(),
        clock: state.clock().clone(),
        timing: state.config().market.clone(),
    };
    tokio::spawn(lifecycle::run(schedule, stop_rx.clone()));
    {
        let (state, stop) = (state.clone(), stop_rx.clone());
        tokio::spawn(async move {
            deadline::run(state.store(), state.clock(), &state.config().orders, stop).await;
        });
    }
    let deliverer = webhooks::Deliverer::new(
        state.store().clone(),
        state.config().webhooks.clone(),
        state.clock().clone(),
    )
    .map_err(ServerError::Webhooks)?
    .with_counters(state.metrics().webhooks.clone());
    let mut deliverer_stop = stop_rx.clone();
    tokio::spawn(deliverer.run(async move { stopped(&mut deliverer_stop).await }));
    if state.config().orders.in_serve {
        let settler = Arc::new(
            order_service::settler(
                state.config(),
                state.store().clone(),
                state.inventory().clone(),
                state.clock().clone(),
                "order-service",
            )
            .with_settle_time(state.metrics().settlement.clone()),
        );
        state.shows().wake_on_close(settler.clone());
        tokio::spawn(settler.run(stop_rx.clone()));
    }
    // Its own stop signal, given once sessions have ended: refusals answered while they drain
    // belong in the last flush.
    let (stats_stop, stats_stopped) = tokio::sync::oneshot::channel::<()>();
    let stats_flusher = tokio::spawn(stats::flush_show_stats(
        state.show_stats().clone(),
        state.store().clone(),
        state.clock().clone(),
        Duration::from_millis(state.config().market.stats_flush_ms),
        stats_stopped,
    ));

    let app = http::router(state.clone());
    let mut stop = stop_rx.clone();
    let limits = state.config().limits.clone();
    let server = http::edge::serve(
        listener,
        app,
        &limits,
        async move { stopped(&mut stop).await },
    );
    let trigger = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        stop_tx
    });
    server.await?;
    let _stop_tx = trigger.await.ok();
    // Sessions saw the shutdown flag and are sending their close frames.
    if tokio::time::timeout(grace, state.sessions().drained())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.sessions().open(),
            "shutdown grace elapsed with sessions open"
        );
    }
    let _ = stats_stop.send(());
    if tokio::time::timeout(stats::FINAL_FLUSH_TIMEOUT, stats_flusher)
        .await
        .is_err()
    {
        tracing::warn!("show statistics not written at shutdown in time");
    }
    tracing::info!("nightmarket stopped");
    Ok(())
}
