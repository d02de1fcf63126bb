//! The reference push protocol, as a `Handler`.
//!
//! A client's first text message is its uid; the server binds it and answers
//! `login success, your uid is <uid>`. Every later message is `RECIPIENT:MESSAGE`, split at the
//! first colon: `all` broadcasts MESSAGE to every bound connection (the sender included), any
//! other recipient gets MESSAGE on every connection bound to that uid. Binary messages route the
//! same way and arrive as binary. Mistakes get a text reply starting with `error: ` and the
//! connection stays usable.

use crate::protocol::Message;
use crate::uid::{validate_uid, BROADCAST_RECIPIENT};
use crate::{ConnId, Context, Handler};

/// The reference protocol handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct PushProtocol;

impl Handler for PushProtocol {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        if ctx.uid_of(conn).is_none() {
            login(ctx, conn, message);
        } else {
            route(ctx, conn, message);
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

fn route(ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
    let bytes = message.as_bytes();
    let Some(colon) = bytes.iter().position(|&b| b == b':') else {
        ctx.send(conn, "error: expected RECIPIENT:MESSAGE");
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
        ctx.broadcast(payload);
    } else if ctx.send_to_uid(recipient, payload) == 0 {
        ctx.send(conn, format!("error: uid {recipient} is offline").as_str());
    }
}
