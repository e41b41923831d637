//! The one clock every layer reads. The rules themselves never read it (time is a parameter of
//! every rule); the layers that apply them (the store stamping a transition, the inventory
//! deciding a claim or a flash's end, the server checking a token) are given a [`SharedClock`]
//! at construction. Serving gives them all the same [`SystemClock`]; a test gives them all the
//! same [`ManualClock`] and moves time itself, so nothing it checks waits on the wall clock.
//!
//! Reading the system clock is the one effect this crate has: it lives here, beside the trait,
//! so that the store and the inventory, which do not depend on the server, share it.
//!
//! A timer on the clock (a flash's end, a session's token expiry) cannot sleep real time when
//! the clock is manual: it would fire on the wall clock, not when the test moves time. So a
//! manual clock tells its waiters when it moves ([`ManualClock::reached`]), and a timer asks
//! [`Clock::manual`] which way to wait (the server's `clock::sleep_until`). This crate has no
//! runtime, so the wait is a plain [`Future`] woken by the clock's own hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::Millis;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now(&self) -> Millis;

    /// The manual clock this is, if time here moves only when told to: a timer on it waits
    /// for [`ManualClock::reached`], not for real time to pass. `None` (the default) for a
    /// clock that moves with real time.
    fn manual(&self) -> Option<&ManualClock> {
        None
    }
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

/// A clock that moves only when told to. Clones share the same time and the same waiters.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<Hand>);

#[derive(Debug, Default)]
struct Hand {
    at: AtomicI64,
    /// Tasks waiting for the clock to reach some time: all woken (and forgotten) at every
    /// move, each re-checks its own time. A dropped wait's waker stays until the next move.
    waiters: Mutex<Vec<Waker>>,
}

impl ManualClock {
    pub fn new(at: Millis) -> Self {
        Self(Arc::new(Hand {
            at: AtomicI64::new(at),
            waiters: Mutex::default(),
        }))
    }

    pub fn set(&self, at: Millis) {
        self.0.at.store(at, Ordering::SeqCst);
        self.wake();
    }

    pub fn advance(&self, ms: Millis) {
        self.0.at.fetch_add(ms, Ordering::SeqCst);
        self.wake();
    }

    /// Resolves once the clock reads `at` or later (at once if it already does).
    pub fn reached(&self, at: Millis) -> Reached {
        Reached {
            clock: self.clone(),
            at,
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A waker list is valid whatever a panicking holder left in it.
        self.0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        // Taken under the lock after the time was stored: a waiter that read the old time
        // registered before this, so it is woken.
        let woken = std::mem::take(&mut *self.waiters());
        woken.into_iter().for_each(Waker::wake);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.at.load(Ordering::SeqCst)
    }

    fn manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

/// The wait [`ManualClock::reached`] returns.
#[derive(Debug)]
#[must_use = "a wait does nothing unless awaited"]
pub struct Reached {
    clock: ManualClock,
    at: Millis,
}

impl Future for Reached {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The time is read under the waiters' lock, which a move takes after storing the new
        // time: either this read sees the move, or the move wakes the waker pushed here.
        let mut waiters = self.clock.waiters();
        if self.clock.now() >= self.at {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
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

    /// Counts its wakes.
    struct Count(AtomicI64);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wait_on_a_manual_clock_is_woken_by_the_move_that_reaches_its_time() {
        let clock = ManualClock::new(1_000);
        let count = Arc::new(Count(AtomicI64::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(clock.reached(1_500));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending, "polled again");

        clock.advance(499);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one waker, woken once");
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending, "not there yet");
        clock.advance(1);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));

        assert_eq!(
            std::pin::pin!(clock.reached(1_000)).poll(&mut cx),
            Poll::Ready(()),
            "a time already passed"
        );
        assert_eq!(Arc::new(SystemClock).manual().map(Clock::now), None);
        assert_eq!(Arc::new(clock).manual().map(Clock::now), Some(1_500));
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800_000);
    }
}
