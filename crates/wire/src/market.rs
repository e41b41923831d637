//! HTTP bodies of the market calendar: recurring markets and their nights, exceptions,
//! admissions, seller commitments, reusable lineups, scheduled shows and webhooks. Requests
//! carry raw values; the server parses them and answers `400 bad_request` naming the field.
//!
//! Local dates are `YYYY-MM-DD` and local times `HH:MM` in the market's time zone; instants are
//! given twice, as RFC 3339 UTC text (`2026-11-27T13:30:00Z`) and as milliseconds since the
//! epoch.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::CreateLineupItem;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateMarket {
    pub name: String,
    /// Lowercase English weekday names: `["friday"]`.
    pub weekdays: Vec<String>,
    /// Local start time of each night, `HH:MM`.
    pub start_time: String,
    pub duration_minutes: i64,
    /// IANA zone; default `Asia/Ho_Chi_Minh`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// First night on or after this date, `YYYY-MM-DD`.
    pub first_date: String,
    #[serde(default)]
    pub last_date: Option<String>,
    /// Lowest OCOP rating admitted; default 3.
    #[serde(default)]
    pub min_stars: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Market {
    pub id: String,
    pub name: String,
    pub weekdays: Vec<String>,
    pub start_time: String,
    pub duration_minutes: u32,
    pub time_zone: String,
    pub first_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_date: Option<String>,
    pub min_stars: u8,
    pub created_by: String,
    pub created_at: i64,
}

/// One night of a market, in local and UTC time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Night {
    /// The night's identity: its originally scheduled local date.
    pub date: String,
    /// `scheduled`, `moved` or `cancelled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a moved night: its original local start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    pub time_zone: String,
    /// Local start and end, `YYYY-MM-DDTHH:MM`.
    pub local_start: String,
    pub local_end: String,
    /// UTC start and end, RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateException {
    /// The night's original local date.
    pub night_date: String,
    /// `cancelled` or `moved`.
    pub kind: String,
    /// For `moved`: the new local start, `YYYY-MM-DDTHH:MM`.
    #[serde(default)]
    pub moved_to: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exception {
    pub night_date: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
}

/// An operator's admission decision on a product for a market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decide {
    pub product_id: String,
    pub approved: bool,
    /// Required when rejecting.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub id: String,
    pub market_id: String,
    pub product_id: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub decided_by: String,
    pub decided_at: i64,
}

/// Why a product may not go on a night's lineup; `reason` is a stable code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdmissionIssue {
    pub product_id: String,
    /// `stars_below_minimum`, `document_missing`, `document_not_yet_valid`,
    /// `document_expired`, `commitment_missing`, `not_approved` or `rejected`.
    pub reason: String,
    pub message: String,
}

/// A seller's commitment on the quality of what they sell on one night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Commit {
    pub statement: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Commitment {
    pub market_id: String,
    pub night_date: String,
    pub seller_id: String,
    pub statement: String,
    pub signed_by: String,
    pub signed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateLineupSet {
    pub name: String,
    pub items: Vec<CreateLineupItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LineupSetItem {
    pub product_id: String,
    pub stock: u32,
    pub buyer_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LineupSet {
    pub id: String,
    pub seller_id: String,
    pub name: String,
    pub items: Vec<LineupSetItem>,
    pub created_at: i64,
}

/// Schedules a seller's show into a night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleShow {
    pub seller_id: String,
    pub title: String,
    /// Slot start and end: a local time `YYYY-MM-DDTHH:MM` in the market's zone, or an RFC 3339
    /// instant with offset.
    pub slot_start: String,
    pub slot_end: String,
    /// A `https://` link to the stream (Facebook, TikTok or the platform's player).
    pub stream_url: String,
    /// The lineup, or `lineup_set_id` to use a saved one.
    #[serde(default)]
    pub lineup: Option<Vec<CreateLineupItem>>,
    #[serde(default)]
    pub lineup_set_id: Option<String>,
}

/// A scheduled show whose product documents will have expired (or not yet be valid) by its
/// night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpiryWarning {
    pub show_id: String,
    pub seller_id: String,
    pub market_id: String,
    pub night_date: String,
    pub issues: Vec<AdmissionIssue>,
}

/// One status a show reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub at: i64,
    /// Why, when the actor alone does not say: `seller_absent` for a show the market closed
    /// because its seller stayed away. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// `http://` receiver URL.
    pub url: String,
    /// `show.scheduled`, `show.live`, `show.closed`, `show.settled`, or `*`.
    pub events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// The signing secret: shown once, when the webhook is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
}
