//! The push API: a second listener speaking HTTP/1.1 (keep-alive, pipelining), served by the
//! same reactor as the WebSocket connections, so that other systems can push to users.
//!
//! Owns the API listener and its connections. Requests are answered in order, one response per
//! request, through [`routes`]; deliveries use the core's own send paths. Invariants: a
//! connection whose unsent responses exceed `OUTPUT_HIGH_WATER` is not read (so pipelining
//! cannot grow memory); buffered input never exceeds one request plus one read; an API client
//! that stalls mid-request or idles past `ApiConfig::timeout` is closed, with 408 if a request
//! was in progress; nothing here can close or delay a WebSocket connection.

pub mod http;
mod report;
mod routes;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use self::http::{encode_response, parse_request, Limits, Parsed, CONTINUE};
use self::routes::Reply;
use crate::server::{Core, Tick};
use crate::ApiConfig;

/// Tokens at and above this value (below the reactor's fixed tokens) are API connections.
pub(crate) const API_TOKEN_BASE: usize = 1 << 32;

/// Unsent response bytes above which a connection is not read until it drains.
const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// Reads per connection per event before others get a turn.
const READS_PER_TURN: usize = 8;

/// The API listener and its connections.
pub(crate) struct Api {
    listener: TcpListener,
    conns: Slab<ApiConn>,
    config: ApiConfig,
    limits: Limits,
    accept_paused: bool,
    /// Connections whose read budget ran out with input possibly left.
    ready: Vec<usize>,
}

struct ApiConn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// When the connection last made progress (bytes in or a response out).
    since: Tick,
    continue_sent: bool,
    /// Close once the output is written.
    closing: bool,
    /// The write side is shut; reading until the client closes.
    draining: bool,
    readable: bool,
    blocked: bool,
    in_ready: bool,
}

impl Api {
    /// Binds the API listener; refuses a non-loopback address without an API key.
    pub(crate) fn bind(config: ApiConfig, registry: &Registry, token: Token) -> io::Result<Self> {
        if !config.listen.ip().is_loopback() && config.key.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to serve the push API on non-loopback {} without an API key \
                     (--api-key)",
                    config.listen
                ),
            ));
        }
        let mut listener = crate::server::bind_listener(config.listen, 1024)?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Self {
            listener,
            conns: Slab::new(),
            limits: Limits {
                max_head: config.max_header_size,
                max_body: config.max_body,
            },
            config,
            accept_paused: false,
            ready: Vec::new(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until the kernel queue is empty or the connection limit is reached.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Tick) {
        let was_paused = std::mem::replace(&mut self.accept_paused, false);
        loop {
            if self.conns.len() >= self.config.max_connections {
                self.accept_paused = true;
                return;
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.conns.vacant_entry();
                    let token = Token(API_TOKEN_BASE + entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(error) = registry.register(&mut stream, token, interest) {
                        warn!("could not register an API connection: {error}");
                        continue;
                    }
                    entry.insert(ApiConn::new(stream, now));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !was_paused {
                        warn!("API accept paused: {e}; resuming when a connection closes");
                    }
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    /// Handles readiness for the API connection with slot `key`.
    pub(crate) fn on_event(
        &mut self,
        key: usize,
        event: &mio::event::Event,
        core: &mut Core,
        scratch: &mut [u8],
        registry: &Registry,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_writable() {
            conn.blocked = false;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.readable = true;
        }
        self.drive(key, core, scratch, registry);
    }

    /// Writes, answers and reads for one connection until it must wait: for writability
    /// (output over the high-water mark), for input, or for its next turn (read budget spent;
    /// it is then put on the ready list).
    fn drive(&mut self, key: usize, core: &mut Core, scratch: &mut [u8], registry: &Registry) {
        let api_key = self.config.key.as_deref();
        let limits = self.limits;
        let conn = &mut self.conns[key];
        let mut reads = 0;
        let alive = loop {
            if !conn.flush(core.now) {
                break false;
            }
            if conn.pending() > OUTPUT_HIGH_WATER {
                break true;
            }
            if conn.answer(core, api_key, &limits) {
                continue;
            }
            if !conn.readable {
                break true;
            }
            if reads == READS_PER_TURN {
                if !conn.in_ready {
                    conn.in_ready = true;
                    self.ready.push(key);
                }
                break true;
            }
            reads += 1;
            match conn.stream.read(scratch) {
                Ok(0) => break false,
                Ok(n) => {
                    conn.since = core.now;
                    if !conn.draining && !conn.closing {
                        conn.input.extend_from_slice(&scratch[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("API connection read failed: {e}");
                    break false;
                }
            }
        };
        if !alive {
            self.remove(key, registry, core.now);
        }
    }

    /// Whether some connection still has input to process in a later turn.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Gives every connection on the ready list its next turn.
    pub(crate) fn run_ready(&mut self, core: &mut Core, scratch: &mut [u8], registry: &Registry) {
        for key in std::mem::take(&mut self.ready) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_ready = false;
                self.drive(key, core, scratch, registry);
            }
        }
    }

    /// Closes connections that stalled or idled past the timeout; resumes a paused accept.
    pub(crate) fn sweep(&mut self, core: &mut Core, registry: &Registry) {
        let timeout = self.config.timeout;
        let mut expired = Vec::new();
        for (key, conn) in &mut self.conns {
            if !core.has_elapsed(conn.since, timeout) {
                continue;
            }
            if conn.draining || conn.closing || conn.input.is_empty() {
                expired.push(key);
            } else {
                let reply = Reply::error(408, "request not completed in time");
                conn.respond(core, reply, false);
                if !conn.flush(core.now) {
                    expired.push(key);
                }
            }
        }
        for key in expired {
            self.remove(key, registry, core.now);
        }
        if self.accept_paused {
            self.accept(registry, core.now);
        }
    }

    fn remove(&mut self, key: usize, registry: &Registry, now: Tick) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut conn.stream);
        }
        if self.accept_paused {
            self.accept(registry, now);
        }
    }
}

impl ApiConn {
    fn new(stream: TcpStream, now: Tick) -> Self {
        Self {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            since: now,
            continue_sent: false,
            closing: false,
            draining: false,
            readable: false,
            blocked: false,
            in_ready: false,
        }
    }

    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Answers complete requests in the input, in order, until the output reaches the
    /// high-water mark; returns whether it answered any.
    fn answer(&mut self, core: &mut Core, api_key: Option<&str>, limits: &Limits) -> bool {
        let mut answered = false;
        while !self.closing && self.pending() <= OUTPUT_HIGH_WATER {
            match parse_request(&self.input, limits) {
                Ok(Parsed::Complete(request, used)) => {
                    self.input.drain(..used);
                    self.continue_sent = false;
                    let mut reply = routes::handle(core, api_key, &request);
                    if request.method == "HEAD" {
                        // RFC 9112 §6.3: a HEAD response ends after its headers; Content-Length
                        // still tells what a GET would have carried.
                        reply.omit_body = true;
                    }
                    self.respond(core, reply, request.keep_alive);
                }
                Ok(Parsed::Incomplete { expects_continue }) => {
                    if expects_continue && !self.continue_sent {
                        self.output.extend_from_slice(CONTINUE);
                        self.continue_sent = true;
                    }
                    return answered;
                }
                Err(error) => {
                    debug!("API request refused: {} {}", error.status, error.message);
                    self.respond(core, Reply::error(error.status, error.message), false);
                }
            }
            answered = true;
        }
        answered
    }

    fn respond(&mut self, core: &mut Core, reply: Reply, keep_alive: bool) {
        *core.stats.api_requests.entry(reply.status).or_default() += 1;
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let mut response = encode_response(
            reply.status,
            reply.content_type,
            &reply.body,
            keep_alive,
            &headers,
        );
        if reply.omit_body {
            response.truncate(response.len() - reply.body.len());
        }
        self.output.extend_from_slice(&response);
        if !keep_alive {
            self.closing = true;
            self.input = Vec::new();
        }
    }

    /// Writes pending output; false if the connection is finished or broken.
    fn flush(&mut self, now: Tick) -> bool {
        while self.pending() > 0 && !self.blocked {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.written += n;
                    self.since = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.pending() == 0 {
            self.output.clear();
            self.written = 0;
            if self.output.capacity() > OUTPUT_HIGH_WATER {
                self.output = Vec::new();
            }
            if self.closing && !self.draining {
                // Shut the write side and read until the client closes, so unread input
                // cannot turn the last response into a reset.
                self.draining = self.stream.shutdown(Shutdown::Write).is_ok();
                return self.draining;
            }
        }
        true
    }
}
