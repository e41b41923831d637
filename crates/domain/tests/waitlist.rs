//! The waitlist rules of [`ShowBook`]: unit tests of each rule, then a property test.
//!
//! The property test drives a book with random claims (at the price that applies now),
//! cancels, waitlist joins and leaves, flash starts and ends and a close, and checks after every
//! step:
//!
//! 1. `check_invariants` holds (allotted = left + held, limits, one entry per buyer per product,
//!    FIFO order by entry number, the bound, no waitlist once closed).
//! 2. A join is accepted only for a sold-out lineup product of a live show; joining again
//!    answers the same entry and position and changes nothing.
//! 3. Every promotion is an accepted claim of the entry's buyer, product and quantity, with the
//!    id derived from the entry, at the price that applies now, never above the entry's price;
//!    every skip is for a price above the entry's or a limit that no longer has room.
//! 4. After a cancel, no entry left on that product's waitlist could take the units available
//!    (first fit: units never sit in stock while a waiting buyer could take them).
//! 5. Replaying the events, the claim log and the waitlist journal into a fresh book rebuilds
//!    the same stock and the same waitlists.
#![allow(clippy::unwrap_used)]

use nightmarket_domain::book::{MAX_WAITLIST_PER_PRODUCT, PROMOTED_CLAIM_PREFIX};
use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest, Dong, EndReason,
    FlashSpec, JoinDecision, LineupEntry, Millis, Product, ProductGroup, ProductId, Quantity,
    SellerId, SequencedEvent, ShowBook, ShowId, ShowStatus, SkipReason, Stars, WaitlistEntry,
    WaitlistOutcome, WaitlistRefusal,
};
use proptest::prelude::*;

const T0: Millis = 1_750_000_000_000;
const LIST: i64 = 120_000;
const MAX_QTY: u32 = 5;

fn pid(i: usize) -> ProductId {
    ProductId::parse(format!("p-{i}")).unwrap()
}
fn buyer(s: &str) -> BuyerId {
    BuyerId::parse(s).unwrap()
}
fn qty(q: u32) -> Quantity {
    Quantity::parse(i64::from(q), MAX_QTY).unwrap()
}

fn lineup(spec: &[(u32, u32)]) -> Vec<LineupEntry> {
    spec.iter()
        .enumerate()
        .map(|(i, &(allotted, buyer_limit))| LineupEntry {
            product: Product {
                id: pid(i),
                seller_id: SellerId::parse("htx-bat-trang").unwrap(),
                name: format!("Bình gốm {i}"),
                group: ProductGroup::Handicrafts,
                stars: Stars::parse(4).unwrap(),
                district: "Gia Lâm".into(),
                commune: "Bát Tràng".into(),
                producer: "HTX Gốm Bát Tràng".into(),
                list_price: Dong::parse(LIST).unwrap(),
                origin_document: "GCN-1".into(),
                quality_label: "TCCS 1".into(),
                documents: Vec::new(),
            },
            allotted,
            buyer_limit,
            left: allotted,
        })
        .collect()
}

/// A live book with product 0 pinned.
fn live(spec: &[(u32, u32)]) -> ShowBook {
    let mut book = ShowBook::new(ShowId::parse("show-w").unwrap(), lineup(spec));
    book.go_live(T0).unwrap();
    book.pin(&pid(0), T0).unwrap();
    book
}

fn claim(book: &mut ShowBook, id: &str, who: &str, q: u32, price: i64, now: Millis) -> ClaimRecord {
    let req = ClaimRequest {
        claim_id: ClaimId::parse(id).unwrap(),
        buyer: buyer(who),
        product_id: pid(0),
        quantity: qty(q),
        seen_price: Dong::parse(price).unwrap(),
    };
    match book.claim(&req, now) {
        ClaimDecision::Accepted(a) => a.record,
        other => panic!("claim {id} not accepted: {other:?}"),
    }
}

fn cancel(book: &mut ShowBook, id: &str, who: &str, now: Millis) -> Vec<WaitlistOutcome> {
    match book.cancel(&buyer(who), &ClaimId::parse(id).unwrap(), now) {
        CancelDecision::Cancelled { waitlist, .. } => waitlist,
        other => panic!("cancel {id} not done: {other:?}"),
    }
}

fn join(book: &mut ShowBook, who: &str, q: u32) -> JoinDecision {
    book.waitlist_join(&buyer(who), &pid(0), qty(q), T0)
}

/// Starts a ten-minute flash of product 0 at `price`, at once (no countdown), at `T0`.
fn flash(book: &mut ShowBook, price: i64) {
    book.start_flash(
        &FlashSpec {
            product_id: pid(0),
            price: Dong::parse(price).unwrap(),
            duration_s: 600,
            quantity_cap: None,
            countdown_s: 0,
        },
        T0,
    )
    .unwrap();
}

fn joined_at(d: &JoinDecision) -> u32 {
    match d {
        JoinDecision::Joined { position, .. } => *position,
        other => panic!("not joined: {other:?}"),
    }
}

#[test]
fn joins_only_a_sold_out_product_of_a_live_show() {
    let mut book = ShowBook::new(ShowId::parse("s").unwrap(), lineup(&[(2, 2)]));
    assert_eq!(
        join(&mut book, "b1", 1),
        JoinDecision::Refused(WaitlistRefusal::ShowNotLive)
    );
    book.go_live(T0).unwrap();
    book.pin(&pid(0), T0).unwrap();
    assert_eq!(
        join(&mut book, "b1", 1),
        JoinDecision::Refused(WaitlistRefusal::NotSoldOut),
        "units left: claim them instead"
    );
    assert_eq!(
        book.waitlist_join(&buyer("b1"), &pid(9), qty(1), T0),
        JoinDecision::Refused(WaitlistRefusal::UnknownProduct)
    );
    claim(&mut book, "c1", "a", 2, LIST, T0);
    assert_eq!(joined_at(&join(&mut book, "b1", 1)), 1);
    // The buyer holding the whole limit cannot wait for more.
    assert_eq!(
        join(&mut book, "a", 1),
        JoinDecision::Refused(WaitlistRefusal::LimitExceeded)
    );
    book.close(T0 + 1).unwrap();
    assert!(book.waitlist(&pid(0)).is_empty(), "close clears waitlists");
    assert_eq!(
        join(&mut book, "b2", 1),
        JoinDecision::Refused(WaitlistRefusal::ShowNotLive)
    );
    book.check_invariants().unwrap();
}

#[test]
fn positions_are_fifo_and_rejoining_changes_nothing() {
    let mut book = live(&[(1, 3)]);
    claim(&mut book, "c1", "a", 1, LIST, T0);
    assert_eq!(joined_at(&join(&mut book, "b1", 2)), 1);
    assert_eq!(joined_at(&join(&mut book, "b2", 1)), 2);
    assert_eq!(joined_at(&join(&mut book, "b3", 1)), 3);
    // Again, even with another quantity: the same entry, the same place.
    match join(&mut book, "b2", 3) {
        JoinDecision::AlreadyWaiting { entry, position } => {
            assert_eq!(position, 2);
            assert_eq!(entry.quantity, 1);
        }
        other => panic!("rejoin: {other:?}"),
    }
    assert_eq!(book.waitlist(&pid(0)).len(), 3);
    // Leaving moves those behind up.
    let left = book.waitlist_leave(&buyer("b1"), Some(&pid(0))).unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        book.waitlist_leave(&buyer("b1"), Some(&pid(0)))
            .unwrap()
            .is_empty(),
        "leaving twice is fine"
    );
    assert_eq!(
        book.waitlist_leave(&buyer("b1"), Some(&pid(7))),
        Err(WaitlistRefusal::UnknownProduct)
    );
    let mine = book.waitlist_of(&buyer("b3"));
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].1, 2);
    book.check_invariants().unwrap();
}

#[test]
fn the_list_is_bounded() {
    let mut book = live(&[(1, 1)]);
    claim(&mut book, "c1", "a", 1, LIST, T0);
    for n in 0..MAX_WAITLIST_PER_PRODUCT {
        joined_at(&join(&mut book, &format!("b{n}"), 1));
    }
    assert_eq!(
        join(&mut book, "late", 1),
        JoinDecision::Refused(WaitlistRefusal::WaitlistFull)
    );
    // Someone already waiting still gets its place back.
    assert!(matches!(
        join(&mut book, "b0", 1),
        JoinDecision::AlreadyWaiting { position: 1, .. }
    ));
    book.check_invariants().unwrap();
}

#[test]
fn a_cancel_promotes_the_head_at_the_current_price() {
    let mut book = live(&[(2, 2)]);
    claim(&mut book, "c1", "a", 2, LIST, T0);
    joined_at(&join(&mut book, "b1", 2));
    joined_at(&join(&mut book, "b2", 1));
    // The price drops meanwhile: the promotion takes the lower, current price.
    flash(&mut book, 90_000);
    let out = cancel(&mut book, "c1", "a", T0 + 10);
    assert_eq!(out.len(), 1, "{out:?}");
    let WaitlistOutcome::Promoted { entry, record, .. } = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(entry.buyer, buyer("b1"));
    assert_eq!(record.buyer, buyer("b1"));
    assert_eq!(record.quantity, 2);
    assert_eq!(record.unit_price.get(), 90_000);
    assert_eq!(record.flash_id, Some(1));
    assert_eq!(
        record.claim_id.as_str(),
        format!("{PROMOTED_CLAIM_PREFIX}{}", entry.number)
    );
    assert_eq!(book.claims_of(&buyer("b1")), vec![record.clone()]);
    assert_eq!(book.stock()[0].1, 0);
    assert_eq!(book.waitlist(&pid(0)).len(), 1, "b2 still waits");
    let notices = book.waitlist_notices_since(0);
    assert_eq!(notices.len(), 1);
    // The cancel was log entry 1 (the claim entry 0); the promotion is entry 2.
    assert_eq!(notices[0].pos, 1);
    assert_eq!(book.log_len(), 3);
    assert!(book.waitlist_notices_since(2).is_empty());
    // Cancelling again changes nothing and promotes nobody.
    assert!(matches!(
        book.cancel(&buyer("a"), &ClaimId::parse("c1").unwrap(), T0 + 11),
        CancelDecision::AlreadyCancelled { .. }
    ));
    assert_eq!(book.waitlist(&pid(0)).len(), 1);
    book.check_invariants().unwrap();
}

#[test]
fn a_buyer_is_skipped_when_the_price_rose() {
    let mut book = live(&[(2, 2)]);
    flash(&mut book, 90_000);
    claim(&mut book, "c1", "a", 2, 90_000, T0);
    match join(&mut book, "b1", 1) {
        JoinDecision::Joined { entry, .. } => assert_eq!(entry.price.get(), 90_000),
        other => panic!("{other:?}"),
    }
    joined_at(&join(&mut book, "b2", 1));
    book.end_flash(EndReason::EndedBySeller, None, T0 + 5)
        .unwrap();
    let out = cancel(&mut book, "c1", "a", T0 + 10);
    assert_eq!(out.len(), 2, "{out:?}");
    for o in &out {
        assert!(matches!(
            o,
            WaitlistOutcome::Skipped {
                reason: SkipReason::PriceRose,
                ..
            }
        ));
    }
    assert!(book.waitlist(&pid(0)).is_empty());
    assert_eq!(book.stock()[0].1, 2, "the units stay for anyone to claim");
    book.check_invariants().unwrap();
}

#[test]
fn first_fit_and_limit_skips() {
    // Stock 4, limit 3.
    let mut book = live(&[(4, 3)]);
    claim(&mut book, "b1", "b", 1, LIST, T0);
    claim(&mut book, "a1", "a", 1, LIST, T0);
    claim(&mut book, "a2", "a", 2, LIST, T0);
    joined_at(&join(&mut book, "b", 2));
    // One unit back: b wants two, so it keeps its place and the unit stays.
    let out = cancel(&mut book, "a1", "a", T0 + 1);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(book.waitlist(&pid(0)).len(), 1);
    assert_eq!(book.stock()[0].1, 1);
    // b takes it directly: now holding 2, its entry for 2 would pass the limit of 3.
    claim(&mut book, "b2", "b", 1, LIST, T0 + 2);
    let out = cancel(&mut book, "a2", "a", T0 + 3);
    assert!(
        matches!(
            out.as_slice(),
            [WaitlistOutcome::Skipped {
                reason: SkipReason::LimitExceeded,
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(book.stock()[0].1, 2);
    book.check_invariants().unwrap();

    // First fit: the head wants more than came back, the next entry fits and gets it.
    let mut book = live(&[(3, 3)]);
    claim(&mut book, "a1", "a", 1, LIST, T0);
    claim(&mut book, "a2", "a", 2, LIST, T0);
    joined_at(&join(&mut book, "big", 3));
    joined_at(&join(&mut book, "small", 1));
    let out = cancel(&mut book, "a1", "a", T0 + 1);
    assert!(
        matches!(&out[..], [WaitlistOutcome::Promoted { entry, .. }] if entry.buyer == buyer("small")),
        "{out:?}"
    );
    assert_eq!(book.waitlist(&pid(0))[0].buyer, buyer("big"));
    assert_eq!(book.stock()[0].1, 0);
    book.check_invariants().unwrap();
}

#[test]
fn leaving_every_waitlist_and_replay() {
    let mut book = ShowBook::new(ShowId::parse("show-w").unwrap(), lineup(&[(1, 2), (1, 2)]));
    let mut events = book.go_live(T0).unwrap();
    events.extend(book.pin(&pid(0), T0).unwrap());
    let c1 = claim(&mut book, "c1", "a", 1, LIST, T0);
    events.extend(book.pin(&pid(1), T0).unwrap());
    let req = ClaimRequest {
        claim_id: ClaimId::parse("c2").unwrap(),
        buyer: buyer("a"),
        product_id: pid(1),
        quantity: qty(1),
        seen_price: Dong::parse(LIST).unwrap(),
    };
    let ClaimDecision::Accepted(c2) = book.claim(&req, T0) else {
        panic!("c2 refused");
    };
    let log = vec![(c1, None), (c2.record, None)];
    let mut journal = Vec::new();
    for p in [0, 1] {
        for who in ["b1", "b2"] {
            match book.waitlist_join(&buyer(who), &pid(p), qty(1), T0) {
                JoinDecision::Joined { entry, .. } => journal.push((entry, true)),
                other => panic!("{other:?}"),
            }
        }
    }
    let gone = book.waitlist_leave(&buyer("b1"), None).unwrap();
    assert_eq!(gone.len(), 2, "off both lists");
    journal.extend(gone.into_iter().map(|e| (e, false)));
    assert!(book.waitlist_of(&buyer("b1")).is_empty());
    assert_eq!(book.waitlist_of(&buyer("b2")).len(), 2);

    let mut rebuilt = ShowBook::new(ShowId::parse("show-w").unwrap(), lineup(&[(1, 2), (1, 2)]));
    rebuild(&mut rebuilt, &events, &log, &journal);
    assert_eq!(rebuilt.waitlist(&pid(0)), book.waitlist(&pid(0)));
    assert_eq!(rebuilt.waitlist(&pid(1)), book.waitlist(&pid(1)));
    // Numbers go on after the replayed ones.
    rebuilt.waitlist_leave(&buyer("b2"), None).unwrap();
    match rebuilt.waitlist_join(&buyer("b9"), &pid(0), qty(1), T0) {
        JoinDecision::Joined { entry, .. } => assert_eq!(entry.number, 5),
        other => panic!("{other:?}"),
    }
}

/// The claim log as the journal keeps it: each record and, for a cancellation, when.
type Log = Vec<(ClaimRecord, Option<Millis>)>;

/// Replays events, the claim log and the waitlist journal into `into`.
fn rebuild(
    into: &mut ShowBook,
    events: &[SequencedEvent],
    log: &Log,
    waitlist: &[(WaitlistEntry, bool)],
) {
    for ev in events {
        into.replay_event(ev);
    }
    for (rec, cancelled) in log {
        match cancelled {
            None => into.replay_claim(rec),
            Some(at) => into.replay_cancel(&rec.claim_id, *at),
        }
    }
    for (entry, joined) in waitlist {
        if *joined {
            into.replay_waitlist_join(entry);
        } else {
            into.replay_waitlist_leave(entry);
        }
    }
}

// ----- property ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Claim { buyer: u8, qty: u32 },
    Cancel { nth: usize },
    Join { buyer: u8, qty: u32 },
    Leave { buyer: u8, all: bool },
    Flash { pct: i64, cap: Option<u32> },
    EndFlash,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6u8, 1..=3u32).prop_map(|(buyer, qty)| Op::Claim { buyer, qty }),
        5 => (0..64usize).prop_map(|nth| Op::Cancel { nth }),
        6 => (0..6u8, 1..=3u32).prop_map(|(buyer, qty)| Op::Join { buyer, qty }),
        2 => (0..6u8, any::<bool>()).prop_map(|(buyer, all)| Op::Leave { buyer, all }),
        1 => (50..=100i64, prop::option::of(1..4u32)).prop_map(|(pct, cap)| Op::Flash { pct, cap }),
        1 => Just(Op::EndFlash),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn waitlists_keep_every_rule(stock in 1..6u32, limit in 1..5u32, ops in prop::collection::vec(op(), 1..120)) {
        let mut book = ShowBook::new(ShowId::parse("show-p").unwrap(), lineup(&[(stock, limit)]));
        let mut events = Vec::new();
        events.extend(book.go_live(T0).unwrap());
        events.extend(book.pin(&pid(0), T0).unwrap());
        let mut journal: Vec<(WaitlistEntry, bool)> = Vec::new();
        let mut accepted: Vec<ClaimRecord> = Vec::new();
        let mut log: Log = Vec::new();
        let mut next_id = 0u32;
        let mut now = T0;
        for op in ops {
            now += 700;
            match op {
                Op::Claim { buyer: b, qty: q } => {
                    let Some(price) = book.current_price(now) else { continue };
                    next_id += 1;
                    let req = ClaimRequest {
                        claim_id: ClaimId::parse(format!("c{next_id}")).unwrap(),
                        buyer: buyer(&format!("b{b}")),
                        product_id: pid(0),
                        quantity: qty(q),
                        seen_price: price,
                    };
                    if let ClaimDecision::Accepted(a) = book.claim(&req, now) {
                        log.push((a.record.clone(), None));
                        accepted.push(a.record);
                    }
                }
                Op::Cancel { nth } => {
                    if accepted.is_empty() { continue }
                    let rec = accepted[nth % accepted.len()].clone();
                    let waiting_before = book.waitlist(&pid(0));
                    let d = book.cancel(&rec.buyer, &rec.claim_id, now);
                    if let CancelDecision::Cancelled { waitlist, stock_left, record } = d {
                        log.push((record, Some(now)));
                        let price = book.price_for_test(now);
                        for o in &waitlist {
                            let e = o.entry();
                            prop_assert!(waiting_before.contains(e), "outcome for an entry not waiting");
                            match o {
                                WaitlistOutcome::Promoted { entry, record, .. } => {
                                    // Property 3.
                                    prop_assert_eq!(&record.buyer, &entry.buyer);
                                    prop_assert_eq!(record.quantity, entry.quantity);
                                    prop_assert!(record.unit_price <= entry.price);
                                    prop_assert_eq!(Some(record.claim_id.clone()), entry.claim_id());
                                    prop_assert_eq!(record.at, now);
                                    log.push((record.clone(), None));
                                    accepted.push(record.clone());
                                }
                                WaitlistOutcome::Skipped { entry, reason } => match reason {
                                    // Prices only rise within a step (a used-up flash cap ends the lower price).
                                    SkipReason::PriceRose => prop_assert!(Some(entry.price) < price),
                                    SkipReason::LimitExceeded => prop_assert!(
                                        book.held(&entry.buyer, &pid(0)) + entry.quantity > limit
                                    ),
                                },
                            }
                            journal.push((e.clone(), false));
                        }
                        prop_assert_eq!(stock_left, book.stock()[0].1);
                        // Property 4: nobody left waiting could take what is available now.
                        let available = book.available_for_test(now);
                        if available > 0 {
                            for w in book.waitlist(&pid(0)) {
                                prop_assert!(w.quantity > available, "entry {} fits {available} but waits", w.number);
                            }
                        }
                    }
                }
                Op::Join { buyer: b, qty: q } => {
                    let who = buyer(&format!("b{b}"));
                    let before = book.waitlist(&pid(0));
                    let left = book.stock()[0].1;
                    match book.waitlist_join(&who, &pid(0), qty(q), now) {
                        JoinDecision::Joined { entry, position } => {
                            // Property 2.
                            prop_assert_eq!(book.status(), ShowStatus::Live);
                            prop_assert_eq!(left, 0);
                            prop_assert_eq!(position as usize, before.len() + 1);
                            journal.push((entry, true));
                        }
                        JoinDecision::AlreadyWaiting { entry, position } => {
                            prop_assert_eq!(&before[position as usize - 1], &entry);
                            prop_assert_eq!(book.waitlist(&pid(0)), before);
                        }
                        JoinDecision::Refused(_) => prop_assert_eq!(book.waitlist(&pid(0)), before),
                    }
                }
                Op::Leave { buyer: b, all } => {
                    let who = buyer(&format!("b{b}"));
                    let p = pid(0);
                    let gone = book.waitlist_leave(&who, (!all).then_some(&p)).unwrap();
                    prop_assert!(gone.len() <= 1);
                    prop_assert!(book.waitlist_of(&who).is_empty());
                    journal.extend(gone.into_iter().map(|e| (e, false)));
                }
                Op::Flash { pct, cap } => {
                    let spec = FlashSpec {
                        product_id: pid(0),
                        price: Dong::parse(LIST * pct / 100).unwrap(),
                        duration_s: 3,
                        quantity_cap: cap,
                        countdown_s: 0,
                    };
                    if let Ok(evs) = book.start_flash(&spec, now) { events.extend(evs) }
                }
                Op::EndFlash => {
                    if let Ok(evs) = book.end_flash(EndReason::EndedBySeller, None, now) { events.extend(evs) }
                }
                Op::Close => {
                    if let Ok(evs) = book.close(now) { events.extend(evs) }
                }
            }
            // Property 1.
            book.check_invariants().map_err(TestCaseError::fail)?;
        }
        // Property 5.
        let mut rebuilt = ShowBook::new(ShowId::parse("show-p").unwrap(), lineup(&[(stock, limit)]));
        rebuild(&mut rebuilt, &events, &log, &journal);
        prop_assert_eq!(rebuilt.stock(), book.stock());
        prop_assert_eq!(rebuilt.waitlist(&pid(0)), book.waitlist(&pid(0)));
        rebuilt.check_invariants().map_err(TestCaseError::fail)?;
    }
}

/// Test-only views of the price and units a promotion would see now.
trait ForTest {
    fn price_for_test(&self, now: Millis) -> Option<Dong>;
    fn available_for_test(&self, now: Millis) -> u32;
}

impl ForTest for ShowBook {
    fn price_for_test(&self, now: Millis) -> Option<Dong> {
        let list = Dong::parse(LIST).unwrap();
        Some(match self.flash() {
            Some(f) if f.product_id == pid(0) && f.applies(now) => f.price,
            _ => list,
        })
    }

    fn available_for_test(&self, now: Millis) -> u32 {
        let left = self.stock()[0].1;
        match self.flash() {
            Some(f) if f.product_id == pid(0) && f.applies(now) => {
                f.cap_left().map_or(left, |c| c.min(left))
            }
            _ => left,
        }
    }
}
