//! Counters the reactor keeps about its own traffic: cheap to update on the hot path, read by
//! handlers (and later the stats endpoints) through `Context::stats`.

use std::collections::BTreeMap;

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
    /// Closed open connections, by close code (1006 when the peer vanished).
    pub closes: BTreeMap<u16, u64>,
}
