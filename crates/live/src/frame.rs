//! Outbound frames: a complete server WebSocket frame (header and payload; a server never masks)
//! in one shared buffer.
//!
//! An event is encoded once, here, and the very same [`Bytes`] is written to every viewer's
//! socket: cloning a [`Frame`] is a reference-count increment, never a copy of the payload.

use bytes::Bytes;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Longest payload of a control frame (close, ping, pong), RFC 6455 §5.5.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest reason text of a close frame: the control payload less the two bytes of the code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// One complete server frame, ready for the socket.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

impl Frame {
    /// Bytes that are not a WebSocket frame but go on the socket the same way: the HTTP answer
    /// of the upgrade, owed before the first frame.
    pub(crate) fn raw(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// A text frame (`payload` is copied once, into the frame's own buffer).
    pub fn text(payload: &str) -> Self {
        encode(OpCode::Data(Data::Text), payload.as_bytes())
    }

    /// A binary frame.
    pub fn binary(payload: &[u8]) -> Self {
        encode(OpCode::Data(Data::Binary), payload)
    }

    /// A pong answering a ping with `payload` (cut to the 125 bytes a control frame may carry;
    /// the engine's reader never accepts a longer ping).
    pub fn pong(payload: &[u8]) -> Self {
        let end = payload.len().min(MAX_CONTROL_PAYLOAD);
        encode(OpCode::Control(Control::Pong), &payload[..end])
    }

    /// A close frame with `code` and `reason`; a reason past [`MAX_CLOSE_REASON`] bytes is cut at
    /// a character boundary, since a longer control frame is a protocol error.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        encode(OpCode::Control(Control::Close), &payload)
    }

    /// No bytes: what a conflated cell that never had a value stands for in a queue.
    pub(crate) fn empty() -> Self {
        Self(Bytes::new())
    }

    /// The frame's bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length on the wire.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame has no bytes at all (never true of an encoded frame).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Header and payload in one allocation. The header is tungstenite's own encoding, so the
/// length forms (7-bit, 16-bit, 64-bit) are the library's, not ours.
fn encode(opcode: OpCode, payload: &[u8]) -> Frame {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut buf = Vec::with_capacity(header.len(len) + payload.len());
    // Writing into a Vec cannot fail.
    let _ = header.format(len, &mut buf);
    buf.extend_from_slice(payload);
    Frame(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(frame: &Frame) -> (FrameHeader, Vec<u8>) {
        let mut cur = Cursor::new(frame.bytes().as_ref());
        let (header, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        let start = cur.position() as usize;
        assert_eq!(
            frame.len(),
            start + len as usize,
            "one frame, nothing after"
        );
        (header, frame.bytes()[start..].to_vec())
    }

    #[test]
    fn every_length_form_round_trips() {
        for n in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(n);
            let (header, payload) = parse(&Frame::text(&text));
            assert!(header.is_final);
            assert_eq!(header.mask, None, "servers do not mask");
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(payload, text.as_bytes());
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_character_boundary() {
        let reason = "ă".repeat(100); // 200 bytes
        let (header, payload) = parse(&Frame::close(4001, &reason));
        assert_eq!(header.opcode, OpCode::Control(Control::Close));
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4001);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
