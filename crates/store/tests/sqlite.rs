//! The SQLite catalog against the shared conformance suite, and the journal's durability rules.
#![allow(clippy::unwrap_used)]

use nightmarket_domain::{
    BuyerId, ClaimId, ClaimRecord, Dong, LogEntry, ProductId, SequencedEvent, ShowEvent, ShowId,
};
use nightmarket_store::sql::{Step, sqlite::SqliteEngine};
use nightmarket_store::{
    JournalEntry, JournalError, SellerRow, SqliteJournal, Store, conformance, params,
};

/// A fresh SQLite store for one conformance case; the directory must outlive it.
async fn fresh_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
        .await
        .unwrap();
    (store, dir)
}

/// One test per case of the shared suite: `conformance_cases::<case>`.
mod conformance_cases {
    nightmarket_store::store_conformance!(super::fresh_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_applies_no_migration_twice_and_keeps_the_data() {
    let (store, dir) = fresh_store().await;
    conformance::markets(&store).await.unwrap();
    let markets = store
        .markets(&nightmarket_store::Keyset::everything())
        .await
        .unwrap()
        .items
        .len();
    assert!(markets >= 2, "{markets}");
    // Reopening applies no migration twice and keeps the data.
    drop(store);
    let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
        .await
        .unwrap();
    assert_eq!(
        store
            .markets(&nightmarket_store::Keyset::everything())
            .await
            .unwrap()
            .items
            .len(),
        markets
    );
}

/// Longest a step that should not wait may take before the test calls it stuck.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn seller(id: &str) -> SellerRow {
    SellerRow {
        id: nightmarket_domain::SellerId::parse(id).unwrap(),
        name: format!("HTX {id}"),
        kind: "cooperative".into(),
        district: "Ba Vì".into(),
        created_at: 1_795_000_000_000,
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?}"))
}

/// A write transaction held open (as a long settlement holds the writer) delays the other
/// writes, but not the reads: they answer from the last commit, without its uncommitted rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_proceed_while_a_long_write_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let engine = std::sync::Arc::new(
        SqliteEngine::open_pooled(
            &dir.path().join("catalog.sqlite"),
            2,
            std::time::Duration::from_secs(5),
        )
        .unwrap(),
    );
    let store = Store::with_engine(engine.clone()).await.unwrap();
    store.create_seller(&seller("before")).await.unwrap();

    let (held_tx, held) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let insert = Step::new(
        "INSERT INTO sellers (id, name, kind, district, created_at) VALUES ($1, $2, $3, $4, $5)",
        params![
            "during",
            "HTX during",
            "cooperative",
            "Ba Vì",
            1_795_000_000_001i64
        ],
    );
    let long_write = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .hold_transaction(vec![insert], held_tx, release_rx)
                .await
        }
    });
    within("the long write to begin", held).await.unwrap();
    let other_write = tokio::spawn({
        let store = store.clone();
        async move { store.create_seller(&seller("after")).await }
    });

    // More reads at once than the pool has readers: they take turns, none waits for the write.
    let reads = (0..8).map(|_| {
        let store = store.clone();
        async move {
            store
                .sellers(&nightmarket_store::Keyset::everything())
                .await
                .map(|p| p.items)
        }
    });
    for listed in within("reads during the write", futures_join(reads)).await {
        let ids: Vec<String> = listed.unwrap().iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ids, ["before"], "a read sees the last commit only");
    }
    let during = nightmarket_domain::SellerId::parse("during").unwrap();
    assert_eq!(
        within("a point read", store.seller(&during)).await.unwrap(),
        None
    );
    assert!(!long_write.is_finished(), "the write is still open");
    assert!(
        !other_write.is_finished(),
        "one writer: a second write waits for the open one"
    );

    release.send(()).unwrap();
    within("the long write", long_write).await.unwrap().unwrap();
    within("the queued write", other_write)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<String> = store
        .sellers(&nightmarket_store::Keyset::everything())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

/// Awaits every future, concurrently, in order.
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn record(n: u32) -> ClaimRecord {
    ClaimRecord {
        claim_id: ClaimId::parse(format!("c{n}")).unwrap(),
        buyer: BuyerId::parse(format!("b{}", n % 7)).unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        quantity: 1 + n % 3,
        unit_price: Dong::parse(99_000).unwrap(),
        flash_id: n.is_multiple_of(2).then_some(1),
        at: 1_700_000_000_000 + i64::from(n),
        cancelled_at: None,
    }
}

#[tokio::test]
async fn journal_survives_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let show = ShowId::parse("s1").unwrap();
    {
        let j = SqliteJournal::open(&path, 1024).unwrap();
        let ev = SequencedEvent {
            seq: 1,
            at: 5,
            event: ShowEvent::ShowLive,
        };
        j.try_append(JournalEntry::Event {
            show: show.clone(),
            event: ev,
        })
        .unwrap();
        let mut last = None;
        for n in 0..500u32 {
            let t = j
                .try_append(JournalEntry::Claim {
                    show: show.clone(),
                    pos: u64::from(n),
                    record: record(n),
                })
                .unwrap();
            last = Some(t);
        }
        let t = j
            .try_append(JournalEntry::Cancel {
                show: show.clone(),
                pos: 500,
                record: record(3),
                at: 9,
            })
            .unwrap();
        j.durable(last.unwrap()).await.unwrap();
        j.durable(t).await.unwrap();
    }
    let j = SqliteJournal::open(&path, 16).unwrap();
    let loaded = j.load_show(&show).unwrap();
    assert_eq!(loaded.events.len(), 1);
    assert_eq!(loaded.log.len(), 501);
    for (n, (rec, cancelled)) in loaded.log.iter().take(500).enumerate() {
        assert_eq!(rec, &record(n as u32));
        assert_eq!(*cancelled, None);
    }
    // A cancellation names the claim it cancels and when it happened.
    assert_eq!(loaded.log[500].0.claim_id, record(3).claim_id);
    assert_eq!(loaded.log[500].1, Some(9));
    // Another show's journal is separate.
    assert!(
        j.load_show(&ShowId::parse("s2").unwrap())
            .unwrap()
            .log
            .is_empty()
    );
}

/// A seller's stream event: counted once written, synced by the next entry that syncs.
fn pinned(seq: u64) -> SequencedEvent {
    SequencedEvent {
        seq,
        at: 10 + seq as i64,
        event: ShowEvent::Pinned {
            product_id: ProductId::parse("p1").unwrap(),
            price: Dong::parse(250_000).unwrap(),
        },
    }
}

/// Stream events count as committed once written, without a sync of their own; the next claim's
/// sync covers them, and all of it reads back after a reopen. Going live and closing are synced
/// before they count.
#[tokio::test]
async fn stream_events_are_written_at_once_and_synced_by_the_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let show = ShowId::parse("s1").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    {
        let j = SqliteJournal::open_with(&path, 64, hour).unwrap();
        let live = j
            .try_append(JournalEntry::Event {
                show: show.clone(),
                event: SequencedEvent {
                    seq: 1,
                    at: 5,
                    event: ShowEvent::ShowLive,
                },
            })
            .unwrap();
        j.written(live).await.unwrap();
        assert!(j.is_durable(live), "going live is synced before it counts");

        let pins: Vec<_> = (2..=4)
            .map(|seq| {
                j.try_append(JournalEntry::Event {
                    show: show.clone(),
                    event: pinned(seq),
                })
                .unwrap()
            })
            .collect();
        for &t in &pins {
            j.written(t).await.unwrap();
            assert!(!j.is_durable(t), "a stream event waits for the next sync");
        }
        let claim = j
            .try_append(JournalEntry::Claim {
                show: show.clone(),
                pos: 0,
                record: record(0),
            })
            .unwrap();
        j.durable(claim).await.unwrap();
        for &t in &pins {
            assert!(
                j.is_durable(t),
                "the claim's sync covers the events before it"
            );
        }
    }
    let j = SqliteJournal::open(&path, 16).unwrap();
    let loaded = j.load_show(&show).unwrap();
    let seqs: Vec<u64> = loaded.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(loaded.events[1], pinned(2));
    assert_eq!(loaded.log.len(), 1);
}

/// With nothing after them to sync, written stream events are synced within their bound.
#[tokio::test]
async fn written_stream_events_are_synced_within_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open_with(
        &dir.path().join("journal.sqlite"),
        16,
        std::time::Duration::from_millis(20),
    )
    .unwrap();
    let t = j
        .try_append(JournalEntry::Event {
            show: ShowId::parse("s1").unwrap(),
            event: pinned(1),
        })
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), j.durable(t))
        .await
        .expect("synced by the writer's own deadline")
        .unwrap();
}

#[tokio::test]
async fn full_queue_refuses_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("journal.sqlite"), 1).unwrap();
    let show = ShowId::parse("s1").unwrap();
    // Appending far faster than a commit: some appends must be refused with Full, never queued
    // beyond the bound, and every accepted one must become durable.
    let mut tickets = Vec::new();
    let mut full = 0;
    for n in 0..10_000u32 {
        match j.try_append(JournalEntry::Claim {
            show: show.clone(),
            pos: u64::from(n),
            record: record(n),
        }) {
            Ok(t) => tickets.push(t),
            Err(JournalError::Full) => full += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full > 0, "a queue of one must fill up");
    for t in tickets {
        j.durable(t).await.unwrap();
    }
}

/// Appends and waits until everything is on disk.
async fn append_all(j: &SqliteJournal, entries: Vec<JournalEntry>) {
    let mut last = None;
    for e in entries {
        last = Some(j.try_append(e).unwrap());
    }
    if let Some(t) = last {
        j.durable(t).await.unwrap();
    }
}

fn event(seq: u64, at: i64, event: ShowEvent) -> SequencedEvent {
    SequencedEvent { seq, at, event }
}

#[tokio::test]
async fn the_claim_log_reads_back_in_pages_and_ends_with_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("journal.sqlite"), 1024).unwrap();
    let show = ShowId::parse("s1").unwrap();
    assert_eq!(j.read_log(&show, 0, 10).unwrap(), None);
    assert_eq!(j.show_closed(&show).unwrap(), None);
    let live = JournalEntry::Event {
        show: show.clone(),
        event: event(1, 5, ShowEvent::ShowLive),
    };
    let mut entries = vec![live];
    for n in 0..5u32 {
        entries.push(JournalEntry::Claim {
            show: show.clone(),
            pos: u64::from(n),
            record: record(n),
        });
    }
    let mut cancelled = record(3);
    cancelled.cancelled_at = Some(9_000);
    entries.push(JournalEntry::Cancel {
        show: show.clone(),
        pos: 5,
        record: cancelled.clone(),
        at: 9_000,
    });
    append_all(&j, entries).await;

    let mut expected: Vec<LogEntry> = (0..5u32)
        .map(|n| LogEntry::Claim {
            pos: u64::from(n),
            record: record(n),
        })
        .collect();
    expected.push(LogEntry::Cancel {
        pos: 5,
        record: cancelled,
        at: 9_000,
    });
    assert_eq!(j.read_log(&show, 0, 100).unwrap().unwrap(), expected);
    assert_eq!(j.read_log(&show, 2, 3).unwrap().unwrap(), expected[2..5]);
    assert_eq!(j.read_log(&show, 6, 100).unwrap().unwrap(), []);
    assert_eq!(j.read_log(&show, 0, 0).unwrap().unwrap(), []);
    assert_eq!(j.show_closed(&show).unwrap(), Some(false));

    let final_stock = vec![(ProductId::parse("p1").unwrap(), 7)];
    append_all(
        &j,
        vec![JournalEntry::Event {
            show: show.clone(),
            event: event(
                2,
                10_000,
                ShowEvent::ShowClosed {
                    final_stock: final_stock.clone(),
                },
            ),
        }],
    )
    .await;
    let close = LogEntry::Close {
        pos: 6,
        at: 10_000,
        final_stock,
    };
    assert_eq!(j.show_closed(&show).unwrap(), Some(true));
    // The marker only where the page has room after the last entry.
    assert_eq!(j.read_log(&show, 4, 2).unwrap().unwrap(), expected[4..6]);
    assert_eq!(
        j.read_log(&show, 4, 3).unwrap().unwrap(),
        [&expected[4..6], std::slice::from_ref(&close)].concat()
    );
    assert_eq!(j.read_log(&show, 6, 1).unwrap().unwrap(), [close]);
    assert_eq!(j.read_log(&show, 7, 10).unwrap().unwrap(), []);
}

#[tokio::test]
async fn a_journal_from_before_cancel_rows_kept_the_claim_time_still_reads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    // The claim_log table as it was, with one claim and its cancellation.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE claim_log (
                show_id TEXT NOT NULL, pos INTEGER NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('claim', 'cancel')),
                claim_id TEXT NOT NULL, buyer_id TEXT NOT NULL, product_id TEXT NOT NULL,
                quantity INTEGER NOT NULL CHECK (quantity > 0),
                unit_price INTEGER NOT NULL CHECK (unit_price > 0),
                flash_id INTEGER, at INTEGER NOT NULL,
                PRIMARY KEY (show_id, pos)) WITHOUT ROWID;
             INSERT INTO claim_log VALUES ('s1', 0, 'claim', 'c1', 'b1', 'p1', 2, 99000, NULL, 1000);
             INSERT INTO claim_log VALUES ('s1', 1, 'cancel', 'c1', 'b1', 'p1', 2, 99000, NULL, 2000);",
        )
        .unwrap();
    }
    let j = SqliteJournal::open(&path, 16).unwrap();
    let log = j
        .read_log(&ShowId::parse("s1").unwrap(), 1, 10)
        .unwrap()
        .unwrap();
    let LogEntry::Cancel { pos, record, at } = &log[0] else {
        panic!("expected the cancellation, got {log:?}");
    };
    assert_eq!(
        (*pos, record.at, *at, record.cancelled_at),
        (1, 1000, 2000, Some(2000))
    );
    // Opening again finds the column in place.
    drop(j);
    SqliteJournal::open(&path, 16).unwrap();
}
