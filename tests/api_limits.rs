//! Push API limits: a client that pipelines far more than the output high-water mark is
//! answered completely, and clients beyond the API connection limit wait in the backlog and are
//! served (not timed out) once a slot frees.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use wspush::{ApiConfig, Config};

fn api_server(api: ApiConfig) -> TestServer {
    TestServer::push(Config {
        api: Some(api),
        ..quiet_config()
    })
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads until `count` complete responses have arrived, checking each is a 200.
fn read_responses(stream: &mut TcpStream, count: usize) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut seen = 0;
    while seen < count {
        while let Some(len) = complete_response_len(&buf) {
            assert!(
                buf.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "response {seen} is not a 200"
            );
            buf.drain(..len);
            seen += 1;
        }
        if seen == count {
            break;
        }
        let n = stream.read(&mut chunk).expect("responses arrive in time");
        assert!(n > 0, "closed after {seen} of {count} responses");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the first complete response in `buf`, if it is complete.
fn complete_response_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).unwrap();
    let body: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (buf.len() >= head + body).then_some(head + body)
}

#[test]
fn answers_every_request_of_a_client_that_pipelines_past_the_high_water_mark() {
    let server = api_server(ApiConfig::default());
    let mut stream = connect(server.api.unwrap());
    // About 55 KB of requests arrive in one read; their answers (each metrics page is a few
    // KB) run far past the 1 MiB mark at which answering pauses until output drains.
    const COUNT: usize = 1500;
    let requests = b"GET /metrics HTTP/1.1\r\nHost: api\r\n\r\n".repeat(COUNT);
    stream.write_all(&requests).unwrap();
    read_responses(&mut stream, COUNT);
}

#[test]
fn clients_past_the_connection_limit_are_served_when_a_slot_frees() {
    let server = api_server(ApiConfig {
        max_connections: 1,
        timeout: Duration::from_secs(30),
        ..ApiConfig::default()
    });
    let api = server.api.unwrap();
    let mut first = connect(api);
    first.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    read_responses(&mut first, 1);

    // The second waits in the backlog with its request already sent.
    let mut second = connect(api);
    second.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    drop(first);
    read_responses(&mut second, 1);
    // And it is a normal keep-alive connection afterwards, not one about to time out.
    second.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    read_responses(&mut second, 1);
}
