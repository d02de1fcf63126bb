//! Push API limits: a client that pipelines far more than the output high-water mark is
//! answered completely, and clients beyond the API connection limit wait in the backlog and are
//! served (not timed out) once a slot frees.

mod common;

use std::time::Duration;

use common::http::Http;
use common::*;
use wspush::ApiConfig;

/// Reads `count` complete responses, checking each is a 200 framed by `Content-Length`.
fn read_responses(api: &mut Http, count: usize) {
    for seen in 0..count {
        let response = api.read_response();
        assert_eq!(
            response.status_line, "HTTP/1.1 200 OK",
            "response {seen} of {count} is not a 200"
        );
        assert!(
            response.header("Content-Length").is_some(),
            "response {seen} of {count} has no Content-Length"
        );
    }
}

#[test]
fn answers_every_request_of_a_client_that_pipelines_past_the_high_water_mark() {
    let server = TestServer::push_with_api(ApiConfig::default());
    let mut api = Http::connect(server.api.unwrap());
    // About 55 KB of requests arrive in one read; their answers (each metrics page is a few
    // KB) run far past the 1 MiB mark at which answering pauses until output drains.
    const COUNT: usize = 1500;
    let requests = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(COUNT);
    api.send(&requests);
    read_responses(&mut api, COUNT);
}

#[test]
fn clients_past_the_connection_limit_are_served_when_a_slot_frees() {
    let server = TestServer::push_with_api(ApiConfig {
        max_connections: 1,
        timeout: Duration::from_secs(30),
        ..ApiConfig::default()
    });
    let api = server.api.unwrap();
    let mut first = Http::connect(api);
    first.send(b"GET /health HTTP/1.1\r\n\r\n");
    read_responses(&mut first, 1);

    // The second waits in the backlog with its request already sent.
    let mut second = Http::connect(api);
    second.send(b"GET /health HTTP/1.1\r\n\r\n");
    drop(first);
    read_responses(&mut second, 1);
    // And it is a normal keep-alive connection afterwards, not one about to time out.
    second.send(b"GET /health HTTP/1.1\r\n\r\n");
    read_responses(&mut second, 1);
}
