//! Heartbeat, idle timeout and graceful shutdown, with short configured intervals.

mod common;

use std::time::Duration;

use common::*;
use wspush::Config;

fn heartbeat_config() -> Config {
    Config {
        ping_interval: Some(Duration::from_millis(100)),
        idle_timeout: Some(Duration::from_millis(450)),
        ..quiet_config()
    }
}

#[test]
fn silent_connection_is_pinged_then_closed_with_1001() {
    let server = TestServer::echo(heartbeat_config());
    let mut client = RawClient::open(server.addr);
    let first = client.read_frame();
    assert_eq!((first.opcode, first.payload.len()), (PING, 0));
    let (code, reason) = client.expect_close();
    assert_eq!((code, reason.as_str()), (Some(1001), "idle timeout"));
    client.expect_eof();
}

#[test]
fn connection_answering_pings_stays_open() {
    let server = TestServer::echo(heartbeat_config());
    let mut client = RawClient::open(server.addr);
    // Eight pings answered span 800 ms, well past the 450 ms idle timeout.
    for _ in 0..8 {
        let frame = client.read_frame();
        assert_eq!(frame.opcode, PING, "expected only pings, got {frame:?}");
        client.send_frame(true, PONG, &frame.payload);
    }
    client.send_text("alive");
    assert_eq!(client.expect_text(), "alive");
}

#[test]
fn any_inbound_frame_counts_as_life() {
    let server = TestServer::echo(Config {
        ping_interval: None,
        idle_timeout: Some(Duration::from_millis(300)),
        ..quiet_config()
    });
    let mut busy = RawClient::open(server.addr);
    let mut idle = RawClient::open(server.addr);
    // While the idle client times out, the busy one keeps talking and is never closed.
    let watcher = std::thread::spawn(move || {
        let (code, _) = idle.expect_close();
        code
    });
    let mut rounds = 0;
    while !watcher.is_finished() {
        busy.send_text("tick");
        assert_eq!(busy.expect_text(), "tick");
        rounds += 1;
        assert!(rounds < 1_000_000, "idle client was never closed");
    }
    assert_eq!(watcher.join().unwrap(), Some(1001));
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
