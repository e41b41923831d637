//! The HTTP API's JSON bodies: every request type the server reads, decoded as axum's JSON
//! extractor does (serde_path_to_error over serde_json), its refusal turned into the
//! `field: rule` message the server answers, and the fields of a decoded body put through the
//! domain parsers the handlers use. Checks: nothing panics; a refusal names a field or `body`;
//! an accepted text is trimmed, bounded and free of control characters, and parsing it again
//! changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightmarket_domain::ocop::{MAX_TEXT_CHARS, paragraph, text};
use nightmarket_domain::{BuyerId, Dong, ProductGroup, ProductId, SellerId, Stars};
use nightmarket_wire::http::{
    CreateInvite, CreateProduct, CreateSeller, CreateShow, GuestSignIn, RedeemInvite,
    body_field_error,
};
use nightmarket_wire::market::{
    Commit, CreateException, CreateLineupSet, CreateMarket, Decide, ScheduleShow,
};
use nightmarket_wire::orders::{PayCheckout, SetOrderStatus};
use serde::de::DeserializeOwned;

/// Decodes `data` as axum's `Json<T>` does; on a data error, the server's message for it.
fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(data);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        // Trailing bytes after the value: axum refuses those as a syntax error.
        Ok(v) => de.end().ok().map(|()| v),
        Err(e) => {
            let axum_text =
                format!("Failed to deserialize the JSON body into the target type: {e}");
            let message = body_field_error(&axum_text);
            assert!(!message.is_empty());
            assert!(message.contains(": "), "{message}");
            None
        }
    }
}

/// A free-text field as the handlers parse it.
fn check_text(s: &str) {
    if let Ok(t) = text("field", s) {
        assert_eq!(t, t.trim());
        assert!(!t.is_empty() && t.chars().count() <= MAX_TEXT_CHARS);
        assert!(!t.chars().any(char::is_control), "{t:?}");
        assert_eq!(text("field", &t).as_deref(), Ok(t.as_str()));
    }
    if let Ok(p) = paragraph("field", s) {
        assert!(!p.chars().any(|c| c.is_control() && c != '\n'), "{p:?}");
        assert_eq!(paragraph("field", &p).as_deref(), Ok(p.as_str()));
    }
}

fuzz_target!(|data: &[u8]| {
    // Also the message of arbitrary text, as axum might word a refusal.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = body_field_error(s);
    }
    if let Some(b) = decode::<CreateSeller>(data) {
        check_text(&b.name);
        b.district.as_deref().map(check_text);
    }
    if let Some(b) = decode::<CreateProduct>(data) {
        for s in [
            &b.name,
            &b.district,
            &b.commune,
            &b.producer,
            &b.origin_document,
            &b.quality_label,
        ] {
            check_text(s);
        }
        let _ = SellerId::parse(b.seller_id);
        let _ = ProductGroup::parse(&b.group);
        let _ = Stars::parse(b.stars);
        let _ = Dong::parse(b.list_price);
        for d in &b.documents {
            let _ = nightmarket_domain::DocumentKind::parse(&d.kind);
            let from = nightmarket_domain::market::parse_date("valid_from", &d.valid_from);
            let until = nightmarket_domain::market::parse_date("valid_until", &d.valid_until);
            if let (Ok(from), Ok(until), Ok(kind)) = (
                from,
                until,
                nightmarket_domain::DocumentKind::parse(&d.kind),
            ) {
                let _ = nightmarket_domain::Document::new(kind, &d.reference, from, until);
            }
        }
    }
    if let Some(b) = decode::<CreateShow>(data) {
        check_text(&b.title);
        for item in b.lineup {
            let _ = ProductId::parse(item.product_id);
        }
    }
    if let Some(b) = decode::<CreateMarket>(data) {
        check_text(&b.name);
        let _ = nightmarket_domain::market::parse_time("start_time", &b.start_time);
        let _ = nightmarket_domain::market::parse_date("first_date", &b.first_date);
    }
    if let Some(b) = decode::<CreateException>(data) {
        let _ = nightmarket_domain::market::parse_date("night_date", &b.night_date);
        check_text(&b.reason);
    }
    if let Some(b) = decode::<Commit>(data) {
        check_text(&b.statement);
    }
    let _ = decode::<Decide>(data);
    let _ = decode::<CreateLineupSet>(data);
    let _ = decode::<ScheduleShow>(data);
    let _ = decode::<SetOrderStatus>(data);
    let _ = decode::<PayCheckout>(data);
    let _ = decode::<RedeemInvite>(data);
    if let Some(b) = decode::<GuestSignIn>(data) {
        check_text(&b.display_name);
    }
    if let Some(b) = decode::<CreateInvite>(data) {
        let _ = BuyerId::parse(b.subject);
    }
});
