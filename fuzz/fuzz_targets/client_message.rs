//! The WebSocket client-message decoder: any text frame either decodes into a `ClientMessage`
//! or is classified into a refusal (`bad_request` or `unknown_type`) with a bounded `req`; a
//! decoded message survives a round trip through its own encoding; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightmarket_wire::ErrorCode;
use nightmarket_wire::client::{ClientMessage, classify_parse_error};

/// `req` echoes are cut to this many characters by the classifier.
const MAX_REQ_CHARS: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The server reads only text frames, which tungstenite has already checked are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(message) => {
            let encoded = serde_json::to_string(&message).expect("a decoded message encodes");
            let again: ClientMessage =
                serde_json::from_str(&encoded).expect("an encoded message decodes");
            assert_eq!(again, message);
            let _ = message.req();
        }
        Err(e) => {
            let (code, message, req) = classify_parse_error(text, &e);
            assert!(
                matches!(code, ErrorCode::BadRequest | ErrorCode::UnknownType),
                "{code:?}"
            );
            assert!(!message.is_empty());
            assert!(req.is_none_or(|r| r.chars().count() <= MAX_REQ_CHARS));
        }
    }
});
