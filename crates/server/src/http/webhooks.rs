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
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, actor, authenticate, body, require};
use crate::http::page::{Listed, PageQuery};
use crate::services::new_id;
use crate::services::webhooks::{check_registration, new_secret};
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

pub async fn create_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateWebhook>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let allow_private = state.config().webhooks.allow_private_targets;
    let url = check_registration(&req.url, &req.events, allow_private)?;
    let row = WebhookRow {
        id: new_id(),
        url,
        secret: new_secret(),
        events: req.events,
        active: true,
        created_by: actor(&claims),
        created_at: state.now(),
    };
    state.store().create_webhook(&row).await?;
    Ok((StatusCode::CREATED, Json(webhook_view(&row, true))))
}

pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Webhook>> {
    let pager = page.open("webhooks")?;
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let rows = state.store().webhooks(&pager.keyset).await?;
    Ok(pager.view(rows, |w| webhook_view(w, false)))
}

/// Turns a webhook off; its log stays.
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if !state.store().set_webhook_active(&id, false).await? {
        return Err(HttpError::not_found(format!("webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Delivery>> {
    let pager = page.open("deliveries")?;
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if state.store().webhook(&id).await?.is_none() {
        return Err(HttpError::not_found(format!("webhook {id}")));
    }
    let rows = state.store().webhook_deliveries(&id, &pager.keyset).await?;
    Ok(pager.view(rows, delivery_view))
}

pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((webhook, delivery)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if !state
        .store()
        .redeliver(&webhook, &delivery, state.now())
        .await?
    {
        return Err(HttpError::not_found(format!(
            "delivery {delivery} of webhook {webhook}"
        )));
    }
    Ok(StatusCode::ACCEPTED)
}
