//! An independent client implementation, `tungstenite`, against the echo handler and the push
//! protocol: the server must interoperate with a third-party RFC 6455 stack, not only with the
//! scripted raw client.

mod common;
use common::*;

use std::net::{SocketAddr, TcpStream};

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error, Message, WebSocket};

type Client = WebSocket<TcpStream>;

/// Connects a tungstenite client to `path` on `addr`; every read and write on it is bounded.
fn connect(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// Reads the next message, failing the test on any error (including a timeout).
fn read(ws: &mut Client) -> Message {
    ws.read().expect("read from server")
}

/// Connects and logs in to the push protocol as `uid`.
fn login(addr: SocketAddr, uid: &str) -> Client {
    let mut ws = connect(addr, "/");
    ws.send(Message::text(uid)).unwrap();
    assert_eq!(
        read(&mut ws),
        Message::text(format!("login success, your uid is {uid}"))
    );
    ws
}

// ---------------------------------------------------------------------------------------------
// Echo
// ---------------------------------------------------------------------------------------------

#[test]
fn handshake_is_accepted_by_tungstenite() {
    let server = TestServer::echo(quiet_config());
    let stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    // tungstenite itself checks Sec-WebSocket-Accept against the key it sent.
    let (_ws, response) =
        tungstenite::client(format!("ws://{}/echo?x=1", server.addr), stream).unwrap();
    assert_eq!(response.status(), 101);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    assert_eq!(header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(header("connection").as_deref(), Some("upgrade"));
    assert!(header("sec-websocket-accept").is_some());
}

#[test]
fn text_message_is_echoed() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    for text in ["hello", "", "ünïcödé ✓ 𝄞"] {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(read(&mut ws), Message::text(text));
    }
}

#[test]
fn binary_message_is_echoed() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    let payloads: [&[u8]; 3] = [b"\x00\x01\x02\xff", b"", &[0xAB; 300]];
    for payload in payloads {
        ws.send(Message::binary(payload.to_vec())).unwrap();
        assert_eq!(read(&mut ws), Message::binary(payload.to_vec()));
    }
}

#[test]
fn binary_message_just_under_one_mebibyte_is_echoed() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    // The default message limit is 1 MiB; stay a little under it.
    let payload: Vec<u8> = (0..(1usize << 20) - 1024)
        .map(|i| (i % 251) as u8)
        .collect();
    ws.send(Message::binary(payload.clone())).unwrap();
    match read(&mut ws) {
        Message::Binary(echoed) => {
            assert_eq!(echoed.len(), payload.len());
            assert!(echoed == payload, "echoed payload differs");
        }
        other => panic!("expected a binary message, got {other:?}"),
    }
    // The connection is still in step afterwards.
    ws.send(Message::text("after")).unwrap();
    assert_eq!(read(&mut ws), Message::text("after"));
}

#[test]
fn fragmented_message_is_echoed_whole() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    ws.write(Message::Frame(Frame::message(
        &b"frag"[..],
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        &b"men"[..],
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        &b"ted"[..],
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    assert_eq!(read(&mut ws), Message::text("fragmented"));
}

#[test]
fn ping_is_answered_with_pong_carrying_its_payload() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    ws.send(Message::Ping(b"are you alive?".to_vec().into()))
        .unwrap();
    assert_eq!(
        read(&mut ws),
        Message::Pong(b"are you alive?".to_vec().into())
    );
    // An empty ping gets an empty pong.
    ws.send(Message::Ping(Vec::new().into())).unwrap();
    assert_eq!(read(&mut ws), Message::Pong(Vec::new().into()));
}

#[test]
fn close_handshake_with_code_1000_ends_the_connection_cleanly() {
    let server = TestServer::echo(quiet_config());
    let mut ws = connect(server.addr, "/");
    ws.send(Message::text("last words")).unwrap();
    assert_eq!(read(&mut ws), Message::text("last words"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    match read(&mut ws) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    // The server then ends the TCP connection: tungstenite reports a clean close, not a reset
    // or a protocol error.
    match ws.read() {
        Err(Error::ConnectionClosed) => {}
        other => panic!("expected a clean end of connection, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Push protocol
// ---------------------------------------------------------------------------------------------

#[test]
fn two_clients_log_in_and_exchange_messages() {
    let server = TestServer::push(quiet_config());
    let mut alice = login(server.addr, "alice");
    let mut bob = login(server.addr, "bob");
    alice
        .send(Message::text("bob:hi bob: how are you?"))
        .unwrap();
    assert_eq!(read(&mut bob), Message::text("hi bob: how are you?"));
    bob.send(Message::text("alice:fine")).unwrap();
    assert_eq!(read(&mut alice), Message::text("fine"));
    bob.send(Message::binary(b"alice:\x00\xff".to_vec()))
        .unwrap();
    assert_eq!(read(&mut alice), Message::binary(vec![0x00, 0xff]));
    alice.send(Message::text("carol:anyone?")).unwrap();
    assert_eq!(
        read(&mut alice),
        Message::text("error: uid carol is offline")
    );
}

#[test]
fn broadcast_reaches_every_tungstenite_client() {
    let server = TestServer::push(quiet_config());
    let mut clients: Vec<Client> = (0..5)
        .map(|i| login(server.addr, &format!("peer{i}")))
        .collect();
    clients[2].send(Message::text("all:to everyone")).unwrap();
    clients[2].send(Message::text("all:done")).unwrap();
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(read(ws), Message::text("to everyone"), "peer{i}");
        assert_eq!(read(ws), Message::text("done"), "peer{i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Subprotocols
// ---------------------------------------------------------------------------------------------

/// Connects offering `offered` as `Sec-WebSocket-Protocol`; tungstenite itself fails the
/// handshake if the answer names a subprotocol it did not offer, or none when it offered some.
fn connect_offering(
    addr: SocketAddr,
    offered: &str,
) -> Result<(Client, tungstenite::handshake::client::Response), Error> {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
    tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(error) => error,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking stream interrupted"),
    })
}

#[test]
fn subprotocol_client_connects_and_gets_its_preferred_supported_protocol() {
    let server = TestServer::echo(wspush::Config {
        subprotocols: vec!["chat.v1".into(), "chat.v2".into()],
        ..quiet_config()
    });
    let (mut ws, response) = connect_offering(server.addr, "chat.v2, chat.v1").unwrap();
    let chosen = response.headers().get("sec-websocket-protocol").unwrap();
    assert_eq!(chosen, "chat.v2");
    ws.send(Message::text("over chat.v2")).unwrap();
    assert_eq!(read(&mut ws), Message::text("over chat.v2"));
}

#[test]
fn client_offering_only_unsupported_subprotocols_gets_none_and_says_so() {
    let server = TestServer::echo(wspush::Config {
        subprotocols: vec!["chat.v1".into()],
        ..quiet_config()
    });
    // The server answers 101 without a subprotocol; this client (like browsers) then fails the
    // connection itself.
    let error = connect_offering(server.addr, "mqtt").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Protocol(tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_))
        ),
        "{error:?}"
    );
}
