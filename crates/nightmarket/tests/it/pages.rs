//! Every list endpoint pages the same way: `limit` and an opaque `cursor`, the JSON array as
//! the body and `Next-Cursor` while more follow. Walking the pages yields every item once, in
//! the listing's order, even with inserts between two page reads; a cursor that is not the
//! list's own is `bad_cursor`, a limit out of range `bad_request`.

use std::net::SocketAddr;

use crate::support::{Market, TestServer, create_seller, http_full, post, token};
use nightmarket_server::auth::Role;
use nightmarket_server::clock::ManualClock;
use nightmarket_server::http::page::MAX_PAGE_SIZE;
use serde_json::{Value, json};

use crate::market::{WEDNESDAY, admit, commit, docs, fast, market, product, schedule};

/// Items per page while walking: small, so every list below spans several pages.
const SMALL: usize = 2;
/// Pages read of the open-ended night calendar.
const NIGHT_PAGES: usize = 3;

/// One page: status, items and the `Next-Cursor` header.
async fn page(addr: SocketAddr, path: &str, tok: Option<&str>) -> (u16, Value, Option<String>) {
    let (status, headers, body) = http_full(addr, "GET", path, tok, &[], None).await;
    let next = headers
        .into_iter()
        .find(|(k, _)| k == "next-cursor")
        .map(|(_, v)| v);
    (status, serde_json::from_str(&body).unwrap(), next)
}

fn with(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// Every page of `path`, `limit` items a page, at most `pages` pages; `between` runs after
/// each page read but the last.
async fn walk(
    addr: SocketAddr,
    path: &str,
    tok: Option<&str>,
    limit: usize,
    pages: usize,
    mut between: impl AsyncFnMut(usize),
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for n in 0..pages {
        let mut q = format!("limit={limit}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (status, body, next) = page(addr, &with(path, &q), tok).await;
        assert_eq!(status, 200, "{path} page {n}: {body}");
        let got = body.as_array().unwrap();
        assert!(got.len() <= limit, "{path}: a page holds at most its limit");
        if next.is_some() {
            assert_eq!(got.len(), limit, "{path}: only the last page is short");
        }
        items.extend(got.iter().cloned());
        match next {
            Some(c) => cursor = Some(c),
            None => return items,
        }
        between(n).await;
    }
    items
}

/// Walks `path` in pages of [`SMALL`] and checks the walk against the whole list in one page:
/// the same items in the same order, each once, and more than one page of them.
async fn pages_match_the_whole(addr: SocketAddr, path: &str, tok: Option<&str>, key: &str) {
    let (status, whole, next) = page(addr, &with(path, "limit=1000"), tok).await;
    assert_eq!(status, 200, "{path}: {whole}");
    assert_eq!(next, None, "{path}: one page holds it all, and says so");
    let whole = whole.as_array().unwrap().clone();
    assert!(
        whole.len() > SMALL,
        "{path}: {} items, not several pages",
        whole.len()
    );
    let walked = walk(addr, path, tok, SMALL, usize::MAX, async |_| {}).await;
    let keys = |v: &[Value]| v.iter().map(|i| i[key].to_string()).collect::<Vec<_>>();
    assert_eq!(
        keys(&walked),
        keys(&whole),
        "{path}: pages in order, each item once"
    );
    let mut unique = keys(&walked);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), walked.len(), "{path}: no item twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_walks_in_pages() {
    let clock = ManualClock::new(WEDNESDAY);
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), fast).await;
    let addr = server.addr;
    let op = token(Role::Operator, "ops");
    let m = market(addr, &op).await;
    for _ in 0..SMALL {
        market(addr, &op).await;
    }
    let mut sellers = Vec::new();
    for n in 0..=SMALL {
        sellers.push(create_seller(addr, &op, &format!("HTX {n}")).await);
    }
    let a = &sellers[0];
    let mut products = Vec::new();
    for n in 0..=SMALL {
        let p = product(addr, &op, a, &format!("Chè {n}"), 4, docs("2027-12-31")).await;
        admit(addr, &op, &m, &p).await;
        products.push(p);
    }
    for s in &sellers {
        commit(addr, &m, s, "2026-11-27").await;
    }
    for (n, (start, end)) in [("20:30", "21:00"), ("21:00", "21:30"), ("21:30", "22:00")]
        .into_iter()
        .enumerate()
    {
        let (s, show) = schedule(addr, &op, &m, (a, &products[n]), (start, end)).await;
        assert_eq!(s, 201, "{show}");
    }
    for (n, p) in products.iter().enumerate() {
        let item = json!({"product_id": p, "stock": 5, "buyer_limit": 1});
        let (s, set) = post(
            addr,
            &format!("/api/sellers/{a}/lineup-sets"),
            &op,
            json!({"name": format!("Bộ {n}"), "items": [item]}),
        )
        .await;
        assert_eq!(s, 201, "{set}");
    }
    for date in ["2026-12-04", "2026-12-11", "2026-12-18"] {
        let (s, e) = post(
            addr,
            &format!("/api/markets/{m}/exceptions"),
            &op,
            json!({"night_date": date, "kind": "cancelled", "reason": "Mưa bão"}),
        )
        .await;
        assert_eq!(s, 201, "{e}");
    }
    for _ in 0..=SMALL {
        let (s, w) = post(
            addr,
            "/api/webhooks",
            &op,
            json!({"url": "http://127.0.0.1:9/none", "events": ["*"]}),
        )
        .await;
        assert_eq!(s, 201, "{w}");
    }
    // An ad-hoc show taken live and closed: its transitions.
    let adhoc = Market::create(addr, &[100_000], 5, 1, true).await;
    let (s, closed) = post(
        addr,
        &format!("/api/shows/{}/close", adhoc.show),
        &op,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{closed}");

    let operator = op.as_str();
    let op = Some(operator);
    for (path, key) in [
        ("/api/sellers".to_owned(), "id"),
        (format!("/api/products?seller_id={a}"), "id"),
        ("/api/shows".to_owned(), "id"),
        (format!("/api/sellers/{a}/shows"), "id"),
        (format!("/api/sellers/{a}/lineup-sets"), "id"),
        ("/api/markets".to_owned(), "id"),
        (format!("/api/markets/{m}/exceptions"), "night_date"),
        (format!("/api/markets/{m}/admissions"), "id"),
        (
            format!("/api/markets/{m}/nights/2026-11-27/commitments"),
            "seller_id",
        ),
        (format!("/api/markets/{m}/nights/2026-11-27/shows"), "id"),
        ("/api/webhooks".to_owned(), "id"),
    ] {
        pages_match_the_whole(addr, &path, op, key).await;
    }
    // Warnings: rejecting the products after scheduling puts each show on the list.
    for p in &products {
        let (s, d) = post(
            addr,
            &format!("/api/markets/{m}/admissions"),
            operator,
            json!({"product_id": p, "approved": false, "reason": "Nhãn không khớp"}),
        )
        .await;
        assert_eq!(s, 201, "{d}");
    }
    pages_match_the_whole(addr, "/api/schedule/warnings", op, "show_id").await;

    // Transitions (live, closed): one a page, as the whole list has them.
    let path = format!("/api/shows/{}/transitions", adhoc.show);
    let steps = walk(addr, &path, op, 1, usize::MAX, async |_| {}).await;
    let (_, whole, _) = page(addr, &path, op).await;
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(&steps, whole.as_array().unwrap());

    // The calendar goes on: pages continue where the last one ended.
    let path = format!("/api/markets/{m}/nights?from=2026-11-01");
    let walked = walk(addr, &path, None, SMALL, NIGHT_PAGES, async |_| {}).await;
    let limit = format!("limit={}", SMALL * NIGHT_PAGES);
    let (_, whole, next) = page(addr, &with(&path, &limit), None).await;
    assert!(
        next.is_some(),
        "an open-ended calendar always has a next page"
    );
    assert_eq!(
        &walked,
        whole.as_array().unwrap(),
        "nights in order, each once"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_between_pages_skip_and_repeat_nothing() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let op = token(Role::Operator, "ops");
    let mut before = Vec::new();
    for n in 0..5 {
        before.push(create_seller(addr, &op, &format!("HTX {n}")).await);
    }
    let mut added = Vec::new();
    let walked = walk(
        addr,
        "/api/sellers",
        Some(&op),
        SMALL,
        usize::MAX,
        async |_| {
            added.push(create_seller(addr, &op, "HTX mới").await);
        },
    )
    .await;
    let ids: Vec<&str> = walked.iter().map(|s| s["id"].as_str().unwrap()).collect();
    for id in &before {
        let seen = ids.iter().filter(|i| *i == id).count();
        assert_eq!(seen, 1, "seller {id} listed {seen} times in {ids:?}");
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no seller twice: {ids:?}");
    // Sellers are listed oldest first: those added while walking come after the first ones.
    let first_added = ids.iter().position(|i| added.iter().any(|a| a == i));
    let last_before = ids.iter().rposition(|i| before.iter().any(|b| b == i));
    if let (Some(f), Some(l)) = (first_added, last_before) {
        assert!(f > l, "{ids:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cursors_and_limits_are_refused() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let op = token(Role::Operator, "ops");
    let buyer = token(Role::Viewer, "buyer-1");
    for n in 0..=SMALL {
        create_seller(addr, &op, &format!("HTX {n}")).await;
    }
    let (_, _, sellers_cursor) = page(addr, "/api/sellers?limit=1", Some(&op)).await;
    let sellers_cursor = sellers_cursor.unwrap();
    for (path, tok) in [
        ("/api/sellers?cursor=not-a-cursor".to_owned(), &op),
        ("/api/sellers?cursor=eyJsIjoic2VsbGVycyJ9".to_owned(), &op),
        (format!("/api/sellers?cursor={}", "A".repeat(2000)), &op),
        (format!("/api/markets?cursor={sellers_cursor}"), &op),
        (format!("/api/webhooks?cursor={sellers_cursor}"), &op),
        (format!("/api/me/orders?cursor={sellers_cursor}"), &buyer),
        (format!("/api/me/checkouts?cursor={sellers_cursor}"), &buyer),
    ] {
        let (status, body, _) = page(addr, &path, Some(tok)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_cursor", "{path}: {body}");
    }
    let too_many = format!("limit={}", MAX_PAGE_SIZE + 1);
    for q in ["limit=0", "limit=-1", "limit=abc", too_many.as_str()] {
        for (path, tok) in [("/api/sellers", &op), ("/api/me/orders", &buyer)] {
            let (status, body, _) = page(addr, &with(path, q), Some(tok)).await;
            assert_eq!(status, 400, "{path}?{q}: {body}");
            assert_eq!(body["error"]["code"], "bad_request", "{path}?{q}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
        }
    }
    let most = format!("/api/sellers?limit={MAX_PAGE_SIZE}");
    let (status, body, next) = page(addr, &most, Some(&op)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), SMALL + 1);
    assert_eq!(next, None, "the last page carries no Next-Cursor");
    let (status, body, next) = page(addr, "/api/me/orders", Some(&buyer)).await;
    assert_eq!(
        (status, body, next),
        (200, json!([]), None),
        "an empty list"
    );
    server.shutdown().await;
}
