//! Descriptor exhaustion: at the open-files limit the server stops accepting without spinning,
//! and resumes when connections close.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// User plus system CPU time of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn accept_at_the_descriptor_limit_pauses_without_spinning_and_resumes() {
    let prlimit = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    assert!(
        prlimit.is_ok_and(|s| s.success()),
        "this test needs prlimit (util-linux)"
    );
    // 32 descriptors, but 1000 connections allowed: accept itself fails with EMFILE.
    let server = BinaryServer::start_with_prefix(
        &["prlimit", "--nofile=32:32"],
        &[
            "--max-connections",
            "1000",
            "--handshake-timeout",
            "300ms",
            "--close-timeout",
            "300ms",
        ],
    );
    let started = Instant::now();
    let cpu_before = cpu_seconds(server.pid());

    // More clients than descriptors; none sends a request, so each accepted one gets 408 and
    // frees its slot, which lets the server accept the next from its backlog.
    let mut clients: Vec<RawClient> = (0..40).map(|_| RawClient::connect(server.addr)).collect();
    for client in &mut clients {
        let (status, _) = client.read_http_response();
        assert_eq!(status, 408);
    }

    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    assert!(
        cpu < wall * 0.5,
        "server used {cpu:.2} s of CPU in {wall:.2} s: it spins at the descriptor limit"
    );
}
