//! Support for tests: a PostgreSQL database of their own, and waiting on a condition with a
//! deadline instead of for a fixed time.

use std::time::Duration;

use crate::StoreError;

/// How long a test waits for any single thing it expects.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits for a condition instead of for a fixed time: runs `check` every [`POLL`] until it
/// answers `Ok`, and returns that; panics with `what` and the last `Err` (what it saw
/// instead) once [`WAIT`] has passed.
pub async fn eventually<T, F, Fut>(what: impl std::fmt::Display, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Lets `window` pass so that a test can check that something did *not* happen meanwhile (a
/// second transition, a second delivery, a sweep before its time). The one fixed wait a test
/// may have: no condition marks that an event will never come. Anything that waits for
/// something to happen waits on it with a deadline instead.
pub async fn quiet_for(window: Duration) {
    tokio::time::sleep(window).await;
}

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

/// One accepted claim of a settlement fixture; `cancelled` adds its cancellation to the log.
#[derive(Debug, Clone)]
pub struct FixtureClaim {
    pub claim_id: String,
    pub buyer: String,
    pub product: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub flash: bool,
    pub cancelled: bool,
}

/// Settles `show` from the given claims the way the order service does: records them as the
/// show's whole claim log with its close marker, then settles the show into orders, at `at`
/// with `payment_window_ms`. For tests and tools that need orders without running the order
/// service against an inventory.
pub async fn settle_claims(
    store: &crate::Store,
    show: &crate::ShowRow,
    claims: &[FixtureClaim],
    payment_window_ms: i64,
    by: &str,
    at: nightmarket_domain::Millis,
) -> Result<crate::SettleOutcome, StoreError> {
    use nightmarket_domain::{
        BuyerId, ClaimId, ClaimRecord, Dong, LogCursor, ProductId, RecordedEntry,
    };
    let invalid = |e: &dyn std::fmt::Display| StoreError::Backend(format!("fixture: {e}"));
    let mut entries = Vec::with_capacity(claims.len() * 2);
    for c in claims {
        let entry = RecordedEntry {
            pos: 0,
            cancel: false,
            at,
            record: ClaimRecord {
                claim_id: ClaimId::parse(c.claim_id.as_str()).map_err(|e| invalid(&e))?,
                buyer: BuyerId::parse(c.buyer.as_str()).map_err(|e| invalid(&e))?,
                product_id: ProductId::parse(c.product.as_str()).map_err(|e| invalid(&e))?,
                quantity: c.quantity,
                unit_price: Dong::parse(c.unit_price).map_err(|e| invalid(&e))?,
                flash_id: c.flash.then_some(1),
                at,
                cancelled_at: None,
            },
        };
        if c.cancelled {
            entries.push(entry.clone());
            entries.push(RecordedEntry {
                cancel: true,
                ..entry
            });
        } else {
            entries.push(entry);
        }
    }
    for (pos, e) in entries.iter_mut().enumerate() {
        e.pos = pos as u64;
    }
    let end = LogCursor {
        next_pos: entries.len() as u64,
        token: String::new(),
    };
    let close = crate::CloseMarker {
        pos: end.next_pos,
        at,
        final_stock: Vec::new(),
    };
    let recorded = store
        .record_claim_log(
            &show.id,
            &LogCursor::default(),
            &entries,
            &end,
            Some(&close),
            at,
        )
        .await?;
    if !recorded {
        return Err(StoreError::Backend(format!(
            "fixture: show {}'s claim log was already recorded",
            show.id
        )));
    }
    store
        .settle_show(&crate::SettlePlan {
            show,
            close: &close,
            report: "{}".into(),
            claims: entries.iter().filter(|e| !e.cancel).count() as u64,
            cancels: entries.iter().filter(|e| e.cancel).count() as u64,
            payment_window_ms,
            by,
            at,
            event: None,
        })
        .await
}
