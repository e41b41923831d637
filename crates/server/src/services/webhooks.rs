//! Webhooks' rules: which targets may be registered and attempted, which events exist, and
//! the events a show's transitions send. Delivery itself is [`crate::jobs::webhooks`].

use std::net::IpAddr;

use nightmarket_domain::Millis;
use nightmarket_store::{DeliveryRow, Keyset, Paged, Store, WebhookEvent, WebhookRow};
use nightmarket_wire::http::Show;
use reqwest::Url;

use crate::services::{ServiceError, ServiceResult, new_id};

/// Longest stream or webhook URL accepted, in bytes.
const MAX_URL_BYTES: usize = 500;
/// Webhook event names a webhook may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 4] =
    ["show.scheduled", "show.live", "show.closed", "show.settled"];

/// Whether `ip` is an address on the public internet: not private, loopback, link-local,
/// shared (carrier-grade NAT), unspecified, broadcast, multicast or reserved for documentation
/// or benchmarks. An IPv4 address mapped into IPv6 is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Why a target is refused before any connection: `None` when it may be attempted. Checks the
/// scheme and, for an address written in the URL, the address; names are checked as they
/// resolve (the deliverer's guarded resolver, [`crate::jobs::webhooks`]).
pub fn refuse_target(url: &str, allow_private: bool) -> Option<String> {
    let url = match Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("invalid URL {url:?}: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "unsupported URL scheme {}: expected http:// or https://",
            url.scheme()
        ));
    }
    if allow_private {
        return None;
    }
    let private = match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => return Some("the URL names no host".into()),
    };
    private.then(|| {
        "private, loopback and link-local targets are refused (webhooks.allow_private_targets)"
            .to_owned()
    })
}

/// A URL given in a request: trimmed, bounded, with one of `schemes` and a host.
pub fn check_url(name: &str, url: &str, schemes: &[&str]) -> ServiceResult<String> {
    let url = url.trim();
    if url.len() > MAX_URL_BYTES {
        return Err(ServiceError::bad_request(format!(
            "{name}: at most {MAX_URL_BYTES} bytes"
        )));
    }
    let ok = schemes.iter().any(|s| {
        url.strip_prefix(s).is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace)
        })
    });
    if !ok {
        return Err(ServiceError::bad_request(format!(
            "{name}: expected a URL starting with {}",
            schemes.join(" or ")
        )));
    }
    Ok(url.to_owned())
}

/// A webhook's target and events, checked: an `http(s)://` URL this node may deliver to, and
/// known event names (or `*`).
pub fn check_registration(
    url: &str,
    events: &[String],
    allow_private: bool,
) -> ServiceResult<String> {
    let url = check_url("url", url, &["http://", "https://"])?;
    if let Some(reason) = refuse_target(&url, allow_private) {
        return Err(ServiceError::bad_request(format!("url: {reason}")));
    }
    if events.is_empty() {
        return Err(ServiceError::bad_request(
            "events: at least one event, or \"*\"",
        ));
    }
    for e in events {
        if e != "*" && !WEBHOOK_EVENTS.contains(&e.as_str()) {
            return Err(ServiceError::bad_request(format!(
                "events: unknown event {e:?}; expected {} or \"*\"",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
    }
    Ok(url)
}

/// A new webhook's signing secret: 244 random bits.
pub fn new_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The webhook event of a show's transition (`show.scheduled`, `show.live`, `show.closed`),
/// carrying the show as the API shows it.
pub fn show_event(name: &str, show: &Show, at: i64) -> WebhookEvent {
    let payload = serde_json::json!({
        "id": format!("{name}:{}", show.id),
        "type": name,
        "at": at,
        "show": show,
    });
    WebhookEvent {
        id: format!("{name}:{}", show.id),
        name: name.to_owned(),
        payload: payload.to_string(),
        at,
    }
}

/// Registers a webhook: its target and events checked ([`check_registration`]), a new signing
/// secret, active from now.
pub async fn register(
    store: &Store,
    url: &str,
    events: Vec<String>,
    allow_private: bool,
    created_by: String,
    now: Millis,
) -> ServiceResult<WebhookRow> {
    let url = check_registration(url, &events, allow_private)?;
    let row = WebhookRow {
        id: new_id(),
        url,
        secret: new_secret(),
        events,
        active: true,
        created_by,
        created_at: now,
    };
    store.create_webhook(&row).await?;
    Ok(row)
}

/// A page of every webhook.
pub async fn webhooks(store: &Store, page: &Keyset) -> ServiceResult<Paged<WebhookRow>> {
    Ok(store.webhooks(page).await?)
}

/// Turns a webhook off; its log stays. Not found when there is none.
pub async fn deactivate(store: &Store, id: &str) -> ServiceResult<()> {
    if !store.set_webhook_active(id, false).await? {
        return Err(ServiceError::not_found(format!("webhook {id}")));
    }
    Ok(())
}

/// A page of a webhook's deliveries; not found when there is no such webhook.
pub async fn deliveries(
    store: &Store,
    id: &str,
    page: &Keyset,
) -> ServiceResult<Paged<DeliveryRow>> {
    if store.webhook(id).await?.is_none() {
        return Err(ServiceError::not_found(format!("webhook {id}")));
    }
    Ok(store.webhook_deliveries(id, page).await?)
}

/// Sends one delivery of a webhook again; not found when the webhook has no such delivery.
pub async fn redeliver(
    store: &Store,
    webhook: &str,
    delivery: &str,
    now: Millis,
) -> ServiceResult<()> {
    if !store.redeliver(webhook, delivery, now).await? {
        return Err(ServiceError::not_found(format!(
            "delivery {delivery} of webhook {webhook}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_targets_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert!(!is_public(ip), "{ip}");
        }
        for ip in ["1.1.1.1", "203.162.4.190", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert!(is_public(ip), "{ip}");
        }
        for url in [
            "http://127.0.0.1:9000/hooks",
            "http://[::1]/h",
            "https://169.254.169.254/latest/meta-data",
            "http://localhost:8080/x",
            "http://app.localhost/x",
            "http://10.0.0.7/x",
        ] {
            let why = refuse_target(url, false).expect("refused");
            assert!(why.contains("allow_private_targets"), "{url}: {why}");
            assert_eq!(refuse_target(url, true), None, "{url} when allowed");
        }
        assert_eq!(refuse_target("https://hooks.example.vn/nm", false), None);
        assert!(refuse_target("ftp://hooks.example.vn/", true).is_some());
        assert!(refuse_target("not a url", true).is_some());
    }
}
