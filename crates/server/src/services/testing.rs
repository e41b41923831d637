//! What the services' tests share: one seller with one product, stored in an embedded store.
#![allow(clippy::unwrap_used)]

use nightmarket_domain::{Dong, Product, ProductGroup, ProductId, SellerId, Stars};
use nightmarket_store::{SellerRow, Store};

/// A stored seller, `htx-ba-vi`, and its stored product `mat-ong` (4 stars, no documents).
pub async fn seller_with_product(store: &Store) -> (SellerRow, Product) {
    let seller = SellerRow {
        id: SellerId::parse("htx-ba-vi").unwrap(),
        name: "HTX Mật ong Ba Vì".into(),
        kind: "cooperative".into(),
        district: "Ba Vì".into(),
        created_at: 0,
    };
    store.create_seller(&seller).await.unwrap();
    let product = Product {
        id: ProductId::parse("mat-ong").unwrap(),
        seller_id: seller.id.clone(),
        name: "Mật ong hoa nhãn".into(),
        group: ProductGroup::Food,
        stars: Stars::parse(4).unwrap(),
        district: "Ba Vì".into(),
        commune: "Tản Lĩnh".into(),
        producer: "HTX Mật ong Ba Vì".into(),
        list_price: Dong::parse(250_000).unwrap(),
        origin_document: "GCN-1".into(),
        quality_label: "TCCS-1".into(),
        documents: Vec::new(),
    };
    store.create_product(&product, 0).await.unwrap();
    (seller, product)
}
