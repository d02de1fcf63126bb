//! The physical floor: what one write of a small pre-encoded frame to a connected loopback
//! socket costs on this machine, now. Every server CPU figure is also given as a ratio to it,
//! measured in the same run, because absolute times on a shared machine drift.
//!
//! A writer child process (pinned where the server runs, when its pid is known) connects N
//! sockets to this process, which drains them, and writes the frame round-robin; it reports
//! its own CPU time for the write phase only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use wspush::protocol::{encode_frame, OpCode};

use crate::procstat::cpu_time;

/// Measures the floor with `conns` sockets and `writes` writes of a `size`-byte message.
pub fn measure(
    conns: usize,
    writes: u64,
    size: usize,
    server_pid: Option<u32>,
) -> io::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let exe = std::env::current_exe()?;
    let cpus = server_pid.and_then(cpus_allowed);
    let mut command = match &cpus {
        Some(list) => {
            let mut command = Command::new("taskset");
            command.args(["-c", list]).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .args(["floor-writer", "--target", &addr.to_string()])
        .args([
            "--conns",
            &conns.to_string(),
            "--writes",
            &writes.to_string(),
        ])
        .args(["--size", &size.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });

    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, Token(usize::MAX), Interest::READABLE)?;
    let mut streams: Vec<mio::net::TcpStream> = Vec::new();
    let mut scratch = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(600);
    let report = loop {
        if let Ok(line) = rx.try_recv() {
            break line;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "floor writer did not finish",
            ));
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in &events {
            if event.token() == Token(usize::MAX) {
                while let Ok((mut stream, _)) = listener.accept() {
                    let token = Token(streams.len());
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE)?;
                    streams.push(stream);
                }
            } else if let Some(stream) = streams.get_mut(event.token().0) {
                while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
            }
        }
    };
    let _ = child.wait();
    let report: Value = serde_json::from_str(report.trim())
        .map_err(|e| io::Error::other(format!("floor writer report: {e}")))?;
    let cpu_ns = report["cpu_ns"].as_u64().unwrap_or(0);
    let done = report["writes"].as_u64().unwrap_or(1).max(1);
    Ok(json!({
        "conns": conns,
        "writes": done,
        "message_size": size,
        "cpu_ms": cpu_ns / 1_000_000,
        "writer_cpus": cpus,
        "cpu_us_per_write": cpu_ns as f64 / 1000.0 / done as f64,
        "would_block": report["would_block"],
    }))
}

/// The writer child: connect, write round-robin, report CPU for the write phase.
pub fn write(target: SocketAddr, conns: usize, writes: u64, size: usize) -> io::Result<()> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        let socket = TcpStream::connect(target)?;
        socket.set_nodelay(true)?;
        socket.set_nonblocking(true)?;
        // Reset on close: no port left in TIME_WAIT (as the fleet does).
        socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO))?;
        sockets.push(socket);
    }
    let frame = encode_frame(OpCode::Text, &vec![b'x'; size], None);
    let start = cpu_time(None).unwrap_or_default();
    let mut would_block = 0u64;
    let mut done = 0u64;
    let mut i = 0usize;
    while done < writes {
        match (&sockets[i]).write(&frame) {
            Ok(_) => done += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => would_block += 1,
            Err(e) => return Err(e),
        }
        i = (i + 1) % sockets.len();
    }
    let cpu = cpu_time(None).unwrap_or_default().saturating_sub(start);
    println!(
        "{}",
        json!({ "writes": done, "cpu_ns": cpu.as_nanos() as u64, "would_block": would_block })
    );
    drop(sockets);
    Ok(())
}

/// The CPUs the server may run on, as taskset accepts them.
fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_owned();
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success()
        .then_some(list)
}
