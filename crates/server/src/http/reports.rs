//! Reports over HTTP: a settled show's, and a market night's over its settled shows, as JSON
//! or as one CSV table (`?format=csv`). `docs/reports.md` describes both.
//!
//! Who sees what: an operator every report; a seller the reports of its own shows, and of a
//! night only its own view (its shows, its figures, its pending shows), since the other
//! sellers' sales are theirs; a viewer none.
//!
//! The CSV of either report is the same table: one row per product of a settled show, carrying
//! the show's, seller's and programme's columns (group, district, stars), so a spreadsheet can
//! pivot any programme view from it and the column sums are the report's totals. A night's
//! pending shows are rows too, with their `settlement` and empty figures, so that a show
//! missing from the figures is never missing from the file.

use nightmarket_wire::http::ApiError;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use nightmarket_domain::SellerId;
use nightmarket_store::reports::BASIS_POINTS;
use nightmarket_store::{
    GroupSales, NightReport as NightRow, PendingShow as PendingRow, ProductSales,
    ReportTally as TallyRow, SalesFigures, ShowReport as ShowRow, ShowSales,
};
use nightmarket_wire::http::LiveStats;
use nightmarket_wire::reports::{
    Figures, NightReport, PendingShow, ProductLine, Programme, ProgrammeGroup, Refusals,
    ReportTally, ShowReport, ShowSummary,
};
use serde::Deserialize;

use crate::auth::Role;
use crate::http::csv::{Cell, CsvError, CsvTable};
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, authenticate, may_act_for};
use crate::http::refusal;
use crate::http::shows::show_row;
use crate::services::market::{calendar, night_of};
use crate::services::reports;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (the default) or `csv`: one table, a row per product of a settled show
    /// (docs/reports.md).
    #[serde(default)]
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format_of(q: &ReportQuery) -> ApiResult<Format> {
    match q.format.as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(HttpError::bad_request(format!(
            "format: expected json or csv, got {other:?}"
        ))),
    }
}

/// `GET /api/shows/{id}/report`: the operator, or the show's seller.
#[utoipa::path(
    get,
    path = "/api/shows/{id}/report",
    tag = "Reports",
    summary = "A settled show's report: per product units, revenue at accepted and list price, discount, flash sales, cancelled orders, sell-through; orders, buyers, claims refused by reason, peak viewers",
    description = "Who: operator, or the show's seller. JSON, or CSV with ?format=csv (docs/reports.md). A show not settled yet, or stopped by a reconciliation mismatch: 409 not_settled.",
    params(("id" = String, Path, description = "Id"), ReportQuery),
    responses(
        (status = 200, description = "Success", content((ShowReport = "application/json", example = json!({"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "settled_at": 1795789800000_i64, "orders": 96, "buyers": 96, "orders_cancelled": 1, "totals": {"allotted": 230, "units": 150, "revenue": 30600000, "list_revenue": 33600000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 110, "regular_revenue": 22600000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 6521}, "refused": 57, "refusals": [{"reason": "limit_exceeded", "count": 12}, {"reason": "sold_out", "count": 41}, {"reason": "stale_price", "count": 4}], "peak_viewers": 1840, "products": [{"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "position": 0, "name": "Mật ong hoa nhãn Ba Vì 500ml", "group": "food", "district": "Ba Vì", "stars": 4, "list_price": 250000, "buyers": 90, "allotted": 150, "units": 120, "revenue": 27000000, "list_revenue": 30000000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 80, "regular_revenue": 19000000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 8000}, {"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "product_id": "0193a1b2-0001-7e5f-8a9b-0c1d2e3f4a5b", "position": 1, "name": "Trà hoa vàng Ba Vì", "group": "beverages", "district": "Ba Vì", "stars": 5, "list_price": 120000, "buyers": 12, "allotted": 80, "units": 30, "revenue": 3600000, "list_revenue": 3600000, "discount": 0, "flash_units": 0, "flash_revenue": 0, "regular_units": 30, "regular_revenue": 3600000, "units_cancelled": 0, "revenue_cancelled": 0, "sell_through_bp": 3750}]})), (String = "text/csv", example = json!("settlement,market_id,night_date,show_id,show_title,seller_id,seller_name,position,product_id,product_name,product_group,district,stars,list_price,allotted,units,revenue,list_revenue,discount,flash_units,flash_revenue,regular_units,regular_revenue,units_cancelled,revenue_cancelled,buyers,sell_through\r\nsettled,0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b,2026-11-27,0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b,Mật ong Ba Vì — Chợ đêm trên mây,0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,HTX Mật ong Ba Vì,0,0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b,Mật ong hoa nhãn Ba Vì 500ml,food,Ba Vì,4,250000,150,120,27000000,30000000,3000000,40,8000000,80,19000000,2,500000,90,0.8000\r\nsettled,0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b,2026-11-27,0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b,Mật ong Ba Vì — Chợ đêm trên mây,0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,HTX Mật ong Ba Vì,1,0193a1b2-0001-7e5f-8a9b-0c1d2e3f4a5b,Trà hoa vàng Ba Vì,beverages,Ba Vì,5,120000,80,30,3600000,3600000,0,0,0,30,3600000,0,0,12,0.3750\r\n")))),
        (status = 409, description = "not_settled", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn show_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let claims = authenticate(&state, &headers, None)?;
    let format = format_of(&q)?;
    if claims.role == Role::Viewer {
        return Err(HttpError::forbidden(
            "reports are for operators and the show's seller",
        ));
    }
    let row = show_row(&state, id).await?;
    if claims.role == Role::Seller && claims.sub != row.seller_id.as_str() {
        return Err(HttpError::forbidden(
            "a seller sees the reports of its own shows only",
        ));
    }
    let report = show_view(reports::show_report(state.store(), &row.id).await?);
    Ok(match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => {
            let mut table = Csv::new()?;
            for p in &report.products {
                table.product(&report.show, p)?;
            }
            csv_response(table, &format!("show-{}-report.csv", row.id))?
        }
    })
}

/// `GET /api/markets/{id}/nights/{date}/report`: the operator sees the whole night, a seller
/// its own view of it.
#[utoipa::path(
    get,
    path = "/api/markets/{id}/nights/{date}/report",
    tag = "Reports",
    summary = "A market night's report over its settled shows: totals, each show, every product, and the programme by product group, district, OCOP stars and seller; shows not settled listed as pending",
    description = "Who: operator (the whole night), or a seller (its own shows only; seller_id is set). JSON, or CSV with ?format=csv (docs/reports.md).",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's local date, YYYY-MM-DD"), ReportQuery),
    responses(
        (status = 200, description = "Success", content((NightReport = "application/json", example = json!({"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "complete": false, "shows": [{"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "settled_at": 1795789800000_i64, "orders": 96, "buyers": 96, "orders_cancelled": 1, "totals": {"allotted": 230, "units": 150, "revenue": 30600000, "list_revenue": 33600000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 110, "regular_revenue": 22600000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 6521}, "refused": 57, "refusals": [{"reason": "limit_exceeded", "count": 12}, {"reason": "sold_out", "count": 41}, {"reason": "stale_price", "count": 4}], "peak_viewers": 1840}], "pending": [{"show_id": "0193a1b2-3333-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d5-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "Làng gốm Bát Tràng", "title": "Gốm Bát Tràng", "status": "closed", "settlement": "pending"}], "orders": 96, "buyers": 96, "orders_cancelled": 1, "totals": {"allotted": 230, "units": 150, "revenue": 30600000, "list_revenue": 33600000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 110, "regular_revenue": 22600000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 6521}, "refused": 57, "refusals": [{"reason": "limit_exceeded", "count": 12}, {"reason": "sold_out", "count": 41}, {"reason": "stale_price", "count": 4}], "peak_viewers": 1840, "programme": {"groups": [{"key": "beverages", "shows": 1, "products": 1, "allotted": 80, "units": 30, "revenue": 3600000, "list_revenue": 3600000, "discount": 0, "flash_units": 0, "flash_revenue": 0, "regular_units": 30, "regular_revenue": 3600000, "units_cancelled": 0, "revenue_cancelled": 0, "sell_through_bp": 3750}, {"key": "food", "shows": 1, "products": 1, "allotted": 150, "units": 120, "revenue": 27000000, "list_revenue": 30000000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 80, "regular_revenue": 19000000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 8000}], "districts": [{"key": "Ba Vì", "shows": 1, "products": 2, "allotted": 230, "units": 150, "revenue": 30600000, "list_revenue": 33600000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 110, "regular_revenue": 22600000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 6521}], "stars": [{"key": "4", "shows": 1, "products": 1, "allotted": 150, "units": 120, "revenue": 27000000, "list_revenue": 30000000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 80, "regular_revenue": 19000000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 8000}, {"key": "5", "shows": 1, "products": 1, "allotted": 80, "units": 30, "revenue": 3600000, "list_revenue": 3600000, "discount": 0, "flash_units": 0, "flash_revenue": 0, "regular_units": 30, "regular_revenue": 3600000, "units_cancelled": 0, "revenue_cancelled": 0, "sell_through_bp": 3750}], "sellers": [{"key": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "shows": 1, "products": 2, "allotted": 230, "units": 150, "revenue": 30600000, "list_revenue": 33600000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 110, "regular_revenue": 22600000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 6521}]}, "products": [{"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "position": 0, "name": "Mật ong hoa nhãn Ba Vì 500ml", "group": "food", "district": "Ba Vì", "stars": 4, "list_price": 250000, "buyers": 90, "allotted": 150, "units": 120, "revenue": 27000000, "list_revenue": 30000000, "discount": 3000000, "flash_units": 40, "flash_revenue": 8000000, "regular_units": 80, "regular_revenue": 19000000, "units_cancelled": 2, "revenue_cancelled": 500000, "sell_through_bp": 8000}, {"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "seller_name": "HTX Mật ong Ba Vì", "product_id": "0193a1b2-0001-7e5f-8a9b-0c1d2e3f4a5b", "position": 1, "name": "Trà hoa vàng Ba Vì", "group": "beverages", "district": "Ba Vì", "stars": 5, "list_price": 120000, "buyers": 12, "allotted": 80, "units": 30, "revenue": 3600000, "list_revenue": 3600000, "discount": 0, "flash_units": 0, "flash_revenue": 0, "regular_units": 30, "regular_revenue": 3600000, "units_cancelled": 0, "revenue_cancelled": 0, "sell_through_bp": 3750}]})), (String = "text/csv", example = json!("settlement,market_id,night_date,show_id,show_title,seller_id,seller_name,position,product_id,product_name,product_group,district,stars,list_price,allotted,units,revenue,list_revenue,discount,flash_units,flash_revenue,regular_units,regular_revenue,units_cancelled,revenue_cancelled,buyers,sell_through\r\nsettled,0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b,2026-11-27,0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b,Mật ong Ba Vì — Chợ đêm trên mây,0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,HTX Mật ong Ba Vì,0,0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b,Mật ong hoa nhãn Ba Vì 500ml,food,Ba Vì,4,250000,150,120,27000000,30000000,3000000,40,8000000,80,19000000,2,500000,90,0.8000\r\nsettled,0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b,2026-11-27,0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b,Mật ong Ba Vì — Chợ đêm trên mây,0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,HTX Mật ong Ba Vì,1,0193a1b2-0001-7e5f-8a9b-0c1d2e3f4a5b,Trà hoa vàng Ba Vì,beverages,Ba Vì,5,120000,80,30,3600000,3600000,0,0,0,30,3600000,0,0,12,0.3750\r\npending,0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b,2026-11-27,0193a1b2-3333-7e5f-8a9b-0c1d2e3f4a5b,Gốm Bát Tràng,0193a1b2-c3d5-7e5f-8a9b-0c1d2e3f4a5b,Làng gốm Bát Tràng,,,,,,,,,,,,,,,,,,,,\r\n")))),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn night_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let claims = authenticate(&state, &headers, None)?;
    let format = format_of(&q)?;
    let only = match claims.role {
        Role::Operator => None,
        Role::Seller => Some(
            SellerId::parse(claims.sub.clone())
                .map_err(|_| HttpError::forbidden("the token's subject is not a seller id"))?,
        ),
        Role::Viewer => {
            return Err(HttpError::forbidden(
                "night reports are for operators, and for sellers about their own shows",
            ));
        }
    };
    let cal = calendar(state.store(), &id).await?;
    let night = night_of(&cal, &date)?;
    let report =
        night_view(reports::night_report(state.store(), &cal, night.date, only.as_ref()).await?);
    Ok(match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => {
            let mut table = Csv::new()?;
            let mut products = report.products.iter().peekable();
            for show in &report.shows {
                while let Some(p) = products.next_if(|p| p.show_id == show.show_id) {
                    table.product(show, p)?;
                }
            }
            for p in &report.pending {
                table.pending(&report, p)?;
            }
            let scope = only.map(|s| format!("-{s}")).unwrap_or_default();
            csv_response(
                table,
                &format!("night-{}-{}{scope}-report.csv", cal.row.id, night.date),
            )?
        }
    })
}

// --- store rows to wire bodies -----------------------------------------------------------------

fn figures(f: &SalesFigures) -> Figures {
    Figures {
        allotted: f.allotted,
        units: f.units,
        revenue: f.revenue,
        list_revenue: f.list_revenue,
        discount: f.discount(),
        flash_units: f.flash_units,
        flash_revenue: f.flash_revenue,
        regular_units: f.regular_units(),
        regular_revenue: f.regular_revenue(),
        units_cancelled: f.units_cancelled,
        revenue_cancelled: f.revenue_cancelled,
        sell_through_bp: f.sell_through_bp(),
    }
}

fn line(p: &ProductSales) -> ProductLine {
    ProductLine {
        show_id: p.show_id.to_string(),
        seller_id: p.seller_id.to_string(),
        seller_name: p.seller_name.clone(),
        product_id: p.product_id.to_string(),
        position: p.position,
        name: p.name.clone(),
        group: p.group.clone(),
        district: p.district.clone(),
        stars: p.stars,
        list_price: p.list_price,
        buyers: p.buyers,
        figures: figures(&p.figures),
    }
}

fn tally(t: &TallyRow) -> ReportTally {
    let refusals: Vec<Refusals> = t
        .refusals
        .iter()
        .map(|r| Refusals {
            reason: r.reason.clone(),
            count: r.count,
        })
        .collect();
    ReportTally {
        orders: t.orders,
        buyers: t.buyers,
        orders_cancelled: t.orders_cancelled,
        totals: figures(&t.totals),
        refused: refusals.iter().fold(0u64, |n, r| n.saturating_add(r.count)),
        refusals,
        peak_viewers: t.peak_viewers,
    }
}

fn summary(s: &ShowSales) -> ShowSummary {
    ShowSummary {
        show_id: s.show_id.to_string(),
        seller_id: s.seller_id.to_string(),
        seller_name: s.seller_name.clone(),
        title: s.title.clone(),
        market_id: s.market_id.as_ref().map(ToString::to_string),
        night_date: s.night_date.map(|d| d.to_string()),
        settled_at: s.settled_at,
        tally: tally(&s.tally),
    }
}

fn show_view(r: ShowRow) -> ShowReport {
    ShowReport {
        show: summary(&r.show),
        products: r.products.iter().map(line).collect(),
    }
}

fn pending(p: &PendingRow) -> PendingShow {
    PendingShow {
        show_id: p.show_id.to_string(),
        seller_id: p.seller_id.to_string(),
        seller_name: p.seller_name.clone(),
        title: p.title.clone(),
        status: p.status.as_str().to_owned(),
        settlement: p.reason.as_str().to_owned(),
    }
}

fn groups(v: &[GroupSales], named: bool) -> Vec<ProgrammeGroup> {
    v.iter()
        .map(|g| ProgrammeGroup {
            key: g.key.clone(),
            seller_name: named.then(|| g.label.clone()),
            shows: g.shows,
            products: g.products,
            figures: figures(&g.figures),
        })
        .collect()
}

fn night_view(r: NightRow) -> NightReport {
    NightReport {
        market_id: r.market_id.to_string(),
        night_date: r.night_date.to_string(),
        seller_id: r.seller_id.as_ref().map(ToString::to_string),
        complete: r.pending.is_empty(),
        shows: r.shows.iter().map(summary).collect(),
        pending: r.pending.iter().map(pending).collect(),
        tally: tally(&r.tally),
        programme: Programme {
            groups: groups(&r.programme.groups, false),
            districts: groups(&r.programme.districts, false),
            stars: groups(&r.programme.stars, false),
            sellers: groups(&r.programme.sellers, true),
        },
        products: r.products.iter().map(line).collect(),
    }
}

// --- CSV -------------------------------------------------------------------------------------

/// The columns of both reports' CSV, in order; docs/reports.md describes each.
pub const CSV_COLUMNS: [&str; 27] = [
    "settlement",
    "market_id",
    "night_date",
    "show_id",
    "show_title",
    "seller_id",
    "seller_name",
    "position",
    "product_id",
    "product_name",
    "product_group",
    "district",
    "stars",
    "list_price",
    "allotted",
    "units",
    "revenue",
    "list_revenue",
    "discount",
    "flash_units",
    "flash_revenue",
    "regular_units",
    "regular_revenue",
    "units_cancelled",
    "revenue_cancelled",
    "buyers",
    "sell_through",
];

/// Columns before the product's own: settlement and the show's identity.
const CSV_SHOW_COLUMNS: usize = 7;

/// The report's table, written by the one CSV writer ([`crate::http::csv`]), which guards
/// every text cell against formula injection.
struct Csv {
    table: CsvTable,
}

impl Csv {
    fn new() -> Result<Self, CsvError> {
        Ok(Self {
            table: CsvTable::with_header(&CSV_COLUMNS)?,
        })
    }

    fn show_cells<'a>(settlement: &'a str, s: &'a ShowSummary) -> [Cell<'a>; CSV_SHOW_COLUMNS] {
        [
            Cell::Text(settlement),
            Cell::Text(s.market_id.as_deref().unwrap_or("")),
            Cell::Text(s.night_date.as_deref().unwrap_or("")),
            Cell::Text(&s.show_id),
            Cell::Text(&s.title),
            Cell::Text(&s.seller_id),
            Cell::Text(&s.seller_name),
        ]
    }

    fn product(&mut self, show: &ShowSummary, p: &ProductLine) -> Result<(), CsvError> {
        let f = &p.figures;
        let ratio = f.sell_through_bp.map(ratio_4);
        let cells = Self::show_cells("settled", show).into_iter().chain([
            Cell::Int(i128::from(p.position)),
            Cell::Text(&p.product_id),
            Cell::Text(&p.name),
            Cell::Text(&p.group),
            Cell::Text(&p.district),
            Cell::Int(i128::from(p.stars)),
            Cell::Int(i128::from(p.list_price)),
            Cell::Int(i128::from(f.allotted)),
            Cell::Int(i128::from(f.units)),
            Cell::Int(i128::from(f.revenue)),
            Cell::Int(i128::from(f.list_revenue)),
            Cell::Int(i128::from(f.discount)),
            Cell::Int(i128::from(f.flash_units)),
            Cell::Int(i128::from(f.flash_revenue)),
            Cell::Int(i128::from(f.regular_units)),
            Cell::Int(i128::from(f.regular_revenue)),
            Cell::Int(i128::from(f.units_cancelled)),
            Cell::Int(i128::from(f.revenue_cancelled)),
            Cell::Int(i128::from(p.buyers)),
        ]);
        let ratio = ratio.as_deref().map_or(Cell::Empty, Cell::Text);
        self.table.row(cells.chain([ratio]))
    }

    /// A show of the night not settled: its identity, no figures.
    fn pending(&mut self, night: &NightReport, p: &PendingShow) -> Result<(), CsvError> {
        let cells = [
            Cell::Text(&p.settlement),
            Cell::Text(&night.market_id),
            Cell::Text(&night.night_date),
            Cell::Text(&p.show_id),
            Cell::Text(&p.title),
            Cell::Text(&p.seller_id),
            Cell::Text(&p.seller_name),
        ];
        let blanks = CSV_COLUMNS.len() - CSV_SHOW_COLUMNS;
        self.table
            .row(cells.into_iter().chain((0..blanks).map(|_| Cell::Empty)))
    }
}

/// Basis points as a ratio with four decimals: 4000 → `0.4000`. Exact: no float involved.
fn ratio_4(bp: u64) -> String {
    format!("{}.{:04}", bp / BASIS_POINTS, bp % BASIS_POINTS)
}

fn csv_response(table: Csv, filename: &str) -> ApiResult<Response> {
    let body = table.table.finish()?;
    // Ids use `A–Z a–z 0–9 - _ . :`; `:` is not allowed in file names on Windows.
    let filename = filename.replace(':', "_");
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/shows/{id}/live-stats`: the live panel of the show's seller and the operator's
/// board.
#[utoipa::path(
    get,
    path = "/api/shows/{id}/live-stats",
    tag = "Shows",
    summary = "Live figures of a show: viewers now and peak, claims, units and value sold per product, stock",
    description = "Who: operator, or the show's seller. Units and stock are exact; values in đồng and claims_last_minute come from the claim log as recorded so far (recorded_entries).",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = LiveStats, example = json!({"show_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "status": "live", "viewers": 812, "peak_viewers": 1204, "accepted_claims": 342, "claims_last_minute": 41, "units_sold": 389, "gmv": 81250000, "recorded_entries": 351, "products": [{"product_id": "0193a1b2-aaaa-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì 500ml", "list_price": 250000, "allotted": 150, "left": 23, "units_sold": 127, "gmv": 27900000}]})),
        refusal::BadRequest, refusal::Forbidden, refusal::NotFound,
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub async fn live_stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<LiveStats>> {
    let claims = authenticate(&state, &headers, None)?;
    let row = show_row(&state, id).await?;
    if !may_act_for(&claims, &row.seller_id) {
        return Err(HttpError::forbidden(
            "only an operator or the show's seller sees its live figures",
        ));
    }
    let stats = reports::live_stats(state.store(), state.shows(), &row, state.now()).await?;
    Ok(Json(stats))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_are_quoted_and_guarded() {
        let mut t = CsvTable::new();
        let texts = ["Mật ong", "a,b", "say \"hi\"", "=1+1", "-5", ""];
        t.row(texts.iter().map(|s| Cell::Text(s))).unwrap();
        let out = String::from_utf8(t.finish().unwrap()).unwrap();
        assert_eq!(out, "Mật ong,\"a,b\",\"say \"\"hi\"\"\",'=1+1,'-5,\r\n");
    }

    #[test]
    fn ratios_are_exact() {
        assert_eq!(ratio_4(0), "0.0000");
        assert_eq!(ratio_4(4_000), "0.4000");
        assert_eq!(ratio_4(10_000), "1.0000");
        assert_eq!(ratio_4(12_345), "1.2345");
        assert_eq!(ratio_4(7), "0.0007");
    }

    #[test]
    fn every_row_has_every_column() {
        let mut t = Csv::new().unwrap();
        let night = NightReport {
            market_id: "m".into(),
            night_date: "2026-11-27".into(),
            seller_id: None,
            complete: false,
            shows: vec![],
            pending: vec![],
            tally: ReportTally::default(),
            programme: Programme::default(),
            products: vec![],
        };
        let p = PendingShow {
            show_id: "s".into(),
            seller_id: "x".into(),
            seller_name: "HTX".into(),
            title: "T".into(),
            status: "live".into(),
            settlement: "pending".into(),
        };
        t.pending(&night, &p).unwrap();
        let out = String::from_utf8(t.table.finish().unwrap()).unwrap();
        for line in out.split_terminator("\r\n") {
            assert_eq!(line.split(',').count(), CSV_COLUMNS.len(), "{line}");
        }
    }
}
