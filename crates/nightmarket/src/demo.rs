//! `nightmarket demo`: the real server plus a market night that moves. It seeds OCOP sellers and
//! products through the HTTP API, opens a live show, and drives it over the same WebSocket
//! protocol any client uses: a demo seller pins products and runs flash prices, a small crowd
//! of simulated buyers claims, and a narrator prints what a viewer sees.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use nightmarket_server::auth::Role;
use nightmarket_server::config::Config;
use nightmarket_wire::server::{ClaimOutcomeKind, ServerMessage, ShowEvent};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::token::mint;

/// Sellers of the demo: (name, kind, district).
const SELLERS: [(&str, &str, &str); 3] = [
    ("HTX Mật ong Ba Vì", "cooperative", "Ba Vì"),
    ("Làng gốm Bát Tràng", "enterprise", "Gia Lâm"),
    ("HTX Nông nghiệp Chương Mỹ", "cooperative", "Chương Mỹ"),
];

/// Products of the demo: (seller index, name, group, stars, district, commune, producer, price).
/// (seller index, name, group, stars, district, commune, producer, list price).
type DemoProduct = (
    usize,
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
    &'static str,
    i64,
);

const PRODUCTS: [DemoProduct; 9] = [
    (
        0,
        "Mật ong hoa nhãn Ba Vì 500ml",
        "food",
        4,
        "Ba Vì",
        "Tản Lĩnh",
        "HTX Mật ong Ba Vì",
        250_000,
    ),
    (
        0,
        "Sữa chua nếp cẩm Ba Vì",
        "food",
        4,
        "Ba Vì",
        "Vân Hòa",
        "HTX Bò sữa Ba Vì",
        45_000,
    ),
    (
        0,
        "Chè Shan tuyết Ba Vì 200g",
        "beverages",
        3,
        "Ba Vì",
        "Ba Trại",
        "HTX Chè Ba Vì",
        180_000,
    ),
    (
        0,
        "Cao gắm Ba Vì",
        "herbs",
        3,
        "Ba Vì",
        "Ba Vì",
        "Hộ Dao đỏ Ba Vì",
        320_000,
    ),
    (
        1,
        "Bộ ấm chén men lam Bát Tràng",
        "handicrafts",
        5,
        "Gia Lâm",
        "Bát Tràng",
        "Công ty Gốm Bát Tràng",
        850_000,
    ),
    (
        1,
        "Bình hút lộc men rạn",
        "handicrafts",
        4,
        "Gia Lâm",
        "Bát Tràng",
        "Công ty Gốm Bát Tràng",
        1_200_000,
    ),
    (
        2,
        "Giò chả Ước Lễ",
        "food",
        4,
        "Thanh Oai",
        "Tân Ước",
        "HTX Giò chả Ước Lễ",
        280_000,
    ),
    (
        2,
        "Khay mây tre đan Phú Vinh",
        "handicrafts",
        4,
        "Chương Mỹ",
        "Phú Nghĩa",
        "HTX Mây tre Phú Vinh",
        150_000,
    ),
    (
        2,
        "Bưởi Diễn (hộp 2 quả)",
        "food",
        3,
        "Bắc Từ Liêm",
        "Phú Diễn",
        "HTX Bưởi Phú Diễn",
        120_000,
    ),
];

/// A tiny xorshift generator: the demo's randomness needs no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One request to the demo's own server: the JSON body of a 2xx answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    Ok(exchange(addr, method, path, token, body).await?.0)
}

/// Every item of a list endpoint: its pages of [`PAGE_SIZE`], following `Next-Cursor` to the
/// last one (docs/protocol.md §9).
async fn http_all(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            None => format!("{path}{sep}limit={PAGE_SIZE}"),
            Some(c) => format!("{path}{sep}limit={PAGE_SIZE}&cursor={c}"),
        };
        let (body, next) = exchange(addr, "GET", &page, token, &Value::Null).await?;
        items.extend(body.as_array().cloned().unwrap_or_default());
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(Value::Array(items)),
        }
    }
}

/// Items per page the demo reads: the most a page holds.
const PAGE_SIZE: usize = 1000;

/// The demo's HTTP client, built on first use: one pool for every call of the run, a timeout
/// so a stuck server fails the demo instead of hanging it, and no redirects (the API never
/// redirects, and a redirect would carry the operator token elsewhere).
fn client() -> anyhow::Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let built = CLIENT.get_or_init(|| {
        // reqwest comes without a crypto provider; rustls uses the one the server installs.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            // The server is this process's own, on loopback: no proxy from the environment.
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())
    });
    built
        .as_ref()
        .map_err(|e| anyhow!("the demo's HTTP client: {e}"))
}

/// One request: the JSON body of a 2xx answer and its `Next-Cursor` header, if any.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<(Value, Option<String>)> {
    let verb = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client()?
        .request(verb, format!("http://{addr}{path}"))
        .bearer_auth(token);
    // `null` stands for "no body" (reads).
    if !body.is_null() {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = req
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = response.status();
    let next = response
        .headers()
        .get("next-cursor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let payload = response.text().await?;
    if !status.is_success() {
        bail!("{method} {path}: {status} {payload}");
    }
    Ok((serde_json::from_str(&payload)?, next))
}

struct DemoShow {
    id: String,
    seller_id: String,
    products: Vec<(String, String, i64)>,
}

/// The demo show's title; a run closes the shows of that title an earlier run left open.
const SHOW_TITLE: &str = "Chợ đêm trên mây — Đặc sản Ba Vì";

/// The `id` of the first item of a JSON list whose `key` equals `value`.
fn find_id(list: &Value, key: &str, value: &str) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|v| v[key].as_str() == Some(value))
        .and_then(|v| v["id"].as_str())
        .map(str::to_owned)
}

/// Seeds the demo market, reusing the sellers and products an earlier run over the same data
/// made, and closing the demo shows it left live or scheduled, so runs do not pile up shows.
async fn seed(addr: SocketAddr, operator: &str) -> anyhow::Result<DemoShow> {
    let known = http_all(addr, "/api/sellers", operator).await?;
    let mut sellers = Vec::new();
    for (name, kind, district) in SELLERS {
        if let Some(id) = find_id(&known, "name", name) {
            sellers.push(id);
            continue;
        }
        let s = http(
            addr,
            "POST",
            "/api/sellers",
            operator,
            &json!({"name": name, "kind": kind, "district": district}),
        )
        .await?;
        sellers.push(s["id"].as_str().unwrap_or_default().to_owned());
    }
    let shows = http_all(addr, "/api/shows", operator).await?;
    for show in shows.as_array().into_iter().flatten() {
        let open = matches!(show["status"].as_str(), Some("live" | "scheduled"));
        if open
            && show["title"].as_str() == Some(SHOW_TITLE)
            && show["seller_id"].as_str() == Some(sellers[0].as_str())
        {
            let id = show["id"].as_str().unwrap_or_default();
            http(
                addr,
                "POST",
                &format!("/api/shows/{id}/close"),
                operator,
                &json!({}),
            )
            .await
            .with_context(|| format!("closing the earlier demo show {id}"))?;
            println!("Closed the demo show an earlier run left open: {id}");
        }
    }
    let mut products = Vec::new();
    let mut theirs: Vec<Value> = Vec::new();
    for id in &sellers {
        let path = format!("/api/products?seller_id={id}");
        theirs.push(http_all(addr, &path, operator).await?);
    }
    for (seller, name, group, stars, district, commune, producer, price) in PRODUCTS {
        if let Some(id) = find_id(&theirs[seller], "name", name) {
            products.push((seller, id, name.to_owned(), price));
            continue;
        }
        let p = http(
            addr,
            "POST",
            "/api/products",
            operator,
            &json!({
                "seller_id": sellers[seller], "name": name, "group": group, "stars": stars,
                "district": district, "commune": commune, "producer": producer, "list_price": price,
                "origin_document": format!("GCN-OCOP-HN-2024-{:04}", products.len() + 101),
                "quality_label": format!("TCCS {:02}:2024/{}", products.len() + 1, commune.chars().filter(|c| c.is_uppercase()).collect::<String>()),
            }),
        )
        .await?;
        products.push((
            seller,
            p["id"].as_str().unwrap_or_default().to_owned(),
            name.to_owned(),
            price,
        ));
    }
    let lineup: Vec<(String, String, i64)> = products
        .iter()
        .filter(|(s, ..)| *s == 0)
        .map(|(_, id, name, price)| (id.clone(), name.clone(), *price))
        .collect();
    let show = http(
        addr,
        "POST",
        "/api/shows",
        operator,
        &json!({
            "seller_id": sellers[0],
            "title": SHOW_TITLE,
            "lineup": lineup.iter().map(|(id, ..)| json!({"product_id": id, "stock": 150, "buyer_limit": 10})).collect::<Vec<_>>(),
        }),
    )
    .await?;
    let id = show["id"].as_str().unwrap_or_default().to_owned();
    http(
        addr,
        "POST",
        &format!("/api/shows/{id}/live"),
        operator,
        &json!({}),
    )
    .await?;
    Ok(DemoShow {
        id,
        seller_id: sellers[0].clone(),
        products: lineup,
    })
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(addr: SocketAddr, show: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}/ws/shows/{show}?token={token}");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("websocket connect")?;
    Ok(ws)
}

/// The demo seller: pin each product, run a flash price with a countdown, move on.
async fn seller(addr: SocketAddr, show: DemoShow, token: String) -> anyhow::Result<()> {
    let mut ws = connect(addr, &show.id, &token).await?;
    let drain = |ws: &mut Ws| {
        // Answers and events are read by the narrator; the seller only needs its socket drained.
        while let Some(Some(_)) = futures_util::FutureExt::now_or_never(ws.next()) {}
    };
    loop {
        for (i, (id, _, price)) in show.products.iter().enumerate() {
            ws.send(Message::text(
                json!({"type": "pin", "req": format!("pin-{i}"), "product_id": id}).to_string(),
            ))
            .await?;
            tokio::time::sleep(Duration::from_secs(6)).await;
            drain(&mut ws);
            let flash = price * 80 / 100 / 1000 * 1000;
            let msg = json!({"type": "start_flash", "req": format!("flash-{i}"), "product_id": id, "price": flash,
                             "duration_s": 20, "quantity_cap": 15, "countdown_s": 3});
            ws.send(Message::text(msg.to_string())).await?;
            tokio::time::sleep(Duration::from_secs(26)).await;
            drain(&mut ws);
        }
    }
}

/// A simulated buyer: claims what is pinned at the price on screen, now and then.
async fn buyer(addr: SocketAddr, show: String, token: String, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let mut ws = connect(addr, &show, &token).await?;
    let mut pinned: Option<(String, i64)> = None;
    // Set when a flash price applies: the next claim goes out at once (that is what a flash
    // is for), so flashes sell out their cap instead of running out the clock.
    let mut eager = false;
    let mut n = 0u64;
    // At list price a buyer claims every few seconds, whatever frames arrive meanwhile.
    let pause = |rng: &mut Rng| Duration::from_millis(3_000 + rng.below(9_000));
    let mut next = tokio::time::Instant::now() + pause(&mut rng);
    loop {
        let wait = next.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Snapshot(s)) => pinned = s.pinned.clone().zip(s.price),
                    Ok(ServerMessage::Event(e)) => match e.event {
                        ShowEvent::Pinned { product_id, price } => {
                            pinned = Some((product_id, price))
                        }
                        ShowEvent::Unpinned { .. } | ShowEvent::ShowClosed { .. } => pinned = None,
                        ShowEvent::FlashStarted(f) => {
                            // Claim right when the countdown ends: that is what a flash is for.
                            let until = (f.starts_at - now_ms()).max(0) as u64;
                            tokio::time::sleep(Duration::from_millis(until + rng.below(800))).await;
                            pinned = Some((f.product_id, f.price));
                            eager = true;
                        }
                        ShowEvent::FlashEnded {
                            product_id,
                            list_price,
                            ..
                        } => pinned = Some((product_id, list_price)),
                        ShowEvent::ShowLive => {}
                    },
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return Ok(()),
            Err(_) => {}
        }
        let due = tokio::time::Instant::now() >= next;
        if !(due || eager) {
            continue;
        }
        // A flash claim takes two: twelve buyers at once pass the cap of 15.
        let quantity = if eager { 2 } else { 1 + rng.below(2) };
        eager = false;
        next = tokio::time::Instant::now() + pause(&mut rng);
        if let Some((product, price)) = &pinned {
            n += 1;
            let claim = json!({"type": "claim", "claim_id": format!("{seed:x}-{n}"), "product_id": product,
                               "quantity": quantity, "price": price});
            ws.send(Message::text(claim.to_string())).await?;
        }
    }
}

/// The demo is a client on this machine: the system clock, as the server it drives.
fn now_ms() -> i64 {
    use nightmarket_server::clock::Clock;
    nightmarket_server::clock::SystemClock.now()
}

fn dong(v: i64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    format!("{out} ₫")
}

/// The narrator: a viewer that prints the show as it happens.
async fn narrator(
    addr: SocketAddr,
    show: String,
    token: String,
    names: Vec<(String, String, i64)>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut ws = connect(addr, &show, &token).await?;
    let mut ready = Some(ready);
    let name = |id: &str| {
        names
            .iter()
            .find(|(p, ..)| p == id)
            .map_or(id.to_owned(), |(_, n, _)| n.clone())
    };
    let mut last_stock = String::new();
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg? else { continue };
        let Ok(msg) = serde_json::from_str::<ServerMessage>(&t) else {
            continue;
        };
        match msg {
            ServerMessage::Snapshot(s) => {
                println!(
                    "  [#{}] {} — {} ({} products)",
                    s.seq,
                    s.show.title,
                    s.show.status,
                    s.lineup.len()
                );
                // A narrator that joins late still says what is on screen.
                if let (Some(product_id), Some(price)) = (&s.pinned, s.price) {
                    println!(
                        "  [#{}] on screen: {} at {}",
                        s.seq,
                        name(product_id),
                        dong(price)
                    );
                }
                // The seller starts once the narrator has its snapshot, so the narration
                // begins with the first pin.
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            ServerMessage::Event(e) => match e.event {
                ShowEvent::Pinned { product_id, price } => println!(
                    "  [#{}] on screen: {} at {}",
                    e.seq,
                    name(&product_id),
                    dong(price)
                ),
                ShowEvent::FlashStarted(f) => println!(
                    "  [#{}] FLASH {} → {} for {} s, {} units, starting in {} s",
                    e.seq,
                    name(&f.product_id),
                    dong(f.price),
                    (f.ends_at - f.starts_at) / 1000,
                    f.quantity_cap.map_or("all".into(), |c| c.to_string()),
                    // From when the flash was decided, rounded up: the countdown the seller set.
                    ((f.starts_at - e.at + 999) / 1000).max(0)
                ),
                ShowEvent::FlashEnded {
                    product_id, reason, ..
                } => println!(
                    "  [#{}] flash over ({reason}): {}",
                    e.seq,
                    name(&product_id)
                ),
                ShowEvent::Unpinned { product_id } => {
                    println!("  [#{}] off screen: {}", e.seq, name(&product_id))
                }
                ShowEvent::ShowLive => println!("  [#{}] the show is live", e.seq),
                ShowEvent::ShowClosed { .. } => println!("  [#{}] the show closed", e.seq),
            },
            ServerMessage::Stock(s) => {
                let line = s
                    .levels
                    .iter()
                    .map(|l| format!("{} {}", short(&name(&l.product_id)), l.left))
                    .collect::<Vec<_>>()
                    .join(" · ");
                if line != last_stock {
                    println!("         stock left: {line}");
                    last_stock = line;
                }
            }
            ServerMessage::Feed(f) => {
                for item in f.items.iter().rev().take(1) {
                    println!(
                        "         someone took {} × {} at {} ({} claims so far)",
                        item.quantity,
                        name(&item.product_id),
                        dong(item.unit_price),
                        f.total_claims
                    );
                }
            }
            ServerMessage::ClaimResult(r) if r.outcome == ClaimOutcomeKind::Accepted => {}
            _ => {}
        }
    }
    Ok(())
}

/// A product's name cut to its first two words ("Mật ong", "Sữa chua"): enough to tell the
/// demo's products apart on one stock line.
fn short(name: &str) -> String {
    name.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Serves the market and runs the demo until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    backends: nightmarket_server::Backends,
    buyers: u32,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let operator = mint(&config, Role::Operator, "demo-operator", 24 * 3600);
    let server = tokio::spawn(nightmarket_server::serve_with(
        listener,
        config.clone(),
        backends,
        shutdown,
    ));
    let show = seed(addr, &operator)
        .await
        .context("seeding the demo market")?;
    let viewer = mint(&config, Role::Viewer, "khach-demo", 24 * 3600);
    let seller_token = mint(&config, Role::Seller, &show.seller_id, 24 * 3600);
    // The consoles sign in with one-time links, made through the same API the operator
    // console uses.
    let link = |role: &'static str, subject: String| {
        let operator = operator.clone();
        async move {
            let inv = http(
                addr,
                "POST",
                "/api/invites",
                &operator,
                &json!({"role": role, "subject": subject}),
            )
            .await?;
            anyhow::Ok(inv["url"].as_str().unwrap_or_default().to_owned())
        }
    };
    let operator_link = link("operator", "demo-operator".into()).await?;
    let seller_link = link("seller", show.seller_id.clone()).await?;
    println!();
    println!("Demo show live: Chợ đêm trên mây — Đặc sản Ba Vì");
    println!("  Consoles (each sign-in link works once):");
    println!("  operator:      {operator_link}");
    println!("  seller:        {seller_link}");
    println!("  viewer:        http://{addr}/#show={}", show.id);
    println!(
        "  with a token:  http://{addr}/#show={}&token={viewer}",
        show.id
    );
    println!("  show (JSON):   http://{addr}/api/shows/{}", show.id);
    println!(
        "  raw protocol:  ws://{addr}/ws/shows/{}?token={viewer}",
        show.id
    );
    println!("  seller token:  {seller_token}");
    println!("  metrics:       http://{addr}/metrics");
    println!();
    println!("The demo runs until Ctrl-C; a viewer's view of the show follows.");
    println!();
    let names = show.products.clone();
    let show_id = show.id.clone();
    let (ready, narrating) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = narrator(addr, show_id, viewer, names, ready).await {
            tracing::warn!(error = %e, "demo narrator stopped");
        }
    });
    for b in 0..buyers {
        let token = mint(&config, Role::Viewer, &format!("demo-buyer-{b}"), 24 * 3600);
        let show_id = show.id.clone();
        tokio::spawn(async move {
            if let Err(e) = buyer(addr, show_id, token, 0x9e37_79b9 + u64::from(b) * 7919).await {
                tracing::debug!(error = %e, "demo buyer stopped");
            }
        });
    }
    tokio::spawn(async move {
        // A narrator that failed to join drops its sender: the seller goes on without it.
        let _ = narrating.await;
        if let Err(e) = seller(addr, show, seller_token).await {
            tracing::warn!(error = %e, "demo seller stopped");
        }
    });
    server.await.map_err(|e| anyhow!("server task: {e}"))??;
    Ok(())
}
