//! Shows driven through a real inventory (memory with its journal, or Redis) into a real store
//! (SQLite or PostgreSQL), with a model of what every accepted decision should become.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimDecision, ClaimId, ClaimRequest, Dong, FlashSpec, LineupEntry,
    MarketId, Product, ProductGroup, ProductId, Quantity, SellerId, ShowId, ShowStatus, Stars,
};
use nightmarket_inventory::{
    Cancel, Command, DecisionClock, Inventory, MemoryInventory, RedisInventory,
};
use nightmarket_orders::{Settler, SettlerLimits};
use nightmarket_store::{LineupRow, SellerRow, ShowRow, ShowSchedule, SqliteJournal, Store};

pub const T0: i64 = 1_795_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite store, memory inventory journaled to SQLite: the embedded default.
    Embedded,
    /// PostgreSQL store, Redis inventory: distributed mode.
    Distributed,
}

pub struct Env {
    pub kind: Kind,
    pub store: Arc<Store>,
    pub inv: Arc<dyn Inventory>,
    pub dir: tempfile::TempDir,
    pub journal: Option<PathBuf>,
    pub redis: Option<(String, String)>,
}

pub fn redis_url() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test")
    })
}

pub async fn env(kind: Kind) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (store, inv, journal, redis): (Store, Arc<dyn Inventory>, _, _) = match kind {
        Kind::Embedded => {
            let store = Store::sqlite(&dir.path().join("store.sqlite"))
                .await
                .unwrap();
            let journal = dir.path().join("journal.sqlite");
            let inv = MemoryInventory::new(SqliteJournal::open(&journal, 65_536).unwrap(), 1000)
                .deciding_by(DecisionClock::Scripted);
            (store, Arc::new(inv), Some(journal), None)
        }
        Kind::Distributed => {
            let url = nightmarket_store::testing::test_database_url().unwrap();
            let db = nightmarket_store::testing::fresh_database(&url)
                .await
                .unwrap();
            let store = Store::postgres(&db, 8, Duration::from_secs(10))
                .await
                .unwrap();
            let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
            let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
                .await
                .unwrap()
                .deciding_by(DecisionClock::Scripted);
            (store, Arc::new(inv), None, Some((redis_url(), prefix)))
        }
    };
    Env {
        kind,
        store: Arc::new(store),
        inv,
        dir,
        journal,
        redis,
    }
}

impl Env {
    pub fn settler(&self, limits: SettlerLimits) -> Settler {
        Settler::new(self.store.clone(), self.inv.clone(), limits)
    }
}

pub fn small_batches() -> SettlerLimits {
    SettlerLimits {
        batch: 97,
        batches_per_show: 3,
        ..SettlerLimits::default()
    }
}

pub struct Item {
    pub id: &'static str,
    pub stock: u32,
    pub limit: u32,
    pub list: i64,
}

pub fn product(id: &str, seller: &SellerId, list: i64) -> Product {
    Product {
        id: ProductId::parse(id).unwrap(),
        seller_id: seller.clone(),
        name: format!("Miến dong {id}"),
        group: if id.ends_with('1') {
            ProductGroup::Food
        } else {
            ProductGroup::Beverages
        },
        stars: Stars::parse(if id.ends_with('1') { 4 } else { 3 }).unwrap(),
        district: "Ba Vì".into(),
        commune: "Minh Quang".into(),
        producer: "HTX Miến dong Minh Quang".into(),
        list_price: Dong::parse(list).unwrap(),
        origin_document: "GCN-OCOP-HN-0001".into(),
        quality_label: "TCCS 01:2024".into(),
        documents: Vec::new(),
    }
}

/// Creates the seller, products and show in the store, opens it in the inventory and takes it
/// live. Product ids are prefixed with the show id so shows never share products.
pub async fn live_show(
    env: &Env,
    show: &str,
    seller: &str,
    items: &[Item],
    night: Option<(&str, &str)>,
) -> ShowRow {
    let seller_id = SellerId::parse(seller).unwrap();
    let _ = env
        .store
        .create_seller(&SellerRow {
            id: seller_id.clone(),
            name: format!("HTX {seller}"),
            kind: "cooperative".into(),
            district: "Ba Vì".into(),
            created_at: T0,
        })
        .await;
    let mut lineup = Vec::new();
    for it in items {
        let p = product(&format!("{show}-{}", it.id), &seller_id, it.list);
        env.store.create_product(&p, T0).await.unwrap();
        lineup.push(LineupRow {
            product: p,
            stock: it.stock,
            buyer_limit: it.limit,
        });
    }
    let row = ShowRow {
        id: ShowId::parse(show).unwrap(),
        seller_id,
        title: format!("Chợ phiên {show}"),
        status: ShowStatus::Scheduled,
        created_at: T0,
        lineup: lineup.clone(),
        schedule: night.map(|(m, d)| ShowSchedule {
            market_id: MarketId::parse(m).unwrap(),
            night_date: d.parse().unwrap(),
            slot_start: T0,
            slot_end: T0 + 3_600_000,
            stream_url: "https://live.example/1".into(),
        }),
        live_at: None,
        closed_at: None,
    };
    env.store.create_show(&row).await.unwrap();
    let entries = lineup
        .iter()
        .map(|l| LineupEntry::opening(l.product.clone(), l.stock, l.buyer_limit))
        .collect();
    env.inv.open_show(&row.id, entries).await.unwrap();
    env.inv.command(&row.id, Command::GoLive, T0).await.unwrap();
    assert!(
        env.store
            .set_show_status(&row.id, ShowStatus::Scheduled, ShowStatus::Live)
            .await
            .unwrap()
    );
    row
}

pub async fn close(env: &Env, show: &ShowRow, at: i64) {
    env.inv.command(&show.id, Command::Close, at).await.unwrap();
    env.store
        .set_show_status(&show.id, ShowStatus::Live, ShowStatus::Closed)
        .await
        .unwrap();
}

/// What the accepted decisions say each buyer should be billed: per (buyer, product, unit
/// price) the units held after cancellations.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Model {
    pub lines: BTreeMap<(String, String, i64), u64>,
    pub claims: u64,
    pub cancels: u64,
}

impl Model {
    pub fn units_of(&self, product: &str) -> u64 {
        self.lines
            .iter()
            .filter(|((_, p, _), _)| p == product)
            .map(|(_, u)| *u)
            .sum()
    }
    pub fn buyers(&self) -> Vec<String> {
        let mut b: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, u)| **u > 0)
            .map(|((b, _, _), _)| b.clone())
            .collect();
        b.dedup();
        b
    }
    pub fn revenue(&self) -> i64 {
        self.lines
            .iter()
            .map(|((_, _, price), u)| price * *u as i64)
            .sum()
    }
    pub fn units(&self) -> u64 {
        self.lines.values().sum()
    }
}

/// A cheap deterministic generator, so a failing run can be replayed.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Drives `rounds` rounds of buying on every product of the show in turn: the seller pins it,
/// sometimes runs a flash price, `buyers` buyers claim random quantities (some retry the same
/// claim id, some cancel). Returns the model of accepted decisions.
pub async fn trade(env: &Env, show: &ShowRow, buyers: u32, seed: u64) -> Model {
    let mut rng = Lcg(seed);
    let mut model = Model::default();
    let mut t = T0 + 1_000;
    let mut accepted: Vec<(ClaimId, BuyerId, String, i64, u32)> = Vec::new();
    for (i, line) in show.lineup.iter().enumerate() {
        let pid = line.product.id.clone();
        t += 1_000;
        env.inv
            .command(&show.id, Command::Pin(pid.clone()), t)
            .await
            .unwrap();
        let mut price = line.product.list_price.get();
        if i % 2 == 0 {
            let flash = price * 7 / 10;
            env.inv
                .command(
                    &show.id,
                    Command::StartFlash(FlashSpec {
                        product_id: pid.clone(),
                        price: Dong::parse(flash).unwrap(),
                        duration_s: 3_600,
                        quantity_cap: None,
                        countdown_s: 0,
                    }),
                    t,
                )
                .await
                .unwrap();
            price = flash;
        }
        for b in 0..buyers {
            t += 1;
            let buyer = BuyerId::parse(format!("b{b}")).unwrap();
            let qty = 1 + rng.next(3) as i64;
            let cid = ClaimId::parse(format!("{}-{b}-{i}", show.id)).unwrap();
            let req = ClaimRequest {
                claim_id: cid.clone(),
                buyer: buyer.clone(),
                product_id: pid.clone(),
                quantity: Quantity::parse(qty, 100).unwrap(),
                seen_price: Dong::parse(price).unwrap(),
            };
            let d = env.inv.claim(&show.id, req.clone(), t).await.unwrap();
            if let ClaimDecision::Accepted(a) = &d {
                model.claims += 1;
                *model
                    .lines
                    .entry((
                        buyer.to_string(),
                        pid.to_string(),
                        a.record.unit_price.get(),
                    ))
                    .or_default() += u64::from(a.record.quantity);
                accepted.push((
                    cid.clone(),
                    buyer.clone(),
                    pid.to_string(),
                    a.record.unit_price.get(),
                    a.record.quantity,
                ));
            }
            // A lost reply: the same claim again must not count twice.
            if rng.next(10) == 0 {
                let again = env.inv.claim(&show.id, req, t).await.unwrap();
                assert!(!matches!(again, ClaimDecision::Accepted(_)), "{again:?}");
            }
            // Now and then someone cancels an earlier claim.
            if rng.next(7) == 0 && !accepted.is_empty() {
                let k = rng.next(accepted.len() as u64) as usize;
                let (cid, buyer, product, price, qty) = accepted.swap_remove(k);
                let c = env
                    .inv
                    .cancel(
                        &show.id,
                        Cancel {
                            buyer: buyer.clone(),
                            claim_id: cid.clone(),
                            now: t,
                        },
                    )
                    .await
                    .unwrap();
                assert!(matches!(c, CancelDecision::Cancelled { .. }), "{c:?}");
                model.cancels += 1;
                let units = model
                    .lines
                    .get_mut(&(buyer.to_string(), product, price))
                    .unwrap();
                *units -= u64::from(qty);
            }
        }
    }
    model.lines.retain(|_, u| *u > 0);
    model
}

/// Runs rounds until the show is settled (or a bound on rounds passes).
pub async fn settle_all(settler: &Settler, env: &Env, show: &ShowId) {
    for _ in 0..1_000 {
        settler.round().await.unwrap();
        if let Some(s) = env.store.settlement(show).await.unwrap() {
            assert_eq!(
                s.state,
                nightmarket_store::SettlementState::Settled,
                "{s:?}"
            );
            return;
        }
    }
    let why = settler.settle(show, false).await;
    panic!("show {show} did not settle: {why:?}");
}
