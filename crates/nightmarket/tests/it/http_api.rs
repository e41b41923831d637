//! The HTTP API's validation, health endpoints, and graceful shutdown reaching WebSockets.

use crate::support::{
    Client, Ended, Market, TestServer, create_product, create_seller, get, http, http_text, token,
};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::ServerMessage;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_health_and_metrics() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let op = token(Role::Operator, "op");
    assert_eq!(http_text(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, page) = http_text(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("/web/assets/viewer.js"), "{page}");
    // The pages and the protocol client they load are compiled into the server.
    for (path, has) in [
        ("/seller", "/web/assets/seller.js"),
        ("/operator", "/web/assets/operator.js"),
        ("/signin", "/web/assets/signin.js"),
        ("/web/client/nightmarket.js", "/ws/shows/"),
        ("/web/assets/i18n/vi.json", "Mua ngay"),
    ] {
        let (status, body) = http_text(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(has), "{path} lacks {has}");
    }
    // Tests and packages under web/ are not served, nor anything outside it.
    for path in [
        "/web/client/test/client.test.mjs",
        "/web/package.json",
        "/web/../Cargo.toml",
        "/web/assets/../../Cargo.toml",
    ] {
        assert_eq!(http_text(addr, path).await.0, 404, "{path}");
    }
    let ready = crate::support::get_ok(addr, "/readyz").await;
    assert_eq!(ready["ready"], true);
    assert!(
        ready["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "ok")
    );

    let seller = create_seller(addr, &op, "HTX Mật ong Ba Vì").await;
    let (status, s) = get(addr, &format!("/api/sellers/{seller}"), None).await;
    assert_eq!(
        (status, s["name"].as_str()),
        (200, Some("HTX Mật ong Ba Vì"))
    );

    let good = json!({
        "seller_id": seller, "name": "Mật ong hoa nhãn", "group": "food", "stars": 4,
        "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX", "list_price": 250000,
        "origin_document": "GCN-1", "quality_label": "TCCS-1",
    });
    let bad_cases = [
        ("stars", json!(6)),
        ("stars", json!(0)),
        ("group", json!("electronics")),
        ("list_price", json!(0)),
        ("list_price", json!(-1)),
        ("name", json!("   ")),
        ("origin_document", json!("")),
        ("seller_id", json!("nobody")),
    ];
    for (field, value) in bad_cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let (status, err) = http(addr, "POST", "/api/products", Some(&op), Some(&body)).await;
        assert_eq!(status, 400, "{field}={value}: {err}");
        assert_eq!(err["error"]["code"], "bad_request");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{err}"
        );
    }
    let (status, err) = http(
        addr,
        "POST",
        "/api/products",
        Some(&op),
        Some(&json!({"name": 5})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    // A body that does not fit the request names the field and the rule, never serde's text.
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("quality_label");
    let mut wrong = good.clone();
    wrong["stars"] = json!("four");
    for (body, message) in [
        (missing, "quality_label: required"),
        (wrong, "stars: expected i64, got string \"four\""),
    ] {
        let (status, err) = http(addr, "POST", "/api/products", Some(&op), Some(&body)).await;
        assert_eq!(
            (status, err["error"]["message"].as_str()),
            (400, Some(message)),
            "{err}"
        );
    }
    let (status, p) = http(addr, "POST", "/api/products", Some(&op), Some(&good)).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["name"], "Mật ong hoa nhãn");
    let product = p["id"].as_str().unwrap().to_owned();

    let other_seller = create_seller(addr, &op, "Làng gốm Bát Tràng").await;
    let foreign = create_product(addr, &op, &other_seller, "Bình gốm", 500_000).await;
    let show = |lineup: serde_json::Value| json!({"seller_id": seller, "title": "Đêm thứ Sáu", "lineup": lineup});
    let cases = [
        (json!([]), "bad_request"),
        (
            json!([{"product_id": foreign, "stock": 1, "buyer_limit": 1}]),
            "bad_request",
        ),
        (
            json!([{"product_id": "missing", "stock": 1, "buyer_limit": 1}]),
            "unknown_product",
        ),
        (
            json!([{"product_id": product, "stock": -1, "buyer_limit": 1}]),
            "bad_request",
        ),
        (
            json!([{"product_id": product, "stock": 5, "buyer_limit": 0}]),
            "bad_request",
        ),
        (
            json!([{"product_id": product, "stock": 5, "buyer_limit": 1}, {"product_id": product, "stock": 5, "buyer_limit": 1}]),
            "bad_request",
        ),
    ];
    for (lineup, code) in cases {
        let (status, err) = http(
            addr,
            "POST",
            "/api/shows",
            Some(&op),
            Some(&show(lineup.clone())),
        )
        .await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{lineup}: {err}"
        );
    }
    assert_eq!(get(addr, "/api/shows/nope", None).await.0, 404);
    assert_eq!(get(addr, "/api/nothing-here", None).await.0, 404);
    let (status, list) = get(addr, "/api/shows", None).await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(0)));

    let (status, metrics) = http_text(addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "nightmarket_connections",
        "nightmarket_events_fanned_out_total",
        "nightmarket_claims_total",
        "nightmarket_queue_drops_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing from {metrics}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_websocket_clients_to_reconnect() {
    let server = TestServer::start(|_| {}).await;
    let m = Market::create(server.addr, &[100_000], 10, 2, true).await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut c = Client::connect(
            m.addr,
            &m.show,
            &token(Role::Viewer, &format!("k{n}")),
            None,
        )
        .await
        .unwrap();
        c.until(|msg| matches!(msg, ServerMessage::Snapshot(_)).then_some(()))
            .await;
        clients.push(c);
    }
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown drained promptly"
    );
    for mut c in clients {
        assert_eq!(c.drain_to_end().await, Ended::Close(Some(1012)));
    }
}

/// What the server records is stamped by its own clock, which a test moves: sellers, products
/// and shows created, and since when each dependency has been in its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stamped_by_the_servers_clock() {
    // 2026-01-01T00:00:00Z, far from the wall clock.
    const AT: i64 = 1_767_225_600_000;
    let clock = nightmarket_server::clock::ManualClock::new(AT);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_clocked(dir, clock.clone(), |_| {}).await;
    let addr = server.addr;
    let operator = token(Role::Operator, "operator-1");

    let ready = crate::support::get_ok(addr, "/readyz").await;
    for b in ready["backends"].as_array().unwrap() {
        assert_eq!(b["since"], AT, "{b}");
    }
    let seller = create_seller(addr, &operator, "HTX Mật ong Ba Vì").await;
    let (_, body) = get(addr, &format!("/api/sellers/{seller}"), None).await;
    assert_eq!(body["created_at"], AT, "{body}");
    clock.advance(60_000);
    let product = create_product(addr, &operator, &seller, "Mật ong", 250_000).await;
    let (_, body) = get(addr, &format!("/api/products/{product}"), None).await;
    assert_eq!(body["created_at"], AT + 60_000, "{body}");
    let show = json!({"seller_id": seller, "title": "Đêm thứ Sáu",
        "lineup": [{"product_id": product, "stock": 5, "buyer_limit": 1}]});
    let (status, body) = http(addr, "POST", "/api/shows", Some(&operator), Some(&show)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created_at"], AT + 60_000, "{body}");
    server.shutdown().await;
}
