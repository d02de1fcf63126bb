//! Hostile clients against the real binary: whatever they make the server queue is held to the
//! send caps at what it costs in memory (bytes plus a per-frame overhead), not at its payload
//! size, and other clients keep being served.

mod common;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;

/// The binary without timers and without a fan-out allowance (the floods must reach the
/// caps), with `send_cap` as the per-connection send cap.
fn quiet_server(send_cap: &str) -> BinaryServer {
    BinaryServer::start(&[
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
        "--client-fanout-rate",
        "off",
        "--max-send-buffer",
        send_cap,
    ])
}

/// Writes `burst` over and over until `limit` bytes are out or the server stops reading (a
/// write makes no progress for a while: its reading is paused and TCP pushed back).
fn flood(client: &mut RawClient, burst: &[u8], limit: usize) -> usize {
    client
        .stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0;
    while sent < limit {
        match client.stream.write(burst) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("flood write failed: {e}"),
        }
    }
    sent
}

#[test]
fn empty_ping_floods_are_held_to_the_send_cap() {
    let server = quiet_server("1MiB");
    let mut flooders: Vec<RawClient> = (0..5)
        .map(|i| RawClient::login(server.addr, &format!("pinger{i}")))
        .collect();
    let mut healthy = RawClient::login(server.addr, "healthy");
    let before = server.rss();

    // Empty masked pings (6 bytes each), never reading the pongs: before per-frame costs were
    // counted, each such client held ~17 MiB against a 1 MiB cap.
    let burst = frame(true, PING, b"", true).repeat(10_000);
    let mut sent = 0;
    for flooder in &mut flooders {
        sent += flood(flooder, &burst, 6 << 20);
    }
    healthy.send_text("healthy:still here");
    assert_eq!(healthy.expect_text(), "still here");

    let growth = server.rss().saturating_sub(before);
    eprintln!("ping floods: {sent} bytes sent, server RSS +{growth} bytes");
    assert!(
        sent > 5 << 20,
        "the flood was too small to test anything: {sent} bytes"
    );
    assert!(
        // Reading pauses at half the cap: 5 × 0.5 MiB, plus allowance for allocator slack.
        growth < 5 * MIB + 2 * MIB,
        "server RSS grew by {growth} bytes for 5 ping floods ({sent} bytes sent) at a 1 MiB cap"
    );
}

#[test]
fn tiny_frames_for_a_client_that_never_reads_are_held_to_its_cap() {
    let server = quiet_server("1MiB");
    let _victim = RawClient::login(server.addr, "v");
    let mut sender = RawClient::login(server.addr, "sender");
    let mut healthy = RawClient::login(server.addr, "healthy");
    let before = server.rss();

    // 8-byte frames carrying an empty message for v, 4 MB of them: 500,000 queued 2-byte frames
    // if the cap counted payload bytes (~32 MiB of memory), ~10,700 at what they cost.
    let burst = frame(true, TEXT, b"v:", true).repeat(10_000);
    let sent = flood(&mut sender, &burst, 4_000_000);
    healthy.send_text("healthy:still here");
    assert_eq!(healthy.expect_text(), "still here");

    let growth = server.rss().saturating_sub(before);
    eprintln!("tiny frames: {sent} bytes sent, server RSS +{growth} bytes");
    assert!(sent >= 4_000_000, "the flood stopped early: {sent} bytes");
    assert!(
        // The 1 MiB cap, plus allowance for allocator slack.
        growth < 3 * MIB,
        "server RSS grew by {growth} bytes queueing tiny frames at a 1 MiB cap"
    );
}

#[test]
fn an_all_flood_at_receivers_that_never_read_is_held_to_the_caps() {
    let server = quiet_server("64KiB");
    let receivers: Vec<RawClient> = (0..300)
        .map(|i| RawClient::login(server.addr, &format!("r{i}")))
        .collect();
    let mut attacker = RawClient::login(server.addr, "attacker");
    let mut healthy = RawClient::login(server.addr, "healthy");
    let before = server.rss();

    // Empty broadcasts, 10 bytes each: one 64 KiB read holds 6,553 of them, each queued for
    // 302 connections. Before per-frame costs were counted, 300 such receivers held ~1 MiB each
    // against a 64 KiB cap.
    let burst = frame(true, TEXT, b"all:", true).repeat(6_553);
    let sent = flood(&mut attacker, &burst, 1 << 20);
    healthy.send_text("healthy:still here");
    // The healthy client's queue is full of the broadcasts too; its own message follows them
    // or was dropped with them, so look for it among what arrives.
    loop {
        let frame = healthy.read_frame();
        if frame.payload == b"still here" {
            break;
        }
        assert!(frame.payload.is_empty(), "unexpected {frame:?}");
    }
    let growth = server.rss().saturating_sub(before);
    eprintln!("all: flood: {sent} bytes sent, server RSS +{growth} bytes");
    assert!(
        growth < 302 * 64 * 1024 + 16 * MIB,
        "server RSS grew by {growth} bytes for an all: flood at 302 connections capped at 64 KiB"
    );
    drop(receivers);
}
