//! The inventory conformance suite. Every [`Inventory`] implementation must pass [`run`]
//! unchanged: the memory one now, the Redis one in distributed mode. Show ids are prefixed so
//! one backend instance can run the suite repeatedly.

use std::sync::Arc;

use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, ClaimId, ClaimRequest, Dong, EndReason, FlashSpec,
    LineupEntry, Product, ProductGroup, ProductId, Quantity, RefusalReason, SellerId, ShowEvent,
    ShowId, ShowStatus, Stars,
};

use crate::{Command, Inventory, InventoryError};

type R = Result<(), String>;

const T0: i64 = 1_763_730_000_000;
const LIST: i64 = 120_000;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn ensure(cond: bool, what: impl Into<String>) -> R {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn product(id: &str) -> Result<Product, String> {
    Ok(Product {
        id: ProductId::parse(id).map_err(err)?,
        seller_id: SellerId::parse("seller-1").map_err(err)?,
        name: format!("Chè Shan tuyết {id}"),
        group: ProductGroup::Beverages,
        stars: Stars::parse(4).map_err(err)?,
        district: "Ba Vì".into(),
        commune: "Ba Vì".into(),
        producer: "HTX Chè Ba Vì".into(),
        list_price: Dong::parse(LIST).map_err(err)?,
        origin_document: "NG-01".into(),
        quality_label: "CL-01".into(),
        documents: Vec::new(),
    })
}

fn lineup(stock: u32, limit: u32) -> Result<Vec<LineupEntry>, String> {
    Ok(vec![
        LineupEntry {
            product: product("p1")?,
            allotted: stock,
            buyer_limit: limit,
            left: stock,
        },
        LineupEntry {
            product: product("p2")?,
            allotted: stock,
            buyer_limit: limit,
            left: stock,
        },
    ])
}

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("product ids in this suite are valid literals")
}

fn req(
    claim: &str,
    buyer: &str,
    product: &str,
    qty: u32,
    price: i64,
) -> Result<ClaimRequest, String> {
    Ok(ClaimRequest {
        claim_id: ClaimId::parse(claim).map_err(err)?,
        buyer: BuyerId::parse(buyer).map_err(err)?,
        product_id: ProductId::parse(product).map_err(err)?,
        quantity: Quantity::parse(i64::from(qty), 1_000).map_err(err)?,
        seen_price: Dong::parse(price).map_err(err)?,
    })
}

fn refused(d: &ClaimDecision) -> Option<RefusalReason> {
    match d {
        ClaimDecision::Refused(r) => Some(r.reason),
        _ => None,
    }
}

/// The shows [`run`] opens, as `<prefix>-<name>`: a Redis Cluster test uses them to check that
/// the suite's shows spread over several masters.
pub const SHOWS: [&str; 5] = ["lifecycle", "flash", "cancel", "race", "history"];

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

/// Runs every behaviour; the first disagreement is returned as text.
pub async fn run(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    lifecycle_and_refusals(inv.as_ref(), prefix).await?;
    flash_rules(inv.as_ref(), prefix).await?;
    cancel_rules(inv.as_ref(), prefix).await?;
    concurrent_claims_never_oversell(inv.clone(), prefix).await?;
    history_and_resume(inv.as_ref(), prefix).await?;
    an_unknown_show(inv.as_ref(), prefix).await?;
    Ok(())
}

async fn lifecycle_and_refusals(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "lifecycle", 5, 3).await?;
    // Opening again is a no-op.
    inv.open_show(&show, lineup(5, 3)?).await.map_err(err)?;

    let d = inv
        .claim(&show, req("c0", "b1", "p1", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::ShowNotLive),
        "claim before live is show_not_live",
    )?;

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

    let d = inv
        .claim(&show, req("c1", "b1", "p1", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::NotPinned),
        "claim of an unpinned product",
    )?;
    let d = inv
        .claim(&show, req("c1", "b1", "nope", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::UnknownProduct),
        "claim of a product not in the lineup",
    )?;

    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
    let d = inv
        .claim(&show, req("c1", "b1", "p1", 1, LIST - 1)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::StalePrice),
        "a price the viewer did not see now",
    )?;

    let d = inv
        .claim(&show, req("c1", "b1", "p1", 2, LIST)?, T0)
        .await
        .map_err(err)?;
    let ClaimDecision::Accepted(a) = d else {
        return Err(format!("expected accepted, got {d:?}"));
    };
    ensure(
        a.stock_left == 3 && a.record.unit_price.get() == LIST,
        "accepted at list price, 3 left",
    )?;

    // Idempotent: the same id answers the same, without taking stock again.
    let d = inv
        .claim(&show, req("c1", "b1", "p1", 2, LIST)?, T0 + 5)
        .await
        .map_err(err)?;
    ensure(
        matches!(&d, ClaimDecision::Duplicate(x) if x.record == a.record),
        "retry is a duplicate",
    )?;
    // Another buyer cannot reuse the id.
    let d = inv
        .claim(&show, req("c1", "b2", "p1", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::ClaimIdTaken),
        "claim id of another buyer",
    )?;

    let d = inv
        .claim(&show, req("c2", "b1", "p1", 2, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::LimitExceeded),
        "limit of 3 with 2 held",
    )?;
    let d = inv
        .claim(&show, req("c3", "b2", "p1", 3, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        matches!(d, ClaimDecision::Accepted(_)),
        "b2 takes the last 3",
    )?;
    let d = inv
        .claim(&show, req("c4", "b3", "p1", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        matches!(&d, ClaimDecision::Refused(r) if r.reason == RefusalReason::SoldOut && r.available == Some(0)),
        "sold out",
    )?;

    let evs = inv.command(&show, Command::Close, T0).await.map_err(err)?;
    let closed = evs.iter().any(|e| {
        matches!(&e.event, ShowEvent::ShowClosed { final_stock } if final_stock.iter().any(|(p, l)| p.as_str() == "p1" && *l == 0))
    });
    ensure(closed, "close carries the final stock")?;
    let d = inv
        .claim(&show, req("c5", "b4", "p2", 1, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::ShowNotLive),
        "no claim after close",
    )?;
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

async fn flash_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "flash", 100, 50).await?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
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
    let d = inv
        .claim(&show, req("f0", "b1", "p1", 1, 99_000)?, T0 + 1_000)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::StalePrice),
        "flash price before the countdown ends",
    )?;
    let t = T0 + 10_000;
    let d = inv
        .claim(&show, req("f1", "b1", "p1", 3, 99_000)?, t)
        .await
        .map_err(err)?;
    ensure(
        matches!(&d, ClaimDecision::Accepted(a) if a.record.flash_id.is_some() && a.flash_exhausted.is_none()),
        "flash claim",
    )?;
    let d = inv
        .claim(&show, req("f2", "b2", "p1", 3, 99_000)?, t)
        .await
        .map_err(err)?;
    ensure(
        matches!(&d, ClaimDecision::Refused(r) if r.reason == RefusalReason::SoldOut && r.available == Some(2)),
        "cap leaves 2 at the flash price; no partial fill",
    )?;
    let d = inv
        .claim(&show, req("f3", "b2", "p1", 2, 99_000)?, t)
        .await
        .map_err(err)?;
    let flash_id = match &d {
        ClaimDecision::Accepted(a) => a.flash_exhausted,
        _ => None,
    };
    ensure(
        flash_id.is_some(),
        "the claim that reaches the cap reports it",
    )?;
    let d = inv
        .claim(&show, req("f4", "b3", "p1", 1, 99_000)?, t)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::StalePrice),
        "cap reached: back to list price",
    )?;
    let d = inv
        .claim(&show, req("f5", "b3", "p1", 1, LIST)?, t)
        .await
        .map_err(err)?;
    ensure(
        matches!(d, ClaimDecision::Accepted(_)),
        "list price after the cap",
    )?;
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
    let d = inv
        .claim(&show, req("f6", "b4", "p1", 1, 90_000)?, t + 60_000)
        .await
        .map_err(err)?;
    ensure(
        refused(&d) == Some(RefusalReason::StalePrice),
        "flash over at ends_at",
    )?;
    let view = inv.view(&show, None, t + 1).await.map_err(err)?;
    ensure(
        view.price.map(Dong::get) == Some(90_000),
        "view shows the flash price while it runs",
    )?;
    Ok(())
}

async fn cancel_rules(inv: &dyn Inventory, prefix: &str) -> R {
    let show = open(inv, prefix, "cancel", 10, 5).await?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p2")), T0)
        .await
        .map_err(err)?;
    inv.claim(&show, req("k1", "b1", "p2", 4, LIST)?, T0)
        .await
        .map_err(err)?;
    let b1 = BuyerId::parse("b1").map_err(err)?;
    let b2 = BuyerId::parse("b2").map_err(err)?;
    let k1 = ClaimId::parse("k1").map_err(err)?;
    let d = inv.cancel(&show, &b2, &k1, T0).await.map_err(err)?;
    ensure(
        d == CancelDecision::UnknownClaim,
        "another buyer cannot cancel",
    )?;
    let d = inv.cancel(&show, &b1, &k1, T0).await.map_err(err)?;
    ensure(
        matches!(d, CancelDecision::Cancelled { stock_left: 10, .. }),
        "stock returns on cancel",
    )?;
    let d = inv.cancel(&show, &b1, &k1, T0).await.map_err(err)?;
    ensure(
        matches!(d, CancelDecision::AlreadyCancelled { stock_left: 10, .. }),
        "cancel is idempotent",
    )?;
    // The limit counts held units: after cancelling 4, the buyer may take 5 again.
    let d = inv
        .claim(&show, req("k2", "b1", "p2", 5, LIST)?, T0)
        .await
        .map_err(err)?;
    ensure(
        matches!(d, ClaimDecision::Accepted(_)),
        "limit freed by cancel",
    )?;
    inv.command(&show, Command::Close, T0).await.map_err(err)?;
    let k2 = ClaimId::parse("k2").map_err(err)?;
    let d = inv.cancel(&show, &b1, &k2, T0).await.map_err(err)?;
    ensure(d == CancelDecision::ShowNotLive, "no cancel after close")?;
    Ok(())
}

async fn concurrent_claims_never_oversell(inv: Arc<dyn Inventory>, prefix: &str) -> R {
    const STOCK: u32 = 500;
    let show = open(inv.as_ref(), prefix, "race", STOCK, 4).await?;
    inv.command(&show, Command::GoLive, T0).await.map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), T0)
        .await
        .map_err(err)?;
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

async fn history_and_resume(inv: &dyn Inventory, prefix: &str) -> R {
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

/// A show the backend holds nothing for is unknown to every read and command, and none of them
/// creates it.
async fn an_unknown_show(inv: &dyn Inventory, prefix: &str) -> R {
    let show = ShowId::parse(format!("{prefix}-never-opened")).map_err(err)?;
    let unknown = |r: Result<(), InventoryError>, what: &str| {
        ensure(
            matches!(&r, Err(InventoryError::UnknownShow(s)) if s == &show),
            format!("{what} of a show the backend never held: {r:?}"),
        )
    };
    unknown(inv.view(&show, None, T0).await.map(drop), "the view")?;
    unknown(inv.stock(&show, 0).await.map(drop), "the stock")?;
    for cmd in [Command::Close, Command::GoLive] {
        let r = inv.command(&show, cmd.clone(), T0).await;
        unknown(r.map(drop), &format!("{cmd:?}"))?;
    }
    unknown(
        inv.view(&show, None, T0).await.map(drop),
        "the view after commands",
    )?;
    Ok(())
}
