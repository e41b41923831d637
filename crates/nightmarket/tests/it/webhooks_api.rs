//! Webhooks over the API are not a way in: private targets are refused unless allowed, and a
//! redelivery names the webhook its delivery belongs to.

use crate::support::{TestServer, get, http, token};
use nightmarket_server::auth::Role;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let server = TestServer::start(|c| c.webhooks.allow_private_targets = false).await;
    let op = token(Role::Operator, "office");
    for url in [
        "http://127.0.0.1:9000/hooks",
        "http://localhost:9000/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/hooks",
        "https://[::1]/hooks",
    ] {
        let (status, e) = http(
            server.addr,
            "POST",
            "/api/webhooks",
            Some(&op),
            Some(&json!({"url": url, "events": ["*"]})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("allow_private_targets"), "{message}");
    }
    let (status, w) = http(
        server.addr,
        "POST",
        "/api/webhooks",
        Some(&op),
        Some(&json!({"url": "https://hooks.example.vn/nightmarket", "events": ["show.live"]})),
    )
    .await;
    assert_eq!(status, 201, "an HTTPS receiver on a public name: {w}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_belongs_to_its_webhook() {
    // The test configuration allows loopback receivers.
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let op = token(Role::Operator, "office");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, w) = http(
            addr,
            "POST",
            "/api/webhooks",
            Some(&op),
            Some(&json!({"url": "http://127.0.0.1:9/none", "events": ["*"]})),
        )
        .await;
        assert_eq!(status, 201, "{w}");
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    // An event for both: create a show and take it live.
    crate::support::Market::create(addr, &[100_000], 5, 1, true).await;
    let deliveries = |id: String| async move {
        let path = format!("/api/webhooks/{id}/deliveries");
        crate::support::eventually(format!("a delivery for webhook {id}"), || async {
            let tok = token(Role::Operator, "office");
            let (_, list) = get(addr, &path, Some(&tok)).await;
            let first = list.as_array().and_then(|l| l.first());
            first
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .ok_or(list.to_string())
        })
        .await
    };
    // Delivery ids are `<event id>/<webhook id>`: a path segment carries them encoded.
    let of_first = deliveries(ids[0].clone()).await.replace('/', "%2F");
    let wrong = format!("/api/webhooks/{}/deliveries/{of_first}/redeliver", ids[1]);
    let (status, e) = http(addr, "POST", &wrong, Some(&op), None).await;
    assert_eq!(status, 404, "through another webhook: {e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of webhook"),
        "{e}"
    );
    let right = format!("/api/webhooks/{}/deliveries/{of_first}/redeliver", ids[0]);
    let (status, e) = http(addr, "POST", &right, Some(&op), None).await;
    assert_eq!(status, 202, "{e}");
    server.shutdown().await;
}
