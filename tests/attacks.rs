//! Issue 9's remaining attacks, against the real binary over loopback sockets: tiny frames fanned
//! out to receivers with a small MSS and receive window that never read; a client's `all:`
//! flood at 5,000 bound receivers; push API requests whose chunked framing (extensions, endless
//! tiny chunks, trailers) grows without the body growing; API clients that drip a request head
//! a byte at a time against a small connection limit; and whether the server's memory comes back
//! after queues were filled and their connections closed. Each test checks that the server's RSS
//! stays within its configured caps plus a stated allowance (and prints the figures), and that a
//! healthy client keeps being served with nothing lost.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::http::Http;
use common::*;
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The segment size the narrow receivers announce: IPv4's default (RFC 1122), where loopback's
/// is 65,483.
const SMALL_MSS: u32 = 536;

/// The receive buffer the narrow receivers ask for: the kernel raises it to its minimum (about
/// 2 KiB). Even so the server's kernel takes some 30–50 KB for each before its writes stop (its
/// send buffer grows by itself; with default buffers and MSS it takes about 4 MB), so floods are
/// sized to fill the server's queues without parking much more than that in the host's memory.
const SMALL_RCVBUF: usize = 1;

/// The binary with its timers off (none of these tests is about timers) and no fan-out
/// allowance (these floods must reach the caps; the allowance has its own test), plus `args`.
fn quiet_server(args: &[&str]) -> BinaryServer {
    let mut all = vec![
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
        "--login-timeout",
        "off",
        "--client-fanout-rate",
        "off",
    ];
    all.extend_from_slice(args);
    BinaryServer::start(&all)
}

/// The server's `/stats` document.
fn stats(server: &BinaryServer) -> Value {
    let mut api = Http::connect(server.api.expect("the API is on"));
    let response = api.request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(response.status(), 200, "{response:?}");
    response.json()
}

/// Polls `/stats` (every 50 ms, for at most `timeout`) until `done` says yes; returns that
/// document.
fn wait_for_stats(
    server: &BinaryServer,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = stats(server);
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}: {stats}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Messages the server has read from its WebSocket clients so far.
fn messages_in(stats: &Value) -> u64 {
    stats["messages"]["in"].as_u64().unwrap()
}

/// Bytes the kernel holds unsent or unacknowledged on the server's established WebSocket
/// connections (`tx_queue` in `/proc/net/tcp`): memory the server's caps do not see; printed,
/// never asserted.
fn kernel_send_queues(server: &BinaryServer) -> u64 {
    let port = format!(":{:04X}", server.addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let established = fields.get(3) == Some(&"01");
            (established && fields[1].ends_with(&port)).then(|| {
                let tx_queue = fields[4].split(':').next().unwrap();
                u64::from_str_radix(tx_queue, 16).unwrap()
            })
        })
        .sum()
}

/// A connection to `addr` with a small receive buffer and small segments: a peer that takes
/// little of what the server writes. Closed with a reset, so that thousands of them leave no
/// ports in TIME_WAIT.
fn narrow_stream(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(SMALL_RCVBUF).unwrap();
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    socket.set_tcp_mss(SMALL_MSS).expect("TCP_MAXSEG");
    socket.connect_timeout(&addr.into(), WAIT).expect("connect");
    socket.into()
}

/// Logs in one connection per uid in `uids`, each made by `connect`: the login is sent right
/// behind the upgrade request (one write per client, as `wspush-bench --early-login` does), a
/// few hundred clients at a time, then their answers are read.
fn login_many(
    addr: SocketAddr,
    uids: &[String],
    connect: impl Fn(SocketAddr) -> TcpStream,
) -> Vec<RawClient> {
    let mut clients = Vec::with_capacity(uids.len());
    for batch in uids.chunks(500) {
        let first = clients.len();
        for uid in batch {
            let mut client = RawClient::from_stream(connect(addr));
            let mut bytes = upgrade_request("/").into_bytes();
            bytes.extend_from_slice(&frame(true, TEXT, uid.as_bytes(), true));
            client.send_raw(&bytes);
            clients.push(client);
        }
        for (client, uid) in clients[first..].iter_mut().zip(batch) {
            let (status, head) = client.read_http_response();
            assert_eq!(status, 101, "{head}");
            assert_eq!(
                client.expect_text(),
                format!("login success, your uid is {uid}")
            );
        }
    }
    clients
}

/// Reads everything the server sends to `client` on a thread of its own until the connection
/// ends (shut it down to end it), passing on the `error:` replies: an attacker that reads is
/// never held back by its own send queue.
fn drain(client: &RawClient) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let mut reader = RawClient::from_stream(client.stream.try_clone().unwrap());
    reader.stream.set_read_timeout(None).unwrap();
    let (errors, received) = mpsc::channel();
    let thread = thread::spawn(move || {
        while let Some(frame) = reader.try_read_frame() {
            if frame.opcode == TEXT && frame.payload.starts_with(b"error: ") {
                let _ = errors.send(String::from_utf8(frame.payload).unwrap());
            }
        }
    });
    (received, thread)
}

/// Ends an attacker's connection and its drain thread.
fn hang_up(client: RawClient, drain_thread: JoinHandle<()>) {
    client.stream.shutdown(Shutdown::Both).unwrap();
    drain_thread.join().expect("drain thread");
}

/// Asserts that `client` (bound to `uid`, not addressed by the attack) still gets a message
/// to itself, and nothing else first.
fn assert_served(client: &mut RawClient, uid: &str) {
    client.send_text(&format!("{uid}:still here"));
    assert_eq!(client.expect_text(), "still here");
}

/// Sends `uid:x` (15-byte frames, 3 bytes queued for each recipient) to `uid`, whose
/// connections never read, until the server reports the message dropped for all of them
/// (their queues are full), then a quarter as much again; returns the bytes and messages sent.
fn flood_tiny_frames(
    sender: &mut RawClient,
    uid: &str,
    errors: &mpsc::Receiver<String>,
) -> (usize, u64) {
    const LIMIT: usize = 16 << 20;
    let one = frame(true, TEXT, format!("{uid}:x").as_bytes(), true);
    let burst = one.repeat(1000);
    let dropped = format!("error: uid {uid} is not keeping up: message dropped");
    let (mut sent, mut full_at) = (0, None);
    loop {
        sender.send_raw(&burst);
        sent += burst.len();
        if full_at.is_none() {
            if let Ok(error) = errors.try_recv() {
                assert_eq!(error, dropped);
                full_at = Some(sent);
            }
        }
        match full_at {
            Some(at) if sent >= at + at / 4 => return (sent, (sent / one.len()) as u64),
            _ => assert!(
                sent < LIMIT,
                "{sent} bytes sent and the queues of {uid} are still not full"
            ),
        }
    }
}

/// Sends binary messages of 1,000 bytes to each of `uids` (whose connections never read), each
/// its own frame, until the server has dropped one for every uid (its queue is full); returns
/// the bytes sent.
fn fill_queues(sender: &mut RawClient, uids: &[String], errors: &mpsc::Receiver<String>) -> usize {
    const LIMIT: usize = 512 << 20;
    let payload = [b'p'; 1000];
    let mut full = HashSet::new();
    let mut sent = 0;
    while full.len() < uids.len() {
        let mut burst = Vec::new();
        for uid in uids.iter().filter(|uid| !full.contains(uid.as_str())) {
            let mut message = format!("{uid}:").into_bytes();
            message.extend_from_slice(&payload);
            burst.extend_from_slice(&frame(true, BINARY, &message, true));
        }
        sender.send_raw(&burst);
        sent += burst.len();
        while let Ok(error) = errors.try_recv() {
            let uid = error
                .strip_prefix("error: uid ")
                .and_then(|rest| rest.strip_suffix(" is not keeping up: message dropped"))
                .unwrap_or_else(|| panic!("unexpected reply {error:?}"));
            full.insert(uid.to_owned());
        }
        assert!(
            sent < LIMIT,
            "{sent} bytes sent and {} of {} queues are full",
            full.len(),
            uids.len()
        );
    }
    sent
}

// ---------------------------------------------------------------------------------------------
// WebSocket fan-out
// ---------------------------------------------------------------------------------------------

#[test]
fn tiny_frames_fanned_out_to_narrow_receivers_that_never_read_are_held_to_the_caps() {
    const RECEIVERS: u64 = 200;
    const CAP: u64 = 64 * KIB;
    let server = quiet_server(&["--max-send-buffer", "64KiB"]);
    let mut healthy = RawClient::login(server.addr, "healthy");
    let mut sender = RawClient::login(server.addr, "sender");
    // All on one uid: every frame the sender sends is queued for all of them.
    let uids = vec!["victims".to_owned(); RECEIVERS as usize];
    let receivers = login_many(server.addr, &uids, narrow_stream);
    let messages_before = messages_in(&stats(&server));
    let before = server.rss();

    let (errors, drain_thread) = drain(&sender);
    let (sent, messages) = flood_tiny_frames(&mut sender, "victims", &errors);
    // Measured once the server has read the whole flood.
    let stats = wait_for_stats(&server, Duration::from_secs(60), "reading the flood", |s| {
        messages_in(s) >= messages_before + messages
    });
    assert_served(&mut healthy, "healthy");
    let growth = server.rss().saturating_sub(before);
    let in_kernel = kernel_send_queues(&server);
    eprintln!(
        "tiny-frame fan-out to {RECEIVERS} receivers (MSS {SMALL_MSS}) capped at {CAP} B: \
         {sent} bytes sent, {} bytes written, server RSS {before} -> +{growth} bytes, \
         queued_bytes {}, dropped {}; {in_kernel} bytes in the server's kernel send queues",
        stats["bytes"]["out"], stats["queued_bytes"], stats["messages"]["dropped"]
    );
    let allowance = 4 * MIB;
    assert!(
        growth <= RECEIVERS * CAP + allowance,
        "server RSS grew by {growth} bytes for {RECEIVERS} receivers capped at {CAP} B"
    );
    hang_up(sender, drain_thread);
    drop(receivers);
}

#[test]
fn an_all_flood_at_5000_bound_receivers_is_held_to_the_caps() {
    const RECEIVERS: usize = 5000;
    // 1,000 broadcasts of 102 bytes: about 100 KB for each receiver, twice what its socket
    // takes, so that its queue fills.
    const BROADCASTS: u64 = 1000;
    const CAP: u64 = 16 * KIB;
    const TOTAL_CAP: u64 = 8 * MIB;
    let files = rlimit::increase_nofile_limit(RECEIVERS as u64 + 1000).unwrap();
    assert!(
        files >= RECEIVERS as u64 + 1000,
        "this test needs {} open files; the hard limit is {files}",
        RECEIVERS + 1000
    );
    let server = quiet_server(&[
        "--max-send-buffer",
        "16KiB",
        "--max-total-send-buffer",
        "8MiB",
    ]);
    let uids: Vec<String> = (0..RECEIVERS).map(|i| format!("r{i}")).collect();
    let receivers = login_many(server.addr, &uids, narrow_stream);
    let mut attacker = RawClient::login(server.addr, "attacker");
    let mut healthy = RawClient::login(server.addr, "healthy");
    let messages_before = messages_in(&stats(&server));
    let before = server.rss();

    // The healthy client reads everything, counting the broadcasts, until its own message.
    let payload = [b'b'; 100];
    let mut reader = RawClient::from_stream(healthy.stream.try_clone().unwrap());
    let healthy_reader = thread::spawn(move || {
        let mut broadcasts = 0u64;
        loop {
            let frame = reader.read_data_frame();
            if frame.payload == b"still here" {
                return broadcasts;
            }
            assert_eq!(frame.payload, payload, "unexpected {frame:?}");
            broadcasts += 1;
        }
    });
    // The attacker reads what it is sent (its own broadcasts), so it is never paused.
    let (_, drain_thread) = drain(&attacker);
    let mut message = b"all:".to_vec();
    message.extend_from_slice(&payload);
    let burst = frame(true, TEXT, &message, true).repeat(100);
    for _ in 0..BROADCASTS / 100 {
        attacker.send_raw(&burst);
    }
    let sent = BROADCASTS as usize * burst.len() / 100;

    // Every broadcast has been fanned out once the server has counted it in.
    let stats = wait_for_stats(&server, Duration::from_secs(120), "the broadcasts", |s| {
        messages_in(s) >= messages_before + BROADCASTS
    });
    let growth = server.rss().saturating_sub(before);
    let in_kernel = kernel_send_queues(&server);
    // The healthy client's own message is not lost behind the flood.
    healthy.send_text("healthy:still here");
    let received = healthy_reader.join().expect("healthy reader");

    eprintln!(
        "all: flood, {BROADCASTS} broadcasts ({sent} bytes) at {RECEIVERS} receivers, caps \
         {CAP} B each and {TOTAL_CAP} B in all: {} bytes written, server RSS {before} -> \
         +{growth} bytes, queued_bytes {}, dropped {}; {in_kernel} bytes in the server's kernel \
         send queues; the healthy reader got {received} of {BROADCASTS} broadcasts",
        stats["bytes"]["out"], stats["queued_bytes"], stats["messages"]["dropped"]
    );
    assert!(
        stats["messages"]["dropped"].as_u64().unwrap() > 0,
        "the caps were never reached: {stats}"
    );
    // Past the total cap an empty queue still takes one frame, and the total counts a shared
    // frame once per queue: the allowance covers one queue slot (32 B, and as much again of
    // the queue's slack) per frame each receiver may hold, not its bytes.
    let frames_per_queue = CAP / (2 + payload.len() as u64 + 96);
    let allowance = 4 * MIB;
    let bound = TOTAL_CAP + RECEIVERS as u64 * frames_per_queue * 64 + allowance;
    assert!(
        growth <= bound,
        "server RSS grew by {growth} bytes (bound {bound}) for an all: flood at {RECEIVERS} \
         receivers capped at {CAP} B each and {TOTAL_CAP} B in all"
    );
    hang_up(attacker, drain_thread);
    drop(receivers);
}

#[test]
fn rss_comes_back_after_full_queues_are_closed() {
    const RECEIVERS: u64 = 100;
    const CAP: u64 = 512 * KIB;
    let server = quiet_server(&["--max-send-buffer", "512KiB"]);
    let mut healthy = RawClient::login(server.addr, "healthy");
    let mut sender = RawClient::login(server.addr, "sender");
    let before = server.rss();

    let uids: Vec<String> = (0..RECEIVERS).map(|i| format!("r{i}")).collect();
    let receivers = login_many(server.addr, &uids, narrow_stream);
    let (errors, drain_thread) = drain(&sender);
    let sent = fill_queues(&mut sender, &uids, &errors);
    let peak = server.rss();
    let in_kernel = kernel_send_queues(&server);
    let queued = stats(&server)["queued_bytes"].clone();
    assert!(
        peak.saturating_sub(before) <= RECEIVERS * CAP + 8 * MIB,
        "server RSS grew by {} bytes for {RECEIVERS} queues capped at {CAP} B",
        peak - before
    );

    drop(receivers);
    hang_up(sender, drain_thread);
    // Only the healthy client is left, and every queue is gone.
    wait_for_stats(&server, WAIT, "closing the burst's connections", |s| {
        s["connections"]["open"] == 1 && s["queued_bytes"] == 0
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let rss = server.rss();
        if rss <= before + 10 * MIB || Instant::now() >= deadline {
            break rss;
        }
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "burst: {sent} bytes sent to {RECEIVERS} receivers capped at {CAP} B (queued_bytes \
         {queued}): server RSS before {before}, peak {peak}, after closing {after}; {in_kernel} \
         bytes in its kernel send queues"
    );
    assert!(
        after <= before + 10 * MIB,
        "server RSS stayed at {after} bytes after the burst's connections closed (before \
         {before}, peak {peak})"
    );
    assert_served(&mut healthy, "healthy");
}

// ---------------------------------------------------------------------------------------------
// Push API
// ---------------------------------------------------------------------------------------------

/// Asserts a refusal: `status`, `{"error": message}`, `Connection: close`, then the end of the
/// connection.
fn assert_refused(client: &mut Http, status: u16, message: &str, what: &str) {
    let response = client.read_response();
    assert_eq!(response.status(), status, "{what}: {response:?}");
    assert_eq!(response.json(), json!({ "error": message }), "{what}");
    assert!(response.closes(), "{what}: {response:?}");
    client.expect_eof();
}

/// Pushes `text` to alice through the API on a fresh connection and checks she gets it next.
fn assert_api_serves(api: SocketAddr, alice: &mut RawClient, text: &str) {
    let mut client = Http::connect(api);
    let response = client.request(format!(
        "POST /send/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    ));
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(response.json(), json!({ "connections": 1 }));
    assert_eq!(alice.expect_text(), text);
}

#[test]
fn chunked_framing_bloat_is_refused_long_before_the_body_limit() {
    // Defaults: head (and so chunked framing) 8 KiB, body 1 MiB, API timeout 30 s, longer than
    // any read here waits: an answer can only come from the framing limit.
    let server = quiet_server(&[]);
    let api = server.api.expect("the API is on");
    let mut alice = RawClient::login(server.addr, "alice");
    let before = server.rss();

    const HEAD: &str =
        "POST /send/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    const FRAMING: &str = "chunked framing too large";
    // Each about 10 KB and far below the body limit, and none complete: past the 8 KiB of
    // framing there is nothing left to wait for.
    let attacks = [
        (
            "extensions of 1,000 bytes on one-byte chunks",
            format!("1;ext={}\r\nx\r\n", "e".repeat(1000)).repeat(10),
            413,
            FRAMING,
        ),
        (
            "endless one-byte chunks",
            "1\r\nx\r\n".repeat(2000),
            413,
            FRAMING,
        ),
        (
            "endless trailers",
            format!(
                "0\r\n{}",
                format!("X-Pad: {}\r\n", "a".repeat(100)).repeat(100)
            ),
            413,
            FRAMING,
        ),
        (
            "one chunk line of 4,000 bytes",
            format!("1;{}", "e".repeat(4000)),
            400,
            "line too long in chunked body",
        ),
    ];
    let mut attackers = Vec::new();
    for (what, tail, status, message) in &attacks {
        for _ in 0..4 {
            let mut client = Http::connect(api);
            client.send(format!("{HEAD}{tail}"));
            attackers.push((client, *what, *status, *message));
        }
    }
    // And a few that do not stop at the limit: endless tiny chunks, 2 MiB each.
    let flooders: Vec<JoinHandle<()>> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Http::connect(api);
                client.send(HEAD);
                let burst = "1\r\nx\r\n".repeat(10_000);
                for _ in 0..(2 << 20) / burst.len() {
                    client.send(&burst);
                }
                assert_refused(&mut client, 413, FRAMING, "flooder");
            })
        })
        .collect();

    // Meanwhile, WebSocket clients and other API clients are served.
    alice.send_text("alice:over websocket");
    assert_eq!(alice.expect_text(), "over websocket");
    assert_api_serves(api, &mut alice, "over the API");

    for (client, what, status, message) in &mut attackers {
        assert_refused(client, *status, message, what);
    }
    for flooder in flooders {
        flooder.join().expect("flooder");
    }
    // Nothing of the refused requests reached alice.
    assert_api_serves(api, &mut alice, "after the attacks");
    let growth = server.rss().saturating_sub(before);
    eprintln!(
        "chunked framing bloat: {} refused requests of ~10 KB and 4 of 2 MiB, server RSS \
         {before} -> +{growth} bytes",
        attackers.len()
    );
    assert!(
        growth < 8 * MIB,
        "server RSS grew by {growth} bytes refusing chunked framing over 8 KiB"
    );
}

/// How a dripping client's connection ended.
#[derive(Debug)]
enum Dripped {
    /// The server answered (this is all it sent, up to its end of the connection).
    Answered(String),
    /// The server closed or reset the connection without an answer.
    Closed,
}

/// Pace of the dripping clients: one byte of the request this often.
const DRIP_PACE: Duration = Duration::from_millis(200);

/// Longest a dripping client, or a request waiting behind them, may wait for an answer.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// Connects to `api` and sends `request` one byte per `DRIP_PACE`, reporting on `started`
/// once the first byte is out, until the server answers or closes; panics if neither happens
/// within `ANSWER_WAIT` or before the request is complete. Returns the outcome and the bytes
/// dripped.
fn drip(api: SocketAddr, request: &[u8], started: &mpsc::Sender<()>) -> (Dripped, usize) {
    let mut stream = TcpStream::connect_timeout(&api, WAIT).expect("connect");
    stream.set_read_timeout(Some(DRIP_PACE)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    for (dripped, byte) in request.iter().enumerate() {
        assert!(
            Instant::now() < deadline,
            "a dripping client was not answered within {ANSWER_WAIT:?} ({dripped} bytes dripped)"
        );
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return (Dripped::Closed, dripped);
        }
        if dripped == 0 {
            started.send(()).unwrap();
        }
        // Waiting one pace for an answer is what paces the drip.
        match stream.read(&mut chunk) {
            Ok(0) => return (Dripped::Closed, dripped + 1),
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                // The rest of the answer, up to the server's end of the connection.
                while Instant::now() < deadline {
                    match stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => received.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                let answer = String::from_utf8_lossy(&received).into_owned();
                return (Dripped::Answered(answer), dripped + 1);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Dripped::Closed, dripped + 1),
        }
    }
    panic!("a dripping client sent its whole request without an answer");
}

/// Reads one response with a `Content-Length` body from `stream`, waiting at most `timeout`.
fn read_response_within(stream: &mut TcpStream, timeout: Duration) -> String {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .map_or(0, |value| value.trim().parse::<usize>().unwrap());
            if body.len() >= length {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete response within {timeout:?}; got {text:?}"
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed before a complete response; got {text:?}"),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed: {e}; got {text:?}"),
        }
    }
}

#[test]
fn api_clients_dripping_a_request_are_answered_408_and_do_not_lock_out_others() {
    const DRIPPERS: usize = 16;
    // Half as many connection slots as dripping clients: without a deadline that trickling
    // cannot extend, they would hold every slot for as long as they like.
    let server = quiet_server(&["--api-timeout", "1s", "--api-max-connections", "8"]);
    let api = server.api.expect("the API is on");
    let mut alice = RawClient::login(server.addr, "alice");

    // At one byte per pace, this head would take over a minute to arrive.
    let request = format!(
        "POST /send/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {}\r\nContent-Length: 7\r\n\
         \r\ndripped",
        "s".repeat(400)
    )
    .into_bytes();
    let (started, started_rx) = mpsc::channel();
    let drippers: Vec<JoinHandle<(Dripped, usize)>> = (0..DRIPPERS)
        .map(|_| {
            let (request, started) = (request.clone(), started.clone());
            thread::spawn(move || drip(api, &request, &started))
        })
        .collect();
    for _ in 0..DRIPPERS {
        started_rx
            .recv_timeout(WAIT)
            .expect("a dripping client did not start");
    }

    // A legitimate request on a fresh connection, while they drip: it waits in the backlog
    // until their slots free up.
    let mut legitimate = TcpStream::connect_timeout(&api, WAIT).expect("connect");
    legitimate
        .write_all(
            b"POST /send/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nlegitimate",
        )
        .unwrap();
    let answer = read_response_within(&mut legitimate, ANSWER_WAIT);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with(r#"{"connections":1}"#), "{answer:?}");
    assert_eq!(alice.expect_text(), "legitimate");

    let (mut answered, mut closed, mut most_dripped) = (0, 0, 0);
    for dripper in drippers {
        let (outcome, dripped) = dripper.join().expect("dripping client");
        most_dripped = most_dripped.max(dripped);
        match outcome {
            Dripped::Answered(answer) => {
                assert!(
                    answer.starts_with("HTTP/1.1 408 Request Timeout\r\n")
                        && answer.ends_with(r#"{"error":"request not completed in time"}"#),
                    "a dripping client got {answer:?}"
                );
                answered += 1;
            }
            Dripped::Closed => closed += 1,
        }
    }
    eprintln!(
        "slow-loris: {DRIPPERS} dripping clients, {answered} answered 408, {closed} closed \
         without an answer, at most {most_dripped} of {} bytes dripped",
        request.len()
    );
    // Nothing of theirs was delivered.
    assert_served(&mut alice, "alice");
}

#[test]
fn a_fixed_socket_send_buffer_bounds_what_the_kernel_holds_for_a_client_that_never_reads() {
    let server = quiet_server(&["--socket-send-buffer", "16KiB"]);
    let mut healthy = RawClient::login(server.addr, "healthy");
    // A plain socket that never reads: its receive window closes at its initial size, and
    // the kernel would grow the server's send buffer up to 4 MiB to hold the rest.
    let _reader = RawClient::login(server.addr, "r");
    let mut sender = RawClient::login(server.addr, "sender");
    let messages_before = messages_in(&stats(&server));
    let (_errors, drain_thread) = drain(&sender);
    let mut payload = b"r:".to_vec();
    payload.resize(1000, b'x');
    let burst = frame(true, BINARY, &payload, true).repeat(100);
    for _ in 0..80 {
        sender.send_raw(&burst);
    }
    wait_for_stats(&server, Duration::from_secs(60), "reading the burst", |s| {
        messages_in(s) >= messages_before + 8000
    });
    assert_served(&mut healthy, "healthy");
    // Bytes in flight are counted until the peer acknowledges them, which a loaded machine
    // may take a while to do: what must hold is what stays, once the window has closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_kernel = loop {
        let in_kernel = kernel_send_queues(&server);
        if in_kernel <= 128 * KIB || Instant::now() > deadline {
            break in_kernel;
        }
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "8 MB for a client that never reads, SO_SNDBUF 16 KiB: {in_kernel} bytes in the kernel"
    );
    assert!(
        in_kernel <= 128 * KIB,
        "{in_kernel} bytes held in the kernel with a 16 KiB socket send buffer"
    );
    hang_up(sender, drain_thread);
}
