//! Orders after settlement: reading them back for buyers, sellers and operators, and moving
//! their status along the path the domain allows, each move recorded with who, why and when.
//!
//! An order's `version` counts its moves, and its history holds one row per version (`seq`),
//! the first written by settlement. Every move is a compare-and-set on the status that bumps
//! the version and writes that version's history row in the same transaction.

use nightmarket_domain::order::OrderTransitionError;
use nightmarket_domain::{
    BuyerId, Millis, OrderActor, OrderStatus, Product, ProductId, SellerId, ShowId,
    check_transition,
};

use crate::params;
use crate::sql::{Row, SqlError, Step, Value};
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

/// Most rows one listing query returns, and most ids one `IN (..)` list carries: keeps every
/// statement far below both engines' parameter limits and every page's memory small.
pub const MAX_ORDERS_PER_QUERY: usize = 1_000;

/// The actor the payment deadline is recorded under.
pub const DEADLINE_ACTOR: &str = "system";
/// The reason recorded when the payment deadline cancels an order.
pub const DEADLINE_REASON: &str = "payment_deadline";

/// Refusal codes of the status path, as carried by [`StoreError::Refused`].
pub mod refusal {
    /// The path does not lead from the order's status to the one asked for.
    pub const BAD_TRANSITION: &str = "bad_order_transition";
    /// The path leads there, but not for this actor.
    pub const FORBIDDEN: &str = "order_transition_forbidden";
    /// The order's status changed since the caller read it.
    pub const MOVED: &str = "order_moved";
    /// A checkout payment confirmed for a different amount than its unpaid orders total.
    pub const AMOUNT_MISMATCH: &str = "amount_mismatch";
}

/// One status an order reached: who moved it, when and why. `seq` equals the order's version
/// right after the move (0 is the first status, written at settlement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub seq: u64,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub actor: String,
    pub reason: Option<String>,
    pub at: Millis,
}

/// An order line with what the buyer saw: the product's name as settled and, when asked for,
/// the OCOP proof snapshot the show admitted it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineDetail {
    pub line: OrderLineRow,
    pub name: String,
    pub proof: Option<Product>,
}

/// One order with its lines (proof included) and every status it reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetail {
    pub order: OrderRow,
    pub lines: Vec<OrderLineDetail>,
    pub history: Vec<StatusChange>,
}

/// A buyer's checkout: the orders of one market night (or one ad-hoc show), paid at once and
/// shipped by each seller. Sums leave cancelled orders out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRow {
    pub id: String,
    pub buyer_id: BuyerId,
    pub market_id: Option<String>,
    pub night_date: Option<String>,
    /// The show of an ad-hoc checkout; none for a market night's.
    pub show_id: Option<String>,
    pub created_at: Millis,
    pub units: u64,
    pub total: i64,
    pub list_total: i64,
    /// What is still to be paid: the orders pending payment.
    pub due: i64,
    /// Its orders, one per show (so one shipment per seller and show), by id.
    pub orders: Vec<OrderRow>,
}

/// Which orders a seller listing covers.
#[derive(Debug, Clone, Copy)]
pub enum OrderScope<'a> {
    Show(&'a ShowId),
    Night { market: &'a str, date: &'a str },
}

/// A page of a listing ordered by id: the ids after `after`, at most `limit` (itself at most
/// [`MAX_ORDERS_PER_QUERY`]).
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub after: Option<&'a str>,
    pub limit: usize,
}

impl Page<'_> {
    /// A listing may ask for one row past its largest page, to learn whether another follows.
    fn limit(&self) -> i64 {
        self.limit.clamp(1, MAX_ORDERS_PER_QUERY + 1) as i64
    }
}

/// A `WHERE` clause under construction, numbering its parameters.
#[derive(Default)]
struct Filter {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Filter {
    /// Adds `column <op> $n`.
    fn add(&mut self, column: &str, op: &str, v: impl Into<Value>) {
        self.params.push(v.into());
        self.sql
            .push(format!("{column} {op} ${}", self.params.len()));
    }

    fn page(&mut self, column: &str, page: &Page<'_>) -> String {
        if let Some(after) = page.after {
            self.add(column, ">", after);
        }
        self.params.push(Value::Int(page.limit()));
        format!("ORDER BY {column} LIMIT ${}", self.params.len())
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// `$from, .., $to` placeholders for an `IN (..)` list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt_status(v: Option<String>) -> Result<Option<OrderStatus>, StoreError> {
    v.map(|s| OrderStatus::parse(&s).ok_or_else(|| corrupt(format!("order status {s:?}"))))
        .transpose()
}

/// Rows of `o` (orders) that moved in this transaction and have no history row yet: every
/// status change writes the row for the version it produced, so only this transaction's own
/// updates lack one.
const UNRECORDED: &str = "NOT EXISTS (SELECT 1 FROM order_status_history h
     WHERE h.order_id = o.id AND h.seq = o.version)";

const CHECKOUT_SUMS: &str = "SELECT c.id, c.buyer_id, c.market_id, c.night_date, c.show_id,
         c.created_at,
         CAST(COALESCE(SUM(CASE WHEN o.status <> 'cancelled' THEN o.units ELSE 0 END), 0) AS BIGINT),
         CAST(COALESCE(SUM(CASE WHEN o.status <> 'cancelled' THEN o.total ELSE 0 END), 0) AS BIGINT),
         CAST(COALESCE(SUM(CASE WHEN o.status <> 'cancelled' THEN o.list_total ELSE 0 END), 0)
             AS BIGINT),
         CAST(COALESCE(SUM(CASE WHEN o.status = 'pending_payment' THEN o.total ELSE 0 END), 0)
             AS BIGINT)
     FROM checkouts c LEFT JOIN orders o ON o.checkout_id = c.id";

const CHECKOUT_GROUP: &str =
    "GROUP BY c.id, c.buyer_id, c.market_id, c.night_date, c.show_id, c.created_at";

fn transition_refused(e: OrderTransitionError) -> StoreError {
    let code = match e {
        OrderTransitionError::NotAllowed { .. } => refusal::BAD_TRANSITION,
        OrderTransitionError::Forbidden { .. } => refusal::FORBIDDEN,
    };
    StoreError::Refused {
        code,
        message: e.to_string(),
    }
}

/// The refusal of a move that lost to another: the order is no longer where the caller saw it.
fn moved(message: String) -> StoreError {
    StoreError::Refused {
        code: refusal::MOVED,
        message,
    }
}

/// A status move: from where to where, by whom, why and when.
struct Move<'a> {
    from: &'a str,
    to: &'a str,
    actor: &'a str,
    reason: Option<&'a str>,
    at: Millis,
}

/// Moves the orders `o` that `filter` selects (its parameters in `params`) to `move_.to`,
/// bumping their version and returning them. `filter` names its own status condition, so the
/// move is a compare-and-set on it.
fn move_orders(filter: &str, mut params: Vec<Value>, move_: &Move<'_>) -> Step {
    let n = params.len();
    params.extend(crate::params![move_.to, move_.at]);
    Step::new(
        format!(
            "UPDATE orders AS o SET status = ${}, version = version + 1, updated_at = ${}
             WHERE {filter}
             RETURNING {ORDER_COLUMNS}",
            n + 1,
            n + 2
        ),
        params,
    )
}

/// Writes the history row of every order `filter` selects that moved in this transaction:
/// the row of the version [`move_orders`] produced.
fn record_moves(filter: &str, mut params: Vec<Value>, move_: &Move<'_>) -> Step {
    let n = params.len();
    params.extend(crate::params![
        move_.from,
        move_.to,
        move_.actor,
        move_.reason,
        move_.at
    ]);
    Step::new(
        format!(
            "INSERT INTO order_status_history (order_id, seq, from_status, to_status, actor,
                 reason, at)
             SELECT o.id, o.version, CAST(${} AS TEXT), CAST(${} AS TEXT), CAST(${} AS TEXT),
                 CAST(${} AS TEXT), CAST(${} AS BIGINT)
             FROM orders o WHERE {filter} AND {UNRECORDED}",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        ),
        params,
    )
}

impl Store {
    /// Rows of `select` (a query over an `IN` list of `ids`, given the list's placeholders),
    /// asked in chunks of [`MAX_ORDERS_PER_QUERY`] ids, in chunk order.
    async fn query_ids(
        &self,
        ids: &[String],
        select: impl Fn(&str) -> String,
    ) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_ORDERS_PER_QUERY) {
            let sql = select(&placeholders(1, chunk.len()));
            let params = chunk.iter().map(Value::from).collect();
            out.extend(self.engine.query(&sql, params).await?);
        }
        Ok(out)
    }

    /// One order without its lines, or none.
    pub async fn order_row(&self, id: &str) -> Result<Option<OrderRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
                params![id],
            )
            .await?;
        rows.first().map(order_from).transpose()
    }

    /// One order with its lines, each with its product's name and admitted proof, and its
    /// status history; none when no such order exists.
    pub async fn order(&self, id: &str) -> Result<Option<OrderDetail>, StoreError> {
        let Some(order) = self.order_row(id).await? else {
            return Ok(None);
        };
        let lines = self
            .engine
            .query(
                "SELECT l.order_id, l.product_id, l.unit_price, l.list_price, l.quantity,
                     l.claims, l.flash, p.name, u.proof
                 FROM order_lines l
                 JOIN settlement_products p
                     ON p.show_id = l.show_id AND p.product_id = l.product_id
                 LEFT JOIN show_lineup u
                     ON u.show_id = l.show_id AND u.product_id = l.product_id
                 WHERE l.order_id = $1
                 ORDER BY p.position, l.unit_price",
                params![id],
            )
            .await?;
        let lines = lines
            .iter()
            .map(|r| {
                let proof = r
                    .opt_text(8)?
                    .map(|p| serde_json::from_str::<Product>(&p).map_err(corrupt))
                    .transpose()?;
                Ok(OrderLineDetail {
                    line: line_from(r)?,
                    name: r.text(7)?,
                    proof,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let history = self
            .engine
            .query(
                "SELECT seq, from_status, to_status, actor, reason, at
                 FROM order_status_history WHERE order_id = $1 ORDER BY seq",
                params![id],
            )
            .await?;
        let history = history
            .iter()
            .map(|r| {
                let to = r.text(2)?;
                Ok(StatusChange {
                    seq: count(r.int(0)?),
                    from: opt_status(r.opt_text(1)?)?,
                    to: OrderStatus::parse(&to)
                        .ok_or_else(|| corrupt(format!("order status {to:?}")))?,
                    actor: r.text(3)?,
                    reason: r.opt_text(4)?,
                    at: r.int(5)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(OrderDetail {
            order,
            lines,
            history,
        }))
    }

    /// The lines of the given orders with their products' names (no proof), by order, then
    /// lineup position and price.
    pub async fn order_lines(&self, ids: &[String]) -> Result<Vec<OrderLineDetail>, StoreError> {
        let rows = self
            .query_ids(ids, |list| {
                format!(
                    "SELECT l.order_id, l.product_id, l.unit_price, l.list_price, l.quantity,
                         l.claims, l.flash, p.name
                     FROM order_lines l
                     JOIN settlement_products p
                         ON p.show_id = l.show_id AND p.product_id = l.product_id
                     WHERE l.order_id IN ({list})
                     ORDER BY l.order_id, p.position, l.unit_price"
                )
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderLineDetail {
                    line: line_from(r)?,
                    name: r.text(7)?,
                    proof: None,
                })
            })
            .collect()
    }

    async fn orders_where(
        &self,
        mut f: Filter,
        page: &Page<'_>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let order = f.page("id", page);
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders {} {order}", f.clause());
        let rows = self.engine.query(&sql, f.params).await?;
        rows.iter().map(order_from).collect()
    }

    /// A buyer's orders, by id.
    pub async fn buyer_orders(
        &self,
        buyer: &BuyerId,
        page: &Page<'_>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let mut f = Filter::default();
        f.add("buyer_id", "=", buyer.as_str());
        self.orders_where(f, page).await
    }

    /// The orders of one show; of one seller's, when `seller` is given.
    pub async fn seller_orders_for_show(
        &self,
        seller: Option<&SellerId>,
        show: &ShowId,
        page: &Page<'_>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        self.scoped_orders(seller, OrderScope::Show(show), page)
            .await
    }

    /// The orders of every show of one market night; of one seller's, when `seller` is given.
    pub async fn seller_orders_for_night(
        &self,
        seller: Option<&SellerId>,
        market: &str,
        date: &str,
        page: &Page<'_>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        self.scoped_orders(seller, OrderScope::Night { market, date }, page)
            .await
    }

    /// The orders of a show or a night, optionally of one seller, by id.
    pub async fn scoped_orders(
        &self,
        seller: Option<&SellerId>,
        scope: OrderScope<'_>,
        page: &Page<'_>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let mut f = Filter::default();
        match scope {
            OrderScope::Show(show) => f.add("show_id", "=", show.as_str()),
            OrderScope::Night { market, date } => {
                f.add("market_id", "=", market);
                f.add("night_date", "=", date);
            }
        }
        if let Some(s) = seller {
            f.add("seller_id", "=", s.as_str());
        }
        self.orders_where(f, page).await
    }

    async fn checkouts_where(
        &self,
        mut f: Filter,
        page: &Page<'_>,
    ) -> Result<Vec<CheckoutRow>, StoreError> {
        let order = f.page("c.id", page);
        let sql = format!("{CHECKOUT_SUMS} {} {CHECKOUT_GROUP} {order}", f.clause());
        let rows = self.engine.query(&sql, f.params).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(CheckoutRow {
                id: r.text(0)?,
                buyer_id: BuyerId::parse(r.text(1)?).map_err(corrupt)?,
                market_id: r.opt_text(2)?,
                night_date: r.opt_text(3)?,
                show_id: r.opt_text(4)?,
                created_at: r.int(5)?,
                units: count(r.int(6)?),
                total: r.int(7)?,
                list_total: r.int(8)?,
                due: r.int(9)?,
                orders: Vec::new(),
            });
        }
        let ids: Vec<String> = out.iter().map(|c| c.id.clone()).collect();
        let rows = self
            .query_ids(&ids, |list| {
                format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE checkout_id IN ({list})
                     ORDER BY checkout_id, id"
                )
            })
            .await?;
        for r in &rows {
            let o = order_from(r)?;
            if let Some(c) = out.iter_mut().find(|c| c.id == o.checkout_id) {
                c.orders.push(o);
            }
        }
        Ok(out)
    }

    /// A buyer's checkouts with their orders, by id.
    pub async fn buyer_checkouts(
        &self,
        buyer: &BuyerId,
        page: &Page<'_>,
    ) -> Result<Vec<CheckoutRow>, StoreError> {
        let mut f = Filter::default();
        f.add("c.buyer_id", "=", buyer.as_str());
        self.checkouts_where(f, page).await
    }

    /// One checkout with its orders, or none.
    pub async fn checkout(&self, id: &str) -> Result<Option<CheckoutRow>, StoreError> {
        let mut f = Filter::default();
        f.add("c.id", "=", id);
        let page = Page {
            after: None,
            limit: 1,
        };
        Ok(self.checkouts_where(f, &page).await?.pop())
    }

    /// Moves one order from `from` to `to` if `role` may, recording who (`actor`), why and
    /// when. A compare-and-set: when the order is no longer at `from` nothing changes and the
    /// refusal is [`refusal::MOVED`]; the history row is written in the same transaction,
    /// keyed by the new version, so two writers of one move cannot both succeed.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_order_status(
        &self,
        id: &str,
        from: OrderStatus,
        to: OrderStatus,
        actor: &str,
        role: OrderActor,
        reason: Option<&str>,
        at: Millis,
    ) -> Result<OrderRow, StoreError> {
        check_transition(from, to, role).map_err(transition_refused)?;
        let move_ = Move {
            from: from.as_str(),
            to: to.as_str(),
            actor,
            reason,
            at,
        };
        let filter = "o.id = $1";
        let steps = vec![
            move_orders(
                &format!("{filter} AND o.status = $2"),
                params![id, from.as_str()],
                &move_,
            )
            .require(refusal::MOVED),
            record_moves(filter, params![id], &move_).require(refusal::MOVED),
        ];
        match self.engine.transaction(steps).await {
            Ok(out) => match out.first().and_then(|o| o.rows.first()) {
                Some(r) => order_from(r),
                None => Err(StoreError::Backend(format!(
                    "order {id}: moved but not returned"
                ))),
            },
            Err(SqlError::Requirement(refusal::MOVED)) => match self.order_row(id).await? {
                None => Err(StoreError::NotFound(format!("order {id}"))),
                Some(now) => Err(moved(format!(
                    "order {id} is {} now, not {from}; read it again",
                    now.status
                ))),
            },
            // Two writers of the same move: the history key refused the second.
            Err(SqlError::Unique(_)) => {
                Err(moved(format!("order {id} moved meanwhile; read it again")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The payment desk confirms a checkout's payment: every order of it still pending payment
    /// becomes paid, each move recorded, in one transaction. With `amount`, it must equal what
    /// those orders total, or nothing changes ([`refusal::AMOUNT_MISMATCH`]). Returns the
    /// orders paid; a checkout with nothing pending is refused ([`refusal::BAD_TRANSITION`]).
    pub async fn pay_checkout(
        &self,
        checkout: &str,
        amount: Option<i64>,
        actor: &str,
        at: Millis,
    ) -> Result<Vec<OrderRow>, StoreError> {
        const NOTHING_DUE: &str = "nothing_due";
        let move_ = Move {
            from: OrderStatus::PendingPayment.as_str(),
            to: OrderStatus::Paid.as_str(),
            actor,
            reason: None,
            at,
        };
        // The update comes first: on PostgreSQL it locks the orders it moves until commit, so
        // the sum and the history below see exactly them.
        let of_checkout = "o.checkout_id = $1 AND o.status = $2";
        let mut steps = vec![
            move_orders(of_checkout, params![checkout, move_.from], &move_).require(NOTHING_DUE),
        ];
        if let Some(amount) = amount {
            steps.push(
                Step::new(
                    format!(
                        "SELECT 1 WHERE (SELECT CAST(COALESCE(SUM(o.total), 0) AS BIGINT)
                             FROM orders o WHERE {of_checkout} AND {UNRECORDED}) = $3"
                    ),
                    params![checkout, move_.to, amount],
                )
                .require(refusal::AMOUNT_MISMATCH),
            );
        }
        steps.push(record_moves(
            of_checkout,
            params![checkout, move_.to],
            &move_,
        ));
        match self.engine.transaction(steps).await {
            Ok(out) => out
                .first()
                .map(|o| o.rows.iter().map(order_from).collect())
                .unwrap_or_else(|| Ok(Vec::new())),
            Err(SqlError::Requirement(tag)) => {
                let Some(c) = self.checkout(checkout).await? else {
                    return Err(StoreError::NotFound(format!("checkout {checkout}")));
                };
                Err(if tag == refusal::AMOUNT_MISMATCH {
                    StoreError::Refused {
                        code: refusal::AMOUNT_MISMATCH,
                        message: format!(
                            "checkout {checkout}: {} đồng is due, not {}",
                            c.due,
                            amount.unwrap_or_default()
                        ),
                    }
                } else {
                    StoreError::Refused {
                        code: refusal::BAD_TRANSITION,
                        message: format!("checkout {checkout} has no order pending payment"),
                    }
                })
            }
            Err(SqlError::Unique(_)) => Err(moved(format!(
                "an order of checkout {checkout} moved meanwhile; try again"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels up to `limit` orders still pending payment whose deadline is at or before
    /// `now`, oldest deadline first, each recorded as moved by [`DEADLINE_ACTOR`] for
    /// [`DEADLINE_REASON`]. Returns the orders it cancelled. Any number of nodes may call this
    /// at once: each order moves by compare-and-set, so it is cancelled (and recorded) once,
    /// and an order paid or cancelled meanwhile is left alone.
    pub async fn cancel_unpaid(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let limit = limit.clamp(1, MAX_ORDERS_PER_QUERY);
        let pending = OrderStatus::PendingPayment.as_str();
        let cancelled = OrderStatus::Cancelled.as_str();
        // Candidates first, outside the transaction, so the transaction touches these rows by
        // key only; the update re-checks each.
        let ids: Vec<String> = self
            .engine
            .query(
                "SELECT id FROM orders WHERE status = $1 AND pay_by <= $2
                 ORDER BY pay_by, id LIMIT $3",
                params![pending, now, limit as i64],
            )
            .await?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let move_ = Move {
            from: pending,
            to: cancelled,
            actor: DEADLINE_ACTOR,
            reason: Some(DEADLINE_REASON),
            at: now,
        };
        let listed = |status: &str| {
            let mut params = params![status];
            params.extend(ids.iter().map(Value::from));
            let filter = format!("o.status = $1 AND o.id IN ({})", placeholders(2, ids.len()));
            (filter, params)
        };
        // The update checks status and deadline again: an order paid meanwhile is left alone.
        let (filter, mut update) = listed(pending);
        update.push(Value::Int(now));
        let update_filter = format!("{filter} AND o.pay_by <= ${}", update.len());
        let (cancelled_here, record) = listed(cancelled);
        let steps = vec![
            move_orders(&update_filter, update, &move_),
            record_moves(&cancelled_here, record, &move_),
        ];
        let out = self.engine.transaction(steps).await?;
        out.first()
            .map(|o| o.rows.iter().map(order_from).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }
}
