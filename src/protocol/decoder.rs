//! The streaming frame decoder: bytes in, messages and control frames out (RFC 6455 §5).
//!
//! `Decoder` accepts input in arbitrary pieces, as reads deliver it, and reports each complete
//! data message and each control frame through a callback. It enforces every framing rule the
//! RFC puts on the receiving side and fails with the matching `ProtocolError`.
//!
//! Invariants:
//! - A frame that lies whole in the input is unmasked in place and reported as a view into the
//!   input: no copy. Only a message split across frames or reads is copied into the decoder's
//!   own buffer, and that buffer is released as soon as it is empty again, so an idle decoder
//!   owns no heap memory.
//! - Text is validated as it arrives and the first invalid byte fails the message at once.
//! - Message size is checked against the limit from frame headers, before any byte is stored.
//! - After a close frame the decoder reports nothing more.

use std::ops::ControlFlow;

use super::close::{parse_close_payload, CloseFrame};
use super::error::ProtocolError;
use super::frame::{decode_header, FrameHeader, OpCode, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::message::Message;
use super::utf8::Utf8Validator;

/// Which end of the connection the decoder serves; it decides which masking is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decodes client frames, which must be masked (§5.1).
    Server,
    /// Decodes server frames, which must not be masked (§5.1).
    Client,
}

/// What the decoder reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message.
    Message(Message<'a>),
    /// A ping; the receiver owes a pong with the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A valid close frame, with its code and reason if it carried one.
    Close(Option<CloseFrame<'a>>),
    /// A complete data message compressed with permessage-deflate (its first frame had RSV1;
    /// only with [`Decoder::accept_deflate`]).
    Deflated {
        /// A text message: its UTF-8 is checked once inflated.
        text: bool,
        /// Its frames' payloads joined, still compressed.
        payload: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Expecting a frame header; a partial header is spilled into the buffer.
    Header,
    /// Inside a frame's payload.
    Payload,
    /// A close frame was seen; further input is ignored.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Text,
    Binary,
}

/// Streaming decoder state for one connection.
#[derive(Debug)]
pub struct Decoder {
    /// `[..data_len]`: payload of the data message in progress; the rest: a spilled partial
    /// header or the partial payload of a control frame.
    buffer: Vec<u8>,
    /// At most [`MAX_MESSAGE_LIMIT`], as every message is: 32 bits keep the record small.
    data_len: u32,
    /// Payload bytes left in the current frame (a data frame fits in its message's limit, a
    /// control frame in 125 bytes).
    remaining: u32,
    mask: Option<[u8; 4]>,
    /// Payload bytes of the current frame already consumed, modulo 4 (the mask phase).
    mask_phase: u8,
    opcode: OpCode,
    fin: bool,
    stage: Stage,
    message: Kind,
    utf8: Utf8Validator,
    role: Role,
    /// permessage-deflate was negotiated: RSV1 may mark a message compressed.
    deflate: bool,
    /// The message in progress is compressed.
    compressed: bool,
}

/// The largest message any decoder takes, whatever its caller's `max_message` says (the lengths
/// it keeps per connection are 32-bit).
pub const MAX_MESSAGE_LIMIT: usize = u32::MAX as usize;

/// How much larger than the message limit a compressed message may be: deflate adds 5 bytes per
/// 64 KiB stored block to data that does not compress, and a few bytes of framing.
fn compressed_limit(max_message: usize) -> usize {
    max_message.saturating_add(max_message / 1024 + 64)
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Role::Server)
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(role: Role) -> Self {
        Self {
            buffer: Vec::new(),
            data_len: 0,
            remaining: 0,
            mask: None,
            mask_phase: 0,
            opcode: OpCode::Continuation,
            fin: false,
            stage: Stage::Header,
            message: Kind::None,
            utf8: Utf8Validator::new(),
            role,
            deflate: false,
            compressed: false,
        }
    }

    /// Lets RSV1 mark the first frame of a compressed message (permessage-deflate was
    /// negotiated): such messages are reported as [`Event::Deflated`].
    pub fn accept_deflate(&mut self) {
        self.deflate = true;
    }

    /// True when a message, frame or header is partly received.
    pub fn is_mid_message(&self) -> bool {
        self.stage == Stage::Payload || !self.buffer.is_empty() || self.message != Kind::None
    }

    /// Heap bytes held by this decoder (zero when idle).
    pub fn buffered_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Consumes `input` (unmasking it in place) and reports every event it completes.
    ///
    /// `max_message` caps the payload of a data message across all its fragments. Decoding stops
    /// early, without error, when `on_event` breaks. Returns how many bytes of `input` were
    /// consumed: all of them, unless `on_event` broke or a close frame ended the stream; the
    /// rest is untouched (still masked) and can be decoded later, in a later call.
    pub fn decode<F>(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        mut on_event: F,
    ) -> Result<usize, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        let mut pos = 0;
        while pos < input.len() || self.has_empty_payload_pending() {
            match self.stage {
                Stage::Closed => return Ok(pos),
                Stage::Header => {
                    let Some(used) = self.take_header(&input[pos..], max_message)? else {
                        // The partial header is kept: everything was consumed.
                        return Ok(input.len());
                    };
                    pos += used;
                    let whole =
                        Some(self.remaining as usize).filter(|&len| len <= input.len() - pos);
                    if let Some(len) = whole.filter(|_| self.can_take_in_place()) {
                        let payload = &mut input[pos..pos + len];
                        pos += len;
                        if self.take_in_place(payload, &mut on_event)?.is_break() {
                            return Ok(pos);
                        }
                    } else {
                        self.stage = Stage::Payload;
                    }
                }
                Stage::Payload => {
                    let available = input.len() - pos;
                    let take = (self.remaining as usize).min(available);
                    let chunk = &mut input[pos..pos + take];
                    pos += take;
                    self.take_payload_piece(chunk)?;
                    if self.remaining == 0 && self.finish_buffered_frame(&mut on_event)?.is_break()
                    {
                        return Ok(pos);
                    }
                }
            }
        }
        Ok(pos)
    }

    /// A zero-length frame whose header completed at the very end of the input.
    fn has_empty_payload_pending(&self) -> bool {
        self.stage == Stage::Payload && self.remaining == 0
    }

    /// Parses the next header, spilling a partial one; returns how many input bytes it used.
    fn take_header(
        &mut self,
        input: &[u8],
        max_message: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        let spilled = self.buffer.len() - self.data_len as usize;
        let (header, used) = if spilled == 0 {
            match decode_header(input)? {
                Some(found) => found,
                None => {
                    self.buffer.extend_from_slice(input);
                    return Ok(None);
                }
            }
        } else {
            let take = (MAX_HEADER_LEN - spilled).min(input.len());
            self.buffer.extend_from_slice(&input[..take]);
            match decode_header(&self.buffer[self.data_len as usize..])? {
                Some((header, len)) => {
                    self.buffer.truncate(self.data_len as usize);
                    self.release_buffer_if_empty();
                    (header, len - spilled)
                }
                None => return Ok(None),
            }
        };
        self.start_frame(header, max_message)?;
        Ok(Some(used))
    }

    fn start_frame(
        &mut self,
        header: FrameHeader,
        max_message: usize,
    ) -> Result<(), ProtocolError> {
        // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
        // "A client MUST close a connection if it detects a masked frame."
        if header.mask.is_some() != (self.role == Role::Server) {
            return Err(ProtocolError::BadMasking);
        }
        // RFC 7692 §6: RSV1 marks the first frame of a compressed data message; never a
        // continuation or a control frame, and only once negotiated.
        let starts_message = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        if header.rsv1 && !(self.deflate && starts_message) {
            return Err(ProtocolError::ReservedBits);
        }
        match header.opcode {
            OpCode::Continuation if self.message == Kind::None => {
                return Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.message != Kind::None => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            OpCode::Text => {
                self.message = Kind::Text;
                self.compressed = header.rsv1;
                self.utf8 = Utf8Validator::new();
            }
            OpCode::Binary => {
                self.message = Kind::Binary;
                self.compressed = header.rsv1;
            }
            _ => {}
        }
        if !header.opcode.is_control() {
            // A compressed message is judged again once inflated, against the limit itself.
            let limit = if self.compressed {
                compressed_limit(max_message)
            } else {
                max_message
            };
            let limit = limit.min(MAX_MESSAGE_LIMIT) as u64;
            if u64::from(self.data_len).saturating_add(header.payload_len) > limit {
                return Err(ProtocolError::MessageTooLarge);
            }
        }
        self.opcode = header.opcode;
        self.fin = header.fin;
        self.mask = header.mask;
        // Within the limit just checked, or a control frame's 125 bytes.
        self.remaining =
            u32::try_from(header.payload_len).map_err(|_| ProtocolError::MessageTooLarge)?;
        self.mask_phase = 0;
        Ok(())
    }

    /// A whole frame can be reported straight from the input when it is a control frame or a
    /// complete single-frame message: nothing of it needs to outlive the input.
    fn can_take_in_place(&self) -> bool {
        self.opcode.is_control() || (self.fin && self.opcode != OpCode::Continuation)
    }

    fn take_in_place<F>(
        &mut self,
        payload: &mut [u8],
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        if let Some(key) = self.mask {
            apply_mask(payload, key, 0);
        }
        self.remaining = 0;
        let payload: &[u8] = payload;
        if self.opcode.is_control() {
            return self.report_control(payload, on_event);
        }
        self.message = Kind::None;
        if std::mem::take(&mut self.compressed) {
            let text = self.opcode == OpCode::Text;
            self.release_buffer_if_empty();
            return Ok(on_event(Event::Deflated { text, payload }));
        }
        let message = if self.opcode == OpCode::Text {
            Message::Text(std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
        } else {
            Message::Binary(payload)
        };
        self.release_buffer_if_empty();
        Ok(on_event(Event::Message(message)))
    }

    /// Unmasks and stores the next piece of the current frame's payload.
    fn take_payload_piece(&mut self, chunk: &mut [u8]) -> Result<(), ProtocolError> {
        if let Some(key) = self.mask {
            apply_mask(chunk, key, usize::from(self.mask_phase));
        }
        self.mask_phase = ((usize::from(self.mask_phase) + chunk.len()) % 4) as u8;
        self.remaining -= chunk.len() as u32;
        if self.opcode.is_control() {
            self.buffer.extend_from_slice(chunk);
            return Ok(());
        }
        if self.message == Kind::Text && !self.compressed {
            self.utf8
                .feed(chunk)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.buffer.extend_from_slice(chunk);
        self.data_len += chunk.len() as u32;
        Ok(())
    }

    /// Completes a frame whose payload went through the buffer.
    fn finish_buffered_frame<F>(
        &mut self,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        self.stage = Stage::Header;
        if self.opcode.is_control() {
            let control = self.buffer.split_off(self.data_len as usize);
            let flow = self.report_control(&control, on_event);
            self.release_buffer_if_empty();
            return flow;
        }
        if !self.fin {
            return Ok(ControlFlow::Continue(()));
        }
        let kind = std::mem::replace(&mut self.message, Kind::None);
        let flow = match kind {
            _ if std::mem::take(&mut self.compressed) => on_event(Event::Deflated {
                text: kind == Kind::Text,
                payload: &self.buffer[..self.data_len as usize],
            }),
            Kind::Text => {
                if !self.utf8.is_complete() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                let text = std::str::from_utf8(&self.buffer[..self.data_len as usize])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                on_event(Event::Message(Message::Text(text)))
            }
            _ => on_event(Event::Message(Message::Binary(
                &self.buffer[..self.data_len as usize],
            ))),
        };
        self.buffer = Vec::new();
        self.data_len = 0;
        Ok(flow)
    }

    fn report_control<F>(
        &mut self,
        payload: &[u8],
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        self.stage = Stage::Header;
        Ok(match self.opcode {
            OpCode::Ping => on_event(Event::Ping(payload)),
            OpCode::Pong => on_event(Event::Pong(payload)),
            _ => {
                let close = parse_close_payload(payload)?;
                self.stage = Stage::Closed;
                self.buffer = Vec::new();
                self.data_len = 0;
                // Nothing follows a close frame, whatever the callback answers.
                let _ = on_event(Event::Close(close));
                ControlFlow::Break(())
            }
        })
    }

    fn release_buffer_if_empty(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{encode_frame, encode_header};
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1 << 20;

    /// An owned copy of an event, for comparing across decodes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Deflated(bool, Vec<u8>),
    }

    fn decode_pieces(pieces: &[&[u8]]) -> (Vec<Owned>, Option<ProtocolError>) {
        decode_with(Decoder::new(Role::Server), pieces)
    }

    fn decode_with(mut decoder: Decoder, pieces: &[&[u8]]) -> (Vec<Owned>, Option<ProtocolError>) {
        let mut events = Vec::new();
        for piece in pieces {
            let mut piece = piece.to_vec();
            let result = decoder.decode(&mut piece, MAX, |event| {
                events.push(match event {
                    Event::Message(Message::Text(t)) => Owned::Text(t.to_owned()),
                    Event::Message(Message::Binary(b)) => Owned::Binary(b.to_vec()),
                    Event::Ping(p) => Owned::Ping(p.to_vec()),
                    Event::Pong(p) => Owned::Pong(p.to_vec()),
                    Event::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
                    Event::Deflated { text, payload } => Owned::Deflated(text, payload.to_vec()),
                });
                ControlFlow::Continue(())
            });
            if let Err(error) = result {
                return (events, Some(error));
            }
        }
        (events, None)
    }

    fn fragment(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let len = encode_header(&mut header, fin, opcode, payload.len(), Some(KEY));
        let mut frame = header[..len].to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], KEY, 0);
        frame
    }

    fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        encode_frame(opcode, payload, Some(KEY)).to_vec()
    }

    /// `frame` with RSV1 set (a compressed first frame).
    fn with_rsv1(mut frame: Vec<u8>) -> Vec<u8> {
        frame[0] |= 0x40;
        frame
    }

    /// `stream` cut at `cuts` (taken modulo its length, in any order).
    fn split_at(stream: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            pieces.push(&stream[start..cut]);
            start = cut;
        }
        pieces
    }

    fn deflating() -> Decoder {
        let mut decoder = Decoder::new(Role::Server);
        decoder.accept_deflate();
        decoder
    }

    #[test]
    fn rsv1_is_refused_unless_deflate_was_negotiated() {
        let compressed = with_rsv1(masked(
            OpCode::Text,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        ));
        let (_, error) = decode_pieces(&[&compressed]);
        assert_eq!(error, Some(ProtocolError::ReservedBits));
        let (events, error) = decode_with(deflating(), &[&compressed]);
        assert_eq!(error, None);
        assert_eq!(
            events,
            [Owned::Deflated(
                true,
                vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
            )]
        );
    }

    #[test]
    fn rsv1_is_refused_on_continuations_and_control_frames_even_when_negotiated() {
        let first = fragment(false, OpCode::Binary, b"ab");
        let continuation = with_rsv1(fragment(true, OpCode::Continuation, b"cd"));
        let (_, error) = decode_with(deflating(), &[&first, &continuation]);
        assert_eq!(error, Some(ProtocolError::ReservedBits));
        let ping = with_rsv1(masked(OpCode::Ping, b"x"));
        let (_, error) = decode_with(deflating(), &[&ping]);
        assert_eq!(error, Some(ProtocolError::ReservedBits));
    }

    #[test]
    fn a_fragmented_compressed_message_is_joined_and_its_text_not_checked_until_inflated() {
        // Not UTF-8 as it stands: only the inflated text is checked.
        let first = with_rsv1(fragment(false, OpCode::Text, &[0xff, 0xfe]));
        let ping = masked(OpCode::Ping, b"p");
        let last = fragment(true, OpCode::Continuation, &[0xfd]);
        let plain = masked(OpCode::Text, b"plain");
        for split in [1, 3, 7] {
            let stream = [first.clone(), ping.clone(), last.clone(), plain.clone()].concat();
            let (head, tail) = stream.split_at(split);
            let (events, error) = decode_with(deflating(), &[head, tail]);
            assert_eq!(error, None);
            assert_eq!(
                events,
                [
                    Owned::Ping(b"p".to_vec()),
                    Owned::Deflated(true, vec![0xff, 0xfe, 0xfd]),
                    Owned::Text("plain".into()),
                ]
            );
        }
    }

    #[test]
    fn a_compressed_message_may_exceed_the_limit_by_the_deflate_overhead_only() {
        let mut decoder = deflating();
        let mut frame = with_rsv1(masked(OpCode::Binary, &[0u8; 100 + 64]));
        assert!(decoder
            .decode(&mut frame, 100, |_| ControlFlow::Continue(()))
            .is_ok());
        let mut frame = with_rsv1(masked(OpCode::Binary, &[0u8; 100 + 65]));
        assert_eq!(
            decoder.decode(&mut frame, 100, |_| ControlFlow::Continue(())),
            Err(ProtocolError::MessageTooLarge)
        );
    }

    #[test]
    fn decodes_the_rfc_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_pieces(&[&frame]),
            (vec![Owned::Text("Hello".into())], None)
        );
    }

    #[test]
    fn decodes_the_rfc_fragmented_hello_with_an_interleaved_ping() {
        let mut stream = fragment(false, OpCode::Text, b"Hel");
        stream.extend(masked(OpCode::Ping, b"hi"));
        stream.extend(fragment(true, OpCode::Continuation, b"lo"));
        assert_eq!(
            decode_pieces(&[&stream]),
            (
                vec![Owned::Ping(b"hi".to_vec()), Owned::Text("Hello".into())],
                None
            )
        );
    }

    #[test]
    fn decodes_a_frame_fed_byte_by_byte() {
        let frame = masked(OpCode::Binary, &[7u8; 300]);
        let pieces: Vec<&[u8]> = frame.chunks(1).collect();
        assert_eq!(
            decode_pieces(&pieces),
            (vec![Owned::Binary(vec![7; 300])], None)
        );
    }

    #[test]
    fn rejects_unmasked_client_frames() {
        let frame = encode_frame(OpCode::Text, b"Hello", None);
        assert_eq!(decode_pieces(&[&frame]).1, Some(ProtocolError::BadMasking));
    }

    #[test]
    fn rejects_continuation_without_a_message_and_a_new_message_inside_one() {
        let lone = fragment(true, OpCode::Continuation, b"x");
        assert_eq!(
            decode_pieces(&[&lone]).1,
            Some(ProtocolError::UnexpectedContinuation)
        );
        let mut nested = fragment(false, OpCode::Text, b"a");
        nested.extend(masked(OpCode::Text, b"b"));
        assert_eq!(
            decode_pieces(&[&nested]).1,
            Some(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn fails_fast_on_invalid_utf8_inside_an_unfinished_frame() {
        let frame = masked(
            OpCode::Text,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        );
        // Only the first 14 payload bytes arrive: the invalid sequence is already among them.
        let (events, error) = decode_pieces(&[&frame[..6 + 14]]);
        assert!(events.is_empty());
        assert_eq!(error, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn accepts_utf8_split_across_fragments() {
        let euro = "€".as_bytes();
        let mut stream = fragment(false, OpCode::Text, &euro[..1]);
        stream.extend(fragment(true, OpCode::Continuation, &euro[1..]));
        assert_eq!(
            decode_pieces(&[&stream]),
            (vec![Owned::Text("€".into())], None)
        );
    }

    #[test]
    fn rejects_a_message_that_ends_inside_a_code_point() {
        let mut stream = fragment(false, OpCode::Text, b"ok");
        stream.extend(fragment(true, OpCode::Continuation, &"€".as_bytes()[..2]));
        assert_eq!(
            decode_pieces(&[&stream]).1,
            Some(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn rejects_oversize_messages_across_fragments_before_storing_them() {
        let mut decoder = Decoder::new(Role::Server);
        let mut first = fragment(false, OpCode::Binary, &[0; 60]);
        decoder
            .decode(&mut first, 100, |_| ControlFlow::Continue(()))
            .unwrap();
        // Only the header of the second fragment: its length alone breaks the limit.
        let mut header = [0u8; MAX_HEADER_LEN];
        let len = encode_header(&mut header, true, OpCode::Continuation, 41, Some(KEY));
        let result = decoder.decode(&mut header[..len], 100, |_| ControlFlow::Continue(()));
        assert_eq!(result, Err(ProtocolError::MessageTooLarge));
    }

    #[test]
    fn no_message_reaches_4_gib_whatever_the_caller_allows() {
        let header_of = |payload_len: usize| {
            let mut header = [0u8; MAX_HEADER_LEN];
            let len = encode_header(&mut header, true, OpCode::Binary, payload_len, Some(KEY));
            header[..len].to_vec()
        };
        // The decoder counts in 32 bits: one byte short of 4 GiB is the largest frame it starts.
        let mut decoder = Decoder::new(Role::Server);
        let mut largest = header_of(u32::MAX as usize);
        assert_eq!(
            decoder.decode(&mut largest, usize::MAX, |_| ControlFlow::Continue(())),
            Ok(largest.len())
        );
        assert!(decoder.is_mid_message());
        for payload_len in [1 << 32, usize::MAX >> 1] {
            let mut decoder = Decoder::new(Role::Server);
            let mut header = header_of(payload_len);
            assert_eq!(
                decoder.decode(&mut header, usize::MAX, |_| ControlFlow::Continue(())),
                Err(ProtocolError::MessageTooLarge),
                "{payload_len}"
            );
        }
    }

    #[test]
    fn validates_close_frames_and_stops_after_them() {
        let mut stream = masked(OpCode::Close, b"\x03\xe8bye");
        stream.extend(masked(OpCode::Text, b"ignored"));
        assert_eq!(
            decode_pieces(&[&stream]),
            (vec![Owned::Close(Some((1000, "bye".into())))], None)
        );
        assert_eq!(
            decode_pieces(&[&masked(OpCode::Close, b"\x03")]).1,
            Some(ProtocolError::InvalidClosePayload)
        );
    }

    #[test]
    fn holds_no_heap_memory_between_messages() {
        let mut decoder = Decoder::new(Role::Server);
        let frame = masked(OpCode::Binary, &[1; 1000]);
        for piece in frame.chunks(100) {
            let mut piece = piece.to_vec();
            decoder
                .decode(&mut piece, MAX, |_| ControlFlow::Continue(()))
                .unwrap();
        }
        assert_eq!(decoder.buffered_capacity(), 0);
        assert!(!decoder.is_mid_message());
    }

    #[test]
    fn holds_no_heap_memory_after_a_control_frame_whose_header_was_split() {
        // Found by the fuzzer: the RFC masked pong, cut after its first two bytes.
        let frame = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut decoder = Decoder::new(Role::Server);
        for piece in [&frame[..2], &frame[2..]] {
            let mut piece = piece.to_vec();
            decoder
                .decode(&mut piece, MAX, |_| ControlFlow::Continue(()))
                .unwrap();
        }
        assert_eq!(decoder.buffered_capacity(), 0);
    }

    #[test]
    fn decodes_unmasked_frames_in_the_client_role() {
        let mut decoder = Decoder::new(Role::Client);
        let mut frame = encode_frame(OpCode::Text, b"Hello", None).to_vec();
        let mut seen = None;
        decoder
            .decode(&mut frame, MAX, |event| {
                seen = Some(format!("{event:?}"));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen.as_deref(), Some("Message(Text(\"Hello\"))"));
    }

    fn message_strategy() -> impl Strategy<Value = (bool, Vec<u8>, usize)> {
        (
            any::<bool>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(any::<u8>(), 120..400),
            ],
            1usize..4,
        )
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_stream_yields_the_same_messages(
            messages in proptest::collection::vec(message_strategy(), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (is_text, payload, fragments) in messages {
                let (opcode, event) = if is_text {
                    let text = String::from_utf8_lossy(&payload).into_owned();
                    (OpCode::Text, Owned::Text(text))
                } else {
                    (OpCode::Binary, Owned::Binary(payload))
                };
                let bytes = match &event {
                    Owned::Text(t) => t.as_bytes().to_vec(),
                    Owned::Binary(b) => b.clone(),
                    _ => unreachable!(),
                };
                let size = bytes.len().div_ceil(fragments).max(1);
                let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![&[]] } else { bytes.chunks(size).collect() };
                for (i, chunk) in chunks.iter().enumerate() {
                    let code = if i == 0 { opcode } else { OpCode::Continuation };
                    stream.extend(fragment(i + 1 == chunks.len(), code, chunk));
                    // A ping between the first and second fragment, or after a whole message.
                    if i == 0 {
                        stream.extend(masked(OpCode::Ping, b"p"));
                    }
                }
                if chunks.len() > 1 {
                    expected.push(Owned::Ping(b"p".to_vec()));
                    expected.push(event);
                } else {
                    expected.push(event);
                    expected.push(Owned::Ping(b"p".to_vec()));
                }
            }
            let pieces = split_at(&stream, cuts);
            prop_assert_eq!(decode_pieces(&pieces), (expected, None));
        }

        #[test]
        fn compressed_messages_split_anywhere_inflate_to_what_was_sent(
            messages in proptest::collection::vec((any::<bool>(), "[a-z {}:,0-9]{0,3000}", 1usize..4), 1..5),
            window_bits in 9u8..=15,
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            // One shared compressor and decompressor for every message, as a reactor has.
            let mut deflater = crate::protocol::deflate::Deflater::new();
            let mut stream = Vec::new();
            for (is_text, text, fragments) in &messages {
                let mut compressed = Vec::new();
                deflater.compress(window_bits, text.as_bytes(), &mut compressed);
                let opcode = if *is_text { OpCode::Text } else { OpCode::Binary };
                let size = compressed.len().div_ceil(*fragments).max(1);
                let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let code = if i == 0 { opcode } else { OpCode::Continuation };
                    let frame = fragment(i + 1 == chunks.len(), code, chunk);
                    stream.extend(if i == 0 { with_rsv1(frame) } else { frame });
                }
            }
            let pieces = split_at(&stream, cuts);
            let (events, error) = decode_with(deflating(), &pieces);
            prop_assert_eq!(error, None);
            prop_assert_eq!(events.len(), messages.len());
            let mut inflater = crate::protocol::deflate::Inflater::new();
            for (event, (is_text, text, _)) in events.iter().zip(&messages) {
                let Owned::Deflated(text_flag, payload) = event else {
                    return Err(TestCaseError::fail(format!("{event:?}")));
                };
                prop_assert_eq!(text_flag, is_text);
                let mut inflated = Vec::new();
                prop_assert!(inflater.inflate(payload, MAX, &mut inflated).is_ok());
                prop_assert_eq!(&inflated[..], text.as_bytes());
            }
        }

        #[test]
        fn encode_then_decode_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            let frame = masked(OpCode::Binary, &payload);
            prop_assert_eq!(decode_pieces(&[&frame]), (vec![Owned::Binary(payload)], None));
        }

        #[test]
        fn never_panics_on_arbitrary_input(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<usize>(),
        ) {
            let cut = cut % (bytes.len() + 1);
            let _ = decode_pieces(&[&bytes[..cut], &bytes[cut..]]);
        }
    }
}
