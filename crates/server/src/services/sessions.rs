//! Sign-in's rules: one-time invite links (only their hash is stored), sessions opened by
//! spending one or by joining as a guest, the short-lived tokens that name a session, and the
//! allowance of guest sign-ins per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nightmarket_auth::{Claims, Role, TokenKey};
use nightmarket_domain::{BuyerId, Millis, SellerId};
use nightmarket_store::{InviteRefusal, InviteRow, SessionRow, Store};
use nightmarket_wire::ErrorCode;
use sha2::{Digest, Sha256};

use crate::config::Sessions;
use crate::services::{ServiceError, ServiceResult};

/// Longest display name a guest may choose, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 40;

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
) -> ServiceResult<(String, InviteRow)> {
    let name = match role {
        "seller" => {
            let id = SellerId::parse(subject)
                .map_err(|e| ServiceError::bad_request(format!("subject: {e}")))?;
            store
                .seller(&id)
                .await?
                .ok_or_else(|| {
                    ServiceError::bad_request(format!("subject: seller {id} does not exist"))
                })?
                .name
        }
        "operator" => {
            // Same alphabet as every id: the name ends up in tokens and actor columns.
            SellerId::parse(subject)
                .map_err(|e| ServiceError::bad_request(format!("subject: {e}")))?;
            subject.to_owned()
        }
        other => {
            return Err(ServiceError::bad_request(format!(
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

/// Spends a one-time sign-in link and opens a session of at most `max_life_ms`.
pub async fn redeem(
    store: &Store,
    limits: &Sessions,
    code: &str,
    now: Millis,
) -> ServiceResult<SessionRow> {
    let code = code.trim();
    // Our codes are 43 characters; anything far off is not one, and is not worth a query.
    if code.is_empty() || code.len() > 128 {
        return Err(ServiceError::new(
            ErrorCode::InviteUnknown,
            "this sign-in link is not valid",
        ));
    }
    let sid = uuid::Uuid::new_v4().to_string();
    let end = now.saturating_add(limits.max_life_ms as i64);
    match store
        .redeem_invite(&hash_code(code), &sid, now, end)
        .await?
    {
        Ok(session) => Ok(session),
        Err(InviteRefusal::Unknown) => Err(ServiceError::new(
            ErrorCode::InviteUnknown,
            "this sign-in link is not valid",
        )),
        Err(InviteRefusal::Used) => Err(ServiceError::new(
            ErrorCode::InviteUsed,
            "this sign-in link was already used; ask the market office for a new one",
        )),
        Err(InviteRefusal::Expired) => Err(ServiceError::new(
            ErrorCode::InviteExpired,
            "this sign-in link has expired; ask the market office for a new one",
        )),
    }
}

/// Opens a viewer session without an account, under a buyer id the server chooses.
pub async fn guest(
    store: &Store,
    limits: &Sessions,
    display_name: &str,
    now: Millis,
) -> ServiceResult<SessionRow> {
    let name = self::display_name(display_name)?;
    let subject = format!("guest-{}", uuid::Uuid::new_v4().simple());
    // The buyer id comes from the server, never the client; check it fits the id rules.
    BuyerId::parse(subject.clone())
        .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("guest id: {e}")))?;
    let session = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        role: Role::Viewer.as_str().into(),
        subject,
        name,
        created_at: now,
        expires_at: now.saturating_add(limits.max_life_ms as i64),
        revoked_at: None,
    };
    store.create_session(&session).await?;
    Ok(session)
}

/// Signs the cookie token of `session`: `token_ttl_ms` from now, never past the session's end.
pub fn session_token(
    key: &TokenKey,
    limits: &Sessions,
    s: &SessionRow,
    now: Millis,
) -> Option<String> {
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

/// A guest's display name: trimmed, 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, no control
/// characters (they would corrupt a feed line or a log).
pub fn display_name(raw: &str) -> ServiceResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ServiceError::bad_request("display_name: must not be empty"));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ServiceError::bad_request(format!(
            "display_name: at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(
            "display_name: control characters are not allowed",
        ));
    }
    Ok(name.to_owned())
}

/// Whether `s` may still be used at `now` by a token claiming `claims`.
pub fn usable(s: &SessionRow, claims: &Claims, now: Millis) -> bool {
    s.revoked_at.is_none()
        && s.expires_at > now
        && s.subject == claims.sub
        && s.role == claims.role.as_str()
}

/// The session `sid` when a token claiming `claims` may still use it at `now`; `None` when it
/// is unknown, signed out, expired or another caller's.
pub async fn live_session(
    store: &Store,
    sid: &str,
    claims: &Claims,
    now: Millis,
) -> ServiceResult<Option<SessionRow>> {
    Ok(store.session(sid).await?.filter(|s| usable(s, claims, now)))
}

/// Signs a session out; its tokens and cookie are refused from then on.
pub async fn sign_out(store: &Store, sid: &str, now: Millis) -> ServiceResult<()> {
    store.revoke_session(sid, now).await?;
    Ok(())
}

/// The name a bearer token's caller goes by: a seller's name in the catalog, else its subject.
pub async fn name_of(store: &Store, claims: &Claims) -> ServiceResult<String> {
    let seller = match claims.role {
        Role::Seller => SellerId::parse(claims.sub.clone()).ok(),
        Role::Operator | Role::Viewer => None,
    };
    let name = match seller {
        Some(id) => store.seller(&id).await?.map(|s| s.name),
        None => None,
    };
    Ok(name.unwrap_or_else(|| claims.sub.clone()))
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
}
