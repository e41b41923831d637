//! Sign-in for the consoles: one-time invites, the session cookie, sign-out, guests, and the
//! cross-site guard, over real HTTP and WebSocket connections.

use std::net::SocketAddr;

use crate::support::{Client, Market, TestServer, get, http, http_full, token};
use nightmarket_server::auth::Role;
use nightmarket_wire::server::ServerMessage;
use serde_json::{Value, json};

/// A request with a session cookie (and optional extra headers); status, `Set-Cookie` values,
/// JSON body.
async fn with_cookie(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Vec<String>, Value) {
    let cookie_header = format!("nm_session={cookie}");
    let mut headers = vec![("Cookie", cookie_header.as_str())];
    headers.extend_from_slice(extra);
    let (status, h, text) = http_full(addr, method, path, None, &headers, body).await;
    (
        status,
        set_cookies(&h),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn set_cookies(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The session token a `Set-Cookie` carries ("" when it clears the cookie).
fn cookie_value(set_cookie: &[String]) -> String {
    let c = set_cookie.last().expect("a Set-Cookie");
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(c.contains("SameSite=Strict"), "{c}");
    assert!(c.contains("Path=/"), "{c}");
    c.split(';')
        .next()
        .unwrap()
        .strip_prefix("nm_session=")
        .unwrap()
        .to_owned()
}

async fn invite(addr: SocketAddr, role: &str, subject: &str) -> (String, Value) {
    let op = token(Role::Operator, "office");
    let (status, inv) = http(
        addr,
        "POST",
        "/api/invites",
        Some(&op),
        Some(&json!({"role": role, "subject": subject})),
    )
    .await;
    assert_eq!(status, 201, "{inv}");
    (inv["code"].as_str().unwrap().to_owned(), inv)
}

async fn redeem(addr: SocketAddr, code: &str) -> (u16, Vec<String>, Value) {
    let (status, h, text) = http_full(
        addr,
        "POST",
        "/api/auth/redeem",
        None,
        &[],
        Some(&json!({ "code": code })),
    )
    .await;
    (
        status,
        set_cookies(&h),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_open_one_session_each_and_sign_out_revokes_it() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let m = Market::create(addr, &[100_000], 10, 2, true).await;

    // The link carries the code in its fragment, on the request's own origin.
    let (code, inv) = invite(addr, "seller", &m.seller_id).await;
    assert_eq!(
        inv["url"].as_str().unwrap(),
        format!("http://{addr}/signin#code={code}")
    );
    assert_eq!(code.len(), 43);

    let (status, set, me) = redeem(addr, &code).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "seller");
    assert_eq!(me["subject"], m.seller_id.as_str());
    assert_eq!(me["via"], "cookie");
    let seller = cookie_value(&set);

    // Single use; unknown codes are told apart.
    let (status, _, again) = redeem(addr, &code).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (401, Some("invite_used"))
    );
    let (status, _, none) = redeem(addr, "not-a-code").await;
    assert_eq!(
        (status, none["error"]["code"].as_str()),
        (401, Some("invite_unknown"))
    );

    // The cookie signs requests in; the API's own rules apply to it.
    let (status, _, me) = with_cookie(addr, "GET", "/api/me", &seller, &[], None).await;
    assert_eq!(
        (status, me["name"].as_str()),
        (200, Some("HTX Mật ong Ba Vì"))
    );
    let (status, _, list) = with_cookie(addr, "GET", "/api/products", &seller, &[], None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _, _) = with_cookie(addr, "GET", "/api/sellers", &seller, &[], None).await;
    assert_eq!(status, 403, "sellers are listed for operators only");
    let stats = format!("/api/shows/{}/live-stats", m.show);
    let (status, _, live) = with_cookie(addr, "GET", &stats, &seller, &[], None).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["status"], "live");
    assert_eq!(live["products"][0]["allotted"], 10);
    let viewer = token(Role::Viewer, "buyer-1");
    assert_eq!(get(addr, &stats, Some(&viewer)).await.0, 403);

    // The WebSocket takes the cookie in place of a token, from this origin only.
    let origin = format!("http://{addr}");
    let cookie = format!("nm_session={seller}");
    let mut ws =
        Client::connect_headers(addr, &m.show, &[("Cookie", &cookie), ("Origin", &origin)])
            .await
            .unwrap();
    let role = ws
        .until(|msg| match msg {
            ServerMessage::Hello(h) => Some(h.role.clone()),
            _ => None,
        })
        .await;
    assert_eq!(role, "seller");
    let refused = Client::connect_headers(
        addr,
        &m.show,
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(refused.err(), Some(403));

    // Sign-out revokes the session: neither the cookie nor its token as a bearer works.
    let (status, set, _) = with_cookie(
        addr,
        "POST",
        "/api/auth/signout",
        &seller,
        &[("Origin", &origin)],
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(cookie_value(&set), "", "the cookie is cleared");
    let (status, _, _) = with_cookie(addr, "GET", "/api/me", &seller, &[], None).await;
    assert_eq!(status, 401);
    let (status, body) = get(addr, "/api/me", Some(&seller)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        Client::connect_headers(addr, &m.show, &[("Cookie", &cookie)])
            .await
            .err(),
        Some(401)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_changes_need_the_same_origin() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let (code, _) = invite(addr, "operator", "office-2").await;
    let (_, set, me) = redeem(addr, &code).await;
    assert_eq!(me["role"], "operator");
    let op = cookie_value(&set);
    let seller = json!({"name": "Làng gốm Bát Tràng", "kind": "household", "district": "Gia Lâm"});

    for (headers, expect) in [
        (vec![("Origin", "http://evil.example")], 403),
        (vec![("Origin", "null")], 403),
        (vec![("Sec-Fetch-Site", "cross-site")], 403),
        (vec![("Sec-Fetch-Site", "same-site")], 403),
    ] {
        let (status, _, body) =
            with_cookie(addr, "POST", "/api/sellers", &op, &headers, Some(&seller)).await;
        assert_eq!(status, expect, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "csrf_rejected");
    }
    let origin = format!("http://{addr}");
    let (status, _, body) = with_cookie(
        addr,
        "POST",
        "/api/sellers",
        &op,
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        Some(&seller),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Reads are not guarded: a page of this server may link anywhere.
    let (status, _, list) = with_cookie(
        addr,
        "GET",
        "/api/sellers",
        &op,
        &[("Sec-Fetch-Site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A bearer token is not a cookie: no origin rule applies to it.
    let bearer = token(Role::Operator, "office");
    let (status, _, _) = http_full(
        addr,
        "POST",
        "/api/sellers",
        Some(&bearer),
        &[("Origin", "http://partner.example")],
        Some(&seller),
    )
    .await;
    assert_eq!(status, 201);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refresh_while_used_and_links_expire() {
    // Sessions and links live on the server's clock: the test moves it instead of waiting.
    let clock = nightmarket_server::clock::ManualClock::new(1_795_786_200_000);
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.sessions.token_ttl_ms = 4_000;
        c.sessions.invite_ttl_ms = 1_500;
    })
    .await;
    let addr = server.addr;
    let (code, _) = invite(addr, "operator", "office").await;
    let (late, _) = invite(addr, "operator", "office-late").await;
    let (_, set, _) = redeem(addr, &code).await;
    let first = cookie_value(&set);

    // Within the first half of its life the token is kept; past it a fresh one comes back.
    let (_, set, _) = with_cookie(addr, "GET", "/api/me", &first, &[], None).await;
    assert!(set.is_empty(), "{set:?}");
    clock.advance(2_200);
    let (status, set, _) = with_cookie(addr, "GET", "/api/me", &first, &[], None).await;
    assert_eq!(status, 200);
    let fresh = cookie_value(&set);
    assert_ne!(fresh, first);
    clock.advance(3_000);
    let (status, _, _) = with_cookie(addr, "GET", "/api/me", &first, &[], None).await;
    assert_eq!(status, 401, "the old token expired");
    let (status, _, _) = with_cookie(addr, "GET", "/api/me", &fresh, &[], None).await;
    assert_eq!(status, 200, "the refreshed one lives on");

    let (status, _, body) = redeem(addr, &late).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invite_expired"))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_join_with_a_name_limited_per_address() {
    let server = TestServer::start(|c| {
        c.sessions.guest_burst = 2;
        c.sessions.guests_per_minute = 1;
    })
    .await;
    let addr = server.addr;
    let m = Market::create(addr, &[100_000], 10, 2, true).await;
    let guest = |name: &'static str| async move {
        let (status, h, text) = http_full(
            addr,
            "POST",
            "/api/auth/guest",
            None,
            &[],
            Some(&json!({ "display_name": name })),
        )
        .await;
        (
            status,
            set_cookies(&h),
            serde_json::from_str::<Value>(&text).unwrap(),
        )
    };
    for bad in ["", "   ", "a\u{7}b"] {
        let (status, _, body) = guest(bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let (status, set, me) = guest("  Lan  ").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["role"].as_str(), me["name"].as_str()),
        (Some("viewer"), Some("Lan"))
    );
    let buyer = me["subject"].as_str().unwrap().to_owned();
    assert!(buyer.starts_with("guest-"), "{buyer}");
    let lan = cookie_value(&set);

    // The guest's buyer id comes from the session, never from the page.
    let cookie = format!("nm_session={lan}");
    let mut ws = Client::connect_headers(addr, &m.show, &[("Cookie", &cookie)])
        .await
        .unwrap();
    let subject = ws
        .until(|msg| match msg {
            ServerMessage::Hello(h) => Some(h.subject.clone()),
            _ => None,
        })
        .await;
    assert_eq!(subject, buyer);

    let (status, _, _) = guest("Minh").await;
    assert_eq!(status, 200);
    let (status, _, body) = guest("Hoa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    server.shutdown().await;
}

/// Behind one trusted proxy, each client's address (from `X-Forwarded-For`) has its own guest
/// allowance; what a client writes further left in the header counts for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_allowance_follows_the_proxied_address() {
    let server = TestServer::start(|c| {
        c.sessions.guest_burst = 1;
        c.sessions.guests_per_minute = 1;
        c.sessions.trusted_proxy_hops = 1;
    })
    .await;
    let addr = server.addr;
    let guest = |forwarded: &'static str| async move {
        http_full(
            addr,
            "POST",
            "/api/auth/guest",
            None,
            &[("X-Forwarded-For", forwarded)],
            Some(&json!({ "display_name": "Lan" })),
        )
        .await
        .0
    };
    assert_eq!(guest("203.0.113.1").await, 200);
    assert_eq!(guest("203.0.113.1").await, 429, "one allowance per client");
    assert_eq!(
        guest("203.0.113.2").await,
        200,
        "another client behind the proxy"
    );
    assert_eq!(
        guest("198.51.100.7, 203.0.113.1").await,
        429,
        "a forged left-hand entry does not buy a new allowance"
    );
    server.shutdown().await;
}
