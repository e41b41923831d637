//! Orders after settlement: who may see an order or a checkout, and who may move an order along
//! its status path.
//!
//! Orders are private: a buyer sees only their own, a seller only those of their shows, an
//! operator all. An order or checkout that is not the caller's is "not found", exactly like one
//! that does not exist, so ids cannot be probed.

use std::collections::HashMap;

use nightmarket_auth::{Claims, Role};
use nightmarket_domain::order::OrderTransitionError;
use nightmarket_domain::{BuyerId, Millis, OrderActor, OrderStatus, SellerId, check_transition};
use nightmarket_store::{
    CheckoutRow, OrderDetail, OrderLineDetail, OrderRow, OrderScope, Page, Store,
};
use nightmarket_wire::ErrorCode;

use crate::services::{ServiceError, ServiceResult};

/// Who moves an order, as the store records it: `<role>:<subject>`.
pub fn actor(claims: &Claims) -> String {
    format!("{}:{}", claims.role.as_str(), claims.sub)
}

fn order_actor(role: Role) -> OrderActor {
    match role {
        Role::Operator => OrderActor::Operator,
        Role::Seller => OrderActor::Seller,
        Role::Viewer => OrderActor::Buyer,
    }
}

/// Whether the caller may see (and try to move) `order`.
fn owns(claims: &Claims, order: &OrderRow) -> bool {
    match claims.role {
        Role::Operator => true,
        Role::Seller => claims.sub == order.seller_id.as_str(),
        Role::Viewer => claims.sub == order.buyer_id.as_str(),
    }
}

/// The lines of `orders`, grouped by order id.
pub async fn lines_of(
    store: &Store,
    orders: &[OrderRow],
) -> ServiceResult<HashMap<String, Vec<OrderLineDetail>>> {
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
    let mut by_order: HashMap<String, Vec<OrderLineDetail>> = HashMap::new();
    for l in store.order_lines(&ids).await? {
        by_order.entry(l.line.order_id.clone()).or_default().push(l);
    }
    Ok(by_order)
}

/// A checkout the caller may see: its buyer's, or any for an operator.
pub async fn visible_checkout(
    store: &Store,
    claims: &Claims,
    id: &str,
) -> ServiceResult<CheckoutRow> {
    if claims.role == Role::Seller {
        return Err(ServiceError::forbidden(
            "a checkout is its buyer's and the operators'",
        ));
    }
    store
        .checkout(id)
        .await?
        .filter(|c| claims.role == Role::Operator || c.buyer_id.as_str() == claims.sub)
        .ok_or_else(|| ServiceError::not_found(format!("checkout {id}")))
}

/// An order the caller may see.
pub async fn visible_order(store: &Store, claims: &Claims, id: &str) -> ServiceResult<OrderRow> {
    store
        .order_row(id)
        .await?
        .filter(|o| owns(claims, o))
        .ok_or_else(|| ServiceError::not_found(format!("order {id}")))
}

/// Moves an order one step along the path, if the caller's role may make that move.
pub async fn move_order(
    store: &Store,
    claims: &Claims,
    id: &str,
    to: OrderStatus,
    reason: Option<&str>,
    now: Millis,
) -> ServiceResult<()> {
    let order = visible_order(store, claims, id).await?;
    let role = order_actor(claims.role);
    check_transition(order.status, to, role).map_err(|e| match e {
        OrderTransitionError::NotAllowed { .. } => {
            ServiceError::new(ErrorCode::BadOrderTransition, e.to_string())
        }
        OrderTransitionError::Forbidden { .. } => ServiceError::forbidden(e.to_string()),
    })?;
    store
        .set_order_status(id, order.status, to, &actor(claims), role, reason, now)
        .await?;
    Ok(())
}

/// A page of a buyer's orders, by id.
pub async fn buyer_orders(
    store: &Store,
    buyer: &BuyerId,
    page: &Page<'_>,
) -> ServiceResult<Vec<OrderRow>> {
    Ok(store.buyer_orders(buyer, page).await?)
}

/// A page of a buyer's checkouts with their orders, by id.
pub async fn buyer_checkouts(
    store: &Store,
    buyer: &BuyerId,
    page: &Page<'_>,
) -> ServiceResult<Vec<CheckoutRow>> {
    Ok(store.buyer_checkouts(buyer, page).await?)
}

/// A page of the orders of a show or a market night (of one seller, when `seller` is given),
/// by id.
pub async fn scoped_orders(
    store: &Store,
    seller: Option<&SellerId>,
    scope: OrderScope<'_>,
    page: &Page<'_>,
) -> ServiceResult<Vec<OrderRow>> {
    Ok(store.scoped_orders(seller, scope, page).await?)
}

/// An order with its lines and status history; not found when there is none.
pub async fn detail(store: &Store, id: &str) -> ServiceResult<OrderDetail> {
    store
        .order(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("order {id}")))
}

/// The payment desk confirms a buyer paid the night (`amount` đồng, when given, must be what
/// is due): every order of the checkout pending payment becomes paid at once.
pub async fn pay_checkout(
    store: &Store,
    claims: &Claims,
    id: &str,
    amount: Option<i64>,
    now: Millis,
) -> ServiceResult<()> {
    store.pay_checkout(id, amount, &actor(claims), now).await?;
    Ok(())
}
