//! Server-side groups: which uids belong to which named group.
//!
//! Groups are decided by the application or the backend (through the push API), never by
//! clients. Membership belongs to a uid, not to a connection, and follows one rule a backend can
//! rely on: a uid stays in its groups while it has at least one connection, and for a grace
//! period after its last connection closes (so a page reload or a quick reconnect keeps its
//! groups); a uid added while offline gets the same grace period to connect. After that it
//! leaves every group. With a zero grace period it leaves at once.
//!
//! Invariants: a group exists only while it has members; `members` and `groups_of` always
//! mirror each other; only uids with memberships are ever tracked as offline, so users who are
//! in no group cost nothing here.

use std::rc::Rc;

use smallvec::SmallVec;

use super::ids::Tick;
use super::{HashMap, HashSet};

#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Group → member uids.
    members: HashMap<Rc<str>, HashSet<Rc<str>>>,
    /// Uid → the groups it is in.
    groups_of: HashMap<Rc<str>, SmallVec<[Rc<str>; 2]>>,
    /// Uids with memberships but no connection, and since when.
    offline: HashMap<Rc<str>, Tick>,
}

impl Groups {
    /// Adds `uid` to `group`; false if it was already a member. `online` says whether the uid
    /// has a connection now; if not, its grace period starts at `now`.
    pub(crate) fn join(&mut self, uid: &str, group: &str, online: bool, now: Tick) -> bool {
        let uid_key = self.uid_key(uid);
        let group_key = match self.members.get_key_value(group) {
            Some((key, _)) => Rc::clone(key),
            None => Rc::from(group),
        };
        let members = self.members.entry(Rc::clone(&group_key)).or_default();
        if !members.insert(Rc::clone(&uid_key)) {
            return false;
        }
        self.groups_of
            .entry(Rc::clone(&uid_key))
            .or_default()
            .push(group_key);
        if !online {
            self.offline.entry(uid_key).or_insert(now);
        }
        true
    }

    /// Removes `uid` from `group`; false if it was not a member.
    pub(crate) fn leave(&mut self, uid: &str, group: &str) -> bool {
        let Some(members) = self.members.get_mut(group) else {
            return false;
        };
        if !members.remove(uid) {
            return false;
        }
        if members.is_empty() {
            self.members.remove(group);
        }
        self.forget_membership(uid, group);
        true
    }

    /// Deletes `group`; returns how many members it had.
    pub(crate) fn ungroup(&mut self, group: &str) -> usize {
        let Some(members) = self.members.remove(group) else {
            return 0;
        };
        for uid in &members {
            self.forget_membership(uid, group);
        }
        members.len()
    }

    /// The member uids of `group`, in no particular order.
    pub(crate) fn members(&self, group: &str) -> impl Iterator<Item = &str> + '_ {
        self.members
            .get(group)
            .into_iter()
            .flatten()
            .map(|uid| &**uid)
    }

    /// The groups `uid` belongs to.
    pub(crate) fn groups_of(&self, uid: &str) -> &[Rc<str>] {
        self.groups_of
            .get(uid)
            .map_or(&[], |groups| groups.as_slice())
    }

    /// Number of groups with at least one member.
    pub(crate) fn count(&self) -> usize {
        self.members.len()
    }

    /// The uid's first connection opened: its memberships are no longer on a timer.
    pub(crate) fn came_online(&mut self, uid: &str) {
        if !self.offline.is_empty() {
            self.offline.remove(uid);
        }
    }

    /// The uid's last connection closed: its memberships now expire after the grace period.
    pub(crate) fn went_offline(&mut self, uid: &str, now: Tick) {
        if let Some((key, _)) = self.groups_of.get_key_value(uid) {
            self.offline.insert(Rc::clone(key), now);
        }
    }

    /// Removes from every group the uids whose grace period has run out, as judged by
    /// `has_expired(offline_since)`.
    pub(crate) fn expire(&mut self, mut has_expired: impl FnMut(Tick) -> bool) {
        if self.offline.is_empty() {
            return;
        }
        let expired: Vec<Rc<str>> = self
            .offline
            .iter()
            .filter(|(_, &since)| has_expired(since))
            .map(|(uid, _)| Rc::clone(uid))
            .collect();
        for uid in expired {
            self.offline.remove(&uid);
            for group in self.groups_of.remove(&uid).unwrap_or_default() {
                if let Some(members) = self.members.get_mut(&group) {
                    members.remove(&uid);
                    if members.is_empty() {
                        self.members.remove(&group);
                    }
                }
            }
        }
    }

    fn uid_key(&self, uid: &str) -> Rc<str> {
        match self.groups_of.get_key_value(uid) {
            Some((key, _)) => Rc::clone(key),
            None => Rc::from(uid),
        }
    }

    fn forget_membership(&mut self, uid: &str, group: &str) {
        if let Some(groups) = self.groups_of.get_mut(uid) {
            groups.retain(|g| &**g != group);
            if groups.is_empty() {
                self.groups_of.remove(uid);
                self.offline.remove(uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(groups: &Groups, group: &str) -> Vec<String> {
        let mut members: Vec<String> = groups.members(group).map(str::to_owned).collect();
        members.sort();
        members
    }

    #[test]
    fn join_leave_and_ungroup_keep_both_directions_in_step() {
        let mut groups = Groups::default();
        assert!(groups.join("alice", "room", true, 0));
        assert!(!groups.join("alice", "room", true, 0));
        assert!(groups.join("bob", "room", true, 0));
        assert!(groups.join("alice", "vip", true, 0));
        assert_eq!(sorted(&groups, "room"), ["alice", "bob"]);
        assert_eq!(groups.groups_of("alice").len(), 2);
        assert!(groups.leave("alice", "vip"));
        assert_eq!(groups.count(), 1);
        assert_eq!(groups.ungroup("room"), 2);
        assert_eq!(groups.count(), 0);
        assert!(groups.groups_of("alice").is_empty());
    }

    #[test]
    fn offline_members_leave_after_the_grace_period_unless_they_return() {
        let mut groups = Groups::default();
        groups.join("alice", "room", true, 0);
        groups.join("bob", "room", true, 0);
        groups.went_offline("alice", 10);
        groups.went_offline("bob", 10);
        groups.came_online("bob");
        groups.expire(|since| since <= 10);
        assert_eq!(sorted(&groups, "room"), ["bob"]);
        assert!(groups.groups_of("alice").is_empty());
    }

    #[test]
    fn uid_added_while_offline_gets_the_grace_period() {
        let mut groups = Groups::default();
        groups.join("carol", "room", false, 5);
        groups.expire(|since| since < 5);
        assert_eq!(sorted(&groups, "room"), ["carol"]);
        groups.expire(|since| since <= 5);
        assert_eq!(groups.count(), 0);
    }
}
