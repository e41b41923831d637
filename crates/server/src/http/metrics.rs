//! `/metrics`: this node's Prometheus metrics ([`crate::metrics`]), with the shows it serves, the
//! viewers connected to it and the shows whose report statistics it holds.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Operations",
    summary = "Prometheus metrics",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", content((String = "text/plain", example = json!("nightmarket_connections 0")))),
    ),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let live = state.live();
    live.observe();
    let body = state.metrics().render(
        live.count(),
        live.viewers(),
        state.show_stats().shows_held(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
