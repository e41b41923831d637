//! What the end-to-end tests share beyond the library: the parts that need the store's test
//! support (the `testing` feature, which only this crate's dev-dependency turns on, so that
//! building the workspace builds the store exactly as the binary does).

use std::path::Path;
use std::time::Duration;

pub(crate) use nightmarket_store::testing::eventually;

/// A fresh, empty PostgreSQL database of this test's own, by URL.
pub(crate) async fn postgres_url() -> String {
    let url = nightmarket_store::testing::test_database_url().unwrap();
    nightmarket_store::testing::fresh_database(&url)
        .await
        .unwrap()
}

/// The store a server writes to, opened beside it: PostgreSQL at `database_url`, or the
/// SQLite file in its data directory `dir`.
pub(crate) async fn store_of(dir: &Path, database_url: Option<&str>) -> nightmarket_store::Store {
    use nightmarket_store::Store;
    match database_url {
        Some(url) => Store::postgres(url, 2, Duration::from_secs(5)).await,
        None => Store::sqlite(&dir.join("catalog.sqlite")).await,
    }
    .unwrap()
}
