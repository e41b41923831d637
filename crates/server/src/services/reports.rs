//! Reports: a settled show's and a market night's, as the store adds them up, and the figures
//! computed rather than read: the live panel of a show.

use jiff::civil::Date;
use nightmarket_domain::{Millis, SellerId, ShowId};
use nightmarket_store::{NightReport, ShowReport, ShowRow, Store};
use nightmarket_wire::http::{LiveStats, ProductLiveStats};

use crate::services::ServiceResult;
use crate::services::market::Calendar;
use crate::services::shows::Shows;
use crate::show_stats::minute_of;

/// A settled show's report; refused `not_settled` while it is not.
pub async fn show_report(store: &Store, show: &ShowId) -> ServiceResult<ShowReport> {
    Ok(store.show_report(show).await?)
}

/// A market night's report over its settled shows (of one seller, when `only` is given).
pub async fn night_report(
    store: &Store,
    cal: &Calendar,
    night: Date,
    only: Option<&SellerId>,
) -> ServiceResult<NightReport> {
    Ok(store.night_report(&cal.row.id, night, only).await?)
}

/// How far back `claims_last_minute` looks, in milliseconds.
const CLAIM_RATE_WINDOW_MS: i64 = 60_000;

/// The live panel of a show, for its seller and the operator's board. Stock and units come from
/// the inventory (exact, now); viewers from what every node reports each minute; values in đồng
/// and the claim rate from the claim log as the order service has recorded it so far.
pub async fn live_stats(
    store: &Store,
    shows: &Shows,
    row: &ShowRow,
    now: Millis,
) -> ServiceResult<LiveStats> {
    let (status, lineup, accepted) = match shows.view(&row.id).await? {
        Some(view) => (view.status, Some(view.lineup), view.accepted_claims),
        None => (row.status, None, 0),
    };
    let sales = store
        .live_sales(&row.id, now - CLAIM_RATE_WINDOW_MS)
        .await?;
    let minute = minute_of(now);
    let local = shows
        .runtime(&row.id)
        .map_or(0, |rt| rt.channel.viewer_count());
    let viewers = store
        .show_recent_viewers(&row.id, minute - 1)
        .await?
        .max(local);
    let peak = store.show_peak_viewers(&row.id).await?.max(viewers);
    let gmv_of = |p: &str| {
        sales
            .gmv
            .iter()
            .find(|(id, _)| id == p)
            .map_or(0, |(_, v)| *v)
    };
    let products: Vec<ProductLiveStats> = match lineup {
        Some(entries) => entries
            .iter()
            .map(|e| ProductLiveStats {
                product_id: e.product.id.to_string(),
                name: e.product.name.clone(),
                list_price: e.product.list_price.get(),
                allotted: e.allotted,
                left: e.left,
                units_sold: e.allotted.saturating_sub(e.left),
                gmv: gmv_of(e.product.id.as_str()),
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(LiveStats {
        show_id: row.id.to_string(),
        status: status.as_str().into(),
        viewers,
        peak_viewers: peak,
        accepted_claims: accepted,
        claims_last_minute: sales.claims_since,
        units_sold: products.iter().map(|p| u64::from(p.units_sold)).sum(),
        gmv: products.iter().map(|p| p.gmv).sum(),
        recorded_entries: sales.entries,
        products,
    })
}
