//! The WebSocket session.

pub mod claims;
mod session;

pub(crate) use session::inventory_error;
pub use session::{Peer, peer_for, run};
