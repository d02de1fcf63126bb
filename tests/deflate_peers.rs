//! permessage-deflate against an independent implementation, Python `websockets`
//! (`tests/peers/deflate_client.py`, run from the venv `.ci/run` makes at `target/pyenv`): the
//! negotiation with and without window bits, compressed round trips, a decompression bomb; and,
//! with scripted bytes, invalid compressed data and RSV1 where nothing was negotiated.

mod common;
use common::http::Http;
use common::*;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: these tests need Python websockets in a venv there; .ci/run makes it \
         (python3 -m venv target/pyenv && target/pyenv/bin/pip install websockets==15.0.1)",
        python.display()
    );
    python
}

/// Runs one scenario of the Python client against `server`; its JSON report.
fn run_client(server: &BinaryServer, scenario: &str, window_bits: Option<u8>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/deflate_client.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .arg(scenario)
        .arg(format!("ws://127.0.0.1:{}/", server.addr.port()));
    if let Some(bits) = window_bits {
        command.arg(bits.to_string());
    }
    let output = command.output().expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

fn stats(server: &BinaryServer) -> Value {
    Http::connect(server.api.unwrap())
        .request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .json()
}

const NO_CONTEXT_TAKEOVER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn the_offer_of_python_websockets_is_accepted_without_context_takeover_and_window_bits_honoured() {
    let server = BinaryServer::start(&[]);
    let plain = run_client(&server, "negotiate", None);
    assert_eq!(plain["extensions"], NO_CONTEXT_TAKEOVER, "{plain}");
    let limited = run_client(&server, "negotiate", Some(10));
    assert_eq!(
        limited["extensions"],
        format!("{NO_CONTEXT_TAKEOVER}; server_max_window_bits=10"),
        "{limited}"
    );
    let off = BinaryServer::start(&["--compression", "off"]);
    let declined = run_client(&off, "negotiate", None);
    assert_eq!(declined["extensions"], Value::Null, "{declined}");
}

#[test]
fn compressed_messages_round_trip_and_take_fewer_bytes_on_the_wire() {
    for bits in [None, Some(9), Some(10), Some(15)] {
        let server = BinaryServer::start(&[]);
        let report = run_client(&server, "roundtrip", bits);
        assert_eq!(report["ok"], true, "window {bits:?}: {report}");
    }
    // Compressed in fact: the same messages cost fewer bytes out than with compression off.
    let bytes_out = |args: &[&str]| {
        let server = BinaryServer::start(args);
        assert_eq!(run_client(&server, "roundtrip", None)["ok"], true);
        stats(&server)["bytes"]["out"].as_u64().unwrap()
    };
    let (compressed, plain) = (bytes_out(&[]), bytes_out(&["--compression", "off"]));
    assert!(
        compressed * 2 < plain,
        "{compressed} B out compressed, {plain} B plain"
    );
}

#[test]
fn a_decompression_bomb_is_closed_with_1009_and_costs_no_memory() {
    let server = BinaryServer::start(&[]);
    let before = server.rss();
    let report = run_client(&server, "bomb", None);
    assert_eq!(report["code"], 1009, "{report}");
    let grown = server.rss().saturating_sub(before);
    // 64 MiB of zeros sent (64 KiB compressed); inflating stops at the 1 MiB message limit.
    assert!(grown < 8 << 20, "RSS grew {grown} B");
    // The server goes on serving.
    assert_eq!(run_client(&server, "roundtrip", None)["ok"], true);
}

/// A raw client that offered permessage-deflate, and the server's answer head.
fn deflate_client(server: &BinaryServer) -> (RawClient, String) {
    let mut client = RawClient::connect(server.addr);
    let request = upgrade_request("/").replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    client.send_raw(request.as_bytes());
    let (status, head) = client.read_http_response();
    assert_eq!(status, 101, "{head}");
    (client, head)
}

/// A masked, final text frame with RSV1 set.
fn compressed_frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = frame(true, TEXT, payload, true);
    bytes[0] |= 0x40;
    bytes
}

#[test]
fn invalid_compressed_data_is_closed_with_1007() {
    let server = BinaryServer::start(&[]);
    let (mut client, head) = deflate_client(&server);
    assert!(head.contains(NO_CONTEXT_TAKEOVER), "{head}");
    // A block type of 3 is reserved: no valid deflate stream starts like this.
    client.send_raw(&compressed_frame(&[0xff, 0xff, 0xff, 0xff]));
    assert_eq!(client.expect_close().0, Some(1007));
}

#[test]
fn compressed_text_that_inflates_to_invalid_utf8_is_closed_with_1007() {
    let server = BinaryServer::start(&[]);
    let (mut client, _) = deflate_client(&server);
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    deflate.write_all(&[0xc3, 0x28]).unwrap();
    let compressed = deflate.finish().unwrap();
    client.send_raw(&compressed_frame(&compressed));
    assert_eq!(client.expect_close().0, Some(1007));
}

#[test]
fn rsv1_without_a_negotiated_extension_is_a_protocol_error() {
    let server = BinaryServer::start(&[]);
    let mut client = RawClient::open(server.addr);
    client.send_raw(&compressed_frame(&[
        0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00,
    ]));
    assert_eq!(client.expect_close().0, Some(1002));
}

#[test]
fn a_raw_compressed_hello_inflates_to_the_login() {
    // RFC 7692 §7.2.3.1: "Hello" compressed, as a login.
    let server = BinaryServer::start(&[]);
    let (mut client, _) = deflate_client(&server);
    client.send_raw(&compressed_frame(&[
        0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00,
    ]));
    assert_eq!(client.expect_text(), "login success, your uid is Hello");
}
