//! One Redis server of the cluster, as this node uses it: its two links (commands and the
//! subscription, since a RESP2 connection in subscribe mode takes nothing else), the replies
//! its commands still owe, the (un)subscriptions waiting for the next flush, and the probe of
//! its subscription. Also which server a uid's channel lives on.
//!
//! Owns the per-server state only; what a reply or a message means is the cluster's business
//! (`cluster`). It never blocks and never reads a socket outside `Link`.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use super::link::{Link, Phase};
use crate::hub::bus::Notify;

/// First and longest wait before reconnecting a link.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Longest a connect may take before it counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes queued on a command link (Redis is not keeping up beyond it): publications past
/// it are counted as lost instead.
pub(crate) const MAX_QUEUED: usize = 64 << 20;

/// A command on the command link whose reply is still to come.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) sent: Duration,
    /// For a PUBLISH: whether this node itself counted among the channel's subscribers.
    pub(crate) counted: bool,
    /// A notice for the sender if nobody else holds the uid.
    pub(crate) notify: Option<Notify>,
    /// The survey that waits for this PUBLISH's subscriber count.
    pub(crate) survey: Option<u64>,
    /// For an SMEMBERS of a uid's groups at its login: the uid.
    pub(crate) load_groups: Option<Rc<str>>,
}

impl Pending {
    pub(crate) fn plain(sent: Duration) -> Self {
        Self {
            sent,
            counted: false,
            notify: None,
            survey: None,
            load_groups: None,
        }
    }
}

/// One link, with its reconnect schedule.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) link: Link,
    /// When to try connecting again (while down).
    pub(crate) retry_at: Duration,
    pub(crate) backoff: Duration,
    /// When it started connecting, or came up: a connect, and a subscription's confirmation,
    /// are given a deadline from here.
    pub(crate) since: Duration,
}

impl Attached {
    fn new(link: Link) -> Self {
        Self {
            link,
            retry_at: Duration::ZERO,
            backoff: BACKOFF_MIN,
            since: Duration::ZERO,
        }
    }
}

/// One Redis server and this node's links to it.
#[derive(Debug)]
pub(crate) struct Shard {
    /// `host:port` as configured: what uids are hashed with.
    pub(crate) name: String,
    pub(crate) commands: Attached,
    pub(crate) subscription: Attached,
    /// One entry per command on the command link whose reply is still to come, in order.
    pub(crate) replies: VecDeque<Pending>,
    /// Uids to subscribe and unsubscribe at the next flush.
    pub(crate) to_subscribe: Vec<Rc<str>>,
    pub(crate) to_unsubscribe: Vec<Rc<str>>,
    /// Groups whose channel to subscribe and unsubscribe at the next flush.
    pub(crate) groups_to_subscribe: Vec<Rc<str>>,
    pub(crate) groups_to_unsubscribe: Vec<Rc<str>>,
    /// When the subscription link last delivered anything (a message, a confirmation).
    pub(crate) heard_at: Duration,
    /// When the outstanding probe of this node's own channel was published.
    pub(crate) probe_sent: Option<Duration>,
    /// The subscription's last channel (broadcasts on the first server, this node's own
    /// channel on the others) is confirmed: everything asked before it is subscribed.
    pub(crate) ready: bool,
    /// That last channel is to be subscribed after the uids queued with it.
    pub(crate) ready_pending: bool,
}

impl Shard {
    pub(crate) fn new(name: String, commands: Link, subscription: Link) -> Self {
        Self {
            name,
            commands: Attached::new(commands),
            subscription: Attached::new(subscription),
            replies: VecDeque::new(),
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
            groups_to_subscribe: Vec::new(),
            groups_to_unsubscribe: Vec::new(),
            heard_at: Duration::ZERO,
            probe_sent: None,
            ready: false,
            ready_pending: false,
        }
    }

    pub(crate) fn commands_up(&self) -> bool {
        self.commands.link.phase() == Phase::Up
    }

    pub(crate) fn subscription_up(&self) -> bool {
        self.subscription.link.phase() == Phase::Up
    }

    /// Both links up and the subscription complete.
    pub(crate) fn is_up(&self) -> bool {
        self.commands_up() && self.ready
    }
}

/// Which of `shards` holds `uid`'s channel: the one whose `name/uid` hashes highest
/// (rendezvous hashing, so adding a server moves only the uids that go to it). The hash is
/// 64-bit FNV-1a followed by MurmurHash3's `fmix64` finalizer (FNV alone barely mixes the
/// last bytes, and uids often differ only there), so any program can find the same server.
pub(crate) fn shard_of(names: &[String], uid: &str) -> usize {
    if names.len() < 2 {
        return 0;
    }
    let score = |name: &str| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes().chain(std::iter::once(b'/')).chain(uid.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        fmix64(hash)
    };
    names
        .iter()
        .enumerate()
        .max_by_key(|(_, name)| score(name))
        .map_or(0, |(index, _)| index)
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_spread_over_servers_and_adding_one_moves_only_its_share() {
        let two = vec!["a:6379".to_owned(), "b:6379".to_owned()];
        let three = vec![two[0].clone(), two[1].clone(), "c:6379".to_owned()];
        let uids: Vec<String> = (0..3000).map(|i| format!("user{i}")).collect();
        let on_first = uids.iter().filter(|u| shard_of(&two, u) == 0).count();
        assert!(
            (1200..1800).contains(&on_first),
            "{on_first} of 3000 on the first"
        );
        let moved = uids
            .iter()
            .filter(|u| shard_of(&two, u) != shard_of(&three, u))
            .count();
        assert!(
            uids.iter()
                .filter(|u| shard_of(&two, u) != shard_of(&three, u))
                .all(|u| shard_of(&three, u) == 2),
            "only to the new server"
        );
        assert!((700..1300).contains(&moved), "{moved} moved");
        assert_eq!(shard_of(&two[..1], "anyone"), 0);
    }

    #[test]
    fn the_hash_is_the_documented_fnv1a_with_fmix64() {
        // fmix64(FNV-1a 64) of "a:6379/x" and "b:6379/x", as any program can compute it.
        let names = vec!["a:6379".to_owned(), "b:6379".to_owned()];
        let fnv = |s: &str| {
            fmix64(s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }))
        };
        let expected = usize::from(fnv("b:6379/x") > fnv("a:6379/x"));
        assert_eq!(shard_of(&names, "x"), expected);
    }
}
