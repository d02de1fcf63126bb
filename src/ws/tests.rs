//! The WebSocket endpoint's read and write paths over a scripted transport, with a settable
//! clock: handshake answers (subprotocols, handler headers), dispatch, timers as a client sees
//! them, backpressure, and the closing sequence — without sockets or real time.

use std::net::SocketAddr;

use super::*;
use crate::hub::conn::READ_PAUSED;
use crate::net::Fake;
use crate::{Accept, CloseCode, ConnId, Context, Echo, Message, PushProtocol, Rejection};

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// The endpoint, a hub of fake transports, a handler, and the time.
struct Harness<H> {
    ws: WebSocket,
    hub: Hub<Fake>,
    handler: H,
    poll: mio::Poll,
    scratch: Vec<u8>,
    now: Duration,
}

impl<H: Handler> Harness<H> {
    fn new(config: Config, handler: H) -> Self {
        Self {
            ws: WebSocket::new(Tokens::of(0), None, &config),
            hub: Hub::new(config, 100),
            handler,
            poll: mio::Poll::new().unwrap(),
            scratch: vec![0; 4096],
            now: Duration::ZERO,
        }
    }

    /// A client connects; returns its slot and script.
    fn connect(&mut self) -> (usize, Fake) {
        let fake = Fake::new();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let key = self.hub.insert(fake.clone(), peer, false, self.now);
        (key, fake)
    }

    /// The client sends `bytes`; the poller reports the socket readable; one loop iteration.
    fn send(&mut self, key: usize, fake: &Fake, bytes: &[u8]) {
        fake.push_input(bytes);
        self.ws
            .on_readiness(&mut self.hub, key, true, false, false, self.now);
        self.iterate();
    }

    /// The client sends `bytes` and then its FIN; the poller reports both.
    fn send_with_fin(&mut self, key: usize, fake: &Fake, bytes: &[u8]) {
        fake.push_input(bytes);
        fake.0.borrow_mut().eof = true;
        self.ws
            .on_readiness(&mut self.hub, key, true, false, true, self.now);
        self.iterate();
    }

    /// One loop iteration at the current time: turn, sweep, flush, reap.
    fn iterate(&mut self) {
        let mut cx = Cx {
            hub: &mut self.hub,
            handler: &mut self.handler,
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            now: self.now,
        };
        self.ws.release_throttled(cx.hub, cx.now);
        self.ws.read_ready(&mut cx);
        self.ws.sweep_due(cx.hub, cx.now);
        cx.report_closes();
        self.ws.write_dirty(cx.hub, cx.now);
        cx.report_closes();
        self.ws.reap(cx.hub, cx.registry);
    }

    /// Lets `by` pass and runs an iteration.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.iterate();
    }

    /// Connects and completes the handshake with `extra` header lines; returns the answer.
    fn open(&mut self, extra: &str) -> (usize, Fake, String) {
        let (key, fake) = self.connect();
        self.send(key, &fake, format!("{UPGRADE}{extra}\r\n").as_bytes());
        let answer = String::from_utf8_lossy(&fake.take_written()).into_owned();
        (key, fake, answer)
    }
}

/// A masked client frame (zero mask key, so the payload is sent as is).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

/// A server text frame.
fn text(payload: &str) -> Vec<u8> {
    let mut out = vec![0x81, payload.len() as u8];
    out.extend_from_slice(payload.as_bytes());
    out
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn quiet() -> Config {
    Config::timers_off()
}

#[test]
fn handshake_login_and_direct_message_go_out_in_order() {
    let mut harness = Harness::new(quiet(), PushProtocol::new());
    let (key, fake, answer) = harness.open("");
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(!answer.contains("Sec-WebSocket-Protocol"));
    harness.send(key, &fake, &frame(1, b"alice"));
    assert_eq!(
        fake.take_written(),
        text("login success, your uid is alice")
    );
    harness.send(key, &fake, &frame(1, b"alice:hi"));
    assert_eq!(fake.take_written(), text("hi"));
}

#[test]
fn frames_pipelined_behind_the_request_follow_the_101() {
    let mut harness = Harness::new(quiet(), PushProtocol::new());
    let (key, fake) = harness.connect();
    let mut bytes = format!("{UPGRADE}\r\n").into_bytes();
    bytes.extend(frame(1, b"bob"));
    harness.send(key, &fake, &bytes);
    let written = fake.take_written();
    let (head, rest) =
        written.split_at(written.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(rest, text("login success, your uid is bob"));
}

#[test]
fn configured_subprotocol_is_chosen_by_the_clients_preference() {
    let config = Config {
        subprotocols: vec!["chat.v1".into(), "chat.v2".into()],
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (_, _, answer) = harness.open("Sec-WebSocket-Protocol: graphql-ws, chat.v2, chat.v1\r\n");
    assert!(
        answer.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"),
        "{answer}"
    );
    let (_, _, answer) = harness.open("Sec-WebSocket-Protocol: mqtt\r\n");
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(
        !answer.contains("Sec-WebSocket-Protocol"),
        "none matched: none answered"
    );
    let (_, _, answer) = harness.open("");
    assert!(
        !answer.contains("Sec-WebSocket-Protocol"),
        "none requested: none answered"
    );
}

/// Picks `stomp` when offered, adds a header, and (for `/bad`) answers something it may not;
/// remembers the closes it hears of.
#[derive(Default)]
struct Shaper {
    closes: Vec<(ConnId, CloseCode)>,
}

impl Handler for Shaper {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &crate::Request<'_>,
    ) -> Result<Accept, Rejection> {
        ctx.send(conn, "welcome");
        let accept = Accept::default().header("X-Node", "n1");
        Ok(match request.path() {
            "/bad" => accept.subprotocol("never-offered"),
            _ if request.subprotocols().any(|p| p == "stomp") => accept.subprotocol("stomp"),
            _ => accept,
        })
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, close: &crate::CloseInfo) {
        self.closes.push((conn, close.code));
    }
}

#[test]
fn on_open_shapes_the_answer_and_its_messages_follow_it() {
    let mut harness = Harness::new(quiet(), Shaper::default());
    let (key, fake) = harness.connect();
    let request = format!("{UPGRADE}Sec-WebSocket-Protocol: mqtt, stomp\r\n\r\n");
    harness.send(key, &fake, request.as_bytes());
    let written = fake.take_written();
    let end = written.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, rest) = (String::from_utf8_lossy(&written[..end]), &written[end..]);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Protocol: stomp"), "{head}");
    assert!(head.contains("\r\nX-Node: n1"), "{head}");
    assert_eq!(rest, text("welcome"));
}

#[test]
fn a_subprotocol_the_client_did_not_offer_is_refused_with_500_and_reported_closed() {
    let mut harness = Harness::new(quiet(), Shaper::default());
    let (key, fake) = harness.connect();
    let request = UPGRADE.replacen("GET / ", "GET /bad ", 1) + "\r\n";
    harness.send(key, &fake, request.as_bytes());
    let written = String::from_utf8(fake.take_written()).unwrap();
    assert!(written.starts_with("HTTP/1.1 500 "), "{written}");
    assert!(
        !written.contains("welcome"),
        "nothing sent in on_open leaks out"
    );
    assert_eq!(crate::hub::Actions::open_count(&harness.hub), 0);
    // `on_open` said Ok, so the handler hears that the connection ended.
    let id = harness.hub.id_of(key);
    assert_eq!(harness.handler.closes, [(id, CloseCode::INTERNAL_ERROR)]);
    assert!(fake.0.borrow().shut);
}

#[test]
fn silent_client_sees_pings_then_close_1001_then_fin() {
    let config = Config {
        ping_interval: Some(ms(100)),
        idle_timeout: Some(ms(450)),
        close_timeout: ms(1000),
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    harness.advance(ms(100));
    assert_eq!(fake.take_written(), b"\x89\x00");
    harness.advance(ms(100));
    assert_eq!(fake.take_written(), b"\x89\x00");
    harness.advance(ms(250));
    let mut close = vec![0x88, 14, 0x03, 0xe9];
    close.extend_from_slice(b"idle timeout");
    assert_eq!(fake.take_written(), close);
    assert!(fake.0.borrow().shut, "FIN after the close frame");
    assert_eq!(harness.hub.conns[key].state, State::Draining);
    // The client never closes: dropped at the first sweep after the close timeout (sweeps run
    // a quarter of the shortest timeout apart, here 25 ms).
    harness.advance(ms(999));
    assert!(harness.hub.conns.contains(key));
    harness.advance(ms(25));
    assert!(!harness.hub.conns.contains(key));
}

#[test]
fn answering_pings_keeps_a_connection_open_past_the_idle_timeout() {
    let config = Config {
        ping_interval: Some(ms(100)),
        idle_timeout: Some(ms(450)),
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    for _ in 0..20 {
        harness.advance(ms(100));
        assert_eq!(fake.take_written(), b"\x89\x00");
        harness.send(key, &fake, &frame(0xA, b""));
    }
    harness.send(key, &fake, &frame(1, b"alive"));
    assert_eq!(fake.take_written(), text("alive"));
}

#[test]
fn peer_close_is_echoed_then_fin_then_dropped_at_eof() {
    let mut harness = Harness::new(quiet(), Echo);
    let (key, fake, _) = harness.open("");
    harness.send(key, &fake, &frame(8, &1000u16.to_be_bytes()));
    assert_eq!(fake.take_written(), b"\x88\x02\x03\xe8");
    assert!(fake.0.borrow().shut);
    fake.0.borrow_mut().eof = true;
    harness.send(key, &fake, b"");
    assert!(!harness.hub.conns.contains(key));
}

#[test]
fn protocol_error_closes_with_its_code() {
    let mut harness = Harness::new(quiet(), Echo);
    let (key, fake, _) = harness.open("");
    // An unmasked client frame: 1002.
    harness.send(key, &fake, b"\x81\x02hi");
    let written = fake.take_written();
    assert_eq!(written[0], 0x88, "a close frame: {written:?}");
    assert_eq!(
        u16::from_be_bytes([written[2], written[3]]),
        CloseCode::PROTOCOL_ERROR.0
    );
    assert_eq!(
        harness.hub.closed.len(),
        0,
        "reported to the handler already"
    );
}

#[test]
fn a_client_that_does_not_read_is_not_read_until_its_queue_drains() {
    // Ten 100-byte echoes (102-byte frames) fill the cap, counted at what they hold.
    let config = Config {
        max_send_buffer: 10 * (102 + crate::hub::outbox::FRAME_OVERHEAD),
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    fake.0.borrow_mut().room = 0;
    let payload = [b'x'; 100];
    // Six echoes put the queue over half the cap.
    let mut burst = Vec::new();
    for _ in 0..10 {
        burst.extend(frame(2, &payload));
    }
    harness.send(key, &fake, &burst[..6 * 106]);
    harness
        .ws
        .on_readiness(&mut harness.hub, key, false, false, false, harness.now);
    harness.send(key, &fake, &burst[6 * 106..]);
    assert!(harness.hub.conns[key].has(READ_PAUSED));
    assert_eq!(
        fake.0.borrow().inbound.len(),
        4 * 106,
        "the rest stays in the socket"
    );
    // The client reads everything; the socket is writable again.
    fake.0.borrow_mut().room = usize::MAX;
    harness
        .ws
        .on_readiness(&mut harness.hub, key, false, true, false, harness.now);
    harness.iterate();
    harness.iterate();
    assert!(!harness.hub.conns[key].has(READ_PAUSED));
    assert!(fake.0.borrow().inbound.is_empty());
    assert_eq!(fake.take_written().len(), 10 * 102);
}

#[test]
fn a_refused_login_does_not_restart_the_login_timeout() {
    let config = Config {
        login_timeout: Some(ms(300)),
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    let (key, fake, _) = harness.open("");
    harness.advance(ms(200));
    harness.send(key, &fake, &frame(1, b"all"));
    let refusal = String::from_utf8_lossy(&fake.take_written()).into_owned();
    assert!(refusal.contains("error: invalid uid"), "{refusal}");
    // 300 ms after the open, not after the refusal.
    harness.advance(ms(100));
    let mut close = vec![0x88, 15, 0x03, 0xf0];
    close.extend_from_slice(b"login timeout");
    assert_eq!(fake.take_written(), close);
}

#[test]
fn a_close_frame_sent_with_the_fin_still_gets_its_echo() {
    let mut harness = Harness::new(quiet(), Echo);
    let (key, fake, _) = harness.open("");
    harness.send_with_fin(key, &fake, &frame(8, &1000u16.to_be_bytes()));
    assert_eq!(fake.take_written(), b"\x88\x02\x03\xe8");
    assert!(
        !harness.hub.conns.contains(key),
        "dropped once the echo is out"
    );
}

#[test]
fn replies_queued_before_the_fin_are_written_before_the_drop() {
    let mut harness = Harness::new(quiet(), Echo);
    let (key, fake, _) = harness.open("");
    harness.send_with_fin(key, &fake, &frame(1, b"last words"));
    assert_eq!(fake.take_written(), text("last words"));
    assert!(!harness.hub.conns.contains(key));
    assert!(!fake.0.borrow().shut, "the peer is gone: no FIN needed");
}

#[test]
fn a_slow_reader_that_keeps_taking_bytes_is_not_idle() {
    let config = Config {
        idle_timeout: Some(ms(1000)),
        max_send_buffer: 1 << 20,
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    let (key, fake, _) = harness.open("");
    harness.send(key, &fake, &frame(1, b"slow"));
    fake.take_written();
    let id = harness.hub.id_of(key);
    // The client never sends again but keeps reading a little every 200 ms.
    for _ in 0..20 {
        fake.0.borrow_mut().room = 0;
        let payload = "x".repeat(100);
        crate::hub::Actions::send(&mut harness.hub, id, Message::Text(&payload), harness.now);
        harness.iterate();
        fake.0.borrow_mut().room = 50;
        harness
            .ws
            .on_readiness(&mut harness.hub, key, false, true, false, harness.now);
        harness.advance(ms(200));
    }
    assert_eq!(
        harness.hub.conns[key].state,
        State::Open,
        "4 s of progress, never idle"
    );
}

#[test]
fn a_sender_is_told_a_recipient_is_not_keeping_up_rather_than_offline() {
    let config = Config {
        max_send_buffer: 200,
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    let (slow, slow_fake, _) = harness.open("");
    harness.send(slow, &slow_fake, &frame(1, b"slow"));
    slow_fake.0.borrow_mut().room = 0;
    let (sender, sender_fake, _) = harness.open("");
    harness.send(sender, &sender_fake, &frame(1, b"sender"));
    sender_fake.take_written();
    harness.send(sender, &sender_fake, &frame(1, b"slow:first"));
    assert_eq!(sender_fake.take_written(), b"", "queued for slow: no reply");
    harness.send(sender, &sender_fake, &frame(1, b"slow:second"));
    assert_eq!(
        sender_fake.take_written(),
        text("error: uid slow is not keeping up: message dropped")
    );
    harness.send(sender, &sender_fake, &frame(1, b"nobody:x"));
    assert_eq!(
        sender_fake.take_written(),
        text("error: uid nobody is offline")
    );
}

#[test]
fn a_connection_gets_its_message_budget_per_turn_and_the_rest_later_in_order() {
    let config = Config {
        max_messages_per_turn: 3,
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    let mut burst = Vec::new();
    for i in 0..8u8 {
        burst.extend(frame(1, &[b'a' + i]));
    }
    harness.send(key, &fake, &burst);
    let echoes = |fake: &Fake| {
        fake.take_written()
            .chunks(3)
            .map(|f| f[2] as char)
            .collect::<String>()
    };
    assert_eq!(echoes(&fake), "abc", "one turn's budget");
    assert!(harness.ws.has_work_for_tests(), "the rest is pending");
    harness.iterate();
    assert_eq!(echoes(&fake), "def");
    harness.iterate();
    assert_eq!(echoes(&fake), "gh");
    // Nothing was lost from the socket meanwhile: the next bytes follow.
    harness.send(key, &fake, &frame(1, b"i"));
    assert_eq!(echoes(&fake), "i");
}

#[test]
fn frames_pipelined_behind_the_handshake_respect_the_budget() {
    let config = Config {
        max_messages_per_turn: 2,
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake) = harness.connect();
    let mut bytes = format!("{UPGRADE}\r\n").into_bytes();
    for payload in [b"1", b"2", b"3"] {
        bytes.extend(frame(1, payload));
    }
    harness.send(key, &fake, &bytes);
    let written = fake.take_written();
    let end = written.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&written[end..], [text("1"), text("2")].concat());
    harness.iterate();
    assert_eq!(fake.take_written(), text("3"));
}

impl WebSocket {
    fn has_work_for_tests(&self) -> bool {
        !self.ready.is_empty()
    }
}

#[test]
fn a_client_over_its_message_rate_is_closed_with_1008_and_counted() {
    let config = Config {
        client_rate: Some(10),
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    // A burst of twice the rate goes through...
    for _ in 0..20 {
        harness.send(key, &fake, &frame(1, b"x"));
    }
    assert_eq!(fake.take_written(), text("x").repeat(20));
    // ...and a second later ten more.
    harness.advance(ms(1000));
    for _ in 0..10 {
        harness.send(key, &fake, &frame(1, b"y"));
    }
    assert_eq!(fake.take_written(), text("y").repeat(10));
    // The next one is over.
    harness.send(key, &fake, &frame(1, b"z"));
    let written = fake.take_written();
    assert_eq!(&written[..4], b"\x88\x15\x03\xf0", "close 1008");
    assert!(written.ends_with(b"rate limit exceeded"));
    assert_eq!(harness.hub.stats.rate_limited, 1);
}

#[test]
fn quiet_clients_hold_no_rate_state() {
    let config = Config {
        client_rate: Some(10),
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    harness.send(key, &fake, &frame(1, b"x"));
    assert!(harness.hub.rates_held_for_tests() == 1);
    // Two seconds later the bucket would be full again: the sweep drops it.
    harness.advance(ms(2100));
    assert_eq!(harness.hub.rates_held_for_tests(), 0);
}

#[test]
fn the_message_budget_spans_every_read_of_a_turn() {
    let config = Config {
        max_messages_per_turn: 5,
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, _) = harness.open("");
    // Two 2,048-byte frames per 4,096-byte read: a budget counted per read would let all ten
    // through in one turn.
    let mut burst = Vec::new();
    for _ in 0..10 {
        burst.extend([0x82, 0x80 | 126, 0x07, 0xf8, 0, 0, 0, 0]);
        burst.extend([b'x'; 2040]);
    }
    harness.send(key, &fake, &burst);
    let echo_len = 4 + 2040;
    assert_eq!(fake.take_written().len(), 5 * echo_len);
    harness.iterate();
    assert_eq!(fake.take_written().len(), 5 * echo_len);
}

#[test]
fn a_connection_gets_its_delivery_budget_per_turn_and_the_rest_after_the_flush() {
    let config = Config {
        max_deliveries_per_turn: 5,
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    let mut receivers = Vec::new();
    for i in 0..3 {
        let (key, fake, _) = harness.open("");
        harness.send(key, &fake, &frame(1, format!("r{i}").as_bytes()));
        fake.take_written();
        receivers.push(fake);
    }
    let (sender, sender_fake, _) = harness.open("");
    harness.send(sender, &sender_fake, &frame(1, b"sender"));
    sender_fake.take_written();
    // Four broadcasts to four connections: the second passes the budget of five deliveries
    // and is the last one this turn.
    let burst: Vec<u8> = (0..4).flat_map(|_| frame(1, b"all:b")).collect();
    let before = harness.hub.stats.messages_out;
    harness.send(sender, &sender_fake, &burst);
    assert_eq!(receivers[0].take_written(), text("b").repeat(2));
    harness.iterate();
    assert_eq!(receivers[0].take_written(), text("b").repeat(2));
    assert_eq!(harness.hub.stats.messages_out - before, 16);
}

#[test]
fn a_peer_that_goes_on_sending_after_the_close_is_dropped_after_about_a_mebibyte() {
    let mut harness = Harness::new(quiet(), Echo);
    let (key, fake, _) = harness.open("");
    // Closed by the server (a message over the limit would do the same); the peer never
    // answers the close and keeps sending.
    harness
        .hub
        .close(key, CloseCode::POLICY, "bye", harness.now);
    harness.iterate();
    let junk = vec![0u8; 4096];
    let mut sent = 0;
    while harness.hub.conns.contains(key) && sent < 4 << 20 {
        harness.send(key, &fake, &junk);
        sent += junk.len();
    }
    assert!(
        !harness.hub.conns.contains(key),
        "still open after {sent} bytes"
    );
    assert!(
        sent <= (1 << 20) + junk.len(),
        "dropped only after {sent} bytes"
    );
}

#[test]
fn a_client_over_its_fanout_rate_is_read_later_and_loses_nothing() {
    let config = Config {
        client_fanout_rate: Some(4),
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    let (receiver, receiver_fake, _) = harness.open("");
    harness.send(receiver, &receiver_fake, &frame(1, b"r"));
    let (other, other_fake, _) = harness.open("");
    harness.send(other, &other_fake, &frame(1, b"o"));
    let (sender, sender_fake, _) = harness.open("");
    harness.send(sender, &sender_fake, &frame(1, b"s"));
    receiver_fake.take_written();
    // Each broadcast reaches three connections: 2 deliveries beyond its first, against an
    // allowance of 8 (twice the rate), 4 more per second.
    let burst: Vec<u8> = (0..8).flat_map(|_| frame(1, b"all:b")).collect();
    harness.send(sender, &sender_fake, &burst);
    assert_eq!(receiver_fake.take_written(), text("b").repeat(4));
    harness.iterate();
    assert_eq!(receiver_fake.take_written(), b"", "held back while in debt");
    assert!(
        !harness.ws.has_work_for_tests(),
        "waiting costs no loop iterations"
    );
    let due = harness.ws.throttled.peek().map(|entry| entry.0 .0);
    assert!(due.is_some_and(|due| due > harness.now), "{due:?}");
    // A quarter of a second makes the allowance positive: the next broadcast goes.
    harness.advance(ms(251));
    assert_eq!(receiver_fake.take_written(), text("b"));
    harness.advance(ms(2000));
    assert_eq!(receiver_fake.take_written(), text("b").repeat(3));
    assert_eq!(harness.hub.stats.closes.len(), 0, "nobody closed");
}

#[test]
fn a_client_held_back_for_its_fanout_is_not_closed_as_idle() {
    let config = Config {
        client_fanout_rate: Some(1),
        idle_timeout: Some(ms(10_000)),
        ..quiet()
    };
    let mut harness = Harness::new(config, PushProtocol::new());
    for i in 0..30 {
        let (key, fake, _) = harness.open("");
        harness.send(key, &fake, &frame(1, format!("r{i}").as_bytes()));
    }
    let (sender, sender_fake, _) = harness.open("");
    harness.send(sender, &sender_fake, &frame(1, b"s"));
    // 30 deliveries beyond the first against a rate of 1: half a minute of debt.
    harness.send(sender, &sender_fake, &frame(1, b"all:b"));
    for _ in 0..15 {
        // The client keeps sending; it is held back, and alive.
        harness.now += ms(1000);
        harness.send(sender, &sender_fake, &frame(1, b"r0:hi"));
    }
    assert!(harness.hub.conns.contains(sender));
    assert_eq!(
        harness.hub.conns[sender].state,
        crate::hub::conn::State::Open
    );
}

#[test]
fn inflating_counts_against_the_turns_message_budget() {
    let config = Config {
        max_messages_per_turn: 10,
        ..quiet()
    };
    let mut harness = Harness::new(config, Echo);
    let (key, fake, answer) = harness.open("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    assert!(answer.contains("permessage-deflate"), "{answer}");
    // Eight compressed messages of a few hundred bytes, each inflating to 128 KiB: two more
    // messages' worth of budget each, so four fit in a turn of ten instead of ten.
    let mut compressed = Vec::new();
    crate::protocol::deflate::Deflater::new().compress(15, &vec![0u8; 128 << 10], &mut compressed);
    let mut burst = Vec::new();
    for _ in 0..8 {
        let mut frame = crate::protocol::encode_frame(
            crate::protocol::OpCode::Binary,
            &compressed,
            Some([0; 4]),
        )
        .to_vec();
        frame[0] |= 0x40;
        burst.extend(frame);
    }
    harness.send(key, &fake, &burst);
    assert_eq!(harness.hub.stats.messages_in, 4, "one turn's budget");
    harness.iterate();
    assert_eq!(harness.hub.stats.messages_in, 8);
    let echoed = fake.take_written();
    assert!(
        echoed.len() < 8 * 1024,
        "echoed compressed: {} B",
        echoed.len()
    );
}
