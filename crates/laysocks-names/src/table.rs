//! The name table: which placeholder address stands for which name (DESIGN §4).
//!
//! Remote DNS answers a lookup of `example.com` with a placeholder address; a later
//! `connect` to that address sends `example.com` to the proxy. The program that looks a
//! name up is often not the one that connects (a shell resolves, `exec`s; a parent
//! resolves, forks), so the table lives in shared memory: a file the launcher creates
//! and every process of the run maps (see `laysocks_sys::shm`). No helper thread, no
//! fd left open, no lock:
//!
//! - **Slots** hold names, handed out in order by one atomic counter (`next`); slot *i*
//!   is placeholder *i* in both pools (`pool4 + 1 + i`, `pool6 + 1 + i`), so an IPv4
//!   and an IPv6 answer for one name name the same slot. A slot is published by storing
//!   its length (release) after its bytes.
//! - **Index**: an open-addressing hash table (twice as many buckets as slots, linear
//!   probing) of `slot + 1`, set once by compare-and-swap, never removed. Lookups of a
//!   known name touch no shared cache line for writing.
//! - Two processes inserting the same new name at once can both take a slot; one wins
//!   the bucket and the other's slot stays unused (its reverse lookup still names the
//!   name). The table never grows past its capacity: when `next` reaches it, new names
//!   fail (`EAI_MEMORY` and one line on stderr).
//!
//! The memory is shared with other processes of the same user, so everything read from
//! it is checked (lengths, slot numbers) before use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use laysocks_config::IpNet;
use laysocks_sys::shm::Mapping;

/// Longest name kept (RFC 1035 §2.3.4 limits a name to 255 octets on the wire, 253
/// characters in text).
pub const MAX_NAME: usize = 253;

const MAGIC: u64 = u64::from_le_bytes(*b"LSNAMES1");
const HEADER: usize = 64;
const SLOT: usize = 256;

/// A name table in a mapping.
pub struct NameMap {
    map: Mapping,
    capacity: u32,
    buckets: u32,
    pool4: IpNet,
    pool6: IpNet,
}

/// The table has no room for another name.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    pub capacity: u32,
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
    next: AtomicU32,
}

impl NameMap {
    /// Bytes a table of `capacity` names needs.
    pub fn bytes_for(capacity: u32) -> usize {
        HEADER + buckets_for(capacity) as usize * 4 + capacity as usize * SLOT
    }

    /// How many names fit, given the configured capacity and the pools' sizes.
    pub fn usable_capacity(capacity: u32, pool4: &IpNet, pool6: &IpNet) -> u32 {
        let room = |net: &IpNet, bits: u32| -> u64 {
            let host_bits = bits - u32::from(net.prefix());
            if host_bits >= 63 {
                u64::MAX
            } else {
                (1u64 << host_bits).saturating_sub(2)
            }
        };
        let most = room(pool4, 32)
            .min(room(pool6, 128))
            .min(u64::from(u32::MAX / 4));
        capacity.min(most as u32).max(1)
    }

    /// Builds the table on `map`, which must be [`NameMap::bytes_for`]`(capacity)` long
    /// and zeroed or already holding a table of this capacity.
    pub fn new(map: Mapping, capacity: u32, pool4: IpNet, pool6: IpNet) -> NameMap {
        assert!(map.len >= Self::bytes_for(capacity));
        let m = NameMap {
            map,
            capacity,
            buckets: buckets_for(capacity),
            pool4,
            pool6,
        };
        // A fresh file is zero; the first process stamps it. The layout follows from
        // the capacity every process of the run was given.
        let _ = m
            .header()
            .magic
            .compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire);
        m
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with HEADER bytes, page-aligned, zero or stamped;
        // Header is two atomics that are valid for any bit pattern.
        unsafe { &*(self.map.ptr as *const Header) }
    }

    fn bucket(&self, i: u32) -> &AtomicU32 {
        debug_assert!(i < self.buckets);
        // SAFETY: bucket i lies within the mapping (bytes_for), 4-byte aligned; any bit
        // pattern is a valid AtomicU32.
        unsafe { &*(self.map.ptr.add(HEADER + i as usize * 4) as *const AtomicU32) }
    }

    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        debug_assert!(slot < self.capacity);
        // SAFETY: slot < capacity, so the slot lies within the mapping.
        unsafe {
            self.map
                .ptr
                .add(HEADER + self.buckets as usize * 4 + slot as usize * SLOT)
        }
    }

    fn slot_len(&self, slot: u32) -> &AtomicU32 {
        // SAFETY: the slot's first 4 bytes, 4-byte aligned (SLOT and the index are
        // multiples of 4).
        unsafe { &*(self.slot_ptr(slot) as *const AtomicU32) }
    }

    /// The name in `slot`, if it has been published.
    pub fn name(&self, slot: u32) -> Option<Vec<u8>> {
        if slot >= self.capacity {
            return None;
        }
        let len = self.slot_len(slot).load(Ordering::Acquire) as usize;
        if len == 0 || len > MAX_NAME {
            return None;
        }
        let mut out = vec![0u8; len];
        // SAFETY: the slot's name bytes follow its length word and were written before
        // the length was published (release/acquire); len ≤ MAX_NAME < SLOT - 4.
        unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(slot).add(4), out.as_mut_ptr(), len) };
        Some(out)
    }

    fn slot_is(&self, slot: u32, name: &[u8]) -> bool {
        if slot >= self.capacity {
            return false;
        }
        let len = self.slot_len(slot).load(Ordering::Acquire) as usize;
        if len != name.len() {
            return false;
        }
        // SAFETY: as in `name`: published bytes of a slot inside the mapping.
        let stored = unsafe { std::slice::from_raw_parts(self.slot_ptr(slot).add(4), len) };
        stored == name
    }

    /// The slot of `name` (already normalised: see [`normalise`]), taking a new one if
    /// the name is new.
    pub fn slot_for(&self, name: &[u8]) -> Result<u32, Full> {
        assert!(!name.is_empty() && name.len() <= MAX_NAME);
        let mask = self.buckets - 1;
        let mut b = hash(name) as u32 & mask;
        let mut mine: Option<u32> = None;
        for _ in 0..self.buckets {
            let mut v = self.bucket(b).load(Ordering::Acquire);
            if v == 0 {
                let slot = match mine {
                    Some(s) => s,
                    None => {
                        let s = self.take_slot()?;
                        // SAFETY: slot s is ours alone (the counter handed it out once);
                        // the bytes go in before the length publishes them.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                name.as_ptr(),
                                self.slot_ptr(s).add(4),
                                name.len(),
                            )
                        };
                        self.slot_len(s).store(name.len() as u32, Ordering::Release);
                        mine = Some(s);
                        s
                    }
                };
                match self.bucket(b).compare_exchange(
                    0,
                    slot + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok(slot),
                    Err(now) => v = now,
                }
            }
            if self.slot_is(v - 1, name) {
                return Ok(v - 1);
            }
            b = (b + 1) & mask;
        }
        Err(Full {
            capacity: self.capacity,
        })
    }

    fn take_slot(&self) -> Result<u32, Full> {
        let next = &self.header().next;
        let mut cur = next.load(Ordering::Relaxed);
        loop {
            if cur >= self.capacity {
                return Err(Full {
                    capacity: self.capacity,
                });
            }
            match next.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(cur),
                Err(now) => cur = now,
            }
        }
    }

    /// How many slots have been handed out.
    pub fn used(&self) -> u32 {
        self.header()
            .next
            .load(Ordering::Relaxed)
            .min(self.capacity)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The IPv4 placeholder of `slot`.
    pub fn v4(&self, slot: u32) -> Ipv4Addr {
        let IpAddr::V4(base) = self.pool4.addr() else {
            unreachable!("pool4 is an IPv4 network")
        };
        Ipv4Addr::from(u32::from(base).wrapping_add(1 + slot))
    }

    /// The IPv6 placeholder of `slot`.
    pub fn v6(&self, slot: u32) -> Ipv6Addr {
        let IpAddr::V6(base) = self.pool6.addr() else {
            unreachable!("pool6 is an IPv6 network")
        };
        Ipv6Addr::from(u128::from(base).wrapping_add(1 + u128::from(slot)))
    }

    /// The slot a placeholder address stands for (IPv4, IPv6, or IPv4-mapped IPv6), or
    /// `None` if the address is not in either pool. `Some(slot)` does not promise that
    /// the slot holds a name (see [`NameMap::name`]).
    pub fn slot_of(&self, ip: IpAddr) -> Option<u32> {
        let ip = laysocks_config::net::canonical(ip);
        let off = match ip {
            IpAddr::V4(a) if self.pool4.contains(ip) => {
                let IpAddr::V4(base) = self.pool4.addr() else {
                    return None;
                };
                u64::from(u32::from(a) - u32::from(base))
            }
            IpAddr::V6(a) if self.pool6.contains(ip) => {
                let IpAddr::V6(base) = self.pool6.addr() else {
                    return None;
                };
                u64::try_from(u128::from(a) - u128::from(base)).ok()?
            }
            _ => return None,
        };
        // Offset 0 (the network address) is never handed out.
        u32::try_from(off.checked_sub(1)?).ok()
    }

    /// Whether `ip` lies in a placeholder pool.
    pub fn is_placeholder(&self, ip: IpAddr) -> bool {
        let ip = laysocks_config::net::canonical(ip);
        self.pool4.contains(ip) || self.pool6.contains(ip)
    }
}

fn buckets_for(capacity: u32) -> u32 {
    (capacity.max(1) * 2).next_power_of_two()
}

/// FNV-1a, 64-bit: short keys, no seed needed (the table is private to one user's run
/// and its size is bounded, so a collision flood costs only that run time).
fn hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The form a name is stored and sent in: ASCII lower case, without a trailing dot
/// (DNS names compare case-insensitively, RFC 4343; `example.com.` is `example.com`).
/// `None` for something no resolver would look up: empty, too long, an empty label,
/// or bytes that cannot appear in a host name on the wire (controls, space, `/`…).
pub fn normalise(name: &[u8]) -> Option<Vec<u8>> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    if name
        .split(|&b| b == b'.')
        .any(|l| l.is_empty() || l.len() > 63)
    {
        return None;
    }
    if name
        .iter()
        .any(|&b| b <= b' ' || b == 0x7f || b == b'/' || b == b'\\' || b == b'%')
    {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(capacity: u32) -> NameMap {
        let map = laysocks_sys::shm::map_anonymous(NameMap::bytes_for(capacity)).unwrap();
        NameMap::new(
            map,
            capacity,
            "198.18.0.0/15".parse().unwrap(),
            "fd6c:6179:736f:636b::/64".parse().unwrap(),
        )
    }

    #[test]
    fn names_get_stable_slots_and_addresses() {
        let t = table(16);
        let a = t.slot_for(b"remote.test").unwrap();
        let b = t.slot_for(b"other.test").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.slot_for(b"remote.test").unwrap(), a);
        assert_eq!(t.v4(a), Ipv4Addr::new(198, 18, 0, 1 + a as u8));
        let first: Ipv6Addr = "fd6c:6179:736f:636b::1".parse().unwrap();
        assert_eq!(t.v6(a), Ipv6Addr::from(u128::from(first) + u128::from(a)));
        assert_eq!(t.slot_of(IpAddr::V4(t.v4(b))), Some(b));
        assert_eq!(t.slot_of(IpAddr::V6(t.v6(b))), Some(b));
        let mapped = t.v4(b).to_ipv6_mapped();
        assert_eq!(t.slot_of(IpAddr::V6(mapped)), Some(b));
        assert_eq!(t.name(a).unwrap(), b"remote.test");
        assert_eq!(t.slot_of("198.18.0.0".parse().unwrap()), None);
        assert_eq!(t.slot_of("203.0.113.2".parse().unwrap()), None);
        assert_eq!(t.name(9), None, "a slot never handed out has no name");
        assert!(t.is_placeholder("198.19.255.255".parse().unwrap()));
        assert!(!t.is_placeholder("198.20.0.1".parse().unwrap()));
    }

    #[test]
    fn full_table_refuses_new_names_but_keeps_old_ones() {
        let t = table(4);
        for i in 0..4 {
            t.slot_for(format!("n{i}.test").as_bytes()).unwrap();
        }
        assert_eq!(t.slot_for(b"n4.test"), Err(Full { capacity: 4 }));
        assert_eq!(t.slot_for(b"n2.test").unwrap(), 2);
        assert_eq!(t.used(), 4);
    }

    #[test]
    fn threads_agree_on_every_name() {
        let t = std::sync::Arc::new(table(4096));
        let handles: Vec<_> = (0..8)
            .map(|k| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|i| {
                            // Every thread resolves the same 1000 names, in its own order.
                            let n = (i * 7 + k * 131) % 1000;
                            (n, t.slot_for(format!("host{n}.test").as_bytes()).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = std::collections::HashMap::new();
        for h in handles {
            for (n, slot) in h.join().unwrap() {
                assert_eq!(
                    *seen.entry(n).or_insert(slot),
                    slot,
                    "host{n} got two slots"
                );
            }
        }
        assert_eq!(seen.len(), 1000);
        assert!(t.used() >= 1000 && t.used() <= 4096);
    }

    #[test]
    fn a_second_mapping_of_the_file_sees_the_same_names() {
        let path = format!("/tmp/laysocks-names-test-{}\0", std::process::id());
        std::fs::write(&path[..path.len() - 1], b"").unwrap();
        let c = std::ffi::CStr::from_bytes_with_nul(path.as_bytes()).unwrap();
        let open = || {
            NameMap::new(
                laysocks_sys::shm::map_file(c, NameMap::bytes_for(64)).unwrap(),
                64,
                "198.18.0.0/15".parse().unwrap(),
                "fd6c:6179:736f:636b::/64".parse().unwrap(),
            )
        };
        let a = open();
        let s = a.slot_for(b"shared.test").unwrap();
        let b = open();
        assert_eq!(b.slot_for(b"shared.test").unwrap(), s);
        assert_eq!(b.name(s).unwrap(), b"shared.test");
        std::fs::remove_file(&path[..path.len() - 1]).unwrap();
    }

    #[test]
    fn normalising() {
        assert_eq!(normalise(b"Example.COM.").unwrap(), b"example.com");
        assert_eq!(normalise(b"single").unwrap(), b"single");
        assert_eq!(normalise(b""), None);
        assert_eq!(normalise(b"."), None);
        assert_eq!(normalise(b"a..b"), None);
        assert_eq!(normalise(b"has space.test"), None);
        assert_eq!(normalise(&[b'a'; 254]), None);
        assert!(normalise(b"_srv._tcp.example.test").is_some());
        let long_label = [b'a'; 64];
        assert_eq!(normalise(&long_label), None);
    }

    #[test]
    fn capacity_is_bounded_by_the_pools() {
        let p4: IpNet = "198.18.0.0/30".parse().unwrap();
        let p6: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(NameMap::usable_capacity(100, &p4, &p6), 2);
        let p4: IpNet = "198.18.0.0/15".parse().unwrap();
        assert_eq!(NameMap::usable_capacity(65536, &p4, &p6), 65536);
        assert_eq!(NameMap::usable_capacity(1 << 20, &p4, &p6), 131070);
    }
}
