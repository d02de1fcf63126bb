//! The callbacks an application implements, and the values they receive and return.
//!
//! A `Handler` is driven by the reactor thread alone; it may keep plain mutable state. Callbacks
//! must not block: everything they do goes through the `Context`, which only queues work. This
//! module holds no I/O and no state of the server's; the WebSocket endpoint calls into it.

use std::net::SocketAddr;

use crate::protocol::http::{first_header, header_values, is_token, list_items};
use crate::protocol::Message;
use crate::{CloseInfo, ConnId, Context};

/// Application callbacks, in the style of Workerman's `onConnect` / `onMessage` / `onClose`.
pub trait Handler {
    /// A client completed a valid upgrade request. Return the [`Accept`] that shapes the
    /// `101 Switching Protocols` answer (a subprotocol, extra headers; `Accept::default()` for
    /// none), or `Err` to refuse it with an HTTP status instead; a refused connection gets no
    /// `on_close`. Messages sent to `conn` here go out right after the `101`.
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        let _ = (ctx, conn, request);
        Ok(Accept::default())
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

/// What `on_open` adds to the `101 Switching Protocols` answer.
///
/// The server checks it before answering: a subprotocol the client did not offer, a header name
/// that is not an HTTP token, a value with CR, LF or NUL, or a header the handshake itself sets
/// (`Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`) is a
/// bug in the handler: the connection is refused with 500 and the reason logged at error level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    subprotocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl Accept {
    /// Answers with subprotocol `name` (`Sec-WebSocket-Protocol`), which must be one of
    /// [`Request::subprotocols`].
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocol = Some(name.into());
        self
    }

    /// Adds a header line to the answer (for example a `Set-Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The subprotocol chosen, if any.
    pub fn chosen_subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The extra headers, in the order added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
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
        first_header(self.headers, name)
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order of
    /// preference. Items that are not HTTP tokens (RFC 6455 §4.1 requires tokens) are left
    /// out, so any of these can be answered.
    pub fn subprotocols(&self) -> impl Iterator<Item = &'a str> + '_ {
        header_values(self.headers, "sec-websocket-protocol")
            .flat_map(list_items)
            .filter_map(|item| std::str::from_utf8(item).ok())
            .filter(|item| is_token(item))
    }

    /// The first subprotocol the client offered that is in `supported`, if any: the client's
    /// preference decides.
    pub fn select_subprotocol<'s>(&self, supported: &'s [String]) -> Option<&'s str> {
        self.subprotocols()
            .find_map(|offered| supported.iter().find(|s| s.as_str() == offered))
            .map(String::as_str)
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

    #[test]
    fn lists_offered_subprotocols_in_the_clients_order() {
        let headers = [
            httparse::Header {
                name: "Sec-WebSocket-Protocol",
                value: b"graphql-ws, chat.v2, not a token",
            },
            httparse::Header {
                name: "sec-websocket-protocol",
                value: b"chat.v1",
            },
        ];
        let request = Request::new("/", &headers, ([127, 0, 0, 1], 9).into());
        let offered: Vec<&str> = request.subprotocols().collect();
        assert_eq!(offered, ["graphql-ws", "chat.v2", "chat.v1"]);
        let supported = ["chat.v1".to_owned(), "chat.v2".to_owned()];
        assert_eq!(request.select_subprotocol(&supported), Some("chat.v2"));
        assert_eq!(request.select_subprotocol(&[]), None);
    }
}
