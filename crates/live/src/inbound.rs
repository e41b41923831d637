//! Inbound: the client's frames, read from the half of the socket the session keeps (the engine
//! holds the write half).
//!
//! [`Decoder::decode`] is a pure function over a byte buffer, so it is property-tested against
//! tungstenite's encoder and fuzzed; [`Reader`] wraps it around the socket's read half and
//! answers pings through the viewer's private path, in order with everything else it is sent.
//!
//! Why not tungstenite's own reader: its `WebSocketContext` reads from a `Read + Write` stream,
//! writes pongs and close replies to that stream itself (here they must go through the
//! engine's queue, or they would overtake queued frames), and allocates its read buffer up
//! front (128 KiB by default) for as long as the connection lives. Its frame *header* parser is
//! public and is what [`Decoder`] uses; masking, fragments and the control-frame rules are the
//! few lines below.

use std::io::{self, Cursor};

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::tcp::OwnedReadHalf;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use crate::delivery::viewer::Viewer;
use crate::frame::{Frame, MAX_CONTROL_PAYLOAD};

/// Bytes the reader asks the kernel for at a time. The buffer exists only while a message is
/// arriving: an idle connection holds none.
pub const READ_CHUNK: usize = 4096;

/// A complete client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
    /// Already answered with a pong by [`Reader`].
    Ping(Bytes),
    Pong(Bytes),
    /// The client closes: its code and reason, if it gave one.
    Close(Option<ClientClose>),
}

/// The code and reason of a client's close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientClose {
    pub code: u16,
    pub reason: String,
}

/// Why the stream of client frames cannot go on. Each maps to the close code the connection
/// ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not the WebSocket protocol: 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message longer than the maximum: 1009. Noticed from the frame header, before the
    /// payload is buffered.
    #[error("a message of {size} bytes; at most {max}")]
    TooBig { size: u64, max: usize },
    /// A text message or close reason that is not UTF-8: 1007.
    #[error("text that is not UTF-8")]
    NotUtf8,
}

impl DecodeError {
    /// The close code (RFC 6455 §7.4.1) the connection ends with.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => 1002,
            Self::TooBig { .. } => 1009,
            Self::NotUtf8 => 1007,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Protocol(_) => "protocol_error",
            Self::TooBig { .. } => "message_too_big",
            Self::NotUtf8 => "invalid_utf8",
        }
    }

    /// The close frame the connection ends with.
    pub fn close_frame(&self) -> Frame {
        Frame::close(self.close_code(), self.reason())
    }
}

/// The kind of a data message being assembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Turns client bytes into messages: unmasking, fragments, control frames and the size bound.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A fragmented message so far (control frames may arrive between its fragments).
    partial: Option<(Kind, Vec<u8>)>,
}

impl Decoder {
    /// A decoder refusing messages longer than `max_message` bytes (all fragments together).
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    /// Takes the next complete message off the front of `buf`. `Ok(None)`: more bytes are
    /// needed (what was consumed is remembered, the rest stays in `buf`). After an error the
    /// stream cannot go on.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        loop {
            let mut cur = Cursor::new(&buf[..]);
            let (header, len) = match FrameHeader::parse(&mut cur) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(_) => return Err(DecodeError::Protocol("unknown opcode")),
            };
            let head = cur.position() as usize;
            self.check(&header, len)?;
            // `check` bounded `len` by `max_message` or 125, both usize.
            let len = len as usize;
            if buf.len() - head < len {
                return Ok(None);
            }
            buf.advance(head);
            let mut payload = buf.split_to(len);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            let fin = header.is_final;
            match header.opcode {
                OpCode::Control(Control::Ping) => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Control(Control::Pong) => return Ok(Some(Message::Pong(payload.freeze()))),
                OpCode::Control(_) => return close_message(&payload).map(Some),
                OpCode::Data(Data::Continue) => {
                    let Some((kind, mut data)) = self.partial.take() else {
                        return Err(DecodeError::Protocol("continuation without a message"));
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        return finish(kind, data).map(Some);
                    }
                    self.partial = Some((kind, data));
                }
                OpCode::Data(data) => {
                    let kind = if data == Data::Text {
                        Kind::Text
                    } else {
                        Kind::Binary
                    };
                    if fin {
                        return finish(kind, payload.to_vec()).map(Some);
                    }
                    self.partial = Some((kind, payload.to_vec()));
                }
            }
        }
    }

    /// Every rule that can be judged from the header alone, so that a bad or oversized frame is
    /// refused before its payload is waited for.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), DecodeError> {
        use DecodeError::Protocol;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Protocol("reserved bits set"));
        }
        if header.mask.is_none() {
            return Err(Protocol("client frames must be masked"));
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Err(Protocol("unknown opcode"))
            }
            OpCode::Control(_) if !header.is_final => Err(Protocol("fragmented control frame")),
            OpCode::Control(_) if len > MAX_CONTROL_PAYLOAD as u64 => {
                Err(Protocol("control frame over 125 bytes"))
            }
            OpCode::Control(_) => Ok(()),
            OpCode::Data(Data::Continue) if self.partial.is_none() => {
                Err(Protocol("continuation without a message"))
            }
            OpCode::Data(Data::Text | Data::Binary) if self.partial.is_some() => {
                Err(Protocol("a new message inside a fragmented one"))
            }
            OpCode::Data(_) => {
                let so_far = self.partial.as_ref().map_or(0, |(_, d)| d.len()) as u64;
                let size = so_far.saturating_add(len);
                if size > self.max_message as u64 {
                    return Err(DecodeError::TooBig {
                        size,
                        max: self.max_message,
                    });
                }
                Ok(())
            }
        }
    }
}

fn finish(kind: Kind, data: Vec<u8>) -> Result<Message, DecodeError> {
    match kind {
        Kind::Binary => Ok(Message::Binary(Bytes::from(data))),
        Kind::Text => String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| DecodeError::NotUtf8),
    }
}

fn close_message(payload: &[u8]) -> Result<Message, DecodeError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(DecodeError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(DecodeError::Protocol("close code not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::NotUtf8)?;
            Ok(Message::Close(Some(ClientClose {
                code,
                reason: reason.to_owned(),
            })))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Why [`Reader::next`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client broke the protocol; close with [`DecodeError::close_frame`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The socket failed (reset by the peer).
    #[error("reading the socket: {0}")]
    Io(#[from] io::Error),
}

/// Reads client messages from a socket's read half.
#[derive(Debug)]
pub struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    /// A reader over `half`. `already_read` holds bytes read past the HTTP upgrade request
    /// (hyper's `Parts::read_buf`), which come first.
    pub fn new(half: OwnedReadHalf, already_read: &[u8], max_message: usize) -> Self {
        Self {
            half,
            buf: BytesMut::from(already_read),
            decoder: Decoder::new(max_message),
        }
    }

    /// The next message. A ping has been answered through `viewer` by the time it is returned.
    /// `Ok(None)`: the client ended the TCP stream without a close frame.
    pub async fn next(&mut self, viewer: &Viewer) -> Result<Option<Message>, ReadError> {
        loop {
            if !self.buf.is_empty()
                && let Some(msg) = self.decoder.decode(&mut self.buf)?
            {
                // Let go at once, not at the next call: the session may take a while over
                // the message, and most connections then wait long for the next one.
                self.release();
                if let Message::Ping(payload) = &msg {
                    // A viewer already closing needs no pong.
                    let _ = viewer.send(Frame::pong(payload));
                }
                return Ok(Some(msg));
            }
            self.release();
            // Waits through the socket's one read-waker slot rather than `readable()`'s list
            // of waiters: hyper's connection task left its waker in that slot when it read the
            // upgrade request, and only a read event or a newer waker replaces it. Until then
            // it keeps the finished connection task (about 1.3 KiB) allocated, for as long as
            // an idle viewer sends nothing.
            std::future::poll_fn(|cx| self.half.as_ref().poll_read_ready(cx)).await?;
            self.buf.reserve(READ_CHUNK);
            match self.half.try_read_buf(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Frees the read buffer once everything in it is decoded: an idle connection keeps no
    /// buffer. (An emptied `BytesMut` still holds its allocation, shared with the frames split
    /// off it.)
    fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Bytes the read buffer holds allocated now: 0 between messages. For tests and the
    /// documentation's idle figures.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tungstenite::protocol::frame::Frame as TFrame;

    /// A client frame as tungstenite's client encodes it: masked.
    fn masked(mut frame: TFrame, mask: [u8; 4]) -> Vec<u8> {
        frame.header_mut().mask = Some(mask);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    fn data(op: Data, payload: &[u8], fin: bool) -> TFrame {
        TFrame::message(payload.to_vec(), OpCode::Data(op), fin)
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn unmasked_frames_are_refused() {
        let mut bytes = Vec::new();
        data(Data::Text, b"hi", true).format(&mut bytes).unwrap();
        let e = decode_all(&mut Decoder::new(64), &bytes).unwrap_err();
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let bytes = masked(data(Data::Binary, &[0; 1000], true), [1, 2, 3, 4]);
        // Only the header has arrived.
        let e = decode_all(&mut Decoder::new(999), &bytes[..8]).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooBig {
                size: 1000,
                max: 999
            }
        );
        assert_eq!(e.close_code(), 1009);
    }

    #[test]
    fn fragments_add_up_to_the_limit() {
        let mut bytes = masked(data(Data::Text, b"abc", false), [9, 8, 7, 6]);
        bytes.extend(masked(data(Data::Continue, b"def", false), [1, 1, 1, 1]));
        bytes.extend(masked(data(Data::Continue, b"g", true), [0, 0, 0, 0]));
        assert_eq!(
            decode_all(&mut Decoder::new(7), &bytes).unwrap(),
            vec![Message::Text("abcdefg".into())]
        );
        assert_eq!(
            decode_all(&mut Decoder::new(6), &bytes)
                .unwrap_err()
                .close_code(),
            1009
        );
    }

    #[test]
    fn control_frame_rules() {
        let long_ping = masked(TFrame::ping(vec![0u8; 126]), [1, 2, 3, 4]);
        assert_eq!(
            decode_all(&mut Decoder::new(1000), &long_ping)
                .unwrap_err()
                .close_code(),
            1002
        );
        let mut fragmented = TFrame::ping(vec![1u8]);
        fragmented.header_mut().is_final = false;
        assert_eq!(
            decode_all(&mut Decoder::new(1000), &masked(fragmented, [1, 2, 3, 4]))
                .unwrap_err()
                .close_code(),
            1002
        );
        // 1005 may never be sent on the wire.
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xED];
        assert_eq!(
            decode_all(&mut Decoder::new(1000), &close)
                .unwrap_err()
                .close_code(),
            1002
        );
        let bad_text = masked(data(Data::Text, &[0xff, 0xfe], true), [1, 2, 3, 4]);
        assert_eq!(
            decode_all(&mut Decoder::new(1000), &bad_text)
                .unwrap_err()
                .close_code(),
            1007
        );
    }

    /// What a client may send: data messages (maybe fragmented, with pings between the
    /// fragments), pings, pongs, and a close at the end.
    #[derive(Debug, Clone)]
    enum Sent {
        Text(String, Vec<usize>),
        Binary(Vec<u8>, Vec<usize>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
    }

    fn sent() -> impl Strategy<Value = Sent> {
        prop_oneof![
            (".{0,300}", prop::collection::vec(0usize..400, 0..4))
                .prop_map(|(s, cuts)| Sent::Text(s, cuts)),
            (
                prop::collection::vec(any::<u8>(), 0..70_000),
                prop::collection::vec(0usize..70_000, 0..3)
            )
                .prop_map(|(b, cuts)| Sent::Binary(b, cuts)),
            prop::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Ping),
            prop::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Pong),
        ]
    }

    /// Splits `payload` at `cuts` into fragments, a ping between each two; also says how many
    /// pings that put in.
    fn fragments(op: Data, payload: &[u8], cuts: &[usize], mask: [u8; 4]) -> (Vec<u8>, usize) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut out = Vec::new();
        let mut start = 0;
        let mut first = true;
        let mut pings = 0;
        for cut in at.into_iter().chain([payload.len()]) {
            let last = cut == payload.len();
            let op = if first { op } else { Data::Continue };
            out.extend(masked(data(op, &payload[start..cut], last), mask));
            if !last {
                out.extend(masked(TFrame::ping(b"between".to_vec()), mask));
                pings += 1;
            }
            start = cut;
            first = false;
            if last {
                break;
            }
        }
        (out, pings)
    }

    proptest! {
        // Payloads up to 70,000 bytes (every length form) make each case slow in a debug build.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decodes_what_tungstenite_encodes(
            msgs in prop::collection::vec(sent(), 1..8),
            mask in any::<[u8; 4]>(),
            chunk in 1usize..5000,
            close_code in prop::sample::select(vec![1000u16, 1001, 1008, 3000, 4999]),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for m in &msgs {
                match m {
                    Sent::Text(s, cuts) => {
                        let (n, pings) = fragments(Data::Text, s.as_bytes(), cuts, mask);
                        wire.extend(n);
                        expected.extend(std::iter::repeat_n(Message::Ping(Bytes::from_static(b"between")), pings));
                        expected.push(Message::Text(s.clone()));
                    }
                    Sent::Binary(b, cuts) => {
                        let (n, pings) = fragments(Data::Binary, b, cuts, mask);
                        wire.extend(n);
                        expected.extend(std::iter::repeat_n(Message::Ping(Bytes::from_static(b"between")), pings));
                        expected.push(Message::Binary(Bytes::from(b.clone())));
                    }
                    Sent::Ping(p) => {
                        wire.extend(masked(TFrame::ping(p.clone()), mask));
                        expected.push(Message::Ping(Bytes::from(p.clone())));
                    }
                    Sent::Pong(p) => {
                        wire.extend(masked(TFrame::pong(p.clone()), mask));
                        expected.push(Message::Pong(Bytes::from(p.clone())));
                    }
                }
            }
            let close = tungstenite::protocol::CloseFrame { code: close_code.into(), reason: "bye".into() };
            wire.extend(masked(TFrame::close(Some(close)), mask));
            expected.push(Message::Close(Some(ClientClose { code: close_code, reason: "bye".into() })));

            // Fed in chunks, as the kernel would hand them over.
            let mut d = Decoder::new(100_000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(m) = d.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, expected);
        }

        /// Whatever arrives, decoding ends in messages, a wait for more bytes, or an error with
        /// a close code; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = Decoder::new(1000);
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!([1002, 1007, 1009].contains(&e.close_code()));
                        break;
                    }
                }
            }
        }
    }
}
