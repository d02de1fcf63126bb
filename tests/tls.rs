//! wss: the server's TLS sessions against an independent TLS stack (rustls's client, and
//! tungstenite over it), with the committed test certificates. Handshakes with ECDSA and RSA,
//! messages in records split every way, backpressure, the close sequence, resumption, and what
//! the server does with clients that are not TLS at all or stall in the handshake.

mod common;
use common::tls::{self, client_config, connect, files, peer_subject, raw};
use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::Message;
use wspush::Config;

fn tls_config(name: &str) -> Config {
    Config {
        tls: Some(files(name)),
        ..quiet_config()
    }
}

/// The push protocol over wss with `name`'s certificate, and its push API.
fn push_server(name: &str) -> TestServer {
    TestServer::push(Config {
        api: Some(wspush::ApiConfig::default()),
        ..tls_config(name)
    })
}

fn login(addr: SocketAddr, uid: &str) -> tls::TlsClient {
    let mut ws = connect(addr, "/");
    ws.send(Message::text(uid)).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::text(format!("login success, your uid is {uid}"))
    );
    ws
}

fn stats(server: &TestServer) -> serde_json::Value {
    http::Http::connect(server.api.unwrap())
        .request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .json()
}

/// Polls `/stats` until `ready` holds (bounded by `WAIT`).
fn wait_for_stats(
    server: &TestServer,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = stats(server);
        if ready(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never got there: {stats}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn wss_clients_log_in_and_reach_each_other_with_ecdsa_and_rsa_certificates() {
    for name in ["ecdsa", "rsa"] {
        let server = push_server(name);
        let mut alice = login(server.addr, "alice");
        let mut bob = login(server.addr, "bob");
        alice.send(Message::text("bob:hello over TLS")).unwrap();
        assert_eq!(bob.read().unwrap(), Message::text("hello over TLS"));
        // Larger than a TLS record both ways: several records per message.
        let big = "x".repeat(100_000);
        bob.send(Message::text(format!("alice:{big}"))).unwrap();
        assert_eq!(alice.read().unwrap(), Message::text(big));
        let stats = stats(&server);
        assert_eq!(stats["tls"]["full_handshakes"], 2, "{name}: {stats}");
        assert_eq!(stats["tls"]["errors"], 0, "{name}: {stats}");
    }
}

#[test]
fn the_api_pushes_to_wss_clients() {
    let server = push_server("ecdsa");
    let mut carol = login(server.addr, "carol");
    let response = http::Http::connect(server.api.unwrap())
        .request("POST /send/carol HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(carol.read().unwrap(), Message::text("hello"));
}

#[test]
fn records_and_segments_split_anywhere_are_reassembled() {
    let server = TestServer::echo(tls_config("ecdsa"));
    let mut stream = raw(server.addr, client_config());
    // The upgrade request one byte per TLS record.
    for byte in upgrade_request("/").as_bytes() {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        stream.flush().unwrap();
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked text frame in one record, whose ciphertext crosses the network one byte per
    // TCP segment: the server holds partial records until they are whole.
    let payload = "split records".repeat(100);
    let frame = frame(true, TEXT, payload.as_bytes(), true);
    stream.conn.writer().write_all(&frame).unwrap();
    let mut ciphertext = Vec::new();
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut ciphertext).unwrap();
    }
    for byte in &ciphertext {
        stream.sock.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let mut echoed = vec![0u8; 4 + payload.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed[..2], &[0x81, 126]);
    assert_eq!(&echoed[4..], payload.as_bytes());
}

#[test]
fn a_reader_that_falls_behind_gets_everything_in_order_once_it_reads() {
    // Echo 8 MiB to a client that reads nothing until it has sent it all: the server's socket
    // fills, ciphertext waits, reading pauses, and then it all arrives, in order.
    let server = TestServer::echo(Config {
        max_send_buffer: 4 << 20,
        ..tls_config("ecdsa")
    });
    let mut ws = connect(server.addr, "/");
    let messages = 128;
    let writer = std::thread::spawn({
        let mut ws_writer = ws;
        move || {
            for i in 0..messages {
                let body = format!("{i:08}").repeat(8 << 10);
                ws_writer.send(Message::text(body)).unwrap();
            }
            ws_writer
        }
    });
    ws = writer.join().unwrap();
    for i in 0..messages {
        let Message::Text(text) = ws.read().unwrap() else {
            panic!("a text message")
        };
        assert_eq!(text.len(), 64 << 10);
        assert!(
            text.starts_with(&format!("{i:08}")),
            "message {i} out of order"
        );
    }
}

#[test]
fn a_close_is_answered_then_close_notify_then_end_of_stream() {
    let server = TestServer::echo(tls_config("ecdsa"));
    let mut stream = raw(server.addr, client_config());
    stream.write_all(upgrade_request("/").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    stream
        .write_all(&frame(true, CLOSE, &close_payload(1000, "bye"), true))
        .unwrap();
    let mut rest = Vec::new();
    // Ok(0) (not UnexpectedEof): the server's close_notify came before its FIN.
    stream.read_to_end(&mut rest).expect("a clean TLS close");
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xe8]);
}

#[test]
fn a_second_connection_resumes_the_first_session() {
    let server = push_server("ecdsa");
    let config = client_config();
    let first = raw(server.addr, Arc::clone(&config));
    assert_eq!(
        first.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut first = first;
    // TLS 1.3 tickets arrive after the handshake: read until the client has one.
    first.write_all(upgrade_request("/").as_bytes()).unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    let second = raw(server.addr, config);
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let stats = wait_for_stats(&server, |s| s["tls"]["resumed_handshakes"] == 1);
    assert_eq!(stats["tls"]["full_handshakes"], 1, "{stats}");
}

#[test]
fn plain_http_on_the_tls_port_is_told_to_use_tls_and_counted() {
    let server = push_server("ecdsa");
    let mut client = RawClient::connect(server.addr);
    client.send_raw(upgrade_request("/").as_bytes());
    let (status, head) = client.read_http_response();
    assert_eq!(status, 400, "{head}");
    client.expect_eof();
    // Not TLS, and not HTTP either: closed without an answer.
    let mut client = RawClient::connect(server.addr);
    client.send_raw(&[0x00, 0x01, 0x02, 0x03]);
    client.expect_eof();
    // A TLS record that is not a client hello: the server answers with an alert and closes.
    let mut client = RawClient::connect(server.addr);
    client.send_raw(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00]);
    client.expect_eof();
    let stats = wait_for_stats(&server, |s| s["tls"]["errors"] == 3);
    assert_eq!(stats["connections"]["open"], 0, "{stats}");
    // Nothing of it touched anyone else.
    let mut dave = login(server.addr, "dave");
    dave.send(Message::text("dave:still here")).unwrap();
    assert_eq!(dave.read().unwrap(), Message::text("still here"));
}

#[test]
fn a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    let server = TestServer::push(Config {
        handshake_timeout: Duration::from_millis(200),
        api: Some(wspush::ApiConfig::default()),
        ..tls_config("ecdsa")
    });
    // The first bytes of a client hello, and then nothing.
    let mut stalled = RawClient::connect(server.addr);
    stalled.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
    stalled.expect_eof();
    // A client that completes TLS but never sends its upgrade request: same timeout.
    let mut silent = raw(server.addr, client_config());
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let stats = wait_for_stats(&server, |s| s["handshake_failures_by_status"]["408"] == 2);
    assert_eq!(stats["tls"]["full_handshakes"], 1, "{stats}");
}

#[test]
fn a_handshake_budget_of_one_per_turn_still_serves_every_client() {
    let server = TestServer::push(Config {
        max_tls_handshakes_per_turn: 1,
        ..tls_config("ecdsa")
    });
    let addr = server.addr;
    let clients: Vec<_> = (0..16)
        .map(|i| std::thread::spawn(move || login(addr, &format!("u{i}"))))
        .collect();
    let mut clients: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    clients[0].send(Message::text("all:everyone")).unwrap();
    for client in &mut clients {
        assert_eq!(client.read().unwrap(), Message::text("everyone"));
    }
}

/// A directory of its own for one test's certificate files, removed on drop.
struct CertDir(std::path::PathBuf);

impl CertDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wspush-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn cert(&self) -> std::path::PathBuf {
        self.0.join("cert.pem")
    }

    fn key(&self) -> std::path::PathBuf {
        self.0.join("key.pem")
    }

    /// Puts test certificate `name` in place, as a renewal would (write, then rename).
    fn install(&self, name: &str) {
        for (from, to) in [
            (tls::cert_path(&format!("{name}.pem")), self.cert()),
            (tls::cert_path(&format!("{name}.key")), self.key()),
        ] {
            let staged = to.with_extension("new");
            std::fs::copy(from, &staged).unwrap();
            std::fs::rename(staged, to).unwrap();
        }
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (bounded) for a log line containing `needle`.
fn expect_log(server: &BinaryServer, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn sighup_and_the_api_reload_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let dir = CertDir::new("reload");
    dir.install("ecdsa");
    let (cert, key) = (dir.cert(), dir.key());
    let server = BinaryServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let subject = || peer_subject(&raw(server.addr, client_config()).conn);
    assert_eq!(subject(), "wspush test A");
    // A client connected before the renewal stays connected through it.
    let mut before = connect(server.addr, "/");
    before.send(Message::text("early")).unwrap();
    assert!(before.read().unwrap().is_text());

    dir.install("ecdsa-b");
    server.signal(libc::SIGHUP);
    expect_log(&server, "TLS certificate reloaded");
    assert_eq!(subject(), "wspush test B");

    // A broken certificate: the reload fails, says why, and B stays in force.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    server.signal(libc::SIGHUP);
    let line = expect_log(&server, "not reloaded");
    assert!(line.contains("cert.pem"), "{line}");
    assert_eq!(subject(), "wspush test B");

    // The API route: a key that does not belong to the certificate is refused, then RSA.
    std::fs::copy(tls::cert_path("rsa.pem"), &cert).unwrap();
    let reload = || {
        http::Http::connect(server.api.unwrap())
            .request("POST /tls/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    };
    let refused = reload();
    assert_eq!(refused.status(), 422, "{}", refused.text());
    assert!(
        refused.text().contains("does not belong"),
        "{}",
        refused.text()
    );
    assert_eq!(subject(), "wspush test B");
    std::fs::copy(tls::cert_path("rsa.key"), &key).unwrap();
    let accepted = reload();
    assert_eq!(accepted.status(), 200, "{}", accepted.text());
    assert_eq!(subject(), "wspush test RSA");

    // The first client never noticed.
    before.send(Message::text("still here")).unwrap();
    assert!(before.read().unwrap().is_text());
    let stats = http::Http::connect(server.api.unwrap())
        .request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .json();
    assert_eq!(stats["tls"]["reloads"], 2, "{stats}");
    assert_eq!(stats["tls"]["failed_reloads"], 2, "{stats}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_at_start_up_naming_the_file() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "off"])
        .arg("--tls-cert")
        .arg(tls::cert_path("ecdsa.pem"))
        .arg("--tls-key")
        .arg(tls::cert_path("rsa.key"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rsa.key"), "{stderr}");
    assert!(stderr.contains("does not belong"), "{stderr}");
    // One of the pair without the other is refused by the flag parser.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "x.pem"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[test]
fn a_wss_client_that_never_reads_is_held_to_its_send_cap_ciphertext_included() {
    let cap = 64 << 10;
    let server = TestServer::push(Config {
        max_send_buffer: cap,
        // Small kernel buffers, so that the server's queue fills soon.
        socket_send_buffer: Some(16 << 10),
        api: Some(wspush::ApiConfig::default()),
        ..tls_config("ecdsa")
    });
    let _sleeper = login(server.addr, "sleeper");
    let mut sender = login(server.addr, "sender");
    let body = "z".repeat(1000);
    for _ in 0..2000 {
        sender
            .send(Message::text(format!("sleeper:{body}")))
            .unwrap();
    }
    // Something sent after the flood is answered: the server kept serving.
    // (Before it, the sender hears of each message dropped for the sleeper.)
    sender.send(Message::text("sender:done")).unwrap();
    loop {
        let Message::Text(text) = sender.read().unwrap() else {
            panic!("a text message")
        };
        if text.as_str() == "done" {
            break;
        }
        assert!(text.contains("not keeping up"), "{text}");
    }
    let stats = wait_for_stats(&server, |s| s["messages"]["dropped"].as_u64() > Some(0));
    let queued = stats["queued_bytes"].as_u64().unwrap();
    // The cap, plus the one frame an empty queue always takes, plus one record of ciphertext.
    assert!(queued <= (cap + 1100 + (17 << 10)) as u64, "{stats}");
}
