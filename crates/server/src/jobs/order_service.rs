//! The order service as the server runs it: built from the configuration, woken when a show
//! closes, emitting `show.settled` in the settlement's own transaction.

use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::ShowId;
use nightmarket_inventory::Inventory;
use nightmarket_orders::{Report, Settler, SettlerLimits};
use nightmarket_store::{Store, WebhookEvent};

use crate::clock::SharedClock;
use crate::config::Config;

/// The webhook event a settled show sends: the reconciliation in brief; subscribers fetch the
/// orders and the report from the API.
pub fn settled_event(show: &ShowId, report: &Report, at: i64) -> WebhookEvent {
    let name = "show.settled";
    let units: u64 = report
        .products
        .iter()
        .map(|p| p.claimed_units.saturating_sub(p.cancelled_units))
        .sum();
    let payload = serde_json::json!({
        "id": format!("{name}:{show}"),
        "type": name,
        "at": at,
        "show_id": show,
        "settlement": {
            "claim_log_entries": report.log_entries_recorded,
            "units": units,
            "products": report.products.len(),
        },
    });
    WebhookEvent {
        id: format!("{name}:{show}"),
        name: name.to_owned(),
        payload: payload.to_string(),
        at,
    }
}

/// The settler the configuration describes, recorded as `actor`, on the server's clock.
pub fn settler(
    config: &Config,
    store: Arc<Store>,
    inventory: Arc<dyn Inventory>,
    clock: SharedClock,
    actor: &str,
) -> Settler {
    let o = &config.orders;
    let limits = SettlerLimits {
        batch: o.batch,
        batches_per_show: o.batches_per_show,
        poll: Duration::from_millis(o.poll_ms),
        payment_window: Duration::from_millis(o.payment_window_ms),
        keep_settled: Duration::from_millis(o.keep_settled_ms),
        ..SettlerLimits::default()
    };
    Settler::new(store, inventory, limits)
        .with_actor(actor)
        .with_event(Arc::new(settled_event))
        .with_clock(clock)
}
