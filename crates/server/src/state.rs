//! The server's parts, built once from the configuration and the backends, and held for the
//! handlers and sessions: wiring only. What each part does is its own module's business.

use std::sync::Arc;

use nightmarket_auth::TokenKey;
use nightmarket_domain::Millis;
use nightmarket_inventory::{EventFeed, Inventory};
use nightmarket_live::LiveError;
use nightmarket_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::jobs::health::{Health, Probe};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::services::sessions::GuestLimiter;
use crate::services::shows::Shows;
use crate::show_stats::{ShowStats, new_node_id, node_identity};
use crate::shutdown::OpenSessions;

/// What the server runs on, as [`crate::Backends`] opened it.
pub struct Parts {
    pub store: Arc<Store>,
    pub inventory: Arc<dyn Inventory>,
    /// Distributed mode: the subscription to show events published by every node.
    pub feed: Option<EventFeed>,
    pub clock: SharedClock,
}

/// What this node observes of itself: metrics, show statistics, dependency health.
struct Observed {
    metrics: Arc<Metrics>,
    /// Claims refused and viewers per show, counted on this node for post-show reports.
    show_stats: Arc<ShowStats>,
    /// What the dependency probers last found, for `/readyz`.
    health: Health,
}

/// The node's life: the shutdown flag, and the connections and sessions it bounds and drains.
struct Lifetime {
    /// Flips to true once shutdown starts; every session watches it.
    shutdown: watch::Receiver<bool>,
    /// WebSocket connections left (`limits.max_connections`).
    connections: Arc<Semaphore>,
    sessions: Arc<OpenSessions>,
}

/// The parts every handler and session reaches through.
pub struct AppState {
    config: Config,
    key: TokenKey,
    store: Arc<Store>,
    inventory: Arc<dyn Inventory>,
    clock: SharedClock,
    live: Arc<Live>,
    shows: Arc<Shows>,
    /// Guest sign-ins left per address.
    guests: GuestLimiter,
    observed: Observed,
    lifetime: Lifetime,
}

impl AppState {
    /// Builds the parts; fails only if the live engine refuses its bounds.
    pub fn new(
        config: Config,
        parts: Parts,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, LiveError> {
        let Parts {
            store,
            inventory,
            feed,
            clock,
        } = parts;
        let store_name = if config.database_url.is_empty() {
            "sqlite"
        } else {
            "postgres"
        };
        let health = Health::new(
            vec![
                (inventory.dependency(), Probe::Inventory(inventory.clone())),
                (store_name, Probe::Catalog(store.clone())),
            ],
            clock.clone(),
        );
        let metrics = Arc::new(Metrics::default());
        let show_stats = Arc::new(ShowStats::for_node(
            new_node_id(),
            node_identity(&config.listen),
        ));
        let live = Arc::new(Live::new(
            inventory.clone(),
            feed,
            metrics.clone(),
            show_stats.clone(),
            clock.clone(),
            config.limits.clone(),
            shutdown.clone(),
        )?);
        let shows = Arc::new(Shows::new(
            store.clone(),
            inventory.clone(),
            live.clone(),
            clock.clone(),
            &config,
        ));
        Ok(Self {
            key: TokenKey::new(config.auth_secret.expose()),
            guests: GuestLimiter::new(&config.sessions),
            lifetime: Lifetime {
                shutdown,
                connections: Arc::new(Semaphore::new(config.limits.max_connections)),
                sessions: Arc::new(OpenSessions::default()),
            },
            observed: Observed {
                metrics,
                show_stats,
                health,
            },
            config,
            store,
            inventory,
            clock,
            live,
            shows,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The key that signs and verifies tokens.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn inventory(&self) -> &Arc<dyn Inventory> {
        &self.inventory
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The server's time, UTC milliseconds.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The time on the clock the inventory decides by, which a show's times (flash windows,
    /// claim deadlines, a snapshot's `server_time`) are on: the server's clock with the
    /// embedded inventory, the system clock standing for Redis's `TIME` with Redis.
    pub fn inventory_now(&self) -> Millis {
        self.inventory.clock().now()
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    pub fn shows(&self) -> &Arc<Shows> {
        &self.shows
    }

    pub fn guests(&self) -> &GuestLimiter {
        &self.guests
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.observed.metrics
    }

    pub fn show_stats(&self) -> &Arc<ShowStats> {
        &self.observed.show_stats
    }

    pub fn health(&self) -> &Health {
        &self.observed.health
    }

    /// The shutdown flag, to watch.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.lifetime.shutdown.clone()
    }

    /// Whether shutdown has started.
    pub fn shutting_down(&self) -> bool {
        *self.lifetime.shutdown.borrow()
    }

    /// A place for one more WebSocket connection, if `limits.max_connections` allows it.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.lifetime.connections.clone().try_acquire_owned().ok()
    }

    /// The WebSocket sessions open, which shutdown waits for.
    pub fn sessions(&self) -> &Arc<OpenSessions> {
        &self.lifetime.sessions
    }
}
