//! Transports: the only place a connection's bytes cross a socket.
//!
//! [`Transport`] is a plain byte stream (reads, vectored writes, the shutdown of the sending
//! side): a TCP socket, or a scripted one in unit tests. [`Wire`] is what the WebSocket endpoint
//! needs of a connection: plaintext in, queued frames out, a close of the sending side, and what
//! it holds beyond the queue. Every transport is a wire as it is; [`Socket`], the wire of a
//! WebSocket connection, is plain TCP or a TLS session. Framing and connection state belong to
//! the endpoints above; nothing here interprets WebSocket bytes.

use std::io;
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::HandshakeKind;

use super::tls::{TlsBuffers, TlsStream};
use crate::hub::outbox::{Flushed, Outbox};

/// What an endpoint needs of a connection's byte stream. `Read` and `Write` follow the
/// non-blocking conventions: `WouldBlock` when the socket has nothing to give or no room.
pub(crate) trait Transport: io::Read + io::Write {
    /// Sends FIN after what was written: the peer reads end of stream, and may still send.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Stops readiness events for this transport, before it is dropped.
    fn deregister(&mut self, registry: &mio::Registry);
}

impl Transport for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        // Dropping the socket ends its registration anyway; this only keeps epoll tidy.
        let _ = registry.deregister(self);
    }
}

/// What one read of a wire brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// `plain` bytes of input are at the front of the buffer (none when only TLS handshake
    /// records or part of a record came), from `raw` bytes read off the socket; `drained` when
    /// the socket gave less than was asked, so nothing more is waiting (and nothing is held
    /// decrypted anywhere).
    Bytes {
        plain: usize,
        raw: usize,
        drained: bool,
    },
    /// The peer will send nothing more (end of stream, or TLS close_notify).
    End,
}

/// A WebSocket connection's byte stream as the endpoint uses it. A TLS failure is reported as
/// `InvalidData`; what the peer must still be told (an alert) is then in [`Wire::backlog`].
pub(crate) trait Wire {
    /// Reads once into `buf`.
    fn receive(&mut self, buf: &mut [u8], tls: &mut TlsBuffers) -> io::Result<Input>;

    /// Writes `outbox` (and the backlog first) until it is empty or the socket is full:
    /// bytes written to the socket, how it ended, write calls made.
    fn send(
        &mut self,
        outbox: &mut Outbox,
        tls: &mut TlsBuffers,
    ) -> io::Result<(usize, Flushed, u64)>;

    /// Ends the sending side once the backlog is out (TLS: after close_notify); `Blocked` if
    /// the socket is full, then it is called again when it is writable.
    fn close_write(&mut self, tls: &mut TlsBuffers) -> io::Result<Flushed>;

    /// Bytes held for the socket beyond the send queue (TLS ciphertext not yet taken).
    fn backlog(&self) -> usize;

    /// Whether a TLS handshake is in progress: input that costs CPU to process.
    fn is_handshaking(&self) -> bool;

    /// How the TLS handshake went, once it is done (`None` for plain TCP).
    fn handshake_kind(&self) -> Option<HandshakeKind>;

    /// Stops readiness events, before the wire is dropped.
    fn deregister(&mut self, registry: &mio::Registry);
}

impl<T: Transport> Wire for T {
    fn receive(&mut self, buf: &mut [u8], _: &mut TlsBuffers) -> io::Result<Input> {
        let n = self.read(buf)?;
        if n == 0 {
            return Ok(Input::End);
        }
        Ok(Input::Bytes {
            plain: n,
            raw: n,
            drained: n < buf.len(),
        })
    }

    fn send(
        &mut self,
        outbox: &mut Outbox,
        _: &mut TlsBuffers,
    ) -> io::Result<(usize, Flushed, u64)> {
        outbox.write_to(self)
    }

    fn close_write(&mut self, _: &mut TlsBuffers) -> io::Result<Flushed> {
        self.shutdown_write().map(|()| Flushed::All)
    }

    fn backlog(&self) -> usize {
        0
    }

    fn is_handshaking(&self) -> bool {
        false
    }

    fn handshake_kind(&self) -> Option<HandshakeKind> {
        None
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        Transport::deregister(self, registry);
    }
}

/// The wire of a WebSocket connection: plain TCP (4 bytes and a tag), or a boxed TLS session.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Socket {
    /// The TLS session, if this is one.
    pub(crate) fn tls(&self) -> Option<&TlsStream> {
        match self {
            Self::Tcp(_) => None,
            Self::Tls(tls) => Some(tls),
        }
    }
}

impl Wire for Socket {
    fn receive(&mut self, buf: &mut [u8], tls: &mut TlsBuffers) -> io::Result<Input> {
        match self {
            Self::Tcp(socket) => socket.receive(buf, tls),
            Self::Tls(session) => session.receive(buf, tls),
        }
    }

    fn send(
        &mut self,
        outbox: &mut Outbox,
        tls: &mut TlsBuffers,
    ) -> io::Result<(usize, Flushed, u64)> {
        match self {
            Self::Tcp(socket) => outbox.write_to(socket),
            Self::Tls(session) => session.send(outbox, tls),
        }
    }

    fn close_write(&mut self, tls: &mut TlsBuffers) -> io::Result<Flushed> {
        match self {
            Self::Tcp(socket) => socket.close_write(tls),
            Self::Tls(session) => session.close_write(tls),
        }
    }

    fn backlog(&self) -> usize {
        self.tls().map_or(0, TlsStream::backlog)
    }

    fn is_handshaking(&self) -> bool {
        self.tls().is_some_and(TlsStream::is_handshaking)
    }

    fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls().and_then(TlsStream::handshake_kind)
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        match self {
            Self::Tcp(socket) => Transport::deregister(socket, registry),
            Self::Tls(session) => {
                let _ = registry.deregister(session.socket_mut());
            }
        }
    }
}
