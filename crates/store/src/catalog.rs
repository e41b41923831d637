//! The catalog interface: what the HTTP API creates and the inventory loads shows from.

use async_trait::async_trait;
use nightmarket_domain::{Millis, Product, ProductId, SellerId, ShowId, ShowStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerRow {
    pub id: SellerId,
    pub name: String,
    /// `cooperative`, `enterprise` or `household`.
    pub kind: String,
    pub district: String,
    pub created_at: Millis,
}

/// One lineup entry as stored: the product's proof is a snapshot taken when the show was
/// created, so the pin shows exactly what was admitted even if the catalog entry changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineupRow {
    pub product: Product,
    pub stock: u32,
    pub buyer_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowRow {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub title: String,
    pub status: ShowStatus,
    pub created_at: Millis,
    pub lineup: Vec<LineupRow>,
}

#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    async fn create_seller(&self, seller: &SellerRow) -> Result<(), StoreError>;
    async fn seller(&self, id: &SellerId) -> Result<Option<SellerRow>, StoreError>;
    async fn create_product(&self, product: &Product, created_at: Millis)
    -> Result<(), StoreError>;
    async fn product(&self, id: &ProductId) -> Result<Option<(Product, Millis)>, StoreError>;
    async fn create_show(&self, show: &ShowRow) -> Result<(), StoreError>;
    async fn show(&self, id: &ShowId) -> Result<Option<ShowRow>, StoreError>;
    /// Every show, newest first.
    async fn shows(&self) -> Result<Vec<ShowRow>, StoreError>;
    /// Compare-and-set of a show's status: changes it only if it is `from` now. Returns whether
    /// it changed, so concurrent callers agree on exactly one winner.
    async fn set_show_status(
        &self,
        id: &ShowId,
        from: ShowStatus,
        to: ShowStatus,
    ) -> Result<bool, StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}
