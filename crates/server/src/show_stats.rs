//! The show statistics this node collects for post-show reports: claims refused per show and
//! reason, and the most viewers per show and minute.
//!
//! Counting is on the claim path, so it takes no lock: each show's runtime holds its
//! [`ShowCounters`], one atomic per reason. Viewers are sampled by the periodic tick, under a
//! per-show lock only the tick and the flusher take. The flush job (`crate::jobs::stats`) writes
//! what changed to the store every `market.stats_flush_ms` and once more at shutdown.
//!
//! The store keeps one row per writer id and the larger of the stored and the sent value, and
//! everything sent only grows (a refusal count is a running total, a viewer figure the most
//! seen in that minute so far). So a flush that fails is simply retried by the next one, and a
//! flush that succeeded but looked failed does no harm when repeated. That is also why refusals
//! are written under an id new for every set of counters, `<process>/<n>` (the process's id, new
//! in every process, and a number new for each show's counters made in it): counters made
//! afresh start from zero, and under an id that already has a larger, older total the new one
//! would be hidden. The store sums a show's refusals over ids, so the old total and the new add
//! up.
//!
//! A show's counters leave memory once nothing can count into them and the store has
//! everything they counted: the first flush after the show's runtime let go of them (a closed
//! show leaves memory once nobody watches it, after `live::CLOSED_SHOW_KEPT_MS`) drops them,
//! having written their last changes. Not at the close itself: a closed show still served here
//! still counts (a late claim is refused as `show_not_live`), into the counters its runtime
//! holds. So the counters held are the shows this node serves plus those whose last figures
//! wait for the store (no more than were served when the store stopped answering: loading a
//! show reads the store), which needs no bound of its own. If the show counts again later (a
//! viewer loads it again), its new counters write under a new id, as above: nothing about the
//! shows that left has to be kept, nor read back from the store.
//!
//! Viewers are the other way round. The figures of nodes running side by side add up, but a
//! node that restarts within a minute sees the same viewers reconnect: under a new id its
//! second figure would be added to its first. So viewer figures are written under the node's
//! identity, which outlives a restart ([`node_identity`]: its host and configured listen
//! address, which no two running processes share), and the store keeps the larger of the two.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nightmarket_domain::{Millis, ShowId};
use nightmarket_store::{RefusalTotal, ShowStatsBatch, Store, StoreError, ViewerSample};
use nightmarket_wire::ErrorCode;

/// Viewer samples are kept per minute.
pub const MINUTE_MS: Millis = 60_000;

/// Minutes of viewer figures a show keeps while the store cannot be written: a day of them.
/// Past it the oldest minute is dropped, so an unreachable store costs bounded memory.
pub const PENDING_MINUTES: usize = 24 * 60;

/// Characters of the random part of a node id: enough that two processes that share a host
/// name and (in containers) a pid still differ.
const NODE_ID_RANDOM_CHARS: usize = 12;

/// Refusal reasons counted per show: every wire error code.
const REASONS: usize = ErrorCode::ALL.len();

/// Takes a lock even if a panic poisoned it: every figure behind these locks is valid on its
/// own (a maximum, a set of counters), so no half-done change can be seen.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The minute an instant falls in, as the store keys viewer samples.
pub fn minute_of(at: Millis) -> i64 {
    at.div_euclid(MINUTE_MS)
}

/// A node id unique to this process: `<host>-<pid>-<random>`.
pub fn new_node_id() -> String {
    let host = host_name();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let random = random.get(..NODE_ID_RANDOM_CHARS).unwrap_or(&random);
    format!("{host}-{}-{random}", std::process::id())
}

/// The identity a node's viewer figures are written under: `<host>-<listen address>`, the
/// same for a process and the one restarted in its place, never shared by two processes running
/// at once (they cannot bind the same address). With port 0 the address is not known before it
/// is bound and differs per process: each process is then its own node, and a restart within a
/// minute adds up as before.
pub fn node_identity(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    (addr.port() != 0).then(|| format!("{}-{addr}", host_name()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

/// One minute's viewer figure: the most seen, and the most the store has been sent.
#[derive(Debug, Default, Clone, Copy)]
struct Minute {
    most: u64,
    sent: u64,
}

/// One show's counters on this node.
#[derive(Debug)]
pub struct ShowCounters {
    /// The id the store keeps these running totals under: new for every set of counters, so
    /// that no older, larger total of the show hides them (see the module doc).
    refusals_by: String,
    /// Running totals of refused claims, indexed like `ErrorCode::ALL`.
    refused: [AtomicU64; REASONS],
    /// The totals the store has been sent; only flushes touch them.
    sent: [AtomicU64; REASONS],
    /// Minutes whose figure the store does not have yet, or that may still grow.
    viewers: Mutex<BTreeMap<i64, Minute>>,
}

impl ShowCounters {
    fn new(refusals_by: String) -> Self {
        Self {
            refusals_by,
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            viewers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one claim refused with `code`. One atomic add: this is the claim path.
    pub fn refused(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that `viewers` watched at some instant of `minute`.
    pub fn saw_viewers(&self, minute: i64, viewers: u64) {
        // No viewers never raises a peak; skipping them keeps idle shows out of the store.
        if viewers == 0 {
            return;
        }
        let mut minutes = lock(&self.viewers);
        let m = minutes.entry(minute).or_default();
        m.most = m.most.max(viewers);
        while minutes.len() > PENDING_MINUTES {
            minutes.pop_first();
        }
    }

    /// What changed since the last successful flush.
    fn changes(&self, show: &ShowId) -> ShowStatsBatch {
        let refusals = ErrorCode::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, code)| {
                let count = self.refused[i].load(Ordering::Relaxed);
                (count > self.sent[i].load(Ordering::Relaxed)).then(|| RefusalTotal {
                    show: show.clone(),
                    reason: code.as_str().to_owned(),
                    count,
                })
            })
            .collect();
        let viewers = lock(&self.viewers)
            .iter()
            .filter(|(_, m)| m.most > m.sent)
            .map(|(minute, m)| ViewerSample {
                show: show.clone(),
                minute: *minute,
                viewers: m.most,
            })
            .collect();
        ShowStatsBatch { refusals, viewers }
    }

    /// Whether the store has every figure counted here (a current minute it has may still grow,
    /// but only while someone counts).
    fn all_sent(&self) -> bool {
        let refusals =
            self.refused.iter().zip(&self.sent).all(|(counted, sent)| {
                counted.load(Ordering::Relaxed) <= sent.load(Ordering::Relaxed)
            });
        refusals && lock(&self.viewers).values().all(|m| m.most <= m.sent)
    }

    /// Notes that the store has `batch`; past minutes it has in full are forgotten.
    fn flushed(&self, batch: &ShowStatsBatch, now_minute: i64) {
        for r in &batch.refusals {
            if let Some(i) = ErrorCode::ALL.iter().position(|c| c.as_str() == r.reason) {
                self.sent[i].fetch_max(r.count, Ordering::Relaxed);
            }
        }
        let mut minutes = lock(&self.viewers);
        for v in &batch.viewers {
            if let Some(m) = minutes.get_mut(&v.minute) {
                m.sent = m.sent.max(v.viewers);
            }
        }
        // The current minute stays: its figure may still grow.
        minutes.retain(|minute, m| *minute >= now_minute || m.most > m.sent);
    }
}

/// Most shows whose statistics one flush writes in one transaction: bounds the statement
/// count of a transaction on a node serving many shows.
pub const SHOWS_PER_FLUSH: usize = 200;

/// This node's collector: its ids and the counters of every show that may still count or has
/// figures the store lacks.
#[derive(Debug)]
pub struct ShowStats {
    /// This process: refusal totals are written under ids made from it.
    process: String,
    /// This node across restarts: viewer figures are written under it.
    node: String,
    shows: Mutex<HashMap<ShowId, Arc<ShowCounters>>>,
    /// Sets of counters made so far: numbers the next one's refusal id.
    made: AtomicU64,
}

impl ShowStats {
    /// A collector whose refusals and viewers both go under `process` (see [`Self::for_node`]).
    pub fn new(process: impl Into<String>) -> Self {
        let process = process.into();
        Self {
            node: process.clone(),
            process,
            shows: Mutex::new(HashMap::new()),
            made: AtomicU64::new(0),
        }
    }

    /// A collector for the process `process` of the node `node` (see [`node_identity`]).
    pub fn for_node(process: impl Into<String>, node: Option<String>) -> Self {
        let mut stats = Self::new(process);
        if let Some(node) = node {
            stats.node = node;
        }
        stats
    }

    /// The id this node's viewer rows carry in the store.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The id this process's refusal rows start with in the store (`<process>/<n>`).
    pub fn process(&self) -> &str {
        &self.process
    }

    /// The counters of `show`, created on first use; a show's runtime keeps them, so counting
    /// never looks them up.
    pub fn counters(&self, show: &ShowId) -> Arc<ShowCounters> {
        lock(&self.shows)
            .entry(show.clone())
            .or_insert_with(|| {
                let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
                Arc::new(ShowCounters::new(format!("{}/{n}", self.process)))
            })
            .clone()
    }

    /// How many shows' counters this node holds: the shows it serves, and those whose last
    /// figures the store does not have yet.
    pub fn shows_held(&self) -> usize {
        lock(&self.shows).len()
    }

    /// Writes what changed since the last flush, then lets go of the counters nothing can count
    /// into any more whose figures the store now has in full. Every show's changes go in one
    /// transaction per [`SHOWS_PER_FLUSH`] shows: each row is kept as the larger of the stored
    /// and the sent value, so a failed flush simply sends the same again next time. On the first
    /// failure it stops (the store is failing; trying on would wait out its timeout again);
    /// shows not written keep their changes (and their counters) for the next flush.
    pub async fn flush(&self, store: &Store, now: Millis) -> Result<(), StoreError> {
        let shows: Vec<(ShowId, Arc<ShowCounters>)> = lock(&self.shows)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let now_minute = minute_of(now);
        let changed: Vec<(Arc<ShowCounters>, ShowStatsBatch)> = shows
            .into_iter()
            .map(|(show, counters)| {
                let batch = counters.changes(&show);
                (counters, batch)
            })
            .filter(|(_, batch)| !batch.is_empty())
            .collect();
        for chunk in changed.chunks(SHOWS_PER_FLUSH) {
            // Refusals go under the counters' own id, viewers under the node's (see
            // `ShowCounters::refusals_by`).
            let parts: Vec<(&str, &str, &ShowStatsBatch)> = chunk
                .iter()
                .map(|(counters, batch)| (counters.refusals_by.as_str(), self.node.as_str(), batch))
                .collect();
            store.record_show_stats_of(&parts).await?;
            for (counters, batch) in chunk {
                counters.flushed(batch, now_minute);
            }
        }
        // `let_go` tells held counters by their count of holders: these clones must go first.
        drop(changed);
        self.let_go();
        Ok(())
    }

    /// Drops the counters no runtime holds any more (so nothing counts into them) whose figures
    /// the store has in full. Under the lock [`Self::counters`] hands them out with, so none is
    /// handed out while it goes.
    fn let_go(&self) {
        lock(&self.shows)
            .retain(|_, counters| Arc::strong_count(counters) > 1 || !counters.all_sent());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show() -> ShowId {
        ShowId::parse("s1").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_changes_are_sent_and_past_minutes_once_sent_are_forgotten() {
        let c = ShowCounters::new("p/1".into());
        c.refused(ErrorCode::SoldOut);
        c.refused(ErrorCode::SoldOut);
        c.refused(ErrorCode::StalePrice);
        c.saw_viewers(10, 3);
        c.saw_viewers(10, 5);
        c.saw_viewers(10, 4);
        c.saw_viewers(11, 0);
        let b = c.changes(&show());
        let reasons: Vec<(&str, u64)> = b
            .refusals
            .iter()
            .map(|r| (r.reason.as_str(), r.count))
            .collect();
        assert_eq!(reasons, [("sold_out", 2), ("stale_price", 1)]);
        assert_eq!(
            b.viewers
                .iter()
                .map(|v| (v.minute, v.viewers))
                .collect::<Vec<_>>(),
            [(10, 5)]
        );

        // A failed flush changes nothing: the same figures go next time.
        assert_eq!(c.changes(&show()), b);

        c.flushed(&b, 10);
        assert!(c.changes(&show()).is_empty(), "nothing new since the flush");
        // The current minute is kept and grows; a refusal counted meanwhile is sent as a total.
        c.saw_viewers(10, 6);
        c.refused(ErrorCode::SoldOut);
        let b = c.changes(&show());
        assert_eq!(b.refusals.len(), 1);
        assert_eq!(b.refusals[0].count, 3);
        assert_eq!(b.viewers.len(), 1);
        assert_eq!(b.viewers[0].viewers, 6);
        c.flushed(&b, 11);
        assert!(lock(&c.viewers).is_empty());
    }

    #[test]
    fn pending_minutes_are_bounded() {
        let c = ShowCounters::new("p/1".into());
        for minute in 0..(PENDING_MINUTES as i64 + 10) {
            c.saw_viewers(minute, 1);
        }
        assert_eq!(lock(&c.viewers).len(), PENDING_MINUTES);
    }

    /// Counters nothing holds but the collector stay while the store lacks some of their
    /// figures, and go once it has them all.
    #[test]
    fn unheld_counters_stay_until_everything_is_sent() {
        let stats = ShowStats::new("p");
        let c = stats.counters(&show());
        c.refused(ErrorCode::SoldOut);
        c.saw_viewers(10, 2);
        let b = c.changes(&show());
        drop(c);
        stats.let_go();
        assert_eq!(stats.shows_held(), 1, "its figures are not written yet");
        let c = stats.counters(&show());
        c.flushed(&b, 10);
        stats.let_go();
        assert_eq!(stats.shows_held(), 1, "still held by `c`");
        drop(c);
        stats.let_go();
        assert_eq!(stats.shows_held(), 0);
    }

    /// Over a real store: counters a runtime let go of leave at the flush that writes their last
    /// figures, and a show that counts again after that adds to its stored totals (a new set of
    /// counters starts from zero, under an id of its own) rather than hiding under them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counters_leave_once_written_and_counting_again_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
            .await
            .unwrap();
        let stats = ShowStats::new("p");
        let (served, left) = (show(), ShowId::parse("s2").unwrap());
        let held = stats.counters(&served);
        let runtime = stats.counters(&left);
        for _ in 0..3 {
            held.refused(ErrorCode::SoldOut);
            runtime.refused(ErrorCode::SoldOut);
        }
        runtime.saw_viewers(10, 4);
        drop(runtime);
        let now = 10 * MINUTE_MS;
        stats.flush(&store, now).await.unwrap();
        assert_eq!(
            stats.shows_held(),
            1,
            "only the counters a runtime holds stay"
        );
        let sold_out = |n| ("sold_out".to_owned(), n);
        assert_eq!(store.show_refusals(&left).await.unwrap(), [sold_out(3)]);

        let again = stats.counters(&left);
        again.refused(ErrorCode::SoldOut);
        again.refused(ErrorCode::StalePrice);
        again.saw_viewers(10, 2);
        stats.flush(&store, now).await.unwrap();
        assert_eq!(
            store.show_refusals(&left).await.unwrap(),
            [sold_out(4), ("stale_price".to_owned(), 1)]
        );
        assert_eq!(store.show_peak_viewers(&left).await.unwrap(), 4);
        assert_eq!(store.show_refusals(&served).await.unwrap(), [sold_out(3)]);
        assert_eq!(stats.shows_held(), 2);
        drop((again, held));
        stats.flush(&store, now).await.unwrap();
        assert_eq!(stats.shows_held(), 0);
    }

    #[test]
    fn node_ids_differ_per_collector() {
        assert_ne!(new_node_id(), new_node_id());
    }
}
