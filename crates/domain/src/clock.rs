//! The one clock every layer reads. The rules themselves never read it (time is a parameter of
//! every rule); the layers that apply them (the store stamping a transition, the inventory
//! deciding a claim or a flash's end, the server checking a token) are given a [`SharedClock`]
//! at construction. Serving gives them all the same [`SystemClock`]; a test gives them all the
//! same [`ManualClock`] and moves time itself, so nothing it checks waits on the wall clock.
//!
//! Reading the system clock is the one effect this crate has: it lives here, beside the trait,
//! so that the store and the inventory, which do not depend on the server, share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::Millis;

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
            .map_or(0, |d| {
                Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
            })
    }
}

/// A clock that moves only when told to. Clones share the same time.
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

/// The clock as the layers hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared: what serving passes everywhere.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let clock = ManualClock::new(1_000);
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.now(), 1_000);
        clock.advance(500);
        assert_eq!(shared.now(), 1_500);
        clock.set(42);
        assert_eq!(shared.now(), 42);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800_000);
    }
}
