//! What every handler reads from a request before calling a service: the caller (a verified
//! bearer token, or the session cookie the session layer turned into one), its role, and a JSON
//! body whose refusals name the field.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{body_field_error, strip_position};

use crate::auth::{Claims, Role};
use crate::http::error::HttpError;
use crate::state::AppState;

pub use crate::services::{field, may_act_for};

pub(crate) type ApiResult<T> = Result<T, HttpError>;

/// The bearer token of a request, verified.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> ApiResult<Claims> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = header.or(query_token).unwrap_or("");
    state
        .key()
        .verify(token.trim(), state.now().div_euclid(1000))
        .map_err(|e| unauthorized(e.reason(), e.to_string()))
}

/// A 401 that says what is wrong: `details.reason` is one of `missing`, `malformed`,
/// `bad_signature`, `expired`, `issued_in_future`, `signed_out`, `bad_subject`.
pub(crate) fn unauthorized(reason: &'static str, message: impl Into<String>) -> HttpError {
    HttpError::new(ErrorCode::Unauthorized, message)
        .with_details(serde_json::json!({ "reason": reason }))
}

pub(crate) fn require(claims: &Claims, role: Role) -> ApiResult<()> {
    if claims.role == role {
        Ok(())
    } else {
        Err(HttpError::forbidden(format!(
            "this needs the {} role; the token's role is {}",
            role.as_str(),
            claims.role.as_str()
        ))
        .with_details(serde_json::json!({
            "needed_role": role.as_str(),
            "role": claims.role.as_str(),
        })))
    }
}

/// Who did something, as the store records it: `<role>:<subject>`.
pub(crate) fn actor(claims: &Claims) -> String {
    format!("{}:{}", claims.role.as_str(), claims.sub)
}

pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload.map(|Json(v)| v).map_err(|e| {
        // The body was cut at `limits.max_body_bytes` while it was read (no Content-Length, or
        // one that lied): the same refusal as a declared length past the limit.
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return HttpError::new(ErrorCode::BodyTooLarge, crate::http::edge::BODY_TOO_LARGE);
        }
        let message = match &e {
            JsonRejection::JsonDataError(_) => body_field_error(&e.body_text()),
            JsonRejection::JsonSyntaxError(_) => {
                format!("body: not valid JSON ({})", strip_position(&e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => {
                "Content-Type: expected application/json".to_owned()
            }
            _ => format!("body: {}", e.body_text()),
        };
        HttpError::bad_request(message)
    })
}
