//! Orders as settlement wrote them: reading them back.

use nightmarket_domain::{BuyerId, Millis, OrderStatus, ProductId, SellerId, ShowId};

use crate::params;
use crate::sql::Row;
use crate::{Store, StoreError, corrupt};

/// One buyer's order from one show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub show_id: ShowId,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub checkout_id: String,
    pub market_id: Option<String>,
    pub night_date: Option<String>,
    pub status: OrderStatus,
    pub units: u64,
    /// What the buyer pays, đồng: each unit at the price its claim was accepted at.
    pub total: i64,
    /// The same units at list price; `list_total - total` is the discount given.
    pub list_total: i64,
    pub claims: u64,
    pub created_at: Millis,
    /// Unpaid by then, the order is cancelled.
    pub pay_by: Millis,
    pub updated_at: Millis,
    pub version: i64,
}

/// One line of an order: a product at one accepted unit price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineRow {
    pub order_id: String,
    pub product_id: ProductId,
    pub unit_price: i64,
    pub list_price: i64,
    pub quantity: u64,
    pub claims: u64,
    /// Bought at a flash price.
    pub flash: bool,
}

pub(crate) const ORDER_COLUMNS: &str = "id, show_id, buyer_id, seller_id, checkout_id, \
     market_id, night_date, status, units, total, list_total, claims, created_at, pay_by, \
     updated_at, version";

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn order_from(r: &Row) -> Result<OrderRow, StoreError> {
    let status = r.text(7)?;
    Ok(OrderRow {
        id: r.text(0)?,
        show_id: ShowId::parse(r.text(1)?).map_err(corrupt)?,
        buyer_id: BuyerId::parse(r.text(2)?).map_err(corrupt)?,
        seller_id: SellerId::parse(r.text(3)?).map_err(corrupt)?,
        checkout_id: r.text(4)?,
        market_id: r.opt_text(5)?,
        night_date: r.opt_text(6)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("order status {status:?}")))?,
        units: count(r.int(8)?),
        total: r.int(9)?,
        list_total: r.int(10)?,
        claims: count(r.int(11)?),
        created_at: r.int(12)?,
        pay_by: r.int(13)?,
        updated_at: r.int(14)?,
        version: r.int(15)?,
    })
}

pub(crate) const LINE_COLUMNS: &str =
    "order_id, product_id, unit_price, list_price, quantity, claims, flash";

pub(crate) fn line_from(r: &Row) -> Result<OrderLineRow, StoreError> {
    Ok(OrderLineRow {
        order_id: r.text(0)?,
        product_id: ProductId::parse(r.text(1)?).map_err(corrupt)?,
        unit_price: r.int(2)?,
        list_price: r.int(3)?,
        quantity: count(r.int(4)?),
        claims: count(r.int(5)?),
        flash: r.bool(6)?,
    })
}

impl Store {
    /// Every order of a show, by buyer.
    pub async fn show_orders(&self, show: &ShowId) -> Result<Vec<OrderRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE show_id = $1 ORDER BY buyer_id"),
                params![show.as_str()],
            )
            .await?;
        rows.iter().map(order_from).collect()
    }

    /// Every order line of a show, by order, product and price.
    pub async fn show_order_lines(&self, show: &ShowId) -> Result<Vec<OrderLineRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!(
                    "SELECT {LINE_COLUMNS} FROM order_lines WHERE show_id = $1
                     ORDER BY order_id, product_id, unit_price"
                ),
                params![show.as_str()],
            )
            .await?;
        rows.iter().map(line_from).collect()
    }
}
