//! The broadcast path: one 64-byte message to 10,000 connections' outboxes.
//!
//! `shared` encodes the frame once and pushes the same `Bytes` (a refcount increment) into
//! every outbox, as the server does; `per_recipient` encodes a frame for each outbox, the naive
//! way, for contrast. `push` stops once every outbox holds the frame; `push_drain` also writes
//! every outbox out to `io::sink()` through `Outbox::write_to`, which empties it again.
//! Throughput is in recipients per second.
//!
//! Run: `cargo bench --bench fanout` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wspush::protocol::encode_message;
use wspush::{Flushed, Message, Outbox};

const RECIPIENTS: usize = 10_000;
const PAYLOAD: &str =
    "{\"type\":\"notice\",\"from\":\"system\",\"body\":\"hello, everyone again\"}";

fn fresh_outboxes() -> Vec<Outbox> {
    (0..RECIPIENTS).map(|_| Outbox::default()).collect()
}

fn push_shared(outboxes: &mut [Outbox], message: Message<'_>) {
    let frame = encode_message(message);
    for outbox in outboxes {
        assert!(outbox.push(frame.clone()));
    }
}

fn push_per_recipient(outboxes: &mut [Outbox], message: Message<'_>) {
    for outbox in outboxes {
        assert!(outbox.push(encode_message(message)));
    }
}

fn drain(outboxes: &mut [Outbox]) -> usize {
    let mut sink = io::sink();
    let mut written = 0;
    for outbox in outboxes {
        let (n, flushed, _) = outbox.write_to(&mut sink).expect("sink never fails");
        debug_assert_eq!(flushed, Flushed::All);
        written += n;
    }
    written
}

fn fanout(c: &mut Criterion) {
    assert_eq!(PAYLOAD.len(), 64);
    let message = Message::Text(PAYLOAD);
    let frame_len = encode_message(message).len();
    let mut group = c.benchmark_group("fanout_10k_64B");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));

    type Push = fn(&mut [Outbox], Message<'_>);
    let ways: [(&str, Push); 2] = [
        ("shared", push_shared),
        ("per_recipient", push_per_recipient),
    ];
    for (name, push) in ways {
        // Push only: one set of outboxes, long-lived like the server's, emptied after the
        // timed part of each iteration (so dropping the queued frames is not timed here).
        let mut outboxes = fresh_outboxes();
        group.bench_function(format!("{name}/push"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    push(black_box(&mut outboxes), black_box(message));
                    total += start.elapsed();
                    outboxes.iter_mut().for_each(Outbox::clear);
                }
                total
            })
        });
        // Push, then drain: the outboxes end each iteration empty, so one set serves them all,
        // and releasing the frames is part of the measured work.
        group.bench_function(format!("{name}/push_drain"), |b| {
            b.iter(|| {
                push(&mut outboxes, black_box(message));
                let written = drain(&mut outboxes);
                debug_assert_eq!(written, RECIPIENTS * frame_len);
                written
            })
        });
        assert!(outboxes.iter().all(Outbox::is_empty));
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
