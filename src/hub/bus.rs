//! What the hub tells a cluster: messages sent on this node that other nodes must deliver too,
//! and uids that came online or went offline here (so that this node subscribes to them).
//!
//! The hub fills it while it delivers and binds; the cluster endpoint drains it in its flush.
//! It holds only copies of what to publish, never a socket, and is absent (`None` in the hub)
//! when the server runs alone, so a single node pays nothing for it.
//!
//! It also keeps the *surveys*: questions to the other nodes that hold a uid (how many
//! connections a message reached, how many a uid has, how many a kick closed), whose answers
//! the cluster gathers and the push API waits for, up to `SURVEY_TIMEOUT`.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::hub::ids::ConnId;
use crate::protocol::Message;

/// Whom a publication is for, on every other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Every connection of one uid.
    Uid(Rc<str>),
    /// Every bound connection.
    All,
    /// The members of a group, but those excluded.
    Group(Rc<str>, Vec<String>),
}

/// A change of group membership made on this node, for Redis and the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupChange {
    Join(Rc<str>, Rc<str>),
    Leave(Rc<str>, Rc<str>),
    Delete(Rc<str>),
}

/// What a publication asks of the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// Deliver a text message.
    Text(Vec<u8>),
    /// Deliver a binary message.
    Binary(Vec<u8>),
    /// Say how many connections the uid has.
    Presence,
    /// Close the uid's connections with this code and reason.
    Close(u16, String),
}

/// Something sent on this node that the other nodes must act on too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publication {
    pub(crate) to: Target,
    pub(crate) what: What,
    /// Sent to a connection here if no other node holds the uid (the reference protocol's
    /// "offline" reply, which only the cluster can know to be true).
    pub(crate) notify: Option<Notify>,
    /// The survey whose answers the receiving nodes send back.
    pub(crate) survey: Option<u64>,
}

/// Longest a survey waits for the other nodes' answers; then it is answered as partial.
pub(crate) const SURVEY_TIMEOUT: Duration = Duration::from_millis(200);

/// A question to the nodes that hold a uid, and what came back so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Survey {
    pub(crate) started: Duration,
    /// Nodes other than this one that hold the uid, once Redis said (the PUBLISH reply).
    pub(crate) expected: Option<u64>,
    /// Nodes that answered.
    pub(crate) answered: u64,
    /// Of those, nodes that hold none of the uid's connections (they linger on its channel).
    pub(crate) empty: u64,
    /// Connections reached (or counted, or closed) on every node, this one included.
    pub(crate) connections: u64,
    /// Connections that dropped the message (queue full).
    pub(crate) dropped: u64,
    /// Whether this node holds the uid.
    pub(crate) here: bool,
    /// Complete: every expected node answered, or the timeout passed (`partial`).
    pub(crate) done: bool,
    pub(crate) partial: bool,
}

impl Survey {
    /// The nodes that hold the uid, as far as is known: this one if it does, and every other
    /// node on the uid's channel except those that answered they hold none of it.
    pub(crate) fn nodes(&self) -> u64 {
        let others = self
            .expected
            .unwrap_or(self.answered)
            .saturating_sub(self.empty);
        others + u64::from(self.here)
    }
}

/// A notice for the sender of a publication that nobody else received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notify {
    pub(crate) conn: ConnId,
    pub(crate) notice: String,
}

/// Publications and presence changes since the cluster last drained them, and the surveys.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub(crate) publications: Vec<Publication>,
    /// Uids whose first local connection was bound.
    pub(crate) online: Vec<Rc<str>>,
    /// Uids whose last local connection was unbound.
    pub(crate) offline: Vec<Rc<str>>,
    /// Memberships changed here.
    pub(crate) group_changes: Vec<GroupChange>,
    /// Surveys under way or answered, by id (kept across drains).
    pub(crate) surveys: HashMap<u64, Survey>,
    next_survey: u64,
    /// A survey was completed since the push API last looked.
    pub(crate) surveys_done: bool,
}

impl Outbound {
    /// Queues `message` for the other nodes.
    pub(crate) fn publish(&mut self, to: Target, message: &Message<'_>) {
        let (text, payload) = match message {
            Message::Text(text) => (true, text.as_bytes().to_vec()),
            Message::Binary(bytes) => (false, bytes.to_vec()),
        };
        let what = if text {
            What::Text(payload)
        } else {
            What::Binary(payload)
        };
        self.publications.push(Publication {
            to,
            what,
            notify: None,
            survey: None,
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

    /// Starts a survey about the last publication (which must be for a uid), with what this
    /// node counted itself; its id.
    pub(crate) fn survey_last(&mut self, here: u64, dropped: u64, now: Duration) -> Option<u64> {
        let last = self.publications.last_mut()?;
        if !matches!(last.to, Target::Uid(_)) {
            return None;
        }
        self.next_survey += 1;
        let id = self.next_survey;
        last.survey = Some(id);
        self.surveys.insert(
            id,
            Survey {
                started: now,
                expected: None,
                answered: 0,
                empty: 0,
                connections: here,
                dropped,
                here: here + dropped > 0,
                done: false,
                partial: false,
            },
        );
        Some(id)
    }

    /// Queues a question (presence, a kick) for the other nodes holding `uid`, surveyed.
    pub(crate) fn ask(&mut self, uid: Rc<str>, what: What, here: u64, now: Duration) -> u64 {
        self.publications.push(Publication {
            to: Target::Uid(uid),
            what,
            notify: None,
            survey: None,
        });
        self.survey_last(here, 0, now).unwrap_or_default()
    }

    /// Marks a survey complete.
    pub(crate) fn finish(&mut self, id: u64, partial: bool) {
        if let Some(survey) = self.surveys.get_mut(&id) {
            if !survey.done {
                survey.done = true;
                survey.partial = partial;
                self.surveys_done = true;
            }
        }
    }

    /// Takes a complete survey's result.
    pub(crate) fn take_result(&mut self, id: u64) -> Option<Survey> {
        match self.surveys.get(&id) {
            Some(survey) if survey.done => self.surveys.remove(&id),
            _ => None,
        }
    }

    /// Whether anything waits for the cluster.
    pub(crate) fn is_empty(&self) -> bool {
        self.publications.is_empty()
            && self.online.is_empty()
            && self.offline.is_empty()
            && self.group_changes.is_empty()
    }
}
