//! Migrations on both engines: a database the old hand-written runner migrated (its
//! `nightmarket_migrations` table, versions 1 to 5) is adopted and keeps its data, not migrated
//! again; a recorded checksum that no longer matches its file, or a version this build does not
//! know, refuses to start with a clear error; several openers at once agree.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nightmarket_store::migrations::{self, HISTORY_TABLE, LEGACY_TABLE};
use nightmarket_store::{Store, StoreError, testing};

/// What the old runner left: every migration's text run in order, and its version and name in
/// the legacy table. `exec` runs one batch of SQL on the engine under test.
fn legacy_batches() -> Vec<String> {
    let mut out = vec![format!(
        "CREATE TABLE {LEGACY_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    )];
    for m in migrations::all().iter().filter(|m| m.version() <= 5) {
        out.push(m.sql().unwrap().to_owned());
        out.push(format!(
            "INSERT INTO {LEGACY_TABLE} (version, name) VALUES ({}, '{}')",
            m.version(),
            m.name()
        ));
    }
    // Data the adoption must keep.
    out.push(
        "INSERT INTO sellers (id, name, kind, district, created_at, version) \
         VALUES ('htx-ba-vi', 'HTX Mật ong Ba Vì', 'cooperative', 'Ba Vì', 1, 0)"
            .into(),
    );
    out
}

fn refused(r: Result<Store, StoreError>) -> String {
    match r {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    }
}

async fn adopted_and_kept(store: &Store) {
    let sellers = store
        .sellers(&nightmarket_store::Keyset::everything())
        .await
        .unwrap()
        .items;
    assert_eq!(sellers.len(), 1, "{sellers:?}");
    assert_eq!(sellers[0].name, "HTX Mật ong Ba Vì");
    // The later migrations ran: the newest tables answer.
    store.ping().await.unwrap();
}

// --- SQLite ------------------------------------------------------------------------------

fn sqlite_exec(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

fn sqlite_history(path: &std::path::Path) -> Vec<(i64, String, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare(&format!(
            "SELECT version, name, checksum FROM {HISTORY_TABLE} ORDER BY version"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_adopts_a_database_of_the_old_runner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    for sql in legacy_batches() {
        sqlite_exec(&path, &sql);
    }
    // Migration 2 adds columns without IF NOT EXISTS: running it again would fail.
    let store = Store::sqlite(&path).await.unwrap();
    adopted_and_kept(&store).await;
    drop(store);
    let history = sqlite_history(&path);
    let files = migrations::all();
    assert_eq!(history.len(), files.len());
    for ((version, name, checksum), file) in history.iter().zip(&files) {
        assert_eq!(*version, i64::from(file.version()));
        assert_eq!(name, file.name());
        assert_eq!(*checksum, file.checksum().to_string());
    }
    // Reopening finds everything applied.
    let store = Store::sqlite(&path).await.unwrap();
    adopted_and_kept(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_changed_migration_and_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    drop(Store::sqlite(&path).await.unwrap());
    // As if the file of migration 3 had been edited after this database applied it.
    sqlite_exec(
        &path,
        &format!("UPDATE {HISTORY_TABLE} SET checksum = '1' WHERE version = 3"),
    );
    let e = refused(Store::sqlite(&path).await);
    assert!(e.contains("migration 3 (orders) was changed"), "{e}");
    sqlite_exec(
        &path,
        &format!(
            "UPDATE {HISTORY_TABLE} SET checksum = '{}' WHERE version = 3",
            migrations::all()[2].checksum()
        ),
    );
    drop(Store::sqlite(&path).await.unwrap());
    sqlite_exec(
        &path,
        &format!(
            "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) \
             VALUES (999, 'future', '2030-01-01T00:00:00Z', '7')"
        ),
    );
    let e = refused(Store::sqlite(&path).await);
    assert!(e.contains("migration 999 (future)"), "{e}");
    assert!(e.contains("newer Nightmarket"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_legacy_table_that_is_not_the_old_runners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    sqlite_exec(
        &path,
        &format!(
            "CREATE TABLE {LEGACY_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO {LEGACY_TABLE} VALUES (1, 'catalogue');"
        ),
    );
    let e = refused(Store::sqlite(&path).await);
    assert!(e.contains(LEGACY_TABLE), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_openers_at_once_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { Store::sqlite(&path).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    assert_eq!(sqlite_history(&path).len(), migrations::all().len());
}

// --- PostgreSQL --------------------------------------------------------------------------

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn open_pg(url: &str) -> Result<Store, StoreError> {
    Store::postgres(url, 2, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_adopts_a_database_of_the_old_runner_with_nodes_at_once() {
    let url = testing::fresh_database(&testing::test_database_url().unwrap())
        .await
        .unwrap();
    let client = pg(&url).await;
    for sql in legacy_batches() {
        client.batch_execute(&sql).await.unwrap();
    }
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open_pg(&url).await })
        })
        .collect();
    for o in opens {
        adopted_and_kept(&o.await.unwrap().unwrap()).await;
    }
    let rows = client
        .query(
            &format!("SELECT version, name, checksum FROM {HISTORY_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    let files = migrations::all();
    assert_eq!(rows.len(), files.len());
    for (row, file) in rows.iter().zip(&files) {
        assert_eq!(row.get::<_, i32>(0), file.version());
        assert_eq!(row.get::<_, String>(1), file.name());
        assert_eq!(row.get::<_, String>(2), file.checksum().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_changed_migration() {
    let url = testing::fresh_database(&testing::test_database_url().unwrap())
        .await
        .unwrap();
    drop(open_pg(&url).await.unwrap());
    let client = pg(&url).await;
    client
        .batch_execute(&format!(
            "UPDATE {HISTORY_TABLE} SET checksum = '1' WHERE version = 1"
        ))
        .await
        .unwrap();
    let e = refused(open_pg(&url).await);
    assert!(e.contains("migration 1 (catalog) was changed"), "{e}");
    // The lock was released: a fixed database opens at once.
    client
        .batch_execute(&format!(
            "UPDATE {HISTORY_TABLE} SET checksum = '{}' WHERE version = 1",
            migrations::all()[0].checksum()
        ))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), open_pg(&url))
        .await
        .unwrap()
        .unwrap();
}
