//! The reference push protocol, as a `Handler`.
//!
//! A client's first text message is its uid; the server binds it and answers
//! `login success, your uid is <uid>`. Every later message is `RECIPIENT:MESSAGE`, split at the
//! first colon: `all` broadcasts MESSAGE to every bound connection (the sender included), any
//! other recipient gets MESSAGE on every connection bound to that uid. Binary messages route the
//! same way and arrive as binary. Mistakes get a text reply starting with `error: ` and the
//! connection stays usable.
//!
//! With an auth secret, the uid is not taken on trust: the client proves it with a signed URL
//! (see [`crate::auth`]), the uid is bound during the handshake, and the login line is sent at
//! once; the client cannot log in again by message.
//!
//! [`ClientRouting`] decides what clients may send to others: everything (the default without
//! signed logins), uids only, or nothing (the default with signed logins).

use crate::auth::{unix_now, verify_login, LoginError};
use crate::protocol::CloseCode;
use crate::protocol::Message;
use crate::uid::{validate_uid, BROADCAST_RECIPIENT};
use crate::{Accept, ConnId, Context, Handler, Rejection, Request};

/// What clients of the reference protocol may send to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRouting {
    /// `uid:message` and `all:message` (the reference protocol as published).
    All,
    /// `uid:message` only: broadcasting is for the backend (the push API).
    Uids,
    /// Nothing: clients only receive; backends push through the API.
    None,
}

impl ClientRouting {
    /// The policy in words, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::All => "clients may send to any uid and to all",
            Self::Uids => "clients may send to any uid, not to all",
            Self::None => "clients only receive; only the push API sends",
        }
    }
}

/// The reference protocol handler.
#[derive(Debug, Clone)]
pub struct PushProtocol {
    auth_secret: Option<Vec<u8>>,
    auth_max_ttl: u64,
    routing: ClientRouting,
    close_refused_logins: bool,
}

/// The close code a refused signed login gets with `with_login_refusal_by_close`: 4001 the
/// URL expired (or expires too far ahead: mint a fresh one), 4003 the signature does not match
/// (forged, or signed with another secret), 4000 the URL is malformed or incomplete.
pub fn refusal_code(error: &LoginError) -> CloseCode {
    match error {
        LoginError::Expired | LoginError::TooFarAhead => CloseCode(4001),
        LoginError::BadSignature => CloseCode(4003),
        LoginError::Missing(_) | LoginError::Malformed(_) | LoginError::InvalidUid(_) => {
            CloseCode(4000)
        }
    }
}

/// The longest a signed login URL may be valid ahead, by default: one hour.
pub const DEFAULT_AUTH_MAX_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for PushProtocol {
    fn default() -> Self {
        Self {
            auth_secret: None,
            auth_max_ttl: DEFAULT_AUTH_MAX_TTL.as_secs(),
            routing: ClientRouting::All,
            close_refused_logins: false,
        }
    }
}

impl PushProtocol {
    /// The reference protocol: the first message is the uid, taken on trust.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reference protocol with signed logins: every connection must carry a valid
    /// `?uid=…&expires=…&sig=…` proof made with `secret`, or it is refused with 403. Proofs
    /// valid for more than [`DEFAULT_AUTH_MAX_TTL`] ahead are refused (see `with_auth_max_ttl`).
    /// Clients only receive ([`ClientRouting::None`]) unless `with_routing` says otherwise: a
    /// signed identity that may message anyone is no protection.
    ///
    /// # Panics
    /// If `secret` is empty: anyone could then sign any uid.
    pub fn with_auth_secret(secret: impl Into<Vec<u8>>) -> Self {
        let secret = secret.into();
        assert!(
            !secret.is_empty(),
            "an empty auth secret lets anyone forge any uid"
        );
        Self {
            auth_secret: Some(secret),
            routing: ClientRouting::None,
            ..Self::default()
        }
    }

    /// Sets what clients may send to others.
    pub fn with_routing(mut self, routing: ClientRouting) -> Self {
        self.routing = routing;
        self
    }

    /// Refuses bad signed logins by completing the handshake and closing with a 4xxx code
    /// ([`refusal_code`]) and the reason, instead of an HTTP 403 that a browser's `WebSocket`
    /// cannot see (it reports only a failed connection).
    pub fn with_login_refusal_by_close(mut self) -> Self {
        self.close_refused_logins = true;
        self
    }

    /// What clients may send to others.
    pub fn routing(&self) -> ClientRouting {
        self.routing
    }

    /// Refuses signed logins that expire more than `max_ttl` ahead.
    pub fn with_auth_max_ttl(mut self, max_ttl: std::time::Duration) -> Self {
        self.auth_max_ttl = max_ttl.as_secs();
        self
    }
}

impl Handler for PushProtocol {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        let Some(secret) = &self.auth_secret else {
            return Ok(Accept::default());
        };
        let query = request.query().unwrap_or("");
        let uid = match verify_login(secret, query, unix_now(), self.auth_max_ttl) {
            Ok(uid) => uid,
            Err(error) if self.close_refused_logins => {
                // A browser cannot read a handshake's HTTP status; it can read a close code.
                ctx.close(conn, refusal_code(&error), &error.to_string());
                return Ok(Accept::default());
            }
            Err(error) => return Err(Rejection::new(403, error.to_string())),
        };
        ctx.bind_uid(conn, &uid);
        ctx.send(conn, format!("login success, your uid is {uid}").as_str());
        Ok(Accept::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        if ctx.uid_of(conn).is_none() {
            login(ctx, conn, message);
        } else {
            route(ctx, conn, message, self.auth_secret.is_some(), self.routing);
        }
    }
}

fn login(ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
    let Message::Text(uid) = message else {
        ctx.send(conn, "error: log in first: send your uid as a text message");
        return;
    };
    match validate_uid(uid) {
        Ok(()) => {
            ctx.bind_uid(conn, uid);
            ctx.send(conn, format!("login success, your uid is {uid}").as_str());
        }
        Err(reason) => {
            ctx.send(conn, format!("error: invalid uid: {reason}").as_str());
        }
    }
}

fn route(
    ctx: &mut Context<'_>,
    conn: ConnId,
    message: Message<'_>,
    signed_login: bool,
    routing: ClientRouting,
) {
    if routing == ClientRouting::None {
        ctx.send(
            conn,
            "error: clients of this server only receive; messages come from the server",
        );
        return;
    }
    let bytes = message.as_bytes();
    let Some(colon) = bytes.iter().position(|&b| b == b':') else {
        if signed_login {
            ctx.send(
                conn,
                "error: logins are signed; this connection is already logged in, \
                 send RECIPIENT:MESSAGE",
            );
        } else {
            ctx.send(conn, "error: expected RECIPIENT:MESSAGE");
        }
        return;
    };
    let Ok(recipient) = std::str::from_utf8(&bytes[..colon]) else {
        ctx.send(conn, "error: recipient is not valid UTF-8");
        return;
    };
    if recipient.is_empty() {
        ctx.send(conn, "error: recipient is empty");
        return;
    }
    // The colon is ASCII, so the text after it is still valid UTF-8.
    let payload = match message {
        Message::Text(text) => Message::Text(&text[colon + 1..]),
        Message::Binary(bytes) => Message::Binary(&bytes[colon + 1..]),
    };
    if recipient == BROADCAST_RECIPIENT {
        if routing == ClientRouting::Uids {
            ctx.send(conn, "error: clients of this server may not send to all");
            return;
        }
        ctx.broadcast(payload);
    } else {
        let delivery = ctx.deliver_to_uid(recipient, payload);
        if delivery.queued == 0 && delivery.dropped == 0 {
            // In a cluster another node may hold the uid: the cluster knows.
            let notice = format!("error: uid {recipient} is offline");
            ctx.tell_if_offline(recipient, conn, &notice);
        } else if delivery.queued == 0 {
            let notice = format!("error: uid {recipient} is not keeping up: message dropped");
            ctx.send(conn, notice.as_str());
        }
    }
}
