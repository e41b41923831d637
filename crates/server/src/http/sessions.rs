//! Sign-in for people in browsers: one-time invite links, guest viewers, and the session cookie.
//!
//! The cookie holds a short-lived signed token (the same HS256 tokens API clients send as
//! bearer tokens) that names a session row. [`layer`] runs before every handler: it checks the
//! row (sign-out revokes it at once, on every node), guards cookie-signed state changes against
//! cross-site requests, hands the token on as the request's `Authorization` so handlers
//! authorise cookie and bearer requests by the same rules, and re-signs the token once half its
//! life has passed so that a console in use stays signed in.

use nightmarket_wire::http::ApiError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nightmarket_domain::Millis;
use nightmarket_store::SessionRow;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{CreateInvite, GuestSignIn, Invite, RedeemInvite, SessionInfo};

use crate::auth::Role;
use crate::config::Config;
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, authenticate, body, require, unauthorized};
use crate::http::refusal;
use crate::services::sessions::{self, display_name, invite_url, issue_invite, session_token};
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "nm_session";

/// The session a cookie-signed request runs in; handlers read it from the request extensions.
#[derive(Debug, Clone)]
pub struct CookieSession(pub SessionRow);

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

/// `POST /api/invites` (operators): a sign-in link for a seller or another operator.
#[utoipa::path(
    post,
    path = "/api/invites",
    tag = "Sign-in",
    summary = "A one-time sign-in link for a seller or an operator",
    description = "Who: operator. Only the code's hash is stored: this answer is the one place the code appears.",
    request_body(content = CreateInvite, example = json!({"role": "seller", "subject": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})),
    responses(
        (status = 201, description = "Success", body = Invite, example = json!({"code": "q3X9…", "url": "http://127.0.0.1:8080/signin#code=q3X9…", "role": "seller", "subject": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "expires_at": 1795824000000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden,
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub async fn create_invite(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateInvite>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let (code, row) = issue_invite(
        state.store(),
        &state.config().sessions,
        &req.role,
        &req.subject,
        &claims.sub,
        state.now(),
    )
    .await?;
    let url = invite_url(&origin(state.config(), &headers), &code);
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

/// The answer to a sign-in: who, plus the cookie.
fn signed_in(state: &AppState, s: &SessionRow, now: Millis) -> ApiResult<Response> {
    let token = session_token(state.key(), &state.config().sessions, s, now)
        .ok_or_else(|| HttpError::new(ErrorCode::Internal, "session with an unknown role"))?;
    let max_age = (state.config().sessions.token_ttl_ms / 1000) as i64;
    let info = SessionInfo {
        role: s.role.clone(),
        subject: s.subject.clone(),
        name: s.name.clone(),
        via: "cookie".into(),
    };
    let mut resp = Json(info).into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, cookie(state.config(), &token, max_age));
    Ok(resp)
}

/// `POST /api/auth/redeem`: spends a one-time sign-in link and opens a session.
#[utoipa::path(
    post,
    path = "/api/auth/redeem",
    tag = "Sign-in",
    summary = "Sign in with a one-time link's code; sets the HttpOnly session cookie",
    description = "Who: anyone holding the code. The link is spent by its first use.",
    request_body(content = RedeemInvite, example = json!({"code": "q3X9…"})),
    responses(
        (status = 200, description = "Success", body = SessionInfo, example = json!({"role": "seller", "subject": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "HTX Mật ong Ba Vì", "via": "cookie"})),
        (status = 401, description = "invite_used", body = ApiError),
        refusal::BadRequest,
    ),
)]
pub async fn redeem(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<RedeemInvite>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(payload)?;
    let now = state.now();
    let session = sessions::redeem(state.store(), &state.config().sessions, &req.code, now).await?;
    signed_in(&state, &session, now)
}

/// `POST /api/auth/guest`: a viewer session without an account, limited per address.
#[utoipa::path(
    post,
    path = "/api/auth/guest",
    tag = "Sign-in",
    summary = "Join as a guest viewer with a display name; sets the session cookie",
    description = "Who: anyone; limited per address (sessions.guests_per_minute).",
    request_body(content = GuestSignIn, example = json!({"display_name": "Lan"})),
    responses(
        (status = 200, description = "Success", body = SessionInfo, example = json!({"role": "viewer", "subject": "guest-6f1c0d9a2b3e4f5a8b7c6d5e4f3a2b1c", "name": "Lan", "via": "cookie"})),
        (status = 429, description = "rate_limited", body = ApiError),
        refusal::BadRequest,
    ),
)]
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
        state.config().sessions.trusted_proxy_hops,
    );
    if !state.guests().allow(client) {
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "too many guest sign-ins from this address; wait a minute",
        ));
    }
    let now = state.now();
    let session = sessions::guest(state.store(), &state.config().sessions, &name, now).await?;
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

/// `POST /api/auth/signout`: revokes the cookie's session and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/auth/signout",
    tag = "Sign-in",
    summary = "Sign out: revokes the session and clears the cookie",
    description = "Who: a signed-in browser (nothing to revoke for bearer tokens).",
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "csrf_rejected", body = ApiError),
    ),
)]
pub async fn signout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A bearer token with no session has nothing to revoke; a missing or dead cookie still
    // gets cleared.
    if let Ok(claims) = authenticate(&state, &headers, None)
        && let Some(sid) = &claims.sid
    {
        sessions::sign_out(state.store(), sid, state.now()).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, clear_cookie(state.config()));
    Ok(resp)
}

/// `GET /api/me`: who this request is signed in as.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "Sign-in",
    summary = "Who this request is signed in as",
    description = "Who: any signed-in request (cookie or bearer token).",
    responses(
        (status = 200, description = "Success", body = SessionInfo, example = json!({"role": "seller", "subject": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "HTX Mật ong Ba Vì", "via": "cookie"})),
        refusal::Unauthorized,
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
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
    let name = sessions::name_of(state.store(), &claims).await?;
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

fn refusal(code: ErrorCode, message: &str, config: &Config) -> Response {
    let mut resp = HttpError::new(code, message).into_response();
    resp.headers_mut().insert(SET_COOKIE, clear_cookie(config));
    resp
}

/// The session middleware; see the module documentation.
pub async fn layer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let now = state.now();
    if let Some(token) = sent_token(&req) {
        // A session token copied out of a cookie is held to the same revocation as the cookie.
        if let Ok(claims) = state.key().verify(&token, now.div_euclid(1000))
            && let Some(sid) = &claims.sid
        {
            match sessions::live_session(state.store(), sid, &claims, now).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return unauthorized("signed_out", "the session was signed out")
                        .into_response();
                }
                Err(e) => return e.into_response(),
            }
        }
        return next.run(req).await;
    }
    let Some(token) = cookie_token(req.headers()) else {
        return next.run(req).await;
    };
    let claims = match state.key().verify(&token, now.div_euclid(1000)) {
        Ok(c) if c.sid.is_some() => c,
        // An expired or foreign cookie: carry on signed out, and drop the cookie.
        _ => {
            let mut resp = next.run(req).await;
            resp.headers_mut()
                .append(SET_COOKIE, clear_cookie(state.config()));
            return resp;
        }
    };
    let sid = claims.sid.clone().unwrap_or_default();
    let session = match sessions::live_session(state.store(), &sid, &claims, now).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let mut resp = next.run(req).await;
            resp.headers_mut()
                .append(SET_COOKIE, clear_cookie(state.config()));
            return resp;
        }
        Err(e) => return e.into_response(),
    };
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let upgrade = req.headers().contains_key(axum::http::header::UPGRADE);
    if (changes || upgrade) && !same_origin(state.config(), req.headers()) {
        return refusal(
            ErrorCode::CsrfRejected,
            "this request came from another site; open the console from this server",
            state.config(),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    req.extensions_mut().insert(CookieSession(session.clone()));
    let signing_out = req.uri().path() == "/api/auth/signout";
    let mut resp = next.run(req).await;
    let half_life = (state.config().sessions.token_ttl_ms / 2000) as i64;
    if !signing_out
        && now / 1000 >= claims.iat.saturating_add(half_life)
        && let Some(fresh) = session_token(state.key(), &state.config().sessions, &session, now)
    {
        let max_age = (session
            .expires_at
            .min(now + state.config().sessions.token_ttl_ms as i64)
            - now)
            / 1000;
        resp.headers_mut()
            .append(SET_COOKIE, cookie(state.config(), &fresh, max_age));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
