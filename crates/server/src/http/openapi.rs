//! `/api/openapi.json`: the OpenAPI 3 document of every HTTP endpoint.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The OpenAPI 3 document of every HTTP endpoint; a test keeps it in step with the router.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
