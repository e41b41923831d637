//! Property tests for the claim rules of [`ShowBook`].
//!
//! Each test drives a book with a random sequence of seller commands (go live, pin a lineup or
//! unknown product, unpin, start a flash at a random price, cap, countdown and duration, end the
//! flash, close), viewer claims (claim ids mostly from a small pool shared by a few buyers, so
//! duplicates and cross-buyer reuse happen; seen price the list price, the flash price, the price
//! that applies now, or a wrong one) and cancels, with `now` advancing by 0–2 s per step (often
//! by whole half seconds, to land exactly on flash boundaries) so flashes start and expire.
//! Next to the book runs a small independent model (status, pinned product, flash, stock left,
//! accepted claims) that predicts every decision exactly. After every step these properties are
//! checked:
//!
//! 1. `check_invariants` holds (allotted = left + held; no buyer above its limit).
//! 2. Units held (accepted, not cancelled) per product never exceed the allotment and equal
//!    `allotted - left`.
//! 3. A refusal (of a claim, a cancel or a command) leaves the book unchanged.
//! 4. Idempotency: re-sending an accepted claim id by the same buyer answers `Duplicate` with the
//!    identical record and changes nothing; another buyer reusing the id gets `ClaimIdTaken`.
//! 5. Nothing is accepted unless the show is live and the product pinned; a claim carries the
//!    flash price exactly when a flash on that product applies at `now` (started, not expired,
//!    cap not reached), else the list price; a flash price is never above the list price.
//! 6. A flash's quantity cap is never exceeded by the units held at its price.
//! 7. Event sequence numbers run 1, 2, 3, … without gaps, and replaying the events and the claim
//!    log into a fresh book (events first, log first, or interleaved as they happened; and twice
//!    over) rebuilds the same stock, seq, status, pinned product, flash, log length and claims.
//! 8. After close, every new claim is refused with `ShowNotLive` and every cancel of a live
//!    claim with `CancelDecision::ShowNotLive`. (An id accepted before the close still answers
//!    `Duplicate` / `ClaimIdTaken`: idempotency is checked before the show status, by design.)
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimAccepted, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest,
    CommandError, Dong, EndReason, Flash, FlashSpec, LineupEntry, Millis, Product, ProductGroup,
    ProductId, Quantity, Refusal, RefusalReason, SellerId, SequencedEvent, ShowBook, ShowEvent,
    ShowId, ShowStatus, Stars,
};
use proptest::prelude::*;

/// 2025-06-15, an arbitrary market night.
const T0: Millis = 1_750_000_000_000;
const MAX_QTY: u32 = 5;
const CLAIM_IDS: u8 = 10;
const BUYERS: u8 = 3;

fn show_id() -> ShowId {
    ShowId::parse("show-1").unwrap()
}
fn product_id(i: usize) -> ProductId {
    ProductId::parse(format!("p-{i}")).unwrap()
}
fn unknown_product() -> ProductId {
    ProductId::parse("p-unknown").unwrap()
}
fn buyer(i: u8) -> BuyerId {
    BuyerId::parse(format!("b-{i}")).unwrap()
}
fn claim_id(i: u8) -> ClaimId {
    ClaimId::parse(format!("c-{i}")).unwrap()
}
fn all_buyers() -> impl Iterator<Item = BuyerId> {
    (0..BUYERS).map(buyer)
}

/// (allotted, buyer limit, list price in thousands of đồng) per lineup product.
type LineupSpec = Vec<(u32, u32, i64)>;

fn make_lineup(spec: &LineupSpec) -> Vec<LineupEntry> {
    spec.iter()
        .enumerate()
        .map(|(i, &(allotted, buyer_limit, k))| LineupEntry {
            product: Product {
                id: product_id(i),
                seller_id: SellerId::parse("htx-ben-tre").unwrap(),
                name: format!("Kẹo dừa {i}"),
                group: ProductGroup::Food,
                stars: Stars::parse(4).unwrap(),
                district: "Mỏ Cày Nam".into(),
                commune: "Đa Phước Hội".into(),
                producer: "HTX Kẹo dừa".into(),
                list_price: Dong::parse(k * 1000).unwrap(),
                origin_document: "GCN-OCOP-2024-001".into(),
                quality_label: "TCCS 01:2024".into(),
                documents: Vec::new(),
            },
            allotted,
            buyer_limit,
            left: allotted,
        })
        .collect()
}

// ----- operations ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ProductPick {
    /// What is pinned now (lineup product 0 if nothing is).
    Pinned,
    /// A lineup product (index taken modulo the lineup length).
    Lineup(usize),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum PricePick {
    List,
    /// The current flash's price (the list price if there is no flash).
    Flash,
    /// The price that applies right now, as a freshly rendered screen shows it.
    Current,
    Wrong(i64),
}

#[derive(Debug, Clone)]
enum Action {
    GoLive,
    Pin(ProductPick),
    Unpin,
    StartFlash {
        product: ProductPick,
        /// Percent of the list price; above 100 is refused.
        price_pct: i64,
        cap: Option<u32>,
        countdown_s: i64,
        duration_s: i64,
    },
    EndFlash {
        only: Option<u64>,
    },
    Claim {
        /// A claim id from the small pool, or (`None`) a fresh one never used before.
        id: Option<u8>,
        buyer: u8,
        product: ProductPick,
        qty: u32,
        price: PricePick,
    },
    /// Re-send the n-th accepted claim (modulo their number) by its buyer or another one.
    Resend {
        nth: usize,
        other_buyer: Option<u8>,
    },
    Cancel {
        id: u8,
        buyer: u8,
    },
    /// Cancel the n-th accepted claim (modulo their number) by its own buyer.
    CancelOwn {
        nth: usize,
    },
    Close,
}

#[derive(Debug, Clone)]
struct Step {
    dt: i64,
    action: Action,
}

/// Relative weights of the operations.
#[derive(Debug, Clone, Copy)]
struct Mix {
    go_live: u32,
    pin: u32,
    unpin: u32,
    start_flash: u32,
    end_flash: u32,
    claim: u32,
    resend: u32,
    cancel: u32,
    cancel_own: u32,
    close: u32,
    /// Weight of claims seeing the flash price (list price: 3, a wrong price: 1).
    flash_price: u32,
    /// Weight of claims seeing the price that applies now.
    current_price: u32,
    /// Weight of short time steps (under 0.3 s), against 0–2 s (1) and whole half seconds (2).
    short_steps: u32,
}

const MIXED: Mix = Mix {
    go_live: 3,
    pin: 4,
    unpin: 1,
    start_flash: 4,
    end_flash: 1,
    claim: 14,
    resend: 2,
    cancel: 2,
    cancel_own: 2,
    close: 1,
    flash_price: 4,
    current_price: 3,
    short_steps: 0,
};

fn product_pick() -> impl Strategy<Value = ProductPick> {
    prop_oneof![
        5 => Just(ProductPick::Pinned),
        3 => (0usize..3).prop_map(ProductPick::Lineup),
        1 => Just(ProductPick::Unknown),
    ]
}

fn price_pick(mix: Mix) -> impl Strategy<Value = PricePick> {
    prop_oneof![
        3 => Just(PricePick::List),
        mix.flash_price => Just(PricePick::Flash),
        mix.current_price => Just(PricePick::Current),
        1 => (1i64..=250_000).prop_map(PricePick::Wrong),
    ]
}

fn action(mix: Mix) -> BoxedStrategy<Action> {
    prop_oneof![
        mix.go_live => Just(Action::GoLive),
        mix.pin => product_pick().prop_map(Action::Pin),
        mix.unpin => Just(Action::Unpin),
        mix.start_flash => (
            product_pick(),
            prop_oneof![6 => 1i64..=100, 1 => 101i64..=130],
            prop_oneof![1 => Just(None), 3 => (0u32..=8).prop_map(Some)],
            0i64..=3,
            1i64..=5,
        )
            .prop_map(|(product, price_pct, cap, countdown_s, duration_s)| {
                Action::StartFlash { product, price_pct, cap, countdown_s, duration_s }
            }),
        mix.end_flash => prop::option::of(0u64..=6).prop_map(|only| Action::EndFlash { only }),
        mix.claim => (
            prop::option::weighted(0.6, 0..CLAIM_IDS),
            0..BUYERS,
            product_pick(),
            1..=MAX_QTY,
            price_pick(mix),
        )
            .prop_map(|(id, buyer, product, qty, price)| {
                Action::Claim { id, buyer, product, qty, price }
            }),
        mix.resend => (any::<usize>(), prop::option::of(0..BUYERS))
            .prop_map(|(nth, other_buyer)| Action::Resend { nth, other_buyer }),
        mix.cancel => (0..CLAIM_IDS, 0..BUYERS)
            .prop_map(|(id, buyer)| Action::Cancel { id, buyer }),
        mix.cancel_own => any::<usize>().prop_map(|nth| Action::CancelOwn { nth }),
        mix.close => Just(Action::Close),
    ]
    .boxed()
}

fn steps(mix: Mix, len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            // Steps of whole half seconds land exactly on flash starts and ends (whole seconds).
            prop_oneof![
                1 => 0i64..2000,
                2 => (0i64..4).prop_map(|k| k * 500),
                mix.short_steps => 0i64..300,
            ],
            action(mix),
        )
            .prop_map(|(dt, action)| Step { dt, action }),
        len,
    )
}

fn lineup_spec() -> impl Strategy<Value = LineupSpec> {
    prop::collection::vec((0u32..=12, 1u32..=6, 1i64..=200), 1..=3)
}

// ----- the model and the harness ---------------------------------------------------------------

/// What was journaled, in the order it happened.
#[derive(Debug, Clone)]
enum Journal {
    Event(SequencedEvent),
    Claim(ClaimRecord),
    Cancel(ClaimId, Millis),
}

#[derive(Debug, Clone, Copy)]
enum ReplayOrder {
    EventsThenLog,
    LogThenEvents,
    Interleaved,
    /// Interleaved, with each claim entry carrying the claim's latest record.
    InterleavedLatestRecords,
}

/// Everything observable about a book that a refusal must not change.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    stock: Vec<(ProductId, u32)>,
    seq: u64,
    log_len: u64,
    status: ShowStatus,
    pinned: Option<ProductId>,
    flash: Option<Flash>,
    accepted: u64,
    stock_version: u64,
    claims_of: Vec<Vec<ClaimRecord>>,
}

fn snapshot(book: &ShowBook) -> Snapshot {
    Snapshot {
        stock: book.stock(),
        seq: book.seq(),
        log_len: book.log_len(),
        status: book.status(),
        pinned: book.pinned().map(|e| e.product.id.clone()),
        flash: book.flash().cloned(),
        accepted: book.accepted_claims(),
        stock_version: book.stock_version(),
        claims_of: all_buyers().map(|b| book.claims_of(&b)).collect(),
    }
}

fn refusal(reason: RefusalReason) -> Refusal {
    Refusal {
        reason,
        available: None,
        limit_left: None,
        current_price: None,
    }
}

fn flash_ended(f: &Flash, reason: EndReason) -> ShowEvent {
    ShowEvent::FlashEnded {
        flash_id: f.id,
        product_id: f.product_id.clone(),
        reason,
        list_price: f.list_price,
    }
}

struct Harness {
    lineup: Vec<LineupEntry>,
    book: ShowBook,
    now: Millis,
    // The model.
    status: ShowStatus,
    pinned: Option<usize>,
    /// The running flash as started (its `sold` is always 0 here; see `flash_sold`).
    flash: Option<Flash>,
    next_flash_id: u64,
    /// Every flash ever started.
    flashes: Vec<Flash>,
    left: Vec<u32>,
    claims: HashMap<ClaimId, ClaimRecord>,
    /// Accepted claim ids in acceptance order.
    accepted: Vec<ClaimId>,
    events: Vec<SequencedEvent>,
    journal: Vec<Journal>,
    /// Replay after every step (cheap enough for short runs).
    replay_each_step: bool,
    fresh_ids: u32,
}

impl Harness {
    fn new(spec: &LineupSpec) -> Self {
        let lineup = make_lineup(spec);
        Self {
            book: ShowBook::new(show_id(), lineup.clone()),
            left: lineup.iter().map(|e| e.allotted).collect(),
            lineup,
            now: T0,
            status: ShowStatus::Scheduled,
            pinned: None,
            flash: None,
            next_flash_id: 1,
            flashes: Vec::new(),
            claims: HashMap::new(),
            accepted: Vec::new(),
            events: Vec::new(),
            journal: Vec::new(),
            replay_each_step: true,
            fresh_ids: 0,
        }
    }

    fn index(&self, id: &ProductId) -> Option<usize> {
        self.lineup.iter().position(|e| &e.product.id == id)
    }

    fn resolve(&self, pick: ProductPick) -> ProductId {
        match pick {
            ProductPick::Pinned => product_id(self.pinned.unwrap_or(0)),
            ProductPick::Lineup(i) => product_id(i % self.lineup.len()),
            ProductPick::Unknown => unknown_product(),
        }
    }

    /// Units held at a flash's price: non-cancelled claims carrying its id.
    fn flash_sold(&self, flash_id: u64) -> u32 {
        self.claims
            .values()
            .filter(|c| c.flash_id == Some(flash_id) && c.cancelled_at.is_none())
            .map(|c| c.quantity)
            .sum()
    }

    fn cap_left(&self, f: &Flash) -> Option<u32> {
        f.quantity_cap
            .map(|cap| cap.saturating_sub(self.flash_sold(f.id)))
    }

    /// The running flash as the book should report it.
    fn model_flash(&self) -> Option<Flash> {
        self.flash.clone().map(|mut f| {
            f.sold = self.flash_sold(f.id);
            f
        })
    }

    /// The flash whose price applies to lineup product `idx` at `now`, if any.
    fn applying_flash(&self, idx: usize, now: Millis) -> Option<&Flash> {
        self.flash.as_ref().filter(|f| {
            f.product_id == self.lineup[idx].product.id
                && f.starts_at <= now
                && now < f.ends_at
                && self.cap_left(f) != Some(0)
        })
    }

    fn held(&self, buyer: &BuyerId, idx: usize) -> u32 {
        let pid = &self.lineup[idx].product.id;
        self.claims
            .values()
            .filter(|c| &c.buyer == buyer && &c.product_id == pid && c.cancelled_at.is_none())
            .map(|c| c.quantity)
            .sum()
    }

    fn model_claims_of(&self, buyer: &BuyerId) -> Vec<ClaimRecord> {
        // Acceptance order is also `at` order, since time never goes back.
        self.accepted
            .iter()
            .map(|id| &self.claims[id])
            .filter(|c| &c.buyer == buyer)
            .cloned()
            .collect()
    }

    /// The lapsed-flash end a command must emit first, if the running flash has lapsed.
    fn lapsed_end(&self) -> Option<ShowEvent> {
        let f = self.flash.as_ref()?;
        if self.now >= f.ends_at {
            Some(flash_ended(f, EndReason::Expired))
        } else if self.cap_left(f) == Some(0) {
            Some(flash_ended(f, EndReason::CapReached))
        } else {
            None
        }
    }

    fn require_live(&self) -> Result<(), CommandError> {
        match self.status {
            ShowStatus::Live => Ok(()),
            other => Err(CommandError::NotLive(other.as_str())),
        }
    }

    // ----- steps ---------------------------------------------------------------------------------

    fn run(&mut self, steps: &[Step]) {
        for step in steps {
            self.step(step);
        }
    }

    fn step(&mut self, step: &Step) {
        self.now += step.dt;
        match step.action.clone() {
            Action::GoLive => {
                let expected = match self.status {
                    ShowStatus::Scheduled => Ok(vec![ShowEvent::ShowLive]),
                    other => Err(CommandError::BadTransition {
                        from: other.as_str(),
                        to: "live",
                    }),
                };
                self.command(expected, |b, now| b.go_live(now));
            }
            Action::Close => {
                let expected = if self.status == ShowStatus::Closed {
                    Err(CommandError::BadTransition {
                        from: "closed",
                        to: "closed",
                    })
                } else {
                    let mut evs = Vec::new();
                    if let Some(f) = &self.flash {
                        evs.push(flash_ended(f, EndReason::ShowClosed));
                    }
                    evs.push(ShowEvent::ShowClosed {
                        final_stock: self.model_stock(),
                    });
                    Ok(evs)
                };
                self.command(expected, |b, now| b.close(now));
            }
            Action::Pin(pick) => {
                let pid = self.resolve(pick);
                let expected = self.require_live().and_then(|()| {
                    let idx = self
                        .index(&pid)
                        .ok_or_else(|| CommandError::UnknownProduct(pid.clone()))?;
                    let mut evs = Vec::new();
                    let mut flash = self.flash.clone();
                    if let Some(ev) = self.lapsed_end() {
                        evs.push(ev);
                        flash = None;
                    }
                    if self.pinned != Some(idx) {
                        if let Some(f) = &flash {
                            evs.push(flash_ended(f, EndReason::Unpinned));
                        }
                        evs.push(ShowEvent::Pinned {
                            product_id: pid.clone(),
                            price: self.lineup[idx].product.list_price,
                        });
                    }
                    Ok(evs)
                });
                self.command(expected, |b, now| b.pin(&pid, now));
            }
            Action::Unpin => {
                let expected = self.require_live().and_then(|()| {
                    let idx = self.pinned.ok_or(CommandError::NothingPinned)?;
                    let mut evs = Vec::new();
                    let mut flash = self.flash.clone();
                    if let Some(ev) = self.lapsed_end() {
                        evs.push(ev);
                        flash = None;
                    }
                    if let Some(f) = &flash {
                        evs.push(flash_ended(f, EndReason::Unpinned));
                    }
                    evs.push(ShowEvent::Unpinned {
                        product_id: product_id(idx),
                    });
                    Ok(evs)
                });
                self.command(expected, |b, now| b.unpin(now));
            }
            Action::StartFlash {
                product,
                price_pct,
                cap,
                countdown_s,
                duration_s,
            } => {
                let pid = self.resolve(product);
                let list = self
                    .index(&pid)
                    .map_or(100_000, |i| self.lineup[i].product.list_price.get());
                let price = Dong::parse((list * price_pct / 100).max(1)).unwrap();
                let spec = FlashSpec {
                    product_id: pid.clone(),
                    price,
                    duration_s,
                    quantity_cap: cap,
                    countdown_s,
                };
                let expected = self.expect_start_flash(&spec);
                self.command(expected, |b, now| b.start_flash(&spec, now));
            }
            Action::EndFlash { only } => {
                let expected = match (&self.flash, only) {
                    (None, None) => Err(CommandError::NoFlash),
                    (None, Some(_)) => Ok(vec![]),
                    (Some(f), Some(id)) if f.id != id => Ok(vec![]),
                    (Some(f), _) => Ok(vec![flash_ended(f, EndReason::EndedBySeller)]),
                };
                self.command(expected, |b, now| {
                    b.end_flash(EndReason::EndedBySeller, only, now)
                });
            }
            Action::Claim {
                id,
                buyer: b,
                product,
                qty,
                price,
            } => {
                let pid = self.resolve(product);
                let list = self
                    .index(&pid)
                    .map_or(1000, |i| self.lineup[i].product.list_price.get());
                let seen_price = match price {
                    PricePick::List => Dong::parse(list).unwrap(),
                    PricePick::Flash => self
                        .flash
                        .as_ref()
                        .map_or(Dong::parse(list).unwrap(), |f| f.price),
                    PricePick::Current => {
                        self.index(&pid).map_or(Dong::parse(list).unwrap(), |i| {
                            self.applying_flash(i, self.now)
                                .map_or(self.lineup[i].product.list_price, |f| f.price)
                        })
                    }
                    PricePick::Wrong(p) => Dong::parse(p).unwrap(),
                };
                let claim_id = id.map_or_else(
                    || {
                        self.fresh_ids += 1;
                        ClaimId::parse(format!("fresh-{}", self.fresh_ids)).unwrap()
                    },
                    claim_id,
                );
                let req = ClaimRequest {
                    claim_id,
                    buyer: buyer(b),
                    product_id: pid,
                    quantity: Quantity::parse(i64::from(qty), MAX_QTY).unwrap(),
                    seen_price,
                };
                self.claim(&req);
            }
            Action::Resend { nth, other_buyer } => {
                if self.accepted.is_empty() {
                    return self.check_all();
                }
                let original = self.claims[&self.accepted[nth % self.accepted.len()]].clone();
                let req = ClaimRequest {
                    claim_id: original.claim_id.clone(),
                    buyer: other_buyer.map_or(original.buyer.clone(), buyer),
                    // The body may differ: the id alone decides.
                    product_id: product_id(nth % 3),
                    quantity: Quantity::parse(1, MAX_QTY).unwrap(),
                    seen_price: Dong::parse(1).unwrap(),
                };
                self.claim(&req);
            }
            Action::Cancel { id, buyer: b } => self.cancel(&buyer(b), &claim_id(id)),
            Action::CancelOwn { nth } => {
                if let Some(id) = self.accepted.get(nth % self.accepted.len().max(1)).cloned() {
                    let owner = self.claims[&id].buyer.clone();
                    self.cancel(&owner, &id);
                }
            }
        }
        self.check_all();
    }

    fn model_stock(&self) -> Vec<(ProductId, u32)> {
        self.lineup
            .iter()
            .zip(&self.left)
            .map(|(e, &l)| (e.product.id.clone(), l))
            .collect()
    }

    fn expect_start_flash(&self, spec: &FlashSpec) -> Result<Vec<ShowEvent>, CommandError> {
        self.require_live()?;
        let idx = self
            .index(&spec.product_id)
            .ok_or_else(|| CommandError::UnknownProduct(spec.product_id.clone()))?;
        if self.pinned != Some(idx) {
            return Err(CommandError::NotPinned(spec.product_id.clone()));
        }
        let list = self.lineup[idx].product.list_price;
        if spec.price > list {
            return Err(CommandError::PriceAboveList {
                price: spec.price,
                list,
            });
        }
        if spec.quantity_cap == Some(0) {
            return Err(CommandError::OutOfRange(String::new()));
        }
        let mut evs = Vec::new();
        match self.lapsed_end() {
            Some(ev) => evs.push(ev),
            None if self.flash.is_some() => return Err(CommandError::FlashActive),
            None => {}
        }
        let starts_at = self.now + spec.countdown_s * 1000;
        evs.push(ShowEvent::FlashStarted {
            flash: Flash {
                id: self.next_flash_id,
                product_id: spec.product_id.clone(),
                price: spec.price,
                list_price: list,
                starts_at,
                ends_at: starts_at + spec.duration_s * 1000,
                quantity_cap: spec.quantity_cap,
                sold: 0,
            },
        });
        Ok(evs)
    }

    /// Runs a command and checks it against the model's expectation.
    fn command(
        &mut self,
        expected: Result<Vec<ShowEvent>, CommandError>,
        run: impl FnOnce(&mut ShowBook, Millis) -> Result<Vec<SequencedEvent>, CommandError>,
    ) {
        let before = snapshot(&self.book);
        let got = run(&mut self.book, self.now);
        match (expected, got) {
            (Err(want), Err(err)) => {
                let same = match (&want, &err) {
                    // The message is prose; the variant is the contract.
                    (CommandError::OutOfRange(_), CommandError::OutOfRange(_)) => true,
                    (a, b) => a == b,
                };
                assert!(same, "command error: expected {want:?}, got {err:?}");
                // Property 3, for commands.
                assert_eq!(
                    snapshot(&self.book),
                    before,
                    "a refused command changed the book"
                );
            }
            (Ok(want), Ok(evs)) => {
                let kinds: Vec<ShowEvent> = evs.iter().map(|e| e.event.clone()).collect();
                assert_eq!(kinds, want, "command events");
                for ev in evs {
                    assert_eq!(ev.at, self.now, "event time");
                    self.absorb(ev);
                }
            }
            (want, got) => panic!("command: expected {want:?}, got {got:?}"),
        }
    }

    /// Folds an emitted event into the model.
    fn absorb(&mut self, ev: SequencedEvent) {
        // Property 7: contiguous from 1.
        assert_eq!(
            ev.seq,
            self.events.len() as u64 + 1,
            "event seq not contiguous"
        );
        match &ev.event {
            ShowEvent::ShowLive => self.status = ShowStatus::Live,
            ShowEvent::ShowClosed { final_stock } => {
                assert_eq!(final_stock, &self.model_stock());
                self.status = ShowStatus::Closed;
                self.pinned = None;
                self.flash = None;
            }
            ShowEvent::Pinned { product_id, .. } => self.pinned = self.index(product_id),
            ShowEvent::Unpinned { .. } => self.pinned = None,
            ShowEvent::FlashStarted { flash } => {
                // Property 5: a flash price is never above the list price.
                assert!(
                    flash.price <= flash.list_price,
                    "flash above list: {flash:?}"
                );
                assert_eq!(
                    Some(&flash.product_id),
                    self.pinned.map(|i| &self.lineup[i].product.id)
                );
                self.next_flash_id = flash.id + 1;
                self.flashes.push(flash.clone());
                self.flash = Some(flash.clone());
            }
            ShowEvent::FlashEnded { flash_id, .. } => {
                assert_eq!(self.flash.as_ref().map(|f| f.id), Some(*flash_id));
                self.flash = None;
            }
        }
        self.journal.push(Journal::Event(ev.clone()));
        self.events.push(ev);
    }

    fn expect_claim(&self, req: &ClaimRequest) -> ClaimDecision {
        if let Some(existing) = self.claims.get(&req.claim_id) {
            if existing.buyer != req.buyer {
                return ClaimDecision::Refused(refusal(RefusalReason::ClaimIdTaken));
            }
            let idx = self.index(&existing.product_id).unwrap();
            return ClaimDecision::Duplicate(ClaimAccepted {
                record: existing.clone(),
                stock_left: self.left[idx],
                flash_exhausted: None,
            });
        }
        if self.status != ShowStatus::Live {
            return ClaimDecision::Refused(refusal(RefusalReason::ShowNotLive));
        }
        let Some(idx) = self.index(&req.product_id) else {
            return ClaimDecision::Refused(refusal(RefusalReason::UnknownProduct));
        };
        if self.pinned != Some(idx) {
            return ClaimDecision::Refused(refusal(RefusalReason::NotPinned));
        }
        let flash = self.applying_flash(idx, self.now);
        let price = flash.map_or(self.lineup[idx].product.list_price, |f| f.price);
        if price != req.seen_price {
            return ClaimDecision::Refused(Refusal {
                current_price: Some(price),
                ..refusal(RefusalReason::StalePrice)
            });
        }
        let qty = req.quantity.get();
        let limit_left = self.lineup[idx]
            .buyer_limit
            .saturating_sub(self.held(&req.buyer, idx));
        if qty > limit_left {
            return ClaimDecision::Refused(Refusal {
                limit_left: Some(limit_left),
                ..refusal(RefusalReason::LimitExceeded)
            });
        }
        let cap_left = flash.and_then(|f| self.cap_left(f));
        let available = cap_left.map_or(self.left[idx], |c| c.min(self.left[idx]));
        if qty > available {
            return ClaimDecision::Refused(Refusal {
                available: Some(available),
                ..refusal(RefusalReason::SoldOut)
            });
        }
        ClaimDecision::Accepted(ClaimAccepted {
            record: ClaimRecord {
                claim_id: req.claim_id.clone(),
                buyer: req.buyer.clone(),
                product_id: req.product_id.clone(),
                quantity: qty,
                unit_price: price,
                flash_id: flash.map(|f| f.id),
                at: self.now,
                cancelled_at: None,
            },
            stock_left: self.left[idx] - qty,
            flash_exhausted: flash.filter(|_| cap_left == Some(qty)).map(|f| f.id),
        })
    }

    fn claim(&mut self, req: &ClaimRequest) {
        let before = snapshot(&self.book);
        let expected = self.expect_claim(req);
        let got = self.book.claim(req, self.now);
        assert_eq!(got, expected, "claim decision for {req:?}");
        match got {
            ClaimDecision::Refused(r) => {
                // Property 3.
                assert_eq!(snapshot(&self.book), before, "a refusal changed the book");
                // Property 8 (new ids after close).
                if self.status == ShowStatus::Closed && !self.claims.contains_key(&req.claim_id) {
                    assert_eq!(r.reason, RefusalReason::ShowNotLive);
                }
            }
            ClaimDecision::Duplicate(_) => {
                assert_eq!(snapshot(&self.book), before, "a duplicate changed the book");
            }
            ClaimDecision::Accepted(acc) => {
                let rec = acc.record;
                let idx = self.index(&rec.product_id).unwrap();
                // Property 5: live, pinned, and the flash price exactly when a flash applies.
                assert_eq!(before.status, ShowStatus::Live, "accepted while not live");
                assert_eq!(
                    before.pinned.as_ref(),
                    Some(&rec.product_id),
                    "accepted an unpinned product"
                );
                let list = self.lineup[idx].product.list_price;
                match self.applying_flash(idx, self.now) {
                    Some(f) => {
                        assert_eq!(rec.flash_id, Some(f.id));
                        assert_eq!(rec.unit_price, f.price);
                        assert!(rec.unit_price <= list);
                    }
                    None => {
                        assert_eq!(rec.flash_id, None);
                        assert_eq!(rec.unit_price, list);
                    }
                }
                self.left[idx] -= rec.quantity;
                self.claims.insert(rec.claim_id.clone(), rec.clone());
                self.accepted.push(rec.claim_id.clone());
                self.journal.push(Journal::Claim(rec.clone()));
                self.check_idempotent(&rec);
            }
        }
    }

    /// Property 4, right after an acceptance (later re-sends go through `claim`).
    fn check_idempotent(&mut self, rec: &ClaimRecord) {
        let before = snapshot(&self.book);
        let idx = self.index(&rec.product_id).unwrap();
        let same = ClaimRequest {
            claim_id: rec.claim_id.clone(),
            buyer: rec.buyer.clone(),
            product_id: rec.product_id.clone(),
            quantity: Quantity::parse(i64::from(rec.quantity), MAX_QTY).unwrap(),
            seen_price: rec.unit_price,
        };
        match self.book.claim(&same, self.now + 1) {
            ClaimDecision::Duplicate(d) => {
                assert_eq!(&d.record, rec, "duplicate must carry the original record");
                assert_eq!(d.stock_left, self.left[idx]);
            }
            other => panic!("re-sent claim not a duplicate: {other:?}"),
        }
        let thief = all_buyers().find(|b| b != &rec.buyer).unwrap();
        let stolen = ClaimRequest {
            buyer: thief.clone(),
            ..same
        };
        assert_eq!(
            self.book.claim(&stolen, self.now + 1),
            ClaimDecision::Refused(refusal(RefusalReason::ClaimIdTaken))
        );
        assert_eq!(
            self.book.cancel(&thief, &rec.claim_id, self.now + 1),
            CancelDecision::UnknownClaim,
            "another buyer may not cancel"
        );
        assert_eq!(snapshot(&self.book), before, "a re-send changed the book");
    }

    fn cancel(&mut self, buyer: &BuyerId, id: &ClaimId) {
        let before = snapshot(&self.book);
        let expected = match self.claims.get(id) {
            None => CancelDecision::UnknownClaim,
            Some(rec) if &rec.buyer != buyer => CancelDecision::UnknownClaim,
            Some(rec) => {
                let idx = self.index(&rec.product_id).unwrap();
                if rec.cancelled_at.is_some() {
                    CancelDecision::AlreadyCancelled {
                        record: rec.clone(),
                        stock_left: self.left[idx],
                    }
                } else if self.status != ShowStatus::Live {
                    CancelDecision::ShowNotLive
                } else {
                    CancelDecision::Cancelled {
                        record: ClaimRecord {
                            cancelled_at: Some(self.now),
                            ..rec.clone()
                        },
                        stock_left: self.left[idx] + rec.quantity,
                        // Nobody joins a waitlist in this model.
                        waitlist: Vec::new(),
                    }
                }
            }
        };
        let got = self.book.cancel(buyer, id, self.now);
        assert_eq!(got, expected, "cancel of {id} by {buyer}");
        if self.status == ShowStatus::Closed
            && self
                .claims
                .get(id)
                .is_some_and(|c| &c.buyer == buyer && c.cancelled_at.is_none())
        {
            // Property 8.
            assert_eq!(got, CancelDecision::ShowNotLive);
        }
        match got {
            CancelDecision::Cancelled { record, .. } => {
                let idx = self.index(&record.product_id).unwrap();
                self.left[idx] += record.quantity;
                self.claims.insert(id.clone(), record);
                self.journal.push(Journal::Cancel(id.clone(), self.now));
            }
            _ => assert_eq!(
                snapshot(&self.book),
                before,
                "a refused cancel changed the book"
            ),
        }
    }

    // ----- checks after every step ---------------------------------------------------------------

    fn check_all(&self) {
        // Property 1.
        if let Err(e) = self.book.check_invariants() {
            panic!("invariants: {e}");
        }
        // Property 2.
        let stock = self.book.stock();
        assert_eq!(stock, self.model_stock(), "stock differs from the model");
        for (idx, entry) in self.lineup.iter().enumerate() {
            let held: u32 = self
                .claims
                .values()
                .filter(|c| c.product_id == entry.product.id && c.cancelled_at.is_none())
                .map(|c| c.quantity)
                .sum();
            assert!(held <= entry.allotted, "{held} held > allotted {entry:?}");
            assert_eq!(
                held,
                entry.allotted - stock[idx].1,
                "held != allotted - left"
            );
            for b in all_buyers() {
                assert!(self.held(&b, idx) <= entry.buyer_limit);
                assert_eq!(self.book.held(&b, &entry.product.id), self.held(&b, idx));
            }
        }
        // Property 6.
        for f in &self.flashes {
            if let Some(cap) = f.quantity_cap {
                let sold = self.flash_sold(f.id);
                assert!(sold <= cap, "flash {} holds {sold} > cap {cap}", f.id);
            }
        }
        // Model agreement on the rest of the state.
        assert_eq!(self.book.status(), self.status);
        assert_eq!(
            self.book.pinned().map(|e| &e.product.id),
            self.pinned.map(|i| &self.lineup[i].product.id)
        );
        assert_eq!(self.book.flash().cloned(), self.model_flash(), "flash");
        assert_eq!(
            self.book.log_len(),
            self.journal
                .iter()
                .filter(|j| !matches!(j, Journal::Event(_)))
                .count() as u64
        );
        for b in all_buyers() {
            assert_eq!(self.book.claims_of(&b), self.model_claims_of(&b));
        }
        // Property 7.
        assert_eq!(self.book.seq(), self.events.len() as u64);
        for (i, ev) in self.events.iter().enumerate() {
            assert_eq!(ev.seq, i as u64 + 1);
        }
        if self.replay_each_step {
            self.check_replay(ReplayOrder::EventsThenLog);
        }
    }

    fn replay(&self, order: ReplayOrder, times: usize) -> ShowBook {
        let mut book = ShowBook::new(show_id(), self.lineup.clone());
        let feed = |book: &mut ShowBook, j: &Journal| match j {
            Journal::Event(ev) => book.replay_event(ev),
            // A store may hand back the claim as it is now (cancelled or not); the cancel entry
            // that follows in the log is what cancels it.
            Journal::Claim(rec) if matches!(order, ReplayOrder::InterleavedLatestRecords) => {
                book.replay_claim(&self.claims[&rec.claim_id]);
            }
            Journal::Claim(rec) => book.replay_claim(rec),
            Journal::Cancel(id, at) => book.replay_cancel(id, *at),
        };
        let is_event = |j: &&Journal| matches!(j, Journal::Event(_));
        for _ in 0..times {
            match order {
                ReplayOrder::Interleaved | ReplayOrder::InterleavedLatestRecords => {
                    self.journal.iter().for_each(|j| feed(&mut book, j));
                }
                ReplayOrder::EventsThenLog => {
                    let (evs, log): (Vec<_>, Vec<_>) = self.journal.iter().partition(is_event);
                    evs.into_iter().chain(log).for_each(|j| feed(&mut book, j));
                }
                ReplayOrder::LogThenEvents => {
                    let (evs, log): (Vec<_>, Vec<_>) = self.journal.iter().partition(is_event);
                    log.into_iter().chain(evs).for_each(|j| feed(&mut book, j));
                }
            }
        }
        book
    }

    fn check_replay(&self, order: ReplayOrder) {
        self.check_replay_times(order, 1);
    }

    fn check_replay_times(&self, order: ReplayOrder, times: usize) {
        let rebuilt = self.replay(order, times);
        let (live, back) = (&self.book, &rebuilt);
        let ctx = format!("replay {order:?} x{times}");
        assert_eq!(back.stock(), live.stock(), "{ctx}: stock");
        assert_eq!(back.seq(), live.seq(), "{ctx}: seq");
        assert_eq!(back.status(), live.status(), "{ctx}: status");
        assert_eq!(
            back.pinned().map(|e| &e.product.id),
            live.pinned().map(|e| &e.product.id),
            "{ctx}: pinned"
        );
        assert_eq!(back.flash(), live.flash(), "{ctx}: flash");
        assert_eq!(back.log_len(), live.log_len(), "{ctx}: log_len");
        assert_eq!(
            back.accepted_claims(),
            live.accepted_claims(),
            "{ctx}: accepted"
        );
        for b in all_buyers() {
            assert_eq!(
                back.claims_of(&b),
                live.claims_of(&b),
                "{ctx}: claims of {b}"
            );
        }
        if let Err(e) = back.check_invariants() {
            panic!("{ctx}: invariants after replay: {e}");
        }
    }
}

fn live_and_pinned() -> Vec<Step> {
    vec![
        Step {
            dt: 0,
            action: Action::GoLive,
        },
        Step {
            dt: 0,
            action: Action::Pin(ProductPick::Lineup(0)),
        },
    ]
}

// ----- the tests -------------------------------------------------------------------------------

proptest! {
    /// Everything at once: a free mix of commands, claims and cancels, from a scheduled show.
    #[test]
    fn mixed_sessions_keep_every_property(spec in lineup_spec(), steps in steps(MIXED, 1..=60)) {
        let mut h = Harness::new(&spec);
        h.check_all();
        h.run(&steps);
    }

    /// A live show with the product pinned and flashes starting and lapsing all the time: the
    /// flash price applies exactly when it should, and caps hold through cancellations.
    #[test]
    fn flash_sessions_respect_price_and_cap(
        spec in prop::collection::vec((6u32..=40, 4u32..=20, 1i64..=200), 1..=2),
        steps in steps(
            Mix { go_live: 0, pin: 1, unpin: 1, start_flash: 6, end_flash: 1, claim: 24,
                  resend: 1, cancel: 1, cancel_own: 5, close: 0, flash_price: 6,
                  current_price: 10, short_steps: 2 },
            1..=60,
        ),
    ) {
        let mut h = Harness::new(&spec);
        h.run(&live_and_pinned());
        h.run(&steps);
    }

    /// Claim ids from a pool of 10 shared by 3 buyers, and re-sends of accepted claims: every
    /// re-send is a `Duplicate` with the original record or `ClaimIdTaken`, and changes nothing.
    #[test]
    fn claim_ids_are_idempotent(
        spec in lineup_spec(),
        steps in steps(
            Mix { go_live: 0, pin: 1, unpin: 0, start_flash: 2, end_flash: 0, claim: 12,
                  resend: 8, cancel: 2, cancel_own: 2, close: 1, flash_price: 4,
                  current_price: 3, short_steps: 0 },
            1..=50,
        ),
    ) {
        let mut h = Harness::new(&spec);
        h.run(&live_and_pinned());
        h.run(&steps);
    }

    /// Whatever happened before, once closed every new claim and every cancel of a live claim
    /// is refused as not live, and nothing changes any more.
    #[test]
    fn closed_show_refuses_claims_and_cancels(
        spec in lineup_spec(),
        before in steps(MIXED, 0..=40),
        after in steps(
            Mix { go_live: 1, pin: 1, unpin: 1, start_flash: 1, end_flash: 1, claim: 10,
                  resend: 4, cancel: 2, cancel_own: 6, close: 1, flash_price: 4,
                  current_price: 3, short_steps: 0 },
            1..=30,
        ),
    ) {
        let mut h = Harness::new(&spec);
        h.run(&live_and_pinned());
        h.run(&before);
        if h.status != ShowStatus::Closed {
            h.step(&Step { dt: 0, action: Action::Close });
        }
        let frozen = snapshot(&h.book);
        h.run(&after);
        prop_assert_eq!(snapshot(&h.book), frozen);
    }

    /// The book is the fold of its events and claim log, whatever order the two journals are
    /// read back in, and reading them twice changes nothing (old entries are ignored).
    #[test]
    fn replay_rebuilds_the_same_book(spec in lineup_spec(), steps in steps(MIXED, 1..=80)) {
        let mut h = Harness::new(&spec);
        h.replay_each_step = false;
        h.run(&live_and_pinned());
        for (i, step) in steps.iter().enumerate() {
            h.step(step);
            if i % 7 == 0 {
                h.check_replay(ReplayOrder::Interleaved);
                h.check_replay(ReplayOrder::LogThenEvents);
            }
        }
        for order in [
            ReplayOrder::EventsThenLog,
            ReplayOrder::LogThenEvents,
            ReplayOrder::Interleaved,
            ReplayOrder::InterleavedLatestRecords,
        ] {
            h.check_replay_times(order, 1);
            h.check_replay_times(order, 2);
        }
    }
}
