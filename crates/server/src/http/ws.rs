//! `GET /ws/shows/{id}`: the WebSocket upgrade. It authenticates the caller, finds (or loads)
//! the show, takes one of `limits.max_connections` places and hands the socket to a session
//! ([`crate::ws`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use nightmarket_domain::{BuyerId, ShowId};
use nightmarket_wire::ErrorCode;

use crate::auth::Role;
use crate::http::error::HttpError;
use crate::http::extract::{authenticate, unauthorized};
use crate::http::refusal;
use crate::metrics;
use crate::state::AppState;
use crate::ws;

/// Bytes of WebSocket read buffer a connection starts with (see [`upgrade`]).
const VIEWER_READ_BUFFER: usize = 512;

#[utoipa::path(
    get,
    path = "/ws/shows/{id}",
    tag = "Shows",
    summary = "WebSocket: the live show protocol (docs/protocol.md); token as ?token= or Authorization",
    description = "Who: any role.",
    params(("id" = String, Path, description = "Id"), ("token" = Option<String>, Query, description = "Bearer token"), ("last_seq" = Option<u64>, Query, description = "Resume after this sequence number")),
    responses(
        (status = 101, description = "Success"),
        refusal::BadRequest, refusal::Unauthorized, refusal::NotFound,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    let claims = authenticate(&state, &headers, query.get("token").map(String::as_str))?;
    if claims.role == Role::Viewer && BuyerId::parse(claims.sub.clone()).is_err() {
        return Err(unauthorized(
            "bad_subject",
            "the token's subject is not a valid buyer id",
        ));
    }
    let last_seq = match query.get("last_seq") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| HttpError::bad_request("last_seq: a whole number"))?,
        ),
    };
    let id = ShowId::parse(id).map_err(|_| HttpError::not_found("show"))?;
    let rt = state.shows().open(&id).await?;
    if state.shutting_down() {
        return Err(HttpError::new(ErrorCode::Unavailable, "shutting down"));
    }
    let Some(permit) = state.admit() else {
        metrics::inc(&state.metrics().connections_refused);
        return Err(HttpError::new(
            ErrorCode::Unavailable,
            "connection limit reached; retry later",
        ));
    };
    // Distributed mode: this node now follows the show's events from every other node.
    state.live().watch(&rt);
    let peer = ws::peer_for(claims, &rt);
    let limits = &state.config().limits;
    let upgrade = upgrade
        .max_message_size(limits.hard_frame_bytes)
        .max_frame_size(limits.hard_frame_bytes)
        // Tungstenite's default read buffer is 128 KiB per connection, allocated up front.
        // Client frames (claims, commands) are a few hundred bytes; a longer frame grows the
        // buffer as it arrives, up to the frame limit. Idle viewers are most connections.
        .read_buffer_size(VIEWER_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.hard_frame_bytes.max(64 * 1024) * 4);
    Ok(upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            ws::run(state, rt, peer, socket, last_seq).await;
            drop(permit);
        }))
}
