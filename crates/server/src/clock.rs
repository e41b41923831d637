//! The server's sense of time: the domain's one clock ([`nightmarket_domain::clock`]), which
//! [`crate::open_backends`] hands to the store and the inventory and the state hands to every
//! job and service. Production reads the system clock; tests drive a manual clock so that slots
//! open and close, flashes end, tokens expire, webhook retries come due and records are stamped
//! exactly when a test says.

pub use nightmarket_domain::clock::{Clock, ManualClock, SharedClock, SystemClock, system};

use nightmarket_domain::Millis;

/// The wall clock's time, UTC milliseconds. Left only for the WebSocket session (`ws`) and the
/// live fan-out (`live`), which have not been given the injected clock yet: claim deadlines,
/// flash-end timers, snapshot times and a session's token expiry there. Everything else reads
/// the injected [`SharedClock`].
pub fn now_ms() -> Millis {
    SystemClock.now()
}
