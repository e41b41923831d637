//! Support for tests that need a PostgreSQL database of their own.

use crate::StoreError;

/// The PostgreSQL server the test command provides (`NIGHTMARKET_TEST_DATABASE_URL`).
pub fn test_database_url() -> Result<String, StoreError> {
    std::env::var("NIGHTMARKET_TEST_DATABASE_URL").map_err(|_| {
        StoreError::Backend(
            "NIGHTMARKET_TEST_DATABASE_URL is not set: run the tests with scripts/test, which \
             starts a PostgreSQL"
                .into(),
        )
    })
}

/// Creates an empty database next to the one `url` names and returns its URL, so each test
/// starts from nothing and tests run in parallel without seeing each other's rows.
pub async fn fresh_database(url: &str) -> Result<String, StoreError> {
    let backend = |e: tokio_postgres::Error| StoreError::Backend(e.to_string());
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(backend)?;
    let task = tokio::spawn(conn);
    let name = format!("nm_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(backend)?;
    drop(client);
    let _ = task.await;
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if base[..i].contains("//") && i > base.find("//").map_or(0, |j| j + 1) => {
            &base[..i]
        }
        _ => base,
    };
    Ok(match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    })
}
