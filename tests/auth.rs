//! Signed logins and the origin check, end to end: upgrade requests over real loopback sockets
//! to a server (in this process, or the real binary) that must open or refuse them.

mod common;
use common::*;

use std::net::SocketAddr;

use wspush::auth::{sign_login, unix_now};
use wspush::{ClientRouting, Config, PushProtocol};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "s3cret";

/// Signed logins with clients allowed to route (the default with signed logins is
/// receive-only; see `signed_clients_only_receive_by_default`).
fn signed_server() -> TestServer {
    TestServer::start(quiet_config(), || {
        PushProtocol::with_auth_secret(SECRET).with_routing(ClientRouting::All)
    })
}

/// A login URL for `uid` valid for another minute; `uid` must need no percent-encoding.
fn login_path(uid: &str) -> String {
    let expires = unix_now() + 60;
    let sig = sign_login(SECRET.as_bytes(), uid, expires);
    format!("/?uid={uid}&expires={expires}&sig={sig}")
}

/// Sends an upgrade request for `path` with `extra_headers` (each ending in CRLF).
fn request_upgrade(addr: SocketAddr, path: &str, extra_headers: &str) -> RawClient {
    let mut client = RawClient::connect(addr);
    let request = upgrade_request(path);
    let head = request
        .strip_suffix("\r\n")
        .expect("a request ends with a blank line");
    client.send_raw(format!("{head}{extra_headers}\r\n").as_bytes());
    client
}

/// Asserts the upgrade for `path` opens (101) and returns the client.
fn expect_opens(addr: SocketAddr, path: &str, extra_headers: &str) -> RawClient {
    let mut client = request_upgrade(addr, path, extra_headers);
    let (status, response) = client.read_http_response();
    assert_eq!(status, 101, "{path}: {response}");
    client
}

/// Asserts the upgrade for `path` is refused and the connection closed; returns the status and
/// the body.
fn expect_refusal(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let mut client = request_upgrade(addr, path, extra_headers);
    let (status, response) = client.read_http_response();
    let (_, body) = response
        .split_once("\r\n\r\n")
        .expect("a response has a head");
    let body = body.to_owned();
    client.expect_eof();
    (status, body)
}

/// Opens a signed connection for `uid` and checks the login line the server sends at once.
fn signed_login(addr: SocketAddr, uid: &str) -> RawClient {
    let mut client = expect_opens(addr, &login_path(uid), "");
    assert_eq!(
        client.expect_text(),
        format!("login success, your uid is {uid}")
    );
    client
}

/// Proves nothing is queued for `client`, logged in as `uid`: a message it sends to itself must
/// be the next frame it receives.
fn assert_no_more(client: &mut RawClient, uid: &str) {
    client.send_text(&format!("{uid}:nothing else for {uid}"));
    assert_eq!(client.expect_text(), format!("nothing else for {uid}"));
}

/// HMAC-SHA256 as RFC 2104 defines it, built on the bare hash: an implementation independent
/// of the `hmac` crate the server uses.
fn rfc2104_hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let padded = |byte: u8| block_key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(padded(0x5C))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Signed logins
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_signed_url_opens_and_logs_in_without_any_message() {
    let server = signed_server();
    let mut alice = expect_opens(server.addr, &login_path("alice"), "");

    // Nothing was sent after the handshake: the login line comes on its own.
    assert_eq!(alice.expect_text(), "login success, your uid is alice");
    assert_no_more(&mut alice, "alice");
}

#[test]
fn signed_client_routes_messages_to_other_users() {
    let server = signed_server();
    let mut alice = signed_login(server.addr, "alice");
    let mut bob = signed_login(server.addr, "bob");

    alice.send_text("bob:hello bob");
    assert_eq!(bob.expect_text(), "hello bob");
    bob.send_text("all:hello everyone");
    assert_eq!(alice.expect_text(), "hello everyone");
    assert_eq!(bob.expect_text(), "hello everyone");
    assert_no_more(&mut alice, "alice");
    assert_no_more(&mut bob, "bob");
}

#[test]
fn percent_encoded_uid_is_decoded_before_the_signature_is_checked() {
    let server = signed_server();
    let expires = unix_now() + 60;
    let sig = sign_login(SECRET.as_bytes(), "bob smith", expires);
    let mut bob = expect_opens(
        server.addr,
        &format!("/?uid=bob%20smith&expires={expires}&sig={sig}"),
        "",
    );
    assert_eq!(bob.expect_text(), "login success, your uid is bob smith");

    let mut alice = signed_login(server.addr, "alice");
    alice.send_text("bob smith:hi bob");
    assert_eq!(bob.expect_text(), "hi bob");
    assert_no_more(&mut bob, "bob smith");
}

#[test]
fn expired_login_is_refused_with_403() {
    let server = signed_server();
    let expires = unix_now() - 10;
    let sig = sign_login(SECRET.as_bytes(), "alice", expires);

    assert_eq!(
        expect_refusal(
            server.addr,
            &format!("/?uid=alice&expires={expires}&sig={sig}"),
            ""
        ),
        (403, "login expired\n".to_owned())
    );
}

#[test]
fn forged_signature_is_refused_with_403() {
    let server = signed_server();
    let expires = unix_now() + 60;
    let other_secret = sign_login(b"not the secret", "alice", expires);
    let too_short = &sign_login(SECRET.as_bytes(), "alice", expires)[..62];

    for sig in [other_secret.as_str(), too_short, "00"] {
        assert_eq!(
            expect_refusal(
                server.addr,
                &format!("/?uid=alice&expires={expires}&sig={sig}"),
                ""
            ),
            (403, "bad login signature\n".to_owned()),
            "sig={sig}"
        );
    }
}

#[test]
fn login_url_valid_further_ahead_than_the_maximum_lifetime_is_refused() {
    let server = signed_server();
    // Milliseconds where seconds belong: valid for ~50,000 years if accepted.
    let expires = unix_now() * 1000;
    let sig = sign_login(SECRET.as_bytes(), "alice", expires);
    assert_eq!(
        expect_refusal(
            server.addr,
            &format!("/?uid=alice&expires={expires}&sig={sig}"),
            ""
        ),
        (403, "login expires too far ahead\n".to_owned())
    );
}

#[test]
fn signature_replayed_for_another_uid_or_expiry_is_refused() {
    let server = signed_server();
    let expires = unix_now() + 60;
    let sig = sign_login(SECRET.as_bytes(), "alice", expires);

    for query in [
        format!("uid=mallory&expires={expires}&sig={sig}"),
        format!("uid=alice&expires={}&sig={sig}", expires + 600),
    ] {
        assert_eq!(
            expect_refusal(server.addr, &format!("/?{query}"), ""),
            (403, "bad login signature\n".to_owned()),
            "{query}"
        );
    }
}

#[test]
fn missing_or_malformed_login_parameters_are_refused_with_403() {
    let server = signed_server();
    let expires = unix_now() + 60;
    let sig = sign_login(SECRET.as_bytes(), "alice", expires);
    let cases = [
        ("/".to_owned(), "missing uid in the query string"),
        ("/?".to_owned(), "missing uid in the query string"),
        (
            format!("/?expires={expires}&sig={sig}"),
            "missing uid in the query string",
        ),
        (
            format!("/?uid=alice&sig={sig}"),
            "missing expires in the query string",
        ),
        (
            format!("/?uid=alice&expires={expires}"),
            "missing sig in the query string",
        ),
        (
            format!("/?uid=alice&uid=alice&expires={expires}&sig={sig}"),
            "malformed login: a parameter appears twice",
        ),
        (
            format!("/?uid=alice&expires=soon&sig={sig}"),
            "malformed login: expires is not unix seconds",
        ),
        (
            format!("/?uid=alice&expires={expires}&sig=not-hex"),
            "malformed login: sig is not hex",
        ),
        (
            format!("/?uid=all&expires={expires}&sig={sig}"),
            "invalid uid: uid 'all' is reserved for broadcasts",
        ),
    ];

    for (path, reason) in cases {
        assert_eq!(
            expect_refusal(server.addr, &path, ""),
            (403, format!("{reason}\n")),
            "{path}"
        );
    }
}

#[test]
fn signed_client_cannot_log_in_again_by_message() {
    let server = signed_server();
    let mut alice = signed_login(server.addr, "alice");
    let mut bob = signed_login(server.addr, "bob");

    alice.send_text("carol");
    assert_eq!(
        alice.expect_text(),
        "error: logins are signed; this connection is already logged in, send RECIPIENT:MESSAGE"
    );

    // Still alice, and nobody became carol.
    bob.send_text("alice:still you?");
    assert_eq!(alice.expect_text(), "still you?");
    bob.send_text("carol:hello?");
    assert_eq!(bob.expect_text(), "error: uid carol is offline");
    assert_no_more(&mut alice, "alice");
}

#[test]
fn login_signature_is_standard_hmac_sha256_of_uid_colon_expires() {
    // HMAC-SHA256("s3cret", "alice:1700000000"), computed with Python's hmac module.
    let python = "ae9629ee5cdbbfb29d9711630d5c877d8b4e9c4f5bdb690071a759606346d3d2";
    assert_eq!(sign_login(b"s3cret", "alice", 1_700_000_000), python);
    assert_eq!(
        rfc2104_hmac_sha256_hex(b"s3cret", b"alice:1700000000"),
        python
    );

    let long_secret = [0xA5u8; 100];
    for (secret, uid, expires) in [
        (&b"s3cret"[..], "bob smith", 0),
        (&b""[..], "alice", 1),
        (&long_secret[..], "ünïcødé", u64::MAX),
    ] {
        assert_eq!(
            sign_login(secret, uid, expires),
            rfc2104_hmac_sha256_hex(secret, format!("{uid}:{expires}").as_bytes()),
            "{uid}:{expires}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Allowed origins
// ---------------------------------------------------------------------------------------------

fn origin_server() -> TestServer {
    TestServer::push(Config {
        allowed_origins: vec!["https://app.example".into()],
        ..quiet_config()
    })
}

#[test]
fn request_from_an_origin_not_allowed_is_refused_with_403() {
    let server = origin_server();

    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil",
        "null",
    ] {
        assert_eq!(
            expect_refusal(server.addr, "/", &format!("Origin: {origin}\r\n")),
            (403, "origin not allowed\n".to_owned()),
            "{origin}"
        );
    }
}

#[test]
fn allowed_origin_matches_in_any_case() {
    let server = origin_server();
    let mut client = expect_opens(server.addr, "/", "Origin: https://APP.example\r\n");

    client.send_text("alice");
    assert_eq!(client.expect_text(), "login success, your uid is alice");
}

#[test]
fn request_without_origin_is_allowed() {
    let server = origin_server();
    let mut client = expect_opens(server.addr, "/", "");

    client.send_text("alice");
    assert_eq!(client.expect_text(), "login success, your uid is alice");
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// Checks that the binary at `addr` requires signed logins made with `SECRET`.
fn assert_requires_signed_logins(addr: SocketAddr) {
    assert_eq!(
        expect_refusal(addr, "/", ""),
        (403, "missing uid in the query string\n".to_owned())
    );
    assert_eq!(
        expect_refusal(addr, "/?uid=alice", ""),
        (403, "missing expires in the query string\n".to_owned())
    );
    // Signed clients only receive by default; the refusal is the next (and only) frame.
    let mut alice = signed_login(addr, "alice");
    alice.send_text("alice:hello");
    assert_eq!(
        alice.expect_text(),
        "error: clients of this server only receive; messages come from the server"
    );
}

#[test]
fn signed_clients_only_receive_by_default_and_uids_routing_forbids_all() {
    let server = TestServer::start(quiet_config(), || PushProtocol::with_auth_secret(SECRET));
    assert_requires_signed_logins(server.addr);

    let server = BinaryServer::start(&["--auth-secret", SECRET, "--client-routing", "uids"]);
    let mut alice = signed_login(server.addr, "alice");
    alice.send_text("all:everyone");
    assert_eq!(
        alice.expect_text(),
        "error: clients of this server may not send to all"
    );
    assert_no_more(&mut alice, "alice");
}

#[test]
fn binary_with_auth_secret_flag_refuses_unsigned_connections() {
    let server = BinaryServer::start(&["--auth-secret", SECRET]);
    assert_requires_signed_logins(server.addr);
}

#[test]
fn binary_takes_the_auth_secret_from_the_environment() {
    let server =
        BinaryServer::start_with_prefix(&["env", &format!("WSPUSH_AUTH_SECRET={SECRET}")], &[]);
    assert_requires_signed_logins(server.addr);
}

#[test]
fn refusal_by_close_lets_a_browser_tell_why_its_login_failed() {
    let server = TestServer::start(quiet_config(), || {
        PushProtocol::with_auth_secret(SECRET).with_login_refusal_by_close()
    });
    let expired = unix_now() - 10;
    let sig = sign_login(SECRET.as_bytes(), "alice", expired);
    let cases = [
        (
            format!("/?uid=alice&expires={expired}&sig={sig}"),
            4001,
            "login expired",
        ),
        (
            format!("/?uid=alice&expires={}&sig=00", unix_now() + 60),
            4003,
            "bad login signature",
        ),
        (
            "/?uid=alice".to_owned(),
            4000,
            "missing expires in the query string",
        ),
    ];
    for (path, code, reason) in cases {
        // The handshake completes (a browser's WebSocket opens), then the close says why.
        let mut client = expect_opens(server.addr, &path, "");
        assert_eq!(
            client.expect_close(),
            (Some(code), reason.to_owned()),
            "{path}"
        );
    }
    // A good URL still logs in.
    let mut alice = signed_login(server.addr, "alice");
    alice.send_text("bob:hi");
    assert_eq!(
        alice.expect_text(),
        "error: clients of this server only receive; messages come from the server"
    );
}

#[test]
fn binary_refuses_logins_by_close_when_asked() {
    let server = BinaryServer::start(&["--auth-secret", SECRET, "--login-refusal", "close"]);
    let mut client = expect_opens(server.addr, "/?uid=alice", "");
    assert_eq!(client.expect_close().0, Some(4000));
}
