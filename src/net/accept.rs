//! The accept policy every listener follows.
//!
//! Accept until the kernel's queue is empty; stop while the endpoint has no room, leaving
//! further clients in the backlog; on descriptor or memory exhaustion pause, log once, and let
//! the endpoint retry when a connection closes or at its next sweep. Never accept-and-close in
//! a loop, never spin.

use std::io;
use std::net::SocketAddr;

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};

/// One listener's accept state: whether accepting is paused, and whether the pause for
/// exhaustion has been logged.
#[derive(Debug)]
pub(crate) struct AcceptGate {
    /// Which listener, for the log line.
    what: &'static str,
    paused: bool,
    exhausted: bool,
}

impl AcceptGate {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            paused: false,
            exhausted: false,
        }
    }

    /// Whether accepting stopped with clients possibly left in the backlog: retry when a slot
    /// frees.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// The next connection to admit, or `None` when the queue is empty, `has_room` is false,
    /// or the process is out of descriptors or memory.
    pub(crate) fn next(
        &mut self,
        listener: &TcpListener,
        has_room: bool,
    ) -> Option<(TcpStream, SocketAddr)> {
        if !has_room {
            self.paused = true;
            return None;
        }
        loop {
            match listener.accept() {
                Ok(accepted) => {
                    self.paused = false;
                    self.exhausted = false;
                    return Some(accepted);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.paused = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhausted(&e) => {
                    if !self.exhausted {
                        warn!(
                            "{} accept paused: {e}; resuming when a connection closes",
                            self.what
                        );
                    }
                    self.exhausted = true;
                    self.paused = true;
                    return None;
                }
                // A client that reset before we took it, and the like: only that client lost.
                Err(e) => debug!("{} accept failed: {e}", self.what),
            }
        }
    }
}

fn is_resource_exhausted(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
