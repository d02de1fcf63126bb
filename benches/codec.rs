//! Protocol-core micro-benchmarks: header parsing, unmasking, whole-frame decoding, encoding,
//! UTF-8 validation and the opening handshake.
//!
//! `Decoder::decode` unmasks its input in place, so a buffer decoded once is no longer the
//! frame it was. Each decode benchmark below states how it keeps every iteration honest.
//!
//! Run: `cargo bench --bench codec` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wspush::protocol::frame::{decode_header, encode_frame, encode_message, OpCode};
use wspush::protocol::handshake::{parse_request, MAX_HEADERS};
use wspush::protocol::mask::{apply_mask, apply_mask_naive};
use wspush::protocol::utf8::Utf8Validator;
use wspush::protocol::{Decoder, Event, Message, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KIB64: usize = 64 * 1024;
/// The decoder's limit in these benchmarks: comfortably above every frame decoded.
const MAX_MESSAGE: usize = 1 << 20;

/// `len` bytes of mixed ASCII and multi-byte UTF-8 (2-, 3- and 4-byte sequences), cut at a
/// character boundary.
fn text(len: usize) -> String {
    let pattern =
        "Push notification: caf\u{e9} \u{fc}ber na\u{ef}ve \u{2014} \u{4f60}\u{597d} \u{1f30d}; ";
    let mut out = String::with_capacity(len + pattern.len());
    while out.len() < len {
        out.push_str(pattern);
    }
    let mut end = len;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Decodes `input` (one whole frame) and returns the payload length it reported.
fn decode_once(decoder: &mut Decoder, input: &mut [u8]) -> usize {
    let mut seen = 0;
    decoder
        .decode(input, MAX_MESSAGE, |event| {
            if let Event::Message(message) = event {
                seen = black_box(message.as_bytes()).len();
            }
            ControlFlow::Continue(())
        })
        .expect("benchmark frames are valid");
    seen
}

fn header_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_header");
    let cases: [(&str, Vec<u8>); 3] = [
        ("7bit_masked", [&[0x81, 0x85][..], &KEY].concat()),
        (
            "16bit_masked",
            [&[0x82, 0xFE, 0x01, 0x00][..], &KEY].concat(),
        ),
        (
            "64bit_masked",
            [&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0, 0][..], &KEY].concat(),
        ),
    ];
    for (name, header) in &cases {
        assert!(matches!(decode_header(header), Ok(Some((_, n))) if n == header.len()));
        group.bench_with_input(BenchmarkId::from_parameter(name), header, |b, header| {
            b.iter(|| decode_header(black_box(header)))
        });
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    group.throughput(Throughput::Bytes(KIB64 as u64));
    // Masking is an involution and costs the same whatever the bytes are, so masking one buffer
    // over and over is the same work every iteration.
    let mut buf = binary(KIB64);
    group.bench_function("64KiB", |b| {
        b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
    });
    group.bench_function("64KiB_naive", |b| {
        b.iter(|| apply_mask_naive(black_box(&mut buf), black_box(KEY), 0))
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");

    // Text frames: each iteration gets a fresh copy of the masked frame (made outside the
    // timing), since a decoded buffer holds the unmasked text and would fail as a frame.
    for (name, len, batch) in [
        ("text_64B", 64, BatchSize::SmallInput),
        // 16 copies of 64 KiB per batch: about what a read buffer's worth of recent data is.
        ("text_64KiB", KIB64, BatchSize::NumIterations(16)),
    ] {
        let frame = encode_frame(OpCode::Text, text(len).as_bytes(), Some(KEY)).to_vec();
        let payload_len = text(len).len();
        let mut decoder = Decoder::new(Role::Server);
        assert_eq!(decode_once(&mut decoder, &mut frame.clone()), payload_len);
        group.throughput(Throughput::Bytes(payload_len as u64));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |input| decode_once(&mut decoder, input),
                batch,
            )
        });
    }

    // Binary frames: decoding unmasks the payload in place and leaves the header as it was, so
    // the buffer is again a valid frame of the same length (its payload masked or not, which a
    // binary message does not care about). Every iteration does the full header + unmask +
    // report work on the same, cache-warm buffer, as a frame just read would be.
    for (name, len) in [("binary_64B", 64), ("binary_64KiB", KIB64)] {
        let mut frame = encode_frame(OpCode::Binary, &binary(len), Some(KEY)).to_vec();
        let mut decoder = Decoder::new(Role::Server);
        assert_eq!(decode_once(&mut decoder, &mut frame), len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_once(&mut decoder, black_box(&mut frame)))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_message");
    for (name, len) in [("64B", 64), ("64KiB", KIB64)] {
        let payload = binary(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| encode_message(Message::Binary(black_box(&payload))))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_64KiB");
    let text = text(KIB64);
    let bytes = text.as_bytes();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("validator_whole", |b| {
        b.iter(|| {
            let mut validator = Utf8Validator::new();
            validator.feed(black_box(bytes)).unwrap();
            validator.is_complete()
        })
    });
    // Pieces of 1,447 bytes (a prime, so pieces end inside multi-byte characters), as reads
    // of a fragmented or partly received message feed it.
    group.bench_function("validator_1447B_pieces", |b| {
        b.iter(|| {
            let mut validator = Utf8Validator::new();
            for piece in black_box(bytes).chunks(1447) {
                validator.feed(piece).unwrap();
            }
            validator.is_complete()
        })
    });
    group.bench_function("std_from_utf8_baseline", |b| {
        b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok())
    });
    group.finish();
}

/// What a current desktop browser sends to open a WebSocket.
const BROWSER_REQUEST: &[u8] = b"GET /ws?token=abc123 HTTP/1.1\r\n\
Host: push.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=5f2b9c1e8a7d4f3b; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn handshake(c: &mut Criterion) {
    let parse = |request: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_request(request, 8 << 10, &mut headers)
            .expect("a valid request")
            .expect("a complete request")
            .accept
    };
    assert_eq!(parse(BROWSER_REQUEST), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // Includes the Sec-WebSocket-Accept computation (SHA-1 + base64), as the server does it.
    c.bench_function("handshake/parse_request_browser", |b| {
        b.iter(|| parse(black_box(BROWSER_REQUEST)))
    });
}

criterion_group!(
    benches,
    header_decode,
    unmask,
    decode,
    encode,
    utf8,
    handshake
);
criterion_main!(benches);
