//! A transport: the only place a connection's bytes cross a socket.
//!
//! Reads, vectored writes and the shutdown of the sending side, nothing more: framing and state
//! belong to the endpoints above. Plain TCP today; a TLS session becomes another implementation
//! (and `Socket` an enum of both) without the endpoints changing.

use std::io;
use std::net::Shutdown;

/// What an endpoint needs of a connection's byte stream. `Read` and `Write` follow the
/// non-blocking conventions: `WouldBlock` when the socket has nothing to give or no room.
pub(crate) trait Transport: io::Read + io::Write {
    /// Sends FIN after what was written: the peer reads end of stream, and may still send.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Stops readiness events for this transport, before it is dropped.
    fn deregister(&mut self, registry: &mio::Registry);
}

/// The transport of WebSocket connections: a plain, non-blocking TCP stream (4 bytes).
pub(crate) type Socket = mio::net::TcpStream;

impl Transport for Socket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        // Dropping the socket ends its registration anyway; this only keeps epoll tidy.
        let _ = registry.deregister(self);
    }
}
