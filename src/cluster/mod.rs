//! The cluster endpoint: this node's share of a cluster whose nodes meet in Redis pub/sub.
//!
//! Routing is by uid: a node subscribes `<prefix>:u:<uid>` while it holds a connection of that
//! uid (and for `ClusterConfig::linger` after its last one closed), so a message for a uid
//! reaches only the nodes that hold it; `<prefix>:all` carries broadcasts. A send delivers
//! here first (the hub does that), then is published in the envelope of `envelope`, with this
//! node's id so that its own echo is skipped. Messages from the bus are delivered here only,
//! never published again.
//!
//! Each Redis server (`--redis`, one or several) gets two links (see `shard`). With several,
//! a uid's channel lives on the server `shard::shard_of` picks, and broadcasts and survey
//! answers travel on the first. A link that fails is reconnected with backoff and jitter; the
//! subscription link then subscribes every local uid of its server again, in batches. While Redis is unreachable this node goes on serving its own
//! connections, and what it would have published is counted as lost (at-most-once, like any
//! pub/sub). Owns the links and the subscription set; it must never block the loop, and never
//! trust what arrives on the bus (malformed data is counted and skipped).

pub mod envelope;
mod link;
pub mod resp;
mod shard;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use log::{debug, info, warn};
use mio::event::Event;

use self::envelope::Kind;
use self::link::{Link, Phase};
use self::resp::Frame;
use self::shard::{
    shard_of, Pending, Shard, BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, MAX_QUEUED,
};
use crate::endpoint::{Cx, Endpoint, Slot, Tokens};
use crate::hub::bus::{GroupChange, Notify, Target, What, SURVEY_TIMEOUT};
use crate::hub::stats::ClusterStats;
use crate::hub::{Hub, Recipients};
use crate::net::Socket;
use crate::protocol::Message;
use crate::{ClusterConfig, Handler};

/// Channels per SUBSCRIBE or UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 512;

/// Longest a login waits for its uid's subscription to be confirmed before its output goes
/// anyway.
const HOLD_MAX: Duration = Duration::from_secs(2);

/// Which of a server's two links a slot of this endpoint's token space is: server `i` has
/// slots `2i` (commands) and `2i + 1` (subscription).
const COMMANDS: usize = 0;
const SUBSCRIPTION: usize = 1;

/// This node's subscription to one uid's channel.
#[derive(Debug, Clone, Copy, Default)]
struct Subscription {
    /// When it ends, if the uid's last local connection has closed.
    linger: Option<Duration>,
    /// Redis confirmed it on the current subscription link, so Redis counts this node among
    /// the channel's subscribers.
    at_redis: bool,
}

/// This node in the cluster.
pub(crate) struct Cluster {
    config: ClusterConfig,
    node: u64,
    shards: Vec<Shard>,
    /// The servers' names, in order, for `shard_of`.
    names: Vec<String>,
    /// Uids this node is subscribed to (or asked to be): every local uid, plus lingering ones.
    subscribed: HashMap<Rc<str>, Subscription>,
    /// Groups whose channel this node is subscribed to: those with a member bound here.
    group_channels: HashSet<Rc<str>>,
    /// Lingers in the order they end (an entry whose uid came back, or lingers until later,
    /// is skipped when it comes up): ending them costs no pass over every subscription.
    lingers: BinaryHeap<Reverse<(Duration, Rc<str>)>>,
    /// Uids whose SUBSCRIBE is not confirmed yet, with when it was asked for: their new
    /// connections' output is held by the hub meanwhile.
    awaiting: HashMap<Rc<str>, Duration>,
    /// Uids confirmed (or given up on) this iteration, released at the flush.
    confirmed: HashSet<Rc<str>>,
    /// Uids whose groups are being loaded from Redis: their new connections' output waits
    /// for that too (so a group message sent right after the login follows what Redis says).
    loading: HashMap<Rc<str>, Duration>,
    /// Group channels newly followed for loading uids, not confirmed yet: the uids waiting.
    group_waiters: HashMap<Rc<str>, Vec<Rc<str>>>,
    /// How many group channels each loading uid still waits for.
    group_waits: HashMap<Rc<str>, usize>,
    /// The groups of each loading uid changed since its groups were asked for: the answer
    /// does not undo those changes.
    touched: HashMap<Rc<str>, HashSet<Rc<str>>>,
    /// Uids this node has said in Redis it holds (see `mark_online`, `mark_offline`).
    announced: HashSet<Rc<str>>,
    /// Membership changes made while the first server was unreachable, sent once it is back.
    unsent_changes: Vec<GroupChange>,
    /// Notices whose PUBLISH reply will never come (the link failed): sent as they are.
    unanswered: Vec<Notify>,
    /// Surveys whose PUBLISH reply will never come: answered as partial.
    unsurveyed: Vec<u64>,
    /// When the oldest survey under way times out.
    next_survey_deadline: Option<Duration>,
    stats: ClusterStats,
    /// The random state for backoff jitter.
    jitter: u64,
    /// How long a uid keeps its groups after its last connection anywhere closed.
    grace: Duration,
}

impl Cluster {
    /// Prepares the links (resolving each Redis address once); they connect at the first
    /// sweep.
    pub(crate) fn new(config: ClusterConfig, tokens: Tokens, grace: Duration) -> io::Result<Self> {
        let node = random_id();
        let mut shards = Vec::new();
        for (index, redis) in config.redis.iter().enumerate() {
            let addr: SocketAddr = (redis.host.as_str(), redis.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for Redis"))?;
            let link = |which| Link::new(addr, tokens.token(Slot::Conn(2 * index + which)));
            let name = format!("{}:{}", redis.host, redis.port);
            shards.push(Shard::new(name, link(COMMANDS), link(SUBSCRIPTION)));
        }
        let names = shards.iter().map(|shard| shard.name.clone()).collect();
        let servers: Vec<String> = config.redis.iter().map(ToString::to_string).collect();
        info!(
            "cluster: node {node:016x} on {} (channels {}:*)",
            servers.join(", "),
            config.prefix
        );
        Ok(Self {
            config,
            node,
            shards,
            names,
            subscribed: HashMap::new(),
            group_channels: HashSet::new(),
            lingers: BinaryHeap::new(),
            awaiting: HashMap::new(),
            confirmed: HashSet::new(),
            loading: HashMap::new(),
            group_waiters: HashMap::new(),
            group_waits: HashMap::new(),
            touched: HashMap::new(),
            announced: HashSet::new(),
            unsent_changes: Vec::new(),
            unanswered: Vec::new(),
            unsurveyed: Vec::new(),
            next_survey_deadline: None,
            stats: ClusterStats::default(),
            jitter: node | 1,
            grace,
        })
    }

    fn uid_channel(&self, uid: &str) -> Vec<u8> {
        format!("{}:u:{uid}", self.config.prefix).into_bytes()
    }

    fn all_channel(&self) -> Vec<u8> {
        format!("{}:all", self.config.prefix).into_bytes()
    }

    /// This node's own channel: its probes, and the answers to its surveys (on the first
    /// server).
    fn node_channel(&self) -> Vec<u8> {
        format!("{}:n:{:016x}", self.config.prefix, self.node).into_bytes()
    }

    /// The channel whose confirmation completes a subscription of server `index`.
    fn ready_channel(&self, index: usize) -> Vec<u8> {
        if index == 0 {
            self.all_channel()
        } else {
            self.node_channel()
        }
    }

    fn shard_of(&self, uid: &str) -> usize {
        shard_of(&self.names, uid)
    }

    fn group_channel(&self, group: &str) -> Vec<u8> {
        format!("{}:g:{group}", self.config.prefix).into_bytes()
    }

    /// The server a group's channel lives on.
    fn group_shard(&self, group: &str) -> usize {
        shard_of(&self.names, &format!("g:{group}"))
    }

    /// Subscribes `group`'s channel, if this node is not already; true if it was not.
    fn follow_group(&mut self, group: Rc<str>) -> bool {
        let new = self.group_channels.insert(Rc::clone(&group));
        if new {
            let index = self.group_shard(&group);
            let shard = &mut self.shards[index];
            shard
                .groups_to_unsubscribe
                .retain(|pending| *pending != group);
            shard.groups_to_subscribe.push(group);
        }
        new
    }

    /// `uid`'s groups are loaded and every group channel it waited for is confirmed (or given
    /// up on): its login may go.
    fn done_loading(&mut self, uid: &Rc<str>) {
        self.loading.remove(uid);
        self.group_waits.remove(uid);
        self.touched.remove(uid);
        if !self.awaiting.contains_key(uid) {
            self.confirmed.insert(Rc::clone(uid));
        }
    }

    /// Gives up waiting for group channel confirmations (a subscription link failed).
    fn release_group_waiters(&mut self) {
        for (_, uids) in std::mem::take(&mut self.group_waiters) {
            for uid in uids {
                if self.loading.contains_key(&uid) {
                    self.done_loading(&uid);
                }
            }
        }
    }

    /// Unsubscribes `group`'s channel when no member of it is bound here any more.
    fn unfollow_group_unless_held<T>(&mut self, hub: &Hub<T>, group: &str) {
        if !hub.holds_member_of(group) {
            if let Some(group) = self.group_channels.take(group) {
                let index = self.group_shard(&group);
                let shard = &mut self.shards[index];
                shard
                    .groups_to_subscribe
                    .retain(|pending| *pending != group);
                shard.groups_to_unsubscribe.push(group);
            }
        }
    }

    /// Queues a command on the first server, whose reply only needs to be taken.
    fn command(&mut self, args: &[&[u8]], now: Duration) {
        let shard = &mut self.shards[0];
        if shard.commands_up() {
            shard.commands.link.queue(args);
            shard.replies.push_back(Pending::plain(now));
        }
    }

    /// Publishes a membership notice (`kind` with `body`) on `channel` of server `index`.
    fn notice(&mut self, index: usize, channel: &[u8], kind: Kind, body: &[u8], now: Duration) {
        let mut payload = Vec::new();
        envelope::encode(&mut payload, self.node, kind, None, body);
        let shard = &mut self.shards[index];
        if shard.commands_up() {
            shard.commands.link.queue(&[b"PUBLISH", channel, &payload]);
            shard.replies.push_back(Pending::plain(now));
        }
    }

    /// Memberships changed here: Redis keeps them (`<prefix>:gm:<group>` holds a group's
    /// uids, `<prefix>:ug:<uid>` a uid's groups, both on the first server), the nodes that
    /// hold the uid hear of them, and this node follows the group's channel while a member
    /// is bound here.
    fn apply_group_changes<T>(&mut self, hub: &Hub<T>, changes: Vec<GroupChange>, now: Duration) {
        let prefix = self.config.prefix.clone();
        let up = self.shards[0].commands_up();
        for change in changes {
            self.touch(&change);
            if !up {
                // Redis keeps memberships: these wait for it (following groups does not).
                match &change {
                    GroupChange::Join(uid, group) if hub.holds_uid(uid) => {
                        self.follow_group(Rc::clone(group));
                    }
                    GroupChange::Leave(_, group) => self.unfollow_group_unless_held(hub, group),
                    _ => {}
                }
                self.unsent_changes.push(change);
                continue;
            }
            match change {
                GroupChange::Join(uid, group) => {
                    // A uid offline everywhere (no online count) gets the grace period to
                    // connect, as on a single node.
                    const JOIN: &[u8] = b"redis.call('SADD', KEYS[1], ARGV[1]) \
                        if redis.call('EXISTS', KEYS[2]) == 0 then \
                        redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX') end return 1";
                    let (members, groups, online) = (
                        format!("{prefix}:gm:{group}"),
                        format!("{prefix}:ug:{uid}"),
                        format!("{prefix}:uo:{uid}"),
                    );
                    let grace = self.grace_millis();
                    self.command(&[b"SADD", members.as_bytes(), uid.as_bytes()], now);
                    self.command(
                        &[
                            b"EVAL",
                            JOIN,
                            b"2",
                            groups.as_bytes(),
                            online.as_bytes(),
                            group.as_bytes(),
                            grace.as_bytes(),
                        ],
                        now,
                    );
                    let channel = self.uid_channel(&uid);
                    let shard = self.shard_of(&uid);
                    self.notice(shard, &channel, Kind::Join, group.as_bytes(), now);
                    if hub.holds_uid(&uid) {
                        self.follow_group(group);
                    }
                }
                GroupChange::Leave(uid, group) => {
                    let (members, groups) =
                        (format!("{prefix}:gm:{group}"), format!("{prefix}:ug:{uid}"));
                    self.command(&[b"SREM", members.as_bytes(), uid.as_bytes()], now);
                    self.command(&[b"SREM", groups.as_bytes(), group.as_bytes()], now);
                    let channel = self.uid_channel(&uid);
                    let shard = self.shard_of(&uid);
                    self.notice(shard, &channel, Kind::Leave, group.as_bytes(), now);
                    self.unfollow_group_unless_held(hub, &group);
                }
                GroupChange::Delete(group) => {
                    // Every member's list of groups loses it, then the group goes.
                    const DELETE: &[u8] = b"local members = redis.call('SMEMBERS', KEYS[1]) \
                        for _, uid in ipairs(members) do \
                        redis.call('SREM', ARGV[1] .. uid, ARGV[2]) end \
                        redis.call('DEL', KEYS[1]) return #members";
                    let members = format!("{prefix}:gm:{group}");
                    let groups_of = format!("{prefix}:ug:");
                    self.command(
                        &[
                            b"EVAL",
                            DELETE,
                            b"1",
                            members.as_bytes(),
                            groups_of.as_bytes(),
                            group.as_bytes(),
                        ],
                        now,
                    );
                    let channel = self.group_channel(&group);
                    let shard = self.group_shard(&group);
                    self.notice(shard, &channel, Kind::DeleteGroup, b"", now);
                    if let Some(group) = self.group_channels.take(&group) {
                        self.shards[shard].groups_to_unsubscribe.push(group);
                    }
                }
            }
        }
    }

    /// The group grace period in milliseconds (at least 1), as Redis's PEXPIRE takes it.
    fn grace_millis(&self) -> String {
        self.grace.as_millis().max(1).to_string()
    }

    /// Says in Redis that `uid` is online on this node (`<prefix>:uo:<uid>` is the set of
    /// nodes holding it; adding again is harmless), so its groups do not expire.
    fn mark_online(&mut self, uid: &str, now: Duration) {
        let key = format!("{}:ug:{uid}", self.config.prefix);
        let online = format!("{}:uo:{uid}", self.config.prefix);
        let node = format!("{:016x}", self.node);
        self.command(&[b"SADD", online.as_bytes(), node.as_bytes()], now);
        self.command(&[b"PERSIST", key.as_bytes()], now);
        self.announced.insert(Rc::from(uid));
    }

    /// Says in Redis that `uid` is no longer online on this node; the last node holding it
    /// starts its groups' grace period. While the link is down it stays `announced`, and is
    /// said at the reconnect.
    fn mark_offline(&mut self, uid: &str, now: Duration) {
        const OFFLINE: &[u8] = b"redis.call('SREM', KEYS[1], ARGV[2]) \
            if redis.call('SCARD', KEYS[1]) == 0 then \
            redis.call('PEXPIRE', KEYS[2], ARGV[1]) end return 1";
        if !self.shards[0].commands_up() {
            return;
        }
        self.announced.remove(uid);
        let online = format!("{}:uo:{uid}", self.config.prefix);
        let groups = format!("{}:ug:{uid}", self.config.prefix);
        let grace = self.grace_millis();
        let node = format!("{:016x}", self.node);
        self.command(
            &[
                b"EVAL",
                OFFLINE,
                b"2",
                online.as_bytes(),
                groups.as_bytes(),
                grace.as_bytes(),
                node.as_bytes(),
            ],
            now,
        );
    }

    /// Notes a membership change for the uids whose groups are being loaded.
    fn touch(&mut self, change: &GroupChange) {
        if self.loading.is_empty() {
            return;
        }
        match change {
            GroupChange::Join(uid, group) | GroupChange::Leave(uid, group) => {
                if self.loading.contains_key(uid) {
                    let groups = self.touched.entry(Rc::clone(uid)).or_default();
                    groups.insert(Rc::clone(group));
                }
            }
            GroupChange::Delete(group) => {
                for uid in self.loading.keys() {
                    let groups = self.touched.entry(Rc::clone(uid)).or_default();
                    groups.insert(Rc::clone(group));
                }
            }
        }
    }

    /// A uid's first connection here: it counts as online in Redis (its groups no longer
    /// expire), and its groups come from Redis.
    fn load_groups(&mut self, uid: Rc<str>, now: Duration) {
        let key = format!("{}:ug:{uid}", self.config.prefix);
        self.mark_online(&uid, now);
        let shard = &mut self.shards[0];
        if shard.commands_up() {
            shard.commands.link.queue(&[b"SMEMBERS", key.as_bytes()]);
            let mut pending = Pending::plain(now);
            pending.load_groups = Some(Rc::clone(&uid));
            shard.replies.push_back(pending);
            self.loading.insert(uid, now);
        }
    }

    fn link(&mut self, slot: usize) -> &mut shard::Attached {
        let shard = &mut self.shards[slot / 2];
        if slot % 2 == COMMANDS {
            &mut shard.commands
        } else {
            &mut shard.subscription
        }
    }

    /// Probes each server's subscription when it has been silent for a probe interval, and
    /// repairs it (reconnects) when a probe did not come back within one: a subscription can
    /// stop delivering without its connection failing (seen after failovers). A command link
    /// whose oldest reply is that late is reconnected too.
    fn probe(&mut self, registry: &mio::Registry, now: Duration) {
        let interval = self.config.probe_interval;
        for slot in 0..2 * self.shards.len() {
            let ready = self.shards[slot / 2].ready;
            let attached = self.link(slot);
            let late = match attached.link.phase() {
                Phase::Connecting => now.saturating_sub(attached.since) >= CONNECT_TIMEOUT,
                // A subscription Redis never confirms is as broken as a silent one.
                Phase::Up if slot % 2 == SUBSCRIPTION => {
                    !ready && now.saturating_sub(attached.since) >= interval
                }
                _ => false,
            };
            if late {
                let error = io::Error::new(io::ErrorKind::TimedOut, "no progress in time");
                self.fail(slot, &error, registry, now);
            }
        }
        for index in 0..self.shards.len() {
            let shard = &self.shards[index];
            let late_reply = shard
                .replies
                .front()
                .is_some_and(|pending| now.saturating_sub(pending.sent) >= interval);
            if late_reply && shard.commands_up() {
                self.stats.stale_repairs += 1;
                let error = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("Redis did not answer a command within {interval:?}"),
                );
                self.fail(2 * index + COMMANDS, &error, registry, now);
            }
            let node_channel = self.node_channel();
            let node = self.node;
            let shard = &mut self.shards[index];
            if !shard.ready || !shard.commands_up() {
                shard.probe_sent = None;
                continue;
            }
            match shard.probe_sent {
                Some(sent) if now.saturating_sub(sent) >= interval => {
                    self.stats.stale_repairs += 1;
                    let error = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "a probe of the subscription did not come back within {interval:?}"
                        ),
                    );
                    self.fail(2 * index + SUBSCRIPTION, &error, registry, now);
                }
                Some(_) => {}
                None if now.saturating_sub(shard.heard_at) >= interval => {
                    let mut probe = Vec::new();
                    envelope::encode(&mut probe, node, Kind::Probe, None, b"");
                    shard
                        .commands
                        .link
                        .queue(&[b"PUBLISH", &node_channel, &probe]);
                    shard.replies.push_back(Pending::plain(now));
                    shard.probe_sent = Some(now);
                }
                None => {}
            }
        }
    }

    /// Takes what the hub gathered: presence changes become (un)subscriptions, publications
    /// become PUBLISH commands.
    fn take_outbound<T>(&mut self, hub: &mut Hub<T>, now: Duration) {
        let Some(bus) = hub.bus.as_mut() else {
            return;
        };
        let publications = std::mem::take(&mut bus.publications);
        let online = std::mem::take(&mut bus.online);
        let offline = std::mem::take(&mut bus.offline);
        let mut changes = std::mem::take(&mut self.unsent_changes);
        changes.append(&mut bus.group_changes);
        self.apply_group_changes(hub, changes, now);
        for uid in &online {
            self.load_groups(Rc::clone(uid), now);
            for group in hub.groups_of_uid(uid) {
                self.follow_group(group);
            }
        }
        for uid in &offline {
            // Rebound in the same turn (a handler binding the connection again): still here.
            if hub.holds_uid(uid) {
                continue;
            }
            for group in hub.groups_of_uid(uid) {
                self.unfollow_group_unless_held(hub, &group);
            }
            self.mark_offline(uid, now);
        }
        for uid in online {
            match self.subscribed.get_mut(&uid) {
                // Still subscribed from an earlier connection: the linger ends.
                Some(subscription) => subscription.linger = None,
                None => {
                    self.subscribed
                        .insert(Rc::clone(&uid), Subscription::default());
                    let shard = self.shard_of(&uid);
                    if self.shards[shard].subscription_up() {
                        self.awaiting.insert(Rc::clone(&uid), now);
                    } else {
                        // Redis is unreachable: serve the connection here without waiting.
                        self.confirmed.insert(Rc::clone(&uid));
                    }
                    self.shards[shard].to_subscribe.push(uid);
                }
            }
        }
        let until = now + self.config.linger;
        for uid in offline {
            if let Some(subscription) = self.subscribed.get_mut(&uid) {
                subscription.linger = Some(until);
                self.lingers.push(Reverse((until, uid)));
            }
        }
        let mut payload = Vec::new();
        for publication in publications {
            let (index, channel, counted) = match &publication.to {
                Target::Uid(uid) => (
                    self.shard_of(uid),
                    self.uid_channel(uid),
                    self.subscribed.get(uid).is_some_and(|sub| sub.at_redis),
                ),
                Target::All => (0, self.all_channel(), false),
                Target::Group(group, _) => {
                    (self.group_shard(group), self.group_channel(group), false)
                }
            };
            let shard = &self.shards[index];
            if !shard.commands_up() || shard.commands.link.pending() > MAX_QUEUED {
                self.stats.lost += 1;
                // Nobody else can be asked: what this node knows is the answer.
                if let Some(notify) = publication.notify {
                    hub.send(notify.conn, Message::Text(&notify.notice), now);
                }
                if let (Some(id), Some(bus)) = (publication.survey, hub.bus.as_mut()) {
                    bus.finish(id, true);
                }
                continue;
            }
            payload.clear();
            let survey = publication.survey;
            if survey.is_some() {
                let due = now + SURVEY_TIMEOUT;
                self.next_survey_deadline =
                    Some(self.next_survey_deadline.map_or(due, |d| d.min(due)));
            }
            match (&publication.to, &publication.what) {
                (Target::Group(_, exclude), What::Text(bytes) | What::Binary(bytes)) => {
                    let text = matches!(publication.what, What::Text(_));
                    let body = envelope::group_message_body(exclude, text, bytes);
                    envelope::encode(&mut payload, self.node, Kind::GroupMessage, None, &body);
                }
                (_, What::Text(text)) => {
                    envelope::encode(&mut payload, self.node, Kind::Text, survey, text);
                }
                (_, What::Binary(bytes)) => {
                    envelope::encode(&mut payload, self.node, Kind::Binary, survey, bytes);
                }
                (_, What::Presence) => {
                    envelope::encode(&mut payload, self.node, Kind::Presence, survey, b"");
                }
                (_, What::Close(code, reason)) => {
                    let body = envelope::close_body(*code, reason);
                    envelope::encode(&mut payload, self.node, Kind::Close, survey, &body);
                }
            }
            let shard = &mut self.shards[index];
            shard.commands.link.queue(&[b"PUBLISH", &channel, &payload]);
            shard.replies.push_back(Pending {
                sent: now,
                counted,
                notify: publication.notify,
                survey,
                load_groups: None,
            });
            self.stats.published += 1;
        }
    }

    /// Unsubscribes uids whose linger ended without a new local connection.
    fn end_lingers<T>(&mut self, hub: &Hub<T>, now: Duration) {
        while let Some(Reverse((until, _))) = self.lingers.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, uid))) = self.lingers.pop() else {
                break;
            };
            let Some(subscription) = self.subscribed.get_mut(&uid) else {
                continue;
            };
            // Only the linger this entry was pushed for (the uid may have come back since).
            if subscription.linger != Some(until) {
                continue;
            }
            if hub.holds_uid(&uid) {
                subscription.linger = None;
                continue;
            }
            self.subscribed.remove(&uid);
            let shard = self.shard_of(&uid);
            self.shards[shard].to_unsubscribe.push(uid);
        }
    }

    /// Queues each server's pending (un)subscriptions on its subscription link, in batches.
    fn queue_subscriptions(&mut self) {
        for index in 0..self.shards.len() {
            let ready_channel = self.ready_channel(index);
            let channels = |kind: &str, names: &[Rc<str>]| -> Vec<Vec<u8>> {
                names
                    .iter()
                    .map(|name| format!("{}:{kind}:{name}", self.config.prefix).into_bytes())
                    .collect()
            };
            let shard = &self.shards[index];
            if !shard.subscription_up() {
                // All of `subscribed` and `group_channels` is sent again when the link comes up.
                let shard = &mut self.shards[index];
                shard.to_subscribe.clear();
                shard.to_unsubscribe.clear();
                shard.groups_to_subscribe.clear();
                shard.groups_to_unsubscribe.clear();
                continue;
            }
            let mut subscribe = channels("u", &shard.to_subscribe);
            subscribe.extend(channels("g", &shard.groups_to_subscribe));
            let mut unsubscribe = channels("u", &shard.to_unsubscribe);
            unsubscribe.extend(channels("g", &shard.groups_to_unsubscribe));
            let shard = &mut self.shards[index];
            shard.to_subscribe.clear();
            shard.to_unsubscribe.clear();
            shard.groups_to_subscribe.clear();
            shard.groups_to_unsubscribe.clear();
            // Unsubscriptions first: a uid in both lists ends up subscribed.
            for (command, channels) in [
                (&b"UNSUBSCRIBE"[..], unsubscribe),
                (b"SUBSCRIBE", subscribe),
            ] {
                for batch in channels.chunks(CHANNELS_PER_COMMAND) {
                    let mut args: Vec<&[u8]> = vec![command];
                    args.extend(batch.iter().map(Vec::as_slice));
                    shard.subscription.link.queue(&args);
                }
            }
            if std::mem::take(&mut shard.ready_pending) {
                shard
                    .subscription
                    .link
                    .queue(&[b"SUBSCRIBE", &ready_channel]);
            }
        }
    }

    /// Server `index`'s subscription link came up: subscribe to every uid held here that
    /// lives on it, then to its last channel (whose confirmation marks it ready).
    fn resubscribe(&mut self, index: usize) {
        let uids: Vec<Rc<str>> = self
            .subscribed
            .keys()
            .filter(|uid| self.shard_of(uid) == index)
            .cloned()
            .collect();
        let groups: Vec<Rc<str>> = self
            .group_channels
            .iter()
            .filter(|group| self.group_shard(group) == index)
            .cloned()
            .collect();
        let own = self.node_channel();
        let shard = &mut self.shards[index];
        shard.groups_to_unsubscribe.clear();
        shard.groups_to_subscribe = groups;
        shard.ready_pending = true;
        if index == 0 {
            // The first server carries this node's survey answers too.
            shard.subscription.link.queue(&[b"SUBSCRIBE", &own]);
        }
        shard.to_unsubscribe.clear();
        if !uids.is_empty() {
            info!(
                "cluster: subscribing {} uids again on {}",
                uids.len(),
                shard.name
            );
        }
        shard.to_subscribe = uids;
    }

    /// Delivers what arrived on each subscription link, and takes each command link's
    /// replies.
    fn read_links<T>(
        &mut self,
        hub: &mut Hub<T>,
        scratch: &mut [u8],
        registry: &mio::Registry,
        now: Duration,
    ) {
        for index in 0..self.shards.len() {
            let mut messages = Vec::new();
            let result = self.shards[index]
                .subscription
                .link
                .read(scratch, |frame| messages.push(frame));
            if !messages.is_empty() {
                self.shards[index].heard_at = now;
            }
            for frame in &messages {
                self.on_bus_frame(index, hub, frame, now);
            }
            if let Err(error) = result {
                self.fail(2 * index + SUBSCRIPTION, &error, registry, now);
            }
            let mut replies = Vec::new();
            let result = self.shards[index]
                .commands
                .link
                .read(scratch, |frame| replies.push(frame));
            for reply in &replies {
                self.on_reply(index, hub, reply, now);
            }
            if let Err(error) = result {
                self.fail(2 * index + COMMANDS, &error, registry, now);
            }
        }
    }

    /// A reply on server `index`'s command link: the number of nodes a PUBLISH reached, or
    /// an error.
    fn on_reply<T>(&mut self, index: usize, hub: &mut Hub<T>, reply: &Frame, now: Duration) {
        let Some(pending) = self.shards[index].replies.pop_front() else {
            return;
        };
        if let Some(uid) = pending.load_groups {
            // A uid's groups, as Redis keeps them: joined here, and followed while it is here.
            let Frame::Array(groups) = reply else {
                warn!("cluster: Redis did not list the groups of {uid}: {reply:?}");
                self.done_loading(&uid);
                return;
            };
            let listed: Vec<&str> = groups
                .iter()
                .filter_map(|group| match group {
                    Frame::BulkString(group) => std::str::from_utf8(group).ok(),
                    _ => None,
                })
                .collect();
            // Redis is the reference: what this node remembered beyond it has expired or
            // was removed elsewhere; changes made since the question stand.
            let touched = self.touched.remove(&uid).unwrap_or_default();
            let listed: Vec<&str> = listed
                .into_iter()
                .filter(|group| !touched.contains(*group))
                .collect();
            for group in hub.groups_of_uid(&uid) {
                if !listed.contains(&&*group) && !touched.contains(&group) {
                    hub.leave_group_here(&uid, &group);
                    self.unfollow_group_unless_held(hub, &group);
                }
            }
            // The login waits until the group channels it newly follows are subscribed, so a
            // group message sent right after "login success" reaches it.
            let mut waits = 0;
            for group in listed {
                hub.join_group_here(&uid, group, now);
                let group: Rc<str> = Rc::from(group);
                if hub.holds_uid(&uid) && self.follow_group(Rc::clone(&group)) {
                    self.group_waiters
                        .entry(group)
                        .or_default()
                        .push(Rc::clone(&uid));
                    waits += 1;
                }
            }
            if waits == 0 {
                self.done_loading(&uid);
            } else {
                self.group_waits.insert(uid, waits);
            }
            return;
        }
        let reached = match reply {
            Frame::Integer(nodes) => *nodes,
            other => {
                // No count: nothing can be concluded (not "offline", not complete).
                warn!("cluster: Redis answered {other:?}");
                if let Some(notify) = pending.notify {
                    self.unanswered.push(notify);
                }
                if let (Some(id), Some(bus)) = (pending.survey, hub.bus.as_mut()) {
                    bus.finish(id, true);
                }
                return;
            }
        };
        // The other nodes that hold the uid (this one may count among the subscribers).
        let others = u64::try_from(reached.saturating_sub(i64::from(pending.counted))).unwrap_or(0);
        if let Some(notify) = pending.notify.filter(|_| others == 0) {
            hub.send(notify.conn, Message::Text(&notify.notice), now);
        }
        if let (Some(id), Some(bus)) = (pending.survey, hub.bus.as_mut()) {
            if let Some(survey) = bus.surveys.get_mut(&id).filter(|survey| !survey.done) {
                survey.expected = Some(others);
                if survey.answered >= others {
                    bus.finish(id, false);
                }
            }
        }
    }

    /// Answers a survey on its origin's channel (on the first server).
    fn answer(&mut self, origin: u64, survey: u64, connections: u64, dropped: u64, now: Duration) {
        let channel = format!("{}:n:{origin:016x}", self.config.prefix).into_bytes();
        let mut payload = Vec::new();
        let body = envelope::answer_body(connections, dropped);
        envelope::encode(&mut payload, self.node, Kind::Answer, Some(survey), &body);
        let shard = &mut self.shards[0];
        if !shard.commands_up() {
            // The origin answers as partial; the answer counts as lost like any publication.
            self.stats.lost += 1;
            return;
        }
        shard.commands.link.queue(&[b"PUBLISH", &channel, &payload]);
        shard.replies.push_back(Pending::plain(now));
    }

    /// An answer to one of this node's surveys.
    fn on_answer<T>(&mut self, hub: &mut Hub<T>, survey: u64, body: &[u8]) {
        let Ok((connections, dropped)) = envelope::read_answer(body) else {
            self.stats.bad += 1;
            return;
        };
        let Some(bus) = hub.bus.as_mut() else {
            return;
        };
        let Some(entry) = bus.surveys.get_mut(&survey).filter(|entry| !entry.done) else {
            // Too late: it was answered as partial already.
            return;
        };
        entry.answered += 1;
        entry.connections += connections;
        entry.dropped += dropped;
        if connections + dropped == 0 {
            // A node that only lingers on the uid's channel: it holds none of its connections.
            entry.empty += 1;
        }
        if entry
            .expected
            .is_some_and(|expected| entry.answered >= expected)
        {
            bus.finish(survey, false);
        }
    }

    /// Answers surveys that waited too long as partial, and forgets answered ones nobody took.
    fn end_surveys<T>(&mut self, hub: &mut Hub<T>, now: Duration) {
        let Some(bus) = hub.bus.as_mut() else {
            return;
        };
        let late: Vec<u64> = bus
            .surveys
            .iter()
            .filter(|(_, survey)| {
                !survey.done && now.saturating_sub(survey.started) >= SURVEY_TIMEOUT
            })
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            bus.finish(id, true);
        }
        self.next_survey_deadline = bus
            .surveys
            .values()
            .filter(|survey| !survey.done)
            .map(|survey| survey.started + SURVEY_TIMEOUT)
            .min();
        bus.surveys
            .retain(|_, survey| now.saturating_sub(survey.started) < SURVEY_TIMEOUT * 50);
    }

    fn on_bus_frame<T>(&mut self, index: usize, hub: &mut Hub<T>, frame: &Frame, now: Duration) {
        if let Frame::Error(message) = frame {
            warn!("cluster: Redis refused a subscription command: {message}");
            return;
        }
        if let Some((true, channel)) = resp::as_confirmation(frame) {
            if channel == self.ready_channel(index).as_slice() {
                let shard = &mut self.shards[index];
                if !shard.ready {
                    shard.ready = true;
                    if self.shards.iter().all(|shard| shard.ready) {
                        info!("cluster: up (subscribed to {}:all)", self.config.prefix);
                    }
                }
                return;
            }
            if let Some(group) = self.group_of_channel(channel) {
                for uid in self.group_waiters.remove(group).unwrap_or_default() {
                    let waits = self.group_waits.get_mut(&uid).map(|waits| {
                        *waits = waits.saturating_sub(1);
                        *waits
                    });
                    if waits == Some(0) {
                        self.done_loading(&uid);
                    }
                }
                return;
            }
            let Some(uid) = self.uid_of_channel(channel) else {
                return;
            };
            if let Some(subscription) = self.subscribed.get_mut(uid) {
                subscription.at_redis = true;
            }
            if let Some((uid, _)) = self.awaiting.remove_entry(uid) {
                if !self.loading.contains_key(&uid) {
                    self.confirmed.insert(uid);
                }
            }
            return;
        }
        let Some((channel, payload)) = resp::as_message(frame) else {
            return;
        };
        let envelope = match envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.stats.bad += 1;
                debug!("cluster: skipped a bus message: {error:?}");
                return;
            }
        };
        if envelope.kind == Kind::Probe {
            if envelope.origin == self.node {
                self.shards[index].probe_sent = None;
            }
            return;
        }
        if envelope.kind == Kind::Answer {
            // Only answers to this node's own surveys, on its own channel.
            if let Some(survey) = envelope.survey.filter(|_| channel == self.node_channel()) {
                self.on_answer(hub, survey, envelope.body);
            }
            return;
        }
        if envelope.origin == self.node {
            return;
        }
        let prefix = self.config.prefix.as_bytes();
        let Some(name) = channel
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(b":"))
        else {
            self.stats.bad += 1;
            return;
        };
        if let Some(group) = name.strip_prefix(b"g:") {
            let Ok(group) = std::str::from_utf8(group) else {
                self.stats.bad += 1;
                return;
            };
            self.on_group_frame(hub, group, envelope.kind, envelope.body, now);
            return;
        }
        let recipients = match name {
            b"all" => Recipients::All,
            _ => match name.strip_prefix(b"u:").map(std::str::from_utf8) {
                Some(Ok(uid)) => Recipients::Uid(uid),
                _ => {
                    self.stats.bad += 1;
                    return;
                }
            },
        };
        if let (Kind::Join | Kind::Leave, Recipients::Uid(uid)) = (envelope.kind, &recipients) {
            let Ok(group) = std::str::from_utf8(envelope.body) else {
                self.stats.bad += 1;
                return;
            };
            self.stats.received += 1;
            let (uid_rc, group_rc): (Rc<str>, Rc<str>) = (Rc::from(*uid), Rc::from(group));
            if envelope.kind == Kind::Join {
                self.touch(&GroupChange::Join(uid_rc, group_rc));
            } else {
                self.touch(&GroupChange::Leave(uid_rc, group_rc));
            }
            if envelope.kind == Kind::Join {
                hub.join_group_here(uid, group, now);
                if hub.holds_uid(uid) {
                    self.follow_group(Rc::from(group));
                }
            } else {
                hub.leave_group_here(uid, group);
                self.unfollow_group_unless_held(hub, group);
            }
            return;
        }
        self.stats.received += 1;
        let (connections, dropped) = match (envelope.kind, recipients) {
            (Kind::Text, recipients) => match std::str::from_utf8(envelope.body) {
                Ok(text) => {
                    let delivery = hub.deliver_here(recipients, Message::Text(text), now);
                    (delivery.queued, delivery.dropped)
                }
                Err(_) => return,
            },
            (Kind::Binary, recipients) => {
                let delivery = hub.deliver_here(recipients, Message::Binary(envelope.body), now);
                (delivery.queued, delivery.dropped)
            }
            (Kind::Presence, Recipients::Uid(uid)) => (hub.conns_of_uid(uid), 0),
            (Kind::Close, Recipients::Uid(uid)) => match envelope::read_close(envelope.body) {
                Ok((code, reason)) => (hub.close_uid(uid, code, reason, now), 0),
                Err(_) => {
                    self.stats.bad += 1;
                    return;
                }
            },
            _ => {
                self.stats.bad += 1;
                return;
            }
        };
        if let Some(survey) = envelope.survey.filter(|_| envelope.origin != 0) {
            let (connections, dropped) = (connections as u64, dropped as u64);
            self.answer(envelope.origin, survey, connections, dropped, now);
        }
    }

    /// A message or a deletion on a group's channel.
    fn on_group_frame<T>(
        &mut self,
        hub: &mut Hub<T>,
        group: &str,
        kind: Kind,
        body: &[u8],
        now: Duration,
    ) {
        match kind {
            Kind::GroupMessage => match envelope::read_group_message(body) {
                Ok((exclude, text, payload)) => {
                    self.stats.received += 1;
                    let message = if text {
                        // `read_group_message` checked that it is UTF-8.
                        match std::str::from_utf8(payload) {
                            Ok(text) => Message::Text(text),
                            Err(_) => return,
                        }
                    } else {
                        Message::Binary(payload)
                    };
                    let to = Recipients::Group {
                        group,
                        exclude: &exclude,
                    };
                    hub.deliver_here(to, message, now);
                }
                Err(_) => self.stats.bad += 1,
            },
            Kind::DeleteGroup => {
                self.stats.received += 1;
                self.touch(&GroupChange::Delete(Rc::from(group)));
                hub.ungroup_here(group);
                if let Some(group) = self.group_channels.take(group) {
                    let shard = self.group_shard(&group);
                    self.shards[shard].groups_to_unsubscribe.push(group);
                }
            }
            _ => self.stats.bad += 1,
        }
    }

    /// The group a `<prefix>:g:<group>` channel is for.
    fn group_of_channel<'c>(&self, channel: &'c [u8]) -> Option<&'c str> {
        let rest = channel.strip_prefix(self.config.prefix.as_bytes())?;
        std::str::from_utf8(rest.strip_prefix(b":g:")?).ok()
    }

    /// The uid a `<prefix>:u:<uid>` channel is for.
    fn uid_of_channel<'c>(&self, channel: &'c [u8]) -> Option<&'c str> {
        let rest = channel.strip_prefix(self.config.prefix.as_bytes())?;
        std::str::from_utf8(rest.strip_prefix(b":u:")?).ok()
    }

    /// Lets held output go: for confirmed subscriptions, and for those waited on too long.
    fn release<T>(&mut self, hub: &mut Hub<T>, now: Duration) {
        if self
            .awaiting
            .values()
            .any(|&since| now.saturating_sub(since) >= HOLD_MAX)
        {
            let late: Vec<Rc<str>> = self
                .awaiting
                .iter()
                .filter(|(_, &since)| now.saturating_sub(since) >= HOLD_MAX)
                .map(|(uid, _)| Rc::clone(uid))
                .collect();
            warn!(
                "cluster: {} subscriptions not confirmed within {HOLD_MAX:?}; their logins go on",
                late.len()
            );
            for uid in late {
                self.awaiting.remove(&uid);
                self.confirmed.insert(uid);
            }
        }
        let late: Vec<Rc<str>> = self
            .loading
            .iter()
            .filter(|(_, &since)| now.saturating_sub(since) >= HOLD_MAX)
            .map(|(uid, _)| Rc::clone(uid))
            .collect();
        for uid in late {
            self.done_loading(&uid);
        }
        if !self.confirmed.is_empty() {
            let loading = &self.loading;
            self.confirmed.retain(|uid| !loading.contains_key(uid));
            hub.release_held(&self.confirmed);
            self.confirmed.clear();
        }
        for notify in std::mem::take(&mut self.unanswered) {
            hub.send(notify.conn, Message::Text(&notify.notice), now);
        }
        if let Some(bus) = hub.bus.as_mut() {
            for id in std::mem::take(&mut self.unsurveyed) {
                bus.finish(id, true);
            }
        }
    }

    /// A link failed: close it and schedule a reconnect with backoff and jitter.
    fn fail(&mut self, slot: usize, error: &io::Error, registry: &mio::Registry, now: Duration) {
        self.stats.link_failures += 1;
        let jitter = self.next_jitter();
        let attached = self.link(slot);
        warn!(
            "cluster: link to Redis at {} failed ({error}); retrying in {:?}",
            attached.link.addr(),
            attached.backoff
        );
        attached.retry_at = now + attached.backoff.mul_f64(0.5 + jitter);
        attached.backoff = (attached.backoff * 2).min(BACKOFF_MAX);
        attached.link.reset(registry);
        let index = slot / 2;
        if slot % 2 == COMMANDS {
            // Those replies will not come: their senders hear what this node knows.
            for pending in std::mem::take(&mut self.shards[index].replies) {
                self.unanswered.extend(pending.notify);
                self.unsurveyed.extend(pending.survey);
                if let Some(uid) = pending.load_groups {
                    self.done_loading(&uid);
                }
            }
        } else {
            let shard = &mut self.shards[index];
            shard.ready = false;
            shard.probe_sent = None;
            // Redis dropped this link's subscriptions with it.
            let names = &self.names;
            for (uid, subscription) in &mut self.subscribed {
                if shard_of(names, uid) == index {
                    subscription.at_redis = false;
                }
            }
            // Nobody waits for a subscription that will only be made after the reconnect.
            let given_up: Vec<Rc<str>> = self
                .awaiting
                .keys()
                .filter(|uid| shard_of(names, uid) == index)
                .cloned()
                .collect();
            for uid in given_up {
                self.awaiting.remove(&uid);
                self.confirmed.insert(uid);
            }
            self.release_group_waiters();
        }
    }

    /// A number in [0, 1) for jitter (xorshift; not for secrets).
    fn next_jitter(&mut self) -> f64 {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        (self.jitter >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Connects links that are down and due.
    fn reconnect(&mut self, registry: &mio::Registry, now: Duration) {
        for slot in 0..2 * self.shards.len() {
            let attached = self.link(slot);
            if attached.link.phase() != Phase::Down || attached.retry_at > now {
                continue;
            }
            attached.since = now;
            if let Err(error) = attached.link.connect(registry) {
                self.fail(slot, &error, registry, now);
            }
        }
    }

    /// A link came up: authenticate, and for a subscription link subscribe again.
    fn came_up(&mut self, slot: usize, now: Duration) {
        let index = slot / 2;
        let redis = &self.config.redis[index];
        let (user, password) = (redis.user.clone(), redis.password.clone());
        if password.is_some() && slot % 2 == COMMANDS {
            // AUTH's reply comes first.
            self.shards[index].replies.push_back(Pending::plain(now));
        }
        let attached = self.link(slot);
        attached.backoff = BACKOFF_MIN;
        attached.since = now;
        if let Some(password) = &password {
            match &user {
                Some(user) => attached
                    .link
                    .queue(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => attached.link.queue(&[b"AUTH", password.as_bytes()]),
            }
        }
        info!("cluster: link to Redis at {} up", attached.link.addr());
        if slot % 2 == SUBSCRIPTION {
            self.resubscribe(index);
        } else if index == 0 {
            // What was said while the link was down is lost: say again which uids are online
            // here (idempotent), so that their groups do not expire.
            let here: Vec<Rc<str>> = self
                .subscribed
                .iter()
                .filter(|(_, subscription)| subscription.linger.is_none())
                .map(|(uid, _)| Rc::clone(uid))
                .collect();
            let gone: Vec<Rc<str>> = self
                .announced
                .iter()
                .filter(|uid| !here.contains(uid))
                .cloned()
                .collect();
            for uid in gone {
                self.mark_offline(&uid, now);
            }
            for uid in here {
                self.mark_online(&uid, now);
            }
        }
    }

    /// Shows this endpoint's state in the hub's stats (`/stats`, `/metrics`, `/health`).
    fn publish_stats<T>(&mut self, hub: &mut Hub<T>) {
        self.stats.up = self.shards.iter().all(Shard::is_up);
        hub.stats.cluster = Some(self.stats);
    }

    fn write_links(&mut self, registry: &mio::Registry, now: Duration) {
        for slot in 0..2 * self.shards.len() {
            if let Err(error) = self.link(slot).link.flush() {
                self.fail(slot, &error, registry, now);
            }
        }
    }
}

/// A node id that is unlikely to repeat: the process id and the time, hashed with the
/// standard library's random keys.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(time) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(time.as_nanos());
    }
    // 0 is reserved for publishers outside the cluster.
    hasher.finish().max(1)
}

impl<H: Handler> Endpoint<H> for Cluster {
    fn on_event(&mut self, slot: Slot, event: &Event, cx: &mut Cx<'_, H>) {
        let Slot::Conn(slot) = slot else {
            return;
        };
        if slot >= 2 * self.shards.len() {
            return;
        }
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        match self.link(slot).link.on_ready(readable, event.is_writable()) {
            Ok(true) => self.came_up(slot, cx.now),
            Ok(false) => {}
            Err(error) => self.fail(slot, &error, cx.registry, cx.now),
        }
    }

    fn turn(&mut self, cx: &mut Cx<'_, H>) {
        self.read_links(cx.hub, cx.scratch, cx.registry, cx.now);
        self.release(cx.hub, cx.now);
    }

    fn sweep(&mut self, cx: &mut Cx<'_, H>) {
        self.reconnect(cx.registry, cx.now);
        self.end_lingers(cx.hub, cx.now);
        self.end_surveys(cx.hub, cx.now);
        self.probe(cx.registry, cx.now);
    }

    fn flush(&mut self, cx: &mut Cx<'_, H>) {
        self.take_outbound(cx.hub, cx.now);
        // Logins held by the hub whose uid waits for nothing (a second tab of a subscribed
        // uid, a uid still lingering, Redis unreachable) go now; the others wait for their
        // confirmation. Only after `take_outbound`, which learns of this turn's logins.
        if cx.hub.has_held() {
            let (awaiting, loading) = (&self.awaiting, &self.loading);
            cx.hub
                .release_held_unless(|uid| awaiting.contains_key(uid) || loading.contains_key(uid));
        }
        self.queue_subscriptions();
        self.write_links(cx.registry, cx.now);
        // Held connections released now are written by the WebSocket flush, which follows.
        self.release(cx.hub, cx.now);
        self.publish_stats(cx.hub);
    }

    fn next_deadline(&self) -> Option<Duration> {
        let interval = self.config.probe_interval;
        let mut deadlines = vec![
            self.lingers.peek().map(|Reverse((until, _))| *until),
            self.awaiting.values().min().map(|&since| since + HOLD_MAX),
            self.next_survey_deadline,
        ];
        for shard in &self.shards {
            for attached in [&shard.commands, &shard.subscription] {
                match attached.link.phase() {
                    Phase::Down => deadlines.push(Some(attached.retry_at)),
                    Phase::Connecting => deadlines.push(Some(attached.since + CONNECT_TIMEOUT)),
                    Phase::Up => {}
                }
            }
            if shard.subscription_up() && !shard.ready {
                deadlines.push(Some(shard.subscription.since + interval));
            }
            // Probes and late replies are looked at only while the command link is up
            // (`probe` does nothing otherwise, so a deadline then would spin the loop).
            if shard.commands_up() {
                if shard.ready {
                    deadlines.push(Some(shard.probe_sent.unwrap_or(shard.heard_at) + interval));
                }
                deadlines.push(shard.replies.front().map(|pending| pending.sent + interval));
            }
        }
        deadlines.into_iter().flatten().min()
    }

    fn has_work(&self, hub: &Hub<Socket>) -> bool {
        // Output left after a flush waits for writability, which the poller reports.
        hub.bus.as_ref().is_some_and(|bus| !bus.is_empty())
            || !self.confirmed.is_empty()
            || self
                .shards
                .iter()
                .any(|shard| shard.subscription.link.has_input() || shard.commands.link.has_input())
    }

    fn begin_drain(&mut self, _cx: &mut Cx<'_, H>) {}

    fn is_drained(&self, hub: &Hub<Socket>) -> bool {
        // What is queued for Redis goes out with the flushes of the drain; nobody waits for
        // an answer. The last connections' offline marks, which the WebSocket flush after this
        // one gathers, still need one more flush.
        hub.bus.as_ref().map_or(true, |bus| bus.is_empty())
    }
}
