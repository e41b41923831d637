//! Orders end to end: two sellers' shows in one market night, buyers claiming over the
//! WebSocket, the shows closed and settled by the order service the server runs; buyers read
//! their orders and checkouts, sellers what they fulfil (JSON and CSV), each role moves orders
//! as far as it may, the payment desk confirms a night's checkout at once, and an order nobody
//! paid is cancelled when the manual clock passes its deadline.

use crate::csv_exports::parse_csv;
use crate::market::{market_server, on_database};
use crate::support::{eventually, postgres_url};
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::support::{Client, http, http_full, post, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::orders::ORDER_CSV_HEADER;
use nightmarket_wire::server::ClaimOutcomeKind;
use serde_json::{Value, json};

use crate::market::{FRIDAY_2030, MINUTE, WEDNESDAY, scheduled_seller, wait_status};

const PRICE: i64 = 120_000;
const WINDOW_MS: i64 = 24 * 3_600_000;
const NIGHT: &str = "2026-11-27";
/// A name a CSV export must quote.
const HONEY: &str = "Mật ong \"Ba Vì\", hoa nhãn";

async fn get(addr: SocketAddr, path: &str, tok: &str) -> (u16, Value) {
    http(addr, "GET", path, Some(tok), None).await
}

async fn move_to(addr: SocketAddr, order: &str, tok: &str, body: Value) -> (u16, Value) {
    post(addr, &format!("/api/orders/{order}/status"), tok, body).await
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect()
}

/// Connects as `buyer` to `show` and claims `quantity` of `product` at the list price.
async fn claim(
    addr: SocketAddr,
    show: &str,
    buyer: &str,
    product: &str,
    claim_id: &str,
    quantity: i64,
) {
    let mut c = Client::connect(addr, show, &token(Role::Viewer, buyer), None)
        .await
        .unwrap();
    let r = c.claim(claim_id, product, quantity, PRICE).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
    assert_eq!(r.unit_price, Some(PRICE));
    c.close().await;
}

/// Polls `path` until `done` holds; the last answer.
async fn get_when(addr: SocketAddr, path: &str, tok: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(path, || async {
        let (s, v) = get(addr, path, tok).await;
        if s == 200 && done(&v) {
            Ok(v)
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await
}

async fn orders_of_a_night(database_url: Option<String>) {
    let (server, clock, addr, op, market) = market_server(WEDNESDAY, |c| {
        c.orders.sweep_ms = 20;
        c.orders.payment_window_ms = WINDOW_MS as u64;
        on_database(database_url)(c);
    })
    .await;

    // Two sellers with one admitted product each, scheduled in the same night.
    let mut sellers = Vec::new();
    for (name, product_name) in [("HTX Ba Vì", HONEY), ("HTX Suối Giàng", "Trà shan tuyết")]
    {
        sellers.push(scheduled_seller(addr, &op, &market, name, product_name).await);
    }
    let [(seller_a, honey, show_a), (seller_b, tea, show_b)] = <[_; 2]>::try_from(sellers).unwrap();
    let (tok_a, tok_b) = (
        token(Role::Seller, &seller_a),
        token(Role::Seller, &seller_b),
    );

    // The night opens; each seller pins; buyers claim over the WebSocket.
    clock.set(FRIDAY_2030);
    wait_status(addr, &show_a, "live").await;
    wait_status(addr, &show_b, "live").await;
    for (show, tok, p) in [(&show_a, &tok_a, &honey), (&show_b, &tok_b, &tea)] {
        let mut s = Client::connect(addr, show, tok, None).await.unwrap();
        s.command(json!({"type": "pin", "product_id": p}), "pin")
            .await
            .unwrap();
        s.close().await;
    }
    claim(addr, &show_a, "b1", &honey, "b1-honey", 2).await;
    claim(addr, &show_a, "b2", &honey, "b2-honey", 1).await;
    claim(addr, &show_b, "b1", &tea, "b1-tea", 1).await;
    claim(addr, &show_b, "b3", &tea, "b3-tea", 1).await;
    // Before the slot ends, so the sellers' close is not raced by the market's.
    let settled_at = FRIDAY_2030 + 10 * MINUTE;
    clock.set(settled_at);
    for show in [&show_a, &show_b] {
        let (s, v) = post(addr, &format!("/api/shows/{show}/close"), &op, json!({})).await;
        assert_eq!(s, 200, "{v}");
    }

    let (b1, b2, b3) = (
        token(Role::Viewer, "b1"),
        token(Role::Viewer, "b2"),
        token(Role::Viewer, "b3"),
    );
    // The order service the server runs settles both shows.
    get_when(addr, "/api/me/orders", &b1, |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    get_when(addr, "/api/me/orders", &b3, |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let (a1, a2) = (format!("o~{show_a}~b1"), format!("o~{show_a}~b2"));
    let (tb1, tb3) = (format!("o~{show_b}~b1"), format!("o~{show_b}~b3"));
    let checkout1 = format!("c~{market}~{NIGHT}~b1");

    // A buyer sees their own orders, with lines; nobody else's.
    let (s, mine) = get(addr, "/api/me/orders", &b1).await;
    assert_eq!(s, 200, "{mine}");
    let mut want = vec![a1.as_str(), tb1.as_str()];
    want.sort();
    assert_eq!(ids(&mine), want);
    let honey_order = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == a1.as_str())
        .unwrap();
    assert_eq!(honey_order["status"], "pending_payment");
    assert_eq!(honey_order["total"], 2 * PRICE);
    assert_eq!(honey_order["lines"][0]["name"], HONEY);
    assert_eq!(honey_order["lines"][0]["quantity"], 2);
    assert_eq!(honey_order["pay_by"], settled_at + WINDOW_MS);
    // Pages of one: the first names the next in `Next-Cursor`.
    let (s, headers, first) =
        crate::support::http_full(addr, "GET", "/api/me/orders?limit=1", Some(&b1), &[], None)
            .await;
    assert_eq!(s, 200, "{first}");
    let next = headers
        .iter()
        .find(|(k, _)| k == "next-cursor")
        .map(|(_, v)| v.clone())
        .unwrap();
    let (s, page) = get(addr, &format!("/api/me/orders?limit=1&cursor={next}"), &b1).await;
    assert_eq!((s, ids(&page)), (200, vec![want[1]]));
    let (s, v) = get(addr, "/api/me/orders?limit=0", &b1).await;
    assert_eq!((s, code(&v)), (400, "bad_request"));
    let (s, v) = get(addr, "/api/me/orders", &tok_a).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, detail) = get(addr, &format!("/api/orders/{a1}"), &b1).await;
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["lines"][0]["proof"]["name"], HONEY);
    assert_eq!(
        detail["lines"][0]["proof"]["documents"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(detail["history"][0]["to"], "pending_payment");
    assert_eq!(detail["history"][0]["actor"], "order-service");
    for (who, tok) in [("another buyer", &b2), ("another seller", &tok_b)] {
        let (s, v) = get(addr, &format!("/api/orders/{a1}"), tok).await;
        assert_eq!((s, code(&v)), (404, "not_found"), "{who}");
    }
    assert_eq!(get(addr, &format!("/api/orders/{a1}"), &tok_a).await.0, 200);
    assert_eq!(get(addr, &format!("/api/orders/{a1}"), &op).await.0, 200);

    // The night's checkout: both sellers' orders, one total.
    let (s, checkouts) = get(addr, "/api/me/checkouts", &b1).await;
    assert_eq!(s, 200, "{checkouts}");
    assert_eq!(ids(&checkouts), [checkout1.as_str()]);
    let c = &checkouts[0];
    assert_eq!(c["market_id"], market.as_str());
    assert_eq!(c["night_date"], NIGHT);
    assert_eq!(c["total"], 3 * PRICE);
    assert_eq!(c["due"], 3 * PRICE);
    assert_eq!(c["orders"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(addr, &format!("/api/checkouts/{checkout1}"), &b1)
            .await
            .0,
        200
    );
    assert_eq!(
        get(addr, &format!("/api/checkouts/{checkout1}"), &b2)
            .await
            .0,
        404
    );
    assert_eq!(
        get(addr, &format!("/api/checkouts/{checkout1}"), &tok_a)
            .await
            .0,
        403
    );

    // Sellers: their own orders per show and per night; operators: all, or one seller's.
    let (s, v) = get(addr, &format!("/api/shows/{show_a}/orders"), &tok_a).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), [a1.as_str(), a2.as_str()]);
    let (s, v) = get(addr, &format!("/api/shows/{show_a}/orders"), &tok_b).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, v) = get(addr, &format!("/api/shows/{show_a}/orders"), &b1).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let night = format!("/api/markets/{market}/nights/{NIGHT}/orders");
    let (s, v) = get(addr, &night, &tok_b).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), [tb1.as_str(), tb3.as_str()]);
    let (s, v) = get(addr, &format!("{night}?seller={seller_a}"), &tok_b).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, all) = get(addr, &night, &op).await;
    assert_eq!((s, all.as_array().unwrap().len()), (200, 4));
    let (_, only_b) = get(addr, &format!("{night}?seller={seller_b}"), &op).await;
    assert_eq!(ids(&only_b), [tb1.as_str(), tb3.as_str()]);
    let (s, v) = get(
        addr,
        &format!("/api/markets/{market}/nights/27-11-2026/orders"),
        &op,
    )
    .await;
    assert_eq!((s, code(&v)), (400, "bad_request"));
    let (s, v) = get(
        addr,
        &format!("/api/markets/nowhere/nights/{NIGHT}/orders"),
        &op,
    )
    .await;
    assert_eq!((s, code(&v)), (404, "not_found"));

    // CSV: one row per line, parses back, sums to the order totals, names intact.
    let (s, headers, csv) = http_full(
        addr,
        "GET",
        &format!("{night}?format=csv"),
        Some(&op),
        &[],
        None,
    )
    .await;
    assert_eq!(s, 200, "{csv}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/csv"))
    );
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], ORDER_CSV_HEADER);
    assert_eq!(rows.len(), 5, "{csv}");
    let mut sums: HashMap<String, i64> = HashMap::new();
    for r in &rows[1..] {
        let (qty, unit, line): (i64, i64, i64) = (
            r[5].parse().unwrap(),
            r[6].parse().unwrap(),
            r[8].parse().unwrap(),
        );
        assert_eq!(qty * unit, line);
        *sums.entry(r[0].clone()).or_default() += line;
    }
    for o in all.as_array().unwrap() {
        assert_eq!(
            sums[o["id"].as_str().unwrap()],
            o["total"].as_i64().unwrap()
        );
    }
    assert!(rows.iter().any(|r| r[4] == HONEY));
    let (s, _, csv) = http_full(
        addr,
        "GET",
        &format!("/api/shows/{show_a}/orders"),
        Some(&tok_a),
        &[("Accept", "text/csv")],
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(parse_csv(&csv).len(), 3, "{csv}");
    let (s, v) = get(addr, &format!("{night}?format=xml"), &op).await;
    assert_eq!((s, code(&v)), (400, "bad_request"));

    // The status path, role by role.
    let paid = json!({"to": "paid"});
    let (s, v) = move_to(addr, &a1, &b1, paid.clone()).await;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden"),
        "payment is not self-declared"
    );
    let (s, v) = move_to(addr, &a1, &tok_a, json!({"to": "shipped"})).await;
    assert_eq!(
        (s, code(&v)),
        (409, "bad_order_transition"),
        "unpaid is not shipped"
    );
    let (s, v) = move_to(addr, &a1, &tok_b, json!({"to": "shipped"})).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "another seller's order");
    let (s, v) = move_to(addr, &a1, &b2, json!({"to": "cancelled"})).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "another buyer's order");
    let (s, v) = move_to(addr, &a1, &op, json!({"to": "lost"})).await;
    assert_eq!((s, code(&v)), (400, "bad_request"));

    // The payment desk confirms the night at once; a wrong amount pays nothing.
    let pay = format!("/api/checkouts/{checkout1}/pay");
    let (s, v) = post(addr, &pay, &tok_a, json!({})).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, v) = post(addr, &pay, &op, json!({"amount": PRICE})).await;
    assert_eq!((s, code(&v)), (409, "amount_mismatch"));
    let (s, v) = post(addr, &pay, &op, json!({"amount": 3 * PRICE})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["due"], 0);
    assert_eq!(v["total"], 3 * PRICE);
    assert!(
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "paid")
    );
    let (s, _, body) = http_full(addr, "POST", &pay, Some(&op), &[], None).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("bad_order_transition"), "{body}");

    let (s, v) = move_to(addr, &a1, &b1, json!({"to": "cancelled"})).await;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden"),
        "a paid order is refunded by operators"
    );
    let (s, v) = move_to(addr, &a1, &tok_a, json!({"to": "shipped"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "shipped");
    let (s, v) = move_to(addr, &a1, &tok_a, json!({"to": "delivered"})).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(3)));
    let (s, v) = move_to(addr, &a1, &op, json!({"to": "cancelled"})).await;
    assert_eq!((s, code(&v)), (409, "bad_order_transition"));
    let (_, d) = get(addr, &format!("/api/orders/{a1}"), &b1).await;
    let path: Vec<(&str, &str)> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    let seller_actor = format!("seller:{seller_a}");
    assert_eq!(
        path,
        [
            ("pending_payment", "order-service"),
            ("paid", "operator:ops-hanoi"),
            ("shipped", seller_actor.as_str()),
            ("delivered", seller_actor.as_str()),
        ]
    );

    // A buyer cancels their own unpaid order, with a reason; it no longer counts.
    let (s, v) = move_to(
        addr,
        &a2,
        &b2,
        json!({"to": "cancelled", "reason": "Đặt nhầm"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["history"][1]["reason"], "Đặt nhầm");
    assert_eq!(v["history"][1]["actor"], "viewer:b2");
    let (_, c2) = get(addr, "/api/me/checkouts", &b2).await;
    assert_eq!(
        (c2[0]["total"].as_i64(), c2[0]["due"].as_i64()),
        (Some(0), Some(0))
    );

    // Nobody paid b3's order: cancelled by the system once its deadline passes, not before.
    clock.set(settled_at + WINDOW_MS - 1);
    // A window in which a sweep (every `fast` tick) would wrongly cancel it.
    crate::support::quiet_for(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        get(addr, &format!("/api/orders/{tb3}"), &b3).await.1["status"],
        "pending_payment"
    );
    clock.set(settled_at + WINDOW_MS);
    let d = get_when(addr, &format!("/api/orders/{tb3}"), &b3, |d| {
        d["status"] == "cancelled"
    })
    .await;
    let last = &d["history"][1];
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("system"), Some("payment_deadline"))
    );
    assert_eq!(last["at"], settled_at + WINDOW_MS);
    for o in [&a1, &tb1] {
        let (_, d) = get(addr, &format!("/api/orders/{o}"), &op).await;
        assert_ne!(d["status"], "cancelled", "{o} was paid");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_of_a_night_on_sqlite() {
    orders_of_a_night(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_of_a_night_on_postgres() {
    orders_of_a_night(Some(postgres_url().await)).await;
}
