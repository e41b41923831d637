//! `/healthz` (the process answers) and `/readyz` (what the background probers last found;
//! nothing is probed per request, see [`crate::jobs::health`]).

use nightmarket_wire::http::ApiError;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightmarket_wire::http::{BackendState, Readiness};

use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Operations",
    summary = "Liveness",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", content((String = "text/plain", example = json!("ok")))),
    ),
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Operations",
    summary = "Readiness: every backend reachable",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", body = Readiness, example = json!({"ready": true, "backends": [{"name": "redis", "state": "ok", "since": 1765530120000_i64}, {"name": "postgres", "state": "ok", "since": 1765530000000_i64}]})),
        (status = 503, description = "A dependency is failing (or the server is shutting down); the same body", body = ApiError),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut backends = state.health().report();
    if state.shutting_down() {
        backends.push(BackendState {
            name: "server".into(),
            state: "failing".into(),
            detail: Some("shutting down".into()),
            since: None,
            last_error: None,
            last_error_at: None,
        });
    }
    let ready = backends.iter().all(|b| b.state == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, backends })).into_response()
}
