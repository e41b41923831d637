//! Two server processes on one PostgreSQL store and one Redis race the same scheduled show to
//! its slot start: exactly one transition is recorded and exactly one signed `show.live`
//! webhook is delivered. Real time, real processes.

use crate::support::eventually;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{ChildServer, create_seller, get, http, now_secs, quiet_for, token};
use nightmarket_server::auth::Role;
use nightmarket_server::jobs::webhooks::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    body: String,
    signature: String,
}

/// A webhook receiver on loopback: records every request and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let len: usize = header("content-length").parse().unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    sink.lock().unwrap().push(Received {
                        event: header(EVENT_HEADER),
                        delivery: header(DELIVERY_HEADER),
                        body: body[..len].to_owned(),
                        signature: header(SIGNATURE_HEADER),
                    });
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, got)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_race_one_transition_and_one_webhook() {
    let db = {
        let url = nightmarket_store::testing::test_database_url().unwrap();
        nightmarket_store::testing::fresh_database(&url)
            .await
            .unwrap()
    };
    let redis = std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test");
    let prefix = format!("mk{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("NIGHTMARKET_DATABASE_URL", db.as_str()),
        ("NIGHTMARKET_REDIS_URL", redis.as_str()),
        ("NIGHTMARKET_REDIS_PREFIX", prefix.as_str()),
        ("NIGHTMARKET_MARKET_TICK_MS", "25"),
        ("NIGHTMARKET_WEBHOOKS_POLL_MS", "50"),
    ];
    let [(a, _a_dir), (b, _b_dir)] = ChildServer::two(EXE, &env).await;
    let op = token(Role::Operator, "ops");
    let post = |addr, path: String, body: Value| {
        let op = op.clone();
        async move { http(addr, "POST", &path, Some(&op), Some(&body)).await }
    };

    let (hook_url, received) = receiver().await;
    let (s, hook) = post(
        a.addr,
        "/api/webhooks".into(),
        json!({"url": hook_url, "events": ["*"]}),
    )
    .await;
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // A market meeting every day, whose night began a few minutes ago (UTC, whole minutes).
    let now_ms = now_secs() * 1000;
    let start = jiff::Timestamp::from_millisecond(now_ms - 5 * 60_000)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    let (s, market) = post(
        a.addr,
        "/api/markets".into(),
        json!({
        "name": "Chợ đêm mỗi ngày", "time_zone": "UTC",
        "weekdays": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
        "start_time": start.strftime("%H:%M").to_string(), "duration_minutes": 60,
        "first_date": "2026-01-01"}),
    )
    .await;
    assert_eq!(s, 201, "{market}");
    let market = market["id"].as_str().unwrap().to_owned();
    let (_, nights) = get(
        a.addr,
        &format!("/api/markets/{market}/nights?after={now_ms}&limit=1"),
        None,
    )
    .await;
    let night = nights[0]["date"].as_str().unwrap().to_owned();

    let seller = create_seller(a.addr, &op, "HTX Đua").await;
    let product = {
        let docs = json!([
            {"kind": "ocop_certificate", "reference": "A", "valid_from": "2020-01-01", "valid_until": "2099-12-31"},
            {"kind": "origin_proof", "reference": "B", "valid_from": "2020-01-01", "valid_until": "2099-12-31"},
            {"kind": "quality_label", "reference": "C", "valid_from": "2020-01-01", "valid_until": "2099-12-31"},
        ]);
        let (s, p) = post(a.addr, "/api/products".into(), json!({
            "seller_id": seller, "name": "Bánh cốm", "group": "food", "stars": 4, "district": "Cầu Giấy",
            "commune": "Dịch Vọng", "producer": "Làng Vòng", "list_price": 80000,
            "origin_document": "B", "quality_label": "C", "documents": docs})).await;
        assert_eq!(s, 201, "{p}");
        p["id"].as_str().unwrap().to_owned()
    };
    let (s, _) = post(
        a.addr,
        format!("/api/markets/{market}/admissions"),
        json!({"product_id": product, "approved": true}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = http(
        a.addr,
        "POST",
        &format!("/api/markets/{market}/nights/{night}/commitments"),
        Some(&token(Role::Seller, &seller)),
        Some(&json!({"statement": "Cam kết chất lượng"})),
    )
    .await;
    assert_eq!(s, 201);
    let slot_start = now_secs() * 1000 + 3_000;
    let (s, show) = post(a.addr, format!("/api/markets/{market}/nights/{night}/shows"), json!({
        "seller_id": seller, "title": "Đua", "slot_start": rfc3339(slot_start), "slot_end": rfc3339(slot_start + 60_000),
        "stream_url": "https://www.tiktok.com/@chodem/live",
        "lineup": [{"product_id": product, "stock": 10, "buyer_limit": 1}]})).await;
    assert_eq!(s, 201, "{show}");
    let show = show["id"].as_str().unwrap().to_owned();

    // Both nodes race the slot start.
    eventually("the show live", || async {
        let (_, v) = get(b.addr, &format!("/api/shows/{show}"), None).await;
        (v["status"] == "live").then_some(()).ok_or(v.to_string())
    })
    .await;
    // The inventory decides the transition before the store records it, so the show can read
    // live a moment before its transition log says so: wait for the record, then give a second
    // (wrong) one time to appear.
    let lives = || async {
        let (_, log) = get(a.addr, &format!("/api/shows/{show}/transitions"), None).await;
        let n = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["to"] == "live")
            .count();
        (n, log)
    };
    eventually("the live transition recorded", || async {
        let (n, log) = lives().await;
        (n > 0).then_some(()).ok_or(log.to_string())
    })
    .await;
    // A window in which a second (wrong) transition would appear.
    quiet_for(Duration::from_millis(300)).await;
    let (n, log) = lives().await;
    assert_eq!(n, 1, "{log}");

    // Exactly one signed show.live delivery (and one show.scheduled).
    eventually("show.live delivered", || async {
        let got = received.lock().unwrap().clone();
        let live = got.iter().any(|r| r.event == "show.live");
        live.then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
    // A window in which a second (wrong) delivery would show up.
    quiet_for(Duration::from_millis(500)).await;
    let got = received.lock().unwrap().clone();
    for event in ["show.scheduled", "show.live"] {
        let of: Vec<&Received> = got.iter().filter(|r| r.event == event).collect();
        assert_eq!(of.len(), 1, "{event}: {got:?}");
        let r = of[0];
        verify(&secret, &r.signature, r.body.as_bytes(), now_secs(), 300).unwrap();
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], event);
        assert_eq!(body["show"]["id"], show.as_str());
        assert!(r.delivery.starts_with(&format!("{event}:{show}")));
    }
    a.kill().await;
    b.kill().await;
}
