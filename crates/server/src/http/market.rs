//! The market calendar over HTTP: operators define recurring markets and their exceptions,
//! admit products and schedule sellers' shows into nights; sellers sign their commitment for a
//! night. The programme (markets, nights, the shows of a night) is public like a show page.

use nightmarket_wire::http::ApiError;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use jiff::tz::TimeZone;
use nightmarket_domain::market::{
    self as m, DEFAULT_MIN_STARS, DEFAULT_TIME_ZONE, parse_date, parse_local_datetime, parse_time,
    parse_weekday,
};
use nightmarket_domain::ocop::text;
use nightmarket_domain::{MarketSpec, ProductId, SellerId, Slot, Stars};
use nightmarket_store::{
    CommitmentRow, DecisionRow, ExceptionKind, ExceptionRow, KeyPart, MarketRow,
};
use nightmarket_wire::http::Show;
use nightmarket_wire::market::{
    Commit, Commitment, CreateException, CreateMarket, Decide, Decision, Exception, ExpiryWarning,
    Market, Night, ScheduleShow,
};
use serde::Deserialize;

use crate::auth::Role;
use crate::convert::rfc3339;
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, actor, authenticate, body, field, require};
use crate::http::page::{Listed, PageQuery, bad_cursor};
use crate::http::refusal;
use crate::http::shows::{show_json, shows_json};
use crate::services::catalog::known_seller;
use crate::services::market::{self, Scheduling, calendar, night_of, still_open};
use crate::services::webhooks::check_url;
use crate::state::AppState;

// --- markets ------------------------------------------------------------------------------

fn market_view(r: &MarketRow) -> Market {
    let s = &r.spec;
    Market {
        id: r.id.to_string(),
        name: s.name.clone(),
        weekdays: s
            .weekdays
            .iter()
            .map(|w| m::weekday_name(*w).to_owned())
            .collect(),
        start_time: s.start.strftime("%H:%M").to_string(),
        duration_minutes: s.duration_minutes,
        time_zone: s.time_zone.clone(),
        first_date: s.first_date.to_string(),
        last_date: s.last_date.map(|d| d.to_string()),
        min_stars: s.min_stars.get(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
    }
}

fn night_view(n: &m::Night, tz: &str) -> Night {
    let (status, reason, moved_from) = match &n.status {
        m::NightStatus::Scheduled => ("scheduled", None, None),
        m::NightStatus::Moved { from } => (
            "moved",
            None,
            Some(from.strftime("%Y-%m-%dT%H:%M").to_string()),
        ),
        m::NightStatus::Cancelled { reason } => ("cancelled", Some(reason.clone()), None),
    };
    Night {
        date: n.date.to_string(),
        status: status.into(),
        reason,
        moved_from,
        time_zone: tz.to_owned(),
        local_start: n.local_start.strftime("%Y-%m-%dT%H:%M").to_string(),
        local_end: n.local_end.strftime("%Y-%m-%dT%H:%M").to_string(),
        starts_at: rfc3339(n.starts_at),
        ends_at: rfc3339(n.ends_at),
        starts_at_ms: n.starts_at,
        ends_at_ms: n.ends_at,
    }
}

#[utoipa::path(
    post,
    path = "/api/markets",
    tag = "Markets",
    summary = "Define a recurring market",
    description = "Who: operator.",
    request_body(content = CreateMarket, example = json!({"name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"], "start_time": "20:30", "duration_minutes": 150, "first_date": "2026-11-27"})),
    responses(
        (status = 201, description = "Success", body = Market, example = json!({"id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"], "start_time": "20:30", "duration_minutes": 150, "time_zone": "Asia/Ho_Chi_Minh", "first_date": "2026-11-27", "min_stars": 3, "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_market(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateMarket>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Market>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let weekdays = req
        .weekdays
        .iter()
        .map(|w| field("weekdays", parse_weekday("weekdays", w)))
        .collect::<ApiResult<Vec<_>>>()?;
    let duration = u32::try_from(req.duration_minutes)
        .map_err(|_| HttpError::bad_request("duration_minutes: 1 to 720"))?;
    let spec = MarketSpec {
        name: req.name.clone(),
        weekdays,
        start: field("start_time", parse_time("start_time", &req.start_time))?,
        duration_minutes: duration,
        time_zone: req
            .time_zone
            .clone()
            .unwrap_or_else(|| DEFAULT_TIME_ZONE.to_owned()),
        first_date: field("first_date", parse_date("first_date", &req.first_date))?,
        last_date: req
            .last_date
            .as_deref()
            .map(|d| field("last_date", parse_date("last_date", d)))
            .transpose()?,
        min_stars: match req.min_stars {
            Some(s) => field("min_stars", Stars::parse(s))?,
            None => DEFAULT_MIN_STARS,
        },
    };
    let row = market::create_market(state.store(), spec, actor(&claims), state.now()).await?;
    Ok((StatusCode::CREATED, Json(market_view(&row))))
}

#[utoipa::path(
    get,
    path = "/api/markets",
    tag = "Markets",
    summary = "Every market",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", body = Vec<Market>, example = json!([{"id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"], "start_time": "20:30", "duration_minutes": 150, "time_zone": "Asia/Ho_Chi_Minh", "first_date": "2026-11-27", "min_stars": 3, "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64}])),
        refusal::Unavailable,
    ),
)]
pub async fn list_markets(
    State(state): State<Arc<AppState>>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Market>> {
    let pager = page.open("markets")?;
    let rows = market::markets(state.store(), &pager.keyset).await?;
    Ok(pager.view(rows, market_view))
}

#[utoipa::path(
    get,
    path = "/api/markets/{id}",
    tag = "Markets",
    summary = "A market",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Market, example = json!({"id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"], "start_time": "20:30", "duration_minutes": 150, "time_zone": "Asia/Ho_Chi_Minh", "first_date": "2026-11-27", "min_stars": 3, "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn get_market(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Market>> {
    let cal = calendar(state.store(), &id).await?;
    Ok(Json(market_view(&cal.row)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NightsQuery {
    /// List nights ending after this instant (ms since the epoch); default now.
    after: Option<i64>,
    /// Or from the start of this local date, YYYY-MM-DD.
    from: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/markets/{id}/nights",
    tag = "Markets",
    summary = "Upcoming nights in local and UTC time (cancelled ones marked)",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id"), NightsQuery),
    responses(
        (status = 200, description = "Success", body = Vec<Night>, example = json!([{"date": "2026-11-27", "status": "scheduled", "time_zone": "Asia/Ho_Chi_Minh", "local_start": "2026-11-27T20:30", "local_end": "2026-11-27T23:00", "starts_at": "2026-11-27T13:30:00Z", "ends_at": "2026-11-27T16:00:00Z", "starts_at_ms": 1795786200000_i64, "ends_at_ms": 1795795200000_i64}])),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn list_nights(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<NightsQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Night>> {
    let pager = page.open_or("nights", state.config().market.nights_listed)?;
    let cal = calendar(state.store(), &id).await?;
    // The calendar is computed, not stored: a page goes on from the end of the last night of
    // the page before, which no exception written in between can move.
    let after = match (pager.after_one()?, &q.from, q.after) {
        (Some(KeyPart::Int(end)), _, _) => *end,
        (Some(KeyPart::Text(_)), _, _) => return Err(bad_cursor()),
        (None, Some(d), _) => {
            let date = field("from", parse_date("from", d))?;
            date.to_zoned(cal.market.time_zone().clone())
                .map_err(|e| HttpError::bad_request(format!("from: {e}")))?
                .timestamp()
                .as_millisecond()
        }
        (None, None, Some(ms)) => ms,
        (None, None, None) => state.now(),
    };
    let limit = pager.keyset.limit;
    let mut nights = cal.market.nights(&cal.exceptions, after, limit);
    // One night past the page says whether another page follows. Asked for apart, since one
    // call returns at most MAX_NIGHTS_LISTED nights, the size of the largest page.
    if let Some(last) = nights.last()
        && nights.len() == limit
    {
        let more = cal.market.nights(&cal.exceptions, last.ends_at, 1);
        nights.extend(more);
    }
    let tz = cal.market.time_zone_name().to_owned();
    Ok(pager.cut(
        nights,
        |n| vec![KeyPart::Int(n.ends_at)],
        |n| night_view(n, &tz),
    ))
}

fn exception_view(r: &ExceptionRow) -> Exception {
    let (kind, moved_to) = match &r.kind {
        ExceptionKind::Cancelled => ("cancelled", None),
        ExceptionKind::Moved { to } => ("moved", Some(to.strftime("%Y-%m-%dT%H:%M").to_string())),
    };
    Exception {
        night_date: r.night_date.to_string(),
        kind: kind.into(),
        moved_to,
        reason: r.reason.clone(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
    }
}

#[utoipa::path(
    post,
    path = "/api/markets/{id}/exceptions",
    tag = "Markets",
    summary = "Cancel or move one night",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id")),
    request_body(content = CreateException, example = json!({"night_date": "2027-02-05", "kind": "cancelled", "reason": "Tết Nguyên Đán"})),
    responses(
        (status = 201, description = "Success", body = Exception, example = json!({"night_date": "2027-02-05", "kind": "cancelled", "reason": "Tết Nguyên Đán", "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_exception(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    payload: Result<Json<CreateException>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Exception>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(state.store(), &id).await?;
    let date = field("night_date", parse_date("night_date", &req.night_date))?;
    let reason = field("reason", text("reason", &req.reason))?;
    let kind = match (req.kind.as_str(), &req.moved_to) {
        ("cancelled", None) => ExceptionKind::Cancelled,
        ("moved", Some(to)) => ExceptionKind::Moved {
            to: field("moved_to", parse_local_datetime("moved_to", to))?,
        },
        ("cancelled", Some(_)) => {
            return Err(HttpError::bad_request(
                "moved_to: only a moved night has one",
            ));
        }
        ("moved", None) => {
            return Err(HttpError::bad_request(
                "moved_to: required for a moved night",
            ));
        }
        (other, _) => {
            return Err(HttpError::bad_request(format!(
                "kind: expected cancelled or moved, got {other:?}"
            )));
        }
    };
    let row = ExceptionRow {
        market_id: cal.row.id.clone(),
        night_date: date,
        kind,
        reason,
        created_by: actor(&claims),
        created_at: state.now(),
    };
    let row = market::add_exception(state.store(), &cal, row).await?;
    Ok((StatusCode::CREATED, Json(exception_view(&row))))
}

#[utoipa::path(
    get,
    path = "/api/markets/{id}/exceptions",
    tag = "Markets",
    summary = "A market's exceptions",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Vec<Exception>, example = json!([{"night_date": "2027-02-05", "kind": "cancelled", "reason": "Tết Nguyên Đán", "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64}])),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn list_exceptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Exception>> {
    let pager = page.open("exceptions")?;
    let rows = market::exceptions(state.store(), &id, &pager.keyset).await?;
    Ok(pager.view(rows, exception_view))
}

// --- admission ----------------------------------------------------------------------------

fn decision_view(d: &DecisionRow) -> Decision {
    Decision {
        id: d.id.clone(),
        market_id: d.market_id.to_string(),
        product_id: d.product_id.to_string(),
        approved: d.approved,
        reason: d.reason.clone(),
        decided_by: d.decided_by.clone(),
        decided_at: d.decided_at,
    }
}

#[utoipa::path(
    post,
    path = "/api/markets/{id}/admissions",
    tag = "Admission",
    summary = "Approve or reject a product for the market (a rejection needs a reason)",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id")),
    request_body(content = Decide, example = json!({"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "approved": true})),
    responses(
        (status = 201, description = "Success", body = Decision, example = json!({"id": "0193a1b2-3333-7e5f-8a9b-0c1d2e3f4a5b", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "approved": true, "decided_by": "operator:ops-hanoi", "decided_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn decide(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    payload: Result<Json<Decide>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Decision>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(state.store(), &id).await?;
    let pid = field("product_id", ProductId::parse(req.product_id))?;
    let row = market::decide(
        state.store(),
        &cal,
        pid,
        req.approved,
        req.reason.as_deref(),
        &actor(&claims),
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(decision_view(&row))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionsQuery {
    /// Only this product's decisions.
    product_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/markets/{id}/admissions",
    tag = "Admission",
    summary = "Decision history (of one product with product_id: also its seller)",
    description = "Who: operator, or the product's seller.",
    params(("id" = String, Path, description = "Id"), DecisionsQuery),
    responses(
        (status = 200, description = "Success", body = Vec<Decision>, example = json!([{"id": "0193a1b2-3333-7e5f-8a9b-0c1d2e3f4a5b", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "approved": true, "decided_by": "operator:ops-hanoi", "decided_at": 1795564800000_i64}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn list_decisions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DecisionsQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Decision>> {
    let pager = page.open("decisions")?;
    let claims = authenticate(&state, &headers, None)?;
    let cal = calendar(state.store(), &id).await?;
    // One product's decisions are also its seller's to read, which the service checks.
    let product = match q.product_id {
        Some(p) => Some(field("product_id", ProductId::parse(p))?),
        None => {
            require(&claims, Role::Operator)?;
            None
        }
    };
    let rows = market::decisions(state.store(), &claims, &cal, product, &pager.keyset).await?;
    Ok(pager.view(rows, decision_view))
}

#[utoipa::path(
    post,
    path = "/api/markets/{id}/nights/{date}/commitments",
    tag = "Admission",
    summary = "The seller signs the commitment on quality for one night",
    description = "Who: seller.",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's date, YYYY-MM-DD")),
    request_body(content = Commit, example = json!({"statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố"})),
    responses(
        (status = 201, description = "Success", body = Commitment, example = json!({"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố", "signed_by": "seller:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "signed_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn commit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    payload: Result<Json<Commit>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Commitment>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Seller)?;
    let req = body(payload)?;
    let cal = calendar(state.store(), &id).await?;
    let night = night_of(&cal, &date)?;
    let (created, kept) = market::commit(
        state.store(),
        &cal,
        &night,
        &claims.sub,
        &req.statement,
        actor(&claims),
        state.now(),
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(commitment_view(&kept))))
}

/// `GET /api/markets/{id}/nights/{date}/commitments`: the quality commitments signed for a
/// night, for the office to review (operators see all; a seller sees its own).
#[utoipa::path(
    get,
    path = "/api/markets/{id}/nights/{date}/commitments",
    tag = "Admission",
    summary = "The quality commitments signed for a night",
    description = "Who: operator (every seller's) or seller (its own).",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's date, YYYY-MM-DD")),
    responses(
        (status = 200, description = "Success", body = Vec<Commitment>, example = json!([{"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố", "signed_by": "seller:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "signed_at": 1795564800000_i64}])),
        refusal::BadRequest, refusal::Forbidden, refusal::NotFound,
    ),
)]
pub async fn night_commitments(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Commitment>> {
    let pager = page.open("commitments")?;
    let claims = authenticate(&state, &headers, None)?;
    if claims.role == Role::Viewer {
        return Err(HttpError::forbidden(
            "commitments are for the market office and sellers",
        ));
    }
    let cal = calendar(state.store(), &id).await?;
    let night = night_of(&cal, &date)?;
    // A seller sees only its own.
    let seller = match claims.role {
        Role::Operator => None,
        _ => Some(field("token subject", SellerId::parse(claims.sub.clone()))?),
    };
    let rows = market::night_commitments(
        state.store(),
        &cal,
        night.date,
        seller.as_ref(),
        &pager.keyset,
    )
    .await?;
    Ok(pager.view(rows, commitment_view))
}

fn commitment_view(c: &CommitmentRow) -> Commitment {
    Commitment {
        market_id: c.market_id.to_string(),
        night_date: c.night_date.to_string(),
        seller_id: c.seller_id.to_string(),
        statement: c.statement.clone(),
        signed_by: c.signed_by.clone(),
        signed_at: c.signed_at,
    }
}

// --- scheduling ---------------------------------------------------------------------------

/// A slot bound: an RFC 3339 instant with offset, or a local time in the market's zone.
fn slot_instant(name: &str, s: &str, tz: &TimeZone) -> ApiResult<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let local = parse_local_datetime("slot", s).map_err(|_| {
        HttpError::bad_request(format!(
            "{name}: expected a local time YYYY-MM-DDTHH:MM or an RFC 3339 instant, got {s:?}"
        ))
    })?;
    local
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| HttpError::bad_request(format!("{name}: {e}")))
}

#[utoipa::path(
    post,
    path = "/api/markets/{id}/nights/{date}/shows",
    tag = "Schedule",
    summary = "Schedule a seller's show into a night: slot inside the night, no overlap with the seller's other shows, every product admitted",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's date, YYYY-MM-DD")),
    request_body(content = ScheduleShow, example = json!({"seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "slot_start": "2026-11-27T20:30", "slot_end": "2026-11-27T21:00", "stream_url": "https://www.facebook.com/chodemtrenmay/live", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}]})),
    responses(
        (status = 201, description = "Success", body = Show, example = json!({"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}})),
        (status = 409, description = "slot_unavailable", body = ApiError),
        (status = 422, description = "not_admitted", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn schedule_show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    payload: Result<Json<ScheduleShow>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Show>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(state.store(), &id).await?;
    let night = night_of(&cal, &date)?;
    let now = state.now();
    still_open(&night, now)?;
    let seller = field("seller_id", SellerId::parse(req.seller_id.clone()))?;
    known_seller(state.store(), &seller).await?;
    let tz = cal.market.time_zone().clone();
    let scheduling = Scheduling {
        seller,
        title: field("title", text("title", &req.title))?,
        stream_url: check_url("stream_url", &req.stream_url, &["https://"])?,
        slot: Slot {
            starts_at: slot_instant("slot_start", &req.slot_start, &tz)?,
            ends_at: slot_instant("slot_end", &req.slot_end, &tz)?,
        },
        lineup: req.lineup,
        lineup_set_id: req.lineup_set_id,
    };
    let max_lineup = state.config().limits.max_lineup;
    let row = market::schedule(state.store(), &cal, &night, scheduling, max_lineup, now).await?;
    state.shows().load(&row).await?;
    Ok((StatusCode::CREATED, Json(show_json(&state, &row).await?)))
}

#[utoipa::path(
    get,
    path = "/api/markets/{id}/nights/{date}/shows",
    tag = "Schedule",
    summary = "The shows of a night by slot (a signed-in seller sees their own)",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's date, YYYY-MM-DD")),
    responses(
        (status = 200, description = "Success", body = Vec<Show>, example = json!([{"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}}])),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn night_shows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Show>> {
    let pager = page.open("night_shows")?;
    let cal = calendar(state.store(), &id).await?;
    let night = night_of(&cal, &date)?;
    // The programme is public; a seller signed in sees only their own shows here.
    let only = match authenticate(&state, &headers, None) {
        Ok(c) if c.role == Role::Seller => Some(field("token subject", SellerId::parse(c.sub))?),
        _ => None,
    };
    let rows = market::night_shows(
        state.store(),
        &cal,
        night.date,
        only.as_ref(),
        &pager.keyset,
    )
    .await?;
    Ok(pager.respond(shows_json(&state, &rows.items).await?, rows.next))
}

/// Scheduled shows that could not go live as things stand: documents expiring before the
/// night, decisions revoked, commitments missing.
#[utoipa::path(
    get,
    path = "/api/schedule/warnings",
    tag = "Admission",
    summary = "Scheduled shows that could not go live as things stand (documents expiring by the night, decisions revoked, commitments missing)",
    description = "Who: operator.",
    responses(
        (status = 200, description = "Success", body = Vec<ExpiryWarning>, example = json!([{"show_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "issues": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "reason": "document_expired", "message": "the quality label was valid until 2026-11-20"}]}])),
        refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn warnings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<ExpiryWarning>> {
    let pager = page.open("warnings")?;
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    // Computed from the upcoming shows, not stored: paged by show id over what they are now.
    let after = match pager.after_one()? {
        None => None,
        Some(KeyPart::Text(id)) => Some(id.clone()),
        Some(KeyPart::Int(_)) => return Err(bad_cursor()),
    };
    let all = market::warnings(
        state.store(),
        state.now(),
        after.as_deref(),
        pager.read_limit(),
    )
    .await?;
    Ok(pager.cut(
        all,
        |w| vec![KeyPart::Text(w.show_id.clone())],
        ExpiryWarning::clone,
    ))
}
