//! Orders over HTTP, after the order service settled a show: buyers read their orders and
//! checkouts, sellers the orders they fulfil (per show or per market night, as JSON or CSV),
//! and everyone moves an order along the status path as far as their role allows. Operators
//! confirm a night's payment for a whole checkout at once.
//!
//! Orders are private: a buyer sees only their own, a seller only those of their shows, an
//! operator all. An order or checkout that is not the caller's answers 404, exactly like one
//! that does not exist, so ids cannot be probed.

use nightmarket_wire::http::ApiError;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nightmarket_domain::market::parse_date;
use nightmarket_domain::ocop::text;
use nightmarket_domain::{BuyerId, OrderStatus, SellerId, ShowId};
use nightmarket_store::{
    CheckoutRow, Key, KeyPart, OrderLineDetail, OrderRow, OrderScope, Page,
    StatusChange as StoreChange,
};
use nightmarket_wire::orders::{
    Checkout, ORDER_CSV_HEADER, Order, OrderDetail, OrderLine, PayCheckout, SetOrderStatus,
    StatusChange,
};
use serde::Deserialize;

use crate::auth::{Claims, Role};
use crate::convert::product_view;
use crate::http::csv::{Cell, CsvError, CsvTable};
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, authenticate, body, require, unauthorized};
use crate::http::page::{Listed, PageQuery, Pager, bad_cursor};
use crate::http::refusal;
use crate::http::shows::show_row;
use crate::services::market::calendar;
use crate::services::orders as rules;
use crate::state::AppState;

/// Orders read from the store per page of a CSV export, which streams page after page.
const EXPORT_PAGE: usize = 500;
/// Longest request body of `POST /api/checkouts/{id}/pay`, in bytes.
const MAX_PAY_BODY_BYTES: usize = 1024;

/// The caller as a buyer: a viewer token's subject.
fn buyer(claims: &Claims) -> ApiResult<BuyerId> {
    require(claims, Role::Viewer)?;
    claims
        .buyer()
        .ok_or_else(|| unauthorized("bad_subject", "the token's subject is not a valid buyer id"))
}

/// The store's page of an id-ordered listing (orders, checkouts) that `pager` asks for: one
/// row more than it holds, so [`Pager::cut`] learns whether another follows.
fn id_page(pager: &Pager) -> ApiResult<Page<'_>> {
    let after = match pager.after_one()? {
        None => None,
        Some(KeyPart::Text(id)) => Some(id.as_str()),
        Some(KeyPart::Int(_)) => return Err(bad_cursor()),
    };
    Ok(Page {
        after,
        limit: pager.read_limit(),
    })
}

/// The position of an order or checkout in an id-ordered listing.
fn id_key(id: &str) -> Key {
    vec![KeyPart::Text(id.to_owned())]
}

// --- views --------------------------------------------------------------------------------

fn line_view(l: &OrderLineDetail) -> OrderLine {
    let quantity = i64::try_from(l.line.quantity).unwrap_or(i64::MAX);
    OrderLine {
        product_id: l.line.product_id.to_string(),
        name: l.name.clone(),
        quantity: l.line.quantity,
        unit_price: l.line.unit_price,
        list_price: l.line.list_price,
        line_total: quantity.saturating_mul(l.line.unit_price),
        claims: l.line.claims,
        flash: l.line.flash,
        proof: l.proof.as_ref().map(product_view),
    }
}

fn order_view(o: &OrderRow, lines: Vec<OrderLine>) -> Order {
    Order {
        id: o.id.clone(),
        show_id: o.show_id.to_string(),
        buyer_id: o.buyer_id.to_string(),
        seller_id: o.seller_id.to_string(),
        checkout_id: o.checkout_id.clone(),
        market_id: o.market_id.clone(),
        night_date: o.night_date.clone(),
        status: o.status.as_str().to_owned(),
        units: o.units,
        total: o.total,
        list_total: o.list_total,
        discount: o.list_total.saturating_sub(o.total),
        created_at: o.created_at,
        pay_by: o.pay_by,
        updated_at: o.updated_at,
        version: o.version,
        lines,
    }
}

fn change_view(s: &StoreChange) -> StatusChange {
    StatusChange {
        seq: s.seq,
        from: s.from.map(|f| f.as_str().to_owned()),
        to: s.to.as_str().to_owned(),
        actor: s.actor.clone(),
        reason: s.reason.clone(),
        at: s.at,
    }
}

async fn orders_view(state: &AppState, orders: &[OrderRow]) -> ApiResult<Vec<Order>> {
    let lines = rules::lines_of(state.store(), orders).await?;
    Ok(orders
        .iter()
        .map(|o| {
            let l = lines.get(&o.id).map_or(&[][..], Vec::as_slice);
            order_view(o, l.iter().map(line_view).collect())
        })
        .collect())
}

/// A page of orders read with [`id_page`], with their lines, as the answer.
async fn orders_page(
    state: &AppState,
    pager: &Pager,
    rows: Vec<OrderRow>,
) -> ApiResult<Listed<Order>> {
    let page = nightmarket_store::page::paged(rows, &pager.keyset, |o| id_key(&o.id));
    let items = orders_view(state, &page.items).await?;
    Ok(pager.respond(items, page.next))
}

async fn checkouts_view(state: &AppState, rows: &[CheckoutRow]) -> ApiResult<Vec<Checkout>> {
    let all: Vec<OrderRow> = rows.iter().flat_map(|c| c.orders.iter().cloned()).collect();
    let lines = rules::lines_of(state.store(), &all).await?;
    Ok(rows
        .iter()
        .map(|c| Checkout {
            id: c.id.clone(),
            buyer_id: c.buyer_id.to_string(),
            market_id: c.market_id.clone(),
            night_date: c.night_date.clone(),
            show_id: c.show_id.clone(),
            created_at: c.created_at,
            units: c.units,
            total: c.total,
            list_total: c.list_total,
            due: c.due,
            orders: c
                .orders
                .iter()
                .map(|o| {
                    let l = lines.get(&o.id).map_or(&[][..], Vec::as_slice);
                    order_view(o, l.iter().map(line_view).collect())
                })
                .collect(),
        })
        .collect())
}

async fn detail(state: &AppState, id: &str) -> ApiResult<OrderDetail> {
    let d = rules::detail(state.store(), id).await?;
    Ok(OrderDetail {
        order: order_view(&d.order, d.lines.iter().map(line_view).collect()),
        history: d.history.iter().map(change_view).collect(),
    })
}

// --- buyers -------------------------------------------------------------------------------

/// `GET /api/me/orders`: the caller's orders, by id.
#[utoipa::path(
    get,
    path = "/api/me/orders",
    tag = "Orders",
    summary = "The caller's orders with their lines",
    description = "Who: a buyer (viewer token; the buyer is the token's subject). See docs/orders.md.",
    responses(
        (status = 200, description = "Success", body = Vec<Order>, example = json!([{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "pending_payment", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795795200000_i64, "version": 0, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn my_orders(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Order>> {
    let pager = page.open("my_orders")?;
    let claims = authenticate(&state, &headers, None)?;
    let me = buyer(&claims)?;
    let rows = rules::buyer_orders(state.store(), &me, &id_page(&pager)?).await?;
    orders_page(&state, &pager, rows).await
}

/// `GET /api/me/checkouts`: the caller's checkouts with their orders, by id.
#[utoipa::path(
    get,
    path = "/api/me/checkouts",
    tag = "Orders",
    summary = "The caller's checkouts: each market night's orders, paid at once",
    description = "Who: a buyer. Sums leave cancelled orders out; due is what is pending payment.",
    responses(
        (status = 200, description = "Success", body = Vec<Checkout>, example = json!([{"id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "buyer_id": "b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "created_at": 1795795200000_i64, "units": 3, "total": 640000, "list_total": 750000, "due": 640000, "orders": [{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "pending_payment", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795795200000_i64, "version": 0, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}]}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn my_checkouts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Checkout>> {
    let pager = page.open("my_checkouts")?;
    let claims = authenticate(&state, &headers, None)?;
    let me = buyer(&claims)?;
    let rows = rules::buyer_checkouts(state.store(), &me, &id_page(&pager)?).await?;
    let page = nightmarket_store::page::paged(rows, &pager.keyset, |c| id_key(&c.id));
    let items = checkouts_view(&state, &page.items).await?;
    Ok(pager.respond(items, page.next))
}

/// `GET /api/checkouts/{id}`: the buyer's or, for an operator, anyone's.
#[utoipa::path(
    get,
    path = "/api/checkouts/{id}",
    tag = "Orders",
    summary = "One checkout with its orders",
    description = "Who: the checkout's buyer, or an operator; anyone else's answers 404.",
    params(("id" = String, Path, description = "Checkout id, c~<market>~<date>~<buyer> or c~<show>~<buyer>")),
    responses(
        (status = 200, description = "Success", body = Checkout, example = json!({"id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "buyer_id": "b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "created_at": 1795795200000_i64, "units": 3, "total": 640000, "list_total": 750000, "due": 640000, "orders": [{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "pending_payment", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795795200000_i64, "version": 0, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}]})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn get_checkout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Checkout>> {
    let claims = authenticate(&state, &headers, None)?;
    checkout(&state, &claims, &id).await
}

/// The checkout `id` with its orders, as `claims` may see it (404 when it may not).
async fn checkout(state: &AppState, claims: &Claims, id: &str) -> ApiResult<Json<Checkout>> {
    let row = rules::visible_checkout(state.store(), claims, id).await?;
    let mut view = checkouts_view(state, std::slice::from_ref(&row)).await?;
    view.pop()
        .map(Json)
        .ok_or_else(|| HttpError::not_found(format!("checkout {id}")))
}

/// `POST /api/checkouts/{id}/pay`: the payment desk (an operator) confirms the buyer paid the
/// night; every order of the checkout pending payment becomes paid at once.
#[utoipa::path(
    post,
    path = "/api/checkouts/{id}/pay",
    tag = "Orders",
    summary = "Confirm payment of a checkout: every order pending payment becomes paid at once",
    description = "Who: operator (the payment desk). With amount, it must equal what is due.",
    params(("id" = String, Path, description = "Checkout id")),
    request_body(content = Option<PayCheckout>, example = json!({"amount": 640000})),
    responses(
        (status = 200, description = "Success", body = Checkout, example = json!({"id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "buyer_id": "b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "created_at": 1795795200000_i64, "units": 3, "total": 640000, "list_total": 750000, "due": 0, "orders": [{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "paid", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795802400000_i64, "version": 1, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}]})),
        (status = 409, description = "bad_order_transition or amount_mismatch or order_moved", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn pay_checkout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Checkout>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    if body.len() > MAX_PAY_BODY_BYTES {
        return Err(HttpError::bad_request(format!(
            "body: at most {MAX_PAY_BODY_BYTES} bytes"
        )));
    }
    let req: PayCheckout = if body.iter().all(u8::is_ascii_whitespace) {
        PayCheckout::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| HttpError::bad_request(format!("body: {e}")))?
    };
    if req.amount.is_some_and(|a| a <= 0) {
        return Err(HttpError::bad_request("amount: a positive number of đồng"));
    }
    rules::pay_checkout(state.store(), &claims, &id, req.amount, state.now()).await?;
    checkout(&state, &claims, &id).await
}

// --- one order ----------------------------------------------------------------------------

/// `GET /api/orders/{id}`: lines with the admitted proof, and the status history.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "Orders",
    summary = "One order: lines with the admitted OCOP proof, and its status history",
    description = "Who: the order's buyer or seller, or an operator; anyone else's answers 404.",
    params(("id" = String, Path, description = "Order id, o~<show>~<buyer>")),
    responses(
        (status = 200, description = "Success", body = OrderDetail, example = json!({"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "paid", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795802400000_i64, "version": 1, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true, "proof": {"id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}]}}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false, "proof": {"id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}]}}], "history": [{"seq": 0, "to": "pending_payment", "actor": "order-service", "reason": "settled", "at": 1795795200000_i64}, {"seq": 1, "from": "pending_payment", "to": "paid", "actor": "operator:ops-hanoi", "at": 1795802400000_i64}]})),
        refusal::BadRequest, refusal::Unauthorized, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn get_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderDetail>> {
    let claims = authenticate(&state, &headers, None)?;
    rules::visible_order(state.store(), &claims, &id).await?;
    Ok(Json(detail(&state, &id).await?))
}

/// `POST /api/orders/{id}/status`: one move along the path, if the caller's role may make it.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/status",
    tag = "Orders",
    summary = "Move an order: paid, shipped, delivered or cancelled, as the caller's role allows",
    description = "Who: the order's buyer (cancel while unpaid), its seller (ship, deliver, cancel while unpaid), an operator (any move on the path). Each move is recorded in the history.",
    params(("id" = String, Path, description = "Order id")),
    request_body(content = SetOrderStatus, example = json!({"to": "cancelled", "reason": "Đặt nhầm"})),
    responses(
        (status = 200, description = "Success", body = OrderDetail, example = json!({"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "paid", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795802400000_i64, "version": 1, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}], "history": [{"seq": 0, "to": "pending_payment", "actor": "order-service", "reason": "settled", "at": 1795795200000_i64}, {"seq": 1, "from": "pending_payment", "to": "paid", "actor": "operator:ops-hanoi", "at": 1795802400000_i64}]})),
        (status = 409, description = "bad_order_transition or order_moved", body = ApiError),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn set_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    payload: Result<Json<SetOrderStatus>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<OrderDetail>> {
    let claims = authenticate(&state, &headers, None)?;
    let req = body(payload)?;
    let to = OrderStatus::parse(&req.to).ok_or_else(|| {
        HttpError::bad_request(format!(
            "to: expected paid, shipped, delivered or cancelled, got {:?}",
            req.to
        ))
    })?;
    let reason = req
        .reason
        .as_deref()
        .map(|r| text("reason", r))
        .transpose()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    rules::move_order(
        state.store(),
        &claims,
        &id,
        to,
        reason.as_deref(),
        state.now(),
    )
    .await?;
    Ok(Json(detail(&state, &id).await?))
}

// --- sellers and operators ----------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FulfilQuery {
    /// Operators: only this seller's orders.
    seller: Option<String>,
    /// `json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// Whose orders a fulfilment listing covers: a seller's own, or for an operator everyone's
/// (or the one named by `?seller=`).
fn fulfilment_seller(claims: &Claims, asked: Option<&str>) -> ApiResult<Option<SellerId>> {
    let parse =
        |s: &str| SellerId::parse(s).map_err(|e| HttpError::bad_request(format!("seller: {e}")));
    match claims.role {
        Role::Operator => asked.map(parse).transpose(),
        Role::Seller => {
            if asked.is_some_and(|s| s != claims.sub) {
                return Err(HttpError::forbidden("a seller lists only its own orders"));
            }
            parse(&claims.sub).map(Some)
        }
        Role::Viewer => Err(HttpError::forbidden(
            "orders to fulfil are for sellers and operators; buyers: GET /api/me/orders",
        )),
    }
}

fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> ApiResult<bool> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(HttpError::bad_request(format!(
            "format: expected json or csv, got {other:?}"
        ))),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))),
    }
}

/// What a fulfilment listing covers, owned so a streamed export can page on its own.
#[derive(Debug, Clone)]
enum Scope {
    Show(ShowId),
    Night { market: String, date: String },
}

impl Scope {
    fn borrow(&self) -> OrderScope<'_> {
        match self {
            Self::Show(id) => OrderScope::Show(id),
            Self::Night { market, date } => OrderScope::Night { market, date },
        }
    }

    fn file_name(&self) -> String {
        match self {
            Self::Show(id) => format!("orders-{id}.csv"),
            Self::Night { market, date } => format!("orders-{market}-{date}.csv"),
        }
    }
}

async fn fulfilment(
    state: Arc<AppState>,
    headers: &HeaderMap,
    q: FulfilQuery,
    page: PageQuery,
    seller: Option<SellerId>,
    scope: Scope,
) -> ApiResult<Response> {
    if wants_csv(q.format.as_deref(), headers)? {
        return Ok(csv_export(state, seller, scope));
    }
    let pager = page.open(match scope {
        Scope::Show(_) => "show_orders",
        Scope::Night { .. } => "night_orders",
    })?;
    let rows = rules::scoped_orders(
        state.store(),
        seller.as_ref(),
        scope.borrow(),
        &id_page(&pager)?,
    )
    .await?;
    Ok(orders_page(&state, &pager, rows).await?.into_response())
}

/// `GET /api/shows/{id}/orders`: the show's seller, or an operator.
#[utoipa::path(
    get,
    path = "/api/shows/{id}/orders",
    tag = "Orders",
    summary = "The show's orders to fulfil, as JSON or CSV",
    description = "Who: the show's seller, or an operator.",
    params(("id" = String, Path, description = "Id"), FulfilQuery),
    responses(
        (status = 200, description = "Success: JSON, or CSV with ?format=csv or Accept: text/csv (one row per order line)", content((Vec<Order> = "application/json", example = json!([{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "pending_payment", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795795200000_i64, "version": 0, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}])), (String = "text/csv", example = json!("order_id,buyer_id,status,product_id,product,quantity,unit_price,list_price,line_total,checkout_id\r\no~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1,b1,pending_payment,0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b,Mật ong hoa nhãn Ba Vì,2,195000,250000,390000,c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1\r\n")))),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn show_orders(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<FulfilQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Response> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = fulfilment_seller(&claims, q.seller.as_deref())?;
    let show = show_row(&state, id).await?;
    if claims.role == Role::Seller && show.seller_id.as_str() != claims.sub {
        return Err(HttpError::forbidden(
            "only this show's seller or an operator",
        ));
    }
    fulfilment(state, &headers, q, page, seller, Scope::Show(show.id)).await
}

/// `GET /api/markets/{id}/nights/{date}/orders`: a seller's orders of the night, or for an
/// operator every seller's.
#[utoipa::path(
    get,
    path = "/api/markets/{id}/nights/{date}/orders",
    tag = "Orders",
    summary = "A night's orders to fulfil (a seller's own; for operators every seller's), as JSON or CSV",
    description = "Who: a seller (its own orders), or an operator.",
    params(("id" = String, Path, description = "Id"), ("date" = String, Path, description = "The night's date, YYYY-MM-DD"), FulfilQuery),
    responses(
        (status = 200, description = "Success: JSON, or CSV with ?format=csv or Accept: text/csv (one row per order line)", content((Vec<Order> = "application/json", example = json!([{"id": "o~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1", "show_id": "0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b", "buyer_id": "b1", "seller_id": "0193a1b2-2222-7e5f-8a9b-0c1d2e3f4a5b", "checkout_id": "c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1", "market_id": "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b", "night_date": "2026-11-27", "status": "pending_payment", "units": 3, "total": 640000, "list_total": 750000, "discount": 110000, "created_at": 1795795200000_i64, "pay_by": 1795881600000_i64, "updated_at": 1795795200000_i64, "version": 0, "lines": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 2, "unit_price": 195000, "list_price": 250000, "line_total": 390000, "claims": 1, "flash": true}, {"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn Ba Vì", "quantity": 1, "unit_price": 250000, "list_price": 250000, "line_total": 250000, "claims": 1, "flash": false}]}])), (String = "text/csv", example = json!("order_id,buyer_id,status,product_id,product,quantity,unit_price,list_price,line_total,checkout_id\r\no~0193a1b2-5555-7e5f-8a9b-0c1d2e3f4a5b~b1,b1,pending_payment,0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b,Mật ong hoa nhãn Ba Vì,2,195000,250000,390000,c~0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b~2026-11-27~b1\r\n")))),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn night_orders(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
    Query(q): Query<FulfilQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Response> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = fulfilment_seller(&claims, q.seller.as_deref())?;
    let cal = calendar(state.store(), &id).await?;
    let date = parse_date("date", &date).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let scope = Scope::Night {
        market: cal.row.id.to_string(),
        date: date.to_string(),
    };
    fulfilment(state, &headers, q, page, seller, scope).await
}

// --- CSV ----------------------------------------------------------------------------------

/// The CSV rows of `orders`: one per line, through the one CSV writer
/// ([`crate::http::csv`]), which guards text cells against formula injection.
fn csv_rows(
    table: &mut CsvTable,
    orders: &[OrderRow],
    lines: &HashMap<String, Vec<OrderLineDetail>>,
) -> Result<(), CsvError> {
    for o in orders {
        for l in lines.get(&o.id).map_or(&[][..], Vec::as_slice) {
            let v = line_view(l);
            table.row([
                Cell::Text(&o.id),
                Cell::Text(o.buyer_id.as_str()),
                Cell::Text(o.status.as_str()),
                Cell::Text(&v.product_id),
                Cell::Text(&v.name),
                Cell::Int(i128::from(v.quantity)),
                Cell::Int(i128::from(v.unit_price)),
                Cell::Int(i128::from(v.list_price)),
                Cell::Int(i128::from(v.line_total)),
                Cell::Text(&o.checkout_id),
            ])?;
        }
    }
    Ok(())
}

/// Where a streamed export stands: the last order id written, or done.
enum Cursor {
    Start,
    After(String),
    Done,
}

/// The export as a stream of pages of [`EXPORT_PAGE`] orders, so a night of any size is sent
/// without holding it in memory. Each page is read when it is sent: an order that moves during
/// the export shows the status it had then, and every order appears once (pages go by id). A
/// storage failure mid-way ends the response early, which the client sees as a truncated
/// chunked body, never as a complete file. The stream is fused: a body wrapper (gzip) may poll
/// it once more after its end, which a bare `unfold` does not allow.
fn csv_export(state: Arc<AppState>, seller: Option<SellerId>, scope: Scope) -> Response {
    let file = scope.file_name();
    let stream = futures_util::stream::unfold(Cursor::Start, move |cursor| {
        let (state, seller, scope) = (state.clone(), seller.clone(), scope.clone());
        async move {
            let (header, after) = match cursor {
                Cursor::Done => return None,
                Cursor::Start => (CsvTable::with_header(&ORDER_CSV_HEADER), None),
                Cursor::After(id) => (Ok(CsvTable::new()), Some(id)),
            };
            let page = Page {
                after: after.as_deref(),
                limit: EXPORT_PAGE,
            };
            let read = async {
                let orders =
                    rules::scoped_orders(state.store(), seller.as_ref(), scope.borrow(), &page)
                        .await?;
                let lines = rules::lines_of(state.store(), &orders).await?;
                let mut table = header?;
                csv_rows(&mut table, &orders, &lines)?;
                Ok::<_, HttpError>((orders, table.finish()?))
            };
            match read.await {
                Ok((orders, out)) => {
                    let next = match orders.last() {
                        Some(last) if orders.len() == EXPORT_PAGE => Cursor::After(last.id.clone()),
                        _ => Cursor::Done,
                    };
                    Some((Ok(Bytes::from(out)), next))
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "order export failed mid-way");
                    Some((Err(std::io::Error::other(e.message)), Cursor::Done))
                }
            }
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(futures_util::StreamExt::fuse(stream)),
    )
        .into_response()
}
