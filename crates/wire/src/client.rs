//! Messages a client sends over the WebSocket, as JSON text frames tagged by `type`.
//!
//! Numbers that the domain bounds (quantities, prices) are carried as `i64` here so that a
//! negative or zero value still parses and gets a precise `bad_request` from the domain layer
//! instead of a generic parse error.

use serde::{Deserialize, Serialize};

/// One client command. Seller commands carry an optional `req` that the server echoes in its
/// `ack` or `error`, so a client can match answers to requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Seller: put a lineup product on screen.
    Pin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<String>,
        product_id: String,
    },
    /// Seller: take the pinned product off screen (ends its flash, if any).
    Unpin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<String>,
    },
    /// Seller: start a flash price on the pinned product.
    StartFlash {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<String>,
        product_id: String,
        /// Flash price in đồng; never above the list price.
        price: i64,
        /// How long the flash runs once started, in seconds.
        duration_s: i64,
        /// At most this many units sell at the flash price; none means "until stock runs out".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity_cap: Option<i64>,
        /// Seconds of countdown before the flash price applies; 0 or none starts now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_s: Option<i64>,
    },
    /// Seller: end the running (or counting-down) flash now.
    EndFlash {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<String>,
    },
    /// Viewer: claim a quantity of the pinned product at the price the viewer saw.
    Claim {
        /// Client-generated id (a UUID is recommended); retrying with the same id is safe.
        claim_id: String,
        product_id: String,
        quantity: i64,
        /// The unit price the viewer saw, in đồng.
        price: i64,
    },
    /// Viewer: cancel one of its own accepted claims while the show is live.
    Cancel { claim_id: String },
    /// Viewer: wait for units of a sold-out lineup product; answered with `waitlist_result`.
    WaitlistJoin { product_id: String, quantity: i64 },
    /// Viewer: stop waiting for a product; answered with `waitlist_result`.
    WaitlistLeave { product_id: String },
}

impl ClientMessage {
    /// The request id to echo in the answer, for messages that have one.
    pub fn req(&self) -> Option<&str> {
        match self {
            Self::Pin { req, .. }
            | Self::Unpin { req }
            | Self::StartFlash { req, .. }
            | Self::EndFlash { req } => req.as_deref(),
            Self::Claim { .. }
            | Self::Cancel { .. }
            | Self::WaitlistJoin { .. }
            | Self::WaitlistLeave { .. } => None,
        }
    }
}

/// Message types the server accepts, to tell `unknown_type` from a malformed known message.
pub const KNOWN_TYPES: [&str; 8] = [
    "pin",
    "unpin",
    "start_flash",
    "end_flash",
    "claim",
    "cancel",
    "waitlist_join",
    "waitlist_leave",
];

/// Tells malformed JSON, an unknown `type` and a known type with bad fields apart; returns
/// the message's `req`, if it has a readable one, so the answer can be matched.
pub fn classify_parse_error(
    text: &str,
    e: &serde_json::Error,
) -> (crate::ErrorCode, String, Option<String>) {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return (
                crate::ErrorCode::BadRequest,
                format!("malformed JSON: {e}"),
                None,
            );
        }
    };
    let req = value
        .get("req")
        .and_then(|r| r.as_str())
        .map(|r| r.chars().take(64).collect());
    match value.get("type").and_then(|t| t.as_str()) {
        None => (
            crate::ErrorCode::BadRequest,
            "a message is a JSON object with a string `type`".into(),
            req,
        ),
        Some(t) if !KNOWN_TYPES.contains(&t) => {
            let t: String = t.chars().take(40).collect();
            (
                crate::ErrorCode::UnknownType,
                format!("unknown message type {t:?}"),
                req,
            )
        }
        Some(_) => (crate::ErrorCode::BadRequest, e.to_string(), req),
    }
}
