//! Tokens the command line mints (`token`, the demo's participants), signed with the configured
//! secret.

use nightmarket_server::auth::{Role, TokenKey};
use nightmarket_server::config::Config;

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Mints a token with the configured secret.
pub fn mint(config: &Config, role: Role, subject: &str, ttl_secs: i64) -> String {
    TokenKey::new(config.auth_secret.expose()).mint(role, subject, now_secs(), ttl_secs)
}
