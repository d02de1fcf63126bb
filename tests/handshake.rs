//! The opening handshake over a real socket: what a client sees for valid requests, for every
//! kind of refusal, and at the connection, size and time limits.

mod common;
use common::*;

use std::time::{Duration, Instant};

use wspush::Config;

/// The exact `101` answer to `upgrade_request`, whose key is the RFC 6455 §1.3 sample.
const RFC_ACCEPT_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Sends `request` on a fresh connection and returns the status and full answer (head and body).
fn answer(server: &TestServer, request: &[u8]) -> (RawClient, u16, String) {
    let mut client = RawClient::connect(server.addr);
    client.send_raw(request);
    let (status, response) = client.read_http_response();
    (client, status, response)
}

/// Sends `request`, asserts it is refused with `status`, that the answer is a complete
/// plain-text error explaining `reason`, and that the server then closes the connection.
/// Returns the whole answer for further checks.
fn assert_refused(server: &TestServer, request: &[u8], status: u16, reason: &str) -> String {
    let (mut client, got, response) = answer(server, request);
    assert_eq!(got, status, "{response}");
    assert_error_answer(&response, status, reason);
    client.expect_eof();
    response
}

/// Checks the shape every HTTP error answer of the server has.
fn assert_error_answer(response: &str, status: u16, reason: &str) {
    let status_line = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    assert!(response.starts_with(&status_line), "{response}");
    assert!(
        response.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{response}"
    );
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    assert!(
        response.ends_with(&format!("\r\n\r\n{reason}\n")),
        "{response}"
    );
    assert!(
        !response.contains("Sec-WebSocket-Accept"),
        "a refusal must not accept: {response}"
    );
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        other => panic!("no reason phrase for {other} in these tests"),
    }
}

/// `upgrade_request("/")` with `from` replaced by `to` (exactly once).
fn request_with(from: &str, to: &str) -> String {
    let request = upgrade_request("/");
    assert_eq!(request.matches(from).count(), 1, "{from:?} in {request:?}");
    request.replace(from, to)
}

/// `upgrade_request("/")` with extra header lines inserted right after the request line.
fn request_with_extra_headers(extra: &str) -> String {
    request_with("HTTP/1.1\r\n", &format!("HTTP/1.1\r\n{extra}"))
}

// --- Accepted requests -------------------------------------------------------------------

#[test]
fn answers_rfc_sample_key_with_exact_101_response() {
    let server = TestServer::echo(quiet_config());
    let (mut client, status, response) = answer(&server, upgrade_request("/chat").as_bytes());
    assert_eq!(status, 101);
    assert_eq!(response, RFC_ACCEPT_RESPONSE);
    client.send_text("opened");
    assert_eq!(client.expect_text(), "opened");
}

#[test]
fn derives_accept_key_from_the_client_key() {
    let server = TestServer::echo(quiet_config());
    let key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let request = request_with("dGhlIHNhbXBsZSBub25jZQ==", key);
    let (_client, status, response) = answer(&server, request.as_bytes());
    assert_eq!(status, 101, "{response}");
    assert!(
        response.contains(&format!("\r\nSec-WebSocket-Accept: {expected}\r\n")),
        "{response}"
    );
}

#[test]
fn accepts_connection_token_lists_and_any_case() {
    let server = TestServer::echo(quiet_config());
    let all_other_case = upgrade_request("/")
        .replace("Connection: Upgrade", "connection: keep-alive, Upgrade")
        .replace("Upgrade: websocket", "UPGRADE: WebSocket")
        .replace("Host:", "host:")
        .replace("Sec-WebSocket-Key:", "sec-websocket-key:")
        .replace("Sec-WebSocket-Version:", "SEC-WEBSOCKET-VERSION:");
    let token_last = request_with("Connection: Upgrade", "Connection: upgrade , Keep-Alive");
    for request in [all_other_case, token_last] {
        let (mut client, status, response) = answer(&server, request.as_bytes());
        assert_eq!(status, 101, "{request}");
        assert_eq!(response, RFC_ACCEPT_RESPONSE);
        client.send_text("tokens");
        assert_eq!(client.expect_text(), "tokens");
    }
}

#[test]
fn keeps_frames_pipelined_behind_the_request() {
    let server = TestServer::echo(quiet_config());
    let mut client = RawClient::connect(server.addr);
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend(frame(true, TEXT, b"first", true));
    bytes.extend(frame(true, BINARY, &[0, 1, 2, 255], true));
    bytes.extend(frame(true, CLOSE, &close_payload(1000, "done"), true));
    client.send_raw(&bytes);
    let (status, response) = client.read_http_response();
    assert_eq!(status, 101);
    assert_eq!(response, RFC_ACCEPT_RESPONSE);
    assert_eq!(client.expect_text(), "first");
    assert_eq!(client.expect_binary(), vec![0, 1, 2, 255]);
    assert_eq!(client.expect_close(), (Some(1000), String::new()));
    client.expect_eof();
}

#[test]
fn accepts_request_split_byte_by_byte() {
    let server = TestServer::echo(quiet_config());
    let mut client = RawClient::connect(server.addr);
    for byte in upgrade_request("/split").bytes() {
        client.send_raw(&[byte]);
    }
    let (status, response) = client.read_http_response();
    assert_eq!(status, 101);
    assert_eq!(response, RFC_ACCEPT_RESPONSE);
    client.send_text("after a slow request");
    assert_eq!(client.expect_text(), "after a slow request");
}

#[test]
fn accepts_request_of_exactly_max_handshake_size() {
    let server = TestServer::echo(Config {
        max_handshake_size: 1024,
        ..quiet_config()
    });
    let base = request_with_extra_headers("X-Fill: \r\n").len();
    let request = request_with_extra_headers(&format!("X-Fill: {}\r\n", "a".repeat(1024 - base)));
    assert_eq!(request.len(), 1024);
    let (_client, status, response) = answer(&server, request.as_bytes());
    assert_eq!(status, 101, "{response}");
}

#[test]
fn accepts_request_with_exactly_64_headers() {
    let server = TestServer::echo(quiet_config());
    // `upgrade_request` has 5 headers.
    let extra: String = (0..59).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let request = request_with_extra_headers(&extra);
    let (_client, status, response) = answer(&server, request.as_bytes());
    assert_eq!(status, 101, "{response}");
}

// --- Refused requests: 400 ---------------------------------------------------------------

#[test]
fn refuses_missing_host_with_exact_400_answer() {
    let server = TestServer::echo(quiet_config());
    let request = request_with("Host: 127.0.0.1\r\n", "");
    let response = assert_refused(&server, request.as_bytes(), 400, "missing Host header");
    let body = "missing Host header\n";
    assert_eq!(
        response,
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
}

#[test]
fn refuses_missing_or_non_websocket_upgrade_with_400() {
    let server = TestServer::echo(quiet_config());
    for upgrade in ["", "Upgrade: h2c\r\n"] {
        let request = request_with("Upgrade: websocket\r\n", upgrade);
        assert_refused(
            &server,
            request.as_bytes(),
            400,
            "missing Upgrade: websocket header",
        );
    }
}

#[test]
fn refuses_missing_connection_upgrade_with_400() {
    let server = TestServer::echo(quiet_config());
    for connection in ["", "Connection: keep-alive\r\n", "Connection: upgraded\r\n"] {
        let request = request_with("Connection: Upgrade\r\n", connection);
        assert_refused(
            &server,
            request.as_bytes(),
            400,
            "missing Connection: Upgrade header",
        );
    }
}

#[test]
fn refuses_missing_websocket_key_with_400() {
    let server = TestServer::echo(quiet_config());
    let request = request_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_refused(
        &server,
        request.as_bytes(),
        400,
        "missing Sec-WebSocket-Key header",
    );
}

#[test]
fn refuses_websocket_key_that_is_not_16_bytes_of_base64_with_400() {
    let server = TestServer::echo(quiet_config());
    for key in [
        // 5 bytes.
        "c2hvcnQ=",
        // 17 bytes.
        "AQIDBAUGBwgJCgsMDQ4PEBE=",
        // Not base64 at all.
        "not a base64 key!!!!!!!!",
        "",
    ] {
        let request = request_with("dGhlIHNhbXBsZSBub25jZQ==", key);
        assert_refused(
            &server,
            request.as_bytes(),
            400,
            "Sec-WebSocket-Key is not 16 bytes of base64",
        );
    }
}

#[test]
fn refuses_missing_websocket_version_with_400() {
    let server = TestServer::echo(quiet_config());
    let request = request_with("Sec-WebSocket-Version: 13\r\n", "");
    assert_refused(
        &server,
        request.as_bytes(),
        400,
        "missing Sec-WebSocket-Version header",
    );
}

#[test]
fn refuses_http_1_0_with_400() {
    let server = TestServer::echo(quiet_config());
    let request = request_with("HTTP/1.1", "HTTP/1.0");
    assert_refused(&server, request.as_bytes(), 400, "HTTP/1.1 is required");
}

#[test]
fn refuses_malformed_http_with_400() {
    let server = TestServer::echo(quiet_config());
    for request in [
        "GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
        "this is not http\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    ] {
        assert_refused(&server, request.as_bytes(), 400, "malformed HTTP request");
    }
}

// --- Refused requests: 405, 426 ----------------------------------------------------------

#[test]
fn refuses_other_methods_with_405_and_allow_get() {
    let server = TestServer::echo(quiet_config());
    for method in ["POST", "PUT", "HEAD", "OPTIONS"] {
        let request = upgrade_request("/").replacen("GET", method, 1);
        let response = assert_refused(
            &server,
            request.as_bytes(),
            405,
            "only GET can open a WebSocket",
        );
        assert!(response.contains("\r\nAllow: GET\r\n"), "{response}");
    }
}

#[test]
fn refuses_other_websocket_versions_with_426_naming_13() {
    let server = TestServer::echo(quiet_config());
    for version in ["8", "12", "14", "13, 8"] {
        let request = request_with(
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Version: {version}"),
        );
        let response = assert_refused(
            &server,
            request.as_bytes(),
            426,
            "only WebSocket version 13 is supported",
        );
        assert!(
            response.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            "{response}"
        );
    }
}

// --- Limits: 431, 503, 408 ---------------------------------------------------------------

#[test]
fn refuses_request_over_default_8_kib_with_431() {
    let server = TestServer::echo(quiet_config());
    let request = request_with_extra_headers(&format!("X-Fill: {}\r\n", "a".repeat(9000)));
    assert_refused(
        &server,
        request.as_bytes(),
        431,
        "request headers too large",
    );
}

#[test]
fn refuses_request_one_byte_over_max_handshake_size_with_431() {
    let server = TestServer::echo(Config {
        max_handshake_size: 1024,
        ..quiet_config()
    });
    let base = request_with_extra_headers("X-Fill: \r\n").len();
    let request = request_with_extra_headers(&format!("X-Fill: {}\r\n", "a".repeat(1025 - base)));
    assert_eq!(request.len(), 1025);
    assert_refused(
        &server,
        request.as_bytes(),
        431,
        "request headers too large",
    );
}

#[test]
fn refuses_endless_request_head_with_431_before_it_ends() {
    let server = TestServer::echo(quiet_config());
    // A head that never ends: the server must answer once it has 8 KiB, without the blank line.
    let mut request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: ".to_vec();
    request.resize(8 * 1024 + 100, b'a');
    assert_refused(&server, &request, 431, "request headers too large");
}

#[test]
fn refuses_request_with_65_headers_with_431() {
    let server = TestServer::echo(quiet_config());
    let extra: String = (0..60).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let request = request_with_extra_headers(&extra);
    assert!(request.len() < 8 * 1024);
    assert_refused(
        &server,
        request.as_bytes(),
        431,
        "request headers too large",
    );
}

#[test]
fn refuses_connection_over_max_connections_with_503() {
    let server = TestServer::echo(Config {
        max_connections: Some(2),
        ..quiet_config()
    });
    let mut first = RawClient::open(server.addr);
    let mut second = RawClient::open(server.addr);
    assert_refused(
        &server,
        upgrade_request("/").as_bytes(),
        503,
        "connection limit reached",
    );
    // The connections holding the slots are unaffected.
    first.send_text("one");
    second.send_text("two");
    assert_eq!(first.expect_text(), "one");
    assert_eq!(second.expect_text(), "two");
}

#[test]
fn accepts_again_once_a_connection_slot_frees() {
    let server = TestServer::echo(Config {
        max_connections: Some(1),
        ..quiet_config()
    });
    let mut holder = RawClient::open(server.addr);
    assert_refused(
        &server,
        upgrade_request("/").as_bytes(),
        503,
        "connection limit reached",
    );
    holder.send_frame(true, CLOSE, &close_payload(1000, ""));
    assert_eq!(holder.expect_close(), (Some(1000), String::new()));
    holder.expect_eof();
    drop(holder);
    // The server frees the slot once it sees our side close too; there is no event to wait on,
    // so retry (bounded) until the handshake succeeds.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_client, status, response) = answer(&server, upgrade_request("/").as_bytes());
        if status == 101 {
            assert_eq!(response, RFC_ACCEPT_RESPONSE);
            break;
        }
        assert_error_answer(&response, 503, "connection limit reached");
        assert!(
            Instant::now() < deadline,
            "slot was never freed after the holder closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn times_out_an_unfinished_request_with_408() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::echo(Config {
        handshake_timeout: timeout,
        ..quiet_config()
    });
    let started = Instant::now();
    let mut client = RawClient::connect(server.addr);
    client.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let (status, response) = client.read_http_response();
    assert_eq!(status, 408, "{response}");
    assert_error_answer(&response, 408, "handshake timed out");
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "answered 408 after only {:?}",
        started.elapsed()
    );
    client.expect_eof();
}

#[test]
fn times_out_a_silent_connection_with_408() {
    let server = TestServer::echo(Config {
        handshake_timeout: Duration::from_millis(300),
        ..quiet_config()
    });
    let mut client = RawClient::connect(server.addr);
    let (status, response) = client.read_http_response();
    assert_eq!(status, 408, "{response}");
    assert_error_answer(&response, 408, "handshake timed out");
    client.expect_eof();
}

#[test]
fn handshake_timeout_does_not_affect_open_connections() {
    let server = TestServer::echo(Config {
        handshake_timeout: Duration::from_millis(100),
        ..quiet_config()
    });
    let mut client = RawClient::open(server.addr);
    // Outlive the handshake timeout, synchronising on a second connection's 408.
    let mut late = RawClient::connect(server.addr);
    assert_eq!(late.read_http_response().0, 408);
    client.send_text("still open");
    assert_eq!(client.expect_text(), "still open");
}

#[test]
fn binary_answers_the_first_offered_subprotocol_it_speaks() {
    let server = BinaryServer::start(&["--subprotocols", "chat.v1,chat.v2"]);
    let mut client = RawClient::connect(server.addr);
    let request = upgrade_request("/").replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: graphql-ws, chat.v2, chat.v1\r\n\r\n",
    );
    client.send_raw(request.as_bytes());
    let (status, head) = client.read_http_response();
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"),
        "{head}"
    );
}

#[test]
fn binary_refuses_a_subprotocol_that_is_not_a_token_at_start_up() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "off"])
        .args(["--subprotocols", "chat v1"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run wspush");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid configuration") && stderr.contains("\"chat v1\""),
        "{stderr}"
    );
}
