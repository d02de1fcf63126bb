mod common;
use common::*;

#[test]
fn echoes_a_text_message() {
    let server = TestServer::echo(quiet_config());
    let mut client = RawClient::open(server.addr);
    client.send_text("hello");
    assert_eq!(client.expect_text(), "hello");
}

#[test]
fn routes_between_two_users() {
    let server = TestServer::push(quiet_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    alice.send_text("bob:hi: there");
    assert_eq!(bob.expect_text(), "hi: there");
}
