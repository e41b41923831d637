//! The one error of the server's services: a stable code (`crates/wire/src/codes.rs`), words
//! for whoever sent the request, and details where the code needs them. Both transports answer
//! with it as it is: HTTP picks the status from the code, WebSocket sends it in an error frame.
//! Backend failures are logged here and answered with their code and plain words only.

use nightmarket_inventory::InventoryError;
use nightmarket_store::StoreError;
use nightmarket_wire::ErrorCode;

use crate::convert::command_error_code;

/// What a service call comes to when it fails.
pub type ServiceResult<T> = Result<T, ServiceError>;

#[derive(Debug)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Refused {
                code: "slot_overlap",
                message,
            } => Self::new(ErrorCode::SlotUnavailable, message),
            StoreError::Refused {
                code: nightmarket_store::reports::NOT_SETTLED,
                message,
            } => Self::new(ErrorCode::NotSettled, message),
            StoreError::Refused { code, message } => {
                use nightmarket_store::orders::refusal;
                let code = match code {
                    refusal::BAD_TRANSITION => ErrorCode::BadOrderTransition,
                    refusal::FORBIDDEN => ErrorCode::Forbidden,
                    refusal::MOVED => ErrorCode::OrderMoved,
                    refusal::AMOUNT_MISMATCH => ErrorCode::AmountMismatch,
                    nightmarket_store::page::BAD_CURSOR => ErrorCode::BadCursor,
                    _ => ErrorCode::Conflict,
                };
                Self::new(code, message)
            }
            // What failed inside (a driver's text, a host name, a query) is for the log, not
            // for whoever sent the request: the answer keeps to the stable code.
            StoreError::Corrupt(detail) => {
                tracing::error!(error = %detail, "stored data is corrupt");
                Self::new(
                    ErrorCode::Internal,
                    "the server hit an internal error; it is logged",
                )
            }
            StoreError::Backend(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the store is unavailable; retry later",
                )
            }
        }
    }
}

impl From<InventoryError> for ServiceError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Command(c) => Self::new(command_error_code(&c), c.to_string()),
            InventoryError::UnknownShow(s) => Self::not_found(format!("show {s}")),
            InventoryError::Unavailable(m) | InventoryError::Unknown(m) => {
                tracing::warn!(error = %m, "inventory unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the inventory is unavailable; retry later",
                )
            }
            InventoryError::DeadlinePassed => Self::new(ErrorCode::Unavailable, e.to_string()),
            InventoryError::Internal(m) => {
                tracing::error!(error = %m, "inventory failure");
                Self::new(
                    ErrorCode::Internal,
                    "the server hit an internal error; it is logged",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backend texts (drivers, hosts, queries) stay in the log; the answer keeps to its code.
    #[test]
    fn backend_details_do_not_reach_the_answer() {
        let secret = "connection to db.internal:5432 as nightmarket failed: password rejected";
        let e = ServiceError::from(StoreError::Backend(secret.into()));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("db.internal"), "{}", e.message);
        let e = ServiceError::from(StoreError::Corrupt(secret.into()));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("db.internal"), "{}", e.message);
        let e = ServiceError::from(InventoryError::Unavailable(secret.into()));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("db.internal"), "{}", e.message);
        let e = ServiceError::from(InventoryError::Internal(secret.into()));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("db.internal"), "{}", e.message);
        // Rules refused by the store still say which.
        let e = ServiceError::from(StoreError::Conflict("seller s1".into()));
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Conflict, "seller s1 already exists")
        );
    }
}
