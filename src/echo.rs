//! The echo handler: every message goes back to its sender unchanged. This is what conformance
//! suites (Autobahn|Testsuite) and most WebSocket load tools expect of a server.

use crate::protocol::Message;
use crate::{ConnId, Context, Handler};

/// Echoes every message back to the connection that sent it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        ctx.send(conn, message);
    }
}
