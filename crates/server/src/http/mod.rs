//! The HTTP side of the server: [`router`] lists every route in one place; each resource has its
//! module, whose handlers parse the request, call a service and format the answer.
//!
//! - [`edge`]: the accept loop, the bounds every request meets, JSON for every error response.
//! - [`middleware`]: the pieces of the tower-http stack [`router`] puts around every route.
//! - [`extract`]: the caller (bearer token or session cookie), roles, JSON bodies.
//! - [`page`]: the paging contract of every list endpoint (`limit`, `cursor`, `Next-Cursor`).
//! - [`error`]: a service's error answered with the status its code stands for.
//! - [`sessions`]: sign-in (invites, guests, sign-out) and the session-cookie layer.
//! - [`catalog`]: sellers, products, lineup sets. [`shows`]: shows, going live, closing.
//! - [`market`]: markets, nights, exceptions, admissions, commitments, scheduling.
//! - [`orders`]: orders and checkouts. [`reports`]: show and night reports, live figures.
//! - [`webhooks`]: webhook registrations and their deliveries.
//! - [`ws`]: the WebSocket upgrade. [`web`]: the consoles' pages and assets.
//! - [`health`], [`metrics`], [`openapi`]: probes, Prometheus, the API description;
//!   [`refusal`]: the error responses many operations document.
//! - [`csv`]: the one CSV writer of every export, formula-guarded.

pub mod catalog;
pub mod csv;
pub mod edge;
pub mod error;
pub mod extract;
pub mod health;
pub mod held;
pub mod market;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod orders;
pub mod page;
pub mod refusal;
pub mod reports;
pub mod sessions;
pub mod shows;
pub mod web;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::http::error::HttpError;
use crate::state::AppState;

/// Every route of the server, with the layers every request passes through.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(web::viewer))
        .route("/seller", get(web::seller))
        .route("/operator", get(web::operator))
        .route("/signin", get(web::signin))
        .route("/web/{*path}", get(web::asset))
        .route("/api/auth/redeem", post(sessions::redeem))
        .route("/api/auth/guest", post(sessions::guest))
        .route("/api/auth/signout", post(sessions::signout))
        .route("/api/me", get(sessions::me))
        .route("/api/invites", post(sessions::create_invite))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/sellers",
            post(catalog::create_seller).get(catalog::list_sellers),
        )
        .route("/api/sellers/{id}", get(catalog::get_seller))
        .route(
            "/api/products",
            post(catalog::create_product).get(catalog::list_products),
        )
        .route("/api/products/{id}", get(catalog::get_product))
        .route(
            "/api/shows",
            post(shows::create_show).get(shows::list_shows),
        )
        .route("/api/shows/{id}", get(shows::get_show))
        .route("/api/shows/{id}/live", post(shows::go_live))
        .route("/api/shows/{id}/close", post(shows::close))
        .route("/api/shows/{id}/transitions", get(shows::transitions))
        .route("/api/shows/{id}/report", get(reports::show_report))
        .route("/api/shows/{id}/live-stats", get(reports::live_stats))
        .route("/api/sellers/{id}/shows", get(shows::seller_shows))
        .route(
            "/api/sellers/{id}/lineup-sets",
            post(catalog::create_lineup_set).get(catalog::list_lineup_sets),
        )
        .route(
            "/api/markets",
            post(market::create_market).get(market::list_markets),
        )
        .route("/api/markets/{id}", get(market::get_market))
        .route("/api/markets/{id}/nights", get(market::list_nights))
        .route(
            "/api/markets/{id}/exceptions",
            post(market::create_exception).get(market::list_exceptions),
        )
        .route(
            "/api/markets/{id}/admissions",
            post(market::decide).get(market::list_decisions),
        )
        .route(
            "/api/markets/{id}/nights/{date}/commitments",
            post(market::commit).get(market::night_commitments),
        )
        .route(
            "/api/markets/{id}/nights/{date}/shows",
            post(market::schedule_show).get(market::night_shows),
        )
        .route(
            "/api/markets/{id}/nights/{date}/orders",
            get(orders::night_orders),
        )
        .route("/api/shows/{id}/orders", get(orders::show_orders))
        .route("/api/me/orders", get(orders::my_orders))
        .route("/api/me/checkouts", get(orders::my_checkouts))
        .route("/api/checkouts/{id}", get(orders::get_checkout))
        .route("/api/checkouts/{id}/pay", post(orders::pay_checkout))
        .route("/api/orders/{id}", get(orders::get_order))
        .route("/api/orders/{id}/status", post(orders::set_status))
        .route(
            "/api/markets/{id}/nights/{date}/report",
            get(reports::night_report),
        )
        .route("/api/schedule/warnings", get(market::warnings))
        .route(
            "/api/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route("/api/webhooks/{id}", delete(webhooks::delete_webhook))
        .route(
            "/api/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/api/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/ws/shows/{id}", get(ws::upgrade))
        .fallback(|| async { HttpError::not_found("route") });
    layers(routes, &state).with_state(state)
}

/// The middleware every request meets, in one place. axum runs the layer added last first, so
/// they are listed from the handler outwards; each runs after routing, so the route's path
/// template is known to all of them, the fallback's 404 included.
fn layers(routes: Router<Arc<AppState>>, state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let config = state.config();
    let timeout = Duration::from_millis(config.http.request_timeout_ms);
    let routes = routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sessions::layer,
        ))
        // Until the response starts: a WebSocket, once upgraded, and a streamed download's body
        // are past it. Its empty 504 becomes `timeout` in `json_errors`.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ))
        // The one body bound: refused at once when `Content-Length` is past it, else cut while
        // read (the extractors answer 413); axum's own default bound is off so as not to be a
        // second one.
        .layer(RequestBodyLimitLayer::new(config.limits.max_body_bytes))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limits,
        ))
        .layer(axum::middleware::from_fn(edge::json_errors))
        .layer(CompressionLayer::new().compress_when(middleware::compressible()));
    let routes = match middleware::cors(&config.cors_origins()) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::request_span)
                .on_request(())
                .on_response(middleware::record_response)
                // A failing request is logged once, where its error body is made.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(middleware::REQUEST_ID))
        .layer(SetRequestIdLayer::new(
            middleware::REQUEST_ID,
            middleware::NodeRequestIds::new(),
        ))
        .layer(axum::middleware::map_request(
            middleware::drop_insane_request_id,
        ))
}
