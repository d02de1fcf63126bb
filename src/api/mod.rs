//! The push API endpoint: a second listener speaking HTTP/1.1 (keep-alive, pipelining), served
//! by the same reactor as the WebSocket connections, so that other systems can push to users.
//!
//! Owns the API listener and its connections. Requests are answered in order, one response per
//! request, through `routes`, which act on the hub only through the same `Context` handlers
//! use. Follows the endpoint phases: readiness marks a connection ready; its turn reads and
//! answers; flush writes the responses. Invariants: a connection whose unsent responses exceed
//! `OUTPUT_HIGH_WATER` is not read (so pipelining cannot grow memory); a request not complete
//! `ApiConfig::timeout` after its first byte gets 408 however slowly its bytes trickle in, and a
//! connection idle that long is closed; during a shutdown it goes on answering, but every response closes its connection;
//! nothing here can close or delay a WebSocket connection.

pub mod http;
mod report;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, error};
use mio::event::Event;
use mio::net::TcpListener;
use mio::Interest;
use slab::Slab;

use self::http::{encode_response, Limits, Parsed, RequestParser, CONTINUE};
use self::routes::Reply;
use crate::endpoint::{Cx, Endpoint, Slot, SweepTimer, Tokens};
use crate::hub::ids::{has_elapsed, tick, Tick};
use crate::hub::Hub;
use crate::net::{AcceptGate, Socket, Transport};
use crate::{ApiConfig, Handler};
use mio::net::TcpStream;

/// Unsent response bytes above which a connection is not read until it drains.
const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// Reads per connection per turn before others get theirs.
const READS_PER_TURN: usize = 8;

/// Backlog of the API listener.
const API_BACKLOG: u32 = 1024;

/// The push API endpoint: its listener and its connections (over transport `T`: TCP sockets,
/// or a scripted fake in tests).
pub(crate) struct Api<T = TcpStream> {
    tokens: Tokens,
    /// `None` only for tests, which add connections themselves.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Slab<ApiConn<T>>,
    config: ApiConfig,
    limits: Limits,
    gate: AcceptGate,
    /// Connections to read and answer in the next turn.
    ready: Vec<usize>,
    /// Connections with responses to write.
    dirty: Vec<usize>,
    sweeps: SweepTimer,
    /// A shutdown is under way: every response closes its connection.
    draining: bool,
    /// A connection was removed since the last flush: a paused accept may resume.
    freed: bool,
}

/// A response waiting for a survey of the cluster.
struct Waiting {
    survey: u64,
    body: serde_json::Value,
    keep_alive: bool,
    omit_body: bool,
}

struct ApiConn<T> {
    stream: T,
    input: Vec<u8>,
    /// Where parsing of the request at the start of `input` stands.
    parser: RequestParser,
    /// In a cluster: the answered request whose response waits for the other nodes' counts
    /// (requests pipelined behind it wait too, so that responses stay in order).
    waiting: Option<Waiting>,
    output: Vec<u8>,
    written: usize,
    /// When a response last went out, or the connection opened: the idle timeout runs from
    /// here.
    since: Tick,
    /// When the first byte of the request now buffered arrived: the request timeout runs from
    /// here, however its bytes trickle in and however slowly earlier answers are read.
    request_since: Tick,
    continue_sent: bool,
    /// The current request's head passed `routes::precheck`.
    head_checked: bool,
    /// Close once the output is written.
    closing: bool,
    /// The write side is shut; reading until the client closes.
    write_shut: bool,
    /// The client closed its sending side: answer what arrived, then close.
    peer_done: bool,
    readable: bool,
    blocked: bool,
    in_ready: bool,
    in_dirty: bool,
}

impl Api<TcpStream> {
    /// Binds the API listener and registers it under `tokens` (the configuration was checked by
    /// `Config::checked`, which refuses a non-loopback address without an API key).
    pub(crate) fn bind(
        config: ApiConfig,
        registry: &mio::Registry,
        tokens: Tokens,
        reuse_port: bool,
    ) -> io::Result<Self> {
        let mut listener = crate::net::bind_listener(config.listen, API_BACKLOG, None, reuse_port)?;
        registry.register(
            &mut listener,
            tokens.token(Slot::Listener),
            Interest::READABLE,
        )?;
        let local_addr = listener.local_addr()?;
        Ok(Self::new(tokens, Some(listener), local_addr, config))
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts until the kernel queue is empty or the connection limit is reached.
    fn accept(&mut self, registry: &mio::Registry, now: Duration) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            let has_room = self.conns.len() < self.config.max_connections;
            let Some((mut stream, _)) = self.gate.next(listener, has_room) else {
                return;
            };
            let entry = self.conns.vacant_entry();
            let token = self.tokens.token(Slot::Conn(entry.key()));
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.register(&mut stream, token, interest) {
                error!("could not register an API connection: {e}");
                continue;
            }
            entry.insert(ApiConn::new(stream, tick(now), self.limits));
        }
    }
}

impl<T: Transport> Api<T> {
    fn new(
        tokens: Tokens,
        listener: Option<TcpListener>,
        local_addr: SocketAddr,
        config: ApiConfig,
    ) -> Self {
        let sweeps = SweepTimer::quarter_of(Some(config.timeout));
        Self {
            tokens,
            local_addr,
            listener,
            conns: Slab::new(),
            limits: Limits {
                max_head: config.max_header_size,
                max_body: config.max_body,
            },
            config,
            gate: AcceptGate::new("push API"),
            ready: Vec::new(),
            dirty: Vec::new(),
            sweeps,
            draining: false,
            freed: false,
        }
    }

    fn mark_ready(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.in_ready {
            conn.in_ready = true;
            self.ready.push(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.in_dirty && conn.pending() > 0 {
            conn.in_dirty = true;
            self.dirty.push(key);
        }
    }

    /// Reads and answers for one connection until it must wait: for input, for its output to
    /// drain below the high-water mark, or for its next turn (read budget spent).
    fn serve<H: Handler, W: 'static>(&mut self, key: usize, cx: &mut Cx<'_, H, W>) {
        let draining = self.draining;
        let conn = &mut self.conns[key];
        let mut reads = 0;
        let alive = loop {
            conn.answer(cx, &self.config, draining);
            // A response waiting for the cluster holds back everything behind it: nothing more
            // is read until it is answered (pipelining cannot grow memory meanwhile).
            if conn.pending() > OUTPUT_HIGH_WATER || !conn.readable || conn.waiting.is_some() {
                break true;
            }
            if reads == READS_PER_TURN {
                break true;
            }
            reads += 1;
            match conn.stream.read(cx.scratch) {
                Ok(0) => {
                    // Requests that arrived with the FIN are still answered (in `flush`).
                    conn.readable = false;
                    conn.peer_done = true;
                    break conn.pending() > 0 || conn.waiting.is_some();
                }
                Ok(n) => {
                    // A request's deadline runs from its first byte: trickling bytes does not
                    // extend it (slow-loris), and input read only to be discarded while
                    // closing does not count as progress either.
                    if !conn.write_shut && !conn.closing {
                        if conn.input.is_empty() {
                            conn.request_since = tick(cx.now);
                        }
                        conn.input.extend_from_slice(&cx.scratch[..n]);
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
            self.remove(key, cx.registry);
            return;
        }
        let conn = &self.conns[key];
        if conn.readable && conn.pending() <= OUTPUT_HIGH_WATER && conn.waiting.is_none() {
            self.mark_ready(key);
        }
        self.mark_dirty(key);
    }

    fn remove(&mut self, key: usize, registry: &mio::Registry) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            conn.stream.deregister(registry);
            self.freed = true;
        }
    }

    /// Records what the poller reported for a connection.
    fn on_readiness(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if writable {
            conn.blocked = false;
            self.mark_dirty(key);
        }
        if readable {
            self.conns[key].readable = true;
            self.mark_ready(key);
        }
    }

    /// Reads and answers for every ready connection.
    fn serve_ready<H: Handler, W: 'static>(&mut self, cx: &mut Cx<'_, H, W>) {
        for key in std::mem::take(&mut self.ready) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_ready = false;
                self.serve(key, cx);
            }
        }
    }

    /// Answers 408 to connections stalled inside a request and closes idle ones, when the
    /// sweep is due; true if it was.
    fn sweep_due<H, W>(&mut self, cx: &mut Cx<'_, H, W>) -> bool {
        if !self.sweeps.is_due(cx.now) {
            return false;
        }
        let timeout = self.config.timeout;
        let (mut expired, mut answered) = (Vec::new(), Vec::new());
        for (key, conn) in &mut self.conns {
            let waiting_for_a_request = (conn.input.is_empty() && conn.waiting.is_none())
                || conn.write_shut
                || conn.closing;
            let since = if waiting_for_a_request {
                conn.since
            } else {
                conn.request_since
            };
            if !has_elapsed(since, cx.now, timeout) {
                continue;
            }
            if waiting_for_a_request {
                expired.push(key);
            } else {
                let reply = Reply::error(408, "request not completed in time");
                conn.respond(cx.hub, reply, false);
                answered.push(key);
            }
        }
        for key in expired {
            self.remove(key, cx.registry);
        }
        for key in answered {
            self.mark_dirty(key);
        }
        true
    }

    /// Writes every connection with responses; true if a connection was removed since the
    /// last call (a paused accept may resume).
    fn write_dirty(&mut self, registry: &mio::Registry, now: Duration) -> bool {
        for key in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.in_dirty = false;
            let was_full = conn.pending() > OUTPUT_HIGH_WATER;
            match conn.flush(now) {
                Written::Broken | Written::Done => self.remove(key, registry),
                Written::Open => {
                    let conn = &self.conns[key];
                    // Answering stopped at the high-water mark: go on now that it drained.
                    if was_full && conn.pending() <= OUTPUT_HIGH_WATER {
                        self.mark_ready(key);
                    }
                }
            }
        }
        std::mem::take(&mut self.freed)
    }

    /// From now on every response closes its connection; idle keep-alive connections
    /// (nothing buffered, nothing reported readable) close at once.
    fn drain(&mut self, registry: &mio::Registry) {
        self.draining = true;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                conn.input.is_empty()
                    && conn.pending() == 0
                    && !conn.readable
                    && !conn.in_ready
                    && conn.waiting.is_none()
            })
            .map(|(key, _)| key)
            .collect();
        for key in idle {
            self.remove(key, registry);
        }
    }

    /// No response is being written, no request is half received, and no connection has input
    /// waiting for its turn (a connection whose write side is shut only waits for the client).
    fn is_idle(&self) -> bool {
        self.conns.iter().all(|(_, conn)| {
            conn.pending() == 0
                && conn.waiting.is_none()
                && (conn.write_shut || (conn.input.is_empty() && !conn.in_ready))
        })
    }
}

impl<H: Handler> Endpoint<H> for Api<TcpStream> {
    fn on_event(&mut self, slot: Slot, event: &Event, cx: &mut Cx<'_, H>) {
        match slot {
            Slot::Listener => self.accept(cx.registry, cx.now),
            Slot::Conn(key) => {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.on_readiness(key, readable, event.is_writable());
            }
        }
    }

    fn turn(&mut self, cx: &mut Cx<'_, H>) {
        // Surveys of the cluster were answered: responses waiting for them may go.
        if cx
            .hub
            .bus
            .as_mut()
            .is_some_and(|bus| std::mem::take(&mut bus.surveys_done))
        {
            let waiting: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, conn)| conn.waiting.is_some())
                .map(|(key, _)| key)
                .collect();
            for key in waiting {
                self.mark_ready(key);
            }
        }
        self.serve_ready(cx);
    }

    fn sweep(&mut self, cx: &mut Cx<'_, H>) {
        if self.sweep_due(cx) && self.gate.is_paused() {
            self.accept(cx.registry, cx.now);
        }
    }

    fn flush(&mut self, cx: &mut Cx<'_, H>) {
        if self.write_dirty(cx.registry, cx.now) && self.gate.is_paused() {
            self.accept(cx.registry, cx.now);
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        Some(self.sweeps.next())
    }

    fn has_work(&self, hub: &Hub<Socket>) -> bool {
        !self.ready.is_empty()
            || !self.dirty.is_empty()
            || hub.bus.as_ref().is_some_and(|bus| bus.surveys_done)
    }

    /// Keeps accepting and answering (so that `/health` can say 503 to a load balancer), but
    /// every response now closes its connection.
    fn begin_drain(&mut self, cx: &mut Cx<'_, H>) {
        self.drain(cx.registry);
    }

    fn is_drained(&self, _hub: &Hub<Socket>) -> bool {
        self.is_idle()
    }
}

/// How a flush left a connection.
enum Written {
    /// Still in use (or waiting for writability).
    Open,
    /// Finished: everything was answered and the client is gone, or our side could not be
    /// shut.
    Done,
    /// The socket failed.
    Broken,
}

impl<T: Transport> ApiConn<T> {
    fn new(stream: T, now: Tick, limits: Limits) -> Self {
        Self {
            stream,
            input: Vec::new(),
            parser: RequestParser::new(limits),
            waiting: None,
            output: Vec::new(),
            written: 0,
            since: now,
            request_since: now,
            continue_sent: false,
            head_checked: false,
            closing: false,
            write_shut: false,
            peer_done: false,
            readable: false,
            blocked: false,
            in_ready: false,
            in_dirty: false,
        }
    }

    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Answers complete requests in the input, in order, until the output reaches the
    /// high-water mark; the answered requests leave the input in one move at the end (not one
    /// per request, which made a deep pipeline quadratic).
    fn answer<H: Handler, W: 'static>(
        &mut self,
        cx: &mut Cx<'_, H, W>,
        api: &ApiConfig,
        draining: bool,
    ) {
        let mut consumed = 0;
        self.answer_from(cx, api, draining, &mut consumed);
        // A close cleared the input already.
        if consumed > 0 && !self.closing {
            self.input.drain(..consumed);
        }
    }

    fn answer_from<H: Handler, W: 'static>(
        &mut self,
        cx: &mut Cx<'_, H, W>,
        api: &ApiConfig,
        draining: bool,
        consumed: &mut usize,
    ) {
        while !self.closing && self.pending() <= OUTPUT_HIGH_WATER {
            if let Some(waiting) = &self.waiting {
                let survey = waiting.survey;
                let Some(result) = cx.hub.bus.as_mut().and_then(|bus| bus.take_result(survey))
                else {
                    return;
                };
                if let Some(waiting) = self.waiting.take() {
                    let mut reply = routes::complete(waiting.body, &result);
                    reply.omit_body = waiting.omit_body;
                    self.respond(cx.hub, reply, waiting.keep_alive);
                }
                continue;
            }
            match self.parser.parse(&self.input[*consumed..]) {
                Ok(Parsed::Complete(request, used)) => {
                    *consumed += used;
                    self.continue_sent = false;
                    self.head_checked = false;
                    // A request pipelined behind this one starts its clock now.
                    self.request_since = tick(cx.now);
                    let mut reply = routes::handle(&mut cx.context(), api, &request);
                    if request.method == "HEAD" {
                        // RFC 9112 §6.3: a HEAD response ends after its headers; Content-Length
                        // still tells what a GET would have carried.
                        reply.omit_body = true;
                    }
                    let keep_alive = request.keep_alive && !draining;
                    if let Some((survey, body)) = reply.survey.take() {
                        self.waiting = Some(Waiting {
                            survey,
                            body,
                            keep_alive,
                            omit_body: reply.omit_body,
                        });
                        continue;
                    }
                    self.respond(cx.hub, reply, keep_alive);
                }
                Ok(Parsed::Incomplete {
                    expects_continue,
                    head,
                }) => {
                    // A request that will be refused is refused before its body is read.
                    let refusal = head.filter(|_| !self.head_checked).map(|head| {
                        routes::precheck(&cx.context(), api, head).map_err(|mut refusal| {
                            refusal.omit_body = head.method == "HEAD";
                            refusal
                        })
                    });
                    match refusal {
                        Some(Err(refusal)) => {
                            self.respond(cx.hub, refusal, false);
                            return;
                        }
                        Some(Ok(())) => self.head_checked = true,
                        None => {}
                    }
                    if expects_continue && !self.continue_sent {
                        self.output.extend_from_slice(CONTINUE);
                        self.continue_sent = true;
                    }
                    return;
                }
                Err(error) => {
                    debug!("API request refused: {} {}", error.status, error.message);
                    self.respond(cx.hub, Reply::error(error.status, error.message), false);
                }
            }
        }
    }

    fn respond<W>(&mut self, hub: &mut Hub<W>, reply: Reply, keep_alive: bool) {
        *hub.stats.api_requests.entry(reply.status).or_default() += 1;
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
            self.parser.reset();
        }
    }

    /// Writes pending output.
    fn flush(&mut self, now: Duration) -> Written {
        while self.pending() > 0 && !self.blocked {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Written::Broken,
                Ok(n) => {
                    self.written += n;
                    self.since = tick(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Written::Broken,
            }
        }
        if self.pending() == 0 {
            self.output.clear();
            self.written = 0;
            if self.output.capacity() > OUTPUT_HIGH_WATER {
                self.output = Vec::new();
            }
            // The client is gone: done once nothing it sent is left to answer (an incomplete
            // request is answered 408 by the sweep, which empties the input).
            if self.peer_done && self.input.is_empty() && self.waiting.is_none() {
                return Written::Done;
            }
            if self.closing && !self.write_shut {
                // Shut the write side and read until the client closes, so unread input
                // cannot turn the last response into a reset.
                self.write_shut = self.stream.shutdown_write().is_ok();
                if !self.write_shut {
                    return Written::Done;
                }
            }
        }
        Written::Open
    }
}

#[cfg(test)]
mod tests;
