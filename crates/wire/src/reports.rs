//! HTTP bodies of the reports over settled shows (`GET /api/shows/{id}/report`,
//! `GET /api/markets/{id}/nights/{date}/report`); `docs/reports.md` describes every field.
//!
//! Money is integer đồng. "Sold" is what settlement turned into orders; orders cancelled since
//! (unpaid by the deadline, or cancelled by the buyer or an operator) stay in `units` and
//! `revenue` and are reported beside them in `units_cancelled` and `revenue_cancelled`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The figures of one product in one show, or of any set of those added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Units the lineup allotted.
    pub allotted: u64,
    /// Units settled into orders.
    pub units: u64,
    /// Σ quantity × the unit price each claim was accepted at.
    pub revenue: i64,
    /// The same units at list price.
    pub list_revenue: i64,
    /// `list_revenue - revenue`: what the market's prices spared the buyers.
    pub discount: i64,
    /// Units claimed during a flash sale, and their revenue.
    pub flash_units: u64,
    pub flash_revenue: i64,
    /// Units sold outside a flash sale (at list price), and their revenue.
    pub regular_units: u64,
    pub regular_revenue: i64,
    /// Of `units` and `revenue`, those in orders cancelled since settlement.
    pub units_cancelled: u64,
    pub revenue_cancelled: i64,
    /// `units / allotted` in basis points (10000 = all sold), rounded down; null when nothing
    /// was allotted.
    pub sell_through_bp: Option<u64>,
}

/// One product of one settled show, with the programme's dimensions as the settlement priced
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductLine {
    pub show_id: String,
    pub seller_id: String,
    pub seller_name: String,
    pub product_id: String,
    /// Place in the show's lineup, from 0.
    pub position: u32,
    pub name: String,
    /// OCOP product group: `food`, `beverages`, `herbs`, `handicrafts`, `fabric_garments`,
    /// `rural_tourism`.
    pub group: String,
    pub district: String,
    pub stars: u8,
    pub list_price: i64,
    /// Buyers with this product in their order.
    pub buyers: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Claims refused for one reason (a claim refusal code of docs/protocol.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refusals {
    pub reason: String,
    pub count: u64,
}

/// What a report counts over its settled shows, a show's or a night's, each figure over the
/// whole set; its fields stand directly in both reports' bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportTally {
    pub orders: u64,
    /// Distinct buyers (over a night, a buyer of two shows counts once).
    pub buyers: u64,
    pub orders_cancelled: u64,
    /// The sum of the product lines.
    pub totals: Figures,
    /// Claims refused, summed over every node; `refused` is their sum.
    pub refused: u64,
    pub refusals: Vec<Refusals>,
    /// The most viewers at once (per minute, summed over nodes and, for a night, its shows).
    pub peak_viewers: u64,
}

/// One settled show's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShowSummary {
    pub show_id: String,
    pub seller_id: String,
    pub seller_name: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night_date: Option<String>,
    /// When the order service settled it, ms since the epoch.
    pub settled_at: i64,
    #[serde(flatten)]
    pub tally: ReportTally,
}

/// `GET /api/shows/{id}/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShowReport {
    #[serde(flatten)]
    pub show: ShowSummary,
    /// Every lineup product, in lineup order, sold or not.
    pub products: Vec<ProductLine>,
}

/// A show of the night not in the figures yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingShow {
    pub show_id: String,
    pub seller_id: String,
    pub seller_name: String,
    pub title: String,
    /// The show's status: `scheduled`, `live` or `closed`.
    pub status: String,
    /// `pending` (the order service has not settled it) or `mismatch` (reconciliation stopped
    /// it; an operator must look).
    pub settlement: String,
}

/// One group of a programme view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProgrammeGroup {
    /// The product group, district, star rating (`"4"`) or seller id.
    pub key: String,
    /// The seller's name, in the seller view only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_name: Option<String>,
    /// Settled shows and distinct products in the group.
    pub shows: u64,
    pub products: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The night by the programme's dimensions; each view adds up to the night's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Programme {
    pub groups: Vec<ProgrammeGroup>,
    pub districts: Vec<ProgrammeGroup>,
    pub stars: Vec<ProgrammeGroup>,
    pub sellers: Vec<ProgrammeGroup>,
}

/// `GET /api/markets/{id}/nights/{date}/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NightReport {
    pub market_id: String,
    pub night_date: String,
    /// Set when the report covers only this seller's shows (a seller's own view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    /// No show of the night (in this view) is pending.
    pub complete: bool,
    /// Settled shows, by slot.
    pub shows: Vec<ShowSummary>,
    /// Shows not settled yet, by slot; not in any figure.
    pub pending: Vec<PendingShow>,
    /// Over the settled shows together.
    #[serde(flatten)]
    pub tally: ReportTally,
    pub programme: Programme,
    /// Every product line of the settled shows, by show then lineup position.
    pub products: Vec<ProductLine>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn line() -> ProductLine {
        ProductLine {
            show_id: "s1".into(),
            seller_id: "htx-ba-vi".into(),
            seller_name: "HTX Mật ong Ba Vì".into(),
            product_id: "mat-ong".into(),
            position: 0,
            name: "Mật ong hoa nhãn".into(),
            group: "food".into(),
            district: "Ba Vì".into(),
            stars: 4,
            list_price: 250_000,
            buyers: 2,
            figures: Figures {
                allotted: 10,
                units: 4,
                revenue: 900_000,
                list_revenue: 1_000_000,
                discount: 100_000,
                flash_units: 2,
                flash_revenue: 400_000,
                regular_units: 2,
                regular_revenue: 500_000,
                units_cancelled: 1,
                revenue_cancelled: 250_000,
                sell_through_bp: Some(4_000),
            },
        }
    }

    #[test]
    fn figures_are_flat_in_a_product_line_and_round_trip() {
        let json = serde_json::to_value(line()).unwrap();
        assert_eq!(json["units"], 4);
        assert_eq!(json["sell_through_bp"], 4_000);
        assert_eq!(json["name"], "Mật ong hoa nhãn");
        let back: ProductLine = serde_json::from_value(json).unwrap();
        assert_eq!(back, line());
    }

    #[test]
    fn a_show_report_round_trips_with_its_summary_flattened() {
        let report = ShowReport {
            show: ShowSummary {
                show_id: "s1".into(),
                seller_id: "htx-ba-vi".into(),
                seller_name: "HTX Mật ong Ba Vì".into(),
                title: "Chợ đêm trên mây".into(),
                market_id: None,
                night_date: None,
                settled_at: 1,
                tally: ReportTally {
                    orders: 3,
                    buyers: 3,
                    orders_cancelled: 1,
                    totals: line().figures,
                    refused: 5,
                    refusals: vec![Refusals {
                        reason: "sold_out".into(),
                        count: 5,
                    }],
                    peak_viewers: 80,
                },
            },
            products: vec![line()],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["show_id"], "s1");
        assert!(json.get("market_id").is_none());
        assert_eq!(json["products"][0]["units"], 4);
        assert_eq!(json["orders_cancelled"], 1);
        assert_eq!(json["totals"]["units"], 4);
        let back: ShowReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
