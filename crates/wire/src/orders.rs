//! HTTP bodies of orders after settlement: a buyer's orders and checkouts, a seller's orders to
//! fulfil, status moves and the payment desk's confirmation. Money is integer đồng; instants
//! are milliseconds since the epoch (UTC).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::server::ProductView;

/// One line of an order: a product at one accepted unit price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: String,
    /// The product's name as it was sold.
    pub name: String,
    pub quantity: u64,
    pub unit_price: i64,
    pub list_price: i64,
    /// `quantity × unit_price`.
    pub line_total: i64,
    /// Accepted claims behind this line.
    pub claims: u64,
    /// Bought at a flash price.
    pub flash: bool,
    /// The OCOP proof the product was admitted to the show with (order detail only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProductView>,
}

/// One status an order reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    /// 0 for the first status (settlement), then one per move: the order's version after it.
    pub seq: u64,
    /// Absent for the first status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// Who moved it: `viewer:<buyer>`, `seller:<seller>`, `operator:<subject>`, `system` (the
    /// payment deadline) or the order service that settled the show.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: i64,
}

/// One buyer's order from one show, with its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub show_id: String,
    pub buyer_id: String,
    pub seller_id: String,
    pub checkout_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night_date: Option<String>,
    /// `pending_payment`, `paid`, `shipped`, `delivered` or `cancelled`.
    pub status: String,
    pub units: u64,
    /// What the buyer pays: each unit at the price its claim was accepted at.
    pub total: i64,
    /// The same units at list price.
    pub list_total: i64,
    /// `list_total - total`.
    pub discount: i64,
    pub created_at: i64,
    /// Unpaid by then, the order is cancelled.
    pub pay_by: i64,
    pub updated_at: i64,
    /// Counts the order's moves; the latest history row has this `seq`.
    pub version: i64,
    pub lines: Vec<OrderLine>,
}

/// An order with every status it reached (`GET /api/orders/{id}`, status moves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    pub history: Vec<StatusChange>,
}

/// A buyer's orders of one market night (or one show outside a market): paid at once, shipped
/// by each seller. Sums leave cancelled orders out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checkout {
    pub id: String,
    pub buyer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night_date: Option<String>,
    /// The show of a checkout outside a market.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_id: Option<String>,
    pub created_at: i64,
    pub units: u64,
    pub total: i64,
    pub list_total: i64,
    /// Still to pay: the orders pending payment.
    pub due: i64,
    /// One per show, so one shipment per seller and show.
    pub orders: Vec<Order>,
}

/// `POST /api/orders/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetOrderStatus {
    /// `paid`, `shipped`, `delivered` or `cancelled`.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/checkouts/{id}/pay` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayCheckout {
    /// The amount received, đồng: when given, it must equal what the checkout's unpaid orders
    /// total, or nothing is paid (`amount_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
}

/// The columns of an order CSV export, one row per order line.
pub const ORDER_CSV_HEADER: [&str; 10] = [
    "order_id",
    "buyer_id",
    "status",
    "product_id",
    "product",
    "quantity",
    "unit_price",
    "list_price",
    "line_total",
    "checkout_id",
];
