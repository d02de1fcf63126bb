//! One non-blocking connection to Redis, driven by the reactor: connect, queue commands
//! (pipelined: everything queued in a loop iteration leaves in one write), read what Redis
//! sends back as RESP frames, and go down on any failure so that the owner reconnects.
//!
//! Owns the socket and its two buffers. It never blocks, never interprets a reply (that is
//! the cluster's business) and never buffers more than `MAX_INPUT` of an incomplete reply.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::resp::{self, Frame};

/// Most bytes of incomplete input kept; a reply larger than this is a broken link.
const MAX_INPUT: usize = 64 << 20;

/// Reads per link per loop iteration: a busy bus cannot keep the loop from everything else
/// (what is left is read in the next iteration).
const READS_PER_TURN: usize = 8;

/// Largest buffer kept once empty; a larger one is freed.
const KEEP_BUFFER: usize = 64 << 10;

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No socket; the owner decides when to try again.
    Down,
    /// `connect` was called; waiting for the socket to become writable.
    Connecting,
    /// Connected: commands flow.
    Up,
}

/// One connection to a Redis server.
#[derive(Debug)]
pub(crate) struct Link {
    addr: SocketAddr,
    token: Token,
    stream: Option<TcpStream>,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    readable: bool,
    writable: bool,
}

impl Link {
    pub(crate) fn new(addr: SocketAddr, token: Token) -> Self {
        Self {
            addr,
            token,
            stream: None,
            phase: Phase::Down,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            readable: false,
            writable: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts connecting (non-blocking).
    pub(crate) fn connect(&mut self, registry: &Registry) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        registry.register(
            &mut stream,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.stream = Some(stream);
        self.phase = Phase::Connecting;
        Ok(())
    }

    /// Closes the socket and forgets what was buffered either way.
    pub(crate) fn reset(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.phase = Phase::Down;
        self.input = Vec::new();
        self.output = Vec::new();
        self.written = 0;
        self.readable = false;
        self.writable = false;
    }

    /// Records readiness; true if the link just came up (it was connecting and the socket
    /// is connected).
    pub(crate) fn on_ready(&mut self, readable: bool, writable: bool) -> io::Result<bool> {
        self.readable |= readable;
        self.writable |= writable;
        if self.phase != Phase::Connecting || !(readable || writable) {
            return Ok(false);
        }
        let Some(stream) = &self.stream else {
            return Ok(false);
        };
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
        match stream.peer_addr() {
            Ok(_) => {
                self.phase = Phase::Up;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Input may be waiting: the link is up and was not read to `WouldBlock`.
    pub(crate) fn has_input(&self) -> bool {
        self.readable && self.phase == Phase::Up
    }

    /// Queues a command; it leaves at the next `flush`.
    pub(crate) fn queue(&mut self, args: &[&[u8]]) {
        resp::command(&mut self.output, args);
    }

    /// Writes what is queued, as far as the socket takes it.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        if self.phase != Phase::Up {
            return Ok(());
        }
        while self.written < self.output.len() && self.writable {
            match stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
            // A burst (a resubscription of every uid) leaves no buffer behind.
            if self.output.capacity() > KEEP_BUFFER {
                self.output = Vec::new();
            }
        }
        Ok(())
    }

    /// Reads what arrived and hands each complete frame to `on_frame`; an error means the
    /// link is broken (EOF, a socket error, bytes that are not RESP, an oversized reply).
    pub(crate) fn read(
        &mut self,
        scratch: &mut [u8],
        mut on_frame: impl FnMut(Frame),
    ) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        let mut reads = 0;
        while self.readable && self.phase == Phase::Up && reads < READS_PER_TURN {
            reads += 1;
            match stream.read(scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
            let mut used = 0;
            loop {
                match resp::next_frame(&self.input[used..]) {
                    Ok(Some((frame, len))) => {
                        used += len;
                        on_frame(frame);
                    }
                    Ok(None) => break,
                    Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
                }
            }
            self.input.drain(..used);
            if self.input.is_empty() && self.input.capacity() > KEEP_BUFFER {
                self.input = Vec::new();
            }
            if self.input.len() > MAX_INPUT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a reply larger than 64 MiB",
                ));
            }
        }
        Ok(())
    }
}
