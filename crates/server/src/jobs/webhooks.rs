//! Webhook delivery: POSTs the events the store enqueued to the webhooks subscribed to them.
//!
//! Every node runs a [`Deliverer`]. It leases due deliveries from the store (a leased delivery
//! is attempted by one node only; the lease counts the attempt), POSTs each with a signature,
//! and records what the attempt came to: delivered on 2xx, given up on 410 Gone or once
//! `webhooks.attempts` are spent, retried with exponential backoff otherwise. A node that dies
//! mid-attempt leaves its lease to expire and another node tries again, so delivery is at least
//! once; receivers dedupe on the `Nightmarket-Delivery` header, which is the same on every
//! attempt of one delivery.
//!
//! The signature scheme ([`sign`], [`verify`]) is documented for receivers in
//! `docs/webhooks.md`.
//!
//! Webhooks are not a way in: a target on a private, loopback or link-local address (or a name
//! that resolves only to such addresses, checked on every connection, so DNS cannot be
//! switched after the webhook was accepted) is refused unless `webhooks.allow_private_targets`
//! says otherwise. Redirects are not followed. HTTPS uses rustls with the system's roots, plus
//! `webhooks.ca_file` when set.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use nightmarket_domain::Millis;
use nightmarket_store::{DeliveryOutcome, DeliveryRow, Store, StoreError, WebhookRow};
use reqwest::{Client, StatusCode, header};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clock::SharedClock;
use crate::config::WebhookLimits;
use crate::metrics::WebhookCounters;
use crate::services::webhooks::{is_public, refuse_target};

type HmacSha256 = Hmac<Sha256>;

/// `User-Agent` of every webhook request.
pub const USER_AGENT: &str = concat!("nightmarket/", env!("CARGO_PKG_VERSION"));
/// Header naming the event (`show.live`, ...).
pub const EVENT_HEADER: &str = "Nightmarket-Event";
/// Header carrying the delivery id, the same on every attempt: receivers dedupe on it.
pub const DELIVERY_HEADER: &str = "Nightmarket-Delivery";
/// Header carrying the signature, `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Nightmarket-Signature";

/// Response body bytes read at most, for the error message of a refused attempt.
const RESPONSE_BODY_LIMIT: usize = 4096;
/// Characters of a response body kept in `last_error`.
const ERROR_BODY_CHARS: usize = 200;

/// The `Nightmarket-Signature` header value for `body` sent at `timestamp_secs`:
/// `t=<timestamp_secs>,v1=<lowercase hex HMAC-SHA256(secret, "<timestamp_secs>.<body>")>`.
pub fn sign(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mac = signed_mac(secret, timestamp_secs, body)
        .finalize()
        .into_bytes();
    format!("t={timestamp_secs},v1={}", hex(&mac))
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error(
        "signature timestamp {timestamp} is more than {tolerance_secs} s away from now ({now})"
    )]
    Stale {
        timestamp: i64,
        now: i64,
        tolerance_secs: i64,
    },
    #[error("signature does not match the body")]
    Mismatch,
}

/// Checks a `Nightmarket-Signature` header against the raw request `body`: the timestamp must
/// be within `tolerance_secs` of `now_secs` (either way), and one of the `v1` signatures must
/// be the HMAC of `"<t>.<body>"` under `secret`. The comparison takes constant time.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed("expected key=value pairs"));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one t"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a whole number"))?,
                );
            }
            "v1" => signatures
                .push(unhex(value).ok_or(SignatureError::Malformed("v1 is not hexadecimal"))?),
            // Other schemes may be added later; receivers ignore what they do not know.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1"));
    }
    if now_secs.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale {
            timestamp,
            now: now_secs,
            tolerance_secs,
        });
    }
    let expected = signed_mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|sig| expected.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn signed_mac(secret: &str, timestamp_secs: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    pairs
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The delay before the attempt after attempt number `attempts` (1 for the first):
/// `backoff_ms * 2^(attempts-1)`, capped at `max_backoff_ms`, without jitter.
pub fn backoff_ms(limits: &WebhookLimits, attempts: u32) -> u64 {
    let factor = 1u64
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX);
    limits
        .backoff_ms
        .saturating_mul(factor)
        .min(limits.max_backoff_ms)
}

/// Up to 10% of `delay`, at random, so receivers that fail together are not retried together.
fn jitter(delay: u64) -> u64 {
    let spread = delay / 10;
    if spread == 0 {
        return 0;
    }
    // A v4 UUID is 122 random bits from the operating system.
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    r % (spread + 1)
}

fn to_millis(ms: u64) -> Millis {
    Millis::try_from(ms).unwrap_or(Millis::MAX)
}

/// What one HTTP attempt came to, before deciding on retries.
enum Attempt {
    Answered {
        status: u16,
        error: Option<String>,
    },
    /// No usable answer: connection refused, timed out, ...
    Broken(String),
    /// The webhook's URL cannot be delivered to; retrying will not help.
    Undeliverable(String),
}

#[derive(Clone)]
struct Inner {
    store: Arc<Store>,
    limits: WebhookLimits,
    clock: SharedClock,
    client: Client,
    counters: Arc<WebhookCounters>,
}

/// Resolves names for webhook requests and keeps only public addresses (unless private ones
/// are allowed): the check holds for the address actually connected to.
struct GuardedResolver {
    allow_private: bool,
}

/// What a refused name resolution says; `describe` tells it from a network failure.
const REFUSED_NAME: &str = "resolves only to private, loopback or link-local addresses";

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} {REFUSED_NAME} (webhooks.allow_private_targets)"),
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The one HTTP client of a deliverer: pooled, no redirects, no proxy from the environment,
/// the guarded resolver, and the extra roots of `ca_file`.
fn http_client(limits: &WebhookLimits) -> Result<Client, String> {
    // rustls needs a process-wide crypto provider; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: limits.allow_private_targets,
        }));
    if !limits.ca_file.is_empty() {
        let pem = std::fs::read(&limits.ca_file)
            .map_err(|e| format!("webhooks.ca_file {}: {e}", limits.ca_file))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("webhooks.ca_file {}: {e}", limits.ca_file))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("webhook HTTP client: {e}"))
}

/// Delivers due webhook deliveries from the store. Cheap to clone: clones share one HTTP
/// client (and its connection pool) and one set of counters.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

impl Deliverer {
    /// A deliverer over `store`. `limits` are normally the validated `webhooks` table of the
    /// configuration; a zero `batch`, `max_in_flight` or `poll_ms` counts as 1.
    /// Fails only when `webhooks.ca_file` cannot be read as PEM certificates.
    pub fn new(
        store: Arc<Store>,
        mut limits: WebhookLimits,
        clock: SharedClock,
    ) -> Result<Self, String> {
        limits.batch = limits.batch.max(1);
        limits.max_in_flight = limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        limits.poll_ms = limits.poll_ms.max(1);
        let client = http_client(&limits)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                limits,
                clock,
                client,
                counters: Arc::default(),
            }),
        })
    }

    /// Counts attempts into `counters` (normally the server's `Metrics::webhooks`).
    #[must_use]
    pub fn with_counters(self, counters: Arc<WebhookCounters>) -> Self {
        let Inner {
            store,
            limits,
            clock,
            client,
            ..
        } = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                store,
                limits,
                clock,
                client,
                counters,
            }),
        }
    }

    /// Attempts made by this deliverer, by outcome.
    pub fn counters(&self) -> &WebhookCounters {
        &self.inner.counters
    }

    pub fn limits(&self) -> &WebhookLimits {
        &self.inner.limits
    }

    /// One pass: leases the deliveries due now (at most `batch`, and at most `max_in_flight`),
    /// attempts them all at once and records each outcome. Returns how many were attempted.
    /// A failure to record an outcome is returned after every attempt has finished; that
    /// delivery's lease then expires and it is attempted again.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let limit = self.batch_limit(self.inner.limits.max_in_flight);
        let leased = self.lease(limit).await?;
        let n = leased.len();
        let results = futures_util::future::join_all(
            leased
                .into_iter()
                .map(|(d, w)| self.inner.clone().attempt(d, w)),
        )
        .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(n)
    }

    /// Delivers until `shutdown` resolves: takes due deliveries as room frees up (at most
    /// `max_in_flight` requests at once), and polls every `poll_ms` while nothing is due. On
    /// shutdown it takes no more deliveries and waits for the requests in flight (each ends
    /// within `timeout_ms`) so that their outcomes are recorded.
    pub async fn run(self, shutdown: impl Future) {
        let limits = &self.inner.limits;
        let poll = Duration::from_millis(limits.poll_ms);
        let room = Arc::new(Semaphore::new(limits.max_in_flight));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while let Some(done) = tasks.try_join_next() {
                log_panic(done);
            }
            let free = room.available_permits();
            if free == 0 {
                tokio::select! {
                    done = tasks.join_next() => if let Some(done) = done { log_panic(done) },
                    _ = &mut shutdown => break,
                }
                continue;
            }
            let limit = self.batch_limit(free);
            let leased = match self.lease(limit).await {
                Ok(leased) => leased,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries could not be leased");
                    Vec::new()
                }
            };
            let full = leased.len() == limit as usize;
            for (d, w) in leased {
                let Ok(permit) = room.clone().try_acquire_owned() else {
                    // Unreachable: only this loop takes permits, and it leased no more than
                    // were free. Should it happen, the lease expires and the delivery is
                    // attempted again.
                    continue;
                };
                let inner = self.inner.clone();
                tasks.spawn(async move {
                    if let Err(e) = inner.attempt(d, w).await {
                        tracing::warn!(error = %e, "webhook attempt could not be recorded");
                    }
                    drop(permit);
                });
            }
            if full {
                // Probably more due: take it as soon as there is room.
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = &mut shutdown => break,
            }
        }
        while let Some(done) = tasks.join_next().await {
            log_panic(done);
        }
    }

    fn batch_limit(&self, room: usize) -> u32 {
        self.inner
            .limits
            .batch
            .min(u32::try_from(room).unwrap_or(u32::MAX))
    }

    async fn lease(&self, limit: u32) -> Result<Vec<(DeliveryRow, WebhookRow)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        inner
            .store
            .lease_deliveries(inner.clock.now(), to_millis(inner.limits.lease_ms), limit)
            .await
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "webhook attempt panicked");
    }
}

impl Inner {
    /// Makes one attempt of a leased delivery and records its outcome.
    async fn attempt(self: Arc<Self>, d: DeliveryRow, w: WebhookRow) -> Result<(), StoreError> {
        let result = self.post(&d, &w).await;
        let now = self.clock.now();
        let last = d.attempts >= self.limits.attempts;
        let (status, error) = match result {
            Attempt::Answered {
                status,
                error: None,
            } => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(delivery = %d.id, url = %w.url, status, "webhook delivered");
                return self
                    .store
                    .record_attempt(&d.id, &DeliveryOutcome::Delivered { status, at: now })
                    .await;
            }
            Attempt::Answered {
                status: 410,
                error: Some(error),
            } => {
                return self.give_up(&d, &w, Some(410), error).await;
            }
            Attempt::Undeliverable(error) => return self.give_up(&d, &w, None, error).await,
            Attempt::Answered {
                status,
                error: Some(error),
            } => (Some(status), error),
            Attempt::Broken(error) => (None, error),
        };
        if last {
            let error = format!("{error}; gave up after {} attempts", d.attempts);
            return self.give_up(&d, &w, status, error).await;
        }
        let delay = backoff_ms(&self.limits, d.attempts);
        let next_at = now.saturating_add(to_millis(delay.saturating_add(jitter(delay))));
        self.counters.retry.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            delivery = %d.id, url = %w.url, attempt = d.attempts, error = %error, next_at,
            "webhook attempt failed; will retry"
        );
        self.store
            .record_attempt(
                &d.id,
                &DeliveryOutcome::Retry {
                    status,
                    error,
                    next_at,
                },
            )
            .await
    }

    async fn give_up(
        &self,
        d: &DeliveryRow,
        w: &WebhookRow,
        status: Option<u16>,
        error: String,
    ) -> Result<(), StoreError> {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            delivery = %d.id, url = %w.url, attempt = d.attempts, error = %error,
            "webhook delivery failed; no further attempts"
        );
        self.store
            .record_attempt(&d.id, &DeliveryOutcome::Failed { status, error })
            .await
    }

    /// POSTs the delivery within `timeout_ms` (connecting and TLS included).
    async fn post(&self, d: &DeliveryRow, w: &WebhookRow) -> Attempt {
        if let Some(reason) = refuse_target(&w.url, self.limits.allow_private_targets) {
            return Attempt::Undeliverable(reason);
        }
        let timestamp = self.clock.now().div_euclid(1000);
        let body = d.payload.clone().into_bytes();
        let signature = sign(&w.secret, timestamp, &body);
        let timeout = self.limits.timeout_ms;
        let exchange = async {
            let response = self
                .client
                .post(w.url.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, &d.event)
                .header(DELIVERY_HEADER, &d.id)
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(describe)?;
            let status = response.status();
            if status.is_success() {
                // Delivered: the body is not read (the connection is not reused then).
                return Ok((status, None));
            }
            let text = read_limited(response).await;
            Ok((status, Some(text)))
        };
        match tokio::time::timeout(Duration::from_millis(timeout), exchange).await {
            Err(_) => Attempt::Broken(format!("timed out after {timeout} ms")),
            Ok(Err(Refusal::Policy(error))) => Attempt::Undeliverable(error),
            Ok(Err(Refusal::Network(error))) => Attempt::Broken(error),
            Ok(Ok((status, None))) => Attempt::Answered {
                status: status.as_u16(),
                error: None,
            },
            Ok(Ok((status, Some(body)))) => Attempt::Answered {
                status: status.as_u16(),
                error: Some(status_error(status, &body)),
            },
        }
    }
}

/// Why a request got no answer: the target policy (retrying cannot help), or the network.
enum Refusal {
    Policy(String),
    Network(String),
}

/// Reads at most [`RESPONSE_BODY_LIMIT`] bytes of a response body, as text; the rest is
/// dropped with the connection.
async fn read_limited(mut response: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(data)) => {
                let take = data.len().min(RESPONSE_BODY_LIMIT - buf.len());
                buf.extend_from_slice(&data[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `HTTP 503: <first 200 characters of the body>`, or `HTTP 503 Service Unavailable` when the
/// body is empty.
fn status_error(status: StatusCode, body: &str) -> String {
    let text: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_BODY_CHARS)
        .collect();
    if text.is_empty() {
        match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        }
    } else {
        format!("HTTP {}: {text}", status.as_u16())
    }
}

/// A readable cause of a failed request: "connection refused", "connection reset", a refused
/// target, a certificate the roots do not vouch for, ...
fn describe(e: reqwest::Error) -> Refusal {
    use std::io::ErrorKind as K;
    let context = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut deepest = e.to_string();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                K::PermissionDenied if io.to_string().contains(REFUSED_NAME) => {
                    Refusal::Policy(io.to_string())
                }
                K::ConnectionRefused => Refusal::Network("connection refused".to_owned()),
                K::ConnectionReset => {
                    Refusal::Network("connection reset by the receiver".to_owned())
                }
                K::ConnectionAborted => Refusal::Network("connection aborted".to_owned()),
                K::UnexpectedEof => {
                    Refusal::Network("connection closed before a response".to_owned())
                }
                _ => Refusal::Network(format!("{context}: {io}")),
            };
        }
        deepest = err.to_string();
        source = err.source();
    }
    Refusal::Network(format!("{context}: {deepest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> WebhookLimits {
        crate::config::Config::defaults()
            .expect("defaults")
            .webhooks
    }

    #[test]
    fn signatures_round_trip() {
        let header = sign("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(
            verify("s3cret", &header, b"{\"a\":1}", 1_700_000_010, 300),
            Ok(())
        );
        // A rotated secret: either signature is accepted.
        let other = sign("old", 1_700_000_000, b"{\"a\":1}");
        let both = format!("{header},{}", other.split_once(',').expect("v1").1);
        assert_eq!(
            verify("old", &both, b"{\"a\":1}", 1_700_000_000, 300),
            Ok(())
        );
        assert!(matches!(
            verify("s3cret", "v1=00", b"", 0, 300),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify("s3cret", "t=1,v1=zz", b"", 1, 300),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn known_signature() {
        // The example of docs/webhooks.md.
        assert_eq!(
            sign("whsec_example", 1764259200, br#"{"id":"show.live:s1"}"#),
            "t=1764259200,v1=febb617e8f396a1aef0a263a97a153a871929c6619c85e5751e871d9700fecc7"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let l = limits();
        assert_eq!(backoff_ms(&l, 1), 1000);
        assert_eq!(backoff_ms(&l, 2), 2000);
        assert_eq!(backoff_ms(&l, 3), 4000);
        assert_eq!(backoff_ms(&l, 10), 512_000);
        assert_eq!(backoff_ms(&l, 11), 600_000);
        assert_eq!(backoff_ms(&l, 200), 600_000);
        for _ in 0..100 {
            assert!(jitter(1000) <= 100);
        }
        assert_eq!(jitter(5), 0);
    }

    #[test]
    fn status_errors_are_short_and_readable() {
        assert_eq!(
            status_error(StatusCode::SERVICE_UNAVAILABLE, ""),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, " bad\njson "),
            "HTTP 400: bad json"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            status_error(StatusCode::INTERNAL_SERVER_ERROR, &long).len(),
            "HTTP 500: ".len() + 200
        );
    }
}
