//! Shared harness for the integration tests: a real server on `127.0.0.1:0` (in this process
//! on its own thread, or the real binary as a child process) and a scripted raw-socket client
//! that sends exact bytes. Every wait has a timeout; nothing sleeps to synchronise.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wspush::{Config, Handler, Server, ServerHandle};

pub mod http;
pub mod redis;
pub mod tls;

/// Longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The masking key every scripted frame uses.
pub const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A server running in this process on its own thread, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The push API's address, when `config.api` was set.
    pub api: Option<SocketAddr>,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts `handler` with `config`, listening on a free loopback port.
    pub fn start<H, F>(mut config: Config, make_handler: F) -> Self
    where
        H: Handler,
        F: FnOnce() -> H + Send + 'static,
    {
        config.listen = "127.0.0.1:0".parse().unwrap();
        if let Some(api) = &mut config.api {
            api.listen = "127.0.0.1:0".parse().unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let server = Server::bind(config, make_handler())?;
            tx.send((server.local_addr(), server.api_addr(), server.handle()))
                .unwrap();
            server.run()
        });
        let (addr, api, handle) = rx.recv_timeout(WAIT).expect("server did not start");
        Self {
            addr,
            api,
            handle,
            thread: Some(thread),
        }
    }

    /// The reference push protocol with `config`.
    pub fn push(config: Config) -> Self {
        Self::start(config, wspush::PushProtocol::new)
    }

    /// The reference push protocol with timers off and the push API enabled as `api`.
    pub fn push_with_api(api: wspush::ApiConfig) -> Self {
        Self::push(Config {
            api: Some(api),
            ..quiet_config()
        })
    }

    /// The echo handler with `config`.
    pub fn echo(config: Config) -> Self {
        Self::start(config, || wspush::Echo)
    }

    /// Asks the server to shut down gracefully without waiting for it.
    pub fn request_shutdown(&self) {
        self.handle.shutdown();
    }

    /// Asks the server to shut down and waits (bounded) for `run` to return.
    pub fn stop(&mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop in time");
            std::thread::park_timeout(Duration::from_millis(5));
        }
        thread.join().expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop().expect("server failed");
        } else {
            self.handle.shutdown();
        }
    }
}

/// The real `wspush` binary, started with `args` on a free loopback port; killed on drop.
pub struct BinaryServer {
    pub addr: SocketAddr,
    /// The push API's address, unless started with `--api-listen off`.
    pub api: Option<SocketAddr>,
    pub child: Child,
    /// Lines the server logged after its start-up line.
    pub log: mpsc::Receiver<String>,
}

impl BinaryServer {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_prefix(&[], args)
    }

    /// Starts the binary under a wrapper command such as `prlimit --nofile=32:32`.
    pub fn start_with_prefix(prefix: &[&str], args: &[&str]) -> Self {
        let binary = env!("CARGO_BIN_EXE_wspush");
        let mut command = match prefix.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut command = Command::new(wrapper);
                command.args(wrapper_args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        // Only what the test asks for: not the developer's exported WSPUSH_* settings. (A
        // wrapper such as `env WSPUSH_AUTH_SECRET=…` in `prefix` still sets its own.)
        scrub_wspush_env(&mut command, std::env::vars_os());
        if !args.contains(&"--api-listen") {
            command.args(["--api-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wspush");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let next_line = || {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("no start-up line from wspush")
        };
        let addr = loop {
            let line = next_line();
            if let Some(rest) = line.split(" listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let api = loop {
            let line = next_line();
            if let Some(rest) = line.split("push API listening on http://").nth(1) {
                break Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
            if line.contains("push API off") {
                break None;
            }
        };
        Self {
            addr,
            api,
            child,
            log: rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the server to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "wspush did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Removes from `command` every variable in `inherited` whose name starts with `WSPUSH_`, so
/// the child does not see it; other variables stay inherited.
pub fn scrub_wspush_env(
    command: &mut Command,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) {
    for (name, _) in inherited {
        if name.as_encoded_bytes().starts_with(b"WSPUSH_") {
            command.env_remove(name);
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A frame as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A scripted client over a plain blocking socket with a read timeout.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Encodes one client frame, masked with `KEY` unless `masked` is false.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&KEY);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close frame payload: code then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

impl RawClient {
    /// Opens a TCP connection without any handshake.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Wraps a socket the test connected itself (e.g. with socket options set before
    /// `connect`), with the same timeouts and `TCP_NODELAY` as [`RawClient::connect`].
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a valid handshake, asserting `101`.
    pub fn open(addr: SocketAddr) -> Self {
        let mut client = Self::connect(addr);
        client.send_raw(upgrade_request("/").as_bytes());
        let (status, head) = client.read_http_response();
        assert_eq!(status, 101, "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        client
    }

    /// Opens a connection and logs in to the push protocol as `uid`.
    pub fn login(addr: SocketAddr, uid: &str) -> Self {
        let mut client = Self::open(addr);
        client.send_text(uid);
        assert_eq!(
            client.expect_text(),
            format!("login success, your uid is {uid}")
        );
        client
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&frame(fin, opcode, payload, true));
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, TEXT, text.as_bytes());
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_frame(true, BINARY, bytes);
    }

    /// Reads more bytes into the buffer; panics on timeout, returns false on EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read from server failed or timed out: {e}"),
        }
    }

    /// Reads an HTTP response head (and its body, if it has a Content-Length).
    pub fn read_http_response(&mut self) -> (u16, String) {
        let end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            assert!(self.fill(), "connection closed before an HTTP response");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let body_len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        while self.buf.len() < end + body_len {
            assert!(self.fill(), "connection closed inside an HTTP body");
        }
        let body = String::from_utf8_lossy(&self.buf[end..end + body_len]).into_owned();
        self.buf.drain(..end + body_len);
        (status, head + &body)
    }

    /// Reads the next frame; panics on timeout or EOF.
    pub fn read_frame(&mut self) -> Frame {
        self.try_read_frame()
            .expect("connection closed before a frame")
    }

    /// Reads the next frame, or `None` at EOF.
    pub fn try_read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads the next frame, skipping heartbeat pings.
    pub fn read_data_frame(&mut self) -> Frame {
        loop {
            let frame = self.read_frame();
            if frame.opcode != PING {
                return frame;
            }
        }
    }

    /// Reads a text frame and returns its text.
    pub fn expect_text(&mut self) -> String {
        let frame = self.read_data_frame();
        assert_eq!(frame.opcode, TEXT, "expected text, got {frame:?}");
        String::from_utf8(frame.payload).unwrap()
    }

    /// Reads a binary frame and returns its payload.
    pub fn expect_binary(&mut self) -> Vec<u8> {
        let frame = self.read_data_frame();
        assert_eq!(frame.opcode, BINARY, "expected binary, got {frame:?}");
        frame.payload
    }

    /// Reads frames until a close frame and returns its code (None if empty) and reason.
    pub fn expect_close(&mut self) -> (Option<u16>, String) {
        loop {
            let frame = self.read_frame();
            if frame.opcode == CLOSE {
                let code = (frame.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                let reason = String::from_utf8_lossy(frame.payload.get(2..).unwrap_or(&[]));
                return (code, reason.into_owned());
            }
        }
    }

    /// Asserts the server closes the TCP connection (after anything still buffered).
    pub fn expect_eof(&mut self) {
        self.buf.clear();
        while self.fill() {
            self.buf.clear();
        }
    }
}

/// Parses one unmasked server frame from the start of `buf`.
fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "server frames must not be masked");
    let (len, start) = match second & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    let frame = Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        payload,
    };
    Some((frame, start + len))
}

/// A config with short timeouts switched off, for tests that do not test timers.
pub fn quiet_config() -> Config {
    Config {
        ping_interval: None,
        idle_timeout: None,
        login_timeout: None,
        ..Config::default()
    }
}
