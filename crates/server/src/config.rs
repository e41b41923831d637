//! Layered configuration: built-in defaults (`config/default.toml`, compiled in), an optional
//! file, then `NIGHTMARKET_*` environment variables. Validated completely before any port is
//! bound, so a bad value fails at start with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The defaults, exactly as documented in the repository's `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The development secret shipped in the defaults; refused when `dev = false`.
pub use nightmarket_auth::DEV_SECRET;

/// Shortest accepted auth secret, in bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Environment variables with the prefix that are not configuration keys.
const NON_CONFIG_ENV: [&str; 3] = [
    "NIGHTMARKET_CONFIG",
    "NIGHTMARKET_LOG",
    "NIGHTMARKET_LOG_FORMAT",
];
/// Prefixes reserved for tools around the server (test harness, load generator).
const NON_CONFIG_ENV_PREFIXES: [&str; 2] = ["NIGHTMARKET_TEST_", "NIGHTMARKET_BENCH_"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub auth_secret: Secret,
    pub dev: bool,
    pub redis_url: String,
    pub redis_cluster: bool,
    pub redis_prefix: String,
    pub redis_wait_replicas: u32,
    pub redis_wait_ms: u64,
    pub database_url: String,
    pub database_pool_size: usize,
    pub database_timeout_ms: u64,
    pub database_call_timeout_ms: u64,
    /// The address people open in a browser (`https://cho.example.vn`); invite links and the
    /// same-origin check use it. Empty: the request's own `Host`.
    pub public_url: String,
    pub limits: Limits,
    pub http: HttpRules,
    pub sessions: Sessions,
    pub webhooks: WebhookLimits,
    pub market: MarketTiming,
    pub orders: OrderService,
}

/// The rules every HTTP request meets in the middleware (`http/mod.rs`). See
/// `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRules {
    /// How long a request may take until its response starts, in milliseconds; past it the
    /// answer is 504 `timeout`.
    pub request_timeout_ms: u64,
    /// Origins (`scheme://host[:port]`) whose pages may call the API from a browser,
    /// comma-separated; empty: no CORS headers at all.
    pub cors_origins: String,
}

/// Longest accepted `http.request_timeout_ms`: ten minutes is past any answer worth waiting for
/// (downloads are not bounded by it once their first byte is sent).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;

/// When scheduled shows open and close, and how often the figures of post-show reports are
/// written. See `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketTiming {
    pub tick_ms: u64,
    pub early_start_ms: u64,
    pub close_grace_ms: u64,
    /// A live show whose seller has had no session on any node for this long is closed by the
    /// market, with the reason `seller_absent` beside the transition; 0: never.
    pub seller_absent_close_ms: u64,
    pub nights_listed: usize,
    pub stats_flush_ms: u64,
}

/// Longest accepted `market.stats_flush_ms`: a node that crashes loses the show statistics of
/// at most this long, and reports read while a show runs lag by as much; ten minutes is past
/// any useful setting.
pub const MAX_STATS_FLUSH_MS: u64 = 600_000;

/// Most live-engine shards (`limits.live_shards`): the engine's own ceiling.
pub const MAX_LIVE_SHARDS: usize = 1024;

/// Every bound of the server, named. See `config/default.toml` for what each means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub listen_backlog: u32,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub hard_frame_bytes: usize,
    pub event_buffer: usize,
    pub event_history: usize,
    pub write_timeout_ms: u64,
    pub live_shards: usize,
    pub queue_bytes: usize,
    pub stock_tick_ms: u64,
    pub viewers_tick_ms: u64,
    pub feed_items: usize,
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub max_claim_quantity: u32,
    pub claim_deadline_ms: u64,
    pub claims_in_flight: usize,
    pub journal_queue: usize,
    pub max_lineup: usize,
    pub socket_send_buffer: usize,
    pub shutdown_grace_ms: u64,
    pub waitlist_leave_grace_ms: u64,
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// Longest accepted `limits.waitlist_leave_grace_ms`: a buyer gone longer than an hour has left.
pub const MAX_WAITLIST_LEAVE_GRACE_MS: u64 = 3_600_000;

/// Largest accepted `limits.max_body_bytes`: bodies are read whole into memory before they
/// are parsed, so this bounds what one request can make the server hold.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Largest accepted `limits.max_uri_bytes`: the `http` crate refuses longer request targets
/// itself (65534 bytes), before the server can answer with its own error body.
pub const MAX_URI_BYTES: usize = 65_000;

/// Largest accepted `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Largest accepted `limits.max_headers`.
pub const MAX_HEADERS: usize = 1000;

/// Longest accepted `limits.claim_deadline_ms`: a viewer waits at most this long for a definite
/// answer (or `pending`); past ten seconds a live auction has moved on.
pub const MAX_CLAIM_DEADLINE_MS: u64 = 10_000;

/// Largest accepted `limits.claims_in_flight`: each claim in flight is a task and a few frames
/// of a connection's answer queue.
pub const MAX_CLAIMS_IN_FLIGHT: usize = 256;

/// How webhook deliveries are attempted. See `config/default.toml` for what each means.
/// The order service: recording claim logs, settling closed shows, the payment window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderService {
    /// Run the order service inside `serve`.
    pub in_serve: bool,
    /// Claim-log entries recorded per batch (one transaction).
    pub batch: usize,
    /// Batches one show records per round before the others get their turn.
    pub batches_per_show: usize,
    /// Pause between rounds when no show closed meanwhile.
    pub poll_ms: u64,
    /// How long a buyer has to pay after settlement.
    pub payment_window_ms: u64,
    /// How often unpaid orders past their window are looked for.
    pub sweep_ms: u64,
    /// Orders one sweep cancels per transaction at most.
    pub sweep_batch: usize,
    /// How long a settled show's inventory keys are kept before they expire.
    pub keep_settled_ms: u64,
}

/// Sign-in: invite links, browser sessions, guest viewers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// How long a one-time sign-in link stays usable.
    pub invite_ttl_ms: u64,
    /// Life of the signed token inside the session cookie; refreshed while the session is used.
    pub token_ttl_ms: u64,
    /// A session ends this long after sign-in however active it is.
    pub max_life_ms: u64,
    /// Guest sessions one address may open per minute (sustained), and the burst above it.
    pub guests_per_minute: u32,
    pub guest_burst: u32,
    /// Addresses whose guest allowance is remembered at most; beyond it the fullest are forgotten.
    pub tracked_addresses: usize,
    /// Proxies in front of the server that append to `X-Forwarded-For` (0: none; the peer's
    /// address is the client's). With n, the client is the n-th address from the right.
    pub trusted_proxy_hops: u32,
}

/// Largest claim-log batch: one batch is one transaction and one page read from Redis.
pub const MAX_ORDER_BATCH: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookLimits {
    /// Attempts in all before a delivery is `failed`.
    pub attempts: u32,
    /// Delay before the first retry; doubles with each further attempt.
    pub backoff_ms: u64,
    /// Longest delay between two attempts.
    pub max_backoff_ms: u64,
    /// Longest one attempt may take, connecting included.
    pub timeout_ms: u64,
    /// How long a leased delivery stays with this node; more than `timeout_ms`.
    pub lease_ms: u64,
    /// Deliveries leased per poll at most.
    pub batch: u32,
    /// Pause between polls when nothing is due.
    pub poll_ms: u64,
    /// Requests in flight at once per node.
    pub max_in_flight: usize,
    /// Deliver to private, loopback and link-local addresses too (a receiver inside the same
    /// network). Off: such targets are refused when created and when resolved.
    pub allow_private_targets: bool,
    /// PEM file of extra root certificates for HTTPS receivers (a private CA), merged with the
    /// system's roots. Empty: the system's roots only.
    pub ca_file: String,
}

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// The built-in defaults.
    pub fn defaults() -> Result<Self, ConfigError> {
        toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::Parse {
            path: "<built-in>".into(),
            message: e.to_string(),
        })
    }

    /// Defaults, then `file` (if any), then the given environment (normally `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Table =
            toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::Parse {
                path: "<built-in>".into(),
                message: e.to_string(),
            })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let overlay: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            merge(&mut value, overlay);
        }
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("NIGHTMARKET_"))
            .collect();
        for (var, raw) in env {
            if NON_CONFIG_ENV.contains(&var.as_str())
                || NON_CONFIG_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
            {
                continue;
            }
            apply_env(&mut value, &var, &raw)?;
        }
        let config: Config =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: "<merged>".into(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the first problem is returned naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        self.listen_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        let secret = self.auth_secret.expose();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(invalid(
                "auth_secret",
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes, got {}",
                    secret.len()
                ),
            ));
        }
        if secret == DEV_SECRET && !self.dev {
            return Err(invalid(
                "auth_secret",
                "the development secret is refused when dev = false; set NIGHTMARKET_AUTH_SECRET"
                    .into(),
            ));
        }
        let seeds = self.redis_seeds();
        if seeds
            .iter()
            .any(|url| !(url.starts_with("redis://") || url.starts_with("rediss://")))
        {
            return Err(invalid(
                "redis_url",
                "every URL must start with redis:// or rediss://".into(),
            ));
        }
        if self.redis_cluster && seeds.is_empty() {
            return Err(invalid(
                "redis_cluster",
                "a Redis Cluster needs its nodes in redis_url (comma-separated)".into(),
            ));
        }
        if !self.redis_cluster && seeds.len() > 1 {
            return Err(invalid(
                "redis_url",
                "several URLs name the nodes of a Redis Cluster: set redis_cluster = true".into(),
            ));
        }
        let p = &self.redis_prefix;
        if p.is_empty()
            || p.len() > 32
            || p.chars().any(|c| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(invalid(
                "redis_prefix",
                "1 to 32 characters without spaces or braces (braces mark Cluster hash tags)"
                    .into(),
            ));
        }
        let db = &self.database_url;
        if !(db.is_empty() || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(invalid(
                "database_url",
                "expected postgres://user@host:port/database (empty: the embedded SQLite store)"
                    .into(),
            ));
        }
        if self.database_pool_size == 0 || self.database_pool_size > 1000 {
            return Err(invalid("database_pool_size", "1 to 1000".into()));
        }
        let h = &self.http;
        if h.request_timeout_ms == 0 || h.request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
            return Err(invalid(
                "http.request_timeout_ms",
                format!("1 to {MAX_REQUEST_TIMEOUT_MS}"),
            ));
        }
        for origin in self.cors_origins() {
            let parsed = url::Url::parse(&origin).ok();
            let exact = parsed.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.origin().ascii_serialization() == origin
            });
            if !exact {
                return Err(invalid(
                    "http.cors_origins",
                    format!(
                        "{origin:?} is not an origin: scheme://host[:port], no path or trailing slash"
                    ),
                ));
            }
        }
        let mk = &self.market;
        if mk.tick_ms == 0 || mk.tick_ms > 60_000 {
            return Err(invalid("market.tick_ms", "1 to 60000".into()));
        }
        if mk.nights_listed == 0 || mk.nights_listed > nightmarket_domain::market::MAX_NIGHTS_LISTED
        {
            return Err(invalid(
                "market.nights_listed",
                format!("1 to {}", nightmarket_domain::market::MAX_NIGHTS_LISTED),
            ));
        }
        if mk.stats_flush_ms == 0 || mk.stats_flush_ms > MAX_STATS_FLUSH_MS {
            return Err(invalid(
                "market.stats_flush_ms",
                format!("1 to {MAX_STATS_FLUSH_MS}"),
            ));
        }
        if self.database_timeout_ms == 0 {
            return Err(invalid("database_timeout_ms", "must be positive".into()));
        }
        if self.database_call_timeout_ms == 0 {
            return Err(invalid(
                "database_call_timeout_ms",
                "must be positive".into(),
            ));
        }
        let l = &self.limits;
        let positive: [(&'static str, u64); 16] = [
            ("limits.listen_backlog", u64::from(l.listen_backlog)),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_frame_bytes", l.max_frame_bytes as u64),
            ("limits.event_buffer", l.event_buffer as u64),
            ("limits.event_history", l.event_history as u64),
            ("limits.write_timeout_ms", l.write_timeout_ms),
            ("limits.queue_bytes", l.queue_bytes as u64),
            ("limits.stock_tick_ms", l.stock_tick_ms),
            ("limits.viewers_tick_ms", l.viewers_tick_ms),
            ("limits.feed_items", l.feed_items as u64),
            (
                "limits.messages_per_second",
                u64::from(l.messages_per_second),
            ),
            ("limits.message_burst", u64::from(l.message_burst)),
            ("limits.max_claim_quantity", u64::from(l.max_claim_quantity)),
            ("limits.journal_queue", l.journal_queue as u64),
            ("limits.max_lineup", l.max_lineup as u64),
            ("limits.shutdown_grace_ms", l.shutdown_grace_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if l.hard_frame_bytes < l.max_frame_bytes {
            return Err(invalid(
                "limits.hard_frame_bytes",
                format!(
                    "must be at least limits.max_frame_bytes ({})",
                    l.max_frame_bytes
                ),
            ));
        }
        let http_bounds: [(&'static str, usize, usize); 4] = [
            ("limits.max_body_bytes", l.max_body_bytes, MAX_BODY_BYTES),
            ("limits.max_uri_bytes", l.max_uri_bytes, MAX_URI_BYTES),
            (
                "limits.max_header_bytes",
                l.max_header_bytes,
                MAX_HEADER_BYTES,
            ),
            ("limits.max_headers", l.max_headers, MAX_HEADERS),
        ];
        for (key, v, most) in http_bounds {
            if !(1..=most).contains(&v) {
                return Err(invalid(key, format!("1 to {most}")));
            }
        }
        if l.waitlist_leave_grace_ms > MAX_WAITLIST_LEAVE_GRACE_MS {
            return Err(invalid(
                "limits.waitlist_leave_grace_ms",
                format!("0 to {MAX_WAITLIST_LEAVE_GRACE_MS}"),
            ));
        }
        if l.max_connections > 1_000_000 {
            return Err(invalid("limits.max_connections", "at most 1000000".into()));
        }
        if l.event_buffer > 1 << 20 {
            return Err(invalid("limits.event_buffer", "at most 1048576".into()));
        }
        if l.event_history > 1 << 20 {
            return Err(invalid("limits.event_history", "at most 1048576".into()));
        }
        if l.live_shards > MAX_LIVE_SHARDS {
            return Err(invalid(
                "limits.live_shards",
                format!("0 (one per CPU) to {MAX_LIVE_SHARDS}"),
            ));
        }
        if !(1..=MAX_CLAIM_DEADLINE_MS).contains(&l.claim_deadline_ms) {
            return Err(invalid(
                "limits.claim_deadline_ms",
                format!("1 to {MAX_CLAIM_DEADLINE_MS}"),
            ));
        }
        if !(1..=MAX_CLAIMS_IN_FLIGHT).contains(&l.claims_in_flight) {
            return Err(invalid(
                "limits.claims_in_flight",
                format!("1 to {MAX_CLAIMS_IN_FLIGHT}"),
            ));
        }
        let w = &self.webhooks;
        let positive: [(&'static str, u64); 8] = [
            ("webhooks.attempts", u64::from(w.attempts)),
            ("webhooks.backoff_ms", w.backoff_ms),
            ("webhooks.max_backoff_ms", w.max_backoff_ms),
            ("webhooks.timeout_ms", w.timeout_ms),
            ("webhooks.lease_ms", w.lease_ms),
            ("webhooks.batch", u64::from(w.batch)),
            ("webhooks.poll_ms", w.poll_ms),
            ("webhooks.max_in_flight", w.max_in_flight as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        // A week bounds every duration: far beyond any sensible value, and sums of them stay
        // well inside the store's millisecond timestamps.
        const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
        for (key, v) in [
            ("webhooks.backoff_ms", w.backoff_ms),
            ("webhooks.max_backoff_ms", w.max_backoff_ms),
            ("webhooks.timeout_ms", w.timeout_ms),
            ("webhooks.lease_ms", w.lease_ms),
            ("webhooks.poll_ms", w.poll_ms),
        ] {
            if v > WEEK_MS {
                return Err(invalid(key, format!("at most {WEEK_MS} (a week)")));
            }
        }
        if w.max_backoff_ms < w.backoff_ms {
            return Err(invalid(
                "webhooks.max_backoff_ms",
                format!("must be at least webhooks.backoff_ms ({})", w.backoff_ms),
            ));
        }
        if w.lease_ms <= w.timeout_ms {
            return Err(invalid(
                "webhooks.lease_ms",
                format!(
                    "must exceed webhooks.timeout_ms ({}): a delivery still in flight when its \
                     lease ends would be attempted again by another node",
                    w.timeout_ms
                ),
            ));
        }
        if w.batch > 10_000 {
            return Err(invalid("webhooks.batch", "at most 10000".into()));
        }
        if w.max_in_flight > 10_000 {
            return Err(invalid("webhooks.max_in_flight", "at most 10000".into()));
        }
        if !w.ca_file.is_empty() && !std::path::Path::new(&w.ca_file).is_file() {
            return Err(invalid(
                "webhooks.ca_file",
                format!("{} is not a readable file", w.ca_file),
            ));
        }
        let se = &self.sessions;
        for (key, v) in [
            ("sessions.invite_ttl_ms", se.invite_ttl_ms),
            ("sessions.token_ttl_ms", se.token_ttl_ms),
            ("sessions.max_life_ms", se.max_life_ms),
            (
                "sessions.guests_per_minute",
                u64::from(se.guests_per_minute),
            ),
            ("sessions.guest_burst", u64::from(se.guest_burst)),
            ("sessions.tracked_addresses", se.tracked_addresses as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        // The cookie token is re-signed once half its life has passed: a second is the floor
        // that keeps that from happening on every request.
        if se.token_ttl_ms < 2_000 || se.token_ttl_ms > se.max_life_ms {
            return Err(invalid(
                "sessions.token_ttl_ms",
                format!("2000 to sessions.max_life_ms ({})", se.max_life_ms),
            ));
        }
        for (key, v) in [
            ("sessions.invite_ttl_ms", se.invite_ttl_ms),
            ("sessions.max_life_ms", se.max_life_ms),
        ] {
            if v > 30 * 24 * 3600 * 1000 {
                return Err(invalid(key, "at most 2592000000 (30 days)".into()));
            }
        }
        if se.trusted_proxy_hops > 16 {
            return Err(invalid("sessions.trusted_proxy_hops", "0 to 16".into()));
        }
        if se.tracked_addresses > 1_000_000 {
            return Err(invalid(
                "sessions.tracked_addresses",
                "at most 1000000".into(),
            ));
        }
        if !(self.public_url.is_empty()
            || ((self.public_url.starts_with("http://")
                || self.public_url.starts_with("https://"))
                && !self.public_url.ends_with('/')))
        {
            return Err(invalid(
                "public_url",
                "expected http(s)://host[:port] without a trailing slash (empty: the request's Host)"
                    .into(),
            ));
        }
        let o = &self.orders;
        if o.batch == 0 || o.batch > MAX_ORDER_BATCH {
            return Err(invalid("orders.batch", format!("1 to {MAX_ORDER_BATCH}")));
        }
        if o.batches_per_show == 0 || o.batches_per_show > 10_000 {
            return Err(invalid("orders.batches_per_show", "1 to 10000".into()));
        }
        for (key, v) in [
            ("orders.poll_ms", o.poll_ms),
            ("orders.payment_window_ms", o.payment_window_ms),
            ("orders.sweep_ms", o.sweep_ms),
            ("orders.keep_settled_ms", o.keep_settled_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        for (key, v) in [
            ("orders.poll_ms", o.poll_ms),
            ("orders.sweep_ms", o.sweep_ms),
        ] {
            if v > WEEK_MS {
                return Err(invalid(key, format!("at most {WEEK_MS} (a week)")));
            }
        }
        // A payment window or a retention of up to a year: long enough for any market, and
        // deadlines stay well inside the store's millisecond timestamps.
        const YEAR_MS: u64 = 366 * 24 * 3600 * 1000;
        for (key, v) in [
            ("orders.payment_window_ms", o.payment_window_ms),
            ("orders.keep_settled_ms", o.keep_settled_ms),
        ] {
            if v > YEAR_MS {
                return Err(invalid(key, format!("at most {YEAR_MS} (a year)")));
            }
        }
        let max_batch = nightmarket_store::orders::MAX_ORDERS_PER_QUERY;
        if o.sweep_batch == 0 || o.sweep_batch > max_batch {
            return Err(invalid("orders.sweep_batch", format!("1 to {max_batch}")));
        }
        Ok(())
    }

    /// The origins of `http.cors_origins`; empty when CORS is off.
    pub fn cors_origins(&self) -> Vec<String> {
        split_list(&self.http.cors_origins)
    }

    /// The URLs in `redis_url`: one Redis, or the seed nodes of a Redis Cluster.
    pub fn redis_seeds(&self) -> Vec<String> {
        split_list(&self.redis_url)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            message: format!("{:?} is not host:port ({e})", self.listen),
        })
    }
}

/// The items of a comma-separated value, trimmed, without empty ones.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets the key an environment variable names, typed like the default it replaces.
fn apply_env(root: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let name = var.trim_start_matches("NIGHTMARKET_").to_ascii_lowercase();
    let env_err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    // A top-level key, or `<table>_<key>` for a key inside a table.
    let slot = if root.get(&name).is_some_and(|v| !v.is_table()) {
        root.get_mut(&name)
    } else {
        let mut found = None;
        for (table, value) in root.iter_mut() {
            if let (Some(rest), toml::Value::Table(t)) =
                (name.strip_prefix(&format!("{table}_")), value)
                && t.contains_key(rest)
            {
                found = t.get_mut(rest);
                break;
            }
        }
        found
    };
    let Some(slot) = slot else {
        return Err(env_err(
            "not a configuration key (see docs/configuration.md)".into(),
        ));
    };
    *slot = match slot {
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| env_err(format!("{raw:?} is not a whole number")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(env_err(format!("{raw:?} is not true or false"))),
        }),
        _ => toml::Value::String(raw.to_owned()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The live engine's bounds default to the engine's own defaults.
    #[test]
    fn live_engine_defaults_are_the_engines() {
        let l = Config::defaults().unwrap().limits;
        let engine = nightmarket_live::LiveConfig::default();
        assert_eq!(l.live_shards, 0, "one shard per CPU, as the engine");
        assert_eq!(l.event_buffer, engine.queue_frames);
        assert_eq!(l.event_history, engine.history);
        assert_eq!(l.queue_bytes, engine.queue_bytes);
        assert_eq!(
            std::time::Duration::from_millis(l.write_timeout_ms),
            engine.stall_timeout
        );
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.dev);
    }

    #[test]
    fn env_overrides_top_level_and_table_keys() {
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_LISTEN", "0.0.0.0:9000"),
                ("NIGHTMARKET_DATA_DIR", "/var/lib/nm"),
                ("NIGHTMARKET_LIMITS_MAX_FRAME_BYTES", "2048"),
                ("NIGHTMARKET_DEV", "false"),
                (
                    "NIGHTMARKET_AUTH_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("NIGHTMARKET_LOG", "debug"),
                ("NIGHTMARKET_TEST_REDIS_URL", "redis://x"),
            ]),
        )
        .expect("overrides load");
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/nm"));
        assert_eq!(c.limits.max_frame_bytes, 2048);
        assert!(!c.dev);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::load(None, env(&[("NIGHTMARKET_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e =
            Config::load(None, env(&[("NIGHTMARKET_LIMITS_EVENT_BUFFER", "lots")])).unwrap_err();
        assert!(
            e.to_string().contains("NIGHTMARKET_LIMITS_EVENT_BUFFER"),
            "{e}"
        );
        let e = Config::load(None, env(&[("NIGHTMARKET_LIMITS_EVENT_BUFFER", "0")])).unwrap_err();
        assert!(e.to_string().contains("limits.event_buffer"), "{e}");
        let e = Config::load(None, env(&[("NIGHTMARKET_LSITEN", "x")])).unwrap_err();
        assert!(e.to_string().contains("NIGHTMARKET_LSITEN"), "{e}");
        let e = Config::load(None, env(&[("NIGHTMARKET_DEV", "false")])).unwrap_err();
        assert!(e.to_string().contains("auth_secret"), "{e}");
        let e = Config::load(None, env(&[("NIGHTMARKET_AUTH_SECRET", "short")])).unwrap_err();
        assert!(e.to_string().contains("at least 32 bytes"), "{e}");
    }

    #[test]
    fn a_redis_cluster_takes_its_seed_nodes_from_redis_url() {
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_REDIS_CLUSTER", "true"),
                (
                    "NIGHTMARKET_REDIS_URL",
                    "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
                ),
            ]),
        )
        .expect("cluster config loads");
        assert!(c.redis_cluster);
        assert_eq!(
            c.redis_seeds(),
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        let e = Config::load(None, env(&[("NIGHTMARKET_REDIS_CLUSTER", "true")])).unwrap_err();
        assert!(e.to_string().contains("redis_cluster"), "{e}");
        let e = Config::load(
            None,
            env(&[("NIGHTMARKET_REDIS_URL", "redis://a:1,redis://b:1")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redis_cluster = true"), "{e}");
        let e = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_REDIS_CLUSTER", "yes"),
                ("NIGHTMARKET_REDIS_URL", "redis://a:1,b:1"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redis_url"), "{e}");
    }

    #[test]
    fn webhook_keys_load_and_validate() {
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_WEBHOOKS_ATTEMPTS", "3"),
                ("NIGHTMARKET_WEBHOOKS_MAX_IN_FLIGHT", "4"),
            ]),
        )
        .expect("webhook overrides load");
        assert_eq!(c.webhooks.attempts, 3);
        assert_eq!(c.webhooks.max_in_flight, 4);
        assert_eq!(c.webhooks.lease_ms, 60_000);
        let e = Config::load(None, env(&[("NIGHTMARKET_WEBHOOKS_BATCH", "0")])).unwrap_err();
        assert!(e.to_string().contains("webhooks.batch"), "{e}");
        let e = Config::load(None, env(&[("NIGHTMARKET_WEBHOOKS_LEASE_MS", "10000")])).unwrap_err();
        assert!(e.to_string().contains("webhooks.lease_ms"), "{e}");
        assert!(e.to_string().contains("timeout_ms"), "{e}");
        let e =
            Config::load(None, env(&[("NIGHTMARKET_WEBHOOKS_MAX_BACKOFF_MS", "10")])).unwrap_err();
        assert!(e.to_string().contains("webhooks.max_backoff_ms"), "{e}");
    }

    #[test]
    fn order_keys_load_and_validate() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.orders.payment_window_ms, 24 * 3600 * 1000);
        assert_eq!(c.orders.sweep_ms, 60_000);
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_ORDERS_PAYMENT_WINDOW_MS", "7200000"),
                ("NIGHTMARKET_ORDERS_SWEEP_MS", "1000"),
            ]),
        )
        .expect("order overrides load");
        assert_eq!(c.orders.payment_window_ms, 7_200_000);
        assert_eq!(c.orders.sweep_ms, 1000);
        for (var, key) in [
            (
                "NIGHTMARKET_ORDERS_PAYMENT_WINDOW_MS",
                "orders.payment_window_ms",
            ),
            ("NIGHTMARKET_ORDERS_SWEEP_MS", "orders.sweep_ms"),
            ("NIGHTMARKET_ORDERS_SWEEP_BATCH", "orders.sweep_batch"),
        ] {
            let e = Config::load(None, env(&[(var, "0")])).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let e = Config::load(
            None,
            env(&[("NIGHTMARKET_ORDERS_PAYMENT_WINDOW_MS", "999999999999")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("orders.payment_window_ms"), "{e}");
    }

    #[test]
    fn stats_flush_interval_loads_and_validates() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.market.stats_flush_ms, 5000);
        let c = Config::load(None, env(&[("NIGHTMARKET_MARKET_STATS_FLUSH_MS", "250")]))
            .expect("override loads");
        assert_eq!(c.market.stats_flush_ms, 250);
        for bad in ["0", "600001"] {
            let e =
                Config::load(None, env(&[("NIGHTMARKET_MARKET_STATS_FLUSH_MS", bad)])).unwrap_err();
            assert!(e.to_string().contains("market.stats_flush_ms"), "{e}");
        }
    }

    #[test]
    fn claim_deadline_and_in_flight_load_and_validate() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.limits.claim_deadline_ms, 500);
        assert_eq!(c.limits.claims_in_flight, 20);
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_LIMITS_CLAIM_DEADLINE_MS", "250"),
                ("NIGHTMARKET_LIMITS_CLAIMS_IN_FLIGHT", "4"),
            ]),
        )
        .expect("overrides load");
        assert_eq!(
            (c.limits.claim_deadline_ms, c.limits.claims_in_flight),
            (250, 4)
        );
        for (var, bad, key) in [
            (
                "NIGHTMARKET_LIMITS_CLAIM_DEADLINE_MS",
                "0",
                "limits.claim_deadline_ms",
            ),
            (
                "NIGHTMARKET_LIMITS_CLAIM_DEADLINE_MS",
                "10001",
                "limits.claim_deadline_ms",
            ),
            (
                "NIGHTMARKET_LIMITS_CLAIMS_IN_FLIGHT",
                "0",
                "limits.claims_in_flight",
            ),
            (
                "NIGHTMARKET_LIMITS_CLAIMS_IN_FLIGHT",
                "257",
                "limits.claims_in_flight",
            ),
        ] {
            let e = Config::load(None, env(&[(var, bad)])).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn http_rules_load_and_validate() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.http.request_timeout_ms, 30_000);
        assert!(c.cors_origins().is_empty(), "CORS is off by default");
        let c = Config::load(
            None,
            env(&[
                ("NIGHTMARKET_HTTP_REQUEST_TIMEOUT_MS", "250"),
                (
                    "NIGHTMARKET_HTTP_CORS_ORIGINS",
                    "https://cho.example.vn, http://localhost:5173",
                ),
            ]),
        )
        .expect("overrides load");
        assert_eq!(c.http.request_timeout_ms, 250);
        assert_eq!(
            c.cors_origins(),
            ["https://cho.example.vn", "http://localhost:5173"]
        );
        for (var, bad) in [
            ("NIGHTMARKET_HTTP_REQUEST_TIMEOUT_MS", "0"),
            ("NIGHTMARKET_HTTP_REQUEST_TIMEOUT_MS", "600001"),
            ("NIGHTMARKET_HTTP_CORS_ORIGINS", "https://cho.example.vn/"),
            ("NIGHTMARKET_HTTP_CORS_ORIGINS", "cho.example.vn"),
            ("NIGHTMARKET_HTTP_CORS_ORIGINS", "*"),
            ("NIGHTMARKET_HTTP_CORS_ORIGINS", "ftp://cho.example.vn"),
        ] {
            let e = Config::load(None, env(&[(var, bad)])).unwrap_err();
            assert!(e.to_string().contains("http."), "{var}={bad}: {e}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::defaults().expect("defaults");
        assert!(!format!("{c:?}").contains(DEV_SECRET));
    }
}
