//! `GET /ws/shows/{id}`: the WebSocket upgrade. It checks the handshake, authenticates the
//! caller, finds (or loads) the show, takes one of `limits.max_connections` places, answers
//! `101` and hands the socket itself to a session ([`crate::ws`]), which gives its write half to
//! the live engine.
//!
//! The upgrade goes through `hyper::upgrade::on` rather than axum's `WebSocketUpgrade`, which
//! keeps the upgraded connection to itself: the engine writes to the `TcpStream` directly. The
//! accept loop ([`crate::http::edge`]) serves every connection as `TokioIo<TcpStream>`, so the
//! upgraded connection downcasts back to it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use nightmarket_domain::{BuyerId, ShowId};
use nightmarket_wire::ErrorCode;

use crate::auth::Role;
use crate::http::error::HttpError;
use crate::http::extract::{authenticate, unauthorized};
use crate::http::held::{HeldIo, Hold};
use crate::http::refusal;
use crate::metrics;
use crate::state::AppState;
use crate::ws;

/// The one WebSocket version (RFC 6455).
const WEBSOCKET_VERSION: &str = "13";

/// Whether a comma-separated header holds `token` (case-insensitive).
fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's `Sec-WebSocket-Key`, once the request is a WebSocket handshake (RFC 6455 §4.2.1).
fn handshake_key(headers: &HeaderMap) -> Result<HeaderValue, HttpError> {
    if !header_has(headers, header::CONNECTION, "upgrade") {
        return Err(HttpError::bad_request(
            "not a WebSocket upgrade: `Connection: upgrade` is missing",
        ));
    }
    if !header_has(headers, header::UPGRADE, "websocket") {
        return Err(HttpError::bad_request(
            "not a WebSocket upgrade: `Upgrade: websocket` is missing",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != WEBSOCKET_VERSION.as_bytes())
    {
        return Err(HttpError::bad_request(
            "WebSocket upgrade: `Sec-WebSocket-Version: 13` is required",
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| HttpError::bad_request("WebSocket upgrade: `Sec-WebSocket-Key` is missing"))
}

#[utoipa::path(
    get,
    path = "/ws/shows/{id}",
    tag = "Shows",
    summary = "WebSocket: the live show protocol (docs/protocol.md); token as ?token= or Authorization",
    description = "Who: any role.",
    params(("id" = String, Path, description = "Id"), ("token" = Option<String>, Query, description = "Bearer token"), ("last_seq" = Option<u64>, Query, description = "Resume after this sequence number")),
    responses(
        (status = 101, description = "Success"),
        refusal::BadRequest, refusal::Unauthorized, refusal::NotFound,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    mut request: Request,
) -> Result<Response, HttpError> {
    let headers = request.headers();
    let key = handshake_key(headers)?;
    let claims = authenticate(&state, headers, query.get("token").map(String::as_str))?;
    if claims.role == Role::Viewer && BuyerId::parse(claims.sub.clone()).is_err() {
        return Err(unauthorized(
            "bad_subject",
            "the token's subject is not a valid buyer id",
        ));
    }
    let last_seq = match query.get("last_seq") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| HttpError::bad_request("last_seq: a whole number"))?,
        ),
    };
    let id = ShowId::parse(id).map_err(|_| HttpError::not_found("show"))?;
    let rt = state.shows().open(&id).await?;
    if state.shutting_down() {
        return Err(HttpError::new(ErrorCode::Unavailable, "shutting down"));
    }
    let Some(permit) = state.admit() else {
        metrics::inc(&state.metrics().connections_refused);
        return Err(HttpError::new(
            ErrorCode::Unavailable,
            "connection limit reached; retry later",
        ));
    };
    // Distributed mode: this node now follows the show's events from every other node.
    state.live().watch(&rt);
    let peer = ws::peer_for(claims, &rt);
    let upgraded = hyper::upgrade::on(&mut request);
    let hold = request.extensions().get::<Hold>().cloned();
    tokio::spawn(async move {
        let upgraded = match upgraded.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<HeldIo>>() {
            Ok(parts) => {
                // The 101 hyper wrote was held (see `http::held`): it goes out with the
                // session's first frames.
                let (tcp, answer) = parts.io.into_inner().into_parts();
                // `read_buf` shares hyper's whole read buffer (8 KiB): the bytes past the
                // request are copied out and the buffer goes now, rather than stay with every
                // connection for its life.
                let already_read = parts.read_buf.to_vec();
                drop(parts.read_buf);
                let answer = (!answer.is_empty()).then(|| answer.into());
                ws::run(state, rt, peer, tcp, already_read, answer, last_seq).await;
            }
            // Not the accept loop's TCP connection: the engine cannot write to it, so the
            // connection ends at once with 1011 (a server of this crate never gets here).
            Err(other) => {
                tracing::error!("websocket upgrade over a transport other than TCP");
                let close = nightmarket_live::Frame::close(1011, "internal_error");
                let mut io = TokioIo::new(other);
                let _ = tokio::io::AsyncWriteExt::write_all(&mut io, close.bytes()).await;
            }
        }
        drop(permit);
    });
    // Last, once nothing can refuse the upgrade any more: only a 101 is ever held.
    if let Some(hold) = hold {
        hold.on();
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(resp)
}
