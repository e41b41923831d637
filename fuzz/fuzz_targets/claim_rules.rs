//! The claim rules of `ShowBook`, driven by arbitrary sequences of seller commands, claims,
//! cancels, waitlist joins and leaves and the passing of time. After every step:
//!
//! - never oversold: each product's stock left is at most its allotment, and
//!   `left = allotted - held` where `held` sums what every buyer holds (accepted, not cancelled);
//! - the claim records agree: the quantities of live records per product add up to `held`;
//! - no buyer holds more than the product's buyer limit;
//! - a flash never sells past its quantity cap;
//! - a refused claim or command leaves stock unchanged; a repeated claim id answers the
//!   original record (or is refused as taken, for another buyer) and changes nothing.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nightmarket_domain::{
    BuyerId, ClaimDecision, ClaimId, ClaimRequest, Dong, EndReason, FlashSpec, LineupEntry, Millis,
    Product, ProductGroup, ProductId, Quantity, SellerId, ShowBook, ShowId, Stars,
};

const T0: Millis = 1_750_000_000_000;
const LIST: i64 = 100_000;
/// Largest quantity a claim may ask for (the server's `limits.max_claim_quantity`).
const MAX_QTY: u32 = 10;
const PRODUCTS: usize = 3;
const BUYERS: u8 = 4;
const MAX_STEPS: usize = 256;

#[derive(Debug, Arbitrary)]
struct Scenario {
    lineup: [(u8, u8); PRODUCTS],
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    GoLive,
    Close,
    Pin(u8),
    Unpin,
    StartFlash {
        product: u8,
        discount: u16,
        duration_s: i16,
        cap: Option<u8>,
        countdown_s: u8,
    },
    EndFlash,
    /// `fresh_price`: the price that applies now (else `price` as sent).
    Claim {
        buyer: u8,
        id: u8,
        product: u8,
        quantity: i8,
        fresh_price: bool,
        price: i32,
    },
    Cancel {
        buyer: u8,
        id: u8,
    },
    WaitlistJoin {
        buyer: u8,
        product: u8,
        quantity: i8,
    },
    WaitlistLeave {
        buyer: u8,
        product: Option<u8>,
    },
    Wait(u16),
}

fn pid(i: u8) -> ProductId {
    ProductId::parse(format!("p-{}", i as usize % (PRODUCTS + 1))).expect("id")
}
fn buyer(b: u8) -> BuyerId {
    BuyerId::parse(format!("buyer-{}", b % BUYERS)).expect("id")
}
fn claim_id(id: u8) -> ClaimId {
    ClaimId::parse_client(format!("c-{}", id % 32)).expect("id")
}

fn lineup(spec: &[(u8, u8); PRODUCTS]) -> Vec<LineupEntry> {
    spec.iter()
        .enumerate()
        .map(|(i, &(allotted, limit))| LineupEntry {
            product: Product {
                id: pid(i as u8),
                seller_id: SellerId::parse("htx-ba-vi").expect("id"),
                name: format!("Mật ong {i}"),
                group: ProductGroup::Food,
                stars: Stars::parse(4).expect("stars"),
                district: "Ba Vì".into(),
                commune: "Tản Lĩnh".into(),
                producer: "HTX".into(),
                list_price: Dong::parse(LIST).expect("price"),
                origin_document: "GCN-1".into(),
                quality_label: "TCCS-1".into(),
                documents: Vec::new(),
            },
            allotted: u32::from(allotted % 40),
            buyer_limit: u32::from(limit % 8) + 1,
            left: u32::from(allotted % 40),
        })
        .collect()
}

fn stock(book: &ShowBook) -> Vec<u32> {
    book.lineup().iter().map(|e| e.left).collect()
}

fn check(book: &ShowBook) {
    let mut live_per_product: HashMap<ProductId, u32> = HashMap::new();
    for c in book.claims() {
        if c.cancelled_at.is_none() {
            *live_per_product.entry(c.product_id.clone()).or_default() += c.quantity;
        }
    }
    for e in book.lineup() {
        let id = &e.product.id;
        assert!(e.left <= e.allotted, "oversold {id}: {e:?}");
        let held: u32 = (0..BUYERS).map(|b| book.held(&buyer(b), id)).sum();
        assert_eq!(
            e.left,
            e.allotted - held,
            "stock = allotted - held for {id}"
        );
        assert_eq!(
            live_per_product.get(id).copied().unwrap_or(0),
            held,
            "claim records of {id}"
        );
        for b in 0..BUYERS {
            assert!(book.held(&buyer(b), id) <= e.buyer_limit, "limit of {id}");
        }
    }
    if let Some(f) = book.flash()
        && let Some(cap) = f.quantity_cap
    {
        assert!(f.sold <= cap, "flash past its cap: {f:?}");
    }
}

fuzz_target!(|s: Scenario| {
    let mut book = ShowBook::new(ShowId::parse("show-fuzz").expect("id"), lineup(&s.lineup));
    let mut now = T0;
    for step in s.steps.into_iter().take(MAX_STEPS) {
        let before = stock(&book);
        match step {
            Step::GoLive => {
                let _ = book.go_live(now);
            }
            Step::Close => {
                let _ = book.close(now);
            }
            Step::Pin(p) => {
                if book.pin(&pid(p), now).is_err() {
                    assert_eq!(stock(&book), before);
                }
            }
            Step::Unpin => {
                let _ = book.unpin(now);
            }
            Step::StartFlash {
                product,
                discount,
                duration_s,
                cap,
                countdown_s,
            } => {
                let Ok(price) = Dong::parse(LIST - i64::from(discount) * 10) else {
                    continue;
                };
                let spec = FlashSpec {
                    product_id: pid(product),
                    price,
                    duration_s: i64::from(duration_s),
                    quantity_cap: cap.map(u32::from),
                    countdown_s: i64::from(countdown_s % 4),
                };
                if book.start_flash(&spec, now).is_err() {
                    assert_eq!(stock(&book), before);
                }
            }
            Step::EndFlash => {
                let _ = book.end_flash(EndReason::EndedBySeller, None, now);
            }
            Step::Claim {
                buyer: b,
                id,
                product,
                quantity,
                fresh_price,
                price,
            } => {
                let Ok(q) = Quantity::parse(i64::from(quantity), MAX_QTY) else {
                    continue;
                };
                let seen = if fresh_price {
                    book.current_price(now).map(Dong::get).unwrap_or(LIST)
                } else {
                    i64::from(price)
                };
                let Ok(seen_price) = Dong::parse(seen) else {
                    continue;
                };
                let req = ClaimRequest {
                    claim_id: claim_id(id),
                    buyer: buyer(b),
                    product_id: pid(product),
                    quantity: q,
                    seen_price,
                };
                let earlier = book.claim_record(&req.claim_id).cloned();
                match book.claim(&req, now) {
                    ClaimDecision::Accepted(a) => {
                        assert!(earlier.is_none(), "accepted twice: {a:?}");
                        assert_eq!(a.record.quantity, q.get());
                        let i = book
                            .lineup()
                            .iter()
                            .position(|e| e.product.id == a.record.product_id)
                            .expect("a lineup product");
                        assert_eq!(stock(&book)[i] + q.get(), before[i]);
                    }
                    ClaimDecision::Duplicate(a) => {
                        assert_eq!(Some(a.record), earlier);
                        assert_eq!(stock(&book), before);
                    }
                    ClaimDecision::Refused(_) => assert_eq!(stock(&book), before),
                }
            }
            Step::Cancel { buyer: b, id } => {
                let _ = book.cancel(&buyer(b), &claim_id(id), now);
            }
            Step::WaitlistJoin {
                buyer: b,
                product,
                quantity,
            } => {
                if let Ok(q) = Quantity::parse(i64::from(quantity), MAX_QTY) {
                    let _ = book.waitlist_join(&buyer(b), &pid(product), q, now);
                    assert_eq!(stock(&book), before, "joining a waitlist takes no stock");
                }
            }
            Step::WaitlistLeave { buyer: b, product } => {
                let p = product.map(pid);
                let _ = book.waitlist_leave(&buyer(b), p.as_ref());
                assert_eq!(stock(&book), before, "leaving a waitlist takes no stock");
            }
            Step::Wait(ms) => now += Millis::from(ms) * 10,
        }
        check(&book);
    }
});
