//! The HTTP push API end to end: requests over real loopback sockets to a server running the
//! reference push protocol, and what the WebSocket clients of that server then receive.

mod common;
use common::http::{Http, Response};
use common::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wspush::{ApiConfig, Config};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// The configuration every test here starts from: the push API on, timers off.
fn api_config() -> Config {
    Config {
        api: Some(ApiConfig::default()),
        ..quiet_config()
    }
}

/// Starts the push protocol with `config` and returns it with a client for its API.
fn start(config: Config) -> (TestServer, Api) {
    let server = TestServer::push(config);
    let api = Api(server.api.expect("the push API is enabled"));
    (server, api)
}

/// A client for the push API that makes one request per connection (`Connection: close`)
/// with the shared HTTP client, plus JSON shortcuts.
#[derive(Debug, Clone, Copy)]
struct Api(SocketAddr);

impl Api {
    /// Sends one request and reads the whole answer: a `Content-Length` body, then the close.
    fn request(
        self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if let Some(content_type) = content_type {
            request.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let mut http = Http::connect(self.0);
        let response = http.request(bytes);
        assert!(
            response.header("Content-Length").is_some(),
            "no body length in {:?}",
            response.head
        );
        http.expect_eof();
        response
    }

    /// Sends a request that must succeed and returns its JSON answer.
    fn ok(self, method: &str, target: &str, body: &[u8]) -> Value {
        let response = self.request(method, target, None, body);
        assert_eq!(
            response.status(),
            200,
            "{method} {target}: {}",
            response.text()
        );
        json_body(&response)
    }

    fn get(self, target: &str) -> Value {
        self.ok("GET", target, b"")
    }

    fn post(self, target: &str, body: &[u8]) -> Value {
        self.ok("POST", target, body)
    }
}

/// The body of a response that must say it is JSON, parsed.
fn json_body(response: &Response) -> Value {
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{response:?}"
    );
    response.json()
}

/// Proves the tabs of `uid` (every connection it has) received nothing more: a message the uid
/// sends to itself must be the next frame on each of them.
fn assert_no_more(uid: &str, tabs: &mut [&mut RawClient]) {
    let marker = format!("end of messages for {uid}");
    tabs[0].send_text(&format!("{uid}:{marker}"));
    for (index, tab) in tabs.iter_mut().enumerate() {
        assert_eq!(
            tab.expect_text(),
            marker,
            "tab {index} of {uid} got something unexpected"
        );
    }
}

/// Closes a tab with the closing handshake; once its TCP stream ends, the server has removed
/// the connection's binding.
fn close_tab(mut tab: RawClient) {
    tab.send_frame(true, CLOSE, &close_payload(1000, "bye"));
    assert_eq!(tab.expect_close(), (Some(1000), String::new()));
    tab.expect_eof();
}

/// Pause between two polls of a state that changes on the server's timer sweep. Only paces
/// the polling; the loop waits for the state itself, within `WAIT`.
const POLL_PAUSE: Duration = Duration::from_millis(20);

/// Polls `GET /groups/{group}` until its members are exactly `members`; returns the answer.
fn wait_for_members(api: Api, group: &str, members: &[&str]) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = api.get(&format!("/groups/{group}"));
        if info["members"] == json!(members) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} is still {info} after {WAIT:?}, expected members {members:?}"
        );
        std::thread::sleep(POLL_PAUSE);
    }
}

fn stats(api: Api) -> Value {
    api.get("/stats")
}

// ---------------------------------------------------------------------------------------------
// POST /send/{uid}
// ---------------------------------------------------------------------------------------------

#[test]
fn send_reaches_every_tab_of_the_uid_exactly_once() {
    let (server, api) = start(api_config());
    let mut tab1 = RawClient::login(server.addr, "alice");
    let mut tab2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");

    assert_eq!(
        api.post("/send/alice", b"hello alice"),
        json!({ "connections": 2 })
    );

    assert_eq!(tab1.expect_text(), "hello alice");
    assert_eq!(tab2.expect_text(), "hello alice");
    assert_no_more("alice", &mut [&mut tab1, &mut tab2]);
    assert_no_more("bob", &mut [&mut bob]);
}

#[test]
fn send_to_an_offline_uid_answers_zero_connections() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    assert_eq!(
        api.post("/send/nobody", b"anyone there?"),
        json!({ "connections": 0 })
    );
    assert_no_more("alice", &mut [&mut alice]);
}

#[test]
fn percent_encoded_uid_in_the_path_is_decoded() {
    let (server, api) = start(api_config());
    let mut bob = RawClient::login(server.addr, "bob smith");

    assert_eq!(
        api.post("/send/bob%20smith", b"hi bob"),
        json!({ "connections": 1 })
    );
    assert_eq!(bob.expect_text(), "hi bob");
}

#[test]
fn octet_stream_body_arrives_as_a_binary_frame() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    let response = api.request(
        "POST",
        "/send/alice",
        Some("application/octet-stream"),
        b"valid utf-8, sent as binary",
    );
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(json_body(&response), json!({ "connections": 1 }));
    assert_eq!(alice.expect_binary(), b"valid utf-8, sent as binary");

    // The media type is matched without its parameters and in any case.
    let response = api.request(
        "POST",
        "/send/alice",
        Some("Application/Octet-Stream; charset=binary"),
        &[0x00, 0xFF, 0x10],
    );
    assert_eq!(json_body(&response), json!({ "connections": 1 }));
    assert_eq!(alice.expect_binary(), [0x00, 0xFF, 0x10]);
    assert_no_more("alice", &mut [&mut alice]);
}

#[test]
fn body_without_content_type_is_text_if_utf8_and_binary_otherwise() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    assert_eq!(
        api.post("/send/alice", "café ☕".as_bytes()),
        json!({ "connections": 1 })
    );
    assert_eq!(alice.expect_text(), "café ☕");

    let not_utf8 = [0xC3, 0x28, 0xFF, 0x00];
    assert_eq!(
        api.post("/send/alice", &not_utf8),
        json!({ "connections": 1 })
    );
    assert_eq!(alice.expect_binary(), not_utf8);
    assert_no_more("alice", &mut [&mut alice]);
}

#[test]
fn text_content_type_with_a_body_that_is_not_utf8_is_refused() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    let response = api.request(
        "POST",
        "/send/alice",
        Some("text/plain; charset=utf-8"),
        &[0xFF, 0xFE],
    );
    assert_eq!(response.status(), 400);
    assert_eq!(
        json_body(&response),
        json!({ "error": "body is not valid UTF-8; send binary as application/octet-stream" })
    );
    assert_no_more("alice", &mut [&mut alice]);
}

// ---------------------------------------------------------------------------------------------
// POST /broadcast
// ---------------------------------------------------------------------------------------------

#[test]
fn broadcast_reaches_every_bound_connection_but_no_unbound_one() {
    let (server, api) = start(api_config());
    let mut tab1 = RawClient::login(server.addr, "alice");
    let mut tab2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut guest = RawClient::open(server.addr);

    assert_eq!(
        api.post("/broadcast", b"news for all"),
        json!({ "connections": 3 })
    );

    assert_eq!(tab1.expect_text(), "news for all");
    assert_eq!(tab2.expect_text(), "news for all");
    assert_eq!(bob.expect_text(), "news for all");
    // The guest was not logged in: the first frame it gets is the answer to its login.
    guest.send_text("guest");
    assert_eq!(guest.expect_text(), "login success, your uid is guest");
    assert_no_more("guest", &mut [&mut guest]);
    assert_no_more("alice", &mut [&mut tab1, &mut tab2]);
    assert_no_more("bob", &mut [&mut bob]);
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

#[test]
fn adding_a_member_twice_adds_it_once() {
    let (_server, api) = start(api_config());

    assert_eq!(
        api.ok("PUT", "/groups/g/members/alice", b""),
        json!({ "added": true })
    );
    assert_eq!(
        api.ok("PUT", "/groups/g/members/alice", b""),
        json!({ "added": false })
    );
    assert_eq!(api.get("/groups/g")["members"], json!(["alice"]));
}

#[test]
fn group_send_reaches_the_members_connections_only() {
    let (server, api) = start(api_config());
    let mut alice1 = RawClient::login(server.addr, "alice");
    let mut alice2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut dave = RawClient::login(server.addr, "dave");
    for uid in ["alice", "bob"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    assert_eq!(
        api.post("/groups/g/send", b"to the group"),
        json!({ "connections": 3 })
    );

    assert_eq!(alice1.expect_text(), "to the group");
    assert_eq!(alice2.expect_text(), "to the group");
    assert_eq!(bob.expect_text(), "to the group");
    assert_no_more("alice", &mut [&mut alice1, &mut alice2]);
    assert_no_more("bob", &mut [&mut bob]);
    assert_no_more("dave", &mut [&mut dave]);
}

#[test]
fn group_send_leaves_out_the_excluded_uids() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut carol = RawClient::login(server.addr, "carol");
    for uid in ["alice", "bob", "carol"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    assert_eq!(
        api.post("/groups/g/send?exclude=bob,carol", b"alice only"),
        json!({ "connections": 1 })
    );

    assert_eq!(alice.expect_text(), "alice only");
    assert_no_more("alice", &mut [&mut alice]);
    assert_no_more("bob", &mut [&mut bob]);
    assert_no_more("carol", &mut [&mut carol]);
}

#[test]
fn group_and_uid_info_report_members_connections_and_groups() {
    let (server, api) = start(api_config());
    let _alice1 = RawClient::login(server.addr, "alice");
    let _alice2 = RawClient::login(server.addr, "alice");
    let _carol = RawClient::login(server.addr, "carol");
    // Added in unsorted order; bob is offline.
    for uid in ["carol", "alice", "bob"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }
    api.ok("PUT", "/groups/h/members/alice", b"");

    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": ["alice", "bob", "carol"], "online": 2 })
    );
    assert_eq!(
        api.get("/uids/alice"),
        json!({ "uid": "alice", "online": true, "connections": 2, "groups": ["g", "h"] })
    );
    assert_eq!(
        api.get("/uids/bob"),
        json!({ "uid": "bob", "online": false, "connections": 0, "groups": ["g"] })
    );
    assert_eq!(
        api.get("/uids/zoe"),
        json!({ "uid": "zoe", "online": false, "connections": 0, "groups": [] })
    );
    assert_eq!(
        api.get("/groups/nothing"),
        json!({ "group": "nothing", "members": [], "online": 0 })
    );
}

#[test]
fn removed_member_no_longer_gets_group_messages() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    for uid in ["alice", "bob"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    assert_eq!(
        api.ok("DELETE", "/groups/g/members/alice", b""),
        json!({ "removed": true })
    );
    assert_eq!(
        api.ok("DELETE", "/groups/g/members/alice", b""),
        json!({ "removed": false })
    );
    assert_eq!(
        api.post("/groups/g/send", b"without alice"),
        json!({ "connections": 1 })
    );

    assert_eq!(bob.expect_text(), "without alice");
    assert_no_more("bob", &mut [&mut bob]);
    assert_no_more("alice", &mut [&mut alice]);
    assert_eq!(api.get("/uids/alice")["groups"], json!([]));
}

#[test]
fn deleted_group_reports_its_member_count_and_reaches_nobody() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    for uid in ["alice", "bob", "carol"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    assert_eq!(api.ok("DELETE", "/groups/g", b""), json!({ "removed": 3 }));
    assert_eq!(api.ok("DELETE", "/groups/g", b""), json!({ "removed": 0 }));
    assert_eq!(
        api.post("/groups/g/send", b"into the void"),
        json!({ "connections": 0 })
    );
    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": [], "online": 0 })
    );
    assert_eq!(api.get("/uids/alice")["groups"], json!([]));
    assert_no_more("alice", &mut [&mut alice]);
    assert_no_more("bob", &mut [&mut bob]);
}

// ---------------------------------------------------------------------------------------------
// Group membership over disconnects (Config::group_grace)
// ---------------------------------------------------------------------------------------------

// Real time only gives lower bounds: the grace period may run out late on a loaded machine,
// never early. Tests that check something during the grace period use one no stall can
// outlast; tests that wait for its end use a short one and check nothing before it. The exact
// timing (a return ends the grace period, expiry at its end) is unit-tested with a settable
// clock in `src/hub/tests.rs`.

/// A grace period everything a test does fits in.
const LONG_GRACE: Duration = Duration::from_secs(60);

/// A grace period short enough to wait for.
const SHORT_GRACE: Duration = Duration::from_millis(300);

fn grace_config(group_grace: Duration) -> Config {
    Config {
        group_grace,
        ..api_config()
    }
}

#[test]
fn member_reconnecting_within_the_grace_period_keeps_its_groups() {
    let (server, api) = start(grace_config(LONG_GRACE));
    let alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    for uid in ["alice", "bob"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    close_tab(alice);
    // Offline, but still a member during the grace period.
    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": ["alice", "bob"], "online": 1 })
    );
    assert_eq!(
        api.get("/uids/alice"),
        json!({ "uid": "alice", "online": false, "connections": 0, "groups": ["g"] })
    );
    let mut alice = RawClient::login(server.addr, "alice");

    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": ["alice", "bob"], "online": 2 })
    );
    assert_eq!(
        api.post("/groups/g/send", b"welcome back"),
        json!({ "connections": 2 })
    );
    assert_eq!(alice.expect_text(), "welcome back");
    assert_eq!(bob.expect_text(), "welcome back");
    assert_no_more("alice", &mut [&mut alice]);
    assert_no_more("bob", &mut [&mut bob]);
}

#[test]
fn member_offline_past_the_grace_period_leaves_its_groups() {
    let (server, api) = start(grace_config(SHORT_GRACE));
    let alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    for uid in ["alice", "bob"] {
        api.ok("PUT", &format!("/groups/g/members/{uid}"), b"");
    }

    let closed_at = Instant::now();
    close_tab(alice);

    // Bob, online all along, stays.
    assert_eq!(
        wait_for_members(api, "g", &["bob"]),
        json!({ "group": "g", "members": ["bob"], "online": 1 })
    );
    // The server saw the close after `closed_at`, and counts whole milliseconds.
    assert!(
        closed_at.elapsed() >= SHORT_GRACE - Duration::from_millis(1),
        "alice left after {:?}, before the grace period of {SHORT_GRACE:?}",
        closed_at.elapsed()
    );
    assert_eq!(
        api.get("/uids/alice"),
        json!({ "uid": "alice", "online": false, "connections": 0, "groups": [] })
    );

    // Coming back later does not restore the membership.
    let mut alice = RawClient::login(server.addr, "alice");
    assert_eq!(
        api.post("/groups/g/send", b"bob only"),
        json!({ "connections": 1 })
    );
    assert_eq!(bob.expect_text(), "bob only");
    assert_no_more("alice", &mut [&mut alice]);
}

#[test]
fn uid_added_while_offline_gets_group_messages_if_it_connects_within_the_grace_period() {
    let (server, api) = start(grace_config(LONG_GRACE));

    assert_eq!(
        api.ok("PUT", "/groups/g/members/carol", b""),
        json!({ "added": true })
    );
    assert_eq!(
        api.ok("PUT", "/groups/g/members/dan", b""),
        json!({ "added": true })
    );
    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": ["carol", "dan"], "online": 0 })
    );
    let mut carol = RawClient::login(server.addr, "carol");

    assert_eq!(
        api.get("/groups/g"),
        json!({ "group": "g", "members": ["carol", "dan"], "online": 1 })
    );
    assert_eq!(
        api.post("/groups/g/send", b"hello carol"),
        json!({ "connections": 1 })
    );
    assert_eq!(carol.expect_text(), "hello carol");
    assert_no_more("carol", &mut [&mut carol]);
}

#[test]
fn uid_added_while_offline_that_never_connects_leaves_after_the_grace_period() {
    let (server, api) = start(grace_config(SHORT_GRACE));
    // Carol is online when added, so no grace period runs for her.
    let mut carol = RawClient::login(server.addr, "carol");
    api.ok("PUT", "/groups/g/members/carol", b"");
    let added_at = Instant::now();
    assert_eq!(
        api.ok("PUT", "/groups/g/members/dan", b""),
        json!({ "added": true })
    );

    // Dan never connects and is dropped; carol stays.
    assert_eq!(
        wait_for_members(api, "g", &["carol"]),
        json!({ "group": "g", "members": ["carol"], "online": 1 })
    );
    // The server added dan after `added_at`, and counts whole milliseconds.
    assert!(
        added_at.elapsed() >= SHORT_GRACE - Duration::from_millis(1),
        "dan left after {:?}, before the grace period of {SHORT_GRACE:?}",
        added_at.elapsed()
    );
    assert_eq!(
        api.get("/uids/dan"),
        json!({ "uid": "dan", "online": false, "connections": 0, "groups": [] })
    );
    assert_eq!(
        api.post("/groups/g/send", b"still here"),
        json!({ "connections": 1 })
    );
    assert_eq!(carol.expect_text(), "still here");
    assert_no_more("carol", &mut [&mut carol]);
}

// ---------------------------------------------------------------------------------------------
// POST /batch
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_answers_each_item_and_delivers_exactly_what_each_client_is_owed() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut carol = RawClient::login(server.addr, "carol");
    let mut dave = RawClient::login(server.addr, "dave");
    let mut x = RawClient::login(server.addr, "x");
    for uid in ["alice", "bob", "carol"] {
        api.ok("PUT", &format!("/groups/team/members/{uid}"), b"");
    }
    let items = json!([
        { "uid": "alice", "data": "for alice" },
        { "group": "team", "data": "for the team", "exclude": ["bob"] },
        { "all": true, "data": "for everyone" },
        { "uid": "x", "data": "AAE=", "binary": true },
        { "uid": "alice", "group": "team", "data": "ambiguous" },
        { "data": "no recipient" },
        { "uid": "nobody", "data": "lost" },
        { "uid": "all", "data": "reserved" },
        { "uid": "x", "data": "not base64!", "binary": true },
    ]);

    let answer = api.post("/batch", items.to_string().as_bytes());

    let results = answer["results"].as_array().expect("results array");
    let one_of = "each item needs exactly one of \"uid\", \"group\" or \"all\": true";
    assert_eq!(
        results[..8],
        [
            json!({ "connections": 1 }),
            json!({ "connections": 2 }),
            json!({ "connections": 5 }),
            json!({ "connections": 1 }),
            json!({ "error": one_of }),
            json!({ "error": one_of }),
            json!({ "connections": 0 }),
            json!({ "error": "invalid uid: uid 'all' is reserved for broadcasts" }),
        ]
    );
    assert_eq!(results.len(), 9, "{answer}");
    let base64_error = results[8]["error"]
        .as_str()
        .expect("an error for bad base64");
    assert!(
        base64_error.starts_with("data is not base64: "),
        "{base64_error}"
    );
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");

    assert_eq!(alice.expect_text(), "for alice");
    assert_eq!(alice.expect_text(), "for the team");
    assert_eq!(alice.expect_text(), "for everyone");
    assert_eq!(bob.expect_text(), "for everyone");
    assert_eq!(carol.expect_text(), "for the team");
    assert_eq!(carol.expect_text(), "for everyone");
    assert_eq!(dave.expect_text(), "for everyone");
    assert_eq!(x.expect_text(), "for everyone");
    assert_eq!(x.expect_binary(), [0x00, 0x01]);
    assert_no_more("alice", &mut [&mut alice]);
    assert_no_more("bob", &mut [&mut bob]);
    assert_no_more("carol", &mut [&mut carol]);
    assert_no_more("dave", &mut [&mut dave]);
    assert_no_more("x", &mut [&mut x]);
}

#[test]
fn batch_with_a_malformed_item_is_refused_whole() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    let body = json!([
        { "uid": "alice", "data": "would be fine" },
        { "uid": "alice" },
    ]);
    let response = api.request("POST", "/batch", None, body.to_string().as_bytes());

    assert_eq!(response.status(), 400);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("malformed JSON: "), "{error}");
    assert_no_more("alice", &mut [&mut alice]);
}

// ---------------------------------------------------------------------------------------------
// POST /uids/{uid}/close
// ---------------------------------------------------------------------------------------------

#[test]
fn kick_closes_every_tab_of_the_uid_with_the_given_code_and_reason() {
    let (server, api) = start(api_config());
    let mut tab1 = RawClient::login(server.addr, "alice");
    let mut tab2 = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");

    assert_eq!(
        api.post("/uids/alice/close", br#"{"code":4000,"reason":"kicked"}"#),
        json!({ "connections": 2 })
    );

    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(tab.expect_close(), (Some(4000), "kicked".to_owned()));
        tab.expect_eof();
    }
    assert_no_more("bob", &mut [&mut bob]);
    assert_eq!(
        api.get("/uids/alice"),
        json!({ "uid": "alice", "online": false, "connections": 0, "groups": [] })
    );
    assert_eq!(
        api.post("/uids/alice/close", b""),
        json!({ "connections": 0 })
    );
}

#[test]
fn kick_without_a_body_closes_normally() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    assert_eq!(
        api.post("/uids/alice/close", b""),
        json!({ "connections": 1 })
    );

    assert_eq!(alice.expect_close(), (Some(1000), String::new()));
    alice.expect_eof();
}

#[test]
fn kick_with_a_code_that_may_not_be_sent_is_refused() {
    let (server, api) = start(api_config());
    let mut alice = RawClient::login(server.addr, "alice");

    let response = api.request("POST", "/uids/alice/close", None, br#"{"code":1005}"#);

    assert_eq!(response.status(), 400);
    assert_eq!(
        json_body(&response),
        json!({ "error": "close code 1005 may not be sent" })
    );
    assert_no_more("alice", &mut [&mut alice]);
}

// ---------------------------------------------------------------------------------------------
// GET /stats, GET /metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_and_metrics_follow_logins_sends_and_closes() {
    let (server, api) = start(api_config());
    let before = stats(api);
    assert_eq!(
        before["connections"],
        json!({ "open": 0, "bound": 0, "handshaking": 0, "closing": 0, "accepted_total": 0 })
    );
    assert_eq!(before["uids_online"], 0);
    assert_eq!(before["groups"], 0);
    assert_eq!(before["messages"]["out"], 0);
    assert_eq!(before["closes_by_code"], json!({}));

    let mut alice1 = RawClient::login(server.addr, "alice");
    let mut alice2 = RawClient::login(server.addr, "alice");
    let bob = RawClient::login(server.addr, "bob");
    let _guest = RawClient::open(server.addr);
    api.ok("PUT", "/groups/g/members/bob", b"");

    let logged_in = stats(api);
    assert_eq!(logged_in["connections"]["open"], 4);
    assert_eq!(logged_in["connections"]["bound"], 3);
    assert_eq!(logged_in["connections"]["accepted_total"], 4);
    assert_eq!(logged_in["uids_online"], 2);
    assert_eq!(logged_in["groups"], 1);
    // The three login answers.
    assert_eq!(logged_in["messages"]["out"], 3);
    assert_eq!(logged_in["messages"]["in"], 3);

    assert_eq!(api.post("/send/alice", b"hi"), json!({ "connections": 2 }));
    assert_eq!(alice1.expect_text(), "hi");
    assert_eq!(alice2.expect_text(), "hi");
    close_tab(bob);

    let after = stats(api);
    assert_eq!(after["connections"]["open"], 3);
    assert_eq!(after["connections"]["bound"], 2);
    assert_eq!(after["uids_online"], 1);
    // Bob is offline but keeps his group for the (default 30 s) grace period.
    assert_eq!(after["groups"], 1);
    assert_eq!(after["messages"]["out"], 5);
    assert_eq!(after["closes_by_code"], json!({ "1000": 1 }));

    let metrics = api.request("GET", "/metrics", None, b"");
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    for line in [
        "wspush_uids_online 1\n",
        "wspush_messages_sent_total 5\n",
        "wspush_bound_connections 2\n",
        "wspush_connections{state=\"open\"} 3\n",
        "wspush_groups 1\n",
        "wspush_closes_total{code=\"1000\"} 1\n",
        "# TYPE wspush_messages_sent_total counter\n",
        "# TYPE wspush_uids_online gauge\n",
    ] {
        assert!(text.contains(line), "no {line:?} in /metrics:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// GET /health
// ---------------------------------------------------------------------------------------------

#[test]
fn health_is_ok_while_running_and_503_while_shutting_down() {
    let (mut server, api) = start(Config {
        // Long enough that the server stays in shutdown while a client holds on.
        shutdown_timeout: Duration::from_secs(60),
        close_timeout: Duration::from_secs(60),
        ..api_config()
    });
    let health = api.request("GET", "/health", None, b"");
    assert_eq!(health.status(), 200);
    assert_eq!(json_body(&health), json!({ "status": "ok" }));
    let mut alice = RawClient::login(server.addr, "alice");

    server.request_shutdown();
    // The close frame is queued when the shutdown begins: from then on /health says so.
    assert_eq!(
        alice.expect_close(),
        (Some(1001), "server shutting down".to_owned())
    );
    let health = api.request("GET", "/health", None, b"");
    assert_eq!(health.status(), 503, "{}", health.text());
    assert_eq!(json_body(&health), json!({ "status": "shutting down" }));

    // The last client leaving completes the shutdown.
    drop(alice);
    server.stop().expect("server stopped cleanly");
}
