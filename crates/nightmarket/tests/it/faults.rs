//! Distributed mode under faults: the server on port 0 over a redis-server of the test's own,
//! which the test hangs (SIGSTOP), resumes, kills and starts again. Viewers talk over real
//! WebSocket connections; readiness is read over HTTP.

use std::time::{Duration, Instant};

use crate::support::{Client, Ended, Market, TestServer, get, token};
use nightmarket_inventory::testing::OwnRedis;
use nightmarket_server::auth::Role;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ClaimResult, ServerMessage};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

/// The claim deadline of these tests.
const DEADLINE_MS: u64 = 300;

async fn server_on(redis: &OwnRedis) -> TestServer {
    server_with(redis, 20).await
}

async fn server_with(redis: &OwnRedis, in_flight: usize) -> TestServer {
    let url = redis.url();
    TestServer::start(move |c| {
        c.redis_url = url;
        c.limits.claims_in_flight = in_flight;
        c.limits.claim_deadline_ms = DEADLINE_MS;
        c.limits.messages_per_second = 1000;
        c.limits.message_burst = 1000;
    })
    .await
}

/// Polls `/readyz` until its readiness is `ready`; returns the body and how long it took.
async fn readiness(addr: std::net::SocketAddr, ready: bool, within: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let (status, body) = get(addr, "/readyz", None).await;
        assert_eq!(status == 200, body["ready"] == true, "{status} {body}");
        if body["ready"] == ready {
            return (body, start.elapsed());
        }
        assert!(
            start.elapsed() < within + Duration::from_secs(2),
            "readyz still {body} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dependency<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Clients get codes and fixed words: the driver's text (hosts, OS errors) stays in the log.
fn no_driver_text(answer: &str) {
    for word in ["redis:", "os error", "refused", "Connection", "timed out"] {
        assert!(!answer.contains(word), "{word:?} in {answer}");
    }
}

async fn claim_result(c: &mut Client, id: &str) -> ClaimResult {
    c.until(|m| match m {
        ServerMessage::ClaimResult(r) if r.claim_id == id => Some(r.clone()),
        _ => None,
    })
    .await
}

fn claim(id: &str, product: &str, price: i64) -> Value {
    json!({"type": "claim", "claim_id": id, "product_id": product, "quantity": 1, "price": price})
}

/// A claim sent to a hung Redis is answered `pending` at its deadline, the connection keeps
/// answering pings, later claims are refused at once while Redis is known down, and once Redis
/// resumes the pending claim's real answer follows: it ran after its deadline, so it took
/// nothing (`unavailable`), and retrying it with the same id is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_a_hung_redis_is_pending_then_answered_and_never_taken_late() {
    let redis = OwnRedis::start(&[]);
    let server = server_on(&redis).await;
    let m = Market::create(server.addr, &[90_000], 10, 5, true).await;
    let _seller = m.pinned_seller(0).await;
    let mut viewer = Client::viewer(server.addr, &m.show, "b1").await;
    let (ready, _) = readiness(server.addr, true, Duration::ZERO).await;
    let names: Vec<&str> = ready["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["redis", "sqlite"]);

    redis.pause();
    let sent = Instant::now();
    viewer.send(claim("c1", m.product(0), 90_000)).await;
    let first = claim_result(&mut viewer, "c1").await;
    let waited = sent.elapsed();
    assert_eq!(first.outcome, ClaimOutcomeKind::Pending, "{first:?}");
    assert!(
        waited >= Duration::from_millis(DEADLINE_MS - 50) && waited < Duration::from_secs(2),
        "pending at the deadline, not before or long after: {waited:?}"
    );
    // The session keeps reading while the claim is out.
    let pong = viewer.ping().await;
    assert!(pong < Duration::from_millis(500), "pong after {pong:?}");

    let (body, took) = readiness(server.addr, false, Duration::from_secs(1)).await;
    let r = dependency(&body, "redis");
    assert_eq!(r["state"], "failing", "{body}");
    assert!(
        r["last_error"].is_string() && r["detail"].is_string(),
        "{body}"
    );
    assert_eq!(dependency(&body, "sqlite")["state"], "ok");
    no_driver_text(&body.to_string());
    println!("readyz failing {took:?} after the probe could see it");

    // Known down: not waited for.
    let sent = Instant::now();
    let fast = viewer.claim("c2", m.product(0), 1, 90_000).await;
    assert_eq!(fast.outcome, ClaimOutcomeKind::Refused, "{fast:?}");
    assert_eq!(fast.reason, Some(ErrorCode::Unavailable));
    no_driver_text(fast.message.as_deref().unwrap_or_default());
    assert!(
        sent.elapsed() < Duration::from_millis(200),
        "{:?}",
        sent.elapsed()
    );

    // Hung for well past the deadline, then resumed: what queued runs now, and is refused. The
    // hang's length is what the test is about, not a wait for something to happen.
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.resume();
    let real = claim_result(&mut viewer, "c1").await;
    assert_eq!(real.outcome, ClaimOutcomeKind::Refused, "{real:?}");
    assert_eq!(real.reason, Some(ErrorCode::Unavailable), "{real:?}");
    let (body, took) = readiness(server.addr, true, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "ready again after {took:?}");
    assert!(dependency(&body, "redis")["last_error"].is_string());

    // Nothing was taken; the same claim id, retried, is decided now.
    nothing_taken(server.addr, &m).await;
    let again = viewer.claim("c1", m.product(0), 1, 90_000).await;
    assert_eq!(again.outcome, ClaimOutcomeKind::Accepted, "{again:?}");
    assert_eq!(again.stock_left, Some(9));
    server.shutdown().await;
}

/// A viewer who closes while their claims wait on a hung Redis gets the close handshake at
/// once; the claims, never answered, never take a unit. Beyond `claims_in_flight`, a claim is
/// refused `rate_limited` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_with_a_claim_in_flight_is_answered_and_the_claim_never_lands() {
    let redis = OwnRedis::start(&[]);
    let server = server_with(&redis, 2).await;
    let m = Market::create(server.addr, &[90_000], 10, 5, true).await;
    let _seller = m.pinned_seller(0).await;
    let mut viewer = Client::viewer(server.addr, &m.show, "b1").await;

    redis.pause();
    viewer.send(claim("gone", m.product(0), 90_000)).await;
    viewer.send(claim("gone-too", m.product(0), 90_000)).await;
    viewer
        .send(claim("one-too-many", m.product(0), 90_000))
        .await;
    let over = claim_result(&mut viewer, "one-too-many").await;
    assert_eq!(over.reason, Some(ErrorCode::RateLimited), "{over:?}");
    let closing = Instant::now();
    viewer
        .send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(2), viewer.drain_to_end())
        .await
        .expect("close handshake within 2 s");
    assert!(matches!(ended, Ended::Close(_)), "{ended:?}");
    assert!(
        closing.elapsed() < Duration::from_secs(1),
        "{:?}",
        closing.elapsed()
    );

    // Redis stays hung past the deadline: the fault's length, not a wait for something.
    tokio::time::sleep(Duration::from_millis(DEADLINE_MS + 200)).await;
    redis.resume();
    readiness(server.addr, true, Duration::from_secs(1)).await;
    nothing_taken(server.addr, &m).await;
    server.shutdown().await;
}

/// `/readyz` follows Redis: failing within a second of it dying, ready within a second of it
/// being back, the last error kept; and the server logs the outage as JSON lines without
/// colour codes, a few warnings backing off rather than one per probe, then "back".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_logs_follow_redis_dying_and_coming_back() {
    use tokio::io::AsyncBufReadExt;
    let redis = OwnRedis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let mut child = crate::support::command(EXE, dir.path(), &["serve"])
        .env("NIGHTMARKET_REDIS_URL", &url)
        .env("NIGHTMARKET_LOG", "info")
        .env("NIGHTMARKET_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next_line().await.unwrap().unwrap();
    let addr: std::net::SocketAddr = line
        .strip_prefix("nightmarket listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, mut logs) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            let _ = tx.send(l);
        }
    });
    readiness(addr, true, Duration::ZERO).await;

    let (port, dir) = redis.kill();
    let (body, took) = readiness(addr, false, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "failing after {took:?}");
    assert_eq!(dependency(&body, "redis")["state"], "failing");
    assert_eq!(dependency(&body, "redis")["last_error"], "error", "{body}");
    no_driver_text(&body.to_string());
    // An outage of some 3.5 s: its length is the fault under test.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _redis = OwnRedis::start_at(port, dir, &[]);
    let (body, took) = readiness(addr, true, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "ready after {took:?}");
    assert!(dependency(&body, "redis")["last_error"].is_string());

    // Every line up to the one that says Redis is back.
    let mut warnings = 0;
    let mut back = false;
    while !back {
        let line = tokio::time::timeout(crate::support::WAIT, logs.recv())
            .await
            .ok()
            .flatten()
            .expect("the log says when redis is back");
        assert!(
            !line.contains('\u{1b}'),
            "colour codes in a log file: {line}"
        );
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if v["level"] == "WARN" {
            warnings += 1;
        }
        back |= message == "redis is back";
    }
    // One per probe (250 ms) would be 14 from the prober alone, and as many from the feed.
    assert!(warnings <= 8, "{warnings} warnings in a 3.5 s outage");
    let _ = child.kill().await;
}

/// Plain-text logs written to a pipe carry no colour codes either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::command(EXE, dir.path(), &["serve"])
        .env("NIGHTMARKET_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let serving = tokio::time::timeout(crate::support::WAIT, async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("the server logs");
            assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
            if line.contains("nightmarket serving") {
                return line;
            }
        }
    })
    .await
    .expect("the serving line");
    assert!(serving.contains("INFO"), "{serving}");
    let _ = child.kill().await;
}

/// Nothing was taken while Redis hung: buyer `b1` holds no claim and all ten units are left.
async fn nothing_taken(addr: std::net::SocketAddr, m: &Market) {
    let mut check = Client::connect(addr, &m.show, &token(Role::Viewer, "b1"), None)
        .await
        .unwrap();
    let snap = check.snapshot().await;
    assert!(snap.my_claims.is_empty(), "{:?}", snap.my_claims);
    assert_eq!(snap.lineup[0].left, 10);
}
