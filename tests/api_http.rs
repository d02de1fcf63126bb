//! The push API's HTTP layer over real loopback sockets: keep-alive, pipelining, split and
//! chunked requests, `100 Continue`, every error status with its JSON body, timeouts, the API
//! key, refusing a public address without a key, the binary's API listener, and an independent
//! client (ureq) against the endpoints.

mod common;
use common::http::{Http, Response};
use common::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wspush::{ApiConfig, Config, Server};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// A `GET` request for `path`.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// A `POST` request for `path` with a text body framed by `Content-Length`.
fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request with `method` and no body.
fn bodiless(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
}

/// Asserts an error response: status line, JSON content type and `{"error": message}`.
fn assert_error(response: &Response, status_line: &str, message: &str) {
    assert_eq!(response.status_line, status_line, "{response:?}");
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(response.json(), json!({ "error": message }), "{response:?}");
}

/// Asserts a fatal error: the error response says `Connection: close`, then the server closes.
fn assert_error_then_close(client: &mut Http, status_line: &str, message: &str) {
    let response = client.read_response();
    assert_error(&response, status_line, message);
    assert!(response.closes(), "{response:?}");
    client.expect_eof();
}

/// An in-process push server with the default API configuration.
fn default_api_server() -> TestServer {
    TestServer::push_with_api(ApiConfig::default())
}

fn api_addr(server: &TestServer) -> SocketAddr {
    server.api.expect("the API is enabled")
}

/// The exact head of a JSON response with `body`, plus `extra` header lines.
fn json_head(status_line: &str, body: &str, extra: &str) -> String {
    format!(
        "{status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
}

const HEALTH_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                               Content-Length: 15\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// Connection handling: keep-alive, close, pipelining, split requests
// ---------------------------------------------------------------------------------------------

#[test]
fn keep_alive_connection_answers_several_requests_in_turn() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));

    let health = api.request(get("/health"));
    assert_eq!(health.head, HEALTH_RESPONSE);
    assert_eq!(health.text(), r#"{"status":"ok"}"#);

    let sent = api.request(post("/send/alice", "first"));
    assert_eq!(sent.status_line, "HTTP/1.1 200 OK");
    assert_eq!(sent.text(), r#"{"connections":1}"#);
    assert!(!sent.closes());
    assert_eq!(alice.expect_text(), "first");

    let uid = api.request(get("/uids/alice"));
    assert_eq!(uid.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        uid.json(),
        json!({ "uid": "alice", "online": true, "connections": 1, "groups": [] })
    );

    let again = api.request(post("/send/alice", "second"));
    assert_eq!(again.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "second");
}

#[test]
fn connection_close_request_gets_connection_close_then_eof() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    assert_eq!(api.request(get("/health")).status(), 200);

    let last = api.request("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(
        last.head,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(last.text(), r#"{"status":"ok"}"#);
    api.expect_eof();
}

#[test]
fn requests_sent_with_the_clients_fin_are_still_answered() {
    let server = TestServer::push_with_api(ApiConfig::default());
    let mut bob = RawClient::login(server.addr, "bob");
    let mut api = Http::connect(api_addr(&server));
    // Two requests and the FIN in one go, as `printf ... | nc -N` sends them.
    api.send(format!("{}{}", post("/send/bob", "hi"), get("/health")));
    api.finish_sending();
    assert_eq!(api.read_response().json(), json!({ "connections": 1 }));
    assert_eq!(api.read_response().json(), json!({ "status": "ok" }));
    api.expect_eof();
    assert_eq!(bob.expect_text(), "hi");
}

#[test]
fn http_1_0_request_without_keep_alive_is_answered_then_closed() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let response = api.request("GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(
        response.head,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(response.text(), r#"{"status":"ok"}"#);
    api.expect_eof();
}

#[test]
fn http_1_0_request_with_keep_alive_keeps_the_connection_open() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let first = api.request("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    assert!(!first.closes(), "{first:?}");
    let second = api.request(get("/health"));
    assert_eq!(second.head, HEALTH_RESPONSE);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));

    let pipeline = [
        bodiless("PUT", "/groups/room/members/alice"),
        get("/groups/room"),
        post("/groups/room/send", "to the room"),
        get("/nowhere"),
        post("/send/alice", "direct"),
        get("/uids/alice"),
    ]
    .concat();
    api.send(pipeline);

    let added = api.read_response();
    assert_eq!(added.status_line, "HTTP/1.1 200 OK");
    assert_eq!(added.text(), r#"{"added":true}"#);
    let group = api.read_response();
    assert_eq!(group.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        group.json(),
        json!({ "group": "room", "members": ["alice"], "online": 1 })
    );
    let sent = api.read_response();
    assert_eq!(sent.text(), r#"{"connections":1}"#);
    // A 404 in the middle of a pipeline does not end it.
    let missing = api.read_response();
    assert_error(&missing, "HTTP/1.1 404 Not Found", "no route for /nowhere");
    assert!(!missing.closes());
    let direct = api.read_response();
    assert_eq!(direct.text(), r#"{"connections":1}"#);
    let uid = api.read_response();
    assert_eq!(
        uid.json(),
        json!({ "uid": "alice", "online": true, "connections": 1, "groups": ["room"] })
    );

    assert_eq!(alice.expect_text(), "to the room");
    assert_eq!(alice.expect_text(), "direct");
}

#[test]
fn pipeline_stops_at_a_fatal_error_and_later_requests_are_not_answered() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    api.send(
        [
            get("/health"),
            "hello world\r\n\r\n".to_owned(),
            get("/health"),
        ]
        .concat(),
    );
    let first = api.read_response();
    assert_eq!(first.head, HEALTH_RESPONSE);
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 400 Bad Request",
        "malformed HTTP request",
    );
}

#[test]
fn pipelined_requests_with_responses_past_the_output_high_water_are_all_answered() {
    // Responses far larger than their requests: a group of 2,400 members with 128-byte uids
    // lists ~315 KB per `GET`, so eight pipelined `GET`s (360 bytes, one read) need ~2.5 MB
    // of output, past the 1 MiB the server buffers before it stops reading.
    let server = TestServer::push(Config {
        api: Some(ApiConfig::default()),
        group_grace: Duration::from_secs(3600),
        ..quiet_config()
    });
    let mut api = Http::connect(api_addr(&server));
    const MEMBERS: usize = 2400;
    let uid = |i: usize| format!("{i:0128}");
    for batch in (0..MEMBERS).collect::<Vec<_>>().chunks(300) {
        let puts: String = batch
            .iter()
            .map(|&i| bodiless("PUT", &format!("/groups/big/members/{}", uid(i))))
            .collect();
        api.send(puts);
        for _ in batch {
            assert_eq!(api.read_response().text(), r#"{"added":true}"#);
        }
    }

    const GETS: usize = 8;
    api.send(get("/groups/big").repeat(GETS));
    for n in 0..GETS {
        // Shown if the read below times out: how far the pipeline got.
        eprintln!("waiting for pipelined response {n} of {GETS}");
        let response = api.read_response();
        assert_eq!(response.status_line, "HTTP/1.1 200 OK", "response {n}");
        let members = response.json()["members"].as_array().unwrap().len();
        assert_eq!(members, MEMBERS, "response {n}");
    }
    // Still in step: the next request gets its own answer.
    assert_eq!(api.request(get("/health")).head, HEALTH_RESPONSE);
}

#[test]
fn request_split_byte_by_byte_across_writes_is_answered() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));
    let request = post("/send/alice", "one byte at a time");
    for byte in request.as_bytes() {
        api.send([*byte]);
    }
    let response = api.read_response();
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "one byte at a time");

    // The connection is still in step for a chunked request split the same way.
    let chunked = "POST /send/alice HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    for byte in chunked.as_bytes() {
        api.send([*byte]);
    }
    assert_eq!(api.read_response().text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "abcde");
}

#[test]
fn head_request_is_answered_without_a_body() {
    // RFC 9112 §6.3: a response to HEAD ends at the blank line after its headers, whatever
    // Content-Length says; any bytes after it would be read as the next response.
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    api.send(
        [
            "HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            get("/health"),
        ]
        .concat(),
    );
    let head = api.read_head();
    assert!(head.status_line.starts_with("HTTP/1.1 "), "{head:?}");
    let next = api.read_response();
    assert_eq!(
        next.status_line, "HTTP/1.1 200 OK",
        "the HEAD response carried a body, which was taken for the next response: {next:?}"
    );
    assert_eq!(next.text(), r#"{"status":"ok"}"#);
}

// ---------------------------------------------------------------------------------------------
// Request bodies: chunked, 100-continue
// ---------------------------------------------------------------------------------------------

#[test]
fn chunked_broadcast_body_reaches_every_bound_connection() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let mut api = Http::connect(api_addr(&server));
    api.send(
        "POST /broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    api.send("6;name=value\r\n world\r\n0\r\nX-Trailer: ignored\r\n\r\n");
    let response = api.read_response();
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.text(), r#"{"connections":2}"#);
    assert_eq!(alice.expect_text(), "hello world");
    assert_eq!(bob.expect_text(), "hello world");
    // The next request on the connection is parsed after the trailer.
    assert_eq!(api.request(get("/health")).head, HEALTH_RESPONSE);
}

#[test]
fn expect_100_continue_gets_continue_before_the_body_and_then_the_response() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));
    api.send(
        "POST /send/alice HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\
         Content-Length: 7\r\n\r\n",
    );
    let interim = api.read_response();
    assert_eq!(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(
        api.buffered().is_empty(),
        "nothing follows 100 Continue yet"
    );

    api.send("go on!!");
    let response = api.read_response();
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "go on!!");

    // A second such request on the same connection gets its own 100 Continue.
    api.send(
        "POST /send/alice HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(api.read_response().head, "HTTP/1.1 100 Continue\r\n\r\n");
    api.send("4\r\nmore\r\n0\r\n\r\n");
    assert_eq!(api.read_response().text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "more");
}

#[test]
fn expect_100_continue_with_an_oversized_body_gets_413_instead_of_continue() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    api.send(
        "POST /send/alice HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1048577\r\n\r\n",
    );
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 413 Payload Too Large",
        "request body too large",
    );
}

// ---------------------------------------------------------------------------------------------
// Error statuses
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_route_gets_404_and_the_connection_stays_open() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let response = api.request(get("/x"));
    let body = r#"{"error":"no route for /x"}"#;
    assert_eq!(response.head, json_head("HTTP/1.1 404 Not Found", body, ""));
    assert_eq!(response.text(), body);
    // The query is not part of the path reported.
    assert_error(
        &api.request(get("/x?y=1")),
        "HTTP/1.1 404 Not Found",
        "no route for /x",
    );
    assert_error(
        &api.request(get("/")),
        "HTTP/1.1 404 Not Found",
        "no route for /",
    );
    assert_error(
        &api.request(get("/send/a/b")),
        "HTTP/1.1 404 Not Found",
        "no route for /send/a/b",
    );
    assert_eq!(api.request(get("/health")).head, HEALTH_RESPONSE);
}

#[test]
fn wrong_method_gets_405_with_an_allow_header() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let cases = [
        ("GET", "/send/a", "POST"),
        ("POST", "/groups/g", "GET, DELETE"),
        ("GET", "/groups/g/members/u", "PUT, DELETE"),
        ("DELETE", "/broadcast", "POST"),
        ("PUT", "/batch", "POST"),
        ("POST", "/health", "GET"),
        ("GET", "/uids/u/close", "POST"),
    ];
    for (method, path, allow) in cases {
        let response = api.request(bodiless(method, path));
        assert_error(
            &response,
            "HTTP/1.1 405 Method Not Allowed",
            &format!("{method} is not allowed here"),
        );
        assert_eq!(response.header("Allow"), Some(allow), "{method} {path}");
        assert!(!response.closes(), "{response:?}");
    }
    let exact = api.request(get("/send/a"));
    let body = r#"{"error":"GET is not allowed here"}"#;
    assert_eq!(
        exact.head,
        json_head("HTTP/1.1 405 Method Not Allowed", body, "Allow: POST\r\n")
    );
    assert_eq!(exact.text(), body);
}

#[test]
fn declared_body_over_max_body_gets_413_before_the_body_is_sent() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    api.send("POST /send/alice HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048577\r\n\r\n");
    let response = api.read_response();
    let body = r#"{"error":"request body too large"}"#;
    assert_eq!(
        response.head,
        json_head(
            "HTTP/1.1 413 Payload Too Large",
            body,
            "Connection: close\r\n"
        )
    );
    assert_eq!(response.text(), body);
    api.expect_eof();

    // A length too large for any integer is refused the same way.
    let mut huge = Http::connect(api_addr(&server));
    huge.send("POST /send/a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    assert_error_then_close(
        &mut huge,
        "HTTP/1.1 413 Payload Too Large",
        "request body too large",
    );
}

#[test]
fn body_of_exactly_max_body_is_accepted_and_one_more_byte_is_413() {
    let server = TestServer::push_with_api(ApiConfig {
        max_body: 16,
        ..Default::default()
    });
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));
    let fits = api.request(post("/send/alice", "0123456789abcdef"));
    assert_eq!(fits.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "0123456789abcdef");
    api.send(post("/send/alice", "0123456789abcdefg"));
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 413 Payload Too Large",
        "request body too large",
    );
}

#[test]
fn chunked_body_growing_over_max_body_gets_413() {
    let server = TestServer::push_with_api(ApiConfig {
        max_body: 16,
        ..Default::default()
    });
    let mut api = Http::connect(api_addr(&server));
    api.send(
        "POST /broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
         8\r\n01234567\r\n8\r\n89abcdef\r\n",
    );
    // 16 bytes so far, within the limit; a chunk of 1 more is refused from its size line.
    api.send("1\r\n");
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 413 Payload Too Large",
        "request body too large",
    );
}

#[test]
fn headers_over_max_header_size_get_431() {
    let server = default_api_server();
    let addr = api_addr(&server);

    let mut complete = Http::connect(addr);
    complete.send(format!(
        "GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    ));
    let response = complete.read_response();
    let body = r#"{"error":"request headers too large"}"#;
    assert_eq!(
        response.head,
        json_head(
            "HTTP/1.1 431 Request Header Fields Too Large",
            body,
            "Connection: close\r\n"
        )
    );
    assert_eq!(response.text(), body);
    complete.expect_eof();

    // Refused as soon as it is too long, without waiting for the end of the head.
    let mut unterminated = Http::connect(addr);
    unterminated.send(format!(
        "GET /health HTTP/1.1\r\nX-Pad: {}",
        "a".repeat(9000)
    ));
    assert_error_then_close(
        &mut unterminated,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "request headers too large",
    );

    // Too many header lines count as too large too.
    let mut many = Http::connect(addr);
    let lines: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    many.send(format!("GET /health HTTP/1.1\r\n{lines}\r\n"));
    assert_error_then_close(
        &mut many,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "request headers too large",
    );
}

#[test]
fn head_of_exactly_max_header_size_is_accepted() {
    let server = default_api_server();
    let addr = api_addr(&server);
    let head_of = |len: usize| {
        let fixed = "GET /health HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
        let head = format!(
            "GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(len - fixed)
        );
        assert_eq!(head.len(), len);
        head
    };
    let mut api = Http::connect(addr);
    assert_eq!(api.request(head_of(8192)).head, HEALTH_RESPONSE);
    api.send(head_of(8193));
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "request headers too large",
    );
}

#[test]
fn malformed_request_line_gets_400_and_close() {
    let server = default_api_server();
    for request in [
        "hello world\r\n\r\n",
        "GET /health HTTP/9.9\r\n\r\n",
        "GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let mut api = Http::connect(api_addr(&server));
        api.send(request);
        assert_error_then_close(
            &mut api,
            "HTTP/1.1 400 Bad Request",
            "malformed HTTP request",
        );
    }
}

#[test]
fn both_content_length_and_transfer_encoding_get_400_and_close() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    api.send(
        "POST /send/alice HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n",
    );
    assert_error_then_close(
        &mut api,
        "HTTP/1.1 400 Bad Request",
        "both Content-Length and Transfer-Encoding: ambiguous body",
    );
}

#[test]
fn bad_body_framing_gets_400_and_close() {
    let server = default_api_server();
    let cases = [
        (
            "POST /send/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "conflicting Content-Length headers",
        ),
        (
            "POST /send/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "invalid Content-Length",
        ),
        (
            "POST /send/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid chunk size",
        ),
        (
            "POST /send/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            "chunk not followed by CRLF",
        ),
    ];
    for (request, message) in cases {
        let mut api = Http::connect(api_addr(&server));
        api.send(request);
        assert_error_then_close(&mut api, "HTTP/1.1 400 Bad Request", message);
    }
}

#[test]
fn transfer_encoding_other_than_chunked_gets_501_and_close() {
    let server = default_api_server();
    for encoding in ["gzip", "gzip, chunked"] {
        let mut api = Http::connect(api_addr(&server));
        api.send(format!(
            "POST /send/alice HTTP/1.1\r\nTransfer-Encoding: {encoding}\r\n\r\n"
        ));
        assert_error_then_close(
            &mut api,
            "HTTP/1.1 501 Not Implemented",
            "only chunked transfer encoding is supported",
        );
    }
}

#[test]
fn invalid_uid_in_the_path_gets_400_and_percent_decoding_addresses_the_uid() {
    let server = default_api_server();
    let mut spaced = RawClient::login(server.addr, "bob smith");
    let mut api = Http::connect(api_addr(&server));
    let long = "x".repeat(129);
    let cases = [
        (
            "/send/all",
            "invalid uid: uid 'all' is reserved for broadcasts",
        ),
        ("/send/%3A", "invalid uid: uid contains ':'"),
        ("/send/a:b", "invalid uid: uid contains ':'"),
        ("/send/", "invalid uid: uid is empty"),
        (
            &format!("/send/{long}"),
            "invalid uid: uid is longer than 128 bytes",
        ),
        ("/send/%FF", "path is not UTF-8 after percent-decoding"),
    ];
    for (path, message) in cases {
        let response = api.request(post(path, "x"));
        assert_error(&response, "HTTP/1.1 400 Bad Request", message);
        assert!(!response.closes(), "{response:?}");
    }
    let longest = api.request(post(&format!("/send/{}", "x".repeat(128)), "x"));
    assert_eq!(longest.text(), r#"{"connections":0}"#);

    let decoded = api.request(post("/send/bob%20smith", "found you"));
    assert_eq!(decoded.status_line, "HTTP/1.1 200 OK");
    assert_eq!(decoded.text(), r#"{"connections":1}"#);
    assert_eq!(spaced.expect_text(), "found you");
    let info = api.request(get("/uids/bob%20smith"));
    assert_eq!(info.json()["uid"], "bob smith");
}

#[test]
fn invalid_group_in_the_path_gets_400() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let long = "g".repeat(129);
    let cases = [
        (
            bodiless("GET", "/groups/all"),
            "invalid group: group name 'all' is reserved for broadcasts",
        ),
        (
            post("/groups/a%3Ab/send", "x"),
            "invalid group: group name contains ':'",
        ),
        (
            bodiless("PUT", &format!("/groups/{long}/members/alice")),
            "invalid group: group name is longer than 128 bytes",
        ),
        (
            bodiless("DELETE", "/groups/"),
            "invalid group: group name is empty",
        ),
        (
            bodiless("PUT", "/groups/room/members/all"),
            "invalid uid: uid 'all' is reserved for broadcasts",
        ),
    ];
    for (request, message) in cases {
        assert_error(&api.request(&request), "HTTP/1.1 400 Bad Request", message);
    }
}

#[test]
fn malformed_json_on_batch_gets_400_with_the_parse_error() {
    let server = default_api_server();
    let mut api = Http::connect(api_addr(&server));
    let truncated = api.request(post("/batch", "["));
    assert_error(
        &truncated,
        "HTTP/1.1 400 Bad Request",
        "malformed JSON: EOF while parsing a list at line 1 column 1",
    );
    assert!(!truncated.closes());

    for body in [
        "not json",
        "{}",
        r#"[{"uid":"a","data":1}]"#,
        r#"[{"recipient":"a","data":"x"}]"#,
        "",
    ] {
        let response = api.request(post("/batch", body));
        assert_eq!(response.status_line, "HTTP/1.1 400 Bad Request", "{body}");
        let message = response.json()["error"].as_str().unwrap().to_owned();
        assert!(message.starts_with("malformed JSON: "), "{body}: {message}");
    }
    let unknown = api.request(post("/batch", r#"[{"recipient":"a","data":"x"}]"#));
    let message = unknown.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("unknown field `recipient`"), "{message}");
}

#[test]
fn non_utf8_body_declared_as_text_gets_400_and_binary_types_pass() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut api = Http::connect(api_addr(&server));
    let head = |content_type: &str| {
        format!("POST /send/alice HTTP/1.1\r\n{content_type}Content-Length: 2\r\n\r\n").into_bytes()
    };
    let with_body = |mut head: Vec<u8>| {
        head.extend_from_slice(&[0xFF, 0xFE]);
        head
    };

    let refused = api.request(with_body(head("Content-Type: text/plain\r\n")));
    assert_error(
        &refused,
        "HTTP/1.1 400 Bad Request",
        "body is not valid UTF-8; send binary as application/octet-stream",
    );
    assert!(!refused.closes());

    let octets = api.request(with_body(head(
        "Content-Type: Application/Octet-Stream; x=y\r\n",
    )));
    assert_eq!(octets.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_binary(), [0xFF, 0xFE]);

    let untyped = api.request(with_body(head("")));
    assert_eq!(untyped.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_binary(), [0xFF, 0xFE]);
}

#[test]
fn request_stalled_mid_body_past_the_timeout_gets_408_then_close() {
    let server = TestServer::push_with_api(ApiConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let mut api = Http::connect(api_addr(&server));
    api.send("POST /send/alice HTTP/1.1\r\nContent-Length: 10\r\n\r\nhel");
    let stalled_at = Instant::now();
    let response = api.read_response();
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(250),
        "408 after only {:?}",
        stalled_at.elapsed()
    );
    let body = r#"{"error":"request not completed in time"}"#;
    assert_eq!(
        response.head,
        json_head(
            "HTTP/1.1 408 Request Timeout",
            body,
            "Connection: close\r\n"
        )
    );
    assert_eq!(response.text(), body);
    api.expect_eof();

    // The same for a request stalled inside its head.
    let mut head = Http::connect(api_addr(&server));
    head.send("GET /health HTTP/1.1\r\nHost: 127.0");
    assert_error_then_close(
        &mut head,
        "HTTP/1.1 408 Request Timeout",
        "request not completed in time",
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_silently_after_the_timeout() {
    let server = TestServer::push_with_api(ApiConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let mut api = Http::connect(api_addr(&server));
    assert_eq!(api.request(get("/health")).head, HEALTH_RESPONSE);
    let idle_since = Instant::now();
    api.expect_eof();
    assert!(
        idle_since.elapsed() >= Duration::from_millis(250),
        "closed after only {:?}",
        idle_since.elapsed()
    );

    // A connection that never sent anything is closed the same way.
    let mut silent = Http::connect(api_addr(&server));
    silent.expect_eof();
}

#[test]
fn api_errors_do_not_affect_websocket_clients() {
    let server = TestServer::push_with_api(ApiConfig {
        max_body: 64,
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let mut alice = RawClient::login(server.addr, "alice");
    let addr = api_addr(&server);

    let fatal = [
        "hello world\r\n\r\n".to_owned(),
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
        "POST /send/alice HTTP/1.1\r\nContent-Length: 65\r\n\r\n".to_owned(),
        "POST /send/alice HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_owned(),
        "POST /send/alice HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_owned(),
    ];
    let mut closed = Vec::new();
    for request in fatal {
        let mut api = Http::connect(addr);
        api.send(request);
        let response = api.read_response();
        assert!(response.status() >= 400, "{response:?}");
        closed.push(api);
    }
    // One client stalls mid-body and one sends invalid bytes and hangs up at once.
    let mut stalled = Http::connect(addr);
    stalled.send("POST /send/alice HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    let mut rude = Http::connect(addr);
    rude.send([0u8, 1, 2, 3, 0xFF, b'\r', b'\n', b'\r', b'\n']);
    drop(rude);

    let mut api = Http::connect(addr);
    for request in [
        get("/x"),
        get("/send/alice"),
        post("/send/all", "x"),
        post("/batch", "[{"),
    ] {
        assert!(api.request(request).status() >= 400);
    }
    let sent = api.request(post("/send/alice", "still here"));
    assert_eq!(sent.text(), r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "still here");

    // The stalled client times out with 408; alice is untouched by that too.
    assert_eq!(stalled.read_response().status(), 408);
    alice.send_text("alice:echo");
    assert_eq!(alice.expect_text(), "echo");
}

// ---------------------------------------------------------------------------------------------
// API key
// ---------------------------------------------------------------------------------------------

#[test]
fn api_key_is_required_as_a_bearer_token() {
    let server = TestServer::push_with_api(ApiConfig {
        key: Some("s3cret".into()),
        ..Default::default()
    });
    let mut api = Http::connect(api_addr(&server));
    let unauthorized = |response: &Response| {
        assert_error(
            response,
            "HTTP/1.1 401 Unauthorized",
            "missing or wrong API key (Authorization: Bearer <key>)",
        );
        assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
        assert!(!response.closes(), "{response:?}");
    };

    unauthorized(&api.request(get("/health")));
    // Routing is not revealed without the key.
    unauthorized(&api.request(get("/no-such-route")));
    for authorization in [
        "Bearer wrong",
        "Bearer s3cre",
        "Bearer s3cretX",
        "Basic czNjcmV0",
        "s3cret",
        "Bearer ",
    ] {
        let response = api.request(format!(
            "GET /health HTTP/1.1\r\nAuthorization: {authorization}\r\n\r\n"
        ));
        unauthorized(&response);
    }

    for authorization in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
        let response = api.request(format!(
            "GET /health HTTP/1.1\r\nAuthorization: {authorization}\r\n\r\n"
        ));
        assert_eq!(response.head, HEALTH_RESPONSE, "{authorization}");
        assert_eq!(response.text(), r#"{"status":"ok"}"#);
    }
}

// ---------------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------------

#[test]
fn non_loopback_api_without_a_key_refuses_to_start() {
    let config = |key: Option<&str>| Config {
        api: Some(ApiConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            key: key.map(str::to_owned),
            ..Default::default()
        }),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let Err(error) = Server::bind(config(None), wspush::Echo) else {
        panic!("bound a public API without a key");
    };
    let message = error.to_string();
    assert!(message.contains("--api-key"), "{message}");
    assert!(message.contains("0.0.0.0:0"), "{message}");

    let server = Server::bind(config(Some("k")), wspush::Echo).expect("bind with a key");
    let api = server.api_addr().expect("the API is bound");
    assert!(api.ip().is_unspecified(), "{api}");
    assert_ne!(api.port(), 0);
}

#[test]
fn binary_serves_the_api_by_default() {
    let server = BinaryServer::start(&[]);
    let addr = server.api.expect("the binary serves the API");
    let mut api = Http::connect(addr);
    let response = api.request(get("/health"));
    assert_eq!(response.head, HEALTH_RESPONSE);
    assert_eq!(response.text(), r#"{"status":"ok"}"#);
}

#[test]
fn binary_api_can_be_switched_off() {
    let server = BinaryServer::start(&["--api-listen", "off"]);
    assert_eq!(server.api, None);
}

// ---------------------------------------------------------------------------------------------
// An independent client
// ---------------------------------------------------------------------------------------------

fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// Status, content type and body of a ureq response.
fn ureq_parts(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, String, String) {
    let mut response = response.expect("ureq request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.body_mut().read_to_string().expect("ureq body");
    (status, content_type, body)
}

#[test]
fn ureq_client_uses_every_kind_of_endpoint() {
    let server = default_api_server();
    let mut alice = RawClient::login(server.addr, "alice");
    let mut bob = RawClient::login(server.addr, "bob");
    let base = format!("http://{}", api_addr(&server));
    let agent = ureq_agent();

    let health = ureq_parts(agent.get(format!("{base}/health")).call());
    assert_eq!(
        health,
        (200, "application/json".into(), r#"{"status":"ok"}"#.into())
    );

    let sent = ureq_parts(
        agent
            .post(format!("{base}/send/alice"))
            .header("Content-Type", "text/plain; charset=utf-8")
            .send("from ureq"),
    );
    assert_eq!(sent.0, 200);
    assert_eq!(sent.2, r#"{"connections":1}"#);
    assert_eq!(alice.expect_text(), "from ureq");

    let member = format!("{base}/groups/team/members/alice");
    let added = ureq_parts(agent.put(&member).send_empty());
    assert_eq!((added.0, added.2.as_str()), (200, r#"{"added":true}"#));
    let again = ureq_parts(agent.put(&member).send_empty());
    assert_eq!(again.2, r#"{"added":false}"#);
    let bob_member = format!("{base}/groups/team/members/bob");
    assert_eq!(
        ureq_parts(agent.put(&bob_member).send_empty()).2,
        r#"{"added":true}"#
    );
    let group = ureq_parts(agent.get(format!("{base}/groups/team")).call());
    assert_eq!(
        serde_json::from_str::<Value>(&group.2).unwrap(),
        json!({ "group": "team", "members": ["alice", "bob"], "online": 2 })
    );
    let removed = ureq_parts(agent.delete(&bob_member).call());
    assert_eq!(
        (removed.0, removed.2.as_str()),
        (200, r#"{"removed":true}"#)
    );
    assert_eq!(
        ureq_parts(agent.delete(&bob_member).call()).2,
        r#"{"removed":false}"#
    );

    let batch = json!([
        { "uid": "alice", "data": "one" },
        { "group": "team", "data": "two", "exclude": ["bob"] },
        { "all": true, "data": "aGk=", "binary": true },
        { "uid": "a:b", "data": "x" },
        { "uid": "alice", "group": "team", "data": "x" },
    ]);
    let results = ureq_parts(
        agent
            .post(format!("{base}/batch"))
            .header("Content-Type", "application/json")
            .send(batch.to_string()),
    );
    assert_eq!((results.0, results.1.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&results.2).unwrap(),
        json!({ "results": [
            { "connections": 1 },
            { "connections": 1 },
            { "connections": 2 },
            { "error": "invalid uid: uid contains ':'" },
            { "error": "each item needs exactly one of \"uid\", \"group\" or \"all\": true" },
        ] })
    );
    assert_eq!(alice.expect_text(), "one");
    assert_eq!(alice.expect_text(), "two");
    assert_eq!(alice.expect_binary(), b"hi");
    assert_eq!(bob.expect_binary(), b"hi");

    let not_allowed = agent.get(format!("{base}/send/alice")).call().unwrap();
    assert_eq!(not_allowed.status().as_u16(), 405);
    assert_eq!(not_allowed.headers().get("allow").unwrap(), "POST");

    let stats = ureq_parts(agent.get(format!("{base}/stats")).call());
    assert_eq!((stats.0, stats.1.as_str()), (200, "application/json"));
    let stats: Value = serde_json::from_str(&stats.2).unwrap();
    assert_eq!(stats["connections"]["open"], 2);
    assert_eq!(stats["connections"]["bound"], 2);
    assert_eq!(stats["uids_online"], 2);
    assert_eq!(stats["groups"], 1);
    // Every request above except this one has been counted, by status.
    assert_eq!(stats["api_requests_by_status"]["200"], 9);
    assert_eq!(stats["api_requests_by_status"]["405"], 1);

    let metrics = ureq_parts(agent.get(format!("{base}/metrics")).call());
    assert_eq!(metrics.0, 200);
    assert_eq!(metrics.1, "text/plain; version=0.0.4; charset=utf-8");
    for line in [
        "# TYPE wspush_api_requests_total counter\n",
        "wspush_api_requests_total{status=\"200\"} 10\n",
        "wspush_api_requests_total{status=\"405\"} 1\n",
        "wspush_uids_online 2\n",
        "wspush_connections{state=\"open\"} 2\n",
    ] {
        assert!(
            metrics.2.contains(line),
            "{line:?} missing from\n{}",
            metrics.2
        );
    }
}

#[test]
fn binary_refuses_web_pages_and_rebound_hosts_on_its_keyless_api() {
    let server = BinaryServer::start(&[]);
    let mut bob = RawClient::login(server.addr, "bob");
    let mut api = Http::connect(server.api.unwrap());
    // A page on another site: `fetch(url, {mode: 'no-cors', method: 'POST', body})`.
    let page = "POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n\
                Sec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nowned";
    let refused = api.request(page);
    assert_eq!(refused.status(), 403, "{}", refused.text());
    // DNS rebinding: the attacker's name resolved to 127.0.0.1.
    let rebound = api.request("GET /stats HTTP/1.1\r\nHost: evil.example:5678\r\n\r\n");
    assert_eq!(rebound.status(), 403, "{}", rebound.text());
    // The same requests from a backend go through, and bob got nothing from the page.
    let backend = api.request(post("/send/bob", "from the backend"));
    assert_eq!(backend.status(), 200);
    assert_eq!(bob.expect_text(), "from the backend");
}
