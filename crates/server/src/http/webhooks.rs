//! Webhooks over HTTP (operators): register a target for show events, list and turn them off,
//! read each one's deliveries and send one again.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use nightmarket_store::{DeliveryRow, WebhookRow};
use nightmarket_wire::market::{CreateWebhook, Delivery, Webhook};

use crate::auth::Role;
use crate::http::extract::{ApiResult, actor, authenticate, body, require};
use crate::http::page::{Listed, PageQuery};
use crate::http::refusal;
use crate::services::webhooks;
use crate::state::AppState;

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

#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = "Webhooks",
    summary = "Register a webhook (https:// or http://); the signing secret is shown once",
    description = "Who: operator. Private, loopback and link-local targets are refused unless webhooks.allow_private_targets is set.",
    request_body(content = CreateWebhook, example = json!({"url": "http://10.0.0.5:8081/nightmarket", "events": ["show.live", "show.closed"]})),
    responses(
        (status = 201, description = "Success", body = Webhook, example = json!({"id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "url": "http://10.0.0.5:8081/nightmarket", "events": ["show.live", "show.closed"], "active": true, "secret": "whsec_…", "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateWebhook>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let allow_private = state.config().webhooks.allow_private_targets;
    let row = webhooks::register(
        state.store(),
        &req.url,
        req.events,
        allow_private,
        actor(&claims),
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(webhook_view(&row, true))))
}

#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = "Webhooks",
    summary = "Registered webhooks",
    description = "Who: operator.",
    responses(
        (status = 200, description = "Success", body = Vec<Webhook>, example = json!([{"id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "url": "http://10.0.0.5:8081/nightmarket", "events": ["show.live", "show.closed"], "active": true, "secret": null, "created_by": "operator:ops-hanoi", "created_at": 1795564800000_i64}])),
        refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Webhook>> {
    let pager = page.open("webhooks")?;
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let rows = webhooks::webhooks(state.store(), &pager.keyset).await?;
    Ok(pager.view(rows, |w| webhook_view(w, false)))
}

/// Turns a webhook off; its log stays.
#[utoipa::path(
    delete,
    path = "/api/webhooks/{id}",
    tag = "Webhooks",
    summary = "Turn a webhook off (its log stays)",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 204, description = "Success"),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    webhooks::deactivate(state.store(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/webhooks/{id}/deliveries",
    tag = "Webhooks",
    summary = "Delivery log, newest first",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Vec<Delivery>, example = json!([{"id": "show.live:0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b/0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "webhook_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "event_id": "show.live:0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "event": "show.live", "state": "delivered", "attempts": 1, "next_attempt_at": 1795786200000_i64, "last_status": 200, "created_at": 1795786200000_i64, "delivered_at": 1795786200050_i64}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Delivery>> {
    let pager = page.open("deliveries")?;
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let rows = webhooks::deliveries(state.store(), &id, &pager.keyset).await?;
    Ok(pager.view(rows, delivery_view))
}

#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/deliveries/{delivery}/redeliver",
    tag = "Webhooks",
    summary = "Make a delivery due again now",
    description = "Who: operator.",
    params(("id" = String, Path, description = "Id"), ("delivery" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Success"),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((webhook, delivery)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    webhooks::redeliver(state.store(), &webhook, &delivery, state.now()).await?;
    Ok(StatusCode::ACCEPTED)
}
