//! A TLS session over one TCP socket, through rustls's unbuffered API, so that wspush owns every
//! buffer.
//!
//! Owns one connection's TLS state: the rustls session, the start of a record whose end has not
//! arrived, and ciphertext the socket has not taken yet. Input is read into the reactor's shared
//! [`TlsBuffers`] and decrypted into the endpoint's read buffer; output is encrypted from the
//! connection's queue of shared plaintext frames just before it is written, one record at a
//! time. An idle session therefore holds no buffer at all, and a backpressured one holds at most
//! the unsent part of one record (plus handshake messages). It never keeps decrypted input
//! (everything decrypted is handed over at once, so "the socket is drained" means "nothing is
//! left"), never loops on input without consuming it, and touches the socket only when asked to.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{HandshakeKind, ServerConfig};

use super::transport::Input;
use crate::hub::outbox::{Flushed, Outbox};

/// Plaintext encrypted per record (the TLS maximum): a write never leaves more than one
/// record's ciphertext behind.
const RECORD: usize = 16 << 10;

/// Room for one record's header, content type, padding and tag, with margin.
const RECORD_OVERHEAD: usize = 256;

/// The first byte of every TLS connection (a handshake record).
const HANDSHAKE_RECORD: u8 = 0x16;

/// What a client that spoke plain HTTP to the TLS port is told before the connection closes.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 44\r\nConnection: close\r\n\r\nThis port speaks TLS: use wss:// or https://\n";

/// Buffers every TLS session of one reactor shares: input is read into one, output is encrypted
/// into another. Empty until the first TLS connection uses them.
#[derive(Debug, Default)]
pub(crate) struct TlsBuffers {
    input: Vec<u8>,
    sealed: Vec<u8>,
    staged: Vec<u8>,
}

/// A server-side TLS session and its socket.
pub(crate) struct TlsStream {
    socket: TcpStream,
    session: UnbufferedServerConnection,
    /// Input held over: the start of a record, or of a handshake message spanning records.
    partial: Vec<u8>,
    /// Output the socket has not taken: ciphertext in sending order (or, after plain HTTP,
    /// the plain answer).
    unsent: Vec<u8>,
    /// Whether the first byte has been seen (and was a TLS handshake).
    started: bool,
    /// The session failed (an alert may be in `unsent`): input is discarded, nothing more is
    /// encrypted.
    failed: bool,
    /// The peer sent close_notify: the next read reports the end of input.
    peer_closed: bool,
    /// Our close_notify is in `unsent`.
    notified: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .field("handshaking", &self.session.is_handshaking())
            .field("partial", &self.partial.len())
            .field("unsent", &self.unsent.len())
            .finish_non_exhaustive()
    }
}

/// A TLS failure, as the endpoint sees it: `InvalidData` with what went wrong.
fn tls_error(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl TlsStream {
    /// A session that will handshake with `config` over `socket`.
    pub(crate) fn new(socket: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let session = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        Ok(Self {
            socket,
            session,
            partial: Vec::new(),
            unsent: Vec::new(),
            started: false,
            failed: false,
            peer_closed: false,
            notified: false,
        })
    }

    /// The socket, for (de)registration.
    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether the TLS handshake is still going on (its input is what costs CPU).
    pub(crate) fn is_handshaking(&self) -> bool {
        !self.failed && self.session.is_handshaking()
    }

    /// How the handshake went, once it is done.
    pub(crate) fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.session.handshake_kind()
    }

    /// Output held for the socket.
    pub(crate) fn backlog(&self) -> usize {
        self.unsent.len()
    }

    /// Reads once from the socket and decrypts what arrived into `plain` (at most
    /// `plain.len()` bytes of ciphertext are read, so the plaintext always fits). A TLS failure
    /// is `InvalidData`; the alert for the peer, if any, is then in the backlog.
    pub(crate) fn receive(&mut self, plain: &mut [u8], bufs: &mut TlsBuffers) -> io::Result<Input> {
        if self.peer_closed {
            return Ok(Input::End);
        }
        let limit = plain.len();
        let held = self.partial.len();
        if held >= limit {
            self.failed = true;
            return Err(tls_error("a TLS message larger than the read buffer"));
        }
        if bufs.input.len() < limit {
            bufs.input.resize(limit, 0);
        }
        bufs.input[..held].copy_from_slice(&self.partial);
        let raw = match self.socket.read(&mut bufs.input[held..limit]) {
            Ok(0) => return Ok(Input::End),
            Ok(n) => n,
            Err(error) => return Err(error),
        };
        let drained = held + raw < limit;
        if self.failed {
            // Only waiting for the peer to go: nothing it sends matters now.
            return Ok(Input::Bytes {
                plain: 0,
                raw,
                drained,
            });
        }
        if !self.started {
            self.started = true;
            if bufs.input[0] != HANDSHAKE_RECORD {
                self.failed = true;
                if bufs.input[0].is_ascii_uppercase() {
                    self.unsent.extend_from_slice(PLAIN_HTTP_ANSWER);
                    return Err(tls_error("plain HTTP on the TLS port"));
                }
                return Err(tls_error(format_args!(
                    "not a TLS handshake (first byte {:#04x})",
                    bufs.input[0]
                )));
            }
        }
        let end = held + raw;
        let (decrypted, used) = self
            .process(&mut bufs.input[..end], plain)
            .inspect_err(|_| self.failed = true)?;
        self.partial.clear();
        self.partial.extend_from_slice(&bufs.input[used..end]);
        if self.partial.is_empty() {
            // Nothing held over: hold no buffer either.
            self.partial = Vec::new();
        }
        Ok(Input::Bytes {
            plain: decrypted,
            raw,
            // After close_notify, the next read reports the end: ask for it.
            drained: drained && !self.peer_closed,
        })
    }

    /// Runs rustls over `input` until it needs more: plaintext goes to `plain`, handshake
    /// messages and alerts to `unsent`. Returns the plaintext length and the input consumed.
    fn process(&mut self, input: &mut [u8], plain: &mut [u8]) -> io::Result<(usize, usize)> {
        let mut used = 0;
        let mut decrypted = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.session.process_tls_records(&mut input[used..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.failed = true;
                    self.collect_alert();
                    return Err(tls_error(error));
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let payload = record.map_err(tls_error)?.payload;
                        let Some(room) = plain.get_mut(decrypted..decrypted + payload.len()) else {
                            // Plaintext is never longer than the ciphertext it came from.
                            return Err(tls_error("decrypted more than was read"));
                        };
                        room.copy_from_slice(payload);
                        decrypted += payload.len();
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.unsent, |out| encode.encode(out))?;
                    true
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // Queued in `unsent`, which the next flush writes before anything else.
                    transmit.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    true
                }
                ConnectionState::Closed => false,
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => false,
                _ => {
                    // Early data is never enabled, so it never arrives.
                    self.failed = true;
                    return Err(tls_error("unexpected TLS state"));
                }
            };
            used += discard;
            if !more {
                return Ok((decrypted, used));
            }
        }
    }

    /// After a failure: moves the alert rustls prepared, if any, into `unsent`.
    fn collect_alert(&mut self) {
        for _ in 0..4 {
            let status = self.session.process_tls_records(&mut []);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if encode_into(&mut self.unsent, |out| encode.encode(out)).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// Writes what is unsent, then encrypts and writes queued frames a record at a time, until
    /// everything is out or the socket is full. Returns bytes written, how it ended, and the
    /// write calls made. Plaintext queued before the handshake completed (an HTTP error answer
    /// from a timeout, say) cannot be sent and is dropped.
    pub(crate) fn send(
        &mut self,
        outbox: &mut Outbox,
        bufs: &mut TlsBuffers,
    ) -> io::Result<(usize, Flushed, u64)> {
        let mut written = 0;
        let mut calls = 0;
        loop {
            if !self.unsent.is_empty() {
                calls += 1;
                match self.socket.write(&self.unsent) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        written += n;
                        self.unsent.drain(..n);
                        if self.unsent.is_empty() {
                            self.unsent = Vec::new();
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok((written, Flushed::Blocked, calls))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if outbox.is_empty() {
                return Ok((written, Flushed::All, calls));
            }
            if self.failed || self.notified || self.session.is_handshaking() {
                outbox.clear();
                return Ok((written, Flushed::All, calls));
            }
            let chunk = stage(outbox, &mut bufs.staged);
            let sealed = self.seal(|traffic, out| traffic.encrypt(chunk, out), &mut bufs.sealed)?;
            let taken = chunk.len();
            outbox.consume(taken);
            if !self.unsent.is_empty() {
                // The session had handshake output (a ticket, a key update) to go first.
                self.unsent.extend_from_slice(&bufs.sealed[..sealed]);
                continue;
            }
            calls += 1;
            match self.socket.write(&bufs.sealed[..sealed]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    if n < sealed {
                        self.unsent.extend_from_slice(&bufs.sealed[n..sealed]);
                        return Ok((written, Flushed::Blocked, calls));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent.extend_from_slice(&bufs.sealed[..sealed]);
                    return Ok((written, Flushed::Blocked, calls));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.unsent.extend_from_slice(&bufs.sealed[..sealed]);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts with `write` into `sealed` once the session may send application data
    /// (moving handshake output it still holds into `unsent` first); returns the length.
    fn seal(
        &mut self,
        mut write: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
        sealed: &mut Vec<u8>,
    ) -> io::Result<usize> {
        if sealed.len() < RECORD + RECORD_OVERHEAD {
            sealed.resize(RECORD + RECORD_OVERHEAD, 0);
        }
        for _ in 0..8 {
            let status = self.session.process_tls_records(&mut self.partial);
            if status.discard != 0 {
                // Everything complete was processed when it was read.
                return Err(tls_error("unprocessed TLS input"));
            }
            match status.state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    return match write(&mut traffic, sealed) {
                        Ok(n) => Ok(n),
                        Err(EncryptError::InsufficientSize(size)) => {
                            sealed.resize(size.required_size, 0);
                            write(&mut traffic, sealed).map_err(tls_error)
                        }
                        Err(error) => Err(tls_error(error)),
                    };
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.unsent, |out| encode.encode(out))?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                _ => return Err(tls_error("the TLS session cannot send now")),
            }
        }
        Err(tls_error(
            "the TLS session keeps producing handshake output",
        ))
    }

    /// Queues close_notify (once) and writes the backlog; once it is all out, shuts the
    /// socket's sending side. `Blocked` while the socket is full.
    pub(crate) fn close_write(&mut self, bufs: &mut TlsBuffers) -> io::Result<Flushed> {
        if !self.notified && !self.failed && !self.session.is_handshaking() {
            self.notified = true;
            let sealed = self.seal(
                |traffic, out| traffic.queue_close_notify(out),
                &mut bufs.sealed,
            )?;
            self.unsent.extend_from_slice(&bufs.sealed[..sealed]);
        }
        let (_, flushed, _) = self.send(&mut Outbox::default(), bufs)?;
        if flushed == Flushed::All {
            self.socket.shutdown(Shutdown::Write)?;
        }
        Ok(flushed)
    }
}

/// Appends what `encode` writes to `out`, growing it to the size asked for.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + 512, 0);
    let written = match encode(&mut out[start..]) {
        Ok(n) => n,
        Err(EncodeError::InsufficientSize(size)) => {
            out.resize(start + size.required_size, 0);
            encode(&mut out[start..]).map_err(tls_error)?
        }
        Err(error) => {
            out.truncate(start);
            return Err(tls_error(error));
        }
    };
    out.truncate(start + written);
    Ok(())
}

/// Up to one record of plaintext from the front of `outbox`: the first frame itself when it
/// holds that much (or is all there is), else the first frames copied into `staged`.
fn stage<'a>(outbox: &'a Outbox, staged: &'a mut Vec<u8>) -> &'a [u8] {
    let mut frames = outbox.frames();
    let Some(first) = frames.next() else {
        return &[];
    };
    if first.len() >= RECORD || first.len() == outbox.len() {
        return &first[..first.len().min(RECORD)];
    }
    staged.clear();
    for frame in std::iter::once(first).chain(frames) {
        let take = frame.len().min(RECORD - staged.len());
        staged.extend_from_slice(&frame[..take]);
        if staged.len() == RECORD {
            break;
        }
    }
    staged
}
