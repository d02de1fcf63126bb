//! The hub: every WebSocket connection's state and every operation on it, with no sockets and
//! no clock.
//!
//! `Hub` owns the connection slab (each record holds its transport, which the hub only stores),
//! the uid registry, the groups, the counters, and the work lists of the current loop iteration:
//! connections with output to flush, closes the handler has not heard of yet, and connections to
//! drop. Everything that needs the time takes `now` (time since the server started, read by the
//! reactor once per iteration). Operations here only queue bytes and change state: the
//! WebSocket endpoint does all reading and writing, and removes dead records in its flush.
//!
//! Invariants: anything that queues bytes marks its connection dirty; a connection leaves the
//! open state exactly once, and that is when its close is listed for `on_close`; `open` counts
//! the connections in `State::Open`; a uid is in the registry only while an open connection is
//! bound to it. Who may call: the endpoints and the callback API (`Context`, through
//! [`Actions`]); never the protocol layer.

pub(crate) mod bus;
pub(crate) mod conn;
mod frames;
pub(crate) mod groups;
pub(crate) mod ids;
pub mod outbox;
pub mod registry;
pub(crate) mod stats;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, info, warn};
use slab::Slab;
use smallvec::SmallVec;

use self::conn::{Conn, State, BLOCKED, DIRTY, OVERFLOW, PEER_GONE, READ_PAUSED};
use self::frames::{Compressor, Frames};
use self::groups::Groups;
use self::ids::{has_elapsed, tick, CloseInfo, ConnId, Initiator, SendStatus};
use self::outbox::{Outbox, FRAME_OVERHEAD};
use self::registry::Registry;
use self::stats::{Gauges, Stats};
use crate::config::{Config, SlowConsumerPolicy};
use crate::protocol::close::{encode_close_payload, CloseFrame};
use crate::protocol::deflate::Inflater;
use crate::protocol::handshake::error_response;
use crate::protocol::{encode_frame, CloseCode, Message, OpCode, ProtocolError};

/// Maps keyed by client-chosen names: a fast hash with per-process random keys, so that
/// crafted names cannot force collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
/// Sets of client-chosen names, hashed as [`HashMap`] keys are.
type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;

/// Who a delivery is for. Every send goes through one fan-out path with one of these.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recipients<'a> {
    /// Every connection bound to this uid.
    Uid(&'a str),
    /// Every connection of every member of the group, except the listed uids.
    Group {
        /// The group's name.
        group: &'a str,
        /// Member uids left out.
        exclude: &'a [&'a str],
    },
    /// Every bound connection.
    All,
}

/// What a delivery did: connections it was queued to, and connections it was meant for that did
/// not get it (queue full, or closing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the message was queued to.
    pub queued: usize,
    /// Connections it was for that dropped it: their queue was full (the slow-consumer
    /// policy applied), or they were closing.
    pub dropped: usize,
}

/// The connections of one reactor and everything known about them.
pub(crate) struct Hub<T> {
    pub(crate) conns: Slab<Conn<T>>,
    registry: Registry,
    groups: Groups,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// The connection limit in force.
    pub(crate) max_connections: usize,
    /// Connections accepted past the limit only to be answered 503.
    overflow: usize,
    /// Connections in the `Open` state.
    open: usize,
    /// The sum of every send queue's cost (`Outbox::cost`), held under
    /// `Config::max_total_send_buffer`.
    queued_total: usize,
    next_gen: u32,
    /// Connections with output to flush.
    pub(crate) dirty: Vec<usize>,
    /// Open connections that closed since the handler was last told.
    pub(crate) closed: Vec<(ConnId, CloseInfo)>,
    /// Connections to drop at the end of the iteration.
    pub(crate) dead: Vec<usize>,
    /// A graceful shutdown is under way.
    shutting_down: bool,
    /// Token buckets of the clients that sent lately (`Config::client_rate`), by slot; a
    /// bucket that has refilled is dropped by the sweep, so quiet clients cost nothing here.
    rates: HashMap<usize, Bucket>,
    /// What the cluster must hear of (`Some` only when this node is part of one).
    pub(crate) bus: Option<bus::Outbound>,
    /// In a cluster, connections whose output waits until this node's subscription to their
    /// uid is confirmed (so a push sent right after "login success" reaches them), by slot.
    pub(crate) held: HashMap<usize, Rc<str>>,
    /// The certificate new wss connections are accepted with (`None`: plain ws).
    pub(crate) tls: Option<crate::tls::Identity>,
    /// The reactor's one permessage-deflate compressor (see `frames`).
    compressor: Compressor,
    /// The reactor's one permessage-deflate decompressor, and the buffer it inflates into
    /// (emptied after each message, freed after a large one).
    pub(crate) inflater: Inflater,
    pub(crate) inflated: Vec<u8>,
}

/// One client's allowances: messages (`Config::client_rate`) and the deliveries they cause
/// (`Config::client_fanout_rate`, which may go into debt: a message is let through while the
/// allowance is positive, and its fan-out is charged after it).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    gen: u32,
    tokens: f64,
    fanout: f64,
    at: Duration,
    /// The WebSocket endpoint holds the client's input back until its fan-out is repaid.
    throttled: bool,
}

impl Bucket {
    fn full(gen: u32, config: &Config, now: Duration) -> Self {
        Self {
            gen,
            tokens: config.client_rate.map_or(0.0, |rate| 2.0 * f64::from(rate)),
            fanout: config
                .client_fanout_rate
                .map_or(0.0, |rate| 2.0 * f64::from(rate)),
            at: now,
            throttled: false,
        }
    }

    /// Adds what accrued since it was last drawn on, up to twice each rate.
    fn refill(&mut self, config: &Config, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        if let Some(rate) = config.client_rate.map(f64::from) {
            self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        }
        if let Some(rate) = config.client_fanout_rate.map(f64::from) {
            self.fanout = (self.fanout + elapsed * rate).min(2.0 * rate);
        }
        self.at = now;
    }

    /// Whether it would be full again at `now` (then it holds nothing worth keeping).
    fn is_full_by(&self, config: &Config, now: Duration) -> bool {
        // Twice the rate refills in two seconds, plus whatever debt the fan-out is in.
        let debt = config
            .client_fanout_rate
            .map_or(0.0, |rate| (-self.fanout).max(0.0) / f64::from(rate));
        !self.throttled && now.saturating_sub(self.at).as_secs_f64() >= 2.0 + debt
    }
}

impl<T> Hub<T> {
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
            queued_total: 0,
            next_gen: 0,
            dirty: Vec::new(),
            closed: Vec::new(),
            dead: Vec::new(),
            shutting_down: false,
            rates: HashMap::default(),
            bus: None,
            held: HashMap::default(),
            tls: None,
            compressor: Compressor::default(),
            inflater: Inflater::default(),
            inflated: Vec::new(),
        }
    }

    /// What the server holds, in bytes, as `memory::Trimmer` watches it: every send queue as
    /// the caps count it, plus an estimate per connection.
    pub(crate) fn held_bytes(&self) -> usize {
        self.queued_total + self.conns.len() * crate::memory::CONN_ESTIMATE
    }

    /// Whether any connection's output is held for the cluster.
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Lets the held output of every uid for which `waits` is false go.
    pub(crate) fn release_held_unless(&mut self, waits: impl Fn(&str) -> bool) {
        let mut released = Vec::new();
        self.held.retain(|&key, uid| {
            let keep = waits(uid);
            if !keep {
                released.push(key);
            }
            keep
        });
        for key in released {
            if self.conns.contains(key) && !self.conns[key].outbox.is_empty() {
                self.mark_dirty(key);
            }
        }
    }

    /// Whether `key`'s output waits for its uid's subscription (see `held`).
    pub(crate) fn is_held(&self, key: usize) -> bool {
        !self.held.is_empty() && self.held.contains_key(&key)
    }

    /// The subscriptions of `uids` are confirmed (or given up on): their connections' output
    /// may go.
    pub(crate) fn release_held(&mut self, uids: &std::collections::HashSet<Rc<str>>) {
        if !self.held.is_empty() && !uids.is_empty() {
            self.release_held_unless(|uid| !uids.contains(uid));
        }
    }

    /// How many connections here are bound to `uid`.
    pub(crate) fn conns_of_uid(&self, uid: &str) -> usize {
        self.registry.conns(uid).len()
    }

    /// Closes every connection here bound to `uid` (a code that may not be sent becomes
    /// 1000); how many.
    pub(crate) fn close_uid(&mut self, uid: &str, code: u16, reason: &str, now: Duration) -> usize {
        let code = Some(CloseCode(code))
            .filter(|code| code.is_sendable())
            .unwrap_or(CloseCode::NORMAL);
        let ids = self.registry.conns(uid).to_vec();
        for id in &ids {
            if let Some(key) = self.key_of(*id) {
                self.close(key, code, reason, now);
            }
        }
        ids.len()
    }

    /// Whether a connection here is bound to `uid`.
    pub(crate) fn holds_uid(&self, uid: &str) -> bool {
        !self.registry.conns(uid).is_empty()
    }

    /// The current gauges; one pass over the connections.
    pub(crate) fn gauges(&self, now: Duration) -> Gauges {
        let mut gauges = Gauges {
            open: self.open,
            uids_online: self.registry.uid_count(),
            groups: self.groups.count(),
            queued_bytes: self.queued_total,
            uptime: now,
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

    /// Connections counted against the limit (all but the 503 overflow).
    pub(crate) fn held_count(&self) -> usize {
        self.conns.len() - self.overflow
    }

    /// Connections accepted past the limit that are being answered 503.
    pub(crate) fn overflow_count(&self) -> usize {
        self.overflow
    }

    /// The slot of `id`, while its record exists (until the end of the iteration it died in, so
    /// `on_close` can still ask about it). Operations check the state they need themselves.
    pub(crate) fn key_of(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.gen == id.gen()).then_some(id.key())
    }

    pub(crate) fn id_of(&self, key: usize) -> ConnId {
        ConnId::new(key as u32, self.conns[key].gen)
    }

    /// The uid `id` is bound to, while its record exists.
    pub(crate) fn uid_of(&self, id: ConnId) -> Option<&str> {
        self.conns[self.key_of(id)?].uid.as_deref()
    }

    /// The slot the next `insert` will use (so that the endpoint can register the transport
    /// under it first).
    pub(crate) fn vacant_key(&self) -> usize {
        self.conns.vacant_key()
    }

    /// Stores a new connection; `over_limit` ones only get a 503 answer.
    pub(crate) fn insert(
        &mut self,
        transport: T,
        peer: SocketAddr,
        over_limit: bool,
        now: Duration,
    ) -> usize {
        self.next_gen = self.next_gen.wrapping_add(1);
        let key = self
            .conns
            .insert(Conn::new(transport, peer, self.next_gen, tick(now)));
        self.stats.accepted += 1;
        if over_limit {
            self.overflow += 1;
            self.conns[key].set(OVERFLOW);
            self.reject(key, 503, "connection limit reached", now);
        }
        key
    }

    /// `key`'s allowances, refilled to `now` (created full on first use).
    fn bucket(&mut self, key: usize, now: Duration) -> &mut Bucket {
        let gen = self.conns[key].gen;
        let config = &self.config;
        let bucket = self
            .rates
            .entry(key)
            .or_insert_with(|| Bucket::full(gen, config, now));
        if bucket.gen != gen {
            *bucket = Bucket::full(gen, config, now);
        }
        bucket.refill(config, now);
        bucket
    }

    /// Takes one message's worth from `key`'s allowance (`Config::client_rate`); false if the
    /// client is over it.
    pub(crate) fn take_token(&mut self, key: usize, now: Duration) -> bool {
        if self.config.client_rate.is_none() {
            return true;
        }
        let bucket = self.bucket(key, now);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// Charges the deliveries one of `key`'s messages caused to its fan-out allowance
    /// (`Config::client_fanout_rate`).
    pub(crate) fn charge_fanout(&mut self, key: usize, deliveries: u64, now: Duration) {
        if self.config.client_fanout_rate.is_some() && deliveries > 0 {
            self.bucket(key, now).fanout -= deliveries as f64;
        }
    }

    /// How long `key`'s input must wait until its fan-out allowance is positive again; `None`
    /// if it may be read now.
    pub(crate) fn fanout_wait(&mut self, key: usize, now: Duration) -> Option<Duration> {
        let rate = f64::from(self.config.client_fanout_rate?);
        if !self.rates.contains_key(&key) {
            return None;
        }
        let bucket = self.bucket(key, now);
        if bucket.fanout > 0.0 {
            return None;
        }
        let wait = Duration::from_secs_f64((-bucket.fanout + 1.0) / rate);
        Some(wait.max(Duration::from_millis(1)))
    }

    /// Marks `key` as held back for its fan-out; false if it already was.
    pub(crate) fn mark_throttled(&mut self, key: usize, now: Duration) -> bool {
        let bucket = self.bucket(key, now);
        !std::mem::replace(&mut bucket.throttled, true)
    }

    /// `key` is no longer held back (its wait is over, or it is gone).
    pub(crate) fn clear_throttled(&mut self, key: usize) {
        if let Some(bucket) = self.rates.get_mut(&key) {
            bucket.throttled = false;
        }
    }

    /// Token buckets held (for tests of their cleanup).
    #[cfg(test)]
    pub(crate) fn rates_held_for_tests(&self) -> usize {
        self.rates.len()
    }

    /// Removes a dead connection's record and returns its transport, for deregistration.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        self.rates.remove(&key);
        if !self.held.is_empty() {
            self.held.remove(&key);
        }
        let conn = self.conns.try_remove(key)?;
        self.queued_total -= conn.queued();
        if conn.has(OVERFLOW) {
            self.overflow -= 1;
        }
        Some(conn.transport)
    }

    pub(crate) fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.has(DIRTY) {
            conn.set(DIRTY);
            self.dirty.push(key);
        }
    }

    /// Changes `key`'s send queue with `change`, keeping the total cost in step.
    fn change_queue(&mut self, key: usize, change: impl FnOnce(&mut Outbox)) {
        let outbox = &mut self.conns[key].outbox;
        let before = outbox.cost();
        change(outbox);
        self.queued_total = self.queued_total - before + outbox.cost();
    }

    /// Queues a frame the protocol requires (pong, close, HTTP answer): never dropped. Reading
    /// pauses while a queue is over half its cap, so what a peer can make the server queue
    /// this way is bounded too.
    fn queue_control(&mut self, key: usize, frame: Bytes) {
        // Refused only by a queue of 4 GiB, which the read pause keeps this one far from.
        self.change_queue(key, |outbox| {
            let _ = outbox.push(frame);
        });
        self.mark_dirty(key);
    }

    /// Queues the `101` answer before what `on_open` sent.
    pub(crate) fn queue_answer(&mut self, key: usize, answer: Bytes) {
        // The first frames of the connection: always taken.
        self.change_queue(key, |outbox| {
            let _ = outbox.push_front(answer);
        });
        self.mark_dirty(key);
    }

    /// Records what `key`'s transport now holds beyond its queue (see `Conn::backlog`).
    pub(crate) fn set_backlog(&mut self, key: usize, backlog: usize) {
        let conn = &mut self.conns[key];
        let backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
        self.queued_total = self.queued_total - conn.backlog as usize + backlog as usize;
        conn.backlog = backlog;
    }

    /// The connection's TLS session failed (the transport holds the alert, if any): count it,
    /// end the connection (an open one closes as 1006 for the handler), send what the transport
    /// holds, then close.
    pub(crate) fn tls_failed(&mut self, key: usize, now: Duration) {
        self.stats.tls.errors += 1;
        match self.conns[key].state {
            State::Open => self.leave_open(key, CloseCode::ABNORMAL, "", Initiator::Client, now),
            State::Handshake => {}
            _ => return,
        }
        self.change_queue(key, Outbox::clear);
        let conn = &mut self.conns[key];
        conn.spill = None;
        conn.enter(State::Closing, tick(now));
        self.mark_dirty(key);
    }

    /// Builds the TLS configuration again from its files (SIGHUP, the API): new handshakes get
    /// the new certificate; on failure the old one stays. `None` without TLS.
    pub(crate) fn reload_tls(&mut self) -> Option<Result<String, crate::TlsError>> {
        let identity = self.tls.as_mut()?;
        let result = identity.reload().map(str::to_owned);
        match &result {
            Ok(summary) => {
                self.stats.tls.reloads += 1;
                info!("TLS certificate reloaded: {summary}");
            }
            Err(error) => {
                self.stats.tls.failed_reloads += 1;
                warn!("TLS certificate not reloaded, the current one stays: {error}");
            }
        }
        Some(result)
    }

    /// Accounts for `cost` written out of a send queue (what its `cost()` went down by).
    pub(crate) fn release_queued(&mut self, cost: usize) {
        self.queued_total -= cost;
    }

    /// A message would overflow `key`'s send queue: count it, and close the connection if
    /// that is the policy.
    fn over_limit(&mut self, key: usize, now: Duration) {
        self.stats.dropped_messages += 1;
        if self.config.slow_consumer == SlowConsumerPolicy::Close {
            debug!("closing slow consumer {}", self.id_of(key));
            self.change_queue(key, Outbox::keep_only_head);
            self.close(key, CloseCode::POLICY, "slow consumer", now);
        }
    }

    /// Sends to one connection.
    pub(crate) fn send(&mut self, id: ConnId, message: Message<'_>, now: Duration) -> SendStatus {
        let Some(key) = self.key_of(id) else {
            return SendStatus::Dropped;
        };
        let Self {
            conns,
            config,
            queued_total,
            dirty,
            stats,
            compressor,
            ..
        } = self;
        let limits = &mut QueueLimits::new(config, queued_total);
        let conn = &mut conns[key];
        let frame =
            Frames::new(message, config.compression_threshold).into_frame(conn.deflate, compressor);
        match offer(conn, key, frame, limits, dirty, stats) {
            Offered::Queued(status) => status,
            Offered::OverLimit => {
                self.over_limit(key, now);
                SendStatus::Dropped
            }
            Offered::OverTotal => SendStatus::Dropped,
        }
    }

    /// Sends to many connections, here and (in a cluster) on every other node; says how many
    /// connections here it was queued to and how many dropped it.
    pub(crate) fn deliver(
        &mut self,
        to: Recipients<'_>,
        message: Message<'_>,
        now: Duration,
    ) -> Delivery {
        if let Some(bus) = &mut self.bus {
            let target = match to {
                Recipients::Uid(uid) => {
                    bus::Target::Uid(self.registry.name(uid).unwrap_or_else(|| Rc::from(uid)))
                }
                Recipients::All => bus::Target::All,
                Recipients::Group { group, exclude } => bus::Target::Group(
                    Rc::from(group),
                    exclude.iter().map(|uid| (*uid).to_owned()).collect(),
                ),
            };
            bus.publish(target, &message);
        }
        self.deliver_here(to, message, now)
    }

    /// Sends to many connections of this node, encoding the frame once (and only if someone
    /// receives it); says how many connections it was queued to and how many dropped it. The
    /// one fan-out path.
    pub(crate) fn deliver_here(
        &mut self,
        to: Recipients<'_>,
        message: Message<'_>,
        now: Duration,
    ) -> Delivery {
        let mut fanout = Fanout::default();
        let Self {
            conns,
            registry,
            groups,
            config,
            queued_total,
            dirty,
            stats,
            compressor,
            ..
        } = self;
        let limits = &mut QueueLimits::new(config, queued_total);
        let mut frames = Frames::new(message, config.compression_threshold);
        match to {
            Recipients::Uid(uid) => {
                let ids = registry.conns(uid);
                if ids.is_empty() {
                    return Delivery::default();
                }
                let Some((last, others)) = ids.split_last() else {
                    return Delivery::default();
                };
                for id in others {
                    let (key, conn) = (id.key(), &mut conns[id.key()]);
                    let frame = frames.for_conn(conn.deflate, compressor);
                    fanout.record(key, offer(conn, key, frame, limits, dirty, stats));
                }
                // The last recipient takes the frame itself: a lone one costs no refcount.
                let (key, conn) = (last.key(), &mut conns[last.key()]);
                let frame = frames.into_frame(conn.deflate, compressor);
                fanout.record(key, offer(conn, key, frame, limits, dirty, stats));
            }
            Recipients::Group { group, exclude } => {
                let mut members = groups.members(group).peekable();
                if members.peek().is_none() {
                    return Delivery::default();
                }
                for uid in members {
                    if exclude.contains(&uid) {
                        continue;
                    }
                    for id in registry.conns(uid) {
                        let (key, conn) = (id.key(), &mut conns[id.key()]);
                        let frame = frames.for_conn(conn.deflate, compressor);
                        fanout.record(key, offer(conn, key, frame, limits, dirty, stats));
                    }
                }
            }
            // One pass over the connection table, in memory order.
            Recipients::All => {
                for (key, conn) in conns.iter_mut() {
                    // Closing connections keep their uid for `on_close`; they are not recipients.
                    if conn.uid.is_some() && conn.state == State::Open {
                        let frame = frames.for_conn(conn.deflate, compressor);
                        fanout.record(key, offer(conn, key, frame, limits, dirty, stats));
                    }
                }
            }
        }
        let dropped = fanout.dropped + fanout.over_limit.len();
        for key in fanout.over_limit {
            self.over_limit(key, now);
        }
        Delivery {
            queued: fanout.queued,
            dropped,
        }
    }

    /// Adds `uid` (online or not) to `group`; false if it was already a member.
    pub(crate) fn join_group(&mut self, uid: &str, group: &str, now: Duration) -> bool {
        if let Some(bus) = &mut self.bus {
            bus.group_changes
                .push(bus::GroupChange::Join(Rc::from(uid), Rc::from(group)));
        }
        self.join_group_here(uid, group, now)
    }

    /// `join_group` on this node only (what another node or Redis said).
    pub(crate) fn join_group_here(&mut self, uid: &str, group: &str, now: Duration) -> bool {
        let online = !self.registry.conns(uid).is_empty();
        self.groups.join(uid, group, online, tick(now))
    }

    /// Removes `uid` from `group`; false if it was not a member (here).
    pub(crate) fn leave_group(&mut self, uid: &str, group: &str) -> bool {
        if let Some(bus) = &mut self.bus {
            bus.group_changes
                .push(bus::GroupChange::Leave(Rc::from(uid), Rc::from(group)));
        }
        self.groups.leave(uid, group)
    }

    /// `leave_group` on this node only.
    pub(crate) fn leave_group_here(&mut self, uid: &str, group: &str) -> bool {
        self.groups.leave(uid, group)
    }

    /// Deletes `group`; returns how many members it had (here).
    pub(crate) fn ungroup(&mut self, group: &str) -> usize {
        if let Some(bus) = &mut self.bus {
            bus.group_changes
                .push(bus::GroupChange::Delete(Rc::from(group)));
        }
        self.groups.ungroup(group)
    }

    /// `ungroup` on this node only.
    pub(crate) fn ungroup_here(&mut self, group: &str) -> usize {
        self.groups.ungroup(group)
    }

    /// The groups of `uid` known here.
    pub(crate) fn groups_of_uid(&self, uid: &str) -> Vec<Rc<str>> {
        self.groups.groups_of(uid).to_vec()
    }

    /// Whether a member of `group` is bound here.
    pub(crate) fn holds_member_of(&self, group: &str) -> bool {
        self.groups.members(group).any(|uid| self.holds_uid(uid))
    }

    /// Binds an open connection to `uid`, replacing any uid it had; false if it is not open.
    pub(crate) fn bind_uid(&mut self, id: ConnId, uid: &str, now: Duration) -> bool {
        let Some(key) = self
            .key_of(id)
            .filter(|&k| self.conns[k].state == State::Open)
        else {
            return false;
        };
        self.unbind_uid(id, now);
        let first_here = self.registry.conns(uid).is_empty();
        let name = self.registry.bind(uid, id);
        if let Some(bus) = &mut self.bus {
            // Every login waits for the cluster, which releases it at once unless the uid's
            // subscription is still on its way (a second tab must not overtake the first).
            if first_here {
                bus.online.push(Rc::clone(&name));
            }
            self.held.insert(key, Rc::clone(&name));
        }
        self.groups.came_online(uid);
        self.conns[key].uid = Some(name);
        true
    }

    /// Removes the uid binding of `id`; false if it had none.
    pub(crate) fn unbind_uid(&mut self, id: ConnId, now: Duration) -> bool {
        let Some(key) = self.key_of(id) else {
            return false;
        };
        match self.conns[key].uid.take() {
            Some(uid) => {
                self.detach(&uid, id, now);
                true
            }
            None => false,
        }
    }

    /// Removes `id` from `uid` in the registry; if that was the uid's last connection, its
    /// group memberships start their grace period.
    fn detach(&mut self, uid: &Rc<str>, id: ConnId, now: Duration) {
        self.registry.unbind(uid, id);
        if self.registry.conns(uid).is_empty() {
            self.groups.went_offline(uid, tick(now));
            if let Some(bus) = &mut self.bus {
                bus.offline.push(Rc::clone(uid));
            }
        }
    }

    /// A completed handshake opened the connection.
    pub(crate) fn open(&mut self, key: usize, now: Duration) {
        self.conns[key].spill = None;
        self.conns[key].enter(State::Open, tick(now));
        self.open += 1;
        self.stats.opened += 1;
    }

    /// Takes back an `open` for a connection the handler refused: no close is reported, even
    /// if the handler closed it inside `on_open` before refusing it.
    pub(crate) fn unopen(&mut self, key: usize, now: Duration) {
        let id = self.id_of(key);
        if self.conns[key].state == State::Open {
            self.unbind_uid(id, now);
            self.open -= 1;
        } else if let Some(at) = self.closed.iter().rposition(|(closed, _)| *closed == id) {
            // Closed during `on_open`: that close is taken back with the open.
            let (_, info) = self.closed.remove(at);
            if let Some(count) = self.stats.closes.get_mut(&info.code.0) {
                *count -= 1;
                if *count == 0 {
                    self.stats.closes.remove(&info.code.0);
                }
            }
        }
        self.change_queue(key, Outbox::clear);
        self.conns[key].enter(State::Handshake, tick(now));
        self.stats.opened -= 1;
    }

    /// Refuses, with an HTTP error answer, a connection `on_open` accepted but whose answer
    /// cannot be sent: the handler was told it opened, so it hears of its end as a server
    /// close 1011; nothing `on_open` queued goes out.
    pub(crate) fn refuse_opened(&mut self, key: usize, status: u16, reason: &str, now: Duration) {
        if self.conns[key].state == State::Open {
            self.leave_open(
                key,
                CloseCode::INTERNAL_ERROR,
                reason,
                Initiator::Server,
                now,
            );
        }
        self.change_queue(key, Outbox::clear);
        self.reject(key, status, reason, now);
    }

    /// Refuses a handshake with an HTTP error answer, then closes.
    pub(crate) fn reject(&mut self, key: usize, status: u16, reason: &str, now: Duration) {
        *self.stats.handshake_failures.entry(status).or_default() += 1;
        let conn = &mut self.conns[key];
        conn.spill = None;
        conn.enter(State::Closing, tick(now));
        self.queue_control(key, Bytes::from(error_response(status, reason)));
    }

    /// Server-initiated close: queues a close frame and lists the close for the handler.
    pub(crate) fn close(&mut self, key: usize, code: CloseCode, reason: &str, now: Duration) {
        if self.conns[key].state != State::Open {
            return;
        }
        self.leave_open(key, code, reason, Initiator::Server, now);
        let payload = encode_close_payload(code, reason);
        self.queue_control(key, encode_frame(OpCode::Close, &payload, None));
    }

    /// Fails the connection for a protocol violation (RFC 6455 §7.1.7).
    pub(crate) fn fail(&mut self, key: usize, error: ProtocolError, now: Duration) {
        debug!("{}: {error}", self.id_of(key));
        self.close(key, error.close_code(), error.reason(), now);
    }

    /// The client sent a close frame: echo its code and list the close.
    pub(crate) fn peer_closed(&mut self, key: usize, frame: Option<CloseFrame<'_>>, now: Duration) {
        if self.conns[key].state != State::Open {
            return;
        }
        let (code, reason) = frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
        self.leave_open(key, code, reason, Initiator::Client, now);
        // §5.5.1: the answering close frame "typically echos the status code it received".
        let payload = frame.map_or(Vec::new(), |f| f.code.0.to_be_bytes().to_vec());
        self.queue_control(key, encode_frame(OpCode::Close, &payload, None));
    }

    /// Answers a ping.
    pub(crate) fn pong(&mut self, key: usize, payload: &[u8]) {
        self.queue_control(key, encode_frame(OpCode::Pong, payload, None));
    }

    /// Queues a heartbeat ping.
    fn ping(&mut self, key: usize, now: Duration) {
        self.conns[key].last_ping = tick(now);
        self.queue_control(key, encode_frame(OpCode::Ping, b"", None));
    }

    /// The transport is gone (EOF, reset, write error): drop the connection.
    pub(crate) fn vanish(&mut self, key: usize, now: Duration) {
        if self.conns[key].state == State::Open {
            self.leave_open(key, CloseCode::ABNORMAL, "", Initiator::Client, now);
        }
        self.kill(key);
    }

    /// The peer's end of stream was read. What is queued for it still goes out (the echo of a
    /// close frame that came with the FIN, the last replies); the connection is dropped once
    /// it is written, or at once if nothing is queued. An open connection closes as 1006.
    pub(crate) fn peer_eof(&mut self, key: usize, now: Duration) {
        if self.conns[key].state == State::Open {
            self.leave_open(key, CloseCode::ABNORMAL, "", Initiator::Client, now);
        }
        let conn = &mut self.conns[key];
        if conn.outbox.is_empty() && conn.backlog == 0 || conn.state != State::Closing {
            self.kill(key);
        } else {
            conn.set(PEER_GONE);
        }
    }

    /// Everything up to the close frame is written and the write side is shut: read until the
    /// peer closes too (so that unread input cannot turn the close into a reset).
    pub(crate) fn drain(&mut self, key: usize, now: Duration) {
        self.conns[key].enter(State::Draining, tick(now));
    }

    /// Counts `bytes` read from a closing connection and thrown away (it is read only to see
    /// the peer's close). A peer that goes on sending costs a bounded amount of work: past
    /// about 1 MiB, or 255 reads, the connection is dropped without waiting any longer.
    pub(crate) fn discard_closing(&mut self, key: usize, bytes: usize) {
        let conn = &mut self.conns[key];
        let units = u8::try_from((bytes / 4096).max(1)).unwrap_or(u8::MAX);
        match conn.discarded.checked_add(units) {
            Some(discarded) => conn.discarded = discarded,
            None => {
                debug!(
                    "{}: still sending after the close; dropped",
                    self.id_of(key)
                );
                self.kill(key);
            }
        }
    }

    /// Marks the connection for removal at the end of the iteration.
    pub(crate) fn kill(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state != State::Dead {
            conn.state = State::Dead;
            self.dead.push(key);
        }
    }

    fn leave_open(
        &mut self,
        key: usize,
        code: CloseCode,
        reason: &str,
        initiator: Initiator,
        now: Duration,
    ) {
        let id = self.id_of(key);
        if let Some(uid) = self.conns[key].uid.clone() {
            self.detach(&uid, id, now);
        }
        self.conns[key].enter(State::Closing, tick(now));
        self.open -= 1;
        *self.stats.closes.entry(code.0).or_default() += 1;
        let info = CloseInfo {
            code,
            reason: reason.to_owned(),
            initiator,
        };
        self.closed.push((id, info));
    }

    /// Whether reading from `key` must wait until its queue drains (backpressure): pauses above
    /// half the send cap; [`Hub::may_resume_reading`] resumes at a quarter.
    pub(crate) fn should_pause_reading(&mut self, key: usize) -> bool {
        let high_water = self.config.max_send_buffer / 2;
        let conn = &mut self.conns[key];
        if conn.queued() > high_water {
            conn.set(READ_PAUSED);
        }
        conn.has(READ_PAUSED)
    }

    /// After a write: lifts a reading pause once the queue is down to a quarter of the send
    /// cap; true if it did.
    pub(crate) fn may_resume_reading(&mut self, key: usize) -> bool {
        let low_water = self.config.max_send_buffer / 4;
        let conn = &mut self.conns[key];
        if conn.has(READ_PAUSED) && conn.queued() <= low_water {
            conn.clear(READ_PAUSED);
            return true;
        }
        false
    }

    /// Records that the transport can take writes again. After a full socket this means the
    /// peer took bytes, which counts as life: a slow reader whose reading is paused for
    /// backpressure is not idle. (A write that merely succeeded proves nothing; a dead peer's
    /// socket takes pings until it is full, and then never becomes writable again.)
    pub(crate) fn writable(&mut self, key: usize, now: Duration) {
        let conn = &mut self.conns[key];
        if conn.has(BLOCKED) {
            conn.last_seen = tick(now);
        }
        conn.clear(BLOCKED);
        if !conn.outbox.is_empty() || conn.backlog > 0 {
            self.mark_dirty(key);
        }
    }

    /// Records bytes read from `key`; any inbound byte counts as life.
    pub(crate) fn record_read(&mut self, key: usize, bytes: usize, now: Duration) {
        self.stats.socket_reads += 1;
        self.stats.bytes_in += bytes as u64;
        self.conns[key].last_seen = tick(now);
    }

    /// Applies every timeout at `now`: handshake, login, heartbeat, idle, close, and the groups'
    /// grace period. One pass over all connections; it also frees send queues kept from earlier
    /// bursts.
    pub(crate) fn sweep(&mut self, now: Duration) {
        self.compressor.shrink();
        let elapsed = |since, duration| has_elapsed(since, now, duration);
        let config = &self.config;
        let mut due = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            conn.outbox.release_spare();
            let action = match conn.state {
                State::Handshake if elapsed(conn.since, config.handshake_timeout) => {
                    Timeout::Handshake
                }
                State::Open => {
                    if config
                        .idle_timeout
                        .is_some_and(|t| elapsed(conn.last_seen, t))
                    {
                        Timeout::Idle
                    } else if conn.uid.is_none()
                        && config.login_timeout.is_some_and(|t| elapsed(conn.since, t))
                    {
                        Timeout::Login
                    } else if config
                        .ping_interval
                        .is_some_and(|t| elapsed(conn.last_seen, t) && elapsed(conn.last_ping, t))
                    {
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
        if !self.rates.is_empty() {
            let config = &self.config;
            self.rates
                .retain(|_, bucket| !bucket.is_full_by(config, now));
        }
        for (key, action) in due {
            match action {
                Timeout::Handshake => self.reject(key, 408, "handshake timed out", now),
                Timeout::Idle => self.close(key, CloseCode::GOING_AWAY, "idle timeout", now),
                Timeout::Login => self.close(key, CloseCode::POLICY, "login timeout", now),
                Timeout::Ping => self.ping(key, now),
                Timeout::Close => self.kill(key),
            }
        }
    }

    /// Starts a graceful shutdown: close 1001 to every open connection, drop the others that
    /// are still in their handshake.
    pub(crate) fn close_all(&mut self, now: Duration) {
        self.shutting_down = true;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns[key].state {
                State::Open => self.close(key, CloseCode::GOING_AWAY, "server shutting down", now),
                State::Handshake => self.kill(key),
                _ => {}
            }
        }
    }
}

/// What the callback API may do with the hub, whatever its transport: `Context` holds a
/// `&mut dyn Actions`, so the handler API does not depend on how bytes travel.
pub(crate) trait Actions {
    fn send(&mut self, id: ConnId, message: Message<'_>, now: Duration) -> SendStatus;
    fn deliver(&mut self, to: Recipients<'_>, message: Message<'_>, now: Duration) -> Delivery;
    fn bind_uid(&mut self, id: ConnId, uid: &str, now: Duration) -> bool;
    fn unbind_uid(&mut self, id: ConnId, now: Duration) -> bool;
    fn join_group(&mut self, uid: &str, group: &str, now: Duration) -> bool;
    fn leave_group(&mut self, uid: &str, group: &str) -> bool;
    fn ungroup(&mut self, group: &str) -> usize;
    /// Closes an open connection; codes that may not be sent become 1000.
    fn close(&mut self, id: ConnId, code: CloseCode, reason: &str, now: Duration);
    fn uid_of(&self, id: ConnId) -> Option<&str>;
    fn registry(&self) -> &Registry;
    fn groups(&self) -> &Groups;
    fn open_count(&self) -> usize;
    fn gauges(&self, now: Duration) -> Gauges;
    fn stats(&self) -> &Stats;
    fn config(&self) -> &Config;
    fn is_shutting_down(&self) -> bool;
    fn reload_tls(&mut self) -> Option<Result<String, crate::TlsError>>;
    /// Sends `notice` to `conn` once no node is known to hold `uid` (see
    /// `Context::tell_if_offline`).
    fn tell_if_offline(&mut self, uid: &str, conn: ConnId, notice: &str, now: Duration);
    /// In a cluster, asks the other nodes how many connections the last message (for a uid)
    /// reached; the survey's id.
    fn survey_delivery(&mut self, here: Delivery, now: Duration) -> Option<u64>;
    /// In a cluster, asks the other nodes how many connections `uid` has (`here` counted
    /// already), or has them close those with `close`; the survey's id.
    fn survey_uid(
        &mut self,
        uid: &str,
        close: Option<(u16, &str)>,
        here: usize,
        now: Duration,
    ) -> Option<u64>;
}

impl<T> Actions for Hub<T> {
    fn send(&mut self, id: ConnId, message: Message<'_>, now: Duration) -> SendStatus {
        Hub::send(self, id, message, now)
    }
    fn deliver(&mut self, to: Recipients<'_>, message: Message<'_>, now: Duration) -> Delivery {
        Hub::deliver(self, to, message, now)
    }
    fn bind_uid(&mut self, id: ConnId, uid: &str, now: Duration) -> bool {
        Hub::bind_uid(self, id, uid, now)
    }
    fn unbind_uid(&mut self, id: ConnId, now: Duration) -> bool {
        Hub::unbind_uid(self, id, now)
    }
    fn join_group(&mut self, uid: &str, group: &str, now: Duration) -> bool {
        Hub::join_group(self, uid, group, now)
    }
    fn leave_group(&mut self, uid: &str, group: &str) -> bool {
        Hub::leave_group(self, uid, group)
    }
    fn ungroup(&mut self, group: &str) -> usize {
        Hub::ungroup(self, group)
    }
    fn close(&mut self, id: ConnId, code: CloseCode, reason: &str, now: Duration) {
        if let Some(key) = self.key_of(id) {
            let code = if code.is_sendable() {
                code
            } else {
                CloseCode::NORMAL
            };
            Hub::close(self, key, code, reason, now);
        }
    }
    fn uid_of(&self, id: ConnId) -> Option<&str> {
        Hub::uid_of(self, id)
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
    fn groups(&self) -> &Groups {
        &self.groups
    }
    fn open_count(&self) -> usize {
        self.open
    }
    fn gauges(&self, now: Duration) -> Gauges {
        Hub::gauges(self, now)
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }
    fn reload_tls(&mut self) -> Option<Result<String, crate::TlsError>> {
        Hub::reload_tls(self)
    }
    fn survey_delivery(&mut self, here: Delivery, now: Duration) -> Option<u64> {
        let bus = self.bus.as_mut()?;
        bus.survey_last(here.queued as u64, here.dropped as u64, now)
    }
    fn survey_uid(
        &mut self,
        uid: &str,
        close: Option<(u16, &str)>,
        here: usize,
        now: Duration,
    ) -> Option<u64> {
        let name = self.registry.name(uid).unwrap_or_else(|| Rc::from(uid));
        let bus = self.bus.as_mut()?;
        let what = match close {
            Some((code, reason)) => bus::What::Close(code, reason.to_owned()),
            None => bus::What::Presence,
        };
        Some(bus.ask(name, what, here as u64, now))
    }
    fn tell_if_offline(&mut self, uid: &str, conn: ConnId, notice: &str, now: Duration) {
        let notify = bus::Notify {
            conn,
            notice: notice.to_owned(),
        };
        let deferred = match &mut self.bus {
            Some(bus) => bus.notify_last(uid, notify),
            None => false,
        };
        if !deferred {
            Hub::send(self, conn, Message::Text(notice), now);
        }
    }
}

/// What a fan-out did: how many connections it queued to, and which were full.
#[derive(Default)]
struct Fanout {
    queued: usize,
    /// Recipients that were closing.
    dropped: usize,
    over_limit: SmallVec<[usize; 4]>,
}

impl Fanout {
    #[inline]
    fn record(&mut self, key: usize, offered: Offered) {
        match offered {
            Offered::Queued(SendStatus::Dropped) | Offered::OverTotal => self.dropped += 1,
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
    /// All queues together are at their cap: the message is dropped for this connection and
    /// counted, but the connection is not to blame (no slow-consumer close).
    OverTotal,
}

/// The caps an offer is checked against, and the running total it adds to.
struct QueueLimits<'a> {
    per_conn: usize,
    all_conns: usize,
    total: &'a mut usize,
}

impl<'a> QueueLimits<'a> {
    fn new(config: &Config, total: &'a mut usize) -> Self {
        Self {
            per_conn: config.max_send_buffer,
            all_conns: config.max_total_send_buffer,
            total,
        }
    }
}

/// Queues `frame` on an open connection unless that would take its queue past its cap, or all
/// queues past theirs (an empty queue takes any message, so a message as large as the limit
/// still goes out, and a connection that keeps up is served while slow ones are over). Takes the
/// fields it needs separately so that callers can iterate the connection table. Inlined into
/// each fan-out loop: a call per recipient would cost a fifth of the work of a delivery.
#[inline(always)]
fn offer<T>(
    conn: &mut Conn<T>,
    key: usize,
    frame: Bytes,
    limits: &mut QueueLimits,
    dirty: &mut Vec<usize>,
    stats: &mut Stats,
) -> Offered {
    if conn.state != State::Open {
        return Offered::Queued(SendStatus::Dropped);
    }
    let queued = conn.queued();
    let cost = frame.len() + FRAME_OVERHEAD;
    // Past the total cap, only an empty queue takes a message: every connection still gets
    // one frame per flush, and nothing can pile up (a shared broadcast frame is counted once
    // per queue, so the total overstates what it costs, never understates it).
    if queued > 0 && queued + cost > limits.per_conn {
        return Offered::OverLimit;
    }
    if queued > 0 && *limits.total + cost > limits.all_conns {
        stats.dropped_messages += 1;
        return Offered::OverTotal;
    }
    if !conn.outbox.push(frame) {
        // Past what a queue can count; the caps stop queues long before.
        return Offered::OverLimit;
    }
    *limits.total += cost;
    let status = if conn.has(BLOCKED) {
        SendStatus::Queued
    } else {
        SendStatus::Sent
    };
    stats.messages_out += 1;
    if !conn.has(DIRTY) {
        conn.set(DIRTY);
        dirty.push(key);
    }
    Offered::Queued(status)
}

#[derive(Debug, Clone, Copy)]
enum Timeout {
    Handshake,
    Idle,
    Login,
    Ping,
    Close,
}

#[cfg(test)]
mod tests;
