//! The server's sense of time: the domain's one clock ([`nightmarket_domain::clock`]), which
//! [`crate::open_backends`] hands to the store and the embedded inventory and the state hands
//! to every job, service, WebSocket session and the live fan-out. Nothing in the server reads
//! the wall clock itself. Production reads the system clock; tests drive a manual clock so that
//! slots open and close, flashes end, claim deadlines pass, tokens expire (over HTTP and on an
//! open socket), webhook retries come due and records are stamped exactly when a test says.
//!
//! A show's own times (flash windows, claim deadlines, a snapshot's `server_time`) are on the
//! clock the inventory decides by (`Inventory::clock`): this same clock with the embedded
//! inventory; with Redis, whose scripts read `TIME`, the system clock standing for it.

use std::time::Duration;

pub use nightmarket_domain::clock::{Clock, ManualClock, SharedClock, SystemClock, system};

use nightmarket_domain::Millis;

/// The longest real sleep one step of [`sleep_until`] takes: far times (a token valid for
/// years) are reached in steps, each re-reading the clock, within what the timer wheel holds.
const LONGEST_STEP: Duration = Duration::from_secs(3600);

/// Waits until `clock` reads `at` or later. On a manual clock, until a test moves it there
/// (real time passing changes nothing); on the system clock, real time, re-read after every
/// sleep, so a wall clock stepped back (NTP) is not left behind by the monotonic timer.
pub async fn sleep_until(clock: SharedClock, at: Millis) {
    if let Some(manual) = clock.manual() {
        return manual.reached(at).await;
    }
    loop {
        let left = at.saturating_sub(clock.now());
        if left <= 0 {
            return;
        }
        let step = Duration::from_millis(left.unsigned_abs()).min(LONGEST_STEP);
        tokio::time::sleep(step).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_when_the_clock_is_moved_there() {
        let clock = ManualClock::new(10_000);
        let sleep = tokio::spawn(sleep_until(Arc::new(clock.clone()), 70_000));
        clock.advance(59_999);
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished(), "a millisecond short");
        clock.advance(1);
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("woken by the move")
            .expect("the sleep ran");
    }

    #[tokio::test]
    async fn a_sleep_on_the_system_clock_waits_real_time() {
        let clock = system();
        let started = std::time::Instant::now();
        sleep_until(clock.clone(), clock.now() + 30).await;
        assert!(started.elapsed() >= Duration::from_millis(29));
        sleep_until(clock.clone(), 0).await;
    }
}
