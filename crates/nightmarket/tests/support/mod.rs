//! Helpers for the end-to-end tests: start the real server on port 0 (in this process, or the
//! `nightmarket` binary as a child process that can be killed), talk to it over real HTTP and
//! WebSocket connections, and build a market (seller, OCOP products, show) through its public
//! API. A module each test target includes (`#[path]`), not a crate: nothing but the binary
//! depends on the server.
#![allow(clippy::unwrap_used)]
// Each test target uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub mod proxy;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use nightmarket_server::auth::{Role, TokenKey};
use nightmarket_wire::server::{ClaimResult, ServerMessage, Snapshot};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The server's configuration, which [`TestServer::start`] lets a test adjust: named from here,
/// a crate's tests can start a server without depending on the server crate.
pub use nightmarket_server::config::Config;

/// How long a test waits for any single expected frame or response (as long as the store's
/// `testing::eventually`, which the end-to-end tests use to wait on a condition, waits).
pub const WAIT: Duration = Duration::from_secs(20);

/// A window in which nothing may happen: the store's, shared by every crate's tests.
pub use nightmarket_store::testing::quiet_for;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A configuration for tests: port 0, the given data dir, a known secret.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config::defaults().unwrap();
    c.listen = "127.0.0.1:0".into();
    c.data_dir = data_dir.to_owned();
    c.auth_secret = nightmarket_server::config::Secret::new(SECRET);
    // Test receivers listen on 127.0.0.1.
    c.webhooks.allow_private_targets = true;
    c
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// When [`token`]'s tokens are issued (2026-01-01T00:00Z, Unix seconds): before any instant a
/// test's manual clock is set to, since the server checks tokens on its own clock.
pub const TOKENS_ISSUED_AT_SECS: i64 = 1_767_225_600;

/// How long [`token`]'s tokens stay valid: ten years, so that both the wall clock and every
/// manual clock a test sets fall inside.
pub const TOKENS_VALID_FOR_SECS: i64 = 10 * 365 * 24 * 3600;

/// A token for `sub` with `role`, valid at every instant a test's clock may show.
pub fn token(role: Role, sub: &str) -> String {
    TokenKey::new(SECRET).mint(role, sub, TOKENS_ISSUED_AT_SECS, TOKENS_VALID_FOR_SECS)
}

/// The Redis the test command provides (`NIGHTMARKET_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_URL")
        .expect("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test")
}

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts the server on port 0 with a fresh data directory; `tweak` adjusts the config.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_on(dir, nightmarket_server::clock::system(), tweak).await
    }

    /// Starts the server over `dir` with a manual clock (time moves only when the test says).
    pub async fn start_clocked(
        dir: tempfile::TempDir,
        clock: nightmarket_server::clock::ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_on(dir, std::sync::Arc::new(clock), tweak).await
    }

    /// Starts the server over `dir` on `clock`, as `serve` does: the configuration validated,
    /// then the backends opened and served.
    async fn start_on(
        dir: tempfile::TempDir,
        clock: nightmarket_server::clock::SharedClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let backends = nightmarket_server::open_backends(&config, clock)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            nightmarket_server::serve_with(listener, config, backends, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown; waits for it to finish.
    pub async fn shutdown(self) {
        self.stop_keep_dir().await;
    }

    /// Graceful shutdown; returns the data directory for a restart over it.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, t).await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

/// The binary under test (`exe`) as a child process running `args` over `data_dir`: on port 0,
/// with the test secret, logging warnings, and without a configuration file or shared
/// backends, so the test's own environment never leaks in; the caller's `.env` calls come after
/// these and win. Killed when dropped.
pub fn command(
    exe: impl AsRef<std::ffi::OsStr>,
    data_dir: &Path,
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(exe);
    command
        .args(args)
        .env("NIGHTMARKET_LISTEN", "127.0.0.1:0")
        .env("NIGHTMARKET_DATA_DIR", data_dir)
        .env("NIGHTMARKET_AUTH_SECRET", SECRET)
        .env("NIGHTMARKET_LOG", "warn")
        .env_remove("NIGHTMARKET_CONFIG")
        .env_remove("NIGHTMARKET_REDIS_URL")
        .env_remove("NIGHTMARKET_DATABASE_URL")
        .env_remove("NIGHTMARKET_LOG_FORMAT")
        .kill_on_drop(true);
    command
}

/// The server binary running as a child process (so it can be killed with SIGKILL).
pub struct ChildServer {
    pub addr: SocketAddr,
    child: tokio::process::Child,
}

impl ChildServer {
    /// Starts `exe serve` (the binary `nightmarket`, whose path only integration
    /// tests know: `env!("CARGO_BIN_EXE_nightmarket")`) on port 0 over `data_dir`.
    pub async fn start(exe: impl Into<PathBuf>, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(exe, data_dir, &[]).await
    }

    /// Like [`ChildServer::start`], with extra environment (e.g. `NIGHTMARKET_REDIS_URL`).
    pub async fn start_with(
        exe: impl Into<PathBuf>,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn(exe.into(), data_dir, env, Stdio::inherit()).await
    }

    /// Like [`ChildServer::start_with`], with the server's log (JSON lines, at the level
    /// `filter` sets, e.g. `nightmarket_server=debug`) read by the test instead of printed.
    pub async fn start_logged(
        exe: impl Into<PathBuf>,
        data_dir: &Path,
        filter: &str,
    ) -> anyhow::Result<(
        Self,
        tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    )> {
        let env = [
            ("NIGHTMARKET_LOG", filter),
            ("NIGHTMARKET_LOG_FORMAT", "json"),
        ];
        let mut server = Self::spawn(exe.into(), data_dir, &env, Stdio::piped()).await?;
        let stderr = server
            .child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr"))?;
        Ok((server, BufReader::new(stderr).lines()))
    }

    async fn spawn(
        exe: PathBuf,
        data_dir: &Path,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> anyhow::Result<Self> {
        let mut child = command(exe, data_dir, &["serve"])
            // Test receivers listen on 127.0.0.1.
            .env("NIGHTMARKET_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawning the server binary")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("waiting for the listening line")??
            .ok_or_else(|| anyhow!("server exited before listening"))?;
        let addr = line
            .strip_prefix("nightmarket listening on ")
            .ok_or_else(|| anyhow!("unexpected first line {line:?}"))?
            .parse()?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { addr, child })
    }

    /// Two nodes sharing `env` (the same Redis and PostgreSQL), each over a data directory of
    /// its own, returned beside it.
    pub async fn two(exe: &str, env: &[(&str, &str)]) -> [(Self, tempfile::TempDir); 2] {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Self::start_with(exe, a_dir.path(), env).await.unwrap();
        let b = Self::start_with(exe, b_dir.path(), env).await.unwrap();
        [(a, a_dir), (b, b_dir)]
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// One HTTP/1.1 request; returns the status and the body text.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, token, &[], body).await;
    (status, body)
}

/// One HTTP/1.1 request with extra request headers; returns the status, the response headers
/// (names lowercase) and the body text, a chunked body decoded.
pub async fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    all.extend_from_slice(headers);
    let req = request(addr, method, path, &all, body);
    let (status, headers, payload) = exchange(addr, req.as_bytes()).await;
    (status, headers, String::from_utf8(payload).unwrap())
}

/// The text of one HTTP/1.1 request with a JSON body (empty if none) that closes its connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> String {
    let body = body.map(Value::to_string).unwrap_or_default();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` (a whole HTTP/1.1 request that asks to close the connection) and reads the
/// answer: the status, the response headers (names lowercase) and the body bytes, a chunked
/// body decoded.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let payload = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let payload = if chunked {
        dechunk(payload)
    } else {
        payload.to_vec()
    };
    (status, headers, payload)
}

/// The body of a chunked transfer; panics on a truncated one (no final empty chunk), which is
/// how a server signals a body that failed mid-way.
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut rest = body;
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = std::str::from_utf8(&rest[..eol]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest[size..].strip_prefix(b"\r\n").expect("chunk end");
    }
}

/// `GET path`, with `tok` as the bearer token if any: the status and the JSON body.
pub async fn get(addr: SocketAddr, path: &str, tok: Option<&str>) -> (u16, Value) {
    http(addr, "GET", path, tok, None).await
}

/// `POST path` with `body`, as `tok`: the status and the JSON body.
pub async fn post(addr: SocketAddr, path: &str, tok: &str, body: Value) -> (u16, Value) {
    http(addr, "POST", path, Some(tok), Some(&body)).await
}

/// `GET path` with no token, answered 200: the JSON body.
pub async fn get_ok(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// One HTTP/1.1 request; returns the status and the JSON body (Null if none).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, text) = http_raw(addr, method, path, token, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A GET without a token; the status and the raw body text.
pub async fn http_text(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(addr, "GET", path, None, None).await
}

/// A market built through the API: one seller with products, and one show.
#[derive(Debug, Clone)]
pub struct Market {
    pub addr: SocketAddr,
    pub operator: String,
    pub seller_id: String,
    pub seller: String,
    pub products: Vec<(String, i64)>,
    pub show: String,
}

impl Market {
    /// Closes the show as its operator through the server at `addr` (this market's, or another
    /// node's); asserts it closed and returns the closed show.
    pub async fn close_via(&self, addr: SocketAddr) -> Value {
        let path = format!("/api/shows/{}/close", self.show);
        let (status, body) = http(addr, "POST", &path, Some(&self.operator), None).await;
        assert_eq!(status, 200, "closing {}: {body}", self.show);
        body
    }

    /// [`Market::close_via`] this market's server.
    pub async fn close(&self) -> Value {
        self.close_via(self.addr).await
    }
}

/// Asserts that an HTTP answer (`status`, `body`) is the refusal `want_status` with the error
/// code `want_code`.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want_status, Some(want_code)),
        "{body}"
    );
}

pub async fn create_seller(addr: SocketAddr, operator: &str, name: &str) -> String {
    let (status, s) = http(
        addr,
        "POST",
        "/api/sellers",
        Some(operator),
        Some(&json!({"name": name, "kind": "cooperative", "district": "Ba Vì"})),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    s["id"].as_str().unwrap().to_owned()
}

pub async fn create_product(
    addr: SocketAddr,
    operator: &str,
    seller_id: &str,
    name: &str,
    price: i64,
) -> String {
    let body = json!({
        "seller_id": seller_id, "name": name, "group": "food", "stars": 4,
        "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì",
        "list_price": price, "origin_document": "GCN-OCOP-HN-2024-0101", "quality_label": "TCCS 01:2024/MOBV",
    });
    let (status, p) = http(addr, "POST", "/api/products", Some(operator), Some(&body)).await;
    assert_eq!(status, 201, "{p}");
    p["id"].as_str().unwrap().to_owned()
}

impl Market {
    /// A seller with products at `prices`, each allotted `stock` with `limit` per buyer, in one
    /// show that is live when `live`.
    pub async fn create(
        addr: SocketAddr,
        prices: &[i64],
        stock: u32,
        limit: u32,
        live: bool,
    ) -> Self {
        let operator = token(Role::Operator, "operator-1");
        let seller_id = create_seller(addr, &operator, "HTX Mật ong Ba Vì").await;
        let mut products = Vec::new();
        for (i, price) in prices.iter().enumerate() {
            let id = create_product(
                addr,
                &operator,
                &seller_id,
                &format!("Mật ong hoa nhãn số {i}"),
                *price,
            )
            .await;
            products.push((id, *price));
        }
        let lineup: Vec<Value> = products
            .iter()
            .map(|(id, _)| json!({"product_id": id, "stock": stock, "buyer_limit": limit}))
            .collect();
        let (status, show) = http(
            addr,
            "POST",
            "/api/shows",
            Some(&operator),
            Some(&json!({"seller_id": seller_id, "title": "Chợ đêm trên mây", "lineup": lineup})),
        )
        .await;
        assert_eq!(status, 201, "{show}");
        let show = show["id"].as_str().unwrap().to_owned();
        if live {
            let (status, body) = http(
                addr,
                "POST",
                &format!("/api/shows/{show}/live"),
                Some(&operator),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        let seller = token(Role::Seller, &seller_id);
        Self {
            addr,
            operator,
            seller_id,
            seller,
            products,
            show,
        }
    }

    pub fn product(&self, i: usize) -> &str {
        &self.products[i].0
    }

    /// The show's seller, connected.
    pub async fn seller_client(&self) -> Client {
        Client::connect(self.addr, &self.show, &self.seller, None)
            .await
            .unwrap()
    }

    /// Has the seller pin products 0 and 1 in turn, `n` pins in all (one event each), each
    /// acknowledged before the next.
    pub async fn pin_back_and_forth(&self, seller: &mut Client, n: usize) {
        self.pin_back_and_forth_from(seller, 0, n).await;
    }

    /// Pins `n` and more of [`Self::pin_back_and_forth`], the first being its pin number `from`.
    pub async fn pin_back_and_forth_from(&self, seller: &mut Client, from: usize, n: usize) {
        for i in from..from + n {
            seller
                .command(
                    json!({"type": "pin", "product_id": self.product(i % 2)}),
                    &format!("p{i}"),
                )
                .await
                .unwrap();
        }
    }

    /// The show's seller, connected, with product `i` pinned.
    pub async fn pinned_seller(&self, i: usize) -> Client {
        let mut seller = self.seller_client().await;
        seller
            .command(json!({"type": "pin", "product_id": self.product(i)}), "pin")
            .await
            .unwrap();
        seller
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Connections the server closed for not keeping up (`nightmarket_queue_drops_total`, every
/// cause), from a `/metrics` text.
pub fn queue_drops(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("nightmarket_queue_drops_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The gauge `name` (unlabelled) as the server at `addr` reports it on `/metrics` now.
pub async fn gauge(addr: SocketAddr, name: &str) -> u64 {
    let (status, body) = http_raw(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let prefix = format!("{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// How a WebSocket connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Close(Option<u16>),
    Eof,
    Error(String),
}

/// A WebSocket client of a show.
pub struct Client {
    ws: Ws,
    /// Text frames read while waiting for something else (a pong), served first by `next`.
    backlog: std::collections::VecDeque<ServerMessage>,
    /// Every message received, in order.
    pub seen: Vec<ServerMessage>,
    pub ended: Option<Ended>,
}

pub fn ws_url(addr: SocketAddr, show: &str, token: &str, last_seq: Option<u64>) -> String {
    let resume = last_seq
        .map(|s| format!("&last_seq={s}"))
        .unwrap_or_default();
    format!("ws://{addr}/ws/shows/{show}?token={token}{resume}")
}

impl Client {
    /// Connects; `Err` carries the HTTP status when the upgrade is refused.
    pub async fn connect(
        addr: SocketAddr,
        show: &str,
        token: &str,
        last_seq: Option<u64>,
    ) -> Result<Self, u16> {
        Self::connect_with(addr, show, token, last_seq, None).await
    }

    /// Connects with a given socket receive buffer (a deliberately slow reader uses a small one).
    pub async fn connect_with(
        addr: SocketAddr,
        show: &str,
        token: &str,
        last_seq: Option<u64>,
        recv_buffer: Option<u32>,
    ) -> Result<Self, u16> {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let url = ws_url(addr, show, token, last_seq);
        match tokio_tungstenite::client_async(url, stream).await {
            Ok((ws, _)) => Ok(Self {
                ws,
                backlog: Default::default(),
                seen: Vec::new(),
                ended: None,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// Connects to `/ws/shows/{show}` with no token, sending `headers` (a session cookie, an
    /// `Origin`) with the handshake; `Err` carries the HTTP status of a refused upgrade.
    pub async fn connect_headers(
        addr: SocketAddr,
        show: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws/shows/{show}")
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        match tokio_tungstenite::client_async(req, stream).await {
            Ok((ws, _)) => Ok(Self {
                ws,
                seen: Vec::new(),
                ended: None,
                backlog: Default::default(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// A viewer `buyer` connected to `show`, its snapshot read.
    pub async fn viewer(addr: SocketAddr, show: &str, buyer: &str) -> Self {
        let mut c = Self::connect(addr, show, &token(Role::Viewer, buyer), None)
            .await
            .unwrap();
        c.snapshot().await;
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next server message; `None` once the connection ended (see `ended`).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        if let Some(msg) = self.backlog.pop_front() {
            return Some(msg);
        }
        loop {
            if self.ended.is_some() {
                return None;
            }
            let frame = match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(f) => f,
                Err(_) => panic!(
                    "no frame within {WAIT:?}; seen so far: {:?}",
                    self.seen.iter().rev().take(5).collect::<Vec<_>>()
                ),
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let msg: ServerMessage = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("unparseable frame {t}: {e}"));
                    self.seen.push(msg.clone());
                    return Some(msg);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.ended = Some(Ended::Close(frame.map(|f: CloseFrame| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => self.ended = Some(Ended::Error(e.to_string())),
                None => self.ended = Some(Ended::Eof),
            }
        }
    }

    /// Reads until `pick` returns something.
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        loop {
            let Some(msg) = self.next().await else {
                panic!("connection ended ({:?}) while waiting", self.ended);
            };
            if let Some(t) = pick(&msg) {
                return t;
            }
        }
    }

    /// Waits for the next snapshot.
    pub async fn snapshot(&mut self) -> Snapshot {
        self.until(|m| match m {
            ServerMessage::Snapshot(s) => Some((**s).clone()),
            _ => None,
        })
        .await
    }

    /// Sends a WebSocket ping and waits for the server's pong; returns how long it took. Text
    /// frames arriving meanwhile are kept for `next`.
    pub async fn ping(&mut self) -> Duration {
        let sent = std::time::Instant::now();
        self.ws
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no pong in time");
            match frame {
                Some(Ok(Message::Pong(_))) => return sent.elapsed(),
                Some(Ok(Message::Text(t))) => {
                    let msg: ServerMessage = serde_json::from_str(&t).unwrap();
                    self.seen.push(msg.clone());
                    self.backlog.push_back(msg);
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended waiting for a pong: {other:?}"),
            }
        }
    }

    /// Sends a claim and waits for its definite result (past a `pending`, if any).
    pub async fn claim(
        &mut self,
        claim_id: &str,
        product: &str,
        qty: i64,
        price: i64,
    ) -> ClaimResult {
        self.send(json!({"type": "claim", "claim_id": claim_id, "product_id": product, "quantity": qty, "price": price})).await;
        let id = claim_id.to_owned();
        self.until(|m| match m {
            ServerMessage::ClaimResult(r)
                if r.claim_id == id
                    && r.outcome != nightmarket_wire::server::ClaimOutcomeKind::Pending =>
            {
                Some(r.clone())
            }
            _ => None,
        })
        .await
    }

    /// Waits for the `ack` (Ok(seq)) or `error` (Err(code)) answering request `req`.
    pub async fn answer(&mut self, req: &str) -> Result<u64, String> {
        let req = req.to_owned();
        self.until(|m| match m {
            ServerMessage::Ack(a) if a.req.as_deref() == Some(&req) => Some(Ok(a.seq)),
            ServerMessage::Error(e) if e.req.as_deref() == Some(&req) => {
                Some(Err(e.code.as_str().to_owned()))
            }
            _ => None,
        })
        .await
    }

    /// Sends a seller command with a request id and waits for its answer.
    pub async fn command(&mut self, mut cmd: Value, req: &str) -> Result<u64, String> {
        cmd["req"] = json!(req);
        self.send(cmd).await;
        self.answer(req).await
    }

    /// Reads until the connection ends; returns how it ended.
    pub async fn drain_to_end(&mut self) -> Ended {
        while self.next().await.is_some() {}
        self.ended.clone().unwrap_or(Ended::Eof)
    }

    /// Sequence numbers of the `event` frames seen so far.
    pub fn event_seqs(&self) -> Vec<u64> {
        self.seen
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Event(e) => Some(e.seq),
                _ => None,
            })
            .collect()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Fails unless `seqs` increase by exactly one each step.
pub fn assert_contiguous(seqs: &[u64]) -> anyhow::Result<()> {
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            bail!("sequence jumps from {} to {}: {seqs:?}", w[0], w[1]);
        }
    }
    Ok(())
}

/// Fails unless the events among `seen` follow on by one, except that a catch-up frame may move
/// the viewer forward: the next event is then the one after the catch-up's. Snapshots and
/// other frames are passed over.
pub fn assert_bridged(seen: &[ServerMessage]) -> anyhow::Result<()> {
    let mut at: Option<u64> = None;
    for msg in seen {
        match msg {
            ServerMessage::CatchUp(c) => {
                if let Some(a) = at
                    && c.seq < a
                {
                    bail!("a catch-up to {} behind the viewer's {a}", c.seq);
                }
                at = Some(c.seq);
            }
            ServerMessage::Event(e) => {
                if let Some(a) = at
                    && e.seq != a + 1
                {
                    bail!("event {} after {a}, with no catch-up between", e.seq);
                }
                at = Some(e.seq);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The sample count of histogram `name` in a Prometheus text exposition (0 when absent).
pub fn histogram_count(exposition: &str, name: &str) -> u64 {
    let prefix = format!("{name}_count ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

// The store's test support (the `testing` feature, a dev-dependency only, so that building the
// binary builds the store exactly as it runs).

// A re-export each test target may leave unused, as it may any helper here.
#[allow(unused_imports)]
pub(crate) use nightmarket_store::testing::eventually;

/// A fresh, empty PostgreSQL database of this test's own, by URL.
pub(crate) async fn postgres_url() -> String {
    let url = nightmarket_store::testing::test_database_url().unwrap();
    nightmarket_store::testing::fresh_database(&url)
        .await
        .unwrap()
}

/// The store a server writes to, opened beside it: PostgreSQL at `database_url`, or the
/// SQLite file in its data directory `dir`.
pub(crate) async fn store_of(dir: &Path, database_url: Option<&str>) -> nightmarket_store::Store {
    use nightmarket_store::Store;
    match database_url {
        Some(url) => Store::postgres(url, 2, Duration::from_secs(5)).await,
        None => Store::sqlite(&dir.join("catalog.sqlite")).await,
    }
    .unwrap()
}
