//! Prometheus metrics through the `metrics` crate and `metrics-exporter-prometheus`, rendered
//! by the server's own `/metrics` handler (the exporter runs no listener of its own).
//!
//! Each server has its own recorder (not the process-wide one), so several servers in one
//! process (the tests) keep separate figures. Every handle is registered once, when the server
//! starts, and kept here: the hot paths never look a metric up by name.
//!
//! What a record costs on a hot path:
//! - a counter increment: one relaxed atomic add on the handle's `AtomicU64`;
//! - a gauge change: one compare-and-swap loop on an `AtomicU64` (connections open only);
//! - a histogram record: a clock read (`quanta`, the TSC) and a lock-free push of the sample
//!   into an append-only block list (a 1 KiB block allocated every 64 samples), drained into
//!   the buckets at each render and by the upkeep task every [`UPKEEP_EVERY`]. The fan-out
//!   itself records nothing here: the live engine counts per shard, and its counters and lag
//!   samples (one per shard walk) are copied in at each render (`Live::observe`).
//!
//! Labels are bounded: no metric carries a show label (a night has many shows and a node may
//! serve any of them), only the fixed sets `outcome` (4 values), `reason` (an error code, at
//! most `ErrorCode::ALL`), `cause` (2) and the webhook `outcome` (3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use nightmarket_wire::ErrorCode;

/// How often the histograms' samples are folded into their buckets when nobody scrapes: bounds
/// the samples held between two scrapes to what arrives in this time.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

pub const CLAIM_ANSWER: &str = "nightmarket_claim_answer_seconds";
pub const FANOUT_LAG: &str = "nightmarket_fanout_lag_seconds";
pub const JOURNAL_COMMIT: &str = "nightmarket_journal_commit_seconds";
pub const SETTLEMENT: &str = "nightmarket_settlement_seconds";

/// Bucket bounds in seconds. Claims are answered within the claim deadline (500 ms by
/// default); a frame reaches a socket within the write timeout; a group commit is one fsync;
/// a settlement of a night's show takes seconds.
const CLAIM_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const FANOUT_BUCKETS: [f64; 13] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const JOURNAL_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const SETTLEMENT_BUCKETS: [f64; 11] =
    [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// Webhook delivery attempts of this node, by outcome: the deliverer's own counts (tests read
/// them), copied into the exported counters at each render.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub retry: AtomicU64,
    /// Attempts after which the delivery is given up (410 Gone, or attempts exhausted).
    pub failed: AtomicU64,
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    viewers: Gauge,
    shows_loaded: Gauge,
    show_stats_held: Gauge,
    pub events_published: Counter,
    /// Event frames written whole to connections, one per connection per event: the live
    /// engine's per-shard count, copied at each render (`Live::observe`).
    pub events_fanned_out: Counter,
    pub conflated_frames_published: Counter,
    pub frames_sent: Counter,
    pub claims_accepted: Counter,
    pub claims_duplicate: Counter,
    /// Claims answered `pending` (their outcome unknown at the claim deadline); each is
    /// answered again once it is known.
    pub claims_pending: Counter,
    claims_refused: Counter,
    /// Refused claims by reason, indexed like `ErrorCode::ALL`; registered at the first
    /// refusal of each, so only reasons seen are listed.
    refused_by_reason: [OnceLock<Counter>; ErrorCode::ALL.len()],
    pub cancels: Counter,
    /// Connections closed because no catch-up bridged what they missed (`resync`): the live
    /// engine's count, copied at each render.
    pub drops_resync: Counter,
    /// Connections closed because they stopped reading (`write_timeout`): the engine's count.
    pub drops_write_timeout: Counter,
    /// Client messages refused by the per-connection rate limit.
    pub rate_limited: Counter,
    /// Error frames sent for bad input.
    pub bad_input: Counter,
    /// Webhook delivery attempts, shared with the deliverer.
    pub webhooks: Arc<WebhookCounters>,
    webhook_outcomes: [Counter; 3],
    /// From a claim read off the socket to its first answer handed to the connection's writer.
    pub claim_answer: Histogram,
    /// From an event published to this node's show channel to its frame written to a socket
    /// (one sample per walk of a shard over a show's viewers).
    pub fanout_lag: Histogram,
    /// One group commit of the embedded claim journal (its transaction and fsync).
    pub journal_commit: Histogram,
    /// One settlement of a closed show by this node's order service.
    pub settlement: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn inc(c: &Counter) {
    c.increment(1);
}

/// The recorder with our histograms' buckets. Only a bad bucket list fails, and ours are
/// constants; should it fail anyway, the histograms fall back to summaries.
fn recorder() -> PrometheusRecorder {
    let builder = PrometheusBuilder::new();
    let with_buckets = [
        (CLAIM_ANSWER, &CLAIM_BUCKETS[..]),
        (FANOUT_LAG, &FANOUT_BUCKETS[..]),
        (JOURNAL_COMMIT, &JOURNAL_BUCKETS[..]),
        (SETTLEMENT, &SETTLEMENT_BUCKETS[..]),
    ]
    .into_iter()
    .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
    });
    with_buckets.unwrap_or(builder).build_recorder()
}

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

impl Metrics {
    pub fn new() -> Self {
        let recorder = recorder();
        let handle = recorder.handle();
        let r = &recorder;
        let describe = |name: &'static str, help: &'static str| {
            let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            (name, help)
        };
        let counter = |name: &'static str, help: &'static str| {
            let (key, text) = describe(name, help);
            r.describe_counter(key, None, text);
            r.register_counter(&Key::from_static_name(name), &META)
        };
        let labelled = |name: &'static str, label: &'static str, value: &'static str| {
            let key = Key::from_parts(name, vec![Label::from_static_parts(label, value)]);
            r.register_counter(&key, &META)
        };
        let gauge = |name: &'static str, help: &'static str| {
            let (key, text) = describe(name, help);
            r.describe_gauge(key, None, text);
            r.register_gauge(&Key::from_static_name(name), &META)
        };
        let histogram = |name: &'static str, help: &'static str| {
            let (key, text) = describe(name, help);
            r.describe_histogram(key, Some(metrics::Unit::Seconds), text);
            r.register_histogram(&Key::from_static_name(name), &META)
        };
        for (name, help) in [
            ("nightmarket_claims_total", "Claims answered, by outcome."),
            (
                "nightmarket_claims_refused_total",
                "Refused claims, by reason.",
            ),
            (
                "nightmarket_queue_drops_total",
                "Connections dropped for not keeping up, by cause.",
            ),
            (
                "nightmarket_webhook_deliveries_total",
                "Webhook delivery attempts made by this node, by outcome.",
            ),
        ] {
            let (key, text) = describe(name, help);
            r.describe_counter(key, None, text);
        }
        Self {
            connections_open: gauge("nightmarket_connections", "WebSocket connections open now."),
            connections_total: counter(
                "nightmarket_connections_total",
                "WebSocket connections accepted.",
            ),
            connections_refused: counter(
                "nightmarket_connections_refused_total",
                "WebSocket connections refused at max_connections.",
            ),
            viewers: gauge(
                "nightmarket_viewers",
                "Viewers watching a show on this node.",
            ),
            shows_loaded: gauge("nightmarket_shows_loaded", "Shows loaded on this node."),
            show_stats_held: gauge(
                "nightmarket_show_stats_held",
                "Shows whose report statistics this node holds: those it serves, and those \
                 whose last figures the store does not have yet.",
            ),
            events_published: counter(
                "nightmarket_events_published_total",
                "Sequenced show events published.",
            ),
            events_fanned_out: counter(
                "nightmarket_events_fanned_out_total",
                "Event frames written whole to WebSocket connections: one per connection per \
                 event (an event a slow connection skipped through a catch-up is not counted).",
            ),
            conflated_frames_published: counter(
                "nightmarket_conflated_frames_published_total",
                "Stock, feed and viewer frames published.",
            ),
            frames_sent: counter(
                "nightmarket_frames_sent_total",
                "Frames written to WebSocket connections.",
            ),
            claims_accepted: labelled("nightmarket_claims_total", "outcome", "accepted"),
            claims_duplicate: labelled("nightmarket_claims_total", "outcome", "duplicate"),
            claims_pending: labelled("nightmarket_claims_total", "outcome", "pending"),
            claims_refused: labelled("nightmarket_claims_total", "outcome", "refused"),
            refused_by_reason: std::array::from_fn(|_| OnceLock::new()),
            cancels: counter("nightmarket_cancels_total", "Claims cancelled."),
            drops_resync: labelled("nightmarket_queue_drops_total", "cause", "resync"),
            drops_write_timeout: labelled(
                "nightmarket_queue_drops_total",
                "cause",
                "write_timeout",
            ),
            rate_limited: counter(
                "nightmarket_rate_limited_total",
                "Client messages refused by the rate limit.",
            ),
            bad_input: counter(
                "nightmarket_bad_input_total",
                "Error frames sent for bad client input.",
            ),
            webhooks: Arc::default(),
            webhook_outcomes: ["delivered", "retry", "failed"]
                .map(|o| labelled("nightmarket_webhook_deliveries_total", "outcome", o)),
            claim_answer: histogram(
                CLAIM_ANSWER,
                "From a claim read off the socket to its first answer (accepted, refused, \
                 unavailable or pending).",
            ),
            fanout_lag: histogram(
                FANOUT_LAG,
                "From an event published to this node's show channel to its frame written to \
                 every connection of one shard; one sample per shard walk.",
            ),
            journal_commit: histogram(
                JOURNAL_COMMIT,
                "One group commit of the embedded claim journal, fsync included (stream-event groups are synced later).",
            ),
            settlement: histogram(
                SETTLEMENT,
                "One settlement of a closed show by this node's order service.",
            ),
            handle,
            recorder,
        }
    }

    /// Counts a refused claim: in the `refused` outcome and under its reason.
    pub fn refused(&self, code: ErrorCode) {
        inc(&self.claims_refused);
        let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) else {
            return;
        };
        let Some(slot) = self.refused_by_reason.get(i) else {
            return;
        };
        let counter = slot.get_or_init(|| {
            let label = Label::new("reason", code.as_str());
            let key = Key::from_parts("nightmarket_claims_refused_total", vec![label]);
            self.recorder.register_counter(&key, &META)
        });
        inc(counter);
    }

    /// Folds the histograms' samples into their buckets (see [`UPKEEP_EVERY`]).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition. `shows_loaded`, `viewers` and `show_stats_held` are read
    /// by the caller now.
    pub fn render(&self, shows_loaded: usize, viewers: u64, show_stats_held: usize) -> String {
        self.shows_loaded.set(shows_loaded as f64);
        self.show_stats_held.set(show_stats_held as f64);
        self.viewers.set(viewers as f64);
        let w = &self.webhooks;
        for (counter, count) in
            self.webhook_outcomes
                .iter()
                .zip([&w.delivered, &w.retry, &w.failed])
        {
            counter.absolute(count.load(Ordering::Relaxed));
        }
        self.handle.render()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_type() {
        let m = Metrics::new();
        inc(&m.claims_accepted);
        m.refused(ErrorCode::SoldOut);
        m.connections_open.increment(1.0);
        m.claim_answer.record(Duration::from_millis(3));
        m.webhooks.delivered.fetch_add(2, Ordering::Relaxed);
        let text = m.render(1, 7, 2);
        for (name, kind) in [
            ("nightmarket_connections", "gauge"),
            ("nightmarket_connections_total", "counter"),
            ("nightmarket_connections_refused_total", "counter"),
            ("nightmarket_viewers", "gauge"),
            ("nightmarket_shows_loaded", "gauge"),
            ("nightmarket_show_stats_held", "gauge"),
            ("nightmarket_events_published_total", "counter"),
            ("nightmarket_events_fanned_out_total", "counter"),
            ("nightmarket_conflated_frames_published_total", "counter"),
            ("nightmarket_frames_sent_total", "counter"),
            ("nightmarket_claims_total", "counter"),
            ("nightmarket_claims_refused_total", "counter"),
            ("nightmarket_cancels_total", "counter"),
            ("nightmarket_queue_drops_total", "counter"),
            ("nightmarket_rate_limited_total", "counter"),
            ("nightmarket_bad_input_total", "counter"),
            ("nightmarket_webhook_deliveries_total", "counter"),
            (CLAIM_ANSWER, "histogram"),
            (FANOUT_LAG, "histogram"),
            (JOURNAL_COMMIT, "histogram"),
            (SETTLEMENT, "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing from\n{text}"
            );
        }
        for line in [
            "nightmarket_claims_total{outcome=\"accepted\"} 1",
            "nightmarket_claims_total{outcome=\"refused\"} 1",
            "nightmarket_claims_refused_total{reason=\"sold_out\"} 1",
            "nightmarket_connections 1",
            "nightmarket_viewers 7",
            "nightmarket_shows_loaded 1",
            "nightmarket_show_stats_held 2",
            "nightmarket_webhook_deliveries_total{outcome=\"delivered\"} 2",
            "nightmarket_claim_answer_seconds_bucket{le=\"0.005\"} 1",
            "nightmarket_claim_answer_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        // Only reasons seen are listed.
        assert!(!text.contains("reason=\"stale_price\""), "{text}");
    }

    #[test]
    fn two_servers_keep_their_own_figures() {
        let (a, b) = (Metrics::new(), Metrics::new());
        inc(&a.cancels);
        assert!(a.render(0, 0, 0).contains("nightmarket_cancels_total 1"));
        assert!(b.render(0, 0, 0).contains("nightmarket_cancels_total 0"));
    }
}
