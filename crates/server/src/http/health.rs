//! `/healthz` (the process answers) and `/readyz` (what the background probers last found;
//! nothing is probed per request, see [`crate::jobs::health`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightmarket_wire::http::{BackendState, Readiness};

use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

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
