//! The inbound reader over real sockets: what tokio-tungstenite clients send (masked frames,
//! fragments, pings, closes) and what broken clients send (oversize, garbage, unmasked frames,
//! bad UTF-8), each ending with the close code the protocol asks for.

#![allow(clippy::unwrap_used)]

mod support;

use futures_util::SinkExt;
use nightmarket_live::inbound::{Message as In, ReadError, Reader};
use nightmarket_live::{CatchUpCell, Channel, Engine, Frame, LiveConfig};
use support::{Client, next, next_text};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Longest client message the sessions below accept.
const MAX_MESSAGE: usize = 1024;

/// A minimal session: echoes text, counts binary, answers a close, and closes with the
/// reader's code when the client breaks the protocol.
async fn session(ch: Channel, tcp: tokio::net::TcpStream, already: Vec<u8>) {
    let (read, write) = tcp.into_split();
    let viewer = support::start_at_newest(&ch, write);
    let mut reader = Reader::new(read, &already, MAX_MESSAGE);
    loop {
        let msg = tokio::select! {
            msg = reader.next(&viewer) => msg,
            () = viewer.closing() => return,
        };
        match msg {
            Ok(Some(In::Text(t))) => {
                let _ = viewer.send(Frame::text(&format!("echo:{t}")));
            }
            Ok(Some(In::Binary(b))) => {
                let _ = viewer.send(Frame::text(&format!("binary:{}", b.len())));
            }
            Ok(Some(In::Ping(_) | In::Pong(_))) => {}
            Ok(Some(In::Close(c))) => {
                viewer.close(c.map_or(1000, |c| c.code), "").await;
                return;
            }
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Decode(e)) => {
                viewer.close(e.close_code(), e.reason()).await;
                return;
            }
        }
    }
}

/// A client connected to a fresh session, past the hello.
async fn connected() -> (Client, Engine) {
    let engine = Engine::new(LiveConfig {
        shards: 2,
        ..LiveConfig::default()
    })
    .unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let ((tcp, already), mut client) = tokio::join!(
        support::accept(&listener, None),
        support::connect(addr, None)
    );
    tokio::spawn(session(ch, tcp, already));
    assert_eq!(next_text(&mut client).await, "hello");
    (client, engine)
}

async fn close_code(client: &mut Client) -> u16 {
    loop {
        match next(client).await {
            Some(Message::Close(Some(c))) => return c.code.into(),
            Some(Message::Text(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_fragments_pings_and_a_clean_close() {
    let (mut client, _engine) = connected().await;
    client.send(Message::text("xin chào")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "echo:xin chào");

    // One message in three fragments, a ping between two of them.
    let fragment =
        |data: &str, op, fin| Message::Frame(WireFrame::message(data.to_owned(), op, fin));
    client
        .send(fragment("mật ", OpCode::Data(Data::Text), false))
        .await
        .unwrap();
    client.send(Message::Ping("p1".into())).await.unwrap();
    client
        .send(fragment("ong ", OpCode::Data(Data::Continue), false))
        .await
        .unwrap();
    client
        .send(fragment("Ba Vì", OpCode::Data(Data::Continue), true))
        .await
        .unwrap();
    assert_eq!(next(&mut client).await, Some(Message::Pong("p1".into())));
    assert_eq!(next_text(&mut client).await, "echo:mật ong Ba Vì");

    client
        .send(Message::Binary(vec![7u8; MAX_MESSAGE].into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut client).await,
        format!("binary:{MAX_MESSAGE}")
    );

    client.close(None).await.unwrap();
    assert!(matches!(next(&mut client).await, Some(Message::Close(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_closes_with_1009() {
    let (mut client, _engine) = connected().await;
    client
        .send(Message::text("x".repeat(MAX_MESSAGE + 1)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut client).await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_past_the_limit_close_with_1009() {
    let (mut client, _engine) = connected().await;
    let half = "y".repeat(MAX_MESSAGE / 2 + 1);
    for (op, fin) in [
        (OpCode::Data(Data::Text), false),
        (OpCode::Data(Data::Continue), true),
    ] {
        let frame = WireFrame::message(half.clone(), op, fin);
        client.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(close_code(&mut client).await, 1009);
}

/// Raw bytes after the handshake, as a broken client would send them.
async fn raw(client: &mut Client, bytes: &[u8]) {
    client.get_mut().write_all(bytes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_with_1002() {
    let (mut client, _engine) = connected().await;
    // Opcode 0xF is reserved.
    raw(&mut client, &[0x8F, 0x80, 1, 2, 3, 4]).await;
    assert_eq!(close_code(&mut client).await, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_client_frame_closes_with_1002() {
    let (mut client, _engine) = connected().await;
    raw(&mut client, &[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(close_code(&mut client).await, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_with_1007() {
    let (mut client, _engine) = connected().await;
    // Masked with zeros, so the payload is as written.
    raw(&mut client, &[0x81, 0x82, 0, 0, 0, 0, 0xFF, 0xFE]).await;
    assert_eq!(close_code(&mut client).await, 1007);
}
