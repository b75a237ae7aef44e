//! What the supervisor remembers about sockets, keyed by `SO_COOKIE`.
//!
//! Cookies are unique for the life of the system (they come from a per-CPU batched
//! counter, so they are not dense — DESIGN §6 — hence a real hash map). Entries are
//! never reused by another socket; the map is bounded and drops the oldest entry when
//! full, which costs at worst a `getpeername` that shows the proxy for a very old socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

/// How many sockets are remembered.
pub const CAPACITY: usize = 65_536;

/// A socket the supervisor connected somewhere other than where the program asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What `getpeername` reports: the address the program connected to, as it gave it.
    pub shown: SocketAddr,
    /// The proxy it went through (`None`: the local DNS responder).
    pub proxy: Option<SocketAddr>,
    /// The address family the program created the socket with (a socket replaced by
    /// one of the other family still answers `getpeername` in the program's family).
    pub family: i32,
}

#[derive(Default)]
pub struct State {
    map: HashMap<u64, Entry>,
    order: VecDeque<u64>,
    /// UDP sockets already told (once) that their datagrams are refused.
    warned: HashSet<u64>,
    warned_order: VecDeque<u64>,
}

impl State {
    pub fn insert(&mut self, cookie: u64, e: Entry) {
        if self.map.insert(cookie, e).is_none() {
            self.order.push_back(cookie);
        }
        while self.map.len() > CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // Forgotten cookies leave stale order entries behind; keep that bounded too.
        if self.order.len() > 2 * CAPACITY {
            let map = &self.map;
            self.order.retain(|c| map.contains_key(c));
        }
    }

    pub fn get(&self, cookie: u64) -> Option<&Entry> {
        self.map.get(&cookie)
    }

    pub fn forget(&mut self, cookie: u64) {
        self.map.remove(&cookie);
    }

    /// True the first time it is asked for `cookie` (bounded like the map).
    pub fn first_warning(&mut self, cookie: u64) -> bool {
        if !self.warned.insert(cookie) {
            return false;
        }
        self.warned_order.push_back(cookie);
        while self.warned.len() > CAPACITY {
            if let Some(old) = self.warned_order.pop_front() {
                self.warned.remove(&old);
            }
        }
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_first() {
        let mut s = State::default();
        let e = Entry {
            shown: "203.0.113.2:80".parse().unwrap(),
            proxy: None,
            family: libc::AF_INET,
        };
        for c in 0..(CAPACITY as u64 + 10) {
            s.insert(c * 4096 + 7, e.clone());
        }
        assert_eq!(s.len(), CAPACITY);
        assert!(s.get(7).is_none());
        assert!(s.get((CAPACITY as u64 + 9) * 4096 + 7).is_some());
        s.forget((CAPACITY as u64 + 9) * 4096 + 7);
        assert!(s.get((CAPACITY as u64 + 9) * 4096 + 7).is_none());
        assert!(s.first_warning(1));
        assert!(!s.first_warning(1));
    }
}
