//! The Redis inventory against the shared conformance suite, on the real Redis that
//! `scripts/test` provides (NIGHTMARKET_TEST_REDIS_URL). Each run uses its own key prefix.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use nightmarket_inventory::{Inventory, RedisInventory, conformance};

fn redis_url() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test, which starts a Redis")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_inventory_conforms() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv: Arc<dyn Inventory> = Arc::new(
        RedisInventory::connect(&redis_url(), &prefix, 1000)
            .await
            .unwrap(),
    );
    conformance::run(inv, "redis").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_cache_flush() {
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let url = redis_url();
    let inv: Arc<dyn Inventory> =
        Arc::new(RedisInventory::connect(&url, &prefix, 1000).await.unwrap());
    conformance::run(inv.clone(), "before").await.unwrap();
    // A Redis restart loses its script cache; EVALSHA then falls back to EVAL.
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    conformance::run(inv, "after").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_published_to_the_show_channel() {
    use nightmarket_domain::{
        Dong, LineupEntry, Product, ProductGroup, ProductId, SellerId, ShowEvent, ShowId, Stars,
    };
    use nightmarket_inventory::{Command, FeedItem};
    let prefix = format!("nmtest:{}:", uuid::Uuid::new_v4());
    let inv = RedisInventory::connect(&redis_url(), &prefix, 1000)
        .await
        .unwrap();
    let show = ShowId::parse("feed").unwrap();
    let product = Product {
        id: ProductId::parse("p1").unwrap(),
        seller_id: SellerId::parse("s1").unwrap(),
        name: "Chè Shan tuyết".into(),
        group: ProductGroup::Beverages,
        stars: Stars::parse(4).unwrap(),
        district: "Ba Vì".into(),
        commune: "Ba Trại".into(),
        producer: "HTX Chè Ba Vì".into(),
        list_price: Dong::parse(180_000).unwrap(),
        origin_document: "NG-1".into(),
        quality_label: "CL-1".into(),
    };
    inv.open_show(
        &show,
        vec![LineupEntry {
            product,
            allotted: 5,
            buyer_limit: 2,
            left: 5,
        }],
    )
    .await
    .unwrap();
    let (feed, mut rx) = inv.event_feed();
    feed.watch(&show);
    // Subscribing is asynchronous: give it a moment before the first command.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = inv.command(&show, Command::GoLive, 1).await.unwrap();
    let pinned = inv
        .command(&show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            FeedItem::Event(s, ev) => {
                assert_eq!(s, show);
                got.push(ev);
            }
            FeedItem::Reconnected => {}
        }
    }
    assert_eq!(got, [sent, pinned].concat());
    assert!(matches!(got[1].event, ShowEvent::Pinned { .. }));
}
