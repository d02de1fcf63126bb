//! What handlers (and the push API's routes) can do: the `Context` passed to every callback.
//!
//! A thin, safe face over the hub's [`Actions`], carrying the loop iteration's `now`. It queues
//! bytes and changes bindings; it never touches a socket or reads the clock (the WebSocket
//! endpoint flushes once per loop iteration).

use std::time::Duration;

use crate::hub::{Actions, Delivery, Recipients};
use crate::protocol::{CloseCode, Message};
use crate::{Config, ConnId, Gauges, SendStatus, Stats};

/// The handle callbacks use to act on connections and users.
pub struct Context<'a> {
    hub: &'a mut dyn Actions,
    now: Duration,
}

impl<'a> Context<'a> {
    pub(crate) fn new(hub: &'a mut dyn Actions, now: Duration) -> Self {
        Self { hub, now }
    }

    /// Sends a message to one connection.
    pub fn send<'m>(&mut self, conn: ConnId, message: impl Into<Message<'m>>) -> SendStatus {
        self.hub.send(conn, message.into(), self.now)
    }

    /// Binds `conn` to `uid` (replacing any uid it had); false if the connection is not open.
    ///
    /// No rules are applied to `uid` here; see [`crate::validate_uid`] for the reference rules.
    pub fn bind_uid(&mut self, conn: ConnId, uid: &str) -> bool {
        self.hub.bind_uid(conn, uid, self.now)
    }

    /// Removes the uid binding of `conn`; false if it had none. Other connections of the same
    /// uid keep theirs.
    pub fn unbind_uid(&mut self, conn: ConnId) -> bool {
        self.hub.unbind_uid(conn, self.now)
    }

    /// Sends to every connection bound to `uid`, encoding the frame once; returns how many
    /// connections it was queued to.
    pub fn send_to_uid<'m>(&mut self, uid: &str, message: impl Into<Message<'m>>) -> usize {
        self.deliver_to_uid(uid, message).queued
    }

    /// As [`Context::send_to_uid`], also telling how many of the uid's connections dropped the
    /// message (queue full or closing): "offline" only when it has no connection at all.
    pub fn deliver_to_uid<'m>(&mut self, uid: &str, message: impl Into<Message<'m>>) -> Delivery {
        self.hub
            .deliver(Recipients::Uid(uid), message.into(), self.now)
    }

    /// Tells `conn` that `uid` is offline, with `notice`, when that is true: at once when
    /// this node runs alone; in a cluster, once Redis says that no other node holds `uid`
    /// either (the last message sent to `uid` from this callback reached no node). Call it
    /// right after a `deliver_to_uid` that reached no connection here.
    pub fn tell_if_offline(&mut self, uid: &str, conn: ConnId, notice: &str) {
        self.hub.tell_if_offline(uid, conn, notice, self.now);
    }

    /// In a cluster: asks the other nodes how many connections the last message sent to a
    /// uid reached (`here` is this node's count); the survey the push API waits for.
    pub(crate) fn survey_delivery(&mut self, here: Delivery) -> Option<u64> {
        self.hub.survey_delivery(here, self.now)
    }

    /// In a cluster: asks the other nodes how many connections `uid` has, or (with `close`)
    /// has them closed; `here` is this node's count.
    pub(crate) fn survey_uid(
        &mut self,
        uid: &str,
        close: Option<(u16, &str)>,
        here: usize,
    ) -> Option<u64> {
        self.hub.survey_uid(uid, close, here, self.now)
    }

    /// Sends to every bound connection, encoding the frame once; returns how many connections
    /// it was queued to.
    pub fn broadcast<'m>(&mut self, message: impl Into<Message<'m>>) -> usize {
        self.deliver_to_all(message).queued
    }

    /// As [`Context::broadcast`], also telling how many connections dropped the message.
    pub fn deliver_to_all<'m>(&mut self, message: impl Into<Message<'m>>) -> Delivery {
        self.hub.deliver(Recipients::All, message.into(), self.now)
    }

    /// Adds `uid` to `group` (creating the group); false if it was already a member.
    ///
    /// Membership belongs to the uid: it lasts while the uid has a connection and for
    /// `Config::group_grace` after its last one closes. A uid added while offline gets the same
    /// grace period to connect.
    pub fn join_group(&mut self, uid: &str, group: &str) -> bool {
        self.hub.join_group(uid, group, self.now)
    }

    /// Removes `uid` from `group`; false if it was not a member.
    pub fn leave_group(&mut self, uid: &str, group: &str) -> bool {
        self.hub.leave_group(uid, group)
    }

    /// Deletes `group`; returns how many members it had.
    pub fn ungroup(&mut self, group: &str) -> usize {
        self.hub.ungroup(group)
    }

    /// Sends to every connection of every member of `group` except the uids in `exclude`,
    /// encoding the frame once; returns how many connections it was queued to.
    pub fn send_to_group<'m>(
        &mut self,
        group: &str,
        message: impl Into<Message<'m>>,
        exclude: &[&str],
    ) -> usize {
        self.deliver_to_group(group, message, exclude).queued
    }

    /// As [`Context::send_to_group`], also telling how many connections dropped the message.
    pub fn deliver_to_group<'m>(
        &mut self,
        group: &str,
        message: impl Into<Message<'m>>,
        exclude: &[&str],
    ) -> Delivery {
        let to = Recipients::Group { group, exclude };
        self.hub.deliver(to, message.into(), self.now)
    }

    /// The member uids of `group`, in no particular order.
    pub fn group_members(&self, group: &str) -> impl Iterator<Item = &str> + '_ {
        self.hub.groups().members(group)
    }

    /// The groups `uid` belongs to.
    pub fn groups_of(&self, uid: &str) -> impl Iterator<Item = &str> + '_ {
        self.hub
            .groups()
            .groups_of(uid)
            .iter()
            .map(|group| &**group)
    }

    /// Whether at least one open connection is bound to `uid`.
    pub fn is_uid_online(&self, uid: &str) -> bool {
        !self.conns_of(uid).is_empty()
    }

    /// The connections bound to `uid`, oldest first.
    pub fn conns_of(&self, uid: &str) -> &[ConnId] {
        self.hub.registry().conns(uid)
    }

    /// The uid `conn` is bound to. Still answers inside `on_close` for the closing connection.
    pub fn uid_of(&self, conn: ConnId) -> Option<&str> {
        self.hub.uid_of(conn)
    }

    /// Starts the closing handshake with `code` and `reason` (truncated to fit a control frame).
    ///
    /// `on_close` follows for this connection. Codes that may not be sent (1005, 1006, …) are
    /// replaced by 1000.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        self.hub.close(conn, code, reason, self.now);
    }

    /// Number of open connections (handshake complete, not closing).
    pub fn open_connections(&self) -> usize {
        self.hub.open_count()
    }

    /// Number of uids with at least one connection.
    pub fn online_uids(&self) -> usize {
        self.hub.registry().uid_count()
    }

    /// The server's current state: connections by state, uids online, groups, uptime.
    pub fn gauges(&self) -> Gauges {
        self.hub.gauges(self.now)
    }

    /// Traffic counters since start.
    pub fn stats(&self) -> &Stats {
        self.hub.stats()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        self.hub.config()
    }

    /// Whether a graceful shutdown is under way.
    pub fn is_shutting_down(&self) -> bool {
        self.hub.is_shutting_down()
    }

    /// Reads the TLS certificate and key again from their files: new handshakes get the new
    /// certificate, established connections are untouched. On success, what the certificate in
    /// force now is; on failure why, and the old certificate stays. `None` without TLS.
    pub fn reload_tls(&mut self) -> Option<Result<String, crate::TlsError>> {
        self.hub.reload_tls()
    }
}
