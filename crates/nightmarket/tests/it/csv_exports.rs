//! Both CSV exports (a show's report and its orders to fulfil) read back by the `csv` crate's
//! reader, the way a spreadsheet import would: a product named like a formula arrives as text
//! (a leading `'`), and a name with quotes, a comma and Vietnamese diacritics arrives intact,
//! in its own column. (Names refuse line breaks and other control characters; the writer's
//! quoting of line breaks is unit-tested in `csv_table`.)

use crate::market::market_server;
use crate::support::eventually;
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::support::{Client, http_raw, post, token};
use nightmarket_server::auth::Role;
use nightmarket_server::http::reports::CSV_COLUMNS;
use nightmarket_wire::orders::ORDER_CSV_HEADER;
use nightmarket_wire::server::ClaimOutcomeKind;
use serde_json::json;

use crate::market::{FRIDAY_2030, MINUTE, WEDNESDAY, scheduled_seller, wait_status};

/// The list price `market::product` gives every product.
const PRICE: i64 = 120_000;

/// A formula a spreadsheet would run if the cell were not guarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_starting_with_a_formula_reads_back_as_text() {
    let name = "=HYPERLINK(\"http://evil.example\",\"Mật ong\")";
    exports_read_back(name, &format!("'{name}")).await;
}

/// Quotes, a comma and diacritics: quoted, doubled, kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_quotes_commas_and_diacritics_reads_back_intact() {
    let name = "Mật ong \"Ba Vì\", hoa nhãn, chai 500 ml – Đặc sản";
    exports_read_back(name, name).await;
}

/// Every record of a CSV text (the header first), parsed by the `csv` crate (RFC 4180: quoted
/// fields may hold commas, doubled quotes and line breaks); every record as wide as the first.
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The CSV at `path`: its header and rows.
async fn read_csv(addr: SocketAddr, path: &str, tok: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let (s, text) = http_raw(addr, "GET", path, Some(tok), None).await;
    assert_eq!(s, 200, "{text}");
    let mut rows = parse_csv(&text);
    let header = rows.remove(0);
    (header, rows)
}

fn column(header: &[String], row: &[String], name: &str) -> String {
    let i = header.iter().position(|h| h == name).unwrap();
    row[i].clone()
}

/// One show selling a product called `name`, settled; both exports must give `want` as the
/// product's cell and every other column as the JSON says.
async fn exports_read_back(name: &str, want: &str) {
    let (_server, clock, addr, op, market) =
        market_server(WEDNESDAY, |c| c.orders.poll_ms = 20).await;
    let (seller, p, show) = scheduled_seller(addr, &op, &market, "HTX Mật ong Ba Vì", name).await;

    clock.set(FRIDAY_2030);
    wait_status(addr, &show, "live").await;
    let seller_tok = token(Role::Seller, &seller);
    let mut s = Client::connect(addr, &show, &seller_tok, None)
        .await
        .unwrap();
    s.command(json!({"type": "pin", "product_id": p}), "pin")
        .await
        .unwrap();
    s.close().await;
    let mut buyer = Client::connect(addr, &show, &token(Role::Viewer, "b1"), None)
        .await
        .unwrap();
    let r = buyer.claim("b1-c1", &p, 2, PRICE).await;
    assert_eq!(r.outcome, ClaimOutcomeKind::Accepted, "{r:?}");
    buyer.close().await;
    clock.set(FRIDAY_2030 + 10 * MINUTE);
    let (s, v) = post(addr, &format!("/api/shows/{show}/close"), &op, json!({})).await;
    assert_eq!(s, 200, "{v}");

    // The order service settles the show; its report answers 409 until then.
    let report = format!("/api/shows/{show}/report");
    eventually(format!("show {show} settled"), || async {
        let (s, body) = http_raw(addr, "GET", &report, Some(&op), None).await;
        (s == 200).then_some(()).ok_or(body)
    })
    .await;

    let (header, rows) = read_csv(addr, &format!("{report}?format=csv"), &seller_tok).await;
    assert_eq!(header, CSV_COLUMNS);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(column(&header, row, "product_name"), want);
    assert_eq!(column(&header, row, "product_id"), p);
    assert_eq!(column(&header, row, "units"), "2");
    assert_eq!(column(&header, row, "revenue"), (2 * PRICE).to_string());
    assert_eq!(column(&header, row, "seller_name"), "HTX Mật ong Ba Vì");

    let orders = format!("/api/shows/{show}/orders?format=csv");
    let (header, rows) = read_csv(addr, &orders, &seller_tok).await;
    assert_eq!(header, ORDER_CSV_HEADER);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row: HashMap<&str, &str> = header
        .iter()
        .map(String::as_str)
        .zip(rows[0].iter().map(String::as_str))
        .collect();
    assert_eq!(row["product"], want);
    assert_eq!(row["product_id"], p);
    assert_eq!(row["buyer_id"], "b1");
    assert_eq!(row["quantity"], "2");
    assert_eq!(row["line_total"], (2 * PRICE).to_string());
}
