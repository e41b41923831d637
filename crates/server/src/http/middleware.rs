//! The pieces of the middleware stack that [`super::router`] assembles from tower-http: which
//! request ids are kept, what each request's trace span records, what is compressed, and the
//! CORS rules when origins are configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a client; a longer one is replaced, so a client cannot fill
/// the logs with what it sends.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// How long a browser may keep a CORS preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Whether a client's request id is kept: 1 to [`MAX_REQUEST_ID_BYTES`] letters, digits and
/// `-_.:`, which any log line or header can carry as they are.
pub fn sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Makes the ids of requests that come without a sane one: UUID-shaped, a random half drawn once
/// per process and a counter for the other half. Unique across nodes in practice, and unlike a
/// random UUID per request it costs no `getrandom` system call on every request and every
/// WebSocket join.
#[derive(Clone)]
pub struct NodeRequestIds {
    node: u64,
    next: Arc<AtomicU64>,
}

impl NodeRequestIds {
    pub fn new() -> Self {
        Self {
            node: uuid::Uuid::new_v4().as_u64_pair().0,
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for NodeRequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl MakeRequestId for NodeRequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = uuid::Uuid::from_u64_pair(self.node, n)
            .hyphenated()
            .to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Drops a request id that is not [`sane_request_id`] (or that appears more than once), so that
/// tower-http's `SetRequestId` generates one in its place.
pub async fn drop_insane_request_id(mut req: Request) -> Request {
    let ids = req.headers().get_all(&REQUEST_ID);
    let mut values = ids.iter();
    let keep = matches!((values.next(), values.next()), (Some(v), None) if sane_request_id(v));
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// The span of one request: its method, the route's path template (never the raw path, whose ids
/// would make every request its own series), the request id; the status and the latency are
/// recorded when the response starts.
pub fn request_span(req: &Request) -> Span {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = template,
        request_id = id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// Records the response's status and the latency in the request's span.
pub fn record_response(resp: &Response, latency: Duration, span: &Span) {
    span.record("status", resp.status().as_u16());
    span.record(
        "latency_ms",
        u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
    );
    tracing::debug!(parent: span, "answered");
}

/// What gzip applies to: JSON, text, CSV, scripts and styles, as tower-http's default decides
/// (not images, already compressed, nor bodies too small to gain), and never a protocol switch.
pub fn compressible() -> impl Predicate {
    DefaultPredicate::new().and(
        |status: StatusCode, _: Version, _: &axum::http::HeaderMap, _: &axum::http::Extensions| {
            status != StatusCode::SWITCHING_PROTOCOLS
        },
    )
}

/// The CORS rules for `origins`; `None` (no CORS headers at all) when there are none. Bearer
/// tokens only: credentials are not allowed, so the session cookie stays same-origin.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID])
            .max_age(CORS_MAX_AGE),
    )
}
