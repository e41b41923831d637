//! The catalog's rules: what a seller is, whose products a lineup may hold and in what amounts.

use nightmarket_domain::book::MAX_STOCK;
use nightmarket_domain::{ProductId, SellerId};
use nightmarket_store::{LineupRow, Store};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::CreateLineupItem;

use crate::services::{ServiceError, ServiceResult, field};

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
    let mut lineup = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |f: &str| format!("lineup[{i}].{f}");
        let pid = field(&at("product_id"), ProductId::parse(item.product_id))?;
        if lineup.iter().any(|l: &LineupRow| l.product.id == pid) {
            return Err(ServiceError::bad_request(format!(
                "{}: product {pid} is listed twice",
                at("product_id")
            )));
        }
        let (product, _) = store.product(&pid).await?.ok_or_else(|| {
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
