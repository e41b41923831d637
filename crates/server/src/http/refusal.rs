//! The refusals many operations share in the OpenAPI document, one type per status, listed in
//! a handler's `#[utoipa::path]` `responses(...)` next to its own: each is the error body with
//! its code and an example. Apart from the document (`http::openapi`), so that the handlers
//! and the document both depend on it and not on each other.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::ApiError;

/// The response of one refusal: the error body, an example with its code.
fn response(code: ErrorCode, description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ApiError::name())))
                    .example(Some(error_example(code.as_str())))
                    .build(),
            )
            .build(),
    )
}

macro_rules! refusal {
    ($(#[$doc:meta])* $name:ident, $code:ident, $description:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let code = ErrorCode::$code;
                BTreeMap::from([(
                    code.http_status().to_string(),
                    response(code, $description),
                )])
            }
        }
    };
}

refusal!(
    /// 400: what the request carries does not parse.
    BadRequest,
    BadRequest,
    "bad_request: a path segment that is not UTF-8 once percent-decoded, a query parameter that does not parse, or a body that does not fit the request (the message names the field)"
);
refusal!(
    /// 401: no token, or one that does not verify.
    Unauthorized,
    Unauthorized,
    "unauthorized: no bearer token or session, or one that does not verify (details.reason: missing, malformed, bad_signature, expired, issued_in_future, signed_out, bad_subject)"
);
refusal!(
    /// 403: the caller's role or subject may not do this.
    Forbidden,
    Forbidden,
    "forbidden: the caller's role or subject may not do this (details: needed_role, role where one role is needed)"
);
refusal!(
    /// 404: what the path names does not exist.
    NotFound,
    NotFound,
    "not_found: what the path names does not exist"
);
refusal!(
    /// 503: a backend is failing, or the server is shutting down.
    Unavailable,
    Unavailable,
    "unavailable: a backend is failing, or the server is shutting down"
);

/// An error body with `code`, as the examples of error responses show it.
pub fn error_example(code: &str) -> serde_json::Value {
    serde_json::json!({
        "error": { "code": code, "message": format!("{}: what went wrong, in words", code.replace('_', " ")) }
    })
}
