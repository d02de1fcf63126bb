//! What the hub tells a cluster: messages sent on this node that other nodes must deliver too,
//! and uids that came online or went offline here (so that this node subscribes to them).
//!
//! The hub fills it while it delivers and binds; the cluster endpoint drains it in its flush.
//! It holds only copies of what to publish, never a socket, and is absent (`None` in the hub)
//! when the server runs alone, so a single node pays nothing for it.

use std::rc::Rc;

use crate::hub::ids::ConnId;
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
    /// Sent to a connection here if no other node holds the uid (the reference protocol's
    /// "offline" reply, which only the cluster can know to be true).
    pub(crate) notify: Option<Notify>,
}

/// A notice for the sender of a publication that nobody else received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notify {
    pub(crate) conn: ConnId,
    pub(crate) notice: String,
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
        self.publications.push(Publication {
            to,
            text,
            payload,
            notify: None,
        });
    }

    /// Attaches `notify` to the last publication if it was for `uid`; false if it was not.
    pub(crate) fn notify_last(&mut self, uid: &str, notify: Notify) -> bool {
        match self.publications.last_mut() {
            Some(last) if matches!(&last.to, Target::Uid(to) if &**to == uid) => {
                last.notify = Some(notify);
                true
            }
            _ => false,
        }
    }

    /// Whether anything waits for the cluster.
    pub(crate) fn is_empty(&self) -> bool {
        self.publications.is_empty() && self.online.is_empty() && self.offline.is_empty()
    }
}
