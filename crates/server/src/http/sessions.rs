//! Sign-in for people in browsers: one-time invite links, guest viewers, and the session cookie.
//!
//! The cookie holds a short-lived signed token (the same HS256 tokens API clients send as
//! bearer tokens) that names a session row. [`layer`] runs before every handler: it checks the
//! row (sign-out revokes it at once, on every node), guards cookie-signed state changes against
//! cross-site requests, hands the token on as the request's `Authorization` so handlers
//! authorise cookie and bearer requests by the same rules, and re-signs the token once half its
//! life has passed so that a console in use stays signed in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nightmarket_domain::{BuyerId, Millis, SellerId};
use nightmarket_store::{InviteRefusal, InviteRow, SessionRow, Store};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{CreateInvite, GuestSignIn, Invite, RedeemInvite, SessionInfo};
use sha2::{Digest, Sha256};

use crate::auth::{Claims, Role, TokenKey};
use crate::config::{Config, Sessions};
use crate::http::error::HttpError;
use crate::http::shows::{ApiResult, authenticate, body, require};
use crate::state::{AppState, now_ms};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "nm_session";

/// Longest display name a guest may choose, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 40;

/// The session a cookie-signed request runs in; handlers read it from the request extensions.
#[derive(Debug, Clone)]
pub struct CookieSession(pub SessionRow);

/// A fresh secret code: 32 random bytes, URL-safe. UUIDv4 draws its 122 random bits from the
/// operating system's generator; two of them give 244 bits, beyond guessing.
fn new_code() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a code: its SHA-256, hex.
pub fn hash_code(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The origin people reach this server at: `public_url`, else `http://<Host>`.
fn origin(config: &Config, headers: &HeaderMap) -> String {
    if !config.public_url.is_empty() {
        return config.public_url.clone();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&config.listen);
    format!("http://{host}")
}

/// The sign-in link for `code` at `base` (an origin).
pub fn invite_url(base: &str, code: &str) -> String {
    // The code travels in the fragment: browsers never send it to a server, so it stays out of
    // access logs and proxies; the sign-in page posts it.
    format!("{base}/signin#code={code}")
}

/// Creates a one-time sign-in link for `role` and `subject`. A seller's subject must be a
/// known seller id (the link greets them by the seller's name); an operator's is a name in the
/// id alphabet, which becomes the `actor` of everything they do.
pub async fn issue_invite(
    store: &Store,
    limits: &Sessions,
    role: &str,
    subject: &str,
    created_by: &str,
    now: Millis,
) -> ApiResult<(String, InviteRow)> {
    let name = match role {
        "seller" => {
            let id = SellerId::parse(subject)
                .map_err(|e| HttpError::bad_request(format!("subject: {e}")))?;
            store
                .seller(&id)
                .await?
                .ok_or_else(|| {
                    HttpError::bad_request(format!("subject: seller {id} does not exist"))
                })?
                .name
        }
        "operator" => {
            // Same alphabet as every id: the name ends up in tokens and actor columns.
            SellerId::parse(subject)
                .map_err(|e| HttpError::bad_request(format!("subject: {e}")))?;
            subject.to_owned()
        }
        other => {
            return Err(HttpError::bad_request(format!(
                "role: expected operator or seller, got {other:?} (viewers join as guests)"
            )));
        }
    };
    let code = new_code();
    let row = InviteRow {
        code_hash: hash_code(&code),
        role: role.to_owned(),
        subject: subject.to_owned(),
        name,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(limits.invite_ttl_ms as i64),
    };
    store.create_invite(&row).await?;
    Ok((code, row))
}

/// `POST /api/invites` (operators): a sign-in link for a seller or another operator.
pub async fn create_invite(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateInvite>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let (code, row) = issue_invite(
        &state.catalog,
        &state.config.sessions,
        &req.role,
        &req.subject,
        &claims.sub,
        now_ms(),
    )
    .await?;
    let url = invite_url(&origin(&state.config, &headers), &code);
    Ok((
        StatusCode::CREATED,
        Json(Invite {
            code,
            url,
            role: row.role,
            subject: row.subject,
            expires_at: row.expires_at,
        }),
    ))
}

/// The `Set-Cookie` value carrying `token` for `max_age_secs` (0 clears it).
fn cookie(config: &Config, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    // Tokens are base64url and dots: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie(config: &Config) -> HeaderValue {
    cookie(config, "", 0)
}

/// Signs the cookie token of `session`: `token_ttl_ms` from now, never past the session's end.
fn session_token(key: &TokenKey, limits: &Sessions, s: &SessionRow, now: Millis) -> Option<String> {
    let role = Role::parse(&s.role)?;
    // Tokens count whole seconds: round the end up, so a token lives at least its ttl.
    let end = now
        .saturating_add(limits.token_ttl_ms as i64)
        .min(s.expires_at);
    let exp = (end + 999) / 1000;
    Some(key.sign(&Claims {
        sub: s.subject.clone(),
        role,
        exp,
        iat: now / 1000,
        sid: Some(s.id.clone()),
    }))
}

/// The answer to a sign-in: who, plus the cookie.
fn signed_in(state: &AppState, s: &SessionRow, now: Millis) -> ApiResult<Response> {
    let token = session_token(&state.key, &state.config.sessions, s, now)
        .ok_or_else(|| HttpError::new(ErrorCode::Internal, "session with an unknown role"))?;
    let max_age = (state.config.sessions.token_ttl_ms / 1000) as i64;
    let info = SessionInfo {
        role: s.role.clone(),
        subject: s.subject.clone(),
        name: s.name.clone(),
        via: "cookie".into(),
    };
    let mut resp = Json(info).into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, cookie(&state.config, &token, max_age));
    Ok(resp)
}

/// `POST /api/auth/redeem`: spends a one-time sign-in link and opens a session.
pub async fn redeem(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<RedeemInvite>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(payload)?;
    let code = req.code.trim();
    // Our codes are 43 characters; anything far off is not one, and is not worth a query.
    if code.is_empty() || code.len() > 128 {
        return Err(HttpError::new(
            ErrorCode::InviteUnknown,
            "this sign-in link is not valid",
        ));
    }
    let now = now_ms();
    let sid = uuid::Uuid::new_v4().to_string();
    let end = now.saturating_add(state.config.sessions.max_life_ms as i64);
    match state
        .catalog
        .redeem_invite(&hash_code(code), &sid, now, end)
        .await?
    {
        Ok(session) => signed_in(&state, &session, now),
        Err(InviteRefusal::Unknown) => Err(HttpError::new(
            ErrorCode::InviteUnknown,
            "this sign-in link is not valid",
        )),
        Err(InviteRefusal::Used) => Err(HttpError::new(
            ErrorCode::InviteUsed,
            "this sign-in link was already used; ask the market office for a new one",
        )),
        Err(InviteRefusal::Expired) => Err(HttpError::new(
            ErrorCode::InviteExpired,
            "this sign-in link has expired; ask the market office for a new one",
        )),
    }
}

/// `POST /api/auth/guest`: a viewer session without an account, limited per address.
pub async fn guest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    payload: Result<Json<GuestSignIn>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(payload)?;
    let name = display_name(&req.display_name)?;
    let client = client_address(
        peer.ip(),
        &headers,
        state.config.sessions.trusted_proxy_hops,
    );
    if !state.guests.allow(client) {
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "too many guest sign-ins from this address; wait a minute",
        ));
    }
    let now = now_ms();
    let subject = format!("guest-{}", uuid::Uuid::new_v4().simple());
    // The buyer id comes from the server, never the client; check it fits the id rules.
    BuyerId::parse(subject.clone())
        .map_err(|e| HttpError::new(ErrorCode::Internal, format!("guest id: {e}")))?;
    let session = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        role: Role::Viewer.as_str().into(),
        subject,
        name,
        created_at: now,
        expires_at: now.saturating_add(state.config.sessions.max_life_ms as i64),
        revoked_at: None,
    };
    state.catalog.create_session(&session).await?;
    signed_in(&state, &session, now)
}

/// The client's address: the peer's, or behind `hops` trusted proxies, the address the
/// outermost of them saw (the `hops`-th entry of `X-Forwarded-For` from the right; entries
/// further left were written by the client and prove nothing). Falls back to the peer when the
/// header is missing or short.
fn client_address(peer: IpAddr, headers: &HeaderMap, hops: u32) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(hops as usize)
        .and_then(|i| entries.get(i))
        .and_then(|e| e.parse().ok())
        .unwrap_or(peer)
}

/// A guest's display name: trimmed, 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, no control
/// characters (they would corrupt a feed line or a log).
fn display_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(HttpError::bad_request("display_name: must not be empty"));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(HttpError::bad_request(format!(
            "display_name: at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(HttpError::bad_request(
            "display_name: control characters are not allowed",
        ));
    }
    Ok(name.to_owned())
}

/// `POST /api/auth/signout`: revokes the cookie's session and clears the cookie.
pub async fn signout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A bearer token with no session has nothing to revoke; a missing or dead cookie still
    // gets cleared.
    if let Ok(claims) = authenticate(&state, &headers, None)
        && let Some(sid) = &claims.sid
    {
        state.catalog.revoke_session(sid, now_ms()).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, clear_cookie(&state.config));
    Ok(resp)
}

/// `GET /api/me`: who this request is signed in as.
pub async fn me(
    State(state): State<Arc<AppState>>,
    session: Option<axum::Extension<CookieSession>>,
    headers: HeaderMap,
) -> ApiResult<Json<SessionInfo>> {
    let claims = authenticate(&state, &headers, None)?;
    if let Some(axum::Extension(CookieSession(s))) = session {
        return Ok(Json(SessionInfo {
            role: s.role,
            subject: s.subject,
            name: s.name,
            via: "cookie".into(),
        }));
    }
    let name = match claims.role {
        Role::Seller => match SellerId::parse(claims.sub.clone()) {
            Ok(id) => state
                .catalog
                .seller(&id)
                .await?
                .map_or_else(|| claims.sub.clone(), |s| s.name),
            Err(_) => claims.sub.clone(),
        },
        Role::Operator | Role::Viewer => claims.sub.clone(),
    };
    Ok(Json(SessionInfo {
        role: claims.role.as_str().into(),
        subject: claims.sub,
        name,
        via: "bearer".into(),
    }))
}

/// The bearer token a request carries, if any: `Authorization: Bearer`, or `?token=` (the
/// WebSocket URL of partner viewer tokens).
fn sent_token(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(AUTHORIZATION) {
        return h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::to_owned)
    })
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE_NAME}="))
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
}

/// Whether a cookie-signed request came from a page of this server. Browsers send `Origin` on
/// every state-changing fetch and on WebSocket handshakes, and `Sec-Fetch-Site` on all
/// requests; a client that sends neither is not a browser, so no other site can have made it
/// send the cookie.
fn same_origin(config: &Config, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match headers.get(ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(o)) if !config.public_url.is_empty() => o.eq_ignore_ascii_case(&config.public_url),
        Some(Ok(o)) => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let bare = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            matches!((bare, host), (Some(b), Some(h)) if b.eq_ignore_ascii_case(h))
        }
    }
}

/// Whether `s` may still be used at `now` by a token claiming `claims`.
fn usable(s: &SessionRow, claims: &Claims, now: Millis) -> bool {
    s.revoked_at.is_none()
        && s.expires_at > now
        && s.subject == claims.sub
        && s.role == claims.role.as_str()
}

fn refusal(code: ErrorCode, message: &str, config: &Config) -> Response {
    let mut resp = HttpError::new(code, message).into_response();
    resp.headers_mut().insert(SET_COOKIE, clear_cookie(config));
    resp
}

/// The session middleware; see the module documentation.
pub async fn layer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let now = now_ms();
    if let Some(token) = sent_token(&req) {
        // A session token copied out of a cookie is held to the same revocation as the cookie.
        if let Ok(claims) = state.key.verify(&token, now / 1000)
            && let Some(sid) = &claims.sid
        {
            match state.catalog.session(sid).await {
                Ok(Some(s)) if usable(&s, &claims, now) => {}
                Ok(_) => {
                    return crate::http::shows::unauthorized(
                        "signed_out",
                        "the session was signed out",
                    )
                    .into_response();
                }
                Err(e) => return HttpError::from(e).into_response(),
            }
        }
        return next.run(req).await;
    }
    let Some(token) = cookie_token(req.headers()) else {
        return next.run(req).await;
    };
    let claims = match state.key.verify(&token, now / 1000) {
        Ok(c) if c.sid.is_some() => c,
        // An expired or foreign cookie: carry on signed out, and drop the cookie.
        _ => {
            let mut resp = next.run(req).await;
            resp.headers_mut()
                .append(SET_COOKIE, clear_cookie(&state.config));
            return resp;
        }
    };
    let sid = claims.sid.clone().unwrap_or_default();
    let session = match state.catalog.session(&sid).await {
        Ok(Some(s)) if usable(&s, &claims, now) => s,
        Ok(_) => {
            let mut resp = next.run(req).await;
            resp.headers_mut()
                .append(SET_COOKIE, clear_cookie(&state.config));
            return resp;
        }
        Err(e) => return HttpError::from(e).into_response(),
    };
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let upgrade = req.headers().contains_key(axum::http::header::UPGRADE);
    if (changes || upgrade) && !same_origin(&state.config, req.headers()) {
        return refusal(
            ErrorCode::CsrfRejected,
            "this request came from another site; open the console from this server",
            &state.config,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    req.extensions_mut().insert(CookieSession(session.clone()));
    let signing_out = req.uri().path() == "/api/auth/signout";
    let mut resp = next.run(req).await;
    let half_life = (state.config.sessions.token_ttl_ms / 2000) as i64;
    if !signing_out
        && now / 1000 >= claims.iat.saturating_add(half_life)
        && let Some(fresh) = session_token(&state.key, &state.config.sessions, &session, now)
    {
        let max_age = (session
            .expires_at
            .min(now + state.config.sessions.token_ttl_ms as i64)
            - now)
            / 1000;
        resp.headers_mut()
            .append(SET_COOKIE, cookie(&state.config, &fresh, max_age));
    }
    resp
}

/// Guest sign-ins per address: a token bucket each, in a map of bounded size.
pub struct GuestLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    per_second: f64,
    burst: f64,
    capacity: usize,
}

impl GuestLimiter {
    pub fn new(limits: &Sessions) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            per_second: f64::from(limits.guests_per_minute) / 60.0,
            burst: f64::from(limits.guest_burst),
            capacity: limits.tracked_addresses,
        }
    }

    /// Takes one sign-in from `ip`'s allowance; `false` when it has none left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&ip) {
            // A full bucket is the same as no entry: forget those first. Should more addresses
            // than the bound be mid-burst at once, forget them all rather than grow.
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, burst: u32, tracked: usize) -> Sessions {
        Sessions {
            invite_ttl_ms: 1,
            token_ttl_ms: 2000,
            max_life_ms: 2000,
            guests_per_minute: per_minute,
            guest_burst: burst,
            tracked_addresses: tracked,
            trusted_proxy_hops: 0,
        }
    }

    #[test]
    fn guest_allowance_per_address_and_bounded() {
        let l = GuestLimiter::new(&limits(1, 2, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "127.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a), "burst spent");
        assert!(l.allow(b), "another address has its own allowance");
        for i in 3..50u8 {
            l.allow(IpAddr::from([127, 0, 0, i]));
        }
        let len = l.buckets.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(len <= 2, "the map stays within its bound: {len}");
    }

    #[test]
    fn client_address_behind_proxies() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        assert_eq!(client_address(peer, &h, 0), peer, "no proxy trusted");
        assert_eq!(
            client_address(peer, &h, 1).to_string(),
            "203.0.113.9",
            "one proxy: its entry, not the client's own claim"
        );
        assert_eq!(client_address(peer, &h, 2).to_string(), "6.6.6.6");
        assert_eq!(client_address(peer, &h, 3), peer, "a short header");
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_address(peer, &h, 1), peer);
    }

    #[test]
    fn names_and_codes() {
        assert_eq!(display_name("  Lan  ").ok().as_deref(), Some("Lan"));
        assert!(display_name("").is_err());
        assert!(display_name("a\u{0}b").is_err());
        assert!(display_name(&"ă".repeat(41)).is_err());
        assert_eq!(
            display_name(&"ă".repeat(40))
                .map(|s| s.chars().count())
                .ok(),
            Some(40)
        );
        let (c1, c2) = (new_code(), new_code());
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 43);
        assert_eq!(hash_code("abc").len(), 64);
    }

    #[test]
    fn origin_check() {
        let mut config = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&config, &h), "no Origin: not a browser");
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&config, &h));
        h.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&config, &h));
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&config, &h));
        h.remove(ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&config, &h));
        h.remove("sec-fetch-site");
        config.public_url = "https://cho.example.vn".into();
        h.insert(ORIGIN, HeaderValue::from_static("https://cho.example.vn"));
        assert!(same_origin(&config, &h));
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(!same_origin(&config, &h));
    }
}
