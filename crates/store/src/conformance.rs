//! The catalog conformance suite: every [`Catalog`] implementation must pass it unchanged.
//! Each engine's test calls [`run`] with a fresh, empty catalog.

use nightmarket_domain::{
    Dong, Product, ProductGroup, ProductId, SellerId, ShowId, ShowStatus, Stars,
};

use crate::catalog::{Catalog, LineupRow, SellerRow, ShowRow, StoreError};

fn fail(msg: impl Into<String>) -> StoreError {
    StoreError::Backend(format!("conformance: {}", msg.into()))
}

fn ensure(cond: bool, msg: &str) -> Result<(), StoreError> {
    if cond { Ok(()) } else { Err(fail(msg)) }
}

/// Runs every catalog behaviour against `c`; returns the first disagreement.
pub async fn run<C: Catalog>(c: &C) -> Result<(), StoreError> {
    let parse = |e: nightmarket_domain::IdError| fail(e.to_string());
    let seller = SellerRow {
        id: SellerId::parse("htx-mat-ong-ba-vi").map_err(parse)?,
        name: "HTX Mật ong Ba Vì".into(),
        kind: "cooperative".into(),
        district: "Ba Vì".into(),
        created_at: 1_700_000_000_000,
    };
    c.create_seller(&seller).await?;
    ensure(
        c.seller(&seller.id).await? == Some(seller.clone()),
        "seller round trip",
    )?;
    ensure(
        matches!(c.create_seller(&seller).await, Err(StoreError::Conflict(_))),
        "duplicate seller is a conflict",
    )?;
    let missing = SellerId::parse("nobody").map_err(parse)?;
    ensure(
        c.seller(&missing).await?.is_none(),
        "missing seller is None",
    )?;

    let product = Product {
        id: ProductId::parse("mat-ong-hoa-nhan").map_err(parse)?,
        seller_id: seller.id.clone(),
        name: "Mật ong hoa nhãn".into(),
        group: ProductGroup::Food,
        stars: Stars::parse(4).map_err(|e| fail(e.to_string()))?,
        district: "Ba Vì".into(),
        commune: "Tản Lĩnh".into(),
        producer: "HTX Mật ong Ba Vì".into(),
        list_price: Dong::parse(250_000).map_err(|e| fail(e.to_string()))?,
        origin_document: "GCN-OCOP-HN-2023-0412".into(),
        quality_label: "TCCS 01:2023/MOBV".into(),
    };
    c.create_product(&product, 1_700_000_000_001).await?;
    ensure(
        c.product(&product.id).await? == Some((product.clone(), 1_700_000_000_001)),
        "product round trip keeps Vietnamese text and every OCOP field",
    )?;
    ensure(
        matches!(
            c.create_product(&product, 0).await,
            Err(StoreError::Conflict(_))
        ),
        "duplicate product is a conflict",
    )?;

    let show = ShowRow {
        id: ShowId::parse("show-1").map_err(parse)?,
        seller_id: seller.id.clone(),
        title: "Chợ đêm trên mây — Mật ong Ba Vì".into(),
        status: ShowStatus::Scheduled,
        created_at: 1_700_000_000_002,
        lineup: vec![LineupRow {
            product: product.clone(),
            stock: 100,
            buyer_limit: 3,
        }],
    };
    c.create_show(&show).await?;
    ensure(
        c.show(&show.id).await? == Some(show.clone()),
        "show round trip with lineup",
    )?;
    ensure(c.shows().await?.len() == 1, "one show listed")?;

    // Compare-and-set: exactly one of two identical transitions wins.
    let first = c
        .set_show_status(&show.id, ShowStatus::Scheduled, ShowStatus::Live)
        .await?;
    let second = c
        .set_show_status(&show.id, ShowStatus::Scheduled, ShowStatus::Live)
        .await?;
    ensure(first && !second, "status compare-and-set has one winner")?;
    ensure(
        c.show(&show.id).await?.map(|s| s.status) == Some(ShowStatus::Live),
        "status persisted",
    )?;
    c.ping().await?;
    Ok(())
}
