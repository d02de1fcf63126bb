//! The client side of a load run: many WebSocket connections on one `mio` poll, speaking the
//! reference protocol with the crate's own codec (client role: frames masked, server frames
//! decoded unmasked).
//!
//! Owns the sockets; reports what happens to each connection as `FleetEvent`s and leaves every
//! decision (what to send, when) to the scenario driving it. Invariant: the fleet never waits
//! longer than the timeout given to `turn`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};
use wspush::protocol::deflate::Inflater;
use wspush::protocol::frame::{encode_header, MAX_HEADER_LEN};
use wspush::protocol::mask::apply_mask;
use wspush::protocol::{Decoder, Event, Message, OpCode, Role};

const REQUEST_HEAD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The offer a `--deflate` client makes: Chromium's.
const DEFLATE_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// The name a `--tls` client expects in the server's certificate.
pub const TLS_NAME: &str = "localhost";

/// Largest message a bench client accepts.
const MAX_MESSAGE: usize = 16 << 20;

/// What happened to a connection.
#[derive(Debug)]
pub enum FleetEvent<'a> {
    /// The handshake completed and the login was answered.
    Ready {
        key: usize,
        /// From connect start to the `101` answer.
        handshake: Duration,
        /// From connect start to the login answer.
        bound: Duration,
    },
    /// A data message after the login answer.
    Message { key: usize, payload: &'a [u8] },
    /// The connection ended (server close, reset, protocol error).
    Closed { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Handshaking,
    LoggingIn,
    Ready,
}

struct Client {
    stream: TcpStream,
    /// The TLS session over `stream`, with `--tls`.
    tls: Option<Box<ClientConnection>>,
    stage: Stage,
    started: Instant,
    handshake: Duration,
    head: Vec<u8>,
    decoder: Decoder,
    out: Vec<u8>,
    written: usize,
    blocked: bool,
    /// The login frame, held until the `101` arrives.
    login: Vec<u8>,
}

/// Many client connections driven by one poll.
pub struct Fleet {
    poll: Poll,
    events: Events,
    clients: Slab<Client>,
    /// The server addresses; a connection goes to the one its `open` names.
    addrs: Vec<SocketAddr>,
    scratch: Vec<u8>,
    mask_state: u64,
    /// Keys with output left after a write returned `WouldBlock`.
    dirty: Vec<usize>,
    /// Sockets created ahead of their connect (see `prepare`).
    spare: Vec<Socket>,
    /// Send the login right behind the upgrade request instead of after the `101`.
    early_login: bool,
    /// wss: the client configuration every connection's TLS session starts from.
    tls: Option<Arc<ClientConfig>>,
    /// TLS handshakes that resumed an earlier session.
    tls_resumed: u64,
    /// Offer permessage-deflate (`--deflate`); what the server compresses is inflated here,
    /// with one decompressor for every connection (the server takes no context over).
    deflate: bool,
    inflater: Inflater,
    inflated: Vec<u8>,
    /// Bytes read from the server (after TLS: plaintext), for bytes per delivery.
    bytes_in: u64,
}

impl Fleet {
    /// A fleet connecting to `addrs` (at least one: several nodes of a cluster, or one
    /// server). With `early_login`, each connection sends its login frame in the same write as
    /// the upgrade request, saving a round trip; RFC 6455 §4.1 has a client wait for the
    /// server's answer first, so this works only with servers that keep bytes following the
    /// request (wspush does).
    pub fn new(
        addrs: Vec<SocketAddr>,
        early_login: bool,
        tls: Option<Arc<ClientConfig>>,
        deflate: bool,
    ) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no server address",
            ));
        }
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            clients: Slab::new(),
            addrs,
            scratch: vec![0; 256 << 10],
            mask_state: 0x9E37_79B9_7F4A_7C15,
            dirty: Vec::new(),
            spare: Vec::new(),
            early_login,
            tls,
            tls_resumed: 0,
            deflate,
            inflater: Inflater::default(),
            inflated: Vec::new(),
            bytes_in: 0,
        })
    }

    /// The address connection `node` goes to: `node` modulo the number of addresses.
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.addrs[node % self.addrs.len()]
    }

    /// Creates up to `count` sockets now, so that `open` only connects: socket creation is
    /// work on the client alone, and a connect-rate measurement should not carry it. (They are
    /// of the first address's family; a connection to an address of another family gets a
    /// new socket.)
    pub fn prepare(&mut self, count: usize) -> io::Result<()> {
        while self.spare.len() < count {
            let socket = new_socket(self.addrs[0])?;
            self.spare.push(socket);
        }
        Ok(())
    }

    /// Starts a non-blocking connect to `addr` on a prepared socket, or on a new one.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
        let same_family = Domain::for_address(addr) == Domain::for_address(self.addrs[0]);
        let socket = match self.spare.pop().filter(|_| same_family) {
            Some(socket) => socket,
            None => new_socket(addr)?,
        };
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    /// Starts a connection to address `node` (see `addr`) that logs in as `uid`; returns its
    /// key. A `sender` gets TCP_NODELAY, so that its small messages leave at once rather than
    /// wait for ACKs; the others skip that syscall.
    pub fn open(&mut self, uid: &str, sender: bool, node: usize) -> io::Result<usize> {
        let addr = self.addr(node);
        let mut stream = self.connect(addr)?;
        if sender {
            stream.set_nodelay(true)?;
        }
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let offer = if self.deflate { DEFLATE_OFFER } else { "" };
        let mut out =
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{offer}{REQUEST_HEAD}").into_bytes();
        let mut login = Vec::new();
        let key_bytes = next_mask(&mut self.mask_state);
        push_frame(
            if self.early_login {
                &mut out
            } else {
                &mut login
            },
            OpCode::Text,
            uid.as_bytes(),
            key_bytes,
        );
        let tls = match &self.tls {
            Some(config) => Some(Box::new(
                ClientConnection::new(
                    Arc::clone(config),
                    ServerName::try_from(TLS_NAME).map_err(io::Error::other)?,
                )
                .map_err(io::Error::other)?,
            )),
            None => None,
        };
        let client = entry.insert(Client {
            stream,
            tls,
            stage: Stage::Connecting,
            started: Instant::now(),
            handshake: Duration::ZERO,
            head: Vec::new(),
            decoder: Decoder::new(Role::Client),
            out,
            written: 0,
            blocked: false,
            login,
        });
        // On loopback the connection is usually established before `connect` returns: send the
        // request at once instead of waiting for the writable event. If it is not, the write
        // fails and the writable event sends it.
        write_out(client);
        if client.written > 0 || client.out.is_empty() {
            client.stage = Stage::Handshaking;
        }
        Ok(key)
    }

    /// Takes connection `key` out of the fleet: deregistered, never read or written by it
    /// again, and no event reports it. The socket is the caller's from now on (the `attack`
    /// scenario's attacker logs in through the fleet, then writes on its own and never reads).
    pub fn detach(&mut self, key: usize) -> Option<TcpStream> {
        let mut client = self.clients.try_remove(key)?;
        let _ = self.poll.registry().deregister(&mut client.stream);
        self.dirty.retain(|&dirty| dirty != key);
        Some(client.stream)
    }

    /// Bytes read from the server so far (WebSocket frames as they arrived: compressed ones
    /// counted compressed).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// TLS handshakes so far that resumed an earlier session (`--tls-resume`).
    pub fn tls_resumed(&self) -> u64 {
        self.tls_resumed
    }

    /// Connections not yet closed.
    pub fn live(&self) -> usize {
        self.clients.len()
    }

    /// Queues one masked text message on connection `key`; everything queued for a connection
    /// goes out in one write at the next `turn` (or `flush`).
    pub fn send_text(&mut self, key: usize, payload: &[u8]) {
        let mask = next_mask(&mut self.mask_state);
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.out.is_empty() {
            self.dirty.push(key);
        }
        push_frame(&mut client.out, OpCode::Text, payload, mask);
    }

    /// Writes what is queued on every connection that has output.
    pub fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.retain(|&key| {
            let Some(client) = self.clients.get_mut(key) else {
                return false;
            };
            if !client.blocked && client.stage != Stage::Connecting {
                write_out(client);
            }
            has_output(client)
        });
        self.dirty = dirty;
    }

    /// Waits up to `timeout` for readiness once and reports what happened.
    pub fn turn(
        &mut self,
        timeout: Duration,
        mut on_event: impl FnMut(FleetEvent<'_>),
    ) -> io::Result<()> {
        self.flush();
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable(),
                    e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for (key, readable, writable, peer_closed) in ready {
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            if writable {
                if client.stage == Stage::Connecting {
                    client.stage = Stage::Handshaking;
                }
                client.blocked = false;
                write_out(client);
                if has_output(client) {
                    self.dirty.push(key);
                }
            }
            if readable && client.stage != Stage::Connecting {
                self.read(key, peer_closed, &mut on_event);
            }
        }
        Ok(())
    }

    fn read(&mut self, key: usize, peer_closed: bool, on_event: &mut impl FnMut(FleetEvent<'_>)) {
        loop {
            let client = &mut self.clients[key];
            let n = match read_in(client, &mut self.scratch) {
                Ok(0) => return self.close(key, "server closed the TCP connection", on_event),
                Ok(n) => {
                    self.bytes_in += n as u64;
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(key, &format!("read failed: {e}"), on_event),
            };
            let mut start = 0;
            if client.stage == Stage::Handshaking {
                client.head.extend_from_slice(&self.scratch[..n]);
                let Some(end) = client.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                if !client.head.starts_with(b"HTTP/1.1 101") {
                    let status = String::from_utf8_lossy(&client.head[..end]).into_owned();
                    return self.close(key, &format!("handshake refused: {status}"), on_event);
                }
                client.handshake = client.started.elapsed();
                client.stage = Stage::LoggingIn;
                let head = String::from_utf8_lossy(&client.head[..end]).to_ascii_lowercase();
                if head.contains("sec-websocket-extensions: permessage-deflate") {
                    client.decoder.accept_deflate();
                }
                if client.tls.as_ref().and_then(|tls| tls.handshake_kind())
                    == Some(rustls::HandshakeKind::Resumed)
                {
                    self.tls_resumed += 1;
                }
                // Whatever followed the answer is already frame data.
                let extra = client.head.len() - (end + 4);
                start = n - extra;
                client.head = Vec::new();
                if !client.login.is_empty() {
                    let had_output = has_output(client);
                    client.out.append(&mut client.login);
                    client.login = Vec::new();
                    if !client.blocked {
                        write_out(client);
                    }
                    if !had_output && has_output(client) {
                        self.dirty.push(key);
                    }
                }
            }
            if let Err(why) = self.decode(key, start, n, on_event) {
                return self.close(key, &why, on_event);
            }
            if n < self.scratch.len() && !peer_closed && self.clients[key].tls.is_none() {
                // A short read emptied the receive queue; new data raises a new edge (a FIN
                // already seen does not, so then read on to the end of the stream).
                return;
            }
        }
    }

    fn decode(
        &mut self,
        key: usize,
        start: usize,
        end: usize,
        on_event: &mut impl FnMut(FleetEvent<'_>),
    ) -> Result<(), String> {
        let client = &mut self.clients[key];
        let (inflater, inflated) = (&mut self.inflater, &mut self.inflated);
        let mut pongs: Vec<Vec<u8>> = Vec::new();
        let mut closed = None;
        let mut stage = client.stage;
        let started = client.started;
        let handshake = client.handshake;
        let result = client
            .decoder
            .decode(&mut self.scratch[start..end], MAX_MESSAGE, |event| {
                let payload = match event {
                    Event::Message(Message::Text(text)) => text.as_bytes(),
                    Event::Message(Message::Binary(bytes)) => bytes,
                    Event::Deflated { payload, .. } => {
                        inflated.clear();
                        if let Err(e) = inflater.inflate(payload, MAX_MESSAGE, inflated) {
                            closed = Some(format!("bad compressed message from server: {e}"));
                            return ControlFlow::Break(());
                        }
                        inflated.as_slice()
                    }
                    Event::Ping(payload) => {
                        pongs.push(payload.to_vec());
                        return ControlFlow::Continue(());
                    }
                    Event::Pong(_) => return ControlFlow::Continue(()),
                    Event::Close(frame) => {
                        closed = Some(format!("server sent close {:?}", frame.map(|f| f.code.0)));
                        return ControlFlow::Break(());
                    }
                };
                if stage == Stage::LoggingIn {
                    if payload.starts_with(b"login success") {
                        stage = Stage::Ready;
                        on_event(FleetEvent::Ready {
                            key,
                            handshake,
                            bound: started.elapsed(),
                        });
                    } else {
                        closed = Some(format!(
                            "login refused: {}",
                            String::from_utf8_lossy(payload)
                        ));
                        return ControlFlow::Break(());
                    }
                } else {
                    on_event(FleetEvent::Message { key, payload });
                }
                ControlFlow::Continue(())
            });
        client.stage = stage;
        result.map_err(|e| format!("protocol error from server: {e}"))?;
        for payload in pongs {
            let mask = next_mask(&mut self.mask_state);
            let client = &mut self.clients[key];
            if client.out.is_empty() {
                self.dirty.push(key);
            }
            push_frame(&mut client.out, OpCode::Pong, &payload, mask);
        }
        closed.map_or(Ok(()), Err)
    }

    fn close(&mut self, key: usize, why: &str, on_event: &mut impl FnMut(FleetEvent<'_>)) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
            on_event(FleetEvent::Closed {
                why: why.to_owned(),
            });
        }
    }
}

/// A non-blocking TCP socket that resets rather than lingers when closed: a load run ends by
/// dropping thousands of connections, and ordinary closes would leave as many ports in
/// TIME_WAIT for a minute, which makes every later `connect` on the machine slower.
fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_linger(Some(Duration::ZERO))?;
    Ok(socket)
}

/// Reads what the server sent: from the socket, or decrypted from the TLS session (which reads
/// the socket until it would block, writing the handshake's answers on the way).
fn read_in(client: &mut Client, buf: &mut [u8]) -> io::Result<usize> {
    let Some(tls) = &mut client.tls else {
        return client.stream.read(buf);
    };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(&mut client.stream)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets().map_err(io::Error::other)?;
        if write_tls(tls, &mut client.stream) {
            client.blocked = true;
        }
    }
}

/// Writes the TLS session's ciphertext; true if the socket is full.
fn write_tls(tls: &mut ClientConnection, stream: &mut TcpStream) -> bool {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock: the writable event goes on; anything else: the read side reports it.
            Err(_) => return true,
        }
    }
    false
}

/// Whether a client has output the socket has not taken.
fn has_output(client: &Client) -> bool {
    !client.out.is_empty() || client.tls.as_ref().is_some_and(|tls| tls.wants_write())
}

/// Writes what the kernel takes of a client's pending output.
fn write_out(client: &mut Client) {
    if let Some(tls) = &mut client.tls {
        if client.written < client.out.len() {
            // Buffered by the session until its handshake is done, then encrypted.
            let _ = tls.writer().write_all(&client.out[client.written..]);
            client.out.clear();
            client.written = 0;
        }
        if write_tls(tls, &mut client.stream) {
            client.blocked = true;
        }
        return;
    }
    while client.written < client.out.len() {
        match client.stream.write(&client.out[client.written..]) {
            Ok(n) => client.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                client.blocked = true;
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // The read side reports the failure.
                client.blocked = true;
                return;
            }
        }
    }
    client.out.clear();
    client.written = 0;
}

/// Appends one whole masked frame.
pub fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let len = encode_header(&mut header, true, opcode, payload.len(), Some(mask));
    out.extend_from_slice(&header[..len]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// A cheap varying masking key (xorshift); clients must mask, not be unpredictable here.
pub fn next_mask(state: &mut u64) -> [u8; 4] {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state as u32).to_ne_bytes()
}
