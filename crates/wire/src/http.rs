//! JSON bodies of the HTTP API (`/api/...`). Requests carry raw values; the server parses them
//! into domain types and answers `400 bad_request` naming the field that is wrong.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorCode;
use crate::server::{ProductView, StockLevel};

/// Every non-2xx response: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// The stable error code (docs/protocol.md §6).
    pub code: ErrorCode,
    pub message: String,
    /// Structured detail for codes that carry it: `not_admitted`: `[{product_id, reason,
    /// message}]`; `unauthorized`: `{reason}` (`missing`, `malformed`, `bad_signature`,
    /// `expired`, `issued_in_future`, `signed_out`, `bad_subject`); `forbidden` where one role
    /// is needed: `{needed_role, role}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Turns serde's account (as axum's JSON extractor words it) of a body that does not fit the request type into the project's
/// `field: rule` form: `seller_id: required`, `lineup[0].stock: expected i64, got a string`.
pub fn body_field_error(text: &str) -> String {
    // axum: "Failed to deserialize the JSON body into the target type: <path>: <serde message>"
    let detail = text.split_once("target type: ").map_or(text, |(_, d)| d);
    let detail = strip_position(detail);
    let (path, message) = match detail.split_once(": ") {
        // serde_path_to_error names the path first; "." is the document itself.
        Some((p, m)) if !p.contains(' ') => (if p == "." { "" } else { p }, m),
        _ => ("", detail),
    };
    let join = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_owned);
    if let Some(field) = message.strip_prefix("missing field ").and_then(quoted) {
        return format!("{}: required", join(&field));
    }
    if let Some(field) = message.strip_prefix("unknown field ").and_then(quoted) {
        return format!("{}: not a field of this request", join(&field));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        let field = if path.is_empty() { "body" } else { path };
        return format!("{field}: expected {expected}, got {got}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        let field = if path.is_empty() { "body" } else { path };
        return format!("{field}: expected {expected}, got {got}");
    }
    let field = if path.is_empty() { "body" } else { path };
    format!("{field}: {message}")
}

/// Drops serde's " at line 1 column 42": the field name says where.
pub fn strip_position(text: &str) -> &str {
    text.rfind(" at line ").map_or(text, |i| &text[..i])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSeller {
    pub name: String,
    /// Kind of producer: `cooperative`, `enterprise` or `household`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub district: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seller {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub district: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    #[serde(flatten)]
    pub view: ProductView,
    pub seller_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateShow {
    pub seller_id: String,
    pub title: String,
    pub lineup: Vec<CreateLineupItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateLineupItem {
    pub product_id: String,
    /// Units of this product allotted to the show.
    pub stock: i64,
    /// Most units one buyer may hold of this product in this show.
    pub buyer_limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    pub schedule: Option<ShowSlot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
}

/// Where a scheduled show sits in a market night (`crate::market`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShowSlot {
    pub market_id: String,
    pub night_date: String,
    pub slot_start: String,
    pub slot_end: String,
    pub slot_start_ms: i64,
    pub slot_end_ms: i64,
    pub stream_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShowLineupItem {
    pub product_id: String,
    pub stock: u32,
    pub buyer_limit: u32,
    /// The product with its proof as snapshotted when the show was scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductView>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub backends: Vec<BackendState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackendState {
    /// `redis`, `postgres`, `sqlite`, or `server` (only while shutting down).
    pub name: String,
    /// `ok` or `failing`.
    pub state: String,
    /// Why it is failing now, in fixed words (the driver's own are only logged); absent when
    /// `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Since when (UTC ms) the state has been what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// The code of the most recent failure, kept after recovery: `timeout` (no answer in
    /// time) or `error` (the check failed; the server log has the cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
}

/// `POST /api/auth/redeem`: the code from a one-time sign-in link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedeemInvite {
    pub code: String,
}

/// `POST /api/auth/guest`: a viewer without an account, known by the name they chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GuestSignIn {
    pub display_name: String,
}

/// Who the request is signed in as (`GET /api/me`, and the answer to a sign-in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// `operator`, `seller` or `viewer`.
    pub role: String,
    /// The operator's name, the seller's id or the buyer id.
    pub subject: String,
    /// What the consoles greet the person with.
    pub name: String,
    /// `cookie` (a browser session) or `bearer` (a token sent with the request).
    pub via: String,
}

/// `POST /api/invites`: a one-time sign-in link for a seller (subject: the seller id) or an
/// operator (subject: a name in the id alphabet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateInvite {
    pub role: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invite {
    /// The secret code; only its hash is stored, so this answer is the one place it appears.
    pub code: String,
    /// The sign-in link to send: `<public url>/signin#code=<code>`.
    pub url: String,
    pub role: String,
    pub subject: String,
    /// UTC milliseconds; the link is refused after it (and after its first use).
    pub expires_at: i64,
}

/// `GET /api/shows/{id}/live-stats`: the seller's live panel and the operator's board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveStats {
    pub show_id: String,
    /// `scheduled`, `live` or `closed`.
    pub status: String,
    /// Viewers connected now, on every node.
    pub viewers: u64,
    /// The most viewers seen at once in any minute of the show.
    pub peak_viewers: u64,
    /// Claims accepted so far (cancellations not subtracted).
    pub accepted_claims: u64,
    /// Claims accepted in the last 60 seconds (from the recorded claim log).
    pub claims_last_minute: u64,
    /// Units held by buyers now (claimed minus cancelled) over every product.
    pub units_sold: u64,
    /// Gross merchandise value in đồng: what those units were claimed at.
    pub gmv: i64,
    /// Claim-log entries the figures in đồng include; the log is recorded while the show runs,
    /// so `gmv` may trail `units_sold` by the last moments.
    pub recorded_entries: u64,
    pub products: Vec<ProductLiveStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductLiveStats {
    pub product_id: String,
    pub name: String,
    pub list_price: i64,
    pub allotted: u32,
    pub left: u32,
    /// Units held by buyers now: allotted minus left.
    pub units_sold: u32,
    /// In đồng, from the recorded claim log.
    pub gmv: i64,
}

#[cfg(test)]
mod tests {
    use super::body_field_error;

    const PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";

    #[test]
    fn body_errors_name_the_field_and_the_rule() {
        let cases = [
            (
                ".: missing field `stream_url` at line 1 column 2",
                "stream_url: required",
            ),
            (
                "lineup[0]: missing field `stock` at line 1 column 80",
                "lineup[0].stock: required",
            ),
            (
                "lineup[0].stock: invalid type: string \"ten\", expected i64 at line 1 column 9",
                "lineup[0].stock: expected i64, got string \"ten\"",
            ),
            (
                "invalid type: integer `3`, expected struct CreateShow at line 1 column 1",
                "body: expected struct CreateShow, got integer `3`",
            ),
            (
                "kind: unknown variant `x`, expected `cancelled` or `moved` at line 1 column 3",
                "kind: expected `cancelled` or `moved`, got `x`",
            ),
        ];
        for (serde, ours) in cases {
            assert_eq!(
                body_field_error(&format!("{PREFIX}{serde}")),
                ours,
                "{serde}"
            );
        }
    }
}
