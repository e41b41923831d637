//! Bad input gets its own error code; nothing panics; the connection stays usable where that
//! is safe.

use nightmarket_server::auth::Role;
use nightmarket_tests::{Client, Ended, Market, TestServer, token};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn error_code(c: &mut Client) -> ErrorCode {
    c.until(|m| match m {
        ServerMessage::Error(e) => Some(e.code),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_code_and_the_connection_survives() {
    let server = TestServer::start(|c| c.limits.messages_per_second = 1000).await;
    let m = Market::create(server.addr, &[100_000], 50, 5, true).await;
    let p = m.product(0).to_owned();
    let mut seller = m.seller_client().await;
    let mut v = Client::connect(m.addr, &m.show, &token(Role::Viewer, "khach"), None)
        .await
        .unwrap();

    v.send_raw(Message::text("{not json")).await;
    assert_eq!(error_code(&mut v).await, ErrorCode::BadRequest);
    v.send_raw(Message::text("[1,2,3]")).await;
    assert_eq!(error_code(&mut v).await, ErrorCode::BadRequest);
    v.send(json!({"type": "buy_everything"})).await;
    assert_eq!(error_code(&mut v).await, ErrorCode::UnknownType);
    v.send(json!({"type": "claim", "claim_id": "x"})).await;
    assert_eq!(
        error_code(&mut v).await,
        ErrorCode::BadRequest,
        "missing fields"
    );
    v.send_raw(Message::binary(vec![0u8, 1, 2])).await;
    assert_eq!(error_code(&mut v).await, ErrorCode::BinaryNotSupported);
    v.send_raw(Message::text(format!(
        "{{\"type\":\"claim\",\"pad\":\"{}\"}}",
        "x".repeat(5000)
    )))
    .await;
    assert_eq!(error_code(&mut v).await, ErrorCode::FrameTooLarge);
    // A quantity too large for any integer type.
    v.send_raw(Message::text(format!("{{\"type\":\"claim\",\"claim_id\":\"h\",\"product_id\":\"{p}\",\"quantity\":1e30,\"price\":100000}}"))).await;
    assert_eq!(error_code(&mut v).await, ErrorCode::BadRequest);

    // Nothing pinned yet.
    let r = v.claim("early", &p, 1, 100_000).await;
    assert_eq!(r.reason, Some(ErrorCode::NotPinned));
    seller
        .command(json!({"type": "pin", "product_id": p}), "pin")
        .await
        .unwrap();

    for (qty, id) in [
        (0, "q0"),
        (-1, "qneg"),
        (1_000_000_000_000, "qhuge"),
        (101, "qmax"),
    ] {
        let r = v.claim(id, &p, qty, 100_000).await;
        assert_eq!(
            (r.outcome, r.reason),
            (ClaimOutcomeKind::Refused, Some(ErrorCode::BadRequest)),
            "quantity {qty}"
        );
    }
    let r = v.claim("neg-price", &p, 1, -5).await;
    assert_eq!(r.reason, Some(ErrorCode::BadRequest));
    let r = v.claim("bad id with spaces", &p, 1, 100_000).await;
    assert_eq!(r.reason, Some(ErrorCode::BadRequest));
    let r = v
        .claim("unknown-product", "no-such-product", 1, 100_000)
        .await;
    assert_eq!(r.reason, Some(ErrorCode::UnknownProduct));
    let r = v.claim("stale", &p, 1, 90_000).await;
    assert_eq!(
        (r.reason, r.current_price),
        (Some(ErrorCode::StalePrice), Some(100_000))
    );

    // Seller input.
    let above = json!({"type": "start_flash", "product_id": p, "price": 100_001, "duration_s": 30});
    assert_eq!(
        seller.command(above, "above").await,
        Err("price_above_list".into())
    );
    let zero = json!({"type": "start_flash", "product_id": p, "price": 90_000, "duration_s": 0});
    assert_eq!(
        seller.command(zero, "zero").await,
        Err("bad_request".into())
    );
    let cap = json!({"type": "start_flash", "product_id": p, "price": 90_000, "duration_s": 10, "quantity_cap": 0});
    assert_eq!(seller.command(cap, "cap").await, Err("bad_request".into()));
    assert_eq!(
        seller
            .command(json!({"type": "pin", "product_id": "nope"}), "nope")
            .await,
        Err("unknown_product".into())
    );
    assert_eq!(
        seller
            .command(json!({"type": "end_flash"}), "noflash")
            .await,
        Err("no_flash".into())
    );
    let cancel = json!({"type": "cancel", "claim_id": "never-made"});
    v.send(cancel).await;
    let c = v
        .until(|m| match m {
            ServerMessage::CancelResult(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(c.reason, Some(ErrorCode::UnknownClaim));

    // After all that, the connection still works.
    let r = v.claim("good", &p, 1, 100_000).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted);

    // A frame above the hard limit ends the connection with 1009; others are unaffected.
    let mut big = Client::connect(m.addr, &m.show, &token(Role::Viewer, "khach-big"), None)
        .await
        .unwrap();
    big.send_raw(Message::text("x".repeat(70_000))).await;
    let ended = big.drain_to_end().await;
    assert!(
        matches!(
            ended,
            Ended::Close(Some(1009)) | Ended::Eof | Ended::Error(_)
        ),
        "{ended:?}"
    );
    let r = v.claim("still-good", &p, 1, 100_000).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_claims_is_rate_limited_and_then_served_again() {
    let server = TestServer::start(|c| {
        c.limits.messages_per_second = 10;
        c.limits.message_burst = 20;
    })
    .await;
    let m = Market::create(server.addr, &[100_000], 1000, 1000, true).await;
    let _seller = m.pinned_seller(0).await;
    let mut v = Client::connect(m.addr, &m.show, &token(Role::Viewer, "flood"), None)
        .await
        .unwrap();
    for n in 0..200 {
        v.send(json!({"type": "claim", "claim_id": format!("f{n}"), "product_id": m.product(0), "quantity": 1, "price": 100_000})).await;
    }
    let mut accepted = 0;
    let mut limited = 0;
    for _ in 0..200 {
        let r = v
            .until(|msg| match msg {
                ServerMessage::ClaimResult(r) => Some(r.clone()),
                _ => None,
            })
            .await;
        match (r.outcome, r.reason) {
            (ClaimOutcomeKind::Accepted, _) => accepted += 1,
            (ClaimOutcomeKind::Refused, Some(ErrorCode::RateLimited)) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        limited > 100,
        "most of a 200-claim burst is refused: {limited}"
    );
    assert!(accepted >= 20, "the burst allowance is served: {accepted}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = v.claim("after-the-flood", m.product(0), 1, 100_000).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted);
    server.shutdown().await;
}
