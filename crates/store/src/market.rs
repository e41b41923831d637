//! The store's market calendar: recurring markets and their exceptions, admission decisions,
//! seller commitments, reusable lineups, scheduled shows and their lifecycle transitions.

use std::collections::HashMap;

use jiff::civil::{Date, DateTime, Time};
use nightmarket_domain::market::{parse_weekday, weekday_name};
use nightmarket_domain::{
    MarketId, MarketSpec, Millis, ProductId, SellerId, ShowId, ShowStatus, Stars,
};
use serde::{Deserialize, Serialize};

use crate::catalog::{
    CREATED_ORDER, NEWEST_ORDER, ShowRow, conflict, created_key, parse_date, show_insert_steps,
};
use crate::orders::{MAX_ORDERS_PER_QUERY, placeholders};
use crate::page::{KeyPart, Keyset, Kind, Order, Paged};
use crate::params;
use crate::sql::{Row, SqlError, Step, Value};
use crate::webhook::{WebhookEvent, enqueue_step};
use crate::{Store, StoreError, corrupt};

/// A stored market: the operator's definition as given, and who defined it when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketRow {
    pub id: MarketId,
    /// The definition as the operator gave it; `MarketSpec::validate` computes the nights.
    pub spec: MarketSpec,
    pub created_by: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionKind {
    Cancelled,
    /// The night starts at this local date and time instead; it keeps its duration.
    Moved {
        to: DateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRow {
    pub market_id: MarketId,
    /// The night's identity: its originally scheduled local date.
    pub night_date: Date,
    pub kind: ExceptionKind,
    pub reason: String,
    pub created_by: String,
    pub created_at: Millis,
}

/// One admission decision; every decision is kept, the latest per product is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub id: String,
    pub market_id: MarketId,
    pub product_id: ProductId,
    pub approved: bool,
    pub reason: Option<String>,
    pub decided_by: String,
    pub decided_at: Millis,
}

/// A seller's signed commitment on the quality of what they sell on one night.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentRow {
    pub market_id: MarketId,
    pub night_date: Date,
    pub seller_id: SellerId,
    pub statement: String,
    pub signed_by: String,
    pub signed_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineupSetItem {
    pub product_id: ProductId,
    pub stock: u32,
    pub buyer_limit: u32,
}

/// A reusable product set ("my usual Friday lineup").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineupSetRow {
    pub id: String,
    pub seller_id: SellerId,
    pub name: String,
    pub items: Vec<LineupSetItem>,
    pub created_at: Millis,
}

/// One status a show reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    pub show_id: ShowId,
    pub from: ShowStatus,
    pub to: ShowStatus,
    pub actor: String,
    pub at: Millis,
    /// Why, when the actor alone does not say (a stable code such as `seller_absent`).
    pub reason: Option<String>,
}

const MARKET_COLUMNS: &str = "id, name, weekdays, start_time, duration_minutes, time_zone, \
     first_date, last_date, min_stars, created_by, created_at";

fn market_from(r: &Row) -> Result<MarketRow, StoreError> {
    let weekdays = r
        .text(2)?
        .split(',')
        .map(|w| parse_weekday("weekdays", w).map_err(corrupt))
        .collect::<Result<Vec<_>, _>>()?;
    let start = r.text(3)?;
    Ok(MarketRow {
        id: MarketId::parse(r.text(0)?).map_err(corrupt)?,
        spec: MarketSpec {
            name: r.text(1)?,
            weekdays,
            start: start
                .parse::<Time>()
                .map_err(|e| corrupt(format!("time {start:?}: {e}")))?,
            duration_minutes: r.u32(4)?,
            time_zone: r.text(5)?,
            first_date: parse_date(&r.text(6)?)?,
            last_date: r.opt_text(7)?.as_deref().map(parse_date).transpose()?,
            min_stars: Stars::parse(r.int(8)?).map_err(corrupt)?,
        },
        created_by: r.text(9)?,
        created_at: r.int(10)?,
    })
}

fn exception_from(r: &Row) -> Result<ExceptionRow, StoreError> {
    let kind = match r.text(2)?.as_str() {
        "cancelled" => ExceptionKind::Cancelled,
        "moved" => {
            let to = r.text(3)?;
            ExceptionKind::Moved {
                to: to
                    .parse::<DateTime>()
                    .map_err(|e| corrupt(format!("datetime {to:?}: {e}")))?,
            }
        }
        other => return Err(corrupt(format!("exception kind {other:?}"))),
    };
    Ok(ExceptionRow {
        market_id: MarketId::parse(r.text(0)?).map_err(corrupt)?,
        night_date: parse_date(&r.text(1)?)?,
        kind,
        reason: r.text(4)?,
        created_by: r.text(5)?,
        created_at: r.int(6)?,
    })
}

const DECISION_SELECT: &str = "SELECT id, market_id, product_id, approved, reason, decided_by, \
     decided_at FROM admission_decisions";

fn decision_from(r: &Row) -> Result<DecisionRow, StoreError> {
    Ok(DecisionRow {
        id: r.text(0)?,
        market_id: MarketId::parse(r.text(1)?).map_err(corrupt)?,
        product_id: ProductId::parse(r.text(2)?).map_err(corrupt)?,
        approved: r.bool(3)?,
        reason: r.opt_text(4)?,
        decided_by: r.text(5)?,
        decided_at: r.int(6)?,
    })
}

fn lineup_set_from(r: &Row) -> Result<LineupSetRow, StoreError> {
    Ok(LineupSetRow {
        id: r.text(0)?,
        seller_id: SellerId::parse(r.text(1)?).map_err(corrupt)?,
        name: r.text(2)?,
        items: serde_json::from_str(&r.text(3)?).map_err(corrupt)?,
        created_at: r.int(4)?,
    })
}

/// Shows of one seller whose slot overlaps `[$2, $3)`; touching slots do not overlap.
const SELLER_OVERLAP: &str = "SELECT id FROM shows WHERE seller_id = $1 AND slot_start IS NOT NULL
     AND slot_start < $3 AND slot_end > $2 ORDER BY slot_start";

impl Store {
    pub async fn create_market(&self, row: &MarketRow) -> Result<(), StoreError> {
        let m = &row.spec;
        let weekdays: Vec<&str> = m.weekdays.iter().map(|w| weekday_name(*w)).collect();
        self.engine
            .execute(
                &format!(
                    "INSERT INTO markets ({MARKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ),
                params![
                    row.id.as_str(),
                    &m.name,
                    weekdays.join(","),
                    m.start.strftime("%H:%M").to_string(),
                    m.duration_minutes,
                    &m.time_zone,
                    m.first_date.to_string(),
                    m.last_date.map(|d| d.to_string()),
                    i64::from(m.min_stars.get()),
                    &row.created_by,
                    row.created_at,
                ],
            )
            .await
            .map_err(|e| conflict(e, format!("market {}", row.id)))?;
        Ok(())
    }

    pub async fn market(&self, id: &MarketId) -> Result<Option<MarketRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {MARKET_COLUMNS} FROM markets WHERE id = $1"),
                params![id.as_str()],
            )
            .await?;
        rows.first().map(market_from).transpose()
    }

    /// A page of the markets, oldest first.
    pub async fn markets(&self, page: &Keyset) -> Result<Paged<MarketRow>, StoreError> {
        self.query_page(
            &format!("SELECT {MARKET_COLUMNS} FROM markets"),
            None,
            params![],
            CREATED_ORDER,
            page,
            market_from,
            |m| created_key(m.created_at, m.id.as_str()),
        )
        .await
    }

    /// Records a cancelled or moved night; one exception per night.
    pub async fn add_exception(&self, e: &ExceptionRow) -> Result<(), StoreError> {
        let (kind, moved_to) = match &e.kind {
            ExceptionKind::Cancelled => ("cancelled", None),
            ExceptionKind::Moved { to } => {
                ("moved", Some(to.strftime("%Y-%m-%dT%H:%M").to_string()))
            }
        };
        self.engine
            .execute(
                "INSERT INTO night_exceptions (market_id, night_date, kind, moved_to, reason, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![
                    e.market_id.as_str(),
                    e.night_date.to_string(),
                    kind,
                    moved_to,
                    &e.reason,
                    &e.created_by,
                    e.created_at,
                ],
            )
            .await
            .map_err(|err| conflict(err, format!("an exception for the night of {}", e.night_date)))?;
        Ok(())
    }

    /// Every exception of a market, by night.
    pub async fn exceptions(&self, market: &MarketId) -> Result<Vec<ExceptionRow>, StoreError> {
        crate::page::every(|page| async move { self.exceptions_page(market, &page).await }).await
    }

    /// A page of a market's exceptions, by night.
    pub async fn exceptions_page(
        &self,
        market: &MarketId,
        page: &Keyset,
    ) -> Result<Paged<ExceptionRow>, StoreError> {
        self.query_page(
            "SELECT market_id, night_date, kind, moved_to, reason, created_by, created_at
             FROM night_exceptions",
            Some("market_id = $1"),
            params![market.as_str()],
            Order::asc(&[("night_date", Kind::Text)]),
            page,
            exception_from,
            |e| vec![KeyPart::Text(e.night_date.to_string())],
        )
        .await
    }

    pub async fn record_decision(&self, d: &DecisionRow) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO admission_decisions (id, market_id, product_id, approved, reason, decided_by, decided_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![
                    &d.id,
                    d.market_id.as_str(),
                    d.product_id.as_str(),
                    d.approved,
                    d.reason.as_deref(),
                    &d.decided_by,
                    d.decided_at,
                ],
            )
            .await
            .map_err(|e| conflict(e, format!("decision {}", d.id)))?;
        Ok(())
    }

    /// Every decision on `product` in `market`, oldest first; the last one is in force.
    pub async fn decisions(
        &self,
        market: &MarketId,
        product: &ProductId,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!(
                    "{DECISION_SELECT} WHERE market_id = $1 AND product_id = $2
                     ORDER BY decided_at, id"
                ),
                params![market.as_str(), product.as_str()],
            )
            .await?;
        rows.iter().map(decision_from).collect()
    }

    /// The decision in force (the last one) on each of `products` in `market` that has one, in
    /// one query per [`crate::orders::MAX_ORDERS_PER_QUERY`] products.
    pub async fn latest_decisions(
        &self,
        market: &MarketId,
        products: &[ProductId],
    ) -> Result<HashMap<ProductId, DecisionRow>, StoreError> {
        let mut out = HashMap::new();
        for chunk in products.chunks(crate::orders::MAX_ORDERS_PER_QUERY) {
            let mut params = params![market.as_str()];
            params.extend(chunk.iter().map(|p| Value::from(p.as_str())));
            let sql = format!(
                "{DECISION_SELECT} WHERE market_id = $1 AND product_id IN ({})
                 ORDER BY decided_at, id",
                crate::orders::placeholders(2, chunk.len())
            );
            for r in &self.engine.query(&sql, params).await? {
                let d = decision_from(r)?;
                // In time order: a later decision replaces the earlier one.
                out.insert(d.product_id.clone(), d);
            }
        }
        Ok(out)
    }

    /// A page of the decisions of a market (on one product, when `product` is given), oldest
    /// first.
    pub async fn market_decisions(
        &self,
        market: &MarketId,
        product: Option<&ProductId>,
        page: &Keyset,
    ) -> Result<Paged<DecisionRow>, StoreError> {
        let (filter, params) = match product {
            Some(p) => (
                "market_id = $1 AND product_id = $2",
                params![market.as_str(), p.as_str()],
            ),
            None => ("market_id = $1", params![market.as_str()]),
        };
        self.query_page(
            DECISION_SELECT,
            Some(filter),
            params,
            Order::asc(&[("decided_at", Kind::Int), ("id", Kind::Text)]),
            page,
            decision_from,
            |d| vec![KeyPart::Int(d.decided_at), KeyPart::Text(d.id.clone())],
        )
        .await
    }

    /// Signs a commitment; signing again keeps the first signature (returns false).
    pub async fn sign_commitment(&self, c: &CommitmentRow) -> Result<bool, StoreError> {
        let n = self
            .engine
            .execute(
                "INSERT INTO commitments (market_id, night_date, seller_id, statement, signed_by, signed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (market_id, night_date, seller_id) DO NOTHING",
                params![
                    c.market_id.as_str(),
                    c.night_date.to_string(),
                    c.seller_id.as_str(),
                    &c.statement,
                    &c.signed_by,
                    c.signed_at,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn commitment(
        &self,
        market: &MarketId,
        night: Date,
        seller: &SellerId,
    ) -> Result<Option<CommitmentRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT statement, signed_by, signed_at FROM commitments
                 WHERE market_id = $1 AND night_date = $2 AND seller_id = $3",
                params![market.as_str(), night.to_string(), seller.as_str()],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(CommitmentRow {
                    market_id: market.clone(),
                    night_date: night,
                    seller_id: seller.clone(),
                    statement: r.text(0)?,
                    signed_by: r.text(1)?,
                    signed_at: r.int(2)?,
                })
            })
            .transpose()
    }

    /// Every commitment signed for a night from `first` to `last` (both included), of every
    /// market, in one query: what the schedule's warnings read for all the nights they cover.
    pub async fn commitments_between(
        &self,
        first: Date,
        last: Date,
    ) -> Result<Vec<CommitmentRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT market_id, night_date, seller_id, statement, signed_by, signed_at
                 FROM commitments WHERE night_date >= $1 AND night_date <= $2
                 ORDER BY market_id, night_date, signed_at, seller_id",
                params![first.to_string(), last.to_string()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CommitmentRow {
                    market_id: MarketId::parse(r.text(0)?).map_err(corrupt)?,
                    night_date: parse_date(&r.text(1)?)?,
                    seller_id: SellerId::parse(r.text(2)?).map_err(corrupt)?,
                    statement: r.text(3)?,
                    signed_by: r.text(4)?,
                    signed_at: r.int(5)?,
                })
            })
            .collect()
    }

    /// A page of the commitments signed for one night (of one seller's, when `seller` is
    /// given), oldest first (the office reviews them).
    pub async fn night_commitments(
        &self,
        market: &MarketId,
        night: Date,
        seller: Option<&SellerId>,
        page: &Keyset,
    ) -> Result<Paged<CommitmentRow>, StoreError> {
        self.query_page(
            "SELECT seller_id, statement, signed_by, signed_at FROM commitments",
            Some("market_id = $1 AND night_date = $2 AND (CAST($3 AS TEXT) IS NULL OR seller_id = $3)"),
            params![
                market.as_str(),
                night.to_string(),
                seller.map(SellerId::as_str)
            ],
            Order::asc(&[("signed_at", Kind::Int), ("seller_id", Kind::Text)]),
            page,
            |r| {
                Ok(CommitmentRow {
                    market_id: market.clone(),
                    night_date: night,
                    seller_id: SellerId::parse(r.text(0)?).map_err(corrupt)?,
                    statement: r.text(1)?,
                    signed_by: r.text(2)?,
                    signed_at: r.int(3)?,
                })
            },
            |c| {
                vec![
                    KeyPart::Int(c.signed_at),
                    KeyPart::Text(c.seller_id.to_string()),
                ]
            },
        )
        .await
    }

    pub async fn create_lineup_set(&self, s: &LineupSetRow) -> Result<(), StoreError> {
        let items = serde_json::to_string(&s.items).map_err(corrupt)?;
        self.engine
            .execute(
                "INSERT INTO lineup_sets (id, seller_id, name, items, created_at) VALUES ($1, $2, $3, $4, $5)",
                params![&s.id, s.seller_id.as_str(), &s.name, items, s.created_at],
            )
            .await
            .map_err(|e| conflict(e, format!("lineup set {:?} of seller {}", s.name, s.seller_id)))?;
        Ok(())
    }

    pub async fn lineup_set(&self, id: &str) -> Result<Option<LineupSetRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT id, seller_id, name, items, created_at FROM lineup_sets WHERE id = $1",
                params![id],
            )
            .await?;
        rows.first().map(lineup_set_from).transpose()
    }

    /// A page of a seller's lineup sets, by name.
    pub async fn lineup_sets(
        &self,
        seller: &SellerId,
        page: &Keyset,
    ) -> Result<Paged<LineupSetRow>, StoreError> {
        self.query_page(
            "SELECT id, seller_id, name, items, created_at FROM lineup_sets",
            Some("seller_id = $1"),
            params![seller.as_str()],
            Order::asc(&[("name", Kind::Text)]),
            page,
            lineup_set_from,
            |l| vec![KeyPart::Text(l.name.clone())],
        )
        .await
    }

    /// Schedules a show into a market night. In one transaction: locks the seller's row (so two
    /// nodes scheduling the same seller serialise), refuses a slot overlapping another show of
    /// the seller (`slot_overlap`, naming it), inserts the show and its lineup, and enqueues the
    /// `show.scheduled` webhook event.
    pub async fn schedule_show(
        &self,
        show: &ShowRow,
        event: Option<&WebhookEvent>,
    ) -> Result<(), StoreError> {
        let Some(sched) = &show.schedule else {
            return Err(StoreError::Refused {
                code: "no_slot",
                message: "a scheduled show needs a market night and a slot".into(),
            });
        };
        let mut steps = vec![
            Step::new(
                "UPDATE sellers SET version = version + 1 WHERE id = $1",
                params![show.seller_id.as_str()],
            )
            .require("seller_missing"),
            Step::new(
                SELLER_OVERLAP,
                params![show.seller_id.as_str(), sched.slot_start, sched.slot_end],
            )
            .forbid("slot_overlap"),
        ];
        steps.extend(show_insert_steps(show)?);
        if let Some(ev) = event {
            steps.push(enqueue_step(ev));
        }
        match self.engine.transaction(steps).await {
            Ok(_) => Ok(()),
            Err(SqlError::Requirement("seller_missing")) => {
                Err(StoreError::NotFound(format!("seller {}", show.seller_id)))
            }
            Err(SqlError::Requirement("slot_overlap")) => {
                let rows = self
                    .engine
                    .query(
                        SELLER_OVERLAP,
                        params![show.seller_id.as_str(), sched.slot_start, sched.slot_end],
                    )
                    .await?;
                let other = rows
                    .first()
                    .map(|r| r.text(0))
                    .transpose()?
                    .unwrap_or_default();
                Err(StoreError::Refused {
                    code: "slot_overlap",
                    message: format!(
                        "seller {} already has show {other} in an overlapping slot",
                        show.seller_id
                    ),
                })
            }
            Err(e) => Err(conflict(e, format!("show {}", show.id))),
        }
    }

    /// A page of the shows of one market night (of one seller's, when `seller` is given), by
    /// slot start.
    pub async fn night_shows(
        &self,
        market: &MarketId,
        night: Date,
        seller: Option<&SellerId>,
        page: &Keyset,
    ) -> Result<Paged<ShowRow>, StoreError> {
        self.shows_page(
            Some("market_id = $1 AND night_date = $2 AND (CAST($3 AS TEXT) IS NULL OR seller_id = $3)"),
            params![
                market.as_str(),
                night.to_string(),
                seller.map(SellerId::as_str)
            ],
            Order::asc(&[("slot_start", Kind::Int), ("id", Kind::Text)]),
            page,
        )
        .await
    }

    /// A page of a seller's shows, newest first.
    pub async fn seller_shows(
        &self,
        seller: &SellerId,
        page: &Keyset,
    ) -> Result<Paged<ShowRow>, StoreError> {
        self.shows_page(
            Some("seller_id = $1"),
            params![seller.as_str()],
            NEWEST_ORDER,
            page,
        )
        .await
    }

    /// Every show of a seller, newest first (the scheduling rules compare their slots).
    pub async fn seller_shows_all(&self, seller: &SellerId) -> Result<Vec<ShowRow>, StoreError> {
        self.shows_where(
            "seller_id = $1",
            params![seller.as_str()],
            "created_at DESC, id DESC",
        )
        .await
    }

    /// Every show not closed yet (what a starting node loads), oldest first.
    pub async fn open_shows(&self) -> Result<Vec<ShowRow>, StoreError> {
        self.shows_where("status <> 'closed'", params![], "created_at, id")
            .await
    }

    /// Scheduled shows whose slot has not ended by `now` and starts before `until`, by slot
    /// start, with their lineups (for the schedule's warnings, which look a bounded way ahead).
    pub async fn upcoming_shows(
        &self,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<ShowRow>, StoreError> {
        self.shows_where(
            "status = 'scheduled' AND slot_start IS NOT NULL AND slot_end > $1 AND slot_start < $2",
            params![now, until],
            "slot_start, id",
        )
        .await
    }

    /// Ids of scheduled shows whose slot has started by `now`.
    pub async fn shows_due_live(&self, now: Millis) -> Result<Vec<ShowId>, StoreError> {
        self.ids_where(
            "status = 'scheduled' AND slot_start IS NOT NULL AND slot_start <= $1",
            params![now],
        )
        .await
    }

    /// Ids of scheduled or live shows whose slot ended at or before `cutoff` (slot end plus the
    /// close grace has passed), including those whose end passed while no node was running.
    pub async fn shows_due_close(&self, cutoff: Millis) -> Result<Vec<ShowId>, StoreError> {
        self.ids_where(
            "status IN ('scheduled', 'live') AND slot_end IS NOT NULL AND slot_end <= $1",
            params![cutoff],
        )
        .await
    }

    /// Records that a live show has its seller at `at` (a connection or a command on some
    /// node). Only moves forward; a show that is not live is left alone.
    pub async fn seller_seen(&self, id: &ShowId, at: Millis) -> Result<(), StoreError> {
        self.sellers_seen(std::slice::from_ref(id), at).await
    }

    /// [`Store::seller_seen`] for several shows at once: one statement (and so one commit, one
    /// fsync) per [`MAX_ORDERS_PER_QUERY`] shows. A node serving 50 live shows marks their
    /// sellers every lifecycle pass; one commit each was most of what the catalog wrote.
    pub async fn sellers_seen(&self, ids: &[ShowId], at: Millis) -> Result<(), StoreError> {
        for chunk in ids.chunks(MAX_ORDERS_PER_QUERY) {
            let sql = format!(
                "UPDATE shows SET seller_seen_at = $1
                 WHERE id IN ({}) AND status = 'live'
                   AND (seller_seen_at IS NULL OR seller_seen_at < $1)",
                placeholders(2, chunk.len())
            );
            let mut values = vec![Value::from(at)];
            values.extend(chunk.iter().map(|id| Value::from(id.as_str())));
            self.engine.execute(&sql, values).await?;
        }
        Ok(())
    }

    /// Ids of live shows whose seller was last seen (or, never seen, which went live) at or
    /// before `cutoff`.
    pub async fn shows_seller_absent(&self, cutoff: Millis) -> Result<Vec<ShowId>, StoreError> {
        self.ids_where(
            "status = 'live' AND COALESCE(seller_seen_at, live_at) <= $1",
            params![cutoff],
        )
        .await
    }

    async fn ids_where(
        &self,
        filter: &str,
        params: Vec<crate::sql::Value>,
    ) -> Result<Vec<ShowId>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT id FROM shows WHERE {filter} ORDER BY slot_start, id"),
                params,
            )
            .await?;
        rows.iter()
            .map(|r| ShowId::parse(r.text(0)?).map_err(corrupt))
            .collect()
    }

    /// Moves a show from `from` to `to` if it is `from` now (compare-and-set), records the
    /// transition with its actor and reason, and enqueues `event` for every subscribed webhook,
    /// all in one transaction: the log never shows a move without its reason. Returns whether
    /// this caller won; a loser changes nothing, so a reason is only ever beside its own move.
    pub async fn transition<'a>(
        &self,
        id: &ShowId,
        from: ShowStatus,
        to: ShowStatus,
        at: Millis,
        by: impl Into<TransitionBy<'a>>,
        event: Option<&WebhookEvent>,
    ) -> Result<bool, StoreError> {
        let by = by.into();
        let set = match to {
            ShowStatus::Live => {
                "UPDATE shows SET status = $2, live_at = $4 WHERE id = $1 AND status = $3"
            }
            ShowStatus::Closed => {
                "UPDATE shows SET status = $2, closed_at = $4 WHERE id = $1 AND status = $3"
            }
            ShowStatus::Scheduled => {
                return Err(StoreError::Refused {
                    code: "bad_transition",
                    message: format!("show {id} cannot go back to scheduled"),
                });
            }
        };
        let mut steps =
            vec![
            Step::new(set, params![id.as_str(), to.as_str(), from.as_str(), at]).require("cas"),
            Step::new(
                "INSERT INTO show_transitions (show_id, to_status, from_status, actor, at, reason)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (show_id, to_status) DO NOTHING",
                params![id.as_str(), to.as_str(), from.as_str(), by.actor, at, by.reason],
            ),
        ];
        if let Some(ev) = event {
            steps.push(enqueue_step(ev));
        }
        match self.engine.transaction(steps).await {
            Ok(_) => Ok(true),
            Err(SqlError::Requirement("cas")) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The transitions a show went through, in order.
    pub async fn transitions(&self, id: &ShowId) -> Result<Vec<TransitionRow>, StoreError> {
        // A show reaches each status at most once: three rows at most, one page.
        Ok(self
            .transitions_page(id, &Keyset::everything())
            .await?
            .items)
    }

    /// A page of the transitions a show went through, in order.
    pub async fn transitions_page(
        &self,
        id: &ShowId,
        page: &Keyset,
    ) -> Result<Paged<TransitionRow>, StoreError> {
        self.query_page(
            "SELECT from_status, to_status, actor, at, reason FROM show_transitions",
            Some("show_id = $1"),
            params![id.as_str()],
            Order::asc(&[("at", Kind::Int), ("to_status", Kind::Text)]),
            page,
            |r| {
                Ok(TransitionRow {
                    show_id: id.clone(),
                    from: crate::catalog::parse_status(&r.text(0)?)?,
                    to: crate::catalog::parse_status(&r.text(1)?)?,
                    actor: r.text(2)?,
                    at: r.int(3)?,
                    reason: r.opt_text(4)?,
                })
            },
            |t| vec![KeyPart::Int(t.at), KeyPart::Text(t.to.as_str().to_owned())],
        )
        .await
    }
}

/// Who moves a show to a new status, and why when the actor alone does not say (a stable code
/// such as `seller_absent`): both go into the transition's row, in the write that moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionBy<'a> {
    pub actor: &'a str,
    pub reason: Option<&'a str>,
}

/// An actor alone: the move needs no reason beyond who made it.
impl<'a> From<&'a str> for TransitionBy<'a> {
    fn from(actor: &'a str) -> Self {
        Self {
            actor,
            reason: None,
        }
    }
}
