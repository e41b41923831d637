//! The market calendar's rules: a stored market and its exceptions as nights, what may still
//! change on a night, whether a show's lineup is admitted to its night, and what scheduling a
//! seller's show into a night must satisfy.

use std::collections::{HashMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use nightmarket_auth::{Claims, Role};
use nightmarket_domain::market::{self as m, DEFAULT_MIN_STARS, parse_date};
use nightmarket_domain::{
    AdmissionRefusal, Decision, MarketId, MarketSpec, Millis, NightException, ProductId,
    ProductProof, SellerId, ShowId, ShowStatus, Slot, SlotError, Stars, check_admission,
    check_slot,
};
use nightmarket_store::{
    CommitmentRow, DecisionRow, ExceptionKind, ExceptionRow, Keyset, LineupRow, MarketRow, Paged,
    ShowRow, ShowSchedule, Store,
};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::CreateLineupItem;
use nightmarket_wire::market::{AdmissionIssue, ExpiryWarning};

use crate::convert::show_body;
use crate::services::catalog::build_lineup;
use crate::services::webhooks::show_event;
use crate::services::{ServiceError, ServiceResult, field, new_id};

/// A stored market with its exceptions, ready to compute nights.
pub struct Calendar {
    pub row: MarketRow,
    pub market: nightmarket_domain::Market,
    pub exceptions: Vec<NightException>,
}

/// A new market from its parsed spec: validated (weekdays in order, the zone under its
/// canonical name) and stored under a new id.
pub async fn create_market(
    store: &Store,
    spec: MarketSpec,
    created_by: String,
    now: Millis,
) -> ServiceResult<MarketRow> {
    let market = spec
        .validate()
        .map_err(|e| ServiceError::bad_request(e.to_string()))?;
    let row = MarketRow {
        id: field("id", MarketId::parse(new_id()))?,
        spec: market.to_spec(),
        created_by,
        created_at: now,
    };
    store.create_market(&row).await?;
    Ok(row)
}

/// A page of every market.
pub async fn markets(store: &Store, page: &Keyset) -> ServiceResult<Paged<MarketRow>> {
    Ok(store.markets(page).await?)
}

/// Adds an exception (a night cancelled or moved) to a calendar, once [`check_exception`]
/// accepts it.
pub async fn add_exception(
    store: &Store,
    cal: &Calendar,
    row: ExceptionRow,
) -> ServiceResult<ExceptionRow> {
    check_exception(cal, &row)?;
    store.add_exception(&row).await?;
    Ok(row)
}

/// A page of the exceptions of the market `id` names.
pub async fn exceptions(
    store: &Store,
    id: &str,
    page: &Keyset,
) -> ServiceResult<Paged<ExceptionRow>> {
    let cal = calendar(store, id).await?;
    Ok(store.exceptions_page(&cal.row.id, page).await?)
}

/// Records an operator's decision on a product for a market: the product must exist, and a
/// rejection needs a reason.
pub async fn decide(
    store: &Store,
    cal: &Calendar,
    product: ProductId,
    approved: bool,
    reason: Option<&str>,
    decided_by: &str,
    now: Millis,
) -> ServiceResult<DecisionRow> {
    if store.product(&product).await?.is_none() {
        return Err(ServiceError::new(
            ErrorCode::UnknownProduct,
            format!("product_id: product {product} does not exist"),
        ));
    }
    let decision = Decision::new(approved, reason, decided_by, now)
        .map_err(|e| ServiceError::bad_request(format!("reason: {e}")))?;
    let row = DecisionRow {
        id: new_id(),
        market_id: cal.row.id.clone(),
        product_id: product,
        approved: decision.approved,
        reason: decision.reason,
        decided_by: decision.decided_by,
        decided_at: now,
    };
    store.record_decision(&row).await?;
    Ok(row)
}

/// A page of a market's decisions: of one product for an operator or that product's seller,
/// of every product for an operator.
pub async fn decisions(
    store: &Store,
    claims: &Claims,
    cal: &Calendar,
    product: Option<ProductId>,
    page: &Keyset,
) -> ServiceResult<Paged<DecisionRow>> {
    if let Some(pid) = &product {
        let owner = store.product(pid).await?.map(|(p, _)| p.seller_id);
        // A seller may read the decisions on their own products.
        let allowed = claims.role == Role::Operator
            || (claims.role == Role::Seller
                && owner.as_ref().is_some_and(|o| o.as_str() == claims.sub));
        if !allowed {
            return Err(ServiceError::forbidden(
                "only an operator or the product's seller",
            ));
        }
    }
    Ok(store
        .market_decisions(&cal.row.id, product.as_ref(), page)
        .await?)
}

/// A seller (the token subject `seller`) signs the commitment on quality for a night that is
/// not over. Signing again keeps
/// the first signature: the answer is the commitment in force, and whether this call made it.
pub async fn commit(
    store: &Store,
    cal: &Calendar,
    night: &m::Night,
    seller: &str,
    statement: &str,
    signed_by: String,
    now: Millis,
) -> ServiceResult<(bool, CommitmentRow)> {
    still_open(night, now)?;
    let seller = field("sub", SellerId::parse(seller))?;
    if store.seller(&seller).await?.is_none() {
        return Err(ServiceError::not_found(format!("seller {seller}")));
    }
    let row = CommitmentRow {
        market_id: cal.row.id.clone(),
        night_date: night.date,
        seller_id: seller,
        statement: field(
            "statement",
            nightmarket_domain::ocop::paragraph("statement", statement),
        )?,
        signed_by,
        signed_at: now,
    };
    let created = store.sign_commitment(&row).await?;
    let kept = store
        .commitment(&row.market_id, row.night_date, &row.seller_id)
        .await?
        .unwrap_or(row);
    Ok((created, kept))
}

/// A page of the commitments signed for a night (of one seller, when `seller` is given).
pub async fn night_commitments(
    store: &Store,
    cal: &Calendar,
    night: Date,
    seller: Option<&SellerId>,
    page: &Keyset,
) -> ServiceResult<Paged<CommitmentRow>> {
    Ok(store
        .night_commitments(&cal.row.id, night, seller, page)
        .await?)
}

/// A page of the shows of a night by slot (of one seller, when `only` is given).
pub async fn night_shows(
    store: &Store,
    cal: &Calendar,
    night: Date,
    only: Option<&SellerId>,
    page: &Keyset,
) -> ServiceResult<Paged<ShowRow>> {
    Ok(store.night_shows(&cal.row.id, night, only, page).await?)
}

/// A stored exception as the domain applies it.
pub fn exception_of(r: &ExceptionRow) -> NightException {
    match &r.kind {
        ExceptionKind::Cancelled => NightException::Cancelled {
            date: r.night_date,
            reason: r.reason.clone(),
        },
        ExceptionKind::Moved { to } => NightException::Moved {
            date: r.night_date,
            to: *to,
            reason: r.reason.clone(),
        },
    }
}

/// The market `id` names, with its exceptions; 404 when there is none.
pub async fn calendar(store: &Store, id: &str) -> ServiceResult<Calendar> {
    let mid = MarketId::parse(id).map_err(|_| ServiceError::not_found("market"))?;
    let row = store
        .market(&mid)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("market {mid}")))?;
    let market = row.spec.clone().validate().map_err(|e| {
        // What is wrong with the stored row is for the log; the client gets the code.
        tracing::error!(market = %mid, error = %e, "stored market does not validate");
        ServiceError::new(
            ErrorCode::Internal,
            "the server hit an internal error; it is logged",
        )
    })?;
    let exceptions = store
        .exceptions(&mid)
        .await?
        .iter()
        .map(exception_of)
        .collect();
    Ok(Calendar {
        row,
        market,
        exceptions,
    })
}

/// The night of a calendar on the local date `date` (`YYYY-MM-DD`).
pub fn night_of(cal: &Calendar, date: &str) -> ServiceResult<m::Night> {
    let date = field("date", parse_date("date", date))?;
    cal.market
        .night(&cal.exceptions, date)
        .map_err(|e| ServiceError::not_found(format!("night: {e}; market night")))
}

/// Refuses changes to a night that has ended: what happened on it is history (reports and
/// settlement read it), and a show scheduled into it would close at once.
pub fn still_open(night: &m::Night, now: Millis) -> ServiceResult<()> {
    if night.ends_at <= now {
        return Err(ServiceError::new(
            ErrorCode::NightOver,
            format!(
                "the night of {} ended at {}; past nights are read-only",
                night.date, night.local_end
            ),
        ));
    }
    Ok(())
}

/// Checks a new exception against its calendar: the night it changes is not over, a night is
/// not moved into the past, and the exceptions together still make sense.
pub fn check_exception(cal: &Calendar, row: &ExceptionRow) -> ServiceResult<()> {
    if let Ok(night) = cal.market.night(&cal.exceptions, row.night_date) {
        still_open(&night, row.created_at)?;
    }
    if let ExceptionKind::Moved { to } = &row.kind
        && let Ok(at) = to.to_zoned(cal.market.time_zone().clone())
        && at.timestamp().as_millisecond() <= row.created_at
    {
        return Err(ServiceError::bad_request(
            "moved_to: a night cannot move into the past",
        ));
    }
    let mut all = cal.exceptions.clone();
    all.push(exception_of(row));
    cal.market
        .check_exceptions(&all)
        .map_err(|e| ServiceError::bad_request(e.to_string()))
}

/// The least stars a market admits; the default for a market that no longer exists.
pub async fn min_stars(store: &Store, market: &MarketId) -> ServiceResult<Stars> {
    Ok(store
        .market(market)
        .await?
        .map_or(DEFAULT_MIN_STARS, |m| m.spec.min_stars))
}

/// Every reason the lineup of a show may not go on its night, per product.
pub async fn admission_issues(
    store: &Store,
    row: &ShowRow,
    min_stars: Stars,
) -> ServiceResult<Vec<AdmissionIssue>> {
    let Some(sched) = &row.schedule else {
        return Ok(Vec::new());
    };
    let committed = store
        .commitment(&sched.market_id, sched.night_date, &row.seller_id)
        .await?
        .is_some();
    let market = store.market(&sched.market_id).await?;
    let decisions = store
        .latest_decisions(&sched.market_id, &lineup_ids(row))
        .await?;
    Ok(issues_of(
        row,
        sched,
        market.as_ref(),
        min_stars,
        committed,
        &decisions,
    ))
}

fn lineup_ids(row: &ShowRow) -> Vec<ProductId> {
    row.lineup.iter().map(|i| i.product.id.clone()).collect()
}

/// The admission rules over what the store said: the show's market, whether its seller signed
/// the night's commitment, the decision in force per product.
fn issues_of(
    row: &ShowRow,
    sched: &ShowSchedule,
    market: Option<&MarketRow>,
    min_stars: Stars,
    committed: bool,
    decisions: &HashMap<ProductId, DecisionRow>,
) -> Vec<AdmissionIssue> {
    // Documents must be valid on the local date the night actually starts.
    let night_day = local_day(market, sched);
    let mut issues = Vec::new();
    for item in &row.lineup {
        let p = &item.product;
        let decision = decisions.get(&p.id).map(|d| Decision {
            approved: d.approved,
            reason: d.reason.clone(),
            decided_by: d.decided_by.clone(),
            decided_at: d.decided_at,
        });
        let proof = ProductProof {
            stars: p.stars,
            documents: p.documents.clone(),
        };
        if let Err(refusals) =
            check_admission(&proof, min_stars, night_day, decision.as_ref(), committed)
        {
            issues.extend(refusals.iter().map(|r| issue(&p.id, r)));
        }
    }
    issues
}

fn local_day(market: Option<&MarketRow>, sched: &ShowSchedule) -> Date {
    let tz = market
        .and_then(|mk| TimeZone::get(&mk.spec.time_zone).ok())
        .unwrap_or(TimeZone::UTC);
    jiff::Timestamp::from_millisecond(sched.slot_start)
        .map(|t| t.to_zoned(tz).date())
        .unwrap_or(sched.night_date)
}

fn issue(product: &ProductId, r: &AdmissionRefusal) -> AdmissionIssue {
    AdmissionIssue {
        product_id: product.to_string(),
        reason: r.code().to_owned(),
        message: r.message(),
    }
}

/// The refusal of a lineup not admitted, with every issue in its details.
pub fn not_admitted(issues: Vec<AdmissionIssue>) -> ServiceError {
    let products: std::collections::BTreeSet<&str> =
        issues.iter().map(|i| i.product_id.as_str()).collect();
    let message = format!(
        "not admitted for this night: {}",
        products.into_iter().collect::<Vec<_>>().join(", ")
    );
    ServiceError::new(ErrorCode::NotAdmitted, message)
        .with_details(serde_json::to_value(&issues).unwrap_or_default())
}

/// How far ahead the schedule's warnings look, in ms: 31 days, the month of nights the market
/// office plans. A show further out still has time to renew its documents or sign, and the
/// bound keeps each request to a month of shows however far ahead the calendar is filled.
pub const WARNINGS_HORIZON_MS: Millis = 31 * 24 * 60 * 60 * 1000;

/// Scheduled shows that could not go live as things stand (documents expiring before the
/// night, decisions revoked, commitments missing), among those whose slot has not ended by
/// `now` and starts within [`WARNINGS_HORIZON_MS`]: the `limit` first by show id after `after`.
pub async fn warnings(
    store: &Store,
    now: Millis,
    after: Option<&str>,
    limit: usize,
) -> ServiceResult<Vec<ExpiryWarning>> {
    let shows = store
        .upcoming_shows(now, now.saturating_add(WARNINGS_HORIZON_MS))
        .await?;
    // What the rules read, fetched for all the shows at once rather than per show and product:
    // the markets and the decisions in force on every product of their shows (one read per
    // market), and the commitments signed for every night the shows are on (one read).
    let mut products: HashMap<&MarketId, Vec<ProductId>> = HashMap::new();
    let mut span: Option<(Date, Date)> = None;
    for row in &shows {
        if let Some(sched) = &row.schedule {
            products
                .entry(&sched.market_id)
                .or_default()
                .extend(lineup_ids(row));
            let d = sched.night_date;
            span = Some(span.map_or((d, d), |(lo, hi)| (lo.min(d), hi.max(d))));
        }
    }
    let mut markets = HashMap::new();
    let mut decisions = HashMap::new();
    for (market, ids) in &products {
        markets.insert(*market, store.market(market).await?);
        decisions.insert(*market, store.latest_decisions(market, ids).await?);
    }
    let signed = match span {
        Some((first, last)) => store.commitments_between(first, last).await?,
        None => Vec::new(),
    };
    let committed: HashSet<(&MarketId, Date, &SellerId)> = signed
        .iter()
        .map(|c| (&c.market_id, c.night_date, &c.seller_id))
        .collect();
    let mut out = Vec::new();
    for row in &shows {
        let Some(sched) = &row.schedule else { continue };
        if after.is_some_and(|a| row.id.as_str() <= a) {
            continue;
        }
        let Some(Some(mk)) = markets.get(&sched.market_id) else {
            continue;
        };
        let signed = committed.contains(&(&sched.market_id, sched.night_date, &row.seller_id));
        let none = HashMap::new();
        let decided = decisions.get(&sched.market_id).unwrap_or(&none);
        let issues = issues_of(row, sched, Some(mk), mk.spec.min_stars, signed, decided);
        if !issues.is_empty() {
            out.push(ExpiryWarning {
                show_id: row.id.to_string(),
                seller_id: row.seller_id.to_string(),
                market_id: sched.market_id.to_string(),
                night_date: sched.night_date.to_string(),
                issues,
            });
        }
    }
    out.sort_by(|a, b| a.show_id.cmp(&b.show_id));
    out.truncate(limit);
    Ok(out)
}

/// The lineup of a show being scheduled: given item by item, or a seller's saved lineup set.
async fn lineup_items(
    store: &Store,
    seller: &SellerId,
    lineup: Option<Vec<CreateLineupItem>>,
    lineup_set_id: Option<String>,
) -> ServiceResult<Vec<CreateLineupItem>> {
    match (lineup, lineup_set_id) {
        (Some(items), None) => Ok(items),
        (None, Some(set)) => {
            let set = store
                .lineup_set(&set)
                .await?
                .filter(|s| s.seller_id == *seller)
                .ok_or_else(|| {
                    ServiceError::not_found(format!("lineup set {set} of seller {seller}"))
                })?;
            Ok(set
                .items
                .into_iter()
                .map(|i| CreateLineupItem {
                    product_id: i.product_id.to_string(),
                    stock: i64::from(i.stock),
                    buyer_limit: i64::from(i.buyer_limit),
                })
                .collect())
        }
        _ => Err(ServiceError::bad_request(
            "lineup: give either lineup or lineup_set_id",
        )),
    }
}

/// A seller's show to put into a night, its fields parsed.
pub struct Scheduling {
    pub seller: SellerId,
    pub title: String,
    pub stream_url: String,
    pub slot: Slot,
    /// The lineup item by item, or the id of one of the seller's lineup sets.
    pub lineup: Option<Vec<CreateLineupItem>>,
    pub lineup_set_id: Option<String>,
}

/// Schedules a show into a night: the night still open, the slot inside it and clear of the
/// seller's other shows, the lineup within bounds (at most `max_lineup` products) and every
/// product admitted. Stores the show with its `show.scheduled` event; the caller loads it.
pub async fn schedule(
    store: &Store,
    cal: &Calendar,
    night: &m::Night,
    s: Scheduling,
    max_lineup: usize,
    now: Millis,
) -> ServiceResult<ShowRow> {
    still_open(night, now)?;
    let same_seller: Vec<(ShowId, Slot)> = store
        .seller_shows_all(&s.seller)
        .await?
        .into_iter()
        .filter_map(|r| {
            r.schedule.map(|sc| {
                (
                    r.id,
                    Slot {
                        starts_at: sc.slot_start,
                        ends_at: sc.slot_end,
                    },
                )
            })
        })
        .collect();
    check_slot(night, s.slot, &same_seller).map_err(|e| match e {
        SlotError::Empty { .. } => ServiceError::bad_request(format!("slot_end: {e}")),
        other => ServiceError::new(ErrorCode::SlotUnavailable, other.to_string()),
    })?;
    if s.slot.ends_at <= now {
        return Err(ServiceError::new(
            ErrorCode::SlotUnavailable,
            "slot_end: the slot has already ended",
        ));
    }
    let items = lineup_items(store, &s.seller, s.lineup, s.lineup_set_id).await?;
    let lineup: Vec<LineupRow> = build_lineup(store, max_lineup, &s.seller, items).await?;
    let row = ShowRow {
        id: field("id", ShowId::parse(new_id()))?,
        seller_id: s.seller,
        title: s.title,
        status: ShowStatus::Scheduled,
        created_at: now,
        lineup,
        schedule: Some(ShowSchedule {
            market_id: cal.row.id.clone(),
            night_date: night.date,
            slot_start: s.slot.starts_at,
            slot_end: s.slot.ends_at,
            stream_url: s.stream_url,
        }),
        live_at: None,
        closed_at: None,
    };
    let issues = admission_issues(store, &row, cal.market.min_stars()).await?;
    if !issues.is_empty() {
        return Err(not_admitted(issues));
    }
    let event = show_event(
        "show.scheduled",
        &show_body(&row, ShowStatus::Scheduled),
        now,
    );
    store.schedule_show(&row, Some(&event)).await?;
    Ok(row)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jiff::civil::{Time, date};
    use nightmarket_domain::Product;

    const DAY: Millis = 24 * 60 * 60 * 1000;
    /// 2026-11-20T00:00Z: "now" in these tests.
    const NOW: Millis = 1_795_132_800_000;

    /// A scheduled show of `seller` on `night` in `market`, its slot from `start` for an hour,
    /// with `product` (no documents, no decision: never admitted as things stand).
    fn show(
        id: &str,
        seller: &SellerId,
        market: &MarketId,
        night: Date,
        start: Millis,
        product: &Product,
    ) -> ShowRow {
        ShowRow {
            id: ShowId::parse(id).unwrap(),
            seller_id: seller.clone(),
            title: format!("Show {id}"),
            status: ShowStatus::Scheduled,
            created_at: 0,
            lineup: vec![LineupRow {
                product: product.clone(),
                stock: 5,
                buyer_limit: 1,
            }],
            schedule: Some(ShowSchedule {
                market_id: market.clone(),
                night_date: night,
                slot_start: start,
                slot_end: start + DAY / 24,
                stream_url: "https://www.facebook.com/chodemtrenmay/live".into(),
            }),
            live_at: None,
            closed_at: None,
        }
    }

    /// Warnings cover the shows not ended by now and starting within the horizon, and page by
    /// show id.
    #[tokio::test]
    async fn warnings_look_a_bounded_way_ahead_and_page_by_show_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
            .await
            .unwrap();
        let market = MarketRow {
            id: MarketId::parse("m-hanoi").unwrap(),
            spec: MarketSpec {
                name: "Chợ đêm trên mây".into(),
                weekdays: vec![jiff::civil::Weekday::Friday],
                start: Time::constant(20, 30, 0, 0),
                duration_minutes: 150,
                time_zone: "Asia/Ho_Chi_Minh".into(),
                first_date: date(2026, 11, 1),
                last_date: None,
                min_stars: DEFAULT_MIN_STARS,
            },
            created_by: "operator:ops".into(),
            created_at: 0,
        };
        store.create_market(&market).await.unwrap();
        let (seller, product) = crate::services::testing::seller_with_product(&store).await;
        let (s, m) = (&seller.id, &market.id);
        for row in [
            // Ended before now, though not closed yet.
            show("s-ended", s, m, date(2026, 11, 19), NOW - 2 * DAY, &product),
            show(
                "s-near-b",
                s,
                m,
                date(2026, 11, 27),
                NOW + 7 * DAY,
                &product,
            ),
            show(
                "s-near-a",
                s,
                m,
                date(2026, 12, 4),
                NOW + 14 * DAY,
                &product,
            ),
            // Past the horizon: not warned about yet.
            show(
                "s-far",
                s,
                m,
                date(2027, 1, 1),
                NOW + WARNINGS_HORIZON_MS + DAY,
                &product,
            ),
        ] {
            store.schedule_show(&row, None).await.unwrap();
        }
        let ids = |w: Vec<ExpiryWarning>| w.into_iter().map(|w| w.show_id).collect::<Vec<_>>();
        assert_eq!(
            ids(warnings(&store, NOW, None, 10).await.unwrap()),
            ["s-near-a", "s-near-b"]
        );
        assert_eq!(
            ids(warnings(&store, NOW, None, 1).await.unwrap()),
            ["s-near-a"]
        );
        assert_eq!(
            ids(warnings(&store, NOW, Some("s-near-a"), 10).await.unwrap()),
            ["s-near-b"]
        );
        // A commitment signed for one night is read with the others: its show still lacks
        // documents and a decision, but no longer the commitment.
        store
            .sign_commitment(&CommitmentRow {
                market_id: m.clone(),
                night_date: date(2026, 11, 27),
                seller_id: s.clone(),
                statement: "Cam kết chất lượng".into(),
                signed_by: "seller:htx-ba-vi".into(),
                signed_at: NOW,
            })
            .await
            .unwrap();
        let all = warnings(&store, NOW, None, 10).await.unwrap();
        let reasons = |show: &str| -> Vec<String> {
            all.iter()
                .filter(|w| w.show_id == show)
                .flat_map(|w| w.issues.iter().map(|i| i.reason.clone()))
                .collect()
        };
        assert!(
            !reasons("s-near-b").contains(&"commitment_missing".to_owned()),
            "{all:?}"
        );
        assert!(
            reasons("s-near-a").contains(&"commitment_missing".to_owned()),
            "{all:?}"
        );
        assert!(
            reasons("s-near-b").contains(&"not_approved".to_owned()),
            "{all:?}"
        );
    }
}
