//! Reports over settled shows: what sold, at which prices, against what was allotted; claims
//! refused and the viewers' peak; per show, and per market night with the programme's views
//! (product group, district, OCOP stars, seller).
//!
//! Every figure is aggregated by the database from what settlement wrote (`order_lines`,
//! `orders`, `settlement_products`) and from the per-node show statistics; Rust only adds up
//! rows the database already summed and derives the differences. So a report adds up to the
//! orders by construction, and the conformance suite checks that it does.
//!
//! What "sold" means: the settlement is the sale. `units` and `revenue` count every settled
//! order line, including orders later cancelled (unpaid by the deadline, or cancelled by the
//! buyer or an operator); those are reported beside them as `units_cancelled` and
//! `revenue_cancelled`, so both the settled and the net figures can be read and each still adds
//! up to the orders table (a cancelled order keeps its units and total).
//!
//! The figures of one report are read by several statements, not one snapshot: an order
//! cancelled while a report is read may show in one figure and not yet in another. Settled
//! lines themselves never change, so everything but the cancelled figures is stable.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use nightmarket_domain::{MarketId, Millis, ProductId, SellerId, ShowId, ShowStatus};

use crate::catalog::{parse_date, parse_status};
use crate::params;
use crate::sql::{Row, Value};
use crate::{Store, StoreError, corrupt};

/// The [`StoreError::Refused`] code of a report asked for a show that is not settled.
pub const NOT_SETTLED: &str = "not_settled";

/// Sell-through is given in basis points: 10,000 means every allotted unit sold.
pub const BASIS_POINTS: u64 = 10_000;

/// Sums of one product in one show, or of any set of those added up. Money is integer đồng.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesFigures {
    /// Units the lineup allotted (the stock the show opened with).
    pub allotted: u64,
    /// Units settled into orders.
    pub units: u64,
    /// Σ quantity × the unit price each claim was accepted at.
    pub revenue: i64,
    /// The same units at list price, Σ quantity × list price.
    pub list_revenue: i64,
    /// Units claimed during a flash sale, and what they brought in.
    pub flash_units: u64,
    pub flash_revenue: i64,
    /// Of `units`, those in orders cancelled since settlement, and their revenue.
    pub units_cancelled: u64,
    pub revenue_cancelled: i64,
}

impl SalesFigures {
    /// What the buyers were spared against list price.
    pub fn discount(&self) -> i64 {
        self.list_revenue.saturating_sub(self.revenue)
    }

    /// Units sold outside a flash sale, at the list price.
    pub fn regular_units(&self) -> u64 {
        self.units.saturating_sub(self.flash_units)
    }

    pub fn regular_revenue(&self) -> i64 {
        self.revenue.saturating_sub(self.flash_revenue)
    }

    /// `units / allotted` in basis points, rounded down so it never overstates; `None` when
    /// nothing was allotted.
    pub fn sell_through_bp(&self) -> Option<u64> {
        if self.allotted == 0 {
            return None;
        }
        let bp = u128::from(self.units) * u128::from(BASIS_POINTS) / u128::from(self.allotted);
        Some(u64::try_from(bp).unwrap_or(u64::MAX))
    }

    /// Adds `o` in; saturating, though đồng sums of real nights are far from the bounds.
    pub fn add(&mut self, o: &SalesFigures) {
        self.allotted = self.allotted.saturating_add(o.allotted);
        self.units = self.units.saturating_add(o.units);
        self.revenue = self.revenue.saturating_add(o.revenue);
        self.list_revenue = self.list_revenue.saturating_add(o.list_revenue);
        self.flash_units = self.flash_units.saturating_add(o.flash_units);
        self.flash_revenue = self.flash_revenue.saturating_add(o.flash_revenue);
        self.units_cancelled = self.units_cancelled.saturating_add(o.units_cancelled);
        self.revenue_cancelled = self.revenue_cancelled.saturating_add(o.revenue_cancelled);
    }
}

/// One product of one settled show, with the programme's dimensions as settlement priced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSales {
    pub show_id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub product_id: ProductId,
    /// Place in the show's lineup, from 0.
    pub position: u32,
    pub name: String,
    /// The OCOP product group as stored (`food`, `beverages`, …).
    pub group: String,
    pub district: String,
    pub stars: u8,
    pub list_price: i64,
    /// Buyers with this product in their order.
    pub buyers: u64,
    pub figures: SalesFigures,
}

/// Claims refused for one reason (a wire error code such as `sold_out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    pub reason: String,
    pub count: u64,
}

/// What a report counts over its settled shows, one show's or a night's: the same figures at
/// both levels, each computed over the whole set (so a night's buyers and peak are not the sums
/// of its shows').
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportTally {
    pub orders: u64,
    /// Distinct buyers over the shows (one buyer of two shows counts once).
    pub buyers: u64,
    pub orders_cancelled: u64,
    /// The sum of the shows' product rows.
    pub totals: SalesFigures,
    /// By reason, summed over every node; ordered by reason.
    pub refusals: Vec<RefusalCount>,
    /// The most viewers at once: per minute every node (and show) adds up, the largest minute
    /// wins, so overlapping shows count as the audience they had together.
    pub peak_viewers: u64,
}

impl ReportTally {
    fn set_counts(&mut self, c: OrderCounts) {
        (self.orders, self.buyers, self.orders_cancelled) = (c.orders, c.buyers, c.cancelled);
    }
}

/// One settled show's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowSales {
    pub show_id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
    pub market_id: Option<MarketId>,
    pub night_date: Option<Date>,
    pub settled_at: Millis,
    pub tally: ReportTally,
}

/// A show's report: its totals and one row per lineup product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowReport {
    pub show: ShowSales,
    pub products: Vec<ProductSales>,
}

/// Why a show of the night is not in its figures yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingReason {
    /// The order service has not settled it (not closed yet, or settling).
    Unsettled,
    /// Reconciliation stopped on a mismatch; it waits for an operator.
    Mismatch,
}

impl PendingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsettled => "pending",
            Self::Mismatch => "mismatch",
        }
    }
}

/// A show of the night left out of the figures, named so that nothing is omitted silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingShow {
    pub show_id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
    pub status: ShowStatus,
    pub reason: PendingReason,
}

/// One group of a programme view: the figures of every product row that falls in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSales {
    /// The product group, district, star rating (as text, `"4"`) or seller id.
    pub key: String,
    /// The seller's name in the seller view; empty in the others.
    pub label: String,
    /// Shows and distinct products contributing.
    pub shows: u64,
    pub products: u64,
    pub figures: SalesFigures,
}

/// The night seen by the programme's dimensions. Each view partitions the night's product
/// rows, so each adds up to the night's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programme {
    pub groups: Vec<GroupSales>,
    pub districts: Vec<GroupSales>,
    pub stars: Vec<GroupSales>,
    pub sellers: Vec<GroupSales>,
}

/// A market night's report over its settled shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightReport {
    pub market_id: MarketId,
    pub night_date: Date,
    /// Set when the report is limited to this seller's shows.
    pub seller_id: Option<SellerId>,
    /// Settled shows, by slot.
    pub shows: Vec<ShowSales>,
    /// Shows of the night not settled yet, by slot; not in any figure.
    pub pending: Vec<PendingShow>,
    /// Over the settled shows together.
    pub tally: ReportTally,
    pub programme: Programme,
    /// Every product row of the settled shows, by show then lineup position.
    pub products: Vec<ProductSales>,
}

/// Most settled shows one report covers. A night holds a few dozen; the bound keeps every
/// statement well under both engines' parameter limits (SQLite's is 32,766).
pub const MAX_REPORT_SHOWS: usize = 10_000;

/// The settled shows a query covers, named one by one: a night's figures then cover exactly
/// the shows it lists as settled, even if another settles while the report is read.
struct Scope<'a>(&'a [ShowId]);

impl Scope<'_> {
    /// A filter on `col` (a show id column) and its parameters.
    fn filter(&self, col: &str) -> (String, Vec<Value>) {
        let marks: Vec<String> = (1..=self.0.len()).map(|i| format!("${i}")).collect();
        let params = self.0.iter().map(|id| Value::from(id.as_str())).collect();
        (format!("{col} IN ({})", marks.join(", ")), params)
    }
}

/// Per show and lineup product: the settlement's snapshot of the product and its settled
/// lines. LEFT JOINs keep products nothing was sold of (their sell-through is 0). `{filter}`
/// restricts `p.show_id`.
const PRODUCT_SALES: &str = "SELECT p.show_id, s.seller_id, COALESCE(sl.name, '') AS seller_name,
     p.product_id,
     p.position, p.name, p.product_group, p.district, p.stars, p.list_price, p.allotted,
     CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) AS units,
     CAST(COALESCE(SUM(l.quantity * l.unit_price), 0) AS BIGINT) AS revenue,
     CAST(COALESCE(SUM(l.quantity * l.list_price), 0) AS BIGINT) AS list_revenue,
     CAST(COALESCE(SUM(CASE WHEN l.flash <> 0 THEN l.quantity ELSE 0 END), 0) AS BIGINT)
         AS flash_units,
     CAST(COALESCE(SUM(CASE WHEN l.flash <> 0 THEN l.quantity * l.unit_price ELSE 0 END), 0)
         AS BIGINT) AS flash_revenue,
     CAST(COALESCE(SUM(CASE WHEN o.status = 'cancelled' THEN l.quantity ELSE 0 END), 0)
         AS BIGINT) AS units_cancelled,
     CAST(COALESCE(SUM(CASE WHEN o.status = 'cancelled' THEN l.quantity * l.unit_price
         ELSE 0 END), 0) AS BIGINT) AS revenue_cancelled,
     COUNT(DISTINCT o.buyer_id) AS buyers
 FROM settlement_products p
 JOIN shows s ON s.id = p.show_id
 LEFT JOIN sellers sl ON sl.id = s.seller_id
 LEFT JOIN order_lines l ON l.show_id = p.show_id AND l.product_id = p.product_id
 LEFT JOIN orders o ON o.id = l.order_id
 WHERE {filter}
 GROUP BY p.show_id, s.seller_id, sl.name, p.product_id, p.position, p.name, p.product_group,
     p.district, p.stars, p.list_price, p.allotted";

/// A programme view: the product rows of [`PRODUCT_SALES`] grouped by one dimension.
/// `{key}` is a column of the inner rows, `{label}` another or an empty text, `{group}` what
/// the rows are grouped by (PostgreSQL refuses a text constant in `GROUP BY`).
const GROUP_SALES: &str = "SELECT {key}, {label}, COUNT(DISTINCT x.show_id),
     COUNT(DISTINCT x.product_id),
     CAST(SUM(x.allotted) AS BIGINT), CAST(SUM(x.units) AS BIGINT),
     CAST(SUM(x.revenue) AS BIGINT), CAST(SUM(x.list_revenue) AS BIGINT),
     CAST(SUM(x.flash_units) AS BIGINT), CAST(SUM(x.flash_revenue) AS BIGINT),
     CAST(SUM(x.units_cancelled) AS BIGINT), CAST(SUM(x.revenue_cancelled) AS BIGINT)
 FROM ({inner}) x
 GROUP BY {group}";

/// The programme's dimensions, in [`Programme`] order: the key column of the rows of
/// [`PRODUCT_SALES`], and the label column if the view has one.
const DIMENSIONS: [(&str, Option<&str>); 4] = [
    ("x.product_group", None),
    ("x.district", None),
    // Text on both engines, so one reader serves every view.
    ("CAST(x.stars AS TEXT)", None),
    ("x.seller_id", Some("x.seller_name")),
];

fn count(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative count {v} in a report")))
}

fn figures_from(r: &Row, first: usize, allotted: i64) -> Result<SalesFigures, StoreError> {
    Ok(SalesFigures {
        allotted: count(allotted)?,
        units: count(r.int(first)?)?,
        revenue: r.int(first + 1)?,
        list_revenue: r.int(first + 2)?,
        flash_units: count(r.int(first + 3)?)?,
        flash_revenue: r.int(first + 4)?,
        units_cancelled: count(r.int(first + 5)?)?,
        revenue_cancelled: r.int(first + 6)?,
    })
}

fn product_from(r: &Row) -> Result<ProductSales, StoreError> {
    Ok(ProductSales {
        show_id: ShowId::parse(r.text(0)?).map_err(corrupt)?,
        seller_id: SellerId::parse(r.text(1)?).map_err(corrupt)?,
        seller_name: r.text(2)?,
        product_id: ProductId::parse(r.text(3)?).map_err(corrupt)?,
        position: r.u32(4)?,
        name: r.text(5)?,
        group: r.text(6)?,
        district: r.text(7)?,
        stars: u8::try_from(r.int(8)?).map_err(corrupt)?,
        list_price: r.int(9)?,
        figures: figures_from(r, 11, r.int(10)?)?,
        buyers: count(r.int(18)?)?,
    })
}

/// A show as the reports list it, with its settlement if any.
struct ShowHead {
    id: ShowId,
    seller_id: SellerId,
    seller_name: String,
    title: String,
    status: ShowStatus,
    market_id: Option<MarketId>,
    night_date: Option<Date>,
    slot_start: Option<Millis>,
    /// `settled` or `mismatch`, with when it was decided.
    settlement: Option<(String, Millis)>,
}

const SHOW_HEAD: &str = "SELECT s.id, s.seller_id, COALESCE(sl.name, ''), s.title, s.status,
     s.market_id, s.night_date, s.slot_start, t.state, t.decided_at
 FROM shows s
 LEFT JOIN sellers sl ON sl.id = s.seller_id
 LEFT JOIN show_settlements t ON t.show_id = s.id";

fn head_from(r: &Row) -> Result<ShowHead, StoreError> {
    Ok(ShowHead {
        id: ShowId::parse(r.text(0)?).map_err(corrupt)?,
        seller_id: SellerId::parse(r.text(1)?).map_err(corrupt)?,
        seller_name: r.text(2)?,
        title: r.text(3)?,
        status: parse_status(&r.text(4)?)?,
        market_id: r
            .opt_text(5)?
            .map(MarketId::parse)
            .transpose()
            .map_err(corrupt)?,
        night_date: r.opt_text(6)?.as_deref().map(parse_date).transpose()?,
        slot_start: r.opt_int(7)?,
        settlement: match r.opt_text(8)? {
            Some(state) => Some((state, r.int(9)?)),
            None => None,
        },
    })
}

impl ShowHead {
    fn settled_at(&self) -> Option<Millis> {
        match &self.settlement {
            Some((state, at)) if state == "settled" => Some(*at),
            _ => None,
        }
    }

    fn sales(&self, settled_at: Millis) -> ShowSales {
        ShowSales {
            show_id: self.id.clone(),
            seller_id: self.seller_id.clone(),
            seller_name: self.seller_name.clone(),
            title: self.title.clone(),
            market_id: self.market_id.clone(),
            night_date: self.night_date,
            settled_at,
            tally: ReportTally::default(),
        }
    }
}

/// Orders, distinct buyers and cancelled orders.
#[derive(Debug, Default, Clone, Copy)]
struct OrderCounts {
    orders: u64,
    buyers: u64,
    cancelled: u64,
}

const ORDER_COUNTS: &str = "COUNT(*), COUNT(DISTINCT o.buyer_id),
     CAST(COALESCE(SUM(CASE WHEN o.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS BIGINT)";

fn counts_from(r: &Row, first: usize) -> Result<OrderCounts, StoreError> {
    Ok(OrderCounts {
        orders: count(r.int(first)?)?,
        buyers: count(r.int(first + 1)?)?,
        cancelled: count(r.int(first + 2)?)?,
    })
}

/// Reasons in byte order: PostgreSQL would order text by the database's collation and SQLite by
/// bytes, and a report must come out the same on both.
fn refusal_list(map: BTreeMap<String, u64>) -> Vec<RefusalCount> {
    map.into_iter()
        .map(|(reason, count)| RefusalCount { reason, count })
        .collect()
}

impl Store {
    /// The report of a settled show. `NotFound` for an unknown show; `Refused` with
    /// [`NOT_SETTLED`] for a show not settled (yet, or stopped by a mismatch).
    pub async fn show_report(&self, show: &ShowId) -> Result<ShowReport, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("{SHOW_HEAD} WHERE s.id = $1"),
                params![show.as_str()],
            )
            .await?;
        let head = match rows.first() {
            Some(r) => head_from(r)?,
            None => return Err(StoreError::NotFound(format!("show {show}"))),
        };
        let Some(settled_at) = head.settled_at() else {
            let why = match &head.settlement {
                Some(_) => "its settlement stopped on a mismatch and waits for an operator",
                None => "it has not been settled yet",
            };
            return Err(StoreError::Refused {
                code: NOT_SETTLED,
                message: format!("show {show} ({}): {why}", head.status.as_str()),
            });
        };
        let shows = [show.clone()];
        let scope = Scope(&shows);
        let products = self.product_sales(&scope).await?;
        let mut sales = head.sales(settled_at);
        let tally = &mut sales.tally;
        for p in &products {
            tally.totals.add(&p.figures);
        }
        let counts = self.order_counts_by_show(&scope).await?;
        if let Some(c) = counts.get(show) {
            tally.set_counts(*c);
        }
        let mut refusals = self.refusals_by_show(&scope).await?;
        tally.refusals = refusal_list(refusals.remove(show).unwrap_or_default());
        tally.peak_viewers = self
            .peak_viewers_by_show(&scope)
            .await?
            .get(show)
            .copied()
            .unwrap_or(0);
        Ok(ShowReport {
            show: sales,
            products,
        })
    }

    /// The report of a market night over its settled shows, or over those of `seller` only.
    /// Shows not settled are listed in `pending` and left out of every figure.
    pub async fn night_report(
        &self,
        market: &MarketId,
        date: Date,
        seller: Option<&SellerId>,
    ) -> Result<NightReport, StoreError> {
        let seller_filter = seller.map_or("", SellerId::as_str);
        let rows = self
            .engine
            .query(
                &format!(
                    "{SHOW_HEAD} WHERE s.market_id = $1 AND s.night_date = $2
                         AND (CAST($3 AS TEXT) = '' OR s.seller_id = CAST($3 AS TEXT))"
                ),
                params![market.as_str(), date.to_string(), seller_filter],
            )
            .await?;
        let mut heads = rows.iter().map(head_from).collect::<Result<Vec<_>, _>>()?;
        // By slot, then id in byte order (see `refusal_list` on collations).
        heads.sort_by(|a, b| (a.slot_start, a.id.as_str()).cmp(&(b.slot_start, b.id.as_str())));

        let settled: Vec<ShowId> = heads
            .iter()
            .filter(|h| h.settled_at().is_some())
            .map(|h| h.id.clone())
            .collect();
        if settled.len() > MAX_REPORT_SHOWS {
            return Err(StoreError::Refused {
                code: "too_many_shows",
                message: format!(
                    "the night has {} settled shows; a report covers at most {MAX_REPORT_SHOWS}",
                    settled.len()
                ),
            });
        }
        let mut report = NightReport {
            market_id: market.clone(),
            night_date: date,
            seller_id: seller.cloned(),
            shows: Vec::new(),
            pending: Vec::new(),
            tally: ReportTally::default(),
            programme: Programme::default(),
            products: Vec::new(),
        };
        for h in heads.iter().filter(|h| h.settled_at().is_none()) {
            report.pending.push(PendingShow {
                show_id: h.id.clone(),
                seller_id: h.seller_id.clone(),
                seller_name: h.seller_name.clone(),
                title: h.title.clone(),
                status: h.status,
                reason: if h.settlement.is_some() {
                    PendingReason::Mismatch
                } else {
                    PendingReason::Unsettled
                },
            });
        }
        // `IN ()` is not SQL; with nothing settled there is nothing to add up.
        if settled.is_empty() {
            return Ok(report);
        }

        let scope = Scope(&settled);
        let mut products = self.product_sales(&scope).await?;
        let counts = self.order_counts_by_show(&scope).await?;
        let mut refusals = self.refusals_by_show(&scope).await?;
        let peaks = self.peak_viewers_by_show(&scope).await?;
        let mut night_refusals: BTreeMap<String, u64> = BTreeMap::new();
        for h in &heads {
            let Some(settled_at) = h.settled_at() else {
                continue;
            };
            let mut sales = h.sales(settled_at);
            let tally = &mut sales.tally;
            for p in products.iter().filter(|p| p.show_id == h.id) {
                tally.totals.add(&p.figures);
            }
            report.tally.totals.add(&tally.totals);
            tally.set_counts(counts.get(&h.id).copied().unwrap_or_default());
            let reasons = refusals.remove(&h.id).unwrap_or_default();
            for (reason, n) in &reasons {
                let slot = night_refusals.entry(reason.clone()).or_insert(0);
                *slot = slot.saturating_add(*n);
            }
            tally.refusals = refusal_list(reasons);
            tally.peak_viewers = peaks.get(&h.id).copied().unwrap_or(0);
            report.shows.push(sales);
        }
        let order: HashMap<&ShowId, usize> = report
            .shows
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.show_id, i))
            .collect();
        products.sort_by_key(|p| (order.get(&p.show_id).copied(), p.position));
        report.products = products;
        let tally = &mut report.tally;
        tally.set_counts(self.night_order_counts(&scope).await?);
        tally.refusals = refusal_list(night_refusals);
        tally.peak_viewers = self.night_peak_viewers(&scope).await?;
        report.programme = self.programme(&scope).await?;
        Ok(report)
    }

    /// The rows of the statement `sql` builds around a filter restricting `col` (a show id
    /// column) to the scope's shows.
    async fn query_scope(
        &self,
        scope: &Scope<'_>,
        col: &str,
        sql: impl FnOnce(&str) -> String,
    ) -> Result<Vec<Row>, StoreError> {
        let (filter, params) = scope.filter(col);
        Ok(self.engine.query(&sql(&filter), params).await?)
    }

    async fn product_sales(&self, scope: &Scope<'_>) -> Result<Vec<ProductSales>, StoreError> {
        let rows = self
            .query_scope(scope, "p.show_id", |filter| {
                format!("{PRODUCT_SALES} ORDER BY p.show_id, p.position")
                    .replace("{filter}", filter)
            })
            .await?;
        rows.iter().map(product_from).collect()
    }

    async fn programme(&self, scope: &Scope<'_>) -> Result<Programme, StoreError> {
        let (filter, params) = scope.filter("p.show_id");
        let inner = PRODUCT_SALES.replace("{filter}", &filter);
        let mut views = Vec::with_capacity(DIMENSIONS.len());
        for (key, label) in DIMENSIONS {
            let group = match label {
                Some(l) => format!("{key}, {l}"),
                None => key.to_owned(),
            };
            let sql = GROUP_SALES
                .replace("{inner}", &inner)
                .replace("{key}", key)
                .replace("{label}", label.unwrap_or("CAST('' AS TEXT)"))
                .replace("{group}", &group);
            let rows = self.engine.query(&sql, params.clone()).await?;
            let mut view = rows
                .iter()
                .map(|r| {
                    Ok(GroupSales {
                        key: r.text(0)?,
                        label: r.text(1)?,
                        shows: count(r.int(2)?)?,
                        products: count(r.int(3)?)?,
                        figures: figures_from(r, 5, r.int(4)?)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            view.sort_by(|a, b| a.key.cmp(&b.key));
            views.push(view);
        }
        let mut views = views.into_iter();
        Ok(Programme {
            groups: views.next().unwrap_or_default(),
            districts: views.next().unwrap_or_default(),
            stars: views.next().unwrap_or_default(),
            sellers: views.next().unwrap_or_default(),
        })
    }

    async fn order_counts_by_show(
        &self,
        scope: &Scope<'_>,
    ) -> Result<HashMap<ShowId, OrderCounts>, StoreError> {
        let rows = self
            .query_scope(scope, "o.show_id", |filter| {
                format!(
                    "SELECT o.show_id, {ORDER_COUNTS} FROM orders o WHERE {filter}
                     GROUP BY o.show_id"
                )
            })
            .await?;
        per_show(&rows, |r| counts_from(r, 1))
    }

    /// Over the whole scope, so a buyer of two shows counts once.
    async fn night_order_counts(&self, scope: &Scope<'_>) -> Result<OrderCounts, StoreError> {
        let rows = self
            .query_scope(scope, "o.show_id", |filter| {
                format!("SELECT {ORDER_COUNTS} FROM orders o WHERE {filter}")
            })
            .await?;
        match rows.first() {
            Some(r) => counts_from(r, 0),
            None => Ok(OrderCounts::default()),
        }
    }

    /// Refusals per show and reason, summed over the nodes that counted them.
    async fn refusals_by_show(
        &self,
        scope: &Scope<'_>,
    ) -> Result<HashMap<ShowId, BTreeMap<String, u64>>, StoreError> {
        let rows = self
            .query_scope(scope, "r.show_id", |filter| {
                format!(
                    "SELECT r.show_id, r.reason, CAST(SUM(r.count) AS BIGINT)
                     FROM show_refusals r WHERE {filter} GROUP BY r.show_id, r.reason"
                )
            })
            .await?;
        let mut out: HashMap<ShowId, BTreeMap<String, u64>> = HashMap::new();
        for r in &rows {
            out.entry(show_of(r)?)
                .or_default()
                .insert(r.text(1)?, count(r.int(2)?)?);
        }
        Ok(out)
    }

    /// Each show's peak: per minute the nodes add up; the largest minute wins.
    async fn peak_viewers_by_show(
        &self,
        scope: &Scope<'_>,
    ) -> Result<HashMap<ShowId, u64>, StoreError> {
        let rows = self
            .query_scope(scope, "v.show_id", |filter| {
                format!(
                    "SELECT m.show_id, CAST(MAX(m.total) AS BIGINT) FROM (
                         SELECT v.show_id, SUM(v.viewers) AS total FROM show_viewers v
                         WHERE {filter} GROUP BY v.show_id, v.minute) m
                     GROUP BY m.show_id"
                )
            })
            .await?;
        per_show(&rows, |r| count(r.int(1)?))
    }

    /// The night's peak: per minute every show and node add up, so overlapping shows count as
    /// the audience the market had at once.
    async fn night_peak_viewers(&self, scope: &Scope<'_>) -> Result<u64, StoreError> {
        let rows = self
            .query_scope(scope, "v.show_id", |filter| {
                format!(
                    "SELECT CAST(COALESCE(MAX(m.total), 0) AS BIGINT) FROM (
                         SELECT SUM(v.viewers) AS total FROM show_viewers v
                         WHERE {filter} GROUP BY v.minute) m"
                )
            })
            .await?;
        match rows.first() {
            Some(r) => count(r.int(0)?),
            None => Ok(0),
        }
    }
}

/// The show a per-show row is about: its first column.
fn show_of(r: &Row) -> Result<ShowId, StoreError> {
    ShowId::parse(r.text(0)?).map_err(corrupt)
}

/// One value per show from per-show rows.
fn per_show<T>(
    rows: &[Row],
    value: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<HashMap<ShowId, T>, StoreError> {
    rows.iter().map(|r| Ok((show_of(r)?, value(r)?))).collect()
}
