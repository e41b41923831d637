//! The market calendar over HTTP: operators define recurring markets and their exceptions,
//! admit products, schedule sellers' shows into nights and register webhooks; sellers sign
//! their commitment for a night and keep reusable lineups. The programme (markets, nights, the
//! shows of a night) is public like a show page.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use nightmarket_domain::market::{
    self as m, DEFAULT_MIN_STARS, DEFAULT_TIME_ZONE, MAX_NIGHTS_LISTED, parse_date,
    parse_local_datetime, parse_time, parse_weekday,
};
use nightmarket_domain::ocop::text;
use nightmarket_domain::{
    AdmissionRefusal, Decision as DomainDecision, MarketId, MarketSpec, NightException, ProductId,
    ProductProof, SellerId, ShowId, ShowStatus, Slot, SlotError, Stars, check_admission,
    check_slot,
};
use nightmarket_store::{
    CommitmentRow, DecisionRow, DeliveryRow, ExceptionKind, ExceptionRow, LineupRow,
    LineupSetItem as StoreSetItem, LineupSetRow, MarketRow, ShowRow, ShowSchedule, WebhookEvent,
    WebhookRow,
};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{CreateLineupItem, Show};
use nightmarket_wire::market::{
    AdmissionIssue, Commit, Commitment, CreateException, CreateLineupSet, CreateMarket,
    CreateWebhook, Decide, Decision, Delivery, Exception, ExpiryWarning, LineupSet, LineupSetItem,
    Market, Night, ScheduleShow, Transition, Webhook,
};
use serde::Deserialize;

use crate::auth::{Claims, Role};
use crate::convert::rfc3339;
use crate::http::error::HttpError;
use crate::http::shows::{
    ApiResult, authenticate, body, build_lineup, field, new_id, require, show_json, show_row,
};
use crate::state::AppState;

/// Longest stream or webhook URL accepted, in bytes.
const MAX_URL_BYTES: usize = 500;
/// Webhook event names a webhook may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 4] =
    ["show.scheduled", "show.live", "show.closed", "show.settled"];
/// Deliveries listed per request at most.
const MAX_DELIVERIES_LISTED: u32 = 500;

fn actor(claims: &Claims) -> String {
    format!("{}:{}", claims.role.as_str(), claims.sub)
}

// --- markets ------------------------------------------------------------------------------

fn market_view(r: &MarketRow) -> Market {
    Market {
        id: r.id.to_string(),
        name: r.name.clone(),
        weekdays: r
            .weekdays
            .iter()
            .map(|w| m::weekday_name(*w).to_owned())
            .collect(),
        start_time: r.start.strftime("%H:%M").to_string(),
        duration_minutes: r.duration_minutes,
        time_zone: r.time_zone.clone(),
        first_date: r.first_date.to_string(),
        last_date: r.last_date.map(|d| d.to_string()),
        min_stars: r.min_stars.get(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
    }
}

fn spec_of(r: &MarketRow) -> MarketSpec {
    MarketSpec {
        name: r.name.clone(),
        weekdays: r.weekdays.clone(),
        start: r.start,
        duration_minutes: r.duration_minutes,
        time_zone: r.time_zone.clone(),
        first_date: r.first_date,
        last_date: r.last_date,
        min_stars: r.min_stars,
    }
}

fn exception_of(r: &ExceptionRow) -> NightException {
    match &r.kind {
        ExceptionKind::Cancelled => NightException::Cancelled {
            date: r.night_date,
            reason: r.reason.clone(),
        },
        ExceptionKind::Moved { to } => NightException::Moved {
            date: r.night_date,
            to: *to,
            reason: r.reason.clone(),
        },
    }
}

/// A stored market with its exceptions, ready to compute nights.
pub(crate) struct Calendar {
    pub row: MarketRow,
    pub market: nightmarket_domain::Market,
    pub exceptions: Vec<NightException>,
}

pub(crate) async fn calendar(state: &AppState, id: &str) -> ApiResult<Calendar> {
    let mid = MarketId::parse(id).map_err(|_| HttpError::not_found("market"))?;
    let row = state
        .catalog
        .market(&mid)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("market {mid}")))?;
    let market = spec_of(&row)
        .validate()
        .map_err(|e| HttpError::new(ErrorCode::Internal, format!("stored market {mid}: {e}")))?;
    let exceptions = state
        .catalog
        .exceptions(&mid)
        .await?
        .iter()
        .map(exception_of)
        .collect();
    Ok(Calendar {
        row,
        market,
        exceptions,
    })
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
    let market = spec
        .validate()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let s = market.to_spec();
    let row = MarketRow {
        id: field("id", MarketId::parse(new_id()))?,
        name: s.name,
        weekdays: s.weekdays,
        start: s.start,
        duration_minutes: s.duration_minutes,
        time_zone: s.time_zone,
        first_date: s.first_date,
        last_date: s.last_date,
        min_stars: s.min_stars,
        created_by: actor(&claims),
        created_at: state.clock.now(),
    };
    state.catalog.create_market(&row).await?;
    Ok((StatusCode::CREATED, Json(market_view(&row))))
}

pub async fn list_markets(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<Market>>> {
    let rows = state.catalog.markets().await?;
    Ok(Json(rows.iter().map(market_view).collect()))
}

pub async fn get_market(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Market>> {
    let cal = calendar(&state, &id).await?;
    Ok(Json(market_view(&cal.row)))
}

#[derive(Debug, Deserialize)]
pub struct NightsQuery {
    /// List nights ending after this instant (ms); default now.
    after: Option<i64>,
    /// Or after the start of this local date.
    from: Option<String>,
    limit: Option<usize>,
}

pub async fn list_nights(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<NightsQuery>,
) -> ApiResult<Json<Vec<Night>>> {
    let cal = calendar(&state, &id).await?;
    let after = match (&q.from, q.after) {
        (Some(d), _) => {
            let date = field("from", parse_date("from", d))?;
            date.to_zoned(cal.market.time_zone().clone())
                .map_err(|e| HttpError::bad_request(format!("from: {e}")))?
                .timestamp()
                .as_millisecond()
        }
        (None, Some(ms)) => ms,
        (None, None) => state.clock.now(),
    };
    let limit = q.limit.unwrap_or(state.config.market.nights_listed);
    if limit == 0 || limit > MAX_NIGHTS_LISTED {
        return Err(HttpError::bad_request(format!(
            "limit: 1 to {MAX_NIGHTS_LISTED}"
        )));
    }
    let nights = cal.market.nights(&cal.exceptions, after, limit);
    let tz = cal.market.time_zone_name().to_owned();
    Ok(Json(nights.iter().map(|n| night_view(n, &tz)).collect()))
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

pub async fn create_exception(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    payload: Result<Json<CreateException>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Exception>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(&state, &id).await?;
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
        created_at: state.clock.now(),
    };
    if let Ok(night) = cal.market.night(&cal.exceptions, date) {
        still_open(&night, row.created_at)?;
    }
    if let ExceptionKind::Moved { to } = &row.kind
        && let Ok(at) = to.to_zoned(cal.market.time_zone().clone())
        && at.timestamp().as_millisecond() <= row.created_at
    {
        return Err(HttpError::bad_request(
            "moved_to: a night cannot move into the past",
        ));
    }
    let mut all = cal.exceptions.clone();
    all.push(exception_of(&row));
    cal.market
        .check_exceptions(&all)
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    state.catalog.add_exception(&row).await?;
    Ok((StatusCode::CREATED, Json(exception_view(&row))))
}

pub async fn list_exceptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Exception>>> {
    let cal = calendar(&state, &id).await?;
    let rows = state.catalog.exceptions(&cal.row.id).await?;
    Ok(Json(rows.iter().map(exception_view).collect()))
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

pub async fn decide(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    payload: Result<Json<Decide>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Decision>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(&state, &id).await?;
    let pid = field("product_id", ProductId::parse(req.product_id))?;
    if state.catalog.product(&pid).await?.is_none() {
        return Err(HttpError::new(
            ErrorCode::UnknownProduct,
            format!("product_id: product {pid} does not exist"),
        ));
    }
    let at = state.clock.now();
    let decision = DomainDecision::new(req.approved, req.reason.as_deref(), &actor(&claims), at)
        .map_err(|e| HttpError::bad_request(format!("reason: {e}")))?;
    let row = DecisionRow {
        id: new_id(),
        market_id: cal.row.id.clone(),
        product_id: pid,
        approved: decision.approved,
        reason: decision.reason.clone(),
        decided_by: decision.decided_by.clone(),
        decided_at: at,
    };
    state.catalog.record_decision(&row).await?;
    Ok((StatusCode::CREATED, Json(decision_view(&row))))
}

#[derive(Debug, Deserialize)]
pub struct DecisionsQuery {
    product_id: Option<String>,
}

pub async fn list_decisions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DecisionsQuery>,
) -> ApiResult<Json<Vec<Decision>>> {
    let claims = authenticate(&state, &headers, None)?;
    let cal = calendar(&state, &id).await?;
    let rows = match q.product_id {
        Some(p) => {
            let pid = field("product_id", ProductId::parse(p))?;
            let owner = state.catalog.product(&pid).await?.map(|(p, _)| p.seller_id);
            // A seller may read the decisions on their own products.
            let allowed = claims.role == Role::Operator
                || (claims.role == Role::Seller
                    && owner.as_ref().is_some_and(|o| o.as_str() == claims.sub));
            if !allowed {
                return Err(HttpError::forbidden(
                    "only an operator or the product's seller",
                ));
            }
            state.catalog.decisions(&cal.row.id, &pid).await?
        }
        None => {
            require(&claims, Role::Operator)?;
            state.catalog.market_decisions(&cal.row.id).await?
        }
    };
    Ok(Json(rows.iter().map(decision_view).collect()))
}

pub(crate) fn night_of(cal: &Calendar, date: &str) -> ApiResult<m::Night> {
    let date = field("date", parse_date("date", date))?;
    cal.market
        .night(&cal.exceptions, date)
        .map_err(|e| HttpError::not_found(format!("night: {e}; market night")))
}

/// Refuses changes to a night that has ended: what happened on it is history (reports and
/// settlement read it), and a show scheduled into it would close at once.
fn still_open(night: &m::Night, now: nightmarket_domain::Millis) -> ApiResult<()> {
    if night.ends_at <= now {
        return Err(HttpError::new(
            ErrorCode::NightOver,
            format!(
                "the night of {} ended at {}; past nights are read-only",
                night.date, night.local_end
            ),
        ));
    }
    Ok(())
}

pub async fn commit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    payload: Result<Json<Commit>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Commitment>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Seller)?;
    let req = body(payload)?;
    let cal = calendar(&state, &id).await?;
    let night = night_of(&cal, &date)?;
    still_open(&night, state.clock.now())?;
    let seller = field("sub", SellerId::parse(claims.sub.clone()))?;
    if state.catalog.seller(&seller).await?.is_none() {
        return Err(HttpError::not_found(format!("seller {seller}")));
    }
    let row = CommitmentRow {
        market_id: cal.row.id.clone(),
        night_date: night.date,
        seller_id: seller,
        statement: field(
            "statement",
            nightmarket_domain::ocop::paragraph("statement", &req.statement),
        )?,
        signed_by: actor(&claims),
        signed_at: state.clock.now(),
    };
    let created = state.catalog.sign_commitment(&row).await?;
    let kept = state
        .catalog
        .commitment(&row.market_id, row.night_date, &row.seller_id)
        .await?
        .unwrap_or(row);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(commitment_view(&kept))))
}

/// `GET /api/markets/{id}/nights/{date}/commitments`: the quality commitments signed for a
/// night, for the office to review (operators see all; a seller sees its own).
pub async fn night_commitments(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Commitment>>> {
    let claims = authenticate(&state, &headers, None)?;
    if claims.role == Role::Viewer {
        return Err(HttpError::forbidden(
            "commitments are for the market office and sellers",
        ));
    }
    let cal = calendar(&state, &id).await?;
    let night = night_of(&cal, &date)?;
    let rows = state
        .catalog
        .night_commitments(&cal.row.id, night.date)
        .await?;
    Ok(Json(
        rows.iter()
            .filter(|c| claims.role == Role::Operator || c.seller_id.as_str() == claims.sub)
            .map(commitment_view)
            .collect(),
    ))
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

/// Every reason the lineup of a show may not go on its night, per product.
pub(crate) async fn admission_issues(
    state: &AppState,
    row: &ShowRow,
    min_stars: Stars,
) -> ApiResult<Vec<AdmissionIssue>> {
    let Some(sched) = &row.schedule else {
        return Ok(Vec::new());
    };
    let committed = state
        .catalog
        .commitment(&sched.market_id, sched.night_date, &row.seller_id)
        .await?
        .is_some();
    // Documents must be valid on the local date the night actually starts.
    let night_day = local_day(state, sched).await?;
    let mut issues = Vec::new();
    for item in &row.lineup {
        let p = &item.product;
        let decision = state
            .catalog
            .decisions(&sched.market_id, &p.id)
            .await?
            .last()
            .map(|d| DomainDecision {
                approved: d.approved,
                reason: d.reason.clone(),
                decided_by: d.decided_by.clone(),
                decided_at: d.decided_at,
            });
        let proof = ProductProof {
            stars: p.stars,
            documents: p.documents.clone(),
        };
        if let Err(refusals) =
            check_admission(&proof, min_stars, night_day, decision.as_ref(), committed)
        {
            issues.extend(refusals.iter().map(|r| issue(&p.id, r)));
        }
    }
    Ok(issues)
}

async fn local_day(state: &AppState, sched: &ShowSchedule) -> ApiResult<Date> {
    let tz = match state.catalog.market(&sched.market_id).await? {
        Some(mk) => TimeZone::get(&mk.time_zone).unwrap_or(TimeZone::UTC),
        None => TimeZone::UTC,
    };
    Ok(jiff::Timestamp::from_millisecond(sched.slot_start)
        .map(|t| t.to_zoned(tz).date())
        .unwrap_or(sched.night_date))
}

fn issue(product: &ProductId, r: &AdmissionRefusal) -> AdmissionIssue {
    AdmissionIssue {
        product_id: product.to_string(),
        reason: r.code().to_owned(),
        message: r.message(),
    }
}

pub(crate) fn not_admitted(issues: Vec<AdmissionIssue>) -> HttpError {
    let products: std::collections::BTreeSet<&str> =
        issues.iter().map(|i| i.product_id.as_str()).collect();
    let message = format!(
        "not admitted for this night: {}",
        products.into_iter().collect::<Vec<_>>().join(", ")
    );
    HttpError::new(ErrorCode::NotAdmitted, message)
        .with_details(serde_json::to_value(&issues).unwrap_or_default())
}

// --- lineup sets --------------------------------------------------------------------------

fn may_act_for(claims: &Claims, seller: &SellerId) -> bool {
    claims.role == Role::Operator || (claims.role == Role::Seller && claims.sub == seller.as_str())
}

fn set_view(s: &LineupSetRow) -> LineupSet {
    LineupSet {
        id: s.id.clone(),
        seller_id: s.seller_id.to_string(),
        name: s.name.clone(),
        items: s
            .items
            .iter()
            .map(|i| LineupSetItem {
                product_id: i.product_id.to_string(),
                stock: i.stock,
                buyer_limit: i.buyer_limit,
            })
            .collect(),
        created_at: s.created_at,
    }
}

pub async fn create_lineup_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
    payload: Result<Json<CreateLineupSet>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<LineupSet>)> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    if state.catalog.seller(&seller).await?.is_none() {
        return Err(HttpError::not_found(format!("seller {seller}")));
    }
    let req = body(payload)?;
    let lineup = build_lineup(&state, &seller, req.items).await?;
    let row = LineupSetRow {
        id: new_id(),
        seller_id: seller,
        name: field("name", text("name", &req.name))?,
        items: lineup
            .iter()
            .map(|l| StoreSetItem {
                product_id: l.product.id.clone(),
                stock: l.stock,
                buyer_limit: l.buyer_limit,
            })
            .collect(),
        created_at: state.clock.now(),
    };
    state.catalog.create_lineup_set(&row).await?;
    Ok((StatusCode::CREATED, Json(set_view(&row))))
}

pub async fn list_lineup_sets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
) -> ApiResult<Json<Vec<LineupSet>>> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    let rows = state.catalog.lineup_sets(&seller).await?;
    Ok(Json(rows.iter().map(set_view).collect()))
}

/// A seller's own shows (scheduled, live and closed), newest first.
pub async fn seller_shows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
) -> ApiResult<Json<Vec<Show>>> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    let rows = state.catalog.seller_shows(&seller).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(show_json(&state, r).await?);
    }
    Ok(Json(out))
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

fn check_url(name: &str, url: &str, schemes: &[&str]) -> ApiResult<String> {
    let url = url.trim();
    if url.len() > MAX_URL_BYTES {
        return Err(HttpError::bad_request(format!(
            "{name}: at most {MAX_URL_BYTES} bytes"
        )));
    }
    let ok = schemes.iter().any(|s| {
        url.strip_prefix(s).is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace)
        })
    });
    if !ok {
        return Err(HttpError::bad_request(format!(
            "{name}: expected a URL starting with {}",
            schemes.join(" or ")
        )));
    }
    Ok(url.to_owned())
}

pub(crate) fn show_event(name: &str, show: &Show, at: i64) -> WebhookEvent {
    let payload = serde_json::json!({
        "id": format!("{name}:{}", show.id),
        "type": name,
        "at": at,
        "show": show,
    });
    WebhookEvent {
        id: format!("{name}:{}", show.id),
        name: name.to_owned(),
        payload: payload.to_string(),
        at,
    }
}

pub async fn schedule_show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    payload: Result<Json<ScheduleShow>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Show>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let cal = calendar(&state, &id).await?;
    let night = night_of(&cal, &date)?;
    let now = state.clock.now();
    still_open(&night, now)?;
    let seller = field("seller_id", SellerId::parse(req.seller_id.clone()))?;
    if state.catalog.seller(&seller).await?.is_none() {
        return Err(HttpError::not_found(format!("seller {seller}")));
    }
    let title = field("title", text("title", &req.title))?;
    let stream_url = check_url("stream_url", &req.stream_url, &["https://"])?;
    let tz = cal.market.time_zone().clone();
    let slot = Slot {
        starts_at: slot_instant("slot_start", &req.slot_start, &tz)?,
        ends_at: slot_instant("slot_end", &req.slot_end, &tz)?,
    };
    let same_seller: Vec<(ShowId, Slot)> = state
        .catalog
        .seller_shows(&seller)
        .await?
        .into_iter()
        .filter_map(|s| {
            s.schedule.map(|sc| {
                (
                    s.id,
                    Slot {
                        starts_at: sc.slot_start,
                        ends_at: sc.slot_end,
                    },
                )
            })
        })
        .collect();
    check_slot(&night, slot, &same_seller).map_err(|e| match e {
        SlotError::Empty { .. } => HttpError::bad_request(format!("slot_end: {e}")),
        other => HttpError::new(ErrorCode::SlotUnavailable, other.to_string()),
    })?;
    if slot.ends_at <= now {
        return Err(HttpError::new(
            ErrorCode::SlotUnavailable,
            "slot_end: the slot has already ended",
        ));
    }
    let items: Vec<CreateLineupItem> = match (req.lineup, req.lineup_set_id) {
        (Some(items), None) => items,
        (None, Some(set)) => {
            let set = state
                .catalog
                .lineup_set(&set)
                .await?
                .filter(|s| s.seller_id == seller)
                .ok_or_else(|| {
                    HttpError::not_found(format!("lineup set {set} of seller {seller}"))
                })?;
            set.items
                .into_iter()
                .map(|i| CreateLineupItem {
                    product_id: i.product_id.to_string(),
                    stock: i64::from(i.stock),
                    buyer_limit: i64::from(i.buyer_limit),
                })
                .collect()
        }
        _ => {
            return Err(HttpError::bad_request(
                "lineup: give either lineup or lineup_set_id",
            ));
        }
    };
    let lineup: Vec<LineupRow> = build_lineup(&state, &seller, items).await?;
    let row = ShowRow {
        id: field("id", ShowId::parse(new_id()))?,
        seller_id: seller,
        title,
        status: ShowStatus::Scheduled,
        created_at: now,
        lineup,
        schedule: Some(ShowSchedule {
            market_id: cal.row.id.clone(),
            night_date: night.date,
            slot_start: slot.starts_at,
            slot_end: slot.ends_at,
            stream_url,
        }),
        live_at: None,
        closed_at: None,
    };
    let issues = admission_issues(&state, &row, cal.market.min_stars()).await?;
    if !issues.is_empty() {
        return Err(not_admitted(issues));
    }
    let event = show_event(
        "show.scheduled",
        &crate::http::shows::show_body(&row, ShowStatus::Scheduled),
        now,
    );
    state.catalog.schedule_show(&row, Some(&event)).await?;
    state.load_show(&row).await?;
    Ok((StatusCode::CREATED, Json(show_json(&state, &row).await?)))
}

pub async fn night_shows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Show>>> {
    let cal = calendar(&state, &id).await?;
    let night = night_of(&cal, &date)?;
    // The programme is public; a seller signed in sees only their own shows here.
    let only = match authenticate(&state, &headers, None) {
        Ok(c) if c.role == Role::Seller => Some(c.sub),
        _ => None,
    };
    let rows = state.catalog.night_shows(&cal.row.id, night.date).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows
        .iter()
        .filter(|r| only.as_deref().is_none_or(|s| r.seller_id.as_str() == s))
    {
        out.push(show_json(&state, r).await?);
    }
    Ok(Json(out))
}

/// Scheduled shows that could not go live as things stand: documents expiring before the
/// night, decisions revoked, commitments missing.
pub async fn warnings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ExpiryWarning>>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let mut out = Vec::new();
    for row in state.catalog.upcoming_shows().await? {
        let Some(sched) = &row.schedule else { continue };
        let Some(mk) = state.catalog.market(&sched.market_id).await? else {
            continue;
        };
        let issues = admission_issues(&state, &row, mk.min_stars).await?;
        if !issues.is_empty() {
            out.push(ExpiryWarning {
                show_id: row.id.to_string(),
                seller_id: row.seller_id.to_string(),
                market_id: sched.market_id.to_string(),
                night_date: sched.night_date.to_string(),
                issues,
            });
        }
    }
    Ok(Json(out))
}

pub async fn transitions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Transition>>> {
    let row = show_row(&state, id).await?;
    let rows = state.catalog.transitions(&row.id).await?;
    Ok(Json(
        rows.iter()
            .map(|t| Transition {
                from: t.from.as_str().to_owned(),
                to: t.to.as_str().to_owned(),
                actor: t.actor.clone(),
                at: t.at,
            })
            .collect(),
    ))
}

// --- webhooks -----------------------------------------------------------------------------

fn webhook_view(w: &WebhookRow, secret: bool) -> Webhook {
    Webhook {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        active: w.active,
        secret: secret.then(|| w.secret.clone()),
        created_by: w.created_by.clone(),
        created_at: w.created_at,
    }
}

fn delivery_view(d: &DeliveryRow) -> Delivery {
    Delivery {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        event: d.event.clone(),
        state: d.state.clone(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at,
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        created_at: d.created_at,
        delivered_at: d.delivered_at,
    }
}

pub async fn create_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateWebhook>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let url = check_url("url", &req.url, &["http://", "https://"])?;
    if let Some(reason) =
        crate::jobs::webhooks::refuse_target(&url, state.config.webhooks.allow_private_targets)
    {
        return Err(HttpError::bad_request(format!("url: {reason}")));
    }
    if req.events.is_empty() {
        return Err(HttpError::bad_request(
            "events: at least one event, or \"*\"",
        ));
    }
    for e in &req.events {
        if e != "*" && !WEBHOOK_EVENTS.contains(&e.as_str()) {
            return Err(HttpError::bad_request(format!(
                "events: unknown event {e:?}; expected {} or \"*\"",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
    }
    let secret = format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let row = WebhookRow {
        id: new_id(),
        url,
        secret,
        events: req.events,
        active: true,
        created_by: actor(&claims),
        created_at: state.clock.now(),
    };
    state.catalog.create_webhook(&row).await?;
    Ok((StatusCode::CREATED, Json(webhook_view(&row, true))))
}

pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Webhook>>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let rows = state.catalog.webhooks().await?;
    Ok(Json(rows.iter().map(|w| webhook_view(w, false)).collect()))
}

/// Turns a webhook off; its log stays.
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if !state.catalog.set_webhook_active(&id, false).await? {
        return Err(HttpError::not_found(format!("webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<u32>,
}

pub async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Vec<Delivery>>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if state.catalog.webhook(&id).await?.is_none() {
        return Err(HttpError::not_found(format!("webhook {id}")));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_DELIVERIES_LISTED);
    let rows = state.catalog.deliveries(Some(&id), limit).await?;
    Ok(Json(rows.iter().map(delivery_view).collect()))
}

pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((webhook, delivery)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if !state
        .catalog
        .redeliver(&webhook, &delivery, state.clock.now())
        .await?
    {
        return Err(HttpError::not_found(format!(
            "delivery {delivery} of webhook {webhook}"
        )));
    }
    Ok(StatusCode::ACCEPTED)
}
