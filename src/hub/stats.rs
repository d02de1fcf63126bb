//! Counters the reactor keeps about its own traffic, cheap to update on the hot path, and gauges
//! of its current state, computed on demand. Handlers read them through `Context`; the push API
//! serves them at `/stats` and `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

/// Running totals since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Handshakes completed (connections that reached `on_open` and were not rejected).
    pub opened: u64,
    /// Handshakes refused, by HTTP status (400, 405, 426, 431, 503, …).
    pub handshake_failures: BTreeMap<u16, u64>,
    /// Data messages received.
    pub messages_in: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Data messages queued to connections (a broadcast to n counts n).
    pub messages_out: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Messages dropped because the recipient's send queue was full.
    pub dropped_messages: u64,
    /// Clients closed for sending faster than `Config::client_rate`.
    pub rate_limited: u64,
    /// Closed open connections, by close code (1006 when the peer vanished).
    pub closes: BTreeMap<u16, u64>,
    /// Push API requests answered, by HTTP status.
    pub api_requests: BTreeMap<u16, u64>,
    /// Returns from the poller (loop iterations).
    pub wakeups: u64,
    /// Read calls on WebSocket connections that returned data.
    pub socket_reads: u64,
    /// Write calls on WebSocket connections (each a `write` or `writev`).
    pub socket_writes: u64,
    /// TLS sessions established, by kind of handshake.
    pub tls: TlsStats,
    /// The cluster's state and counters, when this node is part of one.
    pub cluster: Option<ClusterStats>,
}

/// What the TLS sessions of wss connections did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TlsStats {
    /// Full handshakes completed (a certificate signature each).
    pub full_handshakes: u64,
    /// Handshakes that resumed an earlier session (a ticket or a cached session id).
    pub resumed_handshakes: u64,
    /// Sessions that failed: a bad or unsupported client hello, plain HTTP on the TLS port, a
    /// record that does not decrypt, an alert from the peer. (A handshake that stalls is
    /// counted with handshake timeouts, status 408.)
    pub errors: u64,
    /// Reloads of the certificate and key that succeeded.
    pub reloads: u64,
    /// Reloads that failed; the configuration in force stayed.
    pub failed_reloads: u64,
}

/// What this node's cluster endpoint did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    /// Both links to Redis are up and subscribed to broadcasts.
    pub up: bool,
    /// Messages published to other nodes.
    pub published: u64,
    /// Messages from other nodes (or outside publishers) delivered here.
    pub received: u64,
    /// Messages that could not be published because Redis was unreachable (lost for the other
    /// nodes: delivery through the bus is at most once).
    pub lost: u64,
    /// Bus messages skipped because they were malformed or for a channel this node does not
    /// know.
    pub bad: u64,
    /// Times a link to Redis went down.
    pub link_failures: u64,
    /// Subscriptions found silently broken by a probe, and reconnected.
    pub stale_repairs: u64,
}

/// The server's state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open (handshake done, not closing).
    pub open: usize,
    /// Open connections bound to a uid.
    pub bound: usize,
    /// Connections still in their opening handshake.
    pub handshaking: usize,
    /// Connections in their closing handshake.
    pub closing: usize,
    /// Uids with at least one connection.
    pub uids_online: usize,
    /// Groups with at least one member.
    pub groups: usize,
    /// What every send queue holds, as the caps count it (bytes plus a per-frame overhead).
    pub queued_bytes: usize,
    /// Time since the server started.
    pub uptime: Duration,
}
