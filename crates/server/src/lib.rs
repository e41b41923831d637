//! The Nightmarket server: HTTP API, WebSocket sessions, auth, configuration and metrics,
//! wired over the inventory, hub and store crates.
//!
//! - [`config`]: layered configuration, validated before anything binds.
//! - [`auth`]: HS256 tokens carrying role and subject (the `nightmarket-auth` crate);
//!   [`sessions`]: sign-in for browsers (invites, guests, the session cookie).
//! - [`web`]: the consoles' pages and assets, compiled in from the repository's `web/`.
//! - [`edge`]: the accept loop, request bounds, and JSON for every error response.
//! - [`api`]: HTTP handlers; [`ws`]: one WebSocket session per viewer or seller.
//! - [`claims`]: a claim from the moment it is read to its definite answer within the claim
//!   deadline (`pending` first when its outcome is not known in time).
//! - [`reports_api`]: show and market-night reports, JSON or CSV.
//! - [`csv_table`]: the one CSV writer of every export (reports, orders), formula-guarded.
//! - [`health`]: background probers of every dependency, read by `/readyz`.
//! - [`metrics`]: the Prometheus metrics (`metrics` + `metrics-exporter-prometheus`, one
//!   recorder per server) served by `/metrics`: counters, and histograms of claim answer time,
//!   fan-out lag, journal commits and settlements.
//! - [`state`]: shared state, the per-show command gate, flash timers and the stock ticker.
//! - [`webhooks`]: the deliverer that POSTs signed webhook events, with retries.
//! - [`order_service`]: the order service (crate `nightmarket-orders`) as `serve` runs it.
//! - [`show_stats`]: claims refused and viewers per show, counted here and written to the store
//!   for post-show reports.
//! - [`orders_api`]: orders and checkouts after settlement; [`deadline`]: unpaid orders
//!   cancelled after their payment deadline.
//! - [`run`]: serve on a bound listener until a shutdown future resolves, then drain.

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
pub mod show_stats;
pub mod state;
pub mod ws;

use crate::http::{
    edge, market as market_api, orders as orders_api, reports as reports_api, sessions,
    shows as api, web,
};
use crate::jobs::{deadline, lifecycle, order_service, webhooks};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nightmarket_domain::{BuyerId, CommandError, ShowId, ShowStatus};
use nightmarket_inventory::{
    EventFeed, FeedItem, Inventory, InventoryError, MemoryInventory, RedisInventory,
};
use nightmarket_store::{SqliteJournal, Store};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{BackendState, Readiness};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Role;
use crate::config::Config;
use crate::http::error::HttpError;
use crate::state::AppState;

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
    socket.bind(addr)?;
    Ok(socket.listen(config.limits.listen_backlog)?)
}

/// What a server runs on: the catalog, the inventory and, in distributed mode, the feed of
/// events other nodes produce.
pub struct Backends {
    pub catalog: Arc<Store>,
    pub inventory: Arc<dyn Inventory>,
    pub feed: Option<(EventFeed, tokio::sync::mpsc::Receiver<FeedItem>)>,
    /// The system clock; tests substitute a manual one.
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
        Store::sqlite(&path)
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
/// PostgreSQL with `database_url`.
pub async fn open_backends(config: &Config) -> Result<Backends, ServerError> {
    let catalog = open_store(config).await?;
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
            clock: Arc::new(clock::SystemClock),
            journal: None,
        });
    }
    let path = config.data_dir.join("journal.sqlite");
    let journal = SqliteJournal::open(&path, config.limits.journal_queue)
        .map_err(|e| dependency("sqlite", path.display().to_string(), e))?;
    let inventory = MemoryInventory::new(journal.clone(), config.limits.event_history);
    Ok(Backends {
        catalog: Arc::new(catalog),
        inventory: Arc::new(inventory),
        feed: None,
        clock: Arc::new(clock::SystemClock),
        journal: Some(journal),
    })
}

/// The HTTP router over the shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(web::viewer))
        .route("/seller", get(web::seller))
        .route("/operator", get(web::operator))
        .route("/signin", get(web::signin))
        .route("/web/{*path}", get(web::asset))
        .route("/api/auth/redeem", post(sessions::redeem))
        .route("/api/auth/guest", post(sessions::guest))
        .route("/api/auth/signout", post(sessions::signout))
        .route("/api/me", get(sessions::me))
        .route("/api/invites", post(sessions::create_invite))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/sellers",
            post(api::create_seller).get(api::list_sellers),
        )
        .route("/api/sellers/{id}", get(api::get_seller))
        .route(
            "/api/products",
            post(api::create_product).get(api::list_products),
        )
        .route("/api/products/{id}", get(api::get_product))
        .route("/api/shows", post(api::create_show).get(api::list_shows))
        .route("/api/shows/{id}", get(api::get_show))
        .route("/api/shows/{id}/live", post(api::go_live))
        .route("/api/shows/{id}/close", post(api::close))
        .route("/api/shows/{id}/transitions", get(market_api::transitions))
        .route("/api/shows/{id}/report", get(reports_api::show_report))
        .route("/api/shows/{id}/live-stats", get(reports_api::live_stats))
        .route("/api/sellers/{id}/shows", get(market_api::seller_shows))
        .route(
            "/api/sellers/{id}/lineup-sets",
            post(market_api::create_lineup_set).get(market_api::list_lineup_sets),
        )
        .route(
            "/api/markets",
            post(market_api::create_market).get(market_api::list_markets),
        )
        .route("/api/markets/{id}", get(market_api::get_market))
        .route("/api/markets/{id}/nights", get(market_api::list_nights))
        .route(
            "/api/markets/{id}/exceptions",
            post(market_api::create_exception).get(market_api::list_exceptions),
        )
        .route(
            "/api/markets/{id}/admissions",
            post(market_api::decide).get(market_api::list_decisions),
        )
        .route(
            "/api/markets/{id}/nights/{date}/commitments",
            post(market_api::commit).get(market_api::night_commitments),
        )
        .route(
            "/api/markets/{id}/nights/{date}/shows",
            post(market_api::schedule_show).get(market_api::night_shows),
        )
        .route(
            "/api/markets/{id}/nights/{date}/orders",
            get(orders_api::night_orders),
        )
        .route("/api/shows/{id}/orders", get(orders_api::show_orders))
        .route("/api/me/orders", get(orders_api::my_orders))
        .route("/api/me/checkouts", get(orders_api::my_checkouts))
        .route("/api/checkouts/{id}", get(orders_api::get_checkout))
        .route("/api/checkouts/{id}/pay", post(orders_api::pay_checkout))
        .route("/api/orders/{id}", get(orders_api::get_order))
        .route("/api/orders/{id}/status", post(orders_api::set_status))
        .route(
            "/api/markets/{id}/nights/{date}/report",
            get(reports_api::night_report),
        )
        .route("/api/schedule/warnings", get(market_api::warnings))
        .route(
            "/api/webhooks",
            post(market_api::create_webhook).get(market_api::list_webhooks),
        )
        .route(
            "/api/webhooks/{id}",
            axum::routing::delete(market_api::delete_webhook),
        )
        .route(
            "/api/webhooks/{id}/deliveries",
            get(market_api::list_deliveries),
        )
        .route(
            "/api/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(market_api::redeliver),
        )
        .route("/api/openapi.json", get(openapi))
        .route("/ws/shows/{id}", get(ws_upgrade))
        .fallback(|| async { HttpError::not_found("route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sessions::layer,
        ))
        // The JSON extractor's own bound, equal to the one `edge::limits` puts on every body.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limits,
        ))
        .layer(axum::middleware::from_fn(edge::json_errors))
        .with_state(state)
}

/// Bytes of WebSocket read buffer a connection starts with (see `ws_upgrade`).
const VIEWER_READ_BUFFER: usize = 512;

/// The OpenAPI 3 document of every HTTP endpoint; a test keeps it in step with the router.
pub const OPENAPI: &str = include_str!("http/openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// What the background probers last found (see [`health`]); nothing is probed per request.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut backends = state.health.report();
    let shutting_down = *state.shutdown.borrow();
    if shutting_down {
        backends.push(BackendState {
            name: "server".into(),
            state: "failing".into(),
            detail: Some("shutting down".into()),
            since: None,
            last_error: None,
            last_error_at: None,
        });
    }
    let ready = backends.iter().all(|b| b.state == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, backends })).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let viewers: u64 = state
        .hub
        .channels()
        .iter()
        .map(|(_, c)| c.viewer_count())
        .sum();
    let body = state.metrics.render(state.show_count(), viewers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Folds histogram samples into buckets every [`metrics::UPKEEP_EVERY`] until shutdown, so the
/// samples held between two scrapes stay bounded when nobody scrapes.
async fn metrics_upkeep(state: Arc<AppState>) {
    let mut stop = state.shutdown.clone();
    let mut every = tokio::time::interval(metrics::UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state::stopped(&mut stop) => return,
            _ = every.tick() => state.metrics.upkeep(),
        }
    }
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    let claims = api::authenticate(&state, &headers, query.get("token").map(String::as_str))?;
    if claims.role == Role::Viewer && BuyerId::parse(claims.sub.clone()).is_err() {
        return Err(api::unauthorized(
            "bad_subject",
            "the token's subject is not a valid buyer id",
        ));
    }
    let last_seq = match query.get("last_seq") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| HttpError::bad_request("last_seq: a whole number"))?,
        ),
    };
    let id = ShowId::parse(id).map_err(|_| HttpError::not_found("show"))?;
    let rt = match state.show(&id) {
        Some(rt) => rt,
        None => {
            let row = state
                .catalog
                .show(&id)
                .await?
                .ok_or_else(|| HttpError::not_found(format!("show {id}")))?;
            state.load_show(&row).await?
        }
    };
    if *state.shutdown.borrow() {
        return Err(HttpError::new(ErrorCode::Unavailable, "shutting down"));
    }
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        metrics::inc(&state.metrics.connections_refused);
        return Err(HttpError::new(
            ErrorCode::Unavailable,
            "connection limit reached; retry later",
        ));
    };
    // Distributed mode: this node now follows the show's events from every other node.
    if let Some(feed) = &state.feed {
        feed.watch(&rt.id);
    }
    let peer = ws::peer_for(claims, &rt);
    let limits = &state.config.limits;
    let upgrade = upgrade
        .max_message_size(limits.hard_frame_bytes)
        .max_frame_size(limits.hard_frame_bytes)
        // Tungstenite's default read buffer is 128 KiB per connection, allocated up front.
        // Client frames (claims, commands) are a few hundred bytes; a longer frame grows the
        // buffer as it arrives, up to the frame limit. Idle viewers are most connections.
        .read_buffer_size(VIEWER_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.hard_frame_bytes.max(64 * 1024) * 4);
    Ok(upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            ws::run(state, rt, peer, socket, last_seq).await;
            drop(permit);
        }))
}

/// Serves on `listener` until `shutdown` resolves; then stops accepting, tells every WebSocket
/// client to reconnect (close 1012) and waits up to `shutdown_grace_ms` for sessions to end.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let backends = open_backends(&config).await?;
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
    let state = Arc::new(AppState::new(
        config,
        catalog,
        inventory,
        feed,
        clock,
        stop_rx.clone(),
    ));
    if let Some(rx) = feed_rx {
        tokio::spawn(state.clone().follow(rx));
    }
    if let Some(journal) = journal {
        journal.observe_commits(state.metrics.journal_commit.clone());
    }
    tokio::spawn(metrics_upkeep(state.clone()));
    state.health.probe_all().await;
    state.health.spawn(&stop_rx);

    // Load every stored show: replays journals, restores flash timers.
    let rows = state
        .catalog
        .shows()
        .await
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    for row in &rows {
        match state.load_show(row).await {
            Ok(_) => {}
            // Settled and released: nothing left to serve, and the catalog still lists it.
            Err(InventoryError::Command(CommandError::NotLive(_)))
                if row.status == ShowStatus::Closed =>
            {
                tracing::debug!(show = %row.id, "closed show released by the inventory; not loaded");
            }
            Err(e) => return Err(ServerError::Storage(e.to_string())),
        }
    }
    tracing::info!(
        shows = rows.len(),
        addr = %listener.local_addr()?,
        node = state.show_stats.node(),
        "nightmarket serving"
    );
    tokio::spawn(state.clone().ticker());
    tokio::spawn(lifecycle::run(state.clone()));
    tokio::spawn(deadline::run(state.clone()));
    let deliverer = webhooks::Deliverer::new(
        state.catalog.clone(),
        state.config.webhooks.clone(),
        state.clock.clone(),
    )
    .map_err(ServerError::Webhooks)?
    .with_counters(state.metrics.webhooks.clone());
    let mut deliverer_stop = stop_rx.clone();
    tokio::spawn(deliverer.run(async move { state::stopped(&mut deliverer_stop).await }));
    if state.config.orders.in_serve {
        let settler = Arc::new(
            order_service::settler(
                &state.config,
                state.catalog.clone(),
                state.inventory.clone(),
                state.clock.clone(),
                "order-service",
            )
            .with_settle_time(state.metrics.settlement.clone()),
        );
        let _ = state.settler.set(settler.clone());
        tokio::spawn(settler.run(stop_rx.clone()));
    }
    // Its own stop signal, given once sessions have ended: refusals answered while they drain
    // belong in the last flush.
    let (stats_stop, stats_stopped) = tokio::sync::oneshot::channel::<()>();
    let stats_flusher = tokio::spawn(show_stats::run(
        state.show_stats.clone(),
        state.catalog.clone(),
        state.clock.clone(),
        Duration::from_millis(state.config.market.stats_flush_ms),
        stats_stopped,
    ));

    let app = router(state.clone());
    let mut stop = stop_rx.clone();
    let limits = state.config.limits.clone();
    let server = edge::serve(listener, app, &limits, async move {
        state::stopped(&mut stop).await
    });
    let trigger = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        stop_tx
    });
    server.await?;
    let _stop_tx = trigger.await.ok();
    // Sessions saw the shutdown flag and are sending their close frames.
    if tokio::time::timeout(grace, state.sessions.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.sessions.open(),
            "shutdown grace elapsed with sessions open"
        );
    }
    let _ = stats_stop.send(());
    if tokio::time::timeout(show_stats::FINAL_FLUSH_TIMEOUT, stats_flusher)
        .await
        .is_err()
    {
        tracing::warn!("show statistics not written at shutdown in time");
    }
    tracing::info!("nightmarket stopped");
    Ok(())
}
