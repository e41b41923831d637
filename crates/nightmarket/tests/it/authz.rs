//! Who may do what: tokens are required and verified; viewers cannot command; a seller commands
//! only its own shows; only operators create things.

use crate::support::{
    Client, Market, SECRET, TestServer, create_seller, get, http, now_secs, token,
};
use nightmarket_server::auth::{Role, TokenKey};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let server = TestServer::start(|_| {}).await;
    let m = Market::create(server.addr, &[100_000], 10, 2, true).await;
    let addr = m.addr;

    // Missing, forged and expired tokens are refused before the upgrade.
    assert_eq!(
        Client::connect(addr, &m.show, "", None).await.err(),
        Some(401)
    );
    let forged = TokenKey::new("some-other-secret-some-other-secret!").mint(
        Role::Seller,
        &m.seller_id,
        now_secs(),
        3600,
    );
    assert_eq!(
        Client::connect(addr, &m.show, &forged, None).await.err(),
        Some(401)
    );
    let expired = TokenKey::new(SECRET).mint(Role::Viewer, "khach", now_secs() - 7200, 3600);
    assert_eq!(
        Client::connect(addr, &m.show, &expired, None).await.err(),
        Some(401)
    );
    assert_eq!(
        Client::connect(addr, &m.show, "not.a.token", None)
            .await
            .err(),
        Some(401)
    );
    // A viewer subject that is not a valid buyer id.
    assert_eq!(
        Client::connect(addr, &m.show, &token(Role::Viewer, "khách hàng"), None)
            .await
            .err(),
        Some(401)
    );
    // Unknown show.
    assert_eq!(
        Client::connect(addr, "no-such-show", &token(Role::Viewer, "k"), None)
            .await
            .err(),
        Some(404)
    );

    // A viewer cannot pin.
    let mut viewer = Client::connect(addr, &m.show, &token(Role::Viewer, "khach-1"), None)
        .await
        .unwrap();
    assert_eq!(
        viewer
            .command(json!({"type": "pin", "product_id": m.product(0)}), "v")
            .await,
        Err("forbidden".into())
    );
    assert_eq!(
        viewer.command(json!({"type": "unpin"}), "v2").await,
        Err("forbidden".into())
    );

    // Seller B may watch seller A's show but not command it.
    let seller_b = create_seller(addr, &m.operator, "Làng gốm Bát Tràng").await;
    let mut b = Client::connect(addr, &m.show, &token(Role::Seller, &seller_b), None)
        .await
        .unwrap();
    assert_eq!(
        b.command(json!({"type": "pin", "product_id": m.product(0)}), "b")
            .await,
        Err("forbidden".into())
    );
    assert_eq!(
        b.command(
            json!({"type": "start_flash", "product_id": m.product(0), "price": 1, "duration_s": 5}),
            "b2"
        )
        .await,
        Err("forbidden".into())
    );
    // An operator watches but does not drive the show over WebSocket either.
    let mut op = Client::connect(addr, &m.show, &m.operator, None)
        .await
        .unwrap();
    assert_eq!(
        op.command(json!({"type": "unpin"}), "o").await,
        Err("forbidden".into())
    );

    // Seller A can.
    let mut a = Client::connect(addr, &m.show, &m.seller, None)
        .await
        .unwrap();
    assert!(
        a.command(json!({"type": "pin", "product_id": m.product(0)}), "a")
            .await
            .is_ok()
    );

    // Sellers do not claim; the buyer id is always the token's subject.
    let r = a.claim("seller-claim", m.product(0), 1, 100_000).await;
    assert_eq!(
        (r.outcome, r.reason),
        (ClaimOutcomeKind::Refused, Some(ErrorCode::Forbidden))
    );
    let r = viewer.claim("c1", m.product(0), 1, 100_000).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted);
    let mut other = Client::connect(addr, &m.show, &token(Role::Viewer, "khach-2"), None)
        .await
        .unwrap();
    other
        .send(json!({"type": "cancel", "claim_id": "c1"}))
        .await;
    let cancel = other
        .until(|msg| match msg {
            ServerMessage::CancelResult(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        cancel.reason,
        Some(ErrorCode::UnknownClaim),
        "another buyer's claim cannot be cancelled"
    );

    // HTTP: only operators create; only an operator or the owning seller moves a show.
    let viewer_t = token(Role::Viewer, "khach-1");
    let seller_a = m.seller.clone();
    let body = json!({"name": "X"});
    assert_eq!(
        http(addr, "POST", "/api/sellers", None, Some(&body))
            .await
            .0,
        401
    );
    assert_eq!(
        http(addr, "POST", "/api/sellers", Some(&viewer_t), Some(&body))
            .await
            .0,
        403
    );
    assert_eq!(
        http(addr, "POST", "/api/sellers", Some(&seller_a), Some(&body))
            .await
            .0,
        403
    );
    assert_eq!(
        http(addr, "POST", "/api/sellers", Some(&forged), Some(&body))
            .await
            .0,
        401
    );
    let show_body = json!({"seller_id": m.seller_id, "title": "t", "lineup": [{"product_id": m.product(0), "stock": 1, "buyer_limit": 1}]});
    assert_eq!(
        http(
            addr,
            "POST",
            "/api/shows",
            Some(&seller_a),
            Some(&show_body)
        )
        .await
        .0,
        403
    );
    let (status, created) = http(
        addr,
        "POST",
        "/api/shows",
        Some(&m.operator),
        Some(&show_body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let new_show = created["id"].as_str().unwrap();
    let b_token = token(Role::Seller, &seller_b);
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/shows/{new_show}/live"),
        Some(&b_token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        http(
            addr,
            "POST",
            &format!("/api/shows/{new_show}/live"),
            Some(&viewer_t),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        http(
            addr,
            "POST",
            &format!("/api/shows/{new_show}/live"),
            Some(&seller_a),
            None
        )
        .await
        .0,
        200
    );
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/shows/{new_show}/live"),
        Some(&seller_a),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );
    assert_eq!(
        http(
            addr,
            "POST",
            &format!("/api/shows/{new_show}/close"),
            Some(&seller_a),
            None
        )
        .await
        .0,
        200
    );
    server.shutdown().await;
}

/// Where the clock tests below start the server's manual clock: a Friday evening in 2026.
const AT_SECS: i64 = 1_795_786_200;
/// How long their tokens are valid.
const TTL_SECS: i64 = 600;

/// A server on a manual clock at [`AT_SECS`], and that clock.
async fn clocked_server() -> (TestServer, nightmarket_server::clock::ManualClock) {
    let clock = nightmarket_server::clock::ManualClock::new(AT_SECS * 1000);
    let server =
        TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
    (server, clock)
}

/// The server checks tokens on its one clock: a token stays good until that clock passes its
/// expiry, and one issued ahead of it is refused, whatever the wall clock says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expires_when_the_servers_clock_passes_its_expiry() {
    let (server, clock) = clocked_server().await;
    let key = TokenKey::new(SECRET);
    let operator = key.mint(Role::Operator, "dieu-hanh", AT_SECS, TTL_SECS);
    let addr = server.addr;
    let me = |t: String| async move { get(addr, "/api/me", Some(&t)).await };

    assert_eq!(me(operator.clone()).await.0, 200, "good at issue");
    clock.advance((TTL_SECS - 1) * 1000);
    assert_eq!(me(operator.clone()).await.0, 200, "good a second before");
    clock.advance(1000);
    let (status, body) = me(operator.clone()).await;
    assert_eq!(
        (status, body["error"]["details"]["reason"].as_str()),
        (401, Some("expired")),
        "{body}"
    );

    // Issued an hour after the server's clock: refused until the clock gets there.
    let later = key.mint(
        Role::Operator,
        "dieu-hanh",
        AT_SECS + 2 * TTL_SECS + 3600,
        TTL_SECS,
    );
    let (status, body) = me(later.clone()).await;
    assert_eq!(
        (status, body["error"]["details"]["reason"].as_str()),
        (401, Some("issued_in_future")),
        "{body}"
    );
    clock.set((AT_SECS + 2 * TTL_SECS + 3600) * 1000);
    assert_eq!(me(later).await.0, 200, "good once the clock is there");
    server.shutdown().await;
}

/// An open socket lives on the server's clock too: its session closes `token_expired` (4100)
/// when that clock passes the token's expiry, not before, whatever the wall clock says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_when_the_servers_clock_passes_its_tokens_expiry() {
    let (server, clock) = clocked_server().await;
    let m = Market::create(server.addr, &[100_000], 10, 2, true).await;
    let viewer = TokenKey::new(SECRET).mint(Role::Viewer, "khach-1", AT_SECS, TTL_SECS);
    let mut c = Client::connect(m.addr, &m.show, &viewer, None)
        .await
        .unwrap();
    c.snapshot().await;

    clock.advance(TTL_SECS * 1000 - 1);
    crate::support::quiet_for(std::time::Duration::from_millis(300)).await;
    c.ping().await;
    assert_eq!(c.ended, None, "open a millisecond before the expiry");

    clock.advance(1);
    assert_eq!(
        c.drain_to_end().await,
        crate::support::Ended::Close(Some(4100))
    );
    server.shutdown().await;
}
