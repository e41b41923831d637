//! The WebSocket session of a viewer or seller watching one show: the socket's read and write
//! loop ([`run`]), claims and cancellations decided off that loop within the claim deadline
//! ([`claims`]), and the waitlist places of a buyer who leaves ([`waitlist`]). The upgrade that
//! starts a session is an HTTP route (`crate::http::ws`); what the session sends comes from the
//! show's fan-out (`crate::live`).

pub mod claims;
mod session;
pub mod waitlist;

pub use session::{Peer, peer_for, run};
