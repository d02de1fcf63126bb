//! A scripted transport for unit tests of the endpoints: what the "client" sent, what the
//! server wrote, how much room the "socket" has, whether the write side was shut. Shared
//! through `Rc` so that a test keeps a handle while the endpoint owns the transport.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

use super::Transport;

/// One scripted client: bytes it has sent (not yet read by the server), bytes the server wrote,
/// and how much more the server may write before the "socket" is full.
#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) inbound: VecDeque<u8>,
    pub(crate) eof: bool,
    pub(crate) written: Vec<u8>,
    pub(crate) room: usize,
    pub(crate) shut: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Fake(pub(crate) Rc<RefCell<Script>>);

impl Fake {
    pub(crate) fn new() -> Self {
        Self(Rc::new(RefCell::new(Script {
            room: usize::MAX,
            ..Script::default()
        })))
    }

    /// Everything written since the last call.
    pub(crate) fn take_written(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().written)
    }

    /// The client sends `bytes`.
    pub(crate) fn push_input(&self, bytes: &[u8]) {
        self.0.borrow_mut().inbound.extend(bytes);
    }
}

impl Read for Fake {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut script = self.0.borrow_mut();
        if script.inbound.is_empty() {
            return if script.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(script.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(script.inbound.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Fake {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut script = self.0.borrow_mut();
        if script.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(script.room);
        script.room -= n;
        script.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Fake {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.borrow_mut().shut = true;
        Ok(())
    }

    fn deregister(&mut self, _: &mio::Registry) {}
}
