//! HTTP errors: a service's error answered as the project's JSON body,
//! `{"error":{"code","message","details"}}`, with the status its code stands for.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{ApiError, ApiErrorBody};

/// The error every handler answers with: the services' own, whose code picks the status.
pub type HttpError = crate::services::ServiceError;

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        }
        // RFC 6750 §3: a 401 names the scheme, and why a token was refused when one was sent.
        let challenge = (self.code == ErrorCode::Unauthorized).then(|| {
            let missing = self
                .details
                .as_ref()
                .is_some_and(|d| d["reason"] == "missing");
            if missing {
                axum::http::HeaderValue::from_static("Bearer")
            } else {
                www_authenticate(&self.message)
            }
        });
        let body = ApiError {
            error: ApiErrorBody {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(v) = challenge {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// A `WWW-Authenticate` value for a refused bearer token (RFC 6750 §3).
fn www_authenticate(description: &str) -> axum::http::HeaderValue {
    let clean: String = description
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect();
    axum::http::HeaderValue::from_str(&format!(
        "Bearer error=\"invalid_token\", error_description=\"{clean}\""
    ))
    .unwrap_or_else(|_| axum::http::HeaderValue::from_static("Bearer"))
}
