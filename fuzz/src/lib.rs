//! The drivers behind the fuzz targets.
//!
//! This file is also compiled into the main crate's `tests/fuzz_corpus.rs` (through
//! `#[path]`), so the stable corpus replay runs exactly what the fuzzer runs. Keep it to `std`,
//! `wspush` and `httparse`, which both builds have.

use std::ops::ControlFlow;

use wspush::api::http::{HttpError, HttpRequest, Limits, Parsed, RequestParser};
use wspush::protocol::handshake::{parse_request, MAX_HEADERS};
use wspush::protocol::{Decoder, Event, Message, ProtocolError, Role};

/// The decoder's message size limit: small, so the size checks are within the fuzzer's reach.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Streams up to this long are also fed to the decoder one byte at a time.
pub const BYTEWISE_LIMIT: usize = 4096;

/// Handshake size limits every input is parsed with: tiny, below and at the server default.
pub const HANDSHAKE_LIMITS: [usize; 3] = [64, 2048, 8 << 10];

/// Push API limits every HTTP input is parsed with: small, so the limits are within reach.
pub const HTTP_LIMITS: Limits = Limits {
    max_head: 1024,
    max_body: 4096,
};

/// An owned copy of a decoder event, so decodes of the same stream can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping's payload.
    Ping(Vec<u8>),
    /// A pong's payload.
    Pong(Vec<u8>),
    /// A close frame's code and reason.
    Close(Option<(u16, String)>),
}

/// Everything a decode reported: its events, then the error that stopped it, if any.
pub type Outcome = (Vec<Owned>, Option<ProtocolError>);

/// Frame decoder target. Input layout: bytes 0..2 (little-endian `u16`, modulo the stream
/// length + 1) pick a split point; the rest is the byte stream.
pub fn frame_decoder(data: &[u8]) {
    let [lo, hi, stream @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*lo, *hi]));
    check_stream(stream, split % (stream.len() + 1));
}

/// Decodes `stream` whole, split in two at `split`, and (when short) one byte at a time, in
/// both roles, and asserts every way yields the same events and the same error.
pub fn check_stream(stream: &[u8], split: usize) {
    let (head, tail) = stream.split_at(split);
    for role in [Role::Server, Role::Client] {
        let whole = decode_pieces(role, &[stream]);
        let halves = decode_pieces(role, &[head, tail]);
        assert_eq!(whole, halves, "{role:?}: whole vs split at {split}");
        if stream.len() <= BYTEWISE_LIMIT {
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            let bytewise = decode_pieces(role, &bytes);
            assert_eq!(whole, bytewise, "{role:?}: whole vs byte at a time");
        }
    }
}

/// Feeds `pieces` to one decoder in order, as successive reads would, and checks the
/// decoder's own invariants along the way.
pub fn decode_pieces(role: Role, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(role);
    let mut events = Vec::new();
    for piece in pieces {
        let mut piece = piece.to_vec();
        let result = decoder.decode(&mut piece, MAX_MESSAGE, |event| {
            assert!(
                !matches!(events.last(), Some(Owned::Close(_))),
                "an event after a close frame: {event:?}"
            );
            if let Event::Message(message) = event {
                assert!(
                    message.as_bytes().len() <= MAX_MESSAGE,
                    "message over the limit"
                );
            }
            events.push(own(event));
            ControlFlow::Continue(())
        });
        if let Err(error) = result {
            return (events, Some(error));
        }
        // "An idle decoder owns no heap memory."
        if !decoder.is_mid_message() {
            assert_eq!(decoder.buffered_capacity(), 0, "idle decoder holds memory");
        }
    }
    (events, None)
}

fn own(event: Event<'_>) -> Owned {
    match event {
        Event::Message(Message::Text(text)) => Owned::Text(text.to_owned()),
        Event::Message(Message::Binary(bytes)) => Owned::Binary(bytes.to_vec()),
        Event::Ping(payload) => Owned::Ping(payload.to_vec()),
        Event::Pong(payload) => Owned::Pong(payload.to_vec()),
        Event::Close(frame) => Owned::Close(frame.map(|f| (f.code.0, f.reason.to_owned()))),
        // The fuzzed decoder never accepts permessage-deflate.
        Event::Deflated { .. } => unreachable!("RSV1 accepted without negotiation"),
    }
}

/// Handshake target: parses `data` as a client's opening request under each size limit and
/// checks what a caller relies on.
pub fn handshake(data: &[u8]) {
    for max_len in HANDSHAKE_LIMITS {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_request(data, max_len, &mut headers) {
            Ok(Some(request)) => {
                assert!(request.len <= data.len() && request.len <= max_len);
                assert_eq!(request.accept.len(), 28, "accept key is base64 of 20 bytes");
                // The request head alone, without what followed it, parses the same.
                let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let head = parse_request(&data[..request.len], max_len, &mut again)
                    .expect("the head alone parses")
                    .expect("the head alone is complete");
                assert_eq!((head.len, head.target), (request.len, request.target));
                assert_eq!(head.accept, request.accept);
            }
            // Waiting for more is only allowed while the limit leaves room for it.
            Ok(None) => assert!(
                data.len() < max_len,
                "partial at {} >= {max_len}",
                data.len()
            ),
            Err(error) => assert!(
                matches!(error.status, 400 | 405 | 426 | 431),
                "unexpected status {error}"
            ),
        }
    }
}

/// What a connection's pipelined HTTP input yielded: the requests answered in order, then the
/// refusal that ended it, if any.
pub type HttpOutcome = (Vec<HttpRequest>, Option<HttpError>);

/// HTTP request target (the push API's parser). Input layout: bytes 0..2 (little-endian `u16`,
/// modulo the stream length + 1) pick a split point; the rest is what a client sent on one
/// connection, possibly several pipelined requests.
pub fn http_request(data: &[u8]) {
    let [lo, hi, stream @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*lo, *hi]));
    check_http_stream(stream, split % (stream.len() + 1));
}

/// Parses `stream` whole, split in two at `split`, and (when short) one byte at a time, as the
/// API reads it (the buffer grows, complete requests are taken off its front), and asserts every
/// way yields the same requests and the same refusal.
pub fn check_http_stream(stream: &[u8], split: usize) {
    let whole = check_http_split(stream, split);
    if stream.len() <= BYTEWISE_LIMIT {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(whole, parse_http_pieces(&bytes), "whole vs byte at a time");
    }
}

/// Parses `stream` whole and split in two at `split`, asserts both give the same, and returns
/// what the whole stream gave.
pub fn check_http_split(stream: &[u8], split: usize) -> HttpOutcome {
    let (head, tail) = stream.split_at(split);
    let whole = parse_http_pieces(&[stream]);
    assert_eq!(
        whole,
        parse_http_pieces(&[head, tail]),
        "whole vs split at {split}"
    );
    whole
}

/// Feeds `pieces` to one parser the way the API does (resuming where it stopped, complete
/// requests taken off the buffer's front), and checks what a caller relies on.
pub fn parse_http_pieces(pieces: &[&[u8]]) -> HttpOutcome {
    let mut parser = RequestParser::new(HTTP_LIMITS);
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match parser.parse(&buffer) {
                Ok(Parsed::Complete(request, used)) => {
                    assert!(used > 0 && used <= buffer.len());
                    assert!(
                        request.body.len() <= HTTP_LIMITS.max_body,
                        "body over the limit"
                    );
                    buffer.drain(..used);
                    requests.push(request);
                }
                Ok(Parsed::Incomplete { head, .. }) => {
                    if let Some(head) = head {
                        assert!(
                            head.body.len() <= HTTP_LIMITS.max_body,
                            "a partial body over the limit"
                        );
                    }
                    // What a request may buffer: its head, its framing (chunk lines and
                    // trailers, at most the head limit), its body, one partial line.
                    let bound = 2 * HTTP_LIMITS.max_head + HTTP_LIMITS.max_body + 1024 + 2;
                    assert!(buffer.len() <= bound, "{} bytes buffered", buffer.len());
                    break;
                }
                Err(error) => {
                    assert!(
                        matches!(error.status, 400 | 413 | 431 | 501),
                        "unexpected status {}",
                        error.status
                    );
                    return (requests, Some(error));
                }
            }
        }
    }
    (requests, None)
}
