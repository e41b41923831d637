//! The HTTP side of the server: [`router`] lists every route in one place; each resource has its
//! module, whose handlers parse the request, call a service and format the answer.
//!
//! - [`edge`]: the accept loop, the bounds every request meets, JSON for every error response.
//! - [`extract`]: the caller (bearer token or session cookie), roles, JSON bodies.
//! - [`page`]: the paging contract of every list endpoint (`limit`, `cursor`, `Next-Cursor`).
//! - [`error`]: a service's error answered with the status its code stands for.
//! - [`sessions`]: sign-in (invites, guests, sign-out) and the session-cookie layer.
//! - [`catalog`]: sellers, products, lineup sets. [`shows`]: shows, going live, closing.
//! - [`market`]: markets, nights, exceptions, admissions, commitments, scheduling.
//! - [`orders`]: orders and checkouts. [`reports`]: show and night reports, live figures.
//! - [`webhooks`]: webhook registrations and their deliveries.
//! - [`ws`]: the WebSocket upgrade. [`web`]: the consoles' pages and assets.
//! - [`health`], [`metrics`], [`openapi`]: probes, Prometheus, the API description.
//! - [`csv`]: the one CSV writer of every export, formula-guarded.

pub mod catalog;
pub mod csv;
pub mod edge;
pub mod error;
pub mod extract;
pub mod health;
pub mod market;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod page;
pub mod reports;
pub mod sessions;
pub mod shows;
pub mod web;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::http::error::HttpError;
use crate::state::AppState;

/// Every route of the server, with the layers every request passes through.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
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
        .fallback(|| async { HttpError::not_found("route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sessions::layer,
        ))
        // The JSON extractor's own bound, equal to the one `edge::limits` puts on every body.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config().limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limits,
        ))
        .layer(axum::middleware::from_fn(edge::json_errors))
        .with_state(state)
}
