//! The market calendar end to end: an operator defines the weekly market, admits products,
//! schedules sellers' shows into a night, and the shows open and close on time by themselves.
//! Time is a manual clock, so slots start and end exactly when the test says.

use crate::support::{assert_error, get, post, quiet_for};
use crate::support::{eventually, postgres_url};
use std::net::SocketAddr;

use crate::support::{TestServer, create_seller, http, token};
use nightmarket_server::auth::Role;
use nightmarket_server::clock::ManualClock;
use serde_json::{Value, json};

/// 2026-11-25 00:00 UTC, a Wednesday: "next Friday" is 2026-11-27.
pub(crate) const WEDNESDAY: i64 = 1_795_564_800_000;
/// 2026-11-27 20:30 in Hanoi (UTC+7) = 13:30 UTC.
pub(crate) const FRIDAY_2030: i64 = 1_795_786_200_000;
pub(crate) const MINUTE: i64 = 60_000;

pub(crate) fn fast(c: &mut nightmarket_server::config::Config) {
    c.market.tick_ms = 20;
    c.market.close_grace_ms = 5 * MINUTE as u64;
    c.market.early_start_ms = 15 * MINUTE as u64;
    // These tests move the clock through a whole night with no seller connected: their shows
    // open and close by their slots alone (seller_absent.rs covers the absence rule).
    c.market.seller_absent_close_ms = 0;
}

pub(crate) fn docs(until: &str) -> Value {
    json!([
        {"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": until},
        {"kind": "origin_proof", "reference": "TXNG-BV-000123", "valid_from": "2024-01-01", "valid_until": until},
        {"kind": "quality_label", "reference": "TCCS 01:2024/MOBV", "valid_from": "2024-01-01", "valid_until": until},
    ])
}

pub(crate) async fn product(
    addr: SocketAddr,
    op: &str,
    seller: &str,
    name: &str,
    stars: i64,
    documents: Value,
) -> String {
    let body = json!({
        "seller_id": seller, "name": name, "group": "food", "stars": stars,
        "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Ba Vì",
        "list_price": 120_000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV",
        "documents": documents,
    });
    let (s, p) = post(addr, "/api/products", op, body).await;
    assert_eq!(s, 201, "{p}");
    p["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn market(addr: SocketAddr, op: &str) -> String {
    let (s, m) = post(
        addr,
        "/api/markets",
        op,
        json!({"name": "Hanoi Night Market in the Clouds", "weekdays": ["friday"],
               "start_time": "20:30", "duration_minutes": 150, "first_date": "2026-11-01"}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["time_zone"], "Asia/Ho_Chi_Minh");
    assert_eq!(m["min_stars"], 3);
    m["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn admit(addr: SocketAddr, op: &str, market: &str, product: &str) {
    let (s, d) = post(
        addr,
        &format!("/api/markets/{market}/admissions"),
        op,
        json!({"product_id": product, "approved": true}),
    )
    .await;
    assert_eq!(s, 201, "{d}");
}

pub(crate) async fn commit(addr: SocketAddr, market: &str, seller: &str, night: &str) {
    let (s, c) = post(
        addr,
        &format!("/api/markets/{market}/nights/{night}/commitments"),
        &token(Role::Seller, seller),
        json!({"statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố"}),
    )
    .await;
    assert!(s == 201 || s == 200, "{c}");
}

/// A seller "HTX A" with one 4-star product, admitted to `market`, and its commitment signed
/// for Friday 2026-11-27: what a show of that night needs. Returns the seller and product ids.
pub(crate) async fn ready_seller(
    addr: SocketAddr,
    op: &str,
    market: &str,
    product_name: &str,
) -> (String, String) {
    let seller = create_seller(addr, op, "HTX A").await;
    let p = product(addr, op, &seller, product_name, 4, docs("2027-12-31")).await;
    admit(addr, op, market, &p).await;
    commit(addr, market, &seller, "2026-11-27").await;
    (seller, p)
}

/// Schedules `seller` with one `product` into the night of 2026-11-27 at `slot` (local start
/// and end times, `HH:MM`).
pub(crate) async fn schedule(
    addr: SocketAddr,
    op: &str,
    market: &str,
    (seller, product): (&str, &str),
    slot: (&str, &str),
) -> (u16, Value) {
    let (start, end) = (
        format!("2026-11-27T{}", slot.0),
        format!("2026-11-27T{}", slot.1),
    );
    post(
        addr,
        &format!("/api/markets/{market}/nights/2026-11-27/shows"),
        op,
        json!({"seller_id": seller, "title": "Đặc sản Ba Vì", "slot_start": start, "slot_end": end,
               "stream_url": "https://www.facebook.com/chodemtrenmay/live",
               "lineup": [{"product_id": product, "stock": 50, "buyer_limit": 2}]}),
    )
    .await
}

/// A seller named `seller_name` with one admitted product `product_name`, committed to the
/// night of 2026-11-27 and scheduled into it at 20:30–21:00: (seller, product, show) ids.
pub(crate) async fn scheduled_seller(
    addr: SocketAddr,
    op: &str,
    market: &str,
    seller_name: &str,
    product_name: &str,
) -> (String, String, String) {
    let seller = create_seller(addr, op, seller_name).await;
    let p = product(addr, op, &seller, product_name, 4, docs("2027-12-31")).await;
    admit(addr, op, market, &p).await;
    commit(addr, market, &seller, "2026-11-27").await;
    let (s, show) = schedule(addr, op, market, (&seller, &p), ("20:30", "21:00")).await;
    assert_eq!(s, 201, "{show}");
    let show = show["id"].as_str().unwrap().to_owned();
    (seller, p, show)
}

/// What the market tests start from: a server on a manual clock at `at` with the market loop
/// [`fast`] and then `tweak` applied, an operator's token and a market (every Friday at 20:30):
/// (server, clock, address, operator token, market id).
pub(crate) async fn market_server(
    at: i64,
    tweak: impl FnOnce(&mut crate::support::Config),
) -> (TestServer, ManualClock, SocketAddr, String, String) {
    let clock = ManualClock::new(at);
    let server = TestServer::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        fast(c);
        tweak(c);
    })
    .await;
    let addr = server.addr;
    let op = token(Role::Operator, "ops-hanoi");
    let market = market(addr, &op).await;
    (server, clock, addr, op, market)
}

/// Points the server at `database_url` (PostgreSQL) when there is one.
pub(crate) fn on_database(
    database_url: Option<String>,
) -> impl FnOnce(&mut crate::support::Config) {
    move |c| {
        if let Some(url) = database_url {
            c.database_url = url;
        }
    }
}

pub(crate) async fn status_of(addr: SocketAddr, show: &str) -> String {
    let v = crate::support::get_ok(addr, &format!("/api/shows/{show}")).await;
    v["status"].as_str().unwrap().to_owned()
}

async fn recorded(addr: SocketAddr, show: &str, want: &str) -> bool {
    if want == "scheduled" {
        return true;
    }
    let (_, log) = get(addr, &format!("/api/shows/{show}/transitions"), None).await;
    log.as_array()
        .is_some_and(|l| l.iter().any(|t| t["to"] == want))
}

/// Waits until the show is `want` and the store has recorded it: the inventory decides a
/// transition first and the store follows at the clock's reading then, so a test that moves the
/// clock on before the record would see it stamped late.
pub(crate) async fn wait_status(addr: SocketAddr, show: &str, want: &str) {
    eventually(format!("show {show} becoming {want}"), || async {
        let now = status_of(addr, show).await;
        if now == want && recorded(addr, show, want).await {
            Ok(())
        } else {
            Err(now)
        }
    })
    .await;
}

/// The walkthrough of the README: every Friday 20:30–23:00, five sellers' shows into next
/// Friday, products admitted, shows opening and closing on time.
async fn walkthrough(database_url: Option<String>) {
    let (server, clock, addr, op, market) =
        market_server(WEDNESDAY, on_database(database_url)).await;

    // Upcoming nights in local and UTC time.
    let nights =
        crate::support::get_ok(addr, &format!("/api/markets/{market}/nights?limit=3")).await;
    assert_eq!(nights[0]["date"], "2026-11-27");
    assert_eq!(nights[0]["local_start"], "2026-11-27T20:30");
    assert_eq!(nights[0]["local_end"], "2026-11-27T23:00");
    assert_eq!(nights[0]["starts_at"], "2026-11-27T13:30:00Z");
    assert_eq!(nights[0]["starts_at_ms"], FRIDAY_2030);
    assert_eq!(nights[2]["date"], "2026-12-11");

    // Five sellers, each with an OCOP product, admitted, commitment signed, scheduled in
    // half-hour slots; sellers 3 and 4 overlap each other, which is fine.
    let slots = [
        ("20:30", "21:00"),
        ("21:00", "21:30"),
        ("21:30", "22:15"),
        ("21:45", "22:30"),
        ("22:30", "23:00"),
    ];
    let mut shows = Vec::new();
    for (i, (start, end)) in slots.iter().enumerate() {
        let seller = create_seller(addr, &op, &format!("HTX số {i}")).await;
        let p = product(
            addr,
            &op,
            &seller,
            &format!("Mật ong {i}"),
            4,
            docs("2027-12-31"),
        )
        .await;
        admit(addr, &op, &market, &p).await;
        commit(addr, &market, &seller, "2026-11-27").await;
        let (s, show) = schedule(addr, &op, &market, (&seller, &p), (start, end)).await;
        assert_eq!(s, 201, "{show}");
        assert_eq!(show["status"], "scheduled");
        assert_eq!(show["schedule"]["night_date"], "2026-11-27");
        // The proof is snapshotted into the show.
        assert_eq!(
            show["lineup"][0]["product"]["documents"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        shows.push((show["id"].as_str().unwrap().to_owned(), seller));
    }
    let (_, listed) = get(
        addr,
        &format!("/api/markets/{market}/nights/2026-11-27/shows"),
        None,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 5);

    // Nothing opens before its slot.
    clock.set(FRIDAY_2030 - 1);
    // A window of several lifecycle ticks in which the show would wrongly open.
    quiet_for(std::time::Duration::from_millis(200)).await;
    assert_eq!(status_of(addr, &shows[0].0).await, "scheduled");
    clock.set(FRIDAY_2030);
    wait_status(addr, &shows[0].0, "live").await;
    assert_eq!(status_of(addr, &shows[1].0).await, "scheduled");
    // 21:00: show 1 opens; show 0's slot ended but its grace has not.
    clock.set(FRIDAY_2030 + 30 * MINUTE);
    wait_status(addr, &shows[1].0, "live").await;
    assert_eq!(status_of(addr, &shows[0].0).await, "live");
    // 21:05: show 0 closes after its grace.
    clock.set(FRIDAY_2030 + 35 * MINUTE);
    wait_status(addr, &shows[0].0, "closed").await;
    // Past the night: everything has opened and closed.
    clock.set(FRIDAY_2030 + 150 * MINUTE + 5 * MINUTE);
    for (show, _) in &shows {
        wait_status(addr, show, "closed").await;
    }
    let (_, log) = get(
        addr,
        &format!("/api/shows/{}/transitions", shows[0].0),
        None,
    )
    .await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["to"], "live");
    assert_eq!(log[0]["at"], FRIDAY_2030);
    assert!(log[0]["actor"].as_str().unwrap().starts_with("scheduler@"));
    assert_eq!(log[1]["to"], "closed");

    // A seller sees only their own shows.
    let (s, own) = get(
        addr,
        &format!("/api/sellers/{}/shows", shows[0].1),
        Some(&token(Role::Seller, &shows[0].1)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(own.as_array().unwrap().len(), 1);
    let (s, _) = get(
        addr,
        &format!("/api/sellers/{}/shows", shows[1].1),
        Some(&token(Role::Seller, &shows[0].1)),
    )
    .await;
    assert_eq!(s, 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_sqlite() {
    walkthrough(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_postgres() {
    walkthrough(Some(postgres_url().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurrence_and_exceptions_through_the_api() {
    let (server, _, addr, op, market) = market_server(WEDNESDAY, |_| {}).await;
    // Across the year end: 2026-12-18, 12-25, 2027-01-01, all at 13:30 UTC.
    let (_, n) = get(
        addr,
        &format!("/api/markets/{market}/nights?from=2026-12-18&limit=3"),
        None,
    )
    .await;
    let dates: Vec<&str> = n
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2026-12-18", "2026-12-25", "2027-01-01"]);
    assert_eq!(n[2]["starts_at"], "2027-01-01T13:30:00Z");

    // Tết: the night of 2027-02-05 is cancelled; 2026-12-04 moves to Saturday 19:00.
    let ex = |date: &str, kind: &str, to: Option<&str>, reason: &str| json!({"night_date": date, "kind": kind, "moved_to": to, "reason": reason});
    let path = format!("/api/markets/{market}/exceptions");
    let (s, e) = post(
        addr,
        &path,
        &op,
        ex("2027-02-05", "cancelled", None, "Tết Nguyên Đán"),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let (s, e) = post(
        addr,
        &path,
        &op,
        ex(
            "2026-12-04",
            "moved",
            Some("2026-12-05T19:00"),
            "Sân khấu bận",
        ),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    // Not a market night; a second exception for one night; a move onto another night.
    for (body, why) in [
        (ex("2026-12-03", "cancelled", None, "x"), "thursday"),
        (ex("2027-02-05", "cancelled", None, "again"), "duplicate"),
        (
            ex("2026-12-11", "moved", Some("2026-12-18T21:00"), "x"),
            "onto another night",
        ),
        (ex("2026-12-11", "postponed", None, "x"), "unknown kind"),
    ] {
        let (s, e) = post(addr, &path, &op, body).await;
        assert!(s == 400 || s == 409, "{why}: {s} {e}");
    }
    let (_, n) = get(
        addr,
        &format!("/api/markets/{market}/nights?from=2026-12-01&limit=2"),
        None,
    )
    .await;
    assert_eq!(n[0]["date"], "2026-12-04");
    assert_eq!(n[0]["status"], "moved");
    assert_eq!(n[0]["local_start"], "2026-12-05T19:00");
    assert_eq!(n[0]["moved_from"], "2026-12-04T20:30");
    let (_, n) = get(
        addr,
        &format!("/api/markets/{market}/nights?from=2027-02-05&limit=1"),
        None,
    )
    .await;
    assert_eq!(n[0]["status"], "cancelled");
    assert_eq!(n[0]["reason"], "Tết Nguyên Đán");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_admission_and_authz() {
    let (server, clock, addr, op, market) = market_server(WEDNESDAY, |_| {}).await;
    let a = create_seller(addr, &op, "HTX A").await;
    let b = create_seller(addr, &op, "HTX B").await;
    let pa = product(addr, &op, &a, "Chè Tân Cương", 4, docs("2027-12-31")).await;
    let pb = product(addr, &op, &b, "Miến dong", 5, docs("2027-12-31")).await;
    for p in [&pa, &pb] {
        admit(addr, &op, &market, p).await;
    }
    commit(addr, &market, &a, "2026-11-27").await;
    commit(addr, &market, &b, "2026-11-27").await;

    // Authz: only operators create markets, admit and schedule.
    let seller_tok = token(Role::Seller, &a);
    let viewer_tok = token(Role::Viewer, "buyer-1");
    for tok in [&seller_tok, &viewer_tok] {
        let (s, _) = post(addr, "/api/markets", tok, json!({})).await;
        assert_eq!(s, 403);
        let (s, _) = post(
            addr,
            &format!("/api/markets/{market}/admissions"),
            tok,
            json!({"product_id": pa, "approved": true}),
        )
        .await;
        assert_eq!(s, 403);
        let (s, _) = schedule(addr, tok, &market, (&a, &pa), ("20:30", "21:00")).await;
        assert_eq!(s, 403);
    }
    let (s, _) = http(addr, "POST", "/api/markets", None, Some(&json!({}))).await;
    assert_eq!(s, 401);

    // Slots: outside the night, inside, same-seller overlap, another seller overlapping.
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("20:00", "21:00")).await;
    assert_error(s, &e, 409, "slot_unavailable");
    let (s, first) = schedule(addr, &op, &market, (&a, &pa), ("20:30", "21:30")).await;
    assert_eq!(s, 201, "{first}");
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("21:00", "22:00")).await;
    assert_eq!(s, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap()),
        "{e}"
    );
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("21:30", "22:00")).await;
    assert_eq!(s, 201, "touching slots are fine: {e}");
    let offset = ("20:30+07:00", "21:30+07:00");
    let (s, e) = schedule(addr, &op, &market, (&b, &pb), offset).await;
    assert_eq!(s, 201, "another seller may overlap: {e}");
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("22:00", "21:45")).await;
    assert_eq!(s, 400, "{e}");

    // Admission refusals, each reason.
    let c = create_seller(addr, &op, "HTX C").await;
    let two_stars = product(addr, &op, &c, "Hai sao", 2, docs("2027-12-31")).await;
    let expired = product(addr, &op, &c, "Hết hạn", 4, docs("2026-11-26")).await;
    let no_docs = product(addr, &op, &c, "Thiếu giấy", 4, json!([])).await;
    let later = product(addr, &op, &c, "Chưa hiệu lực", 4, json!([
        {"kind": "ocop_certificate", "reference": "X", "valid_from": "2026-12-01", "valid_until": "2028-01-01"},
        {"kind": "origin_proof", "reference": "Y", "valid_from": "2024-01-01", "valid_until": "2028-01-01"},
        {"kind": "quality_label", "reference": "Z", "valid_from": "2024-01-01", "valid_until": "2028-01-01"},
    ])).await;
    let rejected = product(addr, &op, &c, "Bị từ chối", 4, docs("2027-12-31")).await;
    let unreviewed = product(addr, &op, &c, "Chưa duyệt", 4, docs("2027-12-31")).await;
    for p in [&two_stars, &expired, &no_docs, &later] {
        admit(addr, &op, &market, p).await;
    }
    let (s, d) = post(
        addr,
        &format!("/api/markets/{market}/admissions"),
        &op,
        json!({"product_id": rejected, "approved": false}),
    )
    .await;
    assert_eq!(s, 400, "a rejection needs a reason: {d}");
    let (s, _) = post(
        addr,
        &format!("/api/markets/{market}/admissions"),
        &op,
        json!({"product_id": rejected, "approved": false, "reason": "Nhãn không khớp"}),
    )
    .await;
    assert_eq!(s, 201);
    let want = [
        (&two_stars, "stars_below_minimum"),
        (&expired, "document_expired"),
        (&no_docs, "document_missing"),
        (&later, "document_not_yet_valid"),
        (&rejected, "rejected"),
        (&unreviewed, "not_approved"),
        (&pa, "commitment_missing"),
    ];
    for (p, reason) in want {
        // Seller C has not signed for the night; seller A's product is used to test that alone.
        let seller = if p == &pa { &a } else { &c };
        let night_start = if p == &pa { "22:30" } else { "20:30" };
        if p == &pa {
            // A fresh night without A's commitment.
            let (s, e) = post(addr, &format!("/api/markets/{market}/nights/2026-12-04/shows"), &op, json!({
                "seller_id": seller, "title": "t", "slot_start": "2026-12-04T21:00", "slot_end": "2026-12-04T21:30",
                "stream_url": "https://www.tiktok.com/@chodem/live", "lineup": [{"product_id": p, "stock": 5, "buyer_limit": 1}]})).await;
            assert_error(s, &e, 422, "not_admitted");
            assert!(
                e["error"]["details"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["reason"] == reason),
                "{e}"
            );
            continue;
        }
        commit(addr, &market, seller, "2026-11-27").await;
        let (s, e) = schedule(addr, &op, &market, (seller, p), (night_start, "21:00")).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (422, Some("not_admitted")),
            "{reason}: {e}"
        );
        let reasons: Vec<&str> = e["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reason"].as_str().unwrap())
            .collect();
        assert!(reasons.contains(&reason), "{reason}: {reasons:?}");
    }
    // The decision history keeps who and when.
    let (s, hist) = get(
        addr,
        &format!("/api/markets/{market}/admissions?product_id={rejected}"),
        Some(&op),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(hist[0]["decided_by"], "operator:ops-hanoi");
    assert_eq!(hist[0]["reason"], "Nhãn không khớp");

    // An admitted show whose product is then rejected cannot go live, by hand or on time, and
    // the operator is warned.
    let show = first["id"].as_str().unwrap();
    let (s, _) = post(
        addr,
        &format!("/api/markets/{market}/admissions"),
        &op,
        json!({"product_id": pa, "approved": false, "reason": "Khiếu nại chất lượng"}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, w) = get(addr, "/api/schedule/warnings", Some(&op)).await;
    assert_eq!(s, 200);
    assert!(
        w.as_array().unwrap().iter().any(|x| x["show_id"] == show),
        "{w}"
    );
    clock.set(FRIDAY_2030 - 5 * MINUTE);
    let (s, e) = post(
        addr,
        &format!("/api/shows/{show}/live"),
        &seller_tok,
        json!({}),
    )
    .await;
    assert_error(s, &e, 422, "not_admitted");
    clock.set(FRIDAY_2030 + MINUTE);
    // A window of several lifecycle ticks in which the show would wrongly open.
    quiet_for(std::time::Duration::from_millis(300)).await;
    assert_eq!(status_of(addr, show).await, "scheduled");
    // Seller B may start early within the window, not before.
    let bshow = {
        let (_, l) = get(
            addr,
            &format!("/api/sellers/{b}/shows"),
            Some(&token(Role::Seller, &b)),
        )
        .await;
        l[0]["id"].as_str().unwrap().to_owned()
    };
    clock.set(FRIDAY_2030 - 20 * MINUTE);
    let (s, e) = post(
        addr,
        &format!("/api/shows/{bshow}/live"),
        &token(Role::Seller, &b),
        json!({}),
    )
    .await;
    assert_error(s, &e, 409, "invalid_state");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_whose_end_passed_while_down_is_closed_at_start() {
    let (server, clock, addr, op, market) = market_server(WEDNESDAY, |_| {}).await;
    let (a, pa) = ready_seller(addr, &op, &market, "Gạo nếp cái hoa vàng").await;
    let (_, live_one) = schedule(addr, &op, &market, (&a, &pa), ("20:30", "21:00")).await;
    let (_, never) = schedule(addr, &op, &market, (&a, &pa), ("21:00", "21:30")).await;
    let (live_one, never) = (
        live_one["id"].as_str().unwrap().to_owned(),
        never["id"].as_str().unwrap().to_owned(),
    );
    clock.set(FRIDAY_2030);
    wait_status(addr, &live_one, "live").await;
    let dir = server.stop_keep_dir().await;

    // The server is down through the rest of the night.
    clock.set(FRIDAY_2030 + 6 * 60 * MINUTE);
    let server = TestServer::start_clocked(dir, clock.clone(), fast).await;
    wait_status(server.addr, &live_one, "closed").await;
    wait_status(server.addr, &never, "closed").await;
    server.shutdown().await;
}

/// A night that has ended is history: no show, commitment or exception can be added to it,
/// and a slot that has already ended is refused on tonight's night too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_nights_are_read_only() {
    // Friday 2026-11-27, 22:00 in Hanoi: the night runs until 23:00.
    let (server, clock, addr, op, market) = market_server(FRIDAY_2030 + 90 * MINUTE, |_| {}).await;
    let (a, pa) = ready_seller(addr, &op, &market, "Chè Tân Cương").await;

    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("20:30", "21:00")).await;
    assert_error(s, &e, 409, "slot_unavailable");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("slot_end"),
        "{e}"
    );
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("22:30", "23:00")).await;
    assert_eq!(s, 201, "a slot still to come tonight: {e}");

    // Past 23:00 the night is over for everything.
    clock.set(FRIDAY_2030 + 151 * MINUTE);
    let (s, e) = schedule(addr, &op, &market, (&a, &pa), ("22:00", "22:30")).await;
    assert_error(s, &e, 409, "night_over");
    let (s, e) = post(
        addr,
        &format!("/api/markets/{market}/nights/2026-11-27/commitments"),
        &token(Role::Seller, &a),
        json!({"statement": "Tôi cam kết sản phẩm đúng chất lượng đã công bố"}),
    )
    .await;
    assert_error(s, &e, 409, "night_over");
    let path = format!("/api/markets/{market}/exceptions");
    let exception = async |body: serde_json::Value| post(addr, &path, &op, body).await;
    let (s, e) =
        exception(json!({"night_date": "2026-11-20", "kind": "cancelled", "reason": "mưa bão"}))
            .await;
    assert_error(s, &e, 409, "night_over");
    let (s, e) = exception(json!({"night_date": "2026-12-04", "kind": "moved", "moved_to": "2026-11-26T20:30", "reason": "đổi lịch"}))
    .await;
    assert_error(s, &e, 400, "bad_request");
    let (s, e) = exception(
        json!({"night_date": "2027-02-05", "kind": "cancelled", "reason": "Tết Nguyên Đán"}),
    )
    .await;
    assert_eq!(s, 201, "a night to come: {e}");
    server.shutdown().await;
}
