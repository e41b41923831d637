//! JSON bodies of the HTTP API (`/api/...`). Requests carry raw values; the server parses them
//! into domain types and answers `400 bad_request` naming the field that is wrong.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;
use crate::server::{ProductView, StockLevel};

/// Every non-2xx response: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Structured detail for codes that carry it (`not_admitted`: the refusals per product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSeller {
    pub name: String,
    /// Kind of producer: `cooperative`, `enterprise` or `household`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub district: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seller {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub district: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateProduct {
    pub seller_id: String,
    pub name: String,
    /// One of `food`, `beverages`, `herbs`, `handicrafts`, `fabric_garments`, `rural_tourism`.
    pub group: String,
    /// OCOP star rating, 1 to 5.
    pub stars: i64,
    pub district: String,
    pub commune: String,
    pub producer: String,
    /// List price in đồng.
    pub list_price: i64,
    /// Reference of the document proving origin.
    pub origin_document: String,
    /// Reference of the quality label.
    pub quality_label: String,
    /// The documents behind the proof, each with its validity. Admission to a market night
    /// needs an OCOP certificate, an origin proof and a quality label valid on the night's date.
    #[serde(default)]
    pub documents: Vec<crate::server::DocumentBody>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    #[serde(flatten)]
    pub view: ProductView,
    pub seller_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateShow {
    pub seller_id: String,
    pub title: String,
    pub lineup: Vec<CreateLineupItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateLineupItem {
    pub product_id: String,
    /// Units of this product allotted to the show.
    pub stock: i64,
    /// Most units one buyer may hold of this product in this show.
    pub buyer_limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Show {
    pub id: String,
    pub seller_id: String,
    pub title: String,
    /// `scheduled`, `live` or `closed`.
    pub status: String,
    pub lineup: Vec<ShowLineupItem>,
    pub created_at: i64,
    /// Present for live and closed shows: stock left now (or at close).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<Vec<StockLevel>>,
    /// Sequence number of the show's latest event.
    pub seq: u64,
    /// Where the show sits in a market night; absent for ad-hoc shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::market::ShowSlot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowLineupItem {
    pub product_id: String,
    pub stock: u32,
    pub buyer_limit: u32,
    /// The product with its proof as snapshotted when the show was scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductView>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub backends: Vec<BackendState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendState {
    /// `redis`, `postgres`, `sqlite`, or `server` (only while shutting down).
    pub name: String,
    /// `ok` or `failing`.
    pub state: String,
    /// Why it is failing now; absent when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Since when (UTC ms) the state has been what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// The most recent failure, kept after recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
}
