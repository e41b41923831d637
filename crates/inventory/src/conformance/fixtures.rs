//! What the conformance cases and the backends' own tests build shows and claims from: one
//! product family, one lineup shape, claims on its first product. Shared so that a test of a
//! backend's particulars (a lost reply, a replica, a legacy key) reads as what it checks rather
//! than as another copy of the setup.

use nightmarket_domain::{
    BuyerId, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest, Dong, LineupEntry, Millis, Product,
    ProductGroup, ProductId, Quantity, RefusalReason, SellerId, ShowId, Stars,
};

use crate::{Command, Inventory};

/// Every case starts its show at this (scripted) time.
pub const T0: Millis = 1_763_730_000_000;
/// The list price of every product here, in đồng.
pub const LIST: i64 = 120_000;
/// The largest quantity a request may carry here.
pub const MAX_QUANTITY: u32 = 1_000;

/// Any error as the suite's text.
pub fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `Ok` when `cond` holds, else what was expected.
pub fn ensure(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// An admitted tea product with id `id`, at [`LIST`].
pub fn product(id: &str) -> Result<Product, String> {
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

/// Products `p1` and `p2`, each `stock` units with a per-buyer `limit`.
pub fn lineup(stock: u32, limit: u32) -> Result<Vec<LineupEntry>, String> {
    ["p1", "p2"]
        .into_iter()
        .map(|id| Ok(LineupEntry::opening(product(id)?, stock, limit)))
        .collect()
}

/// A product id written as a literal in a test.
pub fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("product ids in the tests are valid literals")
}

/// A buyer id.
pub fn buyer(s: &str) -> Result<BuyerId, String> {
    BuyerId::parse(s).map_err(err)
}

/// A quantity of at most [`MAX_QUANTITY`].
pub fn qty(q: u32) -> Result<Quantity, String> {
    Quantity::parse(i64::from(q), MAX_QUANTITY).map_err(err)
}

/// A claim of `qty` units of `product` by `buyer`, at the price the viewer saw.
pub fn req(
    claim: &str,
    buyer: &str,
    product: &str,
    quantity: u32,
    price: i64,
) -> Result<ClaimRequest, String> {
    Ok(ClaimRequest {
        claim_id: ClaimId::parse(claim).map_err(err)?,
        buyer: BuyerId::parse(buyer).map_err(err)?,
        product_id: ProductId::parse(product).map_err(err)?,
        quantity: qty(quantity)?,
        seen_price: Dong::parse(price).map_err(err)?,
    })
}

/// The commonest claim: `quantity` units of `p1` at its list price.
pub fn claim(id: &str, buyer: &str, quantity: u32) -> Result<ClaimRequest, String> {
    req(id, buyer, "p1", quantity, LIST)
}

/// The refusal reason, if `d` is a refusal.
pub fn refused(d: &ClaimDecision) -> Option<RefusalReason> {
    match d {
        ClaimDecision::Refused(r) => Some(r.reason),
        _ => None,
    }
}

/// The record of an accepted claim; anything else is an error.
pub fn accepted(d: ClaimDecision) -> Result<ClaimRecord, String> {
    match d {
        ClaimDecision::Accepted(a) => Ok(a.record),
        other => Err(format!("expected accepted, got {other:?}")),
    }
}

/// Opens show `id` with [`lineup`]`(stock, limit)`, takes it live and pins `p1`, all at `now`.
pub async fn live_show(
    inv: &dyn Inventory,
    id: &str,
    stock: u32,
    limit: u32,
    now: Millis,
) -> Result<ShowId, String> {
    let show = ShowId::parse(id).map_err(err)?;
    inv.open_show(&show, lineup(stock, limit)?)
        .await
        .map_err(err)?;
    inv.command(&show, Command::GoLive, now)
        .await
        .map_err(err)?;
    inv.command(&show, Command::Pin(pid("p1")), now)
        .await
        .map_err(err)?;
    Ok(show)
}
