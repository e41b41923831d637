//! Tokens the command line mints (`token`, the demo's participants), signed with the configured
//! secret.

use nightmarket_server::auth::{Role, TokenKey};
use nightmarket_server::clock::{Clock, SystemClock};
use nightmarket_server::config::Config;

/// Unix seconds now: the command line runs on the system clock, as `serve` does.
pub fn now_secs() -> i64 {
    SystemClock.now().div_euclid(1000)
}

/// Mints a token with the configured secret.
pub fn mint(config: &Config, role: Role, subject: &str, ttl_secs: i64) -> String {
    TokenKey::new(config.auth_secret.expose()).mint(role, subject, now_secs(), ttl_secs)
}
