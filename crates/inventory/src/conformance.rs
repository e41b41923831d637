//! The inventory conformance suite. Every [`Inventory`] implementation must pass every case
//! unchanged: the memory one and the Redis one. [`inventory_conformance!`](crate::inventory_conformance)
//! turns each case into a test of its own; [`run`] runs them all on one inventory. Show ids
//! are prefixed so one backend instance can run the suite repeatedly.
//!
//! Compiled only with the `testing` feature (the crate's own tests and the workspace's test
//! crates turn it on), so release binaries do not carry it.

use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::book::{MAX_WAITLIST_PER_PRODUCT, PROMOTED_CLAIM_PREFIX};
use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimAccepted, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest,
    CommandError, Dong, EndReason, FlashSpec, JoinDecision, LogCursor, LogEntry, Millis, ProductId,
    RefusalReason, ShowEvent, ShowId, ShowStatus, SkipReason, WaitlistEntry, WaitlistOutcome,
    WaitlistRefusal,
};

use crate::{
    BookView, Cancel, Claim, Command, Inventory, InventoryError, WaitlistJoin, WaitlistLeave,
};

pub mod fixtures;

use fixtures::{LIST, T0};
use fixtures::{accepted, buyer, ensure, err, lineup, pid, qty, refused, req};
/// Why a claim is refused, as the cases below expect it.
use nightmarket_domain::RefusalReason as Why;

/// The system clock, UTC milliseconds: what an inventory on the execution clock decides by
/// (Redis's TIME, on this machine, is the same clock).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type R = Result<(), String>;

/// One show's claims, expected refused or accepted.
struct On<'a> {
    inv: &'a dyn Inventory,
    show: &'a ShowId,
}

impl On<'_> {
    /// Claims with `req` at `now` and expects the refusal `reason`.
    async fn refuse(&self, req: ClaimRequest, now: Millis, reason: Why) -> R {
        let what = format!(
            "claim {} by {}: expected {reason:?}",
            req.claim_id, req.buyer
        );
        let d = self.inv.claim(self.show, req, now).await.map_err(err)?;
        ensure(refused(&d) == Some(reason), format!("{what}, got {d:?}"))
    }

    /// Claims with `req` at `now` and expects an acceptance.
    async fn accept(&self, req: ClaimRequest, now: Millis) -> R {
        let what = format!(
            "claim {} by {}: expected an acceptance",
            req.claim_id, req.buyer
        );
        let d = self.inv.claim(self.show, req, now).await.map_err(err)?;
        ensure(
            matches!(d, ClaimDecision::Accepted(_)),
            format!("{what}, got {d:?}"),
        )
    }
}

/// The shows [`run`] opens, as `<prefix>-<name>`: a Redis Cluster test uses them to check that
/// the suite's shows spread over several masters.
pub const SHOWS: [&str; 15] = [
    "lifecycle",
    "flash",
    "cancel",
    "race",
    "history",
    "claimlog",
    "release",
    "mine",
    "waitlist",
    "waitlimit",
    "waitrace",
    "clock",
    "together",
    "standing-live",
    "standing-new",
];

async fn open(
    inv: &dyn Inventory,
    prefix: &str,
    name: &str,
    stock: u32,
    limit: u32,
) -> Result<ShowId, String> {
    debug_assert!(SHOWS.contains(&name), "conformance::SHOWS lacks {name}");
    let show = ShowId::parse(format!("{prefix}-{name}")).map_err(err)?;
    inv.open_show(&show, lineup(stock, limit)?)
        .await
        .map_err(err)?;
    Ok(show)
}

/// Opens a show, takes it live and pins `product`: where most cases start.
async fn open_live(
    inv: &dyn Inventory,
    prefix: &str,
    name: &str,
    stock: u32,
    limit: u32,
    product: &str,
) -> Result<ShowId, String> {
    let show = open(inv, prefix, name, stock, limit).await?;
    for cmd in [Command::GoLive, Command::Pin(pid(product))] {
        inv.command(&show, cmd, T0).await.map_err(err)?;
    }
    Ok(show)
}

/// Claims with `req` at `now`; the decision, whatever it is.
async fn claim(
    inv: &dyn Inventory,
    show: &ShowId,
    req: ClaimRequest,
    now: Millis,
) -> Result<ClaimDecision, String> {
    inv.claim(show, req, now).await.map_err(err)
}

/// `who` cancels `claim` at `now`; the decision, whatever it is.
async fn cancel(
    inv: &dyn Inventory,
    show: &ShowId,
    who: &BuyerId,
    claim: &ClaimId,
    now: Millis,
) -> Result<CancelDecision, String> {
    let cancel = Cancel {
        buyer: who.clone(),
        claim_id: claim.clone(),
        now,
    };
    inv.cancel(show, cancel).await.map_err(err)
}

/// `who` leaves the waitlist of `product`, or every waitlist of the show (`None`), at `now`.
async fn leave(
    inv: &dyn Inventory,
    show: &ShowId,
    who: &BuyerId,
    product: Option<&ProductId>,
    now: Millis,
) -> Result<Vec<WaitlistEntry>, String> {
    let (buyer, product) = (who.clone(), product.cloned());
    let leave = WaitlistLeave {
        buyer,
        product,
        now,
    };
    inv.waitlist_leave(show, leave).await.map_err(err)
}

/// The show as buyer `who` sees it at `now`. Its narrow read ([`Inventory::buyer_view`]) is
/// checked against it on the way: the same claims, places and sequence, in every case that
/// looks at a buyer's view.
async fn view_of(
    inv: &dyn Inventory,
    show: &ShowId,
    who: &str,
    now: Millis,
) -> Result<BookView, String> {
    let who = buyer(who)?;
    let view = inv.view(show, Some(&who), now).await.map_err(err)?;
    let own = inv.buyer_view(show, &who).await.map_err(err)?;
    let stock = inv.stock(show, u64::MAX).await.map_err(err)?;
    ensure(
        own.my_claims == view.my_claims
            && own.my_waitlist == view.my_waitlist
            && own.seq == view.seq
            && own.stock_version == stock.version,
        format!("{who}'s own part {own:?} against its view {view:?} and stock {stock:?}"),
    )?;
    Ok(view)
}

/// Runs every case in turn on one inventory; the first disagreement is returned as text. The
/// per-case tests come from [`inventory_conformance!`](crate::inventory_conformance); this is
/// for runs that need the whole suite at once (before and after a Redis script flush, across
/// a Redis Cluster).
pub async fn run(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    crate::inventory_conformance!(@cases run inv prefix);
    Ok(())
}

/// One `#[tokio::test]` per conformance case, so a failure names its case. `$make` is an async
/// function returning `(Arc<dyn Inventory>, keep)`: a fresh inventory for each case, and
/// whatever must outlive it (a temporary directory); each case is a separate test, so cases
/// never see each other's shows. Invoke it inside a module of its own:
///
/// ```ignore
/// mod conformance {
///     nightmarket_inventory::inventory_conformance!(super::fresh_inventory);
/// }
/// ```
///
/// The list of cases is written once, here: [`run`] expands the same list.
#[macro_export]
macro_rules! inventory_conformance {
    (@cases $mode:ident $($arg:tt)*) => {
        $crate::inventory_conformance!(@$mode lifecycle_and_refusals ref $($arg)*);
        $crate::inventory_conformance!(@$mode flash_rules ref $($arg)*);
        $crate::inventory_conformance!(@$mode cancel_rules ref $($arg)*);
        $crate::inventory_conformance!(@$mode concurrent_claims_never_oversell arc $($arg)*);
        $crate::inventory_conformance!(@$mode history_and_resume ref $($arg)*);
        $crate::inventory_conformance!(@$mode claim_log_in_pages ref $($arg)*);
        $crate::inventory_conformance!(@$mode an_unknown_show ref $($arg)*);
        $crate::inventory_conformance!(@$mode release_rules ref $($arg)*);
        $crate::inventory_conformance!(@$mode a_buyers_many_claims ref $($arg)*);
        $crate::inventory_conformance!(@$mode waitlist_rules ref $($arg)*);
        $crate::inventory_conformance!(@$mode waitlist_limit_skip ref $($arg)*);
        $crate::inventory_conformance!(@$mode waitlists_never_oversell arc $($arg)*);
        $crate::inventory_conformance!(@$mode claims_together_decide_one_after_another arc $($arg)*);
        $crate::inventory_conformance!(@$mode standings_of_many_shows ref $($arg)*);
    };
    (@run $case:ident ref $inv:ident $prefix:ident) => {
        $crate::conformance::$case($inv.as_ref(), $prefix).await?;
    };
    (@run $case:ident arc $inv:ident $prefix:ident) => {
        $crate::conformance::$case($inv.clone(), $prefix).await?;
    };
    (@test $case:ident $kind:ident $make:path) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (inv, _keep) = $make().await;
            let inv: ::std::sync::Arc<dyn $crate::Inventory> = inv;
            let outcome = $crate::inventory_conformance!(@call $case $kind inv);
            if let Err(e) = outcome {
                panic!("conformance case {}: {e}", stringify!($case));
            }
        }
    };
    (@call $case:ident ref $inv:ident) => {
        $crate::conformance::$case($inv.as_ref(), "conf").await
    };
    (@call $case:ident arc $inv:ident) => {
        $crate::conformance::$case($inv.clone(), "conf").await
    };
    ($make:path) => {
        $crate::inventory_conformance!(@cases test $make);
    };
}

pub async fn lifecycle_and_refusals(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "lifecycle", 5, 3).await?;
    let on = On { inv, show: &show };
    // Opening again is a no-op.
    inv.open_show(&show, lineup(5, 3)?).await.map_err(err)?;

    // claim before live is show_not_live
    on.refuse(req("c0", "b1", "p1", 1, LIST)?, T0, Why::ShowNotLive)
        .await?;

    let evs = inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    ensure(
        evs.len() == 1 && evs[0].seq == 1 && evs[0].event == ShowEvent::ShowLive,
        "go live is event 1",
    )?;
    ensure(
        matches!(
            inv.command(&show, Command::GoLive, T0).await,
            Err(InventoryError::Command(_))
        ),
        "going live twice is refused",
    )?;

    // claim of an unpinned product
    on.refuse(req("c1", "b1", "p1", 1, LIST)?, T0, Why::NotPinned)
        .await?;
    // claim of a product not in the lineup
    on.refuse(req("c1", "b1", "nope", 1, LIST)?, T0, Why::UnknownProduct)
        .await?;

    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
    // a price the viewer did not see now
    on.refuse(req("c1", "b1", "p1", 1, LIST - 1)?, T0, Why::StalePrice)
        .await?;

    let d = claim(inv, &show, req("c1", "b1", "p1", 2, LIST)?, T0).await?;
    let ClaimDecision::Accepted(a) = d else {
        return Err(format!("expected accepted, got {d:?}"));
    };
    ensure(
        a.stock_left == 3 && a.record.unit_price.get() == LIST,
        "accepted at list price, 3 left",
    )?;

    // Idempotent: the same id answers the same, without taking stock again.
    let d = claim(inv, &show, req("c1", "b1", "p1", 2, LIST)?, T0 + 5).await?;
    ensure(
        matches!(&d, ClaimDecision::Duplicate(x) if x.record == a.record),
        "retry is a duplicate",
    )?;
    // Another buyer cannot reuse the id.
    on.refuse(req("c1", "b2", "p1", 1, LIST)?, T0, Why::ClaimIdTaken)
        .await?;

    // limit of 3 with 2 held
    on.refuse(req("c2", "b1", "p1", 2, LIST)?, T0, Why::LimitExceeded)
        .await?;
    // b2 takes the last 3
    on.accept(req("c3", "b2", "p1", 3, LIST)?, T0).await?;
    let d = claim(inv, &show, req("c4", "b3", "p1", 1, LIST)?, T0).await?;
    ensure(
        matches!(&d, ClaimDecision::Refused(r) if r.reason == RefusalReason::SoldOut && r.available == Some(0)),
        "sold out",
    )?;

    let evs = inv.command(&show, Command::Close, T0).await.map_err(err)?;
    let closed = evs.iter().any(|e| {
        matches!(&e.event, ShowEvent::ShowClosed { final_stock } if final_stock.iter().any(|(p, l)| p.as_str() == "p1" && *l == 0))
    });
    ensure(closed, "close carries the final stock")?;
    // no claim after close
    on.refuse(req("c5", "b4", "p2", 1, LIST)?, T0, Why::ShowNotLive)
        .await?;
    let view = inv
        .view(&show, Some(&BuyerId::parse("b1").map_err(err)?), T0)
        .await
        .map_err(err)?;
    ensure(
        view.status == ShowStatus::Closed && view.my_claims.len() == 1,
        "view after close",
    )?;
    Ok(())
}

pub async fn flash_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open_live(inv, prefix, "flash", 100, 50, "p1").await?;
    let on = On { inv, show: &show };
    let spec = |price: i64, cap: Option<u32>, countdown: i64| -> Result<FlashSpec, String> {
        Ok(FlashSpec {
            product_id: pid("p1"),
            price: Dong::parse(price).map_err(err)?,
            duration_s: 60,
            quantity_cap: cap,
            countdown_s: countdown,
        })
    };
    ensure(
        matches!(
            inv.command(&show, Command::StartFlash(spec(LIST + 1, None, 0)?), T0)
                .await,
            Err(InventoryError::Command(_))
        ),
        "flash above list price refused",
    )?;
    // A countdown: list price until it starts.
    inv.command(&show, Command::StartFlash(spec(99_000, Some(5), 10)?), T0)
        .await
        .map_err(err)?;
    // flash price before the countdown ends
    on.refuse(
        req("f0", "b1", "p1", 1, 99_000)?,
        T0 + 1_000,
        Why::StalePrice,
    )
    .await?;
    let t = T0 + 10_000;
    let d = claim(inv, &show, req("f1", "b1", "p1", 3, 99_000)?, t).await?;
    ensure(
        matches!(&d, ClaimDecision::Accepted(a) if a.record.flash_id.is_some() && a.flash_exhausted.is_none()),
        "flash claim",
    )?;
    let d = claim(inv, &show, req("f2", "b2", "p1", 3, 99_000)?, t).await?;
    ensure(
        matches!(&d, ClaimDecision::Refused(r) if r.reason == RefusalReason::SoldOut && r.available == Some(2)),
        "cap leaves 2 at the flash price; no partial fill",
    )?;
    let d = claim(inv, &show, req("f3", "b2", "p1", 2, 99_000)?, t).await?;
    let flash_id = match &d {
        ClaimDecision::Accepted(a) => a.flash_exhausted,
        _ => None,
    };
    ensure(
        flash_id.is_some(),
        "the claim that reaches the cap reports it",
    )?;
    // cap reached: back to list price
    on.refuse(req("f4", "b3", "p1", 1, 99_000)?, t, Why::StalePrice)
        .await?;
    // list price after the cap
    on.accept(req("f5", "b3", "p1", 1, LIST)?, t).await?;
    let evs = inv
        .command(
            &show,
            Command::EndFlash {
                reason: EndReason::CapReached,
                only: flash_id,
            },
            t,
        )
        .await
        .map_err(err)?;
    ensure(evs.len() == 1, "ending the capped flash emits one event")?;
    let evs = inv
        .command(
            &show,
            Command::EndFlash {
                reason: EndReason::Expired,
                only: flash_id,
            },
            t,
        )
        .await
        .map_err(err)?;
    ensure(
        evs.is_empty(),
        "a late timer for an ended flash does nothing",
    )?;

    // Expiry by time: the price reverts at ends_at even before any timer runs.
    inv.command(&show, Command::StartFlash(spec(90_000, None, 0)?), t)
        .await
        .map_err(err)?;
    // flash over at ends_at
    on.refuse(
        req("f6", "b4", "p1", 1, 90_000)?,
        t + 60_000,
        Why::StalePrice,
    )
    .await?;
    let view = inv.view(&show, None, t + 1).await.map_err(err)?;
    ensure(
        view.price.map(Dong::get) == Some(90_000),
        "view shows the flash price while it runs",
    )?;
    Ok(())
}

pub async fn cancel_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open_live(inv, prefix, "cancel", 10, 5, "p2").await?;
    let on = On { inv, show: &show };
    claim(inv, &show, req("k1", "b1", "p2", 4, LIST)?, T0).await?;
    let b1 = BuyerId::parse("b1").map_err(err)?;
    let b2 = BuyerId::parse("b2").map_err(err)?;
    let k1 = ClaimId::parse("k1").map_err(err)?;
    let d = cancel(inv, &show, &b2, &k1, T0).await?;
    ensure(
        d == CancelDecision::UnknownClaim,
        "another buyer cannot cancel",
    )?;
    let d = cancel(inv, &show, &b1, &k1, T0).await?;
    ensure(
        matches!(d, CancelDecision::Cancelled { stock_left: 10, .. }),
        "stock returns on cancel",
    )?;
    let d = cancel(inv, &show, &b1, &k1, T0).await?;
    ensure(
        matches!(d, CancelDecision::AlreadyCancelled { stock_left: 10, .. }),
        "cancel is idempotent",
    )?;
    // The limit counts held units: after cancelling 4, the buyer may take 5 again.
    // limit freed by cancel
    on.accept(req("k2", "b1", "p2", 5, LIST)?, T0).await?;
    // The feed of recent claims shows each as it was accepted, the cancelled one too.
    let recent = inv.stock(&show, 0).await.map_err(err)?.recent;
    let ids: Vec<(&str, Option<i64>)> = recent
        .iter()
        .map(|c| (c.claim_id.as_str(), c.cancelled_at))
        .collect();
    ensure(
        ids == [("k1", None), ("k2", None)],
        format!("recent claims as accepted, got {ids:?}"),
    )?;
    inv.command(&show, Command::Close, T0).await.map_err(err)?;
    let k2 = ClaimId::parse("k2").map_err(err)?;
    let d = cancel(inv, &show, &b1, &k2, T0).await?;
    ensure(d == CancelDecision::ShowNotLive, "no cancel after close")?;
    Ok(())
}

/// A buyer who claims again and again sees every claim of theirs, oldest first, cancelled ones
/// marked, and none of anyone else's (the Redis backend keeps them in chunks of 32 ids).
pub async fn a_buyers_many_claims(inv: &dyn Inventory, prefix: &str) -> R {
    const MANY: usize = 70;
    let show = open_live(inv, prefix, "mine", 1_000, 1_000, "p1").await?;
    let on = On { inv, show: &show };
    for i in 0..MANY {
        let at = T0 + i as i64;
        // b2 claims now and then, between b1's claims.
        let b2_too = (i % 25 == 0).then(|| (format!("o{i}"), "b2", 2));
        for (claim, buyer, qty) in std::iter::once((format!("m{i}"), "b1", 1)).chain(b2_too) {
            on.accept(req(&claim, buyer, "p1", qty, LIST)?, at).await?;
        }
    }
    let b1 = BuyerId::parse("b1").map_err(err)?;
    let cancelled = ClaimId::parse("m40").map_err(err)?;
    let d = cancel(inv, &show, &b1, &cancelled, T0 + 1_000).await?;
    ensure(
        matches!(d, CancelDecision::Cancelled { .. }),
        "b1 cancels one",
    )?;
    let view = view_of(inv, &show, "b1", T0 + 1_000).await?;
    let ids: Vec<&str> = view.my_claims.iter().map(|c| c.claim_id.as_str()).collect();
    let expected: Vec<String> = (0..MANY).map(|i| format!("m{i}")).collect();
    ensure(
        ids == expected.iter().map(String::as_str).collect::<Vec<_>>(),
        format!("b1 sees its {MANY} claims in order, got {ids:?}"),
    )?;
    ensure(
        view.my_claims
            .iter()
            .all(|c| (c.claim_id == cancelled) == c.cancelled_at.is_some()),
        "exactly the cancelled claim is marked cancelled",
    )?;
    let view = view_of(inv, &show, "b2", T0 + 1_000).await?;
    let ids: Vec<&str> = view.my_claims.iter().map(|c| c.claim_id.as_str()).collect();
    ensure(
        ids == ["o0", "o25", "o50"],
        format!("b2 sees only its own claims, got {ids:?}"),
    )?;
    Ok(())
}

pub async fn concurrent_claims_never_oversell(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    const STOCK: u32 = 500;
    let show = open_live(inv.as_ref(), prefix, "race", STOCK, 4, "p1").await?;
    let mut tasks = Vec::new();
    for buyer in 0..200u32 {
        let inv = inv.clone();
        let show = show.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0u32;
            for n in 0..4u32 {
                let r = req(
                    &format!("r{buyer}-{n}"),
                    &format!("b{buyer}"),
                    "p1",
                    1 + n % 2,
                    LIST,
                )?;
                // Every claim is sent twice: retries must never count twice.
                for _ in 0..2 {
                    match inv.claim(&show, r.clone(), T0).await.map_err(err)? {
                        ClaimDecision::Accepted(a) => got += a.record.quantity,
                        ClaimDecision::Duplicate(_) | ClaimDecision::Refused(_) => {}
                    }
                }
            }
            Ok::<u32, String>(got)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(err)??;
    }
    ensure(
        total == STOCK,
        format!("accepted {total} units of {STOCK}: exactly the stock"),
    )?;
    let stock = inv.stock(&show, 0).await.map_err(err)?;
    ensure(
        stock
            .levels
            .iter()
            .any(|(p, l)| p.as_str() == "p1" && *l == 0),
        "nothing left",
    )?;
    Ok(())
}

pub async fn history_and_resume(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "history", 10, 5).await?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    for p in ["p1", "p2", "p1"] {
        inv.command(&show, Command::Pin(pid(p)), T0)
            .await
            .map_err(err)?;
    }
    let all = inv
        .events_after(&show, 0, 100)
        .await
        .map_err(err)?
        .unwrap_or_default();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    ensure(
        seqs == vec![1, 2, 3, 4],
        format!("contiguous sequence, got {seqs:?}"),
    )?;
    let after2 = inv
        .events_after(&show, 2, 100)
        .await
        .map_err(err)?
        .unwrap_or_default();
    ensure(after2.len() == 2 && after2[0].seq == 3, "events after 2")?;
    let none = inv.events_after(&show, 4, 100).await.map_err(err)?;
    ensure(none == Some(Vec::new()), "nothing after the newest")?;
    let ahead = inv.events_after(&show, 99, 100).await.map_err(err)?;
    ensure(
        ahead.is_none(),
        "a sequence from the future needs a snapshot",
    )?;
    let view = inv.view(&show, None, T0).await.map_err(err)?;
    ensure(
        view.seq == 4 && view.pinned == Some(pid("p1")),
        "view as of seq 4",
    )?;
    Ok(())
}

/// Reads the claim log from `from` to its current end, `limit` entries a page, checking what
/// every page promises: no more than `limit` entries, positions without gaps, a cursor past the
/// page, and the last (empty) page handing the cursor back unchanged.
async fn read_all(
    inv: &dyn Inventory,
    show: &ShowId,
    from: &LogCursor,
    limit: usize,
) -> Result<(Vec<LogEntry>, LogCursor), String> {
    let mut cursor = from.clone();
    let mut entries: Vec<LogEntry> = Vec::new();
    loop {
        let page = inv.claim_log(show, &cursor, limit).await.map_err(err)?;
        if page.entries.is_empty() {
            ensure(
                page.next == cursor,
                format!(
                    "an empty page hands the cursor back: {cursor:?} became {:?}",
                    page.next
                ),
            )?;
            return Ok((entries, cursor));
        }
        ensure(
            page.entries.len() <= limit,
            format!("{} entries in a page of {limit}", page.entries.len()),
        )?;
        for e in &page.entries {
            let expected = from.next_pos + entries.len() as u64;
            ensure(
                e.pos() == expected,
                format!("entry at {} where {expected} was next", e.pos()),
            )?;
            entries.push(e.clone());
        }
        let last = page.entries.last().map_or(0, LogEntry::pos);
        ensure(
            page.next.next_pos == last + 1,
            format!("the cursor after {last} points at {}", page.next.next_pos),
        )?;
        ensure(
            page.entries
                .iter()
                .filter(|e| matches!(e, LogEntry::Close { .. }))
                .count()
                <= 1
                && page.close().is_none_or(|c| c.pos() == last),
            "the close marker is the last entry",
        )?;
        cursor = page.next;
    }
}

/// Claims, a duplicate retry, refusals, a cancellation and an idempotent re-cancellation: the
/// log holds exactly the accepted decisions, in order, from position 0, whatever the page size;
/// the close marker follows them only once the show has closed, and nothing follows it.
pub async fn claim_log_in_pages(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "claimlog", 10, 5).await?;
    let start = LogCursor::default();
    let page = inv.claim_log(&show, &start, 10).await.map_err(err)?;
    ensure(
        page.entries.is_empty() && page.next == start,
        format!("a show that never went live has an empty log, got {page:?}"),
    )?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
    let a1 = accepted(claim(inv, &show, req("l1", "b1", "p1", 2, LIST)?, T0 + 1).await?)?;
    let d = claim(inv, &show, req("l1", "b1", "p1", 2, LIST)?, T0 + 2).await?;
    ensure(
        matches!(d, ClaimDecision::Duplicate(_)),
        "the retry is a duplicate",
    )?;
    for (r, why) in [
        (
            req("l2", "b2", "p1", 1, LIST - 1)?,
            RefusalReason::StalePrice,
        ),
        (req("l1", "b2", "p1", 1, LIST)?, RefusalReason::ClaimIdTaken),
        (req("l3", "b2", "p2", 1, LIST)?, RefusalReason::NotPinned),
        (
            req("l3", "b2", "p1", 6, LIST)?,
            RefusalReason::LimitExceeded,
        ),
    ] {
        let d = inv.claim(&show, r, T0 + 2).await.map_err(err)?;
        ensure(
            refused(&d) == Some(why),
            format!("{why:?} expected, got {d:?}"),
        )?;
    }
    let a2 = accepted(claim(inv, &show, req("l4", "b2", "p1", 3, LIST)?, T0 + 3).await?)?;
    let b1 = BuyerId::parse("b1").map_err(err)?;
    let b2 = BuyerId::parse("b2").map_err(err)?;
    let l1 = ClaimId::parse("l1").map_err(err)?;
    let cancelled = match cancel(inv, &show, &b1, &l1, T0 + 4).await? {
        CancelDecision::Cancelled { record, .. } => record,
        other => return Err(format!("expected cancelled, got {other:?}")),
    };
    ensure(
        matches!(
            cancel(inv, &show, &b1, &l1, T0 + 5).await?,
            CancelDecision::AlreadyCancelled { .. }
        ),
        "cancelling again changes nothing",
    )?;
    ensure(
        cancel(inv, &show, &b2, &l1, T0 + 5).await? == CancelDecision::UnknownClaim,
        "another buyer's cancel changes nothing",
    )?;
    inv.command(&show, Command::Pin(pid("p2")), T0 + 6)
        .await
        .map_err(err)?;
    let a3 = accepted(claim(inv, &show, req("l5", "b1", "p2", 1, LIST)?, T0 + 7).await?)?;
    // The cancellation carries the claim's own terms and time, and when it was cancelled.
    ensure(
        ClaimRecord {
            cancelled_at: None,
            ..cancelled.clone()
        } == a1
            && cancelled.cancelled_at == Some(T0 + 4),
        format!("the cancelled record {cancelled:?} is the claim {a1:?}"),
    )?;
    let decided = vec![
        LogEntry::Claim { pos: 0, record: a1 },
        LogEntry::Claim { pos: 1, record: a2 },
        LogEntry::Cancel {
            pos: 2,
            record: cancelled,
            at: T0 + 4,
        },
        LogEntry::Claim { pos: 3, record: a3 },
    ];

    let (entries, open_end) = read_all(inv, &show, &start, 2).await?;
    ensure(
        entries == decided,
        format!("while live, the log is the decisions: {entries:?}"),
    )?;
    for limit in [1, 1000] {
        let (again, end) = read_all(inv, &show, &start, limit).await?;
        ensure(
            again == decided && end == open_end,
            format!("pages of {limit} read the same log: {again:?}"),
        )?;
    }

    let evs = inv
        .command(&show, Command::Close, T0 + 20)
        .await
        .map_err(err)?;
    let closed_stock = evs.iter().find_map(|e| match &e.event {
        ShowEvent::ShowClosed { final_stock } => Some(final_stock.clone()),
        _ => None,
    });
    let view = inv.view(&show, None, T0 + 21).await.map_err(err)?;
    let stock: Vec<(ProductId, u32)> = view
        .lineup
        .iter()
        .map(|e| (e.product.id.clone(), e.left))
        .collect();
    ensure(
        closed_stock.as_ref() == Some(&stock),
        "the close event carries the stock left",
    )?;
    let marker = LogEntry::Close {
        pos: 4,
        at: T0 + 20,
        final_stock: stock,
    };
    let page = inv.claim_log(&show, &open_end, 2).await.map_err(err)?;
    ensure(
        page.entries == [marker.clone()] && page.close() == Some(&marker),
        format!(
            "after close the next page is the marker alone, got {:?}",
            page.entries
        ),
    )?;
    let after = inv.claim_log(&show, &page.next, 2).await.map_err(err)?;
    ensure(
        after.entries.is_empty() && after.next == page.next,
        format!("nothing follows the marker, got {after:?}"),
    )?;
    let mut whole = decided;
    whole.push(marker);
    // A page of 4 is full before the marker, which comes alone on the next.
    for limit in [1, 2, 3, 4, 5, 1000] {
        let (all, end) = read_all(inv, &show, &start, limit).await?;
        ensure(
            all == whole && end == page.next,
            format!("pages of {limit} after close: {all:?}"),
        )?;
    }
    Ok(())
}

/// A show the backend holds nothing for (never opened, or released and gone) is unknown to
/// every read and command, and none of them creates it.
pub async fn an_unknown_show(inv: &dyn Inventory, prefix: &str) -> R {
    let show = ShowId::parse(format!("{prefix}-never-opened")).map_err(err)?;
    let unknown = |r: Result<(), InventoryError>, what: &str| {
        ensure(
            matches!(&r, Err(InventoryError::UnknownShow(s)) if s == &show),
            format!("{what} of a show the backend never held: {r:?}"),
        )
    };
    for limit in [0, 10] {
        let r = inv.claim_log(&show, &LogCursor::default(), limit).await;
        unknown(r.map(drop), &format!("the log, {limit} entries"))?;
    }
    unknown(inv.view(&show, None, T0).await.map(drop), "the view")?;
    unknown(inv.stock(&show, 0).await.map(drop), "the stock")?;
    let who = buyer("b1")?;
    unknown(
        inv.buyer_view(&show, &who).await.map(drop),
        "a buyer's part",
    )?;
    for cmd in [Command::Close, Command::GoLive] {
        let r = inv.command(&show, cmd.clone(), T0).await;
        unknown(r.map(drop), &format!("{cmd:?}"))?;
    }
    unknown(
        inv.claim_log(&show, &LogCursor::default(), 10)
            .await
            .map(drop),
        "the log after commands",
    )?;
    Ok(())
}

/// Many shows' standings in one read: in the order asked, each as its view has it, `None` for
/// a show the backend never held.
pub async fn standings_of_many_shows(inv: &dyn Inventory, prefix: &str) -> R {
    let live = open(inv, prefix, "standing-live", 5, 3).await?;
    let new = open(inv, prefix, "standing-new", 4, 3).await?;
    let never = ShowId::parse(format!("{prefix}-standing-never")).map_err(err)?;
    for cmd in [Command::GoLive, Command::Pin(pid("p2"))] {
        inv.command(&live, cmd, T0).await.map_err(err)?;
    }
    On { inv, show: &live }
        .accept(req("s1", "b1", "p2", 2, LIST)?, T0)
        .await?;
    ensure(
        inv.standings(&[]).await.map_err(err)?.is_empty(),
        "no shows asked, none answered",
    )?;
    let got = inv
        .standings(&[new.clone(), never.clone(), live.clone()])
        .await
        .map_err(err)?;
    let [Some(new_s), None, Some(live_s)] = got.as_slice() else {
        return Err(format!("standings of new, never opened, live: {got:?}"));
    };
    for (show, s) in [(&new, new_s), (&live, live_s)] {
        let view = inv.view(show, None, T0).await.map_err(err)?;
        let stock: Vec<_> = view
            .lineup
            .iter()
            .map(|e| (e.product.id.clone(), e.left))
            .collect();
        ensure(
            s.status == view.status && s.seq == view.seq && s.stock == stock,
            format!("standing of {show} agrees with its view: {s:?} vs {view:?}"),
        )?;
    }
    ensure(
        live_s.status == ShowStatus::Live
            && live_s.seq == 2
            && live_s.stock == [(pid("p1"), 5), (pid("p2"), 3)],
        format!("the live show: {live_s:?}"),
    )?;
    ensure(
        new_s.status == ShowStatus::Scheduled
            && new_s.seq == 0
            && new_s.stock == [(pid("p1"), 4), (pid("p2"), 4)],
        format!("the scheduled show: {new_s:?}"),
    )
}

/// Release comes after the close marker: refused before, idempotent after, and it changes
/// nothing a reader sees while the keys are kept.
pub async fn release_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let keep = Duration::from_secs(600);
    let refused_release = |r: Result<(), InventoryError>| {
        matches!(
            r,
            Err(InventoryError::Command(CommandError::BadTransition { .. }))
        )
    };
    let show = open(inv, prefix, "release", 5, 5).await?;
    ensure(
        refused_release(inv.release(&show, keep).await),
        "a scheduled show is not released",
    )?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
    accepted(claim(inv, &show, req("z1", "b1", "p1", 1, LIST)?, T0).await?)?;
    ensure(
        refused_release(inv.release(&show, keep).await),
        "a live show is not released",
    )?;
    inv.command(&show, Command::Close, T0 + 1)
        .await
        .map_err(err)?;
    let (before, _) = read_all(inv, &show, &LogCursor::default(), 10).await?;
    ensure(
        before.len() == 2,
        format!("a claim and the marker: {before:?}"),
    )?;
    inv.release(&show, keep).await.map_err(err)?;
    inv.release(&show, keep).await.map_err(err)?;
    let (after, _) = read_all(inv, &show, &LogCursor::default(), 10).await?;
    ensure(after == before, "the log reads the same after release")?;
    // Opening a closed show again resets nothing.
    inv.open_show(&show, lineup(5, 5)?).await.map_err(err)?;
    let view = inv.view(&show, None, T0 + 2).await.map_err(err)?;
    ensure(
        view.status == ShowStatus::Closed && view.lineup.first().map(|e| e.left) == Some(4),
        format!("reopening a released show keeps it closed: {view:?}"),
    )?;
    let unknown = ShowId::parse(format!("{prefix}-never-opened")).map_err(err)?;
    inv.release(&unknown, keep).await.map_err(err)?;
    Ok(())
}

/// The claim log of a show `writer` served, read through `reader`, an instance over the same
/// storage that never opened the show (the order service's view): the same entries, the close
/// marker included, and the same release rules.
pub async fn claim_log_from_another_instance(
    writer: &dyn Inventory,
    reader: &dyn Inventory,
    prefix: &str,
) -> R {
    let show = ShowId::parse(format!("{prefix}-elsewhere")).map_err(err)?;
    writer.open_show(&show, lineup(10, 5)?).await.map_err(err)?;
    writer
        .command(&show, Command::GoLive, T0)
        .await
        .map_err(err)?;
    writer
        .command(&show, Command::Pin(pid("p2")), T0)
        .await
        .map_err(err)?;
    for (n, buyer) in ["b1", "b2", "b3"].iter().enumerate() {
        accepted(
            writer
                .claim(
                    &show,
                    req(&format!("e{n}"), buyer, "p2", 2, LIST)?,
                    T0 + n as i64,
                )
                .await
                .map_err(err)?,
        )?;
    }
    let b2 = BuyerId::parse("b2").map_err(err)?;
    let e1 = ClaimId::parse("e1").map_err(err)?;
    cancel(writer, &show, &b2, &e1, T0 + 9).await?;
    let start = LogCursor::default();
    let (live, _) = read_all(reader, &show, &start, 2).await?;
    let (served, _) = read_all(writer, &show, &start, 1000).await?;
    ensure(
        live.len() == 4 && live == served,
        format!("the other instance reads {live:?}, the serving one {served:?}"),
    )?;
    ensure(
        matches!(
            reader.release(&show, Duration::from_secs(600)).await,
            Err(InventoryError::Command(_))
        ),
        "the other instance does not release a live show",
    )?;
    writer
        .command(&show, Command::Close, T0 + 10)
        .await
        .map_err(err)?;
    let (closed, _) = read_all(reader, &show, &start, 3).await?;
    let (served, _) = read_all(writer, &show, &start, 1000).await?;
    ensure(
        closed.len() == 5
            && closed == served
            && matches!(closed.last(), Some(LogEntry::Close { pos: 4, .. })),
        format!("after close the other instance reads {closed:?}, the serving one {served:?}"),
    )?;
    reader
        .release(&show, Duration::from_secs(600))
        .await
        .map_err(err)?;
    Ok(())
}

// ----- waitlist ----------------------------------------------------------------------------------

async fn join(
    inv: &dyn Inventory,
    show: &ShowId,
    who: &str,
    product: &str,
    q: u32,
    at: i64,
) -> Result<JoinDecision, String> {
    inv.waitlist_join(
        show,
        WaitlistJoin {
            buyer: buyer(who)?,
            product: pid(product),
            quantity: qty(q)?,
            now: at,
        },
    )
    .await
    .map_err(err)
}

fn joined(d: &JoinDecision, position: u32, what: &str) -> Result<WaitlistEntry, String> {
    match d {
        JoinDecision::Joined { entry, position: p } if *p == position => Ok(entry.clone()),
        other => Err(format!(
            "{what}: expected joined at {position}, got {other:?}"
        )),
    }
}

async fn cancel_of(
    inv: &dyn Inventory,
    show: &ShowId,
    who: &str,
    claim: &str,
    at: i64,
) -> Result<(u32, Vec<WaitlistOutcome>), String> {
    let d = cancel(
        inv,
        show,
        &buyer(who)?,
        &ClaimId::parse(claim).map_err(err)?,
        at,
    )
    .await?;
    match d {
        CancelDecision::Cancelled {
            stock_left,
            waitlist,
            ..
        } => Ok((stock_left, waitlist)),
        other => Err(format!("cancel of {claim}: {other:?}")),
    }
}

/// Joining (refusals, positions, idempotent rejoin), leaving, a promotion at the current price
/// that is an ordinary claim (claim log, the buyer's claims, the node notice), a skip for a price
/// that rose, the bound, and the close clearing every list.
pub async fn waitlist_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "waitlist", 2, 3).await?;
    ensure(
        join(inv, &show, "w1", "p1", 1, T0).await?
            == JoinDecision::Refused(WaitlistRefusal::ShowNotLive),
        "no waitlist before live",
    )?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
    ensure(
        join(inv, &show, "w1", "p1", 1, T0).await?
            == JoinDecision::Refused(WaitlistRefusal::NotSoldOut),
        "units left: not_sold_out",
    )?;
    ensure(
        join(inv, &show, "w1", "nope", 1, T0).await?
            == JoinDecision::Refused(WaitlistRefusal::UnknownProduct),
        "a product outside the lineup",
    )?;
    accepted(claim(inv, &show, req("a1", "a", "p1", 1, LIST)?, T0).await?)?;
    accepted(claim(inv, &show, req("a2", "a", "p1", 1, LIST)?, T0).await?)?;

    let w1 = joined(&join(inv, &show, "w1", "p1", 1, T0 + 1).await?, 1, "w1")?;
    ensure(w1.price.get() == LIST && w1.quantity == 1, "w1's entry")?;
    let w2 = joined(&join(inv, &show, "w2", "p1", 2, T0 + 2).await?, 2, "w2")?;
    joined(&join(inv, &show, "w3", "p1", 1, T0 + 3).await?, 3, "w3")?;
    match join(inv, &show, "w2", "p1", 1, T0 + 4).await? {
        JoinDecision::AlreadyWaiting { entry, position: 2 } if entry == w2 => {}
        other => {
            return Err(format!(
                "rejoining answers the same entry and place: {other:?}"
            ));
        }
    }
    ensure(
        join(inv, &show, "a", "p1", 2, T0).await?
            == JoinDecision::Refused(WaitlistRefusal::LimitExceeded),
        "holding 2 of 3, waiting for 2 more is over the limit",
    )?;
    let view = view_of(inv, &show, "w3", T0).await?;
    ensure(
        view.my_waitlist.len() == 1 && view.my_waitlist[0].1 == 3,
        format!("w3 sees its place, got {:?}", view.my_waitlist),
    )?;
    let gone = leave(inv, &show, &buyer("w3")?, Some(&pid("p1")), T0).await?;
    ensure(gone.len() == 1, "w3 leaves")?;
    let gone = leave(inv, &show, &buyer("w3")?, Some(&pid("p1")), T0).await?;
    ensure(gone.is_empty(), "leaving again is fine")?;
    ensure(
        matches!(
            inv.waitlist_leave(
                &show,
                WaitlistLeave {
                    buyer: buyer("w3")?,
                    product: Some(pid("nope")),
                    now: T0
                }
            )
            .await,
            Err(InventoryError::Command(CommandError::UnknownProduct(_)))
        ),
        "leaving a product outside the lineup",
    )?;
    let view = view_of(inv, &show, "w3", T0).await?;
    ensure(view.my_waitlist.is_empty(), "w3 waits no more")?;

    // The price drops; one unit comes back: w1 gets it at the flash price, w2 (2 units) waits.
    let flash = FlashSpec {
        product_id: pid("p1"),
        price: Dong::parse(LIST - 20_000).map_err(err)?,
        duration_s: 600,
        quantity_cap: None,
        countdown_s: 0,
    };
    inv.command(&show, Command::StartFlash(flash), T0 + 10)
        .await
        .map_err(err)?;
    let log_before = inv.stock(&show, 0).await.map_err(err)?.log_len;
    let (left, out) = cancel_of(inv, &show, "a", "a1", T0 + 20).await?;
    let promoted = match out.as_slice() {
        [WaitlistOutcome::Promoted { entry, record, .. }] if entry == &w1 => record.clone(),
        other => return Err(format!("w1 promoted, got {other:?}")),
    };
    ensure(left == 0, format!("the unit went to w1, {left} left"))?;
    ensure(
        promoted.claim_id.as_str() == format!("{PROMOTED_CLAIM_PREFIX}{}", w1.number)
            && promoted.buyer == w1.buyer
            && promoted.quantity == 1
            && promoted.unit_price.get() == LIST - 20_000
            && promoted.flash_id.is_some()
            && promoted.at == T0 + 20,
        format!("the promotion is a claim at the current price: {promoted:?}"),
    )?;
    let view = view_of(inv, &show, "w1", T0 + 20).await?;
    ensure(
        view.my_claims == vec![promoted.clone()] && view.my_waitlist.is_empty(),
        format!("w1 holds the claim and waits no more: {view:?}"),
    )?;
    let view = view_of(inv, &show, "w2", T0 + 20).await?;
    ensure(
        view.my_waitlist.len() == 1 && view.my_waitlist[0].1 == 1,
        "w2 moved up to the head",
    )?;
    let (log, _) = read_all(inv, &show, &LogCursor::default(), 100).await?;
    ensure(
        matches!(&log[log_before as usize..], [LogEntry::Cancel { .. }, LogEntry::Claim { record, .. }] if record == &promoted),
        format!(
            "the claim log holds the cancel, then the promoted claim: {:?}",
            &log[log_before as usize..]
        ),
    )?;
    let stock = inv.stock(&show, log_before).await.map_err(err)?;
    ensure(
        stock.waitlist.len() == 1
            && stock.waitlist[0].pos == log_before
            && matches!(&stock.waitlist[0].outcome, WaitlistOutcome::Promoted { record, .. } if record == &promoted)
            && stock.recent.iter().any(|c| c == &promoted),
        format!("the nodes see the promotion: {:?}", stock.waitlist),
    )?;
    let later = inv.stock(&show, stock.log_len).await.map_err(err)?;
    ensure(
        later.waitlist.is_empty(),
        "a notice is seen once from its position",
    )?;
    let d = cancel(
        inv,
        &show,
        &buyer("a")?,
        &ClaimId::parse("a1").map_err(err)?,
        T0 + 21,
    )
    .await?;
    ensure(
        matches!(d, CancelDecision::AlreadyCancelled { .. }),
        "cancelling again promotes nobody",
    )?;

    // w4 joins at the flash price; the flash ends; the next unit back skips w4 (price rose)
    // and passes over w2 (wants 2): the unit stays in stock.
    let w4 = joined(&join(inv, &show, "w4", "p1", 1, T0 + 30).await?, 2, "w4")?;
    ensure(
        w4.price.get() == LIST - 20_000,
        "w4 joined at the flash price",
    )?;
    inv.command(
        &show,
        Command::EndFlash {
            reason: EndReason::EndedBySeller,
            only: None,
        },
        T0 + 40,
    )
    .await
    .map_err(err)?;
    let (left, out) = cancel_of(inv, &show, "a", "a2", T0 + 50).await?;
    ensure(
        matches!(out.as_slice(), [WaitlistOutcome::Skipped { entry, reason: SkipReason::PriceRose }] if entry == &w4),
        format!("w4 skipped for the price, got {out:?}"),
    )?;
    ensure(left == 1, "the unit nobody could take stays in stock")?;
    let view = view_of(inv, &show, "w2", T0 + 50).await?;
    ensure(view.my_waitlist.len() == 1, "w2 keeps its place")?;

    // The bound, on the other product.
    inv.command(&show, Command::Pin(pid("p2")), T0 + 60)
        .await
        .map_err(err)?;
    accepted(claim(inv, &show, req("x1", "x", "p2", 2, LIST)?, T0 + 60).await?)?;
    for n in 0..MAX_WAITLIST_PER_PRODUCT {
        joined(
            &join(inv, &show, &format!("q{n}"), "p2", 1, T0 + 61).await?,
            n as u32 + 1,
            "filling the list",
        )?;
    }
    ensure(
        join(inv, &show, "late", "p2", 1, T0 + 62).await?
            == JoinDecision::Refused(WaitlistRefusal::WaitlistFull),
        "the list is bounded",
    )?;
    // Leaving the show leaves every list.
    let gone = leave(inv, &show, &buyer("q1")?, None, T0 + 64).await?;
    ensure(gone.len() == 1, "q1 leaves the show's lists")?;

    inv.command(&show, Command::Close, T0 + 70)
        .await
        .map_err(err)?;
    for who in ["w2", "q5"] {
        let view = inv
            .view(&show, Some(&buyer(who)?), T0 + 70)
            .await
            .map_err(err)?;
        ensure(
            view.my_waitlist.is_empty(),
            format!("close cleared {who}'s place"),
        )?;
    }
    ensure(
        join(inv, &show, "w9", "p1", 1, T0 + 71).await?
            == JoinDecision::Refused(WaitlistRefusal::ShowNotLive),
        "no waitlist after close",
    )?;
    Ok(())
}

/// A waiting buyer whose own claims meanwhile left no room in its limit is skipped.
pub async fn waitlist_limit_skip(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open_live(inv, prefix, "waitlimit", 4, 3, "p1").await?;
    accepted(claim(inv, &show, req("b1", "b", "p1", 1, LIST)?, T0).await?)?;
    accepted(claim(inv, &show, req("a1", "a", "p1", 1, LIST)?, T0).await?)?;
    accepted(claim(inv, &show, req("a2", "a", "p1", 2, LIST)?, T0).await?)?;
    let b = joined(&join(inv, &show, "b", "p1", 2, T0).await?, 1, "b")?;
    let (left, out) = cancel_of(inv, &show, "a", "a1", T0 + 1).await?;
    ensure(
        out.is_empty() && left == 1,
        format!("one unit back does not fit b's two: {out:?}, {left} left"),
    )?;
    accepted(claim(inv, &show, req("b2", "b", "p1", 1, LIST)?, T0 + 2).await?)?;
    let (left, out) = cancel_of(inv, &show, "a", "a2", T0 + 3).await?;
    ensure(
        matches!(out.as_slice(), [WaitlistOutcome::Skipped { entry, reason: SkipReason::LimitExceeded }] if entry == &b),
        format!("b skipped for its limit, got {out:?}"),
    )?;
    ensure(left == 2, "both units stay in stock")?;
    Ok(())
}

/// Buyers claim, cancel and join the waitlist at once: units held always equal the allotment
/// less stock left, every promotion is in the claim log, and nobody passes its limit.
pub async fn waitlists_never_oversell(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    const STOCK: u32 = 3;
    const LIMIT: u32 = 2;
    let show = open_live(inv.as_ref(), prefix, "waitrace", STOCK, LIMIT, "p1").await?;
    let mut tasks = Vec::new();
    for b in 0..12u32 {
        let inv = inv.clone();
        let show = show.clone();
        tasks.push(tokio::spawn(async move {
            let who = buyer(&format!("r{b}"))?;
            for n in 0..8u32 {
                let at = T0 + i64::from(n);
                let d = inv
                    .claim(
                        &show,
                        req(&format!("r{b}-{n}"), who.as_str(), "p1", 1, LIST)?,
                        at,
                    )
                    .await
                    .map_err(err)?;
                match d {
                    ClaimDecision::Accepted(a) if n % 2 == 0 => {
                        cancel(&*inv, &show, &who, &a.record.claim_id, at).await?;
                    }
                    ClaimDecision::Refused(_) => {
                        inv.waitlist_join(
                            &show,
                            WaitlistJoin {
                                buyer: who.clone(),
                                product: pid("p1"),
                                quantity: qty(1)?,
                                now: at,
                            },
                        )
                        .await
                        .map_err(err)?;
                    }
                    _ => {}
                }
                // Some of the time, give up waiting.
                if n % 3 == 2 {
                    leave(&*inv, &show, &who, None, at).await?;
                }
            }
            // Let go of everything held, so units move through the waitlist to the end.
            for c in inv
                .view(&show, Some(&who), T0 + 9)
                .await
                .map_err(err)?
                .my_claims
            {
                if c.cancelled_at.is_none() && b % 2 == 0 {
                    cancel(&*inv, &show, &who, &c.claim_id, T0 + 9).await?;
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(err)??;
    }
    let (log, _) = read_all(inv.as_ref(), &show, &LogCursor::default(), 1000).await?;
    let mut held: std::collections::HashMap<(BuyerId, ProductId), i64> = Default::default();
    let mut promotions = 0;
    let mut promoted_ids = std::collections::HashSet::new();
    for e in &log {
        match e {
            LogEntry::Claim { record, .. } => {
                if record.claim_id.as_str().starts_with(PROMOTED_CLAIM_PREFIX) {
                    promotions += 1;
                    promoted_ids.insert(record.claim_id.clone());
                }
                *held
                    .entry((record.buyer.clone(), record.product_id.clone()))
                    .or_default() += i64::from(record.quantity);
            }
            LogEntry::Cancel { record, .. } => {
                *held
                    .entry((record.buyer.clone(), record.product_id.clone()))
                    .or_default() -= i64::from(record.quantity);
            }
            LogEntry::Close { .. } => {}
        }
        let over = held.iter().find(|(_, h)| **h < 0 || **h > i64::from(LIMIT));
        ensure(over.is_none(), format!("held out of range: {over:?}"))?;
    }
    let stock = inv.stock(&show, 0).await.map_err(err)?;
    let left = stock
        .levels
        .iter()
        .find(|(p, _)| p.as_str() == "p1")
        .map_or(0, |(_, l)| *l);
    let held_p1: i64 = held
        .iter()
        .filter(|((_, p), _)| p.as_str() == "p1")
        .map(|(_, h)| *h)
        .sum();
    ensure(
        held_p1 + i64::from(left) == i64::from(STOCK),
        format!("held {held_p1} + left {left} != allotted {STOCK}"),
    )?;
    // Whether this interleaving promoted anyone depends on timing (waitlist_rules promotes
    // deterministically); what must hold is that no waiting entry was promoted twice.
    ensure(
        promoted_ids.len() == promotions,
        format!("a promotion claim id appears twice among {promotions} promotions"),
    )?;
    Ok(())
}

/// For an inventory on [`DecisionClock::Execution`](crate::DecisionClock): every rule is judged
/// when the step executes, whatever `now` its caller passes — a claim sent during a flash and
/// executed after it is not accepted at the flash price — and a claim whose deadline has passed
/// changes nothing, while its id, once taken, still answers. Takes about a second (a flash of
/// the shortest duration runs out).
pub async fn decided_at_execution(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "clock", 10, 10).await?;
    // The caller's clock says 1970: an execution clock ignores it.
    inv.command(&show, Command::GoLive, 0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), 0)
        .await
        .map_err(err)?;
    let spec = FlashSpec {
        product_id: pid("p1"),
        price: Dong::parse(99_000).map_err(err)?,
        duration_s: 1,
        quantity_cap: None,
        countdown_s: 0,
    };
    let before = wall_ms();
    let events = inv
        .command(&show, Command::StartFlash(spec), 0)
        .await
        .map_err(err)?;
    let flash = events
        .iter()
        .find_map(|e| match &e.event {
            ShowEvent::FlashStarted { flash } => Some(flash.clone()),
            _ => None,
        })
        .ok_or("starting a flash emits flash_started")?;
    ensure(
        flash.starts_at >= before - 1_000 && flash.starts_at <= wall_ms() + 1_000,
        format!(
            "the flash starts on the execution clock ({} vs about {before})",
            flash.starts_at
        ),
    )?;
    // Sent while the flash runs, executed after it ended: the time it was sent decides nothing.
    let sent = wall_ms();
    nightmarket_store::testing::eventually("the flash over on the inventory's clock", || async {
        let view = inv.view(&show, None, sent).await.map_err(err)?;
        ensure(
            view.price.map(Dong::get) == Some(LIST),
            format!("{:?}", view.price),
        )
    })
    .await;
    let d = claim(inv, &show, req("late-flash", "b1", "p1", 1, 99_000)?, sent).await?;
    ensure(
        matches!(&d, ClaimDecision::Refused(r) if r.reason == RefusalReason::StalePrice
            && r.current_price.map(Dong::get) == Some(LIST)),
        format!("a flash-price claim executed after the flash ended is stale: {d:?}"),
    )?;
    let view = inv.view(&show, None, sent).await.map_err(err)?;
    ensure(
        view.price.map(Dong::get) == Some(LIST),
        "the view's price is judged on the execution clock",
    )?;
    let d = claim(inv, &show, req("late-list", "b1", "p1", 1, LIST)?, sent).await?;
    ensure(
        matches!(&d, ClaimDecision::Accepted(a) if a.record.flash_id.is_none()
            && a.record.at >= flash.ends_at),
        format!("a list-price claim is recorded at the time it executed: {d:?}"),
    )?;

    // Past its deadline: refused before anything changes, and it stays that way.
    let past = wall_ms() - 1_000;
    let too_late = Claim {
        req: req("too-late", "b2", "p1", 1, LIST)?,
        now: 0,
        deadline: Some(past),
    };
    let r = inv.claim_within(&show, too_late.clone()).await;
    ensure(
        matches!(r, Err(InventoryError::DeadlinePassed)),
        format!("a claim past its deadline is refused: {r:?}"),
    )?;
    let r = inv.claim_within(&show, too_late).await;
    ensure(
        matches!(r, Err(InventoryError::DeadlinePassed)),
        format!("and again, with the same deadline: {r:?}"),
    )?;
    let stock = inv.stock(&show, 0).await.map_err(err)?;
    ensure(
        stock.levels.first().map(|l| l.1) == Some(9) && stock.log_len == 1,
        format!("an expired claim takes nothing: {:?}", stock.levels),
    )?;
    // A claim that did execute answers with its original acceptance, deadline or not: sending
    // it again is how a caller learns what became of it.
    let r = inv
        .claim_within(
            &show,
            Claim {
                req: req("late-list", "b1", "p1", 1, LIST)?,
                now: 0,
                deadline: Some(past),
            },
        )
        .await;
    ensure(
        matches!(r, Ok(ClaimDecision::Duplicate(_))),
        format!("an executed claim past its deadline is a duplicate: {r:?}"),
    )?;
    let r = inv
        .claim_within(
            &show,
            Claim {
                req: req("in-time", "b2", "p1", 1, LIST)?,
                now: 0,
                deadline: Some(wall_ms() + 60_000),
            },
        )
        .await;
    ensure(
        matches!(r, Ok(ClaimDecision::Accepted(_))),
        format!("a claim within its deadline is decided: {r:?}"),
    )?;
    Ok(())
}

/// Claims that arrive together on one show (the Redis inventory decides them in batches, many
/// to a script call) are decided as if one after another: each answer is true of the moment it
/// was decided, no unit is sold twice, a claim id sent twice at once or again later counts
/// once, and a claim past its deadline answers expired without touching the claims decided
/// with it.
pub async fn claims_together_decide_one_after_another(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    const STOCK: u32 = 60;
    const LIMIT: u32 = 3;
    const BUYERS: u32 = 40;
    let show = open_live(inv.as_ref(), prefix, "together", STOCK, LIMIT, "p1").await?;

    // Past their deadline and within it, interleaved, at once: only the second kind executes.
    let early: Vec<(bool, _)> = (0..12u32)
        .map(|n| {
            Ok((
                n % 2 == 0,
                req(&format!("d{n}"), &format!("d{n}"), "p1", 1, LIST)?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let sent = |late: bool, req: &ClaimRequest| Claim {
        req: req.clone(),
        now: T0,
        deadline: Some(if late { T0 - 1 } else { T0 + 60_000 }),
    };
    let answers = futures_util::future::join_all(
        early
            .iter()
            .map(|(late, r)| inv.claim_within(&show, sent(*late, r))),
    )
    .await;
    for ((late, r), answer) in early.iter().zip(&answers) {
        let fits = if *late {
            matches!(answer, Err(InventoryError::DeadlinePassed))
        } else {
            matches!(answer, Ok(ClaimDecision::Accepted(_)))
        };
        ensure(
            fits,
            format!("{} (late: {late}) answered {answer:?}", r.claim_id),
        )?;
    }
    for (late, r) in early.iter().filter(|(late, _)| *late) {
        let again = inv.claim_within(&show, sent(*late, r)).await;
        ensure(
            matches!(again, Err(InventoryError::DeadlinePassed)),
            format!("{} sent again is still expired: {again:?}", r.claim_id),
        )?;
    }
    let taken_early = 6;

    // Every buyer claims twice, and every claim is sent twice at once.
    let mut sent = Vec::new();
    for b in 0..BUYERS {
        for n in 0..2 {
            let r = req(
                &format!("t{b}-{n}"),
                &format!("b{b}"),
                "p1",
                1 + (b + n) % LIMIT,
                LIST,
            )?;
            sent.push(r.clone());
            sent.push(r);
        }
    }
    let answers = futures_util::future::join_all(sent.iter().map(|r| {
        inv.claim_within(
            &show,
            Claim {
                req: r.clone(),
                now: T0,
                deadline: Some(T0 + 60_000),
            },
        )
    }))
    .await;
    let mut decided = Vec::new();
    for (pair, got) in sent.chunks(2).zip(answers.chunks(2)) {
        let (r, first, second) = (&pair[0], &got[0], &got[1]);
        let record = match (first, second) {
            (Ok(ClaimDecision::Accepted(a)), Ok(ClaimDecision::Duplicate(d)))
            | (Ok(ClaimDecision::Duplicate(d)), Ok(ClaimDecision::Accepted(a)))
                if a.record == d.record =>
            {
                Some(a.clone())
            }
            (Ok(ClaimDecision::Refused(_)), Ok(ClaimDecision::Refused(_))) => None,
            other => {
                return Err(format!(
                    "{} sent twice at once: one acceptance and its duplicate, or two refusals; got {other:?}",
                    r.claim_id
                ));
            }
        };
        decided.push((r.clone(), record, [first, second]));
    }

    // The claim log orders the acceptances; each one's stock left is the stock after it and
    // every claim before it.
    let (log, _) = read_all(inv.as_ref(), &show, &LogCursor::default(), 50).await?;
    let mut left = STOCK;
    let mut held: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut order = Vec::new();
    for entry in &log {
        let LogEntry::Claim { record, .. } = entry else {
            return Err(format!("only claims in the log, got {entry:?}"));
        };
        left = left
            .checked_sub(record.quantity)
            .ok_or("more units accepted than allotted")?;
        let h = held.entry(record.buyer.to_string()).or_default();
        *h += record.quantity;
        ensure(*h <= LIMIT, format!("{} holds {h} > {LIMIT}", record.buyer))?;
        order.push((record.claim_id.clone(), left));
    }
    let accepted: Vec<&ClaimAccepted> = decided.iter().filter_map(|(_, a, _)| a.as_ref()).collect();
    ensure(
        order.len() == taken_early + accepted.len(),
        format!(
            "the log holds {} claims, {} were accepted",
            order.len(),
            taken_early + accepted.len()
        ),
    )?;
    for a in &accepted {
        let at = order.iter().find(|(id, _)| *id == a.record.claim_id);
        ensure(
            at.is_some_and(|(_, l)| *l == a.stock_left),
            format!(
                "{} answered {} left; the log says {at:?}",
                a.record.claim_id, a.stock_left
            ),
        )?;
    }
    let stock = inv.stock(&show, 0).await.map_err(err)?;
    ensure(
        stock.levels.first() == Some(&(pid("p1"), left)),
        format!("{left} left by the log, {:?} by the counters", stock.levels),
    )?;
    // A refusal is true of its moment: stock and limits only shrink here, so what it offered
    // is at least what is left now, and too little for what was asked.
    for (r, _, answers) in &decided {
        for answer in answers {
            let Ok(ClaimDecision::Refused(refusal)) = answer else {
                continue;
            };
            let asked = r.quantity.get();
            let now_left = LIMIT - held.get(r.buyer.as_str()).copied().unwrap_or(0);
            let true_then = match refusal.reason {
                RefusalReason::SoldOut => refusal.available.is_some_and(|a| a < asked && a >= left),
                RefusalReason::LimitExceeded => refusal
                    .limit_left
                    .is_some_and(|l| l < asked && l >= now_left),
                _ => false,
            };
            ensure(true_then, format!("{} refused {refusal:?}", r.claim_id))?;
        }
    }

    // Sent again later, every claim answers as it was decided.
    let again = futures_util::future::join_all(decided.iter().map(|(r, _, _)| {
        inv.claim_within(
            &show,
            Claim {
                req: r.clone(),
                now: T0 + 1,
                deadline: Some(T0 + 60_000),
            },
        )
    }))
    .await;
    for ((r, record, _), answer) in decided.iter().zip(&again) {
        let same = match (record, answer) {
            (Some(a), Ok(ClaimDecision::Duplicate(d))) => a.record == d.record,
            (None, Ok(ClaimDecision::Refused(_))) => true,
            _ => false,
        };
        ensure(
            same,
            format!("{} sent again answered {answer:?}", r.claim_id),
        )?;
    }
    let stock = inv.stock(&show, 0).await.map_err(err)?;
    ensure(
        stock.log_len == order.len() as u64,
        "resending took nothing more",
    )?;
    Ok(())
}
