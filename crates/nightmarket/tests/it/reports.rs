//! Reports end to end: two sellers' shows of one market night go live on time, viewers claim
//! over WebSocket at list and flash prices (one claim cancelled live), the shows close and are
//! settled, and the show and night reports come back as JSON and as CSV that add up: the CSV
//! parses back and its column sums are the JSON totals. Authorisation and the pending show are
//! checked over HTTP too.

use crate::csv_exports::parse_csv;
use crate::market::wait_status;
use crate::support::{assert_error, get, post, redis_url};
use crate::support::{eventually, postgres_url};
use std::net::SocketAddr;

use crate::support::{Client, TestServer, create_seller, http, http_raw, token};
use nightmarket_server::auth::Role;
use nightmarket_server::clock::ManualClock;
use nightmarket_server::http::reports::CSV_COLUMNS;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage, ShowEvent};
use serde_json::{Value, json};

/// 2026-11-25 00:00 UTC, a Wednesday: "next Friday" is 2026-11-27.
const WEDNESDAY: i64 = 1_795_564_800_000;
/// 2026-11-27 20:30 in Hanoi (UTC+7) = 13:30 UTC.
const FRIDAY_2030: i64 = 1_795_786_200_000;
const NIGHT: &str = "2026-11-27";
const HONEY: i64 = 250_000;
const HONEY_FLASH: i64 = 200_000;
const TEA: i64 = 120_000;
const VASE: i64 = 400_000;
/// Figures every report carries, summed from the CSV and compared with the JSON: the CSV's
/// columns from `allotted` to `buyers` (before them the show's and product's identity, after
/// them `sell_through`, a ratio).
fn summed() -> &'static [&'static str] {
    let at = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    &CSV_COLUMNS[at("allotted")..=at("buyers")]
}

/// The embedded default: in-memory inventory journaled to SQLite, SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_night_reports_json_and_csv_that_add_up() {
    night_reports(|_| {}).await;
}

/// Distributed mode: the inventory in Redis, the store in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_night_reports_the_same_on_redis_and_postgres() {
    let redis = redis_url();
    let prefix = format!("it{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let database = postgres_url().await;
    night_reports(move |c| {
        c.redis_url = redis;
        c.redis_prefix = prefix;
        c.database_url = database;
    })
    .await;
}

/// An OCOP product with valid documents, admitted to the market.
async fn admitted_product(
    addr: SocketAddr,
    op: &str,
    market: &str,
    seller: &str,
    (name, group, stars, district, price): (&str, &str, i64, &str, i64),
) -> String {
    let doc = |kind: &str, reference: &str| json!({"kind": kind, "reference": reference, "valid_from": "2024-01-01", "valid_until": "2027-12-31"});
    let body = json!({
        "seller_id": seller, "name": name, "group": group, "stars": stars,
        "district": district, "commune": "Tản Lĩnh", "producer": "HTX",
        "list_price": price, "origin_document": "TXNG-000123", "quality_label": "TCCS 01:2024",
        "documents": [doc("ocop_certificate", "OCOP-HN-2024-0412"),
                      doc("origin_proof", "TXNG-000123"), doc("quality_label", "TCCS 01:2024")],
    });
    let (s, p) = post(addr, "/api/products", op, body).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, d) = post(
        addr,
        &format!("/api/markets/{market}/admissions"),
        op,
        json!({"product_id": id, "approved": true}),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    id
}

/// A show of `seller` in a slot of the night; the seller signs the night's commitment first.
async fn schedule(
    addr: SocketAddr,
    op: &str,
    market: &str,
    seller: &str,
    (start, end): (&str, &str),
    lineup: Value,
) -> String {
    let (s, c) = post(
        addr,
        &format!("/api/markets/{market}/nights/{NIGHT}/commitments"),
        &token(Role::Seller, seller),
        json!({"statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố"}),
    )
    .await;
    assert!(s == 201 || s == 200, "{c}");
    let (s, show) = post(
        addr,
        &format!("/api/markets/{market}/nights/{NIGHT}/shows"),
        op,
        json!({"seller_id": seller, "title": "Đặc sản đêm thứ Sáu",
               "slot_start": format!("{NIGHT}T{start}"), "slot_end": format!("{NIGHT}T{end}"),
               "stream_url": "https://www.facebook.com/chodemtrenmay/live", "lineup": lineup}),
    )
    .await;
    assert_eq!(s, 201, "{show}");
    show["id"].as_str().unwrap().to_owned()
}

async fn accepted(c: &mut Client, claim: &str, product: &str, qty: i64, price: i64) {
    let r = c.claim(claim, product, qty, price).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
    assert_eq!(r.unit_price, Some(price));
}

async fn refused(c: &mut Client, claim: &str, product: &str, qty: i64, price: i64) {
    let r = c.claim(claim, product, qty, price).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Refused, "{r:?}");
}

/// Waits for the order service inside `serve` to settle `show`: its report stops answering
/// 409 `not_settled`.
async fn wait_settled(addr: SocketAddr, show: &str, tok: &str) {
    eventually(format!("show {show} settled"), || async {
        let (s, body) = get(addr, &format!("/api/shows/{show}/report"), Some(tok)).await;
        if s == 200 {
            return Ok(());
        }
        assert_error(s, &body, 409, "not_settled");
        Err(body.to_string())
    })
    .await;
}

/// Waits until the latest `viewers` frame says `count` (it may have come already: the frame
/// is conflated and sent only when the count changes).
async fn wait_viewers(c: &mut Client, count: u64) {
    let latest = c.seen.iter().rev().find_map(|m| match m {
        ServerMessage::Viewers(v) => Some(v.count),
        _ => None,
    });
    if latest == Some(count) {
        return;
    }
    c.until(|m| match m {
        ServerMessage::Viewers(v) if v.count == count => Some(()),
        _ => None,
    })
    .await;
}

/// The CSV of `path`: checks the header and returns the rows as column → value maps.
async fn csv(
    addr: SocketAddr,
    path: &str,
    tok: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let (status, text) = http_raw(addr, "GET", path, Some(tok), None).await;
    assert_eq!(status, 200, "{text}");
    // RFC 4180 line ends: CRLF, the last line too.
    assert!(text.ends_with("\r\n"), "{text}");
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "{text}"
    );
    let mut rows = parse_csv(&text).into_iter();
    let header = rows.next().unwrap();
    assert_eq!(header, CSV_COLUMNS);
    rows.map(|r| {
        assert_eq!(r.len(), header.len(), "{r:?}");
        header.iter().cloned().zip(r).collect()
    })
    .collect()
}

fn int(s: &str) -> i64 {
    if s.is_empty() { 0 } else { s.parse().unwrap() }
}

/// Column sums of the settled rows equal the JSON totals, and each row its JSON product line.
fn csv_adds_up(rows: &[std::collections::HashMap<String, String>], report: &Value) {
    let settled: Vec<_> = rows
        .iter()
        .filter(|r| r["settlement"] == "settled")
        .collect();
    let products = report["products"].as_array().unwrap();
    assert_eq!(settled.len(), products.len());
    for (row, line) in settled.iter().zip(products) {
        assert_eq!(row["product_id"], line["product_id"].as_str().unwrap());
        assert_eq!(row["product_name"], line["name"].as_str().unwrap());
        assert_eq!(row["product_group"], line["group"].as_str().unwrap());
        assert_eq!(row["district"], line["district"].as_str().unwrap());
        assert_eq!(row["seller_name"], line["seller_name"].as_str().unwrap());
        assert_eq!(int(&row["stars"]), line["stars"].as_i64().unwrap());
        for &col in summed() {
            assert_eq!(int(&row[col]), line[col].as_i64().unwrap(), "{col}");
        }
        let bp = line["sell_through_bp"].as_i64().unwrap();
        assert_eq!(
            row["sell_through"],
            format!("{}.{:04}", bp / 10_000, bp % 10_000)
        );
    }
    for col in summed().iter().filter(|c| **c != "buyers") {
        let sum: i64 = settled.iter().map(|r| int(&r[*col])).sum();
        assert_eq!(
            sum,
            report["totals"][col].as_i64().unwrap(),
            "CSV sum of {col}"
        );
    }
}

async fn night_reports(backends: impl FnOnce(&mut nightmarket_server::config::Config)) {
    let clock = ManualClock::new(WEDNESDAY);
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.market.tick_ms = 20;
        c.orders.poll_ms = 20;
        c.market.stats_flush_ms = 20;
        backends(c);
    })
    .await;
    let addr = server.addr;
    let op = token(Role::Operator, "ops-hanoi");
    let (s, m) = post(
        addr,
        "/api/markets",
        &op,
        json!({"name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"],
               "start_time": "20:30", "duration_minutes": 150, "first_date": "2026-11-01"}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let market = m["id"].as_str().unwrap().to_owned();

    let a = create_seller(addr, &op, "HTX Mật ong Ba Vì").await;
    let b = create_seller(addr, &op, "Làng gốm Bát Tràng").await;
    let honey = admitted_product(
        addr,
        &op,
        &market,
        &a,
        ("Mật ong hoa nhãn", "food", 4, "Ba Vì", HONEY),
    )
    .await;
    let tea = admitted_product(
        addr,
        &op,
        &market,
        &a,
        ("Trà hoa vàng", "beverages", 5, "Ba Vì", TEA),
    )
    .await;
    let vase = admitted_product(
        addr,
        &op,
        &market,
        &b,
        ("Bình gốm men lam", "handicrafts", 4, "Gia Lâm", VASE),
    )
    .await;
    let show_a = schedule(
        addr,
        &op,
        &market,
        &a,
        ("20:30", "21:00"),
        json!([{"product_id": honey, "stock": 10, "buyer_limit": 5},
               {"product_id": tea, "stock": 20, "buyer_limit": 5}]),
    )
    .await;
    let show_b = schedule(
        addr,
        &op,
        &market,
        &b,
        ("20:30", "21:00"),
        json!([{"product_id": vase, "stock": 4, "buyer_limit": 2}]),
    )
    .await;
    // Later that night, never reached in this test: it stays scheduled and pending.
    let later = schedule(
        addr,
        &op,
        &market,
        &a,
        ("21:30", "22:00"),
        json!([{"product_id": honey, "stock": 10, "buyer_limit": 5}]),
    )
    .await;
    clock.set(FRIDAY_2030);
    wait_status(addr, &show_a, "live").await;
    wait_status(addr, &show_b, "live").await;

    // Show A: honey at list price, then at a flash price; one flash claim cancelled live; tea
    // at list price.
    let seller_a = token(Role::Seller, &a);
    let mut sa = Client::connect(addr, &show_a, &seller_a, None)
        .await
        .unwrap();
    sa.command(json!({"type": "pin", "product_id": honey}), "pin-honey")
        .await
        .unwrap();
    let mut b1 = Client::viewer(addr, &show_a, "buyer-1").await;
    accepted(&mut b1, "b1-h1", &honey, 1, HONEY).await;
    sa.command(
        json!({"type": "start_flash", "product_id": honey, "price": HONEY_FLASH, "duration_s": 600}),
        "flash",
    )
    .await
    .unwrap();
    b1.until(|m| match m {
        ServerMessage::Event(e) => matches!(e.event, ShowEvent::FlashStarted(_)).then_some(()),
        _ => None,
    })
    .await;
    accepted(&mut b1, "b1-h2", &honey, 1, HONEY_FLASH).await;
    let mut b2 = Client::viewer(addr, &show_a, "buyer-2").await;
    accepted(&mut b2, "b2-h1", &honey, 2, HONEY_FLASH).await;
    let mut b3 = Client::viewer(addr, &show_a, "buyer-3").await;
    accepted(&mut b3, "b3-h1", &honey, 1, HONEY_FLASH).await;
    b3.send(json!({"type": "cancel", "claim_id": "b3-h1"}))
        .await;
    b3.until(|m| matches!(m, ServerMessage::CancelResult(_)).then_some(()))
        .await;
    refused(&mut b3, "b3-stale", &honey, 1, HONEY).await;
    sa.command(json!({"type": "end_flash"}), "end")
        .await
        .unwrap();
    sa.command(json!({"type": "pin", "product_id": tea}), "pin-tea")
        .await
        .unwrap();
    accepted(&mut b2, "b2-t1", &tea, 3, TEA).await;

    // Show B: the vase sells out to two buyers, one of them from show A.
    let mut sb = Client::connect(addr, &show_b, &token(Role::Seller, &b), None)
        .await
        .unwrap();
    sb.command(json!({"type": "pin", "product_id": vase}), "pin-vase")
        .await
        .unwrap();
    let mut b1v = Client::viewer(addr, &show_b, "buyer-1").await;
    accepted(&mut b1v, "b1-v1", &vase, 2, VASE).await;
    let mut b4 = Client::viewer(addr, &show_b, "buyer-4").await;
    accepted(&mut b4, "b4-v1", &vase, 2, VASE).await;
    refused(&mut b4, "b4-v2", &vase, 1, VASE).await;
    // A `viewers` frame follows the refresh that sampled that count for the statistics: both
    // audiences are on record before the shows close. Watched from a viewer that was there
    // first: the last to join may have had the count in its snapshot instead, when its join's
    // own refresh sampled it.
    wait_viewers(&mut b1, 3).await;
    wait_viewers(&mut b1v, 2).await;

    // Live: no report yet.
    let report_a = format!("/api/shows/{show_a}/report");
    let (s, e) = get(addr, &report_a, Some(&op)).await;
    assert_error(s, &e, 409, "not_settled");
    for show in [&show_a, &show_b] {
        let (s, body) = http(
            addr,
            "POST",
            &format!("/api/shows/{show}/close"),
            Some(&op),
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    wait_settled(addr, &show_a, &op).await;
    wait_settled(addr, &show_b, &op).await;
    let (_, metrics) = crate::support::http_text(addr, "/metrics").await;
    assert!(
        crate::support::histogram_count(&metrics, "nightmarket_settlement_seconds") >= 2,
        "both settlements timed: {metrics}"
    );
    // The statistics reach the store on the node's next flush.
    let night_path = format!("/api/markets/{market}/nights/{NIGHT}/report");
    eventually("statistics flushed", || async {
        let (_, n) = get(addr, &night_path, Some(&op)).await;
        let figures = (n["refused"].as_u64(), n["peak_viewers"].as_u64());
        (figures == (Some(2), Some(5)))
            .then_some(())
            .ok_or_else(|| n.to_string())
    })
    .await;

    // --- the show report ---------------------------------------------------------------------
    let (s, r) = get(addr, &report_a, Some(&op)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["show_id"], show_a.as_str());
    assert_eq!(r["market_id"], market.as_str());
    assert_eq!(r["night_date"], NIGHT);
    assert_eq!(r["seller_name"], "HTX Mật ong Ba Vì");
    assert_eq!(
        (r["orders"].as_u64(), r["buyers"].as_u64()),
        (Some(2), Some(2))
    );
    let h = &r["products"][0];
    assert_eq!(h["product_id"], honey.as_str());
    // buyer-1: 1 at list, 1 at flash; buyer-2: 2 at flash; buyer-3's claim was cancelled.
    assert_eq!(h["units"], 4);
    assert_eq!(h["revenue"], HONEY + 3 * HONEY_FLASH);
    assert_eq!(h["list_revenue"], 4 * HONEY);
    assert_eq!(h["discount"], 3 * (HONEY - HONEY_FLASH));
    assert_eq!(
        (h["flash_units"].as_i64(), h["flash_revenue"].as_i64()),
        (Some(3), Some(3 * HONEY_FLASH))
    );
    assert_eq!(
        (h["regular_units"].as_i64(), h["regular_revenue"].as_i64()),
        (Some(1), Some(HONEY))
    );
    assert_eq!(
        (h["buyers"].as_i64(), h["sell_through_bp"].as_i64()),
        (Some(2), Some(4_000))
    );
    let t = &r["products"][1];
    assert_eq!(
        (t["units"].as_i64(), t["revenue"].as_i64()),
        (Some(3), Some(3 * TEA))
    );
    assert_eq!(
        (t["flash_units"].as_i64(), t["sell_through_bp"].as_i64()),
        (Some(0), Some(1_500))
    );
    let totals = &r["totals"];
    assert_eq!(totals["allotted"], 30);
    assert_eq!(totals["units"], 7);
    assert_eq!(totals["revenue"], HONEY + 3 * HONEY_FLASH + 3 * TEA);
    assert_eq!(totals["discount"], 3 * (HONEY - HONEY_FLASH));
    // buyer-3's claim at list price during the flash.
    assert_eq!(
        r["refusals"],
        json!([{"reason": "stale_price", "count": 1}])
    );
    assert_eq!(
        (r["refused"].as_u64(), r["peak_viewers"].as_u64()),
        (Some(1), Some(3))
    );
    let rows = csv(addr, &format!("{report_a}?format=csv"), &op).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["show_title"], "Đặc sản đêm thứ Sáu");
    csv_adds_up(&rows, &r);

    // --- the night report --------------------------------------------------------------------
    let (s, n) = get(addr, &night_path, Some(&op)).await;
    assert_eq!(s, 200, "{n}");
    let shows: Vec<&str> = n["shows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["show_id"].as_str().unwrap())
        .collect();
    assert_eq!(shows.len(), 2);
    assert!(shows.contains(&show_a.as_str()) && shows.contains(&show_b.as_str()));
    assert_eq!(n["complete"], false);
    assert_eq!(n["pending"].as_array().unwrap().len(), 1);
    assert_eq!(n["pending"][0]["show_id"], later.as_str());
    assert_eq!(n["pending"][0]["status"], "scheduled");
    assert_eq!(n["pending"][0]["settlement"], "pending");
    // Two shows of two sellers; buyer-1 bought in both and counts once.
    assert_eq!(
        (n["orders"].as_i64(), n["buyers"].as_i64()),
        (Some(4), Some(3))
    );
    assert_eq!(n["totals"]["units"], 11);
    assert_eq!(
        n["totals"]["revenue"],
        totals["revenue"].as_i64().unwrap() + 4 * VASE
    );
    for col in summed().iter().filter(|c| **c != "buyers") {
        let by_show: i64 = n["shows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["totals"][col].as_i64().unwrap())
            .sum();
        assert_eq!(
            by_show,
            n["totals"][col].as_i64().unwrap(),
            "shows add up: {col}"
        );
        for view in ["groups", "districts", "stars", "sellers"] {
            let sum: i64 = n["programme"][view]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g[col].as_i64().unwrap())
                .sum();
            assert_eq!(
                sum,
                n["totals"][col].as_i64().unwrap(),
                "programme {view} adds up: {col}"
            );
        }
    }
    // buyer-4's third vase: its limit of 2 comes before the stock. Both shows' audiences were
    // watching in the same minute.
    assert_eq!(
        n["refusals"],
        json!([{"reason": "limit_exceeded", "count": 1}, {"reason": "stale_price", "count": 1}])
    );
    assert_eq!(n["peak_viewers"], 5);
    let vase_line = n["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["product_id"] == vase.as_str())
        .unwrap();
    assert_eq!(vase_line["sell_through_bp"], 10_000);
    assert_eq!(vase_line["district"], "Gia Lâm");
    let rows = csv(addr, &format!("{night_path}?format=csv"), &op).await;
    assert_eq!(rows.len(), 4, "three products and the pending show");
    csv_adds_up(&rows, &n);
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| r["settlement"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["show_id"], later);
    assert_eq!(pending[0]["units"], "");

    // --- who sees what -----------------------------------------------------------------------
    let (s, own) = get(addr, &night_path, Some(&seller_a)).await;
    assert_eq!(s, 200, "{own}");
    assert_eq!(own["seller_id"], a.as_str());
    assert_eq!(own["shows"].as_array().unwrap().len(), 1);
    assert_eq!(own["pending"].as_array().unwrap().len(), 1);
    assert_eq!(own["totals"], r["totals"]);
    let seller_b = token(Role::Seller, &b);
    let (s, _) = get(
        addr,
        &format!("/api/shows/{show_b}/report"),
        Some(&seller_b),
    )
    .await;
    assert_eq!(s, 200);
    for (path, tok, want) in [
        (report_a.clone(), Some(seller_b.clone()), 403),
        (report_a.clone(), Some(token(Role::Viewer, "buyer-1")), 403),
        (
            night_path.clone(),
            Some(token(Role::Viewer, "buyer-1")),
            403,
        ),
        (report_a.clone(), None, 401),
        (format!("{report_a}?format=xlsx"), Some(op.clone()), 400),
        (
            "/api/shows/no-such-show/report".to_owned(),
            Some(op.clone()),
            404,
        ),
        (format!("/api/shows/{later}/report"), Some(op.clone()), 409),
        (
            format!("/api/markets/{market}/nights/27-11-2026/report"),
            Some(op.clone()),
            400,
        ),
        (
            format!("/api/markets/no-such-market/nights/{NIGHT}/report"),
            Some(op.clone()),
            404,
        ),
    ] {
        let (s, body) = get(addr, &path, tok.as_deref()).await;
        assert_eq!(s, want, "GET {path}: {body}");
    }
    server.shutdown().await;
}
