//! Real sockets for the engine's tests and its fan-out example: a listener on loopback port 0,
//! the server side of the WebSocket handshake (the part the HTTP server does in production),
//! and tokio-tungstenite clients.

#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use nightmarket_live::{AttachOptions, Cells, Channel, Frame, Start, StartFrom, Viewer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// How long a test waits for anything before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Longest handshake request the test server reads.
const MAX_REQUEST: usize = 8192;

pub type Client = WebSocketStream<TcpStream>;

pub async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection and answers its upgrade request; returns the stream and the bytes
/// read past the request (none, as a client waits for the answer before it sends a frame).
pub async fn accept(listener: &TcpListener, send_buffer: Option<u32>) -> (TcpStream, Vec<u8>) {
    let (mut tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if let Some(size) = send_buffer {
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(size as usize)
            .unwrap();
    }
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client left during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < MAX_REQUEST, "handshake request too long");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("a Sec-WebSocket-Key header");
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(answer.as_bytes()).await.unwrap();
    (tcp, buf[end..].to_vec())
}

/// A client, with a small kernel receive buffer when asked (a viewer that reads slowly).
pub async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    ws
}

/// A connected pair: the server's stream (upgraded) and the client.
pub async fn pair(
    listener: &TcpListener,
    addr: SocketAddr,
    recv_buffer: Option<u32>,
    send_buffer: Option<u32>,
) -> (TcpStream, Client) {
    let (server, client) = tokio::join!(accept(listener, send_buffer), connect(addr, recv_buffer));
    (server.0, client)
}

/// The next message, failing the test after [`PATIENCE`].
pub async fn next(client: &mut Client) -> Option<Message> {
    tokio::time::timeout(PATIENCE, client.next())
        .await
        .expect("a message in time")
        .map(|r| r.expect("a well-formed message"))
}

/// The next text message's text; panics on anything else.
pub async fn next_text(client: &mut Client) -> String {
    match next(client).await {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Waits until `check` holds, polling; fails the test after [`PATIENCE`].
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Attaches a write half and starts it at the channel's newest event, with a `hello` frame.
pub fn start_at_newest(ch: &Channel, write: OwnedWriteHalf) -> Viewer {
    let viewer = ch.attach(
        write,
        AttachOptions {
            counted: true,
            prefix: None,
        },
    );
    viewer
        .start(Start {
            frames: vec![Frame::text("hello")],
            from: StartFrom::At { seq: ch.last_seq() },
            cells: Cells::NONE,
        })
        .unwrap();
    viewer
}
