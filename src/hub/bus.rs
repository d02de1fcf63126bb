//! What the hub tells a cluster: messages sent on this node that other nodes must deliver too,
//! and uids that came online or went offline here (so that this node subscribes to them).
//!
//! The hub fills it while it delivers and binds; the cluster endpoint drains it in its flush.
//! It holds only copies of what to publish, never a socket, and is absent (`None` in the hub)
//! when the server runs alone, so a single node pays nothing for it.

use std::rc::Rc;

use crate::protocol::Message;

/// Whom a publication is for, on every other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Every connection of one uid.
    Uid(Rc<str>),
    /// Every bound connection.
    All,
}

/// A message sent on this node, to be delivered by the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publication {
    pub(crate) to: Target,
    /// Text (true) or binary.
    pub(crate) text: bool,
    pub(crate) payload: Vec<u8>,
}

/// Publications and presence changes since the cluster last drained them.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub(crate) publications: Vec<Publication>,
    /// Uids whose first local connection was bound.
    pub(crate) online: Vec<Rc<str>>,
    /// Uids whose last local connection was unbound.
    pub(crate) offline: Vec<Rc<str>>,
}

impl Outbound {
    /// Queues `message` for the other nodes.
    pub(crate) fn publish(&mut self, to: Target, message: &Message<'_>) {
        let (text, payload) = match message {
            Message::Text(text) => (true, text.as_bytes().to_vec()),
            Message::Binary(bytes) => (false, bytes.to_vec()),
        };
        self.publications.push(Publication { to, text, payload });
    }

    /// Whether anything waits for the cluster.
    pub(crate) fn is_empty(&self) -> bool {
        self.publications.is_empty() && self.online.is_empty() && self.offline.is_empty()
    }
}
