//! Bad input gets its own error code; nothing panics; the connection stays usable where that
//! is safe.

use crate::support::{Client, Ended, Market, TestServer, get, token};
use nightmarket_server::auth::Role;
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
    // Once the allowance refills, a claim is served again: sent again with the same id while
    // it is refused `rate_limited` (a refusal that decides nothing).
    let v = tokio::sync::Mutex::new(v);
    crate::support::eventually("a claim served after the flood", || async {
        let r = v
            .lock()
            .await
            .claim("after-the-flood", m.product(0), 1, 100_000)
            .await;
        match (r.outcome, r.reason) {
            (ClaimOutcomeKind::Accepted, _) => Ok(()),
            (ClaimOutcomeKind::Refused, Some(ErrorCode::RateLimited)) => Err(format!("{r:?}")),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    server.shutdown().await;
}

/// One raw HTTP/1.1 exchange: `head` is sent as bytes (it may hold what no client library
/// would send), then `body`; returns the status, the lowercased headers and the body.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    head: &[u8],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    // The server may answer (and close) before it has read all of a refused body.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(crate::support::WAIT, s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn request(method: &str, target: &[u8], extra: &str) -> Vec<u8> {
    let mut r = format!("{method} ").into_bytes();
    r.extend_from_slice(target);
    r.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    );
    r
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts a JSON error body with `code` and the status that code carries.
fn assert_json_error(what: &str, got: &(u16, Vec<(String, String)>, String), code: ErrorCode) {
    let (status, headers, body) = got;
    assert_eq!(*status, code.http_status(), "{what}: {body}");
    assert_eq!(
        header(headers, "content-type"),
        Some("application/json"),
        "{what}"
    );
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert_eq!(v["error"]["code"], code.as_str(), "{what}: {body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

/// What the red team sent: every refusal is the JSON error body with its stable code, within
/// the named bounds; the body bound holds on every route, declared or chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_refusal_is_json_with_a_code() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let op = token(Role::Operator, "op");
    let auth = format!("Authorization: Bearer {op}\r\n");

    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "percent-encoded invalid UTF-8 in a path segment",
            request("GET", b"/api/shows/%ff%fe", ""),
            ErrorCode::BadRequest,
        ),
        (
            "a query that does not parse",
            request("GET", b"/api/markets/m/nights?limit=lots", ""),
            ErrorCode::BadRequest,
        ),
        (
            "a request target past limits.max_uri_bytes",
            request("GET", format!("/{}", "a".repeat(10_000)).as_bytes(), ""),
            ErrorCode::UriTooLong,
        ),
        (
            "headers past limits.max_header_bytes",
            request(
                "GET",
                b"/api/shows",
                &format!("X-Pad: {}\r\n", "a".repeat(20_000)),
            ),
            ErrorCode::HeadersTooLarge,
        ),
        (
            "more headers than limits.max_headers",
            request(
                "GET",
                b"/api/shows",
                &(0..80).map(|i| format!("X-{i}: 1\r\n")).collect::<String>(),
            ),
            ErrorCode::HeadersTooLarge,
        ),
        (
            "an unknown method",
            request("BREW", b"/api/shows", ""),
            ErrorCode::MethodNotAllowed,
        ),
        (
            "a method the path does not have",
            request("DELETE", b"/api/shows", ""),
            ErrorCode::MethodNotAllowed,
        ),
        (
            "a WebSocket route without an upgrade",
            request("GET", b"/ws/shows/s1", ""),
            ErrorCode::BadRequest,
        ),
        (
            "a WebSocket upgrade without its key",
            request(
                "GET",
                b"/ws/shows/s1",
                "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n",
            ),
            ErrorCode::BadRequest,
        ),
        (
            "a declared body past limits.max_body_bytes, on a JSON route",
            request(
                "POST",
                b"/api/sellers",
                &format!("{auth}Content-Type: application/json\r\nContent-Length: 1900000\r\n"),
            ),
            ErrorCode::BodyTooLarge,
        ),
        (
            "a declared body past the bound, on a route that reads no body",
            request("POST", b"/api/shows/s1/live", "Content-Length: 1900000\r\n"),
            ErrorCode::BodyTooLarge,
        ),
    ];
    for (what, head, code) in cases {
        let got = raw_exchange(addr, &head, b"").await;
        assert_json_error(what, &got, code);
    }

    // A declared body past the bound, on a route that reads raw bytes: sent whole.
    let got = raw_exchange(
        addr,
        &request(
            "POST",
            b"/api/checkouts/c1/pay",
            &format!("{auth}Content-Length: 70000\r\n"),
        ),
        &[0x20; 70_000],
    )
    .await;
    assert_json_error(
        "a declared body past the bound, on a route that reads raw bytes",
        &got,
        ErrorCode::BodyTooLarge,
    );

    // A chunked body past the bound is cut while it is read: the same status and code.
    let chunk = format!("{{\"name\":\"{}\"}}", "a".repeat(70_000));
    let chunked = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let got = raw_exchange(
        addr,
        &request(
            "POST",
            b"/api/sellers",
            &format!("{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
        ),
        chunked.as_bytes(),
    )
    .await;
    assert_json_error(
        "a chunked body past the bound",
        &got,
        ErrorCode::BodyTooLarge,
    );

    // 405 keeps its Allow header.
    let got = raw_exchange(addr, &request("PUT", b"/api/shows", ""), b"").await;
    assert_eq!(header(&got.1, "allow"), Some("POST,GET,HEAD"));

    // Past what the HTTP parser holds (twice the configured bounds), it answers itself:
    // an empty body and a closed connection, as docs/protocol.md §9 says.
    let huge = request("GET", format!("/{}", "a".repeat(70_000)).as_bytes(), "");
    let (status, _, body) = raw_exchange(addr, &huge, b"").await;
    assert_eq!((status, body.as_str()), (431, ""));
    let (status, _, body) = raw_exchange(addr, &request("GET", b"/api/shows/\xff", ""), b"").await;
    assert_eq!((status, body.as_str()), (400, ""));

    // The server is still serving.
    assert_eq!(crate::support::http_text(addr, "/healthz").await.0, 200);
    server.shutdown().await;
}

/// A 401 says what is wrong with the token, and a 403 which role is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_say_why() {
    use nightmarket_server::auth::{Claims, MAX_CLOCK_SKEW_SECS, TokenKey};
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let key = TokenKey::new(crate::support::SECRET);
    let now = crate::support::now_secs();
    let sign = |iat: i64, exp: i64| {
        key.sign(&Claims {
            sub: "op".into(),
            role: Role::Operator,
            exp,
            iat,
            sid: None,
        })
    };
    let good = sign(now, now + 600);
    // One character of the signature changed: its first, whose six bits are all signature
    // (the last one's low bits are padding, which a decoder refuses as malformed when set).
    let at = good.rfind('.').unwrap() + 1;
    let swap = if good[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{swap}{}", &good[..at], &good[at + 1..]);
    let cases = [
        (None, "missing"),
        (Some("not-a-token".to_owned()), "malformed"),
        (
            Some(TokenKey::new("another-secret-another-secret-xxxx").mint(
                Role::Operator,
                "op",
                now,
                600,
            )),
            "bad_signature",
        ),
        (Some(forged), "bad_signature"),
        (Some(sign(now - 7200, now - 3600)), "expired"),
        (
            Some(sign(now + MAX_CLOCK_SKEW_SECS + 120, now + 7200)),
            "issued_in_future",
        ),
    ];
    for (token, reason) in cases {
        let (status, headers, body) =
            crate::support::http_full(addr, "GET", "/api/sellers", token.as_deref(), &[], None)
                .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{reason}: {body}"
        );
        assert_eq!(v["error"]["details"]["reason"], reason, "{body}");
        let challenge = header(&headers, "www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{reason}: {challenge}");
    }
    // Within the clock skew a token from a slightly fast clock is honoured.
    let (status, _) = get(
        addr,
        "/api/sellers",
        Some(&sign(now + MAX_CLOCK_SKEW_SECS / 2, now + 600)),
    )
    .await;
    assert_eq!(status, 200);

    let (status, v) = get(addr, "/api/sellers", Some(&token(Role::Viewer, "lan"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(v["error"]["details"]["needed_role"], "operator");
    assert_eq!(v["error"]["details"]["role"], "viewer");
    server.shutdown().await;
}

/// Names and texts refuse NUL and control characters, with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_refuse_control_characters() {
    let server = TestServer::start(|_| {}).await;
    let op = token(Role::Operator, "op");
    for name in [
        "HTX\u{0}Ba Vì",
        "HTX\nBa Vì",
        "HTX \u{1b}[2J",
        "\u{202E}ìV aB XTH",
    ] {
        let (status, v) = crate::support::http(
            server.addr,
            "POST",
            "/api/sellers",
            Some(&op),
            Some(&json!({"name": name})),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{name:?}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("name:") && message.contains("control"),
            "{message}"
        );
    }
    let m = Market::create(server.addr, &[100_000], 5, 1, false).await;
    let seller = m.seller_id.clone();
    let (status, v) = crate::support::http(
        server.addr,
        "POST",
        "/api/shows",
        Some(&op),
        Some(&json!({"seller_id": seller, "title": "Đêm\u{0}chợ", "lineup": [{"product_id": m.product(0), "stock": 1, "buyer_limit": 1}]})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("title:"),
        "{v}"
    );
    server.shutdown().await;
}
