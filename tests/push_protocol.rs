//! The reference push protocol (`PushProtocol`) and the `Handler` API, end to end over real
//! loopback sockets with the scripted raw client.

mod common;
use common::*;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspush::{
    Accept, CloseCode, CloseInfo, Config, ConnId, Context, Handler, Initiator, Message, Rejection,
    Request,
};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// Proves nothing is queued for `client` (logged in as `uid`): a message it sends to itself
/// must be the very next frame it receives.
fn assert_nothing_pending(client: &mut RawClient, uid: &str) {
    client.send_text(&format!("{uid}:nothing before this"));
    assert_eq!(
        client.read_data_frame(),
        Frame {
            fin: true,
            opcode: TEXT,
            payload: b"nothing before this".to_vec()
        },
        "{uid} received something unexpected"
    );
}

/// Closes `client` with the closing handshake: sends a close frame, waits for the server's
/// answering close (echoing `code`) and for the end of the TCP stream. Once the stream has
/// ended the server has already left the open state and removed the connection's binding.
fn close_cleanly(mut client: RawClient, code: u16, reason: &str) {
    client.send_frame(true, CLOSE, &close_payload(code, reason));
    assert_eq!(client.expect_close().0, Some(code));
    client.expect_eof();
}

/// Ends `client` without a close frame, as a crashed browser tab would: half-closes the socket
/// and waits until the server, having seen the end of input, drops its side.
fn vanish(mut client: RawClient) {
    client.stream.shutdown(Shutdown::Write).unwrap();
    client.expect_eof();
}

/// The connection's id as its `Display` renders it (`#key.gen`), split into key and generation.
fn parse_conn_id(text: &str) -> (u32, u32) {
    let (key, gen) = text
        .strip_prefix('#')
        .and_then(|rest| rest.split_once('.'))
        .unwrap_or_else(|| panic!("not a connection id: {text:?}"));
    (key.parse().unwrap(), gen.parse().unwrap())
}

/// Connects with `first_message` pipelined behind the upgrade request and reads the `101`.
/// The one small write reaches the server in one read, and the server handles frames that
/// arrive with the request as part of the handshake, at the same `now`: no timer sweep can
/// come between the connection opening and that message, however loaded the machine.
fn open_with_first_message(addr: SocketAddr, first_message: &str) -> RawClient {
    let mut client = RawClient::connect(addr);
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend_from_slice(&frame(true, TEXT, first_message.as_bytes(), true));
    client.send_raw(&bytes);
    assert_eq!(client.read_http_response().0, 101);
    client
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

#[test]
fn first_text_message_logs_in_with_that_uid() {
    let server = TestServer::push(quiet_config());
    let mut client = RawClient::open(server.addr);
    client.send_text("alice");
    assert_eq!(client.expect_text(), "login success, your uid is alice");
    assert_nothing_pending(&mut client, "alice");
}

#[test]
fn login_pipelined_with_the_upgrade_request_succeeds() {
    let server = TestServer::push(quiet_config());
    let mut client = RawClient::connect(server.addr);
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend_from_slice(&frame(true, TEXT, b"alice", true));
    bytes.extend_from_slice(&frame(true, TEXT, b"alice:right away", true));
    client.send_raw(&bytes);
    assert_eq!(client.read_http_response().0, 101);
    assert_eq!(client.expect_text(), "login success, your uid is alice");
    assert_eq!(client.expect_text(), "right away");
}

#[test]
fn uid_of_128_bytes_is_accepted_and_reachable() {
    let server = TestServer::push(quiet_config());
    let uid = "u".repeat(128);
    let mut long = RawClient::login(server.addr, &uid);
    let mut sender = RawClient::login(server.addr, "sender");
    sender.send_text(&format!("{uid}:hello long name"));
    assert_eq!(long.expect_text(), "hello long name");
    assert_nothing_pending(&mut sender, "sender");
}

#[test]
fn invalid_uids_are_refused_and_connection_stays_usable() {
    let server = TestServer::push(quiet_config());
    let mut client = RawClient::open(server.addr);
    let too_long = "x".repeat(129);
    let cases = [
        ("", "error: invalid uid: uid is empty"),
        (
            too_long.as_str(),
            "error: invalid uid: uid is longer than 128 bytes",
        ),
        ("a:b", "error: invalid uid: uid contains ':'"),
        (
            "all",
            "error: invalid uid: uid 'all' is reserved for broadcasts",
        ),
    ];
    for (uid, reply) in cases {
        client.send_text(uid);
        assert_eq!(client.expect_text(), reply, "login as {uid:?}");
    }
    client.send_text("carol");
    assert_eq!(client.expect_text(), "login success, your uid is carol");
    assert_nothing_pending(&mut client, "carol");
}

#[test]
fn refused_uid_is_not_bound() {
    let server = TestServer::push(quiet_config());
    let too_long = "x".repeat(129);
    let mut refused = RawClient::open(server.addr);
    refused.send_text(&too_long);
    assert_eq!(
        refused.expect_text(),
        "error: invalid uid: uid is longer than 128 bytes"
    );
    let mut sender = RawClient::login(server.addr, "sender");
    sender.send_text(&format!("{too_long}:hello"));
    assert_eq!(
        sender.expect_text(),
        format!("error: uid {too_long} is offline")
    );
    sender.send_text("all:broadcast");
    assert_eq!(sender.expect_text(), "broadcast");
    // The refused connection got no broadcast and is still not logged in: its next message is
    // another login attempt, and the answer to it is the next frame it receives.
    refused.send_text("dave");
    assert_eq!(refused.expect_text(), "login success, your uid is dave");
}

#[test]
fn binary_before_login_is_refused_and_login_still_works() {
    let server = TestServer::push(quiet_config());
    let mut client = RawClient::open(server.addr);
    client.send_binary(b"alice");
    assert_eq!(
        client.expect_text(),
        "error: log in first: send your uid as a text message"
    );
    client.send_text("alice");
    assert_eq!(client.expect_text(), "login success, your uid is alice");
    assert_nothing_pending(&mut client, "alice");
}

#[test]
fn login_timeout_closes_only_connections_without_a_uid() {
    // Short, because it is only waited for: nothing here must happen before it expires.
    let timeout = Duration::from_millis(300);
    let config = Config {
        login_timeout: Some(timeout),
        ..quiet_config()
    };
    let server = TestServer::push(config);
    // Both log in the instant they open, and open before the silent connections, so their
    // deadline is no later than the deadline that closes those.
    let mut alice = open_with_first_message(server.addr, "alice");
    assert_eq!(alice.expect_text(), "login success, your uid is alice");
    let mut bob = open_with_first_message(server.addr, "bob");
    assert_eq!(bob.expect_text(), "login success, your uid is bob");
    let started = Instant::now();
    let mut silent = RawClient::open(server.addr);
    // A refused login is not a login: the connection still has no uid.
    let mut refused = open_with_first_message(server.addr, "all");
    assert_eq!(
        refused.expect_text(),
        "error: invalid uid: uid 'all' is reserved for broadcasts"
    );

    assert_eq!(
        silent.expect_close(),
        (Some(1008), "login timeout".to_owned())
    );
    // The server counts whole milliseconds.
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(1),
        "closed after only {:?}",
        started.elapsed()
    );
    silent.expect_eof();
    assert_eq!(
        refused.expect_close(),
        (Some(1008), "login timeout".to_owned())
    );
    refused.expect_eof();

    // The sweep that closed the silent connections ran past the logged-in ones' deadline too.
    bob.send_text("alice:still here");
    assert_eq!(alice.expect_text(), "still here");
    alice.send_text("bob:me too");
    assert_eq!(bob.expect_text(), "me too");
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[test]
fn message_is_split_at_the_first_colon() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    for (sent, received) in [
        ("bob:a:b:c", "a:b:c"),
        ("bob::leading colon", ":leading colon"),
        ("bob:", ""),
        ("bob:héllo wörld", "héllo wörld"),
    ] {
        alice.send_text(sent);
        assert_eq!(bob.expect_text(), received, "sent {sent:?}");
    }
    assert_nothing_pending(&mut alice, "alice");
}

#[test]
fn fragmented_message_is_routed_whole() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    // The colon arrives in the middle fragment, with a ping between fragments.
    alice.send_frame(false, TEXT, b"bo");
    alice.send_frame(false, CONTINUATION, b"b:hel");
    alice.send_frame(true, PING, b"p");
    alice.send_frame(true, CONTINUATION, b"lo");
    assert_eq!(
        alice.read_frame(),
        Frame {
            fin: true,
            opcode: PONG,
            payload: b"p".to_vec()
        }
    );
    assert_eq!(bob.expect_text(), "hello");
    alice.send_frame(false, BINARY, b"bob");
    alice.send_frame(true, CONTINUATION, b":\x07");
    assert_eq!(bob.expect_binary(), vec![7]);
    assert_nothing_pending(&mut alice, "alice");
}

#[test]
fn message_reaches_only_its_recipient() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut carol = RawClient::login(server.addr, "carol");
    alice.send_text("bob:for bob only");
    assert_eq!(bob.expect_text(), "for bob only");
    assert_nothing_pending(&mut alice, "alice");
    assert_nothing_pending(&mut carol, "carol");
    assert_nothing_pending(&mut bob, "bob");
}

#[test]
fn message_to_self_is_delivered() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_text("alice:note to self");
    assert_eq!(alice.expect_text(), "note to self");
}

#[test]
fn sending_to_a_uid_that_never_logged_in_reports_it_offline() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_text("nobody:hello?");
    assert_eq!(alice.expect_text(), "error: uid nobody is offline");
    assert_nothing_pending(&mut alice, "alice");
}

#[test]
fn broadcast_reaches_every_bound_connection_exactly_once() {
    const CLIENTS: usize = 20;
    let server = TestServer::push(quiet_config());
    let mut clients: Vec<RawClient> = (0..CLIENTS)
        .map(|i| RawClient::login(server.addr, &format!("user{i}")))
        .collect();
    // A connection that never logged in is not bound and must not get broadcasts.
    let mut anonymous = RawClient::open(server.addr);

    clients[0].send_text("all:hello everyone");
    // A second broadcast from the same sender arrives after the first everywhere; a duplicate
    // of the first would show up in its place.
    clients[0].send_text("all:the end");
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.expect_text(), "hello everyone", "user{i}");
        assert_eq!(client.expect_text(), "the end", "user{i}");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_nothing_pending(client, &format!("user{i}"));
    }
    anonymous.send_binary(b"x");
    assert_eq!(
        anonymous.expect_text(),
        "error: log in first: send your uid as a text message"
    );
}

#[test]
fn broadcast_reaches_every_tab_of_a_uid() {
    let server = TestServer::push(quiet_config());
    let mut tab1 = RawClient::login(server.addr, "alice");
    let mut tab2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    bob.send_text("all:news");
    assert_eq!(bob.expect_text(), "news");
    assert_eq!(tab1.expect_text(), "news");
    assert_eq!(tab2.expect_text(), "news");
    // Exactly one copy each: the next message to alice is the next frame on both tabs.
    bob.send_text("alice:after the news");
    assert_eq!(tab1.expect_text(), "after the news");
    assert_eq!(tab2.expect_text(), "after the news");
    assert_nothing_pending(&mut bob, "bob");
}

#[test]
fn message_to_a_uid_reaches_every_tab() {
    let server = TestServer::push(quiet_config());
    let mut tab1 = RawClient::login(server.addr, "alice");
    let mut tab2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    bob.send_text("alice:to both tabs");
    assert_eq!(tab1.expect_text(), "to both tabs");
    assert_eq!(tab2.expect_text(), "to both tabs");
    assert_nothing_pending(&mut bob, "bob");
}

/// Two tabs of alice; one closes (cleanly or by vanishing); the other must stay reachable.
fn check_other_tab_stays_bound(close_old: bool, clean: bool) {
    let server = TestServer::push(quiet_config());
    let old = RawClient::login(server.addr, "alice");
    let new = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let (closing, mut remaining) = if close_old { (old, new) } else { (new, old) };
    if clean {
        close_cleanly(closing, 1000, "tab closed");
    } else {
        vanish(closing);
    }
    bob.send_text("alice:are you there?");
    assert_eq!(remaining.expect_text(), "are you there?");
    // No "offline" error for bob.
    assert_nothing_pending(&mut bob, "bob");
    // The remaining tab can still send too.
    remaining.send_text("bob:yes");
    assert_eq!(bob.expect_text(), "yes");
}

#[test]
fn closing_old_tab_keeps_new_tab_bound() {
    check_other_tab_stays_bound(true, true);
}

#[test]
fn dropping_old_tab_keeps_new_tab_bound() {
    check_other_tab_stays_bound(true, false);
}

#[test]
fn closing_new_tab_keeps_old_tab_bound() {
    check_other_tab_stays_bound(false, true);
}

#[test]
fn dropping_new_tab_keeps_old_tab_bound() {
    check_other_tab_stays_bound(false, false);
}

#[test]
fn dropped_tab_without_handshake_does_not_stop_delivery_to_other_tab() {
    // No wait at all after the drop: whenever the server notices, the other tab is reachable.
    let server = TestServer::push(quiet_config());
    let old = RawClient::login(server.addr, "alice");
    let mut new = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    drop(old);
    bob.send_text("alice:first");
    assert_eq!(new.expect_text(), "first");
    bob.send_text("alice:second");
    assert_eq!(new.expect_text(), "second");
    assert_nothing_pending(&mut bob, "bob");
}

#[test]
fn closing_only_connection_makes_uid_offline() {
    let server = TestServer::push(quiet_config());
    let bob = RawClient::login(server.addr, "bob");
    let mut alice = RawClient::login(server.addr, "alice");
    close_cleanly(bob, 1000, "bye");
    alice.send_text("bob:are you there?");
    assert_eq!(alice.expect_text(), "error: uid bob is offline");
}

#[test]
fn dropping_only_connection_makes_uid_offline() {
    let server = TestServer::push(quiet_config());
    let bob = RawClient::login(server.addr, "bob");
    let mut alice = RawClient::login(server.addr, "alice");
    vanish(bob);
    alice.send_text("bob:are you there?");
    assert_eq!(alice.expect_text(), "error: uid bob is offline");
}

#[test]
fn uid_comes_back_online_after_logging_in_again() {
    let server = TestServer::push(quiet_config());
    let bob = RawClient::login(server.addr, "bob");
    let mut alice = RawClient::login(server.addr, "alice");
    close_cleanly(bob, 1000, "bye");
    alice.send_text("bob:one");
    assert_eq!(alice.expect_text(), "error: uid bob is offline");
    let mut bob = RawClient::login(server.addr, "bob");
    alice.send_text("bob:two");
    assert_eq!(bob.expect_text(), "two");
    assert_nothing_pending(&mut alice, "alice");
}

// ---------------------------------------------------------------------------------------------
// Binary messages
// ---------------------------------------------------------------------------------------------

#[test]
fn binary_message_is_routed_as_binary() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    alice.send_binary(b"bob:\x00\x01");
    assert_eq!(bob.expect_binary(), vec![0, 1]);
    // Payload bytes that are not UTF-8, and colons inside the payload, pass through untouched.
    alice.send_binary(b"bob:\xff:\xfe\x00");
    assert_eq!(bob.expect_binary(), b"\xff:\xfe\x00".to_vec());
    assert_nothing_pending(&mut alice, "alice");
}

#[test]
fn binary_broadcast_reaches_everyone_as_binary() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    bob.send_binary(b"all:\x01\x02\x03");
    assert_eq!(alice.expect_binary(), vec![1, 2, 3]);
    assert_eq!(bob.expect_binary(), vec![1, 2, 3]);
}

#[test]
fn binary_message_to_offline_uid_gets_a_text_error() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_binary(b"ghost:\x00");
    assert_eq!(alice.expect_text(), "error: uid ghost is offline");
}

#[test]
fn binary_message_with_non_utf8_recipient_is_an_error() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_binary(b"\xff\xfe:payload");
    assert_eq!(alice.expect_text(), "error: recipient is not valid UTF-8");
    assert_nothing_pending(&mut alice, "alice");
}

// ---------------------------------------------------------------------------------------------
// Malformed messages
// ---------------------------------------------------------------------------------------------

#[test]
fn message_without_colon_is_an_error_and_connection_stays_usable() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_text("hello");
    assert_eq!(alice.expect_text(), "error: expected RECIPIENT:MESSAGE");
    alice.send_binary(b"no colon here");
    assert_eq!(alice.expect_text(), "error: expected RECIPIENT:MESSAGE");
    assert_nothing_pending(&mut alice, "alice");
}

#[test]
fn empty_recipient_is_an_error_and_connection_stays_usable() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    alice.send_text(":hello");
    assert_eq!(alice.expect_text(), "error: recipient is empty");
    alice.send_binary(b":\x00");
    assert_eq!(alice.expect_text(), "error: recipient is empty");
    assert_nothing_pending(&mut alice, "alice");
}

// ---------------------------------------------------------------------------------------------
// Custom handlers
// ---------------------------------------------------------------------------------------------

/// Tells every new connection what `on_open` saw of its request.
struct RequestReporter;

impl Handler for RequestReporter {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        let token = request
            .header("X-ROOM-TOKEN")
            .map_or("<none>".to_owned(), |v| {
                String::from_utf8_lossy(v).into_owned()
            });
        let names: Vec<&str> = request.headers().map(|(name, _)| name).collect();
        ctx.send(conn, format!("path {}", request.path()).as_str());
        ctx.send(
            conn,
            format!("query {}", request.query().unwrap_or("<none>")).as_str(),
        );
        ctx.send(conn, format!("token {token}").as_str());
        ctx.send(conn, format!("headers {}", names.join(",")).as_str());
        ctx.send(conn, format!("peer {}", request.peer_addr()).as_str());
        Ok(Accept::default())
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}
}

#[test]
fn on_open_sees_path_query_headers_and_peer() {
    let server = TestServer::start(quiet_config(), || RequestReporter);
    let mut client = RawClient::connect(server.addr);
    let request = upgrade_request("/chat?room=7&x=%20")
        .replace("\r\n\r\n", "\r\nX-Room-Token: secret 42\r\n\r\n");
    client.send_raw(request.as_bytes());
    let (status, head) = client.read_http_response();
    assert_eq!(status, 101, "{head}");
    assert_eq!(client.expect_text(), "path /chat");
    assert_eq!(client.expect_text(), "query room=7&x=%20");
    assert_eq!(client.expect_text(), "token secret 42");
    assert_eq!(
        client.expect_text(),
        "headers Host,Upgrade,Connection,Sec-WebSocket-Key,Sec-WebSocket-Version,X-Room-Token"
    );
    let local = client.stream.local_addr().unwrap();
    assert_eq!(client.expect_text(), format!("peer {local}"));
}

#[test]
fn on_open_sees_no_query_when_target_has_none() {
    let server = TestServer::start(quiet_config(), || RequestReporter);
    let mut client = RawClient::open(server.addr);
    assert_eq!(client.expect_text(), "path /");
    assert_eq!(client.expect_text(), "query <none>");
    assert_eq!(client.expect_text(), "token <none>");
}

/// Refuses `/private`, accepts anything else, and reports each close with the path it opened.
struct Gatekeeper {
    greet_before_refusing: bool,
    paths: HashMap<ConnId, String>,
    closes: mpsc::Sender<String>,
}

impl Handler for Gatekeeper {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        if request.path() == "/private" {
            if self.greet_before_refusing {
                ctx.send(conn, "welcome");
            }
            return Err(Rejection::new(403, "no"));
        }
        self.paths.insert(conn, request.path().to_owned());
        Ok(Accept::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        ctx.send(conn, message);
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, _: &CloseInfo) {
        let path = self
            .paths
            .remove(&conn)
            .unwrap_or_else(|| "<unknown>".into());
        // The test may be gone already when shutdown closes the remaining connections.
        let _ = self.closes.send(path);
    }
}

fn check_rejection(greet_before_refusing: bool) {
    let (tx, closes) = mpsc::channel();
    let server = TestServer::start(quiet_config(), move || Gatekeeper {
        greet_before_refusing,
        paths: HashMap::new(),
        closes: tx,
    });
    let mut refused = RawClient::connect(server.addr);
    refused.send_raw(upgrade_request("/private").as_bytes());
    let (status, response) = refused.read_http_response();
    assert_eq!(status, 403, "{response}");
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nno\n"), "{response}");
    // Nothing follows the refusal: no frames, just the end of the stream.
    refused.expect_eof();

    // An accepted connection still works, and its close is the first one reported: the refused
    // connection got no `on_close`.
    let mut accepted = RawClient::connect(server.addr);
    accepted.send_raw(upgrade_request("/public").as_bytes());
    assert_eq!(accepted.read_http_response().0, 101);
    accepted.send_text("ping");
    assert_eq!(accepted.expect_text(), "ping");
    close_cleanly(accepted, 1000, "");
    assert_eq!(closes.recv_timeout(WAIT).unwrap(), "/public");
}

#[test]
fn on_open_rejection_sends_http_403_and_no_close_callback() {
    check_rejection(false);
}

#[test]
fn messages_sent_in_on_open_are_discarded_when_it_rejects() {
    check_rejection(true);
}

/// What `on_close` reported.
#[derive(Debug, PartialEq, Eq)]
struct ClosedReport {
    uid: Option<String>,
    info: CloseInfo,
    still_online: bool,
}

/// First text message binds a uid; `kick` makes the server close; every close is reported
/// through the channel and to the uid `watcher`.
struct CloseRecorder {
    reports: mpsc::Sender<ClosedReport>,
}

impl Handler for CloseRecorder {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        if ctx.uid_of(conn).is_none() {
            ctx.bind_uid(conn, text);
            ctx.send(conn, "bound");
        } else if text == "kick" {
            ctx.close(conn, CloseCode(4000), "kicked");
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, close: &CloseInfo) {
        let uid = ctx.uid_of(conn).map(str::to_owned);
        let still_online = uid.as_deref().is_some_and(|uid| ctx.is_uid_online(uid));
        let summary = format!(
            "{} closed: {} {:?} {:?}",
            uid.as_deref().unwrap_or("<no uid>"),
            close.code.0,
            close.reason,
            close.initiator
        );
        ctx.send_to_uid("watcher", summary.as_str());
        // The test may be gone already when shutdown closes the remaining connections.
        let _ = self.reports.send(ClosedReport {
            uid,
            info: close.clone(),
            still_online,
        });
    }
}

fn close_recorder() -> (TestServer, mpsc::Receiver<ClosedReport>, RawClient) {
    let (tx, rx) = mpsc::channel();
    let server = TestServer::start(quiet_config(), move || CloseRecorder { reports: tx });
    let mut watcher = RawClient::open(server.addr);
    watcher.send_text("watcher");
    assert_eq!(watcher.expect_text(), "bound");
    (server, rx, watcher)
}

fn bound_client(server: &TestServer, uid: &str) -> RawClient {
    let mut client = RawClient::open(server.addr);
    client.send_text(uid);
    assert_eq!(client.expect_text(), "bound");
    client
}

#[test]
fn on_close_receives_client_close_code_and_reason() {
    let (server, reports, mut watcher) = close_recorder();
    let alice = bound_client(&server, "alice");
    close_cleanly(alice, 4001, "see you");
    assert_eq!(
        reports.recv_timeout(WAIT).unwrap(),
        ClosedReport {
            uid: Some("alice".into()),
            info: CloseInfo {
                code: CloseCode(4001),
                reason: "see you".into(),
                initiator: Initiator::Client,
            },
            still_online: false,
        }
    );
    assert_eq!(
        watcher.expect_text(),
        "alice closed: 4001 \"see you\" Client"
    );
}

#[test]
fn on_close_reports_1005_for_close_frame_without_code() {
    let (server, reports, mut watcher) = close_recorder();
    let mut alice = bound_client(&server, "alice");
    alice.send_frame(true, CLOSE, b"");
    assert_eq!(alice.expect_close().0, None);
    alice.expect_eof();
    let report = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.info.code, CloseCode::NO_STATUS);
    assert_eq!(report.info.reason, "");
    assert_eq!(report.info.initiator, Initiator::Client);
    assert_eq!(watcher.expect_text(), "alice closed: 1005 \"\" Client");
}

#[test]
fn on_close_reports_1006_and_uid_for_a_dropped_connection() {
    let (server, reports, mut watcher) = close_recorder();
    let alice = bound_client(&server, "alice");
    drop(alice);
    assert_eq!(
        reports.recv_timeout(WAIT).unwrap(),
        ClosedReport {
            uid: Some("alice".into()),
            info: CloseInfo {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                initiator: Initiator::Client,
            },
            still_online: false,
        }
    );
    assert_eq!(watcher.expect_text(), "alice closed: 1006 \"\" Client");
}

#[test]
fn on_close_reports_server_initiated_close() {
    let (server, reports, mut watcher) = close_recorder();
    let mut alice = bound_client(&server, "alice");
    alice.send_text("kick");
    assert_eq!(alice.expect_close(), (Some(4000), "kicked".to_owned()));
    assert_eq!(
        reports.recv_timeout(WAIT).unwrap(),
        ClosedReport {
            uid: Some("alice".into()),
            info: CloseInfo {
                code: CloseCode(4000),
                reason: "kicked".into(),
                initiator: Initiator::Server,
            },
            still_online: false,
        }
    );
    assert_eq!(
        watcher.expect_text(),
        "alice closed: 4000 \"kicked\" Server"
    );
    // The client answers the close; the server then ends the stream.
    alice.send_frame(true, CLOSE, &close_payload(4000, ""));
    alice.expect_eof();
}

#[test]
fn on_close_sees_other_tab_still_online() {
    let (server, reports, _watcher) = close_recorder();
    let tab1 = bound_client(&server, "alice");
    let _tab2 = bound_client(&server, "alice");
    close_cleanly(tab1, 1000, "");
    let report = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.uid.as_deref(), Some("alice"));
    assert!(report.still_online, "alice's second tab is still open");
}

/// Announces each connection's id on open; `remember` stores the sender's id, `poke` sends to
/// the stored id and replies with the resulting `SendStatus`.
#[derive(Default)]
struct SlotProbe {
    remembered: Option<ConnId>,
}

impl Handler for SlotProbe {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        _: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        ctx.send(conn, conn.to_string().as_str());
        Ok(Accept::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        match message {
            Message::Text("remember") => {
                self.remembered = Some(conn);
                ctx.send(conn, "remembered");
            }
            Message::Text("poke") => {
                let target = self.remembered.expect("nothing remembered");
                let status = ctx.send(target, "for the remembered connection");
                ctx.send(conn, format!("poke: {status:?}").as_str());
            }
            _ => {}
        }
    }
}

#[test]
fn stale_conn_id_does_not_reach_the_next_occupant_of_its_slot() {
    let server = TestServer::start(quiet_config(), SlotProbe::default);
    let mut first = RawClient::open(server.addr);
    let first_id = first.expect_text();
    let (first_key, first_gen) = parse_conn_id(&first_id);
    first.send_text("remember");
    assert_eq!(first.expect_text(), "remembered");
    first.send_text("poke");
    assert_eq!(first.expect_text(), "for the remembered connection");
    assert_eq!(first.expect_text(), "poke: Sent");
    close_cleanly(first, 1000, "");

    // The server frees the slot once it sees the closed socket's end of stream. A connection
    // accepted in the same loop iteration gets a fresh slot; the next one gets the freed slot.
    let mut others = Vec::new();
    let mut reuser = None;
    for _ in 0..4 {
        let mut client = RawClient::open(server.addr);
        let id = client.expect_text();
        if parse_conn_id(&id).0 == first_key {
            reuser = Some((client, id));
            break;
        }
        others.push(client);
    }
    let (mut reuser, reuser_id) = reuser.expect("no new connection reused the freed slot");
    let (_, reuser_gen) = parse_conn_id(&reuser_id);
    assert_ne!(reuser_gen, first_gen, "{reuser_id} vs {first_id}");

    reuser.send_text("poke");
    // Anything sent to the stale id would have been queued before this reply.
    assert_eq!(reuser.expect_text(), "poke: Dropped");
    for other in &mut others {
        other.send_text("poke");
        assert_eq!(other.expect_text(), "poke: Dropped");
    }
}
