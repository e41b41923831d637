//! Stable error and close codes. Clients match on these strings and numbers, so a code once
//! published never changes meaning; new situations get new codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code that can cross the wire, over HTTP (`{"error":{"code":...}}`) or WebSocket
/// (`error` frames, claim and cancel refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // --- claim refusals -------------------------------------------------------------------
    /// The claim id was already accepted; the original result is returned with it.
    Duplicate,
    /// Not enough stock (or flash quantity) left for the whole quantity; no partial fills.
    SoldOut,
    /// The buyer's per-product limit for this show would be exceeded.
    LimitExceeded,
    /// The product is in the lineup but not pinned on screen.
    NotPinned,
    /// The price the viewer saw is not the current price (flash started, ended or changed).
    StalePrice,
    /// The show is not live (scheduled or closed).
    ShowNotLive,
    // --- waitlist -----------------------------------------------------------------------------
    /// Units of the product are left: claim them instead of joining its waitlist.
    NotSoldOut,
    /// The product's waitlist holds as many buyers as it may (`MAX_WAITLIST_PER_PRODUCT`).
    WaitlistFull,
    /// A waiting buyer was skipped: the price now is above the price when it joined.
    PriceRose,
    /// The request is malformed or a value is out of range.
    BadRequest,
    /// A list's `cursor` is not one this list handed out (malformed, cut short, or another
    /// list's): start again from the first page.
    BadCursor,
    /// Missing, forged or expired token.
    Unauthorized,
    /// Too many messages from this connection; slow down and retry.
    RateLimited,
    // --- other errors ------------------------------------------------------------------------
    /// The token is valid but its role or subject may not do this.
    Forbidden,
    /// The show, product, seller or claim does not exist.
    NotFound,
    /// The product is not in this show's lineup.
    UnknownProduct,
    /// The claim id does not belong to this buyer in this show.
    UnknownClaim,
    /// The message `type` is not one the server knows.
    UnknownType,
    /// The text frame is longer than `max_frame_bytes`.
    FrameTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// A flash price above the product's list price, or another rule of the market broken.
    PriceAboveList,
    /// A flash sale is already running or counting down; end it first.
    FlashActive,
    /// No flash sale is running.
    NoFlash,
    /// The show's state does not allow this transition (e.g. closing a closed show).
    InvalidState,
    /// The request conflicts with existing data (e.g. a duplicate id).
    Conflict,
    /// A product may not go on this night's lineup: the error's `details` list every reason
    /// per product (stars, documents, commitment, operator decision).
    NotAdmitted,
    /// The slot is not free: outside the night, on a cancelled night, or overlapping another
    /// show of the same seller (named in the message).
    SlotUnavailable,
    /// The order's status does not lead to the one asked for (e.g. shipping an unpaid order,
    /// cancelling a shipped one, paying a checkout with nothing pending).
    BadOrderTransition,
    /// The order's status changed since it was read (another move won); read it and retry.
    OrderMoved,
    /// The amount confirmed for a checkout differs from what its unpaid orders total.
    AmountMismatch,
    /// A report was asked for a show the order service has not settled (yet, or stopped by a
    /// reconciliation mismatch); its figures do not exist until it is.
    NotSettled,
    /// The market night has ended: its programme, commitments and exceptions are read-only.
    NightOver,
    /// A sign-in link whose code no invite has (mistyped, or cut short by a mail program).
    InviteUnknown,
    /// A sign-in link already used once: ask the operator for a new one.
    InviteUsed,
    /// A sign-in link past its expiry: ask the operator for a new one.
    InviteExpired,
    /// A request signed in by the session cookie came from another site (cross-site request
    /// forgery guard): send it from the console's own origin, or use a bearer token.
    CsrfRejected,
    /// The server cannot take this now (journal queue full, storage failing); retry later.
    Unavailable,
    // --- the HTTP edge -------------------------------------------------------------------------
    /// The path exists but not with this method (or the method is unknown); `Allow` lists the
    /// methods it has.
    MethodNotAllowed,
    /// The request body is longer than `limits.max_body_bytes`.
    BodyTooLarge,
    /// The request target (path and query) is longer than `limits.max_uri_bytes`.
    UriTooLong,
    /// The request's headers are longer than `limits.max_header_bytes`, or more than
    /// `limits.max_headers` of them.
    HeadersTooLarge,
    /// An unexpected failure inside the server; logged with details.
    Internal,
    /// The request was not answered within `http.request_timeout_ms`; what it asked for may or
    /// may not have happened (read it back before retrying a change).
    Timeout,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::SoldOut => "sold_out",
            Self::LimitExceeded => "limit_exceeded",
            Self::NotPinned => "not_pinned",
            Self::StalePrice => "stale_price",
            Self::ShowNotLive => "show_not_live",
            Self::NotSoldOut => "not_sold_out",
            Self::WaitlistFull => "waitlist_full",
            Self::PriceRose => "price_rose",
            Self::BadRequest => "bad_request",
            Self::BadCursor => "bad_cursor",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::UnknownProduct => "unknown_product",
            Self::UnknownClaim => "unknown_claim",
            Self::UnknownType => "unknown_type",
            Self::FrameTooLarge => "frame_too_large",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::PriceAboveList => "price_above_list",
            Self::FlashActive => "flash_active",
            Self::NoFlash => "no_flash",
            Self::InvalidState => "invalid_state",
            Self::Conflict => "conflict",
            Self::NotAdmitted => "not_admitted",
            Self::SlotUnavailable => "slot_unavailable",
            Self::BadOrderTransition => "bad_order_transition",
            Self::OrderMoved => "order_moved",
            Self::AmountMismatch => "amount_mismatch",
            Self::NotSettled => "not_settled",
            Self::NightOver => "night_over",
            Self::InviteUnknown => "invite_unknown",
            Self::InviteUsed => "invite_used",
            Self::InviteExpired => "invite_expired",
            Self::CsrfRejected => "csrf_rejected",
            Self::Unavailable => "unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Internal => "internal",
            Self::Timeout => "timeout",
        }
    }

    /// The HTTP status an HTTP response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::BadCursor
            | Self::UnknownType
            | Self::FrameTooLarge
            | Self::BinaryNotSupported
            | Self::UnknownProduct
            | Self::PriceAboveList => 400,
            Self::Unauthorized | Self::InviteUnknown | Self::InviteUsed | Self::InviteExpired => {
                401
            }
            Self::CsrfRejected => 403,
            Self::Forbidden => 403,
            Self::NotFound | Self::UnknownClaim => 404,
            Self::Duplicate
            | Self::Conflict
            | Self::InvalidState
            | Self::ShowNotLive
            | Self::FlashActive
            | Self::NoFlash
            | Self::NotPinned
            | Self::StalePrice
            | Self::SoldOut
            | Self::LimitExceeded
            | Self::NotSoldOut
            | Self::WaitlistFull
            | Self::PriceRose => 409,
            Self::NotAdmitted => 422,
            Self::SlotUnavailable
            | Self::BadOrderTransition
            | Self::OrderMoved
            | Self::AmountMismatch
            | Self::NotSettled
            | Self::NightOver => 409,
            Self::MethodNotAllowed => 405,
            Self::BodyTooLarge => 413,
            Self::UriTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
            // The server waited too long on what answers it (its store, Redis): 504, which
            // clients do not resend on their own as some do a 408.
            Self::Timeout => 504,
        }
    }

    /// Whether retrying the same request later may succeed without changing it.
    pub fn retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::Timeout)
    }

    /// All codes, for documentation tests.
    pub const ALL: [ErrorCode; 43] = [
        Self::Duplicate,
        Self::SoldOut,
        Self::LimitExceeded,
        Self::NotPinned,
        Self::StalePrice,
        Self::ShowNotLive,
        Self::NotSoldOut,
        Self::WaitlistFull,
        Self::PriceRose,
        Self::BadRequest,
        Self::BadCursor,
        Self::Unauthorized,
        Self::RateLimited,
        Self::Forbidden,
        Self::NotFound,
        Self::UnknownProduct,
        Self::UnknownClaim,
        Self::UnknownType,
        Self::FrameTooLarge,
        Self::BinaryNotSupported,
        Self::PriceAboveList,
        Self::FlashActive,
        Self::NoFlash,
        Self::InvalidState,
        Self::Conflict,
        Self::NotAdmitted,
        Self::SlotUnavailable,
        Self::BadOrderTransition,
        Self::OrderMoved,
        Self::AmountMismatch,
        Self::NotSettled,
        Self::NightOver,
        Self::InviteUnknown,
        Self::InviteUsed,
        Self::InviteExpired,
        Self::CsrfRejected,
        Self::Unavailable,
        Self::MethodNotAllowed,
        Self::BodyTooLarge,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::Internal,
        Self::Timeout,
    ];

    /// The code an HTTP error status stands for, for errors the server's own handlers did not
    /// write (the HTTP layer's refusals). A status without a code of its own is `bad_request`
    /// (4xx) or `internal` (5xx).
    pub fn for_http_status(status: u16) -> Self {
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            413 => Self::BodyTooLarge,
            414 => Self::UriTooLong,
            429 => Self::RateLimited,
            431 => Self::HeadersTooLarge,
            503 => Self::Unavailable,
            504 => Self::Timeout,
            500..=599 => Self::Internal,
            _ => Self::BadRequest,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server sends. 4000–4099 mean "reconnect (resume with your last
/// sequence)"; 4100–4199 mean "final: do not reconnect with the same credentials".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The server is shutting down or restarting (standard 1012): reconnect, resume with `last_seq`.
    Restart,
    /// A frame above the hard frame limit (standard 1009); the connection cannot continue.
    MessageTooBig,
    /// The connection fell too far behind events that cannot be skipped: resume with `last_seq`.
    Resync,
    /// The connection did not accept a frame within the write timeout: resume with `last_seq`.
    WriteTimeout,
    /// The token expired while connected: get a new token, then reconnect.
    TokenExpired,
}

impl CloseCode {
    /// Numeric close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Restart => 1012,
            Self::MessageTooBig => 1009,
            Self::Resync => 4000,
            Self::WriteTimeout => 4001,
            Self::TokenExpired => 4100,
        }
    }

    /// Reason text sent with the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::MessageTooBig => "message_too_big",
            Self::Resync => "resync",
            Self::WriteTimeout => "write_timeout",
            Self::TokenExpired => "token_expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_back_to_their_codes() {
        for status in [401, 403, 404, 405, 413, 414, 429, 431, 503, 504, 500] {
            assert_eq!(ErrorCode::for_http_status(status).http_status(), status);
        }
        for status in [400, 411, 415, 422, 426] {
            assert_eq!(ErrorCode::for_http_status(status), ErrorCode::BadRequest);
        }
    }

    #[test]
    fn as_str_matches_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
