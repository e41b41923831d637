//! The store conformance suite: every engine must pass it unchanged.
//! [`store_conformance!`](crate::store_conformance) turns each case into a test of its own,
//! on a fresh, empty store; [`run`] runs them all on one.
//!
//! Compiled only with the `testing` feature (the crate's own tests and the workspace's test
//! crates turn it on), so release binaries do not carry it.

use std::sync::Arc;

use jiff::civil::{Date, Time, Weekday, date};
use nightmarket_domain::{
    BuyerId, ClaimId, ClaimRecord, Dong, LogCursor, MarketId, MarketSpec, Product, ProductGroup,
    ProductId, RecordedEntry, SellerId, ShowId, ShowStatus, Stars,
};

use crate::page::{KeyPart, Keyset};
use crate::reports::{GroupSales, PendingReason, Programme, RefusalCount, SalesFigures};
use crate::testing::{FixtureClaim, settle_claims};
use crate::{
    CloseMarker, CommitmentRow, DecisionRow, DeliveryOutcome, ExceptionKind, ExceptionRow,
    LineupRow, LineupSetItem, LineupSetRow, MarketRow, OrderRow, Page, ProductTally, RefusalTotal,
    SellerRow, SettleOutcome, SettlePlan, ShowRow, ShowSchedule, ShowStatsBatch, Store, StoreError,
    TransitionBy, ViewerSample, WebhookEvent, WebhookRow,
};

fn fail(msg: impl Into<String>) -> StoreError {
    StoreError::Backend(format!("conformance: {}", msg.into()))
}

fn ensure(cond: bool, msg: &str) -> Result<(), StoreError> {
    if cond { Ok(()) } else { Err(fail(msg)) }
}

/// `got` is `want`, or the case fails showing both.
fn same<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), StoreError> {
    if got == want {
        Ok(())
    } else {
        Err(fail(format!("{what}: got {got:?}, expected {want:?}")))
    }
}

/// What was created reads back exactly as it was given.
fn reads_back<T: PartialEq + std::fmt::Debug>(
    got: Option<T>,
    given: &T,
    what: &str,
) -> Result<(), StoreError> {
    same(got.as_ref(), Some(given), what)
}

/// Creating what already exists is refused as a conflict.
fn conflict<T>(r: Result<T, StoreError>, what: &str) -> Result<(), StoreError> {
    ensure(matches!(r, Err(StoreError::Conflict(_))), what)
}

fn id<T>(r: Result<T, nightmarket_domain::IdError>) -> Result<T, StoreError> {
    r.map_err(|e| fail(e.to_string()))
}

const T0: i64 = 1_795_000_000_000;
const HOUR: i64 = 3_600_000;

fn seller(n: &str) -> Result<SellerRow, StoreError> {
    Ok(SellerRow {
        id: id(SellerId::parse(n))?,
        name: format!("HTX {n}"),
        kind: "cooperative".into(),
        district: "Ba Vì".into(),
        created_at: T0,
    })
}

/// Seller `n`, stored.
async fn stored_seller(c: &Store, n: &str) -> Result<SellerRow, StoreError> {
    let s = seller(n)?;
    c.create_seller(&s).await?;
    Ok(s)
}

fn product(n: &str, seller: &SellerId) -> Result<Product, StoreError> {
    Ok(Product {
        id: id(ProductId::parse(n))?,
        seller_id: seller.clone(),
        name: "Mật ong hoa nhãn".into(),
        group: ProductGroup::Food,
        stars: Stars::parse(4).map_err(|e| fail(e.to_string()))?,
        district: "Ba Vì".into(),
        commune: "Tản Lĩnh".into(),
        producer: "HTX Mật ong Ba Vì".into(),
        list_price: Dong::parse(250_000).map_err(|e| fail(e.to_string()))?,
        origin_document: "GCN-OCOP-HN-2023-0412".into(),
        quality_label: "TCCS 01:2023/MOBV".into(),
        documents: Vec::new(),
    })
}

fn scheduled(
    show: &str,
    seller: &SellerId,
    market: &MarketId,
    night: Date,
    start: i64,
    end: i64,
    lineup: Vec<LineupRow>,
) -> Result<ShowRow, StoreError> {
    Ok(ShowRow {
        id: id(ShowId::parse(show))?,
        seller_id: seller.clone(),
        title: format!("Show {show}"),
        status: ShowStatus::Scheduled,
        created_at: T0,
        lineup,
        schedule: Some(ShowSchedule {
            market_id: market.clone(),
            night_date: night,
            slot_start: start,
            slot_end: end,
            stream_url: "https://www.facebook.com/chodemtrenmay/live".into(),
        }),
        live_at: None,
        closed_at: None,
    })
}

/// Moves `show` from `from` to `to` at `at`, by a test actor and without an event; `false` when
/// the show was not at `from`.
async fn transit(
    c: &Store,
    show: &ShowId,
    from: ShowStatus,
    to: ShowStatus,
    at: i64,
) -> Result<bool, StoreError> {
    c.transition(show, from, to, at, "t", None).await
}

/// Runs every case in turn against one `store`; returns the first disagreement. The per-case
/// tests come from [`store_conformance!`](crate::store_conformance), which expands the same
/// list of cases.
pub async fn run(store: &Store) -> Result<(), StoreError> {
    crate::store_conformance!(@cases run store);
    store.ping().await
}

/// One `#[tokio::test]` per conformance case, so a failure names its case. `$fresh` is an
/// async function returning `(Store, keep)`: a fresh, empty store for each case and whatever
/// must outlive it (a temporary directory). Invoke it inside a module of its own:
///
/// ```ignore
/// mod conformance_cases {
///     nightmarket_store::store_conformance!(super::fresh_store);
/// }
/// ```
#[macro_export]
macro_rules! store_conformance {
    // The cases, in the order `run` takes them.
    (@cases $mode:ident $arg:tt) => {
        $crate::store_conformance!(@each $mode $arg
            catalog access markets scheduling seller_presence transition_reasons webhooks orders
            show_stats tally append reports paging);
    };
    (@each $mode:ident $arg:tt $($case:ident)*) => {
        $($crate::store_conformance!(@$mode $case $arg);)*
    };
    (@run $case:ident $store:ident) => {
        $crate::conformance::$case($store).await?;
    };
    (@test $case:ident $fresh:path) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (store, _keep) = $fresh().await;
            let store: $crate::Store = store;
            if let Err(e) = $crate::conformance::$case(&store).await {
                panic!("conformance case {}: {e}", stringify!($case));
            }
            if let Err(e) = store.ping().await {
                panic!("conformance case {}: the store is unwell after it: {e}", stringify!($case));
            }
        }
    };
    ($fresh:path) => {
        $crate::store_conformance!(@cases test $fresh);
    };
}

pub async fn access(c: &Store) -> Result<(), StoreError> {
    use crate::{InviteRefusal, InviteRow, SessionRow};
    let invite = |hash: &str, expires_at| InviteRow {
        code_hash: hash.into(),
        role: "seller".into(),
        subject: "htx-mat-ong-ba-vi".into(),
        name: "HTX Mật ong Ba Vì".into(),
        created_by: "office".into(),
        created_at: T0,
        expires_at,
    };
    c.create_invite(&invite("h-live", T0 + 1000)).await?;
    c.create_invite(&invite("h-old", T0 + 10)).await?;
    conflict(
        c.create_invite(&invite("h-live", T0)).await,
        "one invite per code",
    )?;
    let s = c
        .redeem_invite("h-live", "sess-1", T0 + 5, T0 + 100_000)
        .await?
        .map_err(|r| fail(format!("first redeem refused: {r:?}")))?;
    ensure(
        s.role == "seller" && s.subject == "htx-mat-ong-ba-vi" && s.name == "HTX Mật ong Ba Vì",
        "the session takes the invite's role, subject and name",
    )?;
    ensure(
        s.id == "sess-1" && s.expires_at == T0 + 100_000 && s.revoked_at.is_none(),
        "session id and end",
    )?;
    for (hash, session, at, refusal, why) in [
        (
            "h-live",
            "sess-2",
            T0 + 6,
            InviteRefusal::Used,
            "an invite is spent by its first use",
        ),
        (
            "h-old",
            "sess-3",
            T0 + 10,
            InviteRefusal::Expired,
            "an invite expires at its instant",
        ),
        (
            "h-none",
            "sess-4",
            T0,
            InviteRefusal::Unknown,
            "unknown invite",
        ),
    ] {
        let redeemed = c.redeem_invite(hash, session, at, T0 + 100_000).await?;
        same(redeemed, Err(refusal), why)?;
        ensure(
            c.session(session).await?.is_none(),
            "a refused redeem opens no session",
        )?;
    }
    let guest = SessionRow {
        id: "sess-guest".into(),
        role: "viewer".into(),
        subject: "guest-1".into(),
        name: "Lan".into(),
        created_at: T0,
        expires_at: T0 + 50,
        revoked_at: None,
    };
    c.create_session(&guest).await?;
    reads_back(
        c.session("sess-guest").await?,
        &guest,
        "guest session round trip",
    )?;
    ensure(c.revoke_session("sess-guest", T0 + 7).await?, "revoke")?;
    ensure(
        c.revoke_session("sess-guest", T0 + 9).await?,
        "revoke again",
    )?;
    ensure(
        c.session("sess-guest").await?.and_then(|s| s.revoked_at) == Some(T0 + 7),
        "revocation keeps its first instant",
    )?;
    ensure(
        !c.revoke_session("sess-none", T0).await?,
        "revoking an unknown session",
    )
}

/// Every page of a listing from the start, `limit` rows a page; `between` runs after each page
/// but the last (to write rows between two page reads).
async fn walk<T, F>(
    limit: usize,
    mut read: impl FnMut(Keyset) -> F,
    mut between: impl AsyncFnMut(usize) -> Result<(), StoreError>,
) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<crate::Paged<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut page = Keyset::first(limit);
    for n in 0.. {
        let got = read(page.clone()).await?;
        ensure(got.items.len() <= limit, "a page holds at most its limit")?;
        ensure(
            got.next.is_none() || got.items.len() == limit,
            "only the last page is short",
        )?;
        out.extend(got.items);
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
        between(n).await?;
    }
    Ok(out)
}

/// Keyset paging: pages in the listing's order, each row once, rows written between two page
/// reads neither skip nor repeat the others, the last page says so, and a position of another
/// shape is refused `bad_cursor`. Shows come with their lineups, read for a page at once.
pub async fn paging(c: &Store) -> Result<(), StoreError> {
    // Ties on created_at, so the id decides.
    let mut sellers = Vec::new();
    for n in 0..7 {
        let mut s = seller(&format!("s-{n}"))?;
        s.created_at = T0 + (n / 2);
        c.create_seller(&s).await?;
        sellers.push(s);
    }
    let names = |v: &[SellerRow]| v.iter().map(|s| s.id.to_string()).collect::<Vec<_>>();
    let all = walk(3, |p| async move { c.sellers(&p).await }, async |_| Ok(())).await?;
    ensure(
        names(&all) == names(&sellers),
        "every seller once, oldest first",
    )?;
    let exact = walk(7, |p| async move { c.sellers(&p).await }, async |_| Ok(())).await?;
    ensure(
        exact.len() == 7,
        "a page as long as the list is the last one",
    )?;

    // Rows written between the pages: one before the cursor, one after it.
    let walked = walk(
        2,
        |p| async move { c.sellers(&p).await },
        async |n| {
            if n == 0 {
                let mut early = seller("a-early")?;
                early.created_at = T0 - 1;
                c.create_seller(&early).await?;
                let mut late = seller("z-late")?;
                late.created_at = T0 + 100;
                c.create_seller(&late).await?;
            }
            Ok(())
        },
    )
    .await?;
    let mut expected = names(&sellers);
    expected.push("z-late".into());
    ensure(
        names(&walked) == expected,
        "inserts between pages skip and repeat nothing",
    )?;

    // Newest first, with lineups.
    let owner = &sellers[0].id;
    let p = product("p-paged", owner)?;
    c.create_product(&p, T0).await?;
    for n in 0..5 {
        let mut show = scheduled(
            &format!("show-{n}"),
            owner,
            &id(MarketId::parse("m-none"))?,
            date(2026, 12, 5),
            0,
            0,
            vec![LineupRow {
                product: p.clone(),
                stock: n + 1,
                buyer_limit: 1,
            }],
        )?;
        show.schedule = None;
        show.created_at = T0 + i64::from(n);
        c.create_show(&show).await?;
    }
    let shows = walk(
        2,
        |p| async move { c.seller_shows(owner, &p).await },
        async |_| Ok(()),
    )
    .await?;
    let stocks: Vec<u32> = shows.iter().map(|s| s.lineup[0].stock).collect();
    ensure(
        stocks == [5, 4, 3, 2, 1],
        "a seller's shows newest first, each with its lineup",
    )?;

    // Positions of another shape.
    for after in [
        vec![KeyPart::Text("s-1".into())],
        vec![KeyPart::Text("x".into()), KeyPart::Text("s-1".into())],
        vec![KeyPart::Int(T0), KeyPart::Int(1)],
    ] {
        let page = Keyset {
            after: Some(after),
            limit: 2,
        };
        ensure(
            matches!(
                c.sellers(&page).await,
                Err(StoreError::Refused {
                    code: crate::page::BAD_CURSOR,
                    ..
                })
            ),
            "a position of another shape is bad_cursor",
        )?;
    }
    Ok(())
}

pub async fn catalog(c: &Store) -> Result<(), StoreError> {
    let s = stored_seller(c, "htx-mat-ong-ba-vi").await?;
    reads_back(c.seller(&s.id).await?, &s, "seller round trip")?;
    ensure(
        c.sellers(&Keyset::everything()).await?.items.contains(&s),
        "the seller is listed",
    )?;
    conflict(c.create_seller(&s).await, "duplicate seller is a conflict")?;
    ensure(
        c.seller(&id(SellerId::parse("nobody"))?).await?.is_none(),
        "missing seller is None",
    )?;

    let p = product("mat-ong-hoa-nhan", &s.id)?;
    c.create_product(&p, T0 + 1).await?;
    same(
        c.product(&p.id).await?,
        Some((p.clone(), T0 + 1)),
        "product round trip keeps Vietnamese text and every OCOP field",
    )?;
    conflict(
        c.create_product(&p, 0).await,
        "duplicate product is a conflict",
    )?;
    let other = product("che-shan-tuyet", &s.id)?;
    c.create_product(&other, T0 + 3).await?;
    let missing = id(ProductId::parse("no-such-product"))?;
    let found = c
        .products(&[
            p.id.clone(),
            missing.clone(),
            other.id.clone(),
            p.id.clone(),
        ])
        .await?;
    same(
        found.len(),
        2,
        "products by id: one entry per existing product",
    )?;
    same(
        found.get(&p.id),
        Some(&(p.clone(), T0 + 1)),
        "products by id read each product as product() does",
    )?;
    same(
        found.get(&other.id),
        Some(&(other.clone(), T0 + 3)),
        "products by id read every product asked for",
    )?;
    ensure(
        !found.contains_key(&missing),
        "products by id leave out ids that name no product",
    )?;
    ensure(
        c.products(&[]).await?.is_empty(),
        "products by id of no ids is empty",
    )?;
    ensure(
        c.products_of(&s.id, &Keyset::everything())
            .await?
            .items
            .len()
            == 2,
        "products of a seller",
    )?;

    let show = ShowRow {
        id: id(ShowId::parse("show-1"))?,
        seller_id: s.id.clone(),
        title: "Chợ đêm trên mây — Mật ong Ba Vì".into(),
        status: ShowStatus::Scheduled,
        created_at: T0 + 2,
        lineup: vec![LineupRow {
            product: p.clone(),
            stock: 100,
            buyer_limit: 3,
        }],
        schedule: None,
        live_at: None,
        closed_at: None,
    };
    c.create_show(&show).await?;
    reads_back(
        c.show(&show.id).await?,
        &show,
        "show round trip with lineup",
    )?;
    conflict(c.create_show(&show).await, "duplicate show is a conflict")?;
    ensure(
        c.shows(&Keyset::everything()).await?.items.len() == 1,
        "one show listed",
    )?;

    // Compare-and-set: exactly one of two identical transitions wins. The store stamps the
    // move with the clock it was given, so a test decides when it happened.
    let clock = nightmarket_domain::ManualClock::new(T0 + 7_000);
    let clocked = c.clone().with_clock(std::sync::Arc::new(clock.clone()));
    let first = clocked
        .set_show_status(&show.id, ShowStatus::Scheduled, ShowStatus::Live)
        .await?;
    clock.advance(1_000);
    let second = clocked
        .set_show_status(&show.id, ShowStatus::Scheduled, ShowStatus::Live)
        .await?;
    ensure(first && !second, "status compare-and-set has one winner")?;
    let live = c
        .show(&show.id)
        .await?
        .ok_or_else(|| fail("show vanished"))?;
    ensure(
        live.status == ShowStatus::Live && live.live_at == Some(T0 + 7_000),
        "status and live_at persisted, live_at on the store's clock",
    )?;
    Ok(())
}

fn market_row(n: &str) -> Result<MarketRow, StoreError> {
    Ok(MarketRow {
        id: id(MarketId::parse(n))?,
        spec: MarketSpec {
            name: "Chợ phiên trên mây".into(),
            weekdays: vec![Weekday::Friday, Weekday::Saturday],
            start: Time::constant(20, 30, 0, 0),
            duration_minutes: 150,
            time_zone: "Asia/Ho_Chi_Minh".into(),
            first_date: date(2026, 11, 27),
            last_date: Some(date(2027, 6, 25)),
            min_stars: Stars::parse(3).map_err(|e| fail(e.to_string()))?,
        },
        created_by: "operator-1".into(),
        created_at: T0,
    })
}

/// Market `n`, stored.
async fn stored_market(c: &Store, n: &str) -> Result<MarketRow, StoreError> {
    let m = market_row(n)?;
    c.create_market(&m).await?;
    Ok(m)
}

pub async fn markets(c: &Store) -> Result<(), StoreError> {
    let m = stored_market(c, "cho-dem-tren-may").await?;
    reads_back(c.market(&m.id).await?, &m, "market round trip")?;
    conflict(c.create_market(&m).await, "duplicate market is a conflict")?;
    let mut open_ended = market_row("cho-cuoi-tuan")?;
    open_ended.spec.last_date = None;
    open_ended.spec.weekdays = vec![Weekday::Sunday];
    c.create_market(&open_ended).await?;
    ensure(
        c.markets(&Keyset::everything()).await?.items.len() == 2,
        "markets listed",
    )?;
    same(
        c.market(&open_ended.id).await?,
        Some(open_ended),
        "open-ended market",
    )?;

    let tet = ExceptionRow {
        market_id: m.id.clone(),
        night_date: date(2027, 2, 5),
        kind: ExceptionKind::Cancelled,
        reason: "Tết Nguyên Đán".into(),
        created_by: "operator-1".into(),
        created_at: T0,
    };
    let moved = ExceptionRow {
        market_id: m.id.clone(),
        night_date: date(2026, 12, 4),
        kind: ExceptionKind::Moved {
            to: date(2026, 12, 5).at(19, 0, 0, 0),
        },
        reason: "Sân khấu bận".into(),
        created_by: "operator-1".into(),
        created_at: T0,
    };
    c.add_exception(&tet).await?;
    c.add_exception(&moved).await?;
    conflict(c.add_exception(&tet).await, "one exception per night")?;
    ensure(
        c.exceptions(&m.id).await? == vec![moved, tet],
        "exceptions by night date",
    )?;

    let s = stored_seller(c, "htx-che-tan-cuong").await?;
    let p = product("che-tan-cuong", &s.id)?;
    c.create_product(&p, T0).await?;
    let reject = DecisionRow {
        id: "d1".into(),
        market_id: m.id.clone(),
        product_id: p.id.clone(),
        approved: false,
        reason: Some("Thiếu tem truy xuất nguồn gốc".into()),
        decided_by: "operator-1".into(),
        decided_at: T0 + 1,
    };
    let approve = DecisionRow {
        id: "d2".into(),
        approved: true,
        reason: None,
        decided_at: T0 + 2,
        decided_by: "operator-2".into(),
        ..reject.clone()
    };
    c.record_decision(&approve).await?;
    c.record_decision(&reject).await?;
    ensure(
        c.decisions(&m.id, &p.id).await? == vec![reject.clone(), approve.clone()],
        "decisions kept in order with who and when",
    )?;
    ensure(
        c.market_decisions(&m.id, None, &Keyset::everything())
            .await?
            .items
            .len()
            == 2,
        "market decisions",
    )?;
    let undecided = id(ProductId::parse("chua-xet"))?;
    let latest = c
        .latest_decisions(&m.id, &[p.id.clone(), undecided.clone()])
        .await?;
    ensure(
        latest.len() == 1 && latest.get(&p.id) == Some(&approve),
        "the decision in force per product, read for several products at once",
    )?;

    let commit = CommitmentRow {
        market_id: m.id.clone(),
        night_date: date(2026, 11, 27),
        seller_id: s.id.clone(),
        statement: "Cam kết sản phẩm đúng chất lượng đã công bố".into(),
        signed_by: s.id.to_string(),
        signed_at: T0,
    };
    ensure(
        c.sign_commitment(&commit).await?,
        "first signature recorded",
    )?;
    let again = CommitmentRow {
        signed_at: T0 + 5,
        ..commit.clone()
    };
    ensure(
        !c.sign_commitment(&again).await?,
        "second signature keeps the first",
    )?;
    reads_back(
        c.commitment(&m.id, commit.night_date, &s.id).await?,
        &commit,
        "commitment round trip",
    )?;
    ensure(
        c.commitment(&m.id, date(2026, 12, 4), &s.id)
            .await?
            .is_none(),
        "commitment is per night",
    )?;
    ensure(
        c.night_commitments(&m.id, commit.night_date, None, &Keyset::everything())
            .await?
            .items
            == vec![commit.clone()]
            && c.night_commitments(&m.id, date(2026, 12, 4), None, &Keyset::everything())
                .await?
                .items
                .is_empty(),
        "a night's commitments are listed",
    )?;
    let later = CommitmentRow {
        night_date: date(2026, 12, 4),
        signed_at: T0 + 7,
        ..commit.clone()
    };
    c.sign_commitment(&later).await?;
    same(
        c.commitments_between(date(2026, 11, 27), date(2026, 12, 4))
            .await?,
        vec![commit.clone(), later.clone()],
        "commitments of a range of nights, both ends included",
    )?;
    same(
        c.commitments_between(date(2026, 11, 28), date(2026, 12, 31))
            .await?,
        vec![later],
        "commitments of nights outside the range are left out",
    )?;

    let set = LineupSetRow {
        id: "set-1".into(),
        seller_id: s.id.clone(),
        name: "Lineup thứ Sáu quen thuộc".into(),
        items: vec![LineupSetItem {
            product_id: p.id.clone(),
            stock: 40,
            buyer_limit: 2,
        }],
        created_at: T0,
    };
    c.create_lineup_set(&set).await?;
    reads_back(c.lineup_set("set-1").await?, &set, "lineup set round trip")?;
    let same_name = LineupSetRow {
        id: "set-2".into(),
        ..set.clone()
    };
    conflict(
        c.create_lineup_set(&same_name).await,
        "lineup set names are unique per seller",
    )?;
    ensure(
        c.lineup_sets(&s.id, &Keyset::everything()).await?.items == vec![set],
        "lineup sets of a seller",
    )?;
    Ok(())
}

pub async fn scheduling(c: &Store) -> Result<(), StoreError> {
    let m = stored_market(c, "sched-market").await?;
    let a = stored_seller(c, "seller-a").await?;
    let b = stored_seller(c, "seller-b").await?;
    let pa = product("pa", &a.id)?;
    c.create_product(&pa, T0).await?;
    let night = date(2026, 11, 27);
    let start = T0 + 10 * HOUR;
    let lineup = vec![LineupRow {
        product: pa.clone(),
        stock: 10,
        buyer_limit: 2,
    }];

    let s1 = scheduled(
        "a-1",
        &a.id,
        &m.id,
        night,
        start,
        start + HOUR,
        lineup.clone(),
    )?;
    c.schedule_show(&s1, None).await?;
    reads_back(
        c.show(&s1.id).await?,
        &s1,
        "scheduled show round trip with its slot",
    )?;

    let overlapping = scheduled(
        "a-2",
        &a.id,
        &m.id,
        night,
        start + HOUR / 2,
        start + 2 * HOUR,
        vec![],
    )?;
    match c.schedule_show(&overlapping, None).await {
        Err(StoreError::Refused {
            code: "slot_overlap",
            message,
        }) => ensure(
            message.contains("a-1"),
            "overlap refusal names the other show",
        )?,
        other => return Err(fail(format!("overlapping slot of one seller: {other:?}"))),
    }
    ensure(
        c.show(&overlapping.id).await?.is_none(),
        "a refused show leaves nothing behind",
    )?;
    let touching = scheduled(
        "a-3",
        &a.id,
        &m.id,
        night,
        start + HOUR,
        start + 2 * HOUR,
        vec![],
    )?;
    c.schedule_show(&touching, None).await?;
    let other_seller = scheduled("b-1", &b.id, &m.id, night, start, start + 2 * HOUR, vec![])?;
    c.schedule_show(&other_seller, None).await?;
    let ghost = scheduled(
        "z-1",
        &id(SellerId::parse("ghost"))?,
        &m.id,
        night,
        start,
        start + 1,
        vec![],
    )?;
    ensure(
        matches!(
            c.schedule_show(&ghost, None).await,
            Err(StoreError::NotFound(_))
        ),
        "unknown seller is not found",
    )?;

    let ids = |v: Vec<ShowRow>| v.into_iter().map(|s| s.id.to_string()).collect::<Vec<_>>();
    ensure(
        ids(c
            .night_shows(&m.id, night, None, &Keyset::everything())
            .await?
            .items)
            == ["a-1", "b-1", "a-3"],
        "night shows by slot start",
    )?;
    ensure(
        ids(c
            .night_shows(&m.id, night, Some(&a.id), &Keyset::everything())
            .await?
            .items)
            == ["a-1", "a-3"],
        "one seller's shows of a night",
    )?;
    ensure(
        c.seller_shows(&a.id, &Keyset::everything())
            .await?
            .items
            .len()
            == 2,
        "seller shows",
    )?;
    ensure(
        c.upcoming_shows(0, i64::MAX).await?.len() == 3,
        "upcoming scheduled shows",
    )?;
    same(
        ids(c.upcoming_shows(start + HOUR, start + HOUR + 1).await?),
        vec!["b-1".to_owned(), "a-3".to_owned()],
        "upcoming shows leave out slots ended by now, by slot start",
    )?;
    same(
        ids(c.upcoming_shows(start - 1, start + 1).await?),
        vec!["a-1".to_owned(), "b-1".to_owned()],
        "upcoming shows leave out slots starting at or after the bound",
    )?;

    // Two nodes scheduling overlapping shows of one seller at once: exactly one succeeds.
    let store = Arc::new(c.clone());
    let mut tasks = Vec::new();
    for n in 0..4 {
        let store = store.clone();
        let s = scheduled(
            &format!("race-{n}"),
            &b.id,
            &m.id,
            night,
            start + 3 * HOUR,
            start + 4 * HOUR,
            vec![],
        )?;
        tasks.push(tokio::spawn(
            async move { store.schedule_show(&s, None).await },
        ));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.map_err(|e| fail(e.to_string()))? {
            Ok(()) => won += 1,
            Err(StoreError::Refused {
                code: "slot_overlap",
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    ensure(
        won == 1,
        "concurrent overlapping schedules: exactly one wins",
    )?;

    ensure(
        c.shows_due_live(start - 1).await?.is_empty(),
        "nothing due before the slot",
    )?;
    ensure(
        c.shows_due_live(start)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            == ["a-1", "b-1"],
        "due live at slot start",
    )?;
    ensure(
        c.shows_due_close(start + HOUR)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            == ["a-1"],
        "a scheduled show whose slot ended is due to close",
    )?;

    // Concurrent transitions: one winner.
    let mut tasks = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        let show = s1.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .transition(
                    &show,
                    ShowStatus::Scheduled,
                    ShowStatus::Live,
                    start + n,
                    format!("node-{n}").as_str(),
                    None,
                )
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.map_err(|e| fail(e.to_string()))?? {
            winners += 1;
        }
    }
    ensure(winners == 1, "concurrent transitions: exactly one winner")?;
    ensure(
        c.transition(
            &s1.id,
            ShowStatus::Live,
            ShowStatus::Closed,
            start + HOUR,
            "scheduler",
            None,
        )
        .await?,
        "live to closed",
    )?;
    let closed = c.show(&s1.id).await?.ok_or_else(|| fail("show vanished"))?;
    ensure(
        closed.status == ShowStatus::Closed && closed.closed_at == Some(start + HOUR),
        "closed_at recorded",
    )?;
    let log = c.transitions(&s1.id).await?;
    ensure(
        log.len() == 2 && log[0].to == ShowStatus::Live && log[1].actor == "scheduler",
        "transitions logged with actor",
    )?;
    ensure(
        matches!(
            c.transition(
                &s1.id,
                ShowStatus::Closed,
                ShowStatus::Scheduled,
                start,
                "x",
                None
            )
            .await,
            Err(StoreError::Refused { .. })
        ),
        "no way back to scheduled",
    )?;
    Ok(())
}

/// A live show's seller presence: it only moves forward, a show whose seller was never seen
/// counts from going live, and only live shows are ever absent.
pub async fn seller_presence(c: &Store) -> Result<(), StoreError> {
    let start = T0 + 10 * HOUR;
    let shows = shows_one_after_another(c, "presence", 3, start).await?;
    let ids = |v: Vec<ShowId>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    ensure(
        ids(c.shows_seller_absent(start + 10 * HOUR).await?).is_empty(),
        "scheduled shows are never absent",
    )?;
    for id in &shows[..2] {
        transit(c, id, ShowStatus::Scheduled, ShowStatus::Live, start).await?;
    }
    ensure(
        ids(c.shows_seller_absent(start - 1).await?).is_empty(),
        "going live counts as seen",
    )?;
    ensure(
        ids(c.shows_seller_absent(start).await?) == ["presence-1", "presence-2"],
        "never seen since going live",
    )?;
    c.seller_seen(&shows[0], start + 100).await?;
    c.seller_seen(&shows[0], start + 50).await?;
    // Several at once: the scheduled one is left alone, the live one moves forward.
    c.sellers_seen(&[shows[1].clone(), shows[2].clone()], start + 10)
        .await?;
    c.seller_seen(&shows[2], start + 100).await?;
    c.sellers_seen(&[], start + 100).await?;
    ensure(
        ids(c.shows_seller_absent(start + 99).await?) == ["presence-2"],
        "seen later than the cutoff, and never moved back",
    )?;
    ensure(
        ids(c.shows_seller_absent(start + 100).await?) == ["presence-1", "presence-2"],
        "seen at the cutoff is absent",
    )?;
    ensure(
        c.transition(
            &shows[1],
            ShowStatus::Live,
            ShowStatus::Closed,
            start + 200,
            "scheduler",
            None,
        )
        .await?,
        "closed for absence",
    )?;
    ensure(
        ids(c.shows_seller_absent(start + 10 * HOUR).await?) == ["presence-1"],
        "closed shows are never absent",
    )?;
    Ok(())
}

/// `count` scheduled shows named `<prefix>-1`, `<prefix>-2`, … of one seller, an hour each from
/// `start`, in a market of their own.
async fn shows_one_after_another(
    c: &Store,
    prefix: &str,
    count: i64,
    start: i64,
) -> Result<Vec<ShowId>, StoreError> {
    let m = stored_market(c, &format!("{prefix}-market")).await?;
    let a = stored_seller(c, &format!("{prefix}-seller")).await?;
    let p = product(&format!("{prefix}-p"), &a.id)?;
    c.create_product(&p, T0).await?;
    let mut shows = Vec::new();
    for slot in 0..count {
        let s = scheduled(
            &format!("{prefix}-{}", slot + 1),
            &a.id,
            &m.id,
            date(2026, 11, 27),
            start + slot * HOUR,
            start + (slot + 1) * HOUR,
            vec![lineup_item(&p, 5, 1)],
        )?;
        c.schedule_show(&s, None).await?;
        shows.push(s.id);
    }
    Ok(shows)
}

/// A transition's reason is written in the transition's own row, by the write that moves the
/// show: the log never shows the move without it. The loser of a race records neither, and a
/// move by an actor alone has no reason.
pub async fn transition_reasons(c: &Store) -> Result<(), StoreError> {
    use ShowStatus::{Closed, Live, Scheduled};
    let start = T0 + 20 * HOUR;
    let shows = shows_one_after_another(c, "reasons", 2, start).await?;
    let absent = TransitionBy {
        actor: "scheduler",
        reason: Some("seller_absent"),
    };
    let other = TransitionBy {
        actor: "seller",
        reason: Some("other"),
    };
    transit(c, &shows[0], Scheduled, Live, start).await?;
    ensure(
        c.transition(&shows[0], Live, Closed, start + 200, absent, None)
            .await?,
        "closed for absence",
    )?;
    ensure(
        !c.transition(&shows[0], Live, Closed, start + 300, other, None)
            .await?,
        "a second close loses",
    )?;
    ensure(
        !c.transition(&shows[1], Live, Closed, start + 300, absent, None)
            .await?,
        "a show that is not live is not closed as live",
    )?;
    ensure(
        c.transition(&shows[1], Scheduled, Closed, start + 400, "operator", None)
            .await?,
        "closed by hand",
    )?;
    let log = |rows: Vec<crate::TransitionRow>| {
        rows.into_iter()
            .map(|t| (t.from, t.to, t.actor, t.reason, t.at))
            .collect::<Vec<_>>()
    };
    same(
        log(c.transitions(&shows[0]).await?),
        vec![
            (Scheduled, Live, "t".to_owned(), None, start),
            (
                Live,
                Closed,
                "scheduler".to_owned(),
                Some("seller_absent".to_owned()),
                start + 200,
            ),
        ],
        "the close and its reason in one row; nothing of the loser's",
    )?;
    same(
        log(c.transitions(&shows[1]).await?),
        vec![(Scheduled, Closed, "operator".to_owned(), None, start + 400)],
        "an actor alone records no reason",
    )?;
    Ok(())
}

pub async fn webhooks(c: &Store) -> Result<(), StoreError> {
    let hook = |n: &str, events: &[&str], active: bool| WebhookRow {
        id: n.into(),
        url: format!("http://127.0.0.1:9/{n}"),
        secret: format!("secret-{n}"),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        active,
        created_by: "operator-1".into(),
        created_at: T0,
    };
    let live_only = hook("w-live", &["show.live"], true);
    let all = hook("w-all", &["*"], true);
    let closed_only = hook("w-closed", &["show.closed", "show.settled"], true);
    let off = hook("w-off", &["*"], false);
    for w in [&live_only, &all, &closed_only, &off] {
        c.create_webhook(w).await?;
    }
    reads_back(c.webhook("w-live").await?, &live_only, "webhook round trip")?;
    ensure(
        c.webhooks(&Keyset::everything()).await?.items.len() == 4,
        "webhooks listed",
    )?;

    let m = stored_market(c, "hook-market").await?;
    let s = stored_seller(c, "hook-seller").await?;
    let show = scheduled(
        "hook-show",
        &s.id,
        &m.id,
        date(2026, 11, 27),
        T0,
        T0 + HOUR,
        vec![],
    )?;
    let scheduled_ev = WebhookEvent {
        id: "show.scheduled:hook-show".into(),
        name: "show.scheduled".into(),
        payload: r#"{"type":"show.scheduled"}"#.into(),
        at: T0,
    };
    c.schedule_show(&show, Some(&scheduled_ev)).await?;
    let live_ev = WebhookEvent {
        id: "show.live:hook-show".into(),
        name: "show.live".into(),
        payload: r#"{"type":"show.live","show":"hook-show"}"#.into(),
        at: T0 + 1,
    };
    ensure(
        c.transition(
            &show.id,
            ShowStatus::Scheduled,
            ShowStatus::Live,
            T0 + 1,
            "scheduler",
            Some(&live_ev),
        )
        .await?,
        "transition with event",
    )?;
    // The loser of a race enqueues nothing; re-enqueueing the same event adds nothing.
    ensure(
        !c.transition(
            &show.id,
            ShowStatus::Scheduled,
            ShowStatus::Live,
            T0 + 1,
            "other",
            Some(&live_ev),
        )
        .await?,
        "second transition loses",
    )?;
    c.enqueue_event(&live_ev).await?;

    let log = c.deliveries(None, 100).await?;
    let mut got: Vec<(String, String)> = log
        .iter()
        .map(|d| (d.event.clone(), d.webhook_id.clone()))
        .collect();
    got.sort();
    ensure(
        got == [
            ("show.live".to_owned(), "w-all".to_owned()),
            ("show.live".to_owned(), "w-live".to_owned()),
            ("show.scheduled".to_owned(), "w-all".to_owned()),
        ],
        "deliveries enqueued once per subscribed active webhook",
    )?;

    // Leases: a due delivery goes to one caller at a time.
    let leased = c.lease_deliveries(T0 + 10, 100_000, 10).await?;
    ensure(leased.len() == 3, "all three due deliveries leased")?;
    ensure(
        leased.iter().all(|(d, w)| {
            d.attempts == 1 && d.webhook_id == w.id && w.secret.starts_with("secret-")
        }),
        "lease counts the attempt and carries the webhook",
    )?;
    ensure(
        c.lease_deliveries(T0 + 20, 100_000, 10).await?.is_empty(),
        "leased deliveries are not leased twice",
    )?;
    let (first, _) = &leased[0];
    c.record_attempt(
        &first.id,
        &DeliveryOutcome::Retry {
            status: Some(503),
            error: "503 Service Unavailable".into(),
            next_at: T0 + 60_000,
        },
    )
    .await?;
    ensure(
        c.lease_deliveries(T0 + 59_999, 30_000, 10)
            .await?
            .is_empty(),
        "retry waits for its time",
    )?;
    let again = c.lease_deliveries(T0 + 60_000, 30_000, 10).await?;
    ensure(
        again.len() == 1 && again[0].0.attempts == 2,
        "retried delivery leased again",
    )?;
    c.record_attempt(
        &first.id,
        &DeliveryOutcome::Delivered {
            status: 200,
            at: T0 + 60_001,
        },
    )
    .await?;
    c.record_attempt(
        &leased[1].0.id,
        &DeliveryOutcome::Failed {
            status: Some(410),
            error: "410 Gone".into(),
        },
    )
    .await?;
    // The third delivery's lease expires (its node died): due again after the lease.
    let expired = c.lease_deliveries(T0 + 10 + 100_000, 30_000, 10).await?;
    ensure(
        expired.len() == 1 && expired[0].0.id == leased[2].0.id,
        "an expired lease makes the delivery due again",
    )?;

    let log = c.deliveries(None, 100).await?;
    let state = |id: &str| {
        log.iter()
            .find(|d| d.id == id)
            .map(|d| (d.state.clone(), d.last_status))
    };
    ensure(
        state(&first.id) == Some(("delivered".into(), Some(200))),
        "delivered recorded",
    )?;
    ensure(
        state(&leased[1].0.id) == Some(("failed".into(), Some(410))),
        "failure recorded",
    )?;
    ensure(
        !c.redeliver("another-webhook", &leased[1].0.id, T0 + 90_000)
            .await?,
        "a delivery is redelivered only through its own webhook",
    )?;
    ensure(
        c.redeliver(&leased[1].0.webhook_id, &leased[1].0.id, T0 + 90_000)
            .await?,
        "manual redelivery",
    )?;
    ensure(
        c.lease_deliveries(T0 + 90_000, 1, 10)
            .await?
            .iter()
            .any(|(d, _)| d.id == leased[1].0.id),
        "redelivered is due",
    )?;
    ensure(
        c.deliveries(Some("w-live"), 10).await?.len() == 1,
        "log per webhook",
    )?;
    ensure(
        c.set_webhook_active("w-live", false).await? && !c.set_webhook_active("nope", true).await?,
        "toggle",
    )?;
    Ok(())
}

fn claim(n: &str, buyer: &str, product: &str, quantity: u32, price: i64) -> FixtureClaim {
    FixtureClaim {
        claim_id: n.into(),
        buyer: buyer.into(),
        product: product.into(),
        quantity,
        unit_price: price,
        flash: false,
        cancelled: false,
    }
}

fn refused_with(r: &Result<impl std::fmt::Debug, StoreError>, want: &str) -> bool {
    matches!(r, Err(StoreError::Refused { code, .. }) if *code == want)
}

/// `r` is the refusal `want`, or the case fails showing what it was instead.
fn refused(
    r: &Result<impl std::fmt::Debug, StoreError>,
    want: &str,
    what: &str,
) -> Result<(), StoreError> {
    if refused_with(r, want) {
        Ok(())
    } else {
        Err(fail(format!("{what}: got {r:?}, expected refusal {want}")))
    }
}

pub async fn orders(c: &Store) -> Result<(), StoreError> {
    use crate::orders::{DEADLINE_ACTOR, DEADLINE_REASON, refusal};
    use nightmarket_domain::{BuyerId, OrderActor as A, OrderStatus as S};
    const WINDOW: i64 = 24 * HOUR;
    let at = T0 + 100 * HOUR;

    let m = stored_market(c, "ord-market").await?;
    let (a, b) = (seller("ord-seller-a")?, seller("ord-seller-b")?);
    c.create_seller(&a).await?;
    c.create_seller(&b).await?;
    let mut honey = product("ord-honey", &a.id)?;
    // Names reach CSV exports and JSON as given.
    honey.name = "Mật ong \"Ba Vì\", hoa nhãn".into();
    let tea = product("ord-tea", &b.id)?;
    c.create_product(&honey, T0).await?;
    c.create_product(&tea, T0).await?;
    let line = |p: &Product| LineupRow {
        product: p.clone(),
        stock: 20,
        buyer_limit: 5,
    };
    let night = date(2026, 12, 4);
    let show_a = scheduled(
        "ord-show-a",
        &a.id,
        &m.id,
        night,
        T0 + 90 * HOUR,
        T0 + 91 * HOUR,
        vec![line(&honey)],
    )?;
    let show_b = scheduled(
        "ord-show-b",
        &b.id,
        &m.id,
        night,
        T0 + 90 * HOUR,
        T0 + 91 * HOUR,
        vec![line(&tea)],
    )?;
    let show_c = ShowRow {
        schedule: None,
        ..scheduled("ord-show-c", &a.id, &m.id, night, 0, 0, vec![line(&honey)])?
    };
    c.schedule_show(&show_a, None).await?;
    c.schedule_show(&show_b, None).await?;
    c.create_show(&show_c).await?;

    let flash = FixtureClaim {
        flash: true,
        ..claim("a1", "b1", "ord-honey", 2, 200_000)
    };
    let withdrawn = FixtureClaim {
        cancelled: true,
        ..claim("a4", "b2", "ord-honey", 1, 250_000)
    };
    let settle = |show: &ShowRow, claims: Vec<FixtureClaim>, at: i64| {
        let show = show.clone();
        async move { settle_claims(c, &show, &claims, WINDOW, "settler-1", at).await }
    };
    settle(
        &show_a,
        vec![
            flash,
            claim("a2", "b1", "ord-honey", 1, 250_000),
            claim("a3", "b2", "ord-honey", 1, 250_000),
            withdrawn,
        ],
        at,
    )
    .await?;
    settle(&show_b, vec![claim("b1", "b1", "ord-tea", 1, 120_000)], at).await?;
    let (oa1, oa2, ob1) = ("o~ord-show-a~b1", "o~ord-show-a~b2", "o~ord-show-b~b1");
    let checkout1 = "c~ord-market~2026-12-04~b1";

    // One order with its lines, names, proof and first status.
    let d = c
        .order(oa1)
        .await?
        .ok_or_else(|| fail("settled order found"))?;
    ensure(
        d.order.total == 650_000 && d.order.list_total == 750_000 && d.order.units == 3,
        "order totals at accepted and at list prices",
    )?;
    ensure(
        d.order.checkout_id == checkout1 && d.order.pay_by == at + WINDOW,
        "order checkout and deadline",
    )?;
    ensure(d.lines.len() == 2, "one line per product and price")?;
    ensure(
        d.lines[0].line.unit_price == 200_000
            && d.lines[0].line.flash
            && d.lines[0].line.quantity == 2,
        "flash line first (lower price)",
    )?;
    ensure(
        d.lines.iter().all(|l| l.name == honey.name)
            && d.lines.iter().all(|l| l.proof.as_ref() == Some(&honey)),
        "lines carry the product's name and admitted proof",
    )?;
    ensure(
        d.history.len() == 1
            && d.history[0].seq == 0
            && d.history[0].from.is_none()
            && d.history[0].to == S::PendingPayment
            && d.history[0].actor == "settler-1",
        "settlement records the first status",
    )?;
    ensure(c.order("o~nope~b1").await?.is_none(), "unknown order")?;

    // Listings: a buyer's orders and checkouts, a seller's per show and per night.
    let b1 = id(BuyerId::parse("b1"))?;
    let all = Page {
        after: None,
        limit: 100,
    };
    let ids = |v: &[OrderRow]| v.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    ensure(
        ids(&c.buyer_orders(&b1, &all).await?) == [oa1, ob1],
        "buyer's orders by id",
    )?;
    let first = c
        .buyer_orders(
            &b1,
            &Page {
                after: None,
                limit: 1,
            },
        )
        .await?;
    let next = c
        .buyer_orders(
            &b1,
            &Page {
                after: Some(oa1),
                limit: 1,
            },
        )
        .await?;
    ensure(
        ids(&first) == [oa1] && ids(&next) == [ob1],
        "buyer's orders page by id",
    )?;
    let co = c.buyer_checkouts(&b1, &all).await?;
    ensure(co.len() == 1, "one checkout per night")?;
    let co = &co[0];
    ensure(
        co.id == checkout1
            && co.market_id.as_deref() == Some("ord-market")
            && co.night_date.as_deref() == Some("2026-12-04")
            && ids(&co.orders) == [oa1, ob1],
        "the night's checkout holds both sellers' orders",
    )?;
    ensure(
        co.total == 770_000 && co.due == 770_000 && co.units == 4 && co.list_total == 1_000_000,
        "checkout sums its orders",
    )?;
    ensure(
        c.checkout(checkout1).await?.as_ref() == Some(co) && c.checkout("c~nope").await?.is_none(),
        "checkout by id",
    )?;
    ensure(
        ids(&c
            .seller_orders_for_show(Some(&a.id), &show_a.id, &all)
            .await?)
            == [oa1, oa2],
        "seller's orders of its show",
    )?;
    ensure(
        c.seller_orders_for_show(Some(&b.id), &show_a.id, &all)
            .await?
            .is_empty(),
        "another seller sees none of that show",
    )?;
    ensure(
        ids(&c
            .seller_orders_for_night(Some(&b.id), "ord-market", "2026-12-04", &all)
            .await?)
            == [ob1],
        "seller's orders of the night",
    )?;
    ensure(
        c.seller_orders_for_night(None, "ord-market", "2026-12-04", &all)
            .await?
            .len()
            == 3,
        "every order of the night",
    )?;
    let lines = c.order_lines(&[oa1.to_owned(), oa2.to_owned()]).await?;
    ensure(
        lines.len() == 3
            && lines
                .iter()
                .all(|l| l.proof.is_none() && l.name == honey.name),
        "lines of several orders with names",
    )?;

    // The status path: role guards, compare-and-set, history.
    let move_oa1 = |from, to, actor: &'static str, role| {
        c.set_order_status(oa1, from, to, actor, role, None, at)
    };
    let r = move_oa1(S::PendingPayment, S::Paid, "viewer:b1", A::Buyer).await;
    refused(&r, refusal::FORBIDDEN, "a buyer cannot mark paid")?;
    let r = move_oa1(S::PendingPayment, S::Shipped, "seller:a", A::Seller).await;
    refused(&r, refusal::BAD_TRANSITION, "no shipping before payment")?;
    let r = move_oa1(S::Paid, S::Shipped, "seller:a", A::Seller).await;
    refused(&r, refusal::MOVED, "from a status it is not at")?;
    let r = c
        .set_order_status(
            "o~nope~b1",
            S::PendingPayment,
            S::Cancelled,
            "x",
            A::Buyer,
            None,
            at,
        )
        .await;
    ensure(matches!(r, Err(StoreError::NotFound(_))), "unknown order")?;

    // Payment of the night's checkout, at once; a wrong amount changes nothing.
    let r = c
        .pay_checkout(checkout1, Some(1), "operator:desk", at + 1)
        .await;
    refused(&r, refusal::AMOUNT_MISMATCH, "amount checked")?;
    ensure(
        c.order_row(oa1)
            .await?
            .is_some_and(|o| o.status == S::PendingPayment && o.version == 0),
        "a refused payment changes nothing",
    )?;
    let paid = c
        .pay_checkout(checkout1, Some(770_000), "operator:desk", at + 2)
        .await?;
    ensure(
        ids(&paid).len() == 2 && paid.iter().all(|o| o.status == S::Paid && o.version == 1),
        "every pending order of the checkout paid",
    )?;
    ensure(
        refused_with(
            &c.pay_checkout(checkout1, None, "operator:desk", at + 3)
                .await,
            refusal::BAD_TRANSITION,
        ),
        "nothing left to pay",
    )?;
    ensure(
        matches!(
            c.pay_checkout("c~nope", None, "operator:desk", at).await,
            Err(StoreError::NotFound(_))
        ),
        "unknown checkout",
    )?;
    ensure(
        c.checkout(checkout1)
            .await?
            .is_some_and(|k| k.due == 0 && k.total == 770_000),
        "paid checkout owes nothing",
    )?;
    let shipped = c
        .set_order_status(
            oa1,
            S::Paid,
            S::Shipped,
            "seller:ord-seller-a",
            A::Seller,
            None,
            at + 4,
        )
        .await?;
    ensure(
        shipped.status == S::Shipped && shipped.version == 2 && shipped.updated_at == at + 4,
        "shipped",
    )?;
    c.set_order_status(
        oa1,
        S::Shipped,
        S::Delivered,
        "seller:ord-seller-a",
        A::Seller,
        None,
        at + 5,
    )
    .await?;
    let h = c.order(oa1).await?.ok_or_else(|| fail("order"))?.history;
    let path: Vec<_> = h
        .iter()
        .map(|s| (s.seq, s.from, s.to, s.actor.as_str()))
        .collect();
    ensure(
        path == [
            (0, None, S::PendingPayment, "settler-1"),
            (1, Some(S::PendingPayment), S::Paid, "operator:desk"),
            (2, Some(S::Paid), S::Shipped, "seller:ord-seller-a"),
            (3, Some(S::Shipped), S::Delivered, "seller:ord-seller-a"),
        ],
        "history of every move",
    )?;
    let cancelled = c
        .set_order_status(
            oa2,
            S::PendingPayment,
            S::Cancelled,
            "viewer:b2",
            A::Buyer,
            Some("đổi ý"),
            at + 6,
        )
        .await?;
    ensure(cancelled.status == S::Cancelled, "buyer cancels unpaid")?;
    let b2 = id(BuyerId::parse("b2"))?;
    let co2 = c.buyer_checkouts(&b2, &all).await?;
    ensure(
        co2.len() == 1 && co2[0].total == 0 && co2[0].due == 0 && co2[0].orders.len() == 1,
        "a cancelled order counts for nothing",
    )?;
    ensure(
        c.order(oa2)
            .await?
            .is_some_and(|d| d.history.last().and_then(|s| s.reason.as_deref()) == Some("đổi ý")),
        "the reason is kept",
    )?;

    // Two moves of one order at once: exactly one wins.
    let (x, y) = tokio::join!(
        c.set_order_status(
            ob1,
            S::Paid,
            S::Cancelled,
            "operator:o",
            A::Operator,
            Some("refund"),
            at + 7
        ),
        c.set_order_status(
            ob1,
            S::Paid,
            S::Shipped,
            "seller:ord-seller-b",
            A::Seller,
            None,
            at + 7
        ),
    );
    ensure(
        x.is_ok() != y.is_ok()
            && (refused_with(&x, refusal::MOVED) || refused_with(&y, refusal::MOVED)),
        "concurrent moves: one wins, the other is told the order moved",
    )?;
    ensure(
        c.order(ob1)
            .await?
            .is_some_and(|d| d.history.len() == 3 && d.order.version == 2),
        "one history row per move",
    )?;

    // The payment deadline: orders of show C, unpaid, settled later.
    let later = at + 10 * HOUR;
    settle(
        &show_c,
        (1..=5)
            .map(|n| {
                claim(
                    &format!("c{n}"),
                    &format!("late{n}"),
                    "ord-honey",
                    1,
                    250_000,
                )
            })
            .collect(),
        later,
    )
    .await?;
    let c_checkout = "c~ord-show-c~late1";
    ensure(
        c.checkout(c_checkout).await?.is_some_and(|k| {
            k.show_id.as_deref() == Some("ord-show-c")
                && k.market_id.is_none()
                && k.orders.len() == 1
        }),
        "an ad-hoc show's checkout",
    )?;
    c.pay_checkout(c_checkout, None, "operator:desk", later + 1)
        .await?;
    ensure(
        c.cancel_unpaid(later + WINDOW - 1, 10).await?.is_empty(),
        "nothing cancelled before the deadline",
    )?;
    let now = later + WINDOW;
    let batch = c.cancel_unpaid(now, 2).await?;
    ensure(
        batch.len() == 2
            && batch
                .iter()
                .all(|o| o.status == S::Cancelled && o.updated_at == now),
        "a bounded batch cancelled",
    )?;
    // Several nodes sweep at once: each order is cancelled once.
    let (x, y, z) = tokio::join!(
        c.cancel_unpaid(now, 10),
        c.cancel_unpaid(now, 10),
        c.cancel_unpaid(now, 10)
    );
    let mut swept: Vec<String> = [x?, y?, z?].concat().iter().map(|o| o.id.clone()).collect();
    swept.extend(ids(&batch));
    swept.sort();
    ensure(
        swept
            == [
                "o~ord-show-c~late2",
                "o~ord-show-c~late3",
                "o~ord-show-c~late4",
                "o~ord-show-c~late5",
            ],
        "every unpaid order past its deadline cancelled exactly once",
    )?;
    ensure(c.cancel_unpaid(now, 10).await?.is_empty(), "nothing left")?;
    let d = c
        .order("o~ord-show-c~late3")
        .await?
        .ok_or_else(|| fail("order"))?;
    ensure(
        d.history.len() == 2
            && d.history[1].actor == DEADLINE_ACTOR
            && d.history[1].reason.as_deref() == Some(DEADLINE_REASON)
            && d.history[1].at == now,
        "the deadline's cancellation recorded",
    )?;
    ensure(
        c.order_row("o~ord-show-c~late1")
            .await?
            .is_some_and(|o| o.status == S::Paid)
            && c.order_row(oa1)
                .await?
                .is_some_and(|o| o.status == S::Delivered),
        "paid orders are left alone",
    )?;
    Ok(())
}

pub async fn show_stats(c: &Store) -> Result<(), StoreError> {
    let show = id(ShowId::parse("stats-show"))?;
    let other = id(ShowId::parse("stats-other"))?;
    let refused = |show: &ShowId, reason: &str, count: u64| RefusalTotal {
        show: show.clone(),
        reason: reason.into(),
        count,
    };
    let seen = |show: &ShowId, minute: i64, viewers: u64| ViewerSample {
        show: show.clone(),
        minute,
        viewers,
    };
    let refusals = |v: &[(&ShowId, &str, u64)]| ShowStatsBatch {
        refusals: v.iter().map(|(s, r, n)| refused(s, r, *n)).collect(),
        viewers: Vec::new(),
    };
    let viewers = |v: &[(&ShowId, i64, u64)]| ShowStatsBatch {
        refusals: Vec::new(),
        viewers: v.iter().map(|(s, m, n)| seen(s, *m, *n)).collect(),
    };
    let totals = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(r, n)| ((*r).to_owned(), *n))
            .collect::<Vec<_>>()
    };

    ensure(
        c.show_refusals(&show).await?.is_empty() && c.show_peak_viewers(&show).await? == 0,
        "a show without statistics: no refusals, no viewers",
    )?;
    c.record_show_stats("node-a", &ShowStatsBatch::default())
        .await?;

    // Nodes report running totals; after each round, the show's refusals.
    let rounds = [
        // Two nodes' totals add up, per reason, ordered by reason.
        (
            vec![
                (
                    "node-a",
                    refusals(&[
                        (&show, "stale_price", 1),
                        (&show, "sold_out", 3),
                        (&other, "sold_out", 50),
                    ]),
                ),
                (
                    "node-b",
                    refusals(&[(&show, "sold_out", 2), (&show, "limit_exceeded", 4)]),
                ),
            ],
            [("limit_exceeded", 4), ("sold_out", 5), ("stale_price", 1)],
            "refusals summed over nodes, ordered by reason, other shows apart",
        ),
        // A re-sent batch, and an older total arriving late, change nothing.
        (
            vec![
                ("node-a", refusals(&[(&show, "sold_out", 3)])),
                (
                    "node-b",
                    refusals(&[(&show, "sold_out", 1), (&show, "limit_exceeded", 4)]),
                ),
            ],
            [("limit_exceeded", 4), ("sold_out", 5), ("stale_price", 1)],
            "re-sent and late totals keep the larger value",
        ),
        // A larger one counts.
        (
            vec![("node-a", refusals(&[(&show, "sold_out", 7)]))],
            [("limit_exceeded", 4), ("sold_out", 9), ("stale_price", 1)],
            "a grown total replaces the node's earlier one",
        ),
    ];
    for (reports, want, why) in rounds {
        record_all(c, reports).await?;
        same(c.show_refusals(&show).await?, totals(&want), why)?;
    }
    same(
        c.show_refusals(&other).await?,
        totals(&[("sold_out", 50)]),
        "the other show's refusals",
    )?;

    // Viewers: nodes add up within a minute; different minutes do not add. After each round,
    // the show's peak.
    const MINUTE: i64 = 29_916_666;
    let rounds = [
        (
            vec![
                (
                    "node-a",
                    viewers(&[(&show, MINUTE, 10), (&show, MINUTE + 1, 4)]),
                ),
                ("node-b", viewers(&[(&show, MINUTE + 2, 12)])),
            ],
            12,
            "peaks of different minutes do not add up",
        ),
        (
            vec![(
                "node-b",
                viewers(&[(&show, MINUTE, 7), (&other, MINUTE, 1_000)]),
            )],
            17,
            "nodes' viewers in the same minute add up",
        ),
        // Lower figures for a minute already recorded (a re-send, or an earlier sample of the
        // minute arriving late) keep the most seen.
        (
            vec![(
                "node-a",
                viewers(&[(&show, MINUTE, 3), (&show, MINUTE, 10)]),
            )],
            17,
            "a lower figure for a recorded minute changes nothing",
        ),
    ];
    for (reports, want, why) in rounds {
        record_all(c, reports).await?;
        same(c.show_peak_viewers(&show).await?, want, why)?;
    }
    c.record_show_stats(
        "node-a",
        &ShowStatsBatch {
            refusals: vec![refused(&show, "not_pinned", 2)],
            viewers: vec![seen(&show, MINUTE + 2, 9)],
        },
    )
    .await?;
    ensure(
        c.show_peak_viewers(&show).await? == 21
            && c.show_refusals(&show).await?
                == totals(&[
                    ("limit_exceeded", 4),
                    ("not_pinned", 2),
                    ("sold_out", 9),
                    ("stale_price", 1),
                ]),
        "one batch carries refusals and viewers together",
    )?;
    ensure(
        c.show_peak_viewers(&other).await? == 1_000,
        "the other show's peak",
    )?;
    ensure(
        c.show_recent_viewers(&show, MINUTE).await? == 21
            && c.show_recent_viewers(&show, MINUTE + 3).await? == 0
            && c.show_recent_viewers(&other, MINUTE).await? == 1_000,
        "viewers now: the newest minute reported, over nodes; none once nobody reports",
    )?;

    // Several batches in one write, each batch's refusals under its own id and its viewers
    // under the node's: node-c's 5 join the 21 already seen in that minute.
    let sold_out = |v: Vec<(String, u64)>| {
        v.into_iter()
            .find(|(r, _)| r == "sold_out")
            .map_or(0, |(_, n)| n)
    };
    let other_before = sold_out(c.show_refusals(&other).await?);
    let both = ShowStatsBatch {
        refusals: vec![refused(&show, "sold_out", 1)],
        viewers: vec![seen(&show, MINUTE + 2, 5)],
    };
    let elsewhere = refusals(&[(&other, "sold_out", 7)]);
    c.record_show_stats_of(&[
        ("proc/1", "node-c", &both),
        ("proc/2", "node-c", &elsewhere),
    ])
    .await?;
    ensure(
        sold_out(c.show_refusals(&show).await?) == 10
            && sold_out(c.show_refusals(&other).await?) == other_before + 7
            && c.show_recent_viewers(&show, MINUTE + 2).await? == 26,
        "batches written together count as written apart",
    )?;
    Ok(())
}

/// Records each node's batch, in turn.
async fn record_all(c: &Store, reports: Vec<(&str, ShowStatsBatch)>) -> Result<(), StoreError> {
    for (node, batch) in reports {
        c.record_show_stats(node, &batch).await?;
    }
    Ok(())
}

// --- reconciliation figures ------------------------------------------------------------------

/// The figures reconciliation checks, from a log holding every kind of disagreement.
pub async fn tally(c: &Store) -> Result<(), StoreError> {
    let s = seller("tally-seller")?;
    let (honey, jam, tea) = (
        product("tally-honey", &s.id)?,
        product("tally-jam", &s.id)?,
        product("tally-tea", &s.id)?,
    );
    let show = id(ShowId::parse("tally-show"))?;
    let log = vec![
        entry(0, false, "k1", "b1", &honey, 2, 200_000, Some(1))?,
        entry(1, false, "k2", "b1", &honey, 3, 250_000, None)?,
        entry(2, false, "k3", "b2", &tea, 1, 120_000, None)?,
        // Matches k1.
        entry(3, true, "k1", "b1", &honey, 2, 200_000, Some(1))?,
        // Unmatched: k3 was accepted at another price.
        entry(4, true, "k3", "b2", &tea, 1, 130_000, None)?,
        // Unmatched: k2 was not a flash claim.
        entry(5, true, "k2", "b1", &honey, 3, 250_000, Some(7))?,
        // Unmatched: k9 is claimed only later.
        entry(6, true, "k9", "b3", &tea, 1, 120_000, None)?,
        entry(7, false, "k4", "b3", &tea, 4, 120_000, None)?,
        entry(8, true, "k4", "b3", &tea, 4, 120_000, None)?,
        // Matches k4 too, but cancels it a second time.
        entry(9, true, "k4", "b3", &tea, 4, 120_000, None)?,
        // Above the limit of 5.
        entry(10, false, "k5", "b2", &honey, 6, 250_000, None)?,
        // A product without a limit: any holding is above it.
        entry(11, false, "k6", "b4", &jam, 1, 90_000, None)?,
        entry(12, false, "k9", "b3", &tea, 1, 120_000, None)?,
    ];
    let to = LogCursor {
        next_pos: log.len() as u64,
        token: "t".into(),
    };
    ensure(
        c.record_claim_log(&show, &LogCursor::default(), &log, &to, None, T0)
            .await?,
        "tally log recorded",
    )?;
    let t = c
        .log_tally(&show, &[(honey.id.clone(), 5), (tea.id.clone(), 5)])
        .await?;
    ensure(
        t.entries == 13 && t.max_pos == Some(12),
        "entries and highest position",
    )?;
    let live = c.live_sales(&show, T0 + 7).await?;
    ensure(
        live.entries == 13
            && live.claims_since == 4
            && live.gmv
                == [
                    ("tally-honey".to_owned(), 1_500_000),
                    ("tally-jam".to_owned(), 90_000),
                    ("tally-tea".to_owned(), -490_000),
                ],
        "live sales: value held per product net of the cancellations that repeat claims",
    )?;
    let per = |p: &ProductTally| (p.claims, p.claimed_units, p.cancels, p.cancelled_units);
    let products: Vec<_> = t
        .products
        .iter()
        .map(|p| (p.product_id.as_str(), per(p)))
        .collect();
    ensure(
        products
            == [
                ("tally-honey", (3, 11, 2, 5)),
                ("tally-jam", (1, 1, 0, 0)),
                ("tally-tea", (3, 6, 4, 10)),
            ],
        "claims and cancellations per product",
    )?;
    let over: Vec<_> = t
        .over_limit
        .iter()
        .map(|(b, p, u)| (b.as_str(), p.as_str(), *u))
        .collect();
    ensure(
        over == [("b2", "tally-honey", 6), ("b4", "tally-jam", 1)],
        "holdings above the limit, net of cancellations",
    )?;
    ensure(
        t.unmatched_cancels == 3,
        "cancellations unmatched by price, flash or order",
    )?;
    ensure(t.double_cancels == 1, "a claim cancelled twice")?;
    let none = c.log_tally(&id(ShowId::parse("tally-empty"))?, &[]).await?;
    ensure(
        none == crate::LogTally::default(),
        "a show without a recorded log",
    )?;
    Ok(())
}

// --- reports ----------------------------------------------------------------------------------

fn lineup_item(p: &Product, stock: u32, buyer_limit: u32) -> LineupRow {
    LineupRow {
        product: p.clone(),
        stock,
        buyer_limit,
    }
}

/// A claim (`cancel` false) or the cancellation of claim `claim` with the same terms.
#[allow(clippy::too_many_arguments)]
fn entry(
    pos: u64,
    cancel: bool,
    claim: &str,
    buyer: &str,
    product: &Product,
    quantity: u32,
    price: i64,
    flash: Option<u64>,
) -> Result<RecordedEntry, StoreError> {
    // The store records the entry's instant only, not the claim's own.
    let at = T0 + pos as i64;
    Ok(RecordedEntry {
        pos,
        cancel,
        at,
        record: ClaimRecord {
            claim_id: id(ClaimId::parse(claim))?,
            buyer: id(BuyerId::parse(buyer))?,
            product_id: product.id.clone(),
            quantity,
            unit_price: Dong::parse(price).map_err(|e| fail(e.to_string()))?,
            flash_id: flash,
            at,
            cancelled_at: None,
        },
    })
}

/// Bulk appends (binary COPY on PostgreSQL, prepared inserts on SQLite) store exactly the
/// values given, NULLs and non-ASCII text included, and are all or nothing with the rest of
/// their transaction.
pub async fn append(c: &Store) -> Result<(), StoreError> {
    use crate::settlement::LOG_COLUMNS;
    use crate::sql::{Append, SqlError, Step, Value};

    let row = |pos: i64, kind: &str, buyer: &str, flash: Option<i64>| {
        vec![
            Value::from("append-show"),
            Value::Int(pos),
            Value::from(kind),
            Value::from(format!("k{pos}")),
            Value::from(buyer),
            Value::from("append-product"),
            Value::Int(2),
            Value::Int(250_000),
            Value::from(flash),
            Value::Int(T0 + pos),
        ]
    };
    let rows = vec![
        row(0, "claim", "người-mua-1", Some(3)),
        row(1, "claim", "b2", None),
        row(2, "cancel", "người-mua-1", Some(3)),
    ];
    let appended = |rows: Vec<Vec<Value>>| {
        Step::append(Append {
            table: "claim_log_entries",
            columns: LOG_COLUMNS,
            rows,
        })
    };
    let stored = || async {
        c.engine
            .query(
                "SELECT show_id, pos, kind, claim_id, buyer_id, product_id, quantity, unit_price,
                     flash_id, at
                 FROM claim_log_entries WHERE show_id = 'append-show' ORDER BY pos",
                Vec::new(),
            )
            .await
            .map(|rows| rows.into_iter().map(|r| r.0).collect::<Vec<_>>())
    };
    let out = c
        .engine
        .transaction(vec![appended(rows.clone()), appended(Vec::new())])
        .await?;
    ensure(
        out.iter().map(|o| o.affected).collect::<Vec<_>>() == [3, 0],
        "an append affects the rows it carries",
    )?;
    ensure(stored().await? == rows, "appended rows read back as given")?;

    // A row on a taken key fails the whole transaction: the statement before it and the
    // append's other rows are rolled back with it.
    let collides = c
        .engine
        .transaction(vec![
            Step::new(
                "INSERT INTO claim_log_checkpoints (show_id, next_pos, token, updated_at)
                 VALUES ('append-show', 5, '', $1)",
                crate::params![T0],
            ),
            appended(vec![
                row(3, "claim", "b3", None),
                row(1, "claim", "b4", None),
            ]),
        ])
        .await;
    ensure(
        matches!(collides, Err(SqlError::Unique(_))),
        &format!("an append onto a taken key is refused as a duplicate: {collides:?}"),
    )?;
    // A row of the wrong width is refused before anything is sent.
    let mut short = row(4, "claim", "b5", None);
    short.pop();
    let narrow = c.engine.transaction(vec![appended(vec![short])]).await;
    ensure(
        matches!(narrow, Err(SqlError::Corrupt(_))),
        &format!("a row of the wrong width is refused: {narrow:?}"),
    )?;
    ensure(
        stored().await? == rows,
        "refused appends leave the table as it was",
    )?;
    ensure(
        c.log_checkpoint(&id(ShowId::parse("append-show"))?)
            .await?
            .cursor
            .next_pos
            == 0,
        "the statement before a refused append is rolled back",
    )
}

/// Records the whole log of `show` with its close marker, then settles it.
async fn settle(c: &Store, show: &ShowId, log: &[RecordedEntry]) -> Result<(), StoreError> {
    let end = log.len() as u64;
    let close = CloseMarker {
        pos: end,
        at: T0 + HOUR,
        final_stock: Vec::new(),
    };
    let to = LogCursor {
        next_pos: end,
        token: String::new(),
    };
    ensure(
        c.record_claim_log(
            show,
            &LogCursor::default(),
            log,
            &to,
            Some(&close),
            T0 + HOUR,
        )
        .await?,
        "claim log recorded",
    )?;
    let row = c.show(show).await?.ok_or_else(|| fail("show to settle"))?;
    let plan = SettlePlan {
        show: &row,
        close: &close,
        report: "{}".into(),
        claims: log.iter().filter(|e| !e.cancel).count() as u64,
        cancels: log.iter().filter(|e| e.cancel).count() as u64,
        payment_window_ms: HOUR,
        by: "order-service",
        at: T0 + 2 * HOUR,
        event: None,
    };
    match c.settle_show(&plan).await? {
        SettleOutcome::Settled(_) => Ok(()),
        other => Err(fail(format!("settling {show}: {other:?}"))),
    }
}

fn figures(
    allotted: u64,
    units: u64,
    revenue: i64,
    list_revenue: i64,
    flash: (u64, i64),
    cancelled: (u64, i64),
) -> SalesFigures {
    SalesFigures {
        allotted,
        units,
        revenue,
        list_revenue,
        flash_units: flash.0,
        flash_revenue: flash.1,
        units_cancelled: cancelled.0,
        revenue_cancelled: cancelled.1,
    }
}

fn sum_of<'a>(rows: impl IntoIterator<Item = &'a SalesFigures>) -> SalesFigures {
    let mut total = SalesFigures::default();
    for f in rows {
        total.add(f);
    }
    total
}

/// Two sellers' settled shows on one night, one show not settled and one stopped by a
/// mismatch: every figure is known, and each report adds up to the orders.
pub async fn reports(c: &Store) -> Result<(), StoreError> {
    let m = stored_market(c, "report-market").await?;
    let night = date(2026, 11, 27);
    let start = T0 + 20 * HOUR;
    let a = SellerRow {
        name: "HTX Mật ong Ba Vì".into(),
        ..seller("report-seller-a")?
    };
    let b = SellerRow {
        name: "Làng gốm Bát Tràng".into(),
        district: "Gia Lâm".into(),
        ..seller("report-seller-b")?
    };
    c.create_seller(&a).await?;
    c.create_seller(&b).await?;
    let stars = |n| Stars::parse(n).map_err(|e| fail(e.to_string()));
    let price = |n| Dong::parse(n).map_err(|e| fail(e.to_string()));
    let honey = product("report-honey", &a.id)?;
    let tea = Product {
        name: "Trà hoa vàng".into(),
        group: ProductGroup::Beverages,
        stars: stars(5)?,
        list_price: price(120_000)?,
        ..product("report-tea", &a.id)?
    };
    let chicken = Product {
        name: "Gà đồi Ba Vì".into(),
        stars: stars(3)?,
        list_price: price(180_000)?,
        ..product("report-chicken", &a.id)?
    };
    let vase = Product {
        name: "Bình gốm men lam".into(),
        group: ProductGroup::Handicrafts,
        district: "Gia Lâm".into(),
        list_price: price(400_000)?,
        ..product("report-vase", &b.id)?
    };
    for p in [&honey, &tea, &chicken, &vase] {
        c.create_product(p, T0).await?;
    }
    let show_a = scheduled(
        "report-a1",
        &a.id,
        &m.id,
        night,
        start,
        start + HOUR,
        vec![
            lineup_item(&honey, 10, 5),
            lineup_item(&tea, 20, 5),
            lineup_item(&chicken, 5, 2),
        ],
    )?;
    let show_b = scheduled(
        "report-b1",
        &b.id,
        &m.id,
        night,
        start,
        start + HOUR,
        vec![lineup_item(&vase, 4, 2)],
    )?;
    let unsettled = scheduled(
        "report-a2",
        &a.id,
        &m.id,
        night,
        start + HOUR,
        start + 2 * HOUR,
        vec![lineup_item(&honey, 10, 5)],
    )?;
    let stopped = scheduled(
        "report-b2",
        &b.id,
        &m.id,
        night,
        start + HOUR,
        start + 2 * HOUR,
        vec![lineup_item(&vase, 4, 2)],
    )?;
    for s in [&show_a, &show_b, &unsettled, &stopped] {
        c.schedule_show(s, None).await?;
    }
    for s in [&show_a, &show_b, &stopped] {
        transit(c, &s.id, ShowStatus::Scheduled, ShowStatus::Live, start).await?;
        transit(c, &s.id, ShowStatus::Live, ShowStatus::Closed, start + HOUR).await?;
    }

    // Show A: honey at flash 200,000 and list 250,000 (one buyer at both), tea at list and at a
    // flash 100,000, one flash claim cancelled live; chicken unsold.
    let log_a = vec![
        entry(0, false, "a-c1", "u1", &honey, 2, 200_000, Some(1))?,
        entry(1, false, "a-c2", "u2", &honey, 1, 250_000, None)?,
        entry(2, false, "a-c3", "u1", &tea, 3, 120_000, None)?,
        entry(3, false, "a-c4", "u3", &honey, 1, 200_000, Some(1))?,
        entry(4, true, "a-c4", "u3", &honey, 1, 200_000, Some(1))?,
        entry(5, false, "a-c5", "u3", &tea, 2, 100_000, Some(2))?,
        entry(6, false, "a-c6", "u1", &honey, 1, 250_000, None)?,
    ];
    settle(c, &show_a.id, &log_a).await?;
    // Show B: the vase sells out, half at a flash 350,000; u1 buys here too.
    let log_b = vec![
        entry(0, false, "b-c1", "u1", &vase, 2, 350_000, Some(7))?,
        entry(1, false, "b-c2", "u4", &vase, 2, 400_000, None)?,
    ];
    settle(c, &show_b.id, &log_b).await?;
    c.record_mismatch(&stopped.id, "{\"stock\":\"differs\"}", "order-service", T0)
        .await?;
    // u2 never paid: the order is cancelled after settlement.
    let unpaid = nightmarket_domain::order::order_id(&show_a.id, &id(BuyerId::parse("u2"))?);
    ensure(
        c.engine
            .execute(
                "UPDATE orders SET status = 'cancelled', version = version + 1 WHERE id = $1",
                crate::params![unpaid.as_str()],
            )
            .await?
            == 1,
        "the unpaid order is cancelled",
    )?;

    // Refusals and viewers as two nodes counted them; the unsettled show's are left out.
    let show_id = |s: &str| id(ShowId::parse(s));
    for (node, refusals, viewers) in [
        (
            "n1",
            vec![
                ("report-a1", "sold_out", 3),
                ("report-a1", "stale_price", 1),
                ("report-b1", "limit_exceeded", 4),
                ("report-a2", "sold_out", 100),
            ],
            vec![
                ("report-a1", 100, 50),
                ("report-a1", 101, 70),
                ("report-b1", 100, 40),
                ("report-a2", 100, 1000),
            ],
        ),
        (
            "n2",
            vec![("report-a1", "sold_out", 2)],
            vec![
                ("report-a1", 100, 30),
                ("report-a1", 101, 5),
                ("report-b1", 102, 90),
            ],
        ),
    ] {
        let batch = ShowStatsBatch {
            refusals: refusals
                .into_iter()
                .map(|(s, reason, count)| {
                    Ok(RefusalTotal {
                        show: show_id(s)?,
                        reason: reason.into(),
                        count,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            viewers: viewers
                .into_iter()
                .map(|(s, minute, viewers)| {
                    Ok(ViewerSample {
                        show: show_id(s)?,
                        minute,
                        viewers,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        };
        c.record_show_stats(node, &batch).await?;
    }

    // --- the show report --------------------------------------------------------------------
    let r = c.show_report(&show_a.id).await?;
    let ids: Vec<&str> = r.products.iter().map(|p| p.product_id.as_str()).collect();
    ensure(
        ids == ["report-honey", "report-tea", "report-chicken"],
        "products in lineup order, unsold ones too",
    )?;
    let honey_row = &r.products[0];
    ensure(
        honey_row.figures == figures(10, 4, 900_000, 1_000_000, (2, 400_000), (1, 250_000)),
        &format!("honey figures: {:?}", honey_row.figures),
    )?;
    ensure(
        honey_row.buyers == 2
            && honey_row.figures.discount() == 100_000
            && honey_row.figures.regular_units() == 2
            && honey_row.figures.regular_revenue() == 500_000
            && honey_row.figures.sell_through_bp() == Some(4_000),
        "honey: buyers, discount, regular sales, sell-through",
    )?;
    ensure(
        honey_row.name == "Mật ong hoa nhãn"
            && honey_row.group == "food"
            && honey_row.district == "Ba Vì"
            && honey_row.stars == 4
            && honey_row.list_price == 250_000
            && honey_row.seller_name == "HTX Mật ong Ba Vì",
        "honey: the programme's dimensions as settled",
    )?;
    ensure(
        r.products[1].figures == figures(20, 5, 560_000, 600_000, (2, 200_000), (0, 0))
            && r.products[1].figures.sell_through_bp() == Some(2_500),
        &format!("tea figures: {:?}", r.products[1].figures),
    )?;
    ensure(
        r.products[2].figures == figures(5, 0, 0, 0, (0, 0), (0, 0))
            && r.products[2].figures.sell_through_bp() == Some(0)
            && r.products[2].buyers == 0,
        "unsold chicken: zero figures",
    )?;
    let totals_a = figures(35, 9, 1_460_000, 1_600_000, (4, 600_000), (1, 250_000));
    ensure(
        r.show.tally.totals == totals_a && r.show.tally.totals.discount() == 140_000,
        &format!("show totals: {:?}", r.show.tally.totals),
    )?;
    ensure(
        r.show.tally.orders == 3 && r.show.tally.buyers == 3 && r.show.tally.orders_cancelled == 1,
        "orders, buyers, cancelled orders",
    )?;
    ensure(
        r.show.tally.refusals
            == vec![
                RefusalCount {
                    reason: "sold_out".into(),
                    count: 5,
                },
                RefusalCount {
                    reason: "stale_price".into(),
                    count: 1,
                },
            ],
        &format!("refusals summed over nodes: {:?}", r.show.tally.refusals),
    )?;
    ensure(
        r.show.tally.peak_viewers == 80,
        "peak viewers: the largest minute summed over nodes",
    )?;
    ensure(
        r.show
            .tally
            .refusals
            .iter()
            .map(|x| (x.reason.clone(), x.count))
            .collect::<Vec<_>>()
            == c.show_refusals(&show_a.id).await?
            && r.show.tally.peak_viewers == c.show_peak_viewers(&show_a.id).await?,
        "the report's refusals and peak agree with the show statistics",
    )?;
    ensure(
        r.show.seller_id == a.id
            && r.show.title == show_a.title
            && r.show.market_id.as_ref() == Some(&m.id)
            && r.show.night_date == Some(night)
            && r.show.settled_at == T0 + 2 * HOUR,
        "show identity and settlement time",
    )?;
    // The report adds up to the orders and their lines.
    for (show, report) in [
        (&show_a.id, r.clone()),
        (&show_b.id, c.show_report(&show_b.id).await?),
    ] {
        let orders = c.show_orders(show).await?;
        let lines = c.show_order_lines(show).await?;
        let t = &report.show.tally.totals;
        let cancelled = orders
            .iter()
            .filter(|o| o.status == nightmarket_domain::OrderStatus::Cancelled);
        ensure(
            t.units == orders.iter().map(|o| o.units).sum::<u64>()
                && t.revenue == orders.iter().map(|o| o.total).sum::<i64>()
                && t.list_revenue == orders.iter().map(|o| o.list_total).sum::<i64>()
                && t.units_cancelled == cancelled.clone().map(|o| o.units).sum::<u64>()
                && t.revenue_cancelled == cancelled.clone().map(|o| o.total).sum::<i64>()
                && report.show.tally.orders == orders.len() as u64
                && report.show.tally.orders_cancelled == cancelled.count() as u64,
            &format!("{show}: the report adds up to the orders"),
        )?;
        ensure(
            t.flash_units
                == lines
                    .iter()
                    .filter(|l| l.flash)
                    .map(|l| l.quantity)
                    .sum::<u64>(),
            &format!("{show}: flash units add up to the flash lines"),
        )?;
        ensure(
            *t == sum_of(report.products.iter().map(|p| &p.figures)),
            &format!("{show}: totals are the sum of the product rows"),
        )?;
    }

    // Not settled, stopped, unknown.
    for s in [&unsettled.id, &stopped.id] {
        match c.show_report(s).await {
            Err(StoreError::Refused {
                code: crate::reports::NOT_SETTLED,
                ..
            }) => {}
            other => return Err(fail(format!("report of unsettled {s}: {other:?}"))),
        }
    }
    ensure(
        matches!(
            c.show_report(&id(ShowId::parse("report-nobody"))?).await,
            Err(StoreError::NotFound(_))
        ),
        "report of an unknown show is not found",
    )?;

    // --- the night report -------------------------------------------------------------------
    let n = c.night_report(&m.id, night, None).await?;
    let shows: Vec<&str> = n.shows.iter().map(|s| s.show_id.as_str()).collect();
    ensure(
        shows == ["report-a1", "report-b1"],
        &format!("settled shows by slot: {shows:?}"),
    )?;
    let pending: Vec<(&str, PendingReason)> = n
        .pending
        .iter()
        .map(|p| (p.show_id.as_str(), p.reason))
        .collect();
    ensure(
        pending
            == [
                ("report-a2", PendingReason::Unsettled),
                ("report-b2", PendingReason::Mismatch),
            ],
        &format!("unsettled shows listed as pending: {pending:?}"),
    )?;
    let totals_b = figures(4, 4, 1_500_000, 1_600_000, (2, 700_000), (0, 0));
    ensure(
        n.shows[0].tally.totals == totals_a
            && n.shows[1].tally.totals == totals_b
            && n.shows[1].tally.totals.sell_through_bp() == Some(10_000),
        "each show's totals in the night",
    )?;
    let night_totals = sum_of([&totals_a, &totals_b]);
    ensure(
        n.tally.totals == night_totals
            && n.tally.totals
                == figures(39, 13, 2_960_000, 3_200_000, (6, 1_300_000), (1, 250_000)),
        &format!(
            "night totals sum two shows of two sellers: {:?}",
            n.tally.totals
        ),
    )?;
    ensure(
        n.tally.orders == 5 && n.tally.buyers == 4 && n.tally.orders_cancelled == 1,
        &format!(
            "night orders {}, distinct buyers {}, cancelled {}",
            n.tally.orders, n.tally.buyers, n.tally.orders_cancelled
        ),
    )?;
    let mut every_order = c.show_orders(&show_a.id).await?;
    every_order.extend(c.show_orders(&show_b.id).await?);
    ensure(
        n.tally.totals.units == every_order.iter().map(|o| o.units).sum::<u64>()
            && n.tally.totals.revenue == every_order.iter().map(|o| o.total).sum::<i64>()
            && n.tally.totals.list_revenue == every_order.iter().map(|o| o.list_total).sum::<i64>(),
        "the night adds up to its orders",
    )?;
    ensure(
        n.tally
            .refusals
            .iter()
            .map(|r| (r.reason.as_str(), r.count))
            .collect::<Vec<_>>()
            == [("limit_exceeded", 4), ("sold_out", 5), ("stale_price", 1)],
        &format!("night refusals over settled shows: {:?}", n.tally.refusals),
    )?;
    ensure(
        n.tally.peak_viewers == 120 && n.shows[1].tally.peak_viewers == 90,
        &format!(
            "night peak: shows at once ({}), show B's own ({})",
            n.tally.peak_viewers, n.shows[1].tally.peak_viewers
        ),
    )?;
    ensure(
        n.products.len() == 4
            && n.products[3].product_id == vase.id
            && n.products[3].seller_id == b.id
            && sum_of(n.products.iter().map(|p| &p.figures)) == n.tally.totals,
        "the night's product rows, by show and position, add up to its totals",
    )?;
    // Every programme view partitions the night.
    let p = &n.programme;
    for (name, view) in [
        ("groups", &p.groups),
        ("districts", &p.districts),
        ("stars", &p.stars),
        ("sellers", &p.sellers),
    ] {
        ensure(
            sum_of(view.iter().map(|g| &g.figures)) == n.tally.totals,
            &format!("programme view {name} adds up to the night: {view:?}"),
        )?;
    }
    let keyed = |v: &[GroupSales]| {
        v.iter()
            .map(|g| (g.key.clone(), g.shows, g.products, g.figures.units))
            .collect::<Vec<_>>()
    };
    let k = |s: &str, shows, products, units| (s.to_owned(), shows, products, units);
    ensure(
        keyed(&p.groups)
            == [
                k("beverages", 1, 1, 5),
                k("food", 1, 2, 4),
                k("handicrafts", 1, 1, 4),
            ],
        &format!("by product group: {:?}", keyed(&p.groups)),
    )?;
    ensure(
        keyed(&p.districts) == [k("Ba Vì", 1, 3, 9), k("Gia Lâm", 1, 1, 4)],
        &format!("by district: {:?}", keyed(&p.districts)),
    )?;
    ensure(
        keyed(&p.stars) == [k("3", 1, 1, 0), k("4", 2, 2, 8), k("5", 1, 1, 5)],
        &format!("by stars: {:?}", keyed(&p.stars)),
    )?;
    ensure(
        keyed(&p.sellers) == [k("report-seller-a", 1, 3, 9), k("report-seller-b", 1, 1, 4)]
            && p.sellers[1].label == "Làng gốm Bát Tràng",
        &format!("by seller: {:?}", p.sellers),
    )?;

    // One seller's view of the night: its shows only, pending ones included.
    let own = c.night_report(&m.id, night, Some(&a.id)).await?;
    ensure(
        own.seller_id.as_ref() == Some(&a.id)
            && own.shows.len() == 1
            && own.tally.totals == totals_a
            && own.tally.buyers == 3
            && own.pending.len() == 1
            && own.pending[0].show_id == unsettled.id
            && own.programme.sellers.len() == 1
            && own.tally.peak_viewers == 80,
        "a seller's night view covers its own shows",
    )?;
    // A night with nothing scheduled is an empty report, not an error.
    let empty = c.night_report(&m.id, date(2026, 12, 4), None).await?;
    ensure(
        empty.shows.is_empty()
            && empty.pending.is_empty()
            && empty.tally.totals == SalesFigures::default()
            && empty.programme == Programme::default(),
        "an empty night",
    )?;
    Ok(())
}
