//! Wire types of Nightmarket: what crosses a socket, and nothing else.
//!
//! Layer map of the workspace (find any line's layer from its path):
//! - `crates/wire` (this crate): WebSocket messages, HTTP bodies, error and close codes. Plain data
//!   with serde; no tokio, no axum, so clients (load generator, tests, a future SDK) share it.
//! - `crates/domain`: ids, money, OCOP facts and the claim rules, pure functions, no I/O.
//! - `crates/inventory`: the atomic per-show claim engine behind one interface (memory now).
//! - `crates/store`: SQLite storage (catalog, journal).
//! - `crates/hub`: per-show fan-out (sequenced history, conflated values).
//! - `crates/server`: HTTP and WebSocket edges, auth, config, metrics.
//! - `crates/nightmarket`: the binary.
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
