//! Framing over a real socket (RFC 6455 §5–§8): what the echo server answers for valid frames,
//! for every framing violation, for UTF-8, size limits, control frames and the closing
//! handshake.

mod common;
use common::*;

use std::io::Read;
use std::time::{Duration, Instant};

use wspush::Config;

/// Asserts the server fails the connection with `code` and `reason`, then closes TCP.
fn expect_failure(client: &mut RawClient, code: u16, reason: &str) {
    assert_eq!(client.expect_close(), (Some(code), reason.to_owned()));
    client.expect_eof();
}

/// Opens a fresh echo connection, sends `bytes` raw and asserts the failure.
fn assert_fails(server: &TestServer, bytes: &[u8], code: u16, reason: &str) {
    let mut client = RawClient::open(server.addr);
    client.send_raw(bytes);
    expect_failure(&mut client, code, reason);
}

/// A masked frame with its first byte's RSV bits set to `rsv` (0b001..=0b111).
fn frame_with_rsv(rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = frame(true, opcode, payload, true);
    bytes[0] |= rsv << 4;
    bytes
}

/// Just the header of a masked frame announcing `len` payload bytes, with a 64-bit length.
fn header_64(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut bytes = vec![(u8::from(fin) << 7) | opcode, 0x80 | 127];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&KEY);
    bytes
}

/// Reads exactly `n` bytes straight from the socket. Only valid while the client's own buffer
/// is empty, i.e. before any frame was read through it.
fn read_exact_raw(client: &mut RawClient, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    client
        .stream
        .read_exact(&mut bytes)
        .expect("read from server failed or timed out");
    bytes
}

fn echo_server() -> TestServer {
    TestServer::echo(quiet_config())
}

fn limited_echo_server(max_message_size: usize) -> TestServer {
    TestServer::echo(Config {
        max_message_size,
        ..quiet_config()
    })
}

// --- Data frames that must echo intact --------------------------------------------------

#[test]
fn echoes_unfragmented_text_and_binary() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_text("héllo ✓ 𝄞");
    assert_eq!(client.expect_text(), "héllo ✓ 𝄞");
    client.send_binary(&[0x00, 0xFF, 0x80, 0x7F]);
    assert_eq!(client.expect_binary(), vec![0x00, 0xFF, 0x80, 0x7F]);
    client.send_text("");
    assert_eq!(client.expect_text(), "");
}

#[test]
fn echoes_each_payload_length_encoding_with_minimal_headers() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    // (payload length, exact header the server must use for it: unmasked, FIN, binary)
    let cases: [(usize, Vec<u8>); 6] = [
        (0, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0x00, 0x7E]),
        (65535, vec![0x82, 126, 0xFF, 0xFF]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (200_000, {
            let mut h = vec![0x82, 127];
            h.extend_from_slice(&200_000u64.to_be_bytes());
            h
        }),
    ];
    for (len, header) in cases {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        client.send_binary(&payload);
        assert_eq!(
            read_exact_raw(&mut client, header.len()),
            header,
            "len {len}"
        );
        assert_eq!(read_exact_raw(&mut client, len), payload, "len {len}");
    }
}

#[test]
fn echoes_frame_split_byte_by_byte() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    let text = "split ✓ into single bytes ".repeat(6);
    // 16-bit length, so the extended length and mask key are cut too.
    assert!(text.len() > 125);
    for byte in frame(true, TEXT, text.as_bytes(), true) {
        client.send_raw(&[byte]);
    }
    assert_eq!(client.expect_text(), text);
}

#[test]
fn echoes_fragmented_message_as_one_message() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, b"frag");
    client.send_frame(false, CONTINUATION, b"");
    client.send_frame(false, CONTINUATION, b"men");
    client.send_frame(true, CONTINUATION, b"ted");
    let echoed = client.read_frame();
    assert_eq!(
        echoed,
        Frame {
            fin: true,
            opcode: TEXT,
            payload: b"fragmented".to_vec()
        }
    );
    client.send_frame(false, BINARY, &[1, 2]);
    client.send_frame(true, CONTINUATION, &[3]);
    assert_eq!(client.expect_binary(), vec![1, 2, 3]);
}

#[test]
fn echoes_code_point_split_across_fragments_intact() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    let text = "a€b𝄞c";
    let bytes = text.as_bytes();
    // Cut inside the 3-byte '€' and inside the 4-byte '𝄞'.
    client.send_frame(false, TEXT, &bytes[..2]);
    client.send_frame(false, CONTINUATION, &bytes[2..7]);
    client.send_frame(true, CONTINUATION, &bytes[7..]);
    assert_eq!(client.expect_text(), text);
}

// --- Masking, reserved bits and opcodes -------------------------------------------------

#[test]
fn rejects_unmasked_client_frame_with_1002() {
    let server = echo_server();
    assert_fails(
        &server,
        &frame(true, TEXT, b"hello", false),
        1002,
        "bad masking",
    );
}

#[test]
fn rejects_each_rsv_bit_with_1002() {
    let server = echo_server();
    for rsv in 1..=7 {
        assert_fails(
            &server,
            &frame_with_rsv(rsv, TEXT, b"hi"),
            1002,
            "reserved bits set",
        );
    }
}

#[test]
fn rejects_reserved_opcodes_with_1002() {
    let server = echo_server();
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        let mut client = RawClient::open(server.addr);
        client.send_frame(true, opcode, b"x");
        assert_eq!(
            client.expect_close(),
            (Some(1002), "reserved opcode".to_owned()),
            "opcode {opcode:#x}"
        );
        client.expect_eof();
    }
}

#[test]
fn rejects_64_bit_length_with_top_bit_set_with_1002() {
    let server = echo_server();
    assert_fails(
        &server,
        &header_64(true, BINARY, 1 << 63),
        1002,
        "invalid payload length",
    );
}

// --- Control frames ---------------------------------------------------------------------

#[test]
fn answers_ping_with_pong_carrying_the_same_payload() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    let max: Vec<u8> = (0..125).collect();
    for payload in [&b""[..], b"ping?", &max] {
        client.send_frame(true, PING, payload);
        assert_eq!(
            client.read_frame(),
            Frame {
                fin: true,
                opcode: PONG,
                payload: payload.to_vec()
            }
        );
    }
}

#[test]
fn ignores_unsolicited_pongs() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(true, PONG, b"unasked");
    client.send_frame(true, PONG, b"");
    client.send_text("after pongs");
    // The very next frame is the echo: nothing was sent for the pongs.
    assert_eq!(
        client.read_frame(),
        Frame {
            fin: true,
            opcode: TEXT,
            payload: b"after pongs".to_vec()
        }
    );
}

#[test]
fn answers_ping_between_fragments_and_still_delivers_whole_message() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, b"before ");
    client.send_frame(true, PING, b"mid");
    client.send_frame(false, CONTINUATION, b"and ");
    client.send_frame(true, PONG, b"ignored");
    client.send_frame(true, CONTINUATION, b"after");
    assert_eq!(
        client.read_frame(),
        Frame {
            fin: true,
            opcode: PONG,
            payload: b"mid".to_vec()
        }
    );
    assert_eq!(client.expect_text(), "before and after");
}

#[test]
fn rejects_control_frames_over_125_bytes_with_1002() {
    let server = echo_server();
    let long = [b'p'; 126];
    for opcode in [PING, PONG, CLOSE] {
        assert_fails(
            &server,
            &frame(true, opcode, &long, true),
            1002,
            "control frame too long",
        );
    }
}

#[test]
fn rejects_oversized_control_frame_from_its_first_two_bytes() {
    let server = echo_server();
    // Masked ping announcing a 16-bit length: no length, key or payload ever follows.
    assert_fails(&server, &[0x89, 0x80 | 126], 1002, "control frame too long");
}

#[test]
fn rejects_fragmented_ping_with_1002() {
    let server = echo_server();
    assert_fails(
        &server,
        &frame(false, PING, b"part", true),
        1002,
        "fragmented control frame",
    );
}

// --- Fragmentation rules ----------------------------------------------------------------

#[test]
fn rejects_continuation_without_a_started_message_with_1002() {
    let server = echo_server();
    for fin in [true, false] {
        assert_fails(
            &server,
            &frame(fin, CONTINUATION, b"orphan", true),
            1002,
            "continuation without a message",
        );
    }
    // Also right after a complete, unfragmented message.
    let mut client = RawClient::open(server.addr);
    client.send_text("complete");
    assert_eq!(client.expect_text(), "complete");
    client.send_frame(true, CONTINUATION, b"late");
    expect_failure(&mut client, 1002, "continuation without a message");
}

#[test]
fn rejects_new_data_frame_while_a_fragmented_message_is_open_with_1002() {
    let server = echo_server();
    for (first, second) in [
        (TEXT, TEXT),
        (TEXT, BINARY),
        (BINARY, TEXT),
        (BINARY, BINARY),
    ] {
        let mut bytes = frame(false, first, b"open", true);
        bytes.extend(frame(true, second, b"new", true));
        assert_fails(&server, &bytes, 1002, "expected a continuation frame");
    }
}

// --- UTF-8 ------------------------------------------------------------------------------

#[test]
fn rejects_invalid_utf8_text_with_1007() {
    let server = echo_server();
    for bad in [
        &b"\xFF"[..],
        b"abc\xC0\x80",        // overlong NUL
        b"\xED\xA0\x80",       // UTF-16 surrogate
        b"\xF4\x90\x80\x80",   // above U+10FFFF
        b"ok\xE2\x82",         // code point cut at the end of the message
        b"\xCE\xBA\x80 stray", // stray continuation byte
    ] {
        assert_fails(
            &server,
            &frame(true, TEXT, bad, true),
            1007,
            "invalid utf-8",
        );
    }
}

#[test]
fn echoes_invalid_utf8_in_binary_messages() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_binary(b"\xFF\xC0\x80");
    assert_eq!(client.expect_binary(), b"\xFF\xC0\x80".to_vec());
}

#[test]
fn rejects_invalid_utf8_split_across_fragments_with_1007() {
    let server = echo_server();
    // A '€' (E2 82 AC) broken by an ASCII byte at the start of the next fragment, and a '𝄞'
    // (F0 9D 84 9E) left unfinished at the end of the final fragment.
    for (first, last) in [
        (&b"price \xE2\x82"[..], &b"( oops"[..]),
        (b"abc", b"\xF0\x9D\x84"),
    ] {
        let mut bytes = frame(false, TEXT, first, true);
        bytes.extend(frame(true, CONTINUATION, last, true));
        assert_fails(&server, &bytes, 1007, "invalid utf-8");
    }
}

#[test]
fn fails_fast_on_invalid_utf8_before_the_frame_is_complete() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    let mut payload = b"valid start \xFF".to_vec();
    payload.resize(1000, b'x');
    let whole = frame(true, TEXT, &payload, true);
    // Header (2 + 2 + 4 bytes) plus the payload up to and including the invalid byte; the rest
    // of the frame is never sent.
    client.send_raw(&whole[..8 + 13]);
    expect_failure(&mut client, 1007, "invalid utf-8");
}

#[test]
fn fails_fast_on_invalid_utf8_in_an_unfinished_fragmented_message() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, b"first ");
    // The message is never finished: the bad fragment alone must fail it.
    client.send_frame(false, CONTINUATION, b"\xC3\x28");
    expect_failure(&mut client, 1007, "invalid utf-8");
}

// --- Message size -----------------------------------------------------------------------

#[test]
fn echoes_message_of_exactly_max_message_size() {
    let server = limited_echo_server(1000);
    let mut client = RawClient::open(server.addr);
    client.send_binary(&[7; 1000]);
    assert_eq!(client.expect_binary(), vec![7; 1000]);
    client.send_frame(false, TEXT, &[b'a'; 400]);
    client.send_frame(true, CONTINUATION, &[b'b'; 600]);
    assert_eq!(
        client.expect_text(),
        format!("{}{}", "a".repeat(400), "b".repeat(600))
    );
}

#[test]
fn rejects_single_frame_over_max_message_size_with_1009() {
    let server = limited_echo_server(1000);
    assert_fails(
        &server,
        &frame(true, BINARY, &[0; 1001], true),
        1009,
        "message too large",
    );
}

#[test]
fn rejects_fragments_summing_over_max_message_size_with_1009() {
    let server = limited_echo_server(1000);
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, &[b'a'; 600]);
    client.send_frame(true, PING, b"still fine");
    assert_eq!(client.read_frame().opcode, PONG);
    client.send_frame(true, CONTINUATION, &[b'b'; 401]);
    expect_failure(&mut client, 1009, "message too large");
}

#[test]
fn rejects_too_large_frame_from_its_header_alone_with_1009() {
    let server = limited_echo_server(1000);
    let mut client = RawClient::open(server.addr);
    // Announce 1 GiB and send nothing of it.
    client.send_raw(&header_64(true, BINARY, 1 << 30));
    expect_failure(&mut client, 1009, "message too large");
}

#[test]
fn does_not_count_control_frames_towards_message_size() {
    let server = limited_echo_server(100);
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, &[b'a'; 90]);
    client.send_frame(true, PING, &[b'p'; 125]);
    client.send_frame(true, CONTINUATION, &[b'b'; 10]);
    assert_eq!(client.read_frame().payload, vec![b'p'; 125]);
    assert_eq!(
        client.expect_text(),
        format!("{}{}", "a".repeat(90), "b".repeat(10))
    );
}

// --- Closing handshake ------------------------------------------------------------------

#[test]
fn echoes_valid_close_code_without_reason_then_closes_tcp() {
    let server = echo_server();
    for (code, reason) in [
        (1000, "bye ✓"),
        (1001, "going away"),
        (1003, ""),
        (1011, "oops"),
        (3000, "registered"),
        (4999, "private"),
    ] {
        let mut client = RawClient::open(server.addr);
        client.send_frame(true, CLOSE, &close_payload(code, reason));
        assert_eq!(
            client.read_frame(),
            Frame {
                fin: true,
                opcode: CLOSE,
                payload: code.to_be_bytes().to_vec()
            },
            "code {code}"
        );
        client.expect_eof();
    }
}

#[test]
fn echoes_empty_close_as_empty_close() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(true, CLOSE, b"");
    assert_eq!(
        client.read_frame(),
        Frame {
            fin: true,
            opcode: CLOSE,
            payload: Vec::new()
        }
    );
    client.expect_eof();
}

#[test]
fn answers_messages_sent_before_close_and_ignores_frames_after_it() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    let mut bytes = frame(true, TEXT, b"before", true);
    bytes.extend(frame(true, CLOSE, &close_payload(1000, ""), true));
    bytes.extend(frame(true, TEXT, b"after", true));
    bytes.extend(frame(true, PING, b"after", true));
    client.send_raw(&bytes);
    assert_eq!(client.expect_text(), "before");
    assert_eq!(
        client.read_frame(),
        Frame {
            fin: true,
            opcode: CLOSE,
            payload: vec![0x03, 0xE8]
        }
    );
    assert_eq!(
        client.try_read_frame(),
        None,
        "nothing may follow the close"
    );
}

#[test]
fn accepts_close_in_the_middle_of_a_fragmented_message() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_frame(false, TEXT, b"never ");
    client.send_frame(true, CLOSE, &close_payload(1001, ""));
    assert_eq!(client.expect_close(), (Some(1001), String::new()));
    client.expect_eof();
}

#[test]
fn rejects_one_byte_close_payload_with_1002() {
    let server = echo_server();
    assert_fails(
        &server,
        &frame(true, CLOSE, &[0x03], true),
        1002,
        "invalid close payload",
    );
}

#[test]
fn rejects_reserved_and_unsendable_close_codes_with_1002() {
    let server = echo_server();
    for code in [
        0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        let mut client = RawClient::open(server.addr);
        client.send_frame(true, CLOSE, &close_payload(code, ""));
        assert_eq!(
            client.expect_close(),
            (Some(1002), "invalid close code".to_owned()),
            "code {code}"
        );
        client.expect_eof();
    }
}

#[test]
fn rejects_close_reason_with_invalid_utf8_with_1002() {
    let server = echo_server();
    let mut payload = close_payload(1000, "bad ");
    payload.extend_from_slice(b"\xFF\xFE");
    assert_fails(
        &server,
        &frame(true, CLOSE, &payload, true),
        1002,
        "invalid close reason",
    );
}

#[test]
fn protocol_error_close_frame_is_exact_and_unmasked() {
    let server = echo_server();
    let mut client = RawClient::open(server.addr);
    client.send_raw(&frame(true, BINARY, b"x", false));
    let mut expected = vec![0x88, 2 + 11, 0x03, 0xEA];
    expected.extend_from_slice(b"bad masking");
    assert_eq!(read_exact_raw(&mut client, expected.len()), expected);
    client.expect_eof();
}

#[test]
fn cleans_up_a_peer_that_vanishes_without_a_close_frame() {
    let server = TestServer::push(quiet_config());
    let gone = RawClient::login(server.addr, "gone");
    let mut sender = RawClient::login(server.addr, "sender");
    drop(gone);
    // No event marks the moment the server notices the EOF. Each round sends to "gone" and then
    // to ourselves: our own message comes back after any error about "gone", so every round
    // ends with a known frame and never waits on an answer that might not come.
    let deadline = Instant::now() + WAIT;
    loop {
        sender.send_text("gone:x");
        sender.send_text("sender:marker");
        let first = sender.expect_text();
        if first == "error: uid gone is offline" {
            assert_eq!(sender.expect_text(), "marker");
            break;
        }
        assert_eq!(first, "marker");
        assert!(
            Instant::now() < deadline,
            "uid gone still bound after its socket was dropped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
