//! Opens N idle connections to a push-protocol server, logs each in, and reports how much the
//! server's resident memory grew per connection.
//!
//! usage: idle_clients ADDR CONNS SERVER_PID [HOLD_SECONDS]
//! e.g.   cargo run --release --example idle_clients -- 127.0.0.1:1234 10000 "$(pgrep -n wspush)"
//!
//! Uids are `u0` … `u<CONNS-1>`, after the prefix in `IDLE_UID_PREFIX` if set (so that
//! several of these processes log in distinct uids). With HOLD_SECONDS, the connections stay open that long after
//! the report (as receivers for a push load test).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Connections opened before the requests of a batch are answered.
const BATCH: usize = 500;

fn main() {
    let prefix = std::env::var("IDLE_UID_PREFIX").unwrap_or_default();
    let args: Vec<String> = std::env::args().collect();
    let (addr, conns, pid, hold) = match args.as_slice() {
        [_, addr, conns, pid] => (addr, conns, pid, 0),
        [_, addr, conns, pid, hold] => (addr, conns, pid, hold.parse().expect("HOLD_SECONDS")),
        _ => {
            eprintln!("usage: idle_clients ADDR CONNS SERVER_PID [HOLD_SECONDS]");
            std::process::exit(2);
        }
    };
    let conns: usize = conns.parse().expect("CONNS is a number");
    let before = rss(pid);
    let started = Instant::now();
    let mut held = Vec::with_capacity(conns);
    for batch_start in (0..conns).step_by(BATCH) {
        let batch: Vec<(usize, TcpStream)> = (batch_start..(batch_start + BATCH).min(conns))
            .map(|i| {
                let mut stream = TcpStream::connect(addr.as_str()).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream.write_all(REQUEST).unwrap();
                stream
                    .write_all(&masked_text(format!("{prefix}u{i}").as_bytes()))
                    .unwrap();
                (i, stream)
            })
            .collect();
        for (i, mut stream) in batch {
            let expected = format!("login success, your uid is {prefix}u{i}");
            read_until_contains(&mut stream, expected.as_bytes());
            held.push(stream);
        }
    }
    let elapsed = started.elapsed();
    let after = rss(pid);
    let growth = after.saturating_sub(before);
    println!(
        "{conns} idle bound connections in {:.2} s; server RSS {before} -> {after} bytes; \
         growth {growth} bytes = {:.0} bytes per connection",
        elapsed.as_secs_f64(),
        growth as f64 / conns as f64
    );
    std::thread::sleep(Duration::from_secs(hold));
    drop(held);
}

fn masked_text(payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

fn read_until_contains(stream: &mut TcpStream, needle: &[u8]) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 512];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut chunk).expect("read login answer");
        assert!(n > 0, "server closed the connection");
        seen.extend_from_slice(&chunk[..n]);
    }
}

fn rss(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}
