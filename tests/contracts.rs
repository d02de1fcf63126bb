//! Contract defects a client or a handler could trigger, over real sockets: a close frame sent
//! together with the client's FIN, a handler that closes a connection inside `on_open` and then
//! refuses it, and close codes only a server may send.

mod common;
use common::*;

use std::sync::mpsc;

use wspush::{Accept, CloseCode, CloseInfo, ConnId, Context, Handler, Message, Rejection, Request};

#[test]
fn close_frame_sent_with_the_fin_gets_its_echo() {
    let server = BinaryServer::start(&["--mode", "echo"]);
    let mut client = RawClient::open(server.addr);
    // Close 1000 and the FIN in one go, as a client that closes and exits at once sends them.
    client.send_frame(true, 0x8, &1000u16.to_be_bytes());
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.expect_close(), (Some(1000), String::new()));
    client.expect_eof();
}

/// Closes with 4001 inside `on_open`, then refuses; reports every `on_close` it hears of.
struct CloseThenRefuse {
    closes: mpsc::Sender<(ConnId, CloseInfo)>,
}

impl Handler for CloseThenRefuse {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        if request.path() == "/banned" {
            ctx.close(conn, CloseCode(4001), "banned");
            return Err(Rejection::new(403, "banned"));
        }
        ctx.send(conn, format!("open: {}", ctx.open_connections()).as_str());
        Ok(Accept::default())
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, close: &CloseInfo) {
        let _ = self.closes.send((conn, close.clone()));
    }
}

#[test]
fn close_inside_on_open_then_refusal_is_one_refusal_and_no_close() {
    let (tx, closes) = mpsc::channel();
    let server = TestServer::start(quiet_config(), move || CloseThenRefuse { closes: tx });
    for _ in 0..3 {
        let mut banned = RawClient::connect(server.addr);
        banned.send_raw(upgrade_request("/banned").as_bytes());
        let (status, head) = banned.read_http_response();
        assert_eq!(status, 403, "{head}");
        banned.expect_eof();
    }
    // The open count was not taken down twice: the next client is the only one open.
    let mut fine = RawClient::open(server.addr);
    assert_eq!(fine.expect_text(), "open: 1");
    assert!(
        closes.try_recv().is_err(),
        "a refused connection got on_close"
    );
}

#[test]
fn server_may_close_with_service_restart_but_refuses_it_from_a_client() {
    let server = TestServer::push_with_api(wspush::ApiConfig::default());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = common::http::Http::connect(server.api.unwrap());
    let kick = api.request(
        "POST /uids/alice/close HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\n{\"code\":1012}",
    );
    assert_eq!(kick.status(), 200, "{}", kick.text());
    assert_eq!(alice.expect_close().0, Some(1012));

    let mut bob = RawClient::login(server.addr, "bob");
    bob.send_frame(true, 0x8, &1012u16.to_be_bytes());
    assert_eq!(
        bob.expect_close().0,
        Some(1002),
        "1012 from a client is a protocol error"
    );
}

#[test]
fn a_uid_with_a_trailing_newline_is_refused_with_the_rule_it_breaks() {
    let server = BinaryServer::start(&[]);
    let mut client = RawClient::open(server.addr);
    // What a line-based client such as websocat sends for "alice" typed at a prompt.
    client.send_text("alice\n");
    let reply = client.expect_text();
    assert!(
        reply.starts_with("error: invalid uid: uid contains a control character"),
        "{reply}"
    );
    client.send_text("alice");
    assert_eq!(client.expect_text(), "login success, your uid is alice");
}

#[test]
fn a_client_over_the_client_rate_is_closed_with_1008() {
    let server = BinaryServer::start(&["--client-rate", "5"]);
    let mut flooder = RawClient::login(server.addr, "flooder");
    let mut other = RawClient::login(server.addr, "other");
    for _ in 0..100 {
        flooder.send_text("other:spam");
    }
    let (code, reason) = flooder.expect_close();
    assert_eq!((code, reason.as_str()), (Some(1008), "rate limit exceeded"));
    // Everything the flooder got through was dispatched before its close; a marker sent now
    // arrives after all of it.
    let mut marker = RawClient::login(server.addr, "marker");
    marker.send_text("other:done");
    let mut delivered = 0;
    loop {
        match other.expect_text().as_str() {
            "spam" => delivered += 1,
            "done" => break,
            unexpected => panic!("unexpected {unexpected:?}"),
        }
    }
    // The burst is twice the rate; the login took one token.
    assert!(
        delivered <= 10,
        "{delivered} messages got through a rate of 5/s"
    );
}
