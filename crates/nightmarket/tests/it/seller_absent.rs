//! A live show whose seller stays away ends by itself, and says why.

use std::time::{Duration, Instant};

use crate::support::{Market, TestServer, WAIT, get_ok};

/// How long a seller may be away in this test, and how often the market looks.
const ABSENT_MS: u64 = 600;
const TICK_MS: u64 = 50;

async fn status(m: &Market) -> String {
    let show = get_ok(m.addr, &format!("/api/shows/{}", m.show)).await;
    show["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_whose_seller_stays_away_ends_with_the_reason() {
    let server = TestServer::start(|c| {
        c.market.tick_ms = TICK_MS;
        c.market.seller_absent_close_ms = ABSENT_MS;
    })
    .await;
    let m = Market::create(server.addr, &[100_000], 10, 10, true).await;

    // While the seller is connected the show stays live, however long that is: every pass of
    // the market marks them present. (A window, not a wait for something to happen: what is
    // checked is that nothing does.)
    let seller = m.seller_client().await;
    let until = Instant::now() + Duration::from_millis(3 * ABSENT_MS);
    while Instant::now() < until {
        assert_eq!(
            status(&m).await,
            "live",
            "closed while its seller was connected"
        );
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }

    // Gone: the show ends once the bound has passed since the seller left, not before.
    let left = Instant::now();
    seller.close().await;
    let deadline = left + WAIT;
    while status(&m).await == "live" {
        assert!(Instant::now() < deadline, "the show never ended");
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }
    assert!(
        left.elapsed() >= Duration::from_millis(ABSENT_MS),
        "closed {:?} after the seller left, before the bound",
        left.elapsed()
    );
    assert_eq!(status(&m).await, "closed");

    // The inventory decides the close and the store records it just after, with its reason in
    // the same write: the log is read until the close is there, with a deadline, and the first
    // close seen already says why.
    let (log, close) = loop {
        let log = get_ok(m.addr, &format!("/api/shows/{}/transitions", m.show)).await;
        let close = log
            .as_array()
            .and_then(|t| t.iter().find(|t| t["to"] == "closed"))
            .cloned();
        if let Some(close) = close {
            break (log, close);
        }
        assert!(
            Instant::now() < deadline,
            "the close was never recorded: {log}"
        );
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    };
    assert_eq!(close["reason"], "seller_absent", "{log}");
    assert!(
        close["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("scheduler")),
        "{log}"
    );
    server.shutdown().await;
}
