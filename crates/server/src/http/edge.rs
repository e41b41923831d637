//! The HTTP edge: the accept loop, the bounds every request meets before any handler, and the
//! rule that every error leaves as the project's JSON error body with a stable code.
//!
//! Three layers of refusal, outermost first:
//!
//! 1. hyper's HTTP/1 parser ([`serve`]). It holds a request head of at most [`head_bytes`]
//!    and [`parser_headers`] headers, twice the configured bounds, so that requests past the
//!    configured bounds still reach [`limits`] and get a JSON answer. What the parser refuses
//!    itself (a head past its buffer, more headers than it holds, a request target past the
//!    `http` crate's 65534 bytes, bytes that are not HTTP at all) gets hyper's own 400, 414 or
//!    431 with an empty body, and the connection is closed: no handler ever sees such a request.
//! 2. [`limits`]: the request target and the headers against `limits.max_*`; then tower-http's
//!    body limit (`limits.max_body_bytes`) and request timeout (`http.request_timeout_ms`), set
//!    up with the rest of the middleware in [`super::router`].
//! 3. [`json_errors`]: an error response a handler did not write itself (axum's extractor
//!    refusals: a path that is not UTF-8, a query that does not parse, a request that is not a
//!    WebSocket upgrade, a method a path does not have; tower-http's 413 and 504) is rewritten
//!    into the JSON body with the code its status stands for.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use nightmarket_wire::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Limits;
use crate::http::error::HttpError;
use crate::http::held::{HeldIo, Hold};
use crate::state::AppState;

/// Bytes of a refusal's text the JSON body keeps as its message: axum's refusals are one short
/// sentence; anything longer is not worth echoing.
const MAX_REFUSAL_TEXT: usize = 512;

/// How long the accept loop pauses after an error that is not about one connection (too many
/// open files): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The request head hyper's parser holds: twice the request target and the headers the
/// configuration allows, so a request past them still gets to [`limits`] (and a JSON answer),
/// and never less than hyper's own floor of 8 KiB.
pub fn head_bytes(l: &Limits) -> usize {
    l.max_uri_bytes
        .saturating_add(l.max_header_bytes)
        .saturating_mul(2)
        .max(8192)
}

/// The headers hyper's parser holds: twice `limits.max_headers`, for the same reason.
pub fn parser_headers(l: &Limits) -> usize {
    l.max_headers.saturating_mul(2)
}

/// Refuses a request whose target or headers are past the configured bounds.
pub async fn limits(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let l = &state.config().limits;
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > l.max_uri_bytes {
        return HttpError::new(
            ErrorCode::UriTooLong,
            format!(
                "the request target is {target} bytes; at most {} (limits.max_uri_bytes)",
                l.max_uri_bytes
            ),
        )
        .into_response();
    }
    let headers = req.headers();
    if headers.len() > l.max_headers {
        return HttpError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "{} headers; at most {} (limits.max_headers)",
                headers.len(),
                l.max_headers
            ),
        )
        .into_response();
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > l.max_header_bytes {
        return HttpError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the headers are {header_bytes} bytes; at most {} (limits.max_header_bytes)",
                l.max_header_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// The message of `body_too_large`, whether the body was refused for its declared length or cut
/// while it was read.
pub const BODY_TOO_LARGE: &str = "body: longer than this server accepts (limits.max_body_bytes)";

/// The message of `timeout`.
const TIMED_OUT: &str = "not answered within http.request_timeout_ms; a change may or may not have been made: read it back before retrying";

/// Rewrites an error response that is not JSON into the JSON error body, keeping its `Allow`
/// header (405) and its text as the message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_REFUSAL_TEXT)
        .collect()
        .await
    {
        Ok(bytes) => String::from_utf8_lossy(&bytes.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = ErrorCode::for_http_status(status.as_u16());
    let message = if code == ErrorCode::BodyTooLarge {
        BODY_TOO_LARGE.to_owned()
    } else if code == ErrorCode::Timeout {
        TIMED_OUT.to_owned()
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let mut out = HttpError::new(code, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    // The session layer may have dropped a stale cookie on the way out.
    for value in parts.headers.get_all(header::SET_COOKIE) {
        out.headers_mut().append(header::SET_COOKIE, value.clone());
    }
    out
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish the request it is serving and waits for them. WebSocket sessions are no
/// longer connections of hyper once upgraded: the server drains those itself.
///
/// hyper's parser is set up here, with the bounds [`head_bytes`] and [`parser_headers`] and
/// hyper's 30 s for a request head to arrive (a client that trickles a head is cut off).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let head = head_bytes(limits);
    let max_headers = parser_headers(limits);
    let mut options = SocketOptions::on_listener(&listener, limits.socket_send_buffer);
    // Every connection task holds a receiver; `closed()` resolves once all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        options.apply(&tcp);
        let app = app.clone();
        let hold = Hold::default();
        let io = HeldIo::new(tcp, hold.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            // Handlers that limit per address (guest sign-ins) read the peer from here.
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // The WebSocket upgrade holds its 101 back for the session's first write.
            req.extensions_mut().insert(hold.clone());
            let mut app = app.clone();
            // A Router is always ready: `call` needs no `poll_ready` first.
            tower_service::Service::call(&mut app, req)
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .max_buf_size(head)
                .max_headers(max_headers);
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                }
                () = crate::shutdown::stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// The options every accepted connection gets: no Nagle delay (small frames, latency matters)
/// and the send buffer `limits.socket_send_buffer` (0: the kernel's own). Linux copies both
/// from the listening socket into each accepted one, so they are set once on the listener and
/// the first connection is checked; only where they were not inherited are they set on every
/// connection, two system calls per connection (and per viewer joining) saved otherwise. A
/// connection that arrived before the listener had them does not carry them either: `bind`
/// sets them before `listen`, and a listener made elsewhere at worst falls back to setting them
/// per connection.
struct SocketOptions {
    send_buffer: usize,
    /// What the listener's send buffer reads back as (the kernel doubles what it is given).
    listener_buffer: Option<usize>,
    /// Whether accepted sockets carry the options already: unknown until the first one.
    inherited: Option<bool>,
}

impl SocketOptions {
    fn on_listener(listener: &TcpListener, send_buffer: usize) -> Self {
        let sock = socket2::SockRef::from(listener);
        let nodelay = sock.set_tcp_nodelay(true).is_ok();
        let listener_buffer = if send_buffer > 0 {
            sock.set_send_buffer_size(send_buffer)
                .and_then(|()| sock.send_buffer_size())
                .ok()
        } else {
            None
        };
        let set = nodelay && (send_buffer == 0 || listener_buffer.is_some());
        Self {
            send_buffer,
            listener_buffer,
            inherited: if set { None } else { Some(false) },
        }
    }

    fn apply(&mut self, tcp: &TcpStream) {
        let sock = socket2::SockRef::from(tcp);
        let inherited = *self.inherited.get_or_insert_with(|| {
            sock.tcp_nodelay().unwrap_or(false)
                && (self.send_buffer == 0 || sock.send_buffer_size().ok() == self.listener_buffer)
        });
        if !inherited {
            let _ = sock.set_tcp_nodelay(true);
            if self.send_buffer > 0 {
                let _ = sock.set_send_buffer_size(self.send_buffer);
            }
        }
    }
}

/// Errors that concern one connection only (the peer gave up before it was accepted).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection accepted on a listener set up by [`SocketOptions`] has no Nagle delay and
    /// the configured send buffer, whether it inherited them (Linux) or got them set.
    #[tokio::test]
    async fn accepted_connections_carry_the_socket_options() {
        for send_buffer in [65_536, 0] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut options = SocketOptions::on_listener(&listener, send_buffer);
            let addr = listener.local_addr().unwrap();
            let mut clients = Vec::new();
            for _ in 0..2 {
                clients.push(TcpStream::connect(addr).await.unwrap());
                let (tcp, _) = listener.accept().await.unwrap();
                options.apply(&tcp);
                let sock = socket2::SockRef::from(&tcp);
                assert!(sock.tcp_nodelay().unwrap(), "no Nagle delay");
                if send_buffer > 0 {
                    // The kernel reports double what it was given, on the listener as here.
                    assert_eq!(
                        Some(sock.send_buffer_size().unwrap()),
                        options.listener_buffer
                    );
                    assert!(sock.send_buffer_size().unwrap() >= send_buffer);
                }
            }
            #[cfg(target_os = "linux")]
            assert_eq!(options.inherited, Some(true), "Linux copies them at accept");
        }
    }
}
