//! What handlers can do: the `Context` passed to every callback, and the ids it speaks of.
//!
//! A thin, safe face over the reactor's state. It queues bytes and changes bindings; it never
//! writes to a socket itself (the reactor flushes once per loop iteration).

use std::fmt;

use crate::protocol::{CloseCode, Message};
use crate::server::Core;
use crate::{Config, Stats};

/// Identifies one connection for its whole life.
///
/// The slot key is reused after a connection closes, but the generation is not: an id kept
/// after its connection closed never reaches the slot's next occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    key: u32,
    gen: u32,
}

impl ConnId {
    /// An id from its parts. Servers hand out ids through the callbacks; building one is
    /// only useful for tests and benchmarks (an id whose generation does not match reaches
    /// nothing).
    pub fn new(key: u32, gen: u32) -> Self {
        Self { key, gen }
    }

    pub(crate) fn key(self) -> usize {
        self.key as usize
    }

    pub(crate) fn gen(self) -> u32 {
        self.gen
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key, self.gen)
    }
}

/// What happened to a message handed to `Context::send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The connection keeps up: the frame is written to its socket in this loop iteration's
    /// flush, before the loop waits again.
    Sent,
    /// The connection is behind (its socket was full at the last write): the frame waits in its
    /// queue, within `max_send_buffer`.
    Queued,
    /// The frame was not queued: the connection is closed or closing, or its queue is full.
    Dropped,
}

/// The handle callbacks use to act on connections and users.
pub struct Context<'a> {
    core: &'a mut Core,
}

impl<'a> Context<'a> {
    pub(crate) fn new(core: &'a mut Core) -> Self {
        Self { core }
    }

    /// Sends a message to one connection.
    pub fn send<'m>(&mut self, conn: ConnId, message: impl Into<Message<'m>>) -> SendStatus {
        self.core.send(conn, message.into())
    }

    /// Binds `conn` to `uid` (replacing any uid it had); false if the connection is not open.
    ///
    /// No rules are applied to `uid` here; see [`crate::validate_uid`] for the reference rules.
    pub fn bind_uid(&mut self, conn: ConnId, uid: &str) -> bool {
        self.core.bind_uid(conn, uid)
    }

    /// Removes the uid binding of `conn`; false if it had none. Other connections of the same
    /// uid keep theirs.
    pub fn unbind_uid(&mut self, conn: ConnId) -> bool {
        self.core.unbind_uid(conn)
    }

    /// Sends to every connection bound to `uid`, encoding the frame once; returns how many
    /// connections it was queued to.
    pub fn send_to_uid<'m>(&mut self, uid: &str, message: impl Into<Message<'m>>) -> usize {
        self.core.send_to_uid(uid, message.into())
    }

    /// Sends to every bound connection, encoding the frame once; returns how many connections
    /// it was queued to.
    pub fn broadcast<'m>(&mut self, message: impl Into<Message<'m>>) -> usize {
        self.core.broadcast(message.into())
    }

    /// Adds `uid` to `group` (creating the group); false if it was already a member.
    ///
    /// Membership belongs to the uid: it lasts while the uid has a connection and for
    /// `Config::group_grace` after its last one closes. A uid added while offline gets the same
    /// grace period to connect.
    pub fn join_group(&mut self, uid: &str, group: &str) -> bool {
        self.core.join_group(uid, group)
    }

    /// Removes `uid` from `group`; false if it was not a member.
    pub fn leave_group(&mut self, uid: &str, group: &str) -> bool {
        self.core.groups.leave(uid, group)
    }

    /// Deletes `group`; returns how many members it had.
    pub fn ungroup(&mut self, group: &str) -> usize {
        self.core.groups.ungroup(group)
    }

    /// Sends to every connection of every member of `group` except the uids in `exclude`,
    /// encoding the frame once; returns how many connections it was queued to.
    pub fn send_to_group<'m>(
        &mut self,
        group: &str,
        message: impl Into<Message<'m>>,
        exclude: &[&str],
    ) -> usize {
        self.core.send_to_group(group, message.into(), exclude)
    }

    /// The member uids of `group`, in no particular order.
    pub fn group_members(&self, group: &str) -> impl Iterator<Item = &str> + '_ {
        self.core.groups.members(group)
    }

    /// The groups `uid` belongs to.
    pub fn groups_of(&self, uid: &str) -> impl Iterator<Item = &str> + '_ {
        self.core.groups.groups_of(uid).iter().map(|group| &**group)
    }

    /// Whether at least one open connection is bound to `uid`.
    pub fn is_uid_online(&self, uid: &str) -> bool {
        !self.core.registry.conns(uid).is_empty()
    }

    /// The connections bound to `uid`, oldest first.
    pub fn conns_of(&self, uid: &str) -> &[ConnId] {
        self.core.registry.conns(uid)
    }

    /// The uid `conn` is bound to. Still answers inside `on_close` for the closing connection.
    pub fn uid_of(&self, conn: ConnId) -> Option<&str> {
        self.core.conn(conn)?.uid.as_deref()
    }

    /// Starts the closing handshake with `code` and `reason` (truncated to fit a control frame).
    ///
    /// `on_close` follows for this connection. Codes that may not be sent (1005, 1006, …) are
    /// replaced by 1000.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        if let Some(key) = self.core.key_of(conn) {
            let code = if code.is_sendable() {
                code
            } else {
                CloseCode::NORMAL
            };
            self.core.close(key, code, reason);
        }
    }

    /// Number of open connections (handshake complete, not closing).
    pub fn open_connections(&self) -> usize {
        self.core.open_count()
    }

    /// Number of uids with at least one connection.
    pub fn online_uids(&self) -> usize {
        self.core.registry.uid_count()
    }

    /// The server's current state: connections by state, uids online, groups, uptime.
    pub fn gauges(&self) -> crate::Gauges {
        self.core.gauges()
    }

    /// Traffic counters since start.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.core.config
    }
}
