//! Shutdown: one flag every task watches, and the count of WebSocket sessions still open, which
//! shutdown waits for (axum's graceful shutdown does not see upgraded connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        let stop = *rx.borrow_and_update();
        if stop || rx.changed().await.is_err() {
            return;
        }
    }
}

/// Counts WebSocket sessions so shutdown can wait for them.
#[derive(Default)]
pub struct OpenSessions {
    open: AtomicUsize,
    idle: Notify,
}

/// One open session; dropping it closes the session in the count.
pub struct SessionGuard(Arc<OpenSessions>);

impl OpenSessions {
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no session is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
