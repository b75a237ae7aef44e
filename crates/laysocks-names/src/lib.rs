//! The name ↔ placeholder table of remote DNS (DESIGN §4), and a DNS message codec.
//!
//! Why a crate of its own: two very different programs use the same table at once.
//! The preload layer, loaded into every libc process of a run, answers `getaddrinfo`
//! with placeholder addresses from it; the guard supervisor (the launcher, watching
//! programs that bypass libc through seccomp) answers their own DNS packets — Go's pure
//! resolver, c-ares, `dig` — from it. Both map the same file, so a name gets the same
//! placeholder whoever looked it up, and a later `connect` to that placeholder, made by
//! any process of the run, sends the name to the proxy. Keeping the layout, the
//! normalisation and the slot rules in one place is what makes the two agree.
//!
//! - [`NameMap`] (module `table`): the lock-free table in shared memory;
//!   [`open_shared`] maps the launcher's file the way every process must.
//! - [`policy`]: which names stay local (`/etc/hosts`, `direct_names`, `localhost`)
//!   and where programs' own queries go (`dns_server`), read the same way by both.
//! - [`dnsmsg`]: parsing queries and building responses (RFC 1035 §4.1), without I/O,
//!   for the guard's DNS responder.

mod table;

pub mod dnsmsg;
pub mod policy;

pub use table::{normalise, Full, NameMap, MAX_NAME};

use laysocks_config::IpNet;

/// Maps the run's shared name table at `path` (the file the launcher created empty,
/// named by `LayerConfig::names_file`) for `capacity` names with placeholders from
/// `pool4` and `pool6`.
///
/// Every process of the run must call this with the same `capacity` and pools (the
/// ones in its `LayerConfig`): the layout follows from them. The capacity is first
/// clamped to what the pools can number ([`NameMap::usable_capacity`]). An empty file
/// is grown to [`NameMap::bytes_for`] that capacity by whichever process maps it first
/// (`ftruncate` to the same length is idempotent, so racing processes agree); a file of
/// any other non-zero size is refused. The fd is closed once mapped.
///
/// `Err` is the reason alone (`cannot open: ENOENT`, `is 12 bytes, expected 8256`…);
/// the caller names the path in its message.
pub fn open_shared(
    path: &str,
    capacity: u32,
    pool4: IpNet,
    pool6: IpNet,
) -> Result<NameMap, String> {
    let capacity = NameMap::usable_capacity(capacity, &pool4, &pool6);
    let c = std::ffi::CString::new(path).map_err(|_| "bad path".to_string())?;
    let map = laysocks_sys::shm::map_file(&c, NameMap::bytes_for(capacity))?;
    Ok(NameMap::new(map, capacity, pool4, pool6))
}

/// A table private to this process and its forked children (anonymous shared memory),
/// for when no shared file can be used.
pub fn open_private(capacity: u32, pool4: IpNet, pool6: IpNet) -> Result<NameMap, String> {
    let capacity = NameMap::usable_capacity(capacity, &pool4, &pool6);
    let map = laysocks_sys::shm::map_anonymous(NameMap::bytes_for(capacity))?;
    Ok(NameMap::new(map, capacity, pool4, pool6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_shared_sizes_an_empty_file_and_agrees_across_mappings() {
        let path = format!("/tmp/laysocks-open-shared-{}", std::process::id());
        std::fs::write(&path, b"").unwrap();
        let p4: IpNet = "198.18.0.0/15".parse().unwrap();
        let p6: IpNet = "fd6c:6179:736f:636b::/64".parse().unwrap();
        let a = open_shared(&path, 100, p4, p6).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            NameMap::bytes_for(100)
        );
        let s = a.slot_for(b"shared.test").unwrap();
        let b = open_shared(&path, 100, p4, p6).unwrap();
        assert_eq!(b.name(s).unwrap(), b"shared.test");
        assert_eq!(b.slot_for(b"shared.test").unwrap(), s);
        let e = open_shared(&path, 200, p4, p6).err().unwrap();
        assert!(e.contains("expected"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(open_shared(&path, 100, p4, p6).is_err());
        assert!(open_shared("/tmp/a\0b", 100, p4, p6).is_err());
        // The pools bound the capacity the same way for every caller.
        let tiny: IpNet = "198.18.0.0/30".parse().unwrap();
        assert_eq!(open_private(100, tiny, p6).unwrap().capacity(), 2);
    }
}
