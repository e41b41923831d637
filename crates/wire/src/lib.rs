//! Wire types of Nightmarket: what crosses a socket, and nothing else.
//!
//! Layer map of the workspace (find any line's layer from its path; docs/architecture.md has
//! one line per module):
//! - `crates/wire` (this crate): WebSocket messages, HTTP bodies, error and close codes. Plain data
//!   with serde; no tokio, no axum, so clients (load generator, tests, a future SDK) share it.
//! - `crates/domain`: ids, money, OCOP facts and products, market nights, admission, the claim
//!   and waitlist rules, order statuses; pure functions, no I/O.
//! - `crates/auth`: HS256 tokens carrying role and subject.
//! - `crates/store`: the store over SQLite or PostgreSQL (catalog, markets, orders, reports,
//!   webhooks) and the embedded claim journal.
//! - `crates/inventory`: the atomic per-show claim engine behind one interface (memory journaled
//!   to SQLite, or Redis).
//! - `crates/live`: the live engine: per-show fan-out of encoded frames to viewers' sockets.
//! - `crates/orders`: the order service: claim logs recorded, closed shows settled into orders.
//! - `crates/server`: HTTP and WebSocket edges, the services they call, each show's fan-out,
//!   background jobs, configuration, metrics.
//! - `crates/nightmarket`: the binary. `crates/loadgen`: the load generator.
//!
//! Every message and code here is documented in `docs/protocol.md`; both change together.

pub mod client;
pub mod codes;
pub mod http;
pub mod market;
pub mod orders;
pub mod reports;
pub mod server;

pub use codes::{CloseCode, ErrorCode};

/// Version of the WebSocket protocol, sent in `hello`. Incremented on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
