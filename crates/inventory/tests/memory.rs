//! The memory inventory against the shared conformance suite, and its restart guarantee:
//! state rebuilt from the journal equals the state before the restart.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use nightmarket_domain::{BuyerId, ClaimDecision, ClaimId, LineupEntry, ShowId};
use nightmarket_inventory::conformance::fixtures::{self, LIST};
use nightmarket_inventory::{
    Cancel, Claim, Command, DecisionClock, Inventory, MemoryInventory, WaitlistJoin, WaitlistLeave,
    conformance,
};
use nightmarket_store::SqliteJournal;

/// A fresh memory inventory on a journal of its own, for one conformance case; the directory
/// must outlive it.
async fn fresh_inventory() -> (Arc<dyn Inventory>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096).unwrap();
    let inv = Arc::new(MemoryInventory::new(journal, 1000).deciding_by(DecisionClock::Scripted));
    (inv, dir)
}

/// One test per case of the shared suite: `conformance_cases::<case>`.
mod conformance_cases {
    nightmarket_inventory::inventory_conformance!(super::fresh_inventory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_inventory_decides_at_execution() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096).unwrap();
    let inv = MemoryInventory::new(journal, 1000);
    conformance::decided_at_execution(&inv, "mem")
        .await
        .unwrap();
}

/// On the process's clock (here a manual one), a flash price holds until that clock passes
/// the flash's end and not a moment longer, and a deadline passes when that clock passes it:
/// the `now` a caller passes (the wall clock's, 1970 here) decides nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_ends_and_a_deadline_passes_when_the_injected_clock_says() {
    use nightmarket_domain::{Clock, Dong, FlashSpec, ManualClock, RefusalReason};
    use nightmarket_inventory::conformance::fixtures::{T0, accepted, live_show, refused, req};

    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096).unwrap();
    let clock = ManualClock::new(T0);
    let inv = MemoryInventory::new(journal, 1000).with_clock(Arc::new(clock.clone()));
    let show = live_show(&inv, "clocked", 40, 5, 0).await.unwrap();
    const FLASH: i64 = 99_000;
    let spec = FlashSpec {
        product_id: fixtures::pid("p1"),
        price: Dong::parse(FLASH).unwrap(),
        duration_s: 600,
        quantity_cap: None,
        countdown_s: 0,
    };
    inv.command(&show, Command::StartFlash(spec), 0)
        .await
        .unwrap();
    let flash = inv.view(&show, None, 0).await.unwrap().flash.unwrap();
    assert_eq!((flash.starts_at, flash.ends_at), (T0, T0 + 600_000));

    clock.set(flash.ends_at - 1);
    let d = inv.claim(&show, req("in-flash", "b1", "p1", 1, FLASH).unwrap(), 0);
    let record = accepted(d.await.unwrap()).unwrap();
    assert_eq!(
        record.at,
        flash.ends_at - 1,
        "stamped on the injected clock"
    );
    assert_eq!(
        inv.view(&show, None, 0).await.unwrap().price.map(Dong::get),
        Some(FLASH)
    );

    clock.set(flash.ends_at);
    let d = inv.claim(&show, req("after", "b1", "p1", 1, FLASH).unwrap(), 0);
    assert_eq!(refused(&d.await.unwrap()), Some(RefusalReason::StalePrice));
    assert_eq!(
        inv.view(&show, None, 0).await.unwrap().price.map(Dong::get),
        Some(LIST),
        "the list price is back once the clock reaches the flash's end"
    );

    // A deadline is judged on the same clock.
    let deadline = clock.now() + 1;
    let d = inv.claim_within(
        &show,
        Claim {
            req: req("on-time", "b2", "p1", 1, LIST).unwrap(),
            now: 0,
            deadline: Some(deadline),
        },
    );
    accepted(d.await.unwrap()).unwrap();
    clock.advance(2);
    let r = inv
        .claim_within(
            &show,
            Claim {
                req: req("late", "b2", "p1", 1, LIST).unwrap(),
                now: 0,
                deadline: Some(deadline),
            },
        )
        .await;
    assert!(
        matches!(
            r,
            Err(nightmarket_inventory::InventoryError::DeadlinePassed)
        ),
        "{r:?}"
    );
}

/// Products `p1` and `p2`, 40 units each, at most 5 a buyer.
fn lineup() -> Vec<LineupEntry> {
    fixtures::lineup(40, 5).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let show = ShowId::parse("restart").unwrap();
    let t0 = 1_763_730_000_000;
    let before = {
        let inv = MemoryInventory::new(SqliteJournal::open(&path, 4096).unwrap(), 1000)
            .deciding_by(DecisionClock::Scripted);
        inv.open_show(&show, lineup()).await.unwrap();
        inv.command(&show, Command::GoLive, t0).await.unwrap();
        inv.command(&show, Command::Pin(fixtures::pid("p1")), t0)
            .await
            .unwrap();
        for n in 0..30 {
            let req = fixtures::claim(&format!("c{n}"), &format!("b{}", n % 9), 1 + (n % 3) as u32)
                .unwrap();
            inv.claim(&show, req, t0 + n).await.unwrap();
        }
        inv.cancel(
            &show,
            Cancel {
                buyer: BuyerId::parse("b0").unwrap(),
                claim_id: ClaimId::parse("c0").unwrap(),
                now: t0 + 99,
            },
        )
        .await
        .unwrap();
        inv.view(&show, Some(&BuyerId::parse("b1").unwrap()), t0)
            .await
            .unwrap()
    };
    let inv = MemoryInventory::new(SqliteJournal::open(&path, 4096).unwrap(), 1000)
        .deciding_by(DecisionClock::Scripted);
    inv.open_show(&show, lineup()).await.unwrap();
    let after = inv
        .view(&show, Some(&BuyerId::parse("b1").unwrap()), t0)
        .await
        .unwrap();
    assert_eq!(before, after);
    // Idempotency survives the restart too.
    let retry = fixtures::claim("c5", "b5", 3).unwrap();
    assert!(matches!(
        inv.claim(&show, retry, t0).await.unwrap(),
        ClaimDecision::Duplicate(_)
    ));
    let events = inv.events_after(&show, 0, 100).await.unwrap().unwrap();
    assert_eq!(events.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_log_reads_from_the_journal_without_opening_the_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let writer = MemoryInventory::new(SqliteJournal::open(&path, 4096).unwrap(), 1000)
        .deciding_by(DecisionClock::Scripted);
    // The order service's instance: the same journal file, opened on its own.
    let reader = MemoryInventory::new(SqliteJournal::open(&path, 4096).unwrap(), 1000)
        .deciding_by(DecisionClock::Scripted);
    conformance::claim_log_from_another_instance(&writer, &reader, "mem")
        .await
        .unwrap();
}

/// Waitlists survive a restart: joins, leaves and promotions are journaled, and replay gives
/// back the same places, the promoted claim and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_the_waitlists() {
    use nightmarket_domain::{CancelDecision, JoinDecision, WaitlistOutcome};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let show = ShowId::parse("restart-wait").unwrap();
    let product = fixtures::pid("p1");
    let b = |s: &str| BuyerId::parse(s).unwrap();
    let t0 = 1_763_730_000_000;
    let open = || async {
        let inv = MemoryInventory::new(SqliteJournal::open(&path, 4096).unwrap(), 1000);
        inv.open_show(&show, lineup()).await.unwrap();
        inv
    };
    {
        let inv = open().await;
        inv.command(&show, Command::GoLive, t0).await.unwrap();
        inv.command(&show, Command::Pin(product.clone()), t0)
            .await
            .unwrap();
        for n in 0..8 {
            let req = fixtures::req(&format!("c{n}"), &format!("a{n}"), "p1", 5, LIST).unwrap();
            inv.claim(&show, req, t0).await.unwrap();
        }
        for who in ["w1", "w2", "w3"] {
            let d = inv
                .waitlist_join(
                    &show,
                    WaitlistJoin {
                        buyer: b(who),
                        product: product.clone(),
                        quantity: fixtures::qty(2).unwrap(),
                        now: t0,
                    },
                )
                .await
                .unwrap();
            assert!(matches!(d, JoinDecision::Joined { .. }), "{d:?}");
        }
        inv.waitlist_leave(
            &show,
            WaitlistLeave {
                buyer: b("w2"),
                product: None,
                now: t0,
            },
        )
        .await
        .unwrap();
    }
    let inv = open().await;
    let view = inv.view(&show, Some(&b("w3")), t0).await.unwrap();
    assert_eq!(view.my_waitlist.len(), 1);
    assert_eq!(view.my_waitlist[0].1, 2, "w2 left: w3 is second");
    let d = inv
        .cancel(
            &show,
            Cancel {
                buyer: b("a0"),
                claim_id: ClaimId::parse("c0").unwrap(),
                now: t0 + 5,
            },
        )
        .await
        .unwrap();
    let CancelDecision::Cancelled { waitlist, .. } = d else {
        panic!("{d:?}");
    };
    assert_eq!(waitlist.len(), 2, "five units back: w1 and w3 get two each");
    assert!(
        waitlist
            .iter()
            .all(|o| matches!(o, WaitlistOutcome::Promoted { .. }))
    );
    let before = inv.view(&show, Some(&b("w3")), t0).await.unwrap();
    drop(inv);
    let inv = open().await;
    let after = inv.view(&show, Some(&b("w3")), t0).await.unwrap();
    assert_eq!(before, after);
    assert!(after.my_waitlist.is_empty());
    assert_eq!(after.my_claims.len(), 1);
    assert_eq!(after.lineup[0].left, 1);
}

/// A released show's book stays in memory for `keep_for`, then leaves it; the journal keeps the
/// show, so its claim log still reads and opening it again gives back the same book, which a
/// later release lets go of again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_show_leaves_memory_and_opens_again_from_the_journal() {
    use nightmarket_domain::{LogCursor, ManualClock};
    use nightmarket_inventory::conformance::fixtures::{T0, live_show};

    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096).unwrap();
    let clock = ManualClock::new(T0);
    let inv = MemoryInventory::new(journal, 1000).with_clock(Arc::new(clock.clone()));
    let show = live_show(&inv, "released", 40, 5, T0).await.unwrap();
    inv.command(&show, Command::Pin(fixtures::pid("p1")), T0)
        .await
        .unwrap();
    for n in 0..6 {
        let req = fixtures::claim(&format!("c{n}"), &format!("b{n}"), 2).unwrap();
        inv.claim(&show, req, T0).await.unwrap();
    }
    inv.command(&show, Command::Close, T0).await.unwrap();
    let buyer = BuyerId::parse("b1").unwrap();
    let before = inv.view(&show, Some(&buyer), T0).await.unwrap();
    let log = inv
        .claim_log(&show, &LogCursor::default(), 100)
        .await
        .unwrap();

    let keep_for = std::time::Duration::from_secs(60);
    inv.release(&show, keep_for).await.unwrap();
    assert_eq!(inv.books_in_memory(), 1, "kept for keep_for");
    assert_eq!(inv.view(&show, Some(&buyer), T0).await.unwrap(), before);

    clock.advance(60_000);
    // Another show opened: the released one's time is over.
    live_show(&inv, "next", 10, 5, T0).await.unwrap();
    assert_eq!(inv.books_in_memory(), 1, "only the new show's book");
    assert!(inv.view(&show, None, T0).await.is_err(), "its book is gone");
    let read = inv
        .claim_log(&show, &LogCursor::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        read.entries, log.entries,
        "the claim log reads from the journal"
    );

    // A late viewer opens it again: the same book, replayed.
    inv.open_show(&show, lineup()).await.unwrap();
    assert_eq!(inv.books_in_memory(), 2);
    assert_eq!(inv.view(&show, Some(&buyer), T0).await.unwrap(), before);
    clock.advance(60_000);
    inv.release(&show, keep_for).await.unwrap();
    assert_eq!(inv.books_in_memory(), 1, "gone again once its time is over");
}

/// The order service asks every live show for news each round. An open book at the end of its
/// log answers from memory; a page with something new, or a closed show (its close marker), is
/// read from the journal, and what is read is the same as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_show_with_nothing_new_answers_the_claim_log_without_a_journal_read() {
    use nightmarket_domain::{LogCursor, LogEntry};
    use nightmarket_inventory::conformance::fixtures::{T0, live_show};

    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("journal.sqlite"), 4096).unwrap();
    let inv = MemoryInventory::new(journal.clone(), 1000);
    let show = live_show(&inv, "quiet", 40, 5, T0).await.unwrap();
    inv.command(&show, Command::Pin(fixtures::pid("p1")), T0)
        .await
        .unwrap();
    let start = LogCursor::default();
    let empty = inv.claim_log(&show, &start, 100).await.unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(empty.next, start);
    assert_eq!(journal.log_reads(), 0, "no claim yet: nothing to read");

    for n in 0..3 {
        let req = fixtures::claim(&format!("c{n}"), &format!("b{n}"), 1).unwrap();
        inv.claim(&show, req, T0).await.unwrap();
    }
    let page = inv.claim_log(&show, &start, 100).await.unwrap();
    assert_eq!(page.entries.len(), 3);
    assert_eq!(page.next.next_pos, 3);
    assert_eq!(journal.log_reads(), 1);
    let at_end = inv.claim_log(&show, &page.next, 100).await.unwrap();
    assert!(at_end.entries.is_empty());
    assert_eq!(at_end.next, page.next, "the cursor stays");
    assert_eq!(journal.log_reads(), 1, "the book knows nothing is new");

    inv.command(&show, Command::Close, T0).await.unwrap();
    let closed = inv.claim_log(&show, &page.next, 100).await.unwrap();
    assert_eq!(
        journal.log_reads(),
        2,
        "a closed show is read for its marker"
    );
    assert!(
        matches!(closed.entries.as_slice(), [LogEntry::Close { pos: 3, .. }]),
        "{:?}",
        closed.entries
    );
}
