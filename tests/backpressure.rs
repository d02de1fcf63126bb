//! Slow consumers and backpressure: a client that does not read must not grow server memory
//! past its send-queue cap, must not delay anyone else, and (in echo mode) must lose nothing.

mod common;

use std::io::{ErrorKind, Write};

use common::*;
use wspush::{Config, SlowConsumerPolicy};

const MIB: u64 = 1 << 20;

#[test]
fn client_that_never_reads_keeps_server_memory_bounded_and_others_served() {
    let server = BinaryServer::start(&[
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
        "--max-send-buffer",
        "1MiB",
    ]);
    let _slow = RawClient::login(server.addr, "slow");
    let mut sender = RawClient::login(server.addr, "sender");
    let mut watcher = RawClient::login(server.addr, "watcher");
    let before = server.rss();

    // 50 MB at the client that never reads, in 64 KiB messages.
    let mut message = b"slow:".to_vec();
    message.resize(5 + 64 * 1024, b'x');
    let frame = frame(true, TEXT, &message, true);
    for _ in 0..800 {
        sender.send_raw(&frame);
    }
    // Everything sent before this was processed before it: the watcher hears promptly.
    sender.send_text("watcher:still here");
    assert_eq!(watcher.expect_text(), "still here");

    let growth = server.rss().saturating_sub(before);
    assert!(
        growth < 16 * MIB,
        "server RSS grew by {growth} bytes pushing 50 MB at a client that never reads"
    );
}

#[test]
fn slow_consumer_close_policy_closes_only_the_slow_client_with_1008() {
    let config = Config {
        max_send_buffer: 64 << 10,
        slow_consumer: SlowConsumerPolicy::Close,
        ..quiet_config()
    };
    let server = TestServer::push(config);
    let mut slow = RawClient::login(server.addr, "slow");
    let mut sender = RawClient::login(server.addr, "sender");
    let mut watcher = RawClient::login(server.addr, "watcher");

    let mut message = b"slow:".to_vec();
    message.resize(5 + 32 * 1024, b'y');
    let frame = frame(true, TEXT, &message, true);
    for _ in 0..600 {
        sender.send_raw(&frame);
    }
    sender.send_text("watcher:unaffected");
    assert_eq!(watcher.expect_text(), "unaffected");

    // The slow client finds whole messages, then the close frame, then the end of the stream.
    let (code, reason) = slow.expect_close();
    assert_eq!((code, reason.as_str()), (Some(1008), "slow consumer"));
    // The message that found the queue full is reported as dropped; once the slow client is
    // closed, it is offline.
    assert_eq!(
        sender.expect_text(),
        "error: uid slow is not keeping up: message dropped"
    );
    sender.send_text("slow:gone?");
    assert_eq!(sender.expect_text(), "error: uid slow is offline");
}

#[test]
fn echo_client_that_stops_reading_is_paused_not_dropped() {
    let server = BinaryServer::start(&[
        "--mode",
        "echo",
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
        "--max-send-buffer",
        "256KiB",
    ]);
    let mut client = RawClient::open(server.addr);
    let before = server.rss();

    // Write without reading until the socket pushes back: the server must stop reading.
    let frame = frame(true, BINARY, &[7u8; 16 * 1024], true);
    client.stream.set_nonblocking(true).unwrap();
    let mut sent_frames = 0u64;
    let mut partial = 0;
    'writing: loop {
        while partial < frame.len() {
            match client.stream.write(&frame[partial..]) {
                Ok(n) => partial += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break 'writing,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        partial = 0;
        sent_frames += 1;
        assert!(sent_frames < 100_000, "the server never pushed back");
    }
    let growth = server.rss().saturating_sub(before);
    assert!(growth < 8 * MIB, "server RSS grew by {growth} bytes");

    // Finish the cut frame, then every echo must come back, in order, none dropped.
    client.stream.set_nonblocking(false).unwrap();
    if partial > 0 {
        client.send_raw(&frame[partial..]);
        sent_frames += 1;
    }
    for _ in 0..sent_frames {
        assert_eq!(client.expect_binary().len(), 16 * 1024);
    }
}
