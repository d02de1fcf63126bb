//! The callbacks an application implements, and the values they receive.
//!
//! A `Handler` is driven by the reactor thread alone; it may keep plain mutable state. Callbacks
//! must not block: everything they do goes through the `Context`, which only queues work.

use std::net::SocketAddr;

use crate::protocol::{CloseCode, Message};
use crate::{ConnId, Context};

/// Application callbacks, in the style of Workerman's `onConnect` / `onMessage` / `onClose`.
pub trait Handler {
    /// A client completed a valid upgrade request. Return `Err` to refuse it with an HTTP
    /// status instead of `101`; a refused connection gets no `on_close`.
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<(), Rejection> {
        let _ = (ctx, conn, request);
        Ok(())
    }

    /// A complete message arrived. The payload is borrowed and valid only during the call.
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>);

    /// An open connection closed, whoever started it. Its uid binding is already removed from
    /// the registry, but `ctx.uid_of(conn)` still tells which uid it had.
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, close: &CloseInfo) {
        let _ = (ctx, conn, close);
    }
}

/// A refusal of the opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status sent back (for example 401 or 403).
    pub status: u16,
    /// One line of explanation, sent as the response body.
    pub reason: String,
}

impl Rejection {
    /// A refusal with `status` and `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Who started a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The client sent a close frame, or vanished.
    Client,
    /// The server closed it: a protocol error, a timeout, a policy, a shutdown or `ctx.close`.
    Server,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the client's, the server's, 1005 for a close frame without a code, or
    /// 1006 when the TCP connection dropped without a close frame.
    pub code: CloseCode,
    /// The reason that went with the code, possibly empty.
    pub reason: String,
    /// Who started it.
    pub initiator: Initiator,
}

/// The upgrade request of a new connection, as `on_open` sees it.
#[derive(Debug)]
pub struct Request<'a> {
    target: &'a str,
    headers: &'a [httparse::Header<'a>],
    peer: SocketAddr,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        target: &'a str,
        headers: &'a [httparse::Header<'a>],
        peer: SocketAddr,
    ) -> Self {
        Self {
            target,
            headers,
            peer,
        }
    }

    /// The path of the request target, without the query.
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The query string after `?`, undecoded, if there is one.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first header named `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header as (name, value), in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_query_and_finds_headers_in_any_case() {
        let headers = [httparse::Header {
            name: "Origin",
            value: b"https://example.com",
        }];
        let request = Request::new("/ws?uid=7&x=1", &headers, ([127, 0, 0, 1], 9).into());
        assert_eq!(request.path(), "/ws");
        assert_eq!(request.query(), Some("uid=7&x=1"));
        assert_eq!(request.header("origin"), Some(&b"https://example.com"[..]));
        assert_eq!(request.headers().count(), 1);
    }
}
