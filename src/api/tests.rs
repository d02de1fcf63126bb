//! The push API endpoint's phases over a scripted transport, with a settable clock: in-order
//! answers, requests that arrive with the client's FIN, `100 Continue`, the request timeout
//! (408) and idle close, and the drain at shutdown — without sockets or real time.

use super::*;
use crate::net::Fake;
use crate::{Config, Echo};

/// The endpoint, a socket-free hub, and the time.
struct Harness {
    api: Api<Fake>,
    hub: Hub<()>,
    handler: Echo,
    poll: mio::Poll,
    scratch: Vec<u8>,
    now: Duration,
}

impl Harness {
    fn new(config: ApiConfig) -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            api: Api::new(Tokens::of(1), None, local, config),
            hub: Hub::new(Config::timers_off(), 10),
            handler: Echo,
            poll: mio::Poll::new().unwrap(),
            scratch: vec![0; 4096],
            now: Duration::ZERO,
        }
    }

    fn connect(&mut self) -> (usize, Fake) {
        let fake = Fake::new();
        let key =
            self.api
                .conns
                .insert(ApiConn::new(fake.clone(), tick(self.now), self.api.limits));
        (key, fake)
    }

    /// The client sends `bytes` (and its FIN with them if `fin`); one loop iteration.
    fn send(&mut self, key: usize, fake: &Fake, bytes: &[u8], fin: bool) {
        fake.push_input(bytes);
        fake.0.borrow_mut().eof = fin;
        self.api.on_readiness(key, true, false);
        self.iterate();
    }

    /// One loop iteration at the current time: turn, sweep, flush.
    fn iterate(&mut self) {
        let mut cx = Cx {
            hub: &mut self.hub,
            handler: &mut self.handler,
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            now: self.now,
        };
        self.api.serve_ready(&mut cx);
        self.api.sweep_due(&mut cx);
        self.api.write_dirty(cx.registry, cx.now);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.iterate();
    }
}

fn text(fake: &Fake) -> String {
    String::from_utf8(fake.take_written()).unwrap()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[test]
fn pipelined_requests_are_answered_in_order_in_one_flush() {
    let mut harness = Harness::new(ApiConfig::default());
    let (key, fake) = harness.connect();
    let mut two = HEALTH.to_vec();
    two.extend_from_slice(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n");
    harness.send(key, &fake, &two, false);
    let written = text(&fake);
    let first = written.find("HTTP/1.1 200 OK").unwrap();
    let second = written.find("HTTP/1.1 404 Not Found").unwrap();
    assert!(first < second, "{written}");
    assert!(harness.api.conns.contains(key), "keep-alive");
}

#[test]
fn requests_that_arrive_with_the_fin_are_answered_then_the_connection_ends() {
    let mut harness = Harness::new(ApiConfig::default());
    let (key, fake) = harness.connect();
    harness.send(key, &fake, HEALTH, true);
    assert!(text(&fake).starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(!harness.api.conns.contains(key));
}

#[test]
fn continue_is_sent_once_the_head_is_complete() {
    let mut harness = Harness::new(ApiConfig::default());
    let (key, fake) = harness.connect();
    let head =
        b"POST /broadcast HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    harness.send(key, &fake, head, false);
    assert_eq!(text(&fake), "HTTP/1.1 100 Continue\r\n\r\n");
    harness.send(key, &fake, b"hi", false);
    assert!(text(&fake).starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_request_not_completed_in_time_gets_408_then_the_connection_closes() {
    let config = ApiConfig {
        timeout: Duration::from_millis(400),
        ..ApiConfig::default()
    };
    let mut harness = Harness::new(config);
    let (key, fake) = harness.connect();
    harness.send(
        key,
        &fake,
        b"POST /broadcast HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        false,
    );
    harness.advance(Duration::from_millis(399));
    assert_eq!(text(&fake), "");
    harness.advance(Duration::from_millis(101));
    let answer = text(&fake);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(fake.0.borrow().shut, "FIN after the 408");
    // The client never closes: dropped one timeout after the 408 went out.
    harness.advance(Duration::from_millis(300));
    assert!(harness.api.conns.contains(key));
    harness.advance(Duration::from_millis(200));
    assert!(!harness.api.conns.contains(key));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let config = ApiConfig {
        timeout: Duration::from_millis(400),
        ..ApiConfig::default()
    };
    let mut harness = Harness::new(config);
    let (key, fake) = harness.connect();
    harness.send(key, &fake, HEALTH, false);
    harness.advance(Duration::from_millis(300));
    assert!(
        harness.api.conns.contains(key),
        "the response reset the timer"
    );
    harness.advance(Duration::from_millis(200));
    assert!(!harness.api.conns.contains(key));
}

#[test]
fn drain_closes_idle_connections_and_ends_every_later_response_with_close() {
    let mut harness = Harness::new(ApiConfig::default());
    let (idle, _) = harness.connect();
    let (busy, busy_fake) = harness.connect();
    busy_fake.push_input(HEALTH);
    harness.api.on_readiness(busy, true, false);
    harness.api.drain(harness.poll.registry());
    assert!(!harness.api.conns.contains(idle));
    assert!(
        harness.api.conns.contains(busy),
        "its request is still to be answered"
    );
    assert!(!harness.api.is_idle());
    harness.iterate();
    let answer = text(&busy_fake);
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(busy_fake.0.borrow().shut);
    assert!(harness.api.is_idle());
}

#[test]
fn refusals_come_as_soon_as_the_head_is_complete_before_any_body() {
    let mut harness = Harness::new(ApiConfig {
        key: Some("k".into()),
        ..ApiConfig::default()
    });
    // No key, and the client would wait for 100 Continue before sending 1 MB: it gets 401
    // instead, and the connection closes without reading a body byte.
    let (key, fake) = harness.connect();
    let head = b"POST /broadcast HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n";
    harness.send(key, &fake, head, false);
    let answer = text(&fake);
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(fake.0.borrow().shut);

    // With the key but to a route that does not exist: 404 before the body.
    let (key, fake) = harness.connect();
    let head = b"POST /nowhere HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\nContent-Length: 5000\r\n\r\n";
    harness.send(key, &fake, head, false);
    assert!(text(&fake).starts_with("HTTP/1.1 404 Not Found\r\n"));
}

#[test]
fn a_request_trickled_a_byte_at_a_time_still_times_out_from_its_first_byte() {
    let config = ApiConfig {
        timeout: Duration::from_millis(400),
        ..ApiConfig::default()
    };
    let mut harness = Harness::new(config);
    let (key, fake) = harness.connect();
    // One byte every 50 ms: each would have reset an "idle" timer.
    for byte in b"POST /broadcast HTTP/1.1\r\n".iter().take(7) {
        harness.send(key, &fake, &[*byte], false);
        harness.advance(Duration::from_millis(50));
    }
    assert_eq!(text(&fake), "", "350 ms after the first byte");
    harness.advance(Duration::from_millis(50));
    assert!(text(&fake).starts_with("HTTP/1.1 408 "));
}

#[test]
fn a_head_request_refused_early_gets_no_body() {
    let mut harness = Harness::new(ApiConfig::default());
    let (key, fake) = harness.connect();
    harness.send(
        key,
        &fake,
        b"HEAD /send/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
        false,
    );
    let answer = text(&fake);
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "no body after the head: {answer}"
    );
}

#[test]
fn during_a_shutdown_a_delivery_gets_503_instead_of_100_continue() {
    let mut harness = Harness::new(ApiConfig::default());
    harness.hub.close_all(Duration::ZERO);
    let (key, fake) = harness.connect();
    let head = b"POST /send/a HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n";
    harness.send(key, &fake, head, false);
    let answer = text(&fake);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(!answer.contains("100 Continue"));
    assert!(answer.contains("\r\nRetry-After: 5\r\n"));
}
