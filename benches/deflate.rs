//! permessage-deflate costs: compressing and framing a push, inflating one, and what the
//! compression saves on the wire, for JSON pushes of 64 B to 16 KiB at zlib levels 1, 2, 6 and
//! 9 (the size table: every level), window 15, every message from a reset context (no context
//! takeover, as the server negotiates it).
//!
//! Before the timings, a table of sizes is printed: the frame as it goes out compressed and
//! uncompressed, and, for comparison, what the same messages average when one context is kept
//! across a connection's messages (context takeover, which the server does not do).
//!
//! Run: `cargo bench --bench deflate` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use wspush::protocol::deflate::{Deflater, Inflater, MAX_WINDOW_BITS, SYNC_FLUSH_TAIL};
use wspush::protocol::frame::{encode_header, OpCode, MAX_HEADER_LEN};
use wspush::protocol::{encode_message, Message};

const SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 4096, 16 * 1024];
/// The levels timed; the size table shows every level.
const LEVELS: [u32; 4] = [1, 2, 6, 9];
/// Distinct messages per size, so that no iteration compresses the very bytes the previous
/// one did (the contexts are reset anyway; this keeps caches and branch history honest).
const VARIANTS: usize = 16;
/// The inflate limit: above every message here.
const MAX_MESSAGE: usize = 1 << 20;

/// A small deterministic generator (64-bit LCG, high bits used).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "I", "it", "for", "not", "on",
    "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we", "say",
    "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their", "what", "so",
    "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make", "can", "like",
    "time", "no", "just", "him", "know", "take", "people", "into", "year", "your", "good", "some",
    "could", "them", "see", "other", "than", "then", "now", "look", "only", "come", "its", "over",
    "think", "also", "back", "after", "use", "two", "how", "our", "work", "first", "well", "way",
    "even", "new", "want", "because", "any", "these", "give", "day", "most", "us", "meeting",
    "tomorrow", "deploy", "build", "lunch", "ok", "thanks", "done", "review", "ticket", "merged",
    "release", "call", "sounds", "great",
];

const KINDS: &[&str] = &["chat", "chat", "chat", "reaction", "edit", "typing", "read"];

/// Words separated by spaces, `len` bytes exactly (ASCII).
fn text(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        if rng.below(12) == 0 {
            out.push_str(if rng.below(2) == 0 { "," } else { "." });
        }
    }
    out.truncate(len);
    out
}

/// One event object, split around its `text` value: what comes before it, what after.
fn event_parts(rng: &mut Rng, ts: &mut u64) -> (String, String) {
    *ts += 1 + rng.below(5_000);
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let before = format!(
        r#"{{"type":"{kind}","id":"m-{:08x}","room":"r-{}","from":"user-{}","text":""#,
        rng.next() as u32,
        1000 + rng.below(9000),
        1000 + rng.below(9000),
    );
    (before, format!(r#"","ts":{ts}}}"#))
}

/// A realistic JSON push of exactly `size` bytes: one compact event below 100 bytes, one
/// event below 512, a batch of events above; the last event's text fills it to the size.
fn json_push(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut ts = 1_764_612_345_678 + rng.below(1_000_000);
    let (head, tail) = if size < 100 {
        (
            format!(
                r#"{{"t":"msg","u":"u{}","ts":{ts},"m":""#,
                1000 + rng.below(9000)
            ),
            "\"}".to_string(),
        )
    } else if size < 512 {
        event_parts(&mut rng, &mut ts)
    } else {
        let mut head = format!(
            r#"{{"type":"batch","room":"r-{}","events":["#,
            rng.below(9000)
        );
        loop {
            let (before, after) = event_parts(&mut rng, &mut ts);
            let text_len = 10 + rng.below(140) as usize;
            // Leave room for a last event of at least a few words.
            if head.len() + before.len() + text_len + after.len() + 1 + 200 > size {
                break;
            }
            head += &before;
            head += &text(&mut rng, text_len);
            head += &after;
            head.push(',');
        }
        let (before, after) = event_parts(&mut rng, &mut ts);
        (head + &before, after + "]}")
    };
    let fill = size
        .checked_sub(head.len() + tail.len())
        .expect("the size leaves room for a text");
    format!("{head}{}{tail}", text(&mut rng, fill)).into_bytes()
}

/// A server frame (FIN, RSV1 for a compressed payload) holding `payload`, as the hub builds
/// the one frame every recipient shares.
fn frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, payload.len(), None);
    if rsv1 {
        header[0] |= 0x40;
    }
    let mut frame = Vec::with_capacity(header_len + payload.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// Compresses and frames one push the way the server does.
fn compress_frame(deflater: &mut Deflater, scratch: &mut Vec<u8>, payload: &[u8]) -> Bytes {
    scratch.clear();
    deflater.compress(MAX_WINDOW_BITS, payload, scratch);
    frame(OpCode::Text, true, scratch)
}

/// Average compressed payload size of `messages` sent through one context kept across them
/// (context takeover), sync flush and tail removal per message.
fn with_context_takeover(level: u32, messages: &[Vec<u8>]) -> f64 {
    let mut context = Compress::new_with_window_bits(Compression::new(level), false, 15);
    let mut total = 0;
    for message in messages {
        let mut out = Vec::with_capacity(message.len() * 2 + 64);
        let before = context.total_out();
        context
            .compress_vec(message, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&SYNC_FLUSH_TAIL));
        total += (context.total_out() - before) as usize - SYNC_FLUSH_TAIL.len();
    }
    total as f64 / messages.len() as f64
}

fn print_sizes() {
    println!();
    println!("permessage-deflate wire sizes (window 15), average of {VARIANTS} messages per size");
    println!(
        "{:>7} {:>5} {:>11} {:>12} {:>9} {:>8} {:>7} {:>16}",
        "payload",
        "level",
        "compressed",
        "frame (RSV1)",
        "plain",
        "saved",
        "ratio",
        "with takeover"
    );
    for size in SIZES {
        let messages: Vec<Vec<u8>> = (0..VARIANTS as u64).map(|s| json_push(size, s)).collect();
        // Several messages of one connection in a row, for the takeover baseline.
        let stream: Vec<Vec<u8>> = (0..64u64).map(|s| json_push(size, 1000 + s)).collect();
        for level in 1..=9 {
            let mut deflater = Deflater::with_level(level);
            let mut scratch = Vec::new();
            let (mut compressed, mut framed, mut plain) = (0, 0, 0);
            for message in &messages {
                assert_eq!(message.len(), size);
                assert!(serde_json::from_slice::<serde_json::Value>(message).is_ok());
                framed += compress_frame(&mut deflater, &mut scratch, message).len();
                compressed += scratch.len();
                plain += encode_message(Message::Binary(message)).len();
            }
            let n = VARIANTS as f64;
            let (compressed, framed, plain) =
                (compressed as f64 / n, framed as f64 / n, plain as f64 / n);
            println!(
                "{size:>7} {level:>5} {compressed:>11.1} {framed:>12.1} {plain:>9.1} {:>8.1} {:>7.3} {:>16.1}",
                plain - framed,
                compressed / size as f64,
                with_context_takeover(level, &stream),
            );
        }
    }
    println!();
}

fn compress(c: &mut Criterion) {
    print_sizes();
    let mut group = c.benchmark_group("deflate_compress_frame");
    for size in SIZES {
        let messages: Vec<Vec<u8>> = (0..VARIANTS as u64).map(|s| json_push(size, s)).collect();
        group.throughput(Throughput::Bytes(size as u64));
        for level in LEVELS {
            let mut deflater = Deflater::with_level(level);
            let mut scratch = Vec::with_capacity(2 * size + 64);
            let mut i = 0;
            group.bench_function(BenchmarkId::new(format!("L{level}"), size), |b| {
                b.iter(|| {
                    i = (i + 1) % VARIANTS;
                    compress_frame(&mut deflater, &mut scratch, black_box(&messages[i]))
                })
            });
        }
        // The alternative: the same push framed as it is, uncompressed.
        let mut i = 0;
        group.bench_function(BenchmarkId::new("plain", size), |b| {
            b.iter(|| {
                i = (i + 1) % VARIANTS;
                encode_message(Message::Binary(black_box(&messages[i])))
            })
        });
    }
    group.finish();
}

fn inflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_inflate");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        for level in LEVELS {
            let mut deflater = Deflater::with_level(level);
            let compressed: Vec<Vec<u8>> = (0..VARIANTS as u64)
                .map(|s| {
                    let mut out = Vec::new();
                    deflater.compress(MAX_WINDOW_BITS, &json_push(size, s), &mut out);
                    out
                })
                .collect();
            let mut inflater = Inflater::new();
            let mut out = Vec::with_capacity(MAX_MESSAGE);
            let mut i = 0;
            group.bench_function(BenchmarkId::new(format!("L{level}"), size), |b| {
                b.iter(|| {
                    i = (i + 1) % VARIANTS;
                    out.clear();
                    inflater
                        .inflate(black_box(&compressed[i]), MAX_MESSAGE, &mut out)
                        .expect("benchmark messages are valid");
                    out.len()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compress, inflate);
criterion_main!(benches);
