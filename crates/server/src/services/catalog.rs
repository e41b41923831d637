//! The catalog's rules: what a seller is, what a product must prove, whose products a lineup
//! may hold and in what amounts, and a seller's saved lineups.

use nightmarket_domain::book::MAX_STOCK;
use nightmarket_domain::market::parse_date;
use nightmarket_domain::ocop::text;
use nightmarket_domain::{
    Document, DocumentKind, Dong, Millis, Product, ProductGroup, ProductId, SellerId, Stars,
};
use nightmarket_store::{Keyset, LineupRow, LineupSetItem, LineupSetRow, Paged, SellerRow, Store};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{CreateLineupItem, CreateProduct};
use nightmarket_wire::server::DocumentBody;

use crate::services::{ServiceError, ServiceResult, field, new_id};

/// The kinds of producer ("chủ thể") a seller may be.
pub const SELLER_KINDS: [&str; 3] = ["cooperative", "enterprise", "household"];

/// A seller's kind, `cooperative` when none is given.
pub fn seller_kind(kind: Option<String>) -> ServiceResult<String> {
    let kind = kind.unwrap_or_else(|| SELLER_KINDS[0].into());
    if SELLER_KINDS.contains(&kind.as_str()) {
        Ok(kind)
    } else {
        Err(ServiceError::bad_request(
            "kind: expected cooperative, enterprise or household",
        ))
    }
}

/// The `seller_id` of a request body, parsed and known to the catalog.
pub async fn existing_seller(store: &Store, raw: String) -> ServiceResult<SellerId> {
    let seller_id = field("seller_id", SellerId::parse(raw))?;
    if store.seller(&seller_id).await?.is_none() {
        return Err(ServiceError::bad_request(format!(
            "seller_id: seller {seller_id} does not exist"
        )));
    }
    Ok(seller_id)
}

/// Checks a requested lineup (size, duplicates, ownership, stock and limit bounds) and
/// snapshots each product with its proof.
pub async fn build_lineup(
    store: &Store,
    max_lineup: usize,
    seller: &SellerId,
    items: Vec<CreateLineupItem>,
) -> ServiceResult<Vec<LineupRow>> {
    if items.is_empty() || items.len() > max_lineup {
        return Err(ServiceError::bad_request(format!(
            "lineup: 1 to {max_lineup} products"
        )));
    }
    // Every product read in one store call. Ids are parsed up to the first that does not
    // parse, so a refusal names the same item, with the same words, as checking item by item.
    let ids: Vec<Result<ProductId, _>> = items
        .iter()
        .map(|i| ProductId::parse(i.product_id.clone()))
        .collect();
    let known: Vec<ProductId> = ids.iter().map_while(|r| r.as_ref().ok()).cloned().collect();
    let mut products = if known.is_empty() {
        Default::default()
    } else {
        store.products(&known).await?
    };
    let mut lineup = Vec::with_capacity(items.len());
    for (i, (item, pid)) in items.into_iter().zip(ids).enumerate() {
        let at = |f: &str| format!("lineup[{i}].{f}");
        let pid = field(&at("product_id"), pid)?;
        if lineup.iter().any(|l: &LineupRow| l.product.id == pid) {
            return Err(ServiceError::bad_request(format!(
                "{}: product {pid} is listed twice",
                at("product_id")
            )));
        }
        let (product, _) = products.remove(&pid).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::UnknownProduct,
                format!("{}: product {pid} does not exist", at("product_id")),
            )
        })?;
        if product.seller_id != *seller {
            return Err(ServiceError::bad_request(format!(
                "{}: product {pid} belongs to another seller",
                at("product_id")
            )));
        }
        let bound = i64::from(MAX_STOCK);
        if !(0..=bound).contains(&item.stock) {
            return Err(ServiceError::bad_request(format!(
                "{}: 0 to {bound}, got {}",
                at("stock"),
                item.stock
            )));
        }
        if !(1..=bound).contains(&item.buyer_limit) {
            return Err(ServiceError::bad_request(format!(
                "{}: 1 to {bound}, got {}",
                at("buyer_limit"),
                item.buyer_limit
            )));
        }
        lineup.push(LineupRow {
            product,
            stock: item.stock as u32,
            buyer_limit: item.buyer_limit as u32,
        });
    }
    Ok(lineup)
}

/// A new seller, its fields parsed; stored under a new id.
pub async fn create_seller(
    store: &Store,
    name: String,
    kind: String,
    district: String,
    now: Millis,
) -> ServiceResult<SellerRow> {
    let row = SellerRow {
        kind,
        id: field("id", SellerId::parse(new_id()))?,
        name,
        district,
        created_at: now,
    };
    store.create_seller(&row).await?;
    Ok(row)
}

/// The seller `id` names; not found when there is none.
pub async fn seller(store: &Store, id: String) -> ServiceResult<SellerRow> {
    let id = SellerId::parse(id).map_err(|_| ServiceError::not_found("seller"))?;
    store
        .seller(&id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("seller {id}")))
}

/// The seller `id` names, which must exist (a path naming a seller to act for).
pub async fn known_seller(store: &Store, id: &SellerId) -> ServiceResult<()> {
    match store.seller(id).await? {
        Some(_) => Ok(()),
        None => Err(ServiceError::not_found(format!("seller {id}"))),
    }
}

/// A page of every seller, oldest first.
pub async fn sellers(store: &Store, page: &Keyset) -> ServiceResult<Paged<SellerRow>> {
    Ok(store.sellers(page).await?)
}

/// A page of the products of the seller `raw` names, which must exist.
pub async fn products_of(
    store: &Store,
    raw: String,
    page: &Keyset,
) -> ServiceResult<Paged<(Product, Millis)>> {
    let seller_id = existing_seller(store, raw).await?;
    Ok(store.products_of(&seller_id, page).await?)
}

/// A new product of an existing seller with its proof, every field checked; stored under a new
/// id, created at `now`.
pub async fn create_product(
    store: &Store,
    req: CreateProduct,
    now: Millis,
) -> ServiceResult<Product> {
    let seller_id = existing_seller(store, req.seller_id).await?;
    let product = Product {
        id: field("id", ProductId::parse(new_id()))?,
        seller_id,
        name: field("name", text("name", &req.name))?,
        group: field("group", ProductGroup::parse(&req.group))?,
        stars: field("stars", Stars::parse(req.stars))?,
        district: field("district", text("district", &req.district))?,
        commune: field("commune", text("commune", &req.commune))?,
        producer: field("producer", text("producer", &req.producer))?,
        list_price: field("list_price", Dong::parse(req.list_price))?,
        origin_document: field(
            "origin_document",
            text("origin_document", &req.origin_document),
        )?,
        quality_label: field("quality_label", text("quality_label", &req.quality_label))?,
        documents: documents(&req.documents)?,
    };
    store.create_product(&product, now).await?;
    Ok(product)
}

/// The product `id` names with its creation instant; not found when there is none.
pub async fn product(store: &Store, id: String) -> ServiceResult<(Product, Millis)> {
    let id = ProductId::parse(id).map_err(|_| ServiceError::not_found("product"))?;
    store
        .product(&id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("product {id}")))
}

/// Parses the proof documents of a product body; the error names the document by index.
fn documents(bodies: &[DocumentBody]) -> ServiceResult<Vec<Document>> {
    use nightmarket_domain::admission::MAX_DOCUMENTS;
    if bodies.len() > MAX_DOCUMENTS {
        return Err(ServiceError::bad_request(format!(
            "documents: at most {MAX_DOCUMENTS} documents"
        )));
    }
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bad = |e: &dyn std::fmt::Display| {
                ServiceError::bad_request(format!("documents[{i}]: {e}"))
            };
            let kind = DocumentKind::parse(&b.kind).map_err(|e| bad(&e))?;
            let from = parse_date("valid_from", &b.valid_from).map_err(|e| bad(&e))?;
            let until = parse_date("valid_until", &b.valid_until).map_err(|e| bad(&e))?;
            Document::new(kind, &b.reference, from, until).map_err(|e| bad(&e))
        })
        .collect()
}

/// A seller's reusable lineup: checked as a show's lineup would be (at most `max_lineup`
/// products, all the seller's own), named, stored under a new id.
pub async fn create_lineup_set(
    store: &Store,
    seller: SellerId,
    items: Vec<CreateLineupItem>,
    name: &str,
    max_lineup: usize,
    now: Millis,
) -> ServiceResult<LineupSetRow> {
    let lineup = build_lineup(store, max_lineup, &seller, items).await?;
    let row = LineupSetRow {
        id: new_id(),
        seller_id: seller,
        name: field("name", text("name", name))?,
        items: lineup
            .iter()
            .map(|l| LineupSetItem {
                product_id: l.product.id.clone(),
                stock: l.stock,
                buyer_limit: l.buyer_limit,
            })
            .collect(),
        created_at: now,
    };
    store.create_lineup_set(&row).await?;
    Ok(row)
}

/// A page of a seller's lineup sets.
pub async fn lineup_sets(
    store: &Store,
    seller: &SellerId,
    page: &Keyset,
) -> ServiceResult<Paged<LineupSetRow>> {
    Ok(store.lineup_sets(seller, page).await?)
}
