//! Heartbeat, idle timeout and graceful shutdown, end to end over real sockets.
//!
//! Real time only gives lower bounds here: a timer may fire late on a loaded machine, never
//! early. So each test either waits (bounded by `WAIT`) for an expiry and checks it did not
//! come early, or keeps a connection busy under a timeout long enough that no stall outlasts
//! it. The exact timing (ping after the interval, idle close at the timeout, what resets
//! idleness) is unit-tested with a settable clock in `src/hub/tests.rs` and `src/ws/tests.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wspush::Config;

/// A ping interval short enough that a test sees many pings.
const PING_INTERVAL: Duration = Duration::from_millis(100);

/// An idle timeout that no stall between two frames of a busy client can outlast.
const LONG_IDLE: Duration = Duration::from_secs(3);

/// The server counts whole milliseconds: a timer may fire up to this much before the full
/// duration has passed on the test's clock.
const TICK: Duration = Duration::from_millis(1);

fn heartbeat_config(idle_timeout: Option<Duration>) -> Config {
    Config {
        ping_interval: Some(PING_INTERVAL),
        idle_timeout,
        ..quiet_config()
    }
}

/// Asserts at least `timeout` passed between `started` (before the connection was opened)
/// and now.
fn assert_not_before(started: Instant, timeout: Duration, what: &str) {
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout - TICK,
        "{what} after only {elapsed:?}, before {timeout:?}"
    );
}

#[test]
fn silent_connection_is_pinged_after_the_ping_interval() {
    // No idle timeout: the ping is the only thing that can come, however late.
    let server = TestServer::echo(heartbeat_config(None));
    let started = Instant::now();
    let mut client = RawClient::open(server.addr);
    let first = client.read_frame();
    assert_eq!((first.opcode, first.payload.len()), (PING, 0));
    assert_not_before(started, PING_INTERVAL, "pinged");
}

#[test]
fn silent_connection_is_closed_with_1001_after_the_idle_timeout() {
    // The server pings it all along; pings it sends are no sign of life from the client.
    let idle = Duration::from_millis(300);
    let server = TestServer::echo(heartbeat_config(Some(idle)));
    let started = Instant::now();
    let mut client = RawClient::open(server.addr);
    let (code, reason) = client.expect_close();
    assert_eq!((code, reason.as_str()), (Some(1001), "idle timeout"));
    assert_not_before(started, idle, "closed");
    client.expect_eof();
}

/// Opens a silent connection on a thread and returns when the server closed it as idle:
/// by then a sweep ran at least `idle` after the connection opened, and so past the idle
/// deadline of every connection opened before it.
fn idle_clock(server: &TestServer, idle: Duration) -> std::thread::JoinHandle<()> {
    let started = Instant::now();
    let mut silent = RawClient::open(server.addr);
    std::thread::spawn(move || {
        assert_eq!(
            silent.expect_close(),
            (Some(1001), "idle timeout".to_owned())
        );
        assert_not_before(started, idle, "silent connection closed");
    })
}

#[test]
fn connection_answering_pings_outlives_the_idle_timeout() {
    let server = TestServer::echo(heartbeat_config(Some(LONG_IDLE)));
    let mut answering = RawClient::open(server.addr);
    let clock = idle_clock(&server, LONG_IDLE);
    // Only pongs come from this client, one per ping; each has the whole idle timeout to
    // arrive in.
    while !clock.is_finished() {
        let frame = answering.read_frame();
        assert_eq!(frame.opcode, PING, "expected only pings, got {frame:?}");
        answering.send_frame(true, PONG, &frame.payload);
    }
    clock.join().unwrap();
    answering.send_text("alive");
    assert_eq!(answering.expect_text(), "alive");
}

#[test]
fn any_inbound_frame_counts_as_life() {
    let server = TestServer::echo(heartbeat_config(Some(LONG_IDLE)));
    let mut busy = RawClient::open(server.addr);
    let clock = idle_clock(&server, LONG_IDLE);
    // This client never answers a ping: it sends a message instead, paced by the pings, and
    // each has the whole idle timeout to arrive in.
    while !clock.is_finished() {
        let frame = busy.read_frame();
        assert_eq!(frame.opcode, PING, "expected only pings, got {frame:?}");
        busy.send_text("tick");
        assert_eq!(busy.expect_text(), "tick");
    }
    clock.join().unwrap();
    busy.send_text("still open");
    assert_eq!(busy.expect_text(), "still open");
}

#[test]
fn shutdown_sends_1001_to_every_client() {
    let mut server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    server.request_shutdown();
    for client in [&mut alice, &mut bob] {
        let (code, reason) = client.expect_close();
        assert_eq!(
            (code, reason.as_str()),
            (Some(1001), "server shutting down")
        );
        client.send_frame(true, CLOSE, &close_payload(1001, ""));
        client.expect_eof();
    }
    // Clients close their sockets after the closing handshake; the server then exits at once.
    drop((alice, bob));
    server
        .stop()
        .expect("run returns Ok after a graceful shutdown");
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    // Long timeouts: the exit must come from the client's close, not from a timer (a client
    // that sends its close frame and its FIN together must still be seen to have closed).
    let mut server = BinaryServer::start(&["--shutdown-timeout", "60s", "--close-timeout", "60s"]);
    let mut client = RawClient::login(server.addr, "alice");
    server.signal(libc::SIGTERM);
    let (code, _) = client.expect_close();
    assert_eq!(code, Some(1001));
    client.send_frame(true, CLOSE, &close_payload(1001, ""));
    client.expect_eof();
    drop(client);
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn sigint_exits_0_within_the_shutdown_timeout_even_if_clients_never_answer() {
    let mut server = BinaryServer::start(&["--shutdown-timeout", "300ms"]);
    let mut silent = RawClient::login(server.addr, "silent");
    server.signal(libc::SIGINT);
    assert_eq!(silent.expect_close().0, Some(1001));
    // The client neither answers nor closes; the server still exits, and cleanly.
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn a_worker_whose_supervisor_died_while_it_started_shuts_down() {
    // A worker restarted just before its supervisor was killed finds another parent when it
    // begins to watch; it must go by the supervisor's pid, which it was given, not by that
    // parent. Here the named supervisor (pid 1) was never the parent at all.
    let mut worker = BinaryServer::start_with_prefix(
        &["env", "WSPUSH_WORKER=0", "WSPUSH_WORKER_SUPERVISOR=1"],
        &["--shutdown-timeout", "60s"],
    );
    assert_eq!(worker.wait_exit(), Some(0));
    // The log's reader thread ends with the output, after the exit.
    let said = std::iter::from_fn(|| worker.log.recv_timeout(WAIT).ok())
        .any(|line| line.contains("the supervisor (pid 1) is gone; shutting down"));
    assert!(said, "the worker did not say why it stopped");
}
