//! Signed tokens: JWT (RFC 7519) with HS256 only. A token carries the role and the subject; a
//! viewer's buyer id and a seller's seller id are always the token's subject, never a value
//! from a request body.
//!
//! Only the one algorithm is accepted and the header is checked before the signature, so
//! `alg: none` and algorithm-confusion tokens are refused outright. Signatures are compared in
//! constant time by the `hmac` crate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use nightmarket_domain::BuyerId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The development secret: the server accepts it only with `dev = true` and warns when it is
/// used; the command line and the load generator default to it.
pub const DEV_SECRET: &str = "nightmarket-dev-secret-do-not-use-in-production";

/// Longest token accepted, in bytes; anything longer is not one of ours.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// How far ahead of this server's clock a token's `iat` may be, in seconds. Clocks of the
/// machines that mint tokens drift a little; a token issued further in the future was minted
/// with a wrong clock or made up, and would outlive its intended life.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Seller,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Seller => "seller",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Self::Operator),
            "seller" => Some(Self::Seller),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// The verified content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    pub iat: i64,
    /// The browser session this token belongs to (session cookies only). Such a token is
    /// honoured only while its session row is neither revoked nor past its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    /// The subject as a buyer id (viewers) — subjects use the id alphabet.
    pub fn buyer(&self) -> Option<BuyerId> {
        BuyerId::parse(self.sub.clone()).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error(
        "the token is issued {ahead_secs} s in the future; at most {MAX_CLOCK_SKEW_SECS} s of clock skew is allowed"
    )]
    IssuedInFuture { ahead_secs: i64 },
}

impl AuthError {
    /// A stable word for what is wrong, for clients to match on (`error.details.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::IssuedInFuture { .. } => "issued_in_future",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    /// HMAC keyed with the secret once: keying hashes the padded key twice, which every join
    /// would otherwise repeat; each signature starts from a copy of this state.
    keyed: HmacSha256,
}

impl TokenKey {
    pub fn new(secret: &str) -> Self {
        Self {
            // HMAC accepts keys of any length; this cannot fail.
            keyed: HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!()),
        }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// Mints a token for `sub` with `role`, valid for `ttl_secs` from `now_secs`.
    pub fn mint(&self, role: Role, sub: &str, now_secs: i64, ttl_secs: i64) -> String {
        self.sign(&Claims {
            sub: sub.to_owned(),
            role,
            exp: now_secs.saturating_add(ttl_secs),
            iat: now_secs,
            sid: None,
        })
    }

    /// Signs `claims` as they are (session tokens carry their `sid`).
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER_JSON),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verifies a token at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if header.alg != "HS256" || header.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(AuthError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if claims.exp <= now_secs {
            return Err(AuthError::Expired);
        }
        let ahead_secs = claims.iat.saturating_sub(now_secs);
        if ahead_secs > MAX_CLOCK_SKEW_SECS {
            return Err(AuthError::IssuedInFuture { ahead_secs });
        }
        if claims.sub.is_empty() || claims.sub.len() > nightmarket_domain::ids::MAX_ID_BYTES {
            return Err(AuthError::Malformed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = TokenKey::new("0123456789abcdef0123456789abcdef");
        let t = key.mint(Role::Seller, "htx-ba-vi", 1000, 60);
        let c = key.verify(&t, 1001).unwrap();
        assert_eq!((c.role, c.sub.as_str()), (Role::Seller, "htx-ba-vi"));
        assert_eq!(key.verify(&t, 1060), Err(AuthError::Expired));
        let other = TokenKey::new("another-secret-another-secret-xx");
        assert_eq!(other.verify(&t, 1001), Err(AuthError::BadSignature));
        assert_eq!(key.verify("a.b", 1001), Err(AuthError::Malformed));
        assert_eq!(key.verify("", 1001), Err(AuthError::Missing));
        // alg=none with the same payload is refused before any signature check.
        let payload = t.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(key.verify(&none, 1001), Err(AuthError::Malformed));
        // A payload changed after signing fails the signature.
        let forged_payload =
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x","role":"operator","exp":99999,"iat":0}"#);
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(key.verify(&forged, 1001), Err(AuthError::BadSignature));
    }

    #[test]
    fn tokens_from_the_future_are_refused_beyond_the_clock_skew() {
        let key = TokenKey::new("0123456789abcdef0123456789abcdef");
        let now = 1_000_000;
        let within = key.mint(Role::Viewer, "lan", now + MAX_CLOCK_SKEW_SECS, 3600);
        assert!(key.verify(&within, now).is_ok());
        let ahead = key.mint(Role::Viewer, "lan", now + MAX_CLOCK_SKEW_SECS + 1, 3600);
        let refused = key.verify(&ahead, now);
        assert_eq!(
            refused,
            Err(AuthError::IssuedInFuture {
                ahead_secs: MAX_CLOCK_SKEW_SECS + 1
            })
        );
        assert_eq!(
            refused.map(|_| ()).unwrap_err().reason(),
            "issued_in_future"
        );
        // The far future saturates instead of overflowing.
        let far = key.sign(&Claims {
            sub: "lan".into(),
            role: Role::Viewer,
            exp: i64::MAX,
            iat: i64::MAX,
            sid: None,
        });
        assert!(matches!(
            key.verify(&far, i64::MIN + 1),
            Err(AuthError::IssuedInFuture { .. })
        ));
    }
}
