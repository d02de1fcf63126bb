//! The uid → connections map.
//!
//! Owns which live connections are bound to which uid. A uid is stored once, shared with the
//! connections bound to it. Invariants: a uid is present only while at least one connection is
//! bound to it; a connection appears at most once, under at most one uid.

use std::rc::Rc;

use smallvec::SmallVec;

use super::ids::ConnId;
use super::HashMap;

/// Connections of one uid; one inline, as most users have a single connection.
type Conns = SmallVec<[ConnId; 1]>;

/// Which connections are bound to which uid.
#[derive(Debug, Default)]
pub struct Registry {
    uids: HashMap<Rc<str>, Conns>,
}

impl Registry {
    /// Adds `conn` under `uid` and returns the shared uid string for the connection to keep.
    pub fn bind(&mut self, uid: &str, conn: ConnId) -> Rc<str> {
        if let Some((name, conns)) = self.uids.get_key_value(uid) {
            let name = Rc::clone(name);
            if !conns.contains(&conn) {
                if let Some(conns) = self.uids.get_mut(uid) {
                    conns.push(conn);
                }
            }
            return name;
        }
        let name: Rc<str> = Rc::from(uid);
        self.uids
            .insert(Rc::clone(&name), SmallVec::from_elem(conn, 1));
        name
    }

    /// Removes `conn` from `uid`, and the uid itself when it was its last connection.
    pub fn unbind(&mut self, uid: &str, conn: ConnId) {
        if let Some(conns) = self.uids.get_mut(uid) {
            conns.retain(|c| *c != conn);
            if conns.is_empty() {
                self.uids.remove(uid);
            }
        }
    }

    /// The shared name of `uid`, if a connection is bound to it.
    pub fn name(&self, uid: &str) -> Option<Rc<str>> {
        self.uids
            .get_key_value(uid)
            .map(|(name, _)| Rc::clone(name))
    }

    /// The connections bound to `uid`, oldest first.
    pub fn conns(&self, uid: &str) -> &[ConnId] {
        self.uids.get(uid).map_or(&[], |conns| conns.as_slice())
    }

    /// Number of uids with at least one connection.
    pub fn uid_count(&self) -> usize {
        self.uids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: u32) -> ConnId {
        ConnId::new(key, 0)
    }

    #[test]
    fn unbinding_one_tab_keeps_the_other() {
        let mut registry = Registry::default();
        let first = registry.bind("alice", id(1));
        let second = registry.bind("alice", id(2));
        assert!(Rc::ptr_eq(&first, &second));
        registry.unbind("alice", id(1));
        assert_eq!(registry.conns("alice"), &[id(2)]);
        registry.unbind("alice", id(2));
        assert_eq!(registry.uid_count(), 0);
    }

    #[test]
    fn binding_twice_lists_a_connection_once() {
        let mut registry = Registry::default();
        registry.bind("bob", id(3));
        registry.bind("bob", id(3));
        assert_eq!(registry.conns("bob"), &[id(3)]);
    }
}
