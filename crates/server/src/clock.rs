//! The server's sense of time. Production reads the system clock; tests drive a manual clock so
//! that slots open and close, webhook retries come due and records are stamped exactly when a
//! test says. [`now_ms`] is the wall clock, for the few instants another clock judges.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use nightmarket_domain::Millis;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(at: Millis) -> Self {
        Self(Arc::new(AtomicI64::new(at)))
    }

    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock's time, UTC milliseconds: only for instants compared with a clock outside
/// the server, which a test clock cannot move. Claim deadlines and the inventory's own time
/// (the memory inventory's system clock, Redis `TIME`), flash end times the inventory set, and
/// token and sign-in timestamps (the clients' clocks). Every other instant the server keeps
/// (records it creates, market times, retries, statistics, readiness) is the injected
/// [`SharedClock`]'s.
pub fn now_ms() -> Millis {
    SystemClock.now()
}
