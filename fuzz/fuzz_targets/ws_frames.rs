//! The live engine's client-frame decoder: any bytes, arriving in pieces of any size, decode into
//! messages or end with a close code of 1002, 1007 or 1009; a message never exceeds the size
//! limit; what stays buffered between pieces is at most one frame header and one frame's payload
//! (an oversized frame is refused from its header); nothing panics.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nightmarket_live::inbound::{Decoder, Message};

/// The size limit the target decodes under: small, so limits are reached often.
const MAX_MESSAGE: usize = 512;

/// Longest frame header (2 bytes, 8 of length, 4 of mask).
const MAX_HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    // The first byte says how the rest arrives: in pieces of 1 to 256 bytes.
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(usize::from(piece) + 1) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    let len = match &message {
                        Message::Text(t) => t.len(),
                        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
                        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
                    };
                    assert!(len <= MAX_MESSAGE, "a message of {len} bytes");
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009), "{e:?}");
                    return;
                }
            }
        }
        assert!(
            buf.len() < MAX_HEADER + MAX_MESSAGE,
            "{} bytes held for an incomplete frame",
            buf.len()
        );
    }
});
