//! The store on real PostgreSQL (the one `scripts/test` provides) against the same conformance
//! suite as SQLite. Each test gets a database of its own.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nightmarket_store::{Store, testing};

async fn fresh() -> String {
    let url = testing::test_database_url().unwrap();
    testing::fresh_database(&url).await.unwrap()
}

/// A store on a fresh PostgreSQL database for one conformance case.
async fn fresh_store() -> (Store, ()) {
    let store = Store::postgres(&fresh().await, 8, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.engine_name(), "postgres");
    (store, ())
}

/// One test per case of the shared suite: `conformance_cases::<case>`.
mod conformance_cases {
    nightmarket_store::store_conformance!(super::fresh_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrating_at_once_agree() {
    let url = fresh().await;
    let opens = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Store::postgres(&url, 2, Duration::from_secs(5)).await })
    });
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let store = Store::postgres(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        store
            .markets(&nightmarket_store::Keyset::everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_a_backend_error() {
    // A port nothing listens on: calls fail within the timeout instead of hanging.
    let store = Store::postgres(
        "postgres://postgres@127.0.0.1:1/none",
        2,
        Duration::from_millis(500),
    )
    .await;
    assert!(matches!(
        store,
        Err(nightmarket_store::StoreError::Backend(_))
    ));
}
