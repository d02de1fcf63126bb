//! The reactor's state and every operation on it that does not need the poller or the handler.
//!
//! `Core` owns the connection slab, the uid registry, the counters and the work lists of the
//! current loop iteration (connections to read, to flush, to reap, and close notifications for
//! the handler). Operations here only queue bytes and change state; the single write path is
//! `flush`, and sockets are dropped only in the reactor's reap phase.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::debug;
use mio::net::TcpStream;
use slab::Slab;
use smallvec::SmallVec;

use super::conn::{Conn, State, Tick, BLOCKED, DIRTY, IN_READY, OVERFLOW, READABLE, READ_PAUSED};
use super::groups::Groups;
use crate::handler::{CloseInfo, Initiator};
use crate::outbox::Flushed;
use crate::protocol::close::{encode_close_payload, CloseFrame};
use crate::protocol::handshake::error_response;
use crate::protocol::{encode_frame, encode_message, CloseCode, Message, OpCode, ProtocolError};
use crate::registry::Registry;
use crate::stats::Gauges;
use crate::{Config, ConnId, SendStatus, SlowConsumerPolicy, Stats};

/// The reactor's state.
pub(crate) struct Core {
    pub(crate) conns: Slab<Conn>,
    pub(crate) registry: Registry,
    pub(crate) groups: Groups,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// The connection limit in force.
    pub(crate) max_connections: usize,
    /// Connections accepted past the limit only to be answered 503.
    pub(crate) overflow: usize,
    /// Connections in the `Open` state.
    open: usize,
    start: Instant,
    pub(crate) now: Tick,
    next_gen: u32,
    /// Connections with unread input left for the next iteration.
    pub(crate) ready: Vec<usize>,
    /// Connections with output to flush.
    pub(crate) dirty: Vec<usize>,
    /// Open connections that closed since the handler was last told.
    pub(crate) closed: Vec<(ConnId, CloseInfo)>,
    /// Connections to drop at the end of the iteration.
    pub(crate) dead: Vec<usize>,
    /// A graceful shutdown is under way.
    pub(crate) shutting_down: bool,
}

impl Core {
    pub(crate) fn new(config: Config, max_connections: usize) -> Self {
        Self {
            conns: Slab::new(),
            registry: Registry::default(),
            groups: Groups::default(),
            config,
            stats: Stats::default(),
            max_connections,
            overflow: 0,
            open: 0,
            start: Instant::now(),
            now: 0,
            next_gen: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            dead: Vec::new(),
            shutting_down: false,
        }
    }

    /// The current gauges; one pass over the connections.
    pub(crate) fn gauges(&self) -> Gauges {
        let mut gauges = Gauges {
            open: self.open,
            uids_online: self.registry.uid_count(),
            groups: self.groups.count(),
            uptime: self.start.elapsed(),
            ..Gauges::default()
        };
        for (_, conn) in &self.conns {
            match conn.state {
                State::Handshake => gauges.handshaking += 1,
                State::Open if conn.uid.is_some() => gauges.bound += 1,
                State::Closing | State::Draining => gauges.closing += 1,
                _ => {}
            }
        }
        gauges
    }

    /// Advances the clock; called once per loop iteration.
    pub(crate) fn tick(&mut self) {
        self.now = self.start.elapsed().as_millis() as Tick;
    }

    /// Whether `duration` has passed since `since`.
    pub(crate) fn has_elapsed(&self, since: Tick, duration: Duration) -> bool {
        self.now.wrapping_sub(since) >= duration_ticks(duration)
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open
    }

    /// Connections counted against the limit (all but the 503 overflow).
    pub(crate) fn held_count(&self) -> usize {
        self.conns.len() - self.overflow
    }

    /// The slot of `id`, while its record exists (until the end of the iteration it died in, so
    /// `on_close` can still ask about it). Operations check the state they need themselves.
    pub(crate) fn key_of(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.gen == id.gen()).then_some(id.key())
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.key_of(id).map(|key| &self.conns[key])
    }

    pub(crate) fn id_of(&self, key: usize) -> ConnId {
        ConnId::new(key as u32, self.conns[key].gen)
    }

    /// Stores a new connection; `over_limit` ones only get a 503 answer.
    pub(crate) fn insert(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        over_limit: bool,
    ) -> usize {
        self.next_gen = self.next_gen.wrapping_add(1);
        let key = self
            .conns
            .insert(Conn::new(stream, peer, self.next_gen, self.now));
        self.stats.accepted += 1;
        if over_limit {
            self.overflow += 1;
            self.conns[key].set(OVERFLOW);
            self.reject(key, 503, "connection limit reached");
        }
        key
    }

    pub(crate) fn mark_ready(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.has(IN_READY) {
            conn.set(IN_READY);
            self.ready.push(key);
        }
    }

    pub(crate) fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.has(DIRTY) {
            conn.set(DIRTY);
            self.dirty.push(key);
        }
    }

    /// Queues a frame the protocol requires (pong, close, HTTP answer): never dropped.
    fn queue_control(&mut self, key: usize, frame: Bytes) {
        self.conns[key].outbox.push(frame);
        self.mark_dirty(key);
    }

    /// Queues a data frame, applying the slow-consumer policy.
    fn queue_data(&mut self, key: usize, frame: Bytes) -> SendStatus {
        let limit = self.config.max_send_buffer;
        match offer(
            &mut self.conns[key],
            key,
            frame,
            limit,
            &mut self.dirty,
            &mut self.stats,
        ) {
            Offered::Queued(status) => status,
            Offered::OverLimit => {
                self.over_limit(key);
                SendStatus::Dropped
            }
        }
    }

    /// A message would overflow `key`'s send queue: count it, and close the connection if
    /// that is the policy.
    fn over_limit(&mut self, key: usize) {
        self.stats.dropped_messages += 1;
        if self.config.slow_consumer == SlowConsumerPolicy::Close {
            debug!("closing slow consumer {}", self.id_of(key));
            self.conns[key].outbox.keep_only_head();
            self.close(key, CloseCode::POLICY, "slow consumer");
        }
    }

    pub(crate) fn send(&mut self, id: ConnId, message: Message<'_>) -> SendStatus {
        match self.key_of(id) {
            Some(key) => self.queue_data(key, encode_message(message)),
            None => SendStatus::Dropped,
        }
    }

    pub(crate) fn send_to_uid(&mut self, uid: &str, message: Message<'_>) -> usize {
        if self.registry.conns(uid).is_empty() {
            return 0;
        }
        let frame = encode_message(message);
        let limit = self.config.max_send_buffer;
        let mut fanout = Fanout::default();
        let Self {
            registry,
            conns,
            dirty,
            stats,
            ..
        } = self;
        let recipients = registry.conns(uid);
        let mut frame = Some(frame);
        for (i, id) in recipients.iter().enumerate() {
            let key = id.key();
            // The last recipient takes the frame itself: a single recipient costs no refcount.
            let copy = if i + 1 == recipients.len() {
                frame.take()
            } else {
                frame.clone()
            };
            let Some(copy) = copy else { break };
            fanout.record(key, offer(&mut conns[key], key, copy, limit, dirty, stats));
        }
        self.finish(fanout)
    }

    /// Sends to every bound connection: one pass over the connection table, in memory order.
    pub(crate) fn broadcast(&mut self, message: Message<'_>) -> usize {
        let frame = encode_message(message);
        let limit = self.config.max_send_buffer;
        let mut fanout = Fanout::default();
        let Self {
            conns,
            dirty,
            stats,
            ..
        } = self;
        for (key, conn) in conns.iter_mut() {
            if conn.uid.is_some() {
                fanout.record(key, offer(conn, key, frame.clone(), limit, dirty, stats));
            }
        }
        self.finish(fanout)
    }

    /// Applies the slow-consumer policy to the connections a fan-out found full; returns how
    /// many it queued to.
    fn finish(&mut self, fanout: Fanout) -> usize {
        for key in fanout.over_limit {
            self.over_limit(key);
        }
        fanout.queued
    }

    pub(crate) fn send_to_group(
        &mut self,
        group: &str,
        message: Message<'_>,
        exclude: &[&str],
    ) -> usize {
        let conns: Vec<ConnId> = self
            .groups
            .members(group)
            .filter(|uid| !exclude.contains(uid))
            .flat_map(|uid| self.registry.conns(uid).iter().copied())
            .collect();
        if conns.is_empty() {
            return 0;
        }
        self.queue_to(conns, &encode_message(message))
    }

    /// Adds `uid` (online or not) to `group`; false if it was already a member.
    pub(crate) fn join_group(&mut self, uid: &str, group: &str) -> bool {
        let online = !self.registry.conns(uid).is_empty();
        self.groups.join(uid, group, online, self.now)
    }

    fn queue_to(&mut self, conns: impl IntoIterator<Item = ConnId>, frame: &Bytes) -> usize {
        let mut queued = 0;
        for id in conns {
            if self.queue_data(id.key(), frame.clone()) != SendStatus::Dropped {
                queued += 1;
            }
        }
        queued
    }

    pub(crate) fn bind_uid(&mut self, id: ConnId, uid: &str) -> bool {
        let Some(key) = self
            .key_of(id)
            .filter(|&k| self.conns[k].state == State::Open)
        else {
            return false;
        };
        self.unbind_uid(id);
        let name = self.registry.bind(uid, id);
        self.groups.came_online(uid);
        self.conns[key].uid = Some(name);
        true
    }

    pub(crate) fn unbind_uid(&mut self, id: ConnId) -> bool {
        let Some(key) = self.key_of(id) else {
            return false;
        };
        match self.conns[key].uid.take() {
            Some(uid) => {
                self.detach(&uid, id);
                true
            }
            None => false,
        }
    }

    /// Removes `id` from `uid` in the registry; if that was the uid's last connection, its
    /// group memberships start their grace period.
    fn detach(&mut self, uid: &str, id: ConnId) {
        self.registry.unbind(uid, id);
        if self.registry.conns(uid).is_empty() {
            self.groups.went_offline(uid, self.now);
        }
    }

    /// Marks an open connection opened by a completed handshake.
    pub(crate) fn open(&mut self, key: usize) {
        let now = self.now;
        self.conns[key].enter(State::Open, now);
        self.open += 1;
        self.stats.opened += 1;
    }

    /// Takes back an `open` for a connection the handler refused: no close is reported.
    pub(crate) fn unopen(&mut self, key: usize) {
        let id = self.id_of(key);
        self.unbind_uid(id);
        self.conns[key].outbox.clear();
        self.conns[key].enter(State::Handshake, self.now);
        self.open -= 1;
        self.stats.opened -= 1;
    }

    /// Refuses a handshake with an HTTP error answer, then closes.
    pub(crate) fn reject(&mut self, key: usize, status: u16, reason: &str) {
        *self.stats.handshake_failures.entry(status).or_default() += 1;
        let conn = &mut self.conns[key];
        conn.head = None;
        conn.enter(State::Closing, self.now);
        self.queue_control(key, Bytes::from(error_response(status, reason)));
    }

    /// Server-initiated close: queues a close frame and reports the close to the handler.
    pub(crate) fn close(&mut self, key: usize, code: CloseCode, reason: &str) {
        if self.conns[key].state != State::Open {
            return;
        }
        self.leave_open(key, code, reason, Initiator::Server);
        let payload = encode_close_payload(code, reason);
        self.queue_control(key, encode_frame(OpCode::Close, &payload, None));
    }

    /// Fails the connection for a protocol violation (RFC 6455 §7.1.7).
    pub(crate) fn fail(&mut self, key: usize, error: ProtocolError) {
        debug!("{}: {error}", self.id_of(key));
        self.close(key, error.close_code(), error.reason());
    }

    /// The client sent a close frame: echo its code and report it.
    pub(crate) fn peer_closed(&mut self, key: usize, frame: Option<CloseFrame<'_>>) {
        if self.conns[key].state != State::Open {
            return;
        }
        let (code, reason) = frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
        self.leave_open(key, code, reason, Initiator::Client);
        // §5.5.1: the answering close frame "typically echos the status code it received".
        let payload = frame.map_or(Vec::new(), |f| f.code.0.to_be_bytes().to_vec());
        self.queue_control(key, encode_frame(OpCode::Close, &payload, None));
    }

    /// Answers a ping.
    pub(crate) fn pong(&mut self, key: usize, payload: &[u8]) {
        self.queue_control(key, encode_frame(OpCode::Pong, payload, None));
    }

    /// Queues a heartbeat ping.
    pub(crate) fn ping(&mut self, key: usize) {
        self.conns[key].last_ping = self.now;
        self.queue_control(key, encode_frame(OpCode::Ping, b"", None));
    }

    /// The TCP connection is gone (EOF, reset, write error): drop it.
    pub(crate) fn vanish(&mut self, key: usize) {
        if self.conns[key].state == State::Open {
            self.leave_open(key, CloseCode::ABNORMAL, "", Initiator::Client);
        }
        self.kill(key);
    }

    fn kill(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state != State::Dead {
            conn.state = State::Dead;
            self.dead.push(key);
        }
    }

    fn leave_open(&mut self, key: usize, code: CloseCode, reason: &str, initiator: Initiator) {
        let id = self.id_of(key);
        if let Some(uid) = self.conns[key].uid.clone() {
            self.detach(&uid, id);
        }
        self.conns[key].enter(State::Closing, self.now);
        self.open -= 1;
        *self.stats.closes.entry(code.0).or_default() += 1;
        let info = CloseInfo {
            code,
            reason: reason.to_owned(),
            initiator,
        };
        self.closed.push((id, info));
    }

    /// Records that the poller reported the socket writable.
    pub(crate) fn writable(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.clear(BLOCKED);
        if !conn.outbox.is_empty() {
            self.mark_dirty(key);
        }
    }

    /// Writes every dirty connection's queue: the one place bytes reach sockets.
    pub(crate) fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.clear(DIRTY);
            if conn.state == State::Dead || conn.has(BLOCKED) {
                continue;
            }
            match conn.outbox.write_to(&mut conn.stream) {
                Ok((written, flushed, calls)) => {
                    self.stats.socket_writes += calls;
                    self.stats.bytes_out += written as u64;
                    self.after_write(key, flushed);
                }
                Err(error) => {
                    debug!("{}: write failed: {error}", self.id_of(key));
                    self.vanish(key);
                }
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn after_write(&mut self, key: usize, flushed: Flushed) {
        let low_water = self.config.max_send_buffer / 4;
        let now = self.now;
        let conn = &mut self.conns[key];
        if flushed == Flushed::Blocked {
            conn.set(BLOCKED);
        } else if conn.state == State::Closing {
            // Everything including the close frame is out: send FIN, then read until the peer
            // closes too, so unread input cannot turn our close into a reset.
            if conn.stream.shutdown(Shutdown::Write).is_err() {
                self.kill(key);
                return;
            }
            conn.enter(State::Draining, now);
        }
        if conn.has(READ_PAUSED) && conn.outbox.len() <= low_water {
            conn.clear(READ_PAUSED);
            if conn.has(READABLE) {
                self.mark_ready(key);
            }
        }
    }

    /// Whether reading from `key` must wait until its queue drains (backpressure).
    pub(crate) fn should_pause_reading(&mut self, key: usize) -> bool {
        let high_water = self.config.max_send_buffer / 2;
        let conn = &mut self.conns[key];
        if conn.outbox.len() > high_water {
            conn.set(READ_PAUSED);
        }
        conn.has(READ_PAUSED)
    }

    /// Applies every timeout: handshake, login, heartbeat, idle and close. One pass over all
    /// connections, run a few times per shortest timeout.
    pub(crate) fn sweep(&mut self) {
        let now = self.now;
        let elapsed =
            |since: Tick, duration: Duration| now.wrapping_sub(since) >= duration_ticks(duration);
        let config = &self.config;
        let mut due = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            conn.outbox.release_spare();
            let action = match conn.state {
                State::Handshake if elapsed(conn.since, config.handshake_timeout) => {
                    Timeout::Handshake
                }
                State::Open => {
                    let silent_since = conn.last_seen;
                    if config
                        .idle_timeout
                        .is_some_and(|t| elapsed(silent_since, t))
                    {
                        Timeout::Idle
                    } else if conn.uid.is_none()
                        && config.login_timeout.is_some_and(|t| elapsed(conn.since, t))
                    {
                        Timeout::Login
                    } else if config.ping_interval.is_some_and(|t| {
                        elapsed(silent_since, t) && elapsed(conn.last_ping.max(silent_since), t)
                    }) {
                        Timeout::Ping
                    } else {
                        continue;
                    }
                }
                State::Closing | State::Draining if elapsed(conn.since, config.close_timeout) => {
                    Timeout::Close
                }
                _ => continue,
            };
            due.push((key, action));
        }
        let grace = self.config.group_grace;
        self.groups
            .expire(|offline_since| elapsed(offline_since, grace));
        for (key, action) in due {
            match action {
                Timeout::Handshake => self.reject(key, 408, "handshake timed out"),
                Timeout::Idle => self.close(key, CloseCode::GOING_AWAY, "idle timeout"),
                Timeout::Login => self.close(key, CloseCode::POLICY, "login timeout"),
                Timeout::Ping => self.ping(key),
                Timeout::Close => self.kill(key),
            }
        }
    }

    /// Starts a graceful shutdown: close 1001 to every open connection, drop the others.
    pub(crate) fn close_all(&mut self) {
        self.shutting_down = true;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns[key].state {
                State::Open => self.close(key, CloseCode::GOING_AWAY, "server shutting down"),
                State::Handshake => self.kill(key),
                _ => {}
            }
        }
    }

    /// Removes a dead connection's record and returns its socket for deregistration.
    pub(crate) fn remove(&mut self, key: usize) -> Option<TcpStream> {
        let conn = self.conns.try_remove(key)?;
        if conn.has(OVERFLOW) {
            self.overflow -= 1;
        }
        Some(conn.stream)
    }

    /// Records bytes read from `key`; any inbound byte counts as life.
    pub(crate) fn record_read(&mut self, key: usize, bytes: usize) {
        self.stats.socket_reads += 1;
        self.stats.bytes_in += bytes as u64;
        self.conns[key].last_seen = self.now;
    }

    /// Handles a read result that ends reading for now; returns true if reading may go on.
    pub(crate) fn read_failed(&mut self, key: usize, error: &io::Error) -> bool {
        match error.kind() {
            io::ErrorKind::WouldBlock => {
                self.conns[key].clear(READABLE);
                false
            }
            io::ErrorKind::Interrupted => true,
            _ => {
                debug!("{}: read failed: {error}", self.id_of(key));
                self.vanish(key);
                false
            }
        }
    }
}

/// What a fan-out did: how many connections it queued to, and which were full.
#[derive(Default)]
struct Fanout {
    queued: usize,
    over_limit: SmallVec<[usize; 4]>,
}

impl Fanout {
    fn record(&mut self, key: usize, offered: Offered) {
        match offered {
            Offered::Queued(SendStatus::Dropped) => {}
            Offered::Queued(_) => self.queued += 1,
            Offered::OverLimit => self.over_limit.push(key),
        }
    }
}

/// The outcome of offering a data frame to one connection's queue.
enum Offered {
    Queued(SendStatus),
    /// The queue is full; the caller applies the slow-consumer policy.
    OverLimit,
}

/// Queues `frame` on an open connection unless that would overflow its send queue (an empty
/// queue takes any message, so a message as large as the limit still goes out). Takes the
/// fields it needs separately so that callers can iterate the connection table.
fn offer(
    conn: &mut Conn,
    key: usize,
    frame: Bytes,
    limit: usize,
    dirty: &mut Vec<usize>,
    stats: &mut Stats,
) -> Offered {
    if conn.state != State::Open {
        return Offered::Queued(SendStatus::Dropped);
    }
    let queued = conn.outbox.len();
    if queued > 0 && queued + frame.len() > limit {
        return Offered::OverLimit;
    }
    let status = if conn.has(BLOCKED) {
        SendStatus::Queued
    } else {
        SendStatus::Sent
    };
    conn.outbox.push(frame);
    stats.messages_out += 1;
    if !conn.has(DIRTY) {
        conn.set(DIRTY);
        dirty.push(key);
    }
    Offered::Queued(status)
}

/// A duration in ticks, capped where tick differences stay meaningful.
fn duration_ticks(duration: Duration) -> Tick {
    duration.as_millis().min(u128::from(Tick::MAX / 2)) as Tick
}

#[derive(Debug, Clone, Copy)]
enum Timeout {
    Handshake,
    Idle,
    Login,
    Ping,
    Close,
}
