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
