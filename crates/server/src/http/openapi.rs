//! `/api/openapi.json`: the OpenAPI document of every HTTP endpoint, derived by utoipa from the
//! wire types (`ToSchema`) and each handler's `#[utoipa::path]`, built once and cached.
//!
//! What every operation shares is added here rather than on each handler: the refusals any
//! request may meet at the edge (the `default` response), an example body for each documented
//! error status, built from the code the status stands for, and the security schemes.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use nightmarket_wire::http::ApiError;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::middleware::REQUEST_ID;
use crate::http::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::http::refusal;
use crate::http::{
    catalog, health, market, metrics, orders, reports, sessions, shows, web, webhooks, ws,
};

/// The name of the session cookie, as the security scheme names it.
const SESSION_COOKIE: &str = crate::http::sessions::COOKIE_NAME;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nightmarket",
        description = "The HTTP API of Nightmarket: livestream market nights. Bodies and error codes are described in docs/protocol.md; instants are milliseconds since the epoch (UTC) or RFC 3339 UTC text, local dates YYYY-MM-DD in the market's time zone, money integer đồng.",
    ),
    servers((url = "/")),
    paths(
        web::viewer,
        web::seller,
        web::operator,
        web::signin,
        web::asset,
        sessions::redeem,
        sessions::guest,
        sessions::signout,
        sessions::me,
        sessions::create_invite,
        health::healthz,
        health::readyz,
        metrics::metrics,
        catalog::create_seller,
        catalog::list_sellers,
        catalog::get_seller,
        catalog::create_product,
        catalog::list_products,
        catalog::get_product,
        shows::create_show,
        shows::list_shows,
        shows::get_show,
        shows::go_live,
        shows::close,
        shows::transitions,
        reports::show_report,
        reports::live_stats,
        shows::seller_shows,
        catalog::create_lineup_set,
        catalog::list_lineup_sets,
        market::create_market,
        market::list_markets,
        market::get_market,
        market::list_nights,
        market::create_exception,
        market::list_exceptions,
        market::decide,
        market::list_decisions,
        market::commit,
        market::night_commitments,
        market::schedule_show,
        market::night_shows,
        orders::night_orders,
        orders::show_orders,
        orders::my_orders,
        orders::my_checkouts,
        orders::get_checkout,
        orders::pay_checkout,
        orders::get_order,
        orders::set_status,
        reports::night_report,
        market::warnings,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::delete_webhook,
        webhooks::list_deliveries,
        webhooks::redeliver,
        openapi,
        ws::upgrade,
    ),
    components(schemas(ApiError)),
    modifiers(&Shared),
)]
struct ApiDoc;

/// What every operation shares (see the module's documentation).
struct Shared;

/// The refusals any request may meet before or around its handler.
const EDGE_REFUSALS: &str = "Any other refusal, in the JSON error body with its stable code (docs/protocol.md §6): 405 method_not_allowed, 413 body_too_large, 414 uri_too_long, 431 headers_too_large, 503 unavailable, 504 timeout";

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (HS256)")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "sessionCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The HttpOnly session cookie set by /api/auth/redeem and /api/auth/guest. State-changing requests signed by it must come from the server's own origin (403 csrf_rejected otherwise).",
            ))),
        );
        paging(doc);
        let error_body = || Ref::from_schema_name(ApiError::name());
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses.responses.insert(
                    "default".to_owned(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(EDGE_REFUSALS)
                            .content(
                                "application/json",
                                ContentBuilder::new().schema(Some(error_body())).build(),
                            )
                            .build(),
                    ),
                );
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    response
                        .headers
                        .insert(REQUEST_ID.as_str().to_owned(), request_id_header());
                    if !status.starts_with(['4', '5']) {
                        continue;
                    }
                    // The description opens with the code (`not_found`, or `a or b`): the
                    // example shows the first.
                    let code: String = response
                        .description
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if let Some(content) = response.content.get_mut("application/json")
                        && content.example.is_none()
                        && !code.is_empty()
                    {
                        content.example = Some(refusal::error_example(&code));
                    }
                }
            }
        }
    }
}

/// Every list endpoint pages the same way (`http::page`): a GET whose success body is a JSON
/// array is documented with `limit`, `cursor` and the `Next-Cursor` header here, in one place,
/// as one extractor implements them for every such handler.
fn paging(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") else {
            continue;
        };
        let is_list = ok
            .content
            .get("application/json")
            .and_then(|c| c.schema.as_ref())
            .is_some_and(|s| matches!(s, RefOr::T(Schema::Array(_))));
        if !is_list {
            continue;
        }
        ok.headers.insert(
            "Next-Cursor".to_owned(),
            HeaderBuilder::new()
                .schema(Object::with_type(Type::String))
                .description(Some(
                    "The cursor of the next page, sent only when another page follows",
                ))
                .build(),
        );
        let params = op.parameters.get_or_insert_with(Vec::new);
        params.retain(|p| p.name != "limit" && p.name != "cursor");
        params.push(
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(format!(
                    "Items per page, 1 to {MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE} (nights: market.nights_listed). Out of range: 400 bad_request"
                )))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(MAX_PAGE_SIZE as f64)),
                ))
                .build(),
        );
        params.push(
            ParameterBuilder::new()
                .name("cursor")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "The previous page's Next-Cursor, passed back untouched; another list's or a malformed one: 400 bad_cursor",
                ))
                .schema(Some(Object::with_type(Type::String)))
                .build(),
        );
    }
}

/// The `x-request-id` every response carries (see `http::middleware`).
fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(Object::with_type(Type::String))
        .description(Some(
            "The request's own id when it sent a sane one (1 to 128 letters, digits and -_.:), else one the server made; the server's log lines of the request carry it",
        ))
        .build()
}

/// The document, built on first use: the types and annotations do not change while running.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"the API document failed to serialize: {e}\"}}"))
});

/// The document as the server serves it (tests compare the two).
pub fn document() -> &'static str {
    &DOCUMENT
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "Operations",
    summary = "This document",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", body = serde_json::Value),
    ),
)]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
