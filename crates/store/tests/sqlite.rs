//! The SQLite catalog against the shared conformance suite, and the journal's durability rules.
#![allow(clippy::unwrap_used)]

use nightmarket_domain::{
    BuyerId, ClaimId, ClaimRecord, Dong, ProductId, SequencedEvent, ShowEvent, ShowId,
};
use nightmarket_store::{JournalEntry, JournalError, SqliteJournal, Store, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
        .await
        .unwrap();
    conformance::run(&store).await.unwrap();
    // Reopening applies no migration twice and keeps the data.
    drop(store);
    let store = Store::sqlite(&dir.path().join("catalog.sqlite"))
        .await
        .unwrap();
    assert_eq!(store.markets().await.unwrap().len(), 5);
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
