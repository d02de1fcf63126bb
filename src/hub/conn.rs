//! One connection's record, kept small: a mostly idle server holds many thousands of these.
//!
//! The record holds the connection's transport (whatever the endpoint reads and writes; the
//! hub only stores it), its WebSocket state, its timers and its queues. Invariants: an idle
//! open connection owns no heap memory besides its shared uid (its decoder and outbox are empty
//! and unallocated); the spill buffer exists only while a request is partly received, or while
//! an open connection has more frames than its turn's message budget.
//!
//! | state \ event | peer close frame | server close | protocol error | EOF / I/O error | close frame written | timeout |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `Handshake` | — | — | HTTP error → `Closing` | `Dead` | — | 408 → `Closing` |
//! | `Open` | echo → `Closing`, on_close (client) | close frame → `Closing`, on_close (server) | close frame → `Closing`, on_close (server) | on_close 1006; `Dead` once queued output is written | — | idle/login: close → `Closing`; ping |
//! | `Closing` | — | — | — | `Dead` once queued output is written | FIN → `Draining` (or `Dead` after EOF) | `Dead` |
//! | `Draining` | — | — | — | `Dead` | — | `Dead` |

use std::net::SocketAddr;
use std::rc::Rc;

use super::ids::Tick;
use super::outbox::Outbox;
use crate::protocol::Decoder;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for the upgrade request.
    Handshake,
    /// Exchanging messages.
    Open,
    /// A close frame or HTTP error answer is queued; once flushed, the write side is shut.
    Closing,
    /// The write side is shut; reading and discarding until the peer closes.
    Draining,
    /// Gone; the socket is dropped at the end of the loop iteration.
    Dead,
}

/// Readiness last reported by the poller, sticky until an operation returns `WouldBlock`.
pub(crate) const READABLE: u8 = 1;
/// The connection is in the WebSocket endpoint's ready list.
pub(crate) const IN_READY: u8 = 1 << 1;
/// The connection is in the flush list.
pub(crate) const DIRTY: u8 = 1 << 2;
/// The last write returned `WouldBlock`; wait for a writable event.
pub(crate) const BLOCKED: u8 = 1 << 3;
/// Reading is suspended because the send queue is over its high-water mark.
pub(crate) const READ_PAUSED: u8 = 1 << 4;
/// Accepted past the connection limit only to be answered 503.
pub(crate) const OVERFLOW: u8 = 1 << 5;
/// The poller reported the peer's FIN: read until end of stream, even after a short read.
pub(crate) const PEER_CLOSED: u8 = 1 << 6;
/// End of stream was read while output was queued: write it (a close echo, last replies), then
/// drop the connection.
pub(crate) const PEER_GONE: u8 = 1 << 7;

/// One connection and its WebSocket state.
#[derive(Debug)]
pub(crate) struct Conn<T> {
    pub(crate) transport: T,
    pub(crate) gen: u32,
    pub(crate) state: State,
    pub(crate) flags: u8,
    /// Input discarded since this connection began closing, in 4 KiB units, at least one per
    /// read (see `Hub::discard_closing`).
    pub(crate) discarded: u8,
    /// Bytes the transport holds for the socket beyond `outbox` (TLS ciphertext not yet
    /// written), as it last reported them: charged to the caps like the queue.
    pub(crate) backlog: u32,
    /// The permessage-deflate window (9–15 bits) this connection negotiated; 0: none.
    pub(crate) deflate: u8,
    /// When the current state began.
    pub(crate) since: Tick,
    /// When bytes last arrived.
    pub(crate) last_seen: Tick,
    /// When the last heartbeat ping was queued.
    pub(crate) last_ping: Tick,
    pub(crate) decoder: Decoder,
    pub(crate) outbox: Outbox,
    pub(crate) uid: Option<Rc<str>>,
    /// Input read but not yet processed: the opening handshake until it completes, and, once
    /// open, what was left over when a turn's message budget ran out. Boxed so that an idle
    /// connection pays one pointer for it.
    pub(crate) spill: Option<Box<Spill>>,
}

/// Input kept between turns: who connected (as `accept` reported it, saving a `getpeername`
/// per connection) and the bytes: the request so far while in the handshake, unread frames
/// once open.
#[derive(Debug)]
pub(crate) struct Spill {
    pub(crate) peer: SocketAddr,
    pub(crate) bytes: Vec<u8>,
}

impl<T> Conn<T> {
    pub(crate) fn new(transport: T, peer: SocketAddr, gen: u32, now: Tick) -> Self {
        Self {
            transport,
            gen,
            state: State::Handshake,
            flags: 0,
            discarded: 0,
            backlog: 0,
            deflate: 0,
            since: now,
            last_seen: now,
            last_ping: now,
            decoder: Decoder::default(),
            outbox: Outbox::default(),
            uid: None,
            spill: Some(Box::new(Spill {
                peer,
                bytes: Vec::new(),
            })),
        }
    }

    /// What this connection's output holds in memory, as the caps count it: the queue's cost
    /// and the transport's backlog.
    pub(crate) fn queued(&self) -> usize {
        self.outbox.cost() + self.backlog as usize
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn set(&mut self, flag: u8) {
        self.flags |= flag;
    }

    pub(crate) fn clear(&mut self, flag: u8) {
        self.flags &= !flag;
    }

    pub(crate) fn enter(&mut self, state: State, now: Tick) {
        self.state = state;
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small() {
        // Measured budget for an idle connection's record (and its slab slot, which the slab
        // allocates for every connection up to the next power of two): 16 more bytes here are
        // 16 more per connection of server RSS.
        let size = std::mem::size_of::<Conn<crate::net::Socket>>();
        assert!(size <= 152, "{size}");
        assert_eq!(
            std::mem::size_of::<Option<Conn<crate::net::Socket>>>(),
            size
        );
    }
}
