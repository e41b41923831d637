//! The rules the HTTP handlers and the WebSocket session call: catalog and lineups, the market
//! calendar and admission, shows (loading, commands, transitions), orders, reports, sign-in and
//! webhooks. Plain types in and out (domain, store rows, wire bodies), errors with stable codes
//! ([`ServiceError`]); no axum type, nothing here knows a request or a socket.

pub mod catalog;
mod error;
pub mod market;
pub mod orders;
pub mod reports;
pub mod sessions;
pub mod shows;
#[cfg(test)]
mod testing;
pub mod webhooks;

pub use error::{ServiceError, ServiceResult};

/// A new id for a created row. Time-ordered ids sort by creation in indexes and listings.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A field of a request, parsed: the error names the field.
pub fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> ServiceResult<T> {
    r.map_err(|e| ServiceError::bad_request(format!("{name}: {e}")))
}

/// Whether the caller may act for `seller` (its shows, lineups, figures): an operator, or that
/// seller.
pub fn may_act_for(
    claims: &nightmarket_auth::Claims,
    seller: &nightmarket_domain::SellerId,
) -> bool {
    use nightmarket_auth::Role;
    claims.role == Role::Operator || (claims.role == Role::Seller && claims.sub == seller.as_str())
}
