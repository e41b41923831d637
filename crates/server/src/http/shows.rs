//! Shows over HTTP: operators create shows outside a market night; an operator or the show's
//! seller takes a show live and closes it. Reads are public (a show page is public), except a
//! seller's own list.

use nightmarket_wire::http::ApiError;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use nightmarket_domain::SellerId;
use nightmarket_domain::ocop::text;
use nightmarket_inventory::Command;
use nightmarket_store::ShowRow;
use nightmarket_wire::http::{CreateShow, Show};
use nightmarket_wire::market::Transition;

use crate::auth::Role;
use crate::convert;
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, authenticate, body, field, may_act_for, require};
use crate::http::page::{Listed, PageQuery};
use crate::http::refusal;
use crate::services::catalog::existing_seller;
use crate::services::shows::{self, Standing};
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/api/shows",
    tag = "Shows",
    summary = "Create an ad-hoc show (no market, no slot, no admission)",
    description = "Who: operator.",
    request_body(content = CreateShow, example = json!({"seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Thử sóng", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}]})),
    responses(
        (status = 201, description = "Success", body = Show, example = json!({"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": null})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateShow>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Show>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let seller_id = existing_seller(state.store(), req.seller_id).await?;
    let title = field("title", text("title", &req.title))?;
    let row = state.shows().create(seller_id, title, req.lineup).await?;
    Ok((StatusCode::CREATED, Json(show_json(&state, &row).await?)))
}

/// A stored show as the API returns it: its stock and sequence as the inventory has them now,
/// when this node serves it.
pub(crate) async fn show_json(state: &AppState, row: &ShowRow) -> ApiResult<Show> {
    Ok(show_with(row, state.shows().standing(row).await?))
}

/// Every row as the API returns it, with one inventory read for all of them.
pub(crate) async fn shows_json(state: &AppState, rows: &[ShowRow]) -> ApiResult<Vec<Show>> {
    let standings = state.shows().standings(rows).await?;
    Ok(rows
        .iter()
        .zip(standings)
        .map(|(row, standing)| show_with(row, standing))
        .collect())
}

fn show_with(row: &ShowRow, standing: Standing) -> Show {
    Show {
        stock: standing.stock.as_ref().map(convert::stock_levels),
        seq: standing.seq,
        ..convert::show_body(row, standing.status)
    }
}

#[utoipa::path(
    get,
    path = "/api/shows",
    tag = "Shows",
    summary = "Every show, newest first",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", body = Vec<Show>, example = json!([{"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}}])),
        refusal::Unavailable,
    ),
)]
pub async fn list_shows(
    State(state): State<Arc<AppState>>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Show>> {
    let pager = page.open("shows")?;
    let rows = shows::shows(state.store(), &pager.keyset).await?;
    Ok(pager.respond(shows_json(&state, &rows.items).await?, rows.next))
}

/// The stored show a path names; 404 when there is none.
pub(crate) async fn show_row(state: &AppState, id: String) -> ApiResult<ShowRow> {
    shows::stored(state.store(), id).await
}

#[utoipa::path(
    get,
    path = "/api/shows/{id}",
    tag = "Shows",
    summary = "A show with its stock",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Show, example = json!({"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}})),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn get_show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    let row = show_row(&state, id).await?;
    Ok(Json(show_json(&state, &row).await?))
}

async fn transition(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    cmd: Command,
) -> ApiResult<Json<Show>> {
    let claims = authenticate(&state, &headers, None)?;
    let row = show_row(&state, id).await?;
    state.shows().transition(&claims, &row, cmd).await?;
    let row = show_row(&state, row.id.to_string()).await?;
    Ok(Json(show_json(&state, &row).await?))
}

#[utoipa::path(
    post,
    path = "/api/shows/{id}/live",
    tag = "Shows",
    summary = "Take a show live (operator, or its seller within the early-start window); every product must still be admitted",
    description = "Who: operator or the show's seller.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Show, example = json!({"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "live", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}})),
        (status = 422, description = "not_admitted", body = ApiError),
        (status = 409, description = "invalid_state", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn go_live(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    transition(state, headers, id, Command::GoLive).await
}

#[utoipa::path(
    post,
    path = "/api/shows/{id}/close",
    tag = "Shows",
    summary = "Close a show",
    description = "Who: operator or the show's seller.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Show, example = json!({"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "closed", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}})),
        (status = 409, description = "invalid_state: the show is closed already", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn close(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    transition(state, headers, id, Command::Close).await
}

/// `GET /api/shows/{id}/transitions`: every status the show reached, who moved it and when.
#[utoipa::path(
    get,
    path = "/api/shows/{id}/transitions",
    tag = "Shows",
    summary = "The statuses a show went through, with who and when",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Vec<Transition>, example = json!([{"from": "scheduled", "to": "live", "actor": "scheduler@4242", "at": 1795786200000_i64}])),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn transitions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Transition>> {
    let pager = page.open("transitions")?;
    let row = show_row(&state, id).await?;
    let rows = shows::transitions(state.store(), &row.id, &pager.keyset).await?;
    Ok(pager.view(rows, |t| Transition {
        from: t.from.as_str().to_owned(),
        to: t.to.as_str().to_owned(),
        actor: t.actor.clone(),
        at: t.at,
        reason: t.reason.clone(),
    }))
}

/// A seller's own shows (scheduled, live and closed), newest first.
#[utoipa::path(
    get,
    path = "/api/sellers/{id}/shows",
    tag = "Schedule",
    summary = "A seller's own shows",
    description = "Who: operator or that seller.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Vec<Show>, example = json!([{"id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "title": "Mật ong Ba Vì — Chợ đêm trên mây", "status": "scheduled", "lineup": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64, "seq": 0, "schedule": {"market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "slot_start": "2026-11-27T13:30:00Z", "slot_end": "2026-11-27T14:00:00Z", "slot_start_ms": 1795786200000_i64, "slot_end_ms": 1795788000000_i64, "stream_url": "https://www.facebook.com/chodemtrenmay/live"}}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn seller_shows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Show>> {
    let pager = page.open("seller_shows")?;
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    let rows = shows::seller_shows(state.store(), &seller, &pager.keyset).await?;
    Ok(pager.respond(shows_json(&state, &rows.items).await?, rows.next))
}
