//! Settlement in the store: the recorded claim log with its checkpoint, the reconciliation
//! figures, and the one transaction that turns a closed show's claims into orders.
//!
//! Orders are computed by the database from the recorded log (`INSERT .. SELECT .. GROUP BY`),
//! so a million claims never cross the wire a second time, and every id is derived from the
//! show and the buyer, so settling again inserts nothing.

use nightmarket_domain::order::{checkout_prefix, order_prefix};
use nightmarket_domain::{
    BuyerId, LogCursor, Millis, OrderStatus, ProductId, RecordedEntry, SellerId, ShowId,
};
use serde::{Deserialize, Serialize};

use crate::params;
use crate::sql::{Append, ColumnType, SqlError, Step, Value};
use crate::webhook::{WebhookEvent, enqueue_step};
use crate::{ShowRow, Store, StoreError, corrupt};

/// Most parameters one statement carries. PostgreSQL allows 65,535 and the bundled SQLite
/// 32,766; staying under both keeps one batch builder for both engines.
const MAX_PARAMS_PER_STATEMENT: usize = 30_000;
/// The columns of one recorded claim-log row, in the order `record_claim_log` fills them.
pub(crate) const LOG_COLUMNS: &[(&str, ColumnType)] = &[
    ("show_id", ColumnType::Text),
    ("pos", ColumnType::Int),
    ("kind", ColumnType::Text),
    ("claim_id", ColumnType::Text),
    ("buyer_id", ColumnType::Text),
    ("product_id", ColumnType::Text),
    ("quantity", ColumnType::Int),
    ("unit_price", ColumnType::Int),
    ("flash_id", ColumnType::Int),
    ("at", ColumnType::Int),
];

/// The close marker as recorded: the stock left at the close, and where the log ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseMarker {
    pub pos: u64,
    pub at: Millis,
    pub final_stock: Vec<(ProductId, u32)>,
}

/// How far a show's claim log is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCheckpoint {
    pub cursor: LogCursor,
    pub close: Option<CloseMarker>,
}

/// What the recorded log holds for one product (claims net of cancellations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductTally {
    pub product_id: String,
    pub claims: u64,
    pub claimed_units: u64,
    pub cancels: u64,
    pub cancelled_units: u64,
}

/// What the recorded log holds for one show, for reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTally {
    /// Rows recorded (claims and cancellations).
    pub entries: u64,
    /// Highest recorded position, if any.
    pub max_pos: Option<u64>,
    pub products: Vec<ProductTally>,
    /// Units each buyer holds per product after cancellations, only where above `limit`.
    pub over_limit: Vec<(String, String, u64)>,
    /// Cancellations that name no earlier claim of the same id, buyer, product, quantity, price
    /// and flash.
    pub unmatched_cancels: u64,
    /// Claims cancelled more than once.
    pub double_cancels: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementState {
    Settled,
    Mismatch,
}

impl SettlementState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Settled => "settled",
            Self::Mismatch => "mismatch",
        }
    }
}

/// A show's settlement (or the mismatch that stopped it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    pub show_id: ShowId,
    pub state: SettlementState,
    pub claims: u64,
    pub cancels: u64,
    pub orders: u64,
    pub units: u64,
    pub revenue: i64,
    /// The reconciliation report, JSON.
    pub report: String,
    pub decided_by: String,
    pub decided_at: Millis,
}

/// Everything one settlement transaction needs besides the recorded log.
#[derive(Debug, Clone)]
pub struct SettlePlan<'a> {
    pub show: &'a ShowRow,
    /// The recorded log must still end here (nothing recorded since reconciling).
    pub close: &'a CloseMarker,
    /// The reconciliation report, JSON, kept with the settlement.
    pub report: String,
    /// Claims and cancellations in the reconciled log, kept with the settlement.
    pub claims: u64,
    pub cancels: u64,
    /// Orders not paid by `at + payment_window` are cancelled.
    pub payment_window_ms: i64,
    pub by: &'a str,
    pub at: Millis,
    /// `show.settled`, enqueued in the same transaction.
    pub event: Option<&'a WebhookEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// This call settled the show.
    Settled(SettlementRow),
    /// It was settled before (by this or another instance); nothing changed.
    AlreadySettled(SettlementRow),
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Multi-row `INSERT`s of `rows`, each statement under [`MAX_PARAMS_PER_STATEMENT`].
fn insert_rows(head: &str, width: usize, rows: Vec<Vec<Value>>, tail: &str) -> Vec<Step> {
    let per = (MAX_PARAMS_PER_STATEMENT / width.max(1)).max(1);
    let mut steps = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per).collect();
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * width * 5);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut params = Vec::with_capacity(chunk.len() * width);
        for (i, row) in chunk.into_iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for j in 0..width {
                if j > 0 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&(params.len() + j + 1).to_string());
            }
            sql.push(')');
            params.extend(row);
        }
        sql.push(' ');
        sql.push_str(tail);
        steps.push(Step::new(sql, params));
    }
    steps
}

/// A log row's units as held: a claim adds them, a cancellation (which repeats its claim)
/// takes them back.
const SIGNED_QUANTITY: &str = "CASE WHEN kind = 'claim' THEN quantity ELSE -quantity END";

impl Store {
    /// How far the show's claim log is recorded; the start when nothing is.
    pub async fn log_checkpoint(&self, show: &ShowId) -> Result<LogCheckpoint, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT next_pos, token, closed_at, final_stock FROM claim_log_checkpoints
                 WHERE show_id = $1",
                params![show.as_str()],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(LogCheckpoint::default());
        };
        let cursor = LogCursor {
            next_pos: u(r.int(0)?),
            token: r.text(1)?,
        };
        let close = match (r.opt_int(2)?, r.opt_text(3)?) {
            (Some(at), Some(stock)) => Some(CloseMarker {
                pos: cursor.next_pos,
                at,
                final_stock: serde_json::from_str(&stock).map_err(corrupt)?,
            }),
            _ => None,
        };
        Ok(LogCheckpoint { cursor, close })
    }

    /// Records a batch of the show's claim log and moves its checkpoint from `from` to `to`, in
    /// one transaction. Returns `false`, recording nothing, when the checkpoint is no longer at
    /// `from` (another order service instance moved it first). Entries already recorded are
    /// skipped, so a batch re-read after a crash is harmless either way.
    pub async fn record_claim_log(
        &self,
        show: &ShowId,
        from: &LogCursor,
        entries: &[RecordedEntry],
        to: &LogCursor,
        close: Option<&CloseMarker>,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let final_stock = close
            .map(|c| serde_json::to_string(&c.final_stock))
            .transpose()
            .map_err(corrupt)?;
        // First, so that on PostgreSQL the checkpoint row is locked for the rest: a competing
        // recorder waits here and then finds the checkpoint moved.
        let mut steps = vec![
            Step::new(
                "INSERT INTO claim_log_checkpoints
                     (show_id, next_pos, token, closed_at, final_stock, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (show_id) DO UPDATE SET next_pos = excluded.next_pos,
                     token = excluded.token, closed_at = excluded.closed_at,
                     final_stock = excluded.final_stock, updated_at = excluded.updated_at
                 WHERE claim_log_checkpoints.next_pos = $7
                   AND claim_log_checkpoints.token = $8
                   AND claim_log_checkpoints.closed_at IS NULL",
                params![
                    show.as_str(),
                    to.next_pos as i64,
                    to.token.as_str(),
                    close.map(|c| c.at),
                    final_stock,
                    now,
                    from.next_pos as i64,
                    from.token.as_str()
                ],
            )
            .require("checkpoint_moved"),
        ];
        let rows = entries
            .iter()
            .map(|e| {
                let r = &e.record;
                params![
                    show.as_str(),
                    e.pos as i64,
                    if e.cancel { "cancel" } else { "claim" },
                    r.claim_id.as_str(),
                    r.buyer.as_str(),
                    r.product_id.as_str(),
                    r.quantity,
                    r.unit_price.get(),
                    r.flash_id.map(|f| f as i64),
                    e.at
                ]
            })
            .collect();
        // No conflict clause: the checkpoint step above admits exactly one recorder per
        // range of positions, so a row already there means the store and the checkpoint
        // disagree, which must fail loudly rather than keep whichever row came first.
        steps.push(Step::append(Append {
            table: "claim_log_entries",
            columns: LOG_COLUMNS,
            rows,
        }));
        match self.engine.transaction(steps).await {
            Ok(_) => Ok(true),
            Err(SqlError::Requirement("checkpoint_moved")) => Ok(false),
            Err(SqlError::Unique(detail)) => Err(StoreError::Corrupt(format!(
                "show {show}: claim log positions from {} are recorded already, behind the \
                 checkpoint's back ({detail})",
                from.next_pos
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Shows whose claim log the order service still follows: live or closed, neither settled
    /// nor stopped by a mismatch (which waits for an operator to rerun it by hand). Oldest
    /// first, at most `limit`.
    pub async fn shows_to_settle(&self, limit: usize) -> Result<Vec<ShowId>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT s.id FROM shows s
                 WHERE s.status IN ('live', 'closed')
                   AND NOT EXISTS (SELECT 1 FROM show_settlements t WHERE t.show_id = s.id)
                 ORDER BY s.live_at, s.id LIMIT $1",
                params![limit as i64],
            )
            .await?;
        rows.iter()
            .map(|r| ShowId::parse(r.text(0)?).map_err(corrupt))
            .collect()
    }

    /// The recorded log's figures for reconciliation. `limits` gives each product's per-buyer
    /// limit; holdings above it are reported.
    ///
    /// A cancellation row repeats the claim it cancels (buyer, product, quantity, price, flash)
    /// and claim ids are unique within a show, so what a buyer holds is a signed sum over one
    /// scan of the log: claims add, cancellations subtract. The matching checks below
    /// (`unmatched_cancels`, `double_cancels`) are what make that sum exact; settlement only
    /// proceeds when both are zero.
    pub async fn log_tally(
        &self,
        show: &ShowId,
        limits: &[(ProductId, u32)],
    ) -> Result<LogTally, StoreError> {
        let id = show.as_str();
        if self.engine.name() == "postgres" {
            // The table has just taken a night's log in bulk, faster than autovacuum looks at
            // it. Planned with statistics from before, the join below counting matched
            // cancellations runs as nested loops over a million rows (minutes instead of a
            // fraction of a second); a sampled ANALYZE costs a few hundred milliseconds.
            self.engine
                .query("ANALYZE claim_log_entries", Vec::new())
                .await?;
        }
        let per_product = self
            .engine
            .query(
                "SELECT product_id, COUNT(*), MAX(pos),
                     CAST(SUM(CASE WHEN kind = 'claim' THEN 1 ELSE 0 END) AS BIGINT),
                     CAST(SUM(CASE WHEN kind = 'claim' THEN quantity ELSE 0 END) AS BIGINT),
                     CAST(SUM(CASE WHEN kind = 'cancel' THEN 1 ELSE 0 END) AS BIGINT),
                     CAST(SUM(CASE WHEN kind = 'cancel' THEN quantity ELSE 0 END) AS BIGINT)
                 FROM claim_log_entries WHERE show_id = $1
                 GROUP BY product_id ORDER BY product_id",
                params![id],
            )
            .await?;
        let mut entries = 0;
        let mut max_pos: Option<u64> = None;
        let mut products = Vec::with_capacity(per_product.len());
        for r in &per_product {
            entries += u(r.int(1)?);
            let top = u(r.int(2)?);
            max_pos = Some(max_pos.map_or(top, |m| m.max(top)));
            products.push(ProductTally {
                product_id: r.text(0)?,
                claims: u(r.int(3)?),
                claimed_units: u(r.int(4)?),
                cancels: u(r.int(5)?),
                cancelled_units: u(r.int(6)?),
            });
        }
        // Only holdings above their product's limit come back: the limits travel as a CASE
        // (a lineup is short), not a million rows as results. A product outside `limits` has
        // a limit of 0, so any holding of it is reported.
        let mut limit_case = String::from("0");
        let mut held_params = params![id];
        if !limits.is_empty() {
            limit_case = String::from("CASE product_id");
            for (product, limit) in limits {
                let n = held_params.len();
                limit_case.push_str(&format!(" WHEN ${} THEN CAST(${} AS BIGINT)", n + 1, n + 2));
                held_params.push(Value::from(product.as_str()));
                held_params.push(Value::from(i64::from(*limit)));
            }
            limit_case.push_str(" ELSE 0 END");
        }
        let held = self
            .engine
            .query(
                &format!(
                    "SELECT buyer_id, product_id, CAST(SUM({SIGNED_QUANTITY}) AS BIGINT)
                     FROM claim_log_entries WHERE show_id = $1
                     GROUP BY buyer_id, product_id
                     HAVING SUM({SIGNED_QUANTITY}) > {limit_case}
                     ORDER BY buyer_id, product_id"
                ),
                held_params,
            )
            .await?;
        let over_limit = held
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, u(r.int(2)?))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Matched: cancellations with an earlier claim of the same id, buyer, product,
        // quantity, price and flash. Every claim is looked up among the few cancellations
        // (their partial index, by claim id); the other way round there is no index to use.
        // CROSS JOIN keeps SQLite's loops in that order (PostgreSQL reorders it freely and
        // hashes), and the unary `+` keeps SQLite from walking the primary key by position.
        let matched = self
            .engine
            .query(
                "SELECT COUNT(DISTINCT x.pos) FROM claim_log_entries e
                 CROSS JOIN claim_log_entries x
                 WHERE e.show_id = $1 AND e.kind = 'claim'
                   AND x.show_id = e.show_id AND x.claim_id = e.claim_id AND x.kind = 'cancel'
                   AND x.buyer_id = e.buyer_id AND x.product_id = e.product_id
                   AND x.quantity = e.quantity AND x.unit_price = e.unit_price
                   AND (x.flash_id = e.flash_id OR (x.flash_id IS NULL AND e.flash_id IS NULL))
                   AND +e.pos < +x.pos",
                params![id],
            )
            .await?;
        let doubles = self
            .engine
            .query(
                "SELECT COUNT(*) FROM (SELECT claim_id FROM claim_log_entries
                     WHERE show_id = $1 AND kind = 'cancel'
                     GROUP BY claim_id HAVING COUNT(*) > 1) d",
                params![id],
            )
            .await?;
        let count = |rows: &[crate::sql::Row]| -> Result<u64, StoreError> {
            Ok(rows.first().map(|r| r.int(0)).transpose()?.map_or(0, u))
        };
        let cancels: u64 = products.iter().map(|p| p.cancels).sum();
        Ok(LogTally {
            entries,
            max_pos,
            products,
            over_limit,
            unmatched_cancels: cancels.saturating_sub(count(&matched)?),
            double_cancels: count(&doubles)?,
        })
    }

    /// The show's settlement, if it was settled or stopped by a mismatch.
    pub async fn settlement(&self, show: &ShowId) -> Result<Option<SettlementRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT state, claims, cancels, orders, units, revenue, report, decided_by,
                     decided_at
                 FROM show_settlements WHERE show_id = $1",
                params![show.as_str()],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let state = match r.text(0)?.as_str() {
            "settled" => SettlementState::Settled,
            "mismatch" => SettlementState::Mismatch,
            other => return Err(corrupt(format!("settlement state {other:?}"))),
        };
        Ok(Some(SettlementRow {
            show_id: show.clone(),
            state,
            claims: u(r.int(1)?),
            cancels: u(r.int(2)?),
            orders: u(r.int(3)?),
            units: u(r.int(4)?),
            revenue: r.int(5)?,
            report: r.text(6)?,
            decided_by: r.text(7)?,
            decided_at: r.int(8)?,
        }))
    }

    /// Keeps the report of a reconciliation that failed; the show stays unsettled and is tried
    /// again (a settled show is never turned back).
    pub async fn record_mismatch(
        &self,
        show: &ShowId,
        report: &str,
        by: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO show_settlements (show_id, state, claims, cancels, orders, units,
                     revenue, report, decided_by, decided_at)
                 VALUES ($1, 'mismatch', 0, 0, 0, 0, 0, $2, $3, $4)
                 ON CONFLICT (show_id) DO UPDATE SET report = excluded.report,
                     decided_by = excluded.decided_by, decided_at = excluded.decided_at
                 WHERE show_settlements.state = 'mismatch'",
                params![show.as_str(), report, by, at],
            )
            .await?;
        Ok(())
    }

    /// Turns the recorded claim log of a closed, reconciled show into orders, lines, checkouts
    /// and their first status, and marks the show settled: one transaction, all or nothing.
    /// The caller reconciled the log ending at `plan.close`; if more was recorded since, or the
    /// show was settled meanwhile, nothing is written.
    pub async fn settle_show(&self, plan: &SettlePlan<'_>) -> Result<SettleOutcome, StoreError> {
        let show = plan.show;
        if let Some(done) = self.settled(&show.id).await? {
            return Ok(SettleOutcome::AlreadySettled(done));
        }
        let id = show.id.as_str();
        let night = show
            .schedule
            .as_ref()
            .map(|s| (s.market_id.to_string(), s.night_date.to_string()));
        let checkout = checkout_prefix(
            night.as_ref().map(|(m, d)| (m.as_str(), d.as_str())),
            &show.id,
        );
        let order = order_prefix(&show.id);
        let (market, date) = night.clone().unzip();
        let pay_by = plan.at.saturating_add(plan.payment_window_ms);
        let mut steps = vec![
            // Locks the checkpoint and proves the log is the one reconciled.
            Step::new(
                "UPDATE claim_log_checkpoints SET updated_at = $3
                 WHERE show_id = $1 AND next_pos = $2 AND closed_at IS NOT NULL",
                params![id, plan.close.pos as i64, plan.at],
            )
            .require("log_moved"),
            Step::new(
                "SELECT 1 FROM show_settlements WHERE show_id = $1 AND state = 'settled'",
                params![id],
            )
            .forbid("already_settled"),
        ];
        let products = show
            .lineup
            .iter()
            .enumerate()
            .map(|(i, l)| {
                params![
                    id,
                    l.product.id.as_str(),
                    i as i64,
                    l.product.name.as_str(),
                    l.product.list_price.get(),
                    l.product.group.as_str(),
                    l.product.district.as_str(),
                    i64::from(l.product.stars.get()),
                    l.stock,
                    l.buyer_limit
                ]
            })
            .collect();
        steps.extend(insert_rows(
            "INSERT INTO settlement_products (show_id, product_id, position, name, list_price,
                 product_group, district, stars, allotted, buyer_limit)",
            10,
            products,
            "ON CONFLICT (show_id, product_id) DO NOTHING",
        ));
        // Lines first, in one scan of the log: per buyer, product and accepted price, the
        // units held after cancellations (see [`Store::log_tally`] for why a signed sum is
        // exact once reconciled). A line is at the flash price when any claim still held on
        // it was taken during a flash sale.
        steps.push(Step::new(
            format!(
                "INSERT INTO order_lines (order_id, show_id, product_id, unit_price, list_price,
                     quantity, claims, flash)
                 SELECT CAST($2 AS TEXT) || e.buyer_id, e.show_id, e.product_id, e.unit_price,
                     p.list_price, SUM({SIGNED_QUANTITY}),
                     SUM(CASE WHEN e.kind = 'claim' THEN 1 ELSE -1 END),
                     CASE WHEN SUM(CASE WHEN e.flash_id IS NULL THEN 0
                                        WHEN e.kind = 'claim' THEN 1 ELSE -1 END) > 0
                          THEN 1 ELSE 0 END
                 FROM claim_log_entries e
                 JOIN settlement_products p
                     ON p.show_id = e.show_id AND p.product_id = e.product_id
                 WHERE e.show_id = $1
                 GROUP BY e.buyer_id, e.show_id, e.product_id, e.unit_price, p.list_price
                 HAVING SUM({SIGNED_QUANTITY}) > 0
                 ON CONFLICT (order_id, product_id, unit_price) DO NOTHING"
            ),
            params![id, order.as_str()],
        ));
        // Orders from their lines (thousands of rows, not the million of the log). The buyer
        // is the order id after the show's prefix.
        let buyer_from = order.chars().count() as i64 + 1;
        steps.push(Step::new(
            "INSERT INTO orders (id, show_id, buyer_id, seller_id, checkout_id, market_id,
                 night_date, status, units, total, list_total, claims, created_at, pay_by,
                 updated_at, version)
             SELECT l.order_id, l.show_id, SUBSTR(l.order_id, $2), CAST($3 AS TEXT),
                 CAST($4 AS TEXT) || SUBSTR(l.order_id, $2), CAST($5 AS TEXT), CAST($6 AS TEXT),
                 'pending_payment', SUM(l.quantity), SUM(l.quantity * l.unit_price),
                 SUM(l.quantity * l.list_price), SUM(l.claims), CAST($7 AS BIGINT),
                 CAST($8 AS BIGINT), CAST($7 AS BIGINT), 0
             FROM order_lines l
             WHERE l.show_id = $1
             GROUP BY l.order_id, l.show_id
             ON CONFLICT (id) DO NOTHING",
            params![
                id,
                buyer_from,
                show.seller_id.as_str(),
                checkout.as_str(),
                market.clone(),
                date.clone(),
                plan.at,
                pay_by
            ],
        ));
        // A buyer's checkout of the night may exist already, from another show of it.
        steps.push(Step::new(
            "INSERT INTO checkouts (id, buyer_id, market_id, night_date, show_id, created_at)
             SELECT checkout_id, buyer_id, CAST($2 AS TEXT), CAST($3 AS TEXT),
                 CAST($4 AS TEXT), CAST($5 AS BIGINT)
             FROM orders WHERE show_id = $1
             ON CONFLICT (id) DO NOTHING",
            params![id, market, date, night.is_none().then_some(id), plan.at],
        ));
        steps.push(Step::new(
            "INSERT INTO order_status_history (order_id, seq, from_status, to_status, actor,
                 reason, at)
             SELECT id, 0, NULL, $2, CAST($3 AS TEXT), 'settled', CAST($4 AS BIGINT)
             FROM orders WHERE show_id = $1
             ON CONFLICT (order_id, seq) DO NOTHING",
            params![id, OrderStatus::PendingPayment.as_str(), plan.by, plan.at],
        ));
        steps.push(Step::new(
            "INSERT INTO show_settlements (show_id, state, claims, cancels, orders, units,
                 revenue, report, decided_by, decided_at)
             SELECT $1, 'settled', CAST($5 AS BIGINT), CAST($6 AS BIGINT),
                 COUNT(*), COALESCE(SUM(units), 0), COALESCE(SUM(total), 0),
                 CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS BIGINT)
             FROM orders WHERE show_id = $1
             ON CONFLICT (show_id) DO UPDATE SET state = 'settled', claims = excluded.claims,
                 cancels = excluded.cancels, orders = excluded.orders, units = excluded.units,
                 revenue = excluded.revenue, report = excluded.report,
                 decided_by = excluded.decided_by, decided_at = excluded.decided_at",
            params![
                id,
                plan.report.as_str(),
                plan.by,
                plan.at,
                plan.claims as i64,
                plan.cancels as i64
            ],
        ));
        if let Some(ev) = plan.event {
            steps.push(enqueue_step(ev));
        }
        match self.engine.transaction(steps).await {
            Ok(_) => {}
            Err(SqlError::Requirement("already_settled")) => {
                if let Some(done) = self.settled(&show.id).await? {
                    return Ok(SettleOutcome::AlreadySettled(done));
                }
                return Err(StoreError::Backend(format!(
                    "show {id}: settled by another instance, then not found"
                )));
            }
            Err(SqlError::Requirement("log_moved")) => {
                return Err(StoreError::Refused {
                    code: "log_moved",
                    message: format!(
                        "show {id}: the recorded claim log no longer ends at position {}",
                        plan.close.pos
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
        match self.settlement(&show.id).await? {
            Some(row) => Ok(SettleOutcome::Settled(row)),
            None => Err(StoreError::Backend(format!(
                "show {id}: settlement written but not found"
            ))),
        }
    }

    async fn settled(&self, show: &ShowId) -> Result<Option<SettlementRow>, StoreError> {
        Ok(self
            .settlement(show)
            .await?
            .filter(|s| s.state == SettlementState::Settled))
    }

    /// The buyers with an order in the show and the seller, for tests and tools.
    pub async fn show_buyers(&self, show: &ShowId) -> Result<Vec<BuyerId>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT buyer_id FROM orders WHERE show_id = $1 ORDER BY buyer_id",
                params![show.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| BuyerId::parse(r.text(0)?).map_err(corrupt))
            .collect()
    }

    /// Units a settled show's orders hold per product, for reconciliation checks.
    pub async fn ordered_units(
        &self,
        show: &ShowId,
    ) -> Result<Vec<(ProductId, SellerId, u64)>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT l.product_id, o.seller_id, CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l
                 JOIN orders o ON o.id = l.order_id
                 WHERE l.show_id = $1 GROUP BY l.product_id, o.seller_id ORDER BY l.product_id",
                params![show.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    ProductId::parse(r.text(0)?).map_err(corrupt)?,
                    SellerId::parse(r.text(1)?).map_err(corrupt)?,
                    u(r.int(2)?),
                ))
            })
            .collect()
    }
}
