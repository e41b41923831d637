//! The webhook deliverer against a real HTTP receiver on 127.0.0.1, on SQLite and on
//! PostgreSQL (the one `scripts/test` provides). Time is a manual clock: retries come due only
//! when a test moves it.
#![allow(clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use nightmarket_domain::Millis;
use nightmarket_server::clock::ManualClock;
use nightmarket_server::config::{Config, WebhookLimits};
use nightmarket_server::jobs::webhooks::{Deliverer, SignatureError, sign, verify};
use nightmarket_store::{DeliveryRow, Store, WebhookEvent, WebhookRow, testing};
use tokio::net::TcpListener;

/// 2025-11-27 16:00 UTC, a market night.
const T0: Millis = 1_764_259_200_000;
const SECRET: &str = "whsec_test_0123456789";
/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The store under test.
// ---------------------------------------------------------------------------------------------

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    async fn sqlite() -> Self {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Self {
        let url = testing::test_database_url().unwrap();
        Db::Postgres(testing::fresh_database(&url).await.unwrap())
    }

    /// A store handle of its own, as one node would have.
    async fn open(&self) -> Arc<Store> {
        Arc::new(match self {
            Db::Sqlite(dir) => Store::sqlite(&dir.path().join("catalog.sqlite"))
                .await
                .unwrap(),
            Db::Postgres(url) => Store::postgres(url, 4, Duration::from_secs(5))
                .await
                .unwrap(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A receiver that records every request and answers as scripted.
// ---------------------------------------------------------------------------------------------

struct Received {
    headers: HeaderMap,
    body: Bytes,
    /// The signature checked on arrival, against the deliverer's clock.
    signature: Result<(), SignatureError>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    body: &'static str,
    delay_ms: u64,
}

const OK: Answer = Answer {
    status: 200,
    body: "ok",
    delay_ms: 0,
};

fn answer(status: u16, body: &'static str) -> Answer {
    Answer {
        status,
        body,
        delay_ms: 0,
    }
}

struct ReceiverState {
    clock: ManualClock,
    requests: Mutex<Vec<Received>>,
    /// Answers for the next requests, in order; then `otherwise`.
    script: Mutex<VecDeque<Answer>>,
    otherwise: Answer,
}

#[derive(Clone)]
struct Receiver(Arc<ReceiverState>);

impl Receiver {
    fn new(clock: &ManualClock, script: &[Answer], otherwise: Answer) -> Self {
        Self(Arc::new(ReceiverState {
            clock: clock.clone(),
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
        }))
    }

    /// Serves on `listener` until the test ends.
    fn serve(&self, listener: TcpListener) -> String {
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    async fn start(clock: &ManualClock, script: &[Answer], otherwise: Answer) -> (Self, String) {
        let r = Self::new(clock, script, otherwise);
        let url = r.serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
        (r, url)
    }

    fn count(&self) -> usize {
        self.0.requests.lock().unwrap().len()
    }

    fn with<T>(&self, f: impl FnOnce(&[Received]) -> T) -> T {
        f(&self.0.requests.lock().unwrap())
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let now_secs = r.0.clock.now_secs();
    let signature = match headers.get("nightmarket-signature") {
        Some(h) => verify(SECRET, h.to_str().unwrap_or(""), &body, now_secs, 300),
        None => Err(SignatureError::Malformed("no header")),
    };
    r.0.requests.lock().unwrap().push(Received {
        headers,
        body,
        signature,
    });
    let a =
        r.0.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(r.0.otherwise);
    if a.delay_ms > 0 {
        // A slow receiver, as scripted: the delay is the behaviour under test.
        tokio::time::sleep(Duration::from_millis(a.delay_ms)).await;
    }
    (StatusCode::from_u16(a.status).unwrap(), a.body.to_owned())
}

trait Secs {
    fn now_secs(&self) -> i64;
}

impl Secs for ManualClock {
    fn now_secs(&self) -> i64 {
        use nightmarket_server::clock::Clock;
        self.now().div_euclid(1000)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn limits() -> WebhookLimits {
    let mut l = Config::defaults().unwrap().webhooks;
    // The receivers listen on 127.0.0.1.
    l.allow_private_targets = true;
    l.timeout_ms = 5_000;
    l.lease_ms = 30_000;
    l.poll_ms = 10;
    l
}

async fn webhook(store: &Store, id: &str, url: &str) {
    store
        .create_webhook(&WebhookRow {
            id: id.into(),
            url: url.into(),
            secret: SECRET.into(),
            events: vec!["*".into()],
            active: true,
            created_by: "operator-1".into(),
            created_at: T0,
        })
        .await
        .unwrap();
}

/// Enqueues `show.live` of show `n` and returns the payload.
async fn event(store: &Store, n: u32) -> String {
    let payload = serde_json::json!({
        "id": format!("show.live:show-{n}"),
        "type": "show.live",
        "at": T0,
        "show": {"id": format!("show-{n}"), "title": "Tea from Thai Nguyen", "status": "live"},
    })
    .to_string();
    store
        .enqueue_event(&WebhookEvent {
            id: format!("show.live:show-{n}"),
            name: "show.live".into(),
            payload: payload.clone(),
            at: T0,
        })
        .await
        .unwrap();
    payload
}

async fn only_delivery(store: &Store) -> DeliveryRow {
    let mut log = store.deliveries(None, 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    log.remove(0)
}

fn deliverer(store: &Arc<Store>, limits: WebhookLimits, clock: &ManualClock) -> Deliverer {
    Deliverer::new(store.clone(), limits, Arc::new(clock.clone())).unwrap()
}

/// Waits until `check` holds, polling.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The retry time of a pending delivery: after `backoff` from `now`, within 10% jitter.
fn assert_retry_at(d: &DeliveryRow, now: Millis, backoff: Millis) {
    assert_eq!(d.state, "pending", "{d:?}");
    assert!(
        d.next_attempt_at >= now + backoff && d.next_attempt_at <= now + backoff + backoff / 10,
        "next attempt {} not within [{}, {}]",
        d.next_attempt_at,
        now + backoff,
        now + backoff + backoff / 10
    );
}

// ---------------------------------------------------------------------------------------------
// The cases, each run on SQLite and on PostgreSQL.
// ---------------------------------------------------------------------------------------------

/// (1) Delivered on the first attempt, signed, with every header; the log says so.
async fn delivered_first_time(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[], OK).await;
    webhook(&store, "w1", &url).await;
    let payload = event(&store, 1).await;
    let d = deliverer(&store, limits(), &clock);

    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    receiver.with(|reqs| {
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.signature, Ok(()));
        assert_eq!(r.body, payload.as_bytes());
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.header("user-agent"),
            format!("nightmarket/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(r.header("nightmarket-event"), "show.live");
        assert_eq!(r.header("nightmarket-delivery"), row.id);
        assert!(
            r.header("nightmarket-signature")
                .starts_with(&format!("t={},v1=", T0 / 1000))
        );
    });
    assert_eq!(row.state, "delivered");
    assert_eq!(row.last_status, Some(200));
    assert_eq!(row.last_error, None);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.delivered_at, Some(T0));
    assert_eq!(d.counters().delivered.load(Ordering::Relaxed), 1);

    // Nothing more to do, now or later.
    clock.advance(3_600_000);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    assert_eq!(receiver.count(), 1);
}

/// (2) 503 twice, then 200: three attempts, each only once its backoff has passed, all with
/// one delivery id.
async fn retries_follow_backoff(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let busy = answer(503, "busy, try later");
    let (receiver, url) = Receiver::start(&clock, &[busy, busy], OK).await;
    webhook(&store, "w1", &url).await;
    event(&store, 1).await;
    let d = deliverer(&store, limits(), &clock);

    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(503));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 503: busy, try later"));
    assert_retry_at(&row, T0, 1_000);

    // Not before the backoff has passed.
    clock.set(T0 + 999);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    clock.set(row.next_attempt_at - 1);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    assert_eq!(receiver.count(), 1);

    // The second attempt, then twice the backoff.
    let second = row.next_attempt_at;
    clock.set(second);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.attempts, 2);
    assert_retry_at(&row, second, 2_000);
    clock.set(row.next_attempt_at - 1);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    assert_eq!(receiver.count(), 2);

    clock.set(row.next_attempt_at);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "delivered");
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_status, Some(200));
    assert_eq!(row.last_error, None);

    receiver.with(|reqs| {
        assert_eq!(reqs.len(), 3);
        for r in reqs {
            assert_eq!(r.signature, Ok(()));
            assert_eq!(r.header("nightmarket-delivery"), row.id);
        }
    });
    let c = d.counters();
    assert_eq!(c.retry.load(Ordering::Relaxed), 2);
    assert_eq!(c.delivered.load(Ordering::Relaxed), 1);
}

/// (3) Nobody listens: the attempt fails with "connection refused" and is retried; once the
/// receiver is up on that port, the retry is delivered.
async fn receiver_down_then_up(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let addr: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    webhook(&store, "w1", &format!("http://{addr}/hook")).await;
    event(&store, 1).await;
    let d = deliverer(&store, limits(), &clock);

    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.last_status, None);
    let error = row.last_error.clone().unwrap();
    assert!(error.contains("connection refused"), "{error}");
    assert_retry_at(&row, T0, 1_000);

    let receiver = Receiver::new(&clock, &[], OK);
    receiver.serve(TcpListener::bind(addr).await.unwrap());
    clock.set(row.next_attempt_at);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "delivered");
    assert_eq!(row.attempts, 2);
    assert_eq!(receiver.count(), 1);
}

/// (4) A receiver that always fails: after `attempts` attempts the delivery is failed and
/// never attempted again.
async fn attempts_exhausted(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[], answer(500, "")).await;
    webhook(&store, "w1", &url).await;
    event(&store, 1).await;
    let mut l = limits();
    l.attempts = 3;
    let d = deliverer(&store, l, &clock);

    for attempt in 1..=3 {
        assert_eq!(d.deliver_due().await.unwrap(), 1, "attempt {attempt}");
        let row = only_delivery(&store).await;
        assert_eq!(row.attempts, attempt);
        if attempt < 3 {
            assert_eq!(row.state, "pending");
            assert_eq!(
                row.last_error.as_deref(),
                Some("HTTP 500 Internal Server Error")
            );
            clock.set(row.next_attempt_at);
        }
    }
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "failed");
    assert_eq!(row.last_status, Some(500));
    let error = row.last_error.unwrap();
    assert!(error.starts_with("HTTP 500"), "{error}");
    assert!(error.contains("gave up after 3 attempts"), "{error}");

    clock.advance(7 * 24 * 3_600_000);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    assert_eq!(receiver.count(), 3);
    let c = d.counters();
    assert_eq!(c.retry.load(Ordering::Relaxed), 2);
    assert_eq!(c.failed.load(Ordering::Relaxed), 1);
}

/// (5) 410 Gone: the receiver wants no more; failed after one attempt.
async fn gone_fails_at_once(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[], answer(410, "unsubscribed")).await;
    webhook(&store, "w1", &url).await;
    event(&store, 1).await;
    let d = deliverer(&store, limits(), &clock);

    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "failed");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(410));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 410: unsubscribed"));
    clock.advance(7 * 24 * 3_600_000);
    assert_eq!(d.deliver_due().await.unwrap(), 0);
    assert_eq!(receiver.count(), 1);
}

/// (6) Two nodes, each with its own store handle and deliverer, running at once: every
/// delivery is POSTed exactly once.
async fn two_nodes_deliver_each_once(db: Db) {
    const EVENTS: u32 = 60;
    let store_a = db.open().await;
    let store_b = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[], OK).await;
    webhook(&store_a, "w1", &url).await;
    let mut l = limits();
    l.batch = 4;
    l.max_in_flight = 4;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for store in [&store_a, &store_b] {
        let d = deliverer(store, l.clone(), &clock);
        let mut stopped = stopped.clone();
        nodes.push(tokio::spawn(async move {
            let counters = d.clone();
            d.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
            counters.counters().delivered.load(Ordering::Relaxed)
        }));
    }
    for n in 0..EVENTS {
        event(&store_b, n).await;
    }
    eventually("every delivery delivered", || async {
        let log = store_a.deliveries(None, 1000).await.unwrap();
        log.len() == EVENTS as usize && log.iter().all(|d| d.state == "delivered")
    })
    .await;
    stop.send(true).unwrap();
    let mut delivered = 0;
    for node in nodes {
        delivered += tokio::time::timeout(WAIT, node).await.unwrap().unwrap();
    }
    assert_eq!(delivered, u64::from(EVENTS));
    receiver.with(|reqs| {
        assert_eq!(reqs.len(), EVENTS as usize);
        let ids: HashSet<&str> = reqs
            .iter()
            .map(|r| r.header("nightmarket-delivery"))
            .collect();
        assert_eq!(ids.len(), EVENTS as usize, "a delivery was POSTed twice");
        assert!(reqs.iter().all(|r| r.signature.is_ok()));
    });
    for d in store_a.deliveries(None, 1000).await.unwrap() {
        assert_eq!(d.attempts, 1, "{d:?}");
    }
}

/// The running loop notices a retry coming due when the clock moves, not before, and stops
/// on shutdown.
async fn run_picks_up_retries(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[answer(503, "")], OK).await;
    webhook(&store, "w1", &url).await;
    let d = deliverer(&store, limits(), &clock);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(d.run(stopped));

    event(&store, 1).await;
    eventually("first attempt", || async { receiver.count() == 1 }).await;
    eventually("first attempt recorded", || async {
        only_delivery(&store).await.last_status == Some(503)
    })
    .await;
    // Several polls go by with the clock still: no second attempt.
    testing::quiet_for(Duration::from_millis(100)).await;
    assert_eq!(receiver.count(), 1);

    clock.set(only_delivery(&store).await.next_attempt_at);
    eventually("retry delivered", || async {
        only_delivery(&store).await.state == "delivered"
    })
    .await;
    assert_eq!(receiver.count(), 2);
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, node).await.unwrap().unwrap();
}

/// A receiver slower than `timeout_ms`: the attempt fails as timed out and is retried.
async fn slow_receiver_times_out(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let slow = Answer {
        status: 200,
        body: "",
        delay_ms: 5_000,
    };
    let (receiver, url) = Receiver::start(&clock, &[slow], OK).await;
    webhook(&store, "w1", &url).await;
    event(&store, 1).await;
    let mut l = limits();
    l.timeout_ms = 200;
    let d = deliverer(&store, l, &clock);

    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "pending");
    assert_eq!(row.last_error.as_deref(), Some("timed out after 200 ms"));
    clock.set(row.next_attempt_at);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    assert_eq!(only_delivery(&store).await.state, "delivered");
    assert_eq!(receiver.count(), 2);
}

/// A URL that is neither http:// nor https:// is not attempted over the network: failed with
/// the reason.
async fn other_schemes_fail_clearly(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    webhook(&store, "w1", "ftp://example.invalid/hook").await;
    event(&store, 1).await;
    let d = deliverer(&store, limits(), &clock);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "failed");
    let error = row.last_error.unwrap();
    assert!(
        error.contains("ftp") && error.contains("https://"),
        "{error}"
    );
}

/// Without `allow_private_targets`, a receiver on a loopback address, whether written as an
/// address or as a name that resolves to one, is never contacted: the delivery fails at once
/// with the reason.
async fn private_targets_are_not_contacted(db: Db) {
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let (receiver, url) = Receiver::start(&clock, &[], OK).await;
    let by_name = url.replace("127.0.0.1", "localhost.");
    webhook(&store, "w1", &url).await;
    webhook(&store, "w2", &by_name).await;
    event(&store, 1).await;
    let mut l = limits();
    l.allow_private_targets = false;
    let d = deliverer(&store, l, &clock);
    assert_eq!(d.deliver_due().await.unwrap(), 2);
    let rows = store.deliveries(None, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.state, "failed", "{row:?}");
        let error = row.last_error.unwrap();
        assert!(error.contains("allow_private_targets"), "{error}");
    }
    assert_eq!(receiver.count(), 0, "nothing reached the receiver");
}

/// A TCP listener that completes a TLS handshake with `acceptor` before handing a connection
/// to axum; connections whose handshake fails are dropped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// HTTPS receivers work: a receiver whose certificate a private CA vouches for (given in
/// `webhooks.ca_file`) gets the signed event; without that root it is not trusted.
async fn https_receiver_with_a_private_ca(db: Db) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = db.open().await;
    let clock = ManualClock::new(T0);
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, issued.cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![issued.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into()),
        )
        .unwrap();
    let receiver = Receiver::new(&clock, &[], OK);
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });

    webhook(&store, "w1", &format!("https://localhost:{port}/hook")).await;
    event(&store, 1).await;
    // The system's roots alone do not vouch for the receiver: a retry is due.
    let d = deliverer(&store, limits(), &clock);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "pending", "{row:?}");
    assert!(row.last_error.is_some());
    assert_eq!(receiver.count(), 0);

    let mut l = limits();
    l.ca_file = ca_file.display().to_string();
    let d = deliverer(&store, l, &clock);
    clock.set(row.next_attempt_at);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let row = only_delivery(&store).await;
    assert_eq!(row.state, "delivered", "{row:?}");
    receiver.with(|r| {
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].signature, Ok(()));
    });
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::postgres().await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    delivered_first_time,
    retries_follow_backoff,
    receiver_down_then_up,
    attempts_exhausted,
    gone_fails_at_once,
    two_nodes_deliver_each_once,
    run_picks_up_retries,
    slow_receiver_times_out,
    other_schemes_fail_clearly,
    private_targets_are_not_contacted,
    https_receiver_with_a_private_ca,
);

// ---------------------------------------------------------------------------------------------
// (7) Signatures, as a receiver checks them.
// ---------------------------------------------------------------------------------------------

#[test]
fn tampered_or_stale_signatures_fail() {
    let body = br#"{"id":"show.live:show-1","type":"show.live"}"#;
    let t = T0 / 1000;
    let header = sign(SECRET, t, body);
    assert_eq!(verify(SECRET, &header, body, t, 300), Ok(()));
    assert_eq!(verify(SECRET, &header, body, t + 300, 300), Ok(()));

    let tampered = br#"{"id":"show.live:show-1","type":"show.closed"}"#;
    assert_eq!(
        verify(SECRET, &header, tampered, t, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify("another secret", &header, body, t, 300),
        Err(SignatureError::Mismatch)
    );
    // The timestamp is signed too: moving it breaks the signature.
    let moved = header.replace(&format!("t={t}"), &format!("t={}", t + 1));
    assert_eq!(
        verify(SECRET, &moved, body, t, 300),
        Err(SignatureError::Mismatch)
    );
    // Too old, or from too far in the future.
    assert!(matches!(
        verify(SECRET, &header, body, t + 301, 300),
        Err(SignatureError::Stale { .. })
    ));
    assert!(matches!(
        verify(SECRET, &header, body, t - 301, 300),
        Err(SignatureError::Stale { .. })
    ));
    assert!(matches!(
        verify(SECRET, "garbage", body, t, 300),
        Err(SignatureError::Malformed(_))
    ));
}
