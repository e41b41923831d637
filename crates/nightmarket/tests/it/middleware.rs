//! The middleware every request meets (http/mod.rs): request ids, the body limit, gzip, CORS and
//! the request timeout, over real sockets.

use std::io::Read;

use crate::support::{
    ChildServer, Client, Market, TestServer, create_seller, exchange, http_full, request, token,
};
use nightmarket_server::auth::Role;
use serde_json::{Value, json};

/// The value of response header `name`.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts an error answer: its status, the JSON error body with `code`, and a request id.
fn assert_refused(answer: &(u16, Vec<(String, String)>, String), status: u16, code: &str) {
    let (got, headers, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(header(headers, "x-request-id").is_some(), "{headers:?}");
}

/// Whether `value` is a request id the server made (a UUID).
fn generated(value: Option<&str>) -> bool {
    value.is_some_and(|v| uuid::Uuid::parse_str(v).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let with = |id: &'static str| async move {
        http_full(addr, "GET", "/healthz", None, &[("X-Request-Id", id)], None)
            .await
            .1
    };

    let kept = with("checkout-7f3a.1:b_2").await;
    assert_eq!(header(&kept, "x-request-id"), Some("checkout-7f3a.1:b_2"));

    let (_, first, _) = http_full(addr, "GET", "/healthz", None, &[], None).await;
    let (_, second, _) = http_full(addr, "GET", "/healthz", None, &[], None).await;
    assert!(generated(header(&first, "x-request-id")), "{first:?}");
    assert!(generated(header(&second, "x-request-id")), "{second:?}");
    assert_ne!(
        header(&first, "x-request-id"),
        header(&second, "x-request-id")
    );

    // Too long, or with characters a log line should not carry: replaced.
    let long: &'static str = "x".repeat(129).leak();
    for insane in [long, "two words", "quote\"d"] {
        let replaced = with(insane).await;
        assert!(
            generated(header(&replaced, "x-request-id")),
            "{insane}: {replaced:?}"
        );
    }

    // Refusals carry the id too, the fallback's 404 included.
    let answer = http_full(
        addr,
        "GET",
        "/no/such/route",
        None,
        &[("X-Request-Id", "lost-1")],
        None,
    )
    .await;
    assert_refused(&answer, 404, "not_found");
    assert_eq!(header(&answer.1, "x-request-id"), Some("lost-1"));
    server.shutdown().await;
}

/// Bytes of the body bound in this test's server.
const SMALL_BODY_LIMIT: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_are_refused_413_json() {
    let server = TestServer::start(|c| c.limits.max_body_bytes = SMALL_BODY_LIMIT).await;
    let addr = server.addr;
    let op = token(Role::Operator, "op");
    let long_name = "M".repeat(SMALL_BODY_LIMIT * 2);
    let big = json!({"name": long_name, "kind": "cooperative", "district": "Ba Vì"});

    // Declared by Content-Length: refused before any handler.
    let answer = http_full(addr, "POST", "/api/sellers", Some(&op), &[], Some(&big)).await;
    assert_refused(&answer, 413, "body_too_large");
    assert!(answer.2.contains("limits.max_body_bytes"), "{}", answer.2);

    // Sent in chunks without a length: cut while it is read, the same answer.
    let text = big.to_string();
    let (head, tail) = text.split_at(text.len() / 2);
    let chunked = format!(
        "POST /api/sellers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {op}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );
    let (status, headers, body) = exchange(addr, chunked.as_bytes()).await;
    let answer = (status, headers, String::from_utf8(body).unwrap());
    assert_refused(&answer, 413, "body_too_large");

    // Within the bound the same route works.
    create_seller(addr, &op, "HTX Mật ong Ba Vì").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_gzipped_when_asked_and_not_otherwise() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let get = |accept: &'static [(&'static str, &'static str)]| async move {
        exchange(
            addr,
            request(addr, "GET", "/api/openapi.json", accept, None).as_bytes(),
        )
        .await
    };

    let (status, headers, plain) = get(&[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None, "{headers:?}");
    let plain: Value = serde_json::from_slice(&plain).unwrap();

    let (status, headers, zipped) = get(&[("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(
        header(&headers, "vary").is_some_and(|v| v.contains("accept-encoding")),
        "{headers:?}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(zipped.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), plain);

    // An encoding the server does not offer is not used.
    let (_, headers, body) = get(&[("Accept-Encoding", "br")]).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    // A streamed CSV export is compressed whole, to its last page.
    let market = Market::create(addr, &[250_000], 5, 2, true).await;
    let auth = format!("Bearer {}", market.operator);
    let export = format!("/api/shows/{}/orders?format=csv", market.show);
    let (status, headers, zipped) = exchange(
        addr,
        request(
            addr,
            "GET",
            &export,
            &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
            None,
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&zipped));
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    let mut csv = String::new();
    flate2::read::GzDecoder::new(zipped.as_slice())
        .read_to_string(&mut csv)
        .unwrap();
    let head = nightmarket_wire::orders::ORDER_CSV_HEADER.join(",");
    assert!(csv.contains(&head), "{csv}");

    // The WebSocket upgrade is not touched by compression: the session runs.
    let viewer = format!("Bearer {}", token(Role::Viewer, "b1"));
    let mut client = Client::connect_headers(
        addr,
        &market.show,
        &[("Authorization", &viewer), ("Accept-Encoding", "gzip")],
    )
    .await
    .expect("the upgrade succeeds");
    client.snapshot().await;
    client.close().await;
    server.shutdown().await;
}

/// The headers of a CORS answer.
fn cors_headers(headers: &[(String, String)]) -> Vec<&(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect()
}

const SITE: &str = "https://cho.example.vn";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default_and_follows_the_configured_origins() {
    let preflight = [
        ("Origin", SITE),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type",
        ),
    ];

    let server = TestServer::start(|_| {}).await;
    let (status, headers, _) = http_full(
        server.addr,
        "GET",
        "/api/shows",
        None,
        &[("Origin", SITE)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    let (_, headers, _) = http_full(
        server.addr,
        "OPTIONS",
        "/api/sellers",
        None,
        &preflight,
        None,
    )
    .await;
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    server.shutdown().await;

    let server = TestServer::start(|c| {
        c.http.cors_origins = format!("{SITE}, http://localhost:5173");
    })
    .await;
    let addr = server.addr;
    let (status, headers, _) =
        http_full(addr, "GET", "/api/shows", None, &[("Origin", SITE)], None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(SITE));
    assert!(
        header(&headers, "access-control-expose-headers")
            .is_some_and(|v| v.contains("x-request-id")),
        "{headers:?}"
    );
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);

    let (status, headers, _) =
        http_full(addr, "OPTIONS", "/api/sellers", None, &preflight, None).await;
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(SITE));
    let methods = header(&headers, "access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or("");
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    // An origin not on the list gets no permission.
    let (_, headers, _) = http_full(
        addr,
        "GET",
        "/api/shows",
        None,
        &[("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    server.shutdown().await;
}

/// Each request's trace span carries its method, its route's path template (not the raw path),
/// its request id, and once answered its status and latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_has_a_span_with_its_route_id_status_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut log) = ChildServer::start_logged(
        env!("CARGO_BIN_EXE_nightmarket"),
        dir.path(),
        "warn,nightmarket_server::http::middleware=debug",
    )
    .await
    .unwrap();
    let answer = http_full(
        server.addr,
        "GET",
        "/api/sellers/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        None,
        &[("X-Request-Id", "span-probe-1")],
        None,
    )
    .await;
    assert_eq!(answer.0, 404);
    let span = tokio::time::timeout(crate::support::WAIT, async {
        loop {
            let line = log.next_line().await.unwrap().expect("the log goes on");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "answered"
                && entry["span"]["request_id"] == "span-probe-1"
            {
                return entry["span"].clone();
            }
        }
    })
    .await
    .expect("the request's span is logged");
    assert_eq!(span["name"], "request", "{span}");
    assert_eq!(span["method"], "GET", "{span}");
    assert_eq!(span["path"], "/api/sellers/{id}", "{span}");
    assert_eq!(span["status"], 404, "{span}");
    assert!(span["latency_ms"].is_u64(), "{span}");
    server.kill().await;
}

/// A request that cannot finish (another connection holds the store's write lock until the
/// answer is in) is answered 504 `timeout` after `http.request_timeout_ms`, while a WebSocket
/// opened before stays up past it; once the lock is gone the server answers as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_answered_504_timeout() {
    let server = TestServer::start(|c| c.http.request_timeout_ms = 200).await;
    let addr = server.addr;
    let market = Market::create(addr, &[250_000], 5, 2, true).await;
    let mut seller = market.seller_client().await;

    let blocker = rusqlite::Connection::open(server.dir.path().join("catalog.sqlite")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let body = json!({"name": "Làng gốm Bát Tràng", "kind": "cooperative", "district": "Gia Lâm"});
    let answer = http_full(
        addr,
        "POST",
        "/api/sellers",
        Some(&market.operator),
        &[],
        Some(&body),
    )
    .await;
    assert_refused(&answer, 504, "timeout");
    assert!(answer.2.contains("http.request_timeout_ms"), "{}", answer.2);
    blocker.execute_batch("COMMIT").unwrap();

    // The socket outlived the request's bound.
    seller.ping().await;
    seller.close().await;
    create_seller(addr, &market.operator, "HTX Chè Shan Tuyết").await;
    server.shutdown().await;
}
