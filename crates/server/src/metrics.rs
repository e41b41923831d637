//! Prometheus metrics, kept as plain atomics and rendered by hand: a handful of counters does
//! not need a metrics framework on the hot path.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nightmarket_wire::ErrorCode;

#[derive(Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub events_published: AtomicU64,
    /// Sequenced frames handed to connections: one per receiver per event.
    pub events_fanned_out: AtomicU64,
    pub conflated_frames_published: AtomicU64,
    pub frames_sent: AtomicU64,
    pub claims_accepted: AtomicU64,
    pub claims_duplicate: AtomicU64,
    /// Claims answered `pending` (their outcome unknown at the claim deadline); each is
    /// answered again once it is known.
    pub claims_pending: AtomicU64,
    /// Refused claims, indexed like `ErrorCode::ALL`.
    pub claims_refused: PerCode,
    pub cancels: AtomicU64,
    /// Connections closed because they fell behind the event ring (`resync`).
    pub drops_resync: AtomicU64,
    /// Connections closed because a write did not complete in time.
    pub drops_write_timeout: AtomicU64,
    /// Client messages refused by the per-connection rate limit.
    pub rate_limited: AtomicU64,
    /// Error frames sent for bad input.
    pub bad_input: AtomicU64,
    /// Webhook delivery attempts, shared with the deliverer.
    pub webhooks: Arc<WebhookCounters>,
}

/// One counter per error code, indexed like `ErrorCode::ALL` (more codes than `Default`
/// covers for arrays).
pub struct PerCode(pub [AtomicU64; ErrorCode::ALL.len()]);

impl Default for PerCode {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl std::ops::Deref for PerCode {
    type Target = [AtomicU64; ErrorCode::ALL.len()];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Webhook delivery attempts of this node, by outcome.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub retry: AtomicU64,
    /// Attempts after which the delivery is given up (410 Gone, or attempts exhausted).
    pub failed: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn refused(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            inc(&self.claims_refused[i]);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, shows_loaded: usize, viewers: u64) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        metric(
            "nightmarket_connections",
            "gauge",
            "WebSocket connections open now.",
            &one(g(&self.connections_open)),
        );
        metric(
            "nightmarket_connections_total",
            "counter",
            "WebSocket connections accepted.",
            &one(g(&self.connections_total)),
        );
        metric(
            "nightmarket_connections_refused_total",
            "counter",
            "WebSocket connections refused at max_connections.",
            &one(g(&self.connections_refused)),
        );
        metric(
            "nightmarket_viewers",
            "gauge",
            "Viewers watching a show on this node.",
            &one(viewers),
        );
        metric(
            "nightmarket_shows_loaded",
            "gauge",
            "Shows loaded on this node.",
            &one(shows_loaded as u64),
        );
        metric(
            "nightmarket_events_published_total",
            "counter",
            "Sequenced show events published.",
            &one(g(&self.events_published)),
        );
        metric(
            "nightmarket_events_fanned_out_total",
            "counter",
            "Sequenced event frames handed to connections.",
            &one(g(&self.events_fanned_out)),
        );
        metric(
            "nightmarket_conflated_frames_published_total",
            "counter",
            "Stock, feed and viewer frames published.",
            &one(g(&self.conflated_frames_published)),
        );
        metric(
            "nightmarket_frames_sent_total",
            "counter",
            "Frames written to WebSocket connections.",
            &one(g(&self.frames_sent)),
        );
        let mut claims = vec![
            (
                "{outcome=\"accepted\"}".to_string(),
                g(&self.claims_accepted),
            ),
            (
                "{outcome=\"duplicate\"}".to_string(),
                g(&self.claims_duplicate),
            ),
            ("{outcome=\"pending\"}".to_string(), g(&self.claims_pending)),
        ];
        let refused: u64 = self.claims_refused.iter().map(g).sum();
        claims.push(("{outcome=\"refused\"}".to_string(), refused));
        metric(
            "nightmarket_claims_total",
            "counter",
            "Claims answered, by outcome.",
            &claims,
        );
        let reasons: Vec<(String, u64)> = ErrorCode::ALL
            .iter()
            .zip(self.claims_refused.iter())
            .filter(|(_, c)| g(c) > 0)
            .map(|(code, c)| (format!("{{reason=\"{}\"}}", code.as_str()), g(c)))
            .collect();
        metric(
            "nightmarket_claims_refused_total",
            "counter",
            "Refused claims, by reason.",
            &reasons,
        );
        metric(
            "nightmarket_cancels_total",
            "counter",
            "Claims cancelled.",
            &one(g(&self.cancels)),
        );
        metric(
            "nightmarket_queue_drops_total",
            "counter",
            "Connections dropped for not keeping up, by cause.",
            &[
                ("{cause=\"resync\"}".to_string(), g(&self.drops_resync)),
                (
                    "{cause=\"write_timeout\"}".to_string(),
                    g(&self.drops_write_timeout),
                ),
            ],
        );
        metric(
            "nightmarket_rate_limited_total",
            "counter",
            "Client messages refused by the rate limit.",
            &one(g(&self.rate_limited)),
        );
        metric(
            "nightmarket_bad_input_total",
            "counter",
            "Error frames sent for bad client input.",
            &one(g(&self.bad_input)),
        );
        let w = &self.webhooks;
        metric(
            "nightmarket_webhook_deliveries_total",
            "counter",
            "Webhook delivery attempts made by this node, by outcome.",
            &[
                ("{outcome=\"delivered\"}".to_string(), g(&w.delivered)),
                ("{outcome=\"retry\"}".to_string(), g(&w.retry)),
                ("{outcome=\"failed\"}".to_string(), g(&w.failed)),
            ],
        );
        out
    }
}
