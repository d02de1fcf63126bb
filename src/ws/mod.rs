//! The WebSocket endpoint: everything between a WebSocket client's socket and the hub.
//!
//! Owns the listener and its accept gate, the opening handshake and origin policy, the read path
//! (read into the reactor's shared buffer → decode → dispatch to the handler), the write path
//! (one vectored write per connection with output, the only writes), backpressure (a connection
//! whose queue is over half its cap is not read, so TCP pushes back on the client), and closing
//! (close frame written → FIN → read until the peer closes). The connection records live in the
//! hub; this module is their only reader and writer of bytes.
//!
//! Readiness is edge-triggered and remembered until an operation returns `WouldBlock`. It never
//! panics on peer input and never spins: input per connection per turn is bounded, accepting
//! pauses at the limit and resumes when a connection closes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, error};
use mio::event::Event;
use mio::net::TcpListener;
use mio::Interest;
use rustls::HandshakeKind;

use crate::endpoint::{Cx, Endpoint, Slot, SweepTimer, Tokens};
use crate::handler::Request;
use crate::hub::conn::{Spill, State, BLOCKED, DIRTY, IN_READY, PEER_CLOSED, PEER_GONE, READABLE};
use crate::hub::ids::tick;
use crate::hub::outbox::Flushed;
use crate::hub::Hub;
use crate::net::{AcceptGate, Input, Socket, TlsBuffers, TlsStream, Wire};
use crate::protocol::deflate::InflateError;
use crate::protocol::extensions::{negotiate_deflate, DeflateParams};
use crate::protocol::handshake::{accept_response, parse_request, MAX_HEADERS};
use crate::protocol::http::{first_header, header_values};
use crate::protocol::{CloseCode, Event as Frame, Message, ProtocolError};
use crate::{Compression, Config, Handler};

/// Capacity of the inflate buffer kept between messages; a larger one is freed after use.
const INFLATED_KEPT: usize = 64 << 10;

/// Inflated bytes that count as one more message against a turn's budget.
const INFLATED_PER_MESSAGE: usize = 64 << 10;

/// Reads of the shared buffer one connection gets per turn before others have theirs.
const READS_PER_TURN: usize = 4;

/// Connections accepted past the limit and answered 503 at once; beyond this many, new
/// clients wait in the kernel's backlog.
const OVERFLOW_SLOTS: usize = 32;

/// The WebSocket endpoint.
pub(crate) struct WebSocket {
    tokens: Tokens,
    /// `None` once draining.
    listener: Option<TcpListener>,
    gate: AcceptGate,
    /// Connections with unread input left for the next turn.
    ready: Vec<usize>,
    /// Connections whose message budget ran out this iteration: they get their next turn
    /// after the flush, not in this iteration's extra read passes.
    deferred: Vec<usize>,
    /// Connections whose input waits until their fan-out allowance is repaid, earliest first
    /// (an entry for a connection that is gone is skipped when it comes up).
    throttled: BinaryHeap<Reverse<(Duration, usize)>>,
    sweeps: SweepTimer,
    /// The buffers every TLS session reads and encrypts through.
    tls: TlsBuffers,
    /// TLS handshake steps this iteration may still process (`Config::max_tls_handshakes_per_turn`).
    handshakes_left: usize,
}

impl WebSocket {
    /// The endpoint for connections accepted on `listener` (already registered under
    /// `tokens`' listener token).
    pub(crate) fn new(tokens: Tokens, listener: Option<TcpListener>, config: &Config) -> Self {
        let shortest = [
            Some(config.handshake_timeout),
            config.login_timeout,
            config.ping_interval,
            config.idle_timeout,
            Some(config.close_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        Self {
            tokens,
            listener,
            gate: AcceptGate::new("WebSocket"),
            ready: Vec::new(),
            deferred: Vec::new(),
            throttled: BinaryHeap::new(),
            sweeps: SweepTimer::quarter_of(shortest),
            tls: TlsBuffers::default(),
            handshakes_left: config.max_tls_handshakes_per_turn,
        }
    }

    fn accept<H: Handler>(&mut self, cx: &mut Cx<'_, H>) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            let hub = &mut *cx.hub;
            let over_limit = hub.held_count() >= hub.max_connections;
            let has_room = !over_limit || hub.overflow_count() < OVERFLOW_SLOTS;
            let Some((mut stream, peer)) = self.gate.next(listener, has_room) else {
                return;
            };
            // TCP_NODELAY is inherited from the listening socket.
            let token = self.tokens.token(Slot::Conn(hub.vacant_key()));
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(error) = cx.registry.register(&mut stream, token, interest) {
                error!("could not register a connection: {error}");
                continue;
            }
            let socket = match &hub.tls {
                None => Socket::Tcp(stream),
                Some(identity) => match TlsStream::new(stream, Arc::clone(identity.config())) {
                    Ok(session) => Socket::Tls(Box::new(session)),
                    Err(error) => {
                        error!("could not start a TLS session: {error}");
                        continue;
                    }
                },
            };
            hub.insert(socket, peer, over_limit, cx.now);
        }
    }

    /// Gives `key` its next turn after this iteration's flush.
    fn defer<T>(&mut self, hub: &mut Hub<T>, key: usize) {
        let conn = &mut hub.conns[key];
        if !conn.has(IN_READY) {
            conn.set(IN_READY);
            self.deferred.push(key);
        }
    }

    /// Holds `key`'s input back until its fan-out allowance is positive again; true if it must
    /// wait.
    fn throttle<T>(&mut self, hub: &mut Hub<T>, key: usize, now: Duration) -> bool {
        let Some(wait) = hub.fanout_wait(key, now) else {
            return false;
        };
        // Its input is waiting: the peer is alive, whatever the idle timer says.
        hub.conns[key].last_seen = tick(now);
        if hub.mark_throttled(key, now) {
            self.throttled.push(Reverse((now + wait, key)));
        }
        true
    }

    /// Makes the connections whose wait is over ready again.
    fn release_throttled<T>(&mut self, hub: &mut Hub<T>, now: Duration) {
        while let Some(&Reverse((due, key))) = self.throttled.peek() {
            if due > now {
                break;
            }
            self.throttled.pop();
            hub.clear_throttled(key);
            if hub.conns.contains(key) {
                self.mark_ready(hub, key);
            }
        }
    }

    /// Makes the connections deferred this iteration ready for the next one.
    fn release_deferred<T>(&mut self, hub: &mut Hub<T>) {
        for key in std::mem::take(&mut self.deferred) {
            if let Some(conn) = hub.conns.get_mut(key) {
                conn.clear(IN_READY);
                self.mark_ready(hub, key);
            }
        }
    }

    fn mark_ready<T>(&mut self, hub: &mut Hub<T>, key: usize) {
        let conn = &mut hub.conns[key];
        if !conn.has(IN_READY) {
            conn.set(IN_READY);
            self.ready.push(key);
        }
    }

    /// Records what the poller reported for a connection.
    fn on_conn_event<T>(&mut self, hub: &mut Hub<T>, key: usize, event: &Event, now: Duration) {
        // Events for a slot that was freed are harmless: readiness is only a hint.
        if !hub.conns.contains(key) {
            return;
        }
        let writable = event.is_writable();
        let closed = event.is_read_closed() || event.is_error();
        self.on_readiness(hub, key, event.is_readable(), writable, closed, now);
    }

    fn on_readiness<T>(
        &mut self,
        hub: &mut Hub<T>,
        key: usize,
        readable: bool,
        writable: bool,
        closed: bool,
        now: Duration,
    ) {
        if writable {
            hub.writable(key, now);
        }
        if closed {
            hub.conns[key].set(PEER_CLOSED);
        }
        if readable || closed {
            hub.conns[key].set(READABLE);
            self.mark_ready(hub, key);
        }
    }

    /// Reads from every connection with input, within each one's budget.
    fn read_ready<H: Handler, T: Wire + 'static>(&mut self, cx: &mut Cx<'_, H, T>) {
        let mut ready = std::mem::take(&mut self.ready);
        for &key in &ready {
            if let Some(conn) = cx.hub.conns.get_mut(key) {
                conn.clear(IN_READY);
                self.read_conn(cx, key);
                cx.report_closes();
            }
        }
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn read_conn<H: Handler, T: Wire + 'static>(&mut self, cx: &mut Cx<'_, H, T>, key: usize) {
        let conn = &cx.hub.conns[key];
        if conn.state == State::Open
            && (cx.hub.should_pause_reading(key) || self.throttle(cx.hub, key, cx.now))
        {
            return;
        }
        // One budget for this turn, across the backlog and every read.
        let mut budget = Budget::for_turn(&cx.hub.config);
        // Frames left from the last turn come first; while some remain, the socket waits.
        let conn = &cx.hub.conns[key];
        if conn.state == State::Open
            && conn.spill.is_some()
            && dispatch_backlog(cx.hub, cx.handler, key, cx.now, &mut budget)
        {
            self.defer(cx.hub, key);
            return;
        }
        for _ in 0..READS_PER_TURN {
            if budget.is_spent() {
                // Spent exactly: whatever else arrived waits for the next turn.
                self.defer(cx.hub, key);
                return;
            }
            let conn = &mut cx.hub.conns[key];
            if conn.state == State::Dead || !conn.has(READABLE) {
                return;
            }
            if conn.state == State::Open && cx.hub.should_pause_reading(key) {
                return;
            }
            let conn = &mut cx.hub.conns[key];
            let handshaking = conn.transport.is_handshaking();
            if handshaking {
                if self.handshakes_left == 0 {
                    // This iteration's handshake work is done: the rest wait for the next.
                    self.defer(cx.hub, key);
                    return;
                }
                self.handshakes_left -= 1;
            }
            let received = conn.transport.receive(cx.scratch, &mut self.tls);
            if handshaking && received.is_ok() {
                self.count_handshake(cx.hub, key);
            }
            let conn = &cx.hub.conns[key];
            if conn.backlog > 0 || conn.transport.backlog() > 0 {
                // What the TLS session must send now (handshake messages, tickets, a key
                // update, an alert) goes out in this iteration's flush.
                self.note_backlog(cx.hub, key);
            }
            match received {
                Ok(Input::End) => {
                    // Nothing more will arrive: stop reading, write what is owed, then drop.
                    cx.hub.conns[key].clear(READABLE);
                    cx.hub.peer_eof(key, cx.now);
                    return;
                }
                Ok(Input::Bytes {
                    plain,
                    raw,
                    drained,
                }) => {
                    cx.hub.record_read(key, raw, cx.now);
                    if plain > 0 {
                        if on_bytes(cx, key, plain, &mut budget) {
                            // The message budget ran out: the rest waits for the next turn.
                            self.defer(cx.hub, key);
                            return;
                        }
                    } else if matches!(cx.hub.conns[key].state, State::Closing | State::Draining) {
                        // TLS records that decrypt to nothing (or a failed session's input)
                        // count against what a closing peer may still send, like plaintext.
                        cx.hub.discard_closing(key, raw);
                    }
                    // A short read emptied the receive queue (and a TLS session keeps no
                    // plaintext back); data arriving later raises a new edge, so skip the read
                    // that would only say `WouldBlock` (one syscall per read event; tokio
                    // relies on the same epoll behaviour). Not after a FIN: that raises no
                    // further edge.
                    let conn = &mut cx.hub.conns[key];
                    if drained && !conn.has(PEER_CLOSED) {
                        conn.clear(READABLE);
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    cx.hub.conns[key].clear(READABLE);
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    // The TLS session failed; the alert for the peer is in the backlog.
                    debug!("{}: TLS: {error}", cx.hub.id_of(key));
                    cx.hub.tls_failed(key, cx.now);
                    self.note_backlog(cx.hub, key);
                    return;
                }
                Err(error) => {
                    debug!("{}: read failed: {error}", cx.hub.id_of(key));
                    cx.hub.vanish(key, cx.now);
                    return;
                }
            }
            if cx.hub.conns[key].state == State::Dead {
                return;
            }
        }
        // Budget spent with input possibly left: continue next turn.
        if cx.hub.conns[key].has(READABLE) {
            self.mark_ready(cx.hub, key);
        }
    }

    /// After input that advanced a TLS handshake: counts the handshake if it is now done.
    fn count_handshake<T: Wire>(&mut self, hub: &mut Hub<T>, key: usize) {
        let transport = &hub.conns[key].transport;
        if !transport.is_handshaking() {
            match transport.handshake_kind() {
                Some(HandshakeKind::Resumed) => hub.stats.tls.resumed_handshakes += 1,
                Some(_) => hub.stats.tls.full_handshakes += 1,
                None => {}
            }
        }
    }

    /// Charges what `key`'s transport holds to the caps, and flushes it if it holds any.
    fn note_backlog<T: Wire>(&mut self, hub: &mut Hub<T>, key: usize) {
        let backlog = hub.conns[key].transport.backlog();
        if backlog != hub.conns[key].backlog as usize {
            hub.set_backlog(key, backlog);
        }
        if backlog > 0 {
            hub.mark_dirty(key);
        }
    }

    /// Writes every dirty connection's queue.
    fn write_dirty<T: Wire>(&mut self, hub: &mut Hub<T>, now: Duration) {
        let mut dirty = std::mem::take(&mut hub.dirty);
        for &key in &dirty {
            let held = hub.is_held(key);
            let Some(conn) = hub.conns.get_mut(key) else {
                continue;
            };
            conn.clear(DIRTY);
            // Held output waits for the cluster (which marks it dirty again); a closing
            // connection's close goes out regardless.
            if conn.state == State::Dead || conn.has(BLOCKED) || held && conn.state == State::Open {
                continue;
            }
            let cost_before = conn.outbox.cost();
            let result = conn.transport.send(&mut conn.outbox, &mut self.tls);
            let written_cost = cost_before - conn.outbox.cost();
            let backlog = conn.transport.backlog();
            hub.release_queued(written_cost);
            hub.set_backlog(key, backlog);
            match result {
                Ok((written, flushed, calls)) => {
                    hub.stats.socket_writes += calls;
                    hub.stats.bytes_out += written as u64;
                    self.after_write(hub, key, flushed, now);
                }
                Err(error) => {
                    debug!("{}: write failed: {error}", hub.id_of(key));
                    hub.vanish(key, now);
                }
            }
        }
        dirty.clear();
        if hub.dirty.is_empty() {
            hub.dirty = dirty;
        }
        // Everyone's output is out: connections that spent their budget may go on.
        self.release_deferred(hub);
    }

    fn after_write<T: Wire>(
        &mut self,
        hub: &mut Hub<T>,
        key: usize,
        flushed: Flushed,
        now: Duration,
    ) {
        let conn = &mut hub.conns[key];
        if flushed == Flushed::Blocked {
            conn.set(BLOCKED);
        } else if conn.state == State::Closing {
            // Everything including the close frame is out. The peer already closed: done.
            // Otherwise send FIN, then read until the peer closes too, so unread input cannot
            // turn our close into a reset.
            if conn.has(PEER_GONE) {
                hub.kill(key);
                return;
            }
            match conn.transport.close_write(&mut self.tls) {
                Ok(Flushed::All) => hub.drain(key, now),
                Ok(Flushed::Blocked) => {
                    // A TLS close_notify waits for room; written on the next writable edge.
                    conn.set(BLOCKED);
                    let backlog = conn.transport.backlog();
                    hub.set_backlog(key, backlog);
                    return;
                }
                Err(_) => {
                    hub.kill(key);
                    return;
                }
            }
        }
        if hub.may_resume_reading(key) && hub.conns[key].has(READABLE) {
            self.mark_ready(hub, key);
        }
    }

    /// Drops the connections that died this iteration; true if any did.
    fn reap<T: Wire>(&mut self, hub: &mut Hub<T>, registry: &mio::Registry) -> bool {
        let freed = !hub.dead.is_empty();
        for key in std::mem::take(&mut hub.dead) {
            if let Some(mut transport) = hub.remove(key) {
                transport.deregister(registry);
            }
        }
        freed
    }

    fn sweep_due<T>(&mut self, hub: &mut Hub<T>, now: Duration) -> bool {
        if !self.sweeps.is_due(now) {
            return false;
        }
        hub.sweep(now);
        true
    }
}

impl<H: Handler> Endpoint<H> for WebSocket {
    fn on_event(&mut self, slot: Slot, event: &Event, cx: &mut Cx<'_, H>) {
        match slot {
            Slot::Listener => self.accept(cx),
            Slot::Conn(key) => self.on_conn_event(cx.hub, key, event, cx.now),
        }
    }

    fn turn(&mut self, cx: &mut Cx<'_, H>) {
        self.release_throttled(cx.hub, cx.now);
        self.read_ready(cx);
    }

    fn sweep(&mut self, cx: &mut Cx<'_, H>) {
        if self.sweep_due(cx.hub, cx.now) && self.gate.is_paused() {
            self.accept(cx);
        }
    }

    fn flush(&mut self, cx: &mut Cx<'_, H>) {
        self.write_dirty(cx.hub, cx.now);
        self.handshakes_left = cx.hub.config.max_tls_handshakes_per_turn;
        // `on_close` still sees the records of connections that died writing.
        cx.report_closes();
        if self.reap(cx.hub, cx.registry) && self.gate.is_paused() {
            self.accept(cx);
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        let throttled = self.throttled.peek().map(|&Reverse((due, _))| due);
        Some(throttled.map_or(self.sweeps.next(), |due| due.min(self.sweeps.next())))
    }

    fn has_work(&self, hub: &Hub<Socket>) -> bool {
        !self.ready.is_empty() || !self.deferred.is_empty() || !hub.dirty.is_empty()
    }

    fn begin_drain(&mut self, cx: &mut Cx<'_, H>) {
        if let Some(mut listener) = self.listener.take() {
            let _ = cx.registry.deregister(&mut listener);
        }
        cx.hub.close_all(cx.now);
    }

    fn is_drained(&self, hub: &Hub<Socket>) -> bool {
        hub.conns.is_empty()
    }
}

/// What one connection's input may still make the server do in this turn: messages (and
/// pings) dispatched, and the deliveries they cause (`Config::max_messages_per_turn`,
/// `Config::max_deliveries_per_turn`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    messages: usize,
    deliveries: u64,
}

impl Budget {
    fn for_turn(config: &Config) -> Self {
        Self {
            messages: config.max_messages_per_turn,
            deliveries: config.max_deliveries_per_turn as u64,
        }
    }

    fn is_spent(&self) -> bool {
        self.messages == 0 || self.deliveries == 0
    }

    /// One message (or ping) dispatched, which caused `deliveries`.
    fn charge(&mut self, deliveries: u64) {
        self.messages = self.messages.saturating_sub(1);
        self.deliveries = self.deliveries.saturating_sub(deliveries);
    }
}

/// Hands bytes just read into the shared buffer to the connection's current stage; true if
/// some were left for the next turn (the message budget ran out).
fn on_bytes<H: Handler, T: 'static>(
    cx: &mut Cx<'_, H, T>,
    key: usize,
    n: usize,
    budget: &mut Budget,
) -> bool {
    match cx.hub.conns[key].state {
        State::Handshake => on_handshake_bytes(cx, key, n, budget),
        State::Open => {
            let Cx {
                hub,
                handler,
                scratch,
                now,
                ..
            } = cx;
            dispatch_within_budget(hub, *handler, key, &mut scratch[..n], *now, budget)
        }
        // Closing or draining: input is read only to see the peer's close; discard it.
        _ => {
            cx.hub.discard_closing(key, n);
            false
        }
    }
}

/// Parses the upgrade request; once it is complete, opens the connection and dispatches the
/// frames pipelined behind it. True if some of those were left for the next turn.
fn on_handshake_bytes<H: Handler, T: 'static>(
    cx: &mut Cx<'_, H, T>,
    key: usize,
    n: usize,
    budget: &mut Budget,
) -> bool {
    let now = cx.now;
    let max_len = cx.hub.config.max_handshake_size;
    let Some(mut head) = cx.hub.conns[key].spill.take() else {
        return false;
    };
    head.bytes.extend_from_slice(&cx.scratch[..n]);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let request = match parse_request(&head.bytes, max_len, &mut headers) {
        Ok(Some(request)) => request,
        Ok(None) => {
            cx.hub.conns[key].spill = Some(head);
            return false;
        }
        Err(error) => {
            debug!("{}: handshake refused: {error}", cx.hub.id_of(key));
            cx.hub.reject(key, error.status, error.reason, now);
            return false;
        }
    };
    if !is_origin_allowed(&cx.hub.config.allowed_origins, request.headers) {
        debug!("{}: origin refused", cx.hub.id_of(key));
        cx.hub.reject(key, 403, "origin not allowed", now);
        return false;
    }
    let request_len = request.len;
    cx.hub.open(key, now);
    // Decided before `on_open`, so that what it sends is already compressed as agreed.
    let deflate = match cx.hub.config.compression {
        Compression::Off => None,
        Compression::Shared => {
            negotiate_deflate(header_values(request.headers, "sec-websocket-extensions"))
        }
    };
    if let Some(params) = &deflate {
        let conn = &mut cx.hub.conns[key];
        conn.deflate = params.server_window_bits;
        conn.decoder.accept_deflate();
    }
    let id = cx.hub.id_of(key);
    let view = Request::new(request.target, request.headers, head.peer);
    let accepted = cx
        .handler
        .on_open(&mut crate::Context::new(cx.hub, now), id, &view);
    let answer = match accepted {
        Ok(accept) => {
            let subprotocol = match accept.chosen_subprotocol() {
                Some(chosen) if !view.subprotocols().any(|offered| offered == chosen) => Err(
                    format!("subprotocol {chosen:?} was not offered by the client"),
                ),
                Some(chosen) => Ok(Some(chosen)),
                // Most servers speak none: skip looking through the headers for offers.
                None if cx.hub.config.subprotocols.is_empty() => Ok(None),
                None => Ok(view.select_subprotocol(&cx.hub.config.subprotocols)),
            };
            let headers: Vec<(&str, &str)> = accept.headers().collect();
            let extension = deflate.as_ref().map(DeflateParams::response_value);
            subprotocol.and_then(|subprotocol| {
                accept_response(&request.accept, subprotocol, extension.as_deref(), &headers)
                    .map_err(|e| e.to_string())
            })
        }
        Err(rejection) => {
            debug!("{id}: refused by handler: {}", rejection.status);
            cx.hub.unopen(key, now);
            cx.hub.reject(key, rejection.status, &rejection.reason, now);
            return false;
        }
    };
    match answer {
        Ok(answer) => {
            cx.hub.queue_answer(key, answer.into());
        }
        Err(mistake) => {
            // `on_open` returned Ok, so the handler hears of this connection's end (1011).
            error!("{id}: on_open's answer cannot be sent: {mistake}");
            cx.hub
                .refuse_opened(key, 500, "the server could not answer the handshake", now);
            return false;
        }
    }
    // Frames pipelined right behind the request.
    if head.bytes.len() > request_len && cx.hub.conns[key].state == State::Open {
        return dispatch_within_budget(
            cx.hub,
            cx.handler,
            key,
            &mut head.bytes[request_len..],
            now,
            budget,
        );
    }
    false
}

/// Decodes and dispatches `input` for an open connection, at most the turn's message budget;
/// what is left is kept (still masked) for the connection's next turn. True if some was.
fn dispatch_within_budget<H: Handler, T: 'static>(
    hub: &mut Hub<T>,
    handler: &mut H,
    key: usize,
    input: &mut [u8],
    now: Duration,
    budget: &mut Budget,
) -> bool {
    let used = decode_and_dispatch(hub, handler, key, input, now, budget);
    if used == input.len() || hub.conns[key].state != State::Open {
        return false;
    }
    // No backlog can exist here: the socket is read only once the last one is gone, and the
    // handshake's buffer was taken before its pipelined frames were dispatched.
    let conn = &mut hub.conns[key];
    debug_assert!(
        conn.spill.is_none(),
        "input read while a backlog was pending"
    );
    conn.spill = Some(Box::new(Spill {
        // Only the handshake needs the peer; once open, the spill holds frames only.
        peer: SocketAddr::from(([0, 0, 0, 0], 0)),
        bytes: input[used..].to_vec(),
    }));
    true
}

/// Dispatches what an open connection left over from an earlier turn, within this turn's
/// budget; true if some is still left (then the socket is not read this turn).
fn dispatch_backlog<H: Handler, T: 'static>(
    hub: &mut Hub<T>,
    handler: &mut H,
    key: usize,
    now: Duration,
    budget: &mut Budget,
) -> bool {
    let Some(mut backlog) = hub.conns[key].spill.take() else {
        return false;
    };
    let used = decode_and_dispatch(hub, handler, key, &mut backlog.bytes, now, budget);
    if used == backlog.bytes.len() || hub.conns[key].state != State::Open {
        return false;
    }
    backlog.bytes.drain(..used);
    hub.conns[key].spill = Some(backlog);
    true
}

/// Decodes `input` for an open connection and dispatches what it contains, stopping after the
/// turn's message budget; returns how many bytes it consumed.
fn decode_and_dispatch<H: Handler, T: 'static>(
    hub: &mut Hub<T>,
    handler: &mut H,
    key: usize,
    input: &mut [u8],
    now: Duration,
    budget: &mut Budget,
) -> usize {
    let max_message = hub.config.max_message_size;
    let mut decoder = std::mem::take(&mut hub.conns[key].decoder);
    let result = decoder.decode(input, max_message, |event| match event {
        Frame::Message(message) => on_message(hub, handler, key, message, now, budget),
        Frame::Deflated { text, payload } => {
            on_deflated(hub, handler, key, text, payload, now, budget)
        }
        Frame::Ping(payload) => {
            hub.pong(key, payload);
            budget.charge(0);
            if !budget.is_spent() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        Frame::Pong(_) => ControlFlow::Continue(()),
        Frame::Close(frame) => {
            hub.peer_closed(key, frame, now);
            ControlFlow::Break(())
        }
    });
    let used = match result {
        Ok(used) => used,
        Err(error) => {
            hub.fail(key, error, now);
            // The stream is unusable after a violation; nothing more is decoded from it.
            return input.len();
        }
    };
    if hub.conns[key].state == State::Open {
        hub.conns[key].decoder = decoder;
    }
    used
}

/// Inflates a compressed message with the reactor's one decompressor (into its one buffer,
/// at most `max_message_size` bytes: past it the connection closes with 1009 at no further
/// cost; invalid data closes it with 1007, and so does inflated text that is not UTF-8), then
/// dispatches it like any message.
fn on_deflated<H: Handler, T: 'static>(
    hub: &mut Hub<T>,
    handler: &mut H,
    key: usize,
    text: bool,
    payload: &[u8],
    now: Duration,
    budget: &mut Budget,
) -> ControlFlow<()> {
    let max_message = hub.config.max_message_size;
    let mut inflated = std::mem::take(&mut hub.inflated);
    inflated.clear();
    let message = match hub.inflater.inflate(payload, max_message, &mut inflated) {
        Ok(()) if !text => Ok(Message::Binary(&inflated)),
        Ok(()) => std::str::from_utf8(&inflated)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8),
        Err(InflateError::TooBig) => Err(ProtocolError::MessageTooLarge),
        Err(InflateError::Invalid) => Err(ProtocolError::InvalidCompressedData),
    };
    // Inflating is work a few compressed bytes can ask for: every 64 KiB inflated counts as a
    // message against the turn's budget, so one turn inflates a few MiB at most.
    budget.messages = budget
        .messages
        .saturating_sub(inflated.len() / INFLATED_PER_MESSAGE);
    let flow = match message {
        Ok(message) => on_message(hub, handler, key, message, now, budget),
        Err(error) => {
            hub.fail(key, error, now);
            ControlFlow::Break(())
        }
    };
    if inflated.capacity() > INFLATED_KEPT {
        inflated = Vec::new();
    }
    hub.inflated = inflated;
    flow
}

/// Counts one data message, checks the client's rate, dispatches it to the handler and charges
/// its deliveries to the turn's budget and the client's fan-out allowance; whether decoding may
/// go on.
fn on_message<H: Handler, T: 'static>(
    hub: &mut Hub<T>,
    handler: &mut H,
    key: usize,
    message: Message<'_>,
    now: Duration,
    budget: &mut Budget,
) -> ControlFlow<()> {
    let id = hub.id_of(key);
    hub.stats.messages_in += 1;
    if !hub.take_token(key, now) {
        hub.stats.rate_limited += 1;
        hub.close(key, CloseCode::POLICY, "rate limit exceeded", now);
        return ControlFlow::Break(());
    }
    let before = hub.stats.messages_out + hub.stats.dropped_messages;
    handler.on_message(&mut crate::Context::new(hub, now), id, message);
    let deliveries = hub.stats.messages_out + hub.stats.dropped_messages - before;
    budget.charge(deliveries);
    // Fan-out is what a message costs beyond its first delivery: a login or a direct
    // message to one connection costs nothing (and creates no allowance to track).
    let fanout = deliveries.saturating_sub(1);
    hub.charge_fanout(key, fanout, now);
    // In debt for its fan-out: the rest waits (see `WebSocket::throttle`).
    let in_debt = fanout > 0 && hub.fanout_wait(key, now).is_some();
    if in_debt {
        // Nothing more this turn, from this read or the next (see `read_conn`).
        budget.messages = 0;
    }
    if hub.conns[key].state == State::Open && !budget.is_spent() && !in_debt {
        ControlFlow::Continue(())
    } else {
        ControlFlow::Break(())
    }
}

/// Whether the request's `Origin` (if any) is in `allowed` (empty: all are).
fn is_origin_allowed(allowed: &[String], headers: &[httparse::Header<'_>]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = first_header(headers, "origin") else {
        return true;
    };
    allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.trim_ascii()))
}

#[cfg(test)]
mod tests;
