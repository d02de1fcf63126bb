//! The transport layer: everything that touches the operating system's sockets and limits.
//!
//! Owns the listening sockets (with their backlog), the one accept policy every listener uses
//! ([`AcceptGate`]), the [`Transport`]s and [`Wire`]s through which connection bytes cross a
//! socket (plain, or through a TLS session), and the
//! open-files limit that bounds how many connections one process can hold. It never interprets
//! the bytes it moves and knows nothing of connections' state.

mod accept;
#[cfg(test)]
mod fake;
mod tls;
mod transport;

use std::io;
use std::net::SocketAddr;

use log::{debug, warn};
use socket2::{Domain, Type};

pub(crate) use self::accept::AcceptGate;
#[cfg(test)]
pub(crate) use self::fake::Fake;
pub(crate) use self::tls::{TlsBuffers, TlsStream};
pub(crate) use self::transport::{Input, Socket, Transport, Wire};

/// Raises the soft open-files limit to the hard limit and returns the soft limit in force.
pub(crate) fn raise_open_files_limit() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            debug!("open-files limit raised to {limit}");
            usize::try_from(limit).unwrap_or(usize::MAX)
        }
        Err(error) => {
            warn!("could not read or raise the open-files limit: {error}");
            1024
        }
    }
}

/// Binds a non-blocking listener on `addr` with `backlog` pending connections.
pub(crate) fn bind_listener(
    addr: SocketAddr,
    backlog: u32,
    send_buffer: Option<usize>,
    reuse_port: bool,
) -> io::Result<mio::net::TcpListener> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit this: pushed messages are small and must not wait for ACKs.
    socket.set_tcp_nodelay(true)?;
    // And this: a fixed send buffer, instead of one the kernel grows for a peer that does
    // not read.
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
